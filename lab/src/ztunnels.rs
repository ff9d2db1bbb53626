//! The lab's node proxies: one real `ztunnel` process per node, in the
//! node's namespace, started, waited for, stopped and re-synced in one
//! place for every harness (the static [`crate::mesh::Mesh`] and the
//! controller-driven [`crate::local::Cluster`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quicmesh_core::enrollment::{Client, Enrolled};
use quicmesh_proto::enrollment::Pod;

use crate::net::{Lab, LogFormat, ProcHandle};

/// Where the `ztunnel` (or any quicmesh) binary is: `$QUICMESH_<NAME>`, or
/// beside the running executable (cargo puts binaries in `target/<profile>/`,
/// tests in its `deps/`).
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let var = format!("QUICMESH_{}", name.to_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find the {name} binary beside {}; build it (cargo build --bins) or set {var}",
        exe.display()
    )
}

/// Where the ztunnels get identities and config.
#[derive(Debug, Clone)]
pub enum Source {
    /// A static workload file and a development CA directory.
    Files { workloads: PathBuf, dev_ca: PathBuf },
    /// The controller at `addr` of trust domain `trust_domain`, trusted
    /// through `bundle`; each node authenticates with the token in
    /// `<dir>/token-n<node>`.
    Controller {
        addr: SocketAddr,
        bundle: PathBuf,
        trust_domain: String,
    },
}

fn open_netns(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path)
        .with_context(|| format!("opening network namespace {}", path.display()))
}

/// The ztunnel of every node of a lab.
pub struct Ztunnels {
    dir: PathBuf,
    source: Source,
    procs: Vec<Option<ProcHandle>>,
    log_format: LogFormat,
    /// Flags added to every ztunnel started from now on (after
    /// `QUICMESH_ZTUNNEL_ARGS`, so they win).
    pub extra_args: Vec<String>,
}

/// How long a ztunnel has to open its enrollment socket.
const START_WITHIN: Duration = Duration::from_secs(20);

impl Ztunnels {
    /// Nothing started yet; files go in `dir`.
    pub fn new(dir: &Path, source: Source, nodes: usize) -> Self {
        Ztunnels {
            dir: dir.to_path_buf(),
            source,
            procs: (0..nodes).map(|_| None).collect(),
            log_format: LogFormat::Plain,
            extra_args: Vec::new(),
        }
    }

    /// How each ztunnel logs from its next start (plain text until set).
    pub fn set_log_format(&mut self, format: LogFormat) {
        self.log_format = format;
    }

    pub fn nodes(&self) -> usize {
        self.procs.len()
    }

    pub fn enroll_socket(&self, node: usize) -> PathBuf {
        self.dir.join(format!("ztunnel-n{node}.sock"))
    }

    pub fn log_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("ztunnel-n{node}.log"))
    }

    pub fn token_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("token-n{node}"))
    }

    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(self.log_path(node)).unwrap_or_default()
    }

    pub fn log_tail(&self, node: usize, lines: usize) -> String {
        crate::mesh::file_tail(&self.log_path(node), lines)
    }

    pub fn pid(&self, node: usize) -> Option<u32> {
        self.procs.get(node - 1)?.as_ref().map(|p| p.pid())
    }

    /// The flags of node's ztunnel.
    fn args(&self, node: usize) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        let mut args = vec!["--node".to_string(), format!("node{node}")];
        match &self.source {
            Source::Files { workloads, dev_ca } => args.extend([
                "--workloads".into(),
                path(workloads),
                "--dev-ca-dir".into(),
                path(dev_ca),
            ]),
            Source::Controller {
                addr,
                bundle,
                trust_domain,
            } => args.extend([
                "--controller".into(),
                addr.to_string(),
                "--trust-domain".into(),
                trust_domain.clone(),
                "--controller-identity".into(),
                crate::local::controller_identity(trust_domain),
                "--bootstrap-token".into(),
                path(&self.token_path(node)),
                "--trust-bundle".into(),
                path(bundle),
            ]),
        }
        args.extend([
            "--enroll-socket".into(),
            path(&self.enroll_socket(node)),
            "--drain-deadline".into(),
            "2s".into(),
        ]);
        // Extra ztunnel flags for experiments (benchmarks' tuning runs), e.g.
        // QUICMESH_ZTUNNEL_ARGS="--udp-buffer 212992".
        let extra = std::env::var("QUICMESH_ZTUNNEL_ARGS").unwrap_or_default();
        args.extend(extra.split_whitespace().map(String::from));
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Starts node's ztunnel (stopping a running one first) and waits until
    /// its enrollment socket answers.
    pub async fn start(&mut self, lab: &Lab, node: usize) -> Result<()> {
        self.spawn(lab, node)?;
        self.wait(node).await
    }

    /// Starts every node's ztunnel: all spawned, then each waited for.
    pub async fn start_all(&mut self, lab: &Lab) -> Result<()> {
        for node in 1..=self.nodes() {
            self.spawn(lab, node)?;
        }
        for node in 1..=self.nodes() {
            self.wait(node).await?;
        }
        Ok(())
    }

    fn spawn(&mut self, lab: &Lab, node: usize) -> Result<()> {
        self.stop(node)?;
        let sock = self.enroll_socket(node);
        let _ = std::fs::remove_file(&sock);
        let bin = find_binary("ztunnel")?;
        let args = self.args(node);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let proc = lab.spawn_quicmesh(
            &lab.node(node).netns,
            &bin,
            &args,
            &self.log_path(node),
            self.log_format,
        )?;
        self.procs[node - 1] = Some(proc);
        Ok(())
    }

    async fn wait(&self, node: usize) -> Result<()> {
        let sock = self.enroll_socket(node);
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            if sock.exists() && Client::connect(&sock).await.is_ok() {
                return Ok(());
            }
            if let Some(z) = &self.procs[node - 1] {
                if !z.is_running() {
                    bail!("ztunnel on node{node} exited:\n{}", self.log_tail(node, 30));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "ztunnel on node{node} did not open its enrollment socket within {START_WITHIN:?}:\n{}",
            self.log_tail(node, 30)
        )
    }

    /// Stops node's ztunnel (SIGTERM: it drains its pods, leaving their
    /// rules so their traffic fails closed until a ztunnel is back).
    pub fn stop(&mut self, node: usize) -> Result<()> {
        if let Some(z) = self.procs.get_mut(node - 1).and_then(Option::take) {
            z.kill()?;
        }
        Ok(())
    }

    /// Restarts node's ztunnel and re-syncs it with a snapshot of `pods`
    /// (those enrolled there, each with the path of its network namespace),
    /// as a node agent does when a ztunnel starts.
    pub async fn restart(
        &mut self,
        lab: &Lab,
        node: usize,
        pods: Vec<(Pod, PathBuf)>,
    ) -> Result<Enrolled> {
        self.start(lab, node).await?;
        let pods = pods
            .into_iter()
            .map(|(pod, netns)| Ok((pod, open_netns(&netns)?)))
            .collect::<Result<Vec<_>>>()?;
        Client::connect(&self.enroll_socket(node))
            .await?
            .snapshot(pods)
            .await
            .with_context(|| format!("re-syncing node{node}'s ztunnel"))
    }

    /// Enrolls `pod`, whose network namespace is at `netns`, in node's
    /// ztunnel (the namespace is opened here and sent as a descriptor, as
    /// the CNI plugin does).
    pub async fn enroll(&self, node: usize, pod: Pod, netns: &Path) -> Result<Enrolled> {
        let name = pod.name.clone();
        let ns = open_netns(netns)?;
        Client::connect(&self.enroll_socket(node))
            .await?
            .add(pod, &ns)
            .await
            .with_context(|| format!("enrolling {name}"))
    }

    /// Removes the pod `uid` from node's ztunnel.
    pub async fn unenroll(&self, node: usize, uid: &str) -> Result<()> {
        Client::connect(&self.enroll_socket(node))
            .await?
            .remove(uid)
            .await?;
        Ok(())
    }

    /// Prints every node's log tail (for a failing test).
    pub fn print_tails(&self, lines: usize) {
        for node in 1..=self.nodes() {
            eprintln!(
                "---- ztunnel node{node} log (tail) ----\n{}",
                self.log_tail(node, lines)
            );
        }
    }
}

impl Ztunnels {
    /// Stops every ztunnel (harnesses do so before tearing down the lab).
    pub fn stop_all(&mut self) {
        for z in self.procs.iter_mut().filter_map(Option::take) {
            let _ = z.kill();
        }
    }
}

impl Drop for Ztunnels {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The pods a ztunnel's `/config_dump` lists as enrolled, as
/// `namespace/name`, sorted.
pub fn enrolled_pods(dump: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = dump["enrolledPods"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                p["namespace"].as_str().unwrap_or_default(),
                p["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    out.sort();
    out
}
