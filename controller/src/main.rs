//! The quicmesh controller binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use quicmesh_controller::ca::{self, CaMetrics, CaService, TokenFile};
use quicmesh_controller::model::MtlsMode;
use quicmesh_controller::provision;
use quicmesh_controller::push::{ConfigService, PushMetrics};
use quicmesh_controller::sources::files::{self, FileSource};
use quicmesh_controller::store::Store;
use quicmesh_controller::translate::Mesh;
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::{SpiffeId, TrustBundles};
use quicmesh_core::metrics::{encode, handler, serve_http, TlsMetrics};

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
    /// CA root: `ca.pem` and `ca-key.pem` here; generated and kept on first start.
    #[arg(long)]
    ca_dir: PathBuf,
    /// Default lifetime of issued SVIDs.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    svid_ttl: Duration,
    /// File mode: YAML map of node name to bootstrap token.
    #[arg(long)]
    node_tokens: Option<PathBuf>,
    /// gRPC: CA and config stream (TLS).
    #[arg(long, default_value = "0.0.0.0:15012")]
    grpc_addr: SocketAddr,
    /// Metrics, /status and /config_dump.
    #[arg(long, default_value = "0.0.0.0:15014")]
    metrics_addr: SocketAddr,
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
    /// DNS suffix of Service host names, passed to waypoints.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

/// Kubernetes: a bearer token is a (bound) service-account token, checked
/// with TokenReview: a waypoint's pod acts for its waypoint, any other for
/// the node its pod is bound to.
struct TokenReview(kube::Client, Arc<Store>);

#[tonic::async_trait]
impl ca::Authenticator for TokenReview {
    async fn caller_for_token(&self, token: &str) -> Result<ca::Caller, String> {
        let caller = quicmesh_controller::sources::kube::token_review(&self.0, token)
            .await
            .map_err(|e| format!("TokenReview: {e:#}"))?;
        self.1.with_index(|ix| caller.for_ca(ix))
    }
}

fn main() -> anyhow::Result<()> {
    quicmesh_core::telemetry::init_logging();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// One line per AuthorizationPolicy for /status and the metrics.
#[derive(serde::Serialize)]
struct PolicyReport {
    name: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

fn policy_report(ix: &quicmesh_controller::index::Index) -> Vec<PolicyReport> {
    ix.policies()
        .map(|p| PolicyReport {
            name: p.policy.name.clone(),
            state: match (&p.policy.invalid, p.warnings.is_empty()) {
                (Some(_), _) => "invalid",
                (None, false) => "l7_ignored",
                (None, true) => "valid",
            },
            invalid: p.policy.invalid.clone(),
            warnings: p.warnings.clone(),
        })
        .collect()
}

/// HTTPRoutes (with a Service parent) by state, for the metric.
fn route_states(ix: &quicmesh_controller::index::Index) -> [(&'static str, i64); 3] {
    let mut n = [("accepted", 0), ("unresolved_refs", 0), ("not_accepted", 0)];
    for (_, c) in ix.compiled_routes() {
        if c.parents.is_empty() {
            continue;
        }
        let accepted = c
            .parents
            .iter()
            .any(|(_, cs)| cs.first().is_some_and(|c| c.status));
        let resolved = c.parents.iter().all(|(_, cs)| cs.iter().all(|c| c.status));
        let i = match (accepted, resolved) {
            (true, true) => 0,
            (true, false) => 1,
            (false, _) => 2,
        };
        n[i].1 += 1;
    }
    n
}

/// Each HTTPRoute's status per Service parent, as a Gateway API controller
/// writes it (`status.parents[].conditions`), for /status.
fn route_report(ix: &quicmesh_controller::index::Index) -> Vec<serde_json::Value> {
    quicmesh_controller::status::routes(ix)
        .into_iter()
        .map(|r| {
            let parents: Vec<_> = r
                .parents
                .iter()
                .map(|(parent, conditions)| {
                    serde_json::json!({
                        "parentRef": parent,
                        "controllerName": quicmesh_controller::status::CONTROLLER_NAME,
                        "conditions": conditions,
                    })
                })
                .collect();
            serde_json::json!({"kind": r.kind.api_kind(), "namespace": r.namespace, "name": r.name, "parents": parents})
        })
        .collect()
}

/// Every waypoint with its Gateway status, for /status.
fn waypoint_report(ix: &quicmesh_controller::index::Index) -> Vec<serde_json::Value> {
    quicmesh_controller::waypoint::all(ix)
        .into_iter()
        .map(|w| {
            let conditions = quicmesh_controller::waypoint::conditions(ix, &w);
            serde_json::json!({"namespace": w.namespace, "name": w.name, "implied": w.implied,
                "gatewayClassName": quicmesh_controller::waypoint::WAYPOINT_CLASS,
                "waypointFor": w.waypoint_for, "conditions": conditions})
        })
        .collect()
}

async fn run(args: Args) -> anyhow::Result<()> {
    let ca = Arc::new(Ca::load_or_generate(&args.trust_domain, &args.ca_dir).context("CA root")?);
    let store = Store::with_settings(
        Mesh {
            trust_domain: args.trust_domain.clone(),
            default_mtls: args.default_mtls_mode,
        },
        &args.root_namespace,
    );
    let mut registry = prometheus_client::registry::Registry::default();
    let policy_states = prometheus_client::metrics::family::Family::<
        Vec<(String, String)>,
        prometheus_client::metrics::gauge::Gauge,
    >::default();
    registry.register(
        "quicmesh_controller_authorization_policies",
        "AuthorizationPolicies known, by state (valid, invalid: failing closed, l7_ignored: has L7 parts L4 cannot enforce)",
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
    let auth: Arc<dyn ca::Authenticator> = if kube {
        let client = kube::Client::try_default()
            .await
            .context("Kubernetes client")?;
        tokio::spawn(quicmesh_controller::sources::kube::run(
            client.clone(),
            store.clone(),
        ));
        if !args.no_waypoint_provisioning {
            let settings = provision::Settings {
                image: args.waypoint_image.clone(),
                image_pull_policy: args.waypoint_image_pull_policy.clone(),
                controller: args.waypoint_controller_address.clone(),
                // The identity it serves with (below).
                controller_identity: SpiffeId::workload(
                    &args.trust_domain,
                    "quicmesh-system",
                    "controller",
                )?
                .to_string(),
                trust_domain: args.trust_domain.clone(),
                cluster_domain: args.cluster_domain.clone(),
                ca_pem: ca.cert_pem().to_string(),
            };
            let metrics = provision::kube::ProvisionMetrics::default();
            registry.register(
                "quicmesh_controller_waypoint_provisioning",
                "Waypoint objects applied to the cluster, by kind and result (applied, deleted, error)",
                metrics.clone(),
            );
            tokio::spawn(provision::kube::run(
                client.clone(),
                store.clone(),
                settings,
                metrics,
            ));
        }
        let status_metrics = quicmesh_controller::status::kube::StatusMetrics::default();
        registry.register(
            "quicmesh_controller_status_writes",
            "Gateway and route status written to the API server, by kind and result (written, unchanged, error)",
            status_metrics.clone(),
        );
        tokio::spawn(quicmesh_controller::status::kube::run(
            client.clone(),
            store.clone(),
            status_metrics,
        ));
        Arc::new(TokenReview(client, store.clone()))
    } else {
        let path = args
            .node_tokens
            .as_ref()
            .context("file mode needs --node-tokens")?;
        Arc::new(TokenFile::load(path)?)
    };

    // Our own serving certificate, from our own CA.
    let id = SpiffeId::workload(&args.trust_domain, "quicmesh-system", "controller")?;
    let svid = ca.mint(&id, Duration::from_secs(365 * 86400))?;
    let mut bundles = TrustBundles::new();
    bundles.insert(&args.trust_domain, &[ca.cert_der().clone()])?;
    let tls_metrics = Arc::new(TlsMetrics::default());
    tls_metrics.register(&mut registry);
    let acceptor =
        quicmesh_controller::server::tls_acceptor(&svid, Arc::new(bundles), tls_metrics)?;

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
    let proxies = Arc::new(Mutex::new(BTreeMap::new()));

    let metrics_l = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    let registry = Arc::new(registry);
    let (st, px, st2, st3) = (store.clone(), proxies.clone(), store.clone(), store.clone());
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
                    let report = st3.with_index(policy_report);
                    for state in ["valid", "invalid", "l7_ignored"] {
                        let n = report.iter().filter(|p| p.state == state).count();
                        policy_states
                            .get_or_create(&vec![("state".into(), state.into())])
                            .set(n as i64);
                    }
                    std::future::ready(encode(&registry))
                }),
            ),
            (
                "/status",
                handler(move || {
                    let v = serde_json::json!({
                        "version": st.version(),
                        "objects": st.with_index(|ix| ix.len()),
                        "proxies": &*px.lock().expect("not poisoned"),
                        "authorizationPolicies": st.with_index(policy_report),
                        "httpRoutes": st.with_index(route_report),
                        "waypoints": st.with_index(waypoint_report),
                        "synced": st.is_synced(),
                        "pendingSources": st.pending_sources(),
                    });
                    std::future::ready(serde_json::to_string_pretty(&v).expect("json"))
                }),
            ),
            (
                "/config_dump",
                handler(move || {
                    let r: BTreeMap<String, String> = st2
                        .resources()
                        .into_iter()
                        .map(|(k, v)| (k, format!("{v:?}")))
                        .collect();
                    std::future::ready(serde_json::to_string_pretty(&r).expect("json"))
                }),
            ),
        ],
        tokio_util::sync::CancellationToken::new(),
    ));

    let ca_service = CaService {
        reserved: vec![id.clone()],
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
