//! TrafficPolicy end to end: the shop namespace of the waypoint scenario
//! with a few more Services and their TrafficPolicies, real curl in the
//! client pod, the waypoint's counters and config dump. One cluster for
//! every part (each takes its own Service, so they do not meet):
//!
//! - outlier detection: a replica answering 500 beside a slow good one is
//!   ejected under concurrent load, and the success rate is then ~100 %;
//! - a rate limit: the requests allowed are `burst + rate × elapsed`, with
//!   the elapsed time measured;
//! - fault injection: delays (seen by the client) and aborts of 50 % each
//!   of 400 requests within 4 standard deviations, and only for requests
//!   with the header;
//! - circuit breaking: `maxConcurrentRequests: 1` and parallel curls to a
//!   slow backend: the others get 503 and the reason;
//! - `maxRequestBodyBytes`: 413 for a longer body, announced or streamed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quicmesh_e2e::waypoint::*;
use quicmesh_e2e::{eventually, require_root};
use quicmesh_lab::local::Cluster;
use quicmesh_lab::mesh::{netns_http_get, sum_metric};

/// A test server: answers `STATUS` (default 200) after `DELAY_MS`; a POST
/// is answered with the length of the body it read (chunked or not).
const SERVER: &str = r#"
import http.server, os, socketserver, time
STATUS = int(os.environ.get("STATUS", "200"))
DELAY = int(os.environ.get("DELAY_MS", "0")) / 1000.0
NAME = os.environ.get("POD_NAME", "?")

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, body):
        time.sleep(DELAY)
        body = body.encode()
        self.send_response(STATUS)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.answer(NAME + "\n")
    def do_POST(self):
        n = 0
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                n += len(self.rfile.read(size))
                self.rfile.readline()
        else:
            n = len(self.rfile.read(int(self.headers.get("content-length", "0"))))
        self.answer(str(n) + "\n")
    def log_message(self, fmt, *args):
        pass

class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

Server(("0.0.0.0", 8080), Handler).serve_forever()
"#;

const RESILIENCE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: shaky-good, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: shaky}}
    spec:
      containers:
      - name: app
        command: ["python3", "server.py"]
        env: [{name: DELAY_MS, value: "200"}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: shaky-bad, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: shaky}}
    spec:
      containers:
      - name: app
        command: ["python3", "server.py"]
        env: [{name: STATUS, value: "500"}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: slow, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: slow}}
    spec:
      containers:
      - name: app
        command: ["python3", "server.py"]
        env: [{name: DELAY_MS, value: "1500"}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: app
        command: ["python3", "server.py"]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: shaky, namespace: shop}
spec:
  selector: {app: shaky}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: slowpoke, namespace: shop}
spec:
  selector: {app: slow}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: faulty, namespace: shop}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: v1
kind: Service
metadata: {name: upload, namespace: shop}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
---
apiVersion: quicmesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: shaky, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: shaky}]
  outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 5m, maxEjectionPercent: 50}
---
apiVersion: quicmesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: web-rate, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  rateLimit: {requests: 10, per: 1s, burst: 20}
---
apiVersion: quicmesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: faulty, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: faulty}]
  faultInjection:
    headers: [{name: x-fault, value: "yes"}]
    delay: {percentage: 50, fixedDelay: 500ms}
    abort: {percentage: 50, httpStatus: 503}
---
apiVersion: quicmesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: slowpoke, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: slowpoke}]
  connectionPool: {maxConcurrentRequests: 1}
---
apiVersion: quicmesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: upload, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: upload, sectionName: http}]
  maxRequestBodyBytes: 1024
---
apiVersion: quicmesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: upload-typo, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: upload}]
  maxRequestBodyByte: 10
"#;

/// The status codes curl wrote (`-w '\n%{http_code}\n'`, one a line among
/// the bodies).
fn codes(out: &str) -> Vec<u16> {
    out.lines()
        .filter(|l| l.len() == 3)
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// `n` GETs of `url` by curl in the client pod, `parallel` at a time
/// (each its own connection), with `headers`: their statuses.
fn load(cluster: &Cluster, url: &str, n: usize, parallel: usize, headers: &[&str]) -> Vec<u16> {
    let glob = format!("{url}/[1-{n}]");
    let parallel = parallel.to_string();
    let mut args = vec!["-w", "\n%{http_code}\n"];
    if parallel != "1" {
        args.extend(["-Z", "--parallel-max", &parallel]);
    }
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(&glob);
    let out = curl(cluster, &args).unwrap_or_else(|e| panic!("curl {url}: {e}"));
    codes(&out)
}

/// Like [`load`], with each request's total time (seconds).
fn timed_load(
    cluster: &Cluster,
    url: &str,
    n: usize,
    parallel: usize,
    headers: &[&str],
) -> Vec<(u16, f64)> {
    let glob = format!("{url}/[1-{n}]");
    let parallel = parallel.to_string();
    let mut args = vec![
        "-w",
        "\n=%{http_code} %{time_total}\n",
        "-Z",
        "--parallel-max",
        &parallel,
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(&glob);
    let out = curl(cluster, &args).unwrap_or_else(|e| panic!("curl {url}: {e}"));
    out.lines()
        .filter_map(|l| {
            let (code, time) = l.strip_prefix('=')?.split_once(' ')?;
            Some((code.parse().ok()?, time.parse().ok()?))
        })
        .collect()
}

fn count(codes: &[u16], code: u16) -> usize {
    codes.iter().filter(|c| **c == code).count()
}

/// The waypoint's config dump (admin, on its pod's loopback).
async fn config_dump(cluster: &Cluster) -> serde_json::Value {
    let p = cluster.pod("shop", "waypoint-0");
    let text = netns_http_get(
        &p.netns,
        SocketAddr::from(([127, 0, 0, 1], 15000)),
        "/config_dump",
    )
    .await
    .unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_policies_are_enforced_at_the_waypoint() {
    require_root();
    let (cluster, dir) =
        start_with(&[("server.py", SERVER), ("resilience.yaml", RESILIENCE)]).await;

    // Every Service answers through the waypoint, with its policy applied
    // (the waypoint's config has each Service's settings).
    let ready = eventually(Duration::from_secs(60), || async {
        let dump = config_dump(&cluster).await;
        let t = &dump["config"]["trafficPolicies"];
        ["shaky", "web", "faulty", "slowpoke", "upload"]
            .iter()
            .all(|s| t[format!("shop/{s}:80")].is_object())
            && ["web-v1", "faulty", "slowpoke", "upload"]
                .iter()
                .all(|s| status_from(&cluster, "client", &format!("http://{s}.shop/")) == 200)
    })
    .await;
    assert!(
        ready,
        "{}\n{}",
        config_dump(&cluster).await,
        cluster.pod_log("shop", "waypoint-0")
    );
    let dump = config_dump(&cluster).await;
    assert_eq!(
        dump["config"]["trafficPolicies"]["shop/upload:80"]["maxRequestBodyBytes"]["policy"],
        "shop/upload",
        "{dump}"
    );
    // The controller reports each policy's targets; the typo is invalid
    // and names the field (its Service runs without it).
    let status: serde_json::Value =
        serde_json::from_str(&cluster.controller_http("/status").await.unwrap()).unwrap();
    let policies = status["trafficPolicies"].as_array().unwrap();
    let of = |name: &str| policies.iter().find(|p| p["name"] == name).unwrap().clone();
    let accepted = &of("shaky")["ancestors"][0]["conditions"][0];
    assert_eq!(
        (accepted["type"].as_str(), accepted["status"].as_bool()),
        (Some("Accepted"), Some(true)),
        "{status}"
    );
    let typo = of("upload-typo");
    assert_eq!(
        typo["ancestors"][0]["conditions"][0]["reason"], "Invalid",
        "{typo}"
    );
    assert!(
        typo["invalid"]
            .as_str()
            .unwrap()
            .contains("unknown field `maxRequestBodyByte`"),
        "{typo}"
    );

    outlier_detection(&cluster).await;
    rate_limit(&cluster).await;
    fault_injection(&cluster).await;
    circuit_breaking(&cluster).await;
    body_limit(&cluster, dir.path()).await;
}

/// shaky: shaky-good answers in 200 ms, shaky-bad at once with 500. With
/// 20 requests at a time, the good one queues and the balancer sends the
/// bad one requests; after its 5th error in a row it is ejected (for 5
/// minutes) and the success rate goes to ~100 %.
async fn outlier_detection(cluster: &Cluster) {
    let before = load(cluster, "http://shaky.shop/before", 200, 20, &[]);
    assert_eq!(before.len(), 200, "{before:?}");
    let failed = count(&before, 500);
    let ejected = eventually(Duration::from_secs(30), || async {
        let m = waypoint_metrics(cluster).await;
        sum_metric(
            &m,
            "quicmesh_waypoint_outlier_ejections_total",
            &[("service", "shop/shaky:80")],
        ) >= 1.0
    })
    .await;
    assert!(
        ejected,
        "before: {failed} of 200 failed\n{}",
        waypoint_metrics(cluster).await
    );
    assert!(
        failed >= 5,
        "the bad replica got too few requests to be judged: {failed}"
    );
    let bad = cluster.pod("shop", "shaky-bad-0");
    let dump = config_dump(cluster).await;
    assert_eq!(
        dump["resilience"]["shop/shaky:80"]["ejected"][0]["endpoint"],
        format!("{}:8080", bad.ip),
        "{dump}"
    );
    let after = load(cluster, "http://shaky.shop/after", 200, 20, &[]);
    let ok_before = count(&before, 200) as f64 / 200.0;
    let ok_after = count(&after, 200) as f64 / after.len().max(1) as f64;
    assert_eq!(after.len(), 200, "{after:?}");
    eprintln!("outlier detection: success rate {ok_before:.3} before the ejection ({failed} of 200 answered 500), {ok_after:.3} after");
    assert!(
        ok_after >= 0.99 && ok_after > ok_before,
        "success rate before ejection {ok_before:.3}, after {ok_after:.3}"
    );
}

/// web (its route splits to web-v1 and web-v2): 10 a second, burst 20.
/// 100 requests on one connection as fast as curl sends them: at least the
/// burst is allowed, and at most the burst plus what refilled in the time
/// measured around the whole curl; 429s carry `Retry-After`.
async fn rate_limit(cluster: &Cluster) {
    let started = Instant::now();
    let got = load(cluster, "http://web.shop/rl", 100, 1, &[]);
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(got.len(), 100, "{got:?}");
    let allowed = count(&got, 200);
    let limited = count(&got, 429);
    assert_eq!(allowed + limited, 100, "{got:?}");
    let most = 20.0 + 10.0 * elapsed + 1.0;
    eprintln!(
        "rate limit: {allowed} of 100 allowed in {elapsed:.2}s (burst 20, 10/s: at most {most:.1})"
    );
    assert!(
        allowed >= 20 && allowed as f64 <= most,
        "{allowed} allowed in {elapsed:.2}s; expected 20 to {most:.1}"
    );
    // The bucket is empty: of 30 more at once, most are refused, each
    // saying when to come back (a token comes within a second).
    let heads = curl(cluster, &["-i", "http://web.shop/again/[1-30]"]).unwrap();
    let heads = heads.to_ascii_lowercase();
    let refused = heads.matches("http/1.1 429").count();
    assert!(refused >= 20, "{heads}");
    assert_eq!(
        heads.matches("retry-after: 1\r\n").count(),
        refused,
        "{heads}"
    );
    let m = waypoint_metrics(cluster).await;
    let counted = sum_metric(
        &m,
        "quicmesh_waypoint_rate_limited_total",
        &[("service", "shop/web:80")],
    );
    assert_eq!(counted, (limited + refused) as f64, "{m}");
}

/// faulty: half the requests with `x-fault: yes` are delayed 500 ms and
/// (independently) half aborted with 503; none without the header.
async fn fault_injection(cluster: &Cluster) {
    let plain = load(cluster, "http://faulty.shop/plain", 100, 10, &[]);
    assert_eq!(count(&plain, 200), 100, "{plain:?}");
    let n = 400;
    let timed = timed_load(cluster, "http://faulty.shop/f", n, 10, &["x-fault: yes"]);
    let got: Vec<u16> = timed.iter().map(|(c, _)| *c).collect();
    assert_eq!(got.len(), n, "{got:?}");
    let aborted = count(&got, 503);
    assert_eq!(aborted + count(&got, 200), n);
    eprintln!("fault injection: {aborted} of {n} aborted (50 %), none of 100 without the header");
    // Binomial(400, 0.5): mean 200, sd 10; ±4 sd.
    assert!((160..=240).contains(&aborted), "{aborted} of {n} aborted");
    let m = waypoint_metrics(cluster).await;
    let counted = sum_metric(
        &m,
        "quicmesh_waypoint_faults_total",
        &[("service", "shop/faulty:80"), ("fault", "abort")],
    );
    assert_eq!(counted, aborted as f64, "{m}");
    // Delays, sampled apart from aborts: 50 % of 400 within ±4 sd, each
    // one seen by the client as a request of at least 500 ms (a slow
    // undelayed one may add to what it sees, never take away).
    let delayed = sum_metric(
        &m,
        "quicmesh_waypoint_faults_total",
        &[("service", "shop/faulty:80"), ("fault", "delay")],
    ) as usize;
    let slow = timed.iter().filter(|(_, t)| *t >= 0.5).count();
    eprintln!(
        "fault injection: {delayed} of {n} delayed 500 ms (50 %); {slow} took 500 ms or more"
    );
    assert!((160..=240).contains(&delayed), "{delayed} of {n} delayed");
    assert!(
        slow >= delayed && slow <= delayed + 40,
        "{slow} requests took 500 ms or more, {delayed} delayed"
    );
}

/// slowpoke: one request at a time (the backend takes 1.5 s); 5 at once:
/// one is served, the others are answered 503 with the reason.
async fn circuit_breaking(cluster: &Cluster) {
    let out = curl(
        cluster,
        &[
            "-Z",
            "--parallel-immediate",
            "--parallel-max",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "\n%{http_code} %header{x-quicmesh-overflow}\n",
            "http://slowpoke.shop/[1-5]",
        ],
    )
    .unwrap();
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("200") || l.starts_with("503"))
        .collect();
    assert_eq!(lines.len(), 5, "{out}");
    let served = lines.iter().filter(|l| l.starts_with("200")).count();
    let refused: Vec<_> = lines.iter().filter(|l| l.starts_with("503")).collect();
    eprintln!(
        "circuit breaking: of 5 at once, {served} served, {} refused",
        refused.len()
    );
    assert!(served >= 1 && refused.len() >= 3, "{out}");
    assert!(
        refused
            .iter()
            .all(|l| l.trim_end() == "503 max_concurrent_requests"),
        "{out}"
    );
    let m = waypoint_metrics(cluster).await;
    let counted = sum_metric(
        &m,
        "quicmesh_waypoint_overflows_total",
        &[
            ("service", "shop/slowpoke:80"),
            ("reason", "max_concurrent_requests"),
        ],
    );
    assert_eq!(counted, refused.len() as f64, "{m}");
}

/// upload (port http): bodies up to 1 KiB; beyond, 413 whether the length
/// is announced or the body is streamed (chunked).
async fn body_limit(cluster: &Cluster, dir: &std::path::Path) {
    let small = dir.join("small.bin");
    let big = dir.join("big.bin");
    std::fs::write(&small, vec![b'x'; 1000]).unwrap();
    std::fs::write(&big, vec![b'y'; 4000]).unwrap();
    let post = |file: &std::path::Path, chunked: bool| {
        let data = format!("@{}", file.display());
        let mut args = vec!["-w", "\n%{http_code}\n", "--data-binary", &data];
        if chunked {
            args.extend(["-H", "transfer-encoding: chunked"]);
        }
        args.push("http://upload.shop/");
        curl(cluster, &args).unwrap()
    };
    let out = post(&small, false);
    assert_eq!(codes(&out), [200], "{out}");
    assert!(
        out.starts_with("1000\n"),
        "the backend read it whole: {out}"
    );
    let out = post(&small, true);
    assert_eq!(codes(&out), [200], "chunked within the limit: {out}");
    let out = post(&big, false);
    assert_eq!(codes(&out), [413], "{out}");
    assert!(out.starts_with("body_too_large"), "{out}");
    let out = post(&big, true);
    assert_eq!(codes(&out), [413], "streamed beyond the limit: {out}");
    let m = waypoint_metrics(cluster).await;
    let counted = sum_metric(
        &m,
        "quicmesh_waypoint_requests_total",
        &[
            ("service", "shop/upload:80"),
            ("code", "413"),
            ("flag", "body_too_large"),
        ],
    );
    assert_eq!(counted, 2.0, "{m}");
}
