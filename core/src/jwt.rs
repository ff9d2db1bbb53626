//! JSON Web Tokens (RFC 7519) checked against a rule and a key set: what a
//! waypoint does for `RequestAuthentication` (docs/authentication.md).
//! Pure: the clock is an argument, keys are given; fetching them is the
//! caller's business.
//!
//! Semantics, in the order they are checked:
//!
//! 1. The token is the JWS compact form `header.payload.signature`, each
//!    part unpadded canonical base64url, at most [`MAX_TOKEN_BYTES`].
//! 2. The header names `alg`, one of [`Alg`]: RS256/384/512, PS256/384/512,
//!    ES256, ES384, EdDSA. `none` and HS* (shared secrets) are refused, as
//!    is any other; so is a `crit` header (no extension is understood).
//! 3. Keys: with a `kid`, the keys of that id; without, every key whose
//!    type fits `alg`. A key restricted to another `alg` never checks it.
//!    No key with that `kid`: [`Refusal::UnknownKid`] (the caller may fetch
//!    the set again). The signature must verify with one of them.
//! 4. Claims, once the signature holds: `iss` equals the rule's issuer;
//!    when the rule names audiences, `aud` (a string or a list) holds one of
//!    them; `exp` is required, and `now` must be before `exp + skew` and,
//!    when `nbf` is present, not before `nbf - skew`.
//!
//! Every refusal has a fixed label ([`Refusal::label`]) for metrics; its
//! `Display` is the detail for logs.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

pub mod jwks;
pub use jwks::{Jwks, Key, Material};

#[cfg(test)]
mod tests;

/// A token longer than this is refused before it is decoded.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// A JWKS document longer than this is refused.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// A JWKS with more keys than this is refused.
pub const MAX_KEYS: usize = 100;
/// The largest clock skew a rule may allow, in seconds.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 300;
/// The default clock skew, in seconds.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;

/// The signature algorithms accepted.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    /// The algorithm a JOSE `alg` names; `none`, HS* and others refused.
    pub fn parse(s: &str) -> Result<Alg, String> {
        Ok(match s {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "EdDSA" => Alg::EdDSA,
            "none" => return Err("\"none\" (an unsigned token) is refused".into()),
            s if s.starts_with("HS") => {
                return Err(format!("{s:?} (a shared-secret MAC) is refused"))
            }
            other => return Err(format!("{other:?} is not supported")),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a JWKS document cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the key set is {0} bytes (at most {MAX_JWKS_BYTES})")]
    TooLarge(usize),
    #[error("the key set has {0} keys (at most {MAX_KEYS})")]
    TooManyKeys(usize),
    #[error("not a key set: {0}")]
    Malformed(String),
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token is {0} bytes (at most {MAX_TOKEN_BYTES})")]
    TooLarge(usize),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm refused: {0}")]
    Algorithm(String),
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    #[error("no key fits algorithm {0}")]
    NoKey(Alg),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("issuer {0:?} is not the rule's")]
    WrongIssuer(String),
    #[error("audiences {0:?} include none of the rule's")]
    WrongAudience(Vec<String>),
    #[error("no \"exp\" claim")]
    MissingExpiry,
    #[error("expired at {exp} (now {now}, skew {skew} s)")]
    Expired { exp: i64, now: i64, skew: u64 },
    #[error("not valid before {nbf} (now {now}, skew {skew} s)")]
    NotYetValid { nbf: i64, now: i64, skew: u64 },
}

impl Refusal {
    /// A fixed word for metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::TooLarge(_) => "too_large",
            Refusal::Malformed(_) => "malformed",
            Refusal::Algorithm(_) => "algorithm",
            Refusal::UnknownKid(_) => "unknown_kid",
            Refusal::NoKey(_) => "no_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongIssuer(_) => "wrong_issuer",
            Refusal::WrongAudience(_) => "wrong_audience",
            Refusal::MissingExpiry => "missing_exp",
            Refusal::Expired { .. } => "expired",
            Refusal::NotYetValid { .. } => "not_yet_valid",
        }
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub issuer: String,
    /// Empty: any audience (or none).
    pub audiences: Vec<String>,
    /// Seconds of leeway on `exp` and `nbf` (at most [`MAX_CLOCK_SKEW_SECONDS`]).
    pub clock_skew: u64,
}

/// A token decoded but not yet verified.
#[derive(Debug, Clone)]
pub struct Token<'a> {
    /// `header.payload`, the bytes the signature covers.
    signed: &'a str,
    signature: Vec<u8>,
    pub alg: Alg,
    pub kid: Option<String>,
    claims: Map<String, Value>,
}

fn segment(s: &str, what: &str) -> Result<Vec<u8>, Refusal> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| Refusal::Malformed(format!("{what} is not base64url: {e}")))
}

fn object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Refusal::Malformed(format!("{what} is not a JSON object"))),
        Err(e) => Err(Refusal::Malformed(format!("{what} is not JSON: {e}"))),
    }
}

impl<'a> Token<'a> {
    /// Decodes the compact form and its header (steps 1 and 2).
    pub fn parse(token: &'a str) -> Result<Token<'a>, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::TooLarge(token.len()));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed("not three dot-separated parts".into()));
        };
        let header = object(&segment(h, "the header")?, "the header")?;
        let alg = match header.get("alg") {
            Some(Value::String(a)) => Alg::parse(a).map_err(Refusal::Algorithm)?,
            _ => return Err(Refusal::Malformed("the header has no \"alg\"".into())),
        };
        if header.contains_key("crit") {
            return Err(Refusal::Malformed(
                "the header has \"crit\" extensions, none of which are understood".into(),
            ));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(Refusal::Malformed("\"kid\" is not a string".into())),
        };
        let claims = object(&segment(p, "the payload")?, "the payload")?;
        let signature = segment(s, "the signature")?;
        Ok(Token {
            signed: &token[..h.len() + 1 + p.len()],
            signature,
            alg,
            kid,
            claims,
        })
    }

    /// `iss` as the token claims it (unverified: for choosing a rule).
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// Steps 3 and 4: the signature with `keys`, then the claims against
    /// `rule` at `now` (seconds since the Unix epoch).
    pub fn verify(&self, rule: &Rule, keys: &Jwks, now: i64) -> Result<Verified, Refusal> {
        self.check_signature(keys)?;
        self.check_claims(rule, now)
    }

    /// SHA-256 of the signed part and the signature: the same value for
    /// the same token, whatever carried it (for remembering that its
    /// signature verified with a key set).
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        c.update(self.signed.as_bytes());
        c.update(b".");
        c.update(&self.signature);
        let mut out = [0u8; 32];
        out.copy_from_slice(c.finish().as_ref());
        out
    }

    /// Step 3 alone: the signature with `keys`.
    pub fn check_signature(&self, keys: &Jwks) -> Result<(), Refusal> {
        let mut candidates = keys
            .keys
            .iter()
            .filter(|k| k.candidate(self.alg, self.kid.as_deref()))
            .peekable();
        if candidates.peek().is_none() {
            return Err(match &self.kid {
                Some(kid) => Refusal::UnknownKid(kid.clone()),
                None => Refusal::NoKey(self.alg),
            });
        }
        let msg = self.signed.as_bytes();
        if candidates.any(|k| verifies(self.alg, &k.material, msg, &self.signature)) {
            Ok(())
        } else {
            Err(Refusal::BadSignature)
        }
    }

    /// Step 4 alone: the claims against `rule` at `now` (for a token whose
    /// signature is known to verify).
    pub fn check_claims(&self, rule: &Rule, now: i64) -> Result<Verified, Refusal> {
        let c = &self.claims;
        let issuer = c.get("iss").and_then(Value::as_str).unwrap_or_default();
        if issuer != rule.issuer {
            return Err(Refusal::WrongIssuer(issuer.to_string()));
        }
        let audiences: Vec<String> = match c.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| Refusal::Malformed("\"aud\" holds a non-string".into()))?,
            Some(_) => return Err(Refusal::Malformed("\"aud\" is not a string or list".into())),
        };
        if !rule.audiences.is_empty() && !audiences.iter().any(|a| rule.audiences.contains(a)) {
            return Err(Refusal::WrongAudience(audiences));
        }
        let skew = rule.clock_skew.min(MAX_CLOCK_SKEW_SECONDS);
        let exp = time_claim(c, "exp")?.ok_or(Refusal::MissingExpiry)?;
        if now >= exp.saturating_add(skew as i64) {
            return Err(Refusal::Expired { exp, now, skew });
        }
        if let Some(nbf) = time_claim(c, "nbf")? {
            if now < nbf.saturating_sub(skew as i64) {
                return Err(Refusal::NotYetValid { nbf, now, skew });
            }
        }
        let text = |k: &str| match c.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Refusal::Malformed(format!("{k:?} is not a string"))),
        };
        Ok(Verified {
            issuer: issuer.to_string(),
            subject: text("sub")?.unwrap_or_default(),
            audiences,
            presenter: text("azp")?,
            expires: exp,
            claims: c.clone(),
        })
    }
}

/// A NumericDate claim (seconds, possibly fractional), whole seconds down.
fn time_claim(c: &Map<String, Value>, k: &str) -> Result<Option<i64>, Refusal> {
    match c.get(k) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let v = n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.floor() as i64)
                })
                .ok_or_else(|| Refusal::Malformed(format!("{k:?} is not a time")))?;
            Ok(Some(v))
        }
        Some(_) => Err(Refusal::Malformed(format!("{k:?} is not a number"))),
    }
}

fn verifies(alg: Alg, key: &Material, msg: &[u8], sig: &[u8]) -> bool {
    use ring::signature as s;
    match key {
        Material::Rsa { n, e } => {
            let params: &s::RsaParameters = match alg {
                Alg::RS256 => &s::RSA_PKCS1_2048_8192_SHA256,
                Alg::RS384 => &s::RSA_PKCS1_2048_8192_SHA384,
                Alg::RS512 => &s::RSA_PKCS1_2048_8192_SHA512,
                Alg::PS256 => &s::RSA_PSS_2048_8192_SHA256,
                Alg::PS384 => &s::RSA_PSS_2048_8192_SHA384,
                Alg::PS512 => &s::RSA_PSS_2048_8192_SHA512,
                _ => return false,
            };
            s::RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .is_ok()
        }
        Material::P256(point) if alg == Alg::ES256 => {
            s::UnparsedPublicKey::new(&s::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        Material::P384(point) if alg == Alg::ES384 => {
            s::UnparsedPublicKey::new(&s::ECDSA_P384_SHA384_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        Material::Ed25519(x) if alg == Alg::EdDSA => s::UnparsedPublicKey::new(&s::ED25519, x)
            .verify(msg, sig)
            .is_ok(),
        _ => false,
    }
}

/// A token that verified: who it names, and its claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub issuer: String,
    /// `sub` (empty when absent).
    pub subject: String,
    pub audiences: Vec<String>,
    /// `azp`, the party the token was issued to.
    pub presenter: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires: i64,
    /// Every claim, as the token carries them.
    pub claims: Map<String, Value>,
}

impl Verified {
    /// The request principal, as Istio writes it: `<iss>/<sub>`.
    pub fn principal(&self) -> String {
        format!("{}/{}", self.issuer, self.subject)
    }

    /// The claim at `path`: a name, or names joined by `.` for nested
    /// objects (`realm.role`). A claim whose own name holds a dot is found
    /// by its full name first.
    pub fn claim(&self, path: &str) -> Option<&Value> {
        if let Some(v) = self.claims.get(path) {
            return Some(v);
        }
        let mut parts = path.split('.');
        let mut cur = self.claims.get(parts.next()?)?;
        for p in parts {
            cur = cur.as_object()?.get(p)?;
        }
        Some(cur)
    }

    /// A claim as a header value would carry it: a string as is, a
    /// number or boolean printed, a list of those joined by `,`; None for
    /// an object, null, an empty list, or a missing claim.
    pub fn claim_text(&self, path: &str) -> Option<String> {
        fn scalar(v: &Value) -> Option<String> {
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        }
        match self.claim(path)? {
            Value::Array(a) if !a.is_empty() => a
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            v => scalar(v),
        }
    }
}
