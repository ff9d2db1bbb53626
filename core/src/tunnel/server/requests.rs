//! One authenticated tunnel connection on the server side: HTTP/3 set up,
//! CONNECT streams accepted (the stream limit raised only as the peer uses
//! it), each request head read within a size and a time bound, checked,
//! answered, and pumped; GOAWAY on drain.
//!
//! Every refusal is logged with its reason and counted in
//! `quicmesh_tunnel_refusals_total{direction="inbound",reason}`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{Inbound, InboundRequest, Refused, ServerCtx, Target, Upstream};
use crate::identity::SpiffeId;
use crate::tunnel::connect::ConnectStream;
use crate::tunnel::http3::message::{self, RequestHead};
use crate::tunnel::http3::qpack::QpackError;
use crate::tunnel::http3::stream::{send_head, FrameReader, HeadError, RecvData, SendData};
use crate::tunnel::http3::{code, Http3, Side};
use crate::tunnel::pump::Transfer;

/// Requests in flight on one connection; wakes the drain when none is left.
#[derive(Default)]
struct Active {
    n: AtomicUsize,
    idle: tokio::sync::Notify,
}

struct ActiveGuard(Arc<Active>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_one();
        }
    }
}

/// The next concurrent-stream limit once `active` streams are open under
/// `limit`: doubled while at least half is in use, up to `max`. Quinn keeps
/// state for every stream a peer may open, so the limit starts small and
/// grows only for a peer that uses it.
pub(crate) fn next_stream_limit(active: u64, limit: u64, max: u64) -> u64 {
    if active * 2 > limit && limit < max {
        (limit * 2).min(max)
    } else {
        limit
    }
}

/// Serves the CONNECT streams of an authenticated connection until it
/// ends; on `drain`, sends GOAWAY, refuses later streams, and closes the
/// connection once the accepted ones are done.
pub(super) async fn serve_connection<I: Inbound>(
    conn: quinn::Connection,
    peer: SpiffeId,
    peer_addr: SocketAddr,
    inbound: Arc<I>,
    ctx: ServerCtx,
    tracker: TaskTracker,
    drain: CancellationToken,
) {
    let settings = &ctx.settings;
    let h3 = match Http3::start(
        conn.clone(),
        Side::Server,
        settings.max_header_bytes,
        ctx.metrics.clone(),
    )
    .await
    {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/3 setup failed");
            return;
        }
    };
    let active = Arc::new(Active::default());
    let max_streams = u64::from(settings.max_concurrent_streams);
    let mut limit = u64::from(settings.initial_concurrent_streams).min(max_streams);
    // The first stream ID we have not accepted, and GOAWAY's, once sent.
    let mut next_id = 0u64;
    let mut goaway: Option<u64> = None;
    loop {
        let accepted = tokio::select! {
            a = conn.accept_bi() => a,
            _ = drain.cancelled(), if goaway.is_none() => {
                // Streams from `next_id` on will not be served; the client
                // opens new ones on another connection.
                let _ = h3.goaway(next_id).await;
                goaway = Some(next_id);
                continue;
            }
            _ = active.idle.notified(), if goaway.is_some() && active.n.load(Ordering::Acquire) == 0 => {
                conn.close(code::H3_NO_ERROR.into(), b"draining");
                break;
            }
        };
        let Ok((mut send, mut recv)) = accepted else {
            break;
        };
        let id = recv.id().index() * 4;
        next_id = next_id.max(id + 4);
        if goaway.is_some_and(|g| id >= g) {
            let _ = send.reset(code::H3_REQUEST_REJECTED.into());
            let _ = recv.stop(code::H3_REQUEST_REJECTED.into());
            tracing::debug!(stream = id, "stream opened after GOAWAY rejected");
            ctx.metrics.refused("inbound", "after_goaway");
            continue;
        }
        let now = active.n.fetch_add(1, Ordering::AcqRel) as u64 + 1;
        let raised = next_stream_limit(now, limit, max_streams);
        if raised != limit {
            limit = raised;
            conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u64(limit).expect("bounded"));
        }
        let guard = ActiveGuard(active.clone());
        let (inbound, ctx, peer, h3) = (inbound.clone(), ctx.clone(), peer.clone(), h3.clone());
        tracker.spawn(
            async move {
                request(send, recv, &peer, peer_addr, &*inbound, &ctx, &h3).await;
                drop(guard);
            }
            .in_current_span(),
        );
    }
}

/// How a request is turned away before it reaches the [`Inbound`].
struct Turned {
    /// The status answered, if any (a malformed or stalled stream may get
    /// only a reset).
    status: Option<StatusCode>,
    /// The STOP_SENDING code for the rest of the request stream.
    stop: u32,
    label: &'static str,
    reason: String,
}

/// Reads the request head within the size and time bounds, and checks it
/// is well-formed.
async fn read_head(
    reader: &mut FrameReader,
    ctx: &ServerCtx,
    h3: &Http3,
) -> Result<RequestHead, Option<Turned>> {
    let s = &ctx.settings;
    let turned = |status, stop, label, reason: String| {
        Some(Turned {
            status,
            stop,
            label,
            reason,
        })
    };
    let fields = match tokio::time::timeout(s.header_timeout, reader.head(s.max_header_bytes)).await
    {
        Err(_) => {
            return Err(turned(
                Some(StatusCode::REQUEST_TIMEOUT),
                code::H3_REQUEST_INCOMPLETE,
                "header_timeout",
                format!("no complete request headers within {:?}", s.header_timeout),
            ))
        }
        Ok(Ok(f)) => f,
        Ok(Err(HeadError::TooLarge { len, limit })) => {
            return Err(turned(
                Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
                code::H3_EXCESSIVE_LOAD,
                "header_too_large",
                format!("request headers of {len} bytes, over the limit of {limit}"),
            ))
        }
        Ok(Err(HeadError::Qpack(QpackError::TooLarge(limit)))) => {
            // Small on the wire, over the limit once decoded (RFC 9114
            // §4.2.2 counts names, values and 32 per field).
            return Err(turned(
                Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
                code::H3_EXCESSIVE_LOAD,
                "header_too_large",
                format!("request headers decode to over {limit} bytes"),
            ));
        }
        Ok(Err(HeadError::Incomplete)) => {
            return Err(turned(
                None,
                code::H3_REQUEST_INCOMPLETE,
                "request_incomplete",
                "stream ended before the request headers".into(),
            ))
        }
        Ok(Err(HeadError::Qpack(e))) => {
            // RFC 9204 §2.2.3: a connection error.
            h3.fail(code::QPACK_DECOMPRESSION_FAILED, "qpack", &e.to_string());
            return Err(None);
        }
        Ok(Err(HeadError::Stream(crate::tunnel::http3::stream::StreamError::Frame(e)))) => {
            h3.fail(
                code::H3_FRAME_UNEXPECTED,
                "h3_frame_unexpected",
                &e.to_string(),
            );
            return Err(None);
        }
        Ok(Err(HeadError::Stream(e))) => {
            // The peer reset the stream or the connection is gone.
            tracing::debug!(error = %e, "tunnel request stream ended before its headers");
            return Err(None);
        }
    };
    message::request(&fields).map_err(|m| {
        turned(
            Some(StatusCode::BAD_REQUEST),
            code::H3_MESSAGE_ERROR,
            m.label(),
            format!("malformed request: {m}"),
        )
    })
}

async fn request<I: Inbound>(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    peer: &SpiffeId,
    peer_addr: SocketAddr,
    inbound: &I,
    ctx: &ServerCtx,
    h3: &Http3,
) {
    let started = Instant::now();
    let metrics = &ctx.metrics;
    let mut reader = FrameReader::new(recv);
    let head = match read_head(&mut reader, ctx, h3).await {
        Ok(h) => h,
        Err(None) => return,
        Err(Some(t)) => {
            tracing::warn!(
                status = t.status.map(|s| s.as_u16()),
                reason = %t.reason,
                "tunnel request refused"
            );
            metrics.refused("inbound", t.label);
            let _ = reader.stream().stop(t.stop.into());
            match t.status {
                Some(status) => answer(&mut send, status).await,
                None => {
                    let _ = send.reset(t.stop.into());
                }
            }
            return;
        }
    };
    // The stream's trace span (when traces are on), continuing the trace
    // the client's `traceparent` names; the Inbound's work is inside it.
    let span = tracing::info_span!(
        "inbound",
        otel.name = "tunnel inbound",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        network.transport = "tcp",
        network.peer.address = %peer_addr.ip(),
        network.peer.port = i64::from(peer_addr.port()),
        server.address = tracing::field::Empty,
        server.port = tracing::field::Empty,
        quicmesh.source.principal = %peer,
        quicmesh.destination.principal = %inbound.local_identity(),
        quicmesh.bytes_sent = tracing::field::Empty,
        quicmesh.bytes_received = tracing::field::Empty,
        quicmesh.outcome = tracing::field::Empty,
        quicmesh.refusal = tracing::field::Empty,
    );
    crate::trace::continue_from(&span, &head.headers, None);
    let traced = span.clone();
    serve_request(
        send, reader, head, peer, peer_addr, inbound, ctx, started, traced,
    )
    .instrument(span)
    .await
}

#[allow(clippy::too_many_arguments)]
async fn serve_request<I: Inbound>(
    mut send: quinn::SendStream,
    reader: FrameReader,
    head: RequestHead,
    peer: &SpiffeId,
    peer_addr: SocketAddr,
    inbound: &I,
    ctx: &ServerCtx,
    started: Instant,
    span: tracing::Span,
) {
    let metrics = &ctx.metrics;
    let checked = check_request(&head).map(|authority| InboundRequest {
        peer: peer.clone(),
        peer_addr,
        authority,
        headers: head.headers.clone(),
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
                authority = head.authority.as_deref().unwrap_or(""),
                "tunnel request refused"
            );
            metrics.refused("inbound", refused.label);
            span.record("otel.status_code", "ERROR");
            span.record("quicmesh.refusal", refused.label);
            answer(&mut send, refused.status).await;
            return;
        }
    };
    span.record(
        "server.address",
        tracing::field::display(ireq.authority.ip()),
    );
    span.record("server.port", i64::from(ireq.authority.port()));
    if let Err(e) = send_head(&mut send, message::status_fields(&StatusCode::OK)).await {
        tracing::debug!(error = %e, "peer went away before the tunnel was answered");
        return;
    }
    let labels = metrics.stream_labels("inbound", peer.as_str(), inbound.local_identity().as_str());
    let Upstream {
        target,
        stop,
        authz,
        guard,
    } = up;
    let stream = ConnectStream::new(
        SendData::new(send),
        RecvData::new(reader),
        metrics.clone(),
        labels,
        guard,
    );
    let dst_principal = stream.labels().dst_principal.clone();
    let t = match target {
        Target::Tcp(tcp) => stream.pump(tcp, stop).await,
        Target::Serve(serve) => {
            let bytes = stream.bytes();
            let outcome = serve(stream, stop).await;
            Transfer {
                sent: bytes.sent(),
                received: bytes.received(),
                outcome,
            }
        }
    };
    span.record("quicmesh.bytes_sent", t.sent as i64);
    span.record("quicmesh.bytes_received", t.received as i64);
    span.record("quicmesh.outcome", t.outcome.label());
    tracing::info!(
        direction = "inbound",
        src.identity = %peer,
        dst.identity = %dst_principal,
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

/// Answers with `status` alone and ends the stream.
async fn answer(send: &mut quinn::SendStream, status: StatusCode) {
    if send_head(send, message::status_fields(&status))
        .await
        .is_ok()
    {
        let _ = send.finish();
    }
}

/// Checks the request is a plain CONNECT to an `ip:port` authority.
fn check_request(req: &RequestHead) -> Result<SocketAddr, Refused> {
    if req.method != Method::CONNECT {
        return Err(Refused::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not_connect",
            format!("method {} is not CONNECT", req.method),
        ));
    }
    if let Some(p) = &req.protocol {
        return Err(Refused::new(
            StatusCode::NOT_IMPLEMENTED,
            "extended_connect",
            format!("extended CONNECT ({p}) is not supported on the TCP tunnel"),
        ));
    }
    let authority = req.authority.as_deref().unwrap_or_default();
    authority.parse::<SocketAddr>().map_err(|_| {
        Refused::new(
            StatusCode::BAD_REQUEST,
            "bad_authority",
            format!("authority {authority:?} is not ip:port"),
        )
    })
}

#[cfg(test)]
mod hostile;

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method, authority: &str, protocol: Option<&str>) -> RequestHead {
        RequestHead {
            method,
            authority: Some(authority.into()),
            scheme: None,
            path: None,
            protocol: protocol.map(Into::into),
            headers: Default::default(),
        }
    }

    #[test]
    fn checks_method_and_authority() {
        let ok = head(Method::CONNECT, "10.0.0.1:80", None);
        assert_eq!(check_request(&ok).unwrap(), "10.0.0.1:80".parse().unwrap());
        let v6 = head(Method::CONNECT, "[fd00::1]:8080", None);
        assert_eq!(
            check_request(&v6).unwrap(),
            "[fd00::1]:8080".parse().unwrap()
        );
        let get = head(Method::GET, "10.0.0.1:80", None);
        assert_eq!(check_request(&get).unwrap_err().label, "not_connect");
        let name = head(Method::CONNECT, "example.com:80", None);
        assert_eq!(check_request(&name).unwrap_err().label, "bad_authority");
        let ext = head(Method::CONNECT, "10.0.0.1:80", Some("connect-udp"));
        assert_eq!(check_request(&ext).unwrap_err().label, "extended_connect");
    }

    #[test]
    fn the_stream_limit_grows_with_use_only() {
        assert_eq!(next_stream_limit(1, 32, 4096), 32);
        assert_eq!(next_stream_limit(16, 32, 4096), 32);
        assert_eq!(next_stream_limit(17, 32, 4096), 64);
        assert_eq!(next_stream_limit(3000, 4096, 4096), 4096);
        assert_eq!(next_stream_limit(40, 64, 100), 100);
        // Limits only grow.
        for active in 0..5000 {
            assert!(next_stream_limit(active, 32, 4096) >= 32);
        }
    }
}
