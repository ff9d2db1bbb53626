//! The tunnel server: accepts QUIC connections, reads the client's proven
//! identity, accepts HTTP/3 CONNECT requests, asks the [`Inbound`] for the
//! upstream TCP connection, answers 200 only once it is connected, and pumps.
//!
//! Both CONNECT forms are accepted: RFC 9114 §4.4 (`:method`, `:authority`
//! only) and the one h3's own client sends (with `:scheme` and `:path`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::pump::pump;
use crate::identity::svid::cert_info;
use crate::identity::SpiffeId;
use crate::metrics::{StreamLabels, TunnelMetrics};

/// A CONNECT request from an authenticated peer.
#[derive(Debug)]
pub struct InboundRequest {
    /// The client's SPIFFE ID, proven by its certificate.
    pub peer: SpiffeId,
    /// The client's UDP address.
    pub peer_addr: SocketAddr,
    /// The `:authority`: the original destination `ip:port`.
    pub authority: SocketAddr,
    /// Request headers (`forwarded`, `baggage`, `traceparent`): hints only;
    /// nothing in them is trusted beyond what the certificate proves.
    pub headers: http::HeaderMap,
}

/// Why an inbound request was refused: the status sent and the reason logged.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: StatusCode,
    /// Metric label, a fixed word.
    pub label: &'static str,
    pub reason: String,
}

impl Refused {
    pub fn new(status: StatusCode, label: &'static str, reason: impl Into<String>) -> Self {
        Refused {
            status,
            label,
            reason: reason.into(),
        }
    }
}

/// The upstream side of an accepted request.
pub struct Upstream {
    pub tcp: TcpStream,
    /// Cancelling it cuts the connection (stream reset, RST to the app):
    /// e.g. when policy no longer allows it.
    pub stop: CancellationToken,
    /// The authorization decision, for the access log.
    pub authz: String,
    /// Held until the connection ends (e.g. its entry in a registry of live
    /// connections).
    pub guard: Box<dyn Send + Sync>,
}

impl Upstream {
    /// An upstream no one else can stop.
    pub fn plain(tcp: TcpStream) -> Self {
        Upstream {
            tcp,
            stop: CancellationToken::new(),
            authz: "allow".into(),
            guard: Box::new(()),
        }
    }
}

/// What the server does with an accepted request: check it and connect upstream.
pub trait Inbound: Send + Sync + 'static {
    /// Our own identity, for logs and metrics.
    fn local_identity(&self) -> SpiffeId;
    fn connect(
        &self,
        req: &InboundRequest,
    ) -> impl std::future::Future<Output = Result<Upstream, Refused>> + Send;
}

/// Serves `endpoint` until `drain` is cancelled; then refuses new connections,
/// lets live streams finish for up to `deadline`, and closes the endpoint.
pub async fn serve<I: Inbound>(
    endpoint: quinn::Endpoint,
    inbound: Arc<I>,
    metrics: Arc<TunnelMetrics>,
    max_header_bytes: u64,
    drain: CancellationToken,
    deadline: Duration,
) {
    let tracker = TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = drain.cancelled() => break,
        };
        let inbound = inbound.clone();
        let metrics = metrics.clone();
        let t2 = tracker.clone();
        let d2 = drain.clone();
        tracker.spawn(async move {
            connection(incoming, inbound, metrics, max_header_bytes, t2, d2).await;
        });
    }
    endpoint.set_server_config(None);
    tracker.close();
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::info!(
            remaining = tracker.len(),
            "drain deadline passed; closing remaining tunnel connections"
        );
    }
    endpoint.close(0u32.into(), b"draining");
}

async fn connection<I: Inbound>(
    incoming: quinn::Incoming,
    inbound: Arc<I>,
    metrics: Arc<TunnelMetrics>,
    max_header_bytes: u64,
    tracker: TaskTracker,
    drain: CancellationToken,
) {
    let peer_addr = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            // Certificate refusals were already logged with their reason by
            // the verifier; this names the connection.
            tracing::warn!(%peer_addr, error = %e, "tunnel handshake failed");
            metrics.handshake("server", "failed");
            return;
        }
    };
    metrics.handshake("server", "ok");
    let Some(peer) = peer_identity(&conn) else {
        tracing::warn!(%peer_addr, "tunnel peer has no usable SPIFFE certificate");
        conn.close(0x0101u32.into(), b"no identity");
        return;
    };
    metrics.quic_connections_active.inc();
    let span = tracing::info_span!("tunnel_conn", %peer_addr, src.identity = %peer, dst.identity = %inbound.local_identity());
    async {
        let mut h3c = match h3::server::builder()
            .enable_extended_connect(true)
            .max_field_section_size(max_header_bytes)
            .build::<_, Bytes>(h3_quinn::Connection::new(conn))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP/3 setup failed");
                return;
            }
        };
        let mut draining = false;
        loop {
            let accepted = tokio::select! {
                a = h3c.accept() => a,
                _ = drain.cancelled(), if !draining => {
                    // GOAWAY: the client opens no new streams here; live
                    // ones finish, then the connection ends.
                    draining = true;
                    let _ = h3c.shutdown(0).await;
                    continue;
                }
            };
            match accepted {
                Ok(Some(resolver)) => {
                    let inbound = inbound.clone();
                    let metrics = metrics.clone();
                    let peer = peer.clone();
                    tracker.spawn(
                        async move {
                            let (req, stream) = match resolver.resolve_request().await {
                                Ok(x) => x,
                                Err(e) => {
                                    tracing::warn!(error = %e, "malformed tunnel request");
                                    metrics.refused("inbound", "malformed_request");
                                    return;
                                }
                            };
                            request(req, stream, peer, peer_addr, inbound, metrics).await;
                        }
                        .in_current_span(),
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    if !e.is_h3_no_error() {
                        tracing::debug!(error = %e, "tunnel connection ended");
                    }
                    break;
                }
            }
        }
    }
    .instrument(span)
    .await;
    metrics.quic_connections_active.dec();
}

/// The peer's SPIFFE ID from its (already verified) certificate.
pub fn peer_identity(conn: &quinn::Connection) -> Option<SpiffeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()?;
    cert_info(certs.first()?).ok().map(|i| i.id)
}

type ServerStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

async fn request<I: Inbound>(
    req: http::Request<()>,
    mut stream: ServerStream,
    peer: SpiffeId,
    peer_addr: SocketAddr,
    inbound: Arc<I>,
    metrics: Arc<TunnelMetrics>,
) {
    let started = Instant::now();
    let checked = check_request(&req).map(|authority| InboundRequest {
        peer: peer.clone(),
        peer_addr,
        authority,
        headers: req.headers().clone(),
    });
    let upstream = match checked {
        Ok(r) => inbound.connect(&r).await.map(|tcp| (r, tcp)),
        Err(e) => Err(e),
    };
    let (ireq, up) = match upstream {
        Ok(x) => x,
        Err(refused) => {
            tracing::warn!(
                status = refused.status.as_u16(),
                reason = %refused.reason,
                authority = ?req.uri().authority().map(|a| a.as_str()),
                "tunnel request refused"
            );
            metrics.refused("inbound", refused.label);
            let resp = http::Response::builder()
                .status(refused.status)
                .body(())
                .expect("status-only response");
            if stream.send_response(resp).await.is_ok() {
                let _ = stream.finish().await;
            }
            return;
        }
    };
    let ok = http::Response::builder()
        .status(StatusCode::OK)
        .body(())
        .expect("status-only response");
    if let Err(e) = stream.send_response(ok).await {
        tracing::debug!(error = %e, "peer went away before the tunnel was answered");
        return;
    }
    let labels = StreamLabels {
        direction: "inbound".into(),
        src_principal: peer.to_string(),
        dst_principal: inbound.local_identity().to_string(),
    };
    metrics.streams_opened.get_or_create(&labels).inc();
    metrics.streams_active.inc();
    let (tx, rx) = stream.split();
    let Upstream {
        tcp,
        stop,
        authz,
        guard,
    } = up;
    let t = pump(tcp, tx, rx, &stop).await;
    drop(guard);
    metrics.streams_active.dec();
    metrics.streams_closed.get_or_create(&labels).inc();
    metrics.bytes_sent.get_or_create(&labels).inc_by(t.sent);
    metrics
        .bytes_received
        .get_or_create(&labels)
        .inc_by(t.received);
    tracing::info!(
        direction = "inbound",
        src.identity = %peer,
        dst.identity = %labels.dst_principal,
        src.addr = %peer_addr,
        dst.addr = %ireq.authority,
        bytes_sent = t.sent,
        bytes_received = t.received,
        outcome = t.outcome.label(),
        %authz,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection complete"
    );
}

/// Checks the request is a CONNECT to an `ip:port` authority.
fn check_request(req: &http::Request<()>) -> Result<SocketAddr, Refused> {
    if req.method() != Method::CONNECT {
        return Err(Refused::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not_connect",
            format!("method {} is not CONNECT", req.method()),
        ));
    }
    if req.extensions().get::<h3::ext::Protocol>().is_some() {
        return Err(Refused::new(
            StatusCode::NOT_IMPLEMENTED,
            "extended_connect",
            "extended CONNECT is not supported on the TCP tunnel",
        ));
    }
    let authority = req.uri().authority().ok_or_else(|| {
        Refused::new(
            StatusCode::BAD_REQUEST,
            "bad_authority",
            "CONNECT without :authority",
        )
    })?;
    authority.as_str().parse::<SocketAddr>().map_err(|_| {
        Refused::new(
            StatusCode::BAD_REQUEST,
            "bad_authority",
            format!("authority {authority} is not ip:port"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_method_and_authority() {
        let ok = http::Request::builder()
            .method(Method::CONNECT)
            .uri("10.0.0.1:80")
            .body(())
            .unwrap();
        assert_eq!(check_request(&ok).unwrap(), "10.0.0.1:80".parse().unwrap());
        let v6 = http::Request::builder()
            .method(Method::CONNECT)
            .uri("[fd00::1]:8080")
            .body(())
            .unwrap();
        assert_eq!(
            check_request(&v6).unwrap(),
            "[fd00::1]:8080".parse().unwrap()
        );
        let get = http::Request::builder()
            .method(Method::GET)
            .uri("https://10.0.0.1:80/")
            .body(())
            .unwrap();
        assert_eq!(check_request(&get).unwrap_err().label, "not_connect");
        let name = http::Request::builder()
            .method(Method::CONNECT)
            .uri("example.com:80")
            .body(())
            .unwrap();
        assert_eq!(check_request(&name).unwrap_err().label, "bad_authority");
    }
}
