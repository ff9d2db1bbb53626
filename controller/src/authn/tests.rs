//! Compilation of RequestAuthentication: every field, every malformed case
//! with its path, what an invalid one still targets.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::model::RequestAuthentication as Ra;

const EC_JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

fn jwks() -> String {
    format!(r#"{{"keys":[{EC_JWK},{{"kty":"oct","k":"c2VjcmV0"}}]}}"#)
}

fn ra(ns: &str, spec: Value) -> Ra {
    Ra {
        name: "auth".into(),
        namespace: ns.into(),
        generation: 1,
        spec,
        files: None,
    }
}

type Secrets = BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>;

fn secrets() -> Secrets {
    [(
        ("shop".to_string(), "keys".to_string()),
        [("jwks.json".to_string(), jwks().into_bytes())].into(),
    )]
    .into()
}

fn compile_in(ns: &str, spec: Value) -> Compiled {
    compile(&ra(ns, spec), "quicmesh-system", &secrets())
}

#[test]
fn compiles_every_field() {
    let c = compile_in(
        "shop",
        json!({
            "targetRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"},
                {"group": "", "kind": "Service", "name": "web"},
                {"kind": "Service", "name": "api"}
            ],
            "jwtRules": [{
                "issuer": "https://issuer.example",
                "audiences": ["shop", "api"],
                "jwks": jwks(),
                "fromHeaders": [{"name": "X-Token"}, {"name": "authorization", "prefix": "Bearer "}],
                "fromParams": ["access_token"],
                "outputClaimToHeaders": [{"header": "X-User", "claim": "sub"}, {"header": "x-role", "claim": "realm.role"}],
                "forwardOriginalToken": true,
                "clockSkewSeconds": 30
            }, {
                "issuer": "https://other.example",
                "jwksUri": "https://other.example/.well-known/jwks.json",
                "jwksRefreshSeconds": 60
            }, {
                "issuer": "https://third.example",
                "jwksFrom": {"secretKeyRef": {"name": "keys", "key": "jwks.json"}}
            }]
        }),
    );
    assert_eq!(c.invalid(), None);
    let r = &c.resource;
    assert_eq!(r.scope(), AuthenticationScope::Targets);
    let targets: Vec<_> = r
        .targets
        .iter()
        .map(|t| (t.kind.as_str(), t.name.as_str()))
        .collect();
    assert_eq!(
        targets,
        [
            ("Gateway", "waypoint"),
            ("Service", "web"),
            ("Service", "api")
        ]
    );
    let a = &r.rules[0];
    assert_eq!(a.audiences, ["shop", "api"]);
    assert_eq!(a.jwks, jwks());
    let headers: Vec<_> = a
        .from_headers
        .iter()
        .map(|h| (h.name.as_str(), h.prefix.as_str()))
        .collect();
    assert_eq!(headers, [("x-token", ""), ("authorization", "Bearer ")]);
    assert_eq!(a.from_params, ["access_token"]);
    assert_eq!(a.output_claim_to_headers[0].header, "x-user");
    assert_eq!(a.output_claim_to_headers[1].claim, "realm.role");
    assert!(a.forward_original_token);
    assert_eq!(a.clock_skew_seconds, 30);
    assert_eq!(a.jwks_refresh_seconds, DEFAULT_JWKS_REFRESH_SECONDS);
    // Defaults.
    let b = &r.rules[1];
    assert_eq!(b.jwks_uri, "https://other.example/.well-known/jwks.json");
    assert_eq!(b.jwks, "");
    assert_eq!(b.jwks_refresh_seconds, 60);
    assert_eq!(b.clock_skew_seconds, 60);
    assert!(!b.forward_original_token);
    let headers: Vec<_> = b
        .from_headers
        .iter()
        .map(|h| (h.name.as_str(), h.prefix.as_str()))
        .collect();
    assert_eq!(
        headers,
        [("authorization", "Bearer ")],
        "the default location"
    );
    assert_eq!(r.rules[2].jwks, jwks(), "from the Secret");
    // The oct key is skipped, and said.
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("spec.jwtRules[0].jwks") && w.contains("oct")),
        "{:?}",
        c.warnings
    );
    let cond = c.condition();
    assert!(cond.status && cond.reason == "Accepted", "{cond:?}");
}

#[test]
fn scope_without_targets_is_the_namespace_or_the_mesh() {
    let rule = json!({"jwtRules": [{"issuer": "i", "jwks": jwks()}]});
    assert_eq!(
        compile_in("shop", rule.clone()).resource.scope(),
        AuthenticationScope::Namespace
    );
    assert_eq!(
        compile_in("quicmesh-system", rule).resource.scope(),
        AuthenticationScope::Mesh
    );
    // No rules at all: valid, checks nothing.
    let c = compile_in("shop", json!({}));
    assert_eq!((c.invalid(), c.resource.rules.len()), (None, 0));
}

#[test]
fn every_malformed_case_names_its_path_and_fails_closed() {
    let uri = "https://i.example/jwks";
    let rule = |extra: Value| {
        let mut r = json!({"issuer": "i", "jwksUri": uri});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        json!({"jwtRules": [r]})
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"jwtRule": []}), "unknown field `jwtRule`"),
        (json!({"jwtRules": "x"}), "spec.jwtRules"),
        (
            json!({"jwtRules": [{"issuer": "i", "jwksUri": uri, "audience": ["a"]}]}),
            "spec.jwtRules[0].audience: unknown field `audience`",
        ),
        (
            json!({"jwtRules": [{"jwksUri": uri}]}),
            "missing field `issuer`",
        ),
        (
            rule(json!({"issuer": ""})),
            "spec.jwtRules[0].issuer: must not be empty",
        ),
        (
            rule(json!({"audiences": [""]})),
            "spec.jwtRules[0].audiences[0]",
        ),
        (
            rule(json!({"jwks": jwks()})),
            "spec.jwtRules[0]: exactly one of jwks, jwksFrom and jwksUri",
        ),
        (
            json!({"jwtRules": [{"issuer": "i"}]}),
            "spec.jwtRules[0]: exactly one of",
        ),
        (
            json!({"jwtRules": [{"issuer": "i", "jwks": "{}"}]}),
            "spec.jwtRules[0].jwks: not a key set",
        ),
        (
            json!({"jwtRules": [{"issuer": "i", "jwks": r#"{"keys":[{"kty":"oct","k":"AA"}]}"#}]}),
            "spec.jwtRules[0].jwks: no usable key: keys[0]: kty \"oct\"",
        ),
        (
            rule(json!({"jwksUri": "ftp://i.example/jwks"})),
            "spec.jwtRules[0].jwksUri: \"ftp://i.example/jwks\" is not an http or https URI",
        ),
        (
            rule(json!({"jwksUri": "/jwks"})),
            "spec.jwtRules[0].jwksUri",
        ),
        (
            rule(json!({"jwksUri": "https://a b"})),
            "spec.jwtRules[0].jwksUri",
        ),
        (
            rule(json!({"jwksRefreshSeconds": 1})),
            "spec.jwtRules[0].jwksRefreshSeconds: 1 is out of range (5 to 86400)",
        ),
        (
            rule(json!({"clockSkewSeconds": 301})),
            "spec.jwtRules[0].clockSkewSeconds: 301 is out of range (0 to 300)",
        ),
        (
            rule(json!({"clockSkewSeconds": "60"})),
            "spec.jwtRules[0].clockSkewSeconds: invalid type",
        ),
        (
            rule(json!({"forwardOriginalToken": "yes"})),
            "spec.jwtRules[0].forwardOriginalToken",
        ),
        (
            rule(json!({"fromHeaders": [{"name": "bad header"}]})),
            "spec.jwtRules[0].fromHeaders[0].name: \"bad header\" is not a header name",
        ),
        (
            rule(json!({"fromHeaders": [{"name": "x", "prefix": "a\nb"}]})),
            "spec.jwtRules[0].fromHeaders[0].prefix",
        ),
        (
            rule(json!({"fromHeaders": [{"nam": "x"}]})),
            "spec.jwtRules[0].fromHeaders[0].nam: unknown field `nam`",
        ),
        (
            rule(json!({"fromParams": ["a=b"]})),
            "spec.jwtRules[0].fromParams[0]",
        ),
        (
            rule(json!({"fromParams": [""]})),
            "spec.jwtRules[0].fromParams[0]: must not be empty",
        ),
        (
            rule(json!({"outputClaimToHeaders": [{"header": "host", "claim": "sub"}]})),
            "spec.jwtRules[0].outputClaimToHeaders[0].header: \"host\" may not be set",
        ),
        (
            rule(json!({"outputClaimToHeaders": [{"header": "authorization", "claim": "sub"}]})),
            "outputClaimToHeaders[0].header: \"authorization\"",
        ),
        (
            rule(json!({"outputClaimToHeaders": [{"header": "x-a", "claim": "a..b"}]})),
            "spec.jwtRules[0].outputClaimToHeaders[0].claim",
        ),
        (
            rule(json!({"outputClaimToHeaders": [{"header": "x-a"}]})),
            "spec.jwtRules[0].outputClaimToHeaders[0]: missing field `claim`",
        ),
        (
            json!({"jwtRules": [{"issuer": "i", "jwksFrom": {}}]}),
            "spec.jwtRules[0].jwksFrom: exactly one of secretKeyRef and file",
        ),
        (
            json!({"jwtRules": [{"issuer": "i", "jwksFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}),
            "spec.jwtRules[0].jwksFrom.secretKeyRef: no Secret shop/nope labeled quicmesh.io/jwks",
        ),
        (
            json!({"jwtRules": [{"issuer": "i", "jwksFrom": {"secretKeyRef": {"name": "keys", "key": "k"}}}]}),
            "has no key \"k\"",
        ),
        (
            json!({"jwtRules": [{"issuer": "i", "jwksFrom": {"file": "keys.json"}}]}),
            "spec.jwtRules[0].jwksFrom.file: files are read only by the file source",
        ),
        (
            json!({"targetRefs": [{"kind": "Gateway", "name": "w"}]}),
            "spec.targetRefs[0]: Gateway of group \"\" cannot be a target",
        ),
        (
            json!({"targetRefs": [{"group": "", "kind": "Service", "name": "Web"}]}),
            "spec.targetRefs[0].name",
        ),
        (
            json!({"targetRefs": [{"group": "", "kind": "Service"}]}),
            "spec.targetRefs[0]: missing field `name`",
        ),
        (
            json!({"jwtRules": (0..17).map(|_| json!({"issuer": "i", "jwksUri": uri})).collect::<Vec<_>>()}),
            "spec.jwtRules: 17 rules",
        ),
        (
            Value::String("apiVersion \"quicmesh.io/v1\" is not served".into()),
            "not served",
        ),
    ];
    for (spec, want) in cases {
        let c = compile_in("shop", spec.clone());
        let why = c.invalid().unwrap_or_default();
        assert!(why.contains(want), "{spec}: {why:?} lacks {want:?}");
        let cond = c.condition();
        assert!(
            !cond.status && cond.reason == "Invalid" && cond.message.contains("401"),
            "{cond:?}"
        );
        assert!(
            c.resource.rules.is_empty(),
            "an invalid one carries no rules"
        );
    }
    // What can be read of an invalid one still targets.
    let c = compile_in(
        "shop",
        json!({"targetRefs": [{"group": "", "kind": "Service", "name": "web"}], "jwtRules": [{"issuer": 1}]}),
    );
    assert!(c.invalid().is_some());
    assert_eq!(c.resource.scope(), AuthenticationScope::Targets);
    assert_eq!(c.resource.targets[0].name, "web");
    let c = compile_in("shop", json!({"targetRefs": "web", "jwtRules": []}));
    assert_eq!(c.resource.scope(), AuthenticationScope::Namespace);
    let c = compile_in("quicmesh-system", json!({"targetRefs": 1}));
    assert_eq!(c.resource.scope(), AuthenticationScope::Mesh);
}

#[test]
fn files_are_what_the_file_source_read() {
    let spec = json!({"jwtRules": [
        {"issuer": "a", "jwksFrom": {"file": "/m/a.json"}},
        {"issuer": "b", "jwksFrom": {"file": "/m/b.json"}}
    ]});
    assert_eq!(files(&spec), ["/m/a.json", "/m/b.json"]);
    let mut r = ra("shop", spec);
    r.files = Some(
        [
            ("/m/a.json".to_string(), Ok(jwks())),
            (
                "/m/b.json".to_string(),
                Err("cannot read /m/b.json: gone".to_string()),
            ),
        ]
        .into(),
    );
    let c = compile(&r, "quicmesh-system", &Secrets::new());
    assert_eq!(
        c.invalid(),
        Some("spec.jwtRules[1].jwksFrom.file: cannot read /m/b.json: gone")
    );
    r.files
        .as_mut()
        .unwrap()
        .insert("/m/b.json".into(), Ok(jwks()));
    let c = compile(&r, "quicmesh-system", &Secrets::new());
    assert_eq!(c.invalid(), None);
    assert_eq!(c.resource.rules[1].jwks, jwks());
}

#[test]
fn crd_yaml_names_the_group_kind_and_status() {
    let y = crd_yaml();
    assert!(
        y.contains("name: requestauthentications.quicmesh.io"),
        "{y}"
    );
    assert!(y.contains("status: {}") || y.contains("status:"), "{y}");
    assert!(y.contains("subresources:"), "{y}");
    // Every object level keeps unknown fields, so typos reach compile().
    assert!(
        y.matches("x-kubernetes-preserve-unknown-fields: true")
            .count()
            == 7,
        "{y}"
    );
}

fn report(
    ns: &str,
    waypoint: &str,
    stream: u64,
    subjects: &[(&str, bool, bool)],
) -> crate::model::ProxyReport {
    crate::model::ProxyReport {
        namespace: ns.into(),
        name: format!("{waypoint}#{stream}"),
        waypoint: waypoint.into(),
        reports: subjects
            .iter()
            .map(|(s, ok, kept)| crate::model::FetchReport {
                subject: (*s).into(),
                ok: *ok,
                error: if *ok {
                    String::new()
                } else {
                    "answered 503".into()
                },
                last_good_kept: *kept,
            })
            .collect(),
    }
}

#[test]
fn keys_fetched_says_what_the_waypoints_enforcing_it_reported() {
    let uri = "https://issuer.example/jwks";
    let subject = format!("jwks/{uri}");
    let spec = |ns: &str| {
        compile_in(
            ns,
            json!({"jwtRules": [{"issuer": "https://issuer.example", "jwksUri": uri},
                                {"issuer": "https://inline.example", "jwks": jwks()}]}),
        )
    };
    let shop = spec("shop");
    let root = "quicmesh-system";
    let kf = |c: &Compiled, ns: &str, r: &[crate::model::ProxyReport]| {
        keys_fetched(c, ns, root, r.iter())
    };

    // Nobody reported yet; a report about another URI; another
    // namespace's waypoint: no condition.
    assert_eq!(kf(&shop, "shop", &[]), None);
    let other = report(
        "shop",
        "waypoint",
        1,
        &[("jwks/https://other.example/k", false, false)],
    );
    assert_eq!(kf(&shop, "shop", std::slice::from_ref(&other)), None);
    let elsewhere = report("bank", "waypoint", 2, &[(&subject, false, false)]);
    assert_eq!(kf(&shop, "shop", std::slice::from_ref(&elsewhere)), None);

    // Two replicas fetched it: True.
    let a = report("shop", "waypoint", 3, &[(&subject, true, false)]);
    let b = report("shop", "waypoint", 4, &[(&subject, true, false)]);
    let c = kf(&shop, "shop", &[a.clone(), b, other, elsewhere.clone()]).unwrap();
    assert_eq!(
        (c.kind, c.status, c.reason),
        ("KeysFetched", true, "Fetched")
    );

    // One replica's last fetch failed: False, naming it, the URI, the
    // error and what is in use.
    let failed = report("shop", "waypoint", 5, &[(&subject, false, true)]);
    let c = kf(&shop, "shop", &[a.clone(), failed]).unwrap();
    assert_eq!((c.status, c.reason), (false, "FetchFailed"));
    assert_eq!(
        c.message,
        format!("waypoint shop/waypoint: {uri}: answered 503; the last good keys are in use")
    );
    let never = report("shop", "waypoint", 6, &[(&subject, false, false)]);
    assert!(kf(&shop, "shop", &[never])
        .unwrap()
        .message
        .ends_with("no keys yet: its tokens are refused (401)"));

    // The root namespace's object is enforced by every waypoint.
    let mesh = spec(root);
    let c = kf(&mesh, root, &[elsewhere]).unwrap();
    assert!(
        !c.status && c.message.starts_with("waypoint bank/waypoint:"),
        "{c:?}"
    );

    // Many failures: the first four, and a count.
    let many: Vec<_> = (0..7)
        .map(|i| report("shop", &format!("w{i}"), 10 + i, &[(&subject, false, true)]))
        .collect();
    let c = kf(&shop, "shop", &many).unwrap();
    assert!(c.message.ends_with("; and 3 more"), "{}", c.message);
    assert_eq!(c.message.matches("waypoint shop/").count(), 4);

    // Inline keys only, or an invalid object: nothing to say.
    let inline = compile_in(
        "shop",
        json!({"jwtRules": [{"issuer": "https://i.example", "jwks": jwks()}]}),
    );
    assert_eq!(kf(&inline, "shop", std::slice::from_ref(&a)), None);
    let invalid = compile_in(
        "shop",
        json!({"jwtRules": [{"issuerr": "x", "jwksUri": uri}]}),
    );
    assert!(invalid.invalid().is_some());
    assert_eq!(kf(&invalid, "shop", &[a]), None);
}
