//! A certificate authority that mints SPIFFE X.509 SVIDs (ECDSA P-256).
//!
//! ztunnel uses it only in development mode (`--dev-ca-dir`), where it signs
//! its own workloads' SVIDs; the lab and tests use it to make CAs and
//! certificates, good and bad. The controller's CA (a later part) will sign
//! CSRs with the same code.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::spiffe::SpiffeId;
use super::svid::{Svid, SvidError};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Svid(#[from] SvidError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A CA: its certificate and signing key.
pub struct Ca {
    trust_domain: String,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
}

impl Ca {
    /// A new self-signed root for `trust_domain`, valid for ten years.
    pub fn generate(trust_domain: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "quicmesh");
        dn.push(DnType::CommonName, format!("quicmesh CA {trust_domain}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 365 * 86400)).into();
        // The CA's SPIFFE ID: trust domain with no path, per the X509-SVID spec.
        params.subject_alt_names =
            vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Ca {
            trust_domain: trust_domain.to_string(),
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            key_pem,
        })
    }

    /// Loads `ca.pem` and `ca-key.pem` from `dir`.
    pub fn load(trust_domain: &str, dir: &Path) -> Result<Self, CaError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| CaError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        Self::from_pem(trust_domain, read("ca.pem")?, read("ca-key.pem")?)
    }

    /// The CA from its certificate and key in PEM (as [`Ca::cert_pem`] and
    /// [`Ca::key_pem`] give them; kept in files or a Kubernetes Secret).
    pub fn from_pem(
        trust_domain: &str,
        cert_pem: String,
        key_pem: String,
    ) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(&key_pem)?;
        let certs = super::svid::certs_from_pem(cert_pem.as_bytes(), "the CA certificate")?;
        let issuer = Issuer::from_ca_cert_der(&certs[0], key)?;
        Ok(Ca {
            trust_domain: trust_domain.to_string(),
            cert_der: certs[0].clone(),
            cert_pem,
            issuer,
            key_pem,
        })
    }

    /// The signing key in PEM: a secret, for storing the CA only.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Loads the CA from `dir`, or generates one and writes it there.
    pub fn load_or_generate(trust_domain: &str, dir: &Path) -> Result<Self, CaError> {
        if dir.join("ca.pem").exists() {
            return Self::load(trust_domain, dir);
        }
        let ca = Self::generate(trust_domain)?;
        ca.save(dir)?;
        Ok(ca)
    }

    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        let io = |path: &Path, source| CaError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let cert = dir.join("ca.pem");
        std::fs::write(&cert, &self.cert_pem).map_err(|e| io(&cert, e))?;
        let key = dir.join("ca-key.pem");
        write_private(&key, self.key_pem.as_bytes()).map_err(|e| io(&key, e))?;
        Ok(())
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Mints an SVID for `id` valid from now for `lifetime`.
    pub fn mint(&self, id: &SpiffeId, lifetime: Duration) -> Result<Svid, CaError> {
        let now = SystemTime::now();
        // A minute of back-dating absorbs clock skew between nodes.
        self.mint_window(id, now - Duration::from_secs(60), now + lifetime)
    }

    /// Mints an SVID for `id` valid between the two instants (tests use this
    /// for expired certificates).
    pub fn mint_window(
        &self,
        id: &SpiffeId,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Svid, CaError> {
        let key = KeyPair::generate()?;
        let cert = leaf_params(id, not_before, not_after)?.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(Svid::from_der(vec![cert.der().clone()], key_der)?)
    }

    /// Signs a PKCS#10 CSR (PEM) for `lifetime`. The identity is the CSR's
    /// single URI SAN; nothing else in the CSR is copied into the
    /// certificate. Returns the identity and the certificate (DER).
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        lifetime: Duration,
    ) -> Result<(SpiffeId, CertificateDer<'static>), CaError> {
        let id = csr_identity(csr_pem)?;
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let now = SystemTime::now();
        let params = leaf_params(&id, now - Duration::from_secs(60), now + lifetime)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok((id, cert.der().clone()))
    }
}

/// The SPIFFE ID a CSR asks for: its one and only URI SAN.
pub fn csr_identity(csr_pem: &str) -> Result<SpiffeId, CaError> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    let uris: Vec<String> = csr
        .params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            SanType::URI(u) => Some(u.as_str().to_string()),
            _ => None,
        })
        .collect();
    if uris.len() != 1 {
        return Err(CaError::Svid(SvidError::UriSanCount(uris.len())));
    }
    Ok(SpiffeId::parse(&uris[0]).map_err(SvidError::from)?)
}

/// A new key and a CSR (PEM) for `id`; the key stays with the caller.
pub fn new_csr(id: &SpiffeId) -> Result<(String, PrivateKeyDer<'static>), CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((
        csr,
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    ))
}

/// The certificate parameters of an SVID for `id`.
fn leaf_params(
    id: &SpiffeId,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "quicmesh");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    Ok(params)
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// PEM text of an SVID's chain and key, for writing to files.
pub fn svid_to_pem(svid: &Svid) -> (String, String) {
    let mut chain = String::new();
    for c in &svid.chain {
        chain.push_str(&pem_block("CERTIFICATE", c));
    }
    (chain, pem_block("PRIVATE KEY", svid.key.secret_der()))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der))
}
