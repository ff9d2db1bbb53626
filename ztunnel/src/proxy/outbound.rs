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
use tracing::Instrument;

use super::socket::{connect_marked, original_dst, reset_on_close};
use quicmesh_core::lb::{Balancer, Lease};

use quicmesh_core::identity::SpiffeId;

use crate::node::PodCtx;
use crate::state::{MeshService, MeshWaypoint, MeshWorkload, ServicePort, State};

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
    // Leased while the connection lives.
    let hop = match next_hop(&state, &ctx.shared.balancer, dst) {
        Ok(hop) => hop,
        Err(r) => {
            tracing::warn!(src.identity = %ctx.identity, dst.addr = %dst, to = %r.to, reason = %r.reason, "outbound connection refused");
            ctx.shared.metrics.outbound_refused(r.label);
            reset_on_close(&tcp);
            return;
        }
    };
    drop(state);
    match hop {
        Hop::Tunnel(t, _lease) => {
            if t.kind == "waypoint" {
                ctx.shared.metrics.via_waypoint.inc();
            }
            tunnel(ctx, tcp, peer, dst, t, started).await
        }
        Hop::Passthrough(target, _lease) => passthrough(ctx, tcp, peer, dst, target, started).await,
    }
}

/// Where a connection to `dst` goes: to a Service VIP, through the
/// Service's waypoint or to one of its endpoints; to a mesh workload's
/// IP, through the workload's waypoint or straight to it; anywhere else,
/// through unchanged. Pure but for the balancer's leases, which the hop
/// holds.
fn next_hop(state: &State, balancer: &Arc<Balancer>, dst: SocketAddr) -> Chosen {
    if let Some(svc) = state.service_at(dst.ip()) {
        let to = || format!("service {}/{}", svc.namespace, svc.name);
        let Some(sp) = svc.ports.iter().find(|p| p.port == dst.port()) else {
            return Err(Refusal {
                label: "no_endpoint",
                to: to(),
                reason: format!("service has no port {}", dst.port()),
            });
        };
        return match &svc.waypoint {
            Some(wp) => choose_waypoint(balancer, wp, dst),
            None => choose_endpoint(balancer, state, svc, sp),
        }
        .map_err(|(label, reason)| Refusal {
            label,
            to: to(),
            reason,
        });
    }
    match state.workload_at(dst.ip()) {
        Some(w) if w.in_mesh => match &w.waypoint {
            Some(wp) => choose_waypoint(balancer, wp, dst).map_err(|(label, reason)| Refusal {
                label,
                to: format!("workload {}/{}", w.workload.namespace, w.workload.name),
                reason,
            }),
            None => Ok(Hop::Tunnel(Tunnel::to(w, dst), None)),
        },
        _ => Ok(Hop::Passthrough(dst, None)),
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
    /// original destination (the Service's VIP and port, or the pod's IP
    /// and port).
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

/// Why a connection is refused before any tunnel opens.
#[derive(Debug)]
struct Refusal {
    /// The metric's reason.
    label: &'static str,
    /// What it was addressed to (`service <ns>/<name>`, `workload <ns>/<name>`).
    to: String,
    reason: String,
}

type Chosen = Result<Hop, Refusal>;

/// A hop for a destination already known, or why not: (metric reason, why).
type Choice = Result<Hop, (&'static str, String)>;

/// A ready endpoint of `svc` for its port `sp`, by power of two choices.
fn choose_endpoint(
    balancer: &Arc<Balancer>,
    state: &State,
    svc: &MeshService,
    sp: &ServicePort,
) -> Choice {
    let ready: Vec<(IpAddr, u16)> = svc
        .endpoints
        .iter()
        .filter(|e| e.ready)
        .filter_map(|e| Some((e.ip, e.target(sp)?)))
        .collect();
    let ips: Vec<IpAddr> = ready.iter().map(|(ip, _)| *ip).collect();
    let (i, lease) = balancer
        .choose(&ips)
        .ok_or_else(|| ("no_endpoint", "no ready endpoint".to_string()))?;
    let target = SocketAddr::from(ready[i]);
    Ok(match state.workload_at(target.ip()).filter(|w| w.in_mesh) {
        Some(w) => Hop::Tunnel(Tunnel::to(w, target), Some(lease)),
        None => Hop::Passthrough(target, Some(lease)),
    })
}

/// One of the waypoint's addresses, by power of two choices, for a
/// connection to `dst` (a Service's VIP and port, or a workload's IP and
/// port: the CONNECT authority either way). Without one, the connection is
/// refused: traffic for a destination that uses a waypoint never goes
/// around it.
fn choose_waypoint(balancer: &Arc<Balancer>, wp: &MeshWaypoint, dst: SocketAddr) -> Choice {
    let (i, lease) = balancer.choose(&wp.addresses).ok_or_else(|| {
        (
            "no_waypoint",
            format!("waypoint {}/{} has no ready pod", wp.namespace, wp.name),
        )
    })?;
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
    // The connection's trace span (when traces are on): the root of its
    // trace, carried to the other end in the CONNECT's `traceparent`.
    let span = tracing::info_span!(
        "outbound",
        otel.name = "tunnel outbound",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        network.transport = "tcp",
        client.address = %peer.ip(),
        client.port = i64::from(peer.port()),
        server.address = %dst.ip(),
        server.port = i64::from(dst.port()),
        network.peer.address = %to.ip,
        quicmesh.source.principal = %ctx.identity,
        quicmesh.destination.principal = %to.identity,
        quicmesh.destination.workload = %to.name,
        quicmesh.path = if to.kind == "waypoint" { "waypoint" } else { "tunnel" },
        quicmesh.bytes_sent = tracing::field::Empty,
        quicmesh.bytes_received = tracing::field::Empty,
        quicmesh.outcome = tracing::field::Empty,
    );
    let traced = span.clone();
    tunnel_traced(ctx, tcp, peer, dst, to, started, traced)
        .instrument(span)
        .await
}

async fn tunnel_traced(
    ctx: Arc<PodCtx>,
    tcp: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    to: Tunnel,
    started: Instant,
    span: tracing::Span,
) {
    let failed = |outcome: &str| {
        span.record("otel.status_code", "ERROR");
        span.record("quicmesh.outcome", outcome);
    };
    let svid = match ctx.shared.certs.svid(&ctx.identity).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(src.identity = %ctx.identity, error = %e, "no SVID for the source workload");
            ctx.shared.metrics.outbound_refused("no_svid");
            failed("no_svid");
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
    quicmesh_core::trace::inject(&span, &mut headers);
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
            failed(e.label());
            reset_on_close(&tcp);
            return;
        }
    };
    let t = tunnel.pump(tcp, CancellationToken::new()).await;
    span.record("quicmesh.bytes_sent", t.sent as i64);
    span.record("quicmesh.bytes_received", t.received as i64);
    span.record("quicmesh.outcome", t.outcome.label());
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

/// Plain TCP to `target`: the original destination `dst`, or the endpoint
/// outside the mesh chosen for a Service's VIP.
async fn passthrough(
    ctx: Arc<PodCtx>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    target: SocketAddr,
    started: Instant,
) {
    let mut up = match connect_marked(&ctx.worker, target).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(src.addr = %peer, dst.addr = %target, error = %e, "passthrough connect failed");
            ctx.shared.metrics.outbound_refused("passthrough_connect");
            reset_on_close(&tcp);
            return;
        }
    };
    ctx.shared.metrics.passthrough.inc();
    // An error (a reset on either side) loses the counts.
    let (sent, received, outcome) = match tokio::io::copy_bidirectional(&mut tcp, &mut up).await {
        Ok((sent, received)) => (sent, received, "closed"),
        Err(_) => (0, 0, "tcp_reset"),
    };
    tracing::info!(
        direction = "outbound",
        src.identity = %ctx.identity,
        src.addr = %peer,
        dst.addr = %target,
        dst.original = %dst,
        path = "passthrough",
        bytes_sent = sent,
        bytes_received = received,
        outcome,
        duration_ms = started.elapsed().as_millis() as u64,
        "connection complete"
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use quicmesh_proto::config::{
        resource, Endpoint, Resource, Service, ServicePort as PPort, Waypoint, Workload,
    };

    use super::*;

    const WAYPOINT_ID: &str = "spiffe://cluster.local/ns/shop/sa/waypoint";

    fn waypoint(addresses: &[&str]) -> Waypoint {
        Waypoint {
            namespace: "shop".into(),
            name: "waypoint".into(),
            identity: WAYPOINT_ID.into(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// shop's web-0 (10.244.1.2) behind Service web (10.96.0.10:80 →
    /// 8080), and api-0 (10.244.1.3); `web_waypoint` on the Service,
    /// `api_waypoint` on api-0.
    fn state(web_waypoint: Option<Waypoint>, api_waypoint: Option<Waypoint>) -> State {
        let workload = |uid: &str, ip: &str, sa: &str, waypoint: Option<Waypoint>| {
            (
                format!("workload/{uid}"),
                Resource {
                    name: format!("workload/{uid}"),
                    version: 1,
                    kind: Some(resource::Kind::Workload(Workload {
                        uid: uid.into(),
                        name: format!("{sa}-0"),
                        namespace: "shop".into(),
                        service_account: sa.into(),
                        ips: vec![ip.into()],
                        ready: true,
                        in_mesh: true,
                        identity: format!("spiffe://cluster.local/ns/shop/sa/{sa}"),
                        waypoint,
                        ..Default::default()
                    })),
                },
            )
        };
        let service = Service {
            name: "web".into(),
            namespace: "shop".into(),
            vips: vec!["10.96.0.10".into()],
            ports: vec![PPort {
                name: "http".into(),
                port: 80,
                target_port: 8080,
                app_protocol: "http".into(),
            }],
            endpoints: vec![Endpoint {
                workload_uid: "u-web".into(),
                ip: "10.244.1.2".into(),
                ready: true,
                ports: Default::default(),
            }],
            waypoint: web_waypoint,
        };
        let resources: BTreeMap<String, Resource> = [
            workload("u-web", "10.244.1.2", "web", None),
            workload("u-api", "10.244.1.3", "api", api_waypoint),
            (
                "service/shop/web".into(),
                Resource {
                    name: "service/shop/web".into(),
                    version: 1,
                    kind: Some(resource::Kind::Service(service)),
                },
            ),
        ]
        .into();
        State::from_resources("cluster.local", 1, &resources).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// (kind, tunnel address, authority, identity) of a tunnel hop.
    fn tunnel(hop: &Hop) -> (&'static str, IpAddr, SocketAddr, &str) {
        match hop {
            Hop::Tunnel(t, _) => (t.kind, t.ip, t.authority, t.identity.as_str()),
            Hop::Passthrough(a, _) => panic!("passed through to {a}"),
        }
    }

    #[test]
    fn a_workload_with_a_waypoint_is_reached_through_it_with_its_own_address() {
        let b = Arc::new(Balancer::default());
        let s = state(None, Some(waypoint(&["10.244.2.9", "10.244.3.9"])));
        let hop = next_hop(&s, &b, addr("10.244.1.3:9000")).unwrap();
        let (kind, ip, authority, identity) = tunnel(&hop);
        assert_eq!(kind, "waypoint");
        assert!(["10.244.2.9", "10.244.3.9"].contains(&ip.to_string().as_str()));
        assert_eq!(authority, addr("10.244.1.3:9000"), "the pod's IP and port");
        assert_eq!(identity, WAYPOINT_ID);
        // The same load balancing as for a Service: leased while it lives,
        // the next connection goes to the other pod.
        assert_eq!(b.active(ip), 1);
        let second = next_hop(&s, &b, addr("10.244.1.3:9000")).unwrap();
        assert_ne!(tunnel(&second).1, ip, "power of two choices over two");
        drop((hop, second));
        assert_eq!(b.active(ip), 0);
        // A workload without one is tunnelled to directly, and a Service
        // without one to its endpoint.
        let direct = next_hop(&s, &b, addr("10.244.1.2:8080")).unwrap();
        assert_eq!(
            tunnel(&direct),
            (
                "workload",
                "10.244.1.2".parse().unwrap(),
                addr("10.244.1.2:8080"),
                "spiffe://cluster.local/ns/shop/sa/web"
            )
        );
        let via_service = next_hop(&s, &b, addr("10.96.0.10:80")).unwrap();
        assert_eq!(tunnel(&via_service).2, addr("10.244.1.2:8080"));
        // Outside the mesh: through unchanged.
        assert!(matches!(
            next_hop(&s, &b, addr("192.0.2.1:443")).unwrap(),
            Hop::Passthrough(a, None) if a == addr("192.0.2.1:443")
        ));
    }

    #[test]
    fn without_a_ready_waypoint_pod_the_connection_is_refused_never_sent_around_it() {
        let b = Arc::new(Balancer::default());
        let s = state(Some(waypoint(&[])), Some(waypoint(&[])));
        let r = next_hop(&s, &b, addr("10.244.1.3:9000")).err().unwrap();
        assert_eq!(r.label, "no_waypoint");
        assert_eq!(r.to, "workload shop/api-0");
        assert!(r.reason.contains("shop/waypoint"), "{}", r.reason);
        let r = next_hop(&s, &b, addr("10.96.0.10:80")).err().unwrap();
        assert_eq!(
            (r.label, r.to.as_str()),
            ("no_waypoint", "service shop/web")
        );
        // A port the Service does not have is refused before any waypoint.
        let r = next_hop(&s, &b, addr("10.96.0.10:81")).err().unwrap();
        assert_eq!(r.label, "no_endpoint");
    }

    #[test]
    fn a_service_waypoint_takes_its_vip_not_its_pods_addresses() {
        let b = Arc::new(Balancer::default());
        let s = state(Some(waypoint(&["10.244.2.9"])), None);
        let hop = next_hop(&s, &b, addr("10.96.0.10:80")).unwrap();
        assert_eq!(
            tunnel(&hop),
            (
                "waypoint",
                "10.244.2.9".parse().unwrap(),
                addr("10.96.0.10:80"),
                WAYPOINT_ID
            )
        );
        // The Service's pod addressed directly: its own waypoint decides
        // (it has none).
        assert_eq!(
            tunnel(&next_hop(&s, &b, addr("10.244.1.2:8080")).unwrap()).0,
            "workload"
        );
    }

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
