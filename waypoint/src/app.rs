//! The waypoint binary's wiring: its SVID from the controller's CA (asked
//! with its own bootstrap token, renewed at half-life), the tunnel server on
//! 15008 presenting it, the config stream (only its namespace, and only the
//! Services sent to it become destinations), metrics and health on 15020
//! (ready while its config, its SVID and its tunnel server are live: not
//! before, nor once draining or if the SVID lapses), the config dump on
//! 15000, and a graceful drain on SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use quicmesh_core::control::client::{ControllerClient, Token};
use quicmesh_core::health::{Flag, Readiness};
use quicmesh_core::identity::certs::{CertManager, SvidSource};
use quicmesh_core::identity::{SharedBundles, SpiffeId, Svid, TrustBundles};
use quicmesh_core::metrics::{handler, serve_http, TunnelMetrics};
use quicmesh_core::tunnel::client::Pool;
use quicmesh_core::tunnel::config::{bind_udp, endpoint, server_config, TunnelSettings};
use quicmesh_core::tunnel::server::{self, ServerCtx};
use tokio_util::sync::CancellationToken;

use crate::config::{Live, Scope};
use crate::proxy::{Server, Waypoint};
use crate::upstream::Upstreams;

/// Command-line flags of the `waypoint` binary.
#[derive(Debug, Clone, clap::Parser, serde::Serialize)]
#[command(
    name = "waypoint",
    about = "quicmesh waypoint: the per-namespace L7 proxy",
    version
)]
pub struct Args {
    /// Namespace of the waypoint (its Gateway and its pods).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// Name of the waypoint's Gateway (class quicmesh-waypoint); its pods
    /// run as the service account of the same name.
    #[arg(long, env = "GATEWAY_NAME")]
    pub gateway: String,
    /// The node the pod runs on (for logs).
    #[arg(long, env = "NODE_NAME", default_value = "")]
    pub node: String,
    /// The controller's gRPC address (CA and config stream): `ip:port` or
    /// `name:port` (e.g. its Service's DNS name).
    #[arg(long)]
    pub controller: quicmesh_core::control::client::ControllerAddr,
    /// The SPIFFE ID the controller must prove.
    #[arg(
        long,
        default_value = "spiffe://cluster.local/ns/quicmesh-system/sa/controller"
    )]
    pub controller_identity: String,
    /// File holding the pod's token for the controller's CA.
    #[arg(long)]
    pub bootstrap_token: PathBuf,
    /// PEM bundle of the trust domain's CA certificates.
    #[arg(long)]
    pub trust_bundle: PathBuf,
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// DNS suffix of Service host names (`<svc>.<ns>.svc.<domain>`).
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Where the tunnel server listens (UDP).
    #[arg(long, default_value = "0.0.0.0:15008")]
    pub tunnel_addr: SocketAddr,
    /// Prometheus metrics and health.
    #[arg(long, default_value = "0.0.0.0:15020")]
    pub metrics_addr: SocketAddr,
    /// Admin endpoint (config dump). Keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin_addr: SocketAddr,
    /// On SIGTERM: how long requests in flight may run on before their
    /// connections are closed.
    #[arg(long, default_value = "5s", value_parser = quicmesh_core::duration::parse)]
    #[serde(with = "quicmesh_core::duration::text")]
    pub drain_deadline: Duration,
    /// Traces: where spans go and which are kept (docs/tracing.md).
    #[command(flatten)]
    pub trace: quicmesh_core::trace::TraceArgs,
}

/// Runs the waypoint until SIGTERM/SIGINT.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let identity = SpiffeId::workload(&args.trust_domain, &args.namespace, &args.gateway)
        .context("--namespace/--gateway do not make a SPIFFE ID")?;
    let tunnel_metrics = TunnelMetrics::new();
    let mut bundles = TrustBundles::new();
    let pem = std::fs::read(&args.trust_bundle)
        .with_context(|| format!("reading {}", args.trust_bundle.display()))?;
    bundles.insert_pem(&args.trust_domain, &pem)?;
    // One set of bundles for the controller client and the tunnels: the
    // CA's answers replace the mesh domain's roots in both.
    let bundles = SharedBundles::new(bundles);
    let token = Token::file(&args.bootstrap_token).map_err(anyhow::Error::msg)?;
    let controller = Arc::new(ControllerClient {
        addr: args.controller.clone(),
        identity: SpiffeId::parse(&args.controller_identity).context("--controller-identity")?,
        bundles: bundles.clone(),
        token,
        node: args.node.clone(),
        tls_metrics: Arc::new(tunnel_metrics.tls.clone()),
    });
    let certs = Arc::new(CertManager::new(
        SvidSource::Controller(controller.clone()),
        bundles.clone(),
    ));
    let scope = Scope {
        namespace: args.namespace.clone(),
        name: args.gateway.clone(),
    };
    let live = Live::new(&args.cluster_domain, Some(scope));
    let settings = TunnelSettings::default();

    // Upstream: tunnels opened as the waypoint's own identity.
    let client_sock = bind_udp(SocketAddr::new(args.tunnel_addr.ip(), 0), &settings)?;
    let client_ep = endpoint(client_sock, None, &settings)?;
    let pool = Pool::new(
        client_ep,
        bundles.clone(),
        settings.clone(),
        tunnel_metrics.clone(),
    );
    let waypoint = Waypoint::new(
        identity.clone(),
        live.directory(),
        Upstreams::new(pool, certs.clone(), identity.clone()),
    );

    // Ready when its config, its SVID and its tunnel server are live.
    let tunnel_ready = Flag::new("not accepting tunnels yet (no SVID installed)");
    let readiness = {
        let (live, certs, id) = (live.clone(), certs.clone(), identity.clone());
        Arc::new(
            Readiness::new()
                .with("config", move || match live.configured() {
                    true => Ok(()),
                    false => Err("no update from the controller yet".into()),
                })
                .with("certificates", move || {
                    certs.check_valid(&id, std::time::SystemTime::now())
                })
                .with_flag("tunnel", &tunnel_ready),
        )
    };

    let mut registry = prometheus_client::registry::Registry::default();
    tunnel_metrics.register(&mut registry);
    waypoint.metrics.register(&mut registry);
    live.register(&mut registry);
    quicmesh_core::trace::register_metrics(&mut registry);
    readiness.register(&mut registry);
    certs.register_expiry(&mut registry);
    let registry = Arc::new(registry);
    let shutdown = CancellationToken::new();

    // Metrics and health.
    let metrics_l = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding metrics on {}", args.metrics_addr))?;
    let reg = registry.clone();
    tokio::spawn(serve_http(
        metrics_l,
        vec![
            (
                "/metrics",
                handler(move || std::future::ready(quicmesh_core::metrics::scrape(&reg))),
            ),
            (
                "/healthz/ready",
                handler(move || std::future::ready(readiness.reply())),
            ),
        ],
        shutdown.clone(),
    ));
    let admin_l = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding admin on {}", args.admin_addr))?;
    let (a2, l3, w3) = (args.clone(), live.clone(), waypoint.clone());
    tokio::spawn(serve_http(
        admin_l,
        vec![
            (
                "/config_dump",
                handler(move || {
                    let v = serde_json::json!({"args": &a2, "config": l3.dump(), "resilience": w3.resilience_dump()});
                    std::future::ready(v)
                }),
            ),
            ("/logging", quicmesh_core::telemetry::logging_handler()),
        ],
        shutdown.clone(),
    ));

    tokio::spawn(quicmesh_core::control::stream::follow(
        controller,
        certs.clone(),
        identity.clone(),
        live.clone(),
    ));

    // The tunnel server: no certificate until the CA issued one (handshakes
    // are refused until then), then the SVID, replaced as it renews.
    let server_sock = bind_udp(args.tunnel_addr, &settings)
        .with_context(|| format!("binding the tunnel on {}", args.tunnel_addr))?;
    let server_ep = endpoint(server_sock, None, &settings)?;
    let make = {
        let (bundles, metrics, settings) =
            (bundles.clone(), tunnel_metrics.clone(), settings.clone());
        move |svid: &Svid| {
            server_config(
                svid,
                bundles.clone(),
                Box::new(|_| true),
                &metrics,
                &settings,
            )
            .map_err(|e| format!("SVID unusable as a server certificate: {e}"))
        }
    };
    {
        let (certs, identity, ep, stop, ready) = (
            certs.clone(),
            identity.clone(),
            server_ep.clone(),
            shutdown.clone(),
            tunnel_ready.clone(),
        );
        tokio::spawn(async move {
            let Some(svid) = first_certificate(&certs, &identity, &ep, &make, &stop).await else {
                return;
            };
            ready.set_ready();
            quicmesh_core::tunnel::certificate::rotate(&certs, &identity, &ep, &make, &stop, svid)
                .await;
        });
    }
    let drain = CancellationToken::new();
    let served = tokio::spawn(server::serve(
        server_ep,
        Arc::new(Server(waypoint.clone())),
        ServerCtx::new(tunnel_metrics.clone(), Arc::new(settings)),
        drain.clone(),
        args.drain_deadline,
    ));
    tracing::info!(
        waypoint = %format!("{}/{}", args.namespace, args.gateway),
        %identity,
        tunnel = %args.tunnel_addr,
        metrics = %args.metrics_addr,
        "waypoint started"
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!(deadline = ?args.drain_deadline, "draining");
    tunnel_ready.set_not_ready("draining");
    waypoint.drain();
    drain.cancel();
    let _ = served.await;
    shutdown.cancel();
    Ok(())
}

/// Asks for the SVID until the CA issues one, then installs it; None if
/// stopped first.
async fn first_certificate(
    certs: &CertManager,
    identity: &SpiffeId,
    endpoint: &quinn::Endpoint,
    make: quicmesh_core::tunnel::certificate::MakeConfig<'_>,
    stop: &CancellationToken,
) -> Option<Arc<Svid>> {
    let mut warned = false;
    loop {
        let attempt = tokio::select! {
            r = certs.svid(identity) => r.map_err(|e| e.to_string()),
            _ = stop.cancelled() => return None,
        };
        match attempt.and_then(|svid| make(&svid).map(|cfg| (svid, cfg))) {
            Ok((svid, cfg)) => {
                endpoint.set_server_config(Some(cfg));
                tracing::info!(%identity, "SVID issued; the tunnel server accepts connections");
                return Some(svid);
            }
            Err(reason) => {
                if !warned {
                    tracing::warn!(%identity, %reason, "no SVID yet: tunnel handshakes are refused until the CA issues one; asking until it does");
                    warned = true;
                }
            }
        }
        // The cert manager paces the CA with its own backoff; within it,
        // this asks again cheaply.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.cancelled() => return None,
        }
    }
}
