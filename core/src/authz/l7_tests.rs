//! The L7 half: the patterns' parsers, a table of requests × policies as a
//! waypoint decides them, and properties: a ztunnel (no request) never
//! allows what a waypoint would deny, and each `not` field is the
//! complement of its positive.

use super::l7::{parse_host, parse_method, parse_path, parse_request_principal, Key};
use super::*;
use proptest::prelude::*;

const TD: &str = "cluster.local";
const WEB: &str = "spiffe://cluster.local/ns/front/sa/web";

fn conn(principal: &str, port: u16) -> Connection {
    Connection::new(
        Some(SpiffeId::parse(principal).unwrap()),
        TD,
        "10.244.1.5".parse().unwrap(),
        port,
    )
    .at_waypoint()
}

/// An owned request, borrowed as [`Request`] for one decision.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    host: Option<String>,
    headers: http::HeaderMap,
    /// principal, audiences, presenter, claims
    auth: Option<Jwt>,
}

#[derive(Debug, Clone)]
struct Jwt {
    principal: String,
    audiences: Vec<String>,
    presenter: Option<String>,
    claims: serde_json::Map<String, serde_json::Value>,
}

impl Req {
    fn new(method: &str, path: &str) -> Self {
        Req {
            method: method.into(),
            path: path.into(),
            host: Some("web.shop.svc.cluster.local:80".into()),
            headers: http::HeaderMap::new(),
            auth: None,
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers
            .append(name, http::HeaderValue::from_static(value));
        self
    }

    fn host(mut self, host: Option<&str>) -> Self {
        self.host = host.map(str::to_string);
        self
    }

    fn jwt(mut self, principal: &str, claims: serde_json::Value) -> Self {
        self.auth = Some(Jwt {
            principal: principal.into(),
            audiences: vec!["shop".into()],
            presenter: Some("cli".into()),
            claims: claims.as_object().unwrap().clone(),
        });
        self
    }

    fn view(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            host: self.host.as_deref(),
            headers: &self.headers,
            auth: self.auth.as_ref().map(|j| Authenticated {
                principal: &j.principal,
                audiences: &j.audiences,
                presenter: j.presenter.as_deref(),
                claims: &j.claims,
            }),
        }
    }
}

fn policy(name: &str, action: Action, rules: Vec<Rule>) -> Policy {
    Policy {
        name: name.into(),
        action,
        rules,
        invalid: None,
    }
}

fn op(f: impl FnOnce(&mut Operation)) -> Rule {
    let mut o = Operation::default();
    f(&mut o);
    o.l7 = o.has_l7();
    Rule {
        to: vec![o],
        ..Rule::default()
    }
}

fn when(key: &str, values: &[&str], not_values: &[&str]) -> Rule {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let c = Condition::parse(key, &s(values), &s(not_values)).unwrap();
    Rule {
        l7: c.key.l7(),
        when: vec![c],
        ..Rule::default()
    }
}

fn request_principals(ps: &[&str]) -> Rule {
    Rule {
        from: vec![Source {
            request_principals: ps
                .iter()
                .map(|p| parse_request_principal(p).unwrap())
                .collect(),
            l7: true,
            ..Source::default()
        }],
        ..Rule::default()
    }
}

fn pats(f: fn(&str) -> Result<StringMatch, String>, ps: &[&str]) -> Vec<StringMatch> {
    ps.iter().map(|p| f(p).unwrap()).collect()
}

#[test]
fn a_waypoint_decides_every_part_of_a_request() {
    let get_only = || {
        policy(
            "shop/get-only",
            Action::Allow,
            vec![op(|o| o.methods = pats(parse_method, &["GET", "HEAD"]))],
        )
    };
    let no_admin = || {
        policy(
            "shop/no-admin",
            Action::Deny,
            vec![op(|o| o.paths = pats(parse_path, &["/admin", "/admin/*"]))],
        )
    };
    let api = || {
        policy(
            "shop/api",
            Action::Allow,
            vec![op(|o| {
                o.paths = pats(parse_path, &["/api/*", "*.png"]);
                o.not_paths = pats(parse_path, &["/api/internal/*"]);
            })],
        )
    };
    let host = || {
        policy(
            "shop/host",
            Action::Allow,
            vec![op(|o| {
                o.hosts = pats(parse_host, &["web.shop.svc.cluster.local"])
            })],
        )
    };
    let jwt_any = || policy("shop/jwt", Action::Allow, vec![request_principals(&["*"])]);
    let jwt_alice = || {
        policy(
            "shop/alice",
            Action::Allow,
            vec![request_principals(&["https://issuer.example/alice"])],
        )
    };
    let user_header = || {
        policy(
            "shop/user",
            Action::Allow,
            vec![when("request.headers[X-User]", &["alice", "b*"], &[])],
        )
    };
    let not_bot = || {
        policy(
            "shop/not-bot",
            Action::Deny,
            vec![when(
                "request.headers[user-agent]",
                &[],
                &["curl/*", "Mozilla*"],
            )],
        )
    };
    let admins = || {
        policy(
            "shop/admins",
            Action::Allow,
            vec![when("request.auth.claims[groups]", &["admin"], &[])],
        )
    };
    let nested = || {
        policy(
            "shop/nested",
            Action::Allow,
            vec![when("request.auth.claims[realm][level]", &["3"], &[])],
        )
    };
    let alice = |r: Req| {
        r.jwt(
            "https://issuer.example/alice",
            serde_json::json!({"groups": ["dev", "admin"], "realm": {"level": 3}}),
        )
    };
    let bob = |r: Req| {
        r.jwt(
            "https://issuer.example/bob",
            serde_json::json!({"groups": "dev", "realm": {"level": "2"}}),
        )
    };
    let g = || Req::new("GET", "/");
    let cases: Vec<(&str, Vec<Policy>, Req, &str)> = vec![
        (
            "method allowed",
            vec![get_only()],
            g(),
            "allow by shop/get-only",
        ),
        (
            "method not allowed",
            vec![get_only()],
            Req::new("POST", "/"),
            "deny (no_allow_match) by shop/get-only",
        ),
        (
            "deny by exact path",
            vec![get_only(), no_admin()],
            Req::new("GET", "/admin"),
            "deny (deny_policy) by shop/no-admin",
        ),
        (
            "deny by prefix path",
            vec![no_admin()],
            Req::new("GET", "/admin/users"),
            "deny (deny_policy) by shop/no-admin",
        ),
        (
            "a prefix is not a longer word",
            vec![no_admin()],
            Req::new("GET", "/administrator"),
            "allow",
        ),
        (
            "path prefix",
            vec![api()],
            Req::new("GET", "/api/v1"),
            "allow by shop/api",
        ),
        (
            "path suffix",
            vec![api()],
            Req::new("GET", "/img/a.png"),
            "allow by shop/api",
        ),
        (
            "notPaths",
            vec![api()],
            Req::new("GET", "/api/internal/x"),
            "deny (no_allow_match) by shop/api",
        ),
        (
            "host with its port",
            vec![host()],
            g(),
            "allow by shop/host",
        ),
        (
            "host without a port, other case",
            vec![host()],
            g().host(Some("WEB.shop.svc.cluster.local")),
            "allow by shop/host",
        ),
        (
            "another host",
            vec![host()],
            g().host(Some("web.other")),
            "deny (no_allow_match) by shop/host",
        ),
        (
            "no host",
            vec![host()],
            g().host(None),
            "deny (no_allow_match) by shop/host",
        ),
        (
            "no JWT is not a request principal",
            vec![jwt_any()],
            g(),
            "deny (no_allow_match) by shop/jwt",
        ),
        ("any JWT", vec![jwt_any()], bob(g()), "allow by shop/jwt"),
        (
            "this JWT",
            vec![jwt_alice()],
            alice(g()),
            "allow by shop/alice",
        ),
        (
            "another JWT",
            vec![jwt_alice()],
            bob(g()),
            "deny (no_allow_match) by shop/alice",
        ),
        (
            "header exact (name case-insensitive)",
            vec![user_header()],
            g().header("x-user", "alice"),
            "allow by shop/user",
        ),
        (
            "header prefix",
            vec![user_header()],
            g().header("x-user", "bob"),
            "allow by shop/user",
        ),
        (
            "header absent",
            vec![user_header()],
            g(),
            "deny (no_allow_match) by shop/user",
        ),
        (
            "any occurrence of a repeated header",
            vec![user_header()],
            g().header("x-user", "carol").header("x-user", "alice"),
            "allow by shop/user",
        ),
        (
            "notValues: absent header",
            vec![not_bot()],
            g(),
            "deny (deny_policy) by shop/not-bot",
        ),
        (
            "notValues: a listed value",
            vec![not_bot()],
            g().header("user-agent", "curl/8.5.0"),
            "allow",
        ),
        (
            "a claim in a list",
            vec![admins()],
            alice(g()),
            "allow by shop/admins",
        ),
        (
            "a claim not in it",
            vec![admins()],
            bob(g()),
            "deny (no_allow_match) by shop/admins",
        ),
        (
            "no JWT, no claims",
            vec![admins()],
            g(),
            "deny (no_allow_match) by shop/admins",
        ),
        (
            "a nested number claim",
            vec![nested()],
            alice(g()),
            "allow by shop/nested",
        ),
        (
            "a nested string claim of another value",
            vec![nested()],
            bob(g()),
            "deny (no_allow_match) by shop/nested",
        ),
    ];
    let c = conn(WEB, 8080);
    for (case, policies, req, want) in cases {
        let d = evaluate_request(&policies, &c, &req.view());
        assert_eq!(d.to_string(), want, "{case}");
    }
}

#[test]
fn conditions_on_the_connection_are_decided_at_l4_too() {
    let c = conn(WEB, 8080);
    let from_pods = policy(
        "shop/pods",
        Action::Allow,
        vec![Rule {
            when: vec![
                Condition::parse("source.ip", &["10.244.0.0/16".into()], &[]).unwrap(),
                Condition::parse("destination.port", &["8080".into()], &[]).unwrap(),
                Condition::parse("source.namespace", &["front".into()], &[]).unwrap(),
                Condition::parse(
                    "source.principal",
                    &["cluster.local/ns/front/*".into()],
                    &[],
                )
                .unwrap(),
            ],
            ..Rule::default()
        }],
    );
    assert_eq!(evaluate([&from_pods], &c).to_string(), "allow by shop/pods");
    let other_port = Connection {
        dst_port: 9090,
        ..c.clone()
    };
    assert!(!evaluate([&from_pods], &other_port).allowed());
    // `remote.ip` is `source.ip`.
    let remote = Condition::parse("remote.ip", &["10.0.0.0/8".into()], &[]).unwrap();
    assert_eq!(remote.key, Key::SourceIp);
    // An L7 condition at a ztunnel: an ALLOW never matches, a DENY does.
    let header = when("request.headers[x-user]", &["alice"], &[]);
    let allow = policy("shop/a", Action::Allow, vec![header.clone()]);
    let deny = policy("shop/d", Action::Deny, vec![header]);
    assert!(!evaluate([&allow], &c).allowed());
    assert!(!evaluate([&deny], &c).allowed());
    let req = Req::new("GET", "/").header("x-user", "bob");
    assert!(!evaluate_request([&allow], &c, &req.view()).allowed());
    assert!(evaluate_request([&deny], &c, &req.view()).allowed());
}

#[test]
fn patterns_that_could_never_match_are_errors() {
    for (bad, why) in [
        ("get", "case-sensitive"),
        ("GE T", "not an HTTP method"),
        ("", "not an HTTP method"),
    ] {
        let e = parse_method(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    assert_eq!(
        parse_method("PURGE").unwrap(),
        StringMatch::Exact("PURGE".into())
    );
    assert_eq!(parse_method("*").unwrap(), StringMatch::Any);
    for (bad, why) in [
        ("/a/../b", "canonical"),
        ("//a", "canonical"),
        ("/%61", "canonical"),
        ("/a?x=1", "without the query"),
        ("/a/{*}", "cannot appear"),
        ("api/*", "starts with '/'"),
        ("/a*b*", "'*'"),
        ("/a%2Fb", "ambiguous"),
    ] {
        let e = parse_path(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    assert!(parse_path("*.png").is_ok());
    assert!(parse_path("/api/").is_ok());
    assert_eq!(
        parse_host("WEB.Shop").unwrap(),
        StringMatch::Exact("web.shop".into())
    );
    assert!(parse_host("web shop").is_err());
    for (bad, why) in [
        ("request.headers", "expected [name]"),
        ("request.headers[]", "empty"),
        ("request.headers[a][b]", "one header name"),
        ("request.headers[:path]", "pseudo-headers"),
        ("request.headers[x y]", "not a header name"),
        ("request.auth.claims[a", "unclosed"),
        ("request.auth.claims[a]x", "expected [name]"),
        (
            "request.auth.claims[1][2][3][4][5][6][7][8][9][10][11]",
            "at most",
        ),
        ("request.method", "is not a condition key"),
        ("connection.sni", "is not a condition key"),
    ] {
        let e = Key::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    for (key, values, why) in [
        ("source.ip", vec!["10.0.0.1/8"], "values[0]"),
        ("destination.port", vec!["http"], "not a port"),
        ("destination.port", vec!["0"], "not a port"),
        ("source.principal", vec!["a*b"], "'*'"),
        ("request.headers[x]", vec![], "needs values or notValues"),
    ] {
        let vs: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let e = Condition::parse(key, &vs, &[]).unwrap_err();
        assert!(e.contains(why), "{key} {values:?}: {e}");
    }
    // The dump's form is the policy's own.
    let c = Condition::parse("request.auth.claims[realm][level]", &["3".into()], &[]).unwrap();
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::json!({"key": "request.auth.claims[realm][level]", "values": ["3"], "notValues": []})
    );
}

fn pool(
    f: fn(&str) -> Result<StringMatch, String>,
    p: Vec<&'static str>,
) -> impl Strategy<Value = Vec<StringMatch>> {
    prop::collection::vec(prop::sample::select(p), 0..3)
        .prop_map(move |v| v.into_iter().map(|s| f(s).unwrap()).collect())
}

fn arb_condition() -> impl Strategy<Value = Condition> {
    let keys = vec![
        ("request.headers[x-user]", vec!["alice", "b*", "*"]),
        ("request.auth.claims[groups]", vec!["admin", "dev", "*"]),
        (
            "request.auth.principal",
            vec!["https://issuer.example/alice", "https://issuer.example/*"],
        ),
        ("source.ip", vec!["10.0.0.0/8", "0.0.0.0/0"]),
        ("destination.port", vec!["8080", "9090"]),
    ];
    (
        prop::sample::select(keys),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|((key, vals), i, negate)| {
            let v = vec![vals[i.index(vals.len())].to_string()];
            let (values, not_values) = if negate { (vec![], v) } else { (v, vec![]) };
            Condition::parse(key, &values, &not_values).unwrap()
        })
}

/// Rules with L7 parts, flagged as the controller flags them.
fn arb_l7_rule() -> impl Strategy<Value = Rule> {
    let op = (
        pool(parse_method, vec!["GET", "POST", "*"]),
        pool(parse_method, vec!["DELETE", "GET"]),
        pool(parse_path, vec!["/api/*", "*.png", "/health", "*"]),
        pool(parse_path, vec!["/api/internal/*", "/health"]),
        pool(parse_host, vec!["web.shop", "*.shop", "web.shop:80"]),
        prop::collection::vec(prop::sample::select(vec![8080u16, 9090]), 0..2),
    )
        .prop_map(|(methods, not_methods, paths, not_paths, hosts, ports)| {
            let mut o = Operation {
                methods,
                not_methods,
                paths,
                not_paths,
                hosts,
                ports,
                ..Operation::default()
            };
            o.l7 = o.has_l7();
            o
        });
    let source = (
        pool(
            parse_request_principal,
            vec![
                "*",
                "https://issuer.example/alice",
                "https://issuer.example/*",
            ],
        ),
        pool(parse_request_principal, vec!["https://issuer.example/bob"]),
        pool(parse_namespace, vec!["front", "ops"]),
    )
        .prop_map(|(rp, nrp, ns)| Source {
            l7: !rp.is_empty() || !nrp.is_empty(),
            request_principals: rp,
            not_request_principals: nrp,
            namespaces: ns,
            ..Source::default()
        });
    (
        prop::collection::vec(source, 0..2),
        prop::collection::vec(op, 0..2),
        prop::collection::vec(arb_condition(), 0..2),
    )
        .prop_map(|(from, to, when)| Rule {
            l7: when.iter().any(|c| c.key.l7()),
            from,
            to,
            when,
        })
}

fn arb_l7_policy() -> impl Strategy<Value = Policy> {
    (
        0u32..100,
        prop::sample::select(vec![Action::Allow, Action::Deny, Action::Audit]),
        prop::collection::vec(arb_l7_rule(), 0..3),
    )
        .prop_map(|(n, action, rules)| policy(&format!("shop/p{n}"), action, rules))
}

fn arb_req() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec!["GET", "POST", "DELETE"]),
        prop::sample::select(vec![
            "/api/x",
            "/api/internal/y",
            "/health",
            "/img/a.png",
            "/",
        ]),
        prop::sample::select(vec![
            Some("web.shop"),
            Some("WEB.shop:80"),
            Some("db.ops"),
            None,
        ]),
        prop::sample::select(vec![vec![], vec!["alice"], vec!["bob", "carol"]]),
        prop::sample::select(vec![
            None,
            Some(("alice", vec!["admin"])),
            Some(("bob", vec![])),
        ]),
    )
        .prop_map(|(method, path, host, users, auth)| {
            let mut r = Req::new(method, path).host(host);
            for u in users {
                r = r.header("x-user", u);
            }
            if let Some((who, groups)) = auth {
                r = r.jwt(
                    &format!("https://issuer.example/{who}"),
                    serde_json::json!({ "groups": groups }),
                );
            }
            r
        })
}

fn arb_conn() -> impl Strategy<Value = Connection> {
    (
        prop::sample::select(vec![WEB, "spiffe://cluster.local/ns/ops/sa/admin"]),
        prop::sample::select(vec![8080u16, 9090]),
    )
        .prop_map(|(p, port)| conn(p, port))
}

proptest! {
    #[test]
    fn a_ztunnel_never_allows_what_a_waypoint_denies(
        policies in prop::collection::vec(arb_l7_policy(), 0..4),
        c in arb_conn(),
        req in arb_req(),
    ) {
        if evaluate(&policies, &c).allowed() {
            let d = evaluate_request(&policies, &c, &req.view());
            prop_assert!(d.allowed(), "{d}");
        }
    }

    #[test]
    fn audits_never_change_a_request_verdict(
        policies in prop::collection::vec(arb_l7_policy(), 0..4),
        c in arb_conn(),
        req in arb_req(),
    ) {
        let without: Vec<Policy> = policies.iter().filter(|p| p.action != Action::Audit).cloned().collect();
        prop_assert_eq!(
            evaluate_request(&policies, &c, &req.view()).verdict,
            evaluate_request(&without, &c, &req.view()).verdict
        );
    }

    #[test]
    fn not_fields_are_complements(rule in arb_l7_rule(), c in arb_conn(), req in arb_req()) {
        // For each positive field that is set, the same values as its
        // `not` field match exactly the other requests.
        let r = req.view();
        for o in &rule.to {
            let only = |f: &dyn Fn(&mut Operation)| {
                let mut x = Operation::default();
                f(&mut x);
                x.matches(&c, Some(&r), false)
            };
            if !o.methods.is_empty() {
                prop_assert_ne!(only(&|x| x.methods = o.methods.clone()), only(&|x| x.not_methods = o.methods.clone()));
            }
            if !o.paths.is_empty() {
                prop_assert_ne!(only(&|x| x.paths = o.paths.clone()), only(&|x| x.not_paths = o.paths.clone()));
            }
            if !o.hosts.is_empty() && req.host.is_some() {
                prop_assert_ne!(only(&|x| x.hosts = o.hosts.clone()), only(&|x| x.not_hosts = o.hosts.clone()));
            }
        }
        for cond in &rule.when {
            let flipped = Condition {
                values: cond.not_values.clone(),
                not_values: cond.values.clone(),
                key: cond.key.clone(),
            };
            prop_assert_ne!(cond.matches(&c, Some(&r)), flipped.matches(&c, Some(&r)));
        }
    }
}
