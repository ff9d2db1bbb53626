//! The controller end to end: a cluster built from ordinary manifests, SVIDs
//! from the controller's CA, config streamed to ztunnels, Services by VIP.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use quicmesh_e2e::{connect_from, eventually, require_root};
use quicmesh_lab::local::{Cluster, LocalSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {quicmesh.io/dataplane-mode: ambient}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: REPLICAS
  template:
    metadata: {labels: {app: web}}
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
  ports: [{name: http, port: 80, targetPort: http}]
"#;

const CLIENT: &str = r#"
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

fn manifests(dir: &Path, replicas: u32) {
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo/hello.py"),
        dir.join("hello.py"),
    )
    .unwrap();
    write_server(dir, replicas);
    std::fs::write(dir.join("client.yaml"), CLIENT).unwrap();
}

fn write_server(dir: &Path, replicas: u32) {
    std::fs::write(
        dir.join("server.yaml"),
        SERVER.replace("REPLICAS", &replicas.to_string()),
    )
    .unwrap();
}

/// One HTTP GET to the web Service's VIP from the client pod; the body.
async fn get(cluster: &Cluster, w: &quicmesh_core::netns::NetnsWorker) -> anyhow::Result<String> {
    let vip = SocketAddr::new(cluster.vip("shop", "web"), 80);
    let mut s = tokio::time::timeout(Duration::from_secs(5), connect_from(w, vip)).await??;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await??;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    anyhow::ensure!(out.starts_with("HTTP/1.0 200"), "bad response: {out}");
    Ok(body)
}

async fn start(replicas: u32, tweak: impl FnOnce(&mut LocalSpec)) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), replicas);
    let mut spec = LocalSpec::new(dir.path(), 2);
    tweak(&mut spec);
    let cluster = Cluster::up(spec).await.unwrap();
    (cluster, dir)
}

/// Waits until `n` distinct replicas have answered through the VIP.
async fn replicas_seen(
    cluster: &Cluster,
    w: &quicmesh_core::netns::NetnsWorker,
    n: usize,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        if let Ok(body) = get(cluster, w).await {
            seen.insert(body);
        }
        if seen.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_vip_spreads_over_replicas_on_different_nodes() {
    require_root();
    let (cluster, _dir) = start(2, |_| {}).await;
    let (a, b) = (cluster.pod("shop", "web-0"), cluster.pod("shop", "web-1"));
    assert_ne!(a.node, b.node, "replicas were not spread over the nodes");
    let w = quicmesh_core::netns::NetnsWorker::start(&quicmesh_lab::Lab::netns_path(
        &cluster.pod("front", "client").netns,
    ))
    .unwrap();
    let seen = replicas_seen(&cluster, &w, 2).await;
    assert_eq!(
        seen,
        [
            "hello from shop/web-0".to_string(),
            "hello from shop/web-1".to_string()
        ]
        .into(),
        "the VIP did not reach both replicas"
    );
    // Both went through the tunnel with the controller-issued identities.
    let log =
        std::fs::read_to_string(cluster.ztunnel_log(cluster.pod("front", "client").node)).unwrap();
    assert!(
        log.lines().any(|l| l.contains("path=\"tunnel\"")
            && l.contains("spiffe://cluster.local/ns/front/sa/client")
            && l.contains("spiffe://cluster.local/ns/shop/sa/web")),
        "{log}"
    );
}

fn worker_of(cluster: &Cluster, ns: &str, name: &str) -> quicmesh_core::netns::NetnsWorker {
    quicmesh_core::netns::NetnsWorker::start(&quicmesh_lab::Lab::netns_path(
        &cluster.pod(ns, name).netns,
    ))
    .unwrap()
}

/// Runs requests through the VIP one after another until stopped; counts
/// (ok, failed) and remembers the failures.
fn request_loop(
    cluster: &Cluster,
    w: quicmesh_core::netns::NetnsWorker,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<(u32, Vec<String>)>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let vip = SocketAddr::new(cluster.vip("shop", "web"), 80);
    let s2 = stop.clone();
    let h = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        while !s2.is_cancelled() {
            let r = async {
                let mut s =
                    tokio::time::timeout(Duration::from_secs(5), connect_from(&w, vip)).await??;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
                let mut out = String::new();
                tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await??;
                anyhow::ensure!(out.starts_with("HTTP/1.0 200"), "bad response {out:?}");
                anyhow::Ok(())
            }
            .await;
            match r {
                Ok(()) => ok += 1,
                Err(e) => failed.push(format!("{e:#}")),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (ok, failed)
    });
    (stop, h)
}

/// Reconciles for `d` (the lab's kubelet/scheduler loop).
async fn reconcile_for(cluster: &mut Cluster, d: Duration) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        cluster.reconcile().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_in_the_manifests_adds_and_drains_endpoints() {
    require_root();
    let (mut cluster, dir) = start(2, |_| {}).await;
    let w = worker_of(&cluster, "front", "client");
    assert_eq!(replicas_seen(&cluster, &w, 2).await.len(), 2);

    // Scale up: the new replica gets traffic within a bounded time.
    write_server(dir.path(), 3);
    reconcile_for(&mut cluster, Duration::from_secs(2)).await;
    assert!(cluster.pod("shop", "web-2").ready, "web-2 never listened");
    let seen = replicas_seen(&cluster, &w, 3).await;
    assert!(
        seen.contains("hello from shop/web-2"),
        "web-2 never answered: {seen:?}"
    );

    // Scale down under continuous traffic: no request fails.
    let (stop, h) = request_loop(&cluster, w.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    write_server(dir.path(), 1);
    reconcile_for(&mut cluster, Duration::from_secs(4)).await;
    assert_eq!(
        cluster
            .pods
            .keys()
            .filter(|k| k.starts_with("shop/"))
            .count(),
        1,
        "pods left: {:?}",
        cluster.pods.keys()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let (ok, failed) = h.await.unwrap();
    assert!(ok > 20, "only {ok} requests went through");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during scale-down: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    let seen = replicas_seen(&cluster, &w, 1).await;
    assert_eq!(seen, ["hello from shop/web-0".to_string()].into());

    // Scaled to zero: a connection to the VIP is reset at once (not left to
    // time out), and the reason is counted.
    write_server(dir.path(), 0);
    reconcile_for(&mut cluster, Duration::from_secs(4)).await;
    let err = get(&cluster, &w)
        .await
        .expect_err("a VIP without endpoints answered");
    let reset = err
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::ConnectionReset);
    assert!(reset, "expected a reset, got: {err:#}");
    let node = cluster.pod("front", "client").node;
    let m = cluster.ztunnel_http(node, 15020, "/metrics").await.unwrap();
    let refused = quicmesh_lab::mesh::sum_metric(
        &m,
        "quicmesh_ztunnel_connection_refusals_total",
        &[("reason", "no_endpoint")],
    );
    assert!(refused >= 1.0, "{m}");
}

/// ztunnel's view of the mesh, without the version (which a restarted
/// controller counts afresh).
async fn mesh_view(cluster: &Cluster, node: usize) -> serde_json::Value {
    let dump: serde_json::Value = serde_json::from_str(
        &cluster
            .ztunnel_http(node, 15000, "/config_dump")
            .await
            .unwrap(),
    )
    .unwrap();
    let mut state = dump["state"].clone();
    state.as_object_mut().unwrap().remove("version");
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_keeps_working_without_the_controller_and_resyncs_after() {
    require_root();
    let (mut cluster, _dir) = start(2, |_| {}).await;
    let w = worker_of(&cluster, "front", "client");
    assert_eq!(replicas_seen(&cluster, &w, 2).await.len(), 2);
    let before = (mesh_view(&cluster, 1).await, mesh_view(&cluster, 2).await);
    assert!(
        before.0["workloads"].as_array().unwrap().len() >= 3,
        "{}",
        before.0
    );

    // An open connection, across the outage.
    let vip = SocketAddr::new(cluster.vip("shop", "web"), 80);
    let mut held = connect_from(&w, vip).await.unwrap();

    cluster.stop_controller().unwrap();
    let down = eventually(Duration::from_secs(10), || async {
        quicmesh_lab::mesh::sum_metric(
            &cluster.ztunnel_http(1, 15020, "/metrics").await.unwrap(),
            "quicmesh_ztunnel_config_connected",
            &[],
        ) == 0.0
    })
    .await;
    assert!(down, "ztunnel did not notice the controller going away");
    let (stop, h) = request_loop(&cluster, w.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let (ok, failed) = h.await.unwrap();
    assert!(
        ok > 5 && failed.is_empty(),
        "without the controller: {ok} ok, failed: {failed:?}"
    );
    held.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    held.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");

    cluster.start_controller().unwrap();
    for node in [1, 2] {
        let up = eventually(Duration::from_secs(20), || async {
            quicmesh_lab::mesh::sum_metric(
                &cluster.ztunnel_http(node, 15020, "/metrics").await.unwrap(),
                "quicmesh_ztunnel_config_connected",
                &[],
            ) == 1.0
        })
        .await;
        assert!(up, "node{node} did not reconnect");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = (mesh_view(&cluster, 1).await, mesh_view(&cluster, 2).await);
    assert_eq!(before, after, "config after the controller restart differs");
    // The held connection keeps its replica busy, and least-loaded picking
    // avoids it: close it before checking both replicas answer.
    drop(held);
    assert_eq!(replicas_seen(&cluster, &w, 2).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_get_certificates_for_pods_of_another_node() {
    require_root();
    let (cluster, _dir) = start(2, |_| {}).await;
    let client_node = cluster.pod("front", "client").node;
    let other = if client_node == 1 { 2 } else { 1 };
    let token = std::fs::read_to_string(cluster.dir.join(format!("token-n{other}"))).unwrap();
    let mut bundles = quicmesh_core::identity::TrustBundles::new();
    bundles
        .insert_pem(
            "cluster.local",
            &std::fs::read(cluster.dir.join("ca/ca.pem")).unwrap(),
        )
        .unwrap();
    let c = std::sync::Arc::new(quicmesh_core::control::client::ControllerClient {
        addr: SocketAddr::from((
            quicmesh_lab::local::CONTROLLER_IP,
            quicmesh_lab::local::CONTROLLER_GRPC,
        ))
        .into(),
        identity: quicmesh_core::identity::SpiffeId::workload(
            "cluster.local",
            "quicmesh-system",
            "controller",
        )
        .unwrap(),
        bundles: bundles.into(),
        token: quicmesh_core::control::client::Token::Fixed(token.trim().to_string()),
        node: format!("node{other}"),
        tls_metrics: Default::default(),
    });
    // Run the client from inside the other node's network namespace.
    let w = quicmesh_core::netns::NetnsWorker::start(&quicmesh_lab::Lab::netns_path(
        &cluster.lab.node(other).netns,
    ))
    .unwrap();
    let (c2, c3) = (c.clone(), c.clone());
    let on_node = move |f: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<quicmesh_core::identity::Svid, String>> + Send>,
    >| {
        move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f)
        }
    };
    let theirs =
        quicmesh_core::identity::SpiffeId::workload("cluster.local", "front", "client").unwrap();
    let refused = w
        .run(on_node(Box::pin(
            async move { c2.sign(&theirs, None).await },
        )))
        .await
        .unwrap();
    let e = refused.expect_err("a CSR for another node's pod was signed");
    assert!(
        e.contains("permission")
            || e.contains("PermissionDenied")
            || e.contains("not have permission"),
        "{e}"
    );
    assert!(e.contains("front/sa/client"), "{e}");
    // Its own node identity is fine.
    let own = c3.node_identity();
    let granted = w
        .run(on_node(Box::pin(async move { c3.sign(&own, None).await })))
        .await
        .unwrap();
    assert!(granted.is_ok(), "{granted:?}");
    let log = std::fs::read_to_string(cluster.controller_log()).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("CSR refused") && l.contains("front/sa/client")),
        "{log}"
    );
    let m = cluster.controller_http("/metrics").await.unwrap();
    assert!(
        quicmesh_lab::mesh::sum_metric(
            &m,
            "quicmesh_ca_requests_total",
            &[("result", "denied"), ("reason", "not_authorized")]
        ) >= 1.0,
        "{m}"
    );
    // The mesh's config is not served to the network: /status and
    // /config_dump are on the controller's loopback only (the lab reads them
    // from inside its namespace), not on the metrics port.
    let from_node = |port: u16, path: &'static str| {
        quicmesh_lab::mesh::netns_http_get(
            &cluster.lab.node(other).netns,
            SocketAddr::from((quicmesh_lab::local::CONTROLLER_IP, port)),
            path,
        )
    };
    assert!(
        from_node(15000, "/status").await.is_err(),
        "admin port reachable"
    );
    for path in ["/status", "/config_dump"] {
        let body = from_node(quicmesh_lab::local::CONTROLLER_METRICS, path)
            .await
            .unwrap();
        assert!(
            !body.contains("proxies") && !body.contains("workload/"),
            "{path}: {body}"
        );
    }
    assert!(cluster
        .controller_http("/status")
        .await
        .unwrap()
        .contains("proxies"));
    // The config dump is the resources as JSON (the protobuf JSON
    // mapping): a workload with its fields, by name.
    let dump: serde_json::Value =
        serde_json::from_str(&cluster.controller_http("/config_dump").await.unwrap()).unwrap();
    let workload = dump
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("workload/"))
        .map(|(_, v)| v["workload"].clone())
        .unwrap_or_else(|| panic!("no workload in the dump: {dump}"));
    assert!(
        workload["namespace"].is_string()
            && workload["serviceAccount"].is_string()
            && workload["ips"]
                .as_array()
                .is_some_and(|ips| !ips.is_empty()),
        "{workload}"
    );
    assert_eq!(
        from_node(quicmesh_lab::local::CONTROLLER_METRICS, "/healthz/ready")
            .await
            .unwrap(),
        "ready\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_svids_rotate_under_traffic_without_failures() {
    require_root();
    let (cluster, _dir) = start(2, |s| s.svid_ttl = Duration::from_secs(6)).await;
    let w = worker_of(&cluster, "front", "client");
    assert_eq!(replicas_seen(&cluster, &w, 2).await.len(), 2);
    let (stop, h) = request_loop(&cluster, w);
    // Several lifetimes: renewals at half-life, every 3 s.
    tokio::time::sleep(Duration::from_secs(16)).await;
    stop.cancel();
    let (ok, failed) = h.await.unwrap();
    assert!(ok > 50, "only {ok} requests");
    assert!(
        failed.is_empty(),
        "failures across SVID renewals: {failed:?}"
    );
    for node in [1, 2] {
        let m = cluster.ztunnel_http(node, 15020, "/metrics").await.unwrap();
        let fetched = quicmesh_lab::mesh::sum_metric(
            &m,
            "quicmesh_ztunnel_svid_fetches_total",
            &[("result", "ok")],
        );
        assert!(
            fetched >= 6.0,
            "node{node} fetched only {fetched} SVIDs in 16 s with a 6 s lifetime"
        );
        let log = std::fs::read_to_string(cluster.ztunnel_log(node)).unwrap();
        assert!(
            log.contains("tunnel server certificate rotated"),
            "node{node} never rotated"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_outside_ambient_namespaces_are_not_captured_and_bad_manifests_are_reported() {
    require_root();
    let (mut cluster, dir) = start(1, |_| {}).await;
    std::fs::write(
        dir.path().join("plain.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: plain}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: outsider, namespace: plain}\nspec: {containers: [{name: app}]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: shop}\nspec:\n  ports: [{port: 99999}]\n",
    )
    .unwrap();
    // The web replica is up before anything else happens.
    let w = worker_of(&cluster, "front", "client");
    assert_eq!(replicas_seen(&cluster, &w, 1).await.len(), 1);
    let errors = cluster.reconcile().await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("broken.yaml") && errors[0].contains("spec.ports[0].port"),
        "{}",
        errors[0]
    );

    let outsider = cluster.pod("plain", "outsider");
    assert!(!outsider.enrolled);
    let rules = cluster.lab.exec(
        &outsider.netns,
        &["nft", "list", "table", "inet", "quicmesh"],
    );
    assert!(rules.is_err(), "a pod outside the mesh got capture rules");
    // Its connections leave as plain TCP (the web pod's plaintext port accepts them).
    let node = outsider.node;
    cluster
        .lab
        .add_link_counter(node, "plain8080", "tcp dport 8080")
        .unwrap();
    let web = cluster.pod("shop", "web-0");
    let target = SocketAddr::new(web.ip.into(), 8080);
    let ow = worker_of(&cluster, "plain", "outsider");
    let mut s = connect_from(&ow, target).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("hello from shop/web-0"), "{out}");
    if web.node != node {
        assert!(cluster.lab.link_counter(node, "plain8080").unwrap().0 > 0);
    }
    // The mesh still works despite the broken manifest.
    assert_eq!(
        get(&cluster, &w).await.unwrap().split('/').next(),
        Some("hello from shop")
    );

    // HTTPRoutes get the status a Gateway API controller writes, each on
    // its own: a good one, one naming a missing backend, one with a filter
    // quicmesh does not implement, and one of another group (ignored).
    std::fs::write(dir.path().join("routes.yaml"), ROUTES).unwrap();
    let errors = cluster.reconcile().await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let conditions = |status: &serde_json::Value, name: &str| -> Vec<(String, bool, String)> {
        let routes = status["httpRoutes"].as_array().cloned().unwrap_or_default();
        routes
            .iter()
            .filter(|r| r["name"] == name)
            .flat_map(|r| {
                r["parents"][0]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|c| {
                (
                    c["type"].as_str().unwrap_or_default().to_string(),
                    c["status"].as_bool().unwrap_or_default(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let c = |t: &str, s: bool, r: &str| (t.to_string(), s, r.to_string());
    let want = [
        (
            "split",
            vec![
                c("Accepted", true, "Accepted"),
                c("ResolvedRefs", true, "ResolvedRefs"),
            ],
        ),
        (
            "missing-backend",
            vec![
                c("Accepted", true, "Accepted"),
                c("ResolvedRefs", false, "BackendNotFound"),
            ],
        ),
        ("cors", vec![c("Accepted", false, "UnsupportedValue")]),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status: serde_json::Value =
            serde_json::from_str(&cluster.controller_http("/status").await.unwrap()).unwrap();
        if want.iter().all(|(name, w)| conditions(&status, name) == *w) {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "route status not as expected: {:#}",
            status["httpRoutes"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let routes = status["httpRoutes"].as_array().unwrap();
    assert_eq!(routes.len(), 3, "{routes:?}");
    // Counted by state, and each refusal logged with its reason.
    let m = cluster.controller_http("/metrics").await.unwrap();
    for (state, n) in [
        ("accepted", 1.0),
        ("unresolved_refs", 1.0),
        ("not_accepted", 1.0),
    ] {
        let got = quicmesh_lab::mesh::sum_metric(
            &m,
            "quicmesh_controller_http_routes",
            &[("state", state)],
        );
        assert_eq!(got, n, "{state}");
    }
    let log = std::fs::read_to_string(cluster.controller_log()).unwrap();
    for reason in ["UnsupportedValue", "BackendNotFound"] {
        assert!(
            log.lines().any(|l| l.contains("route not fully usable")
                && l.contains("kind=\"HTTPRoute\"")
                && l.contains(reason)),
            "no log line for {reason}"
        );
    }
}

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web, port: 80, weight: 90}, {name: web, port: 80, weight: 10}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing-backend, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - backendRefs: [{name: web-canary, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cors, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - filters: [{type: CORS, cors: {allowOrigins: ["*"]}}]
    backendRefs: [{name: web, port: 80}]
---
apiVersion: example.com/v1
kind: HTTPRoute
metadata: {name: not-ours, namespace: shop}
spec: {}
"#;
