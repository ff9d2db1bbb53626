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
        let svc = &conn.parent.service;
        let service = conn.parent.metric_label();
        let endpoints = self.directory.endpoints(svc);
        let addrs: Vec<_> = endpoints.iter().map(|e| e.addr).collect();
        let Some((i, pending)) = self.balancer.choose(&addrs) else {
            tracing::warn!(src.identity = %conn.peer, dst.service = %service, "TCP connection refused at the waypoint: no healthy endpoint");
            self.metrics.tcp(service, "no_healthy_endpoint");
            return Outcome::StreamReset;
        };
        let ep = endpoints[i].clone();
        if let Err(f) = self.authorize(&conn, &ep) {
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
        // The policies may change while it runs: each new config decides
        // them again for this client and endpoint, and a connection no
        // longer allowed is cut (as ztunnel does for its own).
        let mut changes = self.directory.changes();
        let mut watching = true;
        let copy = tokio::io::copy_bidirectional(&mut io, &mut up);
        tokio::pin!(copy);
        let copied = loop {
            tokio::select! {
                r = &mut copy => break r.ok(),
                c = changes.changed(), if watching => {
                    if c.is_err() {
                        watching = false;
                    } else if let Err(f) = self.authorize(&conn, &ep) {
                        tracing::warn!(src.identity = %conn.peer, dst.service = %service, upstream = %ep.addr, error = %f, "TCP connection cut at the waypoint: a policy change denies it");
                        self.metrics.tcp(service, "authz_revoked");
                        return Outcome::StreamReset;
                    }
                }
            }
        };
        let (outcome, (sent, received)) = match copied {
            Some(n) => (Outcome::Closed, n),
            None => (Outcome::StreamReset, (0, 0)),
        };
        self.metrics.tcp(service.clone(), outcome.label());
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
