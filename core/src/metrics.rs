//! Prometheus metrics shared by every proxy, and the HTTP endpoint serving them.
//!
//! Each binary owns one `prometheus_client::registry::Registry`; the families
//! here register into it. Label values are bounded: sides, reasons and
//! directions are fixed sets; principals are SPIFFE IDs of real workloads.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub side: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
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
        self.tls.register(reg);
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

/// Produces the answer for one HTTP path of the admin/metrics server.
pub type Handler = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>> + Send + Sync,
>;

/// A [`Handler`] from an async closure (answering a body, or a [`Reply`]).
pub fn handler<F, Fut, R>(f: F) -> Handler
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send + 'static,
    R: Into<Reply>,
{
    Arc::new(move || {
        let fut = f();
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
                                let r = h().await;
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
