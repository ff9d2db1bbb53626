//! L7 authorization end to end: AuthorizationPolicies attached to the
//! waypoint (`targetRefs`: a Service, the waypoint's Gateway) and a
//! workload's own policy with L7 rules, decided by the waypoint for each
//! request of real curl in the client pod; the same workload policy
//! failing closed at the destination's ztunnel for traffic that goes
//! around the waypoint; a malformed policy refusing only what it targets.

use std::time::Duration;

use quicmesh_e2e::waypoint::*;
use quicmesh_e2e::{eventually, require_root};
use quicmesh_lab::local::Cluster;
use quicmesh_lab::mesh::sum_metric;

const POLICIES: &str = r#"
# Requests the waypoint serves for `web`: public pages to anyone; the rest
# to the client's service account, with a team header.
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-api, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  action: ALLOW
  rules:
  - to: [{operation: {methods: [GET], paths: ["/public/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/front/sa/client"]}}]
    to: [{operation: {methods: [GET, POST]}}]
    when: [{key: "request.headers[x-team]", values: ["shop", "ops*"]}]
---
# Every request through the waypoint: none with a debug header.
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-debug, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  action: DENY
  rules:
  - when: [{key: "request.headers[x-debug]", values: ["*"]}]
---
# The web pods themselves: reads only. Decided per request at the
# waypoint; a ztunnel cannot see methods, so around the waypoint this
# ALLOW never matches and the connection is refused.
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-read-only, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - to: [{operation: {methods: [GET, HEAD]}}]
"#;

/// A policy that cannot be understood (a lower-case method), attached to
/// `web-v2`: its requests are refused, nothing else changes.
const BROKEN: &str = r#"
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: shop}
spec:
  targetRefs: [{kind: Service, name: web-v2}]
  rules:
  - to: [{operation: {methods: [get]}}]
"#;

/// curl from the client pod: the status (0: no answer) and the body.
fn call(cluster: &Cluster, method: &str, url: &str, headers: &[&str]) -> (u16, String) {
    // `--path-as-is`: dot segments reach the waypoint, which decides the
    // canonical path.
    let mut args = vec!["--path-as-is", "-X", method, "-w", "\n%{http_code}"];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(url);
    match curl(cluster, &args) {
        Ok(out) => {
            let (body, code) = out.rsplit_once('\n').unwrap_or(("", &out));
            (
                code.trim().parse().unwrap_or(0),
                body.trim_end().to_string(),
            )
        }
        Err(_) => (0, String::new()),
    }
}

async fn waypoint_denials(cluster: &Cluster, policy: &str, reason: &str) -> f64 {
    sum_metric(
        &waypoint_metrics(cluster).await,
        "quicmesh_waypoint_authz_denials_total",
        &[("policy", policy), ("reason", reason)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waypoint_decides_methods_paths_headers_and_attached_policies() {
    require_root();
    let (mut cluster, dir) = start_with(&[("policies.yaml", POLICIES)]).await;
    // Every Service the cases reach, so that the waypoint knows both
    // versions' endpoints (`web` sends one request in ten to web-v2).
    let up = eventually(Duration::from_secs(60), || async {
        [
            "http://web.shop/public/x",
            "http://web-v1.shop/",
            "http://web-v2.shop/",
        ]
        .iter()
        .all(|url| call(&cluster, "GET", url, &[]).0 == 200)
    })
    .await;
    assert!(up, "{}", cluster.pod_log("shop", "waypoint-0"));

    // (method, url, headers, status, the policy that denies)
    let cases: &[(&str, &str, &[&str], u16, &str)] = &[
        ("GET", "http://web.shop/public/x", &[], 200, ""),
        // Canonical before it is decided.
        (
            "GET",
            "http://web.shop/public/../private",
            &[],
            403,
            "shop/web-api",
        ),
        ("GET", "http://web.shop/private", &[], 403, "shop/web-api"),
        (
            "GET",
            "http://web.shop/private",
            &["x-team: ops-blue"],
            200,
            "",
        ),
        (
            "GET",
            "http://web.shop/private",
            &["x-team: sales"],
            403,
            "shop/web-api",
        ),
        // The Service's policy allows it; the pods' own does not.
        (
            "POST",
            "http://web.shop/private",
            &["x-team: shop"],
            403,
            "shop/web-read-only",
        ),
        // The Gateway's policy: every Service of the waypoint.
        (
            "GET",
            "http://web.shop/public/x",
            &["x-debug: 1"],
            403,
            "shop/no-debug",
        ),
        (
            "GET",
            "http://web-v1.shop/",
            &["x-debug: yes"],
            403,
            "shop/no-debug",
        ),
        // web-v1 has no Service policy: the pods' own decides.
        ("GET", "http://web-v1.shop/", &[], 200, ""),
        (
            "POST",
            "http://web-v1.shop/",
            &[],
            403,
            "shop/web-read-only",
        ),
    ];
    for (method, url, headers, want, policy) in cases {
        let (status, body) = call(&cluster, method, url, headers);
        assert_eq!(status, *want, "{method} {url} {headers:?}: {body}");
        if *want == 403 {
            // The answer names no policy; the access log does.
            assert_eq!(body, "authz_denied", "{method} {url}");
            assert!(!body.contains(policy));
        } else {
            assert!(body.starts_with("hello from shop/web-v"), "{body}");
        }
    }
    let log = cluster.pod_log("shop", "waypoint-0");
    for policy in ["shop/web-api", "shop/web-read-only", "shop/no-debug"] {
        assert!(
            log.lines()
                .any(|l| l.contains("waypoint::access") && l.contains(&format!("by {policy}"))),
            "no access log line names {policy}:\n{log}"
        );
    }
    assert!(waypoint_denials(&cluster, "shop/web-api", "no_allow_match").await >= 3.0);
    assert!(waypoint_denials(&cluster, "shop/no-debug", "deny_policy").await >= 2.0);
    assert!(waypoint_denials(&cluster, "shop/web-read-only", "no_allow_match").await >= 2.0);

    // Around the waypoint (`direct` opts out of it), the ztunnel of the
    // web-v1 pod decides the pods' policy without a request: its ALLOW
    // rule has methods, which never match at L4, so the connection is
    // refused, never let through.
    let (status, _) = call(&cluster, "GET", "http://direct.shop/", &[]);
    assert_eq!(status, 0, "a ztunnel let an L7-only ALLOW through");
    let node = cluster.pod("shop", "web-v1-0").node;
    let refused = eventually(Duration::from_secs(20), || async {
        denials(&cluster, node, "shop/web-read-only", "no_allow_match").await >= 1.0
    })
    .await;
    assert!(refused);

    // A malformed policy: the requests it targets are refused (fail
    // closed), with the reason in the controller's log; everything else
    // is served as before.
    std::fs::write(dir.path().join("broken.yaml"), BROKEN).unwrap();
    cluster.reconcile().await.unwrap();
    let closed = eventually(Duration::from_secs(30), || async {
        call(&cluster, "GET", "http://web-v2.shop/", &[]).0 == 403
    })
    .await;
    assert!(closed, "{}", cluster.pod_log("shop", "waypoint-0"));
    assert!(waypoint_denials(&cluster, "shop/broken", "invalid_policy").await >= 1.0);
    assert_eq!(call(&cluster, "GET", "http://web-v1.shop/", &[]).0, 200);
    assert_eq!(
        call(&cluster, "GET", "http://web.shop/public/y", &[]).0,
        200
    );
}
