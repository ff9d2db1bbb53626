//! GRPCRoute (gateway.networking.k8s.io/v1) as an HTTPRoute: a gRPC call
//! is an HTTP/2 POST to `/<package.Service>/<Method>`, so a method match is
//! a path match:
//!
//! | `method` match | path match |
//! | --- | --- |
//! | `Exact`, service and method | `Exact /<service>/<method>` |
//! | `Exact`, service only | `PathPrefix /<service>` (every method) |
//! | `Exact`, method only | `RegularExpression /[^/]+/<method>` |
//! | `RegularExpression` | `RegularExpression /<service or [^/]+>/<method or [^/]+>` |
//!
//! Header matches, header modifiers and backends carry over as they are.
//! Ranking between rules follows HTTPRoute's precedence over those paths:
//! an exact method beats a service-wide match as the GRPCRoute rules say;
//! a method-only match (a regular expression) ranks above a service-only
//! one, where GRPCRoute would rank the service first (documented in
//! docs/routing.md).

use super::spec::*;

/// Service names: dot-separated identifiers; method names: one identifier.
fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn service_name(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(identifier)
}

fn method_path(m: &GrpcMethodMatch, at: &str) -> Result<TypedValue, String> {
    let (service, method) = (m.service.as_deref(), m.method.as_deref());
    if service.unwrap_or("").is_empty() && method.unwrap_or("").is_empty() {
        return Err(format!("{at}: one of service and method is required"));
    }
    let typed = |kind: &str, value: String| TypedValue {
        kind: Some(kind.to_string()),
        value: Some(value),
    };
    match m.kind.as_deref().unwrap_or("Exact") {
        "Exact" => {
            if let Some(s) = service.filter(|s| !service_name(s)) {
                return Err(format!("{at}.service: {s:?} is not a gRPC service name"));
            }
            if let Some(m) = method.filter(|m| !identifier(m)) {
                return Err(format!("{at}.method: {m:?} is not a gRPC method name"));
            }
            Ok(match (service, method) {
                (Some(s), Some(m)) => typed("Exact", format!("/{s}/{m}")),
                (Some(s), None) => typed("PathPrefix", format!("/{s}")),
                // An identifier needs no escaping in a pattern.
                (None, Some(m)) => typed("RegularExpression", format!("/[^/]+/{m}")),
                (None, None) => unreachable!("checked above"),
            })
        }
        "RegularExpression" => {
            for (field, v) in [("service", service), ("method", method)] {
                if let Some(v) = v {
                    quicmesh_core::route::Pattern::new(v)
                        .map_err(|e| format!("{at}.{field}: {e}"))?;
                    if v.contains('/') {
                        return Err(format!("{at}.{field}: a pattern must not match '/'"));
                    }
                }
            }
            let part = |v: Option<&str>| match v {
                Some(v) if !v.is_empty() => format!("(?:{v})"),
                _ => "[^/]+".to_string(),
            };
            Ok(typed(
                "RegularExpression",
                format!("/{}/{}", part(service), part(method)),
            ))
        }
        other => Err(format!(
            "{at}.type: {other:?} is not Exact or RegularExpression"
        )),
    }
}

/// The HTTPRoute a GRPCRoute amounts to, or what makes it unusable
/// (a field path and the reason).
pub fn as_http(g: &GrpcRouteSpec) -> Result<HttpRouteSpec, String> {
    let mut rules = Vec::new();
    for (i, r) in g.rules.iter().enumerate() {
        let mut matches = Vec::new();
        for (j, m) in r.matches.iter().enumerate() {
            let at = format!("spec.rules[{i}].matches[{j}].method");
            matches.push(HttpRouteMatch {
                path: m
                    .method
                    .as_ref()
                    .map(|mm| method_path(mm, &at))
                    .transpose()?,
                headers: m.headers.clone(),
                query_params: Vec::new(),
                method: None,
            });
        }
        let allowed = |f: &HttpRouteFilter| {
            matches!(
                f.kind.as_str(),
                "RequestHeaderModifier" | "ResponseHeaderModifier" | "RequestMirror"
            ) && f.request_redirect.is_none()
                && f.url_rewrite.is_none()
        };
        if let Some(k) = r.filters.iter().position(|f| !allowed(f)) {
            return Err(format!(
                "spec.rules[{i}].filters[{k}].type: {:?} is not a GRPCRoute filter quicmesh implements",
                r.filters[k].kind
            ));
        }
        rules.push(HttpRouteRule {
            name: r.name.clone(),
            matches,
            filters: r.filters.clone(),
            backend_refs: r.backend_refs.clone(),
            timeouts: None,
            retry: None,
        });
    }
    Ok(HttpRouteSpec {
        parent_refs: g.parent_refs.clone(),
        hostnames: g.hostnames.clone(),
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(
        kind: Option<&str>,
        service: Option<&str>,
        method: Option<&str>,
    ) -> Result<(String, String), String> {
        let m = GrpcMethodMatch {
            kind: kind.map(String::from),
            service: service.map(String::from),
            method: method.map(String::from),
        };
        method_path(&m, "m").map(|t| (t.kind.unwrap(), t.value.unwrap()))
    }

    #[test]
    fn method_matches_become_paths() {
        let p = |k, s, m| path(k, s, m).unwrap();
        assert_eq!(
            p(None, Some("shop.v1.Cart"), Some("Add")),
            ("Exact".into(), "/shop.v1.Cart/Add".into())
        );
        assert_eq!(
            p(Some("Exact"), Some("shop.v1.Cart"), None),
            ("PathPrefix".into(), "/shop.v1.Cart".into())
        );
        assert_eq!(
            p(None, None, Some("Add")),
            ("RegularExpression".into(), "/[^/]+/Add".into())
        );
        assert_eq!(
            p(
                Some("RegularExpression"),
                Some(r"shop\.v[0-9]+\.Cart"),
                None
            ),
            (
                "RegularExpression".into(),
                r"/(?:shop\.v[0-9]+\.Cart)/[^/]+".into()
            )
        );
    }

    #[test]
    fn bad_method_matches_are_refused_with_the_field() {
        let e = path(None, None, None).unwrap_err();
        assert!(e.contains("one of service and method"), "{e}");
        let e = path(None, Some("shop/Cart"), Some("Add")).unwrap_err();
        assert!(e.starts_with("m.service:"), "{e}");
        let e = path(None, Some("shop.Cart"), Some("Add.x")).unwrap_err();
        assert!(e.starts_with("m.method:"), "{e}");
        let e = path(Some("RegularExpression"), Some("("), None).unwrap_err();
        assert!(e.starts_with("m.service:"), "{e}");
        let e = path(Some("Prefix"), Some("a"), None).unwrap_err();
        assert!(e.contains("Exact or RegularExpression"), "{e}");
    }

    #[test]
    fn only_grpc_filters_are_taken() {
        let spec: GrpcRouteSpec = serde_json::from_value(serde_json::json!({
            "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}]}]
        }))
        .unwrap();
        let e = as_http(&spec).unwrap_err();
        assert!(e.starts_with("spec.rules[0].filters[0].type"), "{e}");
    }
}
