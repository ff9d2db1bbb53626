//! Fetching peers' bundles: one task per federation in force
//! ([`super::in_force`]), started, stopped and restarted as the objects
//! change ([`run`]).
//!
//! A fetch is one HTTPS GET of the endpoint URL, HTTP/1.1, bounded: TCP
//! connect within [`Settings::connect_timeout`], the whole fetch within
//! [`Settings::total_timeout`], at most [`bundle_doc::MAX_DOCUMENT_BYTES`]
//! of body; a redirect is not followed (an error naming the Location: the
//! configured URL is the one trusted). The server is authenticated by the
//! profile: `https_web` with the Web PKI roots ([`Settings::web_roots`])
//! and the URL's host; `https_spiffe` with the peer trust domain's current
//! bundle (the initial one, then the last fetched, SPIFFE Federation
//! §5.2.2.4) through [`verify_peer_chain`], and the server's SPIFFE ID
//! must be the endpoint's. The document must parse
//! ([`bundle_doc::parse`]) and its roots must not name another trust
//! domain.
//!
//! Success publishes the roots ([`crate::trust::publish`]) and waits for
//! the document's refresh hint, clamped to [`Settings::min_refresh`] ..
//! [`Settings::max_refresh`] ([`Settings::default_refresh`] when absent).
//! Failure keeps what is published, logs the reason, and retries after a
//! backoff doubling from [`Settings::retry_first`] to at most the refresh
//! interval. Both are counted (`quicmesh_controller_federation_fetches_total`)
//! and recorded as the federation's [`FederationState`] (its status).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use quicmesh_core::identity::bundle_doc::{self, BundleDocError, SpiffeBundle};
use quicmesh_core::identity::svid::cert_info;
use quicmesh_core::identity::verify::{verify_peer_chain, Side};
use quicmesh_core::identity::{SpiffeId, TrustBundles};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::model::{
    EndpointProfile, FederationSpec, FederationState, FetchOutcome, Key, Kind, Object,
    PublishedBundle,
};
use crate::store::Store;

/// How fetches are made and paced.
#[derive(Clone)]
pub struct Settings {
    /// Roots that authenticate `https_web` endpoints.
    pub web_roots: Arc<rustls::RootCertStore>,
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    /// When a document has no refresh hint (the spec suggests 5 minutes).
    pub default_refresh: Duration,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    /// The first retry after a failure; doubled up to the refresh interval.
    pub retry_first: Duration,
}

impl Settings {
    pub fn new(web_roots: rustls::RootCertStore) -> Self {
        Settings {
            web_roots: Arc::new(web_roots),
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(15),
            default_refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(86400),
            retry_first: Duration::from_secs(2),
        }
    }

    /// When to fetch again after a success.
    pub fn refresh_after(&self, hint: Option<Duration>) -> Duration {
        hint.unwrap_or(self.default_refresh)
            .clamp(self.min_refresh, self.max_refresh)
    }

    /// When to retry after `failures` failures in a row (at least 1).
    pub fn retry_after(&self, failures: u32, refresh: Duration) -> Duration {
        let doubled = self
            .retry_first
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        doubled.min(refresh.max(self.retry_first))
    }
}

/// Reads a PEM file of Web PKI roots (`--federation-web-roots`).
pub fn web_roots_from_pem(pem: &[u8]) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificates");
    Ok(roots)
}

/// The system's roots (rustls-native-certs), for `https_web` endpoints
/// when no `--federation-web-roots` is given.
pub fn system_web_roots() -> rustls::RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a system root certificate could not be read");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::info!(
        added,
        ignored,
        "system roots loaded for https_web federation endpoints"
    );
    roots
}

/// `quicmesh_controller_federation_fetches_total{trust_domain, result}`
/// and `quicmesh_controller_federation_last_success_timestamp_seconds{trust_domain}`.
#[derive(Clone, Default)]
pub struct Metrics {
    pub fetches: Family<Vec<(String, String)>, Counter>,
    pub last_success: Family<Vec<(String, String)>, Gauge>,
}

impl Metrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "quicmesh_controller_federation_fetches",
            "Fetches of federated trust domains' bundles, by trust domain and result (success, connect_error, timeout, tls_error, http_status, redirect, http_error, too_large, malformed, bad_key, no_roots, too_many_keys, wrong_trust_domain)",
            self.fetches.clone(),
        );
        registry.register(
            "quicmesh_controller_federation_last_success_timestamp_seconds",
            "When each federated trust domain's bundle was last fetched successfully (seconds since the epoch)",
            self.last_success.clone(),
        );
    }

    fn count(&self, td: &str, result: &str) {
        self.fetches
            .get_or_create(&vec![
                ("trust_domain".into(), td.into()),
                ("result".into(), result.into()),
            ])
            .inc();
    }
}

/// Why a fetch failed. [`FetchError::label`] is the metric label,
/// [`FetchError::reason`] the condition's reason.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("connecting to {addr}: {error}")]
    Connect { addr: String, error: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP {0} from the bundle endpoint")]
    Status(u16),
    #[error("HTTP {status} redirect to {location:?}: not followed (the configured URL is the one trusted)")]
    Redirect { status: u16, location: String },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("the document is longer than {} bytes", bundle_doc::MAX_DOCUMENT_BYTES)]
    TooLarge,
    #[error("bundle document refused: {0}")]
    Document(#[from] BundleDocError),
    #[error("{0}")]
    WrongTrustDomain(String),
}

impl FetchError {
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Connect { .. } => "connect_error",
            FetchError::Timeout(_) => "timeout",
            FetchError::Tls(_) => "tls_error",
            FetchError::Status(_) => "http_status",
            FetchError::Redirect { .. } => "redirect",
            FetchError::Http(_) => "http_error",
            FetchError::TooLarge => "too_large",
            FetchError::Document(e) => e.label(),
            FetchError::WrongTrustDomain(_) => "wrong_trust_domain",
        }
    }
}

/// The `Fetched` condition's reason for a metric label.
pub fn reason_of(label: &str) -> &'static str {
    match label {
        "connect_error" => "Unreachable",
        "timeout" => "Timeout",
        "tls_error" => "EndpointNotAuthenticated",
        "http_status" | "redirect" | "http_error" => "BadResponse",
        "wrong_trust_domain" => "WrongTrustDomain",
        _ => "InvalidBundle",
    }
}

/// Refuses roots that name (by a SPIFFE ID URI SAN) another trust domain
/// than `trust_domain`: a document for the wrong trust domain. Roots
/// without a SPIFFE ID are allowed (X509-SVID §6 does not require one).
pub fn roots_of_trust_domain(
    roots: &[CertificateDer<'_>],
    trust_domain: &str,
) -> Result<(), String> {
    for (i, r) in roots.iter().enumerate() {
        if let Ok(info) = cert_info(r) {
            if info.id.trust_domain() != trust_domain {
                return Err(format!(
                    "root {i} is the CA of {}, not of {trust_domain}",
                    info.id.trust_domain()
                ));
            }
        }
    }
    Ok(())
}

/// Verifies an `https_spiffe` endpoint: an X.509 SVID of `expected`
/// chaining to `bundles` (the peer trust domain's current bundle only),
/// with the refusal kept for the fetch's error.
#[derive(Debug)]
struct EndpointVerifier {
    bundles: TrustBundles,
    expected: SpiffeId,
    provider: Arc<CryptoProvider>,
    refusal: Mutex<Option<String>>,
}

impl ServerCertVerifier for EndpointVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refuse = |why: String, e: rustls::CertificateError| {
            *self.refusal.lock().expect("not poisoned") = Some(why);
            rustls::Error::InvalidCertificate(e)
        };
        let got = verify_peer_chain(
            &self.bundles,
            end_entity,
            intermediates,
            now,
            Side::Client,
            &self.provider.signature_verification_algorithms,
        )
        .map_err(|r| refuse(r.to_string(), rustls::CertificateError::BadEncoding))?;
        if got != self.expected {
            return Err(refuse(
                format!("the endpoint is {got}, expected {}", self.expected),
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One fetch of `spec`'s endpoint; `current`: the peer's roots in force
/// (what authenticates an `https_spiffe` endpoint).
pub async fn fetch_once(
    spec: &FederationSpec,
    current: &[CertificateDer<'static>],
    settings: &Settings,
) -> Result<SpiffeBundle, FetchError> {
    match tokio::time::timeout(settings.total_timeout, fetch_inner(spec, current, settings)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(settings.total_timeout)),
    }
}

async fn fetch_inner(
    spec: &FederationSpec,
    current: &[CertificateDer<'static>],
    settings: &Settings,
) -> Result<SpiffeBundle, FetchError> {
    let uri: http::Uri = spec
        .url
        .parse()
        .map_err(|e| FetchError::Http(format!("{e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| FetchError::Http("no host".into()))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = authority.port_u16().unwrap_or(443);
    let provider = quicmesh_core::crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Tls(e.to_string()))?;
    let verifier = match &spec.profile {
        EndpointProfile::HttpsWeb => None,
        EndpointProfile::HttpsSpiffe { endpoint_id } => {
            let mut bundles = TrustBundles::new();
            bundles
                .insert(&spec.trust_domain, current)
                .map_err(|e| FetchError::Tls(format!("the current bundle: {e}")))?;
            Some(Arc::new(EndpointVerifier {
                bundles,
                expected: SpiffeId::parse(endpoint_id)
                    .map_err(|e| FetchError::Tls(e.to_string()))?,
                provider,
                refusal: Mutex::new(None),
            }))
        }
    };
    let mut config = match &verifier {
        None => builder
            .with_root_certificates(settings.web_roots.clone())
            .with_no_client_auth(),
        Some(v) => builder
            .dangerous()
            .with_custom_certificate_verifier(v.clone())
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = format!("{host}:{port}");
    let tcp = match tokio::time::timeout(
        settings.connect_timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Err(_) => return Err(FetchError::Timeout(settings.connect_timeout)),
        Ok(Err(e)) => {
            return Err(FetchError::Connect {
                addr,
                error: e.to_string(),
            })
        }
        Ok(Ok(s)) => s,
    };
    let name = ServerName::try_from(host.clone())
        .map_err(|e| FetchError::Tls(format!("{host:?} is not a server name: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let why = verifier
                .as_ref()
                .and_then(|v| v.refusal.lock().expect("not poisoned").take());
            FetchError::Tls(match why {
                Some(w) => format!("endpoint certificate refused: {w}"),
                None => e.to_string(),
            })
        })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| FetchError::Http(e.to_string()))?;
    // Ends with the fetch (the outer timeout drops it).
    let driver = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = http::Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("quicmesh-controller/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let result = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let status = resp.status();
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            return Err(FetchError::Redirect {
                status: status.as_u16(),
                location,
            });
        }
        if status != http::StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }
        let body = Limited::new(resp.into_body(), bundle_doc::MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => FetchError::TooLarge,
                Err(e) => FetchError::Http(e.to_string()),
            })?
            .to_bytes();
        let bundle = bundle_doc::parse(&body)?;
        roots_of_trust_domain(&bundle.roots, &spec.trust_domain)
            .map_err(FetchError::WrongTrustDomain)?;
        Ok(bundle)
    }
    .await;
    driver.abort();
    result
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn set_state(store: &Store, state: FederationState) {
    store.apply(|ix| ix.upsert(Object::FederationState(state)));
}

/// The fetch loop of one federation, for ever (aborted by [`run`]).
/// `start`: the roots in force when it starts (see [`run`]).
async fn federate(
    store: Arc<Store>,
    name: String,
    spec: FederationSpec,
    start: Option<(Vec<CertificateDer<'static>>, PublishedBundle)>,
    settings: Settings,
    metrics: Metrics,
) {
    let td = spec.trust_domain.clone();
    let mut state = FederationState {
        name: name.clone(),
        trust_domain: td.clone(),
        bundle: None,
        last_fetch: None,
        failures: 0,
    };
    let mut current: Vec<CertificateDer<'static>> = Vec::new();
    if let Some((roots, published)) = start {
        if published.origin == "initial" {
            crate::trust::publish(&store, &td, &roots, published.sequence.unwrap_or(0));
            tracing::info!(federation = %name, trust_domain = %td, roots = roots.len(), "initial trust bundle pushed to proxies");
        }
        current = roots;
        state.bundle = Some(published);
    }
    set_state(&store, state.clone());
    let mut refresh = settings
        .default_refresh
        .clamp(settings.min_refresh, settings.max_refresh);
    loop {
        let wait = match fetch_once(&spec, &current, &settings).await {
            Ok(b) => {
                let seq = b.sequence;
                let changed = crate::trust::publish(&store, &td, &b.roots, seq.unwrap_or(0));
                if changed {
                    tracing::info!(federation = %name, trust_domain = %td, url = %spec.url, roots = b.roots.len(), sequence = ?seq, "federated trust bundle fetched and pushed to proxies");
                }
                metrics.count(&td, "success");
                metrics
                    .last_success
                    .get_or_create(&vec![("trust_domain".into(), td.clone())])
                    .set(unix_now() as i64);
                refresh = settings.refresh_after(b.refresh_hint);
                state.bundle = Some(PublishedBundle {
                    origin: "fetched",
                    roots: b.roots.len(),
                    sequence: seq,
                    fetched_at: unix_now(),
                });
                state.last_fetch = Some(FetchOutcome {
                    result: "success",
                    message: format!(
                        "{} roots (sequence {}) fetched from {}; next fetch in {}s",
                        b.roots.len(),
                        seq.map_or("none".to_string(), |s| s.to_string()),
                        spec.url,
                        refresh.as_secs()
                    ),
                });
                state.failures = 0;
                current = b.roots;
                refresh
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let after = settings.retry_after(state.failures, refresh);
                tracing::warn!(federation = %name, trust_domain = %td, url = %spec.url, result = e.label(), error = %e, failures = state.failures, retry_in_ms = after.as_millis() as u64, "could not fetch a federated trust bundle; the last good one is kept");
                metrics.count(&td, e.label());
                state.last_fetch = Some(FetchOutcome {
                    result: e.label(),
                    message: e.to_string(),
                });
                after
            }
        };
        set_state(&store, state.clone());
        tokio::time::sleep(wait).await;
    }
}

struct Running {
    spec: FederationSpec,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the fetch tasks of the federations in force until the store is
/// gone: a new federation starts one; a changed spec restarts it (keeping
/// the roots in force when neither its trust domain nor its initial bundle
/// changed, else from its initial bundle); a federation deleted, invalid
/// or conflicted stops, and its trust domain's bundle is withdrawn.
pub async fn run(store: Arc<Store>, settings: Settings, metrics: Metrics) {
    let mut changes = store.object_changes();
    let own = store.trust_domain().to_string();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    loop {
        let wanted = store.with_index(|ix| super::in_force(ix, &own));
        let stale: Vec<String> = running
            .iter()
            .filter(|(n, r)| wanted.get(*n) != Some(&r.spec))
            .map(|(n, _)| n.clone())
            .collect();
        for n in stale {
            let Some(old) = running.remove(&n) else {
                continue;
            };
            old.task.abort();
            let next = wanted.get(&n);
            let keeps = next.is_some_and(|s| s.trust_domain == old.spec.trust_domain);
            if !keeps {
                crate::trust::withdraw(&store, &old.spec.trust_domain);
                metrics.last_success.remove(&vec![(
                    "trust_domain".into(),
                    old.spec.trust_domain.clone(),
                )]);
                tracing::info!(federation = %n, trust_domain = %old.spec.trust_domain, "federation ended: its trust bundle is withdrawn from proxies");
            }
            if next.is_none() {
                store.apply(|ix| {
                    ix.delete(&Key {
                        kind: Kind::FederationState,
                        namespace: String::new(),
                        name: n.clone(),
                    })
                });
            }
            // Restarted below, with what it had if it keeps it.
            if let Some(spec) = next.filter(|_| keeps) {
                let start = if spec.initial == old.spec.initial {
                    store.with_index(|ix| {
                        let b = ix.trust_bundle(&spec.trust_domain)?;
                        let st = ix.federation_state(&n)?.bundle.clone()?;
                        Some((
                            b.roots
                                .iter()
                                .map(|r| CertificateDer::from(r.clone()))
                                .collect(),
                            st,
                        ))
                    })
                } else {
                    initial(spec)
                };
                running.insert(
                    n.clone(),
                    spawn(&store, &n, spec, start, &settings, &metrics),
                );
            }
        }
        for (n, spec) in &wanted {
            if !running.contains_key(n) {
                let r = spawn(&store, n, spec, initial(spec), &settings, &metrics);
                running.insert(n.clone(), r);
            }
        }
        if changes.changed().await.is_err() {
            break;
        }
    }
    for (_, r) in running {
        r.task.abort();
    }
}

fn initial(spec: &FederationSpec) -> Option<(Vec<CertificateDer<'static>>, PublishedBundle)> {
    let (roots, sequence) = spec.initial.as_ref()?;
    Some((
        roots
            .iter()
            .map(|r| CertificateDer::from(r.clone()))
            .collect(),
        PublishedBundle {
            origin: "initial",
            roots: roots.len(),
            sequence: *sequence,
            fetched_at: 0,
        },
    ))
}

fn spawn(
    store: &Arc<Store>,
    name: &str,
    spec: &FederationSpec,
    start: Option<(Vec<CertificateDer<'static>>, PublishedBundle)>,
    settings: &Settings,
    metrics: &Metrics,
) -> Running {
    tracing::info!(federation = %name, trust_domain = %spec.trust_domain, url = %spec.url, "federation started");
    Running {
        spec: spec.clone(),
        task: tokio::spawn(federate(
            store.clone(),
            name.to_string(),
            spec.clone(),
            start,
            settings.clone(),
            metrics.clone(),
        )),
    }
}
