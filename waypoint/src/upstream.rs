//! The waypoint's side toward backends: HTTP over tunnels it opens as its
//! own identity to each chosen endpoint. HTTP/2 connections are shared by
//! every request to an endpoint (multiplexed); HTTP/1.1 connections are
//! kept idle per endpoint and reused. Each connection is one CONNECT
//! stream on the tunnel pool, which itself pools QUIC connections.
//!
//! A backend's TrafficPolicy bounds its connections ([`Limits`]): how
//! many may be open (a request beyond waits as pending, within the
//! breaker's bounds: [`crate::resilience::breaker`]), how many requests
//! each carries, how long opening one may take and how long one may stay
//! unused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use quicmesh_core::identity::certs::CertManager;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::tunnel::client::{Pool, PoolKey, TunnelError};
use quicmesh_core::tunnel::TUNNEL_PORT;

use tokio::sync::OwnedSemaphorePermit;

use crate::resilience::breaker::{Breaker, Got, MAX_PENDING_WAIT};
use crate::response::{Body, Failure};

/// Idle HTTP/1.1 connections kept per endpoint.
const MAX_IDLE_HTTP1: usize = 32;

/// An endpoint of a backend: where its app listens, and who it must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The workload's IP and the port its app listens on.
    pub addr: SocketAddr,
    pub identity: SpiffeId,
    /// What its Service port speaks.
    pub protocol: Protocol,
    /// Its workload's uid (whose policies apply to it).
    pub workload: Arc<str>,
}

/// The HTTP a backend port speaks, from its Service port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `http`: HTTP/1.1.
    Http1,
    /// `http2`, `grpc`, `kubernetes.io/h2c`: HTTP/2 (cleartext, in the tunnel).
    Http2,
    /// Not declared: the version the client spoke (and, for a port the
    /// waypoint serves, HTTP or TCP detected from the first bytes).
    Auto,
    /// Declared as something else (`tcp`, `tls`, `https`, `mysql`...):
    /// passed through as bytes.
    Tcp,
}

impl Protocol {
    pub fn of(app_protocol: &str) -> Self {
        use quicmesh_core::route::PortProtocol;
        match PortProtocol::of(app_protocol) {
            PortProtocol::Http1 => Protocol::Http1,
            PortProtocol::Http2 => Protocol::Http2,
            PortProtocol::Undeclared => Protocol::Auto,
            PortProtocol::Opaque => Protocol::Tcp,
        }
    }

    /// The version to speak for a request that came in as `client`.
    pub fn version(self, client: http::Version) -> Version {
        match self {
            Protocol::Http1 => Version::Http1,
            Protocol::Http2 => Version::Http2,
            Protocol::Auto | Protocol::Tcp if client == http::Version::HTTP_2 => Version::Http2,
            Protocol::Auto | Protocol::Tcp => Version::Http1,
        }
    }
}

/// HTTP to endpoints, over tunnels.
pub struct Upstreams {
    tunnels: Arc<Pool>,
    certs: Arc<CertManager>,
    /// The waypoint's own identity: every tunnel presents its SVID.
    identity: SpiffeId,
    http2: Mutex<HashMap<Key, Shared>>,
    /// One HTTP/2 handshake at a time per endpoint: concurrent first
    /// requests wait for it and share the connection.
    connecting: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    http1: Arc<Mutex<HashMap<Key, Vec<Kept>>>>,
    /// When idle connections were last swept for their idle timeouts.
    swept: Mutex<Instant>,
}

/// Connections are pooled per endpoint and per circuit breaker (its id;
/// 0: none), so that a connection counts against the limits it was
/// opened under only.
type Key = (Endpoint, u64);

/// A shared HTTP/2 connection.
struct Shared {
    sender: http2::SendRequest<Body>,
    /// Requests started on it.
    requests: u32,
    last_used: Instant,
    idle: Option<Duration>,
}

/// A kept HTTP/1.1 connection.
struct Kept {
    sender: http1::SendRequest<Body>,
    /// Requests it has carried.
    requests: u32,
    since: Instant,
    idle: Option<Duration>,
}

impl Kept {
    fn new(sender: http1::SendRequest<Body>, requests: u32, idle: Option<Duration>) -> Self {
        Kept {
            sender,
            requests,
            since: Instant::now(),
            idle,
        }
    }
}

/// Adds a connection to its endpoint's idle list (at most
/// [`MAX_IDLE_HTTP1`]; more are closed).
fn keep(pool: &Mutex<HashMap<Key, Vec<Kept>>>, key: Key, k: Kept) {
    let mut idle = pool.lock().expect("not poisoned");
    let list = idle.entry(key).or_default();
    list.retain(|k| !k.sender.is_closed());
    if list.len() < MAX_IDLE_HTTP1 {
        list.push(k);
    }
}

fn expired(since: Instant, idle: Option<Duration>, now: Instant) -> bool {
    idle.is_some_and(|t| now.saturating_duration_since(since) >= t)
}

/// What a backend's TrafficPolicy asks of its connections (none: no
/// limits, no timeouts beyond the tunnel's own).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// `connectionPool`: connections, pending requests, requests per
    /// connection.
    pub breaker: Option<Arc<Breaker>>,
    /// `timeouts.connect`: opening the tunnel and the HTTP handshake.
    pub connect: Option<Duration>,
    /// `timeouts.idle`: a connection unused this long is closed.
    pub idle: Option<Duration>,
}

impl Limits {
    fn key(&self, ep: &Endpoint) -> Key {
        (ep.clone(), self.breaker.as_ref().map_or(0, |b| b.id()))
    }

    fn max_requests(&self) -> Option<u32> {
        self.breaker
            .as_ref()
            .and_then(|b| b.config().max_requests_per_connection)
    }
}

/// The HTTP version to speak to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

impl Upstreams {
    pub fn new(tunnels: Arc<Pool>, certs: Arc<CertManager>, identity: SpiffeId) -> Self {
        Upstreams {
            tunnels,
            certs,
            identity,
            http2: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
            http1: Arc::default(),
            swept: Mutex::new(Instant::now()),
        }
    }

    /// Whether a bundle vouches for `trust_domain` now (a federated one is
    /// withdrawn when its federation is removed).
    pub fn trusts(&self, trust_domain: &str) -> bool {
        self.certs.bundles().load().get(trust_domain).is_some()
    }

    /// Sends `req` to `ep` and returns the response head (its body streams).
    pub async fn send(
        &self,
        ep: &Endpoint,
        version: Version,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, Failure> {
        self.send_with(ep, version, req, &Limits::default()).await
    }

    /// [`Upstreams::send`] within a backend's [`Limits`].
    pub async fn send_with(
        &self,
        ep: &Endpoint,
        version: Version,
        req: Request<Body>,
        limits: &Limits,
    ) -> Result<Response<Incoming>, Failure> {
        self.sweep_idle(Instant::now());
        match version {
            Version::Http2 => {
                let mut sender = self.http2_sender(ep, limits).await?;
                sender.send_request(req).await.map_err(Failure::upstream)
            }
            Version::Http1 => {
                // A kept connection the backend closed just before it was
                // reused hands the request back unsent: send it once more
                // on a new connection (a sent one is never re-sent).
                let (mut sender, requests) = self.http1_sender(ep, limits).await?;
                let reused = requests > 0;
                // A request without a body that is safe to repeat may also
                // go again when the kept connection broke after it was
                // written (the backend closed it as the request went out):
                // keep its head.
                let head = (reused && safe_to_repeat(&req)).then(|| head_of(&req));
                let mut requests = requests;
                let resp = match sender.try_send_request(req).await {
                    Ok(r) => r,
                    Err(mut e) => match (e.take_message(), head) {
                        (Some(req), _) if reused => {
                            tracing::debug!(error = %e.into_error(), "kept connection was gone; sending on a new one");
                            drop(sender);
                            sender = self.new_http1(ep, limits).await?;
                            requests = 0;
                            sender.send_request(req).await.map_err(Failure::upstream)?
                        }
                        (None, Some(req)) => {
                            tracing::debug!(error = %e.into_error(), "kept connection broke under a request safe to repeat; sending it on a new one");
                            drop(sender);
                            sender = self.new_http1(ep, limits).await?;
                            requests = 0;
                            sender.send_request(req).await.map_err(Failure::upstream)?
                        }
                        _ => return Err(Failure::upstream(e.into_error())),
                    },
                };
                self.put_back(limits.key(ep), sender, requests + 1, limits);
                Ok(resp)
            }
        }
    }

    /// The shared HTTP/2 connection of `key` if it is live, counting a
    /// request on it; one that is closed, idle too long or has carried its
    /// `maxRequestsPerConnection` goes from the pool (requests on it
    /// finish).
    fn live_http2(&self, key: &Key, limits: &Limits) -> Option<http2::SendRequest<Body>> {
        let now = Instant::now();
        let mut m = self.http2.lock().expect("not poisoned");
        let s = m.get_mut(key)?;
        if s.sender.is_closed() || expired(s.last_used, s.idle, now) {
            m.remove(key);
            return None;
        }
        s.requests += 1;
        s.last_used = now;
        let sender = s.sender.clone();
        if limits.max_requests().is_some_and(|n| s.requests >= n) {
            m.remove(key);
        }
        Some(sender)
    }

    async fn http2_sender(
        &self,
        ep: &Endpoint,
        limits: &Limits,
    ) -> Result<http2::SendRequest<Body>, Failure> {
        let key = limits.key(ep);
        if let Some(s) = self.live_http2(&key, limits) {
            return Ok(s);
        }
        let gate = self
            .connecting
            .lock()
            .expect("not poisoned")
            .entry(key.clone())
            .or_default()
            .clone();
        let _one = gate.lock().await;
        // The gate goes once this handshake is done, whatever its outcome:
        // endpoints tried once (a client may name any port of a pod
        // address) leave nothing behind.
        let _gone = Ungate {
            map: &self.connecting,
            key: &key,
            gate: &gate,
        };
        let permit = match &limits.breaker {
            None => match self.live_http2(&key, limits) {
                Some(s) => return Ok(s),
                None => None,
            },
            Some(b) => match b
                .connection(|| self.live_http2(&key, limits), || false, MAX_PENDING_WAIT)
                .await
                .map_err(Failure::Overflow)?
            {
                Got::Reused(s) => return Ok(s),
                Got::New(p) => p,
            },
        };
        let (sender, conn) = self
            .connect(ep, limits, |io| http2::handshake(TokioExecutor::new(), io))
            .await?;
        tokio::spawn(async move {
            // Counted against the breaker's connections while it is open.
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        let pooled = limits.max_requests().is_none_or(|n| n > 1);
        if pooled {
            self.http2.lock().expect("not poisoned").insert(
                key.clone(),
                Shared {
                    sender: sender.clone(),
                    requests: 1,
                    last_used: Instant::now(),
                    idle: limits.idle,
                },
            );
        }
        Ok(sender)
    }

    /// A kept connection of `key` that is ready (with the requests it has
    /// carried), dropping the closed and the expired.
    fn take_idle(&self, key: &Key) -> Option<(http1::SendRequest<Body>, u32)> {
        let now = Instant::now();
        let mut idle = self.http1.lock().expect("not poisoned");
        let list = idle.get_mut(key)?;
        list.retain(|k| !k.sender.is_closed() && !expired(k.since, k.idle, now));
        let found = list
            .iter()
            .position(|k| k.sender.is_ready())
            .map(|i| list.swap_remove(i));
        if list.is_empty() {
            idle.remove(key);
        }
        found.map(|k| (k.sender, k.requests))
    }

    /// Closes one ready idle connection counted against `breaker` (to any
    /// endpoint), making room for another: whether there was one.
    fn evict_idle(&self, breaker: u64) -> bool {
        let mut idle = self.http1.lock().expect("not poisoned");
        for ((_, b), list) in idle.iter_mut() {
            if *b != breaker {
                continue;
            }
            if let Some(i) = list.iter().position(|k| k.sender.is_ready()) {
                // Dropped: the connection closes, its permit comes back.
                list.swap_remove(i);
                return true;
            }
        }
        false
    }

    /// A kept connection that is ready (with the requests it carried, at
    /// least 1), or a new one (0).
    async fn http1_sender(
        &self,
        ep: &Endpoint,
        limits: &Limits,
    ) -> Result<(http1::SendRequest<Body>, u32), Failure> {
        let key = limits.key(ep);
        let permit = match &limits.breaker {
            None => match self.take_idle(&key) {
                Some(found) => return Ok(found),
                None => None,
            },
            Some(b) => match b
                .connection(
                    || self.take_idle(&key),
                    || self.evict_idle(b.id()),
                    MAX_PENDING_WAIT,
                )
                .await
                .map_err(Failure::Overflow)?
            {
                Got::Reused(found) => return Ok(found),
                Got::New(p) => p,
            },
        };
        Ok((self.open_http1(ep, limits, permit).await?, 0))
    }

    /// A new HTTP/1.1 connection to `ep`, within the breaker's limit.
    async fn new_http1(
        &self,
        ep: &Endpoint,
        limits: &Limits,
    ) -> Result<http1::SendRequest<Body>, Failure> {
        let permit = match &limits.breaker {
            None => None,
            Some(b) => match b
                .connection(|| None::<()>, || self.evict_idle(b.id()), MAX_PENDING_WAIT)
                .await
                .map_err(Failure::Overflow)?
            {
                Got::Reused(()) => None,
                Got::New(p) => p,
            },
        };
        self.open_http1(ep, limits, permit).await
    }

    async fn open_http1(
        &self,
        ep: &Endpoint,
        limits: &Limits,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<http1::SendRequest<Body>, Failure> {
        let (sender, conn) = self.connect(ep, limits, http1::handshake).await?;
        tokio::spawn(async move {
            // Counted against the breaker's connections while it is open.
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(sender)
    }

    /// A tunnel to `ep` and the HTTP handshake on it, within
    /// `timeouts.connect`.
    async fn connect<T, F, Fut>(
        &self,
        ep: &Endpoint,
        limits: &Limits,
        handshake: F,
    ) -> Result<T, Failure>
    where
        F: FnOnce(TokioIo<quicmesh_core::tunnel::connect::ConnectIo>) -> Fut,
        Fut: std::future::Future<Output = Result<T, hyper::Error>>,
    {
        let open = async {
            let io = self.tunnel(ep).await?;
            handshake(io).await.map_err(Failure::upstream)
        };
        match limits.connect {
            None => open.await,
            Some(t) => tokio::time::timeout(t, open).await.unwrap_or_else(|_| {
                Err(Failure::UpstreamConnect(format!(
                    "no connection within the connect timeout ({}ms)",
                    t.as_millis()
                )))
            }),
        }
    }

    /// Closes the idle connections past their idle timeout (at most once
    /// a second; kept ones are also checked as they are taken).
    fn sweep_idle(&self, now: Instant) {
        {
            let mut swept = self.swept.lock().expect("not poisoned");
            if now.saturating_duration_since(*swept) < Duration::from_secs(1) {
                return;
            }
            *swept = now;
        }
        self.http1.lock().expect("not poisoned").retain(|_, list| {
            list.retain(|k| !k.sender.is_closed() && !expired(k.since, k.idle, now));
            !list.is_empty()
        });
        self.http2
            .lock()
            .expect("not poisoned")
            .retain(|_, s| !s.sender.is_closed() && !expired(s.last_used, s.idle, now));
    }

    /// Sends an HTTP/1.1 upgrade request on a connection of its own (the
    /// upgrade consumes it: it is never kept).
    pub async fn send_upgrade(
        &self,
        ep: &Endpoint,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, Failure> {
        let io = self.tunnel(ep).await?;
        let (mut sender, conn) = http1::handshake(io).await.map_err(Failure::upstream)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended");
            }
        });
        sender.send_request(req).await.map_err(Failure::upstream)
    }

    /// Keeps an HTTP/1.1 connection for reuse (it is ready again once the
    /// response body has been read), unless it has carried its
    /// `maxRequestsPerConnection`. Under a connection limit it is kept
    /// once ready, and the breaker told: a pending request may take it.
    fn put_back(
        &self,
        key: Key,
        mut sender: http1::SendRequest<Body>,
        requests: u32,
        limits: &Limits,
    ) {
        if limits.max_requests().is_some_and(|n| requests >= n) {
            return;
        }
        let idle = limits.idle;
        match limits.breaker.clone().filter(|b| b.limits_connections()) {
            None => keep(&self.http1, key, Kept::new(sender, requests, idle)),
            Some(breaker) => {
                let pool = self.http1.clone();
                tokio::spawn(async move {
                    // Ready once its response body has been read; an
                    // unread body closes it instead.
                    if sender.ready().await.is_ok() {
                        keep(&pool, key, Kept::new(sender, requests, idle));
                        breaker.freed();
                    }
                });
            }
        }
    }

    /// A new CONNECT stream to `ep` as a byte stream for hyper.
    async fn tunnel(
        &self,
        ep: &Endpoint,
    ) -> Result<TokioIo<quicmesh_core::tunnel::connect::ConnectIo>, Failure> {
        self.open_stream(ep).await.map(TokioIo::new)
    }

    /// A new CONNECT stream to `ep`, as the waypoint's own identity.
    pub async fn open_stream(
        &self,
        ep: &Endpoint,
    ) -> Result<quicmesh_core::tunnel::connect::ConnectIo, Failure> {
        let svid = self
            .certs
            .svid(&self.identity)
            .await
            .map_err(|e| Failure::Identity(e.to_string()))?;
        let key = PoolKey {
            src: self.identity.clone(),
            dst: ep.identity.clone(),
            addr: SocketAddr::new(ep.addr.ip(), TUNNEL_PORT),
        };
        // The tunnel continues the request's trace (opened inside its span).
        let mut headers = http::HeaderMap::new();
        quicmesh_core::trace::inject(&tracing::Span::current(), &mut headers);
        let stream = self
            .tunnels
            .open(&key, &svid, ep.addr, headers)
            .await
            .map_err(|e| match e {
                TunnelError::Status { status, .. } => Failure::UpstreamRefused(status.as_u16()),
                e => Failure::UpstreamConnect(e.to_string()),
            })?;
        Ok(stream.into_io())
    }
}

/// Removes an endpoint's handshake gate when dropped, if it is still the
/// one its holder waited on.
struct Ungate<'a> {
    map: &'a Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    key: &'a Key,
    gate: &'a Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Ungate<'_> {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(self.key).is_some_and(|g| Arc::ptr_eq(g, self.gate)) {
            m.remove(self.key);
        }
    }
}

/// GET, HEAD or OPTIONS with an empty body: sending it twice does what
/// sending it once does (RFC 9110 §9.2.1).
fn safe_to_repeat(req: &Request<Body>) -> bool {
    use hyper::body::Body as _;
    matches!(
        *req.method(),
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    ) && req.body().size_hint().exact() == Some(0)
}

/// A copy of a bodiless request.
fn head_of(req: &Request<Body>) -> Request<Body> {
    let mut r = Request::new(crate::response::text(""));
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}
