//! The waypoint end to end: a namespace labeled `quicmesh.io/use-waypoint`
//! gets a waypoint pod (the real waypoint binary, its own SVID from the
//! controller's CA); ztunnels send that namespace's Service traffic through
//! it; the waypoint routes each request by the HTTPRoutes attached to the
//! Service and forwards it over its own tunnel. Real curl in the client pod
//! over HTTP/1.1 and HTTP/2.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use quicmesh_e2e::waypoint::*;
use quicmesh_e2e::{eventually, grafana, require_root};
use quicmesh_lab::local::{Cluster, LocalSpec};
use quicmesh_lab::mesh::sum_metric;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_with_a_waypoint_routes_by_its_http_routes() {
    require_root();
    let (cluster, _dir) = start_with(&[("by-method.yaml", BY_METHOD), ("plain.yaml", PLAIN)]).await;
    let wp = cluster.pod("shop", "waypoint-0");
    assert!(!wp.enrolled, "a waypoint pod is never captured");

    // The controller reports the implied Gateway, programmed once the
    // waypoint pod is ready.
    let programmed = eventually(Duration::from_secs(20), || async {
        let Ok(t) = cluster.controller_http("/status").await else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
        v["waypoints"].as_array().is_some_and(|ws| {
            ws.iter().any(|w| {
                w["namespace"] == "shop"
                    && w["name"] == "waypoint"
                    && w["implied"] == true
                    && w["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Programmed" && c["status"] == true)
                    })
            })
        })
    })
    .await;
    assert!(
        programmed,
        "{}",
        cluster.controller_http("/status").await.unwrap_or_default()
    );

    // A header route, over HTTP/1.1 and HTTP/2 (prior knowledge; the
    // backend speaks HTTP/1.1 only: its port's `appProtocol: http` makes
    // the waypoint speak that to it).
    let canary = eventually(Duration::from_secs(20), || async {
        curl(&cluster, &["-H", "x-canary: yes", "http://web.shop/"])
            .is_ok_and(|b| b.trim() == "hello from shop/web-v2-0")
    })
    .await;
    assert!(
        canary,
        "header route: {:?}\n{}",
        curl(&cluster, &["-v", "-H", "x-canary: yes", "http://web.shop/"]),
        cluster.pod_log("shop", "waypoint-0")
    );
    let h2 = curl(
        &cluster,
        &[
            "--http2-prior-knowledge",
            "-H",
            "x-canary: yes",
            "-w",
            " %{http_version}",
            "http://web.shop/",
        ],
    )
    .unwrap();
    assert_eq!(h2.trim(), "hello from shop/web-v2-0\n 2".trim(), "{h2}");

    // The 90/10 split, over 1,000 requests on one kept-alive connection.
    let out = curl(&cluster, &["http://web.shop/split/[1-1000]"]).unwrap();
    let v1 = out.matches("hello from shop/web-v1-0").count();
    let v2 = out.matches("hello from shop/web-v2-0").count();
    assert_eq!(v1 + v2, 1000, "{out}");
    // Binomial(1000, 0.1): mean 100, sd 9.5; ±5 sd.
    assert!((52..=148).contains(&v2), "v1 {v1}, v2 {v2}");

    // A method route (a second HTTPRoute for the same Service): every
    // DELETE goes to v2; other methods keep the split.
    let deletes = curl(&cluster, &["-X", "DELETE", "http://web.shop/item/[1-20]"]).unwrap();
    assert_eq!(
        deletes.matches("hello from shop/web-v2-0").count(),
        20,
        "{deletes}"
    );
    let posts = curl(&cluster, &["-X", "POST", "http://web.shop/item/[1-50]"]).unwrap();
    assert!(
        posts.matches("hello from shop/web-v1-0").count() >= 30,
        "{posts}"
    );

    // A namespace without a waypoint: its Service is answered straight
    // from the client's ztunnel to the destination's, which sees the
    // client's own identity; the waypoint never sees it.
    let node = cluster.pod("front", "client").node;
    let to_waypoint = || async {
        sum_metric(
            &cluster.ztunnel_http(node, 15020, "/metrics").await.unwrap(),
            "quicmesh_ztunnel_waypoint_connections_total",
            &[],
        )
    };
    let before = to_waypoint().await;
    let plain = curl(&cluster, &["http://hello.plain/[1-5]"]).unwrap();
    assert_eq!(
        plain.matches("hello from plain/hello-0").count(),
        5,
        "{plain}"
    );
    assert_eq!(
        to_waypoint().await,
        before,
        "a plain namespace's traffic went to a waypoint"
    );
    let hello = cluster.pod("plain", "hello-0");
    let log = std::fs::read_to_string(cluster.ztunnel_log(hello.node)).unwrap();
    assert!(
        log.lines().any(|l| l.contains("direction=\"inbound\"")
            && l.contains("spiffe://cluster.local/ns/front/sa/client")
            && l.contains(&format!("{}:8080", hello.ip))),
        "{log}"
    );

    // A Service labeled `none` skips the waypoint: answered, and never
    // counted there.
    assert_eq!(
        curl(&cluster, &["http://direct.shop/"]).unwrap().trim(),
        "hello from shop/web-v1-0"
    );
    let m = waypoint_metrics(&cluster).await;
    assert!(requests_for(&m, "service=\"shop/web:80\"") >= 1002.0, "{m}");
    assert_eq!(requests_for(&m, "shop/direct"), 0.0, "{m}");
    assert_eq!(requests_for(&m, "plain/"), 0.0, "{m}");
    // Counted by the client's proven identity.
    assert!(
        requests_for(
            &m,
            "src_namespace=\"front\",src_principal=\"spiffe://cluster.local/ns/front/sa/"
        ) >= 1002.0,
        "{m}"
    );
    // One prefix on every process, and every family the Grafana dashboard
    // reads is served by one of them.
    let node = cluster.pod("front", "client").node;
    let mut served = std::collections::BTreeSet::new();
    for (what, scrape) in [
        ("waypoint", m.clone()),
        (
            "ztunnel",
            cluster.ztunnel_http(node, 15020, "/metrics").await.unwrap(),
        ),
        (
            "cni agent",
            cluster.ztunnel_http(node, 15021, "/metrics").await.unwrap(),
        ),
        (
            "controller",
            cluster.controller_http("/metrics").await.unwrap(),
        ),
    ] {
        let families = grafana::declared(&scrape);
        assert!(families.len() > 3, "{what}: {scrape}");
        let strays: Vec<_> = families
            .iter()
            .filter(|f| !f.starts_with("quicmesh_"))
            .collect();
        assert!(strays.is_empty(), "{what}: {strays:?}");
        served.extend(families);
    }
    let read = grafana::families(&grafana::queries(&grafana::dashboard()));
    let missing: Vec<_> = read.difference(&served).collect();
    assert!(
        missing.is_empty(),
        "the dashboard reads unserved metrics: {missing:?}"
    );
    // The client's ztunnel sent the routed traffic to the waypoint.
    let z = cluster
        .ztunnel_http(cluster.pod("front", "client").node, 15020, "/metrics")
        .await
        .unwrap();
    assert!(
        z.lines().any(
            |l| l.starts_with("quicmesh_ztunnel_waypoint_connections_total ") && !l.ends_with(" 0")
        ),
        "{z}"
    );
    // The controller goes away: the waypoint keeps routing on its last
    // config (the header route still holds).
    let mut cluster = cluster;
    cluster.stop_controller().unwrap();
    let noticed = eventually(Duration::from_secs(30), || async {
        waypoint_metrics(&cluster)
            .await
            .lines()
            .any(|l| l == "quicmesh_waypoint_config_connected 0")
    })
    .await;
    assert!(noticed, "the waypoint did not see the controller go");
    assert_eq!(
        curl(&cluster, &["-H", "x-canary: yes", "http://web.shop/"])
            .unwrap()
            .trim(),
        "hello from shop/web-v2-0"
    );
    // The backends saw the waypoint's identity, not the client's.
    let dst = cluster.ztunnel_log(cluster.pod("shop", "web-v2-0").node);
    let log = std::fs::read_to_string(dst).unwrap();
    assert!(
        log.lines().any(|l| l.contains("direction=\"inbound\"")
            && l.contains("spiffe://cluster.local/ns/shop/sa/waypoint")),
        "{log}"
    );
}

/// A second route for `web`: DELETEs go to v2.
const BY_METHOD: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web-deletes, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{method: DELETE}]
    backendRefs: [{name: web-v2, port: 80}]
"#;

/// An ambient namespace without a waypoint.
const PLAIN: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: plain, labels: {quicmesh.io/dataplane-mode: ambient}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, namespace: plain}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
      - name: hello
        command: ["python3", "hello.py"]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: plain}
spec:
  selector: {app: hello}
  ports: [{name: web, port: 80, targetPort: http, appProtocol: http}]
"#;

const GRPC: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {quicmesh.io/dataplane-mode: ambient, quicmesh.io/use-waypoint: waypoint}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart-v1, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: cart, version: v1}}
    spec:
      serviceAccountName: cart
      containers:
      - name: cart
        command: ["python3", "grpc_echo.py"]
        ports: [{name: grpc, containerPort: 9090}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart-v2, namespace: shop}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: cart, version: v2}}
    spec:
      serviceAccountName: cart
      containers:
      - name: cart
        command: ["python3", "grpc_echo.py"]
        ports: [{name: grpc, containerPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports: [{name: grpc, port: 9090, targetPort: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: cart-v1, namespace: shop}
spec:
  selector: {app: cart, version: v1}
  ports: [{name: grpc, port: 9090, targetPort: grpc}]
---
apiVersion: v1
kind: Service
metadata: {name: cart-v2, namespace: shop}
spec:
  selector: {app: cart, version: v2}
  ports: [{name: grpc, port: 9090, targetPort: grpc}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: cart, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart, port: 9090}]
  rules:
  - matches: [{method: {service: shop.Cart, method: Checkout}}]
    backendRefs: [{name: cart-v2, port: 9090}]
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-canary, value: routed}]}
    backendRefs: [{name: cart-v2, port: 9090}]
  - backendRefs: [{name: cart-v1, port: 9090}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: broken, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: cart, port: 9090}]
  rules:
  - matches: [{method: {service: "shop/Cart"}}]
    backendRefs: [{name: cart-v2, port: 9090}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_routed_by_grpc_routes() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/python/grpc_echo.py"),
        d.join("grpc_echo.py"),
    )
    .unwrap();
    std::fs::write(d.join("shop.yaml"), GRPC).unwrap();
    std::fs::write(d.join("front.yaml"), FRONT).unwrap();
    let cluster = Cluster::up(LocalSpec::new(Path::new(d), 2)).await.unwrap();
    let target = SocketAddr::new(cluster.vip("shop", "cart"), 9090).to_string();
    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/python/grpc_call.py");
    let call = |args: &[&str]| {
        let argv: Vec<&str> = ["python3", client, target.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        cluster
            .lab
            .exec_timeout(
                &cluster.pod("front", "client").netns,
                &argv,
                Duration::from_secs(60),
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .map_err(|e| format!("{e:#}"))
    };
    // The first calls may race the waypoint's first config: retry briefly.
    let mut out = Err(String::new());
    let ok = eventually(Duration::from_secs(20), || {
        out = call(&["/shop.Cart/Checkout", "/shop.Cart/List"]);
        std::future::ready(out.is_ok())
    })
    .await;
    assert!(ok, "{out:?}\n{}", cluster.pod_log("shop", "waypoint-0"));
    let lines: Vec<String> = out.unwrap().lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "cart-v2-0 /shop.Cart/Checkout hi canary=",
            "cart-v1-0 /shop.Cart/List hi canary="
        ],
        "method match first, the rest to v1"
    );
    // A header match, with its header filter applied.
    let canary = call(&["--canary", "/shop.Cart/List"]).unwrap();
    assert_eq!(canary.trim(), "cart-v2-0 /shop.Cart/List hi canary=routed");
    // The invalid route is refused alone, with the field named.
    let status = cluster.controller_http("/status").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let route = |name: &str| {
        v["httpRoutes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "GRPCRoute" && r["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    let accepted = &route("cart")["parents"][0]["conditions"][0];
    assert_eq!(
        (accepted["type"].as_str(), accepted["status"].as_bool()),
        (Some("Accepted"), Some(true)),
        "{status}"
    );
    let broken = &route("broken")["parents"][0]["conditions"][0];
    assert_eq!(broken["status"], false, "{status}");
    assert_eq!(broken["reason"], "UnsupportedValue", "{status}");
    assert!(
        broken["message"]
            .as_str()
            .unwrap()
            .contains("spec.rules[0].matches[0].method.service"),
        "{status}"
    );
}

/// `quicmesh local up -f examples/waypoint` as a user runs it: the header
/// route and the canary split work, and the route's status is good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waypoint_example_routes_as_documented() {
    require_root();
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/waypoint"));
    let cluster = Cluster::up(LocalSpec::new(dir, 2)).await.unwrap();
    let canary = eventually(Duration::from_secs(20), || async {
        curl_from(
            &cluster,
            "client-0",
            &["-H", "x-canary: yes", "http://web.shop/"],
        )
        .is_ok_and(|b| b.trim() == "hello from shop/web-v2-0")
    })
    .await;
    assert!(canary, "{}", cluster.pod_log("shop", "waypoint-0"));
    let out = curl_from(&cluster, "client-0", &["http://web.shop/[1-200]"]).unwrap();
    let v1 = out.matches("hello from shop/web-v1-0").count();
    let v2 = out.matches("hello from shop/web-v2-0").count();
    // Binomial(200, 0.1): mean 20, sd 4.2; ±5 sd.
    assert_eq!(v1 + v2, 200, "{out}");
    assert!((1..=41).contains(&v2), "v1 {v1}, v2 {v2}");
    let status: serde_json::Value =
        serde_json::from_str(&cluster.controller_http("/status").await.unwrap()).unwrap();
    let conditions = &status["httpRoutes"][0]["parents"][0]["conditions"];
    assert_eq!(conditions[0]["status"], true, "{status}");
    assert_eq!(conditions[1]["status"], true, "{status}");
    // Its L7 policy (policy.yaml): reads only, nothing under /admin/.
    let code = |args: &[&str]| {
        let mut a = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        a.extend_from_slice(args);
        curl_from(&cluster, "client-0", &a).unwrap_or_default()
    };
    assert_eq!(code(&["-X", "POST", "http://web.shop/"]), "403");
    assert_eq!(code(&["http://web.shop/admin/users"]), "403");
    assert_eq!(code(&["http://web.shop/shop"]), "200");
    // /admin/ with the demo token of request-authentication.yaml (its
    // shop-admins group): allowed; a broken token: 401.
    let example = std::fs::read_to_string(dir.join("request-authentication.yaml")).unwrap();
    let demo = example
        .split("Bearer ")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap();
    let bearer = format!("Authorization: Bearer {demo}");
    assert_eq!(code(&["-H", &bearer, "http://web.shop/admin/users"]), "200");
    let broken = format!("Authorization: Bearer {demo}x");
    assert_eq!(code(&["-H", &broken, "http://web.shop/admin/users"]), "401");
}

/// Only front/client may call shop's web pods; front/stranger may not.
const WEB_FROM_CLIENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: stranger, namespace: front}
spec:
  serviceAccountName: stranger
  containers: [{name: app}]
---
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: web-from-client, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/front/sa/client"]}}]
"#;

/// Nothing reaches shop's web pods around the waypoint.
const REQUIRE_WAYPOINT: &str = r#"
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: require-waypoint, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
  - from: [{source: {viaWaypoint: false}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_mean_the_same_behind_a_waypoint() {
    require_root();
    let (mut cluster, dir) = start_with(&[("policy.yaml", WEB_FROM_CLIENT)]).await;
    // Through the waypoint: the client's identity is what the policy
    // sees (the waypoint decides it), so the client is served...
    let served = eventually(Duration::from_secs(30), || async {
        status_from(&cluster, "client", "http://web.shop/") == 200
    })
    .await;
    assert!(
        served,
        "{:?}\n{}",
        curl(&cluster, &["-v", "http://web.shop/"]),
        cluster.pod_log("shop", "waypoint-0")
    );
    // ...and the stranger is refused there with 403.
    assert_eq!(status_from(&cluster, "stranger", "http://web.shop/"), 403);
    let m = waypoint_metrics(&cluster).await;
    assert!(
        sum_metric(
            &m,
            "quicmesh_waypoint_authz_denials_total",
            &[
                ("policy", "shop/web-from-client"),
                ("reason", "no_allow_match")
            ]
        ) >= 1.0,
        "{m}"
    );
    // The destination admitted the waypoint's tunnel as the waypoint of
    // its workload, not by the policy (which names only the client): at
    // the node of whichever replica the waypoint picked.
    let node = cluster.pod("shop", "web-v1-0").node;
    let other = cluster.pod("shop", "web-v2-0").node;
    // (Counted when admitted: the log line comes only when the waypoint's
    // kept connection closes.)
    let vouched = eventually(Duration::from_secs(10), || async {
        let mut n = admissions(&cluster, node, "waypoint").await;
        if other != node {
            n += admissions(&cluster, other, "waypoint").await;
        }
        n >= 1.0
    })
    .await;
    assert!(
        vouched,
        "{}\n{}",
        cluster
            .ztunnel_http(node, 15020, "/metrics")
            .await
            .unwrap_or_default(),
        cluster
            .ztunnel_http(other, 15020, "/metrics")
            .await
            .unwrap_or_default()
    );

    // Around the waypoint (a pod IP dialled directly), the destination's
    // ztunnel decides the same policy.
    let direct = format!("http://{}:8080/", cluster.pod("shop", "web-v1-0").ip);
    assert_eq!(status_from(&cluster, "client", &direct), 200);
    let before = denials(&cluster, node, "shop/web-from-client", "no_allow_match").await;
    assert_eq!(status_from(&cluster, "stranger", &direct), 0, "refused");
    assert!(denials(&cluster, node, "shop/web-from-client", "no_allow_match").await > before);

    // Requiring the waypoint closes the direct path, for the client too;
    // through the waypoint the client is still served.
    std::fs::write(dir.path().join("require.yaml"), REQUIRE_WAYPOINT).unwrap();
    cluster.reconcile().await.unwrap();
    let closed = eventually(Duration::from_secs(30), || async {
        status_from(&cluster, "client", &direct) == 0
            && denials(&cluster, node, "shop/require-waypoint", "deny_policy").await > 0.0
    })
    .await;
    assert!(closed, "the direct path stayed open");
    assert_eq!(status_from(&cluster, "client", "http://web.shop/"), 200);
    assert_eq!(status_from(&cluster, "stranger", "http://web.shop/"), 403);
}

/// shop's waypoint declared, with `quicmesh.io/waypoint-for` set to
/// `value` (None: no label, the default `service`).
fn shop_gateway(value: Option<&str>) -> String {
    let labels = value
        .map(|v| format!("\n  labels: {{quicmesh.io/waypoint-for: {v}}}"))
        .unwrap_or_default();
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: shop{labels}
spec:
  gatewayClassName: quicmesh-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
"#
    )
}

/// The client's ztunnel's `quicmesh_ztunnel_waypoint_connections_total`.
async fn waypoint_connections(cluster: &Cluster) -> f64 {
    let node = cluster.pod("front", "client").node;
    let m = cluster
        .ztunnel_http(node, 15020, "/metrics")
        .await
        .unwrap_or_default();
    sum_metric(&m, "quicmesh_ztunnel_waypoint_connections_total", &[])
}

/// The `Accepted` condition of shop's waypoint Gateway on `/status`.
async fn accepted(cluster: &Cluster) -> serde_json::Value {
    let status = cluster.controller_http("/status").await.unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    v["waypoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["namespace"] == "shop" && w["name"] == "waypoint")
        .and_then(|w| w["conditions"].as_array()?.first().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_addressed_traffic_goes_through_a_waypoint_for_workloads() {
    require_root();
    let (mut cluster, dir) = start_with(&[("gateway.yaml", &shop_gateway(None))]).await;
    // The waypoint serves shop's Services (the default).
    let up = eventually(Duration::from_secs(30), || async {
        curl(&cluster, &["http://web.shop/"]).is_ok_and(|b| b.starts_with("hello from shop/web-"))
    })
    .await;
    assert!(up, "{}", cluster.pod_log("shop", "waypoint-0"));
    let ip = cluster.pod("shop", "web-v1-0").ip;
    let direct = format!("http://{ip}:8080/");
    let counted = "service=\"shop/pod-ip\"".to_string();

    // The default: a pod IP goes straight to the pod, not to the waypoint.
    let before = waypoint_connections(&cluster).await;
    for _ in 0..3 {
        assert_eq!(
            curl(&cluster, &[&direct]).unwrap().trim(),
            "hello from shop/web-v1-0"
        );
    }
    assert_eq!(waypoint_connections(&cluster).await, before);
    let m = waypoint_metrics(&cluster).await;
    assert_eq!(requests_for(&m, &counted), 0.0, "{m}");

    // `all`: pod-addressed traffic goes through the waypoint too (the
    // authority is the pod's IP and port; the waypoint forwards to it).
    std::fs::write(dir.path().join("gateway.yaml"), shop_gateway(Some("all"))).unwrap();
    cluster.reconcile().await.unwrap();
    let through = eventually(Duration::from_secs(30), || async {
        curl(&cluster, &[&direct]).is_ok_and(|b| b.trim() == "hello from shop/web-v1-0")
            && requests_for(&waypoint_metrics(&cluster).await, &counted) >= 1.0
    })
    .await;
    assert!(
        through,
        "{:?}\n{}",
        curl(&cluster, &["-v", &direct]),
        cluster.pod_log("shop", "waypoint-0")
    );
    let via = waypoint_connections(&cluster).await;
    assert!(
        via > before,
        "quicmesh_ztunnel_waypoint_connections_total {before} -> {via}"
    );
    // Services still go through it.
    assert_eq!(
        curl(&cluster, &["-H", "x-canary: yes", "http://web.shop/"])
            .unwrap()
            .trim(),
        "hello from shop/web-v2-0"
    );
    assert_eq!(accepted(&cluster).await["reason"], "Accepted");

    // A value the controller does not know: the Gateway says so, and it
    // is taken as the default (pod IPs go straight to the pod again).
    std::fs::write(dir.path().join("gateway.yaml"), shop_gateway(Some("pods"))).unwrap();
    cluster.reconcile().await.unwrap();
    let reported = eventually(Duration::from_secs(30), || async {
        let a = accepted(&cluster).await;
        a["status"] == true && a["reason"] == "UnsupportedValue"
    })
    .await;
    assert!(reported, "{}", accepted(&cluster).await);
    let direct_again = eventually(Duration::from_secs(30), || async {
        let n = waypoint_connections(&cluster).await;
        curl(&cluster, &[&direct]).is_ok_and(|b| b.trim() == "hello from shop/web-v1-0")
            && waypoint_connections(&cluster).await == n
    })
    .await;
    assert!(
        direct_again,
        "pod-addressed traffic still went to the waypoint"
    );
}
