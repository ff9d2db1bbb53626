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

/// The destination side of workload `ns/shop/sa/{name}` at `ip` (its
/// ztunnel: a tunnel server with an SVID minted by `ca` that delivers each
/// CONNECT); its identity.
pub fn shop_workload(
    ip: IpAddr,
    name: &str,
    ca: &Ca,
    bundles: &Arc<TrustBundles>,
    stop: &CancellationToken,
) -> SpiffeId {
    let identity = id(&format!("ns/shop/sa/{name}"));
    let svid = ca.mint(&identity, Duration::from_secs(600)).unwrap();
    tunnel_server(ip, &svid, bundles, Deliver(identity.clone()), stop);
    identity
}

pub fn client_pool(bundles: &Arc<TrustBundles>) -> Arc<Pool> {
    let settings = TunnelSettings::default();
    let sock = bind_udp("127.0.0.1:0".parse().unwrap(), &settings).unwrap();
    let ep = endpoint(sock, None, &settings).unwrap();
    Pool::new(ep, bundles.clone(), settings, TunnelMetrics::new())
}

/// The test trust domain's CA, kept in `dir` (made there if new), and the
/// bundles that trust it.
pub fn test_ca(dir: &std::path::Path) -> (Ca, Arc<TrustBundles>) {
    let ca = Ca::load_or_generate(TD, dir).unwrap();
    let mut bundles = TrustBundles::new();
    bundles.insert(TD, &[ca.cert_der().clone()]).unwrap();
    (ca, Arc::new(bundles))
}

/// What a test app answers a request with.
pub type AppResponse = http::Response<http_body_util::Full<bytes::Bytes>>;

/// Serves HTTP/1.1 and HTTP/2 on `addr` (bound when this returns) until
/// the test ends, answering each request with `answer`.
#[allow(dead_code)] // Not every test file serves an uncounted app.
pub async fn serve_app<F, Fut>(addr: SocketAddr, answer: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = AppResponse> + Send + 'static,
{
    serve_app_counted(addr, || {}, answer).await
}

/// [`serve_app`], calling `accepted` for each connection.
pub async fn serve_app_counted<A, F, Fut>(addr: SocketAddr, accepted: A, answer: F)
where
    A: Fn() + Send + 'static,
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = AppResponse> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            accepted();
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let answered = answer(req);
                    async move { Ok::<_, std::convert::Infallible>(answered.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                .await;
            });
        }
    });
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

/// A waypoint for `identity` serving `directory`, behind its tunnel
/// server at `ip`: SVIDs from the dev CA in `dir` (its upstream tunnels
/// verified against `bundles`, as its clients are).
pub async fn start_waypoint<D: waypoint::proxy::Directory>(
    dir: &std::path::Path,
    bundles: &Arc<TrustBundles>,
    identity: &SpiffeId,
    directory: Arc<D>,
    ip: IpAddr,
    stop: &CancellationToken,
) -> Arc<waypoint::proxy::Waypoint<D>> {
    let life = Duration::from_secs(600);
    let (certs, upstreams) = waypoint_upstreams(dir, bundles, bundles.clone(), life, identity);
    let wp = waypoint::proxy::Waypoint::new(identity.clone(), directory, upstreams);
    let svid = certs.svid(identity).await.unwrap();
    tunnel_server(
        ip,
        &svid,
        bundles,
        waypoint::proxy::Server(wp.clone()),
        stop,
    );
    wp
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
