//! What a rule's filters do to a request or its response, pure:
//! `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestRedirect`,
//! `URLRewrite`, `RequestMirror` (Gateway API v1 semantics).

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::{BackendRef, PathMatch, RouteError};

/// A filter of a rule (or of one backend).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    RequestHeaders(HeaderModifier),
    ResponseHeaders(HeaderModifier),
    Redirect(Redirect),
    Rewrite(Rewrite),
    Mirror(Mirror),
}

/// Headers set (replacing every value of the name), added (appended to
/// the values there) and removed, applied in that order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeaderModifier {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
        for n in &self.remove {
            headers.remove(n);
        }
    }
}

/// How a redirect or rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// The whole path becomes this.
    ReplaceFullPath(String),
    /// The part the rule's `PathPrefix` matched becomes this.
    ReplacePrefixMatch(String),
}

impl PathModifier {
    /// The new path for `path`, which `matched` matched. A prefix
    /// replacement needs a `PathPrefix` match (checked when routes are
    /// read); against any other match it replaces the whole path.
    pub fn apply(&self, path: &str, matched: &PathMatch) -> String {
        match self {
            PathModifier::ReplaceFullPath(p) => p.clone(),
            PathModifier::ReplacePrefixMatch(with) => {
                let rest = match matched {
                    PathMatch::Prefix(p) if p == "/" => path,
                    PathMatch::Prefix(p) => path.strip_prefix(p.as_str()).unwrap_or(path),
                    _ => "",
                };
                let out = format!("{}{rest}", with.trim_end_matches('/'));
                if out.is_empty() {
                    "/".to_string()
                } else if out.starts_with('/') {
                    out
                } else {
                    format!("/{out}")
                }
            }
        }
    }
}

/// `RequestRedirect`: answers with a redirect instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
    pub port: Option<u16>,
    pub status: u16,
}

/// What a redirect is computed from: the request as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// `http` inside the mesh.
    pub scheme: &'a str,
    /// The request's host, without a port.
    pub host: &'a str,
    /// The port the request was sent to (the Service port).
    pub port: u16,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

impl Redirect {
    /// Checks the status code (301 and 302 core, 303, 307 and 308 extended).
    pub fn new(
        scheme: Option<String>,
        hostname: Option<String>,
        path: Option<PathModifier>,
        port: Option<u16>,
        status: Option<u16>,
    ) -> Result<Self, RouteError> {
        let status = status.unwrap_or(302);
        if ![301, 302, 303, 307, 308].contains(&status) {
            return Err(RouteError::Filter(format!(
                "RequestRedirect statusCode {status} is not 301, 302, 303, 307 or 308"
            )));
        }
        if let Some(s) = &scheme {
            if s != "http" && s != "https" {
                return Err(RouteError::Filter(format!(
                    "RequestRedirect scheme {s:?} is not http or https"
                )));
            }
        }
        Ok(Redirect {
            scheme,
            hostname,
            path,
            port,
            status,
        })
    }

    /// The `Location` to answer with. The port: the configured one; else
    /// the scheme's well-known port when the scheme is configured; else the
    /// port the request came to. It is left out when it is the scheme's
    /// well-known port. The query is kept.
    pub fn location(&self, from: &Origin<'_>, matched: &PathMatch) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(from.scheme);
        let host = self.hostname.as_deref().unwrap_or(from.host);
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => p,
            (None, Some(s)) => well_known_port(s),
            (None, None) => from.port,
        };
        let path = match &self.path {
            Some(m) => m.apply(from.path, matched),
            None => from.path.to_string(),
        };
        let mut out = format!("{scheme}://{host}");
        if port != well_known_port(scheme) {
            out.push_str(&format!(":{port}"));
        }
        out.push_str(&path);
        if let Some(q) = from.query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

fn well_known_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// `URLRewrite`: the request is forwarded with another host or path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rewrite {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

/// `RequestMirror`: a copy of the request goes to `target` (its answer is
/// discarded) for `numerator / denominator` of the requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub target: BackendRef,
    pub numerator: u32,
    pub denominator: u32,
}

impl Mirror {
    /// Whether the request `roll` (uniform over `u64`) is mirrored.
    pub fn sampled(&self, roll: u64) -> bool {
        self.denominator > 0 && roll % u64::from(self.denominator) < u64::from(self.numerator)
    }
}
