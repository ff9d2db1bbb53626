//! Authentication of requests, step by step: which objects apply, where
//! tokens are found, what a verified token does to the request, every way
//! it is refused, and the early refresh for an unknown `kid`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use quicmesh_proto::config::{AuthenticationTarget, ClaimToHeader, JwtHeader, JwtRule};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

use super::*;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://issuer.example";
const URI: &str = "https://issuer.example/jwks";

struct Key(EcdsaKeyPair);

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl Key {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Key(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk8.as_ref(), &rng).unwrap())
    }

    fn jwks(&self, kid: &str) -> String {
        let p = self.0.public_key().as_ref();
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&p[1..33]), "y": b64(&p[33..])}]})
            .to_string()
    }

    fn token(&self, kid: &str, claims: serde_json::Value) -> String {
        let signed = format!(
            "{}.{}",
            b64(json!({"alg": "ES256", "kid": kid}).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .0
            .sign(&SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64(sig.as_ref()))
    }
}

fn claims() -> serde_json::Value {
    json!({"iss": ISS, "sub": "alice", "aud": "shop", "exp": NOW + 60, "realm": {"role": "admin"}, "bad": "a\nb"})
}

fn jwt_rule(jwks: &str) -> JwtRule {
    JwtRule {
        issuer: ISS.into(),
        audiences: vec!["shop".into()],
        jwks: jwks.into(),
        from_headers: vec![JwtHeader {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        }],
        from_params: vec!["access_token".into()],
        output_claim_to_headers: vec![
            ClaimToHeader {
                header: "x-user".into(),
                claim: "sub".into(),
            },
            ClaimToHeader {
                header: "x-role".into(),
                claim: "realm.role".into(),
            },
            ClaimToHeader {
                header: "x-bad".into(),
                claim: "bad".into(),
            },
        ],
        clock_skew_seconds: 60,
        ..JwtRule::default()
    }
}

fn auth(
    ns: &str,
    scope: AuthenticationScope,
    targets: &[(&str, &str)],
    rules: Vec<JwtRule>,
) -> Proto {
    Proto {
        name: "a".into(),
        namespace: ns.into(),
        scope: scope.into(),
        targets: targets
            .iter()
            .map(|(k, n)| AuthenticationTarget {
                kind: k.to_string(),
                name: n.to_string(),
            })
            .collect(),
        rules,
        invalid: String::new(),
    }
}

fn table(auths: &[Proto], keys: Arc<dyn KeySource>) -> Table {
    Table {
        authentications: auths
            .iter()
            .map(|a| Arc::new(Authentication::from_proto(a)))
            .collect(),
        waypoint: Some(("shop".into(), "waypoint".into())),
        keys,
        signatures: Arc::default(),
    }
}

fn web() -> BackendRef {
    BackendRef {
        namespace: "shop".into(),
        name: "web".into(),
        port: 80,
    }
}

fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut r = Request::get(uri);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(()).unwrap()
}

fn run<B>(t: &Table, r: &mut Request<B>) -> Result<Outcome, Refused> {
    run_at(t, r, NOW)
}

fn run_at<B>(t: &Table, r: &mut Request<B>, now: i64) -> Result<Outcome, Refused> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(t.authenticate(&web(), r, now))
}

#[test]
fn which_objects_apply() {
    let svc = |ns: &str, name: &str| BackendRef {
        namespace: ns.into(),
        name: name.into(),
        port: 80,
    };
    let w = Some(("shop", "waypoint"));
    let a = |ns, scope, targets: &[(&str, &str)]| {
        Authentication::from_proto(&auth(ns, scope, targets, vec![]))
    };
    use AuthenticationScope as S;
    assert!(a("quicmesh-system", S::Mesh, &[]).applies(w, &svc("shop", "web")));
    assert!(a("shop", S::Namespace, &[]).applies(w, &svc("shop", "web")));
    assert!(!a("bank", S::Namespace, &[]).applies(w, &svc("shop", "web")));
    assert!(
        a("shop", S::Unspecified, &[]).applies(w, &svc("shop", "web")),
        "fails closed to its namespace"
    );
    let targeted = a(
        "shop",
        S::Targets,
        &[("Service", "web"), ("Gateway", "other")],
    );
    assert!(targeted.applies(w, &svc("shop", "web")));
    assert!(!targeted.applies(w, &svc("shop", "api")));
    let gw = a("shop", S::Targets, &[("Gateway", "waypoint")]);
    assert!(gw.applies(w, &svc("shop", "api")));
    assert!(!gw.applies(Some(("shop", "other")), &svc("shop", "api")));
    assert!(
        !gw.applies(None, &svc("shop", "api")),
        "no waypoint scope: no Gateway"
    );
    assert!(
        !a("bank", S::Targets, &[("Service", "web")]).applies(w, &svc("shop", "web")),
        "another namespace's Service"
    );
    assert!(!a("shop", S::Targets, &[("Pod", "web")]).applies(w, &svc("shop", "web")));
}

#[test]
fn a_verified_token_sets_claims_removes_itself_and_client_copies() {
    let k = Key::new();
    let t = table(
        &[auth(
            "shop",
            AuthenticationScope::Namespace,
            &[],
            vec![jwt_rule(&k.jwks("k1"))],
        )],
        Arc::new(NoKeys),
    );
    let token = k.token("k1", claims());
    let mut r = req(
        "/p?a=1",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-user", "mallory"),
            ("x-role", "root"),
            ("x-bad", "x"),
        ],
    );
    let v = run(&t, &mut r).unwrap().verified().unwrap();
    assert_eq!(v.principal(), format!("{ISS}/alice"));
    assert!(
        r.headers().get("authorization").is_none(),
        "the token is removed"
    );
    assert_eq!(r.headers()["x-user"], "alice", "the client's copy replaced");
    assert_eq!(r.headers()["x-role"], "admin");
    assert!(
        r.headers().get("x-bad").is_none(),
        "not a header value: left out, the client's copy gone"
    );
    // From a query parameter: removed from the query, the rest kept.
    let mut r = req(&format!("/p?a=1&access_token={token}&b=2"), &[]);
    assert!(run(&t, &mut r).unwrap().verified().is_some());
    assert_eq!(r.uri().to_string(), "/p?a=1&b=2");
    let mut r = req(&format!("/p?access_token={token}"), &[]);
    run(&t, &mut r).unwrap();
    assert_eq!(r.uri().to_string(), "/p");
    // The scheme is case-insensitive; another scheme is no token.
    let mut r = req("/", &[("authorization", &format!("bearer {token}"))]);
    assert!(run(&t, &mut r).unwrap().verified().is_some());
    let mut r = req(
        "/",
        &[("authorization", "Basic YTpi"), ("x-user", "mallory")],
    );
    assert_eq!(run(&t, &mut r).unwrap(), Outcome::Unauthenticated);
    assert_eq!(r.headers()["authorization"], "Basic YTpi", "untouched");
    assert!(
        r.headers().get("x-user").is_none(),
        "removed even without a token"
    );
    // forwardOriginalToken keeps it.
    let mut keep = jwt_rule(&k.jwks("k1"));
    keep.forward_original_token = true;
    let t = table(
        &[auth(
            "shop",
            AuthenticationScope::Namespace,
            &[],
            vec![keep],
        )],
        Arc::new(NoKeys),
    );
    let mut r = req("/", &[("authorization", &format!("Bearer {token}"))]);
    run(&t, &mut r).unwrap();
    assert!(r.headers().get("authorization").is_some());
}

#[test]
fn nothing_applies_nothing_is_touched() {
    let k = Key::new();
    let t = table(
        &[auth(
            "bank",
            AuthenticationScope::Namespace,
            &[],
            vec![jwt_rule(&k.jwks("k1"))],
        )],
        Arc::new(NoKeys),
    );
    let mut r = req(
        "/",
        &[("authorization", "Bearer garbage"), ("x-user", "me")],
    );
    assert_eq!(run(&t, &mut r).unwrap(), Outcome::NotApplicable);
    assert_eq!(r.headers()["x-user"], "me");
}

#[test]
fn every_refusal() {
    let k = Key::new();
    let rule = jwt_rule(&k.jwks("k1"));
    let t = table(
        &[auth(
            "shop",
            AuthenticationScope::Namespace,
            &[],
            vec![rule.clone()],
        )],
        Arc::new(NoKeys),
    );
    let good = k.token("k1", claims());
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims();
        f(&mut c);
        k.token("k1", c)
    };
    let reason = |t: &Table, r: &mut Request<()>| run(t, r).unwrap_err().reason;
    let bearer = |tok: &str| req("/", &[("authorization", &format!("Bearer {tok}"))]);
    assert_eq!(
        reason(&t, &mut bearer(&with(&|c| c["exp"] = json!(NOW - 61)))),
        "expired"
    );
    assert_eq!(
        reason(&t, &mut bearer(&with(&|c| c["aud"] = json!("bank")))),
        "wrong_audience"
    );
    assert_eq!(
        reason(
            &t,
            &mut bearer(&with(&|c| c["iss"] = json!("https://evil")))
        ),
        "unknown_issuer"
    );
    assert_eq!(
        reason(&t, &mut bearer(&Key::new().token("k1", claims()))),
        "bad_signature"
    );
    assert_eq!(
        reason(&t, &mut bearer(&k.token("k2", claims()))),
        "unknown_kid"
    );
    assert_eq!(reason(&t, &mut bearer("not.a.token")), "malformed");
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims().to_string().as_bytes())
    );
    assert_eq!(reason(&t, &mut bearer(&none)), "algorithm");
    // Two tokens: two headers, or a header and a parameter.
    let mut two = req(
        "/",
        &[
            ("authorization", &format!("Bearer {good}")),
            ("authorization", &format!("Bearer {good}x")),
        ],
    );
    assert_eq!(reason(&t, &mut two), "multiple_tokens");
    let mut two = req(
        &format!("/?access_token={good}"),
        &[("authorization", &format!("Bearer {good}"))],
    );
    assert_eq!(reason(&t, &mut two), "multiple_tokens");
    // An invalid object refuses every request it targets, token or not.
    let mut bad = auth(
        "shop",
        AuthenticationScope::Targets,
        &[("Service", "web")],
        vec![],
    );
    bad.invalid = "spec.jwtRules[0].jwksUri: bad".into();
    let t2 = table(
        &[
            bad,
            auth(
                "shop",
                AuthenticationScope::Namespace,
                &[],
                vec![rule.clone()],
            ),
        ],
        Arc::new(NoKeys),
    );
    let e = run(&t2, &mut req("/", &[])).unwrap_err();
    assert_eq!(e.reason, "invalid_policy");
    assert!(
        e.detail
            .contains("shop/a is invalid: spec.jwtRules[0].jwksUri"),
        "{}",
        e.detail
    );
    // Keys not fetched yet: refused, never accepted.
    let mut remote = rule.clone();
    remote.jwks = String::new();
    remote.jwks_uri = URI.into();
    let t3 = table(
        &[auth(
            "shop",
            AuthenticationScope::Namespace,
            &[],
            vec![remote],
        )],
        Arc::new(NoKeys),
    );
    assert_eq!(reason(&t3, &mut bearer(&good)), "jwks_unavailable");
    // A token for a location of another rule only is not checked against this one.
    let mut elsewhere = rule;
    elsewhere.from_headers = vec![JwtHeader {
        name: "x-token".into(),
        prefix: String::new(),
    }];
    elsewhere.from_params.clear();
    let mut other = elsewhere.clone();
    other.issuer = "https://other".into();
    other.from_headers = vec![JwtHeader {
        name: "authorization".into(),
        prefix: "Bearer ".into(),
    }];
    let t4 = table(
        &[auth(
            "shop",
            AuthenticationScope::Namespace,
            &[],
            vec![elsewhere, other],
        )],
        Arc::new(NoKeys),
    );
    assert_eq!(reason(&t4, &mut bearer(&good)), "unknown_issuer");
    assert!(run(&t4, &mut req("/", &[("x-token", &good)]))
        .unwrap()
        .verified()
        .is_some());
}

/// Keys by URI as a fetcher holds them; a refresh swaps in the next set.
struct Fake {
    now: Mutex<Option<Arc<Jwks>>>,
    next: Mutex<Option<Arc<Jwks>>>,
    refreshes: AtomicUsize,
}

impl KeySource for Fake {
    fn keys(&self, _: &str) -> Option<Arc<Jwks>> {
        self.now.lock().unwrap().clone()
    }
    fn refresh<'a>(&'a self, _: &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let next = self.next.lock().unwrap().take();
        let got = next.is_some();
        if got {
            *self.now.lock().unwrap() = next;
        }
        Box::pin(std::future::ready(got))
    }
}

fn jwks(doc: Option<String>) -> Option<Arc<Jwks>> {
    doc.map(|d| Arc::new(Jwks::parse(d.as_bytes()).unwrap()))
}

/// A namespace-wide rule whose keys are fetched: `now` in use, `next`
/// what a refresh brings.
fn fetched(now: Option<String>, next: Option<String>) -> (Arc<Fake>, Table) {
    let fake = Arc::new(Fake {
        now: Mutex::new(jwks(now)),
        next: Mutex::new(jwks(next)),
        refreshes: AtomicUsize::new(0),
    });
    let mut remote = jwt_rule("");
    remote.jwks_uri = URI.into();
    let t = table(
        &[auth(
            "shop",
            AuthenticationScope::Namespace,
            &[],
            vec![remote],
        )],
        fake.clone(),
    );
    (fake, t)
}

#[test]
fn a_token_seen_again_skips_only_the_signature_check_and_only_with_the_same_keys() {
    let (old, new) = (Key::new(), Key::new());
    let (fake, t) = fetched(Some(old.jwks("k")), None);
    let token = old.token("k", claims());
    let at = |now: i64| {
        let mut r = req("/", &[("authorization", &format!("Bearer {token}"))]);
        run_at(&t, &mut r, now)
    };
    assert!(at(NOW).is_ok());
    assert_eq!(t.signatures.0.lock().unwrap().len(), 1, "remembered");
    assert!(at(NOW).is_ok(), "the same token again");
    // Its claims are still checked every time: later it has expired.
    assert_eq!(at(NOW + 3600).unwrap_err().reason, "expired");
    // The same signed part with another signature is another token: its
    // signature is checked (and fails).
    let (signed, _) = token.rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", b64(&[7u8; 64]));
    let mut r = req("/", &[("authorization", &format!("Bearer {forged}"))]);
    assert_eq!(run(&t, &mut r).unwrap_err().reason, "bad_signature");
    // The issuer's set changes to another key under the same kid: the
    // remembered token is checked again against it, and refused.
    *fake.now.lock().unwrap() = jwks(Some(new.jwks("k")));
    assert_eq!(at(NOW).unwrap_err().reason, "bad_signature");
}

#[test]
fn an_unknown_kid_of_fetched_keys_asks_for_them_again_once() {
    let (old, new) = (Key::new(), Key::new());
    let (fake, t) = fetched(Some(old.jwks("old")), Some(new.jwks("new")));
    let bearer = |tok: &str| req("/", &[("authorization", &format!("Bearer {tok}"))]);
    assert!(run(&t, &mut bearer(&old.token("old", claims()))).is_ok());
    assert_eq!(
        fake.refreshes.load(Ordering::Relaxed),
        0,
        "a known kid fetches nothing"
    );
    // The issuer rotated: the new kid is fetched, and verifies.
    assert!(run(&t, &mut bearer(&new.token("new", claims()))).is_ok());
    assert_eq!(fake.refreshes.load(Ordering::Relaxed), 1);
    // The old key is gone from the set now.
    assert_eq!(
        run(&t, &mut bearer(&old.token("old", claims())))
            .unwrap_err()
            .reason,
        "unknown_kid"
    );
    assert_eq!(
        fake.refreshes.load(Ordering::Relaxed),
        2,
        "asked once more (the fetcher rate-limits)"
    );
    // A kid that no refresh brings: refused.
    assert_eq!(
        run(&t, &mut bearer(&new.token("nope", claims())))
            .unwrap_err()
            .reason,
        "unknown_kid"
    );
}

#[test]
fn the_dump_names_rules_and_key_ids() {
    let k = Key::new();
    let t = table(
        &[auth(
            "shop",
            AuthenticationScope::Namespace,
            &[],
            vec![jwt_rule(&k.jwks("k1"))],
        )],
        Arc::new(NoKeys),
    );
    let d = t.dump();
    assert_eq!(d[0]["name"], "shop/a");
    assert_eq!(d[0]["rules"][0]["issuer"], ISS);
    assert_eq!(d[0]["rules"][0]["kids"], json!(["k1"]));
    assert_eq!(d[0]["scope"], "AUTHENTICATION_SCOPE_NAMESPACE");
}

/// The rule's `clockSkewSeconds` is what the check allows: a token
/// expired 90 s ago passes with 120 s of skew, not with 0 or 60.
#[test]
fn the_configured_clock_skew_decides_an_expired_token() {
    let k = Key::new();
    let with_skew = |skew: u32| {
        let mut rule = jwt_rule(&k.jwks("k1"));
        rule.clock_skew_seconds = skew;
        table(
            &[auth(
                "shop",
                AuthenticationScope::Namespace,
                &[],
                vec![rule],
            )],
            Arc::new(NoKeys),
        )
    };
    let mut c = claims();
    c["exp"] = json!(NOW - 90);
    let token = k.token("k1", c);
    let bearer = format!("Bearer {token}");
    let outcome = |skew| {
        let mut r = req("/", &[("authorization", &bearer)]);
        run(&with_skew(skew), &mut r).map(|o| o.verified().is_some())
    };
    assert_eq!(outcome(120).ok(), Some(true), "within 120 s of skew");
    assert!(outcome(0).is_err(), "no skew: expired");
    assert!(outcome(60).is_err(), "60 s of skew: expired");
}
