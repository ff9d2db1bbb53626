//! The certificate authority service: a CSR in, an SVID out, authenticated
//! per caller and authorized per node.
//!
//! - Authentication: `authorization: Bearer <token>` mapped to a node by an
//!   [`Authenticator`] (file mode: the per-node bootstrap tokens the lab
//!   provisions; Kubernetes: TokenReview), or a node certificate this CA
//!   issued earlier, presented as the TLS client certificate.
//! - Authorization: the node's own certificate ([`SpiffeId::node`]), or the
//!   identity of a pod scheduled on that node. Anything else is refused with
//!   a logged reason and counted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use quicmesh_core::identity::ca::{csr_identity, Ca};
use quicmesh_core::identity::svid::cert_info;
use quicmesh_core::identity::SpiffeId;
use quicmesh_proto::ca::certificate_authority_server::CertificateAuthority;
use quicmesh_proto::ca::{CreateCertificateRequest, CreateCertificateResponse};
use tonic::{Request, Response, Status};

use crate::store::Store;

/// The node named by the caller's TLS client certificate (already verified
/// against the trust bundle by the TLS layer); `missing` is the refusal when
/// there is none.
pub fn node_from_peer_cert<T>(req: &Request<T>, missing: &str) -> Result<String, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated(missing.to_string()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
    let id = cert_info(leaf)
        .map_err(|e| Status::unauthenticated(e.to_string()))?
        .id;
    id.node_name()
        .map(str::to_string)
        .ok_or_else(|| Status::permission_denied(format!("{id} is not a node identity")))
}

/// Maps a bearer token to the node it was issued for.
#[tonic::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn node_for_token(&self, token: &str) -> Result<String, String>;
}

/// File mode: a YAML map of node name to bootstrap token.
pub struct TokenFile {
    by_token: HashMap<String, String>,
}

impl TokenFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let map: HashMap<String, String> = serde_yaml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: expected a map of node name to token: {e}",
                path.display()
            )
        })?;
        Ok(TokenFile {
            by_token: map.into_iter().map(|(node, token)| (token, node)).collect(),
        })
    }
}

#[tonic::async_trait]
impl Authenticator for TokenFile {
    async fn node_for_token(&self, token: &str) -> Result<String, String> {
        self.by_token
            .get(token)
            .cloned()
            .ok_or_else(|| "unknown bootstrap token".to_string())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaLabels {
    pub result: String,
}

#[derive(Default)]
pub struct CaMetrics {
    pub requests: Family<CaLabels, Counter>,
}

impl CaMetrics {
    fn count(&self, result: &str) {
        self.requests
            .get_or_create(&CaLabels {
                result: result.into(),
            })
            .inc();
    }
}

pub struct CaService {
    pub ca: Arc<Ca>,
    pub store: Arc<Store>,
    pub auth: Arc<dyn Authenticator>,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub metrics: Arc<CaMetrics>,
}

impl CaService {
    /// Who is calling: the node named by its bearer token or its certificate.
    async fn caller<T>(&self, req: &Request<T>) -> Result<String, Status> {
        if let Some(v) = req.metadata().get("authorization") {
            let v = v
                .to_str()
                .map_err(|_| Status::unauthenticated("malformed authorization header"))?;
            let token = v
                .strip_prefix("Bearer ")
                .ok_or_else(|| Status::unauthenticated("authorization must be a Bearer token"))?;
            return self
                .auth
                .node_for_token(token)
                .await
                .map_err(Status::unauthenticated);
        }
        node_from_peer_cert(
            req,
            "no credentials: send a bearer token or a node certificate",
        )
    }

    /// Whether `node` may have a certificate for `id`. Pure over the index.
    pub fn authorize(&self, node: &str, id: &SpiffeId) -> Result<(), String> {
        if id.trust_domain() != self.store.trust_domain() {
            return Err(format!(
                "{id} is not in trust domain {}",
                self.store.trust_domain()
            ));
        }
        if let Some(n) = id.node_name() {
            return if n == node {
                Ok(())
            } else {
                Err(format!("node {node} asked for node {n}'s identity"))
            };
        }
        let (ns, sa) = id
            .namespace_and_service_account()
            .map_err(|e| format!("{id}: {e}"))?;
        let scheduled = self.store.with_index(|ix| {
            ix.pods().any(|p| {
                p.namespace == ns && p.service_account == sa && p.node.as_deref() == Some(node)
            })
        });
        if scheduled {
            Ok(())
        } else {
            Err(format!(
                "no pod with identity {id} is scheduled on node {node}"
            ))
        }
    }
}

#[tonic::async_trait]
impl CertificateAuthority for CaService {
    async fn create_certificate(
        &self,
        req: Request<CreateCertificateRequest>,
    ) -> Result<Response<CreateCertificateResponse>, Status> {
        let node = match self.caller(&req).await {
            Ok(n) => n,
            Err(s) => {
                tracing::warn!(reason = %s.message(), "CSR refused: unauthenticated");
                self.metrics.count("unauthenticated");
                return Err(s);
            }
        };
        let body = req.into_inner();
        let id = match csr_identity(&body.csr) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(%node, reason = %e, "CSR refused: malformed");
                self.metrics.count("malformed");
                return Err(Status::invalid_argument(format!("malformed CSR: {e}")));
            }
        };
        if let Err(reason) = self.authorize(&node, &id) {
            tracing::warn!(%node, identity = %id, %reason, "CSR refused: not authorized");
            self.metrics.count("denied");
            return Err(Status::permission_denied(reason));
        }
        let ttl = match body.ttl_seconds {
            0 => self.default_ttl,
            s => Duration::from_secs(s).min(self.max_ttl),
        };
        let (id, cert) = self.ca.sign_csr(&body.csr, ttl).map_err(|e| {
            self.metrics.count("error");
            Status::internal(format!("signing: {e}"))
        })?;
        tracing::info!(%node, identity = %id, ttl_s = ttl.as_secs(), "certificate issued");
        self.metrics.count("issued");
        Ok(Response::new(CreateCertificateResponse {
            cert_chain: vec![pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec()))],
            trust_bundle: self.ca.cert_pem().to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn service() -> CaService {
        let store = Store::new("cluster.local");
        store.apply(|ix| {
            ix.upsert(Object::Pod(Pod {
                uid: "u1".into(),
                name: "web-0".into(),
                namespace: "shop".into(),
                labels: Labels::new(),
                service_account: "web".into(),
                node: Some("node1".into()),
                ips: vec!["10.244.1.2".parse().unwrap()],
                ready: true,
                containers: vec![],
            }))
        });
        CaService {
            ca: Arc::new(Ca::generate("cluster.local").unwrap()),
            store,
            auth: Arc::new(TokenFile {
                by_token: HashMap::new(),
            }),
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86400),
            metrics: Arc::default(),
        }
    }

    #[test]
    fn authorizes_per_node() {
        let s = service();
        let web = SpiffeId::workload("cluster.local", "shop", "web").unwrap();
        assert!(s.authorize("node1", &web).is_ok());
        let e = s.authorize("node2", &web).unwrap_err();
        assert!(e.contains("node node2"), "{e}");
        let db = SpiffeId::workload("cluster.local", "shop", "db").unwrap();
        assert!(s.authorize("node1", &db).is_err());
        let own = SpiffeId::node("cluster.local", "node1").unwrap();
        assert!(s.authorize("node1", &own).is_ok());
        assert!(s.authorize("node2", &own).is_err());
        let foreign = SpiffeId::workload("other.example", "shop", "web").unwrap();
        assert!(s.authorize("node1", &foreign).is_err());
    }
}
