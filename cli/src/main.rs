//! `quicmesh`: the command-line front of quicmesh.
//!
//! `quicmesh local up` builds the demo mesh on this host (network namespaces
//! for nodes and pods, a real ztunnel per node), sends a request across it
//! and explains what happened; `quicmesh local status` shows it;
//! `quicmesh local down` removes it; `quicmesh local exec` and `local logs`
//! reach its pods. `quicmesh proxy-status`, `ztunnel-config` and
//! `waypoint-config` show what the running mesh's controller and proxies
//! hold; `quicmesh dashboard` draws its live service graph; `quicmesh
//! check` checks the host. `quicmesh ca rotate` runs one
//! stage of a CA rotation on a CA directory (docs/ca.md). docs/cli.md has
//! them all.

use std::path::PathBuf;
use std::time::Duration;

mod ca;
mod check;
mod dashboard;
mod inspect;
mod kube;
mod manifests;
mod pods;
mod target;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use quicmesh_lab::{Mesh, MeshPod, MeshSpec};

/// The namespace prefix of the `local` mesh, so a later `down` finds it.
const PREFIX: &str = "qmlocal";

#[derive(Parser)]
#[command(
    name = "quicmesh",
    version,
    about = "quicmesh: an ambient service mesh over QUIC"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A mesh on this host, no Kubernetes needed (root required).
    Local {
        #[command(subcommand)]
        cmd: LocalCmd,
    },
    /// The mesh CA kept in a directory (the controller's --ca-dir).
    Ca {
        #[command(subcommand)]
        cmd: ca::CaCmd,
    },
    /// Every proxy connected to the controller: the config version sent to
    /// it, the one it took, and its last refusal (NACK).
    ProxyStatus {
        #[command(flatten)]
        common: inspect::Common,
    },
    /// What a ztunnel holds: workloads, services, policies, certificates.
    ZtunnelConfig(inspect::ZtunnelArgs),
    /// What a waypoint holds: routes, policies.
    WaypointConfig(inspect::WaypointArgs),
    /// A web page with the running mesh's live service graph: workloads,
    /// waypoints, edges with connection and request rates, success, p99,
    /// identities, certificate expiry.
    Dashboard(dashboard::DashboardArgs),
    /// Whether this host can run quicmesh, and whether the running local
    /// mesh is healthy; says what to do about each failure.
    /// With --kubeconfig or --context: the mesh in that Kubernetes
    /// cluster (API server, CRDs, controller, ztunnel and CNI on every
    /// node, versions, proxies).
    Check {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = inspect::Output::Table)]
        output: inspect::Output,
        #[command(flatten)]
        kube: kube::KubeArgs,
    },
}

#[derive(Subcommand)]
enum LocalCmd {
    /// Start a mesh on this host. With -f: from the Kubernetes manifests in
    /// DIR, watched for changes (a real controller, a ztunnel per node);
    /// with several -f, one cluster (mesh) per DIR, side by side, their
    /// networks connected. Without: a built-in two-pod demo with static
    /// configuration.
    Up {
        /// Directory of manifests (Namespace, ServiceAccount, Pod, Deployment,
        /// Service, ...), and optionally a `quicmesh-local.conf`
        /// (trustDomain, nodes, cluster). Repeat for several clusters.
        #[arg(short = 'f', long = "filename")]
        dirs: Vec<PathBuf>,
        /// Simulated nodes (per cluster, unless its quicmesh-local.conf says).
        #[arg(long, default_value_t = 2)]
        nodes: usize,
    },
    /// Show the running local mesh: nodes, pods, identities, config versions.
    Status {
        /// `json` or `yaml`: the whole status, one entry per cluster.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = inspect::Output::Table)]
        output: inspect::Output,
    },
    /// Remove everything `local up` made.
    Down,
    /// Run a command inside a pod's network namespace (its Service names
    /// resolve): `quicmesh local exec front/client-0 -- curl http://web.shop/`.
    /// POD is NAMESPACE/NAME, NAME, `node<N>` (the node) or `controller`.
    Exec {
        pod: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Print a pod's log, or a mesh process's: NAMESPACE/NAME, NAME,
    /// `ztunnel/node<N>`, `cni/node<N>`, `controller`.
    Logs {
        pod: String,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Keep printing what is appended, until the mesh goes away.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// (internal) Runs the cluster for `up -f`: reconciles DIR until stopped.
    #[command(hide = true)]
    Agent {
        #[arg(short = 'f', long = "filename", required = true)]
        dirs: Vec<PathBuf>,
        #[arg(long)]
        nodes: usize,
    },
}

fn main() {
    quicmesh_core::install_crypto_provider();
    // Errors for people: the chain of causes on one line, no backtrace.
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    if std::env::var_os("RUST_LOG").is_none() {
        // kube-client logs each failed call at error; the CLI says it once.
        std::env::set_var("RUST_LOG", "warn,kube_client=off");
    }
    quicmesh_core::telemetry::init_logging();
    let cli = Cli::parse();
    if let Cmd::Ca { cmd } = cli.cmd {
        return ca::run(cmd);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Cmd::Check { output, kube } = cli.cmd {
        if !rt.block_on(check::run_all(output, &kube))? {
            std::process::exit(1);
        }
        return Ok(());
    }
    // The inspect commands need root only for a local mesh (target.rs).
    let inspect = matches!(
        cli.cmd,
        Cmd::ProxyStatus { .. }
            | Cmd::ZtunnelConfig(_)
            | Cmd::WaypointConfig(_)
            | Cmd::Dashboard(_)
    );
    if !inspect {
        require_root()?;
    }
    match cli.cmd {
        Cmd::Local {
            cmd: LocalCmd::Up { dirs, .. },
        } if dirs.is_empty() => rt.block_on(up()),
        Cmd::Local {
            cmd: LocalCmd::Up { dirs, nodes },
        } => rt.block_on(manifests::up(&dirs, nodes)),
        Cmd::Local {
            cmd: LocalCmd::Agent { dirs, nodes },
        } => rt.block_on(manifests::agent(&dirs, nodes)),
        Cmd::Local {
            cmd: LocalCmd::Status { output },
        } => match output {
            inspect::Output::Table => rt.block_on(status()),
            o => inspect::print_status(o),
        },
        Cmd::Local {
            cmd: LocalCmd::Down,
        } => down(),
        Cmd::Local {
            cmd: LocalCmd::Exec { pod, cmd },
        } => pods::exec(&pod, &cmd),
        Cmd::Local {
            cmd: LocalCmd::Logs { pod, tail, follow },
        } => pods::logs(&pod, tail, follow),
        Cmd::ProxyStatus { common } => rt.block_on(inspect::proxy_status(&common)),
        Cmd::ZtunnelConfig(a) => rt.block_on(inspect::ztunnel_config(&a)),
        Cmd::WaypointConfig(a) => rt.block_on(inspect::waypoint_config(&a)),
        Cmd::Dashboard(a) => rt.block_on(dashboard::run(&a)),
        Cmd::Ca { .. } | Cmd::Check { .. } => unreachable!("run above"),
    }
}

/// Fails, saying why and what to do, unless this runs as root.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "this needs root: the local mesh lives in network namespaces and nftables rules \
             (run as root, or through ./quicmesh, which uses sudo; a Kubernetes cluster, \
             named with --kubeconfig or --context, needs no root)"
        );
    }
    Ok(())
}

fn state_dir() -> std::path::PathBuf {
    quicmesh_lab::local::lab_dir(PREFIX)
}

async fn up() -> Result<()> {
    let spec = MeshSpec {
        nodes: 2,
        pods: vec![
            MeshPod::new("client", 1, "demo", "client"),
            MeshPod::new("server", 2, "demo", "server"),
        ],
        externals: 0,
    };
    let mesh = Mesh::start_with_prefix(spec, Some(PREFIX))
        .await
        .context("starting the local mesh (already up? run `quicmesh local down`)")?;
    let result = demo(&mesh).await;
    if let Err(e) = result {
        eprintln!("demo request failed: {e:#}\ntearing the mesh down");
        drop(mesh);
        return Err(e);
    }
    mesh.detach();
    Ok(())
}

async fn demo(mesh: &Mesh) -> Result<()> {
    let server_ns = mesh.lab.pod("server").netns.clone();
    mesh.http_server(
        &server_ns,
        8080,
        &[("index.html", "hello from demo/server\n")],
    )
    .await
    .context("starting the demo HTTP server")?;
    for node in [1, 2] {
        mesh.lab
            .add_link_counter(node, "demo_quic", "udp dport 15008")?;
        mesh.lab
            .add_link_counter(node, "demo_plain", "tcp dport 8080")?;
    }

    println!("quicmesh local: 2 nodes, 2 pods (namespaces {PREFIX}-*)\n");
    for n in mesh.lab.nodes() {
        println!(
            "  node{}  link {}  pods {}  ztunnel pid {}",
            n.index,
            n.link_ip,
            n.pod_cidr,
            mesh.ztunnel_pid(n.index)
        );
    }
    for name in ["client", "server"] {
        let p = mesh.lab.pod(name);
        println!(
            "  pod demo/{name:<7} {:<12} node{}  {}",
            p.ip.to_string(),
            p.node,
            mesh.identity(name)
        );
    }
    let url = format!("http://{}:8080/", mesh.pod_ip("server"));
    println!("\n$ curl {url}    # run inside pod demo/client");
    let out = mesh.lab.exec_timeout(
        &mesh.lab.pod("client").netns,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            &url,
        ],
        Duration::from_secs(15),
    )?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    if !out.status.success() || code != "200" {
        bail!(
            "curl failed ({code}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("{body}  (HTTP {code})\n");

    // What ztunnel says happened: its access log lines for this connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let access = |node: usize, dir: &str| {
        mesh.log(node)
            .lines()
            .rev()
            .find(|l| l.contains("connection complete") && l.contains(dir))
            .map(str::to_string)
    };
    let field = |line: &str, key: &str| {
        line.split_whitespace()
            .find_map(|kv| {
                kv.strip_prefix(&format!("{key}="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "?".into())
    };
    let out_line = access(1, "direction=\"outbound\"")
        .context("node1 ztunnel logged no outbound connection")?;
    let in_line =
        access(2, "direction=\"inbound\"").context("node2 ztunnel logged no inbound stream")?;
    println!("what happened:");
    println!("  1. node1's ztunnel captured the connection inside pod demo/client (nftables redirect to 15001)");
    println!(
        "  2. it opened an HTTP/3 CONNECT {} over mutually authenticated QUIC to {}:15008",
        field(&out_line, "dst.addr"),
        mesh.pod_ip("server")
    );
    println!(
        "       source identity (client certificate):      {}",
        field(&out_line, "src.identity")
    );
    println!(
        "       destination identity (server certificate): {}",
        field(&out_line, "dst.identity")
    );
    println!(
        "  3. node2's ztunnel verified {} and delivered to {} inside pod demo/server",
        field(&in_line, "src.identity"),
        field(&in_line, "dst.addr")
    );
    let (quic, _) = mesh.lab.link_counter(1, "demo_quic")?;
    let (plain, _) = mesh.lab.link_counter(1, "demo_plain")?;
    println!(
        "  node link: {quic} QUIC packets to udp/15008, {plain} plain TCP packets to port 8080\n"
    );
    println!(
        "logs: {}/ztunnel-n1.log, ztunnel-n2.log",
        mesh.dir.display()
    );
    println!("try:  ip netns exec {PREFIX}-client curl {url}");
    println!("stop: quicmesh local down");
    Ok(())
}

async fn status() -> Result<()> {
    if manifests::print_status().await? {
        return Ok(());
    }
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{PREFIX}-")))
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        println!("no local mesh is running (start one with `quicmesh local up`)");
        return Ok(());
    }
    println!("local mesh: {} namespaces", names.len());
    for n in &names {
        let pids = std::process::Command::new("ip")
            .args(["netns", "pids", n])
            .output()?;
        let pids = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .count();
        println!("  {n:<24} processes: {pids}");
    }
    println!("logs: {}", state_dir().display());
    Ok(())
}

/// The namespace prefix of cluster `cluster` of the `local` mesh: `qmlocal`
/// for cluster 1 (the only one of a single `-f`), `qmlocal<c>` for others.
fn prefix(cluster: usize) -> String {
    match cluster {
        1 => PREFIX.to_string(),
        c => format!("{PREFIX}{c}"),
    }
}

fn down() -> Result<()> {
    manifests::stop_agent();
    let mut n = 0;
    for c in 1..=quicmesh_lab::net::MAX_CLUSTERS {
        n += quicmesh_lab::net::destroy_prefix(&prefix(c))?;
        let _ = std::fs::remove_dir_all(quicmesh_lab::local::lab_dir(&prefix(c)));
    }
    println!("local mesh removed ({n} leftover network namespaces cleaned up)");
    Ok(())
}
