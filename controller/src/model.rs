//! The controller's domain model: the cluster objects quicmesh reads, in its
//! own terms. No Kubernetes or protobuf types here: sources convert into
//! these, translation converts out of them.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// The label that puts a namespace's pods in the mesh.
pub const DATAPLANE_MODE_LABEL: &str = "quicmesh.io/dataplane-mode";
pub const DATAPLANE_MODE_AMBIENT: &str = "ambient";
/// `none` on a pod: never captured, even in an ambient namespace (waypoints
/// carry it: they speak the tunnel themselves).
pub const DATAPLANE_MODE_NONE: &str = "none";
/// The label that sets a namespace's mTLS mode (on the root namespace: the
/// mesh-wide default).
pub const MTLS_MODE_LABEL: &str = "quicmesh.io/mtls-mode";

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

impl Namespace {
    pub fn ambient(&self) -> bool {
        self.labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) == Some(DATAPLANE_MODE_AMBIENT)
    }

    /// The waypoint its `quicmesh.io/use-waypoint` label names, if any.
    pub fn use_waypoint(&self) -> Option<&str> {
        self.labels
            .get(crate::waypoint::USE_WAYPOINT_LABEL)
            .map(String::as_str)
    }

    /// The mode its label sets: None without the label; an unknown value
    /// is an error (the caller fails closed to strict).
    pub fn mtls_mode(&self) -> Option<Result<MtlsMode, String>> {
        self.labels.get(MTLS_MODE_LABEL).map(|v| v.parse())
    }
}

/// Whether a workload accepts plaintext from outside the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MtlsMode {
    /// Plaintext inbound (15006) accepted; policy still applies, with no principal.
    Permissive,
    /// Only mTLS tunnel traffic; plaintext inbound refused.
    Strict,
}

impl std::str::FromStr for MtlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(MtlsMode::Strict),
            "permissive" => Ok(MtlsMode::Permissive),
            other => Err(format!(
                "{MTLS_MODE_LABEL}={other:?} is neither \"strict\" nor \"permissive\""
            )),
        }
    }
}

/// Which workloads a policy targets (besides the mesh-wide reach of the
/// root namespace).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum PolicyTarget {
    /// Every workload of the policy's namespace.
    Namespace,
    /// Workloads whose labels match (in the root namespace: of any namespace).
    Selector(Labels),
    /// `targetRefs`: decided by waypoints only, for the requests of these
    /// (in the policy's namespace).
    Attached(Vec<quicmesh_core::authz::set::Target>),
}

/// An `AuthorizationPolicy`, compiled ([`crate::policy::compile`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthorizationPolicy {
    pub name: String,
    pub namespace: String,
    /// `metadata.generation` (its status conditions say which they saw).
    pub generation: i64,
    pub target: PolicyTarget,
    /// The compiled policy; `invalid` says why it denies all it targets.
    pub policy: quicmesh_core::authz::Policy,
    /// Parts that L4 cannot enforce (left to a waypoint), and how they are treated.
    pub warnings: Vec<String>,
    /// The spec as written (JSON form), for dumps and for `quicmesh local`,
    /// which hands it on to the controller as an API server would.
    pub spec: serde_json::Value,
}

/// A `RequestAuthentication`, as written: compiled against the index when
/// config and status are made ([`crate::authn::compile`]), since it may
/// name a Secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestAuthentication {
    pub name: String,
    pub namespace: String,
    /// `metadata.generation` (its status says which it saw).
    pub generation: i64,
    /// The spec (JSON form); the file source makes `jwksFrom.file` paths
    /// absolute.
    pub spec: serde_json::Value,
    /// The `jwksFrom.file` documents as the file source read them (path →
    /// text, or why not); None from a source that reads no files.
    pub files: Option<BTreeMap<String, Result<String, String>>>,
}

/// A Secret labeled [`crate::authn::JWKS_SECRET_LABEL`]: JWKS documents
/// for `jwksFrom.secretKeyRef` (no other Secret is read).
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
pub struct Secret {
    pub name: String,
    pub namespace: String,
    #[serde(skip)]
    pub data: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A `TrafficPolicy`, compiled ([`crate::traffic::compile`]); read
/// against the index (its targets' existence, conflicts) when config and
/// status are made ([`crate::traffic::resolve_namespace`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrafficPolicy {
    pub name: String,
    pub namespace: String,
    /// `metadata.creationTimestamp`, seconds since the epoch (0 when
    /// absent): the older policy wins a conflict.
    pub created: i64,
    /// `metadata.generation` (status conditions say which they saw).
    pub generation: i64,
    pub targets: Vec<TrafficTarget>,
    /// What it sets, or why it is invalid (the field named).
    pub parts: Result<quicmesh_core::traffic::Parts, String>,
    /// The spec as written, for `quicmesh local` to hand on.
    pub spec: serde_json::Value,
}

/// One of a TrafficPolicy's `targetRefs`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrafficTarget {
    /// As the status names it (`ancestorRef`).
    pub ancestor: serde_json::Value,
    /// The Service and port name, or why it cannot be one.
    pub target: Result<(String, Option<String>), String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceAccount {
    pub name: String,
    pub namespace: String,
}

/// A named container port (for named target ports).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Container {
    pub name: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub labels: Labels,
    /// `metadata.annotations` (the local lab reads its placement ones).
    pub annotations: Labels,
    pub service_account: String,
    /// Scheduled node; None while pending.
    pub node: Option<String>,
    pub ips: Vec<IpAddr>,
    pub ready: bool,
    pub containers: Vec<Container>,
}

impl Pod {
    /// Whether the pod opted out of capture (`quicmesh.io/dataplane-mode: none`).
    pub fn capture_disabled(&self) -> bool {
        self.labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) == Some(DATAPLANE_MODE_NONE)
    }

    /// The port a named container port stands for.
    pub fn named_port(&self, name: &str) -> Option<u16> {
        self.containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub target: TargetPort,
    /// `appProtocol`, as written.
    pub app_protocol: Option<String>,
}

/// Protocols a port's name may start with.
pub const NAMED_PROTOCOLS: [&str; 9] = [
    "http", "http2", "grpc", "tcp", "tls", "https", "mongo", "mysql", "redis",
];

impl ServicePort {
    /// What the port speaks: `appProtocol`, else the protocol its name
    /// starts with (one of [`NAMED_PROTOCOLS`], then `-` or nothing, as
    /// Istio users name ports), else None.
    pub fn protocol(&self) -> Option<String> {
        if let Some(p) = &self.app_protocol {
            return Some(p.clone());
        }
        if self.name == "grpc-web" || self.name.starts_with("grpc-web-") {
            return Some("grpc-web".into());
        }
        let head = self.name.split('-').next().unwrap_or_default();
        NAMED_PROTOCOLS.contains(&head).then(|| head.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    /// Cluster IPs (VIPs); empty for headless or not yet allocated.
    pub vips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// Pod selector; None means endpoints are managed by hand (slices only).
    pub selector: Option<Labels>,
    pub labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SliceEndpoint {
    pub ips: Vec<IpAddr>,
    pub ready: bool,
    /// The pod behind the endpoint, when known (targetRef).
    pub pod: Option<String>,
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointSlice {
    pub name: String,
    pub namespace: String,
    /// The service it belongs to (label kubernetes.io/service-name).
    pub service: String,
    /// (port name, port number)
    pub ports: Vec<(String, u16)>,
    pub endpoints: Vec<SliceEndpoint>,
}

/// A pod template as Deployments carry it (used by `quicmesh local`; the
/// controller itself reads pods, not deployments).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deployment {
    pub name: String,
    pub namespace: String,
    pub replicas: u32,
    pub labels: Labels,
    pub service_account: String,
    pub containers: Vec<Container>,
}

/// Which Gateway API route kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum RouteKind {
    Http,
    Grpc,
}

impl RouteKind {
    /// The kind as the API spells it.
    pub fn api_kind(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
        }
    }

    /// The prefix of its proxy resources' names.
    pub fn resource_prefix(self) -> &'static str {
        match self {
            RouteKind::Http => "httproute",
            RouteKind::Grpc => "grpcroute",
        }
    }
}

/// A Gateway API `HTTPRoute` or `GRPCRoute`, as written: read against the
/// rest of the model when config and status are made
/// ([`crate::gamma::compile`]), since whether it is accepted depends on
/// the Services it names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    pub kind: RouteKind,
    pub name: String,
    pub namespace: String,
    /// `metadata.creationTimestamp` as seconds since the epoch (0 when
    /// absent): the older route wins precedence ties.
    pub created: i64,
    /// `metadata.generation` (status conditions say which they saw).
    pub generation: i64,
    pub spec: serde_json::Value,
}

impl Route {
    /// The namespaces its `parentRefs` name (its own where they name none):
    /// a consumer route depends on the Services of its parents' namespace.
    pub fn parent_namespaces(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .spec
            .get("parentRefs")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                p.get("namespace")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or(&self.namespace)
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Read against what the controller knows: the model and the status.
    pub fn compile(&self, refs: &dyn crate::gamma::Refs) -> crate::gamma::Compiled {
        let f = match self.kind {
            RouteKind::Http => crate::gamma::compile,
            RouteKind::Grpc => crate::gamma::compile_grpc,
        };
        f(&self.namespace, &self.name, self.created, &self.spec, refs)
    }

    /// Its proxy resource's name: `httproute/<ns>/<name>` or `grpcroute/...`.
    pub fn resource_name(&self) -> String {
        format!(
            "{}/{}/{}",
            self.kind.resource_prefix(),
            self.namespace,
            self.name
        )
    }
}

/// A Gateway API `Gateway`. Of those, quicmesh serves the ones of class
/// [`crate::waypoint::WAYPOINT_CLASS`]: waypoints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gateway {
    pub name: String,
    pub namespace: String,
    pub class: String,
    pub labels: Labels,
    /// `metadata.uid` (what the objects provisioned for it are owned by);
    /// empty in a file.
    pub uid: String,
    /// `metadata.generation` (status conditions say which they saw).
    pub generation: i64,
}

/// A workload outside this mesh's pods — typically a workload of a
/// federated mesh — at a fixed address, with the SPIFFE ID it must prove
/// (`WorkloadEntry`, quicmesh.io/v1alpha1). ztunnels tunnel to it as to a
/// pod (its address, the tunnel port) and refuse it unless it presents
/// that identity, verified against its trust domain's bundle; Services
/// select it by its labels as they select pods.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadEntry {
    pub name: String,
    pub namespace: String,
    pub address: IpAddr,
    /// `spec.identity`: any SPIFFE ID (a SPIRE-run workload's path need not
    /// be `/ns/<ns>/sa/<sa>`).
    pub identity: String,
    /// `spec.labels`: what Services select.
    pub labels: Labels,
    /// `spec.ports`: named ports (a Service's named `targetPort`).
    pub ports: BTreeMap<String, u16>,
}

impl WorkloadEntry {
    /// Its workload uid (resources `workload/<uid>`); never a pod's.
    pub fn uid(&self) -> String {
        format!("workloadentry/{}/{}", self.namespace, self.name)
    }
}

/// A trust domain's bundle as the controller holds it: the mesh's own
/// (the CA's roots) or a federated domain's (fetched from its bundle
/// endpoint). Not read from any source: the controller itself keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrustBundle {
    pub trust_domain: String,
    /// X.509 roots, DER.
    #[serde(skip)]
    pub roots: Vec<Vec<u8>>,
    /// `spiffe_sequence` of the document it came from (0: none).
    pub sequence: u64,
}

/// How a peer's bundle endpoint is authenticated (SPIFFE Federation §5.2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EndpointProfile {
    /// Web PKI: the server certificate chains to a trusted web root and
    /// names the URL's host.
    HttpsWeb,
    /// The server presents an X.509 SVID of `endpoint_id`, verified with
    /// the peer trust domain's current bundle (self-serving endpoints only).
    HttpsSpiffe { endpoint_id: String },
}

/// A `TrustDomainFederation`'s spec, checked ([`crate::federation`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FederationSpec {
    pub trust_domain: String,
    /// `https://` only.
    pub url: String,
    pub profile: EndpointProfile,
    /// The operator's initial bundle (`trustDomainBundle`): its roots, DER,
    /// and its sequence.
    #[serde(skip)]
    pub initial: Option<(Vec<Vec<u8>>, Option<u64>)>,
}

/// A `TrustDomainFederation` (`quicmesh.io/v1alpha1`, cluster-scoped): a
/// peer trust domain whose bundle the controller fetches and pushes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrustDomainFederation {
    pub name: String,
    pub generation: i64,
    /// The spec, or why it cannot be used (named by field).
    pub spec: Result<FederationSpec, String>,
    /// The spec as written (the local lab stores it as an API server does).
    #[serde(skip)]
    pub written: serde_json::Value,
}

/// What the controller's fetcher last did for a federation (kept by the
/// controller, not read from any source): what status conditions, the
/// admin `/status` and the metrics report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationState {
    /// The federation's name.
    pub name: String,
    pub trust_domain: String,
    /// The bundle published for the trust domain, if any.
    pub bundle: Option<PublishedBundle>,
    /// The last fetch: None before the first one ends.
    pub last_fetch: Option<FetchOutcome>,
    /// Fetches failed in a row.
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedBundle {
    /// `initial` (the spec's trustDomainBundle) or `fetched`.
    pub origin: &'static str,
    pub roots: usize,
    pub sequence: Option<u64>,
    /// When it was fetched (seconds since the epoch; 0 for the initial one).
    pub fetched_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchOutcome {
    /// The metric label (`success`, `connect_error`, `timeout`, ...).
    pub result: &'static str,
    pub message: String,
}

/// What a waypoint connected to this controller last reported of what it
/// fetches itself (kept from its config stream while the stream lasts, not
/// read from any source): the RequestAuthentications' `KeysFetched`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyReport {
    /// The waypoint's namespace.
    pub namespace: String,
    /// The waypoint and its stream (`waypoint#7`): replicas of one
    /// waypoint report apart.
    pub name: String,
    /// The waypoint's name.
    pub waypoint: String,
    pub reports: Vec<FetchReport>,
}

/// One subject of a [`ProxyReport`] (`quicmesh.config.v1.Report`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchReport {
    /// `jwks/<uri>`.
    pub subject: String,
    pub ok: bool,
    pub error: String,
    pub last_good_kept: bool,
}

/// Any object the controller reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    Pod(Pod),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Deployment(Deployment),
    AuthorizationPolicy(AuthorizationPolicy),
    Route(Route),
    Gateway(Gateway),
    RequestAuthentication(RequestAuthentication),
    Secret(Secret),
    TrafficPolicy(TrafficPolicy),
    TrustBundle(TrustBundle),
    WorkloadEntry(WorkloadEntry),
    TrustDomainFederation(TrustDomainFederation),
    FederationState(FederationState),
    ProxyReport(ProxyReport),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Kind {
    Namespace,
    ServiceAccount,
    Pod,
    Service,
    EndpointSlice,
    Deployment,
    AuthorizationPolicy,
    HttpRoute,
    GrpcRoute,
    Gateway,
    RequestAuthentication,
    Secret,
    TrafficPolicy,
    TrustBundle,
    WorkloadEntry,
    TrustDomainFederation,
    FederationState,
    ProxyReport,
}

impl From<RouteKind> for Kind {
    fn from(k: RouteKind) -> Self {
        match k {
            RouteKind::Http => Kind::HttpRoute,
            RouteKind::Grpc => Kind::GrpcRoute,
        }
    }
}

/// (kind, namespace ("" for cluster-scoped), name)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Key {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl Object {
    pub fn key(&self) -> Key {
        let (kind, namespace, name) = match self {
            Object::Namespace(o) => (Kind::Namespace, "", &o.name),
            Object::ServiceAccount(o) => (Kind::ServiceAccount, o.namespace.as_str(), &o.name),
            Object::Pod(o) => (Kind::Pod, o.namespace.as_str(), &o.name),
            Object::Service(o) => (Kind::Service, o.namespace.as_str(), &o.name),
            Object::EndpointSlice(o) => (Kind::EndpointSlice, o.namespace.as_str(), &o.name),
            Object::Deployment(o) => (Kind::Deployment, o.namespace.as_str(), &o.name),
            Object::AuthorizationPolicy(o) => {
                (Kind::AuthorizationPolicy, o.namespace.as_str(), &o.name)
            }
            Object::Route(o) => (o.kind.into(), o.namespace.as_str(), &o.name),
            Object::Gateway(o) => (Kind::Gateway, o.namespace.as_str(), &o.name),
            Object::RequestAuthentication(o) => {
                (Kind::RequestAuthentication, o.namespace.as_str(), &o.name)
            }
            Object::Secret(o) => (Kind::Secret, o.namespace.as_str(), &o.name),
            Object::TrafficPolicy(o) => (Kind::TrafficPolicy, o.namespace.as_str(), &o.name),
            Object::TrustBundle(o) => (Kind::TrustBundle, "", &o.trust_domain),
            Object::WorkloadEntry(o) => (Kind::WorkloadEntry, o.namespace.as_str(), &o.name),
            Object::TrustDomainFederation(o) => (Kind::TrustDomainFederation, "", &o.name),
            Object::FederationState(o) => (Kind::FederationState, "", &o.name),
            Object::ProxyReport(o) => (Kind::ProxyReport, o.namespace.as_str(), &o.name),
        };
        Key {
            kind,
            namespace: namespace.to_string(),
            name: name.clone(),
        }
    }
}

/// Whether `labels` satisfy a matchLabels `selector` (an empty selector
/// matches nothing, as for Services).
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_says_its_protocol_by_app_protocol_or_name() {
        let port = |name: &str, app: Option<&str>| ServicePort {
            name: name.into(),
            port: 80,
            target: TargetPort::Number(80),
            app_protocol: app.map(String::from),
        };
        assert_eq!(port("http", None).protocol().as_deref(), Some("http"));
        assert_eq!(port("grpc-api", None).protocol().as_deref(), Some("grpc"));
        assert_eq!(
            port("grpc-web-ui", None).protocol().as_deref(),
            Some("grpc-web")
        );
        assert_eq!(port("tcp-db", None).protocol().as_deref(), Some("tcp"));
        assert_eq!(port("https", None).protocol().as_deref(), Some("https"));
        assert_eq!(port("web", None).protocol(), None);
        assert_eq!(port("httpx", None).protocol(), None);
        assert_eq!(
            port("web", Some("kubernetes.io/h2c")).protocol().as_deref(),
            Some("kubernetes.io/h2c"),
            "appProtocol wins"
        );
    }
}
