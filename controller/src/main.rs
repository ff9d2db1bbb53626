//! The quicmesh controller binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use quicmesh_controller::admin::{
    authentication_report, policy_report, route_report, route_states, traffic_policy_report,
    traffic_policy_targets, waypoint_report,
};
use quicmesh_controller::ca::rotation::{self, CurrentCa};
use quicmesh_controller::ca::{self, CaMetrics, CaService, NodeAgent, TokenFile};
use quicmesh_controller::federation;
use quicmesh_controller::leader::{self, Election};
use quicmesh_controller::model::MtlsMode;
use quicmesh_controller::provision;
use quicmesh_controller::push::{ConfigService, PushMetrics};
use quicmesh_controller::server::OwnCert;
use quicmesh_controller::sources::files::{self, FileSource};
use quicmesh_controller::store::Store;
use quicmesh_controller::translate::Mesh;
use quicmesh_core::health::Readiness;
use quicmesh_core::identity::ca::{Ca, CaPem};
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::metrics::{handler, scrape, serve_http, TlsMetrics};

use quicmesh_core::duration::parse as parse_duration;

fn parse_mtls_mode(s: &str) -> Result<MtlsMode, String> {
    s.parse()
}

#[derive(Debug, Parser)]
#[command(name = "controller", about = "quicmesh control plane", version)]
struct Args {
    /// Where objects come from: `files:DIR` (repeatable; YAML manifests,
    /// watched) or `kube` (the cluster from kubeconfig or in-cluster config).
    #[arg(long = "source", required = true)]
    sources: Vec<String>,
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// The namespace whose AuthorizationPolicies without a selector apply to
    /// the whole mesh, and whose `quicmesh.io/mtls-mode` label is the mesh default.
    #[arg(long, default_value = quicmesh_controller::index::DEFAULT_ROOT_NAMESPACE)]
    root_namespace: String,
    /// mTLS mode of namespaces without the label when the root namespace
    /// has none either: `permissive` or `strict`.
    #[arg(long, default_value = "permissive", value_parser = parse_mtls_mode)]
    default_mtls_mode: MtlsMode,
    /// The CA: `ca.pem` (signing certificate) and `ca-key.pem`, with
    /// `ca-chain.pem` (intermediates up to the root) and `roots.pem` (the
    /// trust bundle) when the signer is an intermediate or the CA rotates
    /// (docs/ca.md); a root is generated and kept on first start. Watched:
    /// a change takes effect without a restart. Required with file
    /// sources; in Kubernetes, without it, the CA is kept in `--ca-secret`.
    #[arg(long)]
    ca_dir: Option<PathBuf>,
    /// Kubernetes: the Secret (in the system namespace) that keeps the CA
    /// (the same keys as the files of `--ca-dir`); created with a new root
    /// when absent; watched.
    #[arg(long, default_value = "quicmesh-ca")]
    ca_secret: String,
    /// How often `--ca-dir` or `--ca-secret` is read again for a rotation.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    ca_reload_interval: Duration,
    /// Kubernetes: the ConfigMap (in the system namespace) the trust
    /// bundle (every root) is published in (key `ca.pem`), for ztunnels'
    /// `--trust-bundle`.
    #[arg(long, default_value = "quicmesh-ca-root")]
    ca_root_configmap: String,
    /// The install namespace: its identities are the control plane's (the
    /// CA issues none of them), and it holds the CA Secret and root ConfigMap.
    #[arg(long, env = "POD_NAMESPACE", default_value = "quicmesh-system")]
    system_namespace: String,
    /// The controller's service account: it serves as
    /// spiffe://<trust domain>/ns/<system namespace>/sa/<this>.
    #[arg(long, default_value = "controller")]
    controller_service_account: String,
    /// Kubernetes: the service account of the ztunnel DaemonSet (in the
    /// system namespace): only its bound tokens act for a node.
    #[arg(long, default_value = "ztunnel")]
    ztunnel_service_account: String,
    /// Lifetime of the controller's own serving certificate (renewed
    /// halfway through).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    controller_cert_ttl: Duration,
    /// Default lifetime of issued SVIDs.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    svid_ttl: Duration,
    /// File mode: YAML map of node name to bootstrap token.
    #[arg(long)]
    node_tokens: Option<PathBuf>,
    /// gRPC: CA and config stream (TLS).
    #[arg(long, default_value = "0.0.0.0:15012")]
    grpc_addr: SocketAddr,
    /// Metrics and /healthz/ready.
    #[arg(long, default_value = "0.0.0.0:15014")]
    metrics_addr: SocketAddr,
    /// /status and /config_dump (keep it on loopback: they show the whole
    /// mesh's config).
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin_addr: SocketAddr,
    /// Kubernetes: do not create waypoint Gateways for labels, nor
    /// Deployments for Gateways (someone else runs them).
    #[arg(long)]
    no_waypoint_provisioning: bool,
    /// Kubernetes: the image waypoint Deployments run.
    #[arg(long, default_value = concat!("ghcr.io/quicmesh/waypoint:", env!("CARGO_PKG_VERSION")))]
    waypoint_image: String,
    #[arg(long, default_value = "IfNotPresent")]
    waypoint_image_pull_policy: String,
    /// Kubernetes: the controller's gRPC address as waypoint pods reach it
    /// (its Service's DNS name).
    #[arg(long, default_value = "quicmesh-controller.quicmesh-system.svc:15012")]
    waypoint_controller_address: String,
    /// Kubernetes: elect one replica (on a coordination.k8s.io Lease in the
    /// system namespace) to write to the API server; all serve proxies.
    #[arg(long)]
    leader_elect: bool,
    #[arg(long, default_value = "quicmesh-controller")]
    leader_election_lease: String,
    /// This replica's name in the Lease (the pod's name).
    #[arg(long, env = "POD_NAME", default_value = "controller")]
    pod_name: String,
    /// DNS suffix of Service host names, passed to waypoints.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The SPIFFE bundle endpoint: our trust bundle for federated meshes
    /// (`GET /`, HTTPS, public, unauthenticated).
    #[arg(long, default_value = "0.0.0.0:8443")]
    bundle_endpoint_addr: SocketAddr,
    /// Do not serve the SPIFFE bundle endpoint.
    #[arg(long)]
    no_bundle_endpoint: bool,
    /// `https_spiffe` (present the controller's own SVID) or `https_web`
    /// (present --bundle-endpoint-cert/--bundle-endpoint-key).
    #[arg(long, default_value = "https_spiffe", value_parser = ["https_spiffe", "https_web"])]
    bundle_endpoint_profile: String,
    /// https_web: the serving certificate chain (PEM), re-read when it changes.
    #[arg(long)]
    bundle_endpoint_cert: Option<PathBuf>,
    /// https_web: its private key (PEM), re-read when it changes.
    #[arg(long)]
    bundle_endpoint_key: Option<PathBuf>,
    /// `spiffe_refresh_hint` of the document we serve.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    bundle_refresh_hint: Duration,
    /// Roots (PEM) that authenticate peers' https_web bundle endpoints;
    /// without it, the system's roots.
    #[arg(long)]
    federation_web_roots: Option<PathBuf>,
    /// Traces: where spans go and which are kept (docs/tracing.md).
    #[command(flatten)]
    trace: quicmesh_core::trace::TraceArgs,
}

/// `quicmesh_controller_leader`: 1 while this replica writes to the API server.
fn leading_gauge(
    registry: &mut prometheus_client::registry::Registry,
    leading: tokio::sync::watch::Receiver<bool>,
) {
    let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    registry.register(
        "quicmesh_controller_leader",
        "1 while this replica holds the leader Lease (it alone writes to the API server)",
        gauge.clone(),
    );
    let mut rx = leading;
    tokio::spawn(async move {
        loop {
            gauge.set(i64::from(*rx.borrow_and_update()));
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
}

fn main() -> anyhow::Result<()> {
    quicmesh_core::install_crypto_provider();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async {
            let telemetry = quicmesh_core::telemetry::init("quicmesh-controller", &args.trace)?;
            let r = run(args).await;
            telemetry.shutdown().await;
            r
        })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::with_settings(
        Mesh {
            trust_domain: args.trust_domain.clone(),
            default_mtls: args.default_mtls_mode,
        },
        &args.root_namespace,
    );
    let mut registry = prometheus_client::registry::Registry::default();
    quicmesh_core::trace::register_metrics(&mut registry);
    let policy_states = prometheus_client::metrics::family::Family::<
        Vec<(String, String)>,
        prometheus_client::metrics::gauge::Gauge,
    >::default();
    registry.register(
        "quicmesh_controller_authorization_policies",
        "AuthorizationPolicies known, by state (valid, invalid: failing closed, l7_at_waypoint: has L7 parts, decided by waypoints and failing closed at ztunnels)",
        policy_states.clone(),
    );

    let mut dirs = Vec::new();
    let mut kube = false;
    for s in &args.sources {
        match s.split_once(':') {
            Some(("files", dir)) => dirs.push(PathBuf::from(dir)),
            None if s == "kube" => kube = true,
            _ => bail!("unknown source {s:?}: use files:DIR or kube"),
        }
    }
    if !dirs.is_empty() {
        let src = FileSource::new(dirs.clone());
        registry.register(
            "quicmesh_controller_manifest_errors",
            "Manifest documents rejected",
            src.errors.clone(),
        );
        tokio::spawn(files::run(src, store.clone(), Duration::from_millis(500)));
    }
    let client = match kube {
        true => Some(
            kube::Client::try_default()
                .await
                .context("Kubernetes client")?,
        ),
        false => None,
    };
    let ca = match (&args.ca_dir, &client) {
        (Some(dir), _) => Ca::load_or_generate(&args.trust_domain, dir).context("CA root")?,
        (None, Some(client)) => quicmesh_controller::ca::kube::load_or_create(
            client,
            &args.system_namespace,
            &args.ca_secret,
            &args.trust_domain,
        )
        .await
        .context("CA root")?,
        (None, None) => bail!("file sources need --ca-dir"),
    };
    // Every proxy is pushed the roots of our own trust domain, again
    // whenever the CA changes.
    let ca = Arc::new(CurrentCa::new(ca, store.clone(), args.svid_ttl).context("CA")?);
    ca.metrics.register(&mut registry);
    match (&args.ca_dir, &client) {
        (Some(dir), _) => {
            let dir = dir.clone();
            tokio::spawn(rotation::follow(
                ca.clone(),
                dir.display().to_string(),
                args.ca_reload_interval,
                move || {
                    let dir = dir.clone();
                    async move { Ok(CaPem::read(&dir)?) }
                },
            ));
        }
        (None, Some(client)) => {
            let (c, ns, name) = (
                client.clone(),
                args.system_namespace.clone(),
                args.ca_secret.clone(),
            );
            tokio::spawn(rotation::follow(
                ca.clone(),
                format!("Secret {ns}/{name}"),
                args.ca_reload_interval,
                move || {
                    let (c, ns, name) = (c.clone(), ns.clone(), name.clone());
                    async move { quicmesh_controller::ca::kube::read_secret(&c, &ns, &name).await }
                },
            ));
        }
        (None, None) => unreachable!("refused above"),
    }
    // Our own identity, which no caller of the CA can obtain.
    let id = SpiffeId::workload(
        &args.trust_domain,
        &args.system_namespace,
        &args.controller_service_account,
    )
    .context("--system-namespace / --controller-service-account")?;
    let auth: Arc<dyn ca::Authenticator> = if let Some(client) = &client {
        tokio::spawn(quicmesh_controller::sources::kube::run(
            client.clone(),
            store.clone(),
        ));
        // What writes to the API server: run by the leader only when
        // replicas elect one.
        let settings = (!args.no_waypoint_provisioning).then(|| provision::Settings {
            image: args.waypoint_image.clone(),
            image_pull_policy: args.waypoint_image_pull_policy.clone(),
            controller: args.waypoint_controller_address.clone(),
            controller_identity: id.to_string(),
            trust_domain: args.trust_domain.clone(),
            cluster_domain: args.cluster_domain.clone(),
            ca_pem: ca.roots_pem(),
            env: provision::inherited_env(std::env::vars()),
        });
        let provision_metrics = provision::kube::ProvisionMetrics::default();
        registry.register(
            "quicmesh_controller_waypoint_provisioning",
            "Waypoint objects applied to the cluster, by kind and result (applied, deleted, error)",
            provision_metrics.clone(),
        );
        let status_metrics = quicmesh_controller::status::kube::StatusMetrics::default();
        registry.register(
            "quicmesh_controller_status_writes",
            "Gateway and route status written to the API server, by kind and result (written, unchanged, error)",
            status_metrics.clone(),
        );
        let (c, st, ns, cm, root) = (
            client.clone(),
            store.clone(),
            args.system_namespace.clone(),
            args.ca_root_configmap.clone(),
            ca.clone(),
        );
        let writers = move || {
            let mut tasks = vec![
                tokio::spawn(quicmesh_controller::ca::kube::keep_root_published(
                    c.clone(),
                    ns.clone(),
                    cm.clone(),
                    root.clone(),
                )),
                tokio::spawn(quicmesh_controller::status::kube::run(
                    c.clone(),
                    st.clone(),
                    status_metrics.clone(),
                )),
            ];
            if let Some(settings) = &settings {
                tasks.push(tokio::spawn(provision::kube::run(
                    c.clone(),
                    st.clone(),
                    settings.clone(),
                    provision_metrics.clone(),
                )));
            }
            tasks
        };
        if args.leader_elect {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let election = Election {
                namespace: args.system_namespace.clone(),
                name: args.leader_election_lease.clone(),
                identity: args.pod_name.clone(),
                lease_duration: Duration::from_secs(15),
                retry: Duration::from_secs(3),
            };
            leading_gauge(&mut registry, rx.clone());
            tokio::spawn(election.run(client.clone(), tx));
            tokio::spawn(leader::while_leading(rx, writers));
        } else {
            writers();
        }
        Arc::new(ca::kube::TokenReviewer {
            client: client.clone(),
            store: store.clone(),
            agent: NodeAgent {
                namespace: args.system_namespace.clone(),
                service_account: args.ztunnel_service_account.clone(),
            },
        })
    } else {
        let path = args
            .node_tokens
            .as_ref()
            .context("file mode needs --node-tokens")?;
        Arc::new(TokenFile::load(path)?)
    };

    // Our own serving certificate, from our own CA, short-lived and renewed.
    let own_cert = Arc::new(OwnCert::new(
        ca.clone(),
        id.clone(),
        args.controller_cert_ttl,
    )?);
    tokio::spawn(own_cert.clone().renew());

    // Federation: peers' bundles fetched and pushed; ours served.
    let web_roots = match &args.federation_web_roots {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            federation::fetch::web_roots_from_pem(&pem)
                .with_context(|| format!("--federation-web-roots {}", path.display()))?
        }
        None => federation::fetch::system_web_roots(),
    };
    let fetch_metrics = federation::fetch::Metrics::default();
    fetch_metrics.register(&mut registry);
    tokio::spawn(federation::fetch::run(
        store.clone(),
        federation::fetch::Settings::new(web_roots),
        fetch_metrics,
    ));
    if !args.no_bundle_endpoint {
        let profile = match args.bundle_endpoint_profile.as_str() {
            "https_web" => {
                let (Some(cert), Some(key)) =
                    (&args.bundle_endpoint_cert, &args.bundle_endpoint_key)
                else {
                    bail!("--bundle-endpoint-profile=https_web needs --bundle-endpoint-cert and --bundle-endpoint-key");
                };
                federation::endpoint::Profile::HttpsWeb(Arc::new(
                    federation::endpoint::FileCert::load(cert.clone(), key.clone())
                        .context("bundle endpoint certificate")?,
                ))
            }
            _ => federation::endpoint::Profile::HttpsSpiffe(own_cert.clone()),
        };
        let endpoint_metrics = federation::endpoint::Metrics::default();
        registry.register(
            "quicmesh_controller_bundle_endpoint_requests",
            "Requests to the SPIFFE bundle endpoint, by result (served, not_found, method_not_allowed, body_refused, unavailable, busy, tls_error, bad_request, timeout)",
            endpoint_metrics.clone(),
        );
        let listener = tokio::net::TcpListener::bind(args.bundle_endpoint_addr)
            .await
            .with_context(|| {
                format!(
                    "binding the bundle endpoint on {}",
                    args.bundle_endpoint_addr
                )
            })?;
        tokio::spawn(federation::endpoint::serve(
            listener,
            federation::endpoint::tls_config(profile)?,
            Arc::new(federation::endpoint::Document::new(
                store.clone(),
                args.bundle_refresh_hint,
            )),
            federation::endpoint::Limits::default(),
            endpoint_metrics,
        ));
    }
    // Clients are verified against the published roots, as they change.
    let tls_metrics = Arc::new(TlsMetrics::default());
    tls_metrics.register(&mut registry);
    let acceptor = quicmesh_controller::server::tls_acceptor(own_cert, ca.bundles(), tls_metrics)?;

    let ca_metrics = Arc::new(CaMetrics::default());
    registry.register(
        "quicmesh_ca_requests",
        "CSRs by result",
        ca_metrics.requests.clone(),
    );
    let push_metrics = Arc::new(PushMetrics::default());
    registry.register(
        "quicmesh_config_updates_sent",
        "Config updates sent, by node",
        push_metrics.updates_sent.clone(),
    );
    registry.register(
        "quicmesh_config_nacks",
        "Config updates rejected by proxies, by node",
        push_metrics.nacks.clone(),
    );
    registry.register(
        "quicmesh_config_refused_subscriptions",
        "Config stream subscriptions refused (no or wrong certificate)",
        push_metrics.refused.clone(),
    );
    registry.register(
        "quicmesh_config_refused_reports",
        "Proxy reports on the config stream refused (too many, too large, or from a node proxy)",
        push_metrics.refused_reports.clone(),
    );
    registry.register(
        "quicmesh_config_push_duration_seconds",
        "From a config update sent to a proxy to its ACK or NACK, by kind of proxy (ztunnel, waypoint)",
        push_metrics.push_durations.clone(),
    );
    registry.register(
        "quicmesh_config_unanswered_updates",
        "Config updates sent and not yet ACKed or NACKed, all proxies together",
        push_metrics.unanswered.clone(),
    );
    registry.register(
        "quicmesh_config_subscribers",
        "Proxies subscribed now",
        push_metrics.subscribers.clone(),
    );
    registry.register(
        "quicmesh_controller_sources_synced",
        "1 once every source has given its first full view (config is held from proxies until then)",
        store.sources_synced_gauge(),
    );
    let route_gauge = prometheus_client::metrics::family::Family::<
        Vec<(String, String)>,
        prometheus_client::metrics::gauge::Gauge,
    >::default();
    registry.register(
        "quicmesh_controller_http_routes",
        "HTTPRoutes with Service parents by state: accepted (every backend resolves), unresolved_refs (accepted, some backends answered 500), not_accepted",
        route_gauge.clone(),
    );
    let traffic_gauge = prometheus_client::metrics::family::Family::<
        Vec<(String, String)>,
        prometheus_client::metrics::gauge::Gauge,
    >::default();
    registry.register(
        "quicmesh_controller_traffic_policy_targets",
        "TrafficPolicy targets by the reason of their Accepted condition: Accepted, Invalid, TargetNotFound, Conflicted (only Accepted ones apply)",
        traffic_gauge.clone(),
    );
    let proxies = Arc::new(Mutex::new(BTreeMap::new()));

    let metrics_l = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding metrics on {}", args.metrics_addr))?;
    let admin_l = tokio::net::TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding admin on {}", args.admin_addr))?;
    // Serving config needs every source's first full view.
    let synced = store.clone();
    let ready = Arc::new(Readiness::new().with("sources", move || {
        let pending = synced.pending_sources();
        match pending.is_empty() {
            true => Ok(()),
            false => Err(format!("not synced yet: {}", pending.join(", "))),
        }
    }));
    ready.register(&mut registry);
    let registry = Arc::new(registry);
    let (st, px, st2, st3) = (store.clone(), proxies.clone(), store.clone(), store.clone());
    let own_td = args.trust_domain.clone();
    let ca_status = ca.clone();
    tokio::spawn(serve_http(
        metrics_l,
        vec![
            (
                "/metrics",
                handler(move || {
                    for (state, n) in st3.with_index(route_states) {
                        route_gauge
                            .get_or_create(&vec![("state".into(), state.into())])
                            .set(n);
                    }
                    for (reason, n) in st3.with_index(traffic_policy_targets) {
                        traffic_gauge
                            .get_or_create(&vec![("reason".into(), reason.into())])
                            .set(n);
                    }
                    let report = st3.with_index(policy_report);
                    for state in ["valid", "invalid", "l7_at_waypoint"] {
                        let n = report.iter().filter(|p| p.state == state).count();
                        policy_states
                            .get_or_create(&vec![("state".into(), state.into())])
                            .set(n as i64);
                    }
                    std::future::ready(scrape(&registry))
                }),
            ),
            (
                "/healthz/ready",
                handler(move || std::future::ready(ready.reply())),
            ),
        ],
        tokio_util::sync::CancellationToken::new(),
    ));
    tokio::spawn(serve_http(
        admin_l,
        vec![
            (
                "/status",
                handler(move || {
                    let v = serde_json::json!({
                        "version": st.version(),
                        "objects": st.with_index(|ix| ix.len()),
                        "proxies": &*px.lock().expect("not poisoned"),
                        "authorizationPolicies": st.with_index(policy_report),
                        "httpRoutes": st.with_index(route_report),
                        "requestAuthentications": st.with_index(authentication_report),
                        "trafficPolicies": st.with_index(traffic_policy_report),
                        "waypoints": st.with_index(waypoint_report),
                        "federations": st.with_index(|ix| federation::report(ix, &own_td)),
                        "synced": st.is_synced(),
                        "pendingSources": st.pending_sources(),
                        "ca": ca_status.status(),
                    });
                    std::future::ready(v)
                }),
            ),
            ("/logging", quicmesh_core::telemetry::logging_handler()),
            (
                "/config_dump",
                handler(move || {
                    // Each resource as the protobuf JSON mapping of what
                    // proxies are sent.
                    let r: BTreeMap<String, serde_json::Value> = st2
                        .resources()
                        .into_iter()
                        .map(|(k, v)| {
                            let v = serde_json::to_value(&v)
                                .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}));
                            (k, v)
                        })
                        .collect();
                    std::future::ready(serde_json::json!(r))
                }),
            ),
        ],
        tokio_util::sync::CancellationToken::new(),
    ));

    let ca_service = CaService {
        system_namespace: args.system_namespace.clone(),
        ca,
        store: store.clone(),
        auth,
        default_ttl: args.svid_ttl,
        max_ttl: args.svid_ttl.max(Duration::from_secs(86400)),
        metrics: ca_metrics,
    };
    let config = ConfigService {
        store,
        metrics: push_metrics,
        proxies,
    };
    tracing::info!(trust_domain = %args.trust_domain, sources = ?args.sources, "controller started");
    quicmesh_controller::server::serve(args.grpc_addr, acceptor, ca_service, config).await
}
