//! HTTPRoutes as users write them, read into the model and the status.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

/// Services by (namespace, name): their ports.
struct Known(BTreeMap<(String, String), Vec<u16>>);

impl Refs for Known {
    fn service_ports(&self, namespace: &str, name: &str) -> Option<Vec<u16>> {
        self.0
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Port 3306 of any Service is a database's.
    fn opaque_ports(&self, namespace: &str, name: &str) -> Vec<u16> {
        self.service_ports(namespace, name)
            .unwrap_or_default()
            .into_iter()
            .filter(|p| *p == 3306)
            .collect()
    }
}

fn known() -> Known {
    let mut m = BTreeMap::new();
    for (name, ports) in [
        ("shop", vec![80, 8080]),
        ("shop-v1", vec![80]),
        ("shop-v2", vec![80]),
    ] {
        m.insert(("store".to_string(), name.to_string()), ports);
    }
    Known(m)
}

fn route(spec: serde_json::Value) -> Compiled {
    compile("store", "shop-split", 100, &spec, &known())
}

fn parent() -> serde_json::Value {
    json!([{"group": "", "kind": "Service", "name": "shop", "port": 80}])
}

/// The conditions of the only parent, as (type, status, reason).
fn conditions(c: &Compiled) -> Vec<(&'static str, bool, &'static str)> {
    assert_eq!(c.parents.len(), 1, "{:?}", c.parents);
    c.parents[0]
        .1
        .iter()
        .map(|c| (c.kind, c.status, c.reason))
        .collect()
}

#[test]
fn a_canary_split_with_a_header_route_is_accepted_and_compiled() {
    let c = route(json!({
        "parentRefs": parent(),
        "rules": [
            {"matches": [{"headers": [{"name": "x-canary", "value": "yes"}]}],
             "backendRefs": [{"name": "shop-v2", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}],
             "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-route", "value": "split"}], "remove": ["x-debug"]}}],
             "backendRefs": [{"name": "shop-v1", "port": 80, "weight": 90}, {"name": "shop-v2", "port": 80, "weight": 10}],
             "timeouts": {"request": "10s", "backendRequest": "2s500ms"}}
        ]
    }));
    assert_eq!(
        conditions(&c),
        [
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", true, "ResolvedRefs")
        ]
    );
    assert_eq!(c.parents[0].0, ("store".into(), "shop".into(), Some(80)));
    let r = c.route.unwrap();
    assert_eq!(
        (r.namespace.as_str(), r.name.as_str(), r.created),
        ("store", "shop-split", 100)
    );
    assert_eq!(r.rules.len(), 2);
    assert_eq!(r.rules[0].matches[0].path, PathMatch::prefix("/").unwrap());
    assert_eq!(r.rules[0].matches[0].headers.len(), 1);
    let split = &r.rules[1];
    assert_eq!(split.matches[0].method, Some(http::Method::GET));
    let weights: Vec<_> = split
        .backends
        .iter()
        .map(|b| (b.target.name.as_str(), b.weight))
        .collect();
    assert_eq!(weights, [("shop-v1", 90), ("shop-v2", 10)]);
    assert_eq!(split.timeouts.request, Some(Duration::from_secs(10)));
    assert_eq!(
        split.timeouts.backend_request,
        Some(Duration::from_millis(2500))
    );
    assert!(
        matches!(&split.filters[0], Filter::RequestHeaders(m) if m.set.len() == 1 && m.remove.len() == 1)
    );
}

#[test]
fn a_mirror_that_does_not_resolve_is_reported_and_dropped_alone() {
    let mirror = |backend: serde_json::Value| {
        route(json!({
            "parentRefs": parent(),
            "rules": [{
                "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": backend}}],
                "backendRefs": [{"name": "shop-v1", "port": 80}]
            }]
        }))
    };
    // A Service that exists: mirrored.
    let ok = mirror(json!({"name": "shop-v2", "port": 80}));
    assert_eq!(conditions(&ok)[1], ("ResolvedRefs", true, "ResolvedRefs"));
    let rule = &ok.route.unwrap().rules[0];
    assert!(matches!(&rule.filters[0], Filter::Mirror(m) if m.target.name == "shop-v2"));
    // Missing, in another namespace, not a Service, a port it lacks, or a
    // name spelled as a pod address: reported, no copies, the rule served.
    for (backend, reason) in [
        (json!({"name": "gone", "port": 80}), "BackendNotFound"),
        (
            json!({"name": "shop-v2", "namespace": "other", "port": 80}),
            "RefNotPermitted",
        ),
        (
            json!({"group": "example.com", "kind": "Bucket", "name": "b", "port": 80}),
            "InvalidKind",
        ),
        (json!({"name": "shop-v2", "port": 9999}), "BackendNotFound"),
        (
            json!({"name": "10.244.1.3", "port": 6379}),
            "BackendNotFound",
        ),
    ] {
        let c = mirror(backend.clone());
        assert_eq!(
            conditions(&c),
            [
                ("Accepted", true, "Accepted"),
                ("ResolvedRefs", false, reason)
            ],
            "{backend}"
        );
        assert!(
            c.parents[0].1[1]
                .message
                .contains("filters[0].requestMirror.backendRef"),
            "{:?}",
            c.parents[0].1
        );
        let rule = &c.route.unwrap().rules[0];
        assert!(
            !rule.filters.iter().any(|f| matches!(f, Filter::Mirror(_))),
            "{backend}: {:?}",
            rule.filters
        );
        assert_eq!(rule.backends.len(), 1);
        assert!(rule.backends[0].invalid.is_none());
    }
}

#[test]
fn references_that_do_not_resolve_are_reported_and_keep_their_share() {
    let c = route(json!({
        "parentRefs": parent(),
        "rules": [{"backendRefs": [
            {"name": "shop-v1", "port": 80, "weight": 50},
            {"name": "gone", "port": 80, "weight": 50}
        ]}]
    }));
    assert_eq!(
        conditions(&c),
        [
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", false, "BackendNotFound")
        ]
    );
    assert!(
        c.parents[0].1[1].message.contains("store/gone"),
        "{:?}",
        c.parents[0].1
    );
    // The rule keeps both backends: the missing one's half gets errors.
    assert_eq!(c.route.unwrap().rules[0].backends.len(), 2);

    let across = route(json!({
        "parentRefs": parent(),
        "rules": [{"backendRefs": [{"name": "shop-v1", "namespace": "other", "port": 80}]}]
    }));
    assert_eq!(
        conditions(&across)[1],
        ("ResolvedRefs", false, "RefNotPermitted")
    );
    let kind = route(json!({
        "parentRefs": parent(),
        "rules": [{"backendRefs": [{"group": "example.com", "kind": "Bucket", "name": "b"}]}]
    }));
    assert_eq!(conditions(&kind)[1], ("ResolvedRefs", false, "InvalidKind"));
    let port = route(json!({
        "parentRefs": parent(),
        "rules": [{"backendRefs": [{"name": "shop-v1", "port": 9999}]}]
    }));
    assert_eq!(
        conditions(&port)[1],
        ("ResolvedRefs", false, "BackendNotFound")
    );
}

#[test]
fn parents_that_are_not_ours_or_do_not_exist() {
    // A Gateway parent belongs to another controller: no status from us.
    let c = route(json!({
        "parentRefs": [{"name": "ingress"}],
        "rules": [{"backendRefs": [{"name": "shop-v1", "port": 80}]}]
    }));
    assert!(c.parents.is_empty());
    let c = route(json!({
        "parentRefs": [{"group": "", "kind": "Service", "name": "nope"}],
        "rules": []
    }));
    assert_eq!(conditions(&c), [("Accepted", false, "NoMatchingParent")]);
    let c = route(json!({
        "parentRefs": [{"group": "", "kind": "Service", "name": "shop", "port": 81}],
        "rules": []
    }));
    assert_eq!(conditions(&c), [("Accepted", false, "NoMatchingParent")]);
    // Without a port the route attaches to every port of the Service.
    let c = route(json!({"parentRefs": [{"group": "", "kind": "Service", "name": "shop"}]}));
    assert_eq!(conditions(&c)[0], ("Accepted", true, "Accepted"));
    assert_eq!(c.parents[0].0 .2, None);
}

#[test]
fn what_quicmesh_cannot_do_as_written_is_not_accepted_and_says_where() {
    let cases = [
        (
            json!({"parentRefs": parent(), "rules": [{"filters": [{"type": "CORS"}]}]}),
            "filters[0].type",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"sessionPersistence": {}}]}),
            "sessionPersistence",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "(["}}]}]}),
            "matches[0].path",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"matches": [{"path": {"type": "Exact", "value": "no-slash"}}]}]}),
            "matches[0].path",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"matches": [{"method": "BREW"}]}]}),
            "method",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"matches": [{"headers": [{"name": "bad name", "value": "x"}]}]}]}),
            "headers[0].name",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"timeouts": {"request": "ten seconds"}}]}),
            "timeouts.request",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 200}}]}]}),
            "requestRedirect",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {}}], "backendRefs": [{"name": "shop-v1", "port": 80}]}]}),
            "cannot be used with backendRefs",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"matches": [{"path": {"type": "Exact", "value": "/a"}}], "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}}]}]}),
            "ReplacePrefixMatch needs",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shop-v2", "port": 80}, "fraction": {"numerator": 3, "denominator": 2}}}]}]}),
            "not a fraction",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "evil\r\nx: y"}}]}]}),
            "requestRedirect.hostname",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "UPPER.example"}}]}]}),
            "urlRewrite.hostname",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"retry": {"codes": [404]}}]}),
            "retry.codes: 404 is not a 5xx code",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"retry": {"attempts": 11}}]}),
            "retry.attempts: 11 is over 10",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shop-v2", "port": 80}, "percent": 25, "fraction": {"numerator": 1}}}]}]}),
            "percent and fraction are exclusive",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"backendRefs": [{"name": "shop-v1", "port": 80, "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}]}]}]}),
            "only header modifiers",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"timeouts": {"request": "1s", "backendRequest": "2s"}}]}),
            "longer than timeouts.request",
        ),
        (
            json!({"parentRefs": [{"group": "", "kind": "Service", "name": "shop", "sectionName": "http"}], "rules": []}),
            "sectionName",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"backendRefs": [{"name": "shop-v1", "port": 80, "weight": 2000000}]}]}),
            "weight",
        ),
    ];
    for (spec, field) in cases {
        let c = route(spec.clone());
        assert!(c.route.is_none(), "accepted: {spec}");
        let conds = conditions(&c);
        assert_eq!(conds, [("Accepted", false, "UnsupportedValue")], "{spec}");
        let message = &c.parents[0].1[0].message;
        assert!(
            message.contains(field),
            "{message:?} does not name {field:?}"
        );
    }
}

#[test]
fn filters_read_as_the_api_defines_them() {
    let c = route(json!({
        "parentRefs": parent(),
        "rules": [{
            "matches": [{"path": {"value": "/old"}}],
            "filters": [
                {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "hostname": "shop.example", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}, "statusCode": 301}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-moved", "value": "1"}]}}
            ]
        }]
    }));
    let rule = &c.route.expect("accepted").rules[0];
    match &rule.filters[0] {
        Filter::Redirect(r) => {
            assert_eq!(r.status, 301);
            assert_eq!(r.scheme.as_deref(), Some("https"));
            assert_eq!(
                r.path,
                Some(PathModifier::ReplacePrefixMatch("/new".into()))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&rule.filters[1], Filter::ResponseHeaders(m) if m.add.len() == 1));
}

#[test]
fn gateway_api_durations() {
    let ok = [
        ("10s", 10_000),
        ("500ms", 500),
        ("1h30m", 5_400_000),
        ("1h1m1s1ms", 3_661_001),
        ("0s", 0),
        ("99999ms", 99_999),
    ];
    for (s, ms) in ok {
        assert_eq!(duration(s), Ok(Duration::from_millis(ms)), "{s}");
    }
    for bad in [
        "",
        "10",
        "s",
        "1.5s",
        "100000s",
        "1h1m1s1ms1s",
        "-1s",
        "10 s",
        "1d",
    ] {
        assert!(duration(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn unusable_backends_are_marked_and_zero_timeouts_are_none() {
    let c = route(json!({
        "parentRefs": parent(),
        "rules": [{
            "backendRefs": [
                {"name": "shop-v1", "port": 80},
                {"name": "shop-v1", "namespace": "other", "port": 80},
                {"group": "example.com", "kind": "Bucket", "name": "shop-v1"},
                {"name": "gone", "port": 80}
            ],
            "timeouts": {"request": "0s"}
        }]
    }));
    let rule = &c.route.expect("accepted: only references fail").rules[0];
    let invalid: Vec<bool> = rule.backends.iter().map(|b| b.invalid.is_some()).collect();
    assert_eq!(invalid, [false, true, true, true]);
    assert_eq!(rule.timeouts.request, None, "0s disables the timeout");
}

#[test]
fn a_route_in_another_namespace_than_its_parent_is_a_consumer_route() {
    let mut k = known();
    k.0.insert(("front".into(), "web".into()), vec![80]);
    let consumer = |backend_ns: &str| {
        compile(
            "front",
            "consumer",
            0,
            &json!({"parentRefs": [{"group": "", "kind": "Service", "namespace": "store", "name": "shop"}],
                    "rules": [{"backendRefs": [{"name": "shop-v1", "namespace": backend_ns, "port": 80}]}]}),
            &k,
        )
    };
    // Accepted, sending to a Service of its parent's namespace (where the
    // waypoint that runs it is).
    let c = consumer("store");
    assert_eq!(c.parents[0].1[0].reason, "Accepted");
    assert!(c.parents[0].1[0].message.contains("consumer route"));
    assert_eq!(c.parents[0].1[1].reason, "ResolvedRefs");
    let r = c.route.unwrap();
    assert_eq!(
        r.namespace, "front",
        "it keeps its own namespace: its consumers"
    );
    assert!(r.rules[0].backends[0].invalid.is_none());
    // A backend of its own namespace cannot be served from there.
    let c = consumer("front");
    assert_eq!(c.parents[0].1[1].reason, "RefNotPermitted");
    assert!(c.route.unwrap().rules[0].backends[0].invalid.is_some());
}

#[test]
fn grpc_routes_match_methods_as_paths_and_refuse_http_only_fields() {
    let c = compile_grpc(
        "store",
        "cart",
        5,
        &json!({
            "parentRefs": parent(),
            "rules": [
                {"matches": [{"method": {"service": "shop.Cart", "method": "Checkout"}},
                             {"headers": [{"name": "x-canary", "value": "yes"}]}],
                 "backendRefs": [{"name": "shop-v2", "port": 80}]},
                {"backendRefs": [{"name": "shop-v1", "port": 80}]}
            ]
        }),
        &known(),
    );
    assert_eq!(
        conditions(&c),
        [
            ("Accepted", true, "Accepted"),
            ("ResolvedRefs", true, "ResolvedRefs")
        ]
    );
    let r = c.route.unwrap();
    // A route of its own, apart from an HTTPRoute named alike (its retry
    // budget too).
    assert!(r.grpc);
    assert_eq!(
        r.rules[0].matches[0].path,
        PathMatch::exact("/shop.Cart/Checkout").unwrap()
    );
    assert_eq!(r.rules[0].matches[1].path, PathMatch::prefix("/").unwrap());
    assert_eq!(r.rules[0].matches[1].headers.len(), 1);
    // HTTPRoute's fields are not GRPCRoute's: refused by name.
    for (spec, field) in [
        (
            json!({"parentRefs": parent(), "rules": [{"timeouts": {"request": "1s"}}]}),
            "spec.rules[0]",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"matches": [{"path": {"value": "/x"}}]}]}),
            "spec.rules[0].matches[0]",
        ),
        (
            json!({"parentRefs": parent(), "rules": [{"matches": [{"method": {"method": "a-b"}}]}]}),
            "spec.rules[0].matches[0].method.method",
        ),
    ] {
        let c = compile_grpc("store", "bad", 0, &spec, &known());
        assert!(c.route.is_none());
        let cond = &c.parents[0].1[0];
        assert_eq!((cond.status, cond.reason), (false, "UnsupportedValue"));
        assert!(cond.message.starts_with(field), "{}", cond.message);
    }
}

#[test]
fn retries_are_read_with_their_defaults() {
    let c = route(json!({
        "parentRefs": parent(),
        "rules": [
            {"retry": {"codes": [502, 503], "attempts": 2, "backoff": "50ms"},
             "backendRefs": [{"name": "shop-v1", "port": 80}]},
            {"retry": {}, "backendRefs": [{"name": "shop-v1", "port": 80}]}
        ]
    }));
    let r = c.route.expect("accepted");
    let rt = r.rules[0].retry.as_ref().unwrap();
    assert_eq!(
        (rt.codes.as_slice(), rt.attempts, rt.backoff),
        (&[502u16, 503][..], 2, Duration::from_millis(50))
    );
    let d = r.rules[1].retry.as_ref().unwrap();
    assert_eq!((d.attempts, d.backoff), (1, Duration::from_millis(25)));
    assert!(
        d.codes.is_empty(),
        "no codes: only connection failures are retried"
    );
}

#[test]
fn a_route_on_a_port_that_is_not_http_is_not_accepted() {
    let mut k = known();
    k.0.insert(("store".into(), "db".into()), vec![80, 3306]);
    let on = |port: u16| {
        compile(
            "store",
            "r",
            0,
            &json!({"parentRefs": [{"group": "", "kind": "Service", "name": "db", "port": port}],
                    "rules": [{"backendRefs": [{"name": "shop-v1", "port": 80}]}]}),
            &k,
        )
    };
    let c = on(3306);
    assert_eq!(c.parents[0].1[0].reason, "UnsupportedValue");
    assert!(
        c.parents[0].1[0]
            .message
            .contains("passed through as bytes"),
        "{:?}",
        c.parents[0].1
    );
    assert!(c.route.is_none());
    assert_eq!(on(80).parents[0].1[0].reason, "Accepted");
}
