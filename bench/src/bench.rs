//! The benchmark run: one lab with two nodes and two pairs of pods — a
//! *direct* pair outside the mesh (plain TCP across the node link) and a
//! *mesh* pair enrolled in the ztunnels of their nodes (every connection a
//! CONNECT stream over QUIC between the two ztunnels) — and the figures
//! measured on both, run after run, so that drift affects both columns alike.
//!
//! The servers (`quicmesh-bench serve`, `iperf3 -s`) and the clients
//! (`quicmesh-bench load`, `iperf3 -c`) are processes inside the pods; only
//! the cold-start and idle-connection figures create sockets from this
//! process, in the client pod's namespace, through a [`NetnsWorker`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quicmesh_core::netns::NetnsWorker;
use quicmesh_lab::mesh::sum_metric;
use quicmesh_lab::{Mesh, MeshPod, MeshSpec};
use serde::Serialize;
use serde_json::{json, Value};

use crate::http::{exchange, request, Headers};
use crate::l7::L7Plan;
use crate::load::LoadReport;
use crate::peer::{self, Peer, PeerSpec};
use crate::procstat;
use crate::report::{Scenario, Table};

const APP_PORT: u16 = 8080;
const IPERF_PORT: u16 = 5201;
const NETEM: &str = "loss 1% delay 1ms";
const LOSS_PERCENT: u32 = 1;

/// How much to measure.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub mode: String,
    pub runs: usize,
    pub iperf_secs: u32,
    /// Measured seconds of each request/response load.
    pub load_secs: f64,
    pub warmup_secs: f64,
    pub churn_secs: f64,
    /// Persistent connections of the request/response pool.
    pub conns: usize,
    pub churn_conns: usize,
    pub idle_conns: usize,
    /// First-byte samples over a reused pooled connection, per run.
    pub reuse_samples: usize,
    pub scenarios: Vec<Scenario>,
    /// Lab link MTU to set (None: the lab's 1500).
    pub mtu: Option<u32>,
    /// GRO on the lab's links (None: as created, i.e. off on veths).
    pub gro: Option<bool>,
    /// Measure the lossy-link figures.
    pub lossy: bool,
    /// Measure the L4 figures above (direct vs mesh; `--l7` alone skips them).
    pub l4: bool,
    /// The L7 rows (the waypoint hop vs HAProxy, on their own cluster), if any.
    pub l7: Option<L7Plan>,
    /// The peer measured beside quicmesh in the same lab (`--peer`), if any.
    pub peer: Option<PeerSpec>,
}

impl Plan {
    /// Seconds, one scenario (mesh L4), one run: checks that it all works.
    pub fn smoke() -> Plan {
        Plan {
            mode: "smoke".into(),
            runs: 1,
            iperf_secs: 1,
            load_secs: 1.0,
            warmup_secs: 0.2,
            churn_secs: 1.0,
            conns: 4,
            churn_conns: 2,
            idle_conns: 100,
            reuse_samples: 5,
            scenarios: vec![Scenario::Mesh],
            mtu: None,
            gro: None,
            lossy: true,
            l4: true,
            l7: None,
            peer: None,
        }
    }

    pub fn quick() -> Plan {
        Plan {
            mode: "quick".into(),
            runs: 3,
            iperf_secs: 2,
            load_secs: 2.0,
            warmup_secs: 0.5,
            churn_secs: 2.0,
            conns: 8,
            churn_conns: 4,
            idle_conns: 1000,
            reuse_samples: 20,
            scenarios: vec![Scenario::Direct, Scenario::Mesh],
            mtu: None,
            gro: None,
            lossy: true,
            l4: true,
            l7: None,
            peer: None,
        }
    }

    /// Quick plus longer loads and the L7 rows.
    pub fn full() -> Plan {
        Plan {
            mode: "full".into(),
            iperf_secs: 5,
            load_secs: 5.0,
            warmup_secs: 1.0,
            churn_secs: 3.0,
            l7: Some(L7Plan::full()),
            ..Plan::quick()
        }
    }

    /// Only the L7 rows (`--l7`), with the durations of this plan's mode.
    pub fn l7_only(mut self) -> Plan {
        self.l7 = Some(match self.mode.as_str() {
            "smoke" => L7Plan::smoke(),
            "quick" => L7Plan::quick(),
            _ => L7Plan::full(),
        });
        self.mode = format!("{}-l7", self.mode);
        self.l4 = false;
        self.lossy = false;
        self
    }
}

/// A running benchmark and what it measured so far.
pub struct Bench {
    mesh: Mesh,
    /// The peer's ztunnels, when the plan has one.
    peer: Option<Peer>,
    plan: Plan,
    exe: PathBuf,
    pub table: Table,
    /// Every measurement as taken (load reports, iperf3 results, notes).
    pub raw: Vec<Value>,
    pub mtu: String,
}

fn pods(s: Scenario) -> (&'static str, &'static str) {
    match s {
        Scenario::Direct => ("dclient", "dserver"),
        Scenario::Mesh => ("client", "server"),
        Scenario::Peer => (peer::CLIENT, peer::SERVER),
    }
}

pub(crate) fn log(msg: impl AsRef<str>) {
    eprintln!("[bench] {}", msg.as_ref());
}

/// Runs `args` inside `netns` (`ip netns exec`), killed after `timeout`;
/// returns its stdout, or an error with its output if it failed.
pub(crate) async fn run_in(netns: &str, args: &[String], timeout: Duration) -> Result<String> {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .with_context(|| format!("{args:?} in {netns} timed out after {timeout:?}"))?
        .with_context(|| format!("running {args:?} in {netns}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{args:?} in {netns} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            stdout.trim()
        );
    }
    Ok(stdout)
}

impl Bench {
    /// Builds the lab, starts the ztunnels and the servers in both server pods.
    pub async fn start(mut plan: Plan) -> Result<Bench> {
        let mut lab_pods = vec![
            MeshPod::new("dclient", 1, "bench", "dclient").outside(),
            MeshPod::new("dserver", 2, "bench", "dserver").outside(),
            MeshPod::new("client", 1, "bench", "client"),
            MeshPod::new("server", 2, "bench", "server"),
        ];
        if plan.peer.is_some() {
            // The peer's pair: outside quicmesh, on the same nodes.
            lab_pods.push(MeshPod::new(peer::CLIENT, 1, "bench", peer::CLIENT).outside());
            lab_pods.push(MeshPod::new(peer::SERVER, 2, "bench", peer::SERVER).outside());
            if !plan.scenarios.contains(&Scenario::Peer) {
                plan.scenarios.push(Scenario::Peer);
            }
        }
        let spec = MeshSpec {
            nodes: 2,
            pods: lab_pods,
            externals: 0,
        };
        let mesh = Mesh::start(spec).await.context("starting the lab mesh")?;
        if let Some(mtu) = plan.mtu {
            mesh.lab.set_link_mtu(mtu)?;
        }
        if let Some(on) = plan.gro {
            mesh.lab.set_link_gro(on)?;
        }
        let exe = std::env::current_exe()?;
        let exe_s = exe.to_str().context("executable path is not UTF-8")?;
        let servers = [Scenario::Direct, Scenario::Mesh, Scenario::Peer]
            .into_iter()
            .filter(|s| *s != Scenario::Peer || plan.peer.is_some())
            .map(|s| pods(s).1);
        for server in servers {
            let ns = mesh.lab.pod(server).netns.clone();
            let port = APP_PORT.to_string();
            let app_log = mesh.dir.join(format!("serve-{server}.log"));
            let args = ["serve", "--port", &port, "--threads", "2"];
            mesh.lab.spawn(&ns, exe_s, &args, &[], Some(&app_log))?;
            let iperf_log = mesh.dir.join(format!("iperf3-{server}.log"));
            let port = IPERF_PORT.to_string();
            mesh.lab
                .spawn(&ns, "iperf3", &["-s", "-p", &port], &[], Some(&iperf_log))?;
            mesh.wait_listening(&ns, APP_PORT).await?;
            mesh.wait_listening(&ns, IPERF_PORT).await?;
        }
        let node = mesh.lab.node(1).netns.clone();
        let mtu = mesh
            .lab
            .exec(&node, &["cat", "/sys/class/net/link/mtu"])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let peer = match plan.peer.clone() {
            Some(spec) => {
                let p = Peer::start(&mesh, spec, &[APP_PORT, IPERF_PORT]).await?;
                log(format!("peer: {}", p.describe().trim()));
                Some(p)
            }
            None => None,
        };
        let mut table = Table::new(plan.idle_conns);
        table.peer = peer.is_some();
        Ok(Bench {
            mesh,
            peer,
            plan,
            exe,
            table,
            raw: Vec::new(),
            mtu,
        })
    }

    /// What a person profiling by hand needs: each pod's network namespace
    /// and address, the ports served, the ztunnels' pids and logs.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for s in self.plan.scenarios.iter().copied() {
            let (client, server) = pods(s);
            out += &format!(
                "{}: client pod netns {}, server {} (netns {}): ports {APP_PORT} (1 KiB request/response) and {IPERF_PORT} (iperf3)\n",
                s.name(),
                self.mesh.lab.pod(client).netns,
                self.server_ip(s),
                self.mesh.lab.pod(server).netns,
            );
        }
        for node in [1, 2] {
            out += &format!(
                "ztunnel on node {node}: pid {}, log {}\n",
                self.mesh.ztunnel_pid(node),
                self.mesh.ztunnel_log(node).display()
            );
        }
        if let Some(p) = &self.peer {
            out += &p.describe();
        }
        out
    }

    /// The JSON's record of the peer (its binary and settings), if any.
    pub fn peer_json(&self) -> Value {
        self.peer.as_ref().map_or(Value::Null, Peer::json)
    }

    /// The node proxies a scenario's traffic goes through: the client
    /// node's and the server node's (for direct, quicmesh's, idle).
    fn proxy_pids(&self, s: Scenario) -> [u32; 2] {
        match (s, &self.peer) {
            (Scenario::Peer, Some(p)) => [p.pid(1), p.pid(2)],
            _ => [self.mesh.ztunnel_pid(1), self.mesh.ztunnel_pid(2)],
        }
    }

    /// Restarts a scenario's node proxies: no pooled connection, fresh
    /// memory (direct has none).
    async fn restart_proxies(&mut self, s: Scenario) -> Result<()> {
        match s {
            Scenario::Direct => {}
            Scenario::Mesh => {
                self.mesh.restart_ztunnel(1).await?;
                self.mesh.restart_ztunnel(2).await?;
            }
            Scenario::Peer => {
                if let Some(p) = self.peer.as_mut() {
                    p.restart(&self.mesh).await?;
                }
            }
        }
        Ok(())
    }

    /// Connections the peer's client-side ztunnel has opened (0 without a peer).
    async fn peer_connections(&self) -> Result<f64> {
        match &self.peer {
            Some(p) => p.connections_opened(&self.mesh).await,
            None => Ok(0.0),
        }
    }

    fn client_ns(&self, s: Scenario) -> String {
        self.mesh.lab.pod(pods(s).0).netns.clone()
    }

    fn server_ip(&self, s: Scenario) -> std::net::Ipv4Addr {
        self.mesh.pod_ip(pods(s).1)
    }

    fn record(&mut self, run: usize, s: Scenario, figure: &str, data: Value) {
        self.raw.push(json!({
            "run": run, "scenario": s.name(), "figure": figure, "data": data,
        }));
    }

    /// Everything the plan asks for.
    pub async fn run_all(&mut self) -> Result<()> {
        for run in 1..=self.plan.runs {
            for s in self.plan.scenarios.clone() {
                log(format!("run {run}/{}: {}", self.plan.runs, s.name()));
                self.throughput(run, s).await?;
                if s == Scenario::Mesh && self.plan.scenarios.contains(&Scenario::Direct) {
                    self.ceiling(run).await?;
                }
                self.request_response(run, s).await?;
            }
        }
        for (from, to) in [("pp_p50", "pp_added_p50"), ("r1k_p50", "r1k_added_p50")] {
            for s in [Scenario::Mesh, Scenario::Peer] {
                let (d, m) = (
                    self.table.values(from, Scenario::Direct).to_vec(),
                    self.table.values(from, s).to_vec(),
                );
                for (d, m) in d.iter().zip(&m) {
                    self.table.push(to, s, m - d);
                }
            }
        }
        for run in 1..=self.plan.runs {
            for s in self.plan.scenarios.clone() {
                self.first_byte_and_idle(run, s).await?;
            }
        }
        if self.plan.lossy {
            self.lossy().await?;
        }
        Ok(())
    }

    async fn iperf(&self, s: Scenario, streams: u32, secs: u32) -> Result<(f64, Value)> {
        let args: Vec<String> = [
            "iperf3",
            "-c",
            &self.server_ip(s).to_string(),
            "-p",
            &IPERF_PORT.to_string(),
            "-t",
            &secs.to_string(),
            "-P",
            &streams.to_string(),
            "-J",
        ]
        .map(String::from)
        .to_vec();
        let timeout = Duration::from_secs(u64::from(secs) + 30);
        let mut last = None;
        for _attempt in 0..3 {
            match run_in(&self.client_ns(s), &args, timeout).await {
                Ok(out) => {
                    let v: Value = serde_json::from_str(&out).context("parsing iperf3 -J")?;
                    let bps = v["end"]["sum_received"]["bits_per_second"]
                        .as_f64()
                        .context("no end.sum_received.bits_per_second in iperf3 output")?;
                    let summary = json!({
                        "streams": streams, "seconds": secs, "bits_per_second": bps,
                        "retransmits": v["end"]["sum_sent"]["retransmits"],
                    });
                    return Ok((bps / 1e9, summary));
                }
                // The server still finishing the previous test.
                Err(e) if format!("{e:#}").contains("busy") => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("an attempt failed"))
    }

    async fn throughput(&mut self, run: usize, s: Scenario) -> Result<()> {
        for (streams, key) in [(1, "tput1"), (4, "tput4")] {
            let (gbps, data) = self.iperf(s, streams, self.plan.iperf_secs).await?;
            log(format!("  iperf3 -P {streams}: {gbps:.2} Gbit/s"));
            self.table.push(key, s, gbps);
            self.record(run, s, key, data);
        }
        Ok(())
    }

    /// The tunnel's QUIC alone between the direct pods (no ztunnel there),
    /// 1 and 4 streams, in the mesh's column: what iperf3 through the mesh
    /// could reach if ztunnel's own work cost nothing ([`crate::ceiling`]).
    async fn ceiling(&mut self, run: usize) -> Result<()> {
        let (client_pod, server_pod) = pods(Scenario::Direct);
        let client = self
            .mesh
            .worker(&self.mesh.lab.pod(client_pod).netns.clone())?;
        let server = self
            .mesh
            .worker(&self.mesh.lab.pod(server_pod).netns.clone())?;
        let ip = self.server_ip(Scenario::Direct);
        let secs = f64::from(self.plan.iperf_secs);
        for (streams, key) in [(1, "quic1"), (4, "quic4")] {
            let c = crate::ceiling::run(&client, &server, ip, streams, secs).await?;
            log(format!(
                "  the tunnel's QUIC alone, {streams} stream(s): {:.2} Gbit/s ({} of {} packets lost)",
                c.gbit_s, c.lost_packets, c.sent_packets
            ));
            self.table.push(key, Scenario::Mesh, c.gbit_s);
            self.record(run, Scenario::Mesh, key, serde_json::to_value(&c)?);
        }
        Ok(())
    }

    /// `quicmesh-bench load` inside the client pod.
    async fn load(
        &self,
        s: Scenario,
        mode: &str,
        rate: f64,
        conns: usize,
        secs: f64,
    ) -> Result<LoadReport> {
        let addr = SocketAddr::from((self.server_ip(s), APP_PORT));
        let args: Vec<String> = vec![
            self.exe.display().to_string(),
            "load".into(),
            "--addr".into(),
            addr.to_string(),
            "--mode".into(),
            mode.into(),
            "--rate".into(),
            format!("{rate:.1}"),
            "--conns".into(),
            conns.to_string(),
            "--duration".into(),
            secs.to_string(),
            "--warmup".into(),
            self.plan.warmup_secs.to_string(),
        ];
        let timeout = Duration::from_secs_f64(secs + self.plan.warmup_secs + 30.0);
        let out = run_in(&self.client_ns(s), &args, timeout).await?;
        let rep: LoadReport = serde_json::from_str(&out).context("parsing the load report")?;
        if rep.requests == 0 {
            bail!(
                "{mode} load in {}: no request completed ({rep:?})",
                s.name()
            );
        }
        Ok(rep)
    }

    /// The QUIC handshakes quicmesh's ztunnels have made so far, the client
    /// node's as client and the server node's as server (None for the
    /// other scenarios: Istio's ztunnel has no handshake histogram).
    async fn handshakes(&self, s: Scenario) -> Result<Option<Handshakes>> {
        if s != Scenario::Mesh {
            return Ok(None);
        }
        let side = |text: &str, side: &str| HandshakeTotals {
            seconds: sum_metric(
                text,
                "quicmesh_quic_handshake_duration_seconds_sum",
                &[("side", side)],
            ),
            count: sum_metric(
                text,
                "quicmesh_quic_handshake_duration_seconds_count",
                &[("side", side)],
            ),
        };
        Ok(Some(Handshakes {
            client: side(&self.mesh.metrics(1).await?, "client"),
            server: side(&self.mesh.metrics(2).await?, "server"),
        }))
    }

    async fn streams_opened(&self, node: usize) -> Result<f64> {
        let text = self.mesh.metrics(node).await?;
        Ok(sum_metric(
            &text,
            "quicmesh_tunnel_streams_opened_total",
            &[],
        ))
    }

    /// 1,000 rps with the ztunnels' CPU measured over the middle of the
    /// measured window and their peak RSS (mesh and peer: on freshly
    /// restarted ztunnels); checks which path the traffic took.
    async fn at_1000_rps(&mut self, run: usize, s: Scenario) -> Result<LoadReport> {
        if s != Scenario::Direct {
            // Fresh ztunnels, so the peak RSS is this load's and not memory
            // kept from iperf3 (the warm-up includes the handshake).
            self.restart_proxies(s).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let pids = self.proxy_pids(s);
        for p in pids {
            procstat::reset_peak(p)?;
        }
        let opened_before = self.streams_opened(1).await?;
        let peer_before = self.peer_connections().await?;
        let (secs, warmup) = (self.plan.load_secs, self.plan.warmup_secs);
        let sampler = async {
            // Process start and pool setup, then the warm-up, then 80% of the window.
            tokio::time::sleep(Duration::from_secs_f64(0.3 + warmup)).await;
            let t0 = Instant::now();
            let a = [
                procstat::cpu_seconds(pids[0])?,
                procstat::cpu_seconds(pids[1])?,
            ];
            tokio::time::sleep(Duration::from_secs_f64(secs * 0.8)).await;
            let b = [
                procstat::cpu_seconds(pids[0])?,
                procstat::cpu_seconds(pids[1])?,
            ];
            let dt = t0.elapsed().as_secs_f64();
            anyhow::Ok([(b[0] - a[0]) / dt, (b[1] - a[1]) / dt])
        };
        let (rep, cores) =
            tokio::join!(self.load(s, "open", 1000.0, self.plan.conns, secs), sampler);
        let (rep, cores) = (rep?, cores?);
        let opened = self.streams_opened(1).await? - opened_before;
        let peer_opened = self.peer_connections().await? - peer_before;
        match s {
            Scenario::Mesh if opened < 1.0 => {
                bail!("mesh load opened no tunnel stream: the traffic bypassed ztunnel")
            }
            Scenario::Direct | Scenario::Peer if opened > 0.0 => {
                bail!(
                    "{} load opened {opened} tunnel streams: it went through quicmesh's ztunnel",
                    s.name()
                )
            }
            Scenario::Peer if peer_opened < 1.0 => {
                bail!("peer load opened no connection in Istio's ztunnel: the traffic bypassed it")
            }
            Scenario::Direct | Scenario::Mesh if peer_opened > 0.0 => {
                bail!(
                    "{} load opened {peer_opened} connections in Istio's ztunnel",
                    s.name()
                )
            }
            _ => {}
        }
        if s != Scenario::Direct {
            let per_k = rep.achieved_rps / 1000.0;
            let peak = [
                procstat::peak_rss_mb(pids[0])?,
                procstat::peak_rss_mb(pids[1])?,
            ];
            self.table.push("cpu_n1", s, cores[0] / per_k);
            self.table.push("cpu_n2", s, cores[1] / per_k);
            self.table
                .push("cpu_both", s, (cores[0] + cores[1]) / per_k);
            self.table.push("rss_n1", s, peak[0]);
            self.table.push("rss_n2", s, peak[1]);
            let data = json!({"cores_used": cores, "achieved_rps": rep.achieved_rps,
                              "peak_rss_mb": peak, "tunnel_streams_opened": opened,
                              "peer_connections_opened": peer_opened});
            self.record(run, s, "ztunnel_cost_1000rps", data);
            log(format!(
                "  ztunnel CPU {:.3} + {:.3} vCPU, peak RSS {:.1} / {:.1} MB",
                cores[0], cores[1], peak[0], peak[1]
            ));
        }
        Ok(rep)
    }

    async fn request_response(&mut self, run: usize, s: Scenario) -> Result<()> {
        let (conns, secs) = (self.plan.conns, self.plan.load_secs);
        let max = self.load(s, "closed", 0.0, conns, secs).await?;
        log(format!(
            "  max {:.0} req/s (closed loop, {conns} conns)",
            max.achieved_rps
        ));
        self.table.push("max_rps", s, max.achieved_rps);
        self.record(run, s, "closed", serde_json::to_value(&max)?);

        // One request in flight at a time: the 1 KiB ping-pong latency
        // (what Istio's published +110 µs is), with every hop kept warm.
        let pp = self.load(s, "closed", 0.0, 1, secs).await?;
        let l = &pp.latency_us;
        log(format!(
            "  ping-pong: p50 {:.0} p99 {:.0} µs ({:.0} req/s)",
            l.p50, l.p99, pp.achieved_rps
        ));
        self.table.push("pp_p50", s, l.p50);
        self.table.push("pp_p99", s, l.p99);
        self.record(run, s, "ping_pong", serde_json::to_value(&pp)?);

        let r1k = self.at_1000_rps(run, s).await?;
        let l = &r1k.latency_us;
        log(format!(
            "  1,000 rps: p50 {:.0} p99 {:.0} p99.9 {:.0} µs ({} errors)",
            l.p50, l.p99, l.p999, r1k.errors
        ));
        for (k, v) in [
            ("r1k_p50", l.p50),
            ("r1k_p90", l.p90),
            ("r1k_p99", l.p99),
            ("r1k_p999", l.p999),
        ] {
            self.table.push(k, s, v);
        }
        self.record(run, s, "open_1000", serde_json::to_value(&r1k)?);

        let rate = (max.achieved_rps * 0.8).max(1.0);
        let r80 = self.load(s, "open", rate, conns, secs).await?;
        let l = &r80.latency_us;
        log(format!(
            "  {:.0} rps (80%): p50 {:.0} p99 {:.0} p99.9 {:.0} µs",
            r80.achieved_rps, l.p50, l.p99, l.p999
        ));
        self.table.push("r80_rate", s, r80.achieved_rps);
        for (k, v) in [
            ("r80_p50", l.p50),
            ("r80_p90", l.p90),
            ("r80_p99", l.p99),
            ("r80_p999", l.p999),
        ] {
            self.table.push(k, s, v);
        }
        self.record(run, s, "open_80pct", serde_json::to_value(&r80)?);

        let churn = self
            .load(s, "churn", 0.0, self.plan.churn_conns, self.plan.churn_secs)
            .await?;
        let l = &churn.latency_us;
        log(format!(
            "  churn: {:.0} conn/s, p50 {:.0} p99 {:.0} µs ({} errors)",
            churn.achieved_rps, l.p50, l.p99, churn.errors
        ));
        self.table.push("churn_p50", s, l.p50);
        self.table.push("churn_p99", s, l.p99);
        self.table.push("churn_cps", s, churn.achieved_rps);
        self.record(run, s, "churn", serde_json::to_value(&churn)?);
        Ok(())
    }

    fn rss_both(&self, s: Scenario) -> Result<[f64; 2]> {
        let pids = self.proxy_pids(s);
        Ok([procstat::rss_mb(pids[0])?, procstat::rss_mb(pids[1])?])
    }

    /// Cold start vs pooled reuse (after restarting both ztunnels, for the
    /// mesh and the peer), idle memory with 0 and with N open connections.
    async fn first_byte_and_idle(&mut self, run: usize, s: Scenario) -> Result<()> {
        if s != Scenario::Direct {
            self.restart_proxies(s).await?;
            // Settle: pods re-enrolled, listeners up; no tunnel connection exists.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let idle = self.rss_both(s)?;
            self.table.push("idle0_n1", s, idle[0]);
            self.table.push("idle0_n2", s, idle[1]);
        }
        let w = self.mesh.worker(&self.client_ns(s))?;
        let addr = SocketAddr::from((self.server_ip(s), APP_PORT));
        self.warm_unpooled(s, &w, addr).await?;
        let before = self.handshakes(s).await?;
        let cold = first_byte(&w, addr).await?;
        if let Some(before) = before {
            let after = self.handshakes(s).await?.unwrap_or(before);
            let (client, server) = (after.client - before.client, after.server - before.server);
            if client.count < 1.0 {
                bail!("the cold connection made no QUIC handshake: a pooled connection outlived the 1 s pool idle time");
            }
            log(format!(
                "  {}: the cold connection's QUIC handshake {:.0} µs (client), {:.0} µs (server), {} handshake(s)",
                s.name(),
                client.mean_us(),
                server.mean_us(),
                client.count
            ));
            self.table.push("first_cold_handshake", s, client.mean_us());
            self.record(
                run,
                s,
                "first_byte_handshake",
                json!({"client_us": client.mean_us(), "server_us": server.mean_us(), "client_handshakes": client.count}),
            );
        }
        let mut warm = Vec::new();
        for _ in 0..self.plan.reuse_samples {
            warm.push(first_byte(&w, addr).await?);
        }
        let warm_med = crate::report::summary(&warm).map_or(0.0, |x| x.0);
        log(format!(
            "  {}: first byte cold {cold:.0} µs, reused {warm_med:.0} µs",
            s.name()
        ));
        self.table.push("first_cold", s, cold);
        self.table.push("first_warm", s, warm_med);
        self.record(
            run,
            s,
            "first_byte",
            json!({"cold_us": cold, "reused_us": warm}),
        );
        if s != Scenario::Direct {
            let n = self.plan.idle_conns;
            let conns = w.run(move || hold_connections(addr, n)).await??;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rss = self.rss_both(s)?;
            log(format!(
                "  {n} idle connections: RSS {:.1} / {:.1} MB",
                rss[0], rss[1]
            ));
            self.table.push("idleN_n1", s, rss[0]);
            self.table.push("idleN_n2", s, rss[1]);
            drop(conns);
        }
        Ok(())
    }

    /// Readies a scenario's proxies for the cold row: a process that has
    /// served a connection (its code and, for Istio's ztunnel in dedicated
    /// mode, its certificate fetched on first use) but holds no tunnel
    /// connection. Both are restarted with a 1 s pool idle time, serve one
    /// connection, and the cold connection waits until the pooled tunnel
    /// connection is closed; the restarts after it have the defaults again.
    async fn warm_unpooled(
        &mut self,
        s: Scenario,
        w: &NetnsWorker,
        addr: SocketAddr,
    ) -> Result<()> {
        match s {
            Scenario::Direct => {}
            Scenario::Mesh => {
                self.mesh.set_ztunnel_args(&["--pool-idle", "1s"]);
                let restarted = self.restart_proxies(s).await;
                self.mesh.set_ztunnel_args(&[]);
                restarted?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                first_byte(w, addr).await?;
                let deadline = Instant::now() + Duration::from_secs(10);
                while self
                    .mesh
                    .metric(1, "quicmesh_quic_connections_active", &[])
                    .await?
                    > 0.0
                {
                    if Instant::now() > deadline {
                        bail!("the client's ztunnel kept its tunnel connection 10 s past a 1 s pool idle time");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Scenario::Peer => {
                if let Some(p) = self.peer.as_mut() {
                    p.restart_releasing(&self.mesh, Some("1s")).await?;
                    first_byte(w, addr).await?;
                    p.wait_unpooled(&self.mesh).await?;
                }
            }
        }
        Ok(())
    }

    /// The lossy link: netem (1% loss, 1 ms delay) on both node links; on a
    /// kernel without `sch_netem`, 1% random loss with nftables and no added
    /// delay. Which one ran is logged and recorded in the JSON.
    async fn lossy(&mut self) -> Result<()> {
        let lab = &self.mesh.lab;
        let impairment = match lab
            .netem(1, Some(NETEM))
            .and_then(|()| lab.netem(2, Some(NETEM)))
        {
            Ok(()) => format!("tc netem {NETEM} on both node links"),
            Err(e) if format!("{e:#}").contains("netem not supported by kernel") => {
                lab.set_link_loss(1, Some(LOSS_PERCENT))?;
                lab.set_link_loss(2, Some(LOSS_PERCENT))?;
                format!("{LOSS_PERCENT}% random loss with nftables on both node links, no added delay (kernel lacks sch_netem)")
            }
            Err(e) => return Err(e.context("applying netem")),
        };
        log(format!("lossy link: {impairment}"));
        self.raw
            .push(json!({"figure": "lossy", "impairment": impairment}));
        let res = self.lossy_runs().await;
        let lab = &self.mesh.lab;
        let clear = [
            lab.netem(1, None),
            lab.netem(2, None),
            lab.set_link_loss(1, None),
            lab.set_link_loss(2, None),
        ];
        res?;
        clear.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(())
    }

    /// Per run and scenario: a bulk transfer alone, then small requests at
    /// 1,000 rps while a bulk transfer shares the same node pair (where
    /// head-of-line blocking shows).
    async fn lossy_runs(&mut self) -> Result<()> {
        for run in 1..=self.plan.runs {
            for s in self.plan.scenarios.clone() {
                let (gbps, data) = self.iperf(s, 1, self.plan.iperf_secs).await?;
                self.table.push("lossy_tput1", s, gbps);
                self.record(run, s, "lossy_tput1", data);
                // The bulk transfer outlasts the request load on both ends.
                let bulk_secs = self.plan.load_secs.ceil() as u32 + 2;
                let (bulk, rep) = tokio::join!(self.iperf(s, 1, bulk_secs), async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    self.load(s, "open", 1000.0, self.plan.conns, self.plan.load_secs)
                        .await
                });
                let ((bulk_gbps, _), rep) = (bulk?, rep?);
                log(format!(
                    "  lossy {}: {gbps:.2} Gbit/s alone; beside {bulk_gbps:.2} Gbit/s bulk: p50 {:.0} µs, p99 {:.0} µs",
                    s.name(),
                    rep.latency_us.p50,
                    rep.latency_us.p99
                ));
                self.table.push("lossy_p50", s, rep.latency_us.p50);
                self.table.push("lossy_p99", s, rep.latency_us.p99);
                self.record(
                    run,
                    s,
                    "lossy_1000_beside_bulk",
                    json!({"bulk_gbps": bulk_gbps, "load": rep}),
                );
            }
        }
        Ok(())
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}

/// The handshake histograms of the client node's ztunnel (as client) and
/// the server node's (as server).
#[derive(Debug, Clone, Copy)]
struct Handshakes {
    client: HandshakeTotals,
    server: HandshakeTotals,
}

/// A handshake histogram's sum and count.
#[derive(Debug, Clone, Copy)]
struct HandshakeTotals {
    seconds: f64,
    count: f64,
}

impl std::ops::Sub for HandshakeTotals {
    type Output = HandshakeTotals;
    fn sub(self, o: HandshakeTotals) -> HandshakeTotals {
        HandshakeTotals {
            seconds: self.seconds - o.seconds,
            count: self.count - o.count,
        }
    }
}

impl HandshakeTotals {
    /// The mean handshake, in µs (0 without one).
    fn mean_us(self) -> f64 {
        if self.count > 0.0 {
            self.seconds / self.count * 1e6
        } else {
            0.0
        }
    }
}

/// Connects from the worker's namespace, sends one request and times the
/// first byte of the answer, in µs (from just before `connect`).
async fn first_byte(w: &NetnsWorker, addr: SocketAddr) -> Result<f64> {
    w.run(move || -> Result<f64> {
        let req = request(true, &Headers::default());
        let t0 = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(&req)?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).context("reading the first byte")?;
        let t = t0.elapsed();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)?;
        Ok(t.as_secs_f64() * 1e6)
    })
    .await?
}

/// Opens `n` connections (one request/response each, so every one is set
/// up end to end) and returns them open.
fn hold_connections(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>> {
    let (req, mut buf) = (request(false, &Headers::default()), Vec::new());
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("opening idle connection {i}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        exchange(&mut s, &req, &mut buf).with_context(|| format!("idle connection {i}"))?;
        conns.push(s);
    }
    Ok(conns)
}
