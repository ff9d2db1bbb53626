//! Compiled routes as operators read them (the waypoint's `/config_dump`,
//! `quicmesh waypoint-config routes`): each rule's matches in one line
//! each, in the Gateway API's words, its backends with weights, its
//! filters, timeouts and retries.

use std::fmt;

use serde_json::{json, Value};

use super::filter::{Filter, PathModifier};
use super::{HttpRoute, PathMatch, RequestMatch, Rule, ValueMatch};

impl fmt::Display for ValueMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueMatch::Exact(v) => write!(f, "={v}"),
            ValueMatch::Regex(re) => write!(f, "~{}", re.as_str()),
        }
    }
}

impl fmt::Display for RequestMatch {
    /// e.g. `GET PathPrefix /api header x-canary=yes query v~[0-9]+`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.method {
            write!(f, "{m} ")?;
        }
        match &self.path {
            PathMatch::Exact(p) => write!(f, "Exact {p}")?,
            PathMatch::Prefix(p) => write!(f, "PathPrefix {p}")?,
            PathMatch::Regex(re) => write!(f, "RegularExpression {}", re.as_str())?,
        }
        for h in &self.headers {
            write!(f, " header {}{}", h.name, h.value)?;
        }
        for q in &self.query {
            write!(f, " query {}{}", q.name, q.value)?;
        }
        Ok(())
    }
}

fn path_modifier(p: &PathModifier) -> String {
    match p {
        PathModifier::ReplaceFullPath(s) => format!("path {s}"),
        PathModifier::ReplacePrefixMatch(s) => format!("prefix {s}"),
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers =
            |f: &mut fmt::Formatter<'_>, name: &str, m: &super::filter::HeaderModifier| {
                write!(f, "{name}")?;
                for (n, v) in &m.set {
                    write!(f, " set {n}: {}", String::from_utf8_lossy(v.as_bytes()))?;
                }
                for (n, v) in &m.add {
                    write!(f, " add {n}: {}", String::from_utf8_lossy(v.as_bytes()))?;
                }
                for n in &m.remove {
                    write!(f, " remove {n}")?;
                }
                Ok(())
            };
        match self {
            Filter::RequestHeaders(m) => headers(f, "RequestHeaderModifier", m),
            Filter::ResponseHeaders(m) => headers(f, "ResponseHeaderModifier", m),
            Filter::Redirect(r) => {
                write!(f, "RequestRedirect {}", r.status)?;
                if let Some(s) = &r.scheme {
                    write!(f, " scheme {s}")?;
                }
                if let Some(h) = &r.hostname {
                    write!(f, " host {h}")?;
                }
                if let Some(p) = r.port {
                    write!(f, " port {p}")?;
                }
                if let Some(p) = &r.path {
                    write!(f, " {}", path_modifier(p))?;
                }
                Ok(())
            }
            Filter::Rewrite(r) => {
                write!(f, "URLRewrite")?;
                if let Some(h) = &r.hostname {
                    write!(f, " host {h}")?;
                }
                if let Some(p) = &r.path {
                    write!(f, " {}", path_modifier(p))?;
                }
                Ok(())
            }
            Filter::Mirror(m) => write!(
                f,
                "RequestMirror {}/{}:{} {}/{}",
                m.target.namespace, m.target.name, m.target.port, m.numerator, m.denominator
            ),
        }
    }
}

fn rule(r: &Rule) -> Value {
    let backends: Vec<Value> = r
        .backends
        .iter()
        .map(|b| {
            json!({
                "backend": format!("{}/{}:{}", b.target.namespace, b.target.name, b.target.port),
                "weight": b.weight,
                "filters": b.filters.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "invalid": b.invalid,
            })
        })
        .collect();
    let ms = |d: Option<std::time::Duration>| d.map(|d| format!("{}ms", d.as_millis()));
    json!({
        "name": r.name,
        // No match is every request.
        "matches": if r.matches.is_empty() {
            vec![RequestMatch::default().to_string()]
        } else {
            r.matches.iter().map(ToString::to_string).collect()
        },
        "filters": r.filters.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "backends": backends,
        "timeouts": {"request": ms(r.timeouts.request), "backendRequest": ms(r.timeouts.backend_request)},
        "retry": r.retry.as_ref().map(|t| json!({"codes": t.codes, "attempts": t.attempts, "backoff": format!("{}ms", t.backoff.as_millis())})),
    })
}

impl HttpRoute {
    /// The route for the admin dump.
    pub fn dump(&self) -> Value {
        json!({
            "kind": if self.grpc { "GRPCRoute" } else { "HTTPRoute" },
            "rules": self.rules.iter().map(rule).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{
        filter::HeaderModifier, Backend, BackendRef, HeaderMatch, Pattern, QueryMatch,
    };

    #[test]
    fn a_rule_reads_as_its_manifest_says() {
        let m = RequestMatch::new(
            PathMatch::Prefix("/api".into()),
            vec![HeaderMatch::new("x-canary", ValueMatch::Exact("yes".into())).unwrap()],
            vec![QueryMatch {
                name: "v".into(),
                value: ValueMatch::Regex(Pattern::new("[0-9]+").unwrap()),
            }],
            Some(http::Method::GET),
        );
        assert_eq!(
            m.to_string(),
            "GET PathPrefix /api header x-canary=yes query v~[0-9]+"
        );
        let route = HttpRoute {
            namespace: "shop".into(),
            name: "web".into(),
            grpc: false,
            created: 0,
            rules: vec![Rule {
                backends: vec![Backend {
                    target: BackendRef {
                        namespace: "shop".into(),
                        name: "web-v2".into(),
                        port: 80,
                    },
                    weight: 10,
                    filters: vec![],
                    invalid: None,
                }],
                filters: vec![Filter::RequestHeaders(HeaderModifier {
                    set: vec![("x-canary".parse().unwrap(), "routed".parse().unwrap())],
                    ..Default::default()
                })],
                ..Default::default()
            }],
        };
        let d = route.dump();
        assert_eq!(d["kind"], "HTTPRoute");
        assert_eq!(d["rules"][0]["matches"][0], "PathPrefix /");
        assert_eq!(d["rules"][0]["backends"][0]["backend"], "shop/web-v2:80");
        assert_eq!(d["rules"][0]["backends"][0]["weight"], 10);
        assert_eq!(
            d["rules"][0]["filters"][0],
            "RequestHeaderModifier set x-canary: routed"
        );
        assert!(d["rules"][0]["retry"].is_null());
    }
}
