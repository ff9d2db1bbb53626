//! The scene every forward test runs in: backends, routes, policies,
//! the waypoint, and a client of it; helpers to talk to it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use quicmesh_core::authz::l7::{parse_method, parse_path};
use quicmesh_core::authz::{
    parse_principal, Action, Condition, Operation, Policy, Rule as AuthzRule, Source,
};
use quicmesh_core::identity::{SpiffeId, Svid};
use quicmesh_core::route::{
    Backend, BackendRef, Filter, HeaderMatch, HttpRoute, PathMatch, PathModifier, Redirect,
    RequestMatch, Rewrite, RouteTable, Rule, Timeouts, ValueMatch,
};
use quicmesh_core::tunnel::client::{Pool, PoolKey, TunnelError};
use quicmesh_core::tunnel::TUNNEL_PORT;
use tokio_util::sync::CancellationToken;
use waypoint::authz::Access;
use waypoint::proxy::{Parent, Tables, Versioned, Waypoint};
use waypoint::upstream::Endpoint;

use crate::support::*;

/// The Service the routes attach to, as clients address it.
pub(crate) const VIP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)), 80);
/// A Service port whose protocol is not declared (the echo backend).
pub(crate) const UNDECLARED: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 12)), 7000);
/// A Service whose workload admits only `ns/ops/sa/admin`, as HTTP and as
/// opaque TCP.
pub(crate) const GUARDED: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 13)), 80);
pub(crate) const GUARDED_TCP: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 14)), 80);
/// A Service whose backend upgrades to WebSocket.
pub(crate) const WEBSOCKET: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 15)), 80);
/// A Service port with L7 policies attached at the waypoint (its endpoints v1's).
pub(crate) const ATTACHED: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 16)), 80);

/// A loopback address of its own for each test (tunnel servers all bind
/// port 15008).
pub(crate) fn loopback(test: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 77, test, host))
}

/// Policies that admit nobody (`shop/deny-all`).
pub(crate) fn deny_all() -> Arc<Access> {
    Arc::new(Access {
        policies: vec![Arc::new(Policy {
            name: "shop/deny-all".into(),
            action: Action::Deny,
            rules: vec![AuthzRule::default()],
            invalid: None,
        })],
    })
}

/// A backend app: answers `<name> <method> <path> host=<host> x-added=<..>`,
/// after `/slow` waits 5 s.
pub(crate) async fn app(name: &'static str, addr: SocketAddr) {
    serve_app(
        addr,
        move |req: http::Request<hyper::body::Incoming>| async move {
            if req.uri().path().ends_with("/xfcc") {
                let v = req
                    .headers()
                    .get_all("x-forwarded-client-cert")
                    .iter()
                    .map(|v| v.to_str().unwrap().to_string())
                    .collect::<Vec<_>>()
                    .join(" | ");
                return http::Response::new(Full::new(Bytes::from(v)));
            }
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            // Hop-by-hop headers must not arrive from the waypoint.
            if req.headers().contains_key("x-hop") || req.headers().contains_key("connection") {
                let mut r =
                    http::Response::new(Full::new(Bytes::from("hop-by-hop header arrived")));
                *r.status_mut() = http::StatusCode::BAD_REQUEST;
                return r;
            }
            let host = req
                .headers()
                .get("host")
                .map(|v| v.to_str().unwrap().to_string())
                .or_else(|| req.uri().authority().map(|a| a.to_string()))
                .unwrap_or_default();
            let added = req
                .headers()
                .get("x-added")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = format!(
                "{name} {} {} host={host} x-added={added}",
                req.method(),
                req.uri().path_and_query().unwrap()
            );
            http::Response::new(Full::new(Bytes::from(body)))
        },
    )
    .await;
}

/// A WebSocket backend, as far as the handshake: reads a request head,
/// answers 101 (echoing its `Sec-WebSocket-Key` and whether `Upgrade`
/// arrived), then sends back every byte prefixed `ws:`.
pub(crate) async fn websocket(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                    if tcp.read_exact(&mut b).await.is_err() {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let key = head
                    .lines()
                    .find_map(|l| l.strip_prefix("sec-websocket-key:"))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                let upgrade = head.contains("upgrade: websocket");
                let answer = format!("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\nx-key: {key}\r\nx-upgrade-arrived: {upgrade}\r\n\r\n");
                if tcp.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut out = b"ws:".to_vec();
                    out.extend_from_slice(&buf[..n]);
                    if tcp.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// A failing backend: under `/flaky` every fourth request (the 1st, 5th,
/// ...) answers 503, under `/down` every one; returns the count of
/// requests it got.
pub(crate) async fn flaky(addr: SocketAddr) -> Arc<std::sync::atomic::AtomicU64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    serve_app(addr, move |req: http::Request<hyper::body::Incoming>| {
        let n = h.fetch_add(1, Ordering::Relaxed) + 1;
        let fail = req.uri().path().starts_with("/down") || n % 4 == 1;
        let mut r = http::Response::new(Full::new(Bytes::from(if fail {
            "failing"
        } else {
            "flaky ok"
        })));
        if fail {
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        }
        async move { r }
    })
    .await;
    hits
}

/// A TCP server that answers `echo:` and what it got, per read; to an
/// HTTP request it answers as HTTP (`HTTP/1.1 200`, body `echo-http`).
pub(crate) async fn echo(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        let _ = tcp.shutdown().await;
                        return;
                    }
                    let answer = if buf[..n].starts_with(b"GET ") {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\necho-http".to_vec()
                    } else {
                        [b"echo:".as_slice(), &buf[..n]].concat()
                    };
                    if tcp.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// An HTTP/1.1 server that answers one request per connection, then
/// closes it without `Connection: close`.
pub(crate) async fn closer(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\ncloser")
                    .await;
                let _ = tcp.shutdown().await;
            });
        }
    });
}

pub(crate) fn backend_ref(name: &str) -> BackendRef {
    BackendRef {
        namespace: "shop".into(),
        name: name.into(),
        port: 80,
    }
}

pub(crate) fn to(name: &str, weight: u32) -> Backend {
    Backend {
        target: backend_ref(name),
        weight,
        filters: vec![],
        invalid: None,
    }
}

pub(crate) fn on_path(path: PathMatch) -> Vec<RequestMatch> {
    vec![RequestMatch::new(path, vec![], vec![], None)]
}

/// The routes of the test: a header route to v2, a redirect, a rewrite, a
/// timeout, a 90/10 split for the rest of `/api`, and nothing else (so
/// other paths find no route).
pub(crate) fn routes() -> RouteTable {
    let header = |n: &str, v: &str| HeaderMatch::new(n, ValueMatch::Exact(v.into())).unwrap();
    let added = |v: &str| {
        Filter::RequestHeaders(quicmesh_core::route::HeaderModifier {
            set: vec![(
                http::HeaderName::from_static("x-added"),
                http::HeaderValue::from_str(v).unwrap(),
            )],
            ..Default::default()
        })
    };
    let rules = vec![
        Rule {
            // The same path as the split below: a header match wins over
            // it (a shorter prefix with a header would not: path first).
            matches: vec![RequestMatch::new(
                PathMatch::prefix("/api").unwrap(),
                vec![header("x-canary", "yes")],
                vec![],
                None,
            )],
            filters: vec![added("canary")],
            backends: vec![to("v2", 1)],
            ..Rule::default()
        },
        Rule {
            matches: on_path(PathMatch::prefix("/old").unwrap()),
            filters: vec![Filter::Redirect(
                Redirect::new(
                    None,
                    Some("shop.example".into()),
                    Some(PathModifier::ReplacePrefixMatch("/new".into())),
                    None,
                    Some(301),
                )
                .unwrap(),
            )],
            ..Rule::default()
        },
        Rule {
            matches: on_path(PathMatch::prefix("/v1-only").unwrap()),
            filters: vec![Filter::Rewrite(Rewrite {
                hostname: Some("rewritten.example".into()),
                path: Some(PathModifier::ReplacePrefixMatch("/inner".into())),
            })],
            backends: vec![to("v1", 1)],
            ..Rule::default()
        },
        Rule {
            matches: on_path(PathMatch::exact("/slow").unwrap()),
            backends: vec![to("v1", 1)],
            timeouts: Timeouts {
                request: Some(Duration::from_millis(300)),
                backend_request: None,
            },
            ..Rule::default()
        },
        Rule {
            matches: on_path(PathMatch::prefix("/api").unwrap()),
            backends: vec![to("v1", 90), to("v2", 10)],
            ..Rule::default()
        },
        Rule {
            matches: on_path(PathMatch::prefix("/empty").unwrap()),
            backends: vec![to("nowhere", 1)],
            ..Rule::default()
        },
        Rule {
            matches: on_path(PathMatch::prefix("/closer").unwrap()),
            backends: vec![to("closer", 1)],
            ..Rule::default()
        },
        Rule {
            matches: on_path(PathMatch::prefix("/mirrored").unwrap()),
            filters: vec![Filter::Mirror(quicmesh_core::route::Mirror {
                target: backend_ref("shadow"),
                numerator: 1,
                denominator: 1,
            })],
            backends: vec![to("v1", 1)],
            ..Rule::default()
        },
        Rule {
            // Copies for a workload whose policies admit only the admin.
            matches: on_path(PathMatch::prefix("/mirror-guarded").unwrap()),
            filters: vec![Filter::Mirror(quicmesh_core::route::Mirror {
                target: backend_ref("guarded"),
                numerator: 1,
                denominator: 1,
            })],
            backends: vec![to("v1", 1)],
            ..Rule::default()
        },
        Rule {
            matches: on_path(PathMatch::prefix("/flaky").unwrap()),
            backends: vec![to("flaky", 1)],
            retry: Some(quicmesh_core::route::Retry {
                codes: vec![503],
                attempts: 2,
                backoff: Duration::from_millis(1),
            }),
            ..Rule::default()
        },
        Rule {
            matches: on_path(PathMatch::prefix("/down").unwrap()),
            backends: vec![to("flaky", 1)],
            retry: Some(quicmesh_core::route::Retry {
                codes: vec![503],
                attempts: 3,
                backoff: Duration::from_millis(1),
            }),
            ..Rule::default()
        },
    ];
    RouteTable::new(vec![Arc::new(HttpRoute {
        namespace: "shop".into(),
        name: "shop-routes".into(),
        grpc: false,
        created: 0,
        rules,
    })])
}

pub(crate) struct Setup {
    pub(crate) waypoint: Arc<Waypoint<Versioned>>,
    /// What the waypoint knows; a test may replace it (a new config).
    pub(crate) directory: Arc<Versioned>,
    /// Requests the mirror's backend got (it answers like the flaky one).
    pub(crate) shadow_hits: Arc<std::sync::atomic::AtomicU64>,
    /// Requests the flaky backend got.
    pub(crate) flaky_hits: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) client: Arc<Pool>,
    pub(crate) client_svid: Svid,
    /// The one peer the guarded workload's policy admits.
    pub(crate) admin_svid: Svid,
    pub(crate) waypoint_id: SpiffeId,
    pub(crate) waypoint_ip: IpAddr,
    pub(crate) stop: CancellationToken,
    pub(crate) _dir: tempdir::Dir,
}

pub(crate) mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(crate) async fn setup(test: u8) -> Setup {
    let dir = std::env::temp_dir().join(format!("waypoint-forward-{}-{test}", std::process::id()));
    let (ca, bundles) = test_ca(&dir);
    let life = Duration::from_secs(600);
    let stop = CancellationToken::new();

    // Backends, each a workload: its app (started by the caller at the
    // address returned) and its destination tunnel server.
    let mut endpoints = HashMap::new();
    let mut workload = |name: &str, host: u8, port: u16, protocol| {
        let ip = loopback(test, host);
        let addr = SocketAddr::new(ip, port);
        let identity = shop_workload(ip, name, &ca, &bundles, &stop);
        endpoints.insert(
            backend_ref(name),
            vec![Endpoint {
                addr,
                identity,
                protocol,
                workload: name.into(),
            }],
        );
        addr
    };
    use waypoint::upstream::Protocol;
    app("v1", workload("v1", 11, 8080, Protocol::Auto)).await;
    app("v2", workload("v2", 12, 8080, Protocol::Auto)).await;
    // A backend that closes every connection after one answer without
    // saying so (no `Connection: close`): kept connections die under the
    // waypoint.
    closer(workload("closer", 13, 8080, Protocol::Http1)).await;
    // A backend that fails: every fourth time, or always.
    let flaky_hits = flaky(workload("flaky", 14, 8080, Protocol::Http1)).await;
    // The mirror's backend (it fails some answers: they are dropped all
    // the same).
    let shadow_hits = flaky(workload("shadow", 15, 8080, Protocol::Http1)).await;
    // A TCP backend (it also answers HTTP).
    echo(workload("echo", 16, 7000, Protocol::Auto)).await;
    app("guarded", workload("guarded", 17, 8080, Protocol::Auto)).await;
    websocket(workload("ws", 18, 8080, Protocol::Http1)).await;
    endpoints.insert(backend_ref("nowhere"), vec![]);
    endpoints.insert(backend_ref("shop"), endpoints[&backend_ref("v1")].clone());

    // The waypoint.
    let waypoint_id = id("ns/shop/sa/waypoint");
    let waypoint_ip = loopback(test, 2);
    let mut parents = HashMap::new();
    parents.insert(
        VIP,
        Arc::new(Parent {
            service: backend_ref("shop"),
            host: "shop.shop.svc.cluster.local".into(),
            routes: routes(),
            protocol: waypoint::upstream::Protocol::Http1,
            consumers: Default::default(),
            policies: Vec::new(),
        }),
    );
    let unrouted: SocketAddr = "10.96.0.11:80".parse().unwrap();
    parents.insert(
        unrouted,
        Arc::new(Parent {
            service: backend_ref("shop"),
            host: "shop.shop.svc.cluster.local".into(),
            routes: RouteTable::default(),
            protocol: waypoint::upstream::Protocol::Http1,
            consumers: Default::default(),
            policies: Vec::new(),
        }),
    );
    // L7 policies attached to the waypoint for a Service: no DELETE; a
    // public prefix, or a token header, or nothing.
    let op = |f: &dyn Fn(&mut Operation)| {
        let mut o = Operation::default();
        f(&mut o);
        o.l7 = true;
        AuthzRule {
            to: vec![o],
            ..AuthzRule::default()
        }
    };
    let no_delete = Policy {
        name: "shop/no-delete".into(),
        action: Action::Deny,
        rules: vec![op(&|o| o.methods = vec![parse_method("DELETE").unwrap()])],
        invalid: None,
    };
    let public_or_token = Policy {
        name: "shop/public-or-token".into(),
        action: Action::Allow,
        rules: vec![
            op(&|o| o.paths = vec![parse_path("/public/*").unwrap()]),
            AuthzRule {
                when: vec![
                    Condition::parse("request.headers[x-token]", &["s3cret".into()], &[]).unwrap(),
                ],
                l7: true,
                ..AuthzRule::default()
            },
        ],
        invalid: None,
    };
    parents.insert(
        ATTACHED,
        Arc::new(Parent {
            service: backend_ref("v1"),
            host: "v1.shop.svc.cluster.local".into(),
            routes: RouteTable::default(),
            protocol: waypoint::upstream::Protocol::Http1,
            consumers: Default::default(),
            policies: vec![Arc::new(no_delete), Arc::new(public_or_token)],
        }),
    );
    // A port that does not say what it speaks: HTTP or TCP, detected.
    parents.insert(
        UNDECLARED,
        Arc::new(Parent {
            service: backend_ref("echo"),
            host: "echo.shop.svc.cluster.local".into(),
            routes: RouteTable::default(),
            protocol: waypoint::upstream::Protocol::Auto,
            consumers: Default::default(),
            policies: Vec::new(),
        }),
    );
    for (addr, name, protocol) in [
        (GUARDED, "guarded", waypoint::upstream::Protocol::Http1),
        (GUARDED_TCP, "guarded", waypoint::upstream::Protocol::Tcp),
        (WEBSOCKET, "ws", waypoint::upstream::Protocol::Http1),
    ] {
        parents.insert(
            addr,
            Arc::new(Parent {
                service: backend_ref(name),
                host: format!("{name}.shop.svc.cluster.local"),
                routes: RouteTable::default(),
                protocol,
                consumers: Default::default(),
                policies: Vec::new(),
            }),
        );
    }
    // Every workload's policies: none, but the guarded one's.
    let mut access: HashMap<String, Arc<Access>> = endpoints
        .values()
        .flatten()
        .map(|e| (e.workload.to_string(), Arc::new(Access::default())))
        .collect();
    let admins_only = Policy {
        name: "shop/admins-only".into(),
        action: Action::Allow,
        rules: vec![AuthzRule {
            from: vec![Source {
                principals: vec![parse_principal("cluster.local/ns/ops/sa/admin").unwrap()],
                ..Source::default()
            }],
            ..AuthzRule::default()
        }],
        invalid: None,
    };
    let audit_all = Policy {
        name: "shop/audit-all".into(),
        action: Action::Audit,
        rules: vec![AuthzRule::default()],
        invalid: None,
    };
    access.insert(
        "guarded".into(),
        Arc::new(Access {
            policies: vec![Arc::new(admins_only), Arc::new(audit_all)],
        }),
    );
    let directory = Arc::new(Versioned::new(Tables {
        parents,
        endpoints,
        access,
        ..Tables::default()
    }));
    let wp = start_waypoint(
        &dir,
        &bundles,
        &waypoint_id,
        directory.clone(),
        waypoint_ip,
        &stop,
    )
    .await;

    Setup {
        waypoint: wp,
        directory,
        shadow_hits,
        flaky_hits,
        client: client_pool(&bundles),
        client_svid: ca.mint(&id("ns/web/sa/client"), life).unwrap(),
        admin_svid: ca.mint(&id("ns/ops/sa/admin"), life).unwrap(),
        waypoint_id,
        waypoint_ip,
        stop,
        _dir: tempdir::Dir(dir),
    }
}

impl Setup {
    /// A tunnelled connection to the waypoint for `authority`.
    pub(crate) async fn open(
        &self,
        authority: SocketAddr,
    ) -> Result<TokioIo<quicmesh_core::tunnel::connect::ConnectIo>, TunnelError> {
        self.open_as(&self.client_svid, authority).await
    }

    /// The same, as the peer `svid` names.
    pub(crate) async fn open_as(
        &self,
        svid: &Svid,
        authority: SocketAddr,
    ) -> Result<TokioIo<quicmesh_core::tunnel::connect::ConnectIo>, TunnelError> {
        let key = PoolKey {
            src: svid.id.clone(),
            dst: self.waypoint_id.clone(),
            addr: SocketAddr::new(self.waypoint_ip, TUNNEL_PORT),
        };
        let s = self
            .client
            .open(&key, svid, authority, Default::default())
            .await?;
        Ok(TokioIo::new(s.into_io()))
    }

    /// Downstream connections the waypoint closed for `reason`: once one
    /// is counted (it is when the connection has ended, just after the
    /// client saw its answer), or after 10 s.
    pub(crate) async fn closed_for(&self, reason: &str) -> f64 {
        let counted = || {
            sum_of(
                &self.metrics(),
                "quicmesh_waypoint_downstream_closed_total",
                &[("reason", reason)],
            )
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counted() < 1.0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        counted()
    }

    pub(crate) fn metrics(&self) -> String {
        let mut reg = prometheus_client::registry::Registry::default();
        self.waypoint.metrics.register(&mut reg);
        quicmesh_core::metrics::encode(&reg)
    }

    pub(crate) async fn http1(&self) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let (sender, conn) = hyper::client::conn::http1::handshake(self.open(VIP).await.unwrap())
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }
}

/// GET `path` with `headers`; (status, location, body).
pub(crate) async fn get(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    request(c, "GET", path, headers).await
}

pub(crate) async fn request(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    c.ready().await.unwrap();
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "shop.shop.svc.cluster.local");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = c
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}
