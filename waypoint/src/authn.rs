//! JWT authentication at the waypoint (RequestAuthentication,
//! docs/authentication.md), decided per request before routing:
//!
//! 1. The RequestAuthentications that apply to the destination: the mesh's
//!    (root namespace, no targets), the waypoint's namespace's (no
//!    targets), and those that name the waypoint's Gateway or the Service
//!    addressed. None: nothing is checked, nothing is touched.
//! 2. The headers their rules write claims to are removed from the request
//!    first, whatever follows: a client cannot send its own.
//! 3. An invalid one among them refuses the request (401).
//! 4. Tokens are looked for where their rules say (headers with a prefix,
//!    query parameters). None: the request goes on unauthenticated (what
//!    authorization makes of that is its business). More than one: 401.
//! 5. The token must verify ([`quicmesh_core::jwt`]) for a rule whose
//!    issuer it names, with that rule's keys (inline, or fetched from its
//!    `jwksUri`: a `kid` the fetched set lacks asks for it again, at most
//!    once per 30 s; before the first fetch succeeded, no token of that
//!    issuer is accepted). Otherwise: 401.
//! 6. Verified: the rule's claims are written to their headers (values that
//!    cannot be header values are left out), the token is removed unless
//!    the rule forwards it, and the [`Verified`] result goes on with the
//!    request.
//!
//! Pure but for [`KeySource`], which hands out fetched keys.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Request};
use quicmesh_core::jwt::{self, Jwks, Refusal, Token, Verified};
use quicmesh_core::route::BackendRef;
use quicmesh_proto::config::{Authentication as Proto, AuthenticationScope};

/// Fetched key sets, by `jwksUri`.
pub trait KeySource: Send + Sync {
    /// The keys last fetched from `uri`; None before a fetch succeeded.
    fn keys(&self, uri: &str) -> Option<Arc<Jwks>>;
    /// Fetches `uri` again now if it was not in the last 30 s, and says
    /// whether that brought keys; false at once otherwise.
    fn refresh<'a>(&'a self, uri: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
}

/// No fetched keys (a table built without a fetcher: tests, hand-fed
/// waypoints): tokens of a `jwksUri` rule are never accepted.
pub struct NoKeys;

impl KeySource for NoKeys {
    fn keys(&self, _: &str) -> Option<Arc<Jwks>> {
        None
    }
    fn refresh<'a>(&'a self, _: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(std::future::ready(false))
    }
}

/// Where a rule's keys are.
#[derive(Debug, Clone)]
pub enum Keys {
    Inline(Arc<Jwks>),
    /// Fetched by the waypoint; how often (seconds).
    Remote {
        uri: String,
        refresh: u32,
    },
    /// The controller sent a document that does not parse (it checks them;
    /// a newer waypoint format?): nothing of this rule is accepted.
    Unusable(String),
}

/// Where a token is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Header { name: HeaderName, prefix: String },
    Param(String),
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub jwt: jwt::Rule,
    pub keys: Keys,
    pub locations: Vec<Location>,
    pub outputs: Vec<(HeaderName, String)>,
    pub forward: bool,
}

/// One RequestAuthentication, as the waypoint runs it.
#[derive(Debug, Clone)]
pub struct Authentication {
    /// `namespace/name`.
    pub name: String,
    pub namespace: String,
    pub scope: AuthenticationScope,
    /// (kind, name): `Gateway` or `Service`.
    pub targets: Vec<(String, String)>,
    pub rules: Vec<Rule>,
    pub invalid: Option<String>,
}

impl Authentication {
    /// Builds it from the controller's resource. Never fails: what cannot
    /// be used makes it invalid (it then refuses what it targets).
    pub fn from_proto(a: &Proto) -> Self {
        let mut invalid = Some(a.invalid.clone()).filter(|s| !s.is_empty());
        let mut rules = Vec::new();
        for (i, r) in a.rules.iter().enumerate() {
            match rule(r) {
                Ok(r) => rules.push(r),
                Err(why) => {
                    invalid.get_or_insert(format!("rules[{i}]: {why}"));
                }
            }
        }
        let scope = match a.scope() {
            AuthenticationScope::Unspecified => AuthenticationScope::Namespace,
            s => s,
        };
        Authentication {
            name: format!("{}/{}", a.namespace, a.name),
            namespace: a.namespace.clone(),
            scope,
            targets: a
                .targets
                .iter()
                .map(|t| (t.kind.clone(), t.name.clone()))
                .collect(),
            rules: if invalid.is_some() { Vec::new() } else { rules },
            invalid,
        }
    }

    /// Whether it applies to requests for `service` at the waypoint
    /// `waypoint` (namespace, Gateway name; None: a waypoint of no scope,
    /// whose namespace is taken as the Service's).
    pub fn applies(&self, waypoint: Option<(&str, &str)>, service: &BackendRef) -> bool {
        let ns = waypoint.map_or(service.namespace.as_str(), |w| w.0);
        match self.scope {
            AuthenticationScope::Mesh => true,
            AuthenticationScope::Targets => {
                self.targets.iter().any(|(kind, name)| match kind.as_str() {
                    "Gateway" => waypoint.is_some_and(|w| w.0 == self.namespace && w.1 == name),
                    "Service" => service.namespace == self.namespace && &service.name == name,
                    _ => false,
                })
            }
            _ => self.namespace == ns,
        }
    }
}

fn rule(r: &quicmesh_proto::config::JwtRule) -> Result<Rule, String> {
    let keys = if !r.jwks.is_empty() {
        match Jwks::parse(r.jwks.as_bytes()) {
            Ok(k) => Keys::Inline(Arc::new(k)),
            Err(e) => Keys::Unusable(e.to_string()),
        }
    } else if !r.jwks_uri.is_empty() {
        Keys::Remote {
            uri: r.jwks_uri.clone(),
            refresh: r.jwks_refresh_seconds,
        }
    } else {
        return Err("no keys (neither jwks nor jwks_uri)".into());
    };
    let mut locations = Vec::new();
    for h in &r.from_headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("{:?} is not a header name", h.name))?;
        locations.push(Location::Header {
            name,
            prefix: h.prefix.clone(),
        });
    }
    locations.extend(r.from_params.iter().cloned().map(Location::Param));
    let outputs = r
        .output_claim_to_headers
        .iter()
        .map(|o| {
            HeaderName::from_bytes(o.header.as_bytes())
                .map(|h| (h, o.claim.clone()))
                .map_err(|_| format!("{:?} is not a header name", o.header))
        })
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        jwt: jwt::Rule {
            issuer: r.issuer.clone(),
            audiences: r.audiences.clone(),
            clock_skew: u64::from(r.clock_skew_seconds),
        },
        keys,
        locations,
        outputs,
        forward: r.forward_original_token,
    })
}

/// Every RequestAuthentication the waypoint was sent, and where fetched
/// keys come from.
#[derive(Clone)]
pub struct Table {
    pub authentications: Vec<Arc<Authentication>>,
    /// The waypoint's namespace and Gateway (None: serve any).
    pub waypoint: Option<(String, String)>,
    pub keys: Arc<dyn KeySource>,
    /// Tokens whose signature verified, with the key set it verified with.
    pub signatures: Arc<Signatures>,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            authentications: Vec::new(),
            waypoint: None,
            keys: Arc::new(NoKeys),
            signatures: Arc::default(),
        }
    }
}

/// Tokens seen at most, in [`Signatures`]; when full it starts over.
pub const MAX_REMEMBERED_SIGNATURES: usize = 10_000;

/// The tokens whose signature verified, by [`Token::fingerprint`], each
/// with the key set it verified with: a client sending the same token
/// again costs no signature check while that set is the one in use (a
/// refreshed or rotated set is another set, so its tokens are checked
/// afresh). Claims (`exp`, `aud`, ...) are checked on every request.
#[derive(Default)]
pub struct Signatures(std::sync::Mutex<std::collections::HashMap<[u8; 32], Arc<Jwks>>>);

impl Signatures {
    fn verified(&self, token: &[u8; 32], keys: &Arc<Jwks>) -> bool {
        let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(token).is_some_and(|k| Arc::ptr_eq(k, keys))
    }

    fn remember(&self, token: [u8; 32], keys: &Arc<Jwks>) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_REMEMBERED_SIGNATURES {
            seen.clear();
        }
        seen.insert(token, keys.clone());
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("authentications", &self.authentications)
            .field("waypoint", &self.waypoint)
            .finish()
    }
}

/// Why a request was refused: a fixed word for metrics, and the detail
/// for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: &'static str,
    pub detail: String,
}

impl Refused {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Refused {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        Refused::new(r.label(), r.to_string())
    }
}

/// What authentication made of a request it did not refuse.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No RequestAuthentication applies.
    NotApplicable,
    /// Some apply; the request carried no token.
    Unauthenticated,
    Authenticated(Arc<Verified>),
}

impl Outcome {
    /// The verified token, if any (what authorization's
    /// `requestPrincipals` match: [`Verified::principal`]).
    pub fn verified(&self) -> Option<Arc<Verified>> {
        match self {
            Outcome::Authenticated(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// One token found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    location: Location,
    token: String,
}

/// The tokens `locations` find in `req` (each occurrence once).
fn find<B>(req: &Request<B>, locations: &[&Location]) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut push = |location: &Location, token: &str| {
        let f = Found {
            location: location.clone(),
            token: token.to_string(),
        };
        if !out.contains(&f) {
            out.push(f);
        }
    };
    for l in locations {
        match l {
            Location::Header { name, prefix } => {
                for v in req.headers().get_all(name) {
                    let v = v.as_bytes();
                    if v.len() >= prefix.len()
                        && v[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                    {
                        let token = String::from_utf8_lossy(&v[prefix.len()..]);
                        push(l, token.trim());
                    }
                }
            }
            Location::Param(p) => {
                for (k, v) in query_pairs(req.uri().query()) {
                    if k == p {
                        push(l, v);
                    }
                }
            }
        }
    }
    out
}

fn query_pairs(q: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Removes a verified token from where it was found.
fn remove<B>(req: &mut Request<B>, f: &Found) {
    match &f.location {
        Location::Header { name, prefix } => {
            // Other values of the header (other schemes) stay.
            let kept: Vec<HeaderValue> = req
                .headers()
                .get_all(name)
                .iter()
                .filter(|v| {
                    let v = v.as_bytes();
                    !(v.len() >= prefix.len()
                        && v[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
                })
                .cloned()
                .collect();
            req.headers_mut().remove(name);
            for v in kept {
                req.headers_mut().append(name.clone(), v);
            }
        }
        Location::Param(p) => {
            let q: Vec<&str> = req
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != p)
                .collect();
            let pq = match q.join("&") {
                q if q.is_empty() => req.uri().path().to_string(),
                q => format!("{}?{q}", req.uri().path()),
            };
            let mut parts = req.uri().clone().into_parts();
            if let Ok(pq) = pq.parse() {
                parts.path_and_query = Some(pq);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
}

impl Table {
    /// The authentications that apply to requests for `service`.
    pub fn applying(&self, service: &BackendRef) -> Vec<&Authentication> {
        let w = self
            .waypoint
            .as_ref()
            .map(|(ns, n)| (ns.as_str(), n.as_str()));
        self.authentications
            .iter()
            .filter(|a| a.applies(w, service))
            .map(|a| &**a)
            .collect()
    }

    /// Steps 1 to 6 for a request to `service` at `now` (seconds since the
    /// epoch).
    pub async fn authenticate<B>(
        &self,
        service: &BackendRef,
        req: &mut Request<B>,
        now: i64,
    ) -> Result<Outcome, Refused> {
        let applying = self.applying(service);
        if applying.is_empty() {
            return Ok(Outcome::NotApplicable);
        }
        for a in &applying {
            for r in &a.rules {
                for (h, _) in &r.outputs {
                    req.headers_mut().remove(h);
                }
            }
        }
        if let Some(a) = applying.iter().find(|a| a.invalid.is_some()) {
            return Err(Refused::new(
                "invalid_policy",
                format!(
                    "{} is invalid: {}",
                    a.name,
                    a.invalid.as_deref().unwrap_or_default()
                ),
            ));
        }
        let rules: Vec<&Rule> = applying.iter().flat_map(|a| &a.rules).collect();
        let mut locations: Vec<&Location> = Vec::new();
        for l in rules.iter().flat_map(|r| &r.locations) {
            if !locations.contains(&l) {
                locations.push(l);
            }
        }
        let found = find(req, &locations);
        let found = match found.as_slice() {
            [] => return Ok(Outcome::Unauthenticated),
            [one] => one.clone(),
            more => {
                return Err(Refused::new(
                    "multiple_tokens",
                    format!("{} tokens in one request", more.len()),
                ))
            }
        };
        let token = Token::parse(&found.token)?;
        let issuer = token.issuer().unwrap_or_default().to_string();
        let mut last = Refused::new(
            "unknown_issuer",
            format!("no rule for issuer {issuer:?} reads a token from there"),
        );
        for r in rules
            .iter()
            .filter(|r| r.jwt.issuer == issuer && r.locations.contains(&found.location))
        {
            match self.verify(r, &token, now).await {
                Ok(v) => {
                    if !r.forward {
                        remove(req, &found);
                    }
                    for (h, claim) in &r.outputs {
                        let value = v
                            .claim_text(claim)
                            .and_then(|t| HeaderValue::from_str(&t).ok());
                        match value {
                            Some(value) => {
                                req.headers_mut().insert(h.clone(), value);
                            }
                            None => {
                                tracing::debug!(header = %h, claim, "claim absent or not a header value; header not set")
                            }
                        }
                    }
                    return Ok(Outcome::Authenticated(Arc::new(v)));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn verify(&self, r: &Rule, token: &Token<'_>, now: i64) -> Result<Verified, Refused> {
        let keys = match &r.keys {
            Keys::Inline(k) => k.clone(),
            Keys::Unusable(why) => return Err(Refused::new("jwks_invalid", why.clone())),
            Keys::Remote { uri, .. } => self.keys.keys(uri).ok_or_else(|| {
                Refused::new(
                    "jwks_unavailable",
                    format!("no keys fetched from {uri} yet"),
                )
            })?,
        };
        let fingerprint = token.fingerprint();
        if self.signatures.verified(&fingerprint, &keys) {
            return Ok(token.check_claims(&r.jwt, now)?);
        }
        let checked = match token.check_signature(&keys) {
            // A key the set lacks may be a new one: ask the issuer again
            // (rate-limited), then once more.
            Err(Refusal::UnknownKid(kid)) => match &r.keys {
                Keys::Remote { uri, .. } if self.keys.refresh(uri).await => {
                    let keys = self.keys.keys(uri).unwrap_or_default();
                    token.check_signature(&keys).map(|()| keys)
                }
                _ => Err(Refusal::UnknownKid(kid)),
            },
            other => other.map(|()| keys),
        };
        let keys = checked?;
        self.signatures.remember(fingerprint, &keys);
        Ok(token.check_claims(&r.jwt, now)?)
    }

    /// For the config dump: each authentication, its rules and key ids.
    pub fn dump(&self) -> serde_json::Value {
        let list: Vec<_> = self
            .authentications
            .iter()
            .map(|a| {
                let rules: Vec<_> = a
                    .rules
                    .iter()
                    .map(|r| {
                        let (source, kids) = match &r.keys {
                            Keys::Inline(k) => ("inline".to_string(), Some(k.kids())),
                            Keys::Remote { uri, .. } => (uri.clone(), self.keys.keys(uri).map(|k| k.kids())),
                            Keys::Unusable(why) => (format!("unusable: {why}"), None),
                        };
                        let locations: Vec<String> = r
                            .locations
                            .iter()
                            .map(|l| match l {
                                Location::Header { name, prefix } => format!("header {name} {prefix:?}"),
                                Location::Param(p) => format!("param {p}"),
                            })
                            .collect();
                        serde_json::json!({"issuer": r.jwt.issuer, "audiences": r.jwt.audiences,
                            "keys": source, "kids": kids, "from": locations,
                            "outputClaimToHeaders": r.outputs.iter().map(|(h, c)| format!("{c} -> {h}")).collect::<Vec<_>>(),
                            "forwardOriginalToken": r.forward})
                    })
                    .collect();
                serde_json::json!({"name": a.name, "scope": a.scope.as_str_name(),
                    "targets": a.targets.iter().map(|(k, n)| format!("{k}/{n}")).collect::<Vec<_>>(),
                    "invalid": a.invalid, "rules": rules})
            })
            .collect();
        serde_json::Value::Array(list)
    }

    /// The `jwksUri`s its rules name, with the shortest refresh asked for.
    pub fn remote_uris(authentications: &[Arc<Authentication>]) -> BTreeMap<String, u32> {
        let mut out: BTreeMap<String, u32> = BTreeMap::new();
        for r in authentications.iter().flat_map(|a| &a.rules) {
            if let Keys::Remote { uri, refresh } = &r.keys {
                let e = out.entry(uri.clone()).or_insert(*refresh);
                *e = (*e).min(*refresh);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
