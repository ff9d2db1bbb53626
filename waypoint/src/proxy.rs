//! The waypoint's data path: a tunnelled connection arrives (the peer's SVID
//! is the source identity, the CONNECT authority the Service port it was
//! sent to, or the address of a workload that uses the waypoint for
//! traffic addressed to it: see [`workload`]); hyper serves HTTP/1.1 or HTTP/2 on it (detected from the
//! preface); each request is routed by that Service port's routes, its
//! rule's filters applied, a backend picked by weight, an endpoint by load,
//! and it is forwarded over a tunnel opened as the waypoint's own identity.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use quicmesh_core::authz::{Decision, DenyReason, Policy, Verdict};
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::lb::ewma::{Params, PeakEwma};
use quicmesh_core::tunnel::server::{
    Inbound, InboundRequest, Refused, ServeStream, Target, Upstream,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::authz::{Access, Client, RequestFacts};
use crate::metrics::RequestMetrics;
use crate::resilience::{self, Resilience};
use crate::response::{text, Body, Failure};
use crate::retry::Budgets;

mod downstream;
mod mirror;
mod request;
mod tcp;
mod upgrade;
pub mod workload;

use request::*;

use crate::upstream::{Endpoint, Protocol, Upstreams};
pub use mirror::{MAX_MIRRORS_IN_FLIGHT, MIRROR_TIMEOUT};
use quicmesh_core::route::{
    Backend, BackendRef, Filter, Origin, RequestMatch, RequestView, RouteTable,
};
use quicmesh_core::traffic::Effective;
pub use request::{FORWARDED_CLIENT_CERT, MAX_KEPT_BYTES, MAX_RETRY_BODY};

/// Bounds on what a client can make the waypoint hold, per connection.
/// Request head: bytes (HTTP/1.1 read buffer; HTTP/2 header list).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Request head: header fields (HTTP/1.1).
pub const MAX_HEADERS: usize = 100;
/// A request head must arrive within this (HTTP/1.1; HTTP/2 streams are
/// bounded by `MAX_STREAMS`).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// HTTP/2 pings to an idle client, and how long it has to answer.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Concurrent HTTP/2 requests per connection.
pub const MAX_STREAMS: u32 = 256;
/// HTTP/2 streams reset by the client before the waypoint saw them
/// ("rapid reset", CVE-2023-44487) tolerated before the connection closes.
pub const MAX_PENDING_RESETS: usize = 20;

/// A Service port the waypoint serves: where requests to it go.
#[derive(Debug, Clone)]
pub struct Parent {
    pub service: BackendRef,
    /// The host name clients use (`<name>.<namespace>.svc.<domain>`), for
    /// redirects that keep the host.
    pub host: String,
    /// Routes attached to the Service (port) from its own namespace
    /// (producer routes); none: straight to the Service's own endpoints.
    pub routes: RouteTable,
    /// Consumer routes by their namespace: a client of that namespace is
    /// routed by them, and by them only (Gateway API, GEP-1294).
    pub consumers: HashMap<String, RouteTable>,
    /// What the port speaks: HTTP (routed), opaque TCP (passed through to
    /// an endpoint), or undeclared (detected per connection).
    pub protocol: Protocol,
    /// The authorization policies attached to this waypoint that apply to
    /// its requests (its Gateway's, the Service's, the GatewayClass's).
    pub policies: Vec<Arc<Policy>>,
}

impl Parent {
    /// The `service` label of its metrics: `namespace/name:port` for a
    /// Service port; for any workload's address, `namespace/pod-ip`, one
    /// series for them all: neither a client trying port after port nor
    /// pods coming and going add series (the access log has the address).
    pub fn metric_label(&self) -> String {
        let s = &self.service;
        if workload::backend_ip(&s.name).is_some() {
            format!("{}/pod-ip", s.namespace)
        } else {
            format!("{}/{}:{}", s.namespace, s.name, s.port)
        }
    }

    /// The routes for a client of `namespace` (None: of no namespace of
    /// this mesh).
    pub fn routes_for(&self, namespace: Option<&str>) -> &RouteTable {
        namespace
            .and_then(|ns| self.consumers.get(ns))
            .unwrap_or(&self.routes)
    }
}

/// What the waypoint knows of the mesh.
pub trait Directory: Send + Sync + 'static {
    /// What a CONNECT authority addresses, if this waypoint serves it: a
    /// Service port (VIP:port), or a workload's address (podIP:port) when
    /// the workload uses this waypoint for traffic addressed to it (a
    /// parent without routes, its [`Parent::service`] the backend that
    /// stands for that pod and port, see [`workload`]).
    fn parent(&self, authority: SocketAddr) -> Option<Arc<Parent>>;
    /// The ready endpoints of a backend: a Service port's, or the one pod
    /// of a workload address's parent.
    fn endpoints(&self, backend: &BackendRef) -> Vec<Endpoint>;
    /// The policies of the workload with uid `workload` (an endpoint's);
    /// None for a workload the waypoint has no record of.
    fn access(&self, workload: &str) -> Option<Arc<Access>>;
    /// The policies attached to the waypoint for requests to `authority`
    /// now (a long-lived connection's requests see policy changes); None
    /// when it is no longer a destination the waypoint serves.
    fn attached(&self, authority: SocketAddr) -> Option<Vec<Arc<Policy>>> {
        self.parent(authority).map(|p| p.policies.clone())
    }
    /// Whether any policy could apply to a request (else its facts are
    /// not collected for them).
    fn any_policy(&self) -> bool {
        true
    }
    /// The RequestAuthentications in effect (none by default).
    fn authentication(&self) -> Arc<crate::authn::Table> {
        Arc::default()
    }
    /// Told of every change of what it knows (the value is the config's
    /// version): a TCP connection passed through decides its policies
    /// again then. A directory that never changes (the default) hands out
    /// a receiver whose sender is gone.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
    /// The TrafficPolicy settings of a Service port, if any.
    fn traffic(&self, _service: &BackendRef) -> Option<Arc<Effective>> {
        None
    }
}

/// A [`Directory`] from explicit tables (what the waypoint's config builds).
#[derive(Debug, Default, Clone)]
pub struct Tables {
    /// Service ports, by VIP and port.
    pub parents: HashMap<SocketAddr, Arc<Parent>>,
    pub endpoints: HashMap<BackendRef, Vec<Endpoint>>,
    /// Workloads whose own addresses (any port) are destinations.
    pub workloads: workload::Addressed,
    /// By workload uid.
    pub access: HashMap<String, Arc<Access>>,
    /// Attached to the waypoint itself (its Gateway, the GatewayClass):
    /// what applies to traffic addressed to workloads.
    pub waypoint_policies: Vec<Arc<Policy>>,
    /// No policy reaches any destination, so a request's facts need not
    /// be collected for them (false, the default, collects them).
    pub policy_free: bool,
    /// RequestAuthentications.
    pub authn: Arc<crate::authn::Table>,
    /// TrafficPolicy settings, by Service port.
    pub traffic: HashMap<BackendRef, Arc<Effective>>,
}

impl Directory for Tables {
    fn parent(&self, authority: SocketAddr) -> Option<Arc<Parent>> {
        match self.parents.get(&authority) {
            Some(p) => Some(p.clone()),
            None => self.workloads.parent(authority, &self.waypoint_policies),
        }
    }
    fn endpoints(&self, backend: &BackendRef) -> Vec<Endpoint> {
        match self.endpoints.get(backend) {
            Some(eps) => eps.clone(),
            None => self.workloads.endpoint(backend).into_iter().collect(),
        }
    }
    fn access(&self, workload: &str) -> Option<Arc<Access>> {
        self.access.get(workload).cloned()
    }
    fn any_policy(&self) -> bool {
        !self.policy_free
    }
    fn authentication(&self) -> Arc<crate::authn::Table> {
        self.authn.clone()
    }
    fn traffic(&self, service: &BackendRef) -> Option<Arc<Effective>> {
        self.traffic.get(service).cloned()
    }
}

/// A [`Directory`] whose tables are replaced as a whole, each with a
/// version (what the config stream applies), telling [`Directory::changes`]
/// of each.
#[derive(Debug)]
pub struct Versioned {
    current: std::sync::RwLock<(u64, Arc<Tables>)>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Versioned {
    fn default() -> Self {
        Versioned {
            current: std::sync::RwLock::new((0, Arc::default())),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Versioned {
    pub fn new(tables: Tables) -> Self {
        let v = Versioned::default();
        v.set(0, tables);
        v
    }

    /// Puts `tables` in effect as `version`, then says so.
    pub fn set(&self, version: u64, tables: Tables) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (version, Arc::new(tables));
        self.changed.send_replace(version);
    }

    pub fn tables(&self) -> Arc<Tables> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    pub fn version(&self) -> u64 {
        self.current.read().unwrap_or_else(|e| e.into_inner()).0
    }

    /// The version and the tables, read together.
    pub fn snapshot(&self) -> (u64, Arc<Tables>) {
        let c = self.current.read().unwrap_or_else(|e| e.into_inner());
        (c.0, c.1.clone())
    }
}

impl Directory for Versioned {
    fn parent(&self, authority: SocketAddr) -> Option<Arc<Parent>> {
        self.tables().parent(authority)
    }
    fn endpoints(&self, backend: &BackendRef) -> Vec<Endpoint> {
        self.tables().endpoints(backend)
    }
    fn access(&self, workload: &str) -> Option<Arc<Access>> {
        self.tables().access(workload)
    }
    fn attached(&self, authority: SocketAddr) -> Option<Vec<Arc<Policy>>> {
        self.tables().attached(authority)
    }
    fn any_policy(&self) -> bool {
        self.tables().any_policy()
    }
    fn authentication(&self) -> Arc<crate::authn::Table> {
        self.tables().authn.clone()
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
    fn traffic(&self, service: &BackendRef) -> Option<Arc<Effective>> {
        self.tables().traffic(service)
    }
}

/// The waypoint.
pub struct Waypoint<D> {
    identity: SpiffeId,
    directory: Arc<D>,
    upstreams: Arc<Upstreams>,
    /// Endpoint choice: latency estimates × requests in flight.
    balancer: Arc<PeakEwma<SocketAddr>>,
    /// Requests so far (every `FORGET_EVERY`th prunes the balancer).
    requests: std::sync::atomic::AtomicU64,
    /// Cancelled to drain: connections take no new requests.
    drain: CancellationToken,
    pub metrics: Arc<RequestMetrics>,
    budgets: Budgets,
    mirror_slots: Arc<tokio::sync::Semaphore>,
    /// [`MAX_KEPT_BYTES`] in KiB units.
    kept_bytes: Arc<tokio::sync::Semaphore>,
    /// TrafficPolicy state (buckets, ejections, breakers) per Service port.
    resilience: Resilience,
}

/// How often the balancer forgets endpoints no longer in use.
const FORGET_EVERY: u64 = 4096;

/// One tunnelled connection's context for its requests.
struct Conn {
    peer: SpiffeId,
    /// The peer as policies see it.
    client: Client,
    authority: SocketAddr,
    parent: Arc<Parent>,
    /// The tunnel stream's trace context: the parent of its requests'
    /// spans unless a request carries its own `traceparent`.
    trace: Option<quicmesh_core::trace::Context>,
}

impl<D: Directory> Waypoint<D> {
    pub fn new(identity: SpiffeId, directory: Arc<D>, upstreams: Upstreams) -> Arc<Self> {
        Arc::new(Waypoint {
            identity,
            directory,
            upstreams: Arc::new(upstreams),
            balancer: PeakEwma::new(Params::default()),
            requests: Default::default(),
            drain: CancellationToken::new(),
            metrics: Arc::default(),
            budgets: Budgets::default(),
            mirror_slots: Arc::new(tokio::sync::Semaphore::new(MAX_MIRRORS_IN_FLIGHT)),
            kept_bytes: Arc::new(tokio::sync::Semaphore::new(MAX_KEPT_BYTES / 1024)),
            resilience: Resilience::default(),
        })
    }

    /// The TrafficPolicy state being enforced (ejected endpoints,
    /// requests in flight and pending, buckets), for the admin dump.
    pub fn resilience_dump(&self) -> serde_json::Value {
        self.resilience.dump()
    }

    /// Stops taking requests: every connection finishes those in flight
    /// (HTTP/2 GOAWAY, HTTP/1.1 `Connection: close`) and ends.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Answers one request: forwarded, or the waypoint's own answer.
    async fn handle(&self, conn: &Conn, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let mut log = RequestLog::default();
        // The request's trace span (when traces are on): continues the
        // request's `traceparent`, else the tunnel stream's trace.
        let span = tracing::info_span!(
            "request",
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            url.path = %path,
            network.protocol.name = "http",
            network.protocol.version = version_label(req.version()),
            server.address = %conn.authority.ip(),
            server.port = i64::from(conn.authority.port()),
            user_agent.original = req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or(""),
            http.response.status_code = tracing::field::Empty,
            quicmesh.source.principal = %conn.peer,
            quicmesh.service = %conn.parent.metric_label(),
            quicmesh.route = tracing::field::Empty,
            quicmesh.upstream = tracing::field::Empty,
            quicmesh.retries = tracing::field::Empty,
            quicmesh.flag = tracing::field::Empty,
            enduser.id = tracing::field::Empty,
        );
        quicmesh_core::trace::continue_from(&span, req.headers(), conn.trace.as_ref());
        let forwarded = self
            .forward(conn, req, &mut log)
            .instrument(span.clone())
            .await;
        let resp = match forwarded {
            Ok(r) => r,
            // Refusals a TrafficPolicy asks for are in the access log.
            Err(f @ (Failure::RateLimited(_) | Failure::FaultAbort(_))) => {
                log.flag = f.flag();
                f.response()
            }
            Err(f) => {
                tracing::warn!(
                    src.identity = %conn.peer,
                    dst.service = %format!("{}/{}:{}", conn.parent.service.namespace, conn.parent.service.name, conn.parent.service.port),
                    %method,
                    path,
                    route = log.route,
                    flag = f.flag(),
                    error = %f,
                    "request failed at the waypoint"
                );
                log.flag = f.flag();
                if let Failure::Denied(decision) = &f {
                    log.authz = decision.clone();
                }
                f.response()
            }
        };
        // A request counts against its backend's breaker until its
        // answer is through.
        let resp = match log.hold.take() {
            Some(slot) => {
                resp.map(|b| BodyExt::boxed(crate::resilience::breaker::Guarded::new(b, slot)))
            }
            None => resp,
        };
        self.metrics.request(
            &conn.peer,
            log.upstream_identity.as_ref(),
            conn.parent.metric_label(),
            &log.route,
            &method,
            resp.status().as_u16(),
            log.flag,
            started.elapsed(),
        );
        if !span.is_disabled() {
            let status = resp.status().as_u16();
            span.record("http.response.status_code", i64::from(status));
            // HTTP semantic conventions: a server span fails on 5xx only.
            if status >= 500 {
                span.record("otel.status_code", "ERROR");
            }
            span.record("quicmesh.route", log.route.as_str());
            span.record("quicmesh.upstream", log.upstream.as_str());
            span.record("quicmesh.retries", i64::from(log.retries));
            span.record("quicmesh.flag", log.flag);
            if !log.principal.is_empty() {
                span.record("enduser.id", log.principal.as_str());
            }
        }
        // The access log: its own target, so that `RUST_LOG=info,waypoint::access=off`
        // turns it off without silencing the rest.
        tracing::event!(
            target: "waypoint::access",
            tracing::Level::INFO,
            src.identity = %conn.peer,
            dst.addr = %conn.authority,
            dst.service = %conn.parent.metric_label(),
            %method,
            path,
            status = resp.status().as_u16(),
            route = log.route,
            upstream = log.upstream,
            principal = log.principal,
            flag = log.flag,
            authz = log.authz,
            fault = log.fault,
            retries = log.retries,
            duration_ms = started.elapsed().as_millis() as u64,
            "request"
        );
        resp
    }

    async fn forward(
        &self,
        conn: &Conn,
        mut req: Request<Incoming>,
        log: &mut RequestLog,
    ) -> Result<Response<Body>, Failure> {
        // A WebSocket upgrade is known before the hop-by-hop headers that
        // ask for it go.
        let websocket = upgrade::websocket(&req);
        // The client's hop-by-hop headers go first, so that what the
        // rule's filters set cannot be removed through `Connection`.
        strip_hop_by_hop(req.headers_mut());
        vouch_for_source(req.headers_mut(), &self.identity, &conn.peer);
        // The backend continues this request's trace (when traces are on).
        quicmesh_core::trace::inject(&tracing::Span::current(), req.headers_mut());
        // Routes match the canonical path, and the backend gets that path:
        // `/a/../admin` or `/%61dmin` cannot slip past a rule for `/admin`.
        canonical_path(&mut req)?;
        // JWT authentication, before routing (routes may match the claims'
        // headers). The verified token, if any, goes on with the request
        // (authorization's requestPrincipals).
        let verified = self.authenticate(conn, &mut req).await?;
        if let Some(v) = &verified {
            log.principal = v.principal();
        }
        // What policies read, as authentication left the request and
        // before the route's filters change it; then the policies attached
        // to the waypoint decide, before routing.
        let facts = self
            .directory
            .any_policy()
            .then(|| RequestFacts::of(&req, verified));
        self.authorize_attached(conn, facts.as_ref())?;
        let parent = &conn.parent;
        let routes = parent.routes_for(conn.client.namespace());
        let implicit;
        let (rule, matched) = if routes.is_empty() {
            implicit = (implicit_rule(&parent.service), RequestMatch::default());
            (&implicit.0, &implicit.1)
        } else {
            let view = RequestView::new(req.method(), req.uri(), req.headers());
            let sel = routes.select(&view).ok_or(Failure::NoRoute)?;
            log.route = format!("{}/{}", sel.route.namespace, sel.route.name);
            log.grpc_route = sel.route.grpc;
            (sel.rule, sel.matched)
        };
        // The addressed Service's TrafficPolicy: body length, rate limit,
        // faults; its request timeout for a route without one.
        let policy = self
            .resilience
            .of(&parent.service, self.directory.traffic(&parent.service));
        let body_limit = match &policy {
            Some(p) => {
                let service = parent.metric_label();
                resilience::admit_request(
                    p,
                    &service,
                    &log.route,
                    &conn.peer,
                    &req,
                    &self.metrics,
                    &mut log.fault,
                )
                .await?
            }
            None => None,
        };
        let timeouts = resilience::timeouts(&rule.timeouts, policy.as_deref());
        // The rule's filters, in order; the response's after the answer.
        let mut response_headers = Vec::new();
        let mut mirrors = Vec::new();
        for f in &rule.filters {
            match f {
                Filter::RequestHeaders(m) => m.apply(req.headers_mut()),
                Filter::ResponseHeaders(m) => response_headers.push(m),
                Filter::Redirect(r) => {
                    let host = request_host(&req).unwrap_or_else(|| parent.host.clone());
                    let from = Origin {
                        scheme: "http",
                        host: &host,
                        port: parent.service.port,
                        path: req.uri().path(),
                        query: req.uri().query(),
                    };
                    let location = r.location(&from, &matched.path);
                    let mut resp = Response::new(text(""));
                    *resp.status_mut() = StatusCode::from_u16(r.status).expect("checked");
                    resp.headers_mut().insert(
                        http::header::LOCATION,
                        http::HeaderValue::from_str(&location)
                            .map_err(|_| Failure::BadRedirect(location.clone()))?,
                    );
                    return Ok(resp);
                }
                Filter::Rewrite(rw) => rewrite(&mut req, rw, &matched.path),
                // Copied once the request is complete (below).
                Filter::Mirror(m) if m.sampled(rand::random::<u64>()) => mirrors.push(m),
                Filter::Mirror(_) => {}
            }
        }
        // Mirrors get the request as the rule's filters left it, not the
        // primary backend's own.
        let mirror_head = (!mirrors.is_empty()).then(|| head_of(&req));
        let backend: &Backend = rule
            .pick_backend(rand::random::<u64>())
            .ok_or(Failure::NoBackend)?;
        if let Some(why) = &backend.invalid {
            return Err(Failure::InvalidBackend(why.clone()));
        }
        // A backend's own filters (the controller accepts header modifiers
        // only there).
        for f in &backend.filters {
            match f {
                Filter::RequestHeaders(m) => m.apply(req.headers_mut()),
                Filter::ResponseHeaders(m) => response_headers.push(m),
                _ => {}
            }
        }
        if let Some(value) = websocket {
            // One try, no mirrors; the timeouts bound the backend's answer.
            let bound = match (timeouts.request, timeouts.backend_request) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let req = req.map(crate::response::boxed);
            let asked = upgrade::Asked {
                value,
                bound,
                facts: facts.as_ref(),
            };
            let mut resp = self.upgrade(conn, backend, req, asked, log).await?;
            for m in &response_headers {
                m.apply(resp.headers_mut());
            }
            return Ok(resp);
        }
        let version_in = req.version();
        // The backend's TrafficPolicy: its circuit breaker, connection
        // limits and timeouts, outlier detection (in `pick`).
        let target = self
            .resilience
            .of(&backend.target, self.directory.traffic(&backend.target));
        let target_label = resilience::label(&backend.target);
        let limits = resilience::limits(target.as_deref());
        log.hold = resilience::admit_backend(target.as_deref(), &target_label, &self.metrics)?;
        let n = self
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % FORGET_EVERY == FORGET_EVERY - 1 {
            self.balancer.forget_idle(Instant::now());
            self.budgets.forget_idle(Instant::now());
            self.resilience
                .forget(|s| self.directory.traffic(s).is_some());
        }
        // `timeouts.request` bounds every attempt together (and reading
        // a body kept for them); each attempt is bounded by
        // `backendRequest` too.
        let deadline = timeouts.request.map(|t| (Instant::now() + t, t));
        // For retries and mirrors, a request whose body is small and
        // complete is kept to be sent again; any other is sent once, and
        // not mirrored.
        // Kept bodies share a waypoint-wide allowance; without room, the
        // request is sent once and not mirrored.
        let wants_keep = rule.retry.is_some() || !mirrors.is_empty();
        let room = match replayable(&req) {
            Some(len) if wants_keep => self
                .kept_bytes
                .clone()
                .try_acquire_many_owned(kept_units(len))
                .ok(),
            _ => None,
        };
        let can_keep = room.is_some();
        if !mirrors.is_empty() && !can_keep {
            self.metrics
                .mirrored("not_replayable", mirrors.len() as u64);
            mirrors.clear();
        }
        let retry = rule.retry.as_ref().filter(|_| can_keep);
        let (parts, body) = req.into_parts();
        let mut cut_off = None;
        let (body, kept) = if can_keep {
            // Bounded in time like a request head when no request
            // timeout says otherwise: a client trickling a body it
            // announced cannot hold the allowance.
            let (at, t) = deadline.unwrap_or((Instant::now() + HEADER_TIMEOUT, HEADER_TIMEOUT));
            let collected = tokio::time::timeout_at(at.into(), body.collect())
                .await
                .map_err(|_| Failure::Timeout(t))?;
            let bytes = collected
                .map_err(|e| Failure::UpstreamReset(format!("reading the request body: {e}")))?
                .to_bytes();
            (text(bytes.clone()), Some(bytes))
        } else {
            let (body, flag) = resilience::limit_body(body, body_limit);
            cut_off = flag;
            (body, None)
        };
        let mut req = Request::from_parts(parts, body);
        if let Some(head) = &mirror_head {
            for m in mirrors {
                let bytes = kept.clone().unwrap_or_default();
                self.mirror(conn, m, copy_of(head, bytes), facts.as_ref());
            }
        }
        let _room = room;
        let route_name = log.route.clone();
        let budget = retry.map(|_| {
            self.budgets.of(&match log.grpc_route {
                true => format!("grpcroute/{route_name}"),
                false => route_name.clone(),
            })
        });
        if let Some(b) = &budget {
            b.deposit(Instant::now());
        }
        let mut attempt = 0u32;
        loop {
            let (ep, pending) = self.pick(conn, &backend.target, log, facts.as_ref())?;
            let ep = &ep;
            let version = ep.protocol.version(version_in);
            prepare_upstream(&mut req, version);
            // What is sent again if this attempt fails.
            let again = kept
                .as_ref()
                .filter(|_| retry.is_some())
                .map(|bytes| copy_of(&req, bytes.clone()));
            let bound = match (deadline, timeouts.backend_request) {
                (Some((at, whole)), Some(b)) => Some(
                    b.min(at.saturating_duration_since(Instant::now()))
                        .min(whole),
                ),
                (Some((at, _)), None) => Some(at.saturating_duration_since(Instant::now())),
                (None, b) => b,
            };
            let send = self.upstreams.send_with(ep, version, req, &limits);
            let sent = match bound {
                Some(t) => tokio::time::timeout(t, send)
                    .await
                    .unwrap_or(Err(Failure::Timeout(timeouts.request.unwrap_or(t)))),
                None => send.await,
            };
            let cut = resilience::tripped(&cut_off);
            resilience::record(
                target.as_deref(),
                &target_label,
                ep.addr,
                &sent,
                cut,
                &self.metrics,
            );
            // The body crossed `maxRequestBodyBytes`: the request was
            // aborted upstream.
            let sent = match (cut, body_limit) {
                (true, Some(limit)) if sent.is_err() => Err(Failure::BodyTooLarge(limit)),
                _ => sent,
            };
            // The response head is the latency sample; a 5xx or a failure
            // is charged as a slow answer (a cancelled request, dropped
            // with `pending`, is not charged).
            let retryable = match &sent {
                Ok(r) if r.status().is_server_error() => {
                    pending.fail();
                    retry.is_some_and(|rt| rt.codes.contains(&r.status().as_u16()))
                }
                Ok(_) => {
                    pending.done();
                    false
                }
                Err(f) => {
                    pending.fail();
                    // A try that ran out of `backendRequest` is retried;
                    // one that ran out of `timeouts.request` is final
                    // (the deadline check below).
                    matches!(
                        f,
                        Failure::UpstreamConnect(_)
                            | Failure::UpstreamRefused(_)
                            | Failure::UpstreamReset(_)
                            | Failure::Timeout(_)
                    )
                }
            };
            let (Some(rt), Some(next), true) = (retry, again, retryable) else {
                return self.answer(sent, &response_headers);
            };
            if attempt >= rt.attempts {
                return self.answer(sent, &response_headers);
            }
            let pause = rt.backoff * 2u32.saturating_pow(attempt.min(6));
            let in_time = deadline.is_none_or(|(at, _)| Instant::now() + pause < at);
            if !in_time {
                return self.answer(sent, &response_headers);
            }
            if !budget.as_ref().is_some_and(|b| b.withdraw(Instant::now())) {
                self.metrics.retried(&route_name, "budget_exhausted");
                tracing::debug!(route = %route_name, "retry budget exhausted; answering as is");
                return self.answer(sent, &response_headers);
            }
            self.metrics.retried(&route_name, "retried");
            attempt += 1;
            log.retries = attempt;
            drop(sent);
            tokio::time::sleep(pause).await;
            req = next;
        }
    }

    /// RequestAuthentication for one request ([`crate::authn`]): counted,
    /// and refusals turned into [`Failure::Unauthenticated`] (logged with
    /// their reason where every failure is).
    async fn authenticate(
        &self,
        conn: &Conn,
        req: &mut Request<Incoming>,
    ) -> Result<Option<Arc<quicmesh_core::jwt::Verified>>, Failure> {
        let table = self.directory.authentication();
        if table.authentications.is_empty() {
            return Ok(None);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        match table.authenticate(&conn.parent.service, req, now).await {
            Ok(crate::authn::Outcome::NotApplicable) => Ok(None),
            Ok(crate::authn::Outcome::Unauthenticated) => {
                self.metrics.jwt("no_token", "");
                Ok(None)
            }
            Ok(crate::authn::Outcome::Authenticated(v)) => {
                self.metrics.jwt("authenticated", "");
                Ok(Some(v))
            }
            Err(r) => {
                self.metrics.jwt("refused", r.reason);
                Err(Failure::Unauthenticated {
                    realm: request_host(req).unwrap_or_else(|| conn.parent.host.clone()),
                    reason: r.reason,
                    detail: r.detail,
                })
            }
        }
    }

    /// An endpoint of `backend` for a request of `conn`'s client: chosen by
    /// load, then authorized (refused: no latency sample, `pending` is
    /// dropped). The access log names it.
    fn pick(
        &self,
        conn: &Conn,
        backend: &BackendRef,
        log: &mut RequestLog,
        facts: Option<&RequestFacts>,
    ) -> Result<(Endpoint, quicmesh_core::lb::ewma::Pending<SocketAddr>), Failure> {
        let endpoints = self.directory.endpoints(backend);
        let mut addrs: Vec<_> = endpoints.iter().map(|e| e.addr).collect();
        // Outlier detection's ejected endpoints are not chosen.
        let state = self.resilience.of(backend, self.directory.traffic(backend));
        let open = resilience::available(state.as_deref(), &addrs);
        if let Some(open) = &open {
            addrs = open.iter().map(|i| addrs[*i]).collect();
        }
        let (i, pending) = self.balancer.choose(&addrs).ok_or_else(|| {
            Failure::NoHealthyEndpoint(format!(
                "{}/{}:{}",
                backend.namespace, backend.name, backend.port
            ))
        })?;
        let i = open.map_or(i, |open| open[i]);
        let ep = endpoints[i].clone();
        log.upstream = ep.addr.to_string();
        log.upstream_identity = Some(ep.identity.clone());
        self.authorize(conn, &ep, facts)?;
        Ok((ep, pending))
    }

    /// Decides the policies attached to the waypoint for the connection's
    /// client (a request's `facts`; None for a TCP connection).
    fn authorize_attached(&self, conn: &Conn, facts: Option<&RequestFacts>) -> Result<(), Failure> {
        let decision = match self.directory.attached(conn.authority) {
            Some(ps) => conn
                .client
                .decide_attached(&ps, conn.authority.port(), facts),
            // No longer served: nothing says what applies.
            None => Decision::deny(DenyReason::UnknownWorkload, "-"),
        };
        self.enforce(conn, None, decision)
    }

    /// Decides the endpoint's policies for the connection's client.
    fn authorize(
        &self,
        conn: &Conn,
        ep: &Endpoint,
        facts: Option<&RequestFacts>,
    ) -> Result<(), Failure> {
        let access = self.directory.access(&ep.workload);
        let decision = conn.client.decide(access.as_deref(), ep.addr.port(), facts);
        self.enforce(conn, Some(ep), decision)
    }

    /// Counts and logs a decision's audits and denial.
    fn enforce(
        &self,
        conn: &Conn,
        ep: Option<&Endpoint>,
        decision: Decision,
    ) -> Result<(), Failure> {
        let upstream = ep.map_or_else(|| "-".to_string(), |e| e.addr.to_string());
        for policy in &decision.audited {
            self.metrics
                .authz_audits
                .get_or_create(&crate::metrics::PolicyLabels {
                    policy: policy.clone(),
                })
                .inc();
            tracing::info!(%policy, src.identity = %conn.peer, dst.addr = %conn.authority, %upstream, authz = %decision, "authorization audit");
        }
        match &decision.verdict {
            Verdict::Deny { reason, policy } => {
                self.metrics
                    .authz_denials
                    .get_or_create(&crate::metrics::DenialLabels {
                        policy: policy.clone(),
                        reason: reason.label().to_string(),
                    })
                    .inc();
                Err(Failure::Denied(decision.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// A backend's answer as the client gets it: hop-by-hop headers out,
    /// the rule's response header filters applied.
    fn answer(
        &self,
        sent: Result<Response<Incoming>, Failure>,
        response_headers: &[&quicmesh_core::route::HeaderModifier],
    ) -> Result<Response<Body>, Failure> {
        let mut resp = sent?.map(crate::response::boxed);
        strip_hop_by_hop(resp.headers_mut());
        for m in response_headers {
            m.apply(resp.headers_mut());
        }
        Ok(resp)
    }
}

/// `network.protocol.version` as the HTTP semantic conventions write it.
fn version_label(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "other",
    }
}

/// What the access log says about a request beyond its head.
#[derive(Default)]
struct RequestLog {
    route: String,
    /// The verified JWT's principal (`<iss>/<sub>`), when one was.
    principal: String,
    /// The route is a GRPCRoute (its own retry budget, apart from an
    /// HTTPRoute of the same name).
    grpc_route: bool,
    upstream: String,
    /// The SPIFFE ID of the endpoint in `upstream` (`""` before one is
    /// chosen).
    upstream_identity: Option<SpiffeId>,
    flag: &'static str,
    /// A denial's decision (`deny (no_allow_match) by shop/p`): the
    /// policy is named here, never in the answer.
    authz: String,
    /// Attempts after the first.
    retries: u32,
    /// A fault injected (`delay`, `abort`).
    fault: &'static str,
    /// The request's place among its backend's requests in flight, held
    /// by its answer's body.
    hold: Option<crate::resilience::breaker::Slot>,
}

/// The waypoint as the tunnel server's [`Inbound`]: every accepted stream
/// is served here.
pub struct Server<D>(pub Arc<Waypoint<D>>);

impl<D: Directory> Inbound for Server<D> {
    fn local_identity(&self) -> SpiffeId {
        self.0.identity.clone()
    }

    /// Takes a connection for a destination this waypoint serves (a
    /// Service port, or the address of a workload that uses it); refuses
    /// any other with 403 `not_served`, and a peer whose trust domain is no
    /// longer trusted (its federation removed while its QUIC connection
    /// lives on) with 403 `untrusted_trust_domain`.
    async fn connect(&self, req: &InboundRequest) -> Result<Upstream, Refused> {
        if !self.0.upstreams.trusts(req.peer.trust_domain()) {
            return Err(Refused::new(
                StatusCode::FORBIDDEN,
                "untrusted_trust_domain",
                format!(
                    "{}: no bundle vouches for its trust domain any more",
                    req.peer
                ),
            ));
        }
        let parent = self.0.directory.parent(req.authority).ok_or_else(|| {
            Refused::new(
                StatusCode::FORBIDDEN,
                "not_served",
                format!(
                    "{} is not a destination this waypoint serves",
                    req.authority
                ),
            )
        })?;
        let conn = Arc::new(Conn {
            peer: req.peer.clone(),
            client: Client::new(&req.peer, req.peer_addr, self.0.identity.trust_domain()),
            authority: req.authority,
            parent,
            // Called inside the tunnel stream's span.
            trace: quicmesh_core::trace::context_of(&tracing::Span::current()),
        });
        let wp = self.0.clone();
        let serve: ServeStream = Box::new(move |stream, stop| {
            Box::pin(async move { wp.serve_stream(conn, stream.into_io(), stop).await })
        });
        Ok(Upstream {
            target: Target::Serve(serve),
            stop: self.0.drain.child_token(),
            authz: "allow".into(),
            guard: Box::new(()),
        })
    }
}
