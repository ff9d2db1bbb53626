//! `quicmesh local up -f DIR [-f DIR2 ...]`: a cluster per directory of
//! manifests, side by side and connected, kept by one detached agent
//! process that watches them; `status` and `down` talk to it through files
//! in the temporary directory. The agent's status file holds one entry per
//! cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use quicmesh_lab::local::{lab_dir, Cluster, LocalSpec};

fn agent_pid_file() -> PathBuf {
    std::env::temp_dir().join("quicmesh-local-agent.pid")
}

fn status_file() -> PathBuf {
    std::env::temp_dir().join("quicmesh-local-status.json")
}

/// The clusters of `dirs`: the i-th (from 1) is cluster i unless its lab
/// config file says otherwise; cluster c's namespaces are `prefix(c)-*`.
fn specs(dirs: &[PathBuf], nodes: usize) -> Result<Vec<LocalSpec>> {
    let mut specs = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let mut spec = LocalSpec::from_dir(d, nodes, i + 1)?;
        spec.prefix = Some(super::prefix(spec.cluster));
        specs.push(spec);
    }
    Ok(specs)
}

/// Starts the agent and waits until the clusters are up.
pub async fn up(dirs: &[PathBuf], nodes: usize) -> Result<()> {
    let mut manifests = Vec::new();
    for d in dirs {
        manifests.push(
            d.canonicalize()
                .with_context(|| format!("manifest directory {}", d.display()))?,
        );
    }
    // Bad lab config files are reported here, before anything starts.
    let specs = specs(&manifests, nodes)?;
    if agent_pid().is_some() {
        bail!("a local mesh is already running (quicmesh local down removes it)");
    }
    let _ = std::fs::remove_file(status_file());
    let log = std::env::temp_dir().join("quicmesh-local-agent.log");
    let out = std::fs::File::create(&log)?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["local", "agent"]);
    for m in &manifests {
        cmd.arg("-f").arg(m);
    }
    cmd.args(["--nodes", &nodes.to_string()])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // Its own session: it outlives this command and the terminal.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().context("starting the agent")?;
    std::fs::write(agent_pid_file(), child.id().to_string())?;
    for s in &specs {
        let about = if specs.len() > 1 || s.cluster != 1 || s.trust_domain != "cluster.local" {
            format!(" (cluster {}, trust domain {})", s.cluster, s.trust_domain)
        } else {
            String::new()
        };
        println!(
            "starting a {}-node mesh{about} from {} ...",
            s.nodes,
            s.manifests.display()
        );
    }
    let shown: Vec<String> = manifests.iter().map(|m| m.display().to_string()).collect();
    let progress = Progress::new();
    let lab_dirs: Vec<PathBuf> = specs
        .iter()
        .map(|s| lab_dir(s.prefix.as_deref().unwrap_or_default()))
        .collect();
    for _ in 0..600 * specs.len() {
        progress.tick(&lab_dirs);
        if status_file().exists() {
            progress.done();
            // Give the pods a moment to exchange traffic, then show it.
            tokio::time::sleep(Duration::from_secs(3)).await;
            print_status().await?;
            let dirs: Vec<(usize, PathBuf)> = specs
                .iter()
                .map(|s| (s.cluster, lab_dir(s.prefix.as_deref().unwrap_or_default())))
                .collect();
            print_traffic(&dirs);
            println!("\nedit {} and the mesh follows; `quicmesh local status`; `quicmesh local down` removes it", shown.join(", "));
            return Ok(());
        }
        if agent_pid().is_none() {
            bail!(
                "the agent exited:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the mesh did not come up within {} s; see {}",
        60 * specs.len(),
        log.display()
    )
}

/// What `up` shows while the agent starts the mesh: the agent's latest
/// log line and the time so far, in place on a terminal, every 5 s in a
/// log otherwise.
struct Progress {
    started: std::time::Instant,
    tty: bool,
    last: std::cell::Cell<u64>,
}

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal;
        Progress {
            started: std::time::Instant::now(),
            tty: std::io::stdout().is_terminal(),
            last: std::cell::Cell::new(0),
        }
    }

    /// `dirs`: the clusters' lab directories, where each process started
    /// leaves its log.
    fn tick(&self, dirs: &[PathBuf]) {
        let secs = self.started.elapsed().as_secs();
        if !self.tty && (secs == 0 || secs < self.last.get() + 5) {
            return;
        }
        self.last.set(secs);
        let (mut controllers, mut ztunnels, mut pods) = (0, 0, 0);
        for d in dirs {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "controller.log" {
                    controllers += 1;
                } else if name.starts_with("ztunnel-n") && name.ends_with(".log") {
                    ztunnels += 1;
                } else if name.starts_with("pod-") && name.ends_with(".log") {
                    pods += 1;
                }
            }
        }
        let step = format!(
            "started: {controllers}/{} controller(s), {ztunnels} ztunnel(s), {pods} pod(s)",
            dirs.len()
        );
        if self.tty {
            use std::io::Write;
            print!("\r\x1b[2K  {secs:>3} s  {step}");
            let _ = std::io::stdout().flush();
        } else {
            println!("  {secs:>3} s  {step}");
        }
    }

    fn done(&self) {
        if self.tty {
            println!("\r\x1b[2K  up in {} s", self.started.elapsed().as_secs());
        } else {
            println!("  up in {} s", self.started.elapsed().as_secs());
        }
    }
}

/// Runs the clusters: reconciles each every second, writes their status
/// (a JSON array, one entry per cluster), stops on SIGTERM.
pub async fn agent(dirs: &[PathBuf], nodes: usize) -> Result<()> {
    let mut clusters = Cluster::up_all(specs(dirs, nodes)?).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let mut status = Vec::new();
        for c in &clusters {
            status.push(c.status().await);
        }
        let tmp = status_file().with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&status)?)?;
        std::fs::rename(&tmp, status_file())?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = term.recv() => break,
        }
        for c in &mut clusters {
            if let Err(e) = c.reconcile().await {
                tracing::warn!(error = %format!("{e:#}"), prefix = c.lab.prefix(), "reconcile failed");
            }
        }
    }
    drop(clusters);
    let _ = std::fs::remove_file(status_file());
    Ok(())
}

fn agent_pid() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(agent_pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// Stops the agent (it removes what it made), waiting up to 15 s.
pub fn stop_agent() {
    if let Some(pid) = agent_pid() {
        // SAFETY: kill(2) on a pid we started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..150 {
            if agent_pid().is_none() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = std::fs::remove_file(agent_pid_file());
    let _ = std::fs::remove_file(status_file());
}

/// The agent's last status (a JSON array, one entry per cluster); `None`
/// when no agent runs.
pub fn running_status() -> Result<Option<serde_json::Value>> {
    let Ok(text) = std::fs::read_to_string(status_file()) else {
        return Ok(None);
    };
    if agent_pid().is_none() {
        return Ok(None);
    }
    let v = serde_json::from_str(&text)
        .with_context(|| format!("the agent's status file {}", status_file().display()))?;
    Ok(Some(v))
}

/// Prints the agent's status, each cluster's; false when no agent runs.
pub async fn print_status() -> Result<bool> {
    let Some(v) = running_status()? else {
        return Ok(false);
    };
    let clusters = v.as_array().cloned().unwrap_or_default();
    for (i, c) in clusters.iter().enumerate() {
        if clusters.len() > 1 {
            if i > 0 {
                println!();
            }
            println!(
                "== cluster {} (trust domain {}, controller {}, namespaces {}-*, manifests {})",
                c["cluster"],
                c["trust_domain"].as_str().unwrap_or("?"),
                c["controller_ip"].as_str().unwrap_or("?"),
                c["prefix"].as_str().unwrap_or("?"),
                c["manifests"].as_str().unwrap_or("?"),
            );
        }
        print_cluster(c);
    }
    Ok(true)
}

/// One cluster's part of [`print_status`].
fn print_cluster(v: &serde_json::Value) {
    println!(
        "controller: config version {}, {} objects; CA in {}/ca",
        v["controller"]["version"],
        v["controller"]["objects"],
        v["dir"].as_str().unwrap_or("?")
    );
    for n in v["nodes"].as_array().into_iter().flatten() {
        println!(
            "  {}  ztunnel pid {}  config version {}",
            n["name"].as_str().unwrap_or("?"),
            n["ztunnel_pid"],
            n["config_version"]
        );
    }
    println!("pods:");
    for p in v["pods"].as_array().into_iter().flatten() {
        println!(
            "  {:<28} {:<6} {:<12} {}{}",
            format!(
                "{}/{}",
                p["namespace"].as_str().unwrap_or("?"),
                p["name"].as_str().unwrap_or("?")
            ),
            p["node"].as_str().unwrap_or("?"),
            p["ip"].as_str().unwrap_or("?"),
            p["identity"].as_str().unwrap_or("?"),
            if p["waypoint"].as_bool() == Some(true) {
                "  (waypoint)"
            } else if p["in_mesh"].as_bool() == Some(true) {
                ""
            } else {
                "  (not in the mesh)"
            }
        );
    }
    println!("services:");
    for s in v["services"].as_array().into_iter().flatten() {
        println!(
            "  {:<28} {}",
            format!(
                "{}/{}",
                s["namespace"].as_str().unwrap_or("?"),
                s["name"].as_str().unwrap_or("?")
            ),
            s["vip"].as_str().unwrap_or("?")
        );
    }
    let conditions = |c: &serde_json::Value| {
        c.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let mut s = format!(
                    "{}={} ({})",
                    c["type"].as_str().unwrap_or("?"),
                    c["status"],
                    c["reason"].as_str().unwrap_or("?")
                );
                if let Some(m) = c["message"].as_str().filter(|m| !m.is_empty()) {
                    s.push_str(&format!(": {m}"));
                }
                s
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let waypoints = v["controller"]["waypoints"].as_array();
    if waypoints.is_some_and(|w| !w.is_empty()) {
        println!("waypoints (Gateway, class quicmesh-waypoint):");
    }
    for w in waypoints.into_iter().flatten() {
        println!(
            "  {:<28} {}",
            format!(
                "{}/{}",
                w["namespace"].as_str().unwrap_or("?"),
                w["name"].as_str().unwrap_or("?")
            ),
            conditions(&w["conditions"]),
        );
    }
    let routes = v["controller"]["httpRoutes"].as_array();
    if routes.is_some_and(|r| !r.is_empty()) {
        println!("HTTPRoutes:");
    }
    for r in routes.into_iter().flatten() {
        for parent in r["parents"].as_array().into_iter().flatten() {
            let p = &parent["parentRef"];
            println!(
                "  {:<28} -> Service {}/{}{}  {}",
                format!(
                    "{}/{}",
                    r["namespace"].as_str().unwrap_or("?"),
                    r["name"].as_str().unwrap_or("?")
                ),
                p["namespace"].as_str().unwrap_or("?"),
                p["name"].as_str().unwrap_or("?"),
                p["port"]
                    .as_u64()
                    .map(|p| format!(":{p}"))
                    .unwrap_or_default(),
                conditions(&parent["conditions"])
            );
        }
    }
    let policies = v["controller"]["trafficPolicies"].as_array();
    if policies.is_some_and(|p| !p.is_empty()) {
        println!("TrafficPolicies:");
    }
    for p in policies.into_iter().flatten() {
        let name = format!(
            "{}/{}",
            p["namespace"].as_str().unwrap_or("?"),
            p["name"].as_str().unwrap_or("?")
        );
        if let Some(why) = p["invalid"].as_str() {
            println!("  {name:<28} invalid: {why}");
        }
        for a in p["ancestors"].as_array().into_iter().flatten() {
            let t = &a["ancestorRef"];
            println!(
                "  {:<28} -> Service {}/{}{}  {}",
                name,
                t["namespace"].as_str().unwrap_or("?"),
                t["name"].as_str().unwrap_or("?"),
                t["sectionName"]
                    .as_str()
                    .map(|s| format!(" (port {s})"))
                    .unwrap_or_default(),
                conditions(&a["conditions"])
            );
        }
    }
    let authns = v["controller"]["requestAuthentications"].as_array();
    if authns.is_some_and(|a| !a.is_empty()) {
        println!("RequestAuthentications:");
    }
    for a in authns.into_iter().flatten() {
        println!(
            "  {:<28} {}",
            format!(
                "{}/{}",
                a["namespace"].as_str().unwrap_or("?"),
                a["name"].as_str().unwrap_or("?")
            ),
            conditions(&a["conditions"])
        );
    }
    let federations = v["controller"]["federations"].as_array();
    if federations.is_some_and(|f| !f.is_empty()) {
        println!("federations (TrustDomainFederation):");
    }
    for f in federations.into_iter().flatten() {
        println!(
            "  {:<28} {}  {}",
            f["name"].as_str().unwrap_or("?"),
            f["trustDomain"].as_str().unwrap_or("?"),
            conditions(&f["conditions"])
        );
    }
    for e in v["errors"].as_array().into_iter().flatten() {
        println!("manifest error: {}", e.as_str().unwrap_or("?"));
    }
    println!("logs: {}", v["dir"].as_str().unwrap_or("?"));
}

/// `key="value"` or `key=value` from a log line.
fn log_field(line: &str, key: &str) -> String {
    let Some(start) = line.find(&format!(" {key}=")) else {
        return "?".into();
    };
    let rest = &line[start + key.len() + 2..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or("?").to_string(),
        None => rest.split_whitespace().next().unwrap_or("?").to_string(),
    }
}

/// The latest tunnelled connection each ztunnel of each cluster (number,
/// lab directory) logged, with both identities.
fn print_traffic(clusters: &[(usize, PathBuf)]) {
    println!("\ntraffic through the mesh (from ztunnel access logs):");
    let mut any = false;
    for (c, dir) in clusters {
        let cluster = (clusters.len() > 1).then(|| format!("cluster {c} "));
        any |= print_cluster_traffic(dir, cluster.as_deref().unwrap_or_default());
    }
    if !any {
        println!("  none yet");
    }
}

/// [`print_traffic`] of one cluster, each line starting with `cluster`;
/// whether there was any.
fn print_cluster_traffic(dir: &Path, cluster: &str) -> bool {
    let mut any = false;
    for n in 1..=16 {
        let Ok(log) = std::fs::read_to_string(dir.join(format!("ztunnel-n{n}.log"))) else {
            break;
        };
        for path in ["tunnel", "waypoint"] {
            let Some(line) = log.lines().rev().find(|l| {
                l.contains("connection complete") && l.contains(&format!("path=\"{path}\""))
            }) else {
                continue;
            };
            let field = |key: &str| log_field(line, key);
            let hop = if path == "waypoint" {
                format!("{} through its waypoint", field("dst.original"))
            } else {
                field("dst.original")
            };
            println!(
                "  {cluster}node{n}: {} -> {} ({hop}, via QUIC/HTTP3 CONNECT to {})",
                field("src.identity"),
                field("dst.identity"),
                field("dst.addr")
            );
            any = true;
        }
    }
    // The latest request each waypoint routed.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return any;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pod) = name
            .strip_prefix("pod-")
            .and_then(|n| n.strip_suffix(".log"))
        else {
            continue;
        };
        let Ok(log) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if let Some(line) = log
            .lines()
            .rev()
            .find(|l| l.contains(" request ") || l.ends_with(" request"))
            .filter(|l| l.contains("route="))
        {
            let field = |key: &str| log_field(line, key);
            println!(
                "  {cluster}waypoint {pod}: {} {} {} -> route {} -> {} (HTTP {})",
                field("src.identity"),
                field("method"),
                field("path"),
                field("route"),
                field("upstream"),
                field("status")
            );
            any = true;
        }
    }
    any
}
