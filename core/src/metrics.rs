//! Prometheus metrics shared by every proxy, and the HTTP endpoint serving them.
//!
//! Each binary owns one `prometheus_client::registry::Registry`; the families
//! here register into it. Label values are bounded: sides, reasons and
//! directions are fixed sets; principals are SPIFFE IDs of authenticated
//! peers, at most [`MAX_PRINCIPALS`] distinct ones per process (then
//! `other`, [`LabelCap`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// The buckets of every duration histogram, in seconds: from half a
/// millisecond (a request through a waypoint on one node) to an hour (a
/// long-lived tunnelled connection).
pub const DURATION_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0,
    300.0, 1800.0, 3600.0,
];

/// A histogram of durations in seconds ([`DURATION_BUCKETS`]), usable in a
/// `Family` (it has a default).
#[derive(Debug, Clone)]
pub struct Seconds(Histogram);

impl Default for Seconds {
    fn default() -> Self {
        Seconds(Histogram::new(DURATION_BUCKETS))
    }
}

impl Seconds {
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

impl TypedMetric for Seconds {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Seconds {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Distinct principals the tunnel metrics name before the rest are
/// counted as `other`: a mesh's identities are its service accounts, far
/// fewer; a flood of distinct peers (10,000 workloads of a compromised
/// CA, say) cannot grow the series without end.
pub const MAX_PRINCIPALS: usize = 1000;

/// Caps the distinct values of a label: the first `cap` values seen are
/// kept, any later new one becomes [`LabelCap::OTHER`].
#[derive(Debug)]
pub struct LabelCap {
    cap: usize,
    seen: Mutex<HashSet<String>>,
}

impl LabelCap {
    pub const OTHER: &'static str = "other";

    pub fn new(cap: usize) -> Self {
        LabelCap {
            cap,
            seen: Mutex::default(),
        }
    }

    /// `value` if it is (or can still become) one of the kept values.
    pub fn admit(&self, value: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() < self.cap {
            seen.insert(value.to_string());
            return value.to_string();
        }
        Self::OTHER.to_string()
    }
}

impl Default for LabelCap {
    fn default() -> Self {
        LabelCap::new(MAX_PRINCIPALS)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub side: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// A proxy's config stream as gauges: the version in effect, and when an
/// update was last taken (`ack`) or refused (`nack`).
#[derive(Default, Debug, Clone)]
pub struct ConfigGauges {
    version: Gauge,
    last: Family<ResultLabels, Gauge>,
}

impl ConfigGauges {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "quicmesh_proxy_config_version",
            "The version of the controller's config in effect (0: none yet)",
            self.version.clone(),
        );
        reg.register(
            "quicmesh_proxy_config_last_update_timestamp_seconds",
            "When the proxy last took (result=ack) or refused (result=nack) a config update, seconds since the epoch",
            self.last.clone(),
        );
    }

    /// An update was taken or refused (`result`); `version` is in effect.
    pub fn updated(&self, result: &str, version: u64) {
        self.version.set(i64::try_from(version).unwrap_or(i64::MAX));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.last
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .set(now as i64);
    }
}

/// Certificate refusals during TLS handshakes, and trust bundle updates.
#[derive(Default, Debug, Clone)]
pub struct TlsMetrics {
    refusals: Family<RefusalLabels, Counter>,
    bundle_updates: Family<ResultLabels, Counter>,
}

impl TlsMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "quicmesh_tls_refusals",
            "Peer certificates refused during TLS handshakes, by our side and reason",
            self.refusals.clone(),
        );
        reg.register(
            "quicmesh_trust_bundle_updates",
            "Trust bundles received from the CA, by result (replaced, unchanged, malformed: ignored, untrusted: the answer refused)",
            self.bundle_updates.clone(),
        );
    }

    /// A trust bundle from the CA was taken or not (`result`).
    pub fn bundle_update(&self, result: &str) {
        self.bundle_updates
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn bundle_updates(&self, result: &str) -> u64 {
        self.bundle_updates
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .get()
    }

    pub fn refused(&self, side: &str, reason: &str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                side: side.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn count(&self, side: &str, reason: &str) -> u64 {
        self.refusals
            .get_or_create(&RefusalLabels {
                side: side.into(),
                reason: reason.into(),
            })
            .get()
    }
}

/// What became of each answer from a SPIFFE Workload API
/// (`--svid-source workload-api:`), and whether its stream is up.
#[derive(Default, Debug, Clone)]
pub struct WorkloadApiMetrics {
    updates: Family<ResultLabels, Counter>,
    connected: Gauge,
}

impl WorkloadApiMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "quicmesh_workload_api_updates",
            "Answers from the SPIFFE Workload API, by result (applied; unchanged; malformed, too_large, untrusted: refused, the last good SVIDs and bundles kept; denied: the agent has no SVID for us, SVIDs withdrawn)",
            self.updates.clone(),
        );
        reg.register(
            "quicmesh_workload_api_connected",
            "1 while the SPIFFE Workload API stream is up",
            self.connected.clone(),
        );
    }

    pub fn update(&self, result: &str) {
        self.updates
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    pub fn updates(&self, result: &str) -> u64 {
        self.updates
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .get()
    }

    pub fn set_connected(&self, up: bool) {
        self.connected.set(i64::from(up));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// "inbound" (we are the tunnel server) or "outbound".
    pub direction: String,
    pub src_principal: String,
    pub dst_principal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub direction: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub side: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// "inbound" or "outbound".
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabels {
    /// "client" or "server".
    pub side: &'static str,
}

/// Tunnel streams (one per TCP connection), bytes, and refusals.
#[derive(Default, Debug)]
pub struct TunnelMetrics {
    pub streams_opened: Family<StreamLabels, Counter>,
    pub streams_closed: Family<StreamLabels, Counter>,
    pub streams_active: Gauge,
    pub bytes_sent: Family<StreamLabels, Counter>,
    pub bytes_received: Family<StreamLabels, Counter>,
    pub refusals: Family<ReasonLabels, Counter>,
    pub handshakes: Family<HandshakeLabels, Counter>,
    pub quic_connections_active: Gauge,
    /// Tunnel server handshakes admitted and not yet complete.
    pub handshakes_in_flight: Gauge,
    pub tls: TlsMetrics,
    /// How long each tunnel stream (one TCP connection) lasted.
    pub stream_durations: Family<DirectionLabels, Seconds>,
    /// How long each successful QUIC handshake took.
    pub handshake_durations: Family<SideLabels, Seconds>,
    /// The principals the stream labels name ([`MAX_PRINCIPALS`]).
    pub principals: LabelCap,
}

impl TunnelMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "quicmesh_tunnel_streams_opened",
            "Tunnel streams (one per TCP connection) opened",
            self.streams_opened.clone(),
        );
        reg.register(
            "quicmesh_tunnel_streams_closed",
            "Tunnel streams closed",
            self.streams_closed.clone(),
        );
        reg.register(
            "quicmesh_tunnel_streams_active",
            "Tunnel streams open now",
            self.streams_active.clone(),
        );
        reg.register(
            "quicmesh_tunnel_sent_bytes",
            "Application bytes sent into tunnel streams",
            self.bytes_sent.clone(),
        );
        reg.register(
            "quicmesh_tunnel_received_bytes",
            "Application bytes received from tunnel streams",
            self.bytes_received.clone(),
        );
        reg.register(
            "quicmesh_tunnel_refusals",
            "Tunnel requests refused, by reason",
            self.refusals.clone(),
        );
        reg.register(
            "quicmesh_quic_handshakes",
            "QUIC handshakes by our side and result",
            self.handshakes.clone(),
        );
        reg.register(
            "quicmesh_quic_connections_active",
            "QUIC connections open now",
            self.quic_connections_active.clone(),
        );
        reg.register(
            "quicmesh_quic_handshakes_in_flight",
            "Tunnel server QUIC handshakes admitted and not yet complete",
            self.handshakes_in_flight.clone(),
        );
        reg.register(
            "quicmesh_tunnel_stream_duration_seconds",
            "How long tunnel streams (one per TCP connection) lasted, by direction",
            self.stream_durations.clone(),
        );
        reg.register(
            "quicmesh_quic_handshake_duration_seconds",
            "How long successful QUIC handshakes took, by our side",
            self.handshake_durations.clone(),
        );
        self.tls.register(reg);
    }

    /// The labels of a stream between `src` and `dst`, principals capped
    /// ([`MAX_PRINCIPALS`]).
    pub fn stream_labels(&self, direction: &str, src: &str, dst: &str) -> StreamLabels {
        StreamLabels {
            direction: direction.into(),
            src_principal: self.principals.admit(src),
            dst_principal: self.principals.admit(dst),
        }
    }

    /// A successful handshake by `side` that took `took`.
    pub fn handshake_took(&self, side: &'static str, took: Duration) {
        self.handshake_durations
            .get_or_create(&SideLabels { side })
            .observe(took);
    }

    /// A stream of `direction` that lasted since `opened`.
    pub fn stream_ended(&self, direction: &str, opened: Instant) {
        let direction = if direction == "inbound" {
            "inbound"
        } else {
            "outbound"
        };
        self.stream_durations
            .get_or_create(&DirectionLabels { direction })
            .observe(opened.elapsed());
    }

    pub fn refused(&self, direction: &str, reason: &str) {
        self.refusals
            .get_or_create(&ReasonLabels {
                direction: direction.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn handshake(&self, side: &str, result: &str) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                side: side.into(),
                result: result.into(),
            })
            .inc();
    }
}

/// Encodes the registry in the Prometheus text format.
pub fn encode(reg: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, reg).expect("writing to a String");
    out
}

/// The Content-Type of a scrape: the OpenMetrics text format, which is
/// what [`encode`] writes (Prometheus 3 refuses a scrape whose type it
/// cannot tell).
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Content-Type of plain answers (`ready`, errors).
pub const TEXT: &str = "text/plain; charset=utf-8";
/// The Content-Type of dumps and status pages.
pub const JSON: &str = "application/json";

/// An answer of the admin/metrics server: 200 with a body, unless said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
}

impl Reply {
    /// `status` with a plain-text `body`.
    pub fn text(status: u16, body: String) -> Self {
        Reply {
            status,
            body,
            content_type: TEXT,
        }
    }
}

/// 200, plain text.
impl From<String> for Reply {
    fn from(body: String) -> Self {
        Reply::text(200, body)
    }
}

/// 200, the value as indented JSON.
impl From<serde_json::Value> for Reply {
    fn from(v: serde_json::Value) -> Self {
        let mut body = serde_json::to_string_pretty(&v).expect("a Value always serializes");
        body.push('\n');
        Reply {
            status: 200,
            body,
            content_type: JSON,
        }
    }
}

/// The answer to a scrape of `reg`: OpenMetrics text with its type.
pub fn scrape(reg: &Registry) -> Reply {
    Reply {
        status: 200,
        body: encode(reg),
        content_type: OPENMETRICS,
    }
}

/// What a request to the admin/metrics server asked: its method and query.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    pub method: String,
    pub query: String,
}

impl Asked {
    /// The value of `name` in the query (`a=1&name=x`), percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }
}

/// `%XX` escapes decoded (a bad one is kept as it is).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Produces the answer for one HTTP path of the admin/metrics server.
pub type Handler = Arc<
    dyn Fn(Asked) -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>
        + Send
        + Sync,
>;

/// A [`Handler`] from an async closure (answering a body, or a [`Reply`]),
/// whatever the method and query.
pub fn handler<F, Fut, R>(f: F) -> Handler
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
    R: Into<Reply>,
{
    handler_with(move |_| f())
}

/// A [`Handler`] from an async closure of what was asked.
pub fn handler_with<F, Fut, R>(f: F) -> Handler
where
    F: Fn(Asked) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
    R: Into<Reply>,
{
    Arc::new(move |asked| {
        let fut = f(asked);
        Box::pin(async move { fut.await.into() })
    })
}

/// Serves GET requests for fixed paths (e.g. `/metrics`, `/healthz/ready`,
/// `/config_dump`) over HTTP/1.1 until `shutdown` is cancelled.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    routes: Vec<(&'static str, Handler)>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let routes = Arc::new(routes);
    loop {
        let (stream, _peer): (_, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "admin accept failed"); continue; }
            },
            _ = shutdown.cancelled() => return,
        };
        let routes = routes.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let routes = routes.clone();
                    async move {
                        let found = routes.iter().find(|(p, _)| *p == req.uri().path());
                        let resp = match found {
                            Some((_, h)) => {
                                let r = h(Asked {
                                    method: req.method().to_string(),
                                    query: req.uri().query().unwrap_or_default().to_string(),
                                })
                                .await;
                                hyper::Response::builder()
                                    .status(r.status)
                                    .header(hyper::header::CONTENT_TYPE, r.content_type)
                                    .body(Full::new(Bytes::from(r.body)))
                                    .unwrap_or_else(|_| {
                                        hyper::Response::new(Full::new(Bytes::new()))
                                    })
                            }
                            None => hyper::Response::builder()
                                .status(404)
                                .header(hyper::header::CONTENT_TYPE, TEXT)
                                .body(Full::new(Bytes::from_static(b"not found\n")))
                                .expect("static response"),
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}
