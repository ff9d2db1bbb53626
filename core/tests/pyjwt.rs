//! Tokens of every algorithm `core::jwt` accepts, signed by another
//! implementation — PyJWT with the `cryptography` package (installed by
//! scripts/setup.sh) — with its JWKS of the public key as PyJWT writes it:
//! each verifies; the same token with a changed payload, and a token of
//! another key under the same `kid`, are refused as bad signatures.

use std::process::Command;

use quicmesh_core::jwt::{Jwks, Refusal, Rule, Token};

/// For each algorithm: one JSON line with the JWKS of a fresh key, a
/// token it signed, and a token of another key of the same kind and kid.
const SIGNER: &str = r#"
import json, time, jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
A = jwt.algorithms
def rsa_key(): return rsa.generate_private_key(public_exponent=65537, key_size=2048)
kinds = {
    "RS256": (rsa_key, A.RSAAlgorithm), "RS384": (rsa_key, A.RSAAlgorithm), "RS512": (rsa_key, A.RSAAlgorithm),
    "PS256": (rsa_key, A.RSAPSSAlgorithm), "PS384": (rsa_key, A.RSAPSSAlgorithm), "PS512": (rsa_key, A.RSAPSSAlgorithm),
    "ES256": (lambda: ec.generate_private_key(ec.SECP256R1()), A.ECAlgorithm),
    "ES384": (lambda: ec.generate_private_key(ec.SECP384R1()), A.ECAlgorithm),
    "EdDSA": (ed25519.Ed25519PrivateKey.generate, A.OKPAlgorithm),
}
claims = {"iss": "https://issuer.example", "sub": "alice", "aud": "shop", "exp": int(time.time()) + 600}
for alg, (make, algo) in kinds.items():
    key, other = make(), make()
    jwk = json.loads(algo.to_jwk(key.public_key()))
    jwk["kid"] = "k-" + alg
    headers = {"kid": jwk["kid"]}
    print(json.dumps({"alg": alg, "jwks": {"keys": [jwk]},
        "token": jwt.encode(claims, key, algorithm=alg, headers=headers),
        "other": jwt.encode(claims, other, algorithm=alg, headers=headers)}))
"#;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn tokens_signed_by_pyjwt_verify_for_every_algorithm() {
    let out = Command::new("python3")
        .args(["-c", SIGNER])
        .output()
        .expect("python3 runs (scripts/setup.sh installs PyJWT and cryptography)");
    assert!(
        out.status.success(),
        "PyJWT signer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rule = Rule {
        issuer: "https://issuer.example".into(),
        audiences: vec!["shop".into()],
        clock_skew: 0,
    };
    let mut algs = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let alg = v["alg"].as_str().unwrap().to_string();
        let jwks = Jwks::parse(v["jwks"].to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{alg}: PyJWT's JWKS refused: {e}"));
        assert!(jwks.skipped.is_empty(), "{alg}: {:?}", jwks.skipped);
        let token = v["token"].as_str().unwrap();
        let verified = Token::parse(token)
            .and_then(|t| t.verify(&rule, &jwks, now()))
            .unwrap_or_else(|e| panic!("{alg}: a PyJWT token refused: {e:?}"));
        assert_eq!(
            verified.principal(),
            "https://issuer.example/alice",
            "{alg}"
        );

        // Another key under the same kid: a bad signature.
        let other = v["other"].as_str().unwrap();
        let e = Token::parse(other)
            .and_then(|t| t.verify(&rule, &jwks, now()))
            .unwrap_err();
        assert!(matches!(e, Refusal::BadSignature), "{alg}: {e:?}");

        // The payload changed (another subject), the signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = base64url(
            br#"{"iss":"https://issuer.example","sub":"mallory","aud":"shop","exp":99999999999}"#,
        );
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        let e = Token::parse(&forged)
            .and_then(|t| t.verify(&rule, &jwks, now()))
            .unwrap_err();
        assert!(matches!(e, Refusal::BadSignature), "{alg}: {e:?}");
        algs.push(alg);
    }
    assert_eq!(
        algs,
        ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
    );
}

fn base64url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
