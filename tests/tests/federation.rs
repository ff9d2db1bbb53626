//! Two federated meshes, as `quicmesh local up -f examples/federation/east
//! -f examples/federation/west` runs them (the example's own files, copied
//! so the test can take parts away): each its own trust domain, CA,
//! controller and bundle endpoint; each names the other's web pod in a
//! WorkloadEntry. A cross-mesh call is refused before the federation
//! (nothing vouches for the other's certificates), refused after it until
//! a policy authorizes the foreign client (authenticated is not
//! authorized), then answered both ways; refused again when the policy or
//! the federation goes, answered again when they come back. A CA rotation
//! on one side reaches the other through its bundle endpoint within the
//! published refresh hint, and an endpoint that goes away, or answers
//! wrong (malformed JSON, never, with a wrong-ID or expired certificate),
//! leaves the last good bundle in place and the traffic flowing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quicmesh_controller::federation::scripted::{self, Answer, Script};
use quicmesh_core::identity::ca::{rotate, Ca};
use quicmesh_e2e::{eventually, require_root};
use quicmesh_lab::local::{Cluster, LocalSpec};
use serde_json::Value;

const HELLO: &str = "hello from shop/web\n";

/// `examples/federation` and the demo server it runs, copied under `root`
/// at the same relative places.
fn copy_example(root: &Path) -> (PathBuf, PathBuf) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    std::fs::create_dir_all(root.join("demo")).unwrap();
    std::fs::copy(examples.join("demo/hello.py"), root.join("demo/hello.py")).unwrap();
    for side in ["east", "west"] {
        let (from, to) = (
            examples.join("federation").join(side),
            root.join("federation").join(side),
        );
        std::fs::create_dir_all(to.join("ca")).unwrap();
        for sub in ["", "ca"] {
            for e in std::fs::read_dir(from.join(sub)).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_file() {
                    std::fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
                }
            }
        }
    }
    (root.join("federation/east"), root.join("federation/west"))
}

/// Takes a manifest out of a cluster's directory (`false`) or puts it
/// back (`true`), then has the cluster read its manifests again.
async fn manifest(c: &mut Cluster, dir: &Path, file: &str, present: bool) {
    let (here, parked) = (dir.join(file), dir.join(format!("{file}.parked")));
    if present {
        std::fs::rename(&parked, &here).unwrap();
    } else {
        std::fs::rename(&here, &parked).unwrap();
    }
    c.reconcile().await.unwrap();
}

/// `curl` from the client pod of `c` to the other mesh's web, through
/// the Service in front of its WorkloadEntry.
fn call(c: &Cluster, other: &str) -> Result<String, String> {
    let client = c
        .pods
        .iter()
        .find(|(k, _)| k.starts_with("shop/client"))
        .map(|(_, p)| p.netns.clone())
        .expect("the client pod");
    c.lab
        .exec_timeout(
            &client,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                &format!("http://web-{other}.shop:8080/"),
            ],
            Duration::from_secs(10),
        )
        .map_err(|e| format!("{e:#}"))
        .and_then(|o| {
            let body = String::from_utf8_lossy(&o.stdout).into_owned();
            if o.status.success() {
                Ok(body)
            } else {
                Err(format!(
                    "curl: {}{}",
                    body,
                    String::from_utf8_lossy(&o.stderr)
                ))
            }
        })
}

/// Waits (bounded) until `c`'s client gets `HELLO` from the other mesh.
async fn answered(c: &Cluster, other: &str, what: &str) {
    let mut last = Err(String::new());
    let ok = eventually(Duration::from_secs(30), || {
        last = call(c, other);
        std::future::ready(last.as_deref() == Ok(HELLO))
    })
    .await;
    assert!(ok, "{what}: {} -> {other}: {last:?}", c.trust_domain());
}

/// Waits (bounded) until `c`'s client is refused by the other mesh and
/// `counted` (a metric of `counter_side`'s ztunnel) has gone past where
/// it was; then checks a few more calls are refused too.
async fn refused(c: &Cluster, other: &str, counter_side: &Cluster, counted: &Counter, what: &str) {
    let before = counted.read(counter_side).await;
    let last = Mutex::new(Ok(String::new()));
    let ok = eventually(Duration::from_secs(30), || async {
        let r = call(c, other);
        let failed = r.is_err();
        *last.lock().unwrap() = r;
        failed && counted.read(counter_side).await > before
    })
    .await;
    let last = last.into_inner().unwrap();
    assert!(
        ok,
        "{what}: {} -> {other}: {last:?}; {} {} stayed at {before}",
        c.trust_domain(),
        counter_side.trust_domain(),
        counted.name
    );
    for _ in 0..3 {
        let r = call(c, other);
        assert!(
            r.is_err(),
            "{what}: {} -> {other} answered: {r:?}",
            c.trust_domain()
        );
    }
}

/// A counter of a cluster's ztunnel (node 1), summed over the series
/// carrying `labels`.
struct Counter {
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
}

impl Counter {
    async fn read(&self, c: &Cluster) -> f64 {
        let text = c
            .ztunnel_http(1, 15020, "/metrics")
            .await
            .unwrap_or_default();
        sum(&text, self.name, self.labels)
    }
}

fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const CLIENT_UNKNOWN_DOMAIN: Counter = Counter {
    name: "quicmesh_tls_refusals_total",
    labels: &[("side", "client"), ("reason", "unknown_trust_domain")],
};
const FEDERATED_NOT_ALLOWED: Counter = Counter {
    name: "quicmesh_ztunnel_authz_denials_total",
    labels: &[("reason", "federated_not_allowed")],
};

/// East's controller's fetches of west's bundle that ended with `result`.
async fn fetches(east: &Cluster, result: &str) -> f64 {
    let text = east.controller_http("/metrics").await.unwrap_or_default();
    sum(
        &text,
        "quicmesh_controller_federation_fetches_total",
        &[("trust_domain", "west.example"), ("result", result)],
    )
}

/// The one federation in `c`'s controller `/status`.
async fn federation(c: &Cluster) -> Value {
    let status = c.controller_http("/status").await.unwrap_or_default();
    let v: Value = serde_json::from_str(&status).unwrap_or_default();
    v["federations"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_meshes_federate_authorize_and_rotate() {
    require_root();
    let root = tempfile::tempdir().unwrap();
    let (east_dir, west_dir) = copy_example(root.path());
    // Start unfederated and without the policies.
    for (dir, other) in [(&east_dir, "west"), (&west_dir, "east")] {
        for f in ["federation.yaml".to_string(), format!("allow-{other}.yaml")] {
            std::fs::rename(dir.join(&f), dir.join(format!("{f}.parked"))).unwrap();
        }
    }
    let specs = vec![
        LocalSpec::from_dir(&east_dir, 2, 1).unwrap(),
        LocalSpec::from_dir(&west_dir, 2, 2).unwrap(),
    ];
    let mut clusters = Cluster::up_all(specs).await.unwrap();
    let mut west = clusters.pop().unwrap();
    let mut east = clusters.pop().unwrap();
    assert_eq!(
        (east.trust_domain(), west.trust_domain()),
        ("east.example", "west.example")
    );
    // The example's own CA (ca/ beside the manifests) is the one in use.
    let shipped = std::fs::read_to_string(east_dir.join("ca/ca.pem")).unwrap();
    assert_eq!(
        std::fs::read_to_string(east.ca_dir().join("ca.pem")).unwrap(),
        shipped
    );

    // 1. No federation: each side's ztunnel refuses the other's
    //    certificate (nothing vouches for its trust domain); no plaintext.
    refused(
        &east,
        "west",
        &east,
        &CLIENT_UNKNOWN_DOMAIN,
        "before federation",
    )
    .await;
    refused(
        &west,
        "east",
        &west,
        &CLIENT_UNKNOWN_DOMAIN,
        "before federation",
    )
    .await;

    // 2. Federated both ways, no policy: authenticated, not authorized.
    manifest(&mut east, &east_dir, "federation.yaml", true).await;
    manifest(&mut west, &west_dir, "federation.yaml", true).await;
    for c in [&east, &west] {
        let fetched = eventually(Duration::from_secs(30), || async {
            federation(c).await["state"]["bundle"]["origin"] == "fetched"
        })
        .await;
        assert!(fetched, "{}: {:#}", c.trust_domain(), federation(c).await);
    }
    refused(
        &east,
        "west",
        &west,
        &FEDERATED_NOT_ALLOWED,
        "federated, no policy",
    )
    .await;
    refused(
        &west,
        "east",
        &east,
        &FEDERATED_NOT_ALLOWED,
        "federated, no policy",
    )
    .await;

    // 3. An ALLOW policy for the other's client on each side: answered.
    manifest(&mut east, &east_dir, "allow-west.yaml", true).await;
    manifest(&mut west, &west_dir, "allow-east.yaml", true).await;
    answered(&east, "west", "federated and allowed").await;
    answered(&west, "east", "federated and allowed").await;
    // Verified identities on both ends: west's ztunnel logged east's client.
    let log = std::fs::read_to_string(west.ztunnel_log(1)).unwrap();
    assert!(
        log.lines().any(|l| l.contains("connection complete")
            && l.contains("spiffe://east.example/ns/shop/sa/client")
            && l.contains("spiffe://west.example/ns/shop/sa/web")),
        "{log}"
    );

    // 4. West takes its policy away: east's client is refused again (on
    //    its pooled connection too); west's calls still go through.
    manifest(&mut west, &west_dir, "allow-east.yaml", false).await;
    refused(
        &east,
        "west",
        &west,
        &FEDERATED_NOT_ALLOWED,
        "policy removed",
    )
    .await;
    answered(&west, "east", "the other side's policy removed").await;
    manifest(&mut west, &west_dir, "allow-east.yaml", true).await;
    answered(&east, "west", "policy back").await;

    // 5. West removes its federation: it no longer trusts east's
    //    certificates, either way. East's streams on the connection west
    //    accepted while federated are cut and refused; west's own pooled
    //    connection to east is closed and its new handshake refused.
    manifest(&mut west, &west_dir, "federation.yaml", false).await;
    let untrusted = Counter {
        name: "quicmesh_ztunnel_authz_denials_total",
        labels: &[("reason", "untrusted_trust_domain")],
    };
    let before = (
        untrusted.read(&west).await,
        CLIENT_UNKNOWN_DOMAIN.read(&west).await,
    );
    refused(
        &west,
        "east",
        &west,
        &CLIENT_UNKNOWN_DOMAIN,
        "federation removed",
    )
    .await;
    let mut last = Ok(String::new());
    let cut = eventually(Duration::from_secs(30), || {
        last = call(&east, "west");
        std::future::ready(last.is_err())
    })
    .await;
    assert!(
        cut,
        "east -> west after west removed its federation: {last:?}"
    );
    let after = (
        untrusted.read(&west).await,
        CLIENT_UNKNOWN_DOMAIN.read(&west).await,
    );
    let server_refusals = sum(
        &west.ztunnel_http(1, 15020, "/metrics").await.unwrap(),
        "quicmesh_tls_refusals_total",
        &[("side", "server"), ("reason", "unknown_trust_domain")],
    );
    assert!(
        after.0 > before.0 || server_refusals > 0.0,
        "west refused east neither by authorization ({before:?} -> {after:?}) nor in TLS"
    );
    manifest(&mut west, &west_dir, "federation.yaml", true).await;
    answered(&east, "west", "federation back").await;
    answered(&west, "east", "federation back").await;

    // 6. West rotates its CA (a second root in its bundle): east's
    //    controller fetches it within west's refresh hint and keeps
    //    trusting west's workloads.
    let refresh_hint: Duration =
        quicmesh_core::duration::parse(quicmesh_lab::local::LAB_BUNDLE_REFRESH_HINT).unwrap();
    let seen = federation(&east).await["state"]["bundle"]["sequence"].clone();
    rotate::add_root(
        "west.example",
        &west.ca_dir(),
        &Ca::generate("west.example").unwrap(),
    )
    .unwrap();
    let rotated = Instant::now();
    let two_roots = eventually(Duration::from_secs(60), || async {
        let f = federation(&east).await;
        f["state"]["bundle"]["roots"] == 2 && f["state"]["bundle"]["sequence"] != seen
    })
    .await;
    let took = rotated.elapsed();
    assert!(two_roots, "{:#}", federation(&east).await);
    // Reload (500 ms) + one refresh hint + a fetch; generous for CI, far
    // below the 300 s a peer without a published hint would wait.
    assert!(
        took < refresh_hint * 4,
        "east saw west's new root after {took:?} (refresh hint {refresh_hint:?})"
    );
    eprintln!(
        "east fetched west's rotated bundle {took:?} after the rotation (hint {refresh_hint:?})"
    );
    answered(&east, "west", "after west's rotation").await;

    // 7. West's bundle endpoint goes away: east keeps the last good bundle
    //    (the condition says why), and its calls to west still go through.
    west.stop_controller().unwrap();
    let failing = eventually(Duration::from_secs(60), || async {
        let f = federation(&east).await;
        f["state"]["failures"].as_u64().unwrap_or(0) >= 1
            && f["state"]["lastFetch"]["result"] != "success"
    })
    .await;
    let f = federation(&east).await;
    assert!(failing, "{f:#}");
    assert_eq!(f["state"]["bundle"]["roots"], 2, "{f:#}");
    assert!(
        f["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Fetched"
                && c["status"] == false
                && c["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("last good bundle is kept")),
        "{f:#}"
    );
    answered(&east, "west", "west's endpoint down").await;

    // 8. Something else answers at west's endpoint address, going wrong
    //    one way after another: each refused with its reason, the last
    //    good bundle kept, east's traffic to west undisturbed.
    let external = Path::new("/var/run/netns").join(&west.lab.external(1).netns);
    let worker = quicmesh_core::netns::NetnsWorker::start(&external).unwrap();
    let endpoint = std::net::SocketAddr::from((west.controller_ip(), 8443));
    let listener = quicmesh_e2e::listen_in(&worker, endpoint).await.unwrap();
    let west_ca = Ca::load("west.example", &west.ca_dir()).unwrap();
    let id = |s: &str| quicmesh_core::identity::SpiffeId::parse(s).unwrap();
    let controller_id = id("spiffe://west.example/ns/quicmesh-system/sa/controller");
    let good = west_ca
        .mint(&controller_id, Duration::from_secs(3600))
        .unwrap();
    let impostor = west_ca
        .mint(
            &id("spiffe://west.example/ns/shop/sa/web"),
            Duration::from_secs(3600),
        )
        .unwrap();
    let now = std::time::SystemTime::now();
    let expired = west_ca
        .mint_window(
            &controller_id,
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
        )
        .unwrap();
    let script = Script::new(&good, Answer::Silent);
    let peer = tokio::spawn(scripted::serve(listener, script.clone()));
    let steps = [
        (
            "malformed JSON",
            &good,
            Answer::Body("{\"keys\": [".into()),
            "malformed",
            "JSON",
        ),
        (
            "no answer",
            &good,
            Answer::Silent,
            "timeout",
            "no answer within",
        ),
        (
            "a wrong endpoint ID",
            &impostor,
            Answer::Body("{}".into()),
            "tls_error",
            "spiffe://west.example/ns/shop/sa/web",
        ),
        (
            "an expired certificate",
            &expired,
            Answer::Body("{}".into()),
            "tls_error",
            "expired",
        ),
    ];
    for (what, cert, answer, result, message) in steps {
        let before = fetches(&east, result).await;
        script.present(cert);
        script.answer(answer);
        let seen = eventually(Duration::from_secs(60), || async {
            let last = federation(&east).await["state"]["lastFetch"].clone();
            fetches(&east, result).await > before
                && last["result"] == result
                && last["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(message))
        })
        .await;
        let f = federation(&east).await;
        assert!(seen, "{what}: no {result} fetch ({message}); {f:#}");
        assert_eq!(f["state"]["bundle"]["roots"], 2, "{what}: {f:#}");
        answered(&east, "west", what).await;
    }
    peer.abort();
    drop(worker);
    west.start_controller().unwrap();
    let recovered = eventually(Duration::from_secs(60), || async {
        federation(&east).await["state"]["lastFetch"]["result"] == "success"
    })
    .await;
    assert!(recovered, "{:#}", federation(&east).await);
}
