//! CA rotation under load, end to end: a client pod on node 1 talks to a
//! server pod on node 2 for the whole rotation (one long-lived connection
//! and a new connection per request, every answer checked) while the
//! three stages of `quicmesh ca rotate` run on the controller's CA
//! directory: add a new root (its intermediate signs, the root stays
//! offline), switch to the intermediate, drop the old root. Not one
//! request may fail; every SVID the ztunnels hold ends up chaining to the
//! new root alone; traffic still flows once the old root is gone.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quicmesh_core::identity::ca::{fingerprint, Ca};
use quicmesh_core::identity::svid::{certs_from_pem, TrustBundles};
use quicmesh_core::identity::verify::{verify_peer_chain, Side};
use quicmesh_e2e::{app, connect_from, eventually, require_root};
use quicmesh_lab::local::{Cluster, LocalSpec};
use quicmesh_lab::mesh::sum_metric;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

const TD: &str = "cluster.local";
const PORT: u16 = 7000;
/// Short-lived SVIDs: renewed every 10 s, so the switch reaches every
/// SVID, and the old root can go, within the test.
const SVID_TTL: Duration = Duration::from_secs(20);

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: demo, labels: {quicmesh.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: demo}
spec:
  serviceAccountName: client
  containers: [{name: app}]
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: demo}
spec:
  serviceAccountName: server
  containers: [{name: app}]
"#;

/// Requests that were answered right, and what went wrong with the others.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
}

/// One request on `conn`: a line out, the same line back.
async fn ask(conn: &mut BufReader<tokio::net::TcpStream>, line: &str) -> std::io::Result<bool> {
    conn.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await?;
    let mut back = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_line(&mut back))
        .await
        .map_err(|_| std::io::Error::other("no answer within 10 s"))??;
    Ok(back.trim_end() == line)
}

/// The load: a long-lived connection and new connections, each asking in
/// a loop (bounded: a request every 20 ms per loop) until `stop`.
fn load(cluster: &Cluster, to: SocketAddr, stop: CancellationToken) -> (Arc<Tally>, Arc<Tally>) {
    let netns = cluster.pod("demo", "client").netns.clone();
    let (long, fresh) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let (t, s, ns) = (long.clone(), stop.clone(), netns.clone());
    tokio::spawn(async move {
        let w =
            quicmesh_core::netns::NetnsWorker::start(&quicmesh_lab::Lab::netns_path(&ns)).unwrap();
        let mut conn = match connect_from(&w, to).await {
            Ok(c) => BufReader::new(c),
            Err(e) => return t.fail(format!("long-lived connect: {e:#}")),
        };
        let mut n = 0u64;
        while !s.is_cancelled() {
            n += 1;
            match ask(&mut conn, &format!("long {n}")).await {
                Ok(true) => t.ok.fetch_add(1, Ordering::Relaxed),
                Ok(false) => return t.fail(format!("long {n}: wrong answer")),
                Err(e) => return t.fail(format!("long {n}: {e}")),
            };
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let (t, s) = (fresh.clone(), stop);
    tokio::spawn(async move {
        let w = quicmesh_core::netns::NetnsWorker::start(&quicmesh_lab::Lab::netns_path(&netns))
            .unwrap();
        let mut n = 0u64;
        while !s.is_cancelled() {
            n += 1;
            let r = async {
                let mut c =
                    BufReader::new(connect_from(&w, to).await.map_err(std::io::Error::other)?);
                ask(&mut c, &format!("new {n}")).await
            }
            .await;
            match r {
                Ok(true) => {
                    t.ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false) => t.fail(format!("new {n}: wrong answer")),
                Err(e) => t.fail(format!("new {n}: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    (long, fresh)
}

/// Runs `quicmesh ca rotate` on the cluster's CA directory.
fn rotate(cluster: &Cluster, stage: &str, from: Option<&Path>) {
    let bin = quicmesh_lab::ztunnels::find_binary("quicmesh").unwrap();
    let dir = cluster.ca_dir();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["ca", "rotate", "--ca-dir"])
        .arg(&dir)
        .args(["--stage", stage]);
    if let Some(f) = from {
        cmd.arg("--from").arg(f);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "quicmesh ca rotate --stage {stage}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stage}: {}", String::from_utf8_lossy(&out.stdout));
}

/// The controller's CA state (/status).
async fn ca_status(cluster: &Cluster) -> serde_json::Value {
    let s = cluster.controller_http("/status").await.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&s).unwrap_or_default()["ca"].clone()
}

/// Whether every SVID `node`'s ztunnel holds verifies against `root`
/// alone (and it holds some).
async fn svids_chain_to(cluster: &Cluster, node: usize, root: &Ca) -> bool {
    let Ok(dump) = cluster.ztunnel_http(node, 15000, "/certs").await else {
        return false;
    };
    let Ok(held) = serde_json::from_str::<Vec<serde_json::Value>>(&dump) else {
        return false;
    };
    let mut only = TrustBundles::new();
    only.insert(TD, &[root.cert_der().clone()]).unwrap();
    let algs = quicmesh_core::crypto_provider().signature_verification_algorithms;
    !held.is_empty()
        && held.iter().all(|s| {
            let chain = certs_from_pem(s["chainPem"].as_str().unwrap_or("").as_bytes(), "dump")
                .unwrap_or_default();
            !chain.is_empty()
                && verify_peer_chain(
                    &only,
                    &chain[0],
                    &chain[1..],
                    rustls::pki_types::UnixTime::now(),
                    Side::Server,
                    &algs,
                )
                .is_ok()
        })
}

/// Whether `node`'s ztunnel installed a bundle of `roots` roots from the
/// config stream.
fn streamed(cluster: &Cluster, node: usize, roots: usize) -> bool {
    std::fs::read_to_string(cluster.ztunnel_log(node))
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.contains("trust bundle replaced from the config stream")
                && l.contains(&format!("roots={roots}"))
        })
}

/// Waits, bounded, for `what`; fails the test with the logs otherwise.
async fn wait<F, Fut>(cluster: &Cluster, what: &str, timeout: Duration, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !eventually(timeout, f).await {
        let log = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        panic!(
            "timed out waiting for {what}\ncontroller:\n{}\nztunnel 1:\n{}",
            log(cluster.controller_log()),
            log(cluster.ztunnel_log(1))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_rotates_under_load_without_a_failed_request() {
    require_root();
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(manifests.path().join("demo.yaml"), MANIFESTS).unwrap();
    let mut spec = LocalSpec::new(manifests.path(), 2);
    spec.svid_ttl = SVID_TTL;
    let cluster = Cluster::up(spec).await.unwrap();
    let (client, server) = (cluster.pod("demo", "client"), cluster.pod("demo", "server"));
    assert_ne!(client.node, server.node, "the pods share a node");
    let old = Ca::load(TD, &cluster.ca_dir()).unwrap();

    // The server: echoes each line.
    let w = quicmesh_core::netns::NetnsWorker::start(&quicmesh_lab::Lab::netns_path(&server.netns))
        .unwrap();
    app(&w, PORT, |s| async move {
        let (r, mut wr) = s.into_split();
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if wr.write_all(format!("{l}\n").as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
    .unwrap();
    let to = SocketAddr::from((server.ip, PORT));
    let stop = CancellationToken::new();
    let (long, fresh) = load(&cluster, to, stop.clone());
    let flowing = |n: u64| {
        let (long, fresh) = (long.clone(), fresh.clone());
        let (l0, f0) = (long.ok(), fresh.ok());
        move || {
            let (long, fresh) = (long.clone(), fresh.clone());
            async move { long.ok() >= l0 + n && fresh.ok() >= f0 + n }
        }
    };
    wait(
        &cluster,
        "traffic before the rotation",
        Duration::from_secs(30),
        flowing(20),
    )
    .await;

    // The next CA: an intermediate of a new root kept offline (only its
    // certificate leaves this test: in roots.pem and ca-chain.pem).
    let new_root = Ca::generate(TD).unwrap();
    let next = new_root
        .issue_intermediate(Duration::from_secs(30 * 86400))
        .unwrap();
    let next_dir = tempfile::tempdir().unwrap();
    next.save(next_dir.path()).unwrap();

    // (a) add the new root: every proxy gets both.
    rotate(&cluster, "add-root", Some(next_dir.path()));
    for node in [1, 2] {
        wait(
            &cluster,
            "both roots at a ztunnel",
            Duration::from_secs(30),
            || async { streamed(&cluster, node, 2) },
        )
        .await;
    }
    wait(
        &cluster,
        "traffic after add-root",
        Duration::from_secs(30),
        flowing(20),
    )
    .await;

    // (b) switch: new SVIDs come from the intermediate, chained to the new
    // root; old ones are renewed at half-life.
    rotate(&cluster, "switch", None);
    let signer = fingerprint(next.cert_der());
    wait(
        &cluster,
        "the new signer",
        Duration::from_secs(30),
        || async { ca_status(&cluster).await["signer"] == signer.as_str() },
    )
    .await;
    for node in [1, 2] {
        wait(&cluster, "every SVID from the new CA", SVID_TTL * 2, || {
            svids_chain_to(&cluster, node, &new_root)
        })
        .await;
    }
    wait(
        &cluster,
        "traffic after switch",
        Duration::from_secs(30),
        flowing(20),
    )
    .await;

    // (c) drop the old root: retired once no SVID of it is valid.
    rotate(&cluster, "drop-old", None);
    let new_fp = fingerprint(new_root.cert_der());
    wait(&cluster, "the old root retired", SVID_TTL * 2, || async {
        ca_status(&cluster).await["roots"] == serde_json::json!([new_fp.as_str()])
    })
    .await;
    for node in [1, 2] {
        wait(
            &cluster,
            "one root at a ztunnel",
            Duration::from_secs(30),
            || async { streamed(&cluster, node, 1) },
        )
        .await;
    }
    wait(
        &cluster,
        "traffic after drop-old",
        Duration::from_secs(30),
        flowing(20),
    )
    .await;
    // A new pair of SVIDs after the drop (half-life renewal) still works.
    let renewed = ca_status(&cluster).await;
    eprintln!("CA after the rotation: {renewed}");
    wait(&cluster, "traffic across a renewal", SVID_TTL, flowing(200)).await;
    stop.cancel();

    let failures: Vec<String> = [&long, &fresh]
        .iter()
        .flat_map(|t| t.failures.lock().unwrap().clone())
        .collect();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    eprintln!(
        "requests answered: {} on the long-lived connection, {} on new ones",
        long.ok(),
        fresh.ok()
    );
    for node in [1, 2] {
        let m = cluster.ztunnel_http(node, 15020, "/metrics").await.unwrap();
        assert_eq!(
            sum_metric(&m, "quicmesh_tls_refusals_total", &[]),
            0.0,
            "node{node} refused peer certificates:\n{m}"
        );
    }
    assert_ne!(old.cert_der(), next.cert_der());
}
