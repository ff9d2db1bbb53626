//! What ztunnel knows about the mesh: workloads and services by address.
//! Pure data, no I/O. Built from the static workload file or from the
//! controller's resources; a resource set that does not validate is
//! rejected whole (the caller NACKs it and keeps the previous state).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use quicmesh_core::authz::Policy;
use quicmesh_core::identity::SpiffeId;
use quicmesh_proto::config::{resource, Resource};

use crate::config::{Workload, WorkloadFile};
use quicmesh_core::authz::set::{Destination, MtlsMode, PolicySet};

/// A workload with its identity resolved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeshWorkload {
    #[serde(flatten)]
    pub workload: Workload,
    pub identity: SpiffeId,
    /// Its namespace is in the mesh: traffic to it is tunnelled.
    pub in_mesh: bool,
    pub ready: bool,
    pub mtls_mode: MtlsMode,
    /// Every authorization policy that applies to it (mesh, namespace and
    /// selector), as the config dump shows them: by name.
    #[serde(serialize_with = "policy_names")]
    pub policies: Vec<Arc<Policy>>,
    /// The waypoints that serve it: their tunnels are vouched for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waypoints: Vec<SpiffeId>,
    /// Connections addressed to it (its IP) go through this waypoint
    /// instead of to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<MeshWaypoint>,
}

fn policy_names<S: serde::Serializer>(ps: &[Arc<Policy>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ps.iter().map(|p| &p.name))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    /// 0: resolved per endpoint by port name.
    pub target_port: u16,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceEndpoint {
    pub workload_uid: String,
    pub ip: IpAddr,
    pub ready: bool,
    pub ports: BTreeMap<String, u16>,
}

impl ServiceEndpoint {
    /// The endpoint's port for a service port.
    pub fn target(&self, sp: &ServicePort) -> Option<u16> {
        self.ports
            .get(&sp.name)
            .copied()
            .or((sp.target_port != 0).then_some(sp.target_port))
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MeshService {
    pub name: String,
    pub namespace: String,
    pub vips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<ServiceEndpoint>,
    /// Its traffic goes through this waypoint instead of to an endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<MeshWaypoint>,
}

/// A waypoint as ztunnel reaches it: one of its addresses, on the tunnel
/// port, presenting its identity.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeshWaypoint {
    pub namespace: String,
    pub name: String,
    pub identity: SpiffeId,
    /// Its ready pods; empty: the traffic it would carry is refused.
    pub addresses: Vec<IpAddr>,
}

impl MeshWaypoint {
    /// From the controller's form, or why not (`name`: the resource).
    fn from_proto(name: &str, w: &quicmesh_proto::config::Waypoint) -> Result<Self, String> {
        Ok(MeshWaypoint {
            namespace: w.namespace.clone(),
            name: w.name.clone(),
            identity: SpiffeId::parse(&w.identity)
                .map_err(|e| format!("{name}: waypoint identity: {e}"))?,
            addresses: w
                .addresses
                .iter()
                .map(|a| ip(&format!("{name}: waypoint address"), a))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// An address of the controller's resource `name`, or why not.
fn ip(name: &str, v: &str) -> Result<IpAddr, String> {
    v.parse()
        .map_err(|_| format!("{name}: {v:?} is not an IP address"))
}

/// Workloads and services, indexed by IP.
#[derive(Debug, Default, serde::Serialize)]
pub struct State {
    pub trust_domain: String,
    /// False only before the first config: then nothing inbound is allowed.
    pub configured: bool,
    /// Config version from the controller (0 for the static file).
    pub version: u64,
    #[serde(skip)]
    by_ip: HashMap<IpAddr, Arc<MeshWorkload>>,
    #[serde(skip)]
    by_uid: HashMap<String, Arc<MeshWorkload>>,
    #[serde(skip)]
    by_vip: HashMap<IpAddr, Arc<MeshService>>,
    workloads: Vec<Arc<MeshWorkload>>,
    services: Vec<Arc<MeshService>>,
    pub authorization: PolicySet,
}

impl State {
    /// Nothing known yet (before the controller's first update).
    pub fn empty(trust_domain: &str) -> Self {
        State {
            trust_domain: trust_domain.to_string(),
            ..Default::default()
        }
    }

    pub fn from_file(file: &WorkloadFile) -> Self {
        let mut s = State {
            trust_domain: file.trust_domain.clone(),
            configured: true,
            ..Default::default()
        };
        for w in &file.workloads {
            let identity = SpiffeId::workload(&file.trust_domain, &w.namespace, &w.service_account)
                .expect("validated when the file was loaded");
            s.add_workload(MeshWorkload {
                workload: w.clone(),
                identity,
                in_mesh: true,
                ready: true,
                mtls_mode: MtlsMode::default(),
                policies: Vec::new(),
                waypoints: Vec::new(),
                waypoint: None,
            });
        }
        s
    }

    fn add_workload(&mut self, w: MeshWorkload) {
        let w = Arc::new(w);
        for ip in &w.workload.ips {
            self.by_ip.insert(*ip, w.clone());
        }
        self.by_uid.insert(w.workload.uid.clone(), w.clone());
        self.workloads.push(w);
    }

    /// Builds the state from the controller's resources, or says which
    /// resource is invalid and why.
    pub fn from_resources(
        trust_domain: &str,
        version: u64,
        resources: &BTreeMap<String, Resource>,
    ) -> Result<Self, String> {
        let mut s = State {
            trust_domain: trust_domain.to_string(),
            configured: true,
            version,
            ..Default::default()
        };
        let port = |name: &str, v: u32| -> Result<u16, String> {
            u16::try_from(v).map_err(|_| format!("{name}: {v} is not a port"))
        };
        for r in resources.values() {
            if let Some(resource::Kind::Authorization(a)) = &r.kind {
                s.authorization.insert(a);
            }
        }
        for (name, r) in resources {
            match &r.kind {
                // Routes, JWT authentication and traffic policies are for waypoints: a node
                // proxy has nothing to do with them. Trust bundles are
                // taken by the config stream itself (identity::bundles).
                Some(
                    resource::Kind::Authorization(_)
                    | resource::Kind::HttpRoute(_)
                    | resource::Kind::Authentication(_)
                    | resource::Kind::TrafficPolicy(_)
                    | resource::Kind::TrustBundle(_),
                ) => {}
                Some(resource::Kind::Workload(w)) => {
                    let identity = SpiffeId::parse(&w.identity)
                        .map_err(|e| format!("{name}: identity: {e}"))?;
                    let ips = w
                        .ips
                        .iter()
                        .map(|v| ip(name, v))
                        .collect::<Result<Vec<_>, _>>()?;
                    s.add_workload(MeshWorkload {
                        workload: Workload {
                            uid: w.uid.clone(),
                            name: w.name.clone(),
                            namespace: w.namespace.clone(),
                            service_account: w.service_account.clone(),
                            node: w.node.clone(),
                            ips,
                        },
                        identity,
                        in_mesh: w.in_mesh,
                        ready: w.ready,
                        mtls_mode: MtlsMode::from_proto(w.mtls_mode),
                        policies: s
                            .authorization
                            .for_workload(&w.namespace, &w.authorization_policies),
                        waypoints: w
                            .waypoints
                            .iter()
                            .map(|id| {
                                SpiffeId::parse(id)
                                    .map_err(|e| format!("{name}: waypoint identity: {e}"))
                            })
                            .collect::<Result<_, _>>()?,
                        waypoint: w
                            .waypoint
                            .as_ref()
                            .map(|wp| MeshWaypoint::from_proto(name, wp))
                            .transpose()?,
                    });
                }
                Some(resource::Kind::Service(svc)) => {
                    let ports = svc
                        .ports
                        .iter()
                        .map(|p| {
                            Ok(ServicePort {
                                name: p.name.clone(),
                                port: port(name, p.port)?,
                                target_port: port(name, p.target_port)?,
                            })
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    let endpoints = svc
                        .endpoints
                        .iter()
                        .map(|e| {
                            Ok(ServiceEndpoint {
                                workload_uid: e.workload_uid.clone(),
                                ip: ip(name, &e.ip)?,
                                ready: e.ready,
                                ports: e
                                    .ports
                                    .iter()
                                    .map(|(k, v)| Ok((k.clone(), port(name, *v)?)))
                                    .collect::<Result<_, String>>()?,
                            })
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    let ms = Arc::new(MeshService {
                        name: svc.name.clone(),
                        namespace: svc.namespace.clone(),
                        vips: svc
                            .vips
                            .iter()
                            .map(|v| ip(name, v))
                            .collect::<Result<_, _>>()?,
                        ports,
                        endpoints,
                        waypoint: svc
                            .waypoint
                            .as_ref()
                            .map(|w| MeshWaypoint::from_proto(name, w))
                            .transpose()?,
                    });
                    for vip in &ms.vips {
                        s.by_vip.insert(*vip, ms.clone());
                    }
                    s.services.push(ms);
                }
                None => return Err(format!("{name}: resource without a kind")),
            }
        }
        Ok(s)
    }

    /// The workload at `ip`, if any.
    pub fn workload_at(&self, ip: IpAddr) -> Option<&Arc<MeshWorkload>> {
        self.by_ip.get(&ip)
    }

    pub fn workload(&self, uid: &str) -> Option<&Arc<MeshWorkload>> {
        self.by_uid.get(uid)
    }

    /// The service whose VIP is `ip`, if any.
    pub fn service_at(&self, ip: IpAddr) -> Option<&Arc<MeshService>> {
        self.by_vip.get(&ip)
    }

    /// What authorization needs to know about the destination pod `uid`
    /// (of `namespace`, which enrollment told us).
    pub fn destination<'a>(&'a self, uid: &str, namespace: &'a str) -> Destination<'a> {
        match self.workload(uid) {
            Some(w) => Destination {
                configured: self.configured,
                namespace,
                policies: Some(&w.policies),
                mtls: w.mtls_mode,
                waypoints: &w.waypoints,
            },
            None => Destination {
                configured: self.configured,
                namespace,
                policies: None,
                mtls: MtlsMode::Strict,
                waypoints: &[],
            },
        }
    }

    pub fn workloads(&self) -> &[Arc<MeshWorkload>] {
        &self.workloads
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmesh_proto::config::{Endpoint, Service, ServicePort as PPort, Workload as PWorkload};

    #[test]
    fn finds_workloads_by_any_ip() {
        let f = WorkloadFile::parse(
            "trustDomain: td.example\nworkloads:\n- {uid: a, name: a, namespace: ns, serviceAccount: sa, node: n1, ips: [10.0.0.1, 'fd00::1']}\n",
            "x",
        )
        .unwrap();
        let s = State::from_file(&f);
        let w = s.workload_at("fd00::1".parse().unwrap()).unwrap();
        assert_eq!(w.identity.as_str(), "spiffe://td.example/ns/ns/sa/sa");
        assert!(s.workload_at("10.0.0.1".parse().unwrap()).is_some());
        assert!(s.workload_at("10.0.0.2".parse().unwrap()).is_none());
    }

    fn res(name: &str, kind: resource::Kind) -> (String, Resource) {
        (
            name.to_string(),
            Resource {
                name: name.into(),
                version: 1,
                kind: Some(kind),
            },
        )
    }

    #[test]
    fn builds_from_resources_and_rejects_invalid_ones() {
        let w = PWorkload {
            uid: "u1".into(),
            name: "web-0".into(),
            namespace: "shop".into(),
            service_account: "web".into(),
            node: "node1".into(),
            ips: vec!["10.244.1.2".into()],
            ready: true,
            in_mesh: true,
            identity: "spiffe://cluster.local/ns/shop/sa/web".into(),
            ..Default::default()
        };
        let svc = Service {
            name: "web".into(),
            namespace: "shop".into(),
            vips: vec!["10.96.0.10".into()],
            ports: vec![PPort {
                name: "http".into(),
                port: 80,
                target_port: 0,
                app_protocol: "http".into(),
            }],
            endpoints: vec![Endpoint {
                workload_uid: "u1".into(),
                ip: "10.244.1.2".into(),
                ready: true,
                ports: [("http".to_string(), 8080)].into(),
            }],
            waypoint: None,
        };
        let mut map: BTreeMap<_, _> = [
            res("workload/u1", resource::Kind::Workload(w.clone())),
            res("service/shop/web", resource::Kind::Service(svc)),
        ]
        .into();
        let s = State::from_resources("cluster.local", 7, &map).unwrap();
        let ms = s.service_at("10.96.0.10".parse().unwrap()).unwrap();
        assert_eq!(ms.endpoints[0].target(&ms.ports[0]), Some(8080));
        assert_eq!(s.workload("u1").unwrap().workload.name, "web-0");
        assert_eq!(s.version, 7);

        let mut bad = w;
        bad.ips = vec!["not-an-ip".into()];
        map.insert(
            "workload/u2".into(),
            res("workload/u2", resource::Kind::Workload(bad)).1,
        );
        let e = State::from_resources("cluster.local", 8, &map).unwrap_err();
        assert!(e.contains("workload/u2") && e.contains("not-an-ip"), "{e}");
        map.remove("workload/u2");

        // A waypoint: its identity and addresses are checked like the rest.
        let with_waypoint = |identity: &str| {
            let mut m = map.clone();
            let Some(resource::Kind::Service(svc)) =
                &mut m.get_mut("service/shop/web").unwrap().kind
            else {
                panic!()
            };
            svc.waypoint = Some(quicmesh_proto::config::Waypoint {
                namespace: "shop".into(),
                name: "waypoint".into(),
                identity: identity.into(),
                addresses: vec!["10.244.2.9".into()],
            });
            State::from_resources("cluster.local", 9, &m)
        };
        let s = with_waypoint("spiffe://cluster.local/ns/shop/sa/waypoint").unwrap();
        let wp = s
            .service_at("10.96.0.10".parse().unwrap())
            .unwrap()
            .waypoint
            .clone();
        assert_eq!(
            wp.unwrap().addresses,
            ["10.244.2.9".parse::<IpAddr>().unwrap()]
        );
        let e = with_waypoint("not-spiffe").unwrap_err();
        assert!(e.contains("service/shop/web: waypoint identity"), "{e}");

        // A workload's own waypoint (for traffic addressed to it): checked
        // the same way, kept on the workload, shown in the dump.
        let with_own = |identity: &str, address: &str| {
            let mut m = map.clone();
            let Some(resource::Kind::Workload(w)) = &mut m.get_mut("workload/u1").unwrap().kind
            else {
                panic!()
            };
            w.waypoint = Some(quicmesh_proto::config::Waypoint {
                namespace: "shop".into(),
                name: "waypoint".into(),
                identity: identity.into(),
                addresses: vec![address.into()],
            });
            State::from_resources("cluster.local", 10, &m)
        };
        let s = with_own("spiffe://cluster.local/ns/shop/sa/waypoint", "10.244.2.9").unwrap();
        let own = s.workload_at("10.244.1.2".parse().unwrap()).unwrap();
        let wp = own.waypoint.as_ref().unwrap();
        assert_eq!(
            wp.identity.as_str(),
            "spiffe://cluster.local/ns/shop/sa/waypoint"
        );
        assert_eq!(wp.addresses, ["10.244.2.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            serde_json::to_value(&s).unwrap()["workloads"][0]["waypoint"]["name"],
            "waypoint"
        );
        assert!(
            s.service_at("10.96.0.10".parse().unwrap())
                .unwrap()
                .waypoint
                .is_none(),
            "the Service's traffic does not follow the workload's waypoint"
        );
        let e = with_own("nope", "10.244.2.9").unwrap_err();
        assert!(e.contains("workload/u1: waypoint identity"), "{e}");
        let e = with_own("spiffe://cluster.local/ns/shop/sa/waypoint", "pod-9").unwrap_err();
        assert!(
            e.contains("workload/u1: waypoint address: \"pod-9\" is not an IP address"),
            "{e}"
        );
        // Without one, the dump says nothing of it.
        let s = State::from_resources("cluster.local", 11, &map).unwrap();
        assert!(s.workload("u1").unwrap().waypoint.is_none());
        assert!(serde_json::to_value(&s).unwrap()["workloads"][0]
            .get("waypoint")
            .is_none());
    }

    #[test]
    fn workloads_get_their_policies_and_mode() {
        use quicmesh_proto::config::{Authorization, AuthorizationAction, AuthorizationScope};
        let policy = |name: &str, scope: AuthorizationScope| Authorization {
            name: name.into(),
            namespace: "shop".into(),
            scope: scope.into(),
            action: AuthorizationAction::Allow.into(),
            ..Default::default()
        };
        let w = PWorkload {
            uid: "u1".into(),
            namespace: "shop".into(),
            ips: vec!["10.244.1.2".into()],
            identity: "spiffe://cluster.local/ns/shop/sa/web".into(),
            mtls_mode: quicmesh_proto::config::MtlsMode::Strict.into(),
            authorization_policies: vec!["shop/selected".into()],
            ..Default::default()
        };
        let map: BTreeMap<_, _> = [
            res("workload/u1", resource::Kind::Workload(w)),
            res(
                "authorization/shop/ns-wide",
                resource::Kind::Authorization(policy("ns-wide", AuthorizationScope::Namespace)),
            ),
            res(
                "authorization/shop/selected",
                resource::Kind::Authorization(policy("selected", AuthorizationScope::Workload)),
            ),
        ]
        .into();
        let s = State::from_resources("cluster.local", 1, &map).unwrap();
        let d = s.destination("u1", "shop");
        assert!(d.configured);
        assert_eq!(d.mtls, MtlsMode::Strict);
        let names: Vec<&str> = d
            .policies
            .unwrap()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["shop/ns-wide", "shop/selected"]);
        // No record: strict (its namespace's mode is unknown), no policy list.
        let d = s.destination("u-new", "shop");
        assert_eq!(d.mtls, MtlsMode::Strict);
        assert!(d.policies.is_none());
        // Nothing before the first config.
        assert!(
            !State::empty("cluster.local")
                .destination("u1", "shop")
                .configured
        );
        // The dump names each workload's policies.
        let dump = serde_json::to_value(&s).unwrap();
        assert_eq!(
            dump["workloads"][0]["policies"],
            serde_json::json!(["shop/ns-wide", "shop/selected"])
        );
    }
}
