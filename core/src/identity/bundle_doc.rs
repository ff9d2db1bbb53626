//! The SPIFFE bundle document: a trust domain's X.509 roots as the JWK Set
//! of the SPIFFE Trust Domain and Bundle specification (§4), which bundle
//! endpoints serve and federation fetches. Pure: no I/O, no clock.
//!
//! Encoding ([`encode`]): one JWK per root with `"use": "x509-svid"`, the
//! key's own parameters (`kty` with `crv`/`x`/`y` for EC, `n`/`e` for RSA,
//! `crv`/`x` for Ed25519, base64url without padding per RFC 7518), no
//! `kid` (X509-SVID §6.1), and `x5c` holding exactly the one DER certificate
//! in standard base64 (RFC 7517 §4.7); top-level `spiffe_sequence` and
//! `spiffe_refresh_hint` (seconds).
//!
//! Parsing ([`parse`]) follows the consuming rules of the specs, and is
//! strict about everything else:
//!
//! 1. At most [`MAX_DOCUMENT_BYTES`]; UTF-8 JSON; a top-level object with a
//!    `keys` array of at most [`MAX_KEYS`] elements; a duplicated member is
//!    refused (serde's duplicate-field check). Members the specs do not
//!    define are allowed (§4.1: implementations must not require them).
//! 2. `spiffe_sequence`, when present, an integer in `0..=u64::MAX`;
//!    `spiffe_refresh_hint`, when present, an integer number of seconds in
//!    `0..=`[`MAX_REFRESH_HINT_SECS`]. Anything else refuses the document.
//! 3. A key whose `use` is missing or not `x509-svid` (`jwt-svid`, unknown
//!    uses) is ignored, as §4.2.2 requires; counted in
//!    [`SpiffeBundle::ignored`]. So is an `x509-svid` key with an unknown
//!    `kty` (§4.2.1) or without a non-empty `x5c` (X509-SVID §6.2).
//! 4. An `x509-svid` key's first `x5c` value is its certificate (further
//!    values are ignored, X509-SVID §6.2): standard base64, a parsable
//!    X.509 certificate, a CA (basic constraints `CA:TRUE`), a usable trust
//!    anchor, whose public key is the one the JWK's own parameters
//!    describe. Any failure refuses the whole document: a bundle is taken
//!    whole or not at all.
//! 5. At least one and at most [`MAX_ROOTS`] roots result. An empty key set
//!    is how a trust domain revokes its keys (§4.1.3); quicmesh refuses it
//!    rather than trusting nothing from a peer on one response (see
//!    docs/federation.md, "Limits"), and says so.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Map, Value};

/// The largest document accepted (1 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// The most JWKs a document may hold, of any use.
pub const MAX_KEYS: usize = 1024;
/// The most X.509 roots one bundle may hold (what proxies accept, see
/// [`super::bundles::MAX_STREAMED_ROOTS`]).
pub const MAX_ROOTS: usize = super::bundles::MAX_STREAMED_ROOTS;
/// The longest refresh hint accepted: one year.
pub const MAX_REFRESH_HINT_SECS: u64 = 365 * 86400;

/// Why a document was refused. Each names the key (`keys[i]`) or member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleDocError {
    #[error("document is {0} bytes, more than the {MAX_DOCUMENT_BYTES} accepted")]
    TooLarge(usize),
    #[error("document is not a JSON object with a keys array: {0}")]
    Json(String),
    #[error("document has {0} keys, more than the {MAX_KEYS} accepted")]
    TooManyKeys(usize),
    #[error("{member}: {reason}")]
    BadMember {
        member: &'static str,
        reason: String,
    },
    #[error("keys[{index}]: {reason}")]
    BadKey { index: usize, reason: String },
    #[error("no usable x509-svid key ({ignored} keys ignored): an empty bundle revokes every key of the trust domain, which quicmesh does not take from a bundle endpoint")]
    NoRoots { ignored: usize },
    #[error("{0} x509-svid roots, more than the {MAX_ROOTS} accepted")]
    TooManyRoots(usize),
    #[error("root {index} cannot be published: {reason}")]
    Unencodable { index: usize, reason: String },
}

impl BundleDocError {
    /// A short, bounded label (metrics).
    pub fn label(&self) -> &'static str {
        match self {
            BundleDocError::TooLarge(_) => "too_large",
            BundleDocError::Json(_) | BundleDocError::BadMember { .. } => "malformed",
            BundleDocError::TooManyKeys(_) | BundleDocError::TooManyRoots(_) => "too_many_keys",
            BundleDocError::BadKey { .. } | BundleDocError::Unencodable { .. } => "bad_key",
            BundleDocError::NoRoots { .. } => "no_roots",
        }
    }
}

/// A parsed SPIFFE bundle: its X.509 roots (DER), sequence and hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeBundle {
    pub roots: Vec<CertificateDer<'static>>,
    pub sequence: Option<u64>,
    pub refresh_hint: Option<Duration>,
    /// Keys ignored by rule 3 (other uses, unknown types, no `x5c`).
    pub ignored: usize,
}

/// The document of `roots` (rule order kept: one JWK per root).
pub fn encode(
    roots: &[CertificateDer<'_>],
    sequence: u64,
    refresh_hint: Duration,
) -> Result<String, BundleDocError> {
    let keys = roots
        .iter()
        .enumerate()
        .map(|(index, der)| {
            let mut jwk =
                public_jwk(der).map_err(|reason| BundleDocError::Unencodable { index, reason })?;
            jwk.insert("use".into(), json!("x509-svid"));
            jwk.insert("x5c".into(), json!([STANDARD.encode(der)]));
            Ok(Value::Object(jwk))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let doc = json!({
        "keys": keys,
        "spiffe_sequence": sequence,
        "spiffe_refresh_hint": refresh_hint.as_secs(),
    });
    Ok(serde_json::to_string_pretty(&doc).expect("a JSON value serializes"))
}

/// The document's members this module reads; others are allowed.
#[derive(serde::Deserialize)]
struct Doc {
    keys: Vec<Value>,
    #[serde(default)]
    spiffe_sequence: Option<Value>,
    #[serde(default)]
    spiffe_refresh_hint: Option<Value>,
}

/// Parses a bundle document by the rules of the module doc.
pub fn parse(bytes: &[u8]) -> Result<SpiffeBundle, BundleDocError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(BundleDocError::TooLarge(bytes.len()));
    }
    let doc: Doc =
        serde_json::from_slice(bytes).map_err(|e| BundleDocError::Json(e.to_string()))?;
    if doc.keys.len() > MAX_KEYS {
        return Err(BundleDocError::TooManyKeys(doc.keys.len()));
    }
    let sequence = doc
        .spiffe_sequence
        .map(|v| {
            v.as_u64().ok_or_else(|| BundleDocError::BadMember {
                member: "spiffe_sequence",
                reason: format!("{v} is not an integer in 0..=2^64-1"),
            })
        })
        .transpose()?;
    let refresh_hint = doc
        .spiffe_refresh_hint
        .map(|v| match v.as_u64() {
            Some(s) if s <= MAX_REFRESH_HINT_SECS => Ok(Duration::from_secs(s)),
            _ => Err(BundleDocError::BadMember {
                member: "spiffe_refresh_hint",
                reason: format!("{v} is not a number of seconds in 0..={MAX_REFRESH_HINT_SECS}"),
            }),
        })
        .transpose()?;
    let mut roots = Vec::new();
    let mut ignored = 0;
    for (index, key) in doc.keys.iter().enumerate() {
        match x509_root(key).map_err(|reason| BundleDocError::BadKey { index, reason })? {
            Some(root) => roots.push(root),
            None => ignored += 1,
        }
    }
    if roots.is_empty() {
        return Err(BundleDocError::NoRoots { ignored });
    }
    if roots.len() > MAX_ROOTS {
        return Err(BundleDocError::TooManyRoots(roots.len()));
    }
    Ok(SpiffeBundle {
        roots,
        sequence,
        refresh_hint,
        ignored,
    })
}

/// An `x509-svid` key's root; None for a key rule 3 ignores.
fn x509_root(key: &Value) -> Result<Option<CertificateDer<'static>>, String> {
    let Some(key) = key.as_object() else {
        return Err("not a JSON object".into());
    };
    if key.get("use").and_then(Value::as_str) != Some("x509-svid") {
        return Ok(None);
    }
    let kty = match key.get("kty") {
        Some(Value::String(k)) => k.as_str(),
        Some(_) => return Err("kty is not a string".into()),
        None => return Err("an x509-svid key without kty".into()),
    };
    if !matches!(kty, "EC" | "RSA" | "OKP") {
        return Ok(None);
    }
    let first = match key.get("x5c") {
        None => return Ok(None),
        Some(Value::Array(a)) if a.is_empty() => return Ok(None),
        Some(Value::Array(a)) => &a[0],
        Some(_) => return Err("x5c is not an array".into()),
    };
    let Some(b64) = first.as_str() else {
        return Err("x5c[0] is not a string".into());
    };
    let der = STANDARD
        .decode(b64)
        .map_err(|e| format!("x5c[0] is not standard base64: {e}"))?;
    let (rest, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| format!("x5c[0] is not an X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("x5c[0] has bytes after the certificate".into());
    }
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        _ => return Err("x5c[0] is not a CA certificate (basic constraints CA:TRUE)".into()),
    }
    let der = CertificateDer::from(der.clone());
    webpki::anchor_from_trusted_cert(&der)
        .map_err(|e| format!("x5c[0] is not a usable trust anchor: {e:?}"))?;
    // The JWK's own parameters must describe the certificate's key.
    let want = public_jwk(&der).map_err(|e| format!("x5c[0]: {e}"))?;
    for (name, value) in &want {
        if key.get(name) != Some(value) {
            return Err(format!(
                "{name} does not match the public key of the certificate in x5c"
            ));
        }
    }
    Ok(Some(der))
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// The JWK public-key parameters (RFC 7518 §6) of a certificate's key.
fn public_jwk(der: &[u8]) -> Result<Map<String, Value>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert.public_key();
    let b64 = |b: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(b));
    let mut jwk = Map::new();
    match spki.algorithm.algorithm.to_id_string().as_str() {
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let (crv, len) = match curve.as_deref() {
                Some(OID_P256) => ("P-256", 32),
                Some(OID_P384) => ("P-384", 48),
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let point = &spki.subject_public_key.data;
            if point.len() != 1 + 2 * len || point[0] != 4 {
                return Err("EC point is not uncompressed".into());
            }
            jwk.insert("kty".into(), json!("EC"));
            jwk.insert("crv".into(), json!(crv));
            jwk.insert("x".into(), b64(&point[1..1 + len]));
            jwk.insert("y".into(), b64(&point[1 + len..]));
        }
        OID_RSA => {
            let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
                return Err("malformed RSA public key".into());
            };
            // Big-endian unsigned integers without leading zeros (base64urlUInt).
            let strip = |b: &[u8]| -> Vec<u8> {
                let i = b
                    .iter()
                    .position(|x| *x != 0)
                    .unwrap_or(b.len().saturating_sub(1));
                b[i..].to_vec()
            };
            jwk.insert("kty".into(), json!("RSA"));
            jwk.insert("n".into(), b64(&strip(rsa.modulus)));
            jwk.insert("e".into(), b64(&strip(rsa.exponent)));
        }
        OID_ED25519 => {
            jwk.insert("kty".into(), json!("OKP"));
            jwk.insert("crv".into(), json!("Ed25519"));
            jwk.insert("x".into(), b64(&spki.subject_public_key.data));
        }
        other => return Err(format!("unsupported public key algorithm {other}")),
    }
    Ok(jwk)
}

#[cfg(test)]
mod tests;
