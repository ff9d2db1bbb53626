//! JSON Web Key Sets (RFC 7517, keys of RFC 7518 §6 and RFC 8037): the
//! public keys tokens are checked against. Parsing is strict about sizes
//! and lenient about keys: a key quicmesh cannot use (an `oct` secret, an
//! unknown `kty` or `crv`, a key whose `use` or `alg` says it is not for
//! the signatures we check) is skipped with a reason, and the rest serve.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::Value;

use super::{Alg, JwksError, MAX_JWKS_BYTES, MAX_KEYS};

/// Key components: base64url, with or without padding (issuers differ),
/// canonical (no stray trailing bits).
const COMPONENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// RSA moduli accepted, in bits (what ring verifies).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// One usable public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// `kid`, when the set names it.
    pub kid: Option<String>,
    /// `alg`, when the set restricts the key to one algorithm.
    pub alg: Option<Alg>,
    pub material: Material,
}

/// A key's public material, in the form ring takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (`04 || x || y`).
    P256(Vec<u8>),
    P384(Vec<u8>),
    /// The 32-byte public key.
    Ed25519(Vec<u8>),
}

impl Material {
    /// Whether a token signed with `alg` can be checked with this key.
    pub fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                Material::Rsa { .. },
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ) | (Material::P256(_), Alg::ES256)
                | (Material::P384(_), Alg::ES384)
                | (Material::Ed25519(_), Alg::EdDSA)
        )
    }

    /// The JWK `kty` it came from.
    pub fn kty(&self) -> &'static str {
        match self {
            Material::Rsa { .. } => "RSA",
            Material::P256(_) | Material::P384(_) => "EC",
            Material::Ed25519(_) => "OKP",
        }
    }
}

impl Key {
    /// Whether this key may check a token with header `alg` and `kid`.
    pub fn candidate(&self, alg: Alg, kid: Option<&str>) -> bool {
        self.material.fits(alg)
            && self.alg.is_none_or(|a| a == alg)
            && kid.is_none_or(|k| self.kid.as_deref() == Some(k))
    }
}

/// A parsed key set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<Key>,
    /// Keys left out, each with why (`keys[3] (kid "k1"): kty "oct" ...`).
    pub skipped: Vec<String>,
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`). Fails on what is not a
    /// key set at all (too large, not JSON, no `keys` list, more than
    /// [`MAX_KEYS`] keys); a key it cannot use is skipped, not an error.
    pub fn parse(doc: &[u8]) -> Result<Jwks, JwksError> {
        if doc.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge(doc.len()));
        }
        let v: Value =
            serde_json::from_slice(doc).map_err(|e| JwksError::Malformed(e.to_string()))?;
        let keys = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::Malformed("no \"keys\" list".into()))?;
        if keys.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys(keys.len()));
        }
        let mut out = Jwks::default();
        for (i, k) in keys.iter().enumerate() {
            match key(k) {
                Ok(key) => out.keys.push(key),
                Err(why) => {
                    let kid = k
                        .get("kid")
                        .and_then(Value::as_str)
                        .map(|kid| format!(" (kid {kid:?})"))
                        .unwrap_or_default();
                    out.skipped.push(format!("keys[{i}]{kid}: {why}"));
                }
            }
        }
        Ok(out)
    }

    /// The key ids it holds (`-` for keys without one), for dumps.
    pub fn kids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.kid.clone().unwrap_or_else(|| "-".into()))
            .collect()
    }
}

fn text<'a>(k: &'a Value, field: &str) -> Result<Option<&'a str>, String> {
    match k.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field:?} is not a string")),
    }
}

fn bytes(k: &Value, field: &str) -> Result<Vec<u8>, String> {
    let s = text(k, field)?.ok_or_else(|| format!("{field:?} is missing"))?;
    COMPONENT
        .decode(s)
        .map_err(|e| format!("{field:?} is not base64url: {e}"))
}

/// Strips leading zero bytes (JWK integers should have none; some carry one).
fn unsigned(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

fn key(k: &Value) -> Result<Key, String> {
    if !k.is_object() {
        return Err("not a JSON object".into());
    }
    let kty = text(k, "kty")?.ok_or("\"kty\" is missing")?;
    if let Some(u) = text(k, "use")? {
        if u != "sig" {
            return Err(format!("\"use\" is {u:?}, not \"sig\""));
        }
    }
    if let Some(ops) = k.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == "verify"));
        if !verify {
            return Err("\"key_ops\" does not include \"verify\"".into());
        }
    }
    let alg = match text(k, "alg")? {
        None => None,
        Some(a) => Some(Alg::parse(a).map_err(|e| format!("\"alg\": {e}"))?),
    };
    let material = match kty {
        "RSA" => {
            let n = unsigned(&bytes(k, "n")?).to_vec();
            let e = unsigned(&bytes(k, "e")?).to_vec();
            let bits = n.len() * 8;
            if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                return Err(format!(
                    "an RSA modulus of {bits} bits ({RSA_MIN_BITS} to {RSA_MAX_BITS} are accepted)"
                ));
            }
            if e.is_empty() || e.len() > 4 {
                return Err("an RSA exponent that is not 1 to 4 bytes".into());
            }
            Material::Rsa { n, e }
        }
        "EC" => {
            let crv = text(k, "crv")?.ok_or("\"crv\" is missing")?;
            let len = match crv {
                "P-256" => 32,
                "P-384" => 48,
                other => {
                    return Err(format!(
                        "EC curve {other:?} is not supported (P-256, P-384)"
                    ))
                }
            };
            let (x, y) = (bytes(k, "x")?, bytes(k, "y")?);
            if x.len() != len || y.len() != len {
                return Err(format!("{crv} coordinates must be {len} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if len == 32 {
                Material::P256(point)
            } else {
                Material::P384(point)
            }
        }
        "OKP" => {
            let crv = text(k, "crv")?.ok_or("\"crv\" is missing")?;
            if crv != "Ed25519" {
                return Err(format!("OKP curve {crv:?} is not supported (Ed25519)"));
            }
            let x = bytes(k, "x")?;
            if x.len() != 32 {
                return Err("an Ed25519 key must be 32 bytes".into());
            }
            Material::Ed25519(x)
        }
        "oct" => {
            return Err(
                "kty \"oct\" (a shared secret, HMAC) is refused: only public keys are accepted"
                    .into(),
            )
        }
        other => return Err(format!("kty {other:?} is not supported (RSA, EC, OKP)")),
    };
    if let Some(a) = alg {
        if !material.fits(a) {
            return Err(format!("\"alg\" {a} does not fit a {} key", material.kty()));
        }
    }
    let kid = text(k, "kid")?.map(str::to_string);
    Ok(Key { kid, alg, material })
}
