//! Our SPIFFE bundle endpoint (SPIFFE Federation §5): the mesh's own trust
//! bundle, as the store holds it (so it follows CA rotation), served as a
//! SPIFFE bundle document ([`bundle_doc::encode`]) over HTTPS.
//!
//! - Profiles: `https_spiffe` presents the controller's own SVID
//!   ([`OwnCert`], `spiffe://<td>/ns/<system ns>/sa/<controller sa>`);
//!   `https_web` a PEM certificate and key from files ([`FileCert`]),
//!   re-read when they change. No client authentication (§5.2.1.3).
//!   TLS 1.2 and 1.3 (Mozilla intermediate), ALPN `http/1.1`.
//! - `GET /` (and `HEAD /`) answer the document, `application/json`;
//!   another path is 404; another method 405 (`Allow: GET, HEAD`); a
//!   request with a body 413; no own bundle yet 503.
//! - `spiffe_sequence`: the store's sequence of the bundle or, if larger,
//!   our own counter, which starts at the Unix time the endpoint started
//!   and goes up by one each time the roots change: monotonic across
//!   restarts without being stored.
//! - It is a public, unauthenticated port: at most
//!   [`Limits::max_connections`] at once (more are closed at once), the TLS
//!   handshake and the request head within [`Limits::header_timeout`], at
//!   most [`Limits::max_header_bytes`] of head, one request per connection,
//!   the whole connection within [`Limits::connection_timeout`]. Every
//!   refusal is logged and counted
//!   (`quicmesh_controller_bundle_endpoint_requests_total{result}`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use quicmesh_core::identity::bundle_doc;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;

use crate::server::OwnCert;
use crate::store::Store;

/// Bounds of the public port.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub connection_timeout: Duration,
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// `quicmesh_controller_bundle_endpoint_requests_total{result}`: served,
/// not_found, method_not_allowed, body_refused, unavailable, busy,
/// tls_error, bad_request, timeout.
pub type Metrics = Family<Vec<(String, String)>, Counter>;

fn count(m: &Metrics, result: &str) {
    m.get_or_create(&vec![("result".into(), result.into())])
        .inc();
}

/// A serving certificate and key read from PEM files, re-read (at most
/// once a second, at a handshake) when either file changes; a file that
/// cannot be read or parsed keeps the last good pair and says why.
pub struct FileCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<FileCertState>,
}

struct FileCertState {
    current: Arc<CertifiedKey>,
    seen: Option<(SystemTime, SystemTime)>,
    checked: Instant,
}

impl std::fmt::Debug for FileCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCert")
            .field("cert", &self.cert)
            .finish()
    }
}

impl FileCert {
    pub fn load(cert: PathBuf, key: PathBuf) -> anyhow::Result<Self> {
        let current = Self::read(&cert, &key)?;
        Ok(FileCert {
            state: Mutex::new(FileCertState {
                current,
                seen: Self::mtimes(&cert, &key),
                checked: Instant::now(),
            }),
            cert,
            key,
        })
    }

    fn mtimes(cert: &std::path::Path, key: &std::path::Path) -> Option<(SystemTime, SystemTime)> {
        let m = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(cert)?, m(key)?))
    }

    fn read(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<Arc<CertifiedKey>> {
        use anyhow::Context;
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(
            &mut &std::fs::read(cert).with_context(|| cert.display().to_string())?[..],
        )
        .collect::<Result<_, _>>()
        .with_context(|| cert.display().to_string())?;
        anyhow::ensure!(!chain.is_empty(), "{}: no certificate", cert.display());
        let key_der = rustls_pemfile::private_key(
            &mut &std::fs::read(key).with_context(|| key.display().to_string())?[..],
        )
        .with_context(|| key.display().to_string())?
        .with_context(|| format!("{}: no private key", key.display()))?;
        let signer = quicmesh_core::crypto_provider()
            .key_provider
            .load_private_key(key_der)?;
        let ck = CertifiedKey::new(chain, signer);
        ck.keys_match().map_err(|e| {
            anyhow::anyhow!("{} and {} do not match: {e}", cert.display(), key.display())
        })?;
        Ok(Arc::new(ck))
    }

    /// The pair in force, re-read first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock().expect("not poisoned");
        if st.checked.elapsed() >= Duration::from_secs(1) {
            st.checked = Instant::now();
            let now = Self::mtimes(&self.cert, &self.key);
            if now != st.seen {
                match Self::read(&self.cert, &self.key) {
                    Ok(ck) => {
                        tracing::info!(cert = %self.cert.display(), "bundle endpoint certificate re-read");
                        st.current = ck;
                        st.seen = now;
                    }
                    Err(e) => {
                        tracing::warn!(cert = %self.cert.display(), error = %format!("{e:#}"), "bundle endpoint certificate not re-read; the last good one is served")
                    }
                }
            }
        }
        st.current.clone()
    }
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What the endpoint presents.
pub enum Profile {
    HttpsSpiffe(Arc<OwnCert>),
    HttpsWeb(Arc<FileCert>),
}

pub fn tls_config(profile: Profile) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let resolver: Arc<dyn ResolvesServerCert> = match profile {
        Profile::HttpsSpiffe(c) => c,
        Profile::HttpsWeb(c) => c,
    };
    let mut cfg = rustls::ServerConfig::builder_with_provider(quicmesh_core::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Numbers the versions of our own bundle (see the module doc).
struct Sequence {
    last: Option<Vec<Vec<u8>>>,
    counter: u64,
}

/// The document of our trust domain's bundle as the store holds it now.
pub struct Document {
    store: Arc<Store>,
    refresh_hint: Duration,
    seq: Mutex<Sequence>,
}

impl Document {
    pub fn new(store: Arc<Store>, refresh_hint: Duration) -> Self {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs());
        Document {
            store,
            refresh_hint,
            seq: Mutex::new(Sequence {
                last: None,
                counter: started,
            }),
        }
    }

    /// The document, or None when the store holds no own bundle.
    pub fn render(&self) -> Option<Result<String, bundle_doc::BundleDocError>> {
        let td = self.store.trust_domain().to_string();
        let (roots, stored) = self
            .store
            .with_index(|ix| ix.trust_bundle(&td).map(|b| (b.roots.clone(), b.sequence)))?;
        let sequence = {
            let mut s = self.seq.lock().expect("not poisoned");
            if s.last.as_ref().is_some_and(|l| *l != roots) {
                s.counter += 1;
            }
            s.last = Some(roots.clone());
            s.counter.max(stored)
        };
        let certs: Vec<CertificateDer<'_>> = roots
            .iter()
            .map(|r| CertificateDer::from(r.as_slice()))
            .collect();
        Some(bundle_doc::encode(&certs, sequence, self.refresh_hint))
    }
}

fn response(status: http::StatusCode, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// Answers one request (see the module doc); returns the result label.
fn answer<B>(
    doc: &Document,
    req: &http::Request<B>,
) -> (&'static str, http::Response<Full<Bytes>>) {
    use http::{header, Method, StatusCode};
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = response(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        r.headers_mut()
            .insert(header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return ("method_not_allowed", r);
    }
    if has_body {
        return (
            "body_refused",
            response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "no request body is accepted\n",
            ),
        );
    }
    if req.uri().path() != "/" {
        return (
            "not_found",
            response(StatusCode::NOT_FOUND, "the bundle is at /\n"),
        );
    }
    match doc.render() {
        Some(Ok(text)) => {
            let mut r = response(
                StatusCode::OK,
                if req.method() == Method::HEAD {
                    String::new()
                } else {
                    text
                },
            );
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            ("served", r)
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "our own trust bundle cannot be encoded");
            (
                "unavailable",
                response(StatusCode::SERVICE_UNAVAILABLE, "no bundle\n"),
            )
        }
        None => (
            "unavailable",
            response(StatusCode::SERVICE_UNAVAILABLE, "no bundle yet\n"),
        ),
    }
}

/// Serves the bundle endpoint on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    doc: Arc<Document>,
    limits: Limits,
    metrics: Metrics,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "SPIFFE bundle endpoint listening");
    }
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "bundle endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "bundle endpoint: connection refused, too many open");
            count(&metrics, "busy");
            continue;
        };
        let (acceptor, doc, limits, metrics) = (
            acceptor.clone(),
            doc.clone(),
            limits.clone(),
            metrics.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let conn = connection(tcp, acceptor, doc, &limits, &metrics);
            if tokio::time::timeout(limits.connection_timeout, conn)
                .await
                .is_err()
            {
                tracing::warn!(%peer, timeout_s = limits.connection_timeout.as_secs(), "bundle endpoint: connection closed, too slow");
                count(&metrics, "timeout");
            }
        });
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    doc: Arc<Document>,
    limits: &Limits,
    metrics: &Metrics,
) {
    let peer = tcp.peer_addr().ok();
    let tls = match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(?peer, error = %e, "bundle endpoint: TLS handshake failed");
            count(metrics, "tls_error");
            return;
        }
        Err(_) => {
            tracing::warn!(?peer, "bundle endpoint: TLS handshake too slow");
            count(metrics, "timeout");
            return;
        }
    };
    let m = metrics.clone();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (result, resp) = answer(&doc, &req);
        if result == "served" {
            tracing::debug!(?peer, "bundle served");
        } else {
            tracing::warn!(?peer, method = %req.method(), path = %req.uri().path(), result, "bundle endpoint: request refused");
        }
        count(&m, result);
        std::future::ready(Ok::<_, std::convert::Infallible>(resp))
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
        .await;
    if let Err(e) = served {
        tracing::warn!(?peer, error = %e, "bundle endpoint: bad request");
        count(metrics, "bad_request");
    }
}
