//! Route selection and filters: the Gateway API's rules case by case, and a
//! property check of the table against a brute-force reading of the
//! precedence list.

use std::sync::Arc;

use http::{HeaderMap, Method, Uri};
use proptest::prelude::*;

use super::*;

fn prefix(p: &str) -> PathMatch {
    PathMatch::prefix(p).unwrap()
}

fn exact(p: &str) -> PathMatch {
    PathMatch::exact(p).unwrap()
}

fn only_path(path: PathMatch) -> RequestMatch {
    RequestMatch::new(path, vec![], vec![], None)
}

fn backend(name: &str, weight: u32) -> Backend {
    Backend {
        target: BackendRef {
            namespace: "shop".into(),
            name: name.into(),
            port: 80,
        },
        weight,
        filters: vec![],
        invalid: None,
    }
}

/// A route with one rule per match list, each rule sending to a backend
/// named `<route>-<rule index>`.
fn route(name: &str, created: i64, rules: Vec<Vec<RequestMatch>>) -> Arc<HttpRoute> {
    Arc::new(HttpRoute {
        namespace: "shop".into(),
        name: name.into(),
        grpc: false,
        created,
        rules: rules
            .into_iter()
            .enumerate()
            .map(|(i, matches)| Rule {
                matches,
                backends: vec![backend(&format!("{name}-{i}"), 1)],
                ..Rule::default()
            })
            .collect(),
    })
}

#[derive(Debug, Clone)]
struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> Req {
    let mut h = HeaderMap::new();
    for (n, v) in headers {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    Req {
        method: method.parse().unwrap(),
        uri: uri.parse().unwrap(),
        headers: h,
    }
}

/// The backend the request is routed to, or "404".
fn route_of(table: &RouteTable, r: &Req) -> String {
    match table.select(&RequestView::new(&r.method, &r.uri, &r.headers)) {
        Some(s) => s.rule.backends[0].target.name.clone(),
        None => "404".into(),
    }
}

#[test]
fn path_prefixes_match_whole_segments() {
    let cases = [
        ("/foo", "/foo", true),
        ("/foo", "/foo/", true),
        ("/foo", "/foo/bar", true),
        ("/foo", "/foobar", false),
        ("/foo", "/fo", false),
        ("/foo/", "/foo", true),
        ("/foo/", "/foo/bar", true),
        ("/foo/", "/foobar", false),
        ("/", "/anything/at/all", true),
        ("/", "/", true),
        ("/foo/bar", "/foo/bar/baz", true),
        ("/foo/bar", "/foo/barbaz", false),
    ];
    for (p, path, want) in cases {
        assert_eq!(prefix(p).matches(path), want, "prefix {p} on {path}");
    }
    assert!(exact("/foo").matches("/foo"));
    assert!(!exact("/foo").matches("/foo/"));
    assert!(PathMatch::exact("foo").is_err());
    assert!(PathMatch::prefix("").is_err());
}

#[test]
fn regular_expressions_match_the_whole_string_and_bad_ones_are_refused() {
    let re = PathMatch::regex("/v[0-9]+/.*").unwrap();
    assert!(re.matches("/v2/items"));
    assert!(!re.matches("/api/v2/items"), "not anchored at the start");
    let re = PathMatch::regex("/items").unwrap();
    assert!(!re.matches("/items/1"), "not anchored at the end");
    // Alternation stays inside the anchors.
    let re = PathMatch::regex("/a|/b").unwrap();
    assert!(re.matches("/a") && re.matches("/b") && !re.matches("/a/b/c"));
    let e = PathMatch::regex("/(unclosed").unwrap_err();
    assert!(matches!(e, RouteError::Regex { .. }), "{e}");
    // A pattern whose compiled program is huge is refused, not built.
    let e = PathMatch::regex("(\\w{100}){100}").unwrap_err();
    assert!(e.to_string().contains("size limit"), "{e}");
}

#[test]
fn exact_beats_regex_beats_the_longest_prefix_whatever_the_order() {
    let table = RouteTable::new(vec![
        route("catch-all", 1, vec![vec![only_path(prefix("/"))]]),
        route("api", 2, vec![vec![only_path(prefix("/api"))]]),
        route("api-v1", 3, vec![vec![only_path(prefix("/api/v1"))]]),
        route(
            "versioned",
            4,
            vec![vec![only_path(
                PathMatch::regex("/api/v[0-9]+/items").unwrap(),
            )]],
        ),
        route("login", 5, vec![vec![only_path(exact("/api/v1/login"))]]),
    ]);
    let to = |path: &str| route_of(&table, &req("GET", path, &[]));
    assert_eq!(to("/api/v1/login"), "login-0");
    assert_eq!(to("/api/v1/items"), "versioned-0");
    assert_eq!(to("/api/v1/other"), "api-v1-0");
    assert_eq!(to("/api/v10"), "api-0");
    assert_eq!(to("/apiary"), "catch-all-0");
    assert_eq!(to("/"), "catch-all-0");
    // By kind first: a regex beats a prefix longer than its pattern.
    let table = RouteTable::new(vec![
        route("long-prefix", 1, vec![vec![only_path(prefix("/a/b/c"))]]),
        route(
            "short-regex",
            2,
            vec![vec![only_path(PathMatch::regex("/a/.*").unwrap())]],
        ),
        route("short-exact", 3, vec![vec![only_path(exact("/a/b/c/d"))]]),
    ]);
    let to = |path: &str| route_of(&table, &req("GET", path, &[]));
    assert_eq!(to("/a/b/c/e"), "short-regex-0");
    assert_eq!(to("/a/b/c/d"), "short-exact-0");
}

#[test]
fn then_method_then_most_headers_then_most_query_params() {
    let h = |n: &str, v: &str| HeaderMatch::new(n, ValueMatch::Exact(v.into())).unwrap();
    let q = |n: &str, v: &str| QueryMatch {
        name: n.into(),
        value: ValueMatch::Exact(v.into()),
    };
    let m = |headers, query, method: Option<Method>| {
        RequestMatch::new(prefix("/"), headers, query, method)
    };
    let table = RouteTable::new(vec![route(
        "r",
        1,
        vec![
            vec![m(vec![], vec![q("a", "1"), q("b", "2")], None)],
            vec![m(vec![h("x", "1")], vec![], None)],
            vec![m(vec![h("x", "1"), h("y", "2")], vec![], None)],
            vec![m(vec![], vec![], Some(Method::POST))],
            vec![m(vec![], vec![q("a", "1")], None)],
        ],
    )]);
    let to = |method, uri, headers: &[(&str, &str)]| route_of(&table, &req(method, uri, headers));
    // Everything holds: the method match wins.
    assert_eq!(to("POST", "/?a=1&b=2", &[("x", "1"), ("y", "2")]), "r-3");
    // Then two headers over one, one header over any query params.
    assert_eq!(to("GET", "/?a=1&b=2", &[("x", "1"), ("y", "2")]), "r-2");
    assert_eq!(to("GET", "/?a=1&b=2", &[("x", "1")]), "r-1");
    // Then two query params over one.
    assert_eq!(to("GET", "/?a=1&b=2", &[]), "r-0");
    assert_eq!(to("GET", "/?a=1", &[]), "r-4");
    assert_eq!(to("GET", "/", &[]), "404");
}

#[test]
fn ties_go_to_the_oldest_route_then_by_name_then_to_the_first_rule() {
    let any = || vec![only_path(prefix("/"))];
    let table = RouteTable::new(vec![
        route("b-newer", 20, vec![any()]),
        route("b-older", 10, vec![any()]),
    ]);
    assert_eq!(route_of(&table, &req("GET", "/", &[])), "b-older-0");
    let table = RouteTable::new(vec![
        route("zeta", 10, vec![any()]),
        route("alpha", 10, vec![any()]),
    ]);
    assert_eq!(route_of(&table, &req("GET", "/", &[])), "alpha-0");
    // The whole `<namespace>/<name>` string is compared: '-' sorts before
    // '/', so namespace "a-b" comes before namespace "a".
    let in_ns = |ns: &str, name: &str| {
        let mut r = (*route(name, 10, vec![any()])).clone();
        r.namespace = ns.into();
        Arc::new(r)
    };
    let table = RouteTable::new(vec![
        in_ns("a", "first-by-tuple"),
        in_ns("a-b", "first-by-string"),
    ]);
    assert_eq!(route_of(&table, &req("GET", "/", &[])), "first-by-string-0");
    let table = RouteTable::new(vec![route("r", 10, vec![any(), any()])]);
    assert_eq!(route_of(&table, &req("GET", "/", &[])), "r-0");
    // A rule without matches takes every request, at the lowest precedence.
    let table = RouteTable::new(vec![route(
        "r",
        10,
        vec![vec![], vec![only_path(prefix("/x"))]],
    )]);
    assert_eq!(route_of(&table, &req("GET", "/y", &[])), "r-0");
    assert_eq!(route_of(&table, &req("GET", "/x/1", &[])), "r-1");
    assert_eq!(
        route_of(&RouteTable::default(), &req("GET", "/", &[])),
        "404"
    );
}

#[test]
fn headers_by_name_case_insensitive_first_value_whole_regex() {
    let m = |value| {
        RequestMatch::new(
            prefix("/"),
            vec![HeaderMatch::new("X-Version", value).unwrap()],
            vec![],
            None,
        )
    };
    let table = RouteTable::new(vec![
        route("exact", 1, vec![vec![m(ValueMatch::Exact("v2".into()))]]),
        route(
            "regex",
            2,
            vec![vec![m(ValueMatch::Regex(Pattern::new("v[3-9]").unwrap()))]],
        ),
    ]);
    let to = |headers: &[(&str, &str)]| route_of(&table, &req("GET", "/", headers));
    assert_eq!(to(&[("x-version", "v2")]), "exact-0");
    assert_eq!(to(&[("X-VERSION", "v2")]), "exact-0");
    assert_eq!(
        to(&[("x-version", "V2")]),
        "404",
        "values are case-sensitive"
    );
    assert_eq!(to(&[("x-version", "v3")]), "regex-0");
    assert_eq!(
        to(&[("x-version", "v33")]),
        "404",
        "regex matches the whole value"
    );
    assert_eq!(to(&[("x-version", "v1"), ("x-version", "v2")]), "404");
    assert_eq!(to(&[]), "404");
    // Of two conditions on one name, only the first counts.
    let m = RequestMatch::new(
        prefix("/"),
        vec![
            HeaderMatch::new("a", ValueMatch::Exact("1".into())).unwrap(),
            HeaderMatch::new("A", ValueMatch::Exact("2".into())).unwrap(),
        ],
        vec![],
        None,
    );
    assert_eq!(m.headers.len(), 1);
    assert!(HeaderMatch::new("bad name", ValueMatch::Exact("x".into())).is_err());
}

#[test]
fn query_params_decoded_first_value_exact_names() {
    let m = RequestMatch::new(
        prefix("/"),
        vec![],
        vec![QueryMatch {
            name: "q".into(),
            value: ValueMatch::Exact("a b/c".into()),
        }],
        None,
    );
    let table = RouteTable::new(vec![route("r", 1, vec![vec![m]])]);
    let to = |uri| route_of(&table, &req("GET", uri, &[]));
    assert_eq!(to("/?q=a%20b%2Fc"), "r-0");
    assert_eq!(to("/?q=a+b/c"), "r-0");
    assert_eq!(to("/?x=1&q=a+b/c"), "r-0");
    assert_eq!(to("/?q=other&q=a+b/c"), "404", "the first value counts");
    assert_eq!(to("/?Q=a+b/c"), "404", "names are exact");
    assert_eq!(to("/"), "404");
    let view_uri: Uri = "/?flag&k=".parse().unwrap();
    let h = HeaderMap::new();
    let v = RequestView::new(&Method::GET, &view_uri, &h);
    assert_eq!(v.query_value("flag").as_deref(), Some(""));
    assert_eq!(v.query_value("k").as_deref(), Some(""));
    assert_eq!(v.query_value("none"), None);
}

#[test]
fn weights_split_exactly_over_uniform_rolls_and_zero_takes_nothing() {
    let rule = Rule {
        backends: vec![backend("v1", 90), backend("off", 0), backend("v2", 10)],
        ..Rule::default()
    };
    let mut counts = std::collections::BTreeMap::new();
    for roll in 0..1_000u64 {
        *counts
            .entry(rule.pick_backend(roll).unwrap().target.name.clone())
            .or_insert(0) += 1;
    }
    assert_eq!(counts.get("v1"), Some(&900));
    assert_eq!(counts.get("v2"), Some(&100));
    assert_eq!(counts.get("off"), None);
    assert!(Rule::default().pick_backend(7).is_none());
    let zero = Rule {
        backends: vec![backend("a", 0)],
        ..Rule::default()
    };
    assert!(zero.pick_backend(7).is_none());
    // Weights up to the API's maximum (1,000,000) do not overflow.
    let big = Rule {
        backends: vec![backend("a", 1_000_000), backend("b", 1_000_000)],
        ..Rule::default()
    };
    assert_eq!(big.pick_backend(999_999).unwrap().target.name, "a");
    assert_eq!(big.pick_backend(1_000_000).unwrap().target.name, "b");
    assert_eq!(big.pick_backend(u64::MAX).unwrap().target.name, "b");
}

#[test]
fn replace_prefix_match_as_the_api_tabulates_it() {
    // (request path, matched prefix, replacement, result): the table in
    // the Gateway API's HTTPPathModifier documentation.
    let cases = [
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
    ];
    for (path, p, with, want) in cases {
        let m = PathModifier::ReplacePrefixMatch(with.into());
        assert_eq!(m.apply(path, &prefix(p)), want, "{path} {p} {with:?}");
    }
    // Under the catch-all prefix the whole path follows the replacement.
    let m = PathModifier::ReplacePrefixMatch("/v2".into());
    assert_eq!(m.apply("/items/1", &prefix("/")), "/v2/items/1");
    let full = PathModifier::ReplaceFullPath("/new".into());
    assert_eq!(full.apply("/old/path", &prefix("/old")), "/new");
}

#[test]
fn redirect_locations_follow_the_port_rules() {
    let from = Origin {
        scheme: "http",
        host: "shop.example",
        port: 8080,
        path: "/cart/1",
        query: Some("a=1"),
    };
    let at = |r: Redirect| r.location(&from, &prefix("/cart"));
    let redirect = |scheme: Option<&str>, host: Option<&str>, port, path| {
        Redirect::new(
            scheme.map(String::from),
            host.map(String::from),
            path,
            port,
            None,
        )
        .unwrap()
    };
    // No port, no scheme: the port the request came to.
    assert_eq!(
        at(redirect(None, Some("other"), None, None)),
        "http://other:8080/cart/1?a=1"
    );
    // A scheme without a port: its well-known port, left out.
    assert_eq!(
        at(redirect(Some("https"), None, None, None)),
        "https://shop.example/cart/1?a=1"
    );
    assert_eq!(
        at(redirect(Some("https"), None, Some(8443), None)),
        "https://shop.example:8443/cart/1?a=1"
    );
    assert_eq!(
        at(redirect(None, None, Some(80), None)),
        "http://shop.example/cart/1?a=1"
    );
    let path = PathModifier::ReplacePrefixMatch("/basket".into());
    assert_eq!(
        at(redirect(None, None, None, Some(path))),
        "http://shop.example:8080/basket/1?a=1"
    );
    let r = redirect(None, None, None, None);
    assert_eq!(r.status, 302);
    assert!(Redirect::new(None, None, None, None, Some(200)).is_err());
    assert!(Redirect::new(Some("ftp".into()), None, None, None, None).is_err());
    assert!(Redirect::new(None, None, None, None, Some(308)).is_ok());
}

#[test]
fn header_modifiers_set_add_then_remove() {
    let n = |s: &str| HeaderName::from_bytes(s.as_bytes()).unwrap();
    let v = |s: &str| HeaderValue::from_str(s).unwrap();
    let m = HeaderModifier {
        set: vec![(n("x-set"), v("new"))],
        add: vec![(n("x-add"), v("more")), (n("x-new"), v("1"))],
        remove: vec![n("x-gone")],
    };
    let mut h = HeaderMap::new();
    h.append(n("x-set"), v("old1"));
    h.append(n("x-set"), v("old2"));
    h.append(n("x-add"), v("first"));
    h.append(n("x-gone"), v("bye"));
    h.append(n("x-kept"), v("k"));
    m.apply(&mut h);
    let all = |name: &str| -> Vec<&str> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(all("x-set"), ["new"]);
    assert_eq!(all("x-add"), ["first", "more"]);
    assert_eq!(all("x-new"), ["1"]);
    assert!(all("x-gone").is_empty());
    assert_eq!(all("x-kept"), ["k"]);
}

#[test]
fn mirrors_sample_their_fraction() {
    let mirror = |numerator, denominator| Mirror {
        target: backend("copy", 1).target,
        numerator,
        denominator,
    };
    let hits = |m: &Mirror| (0..1_000u64).filter(|r| m.sampled(*r)).count();
    assert_eq!(hits(&mirror(100, 100)), 1_000);
    assert_eq!(hits(&mirror(25, 100)), 250);
    assert_eq!(hits(&mirror(0, 100)), 0);
    assert_eq!(
        hits(&mirror(1, 0)),
        0,
        "an impossible fraction mirrors nothing"
    );
}

// ---- Property: the table agrees with a brute-force reading of the rules.

/// Small vocabularies so that generated requests often match.
const PATHS: [&str; 6] = ["/", "/a", "/a/b", "/a/b/c", "/ab", "/b"];
const VALUES: [&str; 2] = ["1", "2"];

fn arb_path_match() -> impl Strategy<Value = PathMatch> {
    prop_oneof![
        prop::sample::select(&PATHS[..]).prop_map(prefix),
        prop::sample::select(&PATHS[..]).prop_map(exact),
        prop::sample::select(&["/a.*", "/(a|b)", "/a/[a-z]", "/a/b/."][..])
            .prop_map(|p| PathMatch::regex(p).unwrap()),
    ]
}

fn arb_match() -> impl Strategy<Value = RequestMatch> {
    (
        arb_path_match(),
        prop::collection::vec((0..2usize, 0..2usize), 0..3),
        prop::collection::vec((0..2usize, 0..2usize), 0..3),
        prop::option::of(prop::sample::select(vec![Method::GET, Method::POST])),
    )
        .prop_map(|(path, hs, qs, method)| {
            let headers = hs
                .into_iter()
                .map(|(n, v)| {
                    HeaderMatch::new(["x", "y"][n], ValueMatch::Exact(VALUES[v].into())).unwrap()
                })
                .collect();
            let query = qs
                .into_iter()
                .map(|(n, v)| QueryMatch {
                    name: ["p", "q"][n].into(),
                    value: ValueMatch::Exact(VALUES[v].into()),
                })
                .collect();
            RequestMatch::new(path, headers, query, method)
        })
}

fn arb_routes() -> impl Strategy<Value = Vec<Arc<HttpRoute>>> {
    prop::collection::vec(
        (
            0..3i64,
            prop::collection::vec(prop::collection::vec(arb_match(), 0..3), 1..3),
        ),
        0..4,
    )
    .prop_map(|rs| {
        rs.into_iter()
            .enumerate()
            .map(|(i, (created, rules))| {
                // Two namespaces whose names order differently as strings
                // and as (namespace, name) pairs.
                let mut r = (*route(&format!("r{}", 3 - i), created, rules)).clone();
                r.namespace = ["a", "a-b"][i % 2].into();
                Arc::new(r)
            })
            .collect()
    })
}

fn arb_request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(&PATHS[..]),
        prop::sample::select(&["GET", "POST"][..]),
        prop::collection::vec((0..2usize, 0..2usize), 0..3),
        prop::collection::vec((0..2usize, 0..2usize), 0..3),
    )
        .prop_map(|(path, method, hs, qs)| {
            let query: Vec<String> = qs
                .iter()
                .map(|(n, v)| format!("{}={}", ["p", "q"][*n], VALUES[*v]))
                .collect();
            let uri = if query.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", query.join("&"))
            };
            let headers: Vec<(&str, &str)> = hs
                .iter()
                .map(|(n, v)| (["x", "y"][*n], VALUES[*v]))
                .collect();
            req(method, &uri, &headers)
        })
}

/// Whether `a` takes precedence over `b`, read off the API's list one
/// criterion at a time. Entries are (route, rule index, match index).
fn better(
    a: (&HttpRoute, usize, usize, &RequestMatch),
    b: (&HttpRoute, usize, usize, &RequestMatch),
) -> bool {
    use std::cmp::Ordering::*;
    let kind = |m: &RequestMatch| match &m.path {
        PathMatch::Exact(_) => 2,
        PathMatch::Regex(_) => 1,
        PathMatch::Prefix(_) => 0,
    };
    let len = |m: &RequestMatch| match &m.path {
        PathMatch::Exact(p) | PathMatch::Prefix(p) => p.len(),
        PathMatch::Regex(r) => r.as_str().len(),
    };
    let criteria = [
        kind(a.3).cmp(&kind(b.3)),
        len(a.3).cmp(&len(b.3)),
        a.3.method.is_some().cmp(&b.3.method.is_some()),
        a.3.headers.len().cmp(&b.3.headers.len()),
        a.3.query.len().cmp(&b.3.query.len()),
        b.0.created.cmp(&a.0.created),
        // `<namespace>/<name>` as one string, as the API says.
        format!("{}/{}", b.0.namespace, b.0.name).cmp(&format!("{}/{}", a.0.namespace, a.0.name)),
        b.1.cmp(&a.1),
        b.2.cmp(&a.2),
    ];
    criteria.into_iter().find(|c| *c != Equal) == Some(Greater)
}

proptest! {
    // Cheap (~10 µs a case), and most generated cases hold at most one
    // matching entry: many cases, so that ties between criteria are met.
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn the_table_picks_what_the_precedence_list_says(routes in arb_routes(), r in arb_request()) {
        let table = RouteTable::new(routes.clone());
        let view = RequestView::new(&r.method, &r.uri, &r.headers);
        let every = RequestMatch::default();
        let mut best: Option<(&HttpRoute, usize, usize, &RequestMatch)> = None;
        for route in &routes {
            for (ki, rule) in route.rules.iter().enumerate() {
                let ms: Vec<&RequestMatch> = if rule.matches.is_empty() {
                    vec![&every]
                } else {
                    rule.matches.iter().collect()
                };
                for (mi, m) in ms.into_iter().enumerate() {
                    if m.matches(&view) {
                        let cand = (&**route, ki, mi, m);
                        if best.is_none_or(|b| better(cand, b)) {
                            best = Some(cand);
                        }
                    }
                }
            }
        }
        let got = table.select(&view);
        match (got, best) {
            (None, None) => {}
            (Some(g), Some(b)) => {
                prop_assert_eq!(&g.route.name, &b.0.name);
                prop_assert_eq!(g.rule_index, b.1);
                prop_assert!(std::ptr::eq(g.matched, b.3) || (b.3 == &every && g.rule.matches.is_empty()));
            }
            (g, b) => prop_assert!(false, "table {:?}, brute force {:?}", g.map(|s| s.route.name.clone()), b.map(|b| b.0.name.clone())),
        }
    }
}
