//! Two meshes side by side on one host, as `quicmesh local up -f east -f
//! west` runs them: each its own trust domain, controller, CA, nodes and
//! pods, on connected networks; a pod of one reaches a pod of the other
//! at the IP it was pinned to, and the other's controller. No federation
//! yet: east's ztunnel passes traffic for an address it does not know
//! through, and west's admits it as plaintext (permissive mode).

use std::path::Path;
use std::time::Duration;

use quicmesh_e2e::{eventually, require_root};
use quicmesh_lab::local::{Cluster, LocalSpec, CONTROLLER_METRICS, LAB_CONFIG_FILE};

/// west's web pod, pinned to node2 of cluster 2 (pods 10.244.12.0/24).
const WEB_IP: &str = "10.244.12.200";

const EAST: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: front, labels: {quicmesh.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client, namespace: front}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: front}
spec:
  serviceAccountName: client
  containers: [{name: app}]
"#;

const WEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {quicmesh.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  annotations: {lab.quicmesh.io/ip: WEB_IP}
spec:
  nodeName: node2
  serviceAccountName: web
  containers:
  - name: web
    command: ["python3", "hello.py"]
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: misplaced
  namespace: shop
  annotations: {lab.quicmesh.io/ip: 10.244.1.200}
spec:
  serviceAccountName: web
  containers: [{name: app}]
"#;

fn write(dir: &Path, config: &str, manifests: &str) {
    std::fs::write(dir.join(LAB_CONFIG_FILE), config).unwrap();
    std::fs::write(dir.join("app.yaml"), manifests.replace("WEB_IP", WEB_IP)).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/demo/hello.py"),
        dir.join("hello.py"),
    )
    .unwrap();
}

/// Namespaces on the host named `<prefix>-*`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("{prefix}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// `curl` inside east's client pod.
fn curl(east: &Cluster, url: &str) -> Result<String, String> {
    let netns = &east.pod("front", "client").netns;
    east.lab
        .exec_timeout(
            netns,
            &["curl", "-sS", "--max-time", "10", url],
            Duration::from_secs(15),
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .map_err(|e| format!("{e:#}"))
}

/// The pods a cluster's ztunnel on `node` holds: (identity, svid state).
async fn enrolled(c: &Cluster, node: usize) -> Vec<(String, String)> {
    let dump = c.ztunnel_http(node, 15000, "/config_dump").await;
    let v: serde_json::Value = dump
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    v["enrolledPods"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("identity"), s("svid"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_of_one_mesh_reaches_a_pinned_pod_and_the_controller_of_another() {
    require_root();
    let (east_dir, west_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write(
        east_dir.path(),
        "{trustDomain: east.example, nodes: 1}\n",
        EAST,
    );
    write(
        west_dir.path(),
        "trustDomain: west.example\nnodes: 2\ncluster: 2\n",
        WEST,
    );
    let specs = vec![
        LocalSpec::from_dir(east_dir.path(), 2, 1).unwrap(),
        // Its config file says cluster 2, whatever its position.
        LocalSpec::from_dir(west_dir.path(), 2, 7).unwrap(),
    ];
    assert_eq!((specs[0].nodes, specs[0].cluster), (1, 1));
    assert_eq!((specs[1].nodes, specs[1].cluster), (2, 2));
    let mut clusters = Cluster::up_all(specs).await.unwrap();
    let west = clusters.pop().unwrap();
    let east = clusters.pop().unwrap();
    let prefixes = [east.lab.prefix().to_string(), west.lab.prefix().to_string()];

    // Each controller runs with its own trust domain: the bundle it
    // publishes to its proxies is of that domain only.
    assert_eq!(east.trust_domain(), "east.example");
    assert_eq!(west.trust_domain(), "west.example");
    assert_eq!(east.controller_ip().to_string(), "10.99.0.101");
    assert_eq!(west.controller_ip().to_string(), "10.99.0.111");
    for (c, mine, other) in [
        (&east, "east.example", "west.example"),
        (&west, "west.example", "east.example"),
    ] {
        let dump = c.controller_http("/config_dump").await.unwrap();
        let resources: serde_json::Value = serde_json::from_str(&dump).unwrap();
        let names: Vec<&String> = resources.as_object().unwrap().keys().collect();
        assert!(
            names.iter().any(|n| *n == &format!("bundle/{mine}")),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with("bundle/")
                && (n.ends_with(other) || n.ends_with("cluster.local"))),
            "{names:?}"
        );
    }

    // Each mesh's pods hold SVIDs of its own trust domain.
    let west_ids = eventually(Duration::from_secs(20), || async {
        enrolled(&west, 2).await
            == [(
                "spiffe://west.example/ns/shop/sa/web".to_string(),
                "ready".to_string(),
            )]
    })
    .await;
    assert!(west_ids, "{:?}", enrolled(&west, 2).await);
    assert_eq!(
        enrolled(&east, 1).await,
        [(
            "spiffe://east.example/ns/front/sa/client".to_string(),
            "ready".to_string()
        )]
    );

    // The pinned pod is where it asked to be; a pin outside its node's
    // CIDR is a manifest error and no pod.
    let web = west.pod("shop", "web");
    assert_eq!((web.node, web.ip.to_string()), (2, WEB_IP.to_string()));
    assert!(west.pods.keys().all(|k| k != "shop/misplaced"));
    assert!(
        west.errors.iter().any(|e| e.contains("Pod shop/misplaced")
            && e.contains("lab.quicmesh.io/ip")
            && e.contains("10.244.1.200 is not a pod address")),
        "{:?}",
        west.errors
    );

    // East's client calls west's web at its pinned IP.
    let url = format!("http://{WEB_IP}:8080/");
    let mut last = Err(String::new());
    let reached = eventually(Duration::from_secs(20), || {
        last = curl(&east, &url);
        std::future::ready(last.as_ref().is_ok_and(|b| b == "hello from shop/web\n"))
    })
    .await;
    assert!(reached, "{last:?}");
    // East's ztunnel passed it through (west's pods are no workloads of
    // east); west's admitted it as plaintext from east's pod IP.
    let client_ip = east.pod("front", "client").ip.to_string();
    let east_log = std::fs::read_to_string(east.ztunnel_log(1)).unwrap();
    assert!(
        east_log.lines().any(|l| l.contains("connection complete")
            && l.contains("path=\"passthrough\"")
            && l.contains(&format!("{WEB_IP}:8080"))
            && l.contains("spiffe://east.example/ns/front/sa/client")),
        "{east_log}"
    );
    let logged = eventually(Duration::from_secs(5), || {
        let log = std::fs::read_to_string(west.ztunnel_log(2)).unwrap_or_default();
        std::future::ready(log.lines().any(|l| {
            l.contains("connection complete")
                && l.contains("inbound_plaintext")
                && l.contains(&format!("src.addr={client_ip}:"))
                && l.contains("spiffe://west.example/ns/shop/sa/web")
        }))
    })
    .await;
    assert!(
        logged,
        "{}",
        std::fs::read_to_string(west.ztunnel_log(2)).unwrap_or_default()
    );

    // And west's controller, over TCP (its metrics port; the bundle
    // endpoint, 8443, is the federation's).
    let health = format!(
        "http://{}:{CONTROLLER_METRICS}/healthz/ready",
        west.controller_ip()
    );
    let mut last = Err(String::new());
    let reached = eventually(Duration::from_secs(10), || {
        last = curl(&east, &health);
        std::future::ready(last.is_ok())
    })
    .await;
    assert!(reached, "{last:?}");

    drop(east);
    drop(west);
    for p in &prefixes {
        assert!(
            namespaces_with(p).is_empty(),
            "{p}: {:?}",
            namespaces_with(p)
        );
    }
}
