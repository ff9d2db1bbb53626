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
//! The paths, one column each (in this order in the table and in a run):
//!
//! | column | Service | path |
//! | --- | --- | --- |
//! | L4 mesh (no L7 hop) | `srv-l4` (`use-waypoint: none`) | client → ztunnel 1 → QUIC → ztunnel 2 → server |
//! | via waypoint | `srv` | client → ztunnel 1 → QUIC → waypoint → QUIC → ztunnel 2 → server |
//! | waypoint + JWT + policy | `srv-authz` | as `srv`; the waypoint checks a JWT and two L7 policies per request |
//! | via HAProxy | `haproxy` | client → ztunnel 1 → QUIC → ztunnel 4 → HAProxy → ztunnel 4 → QUIC → ztunnel 2 → server |
//!
//! - The waypoint terminates and originates tunnels itself.
//! - `srv-authz` has the pods and ports of `srv`, through the same
//!   waypoint, and attached to it a `RequestAuthentication` (an ES256 key
//!   the bench generates at start, [`jwt`], its JWKS inline) and two
//!   `AuthorizationPolicy`s: an ALLOW requiring a token of the bench's
//!   issuer, `POST /echo` and the claim `groups: bench`, and a DENY on an
//!   `x-debug` header, so that both are evaluated for every request. Only
//!   its load sends `Authorization: Bearer <token>`.
//! - HAProxy is captured like any pod, so its node's ztunnel carries both
//!   of its legs: two ztunnel passes more than the waypoint path, whose CPU
//!   is in the ztunnels' row, not in HAProxy's.
//!
//! Port 80 of each Service is HTTP/1.1 and port 81 HTTP/2 (h2c) end to end:
//! the server speaks both on one port, the waypoint takes its upstream
//! protocol from the Service port (`http`, `http2`), HAProxy from its
//! config (`proto h2`).
//!
//! A run measures every open loop at 1,000 rps first (the four paths for
//! HTTP/1.1, then for HTTP/2), with the proxy's and the ztunnels' CPU
//! sampled over the middle of the window and the proxy's peak RSS, then the
//! closed-loop maxima. Each load is checked to have taken its path
//! ([`checks`]: the waypoint's request, JWT and denial counters, HAProxy's
//! outbound tunnel streams). After the runs, the JWT + policy column gets
//! its cost over the plain waypoint, run by run: CPU per request in %, and
//! added p50 and p99.

use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quicmesh_lab::local::{Cluster, LocalSpec};
use quicmesh_lab::mesh::netns_http_get;
use serde::Serialize;
use serde_json::{json, Value};

use crate::bench::{log, run_in, Plan};
use crate::load::LoadReport;
use crate::procstat;
use crate::report::Grid;

mod checks;
mod jwt;
mod setup;
mod table;

use checks::Counters;
use setup::{
    find_haproxy, find_pid, haproxy_cfg, has_arg, manifests, TempDir, ALLOW_POLICY, AUTHZ_SERVICE,
    CLIENT_NS, DENY_POLICY, MESH_NS, NODES, PROXY_NS,
};
use table::{columns, key, rows, Http, Path, HTTPS, PATHS};

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

    /// Part of the full run: 3 s loads keep the three runs near 3 minutes.
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
    /// The keys and the token of the JWT + policy path.
    issued: jwt::Issued,
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
        let issued = jwt::issue(jwt::now())?;
        let utf8 = |p: &FsPath| p.to_str().map(str::to_string).context("path is not UTF-8");
        std::fs::write(
            dir.0.join("bench.yaml"),
            manifests(
                &utf8(&exe)?,
                &utf8(&haproxy)?,
                &utf8(&cfg_path)?,
                &issued.jwks,
            ),
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
            issued,
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
            "{}: send `--header '{}'` (valid for a day)\n",
            Path::Authz.name(),
            self.bearer()
        );
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

    /// The `Authorization` header of the JWT + policy path's requests.
    fn bearer(&self) -> String {
        format!("authorization: Bearer {}", self.issued.token)
    }

    /// The headers a load on `path` sends on every request.
    fn headers(&self, path: Path) -> Vec<String> {
        match path {
            Path::Authz => vec![self.bearer()],
            _ => Vec::new(),
        }
    }

    /// `quicmesh-bench load` in the client pod against `path`, with its
    /// headers; fails when no request completed.
    async fn load(
        &self,
        path: Path,
        http: Http,
        mode: &str,
        secs: f64,
        warmup: f64,
    ) -> Result<LoadReport> {
        let rep = self
            .load_with(path, http, mode, secs, warmup, &self.headers(path))
            .await?;
        if rep.requests == 0 {
            bail!(
                "{} {mode} load via {}: no request completed ({rep:?})",
                http.label(),
                path.name()
            );
        }
        Ok(rep)
    }

    /// `quicmesh-bench load` in the client pod against `path` with
    /// `headers` (`name: value`).
    async fn load_with(
        &self,
        path: Path,
        http: Http,
        mode: &str,
        secs: f64,
        warmup: f64,
        headers: &[String],
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
        for h in headers {
            args.extend(["--header".into(), h.clone()]);
        }
        let timeout = Duration::from_secs_f64(secs + warmup + 30.0);
        let out = run_in(&self.client_ns(), &args, timeout).await?;
        serde_json::from_str(&out).context("parsing the load report")
    }

    /// Until every path answers both HTTP versions without an error, and
    /// the JWT check and both policies of `srv-authz` are in effect (config
    /// reaches the ztunnels and the waypoint shortly after the pods are
    /// ready), bounded.
    async fn wait_for_paths(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(45);
        for path in PATHS {
            for http in HTTPS {
                loop {
                    match self.answers(path, http).await {
                        Ok(()) => break,
                        Err(e) if Instant::now() >= deadline => {
                            return Err(e.context(format!(
                                "{} via {} is still not ready; waypoint log:\n{}",
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
                        Err(_) => {
                            self.cluster.reconcile().await?;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            }
        }
        log(
            "L7: every path answers HTTP/1.1 and HTTP/2; srv-authz checks tokens and both policies",
        );
        Ok(())
    }

    /// One short load on `path` without an error; on the JWT + policy path
    /// also: the waypoint verified its tokens, and refuses a request
    /// without a token (the ALLOW policy) and one with `x-debug` (the DENY).
    async fn answers(&self, path: Path, http: Http) -> Result<()> {
        let load = || self.load(path, http, "closed", 0.2, 0.0);
        if path != Path::Authz {
            let r = load().await?;
            if r.errors > 0 {
                bail!("{} errors in {} requests", r.errors, r.requests + r.errors);
            }
            return Ok(());
        }
        // No error, every request authenticated and answered 200.
        let before = self.counters(http).await?;
        let r = load().await?;
        checks::check(path, &r, &before, &self.counters(http).await?)?;
        type Refused = fn(&Counters) -> f64;
        let refusals: [(&str, Vec<String>, &str, Refused); 2] = [
            ("without a token", vec![], ALLOW_POLICY, |d| {
                d.no_allow_match
            }),
            (
                "with x-debug",
                vec![self.bearer(), "x-debug: 1".into()],
                DENY_POLICY,
                |d| d.deny_policy,
            ),
        ];
        for (what, headers, policy, refused) in refusals {
            let before = self.counters(http).await?;
            let r = self
                .load_with(path, http, "closed", 0.2, 0.0, &headers)
                .await?;
            let refused = refused(&self.counters(http).await?.since(&before));
            if r.requests > 0 || refused < 1.0 {
                bail!(
                    "a request {what}: {} answered 200, {refused} refused by {MESH_NS}/{policy}",
                    r.requests
                );
            }
        }
        Ok(())
    }

    /// The L7 proxy of a path, if it has one.
    fn proxy_pid(&self, path: Path) -> Option<u32> {
        match path {
            Path::Mesh => None,
            Path::Waypoint | Path::Authz => Some(self.waypoint_pid),
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

    /// The counters that tell which way a load over `http` went.
    async fn counters(&self, http: Http) -> Result<Counters> {
        let wp = self.cluster.pod(MESH_NS, "waypoint-0");
        let w = netns_http_get(
            &wp.netns,
            SocketAddr::from((wp.ip, quicmesh_lab::WAYPOINT_METRICS_PORT)),
            "/metrics",
        )
        .await
        .context("the waypoint's metrics")?;
        let node = self.cluster.pod(PROXY_NS, "haproxy-0").node;
        let z = self.cluster.ztunnel_http(node, 15020, "/metrics").await?;
        Ok(Counters::parse(&w, &z, http.port()))
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
        let before = self.counters(http).await?;
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
        let after = self.counters(http).await?;
        checks::check(path, &rep, &before, &after)
            .with_context(|| format!("{} at 1,000 rps", http.label()))?;
        let d = after.since(&before);
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
        let served = match path {
            Path::Authz => d.authz,
            _ => d.srv,
        };
        let data = json!({
            "load": rep, "proxy_cores": proxy_cores, "ztunnel_cores": zt_cores,
            "proxy_peak_rss_mb": peak, "quicmesh_waypoint_requests": served,
            "waypoint_jwt_authenticated": d.jwt_authenticated, "quicmesh_waypoint_authz_denials": d.denials,
            "haproxy_outbound_streams": d.haproxy_out,
        });
        self.record(run, path, http, "open_1000", data);
        Ok(())
    }

    /// The closed loop on `path` (its maximum rate); checks the path taken.
    async fn closed(&mut self, run: usize, path: Path, http: Http) -> Result<()> {
        let (secs, warmup) = (self.plan.load_secs, self.plan.warmup_secs);
        let before = self.counters(http).await?;
        let rep = self.load(path, http, "closed", secs, warmup).await?;
        checks::check(path, &rep, &before, &self.counters(http).await?)
            .with_context(|| format!("{} closed loop", http.label()))?;
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
            table::derive_rows(&mut self.grid, http);
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
            "authz": {
                "service": format!("{MESH_NS}/{AUTHZ_SERVICE}"),
                "request_authentication": format!("{MESH_NS}/bench-jwt"),
                "policies": [format!("{MESH_NS}/{ALLOW_POLICY}"), format!("{MESH_NS}/{DENY_POLICY}")],
                "jwks": self.issued.jwks,
                "token_header": {"alg": "ES256", "kid": jwt::KID},
                "token_claims": self.issued.claims,
            },
        });
        L7Result {
            grid: self.grid,
            raw: self.raw,
            setup,
            mtu: self.mtu,
        }
    }
}
