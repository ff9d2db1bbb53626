//! Which rule of which route a request takes, and which backend serves it:
//! the waypoint decides with this, and the controller checks routes with the
//! same constructors before it sends them (what it accepts, the waypoint
//! accepts).
//! Gateway API `HTTPRoute` semantics (gateway.networking.k8s.io/v1), pure.
//!
//! Routes come compiled ([`HttpRoute`]: patterns checked and built once, by
//! the code that reads the config); a [`RouteTable`] holds the routes of
//! one parent (a Service port) with every match of every rule in precedence
//! order, so a request takes the first match that holds.
//!
//! Precedence, as the Gateway API defines it, continuing on ties:
//! 1. an `Exact` path match; then a `RegularExpression` path match (the
//!    longer pattern first; the API leaves regex precedence to
//!    implementations: quicmesh puts a deliberate pattern before any
//!    prefix, so a catch-all `PathPrefix: /` never hides it); then
//!    `PathPrefix` matches, the most characters first;
//! 2. a method match;
//! 3. the most header matches;
//! 4. the most query parameter matches;
//! 5. the oldest route (creation time), then `<namespace>/<name>`
//!    alphabetically;
//! 6. within a route, the first rule, and within a rule the first match.
//!
//! Within one match every condition must hold; a rule matches when any of
//! its matches does; a rule without matches matches every request
//! (`PathPrefix: /`). `PathPrefix` compares whole path segments (`/foo`
//! matches `/foo` and `/foo/bar`, not `/foobar`; a trailing `/` in the
//! prefix is ignored). Header names are case-insensitive and values exact
//! or a regular expression over the whole value; of several headers with
//! the name, the first is matched. Query parameter names are exact; values
//! are percent-decoded, and a parameter given several times is matched by
//! its first value. Regular expressions are Rust's `regex` (linear time,
//! size-bounded at compile) and must match the whole string.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};

mod dump;
pub mod filter;
pub mod path;
pub mod wire;

pub use filter::{Filter, HeaderModifier, Mirror, Origin, PathModifier, Redirect, Rewrite};

/// What a Service port speaks, from its app protocol (`appProtocol`, else
/// the port name's prefix; case does not matter): what the waypoint does
/// with its traffic, and whether HTTP routes can apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortProtocol {
    /// `http`, `kubernetes.io/ws`, `grpc-web` (gRPC-Web is HTTP/1.1, or
    /// any version, to its servers).
    Http1,
    /// `http2`, `grpc`, `kubernetes.io/h2c`.
    Http2,
    /// Nothing declared: HTTP or not, detected per connection.
    Undeclared,
    /// Declared as something else (`tcp`, `tls`, `https`, `mysql`...):
    /// bytes, never routed.
    Opaque,
}

impl PortProtocol {
    pub fn of(app_protocol: &str) -> Self {
        match app_protocol.to_ascii_lowercase().as_str() {
            "http" | "kubernetes.io/ws" | "grpc-web" => PortProtocol::Http1,
            "http2" | "grpc" | "kubernetes.io/h2c" => PortProtocol::Http2,
            "" => PortProtocol::Undeclared,
            _ => PortProtocol::Opaque,
        }
    }
}

/// Largest compiled size of one regular expression from a route.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Why a route could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid regular expression {pattern:?}: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("invalid path {0:?}: a path must start with '/'")]
    Path(String),
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    #[error("invalid header value for {0}")]
    HeaderValue(String),
    #[error("{0}")]
    Filter(String),
}

/// A regular expression that must match a whole string.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    re: regex::Regex,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, RouteError> {
        let re = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| RouteError::Regex {
                pattern: source.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Pattern {
            source: source.to_string(),
            re,
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// How a request's path is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum PathMatch {
    Exact(String),
    /// Whole segments; stored without a trailing `/` (except `/` itself).
    Prefix(String),
    Regex(Pattern),
}

impl PathMatch {
    pub fn exact(path: &str) -> Result<Self, RouteError> {
        check_path(path)?;
        Ok(PathMatch::Exact(path.to_string()))
    }

    pub fn prefix(prefix: &str) -> Result<Self, RouteError> {
        check_path(prefix)?;
        let trimmed = prefix.trim_end_matches('/');
        Ok(PathMatch::Prefix(if trimmed.is_empty() {
            "/".to_string()
        } else {
            trimmed.to_string()
        }))
    }

    pub fn regex(pattern: &str) -> Result<Self, RouteError> {
        Ok(PathMatch::Regex(Pattern::new(pattern)?))
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) if p == "/" => true,
            PathMatch::Prefix(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            PathMatch::Regex(re) => re.is_match(path),
        }
    }

    /// Precedence among path matches: kind first, then length.
    fn rank(&self) -> (u8, usize) {
        match self {
            PathMatch::Exact(p) => (2, p.len()),
            PathMatch::Regex(re) => (1, re.as_str().len()),
            PathMatch::Prefix(p) => (0, p.len()),
        }
    }
}

fn check_path(p: &str) -> Result<(), RouteError> {
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(RouteError::Path(p.to_string()))
    }
}

/// How a header or query value is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    Exact(String),
    Regex(Pattern),
}

impl ValueMatch {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            ValueMatch::Exact(want) => v == want,
            ValueMatch::Regex(re) => re.is_match(v),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: ValueMatch,
}

impl HeaderMatch {
    pub fn new(name: &str, value: ValueMatch) -> Result<Self, RouteError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| RouteError::HeaderName(name.to_string()))?;
        Ok(HeaderMatch { name, value })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryMatch {
    pub name: String,
    pub value: ValueMatch,
}

/// One `HTTPRouteMatch`: every condition must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMatch {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    pub method: Option<Method>,
}

impl Default for RequestMatch {
    /// `PathPrefix: /`, nothing else: every request.
    fn default() -> Self {
        RequestMatch {
            path: PathMatch::Prefix("/".into()),
            headers: Vec::new(),
            query: Vec::new(),
            method: None,
        }
    }
}

impl RequestMatch {
    /// Builds a match, keeping of several header (or query) conditions on
    /// one name only the first, as the API requires.
    pub fn new(
        path: PathMatch,
        headers: Vec<HeaderMatch>,
        query: Vec<QueryMatch>,
        method: Option<Method>,
    ) -> Self {
        let mut hs: Vec<HeaderMatch> = Vec::with_capacity(headers.len());
        for h in headers {
            if !hs.iter().any(|x| x.name == h.name) {
                hs.push(h);
            }
        }
        let mut qs: Vec<QueryMatch> = Vec::with_capacity(query.len());
        for q in query {
            if !qs.iter().any(|x| x.name == q.name) {
                qs.push(q);
            }
        }
        RequestMatch {
            path,
            headers: hs,
            query: qs,
            method,
        }
    }

    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.path.matches(req.path)
            && self.method.as_ref().is_none_or(|m| m == req.method)
            && self.headers.iter().all(|h| {
                req.headers
                    .get(&h.name)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| h.value.matches(v))
            })
            && self.query.iter().all(|q| {
                req.query_value(&q.name)
                    .is_some_and(|v| q.value.matches(&v))
            })
    }

    /// The request-level part of the precedence key (larger first).
    fn specificity(&self) -> (u8, usize, bool, usize, usize) {
        let (kind, len) = self.path.rank();
        (
            kind,
            len,
            self.method.is_some(),
            self.headers.len(),
            self.query.len(),
        )
    }
}

/// Where a backend reference points: a Service port of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendRef {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

/// A backend of a rule with its weight; `filters` apply to requests sent
/// to it only.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub target: BackendRef,
    pub weight: u32,
    pub filters: Vec<Filter>,
    /// Why the reference cannot be used (a missing Service, a reference
    /// across namespaces no grant allows, not a Service): its share of
    /// the requests is answered 500, as the Gateway API requires, and never
    /// sent anywhere.
    pub invalid: Option<String>,
}

/// `timeouts` of a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// From the request's arrival to the end of the response, retries
    /// included.
    pub request: Option<Duration>,
    /// One attempt at a backend.
    pub backend_request: Option<Duration>,
}

/// `retry` of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Response codes that are retried (5xx only, as the API allows).
    pub codes: Vec<u16>,
    /// Attempts after the first.
    pub attempts: u32,
    /// Wait before each retry (doubling, with jitter, by the caller).
    pub backoff: Duration,
}

/// One rule of a route.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rule {
    pub name: Option<String>,
    /// Empty means every request.
    pub matches: Vec<RequestMatch>,
    pub filters: Vec<Filter>,
    pub backends: Vec<Backend>,
    pub timeouts: Timeouts,
    pub retry: Option<Retry>,
}

impl Rule {
    /// The backend for a request, by weight: `roll` is uniform over
    /// `0..u64::MAX`. `None` when there is none or every weight is 0 (the
    /// caller answers 500, as the API requires).
    pub fn pick_backend(&self, roll: u64) -> Option<&Backend> {
        let total: u64 = self.backends.iter().map(|b| u64::from(b.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut at = roll % total;
        for b in &self.backends {
            let w = u64::from(b.weight);
            if at < w {
                return Some(b);
            }
            at -= w;
        }
        unreachable!("at < total")
    }
}

/// A compiled `HTTPRoute` (or `GRPCRoute`, read as one).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRoute {
    pub namespace: String,
    pub name: String,
    /// A GRPCRoute: not the same route as an HTTPRoute of that name.
    pub grpc: bool,
    /// Creation time (seconds since the epoch): the older route wins ties.
    pub created: i64,
    pub rules: Vec<Rule>,
}

/// What a request is matched on. Borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    /// The path, without the query.
    pub path: &'a str,
    /// The raw query string (after `?`), if any.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl<'a> RequestView<'a> {
    pub fn new(method: &'a Method, uri: &'a http::Uri, headers: &'a HeaderMap) -> Self {
        RequestView {
            method,
            path: uri.path(),
            query: uri.query(),
            headers,
        }
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is
    /// a space, as in forms).
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == name).then(|| decode(v))
        })
    }
}

fn decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// One match of one rule of one route, in precedence order.
#[derive(Debug, Clone)]
struct Entry {
    route: usize,
    rule: usize,
    matched: usize,
}

/// The routes of one parent, every match in precedence order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Arc<HttpRoute>>,
    entries: Vec<Entry>,
    /// A rule without matches stands for `PathPrefix: /`.
    every_request: RequestMatch,
}

/// What a request matched.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    pub route: &'a HttpRoute,
    pub rule: &'a Rule,
    /// Index of the rule in its route.
    pub rule_index: usize,
    pub matched: &'a RequestMatch,
}

impl RouteTable {
    pub fn new(routes: Vec<Arc<HttpRoute>>) -> Self {
        let every_request = RequestMatch::default();
        let mut keyed = Vec::new();
        for (ri, route) in routes.iter().enumerate() {
            for (ki, rule) in route.rules.iter().enumerate() {
                let n = rule.matches.len().max(1);
                for mi in 0..n {
                    let m = rule.matches.get(mi).unwrap_or(&every_request);
                    let (kind, len, method, headers, query) = m.specificity();
                    let key = (
                        Reverse(kind),
                        Reverse(len),
                        Reverse(method),
                        Reverse(headers),
                        Reverse(query),
                        route.created,
                        format!("{}/{}", route.namespace, route.name),
                        ki,
                        mi,
                    );
                    keyed.push((
                        key,
                        Entry {
                            route: ri,
                            rule: ki,
                            matched: mi,
                        },
                    ));
                }
            }
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        RouteTable {
            routes,
            entries: keyed.into_iter().map(|(_, e)| e).collect(),
            every_request,
        }
    }

    pub fn routes(&self) -> &[Arc<HttpRoute>] {
        &self.routes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first match, in precedence order, that holds for `req`; `None`
    /// means no route (the caller answers 404).
    pub fn select(&self, req: &RequestView<'_>) -> Option<Selected<'_>> {
        self.entries.iter().find_map(|e| {
            let route = &*self.routes[e.route];
            let rule = &route.rules[e.rule];
            let m = rule.matches.get(e.matched).unwrap_or(&self.every_request);
            m.matches(req).then_some(Selected {
                route,
                rule,
                rule_index: e.rule,
                matched: m,
            })
        })
    }
}

/// A header value from config text, checked.
pub fn header_value(name: &HeaderName, v: &str) -> Result<HeaderValue, RouteError> {
    HeaderValue::from_str(v).map_err(|_| RouteError::HeaderValue(name.to_string()))
}

#[cfg(test)]
mod tests;
