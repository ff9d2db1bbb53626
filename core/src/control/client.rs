//! The client side of the controller's services: a TLS channel that
//! verifies the controller's SPIFFE ID, and certificate signing by its CA.
//!
//! The controller is reached over TLS; its certificate must prove the
//! configured controller identity, chained to the mesh's trust bundle. CSRs
//! are authenticated with the node's bootstrap token; the config stream
//! ([`super::stream`]) with the caller's certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quicmesh_proto::ca::certificate_authority_client::CertificateAuthorityClient;
use quicmesh_proto::ca::CreateCertificateRequest;
use tonic::transport::{Channel, Endpoint};

use crate::identity::ca::new_csr;
use crate::identity::svid::certs_from_pem;
use crate::identity::verify::ServerVerifier;
use crate::identity::{SpiffeId, Svid, TrustBundles};
use crate::metrics::TlsMetrics;

/// How to reach the controller, and who it must be.
pub struct ControllerClient {
    pub addr: SocketAddr,
    pub identity: SpiffeId,
    pub bundles: Arc<TrustBundles>,
    pub token: String,
    pub node: String,
    pub tls_metrics: Arc<TlsMetrics>,
}

impl ControllerClient {
    /// A channel to the controller, presenting `client_cert` when given.
    pub fn channel(&self, client_cert: Option<&Svid>) -> Result<Channel, String> {
        let provider = crate::crypto_provider();
        let verifier = ServerVerifier::new(
            self.bundles.clone(),
            self.identity.clone(),
            provider.clone(),
            self.tls_metrics.clone(),
        );
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut cfg = match client_cert {
            Some(svid) => builder
                .with_client_auth_cert(svid.chain.clone(), svid.clone_key())
                .map_err(|e| e.to_string())?,
            None => builder.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let addr = self.addr;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        Ok(
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_uri| {
                let connector = connector.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(addr).await?;
                    tcp.set_nodelay(true)?;
                    // The name is not checked (the verifier checks the SPIFFE ID).
                    let name = rustls_pki_types::ServerName::try_from("controller.quicmesh")
                        .expect("static name");
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            })),
        )
    }

    /// Asks the CA for an SVID for `id`.
    pub async fn sign(&self, id: &SpiffeId, ttl: Option<Duration>) -> Result<Svid, String> {
        let (csr, key) = new_csr(id).map_err(|e| e.to_string())?;
        let mut client = CertificateAuthorityClient::new(self.channel(None)?);
        let mut req = tonic::Request::new(CreateCertificateRequest {
            csr,
            ttl_seconds: ttl.map(|d| d.as_secs()).unwrap_or(0),
        });
        let bearer = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| "the bootstrap token is not a valid header value".to_string())?;
        req.metadata_mut().insert("authorization", bearer);
        let resp = tokio::time::timeout(Duration::from_secs(10), client.create_certificate(req))
            .await
            .map_err(|_| "the CA did not answer within 10 s".to_string())?
            .map_err(|s| format!("the CA refused: {}: {}", s.code(), s.message()))?
            .into_inner();
        let mut chain = Vec::new();
        for pem in &resp.cert_chain {
            chain.extend(certs_from_pem(pem.as_bytes(), "CA response").map_err(|e| e.to_string())?);
        }
        let svid = Svid::from_der(chain, key).map_err(|e| e.to_string())?;
        if &svid.id != id {
            return Err(format!("the CA issued {} for a CSR for {id}", svid.id));
        }
        Ok(svid)
    }

    /// The node's own identity, checked (the node name is a flag).
    pub fn node_identity_checked(&self) -> Result<SpiffeId, crate::identity::SpiffeIdError> {
        SpiffeId::node(self.identity.trust_domain(), &self.node)
    }

    /// The node's own identity; the name was checked at start.
    pub fn node_identity(&self) -> SpiffeId {
        self.node_identity_checked()
            .expect("node name validated at start")
    }
}
