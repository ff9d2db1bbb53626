//! QUIC transport settings, UDP socket sizing, and TLS configs for the tunnel.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::CryptoProvider;
use rustls::NamedGroup;

use crate::identity::verify::{AllowFn, ClientVerifier, ServerVerifier};
#[cfg(test)]
use crate::identity::TrustBundles;
use crate::identity::{SharedBundles, SpiffeId, Svid};
use crate::metrics::TunnelMetrics;

/// Tunable knobs of the tunnel. The defaults were chosen by measurement on a
/// 2-core machine (see docs/performance.md).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TunnelSettings {
    /// SO_RCVBUF/SO_SNDBUF of each UDP socket. With the kernel default
    /// (~208 KB) the receive queue overflows and a stream stalls near 1 Gbit/s.
    pub socket_buffer: usize,
    /// Streams a peer may open on one QUIC connection at once.
    pub max_concurrent_streams: u32,
    pub stream_receive_window: u32,
    pub connection_receive_window: u32,
    pub send_window: u64,
    /// QUIC idle timeout: a silent peer is declared dead after this.
    pub idle_timeout: Duration,
    /// PING interval keeping a connection alive while it carries streams.
    pub keep_alive: Duration,
    /// A pooled connection with no stream for this long is closed.
    pub pool_idle: Duration,
    /// QUIC connections per pool key: streams go to the least busy, and a
    /// new connection is made while all carry streams (up to this many).
    pub max_connections_per_key: usize,
    /// A QUIC handshake not complete within this is abandoned, on either
    /// side: the client gives up on the server, and the tunnel server frees
    /// an attempt whose client went quiet (one that never finishes would
    /// otherwise hold its state until the idle timeout). One value for both:
    /// past the point where the client gives up, the server's half is useless.
    pub handshake_timeout: Duration,
    /// Tunnel server: QUIC handshakes in flight at once, all endpoints of the
    /// proxy together; further attempts are refused (or, from an address not
    /// yet validated, answered with a Retry). Each holds a connection's state
    /// until its handshake completes or times out.
    pub max_handshakes: usize,
    /// Tunnel server: handshakes in flight from one source IP, counted apart
    /// for addresses QUIC validated and for those it did not. Past it, a
    /// validated attempt is refused and an unvalidated one gets a Retry.
    pub max_handshakes_per_source: usize,
    /// Tunnel server: with this many handshakes in flight (or more), attempts
    /// from addresses not yet validated get a QUIC Retry (one more round trip
    /// for real clients; nothing held for spoofed ones). Below it, no Retry:
    /// a cold connect keeps its latency.
    pub handshake_retry_threshold: usize,
    /// Largest header section accepted, in bytes: a HEADERS frame longer
    /// than this is refused before a byte of it is buffered.
    pub max_header_bytes: u64,
    /// Tunnel server: a stream's request headers must be complete within
    /// this; a stalled one is answered 408 and stopped.
    pub header_timeout: Duration,
    /// Tunnel client: the peer must answer a CONNECT within this (its own
    /// connect to the destination included).
    pub response_timeout: Duration,
    /// Tunnel server: streams a new connection may open at once. QUIC keeps
    /// state for each allowed stream from the first packet on, so the
    /// limit starts here and doubles, up to `max_concurrent_streams`, only
    /// while an authenticated peer uses half of it.
    pub initial_concurrent_streams: u32,
    /// Upper bound of QUIC path-MTU discovery (UDP payload bytes).
    pub max_udp_payload: u16,
    /// UDP GSO on sends.
    pub gso: bool,
    /// Ack-eliciting packets the peer may receive before it must acknowledge
    /// (QUIC ACK frequency extension). `None` leaves the peer at the RFC 9000
    /// default of every second packet.
    pub ack_threshold: Option<u32>,
    /// The key exchange a tunnel client prefers (servers accept every group
    /// their build has, in the client's order).
    pub key_exchange: KeyExchange,
}

/// The TLS key exchange a tunnel client puts first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
pub enum KeyExchange {
    /// Elliptic-curve Diffie-Hellman on X25519: what every TLS 1.3 peer speaks.
    #[default]
    #[value(name = "x25519")]
    #[serde(rename = "x25519")]
    X25519,
    /// The X25519 + ML-KEM-768 hybrid (post-quantum, as Linkerd uses by
    /// default), with an X25519 share beside it so that a server without
    /// ML-KEM answers without an extra round trip. Needs a build with the
    /// `aws-lc-rs` feature.
    #[value(name = "x25519mlkem768")]
    #[serde(rename = "x25519mlkem768")]
    X25519Mlkem768,
}

impl KeyExchange {
    /// `provider` with this key exchange first among its groups, or why this
    /// build cannot offer it.
    pub fn preferred_by(self, provider: &CryptoProvider) -> Result<CryptoProvider, ConfigError> {
        let first = match self {
            KeyExchange::X25519 => NamedGroup::X25519,
            KeyExchange::X25519Mlkem768 => NamedGroup::X25519MLKEM768,
        };
        let Some(at) = provider.kx_groups.iter().position(|g| g.name() == first) else {
            return Err(ConfigError::KeyExchange {
                group: first,
                library: crate::CRYPTO_LIBRARY,
            });
        };
        let mut provider = provider.clone();
        let group = provider.kx_groups.remove(at);
        provider.kx_groups.insert(0, group);
        Ok(provider)
    }
}

/// Bytes a tunnel server buffers for one connection attempt not yet screened,
/// beyond its first datagram.
pub const INCOMING_BUFFER: u64 = 16 << 10;
/// The same, for all attempts of one endpoint together.
pub const INCOMING_BUFFER_TOTAL: u64 = 1 << 20;

/// quinn's own default bound: Ethernet's 1500 minus IPv6 and UDP headers.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1452;

impl Default for TunnelSettings {
    fn default() -> Self {
        TunnelSettings {
            socket_buffer: 16 << 20,
            max_concurrent_streams: 4096,
            stream_receive_window: 8 << 20,
            connection_receive_window: 32 << 20,
            send_window: 32 << 20,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            pool_idle: Duration::from_secs(60),
            max_connections_per_key: 2,
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: 256,
            max_handshakes_per_source: 16,
            handshake_retry_threshold: 64,
            max_header_bytes: 16 << 10,
            header_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(15),
            initial_concurrent_streams: 32,
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            gso: true,
            ack_threshold: None,
            key_exchange: KeyExchange::X25519,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("TLS config: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC crypto config: {0}")]
    Quic(String),
    #[error("key exchange {group:?} is not in this build's TLS library ({library}); build with the aws-lc-rs feature")]
    KeyExchange {
        group: NamedGroup,
        library: &'static str,
    },
    #[error("UDP socket: {0}")]
    Socket(#[from] std::io::Error),
}

impl TunnelSettings {
    /// The QUIC transport of a tunnel client: an HTTP/3 server never opens
    /// request streams, so none are allowed (and none cost state).
    pub fn client_transport(&self) -> Arc<quinn::TransportConfig> {
        self.transport(0)
    }

    /// The QUIC transport of a tunnel server: `initial_concurrent_streams`
    /// to begin with (raised per connection as it is used).
    pub fn server_transport(&self) -> Arc<quinn::TransportConfig> {
        self.transport(
            self.initial_concurrent_streams
                .min(self.max_concurrent_streams),
        )
    }

    fn transport(&self, bidi_streams: u32) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        // Unidirectional: the peer's HTTP/3 control and QPACK streams, and
        // a few it may open to grease (RFC 9114 §6.2.3).
        t.max_concurrent_bidi_streams(bidi_streams.into())
            .max_concurrent_uni_streams(8u32.into())
            .stream_receive_window(self.stream_receive_window.into())
            .receive_window(self.connection_receive_window.into())
            .send_window(self.send_window)
            .keep_alive_interval(Some(self.keep_alive))
            .enable_segmentation_offload(self.gso)
            .max_idle_timeout(Some(
                self.idle_timeout
                    .try_into()
                    .expect("idle timeout fits a QUIC varint"),
            ));
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.max_udp_payload.max(1200));
        t.mtu_discovery_config(Some(mtu));
        if let Some(n) = self.ack_threshold {
            let mut ack = quinn::AckFrequencyConfig::default();
            ack.ack_eliciting_threshold(n.into());
            t.ack_frequency_config(Some(ack));
        }
        Arc::new(t)
    }
}

/// Binds a UDP socket for QUIC with buffers of `settings.socket_buffer`.
///
/// With CAP_NET_ADMIN the size is forced past `net.core.rmem_max`/`wmem_max`;
/// otherwise those sysctls must allow it. A smaller effective size is logged.
pub fn bind_udp(addr: SocketAddr, settings: &TunnelSettings) -> Result<UdpSocket, ConfigError> {
    let domain = socket2::Domain::for_address(addr);
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(false)?;
    }
    size_buffers(&sock, settings.socket_buffer);
    sock.bind(&addr.into())?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

fn size_buffers(sock: &socket2::Socket, want: usize) {
    let val = want as libc::c_int;
    for (force, plain, name) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "SO_RCVBUF"),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "SO_SNDBUF"),
    ] {
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        let set = |opt| unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &val as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if set(force) != 0 {
            set(plain);
        }
        let got = if plain == libc::SO_RCVBUF {
            sock.recv_buffer_size()
        } else {
            sock.send_buffer_size()
        };
        // The kernel reports double the requested size (bookkeeping overhead).
        if let Ok(got) = got {
            if got < want {
                tracing::warn!(
                    option = name,
                    wanted = want,
                    got,
                    "UDP socket buffer smaller than wanted; raise net.core.rmem_max/wmem_max or grant CAP_NET_ADMIN, or QUIC throughput will suffer"
                );
            }
        }
    }
}

/// A QUIC endpoint on `socket`, serving with `server` if given (an endpoint
/// is also a client either way). It accepts datagrams up to
/// `settings.max_udp_payload` (at least 1472) and tells peers so: a peer's
/// path-MTU discovery never probes past what this end advertises.
pub fn endpoint(
    socket: UdpSocket,
    server: Option<quinn::ServerConfig>,
    settings: &TunnelSettings,
) -> Result<quinn::Endpoint, ConfigError> {
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(settings.max_udp_payload.max(1472))
        .map_err(|e| ConfigError::Quic(e.to_string()))?;
    Ok(quinn::Endpoint::new(
        config,
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

/// TLS config of a tunnel server presenting `svid`, accepting clients whose
/// identity `allow` approves.
pub fn server_config(
    svid: &Svid,
    bundles: impl Into<SharedBundles>,
    allow: Box<AllowFn>,
    metrics: &Arc<TunnelMetrics>,
    settings: &TunnelSettings,
) -> Result<quinn::ServerConfig, ConfigError> {
    let tls = server_tls(svid, bundles, allow, metrics, crate::crypto_provider())?;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| ConfigError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(settings.server_transport())
        // Attempts queued before the accept loop screens them (each holds
        // its first datagram); more than could be admitted helps no one.
        .max_incoming(settings.max_handshakes.max(1))
        // Datagrams buffered per queued attempt beyond the first, and for
        // all of them: a ClientHello spans a datagram or two, and there is
        // no 0-RTT data (quinn's defaults, 10 and 100 MiB, are for 0-RTT).
        .incoming_buffer_size(INCOMING_BUFFER)
        .incoming_buffer_size_total(INCOMING_BUFFER_TOTAL)
        // A Retry token is answered within a round trip; one that lived
        // longer than the handshake it is for would only help replays.
        .retry_token_lifetime(settings.handshake_timeout);
    Ok(cfg)
}

/// TLS config of a tunnel client presenting `svid` to a server that must
/// prove exactly `expected`.
pub fn client_config(
    svid: &Svid,
    bundles: impl Into<SharedBundles>,
    expected: SpiffeId,
    metrics: &Arc<TunnelMetrics>,
    settings: &TunnelSettings,
) -> Result<quinn::ClientConfig, ConfigError> {
    let provider = Arc::new(
        settings
            .key_exchange
            .preferred_by(&crate::crypto_provider())?,
    );
    let tls = client_tls(svid, bundles, expected, metrics, provider)?;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| ConfigError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(settings.client_transport());
    Ok(cfg)
}

/// The TLS half of [`server_config`], on `provider` (the bench measures
/// providers with it).
pub fn server_tls(
    svid: &Svid,
    bundles: impl Into<SharedBundles>,
    allow: Box<AllowFn>,
    metrics: &Arc<TunnelMetrics>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, ConfigError> {
    let verifier = ClientVerifier::new(bundles, allow, provider.clone(), tls_metrics(metrics));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(svid.chain.clone(), svid.clone_key())?;
    tls.alpn_protocols = vec![super::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    // No session resumption (docs/security.md): every client config is made
    // for one handshake, so no client could use a ticket, and a resumed
    // session would skip the certificate checks against today's bundles.
    // Without this the server sends two tickets after every handshake and
    // keeps each session (its client's chain included) in a cache.
    tls.send_tls13_tickets = 0;
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(tls)
}

/// The TLS half of [`client_config`], on `provider` with its key exchange
/// groups in the order given.
pub fn client_tls(
    svid: &Svid,
    bundles: impl Into<SharedBundles>,
    expected: SpiffeId,
    metrics: &Arc<TunnelMetrics>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ClientConfig, ConfigError> {
    let verifier = ServerVerifier::new(bundles, expected, provider.clone(), tls_metrics(metrics));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(svid.chain.clone(), svid.clone_key())?;
    tls.alpn_protocols = vec![super::ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    Ok(tls)
}

/// One TLS 1.3 handshake between `client` and `server` in memory (no
/// sockets, no QUIC: the same key exchange, signatures and certificate
/// checks); both connections, ready to carry data. For tests and the bench.
pub fn handshake_in_memory(
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    server_name: rustls_pki_types::ServerName<'static>,
) -> Result<(rustls::ClientConnection, rustls::ServerConnection), rustls::Error> {
    let mut c = rustls::ClientConnection::new(client, server_name)?;
    let mut s = rustls::ServerConnection::new(server)?;
    let mut wire = Vec::with_capacity(8 << 10);
    // A TLS 1.3 handshake with client certificates takes two flights each
    // way; the bound only stops a bug from spinning.
    for _ in 0..8 {
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok((c, s));
        }
        flight(&mut c, &mut s, &mut wire)?;
        flight(&mut s, &mut c, &mut wire)?;
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

/// Moves everything `from` has to send into `to` and lets it process it.
fn flight<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
    wire: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    }
    let mut read = &wire[..];
    while !read.is_empty() {
        to.read_tls(&mut read)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        to.process_new_packets()?;
    }
    Ok(())
}

/// The TLS refusal counters live inside the tunnel metrics; verifiers hold an
/// `Arc` to them, so share the parent.
fn tls_metrics(m: &Arc<TunnelMetrics>) -> Arc<crate::metrics::TlsMetrics> {
    // TlsMetrics is cheap to clone (families are Arc'd internally).
    Arc::new(m.tls.clone())
}

/// Two tunnel endpoints on loopback with SVIDs from a fresh CA, for tests.
#[cfg(test)]
pub(crate) struct Loopback {
    pub bundles: Arc<TrustBundles>,
    pub client_svid: Svid,
    pub server_id: SpiffeId,
    pub metrics: Arc<TunnelMetrics>,
    /// Serving (accepts any identity the bundle proves).
    pub server: quinn::Endpoint,
    /// Client only.
    pub client: quinn::Endpoint,
}

#[cfg(test)]
impl Loopback {
    pub fn new(settings: &TunnelSettings) -> Loopback {
        let ca = crate::identity::ca::Ca::generate("cluster.local").unwrap();
        let mut bundles = TrustBundles::new();
        bundles
            .insert("cluster.local", &[ca.cert_der().clone()])
            .unwrap();
        let bundles = Arc::new(bundles);
        let id = |s: &str| SpiffeId::parse(s).unwrap();
        let (cid, sid) = (
            id("spiffe://cluster.local/ns/a/sa/c"),
            id("spiffe://cluster.local/ns/b/sa/s"),
        );
        let life = Duration::from_secs(600);
        let (client_svid, server_svid) =
            (ca.mint(&cid, life).unwrap(), ca.mint(&sid, life).unwrap());
        let metrics = TunnelMetrics::new();
        let scfg = server_config(
            &server_svid,
            bundles.clone(),
            Box::new(|_| true),
            &metrics,
            settings,
        )
        .unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = endpoint(bind_udp(loopback, settings).unwrap(), Some(scfg), settings).unwrap();
        let client = endpoint(bind_udp(loopback, settings).unwrap(), None, settings).unwrap();
        Loopback {
            bundles,
            client_svid,
            server_id: sid,
            metrics,
            server,
            client,
        }
    }
}

#[cfg(test)]
impl Loopback {
    /// Serves `inbound` on the server endpoint until the returned token is
    /// cancelled.
    pub fn serve<I: super::server::Inbound>(
        &self,
        inbound: I,
        settings: &TunnelSettings,
    ) -> tokio_util::sync::CancellationToken {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(super::server::serve(
            self.server.clone(),
            Arc::new(inbound),
            super::server::ServerCtx::new(self.metrics.clone(), Arc::new(settings.clone())),
            stop.clone(),
            Duration::from_secs(1),
        ));
        stop
    }

    /// A pool on the client endpoint, and the key for the server.
    pub fn pool(
        &self,
        settings: TunnelSettings,
    ) -> (Arc<super::client::Pool>, super::client::PoolKey) {
        let pool = super::client::Pool::new(
            self.client.clone(),
            self.bundles.clone(),
            settings,
            self.metrics.clone(),
        );
        let key = super::client::PoolKey {
            src: self.client_svid.id.clone(),
            dst: self.server_id.clone(),
            addr: self.server.local_addr().expect("bound"),
        };
        (pool, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Whether the peer then acknowledges less often depends on timing (quinn
    // already acknowledges a whole receive batch at once: ~1 ACK per 57
    // STREAM frames on loopback either way), so the test checks the protocol
    // exchange, not a ratio.

    /// A QUIC connection over loopback between two endpoints built from
    /// `settings`, after 2 MB went from client to server; returns the
    /// client's and the server's view of it.
    async fn transfer(settings: TunnelSettings) -> (quinn::Connection, quinn::Connection) {
        let lo = Loopback::new(&settings);
        let (server, client) = (&lo.server, &lo.client);
        let ccfg = client_config(
            &lo.client_svid,
            lo.bundles.clone(),
            lo.server_id.clone(),
            &lo.metrics,
            &settings,
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let accept = async {
            let conn = server.accept().await.unwrap().await.unwrap();
            let (_tx, mut rx) = conn.accept_bi().await.unwrap();
            rx.read_to_end(4 << 20).await.unwrap();
            conn
        };
        let send = async {
            let conn = client
                .connect_with(ccfg, addr, "tunnel.quicmesh")
                .unwrap()
                .await
                .unwrap();
            let (mut tx, _rx) = conn.open_bi().await.unwrap();
            tx.write_all(&vec![7u8; 2 << 20]).await.unwrap();
            tx.finish().unwrap();
            tx.stopped().await.unwrap();
            conn
        };
        let (s, c) = tokio::join!(accept, send);
        (c, s)
    }

    #[tokio::test]
    async fn ack_threshold_is_sent_to_the_peer() {
        let (c, _s) = transfer(TunnelSettings::default()).await;
        assert_eq!(
            c.stats().frame_tx.ack_frequency,
            0,
            "default: no ACK_FREQUENCY frame"
        );

        let (c, s) = transfer(TunnelSettings {
            ack_threshold: Some(15),
            ..TunnelSettings::default()
        })
        .await;
        assert!(
            c.stats().frame_tx.ack_frequency >= 1,
            "{:?}",
            c.stats().frame_tx
        );
        assert!(
            s.stats().frame_rx.ack_frequency >= 1,
            "{:?}",
            s.stats().frame_rx
        );
    }

    /// The tunnel's TLS configs, client `a` → server `b` from one CA: the
    /// client on the build's provider with `kx` first, the server on
    /// `server`.
    fn tls_pair(
        kx: KeyExchange,
        server: CryptoProvider,
    ) -> Result<(Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>), ConfigError> {
        let ca = crate::identity::ca::Ca::generate("cluster.local").unwrap();
        let mut bundles = TrustBundles::new();
        bundles
            .insert("cluster.local", &[ca.cert_der().clone()])
            .unwrap();
        let bundles = Arc::new(bundles);
        let (a, b) = (
            SpiffeId::parse("spiffe://cluster.local/ns/a/sa/a").unwrap(),
            SpiffeId::parse("spiffe://cluster.local/ns/b/sa/b").unwrap(),
        );
        let life = Duration::from_secs(600);
        let metrics = TunnelMetrics::new();
        let client = client_tls(
            &ca.mint(&a, life).unwrap(),
            bundles.clone(),
            b.clone(),
            &metrics,
            Arc::new(kx.preferred_by(&crate::crypto_provider())?),
        )?;
        let server = server_tls(
            &ca.mint(&b, life).unwrap(),
            bundles,
            Box::new(|_| true),
            &metrics,
            Arc::new(server),
        )?;
        Ok((Arc::new(client), Arc::new(server)))
    }

    /// The group both ends agreed on, and whether it took a HelloRetryRequest.
    fn negotiate(kx: KeyExchange, server: CryptoProvider) -> (NamedGroup, bool) {
        let (client, server) = tls_pair(kx, server).unwrap();
        let name = rustls_pki_types::ServerName::try_from("b.quicmesh").unwrap();
        let (c, s) = handshake_in_memory(client, server, name).unwrap();
        let group = c.negotiated_key_exchange_group().unwrap().name();
        assert_eq!(
            Some(group),
            s.negotiated_key_exchange_group().map(|g| g.name())
        );
        let retried = c.handshake_kind() == Some(rustls::HandshakeKind::FullWithHelloRetryRequest);
        // Nothing to resume: the server issues no ticket.
        assert_eq!(c.tls13_tickets_received(), 0);
        (group, retried)
    }

    #[test]
    fn the_tunnel_client_chooses_the_key_exchange_in_one_round_trip() {
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(
            negotiate(KeyExchange::X25519, ring.clone()),
            (NamedGroup::X25519, false)
        );
        assert_eq!(
            negotiate(KeyExchange::X25519, (*crate::crypto_provider()).clone()),
            (NamedGroup::X25519, false)
        );
        #[cfg(not(feature = "aws-lc-rs"))]
        {
            let err = tls_pair(KeyExchange::X25519Mlkem768, ring).unwrap_err();
            assert!(err.to_string().contains("aws-lc-rs feature"), "{err}");
        }
        #[cfg(feature = "aws-lc-rs")]
        {
            let aws = rustls::crypto::aws_lc_rs::default_provider();
            // Both ends on aws-lc-rs: the hybrid.
            assert_eq!(
                negotiate(KeyExchange::X25519Mlkem768, aws),
                (NamedGroup::X25519MLKEM768, false)
            );
            // A server without ML-KEM takes the X25519 share sent beside it.
            assert_eq!(
                negotiate(KeyExchange::X25519Mlkem768, ring),
                (NamedGroup::X25519, false)
            );
        }
    }
}
