//! Every algorithm with keys made here (RSA from the fixed test keys in
//! core/testdata, RSAPrivateKey DER made once with `openssl genpkey` and
//! `openssl rsa -traditional`: ring cannot generate RSA keys),
//! every refusal, and a property: a token changed anywhere never verifies.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{self as sig, KeyPair};
use serde_json::{json, Value};

use super::*;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://issuer.example";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A private key of one of the algorithms' kinds, and its JWK.
enum Signer {
    Rsa(sig::RsaKeyPair),
    Ec(sig::EcdsaKeyPair, &'static str),
    Ed(sig::Ed25519KeyPair),
}

fn rsa(name: &str) -> Signer {
    let der = std::fs::read(format!(
        "{}/testdata/jwt-rsa-{name}.der",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    Signer::Rsa(sig::RsaKeyPair::from_der(&der).unwrap())
}

fn ec(alg: &'static sig::EcdsaSigningAlgorithm, crv: &'static str) -> Signer {
    let rng = SystemRandom::new();
    let pk8 = sig::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    Signer::Ec(
        sig::EcdsaKeyPair::from_pkcs8(alg, pk8.as_ref(), &rng).unwrap(),
        crv,
    )
}

fn p256() -> Signer {
    ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")
}

fn p384() -> Signer {
    ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")
}

fn ed() -> Signer {
    let pk8 = sig::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Signer::Ed(sig::Ed25519KeyPair::from_pkcs8(pk8.as_ref()).unwrap())
}

impl Signer {
    fn jwk(&self, kid: &str) -> Value {
        match self {
            Signer::Rsa(k) => {
                let c = sig::RsaPublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": kid, "n": b64(&c.n), "e": b64(&c.e)})
            }
            Signer::Ec(k, crv) => {
                let p = k.public_key().as_ref();
                let len = (p.len() - 1) / 2;
                json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(&p[1..1 + len]), "y": b64(&p[1 + len..])})
            }
            Signer::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(k.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Rsa(k) => {
                let pad: &dyn sig::RsaEncoding = match alg {
                    "RS256" => &sig::RSA_PKCS1_SHA256,
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    "PS512" => &sig::RSA_PSS_SHA512,
                    other => panic!("{other}"),
                };
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(pad, &rng, msg, &mut out).unwrap();
                out
            }
            Signer::Ec(k, _) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }
}

fn token(s: &Signer, header: Value, claims: Value) -> String {
    let alg = header["alg"].as_str().unwrap_or("RS256").to_string();
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = s.sign(&alg, signed.as_bytes());
    format!("{signed}.{}", b64(&signature))
}

fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": ["shop", "other"], "azp": "web-ui",
           "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10,
           "realm": {"role": "admin", "level": 3}, "groups": ["a", "b"]})
}

fn rule() -> Rule {
    Rule {
        issuer: ISS.into(),
        audiences: vec!["shop".into()],
        clock_skew: DEFAULT_CLOCK_SKEW_SECONDS,
    }
}

fn set(keys: &[Value]) -> Jwks {
    Jwks::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

fn check(t: &str, keys: &Jwks) -> Result<Verified, Refusal> {
    Token::parse(t)?.verify(&rule(), keys, NOW)
}

#[test]
fn every_algorithm_verifies_with_its_key() {
    let a = rsa("a");
    let cases: Vec<(&str, Signer)> = vec![
        ("RS256", rsa("a")),
        ("RS384", rsa("a")),
        ("RS512", rsa("a")),
        ("PS256", rsa("b")),
        ("PS384", rsa("b")),
        ("PS512", rsa("b")),
        ("ES256", p256()),
        ("ES384", p384()),
        ("EdDSA", ed()),
    ];
    for (alg, signer) in &cases {
        // With a kid, among other keys.
        let keys = set(&[a.jwk("other"), signer.jwk("k1"), p256().jwk("k2")]);
        let t = token(
            signer,
            json!({"alg": alg, "kid": "k1", "typ": "JWT"}),
            claims(),
        );
        let v = check(&t, &keys).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.principal(), format!("{ISS}/alice"), "{alg}");
        assert_eq!(v.audiences, ["shop", "other"]);
        assert_eq!(v.presenter.as_deref(), Some("web-ui"));
        assert_eq!(v.expires, NOW + 600);
        // Without a kid: every key that fits is tried.
        let t = token(signer, json!({"alg": alg}), claims());
        assert!(check(&t, &keys).is_ok(), "{alg} without kid");
    }
}

#[test]
fn claims_are_read_nested_and_as_header_text() {
    let s = p256();
    let t = token(&s, json!({"alg": "ES256"}), claims());
    let v = check(&t, &set(&[s.jwk("k")])).unwrap();
    assert_eq!(v.claim_text("realm.role").as_deref(), Some("admin"));
    assert_eq!(v.claim_text("realm.level").as_deref(), Some("3"));
    assert_eq!(v.claim_text("groups").as_deref(), Some("a,b"));
    assert_eq!(v.claim_text("realm"), None, "an object is no header value");
    assert_eq!(v.claim_text("realm.nope"), None);
    assert_eq!(v.claim("sub"), Some(&json!("alice")));
}

#[test]
fn every_refusal_has_its_reason() {
    let s = p256();
    let keys = set(&[s.jwk("k1")]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        token(&s, json!({"alg": "ES256", "kid": "k1"}), c)
    };
    let label = |t: &str, keys: &Jwks| check(t, keys).map(|_| ()).unwrap_err().label();
    assert_eq!(
        label(&with(&|c| c["exp"] = json!(NOW - 61)), &keys),
        "expired"
    );
    assert!(
        check(&with(&|c| c["exp"] = json!(NOW - 59)), &keys).is_ok(),
        "within the skew"
    );
    assert_eq!(
        label(&with(&|c| c["nbf"] = json!(NOW + 61)), &keys),
        "not_yet_valid"
    );
    assert!(check(&with(&|c| c["nbf"] = json!(NOW + 59)), &keys).is_ok());
    assert_eq!(
        label(
            &with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            &keys
        ),
        "missing_exp"
    );
    assert_eq!(
        label(&with(&|c| c["exp"] = json!("tomorrow")), &keys),
        "malformed"
    );
    assert_eq!(
        label(&with(&|c| c["iss"] = json!("https://evil.example")), &keys),
        "wrong_issuer"
    );
    assert_eq!(
        label(&with(&|c| c["aud"] = json!("bank")), &keys),
        "wrong_audience"
    );
    assert_eq!(
        label(
            &with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            &keys
        ),
        "wrong_audience",
        "audiences required, none given"
    );
    // A rule without audiences takes any.
    let t = with(&|c| c["aud"] = json!("bank"));
    let any = Rule {
        audiences: vec![],
        ..rule()
    };
    assert!(Token::parse(&t).unwrap().verify(&any, &keys, NOW).is_ok());

    // Keys.
    let good = with(&|_| {});
    assert_eq!(
        label(&good, &set(&[p256().jwk("k1")])),
        "bad_signature",
        "wrong key"
    );
    assert_eq!(label(&good, &set(&[s.jwk("k9")])), "unknown_kid");
    let no_kid = token(&s, json!({"alg": "ES256"}), claims());
    assert_eq!(label(&no_kid, &set(&[ed().jwk("k")])), "no_key");
    // A key restricted to another algorithm never checks this one.
    let mut restricted = s.jwk("k1");
    restricted["alg"] = json!("ES384");
    assert_eq!(
        Jwks::parse(json!({"keys": [restricted]}).to_string().as_bytes())
            .unwrap()
            .keys
            .len(),
        0,
        "ES384 does not fit a P-256 key: skipped"
    );
    let r = rsa("a");
    let mut rs384_only = r.jwk("r");
    rs384_only["alg"] = json!("RS384");
    let t = token(&r, json!({"alg": "RS256", "kid": "r"}), claims());
    assert_eq!(label(&t, &set(&[rs384_only])), "unknown_kid");

    // A tampered payload: the signature no longer covers it.
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    let mut c = claims();
    c["sub"] = json!("mallory");
    parts[1] = b64(c.to_string().as_bytes());
    assert_eq!(label(&parts.join("."), &keys), "bad_signature");
    // A tampered header (another kid): no such key; the same kid with
    // another alg: refused or no key.
    parts = good.split('.').map(String::from).collect();
    parts[0] = b64(json!({"alg": "ES384", "kid": "k1"}).to_string().as_bytes());
    assert_eq!(label(&parts.join("."), &keys), "unknown_kid");
}

#[test]
fn unsigned_and_shared_secret_tokens_are_refused() {
    let claims = b64(claims().to_string().as_bytes());
    let none = format!("{}.{claims}.", b64(br#"{"alg":"none"}"#));
    let e = Token::parse(&none).unwrap_err();
    assert_eq!(e.label(), "algorithm", "{e}");
    // HS256 with the key as an oct JWK: the key is skipped, the token refused.
    let secret = b"a shared secret of thirty-two by";
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let signed = format!("{}.{claims}", b64(br#"{"alg":"HS256","kid":"h"}"#));
    let tag = ring::hmac::sign(&key, signed.as_bytes());
    let hs = format!("{signed}.{}", b64(tag.as_ref()));
    let keys = Jwks::parse(
        json!({"keys": [{"kty": "oct", "kid": "h", "k": b64(secret)}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert!(keys.keys.is_empty());
    assert!(keys.skipped[0].contains("oct"), "{:?}", keys.skipped);
    assert_eq!(Token::parse(&hs).unwrap_err().label(), "algorithm");
    for alg in ["HS384", "HS512", "none", "RS1", "ES512", "\u{0}"] {
        let t = format!(
            "{}.{claims}.x",
            b64(json!({"alg": alg}).to_string().as_bytes())
        );
        assert_eq!(Token::parse(&t).unwrap_err().label(), "algorithm", "{alg}");
    }
}

#[test]
fn malformed_and_oversize_tokens_are_refused() {
    let s = p256();
    let good = token(&s, json!({"alg": "ES256"}), claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (p, sg) = rest.split_once('.').unwrap();
    let cases = [
        String::new(),
        "abc".into(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{sg}.x"),
        format!("{h}=.{p}.{sg}"),
        format!("{h}.{p}.{sg}=="),
        format!("{h}.{p}.+{sg}"),
        format!("{}.{p}.{sg}", b64(b"not json")),
        format!("{}.{p}.{sg}", b64(b"[1]")),
        format!("{}.{p}.{sg}", b64(br#"{"typ":"JWT"}"#)),
        format!("{}.{p}.{sg}", b64(br#"{"alg":"ES256","kid":7}"#)),
        format!("{}.{p}.{sg}", b64(br#"{"alg":"ES256","crit":["exp"]}"#)),
        format!("{h}.{}.{sg}", b64(b"\"a string\"")),
        format!("{h}.%%%.{sg}"),
    ];
    for t in &cases {
        let e = Token::parse(t).unwrap_err();
        assert!(matches!(e, Refusal::Malformed(_)), "{t}: {e}");
    }
    let big = format!("{h}.{}.{sg}", "A".repeat(MAX_TOKEN_BYTES));
    assert_eq!(Token::parse(&big).unwrap_err().label(), "too_large");
}

#[test]
fn key_sets_skip_what_they_cannot_use_and_bound_their_size() {
    let ec = p256().jwk("ok");
    let mut enc = ec.clone();
    enc["use"] = json!("enc");
    let mut ops = ec.clone();
    ops["key_ops"] = json!(["encrypt"]);
    let mut short = ec.clone();
    short["x"] = json!("AAAA");
    let doc = json!({"keys": [
        ec,
        enc,
        ops,
        short,
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "x": b64(&[0; 32])},
        {"kty": "RSA", "n": b64(&[0xff; 128]), "e": "AQAB"},
        {"kty": "RSA", "n": "!!", "e": "AQAB"},
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "DH"},
        {"kid": "no-kty"},
        {"kty": "EC", "crv": "P-256", "alg": "HS256", "x": "AA", "y": "AA"},
        "a string"
    ]});
    let keys = Jwks::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(keys.kids(), ["ok"]);
    assert_eq!(keys.skipped.len(), 12, "{:#?}", keys.skipped);
    for (i, want) in [
        (0, "\"use\""),
        (1, "key_ops"),
        (2, "32 bytes"),
        (3, "P-521"),
        (4, "X25519"),
        (5, "1024 bits"),
        (6, "base64url"),
        (7, "oct"),
        (8, "\"DH\""),
        (9, "kty"),
        (10, "HS256"),
        (11, "object"),
    ] {
        assert!(keys.skipped[i].contains(want), "{i}: {}", keys.skipped[i]);
    }
    assert!(
        keys.skipped[0].starts_with("keys[1] (kid \"ok\")"),
        "{}",
        keys.skipped[0]
    );
    // Padded components are taken (some issuers pad).
    let r = rsa("a");
    let mut padded = r.jwk("p");
    padded["n"] = json!(format!("{}==", padded["n"].as_str().unwrap()));
    let k = Jwks::parse(json!({"keys": [padded]}).to_string().as_bytes()).unwrap();
    assert_eq!(k.keys.len(), 1, "{:?}", k.skipped);

    assert!(matches!(
        Jwks::parse(&vec![b' '; MAX_JWKS_BYTES + 1]),
        Err(JwksError::TooLarge(_))
    ));
    let many: Vec<Value> = (0..=MAX_KEYS)
        .map(|i| json!({"kty": "oct", "kid": i.to_string()}))
        .collect();
    assert!(matches!(
        Jwks::parse(json!({"keys": many}).to_string().as_bytes()),
        Err(JwksError::TooManyKeys(101))
    ));
    for bad in ["", "{}", "[]", r#"{"keys": {}}"#, "not json"] {
        assert!(
            matches!(Jwks::parse(bad.as_bytes()), Err(JwksError::Malformed(_))),
            "{bad}"
        );
    }
    assert!(Jwks::parse(br#"{"keys": []}"#).unwrap().keys.is_empty());
}

#[test]
fn numeric_dates_may_be_fractional_and_skew_is_bounded() {
    let s = ed();
    let keys = set(&[s.jwk("k")]);
    let mut c = claims();
    c["exp"] = json!((NOW + 1) as f64 + 0.5);
    let t = token(&s, json!({"alg": "EdDSA"}), c);
    assert!(check(&t, &keys).is_ok());
    // A rule's skew above the bound counts as the bound.
    let mut c = claims();
    c["exp"] = json!(NOW - MAX_CLOCK_SKEW_SECONDS as i64 - 1);
    let t = token(&s, json!({"alg": "EdDSA"}), c);
    let lax = Rule {
        clock_skew: 100_000,
        ..rule()
    };
    assert_eq!(
        Token::parse(&t)
            .unwrap()
            .verify(&lax, &keys, NOW)
            .unwrap_err()
            .label(),
        "expired"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any one character of a valid token changed (to any other URL-safe
    /// base64 character or a dot), or any bytes cut off its end, and it no
    /// longer verifies.
    #[test]
    fn a_changed_token_never_verifies(at in any::<prop::sample::Index>(), with in 0usize..65, cut in 1usize..8) {
        thread_local! {
            static FIXTURE: (String, Jwks) = {
                let s = p256();
                (token(&s, json!({"alg": "ES256", "kid": "k1"}), claims()), set(&[s.jwk("k1")]))
            };
        }
        FIXTURE.with(|(good, keys)| {
            const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
            prop_assert!(check(good, keys).is_ok());
            let mut bytes = good.clone().into_bytes();
            let i = at.index(bytes.len());
            let c = ALPHABET[with];
            if bytes[i] != c {
                bytes[i] = c;
                let changed = String::from_utf8(bytes).unwrap();
                prop_assert!(check(&changed, keys).is_err(), "{changed}");
            }
            let cut = &good[..good.len() - cut];
            prop_assert!(check(cut, keys).is_err());
            Ok(())
        })?;
    }
}
