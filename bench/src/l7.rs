//! The L7 rows: 1 KiB HTTP/1.1 and HTTP/2 requests through the namespace's
//! waypoint, beside the same requests over the L4 mesh alone and through
//! HAProxy as the L7 hop instead, in the same cluster and the same run.
//!
//! The waypoint runs only with a controller, so these rows use a cluster
//! from manifests ([`Cluster`], what `quicmesh local up -f` runs) instead of
//! the static mesh of [`crate::bench`]. Four nodes, so that each proxy has
//! a node of its own (the lab schedules the fewest-pods node first, in the
//! order of `namespace/name`):
//!
//! | node | pod | runs |
//! | --- | --- | --- |
//! | 1 | `bench-client/client` | nothing: the load generator runs in its netns |
//! | 2 | `bench-mesh/server-0` | `quicmesh-bench serve` (HTTP/1.1 and h2c on 8080) |
//! | 3 | `bench-mesh/waypoint-0` | the waypoint (its namespace says `use-waypoint: waypoint`) |
//! | 4 | `bench-proxy/haproxy-0` | HAProxy, an ordinary ambient pod |
//!
//! The paths, one column each:
//!
//! - **L4 mesh**: Service `srv-l4` (`use-waypoint: none`): client →
//!   ztunnel 1 → QUIC → ztunnel 2 → server.
//! - **via waypoint**: Service `srv`: client → ztunnel 1 → QUIC → waypoint
//!   → QUIC → ztunnel 2 → server. The waypoint terminates and originates
//!   tunnels itself.
//! - **via HAProxy**: Service `haproxy`: client → ztunnel 1 → QUIC →
//!   ztunnel 4 → HAProxy → ztunnel 4 → QUIC → ztunnel 2 → server. HAProxy
//!   is captured like any pod, so its node's ztunnel carries both of its
//!   legs: two ztunnel passes more than the waypoint path, whose CPU is in
//!   the ztunnels' row, not in HAProxy's.
//!
//! Port 80 of each Service is HTTP/1.1 and port 81 HTTP/2 (h2c) end to end:
//! the server speaks both on one port, the waypoint takes its upstream
//! protocol from the Service port (`http`, `http2`), HAProxy from its
//! config (`proto h2`).
//!
//! A run measures every open loop at 1,000 rps first (the three paths for
//! HTTP/1.1, then for HTTP/2), with the proxy's and the ztunnels' CPU
//! sampled over the middle of the window and the proxy's peak RSS, then the
//! closed-loop maxima. Each load is checked to have taken its path (the
//! waypoint's request counter, HAProxy's outbound tunnel streams).

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quicmesh_lab::local::{Cluster, LocalSpec};
use quicmesh_lab::mesh::{netns_http_get, sum_metric};
use serde::Serialize;
use serde_json::{json, Value};

use crate::bench::{log, run_in, Plan};
use crate::load::LoadReport;
use crate::procstat;
use crate::report::{Grid, Row};

mod setup;

use setup::{
    find_haproxy, find_pid, haproxy_cfg, has_arg, manifests, TempDir, CLIENT_NS, MESH_NS, NODES,
    PROXY_NS,
};

/// The open loop's rate.
const RATE: f64 = 1000.0;

/// How much to measure (the runs are the plan's).
#[derive(Debug, Clone, Serialize)]
pub struct L7Plan {
    /// Measured seconds of each load.
    pub load_secs: f64,
    pub warmup_secs: f64,
    /// HTTP/1.1: persistent connections, one request in flight on each.
    pub h1_conns: usize,
    /// HTTP/2: connections (open loop: requests multiplexed over them).
    pub h2_conns: usize,
    /// HTTP/2 closed loop: requests in flight on each connection.
    pub h2_streams: usize,
}

impl L7Plan {
    pub fn smoke() -> L7Plan {
        L7Plan {
            load_secs: 1.0,
            warmup_secs: 0.3,
            ..L7Plan::full()
        }
    }

    pub fn quick() -> L7Plan {
        L7Plan {
            load_secs: 2.0,
            warmup_secs: 0.5,
            ..L7Plan::full()
        }
    }

    /// Part of the full run: 3 s loads keep the three runs near 2.5 minutes.
    pub fn full() -> L7Plan {
        L7Plan {
            load_secs: 3.0,
            warmup_secs: 0.5,
            h1_conns: 8,
            h2_conns: 2,
            h2_streams: 4,
        }
    }
}

/// The columns of the L7 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Mesh,
    Waypoint,
    Haproxy,
}

const PATHS: [Path; 3] = [Path::Mesh, Path::Waypoint, Path::Haproxy];

impl Path {
    fn col(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Path::Mesh => "L4 mesh",
            Path::Waypoint => "waypoint",
            Path::Haproxy => "HAProxy",
        }
    }

    /// The Service the client calls: (namespace, name).
    fn service(self) -> (&'static str, &'static str) {
        match self {
            Path::Mesh => (MESH_NS, "srv-l4"),
            Path::Waypoint => (MESH_NS, "srv"),
            Path::Haproxy => (PROXY_NS, "haproxy"),
        }
    }
}

fn columns() -> Vec<(&'static str, &'static str)> {
    vec![
        ("l4", "L4 mesh (no L7 hop)"),
        ("waypoint", "via waypoint"),
        ("haproxy", "via HAProxy"),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Http {
    H1,
    H2,
}

const HTTPS: [Http; 2] = [Http::H1, Http::H2];

impl Http {
    fn key(self) -> &'static str {
        match self {
            Http::H1 => "h1",
            Http::H2 => "h2",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Http::H1 => "HTTP/1.1",
            Http::H2 => "HTTP/2",
        }
    }

    /// Each Service's port for this protocol.
    fn port(self) -> u16 {
        match self {
            Http::H1 => 80,
            Http::H2 => 81,
        }
    }
}

fn key(h: Http, figure: &str) -> String {
    format!("{}_{figure}", h.key())
}

/// The rows of the L7 table.
fn rows(p: &L7Plan) -> Vec<Row> {
    let mut rows = Vec::new();
    for h in HTTPS {
        let l = h.label();
        let inflight = match h {
            Http::H1 => format!("{} connections", p.h1_conns),
            Http::H2 => format!("{} connections × {} streams", p.h2_conns, p.h2_streams),
        };
        let mut row = |figure: &str, label: String, unit, target| {
            rows.push(Row {
                key: key(h, figure),
                label,
                unit,
                target,
            })
        };
        row("p50", format!("{l}, 1,000 rps: p50"), "µs", "");
        row("p90", format!("{l}, 1,000 rps: p90"), "µs", "");
        row("p99", format!("{l}, 1,000 rps: p99"), "µs", "");
        row(
            "added_p50",
            format!("{l}, 1,000 rps: added p50 over the L4 mesh"),
            "µs",
            "waypoint ≤ HAProxy",
        );
        row(
            "max",
            format!("{l}, max request rate (closed loop, {inflight})"),
            "req/s",
            "",
        );
        row(
            "cpu",
            format!("{l}, L7 proxy CPU per 1,000 rps"),
            "vCPU",
            "waypoint ≤ 0.08 (Istio's Envoy waypoint 0.25)",
        );
        row(
            "rss",
            format!("{l}, L7 proxy peak RSS at 1,000 rps"),
            "MB",
            "waypoint ≤ 20 (Istio's Envoy waypoint 60)",
        );
        row(
            "zt_cpu",
            format!("{l}, ztunnels' CPU per 1,000 rps (all four nodes)"),
            "vCPU",
            "",
        );
    }
    rows.push(Row {
        key: "idle_rss".into(),
        label: "L7 proxy RSS idle, before any load".into(),
        unit: "MB",
        target: "",
    });
    rows
}

/// What the L7 rows measured.
pub struct L7Result {
    pub grid: Grid,
    /// Every measurement as taken (load reports, CPU samples).
    pub raw: Vec<Value>,
    /// Where everything ran, HAProxy's version and config.
    pub setup: Value,
    /// The node link's MTU.
    pub mtu: String,
}

/// The running L7 cluster.
pub struct L7Bench {
    cluster: Cluster,
    plan: L7Plan,
    runs: usize,
    exe: PathBuf,
    haproxy_cfg: String,
    waypoint_pid: u32,
    haproxy_pid: u32,
    grid: Grid,
    raw: Vec<Value>,
    mtu: String,
    // Last: removed after the cluster has stopped.
    _manifests: TempDir,
}

impl L7Bench {
    /// Writes the manifests, brings the cluster up, waits until every path
    /// answers both HTTP versions.
    pub async fn start(plan: &Plan) -> Result<L7Bench> {
        let l7 = plan.l7.clone().context("the plan has no L7 rows")?;
        let dir =
            TempDir(std::env::temp_dir().join(format!("quicmesh-bench-l7-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0)?;
        let exe = std::env::current_exe()?;
        let haproxy = find_haproxy()?;
        let cfg_path = dir.0.join("haproxy.cfg");
        let haproxy_cfg = haproxy_cfg();
        std::fs::write(&cfg_path, &haproxy_cfg)?;
        let utf8 = |p: &FsPath| p.to_str().map(str::to_string).context("path is not UTF-8");
        std::fs::write(
            dir.0.join("bench.yaml"),
            manifests(&utf8(&exe)?, &utf8(&haproxy)?, &utf8(&cfg_path)?),
        )?;
        log(format!(
            "L7: cluster of {NODES} nodes from {}",
            dir.0.display()
        ));
        let cluster = Cluster::up(LocalSpec::new(&dir.0, NODES))
            .await
            .context("starting the L7 cluster")?;
        if !cluster.errors.is_empty() {
            bail!("manifests refused: {:?}", cluster.errors);
        }
        if let Some(mtu) = plan.mtu {
            cluster.lab.set_link_mtu(mtu)?;
        }
        if let Some(on) = plan.gro {
            cluster.lab.set_link_gro(on)?;
        }
        let mtu = cluster
            .lab
            .exec(
                &cluster.lab.node(1).netns,
                &["cat", "/sys/class/net/link/mtu"],
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let trust_bundle = cluster.dir.join("ca/ca.pem").display().to_string();
        let cfg_s = utf8(&cfg_path)?;
        let mut b = L7Bench {
            waypoint_pid: 0,
            haproxy_pid: 0,
            grid: Grid::new(columns(), rows(&l7)),
            raw: Vec::new(),
            plan: l7,
            runs: plan.runs,
            exe,
            haproxy_cfg,
            mtu,
            cluster,
            _manifests: dir,
        };
        for (pod, node) in [
            ((CLIENT_NS, "client"), 1),
            ((MESH_NS, "server-0"), 2),
            ((MESH_NS, "waypoint-0"), 3),
            ((PROXY_NS, "haproxy-0"), 4),
        ] {
            let at = b.cluster.pod(pod.0, pod.1).node;
            if at != node {
                log(format!(
                    "  warning: {}/{} runs on node {at}, not {node}: the paths differ from the module doc",
                    pod.0, pod.1
                ));
            }
        }
        b.wait_for_paths().await?;
        b.waypoint_pid = find_pid("waypoint", |argv| {
            argv.first().is_some_and(|a| a.ends_with("/waypoint"))
                && has_arg(argv, "--namespace", MESH_NS)
                && has_arg(argv, "--gateway", "waypoint")
                && has_arg(argv, "--trust-bundle", &trust_bundle)
        })?;
        b.haproxy_pid = find_pid("haproxy", |argv| {
            argv.first().is_some_and(|a| a.ends_with("haproxy")) && has_arg(argv, "-f", &cfg_s)
        })?;
        Ok(b)
    }

    fn vip(&self, path: Path) -> std::net::IpAddr {
        let (ns, name) = path.service();
        self.cluster.vip(ns, name)
    }

    fn client_ns(&self) -> String {
        self.cluster.pod(CLIENT_NS, "client").netns.clone()
    }

    /// What someone profiling by hand needs (`--l7 --hold`).
    pub fn describe(&self) -> String {
        let mut out = format!(
            "client pod netns {} (run `quicmesh-bench load` there)\n",
            self.client_ns()
        );
        for p in PATHS {
            let (ns, name) = p.service();
            out += &format!(
                "{}: Service {ns}/{name} at {}: port 80 HTTP/1.1, 81 HTTP/2 (h2c)\n",
                p.name(),
                self.vip(p)
            );
        }
        for (ns, name) in [
            (MESH_NS, "server-0"),
            (MESH_NS, "waypoint-0"),
            (PROXY_NS, "haproxy-0"),
        ] {
            let p = self.cluster.pod(ns, name);
            out += &format!(
                "pod {ns}/{name}: node {}, ip {}, netns {}, log {}\n",
                p.node,
                p.ip,
                p.netns,
                self.cluster
                    .dir
                    .join(format!("pod-{ns}.{name}.log"))
                    .display()
            );
        }
        out += &format!(
            "waypoint pid {}, haproxy pid {}\n",
            self.waypoint_pid, self.haproxy_pid
        );
        for n in 1..=NODES {
            out += &format!(
                "ztunnel on node {n}: pid {}, log {}\n",
                self.cluster.ztunnel_pid(n).unwrap_or(0),
                self.cluster.ztunnel_log(n).display()
            );
        }
        out
    }

    /// `quicmesh-bench load` in the client pod against `path`.
    async fn load(
        &self,
        path: Path,
        http: Http,
        mode: &str,
        secs: f64,
        warmup: f64,
    ) -> Result<LoadReport> {
        let addr = SocketAddr::new(self.vip(path), http.port());
        let (conns, streams) = match (http, mode) {
            (Http::H1, _) => (self.plan.h1_conns, 1),
            (Http::H2, "closed") => (self.plan.h2_conns, self.plan.h2_streams),
            (Http::H2, _) => (self.plan.h2_conns, 1),
        };
        let mut args: Vec<String> = vec![
            self.exe.display().to_string(),
            "load".into(),
            "--addr".into(),
            addr.to_string(),
            "--mode".into(),
            mode.into(),
            "--rate".into(),
            format!("{RATE:.1}"),
            "--conns".into(),
            conns.to_string(),
            "--streams".into(),
            streams.to_string(),
            "--duration".into(),
            secs.to_string(),
            "--warmup".into(),
            warmup.to_string(),
        ];
        if http == Http::H2 {
            args.push("--http2".into());
        }
        let timeout = Duration::from_secs_f64(secs + warmup + 30.0);
        let out = run_in(&self.client_ns(), &args, timeout).await?;
        let rep: LoadReport = serde_json::from_str(&out).context("parsing the load report")?;
        if rep.requests == 0 {
            bail!(
                "{} {mode} load via {}: no request completed ({rep:?})",
                http.label(),
                path.name()
            );
        }
        Ok(rep)
    }

    /// Until every path answers both HTTP versions without an error
    /// (config reaches the ztunnels and the waypoint shortly after the pods
    /// are ready), bounded.
    async fn wait_for_paths(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(45);
        for path in PATHS {
            for http in HTTPS {
                loop {
                    let res = self.load(path, http, "closed", 0.2, 0.0).await;
                    match res {
                        Ok(r) if r.errors == 0 => break,
                        Ok(r) if Instant::now() >= deadline => bail!(
                            "{} via {} still fails: {} errors in {} requests",
                            http.label(),
                            path.name(),
                            r.errors,
                            r.requests + r.errors
                        ),
                        Err(e) if Instant::now() >= deadline => {
                            return Err(e.context(format!(
                                "{} via {} never answered; waypoint log:\n{}",
                                http.label(),
                                path.name(),
                                quicmesh_lab::mesh::file_tail(
                                    &self
                                        .cluster
                                        .dir
                                        .join(format!("pod-{MESH_NS}.waypoint-0.log")),
                                    20
                                )
                            )))
                        }
                        _ => {
                            self.cluster.reconcile().await?;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        }
        log("L7: every path answers HTTP/1.1 and HTTP/2");
        Ok(())
    }

    /// The L7 proxy of a path, if it has one.
    fn proxy_pid(&self, path: Path) -> Option<u32> {
        match path {
            Path::Mesh => None,
            Path::Waypoint => Some(self.waypoint_pid),
            Path::Haproxy => Some(self.haproxy_pid),
        }
    }

    fn ztunnel_pids(&self) -> Result<Vec<u32>> {
        (1..=NODES)
            .map(|n| {
                self.cluster
                    .ztunnel_pid(n)
                    .with_context(|| format!("no ztunnel on node {n}"))
            })
            .collect()
    }

    /// The counters that tell which way a load went: the waypoint's
    /// requests to `srv` on `port`, all its requests, and the tunnel
    /// streams HAProxy's ztunnel opened for it.
    async fn path_counters(&self, port: u16) -> Result<[f64; 3]> {
        let wp = self.cluster.pod(MESH_NS, "waypoint-0");
        let m = netns_http_get(
            &wp.netns,
            SocketAddr::from((wp.ip, quicmesh_lab::WAYPOINT_METRICS_PORT)),
            "/metrics",
        )
        .await
        .context("the waypoint's metrics")?;
        let srv = format!("{MESH_NS}/srv:{port}");
        let served = sum_metric(&m, "waypoint_requests_total", &[("service", &srv)]);
        let all = sum_metric(&m, "waypoint_requests_total", &[]);
        let node = self.cluster.pod(PROXY_NS, "haproxy-0").node;
        let z = self.cluster.ztunnel_http(node, 15020, "/metrics").await?;
        let principal = format!("spiffe://cluster.local/ns/{PROXY_NS}/sa/haproxy");
        let haproxy_out = sum_metric(
            &z,
            "quicmesh_tunnel_streams_opened_total",
            &[("direction", "outbound"), ("src_principal", &principal)],
        );
        Ok([served, all, haproxy_out])
    }

    fn record(&mut self, run: usize, path: Path, http: Http, figure: &str, data: Value) {
        self.raw.push(json!({
            "run": run, "path": path.name(), "http": http.label(), "figure": figure, "data": data,
        }));
    }

    /// The open loop at 1,000 rps on `path`, with the proxy's and the
    /// ztunnels' CPU over the middle 80% of the measured window and the
    /// proxy's peak RSS; checks the path taken.
    async fn at_rate(&mut self, run: usize, path: Path, http: Http) -> Result<()> {
        let proxy = self.proxy_pid(path);
        let mut pids: Vec<u32> = proxy.into_iter().collect();
        pids.extend(self.ztunnel_pids()?);
        if let Some(p) = proxy {
            procstat::reset_peak(p)?;
        }
        let before = self.path_counters(http.port()).await?;
        let (secs, warmup) = (self.plan.load_secs, self.plan.warmup_secs);
        let sampler = async {
            // Process start and connection setup, then the warm-up.
            tokio::time::sleep(Duration::from_secs_f64(0.3 + warmup)).await;
            let t0 = Instant::now();
            let a = pids
                .iter()
                .map(|p| procstat::cpu_seconds(*p))
                .collect::<Result<Vec<_>>>()?;
            tokio::time::sleep(Duration::from_secs_f64(secs * 0.8)).await;
            let b = pids
                .iter()
                .map(|p| procstat::cpu_seconds(*p))
                .collect::<Result<Vec<_>>>()?;
            let dt = t0.elapsed().as_secs_f64();
            anyhow::Ok(
                a.iter()
                    .zip(&b)
                    .map(|(a, b)| (b - a) / dt)
                    .collect::<Vec<f64>>(),
            )
        };
        let (rep, cores) = tokio::join!(self.load(path, http, "open", secs, warmup), sampler);
        let (rep, cores) = (rep?, cores?);
        let after = self.path_counters(http.port()).await?;
        let [served, all, haproxy_out] = [0, 1, 2].map(|i| after[i] - before[i]);
        match path {
            Path::Waypoint if served < rep.requests as f64 => bail!(
                "via waypoint: it counted {served} requests for srv:{}, the load {}",
                http.port(),
                rep.requests
            ),
            Path::Mesh | Path::Haproxy if all > 0.0 => {
                bail!("via {}: the waypoint served {all} requests", path.name())
            }
            // Streams are opened per connection, and HAProxy keeps its
            // upstream connections: any stream of its own proves the capture.
            Path::Haproxy if after[2] < 1.0 => {
                bail!("via HAProxy: its ztunnel never opened a stream for it (not captured?)")
            }
            _ => {}
        }
        let per_k = rep.achieved_rps / 1000.0;
        let (proxy_cores, zt_cores) = match proxy {
            Some(_) => (Some(cores[0]), &cores[1..]),
            None => (None, &cores[..]),
        };
        let zt: f64 = zt_cores.iter().sum();
        let l = &rep.latency_us;
        let col = path.col();
        for (figure, v) in [("p50", l.p50), ("p90", l.p90), ("p99", l.p99)] {
            self.grid.push(&key(http, figure), col, v);
        }
        self.grid.push(&key(http, "zt_cpu"), col, zt / per_k);
        let mut peak = None;
        if let (Some(pid), Some(c)) = (proxy, proxy_cores) {
            let rss = procstat::peak_rss_mb(pid)?;
            self.grid.push(&key(http, "cpu"), col, c / per_k);
            self.grid.push(&key(http, "rss"), col, rss);
            peak = Some(rss);
        }
        log(format!(
            "  {} via {}: 1,000 rps p50 {:.0} p99 {:.0} µs ({} errors); proxy {} vCPU, {} MB; ztunnels {zt:.3} vCPU",
            http.label(),
            path.name(),
            l.p50,
            l.p99,
            rep.errors,
            proxy_cores.map_or("—".into(), |c| format!("{c:.3}")),
            peak.map_or("—".into(), |m| format!("{m:.1}")),
        ));
        let data = json!({
            "load": rep, "proxy_cores": proxy_cores, "ztunnel_cores": zt_cores,
            "proxy_peak_rss_mb": peak, "waypoint_requests": served, "haproxy_outbound_streams": haproxy_out,
        });
        self.record(run, path, http, "open_1000", data);
        Ok(())
    }

    async fn closed(&mut self, run: usize, path: Path, http: Http) -> Result<()> {
        let (secs, warmup) = (self.plan.load_secs, self.plan.warmup_secs);
        let rep = self.load(path, http, "closed", secs, warmup).await?;
        log(format!(
            "  {} via {}: max {:.0} req/s ({} errors)",
            http.label(),
            path.name(),
            rep.achieved_rps,
            rep.errors
        ));
        self.grid
            .push(&key(http, "max"), path.col(), rep.achieved_rps);
        self.record(run, path, http, "closed", serde_json::to_value(&rep)?);
        Ok(())
    }

    /// Every L7 row, `runs` times.
    pub async fn run_all(&mut self) -> Result<()> {
        for path in [Path::Waypoint, Path::Haproxy] {
            let pid = self.proxy_pid(path).expect("has a proxy");
            self.grid
                .push("idle_rss", path.col(), procstat::rss_mb(pid)?);
        }
        for run in 1..=self.runs {
            log(format!("L7 run {run}/{}", self.runs));
            for http in HTTPS {
                for path in PATHS {
                    self.at_rate(run, path, http).await?;
                }
            }
            for http in HTTPS {
                for path in PATHS {
                    self.closed(run, path, http).await?;
                }
            }
        }
        for http in HTTPS {
            let base = self
                .grid
                .values(&key(http, "p50"), Path::Mesh.col())
                .to_vec();
            for path in [Path::Waypoint, Path::Haproxy] {
                let v = self.grid.values(&key(http, "p50"), path.col()).to_vec();
                for (b, v) in base.iter().zip(&v) {
                    self.grid.push(&key(http, "added_p50"), path.col(), v - b);
                }
            }
        }
        Ok(())
    }

    /// The results, and where everything ran.
    pub fn finish(self) -> L7Result {
        let pods: Vec<Value> = self
            .cluster
            .pods
            .values()
            .map(|p| json!({"namespace": p.namespace, "name": p.name, "node": p.node, "ip": p.ip.to_string()}))
            .collect();
        let services: Vec<Value> = PATHS
            .iter()
            .map(|p| json!({"path": p.name(), "service": format!("{}/{}", p.service().0, p.service().1), "vip": self.vip(*p).to_string()}))
            .collect();
        let setup = json!({
            "nodes": NODES,
            "pods": pods,
            "services": services,
            "waypoint_binary": quicmesh_lab::ztunnels::find_binary("waypoint")
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| e.to_string()),
            "haproxy_version": crate::report::command_line("haproxy", &["-v"]),
            "haproxy_cfg": self.haproxy_cfg,
            "http2": "h2c (prior knowledge) end to end: client, waypoint and HAProxy upstreams, server",
        });
        L7Result {
            grid: self.grid,
            raw: self.raw,
            setup,
            mtu: self.mtu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_a_unique_key() {
        let rows = rows(&L7Plan::full());
        let mut keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), rows.len());
        assert_eq!(rows.len(), 17);
    }
}
