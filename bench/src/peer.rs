//! The peer quicmesh is measured against in the same run: Istio's ztunnel
//! (HBONE: HTTP/2 CONNECT over mutual TLS on TCP 15008), a binary the user
//! points at (`--peer istio=PATH`), never part of quicmesh.
//!
//! How it is wired into the bench's lab: a third pair of pods outside
//! quicmesh (`pclient` on node 1, `pserver` on node 2, the same links as
//! the other pairs), each with an Istio ztunnel of its own in dedicated
//! mode (one workload per ztunnel, as a sidecar-less node proxy serves a
//! pod), its built-in fake CA, and a local workload file naming the two
//! pods as HBONE workloads. In the client pod an nftables rule redirects
//! the bench's connections to the server pod (its app and iperf3 ports)
//! to the ztunnel's outbound port 15001, skipping the ztunnel's own
//! sockets (`PACKET_MARK`); the client's ztunnel dials the server pod's
//! 15008, and the server's ztunnel connects to the app in its pod. Both
//! run two worker threads, as quicmesh's ztunnels do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quicmesh_lab::mesh::{netns_http_get, sum_metric};
use quicmesh_lab::net::ProcHandle;
use quicmesh_lab::Mesh;
use serde::Serialize;
use serde_json::{json, Value};

/// The peer's pods: client on node 1, server on node 2.
pub const CLIENT: &str = "pclient";
pub const SERVER: &str = "pserver";
/// The mark Istio's ztunnel puts on its own sockets (`PACKET_MARK`).
const MARK: u32 = 1337;
const OUTBOUND_PORT: u16 = 15001;
const READY_PORT: u16 = 15021;
const METRICS_PORT: u16 = 15020;

/// `--peer istio=PATH`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSpec {
    pub kind: String,
    pub path: PathBuf,
}

impl PeerSpec {
    pub fn parse(arg: &str) -> Result<PeerSpec> {
        let Some((kind, path)) = arg.split_once('=') else {
            bail!("--peer takes KIND=PATH, e.g. istio=../shared/peers/istio-ztunnel");
        };
        if kind != "istio" {
            bail!("unknown peer {kind:?}: the bench knows istio (Istio's ztunnel)");
        }
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("the peer binary {path} cannot be found"))?;
        Ok(PeerSpec {
            kind: kind.into(),
            path,
        })
    }
}

/// The two running Istio ztunnels.
pub struct Peer {
    spec: PeerSpec,
    workloads: PathBuf,
    /// Client pod's, then server pod's.
    procs: Vec<ProcHandle>,
    logs: [PathBuf; 2],
    starts: usize,
    /// `POOL_UNUSED_RELEASE_TIMEOUT` of the running pair, if not its default.
    pool_release: Option<String>,
}

fn env(workloads: &Path, pod: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LOCAL_XDS_PATH", workloads.display().to_string()),
        ("FAKE_CA", "true".into()),
        ("XDS_ADDRESS", String::new()),
        ("CA_ADDRESS", String::new()),
        ("INPOD_ENABLED", "false".into()),
        ("PROXY_MODE", "dedicated".into()),
        ("PROXY_WORKLOAD_INFO", format!("bench/{pod}/{pod}")),
        ("PACKET_MARK", MARK.to_string()),
        // As root it would otherwise connect to the app with the client's
        // address, and the answers would leave the pod.
        ("ENABLE_ORIG_SRC", "false".into()),
        ("ZTUNNEL_WORKER_THREADS", "2".into()),
        ("RUST_LOG", "info".into()),
    ]
}

impl Peer {
    /// Writes the workload file, captures the client pod's connections to
    /// the server pod's `ports`, and starts both ztunnels (ready when they
    /// answer their readiness port).
    pub async fn start(mesh: &Mesh, spec: PeerSpec, ports: &[u16]) -> Result<Peer> {
        let workloads = mesh.dir.join("istio-workloads.yaml");
        std::fs::write(&workloads, workload_file(mesh))
            .with_context(|| format!("writing {}", workloads.display()))?;
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let rules = format!(
            "table ip bench_peer {{\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    \
             meta mark {MARK} return\n    ip daddr {} tcp dport {{ {} }} redirect to :{OUTBOUND_PORT}\n  }}\n}}\n",
            mesh.pod_ip(SERVER),
            ports.join(", ")
        );
        let rules_file = mesh.dir.join("istio-capture.nft");
        std::fs::write(&rules_file, rules)?;
        let client_ns = mesh.lab.pod(CLIENT).netns.clone();
        let rules_path = rules_file.to_str().context("lab path is not UTF-8")?;
        mesh.lab
            .exec(&client_ns, &["nft", "-f", rules_path])
            .context("the peer's capture rule")?;
        let logs = [CLIENT, SERVER].map(|p| mesh.dir.join(format!("istio-ztunnel-{p}.log")));
        let mut peer = Peer {
            spec,
            workloads,
            procs: Vec::new(),
            logs,
            starts: 0,
            pool_release: None,
        };
        peer.spawn(mesh).await?;
        Ok(peer)
    }

    async fn spawn(&mut self, mesh: &Mesh) -> Result<()> {
        let bin = self.spec.path.to_str().context("peer path is not UTF-8")?;
        self.starts += 1;
        for (i, pod) in [CLIENT, SERVER].into_iter().enumerate() {
            let ns = mesh.lab.pod(pod).netns.clone();
            let mut env = env(&self.workloads, pod);
            if let Some(t) = &self.pool_release {
                env.push(("POOL_UNUSED_RELEASE_TIMEOUT", t.clone()));
            }
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let p = mesh.lab.spawn(&ns, bin, &[], &env, Some(&self.logs[i]))?;
            self.procs.push(p);
        }
        for (i, pod) in [CLIENT, SERVER].into_iter().enumerate() {
            let ns = mesh.lab.pod(pod).netns.clone();
            self.wait_ready(&ns, i)
                .await
                .with_context(|| format!("Istio's ztunnel in {pod}"))?;
        }
        Ok(())
    }

    async fn wait_ready(&self, ns: &str, i: usize) -> Result<()> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], READY_PORT));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !self.procs[i].is_running() {
                bail!(
                    "it exited: {}",
                    quicmesh_lab::mesh::file_tail(&self.logs[i], 20)
                );
            }
            if netns_http_get(ns, addr, "/healthz/ready").await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "not ready after 20 s: {}",
            quicmesh_lab::mesh::file_tail(&self.logs[i], 20)
        )
    }

    /// Stops both and starts them again: no pooled connection, fresh memory.
    pub async fn restart(&mut self, mesh: &Mesh) -> Result<()> {
        self.restart_releasing(mesh, None).await
    }

    /// [`restart`](Self::restart), with the client's pool closing an unused
    /// HBONE connection after `after` instead of its default 5 minutes.
    pub async fn restart_releasing(&mut self, mesh: &Mesh, after: Option<&str>) -> Result<()> {
        for p in self.procs.drain(..) {
            p.kill()?;
        }
        self.pool_release = after.map(str::to_string);
        self.spawn(mesh).await
    }

    /// Waits (10 s at most) until the client pod holds no HBONE connection
    /// to the server pod.
    pub async fn wait_unpooled(&self, mesh: &Mesh) -> Result<()> {
        let ns = mesh.lab.pod(CLIENT).netns.clone();
        let dst = format!("dst {}:15008", mesh.pod_ip(SERVER));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = mesh
                .lab
                .exec(&ns, &["ss", "-Htn", "state", "established", &dst])?;
            if out.stdout.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "Istio's ztunnel still holds an HBONE connection after 10 s: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Client node's (1) or server node's (2) ztunnel.
    pub fn pid(&self, node: usize) -> u32 {
        self.procs[node - 1].pid()
    }

    /// Connections the client pod's ztunnel has opened (its own counter),
    /// to check that the peer's load went through it.
    pub async fn connections_opened(&self, mesh: &Mesh) -> Result<f64> {
        let ns = &mesh.lab.pod(CLIENT).netns;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], METRICS_PORT));
        let text = netns_http_get(ns, addr, "/metrics").await?;
        Ok(sum_metric(&text, "istio_tcp_connections_opened_total", &[]))
    }

    pub fn describe(&self) -> String {
        format!(
            "Istio's ztunnel ({}): pids {} (client pod) and {} (server pod), logs {} and {}\n",
            self.spec.path.display(),
            self.pid(1),
            self.pid(2),
            self.logs[0].display(),
            self.logs[1].display()
        )
    }

    /// What the JSON records of the peer: the binary and how it ran.
    pub fn json(&self) -> Value {
        let bytes = std::fs::read(&self.spec.path).unwrap_or_default();
        let sha256: String = ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let env: serde_json::Map<String, Value> = env(&self.workloads, "<pod>")
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "kind": self.spec.kind,
            "binary": {
                "path": self.spec.path.display().to_string(),
                "size": bytes.len(),
                "sha256": sha256,
                "version": crate::report::command_line(&self.spec.path.display().to_string(), &["version"]),
            },
            "settings": {
                "env": env,
                "workloads": std::fs::read_to_string(&self.workloads).unwrap_or_default(),
                "wiring": "dedicated mode, one ztunnel in each of the pods pclient (node 1) and pserver (node 2); nftables redirect of the client pod's connections to the server pod's app and iperf3 ports to 15001; for the cold first-byte row only, restarted with POOL_UNUSED_RELEASE_TIMEOUT=1s, one connection served (its certificates fetched), and the pooled HBONE connection let go before the cold connection (quicmesh's ztunnels likewise, with --pool-idle 1s)",
            },
            "starts": self.starts,
        })
    }
}

/// The local workload file (the format of istio/ztunnel's
/// `examples/localhost.yaml`): both pods as HBONE workloads.
fn workload_file(mesh: &Mesh) -> String {
    let mut out = String::from("workloads:\n");
    for (pod, node) in [(CLIENT, "node1"), (SERVER, "node2")] {
        out += &format!(
            "- uid: cluster1//v1/Pod/bench/{pod}\n  name: {pod}\n  namespace: bench\n  \
             serviceAccount: {pod}\n  workloadIps: [\"{}\"]\n  protocol: HBONE\n  node: {node}\n  \
             network: \"\"\n  services: {{}}\n",
            mesh.pod_ip(pod)
        );
    }
    out + "services: []\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_named_by_kind_and_path() {
        let e = PeerSpec::parse("istio").unwrap_err().to_string();
        assert!(e.contains("KIND=PATH"), "{e}");
        let e = PeerSpec::parse("linkerd=/bin/sh").unwrap_err().to_string();
        assert!(e.contains("unknown peer \"linkerd\""), "{e}");
        let e = PeerSpec::parse("istio=/nonexistent/ztunnel").unwrap_err();
        assert!(format!("{e:#}").contains("cannot be found"), "{e:#}");
        let p = PeerSpec::parse("istio=/bin/sh").unwrap();
        assert_eq!(p.kind, "istio");
        assert!(p.path.is_absolute());
    }
}
