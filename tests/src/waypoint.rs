//! The waypoint scenario the waypoint end-to-end tests share: a `shop`
//! namespace labeled for a waypoint (web-v1, web-v2 behind Services
//! `web`, `web-v1`, `web-v2`, and `direct` around the waypoint, an
//! HTTPRoute for `web`) and a `front` namespace with a `client` pod; the
//! cluster started on two nodes from those files and the test's own; curl
//! from a pod; the waypoint's and ztunnels' counters.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use quicmesh_lab::local::{Cluster, LocalSpec};
use quicmesh_lab::mesh::{netns_http_get, sum_metric};

pub const SHOP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {quicmesh.io/dataplane-mode: ambient, quicmesh.io/use-waypoint: waypoint}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v1, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        command: ["python3", "hello.py"]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v2, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: web, version: v2}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        command: ["python3", "hello.py"]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-v1, namespace: shop}
spec:
  selector: {app: web, version: v1}
  ports: [{name: web, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: shop}
spec:
  selector: {app: web, version: v2}
  ports: [{name: web, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata:
  name: direct
  namespace: shop
  labels: {quicmesh.io/use-waypoint: none}
spec:
  selector: {app: web, version: v1}
  ports: [{name: web, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: web-v2, port: 80}]
  - backendRefs:
    - {name: web-v1, port: 80, weight: 90}
    - {name: web-v2, port: 80, weight: 10}
"#;

pub const FRONT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: front, labels: {quicmesh.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: front}
spec:
  serviceAccountName: client
  containers: [{name: app}]
"#;

/// A backend that answers with its request's headers, one per line.
pub const ECHO: &str = r#"
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = "".join(f"{k.lower()}: {v}\n" for k, v in self.headers.items()).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("0.0.0.0", 8080), H).serve_forever()
"#;

/// `whoami` in shop: [`ECHO`] (as `echo.py`) behind Service `whoami`.
pub const WHOAMI: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: whoami, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: whoami}}
    spec:
      serviceAccountName: web
      containers:
      - name: whoami
        command: ["python3", "echo.py"]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: whoami, namespace: shop}
spec:
  selector: {app: whoami}
  ports: [{name: web, port: 80, targetPort: http, appProtocol: http}]
"#;

pub async fn start() -> (Cluster, tempfile::TempDir) {
    start_with(&[]).await
}

/// The shop and front namespaces, and `extra` files (name, YAML).
pub async fn start_with(extra: &[(&str, &str)]) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, yaml) in extra {
        std::fs::write(d.join(name), yaml).unwrap();
    }
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo/hello.py"),
        d.join("hello.py"),
    )
    .unwrap();
    std::fs::write(d.join("shop.yaml"), SHOP).unwrap();
    std::fs::write(d.join("front.yaml"), FRONT).unwrap();
    let cluster = Cluster::up(LocalSpec::new(Path::new(d), 2)).await.unwrap();
    (cluster, dir)
}

/// curl in the client pod; its stdout, or why it failed.
pub fn curl(cluster: &Cluster, args: &[&str]) -> Result<String, String> {
    curl_from(cluster, "client", args)
}

pub fn curl_from(cluster: &Cluster, pod: &str, args: &[&str]) -> Result<String, String> {
    let netns = &cluster.pod("front", pod).netns;
    let argv: Vec<&str> = ["curl", "-sS", "--max-time", "20"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    cluster
        .lab
        .exec_timeout(netns, &argv, Duration::from_secs(90))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .map_err(|e| format!("{e:#}"))
}

/// The waypoint pod's metrics.
pub async fn waypoint_metrics(cluster: &Cluster) -> String {
    let p = cluster.pod("shop", "waypoint-0");
    netns_http_get(&p.netns, SocketAddr::from((p.ip, 15020)), "/metrics")
        .await
        .unwrap_or_default()
}

/// The value of the waypoint's request counter for `service` (all codes).
pub fn requests_for(metrics: &str, service: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("quicmesh_waypoint_requests_total{") && l.contains(service))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The ztunnel of `node`'s denials by `policy` for `reason`.
pub async fn denials(cluster: &Cluster, node: usize, policy: &str, reason: &str) -> f64 {
    let m = cluster
        .ztunnel_http(node, 15020, "/metrics")
        .await
        .unwrap_or_default();
    sum_metric(
        &m,
        "quicmesh_ztunnel_authz_denials_total",
        &[("policy", policy), ("reason", reason)],
    )
}

/// Inbound connections `node`'s ztunnel admitted `by` policy, waypoint
/// or default.
pub async fn admissions(cluster: &Cluster, node: usize, by: &str) -> f64 {
    let m = cluster
        .ztunnel_http(node, 15020, "/metrics")
        .await
        .unwrap_or_default();
    sum_metric(&m, "quicmesh_ztunnel_authz_admissions_total", &[("by", by)])
}

/// `curl -w %{http_code}` from `pod`: the status, or 0 when no answer came.
pub fn status_from(cluster: &Cluster, pod: &str, url: &str) -> u16 {
    curl_from(
        cluster,
        pod,
        &["-o", "/dev/null", "-w", "%{http_code}", url],
    )
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(0)
}
