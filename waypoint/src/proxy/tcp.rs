//! A tunnelled connection by its port's protocol: HTTP (served in the
//! parent module), or opaque TCP passed through to an endpoint.

use std::sync::Arc;
use std::time::Instant;

use hyper_util::rt::TokioIo;
use quicmesh_core::tunnel::connect::ConnectIo;
use quicmesh_core::tunnel::pump::Outcome;
use tokio_util::sync::CancellationToken;

use super::{Conn, Directory, Waypoint};
use crate::sniff;
use crate::upstream::Protocol;

impl<D: Directory> Waypoint<D> {
    /// Serves one tunnelled connection by its port's protocol.
    pub(super) async fn serve_stream(
        self: Arc<Self>,
        conn: Arc<Conn>,
        mut io: ConnectIo,
        stop: CancellationToken,
    ) -> Outcome {
        let (http, first) = match conn.parent.protocol {
            Protocol::Http1 | Protocol::Http2 => (true, bytes::Bytes::new()),
            Protocol::Tcp => (false, bytes::Bytes::new()),
            Protocol::Auto => {
                let (v, first) = sniff::detect(&mut io).await;
                (v == sniff::Verdict::Http, first)
            }
        };
        let io = sniff::Rewind::new(first, io);
        if http {
            self.serve(conn, TokioIo::new(io), stop).await
        } else {
            self.passthrough(conn, io, stop).await
        }
    }

    /// Opaque TCP: the bytes go to an endpoint of the Service, over a
    /// tunnel of the waypoint's own.
    pub(super) async fn passthrough(
        self: Arc<Self>,
        conn: Arc<Conn>,
        mut io: sniff::Rewind<ConnectIo>,
        stop: CancellationToken,
    ) -> Outcome {
        let started = Instant::now();
        // Told of every config from here on: one that arrives while the
        // endpoint is chosen, decided and connected is not missed.
        let changes = self.directory.changes();
        let svc = &conn.parent.service;
        let service = conn.parent.metric_label();
        if let Err(f) = self.authorize_attached(&conn, None) {
            tracing::warn!(src.identity = %conn.peer, dst.service = %service, error = %f, "TCP connection refused at the waypoint");
            self.metrics.tcp(service, f.flag());
            return Outcome::StreamReset;
        }
        let endpoints = self.directory.endpoints(svc);
        let addrs: Vec<_> = endpoints.iter().map(|e| e.addr).collect();
        let Some((i, pending)) = self.balancer.choose(&addrs) else {
            tracing::warn!(src.identity = %conn.peer, dst.service = %service, "TCP connection refused at the waypoint: no healthy endpoint");
            self.metrics.tcp(service, "no_healthy_endpoint");
            return Outcome::StreamReset;
        };
        let ep = endpoints[i].clone();
        if let Err(f) = self.authorize(&conn, &ep, None) {
            drop(pending);
            tracing::warn!(src.identity = %conn.peer, dst.service = %service, upstream = %ep.addr, error = %f, "TCP connection refused at the waypoint");
            self.metrics.tcp(service, f.flag());
            return Outcome::StreamReset;
        }
        let mut up = match self.upstreams.open_stream(&ep).await {
            Ok(up) => up,
            Err(f) => {
                pending.fail();
                tracing::warn!(src.identity = %conn.peer, dst.service = %service, upstream = %ep.addr, flag = f.flag(), error = %f, "TCP connection failed at the waypoint");
                self.metrics.tcp(service, f.flag());
                return Outcome::StreamReset;
            }
        };
        pending.done();
        // A drain does not cut it: a TCP connection has no way to be told
        // to finish, so it runs on until the tunnel server's drain
        // deadline closes the endpoint.
        let _ = stop;
        let decided = Decided {
            client: &conn.client,
            authority: conn.authority,
            endpoint: &ep,
            facts: None,
        };
        let spliced = splice(&*self.directory, decided, changes, &mut io, &mut up).await;
        let (outcome, (sent, received), result) = match spliced {
            Spliced::Ended(Ok(n)) => (Outcome::Closed, n, Outcome::Closed.label()),
            Spliced::Ended(Err(_)) => (Outcome::StreamReset, (0, 0), Outcome::StreamReset.label()),
            Spliced::Revoked(why) => {
                tracing::warn!(src.identity = %conn.peer, dst.service = %service, upstream = %ep.addr, authz = %why, "TCP connection cut at the waypoint: a policy change denies it");
                (Outcome::StreamReset, (0, 0), "authz_revoked")
            }
        };
        self.metrics.tcp(service.clone(), result);
        tracing::info!(
            src.identity = %conn.peer,
            dst.addr = %conn.authority,
            dst.service = %service,
            upstream = %ep.addr,
            bytes_sent = sent,
            bytes_received = received,
            outcome = outcome.label(),
            duration_ms = started.elapsed().as_millis() as u64,
            "tcp connection"
        );
        outcome
    }
}

/// How a [`splice`] ended.
pub(super) enum Spliced {
    /// Either side ended: the bytes copied each way, or the error.
    Ended(std::io::Result<(u64, u64)>),
    /// A new config's policies no longer allow the client to reach the
    /// endpoint (the decision, for the log): cut.
    Revoked(String),
}

/// What a spliced stream was decided for: the client, the destination it
/// asked for, the endpoint, and the request that opened it (an upgrade's).
pub(super) struct Decided<'a> {
    pub client: &'a crate::authz::Client,
    pub authority: std::net::SocketAddr,
    pub endpoint: &'a crate::upstream::Endpoint,
    pub facts: Option<&'a crate::authz::RequestFacts>,
}

impl Decided<'_> {
    /// Both layers again, with the directory's current policies: the
    /// waypoint's attached ones, then the endpoint's.
    fn decide<D: Directory + ?Sized>(&self, directory: &D) -> quicmesh_core::authz::Decision {
        use quicmesh_core::authz::{Decision, DenyReason, Verdict};
        let attached = match directory.attached(self.authority) {
            Some(ps) => self
                .client
                .decide_attached(&ps, self.authority.port(), self.facts),
            None => Decision::deny(DenyReason::UnknownWorkload, "-"),
        };
        if let Verdict::Deny { .. } = attached.verdict {
            return attached;
        }
        let access = directory.access(&self.endpoint.workload);
        self.client
            .decide(access.as_deref(), self.endpoint.addr.port(), self.facts)
    }
}

/// Copies both ways between `a` (the client's side) and `b` (the
/// endpoint's) until either ends. Each new config `changes` announces
/// decides the stream's policies again (quietly: audits and denials were
/// counted when the connection was decided, a revocation is its caller's
/// to count), and the copy is cut when they no longer allow it, as
/// ztunnel does for the connections it admits. `changes` must have been
/// taken before the first decision.
pub(super) async fn splice<D, A, B>(
    directory: &D,
    decided: Decided<'_>,
    mut changes: tokio::sync::watch::Receiver<u64>,
    a: &mut A,
    b: &mut B,
) -> Spliced
where
    D: Directory + ?Sized,
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + ?Sized,
{
    let copy = tokio::io::copy_bidirectional(a, b);
    tokio::pin!(copy);
    let mut watching = true;
    loop {
        tokio::select! {
            r = &mut copy => return Spliced::Ended(r),
            c = changes.changed(), if watching => {
                if c.is_err() {
                    watching = false;
                    continue;
                }
                let decision = decided.decide(directory);
                if let quicmesh_core::authz::Verdict::Deny { .. } = decision.verdict {
                    return Spliced::Revoked(decision.to_string());
                }
            }
        }
    }
}
