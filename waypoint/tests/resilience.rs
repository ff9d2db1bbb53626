//! TrafficPolicy at the waypoint over real tunnels on loopback: a client
//! tunnels to the waypoint, which forwards over its own tunnels to
//! destination tunnel servers delivering to real HTTP servers (as in
//! `forward.rs`), with a Service port's settings in the waypoint's tables:
//! outlier detection, circuit breaking, rate limits, faults, timeouts and
//! body limits, each seen from the client.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use quicmesh_core::identity::{SpiffeId, Svid};
use quicmesh_core::route::{BackendRef, RouteTable};
use quicmesh_core::traffic::{self as tp, Parts, Policy, Target};
use quicmesh_core::tunnel::client::{Pool, PoolKey};
use quicmesh_core::tunnel::TUNNEL_PORT;
use tokio_util::sync::CancellationToken;
use waypoint::authz::Access;
use waypoint::proxy::{Parent, Tables, Versioned, Waypoint};
use waypoint::upstream::{Endpoint, Protocol};

mod support;
use support::*;

const VIP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 1, 10)), 80);

/// A loopback address of its own for each test (tunnel servers all bind
/// port 15008; `forward.rs` uses 127.77.x.x).
fn loopback(test: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 78, test, host))
}

/// What a backend app has seen.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    connections: AtomicU64,
}

/// A backend app answering `status` (body: its name) after `delay`;
/// `/slow` waits 500 ms more; `/body` answers the length of the body read.
async fn app(name: &'static str, addr: SocketAddr, status: u16, delay: Duration) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let (on_accept, s) = (seen.clone(), seen.clone());
    serve_app_counted(
        addr,
        move || {
            on_accept.connections.fetch_add(1, Ordering::Relaxed);
        },
        move |req: http::Request<hyper::body::Incoming>| {
            let s = s.clone();
            async move {
                s.requests.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                if req.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                let body = if req.uri().path() == "/body" {
                    let n = req.into_body().collect().await.map(|b| b.to_bytes().len());
                    format!("{}", n.unwrap_or(0))
                } else {
                    name.to_string()
                };
                let mut r = http::Response::new(Full::new(Bytes::from(body)));
                *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                r
            }
        },
    )
    .await;
    seen
}

fn svc() -> BackendRef {
    BackendRef {
        namespace: "shop".into(),
        name: "svc".into(),
        port: 80,
    }
}

/// The settings `parts` give Service `svc` (through the same merge the
/// waypoint's config runs).
fn settings(parts: Parts) -> Arc<tp::Effective> {
    let p = Policy {
        namespace: "shop".into(),
        name: "resilience".into(),
        created: 0,
        targets: vec![Target {
            service: "svc".into(),
            port: None,
        }],
        parts,
    };
    Arc::new(tp::effective([&p], "shop", "svc", 80).expect("settings"))
}

/// A backend of `svc`: (status, delay), or a black hole (`None`): a tunnel
/// address where nothing answers.
type Backend = Option<(u16, Duration)>;

struct Setup {
    waypoint: Arc<Waypoint<Versioned>>,
    seen: Vec<Arc<Seen>>,
    addrs: Vec<SocketAddr>,
    client: Arc<Pool>,
    client_svid: Svid,
    /// Another client identity (`ns/ops/sa/admin`).
    other_svid: Svid,
    waypoint_id: SpiffeId,
    waypoint_ip: IpAddr,
    stop: CancellationToken,
    dir: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup(
    test: u8,
    backends: &[Backend],
    traffic: Option<Arc<tp::Effective>>,
    routes: RouteTable,
) -> Setup {
    let dir =
        std::env::temp_dir().join(format!("waypoint-resilience-{}-{test}", std::process::id()));
    let (ca, bundles) = test_ca(&dir);
    let life = Duration::from_secs(600);
    let stop = CancellationToken::new();
    let mut endpoints = Vec::new();
    let mut seen = Vec::new();
    let mut addrs = Vec::new();
    let names = ["a", "b", "c", "d"];
    for (i, b) in backends.iter().enumerate() {
        let ip = loopback(test, 11 + i as u8);
        let addr = SocketAddr::new(ip, 8080);
        let identity = id(&format!("ns/shop/sa/{}", names[i]));
        match b {
            Some((status, delay)) => {
                shop_workload(ip, names[i], &ca, &bundles, &stop);
                seen.push(app(names[i], addr, *status, *delay).await);
            }
            None => {
                // Takes the datagrams and never answers: a handshake there
                // waits for the tunnel's own timeout.
                let sock = tokio::net::UdpSocket::bind(SocketAddr::new(ip, TUNNEL_PORT))
                    .await
                    .unwrap();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    loop {
                        tokio::select! {
                            _ = sock.recv_from(&mut buf) => {}
                            _ = stop.cancelled() => return,
                        }
                    }
                });
                seen.push(Arc::default());
            }
        }
        addrs.push(addr);
        endpoints.push(Endpoint {
            addr,
            identity,
            protocol: Protocol::Http1,
            workload: names[i].into(),
        });
    }
    let waypoint_id = id("ns/shop/sa/waypoint");
    let waypoint_ip = loopback(test, 2);
    let mut tables = Tables::default();
    tables.parents.insert(
        VIP,
        Arc::new(Parent {
            service: svc(),
            host: "svc.shop.svc.cluster.local".into(),
            routes,
            protocol: Protocol::Http1,
            consumers: Default::default(),
            policies: Vec::new(),
        }),
    );
    tables.access = endpoints
        .iter()
        .map(|e| (e.workload.to_string(), Arc::new(Access::default())))
        .collect();
    tables.endpoints = HashMap::from([(svc(), endpoints)]);
    if let Some(t) = traffic {
        tables.traffic.insert(svc(), t);
    }
    let wp = start_waypoint(
        &dir,
        &bundles,
        &waypoint_id,
        Arc::new(Versioned::new(tables)),
        waypoint_ip,
        &stop,
    )
    .await;
    Setup {
        waypoint: wp,
        seen,
        addrs,
        client: client_pool(&bundles),
        client_svid: ca.mint(&id("ns/front/sa/client"), life).unwrap(),
        other_svid: ca.mint(&id("ns/ops/sa/admin"), life).unwrap(),
        waypoint_id,
        waypoint_ip,
        stop,
        dir,
    }
}

type Client = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// An answer: status, headers, body.
type Answer = (u16, http::HeaderMap, String);

impl Setup {
    async fn client(&self) -> Client {
        self.client_as(&self.client_svid).await
    }

    /// A client connection presenting `svid`.
    async fn client_as(&self, svid: &Svid) -> Client {
        let key = PoolKey {
            src: svid.id.clone(),
            dst: self.waypoint_id.clone(),
            addr: SocketAddr::new(self.waypoint_ip, TUNNEL_PORT),
        };
        let s = self
            .client
            .open(&key, svid, VIP, Default::default())
            .await
            .unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s.into_io()))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    fn metrics(&self) -> String {
        let mut reg = prometheus_client::registry::Registry::default();
        self.waypoint.metrics.register(&mut reg);
        quicmesh_core::metrics::encode(&reg)
    }

    /// The value of the counter line starting `prefix` (0 when absent).
    fn counter(&self, prefix: &str) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

async fn send(c: &mut Client, req: http::Request<Full<Bytes>>) -> Answer {
    c.ready().await.unwrap();
    let resp = c.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str, headers: &[(&str, &str)]) -> http::Request<Full<Bytes>> {
    let mut r = http::Request::get(path).header("host", "svc.shop");
    for (n, v) in headers {
        r = r.header(*n, *v);
    }
    r.body(Full::new(Bytes::new())).unwrap()
}

/// `n` requests for `path` by each of `workers` clients at once: the
/// statuses.
async fn load(s: &Setup, workers: usize, n: usize, path: &'static str) -> Vec<u16> {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let mut c = s.client().await;
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(send(&mut c, get(path, &[])).await.0);
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Polls `f` until true or `within` passes.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

fn outlier(c5xx: u32, base: Duration) -> Parts {
    Parts {
        outlier_detection: Some(tp::Outlier {
            consecutive_5xx_errors: Some(c5xx),
            consecutive_gateway_errors: None,
            success_rate: None,
            interval: Duration::from_secs(1),
            base_ejection_time: base,
            max_ejection_percent: 50,
        }),
        ..Parts::default()
    }
}

/// A replica that answers 500 next to one that answers (slowly): under
/// concurrent load the balancer still sends it requests whenever the good
/// one queues; after its 3rd error in a row it is ejected and every
/// request succeeds; it returns after its time, fails again and is
/// ejected for twice as long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_replica_is_ejected_and_traffic_recovers() {
    let s = setup(
        1,
        &[
            Some((200, Duration::from_millis(100))),
            Some((500, Duration::ZERO)),
        ],
        Some(settings(outlier(3, Duration::from_secs(2)))),
        RouteTable::default(),
    )
    .await;
    let ejections = || s.counter("quicmesh_waypoint_outlier_ejections_total{");
    let remaining = || {
        let dump = s.waypoint.resilience_dump();
        dump["shop/svc:80"]["ejected"][0]["remainingMs"].as_u64()
    };
    let before = load(&s, 16, 4, "/").await;
    let failed = before.iter().filter(|c| **c == 500).count();
    assert!(
        failed >= 3,
        "the bad replica got too few requests to be ejected: {before:?}"
    );
    assert_eq!(ejections(), 1.0, "{}", s.metrics());
    let dump = s.waypoint.resilience_dump().to_string();
    assert!(dump.contains(&s.addrs[1].to_string()), "{dump}");
    // While it is ejected, every request succeeds.
    let during = load(&s, 16, 2, "/").await;
    assert!(
        remaining().is_some(),
        "the ejection lapsed during the load; measure again"
    );
    assert!(during.iter().all(|c| *c == 200), "{during:?}");
    // Back after 2 s, failing still: ejected again, for 4 s.
    let deadline = Instant::now() + Duration::from_secs(15);
    while ejections() < 2.0 && Instant::now() < deadline {
        load(&s, 16, 1, "/").await;
    }
    assert_eq!(ejections(), 2.0, "{}", s.metrics());
    let dump = s.waypoint.resilience_dump();
    let ejected = &dump["shop/svc:80"]["ejected"][0];
    assert_eq!(ejected["ejections"], 2, "{dump}");
    assert!(ejected["remainingMs"].as_u64().unwrap() > 2000, "{dump}");
}

/// `maxConcurrentRequests: 1`: while one request is in flight (until its
/// body is through), others are answered 503 with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_concurrent_requests_are_answered_503() {
    let parts = Parts {
        connection_pool: Some(tp::ConnectionPool {
            max_concurrent_requests: Some(1),
            ..Default::default()
        }),
        ..Parts::default()
    };
    let s = setup(
        2,
        &[Some((200, Duration::ZERO))],
        Some(settings(parts)),
        RouteTable::default(),
    )
    .await;
    let mut first = s.client().await;
    let slow = tokio::spawn(async move { send(&mut first, get("/slow", &[])).await.0 });
    assert!(
        eventually(Duration::from_secs(5), || s.waypoint.resilience_dump()
            ["shop/svc:80"]["inFlight"]
            == 1)
        .await
    );
    let mut c = s.client().await;
    for _ in 0..3 {
        let (status, headers, body) = send(&mut c, get("/", &[])).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(headers["x-quicmesh-overflow"], "max_concurrent_requests");
        assert_eq!(body, "overflow\n");
    }
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(
        send(&mut c, get("/", &[])).await.0,
        200,
        "its place is free again"
    );
    let m = s.metrics();
    assert!(
        m.contains(
            r#"quicmesh_waypoint_overflows_total{service="shop/svc:80",reason="max_concurrent_requests"} 3"#
        ),
        "{m}"
    );
    assert_eq!(
        support::sum_of(
            &m,
            "quicmesh_waypoint_requests_total",
            &[
                ("service", "shop/svc:80"),
                ("code", "503"),
                ("flag", "overflow")
            ]
        ),
        3.0,
        "{m}"
    );
}

/// `maxConnections: 1`, `maxPendingRequests: 1`: a second request waits
/// for the one connection and is served on it; a third is refused.
/// `maxRequestsPerConnection: 1`: every request a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_limited_pending_requests_wait_and_bounded() {
    let parts = Parts {
        connection_pool: Some(tp::ConnectionPool {
            max_connections: Some(1),
            max_pending_requests: Some(1),
            ..Default::default()
        }),
        ..Parts::default()
    };
    let s = setup(
        3,
        &[Some((200, Duration::ZERO))],
        Some(settings(parts)),
        RouteTable::default(),
    )
    .await;
    let dump = || s.waypoint.resilience_dump()["shop/svc:80"].clone();
    let mut c1 = s.client().await;
    let first = tokio::spawn(async move { send(&mut c1, get("/slow", &[])).await.0 });
    assert!(
        eventually(Duration::from_secs(5), || dump()["connections"] == 1).await,
        "{}",
        dump()
    );
    let mut c2 = s.client().await;
    let second = tokio::spawn(async move { send(&mut c2, get("/slow", &[])).await.0 });
    assert!(
        eventually(Duration::from_secs(5), || dump()["pending"] == 1).await,
        "{}",
        dump()
    );
    let mut c3 = s.client().await;
    let (status, headers, _) = send(&mut c3, get("/", &[])).await;
    assert_eq!(
        (status, headers["x-quicmesh-overflow"].to_str().unwrap()),
        (503, "max_pending_requests")
    );
    assert_eq!((first.await.unwrap(), second.await.unwrap()), (200, 200));
    assert_eq!(
        s.seen[0].connections.load(Ordering::Relaxed),
        1,
        "the second waited for the first's connection"
    );

    let parts = Parts {
        connection_pool: Some(tp::ConnectionPool {
            max_requests_per_connection: Some(1),
            ..Default::default()
        }),
        ..Parts::default()
    };
    let s = setup(
        4,
        &[Some((200, Duration::ZERO))],
        Some(settings(parts)),
        RouteTable::default(),
    )
    .await;
    let mut c = s.client().await;
    for _ in 0..3 {
        assert_eq!(send(&mut c, get("/", &[])).await.0, 200);
    }
    assert_eq!(s.seen[0].connections.load(Ordering::Relaxed), 3);
    // Without the policy, one kept connection.
    let s = setup(
        5,
        &[Some((200, Duration::ZERO))],
        None,
        RouteTable::default(),
    )
    .await;
    let mut c = s.client().await;
    for _ in 0..3 {
        assert_eq!(send(&mut c, get("/", &[])).await.0, 200);
    }
    assert_eq!(s.seen[0].connections.load(Ordering::Relaxed), 1);
}

/// 5 a second, burst 5, per `x-user`: each user gets its burst, then the
/// rate, and 429 with `Retry-After` beyond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_answers_429_with_retry_after_per_key() {
    let parts = Parts {
        rate_limit: Some(tp::RateLimit {
            requests: 5,
            per: Duration::from_secs(1),
            burst: 5,
            key: tp::RateKey::Header("x-user".into()),
        }),
        ..Parts::default()
    };
    let s = setup(
        6,
        &[Some((200, Duration::ZERO))],
        Some(settings(parts)),
        RouteTable::default(),
    )
    .await;
    let mut c = s.client().await;
    let started = Instant::now();
    let mut allowed = 0u32;
    for _ in 0..30 {
        let (status, headers, _) = send(&mut c, get("/", &[("x-user", "alice")])).await;
        match status {
            200 => allowed += 1,
            429 => assert_eq!(headers["retry-after"], "1"),
            other => panic!("{other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // burst + rate × elapsed, the elapsed time measured.
    assert!(
        allowed >= 5 && f64::from(allowed) <= 5.0 + 5.0 * elapsed + 1.0,
        "{allowed} in {elapsed}s"
    );
    assert_eq!(
        send(&mut c, get("/", &[("x-user", "bob")])).await.0,
        200,
        "bob has his own bucket"
    );
    let limited = s.counter("quicmesh_waypoint_rate_limited_total{");
    assert_eq!(limited, f64::from(30 - allowed));
    assert_eq!(
        s.seen[0].requests.load(Ordering::Relaxed),
        u64::from(allowed) + 1,
        "refused requests never reach the backend"
    );
}

/// Per source identity: one client spending its bucket leaves another
/// client's untouched, whatever headers either sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_per_source_identity_gives_each_client_its_bucket() {
    let parts = Parts {
        rate_limit: Some(tp::RateLimit {
            requests: 1,
            per: Duration::from_secs(60),
            burst: 3,
            key: tp::RateKey::SourceIdentity,
        }),
        ..Parts::default()
    };
    let s = setup(
        12,
        &[Some((200, Duration::ZERO))],
        Some(settings(parts)),
        RouteTable::default(),
    )
    .await;
    let mut c = s.client().await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for user in ["a", "b", "c", "d", "e"] {
            v.push(send(&mut c, get("/", &[("x-user", user)])).await.0);
        }
        v
    };
    // Burst 3, then one a minute: the next two are refused, whatever
    // x-user says.
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let mut other = s.client_as(&s.other_svid).await;
    for _ in 0..3 {
        assert_eq!(
            send(&mut other, get("/", &[])).await.0,
            200,
            "another identity has its own bucket"
        );
    }
    assert_eq!(send(&mut other, get("/", &[])).await.0, 429);
    assert_eq!(s.counter("quicmesh_waypoint_rate_limited_total{"), 3.0);
}

/// A route rule: requests for exactly `path`, to `svc`.
fn exact_rule(path: &str) -> quicmesh_core::route::Rule {
    use quicmesh_core::route::{PathMatch, RequestMatch, Rule};
    Rule {
        matches: vec![RequestMatch::new(
            PathMatch::exact(path).unwrap(),
            vec![],
            vec![],
            None,
        )],
        backends: vec![quicmesh_core::route::Backend {
            target: svc(),
            weight: 1,
            filters: vec![],
            invalid: None,
        }],
        ..Rule::default()
    }
}

/// Per route: the requests of one HTTPRoute spend its bucket only; the
/// Service's other route keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_per_route_gives_each_route_its_bucket() {
    use quicmesh_core::route::HttpRoute;
    let parts = Parts {
        rate_limit: Some(tp::RateLimit {
            requests: 1,
            per: Duration::from_secs(60),
            burst: 2,
            key: tp::RateKey::Route,
        }),
        ..Parts::default()
    };
    let route = |name: &str, path: &str| {
        Arc::new(HttpRoute {
            namespace: "shop".into(),
            name: name.into(),
            grpc: false,
            created: 0,
            rules: vec![exact_rule(path)],
        })
    };
    let routes = RouteTable::new(vec![route("orders", "/orders"), route("cart", "/cart")]);
    let s = setup(
        13,
        &[Some((200, Duration::ZERO))],
        Some(settings(parts)),
        routes,
    )
    .await;
    let mut c = s.client().await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(&mut c, get("/orders", &[])).await.0);
    }
    assert_eq!(statuses, [200, 200, 429], "burst 2 for /orders");
    // Same client, same identity, another route: its own bucket.
    assert_eq!(send(&mut c, get("/cart", &[])).await.0, 200);
    assert_eq!(send(&mut c, get("/cart", &[])).await.0, 200);
    assert_eq!(send(&mut c, get("/cart", &[])).await.0, 429);
    assert_eq!(s.counter("quicmesh_waypoint_rate_limited_total{"), 2.0);
}

/// Faults for requests with `x-fault: yes` only: all delayed 300 ms and
/// aborted with 418; a gRPC status is a trailers-only gRPC answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_apply_only_to_requests_with_the_header() {
    let fault = |with| Parts {
        fault_injection: Some(tp::Fault {
            delay: Some(tp::FaultDelay {
                per_million: tp::PER_MILLION,
                fixed_delay: Duration::from_millis(300),
            }),
            abort: Some(tp::FaultAbort {
                per_million: tp::PER_MILLION,
                with,
            }),
            headers: vec![tp::FaultHeader {
                name: "x-fault".into(),
                value: Some("yes".into()),
            }],
        }),
        ..Parts::default()
    };
    let s = setup(
        7,
        &[Some((200, Duration::ZERO))],
        Some(settings(fault(tp::AbortWith::Http(418)))),
        RouteTable::default(),
    )
    .await;
    let mut c = s.client().await;
    let t = Instant::now();
    assert_eq!(send(&mut c, get("/", &[])).await.0, 200);
    assert!(t.elapsed() < Duration::from_millis(300), "not delayed");
    let t = Instant::now();
    let (status, _, body) = send(&mut c, get("/", &[("x-fault", "yes")])).await;
    assert_eq!((status, body.as_str()), (418, "fault_abort\n"));
    assert!(t.elapsed() >= Duration::from_millis(300), "delayed");
    let m = s.metrics();
    assert!(
        m.contains(r#"quicmesh_waypoint_faults_total{service="shop/svc:80",fault="abort"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"quicmesh_waypoint_faults_total{service="shop/svc:80",fault="delay"} 1"#),
        "{m}"
    );
    assert_eq!(s.seen[0].requests.load(Ordering::Relaxed), 1);

    let s = setup(
        8,
        &[Some((200, Duration::ZERO))],
        Some(settings(fault(tp::AbortWith::Grpc(14)))),
        RouteTable::default(),
    )
    .await;
    let mut c = s.client().await;
    let (status, headers, _) = send(&mut c, get("/", &[("x-fault", "yes")])).await;
    assert_eq!(status, 200);
    assert_eq!(headers["grpc-status"], "14");
    assert_eq!(headers["content-type"], "application/grpc");
}

/// `maxRequestBodyBytes: 1024`: a longer `content-length` is refused
/// before it goes anywhere; a streamed body is cut off as it crosses the
/// limit; a shorter one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_answered_413() {
    let parts = Parts {
        max_request_body_bytes: Some(1024),
        ..Parts::default()
    };
    let s = setup(
        9,
        &[Some((200, Duration::ZERO))],
        Some(settings(parts)),
        RouteTable::default(),
    )
    .await;
    let post = |n: usize| {
        http::Request::post("/body")
            .header("host", "svc.shop")
            .body(Full::new(Bytes::from(vec![b'x'; n])))
            .unwrap()
    };
    let mut c = s.client().await;
    let (status, _, body) = send(&mut c, post(1000)).await;
    assert_eq!((status, body.as_str()), (200, "1000"));
    let mut c = s.client().await;
    let (status, _, body) = send(&mut c, post(2000)).await;
    assert_eq!((status, body.as_str()), (413, "body_too_large\n"));
    assert_eq!(
        s.seen[0].requests.load(Ordering::Relaxed),
        1,
        "refused before it went anywhere"
    );
    // Streamed (chunked, no length): passed on, then cut off.
    let chunks: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = (0..8)
        .map(|_| Ok(hyper::body::Frame::data(Bytes::from(vec![b'y'; 512]))))
        .collect();
    let streamed = http::Request::post("/body")
        .header("host", "svc.shop")
        .body(http_body_util::StreamBody::new(futures::stream::iter(
            chunks,
        )))
        .unwrap();
    let key = PoolKey {
        src: s.client_svid.id.clone(),
        dst: s.waypoint_id.clone(),
        addr: SocketAddr::new(s.waypoint_ip, TUNNEL_PORT),
    };
    let io = s
        .client
        .open(&key, &s.client_svid, VIP, Default::default())
        .await
        .unwrap();
    let (mut sc, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io.into_io()))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sc.send_request(streamed).await.unwrap();
    assert_eq!(resp.status(), 413);
    let m = s.metrics();
    assert_eq!(
        sum_of(
            &m,
            "quicmesh_waypoint_requests_total",
            &[("code", "413"), ("flag", "body_too_large")]
        ),
        2.0,
        "{m}"
    );
}

/// `timeouts.request` bounds requests of routes without their own (a route
/// with one keeps it); `timeouts.connect` bounds reaching an endpoint;
/// `timeouts.idle` closes unused connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_bound_requests_connects_and_idle_connections() {
    use quicmesh_core::route::{HttpRoute, Rule, Timeouts};
    let parts = Parts {
        timeouts: Some(tp::Timeouts {
            connect: None,
            idle: Some(Duration::from_millis(200)),
            request: Some(Duration::from_millis(200)),
        }),
        ..Parts::default()
    };
    let rule = |path: &str, request: Option<Duration>| Rule {
        timeouts: Timeouts {
            request,
            backend_request: None,
        },
        ..exact_rule(path)
    };
    let routes = RouteTable::new(vec![Arc::new(HttpRoute {
        namespace: "shop".into(),
        name: "r".into(),
        grpc: false,
        created: 0,
        rules: vec![
            rule("/slow", None),
            rule("/", None),
            rule("/patient", Some(Duration::from_secs(2))),
        ],
    })]);
    let s = setup(
        10,
        &[Some((200, Duration::ZERO))],
        Some(settings(parts)),
        routes,
    )
    .await;
    let mut c = s.client().await;
    let (status, _, body) = send(&mut c, get("/slow", &[])).await;
    assert_eq!(
        (status, body.as_str()),
        (504, "timeout\n"),
        "the policy's default"
    );
    // The route's own wins (the app answers /patient at once; a 2 s bound).
    assert_eq!(send(&mut c, get("/patient", &[])).await.0, 200);
    // Idle: a connection unused for 200 ms is not used again.
    assert_eq!(send(&mut c, get("/", &[])).await.0, 200);
    let before = s.seen[0].connections.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(send(&mut c, get("/", &[])).await.0, 200);
    let opened = s.seen[0].connections.load(Ordering::Relaxed) - before;
    assert_eq!(opened, 1, "an idle connection was reused past its timeout");

    // Connect: an endpoint that never answers the handshake fails within
    // the connect timeout, not the tunnel's 5 s.
    let parts = Parts {
        timeouts: Some(tp::Timeouts {
            connect: Some(Duration::from_millis(300)),
            idle: None,
            request: None,
        }),
        ..Parts::default()
    };
    let s = setup(11, &[None], Some(settings(parts)), RouteTable::default()).await;
    let mut c = s.client().await;
    let t = Instant::now();
    let (status, _, body) = send(&mut c, get("/", &[])).await;
    assert_eq!((status, body.as_str()), (503, "upstream_connect_failure\n"));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}
