//! Checking a TrustDomainFederation's spec, conflicts, and its conditions.

use std::time::Duration;

use quicmesh_core::identity::ca::Ca;
use serde_json::json;

use super::*;
use crate::model::{FederationState, FetchOutcome, Object, PublishedBundle};
use crate::store::Store;

fn bundle_of(ca: &Ca) -> String {
    bundle_doc::encode(&[ca.cert_der().clone()], 1, Duration::from_secs(60)).unwrap()
}

fn spiffe_spec(td: &str, id: &str, bundle: Option<String>) -> Value {
    let mut v = json!({
        "trustDomain": td,
        "bundleEndpointURL": "https://peer.example:8443/",
        "bundleEndpointProfile": {"type": "https_spiffe", "endpointSPIFFEID": id},
    });
    if let Some(b) = bundle {
        v["trustDomainBundle"] = json!(b);
    }
    v
}

#[test]
fn specs_are_checked_field_by_field() {
    let peer = Ca::generate("other.example").unwrap();
    let third = Ca::generate("third.example").unwrap();
    let good = spiffe_spec(
        "other.example",
        "spiffe://other.example/ns/quicmesh-system/sa/controller",
        Some(bundle_of(&peer)),
    );
    let f = compile("other", 3, &good);
    let spec = f.spec.unwrap();
    assert_eq!(
        spec.profile,
        EndpointProfile::HttpsSpiffe {
            endpoint_id: "spiffe://other.example/ns/quicmesh-system/sa/controller".into()
        }
    );
    assert_eq!(spec.initial.unwrap().0, [peer.cert_der().to_vec()]);
    let web = json!({
        "trustDomain": "web.example",
        "bundleEndpointURL": "https://bundles.web.example/web.json",
        "bundleEndpointProfile": {"type": "https_web"},
    });
    assert_eq!(
        compile("web", 1, &web).spec.unwrap().profile,
        EndpointProfile::HttpsWeb
    );

    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        v
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("empty", json!({}), "spec: missing field `trustDomain`"),
        (
            "typo",
            with(&|v| v["trustDomian"] = json!("x")),
            "unknown field `trustDomian`",
        ),
        (
            "bad trust domain",
            with(&|v| v["trustDomain"] = json!("Other Example")),
            "spec.trustDomain",
        ),
        (
            "a path",
            with(&|v| v["trustDomain"] = json!("other.example/x")),
            "spec.trustDomain",
        ),
        (
            "http",
            with(&|v| v["bundleEndpointURL"] = json!("http://peer.example/")),
            "spec.bundleEndpointURL: \"http://peer.example/\": only https:// URLs",
        ),
        (
            "userinfo",
            with(&|v| v["bundleEndpointURL"] = json!("https://me:pw@peer.example/")),
            "no userinfo",
        ),
        (
            "unknown profile",
            with(&|v| v["bundleEndpointProfile"]["type"] = json!("https_whatever")),
            "spec.bundleEndpointProfile.type: unknown variant `https_whatever`",
        ),
        (
            "no endpoint id",
            with(&|v| {
                v["bundleEndpointProfile"]
                    .as_object_mut()
                    .unwrap()
                    .remove("endpointSPIFFEID");
            }),
            "endpointSPIFFEID: required with type https_spiffe",
        ),
        (
            "an id of another trust domain",
            with(&|v| {
                v["bundleEndpointProfile"]["endpointSPIFFEID"] = json!("spiffe://third.example/x")
            }),
            "is not in trust domain other.example",
        ),
        (
            "an id for https_web",
            with(&|v| v["bundleEndpointProfile"]["type"] = json!("https_web")),
            "endpointSPIFFEID: only for type https_spiffe",
        ),
        (
            "no initial bundle for https_spiffe",
            with(&|v| {
                v.as_object_mut().unwrap().remove("trustDomainBundle");
            }),
            "spec.trustDomainBundle: required with type https_spiffe",
        ),
        (
            "an unparsable initial bundle",
            with(&|v| v["trustDomainBundle"] = json!("{\"keys\": [")),
            "spec.trustDomainBundle: document is not a JSON object",
        ),
        (
            "another trust domain's bundle",
            with(&|v| v["trustDomainBundle"] = json!(bundle_of(&third))),
            "spec.trustDomainBundle: root 0 is the CA of third.example",
        ),
    ];
    for (what, spec, want) in cases {
        let e = compile("f", 1, &spec).spec.expect_err(what);
        assert!(e.contains(want), "{what}: {e}");
    }
}

fn federation(name: &str, td: &str) -> Object {
    Object::TrustDomainFederation(compile(
        name,
        1,
        &json!({
            "trustDomain": td,
            "bundleEndpointURL": "https://peer.example/",
            "bundleEndpointProfile": {"type": "https_web"},
        }),
    ))
}

#[test]
fn our_own_trust_domain_and_a_second_federation_of_one_domain_are_not_in_force() {
    let store = Store::new("cluster.local");
    store.apply(|ix| {
        let mut d = ix.upsert(federation("b-other", "other.example"));
        d.extend(ix.upsert(federation("a-other", "other.example")));
        d.extend(ix.upsert(federation("self", "cluster.local")));
        d
    });
    store.with_index(|ix| {
        assert_eq!(
            in_force(ix, "cluster.local")
                .into_keys()
                .collect::<Vec<_>>(),
            ["a-other"]
        );
        let st = statuses(ix, "cluster.local");
        let accepted = |n: &str| {
            let s = st.iter().find(|s| s.name == n).unwrap();
            assert_eq!(
                (s.kind, s.namespace.as_str()),
                ("TrustDomainFederation", "")
            );
            (
                s.conditions[0].status,
                s.conditions[0].reason,
                s.conditions[0].message.clone(),
            )
        };
        assert!(accepted("a-other").0);
        let (ok, reason, msg) = accepted("b-other");
        assert!(
            !ok && reason == reason::CONFLICTED && msg.contains("a-other"),
            "{msg}"
        );
        let (ok, reason, msg) = accepted("self");
        assert!(
            !ok && reason == reason::INVALID && msg.contains("own trust domain"),
            "{msg}"
        );
    });
}

#[test]
fn conditions_say_what_is_pushed_and_how_the_last_fetch_went() {
    let store = Store::new("cluster.local");
    store.apply(|ix| ix.upsert(federation("other", "other.example")));
    let conds = |store: &Store| {
        store.with_index(|ix| {
            let f = ix.federations().next().unwrap().clone();
            conditions(ix, "cluster.local", &f)
                .into_iter()
                .map(|c| (c.kind, c.status, c.reason))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        conds(&store),
        [
            ("Accepted", true, reason::ACCEPTED),
            ("BundleAvailable", false, reason::NO_BUNDLE),
            ("Fetched", false, reason::PENDING)
        ]
    );
    let state = |result: &'static str, bundle: bool| {
        Object::FederationState(FederationState {
            name: "other".into(),
            trust_domain: "other.example".into(),
            bundle: bundle.then_some(PublishedBundle {
                origin: "fetched",
                roots: 1,
                sequence: Some(4),
                fetched_at: 1,
            }),
            last_fetch: Some(FetchOutcome {
                result,
                message: "why".into(),
            }),
            failures: u32::from(result != "success"),
        })
    };
    store.apply(|ix| ix.upsert(state("success", true)));
    assert_eq!(
        conds(&store)[1..],
        [
            ("BundleAvailable", true, reason::FETCHED),
            ("Fetched", true, reason::FETCHED)
        ]
    );
    store.apply(|ix| ix.upsert(state("timeout", true)));
    assert_eq!(
        conds(&store)[1..],
        [
            ("BundleAvailable", true, reason::FETCHED),
            ("Fetched", false, "Timeout")
        ]
    );
    store.apply(|ix| ix.upsert(state("tls_error", false)));
    assert_eq!(
        conds(&store)[1..],
        [
            ("BundleAvailable", false, reason::NO_BUNDLE),
            ("Fetched", false, "EndpointNotAuthenticated")
        ]
    );
}

#[test]
fn the_file_source_reads_federations_cluster_scoped() {
    let text = r#"
apiVersion: quicmesh.io/v1alpha1
kind: TrustDomainFederation
metadata: {name: other}
spec:
  trustDomain: other.example
  bundleEndpointURL: https://127.0.0.1:8443/
  bundleEndpointProfile: {type: https_web}
---
apiVersion: quicmesh.io/v1alpha1
kind: TrustDomainFederation
metadata: {name: broken}
spec:
  trustDomain: other.example
  bundleEndpointURL: http://127.0.0.1:8443/
  bundleEndpointProfile: {type: https_web}
---
apiVersion: quicmesh.io/v2
kind: TrustDomainFederation
metadata: {name: future}
spec: {}
"#;
    let parsed = crate::sources::manifest::parse_file(text, "f.yaml").unwrap();
    let fs: Vec<_> = parsed
        .docs
        .into_iter()
        .map(|d| match d.unwrap() {
            Some(Object::TrustDomainFederation(f)) => f,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(fs[0].spec.as_ref().unwrap().trust_domain, "other.example");
    assert!(Object::TrustDomainFederation(fs[0].clone())
        .key()
        .namespace
        .is_empty());
    assert!(fs[1].spec.as_ref().unwrap_err().contains("only https://"));
    assert!(fs[2].spec.as_ref().unwrap_err().contains("is not served"));
}

#[test]
fn backoff_doubles_up_to_the_refresh_and_hints_are_clamped() {
    let s = fetch::Settings::new(rustls::RootCertStore::empty());
    let refresh = Duration::from_secs(300);
    let waits: Vec<u64> = (1..=10)
        .map(|n| s.retry_after(n, refresh).as_secs())
        .collect();
    assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    assert_eq!(s.retry_after(u32::MAX, refresh), refresh);
    assert_eq!(s.refresh_after(None), Duration::from_secs(300));
    assert_eq!(
        s.refresh_after(Some(Duration::ZERO)),
        Duration::from_secs(1)
    );
    assert_eq!(
        s.refresh_after(Some(Duration::from_secs(9_999_999))),
        Duration::from_secs(86400)
    );
}
