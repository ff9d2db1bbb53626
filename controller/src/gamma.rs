//! Gateway API mesh routing (GAMMA): `HTTPRoute` objects
//! (gateway.networking.k8s.io/v1) whose `parentRefs` name a Service, read
//! into the route model the waypoint runs ([`quicmesh_core::route`], built
//! with the same constructors, so what is accepted here runs there), with
//! the status conditions a Gateway API controller writes per parent.
//!
//! Own serde types: the `gateway-api` crate's latest release is built on
//! kube 3 / k8s-openapi 0.27, the workspace on kube 5 / k8s-openapi 0.29.
//! Unknown fields are errors, not ignored: a filter or match quicmesh does
//! not implement must not be dropped silently (the route would then do
//! something else than written). Such a route is not accepted
//! (`Accepted=False`, `UnsupportedValue`, naming the field); other routes
//! are untouched.
//!
//! Parents: only Services (group `""`, kind `Service`) are this
//! controller's; other parents (a Gateway of another implementation) are
//! left alone, with no status from us.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use quicmesh_core::route::{
    self as r, Backend, BackendRef, Filter, HeaderMatch, HeaderModifier, Mirror, PathMatch,
    PathModifier, QueryMatch, Redirect, RequestMatch, Rewrite, Rule, Timeouts, ValueMatch,
};
use serde::Serialize;

/// Reasons of route conditions, as the Gateway API spells them.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const UNSUPPORTED_VALUE: &str = "UnsupportedValue";
    pub const NO_MATCHING_PARENT: &str = "NoMatchingParent";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub const INVALID_KIND: &str = "InvalidKind";
}

pub mod spec;

pub use spec::*;

/// One condition of a route's status for one parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What the controller knows that a route refers to.
pub trait Refs {
    /// The Service `namespace/name`, if it exists: its ports.
    fn service_ports(&self, namespace: &str, name: &str) -> Option<Vec<u16>>;
    /// Its ports declared as something other than HTTP (the waypoint passes
    /// their traffic through as bytes).
    fn opaque_ports(&self, namespace: &str, name: &str) -> Vec<u16>;
}

/// A route read: the model the waypoint runs (when accepted), and the
/// conditions for each of its Service parents.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub route: Option<r::HttpRoute>,
    /// Each Service parent, with its conditions.
    pub parents: Vec<(ServiceParent, Vec<Condition>)>,
}

/// A Service parent: (namespace, name, port; none: every port).
pub type ServiceParent = (String, String, Option<u16>);

/// Reads an HTTPRoute `spec` (JSON form). Never fails: what cannot be used
/// is reported in the conditions.
pub fn compile(
    namespace: &str,
    name: &str,
    created: i64,
    spec: &serde_json::Value,
    refs: &dyn Refs,
) -> Compiled {
    let parsed: Result<HttpRouteSpec, String> = serde_path_to_error::deserialize(spec.clone())
        .map_err(|e| format!("spec.{}: {}", e.path(), e.inner()));
    compile_parsed(namespace, name, false, created, parsed, spec, refs)
}

/// Reads a GRPCRoute `spec` (JSON form): its method matches become the
/// paths gRPC requests carry (`/<service>/<method>`), and it is then read
/// as an HTTPRoute with those matches. Never fails, as [`compile`].
pub fn compile_grpc(
    namespace: &str,
    name: &str,
    created: i64,
    spec: &serde_json::Value,
    refs: &dyn Refs,
) -> Compiled {
    let parsed = serde_path_to_error::deserialize::<_, GrpcRouteSpec>(spec.clone())
        .map_err(|e| format!("spec.{}: {}", e.path(), e.inner()))
        .and_then(|g| grpc::as_http(&g));
    compile_parsed(namespace, name, true, created, parsed, spec, refs)
}

mod grpc;

fn compile_parsed(
    namespace: &str,
    name: &str,
    grpc: bool,
    created: i64,
    parsed: Result<HttpRouteSpec, String>,
    spec: &serde_json::Value,
    refs: &dyn Refs,
) -> Compiled {
    let parents_of = |spec: Option<&HttpRouteSpec>| -> Vec<ServiceParent> {
        spec.map(|s| {
            s.parent_refs
                .iter()
                .filter_map(|p| p.service(namespace).map(|(ns, n)| (ns, n, p.port)))
                .collect()
        })
        .unwrap_or_default()
    };
    let spec = match parsed {
        Ok(s) => s,
        Err(reason) => {
            // The parents may still be readable for the status.
            let raw_parents: Vec<ParentReference> = spec
                .get("parentRefs")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or_default();
            let fake = HttpRouteSpec {
                parent_refs: raw_parents,
                ..HttpRouteSpec::default()
            };
            return Compiled {
                route: None,
                parents: parents_of(Some(&fake))
                    .into_iter()
                    .map(|p| (p, not_accepted(reason::UNSUPPORTED_VALUE, &reason)))
                    .collect(),
            };
        }
    };
    // Backends are served by the waypoint of the parents' namespace: a
    // route (producer or consumer) sends to Services there (of parents
    // that exist). GEP-1294 needs no ReferenceGrant for that: a route only
    // changes where its own clients' requests go, and each request is
    // still decided by the destination's policies for its client.
    let mut allowed: Vec<String> = parents_of(Some(&spec))
        .into_iter()
        .filter(|p| refs.service_ports(&p.0, &p.1).is_some())
        .map(|p| p.0)
        .collect();
    allowed.sort();
    allowed.dedup();
    let rules: Result<Vec<Rule>, String> = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            compile_rule(rule, namespace, &allowed, refs)
                .map_err(|e| format!("spec.rules[{i}].{e}"))
        })
        .collect();
    let allowed = &allowed;
    let unresolved: Vec<(&'static str, String)> = spec
        .rules
        .iter()
        .enumerate()
        .flat_map(|(i, rule)| {
            rule.backend_refs
                .iter()
                .enumerate()
                .filter_map(move |(j, b)| {
                    backend_problem(&b.object(), namespace, allowed, refs)
                        .map(|(r, m)| (r, format!("spec.rules[{i}].backendRefs[{j}]: {m}")))
                })
                .chain(mirrors(&rule.filters).filter_map(move |(k, b)| {
                    backend_problem(b, namespace, allowed, refs).map(|(r, m)| {
                        (
                            r,
                            format!("spec.rules[{i}].filters[{k}].requestMirror.backendRef: {m}"),
                        )
                    })
                }))
        })
        .collect();
    let first_unresolved_reason = unresolved.first().map(|(reason, _)| *reason);
    let unresolved: Vec<String> = unresolved.into_iter().map(|(_, m)| m).collect();
    let mut parents = Vec::new();
    let section_named = spec.parent_refs.iter().any(|p| p.section_name.is_some());
    for p in parents_of(Some(&spec)) {
        let conditions = match (&rules, refs.service_ports(&p.0, &p.1)) {
            (Err(e), _) => not_accepted(reason::UNSUPPORTED_VALUE, e),
            (Ok(_), _) if section_named => not_accepted(
                reason::UNSUPPORTED_VALUE,
                "spec.parentRefs: sectionName is not supported on a Service parent yet; use port",
            ),
            (Ok(_), None) => not_accepted(
                reason::NO_MATCHING_PARENT,
                &format!("Service {}/{} does not exist", p.0, p.1),
            ),
            (Ok(_), Some(ports)) if p.2.is_some_and(|port| !ports.contains(&port)) => not_accepted(
                reason::NO_MATCHING_PARENT,
                &format!("Service {}/{} has no port {}", p.0, p.1, p.2.unwrap_or(0)),
            ),
            (Ok(_), Some(_))
                if p.2.is_some_and(|port| refs.opaque_ports(&p.0, &p.1).contains(&port)) =>
            {
                not_accepted(
                    reason::UNSUPPORTED_VALUE,
                    &format!(
                        "port {} of Service {}/{} is declared as something other than HTTP (its appProtocol or name): its traffic is passed through as bytes and HTTP routes cannot apply",
                        p.2.unwrap_or(0),
                        p.0,
                        p.1
                    ),
                )
            }
            (Ok(_), Some(_)) => vec![
                condition(
                    "Accepted",
                    true,
                    reason::ACCEPTED,
                    if p.0 == namespace {
                        "accepted by quicmesh"
                    } else {
                        "accepted by quicmesh: a consumer route, for requests from its namespace"
                    },
                ),
                match first_unresolved_reason {
                    None => condition(
                        "ResolvedRefs",
                        true,
                        reason::RESOLVED_REFS,
                        "all references resolved",
                    ),
                    Some(reason) => {
                        condition("ResolvedRefs", false, reason, &unresolved.join("; "))
                    }
                },
            ],
        };
        parents.push((p, conditions));
    }
    // Only what some parent accepted goes anywhere.
    let accepted = parents
        .iter()
        .any(|(_, c)| c.first().is_some_and(|c| c.status));
    Compiled {
        route: rules.ok().filter(|_| accepted).map(|rules| r::HttpRoute {
            namespace: namespace.to_string(),
            name: name.to_string(),
            grpc,
            created,
            rules,
        }),
        parents,
    }
}

fn condition(kind: &'static str, status: bool, reason: &'static str, message: &str) -> Condition {
    Condition {
        kind,
        status,
        reason,
        message: message.to_string(),
    }
}

fn not_accepted(reason: &'static str, message: &str) -> Vec<Condition> {
    vec![condition("Accepted", false, reason, message)]
}

/// Why a backend reference cannot be used, if it cannot. `allowed`: the
/// namespaces of the route's Service parents (whose waypoints serve it).
fn backend_problem(
    b: &BackendObjectReference,
    route_ns: &str,
    allowed: &[String],
    refs: &dyn Refs,
) -> Option<(&'static str, String)> {
    let group = b.group.as_deref().unwrap_or("");
    let kind = b.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        return Some((
            reason::INVALID_KIND,
            format!("{group}/{kind} is not a Service"),
        ));
    }
    let ns = b.namespace.as_deref().unwrap_or(route_ns);
    if !allowed.iter().any(|a| a == ns) {
        // The waypoint that runs the route knows its own namespace only (its
        // Services, endpoints and their policies): a backend elsewhere
        // cannot be served from it.
        return Some((
            reason::REF_NOT_PERMITTED,
            format!(
                "Service {ns}/{} is not in the namespace of the route's parent Services ({}): only backends there are supported yet",
                b.name,
                allowed.join(", ")
            ),
        ));
    }
    match refs.service_ports(ns, &b.name) {
        None => Some((
            reason::BACKEND_NOT_FOUND,
            format!("Service {ns}/{} does not exist", b.name),
        )),
        Some(ports) => match b.port {
            None => Some((
                reason::BACKEND_NOT_FOUND,
                format!("Service {ns}/{}: port is required", b.name),
            )),
            Some(p) if !ports.contains(&p) => Some((
                reason::BACKEND_NOT_FOUND,
                format!("Service {ns}/{} has no port {p}", b.name),
            )),
            Some(_) => None,
        },
    }
}

/// The `RequestMirror` filters' backends, by filter index.
fn mirrors(filters: &[HttpRouteFilter]) -> impl Iterator<Item = (usize, &BackendObjectReference)> {
    filters
        .iter()
        .enumerate()
        .filter_map(|(k, f)| Some((k, &f.request_mirror.as_ref()?.backend_ref)))
}

/// Where a mirror sends its copies (the route's namespace by default).
fn mirror_target(b: &BackendObjectReference, ns: &str) -> BackendRef {
    BackendRef {
        namespace: b.namespace.clone().unwrap_or_else(|| ns.to_string()),
        name: b.name.clone(),
        port: b.port.unwrap_or(0),
    }
}

/// Retries per request at most (each is also subject to the route's
/// retry budget at the waypoint).
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

fn compile_rule(
    rule: &HttpRouteRule,
    ns: &str,
    allowed: &[String],
    refs: &dyn Refs,
) -> Result<Rule, String> {
    let matches = rule
        .matches
        .iter()
        .enumerate()
        .map(|(i, m)| compile_match(m).map_err(|e| format!("matches[{i}].{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut filters = compile_filters(&rule.filters, ns).map_err(|e| format!("filters{e}"))?;
    // A mirror whose backend cannot be used gets no copies (the route
    // says why in ResolvedRefs); the rest of the rule is served.
    let unusable: Vec<BackendRef> = mirrors(&rule.filters)
        .filter(|(_, b)| backend_problem(b, ns, allowed, refs).is_some())
        .map(|(_, b)| mirror_target(b, ns))
        .collect();
    filters.retain(|f| !matches!(f, Filter::Mirror(m) if unusable.contains(&m.target)));
    let has_redirect = filters.iter().any(|f| matches!(f, Filter::Redirect(_)));
    if has_redirect && !rule.backend_refs.is_empty() {
        return Err("filters: RequestRedirect cannot be used with backendRefs".into());
    }
    let prefix_rewrite = filters.iter().any(|f| {
        matches!(
            f,
            Filter::Redirect(Redirect {
                path: Some(PathModifier::ReplacePrefixMatch(_)),
                ..
            }) | Filter::Rewrite(Rewrite {
                path: Some(PathModifier::ReplacePrefixMatch(_)),
                ..
            })
        )
    });
    if prefix_rewrite && !(matches.len() == 1 && matches!(matches[0].path, PathMatch::Prefix(_))) {
        return Err("filters: ReplacePrefixMatch needs exactly one PathPrefix match".into());
    }
    let mut backends = Vec::new();
    for (j, b) in rule.backend_refs.iter().enumerate() {
        let weight = b.weight.unwrap_or(1);
        if weight > 1_000_000 {
            return Err(format!("backendRefs[{j}].weight: {weight} is over 1000000"));
        }
        let filters =
            compile_filters(&b.filters, ns).map_err(|e| format!("backendRefs[{j}].filters{e}"))?;
        if let Some(i) = filters
            .iter()
            .position(|f| !matches!(f, Filter::RequestHeaders(_) | Filter::ResponseHeaders(_)))
        {
            return Err(format!(
                "backendRefs[{j}].filters[{i}]: only header modifiers are implemented on a backend"
            ));
        }
        // An unusable backend keeps its share of the traffic, answered 500
        // at the waypoint and sent nowhere, as the API requires.
        backends.push(Backend {
            target: BackendRef {
                namespace: b.namespace.clone().unwrap_or_else(|| ns.to_string()),
                name: b.name.clone(),
                port: b.port.unwrap_or(0),
            },
            weight,
            filters,
            invalid: backend_problem(&b.object(), ns, allowed, refs).map(|(_, m)| m),
        });
    }
    // A zero duration disables the timeout (the API's rule).
    let timeout = |v: &Option<String>, field: &str| -> Result<Option<Duration>, String> {
        match v.as_deref().map(duration).transpose() {
            Ok(d) => Ok(d.filter(|d| !d.is_zero())),
            Err(e) => Err(format!("timeouts.{field}: {e}")),
        }
    };
    let timeouts = match &rule.timeouts {
        None => Timeouts::default(),
        Some(t) => Timeouts {
            request: timeout(&t.request, "request")?,
            backend_request: timeout(&t.backend_request, "backendRequest")?,
        },
    };
    if let (Some(req), Some(backend)) = (timeouts.request, timeouts.backend_request) {
        if backend > req {
            return Err("timeouts.backendRequest: longer than timeouts.request".into());
        }
    }
    let retry = match &rule.retry {
        None => None,
        Some(rt) => {
            if let Some(c) = rt.codes.iter().find(|c| !(500..=599).contains(*c)) {
                return Err(format!("retry.codes: {c} is not a 5xx code"));
            }
            if let Some(n) = rt.attempts.filter(|n| *n > MAX_RETRY_ATTEMPTS) {
                return Err(format!("retry.attempts: {n} is over {MAX_RETRY_ATTEMPTS}"));
            }
            Some(r::Retry {
                codes: rt.codes.clone(),
                attempts: rt.attempts.unwrap_or(1),
                backoff: rt
                    .backoff
                    .as_deref()
                    .map(duration)
                    .transpose()
                    .map_err(|e| format!("retry.backoff: {e}"))?
                    .unwrap_or(Duration::from_millis(25)),
            })
        }
    };
    Ok(Rule {
        name: rule.name.clone(),
        matches,
        filters,
        backends,
        timeouts,
        retry,
    })
}

fn compile_match(m: &HttpRouteMatch) -> Result<RequestMatch, String> {
    let path = match &m.path {
        None => PathMatch::prefix("/"),
        Some(p) => {
            let v = p.value.as_deref().unwrap_or("/");
            match p.kind.as_deref().unwrap_or("PathPrefix") {
                "PathPrefix" => PathMatch::prefix(v),
                "Exact" => PathMatch::exact(v),
                "RegularExpression" => PathMatch::regex(v),
                other => {
                    return Err(format!(
                        "path.type: {other:?} is not Exact, PathPrefix or RegularExpression"
                    ))
                }
            }
        }
    }
    .map_err(|e| format!("path: {e}"))?;
    let value = |kind: Option<&str>, v: &str, what: &str| -> Result<ValueMatch, String> {
        match kind.unwrap_or("Exact") {
            "Exact" => Ok(ValueMatch::Exact(v.to_string())),
            "RegularExpression" => r::Pattern::new(v)
                .map(ValueMatch::Regex)
                .map_err(|e| format!("{what}: {e}")),
            other => Err(format!(
                "{what}.type: {other:?} is not Exact or RegularExpression"
            )),
        }
    };
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        let v = value(h.kind.as_deref(), &h.value, &format!("headers[{i}]"))?;
        headers.push(HeaderMatch::new(&h.name, v).map_err(|e| format!("headers[{i}].name: {e}"))?);
    }
    let mut query = Vec::new();
    for (i, q) in m.query_params.iter().enumerate() {
        query.push(QueryMatch {
            name: q.name.clone(),
            value: value(q.kind.as_deref(), &q.value, &format!("queryParams[{i}]"))?,
        });
    }
    let method = match &m.method {
        None => None,
        Some(s) => {
            const METHODS: [&str; 9] = [
                "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
            ];
            if !METHODS.contains(&s.as_str()) {
                return Err(format!(
                    "method: {s:?} is not an HTTP method the API allows"
                ));
            }
            Some(s.parse().map_err(|_| format!("method: {s:?}"))?)
        }
    };
    Ok(RequestMatch::new(path, headers, query, method))
}

/// `Err` is the rest of the field path (`[i].field: reason`).
fn compile_filters(filters: &[HttpRouteFilter], ns: &str) -> Result<Vec<Filter>, String> {
    let mut out = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let at = |e: String| format!("[{i}].{e}");
        let missing = |field: &str| at(format!("{field}: is required for type {}", f.kind));
        let filter = match f.kind.as_str() {
            "RequestHeaderModifier" => Filter::RequestHeaders(
                header_modifier(
                    f.request_header_modifier
                        .as_ref()
                        .ok_or_else(|| missing("requestHeaderModifier"))?,
                )
                .map_err(|e| at(format!("requestHeaderModifier.{e}")))?,
            ),
            "ResponseHeaderModifier" => Filter::ResponseHeaders(
                header_modifier(
                    f.response_header_modifier
                        .as_ref()
                        .ok_or_else(|| missing("responseHeaderModifier"))?,
                )
                .map_err(|e| at(format!("responseHeaderModifier.{e}")))?,
            ),
            "RequestRedirect" => {
                let r = f
                    .request_redirect
                    .as_ref()
                    .ok_or_else(|| missing("requestRedirect"))?;
                if let Some(h) = &r.hostname {
                    hostname(h).map_err(|e| at(format!("requestRedirect.hostname: {e}")))?;
                }
                Filter::Redirect(
                    Redirect::new(
                        r.scheme.clone(),
                        r.hostname.clone(),
                        r.path
                            .as_ref()
                            .map(path_modifier)
                            .transpose()
                            .map_err(|e| at(format!("requestRedirect.path: {e}")))?,
                        r.port,
                        r.status_code,
                    )
                    .map_err(|e| at(format!("requestRedirect: {e}")))?,
                )
            }
            "URLRewrite" => {
                let r = f
                    .url_rewrite
                    .as_ref()
                    .ok_or_else(|| missing("urlRewrite"))?;
                if let Some(h) = &r.hostname {
                    hostname(h).map_err(|e| at(format!("urlRewrite.hostname: {e}")))?;
                }
                Filter::Rewrite(Rewrite {
                    hostname: r.hostname.clone(),
                    path: r
                        .path
                        .as_ref()
                        .map(path_modifier)
                        .transpose()
                        .map_err(|e| at(format!("urlRewrite.path: {e}")))?,
                })
            }
            "RequestMirror" => {
                let m = f
                    .request_mirror
                    .as_ref()
                    .ok_or_else(|| missing("requestMirror"))?;
                let (numerator, denominator) = match (m.percent, &m.fraction) {
                    (Some(_), Some(_)) => {
                        return Err(at(
                            "requestMirror: percent and fraction are exclusive".into()
                        ))
                    }
                    (Some(p), None) => (p.min(100), 100),
                    (None, Some(fr)) => (fr.numerator, fr.denominator.unwrap_or(100)),
                    (None, None) => (100, 100),
                };
                if denominator == 0 || numerator > denominator {
                    return Err(at(format!(
                        "requestMirror.fraction: {numerator}/{denominator} is not a fraction"
                    )));
                }
                if m.backend_ref.port.is_none() {
                    return Err(at("requestMirror.backendRef.port: is required".into()));
                }
                Filter::Mirror(Mirror {
                    target: mirror_target(&m.backend_ref, ns),
                    numerator,
                    denominator,
                })
            }
            other => return Err(at(format!("type: {other:?} is not supported by quicmesh"))),
        };
        out.push(filter);
    }
    Ok(out)
}

fn header_modifier(h: &HeaderFilter) -> Result<HeaderModifier, String> {
    let name = |n: &str| {
        HeaderName::from_bytes(n.as_bytes()).map_err(|_| format!("{n:?} is not a header name"))
    };
    let pair = |p: &HeaderPair| -> Result<(HeaderName, HeaderValue), String> {
        let n = name(&p.name)?;
        let v = HeaderValue::from_str(&p.value)
            .map_err(|_| format!("the value of {} is not a header value", p.name))?;
        Ok((n, v))
    };
    Ok(HeaderModifier {
        set: h
            .set
            .iter()
            .map(pair)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("set: {e}"))?,
        add: h
            .add
            .iter()
            .map(pair)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("add: {e}"))?,
        remove: h
            .remove
            .iter()
            .map(|n| name(n))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("remove: {e}"))?,
    })
}

fn path_modifier(p: &PathModifierSpec) -> Result<PathModifier, String> {
    match (
        p.kind.as_str(),
        &p.replace_full_path,
        &p.replace_prefix_match,
    ) {
        ("ReplaceFullPath", Some(v), None) => Ok(PathModifier::ReplaceFullPath(v.clone())),
        ("ReplacePrefixMatch", None, Some(v)) => Ok(PathModifier::ReplacePrefixMatch(v.clone())),
        (kind, _, _) => Err(format!(
            "type {kind:?} needs exactly its own field (replaceFullPath or replacePrefixMatch)"
        )),
    }
}

/// A Gateway API `PreciseHostname`: RFC 1123 labels of lowercase letters,
/// digits and `-`, 1 to 63 characters each, 253 in all; no wildcard.
fn hostname(h: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.len() <= 253 && h.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!("{h:?} is not a hostname (RFC 1123, lowercase)"))
    }
}

/// A Gateway API duration (GEP-2257): 1 to 4 parts of up to 5 digits with
/// a unit `h`, `m`, `s` or `ms`, e.g. `10s`, `1h30m`, `500ms`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 10s, 500ms or 1h30m");
    let mut rest = s;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total += unit * n as u32;
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
