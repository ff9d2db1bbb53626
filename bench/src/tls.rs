//! `quicmesh-bench tls`: the tunnel's TLS on each crypto library this build
//! has, in memory on one thread, so that the figures say what the library
//! costs and nothing else: full mutual handshakes (the tunnel's own configs
//! and SPIFFE verifiers, both sides' work together), the client's first
//! flight, and QUIC packet protection (sealing and opening 1,350-byte
//! payloads with the cipher suite the tunnel negotiates).
//!
//! ring is always measured; aws-lc-rs, with X25519 and with the
//! X25519MLKEM768 hybrid, when the bench is built with `--features aws-lc-rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::{SpiffeId, Svid, TrustBundles};
use quicmesh_core::metrics::TunnelMetrics;
use quicmesh_core::tunnel::config::{self, KeyExchange};
use rustls::crypto::CryptoProvider;
use rustls::quic::Version;
use rustls::Side;
use rustls_pki_types::ServerName;
use serde::Serialize;

/// QUIC payload bytes protected per packet (a full packet at MTU 1500).
const PAYLOAD: usize = 1350;

/// One library and key exchange, measured.
#[derive(Debug, Serialize)]
pub struct Row {
    pub library: &'static str,
    pub key_exchange: KeyExchange,
    /// The group the handshake settled on (checked, not assumed).
    pub negotiated: String,
    /// The cipher suite, whose packet keys the seal/open figures use.
    pub suite: String,
    /// Full handshakes per second, client and server on one thread.
    pub handshakes_per_s: f64,
    /// Building the tunnel's client TLS config (what a ztunnel does before
    /// each new tunnel connection: the SVID's key parsed, the verifier
    /// made), µs.
    pub client_config_us: f64,
    /// The client's first flight (the ClientHello record).
    pub client_hello_bytes: usize,
    /// QUIC packet protection, Gbit/s of payload.
    pub seal_gbit_s: f64,
    pub open_gbit_s: f64,
}

/// The providers this build has, each with the key exchanges worth measuring.
fn candidates() -> Vec<(&'static str, CryptoProvider, KeyExchange)> {
    // Only a build with aws-lc-rs adds to it.
    #[allow(unused_mut)]
    let mut v = vec![(
        "ring",
        rustls::crypto::ring::default_provider(),
        KeyExchange::X25519,
    )];
    #[cfg(feature = "aws-lc-rs")]
    for kx in [KeyExchange::X25519, KeyExchange::X25519Mlkem768] {
        v.push((
            "aws-lc-rs",
            rustls::crypto::aws_lc_rs::default_provider(),
            kx,
        ));
    }
    v
}

/// A fresh trust domain's bundles and SVIDs for a bench client and server,
/// as the bench's own tunnel ends present them.
pub(crate) struct Peers {
    pub bundles: Arc<TrustBundles>,
    pub client: Svid,
    pub server: Svid,
    pub server_id: SpiffeId,
}

impl Peers {
    pub fn new() -> Result<Self> {
        let ca = Ca::generate("cluster.local")?;
        let mut bundles = TrustBundles::new();
        bundles.insert("cluster.local", &[ca.cert_der().clone()])?;
        let client_id = SpiffeId::parse("spiffe://cluster.local/ns/bench/sa/client")?;
        let server_id = SpiffeId::parse("spiffe://cluster.local/ns/bench/sa/server")?;
        let life = Duration::from_secs(3600);
        Ok(Peers {
            bundles: Arc::new(bundles),
            client: ca.mint(&client_id, life)?,
            server: ca.mint(&server_id, life)?,
            server_id,
        })
    }
}

/// Measures every candidate for `each` (handshakes, then sealing, then
/// opening).
pub fn run(each: Duration) -> Result<Vec<Row>> {
    let Peers {
        bundles,
        client: client_svid,
        server: server_svid,
        server_id,
    } = Peers::new()?;
    let metrics = TunnelMetrics::new();
    let name = ServerName::try_from("tunnel.quicmesh")?;
    candidates()
        .into_iter()
        .map(|(library, provider, kx)| {
            let provider_kx = Arc::new(kx.preferred_by(&provider)?);
            let build = || {
                config::client_tls(
                    &client_svid,
                    bundles.clone(),
                    server_id.clone(),
                    &metrics,
                    provider_kx.clone(),
                )
            };
            let client = Arc::new(build()?);
            let client_config_us =
                1e6 / rate(each, || build().map(drop).map_err(anyhow::Error::from))?;
            let server = Arc::new(config::server_tls(
                &server_svid,
                bundles.clone(),
                Box::new(|_| true),
                &metrics,
                Arc::new(provider),
            )?);
            let (c, _) = config::handshake_in_memory(client.clone(), server.clone(), name.clone())
                .with_context(|| format!("{library} {kx:?}"))?;
            let negotiated = c
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
                .unwrap_or_default();
            let suite = c
                .negotiated_cipher_suite()
                .ok_or_else(|| anyhow!("no cipher suite"))?;
            let client_hello_bytes = {
                let mut c = rustls::ClientConnection::new(client.clone(), name.clone())?;
                let mut hello = Vec::new();
                while c.wants_write() {
                    c.write_tls(&mut hello)?;
                }
                hello.len()
            };
            let handshakes_per_s = rate(each, || {
                config::handshake_in_memory(client.clone(), server.clone(), name.clone())
                    .map(drop)
                    .map_err(anyhow::Error::from)
            })?;
            let (seal_gbit_s, open_gbit_s) = packet_protection(suite, each)?;
            Ok(Row {
                library,
                key_exchange: kx,
                negotiated,
                suite: format!("{:?}", suite.suite()),
                handshakes_per_s,
                client_config_us,
                client_hello_bytes,
                seal_gbit_s,
                open_gbit_s,
            })
        })
        .collect()
}

/// Calls per second of `f`, over at least `each` (and at least 10 calls).
fn rate(each: Duration, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while n < 10 || start.elapsed() < each {
        f()?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Gbit/s of payload sealed, and opened, with 1-RTT-like packet keys of
/// `suite` (QUIC v1 keys derived as for an Initial: the same AEAD and
/// header protection as every later packet).
fn packet_protection(suite: rustls::SupportedCipherSuite, each: Duration) -> Result<(f64, f64)> {
    let quic = suite
        .tls13()
        .and_then(|s| s.quic_suite())
        .ok_or_else(|| anyhow!("{:?} has no QUIC suite", suite.suite()))?;
    let cid = [0x5a; 8];
    let sender = quic.keys(&cid, Side::Client, Version::V1);
    let receiver = quic.keys(&cid, Side::Server, Version::V1);
    let header = [0x40, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0];
    let mut packet = vec![0u8; PAYLOAD];
    let mut pn = 0u64;
    let seal = rate(each, || {
        pn += 1;
        sender
            .local
            .packet
            .encrypt_in_place(pn, &header, &mut packet)?;
        Ok(())
    })?;
    // Opening needs a real sealed packet each time: seal one, then time
    // opening copies of it.
    let mut sealed = vec![0u8; PAYLOAD];
    let tag = sender
        .local
        .packet
        .encrypt_in_place(1, &header, &mut sealed)?;
    sealed.extend_from_slice(tag.as_ref());
    let mut scratch = sealed.clone();
    let open = rate(each, || {
        scratch.copy_from_slice(&sealed);
        receiver
            .remote
            .packet
            .decrypt_in_place(1, &header, &mut scratch)?;
        Ok(())
    })?;
    let gbit = |per_s: f64| per_s * (PAYLOAD * 8) as f64 / 1e9;
    Ok((gbit(seal), gbit(open)))
}

/// The rows as a markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| library | key exchange (negotiated) | handshakes/s, one thread | µs per handshake | µs to build the client config | ClientHello bytes | seal Gbit/s | open Gbit/s |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {:.2} | {:.2} |\n",
            r.library,
            r.negotiated,
            r.handshakes_per_s,
            1e6 / r.handshakes_per_s,
            r.client_config_us,
            r.client_hello_bytes,
            r.seal_gbit_s,
            r.open_gbit_s,
        );
    }
    out + &format!(
        "\n(suite {}; {PAYLOAD}-byte QUIC payloads; mutual handshakes with the tunnel's SPIFFE verifiers, both sides on one thread)\n",
        rows.first().map(|r| r.suite.as_str()).unwrap_or("-"),
    )
}
