//! The waypoint's access log against `docs/access-log.md`: a waypoint
//! over real tunnels on loopback serves an HTTP request, a refused one and
//! an opaque TCP connection, with the process's own logging
//! (`quicmesh_core::telemetry`, `LOG_FORMAT=json` or text); every field
//! the doc lists for the request line, the TCP line and the tunnel
//! stream's line is in what it writes, with the documented type, and
//! nothing undocumented is.
//!
//! Logging is process-wide and goes to stderr, so the traffic runs in a
//! child: this test binary again, running only the ignored
//! [`traffic_for_the_log`] with its stderr in a file, which the test reads
//! until the lines are there (bounded), then stops the child.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use quicmesh_core::authz::l7::parse_method;
use quicmesh_core::authz::{Action, Operation, Policy, Rule as AuthzRule};
use quicmesh_core::route::{
    Backend, BackendRef, HttpRoute, PathMatch, RequestMatch, RouteTable, Rule,
};
use quicmesh_core::tunnel::client::PoolKey;
use quicmesh_core::tunnel::TUNNEL_PORT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use waypoint::authz::Access;
use waypoint::proxy::{Parent, Tables, Versioned};
use waypoint::upstream::{Endpoint, Protocol};

#[allow(dead_code)]
mod support;
use support::*;

#[path = "../../core/tests/support/access_log.rs"]
mod access_log;

/// Set in the child: the directory for its CA, and the third octet of
/// its loopback addresses (a text and a JSON child run side by side).
const CHILD_DIR: &str = "WAYPOINT_ACCESS_LOG_DIR";
const CHILD_NET: &str = "WAYPOINT_ACCESS_LOG_NET";
/// The HTTP Service (routed) and the opaque TCP one.
const HTTP_VIP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 20)), 80);
const TCP_VIP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 21)), 9000);
/// How long the child may take to write every line.
const WITHIN: Duration = Duration::from_secs(60);

fn loopback(net: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 78, net, host))
}

fn service(name: &str, port: u16) -> BackendRef {
    BackendRef {
        namespace: "shop".into(),
        name: name.into(),
        port,
    }
}

/// An HTTP app answering `hello` to everything.
async fn hello(addr: SocketAddr) {
    serve_app(addr, |_req| async {
        http::Response::new(Full::new(Bytes::from_static(b"hello")))
    })
    .await;
}

/// A TCP app echoing what it reads until the client closes.
async fn echo(addr: SocketAddr) {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 || tcp.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = tcp.shutdown().await;
            });
        }
    });
}

/// The child's traffic: `GET /hello` (routed, 200), `DELETE /hello`
/// (denied by a policy attached to the waypoint, 403) and `ping` over the
/// TCP Service, then it waits for the parent to stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child of every_documented_field_is_written_and_nothing_else"]
async fn traffic_for_the_log() {
    let (Some(dir), Some(net)) = (std::env::var_os(CHILD_DIR), std::env::var_os(CHILD_NET)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let net: u8 = net.to_str().unwrap().parse().unwrap();
    quicmesh_core::telemetry::init_logging();

    let (ca, bundles) = test_ca(&dir);
    let life = Duration::from_secs(600);
    let stop = CancellationToken::new();

    // The backends, each a workload behind its own tunnel server.
    let mut endpoints = std::collections::HashMap::new();
    let mut access = std::collections::HashMap::new();
    for (name, host, port, svc_port) in [("web", 11, 8080, 80), ("db", 12, 5432, 9000)] {
        let ip = loopback(net, host);
        let identity = shop_workload(ip, name, &ca, &bundles, &stop);
        endpoints.insert(
            service(name, svc_port),
            vec![Endpoint {
                addr: SocketAddr::new(ip, port),
                identity,
                protocol: Protocol::Auto,
                workload: name.into(),
            }],
        );
        access.insert(name.to_string(), Arc::new(Access::default()));
    }
    hello(SocketAddr::new(loopback(net, 11), 8080)).await;
    echo(SocketAddr::new(loopback(net, 12), 5432)).await;

    let route = HttpRoute {
        namespace: "shop".into(),
        name: "web-route".into(),
        grpc: false,
        created: 0,
        rules: vec![Rule {
            matches: vec![RequestMatch::new(
                PathMatch::prefix("/").unwrap(),
                vec![],
                vec![],
                None,
            )],
            backends: vec![Backend {
                target: service("web", 80),
                weight: 1,
                filters: vec![],
                invalid: None,
            }],
            ..Rule::default()
        }],
    };
    let no_delete = Policy {
        name: "shop/no-delete".into(),
        action: Action::Deny,
        rules: vec![AuthzRule {
            to: vec![Operation {
                methods: vec![parse_method("DELETE").unwrap()],
                l7: true,
                ..Operation::default()
            }],
            ..AuthzRule::default()
        }],
        invalid: None,
    };
    let mut parents = std::collections::HashMap::new();
    parents.insert(
        HTTP_VIP,
        Arc::new(Parent {
            service: service("web", 80),
            host: "web.shop.svc.cluster.local".into(),
            routes: RouteTable::new(vec![Arc::new(route)]),
            consumers: Default::default(),
            protocol: Protocol::Http1,
            policies: vec![Arc::new(no_delete)],
        }),
    );
    parents.insert(
        TCP_VIP,
        Arc::new(Parent {
            service: service("db", 9000),
            host: "db.shop.svc.cluster.local".into(),
            routes: RouteTable::default(),
            consumers: Default::default(),
            protocol: Protocol::Tcp,
            policies: Vec::new(),
        }),
    );

    // The waypoint, behind its tunnel server.
    let waypoint_id = id("ns/shop/sa/waypoint");
    let waypoint_ip = loopback(net, 2);
    let directory = Arc::new(Versioned::new(Tables {
        parents,
        endpoints,
        access,
        ..Tables::default()
    }));
    start_waypoint(&dir, &bundles, &waypoint_id, directory, waypoint_ip, &stop).await;

    // A client tunnelling to the waypoint, as its ztunnel does.
    let client = client_pool(&bundles);
    let client_svid = ca.mint(&id("ns/web/sa/client"), life).unwrap();
    let key = PoolKey {
        src: client_svid.id.clone(),
        dst: waypoint_id.clone(),
        addr: SocketAddr::new(waypoint_ip, TUNNEL_PORT),
    };
    let open = |authority| {
        let (client, key, svid) = (&client, &key, &client_svid);
        async move {
            client
                .open(key, svid, authority, Default::default())
                .await
                .unwrap()
                .into_io()
        }
    };

    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(open(HTTP_VIP).await))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    for (method, want) in [("GET", 200), ("DELETE", 403)] {
        let req = http::Request::builder()
            .method(method)
            .uri("/hello")
            .header("host", "web.shop.svc.cluster.local")
            .body(Full::new(Bytes::new()))
            .unwrap();
        // The connection takes the next request once the last answer is read.
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{method}");
        let _ = resp.into_body().collect().await;
    }
    // Closed, so that the tunnel stream's line follows.
    drop(sender);
    let _ = conn.await;

    let mut tcp = open(TCP_VIP).await;
    tcp.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    tcp.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    drop(tcp);

    // The parent stops the child once it has read every line; alone, it
    // ends after a while.
    tokio::time::sleep(WITHIN).await;
    stop.cancel();
}

/// A child run of [`traffic_for_the_log`] writing its log to `log`.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn child(dir: &Path, net: u8, format: &str, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["traffic_for_the_log", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir)
        .env(CHILD_NET, net.to_string())
        .env("LOG_FORMAT", format)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap();
    Child(child)
}

/// Reads `log` until `pick` finds its line in it, for at most [`WITHIN`].
fn wait_for<T>(child: &mut Child, log: &Path, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(found) = pick(&text) {
            return found;
        }
        let exited = child.0.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "{what}: not within {WITHIN:?} (child exited: {exited:?})\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The lines checked: (the doc's heading, target, message, a field that
/// tells it apart and its value).
const LINES: [(&str, &str, &str, &str, &str); 5] = [
    (
        "Waypoint: one line per request",
        "waypoint::access",
        "request",
        "status",
        "200",
    ),
    (
        "Waypoint: one line per request",
        "waypoint::access",
        "request",
        "status",
        "403",
    ),
    (
        "Waypoint: request failed at the waypoint",
        "waypoint::proxy",
        "request failed at the waypoint",
        "method",
        "DELETE",
    ),
    (
        "Waypoint: one line per opaque TCP connection",
        "waypoint::proxy::tcp",
        "tcp connection",
        "outcome",
        "closed",
    ),
    (
        "Inbound, through the tunnel",
        "quicmesh_core::tunnel::server::requests",
        "connection complete",
        "dst.identity",
        "spiffe://cluster.local/ns/shop/sa/waypoint",
    ),
];

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn every_documented_field_is_written_and_nothing_else() {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("waypoint-access-log-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    let doc = access_log::doc();
    let envelope = access_log::fields(&doc, "The JSON envelope");

    let (json_log, text_log) = (scratch.0.join("json.log"), scratch.0.join("text.log"));
    let (json_dir, text_dir) = (scratch.0.join("json"), scratch.0.join("text"));
    let mut json_child = child(&json_dir, 1, "json", &json_log);
    let mut text_child = child(&text_dir, 2, "text", &text_log);

    for (heading, target, message, key, value) in LINES {
        let fields = access_log::fields(&doc, heading);
        let what = format!("the {target} {message:?} line with {key}={value}");
        let line = wait_for(&mut json_child, &json_log, &what, |text| {
            access_log::json_lines(text).into_iter().find(|l| {
                access_log::str_at(l, "target") == target
                    && access_log::str_at(l, "message") == message
                    && l.get(key).is_some_and(|v| value_text(v) == value)
            })
        });
        if let Err(e) = access_log::check_json(&line, &envelope, &fields) {
            panic!("{what} against \"{heading}\" in docs/access-log.md: {e}\n{line}");
        }
        // The same line as text: every field by name.
        let quoted = format!("{key}={}", serde_json::Value::String(value.into()));
        let plain = format!("{key}={value}");
        // Its fields: what follows the target and message (the spans
        // before them have fields of their own).
        let text = wait_for(&mut text_child, &text_log, &what, |text| {
            text.lines()
                .filter_map(|l| l.split_once(&format!(" {target}: {message} ")))
                .map(|(_, fields)| format!(" {fields}"))
                .find(|f| f.contains(&format!(" {quoted}")) || f.contains(&format!(" {plain}")))
        });
        if let Err(e) = access_log::check_text(&text, &fields) {
            panic!("{what} (text) against \"{heading}\": {e}\n{text}");
        }
    }
}
