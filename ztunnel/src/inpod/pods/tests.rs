//! The registry against real network namespaces (root: `unshare` and
//! `nft`): a pod is captured in the namespace whose descriptor it was
//! handed, follows a new one, and a snapshot sweeps only what it did not
//! add.

use super::*;
use std::sync::RwLock;

use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::certs::{CertManager, SvidSource};
use quicmesh_core::identity::TrustBundles;
use quicmesh_core::tunnel::config::TunnelSettings;
use quicmesh_core::tunnel::server::ServerCtx;

use crate::metrics::{Metrics, ReasonLabel};
use crate::state::State;

fn shared() -> Arc<Shared> {
    let ca = Ca::generate("cluster.local").unwrap();
    let mut bundles = TrustBundles::new();
    bundles
        .insert("cluster.local", &[ca.cert_der().clone()])
        .unwrap();
    let certs = CertManager::new(
        SvidSource::DevCa {
            ca: Box::new(ca),
            lifetime: Duration::from_secs(3600),
        },
        Arc::new(bundles),
    );
    let metrics = Arc::new(Metrics::default());
    let settings = TunnelSettings::default();
    Arc::new(Shared {
        node: "node1".into(),
        state: RwLock::new(Arc::new(State::empty("cluster.local"))),
        certs: Arc::new(certs),
        metrics: metrics.clone(),
        server: ServerCtx::new(metrics.tunnel.clone(), Arc::new(settings.clone())),
        settings,
        drain_deadline: Duration::from_millis(200),
        balancer: Arc::default(),
        live: Arc::default(),
        config_ready: quicmesh_core::health::Flag::ready(),
    })
}

/// A new, empty network namespace, made by a thread that leaves it at once.
fn fresh_netns() -> Netns {
    std::thread::spawn(|| {
        // SAFETY: unshare affects only this thread, which ends here.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "these tests need root (unshare(CLONE_NEWNET), nft): {}",
            std::io::Error::last_os_error()
        );
        Netns::current().unwrap()
    })
    .join()
    .unwrap()
}

fn pod(uid: &str) -> Pod {
    Pod {
        uid: uid.into(),
        namespace: "demo".into(),
        name: uid.into(),
        service_account: "sa".into(),
        ips: vec!["10.244.1.2".into()],
    }
}

/// Inside `netns`: whether something listens on 15001/tcp, and whether
/// ztunnel's nftables table is there.
async fn captured(netns: &Netns) -> (bool, bool) {
    let w = NetnsWorker::enter(netns, "probe").unwrap();
    w.run(|| {
        // The thread's own view: its network namespace's sockets.
        let tcp = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap();
        let port = format!(":{OUTBOUND_PORT:04X}");
        let listening = tcp.lines().skip(1).any(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            f[1].ends_with(&port) && f[3] == "0A"
        });
        let table = std::process::Command::new("nft")
            .args(["list", "table", "inet", rules::TABLE])
            .output()
            .expect("nft")
            .status
            .success();
        (listening, table)
    })
    .await
    .unwrap()
}

fn held(pods: &Pods, uid: &str) -> Option<quicmesh_core::netns::NetnsId> {
    pods.running
        .try_lock()
        .unwrap()
        .get(uid)
        .map(|r| r.netns.id())
}

#[tokio::test]
async fn a_pod_is_captured_in_the_namespace_it_was_handed_and_follows_a_new_one() {
    let pods = Pods::new(shared());
    let (a, b) = (fresh_netns(), fresh_netns());
    pods.add(pod("p"), a.try_clone().unwrap(), Grace::Skip)
        .await
        .unwrap();
    assert_eq!(captured(&a).await, (true, true));
    assert_eq!(captured(&b).await, (false, false));
    assert_eq!(held(&pods, "p"), Some(a.id()));
    let dump = pods.dump().await;
    assert_eq!(dump[0]["netns"], a.id().to_string());

    // Another descriptor of the same namespace: nothing changes.
    pods.add(pod("p"), a.try_clone().unwrap(), Grace::Skip)
        .await
        .unwrap();
    assert_eq!(captured(&a).await, (true, true));

    // Another namespace: the pod is re-enrolled there, and nothing stays
    // behind in the first.
    pods.add(pod("p"), b.try_clone().unwrap(), Grace::Skip)
        .await
        .unwrap();
    assert_eq!(held(&pods, "p"), Some(b.id()));
    assert_eq!(captured(&b).await, (true, true));
    assert_eq!(captured(&a).await, (false, false));

    pods.remove("p").await.unwrap();
    assert_eq!(captured(&b).await, (false, false));
    assert_eq!(held(&pods, "p"), None);
}

#[tokio::test]
async fn a_snapshot_sweeps_only_the_pods_not_added_since_it_began() {
    let pods = Pods::new(shared());
    let (a, b, c) = (fresh_netns(), fresh_netns(), fresh_netns());
    for (uid, ns) in [("a", &a), ("b", &b)] {
        pods.add(pod(uid), ns.try_clone().unwrap(), Grace::Skip)
            .await
            .unwrap();
    }
    let mark = pods.mark();
    // The snapshot re-adds b; c arrives meanwhile (the CNI plugin).
    pods.add(pod("b"), b.try_clone().unwrap(), Grace::Skip)
        .await
        .unwrap();
    pods.add(pod("c"), c.try_clone().unwrap(), Grace::Wait)
        .await
        .unwrap();
    pods.sweep(mark, vec!["b".into()]).await.unwrap();
    assert_eq!(held(&pods, "a"), None);
    assert_eq!(captured(&a).await, (false, false));
    assert_eq!(held(&pods, "b"), Some(b.id()));
    assert_eq!(held(&pods, "c"), Some(c.id()));
    assert_eq!(captured(&c).await, (true, true));
    pods.shutdown().await;
}

#[test]
fn refusals_are_counted_by_reason() {
    let s = shared();
    let pods = Pods::new(s.clone());
    pods.refused(Refusal::PeerUid);
    pods.refused(Refusal::PeerUid);
    pods.refused(Refusal::Descriptors);
    let count = |r: &str| {
        s.metrics
            .enrollment_refusals
            .get_or_create(&ReasonLabel { reason: r.into() })
            .get()
    };
    assert_eq!(count("peer_uid"), 2);
    assert_eq!(count("descriptors"), 1);
}
