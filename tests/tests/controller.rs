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
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo/hello.py"), dir.join("hello.py")).unwrap();
    write_server(dir, replicas);
    std::fs::write(dir.join("client.yaml"), CLIENT).unwrap();
}

fn write_server(dir: &Path, replicas: u32) {
    std::fs::write(dir.join("server.yaml"), SERVER.replace("REPLICAS", &replicas.to_string())).unwrap();
}

/// One HTTP GET to the web Service's VIP from the client pod; the body.
async fn get(cluster: &Cluster, w: &quicmesh_core::netns::NetnsWorker) -> anyhow::Result<String> {
    let vip = SocketAddr::new(cluster.vip("shop", "web"), 80);
    let mut s = tokio::time::timeout(Duration::from_secs(5), connect_from(w, vip)).await??;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await??;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string()).unwrap_or_default();
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
async fn replicas_seen(cluster: &Cluster, w: &quicmesh_core::netns::NetnsWorker, n: usize) -> BTreeSet<String> {
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
    let w = quicmesh_core::netns::NetnsWorker::start(&quicmesh_lab::Lab::netns_path(&cluster.pod("front", "client").netns)).unwrap();
    let seen = replicas_seen(&cluster, &w, 2).await;
    assert_eq!(
        seen,
        ["hello from shop/web-0".to_string(), "hello from shop/web-1".to_string()].into(),
        "the VIP did not reach both replicas"
    );
    // Both went through the tunnel with the controller-issued identities.
    let log = std::fs::read_to_string(cluster.ztunnel_log(cluster.pod("front", "client").node)).unwrap();
    assert!(
        log.lines().any(|l| l.contains("path=\"tunnel\"")
            && l.contains("spiffe://cluster.local/ns/front/sa/client")
            && l.contains("spiffe://cluster.local/ns/shop/sa/web")),
        "{log}"
    );
}
