//! Routes on the config stream: the compiled model to its protobuf form
//! (the controller) and back (the waypoint), checked with the same
//! constructors on the way in, so a route the waypoint cannot build is a
//! NACK with the reason, never a half-built table.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use quicmesh_proto::config as pb;

use super::*;

/// A Service (port) a route attaches to; port `None`: every port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Parent {
    pub namespace: String,
    pub name: String,
    pub port: Option<u16>,
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| (d.as_millis() as u64).max(1))
}

fn from_ms(v: u64) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(v))
}

fn backend_ref(b: &BackendRef) -> pb::BackendRef {
    pb::BackendRef {
        namespace: b.namespace.clone(),
        name: b.name.clone(),
        port: b.port.into(),
    }
}

fn headers(hs: &[(HeaderName, HeaderValue)]) -> Vec<pb::Header> {
    hs.iter()
        .map(|(n, v)| pb::Header {
            name: n.to_string(),
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        })
        .collect()
}

fn modifier(m: &HeaderModifier) -> pb::HeaderModifier {
    pb::HeaderModifier {
        set: headers(&m.set),
        add: headers(&m.add),
        remove: m.remove.iter().map(|n| n.to_string()).collect(),
    }
}

fn path_modifier(p: &PathModifier) -> pb::PathModifier {
    match p {
        PathModifier::ReplaceFullPath(v) => pb::PathModifier {
            prefix: false,
            value: v.clone(),
        },
        PathModifier::ReplacePrefixMatch(v) => pb::PathModifier {
            prefix: true,
            value: v.clone(),
        },
    }
}

fn filter(f: &Filter) -> pb::RouteFilter {
    use pb::route_filter::Kind;
    let kind = match f {
        Filter::RequestHeaders(m) => Kind::RequestHeaders(modifier(m)),
        Filter::ResponseHeaders(m) => Kind::ResponseHeaders(modifier(m)),
        Filter::Redirect(r) => Kind::Redirect(pb::RouteRedirect {
            scheme: r.scheme.clone().unwrap_or_default(),
            hostname: r.hostname.clone().unwrap_or_default(),
            path: r.path.as_ref().map(path_modifier),
            port: r.port.map_or(0, u32::from),
            status: r.status.into(),
        }),
        Filter::Rewrite(r) => Kind::Rewrite(pb::RouteRewrite {
            hostname: r.hostname.clone().unwrap_or_default(),
            path: r.path.as_ref().map(path_modifier),
        }),
        Filter::Mirror(m) => Kind::Mirror(pb::RouteMirror {
            backend: Some(backend_ref(&m.target)),
            numerator: m.numerator,
            denominator: m.denominator,
        }),
    };
    pb::RouteFilter { kind: Some(kind) }
}

fn value_match(name: String, v: &ValueMatch) -> pb::ValueMatch {
    match v {
        ValueMatch::Exact(s) => pb::ValueMatch {
            name,
            value: s.clone(),
            regex: false,
        },
        ValueMatch::Regex(p) => pb::ValueMatch {
            name,
            value: p.as_str().to_string(),
            regex: true,
        },
    }
}

/// The protobuf form of `route` attached to `parents`.
pub fn to_proto(route: &HttpRoute, parents: &[Parent]) -> pb::HttpRoute {
    pb::HttpRoute {
        namespace: route.namespace.clone(),
        name: route.name.clone(),
        grpc: route.grpc,
        created: route.created,
        parents: parents
            .iter()
            .map(|p| pb::RouteParent {
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                port: p.port.map_or(0, u32::from),
            })
            .collect(),
        rules: route
            .rules
            .iter()
            .map(|r| pb::RouteRule {
                name: r.name.clone().unwrap_or_default(),
                matches: r
                    .matches
                    .iter()
                    .map(|m| {
                        let (path_type, path) = match &m.path {
                            PathMatch::Prefix(p) => (pb::PathMatchType::Prefix, p.clone()),
                            PathMatch::Exact(p) => (pb::PathMatchType::Exact, p.clone()),
                            PathMatch::Regex(p) => {
                                (pb::PathMatchType::RegularExpression, p.as_str().to_string())
                            }
                        };
                        pb::RouteMatch {
                            path_type: path_type.into(),
                            path,
                            headers: m
                                .headers
                                .iter()
                                .map(|h| value_match(h.name.to_string(), &h.value))
                                .collect(),
                            query_params: m
                                .query
                                .iter()
                                .map(|q| value_match(q.name.clone(), &q.value))
                                .collect(),
                            method: m.method.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                        }
                    })
                    .collect(),
                filters: r.filters.iter().map(filter).collect(),
                backends: r
                    .backends
                    .iter()
                    .map(|b| pb::RouteBackend {
                        target: Some(backend_ref(&b.target)),
                        weight: b.weight,
                        filters: b.filters.iter().map(filter).collect(),
                        invalid: b.invalid.clone().unwrap_or_default(),
                    })
                    .collect(),
                request_timeout_ms: ms(r.timeouts.request),
                backend_request_timeout_ms: ms(r.timeouts.backend_request),
                retry: r.retry.as_ref().map(|rt| pb::RouteRetry {
                    codes: rt.codes.iter().map(|c| u32::from(*c)).collect(),
                    attempts: rt.attempts,
                    backoff_ms: rt.backoff.as_millis() as u64,
                }),
            })
            .collect(),
    }
}

fn port(v: u32, what: &str) -> Result<u16, String> {
    u16::try_from(v).map_err(|_| format!("{what}: {v} is not a port"))
}

fn from_backend_ref(b: Option<&pb::BackendRef>, what: &str) -> Result<BackendRef, String> {
    let b = b.ok_or_else(|| format!("{what}: no backend"))?;
    Ok(BackendRef {
        namespace: b.namespace.clone(),
        name: b.name.clone(),
        port: port(b.port, what)?,
    })
}

fn from_headers(hs: &[pb::Header]) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    hs.iter()
        .map(|h| {
            let n = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| format!("{:?} is not a header name", h.name))?;
            let v = header_value(&n, &h.value).map_err(|e| e.to_string())?;
            Ok((n, v))
        })
        .collect()
}

fn from_modifier(m: &pb::HeaderModifier) -> Result<HeaderModifier, String> {
    Ok(HeaderModifier {
        set: from_headers(&m.set)?,
        add: from_headers(&m.add)?,
        remove: m
            .remove
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("{n:?} is not a header name"))
            })
            .collect::<Result<_, _>>()?,
    })
}

fn from_path_modifier(p: Option<&pb::PathModifier>) -> Option<PathModifier> {
    p.map(|p| {
        if p.prefix {
            PathModifier::ReplacePrefixMatch(p.value.clone())
        } else {
            PathModifier::ReplaceFullPath(p.value.clone())
        }
    })
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn from_filter(f: &pb::RouteFilter) -> Result<Filter, String> {
    use pb::route_filter::Kind;
    Ok(match f.kind.as_ref().ok_or("a filter without a kind")? {
        Kind::RequestHeaders(m) => Filter::RequestHeaders(from_modifier(m)?),
        Kind::ResponseHeaders(m) => Filter::ResponseHeaders(from_modifier(m)?),
        Kind::Redirect(r) => Filter::Redirect(
            Redirect::new(
                nonempty(&r.scheme),
                nonempty(&r.hostname),
                from_path_modifier(r.path.as_ref()),
                match r.port {
                    0 => None,
                    p => Some(port(p, "redirect port")?),
                },
                Some(u16::try_from(r.status).map_err(|_| format!("redirect status {}", r.status))?),
            )
            .map_err(|e| e.to_string())?,
        ),
        Kind::Rewrite(r) => Filter::Rewrite(Rewrite {
            hostname: nonempty(&r.hostname),
            path: from_path_modifier(r.path.as_ref()),
        }),
        Kind::Mirror(m) => Filter::Mirror(Mirror {
            target: from_backend_ref(m.backend.as_ref(), "mirror")?,
            numerator: m.numerator,
            denominator: m.denominator,
        }),
    })
}

fn from_value(v: &pb::ValueMatch) -> Result<ValueMatch, String> {
    if v.regex {
        Pattern::new(&v.value)
            .map(ValueMatch::Regex)
            .map_err(|e| e.to_string())
    } else {
        Ok(ValueMatch::Exact(v.value.clone()))
    }
}

/// The route a protobuf form describes, built with the model's own
/// constructors (patterns compiled, names and values checked).
pub fn from_proto(p: &pb::HttpRoute) -> Result<(HttpRoute, Vec<Parent>), String> {
    let parents = p
        .parents
        .iter()
        .map(|pp| {
            Ok(Parent {
                namespace: pp.namespace.clone(),
                name: pp.name.clone(),
                port: match pp.port {
                    0 => None,
                    v => Some(port(v, "parent port")?),
                },
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut rules = Vec::with_capacity(p.rules.len());
    for (i, r) in p.rules.iter().enumerate() {
        let at = |e: String| format!("rules[{i}]: {e}");
        let mut matches = Vec::with_capacity(r.matches.len());
        for m in &r.matches {
            let path = match pb::PathMatchType::try_from(m.path_type) {
                Ok(pb::PathMatchType::Prefix) => PathMatch::prefix(&m.path),
                Ok(pb::PathMatchType::Exact) => PathMatch::exact(&m.path),
                Ok(pb::PathMatchType::RegularExpression) => PathMatch::regex(&m.path),
                _ => return Err(at(format!("unknown path match type {}", m.path_type))),
            }
            .map_err(|e| at(e.to_string()))?;
            let headers = m
                .headers
                .iter()
                .map(|h| HeaderMatch::new(&h.name, from_value(h)?).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, String>>()
                .map_err(at)?;
            let query = m
                .query_params
                .iter()
                .map(|q| {
                    Ok(QueryMatch {
                        name: q.name.clone(),
                        value: from_value(q)?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()
                .map_err(at)?;
            let method = match m.method.as_str() {
                "" => None,
                s => Some(s.parse().map_err(|_| at(format!("method {s:?}")))?),
            };
            matches.push(RequestMatch::new(path, headers, query, method));
        }
        let filters = r
            .filters
            .iter()
            .map(from_filter)
            .collect::<Result<Vec<_>, _>>()
            .map_err(at)?;
        let backends = r
            .backends
            .iter()
            .map(|b| {
                Ok(Backend {
                    target: from_backend_ref(b.target.as_ref(), "backend")?,
                    weight: b.weight,
                    filters: b
                        .filters
                        .iter()
                        .map(from_filter)
                        .collect::<Result<_, _>>()?,
                    invalid: nonempty(&b.invalid),
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(at)?;
        rules.push(Rule {
            name: nonempty(&r.name),
            matches,
            filters,
            backends,
            timeouts: Timeouts {
                request: from_ms(r.request_timeout_ms),
                backend_request: from_ms(r.backend_request_timeout_ms),
            },
            retry: r.retry.as_ref().map(|rt| Retry {
                codes: rt
                    .codes
                    .iter()
                    .filter_map(|c| u16::try_from(*c).ok())
                    .collect(),
                attempts: rt.attempts,
                backoff: Duration::from_millis(rt.backoff_ms),
            }),
        });
    }
    Ok((
        HttpRoute {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            grpc: p.grpc,
            created: p.created,
            rules,
        },
        parents,
    ))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn n(s: &str) -> HeaderName {
        HeaderName::from_bytes(s.as_bytes()).unwrap()
    }

    fn v(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    /// A route with every kind of match, filter and setting.
    fn everything() -> HttpRoute {
        let target = |name: &str| BackendRef {
            namespace: "shop".into(),
            name: name.into(),
            port: 8080,
        };
        let modifier = HeaderModifier {
            set: vec![(n("x-set"), v("1"))],
            add: vec![(n("x-add"), v("2"))],
            remove: vec![n("x-gone")],
        };
        HttpRoute {
            namespace: "shop".into(),
            name: "all".into(),
            grpc: true,
            created: 1_714_557_600,
            rules: vec![
                Rule {
                    name: Some("first".into()),
                    matches: vec![
                        RequestMatch::new(
                            PathMatch::prefix("/api").unwrap(),
                            vec![
                                HeaderMatch::new("x-exact", ValueMatch::Exact("a".into())).unwrap(),
                                HeaderMatch::new(
                                    "x-re",
                                    ValueMatch::Regex(Pattern::new("b+").unwrap()),
                                )
                                .unwrap(),
                            ],
                            vec![QueryMatch {
                                name: "q".into(),
                                value: ValueMatch::Regex(Pattern::new("[0-9]+").unwrap()),
                            }],
                            Some(http::Method::POST),
                        ),
                        RequestMatch::new(PathMatch::exact("/x").unwrap(), vec![], vec![], None),
                        RequestMatch::new(
                            PathMatch::regex("/v[0-9]/.*").unwrap(),
                            vec![],
                            vec![],
                            None,
                        ),
                    ],
                    filters: vec![
                        Filter::RequestHeaders(modifier.clone()),
                        Filter::ResponseHeaders(modifier.clone()),
                        Filter::Rewrite(Rewrite {
                            hostname: Some("h".into()),
                            path: Some(PathModifier::ReplacePrefixMatch("/in".into())),
                        }),
                        Filter::Mirror(Mirror {
                            target: target("copy"),
                            numerator: 1,
                            denominator: 4,
                        }),
                    ],
                    backends: vec![
                        Backend {
                            target: target("v1"),
                            weight: 90,
                            filters: vec![Filter::RequestHeaders(modifier)],
                            invalid: None,
                        },
                        Backend {
                            target: target("gone"),
                            weight: 10,
                            filters: vec![],
                            invalid: Some("Service shop/gone does not exist".into()),
                        },
                    ],
                    timeouts: Timeouts {
                        request: Some(Duration::from_secs(10)),
                        backend_request: Some(Duration::from_millis(1500)),
                    },
                    retry: Some(Retry {
                        codes: vec![502, 503],
                        attempts: 2,
                        backoff: Duration::from_millis(25),
                    }),
                },
                Rule {
                    filters: vec![Filter::Redirect(
                        Redirect::new(
                            Some("https".into()),
                            Some("e.example".into()),
                            Some(PathModifier::ReplaceFullPath("/new".into())),
                            Some(8443),
                            Some(308),
                        )
                        .unwrap(),
                    )],
                    ..Rule::default()
                },
            ],
        }
    }

    #[test]
    fn every_part_of_a_route_survives_the_wire() {
        let route = everything();
        let parents = vec![
            Parent {
                namespace: "shop".into(),
                name: "web".into(),
                port: Some(80),
            },
            Parent {
                namespace: "shop".into(),
                name: "web".into(),
                port: None,
            },
        ];
        let bytes = to_proto(&route, &parents).encode_to_vec();
        let decoded = pb::HttpRoute::decode(bytes.as_slice()).unwrap();
        let (back, back_parents) = from_proto(&decoded).unwrap();
        assert_eq!(back, route);
        assert_eq!(back_parents, parents);
    }

    #[test]
    fn what_the_waypoint_cannot_build_is_refused_with_where() {
        let mut p = to_proto(&everything(), &[]);
        p.rules[0].matches[0].headers[1].value = "(".into();
        let e = from_proto(&p).unwrap_err();
        assert!(
            e.starts_with("rules[0]:") && e.contains("regular expression"),
            "{e}"
        );
        let mut p = to_proto(&everything(), &[]);
        p.rules[0].matches[1].path_type = 99;
        assert!(from_proto(&p).unwrap_err().contains("path match type"));
        let mut p = to_proto(&everything(), &[]);
        p.rules[0].backends[0].target.as_mut().unwrap().port = 70_000;
        assert!(from_proto(&p).unwrap_err().contains("not a port"));
        let mut p = to_proto(&everything(), &[]);
        p.rules[0].filters[0] = pb::RouteFilter { kind: None };
        assert!(from_proto(&p).unwrap_err().contains("without a kind"));
    }
}
