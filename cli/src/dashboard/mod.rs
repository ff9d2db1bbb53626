//! `quicmesh dashboard`: a web page with the running mesh's live service
//! graph (a local mesh, or one in Kubernetes: [`crate::target`]), served
//! by this command (nothing to install). Every
//! `--interval` it scrapes the Prometheus metrics of every ztunnel and
//! waypoint and keeps a minute of samples; `/api/graph` answers the graph
//! over the last `WINDOW`: workloads (by SPIFFE identity, with their pods)
//! as nodes, waypoints marked, edges with tunnelled connections per
//! second, bytes, and the requests a waypoint served for that client (per
//! Service: rate, success rate, p99), and each workload's golden signals
//! and certificate expiry. `/` is the page that draws it.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use quicmesh_core::metrics::{handler, serve_http, Reply};

use crate::kube::KubeArgs;
use crate::target::Mesh;
use serde_json::{json, Value};

mod graph;

use graph::{graph, parse, Snapshot};

/// Rates are over this much of the latest samples (or all there are).
const WINDOW: Duration = Duration::from_secs(30);
/// Samples older than this are dropped.
const KEEP: Duration = Duration::from_secs(60);
/// The proxies' metrics port.
const METRICS: u16 = 15020;

#[derive(Args, Debug, Clone)]
pub struct DashboardArgs {
    /// Where to serve the page (loopback by default: it shows the mesh's
    /// identities and traffic).
    #[arg(long, default_value = "127.0.0.1:15080")]
    pub addr: SocketAddr,
    /// How often to scrape the proxies, in seconds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub interval: u64,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// One round: every ztunnel's and waypoint's metrics. Returns what could
/// not be scraped, said for the page.
async fn scrape(mesh: &Mesh) -> (Snapshot, Vec<String>) {
    let mut snap = Snapshot::default();
    let mut errors = Vec::new();
    let mut targets: Vec<(String, &Value, Option<String>)> = Vec::new();
    for c in &mesh.clusters {
        for n in c["nodes"].as_array().into_iter().flatten() {
            targets.push((
                format!("ztunnel {}", n["name"].as_str().unwrap_or("?")),
                n,
                None,
            ));
        }
        for p in c["pods"].as_array().into_iter().flatten() {
            if p["waypoint"] == true {
                targets.push((
                    format!(
                        "waypoint {}/{}",
                        p["namespace"].as_str().unwrap_or("?"),
                        p["name"].as_str().unwrap_or("?")
                    ),
                    p,
                    p["identity"].as_str().map(str::to_string),
                ));
            }
        }
    }
    for (what, at, waypoint) in targets {
        match mesh.get(at, METRICS, "/metrics").await {
            Ok(text) => snap.add(&parse(&text), waypoint.as_deref()),
            Err(e) => errors.push(format!("{what}: {e:#}")),
        }
    }
    (snap, errors)
}

/// The mesh as it is now: a local mesh's status file read again, a
/// cluster's pods listed again (`kube`), with the workloads its first
/// ztunnel knows (the graph's nodes; a local status file lists its pods).
async fn current(kube: &KubeArgs) -> Result<Mesh> {
    let mut mesh = Mesh::open(kube, None).await?;
    if mesh.is_kubernetes() {
        for i in 0..mesh.clusters.len() {
            let Some(first) = mesh.clusters[i]["nodes"].get(0).cloned() else {
                continue;
            };
            let dump = mesh.admin(&first, "/config_dump").await?;
            let workloads: Vec<Value> = dump["state"]["workloads"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|w| w["identity"].is_string())
                .map(|w| json!({"namespace": w["namespace"], "name": w["name"], "identity": w["identity"]}))
                .collect();
            if let Some(pods) = mesh.clusters[i]["pods"].as_array_mut() {
                // A waypoint is one of the workloads too: listed once.
                let known: BTreeSet<(String, String)> = pods
                    .iter()
                    .map(|p| (str_or(&p["namespace"]), str_or(&p["name"])))
                    .collect();
                pods.extend(
                    workloads.into_iter().filter(|w| {
                        !known.contains(&(str_or(&w["namespace"]), str_or(&w["name"])))
                    }),
                );
            }
        }
    }
    Ok(mesh)
}

fn str_or(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

struct State {
    history: VecDeque<(Instant, Snapshot)>,
    status: Vec<Value>,
    errors: Vec<String>,
}

pub async fn run(args: &DashboardArgs) -> Result<()> {
    // Fails now, with what to do, when no mesh runs.
    current(&args.kube).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| {
            format!(
                "serving the dashboard on {} (in use? pick another with --addr)",
                args.addr
            )
        })?;
    let state = Arc::new(Mutex::new(State {
        history: VecDeque::new(),
        status: Vec::new(),
        errors: Vec::new(),
    }));
    let st = state.clone();
    let every = Duration::from_secs(args.interval);
    let kube = args.kube.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let (status, snap, errors) = match current(&kube).await {
                Ok(mesh) => {
                    let (snap, errors) = scrape(&mesh).await;
                    (mesh.clusters, snap, errors)
                }
                Err(e) => (Vec::new(), Snapshot::default(), vec![format!("{e:#}")]),
            };
            let mut s = st.lock().expect("not poisoned");
            let now = Instant::now();
            s.history.push_back((now, snap));
            while s
                .history
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > KEEP)
            {
                s.history.pop_front();
            }
            s.status = status;
            s.errors = errors;
        }
    });
    let api = state.clone();
    let routes = vec![
        (
            "/",
            handler(|| {
                std::future::ready(Reply {
                    status: 200,
                    body: PAGE.to_string(),
                    content_type: "text/html; charset=utf-8",
                })
            }),
        ),
        (
            "/api/graph",
            handler(move || {
                let s = api.lock().expect("not poisoned");
                std::future::ready(graph(&s.history, &s.status, &s.errors))
            }),
        ),
    ];
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    println!(
        "quicmesh dashboard: http://{}/ (the graph refreshes every {} s; Ctrl-C stops it)",
        args.addr, args.interval
    );
    serve_http(listener, routes, shutdown).await;
    Ok(())
}

/// The page: draws `/api/graph` as SVG, refreshed every two seconds. No
/// external script or style: it works without a network.
const PAGE: &str = include_str!("page.html");
