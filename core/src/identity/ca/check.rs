//! What a CA must be before it signs anything. Refused, each with its own
//! message naming the part at fault:
//!
//! 1. a part that is not PEM, or a trust bundle with no usable root;
//! 2. a signing certificate that is not a CA (basic constraints `cA`
//!    false or absent, or a key usage without `keyCertSign`);
//! 3. a key that is not the signing certificate's;
//! 4. a signing certificate (or an intermediate above it) expired or not
//!    yet valid;
//! 5. a chain that does not reach a root of the trust bundle: checked as a
//!    peer checks an SVID, by minting a throwaway SVID and verifying it
//!    against the bundle with the intermediates the CA would send.
//!
//! Pure apart from the key generation of item 5.

use std::time::{Duration, SystemTime};

use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::certificate::X509Certificate;

use super::{CaError, CaPem};
use crate::identity::svid::{certs_from_pem, TrustBundles};
use crate::identity::verify::{verify_peer_chain, Side};
use crate::identity::SpiffeId;

/// A CA that passed every check.
pub struct Checked {
    pub cert: CertificateDer<'static>,
    pub key: KeyPair,
    pub intermediates: Vec<CertificateDer<'static>>,
    pub roots: Vec<CertificateDer<'static>>,
    pub signing_roots: Vec<CertificateDer<'static>>,
    pub valid_until: SystemTime,
}

fn parse<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, CaError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| CaError::invalid(what, format!("not X.509: {e}")))
}

fn to_system(t: x509_parser::time::ASN1Time) -> SystemTime {
    match u64::try_from(t.timestamp()) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Whether `der` names itself as its issuer (a root).
pub fn self_signed(der: &[u8]) -> Result<bool, CaError> {
    let c = parse(der, "certificate")?;
    Ok(c.subject().as_raw() == c.issuer().as_raw())
}

/// Refuses a certificate that is no CA (item 2).
fn must_be_ca(c: &X509Certificate<'_>, what: &'static str) -> Result<(), CaError> {
    let bc = c
        .basic_constraints()
        .map_err(|e| CaError::invalid(what, format!("basic constraints: {e}")))?;
    if !bc.is_some_and(|b| b.value.ca) {
        return Err(CaError::invalid(
            what,
            "not a CA certificate (basic constraints cA is not set): it cannot sign SVIDs",
        ));
    }
    if let Ok(Some(ku)) = c.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(CaError::invalid(
                what,
                "its key usage does not allow signing certificates (keyCertSign)",
            ));
        }
    }
    Ok(())
}

/// Refuses a certificate outside its validity at `now` (item 4).
fn must_be_current(
    c: &X509Certificate<'_>,
    what: &'static str,
    now: SystemTime,
) -> Result<SystemTime, CaError> {
    let (from, until) = (
        to_system(c.validity().not_before),
        to_system(c.validity().not_after),
    );
    if now >= until {
        return Err(CaError::invalid(
            what,
            format!("expired at {}", c.validity().not_after),
        ));
    }
    if now < from {
        return Err(CaError::invalid(
            what,
            format!("not valid before {}", c.validity().not_before),
        ));
    }
    Ok(until)
}

/// Checks a CA's parts for `trust_domain` at `now` (see the module doc).
pub fn parts(trust_domain: &str, pem: &CaPem, now: SystemTime) -> Result<Checked, CaError> {
    const SIGNING: &str = "the signing certificate (ca.pem)";
    let certs = certs_from_pem(pem.cert.as_bytes(), SIGNING)?;
    let cert = certs[0].clone();
    // Extra certificates after the first in ca.pem count as its chain.
    let mut above: Vec<CertificateDer<'static>> = certs[1..].to_vec();
    if let Some(chain) = &pem.chain {
        above.extend(certs_from_pem(
            chain.as_bytes(),
            "the CA chain (ca-chain.pem)",
        )?);
    }
    let key = KeyPair::from_pem(&pem.key)
        .map_err(|e| CaError::invalid("the CA key (ca-key.pem)", e.to_string()))?;

    let parsed = parse(&cert, SIGNING)?;
    must_be_ca(&parsed, SIGNING)?;
    if key.der_bytes() != parsed.public_key().subject_public_key.data.as_ref() {
        return Err(CaError::invalid(
            "the CA key (ca-key.pem)",
            "it is not the key of the signing certificate (ca.pem)",
        ));
    }
    let mut valid_until = must_be_current(&parsed, SIGNING, now)?;
    let is_root = parsed.subject().as_raw() == parsed.issuer().as_raw();

    // What SVIDs carry after the leaf: the signing certificate unless it
    // is a root, and the intermediates above it (roots left out).
    let mut intermediates = Vec::new();
    if !is_root {
        intermediates.push(cert.clone());
    }
    let mut last_root = is_root.then(|| cert.clone());
    for c in &above {
        const CHAIN: &str = "a certificate of the CA chain (ca-chain.pem)";
        let p = parse(c, CHAIN)?;
        must_be_ca(&p, CHAIN)?;
        valid_until = valid_until.min(must_be_current(&p, CHAIN, now)?);
        if p.subject().as_raw() == p.issuer().as_raw() {
            last_root = Some(c.clone());
        } else {
            intermediates.push(c.clone());
        }
    }

    let roots =
        match &pem.roots {
            Some(r) => certs_from_pem(r.as_bytes(), "the trust bundle (roots.pem)")?,
            None => match last_root {
                Some(r) => vec![r],
                None => return Err(CaError::invalid(
                    "the trust bundle (roots.pem)",
                    "absent, and the signing chain ends at no root: give the roots in roots.pem",
                )),
            },
        };

    // Item 5: a throwaway SVID, verified as a peer would, against each root.
    let probe_id = SpiffeId::workload(trust_domain, "quicmesh-ca-check", "check")
        .map_err(|e| CaError::invalid("the trust domain", e.to_string()))?;
    let issuer =
        rcgen::Issuer::from_ca_cert_der(&cert, KeyPair::from_pem(&pem.key).expect("parsed above"))?;
    let probe_key = KeyPair::generate()?;
    let probe = super::leaf_params(&probe_id, now - Duration::from_secs(60), valid_until)?
        .signed_by(&probe_key, &issuer)?;
    let probe_der = probe.der().clone();
    let algs = crate::crypto_provider().signature_verification_algorithms;
    let at = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let mut signing_roots = Vec::new();
    let mut last_refusal = None;
    for root in &roots {
        let mut one = TrustBundles::new();
        one.insert(trust_domain, std::slice::from_ref(root))
            .map_err(|e| CaError::invalid("the trust bundle (roots.pem)", e.to_string()))?;
        match verify_peer_chain(&one, &probe_der, &intermediates, at, Side::Server, &algs) {
            Ok(_) => signing_roots.push(root.clone()),
            Err(r) => last_refusal = Some(r),
        }
    }
    if signing_roots.is_empty() {
        return Err(CaError::invalid(
            SIGNING,
            format!(
                "its chain does not reach a root of the trust bundle ({} roots): {}",
                roots.len(),
                last_refusal.map(|r| r.to_string()).unwrap_or_default()
            ),
        ));
    }
    Ok(Checked {
        cert,
        key,
        intermediates,
        roots,
        signing_roots,
        valid_until,
    })
}

#[cfg(test)]
mod tests;
