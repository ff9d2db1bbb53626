//! Real network topologies for tests, built from Linux network namespaces.
//!
//! This module owns everything a [`Lab`] creates: the namespaces (one per node,
//! pod and external host, plus one "fabric" namespace holding a bridge), the veth
//! pairs between them, addresses and routes, the `inet qmlab` nftables table used
//! for link counters, tc qdiscs on node links, and every process started through
//! [`Lab::spawn`]. Dropping the [`Lab`] (also during a panic unwind) kills those
//! processes and deletes the namespaces, which removes every interface with them.
//!
//! Addressing (the address plan). A lab belongs to a *cluster* (site) `c`
//! in 1..=9 ([`TopologySpec::cluster`], default 1); its node `i` has the
//! *node number* `a = 10(c-1) + i` and its external host `k` the host
//! number `100 + 10(c-1) + k`. Cluster 1 alone is today's plan unchanged:
//!
//! | what | address |
//! | --- | --- |
//! | node `i` | `10.99.0.<a>/24` on its interface `link` (peer `n<i>` on bridge `br0` in `<prefix>-f`) |
//! | pod CIDR of node `i` | `10.244.<a>.0/24`; its pods get (from m = 2, counting up, never reused, unless a pod asks for a free one) `10.244.<a>.<m>/32` on `eth0`, wired point-to-point to the node interface `p<m>` carrying `10.244.<a>.1/32` |
//! | external host `k` | `10.99.0.<100 + 10(c-1) + k>/24` on `eth0` |
//!
//! So cluster 1 has nodes 10.99.0.1-10, pods 10.244.1-10.0/24 and externals
//! 10.99.0.101-110; cluster 2 has nodes 10.99.0.11-20, pods
//! 10.244.11-20.0/24 and externals 10.99.0.111-120; and so on. Bounds: a lab
//! of cluster 1 may have up to 99 nodes and 150 externals as long as it
//! stays alone; a lab of cluster 2..=9, and any lab that is
//! [connected](Lab::connect) to another, at most 10 nodes and 10
//! externals, so no two clusters' addresses ever collide. A pod may ask for
//! a given free host number of its node's CIDR ([`Lab::add_pod_at`]).
//!
//! Several clusters on one host: [`Lab::connect`] joins two labs' fabric
//! bridges with a veth pair (`c<other cluster>` on each `br0`), making one
//! 10.99.0.0/24 segment, and routes every node's and external host's
//! traffic for the other lab's pod CIDRs to the owning node, so pods
//! (default route via their node), nodes and externals of either reach
//! every node, pod and external of the other.
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

/// What to build: `nodes` nodes, the given pods and `externals` hosts on the
/// fabric, addressed as cluster `cluster` of the address plan (module doc).
#[derive(Debug, Clone)]
pub struct TopologySpec {
    pub nodes: usize,
    pub pods: Vec<PodSpec>,
    pub externals: usize,
    /// The lab's cluster number, 1..=[`MAX_CLUSTERS`] (default 1).
    pub cluster: usize,
}

impl Default for TopologySpec {
    fn default() -> Self {
        TopologySpec {
            nodes: 0,
            pods: Vec::new(),
            externals: 0,
            cluster: 1,
        }
    }
}

/// How many clusters the address plan has room for.
pub const MAX_CLUSTERS: usize = 9;
/// Nodes, and externals, a cluster has addresses for when it shares the
/// host with others (cluster 2 and up, or any connected lab).
pub const CLUSTER_NODES: usize = 10;

/// A pod named `name` on node `node` (1-based).
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub name: String,
    pub node: usize,
}

#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// 1-based, within its lab (`node<index>`).
    pub index: usize,
    /// Its number in the address plan: `10(cluster-1) + index`, the third
    /// octet of its pod CIDR and the last of its link IP.
    pub number: u8,
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
    cluster: usize,
    nodes: Vec<NodeInfo>,
    pods: Vec<PodInfo>,
    externals: Vec<HostInfo>,
    /// Namespaces created so far, in creation order.
    namespaces: Vec<String>,
    /// Next pod host number per node (index 0 is node 1).
    next_pod: Vec<u8>,
    procs: Mutex<Vec<ProcHandle>>,
}

/// How a quicmesh process of the lab writes its log (its `LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Plain text: what the tests read.
    #[default]
    Plain,
    /// One JSON object per line (the access-log test reads it).
    Json,
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

/// The link IP of the node numbered `number` in the address plan.
fn link_ip(number: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, number)
}

/// Node `i`'s number in the address plan of cluster `cluster`.
fn node_number(cluster: usize, i: usize) -> u8 {
    (CLUSTER_NODES * (cluster - 1) + i) as u8
}

/// Routes in `ns` to the pod CIDR of every node numbered `nodes` (but the
/// one whose link IP `addr` is) via that node's link IP, out of `dev`.
fn add_pod_routes(ns: &str, dev: &str, addr: Ipv4Addr, nodes: &[u8]) -> Result<()> {
    for &j in nodes.iter().filter(|&&j| link_ip(j) != addr) {
        ipn(
            ns,
            &format!("route add 10.244.{j}.0/24 via {} dev {dev}", link_ip(j)),
        )?;
    }
    Ok(())
}

/// Ping each (namespace, address), in parallel, if `ping` is installed.
fn ping_all(checks: Vec<(String, Ipv4Addr)>) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|d| d.join("ping").is_file()) {
        tracing::debug!("ping not installed; skipping connectivity check");
        return Ok(());
    }
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

/// External host `k`'s address in cluster `cluster`.
fn external_ip(cluster: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, (100 + CLUSTER_NODES * (cluster - 1) + k) as u8)
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
        if !(1..=MAX_CLUSTERS).contains(&spec.cluster) {
            bail!("a lab's cluster number is 1..={MAX_CLUSTERS}");
        }
        if spec.cluster == 1 && (!(1..=99).contains(&spec.nodes) || spec.externals > 150) {
            bail!("a lab needs 1..=99 nodes and at most 150 externals");
        }
        if spec.cluster > 1
            && (!(1..=CLUSTER_NODES).contains(&spec.nodes) || spec.externals > CLUSTER_NODES)
        {
            bail!("a lab of cluster {} needs 1..={CLUSTER_NODES} nodes and at most {CLUSTER_NODES} externals", spec.cluster);
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
            cluster: spec.cluster,
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
        let numbers: Vec<u8> = (1..=spec.nodes)
            .map(|i| node_number(spec.cluster, i))
            .collect();
        for i in 1..=spec.nodes {
            let ns = format!("{}-n{i}", self.prefix);
            create_netns(&ns, &["net.ipv4.ip_forward=1"])?;
            self.namespaces.push(ns.clone());
            let number = numbers[i - 1];
            self.attach_to_fabric(&ns, "link", &format!("n{i}"), link_ip(number), &numbers)?;
            nft(
                &ns,
                "add table inet qmlab; add chain inet qmlab forward \
                 { type filter hook forward priority 0; policy accept; }",
            )?;
            self.nodes.push(NodeInfo {
                index: i,
                number,
                netns: ns,
                link_ip: link_ip(number),
                pod_cidr: format!("10.244.{number}.0/24"),
            });
        }
        for k in 1..=spec.externals {
            let ns = format!("{}-x{k}", self.prefix);
            create_netns(&ns, &[])?;
            self.namespaces.push(ns.clone());
            let addr = external_ip(spec.cluster, k);
            self.attach_to_fabric(&ns, "eth0", &format!("x{k}"), addr, &numbers)?;
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
    /// plus a route to the pod CIDR of every node (numbered `nodes`, except
    /// itself) via its link IP.
    fn attach_to_fabric(
        &self,
        ns: &str,
        dev: &str,
        port: &str,
        addr: Ipv4Addr,
        nodes: &[u8],
    ) -> Result<()> {
        let fabric = format!("{}-f", self.prefix);
        let peer = format!("link add name {dev} type veth peer name {port} netns {fabric}");
        ipn(ns, &peer)?;
        ipn(ns, &format!("addr add {addr}/24 dev {dev}"))?;
        ipn(ns, &format!("link set dev {dev} up"))?;
        ipn(&fabric, &format!("link set dev {port} master br0 up"))?;
        add_pod_routes(ns, dev, addr, nodes)
    }

    /// The lab's cluster number in the address plan.
    pub fn cluster(&self) -> usize {
        self.cluster
    }

    /// Joins this lab's fabric to `other`'s (another cluster on this host):
    /// a veth pair between the two `br0` bridges, and in every node and
    /// external host of each lab a route to each pod CIDR of the other via
    /// its node. Undone when either lab is dropped (its fabric namespace,
    /// and with it the pair, goes).
    pub fn connect(&self, other: &Lab) -> Result<()> {
        if self.cluster == other.cluster {
            bail!(
                "labs {} and {} are both cluster {}: their addresses collide",
                self.prefix,
                other.prefix,
                self.cluster
            );
        }
        for lab in [self, other] {
            if lab.nodes.len() > CLUSTER_NODES || lab.externals.len() > CLUSTER_NODES {
                bail!(
                    "lab {} has more than {CLUSTER_NODES} nodes or externals: it cannot share the host with another cluster",
                    lab.prefix
                );
            }
        }
        let (mine, theirs) = (format!("{}-f", self.prefix), format!("{}-f", other.prefix));
        let (to_other, to_self) = (format!("c{}", other.cluster), format!("c{}", self.cluster));
        ipn(
            &mine,
            &format!("link add name {to_other} type veth peer name {to_self} netns {theirs}"),
        )?;
        ipn(&mine, &format!("link set dev {to_other} master br0 up"))?;
        ipn(&theirs, &format!("link set dev {to_self} master br0 up"))?;
        for (from, to) in [(self, other), (other, self)] {
            let numbers: Vec<u8> = to.nodes.iter().map(|n| n.number).collect();
            for n in &from.nodes {
                add_pod_routes(&n.netns, "link", n.link_ip, &numbers)?;
            }
            for x in &from.externals {
                add_pod_routes(&x.netns, "eth0", x.ip, &numbers)?;
            }
        }
        // Across: node 1 of each to node 1 and the first external of the other.
        let mut checks = Vec::new();
        for (from, to) in [(self, other), (other, self)] {
            let first = from.nodes[0].netns.clone();
            checks.push((first.clone(), to.nodes[0].link_ip));
            checks.extend(to.externals.first().map(|x| (first, x.ip)));
        }
        ping_all(checks)
            .with_context(|| format!("connecting labs {} and {}", self.prefix, other.prefix))
    }

    /// Ping across the fabric and from pods to their node, if `ping` is installed.
    fn verify_connectivity(&self) -> Result<()> {
        // Node 1 to every other fabric address, every pod to its gateway; in parallel.
        let first = &self.nodes[0].netns;
        let mut checks: Vec<(String, Ipv4Addr)> = Vec::new();
        checks.extend(self.nodes[1..].iter().map(|n| (first.clone(), n.link_ip)));
        checks.extend(self.externals.iter().map(|x| (first.clone(), x.ip)));
        checks.extend(
            self.pods
                .iter()
                .map(|p| (p.netns.clone(), self.gateway(p.node))),
        );
        ping_all(checks)
    }

    /// The gateway of node `node`'s pods: `10.244.<number>.1`.
    fn gateway(&self, node: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 244, self.node(node).number, 1)
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

    /// Create a pod at run time (also used while building), at the next
    /// unused address of its node.
    pub fn add_pod(&mut self, spec: &PodSpec) -> Result<PodInfo> {
        self.add_pod_at(spec, None)
    }

    /// Whether `ip` is a pod address node `node` could give a pod
    /// ([`Lab::add_pod_at`]): an error saying why not, if not.
    pub fn check_pod_ip(&self, node: usize, ip: Ipv4Addr) -> Result<()> {
        let n = self.node(node);
        let [a, b, c, m] = ip.octets();
        if (a, b, c) != (10, 244, n.number) || !(2..=254).contains(&m) {
            bail!(
                "{ip} is not a pod address of node{node} (10.244.{}.2 to 10.244.{}.254)",
                n.number,
                n.number
            );
        }
        if let Some(p) = self.pods.iter().find(|p| p.ip == ip) {
            bail!("{ip} is taken by pod {}", p.name);
        }
        Ok(())
    }

    /// [`Lab::add_pod`], at `ip` if given: it must be a free address of the
    /// node's pod CIDR ([`Lab::check_pod_ip`]). Addresses handed out without
    /// one count up from .2 and skip those in use.
    pub fn add_pod_at(&mut self, spec: &PodSpec, ip: Option<Ipv4Addr>) -> Result<PodInfo> {
        check_pod_name(&spec.name)?;
        if spec.node == 0 || spec.node > self.nodes.len() {
            bail!("pod {}: no node {}", spec.name, spec.node);
        }
        if self.pods.iter().any(|p| p.name == spec.name) {
            bail!("pod {} already exists", spec.name);
        }
        let i = spec.node;
        let number = self.node(i).number;
        let m = match ip {
            Some(ip) => {
                self.check_pod_ip(i, ip)
                    .with_context(|| format!("pod {}", spec.name))?;
                ip.octets()[3]
            }
            None => {
                let used = |m: u8| {
                    self.pods
                        .iter()
                        .any(|p| p.ip == Ipv4Addr::new(10, 244, number, m))
                };
                let Some(m) = (self.next_pod[i - 1]..=254).find(|&m| !used(m)) else {
                    bail!("node {i} has no pod addresses left");
                };
                self.next_pod[i - 1] = m + 1;
                m
            }
        };
        let ns = format!("{}-{}", self.prefix, spec.name);
        let node_ns = self.node(i).netns.clone();
        create_netns(&ns, &[])?;
        self.namespaces.push(ns.clone());
        let (gw, pod_ip) = (format!("10.244.{number}.1"), format!("10.244.{number}.{m}"));
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
            ip: Ipv4Addr::new(10, 244, number, m),
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

    /// Starts one of quicmesh's own binaries in `netns`, logging in `format`
    /// to `log_file` at the lab's level (`QUICMESH_LAB_LOG`, default info).
    pub fn spawn_quicmesh(
        &self,
        netns: &str,
        bin: &Path,
        args: &[&str],
        log_file: &Path,
        format: LogFormat,
    ) -> Result<ProcHandle> {
        let level = std::env::var("QUICMESH_LAB_LOG").unwrap_or_else(|_| "info".into());
        let format = match format {
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        };
        self.spawn(
            netns,
            bin.to_str().context("binary path is not UTF-8")?,
            args,
            &[
                ("RUST_LOG", &level),
                ("LOG_FORMAT", format),
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
