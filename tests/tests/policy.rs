//! L4 authorization end to end: AuthorizationPolicy manifests and the
//! mTLS-mode label, through the real controller, enforced by the
//! destination ztunnel. Every "denied" is checked with the policy's name in
//! the destination's metrics, so a network failure cannot pass for a denial.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use quicmesh_core::netns::NetnsWorker;
use quicmesh_e2e::{app, connect_from, eventually, require_root};
use quicmesh_lab::local::{Cluster, LocalSpec};
use quicmesh_lab::mesh::sum_metric;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// shop/web is the destination (the test runs its apps); front/client and
/// ops/admin are mesh clients; outside/legacy is not in the mesh.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {quicmesh.io/dataplane-mode: ambient SHOP_LABELS}}
---
apiVersion: v1
kind: Namespace
metadata: {name: front, labels: {quicmesh.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {quicmesh.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: outside}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {serviceAccountName: web, containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: front}
spec: {serviceAccountName: client, containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: admin, namespace: ops}
spec: {serviceAccountName: admin, containers: [{name: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy, namespace: outside}
spec: {serviceAccountName: legacy, containers: [{name: app}]}
"#;

const APP_PORT: u16 = 7000;
const OTHER_PORT: u16 = 7001;
/// An echo app that reports how each connection ended.
const RECORDING_PORT: u16 = 7002;

struct Env {
    cluster: Cluster,
    dir: tempfile::TempDir,
    web: NetnsWorker,
    /// How connections to RECORDING_PORT ended: Ok (FIN) or the error (reset).
    endings: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<std::io::Result<u64>>>,
}

fn worker_of(cluster: &Cluster, ns: &str, name: &str) -> NetnsWorker {
    NetnsWorker::start(&quicmesh_lab::Lab::netns_path(&cluster.pod(ns, name).netns)).unwrap()
}

fn write_cluster(dir: &Path, shop_labels: &str) {
    std::fs::write(
        dir.join("cluster.yaml"),
        CLUSTER.replace("SHOP_LABELS", shop_labels),
    )
    .unwrap();
}

/// Echo apps on two ports of shop/web.
async fn echo(stream: tokio::net::TcpStream) {
    let (mut r, mut w) = stream.into_split();
    let _ = tokio::io::copy(&mut r, &mut w).await;
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    write_cluster(dir.path(), "");
    let cluster = Cluster::up(LocalSpec::new(dir.path(), 2)).await.unwrap();
    let web = worker_of(&cluster, "shop", "web");
    app(&web, APP_PORT, echo).await.unwrap();
    app(&web, OTHER_PORT, echo).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    app(&web, RECORDING_PORT, move |s: tokio::net::TcpStream| {
        let tx = tx.clone();
        async move {
            let (mut r, mut w) = s.into_split();
            let _ = tx.send(tokio::io::copy(&mut r, &mut w).await);
        }
    })
    .await
    .unwrap();
    Env {
        cluster,
        dir,
        web,
        endings: tokio::sync::Mutex::new(rx),
    }
}

impl Env {
    fn web_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.cluster.pod("shop", "web").ip.into(), port)
    }

    /// One echo round trip from pod `ns/name` to shop/web:`port`.
    async fn echo_from(&self, ns: &str, name: &str, port: u16) -> bool {
        let w = worker_of(&self.cluster, ns, name);
        round_trip(&w, self.web_addr(port)).await.is_ok()
    }

    /// Applies `yaml` as policy.yaml (empty: no policies) and lets the lab
    /// hand it to the controller.
    async fn policies(&mut self, yaml: &str) {
        std::fs::write(self.dir.path().join("policy.yaml"), yaml).unwrap();
        self.cluster.reconcile().await.unwrap();
    }

    async fn web_metrics(&self) -> String {
        let node = self.cluster.pod("shop", "web").node;
        self.cluster
            .ztunnel_http(node, 15020, "/metrics")
            .await
            .unwrap_or_default()
    }

    async fn denials(&self, policy: &str, reason: &str) -> f64 {
        sum_metric(
            &self.web_metrics().await,
            "quicmesh_ztunnel_authz_denials_total",
            &[("policy", policy), ("reason", reason)],
        )
    }

    fn web_log(&self) -> String {
        std::fs::read_to_string(
            self.cluster
                .ztunnel_log(self.cluster.pod("shop", "web").node),
        )
        .unwrap_or_default()
    }

    /// Waits until `ns/name` is denied with `reason` by `policy` (counted
    /// by the destination), retrying while the policy propagates.
    async fn denied(&self, ns: &str, name: &str, port: u16, policy: &str, reason: &str) -> bool {
        let before = self.denials(policy, reason).await;
        eventually(Duration::from_secs(15), || async {
            !self.echo_from(ns, name, port).await && self.denials(policy, reason).await > before
        })
        .await
    }

    async fn allowed(&self, ns: &str, name: &str, port: u16) -> bool {
        eventually(Duration::from_secs(15), || self.echo_from(ns, name, port)).await
    }
}

/// Opens a connection from `w` to `addr` and checks one echo on it.
async fn held(w: &NetnsWorker, addr: SocketAddr) -> tokio::net::TcpStream {
    let mut s = connect_from(w, addr).await.unwrap();
    let mut buf = [0u8; 4];
    s.write_all(b"ping").await.unwrap();
    s.read_exact(&mut buf).await.unwrap();
    s
}

/// Keeps talking on `s` until it breaks (up to 15 s); how it broke.
async fn until_cut(s: &mut tokio::net::TcpStream) -> Option<std::io::Result<usize>> {
    tokio::time::timeout(Duration::from_secs(15), async {
        let mut b = [0u8; 16];
        loop {
            s.write_all(b"ping").await?;
            match s.read(&mut b).await {
                Ok(0) => return Ok(0),
                Err(e) => return Err(e),
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .ok()
}

/// Writes, reads back, and checks the echo.
async fn round_trip(w: &NetnsWorker, addr: SocketAddr) -> anyhow::Result<()> {
    let mut s = tokio::time::timeout(Duration::from_secs(5), connect_from(w, addr)).await??;
    s.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await??;
    anyhow::ensure!(&buf == b"ping", "echo mismatch");
    Ok(())
}

fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: quicmesh.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n---\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_deny_ip_blocks_ports_and_audit() {
    require_root();
    let mut env = start().await;
    // No policy: everyone gets through, plaintext included (permissive).
    assert!(env.allowed("front", "client", APP_PORT).await);
    assert!(env.allowed("ops", "admin", APP_PORT).await);
    assert!(env.allowed("outside", "legacy", APP_PORT).await);

    // ALLOW by principal: only front/client.
    env.policies(&policy(
        "allow-client",
        "  selector: {matchLabels: {app: web}}\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/front/sa/client]}}]",
    ))
    .await;
    assert!(
        env.denied(
            "ops",
            "admin",
            APP_PORT,
            "shop/allow-client",
            "no_allow_match"
        )
        .await,
        "ops/admin was not denied by shop/allow-client"
    );
    assert!(env.allowed("front", "client", APP_PORT).await);
    assert!(
        env.denied(
            "outside",
            "legacy",
            APP_PORT,
            "shop/allow-client",
            "no_allow_match"
        )
        .await,
        "plaintext has no principal and must not match"
    );
    let log = env.web_log();
    assert!(
        log.lines().any(|l| l.contains("tunnel request refused")
            && l.contains("shop/allow-client")
            && l.contains("no_allow_match")),
        "the refusal is not logged with the policy name"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("connection complete")
                && l.contains("authz=allow by shop/allow-client")),
        "the access log does not carry the decision"
    );

    // DENY by namespace: ops is out, the others in.
    env.policies(&policy(
        "deny-ops",
        "  action: DENY\n  rules:\n  - from: [{source: {namespaces: [ops]}}]",
    ))
    .await;
    assert!(
        env.denied("ops", "admin", APP_PORT, "shop/deny-ops", "deny_policy")
            .await
    );
    assert!(env.allowed("front", "client", APP_PORT).await);
    assert!(env.allowed("outside", "legacy", APP_PORT).await);

    // ipBlock: only the client's address.
    let client_ip = env.cluster.pod("front", "client").ip;
    env.policies(&policy(
        "lan",
        &format!("  rules:\n  - from: [{{source: {{ipBlocks: [\"{client_ip}/32\"]}}}}]"),
    ))
    .await;
    assert!(
        env.denied("ops", "admin", APP_PORT, "shop/lan", "no_allow_match")
            .await
    );
    assert!(env.allowed("front", "client", APP_PORT).await);

    // Port: APP_PORT only.
    env.policies(&policy(
        "app-port",
        &format!("  rules:\n  - to: [{{operation: {{ports: [{APP_PORT}]}}}}]"),
    ))
    .await;
    assert!(
        env.denied(
            "front",
            "client",
            OTHER_PORT,
            "shop/app-port",
            "no_allow_match"
        )
        .await
    );
    assert!(env.allowed("front", "client", APP_PORT).await);

    // AUDIT: logged and counted, never denied.
    env.policies(&policy(
        "watch-front",
        "  action: AUDIT\n  rules:\n  - from: [{source: {namespaces: [front]}}]",
    ))
    .await;
    let audits = || async {
        sum_metric(
            &env.web_metrics().await,
            "quicmesh_ztunnel_authz_audits_total",
            &[("policy", "shop/watch-front")],
        )
    };
    assert!(
        eventually(Duration::from_secs(15), || async {
            env.echo_from("front", "client", OTHER_PORT).await && audits().await >= 1.0
        })
        .await,
        "an AUDIT match was not counted (or the connection was refused)"
    );
    assert!(env
        .web_log()
        .lines()
        .any(|l| l.contains("authorization audit") && l.contains("shop/watch-front")));
    // Not matched by the audit policy: not counted.
    let n = audits().await;
    assert!(env.allowed("ops", "admin", APP_PORT).await);
    assert_eq!(audits().await, n);
    drop(env.web);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_change_cuts_live_connections_and_invalid_policy_fails_closed() {
    require_root();
    let mut env = start().await;
    assert!(env.allowed("front", "client", APP_PORT).await);

    // A long-lived connection, working.
    let w = worker_of(&env.cluster, "front", "client");
    let mut conn = held(&w, env.web_addr(RECORDING_PORT)).await;

    // A policy that no longer allows it cuts it.
    env.policies(&policy(
        "deny-client",
        "  action: DENY\n  rules:\n  - from: [{source: {principals: [\"*/sa/client\"]}}]",
    ))
    .await;
    // Both apps see a reset, not a clean close they could take for success.
    match until_cut(&mut conn).await {
        Some(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        other => panic!("the client app did not see a reset: {other:?}"),
    }
    let ending = tokio::time::timeout(Duration::from_secs(5), env.endings.lock().await.recv())
        .await
        .expect("the server app's connection did not end")
        .unwrap();
    assert!(
        ending.is_err(),
        "the server app saw a clean close: {ending:?}"
    );
    let closed = sum_metric(
        &env.web_metrics().await,
        "quicmesh_ztunnel_authz_closed_connections_total",
        &[("policy", "shop/deny-client"), ("reason", "deny_policy")],
    );
    assert!(closed >= 1.0, "the cut was not counted against the policy");
    assert!(env
        .web_log()
        .contains("live connection no longer allowed; closing it"));
    assert!(
        env.denied(
            "front",
            "client",
            APP_PORT,
            "shop/deny-client",
            "deny_policy"
        )
        .await
    );
    assert!(env.allowed("ops", "admin", APP_PORT).await);

    // An invalid policy (a malformed CIDR) denies everything it targets,
    // even next to an allow-all, and says why.
    env.policies(&format!(
        "{}{}",
        policy("allow-all", "  rules: [{}]"),
        policy(
            "broken",
            "  rules:\n  - from: [{source: {ipBlocks: [\"10.0.0.1/8\"]}}]"
        )
    ))
    .await;
    assert!(
        env.denied("ops", "admin", APP_PORT, "shop/broken", "invalid_policy")
            .await
    );
    assert!(
        env.denied("front", "client", APP_PORT, "shop/broken", "invalid_policy")
            .await
    );
    let status = env.cluster.controller_http("/status").await.unwrap();
    assert!(
        status.contains("shop/broken") && status.contains("ipBlocks[0]"),
        "the controller does not say why the policy is invalid: {status}"
    );
    // Fixing it restores traffic.
    env.policies(&policy("allow-all", "  rules: [{}]")).await;
    assert!(env.allowed("front", "client", APP_PORT).await);
    drop(env.web);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mtls_refuses_plaintext_and_permissive_accepts_it() {
    require_root();
    let mut env = start().await;
    // Permissive (the default): a client outside the mesh gets in.
    assert!(env.allowed("outside", "legacy", APP_PORT).await);
    let plaintext = || async {
        sum_metric(
            &env.web_metrics().await,
            "quicmesh_ztunnel_plaintext_inbound_connections_total",
            &[],
        )
    };
    assert!(plaintext().await >= 1.0, "it did not arrive as plaintext");

    // Strict: it is refused, and a live plaintext connection is cut; mesh
    // clients are not affected.
    let legacy = worker_of(&env.cluster, "outside", "legacy");
    let mut conn = held(&legacy, env.web_addr(RECORDING_PORT)).await;
    write_cluster(env.dir.path(), ", quicmesh.io/mtls-mode: strict");
    env.cluster.reconcile().await.unwrap();
    assert!(
        env.denied(
            "outside",
            "legacy",
            APP_PORT,
            "shop/mtls-mode=strict",
            "strict_mtls"
        )
        .await,
        "strict mode let plaintext in"
    );
    assert!(
        matches!(until_cut(&mut conn).await, Some(Err(_))),
        "the live plaintext connection was not reset"
    );
    let closed = sum_metric(
        &env.web_metrics().await,
        "quicmesh_ztunnel_authz_closed_connections_total",
        &[
            ("policy", "shop/mtls-mode=strict"),
            ("reason", "strict_mtls"),
        ],
    );
    assert!(closed >= 1.0, "the cut was not counted");
    assert!(env.allowed("front", "client", APP_PORT).await);
    let dump = env
        .cluster
        .ztunnel_http(env.cluster.pod("shop", "web").node, 15000, "/config_dump")
        .await
        .unwrap();
    assert!(dump.contains("\"mtls_mode\": \"strict\""), "{dump}");

    // Back to permissive.
    write_cluster(env.dir.path(), ", quicmesh.io/mtls-mode: permissive");
    env.cluster.reconcile().await.unwrap();
    assert!(env.allowed("outside", "legacy", APP_PORT).await);
    drop(env.web);
}
