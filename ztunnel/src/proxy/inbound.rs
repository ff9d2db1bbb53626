//! Inbound: tunnel streams to this pod (the tunnel server's upstream side)
//! and plaintext connections from peers outside the mesh (15006). Every
//! connection is authorized here, in the destination's ztunnel, before the
//! app is dialled, and stays registered so a policy change can cut it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use quicmesh_core::authz::{Connection, Decision, Verdict};
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::tunnel::server::{Inbound, InboundRequest, Refused, Target, Upstream};
use tokio::net::TcpStream;

use super::socket::{connect_marked, original_dst, reset_on_close};
use crate::live::LiveGuard;
use crate::node::PodCtx;
use crate::ports::ZTUNNEL_PORTS;

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An authorized connection, registered as live.
struct Admitted {
    decision: Decision,
    guard: LiveGuard,
    stop: tokio_util::sync::CancellationToken,
}

/// Registers the connection as live, then decides it against the current
/// state (in this order, so a policy change racing the decision still finds
/// it and re-checks it). Audits and denials are logged and counted here.
fn authorize(
    ctx: &PodCtx,
    principal: Option<SpiffeId>,
    src: SocketAddr,
    dst: SocketAddr,
) -> Result<Admitted, Refused> {
    let s = &ctx.shared;
    let state = s.state();
    let conn = Connection::new(principal, &state.trust_domain, src.ip(), dst.port());
    let (guard, stop) = s
        .live
        .register(&ctx.pod.uid, &ctx.pod.namespace, conn.clone(), src, dst);
    let state = s.state();
    let decision = crate::live::decide(
        &state,
        &s.certs.bundles().load(),
        &ctx.pod.uid,
        &ctx.pod.namespace,
        &conn,
    );
    for policy in &decision.audited {
        s.metrics.authz_audited(policy);
        tracing::info!(
            %policy,
            src.identity = conn.principal.as_ref().map_or("", |p| p.as_str()),
            src.addr = %src,
            dst.addr = %dst,
            authz = %decision,
            "authorization audit"
        );
    }
    match &decision.verdict {
        Verdict::Allow { .. } | Verdict::Vouched { .. } => {
            s.metrics.authz_admitted(match &decision.verdict {
                Verdict::Vouched { .. } => "waypoint",
                Verdict::Allow { policy: Some(_) } => "policy",
                _ => "default",
            });
            Ok(Admitted {
                decision,
                guard,
                stop,
            })
        }
        Verdict::Deny { reason, policy } => {
            s.metrics.authz_denied(policy, reason.label());
            Err(Refused::new(
                StatusCode::FORBIDDEN,
                reason.label(),
                decision.to_string(),
            ))
        }
    }
}

/// Checks that `dst` is this pod's and not ztunnel's own port.
fn check_dst(ctx: &PodCtx, dst: SocketAddr) -> Result<(), Refused> {
    if !ctx.ips.contains(&dst.ip()) {
        return Err(Refused::new(
            StatusCode::MISDIRECTED_REQUEST,
            "not_served_here",
            format!(
                "{} is not an address of pod {}/{} (its IPs: {:?})",
                dst.ip(),
                ctx.pod.namespace,
                ctx.pod.name,
                ctx.ips
            ),
        ));
    }
    if ZTUNNEL_PORTS.contains(&dst.port()) {
        return Err(Refused::new(
            StatusCode::FORBIDDEN,
            "ztunnel_port",
            format!("port {} is ztunnel's own", dst.port()),
        ));
    }
    Ok(())
}

/// Connects to the app from inside the pod.
async fn deliver(ctx: &PodCtx, dst: SocketAddr) -> Result<TcpStream, Refused> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_marked(&ctx.worker, dst)).await {
        Err(_) => Err(Refused::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!("connecting to {dst} timed out"),
        )),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(Refused::new(
            StatusCode::BAD_GATEWAY,
            "upstream_refused",
            format!("{dst} refused the connection"),
        )),
        Ok(Err(e)) => Err(Refused::new(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            format!("connecting to {dst}: {e}"),
        )),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// The tunnel server's view of one pod.
pub struct PodInbound(pub Arc<PodCtx>);

impl Inbound for PodInbound {
    fn local_identity(&self) -> SpiffeId {
        self.0.identity.clone()
    }

    async fn connect(&self, req: &InboundRequest) -> Result<Upstream, Refused> {
        let ctx = &self.0;
        check_dst(ctx, req.authority)?;
        let admitted = authorize(ctx, Some(req.peer.clone()), req.peer_addr, req.authority)?;
        let tcp = deliver(ctx, req.authority).await?;
        Ok(Upstream {
            target: Target::Tcp(tcp),
            stop: admitted.stop,
            authz: admitted.decision.to_string(),
            guard: Box::new(admitted.guard),
        })
    }
}

/// Serves one plaintext connection that arrived at 15006 (a client outside
/// the mesh). No identity is proven: refused in strict mode, otherwise
/// authorized with no principal.
pub async fn plaintext(ctx: Arc<PodCtx>, mut tcp: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let dst = match original_dst(&tcp) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "plaintext inbound without an original destination");
            ctx.shared.metrics.inbound_refused("no_original_dst");
            return;
        }
    };
    let admitted = async {
        check_dst(&ctx, dst)?;
        let admitted = authorize(&ctx, None, peer, dst)?;
        Ok::<_, Refused>((deliver(&ctx, dst).await?, admitted))
    };
    let (mut up, admitted) = match admitted.await {
        Ok(x) => x,
        Err(r) => {
            tracing::warn!(src.addr = %peer, dst.addr = %dst, reason = %r.reason, "plaintext inbound refused");
            ctx.shared.metrics.inbound_refused(r.label);
            reset_on_close(&tcp);
            return;
        }
    };
    ctx.shared.metrics.plaintext_inbound.inc();
    let _ = tcp.set_nodelay(true);
    let (received, sent, outcome) = tokio::select! {
        // An error (a reset on either side) loses the counts.
        r = tokio::io::copy_bidirectional(&mut tcp, &mut up) => match r {
            Ok((received, sent)) => (received, sent, "closed"),
            Err(_) => (0, 0, "tcp_reset"),
        },
        _ = admitted.stop.cancelled() => {
            // No longer allowed: both sides see a reset.
            reset_on_close(&tcp);
            reset_on_close(&up);
            (0, 0, "stopped")
        }
    };
    drop(admitted.guard);
    tracing::info!(
        direction = "inbound_plaintext",
        src.addr = %peer,
        dst.addr = %dst,
        dst.identity = %ctx.identity,
        bytes_sent = sent,
        bytes_received = received,
        outcome,
        authz = %admitted.decision,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection complete"
    );
}
