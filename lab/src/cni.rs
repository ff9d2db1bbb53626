//! The lab's container-runtime side of CNI: one real node agent per node
//! (`quicmesh-cni agent`, in the node's namespace, reading the same state
//! directory the lab's controller reads), and each pod's sandbox set up and
//! torn down by running the real plugin (`quicmesh-cni`) exactly as
//! containerd runs a chained plugin: the `CNI_*` environment, the network
//! config with the interface plugin's `prevResult` on stdin. So pods join
//! the mesh the way they do in Kubernetes, not through a lab-only path.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::mesh::{file_tail, netns_http_get};
use crate::net::{Lab, LogFormat, ProcHandle};
use crate::ztunnels::find_binary;

/// The agent's metrics/health and admin ports, in its node's namespace.
pub const AGENT_HEALTH: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15021);
pub const AGENT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 15022);

/// How long an agent has to become ready.
const START_WITHIN: Duration = Duration::from_secs(20);
/// A plugin run that outlives its own bound (10 s) by this much is killed.
const PLUGIN_GUARD: Duration = Duration::from_secs(30);

/// A pod as the runtime names it to the plugin.
#[derive(Debug, Clone)]
pub struct Sandbox<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// The pod's network namespace (its name under /var/run/netns).
    pub netns: &'a str,
    pub ip: Ipv4Addr,
}

impl Sandbox<'_> {
    fn container_id(&self) -> String {
        format!("lab-{}", self.uid)
    }
}

/// What the plugin answered.
#[derive(Debug, Clone)]
pub struct PluginRun {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

impl PluginRun {
    fn check(self, what: &str) -> Result<Self> {
        if self.exit != 0 {
            bail!(
                "CNI {what} failed (exit {}): {}{}",
                self.exit,
                self.stdout.trim(),
                self.stderr.trim()
            );
        }
        Ok(self)
    }
}

/// A pod as its node's agent holds it (its `/pods`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub enrolled: bool,
    pub identity_pending: bool,
}

/// The node agents of a lab.
pub struct Cni {
    dir: PathBuf,
    state: PathBuf,
    procs: Vec<Option<ProcHandle>>,
}

impl Cni {
    /// Nothing started yet; sockets and logs go in `dir`; the agents read
    /// the cluster from the manifests in `state`.
    pub fn new(dir: &Path, state: &Path, nodes: usize) -> Self {
        Cni {
            dir: dir.to_path_buf(),
            state: state.to_path_buf(),
            procs: (0..nodes).map(|_| None).collect(),
        }
    }

    pub fn plugin_socket(&self, node: usize) -> PathBuf {
        self.dir.join(format!("cni-n{node}.sock"))
    }

    pub fn log_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("cni-agent-n{node}.log"))
    }

    pub fn log_tail(&self, node: usize, lines: usize) -> String {
        file_tail(&self.log_path(node), lines)
    }

    /// Starts node's agent (stopping a running one first), talking to the
    /// ztunnel at `ztunnel_socket`, and waits until it is ready.
    pub async fn start(&mut self, lab: &Lab, node: usize, ztunnel_socket: &Path) -> Result<()> {
        self.stop(node);
        let bin = find_binary("quicmesh-cni")?;
        let s = |p: &Path| p.display().to_string();
        let args = [
            "agent".to_string(),
            "--node".into(),
            format!("node{node}"),
            "--source".into(),
            format!("files:{}", self.state.display()),
            "--ztunnel-socket".into(),
            s(ztunnel_socket),
            "--plugin-socket".into(),
            s(&self.plugin_socket(node)),
            "--health-addr".into(),
            AGENT_HEALTH.to_string(),
            "--admin-addr".into(),
            AGENT_ADMIN.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = lab.spawn_quicmesh(
            &lab.node(node).netns,
            &bin,
            &args,
            &self.log_path(node),
            LogFormat::Plain,
        )?;
        self.procs[node - 1] = Some(proc);
        let deadline = Instant::now() + START_WITHIN;
        let netns = lab.node(node).netns.clone();
        loop {
            let ready = netns_http_get(&netns, AGENT_HEALTH, "/healthz/ready").await;
            if ready.as_deref().is_ok_and(|b| b == "ready\n") {
                return Ok(());
            }
            if !self.procs[node - 1]
                .as_ref()
                .is_some_and(|p| p.is_running())
            {
                bail!(
                    "the CNI agent on node{node} exited:\n{}",
                    self.log_tail(node, 30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the CNI agent on node{node} not ready within {START_WITHIN:?} ({}):\n{}",
                    ready.unwrap_or_else(|e| e.to_string()).trim(),
                    self.log_tail(node, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self, node: usize) {
        if let Some(p) = self.procs.get_mut(node - 1).and_then(Option::take) {
            let _ = p.kill();
        }
    }

    pub fn stop_all(&mut self) {
        for p in self.procs.iter_mut().filter_map(Option::take) {
            let _ = p.kill();
        }
    }

    /// The network config containerd hands a chained plugin.
    fn config(&self, node: usize, prev: Option<Value>) -> Vec<u8> {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": "lab",
            "type": "quicmesh-cni",
            "agentSocket": self.plugin_socket(node),
            "timeout": "10s",
        });
        if let Some(p) = prev {
            c["prevResult"] = p;
        }
        serde_json::to_vec(&c).expect("serializable")
    }

    /// Runs the plugin with `command` for `pod` on `node`, in the node's
    /// namespace, as the runtime would.
    pub async fn run(
        &self,
        lab: &Lab,
        node: usize,
        command: &str,
        pod: &Sandbox<'_>,
    ) -> Result<PluginRun> {
        let bin = find_binary("quicmesh-cni")?;
        let cni_path = bin.parent().unwrap_or(Path::new("/")).to_path_buf();
        let netns_path = Lab::netns_path(pod.netns);
        // The interface plugin's result: the lab wired eth0 and its address.
        let prev = (command != "DEL").then(|| {
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "sandbox": netns_path}],
                "ips": [{"address": format!("{}/32", pod.ip), "interface": 0}],
            })
        });
        let stdin = self.config(node, prev);
        let env = vec![
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", pod.container_id()),
            ("CNI_NETNS", netns_path.display().to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            (
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                    pod.namespace,
                    pod.name,
                    pod.container_id(),
                    pod.uid
                ),
            ),
            ("CNI_PATH", cni_path.display().to_string()),
        ];
        let node_netns = lab.node(node).netns.clone();
        tokio::task::spawn_blocking(move || invoke(&node_netns, &bin, &env, &stdin))
            .await
            .context("the plugin's runner panicked")?
    }

    /// ADD: the pod's network joins the mesh (if its namespace is in it);
    /// when this returns, it is enrolled (or not meant to be).
    pub async fn add(&self, lab: &Lab, node: usize, pod: &Sandbox<'_>) -> Result<()> {
        self.run(lab, node, "ADD", pod).await?.check("ADD")?;
        Ok(())
    }

    /// DEL: the pod leaves (idempotent).
    pub async fn del(&self, lab: &Lab, node: usize, pod: &Sandbox<'_>) -> Result<()> {
        self.run(lab, node, "DEL", pod).await?.check("DEL")?;
        Ok(())
    }

    /// Node's agent's `/pods`, whole.
    pub async fn status(&self, lab: &Lab, node: usize) -> Result<Value> {
        let text = netns_http_get(&lab.node(node).netns, AGENT_ADMIN, "/pods").await?;
        serde_json::from_str(&text).context("the agent's /pods")
    }

    /// How node's agent holds each pod, by uid.
    pub async fn held(&self, lab: &Lab, node: usize) -> Result<Vec<(String, Held)>> {
        let v = self.status(lab, node).await?;
        Ok(v["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["uid"].as_str().unwrap_or_default().to_string(),
                    Held {
                        enrolled: p["enrolled"] == true,
                        identity_pending: p["identityPending"] == true,
                    },
                )
            })
            .collect())
    }

    /// Times node's agent has brought its ztunnel up to date, and whether
    /// it is connected now.
    pub async fn syncs(&self, lab: &Lab, node: usize) -> Result<(u64, bool)> {
        let v = self.status(lab, node).await?;
        Ok((
            v["ztunnel"]["syncs"].as_u64().unwrap_or(0),
            v["ztunnel"]["connected"] == true,
        ))
    }

    /// Waits until node's agent has re-synced its ztunnel since it had
    /// `after` syncs (its replay after a ztunnel restart).
    pub async fn wait_resync(&self, lab: &Lab, node: usize, after: u64) -> Result<()> {
        let deadline = Instant::now() + START_WITHIN;
        loop {
            if let Ok((n, true)) = self.syncs(lab, node).await {
                if n > after {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the CNI agent on node{node} did not re-sync ztunnel within {START_WITHIN:?}:\n{}",
                    self.log_tail(node, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Prints every agent's log tail (for a failing test).
    pub fn print_tails(&self, lines: usize) {
        for node in 1..=self.procs.len() {
            eprintln!(
                "---- CNI agent node{node} log (tail) ----\n{}",
                self.log_tail(node, lines)
            );
        }
    }
}

impl Drop for Cni {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Runs `bin` in `netns` with exactly `env` (and a PATH), `stdin` written
/// to it; killed past [`PLUGIN_GUARD`].
fn invoke(netns: &str, bin: &Path, env: &[(&str, String)], stdin: &[u8]) -> Result<PluginRun> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(bin)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin that fails early may not read it all.
        let _ = input.write_all(stdin);
    }
    let deadline = Instant::now() + PLUGIN_GUARD;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the CNI plugin ran for over {PLUGIN_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output()?;
    Ok(PluginRun {
        exit: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
