//! ztunnel's side of the controller: certificates from its CA, and the
//! config stream.
//!
//! The controller is reached over TLS; its certificate must prove the
//! configured controller identity, chained to the mesh's trust bundle. CSRs
//! are authenticated with the node's bootstrap token. The config stream is
//! authenticated with the node certificate (`spiffe://<td>/quicmesh/node/<node>`).
//! When the stream breaks ztunnel keeps serving its last good config and
//! reconnects with backoff.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quicmesh_core::identity::ca::new_csr;
use quicmesh_core::identity::svid::certs_from_pem;
use quicmesh_core::identity::verify::ServerVerifier;
use quicmesh_core::identity::{SpiffeId, Svid, TrustBundles};
use quicmesh_core::metrics::TlsMetrics;
use quicmesh_proto::ca::certificate_authority_client::CertificateAuthorityClient;
use quicmesh_proto::ca::CreateCertificateRequest;
use quicmesh_proto::config::config_stream_client::ConfigStreamClient;
use quicmesh_proto::config::{Ack, Resource, Update};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

use crate::app::Shared;
use crate::state::State;

pub struct ControllerClient {
    pub addr: SocketAddr,
    pub identity: SpiffeId,
    pub bundles: Arc<TrustBundles>,
    pub token: String,
    pub node: String,
    pub tls_metrics: Arc<TlsMetrics>,
}

impl ControllerClient {
    fn channel(&self, client_cert: Option<&Svid>) -> Result<Channel, String> {
        let provider = quicmesh_core::crypto_provider();
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

    pub fn node_identity_checked(
        &self,
    ) -> Result<SpiffeId, quicmesh_core::identity::SpiffeIdError> {
        SpiffeId::parse(&format!(
            "spiffe://{}/quicmesh/node/{}",
            self.identity.trust_domain(),
            self.node
        ))
    }

    pub fn node_identity(&self) -> SpiffeId {
        self.node_identity_checked()
            .expect("node name validated at start")
    }
}

/// Follows the config stream forever: applies updates to `shared`'s state,
/// ACKs or NACKs them, reconnects with backoff.
pub async fn follow(client: Arc<ControllerClient>, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(200);
    let mut resources: BTreeMap<String, Resource> = BTreeMap::new();
    loop {
        let mut connected = false;
        match session(&client, &shared, &mut resources, &mut connected).await {
            Ok(()) => tracing::info!("config stream closed by the controller"),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "config stream failed; serving the last good config")
            }
        }
        shared.metrics.config_connected.set(0);
        if connected {
            backoff = Duration::from_millis(200);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn session(
    client: &ControllerClient,
    shared: &Arc<Shared>,
    resources: &mut BTreeMap<String, Resource>,
    connected: &mut bool,
) -> Result<(), String> {
    let node_id = client.node_identity();
    let node_svid = shared
        .certs
        .svid(&node_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut grpc = ConfigStreamClient::new(client.channel(Some(&node_svid))?);
    let (tx, rx) = mpsc::channel::<Ack>(16);
    tx.send(Ack {
        nonce: String::new(),
        error: String::new(),
        version: shared.state().version,
    })
    .await
    .map_err(|_| "ack channel closed")?;
    let mut updates = grpc
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?
        .into_inner();
    tracing::info!(controller = %client.addr, "config stream connected");
    *connected = true;
    shared.metrics.config_connected.set(1);
    while let Some(u) = updates.next().await {
        let u = u.map_err(|s| format!("{}: {}", s.code(), s.message()))?;
        let ack = apply(u, shared, resources);
        tx.send(ack).await.map_err(|_| "ack channel closed")?;
    }
    Ok(())
}

/// Applies one update; a bad one is rejected whole and the state stays.
fn apply(u: Update, shared: &Shared, resources: &mut BTreeMap<String, Resource>) -> Ack {
    let mut next = if u.full {
        BTreeMap::new()
    } else {
        resources.clone()
    };
    for name in &u.removed {
        next.remove(name);
    }
    for r in u.resources {
        next.insert(r.name.clone(), r);
    }
    let trust_domain = shared.state().trust_domain.clone();
    match State::from_resources(&trust_domain, u.version, &next) {
        Ok(state) => {
            *resources = next;
            shared.set_state(state);
            shared.metrics.config_updates("ack");
            tracing::debug!(version = u.version, full = u.full, "config applied");
            Ack {
                nonce: u.nonce,
                error: String::new(),
                version: u.version,
            }
        }
        Err(e) => {
            tracing::warn!(version = u.version, reason = %e, "config update rejected (NACK); keeping the previous config");
            shared.metrics.config_updates("nack");
            Ack {
                nonce: u.nonce,
                error: e,
                version: shared.state().version,
            }
        }
    }
}
