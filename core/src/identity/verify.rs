//! rustls certificate verifiers for SPIFFE peers, both directions.
//!
//! A peer is accepted only when: its leaf carries exactly one URI SAN and it is
//! a valid SPIFFE ID; the chain verifies against the trust bundle of *that ID's*
//! trust domain (so a federated domain's CA can never vouch for ours); and the
//! ID is the one expected (we are the client) or allowed (we are the server).
//! TLS 1.3 only. Every refusal is logged with its reason and counted.
//!
//! The verifiers hold [`SharedBundles`] and read the bundles in effect at
//! each handshake, so a replaced bundle applies from the next handshake on.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::bundles::SharedBundles;
use super::spiffe::SpiffeId;
use super::svid::{cert_info, SvidError, TrustBundles};
use crate::metrics::TlsMetrics;

/// Why a peer certificate was refused. `label()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("peer certificate is not a SPIFFE SVID: {0}")]
    NotSvid(String),
    #[error("no trust bundle for the peer's trust domain {0:?}")]
    UnknownTrustDomain(String),
    #[error("peer certificate has expired")]
    Expired,
    #[error("peer certificate is not yet valid")]
    NotYetValid,
    #[error("peer certificate chain does not verify against the trust bundle: {0}")]
    UntrustedChain(String),
    #[error("peer is {got}, expected {expected}")]
    UnexpectedIdentity { expected: SpiffeId, got: SpiffeId },
    #[error("peer identity {0} is not allowed")]
    NotAllowed(SpiffeId),
}

impl Refusal {
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NotSvid(_) => "not_svid",
            Refusal::UnknownTrustDomain(_) => "unknown_trust_domain",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::UntrustedChain(_) => "untrusted_chain",
            Refusal::UnexpectedIdentity { .. } => "unexpected_identity",
            Refusal::NotAllowed(_) => "not_allowed",
        }
    }
}

/// Which side of the handshake we are, for logs and metrics.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// We are the server and verify a client.
    Server,
    /// We are the client and verify a server.
    Client,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// Checks a peer's chain and returns its SPIFFE ID. Pure apart from the clock.
pub fn verify_peer_chain(
    bundles: &TrustBundles,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    side: Side,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<SpiffeId, Refusal> {
    let info = cert_info(end_entity).map_err(|e: SvidError| Refusal::NotSvid(e.to_string()))?;
    let anchors = bundles
        .get(info.id.trust_domain())
        .ok_or_else(|| Refusal::UnknownTrustDomain(info.id.trust_domain().to_string()))?;
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| Refusal::NotSvid(format!("{e:?}")))?;
    // Our peer is a server when we are the client, and vice versa.
    let usage = match side {
        Side::Client => webpki::KeyUsage::server_auth(),
        Side::Server => webpki::KeyUsage::client_auth(),
    };
    cert.verify_for_usage(algs.all, anchors, intermediates, now, usage, None, None)
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } => Refusal::Expired,
            webpki::Error::CertNotValidYet { .. } => Refusal::NotYetValid,
            other => Refusal::UntrustedChain(format!("{other:?}")),
        })?;
    Ok(info.id)
}

fn to_rustls_error(r: &Refusal) -> rustls::Error {
    use rustls::CertificateError as C;
    rustls::Error::InvalidCertificate(match r {
        Refusal::Expired => C::Expired,
        Refusal::NotYetValid => C::NotValidYet,
        Refusal::UnknownTrustDomain(_) | Refusal::UntrustedChain(_) => C::UnknownIssuer,
        Refusal::UnexpectedIdentity { .. } | Refusal::NotAllowed(_) => {
            C::ApplicationVerificationFailure
        }
        Refusal::NotSvid(_) => C::BadEncoding,
    })
}

fn refuse(metrics: &TlsMetrics, side: Side, r: Refusal) -> rustls::Error {
    tracing::warn!(side = side.label(), reason = r.label(), error = %r, "refused peer certificate");
    metrics.refused(side.label(), r.label());
    to_rustls_error(&r)
}

/// Verifies the server when we are the client: the server must prove exactly
/// the identity we expect at that address.
#[derive(Debug)]
pub struct ServerVerifier {
    bundles: SharedBundles,
    expected: SpiffeId,
    provider: Arc<CryptoProvider>,
    metrics: Arc<TlsMetrics>,
}

impl ServerVerifier {
    pub fn new(
        bundles: impl Into<SharedBundles>,
        expected: SpiffeId,
        provider: Arc<CryptoProvider>,
        metrics: Arc<TlsMetrics>,
    ) -> Self {
        Self {
            bundles: bundles.into(),
            expected,
            provider,
            metrics,
        }
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let side = Side::Client;
        let got = verify_peer_chain(
            &self.bundles.load(),
            end_entity,
            intermediates,
            now,
            side,
            &self.provider.signature_verification_algorithms,
        )
        .map_err(|r| refuse(&self.metrics, side, r))?;
        if got != self.expected {
            let r = Refusal::UnexpectedIdentity {
                expected: self.expected.clone(),
                got,
            };
            return Err(refuse(&self.metrics, side, r));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Decides which client identities a server accepts.
pub type AllowFn = dyn Fn(&SpiffeId) -> bool + Send + Sync;

/// Verifies the client when we are the server. A certificate is mandatory.
pub struct ClientVerifier {
    bundles: SharedBundles,
    allow: Box<AllowFn>,
    /// When false a client may present no certificate (the controller's CA
    /// accepts bootstrap calls authenticated by token instead).
    mandatory: bool,
    provider: Arc<CryptoProvider>,
    metrics: Arc<TlsMetrics>,
}

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientVerifier").finish_non_exhaustive()
    }
}

impl ClientVerifier {
    pub fn new(
        bundles: impl Into<SharedBundles>,
        allow: Box<AllowFn>,
        provider: Arc<CryptoProvider>,
        metrics: Arc<TlsMetrics>,
    ) -> Self {
        Self {
            bundles: bundles.into(),
            allow,
            mandatory: true,
            provider,
            metrics,
        }
    }

    /// Lets clients connect without a certificate; one that presents a
    /// certificate is still verified.
    pub fn optional(mut self) -> Self {
        self.mandatory = false;
        self
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let side = Side::Server;
        let got = verify_peer_chain(
            &self.bundles.load(),
            end_entity,
            intermediates,
            now,
            side,
            &self.provider.signature_verification_algorithms,
        )
        .map_err(|r| refuse(&self.metrics, side, r))?;
        if !(self.allow)(&got) {
            return Err(refuse(&self.metrics, side, Refusal::NotAllowed(got)));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ca::Ca;
    use std::time::{Duration, SystemTime};

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn setup() -> (Ca, Arc<TrustBundles>, Arc<CryptoProvider>) {
        let ca = Ca::generate("cluster.local").unwrap();
        let mut b = TrustBundles::new();
        b.insert("cluster.local", &[ca.cert_der().clone()]).unwrap();
        (
            ca,
            Arc::new(b),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn accepts_expected_server_and_refuses_others() {
        let (ca, bundles, provider) = setup();
        let metrics = Arc::new(TlsMetrics::default());
        let want = id("spiffe://cluster.local/ns/a/sa/server");
        let svid = ca.mint(&want, Duration::from_secs(3600)).unwrap();
        let v = ServerVerifier::new(
            bundles.clone(),
            want.clone(),
            provider.clone(),
            metrics.clone(),
        );
        let name = ServerName::try_from("x").unwrap();
        v.verify_server_cert(&svid.chain[0], &[], &name, &[], now())
            .expect("expected identity accepted");

        let other = ca
            .mint(
                &id("spiffe://cluster.local/ns/a/sa/impostor"),
                Duration::from_secs(3600),
            )
            .unwrap();
        assert!(v
            .verify_server_cert(&other.chain[0], &[], &name, &[], now())
            .is_err());
        assert_eq!(metrics.count("client", "unexpected_identity"), 1);
    }

    #[test]
    fn refuses_foreign_ca_expired_and_unknown_domain() {
        let (ca, bundles, provider) = setup();
        let algs = &provider.signature_verification_algorithms;
        let who = id("spiffe://cluster.local/ns/a/sa/client");

        let foreign = Ca::generate("cluster.local").unwrap();
        let svid = foreign.mint(&who, Duration::from_secs(3600)).unwrap();
        let r = verify_peer_chain(&bundles, &svid.chain[0], &[], now(), Side::Server, algs);
        assert!(matches!(r, Err(Refusal::UntrustedChain(_))), "{r:?}");

        let past = SystemTime::now() - Duration::from_secs(7200);
        let expired = ca
            .mint_window(&who, past, past + Duration::from_secs(60))
            .unwrap();
        let r = verify_peer_chain(&bundles, &expired.chain[0], &[], now(), Side::Server, algs);
        assert_eq!(r, Err(Refusal::Expired));

        let fed = Ca::generate("other.example").unwrap();
        let svid = fed
            .mint(
                &id("spiffe://other.example/ns/a/sa/b"),
                Duration::from_secs(60),
            )
            .unwrap();
        let r = verify_peer_chain(&bundles, &svid.chain[0], &[], now(), Side::Server, algs);
        assert_eq!(r, Err(Refusal::UnknownTrustDomain("other.example".into())));
    }

    #[test]
    fn a_domain_ca_cannot_vouch_for_another_domain() {
        // other.example's CA is trusted for other.example only; a certificate
        // it signs for cluster.local must be refused.
        let (_ca, bundles, provider) = setup();
        let fed = Ca::generate("other.example").unwrap();
        let mut b = (*bundles).clone();
        b.insert("other.example", &[fed.cert_der().clone()])
            .unwrap();
        let forged = fed
            .mint(
                &id("spiffe://cluster.local/ns/a/sa/b"),
                Duration::from_secs(60),
            )
            .unwrap();
        let r = verify_peer_chain(
            &b,
            &forged.chain[0],
            &[],
            now(),
            Side::Server,
            &provider.signature_verification_algorithms,
        );
        assert!(matches!(r, Err(Refusal::UntrustedChain(_))), "{r:?}");
    }

    #[test]
    fn client_verifier_applies_allow_list() {
        let (ca, bundles, provider) = setup();
        let metrics = Arc::new(TlsMetrics::default());
        let good = id("spiffe://cluster.local/ns/a/sa/good");
        let allowed = good.clone();
        let v = ClientVerifier::new(
            bundles,
            Box::new(move |p| *p == allowed),
            provider,
            metrics.clone(),
        );
        let svid = ca.mint(&good, Duration::from_secs(60)).unwrap();
        v.verify_client_cert(&svid.chain[0], &[], now()).unwrap();
        let bad = ca
            .mint(
                &id("spiffe://cluster.local/ns/a/sa/bad"),
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(v.verify_client_cert(&bad.chain[0], &[], now()).is_err());
        assert_eq!(metrics.count("server", "not_allowed"), 1);
    }

    #[test]
    fn csr_signing_takes_only_the_identity_from_the_csr() {
        let (ca, bundles, provider) = setup();
        let want = id("spiffe://cluster.local/ns/a/sa/b");
        let (csr, _key) = crate::identity::ca::new_csr(&want).unwrap();
        assert_eq!(crate::identity::ca::csr_identity(&csr).unwrap(), want);
        let (got, cert) = ca.sign_csr(&csr, Duration::from_secs(60)).unwrap();
        assert_eq!(got, want);
        let verified = verify_peer_chain(
            &bundles,
            &cert,
            &[],
            now(),
            Side::Server,
            &provider.signature_verification_algorithms,
        );
        assert_eq!(verified, Ok(want));
        let info = crate::identity::svid::cert_info(&cert).unwrap();
        let life = info.not_after.duration_since(info.not_before).unwrap();
        assert!(life <= Duration::from_secs(121), "{life:?}");
    }

    #[test]
    fn certificate_without_uri_san_is_not_an_svid() {
        let (_ca, bundles, provider) = setup();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["example.com".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let r = verify_peer_chain(
            &bundles,
            cert.der(),
            &[],
            now(),
            Side::Client,
            &provider.signature_verification_algorithms,
        );
        assert!(matches!(r, Err(Refusal::NotSvid(_))), "{r:?}");
    }
}
