//! SVIDs and trust bundles from a SPIFFE Workload API: a SPIRE agent's
//! Unix socket (`--svid-source workload-api:PATH`), streamed with the
//! `spiffe` crate's client.
//!
//! Semantics (docs/ztunnel.md, "SVIDs from a SPIFFE Workload API"):
//!
//! 1. One `FetchX509SVID` stream (the client sends the
//!    `workload.spiffe.io: true` metadata the spec requires). Each answer
//!    holds every SVID the caller is entitled to, the bundle of each SVID's
//!    trust domain, and the federated bundles.
//! 2. An answer is taken whole or not at all. Refused (logged, counted in
//!    `quicmesh_workload_api_updates{result}`, the last good state kept):
//!    one the crate cannot parse (bad DER, no key, a leaf that is a CA...),
//!    an SVID whose ID fails our stricter rules or whose key does not match
//!    its certificate, an SVID that does not verify against its own trust
//!    domain's bundle in the same answer (`untrusted`), a bundle
//!    certificate that is no trust anchor, more than
//!    [`Settings::max_svids`] SVIDs or [`Settings::max_trust_domains`]
//!    domains, a message over 4 MiB (`too_large`: tonic's limit, which the
//!    crate's client keeps).
//! 3. A taken answer replaces the SVID set (rotation: an SVID whose chain
//!    did not change keeps its `Arc`, so tunnel servers are not rebuilt for
//!    nothing) and the bundles of every domain it names, in one step; the
//!    domains an earlier answer named and this one does not (or names with
//!    an empty bundle) are dropped. Domains from elsewhere are left alone.
//! 4. The stream breaking (agent restart), or not connecting within
//!    [`Settings::connect_timeout`], keeps the last SVIDs (each served
//!    while it is valid) and bundles, and reconnects with backoff
//!    ([`Settings::min_backoff`] doubling to [`Settings::max_backoff`],
//!    back to the minimum after an answer was taken).
//! 5. `PermissionDenied` (SPIRE: "no identity issued", every entry for us
//!    deleted) withdraws the SVIDs (counted `denied`); the bundles stay.
//! 6. An identity not in the last answer is unavailable: the cert manager
//!    reports it, and pods of that identity stay identity-pending.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use spiffe::transport::{GrpcStatusCode, TransportError};
use spiffe::{WorkloadApiError, X509Context};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::svid::{Svid, TrustBundles};
use super::verify::{verify_peer_chain, Refusal, Side};
use super::{SharedBundles, SpiffeId};
use crate::metrics::WorkloadApiMetrics;

/// Bounds and pacing of the Workload API client.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Connecting, and the stream's first answer header, within this.
    pub connect_timeout: Duration,
    /// SVIDs in one answer: a node's pods' identities, a few hundred at
    /// most; more is garbage or abuse.
    pub max_svids: usize,
    /// Trust domains (own and federated) in one answer.
    pub max_trust_domains: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            connect_timeout: Duration::from_secs(5),
            max_svids: 1000,
            max_trust_domains: 64,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Why an answer was refused. `label()` is the metric's `result`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AnswerRefused {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("the SVID of {id} does not verify against the bundle of its trust domain in the same answer: {refusal}")]
    Untrusted { id: SpiffeId, refusal: Refusal },
}

impl AnswerRefused {
    pub fn label(&self) -> &'static str {
        match self {
            AnswerRefused::Malformed(_) => "malformed",
            AnswerRefused::TooLarge(_) => "too_large",
            AnswerRefused::Untrusted { .. } => "untrusted",
        }
    }
}

/// What the Workload API gave us, as of its last answer taken.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The SVIDs of the last answer taken, by identity.
    pub svids: Arc<HashMap<SpiffeId, Arc<Svid>>>,
    /// The trust domains whose bundles came from the Workload API.
    pub domains: BTreeSet<String>,
    /// Answers taken (applied or unchanged).
    pub taken: u64,
    /// Answers refused, and withdrawals (`PermissionDenied`).
    pub refused: u64,
    pub connected: bool,
    /// Why the stream last broke or an answer was refused.
    pub last_error: Option<String>,
}

/// A Workload API client following one agent socket. [`run`](Self::run)
/// keeps the stream; [`svid`](Self::svid) reads the last answer.
pub struct WorkloadApi {
    socket: PathBuf,
    settings: Settings,
    bundles: SharedBundles,
    metrics: Arc<WorkloadApiMetrics>,
    status: watch::Sender<Status>,
}

impl std::fmt::Debug for WorkloadApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadApi")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// An answer checked and converted, ready to apply.
struct Checked {
    svids: HashMap<SpiffeId, Arc<Svid>>,
    bundles: Vec<(String, Vec<CertificateDer<'static>>)>,
}

impl WorkloadApi {
    /// A client of the agent socket `socket`, replacing trust domains in
    /// `bundles` (the proxy's, shared with its verifiers).
    pub fn new(
        socket: impl Into<PathBuf>,
        bundles: SharedBundles,
        settings: Settings,
        metrics: Arc<WorkloadApiMetrics>,
    ) -> Arc<Self> {
        Arc::new(WorkloadApi {
            socket: socket.into(),
            settings,
            bundles,
            metrics,
            status: watch::Sender::new(Status::default()),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The state now, and every change after (tests wait on it).
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// The SVID of `id` in the last answer taken, if still valid at `now`;
    /// otherwise why not.
    pub fn svid(&self, id: &SpiffeId, now: SystemTime) -> Result<Arc<Svid>, String> {
        let st = self.status.borrow();
        let last = || match &st.last_error {
            Some(e) => format!(" (last error: {e})"),
            None => String::new(),
        };
        match st.svids.get(id) {
            Some(s) if now < s.not_after => Ok(s.clone()),
            Some(_) => Err(format!(
                "the Workload API's SVID for {id} has expired and no new one came{}",
                last()
            )),
            None if st.taken == 0 => Err(format!(
                "no answer from the Workload API at {} yet{}",
                self.socket.display(),
                last()
            )),
            None => Err(format!(
                "the Workload API at {} does not offer {id} (not among the {} SVIDs of its last answer)",
                self.socket.display(),
                st.svids.len()
            )),
        }
    }

    /// Follows the stream until `stop`: reconnects with backoff, keeping
    /// the last good state meanwhile.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = self.settings.min_backoff;
        loop {
            let mut took = false;
            let ended = tokio::select! {
                r = self.session(&mut took) => r,
                _ = stop.cancelled() => return,
            };
            self.set_connected(false);
            if took {
                backoff = self.settings.min_backoff;
            }
            let reason = match ended {
                Ok(()) => "the Workload API closed the stream".to_string(),
                Err(e) => e,
            };
            tracing::warn!(
                socket = %self.socket.display(),
                error = %reason,
                retry_in = ?backoff,
                "Workload API stream down; serving the last SVIDs and bundles while they are valid"
            );
            self.status
                .send_modify(|s| s.last_error = Some(reason.clone()));
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(self.settings.max_backoff);
        }
    }

    /// One connection: its answers applied until it ends.
    async fn session(&self, took: &mut bool) -> Result<(), String> {
        let timeout = self.settings.connect_timeout;
        let within = |what: &str| format!("{what} {} within {timeout:?}", self.socket.display());
        let client = tokio::time::timeout(timeout, self.connect())
            .await
            .map_err(|_| within("could not connect to"))??;
        // A server refusing the call outright answers with its status
        // alone (SPIRE's "no identity issued" does): it lands here.
        let stream = match tokio::time::timeout(timeout, client.stream_x509_contexts()).await {
            Err(_) => return Err(within("no FetchX509SVID answer from")),
            Ok(Err(WorkloadApiError::NoIdentityIssued | WorkloadApiError::PermissionDenied(_))) => {
                self.withdraw();
                return Err("the agent has no SVID for us (PermissionDenied)".into());
            }
            Ok(Err(e)) => return Err(format!("FetchX509SVID: {e}")),
            Ok(Ok(stream)) => stream,
        };
        let mut stream = std::pin::pin!(stream);
        tracing::info!(socket = %self.socket.display(), "Workload API stream connected");
        self.set_connected(true);
        while let Some(answer) = stream.next().await {
            match answer {
                Ok(ctx) => match self.apply(&ctx) {
                    Ok(()) => *took = true,
                    Err(e) => self.refuse(&e),
                },
                Err(WorkloadApiError::NoIdentityIssued)
                | Err(WorkloadApiError::PermissionDenied(_)) => {
                    self.withdraw();
                    return Err("the agent has no SVID for us (PermissionDenied)".into());
                }
                Err(WorkloadApiError::Transport(TransportError::Status(s)))
                    if matches!(
                        s.code(),
                        GrpcStatusCode::OutOfRange | GrpcStatusCode::ResourceExhausted
                    ) =>
                {
                    let e = AnswerRefused::TooLarge(s.message().to_string());
                    self.refuse(&e);
                    return Err(e.to_string());
                }
                Err(e @ WorkloadApiError::Transport(_)) => return Err(e.to_string()),
                // Everything else is the crate refusing what it parsed.
                Err(e) => self.refuse(&AnswerRefused::Malformed(e.to_string())),
            }
        }
        Ok(())
    }

    async fn connect(&self) -> Result<spiffe::WorkloadApiClient, String> {
        let path = self.socket.clone();
        let channel = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_timeout(self.settings.connect_timeout)
            // An agent that hangs is noticed; one that exits closes the socket.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let unix = tokio::net::UnixStream::connect(&path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(unix))
                }
            }))
            .await
            .map_err(|e| {
                let detail = std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                format!("connecting to {}: {e}{detail}", self.socket.display())
            })?;
        let endpoint = spiffe::transport::Endpoint::Unix(self.socket.clone());
        Ok(spiffe::WorkloadApiClient::new_with_channel(
            endpoint, channel,
        ))
    }

    /// Checks `ctx` and, if good, makes it the state.
    fn apply(&self, ctx: &X509Context) -> Result<(), AnswerRefused> {
        let previous = self.status.borrow().clone();
        let mut checked = check(ctx, &self.settings, UnixTime::now())?;
        // Unchanged SVIDs keep their Arc (tunnel servers compare them).
        for (id, svid) in checked.svids.iter_mut() {
            if let Some(old) = previous.svids.get(id) {
                if old.chain == svid.chain {
                    *svid = old.clone();
                }
            }
        }
        let named: BTreeSet<String> = checked.bundles.iter().map(|(d, _)| d.clone()).collect();
        let gone = previous.domains.difference(&named).map(String::as_str);
        let changed_domains = self
            .bundles
            .replace_domains(&checked.bundles, gone)
            .map_err(|e| AnswerRefused::Malformed(e.to_string()))?;
        let changed_svids = checked.svids.len() != previous.svids.len()
            || checked
                .svids
                .iter()
                .any(|(id, s)| !previous.svids.get(id).is_some_and(|o| Arc::ptr_eq(o, s)));
        let count = checked.svids.len();
        self.status.send_modify(|st| {
            st.svids = Arc::new(checked.svids);
            st.domains = named;
            st.taken += 1;
        });
        if changed_svids || !changed_domains.is_empty() {
            tracing::info!(
                svids = count,
                bundles_changed = ?changed_domains,
                "Workload API answer applied"
            );
            self.metrics.update("applied");
        } else {
            self.metrics.update("unchanged");
        }
        Ok(())
    }

    fn refuse(&self, e: &AnswerRefused) {
        tracing::warn!(
            socket = %self.socket.display(),
            reason = e.label(),
            error = %e,
            "Workload API answer refused; keeping the last good SVIDs and bundles"
        );
        self.metrics.update(e.label());
        self.status.send_modify(|st| {
            st.refused += 1;
            st.last_error = Some(e.to_string());
        });
    }

    fn withdraw(&self) {
        tracing::warn!(
            socket = %self.socket.display(),
            "the Workload API has no SVID for us (PermissionDenied): SVIDs withdrawn, bundles kept"
        );
        self.metrics.update("denied");
        self.status.send_modify(|st| {
            st.svids = Arc::default();
            st.refused += 1;
        });
    }

    fn set_connected(&self, up: bool) {
        self.metrics.set_connected(up);
        self.status.send_if_modified(|st| {
            let changed = st.connected != up;
            st.connected = up;
            changed
        });
    }
}

/// Checks an answer the crate parsed against our rules and converts it.
fn check(ctx: &X509Context, settings: &Settings, now: UnixTime) -> Result<Checked, AnswerRefused> {
    let malformed = AnswerRefused::Malformed;
    if ctx.svids().len() > settings.max_svids {
        return Err(AnswerRefused::TooLarge(format!(
            "{} SVIDs, over the limit of {}",
            ctx.svids().len(),
            settings.max_svids
        )));
    }
    if ctx.bundle_set().len() > settings.max_trust_domains {
        return Err(AnswerRefused::TooLarge(format!(
            "{} trust domains, over the limit of {}",
            ctx.bundle_set().len(),
            settings.max_trust_domains
        )));
    }
    let mut bundles = Vec::new();
    let mut anchors = TrustBundles::new();
    for (domain, bundle) in ctx.bundle_set().iter() {
        let roots: Vec<CertificateDer<'static>> = bundle
            .authorities()
            .iter()
            .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
            .collect();
        // An empty bundle trusts nothing: the domain is dropped.
        if roots.is_empty() {
            continue;
        }
        anchors
            .insert(domain.as_str(), &roots)
            .map_err(|e| malformed(format!("bundle of {domain}: {e}")))?;
        bundles.push((domain.as_str().to_string(), roots));
    }
    let provider = crate::crypto_provider();
    let mut svids = HashMap::new();
    for x in ctx.svids() {
        let chain: Vec<CertificateDer<'static>> = x
            .cert_chain()
            .iter()
            .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            x.private_key().as_bytes().to_vec(),
        ));
        // Our stricter ID rules, on the certificate itself.
        let svid = Svid::from_der(chain, key)
            .map_err(|e| malformed(format!("SVID {}: {e}", x.spiffe_id())))?;
        if svid.id.to_crate().as_ref() != Some(x.spiffe_id()) {
            return Err(malformed(format!(
                "SVID {}: the certificate names {}",
                x.spiffe_id(),
                svid.id
            )));
        }
        let signing = provider
            .key_provider
            .load_private_key(svid.clone_key())
            .map_err(|e| malformed(format!("SVID {}: unusable key: {e}", svid.id)))?;
        rustls::sign::CertifiedKey::new(svid.chain.clone(), signing)
            .keys_match()
            .map_err(|e| malformed(format!("SVID {}: key and certificate: {e}", svid.id)))?;
        let (leaf, intermediates) = svid
            .chain
            .split_first()
            .ok_or_else(|| malformed(format!("SVID {}: empty chain", svid.id)))?;
        // An SVID serves both ways; checked as a client certificate.
        verify_peer_chain(
            &anchors,
            leaf,
            intermediates,
            now,
            Side::Server,
            &provider.signature_verification_algorithms,
        )
        .map_err(|refusal| AnswerRefused::Untrusted {
            id: svid.id.clone(),
            refusal,
        })?;
        // The first of several SVIDs for one identity is the agent's
        // preferred one.
        svids
            .entry(svid.id.clone())
            .or_insert_with(|| Arc::new(svid));
    }
    Ok(Checked { svids, bundles })
}
