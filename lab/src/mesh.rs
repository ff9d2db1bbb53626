//! A running mesh in the lab: one real `ztunnel` process per node (in the
//! node's namespace), a development CA, a workload file describing every pod,
//! and pods enrolled through the real enrollment API.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::netns::NetnsWorker;
use quicmesh_proto::enrollment::Pod;
use ztunnel::config::{Workload, WorkloadFile};

use crate::net::{Lab, PodSpec, TopologySpec};
pub use crate::ztunnels::find_binary;
use crate::ztunnels::{Source, Ztunnels};

/// The trust domain of a static [`Mesh`], and of a local cluster whose
/// directory names none ([`crate::local::LocalSpec::trust_domain`]).
pub const TRUST_DOMAIN: &str = "cluster.local";

/// A pod of the mesh: where it runs and who it is.
#[derive(Debug, Clone)]
pub struct MeshPod {
    pub name: String,
    pub node: usize,
    pub namespace: String,
    pub service_account: String,
    /// Enrolled in ztunnel (captured).
    pub enrolled: bool,
    /// Listed in the mesh's workload config (peers tunnel to it).
    pub configured: bool,
}

impl MeshPod {
    pub fn new(name: &str, node: usize, namespace: &str, service_account: &str) -> Self {
        MeshPod {
            name: name.into(),
            node,
            namespace: namespace.into(),
            service_account: service_account.into(),
            enrolled: true,
            configured: true,
        }
    }

    /// A pod outside the mesh: not enrolled, not in the config.
    pub fn outside(mut self) -> Self {
        self.enrolled = false;
        self.configured = false;
        self
    }

    /// A pod the config names as a mesh workload but which is not enrolled
    /// (tests put impostors there).
    pub fn not_enrolled(mut self) -> Self {
        self.enrolled = false;
        self
    }
}

#[derive(Debug, Clone)]
pub struct MeshSpec {
    pub nodes: usize,
    pub pods: Vec<MeshPod>,
    pub externals: usize,
}

pub struct Mesh {
    pub lab: Lab,
    pub spec: MeshSpec,
    pub dir: PathBuf,
    pub ztunnels: Ztunnels,
    ca: Ca,
}

impl Mesh {
    /// Builds the topology, starts ztunnels, enrolls the enrolled pods.
    pub async fn start(spec: MeshSpec) -> Result<Mesh> {
        Self::start_with_prefix(spec, None).await
    }

    pub async fn start_with_prefix(spec: MeshSpec, prefix: Option<&str>) -> Result<Mesh> {
        let topo = TopologySpec {
            nodes: spec.nodes,
            pods: spec
                .pods
                .iter()
                .map(|p| PodSpec {
                    name: p.name.clone(),
                    node: p.node,
                })
                .collect(),
            externals: spec.externals,
            ..Default::default()
        };
        let lab = match prefix {
            Some(p) => Lab::with_prefix(&topo, p)?,
            None => Lab::new(&topo)?,
        };
        let dir = std::env::temp_dir().join("quicmesh-lab").join(lab.prefix());
        std::fs::create_dir_all(&dir)?;
        let ca = Ca::load_or_generate(TRUST_DOMAIN, &dir.join("ca"))?;
        let source = Source::Files {
            workloads: dir.join("workloads.yaml"),
            dev_ca: dir.join("ca"),
        };
        let mut mesh = Mesh {
            ztunnels: Ztunnels::new(&dir, source, spec.nodes),
            lab,
            spec,
            dir,
            ca,
        };
        mesh.write_workloads()?;
        mesh.ztunnels.start_all(&mesh.lab).await?;
        let enrolled: Vec<_> = mesh
            .spec
            .pods
            .iter()
            .filter(|p| p.enrolled)
            .cloned()
            .collect();
        for p in enrolled {
            mesh.enroll(&p.name).await?;
        }
        Ok(mesh)
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    pub fn pod_spec(&self, name: &str) -> &MeshPod {
        self.spec
            .pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name} in the mesh spec"))
    }

    pub fn pod_ip(&self, name: &str) -> Ipv4Addr {
        self.lab.pod(name).ip
    }

    pub fn identity(&self, pod: &str) -> SpiffeId {
        let p = self.pod_spec(pod);
        SpiffeId::workload(TRUST_DOMAIN, &p.namespace, &p.service_account).expect("valid names")
    }

    fn workload_file(&self) -> WorkloadFile {
        let workloads: Vec<Workload> = self
            .spec
            .pods
            .iter()
            .filter(|p| p.configured)
            .map(|p| Workload {
                uid: format!("uid-{}", p.name),
                name: p.name.clone(),
                namespace: p.namespace.clone(),
                service_account: p.service_account.clone(),
                node: format!("node{}", p.node),
                ips: vec![self.lab.pod(&p.name).ip.into()],
            })
            .collect();
        WorkloadFile {
            trust_domain: TRUST_DOMAIN.into(),
            workloads,
        }
    }

    fn write_workloads(&self) -> Result<()> {
        let text = serde_yaml::to_string(&self.workload_file())?;
        let tmp = self.dir.join("workloads.yaml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.dir.join("workloads.yaml"))?;
        Ok(())
    }

    /// The enrollment message for a pod of the lab.
    pub fn pod_message(&self, name: &str) -> Pod {
        let p = self.pod_spec(name);
        let info = self.lab.pod(name);
        Pod {
            uid: format!("uid-{name}"),
            namespace: p.namespace.clone(),
            name: name.to_string(),
            service_account: p.service_account.clone(),
            ips: vec![info.ip.to_string()],
        }
    }

    /// The path of a lab pod's network namespace.
    fn pod_netns(&self, name: &str) -> PathBuf {
        Lab::netns_path(&self.lab.pod(name).netns)
    }

    pub async fn enroll(&self, name: &str) -> Result<()> {
        let node = self.pod_spec(name).node;
        let netns = self.pod_netns(name);
        self.ztunnels
            .enroll(node, self.pod_message(name), &netns)
            .await?;
        Ok(())
    }

    pub async fn unenroll(&self, name: &str) -> Result<()> {
        let node = self.pod_spec(name).node;
        self.ztunnels.unenroll(node, &format!("uid-{name}")).await
    }

    pub fn enroll_socket(&self, node: usize) -> PathBuf {
        self.ztunnels.enroll_socket(node)
    }

    pub fn ztunnel_log(&self, node: usize) -> PathBuf {
        self.ztunnels.log_path(node)
    }

    /// Stops and restarts node's ztunnel, then re-syncs it with a snapshot
    /// of the pods enrolled there, as a node agent does.
    pub async fn restart_ztunnel(&mut self, node: usize) -> Result<()> {
        let pods: Vec<(Pod, PathBuf)> = self
            .spec
            .pods
            .iter()
            .filter(|p| p.enrolled && p.node == node)
            .map(|p| (self.pod_message(&p.name), self.pod_netns(&p.name)))
            .collect();
        self.ztunnels.restart(&self.lab, node, pods).await?;
        Ok(())
    }

    /// Flags for the ztunnels started from now on (restarts included).
    pub fn set_ztunnel_args(&mut self, args: &[&str]) {
        self.ztunnels.extra_args = args.iter().map(|a| a.to_string()).collect();
    }

    pub fn ztunnel_pid(&self, node: usize) -> u32 {
        self.ztunnels.pid(node).expect("running")
    }

    pub fn log_tail(&self, node: usize, lines: usize) -> String {
        self.ztunnels.log_tail(node, lines)
    }

    pub fn log(&self, node: usize) -> String {
        self.ztunnels.log(node)
    }

    /// A worker thread inside a namespace of the lab.
    pub fn worker(&self, netns: &str) -> Result<NetnsWorker> {
        Ok(NetnsWorker::start(&Lab::netns_path(netns))?)
    }

    /// Waits until something listens on TCP `port` inside `netns`.
    pub async fn wait_listening(&self, netns: &str, port: u16) -> Result<()> {
        let w = self.worker(netns)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if w.run(move || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
                .await?
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nothing listens on {port} in {netns} after 10 s")
    }

    /// Runs a real HTTP server (`python3 -m http.server`) inside `netns`
    /// serving `files` (name, content), and waits until it listens.
    pub async fn http_server(&self, netns: &str, port: u16, files: &[(&str, &str)]) -> Result<()> {
        let dir = self.dir.join(format!("www-{netns}-{port}"));
        std::fs::create_dir_all(&dir)?;
        for (name, content) in files {
            std::fs::write(dir.join(name), content)?;
        }
        let port_s = port.to_string();
        self.lab.spawn(
            netns,
            "python3",
            &[
                "-m",
                "http.server",
                "--bind",
                "0.0.0.0",
                "--directory",
                dir.to_str().context("utf-8 path")?,
                &port_s,
            ],
            &[],
            Some(&self.dir.join(format!("http-{netns}-{port}.log"))),
        )?;
        self.wait_listening(netns, port).await
    }

    /// GET `path` from ztunnel's metrics port on `node`.
    pub async fn ztunnel_http(&self, node: usize, port: u16, path: &str) -> Result<String> {
        netns_http_get(
            &self.lab.node(node).netns,
            SocketAddr::from(([127, 0, 0, 1], port)),
            path,
        )
        .await
    }

    pub async fn metrics(&self, node: usize) -> Result<String> {
        self.ztunnel_http(node, 15020, "/metrics").await
    }

    /// Sum of the samples of `name` whose labels contain every `label=value`.
    pub async fn metric(&self, node: usize, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        Ok(sum_metric(&self.metrics(node).await?, name, labels))
    }
}

/// Sums the samples of metric `name` in Prometheus text whose label set
/// contains all of `labels`.
pub fn sum_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let ok = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            if ok {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// The last `lines` lines of a file ("" if it cannot be read).
pub fn file_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// [`http_get`] from inside the network namespace `netns`.
pub async fn netns_http_get(netns: &str, addr: SocketAddr, path: &str) -> Result<String> {
    let w = NetnsWorker::start(&Lab::netns_path(netns))?;
    let path = path.to_string();
    w.run(move || http_get(addr, &path)).await?
}

/// A minimal blocking HTTP/1.0 GET (used inside namespaces, where no client
/// library's connection pool can follow).
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok(body.to_string())
}

impl Mesh {
    /// Leaves the mesh running after this process exits (`quicmesh local
    /// up`): nothing is torn down; `destroy_prefix` removes it later.
    pub fn detach(self) {
        std::mem::forget(self);
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.ztunnels.print_tails(60);
        }
        self.ztunnels.stop_all();
        if std::env::var_os("QUICMESH_KEEP_LAB_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
