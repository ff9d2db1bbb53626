//! The in-memory index of everything the sources have seen, and which proxy
//! resources each change touches. Pure: no I/O, no locks.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    selects, AuthorizationPolicy, EndpointSlice, FederationState, Gateway, Key, Kind, Namespace,
    Object, Pod, PolicyTarget, ProxyReport, RequestAuthentication, Route, RouteKind, Service,
    TrafficPolicy, TrustBundle, TrustDomainFederation, WorkloadEntry,
};

/// Names of proxy resources: `workload/<uid>`, `service/<namespace>/<name>`,
/// `authorization/<namespace>/<name>`, `authentication/<namespace>/<name>`,
/// `httproute/...`, `grpcroute/...`, `trafficpolicy/<namespace>/<name>`,
/// `bundle/<trust-domain>`.
pub type Dirty = BTreeSet<String>;

/// The namespace whose policies and mTLS label apply mesh-wide, unless configured.
pub const DEFAULT_ROOT_NAMESPACE: &str = "quicmesh-system";

pub fn workload_name(uid: &str) -> String {
    format!("workload/{uid}")
}

pub fn service_name(namespace: &str, name: &str) -> String {
    format!("service/{namespace}/{name}")
}

pub fn authorization_name(namespace: &str, name: &str) -> String {
    format!("authorization/{namespace}/{name}")
}

pub fn authentication_name(namespace: &str, name: &str) -> String {
    format!("authentication/{namespace}/{name}")
}

pub fn traffic_policy_name(namespace: &str, name: &str) -> String {
    format!("trafficpolicy/{namespace}/{name}")
}

pub fn bundle_name(trust_domain: &str) -> String {
    format!("bundle/{trust_domain}")
}

#[derive(Debug)]
pub struct Index {
    objects: BTreeMap<Key, Object>,
    pod_by_uid: BTreeMap<String, Key>,
    root_namespace: String,
    /// Bumped by every change of an object (what is derived from objects
    /// other than the proxies' config, such as waypoint provisioning,
    /// follows it).
    generation: u64,
}

impl Default for Index {
    fn default() -> Self {
        Self::with_root_namespace(DEFAULT_ROOT_NAMESPACE)
    }
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_root_namespace(root: &str) -> Self {
        Index {
            objects: BTreeMap::new(),
            pod_by_uid: BTreeMap::new(),
            root_namespace: root.to_string(),
            generation: 0,
        }
    }

    /// Changes so far (see the field).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn root_namespace(&self) -> &str {
        &self.root_namespace
    }

    /// Whether `pod` is in the mesh: its namespace is ambient and the pod
    /// did not opt out of capture.
    pub fn in_mesh(&self, pod: &Pod) -> bool {
        !pod.capture_disabled() && self.namespace(&pod.namespace).is_some_and(|n| n.ambient())
    }

    /// Whether `policy` targets `pod` by selector (namespace- and mesh-wide
    /// policies reach their workloads by scope, in the proxy).
    pub fn selects_pod(&self, policy: &AuthorizationPolicy, pod: &Pod) -> bool {
        match &policy.target {
            PolicyTarget::Namespace | PolicyTarget::Attached(_) => false,
            PolicyTarget::Selector(sel) => {
                (policy.namespace == pod.namespace || policy.namespace == self.root_namespace)
                    && selects(sel, &pod.labels)
            }
        }
    }

    /// Adds or replaces an object; returns the resources it touches.
    pub fn upsert(&mut self, obj: Object) -> Dirty {
        let key = obj.key();
        let mut dirty = Dirty::new();
        if self.objects.get(&key) == Some(&obj) {
            return dirty;
        }
        self.generation += 1;
        if let Some(old) = self.objects.get(&key) {
            self.touch(old, &mut dirty);
            if let Object::Pod(p) = old {
                self.pod_by_uid.remove(&p.uid);
            }
        }
        self.touch(&obj, &mut dirty);
        if let Object::Pod(p) = &obj {
            self.pod_by_uid.insert(p.uid.clone(), key.clone());
        }
        self.objects.insert(key, obj);
        dirty
    }

    pub fn delete(&mut self, key: &Key) -> Dirty {
        let mut dirty = Dirty::new();
        if let Some(old) = self.objects.remove(key) {
            self.generation += 1;
            self.touch(&old, &mut dirty);
            if let Object::Pod(p) = &old {
                self.pod_by_uid.remove(&p.uid);
            }
        }
        dirty
    }

    /// Makes the objects of `kinds` exactly `objs` (a re-list, or a file
    /// source re-reading its directory).
    pub fn replace(&mut self, kinds: &[Kind], objs: Vec<Object>) -> Dirty {
        let mut dirty = Dirty::new();
        let fresh: BTreeSet<Key> = objs.iter().map(Object::key).collect();
        let stale: Vec<Key> = self
            .objects
            .keys()
            .filter(|k| kinds.contains(&k.kind) && !fresh.contains(k))
            .cloned()
            .collect();
        for k in stale {
            dirty.extend(self.delete(&k));
        }
        for o in objs {
            dirty.extend(self.upsert(o));
        }
        dirty
    }

    /// The resources an object contributes to (computed on both the old and
    /// the new version of a changed object).
    fn touch(&self, obj: &Object, dirty: &mut Dirty) {
        match obj {
            Object::Namespace(ns) => {
                if ns.name == self.root_namespace {
                    // Its mTLS label is the mesh-wide default.
                    dirty.extend(self.pods().map(|p| workload_name(&p.uid)));
                } else {
                    dirty.extend(self.pods_in(&ns.name).map(|p| workload_name(&p.uid)));
                }
                // Its use-waypoint label says where its Services' traffic goes.
                dirty.extend(
                    self.services_in(&ns.name)
                        .map(|s| service_name(&s.namespace, &s.name)),
                );
            }
            Object::Gateway(g) => {
                dirty.extend(
                    self.services_in(&g.namespace)
                        .map(|s| service_name(&s.namespace, &s.name)),
                );
                // Workloads name the waypoints that serve them.
                dirty.extend(self.pods_in(&g.namespace).map(|p| workload_name(&p.uid)));
            }
            Object::AuthorizationPolicy(ap) => {
                dirty.insert(authorization_name(&ap.namespace, &ap.name));
                dirty.extend(
                    self.pods()
                        .filter(|p| self.selects_pod(ap, p))
                        .map(|p| workload_name(&p.uid)),
                );
            }
            Object::Pod(p) => {
                dirty.insert(workload_name(&p.uid));
                // An entry at one of its addresses gives way to it.
                dirty.extend(
                    self.workload_entries()
                        .filter(|e| p.ips.contains(&e.address))
                        .map(|e| workload_name(&e.uid())),
                );
                dirty.extend(
                    self.services_in(&p.namespace)
                        .map(|s| service_name(&s.namespace, &s.name)),
                );
                // A pod running as a waypoint's service account decides
                // whether the waypoint is vouched for by its namespace's
                // workloads.
                if crate::waypoint::find(self, &p.namespace, &p.service_account).is_some() {
                    dirty.extend(self.pods_in(&p.namespace).map(|p| workload_name(&p.uid)));
                }
            }
            Object::Service(s) => {
                dirty.insert(service_name(&s.namespace, &s.name));
                // Its waypoint serves the workloads behind it.
                dirty.extend(self.pods_in(&s.namespace).map(|p| workload_name(&p.uid)));
                // Whether a route is accepted, and which of its backends
                // resolve, depends on the Services of its namespace.
                dirty.extend(
                    self.routes()
                        .filter(|r| {
                            r.namespace == s.namespace
                                || r.parent_namespaces().contains(&s.namespace.as_str())
                        })
                        .map(Route::resource_name),
                );
                // Policies targeting it (or a port of it, by name).
                dirty.extend(self.traffic_policy_names_in(&s.namespace));
            }
            Object::Route(r) => {
                dirty.insert(r.resource_name());
            }
            Object::RequestAuthentication(ra) => {
                dirty.insert(authentication_name(&ra.namespace, &ra.name));
            }
            // Its namespace's RequestAuthentications may read it.
            Object::Secret(s) => dirty.extend(
                self.request_authentications()
                    .filter(|ra| ra.namespace == s.namespace)
                    .map(|ra| authentication_name(&ra.namespace, &ra.name)),
            ),
            // Which targets a policy gets depends on the older policies of
            // its namespace (conflicts): they are read together.
            Object::TrafficPolicy(p) => {
                dirty.insert(traffic_policy_name(&p.namespace, &p.name));
                dirty.extend(self.traffic_policy_names_in(&p.namespace));
            }
            Object::EndpointSlice(es) => {
                dirty.insert(service_name(&es.namespace, &es.service));
                dirty.extend(self.pods_in(&es.namespace).map(|p| workload_name(&p.uid)));
            }
            Object::TrustBundle(b) => {
                dirty.insert(bundle_name(&b.trust_domain));
            }
            // A workload, and an endpoint of the Services that select it.
            Object::WorkloadEntry(e) => {
                dirty.insert(workload_name(&e.uid()));
                dirty.extend(
                    self.services_in(&e.namespace)
                        .map(|s| service_name(&s.namespace, &s.name)),
                );
            }
            // Federations reach proxies as the bundles the fetcher
            // publishes (crate::federation), not directly.
            Object::ServiceAccount(_)
            | Object::Deployment(_)
            | Object::TrustDomainFederation(_)
            | Object::FederationState(_)
            | Object::ProxyReport(_) => {}
        }
    }

    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        let start = Key {
            kind,
            namespace: String::new(),
            name: String::new(),
        };
        self.objects
            .range(start..)
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(_, o)| o)
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        match self.objects.get(&Key {
            kind: Kind::Namespace,
            namespace: String::new(),
            name: name.to_string(),
        }) {
            Some(Object::Namespace(n)) => Some(n),
            _ => None,
        }
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.of_kind(Kind::Namespace).filter_map(|o| match o {
            Object::Namespace(n) => Some(n),
            _ => None,
        })
    }

    pub fn gateways(&self) -> impl Iterator<Item = &Gateway> {
        self.of_kind(Kind::Gateway).filter_map(|o| match o {
            Object::Gateway(g) => Some(g),
            _ => None,
        })
    }

    pub fn gateway(&self, ns: &str, name: &str) -> Option<&Gateway> {
        match self.objects.get(&Key {
            kind: Kind::Gateway,
            namespace: ns.to_string(),
            name: name.to_string(),
        }) {
            Some(Object::Gateway(g)) => Some(g),
            _ => None,
        }
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.of_kind(Kind::Pod).filter_map(|o| match o {
            Object::Pod(p) => Some(p),
            _ => None,
        })
    }

    pub fn pods_in<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods().filter(move |p| p.namespace == ns)
    }

    pub fn pod_by_uid(&self, uid: &str) -> Option<&Pod> {
        match self.objects.get(self.pod_by_uid.get(uid)?) {
            Some(Object::Pod(p)) => Some(p),
            _ => None,
        }
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.of_kind(Kind::Service).filter_map(|o| match o {
            Object::Service(s) => Some(s),
            _ => None,
        })
    }

    pub fn services_in<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services().filter(move |s| s.namespace == ns)
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<&Pod> {
        match self.objects.get(&Key {
            kind: Kind::Pod,
            namespace: ns.to_string(),
            name: name.to_string(),
        }) {
            Some(Object::Pod(p)) => Some(p),
            _ => None,
        }
    }

    pub fn service(&self, ns: &str, name: &str) -> Option<&Service> {
        match self.objects.get(&Key {
            kind: Kind::Service,
            namespace: ns.to_string(),
            name: name.to_string(),
        }) {
            Some(Object::Service(s)) => Some(s),
            _ => None,
        }
    }

    /// Every HTTPRoute and GRPCRoute.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.of_kind(Kind::HttpRoute)
            .chain(self.of_kind(Kind::GrpcRoute))
            .filter_map(|o| match o {
                Object::Route(r) => Some(r),
                _ => None,
            })
    }

    pub fn route(&self, kind: RouteKind, ns: &str, name: &str) -> Option<&Route> {
        match self.objects.get(&Key {
            kind: kind.into(),
            namespace: ns.to_string(),
            name: name.to_string(),
        }) {
            Some(Object::Route(r)) => Some(r),
            _ => None,
        }
    }

    /// The route a resource name (`httproute/<ns>/<name>`,
    /// `grpcroute/<ns>/<name>`) stands for.
    pub fn route_by_resource(&self, resource: &str) -> Option<&Route> {
        let (prefix, rest) = resource.split_once('/')?;
        let (ns, name) = rest.split_once('/')?;
        let kind = [RouteKind::Http, RouteKind::Grpc]
            .into_iter()
            .find(|k| k.resource_prefix() == prefix)?;
        self.route(kind, ns, name)
    }

    /// Every route read against the index: the model and the status.
    pub fn compiled_routes(&self) -> Vec<(&Route, crate::gamma::Compiled)> {
        self.routes().map(|r| (r, r.compile(self))).collect()
    }

    pub fn policies(&self) -> impl Iterator<Item = &AuthorizationPolicy> {
        self.of_kind(Kind::AuthorizationPolicy)
            .filter_map(|o| match o {
                Object::AuthorizationPolicy(p) => Some(p),
                _ => None,
            })
    }

    pub fn policy(&self, ns: &str, name: &str) -> Option<&AuthorizationPolicy> {
        match self.objects.get(&Key {
            kind: Kind::AuthorizationPolicy,
            namespace: ns.to_string(),
            name: name.to_string(),
        }) {
            Some(Object::AuthorizationPolicy(p)) => Some(p),
            _ => None,
        }
    }

    pub fn request_authentications(&self) -> impl Iterator<Item = &RequestAuthentication> {
        self.of_kind(Kind::RequestAuthentication)
            .filter_map(|o| match o {
                Object::RequestAuthentication(r) => Some(r),
                _ => None,
            })
    }

    pub fn request_authentication(&self, ns: &str, name: &str) -> Option<&RequestAuthentication> {
        match self.objects.get(&Key {
            kind: Kind::RequestAuthentication,
            namespace: ns.to_string(),
            name: name.to_string(),
        }) {
            Some(Object::RequestAuthentication(r)) => Some(r),
            _ => None,
        }
    }

    pub fn workload_entries(&self) -> impl Iterator<Item = &WorkloadEntry> {
        self.of_kind(Kind::WorkloadEntry).filter_map(|o| match o {
            Object::WorkloadEntry(e) => Some(e),
            _ => None,
        })
    }

    /// The WorkloadEntry of uid `workloadentry/<namespace>/<name>`.
    pub fn workload_entry_by_uid(&self, uid: &str) -> Option<&WorkloadEntry> {
        let (ns, name) = uid.strip_prefix("workloadentry/")?.split_once('/')?;
        match self.objects.get(&Key {
            kind: Kind::WorkloadEntry,
            namespace: ns.to_string(),
            name: name.to_string(),
        }) {
            Some(Object::WorkloadEntry(e)) => Some(e),
            _ => None,
        }
    }

    pub fn trust_bundles(&self) -> impl Iterator<Item = &TrustBundle> {
        self.of_kind(Kind::TrustBundle).filter_map(|o| match o {
            Object::TrustBundle(b) => Some(b),
            _ => None,
        })
    }

    pub fn federations(&self) -> impl Iterator<Item = &TrustDomainFederation> {
        self.of_kind(Kind::TrustDomainFederation)
            .filter_map(|o| match o {
                Object::TrustDomainFederation(f) => Some(f),
                _ => None,
            })
    }

    /// What the waypoints connected to this controller last reported.
    pub fn proxy_reports(&self) -> impl Iterator<Item = &ProxyReport> {
        self.of_kind(Kind::ProxyReport).filter_map(|o| match o {
            Object::ProxyReport(r) => Some(r),
            _ => None,
        })
    }

    /// What the fetcher last did for the federation `name`.
    pub fn federation_state(&self, name: &str) -> Option<&FederationState> {
        match self.objects.get(&Key {
            kind: Kind::FederationState,
            namespace: String::new(),
            name: name.to_string(),
        }) {
            Some(Object::FederationState(s)) => Some(s),
            _ => None,
        }
    }

    pub fn trust_bundle(&self, trust_domain: &str) -> Option<&TrustBundle> {
        match self.objects.get(&Key {
            kind: Kind::TrustBundle,
            namespace: String::new(),
            name: trust_domain.to_string(),
        }) {
            Some(Object::TrustBundle(b)) => Some(b),
            _ => None,
        }
    }

    pub fn traffic_policies(&self) -> impl Iterator<Item = &TrafficPolicy> {
        self.of_kind(Kind::TrafficPolicy).filter_map(|o| match o {
            Object::TrafficPolicy(p) => Some(p),
            _ => None,
        })
    }

    pub fn traffic_policies_in<'a>(
        &'a self,
        ns: &'a str,
    ) -> impl Iterator<Item = &'a TrafficPolicy> + 'a {
        self.traffic_policies().filter(move |p| p.namespace == ns)
    }

    fn traffic_policy_names_in<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = String> + 'a {
        self.traffic_policies_in(ns)
            .map(|p| traffic_policy_name(&p.namespace, &p.name))
    }

    pub fn traffic_policy(&self, ns: &str, name: &str) -> Option<&TrafficPolicy> {
        match self.objects.get(&Key {
            kind: Kind::TrafficPolicy,
            namespace: ns.to_string(),
            name: name.to_string(),
        }) {
            Some(Object::TrafficPolicy(p)) => Some(p),
            _ => None,
        }
    }

    /// A RequestAuthentication read against the index (its Secrets).
    pub fn compiled_authentication(&self, ra: &RequestAuthentication) -> crate::authn::Compiled {
        crate::authn::compile(ra, &self.root_namespace, self)
    }

    pub fn slices_for<'a>(
        &'a self,
        ns: &'a str,
        service: &'a str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        self.of_kind(Kind::EndpointSlice)
            .filter_map(move |o| match o {
                Object::EndpointSlice(s) if s.namespace == ns && s.service == service => Some(s),
                _ => None,
            })
    }

    pub fn objects(&self) -> impl Iterator<Item = &Object> {
        self.objects.values()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

impl crate::authn::Sources for Index {
    fn secret_key(&self, namespace: &str, name: &str, key: &str) -> Option<Option<Vec<u8>>> {
        match self.objects.get(&Key {
            kind: Kind::Secret,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }) {
            Some(Object::Secret(s)) => Some(s.data.get(key).cloned()),
            _ => None,
        }
    }
}

impl crate::gamma::Refs for Index {
    fn service_ports(&self, namespace: &str, name: &str) -> Option<Vec<u16>> {
        self.service(namespace, name)
            .map(|s| s.ports.iter().map(|p| p.port).collect())
    }

    fn opaque_ports(&self, namespace: &str, name: &str) -> Vec<u16> {
        use quicmesh_core::route::PortProtocol;
        self.service(namespace, name)
            .into_iter()
            .flat_map(|s| s.ports.iter())
            .filter(|p| PortProtocol::of(&p.protocol().unwrap_or_default()) == PortProtocol::Opaque)
            .map(|p| p.port)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    pub(crate) fn pod(ns: &str, name: &str, labels: &[(&str, &str)], ip: &str) -> Object {
        Object::Pod(Pod {
            uid: format!("uid-{ns}-{name}"),
            name: name.into(),
            namespace: ns.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Default::default(),
            service_account: "default".into(),
            node: Some("node1".into()),
            ips: vec![ip.parse().unwrap()],
            ready: true,
            containers: vec![],
        })
    }

    fn ns(name: &str, ambient: bool) -> Object {
        let mut labels = Labels::new();
        if ambient {
            labels.insert(DATAPLANE_MODE_LABEL.into(), DATAPLANE_MODE_AMBIENT.into());
        }
        Object::Namespace(Namespace {
            name: name.into(),
            labels,
        })
    }

    #[test]
    fn changes_touch_the_right_resources() {
        let mut ix = Index::new();
        ix.upsert(ns("a", true));
        let d = ix.upsert(pod("a", "p1", &[("app", "x")], "10.0.0.1"));
        assert_eq!(d, ["workload/uid-a-p1".to_string()].into());
        let svc = Object::Service(Service {
            name: "s".into(),
            namespace: "a".into(),
            vips: vec![],
            ports: vec![],
            selector: None,
            labels: Labels::new(),
        });
        // A Service touches its namespace's workloads too (its waypoint
        // serves those behind it).
        assert_eq!(
            ix.upsert(svc.clone()),
            ["service/a/s".to_string(), "workload/uid-a-p1".to_string()].into()
        );
        // Same object again: nothing.
        assert!(ix.upsert(svc).is_empty());
        // A pod change touches its workload and its namespace's services.
        let d = ix.upsert(pod("a", "p1", &[("app", "y")], "10.0.0.1"));
        assert_eq!(
            d,
            ["service/a/s".to_string(), "workload/uid-a-p1".to_string()].into()
        );
        // Relabeling the namespace touches its pods, and its services (the
        // waypoint label).
        let d = ix.upsert(ns("a", false));
        assert_eq!(
            d,
            ["service/a/s".to_string(), "workload/uid-a-p1".to_string()].into()
        );
        // Replace removes what is gone.
        let d = ix.replace(&[Kind::Pod], vec![pod("a", "p2", &[], "10.0.0.2")]);
        assert!(
            d.contains("workload/uid-a-p1") && d.contains("workload/uid-a-p2"),
            "{d:?}"
        );
        assert!(ix.pod_by_uid("uid-a-p1").is_none());
        assert_eq!(ix.pod_by_uid("uid-a-p2").unwrap().name, "p2");
        assert_eq!(ix.pods().count(), 1);
        assert_eq!(ix.namespace("a").map(|n| n.ambient()), Some(false));
    }
}
