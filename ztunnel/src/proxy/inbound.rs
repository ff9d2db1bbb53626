//! Inbound: tunnel streams to this pod (the tunnel server's upstream side)
//! and plaintext connections from peers outside the mesh (15006).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::tunnel::server::{Inbound, InboundRequest, Refused};
use tokio::net::TcpStream;

use super::socket::{connect_marked, original_dst};
use super::ZTUNNEL_PORTS;
use crate::app::PodCtx;

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Checks that `dst` is this pod's and not ztunnel's own port, then connects
/// to the app from inside the pod.
async fn deliver(ctx: &PodCtx, dst: SocketAddr) -> Result<TcpStream, Refused> {
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

    async fn connect(&self, req: &InboundRequest) -> Result<TcpStream, Refused> {
        deliver(&self.0, req.authority).await
    }
}

/// Serves one plaintext connection that arrived at 15006 (permissive mode:
/// a client outside the mesh). No identity is proven.
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
    let mut up = match deliver(&ctx, dst).await {
        Ok(s) => s,
        Err(r) => {
            tracing::warn!(src.addr = %peer, dst.addr = %dst, reason = %r.reason, "plaintext inbound refused");
            ctx.shared.metrics.inbound_refused(r.label);
            super::socket::reset_on_close(&tcp);
            return;
        }
    };
    ctx.shared.metrics.plaintext_inbound.inc();
    let _ = tcp.set_nodelay(true);
    let r = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
    let (received, sent) = r.unwrap_or((0, 0));
    tracing::info!(
        direction = "inbound_plaintext",
        src.addr = %peer,
        dst.addr = %dst,
        dst.identity = %ctx.identity,
        bytes_sent = sent,
        bytes_received = received,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection complete"
    );
}
