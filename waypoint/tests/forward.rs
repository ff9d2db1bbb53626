//! The waypoint's data path over real tunnels on loopback: a client tunnels
//! to the waypoint (as ztunnel will), the waypoint routes each request and
//! forwards it over its own tunnel to a destination tunnel server that
//! delivers to a real HTTP server, as a destination ztunnel does.
//!
//! Every hop is real: QUIC with SVIDs from one CA, HTTP/3 CONNECT, hyper on
//! both sides of the waypoint, TCP to the apps.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use quicmesh_core::authz::l7::{parse_method, parse_path};
use quicmesh_core::authz::{
    parse_principal, Action, Condition, Operation, Policy, Rule as AuthzRule, Source,
};
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::{SharedBundles, SpiffeId, Svid, TrustBundles};
use quicmesh_core::route::{
    Backend, BackendRef, Filter, HeaderMatch, HttpRoute, PathMatch, PathModifier, Redirect,
    RequestMatch, Rewrite, RouteTable, Rule, Timeouts, ValueMatch,
};
use quicmesh_core::tunnel::client::{Pool, PoolKey, TunnelError};
use quicmesh_core::tunnel::TUNNEL_PORT;
use tokio_util::sync::CancellationToken;
use waypoint::authz::Access;
use waypoint::proxy::{Parent, Server, Tables, Versioned, Waypoint};
use waypoint::upstream::Endpoint;

mod support;
use support::*;

/// The Service the routes attach to, as clients address it.
const VIP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10)), 80);
/// A Service port whose protocol is not declared (the echo backend).
const UNDECLARED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 12)), 7000);
/// A Service whose workload admits only `ns/ops/sa/admin`, as HTTP and as
/// opaque TCP.
const GUARDED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 13)), 80);
const GUARDED_TCP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 14)), 80);
/// A Service whose backend upgrades to WebSocket.
const WEBSOCKET: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 15)), 80);
/// A Service port with L7 policies attached at the waypoint (its endpoints v1's).
const ATTACHED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 16)), 80);

/// A loopback address of its own for each test (tunnel servers all bind
/// port 15008).
fn loopback(test: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 77, test, host))
}

/// Policies that admit nobody (`shop/deny-all`).
fn deny_all() -> Arc<Access> {
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
async fn app(name: &'static str, addr: SocketAddr) {
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
async fn websocket(addr: SocketAddr) {
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
async fn flaky(addr: SocketAddr) -> Arc<std::sync::atomic::AtomicU64> {
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
async fn echo(addr: SocketAddr) {
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
async fn closer(addr: SocketAddr) {
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

fn backend_ref(name: &str) -> BackendRef {
    BackendRef {
        namespace: "shop".into(),
        name: name.into(),
        port: 80,
    }
}

fn to(name: &str, weight: u32) -> Backend {
    Backend {
        target: backend_ref(name),
        weight,
        filters: vec![],
        invalid: None,
    }
}

fn on_path(path: PathMatch) -> Vec<RequestMatch> {
    vec![RequestMatch::new(path, vec![], vec![], None)]
}

/// The routes of the test: a header route to v2, a redirect, a rewrite, a
/// timeout, a 90/10 split for the rest of `/api`, and nothing else (so
/// other paths find no route).
fn routes() -> RouteTable {
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

struct Setup {
    waypoint: Arc<Waypoint<Versioned>>,
    /// What the waypoint knows; a test may replace it (a new config).
    directory: Arc<Versioned>,
    /// Requests the mirror's backend got (it answers like the flaky one).
    shadow_hits: Arc<std::sync::atomic::AtomicU64>,
    /// Requests the flaky backend got.
    flaky_hits: Arc<std::sync::atomic::AtomicU64>,
    client: Arc<Pool>,
    client_svid: Svid,
    /// The one peer the guarded workload's policy admits.
    admin_svid: Svid,
    waypoint_id: SpiffeId,
    waypoint_ip: IpAddr,
    stop: CancellationToken,
    _dir: tempdir::Dir,
}

mod tempdir {
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

async fn setup(test: u8) -> Setup {
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
        let identity = id(&format!("ns/shop/sa/{name}"));
        tunnel_server(
            ip,
            &ca.mint(&identity, life).unwrap(),
            &bundles,
            Deliver(identity.clone()),
            &stop,
        );
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
    let (certs, upstreams) =
        waypoint_upstreams(&dir, &bundles, bundles.clone(), life, &waypoint_id);
    let directory = Arc::new(Versioned::new(Tables {
        parents,
        endpoints,
        access,
        ..Tables::default()
    }));
    let wp = Waypoint::new(waypoint_id.clone(), directory.clone(), upstreams);
    let wp_svid = certs.svid(&waypoint_id).await.unwrap();
    tunnel_server(waypoint_ip, &wp_svid, &bundles, Server(wp.clone()), &stop);

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
    async fn open(
        &self,
        authority: SocketAddr,
    ) -> Result<TokioIo<quicmesh_core::tunnel::connect::ConnectIo>, TunnelError> {
        self.open_as(&self.client_svid, authority).await
    }

    /// The same, as the peer `svid` names.
    async fn open_as(
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
    async fn closed_for(&self, reason: &str) -> f64 {
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

    fn metrics(&self) -> String {
        let mut reg = prometheus_client::registry::Registry::default();
        self.waypoint.metrics.register(&mut reg);
        quicmesh_core::metrics::encode(&reg)
    }

    async fn http1(&self) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let (sender, conn) = hyper::client::conn::http1::handshake(self.open(VIP).await.unwrap())
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }
}

/// GET `path` with `headers`; (status, location, body).
async fn get(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    request(c, "GET", path, headers).await
}

async fn request(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_requests_are_routed_filtered_and_forwarded() {
    let s = setup(1).await;
    let mut c = s.http1().await;
    // Header match first, with its header filter.
    let (status, _, body) = get(&mut c, "/api/items", &[("x-canary", "yes")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "v2 GET /api/items host=shop.shop.svc.cluster.local x-added=canary"
    );
    // A redirect answered by the waypoint itself.
    let (status, location, _) = get(&mut c, "/old/page?x=1", &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (301, "http://shop.example/new/page?x=1")
    );
    // A rewrite of host and path prefix.
    let (status, _, body) = get(&mut c, "/v1-only/a?q=2", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "v1 GET /inner/a?q=2 host=rewritten.example x-added=");
    // A request timeout answers 504 while the backend is still working.
    let (status, _, body) = get(&mut c, "/slow", &[]).await;
    assert_eq!((status, body.as_str()), (504, "timeout\n"));
    // No rule matches: 404; a backend with no endpoint: 503.
    let (status, _, body) = get(&mut c, "/elsewhere", &[]).await;
    assert_eq!((status, body.as_str()), (404, "no_route\n"));
    let (status, _, body) = get(&mut c, "/empty", &[]).await;
    assert_eq!((status, body.as_str()), (503, "no_healthy_endpoint\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ninety_ten_split_holds_over_a_thousand_requests() {
    let s = setup(2).await;
    let mut c = s.http1().await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..1_000 {
        let (status, _, body) = get(&mut c, &format!("/api/{i}"), &[]).await;
        assert_eq!(status, 200, "{body}");
        *seen
            .entry(body.split(' ').next().unwrap().to_string())
            .or_default() += 1;
    }
    // Binomial(1000, 0.9): mean 900, sd 9.5; 5 sd either side.
    let v1 = seen.get("v1").copied().unwrap_or(0);
    assert!((852..=948).contains(&v1), "{seen:?}");
    assert_eq!(v1 + seen.get("v2").copied().unwrap_or(0), 1_000, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_multiplex_through_the_waypoint() {
    let s = setup(3).await;
    let (client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), s.open(VIP).await.unwrap())
            .await
            .unwrap();
    tokio::spawn(conn);
    let requests = (0..50).map(|i| {
        let mut client = client.clone();
        async move {
            let req = http::Request::get(format!("http://shop.shop.svc.cluster.local/v1-only/{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = client.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                String::from_utf8_lossy(&body),
                format!("v1 GET /inner/{i} host=rewritten.example x-added=")
            );
        }
    });
    futures::future::join_all(requests).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_routes_goes_to_its_endpoints_and_strangers_are_refused() {
    let s = setup(4).await;
    let (mut c, conn) = hyper::client::conn::http1::handshake(
        s.open("10.96.0.11:80".parse().unwrap()).await.unwrap(),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let (status, _, body) = get(&mut c, "/anything", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "v1 GET /anything host=shop.shop.svc.cluster.local x-added="
        )
    );
    // A destination the waypoint does not serve: the tunnel is refused.
    match s.open("10.96.0.99:80".parse().unwrap()).await {
        Err(TunnelError::Status { status, .. }) => assert_eq!(status, 403),
        Err(e) => panic!("refused with {e}"),
        Ok(_) => panic!("the waypoint took a destination it does not serve"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_request_head_is_refused_and_the_waypoint_keeps_serving() {
    let s = setup(5).await;
    let mut c = s.http1().await;
    let big = "x".repeat(100 * 1024);
    c.ready().await.unwrap();
    let req = http::Request::get("/api/1")
        .header("host", "shop")
        .header("x-big", big.as_str())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let refused = match c.send_request(req).await {
        Ok(resp) => resp.status() == 431,
        // hyper may close before writing the 431 out.
        Err(_) => true,
    };
    assert!(refused, "a 100 KiB header was taken");
    assert_eq!(s.closed_for("head_too_large").await, 1.0);
    // A new connection is served as before.
    let mut c = s.http1().await;
    let (status, _, body) = get(&mut c, "/v1-only/x", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "v1 GET /inner/x host=rewritten.example x-added=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_stop_at_the_waypoint() {
    let s = setup(6).await;
    let mut c = s.http1().await;
    // `Connection` names a header as hop-by-hop: neither goes on.
    let (status, _, body) = get(
        &mut c,
        "/v1-only/h",
        &[("connection", "x-hop"), ("x-hop", "1")],
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "v1 GET /inner/h host=rewritten.example x-added=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_learns_the_source_from_the_waypoint_only() {
    let s = setup(11).await;
    let mut c = s.http1().await;
    let forged = "By=spiffe://cluster.local/ns/x/sa/y;URI=spiffe://cluster.local/ns/bank/sa/admin";
    let (status, _, body) = get(&mut c, "/api/xfcc", &[("x-forwarded-client-cert", forged)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("By={};URI={}", id("ns/shop/sa/waypoint"), s.client_svid.id),
        "exactly one header, the waypoint's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_gets_a_copy_of_every_request_and_its_answers_are_dropped() {
    use std::sync::atomic::Ordering;
    let s = setup(13).await;
    let mut c = s.http1().await;
    for i in 0..10 {
        let (status, _, body) = get(&mut c, &format!("/mirrored/{i}"), &[("x-added", "no")]).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.starts_with(&format!("v1 GET /mirrored/{i} ")),
            "{body}"
        );
    }
    let mut seen = 0;
    for _ in 0..100 {
        seen = s.shadow_hits.load(Ordering::Relaxed);
        if seen >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 10, "the mirror got every copy (and no more)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_make_a_flaky_backend_succeed_and_a_budget_stops_a_storm() {
    use std::sync::atomic::Ordering;
    let s = setup(12).await;
    let mut c = s.http1().await;
    // Every fourth answer fails; a retry makes each request succeed.
    for i in 0..20 {
        let (status, _, body) = get(&mut c, &format!("/flaky/{i}"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "flaky ok"), "request {i}");
    }
    // 20 answers, and the 7 failures (1st, 5th, ... 25th) retried.
    assert_eq!(s.flaky_hits.load(Ordering::Relaxed), 27);
    // A backend that always fails, with 3 retries allowed per request: the
    // budget (20 % of requests, plus 10 a second) stops most of them.
    s.flaky_hits.store(0, Ordering::Relaxed);
    let started = std::time::Instant::now();
    let n = 300u64;
    for i in 0..n {
        let (status, _, _) = get(&mut c, &format!("/down/{i}"), &[]).await;
        assert_eq!(status, 503);
    }
    let hits = s.flaky_hits.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64().ceil() as u64;
    // Requests, their 20 %, the floor's 10 and its refill while it ran; the
    // budget also holds what the /flaky requests above deposited (4).
    let allowed = n + n / 5 + 10 + 10 * elapsed + 4;
    assert!(
        (n + 1..=allowed).contains(&hits),
        "{hits} backend requests for {n} requests (at most {allowed}); without a budget: {}",
        n * 4
    );
    let mut reg = prometheus_client::registry::Registry::default();
    s.waypoint.metrics.register(&mut reg);
    let text = quicmesh_core::metrics::encode(&reg);
    assert!(
        text.lines().any(|l| l.starts_with(
            "quicmesh_waypoint_retries_total{route=\"shop/shop-routes\",result=\"budget_exhausted\"}"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_port_carries_tcp_as_bytes_and_http_as_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(14).await;
    // Not HTTP: passed through as bytes, both ways, several times.
    let mut io = s.open(UNDECLARED).await.unwrap().into_inner();
    for msg in [&b"\x00\x01ping\n"[..], b"\x16\x03\x01binary"] {
        io.write_all(msg).await.unwrap();
        let mut got = vec![0u8; 5 + msg.len()];
        tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, [b"echo:".as_slice(), msg].concat());
    }
    // A client that waits for the server to speak first: TCP after the
    // detection timeout (the echo server says nothing, but the bytes it
    // gets later still arrive).
    let mut io = s.open(UNDECLARED).await.unwrap().into_inner();
    tokio::time::sleep(waypoint::sniff::DETECT_TIMEOUT + Duration::from_millis(200)).await;
    io.write_all(b"late").await.unwrap();
    let mut got = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"echo:late");
    // Each TCP connection is counted when it ends.
    drop(io);
    // A request behind a blank line is still HTTP (hyper skips it), so it
    // cannot reach the app around the waypoint's header handling.
    let mut io = s.open(UNDECLARED).await.unwrap().into_inner();
    io.write_all(b"\r\nGET / HTTP/1.1\r\nhost: echo\r\nx-forwarded-client-cert: forged\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 17];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &got, b"HTTP/1.1 200 OK\r\n",
        "served as HTTP, not passed through"
    );
    // HTTP on the same port: served as requests (routed to the Service).
    let (mut c, conn) = hyper::client::conn::http1::handshake(s.open(UNDECLARED).await.unwrap())
        .await
        .unwrap();
    tokio::spawn(conn);
    let (status, _, body) = get(&mut c, "/", &[]).await;
    assert_eq!((status, body.as_str()), (200, "echo-http"));
    drop(io);
    let mut reg = prometheus_client::registry::Registry::default();
    s.waypoint.metrics.register(&mut reg);
    let mut text = String::new();
    for _ in 0..100 {
        text = quicmesh_core::metrics::encode(&reg);
        if text.contains("quicmesh_waypoint_tcp_connections_total{service=\"shop/echo:80\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains("quicmesh_waypoint_tcp_connections_total{service=\"shop/echo:80\""),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_request_is_closed() {
    use tokio::io::AsyncReadExt;
    let s = setup(7).await;
    let mut io = s.open(VIP).await.unwrap().into_inner();
    // Half an HTTP/2 preface, then nothing.
    tokio::io::AsyncWriteExt::write_all(&mut io, b"PRI * HTTP/2.0")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(
        waypoint::proxy::HEADER_TIMEOUT + Duration::from_secs(10),
        io.read(&mut buf),
    )
    .await;
    match closed {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("{n} bytes answered to half a preface"),
        Err(_) => panic!("still open after the header timeout"),
    }
    assert_eq!(s.closed_for("no_request").await, 1.0);
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_closes_the_connection_and_is_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(15).await;
    let mut io = s.open(VIP).await.unwrap().into_inner();
    // The preface, empty SETTINGS, then 100 GETs each cancelled at once
    // (CVE-2023-44487), in one write: the waypoint sees them before it
    // has served any.
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_frame(&mut out, 0x4, 0, 0, &[]);
    // HPACK: :method GET, :scheme http, :path / (static table), and
    // :authority as a literal.
    let host = b"shop.shop.svc.cluster.local";
    let mut block = vec![0x82, 0x86, 0x84, 0x01, host.len() as u8];
    block.extend_from_slice(host);
    for i in 0..100u32 {
        let stream = 2 * i + 1;
        // HEADERS with END_STREAM | END_HEADERS, then RST_STREAM(CANCEL).
        h2_frame(&mut out, 0x1, 0x5, stream, &block);
        h2_frame(&mut out, 0x3, 0, stream, &8u32.to_be_bytes());
    }
    io.write_all(&out).await.unwrap();
    // Frames until GOAWAY (bounded: the answers to at most 100 streams).
    let goaway = tokio::time::timeout(Duration::from_secs(20), async {
        let mut frames = 0;
        loop {
            let mut head = [0u8; 9];
            io.read_exact(&mut head).await.ok()?;
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len.min(1 << 20)];
            io.read_exact(&mut payload).await.ok()?;
            if head[3] == 0x7 && len >= 8 {
                return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
            frames += 1;
            assert!(frames < 1000, "no GOAWAY in 1000 frames");
        }
    })
    .await
    .expect("the connection was neither refused nor closed");
    // ENHANCE_YOUR_CALM.
    assert_eq!(goaway, Some(0xb), "the waypoint's answer to a rapid reset");
    assert_eq!(s.closed_for("http2_abuse").await, 1.0, "{}", s.metrics());
    // Another client is served as before.
    let (mut client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), s.open(VIP).await.unwrap())
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("http://shop.shop.svc.cluster.local/v1-only/x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.send_request(req).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_ends_connections_after_their_requests() {
    let s = setup(8).await;
    let (mut client, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), s.open(VIP).await.unwrap())
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = || {
        http::Request::get("http://shop.shop.svc.cluster.local/v1-only/d")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(client.send_request(req()).await.unwrap().status(), 200);
    s.waypoint.drain();
    // GOAWAY: the client's connection ends (bounded), and takes no more.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the drained connection did not end");
    assert!(client.send_request(req()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_matched_and_forwarded_in_canonical_form() {
    let s = setup(9).await;
    let mut c = s.http1().await;
    // Each of these is the redirecting /old prefix in disguise.
    for path in ["/x/../old/p", "//old/p", "/%6Fld/p", "/./old/p"] {
        let (status, location, _) = get(&mut c, path, &[]).await;
        assert_eq!(
            (status, location.as_str()),
            (301, "http://shop.example/new/p"),
            "{path}"
        );
    }
    // Forwarded canonical: the backend sees what was matched.
    let (status, _, body) = get(&mut c, "/v1-only//a/./b", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "v1 GET /inner/a/b host=rewritten.example x-added=")
    );
    // Ambiguous: refused before routing.
    let (status, _, body) = get(&mut c, "/old%2Fp", &[]).await;
    assert_eq!((status, body.as_str()), (400, "bad_path\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_closing_kept_connections_cost_no_request() {
    let s = setup(10).await;
    let mut c = s.http1().await;
    for i in 0..50 {
        let (status, _, body) = get(&mut c, &format!("/closer/{i}"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "closer"), "request {i}");
    }
}

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
        support::sum_of(
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
    let timed = support::sum_of(
        &text,
        "quicmesh_waypoint_request_duration_seconds_count",
        &[("service", "shop/guarded:80"), ("method", "GET")],
    );
    let counted = support::sum_of(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_becomes_a_stream_through_the_waypoint() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(18).await;
    let mut io = s.open(WEBSOCKET).await.unwrap().into_inner();
    io.write_all(
        b"GET /chat HTTP/1.1\r\nhost: ws.shop\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    // The switch, as the backend answered it (its headers, with the
    // upgrade's hop-by-hop headers set again by the waypoint).
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !head.ends_with(b"\r\n\r\n") {
            io.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
    })
    .await
    .unwrap();
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains("x-key: dghlihnhbxbszsbub25jzq=="),
        "the key went through: {head}"
    );
    assert!(head.contains("x-upgrade-arrived: true"), "{head}");
    // Then bytes, both ways, several times.
    for msg in ["hello", "again"] {
        io.write_all(msg.as_bytes()).await.unwrap();
        let mut got = vec![0u8; 3 + msg.len()];
        tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, format!("ws:{msg}").as_bytes());
    }
    // A policy change that no longer admits the client cuts the stream,
    // and the cut is counted.
    let mut denying = (*s.directory.tables()).clone();
    denying.access.insert("ws".into(), deny_all());
    s.directory.set(1, denying);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still open after the policy change");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = s.metrics();
        if text.lines().any(|l| {
            l.starts_with("quicmesh_waypoint_upgraded_streams_total{")
                && l.contains("result=\"authz_revoked\"")
                && l.ends_with(" 1")
        }) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
        let identity = id(&format!("ns/shop/sa/{name}"));
        tunnel_server(
            ip,
            &ca.mint(&identity, life).unwrap(),
            &bundles,
            Deliver(identity.clone()),
            &stop,
        );
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

/// Writes a GET for `path` on a raw (passed-through) connection and reads
/// until the guarded app's answer to it is in; None if the connection
/// ends or nothing comes within the deadline.
async fn raw_get<S>(io: &mut S, path: &str) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    io.write_all(format!("GET {path} HTTP/1.1\r\nhost: guarded\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let want = format!("guarded GET {path}");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 512];
        while !String::from_utf8_lossy(&got).contains(&want) {
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
        Some(String::from_utf8_lossy(&got).into_owned())
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_cuts_a_passed_through_connection_it_no_longer_allows() {
    use tokio::io::AsyncReadExt;
    let s = setup(19).await;
    let mut io = s
        .open_as(&s.admin_svid, GUARDED_TCP)
        .await
        .unwrap()
        .into_inner();
    let first = raw_get(&mut io, "/one")
        .await
        .expect("the admin is let through");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    // A new config that still allows it: the connection carries on.
    let tables = s.directory.tables();
    s.directory.set(1, (*tables).clone());
    assert!(
        raw_get(&mut io, "/two").await.is_some(),
        "an allowed connection was cut"
    );

    // A config whose policy for the guarded workload admits nobody: cut.
    let mut denying = (*tables).clone();
    denying.access.insert("guarded".into(), deny_all());
    s.directory.set(2, denying);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Err(_)) | Ok(Ok(_))),
        "still open after the policy change: {read:?}"
    );
    let text = s.metrics();
    assert!(
        text.contains(
            "quicmesh_waypoint_tcp_connections_total{service=\"shop/guarded:80\",result=\"authz_revoked\"} 1"
        ),
        "{text}"
    );
    // Decided quietly: the revocation is what is counted.
    assert!(!text.contains("policy=\"shop/deny-all\""), "{text}");
}
