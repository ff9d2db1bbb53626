//! The `quicmesh` CLI against a running mesh, as a user runs it: the real
//! binary, `local up -f examples/waypoint`, then `proxy-status`,
//! `ztunnel-config`, `waypoint-config`, `local exec`, `local logs` and
//! `check`, in tables and as JSON/YAML, and the errors that say what to do.
//! Its own temporary directory keeps the agent's status files apart. Then
//! the same mesh as a Kubernetes cluster: the CLI with a kubeconfig, its
//! pods listed by a stand-in API server from a recorded pod list, their
//! admin pages read through that server's port-forward, which reaches the
//! same processes.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use quicmesh_e2e::cli::{free_loopback_addr, rows, text, Cli};
use quicmesh_e2e::kube_api::FakeApi;
use quicmesh_e2e::require_root;
use serde_json::Value;

#[test]
fn the_cli_shows_what_the_running_mesh_holds() {
    require_root();
    let cli = Cli::new();
    // Nothing runs yet: said, with what to do.
    let e = cli.fails(&["proxy-status"]);
    assert!(
        e.contains("no local mesh is running") && e.contains("local up -f"),
        "{e}"
    );

    let o = cli.up(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/waypoint"));
    assert!(
        o.contains("starting a 2-node mesh") && o.contains("  up in "),
        "{o}"
    );
    let st: Value = serde_json::from_str(&cli.ok(&["local", "status", "-o", "json"])).unwrap();
    assert_eq!(st[0]["nodes"].as_array().map(Vec::len), Some(2), "{st}");

    // proxy-status: both ztunnels and the waypoint, each on the newest
    // version sent to it (bounded wait: the waypoint may still be taking it).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let v = cli.json(&["proxy-status"]);
        let synced = rows(&v).len() == 3 && rows(&v).iter().all(|r| r["status"] == "SYNCED");
        if synced || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut proxies: Vec<(String, String)> = rows(&status)
        .iter()
        .map(|r| {
            (
                r["proxy"].as_str().unwrap().into(),
                r["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    proxies.sort();
    assert_eq!(
        proxies,
        [
            ("node1".into(), "ztunnel".into()),
            ("node2".into(), "ztunnel".into()),
            ("shop/waypoint".into(), "waypoint".into())
        ],
        "{status}"
    );
    assert!(
        rows(&status).iter().all(|r| r["status"] == "SYNCED"),
        "{status}"
    );
    let table = cli.ok(&["proxy-status"]);
    assert!(table.starts_with("PROXY"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("shop/waypoint") && l.contains("SYNCED")),
        "{table}"
    );
    let yaml: Value = serde_yaml::from_str(&cli.ok(&["proxy-status", "-o", "yaml"])).unwrap();
    assert_eq!(rows(&yaml).len(), 3, "{yaml}");

    // ztunnel-config: what node1's ztunnel holds.
    let w = cli.json(&["ztunnel-config", "workloads"]);
    let client = rows(&w)
        .iter()
        .find(|r| r["name"] == "client-0")
        .unwrap_or_else(|| panic!("{w}"));
    assert_eq!(
        client["identity"],
        "spiffe://cluster.local/ns/front/sa/client"
    );
    assert_eq!(client["proxy"], "node1");
    let s = cli.json(&["ztunnel-config", "services", "--node", "2"]);
    let web = rows(&s)
        .iter()
        .find(|r| r["name"] == "web")
        .unwrap_or_else(|| panic!("{s}"));
    assert_eq!(web["waypoint"]["name"], "waypoint", "{web}");
    assert_eq!(web["proxy"], "node2");
    let p = cli.json(&["ztunnel-config", "policies"]);
    assert!(
        rows(&p)
            .iter()
            .any(|r| r["name"] == "shop/web-reads" && r["enforced"] == "waypoint"),
        "{p}"
    );
    // Certificates: every node's, unexpired.
    let c = cli.json(&["ztunnel-config", "certificates"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let held: Vec<(String, String)> = rows(&c)
        .iter()
        .map(|r| {
            assert!(r["notAfter"].as_i64().unwrap() > now, "{r}");
            (
                r["proxy"].as_str().unwrap().into(),
                r["identity"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        held.contains(&(
            "node1".into(),
            "spiffe://cluster.local/ns/front/sa/client".into()
        )),
        "{held:?}"
    );
    assert!(held.iter().any(|(n, _)| n == "node2"), "{held:?}");
    let table = cli.ok(&["ztunnel-config", "certificates"]);
    assert!(
        table.lines().next().unwrap().contains("EXPIRES IN"),
        "{table}"
    );
    let e = cli.fails(&["ztunnel-config", "workloads", "--node", "node7"]);
    assert!(e.contains("no node7") && e.contains("node1, node2"), "{e}");

    // waypoint-config: the example's routes, rule by rule, and what
    // applies to each Service.
    let r = cli.json(&["waypoint-config", "routes"]);
    let canary = rows(&r)
        .iter()
        .find(|x| x["matches"][0] == "PathPrefix / header x-canary=yes")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(canary["route"], "shop/web");
    assert_eq!(canary["backends"][0]["backend"], "shop/web-v2:80");
    let split = rows(&r)
        .iter()
        .find(|x| x["backends"].as_array().is_some_and(|b| b.len() == 2))
        .unwrap_or_else(|| panic!("{r}"));
    let weights: Vec<u64> = split["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, [90, 10], "{split}");
    let p = cli.json(&["waypoint-config", "policies", "shop/waypoint"]);
    let web = rows(&p)
        .iter()
        .find(|x| x["service"] == "shop/web:80")
        .unwrap_or_else(|| panic!("{p}"));
    assert_eq!(web["authorization"][0], "shop/web-reads", "{web}");
    assert_eq!(web["authentication"][0], "shop/web-jwt", "{web}");
    assert!(
        web["traffic"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "rateLimit (shop/web)"),
        "{web}"
    );
    let e = cli.fails(&["waypoint-config", "routes", "shop/nope"]);
    assert!(
        e.contains("no waypoint shop/nope") && e.contains("shop/waypoint-0"),
        "{e}"
    );

    // local exec: a command in the client pod, Service names resolving.
    let hello = cli.ok(&[
        "local",
        "exec",
        "front/client-0",
        "--",
        "curl",
        "-sS",
        "--max-time",
        "20",
        "http://web.shop/",
    ]);
    assert!(hello.starts_with("hello from shop/web-v"), "{hello}");
    // local logs: the waypoint's access log line for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let l = cli.ok(&["local", "logs", "shop/waypoint-0", "--tail", "200"]);
        if l.contains("waypoint::access") || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(logs.contains("waypoint::access"), "{logs}");
    assert!(logs.lines().count() <= 200, "--tail 200 printed more");
    assert!(!cli
        .ok(&["local", "logs", "controller", "--tail", "5"])
        .is_empty());
    let e = cli.fails(&["local", "logs", "nope"]);
    assert!(
        e.contains("front/client-0") && e.contains("ztunnel/node1"),
        "{e}"
    );

    // check: this host and the running mesh.
    let checks = cli.json(&["check"]);
    let failed: Vec<&Value> = rows(&checks)
        .iter()
        .filter(|c| c["result"] == "fail")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    for name in [
        "kernel",
        "nftables",
        "kernel features",
        "binaries",
        "controller",
        "proxies",
    ] {
        assert!(
            rows(&checks).iter().any(|c| c["check"] == name),
            "no {name} check: {checks}"
        );
    }

    let (_rt, api, kubeconfig) = through_kubernetes(&cli, &st);

    let down = cli.ok(&["local", "down"]);
    assert!(down.contains("local mesh removed"), "{down}");
    let e = cli.fails(&["ztunnel-config", "workloads"]);
    assert!(e.contains("no local mesh is running"), "{e}");
    // With no local mesh, the default kubeconfig ($KUBECONFIG) is read.
    let asked = api.requests().len();
    let out = cli.run_env(
        &["proxy-status", "--mesh-namespace", "elsewhere"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        Duration::from_secs(60),
    );
    let (_, e) = text(&out);
    assert!(
        !out.status.success()
            && e.contains("no running quicmesh controller in namespace elsewhere"),
        "{e}"
    );
    assert!(api.requests().len() > asked);
}

/// The running local mesh as a Kubernetes cluster would show it: the
/// recorded pod list's controller, ztunnel and waypoint pods are the lab's
/// controller, nodes and waypoint. The CLI, given a kubeconfig, must find
/// them by their labels (skipping a pending replica, the CNI agent and
/// another implementation's Gateway pod) and show what the local path
/// shows. Returns the server (and its runtime) and the kubeconfig.
fn through_kubernetes(
    cli: &Cli,
    st: &Value,
) -> (tokio::runtime::Runtime, FakeApi, std::path::PathBuf) {
    let c = &st[0];
    let netns_of = |list: &str, ns: Option<&str>, name: &str| -> String {
        c[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name && ns.is_none_or(|ns| x["namespace"] == ns))
            .unwrap_or_else(|| panic!("no {name} in {c}"))["netns"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let key = |ns: &str, pod: &str| (ns.to_string(), pod.to_string());
    let netns = HashMap::from([
        (
            key("quicmesh-system", "quicmesh-controller-6d5f8b7c9-k2x4z"),
            c["controller_netns"].as_str().unwrap().to_string(),
        ),
        (
            key("quicmesh-system", "ztunnel-4kq9d"),
            netns_of("nodes", None, "node1"),
        ),
        (
            key("quicmesh-system", "ztunnel-x7m2p"),
            netns_of("nodes", None, "node2"),
        ),
        (
            key("shop", "waypoint-7c9f8d6b5-x2k4p"),
            netns_of("pods", Some("shop"), "waypoint-0"),
        ),
    ]);
    let pods: Value =
        serde_json::from_str(include_str!("../fixtures/mesh-pods-list.json")).unwrap();
    let objects: HashMap<String, Value> =
        serde_json::from_str(include_str!("../fixtures/mesh-cluster-objects.json")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(FakeApi::start(pods, objects, netns)).unwrap();
    let kubeconfig = cli.tmp().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig()).unwrap();
    let kc = kubeconfig.to_str().unwrap();

    // proxy-status: the proxies the local path shows, from the controller pod.
    let set = |v: &Value| {
        let mut s: Vec<(String, String, String)> = rows(v)
            .iter()
            .map(|r| {
                let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (f("proxy"), f("kind"), f("status"))
            })
            .collect();
        s.sort();
        s
    };
    let remote = cli.json(&["proxy-status", "--kubeconfig", kc]);
    assert_eq!(set(&remote), set(&cli.json(&["proxy-status"])), "{remote}");
    assert_eq!(rows(&remote).len(), 3, "{remote}");
    assert!(
        rows(&remote)
            .iter()
            .all(|r| r["controller"] == "pod quicmesh-system/quicmesh-controller-6d5f8b7c9-k2x4z"),
        "{remote}"
    );
    let table = cli.ok(&["proxy-status", "--kubeconfig", kc]);
    assert!(
        table.starts_with("PROXY") && table.contains("shop/waypoint"),
        "{table}"
    );

    // ztunnel-config: each node's ztunnel pod.
    let w = cli.json(&["ztunnel-config", "workloads", "--kubeconfig", kc]);
    let client = rows(&w)
        .iter()
        .find(|r| r["name"] == "client-0")
        .unwrap_or_else(|| panic!("{w}"));
    assert_eq!(client["proxy"], "node1");
    let certs = cli.json(&[
        "ztunnel-config",
        "certificates",
        "--node",
        "node2",
        "--kubeconfig",
        kc,
    ]);
    assert!(
        rows(&certs).iter().all(|r| r["proxy"] == "node2"),
        "{certs}"
    );
    assert!(
        rows(&certs)
            .iter()
            .any(|r| r["identity"] == "spiffe://cluster.local/quicmesh/node/node2"),
        "{certs}"
    );

    // waypoint-config: the Gateway's pod, found by its labels.
    let routes = cli.json(&[
        "waypoint-config",
        "routes",
        "shop/waypoint",
        "--kubeconfig",
        kc,
    ]);
    let local = cli.json(&["waypoint-config", "routes"]);
    assert_eq!(rows(&routes).len(), rows(&local).len(), "{routes}");
    assert!(
        rows(&routes)
            .iter()
            .all(|r| r["proxy"] == "shop/waypoint-7c9f8d6b5-x2k4p"),
        "{routes}"
    );
    let e = cli.fails(&[
        "waypoint-config",
        "routes",
        "edge/ingress",
        "--kubeconfig",
        kc,
    ]);
    assert!(
        e.contains("no waypoint edge/ingress") && e.contains("shop/waypoint-7c9f8d6b5-x2k4p"),
        "{e}"
    );

    // What goes wrong is said, with what to do.
    let e = cli.fails(&[
        "proxy-status",
        "--kubeconfig",
        kc,
        "--context",
        "wrong-token",
    ]);
    assert!(e.contains("refused: Unauthorized"), "{e}");
    let e = cli.fails(&["proxy-status", "--kubeconfig", kc, "--context", "gone"]);
    assert!(
        e.contains("cannot reach the Kubernetes API at http://127.0.0.1:1"),
        "{e}"
    );
    let e = cli.fails(&[
        "proxy-status",
        "--kubeconfig",
        kc,
        "--mesh-namespace",
        "elsewhere",
    ]);
    assert!(
        e.contains("no running quicmesh controller in namespace elsewhere")
            && e.contains("--mesh-namespace"),
        "{e}"
    );
    let e = cli.fails(&["proxy-status", "--kubeconfig", kc, "--cluster", "1"]);
    assert!(
        e.contains("--cluster picks a cluster of a local mesh"),
        "{e}"
    );
    let e = cli.fails(&["proxy-status", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(
        e.contains("reading the kubeconfig /nonexistent/kubeconfig"),
        "{e}"
    );

    // check: the cluster as recorded (a Gateway API without GRPCRoute, one
    // node's CNI agent not ready and older), and the lab's proxies.
    let out = cli.run(&["check", "--kubeconfig", kc, "-o", "json"]);
    let (o, e) = text(&out);
    assert!(!out.status.success(), "the CNI agent is not ready: {o}{e}");
    let checks: Value = serde_json::from_str(&o).unwrap_or_else(|err| panic!("{err}: {o}{e}"));
    let result = |name: &str| -> (String, String) {
        let c = rows(&checks)
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {checks}"));
        (
            c["result"].as_str().unwrap().to_string(),
            c["detail"].as_str().unwrap().to_string(),
        )
    };
    let expect = [
        ("kubernetes", "ok", "v1.33.4"),
        ("quicmesh CRDs", "ok", "5 installed"),
        (
            "Gateway API CRDs",
            "warn",
            "missing: grpcroutes.gateway.networking.k8s.io",
        ),
        ("controller pods", "ok", "1/2 ready"),
        ("ztunnel", "ok", "ready on 2/2 nodes"),
        ("cni", "fail", "ready on 1/2 nodes"),
        ("versions", "warn", "quicmesh-cni 0.0.9"),
        ("controller", "ok", "config version"),
        ("proxies", "ok", "3 connected"),
    ];
    for (name, want, detail) in expect {
        let (got, d) = result(name);
        assert!(
            got == want && d.contains(detail),
            "{name}: {got} {d}: {checks}"
        );
    }
    let table = cli.run(&["check", "--kubeconfig", kc]);
    let (t, _) = text(&table);
    assert!(
        t.contains("[FAIL] cni") && t.contains("some checks failed"),
        "{t}"
    );

    // dashboard: the graph from the ztunnel and waypoint pods' metrics,
    // the workloads from a ztunnel's config.
    let addr = free_loopback_addr();
    let mut dashboard = std::process::Command::new(cli.bin())
        .args(["dashboard", "--kubeconfig", kc, "--interval", "1"])
        .args(["--addr", &addr.to_string()])
        .env("TMPDIR", cli.tmp())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    const CLIENT: &str = "spiffe://cluster.local/ns/front/sa/client";
    const WAYPOINT: &str = "spiffe://cluster.local/ns/shop/sa/waypoint";
    let deadline = Instant::now() + Duration::from_secs(60);
    let graph = loop {
        let g: Value = quicmesh_lab::mesh::http_get(addr, "/api/graph")
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let edge = g["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["src"] == CLIENT && e["dst"] == WAYPOINT);
        if edge || Instant::now() > deadline {
            break g;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = dashboard.kill();
    let _ = dashboard.wait();
    let nodes = graph["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{graph}"));
    let node = |id: &str| {
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {graph}"))
    };
    assert_eq!(node(WAYPOINT)["kind"], "waypoint", "{graph}");
    assert_eq!(node(CLIENT)["pods"][0], "front/client-0", "{graph}");
    assert!(
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["src"] == CLIENT && e["dst"] == WAYPOINT),
        "{graph}"
    );
    assert_eq!(graph["errors"], serde_json::json!([]), "{graph}");

    // Only what docs/cli.md says the CLI needs: gets and lists of pods,
    // port-forwards, and for check the version, CRDs and workloads.
    for r in api.requests() {
        let (method, rest) = r.split_once(' ').unwrap();
        let path = rest.split('?').next().unwrap();
        assert_eq!(method, "GET", "{r}");
        assert!(
            path == "/api/v1/pods"
                || path == "/api/v1/namespaces/quicmesh-system/pods"
                || path == "/api/v1/namespaces/elsewhere/pods"
                || (path.starts_with("/api/v1/namespaces/") && path.ends_with("/portforward"))
                || path == "/version"
                || path.starts_with("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/")
                || path.starts_with("/apis/apps/v1/namespaces/quicmesh-system/"),
            "{r}"
        );
    }
    (rt, api, kubeconfig)
}
