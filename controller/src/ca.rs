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
use quicmesh_core::identity::ca::csr_identity;
use quicmesh_core::identity::svid::cert_info;
use quicmesh_core::identity::SpiffeId;
use quicmesh_proto::ca::certificate_authority_server::CertificateAuthority;
use quicmesh_proto::ca::{CreateCertificateRequest, CreateCertificateResponse};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::store::Store;

pub mod kube;
pub mod rotation;

/// The SPIFFE ID of the caller's TLS client certificate (already verified
/// against the trust bundle by the TLS layer); `missing` is the refusal when
/// there is none.
pub fn peer_identity<T>(req: &Request<T>, missing: &str) -> Result<SpiffeId, Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated(missing.to_string()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
    Ok(cert_info(leaf)
        .map_err(|e| Status::unauthenticated(e.to_string()))?
        .id)
}

/// Who calls the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A node's ztunnel: certificates for the node and its pods.
    Node(String),
    /// A service account: its own identity, if it is a waypoint's.
    ServiceAccount { namespace: String, name: String },
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Node(n) => write!(f, "node {n}"),
            Caller::ServiceAccount { namespace, name } => {
                write!(f, "service account {namespace}/{name}")
            }
        }
    }
}

/// Why a caller was refused: a bounded reason (the metric's label) and the
/// whole story (the log and the gRPC status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The service account whose (bound) tokens act for a node: the ztunnel
/// DaemonSet's, in the install namespace. No other token does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAgent {
    pub namespace: String,
    pub service_account: String,
}

impl std::fmt::Display for NodeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service_account)
    }
}

/// Maps a bearer token to its caller.
#[tonic::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn caller_for_token(&self, token: &str) -> Result<Caller, Refusal>;
}

/// File mode: a YAML map of principal to bootstrap token, where a
/// principal is a node name or `ns/<namespace>/sa/<service-account>` (the
/// lab gives each waypoint pod one, as a kubelet projects a token). Read
/// again when the file changes; an edit that does not parse keeps the
/// previous tokens.
pub struct TokenFile {
    path: std::path::PathBuf,
    loaded: std::sync::Mutex<(Option<std::time::SystemTime>, HashMap<String, Caller>)>,
}

impl TokenFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let tokens = Self::read(path)?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            loaded: std::sync::Mutex::new((mtime, tokens)),
        })
    }

    fn read(path: &Path) -> anyhow::Result<HashMap<String, Caller>> {
        let text = std::fs::read_to_string(path)?;
        let map: HashMap<String, String> = serde_yaml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: expected a map of node name (or ns/<namespace>/sa/<name>) to token: {e}",
                path.display()
            )
        })?;
        Ok(map
            .into_iter()
            .map(|(principal, token)| {
                let caller = match principal
                    .strip_prefix("ns/")
                    .and_then(|r| r.split_once("/sa/"))
                {
                    Some((ns, sa)) => Caller::ServiceAccount {
                        namespace: ns.to_string(),
                        name: sa.to_string(),
                    },
                    None => Caller::Node(principal),
                };
                (token, caller)
            })
            .collect())
    }
}

#[tonic::async_trait]
impl Authenticator for TokenFile {
    async fn caller_for_token(&self, token: &str) -> Result<Caller, Refusal> {
        let mut loaded = self.loaded.lock().expect("not poisoned");
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime != loaded.0 {
            match Self::read(&self.path) {
                Ok(tokens) => *loaded = (mtime, tokens),
                Err(e) => {
                    tracing::warn!(error = %e, "token file rejected; keeping the previous tokens");
                    loaded.0 = mtime;
                }
            }
        }
        loaded
            .1
            .get(token)
            .cloned()
            .ok_or_else(|| Refusal::new("unknown_token", "unknown bootstrap token"))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CaLabels {
    pub result: String,
    /// Why a CSR was refused (empty otherwise): one of a fixed set.
    pub reason: String,
}

#[derive(Default)]
pub struct CaMetrics {
    pub requests: Family<CaLabels, Counter>,
}

impl CaMetrics {
    fn count(&self, result: &str, reason: &str) {
        self.requests
            .get_or_create(&CaLabels {
                result: result.into(),
                reason: reason.into(),
            })
            .inc();
    }
}

pub struct CaService {
    /// The CA in effect (replaced while the controller runs).
    pub ca: Arc<rotation::CurrentCa>,
    /// The install namespace: its identities (the controller's, the
    /// ztunnels' and the node agents' service accounts) are the control
    /// plane's, issued to no caller (the controller mints its own).
    pub system_namespace: String,
    pub store: Arc<Store>,
    pub auth: Arc<dyn Authenticator>,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub metrics: Arc<CaMetrics>,
}

impl CaService {
    /// Who is calling: named by its bearer token, or the node of its certificate.
    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Refusal> {
        if let Some(v) = req.metadata().get("authorization") {
            let token = v
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    Refusal::new(
                        "malformed_credentials",
                        "authorization must be a Bearer token",
                    )
                })?;
            return self.auth.caller_for_token(token).await;
        }
        let id = peer_identity(
            req,
            "no credentials: send a bearer token or a node certificate",
        )
        .map_err(|s| Refusal::new("no_credentials", s.message()))?;
        id.node_name()
            .map(|n| Caller::Node(n.to_string()))
            .ok_or_else(|| Refusal::new("not_a_node", format!("{id} is not a node identity")))
    }

    /// Whether `id` is one of the control plane's (any identity of the
    /// install namespace).
    pub fn reserved(&self, id: &SpiffeId) -> bool {
        id.namespace_and_service_account()
            .is_ok_and(|(ns, _)| ns == self.system_namespace)
    }

    /// Whether `caller` may have a certificate for `id`. Pure over the index.
    pub fn authorize(&self, caller: &Caller, id: &SpiffeId) -> Result<(), String> {
        if id.trust_domain() != self.store.trust_domain() {
            return Err(format!(
                "{id} is not in trust domain {}",
                self.store.trust_domain()
            ));
        }
        if self.reserved(id) {
            return Err(format!(
                "{id} is the control plane's (namespace {}): reserved",
                self.system_namespace
            ));
        }
        let node = match caller {
            Caller::Node(n) => n.as_str(),
            Caller::ServiceAccount { namespace, name } => {
                let own = SpiffeId::workload(self.store.trust_domain(), namespace, name)
                    .map_err(|e| format!("{caller}: {e}"))?;
                if &own != id {
                    return Err(format!("{caller} asked for {id}, not its own identity"));
                }
                let waypoint = self.store.with_index(|ix| {
                    crate::waypoint::all(ix).iter().any(|w| {
                        &w.namespace == namespace
                            && w.service_account() == name
                            && crate::waypoint::usable(ix, w)
                    })
                });
                return if waypoint {
                    Ok(())
                } else {
                    Err(format!("{caller} is not a waypoint's"))
                };
            }
        };
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
        // A waypoint's identity is vouched for by the ztunnels of the
        // workloads it serves: only its own pods (by their service
        // account's token) get it, never a node for a pod that merely runs
        // as the same service account.
        let (waypoint, scheduled) = self.store.with_index(|ix| {
            (
                crate::waypoint::all(ix).iter().any(|w| {
                    w.namespace == ns && w.service_account() == sa && crate::waypoint::usable(ix, w)
                }),
                ix.pods().any(|p| {
                    p.namespace == ns && p.service_account == sa && p.node.as_deref() == Some(node)
                }),
            )
        });
        if waypoint {
            return Err(format!(
                "{id} is a waypoint's: only its own pods get it, not node {node}"
            ));
        }
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
        // The CSR's trace span (when traces are on), continuing the
        // caller's `traceparent` if its metadata has one.
        let span = tracing::info_span!(
            "create_certificate",
            otel.name = "quicmesh.ca.v1.CertificateAuthority/CreateCertificate",
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = "quicmesh.ca.v1.CertificateAuthority",
            rpc.method = "CreateCertificate",
            rpc.grpc.status_code = tracing::field::Empty,
            quicmesh.identity = tracing::field::Empty,
        );
        if !span.is_disabled() {
            quicmesh_core::trace::continue_from(
                &span,
                &req.metadata().clone().into_headers(),
                None,
            );
        }
        let r = self.sign(req).instrument(span.clone()).await;
        if !span.is_disabled() {
            let code = match &r {
                Ok(_) => tonic::Code::Ok,
                Err(status) => {
                    span.record("otel.status_code", "ERROR");
                    status.code()
                }
            };
            span.record("rpc.grpc.status_code", code as i32);
        }
        r
    }
}

impl CaService {
    async fn sign(
        &self,
        req: Request<CreateCertificateRequest>,
    ) -> Result<Response<CreateCertificateResponse>, Status> {
        let caller = match self.caller(&req).await {
            Ok(c) => c,
            Err(r) => {
                tracing::warn!(reason = r.reason, message = %r.message, "CSR refused: unauthenticated");
                self.metrics.count("unauthenticated", r.reason);
                return Err(Status::unauthenticated(r.message));
            }
        };
        let body = req.into_inner();
        let id = match csr_identity(&body.csr) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(%caller, reason = %e, "CSR refused: malformed");
                self.metrics.count("malformed", "malformed_csr");
                return Err(Status::invalid_argument(format!("malformed CSR: {e}")));
            }
        };
        if let Err(reason) = self.authorize(&caller, &id) {
            tracing::warn!(%caller, identity = %id, %reason, "CSR refused: not authorized");
            self.metrics.count("denied", "not_authorized");
            return Err(Status::permission_denied(reason));
        }
        let ttl = match body.ttl_seconds {
            0 => self.default_ttl,
            s => Duration::from_secs(s).min(self.max_ttl),
        };
        let signer = self.ca.signer();
        let (id, cert) = signer.sign_csr(&body.csr, ttl).map_err(|e| {
            self.metrics.count("error", "");
            Status::internal(format!("signing: {e}"))
        })?;
        let not_after = cert_info(&cert)
            .map(|i| i.not_after)
            .unwrap_or_else(|_| std::time::SystemTime::now() + ttl);
        self.ca.issued(&signer, not_after);
        tracing::Span::current().record("quicmesh.identity", id.as_str());
        tracing::info!(%caller, identity = %id, ttl_s = ttl.as_secs(), signer = %quicmesh_core::identity::ca::fingerprint(signer.cert_der()), "certificate issued");
        self.metrics.count("issued", "");
        // Leaf first, then the intermediates up to (not including) a root.
        let cert_chain = std::iter::once(&cert)
            .chain(signer.intermediates())
            .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.to_vec())))
            .collect();
        Ok(Response::new(CreateCertificateResponse {
            cert_chain,
            trust_bundle: self.ca.roots_pem(),
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
            let mut d = ix.upsert(Object::Pod(Pod {
                uid: "u1".into(),
                name: "web-0".into(),
                namespace: "shop".into(),
                labels: Labels::new(),
                annotations: Default::default(),
                service_account: "web".into(),
                node: Some("node1".into()),
                ips: vec!["10.244.1.2".parse().unwrap()],
                ready: true,
                containers: vec![],
            }));
            d.extend(
                ix.upsert(Object::Namespace(Namespace {
                    name: "shop".into(),
                    labels: [(
                        crate::waypoint::USE_WAYPOINT_LABEL.to_string(),
                        "waypoint".to_string(),
                    )]
                    .into(),
                })),
            );
            d
        });
        // A file of its own per test: tests run at once.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("quicmesh-ca-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = dir.join("tokens.yaml");
        std::fs::write(&tokens, "node1: t-node1\nns/shop/sa/waypoint: t-waypoint\n").unwrap();
        CaService {
            system_namespace: "quicmesh-system".into(),
            ca: Arc::new(
                rotation::CurrentCa::new(
                    quicmesh_core::identity::ca::Ca::generate("cluster.local").unwrap(),
                    store.clone(),
                    Duration::from_secs(3600),
                )
                .unwrap(),
            ),
            store,
            auth: Arc::new(TokenFile::load(&tokens).unwrap()),
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86400),
            metrics: Arc::default(),
        }
    }

    fn node(n: &str) -> Caller {
        Caller::Node(n.into())
    }

    #[test]
    fn authorizes_per_node() {
        let s = service();
        let web = SpiffeId::workload("cluster.local", "shop", "web").unwrap();
        assert!(s.authorize(&node("node1"), &web).is_ok());
        let e = s.authorize(&node("node2"), &web).unwrap_err();
        assert!(e.contains("node node2"), "{e}");
        let db = SpiffeId::workload("cluster.local", "shop", "db").unwrap();
        assert!(s.authorize(&node("node1"), &db).is_err());
        let own = SpiffeId::node("cluster.local", "node1").unwrap();
        assert!(s.authorize(&node("node1"), &own).is_ok());
        assert!(s.authorize(&node("node2"), &own).is_err());
        let foreign = SpiffeId::workload("other.example", "shop", "web").unwrap();
        assert!(s.authorize(&node("node1"), &foreign).is_err());
    }

    #[tokio::test]
    async fn a_waypoint_gets_exactly_its_own_identity() {
        let s = service();
        let caller = s.auth.caller_for_token("t-waypoint").await.unwrap();
        assert_eq!(
            caller,
            Caller::ServiceAccount {
                namespace: "shop".into(),
                name: "waypoint".into()
            }
        );
        assert_eq!(
            s.auth.caller_for_token("t-node1").await.unwrap(),
            node("node1")
        );
        assert!(s.auth.caller_for_token("nope").await.is_err());
        let own = SpiffeId::workload("cluster.local", "shop", "waypoint").unwrap();
        assert!(s.authorize(&caller, &own).is_ok());
        let web = SpiffeId::workload("cluster.local", "shop", "web").unwrap();
        let e = s.authorize(&caller, &web).unwrap_err();
        assert!(e.contains("not its own identity"), "{e}");
        let n = SpiffeId::node("cluster.local", "node1").unwrap();
        assert!(s.authorize(&caller, &n).is_err());
        // Not a node, even one with a pod running as the waypoint's
        // service account (an app pod could run as it, and ztunnels admit
        // the waypoint's tunnels as vouched for).
        s.store.apply(|ix| {
            ix.upsert(Object::Pod(Pod {
                uid: "impostor".into(),
                name: "impostor-0".into(),
                namespace: "shop".into(),
                labels: Labels::new(),
                annotations: Default::default(),
                service_account: "waypoint".into(),
                node: Some("node1".into()),
                ips: vec!["10.244.1.8".parse().unwrap()],
                ready: true,
                containers: vec![],
            }))
        });
        // The impostor (say, a Gateway named after an app's service account)
        // makes the waypoint unusable: its identity is then an ordinary one,
        // for the impostor's node, and not the waypoint's.
        assert!(s.authorize(&node("node1"), &own).is_ok());
        assert!(s.authorize(&caller, &own).is_err());
        s.store.apply(|ix| {
            ix.delete(&Key {
                kind: Kind::Pod,
                namespace: "shop".into(),
                name: "impostor-0".into(),
            })
        });
        let e = s.authorize(&node("node1"), &own).unwrap_err();
        assert!(e.contains("is a waypoint's"), "{e}");
        assert!(s.authorize(&caller, &own).is_ok());
        // A service account that is no waypoint's gets nothing, not even its own.
        let web_sa = Caller::ServiceAccount {
            namespace: "shop".into(),
            name: "web".into(),
        };
        let e = s.authorize(&web_sa, &web).unwrap_err();
        assert!(e.contains("not a waypoint's"), "{e}");
    }

    #[test]
    fn the_control_planes_identity_goes_to_no_one() {
        let s = service();
        let controller =
            SpiffeId::workload("cluster.local", "quicmesh-system", "controller").unwrap();
        // Not to a waypoint of that name, not to a node with such a pod.
        s.store.apply(|ix| {
            let mut d = ix.upsert(Object::Namespace(Namespace {
                name: "quicmesh-system".into(),
                labels: [(
                    crate::waypoint::USE_WAYPOINT_LABEL.to_string(),
                    "controller".to_string(),
                )]
                .into(),
            }));
            d.extend(ix.upsert(Object::Pod(Pod {
                uid: "c1".into(),
                name: "controller-0".into(),
                namespace: "quicmesh-system".into(),
                labels: Labels::new(),
                annotations: Default::default(),
                service_account: "controller".into(),
                node: Some("node1".into()),
                ips: vec!["10.244.1.9".parse().unwrap()],
                ready: true,
                containers: vec![],
            })));
            d
        });
        let sa = Caller::ServiceAccount {
            namespace: "quicmesh-system".into(),
            name: "controller".into(),
        };
        for caller in [sa, node("node1")] {
            let e = s.authorize(&caller, &controller).unwrap_err();
            assert!(e.contains("reserved"), "{caller}: {e}");
        }
    }
}
