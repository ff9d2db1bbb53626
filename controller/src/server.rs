//! The controller's gRPC endpoint (15012): TLS with the controller's own
//! short-lived SVID, renewed in place; client certificates optional (bootstrap CSRs come with a token) but
//! verified when presented; the CA and the config stream on one port.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::ca::rotation::CurrentCa;
use quicmesh_core::identity::ca::Ca;
use quicmesh_core::identity::verify::ClientVerifier;
use quicmesh_core::identity::{SharedBundles, SpiffeId};
use quicmesh_core::metrics::TlsMetrics;
use quicmesh_proto::ca::certificate_authority_server::CertificateAuthorityServer;
use quicmesh_proto::config::config_stream_server::ConfigStreamServer;
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::ca::CaService;
use crate::push::ConfigService;

/// The controller's own serving certificate: short-lived, minted by its own
/// CA, and replaced halfway through its life ([`OwnCert::renew`]) without
/// touching the connections open; reissued at once by a new signing CA.
pub struct OwnCert {
    ca: Arc<CurrentCa>,
    id: SpiffeId,
    ttl: Duration,
    current: RwLock<(Arc<CertifiedKey>, SystemTime)>,
}

impl std::fmt::Debug for OwnCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnCert").field("id", &self.id).finish()
    }
}

impl OwnCert {
    /// Mints the first certificate for `id`, valid for `ttl`.
    pub fn new(ca: Arc<CurrentCa>, id: SpiffeId, ttl: Duration) -> anyhow::Result<Self> {
        let current = RwLock::new(Self::mint(&ca.signer(), &id, ttl)?);
        Ok(OwnCert {
            ca,
            id,
            ttl,
            current,
        })
    }

    fn mint(
        ca: &Ca,
        id: &SpiffeId,
        ttl: Duration,
    ) -> anyhow::Result<(Arc<CertifiedKey>, SystemTime)> {
        let svid = ca.mint(id, ttl)?;
        let renew_at = svid.refresh_at(SystemTime::now());
        let key = quicmesh_core::crypto_provider()
            .key_provider
            .load_private_key(svid.clone_key())?;
        Ok((Arc::new(CertifiedKey::new(svid.chain, key)), renew_at))
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("not poisoned").0.clone()
    }

    /// Replaces the certificate halfway through its life, and at once when
    /// the signing CA changes, for ever. A failed mint (it cannot, short of
    /// a broken CA key) is retried.
    pub async fn renew(self: Arc<Self>) {
        let mut changes = self.ca.subscribe();
        let mut signer = quicmesh_core::identity::ca::fingerprint(self.ca.signer().cert_der());
        loop {
            let at = self.current.read().expect("not poisoned").1;
            let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
            let reason = tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_secs(1))) => "half-life",
                r = changes.changed() => {
                    if r.is_err() {
                        // The CA is gone: renew at half-life only.
                        changes = tokio::sync::watch::channel(0).1;
                    }
                    let now = quicmesh_core::identity::ca::fingerprint(self.ca.signer().cert_der());
                    if now == signer {
                        continue;
                    }
                    signer = now;
                    "new signing CA"
                }
            };
            match Self::mint(&self.ca.signer(), &self.id, self.ttl) {
                Ok(next) => {
                    tracing::info!(identity = %self.id, ttl_s = self.ttl.as_secs(), %reason, signer = %signer, "serving certificate renewed");
                    *self.current.write().expect("not poisoned") = next;
                }
                Err(e) => {
                    tracing::error!(identity = %self.id, error = %e, "serving certificate not renewed; retrying");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }
        }
    }
}

impl ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

pub fn tls_acceptor(
    cert: Arc<OwnCert>,
    bundles: SharedBundles,
    metrics: Arc<TlsMetrics>,
) -> anyhow::Result<TlsAcceptor> {
    let provider = quicmesh_core::crypto_provider();
    let verifier =
        ClientVerifier::new(bundles, Box::new(|_| true), provider.clone(), metrics).optional();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(cert);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves both gRPC services on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    ca: CaService,
    config: ConfigService,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "gRPC (CA, config stream) listening");
    let incoming =
        quicmesh_core::control::incoming::tls_incoming(listener, acceptor, Duration::from_secs(10));
    tonic::transport::Server::builder()
        .add_service(CertificateAuthorityServer::new(ca))
        .add_service(ConfigStreamServer::new(config))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmesh_core::identity::svid::cert_info;

    /// The serving certificate is short-lived and replaced at half-life,
    /// for the same identity, each valid longer than the last.
    #[tokio::test]
    async fn the_serving_certificate_is_renewed_at_half_life() {
        let ca = Arc::new(
            CurrentCa::new(
                Ca::generate("cluster.local").unwrap(),
                crate::store::Store::new("cluster.local"),
                Duration::from_secs(60),
            )
            .unwrap(),
        );
        let id = SpiffeId::workload("cluster.local", "quicmesh-system", "controller").unwrap();
        let own = Arc::new(OwnCert::new(ca, id.clone(), Duration::from_secs(4)).unwrap());
        let first = cert_info(&own.current().cert[0]).unwrap();
        assert_eq!(first.id, id);
        let lifetime = first.not_after.duration_since(SystemTime::now()).unwrap();
        assert!(lifetime <= Duration::from_secs(4), "{lifetime:?}");
        tokio::spawn(own.clone().renew());
        let renewed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let now = cert_info(&own.current().cert[0]).unwrap();
                if now.not_after > first.not_after {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("renewed within 20 s");
        assert_eq!(renewed.id, id);
    }
}
