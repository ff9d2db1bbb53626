//! Fetching the key sets of `jwksUri` rules: one task per URI, off the
//! request path. Each fetches at once, then again every refresh period
//! (the shortest its rules ask for; default 20 min), and early when a
//! token names a `kid` the set lacks ([`KeySource::refresh`], at most once
//! per [`EARLY_REFRESH_EVERY`]). A fetch is HTTP or HTTPS (system roots),
//! bounded to [`FETCH_TIMEOUT`] and [`MAX_JWKS_BYTES`]; a failed one (the
//! issuer down, an error status, garbage) keeps the last good set, is
//! logged and counted, and is tried again after 1 s doubling to 60 s.
//! Until a fetch succeeds the URI has no keys: its tokens are refused.
//!
//! Metrics: `quicmesh_waypoint_jwks_fetches_total{result}` and
//! `quicmesh_waypoint_jwks_age_seconds{jwks_uri}` (the age of the keys in use, or
//! -1 before any; updated every 5 s). How each URI's last fetch went is
//! also reported to the controller ([`Fetcher::reports`], subject
//! `jwks/<uri>`), which shows it as the RequestAuthentication's
//! `KeysFetched` condition.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quicmesh_core::jwt::{Jwks, MAX_JWKS_BYTES};
use quicmesh_proto::config::Report;
use tokio_util::sync::CancellationToken;

use crate::authn::KeySource;

/// A fetch gives up after this (connect, TLS, answer and body together).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Early refreshes (a token with an unknown `kid`) at most this often.
pub const EARLY_REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Retries after a failed fetch: from 1 s, doubling, at most this.
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// How often the age gauges are brought up to date.
const AGE_EVERY: Duration = Duration::from_secs(5);

/// Why a fetch failed: a fixed word for the metric.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {FETCH_TIMEOUT:?}")]
    Timeout,
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("answered {0}")]
    Status(u16),
    #[error("the answer is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("not a usable key set: {0}")]
    Invalid(String),
}

impl FetchError {
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Timeout => "timeout",
            FetchError::Connect(_) => "connect_error",
            FetchError::Tls(_) => "tls_error",
            FetchError::Http(_) => "http_error",
            FetchError::Status(_) => "bad_status",
            FetchError::TooLarge => "too_large",
            FetchError::Invalid(_) => "invalid",
        }
    }
}

/// One URI's state.
struct Source {
    uri: String,
    refresh: Mutex<Duration>,
    keys: RwLock<Option<(Arc<Jwks>, Instant)>>,
    last_error: Mutex<Option<String>>,
    /// Wakes the task for an early refresh.
    wake: tokio::sync::Notify,
    /// Counts finished fetches (early refreshes wait for the next one).
    done: tokio::sync::watch::Sender<u64>,
    /// When the last early refresh was asked for.
    early: Mutex<Option<Instant>>,
    stop: CancellationToken,
}

#[derive(Default, Clone)]
struct Metrics {
    fetches: Family<Vec<(String, String)>, Counter>,
    age: Family<Vec<(String, String)>, Gauge>,
}

/// Every URI the rules name, each with its task.
pub struct Fetcher {
    sources: RwLock<HashMap<String, Arc<Source>>>,
    tls: Arc<rustls::ClientConfig>,
    metrics: Metrics,
    early_every: Duration,
    /// Each URI's last fetch, sorted by subject, for the controller.
    reports: tokio::sync::watch::Sender<Vec<Report>>,
}

/// The report subject of `uri`'s key set.
pub fn subject(uri: &str) -> String {
    format!("jwks/{uri}")
}

impl Fetcher {
    /// A fetcher trusting the system's roots for HTTPS.
    pub fn new() -> Arc<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "reading the system's CA certificates (jwksUri over HTTPS)");
        }
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!("no system CA certificates: jwksUri over HTTPS cannot be verified");
        }
        Self::with_roots(roots, EARLY_REFRESH_EVERY)
    }

    /// A fetcher trusting `roots`, refreshing early at most every `early_every`.
    pub fn with_roots(roots: rustls::RootCertStore, early_every: Duration) -> Arc<Self> {
        let tls = rustls::ClientConfig::builder_with_provider(quicmesh_core::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("both TLS libraries support the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(Fetcher {
            sources: RwLock::default(),
            tls: Arc::new(tls),
            metrics: Metrics::default(),
            early_every,
            reports: tokio::sync::watch::Sender::new(Vec::new()),
        })
    }

    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "quicmesh_waypoint_jwks_fetches",
            "Fetches of jwksUri key sets, by result (ok, timeout, connect_error, tls_error, http_error, bad_status, too_large, invalid); a failed fetch keeps the last good keys",
            self.metrics.fetches.clone(),
        );
        reg.register(
            "quicmesh_waypoint_jwks_age_seconds",
            "Age of the keys in use for each jwksUri (-1: none fetched yet, its tokens are refused)",
            self.metrics.age.clone(),
        );
    }

    /// How each URI's last fetch went (none before its first one ends),
    /// the whole set again whenever one changes.
    pub fn reports(&self) -> tokio::sync::watch::Receiver<Vec<Report>> {
        self.reports.subscribe()
    }

    /// Records how `s`'s last fetch went (`error`: why it failed), unless
    /// `s` is no longer fetched; a change only if it differs.
    fn report(&self, s: &Source, error: Option<String>, last_good_kept: bool) {
        let report = Report {
            subject: subject(&s.uri),
            ok: error.is_none(),
            last_good_kept: error.is_some() && last_good_kept,
            error: error.unwrap_or_default(),
        };
        self.reports.send_if_modified(|all| {
            // Checked under the lock `sync` takes to drop gone URIs'
            // reports, after it has cancelled them.
            if s.stop.is_cancelled() {
                return false;
            }
            match all.binary_search_by(|r| r.subject.cmp(&report.subject)) {
                Ok(i) if all[i] == report => false,
                Ok(i) => {
                    all[i] = report;
                    true
                }
                Err(i) => {
                    all.insert(i, report);
                    true
                }
            }
        });
    }

    /// Makes the fetched URIs exactly `wanted` (URI → refresh seconds):
    /// new ones start fetching, gone ones stop. Must run in a runtime.
    pub fn sync(self: &Arc<Self>, wanted: &BTreeMap<String, u32>) {
        let mut sources = self.sources.write().unwrap_or_else(|e| e.into_inner());
        sources.retain(|uri, s| {
            let keep = wanted.contains_key(uri);
            if !keep {
                s.stop.cancel();
                self.metrics
                    .age
                    .remove(&vec![("jwks_uri".into(), uri.clone())]);
            }
            keep
        });
        self.reports.send_if_modified(|all| {
            let before = all.len();
            all.retain(|r| {
                r.subject
                    .strip_prefix("jwks/")
                    .is_some_and(|u| wanted.contains_key(u))
            });
            all.len() != before
        });
        for (uri, refresh) in wanted {
            let refresh = Duration::from_secs(u64::from((*refresh).max(1)));
            if let Some(s) = sources.get(uri) {
                *s.refresh.lock().unwrap_or_else(|e| e.into_inner()) = refresh;
                continue;
            }
            let s = Arc::new(Source {
                uri: uri.clone(),
                refresh: Mutex::new(refresh),
                keys: RwLock::new(None),
                last_error: Mutex::new(None),
                wake: tokio::sync::Notify::new(),
                done: tokio::sync::watch::Sender::new(0),
                early: Mutex::new(None),
                stop: CancellationToken::new(),
            });
            sources.insert(uri.clone(), s.clone());
            tokio::spawn(self.clone().run(s));
        }
    }

    fn source(&self, uri: &str) -> Option<Arc<Source>> {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(uri)
            .cloned()
    }

    async fn run(self: Arc<Self>, s: Arc<Source>) {
        let age = self
            .metrics
            .age
            .get_or_create(&vec![("jwks_uri".into(), s.uri.clone())])
            .clone();
        age.set(-1);
        let mut retry = Duration::from_secs(1);
        let mut ticks = tokio::time::interval(AGE_EVERY);
        loop {
            let delay = match fetch(&s.uri, &self.tls).await {
                Ok(keys) => {
                    tracing::info!(jwks_uri = %s.uri, kids = ?keys.kids(), skipped = ?keys.skipped, "JWKS fetched");
                    *s.keys.write().unwrap_or_else(|e| e.into_inner()) =
                        Some((Arc::new(keys), Instant::now()));
                    *s.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    self.count("ok");
                    self.report(&s, None, true);
                    retry = Duration::from_secs(1);
                    *s.refresh.lock().unwrap_or_else(|e| e.into_inner())
                }
                Err(e) => {
                    let kept = s.keys.read().unwrap_or_else(|e| e.into_inner()).is_some();
                    tracing::warn!(jwks_uri = %s.uri, error = %e, kept_last_good = kept, retry_in = ?retry, "JWKS fetch failed");
                    *s.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    self.count(e.label());
                    self.report(&s, Some(e.to_string()), kept);
                    let now = retry;
                    retry = (retry * 2).min(MAX_RETRY);
                    now
                }
            };
            s.done.send_modify(|n| *n += 1);
            let next = tokio::time::sleep(delay);
            tokio::pin!(next);
            loop {
                if let Some((_, at)) = &*s.keys.read().unwrap_or_else(|e| e.into_inner()) {
                    age.set(at.elapsed().as_secs() as i64);
                }
                tokio::select! {
                    _ = &mut next => break,
                    _ = s.wake.notified() => break,
                    _ = ticks.tick() => {}
                    _ = s.stop.cancelled() => return,
                }
            }
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .fetches
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }

    /// For the config dump: each URI's key ids, their age and the last error.
    pub fn dump(&self) -> serde_json::Value {
        let sources = self.sources.read().unwrap_or_else(|e| e.into_inner());
        let out: BTreeMap<&String, serde_json::Value> = sources
            .iter()
            .map(|(uri, s)| {
                let keys = s.keys.read().unwrap_or_else(|e| e.into_inner());
                let err = s.last_error.lock().unwrap_or_else(|e| e.into_inner());
                (
                    uri,
                    serde_json::json!({
                        "kids": keys.as_ref().map(|(k, _)| k.kids()),
                        "ageSeconds": keys.as_ref().map(|(_, at)| at.elapsed().as_secs()),
                        "lastError": *err,
                    }),
                )
            })
            .collect();
        serde_json::json!(out)
    }
}

impl KeySource for Fetcher {
    fn keys(&self, uri: &str) -> Option<Arc<Jwks>> {
        let s = self.source(uri)?;
        let keys = s.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.as_ref().map(|(k, _)| k.clone())
    }

    fn refresh<'a>(&'a self, uri: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let Some(s) = self.source(uri) else {
                return false;
            };
            {
                let mut early = s.early.lock().unwrap_or_else(|e| e.into_inner());
                if early.is_some_and(|at| at.elapsed() < self.early_every) {
                    return false;
                }
                *early = Some(Instant::now());
            }
            let mut done = s.done.subscribe();
            done.borrow_and_update();
            s.wake.notify_one();
            tracing::info!(jwks_uri = %uri, "a token names a key the set lacks: fetching it again");
            let finished =
                tokio::time::timeout(FETCH_TIMEOUT + Duration::from_secs(1), done.changed()).await;
            finished.is_ok_and(|r| r.is_ok())
                && s.last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_none()
        })
    }
}

/// One GET of `uri`, bounded in time and size, parsed as a key set.
pub async fn fetch(uri: &str, tls: &Arc<rustls::ClientConfig>) -> Result<Jwks, FetchError> {
    let body = tokio::time::timeout(FETCH_TIMEOUT, get(uri, tls))
        .await
        .map_err(|_| FetchError::Timeout)??;
    let keys = Jwks::parse(&body).map_err(|e| FetchError::Invalid(e.to_string()))?;
    if keys.keys.is_empty() {
        return Err(FetchError::Invalid(format!(
            "no usable key ({:?})",
            keys.skipped
        )));
    }
    Ok(keys)
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn get(uri: &str, tls: &Arc<rustls::ClientConfig>) -> Result<Bytes, FetchError> {
    let u: http::Uri = uri.parse().map_err(|e| FetchError::Http(format!("{e}")))?;
    let https = match u.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(FetchError::Http(format!("{uri} is not http or https"))),
    };
    let host = u
        .host()
        .ok_or_else(|| FetchError::Http(format!("{uri} names no host")))?;
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| FetchError::Connect(e.to_string()))?;
    let io: Box<dyn Io> = if https {
        let name = rustls_pki_types::ServerName::try_from(bare.clone())
            .map_err(|e| FetchError::Tls(e.to_string()))?;
        let s = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| FetchError::Tls(e.to_string()))?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = u
        .authority()
        .map(|a| a.as_str())
        .unwrap_or(host)
        .to_string();
    let req = http::Request::get(u.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "quicmesh-waypoint")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    if resp.status() != http::StatusCode::OK {
        return Err(FetchError::Status(resp.status().as_u16()));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                FetchError::TooLarge
            } else {
                FetchError::Http(e.to_string())
            }
        })?;
    Ok(body.to_bytes())
}

#[cfg(test)]
mod tests;
