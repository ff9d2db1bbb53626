//! A tunnelled connection served as HTTP (HTTP/1.1 or HTTP/2, detected from
//! the preface), and why it ended when its client was cut off: each such
//! close is logged with its reason and counted in
//! `quicmesh_waypoint_downstream_closed_total`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use quicmesh_core::tunnel::pump::Outcome;
use tokio_util::sync::CancellationToken;

use super::{
    Conn, Directory, Waypoint, HEADER_TIMEOUT, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MAX_HEADERS,
    MAX_HEADER_BYTES, MAX_PENDING_RESETS, MAX_STREAMS,
};

impl<D: Directory> Waypoint<D> {
    /// Serves one tunnelled connection as HTTP until it ends.
    pub(super) async fn serve<T>(
        self: Arc<Self>,
        conn: Arc<Conn>,
        io: TokioIo<T>,
        stop: CancellationToken,
    ) -> Outcome
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        self.metrics.connections.inc();
        let _served = ConnectionGauge(&self.metrics.connections);
        let wp = self.clone();
        // Whether a request has started: a connection that sends none
        // within HEADER_TIMEOUT (nothing, or half an HTTP/2 preface, which
        // hyper's version detection waits for forever) is closed.
        let started = Arc::new(AtomicBool::new(false));
        let seen = started.clone();
        let client = conn.clone();
        let service = hyper::service::service_fn(move |req| {
            let (wp, conn) = (wp.clone(), client.clone());
            seen.store(true, Ordering::Relaxed);
            async move { Ok::<_, std::convert::Infallible>(wp.handle(&conn, req).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES.max(8192))
            .max_headers(MAX_HEADERS);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .max_concurrent_streams(MAX_STREAMS)
            .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
            // An idle HTTP/2 client that stopped answering pings goes.
            .keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        // With upgrades: a WebSocket request's connection becomes its stream.
        let served = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(served);
        let first = tokio::time::sleep(HEADER_TIMEOUT);
        tokio::pin!(first);
        let (mut first_checked, mut draining) = (false, false);
        loop {
            tokio::select! {
                r = &mut served => return match r {
                    Ok(()) => Outcome::Closed,
                    Err(e) => {
                        match cut_off(&*e) {
                            Some(reason) => self.closed(&conn, reason, &e),
                            None => tracing::debug!(error = %e, "downstream connection ended with an error"),
                        }
                        Outcome::StreamReset
                    }
                },
                _ = &mut first, if !first_checked => {
                    first_checked = true;
                    if !started.load(Ordering::Relaxed) {
                        self.closed(&conn, "no_request", &format!("no request within {HEADER_TIMEOUT:?}"));
                        return Outcome::Stopped;
                    }
                }
                // Drain: no new requests; those in flight finish (the
                // tunnel server's deadline bounds them).
                _ = stop.cancelled(), if !draining => {
                    draining = true;
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }

    /// A downstream connection closed for what its client did.
    fn closed(&self, conn: &Conn, reason: &'static str, detail: &dyn std::fmt::Display) {
        tracing::warn!(
            src.identity = %conn.peer,
            dst.service = %conn.parent.metric_label(),
            reason,
            detail = %detail,
            "downstream connection closed"
        );
        self.metrics.downstream_closed(reason);
    }
}

/// Counts a served connection while it lives.
struct ConnectionGauge<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for ConnectionGauge<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Why a served connection's error means the waypoint cut its client off
/// (a fixed word for the metric), or None when it just ended: the client
/// went away, reset, or the tunnel failed.
fn cut_off(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<h2::Error>() {
            return h2_cut_off(e);
        }
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            if e.is_timeout() {
                return Some("header_timeout");
            }
            if e.is_parse_too_large() {
                return Some("head_too_large");
            }
            if e.is_parse() {
                return Some("malformed_request");
            }
        }
        cause = e.source();
    }
    None
}

/// An HTTP/2 connection error the h2 library raised against its peer, by
/// its GOAWAY's reason. ENHANCE_YOUR_CALM is what h2 answers to abuse:
/// streams reset before they were served (rapid reset, CVE-2023-44487),
/// too many streams it had to reset itself, floods of small DATA frames, a
/// header list far over the limit (the error does not say which).
fn h2_cut_off(e: &h2::Error) -> Option<&'static str> {
    if !(e.is_go_away() && e.is_library()) {
        return None;
    }
    Some(if e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) {
        "http2_abuse"
    } else {
        "protocol_error"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_ends_are_not_cut_offs() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(cut_off(&io), None);
        let remote = h2::Error::from(h2::Reason::CANCEL);
        assert_eq!(h2_cut_off(&remote), None);
    }
}
