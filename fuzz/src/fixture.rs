//! What the certificate target verifies against: a CA made by
//! `Ca::generate` (new in every process, so the committed seeds exercise the
//! verified path through edit mode, not through stored DER), a second trust
//! domain's CA, an SVID of the first, and the two rustls verifiers.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::verify::{ClientVerifier, ServerVerifier};
use quicmesh_core::identity::{SpiffeId, Svid, TrustBundles};
use quicmesh_core::metrics::TlsMetrics;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::UnixTime;

pub const TRUST_DOMAIN: &str = "cluster.local";
pub const FEDERATED_DOMAIN: &str = "other.example";
pub const PEER: &str = "spiffe://cluster.local/ns/fuzz/sa/peer";

pub struct Fixture {
    pub ca: Ca,
    pub federated: Ca,
    pub svid: Svid,
    pub bundles: Arc<TrustBundles>,
    pub provider: Arc<CryptoProvider>,
    /// The verification time, whole seconds (as certificates count it).
    pub now: UnixTime,
    pub now_system: SystemTime,
    /// We are the client: the server must be [`PEER`].
    pub server_verifier: ServerVerifier,
    /// We are the server: any client of [`TRUST_DOMAIN`].
    pub client_verifier: ClientVerifier,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = Ca::generate(TRUST_DOMAIN).expect("CA");
        let federated = Ca::generate(FEDERATED_DOMAIN).expect("federated CA");
        let id = SpiffeId::parse(PEER).expect("peer ID");
        let svid = ca
            .mint(&id, Duration::from_secs(10 * 365 * 86400))
            .expect("SVID");
        let mut bundles = TrustBundles::new();
        bundles
            .insert(TRUST_DOMAIN, &[ca.cert_der().clone()])
            .expect("bundle");
        bundles
            .insert(FEDERATED_DOMAIN, &[federated.cert_der().clone()])
            .expect("federated bundle");
        let bundles = Arc::new(bundles);
        let provider = quicmesh_core::crypto_provider();
        let metrics = Arc::new(TlsMetrics::default());
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let server_verifier =
            ServerVerifier::new(bundles.clone(), id, provider.clone(), metrics.clone());
        let client_verifier = ClientVerifier::new(
            bundles.clone(),
            Box::new(|id| id.trust_domain() == TRUST_DOMAIN),
            provider.clone(),
            metrics,
        );
        Fixture {
            ca,
            federated,
            svid,
            bundles,
            provider,
            now: UnixTime::since_unix_epoch(Duration::from_secs(secs)),
            now_system: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            server_verifier,
            client_verifier,
        }
    })
}
