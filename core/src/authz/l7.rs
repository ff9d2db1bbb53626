//! The L7 half of authorization: what a waypoint knows about a request
//! ([`Request`], with the identity a JWT proved, [`Authenticated`]), the
//! patterns of `to.operation` (methods, paths, hosts) and the `when`
//! conditions ([`Condition`]). Parsing is strict, as for the L4 matchers:
//! a pattern that can never match what a waypoint sees (a lower-case
//! method, a path that is not canonical, an unknown condition key) is an
//! error, so the policy fails closed with the reason instead of silently
//! matching nothing.

use std::fmt;
use std::net::IpAddr;

use crate::authz::matcher::{parse_namespace, parse_principal, principal_key, IpNet, StringMatch};
use crate::authz::Connection;

/// A request as L7 policies see it, at the waypoint, before the route's
/// filters change it (the client's own method, path and headers).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The canonical path (see [`crate::route::path`]), without the query.
    pub path: &'a str,
    /// The authority the client wrote (`:authority`, else `Host`), which
    /// may carry a port.
    pub host: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    /// What a valid JWT proved; None for a request without one.
    pub auth: Option<Authenticated<'a>>,
}

/// The identity a request's JWT proved (RequestAuthentication, see
/// [`crate::jwt::Verified`]), as policies read it.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated<'a> {
    /// `<iss>/<sub>`: what `requestPrincipals` match.
    pub principal: &'a str,
    pub audiences: &'a [String],
    /// The `azp` claim.
    pub presenter: Option<&'a str>,
    /// Every claim of the token.
    pub claims: &'a serde_json::Map<String, serde_json::Value>,
}

/// The request facts one condition key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// `request.headers[<name>]` (the name lower-cased).
    Header(http::HeaderName),
    /// `request.auth.principal`
    RequestPrincipal,
    /// `request.auth.audiences`
    Audiences,
    /// `request.auth.presenter`
    Presenter,
    /// `request.auth.claims[a][b]...`: a claim, nested objects by path.
    Claim(Vec<String>),
    /// `source.ip` (also written `remote.ip`).
    SourceIp,
    /// `source.namespace`
    SourceNamespace,
    /// `source.principal`
    SourcePrincipal,
    /// `destination.port`
    DestinationPort,
}

/// Nested claim paths longer than this are refused.
const MAX_CLAIM_DEPTH: usize = 10;

impl Key {
    pub fn parse(key: &str) -> Result<Self, String> {
        let bracketed = |rest: &str| -> Result<Vec<String>, String> {
            // `[a][b]`: at least one part, none empty, nothing after.
            let mut parts = Vec::new();
            let mut s = rest;
            while let Some(r) = s.strip_prefix('[') {
                let (part, after) = r
                    .split_once(']')
                    .ok_or_else(|| format!("{key:?}: unclosed '['"))?;
                if part.is_empty() || part.contains('[') {
                    return Err(format!("{key:?}: empty or nested '[...]'"));
                }
                parts.push(part.to_string());
                s = after;
            }
            if !s.is_empty() || parts.is_empty() {
                return Err(format!("{key:?}: expected [name] after the key"));
            }
            Ok(parts)
        };
        Ok(match key {
            "request.auth.principal" => Key::RequestPrincipal,
            "request.auth.audiences" => Key::Audiences,
            "request.auth.presenter" => Key::Presenter,
            "source.ip" | "remote.ip" => Key::SourceIp,
            "source.namespace" => Key::SourceNamespace,
            "source.principal" => Key::SourcePrincipal,
            "destination.port" => Key::DestinationPort,
            _ => {
                if let Some(rest) = key.strip_prefix("request.headers") {
                    let parts = bracketed(rest)?;
                    let [name] = parts.as_slice() else {
                        return Err(format!(
                            "{key:?}: one header name, as request.headers[x-user]"
                        ));
                    };
                    if name.starts_with(':') {
                        return Err(format!(
                            "{key:?}: pseudo-headers are not headers; match methods, paths and hosts in to.operation"
                        ));
                    }
                    let name = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                        .map_err(|_| format!("{key:?}: {name:?} is not a header name"))?;
                    Key::Header(name)
                } else if let Some(rest) = key.strip_prefix("request.auth.claims") {
                    let parts = bracketed(rest)?;
                    if parts.len() > MAX_CLAIM_DEPTH {
                        return Err(format!(
                            "{key:?}: claims nest at most {MAX_CLAIM_DEPTH} deep"
                        ));
                    }
                    Key::Claim(parts)
                } else {
                    return Err(format!(
                        "{key:?} is not a condition key (request.headers[..], request.auth.principal, \
                         request.auth.audiences, request.auth.presenter, request.auth.claims[..], \
                         source.ip, remote.ip, source.namespace, source.principal, destination.port)"
                    ));
                }
            }
        })
    }

    /// Whether only a request (a waypoint) can decide it.
    pub fn l7(&self) -> bool {
        !matches!(
            self,
            Key::SourceIp | Key::SourceNamespace | Key::SourcePrincipal | Key::DestinationPort
        )
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Header(h) => write!(f, "request.headers[{h}]"),
            Key::RequestPrincipal => f.write_str("request.auth.principal"),
            Key::Audiences => f.write_str("request.auth.audiences"),
            Key::Presenter => f.write_str("request.auth.presenter"),
            Key::Claim(parts) => {
                f.write_str("request.auth.claims")?;
                parts.iter().try_for_each(|p| write!(f, "[{p}]"))
            }
            Key::SourceIp => f.write_str("source.ip"),
            Key::SourceNamespace => f.write_str("source.namespace"),
            Key::SourcePrincipal => f.write_str("source.principal"),
            Key::DestinationPort => f.write_str("destination.port"),
        }
    }
}

/// A condition's value, of the kind its key takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(StringMatch),
    Net(IpNet),
    Port(u16),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(m) => m.fmt(f),
            Value::Net(n) => n.fmt(f),
            Value::Port(p) => p.fmt(f),
        }
    }
}

/// `when`: `key` must have a value among `values` (when set) and none
/// among `not_values` (when set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub key: Key,
    pub values: Vec<Value>,
    pub not_values: Vec<Value>,
}

impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let texts = |v: &[Value]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut st = s.serialize_struct("Condition", 3)?;
        st.serialize_field("key", &self.key.to_string())?;
        st.serialize_field("values", &texts(&self.values))?;
        st.serialize_field("notValues", &texts(&self.not_values))?;
        st.end()
    }
}

impl Condition {
    /// Parses a condition; values are parsed as the key takes them
    /// (CIDR for IPs, numbers for ports, patterns for the rest).
    pub fn parse(key: &str, values: &[String], not_values: &[String]) -> Result<Self, String> {
        let key = Key::parse(key)?;
        if values.is_empty() && not_values.is_empty() {
            return Err(format!("{key}: a condition needs values or notValues"));
        }
        let parse_all = |vs: &[String], field: &str| {
            vs.iter()
                .enumerate()
                .map(|(i, v)| Self::value(&key, v).map_err(|e| format!("{field}[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Condition {
            values: parse_all(values, "values")?,
            not_values: parse_all(not_values, "notValues")?,
            key,
        })
    }

    fn value(key: &Key, v: &str) -> Result<Value, String> {
        Ok(match key {
            Key::SourceIp => Value::Net(IpNet::parse(v)?),
            Key::DestinationPort => Value::Port(
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("{v:?} is not a port (1-65535)"))?,
            ),
            Key::SourcePrincipal => Value::Text(parse_principal(v)?),
            Key::SourceNamespace => Value::Text(parse_namespace(v)?),
            _ => Value::Text(StringMatch::parse(v)?),
        })
    }

    /// Decides the condition. With no request (a ztunnel), an L7 key is
    /// not decided here: the caller treats the rule by its `l7` flag.
    pub(crate) fn matches(&self, conn: &Connection, req: Option<&Request<'_>>) -> bool {
        let facts = Facts::of(&self.key, conn, req);
        let any = |values: &[Value]| values.iter().any(|v| facts.matches(v));
        (self.values.is_empty() || any(&self.values))
            && (self.not_values.is_empty() || !any(&self.not_values))
    }
}

/// The values a request has for one key (several: a repeated header, a
/// list claim, the audiences).
enum Facts<'a> {
    Texts(Vec<std::borrow::Cow<'a, str>>),
    Ip(IpAddr),
    Port(u16),
}

impl<'a> Facts<'a> {
    fn of(key: &Key, conn: &'a Connection, req: Option<&Request<'a>>) -> Self {
        use std::borrow::Cow;
        let auth = req.and_then(|r| r.auth);
        let texts = |v: Vec<Cow<'a, str>>| Facts::Texts(v);
        match key {
            Key::SourceIp => Facts::Ip(conn.src_ip),
            Key::DestinationPort => Facts::Port(conn.dst_port),
            Key::SourceNamespace => texts(
                conn.namespace
                    .as_deref()
                    .map(Cow::Borrowed)
                    .into_iter()
                    .collect(),
            ),
            Key::SourcePrincipal => texts(
                conn.principal
                    .as_ref()
                    .map(|p| Cow::Borrowed(principal_key(p.as_str())))
                    .into_iter()
                    .collect(),
            ),
            Key::Header(name) => texts(
                req.into_iter()
                    .flat_map(|r| r.headers.get_all(name))
                    // A value that is not text matches no pattern.
                    .filter_map(|v| v.to_str().ok().map(Cow::Borrowed))
                    .collect(),
            ),
            Key::RequestPrincipal => texts(
                auth.map(|a| Cow::Borrowed(a.principal))
                    .into_iter()
                    .collect(),
            ),
            Key::Audiences => texts(
                auth.into_iter()
                    .flat_map(|a| a.audiences.iter().map(|s| Cow::Borrowed(s.as_str())))
                    .collect(),
            ),
            Key::Presenter => texts(
                auth.and_then(|a| a.presenter)
                    .map(Cow::Borrowed)
                    .into_iter()
                    .collect(),
            ),
            Key::Claim(path) => texts(
                auth.map(|a| claim_values(a.claims, path))
                    .unwrap_or_default(),
            ),
        }
    }

    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Facts::Texts(ts), Value::Text(m)) => ts.iter().any(|t| m.matches(t)),
            (Facts::Ip(ip), Value::Net(n)) => n.contains(*ip),
            (Facts::Port(p), Value::Port(q)) => p == q,
            // Parsing gives each key its kind of value.
            _ => false,
        }
    }
}

/// A claim's values: a string; each string of a list; a number or a
/// boolean as JSON writes it. Objects and nulls have none.
fn claim_values<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    path: &[String],
) -> Vec<std::borrow::Cow<'a, str>> {
    use serde_json::Value as J;
    use std::borrow::Cow;
    let Some((first, rest)) = path.split_first() else {
        return Vec::new();
    };
    let mut v = claims.get(first.as_str());
    for p in rest {
        v = v
            .and_then(|x| x.as_object())
            .and_then(|o| o.get(p.as_str()));
    }
    let scalar = |x: &'a J| match x {
        J::String(s) => Some(Cow::Borrowed(s.as_str())),
        J::Number(n) => Some(Cow::Owned(n.to_string())),
        J::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    };
    match v {
        Some(J::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(x) => scalar(x).into_iter().collect(),
        None => Vec::new(),
    }
}

/// HTTP methods as clients send them (RFC 9110 registers these in upper
/// case; methods are case-sensitive).
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A method pattern: exact (case-sensitive) or `*`.
pub fn parse_method(pattern: &str) -> Result<StringMatch, String> {
    if pattern == "*" {
        return Ok(StringMatch::Any);
    }
    if pattern.is_empty() || !pattern.bytes().all(is_tchar) {
        return Err(format!("{pattern:?} is not an HTTP method"));
    }
    let upper = pattern.to_ascii_uppercase();
    if upper != pattern && METHODS.contains(&upper.as_str()) {
        return Err(format!(
            "{pattern:?}: methods are case-sensitive and clients send {upper:?}"
        ));
    }
    Ok(StringMatch::Exact(pattern.to_string()))
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A path pattern: exact, `prefix*`, `*suffix` or `*`, matched against the
/// canonical path without the query. An exact path or a prefix must be in
/// canonical form, since that is all a waypoint matches.
pub fn parse_path(pattern: &str) -> Result<StringMatch, String> {
    if let Some(c) = pattern.chars().find(|c| matches!(c, '?' | '#')) {
        return Err(format!(
            "{pattern:?}: {c:?} cannot appear in a path pattern (paths are matched without the query)"
        ));
    }
    if pattern.contains(['{', '}']) {
        return Err(format!(
            "{pattern:?}: '{{' and '}}' cannot appear in a path pattern (path templates such as {{*}} are not supported; use a prefix or suffix)"
        ));
    }
    let m = StringMatch::parse(pattern)?;
    if let StringMatch::Exact(s) | StringMatch::Prefix(s) = &m {
        if !s.starts_with('/') {
            return Err(format!("{pattern:?}: a path starts with '/'"));
        }
        let canonical =
            crate::route::path::normalize(s).map_err(|e| format!("{pattern:?}: {e}"))?;
        if canonical != *s {
            return Err(format!(
                "{pattern:?}: the waypoint matches canonical paths; write {canonical:?}"
            ));
        }
    }
    Ok(m)
}

/// A host pattern: exact, `prefix*`, `*suffix` or `*`, case-insensitive
/// (kept lower-case). It is matched against the request's authority with
/// and without its port, so `web.shop` matches `web.shop:80`.
pub fn parse_host(pattern: &str) -> Result<StringMatch, String> {
    let lower = pattern.to_ascii_lowercase();
    let m = StringMatch::parse(&lower)?;
    if let Some(c) = lower
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._:[]*".contains(*c)))
    {
        return Err(format!("{pattern:?}: {c:?} cannot appear in a host"));
    }
    Ok(m)
}

/// Whether one of `patterns` matches the request's host (see [`parse_host`]).
pub(crate) fn host_matches(patterns: &[StringMatch], host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let bare = http::uri::Authority::try_from(host.as_str())
        .ok()
        .map(|a| a.host().to_string());
    patterns
        .iter()
        .any(|p| p.matches(&host) || bare.as_deref().is_some_and(|b| p.matches(b)))
}

/// A request principal pattern (`<iss>/<sub>`): exact, `prefix*`,
/// `*suffix` or `*` (any authenticated request).
pub fn parse_request_principal(pattern: &str) -> Result<StringMatch, String> {
    StringMatch::parse(pattern)
}
