//! Real network topologies for tests, built from Linux network namespaces.
//!
//! This module owns everything a [`Lab`] creates: the namespaces (one per node,
//! pod and external host, plus one "fabric" namespace holding a bridge), the veth
//! pairs between them, addresses and routes, the `inet qmlab` nftables table used
//! for link counters, tc qdiscs on node links, and every process started through
//! [`Lab::spawn`]. Dropping the [`Lab`] (also during a panic unwind) kills those
//! processes and deletes the namespaces, which removes every interface with them.
//!
//! Addressing: node `i` has `10.99.0.<i>/24` on its interface `link` (peer `n<i>`
//! on bridge `br0` in `<prefix>-f`) and pod CIDR `10.244.<i>.0/24`; external host
//! `k` has `10.99.0.<100+k>/24` on `eth0`. The `m`-th pod of node `i` (m from 2,
//! never reused) gets `10.244.<i>.<m>/32` on `eth0`, wired point-to-point to the
//! node interface `p<m>` carrying `10.244.<i>.1/32`.
//!
//! Default prefixes are `qm<pid>x<n>`, so [`sweep_stale`] can delete namespaces
//! whose owning process has died. Every external command has a bounded run time.

use anyhow::{anyhow, bail, Context, Result};
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Run time limit of the `ip`/`nft`/`tc`/`sysctl` helper commands.
const CMD_TIMEOUT: Duration = Duration::from_secs(10);
/// Run time limit of [`Lab::exec`].
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a spawned process gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
const NETNS_DIR: &str = "/var/run/netns";

/// Set in every namespace: IPv4 only (no IPv6 DAD delays), no reverse-path filter.
const SYSCTLS: &[&str] = &[
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
];

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Serialises `ip netns add` in this process (its first use sets up a shared mount).
static NETNS_ADD: Mutex<()> = Mutex::new(());

/// What to build: `nodes` nodes, the given pods and `externals` hosts on the fabric.
#[derive(Debug, Clone, Default)]
pub struct TopologySpec {
    pub nodes: usize,
    pub pods: Vec<PodSpec>,
    pub externals: usize,
}

/// A pod named `name` on node `node` (1-based).
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub name: String,
    pub node: usize,
}

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub index: usize,
    pub netns: String,
    pub link_ip: Ipv4Addr,
    pub pod_cidr: String,
}

#[derive(Debug, Clone)]
pub struct PodInfo {
    pub name: String,
    pub node: usize,
    pub netns: String,
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// A running topology; everything is torn down on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    nodes: Vec<NodeInfo>,
    pods: Vec<PodInfo>,
    externals: Vec<HostInfo>,
    /// Namespaces created so far, in creation order.
    namespaces: Vec<String>,
    /// Next pod host number per node (index 0 is node 1).
    next_pod: Vec<u8>,
    procs: Mutex<Vec<ProcHandle>>,
}

/// A process started with [`Lab::spawn`], leader of its own process group.
#[derive(Debug, Clone)]
pub struct ProcHandle {
    pid: u32,
    netns: String,
    child: Arc<Mutex<Child>>,
}

impl ProcHandle {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Namespace the process was started in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn is_running(&self) -> bool {
        matches!(lock(&self.child).try_wait(), Ok(None))
    }

    /// Wait up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = lock(&self.child).try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM the process group, SIGKILL it after 2 s, and reap the process.
    pub fn kill(&self) -> Result<()> {
        terminate_all(std::slice::from_ref(self));
        Ok(())
    }

    fn signal_group(&self, sig: libc::c_int) {
        // Only signal while the leader is unreaped, so its pid cannot have been reused.
        let mut child = lock(&self.child);
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(-(self.pid as libc::pid_t), sig) };
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGTERM all, wait up to [`TERM_GRACE`] in total, then SIGKILL the rest and reap.
fn terminate_all(procs: &[ProcHandle]) {
    for p in procs {
        p.signal_group(libc::SIGTERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    for p in procs {
        let left = deadline.saturating_duration_since(Instant::now());
        if matches!(p.wait_timeout(left), Ok(None)) {
            p.signal_group(libc::SIGKILL);
        }
    }
    for p in procs {
        let mut child = lock(&p.child);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Run a command to completion, killing its process group after `timeout`.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    tracing::trace!(cmd = %desc, "run");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().with_context(|| format!("spawning {desc}"))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.with_context(|| format!("waiting for {desc}")),
        Err(_) => {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = rx.recv_timeout(Duration::from_secs(2));
            bail!("{desc} timed out after {timeout:?} and was killed")
        }
    }
}

/// Run a command; error (with its stderr) unless it exits successfully.
fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    let out = run_with_timeout(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{desc} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// `ip <cmd>`; `cmd` is split on whitespace (none of our arguments contain any).
fn ip(cmd: &str) -> Result<Output> {
    run_ok(Command::new("ip").args(cmd.split_whitespace()), CMD_TIMEOUT)
}

/// `ip -n <netns> <cmd>`
fn ipn(netns: &str, cmd: &str) -> Result<Output> {
    ip(&format!("-n {netns} {cmd}"))
}

fn in_netns(netns: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    run_ok(
        Command::new("ip").args(["netns", "exec", netns]).args(args),
        timeout,
    )
}

fn nft(netns: &str, script: &str) -> Result<Output> {
    in_netns(netns, &["nft", script], CMD_TIMEOUT)
}

fn create_netns(name: &str, sysctls: &[&str]) -> Result<()> {
    {
        let _guard = lock(&NETNS_ADD);
        ip(&format!("netns add {name}"))?;
    }
    ipn(name, "link set dev lo up")?;
    let args = [&["sysctl", "-q", "-w"], SYSCTLS, sysctls].concat();
    in_netns(name, &args, CMD_TIMEOUT)?;
    Ok(())
}

/// Names of all named network namespaces on the host.
fn list_netns() -> Result<Vec<String>> {
    match std::fs::read_dir(NETNS_DIR) {
        Ok(dir) => Ok(dir
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).context("listing /var/run/netns"),
    }
}

/// Kill every process in `netns`, then delete it. Returns whether it was deleted.
fn destroy_netns(netns: &str) -> Result<bool> {
    // Per-namespace /etc files (`ip netns exec` mounts them), e.g. hosts.
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(netns));
    if !Lab::netns_path(netns).exists() {
        return Ok(false);
    }
    if let Ok(out) = ip(&format!("netns pids {netns}")) {
        let pids: Vec<libc::pid_t> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        for &pid in &pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while pids.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    match ip(&format!("netns del {netns}")) {
        Ok(_) => Ok(true),
        Err(_) if !Lab::netns_path(netns).exists() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Wait (up to 2 s) until `pid` has entered `netns` (or died), so that a process
/// returned by [`Lab::spawn`] is always visible to `ip netns pids`.
fn wait_until_in_netns(pid: u32, netns: &str) {
    let Ok(want) = std::fs::metadata(Lab::netns_path(netns)) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match std::fs::metadata(format!("/proc/{pid}/ns/net")) {
            Ok(m) if (m.dev(), m.ino()) != (want.dev(), want.ino()) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            _ => return,
        }
    }
}

/// Whether `pid` exists and is not a zombie.
fn pid_alive(pid: libc::pid_t) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
}

/// Owner pid of a namespace named `qm<pid>x<n>-...` (a default-prefix lab).
fn owner_pid(netns: &str) -> Option<libc::pid_t> {
    let (prefix, _) = netns.split_once('-')?;
    let (pid, n) = prefix.strip_prefix("qm")?.split_once('x')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n)).then(|| pid.parse().ok())?
}

/// Delete the namespaces of default-prefix labs whose owning process is dead.
/// Returns how many namespaces were deleted.
pub fn sweep_stale() -> Result<usize> {
    let mut deleted = 0;
    for ns in list_netns()? {
        let Some(pid) = owner_pid(&ns) else { continue };
        if pid as u32 == std::process::id() || pid_alive(pid) {
            continue;
        }
        match destroy_netns(&ns) {
            Ok(true) => deleted += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(netns = %ns, "sweeping stale namespace: {e:#}"),
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "swept stale lab namespaces");
    }
    Ok(deleted)
}

/// Delete every namespace of the lab with `prefix` (named `<prefix>-*`), killing the
/// processes inside. Returns how many namespaces were deleted.
pub fn destroy_prefix(prefix: &str) -> Result<usize> {
    let mut names: Vec<String> = list_netns()?
        .into_iter()
        .filter(|n| n.strip_prefix(prefix).is_some_and(|r| r.starts_with('-')))
        .collect();
    // Pods and hosts first, the fabric last.
    names.sort_by_key(|n| n.ends_with("-f"));
    let results: Vec<_> = names.iter().map(|ns| destroy_netns(ns)).collect();
    let deleted = results.iter().filter(|r| matches!(r, Ok(true))).count();
    // Report the first failure, after trying every namespace.
    results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(deleted)
}

/// Bytes allowed in prefixes and pod names (which become namespace file names).
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.".contains(&b)
}

fn check_pod_name(name: &str) -> Result<()> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let reserved = name == "f"
        || ["n", "x"]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(digits));
    if name.is_empty() || name.len() > 64 || !name.bytes().all(name_byte) || reserved {
        bail!("invalid pod name {name:?} (use [A-Za-z0-9._-]; f, n<i>, x<k> are reserved)");
    }
    Ok(())
}

fn link_ip(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, node as u8)
}

impl Lab {
    /// Build the topology under a fresh `qm<pid>x<n>` prefix.
    pub fn new(spec: &TopologySpec) -> Result<Lab> {
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        Self::with_prefix(spec, &format!("qm{}x{n}", std::process::id()))
    }

    /// Build the topology under a fixed prefix; fails if a lab with it already exists.
    pub fn with_prefix(spec: &TopologySpec, prefix: &str) -> Result<Lab> {
        if let Err(e) = sweep_stale() {
            tracing::warn!("sweeping stale labs: {e:#}");
        }
        if !(1..=99).contains(&spec.nodes) || spec.externals > 150 {
            bail!("a lab needs 1..=99 nodes and at most 150 externals");
        }
        if prefix.is_empty() || prefix.len() > 32 || !prefix.bytes().all(name_byte) {
            bail!("invalid lab prefix {prefix:?}");
        }
        let taken = format!("{prefix}-");
        if list_netns()?.iter().any(|n| n.starts_with(&taken)) {
            bail!("namespaces with prefix {prefix:?} already exist (destroy that lab first)");
        }
        let mut lab = Lab {
            prefix: prefix.to_string(),
            nodes: Vec::new(),
            pods: Vec::new(),
            externals: Vec::new(),
            namespaces: Vec::new(),
            next_pod: vec![2; spec.nodes],
            procs: Mutex::new(Vec::new()),
        };
        // On error `lab` is dropped here, which tears down whatever was built.
        lab.build(spec)
            .with_context(|| format!("building lab {prefix}"))?;
        Ok(lab)
    }

    fn build(&mut self, spec: &TopologySpec) -> Result<()> {
        let fabric = format!("{}-f", self.prefix);
        create_netns(&fabric, &[])?;
        self.namespaces.push(fabric.clone());
        ipn(&fabric, "link add name br0 type bridge")?;
        ipn(&fabric, "link set dev br0 up")?;
        for i in 1..=spec.nodes {
            let ns = format!("{}-n{i}", self.prefix);
            create_netns(&ns, &["net.ipv4.ip_forward=1"])?;
            self.namespaces.push(ns.clone());
            self.attach_to_fabric(&ns, "link", &format!("n{i}"), link_ip(i), spec.nodes)?;
            nft(
                &ns,
                "add table inet qmlab; add chain inet qmlab forward \
                 { type filter hook forward priority 0; policy accept; }",
            )?;
            self.nodes.push(NodeInfo {
                index: i,
                netns: ns,
                link_ip: link_ip(i),
                pod_cidr: format!("10.244.{i}.0/24"),
            });
        }
        for k in 1..=spec.externals {
            let ns = format!("{}-x{k}", self.prefix);
            create_netns(&ns, &[])?;
            self.namespaces.push(ns.clone());
            let addr = Ipv4Addr::new(10, 99, 0, (100 + k) as u8);
            self.attach_to_fabric(&ns, "eth0", &format!("x{k}"), addr, spec.nodes)?;
            self.externals.push(HostInfo {
                name: format!("x{k}"),
                netns: ns,
                ip: addr,
            });
        }
        for pod in &spec.pods {
            self.add_pod(pod)?;
        }
        self.verify_connectivity()
    }

    /// Veth `dev` in `ns` with `addr/24`, peer `port` enslaved to the fabric bridge,
    /// plus a route to the pod CIDR of every node (except itself) via its link IP.
    fn attach_to_fabric(
        &self,
        ns: &str,
        dev: &str,
        port: &str,
        addr: Ipv4Addr,
        nodes: usize,
    ) -> Result<()> {
        let fabric = format!("{}-f", self.prefix);
        let peer = format!("link add name {dev} type veth peer name {port} netns {fabric}");
        ipn(ns, &peer)?;
        ipn(ns, &format!("addr add {addr}/24 dev {dev}"))?;
        ipn(ns, &format!("link set dev {dev} up"))?;
        ipn(&fabric, &format!("link set dev {port} master br0 up"))?;
        for j in (1..=nodes).filter(|&j| link_ip(j) != addr) {
            ipn(
                ns,
                &format!("route add 10.244.{j}.0/24 via {} dev {dev}", link_ip(j)),
            )?;
        }
        Ok(())
    }

    /// Ping across the fabric and from pods to their node, if `ping` is installed.
    fn verify_connectivity(&self) -> Result<()> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if !std::env::split_paths(&path).any(|d| d.join("ping").is_file()) {
            tracing::debug!("ping not installed; skipping connectivity check");
            return Ok(());
        }
        // Node 1 to every other fabric address, every pod to its gateway; in parallel.
        let first = &self.nodes[0].netns;
        let mut checks: Vec<(String, Ipv4Addr)> = Vec::new();
        checks.extend(self.nodes[1..].iter().map(|n| (first.clone(), n.link_ip)));
        checks.extend(self.externals.iter().map(|x| (first.clone(), x.ip)));
        let gateway = |p: &PodInfo| Ipv4Addr::new(10, 244, p.node as u8, 1);
        checks.extend(self.pods.iter().map(|p| (p.netns.clone(), gateway(p))));
        let ping = |(ns, dst): (String, Ipv4Addr)| {
            std::thread::spawn(move || {
                let dst = dst.to_string();
                in_netns(&ns, &["ping", "-c1", "-W2", &dst], Duration::from_secs(4))
                    .with_context(|| format!("{ns} cannot reach {dst}"))
            })
        };
        let pings: Vec<_> = checks.into_iter().map(ping).collect();
        for ping in pings {
            ping.join().map_err(|_| anyhow!("ping thread panicked"))??;
        }
        Ok(())
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Node `index` (1-based). Panics if there is no such node.
    pub fn node(&self, index: usize) -> &NodeInfo {
        index
            .checked_sub(1)
            .and_then(|i| self.nodes.get(i))
            .unwrap_or_else(|| panic!("lab {} has no node {index}", self.prefix))
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// Pod `name`. Panics if there is no such pod.
    pub fn pod(&self, name: &str) -> &PodInfo {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("lab {} has no pod {name:?}", self.prefix))
    }

    pub fn pods(&self) -> &[PodInfo] {
        &self.pods
    }

    /// External host `index` (1-based). Panics if there is no such host.
    pub fn external(&self, index: usize) -> &HostInfo {
        index
            .checked_sub(1)
            .and_then(|i| self.externals.get(i))
            .unwrap_or_else(|| panic!("lab {} has no external host {index}", self.prefix))
    }

    pub fn externals(&self) -> &[HostInfo] {
        &self.externals
    }

    /// Create a pod at run time (also used while building).
    pub fn add_pod(&mut self, spec: &PodSpec) -> Result<PodInfo> {
        check_pod_name(&spec.name)?;
        if spec.node == 0 || spec.node > self.nodes.len() {
            bail!("pod {}: no node {}", spec.name, spec.node);
        }
        if self.pods.iter().any(|p| p.name == spec.name) {
            bail!("pod {} already exists", spec.name);
        }
        let i = spec.node;
        let m = self.next_pod[i - 1];
        if m == 255 {
            bail!("node {i} has no pod addresses left");
        }
        self.next_pod[i - 1] = m + 1;
        let ns = format!("{}-{}", self.prefix, spec.name);
        let node_ns = self.node(i).netns.clone();
        create_netns(&ns, &[])?;
        self.namespaces.push(ns.clone());
        let (gw, pod_ip) = (format!("10.244.{i}.1"), format!("10.244.{i}.{m}"));
        let wire = [
            (
                &node_ns,
                format!("link add name p{m} type veth peer name eth0 netns {ns}"),
            ),
            (&node_ns, format!("addr add {gw}/32 dev p{m}")),
            (&node_ns, format!("link set dev p{m} up")),
            (&node_ns, format!("route add {pod_ip}/32 dev p{m}")),
            (&ns, format!("addr add {pod_ip}/32 dev eth0")),
            (&ns, "link set dev eth0 up".to_string()),
            (&ns, format!("route add {gw} dev eth0 scope link")),
            (&ns, format!("route add default via {gw} dev eth0")),
        ];
        if let Err(e) = wire.iter().try_for_each(|(n, cmd)| ipn(n, cmd).map(drop)) {
            let _ = ipn(&node_ns, &format!("link del dev p{m}"));
            let _ = destroy_netns(&ns);
            self.namespaces.retain(|n| *n != ns);
            return Err(e.context(format!("adding pod {}", spec.name)));
        }
        let info = PodInfo {
            name: spec.name.clone(),
            node: i,
            netns: ns,
            ip: Ipv4Addr::new(10, 244, i as u8, m),
        };
        self.pods.push(info.clone());
        Ok(info)
    }

    /// Kill a pod's processes and delete its namespace, veth pair and routes.
    pub fn remove_pod(&mut self, name: &str) -> Result<()> {
        let idx = self
            .pods
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| anyhow!("no pod {name:?}"))?;
        let pod = self.pods.remove(idx);
        let mut procs = lock(&self.procs);
        let (mine, rest): (Vec<_>, _) = procs.drain(..).partition(|p| p.netns == pod.netns);
        *procs = rest;
        drop(procs);
        terminate_all(&mine);
        // Deleting the node end removes the pair and the /32 route at once.
        let dev = format!("p{}", pod.ip.octets()[3]);
        let _ = ipn(&self.node(pod.node).netns, &format!("link del dev {dev}"));
        self.namespaces.retain(|n| *n != pod.netns);
        destroy_netns(&pod.netns)?;
        Ok(())
    }

    /// `/var/run/netns/<netns>`
    pub fn netns_path(netns: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(netns)
    }

    /// Run a command to completion inside `netns` (at most [`EXEC_TIMEOUT`]).
    /// Errors, with its stderr, if it fails.
    pub fn exec(&self, netns: &str, args: &[&str]) -> Result<Output> {
        self.exec_timeout(netns, args, EXEC_TIMEOUT)
    }

    /// [`Lab::exec`] with an explicit time limit.
    pub fn exec_timeout(&self, netns: &str, args: &[&str], timeout: Duration) -> Result<Output> {
        if args.is_empty() {
            bail!("exec: empty command");
        }
        in_netns(netns, args, timeout)
    }

    /// Start a long-running process inside `netns`; stdout and stderr go to
    /// `log_file` (appended) or are discarded. The lab kills it on drop.
    pub fn spawn(
        &self,
        netns: &str,
        cmd: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log_file: Option<&Path>,
    ) -> Result<ProcHandle> {
        self.spawn_in_dir(netns, cmd, args, env, log_file, None)
    }

    /// Starts one of quicmesh's own binaries in `netns`, logging plain text
    /// to `log_file` at the lab's level (`QUICMESH_LAB_LOG`, default info).
    pub fn spawn_quicmesh(
        &self,
        netns: &str,
        bin: &Path,
        args: &[&str],
        log_file: &Path,
    ) -> Result<ProcHandle> {
        let level = std::env::var("QUICMESH_LAB_LOG").unwrap_or_else(|_| "info".into());
        self.spawn(
            netns,
            bin.to_str().context("binary path is not UTF-8")?,
            args,
            &[
                ("RUST_LOG", &level),
                ("LOG_FORMAT", "plain"),
                ("NO_COLOR", "1"),
            ],
            Some(log_file),
        )
    }

    /// [`spawn`](Self::spawn) with a working directory.
    pub fn spawn_in_dir(
        &self,
        netns: &str,
        cmd: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log_file: Option<&Path>,
        cwd: Option<&Path>,
    ) -> Result<ProcHandle> {
        if !Self::netns_path(netns).exists() {
            bail!("spawn {cmd}: no namespace {netns}");
        }
        let (out, err) = match log_file {
            Some(path) => {
                let f = OpenOptions::new().create(true).append(true).open(path);
                let f = f.with_context(|| format!("opening log file {}", path.display()))?;
                (Stdio::from(f.try_clone()?), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns, cmd])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        // `ip netns exec` execs the command, so the child pid is the command's pid.
        let child = command
            .spawn()
            .with_context(|| format!("spawning {cmd} in {netns}"))?;
        let handle = ProcHandle {
            pid: child.id(),
            netns: netns.to_string(),
            child: Arc::new(Mutex::new(child)),
        };
        wait_until_in_netns(handle.pid, netns);
        tracing::debug!(pid = handle.pid, netns, cmd, "spawned");
        lock(&self.procs).push(handle.clone());
        Ok(handle)
    }

    /// Add a named counter in node `node` counting forwarded packets that match
    /// `matcher` (an nft expression) entering or leaving through its `link`.
    pub fn add_link_counter(&self, node: usize, name: &str, matcher: &str) -> Result<()> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("invalid counter name {name:?}");
        }
        let rule = |dir: &str| {
            format!("add rule inet qmlab forward {dir} \"link\" {matcher} counter name \"{name}\"")
        };
        let script = format!(
            "add counter inet qmlab {name}; {}; {}",
            rule("iifname"),
            rule("oifname")
        );
        nft(&self.node(node).netns, &script)
            .with_context(|| format!("adding link counter {name} on node {node}"))?;
        Ok(())
    }

    /// Read a link counter: `(packets, bytes)`.
    pub fn link_counter(&self, node: usize, name: &str) -> Result<(u64, u64)> {
        let args = ["nft", "-j", "list", "counter", "inet", "qmlab", name];
        let out = in_netns(&self.node(node).netns, &args, CMD_TIMEOUT)?;
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing nft JSON output")?;
        let counter = json["nftables"]
            .as_array()
            .and_then(|items| items.iter().find_map(|i| i.get("counter")))
            .ok_or_else(|| anyhow!("no counter {name} in nft output"))?;
        let field = |f: &str| counter[f].as_u64().ok_or_else(|| anyhow!("{name}: no {f}"));
        Ok((field("packets")?, field("bytes")?))
    }

    /// Apply tc netem `params` (e.g. `"loss 1% delay 1ms"`) to node `node`'s link
    /// egress; `None` removes it.
    pub fn netem(&self, node: usize, params: Option<&str>) -> Result<()> {
        let ns = &self.node(node).netns;
        let mut tc = Command::new("tc");
        tc.args(["-n", ns, "qdisc"]);
        match params {
            Some(p) => {
                tc.args(["replace", "dev", "link", "root", "netem"])
                    .args(p.split_whitespace());
                run_ok(&mut tc, CMD_TIMEOUT).map_err(|e| match e.to_string() {
                    m if m.contains("kind is unknown") => {
                        anyhow!("netem not supported by kernel: {m}")
                    }
                    _ => e,
                })?;
            }
            None => {
                tc.args(["del", "dev", "link", "root"]);
                let out = run_with_timeout(&mut tc, CMD_TIMEOUT)?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                // Deleting a qdisc that is not there is fine.
                if !out.status.success() && !stderr.contains("handle of zero") {
                    bail!("clearing netem on node {node}: {}", stderr.trim());
                }
            }
        }
        Ok(())
    }

    /// Random packet loss on the node's link, in percent, with nftables
    /// (`numgen random`) on packets the node forwards out of `link`: a
    /// loss impairment that needs no `sch_netem`. `None` removes it. The
    /// packets dropped are counted ([`Lab::link_loss_dropped`]).
    pub fn set_link_loss(&self, node: usize, percent: Option<u32>) -> Result<()> {
        let ns = &self.node(node).netns;
        let clear = "table inet qmloss {}\ndelete table inet qmloss\n";
        let rule = match percent {
            None | Some(0) => None,
            Some(100) => Some("oifname \"link\" counter name \"dropped\" drop".to_string()),
            Some(p @ 1..=99) => Some(format!(
                "oifname \"link\" numgen random mod 100 < {p} counter name \"dropped\" drop"
            )),
            Some(p) => bail!("loss of {p}% is not a percentage"),
        };
        let script = match rule {
            Some(rule) => format!(
                "{clear}table inet qmloss {{\n  counter dropped {{}}\n  chain impair {{\n    type filter hook forward priority 10; policy accept;\n    {rule}\n  }}\n}}\n"
            ),
            None => clear.to_string(),
        };
        nft(ns, &script).with_context(|| format!("setting link loss on node {node}"))?;
        Ok(())
    }

    /// Packets [`Lab::set_link_loss`] has dropped on node `node`'s link since
    /// it was last set.
    pub fn link_loss_dropped(&self, node: usize) -> Result<u64> {
        let args = ["nft", "-j", "list", "counter", "inet", "qmloss", "dropped"];
        let out = in_netns(&self.node(node).netns, &args, CMD_TIMEOUT)?;
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("parsing nft JSON output")?;
        json["nftables"]
            .as_array()
            .and_then(|items| items.iter().find_map(|i| i.get("counter")))
            .and_then(|c| c["packets"].as_u64())
            .ok_or_else(|| anyhow!("no loss counter on node {node} (is loss set?)"))
    }

    /// Set the MTU of every link: node links, external hosts, the bridge, and
    /// both ends of every pod veth.
    pub fn set_link_mtu(&self, mtu: u32) -> Result<()> {
        let fabric = format!("{}-f", self.prefix);
        for (ns, dev) in self.links().iter().chain([&(fabric, "br0".to_string())]) {
            ipn(ns, &format!("link set dev {dev} mtu {mtu}"))?;
        }
        Ok(())
    }

    /// Turns GRO on or off on every veth of the lab (veths do no GRO unless
    /// asked; UDP GRO then lets QUIC receive coalesced segments). Needs ethtool.
    pub fn set_link_gro(&self, on: bool) -> Result<()> {
        let state = if on { "on" } else { "off" };
        for (ns, dev) in self.links() {
            run_ok(
                Command::new("ip")
                    .args(["netns", "exec", &ns, "ethtool", "-K", &dev, "gro", state]),
                CMD_TIMEOUT,
            )
            .with_context(|| {
                format!("ethtool -K {dev} gro {state} in {ns} (is ethtool installed?)")
            })?;
        }
        Ok(())
    }

    /// Both ends of every veth pair, as (netns, device): node links,
    /// external hosts' links, pods' links.
    fn links(&self) -> Vec<(String, String)> {
        let fabric = format!("{}-f", self.prefix);
        let mut links = Vec::new();
        for n in &self.nodes {
            links.push((fabric.clone(), format!("n{}", n.index)));
            links.push((n.netns.clone(), "link".to_string()));
        }
        for (k, x) in self.externals.iter().enumerate() {
            links.push((fabric.clone(), format!("x{}", k + 1)));
            links.push((x.netns.clone(), "eth0".to_string()));
        }
        for p in &self.pods {
            links.push((self.node(p.node).netns.clone(), pod_veth(p)));
            links.push((p.netns.clone(), "eth0".to_string()));
        }
        links
    }
}

/// The node-side end of a pod's veth pair (named after the pod's last octet).
fn pod_veth(p: &PodInfo) -> String {
    format!("p{}", p.ip.octets()[3])
}

impl Drop for Lab {
    fn drop(&mut self) {
        let procs = std::mem::take(&mut *lock(&self.procs));
        terminate_all(&procs);
        // Pods first, the fabric (created first) last.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = destroy_netns(ns) {
                tracing::warn!(netns = %ns, "lab teardown: {e:#}");
            }
        }
        tracing::debug!(prefix = %self.prefix, "lab torn down");
    }
}
