//! The Gateway API mesh conformance scenarios (kubernetes-sigs/gateway-api
//! `conformance/tests/mesh/`), reproduced in the lab: the same namespaces,
//! Services, routes and expectations, asked of quicmesh's waypoint by real
//! clients (curl, grpcio) in the same pods upstream uses as clients (the
//! `echo-v1` pod, `echo-v2` where a scenario says so). The status of every
//! upstream scenario is in docs/conformance.md.
//!
//! As upstream, each scenario applies its routes, waits for them to take
//! effect (the controller reports them, the waypoint has exactly them),
//! checks each case until it holds or its deadline passes, and removes its
//! routes again (a route must also be `Accepted`, and a case that held
//! must hold a few more times, so a backend picked by chance does not
//! pass). Several scenarios share one cluster; a failing case is recorded
//! under its scenario and the rest still run, and each test fails at its
//! end with every failure it saw. MeshConsumerRoute is a test of its own
//! (its own consumer namespace).
//!
//! Differences from upstream, all of the harness, none of the expectation:
//! short Service names (`echo`, `echo-v1:8080`) are sent as the `Host`
//! upstream sends, with curl's `--resolve` to the Service's VIP (the lab
//! has no DNS search path); the echo Services have no `https` and `tcp`
//! ports (no scenario uses them); the backends are `tests/python/echo_json.py`
//! (HTTP) and a grpcio server written below (gRPC). Upstream's mesh client
//! does not look at a redirect's `Location`; here it is checked as
//! upstream's gateway client does (scheme, host, port, path).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use quicmesh_e2e::{eventually, require_root};
use quicmesh_lab::local::{Cluster, LocalSpec};
use quicmesh_lab::mesh::netns_http_get;
use serde_json::Value;

const NS: &str = "gateway-conformance-mesh";
const CONSUMER_NS: &str = "gateway-conformance-mesh-consumer";

/// How long a scenario's routes may take to reach the waypoint.
const CONVERGE: Duration = Duration::from_secs(30);
/// How long one case may take to hold once the routes are in place
/// (upstream's eventual consistency, with a bound).
const CASE: Duration = Duration::from_secs(10);
/// How many more times a case must hold once it has.
const CONFIRM: usize = 5;

/// `conformance/mesh/manifests.yaml`: the mesh namespace (in the mesh,
/// through its waypoint), echo-v1 and echo-v2, and the Services `echo`
/// (both), `echo-v1`, `echo-v2`.
fn base(command: &str, port: (&str, u16), service_ports: &str) -> String {
    let (port_name, container_port) = port;
    let deployment = |version: &str| {
        format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo-{version}, namespace: {NS}}}
spec:
  replicas: 1
  template:
    metadata: {{labels: {{app: echo, version: {version}}}}}
    spec:
      serviceAccountName: echo
      containers:
      - name: echo
        command: {command}
        ports: [{{name: {port_name}, containerPort: {container_port}}}]
---"#
        )
    };
    let service = |name: &str, selector: &str| {
        format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}}}
spec:
  selector: {selector}
  ports:
{service_ports}
---"#
        )
    };
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
  labels: {{gateway-conformance: mesh, quicmesh.io/dataplane-mode: ambient, quicmesh.io/use-waypoint: waypoint}}
---{}{}{}
---{}
---{}
"#,
        deployment("v1"),
        deployment("v2"),
        service("echo", "{app: echo}"),
        service("echo-v1", "{app: echo, version: v1}"),
        service("echo-v2", "{app: echo, version: v2}"),
    )
}

const HTTP_PORTS: &str = r#"  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: http-alt, port: 8080, targetPort: 8080, appProtocol: http}"#;

const GRPC_PORTS: &str =
    r#"  - {name: grpc, port: 7070, targetPort: 7070, appProtocol: kubernetes.io/h2c}"#;

/// The consumer namespace of `conformance/mesh/manifests.yaml`: in the
/// mesh, no waypoint of its own, an echo-v1 of its own (the client of
/// MeshConsumerRoute).
const CONSUMER: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: gateway-conformance-mesh-consumer
  labels: {gateway-conformance: mesh-consumer, quicmesh.io/dataplane-mode: ambient}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo-v1, namespace: gateway-conformance-mesh-consumer}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: echo, version: v1}}
    spec:
      serviceAccountName: echo
      containers:
      - name: echo
        command: ["python3", "echo_json.py"]
        ports: [{name: http, containerPort: 8080}]
"#;

/// A gRPC echo (grpcio, no generated code): every unary call is answered
/// with JSON naming the pod, the method and the request's metadata.
const GRPC_ECHO: &str = r#"import json, os
from concurrent import futures
import grpc

def answer(method):
    def call(request, context):
        headers = {}
        for k, v in context.invocation_metadata():
            headers.setdefault(k.lower(), []).append(v if isinstance(v, str) else v.decode("latin-1"))
        return json.dumps({"method": method, "headers": headers,
                           "namespace": os.environ.get("POD_NAMESPACE", ""),
                           "pod": os.environ.get("POD_NAME", "")}).encode()
    return call

class AnyMethod(grpc.GenericRpcHandler):
    def service(self, details):
        return grpc.unary_unary_rpc_method_handler(answer(details.method))

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[AnyMethod()])
server.add_insecure_port("0.0.0.0:" + os.environ.get("PORT", "7070"))
server.start()
server.wait_for_termination()
"#;

/// A gRPC client (grpcio): `TARGET AUTHORITY COUNT [name:value...]` makes
/// COUNT unary calls of upstream's echo method on one channel, each with
/// that metadata, and prints each answer on its own line.
const GRPC_CLIENT: &str = r#"import sys
import grpc

target, authority, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
metadata = tuple(tuple(a.split(":", 1)) for a in sys.argv[4:])
with grpc.insecure_channel(target, options=[("grpc.default_authority", authority)]) as channel:
    call = channel.unary_unary("/proto.EchoTestService/Echo")
    for _ in range(count):
        print(call(b"", metadata=metadata, timeout=10).decode(), flush=True)
"#;

// ---------------------------------------------------------------------
// The harness: requests, expectations, scenarios.

/// A request as upstream's `http.Request`: to `host` (`name[:port]` of a
/// Service of the mesh namespace, or an `ip:port`), from a pod.
#[derive(Clone)]
struct Req {
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    from: (String, String),
}

fn get(host: &str, path: &str) -> Req {
    Req {
        host: host.into(),
        path: path.into(),
        headers: Vec::new(),
        from: (NS.into(), "echo-v1-0".into()),
    }
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn from(mut self, ns: &str, pod: &str) -> Self {
        self.from = (ns.into(), pod.into());
        self
    }
}

/// Where a redirect should send the client; what is `None` is checked as
/// upstream does: the request's scheme and path, the scheme's port, any
/// host.
#[derive(Default, Clone)]
struct Redirect {
    scheme: Option<&'static str>,
    host: Option<&'static str>,
    port: Option<&'static str>,
    path: Option<&'static str>,
}

/// What upstream's `http.ExpectedResponse` asks of the answer.
#[derive(Default, Clone)]
struct Expect {
    /// 0: 200.
    status: u16,
    /// The answering pod's name starts with this ("": any).
    backend: &'static str,
    /// The path the backend saw.
    path: Option<&'static str>,
    /// Request headers the backend saw (repeated values joined with `,`).
    headers: Vec<(&'static str, &'static str)>,
    absent_headers: Vec<&'static str>,
    response_headers: Vec<(&'static str, &'static str)>,
    absent_response_headers: Vec<&'static str>,
    redirect: Option<Redirect>,
}

fn backend(name: &'static str) -> Expect {
    Expect {
        backend: name,
        ..Expect::default()
    }
}

fn status(code: u16) -> Expect {
    Expect {
        status: code,
        ..Expect::default()
    }
}

/// An HTTP answer as curl printed it (`-i`).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn parse(out: &str) -> Result<Reply, String> {
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((out, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line in {out:?}"))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Reply {
            status,
            headers,
            body: body.to_string(),
        })
    }

    fn header(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// The echo's view of a request (its JSON answer).
fn seen_header(echo: &Value, name: &str) -> Option<String> {
    let values = echo["headers"][name.to_ascii_lowercase()].as_array()?;
    Some(
        values
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Checks an answer against an expectation; the reason when it fails.
fn check(req: &Req, exp: &Expect, reply: &Reply) -> Result<(), String> {
    let want = if exp.status == 0 { 200 } else { exp.status };
    if reply.status != want {
        return Err(format!("status {} (want {want})", reply.status));
    }
    for (name, value) in &exp.response_headers {
        let got = reply.header(name);
        if got.first() != Some(value) {
            return Err(format!("response header {name}: {got:?} (want {value:?})"));
        }
    }
    for name in &exp.absent_response_headers {
        let got = reply.header(name);
        if !got.is_empty() {
            return Err(format!("response header {name}: {got:?} (want none)"));
        }
    }
    if let Some(r) = &exp.redirect {
        let location = reply.header("location");
        let location = location.first().ok_or("no location")?;
        let (scheme, rest) = location
            .split_once("://")
            .ok_or_else(|| format!("location {location:?} is not absolute"))?;
        let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
        let path = path.split('?').next().unwrap_or(path);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (authority, ""),
        };
        let want_scheme = r.scheme.unwrap_or("http");
        let want_path = r
            .path
            .unwrap_or_else(|| req.path.split('?').next().unwrap_or(""));
        let port_ok = match (r.port, want_scheme) {
            (Some(p), _) => port == p,
            (None, "http") => port.is_empty() || port == "80",
            (None, "https") => port.is_empty() || port == "443",
            (None, _) => true,
        };
        if scheme != want_scheme
            || r.host.is_some_and(|h| h != host)
            || !port_ok
            || path != want_path
        {
            return Err(format!(
                "location {location:?} (want scheme {want_scheme}, host {}, port {}, path {want_path})",
                r.host.unwrap_or("any"),
                r.port.unwrap_or("the scheme's")
            ));
        }
    }
    let wants_echo = !exp.backend.is_empty()
        || exp.path.is_some()
        || !exp.headers.is_empty()
        || !exp.absent_headers.is_empty();
    if !wants_echo {
        return Ok(());
    }
    let echo: Value = serde_json::from_str(reply.body.trim())
        .map_err(|e| format!("body is not the echo's JSON ({e}): {:?}", reply.body))?;
    let pod = echo["pod"].as_str().unwrap_or_default();
    if !pod.starts_with(exp.backend) {
        return Err(format!("answered by {pod:?} (want {}-*)", exp.backend));
    }
    if !exp.backend.is_empty() && echo["namespace"] != NS {
        return Err(format!("answered from namespace {}", echo["namespace"]));
    }
    if let Some(p) = exp.path {
        if echo["path"] != p {
            return Err(format!("backend saw path {} (want {p})", echo["path"]));
        }
    }
    for (name, value) in &exp.headers {
        let got = seen_header(&echo, name);
        if got.as_deref() != Some(*value) {
            return Err(format!("backend saw {name}: {got:?} (want {value:?})"));
        }
    }
    for name in &exp.absent_headers {
        if let Some(got) = seen_header(&echo, name) {
            return Err(format!("backend saw {name}: {got:?} (want none)"));
        }
    }
    Ok(())
}

/// A cluster running scenarios, and what failed in them.
struct Suite {
    cluster: Cluster,
    dir: tempfile::TempDir,
    failures: Vec<String>,
    /// The file of the scenario whose routes are applied.
    applied: Option<std::path::PathBuf>,
}

impl Suite {
    async fn up(manifests: &[(&str, &str)], files: &[(&str, &str)]) -> Suite {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/python/echo_json.py"),
            d.join("echo_json.py"),
        )
        .unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        for (name, text) in manifests {
            std::fs::write(d.join(name), text).unwrap();
        }
        let cluster = Cluster::up(LocalSpec::new(Path::new(d), 2)).await.unwrap();
        assert!(cluster.errors.is_empty(), "{:?}", cluster.errors);
        Suite {
            cluster,
            dir,
            failures: Vec::new(),
            applied: None,
        }
    }

    fn fail(&mut self, scenario: &str, what: String) {
        eprintln!("FAIL {scenario}: {what}");
        self.failures.push(format!("{scenario}: {what}"));
    }

    /// The routes the controller reports, `ns/name` -> accepted.
    async fn controller_routes(&self) -> BTreeMap<String, bool> {
        let text = self
            .cluster
            .controller_http("/status")
            .await
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        v["httpRoutes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let accepted = r["parents"].as_array().into_iter().flatten().any(|p| {
                    p["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Accepted" && c["status"] == true)
                });
                (
                    format!(
                        "{}/{}",
                        r["namespace"].as_str().unwrap_or_default(),
                        r["name"].as_str().unwrap_or_default()
                    ),
                    accepted,
                )
            })
            .collect()
    }

    /// The routes the mesh namespace's waypoint has, `ns/name`.
    async fn waypoint_routes(&self) -> Option<BTreeSet<String>> {
        let wp = self.cluster.pod(NS, "waypoint-0");
        let text = netns_http_get(
            &wp.netns,
            SocketAddr::from(([127, 0, 0, 1], 15000)),
            "/config_dump",
        )
        .await
        .ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        let dests = v["config"]["destinations"].as_object()?;
        Some(
            dests
                .values()
                .flat_map(|d| d["routes"].as_array().cloned().unwrap_or_default())
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
        )
    }

    /// Waits (bounded) until the controller reports exactly `names` and
    /// the waypoint has exactly those of them it accepted.
    async fn converge(&mut self, scenario: &str, names: &[String]) {
        let want: BTreeSet<String> = names.iter().cloned().collect();
        let state = RefCell::new(String::new());
        let (this, want_ref, state_ref) = (&*self, &want, &state);
        let ok = eventually(CONVERGE, || async move {
            let reported = this.controller_routes().await;
            let at_waypoint = this.waypoint_routes().await;
            let listed: BTreeSet<String> = reported.keys().cloned().collect();
            let accepted: BTreeSet<String> = reported
                .iter()
                .filter(|(_, a)| **a)
                .map(|(n, _)| n.clone())
                .collect();
            *state_ref.borrow_mut() = format!(
                "controller reports {reported:?}, waypoint has {at_waypoint:?}, manifest errors {:?}",
                this.cluster.errors
            );
            listed == *want_ref && at_waypoint.as_ref() == Some(&accepted)
        })
        .await;
        if !ok {
            let s = state.into_inner();
            self.fail(scenario, format!("routes did not take effect: {s}"));
        }
    }

    /// Applies a scenario's routes (removing the last scenario's first,
    /// as upstream deletes a test's manifests after it) and waits for them.
    async fn apply(&mut self, scenario: &str, routes: &str, names: &[&str]) {
        self.clear(scenario).await;
        let path = self.dir.path().join(format!("routes-{scenario}.yaml"));
        std::fs::write(&path, routes).unwrap();
        self.applied = Some(path);
        let errors = self.cluster.reconcile().await.unwrap();
        if !errors.is_empty() {
            self.fail(scenario, format!("manifest refused: {errors:?}"));
        }
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.converge(scenario, &names).await;
        // A route that is not accepted cannot pass its scenario, even where
        // the Service's own endpoints happen to answer as expected.
        let reported = self.controller_routes().await;
        for n in &names {
            if reported.get(n) != Some(&true) {
                let parents = self.route_parents(n).await;
                self.fail(scenario, format!("route {n} not accepted: {parents}"));
            }
        }
    }

    /// A route's parent statuses, as the controller reports them.
    async fn route_parents(&self, name: &str) -> String {
        let text = self
            .cluster
            .controller_http("/status")
            .await
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        v["httpRoutes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| {
                format!(
                    "{}/{}",
                    r["namespace"].as_str().unwrap_or_default(),
                    r["name"].as_str().unwrap_or_default()
                ) == name
            })
            .map_or_else(|| "not reported".to_string(), |r| r["parents"].to_string())
    }

    async fn clear(&mut self, scenario: &str) {
        if let Some(p) = self.applied.take() {
            std::fs::remove_file(p).unwrap();
            self.cluster.reconcile().await.unwrap();
            self.converge(scenario, &[]).await;
        }
    }

    /// curl in the request's pod: its answer, or why there was none.
    fn curl(&self, req: &Req) -> Result<Reply, String> {
        let (name, port) = match req.host.split_once(':') {
            Some((n, p)) => (n, p.parse::<u16>().unwrap()),
            None => (req.host.as_str(), 80),
        };
        let mut argv: Vec<String> = ["curl", "-sS", "--max-time", "5", "-i"]
            .map(String::from)
            .into();
        if name.parse::<std::net::Ipv4Addr>().is_err() {
            // `svc` or `svc.ns`, as a pod of the mesh namespace names it.
            let (svc, ns) = name.split_once('.').unwrap_or((name, NS));
            let vip = self.cluster.vip(ns, svc);
            argv.extend(["--resolve".into(), format!("{name}:{port}:{vip}")]);
        }
        for (n, v) in &req.headers {
            argv.extend(["-H".into(), format!("{n}: {v}")]);
        }
        // Upstream's client: http://<host><path>. `-g`: `[]` are no globs.
        argv.extend(["-g".into(), format!("http://{}{}", req.host, req.path)]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let netns = &self.cluster.pod(&req.from.0, &req.from.1).netns;
        let out = self
            .cluster
            .lab
            .exec_timeout(netns, &argv, Duration::from_secs(30))
            .map_err(|e| format!("curl failed: {e:#}"))?;
        Reply::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// One case: `req` until its answer meets `exp` (bounded); a failure
    /// is recorded with the request and the last answer.
    async fn case(&mut self, scenario: &str, req: Req, exp: Expect) {
        let last = RefCell::new(String::new());
        let (this, req_ref, exp_ref, last_ref) = (&*self, &req, &exp, &last);
        let ok = eventually(CASE, || async move {
            match this.curl(req_ref).and_then(|r| {
                check(req_ref, exp_ref, &r)
                    .map_err(|e| format!("{e}; got {} {:?} {}", r.status, r.headers, r.body.trim()))
            }) {
                Ok(()) => true,
                Err(e) => {
                    *last_ref.borrow_mut() = e;
                    false
                }
            }
        })
        .await;
        // Once it holds, it holds: the routes are in place, so a later
        // miss is a wrong answer, not a late one (and a backend picked by
        // chance does not pass).
        let mut confirmed = ok;
        for _ in 0..CONFIRM {
            if !confirmed {
                break;
            }
            if let Err(e) = self.curl(&req).and_then(|r| {
                check(&req, &exp, &r)
                    .map_err(|e| format!("{e}; got {} {:?} {}", r.status, r.headers, r.body.trim()))
            }) {
                *last.borrow_mut() = format!("held, then did not: {e}");
                confirmed = false;
            }
        }
        if !confirmed {
            let what = format!(
                "GET {}{} {:?} from {}/{}: {}",
                req.host,
                req.path,
                req.headers,
                req.from.0,
                req.from.1,
                last.into_inner()
            );
            self.fail(scenario, what);
        }
    }

    /// upstream's weight check: `count` answers, each backend's share
    /// within 5 points of its weight; up to 10 tries.
    async fn weights(
        &mut self,
        scenario: &str,
        mut batch: impl FnMut(&Suite) -> Result<Vec<String>, String>,
        want: &[(&str, f64)],
    ) {
        const COUNT: usize = 500;
        let mut last = String::new();
        for _ in 0..10 {
            let pods = match batch(&*self) {
                Ok(p) => p,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for p in &pods {
                let b = p.rsplit_once('-').map_or(p.as_str(), |b| b.0);
                *seen.entry(b.to_string()).or_default() += 1;
            }
            let active = want.iter().filter(|(_, w)| *w > 0.0).count();
            let within = want.iter().all(|(b, w)| {
                let got = seen.get(*b).copied().unwrap_or(0) as f64 / COUNT as f64;
                (got - w).abs() <= 0.05
            });
            if pods.len() == COUNT && seen.len() == active && within {
                return;
            }
            last = format!("{} answers: {seen:?} (want {want:?})", pods.len());
        }
        self.fail(scenario, format!("distribution: {last}"));
    }

    fn finish(self, test: &str) {
        let log = self.cluster.pod_log(NS, "waypoint-0");
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        assert!(
            self.failures.is_empty(),
            "{test}: {} failing case(s):\n{}\n\nwaypoint log (last lines, newest first):\n{}",
            self.failures.len(),
            self.failures.join("\n"),
            tail.join("\n")
        );
    }
}

/// The pods that answered `count` requests to `http://echo/` on one
/// kept-alive connection from echo-v1.
fn http_batch(s: &Suite, count: usize) -> Result<Vec<String>, String> {
    let vip = s.cluster.vip(NS, "echo");
    let netns = &s.cluster.pod(NS, "echo-v1-0").netns;
    let url = format!("http://echo/?n=[1-{count}]");
    let resolve = format!("echo:80:{vip}");
    let argv = [
        "curl",
        "-sS",
        "--max-time",
        "60",
        "--resolve",
        &resolve,
        &url,
    ];
    let out = s
        .cluster
        .lab
        .exec_timeout(netns, &argv, Duration::from_secs(90))
        .map_err(|e| format!("{e:#}"))?;
    pods_of(&String::from_utf8_lossy(&out.stdout))
}

fn pods_of(out: &str) -> Result<Vec<String>, String> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).map_err(|e| format!("{e}: {l:?}"))?;
            Ok(v["pod"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------
// The scenarios.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_http_route_matching_and_filters() {
    require_root();
    let base = base(r#"["python3", "echo_json.py"]"#, ("http", 8080), HTTP_PORTS);
    let mut s = Suite::up(&[("base.yaml", &base)], &[]).await;

    // MeshHTTPRouteMatching
    let sc = "MeshHTTPRouteMatching";
    s.apply(
        sc,
        &route(
            "mesh-matching",
            80,
            r#"  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
    backendRefs: [{name: echo-v2, port: 8080}]"#,
        ),
        &[&format!("{NS}/mesh-matching")],
    )
    .await;
    for (path, version, want) in [
        ("/", None, "echo-v1"),
        ("/example", None, "echo-v1"),
        ("/", Some("one"), "echo-v1"),
        ("/v2", None, "echo-v2"),
        ("/v2/example", None, "echo-v2"),
        ("/", Some("two"), "echo-v2"),
        ("/v2/", None, "echo-v2"),
        ("/v2example", None, "echo-v1"),
        ("/foo/v2/example", None, "echo-v1"),
    ] {
        let mut r = get("echo", path);
        if let Some(v) = version {
            r = r.header("Version", v);
        }
        s.case(sc, r, backend(want)).await;
    }

    // MeshHTTPRouteQueryParamMatching
    let sc = "MeshHTTPRouteQueryParamMatching";
    s.apply(
        sc,
        &route(
            "mesh-query-param-matching",
            80,
            r#"  - matches: [{queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: dolphin}]}]
    backendRefs: [{name: echo-v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /path1}, queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{headers: [{name: version, value: one}], queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: echo-v2, port: 8080}]
  - matches:
    - {path: {type: PathPrefix, value: /path3}, queryParams: [{name: animal, value: shark}]}
    - {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], queryParams: [{name: animal, value: kraken}]}
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /path5}}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{queryParams: [{name: animal, value: hydra}]}]
    backendRefs: [{name: echo-v2, port: 8080}]"#,
        ),
        &[&format!("{NS}/mesh-query-param-matching")],
    )
    .await;
    for (path, version, exp) in [
        ("/?animal=whale", None, backend("echo-v1")),
        ("/?animal=dolphin", None, backend("echo-v2")),
        (
            "/?animal=whale&otherparam=irrelevant",
            None,
            backend("echo-v1"),
        ),
        ("/?animal=dolphin&color=yellow", None, backend("echo-v2")),
        ("/?color=blue", None, status(404)),
        ("/?animal=dog", None, status(404)),
        ("/?animal=whaledolphin", None, status(404)),
        ("/", None, status(404)),
        ("/path1?animal=whale", None, backend("echo-v1")),
        ("/?animal=whale", Some("one"), backend("echo-v2")),
        ("/path3?animal=shark", None, backend("echo-v1")),
        ("/path4?animal=kraken", Some("three"), backend("echo-v1")),
        ("/?animal=shark", None, status(404)),
        ("/path4?animal=kraken", None, status(404)),
        ("/path5?animal=hydra", None, backend("echo-v1")),
    ] {
        let mut r = get("echo", path);
        if let Some(v) = version {
            r = r.header("version", v);
        }
        s.case(sc, r, exp).await;
    }

    // MeshHTTPRouteRequestHeaderModifier (rule filters) and
    // MeshHTTPRouteBackendRequestHeaderModifier (the same filters on the
    // backendRef): the same cases.
    for (sc, on_backend) in [
        ("MeshHTTPRouteRequestHeaderModifier", false),
        ("MeshHTTPRouteBackendRequestHeaderModifier", true),
    ] {
        let rule = |prefix: &str, modifier: &str| {
            if on_backend {
                format!(
                    "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    backendRefs:\n    - name: echo-v1\n      port: 8080\n      filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {modifier}}}]"
                )
            } else {
                format!(
                    "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {modifier}}}]\n    backendRefs: [{{name: echo-v1, port: 8080}}]"
                )
            }
        };
        let rules = [
            rule("/set", "{set: [{name: X-Header-Set, value: set-overwrites-values}]}"),
            rule("/add", "{add: [{name: X-Header-Add, value: add-appends-values}]}"),
            rule("/remove", "{remove: [X-Header-Remove]}"),
            rule(
                "/multiple",
                "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}], remove: [X-Header-Remove-1, X-Header-Remove-2]}",
            ),
            rule(
                "/case-insensitivity",
                "{set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}], remove: [X-Header-Remove]}",
            ),
        ]
        .join("\n");
        s.apply(
            sc,
            &route("mesh-request-header-modifier", 80, &rules),
            &[&format!("{NS}/mesh-request-header-modifier")],
        )
        .await;
        let seen = |path: &'static str,
                    headers: Vec<(&'static str, &'static str)>,
                    absent: Vec<&'static str>| Expect {
            backend: "echo-v1",
            path: Some(path),
            headers,
            absent_headers: absent,
            ..Expect::default()
        };
        let cases = [
            (
                get("echo", "/set").header("Some-Other-Header", "val"),
                seen(
                    "/set",
                    vec![
                        ("Some-Other-Header", "val"),
                        ("X-Header-Set", "set-overwrites-values"),
                    ],
                    vec![],
                ),
            ),
            (
                get("echo", "/set")
                    .header("Some-Other-Header", "val")
                    .header("X-Header-Set", "some-other-value"),
                seen(
                    "/set",
                    vec![
                        ("Some-Other-Header", "val"),
                        ("X-Header-Set", "set-overwrites-values"),
                    ],
                    vec![],
                ),
            ),
            (
                get("echo", "/add").header("Some-Other-Header", "val"),
                seen(
                    "/add",
                    vec![
                        ("Some-Other-Header", "val"),
                        ("X-Header-Add", "add-appends-values"),
                    ],
                    vec![],
                ),
            ),
            (
                get("echo", "/add")
                    .header("Some-Other-Header", "val")
                    .header("X-Header-Add", "some-other-value"),
                seen(
                    "/add",
                    vec![
                        ("Some-Other-Header", "val"),
                        ("X-Header-Add", "some-other-value,add-appends-values"),
                    ],
                    vec![],
                ),
            ),
            (
                get("echo", "/remove").header("X-Header-Remove", "val"),
                seen("/remove", vec![], vec!["X-Header-Remove"]),
            ),
            (
                get("echo", "/multiple")
                    .header("X-Header-Set-2", "set-val-2")
                    .header("X-Header-Add-2", "add-val-2")
                    .header("X-Header-Remove-2", "remove-val-2")
                    .header("Another-Header", "another-header-val"),
                seen(
                    "/multiple",
                    vec![
                        ("X-Header-Set-1", "header-set-1"),
                        ("X-Header-Set-2", "header-set-2"),
                        ("X-Header-Add-1", "header-add-1"),
                        ("X-Header-Add-2", "add-val-2,header-add-2"),
                        ("X-Header-Add-3", "header-add-3"),
                        ("Another-Header", "another-header-val"),
                    ],
                    vec!["X-Header-Remove-1", "X-Header-Remove-2"],
                ),
            ),
            (
                get("echo", "/case-insensitivity")
                    .header("x-header-set", "original-val-set")
                    .header("x-header-add", "original-val-add")
                    .header("x-header-remove", "original-val-remove")
                    .header("Another-Header", "another-header-val"),
                seen(
                    "/case-insensitivity",
                    vec![
                        ("X-Header-Set", "header-set"),
                        ("X-Header-Add", "original-val-add,header-add"),
                        ("Another-Header", "another-header-val"),
                    ],
                    vec!["x-header-remove", "X-Header-Remove"],
                ),
            ),
        ];
        for (r, e) in cases {
            s.case(sc, r, e).await;
        }
    }

    // MeshHTTPRouteRewritePath
    let sc = "MeshHTTPRouteRewritePath";
    let modify = "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}], add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}], remove: [X-Header-Remove]}}";
    s.apply(
        sc,
        &route(
            "mesh-rewrite-path",
            80,
            &format!(
                r#"  - matches: [{{path: {{type: PathPrefix, value: /prefix/one}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /one}}}}}}]
    backendRefs: [{{name: echo-v1, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /strip-prefix}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}]
    backendRefs: [{{name: echo-v1, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /full/one}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /one}}}}}}]
    backendRefs: [{{name: echo-v1, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /full/rewrite-path-and-modify-headers}}}}]
    filters:
    - {{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /test}}}}}}
    - {modify}
    backendRefs: [{{name: echo-v1, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /prefix/rewrite-path-and-modify-headers}}}}]
    filters:
    - {{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /prefix}}}}}}
    - {modify}
    backendRefs: [{{name: echo-v1, port: 80}}]"#
            ),
        ),
        &[&format!("{NS}/mesh-rewrite-path")],
    )
    .await;
    let rewritten = |path: &'static str| Expect {
        backend: "echo-v1",
        path: Some(path),
        ..Expect::default()
    };
    s.case(sc, get("echo", "/prefix/one/two"), rewritten("/one/two"))
        .await;
    s.case(sc, get("echo", "/strip-prefix/three"), rewritten("/three"))
        .await;
    s.case(sc, get("echo", "/strip-prefix"), rewritten("/"))
        .await;
    s.case(sc, get("echo", "/full/one/two"), rewritten("/one"))
        .await;
    for (path, want) in [
        ("/full/rewrite-path-and-modify-headers/test", "/test"),
        ("/prefix/rewrite-path-and-modify-headers/one", "/prefix/one"),
    ] {
        let r = get("echo", path)
            .header("X-Header-Remove", "remove-val")
            .header("X-Header-Add-Append", "append-val-1")
            .header("X-Header-Set", "set-val");
        let e = Expect {
            headers: vec![
                ("X-Header-Add", "header-val-1"),
                ("X-Header-Add-Append", "append-val-1,header-val-2"),
                ("X-Header-Set", "set-overwrites-values"),
            ],
            absent_headers: vec!["X-Header-Remove"],
            ..rewritten(want)
        };
        s.case(sc, r, e).await;
    }

    let redirect = |status: u16, r: Redirect| Expect {
        status,
        redirect: Some(r),
        ..Expect::default()
    };
    let rule = |prefix: &str, filter: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {filter}}}]"
        )
    };

    // MeshHTTPRouteRedirectHostAndStatus
    let sc = "MeshHTTPRouteRedirectHostAndStatus";
    let rules = [
        rule("/hostname-redirect", "{hostname: example.org}"),
        rule(
            "/host-and-status",
            "{statusCode: 301, hostname: example.org}",
        ),
    ]
    .join("\n");
    s.apply(
        sc,
        &route("mesh-redirect-host-and-status", 80, &rules),
        &[&format!("{NS}/mesh-redirect-host-and-status")],
    )
    .await;
    let host = Redirect {
        host: Some("example.org"),
        ..Redirect::default()
    };
    s.case(
        sc,
        get("echo", "/hostname-redirect"),
        redirect(302, host.clone()),
    )
    .await;
    s.case(sc, get("echo", "/host-and-status"), redirect(301, host))
        .await;

    // MeshHTTPRouteRedirectPath
    let sc = "MeshHTTPRouteRedirectPath";
    let rules = [
        rule("/original-prefix", "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}"),
        rule("/full", "{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}"),
        rule(
            "/path-and-host",
            "{hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}",
        ),
        rule(
            "/path-and-status",
            "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}, statusCode: 301}",
        ),
        rule(
            "/full-path-and-host",
            "{hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}}",
        ),
        rule(
            "/full-path-and-status",
            "{path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}, statusCode: 301}",
        ),
    ]
    .join("\n");
    s.apply(
        sc,
        &route("mesh-redirect-path", 80, &rules),
        &[&format!("{NS}/mesh-redirect-path")],
    )
    .await;
    for (path, status, host, want) in [
        (
            "/original-prefix/lemon",
            302,
            None,
            "/replacement-prefix/lemon",
        ),
        ("/full/path/original", 302, None, "/full-path-replacement"),
        (
            "/path-and-host",
            302,
            Some("example.org"),
            "/replacement-prefix",
        ),
        ("/path-and-status", 301, None, "/replacement-prefix"),
        (
            "/full-path-and-host",
            302,
            Some("example.org"),
            "/replacement-full",
        ),
        ("/full-path-and-status", 301, None, "/replacement-full"),
    ] {
        let r = Redirect {
            host,
            path: Some(want),
            ..Redirect::default()
        };
        s.case(sc, get("echo", path), redirect(status, r)).await;
    }

    // MeshHTTPRouteRedirectPort
    let sc = "MeshHTTPRouteRedirectPort";
    let rules = [
        rule("/port", "{port: 8083}"),
        rule("/port-and-host", "{hostname: example.org, port: 8083}"),
        rule("/port-and-status", "{port: 8083, statusCode: 301}"),
        rule(
            "/port-and-host-and-status",
            "{port: 8083, hostname: example.org, statusCode: 302}",
        ),
    ]
    .join("\n");
    s.apply(
        sc,
        &route("mesh-redirect-port", 80, &rules),
        &[&format!("{NS}/mesh-redirect-port")],
    )
    .await;
    for (path, status, host) in [
        ("/port", 302, None),
        ("/port-and-host", 302, Some("example.org")),
        ("/port-and-status", 301, None),
        ("/port-and-host-and-status", 302, Some("example.org")),
    ] {
        let r = Redirect {
            host,
            port: Some("8083"),
            ..Redirect::default()
        };
        s.case(sc, get("echo", path), redirect(status, r)).await;
    }

    // MeshHTTPRouteSchemeRedirect
    let sc = "MeshHTTPRouteSchemeRedirect";
    let rules = [
        rule("/scheme", r#"{scheme: "https"}"#),
        rule(
            "/scheme-and-host",
            r#"{hostname: example.org, scheme: "https"}"#,
        ),
        rule(
            "/scheme-and-status",
            r#"{scheme: "https", statusCode: 301}"#,
        ),
        rule(
            "/scheme-and-host-and-status",
            r#"{scheme: "https", statusCode: 302, hostname: example.org}"#,
        ),
    ]
    .join("\n");
    s.apply(
        sc,
        &route("mesh-redirect-scheme", 80, &rules),
        &[&format!("{NS}/mesh-redirect-scheme")],
    )
    .await;
    for (path, status, host) in [
        ("/scheme", 302, None),
        ("/scheme-and-host", 302, Some("example.org")),
        ("/scheme-and-status", 301, None),
        ("/scheme-and-host-and-status", 302, Some("example.org")),
    ] {
        let r = Redirect {
            scheme: Some("https"),
            host,
            ..Redirect::default()
        };
        s.case(sc, get("echo", path), redirect(status, r)).await;
    }

    // MeshHTTPRoute303Redirect, MeshHTTPRoute307Redirect,
    // MeshHTTPRoute308Redirect (provisional): the status alone.
    for (sc, name, prefix, code) in [
        (
            "MeshHTTPRoute303Redirect",
            "mesh-303-redirect",
            "/redirect",
            303,
        ),
        (
            "MeshHTTPRoute307Redirect",
            "mesh-307-redirect",
            "/temporary",
            307,
        ),
        (
            "MeshHTTPRoute308Redirect",
            "mesh-308-redirect",
            "/permanent",
            308,
        ),
    ] {
        s.apply(
            sc,
            &route(name, 80, &rule(prefix, &format!("{{statusCode: {code}}}"))),
            &[&format!("{NS}/{name}")],
        )
        .await;
        let r = Redirect {
            path: Some(prefix),
            ..Redirect::default()
        };
        s.case(sc, get("echo", prefix), redirect(code, r)).await;
    }
    // MeshHTTPRouteWeight
    let sc = "MeshHTTPRouteWeight";
    s.apply(
        sc,
        &route(
            "mesh-weighted-backends",
            80,
            "  - backendRefs: [{name: echo-v1, port: 8080, weight: 70}, {name: echo-v2, port: 8080, weight: 30}]",
        ),
        &[&format!("{NS}/mesh-weighted-backends")],
    )
    .await;
    s.case(sc, get("echo", "/"), status(200)).await;
    s.weights(
        sc,
        |s| http_batch(s, 500),
        &[("echo-v1", 0.7), ("echo-v2", 0.3)],
    )
    .await;

    // MeshHTTPRouteNamedRule (provisional): a rule's `name`. Upstream's
    // second case expects the path `/named` for a request to `/unnamed`
    // (its mesh client never compares paths); here each case checks the
    // backend, as upstream's mesh client does.
    let sc = "MeshHTTPRouteNamedRule";
    s.apply(
        sc,
        &route(
            "mesh-http-named-rules",
            80,
            r#"  - name: named-rule
    matches: [{path: {type: PathPrefix, value: /named}}]
    backendRefs: [{name: echo-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /unnamed}}]
    backendRefs: [{name: echo-v2, port: 8080}]"#,
        ),
        &[&format!("{NS}/mesh-http-named-rules")],
    )
    .await;
    s.case(sc, get("echo", "/named"), backend("echo-v1")).await;
    s.case(sc, get("echo", "/unnamed"), backend("echo-v2"))
        .await;

    s.finish("mesh_http_route_matching_and_filters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_service_frontends_and_ports() {
    require_root();
    let base = base(r#"["python3", "echo_json.py"]"#, ("http", 8080), HTTP_PORTS);
    let mut s = Suite::up(&[("base.yaml", &base)], &[]).await;
    let set_header = |value: &'static str, pod: &'static str| Expect {
        backend: pod,
        response_headers: vec![("X-Header-Set", value)],
        ..Expect::default()
    };
    let no_header = |pod: &'static str| Expect {
        backend: pod,
        absent_response_headers: vec!["X-Header-Set"],
        ..Expect::default()
    };
    let set_rule = |value: &str, to: &str| {
        format!(
            "  - filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: X-Header-Set, value: {value}}}]}}}}]\n    backendRefs: [{{name: {to}, port: 80}}]"
        )
    };
    let frontend = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: mesh-split-v1, namespace: {NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo-v2}}]\n  rules:\n{}\n",
        set_rule("set", "echo-v2")
    );

    // MeshBasic: no routes; the Service answers through the waypoint.
    s.case("MeshBasic", get("echo", "/"), status(200)).await;

    // MeshHTTPRouteSimpleSameNamespace
    let sc = "MeshHTTPRouteSimpleSameNamespace";
    s.apply(
        sc,
        &route(
            "gateway-conformance-mesh-test",
            80,
            "  - backendRefs: [{name: echo-v1, port: 8080}]",
        ),
        &[&format!("{NS}/gateway-conformance-mesh-test")],
    )
    .await;
    s.case(sc, get("echo", "/"), backend("echo-v1")).await;

    // MeshTrafficSplit (a parent without a port: every port of `echo`)
    let sc = "MeshTrafficSplit";
    s.apply(
        sc,
        &route_any_port(
            "mesh-split",
            r#"  - matches: [{path: {type: Exact, value: /v1}}]
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: Exact, value: /v2}}]
    backendRefs: [{name: echo-v2, port: 80}]"#,
        ),
        &[&format!("{NS}/mesh-split")],
    )
    .await;
    s.case(sc, get("echo", "/v1"), backend("echo-v1")).await;
    s.case(sc, get("echo", "/v2"), backend("echo-v2")).await;

    // MeshFrontend: the route applies to the Service's address, not to
    // its pods' addresses.
    let sc = "MeshFrontend";
    s.apply(sc, &frontend, &[&format!("{NS}/mesh-split-v1")])
        .await;
    s.case(sc, get("echo-v2", "/"), set_header("set", "echo-v2"))
        .await;
    let v2_ip = s.cluster.pod(NS, "echo-v2-0").ip;
    s.case(sc, get(&format!("{v2_ip}:8080"), "/"), no_header("echo-v2"))
        .await;

    // MeshFrontendHostname: the Service is told by its address, not by
    // the Host header (same routes).
    let sc = "MeshFrontendHostname";
    s.case(
        sc,
        get("echo-v2", "/").header("Host", "echo-v1"),
        set_header("set", "echo-v2"),
    )
    .await;
    s.case(
        sc,
        get("echo-v1", "/").header("Host", "echo-v2"),
        no_header("echo-v1"),
    )
    .await;

    // MeshPorts: a parent's `port` limits the route to that port; without
    // one it covers every port.
    let sc = "MeshPorts";
    let ports = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: mesh-split-v1, namespace: {NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo-v1, port: 80}}]\n  rules:\n{}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: mesh-split-v2, namespace: {NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo-v2}}]\n  rules:\n{}\n",
        set_rule("v1", "echo-v1"),
        set_rule("v2", "echo-v2")
    );
    s.apply(
        sc,
        &ports,
        &[
            &format!("{NS}/mesh-split-v1"),
            &format!("{NS}/mesh-split-v2"),
        ],
    )
    .await;
    s.case(sc, get("echo-v1", "/"), set_header("v1", "echo-v1"))
        .await;
    s.case(sc, get("echo-v1:8080", "/"), no_header("echo-v1"))
        .await;
    s.case(sc, get("echo-v2", "/"), set_header("v2", "echo-v2"))
        .await;
    s.case(sc, get("echo-v2:8080", "/"), set_header("v2", "echo-v2"))
        .await;

    s.finish("mesh_service_frontends_and_ports");
}

/// MeshConsumerRoute: a consumer route (in the caller's namespace, its
/// parent a Service of another) changes that namespace's calls only; the
/// producer namespace's waypoint runs it for callers of that namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_consumer_route() {
    require_root();
    let base = base(r#"["python3", "echo_json.py"]"#, ("http", 8080), HTTP_PORTS);
    let mut s = Suite::up(&[("base.yaml", &base), ("consumer.yaml", CONSUMER)], &[]).await;
    let set_header = |value: &'static str, pod: &'static str| Expect {
        backend: pod,
        response_headers: vec![("X-Header-Set", value)],
        ..Expect::default()
    };
    let no_header = |pod: &'static str| Expect {
        backend: pod,
        absent_response_headers: vec!["X-Header-Set"],
        ..Expect::default()
    };
    // MeshConsumerRoute: a route in the caller's namespace whose parent is
    // a Service of another namespace changes only that namespace's calls.
    let sc = "MeshConsumerRoute";
    let consumer = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: mesh-echo-add-header, namespace: {CONSUMER_NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo-v1, namespace: {NS}}}]\n  rules:\n  - filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: X-Header-Set, value: set}}]}}}}]\n    backendRefs: [{{name: echo-v1, namespace: {NS}, port: 80}}]\n"
    );
    s.apply(
        sc,
        &consumer,
        &[&format!("{CONSUMER_NS}/mesh-echo-add-header")],
    )
    .await;
    let host = "echo-v1.gateway-conformance-mesh";
    let from_consumer = get(host, "/").from(CONSUMER_NS, "echo-v1-0");
    s.case(sc, from_consumer, set_header("set", "echo-v1"))
        .await;
    s.case(sc, get(host, "/"), no_header("echo-v1")).await;

    s.finish("mesh_consumer_route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_grpc_routes() {
    require_root();
    let base = base(r#"["python3", "grpc_json.py"]"#, ("grpc", 7070), GRPC_PORTS);
    let mut s = Suite::up(
        &[("base.yaml", &base)],
        &[
            ("grpc_json.py", GRPC_ECHO),
            ("grpc_json_call.py", GRPC_CLIENT),
        ],
    )
    .await;
    let client = s.dir.path().join("grpc_json_call.py");

    /// grpcio in `pod`: `count` calls to echo:7070 with `metadata`; the
    /// echo's answers.
    fn call(
        s: &Suite,
        client: &Path,
        pod: &str,
        count: usize,
        metadata: &[(&str, &str)],
    ) -> Result<Vec<Value>, String> {
        let target = format!("{}:7070", s.cluster.vip(NS, "echo"));
        let count = count.to_string();
        let md: Vec<String> = metadata.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        let mut argv = vec![
            "python3",
            client.to_str().unwrap(),
            &target,
            "echo:7070",
            &count,
        ];
        argv.extend(md.iter().map(String::as_str));
        let netns = &s.cluster.pod(NS, pod).netns;
        let out = s
            .cluster
            .lab
            .exec_timeout(netns, &argv, Duration::from_secs(120))
            .map_err(|e| format!("grpc call failed: {e:#}"))?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{e}: {l:?}")))
            .collect()
    }

    // MeshGRPCRouteRequestHeaderModifier
    let sc = "MeshGRPCRouteRequestHeaderModifier";
    let rule = |case: &str, modifier: &str, to: &str| {
        format!(
            "  - matches: [{{headers: [{{name: x-test-case, value: {case}}}]}}]\n    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {modifier}}}]\n    backendRefs: [{{name: {to}, port: 7070}}]"
        )
    };
    let rules = [
        rule("set", "{set: [{name: x-header-set, value: set-overwrites-values}]}", "echo-v1"),
        rule("add", "{add: [{name: x-header-add, value: add-appends-values}]}", "echo-v1"),
        rule("remove", "{remove: [x-header-remove]}", "echo-v1"),
        rule(
            "multi",
            "{set: [{name: x-header-set-1, value: header-set-1}, {name: x-header-set-2, value: header-set-2}], add: [{name: x-header-add-1, value: header-add-1}, {name: x-header-add-2, value: header-add-2}], remove: [x-header-remove-1, x-header-remove-2]}",
            "echo-v2",
        ),
    ]
    .join("\n");
    s.apply(
        sc,
        &grpc_route("grpc-request-header-modifier", &rules),
        &[&format!("{NS}/grpc-request-header-modifier")],
    )
    .await;
    type Headers = Vec<(&'static str, &'static str)>;
    /// Client pod, `x-test-case`, metadata sent, metadata the backend
    /// sees, metadata it must not see, the backend.
    type GrpcCase = (
        &'static str,
        &'static str,
        Headers,
        Headers,
        Vec<&'static str>,
        &'static str,
    );
    let cases: [GrpcCase; 4] = [
        (
            "echo-v1-0",
            "set",
            vec![
                ("some-other-header", "this-header-should-be-set"),
                ("x-header-set", "this-value-should-be-overwritten"),
            ],
            vec![
                ("x-test-case", "set"),
                ("some-other-header", "this-header-should-be-set"),
                ("x-header-set", "set-overwrites-values"),
            ],
            vec![],
            "echo-v1",
        ),
        (
            "echo-v1-0",
            "add",
            vec![("x-header-add", "this-value-should-be-appended")],
            vec![
                ("x-test-case", "add"),
                (
                    "x-header-add",
                    "this-value-should-be-appended,add-appends-values",
                ),
            ],
            vec![],
            "echo-v1",
        ),
        (
            "echo-v1-0",
            "remove",
            vec![("x-header-remove", "this-should-be-removed")],
            vec![("x-test-case", "remove")],
            vec!["x-header-remove"],
            "echo-v1",
        ),
        (
            "echo-v2-0",
            "multi",
            vec![
                ("x-header-set-2", "set-header-2"),
                ("x-header-add-2", "add-header-2"),
                ("x-header-remove-2", "should-be-removed-2"),
            ],
            vec![
                ("x-test-case", "multi"),
                ("x-header-set-1", "header-set-1"),
                ("x-header-set-2", "header-set-2"),
                ("x-header-add-1", "header-add-1"),
                ("x-header-add-2", "add-header-2,header-add-2"),
            ],
            vec!["x-header-remove-1", "x-header-remove-2"],
            "echo-v2",
        ),
    ];
    for (pod, case, sent, want, absent, to) in cases {
        let mut metadata = vec![("x-test-case", case)];
        metadata.extend(sent);
        let last = RefCell::new(String::new());
        let (this, client_ref, md, last_ref, want_ref, absent_ref) =
            (&s, &client, &metadata, &last, &want, &absent);
        let ok = eventually(CASE, || async move {
            // One call, then CONFIRM more on the same channel: all must hold.
            let verdict = call(this, client_ref, pod, 1 + CONFIRM, md).and_then(|answers| {
                if answers.len() != 1 + CONFIRM {
                    return Err(format!("{} answers", answers.len()));
                }
                answers.iter().try_for_each(|echo| {
                    let answered = echo["pod"].as_str().unwrap_or_default();
                    if !answered.starts_with(to) {
                        return Err(format!("answered by {answered} (want {to}-*): {echo}"));
                    }
                    for (name, value) in want_ref {
                        let got = seen_header(echo, name);
                        if got.as_deref() != Some(*value) {
                            return Err(format!(
                                "backend saw {name}: {got:?} (want {value:?}): {echo}"
                            ));
                        }
                    }
                    for name in absent_ref {
                        if let Some(got) = seen_header(echo, name) {
                            return Err(format!("backend saw {name}: {got:?} (want none): {echo}"));
                        }
                    }
                    Ok(())
                })
            });
            match verdict {
                Ok(()) => true,
                Err(e) => {
                    *last_ref.borrow_mut() = e;
                    false
                }
            }
        })
        .await;
        if !ok {
            let e = last.into_inner();
            s.fail(sc, format!("call from {pod} with {metadata:?}: {e}"));
        }
    }

    // MeshGRPCRouteWeight: 70/30, and a weight-0 backend that does not
    // exist (echo-v3) gets nothing.
    let sc = "MeshGRPCRouteWeight";
    s.apply(
        sc,
        &grpc_route(
            "mesh-grpc-weighted-backends",
            "  - backendRefs: [{name: echo-v1, port: 7070, weight: 70}, {name: echo-v2, port: 7070, weight: 30}, {name: echo-v3, port: 7070, weight: 0}]",
        ),
        &[&format!("{NS}/mesh-grpc-weighted-backends")],
    )
    .await;
    let c = client.clone();
    s.weights(
        sc,
        move |s| {
            let answers = call(s, &c, "echo-v1-0", 500, &[])?;
            Ok(answers
                .iter()
                .map(|a| a["pod"].as_str().unwrap_or_default().to_string())
                .collect())
        },
        &[("echo-v1", 0.7), ("echo-v2", 0.3)],
    )
    .await;

    s.finish("mesh_grpc_routes");
}

/// An HTTPRoute of the mesh namespace on `echo:<port>`.
fn route(name: &str, port: u16, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo, port: {port}}}]\n  rules:\n{rules}\n"
    )
}

/// An HTTPRoute of the mesh namespace on every port of `echo`.
fn route_any_port(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo}}]\n  rules:\n{rules}\n"
    )
}

/// A GRPCRoute of the mesh namespace on `echo:7070`.
fn grpc_route(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo, port: 7070}}]\n  rules:\n{rules}\n"
    )
}
