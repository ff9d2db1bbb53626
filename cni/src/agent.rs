//! The node agent (`quicmesh-cni agent`, one per node, in the CNI
//! DaemonSet): it learns the pods of its node and their namespaces from
//! the cluster (the controller's own sources feeding a
//! [`quicmesh_controller::store::Store`]), serves the plugin's socket
//! ([`server`]), and keeps ztunnel's enrolled set what the cluster says
//! ([`node`], deciding with [`plan`]): new pods as the plugin hands them
//! over, running pods when their namespace's `quicmesh.io/dataplane-mode`
//! label flips, everything again when ztunnel restarts.
//!
//! Wiring only; the parts that only make sense in Kubernetes (the
//! node-scoped watch, installing the plugin into the host's CNI
//! configuration, finding the namespaces of pods that predate the agent in
//! the host's `/proc`) plug in through [`kube_parts`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use quicmesh_controller::sources::files::{self, FileSource};
use quicmesh_controller::store::Store;
use quicmesh_core::health::{Flag, Readiness};
use quicmesh_core::metrics::{handler, scrape, serve_http, Reply};
use tokio_util::sync::CancellationToken;

pub mod metrics;
pub mod node;
pub mod plan;
pub mod server;

use metrics::Metrics;
use node::{NetnsOf, Node, Setup};

/// The trust domain the store translates for (the agent uses none of the
/// translation; it reads the index).
const TRUST_DOMAIN: &str = "cluster.local";
/// How often a file source looks for changes (a stat of each file; the
/// lab's plugin waits on it for each new pod).
const FILES_INTERVAL: Duration = Duration::from_millis(100);

/// Flags of `quicmesh-cni agent`.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Args {
    /// This node's name (the pods it serves are those scheduled on it).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// Where pods and namespaces come from: `kube` (a watch of this node's
    /// pods and of namespaces) or `files:DIR` (manifests, as the
    /// controller's file source reads them; the lab).
    #[arg(long, default_value = "kube")]
    pub source: String,
    /// ztunnel's enrollment socket.
    #[arg(long, default_value = "/var/run/quicmesh/ztunnel.sock")]
    pub ztunnel_socket: PathBuf,
    /// The socket the plugin reaches the agent on (the plugin's
    /// `agentSocket`). Created with mode 0600.
    #[arg(long, default_value = crate::spec::DEFAULT_AGENT_SOCKET)]
    pub plugin_socket: PathBuf,
    /// A uid allowed to use the plugin socket (its peer's, from
    /// SO_PEERCRED); repeat for several. Others are refused and counted.
    #[arg(long = "plugin-allowed-uid", default_values_t = [0u32], action = clap::ArgAction::Append)]
    pub plugin_allowed_uids: Vec<u32>,
    /// How long an ADD waits for its pod to appear in the agent's view of
    /// the cluster (a watch lags behind the runtime).
    #[arg(long, default_value = "5s", value_parser = quicmesh_core::duration::parse)]
    #[serde(with = "quicmesh_core::duration::text")]
    pub pod_wait: Duration,
    /// `/metrics` and `/healthz/ready`.
    #[arg(long, default_value = "0.0.0.0:15021")]
    pub health_addr: SocketAddr,
    /// `/pods` (what the agent holds of each pod) and `/config_dump` (its
    /// flags). Keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:15022")]
    pub admin_addr: SocketAddr,
    /// Kubernetes: the host's CNI binary directory, where the agent
    /// installs the plugin.
    #[arg(long)]
    pub cni_bin_dir: Option<PathBuf>,
    /// Kubernetes: the host's CNI configuration directory, whose conflist
    /// the agent chains the plugin into.
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Kubernetes: the host's `/proc`, where the agent finds the network
    /// namespaces of pods that were running before it.
    #[arg(long)]
    pub host_proc: Option<PathBuf>,
    /// Kubernetes: the agent's own DaemonSet (in `--namespace`). On stop,
    /// if it is gone or being deleted (quicmesh is being uninstalled), the
    /// agent takes the plugin out of the node's CNI config; otherwise (a
    /// restart, an upgrade) it leaves it, so no pod starts uncaptured.
    #[arg(long)]
    pub daemonset: Option<String>,
    /// Kubernetes: the agent's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
}

/// Where pods and namespaces come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Kube,
    Files(PathBuf),
}

fn source(s: &str) -> anyhow::Result<Source> {
    match s.split_once(':') {
        Some(("files", dir)) if !dir.is_empty() => Ok(Source::Files(PathBuf::from(dir))),
        None if s == "kube" => Ok(Source::Kube),
        _ => bail!("unknown source {s:?}: use files:DIR or kube"),
    }
}

/// The plugin's entry in a chained conflist, as the agent installs it.
pub fn chain_entry(plugin_socket: &Path) -> serde_json::Value {
    serde_json::json!({
        "type": "quicmesh-cni",
        "agentSocket": plugin_socket,
        "timeout": "10s",
    })
}

/// How often the agent checks that its plugin is still chained (a primary
/// CNI that restarts rewrites its config without it).
const CHAIN_INTERVAL: Duration = Duration::from_secs(5);

/// The Kubernetes-only parts: the node-scoped watch
/// (`quicmesh_controller::sources::kube::run_for_node`), installing and
/// chaining the plugin ([`crate::install`]) and taking it out on
/// uninstall, and finding running pods' namespaces ([`crate::procfs`]).
pub mod kube_parts {
    use super::*;

    /// Starts feeding `store` from the API server (this node's pods, all
    /// namespaces).
    pub async fn start_source(args: &Args, store: Arc<Store>) -> anyhow::Result<()> {
        let client = kube::Client::try_default()
            .await
            .context("Kubernetes client")?;
        // Registers its kinds with the sync gate now, before it runs.
        let watch =
            quicmesh_controller::sources::kube::run_for_node(client, store, args.node.clone());
        tokio::spawn(async move {
            if let Err(e) = watch.await {
                tracing::error!(error = %format!("{e:#}"), "the node's watch ended");
            }
        });
        Ok(())
    }

    /// Installs the plugin binary (now: a failure stops the agent), then
    /// keeps it chained into the node's network config, checking every
    /// [`CHAIN_INTERVAL`]: the primary CNI may write its config after the
    /// agent starts, and rewrite it without our entry when it restarts.
    /// `chained` is ready while the entry is in place.
    pub fn install(args: &Args, chained: &Flag, stop: CancellationToken) -> anyhow::Result<()> {
        if let Some(bin) = &args.cni_bin_dir {
            let exe = std::env::current_exe().context("the agent's own binary")?;
            crate::install::install_plugin(bin, &exe)
                .with_context(|| format!("installing the plugin into {}", bin.display()))?;
            tracing::info!(dir = %bin.display(), "plugin installed");
        }
        let Some(conf) = args.cni_conf_dir.clone() else {
            chained.set_ready();
            return Ok(());
        };
        let (entry, chained) = (chain_entry(&args.plugin_socket), chained.clone());
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            loop {
                let result = crate::install::chain(&conf, &entry);
                let now = match &result {
                    Ok(path) => format!("chained into {}", path.display()),
                    Err(e) => format!("{e:#}"),
                };
                // Logged when it changes, not every round.
                if last.as_deref() != Some(now.as_str()) {
                    match &result {
                        Ok(_) => tracing::info!(config = %now, "plugin chained"),
                        Err(_) => tracing::warn!(error = %now, "plugin not chained yet; retrying"),
                    }
                    last = Some(now.clone());
                }
                match result {
                    Ok(_) => chained.set_ready(),
                    Err(_) => chained.set_not_ready(now),
                }
                tokio::select! {
                    _ = tokio::time::sleep(CHAIN_INTERVAL) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
        Ok(())
    }

    /// Whether the DaemonSet `namespace/name` is gone or being deleted:
    /// quicmesh is being uninstalled, not restarted or upgraded.
    pub async fn uninstalling(
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> kube::Result<bool> {
        let api: kube::Api<k8s_openapi::api::apps::v1::DaemonSet> =
            kube::Api::namespaced(client.clone(), namespace);
        Ok(api
            .get_opt(name)
            .await?
            .is_none_or(|ds| ds.metadata.deletion_timestamp.is_some()))
    }

    /// On stop: takes the plugin out of the node's CNI config and removes
    /// its binary when quicmesh is being uninstalled; keeps both (a pod
    /// then waits for the agent: CNI code 11) when the API cannot say.
    pub async fn on_stop(args: &Args) {
        let (Some(conf), Some(ds), Some(ns)) =
            (&args.cni_conf_dir, &args.daemonset, &args.namespace)
        else {
            return;
        };
        let asked = async {
            let client = kube::Client::try_default().await?;
            uninstalling(&client, ns, ds).await
        };
        match tokio::time::timeout(Duration::from_secs(5), asked).await {
            Ok(Ok(true)) => {
                match crate::install::unchain(conf, crate::install::PLUGIN_TYPE) {
                    Ok(changed) => {
                        tracing::info!(config = ?changed, "uninstalling: plugin taken out of the node's CNI config")
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "uninstalling: could not take the plugin out of the node's CNI config")
                    }
                }
                if let Some(bin) = &args.cni_bin_dir {
                    let _ = std::fs::remove_file(bin.join(crate::install::PLUGIN_TYPE));
                }
            }
            Ok(Ok(false)) => {
                tracing::info!("stopping for a restart or an upgrade: the plugin stays chained")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot tell an uninstall from a restart: the plugin stays chained")
            }
            Err(_) => {
                tracing::warn!("the API server did not answer within 5 s: the plugin stays chained")
            }
        }
    }

    /// How the agent finds running pods' namespaces: in the host's `/proc`.
    pub fn netns_finder(args: &Args) -> anyhow::Result<Option<NetnsOf>> {
        Ok(args.host_proc.clone().map(|proc| {
            Box::new(move |uid: &str| crate::procfs::netns_of_pod(&proc, uid)) as NetnsOf
        }))
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let src = source(&args.source)?;
    let store = Store::new(TRUST_DOMAIN);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::default());
    metrics.register(&mut registry);

    // Where the pods come from.
    match &src {
        Source::Files(dir) => {
            let fs = FileSource::new(vec![dir.clone()]);
            registry.register(
                "quicmesh_cni_manifest_errors",
                "Manifest documents rejected (file source)",
                fs.errors.clone(),
            );
            tokio::spawn(files::run(fs, store.clone(), FILES_INTERVAL));
        }
        Source::Kube => kube_parts::start_source(&args, store.clone()).await?,
    }
    let find_netns = kube_parts::netns_finder(&args)?;

    let shutdown = CancellationToken::new();
    let chained = Flag::new("the plugin is not chained into the node's CNI config yet");
    kube_parts::install(&args, &chained, shutdown.clone())?;
    let ztunnel_ready = Flag::new("not connected to ztunnel yet");
    let plugin_ready = Flag::new("plugin socket not bound yet");
    let synced = store.clone();
    let readiness = Arc::new(
        Readiness::new()
            .with("store", move || {
                if synced.is_synced() {
                    Ok(())
                } else {
                    Err(format!(
                        "waiting for the first full view of: {}",
                        synced.pending_sources().join(", ")
                    ))
                }
            })
            .with_flag("plugin_socket", &plugin_ready)
            .with_flag("ztunnel", &ztunnel_ready)
            .with_flag("cni_config", &chained),
    );
    readiness.register(&mut registry);

    let (status_tx, status) = tokio::sync::watch::channel(serde_json::Value::Null);
    let (calls_tx, calls) = tokio::sync::mpsc::channel(256);
    let node = Node::new(Setup {
        name: args.node.clone(),
        store: store.clone(),
        ztunnel_socket: args.ztunnel_socket.clone(),
        find_netns,
        metrics: metrics.clone(),
        ztunnel_ready,
        status: status_tx,
    });
    tokio::spawn(node.run(calls, shutdown.clone()));

    let socket = server::PluginSocket::bind(&args.plugin_socket)
        .with_context(|| format!("binding the plugin socket {}", args.plugin_socket.display()))?;
    plugin_ready.set_ready();
    let serving = tokio::spawn(server::serve(
        socket,
        server::Context {
            store: store.clone(),
            calls: calls_tx,
            metrics: metrics.clone(),
            allowed_uids: Arc::new(args.plugin_allowed_uids.clone()),
            pod_wait: args.pod_wait,
        },
        shutdown.clone(),
    ));

    let registry = Arc::new(registry);
    let health = tokio::net::TcpListener::bind(args.health_addr)
        .await
        .with_context(|| format!("binding --health-addr {}", args.health_addr))?;
    let ready = readiness.clone();
    tokio::spawn(serve_http(
        health,
        vec![
            (
                "/metrics",
                handler(move || {
                    let registry = registry.clone();
                    async move { scrape(&registry) }
                }),
            ),
            (
                "/healthz/ready",
                handler(move || {
                    let ready = ready.clone();
                    async move { ready.reply() }
                }),
            ),
        ],
        shutdown.clone(),
    ));
    let admin = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding --admin-addr {}", args.admin_addr))?;
    let dump = serde_json::to_value(&args).expect("serializable");
    tokio::spawn(serve_http(
        admin,
        vec![
            (
                "/pods",
                handler(move || {
                    let s = status.borrow().clone();
                    async move { Reply::from(s) }
                }),
            ),
            ("/logging", quicmesh_core::telemetry::logging_handler()),
            (
                "/config_dump",
                handler(move || {
                    let d = dump.clone();
                    async move { Reply::from(d) }
                }),
            ),
        ],
        shutdown.clone(),
    ));
    tracing::info!(node = %args.node, source = %args.source, ztunnel_socket = %args.ztunnel_socket.display(), plugin_socket = %args.plugin_socket.display(), "quicmesh-cni agent started");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
    if src == Source::Kube {
        kube_parts::on_stop(&args).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_kube_or_a_directory() {
        assert_eq!(source("kube").unwrap(), Source::Kube);
        assert_eq!(
            source("files:/tmp/x").unwrap(),
            Source::Files("/tmp/x".into())
        );
        for bad in ["files:", "kube:x", "dir", ""] {
            assert!(source(bad).is_err(), "{bad}");
        }
    }
}
