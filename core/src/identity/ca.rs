//! A certificate authority that mints SPIFFE X.509 SVIDs (ECDSA P-256).
//!
//! A [`Ca`] is a signing certificate and its key, the intermediates
//! between it and a root (sent after the leaf of every SVID it issues),
//! and the trust bundle of its trust domain (one or more roots: several
//! while the CA rotates). The signing certificate is a root itself
//! (generated, or plugged in) or an intermediate whose root is kept
//! offline. A CA is checked whole when it is built ([`Ca::from_parts`]):
//! see [`check`] for what is refused.
//!
//! Kept as files ([`Ca::load`], [`Ca::save`]) or in a Kubernetes Secret
//! with the same names as keys ([`CaPem`]):
//!
//! | file | what | |
//! | --- | --- | --- |
//! | `ca.pem` | the signing certificate | required |
//! | `ca-key.pem` | its private key (PKCS#8 PEM) | required |
//! | `ca-chain.pem` | the certificates above `ca.pem`, up to the root (which may be included) | when `ca.pem` is an intermediate |
//! | `roots.pem` | the trust bundle | absent: the one root the chain ends at |
//!
//! ztunnel uses it only in development mode (`--dev-ca-dir`); the
//! controller's CA signs CSRs with it; the lab, the CLI and tests make
//! CAs and certificates, good and bad, with it.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::spiffe::SpiffeId;
use super::svid::{Svid, SvidError};

pub mod check;
pub mod rotate;

/// The file (and Secret key) names of a CA.
pub const CERT_FILE: &str = "ca.pem";
pub const KEY_FILE: &str = "ca-key.pem";
pub const CHAIN_FILE: &str = "ca-chain.pem";
pub const ROOTS_FILE: &str = "roots.pem";

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
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

impl CaError {
    fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        CaError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// A CA's parts in PEM, as kept in files or a Secret (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaPem {
    pub cert: String,
    pub key: String,
    pub chain: Option<String>,
    pub roots: Option<String>,
}

/// A CA: its signing certificate and key, the intermediates above it, and
/// the trust bundle.
pub struct Ca {
    trust_domain: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    pem: CaPem,
    /// Sent after the leaf: the signing certificate when it is no root,
    /// then the intermediates above it (roots left out).
    intermediates: Vec<CertificateDer<'static>>,
    roots: Vec<CertificateDer<'static>>,
    /// The roots of `roots` the signing chain reaches.
    signing_roots: Vec<CertificateDer<'static>>,
    /// The earliest expiry along the chain: no SVID outlives it.
    valid_until: SystemTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("intermediates", &self.intermediates.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

/// The parameters of a CA certificate for `trust_domain` named `cn`.
fn ca_params(
    trust_domain: &str,
    cn: &str,
    lifetime: Duration,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "quicmesh");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + lifetime).into();
    params.use_authority_key_identifier_extension = true;
    // The CA's SPIFFE ID: trust domain with no path, per the X509-SVID spec.
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
    Ok(params)
}

/// How long generated roots are valid.
pub const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86400);

impl Ca {
    /// A new self-signed root for `trust_domain`, valid for ten years.
    pub fn generate(trust_domain: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let cn = format!("quicmesh CA {trust_domain} {:08x}", rand::random::<u32>());
        let params = ca_params(trust_domain, &cn, ROOT_LIFETIME)?;
        let cert = params.self_signed(&key)?;
        Self::from_parts(
            trust_domain,
            &CaPem {
                cert: cert.pem(),
                key: key.serialize_pem(),
                chain: None,
                roots: None,
            },
        )
    }

    /// A new intermediate CA signed by this one, valid for `lifetime` (no
    /// longer than this CA): the chain above it is this CA's, and its trust
    /// bundle this CA's.
    pub fn issue_intermediate(&self, lifetime: Duration) -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let cn = format!(
            "quicmesh intermediate CA {} {:08x}",
            self.trust_domain,
            rand::random::<u32>()
        );
        let mut params = ca_params(&self.trust_domain, &cn, lifetime)?;
        let cap: time::OffsetDateTime = self.valid_until.into();
        params.not_after = params.not_after.min(cap);
        let cert = params.signed_by(&key, &self.issuer)?;
        // Above it: this CA and what is above this one (a root in there
        // is left out of what SVIDs carry).
        let chain = format!(
            "{}{}",
            self.pem.cert,
            self.pem.chain.as_deref().unwrap_or_default()
        );
        Self::from_parts(
            &self.trust_domain,
            &CaPem {
                cert: cert.pem(),
                key: key.serialize_pem(),
                chain: Some(chain),
                roots: Some(self.roots_pem()),
            },
        )
    }

    /// Loads the CA kept in `dir` (see the module doc for the files).
    pub fn load(trust_domain: &str, dir: &Path) -> Result<Self, CaError> {
        Self::from_parts(trust_domain, &CaPem::read(dir)?)
    }

    /// The CA from a certificate and key in PEM alone: the certificate must
    /// be a root, the trust bundle.
    pub fn from_pem(
        trust_domain: &str,
        cert_pem: String,
        key_pem: String,
    ) -> Result<Self, CaError> {
        Self::from_parts(
            trust_domain,
            &CaPem {
                cert: cert_pem,
                key: key_pem,
                chain: None,
                roots: None,
            },
        )
    }

    /// The CA from its parts, checked whole ([`check::parts`]).
    pub fn from_parts(trust_domain: &str, pem: &CaPem) -> Result<Self, CaError> {
        let checked = check::parts(trust_domain, pem, SystemTime::now())?;
        let issuer = Issuer::from_ca_cert_der(&checked.cert, checked.key)?;
        Ok(Ca {
            trust_domain: trust_domain.to_string(),
            cert_der: checked.cert,
            issuer,
            pem: pem.clone(),
            intermediates: checked.intermediates,
            roots: checked.roots,
            signing_roots: checked.signing_roots,
            valid_until: checked.valid_until,
        })
    }

    /// The same CA with `roots` as its trust bundle (checked again: the
    /// chain must still reach one of them).
    pub fn with_roots(&self, roots: &[CertificateDer<'_>]) -> Result<Self, CaError> {
        let mut pem = self.pem.clone();
        pem.roots = Some(roots.iter().map(|r| pem_block("CERTIFICATE", r)).collect());
        Self::from_parts(&self.trust_domain, &pem)
    }

    /// The signing key in PEM: a secret, for storing the CA only.
    pub fn key_pem(&self) -> &str {
        &self.pem.key
    }

    /// Everything kept of this CA.
    pub fn parts(&self) -> &CaPem {
        &self.pem
    }

    /// Loads the CA from `dir`, or generates one and writes it there.
    pub fn load_or_generate(trust_domain: &str, dir: &Path) -> Result<Self, CaError> {
        if dir.join(CERT_FILE).exists() {
            return Self::load(trust_domain, dir);
        }
        let ca = Self::generate(trust_domain)?;
        ca.save(dir)?;
        Ok(ca)
    }

    /// Writes the CA's files into `dir` (the optional ones only when it has
    /// them), each by an atomic rename.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        self.pem.write(dir)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The signing certificate.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The signing certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.pem.cert
    }

    /// The certificates sent after the leaf of every SVID (none when the
    /// signing certificate is a root).
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.intermediates
    }

    /// The trust bundle: every root of the trust domain.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The trust bundle in PEM.
    pub fn roots_pem(&self) -> String {
        self.roots
            .iter()
            .map(|r| pem_block("CERTIFICATE", r))
            .collect()
    }

    /// The roots of the bundle the signing chain reaches (what the SVIDs
    /// issued now verify against).
    pub fn signing_roots(&self) -> &[CertificateDer<'static>] {
        &self.signing_roots
    }

    /// When the first certificate of the signing chain expires: no SVID is
    /// issued past it.
    pub fn valid_until(&self) -> SystemTime {
        self.valid_until
    }

    /// Mints an SVID for `id` valid from now for `lifetime` (at most until
    /// the chain expires).
    pub fn mint(&self, id: &SpiffeId, lifetime: Duration) -> Result<Svid, CaError> {
        let now = SystemTime::now();
        // A minute of back-dating absorbs clock skew between nodes.
        self.mint_window(
            id,
            now - Duration::from_secs(60),
            (now + lifetime).min(self.valid_until),
        )
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
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.intermediates.iter().cloned());
        Ok(Svid::from_der(chain, key_der)?)
    }

    /// Signs a PKCS#10 CSR (PEM) for `lifetime` (at most until the chain
    /// expires). The identity is the CSR's single URI SAN; nothing else in
    /// the CSR is copied into the certificate. Returns the identity and the
    /// leaf (DER); [`Ca::intermediates`] go after it.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        lifetime: Duration,
    ) -> Result<(SpiffeId, CertificateDer<'static>), CaError> {
        let id = csr_identity(csr_pem)?;
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let now = SystemTime::now();
        let params = leaf_params(
            &id,
            now - Duration::from_secs(60),
            (now + lifetime).min(self.valid_until),
        )?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok((id, cert.der().clone()))
    }
}

impl CaPem {
    /// Reads the CA files of `dir`; the optional ones may be absent.
    pub fn read(dir: &Path) -> Result<Self, CaError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| CaError::Io {
                path: path.display().to_string(),
                source,
            })
        };
        let optional = |name: &str| match read(name) {
            Err(CaError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            other => other.map(Some),
        };
        Ok(CaPem {
            cert: read(CERT_FILE)?,
            key: read(KEY_FILE)?,
            chain: optional(CHAIN_FILE)?,
            roots: optional(ROOTS_FILE)?,
        })
    }

    /// Writes the parts into `dir`, each by an atomic rename; an optional
    /// part that is absent removes its file.
    pub fn write(&self, dir: &Path) -> Result<(), CaError> {
        let io = |path: &Path, source| CaError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        // The key first and the certificate last: a reader that sees the
        // new certificate sees its key.
        write_atomic(&dir.join(KEY_FILE), self.key.as_bytes(), true)
            .map_err(|e| io(&dir.join(KEY_FILE), e))?;
        for (name, part) in [(CHAIN_FILE, &self.chain), (ROOTS_FILE, &self.roots)] {
            let path = dir.join(name);
            match part {
                Some(text) => write_atomic(&path, text.as_bytes(), false),
                None => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                },
            }
            .map_err(|e| io(&path, e))?;
        }
        write_atomic(&dir.join(CERT_FILE), self.cert.as_bytes(), false)
            .map_err(|e| io(&dir.join(CERT_FILE), e))
    }
}

/// Writes `path` by renaming a temporary file over it (owner-only when
/// `private`): a reader sees the old contents or the new, never half.
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    if private {
        write_private(&tmp, data)?;
    } else {
        std::fs::write(&tmp, data)?;
    }
    let f = std::fs::File::open(&tmp)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
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
pub(crate) fn leaf_params(
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
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), lf)
}

/// A certificate in PEM (LF line endings, as the CA's files have them).
pub fn certificate_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

/// A certificate's SHA-256 fingerprint (hex, the first 16 bytes): how logs,
/// metrics and `/status` name a root or a signing certificate.
pub fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der).as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
