//! The client side of the controller's services: a TLS channel that
//! verifies the controller's SPIFFE ID, and certificate signing by its CA.
//!
//! The controller is reached over TLS; its certificate must prove the
//! configured controller identity, chained to the mesh's trust bundle. CSRs
//! are authenticated with the node's bootstrap token; the config stream
//! ([`super::stream`]) with the caller's certificate.
//!
//! The bootstrap bundle (`--trust-bundle`) is only the anchor to reach the
//! controller the first time: each CA answer carries the mesh's current
//! roots, and they replace the mesh domain's bundle in [`SharedBundles`]
//! (tunnels and this client's own channel alike) once they vouch for the
//! certificate issued with them. A bundle that is too large or not PEM is
//! ignored (logged, counted; the previous one stays, the certificate is
//! taken); a well-formed one that does not vouch for the certificate sent
//! with it makes the whole answer refused (the CA contradicts itself).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quicmesh_proto::ca::certificate_authority_client::CertificateAuthorityClient;
use quicmesh_proto::ca::CreateCertificateRequest;
use tonic::transport::{Channel, Endpoint};

use crate::identity::bundles::{roots_from_ca, CaBundleError};
use crate::identity::ca::new_csr;
use crate::identity::svid::certs_from_pem;
use crate::identity::verify::ServerVerifier;
use crate::identity::{SharedBundles, SpiffeId, Svid};
use crate::metrics::TlsMetrics;

/// How to reach the controller, and who it must be.
pub struct ControllerClient {
    /// `host:port`: an address, or a DNS name (a Service's) resolved on
    /// every (re)connect.
    pub addr: ControllerAddr,
    pub identity: SpiffeId,
    /// Verifies the controller; the same bundles as the proxy's tunnels
    /// (the CA's answers replace the mesh domain's roots in them).
    pub bundles: SharedBundles,
    /// The credential for the CA.
    pub token: Token,
    pub node: String,
    pub tls_metrics: Arc<TlsMetrics>,
}

/// The bearer token for the CA.
#[derive(Debug, Clone)]
pub enum Token {
    Fixed(String),
    /// Read again for every request: a projected service-account token is
    /// replaced by the kubelet before it expires.
    File(std::path::PathBuf),
}

impl Token {
    /// A file token, checked readable and non-empty now (a mistake shows
    /// at start, not at the first certificate).
    pub fn file(path: &std::path::Path) -> Result<Self, String> {
        let t = Token::File(path.to_path_buf());
        t.read()?;
        Ok(t)
    }

    pub fn read(&self) -> Result<String, String> {
        let t = match self {
            Token::Fixed(t) => t.clone(),
            Token::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("reading the token {}: {e}", p.display()))?
                .trim()
                .to_string(),
        };
        if t.is_empty() {
            return Err("the bootstrap token is empty".into());
        }
        Ok(t)
    }
}

/// Where the controller is: `ip:port`, `[ipv6]:port` or `name:port`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ControllerAddr(String);

impl std::str::FromStr for ControllerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.parse::<SocketAddr>().is_ok() {
            return Ok(ControllerAddr(s.to_string()));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected host:port"))?;
        port.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?}: {port:?} is not a port"))?;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
            return Err(format!(
                "{s:?}: {host:?} is neither an IP address nor a DNS name"
            ));
        }
        Ok(ControllerAddr(s.to_string()))
    }
}

impl std::fmt::Display for ControllerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<SocketAddr> for ControllerAddr {
    fn from(a: SocketAddr) -> Self {
        ControllerAddr(a.to_string())
    }
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
        let addr = self.addr.clone();
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        Ok(
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_uri| {
                let (connector, addr) = (connector.clone(), addr.clone());
                async move {
                    let tcp = tokio::net::TcpStream::connect(addr.0.as_str()).await?;
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
        let bearer = format!("Bearer {}", self.token.read()?)
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
        self.adopt_trust_bundle(&svid, &resp.trust_bundle)?;
        Ok(svid)
    }

    /// Makes the CA's `bundle` (PEM), sent with `svid`, the bundle of the
    /// mesh's trust domain, if it vouches for `svid`. An error refuses the
    /// answer; a merely unusable bundle is ignored.
    fn adopt_trust_bundle(&self, svid: &Svid, bundle: &str) -> Result<(), String> {
        // A CA that sends no bundle leaves ours as it is.
        if bundle.is_empty() {
            return Ok(());
        }
        let domain = svid.id.trust_domain();
        let now = rustls_pki_types::UnixTime::now();
        let counted = |result: &str| self.tls_metrics.bundle_update(result);
        match roots_from_ca(bundle.as_bytes(), &svid.chain, now) {
            Ok(roots) => match self.bundles.replace_domain(domain, &roots) {
                Ok(true) => {
                    tracing::info!(
                        trust_domain = domain,
                        roots = roots.len(),
                        "trust bundle replaced by the CA's"
                    );
                    counted("replaced");
                }
                Ok(false) => counted("unchanged"),
                Err(e) => {
                    tracing::warn!(trust_domain = domain, error = %e, "the CA's trust bundle is unusable; keeping the previous one");
                    counted("malformed");
                }
            },
            Err(e @ CaBundleError::Malformed(_)) => {
                tracing::warn!(trust_domain = domain, error = %e, "keeping the previous trust bundle");
                counted("malformed");
            }
            Err(e @ CaBundleError::DoesNotVouch(_)) => {
                tracing::warn!(trust_domain = domain, identity = %svid.id, error = %e, "CA answer refused; keeping the previous trust bundle");
                counted("untrusted");
                return Err(e.to_string());
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests;
