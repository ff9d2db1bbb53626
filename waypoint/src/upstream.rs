//! The waypoint's side toward backends: HTTP over tunnels it opens as its
//! own identity to each chosen endpoint. HTTP/2 connections are shared by
//! every request to an endpoint (multiplexed); HTTP/1.1 connections are
//! kept idle per endpoint and reused. Each connection is one CONNECT
//! stream on the tunnel pool, which itself pools QUIC connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use quicmesh_core::identity::certs::CertManager;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::tunnel::client::{Pool, PoolKey, TunnelError};
use quicmesh_core::tunnel::TUNNEL_PORT;

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
    http2: Mutex<HashMap<Endpoint, http2::SendRequest<Body>>>,
    /// One HTTP/2 handshake at a time per endpoint: concurrent first
    /// requests wait for it and share the connection.
    connecting: Mutex<HashMap<Endpoint, Arc<tokio::sync::Mutex<()>>>>,
    http1: Mutex<HashMap<Endpoint, Vec<http1::SendRequest<Body>>>>,
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
            http1: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `req` to `ep` and returns the response head (its body streams).
    pub async fn send(
        &self,
        ep: &Endpoint,
        version: Version,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, Failure> {
        match version {
            Version::Http2 => {
                let mut sender = self.http2_sender(ep).await?;
                sender.send_request(req).await.map_err(Failure::upstream)
            }
            Version::Http1 => {
                // A kept connection the backend closed just before it was
                // reused hands the request back unsent: send it once more
                // on a new connection (a sent one is never re-sent).
                let (mut sender, reused) = self.http1_sender(ep).await?;
                // A request without a body that is safe to repeat may also
                // go again when the kept connection broke after it was
                // written (the backend closed it as the request went out):
                // keep its head.
                let head = (reused && safe_to_repeat(&req)).then(|| head_of(&req));
                let resp = match sender.try_send_request(req).await {
                    Ok(r) => r,
                    Err(mut e) => match (e.take_message(), head) {
                        (Some(req), _) if reused => {
                            tracing::debug!(error = %e.into_error(), "kept connection was gone; sending on a new one");
                            sender = self.new_http1(ep).await?;
                            sender.send_request(req).await.map_err(Failure::upstream)?
                        }
                        (None, Some(req)) => {
                            tracing::debug!(error = %e.into_error(), "kept connection broke under a request safe to repeat; sending it on a new one");
                            sender = self.new_http1(ep).await?;
                            sender.send_request(req).await.map_err(Failure::upstream)?
                        }
                        _ => return Err(Failure::upstream(e.into_error())),
                    },
                };
                self.put_back(ep, sender);
                Ok(resp)
            }
        }
    }

    fn live_http2(&self, ep: &Endpoint) -> Option<http2::SendRequest<Body>> {
        let mut m = self.http2.lock().expect("not poisoned");
        match m.get(ep) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                m.remove(ep);
                None
            }
            None => None,
        }
    }

    async fn http2_sender(&self, ep: &Endpoint) -> Result<http2::SendRequest<Body>, Failure> {
        if let Some(s) = self.live_http2(ep) {
            return Ok(s);
        }
        let gate = self
            .connecting
            .lock()
            .expect("not poisoned")
            .entry(ep.clone())
            .or_default()
            .clone();
        let _one = gate.lock().await;
        // The gate goes once this handshake is done, whatever its outcome:
        // endpoints tried once (a client may name any port of a pod
        // address) leave nothing behind.
        let _gone = Ungate {
            map: &self.connecting,
            ep,
            gate: &gate,
        };
        if let Some(s) = self.live_http2(ep) {
            return Ok(s);
        }
        let io = self.tunnel(ep).await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(Failure::upstream)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        self.http2
            .lock()
            .expect("not poisoned")
            .insert(ep.clone(), sender.clone());
        Ok(sender)
    }

    /// A kept connection that is ready (`true`), or a new one.
    async fn http1_sender(
        &self,
        ep: &Endpoint,
    ) -> Result<(http1::SendRequest<Body>, bool), Failure> {
        {
            let mut idle = self.http1.lock().expect("not poisoned");
            if let Some(list) = idle.get_mut(ep) {
                list.retain(|s| !s.is_closed());
                let found = list
                    .iter()
                    .position(|s| s.is_ready())
                    .map(|i| list.swap_remove(i));
                if list.is_empty() {
                    idle.remove(ep);
                }
                if let Some(s) = found {
                    return Ok((s, true));
                }
            }
        }
        Ok((self.new_http1(ep).await?, false))
    }

    async fn new_http1(&self, ep: &Endpoint) -> Result<http1::SendRequest<Body>, Failure> {
        let io = self.tunnel(ep).await?;
        let (sender, conn) = http1::handshake(io).await.map_err(Failure::upstream)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(sender)
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
    /// response body has been read).
    fn put_back(&self, ep: &Endpoint, sender: http1::SendRequest<Body>) {
        let mut idle = self.http1.lock().expect("not poisoned");
        let list = idle.entry(ep.clone()).or_default();
        list.retain(|s| !s.is_closed());
        if list.len() < MAX_IDLE_HTTP1 {
            list.push(sender);
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
        let stream = self
            .tunnels
            .open(&key, &svid, ep.addr, http::HeaderMap::new())
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
    map: &'a Mutex<HashMap<Endpoint, Arc<tokio::sync::Mutex<()>>>>,
    ep: &'a Endpoint,
    gate: &'a Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Ungate<'_> {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(self.ep).is_some_and(|g| Arc::ptr_eq(g, self.gate)) {
            m.remove(self.ep);
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
