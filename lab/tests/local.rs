//! `quicmesh_lab::local`: a cluster from manifests whose pods join the mesh
//! through the real CNI plugin and node agent, as in Kubernetes. Needs
//! root, and the controller, ztunnel and quicmesh-cni binaries beside the
//! test (`cargo build --bins`). Every wait is a poll with a deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use quicmesh_lab::local::{Cluster, LocalSpec};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "quicmesh-lab local tests create network namespaces and must run as root"
    );
}

fn manifests(dir: &Path, plain_ambient: bool, with_a: bool) {
    let plain = if plain_ambient {
        "{quicmesh.io/dataplane-mode: ambient}"
    } else {
        "{}"
    };
    let mut text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: mesh, labels: {{quicmesh.io/dataplane-mode: ambient}}}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {{name: plain, labels: {plain}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: b, namespace: plain}}\nspec: {{serviceAccountName: b, containers: [{{name: app}}]}}\n"
    );
    if with_a {
        text.push_str("---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: mesh}\nspec: {serviceAccountName: a, containers: [{name: app}]}\n");
    }
    let tmp = dir.join("cluster.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("cluster.yaml")).unwrap();
}

/// Pods enrolled in node1's ztunnel, as `namespace/name`.
async fn dumped(c: &Cluster) -> Vec<String> {
    let dump = c.ztunnel_http(1, 15000, "/config_dump").await.unwrap();
    quicmesh_lab::ztunnels::enrolled_pods(&serde_json::from_str(&dump).unwrap())
}

/// Reconciles until `done` holds (at most 30 s).
async fn reconcile_until(c: &mut Cluster, what: &str, done: impl Fn(&Cluster) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        c.reconcile().await.unwrap();
        if done(c) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_join_through_the_cni_plugin_follow_label_flips_and_survive_a_ztunnel_restart() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    manifests(dir.path(), false, true);
    let mut c = Cluster::up(LocalSpec::new(dir.path(), 1)).await.unwrap();

    // Up: the ambient pod is enrolled (with its SVID), the other is not.
    let a = c.pod("mesh", "a");
    assert!(
        a.enrolled && a.network_ready && !a.identity_pending,
        "{a:?}"
    );
    let b = c.pod("plain", "b");
    assert!(!b.enrolled && b.network_ready, "{b:?}");
    assert_eq!(dumped(&c).await, ["mesh/a"]);

    // The other namespace joins the mesh: its running pod is enrolled by
    // the agent, without a restart.
    manifests(dir.path(), true, true);
    reconcile_until(&mut c, "b enrolled", |c| c.pod("plain", "b").enrolled).await;
    assert_eq!(dumped(&c).await, ["mesh/a", "plain/b"]);

    // ztunnel restarts: the agent replays both.
    let pid = c.ztunnel_pid(1);
    c.restart_ztunnel(1).await.unwrap();
    assert_ne!(c.ztunnel_pid(1), pid);
    assert_eq!(dumped(&c).await, ["mesh/a", "plain/b"]);
    assert!(c.pods.values().all(|p| p.enrolled), "{:?}", c.pods);

    // A pod removed: DEL through the plugin, gone from ztunnel.
    manifests(dir.path(), true, false);
    reconcile_until(&mut c, "a removed", |c| !c.pods.contains_key("mesh/a")).await;
    assert_eq!(dumped(&c).await, ["plain/b"]);
    let log = std::fs::read_to_string(c.cni_agent_log(1)).unwrap();
    assert!(
        log.contains("deleted") && log.contains("pod=mesh/a"),
        "{log}"
    );
}
