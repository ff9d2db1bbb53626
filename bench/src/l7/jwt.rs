//! The bench's own token issuer, for the "waypoint + JWT + policy" column:
//! an ES256 (P-256) key pair generated with ring when the bench starts, its
//! public half as the JWKS the `RequestAuthentication` carries inline, and
//! one token signed with it that the load of that path sends as
//! `Authorization: Bearer <token>`. The private key lives only in this
//! process and is never written anywhere.

use anyhow::{anyhow, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// The token's `iss`, and the issuer the RequestAuthentication names.
pub(super) const ISSUER: &str = "https://bench.quicmesh.example";
/// The token's `aud`, and the audience the RequestAuthentication requires.
pub(super) const AUDIENCE: &str = "bench";
/// The key's id, in the token's header and in the JWKS.
pub(super) const KID: &str = "bench-es256";
/// The token's `sub`: its principal is `<ISSUER>/<SUBJECT>`.
pub(super) const SUBJECT: &str = "bench-client";
/// The one value of the token's `groups` claim, which the ALLOW policy requires.
pub(super) const GROUP: &str = "bench";
/// How long the token is valid: far longer than any run.
const LIFETIME_SECS: u64 = 24 * 3600;

/// The key set and the token of one bench run.
pub(super) struct Issued {
    /// The JWKS document (JSON text) with the public key.
    pub jwks: String,
    /// The signed token, JWS compact form.
    pub token: String,
    /// The token's claims, for the results' setup.
    pub claims: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new key pair, its JWKS, and a token issued at `now` (seconds since
/// the Unix epoch) that expires a day later.
pub(super) fn issue(now: u64) -> Result<Issued> {
    let rng = SystemRandom::new();
    let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
        .map_err(|_| anyhow!("generating the bench's ES256 key"))?;
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
        .map_err(|e| anyhow!("loading the bench's ES256 key: {e}"))?;
    // The public key is the uncompressed point: 0x04, then x and y.
    let point = key.public_key().as_ref();
    let (x, y) = point[1..].split_at(32);
    let jwks = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KID,
        "x": b64(x), "y": b64(y),
    }]})
    .to_string();
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": KID});
    let claims = json!({
        "iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE, "groups": [GROUP],
        "iat": now, "exp": now + LIFETIME_SECS,
    });
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = key
        .sign(&rng, signed.as_bytes())
        .map_err(|_| anyhow!("signing the bench's token"))?;
    Ok(Issued {
        jwks,
        token: format!("{signed}.{}", b64(signature.as_ref())),
        claims,
    })
}

/// Seconds since the Unix epoch.
pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmesh_core::jwt::{Jwks, Refusal, Rule, Token};

    const NOW: u64 = 1_800_000_000;

    fn rule() -> Rule {
        Rule {
            issuer: ISSUER.into(),
            audiences: vec![AUDIENCE.into()],
            clock_skew: 0,
        }
    }

    /// The waypoint's own verifier (quicmesh-core) takes the token, with
    /// the principal and the group the policy asks for.
    #[test]
    fn the_waypoints_verifier_accepts_the_token() {
        let i = issue(NOW).unwrap();
        let keys = Jwks::parse(i.jwks.as_bytes()).unwrap();
        assert_eq!(keys.kids(), [KID]);
        assert!(keys.skipped.is_empty(), "{:?}", keys.skipped);
        let t = Token::parse(&i.token).unwrap();
        assert_eq!(t.kid.as_deref(), Some(KID));
        let v = t.verify(&rule(), &keys, NOW as i64).unwrap();
        assert_eq!(v.principal(), format!("{ISSUER}/{SUBJECT}"));
        assert_eq!(v.claim("groups"), Some(&json!([GROUP])));
        assert_eq!(v.expires, (NOW + LIFETIME_SECS) as i64);
        assert_eq!(i.claims["exp"], json!(NOW + LIFETIME_SECS));
    }

    #[test]
    fn the_token_expires_after_a_day_and_holds_only_for_its_own_key() {
        let (a, b) = (issue(NOW).unwrap(), issue(NOW).unwrap());
        let keys_a = Jwks::parse(a.jwks.as_bytes()).unwrap();
        let t = Token::parse(&a.token).unwrap();
        let later = (NOW + LIFETIME_SECS) as i64;
        assert!(t.verify(&rule(), &keys_a, later - 1).is_ok());
        assert!(matches!(
            t.verify(&rule(), &keys_a, later),
            Err(Refusal::Expired { .. })
        ));
        let keys_b = Jwks::parse(b.jwks.as_bytes()).unwrap();
        assert_eq!(
            t.verify(&rule(), &keys_b, NOW as i64).unwrap_err(),
            Refusal::BadSignature
        );
    }
}
