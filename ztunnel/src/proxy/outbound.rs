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

use crate::node::PodCtx;
use crate::state::{MeshService, MeshWorkload, State};

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
    // A Service VIP: choose an endpoint; it is leased while the connection lives.
    let (target, workload, _lease) = match state.service_at(dst.ip()) {
        Some(svc) => match choose_endpoint(&ctx, &state, svc, dst.port()) {
            Ok(x) => x,
            Err(reason) => {
                tracing::warn!(src.identity = %ctx.identity, dst.addr = %dst, service = %format!("{}/{}", svc.namespace, svc.name), %reason, "outbound connection refused");
                ctx.shared.metrics.outbound_refused("no_endpoint");
                reset_on_close(&tcp);
                return;
            }
        },
        None => (dst, state.workload_at(dst.ip()).cloned(), None),
    };
    drop(state);
    match workload.filter(|w| w.in_mesh) {
        Some(w) => tunnel(ctx, tcp, peer, dst, target, w, started).await,
        None => passthrough(ctx, tcp, peer, target, started).await,
    }
}

/// Where a connection goes: the address, the workload there (if known), and
/// the load-balancer lease held while it lives.
type Route = (SocketAddr, Option<Arc<MeshWorkload>>, Option<Lease>);

/// A ready endpoint of `svc` for `port`, by power of two choices.
fn choose_endpoint(
    ctx: &PodCtx,
    state: &State,
    svc: &MeshService,
    port: u16,
) -> Result<Route, String> {
    let sp = svc
        .ports
        .iter()
        .find(|p| p.port == port)
        .ok_or_else(|| format!("service has no port {port}"))?;
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
        .ok_or_else(|| "no ready endpoint".to_string())?;
    let (ip, target_port) = ready[i];
    Ok((
        SocketAddr::new(ip, target_port),
        state.workload_at(ip).cloned(),
        Some(lease),
    ))
}

async fn tunnel(
    ctx: Arc<PodCtx>,
    tcp: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    target: SocketAddr,
    w: Arc<MeshWorkload>,
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
        dst: w.identity.clone(),
        addr: SocketAddr::new(target.ip(), TUNNEL_PORT),
    };
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&forwarded_for(peer)) {
        headers.insert(http::header::FORWARDED, v);
    }
    let tunnel = match ctx.pool.open(&key, &svid, target, headers).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(
                src.identity = %ctx.identity,
                dst.identity = %w.identity,
                dst.addr = %target,
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
    tracing::info!(
        direction = "outbound",
        src.identity = %ctx.identity,
        dst.identity = %w.identity,
        dst.workload = %format!("{}/{}", w.workload.namespace, w.workload.name),
        src.addr = %peer,
        dst.addr = %target,
        dst.original = %dst,
        path = "tunnel",
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
