//! The plugin driven as a container runtime drives it: the real
//! `quicmesh-cni` binary run with the CNI environment and a chained network
//! config on stdin, its node agent (`quicmesh-cni agent`, the same binary)
//! and a real ztunnel (dev CA) in a lab node's network namespace, pods as
//! real network namespaces, the cluster as the manifests the agent's file
//! source reads (as in `quicmesh local up`). Every wait is a poll with a
//! deadline.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quicmesh_lab::net::{Lab, PodSpec, ProcHandle, TopologySpec};
use quicmesh_lab::ztunnels::{Source, Ztunnels};
use serde_json::{json, Value};

const PLUGIN: &str = env!("CARGO_BIN_EXE_quicmesh-cni");
/// How long any one step may take.
const STEP: Duration = Duration::from_secs(30);
/// The agent's metrics and admin ports, in the node's namespace.
const HEALTH: &str = "127.0.0.1:15021";
const ADMIN: &str = "127.0.0.1:15022";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests create network namespaces and run ztunnel: run them as root"
    );
}

/// What the plugin answered.
#[derive(Debug)]
struct Answer {
    exit: i32,
    stdout: String,
    stderr: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The CNI error code (asserting it failed).
    fn code(&self) -> u64 {
        assert_ne!(self.exit, 0, "{self:?}");
        self.json()["code"].as_u64().expect("an error code")
    }

    fn ok(&self) -> &Self {
        assert_eq!((self.exit, self.stderr.as_str()), (0, ""), "{self:?}");
        self
    }
}

/// Runs the plugin as a runtime does: `env` (and nothing else of ours),
/// `stdin`; killed if it outlives its own bound by far.
fn run_plugin(env: &[(&str, String)], stdin: &[u8], uid: Option<u32>) -> Answer {
    let mut cmd = Command::new(PLUGIN);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(uid);
    }
    let mut child = cmd.spawn().expect("spawning the plugin");
    let mut input = child.stdin.take().unwrap();
    // A plugin that refuses early may close stdin first.
    let _ = input.write_all(stdin);
    drop(input);
    let deadline = Instant::now() + STEP;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the plugin ran for over {STEP:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    Answer {
        exit: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A pod of the test cluster.
#[derive(Debug, Clone)]
struct TestPod {
    namespace: String,
    name: String,
    uid: String,
    labels: Value,
    netns: String,
    ip: String,
}

impl TestPod {
    fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID=sandbox-{};K8S_POD_UID={}",
            self.namespace, self.name, self.name, self.uid
        )
    }

    fn container_id(&self) -> String {
        format!("sandbox-{}", self.name)
    }

    /// The result the interface plugin before us wrote.
    fn prev_result(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": Lab::netns_path(&self.netns)}],
            "ips": [{"address": format!("{}/32", self.ip), "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0"}],
        })
    }
}

/// One lab node with ztunnel and the agent, and the cluster they see.
struct Cluster {
    lab: Lab,
    dir: tempfile::TempDir,
    ztunnels: Ztunnels,
    agent: Option<ProcHandle>,
    namespaces: Vec<(String, bool)>,
    pods: Vec<TestPod>,
}

impl Cluster {
    async fn start() -> Cluster {
        require_root();
        let lab = Lab::new(&TopologySpec {
            nodes: 1,
            pods: vec![],
            externals: 0,
            ..Default::default()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        std::fs::write(dir.path().join("workloads.yaml"), "workloads: []\n").unwrap();
        let ztunnels = Ztunnels::new(
            dir.path(),
            Source::Files {
                workloads: dir.path().join("workloads.yaml"),
                dev_ca: dir.path().join("ca"),
            },
            1,
        );
        let mut c = Cluster {
            lab,
            dir,
            ztunnels,
            agent: None,
            namespaces: vec![],
            pods: vec![],
        };
        c.write_state();
        c.ztunnels.start(&c.lab, 1).await.unwrap();
        c.start_agent().await;
        c
    }

    fn plugin_socket(&self) -> PathBuf {
        self.dir.path().join("cni.sock")
    }

    fn agent_log(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    fn node_netns(&self) -> String {
        self.lab.node(1).netns.clone()
    }

    async fn start_agent(&mut self) {
        let state = format!("files:{}", self.dir.path().join("state").display());
        let zsock = self.ztunnels.enroll_socket(1).display().to_string();
        let psock = self.plugin_socket().display().to_string();
        let args = [
            "agent",
            "--node",
            "node1",
            "--source",
            &state,
            "--ztunnel-socket",
            &zsock,
            "--plugin-socket",
            &psock,
            "--pod-wait",
            "1s",
            "--health-addr",
            HEALTH,
            "--admin-addr",
            ADMIN,
        ];
        let p = self
            .lab
            .spawn(
                &self.node_netns(),
                PLUGIN,
                &args,
                &[("RUST_LOG", "info,quicmesh_cni=debug"), ("NO_COLOR", "1")],
                Some(&self.agent_log()),
            )
            .unwrap();
        self.agent = Some(p);
        self.until("the agent is ready", |c| async move {
            c.health("/healthz/ready")
                .await
                .is_ok_and(|b| b == "ready\n")
        })
        .await;
    }

    fn stop_agent(&mut self) {
        if let Some(p) = self.agent.take() {
            p.kill().unwrap();
        }
    }

    /// GET from the agent (`/metrics`, `/healthz/ready`).
    async fn health(&self, path: &str) -> anyhow::Result<String> {
        quicmesh_lab::mesh::netns_http_get(&self.node_netns(), HEALTH.parse()?, path).await
    }

    /// The agent's `/pods`.
    async fn agent_pods(&self) -> Value {
        let text =
            quicmesh_lab::mesh::netns_http_get(&self.node_netns(), ADMIN.parse().unwrap(), "/pods")
                .await
                .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Pods enrolled in ztunnel, as `namespace/name`, from its config dump.
    async fn ztunnel_pods(&self) -> Vec<String> {
        let text = quicmesh_lab::mesh::netns_http_get(
            &self.node_netns(),
            "127.0.0.1:15000".parse().unwrap(),
            "/config_dump",
        )
        .await
        .unwrap();
        quicmesh_lab::ztunnels::enrolled_pods(&serde_json::from_str(&text).unwrap())
    }

    /// Whether ztunnel's capture rules are in the pod's namespace.
    fn captured(&self, pod: &TestPod) -> bool {
        self.lab
            .exec(&pod.netns, &["nft", "list", "table", "inet", "quicmesh"])
            .is_ok()
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        quicmesh_lab::mesh::sum_metric(&self.health("/metrics").await.unwrap(), name, labels)
    }

    /// Polls `cond` until it holds (at most [`STEP`]).
    async fn until<'a, F, Fut>(&'a self, what: &str, cond: F)
    where
        F: Fn(&'a Cluster) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + STEP;
        while !cond(self).await {
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {STEP:?}\n---- agent log ----\n{}\n---- ztunnel log ----\n{}",
                    quicmesh_lab::mesh::file_tail(&self.agent_log(), 40),
                    self.ztunnels.log_tail(1, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn namespace(&mut self, name: &str, ambient: bool) {
        self.namespaces.retain(|(n, _)| n != name);
        self.namespaces.push((name.into(), ambient));
        self.write_state();
    }

    /// A pod: its network namespace made, and it written into the cluster
    /// (scheduled on node1), as an API server has it before the runtime
    /// runs the plugin.
    fn add_pod(&mut self, namespace: &str, name: &str) -> TestPod {
        let info = self
            .lab
            .add_pod(&PodSpec {
                name: format!("{namespace}.{name}"),
                node: 1,
            })
            .unwrap();
        let pod = TestPod {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{namespace}-{name}"),
            labels: json!({}),
            netns: info.netns,
            ip: info.ip.to_string(),
        };
        self.pods.push(pod.clone());
        self.write_state();
        pod
    }

    fn relabel(&mut self, pod: &TestPod, labels: Value) {
        for p in self.pods.iter_mut().filter(|p| p.uid == pod.uid) {
            p.labels = labels.clone();
        }
        self.write_state();
    }

    fn write_state(&self) {
        let mut text = String::new();
        for (ns, ambient) in &self.namespaces {
            let labels = if *ambient {
                json!({"quicmesh.io/dataplane-mode": "ambient"})
            } else {
                json!({})
            };
            let doc = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}});
            text.push_str(&format!("---\n{}", serde_yaml::to_string(&doc).unwrap()));
        }
        for p in &self.pods {
            let doc = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": p.name, "namespace": p.namespace, "uid": p.uid, "labels": p.labels},
                "spec": {"nodeName": "node1", "serviceAccountName": "app", "containers": [{"name": "app"}]},
                "status": {"podIP": p.ip, "podIPs": [{"ip": p.ip}], "conditions": [{"type": "Ready", "status": "True"}]}});
            text.push_str(&format!("---\n{}", serde_yaml::to_string(&doc).unwrap()));
        }
        let tmp = self.dir.path().join("cluster.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("state/cluster.yaml")).unwrap();
    }

    /// The chained network config for `command`, as libcni writes it.
    fn config(&self, prev: Option<Value>) -> Vec<u8> {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "quicmesh-cni",
            "agentSocket": self.plugin_socket(),
            "timeout": "10s",
        });
        if let Some(p) = prev {
            c["prevResult"] = p;
        }
        serde_json::to_vec(&c).unwrap()
    }

    fn cni(&self, command: &str, pod: &TestPod) -> Answer {
        self.cni_as(command, pod, None)
    }

    fn cni_as(&self, command: &str, pod: &TestPod, uid: Option<u32>) -> Answer {
        let prev = (command != "DEL").then(|| pod.prev_result());
        run_plugin(&runtime_env(command, pod), &self.config(prev), uid)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- agent log (tail) ----\n{}",
                quicmesh_lab::mesh::file_tail(&self.agent_log(), 60)
            );
            self.ztunnels.print_tails(40);
        }
        self.stop_agent();
        self.ztunnels.stop_all();
    }
}

/// A plugin's environment.
type Env = Vec<(&'static str, String)>;

/// The environment containerd gives a plugin for `pod`.
fn runtime_env(command: &str, pod: &TestPod) -> Env {
    vec![
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", pod.container_id()),
        (
            "CNI_NETNS",
            Lab::netns_path(&pod.netns).display().to_string(),
        ),
        ("CNI_IFNAME", "eth0".into()),
        ("CNI_ARGS", pod.cni_args()),
        ("CNI_PATH", "/opt/cni/bin".into()),
    ]
}

fn bare_config(socket: &Path, extra: Value) -> Vec<u8> {
    let mut c = json!({"cniVersion": "1.1.0", "name": "net", "type": "quicmesh-cni", "agentSocket": socket});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    serde_json::to_vec(&c).unwrap()
}

/// Everything that needs no agent: VERSION, bad input of every kind, and
/// the agent being absent (try again later; STATUS: not available).
#[test]
fn version_bad_input_and_an_absent_agent_get_the_specs_answers() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("no-agent.sock");
    let pod = TestPod {
        namespace: "shop".into(),
        name: "web".into(),
        uid: "u1".into(),
        labels: json!({}),
        // Any network namespace: the test's own.
        netns: String::new(),
        ip: "10.0.0.5".into(),
    };
    let mut env = runtime_env("ADD", &pod);
    env.retain(|(k, _)| *k != "CNI_NETNS");
    env.push(("CNI_NETNS", "/proc/self/ns/net".into()));
    let with = |env: &[(&'static str, String)], k: &'static str, v: &str| {
        let mut e: Vec<_> = env.iter().filter(|(x, _)| *x != k).cloned().collect();
        e.push((k, v.to_string()));
        e
    };
    let prev = json!({"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.5/24"}]});
    let add_conf = bare_config(&nowhere, json!({"prevResult": prev}));

    // VERSION answers with or without a config.
    for stdin in [&b""[..], br#"{"cniVersion":"1.0.0"}"#] {
        let a = run_plugin(&[("CNI_COMMAND", "VERSION".into())], stdin, None);
        a.ok();
        assert_eq!(
            a.json()["supportedVersions"],
            json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
    }

    // Bad input, each with its code; the error carries the config's version.
    let cases: Vec<(Env, Vec<u8>, u64)> = vec![
        (env.clone(), b"{not json".to_vec(), 6),
        (env.clone(), vec![b' '; (1 << 20) + 1], 6),
        (env.clone(), bare_config(&nowhere, json!({"name": null})), 7),
        (
            env.clone(),
            bare_config(&nowhere, json!({"timeout": "forever"})),
            7,
        ),
        (
            env.clone(),
            bare_config(&nowhere, json!({"cniVersion": "0.2.0"})),
            1,
        ),
        // ADD is chained: it needs a prevResult.
        (env.clone(), bare_config(&nowhere, json!({})), 7),
        (with(&env, "CNI_COMMAND", "BOGUS"), add_conf.clone(), 4),
        (with(&env, "CNI_NETNS", ""), add_conf.clone(), 4),
        (with(&env, "CNI_CONTAINERID", ""), add_conf.clone(), 4),
        (
            with(&env, "CNI_NETNS", "/var/run/netns/does-not-exist"),
            add_conf.clone(),
            100,
        ),
        (
            with(&env, "CNI_NETNS", "/proc/self/ns/uts"),
            add_conf.clone(),
            100,
        ),
        (
            with(&env, "CNI_NETNS", "/etc/hostname"),
            add_conf.clone(),
            100,
        ),
        // Input fine, agent absent: try again later.
        (env.clone(), add_conf.clone(), 11),
        (with(&env, "CNI_COMMAND", "CHECK"), add_conf.clone(), 11),
        (
            with(&env, "CNI_COMMAND", "DEL"),
            bare_config(&nowhere, json!({})),
            11,
        ),
        (
            with(&env, "CNI_COMMAND", "STATUS"),
            bare_config(&nowhere, json!({})),
            50,
        ),
    ];
    for (env, stdin, want) in cases {
        let a = run_plugin(&env, &stdin, None);
        let v = a.json();
        assert_eq!(a.code(), want, "{env:?}: {a:?}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{a:?}");
        assert!(a.stderr.contains(v["msg"].as_str().unwrap()), "{a:?}");
        if want != 1 && want != 6 {
            assert_eq!(v["cniVersion"], "1.1.0", "{a:?}");
        }
    }
    let a = run_plugin(&env, &add_conf, None);
    assert!(
        a.json()["msg"]
            .as_str()
            .unwrap()
            .contains(&*nowhere.to_string_lossy()),
        "the error names the socket: {a:?}"
    );

    // A DEL without a namespace is fine (it may be gone); GC has nothing
    // to do; a container that is no Kubernetes pod is passed through.
    let a = run_plugin(
        &with(&with(&env, "CNI_COMMAND", "GC"), "CNI_NETNS", ""),
        &bare_config(&nowhere, json!({})),
        None,
    );
    assert_eq!((a.exit, a.stdout.as_str()), (0, ""), "{a:?}");
    let plain = with(&env, "CNI_ARGS", "IgnoreUnknown=1");
    let a = run_plugin(&plain, &add_conf, None);
    a.ok();
    assert_eq!(a.json(), prev, "prevResult passed through");
    let a = run_plugin(
        &with(&plain, "CNI_COMMAND", "DEL"),
        &bare_config(&nowhere, json!({})),
        None,
    );
    assert_eq!((a.exit, a.stdout.as_str()), (0, ""), "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_check_del_of_ambient_and_other_pods_and_namespace_label_flips() {
    let mut c = Cluster::start().await;
    c.namespace("mesh", true);
    c.namespace("plain", false);
    let a = c.add_pod("mesh", "a");
    let b = c.add_pod("plain", "b");

    // ADD of an ambient pod: enrolled (captured) once it answers, and
    // prevResult comes back unchanged, with the config's version.
    let ans = c.cni("ADD", &a);
    ans.ok();
    let mut want = a.prev_result();
    want["cniVersion"] = json!("1.0.0");
    assert_eq!(ans.json(), want);
    assert_eq!(c.ztunnel_pods().await, ["mesh/a"]);
    assert!(c.captured(&a));
    let held = c.agent_pods().await;
    assert_eq!(held["pods"][0]["enrolled"], true, "{held:#}");
    assert_eq!(held["pods"][0]["ips"], json!([a.ip]));

    // CHECK: no output; the same ADD again changes nothing.
    let check = c.cni("CHECK", &a);
    assert_eq!((check.exit, check.stdout.as_str()), (0, ""), "{check:?}");
    c.cni("ADD", &a).ok();
    assert_eq!(c.ztunnel_pods().await, ["mesh/a"]);

    // ADD of a pod outside the mesh: answered, nothing enrolled, but its
    // namespace is held for a label flip.
    c.cni("ADD", &b).ok();
    assert_eq!(c.ztunnel_pods().await, ["mesh/a"]);
    assert!(!c.captured(&b));
    c.cni("CHECK", &b).ok();

    // Its namespace joins the mesh: the running pod is enrolled, no
    // restart, no plugin call.
    c.namespace("plain", true);
    c.until(
        "b enrolled after its namespace joined the mesh",
        |c| async move { c.ztunnel_pods().await == ["mesh/a", "plain/b"] },
    )
    .await;
    assert!(c.captured(&b));
    // ... and leaves it again.
    c.namespace("plain", false);
    c.until(
        "b removed after its namespace left the mesh",
        |c| async move { c.ztunnel_pods().await == ["mesh/a"] },
    )
    .await;
    assert!(!c.captured(&b));
    // A pod opting out by its own label leaves too, and comes back.
    c.relabel(&a, json!({"quicmesh.io/dataplane-mode": "none"}));
    c.until("a removed after opting out", |c| async move {
        c.ztunnel_pods().await.is_empty()
    })
    .await;
    assert!(!c.captured(&a));
    c.relabel(&a, json!({}));
    c.until("a back after opting in", |c| async move {
        c.ztunnel_pods().await == ["mesh/a"]
    })
    .await;

    // DEL: removed, no output; again (idempotent); and once the pod's
    // namespace is gone.
    let del = c.cni("DEL", &a);
    assert_eq!((del.exit, del.stdout.as_str()), (0, ""), "{del:?}");
    assert!(c.ztunnel_pods().await.is_empty());
    assert!(!c.captured(&a));
    c.cni("DEL", &a).ok();
    c.lab
        .remove_pod(&format!("{}.{}", a.namespace, a.name))
        .unwrap();
    c.cni("DEL", &a).ok();
    c.cni("DEL", &b).ok();
    assert_eq!(c.agent_pods().await["pods"], json!([]));

    // A pod the cluster never shows: try again later, after the agent's
    // bounded wait.
    let info = c
        .lab
        .add_pod(&PodSpec {
            name: "mesh.ghost".into(),
            node: 1,
        })
        .unwrap();
    let ghost = TestPod {
        name: "ghost".into(),
        uid: "uid-ghost".into(),
        netns: info.netns,
        ..a.clone()
    };
    let t = Instant::now();
    let ans = c.cni("ADD", &ghost);
    assert_eq!(ans.code(), 11);
    assert!(
        ans.json()["msg"]
            .as_str()
            .unwrap()
            .contains("not in the agent's view"),
        "{ans:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // STATUS while all is up; requests counted.
    let status = run_plugin(&[("CNI_COMMAND", "STATUS".into())], &c.config(None), None);
    assert_eq!((status.exit, status.stdout.as_str()), (0, ""), "{status:?}");
    assert!(
        c.metric(
            "quicmesh_cni_requests_total",
            &[("command", "ADD"), ("result", "ok")]
        )
        .await
            >= 3.0
    );
    assert_eq!(
        c.metric(
            "quicmesh_cni_requests_total",
            &[("command", "ADD"), ("result", "11")]
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ztunnel_down_during_add_leaves_nothing_behind_and_a_restarted_ztunnel_is_replayed() {
    let mut c = Cluster::start().await;
    c.namespace("mesh", true);
    let a = c.add_pod("mesh", "a");
    let b = c.add_pod("mesh", "b");
    c.cni("ADD", &a).ok();
    assert_eq!(c.ztunnel_pods().await, ["mesh/a"]);
    let syncs = c.agent_pods().await["ztunnel"]["syncs"].as_u64().unwrap();

    // ztunnel away: an ADD fails with "try again later", naming ztunnel,
    // and the agent lets go of the pod.
    c.ztunnels.stop(1).unwrap();
    let ans = c.cni("ADD", &b);
    assert_eq!(ans.code(), 11, "{ans:?}");
    assert!(
        ans.json()["msg"].as_str().unwrap().contains("ztunnel"),
        "{ans:?}"
    );
    let held = c.agent_pods().await;
    assert_eq!(held["pods"].as_array().unwrap().len(), 1, "{held:#}");
    assert_eq!(held["ztunnel"]["connected"], false);
    let ready = c.health("/healthz/ready").await.unwrap();
    assert!(ready.contains("ztunnel"), "{ready}");
    // The runtime cleans up after a failed ADD.
    c.cni("DEL", &b).ok();

    // ztunnel back: the agent replays what it holds, and nothing else.
    c.ztunnels.start(&c.lab, 1).await.unwrap();
    c.until("the agent re-synced the new ztunnel", |c| async move {
        let p = c.agent_pods().await;
        p["ztunnel"]["connected"] == true && p["ztunnel"]["syncs"].as_u64().unwrap() > syncs
    })
    .await;
    assert_eq!(c.ztunnel_pods().await, ["mesh/a"]);
    assert!(c.captured(&a));
    assert!(!c.captured(&b), "b half-enrolled");
    assert!(
        c.metric("quicmesh_cni_ztunnel_syncs_total", &[("kind", "snapshot")])
            .await
            >= 2.0
    );
    // The runtime retries: now it works.
    c.cni("ADD", &b).ok();
    assert_eq!(c.ztunnel_pods().await, ["mesh/a", "mesh/b"]);

    // A restart while the agent runs: replayed without a plugin call.
    let syncs = c.agent_pods().await["ztunnel"]["syncs"].as_u64().unwrap();
    c.ztunnels.stop(1).unwrap();
    c.ztunnels.start(&c.lab, 1).await.unwrap();
    c.until(
        "the agent re-synced the restarted ztunnel",
        |c| async move {
            let p = c.agent_pods().await;
            p["ztunnel"]["connected"] == true && p["ztunnel"]["syncs"].as_u64().unwrap() > syncs
        },
    )
    .await;
    assert_eq!(c.ztunnel_pods().await, ["mesh/a", "mesh/b"]);
    assert!(c.captured(&a) && c.captured(&b));
    c.until("ready again", |c| async move {
        c.health("/healthz/ready")
            .await
            .is_ok_and(|b| b == "ready\n")
    })
    .await;

    // The agent away: every command but GC says try again later (STATUS:
    // not available).
    c.stop_agent();
    assert_eq!(c.cni("ADD", &a).code(), 11);
    assert_eq!(c.cni("DEL", &a).code(), 11);
    let status = run_plugin(&[("CNI_COMMAND", "STATUS".into())], &c.config(None), None);
    assert_eq!(status.code(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_of_another_uid_is_refused_unanswered_and_counted() {
    let mut c = Cluster::start().await;
    c.namespace("mesh", true);
    let a = c.add_pod("mesh", "a");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&c.plugin_socket()),
        0o600,
        "the plugin socket is root's only"
    );
    // Widen the socket's mode (and its directory's) so that the peer check
    // is what stops the plugin.
    std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(c.plugin_socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(mode(&c.plugin_socket()), 0o666);
    let mut env = runtime_env("ADD", &a);
    // The namespace is opened before the agent is asked: one anyone can open.
    env.retain(|(k, _)| *k != "CNI_NETNS");
    env.push(("CNI_NETNS", "/proc/self/ns/net".into()));
    let ans = run_plugin(&env, &c.config(Some(a.prev_result())), Some(65534));
    assert_eq!(ans.code(), 11, "{ans:?}");
    assert!(c.ztunnel_pods().await.is_empty());
    assert_eq!(
        c.metric("quicmesh_cni_refusals_total", &[("reason", "peer_uid")])
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restart_sweeps_nothing_it_cannot_see_and_check_hands_the_namespace_back() {
    let mut c = Cluster::start().await;
    c.namespace("mesh", true);
    let a = c.add_pod("mesh", "a");
    c.cni("ADD", &a).ok();

    // A new agent holds no namespace: ztunnel's pods stay as they are
    // (it syncs by adds only, sweeping nothing).
    c.stop_agent();
    c.start_agent().await;
    let p = c.agent_pods().await;
    assert_eq!(p["pods"], json!([]), "{p:#}");
    assert_eq!(p["ztunnel"]["exact"], false, "{p:#}");
    assert_eq!(c.ztunnel_pods().await, ["mesh/a"]);
    assert!(c.captured(&a));
    assert_eq!(
        c.metric("quicmesh_cni_ztunnel_syncs_total", &[("kind", "adds")])
            .await,
        1.0
    );

    // CHECK hands the namespace over again: held and enrolled.
    c.cni("CHECK", &a).ok();
    let p = c.agent_pods().await;
    assert_eq!(p["pods"][0]["enrolled"], true, "{p:#}");
    // A label flip now reaches it.
    c.namespace("mesh", false);
    c.until(
        "a removed after its namespace left the mesh",
        |c| async move { c.ztunnel_pods().await.is_empty() },
    )
    .await;
    // And a DEL of a pod it never held still removes it from ztunnel.
    c.namespace("mesh", true);
    c.until(
        "a back",
        |c| async move { c.ztunnel_pods().await == ["mesh/a"] },
    )
    .await;
    c.stop_agent();
    c.start_agent().await;
    c.cni("DEL", &a).ok();
    assert!(c.ztunnel_pods().await.is_empty());
    assert!(!c.captured(&a));
}
