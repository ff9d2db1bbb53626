//! Translation: index → proxy config resources. Pure and deterministic, so
//! the same index always yields byte-identical resources.

use std::collections::BTreeMap;

use quicmesh_core::authz;
use quicmesh_core::authz::set::Target;
use quicmesh_proto::config::{
    resource, Authorization, AuthorizationAction, AuthorizationCondition, AuthorizationOperation,
    AuthorizationRule, AuthorizationScope, AuthorizationSource, AuthorizationTarget, Endpoint,
    MtlsMode, Resource, Service, ServicePort, Waypoint, Workload,
};

use crate::index::{authorization_name, service_name, traffic_policy_name, workload_name, Index};
use crate::model::{self, selects, PolicyTarget, TargetPort};

/// Mesh-wide settings translation needs.
#[derive(Debug, Clone)]
pub struct Mesh {
    pub trust_domain: String,
    /// The mTLS mode of namespaces without the label, when the root
    /// namespace has none either.
    pub default_mtls: model::MtlsMode,
}

impl Mesh {
    pub fn new(trust_domain: &str) -> Self {
        Mesh {
            trust_domain: trust_domain.to_string(),
            default_mtls: model::MtlsMode::Permissive,
        }
    }
}

/// The resource called `name` as the index says it is now; None if it does
/// not (or no longer) exist.
pub fn resource(index: &Index, name: &str, mesh: &Mesh) -> Option<Resource> {
    let kind = if let Some(uid) = name.strip_prefix("workload/") {
        resource::Kind::Workload(match index.workload_entry_by_uid(uid) {
            Some(e) => workload_entry(index, e)?,
            None => workload(index, index.pod_by_uid(uid)?, mesh)?,
        })
    } else if let Some(rest) = name.strip_prefix("service/") {
        let (ns, svc) = rest.split_once('/')?;
        resource::Kind::Service(service(index, index.service(ns, svc)?, mesh))
    } else if let Some(rest) = name.strip_prefix("authorization/") {
        let (ns, policy) = rest.split_once('/')?;
        resource::Kind::Authorization(authorization(index, index.policy(ns, policy)?))
    } else if let Some(rest) = name.strip_prefix("authentication/") {
        let (ns, ra) = rest.split_once('/')?;
        let ra = index.request_authentication(ns, ra)?;
        resource::Kind::Authentication(index.compiled_authentication(ra).resource)
    } else if let Some(rest) = name.strip_prefix("trafficpolicy/") {
        let (ns, policy) = rest.split_once('/')?;
        resource::Kind::TrafficPolicy(crate::traffic::translate(
            index,
            index.traffic_policy(ns, policy)?,
        )?)
    } else if let Some(td) = name.strip_prefix("bundle/") {
        let b = index.trust_bundle(td)?;
        resource::Kind::TrustBundle(quicmesh_proto::config::TrustBundle {
            trust_domain: b.trust_domain.clone(),
            roots: b.roots.clone(),
            sequence: b.sequence,
        })
    } else if let Some(route) = index.route_by_resource(name) {
        resource::Kind::HttpRoute(http_route(index, route)?)
    } else {
        return None;
    };
    Some(Resource {
        name: name.to_string(),
        version: 0,
        kind: Some(kind),
    })
}

/// Every resource of the index, by name.
pub fn all(index: &Index, mesh: &Mesh) -> BTreeMap<String, Resource> {
    let names = index
        .pods()
        .map(|p| workload_name(&p.uid))
        .chain(
            index
                .services()
                .map(|s| service_name(&s.namespace, &s.name)),
        )
        .chain(
            index
                .policies()
                .map(|p| authorization_name(&p.namespace, &p.name)),
        )
        .chain(index.routes().map(model::Route::resource_name))
        .chain(
            index
                .request_authentications()
                .map(|r| crate::index::authentication_name(&r.namespace, &r.name)),
        )
        .chain(
            index
                .traffic_policies()
                .map(|p| traffic_policy_name(&p.namespace, &p.name)),
        )
        .chain(
            index
                .trust_bundles()
                .map(|b| crate::index::bundle_name(&b.trust_domain)),
        )
        .chain(index.workload_entries().map(|e| workload_name(&e.uid())));
    names
        .filter_map(|n| resource(index, &n, mesh).map(|r| (n, r)))
        .collect()
}

/// An HTTPRoute for the waypoints, with the parents that accepted it; None
/// when no parent did (it goes nowhere; its status says why).
fn http_route(index: &Index, r: &model::Route) -> Option<quicmesh_proto::config::HttpRoute> {
    let compiled = r.compile(index);
    let route = compiled.route?;
    let parents: Vec<quicmesh_core::route::wire::Parent> = compiled
        .parents
        .iter()
        .filter(|(_, c)| c.first().is_some_and(|c| c.status))
        .map(
            |((namespace, name, port), _)| quicmesh_core::route::wire::Parent {
                namespace: namespace.clone(),
                name: name.clone(),
                port: *port,
            },
        )
        .collect();
    Some(quicmesh_core::route::wire::to_proto(&route, &parents))
}

/// The pod's namespace label, else the root namespace's, else the default.
/// An unknown label value is strict: a typo must not open plaintext.
pub fn mtls_mode(index: &Index, namespace: &str, mesh: &Mesh) -> model::MtlsMode {
    [namespace, index.root_namespace()]
        .iter()
        .find_map(|ns| index.namespace(ns)?.mtls_mode())
        .map_or(mesh.default_mtls, |m| m.unwrap_or(model::MtlsMode::Strict))
}

fn workload(index: &Index, pod: &model::Pod, mesh: &Mesh) -> Option<Workload> {
    // A pod without an address cannot be reached: not a resource yet.
    if pod.ips.is_empty() {
        return None;
    }
    let trust_domain = &mesh.trust_domain;
    let mtls_mode = match mtls_mode(index, &pod.namespace, mesh) {
        model::MtlsMode::Permissive => MtlsMode::Permissive,
        model::MtlsMode::Strict => MtlsMode::Strict,
    };
    let authorization_policies = index
        .policies()
        .filter(|p| index.selects_pod(p, pod))
        .map(|p| p.policy.name.clone())
        .collect();
    let own_waypoint = crate::waypoint::for_workload(index, pod);
    Some(Workload {
        mtls_mode: mtls_mode.into(),
        authorization_policies,
        uid: pod.uid.clone(),
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        service_account: pod.service_account.clone(),
        node: pod.node.clone().unwrap_or_default(),
        ips: pod.ips.iter().map(|ip| ip.to_string()).collect(),
        ready: pod.ready,
        in_mesh: index.in_mesh(pod),
        identity: format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            pod.namespace, pod.service_account
        ),
        waypoints: waypoints_of(index, pod, own_waypoint.as_ref(), mesh),
        waypoint: own_waypoint.map(|w| waypoint(index, w, mesh)),
    })
}

/// A WorkloadEntry as ztunnels see it: in the mesh, ready, on no node of
/// ours, to be reached over the tunnel and to prove `identity`. None while
/// a pod holds its address (the pod wins: an entry never hides a pod).
fn workload_entry(index: &Index, e: &model::WorkloadEntry) -> Option<Workload> {
    if let Some(p) = index.pods().find(|p| p.ips.contains(&e.address)) {
        tracing::warn!(
            entry = %format!("{}/{}", e.namespace, e.name),
            address = %e.address,
            pod = %format!("{}/{}", p.namespace, p.name),
            "WorkloadEntry ignored: a pod has its address"
        );
        return None;
    }
    let service_account = quicmesh_core::identity::SpiffeId::parse(&e.identity)
        .ok()
        .and_then(|id| {
            id.namespace_and_service_account()
                .ok()
                .map(|(_, sa)| sa.to_string())
        })
        .unwrap_or_default();
    Some(Workload {
        uid: e.uid(),
        name: e.name.clone(),
        namespace: e.namespace.clone(),
        service_account,
        node: String::new(),
        ips: vec![e.address.to_string()],
        ready: true,
        in_mesh: true,
        identity: e.identity.clone(),
        // Not ours to admit traffic to: no ztunnel of this mesh serves it.
        mtls_mode: MtlsMode::Strict.into(),
        authorization_policies: Vec::new(),
        waypoints: Vec::new(),
        waypoint: None,
    })
}

/// A waypoint as ztunnels reach it: its identity and its ready pods'
/// addresses (none while it is not usable: what it would carry is
/// refused, never sent around it).
fn waypoint(index: &Index, w: crate::waypoint::Waypoint, mesh: &Mesh) -> Waypoint {
    Waypoint {
        identity: w.identity(&mesh.trust_domain),
        addresses: crate::waypoint::ready_pods(index, &w)
            .flat_map(|p| p.ips.iter().map(ToString::to_string))
            .collect(),
        namespace: w.namespace,
        name: w.name,
    }
}

/// The identities of the (usable) waypoints that serve `pod`: those of the
/// Services it is an endpoint of, and `own`, the one its traffic goes
/// through when addressed to it. Sorted, without repeats.
fn waypoints_of(
    index: &Index,
    pod: &model::Pod,
    own: Option<&crate::waypoint::Waypoint>,
    mesh: &Mesh,
) -> Vec<String> {
    let mut out: Vec<String> = index
        .services_in(&pod.namespace)
        .filter_map(|svc| Some((svc, crate::waypoint::for_service(index, svc)?)))
        .filter(|(svc, _)| fronts(index, svc, pod))
        .map(|(_, w)| w)
        .chain(own.cloned())
        .filter(|w| crate::waypoint::usable(index, w))
        .map(|w| w.identity(&mesh.trust_domain))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether `pod` is an endpoint of `svc`: by its EndpointSlices when it has
/// any (by pod name or address), else by its selector — as [`endpoints`]
/// decides, without building them.
fn fronts(index: &Index, svc: &model::Service, pod: &model::Pod) -> bool {
    let mut slices = index.slices_for(&svc.namespace, &svc.name).peekable();
    if slices.peek().is_some() {
        return slices.any(|s| {
            s.endpoints.iter().any(|ep| match &ep.pod {
                Some(name) if index.pod(&svc.namespace, name).is_some() => name == &pod.name,
                _ => ep.ips.iter().any(|ip| pod.ips.contains(ip)),
            })
        });
    }
    svc.selector
        .as_ref()
        .is_some_and(|sel| selects(sel, &pod.labels))
}

fn authorization(index: &Index, ap: &model::AuthorizationPolicy) -> Authorization {
    let scope = match &ap.target {
        PolicyTarget::Selector(_) => AuthorizationScope::Workload,
        PolicyTarget::Namespace if ap.namespace == index.root_namespace() => {
            AuthorizationScope::Mesh
        }
        PolicyTarget::Namespace => AuthorizationScope::Namespace,
        PolicyTarget::Attached(_) => AuthorizationScope::Waypoint,
    };
    let targets = match &ap.target {
        PolicyTarget::Attached(ts) => ts
            .iter()
            .map(|t| {
                let (kind, name) = match t {
                    Target::Gateway(n) => ("Gateway", n.as_str()),
                    Target::Service(n) => ("Service", n.as_str()),
                    // Every waypoint: only the mesh's root namespace may
                    // say so. From elsewhere the proxies read an unknown
                    // kind, which fails closed on the namespace's own.
                    Target::GatewayClass if ap.namespace != index.root_namespace() => {
                        ("GatewayClass outside the root namespace", "")
                    }
                    Target::GatewayClass => ("GatewayClass", crate::waypoint::WAYPOINT_CLASS),
                    Target::Unknown(k) => (k.as_str(), ""),
                };
                AuthorizationTarget {
                    kind: kind.into(),
                    name: name.into(),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let p = &ap.policy;
    let action = match p.action {
        authz::Action::Allow => AuthorizationAction::Allow,
        authz::Action::Deny => AuthorizationAction::Deny,
        authz::Action::Audit => AuthorizationAction::Audit,
    };
    let strings = |v: &[authz::StringMatch]| v.iter().map(ToString::to_string).collect();
    let nets = |v: &[authz::IpNet]| v.iter().map(ToString::to_string).collect();
    let ports = |v: &[u16]| v.iter().map(|p| u32::from(*p)).collect();
    Authorization {
        name: ap.name.clone(),
        namespace: ap.namespace.clone(),
        scope: scope.into(),
        action: action.into(),
        rules: p
            .rules
            .iter()
            .map(|r| AuthorizationRule {
                from: r
                    .from
                    .iter()
                    .map(|s| AuthorizationSource {
                        principals: strings(&s.principals),
                        not_principals: strings(&s.not_principals),
                        namespaces: strings(&s.namespaces),
                        not_namespaces: strings(&s.not_namespaces),
                        ip_blocks: nets(&s.ip_blocks),
                        not_ip_blocks: nets(&s.not_ip_blocks),
                        via_waypoint: s.via_waypoint,
                        request_principals: strings(&s.request_principals),
                        not_request_principals: strings(&s.not_request_principals),
                        l7: s.l7,
                    })
                    .collect(),
                to: r
                    .to
                    .iter()
                    .map(|o| AuthorizationOperation {
                        ports: ports(&o.ports),
                        not_ports: ports(&o.not_ports),
                        methods: strings(&o.methods),
                        not_methods: strings(&o.not_methods),
                        paths: strings(&o.paths),
                        not_paths: strings(&o.not_paths),
                        hosts: strings(&o.hosts),
                        not_hosts: strings(&o.not_hosts),
                        l7: o.l7,
                    })
                    .collect(),
                when: r
                    .when
                    .iter()
                    .map(|c| {
                        let texts =
                            |v: &[authz::l7::Value]| v.iter().map(ToString::to_string).collect();
                        AuthorizationCondition {
                            key: c.key.to_string(),
                            values: texts(&c.values),
                            not_values: texts(&c.not_values),
                        }
                    })
                    .collect(),
                l7: r.l7,
            })
            .collect(),
        invalid: match &ap.target {
            PolicyTarget::Attached(ts)
                if ap.namespace != index.root_namespace() && ts.contains(&Target::GatewayClass) =>
            {
                format!(
                    "spec.targetRefs: the GatewayClass is targeted only from the root namespace {:?}",
                    index.root_namespace()
                )
            }
            _ => p.invalid.clone().unwrap_or_default(),
        },
        warnings: ap.warnings.clone(),
        targets,
    }
}

fn service(index: &Index, svc: &model::Service, mesh: &Mesh) -> Service {
    let ports = svc
        .ports
        .iter()
        .map(|p| ServicePort {
            name: p.name.clone(),
            port: p.port.into(),
            target_port: match p.target {
                TargetPort::Number(n) => n.into(),
                TargetPort::Name(_) => 0,
            },
            app_protocol: p.protocol().unwrap_or_default(),
        })
        .collect();
    Service {
        name: svc.name.clone(),
        namespace: svc.namespace.clone(),
        vips: svc.vips.iter().map(|ip| ip.to_string()).collect(),
        ports,
        endpoints: endpoints(index, svc),
        waypoint: crate::waypoint::for_service(index, svc).map(|w| waypoint(index, w, mesh)),
    }
}

/// Endpoints from EndpointSlices when the service has any; otherwise from
/// its selector (file mode, where nothing writes slices).
fn endpoints(index: &Index, svc: &model::Service) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let mut slices = index.slices_for(&svc.namespace, &svc.name).peekable();
    if slices.peek().is_some() {
        for slice in slices {
            for ep in &slice.endpoints {
                for ip in &ep.ips {
                    let uid = ep
                        .pod
                        .as_ref()
                        .and_then(|name| index.pod(&svc.namespace, name))
                        .or_else(|| index.pods().find(|p| p.ips.contains(ip)))
                        .map(|p| p.uid.clone())
                        .unwrap_or_default();
                    out.push(Endpoint {
                        workload_uid: uid,
                        ip: ip.to_string(),
                        ready: ep.ready,
                        ports: slice
                            .ports
                            .iter()
                            .map(|(n, p)| (n.clone(), u32::from(*p)))
                            .collect(),
                    });
                }
            }
        }
    } else if let Some(sel) = &svc.selector {
        for pod in index
            .pods_in(&svc.namespace)
            .filter(|p| selects(sel, &p.labels))
        {
            let ports = target_ports(svc, |name| pod.named_port(name));
            for ip in &pod.ips {
                out.push(Endpoint {
                    workload_uid: pod.uid.clone(),
                    ip: ip.to_string(),
                    ready: pod.ready,
                    ports: ports.clone(),
                });
            }
        }
    }
    // WorkloadEntries the selector picks (no EndpointSlice lists them).
    if let Some(sel) = &svc.selector {
        for e in index
            .workload_entries()
            .filter(|e| e.namespace == svc.namespace && selects(sel, &e.labels))
        {
            let ip = e.address.to_string();
            if out.iter().any(|ep| ep.ip == ip) {
                continue;
            }
            let ports = target_ports(svc, |name| e.ports.get(name).copied());
            out.push(Endpoint {
                workload_uid: e.uid(),
                ip,
                ready: true,
                ports,
            });
        }
    }
    out.sort_by(|a, b| (&a.ip, &a.workload_uid).cmp(&(&b.ip, &b.workload_uid)));
    out
}

/// The port of each of `svc`'s ports at an endpoint whose named ports
/// `named` resolves (a port it cannot resolve is left out).
fn target_ports(
    svc: &model::Service,
    named: impl Fn(&str) -> Option<u16>,
) -> std::collections::HashMap<String, u32> {
    svc.ports
        .iter()
        .filter_map(|sp| {
            let port = match &sp.target {
                TargetPort::Number(n) => Some(*n),
                TargetPort::Name(name) => named(name),
            }?;
            Some((sp.name.clone(), u32::from(port)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::DEFAULT_ROOT_NAMESPACE;
    use crate::model::*;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(name: &str, lbl: &[(&str, &str)], ip: &str, ready: bool) -> Object {
        Object::Pod(Pod {
            uid: format!("uid-{name}"),
            name: name.into(),
            namespace: "shop".into(),
            labels: labels(lbl),
            annotations: Default::default(),
            service_account: "web".into(),
            node: Some("node1".into()),
            ips: if ip.is_empty() {
                vec![]
            } else {
                vec![ip.parse().unwrap()]
            },
            ready,
            containers: vec![Container {
                name: "c".into(),
                command: vec![],
                args: vec![],
                env: vec![],
                ports: vec![ContainerPort {
                    name: Some("http".into()),
                    port: 8080,
                }],
            }],
        })
    }

    /// A ready pod of shop's waypoint `waypoint` (10.244.2.9, node2), as
    /// provisioning makes it.
    fn shop_waypoint_pod(ix: &Index) -> Pod {
        let provision =
            crate::waypoint::provision(&crate::waypoint::find(ix, "shop", "waypoint").unwrap());
        Pod {
            uid: "uid-wp".into(),
            name: "waypoint-0".into(),
            namespace: "shop".into(),
            labels: provision.pod_labels,
            annotations: Default::default(),
            service_account: provision.service_account,
            node: Some("node2".into()),
            ips: vec!["10.244.2.9".parse().unwrap()],
            ready: true,
            containers: vec![],
        }
    }

    fn index() -> Index {
        let mut ix = Index::new();
        ix.upsert(Object::Namespace(Namespace {
            name: "shop".into(),
            labels: labels(&[(DATAPLANE_MODE_LABEL, DATAPLANE_MODE_AMBIENT)]),
        }));
        ix.upsert(pod("web-1", &[("app", "web")], "10.244.1.2", true));
        ix.upsert(pod("web-2", &[("app", "web")], "10.244.2.2", false));
        ix.upsert(pod("db-1", &[("app", "db")], "10.244.2.3", true));
        ix.upsert(pod("pending", &[("app", "web")], "", false));
        ix.upsert(Object::Service(model::Service {
            name: "web".into(),
            namespace: "shop".into(),
            vips: vec!["10.96.0.10".parse().unwrap()],
            ports: vec![
                model::ServicePort {
                    name: "http".into(),
                    port: 80,
                    target: TargetPort::Name("http".into()),
                    app_protocol: None,
                },
                model::ServicePort {
                    name: "admin".into(),
                    port: 9000,
                    target: TargetPort::Number(9001),
                    app_protocol: Some("kubernetes.io/h2c".into()),
                },
            ],
            selector: Some(labels(&[("app", "web")])),
            labels: Labels::new(),
        }));
        ix
    }

    const ENTRIES: &str = r#"
apiVersion: quicmesh.io/v1alpha1
kind: WorkloadEntry
metadata: {name: west-web, namespace: shop}
spec:
  address: 10.244.11.10
  identity: spiffe://west.example/ns/shop/sa/web
  labels: {app: web}
  ports: {http: 8080}
---
apiVersion: quicmesh.io/v1alpha1
kind: WorkloadEntry
metadata: {name: spire-thing, namespace: shop}
spec: {address: 10.244.1.2, identity: spiffe://spire.example/thing}
---
apiVersion: quicmesh.io/v1alpha1
kind: WorkloadEntry
metadata: {name: no-identity, namespace: shop}
spec: {address: 10.0.0.1}
---
apiVersion: quicmesh.io/v1alpha1
kind: WorkloadEntry
metadata: {name: bad-identity, namespace: shop}
spec: {address: 10.0.0.1, identity: "spiffe://Upper.example/x"}
---
apiVersion: quicmesh.io/v1alpha1
kind: WorkloadEntry
metadata: {name: bad-address, namespace: shop}
spec: {address: west-web, identity: "spiffe://west.example/x"}
---
apiVersion: quicmesh.io/v1alpha2
kind: WorkloadEntry
metadata: {name: later, namespace: shop}
spec: {address: 10.0.0.1, identity: "spiffe://west.example/x"}
"#;

    #[test]
    fn workload_entries_are_workloads_of_their_identity_and_endpoints_of_services() {
        let parsed = crate::sources::manifest::parse_file(ENTRIES, "entries.yaml").unwrap();
        let errors: Vec<String> = parsed
            .docs
            .iter()
            .filter_map(|d| {
                d.as_ref()
                    .err()
                    .map(|e| format!("{}: {}", e.field, e.reason))
            })
            .collect();
        assert_eq!(errors.len(), 4, "{errors:?}");
        for want in [
            "spec.identity: is required",
            "Upper",
            "not an IP address",
            "not served",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{want}: {errors:?}"
            );
        }
        let mut ix = index();
        for o in parsed.docs.into_iter().flatten().flatten() {
            let dirty = ix.upsert(o);
            assert!(dirty.contains("service/shop/web"), "{dirty:?}");
        }
        let mesh = Mesh::new("cluster.local");
        let Some(resource::Kind::Workload(w)) =
            resource(&ix, "workload/workloadentry/shop/west-web", &mesh)
                .unwrap()
                .kind
        else {
            panic!()
        };
        assert_eq!(
            (w.identity.as_str(), w.ips.as_slice(), w.node.as_str()),
            (
                "spiffe://west.example/ns/shop/sa/web",
                &["10.244.11.10".to_string()][..],
                ""
            )
        );
        assert!(w.in_mesh && w.ready && w.authorization_policies.is_empty());
        // The Service selects it, its named port resolved from the entry.
        let Some(resource::Kind::Service(svc)) =
            resource(&ix, "service/shop/web", &mesh).unwrap().kind
        else {
            panic!()
        };
        let e = svc
            .endpoints
            .iter()
            .find(|e| e.ip == "10.244.11.10")
            .expect("selected");
        assert_eq!(e.workload_uid, "workloadentry/shop/west-web");
        assert_eq!(e.ports.get("http"), Some(&8080));
        assert_eq!(e.ports.get("admin"), Some(&9001));
        // An entry never hides a pod: web-1 holds 10.244.1.2.
        assert!(resource(&ix, "workload/workloadentry/shop/spire-thing", &mesh).is_none());
        // ...and gives way to a pod that takes its address later.
        let dirty = ix.upsert(pod("west-web-twin", &[], "10.244.11.10", true));
        assert!(
            dirty.contains("workload/workloadentry/shop/west-web"),
            "{dirty:?}"
        );
        assert!(resource(&ix, "workload/workloadentry/shop/west-web", &mesh).is_none());
    }

    #[test]
    fn a_waypoint_label_sends_services_to_the_ready_waypoint_pods() {
        let mut ix = index();
        let mesh = Mesh::new("cluster.local");
        let waypoint_of = |ix: &Index| {
            let Some(resource::Kind::Service(s)) =
                resource(ix, "service/shop/web", &mesh).unwrap().kind
            else {
                panic!()
            };
            s.waypoint
        };
        assert_eq!(waypoint_of(&ix), None);
        let dirty = ix.upsert(Object::Namespace(Namespace {
            name: "shop".into(),
            labels: labels(&[
                (DATAPLANE_MODE_LABEL, DATAPLANE_MODE_AMBIENT),
                (crate::waypoint::USE_WAYPOINT_LABEL, "waypoint"),
            ]),
        }));
        assert!(dirty.contains("service/shop/web"), "{dirty:?}");
        let w = waypoint_of(&ix).expect("labeled");
        assert_eq!(w.identity, "spiffe://cluster.local/ns/shop/sa/waypoint");
        // The Service's workloads name the waypoint (their ztunnel admits
        // its tunnels); a pod behind no Service with a waypoint does not.
        let waypoints = |ix: &Index, uid: &str| {
            let Some(resource::Kind::Workload(w)) = resource(ix, &format!("workload/{uid}"), &mesh)
                .unwrap()
                .kind
            else {
                panic!()
            };
            w.waypoints
        };
        assert!(dirty.contains("workload/uid-web-1"), "{dirty:?}");
        assert_eq!(
            waypoints(&ix, "uid-web-1"),
            ["spiffe://cluster.local/ns/shop/sa/waypoint"]
        );
        assert!(waypoints(&ix, "uid-db-1").is_empty());
        // The Service opts out: its workloads follow, dirtied by the change.
        let mut web = ix.service("shop", "web").unwrap().clone();
        web.labels = labels(&[(crate::waypoint::USE_WAYPOINT_LABEL, "none")]);
        let dirty = ix.upsert(Object::Service(web.clone()));
        assert!(dirty.contains("workload/uid-web-1"), "{dirty:?}");
        assert!(waypoints(&ix, "uid-web-1").is_empty());
        web.labels = Labels::new();
        ix.upsert(Object::Service(web));
        assert!(w.addresses.is_empty(), "no waypoint pod yet");
        let dirty = ix.upsert(Object::Pod(shop_waypoint_pod(&ix)));
        assert!(dirty.contains("service/shop/web"), "{dirty:?}");
        assert_eq!(waypoint_of(&ix).unwrap().addresses, ["10.244.2.9"]);
        let Some(resource::Kind::Workload(wp)) =
            resource(&ix, "workload/uid-wp", &mesh).unwrap().kind
        else {
            panic!()
        };
        assert!(
            !wp.in_mesh,
            "a waypoint pod is not captured, though its namespace is ambient"
        );
    }

    #[test]
    fn a_waypoint_for_workloads_takes_pod_addressed_traffic_not_the_services() {
        use crate::waypoint::{USE_WAYPOINT_LABEL, WAYPOINT_CLASS, WAYPOINT_FOR_LABEL};
        let mut ix = index();
        // `td`: as `workload_of` translates.
        let mesh = Mesh::new("td");
        let gateway = |value: &str| {
            Object::Gateway(Gateway {
                name: "waypoint".into(),
                namespace: "shop".into(),
                class: WAYPOINT_CLASS.into(),
                labels: labels(&[(WAYPOINT_FOR_LABEL, value)]),
                uid: String::new(),
                generation: 1,
            })
        };
        ix.upsert(Object::Namespace(Namespace {
            name: "shop".into(),
            labels: labels(&[
                (DATAPLANE_MODE_LABEL, DATAPLANE_MODE_AMBIENT),
                (USE_WAYPOINT_LABEL, "waypoint"),
            ]),
        }));
        ix.upsert(gateway("workload"));
        let service_waypoint = |ix: &Index| {
            let Some(resource::Kind::Service(s)) =
                resource(ix, "service/shop/web", &mesh).unwrap().kind
            else {
                panic!()
            };
            s.waypoint
        };
        let identity = "spiffe://td/ns/shop/sa/waypoint";
        assert_eq!(service_waypoint(&ix), None, "Services do not use it");
        // Every workload of the namespace does, whether behind a Service
        // or not, and its ztunnel vouches for the waypoint.
        for uid in ["uid-web-1", "uid-db-1"] {
            let w = workload_of(&ix, uid);
            let wp = w.waypoint.expect(uid);
            assert_eq!(
                (wp.namespace.as_str(), wp.name.as_str()),
                ("shop", "waypoint")
            );
            assert_eq!(wp.identity, identity);
            assert!(wp.addresses.is_empty(), "no waypoint pod yet");
            assert_eq!(w.waypoints, [identity]);
        }
        // Its pod becomes ready: every workload is told where it is.
        let dirty = ix.upsert(Object::Pod(shop_waypoint_pod(&ix)));
        assert!(dirty.contains("workload/uid-db-1"), "{dirty:?}");
        assert_eq!(
            workload_of(&ix, "uid-db-1").waypoint.unwrap().addresses,
            ["10.244.2.9"]
        );
        let wp = workload_of(&ix, "uid-wp");
        assert!(
            wp.waypoint.is_none() && wp.waypoints.is_empty(),
            "not the waypoint's own pod"
        );
        // A pod's own `none` opts it out.
        let dirty = ix.upsert(pod(
            "db-1",
            &[("app", "db"), (USE_WAYPOINT_LABEL, "none")],
            "10.244.2.3",
            true,
        ));
        assert!(dirty.contains("workload/uid-db-1"), "{dirty:?}");
        let db = workload_of(&ix, "uid-db-1");
        assert!(db.waypoint.is_none() && db.waypoints.is_empty(), "{db:?}");
        // `all`: the Services too; the Gateway's change reaches both.
        let dirty = ix.upsert(gateway("all"));
        assert!(
            dirty.contains("service/shop/web") && dirty.contains("workload/uid-web-1"),
            "{dirty:?}"
        );
        assert_eq!(service_waypoint(&ix).unwrap().identity, identity);
        assert!(workload_of(&ix, "uid-web-1").waypoint.is_some());
        // `service`: the Services alone; web-1 is still vouched for
        // through its Service, db-1 (behind none) is not.
        ix.upsert(gateway("service"));
        assert!(service_waypoint(&ix).is_some());
        let web = workload_of(&ix, "uid-web-1");
        assert!(web.waypoint.is_none());
        assert_eq!(web.waypoints, [identity]);
        // `none`: neither.
        ix.upsert(gateway("none"));
        assert!(service_waypoint(&ix).is_none());
        let web = workload_of(&ix, "uid-web-1");
        assert!(web.waypoint.is_none() && web.waypoints.is_empty());
        // A waypoint that is not usable (another pod runs as its service
        // account): workloads are still sent to it, with no address (their
        // traffic is refused, never sent around it), and not vouched for.
        ix.upsert(gateway("workload"));
        let mut impostor = match pod("impostor", &[], "10.244.3.3", true) {
            Object::Pod(p) => p,
            _ => unreachable!(),
        };
        impostor.service_account = "waypoint".into();
        ix.upsert(Object::Pod(impostor));
        let web = workload_of(&ix, "uid-web-1");
        assert!(web.waypoint.unwrap().addresses.is_empty());
        assert!(web.waypoints.is_empty());
    }

    #[test]
    fn workloads_carry_identity_and_mesh_membership() {
        let ix = index();
        let all = all(&ix, &Mesh::new("cluster.local"));
        let Some(resource::Kind::Workload(w)) = &all["workload/uid-web-1"].kind else {
            panic!()
        };
        assert_eq!(w.identity, "spiffe://cluster.local/ns/shop/sa/web");
        assert!(w.in_mesh && w.ready);
        assert_eq!(w.ips, ["10.244.1.2"]);
        assert!(
            !all.contains_key("workload/uid-pending"),
            "a pod without IP is no resource"
        );
    }

    #[test]
    fn selector_endpoints_resolve_named_and_numbered_target_ports() {
        let ix = index();
        let r = resource(&ix, "service/shop/web", &Mesh::new("cluster.local")).unwrap();
        let Some(resource::Kind::Service(s)) = r.kind else {
            panic!()
        };
        assert_eq!(s.vips, ["10.96.0.10"]);
        assert_eq!(s.ports[0].target_port, 0, "named: resolved per endpoint");
        assert_eq!(s.ports[1].target_port, 9001);
        assert_eq!(s.ports[0].app_protocol, "http", "from the port name");
        assert_eq!(
            s.ports[1].app_protocol, "kubernetes.io/h2c",
            "appProtocol wins"
        );
        let ips: Vec<_> = s
            .endpoints
            .iter()
            .map(|e| (e.ip.as_str(), e.ready))
            .collect();
        assert_eq!(
            ips,
            [("10.244.1.2", true), ("10.244.2.2", false)],
            "pending and db excluded"
        );
        assert_eq!(s.endpoints[0].ports["http"], 8080);
        assert_eq!(s.endpoints[0].ports["admin"], 9001);
    }

    #[test]
    fn accepted_http_routes_go_to_waypoints_and_follow_their_parent() {
        let mut ix = index();
        let route = Object::Route(model::Route {
            kind: RouteKind::Http,
            name: "split".into(),
            namespace: "shop".into(),
            created: 7,
            generation: 1,
            spec: serde_json::json!({
                "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
                "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]
            }),
        });
        let dirty = ix.upsert(route);
        assert!(dirty.contains("httproute/shop/split"), "{dirty:?}");
        let mesh = Mesh::new("cluster.local");
        let r = resource(&ix, "httproute/shop/split", &mesh).expect("accepted");
        let Some(resource::Kind::HttpRoute(pr)) = r.kind else {
            panic!()
        };
        let (back, parents) = quicmesh_core::route::wire::from_proto(&pr).unwrap();
        assert_eq!((back.name.as_str(), back.created), ("split", 7));
        assert_eq!(parents[0].name, "web");
        assert_eq!(parents[0].port, Some(80));
        assert!(all(&ix, &mesh).contains_key("httproute/shop/split"));
        // Without its parent Service the route is not accepted: it goes.
        let dirty = ix.delete(&crate::model::Key {
            kind: crate::model::Kind::Service,
            namespace: "shop".into(),
            name: "web".into(),
        });
        assert!(dirty.contains("httproute/shop/split"), "{dirty:?}");
        assert!(resource(&ix, "httproute/shop/split", &mesh).is_none());
    }

    #[test]
    fn slices_win_over_selectors() {
        let mut ix = index();
        ix.upsert(Object::EndpointSlice(EndpointSlice {
            name: "web-abc".into(),
            namespace: "shop".into(),
            service: "web".into(),
            ports: vec![("http".into(), 8080)],
            endpoints: vec![SliceEndpoint {
                ips: vec!["10.244.2.3".parse().unwrap()],
                ready: true,
                pod: Some("db-1".into()),
                node: Some("node2".into()),
            }],
        }));
        let Some(resource::Kind::Service(s)) = resource(&ix, "service/shop/web", &Mesh::new("td"))
            .unwrap()
            .kind
        else {
            panic!()
        };
        assert_eq!(s.endpoints.len(), 1);
        assert_eq!(s.endpoints[0].workload_uid, "uid-db-1");
    }

    #[test]
    fn namespace_label_controls_membership_and_translation_is_deterministic() {
        let mut ix = index();
        ix.upsert(Object::Namespace(Namespace {
            name: "shop".into(),
            labels: Labels::new(),
        }));
        let a = all(&ix, &Mesh::new("td"));
        let Some(resource::Kind::Workload(w)) = &a["workload/uid-web-1"].kind else {
            panic!()
        };
        assert!(!w.in_mesh);
        assert_eq!(a, all(&ix, &Mesh::new("td")));
        assert!(resource(&ix, "service/shop/nope", &Mesh::new("td")).is_none());
        assert!(resource(&ix, "bogus/x", &Mesh::new("td")).is_none());
    }

    fn policy(ns: &str, name: &str, spec: serde_json::Value) -> Object {
        Object::AuthorizationPolicy(crate::policy::compile(ns, name, &spec))
    }

    fn workload_of(ix: &Index, uid: &str) -> Workload {
        match resource(ix, &format!("workload/{uid}"), &Mesh::new("td"))
            .unwrap()
            .kind
        {
            Some(resource::Kind::Workload(w)) => w,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn policies_translate_with_scope_and_reach_selected_workloads() {
        let mut ix = index();
        let d = ix.upsert(policy(
            "shop",
            "web-only",
            serde_json::json!({"selector": {"matchLabels": {"app": "web"}}, "rules": [{}]}),
        ));
        // The policy and the workloads it selects change; db-1 does not.
        assert!(d.contains("authorization/shop/web-only"), "{d:?}");
        assert!(d.contains("workload/uid-web-1") && d.contains("workload/uid-web-2"));
        assert!(!d.contains("workload/uid-db-1"));
        ix.upsert(policy(
            "shop",
            "ns-wide",
            serde_json::json!({"action": "DENY"}),
        ));
        ix.upsert(policy(
            DEFAULT_ROOT_NAMESPACE,
            "mesh-wide",
            serde_json::json!({"action": "AUDIT", "rules": [{}]}),
        ));
        ix.upsert(policy(
            DEFAULT_ROOT_NAMESPACE,
            "all-dbs",
            serde_json::json!({"selector": {"matchLabels": {"app": "db"}}}),
        ));
        assert_eq!(
            workload_of(&ix, "uid-web-1").authorization_policies,
            vec!["shop/web-only".to_string()]
        );
        assert_eq!(
            workload_of(&ix, "uid-db-1").authorization_policies,
            vec![format!("{DEFAULT_ROOT_NAMESPACE}/all-dbs")]
        );
        let a = all(&ix, &Mesh::new("td"));
        let scope = |name: &str| match &a[name].kind {
            Some(resource::Kind::Authorization(p)) => (p.scope(), p.action()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            scope("authorization/shop/web-only"),
            (AuthorizationScope::Workload, AuthorizationAction::Allow)
        );
        assert_eq!(
            scope("authorization/shop/ns-wide"),
            (AuthorizationScope::Namespace, AuthorizationAction::Deny)
        );
        assert_eq!(
            scope(&format!("authorization/{DEFAULT_ROOT_NAMESPACE}/mesh-wide")),
            (AuthorizationScope::Mesh, AuthorizationAction::Audit)
        );
        // Relabeling a pod out of the selector drops the policy from it.
        ix.upsert(pod("web-1", &[("app", "other")], "10.244.1.2", true));
        assert!(workload_of(&ix, "uid-web-1")
            .authorization_policies
            .is_empty());
    }

    #[test]
    fn invalid_policies_carry_their_reason() {
        let mut ix = index();
        ix.upsert(policy(
            "shop",
            "broken",
            serde_json::json!({"rules": [{"from": [{"source": {"ipBlocks": ["nope"]}}]}]}),
        ));
        let r = resource(&ix, "authorization/shop/broken", &Mesh::new("td")).unwrap();
        let Some(resource::Kind::Authorization(p)) = r.kind else {
            panic!()
        };
        assert!(p.invalid.contains("ipBlocks[0]"), "{}", p.invalid);
        assert!(p.rules.is_empty());
    }

    #[test]
    fn mtls_mode_from_namespace_then_root_then_default() {
        let mut ix = index();
        let ns = |name: &str, mode: Option<&str>| {
            let mut l = labels(&[(DATAPLANE_MODE_LABEL, DATAPLANE_MODE_AMBIENT)]);
            if let Some(m) = mode {
                l.insert(MTLS_MODE_LABEL.into(), m.into());
            }
            Object::Namespace(Namespace {
                name: name.into(),
                labels: l,
            })
        };
        let mode = |ix: &Index| workload_of(ix, "uid-web-1").mtls_mode();
        assert_eq!(mode(&ix), quicmesh_proto::config::MtlsMode::Permissive);
        let strict_default = Mesh {
            default_mtls: model::MtlsMode::Strict,
            ..Mesh::new("td")
        };
        assert_eq!(
            mtls_mode(&ix, "shop", &strict_default),
            model::MtlsMode::Strict
        );
        // The root namespace's label is the mesh default; it touches every workload.
        let d = ix.upsert(ns(DEFAULT_ROOT_NAMESPACE, Some("strict")));
        assert!(d.contains("workload/uid-db-1"), "{d:?}");
        assert_eq!(mode(&ix), quicmesh_proto::config::MtlsMode::Strict);
        ix.upsert(ns("shop", Some("permissive")));
        assert_eq!(mode(&ix), quicmesh_proto::config::MtlsMode::Permissive);
        // A typo fails closed.
        ix.upsert(ns("shop", Some("permisive")));
        assert_eq!(mode(&ix), quicmesh_proto::config::MtlsMode::Strict);
    }
}
