//! The tunnel server: admits QUIC connection attempts, completes their
//! handshakes within a deadline, reads the client's proven identity, then
//! ([`requests`]) accepts HTTP/3 CONNECT requests, asks the [`Inbound`] for
//! the upstream (a TCP connection, or a handler in the process), answers 200
//! only once it is ready, and pumps or hands the stream over.
//!
//! Only the RFC 9114 §4.4 CONNECT form (`:method` and `:authority`) is
//! accepted; anything malformed is refused (see `http3::message`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

mod requests;

use super::admission::{Admission, Limits, Ticket};
use super::config::TunnelSettings;
use super::connect::ConnectStream;
use super::pump::Outcome;
use crate::identity::svid::cert_info;
use crate::identity::SpiffeId;
use crate::metrics::TunnelMetrics;

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

/// An in-process handler of an accepted stream (an L7 proxy serving it):
/// gets the stream and the upstream's stop token, returns how it ended.
pub type ServeStream = Box<
    dyn FnOnce(ConnectStream, CancellationToken) -> futures::future::BoxFuture<'static, Outcome>
        + Send,
>;

/// Where an accepted stream's bytes go.
pub enum Target {
    /// Pumped into a connected TCP socket.
    Tcp(TcpStream),
    /// Served in this process.
    Serve(ServeStream),
}

/// The upstream side of an accepted request.
pub struct Upstream {
    pub target: Target,
    /// Cancelling it cuts the connection (stream reset, RST to the app):
    /// e.g. when policy no longer allows it.
    pub stop: CancellationToken,
    /// The authorization decision, for the access log.
    pub authz: String,
    /// Held until the connection ends (e.g. its entry in a registry of live
    /// connections).
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

impl Upstream {
    /// An upstream no one else can stop.
    pub fn plain(tcp: TcpStream) -> Self {
        Upstream {
            target: Target::Tcp(tcp),
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

/// What every connection of a tunnel server shares: its metrics, its
/// settings (limits and timeouts) and handshake admission. One per proxy
/// (all its endpoints); cheap to clone.
#[derive(Clone)]
pub struct ServerCtx {
    pub metrics: Arc<TunnelMetrics>,
    pub settings: Arc<TunnelSettings>,
    /// Which connection attempts get a handshake: shared by every endpoint,
    /// so its caps bound the whole proxy.
    pub admission: Arc<Admission>,
}

impl ServerCtx {
    /// A context whose admission applies `settings`' handshake limits.
    pub fn new(metrics: Arc<TunnelMetrics>, settings: Arc<TunnelSettings>) -> Self {
        let admission = Admission::new(Limits::from(&*settings), metrics.clone());
        ServerCtx {
            metrics,
            settings,
            admission,
        }
    }
}

/// Serves `endpoint` until `drain` is cancelled; then refuses new connections,
/// lets live streams finish for up to `deadline`, and closes the endpoint.
pub async fn serve<I: Inbound>(
    endpoint: quinn::Endpoint,
    inbound: Arc<I>,
    ctx: ServerCtx,
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
        // Retried or refused attempts cost no task and no state.
        let Some((incoming, ticket)) = ctx.admission.screen(incoming) else {
            continue;
        };
        let inbound = inbound.clone();
        let ctx = ctx.clone();
        let t2 = tracker.clone();
        let d2 = drain.clone();
        tracker.spawn(async move {
            connection(incoming, ticket, inbound, ctx, t2, d2).await;
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
    ticket: Ticket,
    inbound: Arc<I>,
    ctx: ServerCtx,
    tracker: TaskTracker,
    drain: CancellationToken,
) {
    let metrics = ctx.metrics.clone();
    let peer_addr = incoming.remote_address();
    // The handshake holds its admission slot until it completes or times
    // out; an abandoned one is closed (dropping it) and frees its state.
    let started = std::time::Instant::now();
    let conn = match tokio::time::timeout(ctx.settings.handshake_timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            // Certificate refusals were already logged with their reason by
            // the verifier; this names the connection. A client with no
            // certificate at all never reaches the verifier: count it here.
            if no_client_certificate(&e) {
                tracing::warn!(%peer_addr, "refused a tunnel client that presented no certificate");
                metrics.tls.refused("server", "no_certificate");
            }
            ctx.admission.report("failed", peer_addr, Some(&e));
            return;
        }
        Err(_) => {
            ctx.admission.report("timeout", peer_addr, None);
            return;
        }
    };
    metrics.handshake("server", "ok");
    metrics.handshake_took("server", started.elapsed());
    let peer = peer_identity(&conn);
    drop(ticket);
    let Some(peer) = peer else {
        tracing::warn!(%peer_addr, "tunnel peer has no usable SPIFFE certificate");
        conn.close(0x0101u32.into(), b"no identity");
        return;
    };
    metrics.quic_connections_active.inc();
    let span = tracing::info_span!("tunnel_conn", %peer_addr, src.identity = %peer, dst.identity = %inbound.local_identity());
    requests::serve_connection(conn, peer, peer_addr, inbound, ctx, tracker, drain)
        .instrument(span)
        .await;
    metrics.quic_connections_active.dec();
}

/// Whether a handshake failed because the client sent no certificate
/// (rustls answers with the TLS 1.3 `certificate_required` alert, 116).
fn no_client_certificate(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::TransportError(t)
        if t.code == quinn::TransportErrorCode::crypto(116))
}

/// The peer's SPIFFE ID from its (already verified) certificate.
pub fn peer_identity(conn: &quinn::Connection) -> Option<SpiffeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()?;
    cert_info(certs.first()?).ok().map(|i| i.id)
}
