//! A cluster from manifests: `quicmesh local up -f DIR`.
//!
//! The lab plays the parts of the Kubernetes API server, scheduler and
//! kubelet: it reads Namespaces, ServiceAccounts, Pods, Deployments and
//! Services from DIR (with the controller's own manifest parser), schedules
//! pods onto nodes (fewest pods first), gives them network namespaces and
//! IPs, allocates Service VIPs from 10.96.0.0/16, runs each pod's first
//! container's `command` + `args` from the host's filesystem inside the pod,
//! and writes what a real cluster would report — pods with node, IP and
//! readiness; services with cluster IPs — as manifests into a state
//! directory. The real controller reads that directory (`--source
//! files:STATE`), issues SVIDs and streams config to a real ztunnel per
//! node. Each pod's network is set up as a kubelet does it: the real CNI
//! plugin (`quicmesh-cni`) is run for it (ADD, and DEL when it goes), and
//! the real node agent of its node (`quicmesh-cni agent`, reading the same
//! state) enrolls it in ztunnel if its namespace is labeled
//! `quicmesh.io/dataplane-mode=ambient`, follows label changes, and
//! replays its pods when ztunnel restarts ([`crate::cni`]). An enrolled pod
//! is reported ready only once its ztunnel has its SVID (a readiness gate,
//! the agent's identity-pending state): a pod enrolled while the CA is
//! unreachable is captured but gets no traffic until then.
//!
//! Each cluster is one cluster of the lab's address plan ([`crate::net`]):
//! its own trust domain, CA, controller (on its first external host),
//! ztunnels, CNI agents, state directory and Service VIPs (cluster `c`'s
//! from `10.96.<16(c-1)>.0/20`). [`Cluster::up_all`] starts several side by
//! side, their fabrics connected, so pods of one reach the pod IPs and the
//! controller of another (SPIFFE federation). A directory may carry a lab
//! config file, [`LAB_CONFIG_FILE`] (not a manifest), and a pod may ask
//! for its IP and node ([`POD_IP_ANNOTATION`], `spec.nodeName`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quicmesh_controller::index::Index;
use quicmesh_controller::model::{Container, Object};
use quicmesh_controller::sources::files::FileSource;
use quicmesh_controller::waypoint::{self, Provision};
use quicmesh_core::identity::ca::Ca;
use serde_json::json;

use crate::cni::{Cni, Sandbox};
use crate::mesh::{file_tail, netns_http_get, TRUST_DOMAIN};
use crate::net::{Lab, PodSpec, ProcHandle, TopologySpec};
use crate::ztunnels::{find_binary, Source, Ztunnels};

/// Address of cluster 1's control-plane host (its lab's first external
/// host); cluster `c`'s is `10.99.0.<101 + 10(c-1)>` ([`Cluster::controller_ip`]).
pub const CONTROLLER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 101);
pub const CONTROLLER_GRPC: u16 = 15012;
pub const CONTROLLER_METRICS: u16 = 15014;
/// The controller's admin port (/status, /config_dump), on its loopback.
pub const CONTROLLER_ADMIN: u16 = 15000;

/// The lab config file a manifest directory may hold: YAML, read by the
/// lab only (`.conf`, so neither the manifest reader, which takes `.yaml`
/// and `.yml`, nor `kubectl apply -f` reads it). Fields, all optional:
/// `trustDomain` (default `cluster.local`), `nodes` (default: `--nodes`,
/// else 2), `cluster` (the address plan's cluster number; default: the
/// directory's position among `-f`).
pub const LAB_CONFIG_FILE: &str = "quicmesh-local.conf";

/// The `spiffe_refresh_hint` a lab controller's bundle endpoint publishes
/// (a federated peer fetches again this often).
pub const LAB_BUNDLE_REFRESH_HINT: &str = "5s";

/// The directory beside the manifests holding the cluster's own CA
/// (`ca.pem`, `ca-key.pem`, optionally `ca-chain.pem`, `roots.pem`; see
/// docs/ca.md), copied into the lab on first `up`. Without it the lab
/// generates one.
pub const PLUGIN_CA_DIR: &str = "ca";

/// Pod annotation (lab only): the pod's IP, e.g. `10.244.11.200`. It must be
/// a free address of the pod CIDR of its node (`spec.nodeName`, e.g.
/// `node1`, pins that; otherwise the scheduler's pick), else the pod is not
/// created and a manifest error says why. Automatic addresses count up
/// from .2: pick a high one.
pub const POD_IP_ANNOTATION: &str = "lab.quicmesh.io/ip";

/// The SPIFFE ID a cluster's controller serves as (system namespace
/// `quicmesh-system`, service account `controller`, the controller's defaults).
/// Where a cluster of namespace prefix `prefix` keeps its files (logs, CA,
/// state): `$TMPDIR/quicmesh-lab/<prefix>`.
pub fn lab_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join("quicmesh-lab").join(prefix)
}

pub fn controller_identity(trust_domain: &str) -> String {
    format!("spiffe://{trust_domain}/ns/quicmesh-system/sa/controller")
}

/// The contents of [`LAB_CONFIG_FILE`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabConfig {
    pub trust_domain: Option<String>,
    pub nodes: Option<usize>,
    pub cluster: Option<usize>,
}

impl LabConfig {
    /// Reads `dir`'s [`LAB_CONFIG_FILE`]; the default when there is none.
    pub fn read(dir: &Path) -> Result<LabConfig> {
        let path = dir.join(LAB_CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LabConfig::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Self::parse(&text).with_context(|| format!("lab config {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<LabConfig> {
        if text.trim().is_empty() {
            return Ok(LabConfig::default());
        }
        let c: LabConfig = serde_yaml::from_str(text)?;
        if let Some(td) = &c.trust_domain {
            let id = quicmesh_core::identity::SpiffeId::workload(td, "ns", "sa");
            if id.map_or(true, |id| id.trust_domain() != td) {
                bail!("trustDomain {td:?} is not a valid trust domain");
            }
        }
        if c.nodes == Some(0) {
            bail!("nodes: a cluster needs at least one node");
        }
        if let Some(n) = c.cluster {
            if !(1..=crate::net::MAX_CLUSTERS).contains(&n) {
                bail!("cluster: {n} is not in 1..={}", crate::net::MAX_CLUSTERS);
            }
        }
        Ok(c)
    }
}

#[derive(Debug, Clone)]
pub struct LocalSpec {
    pub manifests: PathBuf,
    pub nodes: usize,
    /// The cluster number in the lab's address plan (1..=9; default 1).
    pub cluster: usize,
    /// The mesh's trust domain (default `cluster.local`).
    pub trust_domain: String,
    /// Namespace prefix; None for a fresh per-process one (tests).
    pub prefix: Option<String>,
    /// Lifetime of the SVIDs the controller issues.
    pub svid_ttl: Duration,
    /// How long a removed pod stays (not ready) before it is stopped, so the
    /// mesh stops sending it new connections first.
    pub termination_grace: Duration,
}

impl LocalSpec {
    pub fn new(manifests: &Path, nodes: usize) -> Self {
        LocalSpec {
            manifests: manifests.to_path_buf(),
            nodes,
            cluster: 1,
            trust_domain: TRUST_DOMAIN.to_string(),
            prefix: None,
            svid_ttl: Duration::from_secs(24 * 3600),
            termination_grace: Duration::from_secs(2),
        }
    }

    /// The spec of the cluster in `manifests`, as its [`LAB_CONFIG_FILE`]
    /// says; what it leaves out: `nodes` nodes, cluster `cluster`, trust
    /// domain `cluster.local`.
    pub fn from_dir(manifests: &Path, nodes: usize, cluster: usize) -> Result<Self> {
        let config = LabConfig::read(manifests)?;
        let mut spec = LocalSpec::new(manifests, config.nodes.unwrap_or(nodes));
        spec.cluster = config.cluster.unwrap_or(cluster);
        if let Some(td) = config.trust_domain {
            spec.trust_domain = td;
        }
        Ok(spec)
    }
}

/// A pod the lab runs.
#[derive(Debug)]
pub struct LocalPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    pub node: usize,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub containers: Vec<Container>,
    /// Enrolled in its node's ztunnel, as its node's CNI agent reports.
    pub enrolled: bool,
    /// Enrolled, but its ztunnel has no SVID for it yet (the CA has not
    /// issued one): not ready, whatever its probe says.
    pub identity_pending: bool,
    /// The CNI plugin's ADD succeeded (its containers may start).
    pub network_ready: bool,
    /// Set when the pod is going away: not ready from then on.
    pub terminating_since: Option<Instant>,
    /// Its readiness probe passes.
    pub ready: bool,
    pub probe: Probe,
    proc: Option<ProcHandle>,
}

/// How the lab decides a pod is ready (as a kubelet's readiness probe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// No port declared: ready once started.
    None,
    /// A TCP connection to the port succeeds (a pod's first container port).
    Tcp(u16),
    /// A GET of `path` answers 200 `ready` (waypoints: SVID and config in hand).
    Http(u16, &'static str),
}

pub struct Cluster {
    pub lab: Lab,
    pub spec: LocalSpec,
    pub dir: PathBuf,
    source: FileSource,
    objects: Vec<Object>,
    controller: Option<ProcHandle>,
    pub ztunnels: Ztunnels,
    /// The CNI node agents, and the plugin runs.
    pub cni: Cni,
    pub pods: BTreeMap<String, LocalPod>,
    /// (namespace, name) -> VIP
    pub vips: BTreeMap<(String, String), Ipv4Addr>,
    next_vip: u32,
    /// Errors of the manifests: of their last read, then those of pods
    /// the lab could not place (at the last reconcile).
    pub errors: Vec<String>,
    /// Errors of the last read of the manifests.
    source_errors: Vec<String>,
    /// The CA's bootstrap tokens, by principal.
    tokens: BTreeMap<String, String>,
}

/// A pod the manifests ask for.
struct Desired {
    namespace: String,
    name: String,
    service_account: String,
    labels: BTreeMap<String, String>,
    containers: Vec<Container>,
    /// The waypoint it runs (provisioned for a Gateway), if any.
    waypoint: Option<Provision>,
    /// `spec.nodeName`, as written.
    node: Option<String>,
    /// [`POD_IP_ANNOTATION`], as written.
    ip: Option<String>,
}

/// Service VIPs a cluster has: `10.96.<16(c-1)>.0/20`.
const VIPS_PER_CLUSTER: u32 = 4096;

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl Cluster {
    pub async fn up(spec: LocalSpec) -> Result<Cluster> {
        let lab = Self::lab(&spec)?;
        Self::start(spec, lab).await
    }

    /// Several clusters side by side, one per spec (distinct cluster
    /// numbers), their labs connected to each other before any starts.
    /// On error, whatever was started is torn down.
    pub async fn up_all(specs: Vec<LocalSpec>) -> Result<Vec<Cluster>> {
        for (i, a) in specs.iter().enumerate() {
            if let Some(b) = specs[..i].iter().find(|b| b.cluster == a.cluster) {
                bail!(
                    "{} and {} are both cluster {} (say `cluster:` in their {LAB_CONFIG_FILE})",
                    b.manifests.display(),
                    a.manifests.display(),
                    a.cluster
                );
            }
        }
        let mut labs = Vec::new();
        for spec in &specs {
            labs.push(Self::lab(spec)?);
        }
        for (i, a) in labs.iter().enumerate() {
            for b in &labs[i + 1..] {
                a.connect(b)?;
            }
        }
        let mut clusters = Vec::new();
        for (spec, lab) in specs.into_iter().zip(labs) {
            clusters.push(Self::start(spec, lab).await?);
        }
        Ok(clusters)
    }

    /// The cluster's topology: its nodes and one external host, the
    /// controller's.
    fn lab(spec: &LocalSpec) -> Result<Lab> {
        if spec.nodes == 0 {
            bail!("a cluster needs at least one node");
        }
        let topo = TopologySpec {
            nodes: spec.nodes,
            pods: vec![],
            externals: 1,
            cluster: spec.cluster,
        };
        match &spec.prefix {
            Some(p) => Lab::with_prefix(&topo, p),
            None => Lab::new(&topo),
        }
    }

    async fn start(spec: LocalSpec, lab: Lab) -> Result<Cluster> {
        let dir = lab_dir(lab.prefix());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state"))?;
        let source = FileSource::new(vec![spec.manifests.clone()]);
        let ztunnels = Ztunnels::new(
            &dir,
            Source::Controller {
                addr: SocketAddr::from((lab.external(1).ip, CONTROLLER_GRPC)),
                bundle: dir.join("ca/ca.pem"),
                trust_domain: spec.trust_domain.clone(),
            },
            spec.nodes,
        );
        let cni = Cni::new(&dir, &dir.join("state"), spec.nodes);
        let mut c = Cluster {
            lab,
            dir,
            source,
            objects: Vec::new(),
            controller: None,
            ztunnels,
            cni,
            pods: BTreeMap::new(),
            vips: BTreeMap::new(),
            next_vip: 10,
            errors: Vec::new(),
            source_errors: Vec::new(),
            tokens: BTreeMap::new(),
            spec,
        };
        // The CA root exists before anything starts: ztunnels trust it.
        // A `ca/` directory beside the manifests is the cluster's CA (a
        // plug-in CA, as `controller.ca.secretName` is in Kubernetes):
        // federated examples ship their roots so each side can carry the
        // other's initial bundle.
        let plugged = c.spec.manifests.join(PLUGIN_CA_DIR);
        if plugged.join("ca.pem").exists() && !c.dir.join("ca/ca.pem").exists() {
            Ca::load(&c.spec.trust_domain, &plugged)
                .with_context(|| format!("the CA in {}", plugged.display()))?
                .save(&c.dir.join("ca"))?;
        }
        Ca::load_or_generate(&c.spec.trust_domain, &c.dir.join("ca"))?;
        for n in 1..=c.spec.nodes {
            let token: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            std::fs::write(c.ztunnels.token_path(n), &token)?;
            c.tokens.insert(format!("node{n}"), token);
        }
        c.write_tokens()?;
        c.write_state()?;
        c.start_controller()?;
        c.ztunnels.start_all(&c.lab).await?;
        for n in 1..=c.spec.nodes {
            c.cni.start(&c.lab, n, &c.ztunnels.enroll_socket(n)).await?;
        }
        c.reconcile().await?;
        // Pods turn ready as their servers start listening: wait for that
        // (bounded), reconciling so the mesh learns it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.pods.values().any(|p| !p.ready || p.identity_pending) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.reconcile().await?;
        }
        Ok(c)
    }

    /// The controller's address: the cluster's first external host.
    pub fn controller_ip(&self) -> Ipv4Addr {
        self.lab.external(1).ip
    }

    pub fn trust_domain(&self) -> &str {
        &self.spec.trust_domain
    }

    /// The controller's CA directory (`--ca-dir`): a rotation is done here.
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    pub fn controller_log(&self) -> PathBuf {
        self.dir.join("controller.log")
    }

    pub fn ztunnel_log(&self, node: usize) -> PathBuf {
        self.ztunnels.log_path(node)
    }

    /// The log of node's CNI agent.
    pub fn cni_agent_log(&self, node: usize) -> PathBuf {
        self.cni.log_path(node)
    }

    pub fn start_controller(&mut self) -> Result<()> {
        let bin = find_binary("controller")?;
        let state = format!("files:{}", self.dir.join("state").display());
        let ttl = format!("{}s", self.spec.svid_ttl.as_secs().max(1));
        let (ca, tokens) = (self.dir.join("ca"), self.dir.join("tokens.yaml"));
        let args = [
            "--source",
            &state,
            "--ca-dir",
            ca.to_str().context("utf-8")?,
            "--node-tokens",
            tokens.to_str().context("utf-8")?,
            "--svid-ttl",
            &ttl,
            "--trust-domain",
            &self.spec.trust_domain,
            // A CA rotation (files in DIR/ca) is picked up within a second.
            "--ca-reload-interval",
            "500ms",
            // ... and by a federated lab cluster within seconds (the
            // refresh hint this cluster's bundle endpoint publishes).
            "--bundle-refresh-hint",
            LAB_BUNDLE_REFRESH_HINT,
        ];
        let p = self.lab.spawn(
            &self.lab.external(1).netns.clone(),
            bin.to_str().context("utf-8")?,
            &args,
            &[("RUST_LOG", "info"), ("NO_COLOR", "1")],
            Some(&self.controller_log()),
        )?;
        self.controller = Some(p);
        Ok(())
    }

    pub fn stop_controller(&mut self) -> Result<()> {
        if let Some(p) = self.controller.take() {
            p.kill()?;
        }
        Ok(())
    }

    /// Re-reads the manifests (when they changed) and makes the cluster
    /// match them. Returns the manifest errors, which never stop the rest.
    pub async fn reconcile(&mut self) -> Result<Vec<String>> {
        if let Some((objects, errors)) = self.source.poll() {
            self.source_errors = errors.iter().map(|e| e.to_string()).collect();
            for e in &self.source_errors {
                tracing::warn!(error = %e, "manifest rejected");
            }
            self.objects = objects;
        }
        let mut placement_errors = Vec::new();
        // Desired pods: bare pods and each deployment's replicas.
        let mut desired: BTreeMap<String, Desired> = BTreeMap::new();
        for o in &self.objects {
            let (ns, sa, labels, containers, names, node, ip) = match o {
                Object::Pod(p) => (
                    &p.namespace,
                    &p.service_account,
                    &p.labels,
                    &p.containers,
                    vec![p.name.clone()],
                    p.node.clone(),
                    p.annotations.get(POD_IP_ANNOTATION).cloned(),
                ),
                Object::Deployment(d) => (
                    &d.namespace,
                    &d.service_account,
                    &d.labels,
                    &d.containers,
                    (0..d.replicas).map(|i| format!("{}-{i}", d.name)).collect(),
                    None,
                    None,
                ),
                _ => continue,
            };
            for name in names {
                desired.insert(
                    key(ns, &name),
                    Desired {
                        namespace: ns.clone(),
                        name,
                        service_account: sa.clone(),
                        labels: labels.clone(),
                        containers: containers.clone(),
                        waypoint: None,
                        node: node.clone(),
                        ip: ip.clone(),
                    },
                );
            }
        }
        // Waypoints, as the controller provisions them in a cluster: one
        // pod (a Deployment of one replica) per Gateway the mesh has.
        let mut index = Index::new();
        for o in &self.objects {
            index.upsert(o.clone());
        }
        for w in waypoint::all(&index) {
            let p = waypoint::provision(&w);
            let name = format!("{}-0", p.name);
            desired.insert(
                key(&p.namespace, &name),
                Desired {
                    namespace: p.namespace.clone(),
                    name,
                    service_account: p.service_account.clone(),
                    labels: p.pod_labels.clone(),
                    containers: Vec::new(),
                    waypoint: Some(p),
                    node: None,
                    ip: None,
                },
            );
        }
        // Services: stable VIPs.
        for o in &self.objects {
            if let Object::Service(s) = o {
                let k = (s.namespace.clone(), s.name.clone());
                if !self.vips.contains_key(&k) {
                    if self.next_vip >= VIPS_PER_CLUSTER {
                        placement_errors.push(format!(
                            "Service {}/{}: the cluster has no VIPs left",
                            s.namespace, s.name
                        ));
                        continue;
                    }
                    let n = VIPS_PER_CLUSTER * (self.spec.cluster as u32 - 1) + self.next_vip;
                    let ip = Ipv4Addr::new(10, 96, (n >> 8) as u8, n as u8);
                    self.next_vip += 1;
                    self.vips.insert(k, ip);
                }
            }
        }
        let services: Vec<_> = self
            .objects
            .iter()
            .filter_map(|o| {
                if let Object::Service(s) = o {
                    Some((s.namespace.clone(), s.name.clone()))
                } else {
                    None
                }
            })
            .collect();
        self.vips.retain(|k, _| services.contains(k));

        // Pods going away: first not ready (written to state), then stopped.
        let now = Instant::now();
        for (k, p) in self.pods.iter_mut() {
            if !desired.contains_key(k) && p.terminating_since.is_none() {
                p.terminating_since = Some(now);
            }
        }
        let grace = self.spec.termination_grace;
        let done: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.terminating_since.is_some_and(|t| t.elapsed() >= grace))
            .map(|(k, _)| k.clone())
            .collect();
        for k in done {
            let p = self.pods.remove(&k).expect("listed");
            self.stop_pod(p).await?;
        }
        // New pods, those asking for an IP first (so no other takes it).
        let mut desired: Vec<(String, Desired)> = desired.into_iter().collect();
        desired.sort_by_key(|(_, d)| d.ip.is_none());
        for (k, d) in desired {
            let Desired {
                namespace: ns,
                name,
                service_account: sa,
                labels,
                mut containers,
                waypoint,
                node,
                ip,
            } = d;
            if self.pods.contains_key(&k) {
                let p = self.pods.get_mut(&k).expect("present");
                p.labels = labels;
                continue;
            }
            let (node, ip) = match self.place(node.as_deref(), ip.as_deref()) {
                Ok(placed) => placed,
                Err(e) => {
                    placement_errors.push(format!("Pod {k}: {e:#}"));
                    continue;
                }
            };
            let info = self.lab.add_pod_at(
                &PodSpec {
                    name: format!("{ns}.{name}"),
                    node,
                },
                ip,
            )?;
            let probe = match &waypoint {
                Some(w) => {
                    containers = vec![self.waypoint_container(w, node)?];
                    Probe::Http(crate::WAYPOINT_METRICS_PORT, "/healthz/ready")
                }
                None => containers
                    .first()
                    .and_then(|c| c.ports.first())
                    .map_or(Probe::None, |cp| Probe::Tcp(cp.port)),
            };
            let uid = format!("local-{}-{ns}-{name}", self.lab.prefix());
            self.pods.insert(
                k,
                LocalPod {
                    uid,
                    namespace: ns,
                    name,
                    service_account: sa,
                    labels,
                    node,
                    netns: info.netns,
                    ip: info.ip,
                    containers,
                    enrolled: false,
                    identity_pending: false,
                    network_ready: false,
                    terminating_since: None,
                    ready: false,
                    probe,
                    proc: None,
                },
            );
        }
        self.probe_readiness().await;
        self.refresh_enrollment().await?;
        // What the API server has: the agents read it (new pods included)
        // before their plugin runs.
        self.write_state()?;
        self.write_hosts()?;
        // A pod's network, then its containers, as a kubelet does: the CNI
        // plugin's ADD for each new pod (its node's agent enrolls it if it
        // is in the mesh, and follows label changes from then on).
        let keys: Vec<String> = self.pods.keys().cloned().collect();
        for k in keys {
            let p = &self.pods[&k];
            if p.terminating_since.is_some() {
                continue;
            }
            if !p.network_ready {
                self.add_network(&k).await?;
            }
            if self.pods[&k].proc.is_none() {
                self.start_process(&k)?;
            }
        }
        self.refresh_enrollment().await?;
        for e in &placement_errors {
            if !self.errors.contains(e) {
                tracing::warn!(error = %e, "manifest rejected");
            }
        }
        self.errors = self.source_errors.clone();
        self.errors.extend(placement_errors);
        Ok(self.errors.clone())
    }

    /// Where a new pod goes: the node `spec.nodeName` names (`node<i>`),
    /// else the one with the fewest pods; at [`POD_IP_ANNOTATION`]'s
    /// address if it has one, which must be free and in that node's CIDR.
    fn place(&self, node: Option<&str>, ip: Option<&str>) -> Result<(usize, Option<Ipv4Addr>)> {
        let node = match node {
            Some(n) => n
                .strip_prefix("node")
                .and_then(|i| i.parse().ok())
                .filter(|i| (1..=self.spec.nodes).contains(i))
                .with_context(|| {
                    format!(
                        "spec.nodeName: no node {n:?} (the lab's nodes are node1 to node{})",
                        self.spec.nodes
                    )
                })?,
            None => (1..=self.spec.nodes)
                .min_by_key(|n| (self.pods.values().filter(|p| p.node == *n).count(), *n))
                .expect("at least one node"),
        };
        let Some(ip) = ip else {
            return Ok((node, None));
        };
        let ip: Ipv4Addr = ip.parse().with_context(|| {
            format!("metadata.annotations.{POD_IP_ANNOTATION}: {ip:?} is not an IPv4 address")
        })?;
        self.lab.check_pod_ip(node, ip).with_context(|| {
            format!(
                "metadata.annotations.{POD_IP_ANNOTATION} (node{node}'s pods are in {})",
                self.lab.node(node).pod_cidr
            )
        })?;
        Ok((node, Some(ip)))
    }

    /// Keeps reconciling until `stop`; errors are logged.
    pub async fn watch(&mut self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "reconcile failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Marks pods ready once their readiness probe passes.
    async fn probe_readiness(&mut self) {
        for p in self.pods.values_mut().filter(|p| !p.ready) {
            let (port, path) = match &p.probe {
                Probe::None => {
                    p.ready = true;
                    continue;
                }
                Probe::Tcp(port) => (*port, None),
                Probe::Http(port, path) => (*port, Some(*path)),
            };
            let Ok(w) = quicmesh_core::netns::NetnsWorker::start(&Lab::netns_path(&p.netns)) else {
                continue;
            };
            let addr = SocketAddr::from((p.ip, port));
            p.ready = w
                .run(move || match path {
                    None => std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                        .is_ok(),
                    Some(path) => crate::mesh::http_get(addr, path).is_ok_and(|b| b == "ready\n"),
                })
                .await
                .unwrap_or(false);
        }
    }

    /// The container of a waypoint pod: the real waypoint binary, with a
    /// token of its own for the CA (as a kubelet projects one).
    fn waypoint_container(&mut self, w: &Provision, node: usize) -> Result<Container> {
        let bin = find_binary("waypoint")?;
        let token_path = self
            .dir
            .join(format!("token-waypoint-{}-{}", w.namespace, w.name));
        if !token_path.exists() {
            let token: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            std::fs::write(&token_path, &token)?;
            self.tokens.insert(
                format!("ns/{}/sa/{}", w.namespace, w.service_account),
                token,
            );
            self.write_tokens()?;
        }
        let s = |p: &Path| p.display().to_string();
        Ok(Container {
            name: "waypoint".into(),
            command: vec![s(&bin)],
            args: vec![
                "--controller".into(),
                SocketAddr::from((self.controller_ip(), CONTROLLER_GRPC)).to_string(),
                "--trust-domain".into(),
                self.spec.trust_domain.clone(),
                "--controller-identity".into(),
                controller_identity(&self.spec.trust_domain),
                "--bootstrap-token".into(),
                s(&token_path),
                "--trust-bundle".into(),
                s(&self.dir.join("ca/ca.pem")),
                "--namespace".into(),
                w.namespace.clone(),
                "--gateway".into(),
                w.name.clone(),
                "--node".into(),
                format!("node{node}"),
            ],
            env: vec![
                ("RUST_LOG".into(), "info".into()),
                ("NO_COLOR".into(), "1".into()),
            ],
            ports: vec![],
        })
    }

    /// The CA's token file: principal (node name, `ns/<ns>/sa/<name>`) to
    /// token. The controller reads it again when it changes.
    fn write_tokens(&self) -> Result<()> {
        let tmp = self.dir.join("tokens.yaml.tmp");
        std::fs::write(&tmp, serde_yaml::to_string(&self.tokens)?)?;
        std::fs::rename(&tmp, self.dir.join("tokens.yaml"))?;
        Ok(())
    }

    fn sandbox(p: &LocalPod) -> Sandbox<'_> {
        Sandbox {
            namespace: &p.namespace,
            name: &p.name,
            uid: &p.uid,
            netns: &p.netns,
            ip: p.ip,
        }
    }

    /// The CNI plugin's ADD for the pod `k`. A failure is cleaned up with
    /// a DEL, as a runtime does, and the ADD retried at the next reconcile.
    async fn add_network(&mut self, k: &str) -> Result<()> {
        let p = &self.pods[k];
        let added = self.cni.add(&self.lab, p.node, &Self::sandbox(p)).await;
        if let Err(e) = added {
            let _ = self.cni.del(&self.lab, p.node, &Self::sandbox(p)).await;
            return Err(e.context(format!("setting up the network of {k}")));
        }
        self.pods.get_mut(k).expect("present").network_ready = true;
        Ok(())
    }

    /// Reads each node agent's view of its pods: enrolled, identity-pending.
    async fn refresh_enrollment(&mut self) -> Result<()> {
        for node in 1..=self.spec.nodes {
            if !self.pods.values().any(|p| p.node == node) {
                continue;
            }
            let held: BTreeMap<String, crate::cni::Held> = self
                .cni
                .held(&self.lab, node)
                .await
                .with_context(|| format!("asking node{node}'s CNI agent about its pods"))?
                .into_iter()
                .collect();
            for (k, p) in self.pods.iter_mut().filter(|(_, p)| p.node == node) {
                let h = held.get(&p.uid).cloned().unwrap_or_default();
                if h.enrolled != p.enrolled || h.identity_pending != p.identity_pending {
                    tracing::info!(pod = %k, enrolled = h.enrolled, identity_pending = h.identity_pending, "enrollment changed");
                }
                p.enrolled = h.enrolled;
                p.identity_pending = h.identity_pending;
            }
        }
        Ok(())
    }

    async fn stop_pod(&mut self, p: LocalPod) -> Result<()> {
        if p.network_ready {
            self.cni
                .del(&self.lab, p.node, &Self::sandbox(&p))
                .await
                .with_context(|| {
                    format!("tearing down the network of {}/{}", p.namespace, p.name)
                })?;
        }
        if let Some(proc) = &p.proc {
            proc.kill()?;
        }
        self.lab
            .remove_pod(&format!("{}.{}", p.namespace, p.name))?;
        Ok(())
    }

    /// Environment of a pod: its container's, the downward API basics, and
    /// Kubernetes-style variables for the Services of its namespace.
    fn env(&self, p: &LocalPod) -> Vec<(String, String)> {
        let mut env = vec![
            ("POD_NAME".to_string(), p.name.clone()),
            ("POD_NAMESPACE".to_string(), p.namespace.clone()),
            ("POD_IP".to_string(), p.ip.to_string()),
        ];
        for o in &self.objects {
            if let Object::Service(s) = o {
                if s.namespace != p.namespace {
                    continue;
                }
                let Some(vip) = self.vips.get(&(s.namespace.clone(), s.name.clone())) else {
                    continue;
                };
                let prefix = s.name.to_uppercase().replace(['-', '.'], "_");
                env.push((format!("{prefix}_SERVICE_HOST"), vip.to_string()));
                if let Some(port) = s.ports.first() {
                    env.push((format!("{prefix}_SERVICE_PORT"), port.port.to_string()));
                }
            }
        }
        if let Some(c) = p.containers.first() {
            env.extend(c.env.iter().cloned());
        }
        env
    }

    /// Service names for every pod, through `/etc/netns/<pod>/hosts` (which
    /// `ip netns exec` mounts over `/etc/hosts`; likewise `resolv.conf`): `<svc>.<ns>.svc.cluster.local`,
    /// `<svc>.<ns>`, and `<svc>` within the pod's own namespace. Rewritten
    /// in place, since running processes see the mounted inode.
    fn write_hosts(&self) -> Result<()> {
        for p in self.pods.values() {
            let mut text = String::from("127.0.0.1 localhost\n");
            text.push_str(&format!("{} {}\n", p.ip, p.name));
            for ((ns, name), vip) in &self.vips {
                text.push_str(&format!("{vip} {name}.{ns}.svc.cluster.local {name}.{ns}"));
                if *ns == p.namespace {
                    text.push_str(&format!(" {name}"));
                }
                text.push('\n');
            }
            let dir = Path::new("/etc/netns").join(&p.netns);
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("hosts");
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                std::fs::write(&path, text)?;
            }
            // No DNS server is reachable from a pod: fail look-ups at once
            // (the default nameserver, 127.0.0.1, refuses) instead of after
            // the resolver's timeouts.
            let resolv = dir.join("resolv.conf");
            if !resolv.exists() {
                std::fs::write(&resolv, "# quicmesh local: no DNS; Service names are in /etc/hosts\noptions timeout:1 attempts:1\n")?;
            }
        }
        Ok(())
    }

    fn start_process(&mut self, k: &str) -> Result<()> {
        let p = &self.pods[k];
        let Some(c) = p.containers.first() else {
            return Ok(());
        };
        let mut argv: Vec<String> = c.command.iter().chain(&c.args).cloned().collect();
        if argv.is_empty() {
            return Ok(());
        }
        let program = argv.remove(0);
        let env = self.env(p);
        let env_refs: Vec<(&str, &str)> =
            env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let log = self.pod_log_path(&p.namespace, &p.name);
        let cwd = self.spec.manifests.clone();
        let proc = self.lab.spawn_in_dir(
            &p.netns.clone(),
            &program,
            &args,
            &env_refs,
            Some(&log),
            Some(&cwd),
        )?;
        self.pods.get_mut(k).expect("present").proc = Some(proc);
        Ok(())
    }

    pub fn pod_log(&self, ns: &str, name: &str) -> String {
        std::fs::read_to_string(self.pod_log_path(ns, name)).unwrap_or_default()
    }

    pub fn pod_log_path(&self, ns: &str, name: &str) -> PathBuf {
        self.dir.join(format!("pod-{ns}.{name}.log"))
    }

    /// What the API server would report, as manifests for the controller.
    fn write_state(&self) -> Result<()> {
        let mut docs = Vec::new();
        for o in &self.objects {
            match o {
                Object::Namespace(n) => docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n.name, "labels": n.labels}})),
                Object::ServiceAccount(s) => docs.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": s.name, "namespace": s.namespace}})),
                Object::Service(s) => {
                    let Some(vip) = self.vips.get(&(s.namespace.clone(), s.name.clone())) else { continue };
                    let ports: Vec<_> = s
                        .ports
                        .iter()
                        .map(|p| {
                            let target = match &p.target {
                                quicmesh_controller::model::TargetPort::Number(n) => json!(n),
                                quicmesh_controller::model::TargetPort::Name(n) => json!(n),
                            };
                            let mut port = json!({"name": p.name, "port": p.port, "targetPort": target});
                            if let Some(a) = &p.app_protocol {
                                port["appProtocol"] = json!(a);
                            }
                            port
                        })
                        .collect();
                    docs.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": s.name, "namespace": s.namespace, "labels": s.labels},
                        "spec": {"clusterIP": vip.to_string(), "ports": ports, "selector": s.selector}}));
                }
                // Custom resources are stored as written, as an API server does.
                Object::AuthorizationPolicy(p) => docs.push(json!({"apiVersion": quicmesh_controller::sources::manifest::QUICMESH_API_VERSION, "kind": "AuthorizationPolicy",
                    "metadata": {"name": p.name, "namespace": p.namespace}, "spec": p.spec})),
                // Its jwksFrom.file paths were made absolute when read.
                Object::RequestAuthentication(r) => docs.push(json!({"apiVersion": quicmesh_controller::sources::manifest::QUICMESH_API_VERSION, "kind": "RequestAuthentication",
                    "metadata": {"name": r.name, "namespace": r.namespace}, "spec": r.spec})),
                Object::Gateway(g) => docs.push(json!({"apiVersion": quicmesh_controller::sources::manifest::GATEWAY_API_VERSION, "kind": "Gateway",
                    "metadata": {"name": g.name, "namespace": g.namespace, "labels": g.labels}, "spec": {"gatewayClassName": g.class}})),
                Object::TrafficPolicy(p) => {
                    let mut metadata = json!({"name": p.name, "namespace": p.namespace});
                    // Its age decides conflicts between policies.
                    if let Some(t) = quicmesh_controller::sources::manifest::timestamp_text(p.created) {
                        metadata["creationTimestamp"] = json!(t);
                    }
                    docs.push(json!({"apiVersion": quicmesh_controller::sources::manifest::QUICMESH_API_VERSION, "kind": "TrafficPolicy",
                        "metadata": metadata, "spec": p.spec}));
                }
                Object::Route(r) => docs.push(json!({"apiVersion": quicmesh_controller::sources::manifest::GATEWAY_API_VERSION, "kind": r.kind.api_kind(),
                    "metadata": {"name": r.name, "namespace": r.namespace}, "spec": r.spec})),
                Object::TrustDomainFederation(f) => docs.push(json!({"apiVersion": quicmesh_controller::sources::manifest::QUICMESH_API_VERSION, "kind": "TrustDomainFederation",
                    "metadata": {"name": f.name}, "spec": f.written})),
                Object::WorkloadEntry(e) => docs.push(json!({"apiVersion": quicmesh_controller::sources::manifest::QUICMESH_API_VERSION, "kind": "WorkloadEntry",
                    "metadata": {"name": e.name, "namespace": e.namespace},
                    "spec": {"address": e.address.to_string(), "identity": e.identity, "labels": e.labels, "ports": e.ports}})),
                _ => {}
            }
        }
        for p in self.pods.values() {
            let containers: Vec<_> = p
                .containers
                .iter()
                .map(|c| json!({"name": c.name, "ports": c.ports.iter().map(|cp| json!({"name": cp.name, "containerPort": cp.port})).collect::<Vec<_>>()}))
                .collect();
            let ready = if p.ready && !p.identity_pending && p.terminating_since.is_none() {
                "True"
            } else {
                "False"
            };
            docs.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": p.name, "namespace": p.namespace, "uid": p.uid, "labels": p.labels},
                "spec": {"nodeName": format!("node{}", p.node), "serviceAccountName": p.service_account, "containers": containers},
                "status": {"podIP": p.ip.to_string(), "podIPs": [{"ip": p.ip.to_string()}], "conditions": [{"type": "Ready", "status": ready}]}}));
        }
        let mut text = String::new();
        for d in docs {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(&d)?);
        }
        let tmp = self.dir.join("state.yaml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.dir.join("state/cluster.yaml"))?;
        Ok(())
    }

    pub fn pod(&self, ns: &str, name: &str) -> &LocalPod {
        self.pods
            .get(&key(ns, name))
            .unwrap_or_else(|| panic!("no pod {ns}/{name}"))
    }

    pub fn vip(&self, ns: &str, name: &str) -> IpAddr {
        IpAddr::V4(
            *self
                .vips
                .get(&(ns.to_string(), name.to_string()))
                .unwrap_or_else(|| panic!("no service {ns}/{name}")),
        )
    }

    /// GET from the controller's metrics port (/status, /config_dump, /metrics).
    /// GET from the controller: `/metrics` and `/healthz/*` on its metrics
    /// port, the rest (`/status`, `/config_dump`) on its loopback admin port.
    pub async fn controller_http(&self, path: &str) -> Result<String> {
        let addr = if path == "/metrics" || path.starts_with("/healthz/") {
            SocketAddr::from((self.controller_ip(), CONTROLLER_METRICS))
        } else {
            SocketAddr::from(([127, 0, 0, 1], CONTROLLER_ADMIN))
        };
        netns_http_get(&self.lab.external(1).netns, addr, path).await
    }

    /// GET from a ztunnel's metrics (15020) or admin (15000) port.
    pub async fn ztunnel_http(&self, node: usize, port: u16, path: &str) -> Result<String> {
        netns_http_get(
            &self.lab.node(node).netns,
            SocketAddr::from(([127, 0, 0, 1], port)),
            path,
        )
        .await
    }

    /// Stops node's ztunnel (SIGTERM: it drains its pods, leaving their
    /// rules so their traffic fails closed until a ztunnel is back).
    pub fn stop_ztunnel(&mut self, node: usize) -> Result<()> {
        self.ztunnels.stop(node)
    }

    /// Starts node's ztunnel and waits until its CNI agent has re-synced
    /// it (a snapshot of the pods it holds, replayed by the agent on its
    /// own when the new ztunnel's socket answers).
    pub async fn start_ztunnel(&mut self, node: usize) -> Result<()> {
        let (before, _) = self.cni.syncs(&self.lab, node).await?;
        self.ztunnels.start(&self.lab, node).await?;
        self.cni.wait_resync(&self.lab, node, before).await?;
        self.refresh_enrollment().await
    }

    /// [`stop_ztunnel`](Self::stop_ztunnel), then [`start_ztunnel`](Self::start_ztunnel).
    pub async fn restart_ztunnel(&mut self, node: usize) -> Result<()> {
        self.stop_ztunnel(node)?;
        self.start_ztunnel(node).await
    }

    pub fn ztunnel_pid(&self, node: usize) -> Option<u32> {
        self.ztunnels.pid(node)
    }

    /// A summary for `quicmesh local status`: nodes, pods with identities
    /// and IPs, services with VIPs, config versions, manifest errors.
    pub async fn status(&self) -> serde_json::Value {
        let controller: serde_json::Value = match self.controller_http("/status").await {
            Ok(t) => serde_json::from_str(&t).unwrap_or(json!(null)),
            Err(e) => json!({"error": e.to_string()}),
        };
        let mut nodes = Vec::new();
        for n in 1..=self.spec.nodes {
            let version = match self.ztunnel_http(n, 15000, "/config_dump").await {
                Ok(t) => serde_json::from_str::<serde_json::Value>(&t)
                    .map(|v| v["state"]["version"].clone())
                    .unwrap_or(json!(null)),
                Err(_) => json!(null),
            };
            nodes.push(json!({"name": format!("node{n}"), "ztunnel_pid": self.ztunnel_pid(n), "config_version": version,
                "netns": self.lab.node(n).netns, "log": self.ztunnel_log(n), "cni_log": self.cni_agent_log(n)}));
        }
        let pods: Vec<_> = self
            .pods
            .values()
            .map(|p| {
                json!({"namespace": p.namespace, "name": p.name, "node": format!("node{}", p.node), "ip": p.ip.to_string(),
                    "identity": format!("spiffe://{}/ns/{}/sa/{}", self.spec.trust_domain, p.namespace, p.service_account),
                    "in_mesh": p.enrolled, "waypoint": p.labels.contains_key(waypoint::GATEWAY_NAME_LABEL), "identity_pending": p.identity_pending, "ready": p.ready, "terminating": p.terminating_since.is_some(),
                    "netns": p.netns, "log": self.pod_log_path(&p.namespace, &p.name)})
            })
            .collect();
        let services: Vec<_> = self
            .vips
            .iter()
            .map(|((ns, name), vip)| json!({"namespace": ns, "name": name, "vip": vip.to_string()}))
            .collect();
        json!({"prefix": self.lab.prefix(), "cluster": self.spec.cluster, "trust_domain": self.spec.trust_domain,
            "controller_ip": self.controller_ip().to_string(), "controller_netns": self.lab.external(1).netns,
            "controller_log": self.controller_log(), "dir": self.dir, "manifests": self.spec.manifests, "controller": controller,
            "nodes": nodes, "pods": pods, "services": services, "errors": self.errors})
    }

    /// Leaves everything running after this process exits.
    pub fn detach(self) {
        std::mem::forget(self);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = |p: &Path| file_tail(p, 40);
            eprintln!(
                "---- controller log (tail) ----\n{}",
                tail(&self.controller_log())
            );
            self.ztunnels.print_tails(40);
            self.cni.print_tails(40);
        }
        for p in self.pods.values() {
            if let Some(proc) = &p.proc {
                let _ = proc.kill();
            }
        }
        self.cni.stop_all();
        self.ztunnels.stop_all();
        if let Some(c) = &self.controller {
            let _ = c.kill();
        }
        if std::env::var_os("QUICMESH_KEEP_LAB_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_config_files() {
        let full = LabConfig::parse("{trustDomain: east.example, nodes: 3, cluster: 2}").unwrap();
        assert_eq!(
            full,
            LabConfig {
                trust_domain: Some("east.example".into()),
                nodes: Some(3),
                cluster: Some(2),
            }
        );
        assert_eq!(LabConfig::parse("").unwrap(), LabConfig::default());
        assert_eq!(
            LabConfig::parse("# nothing to say\n").unwrap(),
            LabConfig::default()
        );
        for (bad, why) in [
            ("trustDomian: east.example", "unknown field"),
            ("trustDomain: East.Example", "not a valid trust domain"),
            ("trustDomain: east/example", "not a valid trust domain"),
            ("nodes: 0", "at least one node"),
            ("cluster: 10", "not in 1..=9"),
            ("kind: Pod", "unknown field"),
        ] {
            let e = format!("{:#}", LabConfig::parse(bad).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_directory_without_a_config_file_is_todays_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let spec = LocalSpec::from_dir(dir.path(), 2, 1).unwrap();
        assert_eq!(
            (spec.nodes, spec.cluster, spec.trust_domain.as_str()),
            (2, 1, "cluster.local")
        );
        std::fs::write(dir.path().join(LAB_CONFIG_FILE), "nodes: 4\n").unwrap();
        let spec = LocalSpec::from_dir(dir.path(), 2, 3).unwrap();
        assert_eq!(
            (spec.nodes, spec.cluster, spec.trust_domain.as_str()),
            (4, 3, "cluster.local")
        );
        std::fs::write(dir.path().join(LAB_CONFIG_FILE), "nodes: [").unwrap();
        let e = format!("{:#}", LocalSpec::from_dir(dir.path(), 2, 1).unwrap_err());
        assert!(e.contains(LAB_CONFIG_FILE), "{e}");
    }
}
