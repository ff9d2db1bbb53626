//! Evaluation: a table of policies × connections, and properties that must
//! hold for any policy set.

use super::*;
use proptest::prelude::*;

const TD: &str = "cluster.local";

fn conn(principal: Option<&str>, src: &str, port: u16) -> Connection {
    Connection::new(
        principal.map(|p| SpiffeId::parse(p).unwrap()),
        TD,
        src.parse().unwrap(),
        port,
    )
}

fn principals(ps: &[&str]) -> Vec<StringMatch> {
    ps.iter().map(|p| parse_principal(p).unwrap()).collect()
}

fn names(ps: &[&str]) -> Vec<StringMatch> {
    ps.iter().map(|p| StringMatch::parse(p).unwrap()).collect()
}

fn nets(ns: &[&str]) -> Vec<IpNet> {
    ns.iter().map(|n| IpNet::parse(n).unwrap()).collect()
}

fn policy(name: &str, action: Action, rules: Vec<Rule>) -> Policy {
    Policy {
        name: name.into(),
        action,
        rules,
        invalid: None,
    }
}

fn from(source: Source) -> Rule {
    Rule {
        from: vec![source],
        ..Rule::default()
    }
}

fn to(op: Operation) -> Rule {
    Rule {
        to: vec![op],
        ..Rule::default()
    }
}

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const DB: &str = "spiffe://cluster.local/ns/shop/sa/db";
const ADMIN: &str = "spiffe://cluster.local/ns/ops/sa/admin";
const FOREIGN: &str = "spiffe://other.example/ns/shop/sa/web";

/// (case, policies, connection, expected access-log form)
fn table() -> Vec<(&'static str, Vec<Policy>, Connection, &'static str)> {
    let web = || conn(Some(WEB), "10.244.1.5", 8080);
    let allow_web = || {
        policy(
            "shop/allow-web",
            Action::Allow,
            vec![from(Source {
                principals: principals(&["cluster.local/ns/shop/sa/web"]),
                ..Source::default()
            })],
        )
    };
    let deny_shop = || {
        policy(
            "shop/deny-shop",
            Action::Deny,
            vec![from(Source {
                namespaces: names(&["shop"]),
                ..Source::default()
            })],
        )
    };
    vec![
        ("no policy allows", vec![], web(), "allow"),
        (
            "allow by principal",
            vec![allow_web()],
            web(),
            "allow by shop/allow-web",
        ),
        (
            "allow policy that does not match denies",
            vec![allow_web()],
            conn(Some(DB), "10.244.1.6", 8080),
            "deny (no_allow_match) by shop/allow-web",
        ),
        (
            "one of several allow policies is enough",
            vec![
                allow_web(),
                policy(
                    "shop/allow-db",
                    Action::Allow,
                    vec![from(Source {
                        principals: principals(&[DB]),
                        ..Source::default()
                    })],
                ),
            ],
            conn(Some(DB), "10.244.1.6", 8080),
            "allow by shop/allow-db",
        ),
        (
            "deny wins over a matching allow",
            vec![allow_web(), deny_shop()],
            web(),
            "deny (deny_policy) by shop/deny-shop",
        ),
        (
            "deny that does not match leaves allow",
            vec![allow_web(), deny_shop()],
            conn(Some(ADMIN), "10.244.1.7", 8080),
            "deny (no_allow_match) by shop/allow-web",
        ),
        (
            "deny alone does not restrict others",
            vec![deny_shop()],
            conn(Some(ADMIN), "10.244.1.7", 8080),
            "allow",
        ),
        (
            "a federated domain is not in our namespace, and is not authorized by default",
            vec![deny_shop()],
            conn(Some(FOREIGN), "10.244.1.7", 8080),
            "deny (federated_not_allowed) by -",
        ),
        (
            "a federated identity with no policy at all",
            vec![],
            conn(Some(FOREIGN), "10.244.1.7", 8080),
            "deny (federated_not_allowed) by -",
        ),
        (
            "a federated identity named by an ALLOW policy",
            vec![policy(
                "shop/from-other",
                Action::Allow,
                vec![from(Source {
                    principals: principals(&[FOREIGN]),
                    ..Source::default()
                })],
            )],
            conn(Some(FOREIGN), "10.244.1.7", 8080),
            "allow by shop/from-other",
        ),
        (
            "a whole federated trust domain allowed",
            vec![policy(
                "shop/other-domain",
                Action::Allow,
                vec![from(Source {
                    principals: principals(&["other.example/*"]),
                    ..Source::default()
                })],
            )],
            conn(Some(FOREIGN), "10.244.1.7", 8080),
            "allow by shop/other-domain",
        ),
        (
            "a trust-domain match is not a prefix of another domain",
            vec![policy(
                "shop/other-domain",
                Action::Allow,
                vec![from(Source {
                    principals: principals(&["spiffe://other.example/*"]),
                    ..Source::default()
                })],
            )],
            conn(
                Some("spiffe://other.example.evil/ns/shop/sa/web"),
                "10.244.1.7",
                8080,
            ),
            "deny (no_allow_match) by shop/other-domain",
        ),
        (
            "our namespaces do not match a federated identity's",
            vec![policy(
                "shop/from-shop",
                Action::Allow,
                vec![from(Source {
                    namespaces: names(&["shop"]),
                    ..Source::default()
                })],
            )],
            conn(Some(FOREIGN), "10.244.1.7", 8080),
            "deny (no_allow_match) by shop/from-shop",
        ),
        (
            "principal suffix wildcard",
            vec![policy(
                "shop/any-web",
                Action::Allow,
                vec![from(Source {
                    principals: principals(&["*/sa/web"]),
                    ..Source::default()
                })],
            )],
            conn(Some(FOREIGN), "10.1.1.1", 80),
            "allow by shop/any-web",
        ),
        (
            "principal prefix wildcard",
            vec![policy(
                "shop/ops",
                Action::Allow,
                vec![from(Source {
                    principals: principals(&["spiffe://cluster.local/ns/ops/*"]),
                    ..Source::default()
                })],
            )],
            conn(Some(ADMIN), "10.1.1.1", 80),
            "allow by shop/ops",
        ),
        (
            "'*' principal needs a principal",
            vec![policy(
                "shop/mtls-only",
                Action::Allow,
                vec![from(Source {
                    principals: principals(&["*"]),
                    ..Source::default()
                })],
            )],
            conn(None, "10.1.1.1", 80),
            "deny (no_allow_match) by shop/mtls-only",
        ),
        (
            "notPrincipals '*' denies plaintext",
            vec![policy(
                "shop/no-plaintext",
                Action::Deny,
                vec![from(Source {
                    not_principals: principals(&["*"]),
                    ..Source::default()
                })],
            )],
            conn(None, "10.1.1.1", 80),
            "deny (deny_policy) by shop/no-plaintext",
        ),
        (
            "notPrincipals '*' lets mTLS through",
            vec![policy(
                "shop/no-plaintext",
                Action::Deny,
                vec![from(Source {
                    not_principals: principals(&["*"]),
                    ..Source::default()
                })],
            )],
            web(),
            "allow",
        ),
        (
            "notNamespaces",
            vec![policy(
                "shop/only-shop",
                Action::Deny,
                vec![from(Source {
                    not_namespaces: names(&["shop"]),
                    ..Source::default()
                })],
            )],
            conn(Some(ADMIN), "10.1.1.1", 80),
            "deny (deny_policy) by shop/only-shop",
        ),
        (
            "ipBlocks IPv4",
            vec![policy(
                "shop/lan",
                Action::Allow,
                vec![from(Source {
                    ip_blocks: nets(&["10.244.0.0/16"]),
                    ..Source::default()
                })],
            )],
            conn(None, "10.244.9.9", 80),
            "allow by shop/lan",
        ),
        (
            "ipBlocks IPv6 outside",
            vec![policy(
                "shop/lan6",
                Action::Allow,
                vec![from(Source {
                    ip_blocks: nets(&["fd00:10::/32"]),
                    ..Source::default()
                })],
            )],
            conn(None, "fd00:11::1", 80),
            "deny (no_allow_match) by shop/lan6",
        ),
        (
            "notIpBlocks",
            vec![policy(
                "shop/not-bad",
                Action::Allow,
                vec![from(Source {
                    not_ip_blocks: nets(&["10.9.0.0/16", "fd00::bad"]),
                    ..Source::default()
                })],
            )],
            conn(None, "fd00::bad", 80),
            "deny (no_allow_match) by shop/not-bad",
        ),
        (
            "fields of one source are ANDed",
            vec![policy(
                "shop/web-from-lan",
                Action::Allow,
                vec![from(Source {
                    principals: principals(&[WEB]),
                    ip_blocks: nets(&["10.0.0.0/8"]),
                    ..Source::default()
                })],
            )],
            conn(Some(WEB), "192.168.0.1", 80),
            "deny (no_allow_match) by shop/web-from-lan",
        ),
        (
            "ports",
            vec![policy(
                "shop/http",
                Action::Allow,
                vec![to(Operation {
                    ports: vec![80, 8080],
                    ..Operation::default()
                })],
            )],
            conn(Some(WEB), "10.0.0.1", 8080),
            "allow by shop/http",
        ),
        (
            "notPorts",
            vec![policy(
                "shop/no-admin-port",
                Action::Deny,
                vec![to(Operation {
                    not_ports: vec![80],
                    ..Operation::default()
                })],
            )],
            conn(Some(WEB), "10.0.0.1", 9000),
            "deny (deny_policy) by shop/no-admin-port",
        ),
        (
            "ALLOW with no rules allows nothing",
            vec![policy("shop/allow-nothing", Action::Allow, vec![])],
            web(),
            "deny (no_allow_match) by shop/allow-nothing",
        ),
        (
            "ALLOW with an empty rule allows everything",
            vec![policy(
                "shop/allow-all",
                Action::Allow,
                vec![Rule::default()],
            )],
            conn(None, "10.0.0.1", 1),
            "allow by shop/allow-all",
        ),
        (
            "L7 operation never matches for ALLOW",
            vec![policy(
                "shop/get-only",
                Action::Allow,
                vec![to(Operation {
                    ports: vec![8080],
                    l7: true,
                    ..Operation::default()
                })],
            )],
            web(),
            "deny (no_allow_match) by shop/get-only",
        ),
        (
            "L7 operation counts as matched for DENY",
            vec![policy(
                "shop/no-post",
                Action::Deny,
                vec![to(Operation {
                    ports: vec![8080],
                    l7: true,
                    ..Operation::default()
                })],
            )],
            web(),
            "deny (deny_policy) by shop/no-post",
        ),
        (
            "L7 DENY still needs its L4 part",
            vec![policy(
                "shop/no-post",
                Action::Deny,
                vec![to(Operation {
                    ports: vec![9090],
                    l7: true,
                    ..Operation::default()
                })],
            )],
            web(),
            "allow",
        ),
        (
            "L7 when-condition never matches for ALLOW",
            vec![policy(
                "shop/header",
                Action::Allow,
                vec![Rule {
                    l7: true,
                    ..Rule::default()
                }],
            )],
            web(),
            "deny (no_allow_match) by shop/header",
        ),
        (
            "L7 request principals count as matched for DENY",
            vec![policy(
                "shop/jwt",
                Action::Deny,
                vec![from(Source {
                    l7: true,
                    ..Source::default()
                })],
            )],
            web(),
            "deny (deny_policy) by shop/jwt",
        ),
        (
            "invalid policy fails closed",
            vec![
                policy("shop/allow-all", Action::Allow, vec![Rule::default()]),
                Policy::invalid("shop/broken".into(), Action::Allow, "bad".into()),
            ],
            web(),
            "deny (invalid_policy) by shop/broken",
        ),
        (
            "invalid AUDIT only reports",
            vec![Policy::invalid(
                "shop/broken-audit".into(),
                Action::Audit,
                "bad".into(),
            )],
            web(),
            "allow",
        ),
    ]
}

#[test]
fn evaluation_table() {
    for (case, policies, conn, want) in table() {
        let d = evaluate(&policies, &conn);
        assert_eq!(d.to_string(), want, "{case}");
    }
}

#[test]
fn audit_reports_and_never_decides() {
    let audit = policy(
        "shop/watch",
        Action::Audit,
        vec![from(Source {
            namespaces: names(&["shop"]),
            ..Source::default()
        })],
    );
    let d = evaluate([&audit], &conn(Some(WEB), "10.0.0.1", 80));
    assert_eq!(d.to_string(), "allow");
    assert_eq!(d.audited, vec!["shop/watch".to_string()]);
    let d = evaluate([&audit], &conn(Some(ADMIN), "10.0.0.1", 80));
    assert!(d.audited.is_empty());
    // Audited even when denied.
    let deny = policy("shop/deny-all", Action::Deny, vec![Rule::default()]);
    let d = evaluate([&audit, &deny], &conn(Some(WEB), "10.0.0.1", 80));
    assert!(!d.allowed());
    assert_eq!(d.audited, vec!["shop/watch".to_string()]);
}

#[test]
fn namespace_comes_only_from_the_local_trust_domain() {
    assert_eq!(
        conn(Some(WEB), "10.0.0.1", 1).namespace.as_deref(),
        Some("shop")
    );
    assert_eq!(conn(Some(FOREIGN), "10.0.0.1", 1).namespace, None);
    assert_eq!(conn(None, "10.0.0.1", 1).namespace, None);
    let node = conn(
        Some("spiffe://cluster.local/quicmesh/node/n1"),
        "10.0.0.1",
        1,
    );
    assert_eq!(node.namespace, None);
}

// ---- properties ----

fn arb_principal() -> impl Strategy<Value = Option<SpiffeId>> {
    prop::option::of(
        (
            prop::sample::select(vec!["cluster.local", "other.example"]),
            prop::sample::select(vec!["shop", "ops", "default"]),
            prop::sample::select(vec!["web", "db", "admin"]),
        )
            .prop_map(|(td, ns, sa)| SpiffeId::workload(td, ns, sa).unwrap()),
    )
}

fn arb_conn() -> impl Strategy<Value = Connection> {
    (
        arb_principal(),
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
            // IPv4-mapped IPv6 sources.
            any::<[u8; 4]>().prop_map(|b| IpAddr::V6(std::net::Ipv4Addr::from(b).to_ipv6_mapped())),
        ],
        prop::sample::select(vec![80u16, 443, 8080, 9090]),
        any::<bool>(),
    )
        .prop_map(|(p, ip, port, via)| Connection {
            via_waypoint: via,
            ..Connection::new(p, TD, ip, port)
        })
}

fn arb_matches(pool: Vec<&'static str>) -> impl Strategy<Value = Vec<StringMatch>> {
    prop::collection::vec(prop::sample::select(pool), 0..3)
        .prop_map(|v| v.into_iter().map(|s| parse_principal(s).unwrap()).collect())
}

fn arb_nets() -> impl Strategy<Value = Vec<IpNet>> {
    prop::collection::vec(
        prop::sample::select(vec![
            "10.0.0.0/8",
            "0.0.0.0/0",
            "192.168.0.0/16",
            "fd00::/8",
            "::/0",
            "::ffff:10.0.0.0/104",
        ]),
        0..2,
    )
    .prop_map(|v| v.into_iter().map(|s| IpNet::parse(s).unwrap()).collect())
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    let principal_pool = vec![
        "*",
        "cluster.local/ns/shop/sa/web",
        "cluster.local/ns/shop/*",
        "*/sa/db",
        "spiffe://other.example/ns/shop/sa/web",
    ];
    let ns_pool = vec!["shop", "ops", "*", "sh*"];
    let source = (
        arb_matches(principal_pool.clone()),
        arb_matches(principal_pool),
        arb_matches(ns_pool.clone()),
        arb_matches(ns_pool),
        arb_nets(),
        arb_nets(),
        prop::option::weighted(0.2, any::<bool>()),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(p, np, n, nn, ip, nip, via, l7)| Source {
            principals: p,
            not_principals: np,
            namespaces: n,
            not_namespaces: nn,
            ip_blocks: ip,
            not_ip_blocks: nip,
            via_waypoint: via,
            l7,
            ..Source::default()
        });
    let ports = prop::collection::vec(prop::sample::select(vec![80u16, 8080, 9090]), 0..2);
    let op =
        (ports.clone(), ports, prop::bool::weighted(0.1)).prop_map(|(ports, not_ports, l7)| {
            Operation {
                ports,
                not_ports,
                l7,
                ..Operation::default()
            }
        });
    (
        prop::collection::vec(source, 0..3),
        prop::collection::vec(op, 0..2),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(from, to, l7)| Rule {
            from,
            to,
            l7,
            ..Rule::default()
        })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        0u32..1000,
        prop::sample::select(vec![Action::Allow, Action::Deny, Action::Audit]),
        prop::collection::vec(arb_rule(), 0..3),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(n, action, rules, invalid)| Policy {
            name: format!("ns/p{n}"),
            action,
            rules,
            invalid: invalid.then(|| "broken".to_string()),
        })
}

fn valid(p: &Policy) -> bool {
    p.invalid.is_none()
}

proptest! {
    #[test]
    fn a_matching_deny_always_denies(
        policies in prop::collection::vec(arb_policy(), 0..5),
        c in arb_conn(),
        by in 0usize..3,
    ) {
        // A DENY built from the connection itself, so it matches by
        // construction (not by the code under test).
        let source = match (by, &c.principal) {
            (0, Some(p)) => Source { principals: principals(&[p.as_str()]), ..Source::default() },
            (1, _) => Source { ip_blocks: vec![IpNet::parse(&c.src_ip.to_string()).unwrap()], ..Source::default() },
            _ => Source::default(),
        };
        let deny = Rule {
            from: vec![source],
            to: vec![Operation { ports: vec![c.dst_port], ..Operation::default() }],
            ..Rule::default()
        };
        let mut ps = policies;
        ps.push(policy("ns/deny-this", Action::Deny, vec![deny]));
        let d = evaluate(&ps, &c);
        prop_assert!(!d.allowed());
        let invalid_first = ps.iter().any(|p| p.invalid.is_some() && p.action != Action::Audit);
        if !invalid_first {
            let by_deny = matches!(d.verdict, Verdict::Deny { reason: DenyReason::DenyPolicy, .. });
            prop_assert!(by_deny, "{}", d);
        }
    }

    #[test]
    fn audit_policies_never_change_the_verdict(policies in prop::collection::vec(arb_policy(), 0..5), c in arb_conn()) {
        let without: Vec<Policy> = policies.iter().filter(|p| p.action != Action::Audit).cloned().collect();
        prop_assert_eq!(evaluate(&policies, &c).verdict, evaluate(&without, &c).verdict);
    }

    #[test]
    fn allow_set_semantics(policies in prop::collection::vec(arb_policy(), 0..5), c in arb_conn()) {
        let ps: Vec<Policy> = policies.into_iter().filter(valid).collect();
        let deny_matches = ps.iter().any(|p| p.action == Action::Deny && p.matches(&c, None));
        let allows: Vec<&Policy> = ps.iter().filter(|p| p.action == Action::Allow).collect();
        // With no ALLOW policy, local identities and plaintext are allowed;
        // a federated identity needs an ALLOW policy that matches it.
        let expect = !deny_matches
            && ((allows.is_empty() && !c.foreign) || allows.iter().any(|p| p.matches(&c, None)));
        prop_assert_eq!(evaluate(&ps, &c).allowed(), expect);
    }

    #[test]
    fn adding_a_policy_never_opens_a_denied_connection(
        policies in prop::collection::vec(arb_policy(), 0..5),
        extra in arb_policy(),
        c in arb_conn(),
    ) {
        // The one exception by design: the first ALLOW policy restricts, a
        // further ALLOW widens. Everything else may only close.
        prop_assume!(extra.action != Action::Allow || extra.invalid.is_some());
        if !evaluate(&policies, &c).allowed() {
            let mut more = policies;
            more.push(extra);
            prop_assert!(!evaluate(&more, &c).allowed());
        }
    }

    #[test]
    fn an_invalid_policy_denies_unless_audit(
        policies in prop::collection::vec(arb_policy(), 0..5),
        action in prop::sample::select(vec![Action::Allow, Action::Deny]),
        c in arb_conn(),
    ) {
        let mut ps = policies;
        ps.push(Policy::invalid("ns/broken".into(), action, "bad".into()));
        prop_assert!(!evaluate(&ps, &c).allowed());
    }

    #[test]
    fn principals_and_not_principals_are_complements(
        pats in arb_matches(vec!["*", "cluster.local/ns/shop/*", "*/sa/web"]),
        c in arb_conn(),
    ) {
        prop_assume!(!pats.is_empty() && c.principal.is_some());
        let with = Source { principals: pats.clone(), ..Source::default() };
        let without = Source { not_principals: pats, ..Source::default() };
        prop_assert_ne!(with.matches(&c, None, false), without.matches(&c, None, false));
    }

    #[test]
    fn ip_blocks_and_not_ip_blocks_are_complements(nets in arb_nets(), c in arb_conn()) {
        prop_assume!(!nets.is_empty());
        let with = Source { ip_blocks: nets.clone(), ..Source::default() };
        let without = Source { not_ip_blocks: nets, ..Source::default() };
        prop_assert_ne!(with.matches(&c, None, false), without.matches(&c, None, false));
    }

    #[test]
    fn via_waypoint_true_and_false_are_complements(source in arb_rule(), c in arb_conn()) {
        // Whatever else a source says, setting viaWaypoint splits what it
        // matches by where the connection is decided, and unset matches both.
        for s in source.from {
            let base = Source { via_waypoint: None, ..s };
            let via = Source { via_waypoint: Some(true), ..base.clone() };
            let direct = Source { via_waypoint: Some(false), ..base.clone() };
            let m = base.matches(&c, None, false);
            prop_assert_eq!(via.matches(&c, None, false), m && c.via_waypoint);
            prop_assert_eq!(direct.matches(&c, None, false), m && !c.via_waypoint);
        }
    }

    #[test]
    fn l7_parts_fail_closed(rule in arb_rule(), c in arb_conn(), flags in prop::collection::vec(any::<bool>(), 8)) {
        // Marking any part L7 (the rule, a source, an operation) can only
        // make ALLOW match less and DENY match more.
        let mut l7 = rule.clone();
        l7.l7 |= flags[0];
        for (i, s) in l7.from.iter_mut().enumerate() {
            s.l7 |= flags[1 + i % 3];
        }
        for (i, o) in l7.to.iter_mut().enumerate() {
            o.l7 |= flags[4 + i % 3];
        }
        if l7.matches(&c, None, false) {
            prop_assert!(rule.matches(&c, None, false));
        }
        if rule.matches(&c, None, true) {
            prop_assert!(l7.matches(&c, None, true));
        }
        // And with the rule itself L7, ALLOW never matches.
        l7.l7 = true;
        prop_assert!(!l7.matches(&c, None, false));
    }
}
