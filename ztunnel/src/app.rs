//! Wiring: shared state, the identity source, the admin and metrics
//! endpoints, the workload file watch, and the enrollment server.
//!
//! `/healthz/ready` (metrics port) answers 200 while the node's config, its
//! certificates and the enrollment socket are live ([`readiness`]), 503
//! naming what is not otherwise.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use quicmesh_core::control::client::{ControllerClient, Token};
use quicmesh_core::health::{Check, Flag, Readiness};
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::certs::{CertManager, SvidSource};
use quicmesh_core::identity::workload_api::{self, WorkloadApi};
use quicmesh_core::identity::{SharedBundles, SpiffeId, TrustBundles};
use quicmesh_core::metrics::{handler, serve_http};
use quicmesh_core::tunnel::config::TunnelSettings;
use tokio_util::sync::CancellationToken;

use crate::config::{Args, SvidSourceFlag, WorkloadFile};
use crate::inpod::pods::Pods;
use crate::metrics::Metrics;
use crate::node::Shared;
use crate::state::State;

/// The identity source built from the flags, and what of it runs beside
/// the cert manager.
struct Identity {
    certs: CertManager,
    controller: Option<Arc<ControllerClient>>,
    /// Its stream is to be followed (`WorkloadApi::run`).
    workload_api: Option<Arc<WorkloadApi>>,
}

/// Builds the identity source from the flags.
fn cert_manager(
    args: &Args,
    trust_domain: &str,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Identity> {
    let mut bundles = TrustBundles::new();
    let read_bundle = |bundles: &mut TrustBundles| -> anyhow::Result<()> {
        let bundle = args
            .trust_bundle
            .as_ref()
            .context("--trust-bundle is required with --svid-dir and --controller")?;
        let pem = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
        bundles.insert_pem(trust_domain, &pem)?;
        Ok(())
    };
    let mut controller = None;
    let mut workload_api = None;
    let (source, bundles): (_, SharedBundles) = if let Some(SvidSourceFlag::WorkloadApi(socket)) =
        &args.svid_source
    {
        // Every bundle, own and federated, comes from the agent.
        let bundles = SharedBundles::default();
        let w = WorkloadApi::new(
            socket.clone(),
            bundles.clone(),
            workload_api::Settings::default(),
            Arc::new(metrics.workload_api.clone()),
        );
        workload_api = Some(w.clone());
        (SvidSource::WorkloadApi(w), bundles)
    } else if let Some(addr) = args.controller.clone() {
        read_bundle(&mut bundles)?;
        let token_file = args
            .bootstrap_token
            .as_ref()
            .context("--controller needs --bootstrap-token")?;
        let token = Token::file(token_file).map_err(anyhow::Error::msg)?;
        let identity =
            SpiffeId::parse(&args.controller_identity).context("--controller-identity")?;
        // One set of bundles for the controller client and the tunnels:
        // the CA's answers replace the mesh domain's roots in both.
        let bundles = SharedBundles::new(bundles);
        let c = Arc::new(ControllerClient {
            addr,
            identity,
            bundles: bundles.clone(),
            token,
            node: args.node.clone(),
            tls_metrics: Arc::new(metrics.tunnel.tls.clone()),
        });
        c.node_identity_checked().context("--node")?;
        controller = Some(c.clone());
        (SvidSource::Controller(c), bundles)
    } else if let Some(dir) = &args.dev_ca_dir {
        tracing::warn!(
            dir = %dir.display(),
            "DEVELOPMENT MODE: ztunnel mints workload SVIDs from a local CA; never use this in production"
        );
        let ca = Ca::load_or_generate(trust_domain, dir).context("development CA")?;
        bundles.insert(trust_domain, &[ca.cert_der().clone()])?;
        let source = SvidSource::DevCa {
            ca: Box::new(ca),
            lifetime: args.svid_lifetime,
        };
        (source, bundles.into())
    } else if let Some(dir) = &args.svid_dir {
        read_bundle(&mut bundles)?;
        (SvidSource::Files { dir: dir.clone() }, bundles.into())
    } else {
        anyhow::bail!("no identity source: pass --controller, --svid-source workload-api:PATH, or --svid-dir and --trust-bundle (or, for development only, --dev-ca-dir)")
    };
    let mut certs = CertManager::new(source, bundles);
    let m = metrics.clone();
    certs.on_fetch = Box::new(move |result| {
        m.svid_fetches
            .get_or_create(&crate::metrics::ResultLabels {
                result: result.into(),
            })
            .inc();
    });
    Ok(Identity {
        certs,
        controller,
        workload_api,
    })
}

/// Runs ztunnel until SIGTERM/SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let initial = match &args.workloads {
        Some(path) => State::from_file(&WorkloadFile::load(path)?),
        None => State::empty(&args.trust_domain),
    };
    let metrics = Arc::new(Metrics::default());
    let Identity {
        certs,
        controller,
        workload_api,
    } = cert_manager(&args, &initial.trust_domain, &metrics)?;
    let settings = TunnelSettings {
        socket_buffer: args.udp_buffer,
        max_connections_per_key: args.tunnel_connections.max(1),
        max_udp_payload: args.max_udp_payload,
        gso: args.gso,
        ack_threshold: args.ack_threshold,
        max_handshakes: args.max_handshakes,
        max_handshakes_per_source: args.max_handshakes_per_source,
        handshake_retry_threshold: args.handshake_retry_threshold,
        handshake_timeout: args.handshake_timeout,
        pool_idle: args.pool_idle,
        key_exchange: args.tunnel_key_exchange,
        stream_receive_window: args.stream_window,
        connection_receive_window: args.connection_window,
        send_window: args.connection_window.into(),
        ..TunnelSettings::default()
    };
    // A group the build lacks would fail every outbound connection: refuse
    // to start instead.
    settings
        .key_exchange
        .preferred_by(&quicmesh_core::crypto_provider())?;
    let shared = Arc::new(Shared {
        node: args.node.clone(),
        state: RwLock::new(Arc::new(initial)),
        certs: Arc::new(certs),
        metrics: metrics.clone(),
        server: quicmesh_core::tunnel::server::ServerCtx::new(
            metrics.tunnel.clone(),
            Arc::new(settings.clone()),
        ),
        settings,
        drain_deadline: args.drain_deadline,
        balancer: Arc::default(),
        live: Arc::default(),
        config_ready: match &args.workloads {
            // Loaded above, or ztunnel would not have started.
            Some(_) => Flag::ready(),
            None => Flag::new("no update from the controller yet"),
        },
    });
    let pods = Pods::new(shared.clone());
    let shutdown = CancellationToken::new();
    let enrollment_ready = Flag::new("the enrollment socket is not listening yet");
    let readiness = Arc::new(readiness(
        &args,
        &shared,
        controller.as_ref().map(|c| c.node_identity()),
        workload_api.clone(),
        &enrollment_ready,
    ));
    if let Some(w) = workload_api {
        tokio::spawn(w.run(shutdown.clone()));
    }
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    readiness.register(&mut registry);
    shared.certs.register_expiry(&mut registry);
    quicmesh_core::trace::register_metrics(&mut registry);
    tokio::spawn(
        shared
            .server
            .admission
            .clone()
            .release_memory_after_bursts(),
    );

    // Metrics and health.
    let registry = Arc::new(registry);
    let metrics_l = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding metrics on {}", args.metrics_addr))?;
    let rt = tokio::runtime::Handle::current();
    let (m, reg) = (metrics.clone(), registry.clone());
    tokio::spawn(serve_http(
        metrics_l,
        vec![
            (
                "/metrics",
                handler(move || {
                    m.alive_tasks.set(rt.metrics().num_alive_tasks() as i64);
                    std::future::ready(quicmesh_core::metrics::scrape(&reg))
                }),
            ),
            (
                "/healthz/ready",
                handler(move || std::future::ready(readiness.reply())),
            ),
        ],
        shutdown.clone(),
    ));

    // Admin: the config dump and the SVIDs held, computed on each request.
    let admin_l = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding admin on {}", args.admin_addr))?;
    let (a2, s2, p2, s3) = (args.clone(), shared.clone(), pods.clone(), shared.clone());
    tokio::spawn(serve_http(
        admin_l,
        vec![
            (
                "/config_dump",
                handler(move || {
                    let (a, s, p) = (a2.clone(), s2.clone(), p2.clone());
                    async move { config_dump(&a, &s, &p).await }
                }),
            ),
            ("/logging", quicmesh_core::telemetry::logging_handler()),
            (
                // The SVIDs held (chains, no keys): which CA issued them.
                "/certs",
                handler(move || {
                    let dump = s3.certs.dump();
                    std::future::ready(serde_json::json!(dump))
                }),
            ),
        ],
        shutdown.clone(),
    ));

    match (&args.workloads, controller) {
        (Some(path), _) => {
            tokio::spawn(watch_workloads(
                path.clone(),
                shared.clone(),
                shutdown.clone(),
            ));
        }
        (None, Some(c)) => {
            let node = c.node_identity();
            let (certs, id, stop) = (shared.certs.clone(), node.clone(), shutdown.clone());
            tokio::spawn(async move { certs.keep_renewed(&id, &stop).await });
            tokio::spawn(quicmesh_core::control::stream::follow(
                c,
                shared.certs.clone(),
                node,
                shared.clone(),
            ));
        }
        (None, None) => unreachable!("clap requires one of --workloads and --controller"),
    }
    let enroll = {
        let listener =
            quicmesh_core::enrollment::Listener::bind(&args.enroll_socket, args.enroll_access())
                .with_context(|| {
                    format!(
                        "creating the enrollment socket {}",
                        args.enroll_socket.display()
                    )
                })?;
        // Bound and accepting from here on.
        enrollment_ready.set_ready();
        tokio::spawn(listener.serve(pods.clone(), shutdown.clone()))
    };
    tracing::info!(
        node = %args.node,
        metrics = %args.metrics_addr,
        tls = quicmesh_core::CRYPTO_LIBRARY,
        key_exchange = ?args.tunnel_key_exchange,
        "ztunnel started"
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        r = enroll => { r??; }
    }
    tracing::info!("shutting down");
    shutdown.cancel();
    pods.shutdown().await;
    Ok(())
}

/// ztunnel's readiness conditions:
/// - `config`: the workload file loaded, or the controller's first update
///   applied (later refusals keep the last good config: still ready);
/// - `certificates`: with a controller, the node's own SVID issued and not
///   expired (it authenticates the config stream; pods' SVIDs are per pod
///   and reported at enrollment); with `--svid-source workload-api:`, an
///   answer taken from the Workload API (its SVIDs serve while valid when
///   the agent goes away); with `--svid-dir`, the directory readable; with
///   `--dev-ca-dir`, the CA loaded at start;
/// - `enrollment`: the enrollment socket bound and accepting.
fn readiness(
    args: &Args,
    shared: &Arc<Shared>,
    node_identity: Option<SpiffeId>,
    workload_api: Option<Arc<WorkloadApi>>,
    enrollment: &Flag,
) -> Readiness {
    let certificates: Check = match (workload_api, node_identity, &args.svid_dir) {
        (Some(w), _, _) => {
            let rx = w.subscribe();
            Box::new(move || {
                let st = rx.borrow();
                if st.taken > 0 {
                    return Ok(());
                }
                Err(match &st.last_error {
                    Some(e) => format!("no answer from the Workload API yet; last error: {e}"),
                    None => "no answer from the Workload API yet".into(),
                })
            })
        }
        (None, Some(id), _) => {
            let certs = shared.certs.clone();
            Box::new(move || certs.check_valid(&id, std::time::SystemTime::now()))
        }
        (None, None, Some(dir)) => {
            let dir = dir.clone();
            Box::new(move || {
                std::fs::read_dir(&dir)
                    .map(drop)
                    .map_err(|e| format!("SVID directory {}: {e}", dir.display()))
            })
        }
        (None, None, None) => Box::new(|| Ok(())),
    };
    Readiness::new()
        .with_flag("config", &shared.config_ready)
        .with("certificates", certificates)
        .with_flag("enrollment", enrollment)
}

/// Reloads the workload file when it changes; a bad edit keeps the last good one.
async fn watch_workloads(path: PathBuf, shared: Arc<Shared>, stop: CancellationToken) {
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut seen = mtime(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => return,
        }
        let now = mtime(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match WorkloadFile::load(&path) {
            Ok(f) => {
                shared.set_state(State::from_file(&f));
                shared.metrics.config_updates("ack");
                tracing::info!(workloads = f.workloads.len(), "workload file reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "workload file rejected; keeping the previous one");
                shared.metrics.config_updates("nack");
            }
        }
    }
}

async fn config_dump(args: &Args, shared: &Shared, pods: &Pods) -> serde_json::Value {
    serde_json::json!({
        "node": shared.node,
        "args": args,
        "tunnel": shared.settings,
        "state": &*shared.state(),
        "enrolledPods": pods.dump().await,
    })
}
