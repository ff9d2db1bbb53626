//! Outbound: a connection the pod's app opened, captured at 15001. To a mesh
//! workload it goes through the tunnel; anywhere else it passes through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;
use quicmesh_core::tunnel::client::PoolKey;
use quicmesh_core::tunnel::TUNNEL_PORT;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::socket::{connect_marked, original_dst, reset_on_close};
use quicmesh_core::lb::Lease;

use quicmesh_core::identity::SpiffeId;

use crate::node::PodCtx;
use crate::state::{MeshService, MeshWaypoint, MeshWorkload, State};

pub async fn outbound(ctx: Arc<PodCtx>, tcp: TcpStream, peer: SocketAddr) {
    let started = Instant::now();
    let _ = tcp.set_nodelay(true);
    let dst = match original_dst(&tcp) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(src.addr = %peer, error = %e, "outbound connection without an original destination");
            ctx.shared.metrics.outbound_refused("no_original_dst");
            return;
        }
    };
    let state = ctx.shared.state();
    // A Service VIP: its waypoint, or an endpoint; leased while the
    // connection lives.
    let hop = match state.service_at(dst.ip()) {
        Some(svc) => {
            let chosen = match &svc.waypoint {
                Some(wp) => choose_waypoint(&ctx, svc, wp, dst),
                None => choose_endpoint(&ctx, &state, svc, dst.port()),
            };
            match chosen {
                Ok(x) => x,
                Err((label, reason)) => {
                    tracing::warn!(src.identity = %ctx.identity, dst.addr = %dst, service = %format!("{}/{}", svc.namespace, svc.name), %reason, "outbound connection refused");
                    ctx.shared.metrics.outbound_refused(label);
                    reset_on_close(&tcp);
                    return;
                }
            }
        }
        None => match state.workload_at(dst.ip()) {
            Some(w) if w.in_mesh => Hop::Tunnel(Tunnel::to(w, dst), None),
            _ => Hop::Passthrough(dst, None),
        },
    };
    drop(state);
    match hop {
        Hop::Tunnel(t, _lease) => tunnel(ctx, tcp, peer, dst, t, started).await,
        Hop::Passthrough(target, _lease) => passthrough(ctx, tcp, peer, target, started).await,
    }
}

/// Where a connection goes, with the load-balancer lease held while it lives.
enum Hop {
    Tunnel(Tunnel, Option<Lease>),
    Passthrough(SocketAddr, Option<Lease>),
}

/// A tunnel's far end.
struct Tunnel {
    /// Who must answer: the destination workload's or the waypoint's identity.
    identity: SpiffeId,
    /// The address the tunnel goes to (its UDP port is the tunnel port).
    ip: IpAddr,
    /// The CONNECT authority: the endpoint, or, through a waypoint, the
    /// original destination (the Service's VIP and port).
    authority: SocketAddr,
    /// For the log: `workload` or `waypoint`, and its `namespace/name`.
    kind: &'static str,
    name: String,
}

impl Tunnel {
    fn to(w: &MeshWorkload, target: SocketAddr) -> Self {
        Tunnel {
            identity: w.identity.clone(),
            ip: target.ip(),
            authority: target,
            kind: "workload",
            name: format!("{}/{}", w.workload.namespace, w.workload.name),
        }
    }
}

type Chosen = Result<Hop, (&'static str, String)>;

/// A ready endpoint of `svc` for `port`, by power of two choices.
fn choose_endpoint(ctx: &PodCtx, state: &State, svc: &MeshService, port: u16) -> Chosen {
    let sp = svc
        .ports
        .iter()
        .find(|p| p.port == port)
        .ok_or_else(|| ("no_endpoint", format!("service has no port {port}")))?;
    let ready: Vec<(IpAddr, u16)> = svc
        .endpoints
        .iter()
        .filter(|e| e.ready)
        .filter_map(|e| Some((e.ip, e.target(sp)?)))
        .collect();
    let ips: Vec<IpAddr> = ready.iter().map(|(ip, _)| *ip).collect();
    let (i, lease) = ctx
        .shared
        .balancer
        .choose(&ips)
        .ok_or_else(|| ("no_endpoint", "no ready endpoint".to_string()))?;
    let target = SocketAddr::from(ready[i]);
    Ok(match state.workload_at(target.ip()).filter(|w| w.in_mesh) {
        Some(w) => Hop::Tunnel(Tunnel::to(w, target), Some(lease)),
        None => Hop::Passthrough(target, Some(lease)),
    })
}

/// One of the waypoint's addresses, by power of two choices. Without one,
/// the connection is refused: traffic for a Service that uses a waypoint
/// never goes around it.
fn choose_waypoint(ctx: &PodCtx, svc: &MeshService, wp: &MeshWaypoint, dst: SocketAddr) -> Chosen {
    if !svc.ports.iter().any(|p| p.port == dst.port()) {
        return Err(("no_endpoint", format!("service has no port {}", dst.port())));
    }
    let (i, lease) = ctx.shared.balancer.choose(&wp.addresses).ok_or_else(|| {
        (
            "no_waypoint",
            format!("waypoint {}/{} has no ready pod", wp.namespace, wp.name),
        )
    })?;
    ctx.shared.metrics.via_waypoint.inc();
    Ok(Hop::Tunnel(
        Tunnel {
            identity: wp.identity.clone(),
            ip: wp.addresses[i],
            authority: dst,
            kind: "waypoint",
            name: format!("{}/{}", wp.namespace, wp.name),
        },
        Some(lease),
    ))
}

async fn tunnel(
    ctx: Arc<PodCtx>,
    tcp: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    to: Tunnel,
    started: Instant,
) {
    let svid = match ctx.shared.certs.svid(&ctx.identity).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(src.identity = %ctx.identity, error = %e, "no SVID for the source workload");
            ctx.shared.metrics.outbound_refused("no_svid");
            reset_on_close(&tcp);
            return;
        }
    };
    let key = PoolKey {
        src: ctx.identity.clone(),
        dst: to.identity.clone(),
        addr: SocketAddr::new(to.ip, TUNNEL_PORT),
    };
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&forwarded_for(peer)) {
        headers.insert(http::header::FORWARDED, v);
    }
    let tunnel = match ctx.pool.open(&key, &svid, to.authority, headers).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(
                src.identity = %ctx.identity,
                dst.identity = %to.identity,
                dst.addr = %to.authority,
                via = to.kind,
                reason = e.label(),
                error = %e,
                "outbound tunnel failed"
            );
            ctx.shared.metrics.outbound_refused(e.label());
            reset_on_close(&tcp);
            return;
        }
    };
    let t = tunnel.pump(tcp, CancellationToken::new()).await;
    // Through a waypoint the authority is the original destination; the
    // log names where the tunnel went.
    let via = if to.kind == "waypoint" {
        key.addr
    } else {
        to.authority
    };
    tracing::info!(
        direction = "outbound",
        src.identity = %ctx.identity,
        dst.identity = %to.identity,
        dst.workload = %to.name,
        src.addr = %peer,
        dst.addr = %via,
        dst.original = %dst,
        path = if to.kind == "waypoint" { "waypoint" } else { "tunnel" },
        bytes_sent = t.sent,
        bytes_received = t.received,
        outcome = t.outcome.label(),
        duration_ms = started.elapsed().as_millis() as u64,
        "connection complete"
    );
}

/// RFC 7239 `for=` with the original source.
fn forwarded_for(peer: SocketAddr) -> String {
    match peer {
        SocketAddr::V4(a) => format!("for=\"{a}\""),
        SocketAddr::V6(a) => format!("for=\"[{}]:{}\"", a.ip(), a.port()),
    }
}

async fn passthrough(
    ctx: Arc<PodCtx>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    started: Instant,
) {
    let mut up = match connect_marked(&ctx.worker, dst).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(src.addr = %peer, dst.addr = %dst, error = %e, "passthrough connect failed");
            ctx.shared.metrics.outbound_refused("passthrough_connect");
            reset_on_close(&tcp);
            return;
        }
    };
    ctx.shared.metrics.passthrough.inc();
    let (sent, received) = tokio::io::copy_bidirectional(&mut tcp, &mut up)
        .await
        .unwrap_or((0, 0));
    tracing::info!(
        direction = "outbound",
        src.identity = %ctx.identity,
        src.addr = %peer,
        dst.addr = %dst,
        path = "passthrough",
        bytes_sent = sent,
        bytes_received = received,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection complete"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn forwarded_header() {
        assert_eq!(
            super::forwarded_for("10.0.0.1:5".parse().unwrap()),
            "for=\"10.0.0.1:5\""
        );
        assert_eq!(
            super::forwarded_for("[fd00::1]:5".parse().unwrap()),
            "for=\"[fd00::1]:5\""
        );
    }
}
