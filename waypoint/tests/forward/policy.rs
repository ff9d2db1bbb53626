//! Authorization at the waypoint: the destinations' policies, policies attached to it, workload-addressed traffic.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::{SharedBundles, SpiffeId, Svid, TrustBundles};
use quicmesh_core::tunnel::client::{Pool, PoolKey, TunnelError};
use quicmesh_core::tunnel::TUNNEL_PORT;
use tokio_util::sync::CancellationToken;
use waypoint::proxy::{Server, Waypoint};

use crate::lab::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destinations_policies_are_decided_for_each_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(17).await;
    // The client is not the admin: refused at the waypoint, 403, the
    // policy named in the metric (and log), never in the body.
    let (mut c, conn) = hyper::client::conn::http1::handshake(s.open(GUARDED).await.unwrap())
        .await
        .unwrap();
    tokio::spawn(conn);
    let (status, _, body) = get(&mut c, "/secret", &[]).await;
    assert_eq!((status, body.as_str()), (403, "authz_denied\n"));
    // The admin is let through, over the same waypoint.
    let (mut admin, conn) =
        hyper::client::conn::http1::handshake(s.open_as(&s.admin_svid, GUARDED).await.unwrap())
            .await
            .unwrap();
    tokio::spawn(conn);
    let (status, _, body) = get(&mut admin, "/secret", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("guarded GET /secret"), "{body}");
    // A refusal leaves the connection usable; and workloads without a
    // policy serve the client as before.
    let (status, _, body) = get(&mut c, "/again", &[]).await;
    assert_eq!((status, body.as_str()), (403, "authz_denied\n"));
    let mut other = s.http1().await;
    let (status, _, body) = get(&mut other, "/v1-only/x", &[]).await;
    assert_eq!(status, 200, "{body}");
    // Opaque TCP to the guarded workload: the client's connection is
    // reset, never connected to an endpoint (counted below as the third
    // denial; the reset may even overtake the CONNECT's answer); the
    // admin's is passed through.
    if let Ok(io) = s.open(GUARDED_TCP).await {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            io.into_inner().read_to_end(&mut buf),
        )
        .await;
        assert!(
            matches!(read, Ok(Err(_)) | Ok(Ok(0))),
            "refused: {read:?} {buf:?}"
        );
    }
    let mut io = s
        .open_as(&s.admin_svid, GUARDED_TCP)
        .await
        .unwrap()
        .into_inner();
    io.write_all(b"GET /raw HTTP/1.1\r\nhost: guarded\r\n\r\n")
        .await
        .unwrap();
    // Read until the answer's body is in (the app keeps the connection).
    let mut got = Vec::new();
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&got).contains("guarded GET /raw") {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer in time");
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200") && got.contains("guarded GET /raw"),
        "{got}"
    );
    // Two HTTP refusals, and the refused TCP connection (its CONNECT may
    // have been retried by the client's pool after the reset: n >= 1).
    let text = s.metrics();
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let tcp = value(
        "quicmesh_waypoint_tcp_connections_total{service=\"shop/guarded:80\",result=\"authz_denied\"}",
    );
    assert!(tcp >= 1, "{text}");
    assert_eq!(
        value(
            "quicmesh_waypoint_authz_denials_total{policy=\"shop/admins-only\",reason=\"no_allow_match\"}"
        ),
        2 + tcp,
        "{text}"
    );
    // Audited: every decision, allowed or not (2 admin, 2 client HTTP, n client TCP).
    assert_eq!(
        value("quicmesh_waypoint_authz_audits_total{policy=\"shop/audit-all\"}"),
        4 + tcp,
        "{text}"
    );
    assert_eq!(
        crate::support::sum_of(
            &text,
            "quicmesh_waypoint_requests_total",
            &[
                ("service", "shop/guarded:80"),
                ("code", "403"),
                ("flag", "authz_denied")
            ]
        ),
        2.0,
        "{text}"
    );
    // Each timed, under its method.
    let timed = crate::support::sum_of(
        &text,
        "quicmesh_waypoint_request_duration_seconds_count",
        &[("service", "shop/guarded:80"), ("method", "GET")],
    );
    let counted = crate::support::sum_of(
        &text,
        "quicmesh_waypoint_requests_total",
        &[("service", "shop/guarded:80"), ("method", "GET")],
    );
    assert!(timed >= 2.0 && timed == counted, "{text}");
    // A mirror's copy is the client's request to the mirror's workload:
    // decided by its policies (the original is served either way).
    let (status, _, body) = get(&mut other, "/mirror-guarded/1", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (mut admin, conn) =
        hyper::client::conn::http1::handshake(s.open_as(&s.admin_svid, VIP).await.unwrap())
            .await
            .unwrap();
    tokio::spawn(conn);
    let (status, _, body) = get(&mut admin, "/mirror-guarded/2", &[]).await;
    assert_eq!(status, 200, "{body}");
    let mut text = String::new();
    for _ in 0..100 {
        text = s.metrics();
        if text.contains("quicmesh_waypoint_mirrored_requests_total{result=\"sent\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains("quicmesh_waypoint_mirrored_requests_total{result=\"denied\"} 1")
            && text.contains("quicmesh_waypoint_mirrored_requests_total{result=\"sent\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_attached_to_the_waypoint_decide_by_method_path_and_header() {
    let s = setup(20).await;
    let (mut c, conn) = hyper::client::conn::http1::handshake(s.open(ATTACHED).await.unwrap())
        .await
        .unwrap();
    tokio::spawn(conn);
    for (method, path, headers, want) in [
        ("GET", "/public/a", &[][..], 200),
        // Canonical before it is decided: not a way around the prefix,
        // nor into it.
        ("GET", "/public/../private", &[][..], 403),
        ("GET", "/private", &[][..], 403),
        ("GET", "/private", &[("x-token", "s3cret")][..], 200),
        ("GET", "/private", &[("x-token", "guess")][..], 403),
        ("DELETE", "/public/a", &[][..], 403),
        ("DELETE", "/private", &[("x-token", "s3cret")][..], 403),
    ] {
        let (status, _, body) = request(&mut c, method, path, headers).await;
        assert_eq!(status, want, "{method} {path} {headers:?}: {body}");
        if want == 403 {
            // The policy is never in the answer.
            assert_eq!(body, "authz_denied\n");
        } else {
            assert!(body.starts_with(&format!("v1 {method} {path}")), "{body}");
        }
    }
    let text = s.metrics();
    let value = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        value("quicmesh_waypoint_authz_denials_total{policy=\"shop/no-delete\",reason=\"deny_policy\"}"),
        2,
        "{text}"
    );
    assert_eq!(
        value("quicmesh_waypoint_authz_denials_total{policy=\"shop/public-or-token\",reason=\"no_allow_match\"}"),
        3,
        "{text}"
    );
}

/// Traffic addressed to a pod (its IP and a port) that a ztunnel sends to
/// the waypoint because the workload names it: from the controller's
/// resources, as the waypoint binary builds its view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_address_is_served_only_for_workloads_that_name_this_waypoint() {
    use quicmesh_proto::config::{
        resource, Authorization, AuthorizationAction, AuthorizationRule, AuthorizationScope,
        AuthorizationSource, Endpoint as PEndpoint, Resource, Service, ServicePort,
        Waypoint as PWaypoint, Workload,
    };
    const TEST: u8 = 19;
    let dir = std::env::temp_dir().join(format!("waypoint-forward-{}-{TEST}", std::process::id()));
    let _dir = tempdir::Dir(dir.clone());
    let ca = Ca::load_or_generate(TD, &dir).unwrap();
    // A federated trust domain: its client reaches the waypoint until the
    // waypoint's bundle of it is withdrawn.
    let west = Ca::generate("west.example").unwrap();
    let mut bundles = TrustBundles::new();
    bundles.insert(TD, &[ca.cert_der().clone()]).unwrap();
    bundles
        .insert("west.example", &[west.cert_der().clone()])
        .unwrap();
    let bundles = Arc::new(bundles);
    let life = Duration::from_secs(600);
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();

    // Two workloads with an app on 8080 behind their own tunnel server:
    // `pinned` names this waypoint, `elsewhere` another one; `guarded`
    // names this one and admits only ops/admin.
    let mut resources: BTreeMap<String, Resource> = BTreeMap::new();
    let mut add = |name: &str, kind: resource::Kind| {
        resources.insert(
            name.to_string(),
            Resource {
                name: name.to_string(),
                version: 1,
                kind: Some(kind),
            },
        );
    };
    for (host, name, waypoint, policies) in [
        (11, "pinned", "waypoint", vec![]),
        (12, "elsewhere", "edge", vec![]),
        (
            13,
            "guarded",
            "waypoint",
            vec!["shop/admins-only".to_string()],
        ),
    ] {
        let ip = loopback(TEST, host);
        let identity = shop_workload(ip, name, &ca, &bundles, &stop);
        app(
            Box::leak(name.to_string().into_boxed_str()),
            SocketAddr::new(ip, 8080),
        )
        .await;
        add(
            &format!("workload/{name}"),
            resource::Kind::Workload(Workload {
                uid: name.into(),
                name: format!("{name}-0"),
                namespace: "shop".into(),
                service_account: name.into(),
                ips: vec![ip.to_string()],
                ready: true,
                in_mesh: true,
                identity: identity.to_string(),
                authorization_policies: policies,
                waypoint: Some(PWaypoint {
                    namespace: "shop".into(),
                    name: waypoint.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        );
    }
    // A Service port selecting `pinned` there says it speaks HTTP/1.1.
    add(
        "service/shop/pinned",
        resource::Kind::Service(Service {
            name: "pinned".into(),
            namespace: "shop".into(),
            vips: vec!["10.96.0.40".into()],
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                target_port: 8080,
                app_protocol: "http".into(),
            }],
            endpoints: vec![PEndpoint {
                workload_uid: "pinned".into(),
                ip: loopback(TEST, 11).to_string(),
                ready: true,
                ports: Default::default(),
            }],
            waypoint: None,
        }),
    );
    add(
        "authorization/shop/admins-only",
        resource::Kind::Authorization(Authorization {
            name: "admins-only".into(),
            namespace: "shop".into(),
            scope: AuthorizationScope::Workload.into(),
            action: AuthorizationAction::Allow.into(),
            rules: vec![AuthorizationRule {
                from: vec![AuthorizationSource {
                    principals: vec!["cluster.local/ns/ops/sa/admin".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
    );
    let live = waypoint::config::Live::new(
        "cluster.local",
        Some(waypoint::config::Scope {
            namespace: "shop".into(),
            name: "waypoint".into(),
        }),
    );
    quicmesh_core::control::stream::ConfigSink::apply(&*live, 1, &resources).unwrap();

    let waypoint_id = id("ns/shop/sa/waypoint");
    let waypoint_ip = loopback(TEST, 2);
    // The waypoint's own view of the bundles, replaced as its config
    // stream would.
    let waypoint_bundles = SharedBundles::new((*bundles).clone());
    let (certs, upstreams) =
        waypoint_upstreams(&dir, &bundles, waypoint_bundles.clone(), life, &waypoint_id);
    let wp = Waypoint::new(waypoint_id.clone(), live.directory(), upstreams);
    let wp_svid = certs.svid(&waypoint_id).await.unwrap();
    tunnel_server(waypoint_ip, &wp_svid, &bundles, Server(wp.clone()), &stop);

    let client = client_pool(&bundles);
    let client_svid = ca.mint(&id("ns/web/sa/client"), life).unwrap();
    let admin_svid = ca.mint(&id("ns/ops/sa/admin"), life).unwrap();
    async fn open_to(
        client: &Arc<Pool>,
        svid: &Svid,
        waypoint: (&SpiffeId, IpAddr),
        authority: SocketAddr,
    ) -> Result<TokioIo<quicmesh_core::tunnel::connect::ConnectIo>, TunnelError> {
        let key = PoolKey {
            src: svid.id.clone(),
            dst: waypoint.0.clone(),
            addr: SocketAddr::new(waypoint.1, TUNNEL_PORT),
        };
        let s = client
            .open(&key, svid, authority, Default::default())
            .await?;
        Ok(TokioIo::new(s.into_io()))
    }
    let to = (&waypoint_id, waypoint_ip);
    let http1 = |io| async move {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender
    };

    // The pod's address: forwarded to that pod at that port.
    let pinned = SocketAddr::new(loopback(TEST, 11), 8080);
    let mut c = http1(open_to(&client, &client_svid, to, pinned).await.unwrap()).await;
    let (status, _, body) = get(&mut c, "/hello", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("pinned GET /hello"), "{body}");
    let (status, _, body) = get(&mut c, "/again", &[]).await;
    assert_eq!(status, 200, "{body}");
    // Counted in the namespace's one series for pod addresses.
    let mut reg = prometheus_client::registry::Registry::default();
    wp.metrics.register(&mut reg);
    let m = quicmesh_core::metrics::encode(&reg);
    let service = "service=\"shop/pod-ip\"".to_string();
    assert!(
        m.lines()
            .any(|l| l.starts_with("quicmesh_waypoint_requests_total{")
                && l.contains(&service)
                && l.contains("code=\"200\"")
                && l.ends_with(" 2")),
        "{m}"
    );

    // A workload that names another waypoint, an address no workload
    // has: refused on the CONNECT (403 not_served).
    for authority in [
        SocketAddr::new(loopback(TEST, 12), 8080),
        SocketAddr::new(loopback(TEST, 14), 8080),
    ] {
        match open_to(&client, &client_svid, to, authority).await {
            Err(TunnelError::Status { status, .. }) => assert_eq!(status, 403, "{authority}"),
            Err(e) => panic!("{authority}: refused with {e}"),
            Ok(_) => panic!("{authority}: the waypoint took a destination it does not serve"),
        }
    }

    // The destination workload's policies are decided for each client,
    // as for a Service's endpoints.
    let guarded = SocketAddr::new(loopback(TEST, 13), 8080);
    let mut c = http1(open_to(&client, &client_svid, to, guarded).await.unwrap()).await;
    let (status, _, body) = get(&mut c, "/secret", &[]).await;
    assert_eq!((status, body.as_str()), (403, "authz_denied\n"));
    let mut admin = http1(open_to(&client, &admin_svid, to, guarded).await.unwrap()).await;
    let (status, _, body) = get(&mut admin, "/secret", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("guarded GET /secret"), "{body}");

    // A federated client: its CONNECT is taken (policies then decide its
    // requests) while its trust domain is trusted; once the waypoint's
    // bundle of it is withdrawn, a new CONNECT on the same QUIC connection
    // is refused before any request.
    let foreign = west
        .mint(
            &SpiffeId::parse("spiffe://west.example/ns/shop/sa/client").unwrap(),
            life,
        )
        .unwrap();
    let first = open_to(&client, &foreign, to, pinned).await;
    assert!(first.is_ok(), "{:?}", first.err());
    waypoint_bundles
        .replace_domains(&[], ["west.example"])
        .unwrap();
    match open_to(&client, &foreign, to, pinned).await {
        Err(TunnelError::Status { status, .. }) => assert_eq!(status, 403),
        Err(e) => panic!("refused with {e}"),
        Ok(_) => panic!("a withdrawn trust domain's peer was served"),
    }
}
