//! X.509 SVIDs (a certificate chain and its private key) and trust bundles
//! (the CA certificates of each trust domain), loaded from PEM.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor};

use super::spiffe::{SpiffeId, SpiffeIdError};

#[derive(Debug, thiserror::Error)]
pub enum SvidError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{what}: no PEM {kind} found")]
    NoPem { what: String, kind: &'static str },
    #[error("{what}: malformed PEM: {source}")]
    Pem {
        what: String,
        source: std::io::Error,
    },
    #[error("certificate is not valid X.509: {0}")]
    X509(String),
    #[error("certificate has {0} URI SANs; an SVID has exactly one")]
    UriSanCount(usize),
    #[error("certificate's URI SAN is not a SPIFFE ID: {0}")]
    BadSpiffeId(#[from] SpiffeIdError),
    #[error("trust bundle certificate is not a usable trust anchor: {0}")]
    Anchor(String),
}

/// What a certificate says about itself that quicmesh cares about.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub id: SpiffeId,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Reads the SPIFFE ID (the one and only URI SAN) and the validity window of a
/// DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, SvidError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| SvidError::X509(e.to_string()))?;
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(u) = name {
                uris.push(*u);
            }
        }
    }
    if uris.len() != 1 {
        return Err(SvidError::UriSanCount(uris.len()));
    }
    let id = SpiffeId::parse(uris[0])?;
    let to_system = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    Ok(CertInfo {
        id,
        not_before: to_system(cert.validity().not_before),
        not_after: to_system(cert.validity().not_after),
    })
}

/// An X.509 SVID: leaf first, then intermediates; and the leaf's key.
#[derive(Debug)]
pub struct Svid {
    pub id: SpiffeId,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Svid {
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, SvidError> {
        let leaf = chain.first().ok_or_else(|| SvidError::NoPem {
            what: "SVID".into(),
            kind: "certificate",
        })?;
        let info = cert_info(leaf)?;
        Ok(Svid {
            id: info.id,
            chain,
            key,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<Self, SvidError> {
        let chain = certs_from_pem(cert_pem, what)?;
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|source| SvidError::Pem {
                what: what.to_string(),
                source,
            })?
            .ok_or_else(|| SvidError::NoPem {
                what: what.to_string(),
                kind: "private key",
            })?;
        Self::from_der(chain, key)
    }

    pub fn load(cert: &Path, key: &Path) -> Result<Self, SvidError> {
        Self::from_pem(&read(cert)?, &read(key)?, &cert.display().to_string())
    }

    /// When this SVID, which arrived at `received`, is to be replaced:
    /// halfway through the validity it had left then. Not halfway from
    /// `not_before`: CAs back-date that to absorb clock skew (ours by a
    /// minute), which would put the half-life of a short-lived SVID in the
    /// past, so that every use fetched a new one.
    pub fn refresh_at(&self, received: SystemTime) -> SystemTime {
        let from = received.max(self.not_before);
        from + self.not_after.duration_since(from).unwrap_or_default() / 2
    }

    pub fn clone_key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SvidError> {
    std::fs::read(path).map_err(|source| SvidError::Io {
        path: path.display().to_string(),
        source,
    })
}

pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, SvidError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|source| SvidError::Pem {
            what: what.to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(SvidError::NoPem {
            what: what.to_string(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

/// The CA certificates trusted for each trust domain.
#[derive(Debug, Default, Clone)]
pub struct TrustBundles {
    by_domain: HashMap<String, Arc<Vec<TrustAnchor<'static>>>>,
}

impl TrustBundles {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the bundle of `trust_domain`.
    pub fn insert(
        &mut self,
        trust_domain: &str,
        certs: &[CertificateDer<'_>],
    ) -> Result<(), SvidError> {
        let anchors = certs
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(|e| SvidError::Anchor(format!("{e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.by_domain
            .insert(trust_domain.to_string(), Arc::new(anchors));
        Ok(())
    }

    pub fn insert_pem(&mut self, trust_domain: &str, pem: &[u8]) -> Result<(), SvidError> {
        let certs = certs_from_pem(pem, &format!("trust bundle of {trust_domain}"))?;
        self.insert(trust_domain, &certs)
    }

    /// Drops the bundle of `trust_domain`; whether it had one.
    pub fn remove(&mut self, trust_domain: &str) -> bool {
        self.by_domain.remove(trust_domain).is_some()
    }

    pub fn get(&self, trust_domain: &str) -> Option<&[TrustAnchor<'static>]> {
        self.by_domain.get(trust_domain).map(|v| v.as_slice())
    }

    pub fn trust_domains(&self) -> impl Iterator<Item = &str> {
        self.by_domain.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ca::Ca;

    #[test]
    fn refresh_is_halfway_through_what_was_left_on_arrival() {
        let ca = Ca::generate("cluster.local").unwrap();
        let id = SpiffeId::workload("cluster.local", "shop", "web").unwrap();
        let now = SystemTime::now();
        // Back-dated by a minute, valid for 10 s more: renewed in 5 s, not
        // 25 s ago.
        let s = ca.mint(&id, Duration::from_secs(10)).unwrap();
        let at = s.refresh_at(now);
        let left = at.duration_since(now).unwrap();
        assert!(
            left > Duration::from_secs(4) && left <= Duration::from_secs(5),
            "{left:?}"
        );
        // Not yet valid when it arrived: halfway from not_before.
        let later = ca
            .mint_window(
                &id,
                now + Duration::from_secs(100),
                now + Duration::from_secs(200),
            )
            .unwrap();
        let at = later.refresh_at(now).duration_since(now).unwrap();
        assert!(at.as_secs() >= 149 && at.as_secs() <= 150, "{at:?}");
        // Arrived expired: due at once.
        let old = ca
            .mint_window(
                &id,
                now - Duration::from_secs(100),
                now - Duration::from_secs(10),
            )
            .unwrap();
        assert!(old.refresh_at(now) <= now);
    }
}
