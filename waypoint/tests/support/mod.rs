//! What the waypoint's in-process tests share: identities of the test
//! trust domain, a destination that delivers each CONNECT as a ztunnel
//! does, tunnel servers and the waypoint's client pool over real QUIC.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::certs::{CertManager, SvidSource};
use quicmesh_core::identity::{SharedBundles, SpiffeId, Svid, TrustBundles};
use quicmesh_core::metrics::TunnelMetrics;
use quicmesh_core::tunnel::client::Pool;
use quicmesh_core::tunnel::config::{bind_udp, endpoint, server_config, TunnelSettings};
use quicmesh_core::tunnel::server::{self, Inbound, InboundRequest, Refused, ServerCtx, Upstream};
use quicmesh_core::tunnel::TUNNEL_PORT;
use tokio_util::sync::CancellationToken;

pub const TD: &str = "cluster.local";

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{TD}/{s}")).unwrap()
}

/// The destination side of a workload, as its ztunnel would be: a tunnel
/// server presenting the workload's SVID that delivers each CONNECT to
/// the TCP address it names.
pub struct Deliver(pub SpiffeId);

impl Inbound for Deliver {
    fn local_identity(&self) -> SpiffeId {
        self.0.clone()
    }
    async fn connect(&self, req: &InboundRequest) -> Result<Upstream, Refused> {
        let tcp = tokio::net::TcpStream::connect(req.authority)
            .await
            .map_err(|e| {
                Refused::new(
                    http::StatusCode::BAD_GATEWAY,
                    "connect_failed",
                    e.to_string(),
                )
            })?;
        Ok(Upstream::plain(tcp))
    }
}

/// Starts a tunnel server at `ip:15008` presenting `svid`.
pub fn tunnel_server<I: Inbound>(
    ip: IpAddr,
    svid: &Svid,
    bundles: &Arc<TrustBundles>,
    inbound: I,
    stop: &CancellationToken,
) {
    let settings = TunnelSettings::default();
    let metrics = TunnelMetrics::new();
    let cfg = server_config(
        svid,
        bundles.clone(),
        Box::new(|_| true),
        &metrics,
        &settings,
    )
    .unwrap();
    let sock = bind_udp(SocketAddr::new(ip, TUNNEL_PORT), &settings).unwrap();
    let ep = endpoint(sock, Some(cfg), &settings).unwrap();
    tokio::spawn(server::serve(
        ep,
        Arc::new(inbound),
        ServerCtx::new(metrics, Arc::new(settings)),
        stop.clone(),
        Duration::from_secs(1),
    ));
}

pub fn client_pool(bundles: &Arc<TrustBundles>) -> Arc<Pool> {
    let settings = TunnelSettings::default();
    let sock = bind_udp("127.0.0.1:0".parse().unwrap(), &settings).unwrap();
    let ep = endpoint(sock, None, &settings).unwrap();
    Pool::new(ep, bundles.clone(), settings, TunnelMetrics::new())
}

/// The waypoint's SVID source (the test CA kept in `dir`, SVIDs living
/// `life`, peers checked against `verify`) and its upstreams: `identity`
/// presented over a client pool trusting `bundles`.
pub fn waypoint_upstreams(
    dir: &std::path::Path,
    bundles: &Arc<TrustBundles>,
    verify: impl Into<SharedBundles>,
    life: Duration,
    identity: &SpiffeId,
) -> (Arc<CertManager>, waypoint::upstream::Upstreams) {
    let certs = Arc::new(CertManager::new(
        SvidSource::DevCa {
            ca: Box::new(Ca::load_or_generate(TD, dir).unwrap()),
            lifetime: life,
        },
        verify,
    ));
    let upstreams =
        waypoint::upstream::Upstreams::new(client_pool(bundles), certs.clone(), identity.clone());
    (certs, upstreams)
}

/// The sum of the series of `name` in `text` (a scrape) whose labels
/// include every `key="value"` of `labels`.
pub fn sum_of(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (set, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            labels
                .iter()
                .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}
