//! The waypoint's view of the mesh, built from the controller's resources:
//! every Service port it can be sent to (a [`Parent`] per VIP and port,
//! with the routes attached to it), every workload whose own address it
//! can be sent to (the workloads that name this waypoint), and every
//! backend's ready endpoints with their identities. Rebuilt whole on each
//! update; an update it cannot build from is refused (NACK) and the
//! previous view stays.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quicmesh_core::authz::set::PolicySet;
use quicmesh_core::control::stream::ConfigSink;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::route::wire::{self, Parent as RouteParent};
use quicmesh_core::route::{BackendRef, HttpRoute, RouteTable};
use quicmesh_proto::config::{resource, Resource};

use crate::authz::Access;
use crate::proxy::workload::{backend_name, Addressed, AddressedWorkload};
use crate::proxy::{Parent, Tables, Versioned};
use crate::upstream::{Endpoint, Protocol};

/// The waypoint the tables are built for (`namespace/name` of its Gateway).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scope {
    pub namespace: String,
    pub name: String,
}

impl Scope {
    /// Whether the controller sends `svc`'s traffic to this waypoint. With
    /// no scope (tests, a waypoint fed by hand), every Service is served.
    fn serves(scope: Option<&Scope>, svc: &quicmesh_proto::config::Service) -> bool {
        match (scope, &svc.waypoint) {
            (None, _) => true,
            (Some(s), Some(w)) => s.namespace == w.namespace && s.name == w.name,
            (Some(_), None) => false,
        }
    }

    /// Whether the controller sends traffic addressed to the workload `w`
    /// itself to this waypoint: a workload of its namespace that names
    /// it. With no scope, every workload is served.
    fn serves_workload(scope: Option<&Scope>, w: &quicmesh_proto::config::Workload) -> bool {
        match (scope, &w.waypoint) {
            (None, _) => true,
            (Some(s), Some(wp)) => {
                s.namespace == w.namespace && s.namespace == wp.namespace && s.name == wp.name
            }
            (Some(_), None) => false,
        }
    }
}

/// Builds the tables from the complete resource set; `cluster_domain` makes
/// Service host names (`<name>.<namespace>.svc.<cluster_domain>`). Every
/// Service's endpoints are known (any may be a route's backend); only the
/// Services the waypoint serves are parents (destinations it accepts).
pub fn tables(
    resources: &BTreeMap<String, Resource>,
    cluster_domain: &str,
    scope: Option<&Scope>,
) -> Result<Tables, String> {
    let mut identities: HashMap<&str, SpiffeId> = HashMap::new();
    let mut routes: Vec<(Arc<HttpRoute>, Vec<RouteParent>)> = Vec::new();
    let mut policies = PolicySet::default();
    let mut workloads = Vec::new();
    for (name, r) in resources {
        match &r.kind {
            Some(resource::Kind::Workload(w)) => {
                let id =
                    SpiffeId::parse(&w.identity).map_err(|e| format!("{name}: identity: {e}"))?;
                identities.insert(w.uid.as_str(), id);
                workloads.push(w);
            }
            Some(resource::Kind::HttpRoute(h)) => {
                let (route, parents) = wire::from_proto(h).map_err(|e| format!("{name}: {e}"))?;
                routes.push((Arc::new(route), parents));
            }
            // Never fails: what cannot be understood denies what it targets.
            Some(resource::Kind::Authorization(a)) => policies.insert(a),
            Some(resource::Kind::Service(_)) => {}
            None => return Err(format!("{name}: resource without a kind")),
        }
    }
    let mut t = Tables::default();
    // Each workload's policies, once every policy is known.
    for w in &workloads {
        let access = Arc::new(Access {
            policies: policies.for_workload(&w.namespace, &w.authorization_policies),
        });
        t.access.insert(w.uid.clone(), access);
    }
    t.workloads = addressed(resources, &workloads, &identities, scope)?;
    for (name, r) in resources {
        let Some(resource::Kind::Service(svc)) = &r.kind else {
            continue;
        };
        let bad = |what: String| format!("{name}: {what}");
        let vips = svc
            .vips
            .iter()
            .map(|v| {
                v.parse::<IpAddr>()
                    .map_err(|_| bad(format!("{v:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for sp in &svc.ports {
            let port =
                u16::try_from(sp.port).map_err(|_| bad(format!("{} is not a port", sp.port)))?;
            let service = BackendRef {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                port,
            };
            // Ready endpoints with a known identity and a port for this one.
            let mut endpoints = Vec::new();
            for e in svc.endpoints.iter().filter(|e| e.ready) {
                let Some(identity) = identities.get(e.workload_uid.as_str()) else {
                    continue;
                };
                let Some(target) = target_port(e, sp) else {
                    continue;
                };
                let ip: IpAddr =
                    e.ip.parse()
                        .map_err(|_| bad(format!("{:?} is not an IP address", e.ip)))?;
                endpoints.push(Endpoint {
                    addr: SocketAddr::new(ip, target),
                    identity: identity.clone(),
                    protocol: Protocol::of(&sp.app_protocol),
                    workload: e.workload_uid.as_str().into(),
                });
            }
            let attached = routes.iter().filter(|(_, parents)| {
                parents.iter().any(|p| {
                    p.namespace == svc.namespace
                        && p.name == svc.name
                        && p.port.is_none_or(|pp| pp == port)
                })
            });
            // Producer routes (the Service's namespace), and consumer
            // routes by their namespace.
            let mut producer = Vec::new();
            let mut consumers: HashMap<String, Vec<Arc<HttpRoute>>> = HashMap::new();
            for (r, _) in attached {
                if r.namespace == svc.namespace {
                    producer.push(r.clone());
                } else {
                    consumers
                        .entry(r.namespace.clone())
                        .or_default()
                        .push(r.clone());
                }
            }
            if Scope::serves(scope, svc) {
                let parent = Arc::new(Parent {
                    protocol: Protocol::of(&sp.app_protocol),
                    service: service.clone(),
                    host: format!("{}.{}.svc.{cluster_domain}", svc.name, svc.namespace),
                    routes: RouteTable::new(producer),
                    consumers: consumers
                        .into_iter()
                        .map(|(ns, rs)| (ns, RouteTable::new(rs)))
                        .collect(),
                });
                for vip in &vips {
                    t.parents
                        .insert(SocketAddr::new(*vip, port), parent.clone());
                }
            }
            t.endpoints.insert(service, endpoints);
        }
    }
    Ok(t)
}

/// The workloads whose own addresses this waypoint serves, by IP, with
/// what their ports speak. Two workloads claiming one IP (a finished pod
/// whose address was given to a new one): the ready one, else the first
/// by resource name.
fn addressed(
    resources: &BTreeMap<String, Resource>,
    workloads: &[&quicmesh_proto::config::Workload],
    identities: &HashMap<&str, SpiffeId>,
    scope: Option<&Scope>,
) -> Result<Addressed, String> {
    let served: Vec<_> = workloads
        .iter()
        .filter(|w| Scope::serves_workload(scope, w))
        .collect();
    if served.is_empty() {
        return Ok(Addressed::default());
    }
    let mut protocols = workload_protocols(resources);
    let mut out: HashMap<IpAddr, (bool, Arc<AddressedWorkload>)> = HashMap::new();
    for w in served {
        let identity = identities
            .get(w.uid.as_str())
            .ok_or_else(|| format!("workload/{}: no identity", w.uid))?
            .clone();
        let entry = Arc::new(AddressedWorkload {
            namespace: w.namespace.clone(),
            uid: w.uid.as_str().into(),
            identity,
            protocols: protocols.remove(&w.uid).unwrap_or_default(),
        });
        for v in &w.ips {
            let ip: IpAddr = v
                .parse()
                .map_err(|_| format!("workload/{}: {v:?} is not an IP address", w.uid))?;
            match out.get(&ip) {
                Some((ready, _)) if *ready || !w.ready => {}
                _ => {
                    out.insert(ip, (w.ready, entry.clone()));
                }
            }
        }
    }
    Ok(Addressed(
        out.into_iter().map(|(ip, (_, w))| (ip, w)).collect(),
    ))
}

/// What the ports of each workload (by uid; the port its app listens on)
/// speak, by the Service ports that select it there, ready or not: a
/// declared protocol over an undeclared one, else the first Service by
/// name. Endpoints without a usable port are left out, as for Services.
fn workload_protocols(
    resources: &BTreeMap<String, Resource>,
) -> HashMap<String, HashMap<u16, Protocol>> {
    let mut out: HashMap<String, HashMap<u16, Protocol>> = HashMap::new();
    for r in resources.values() {
        let Some(resource::Kind::Service(svc)) = &r.kind else {
            continue;
        };
        for sp in &svc.ports {
            let protocol = Protocol::of(&sp.app_protocol);
            for e in &svc.endpoints {
                let Some(target) = target_port(e, sp) else {
                    continue;
                };
                let known = out
                    .entry(e.workload_uid.clone())
                    .or_default()
                    .entry(target)
                    .or_insert(protocol);
                if *known == Protocol::Auto {
                    *known = protocol;
                }
            }
        }
    }
    out
}

/// The tables in effect, replaced whole by each accepted update.
pub struct Live {
    cluster_domain: String,
    scope: Option<Scope>,
    /// What the waypoint serves (its data path's directory).
    current: Arc<Versioned>,
    /// Updates taken (`ack`) and refused (`nack`).
    updates: Family<Vec<(String, String)>, Counter>,
    /// 1 while the config stream is up.
    connected: Gauge,
    /// A config has been applied since start.
    configured: std::sync::atomic::AtomicBool,
}

impl Live {
    pub fn new(cluster_domain: &str, scope: Option<Scope>) -> Arc<Self> {
        Arc::new(Live {
            cluster_domain: cluster_domain.to_string(),
            scope,
            current: Arc::default(),
            updates: Family::default(),
            connected: Gauge::default(),
            configured: Default::default(),
        })
    }

    /// Whether a config from the controller is in effect.
    pub fn configured(&self) -> bool {
        self.configured.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The directory the data path reads; each applied config replaces
    /// its tables.
    pub fn directory(&self) -> Arc<Versioned> {
        self.current.clone()
    }

    pub fn tables(&self) -> Arc<Tables> {
        self.current.tables()
    }

    pub fn register(&self, reg: &mut Registry) {
        reg.register(
            "waypoint_config_updates",
            "Config updates from the controller, by result (ack: applied; nack: refused, the previous config stays)",
            self.updates.clone(),
        );
        reg.register(
            "waypoint_config_connected",
            "1 while the config stream to the controller is up",
            self.connected.clone(),
        );
    }

    /// What the waypoint serves, for the admin endpoint.
    pub fn dump(&self) -> serde_json::Value {
        let (version, t) = self.current.snapshot();
        let name = |b: &BackendRef| format!("{}/{}:{}", b.namespace, b.name, b.port);
        let destinations: BTreeMap<String, serde_json::Value> = t
            .parents
            .iter()
            .map(|(addr, p)| {
                let routes: Vec<String> = std::iter::once(&p.routes)
                    .chain(p.consumers.values())
                    .flat_map(|t| t.routes())
                    .map(|r| format!("{}/{}", r.namespace, r.name))
                    .collect();
                (
                    addr.to_string(),
                    serde_json::json!({"service": name(&p.service), "host": p.host, "routes": routes}),
                )
            })
            .collect();
        let endpoints: BTreeMap<String, Vec<String>> = t
            .endpoints
            .iter()
            .map(|(b, eps)| {
                (
                    name(b),
                    eps.iter()
                        .map(|e| format!("{} ({})", e.addr, e.identity))
                        .collect(),
                )
            })
            .collect();
        let policies: BTreeMap<String, Vec<&str>> = t
            .access
            .iter()
            .map(|(uid, a)| {
                (
                    uid.clone(),
                    a.policies.iter().map(|p| p.name.as_str()).collect(),
                )
            })
            .collect();
        // Workload addresses it serves (any port), with the ports whose
        // protocol a Service port declares.
        let workloads: BTreeMap<String, serde_json::Value> = t
            .workloads
            .0
            .iter()
            .map(|(ip, w)| {
                let ports: BTreeMap<u16, String> = w
                    .protocols
                    .iter()
                    .map(|(port, p)| (*port, format!("{p:?}")))
                    .collect();
                (
                    backend_name(*ip),
                    serde_json::json!({"workload": &*w.uid, "identity": w.identity.as_str(), "ports": ports}),
                )
            })
            .collect();
        serde_json::json!({"version": version, "scope": self.scope, "connected": self.connected.get() == 1,
            "destinations": destinations, "workloads": workloads, "endpoints": endpoints, "policies": policies})
    }
}

impl ConfigSink for Live {
    fn version(&self) -> u64 {
        self.current.version()
    }

    fn apply(&self, version: u64, resources: &BTreeMap<String, Resource>) -> Result<(), String> {
        let t = tables(resources, &self.cluster_domain, self.scope.as_ref())?;
        self.current.set(version, t);
        self.configured
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn connected(&self, up: bool) {
        self.connected.set(i64::from(up));
    }

    fn update_result(&self, result: &'static str) {
        self.updates
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }
}

/// The port an endpoint's app listens on for a Service port: the
/// endpoint's own (named target ports), else the Service port's target.
fn target_port(
    e: &quicmesh_proto::config::Endpoint,
    sp: &quicmesh_proto::config::ServicePort,
) -> Option<u16> {
    e.ports
        .get(&sp.name)
        .copied()
        .or((sp.target_port != 0).then_some(sp.target_port))
        .and_then(|p| u16::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use quicmesh_proto::config::{Endpoint as PEndpoint, Service, ServicePort, Workload};

    use super::*;
    use crate::proxy::Directory;

    fn res(name: &str, kind: resource::Kind) -> (String, Resource) {
        (
            name.to_string(),
            Resource {
                name: name.to_string(),
                version: 0,
                kind: Some(kind),
            },
        )
    }

    fn resources() -> BTreeMap<String, Resource> {
        let route = HttpRoute {
            namespace: "shop".into(),
            name: "r".into(),
            created: 0,
            rules: vec![],
        };
        let on_80 = RouteParent {
            namespace: "shop".into(),
            name: "web".into(),
            port: Some(80),
        };
        [
            res(
                "workload/w1",
                resource::Kind::Workload(Workload {
                    uid: "w1".into(),
                    identity: "spiffe://cluster.local/ns/shop/sa/web".into(),
                    ..Default::default()
                }),
            ),
            res(
                "service/shop/web",
                resource::Kind::Service(Service {
                    name: "web".into(),
                    namespace: "shop".into(),
                    vips: vec!["10.96.0.10".into()],
                    ports: vec![
                        ServicePort {
                            name: "http".into(),
                            port: 80,
                            target_port: 0,
                            app_protocol: "http".into(),
                        },
                        ServicePort {
                            name: "admin".into(),
                            port: 9000,
                            target_port: 9001,
                            app_protocol: String::new(),
                        },
                    ],
                    endpoints: vec![
                        PEndpoint {
                            workload_uid: "w1".into(),
                            ip: "10.244.1.2".into(),
                            ready: true,
                            ports: [("http".to_string(), 8080)].into(),
                        },
                        PEndpoint {
                            workload_uid: "w1".into(),
                            ip: "10.244.1.3".into(),
                            ready: false,
                            ports: [("http".to_string(), 8080)].into(),
                        },
                        PEndpoint {
                            workload_uid: "unknown".into(),
                            ip: "10.244.1.4".into(),
                            ready: true,
                            ports: Default::default(),
                        },
                    ],
                    waypoint: None,
                }),
            ),
            res(
                "httproute/shop/r",
                resource::Kind::HttpRoute(wire::to_proto(&route, &[on_80])),
            ),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn services_become_parents_with_their_routes_and_ready_endpoints() {
        let t = tables(&resources(), "cluster.local", None).unwrap();
        let http = t.parents[&"10.96.0.10:80".parse().unwrap()].clone();
        assert_eq!(http.host, "web.shop.svc.cluster.local");
        assert_eq!(
            http.routes.routes().len(),
            1,
            "the route attached to port 80"
        );
        let admin = t.parents[&"10.96.0.10:9000".parse().unwrap()].clone();
        assert!(admin.routes.is_empty(), "not to port 9000");
        let eps = t.endpoints(&http.service);
        // Not the unready one, not the one whose workload is unknown.
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].addr, "10.244.1.2:8080".parse().unwrap());
        assert_eq!(
            eps[0].identity.as_str(),
            "spiffe://cluster.local/ns/shop/sa/web"
        );
        // A numbered target port applies where the endpoint names none.
        let admin_eps = t.endpoints(&admin.service);
        assert_eq!(admin_eps[0].addr, "10.244.1.2:9001".parse().unwrap());
        // The port's protocol decides the upstream HTTP version.
        assert_eq!(eps[0].protocol, Protocol::Http1);
        assert_eq!(admin_eps[0].protocol, Protocol::Auto);
        assert_eq!(
            Protocol::of("HTTP"),
            Protocol::Http1,
            "case does not matter"
        );
        assert_eq!(Protocol::of("kubernetes.io/H2C"), Protocol::Http2);
        assert_eq!(Protocol::of("grpc-web"), Protocol::Http1);
        assert_eq!(Protocol::of("mysql"), Protocol::Tcp);
    }

    #[test]
    fn consumer_routes_are_kept_apart_by_their_namespace() {
        let mut rs = resources();
        let consumer = HttpRoute {
            namespace: "front".into(),
            name: "c".into(),
            created: 0,
            rules: vec![],
        };
        let on_web = RouteParent {
            namespace: "shop".into(),
            name: "web".into(),
            port: None,
        };
        rs.extend([res(
            "httproute/front/c",
            resource::Kind::HttpRoute(wire::to_proto(&consumer, &[on_web])),
        )]);
        let t = tables(&rs, "cluster.local", None).unwrap();
        let http = t.parents[&"10.96.0.10:80".parse().unwrap()].clone();
        let names = |t: &RouteTable| {
            t.routes()
                .iter()
                .map(|r| format!("{}/{}", r.namespace, r.name))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&http.routes), ["shop/r"]);
        // Clients of front get front's routes only; anyone else the producer's.
        assert_eq!(names(http.routes_for(Some("front"))), ["front/c"]);
        assert_eq!(names(http.routes_for(Some("shop"))), ["shop/r"]);
        assert_eq!(names(http.routes_for(None)), ["shop/r"]);
        // Port 9000 (every port of web): the consumer route alone.
        let admin = t.parents[&"10.96.0.10:9000".parse().unwrap()].clone();
        assert!(admin.routes.is_empty());
        assert_eq!(names(admin.routes_for(Some("front"))), ["front/c"]);
    }

    #[test]
    fn a_waypoint_serves_only_the_services_sent_to_it() {
        let mine = Scope {
            namespace: "shop".into(),
            name: "waypoint".into(),
        };
        let mut rs = resources();
        let t = tables(&rs, "cluster.local", Some(&mine)).unwrap();
        assert!(t.parents.is_empty(), "web does not use this waypoint");
        assert_eq!(t.endpoints.len(), 2, "its endpoints are known all the same");
        let Some(resource::Kind::Service(svc)) = &mut rs.get_mut("service/shop/web").unwrap().kind
        else {
            panic!()
        };
        svc.waypoint = Some(quicmesh_proto::config::Waypoint {
            namespace: "shop".into(),
            name: "waypoint".into(),
            ..Default::default()
        });
        let t = tables(&rs, "cluster.local", Some(&mine)).unwrap();
        assert_eq!(t.parents.len(), 2, "both ports of web");
        let other = Scope {
            namespace: "shop".into(),
            name: "edge".into(),
        };
        assert!(tables(&rs, "cluster.local", Some(&other))
            .unwrap()
            .parents
            .is_empty());
    }

    #[test]
    fn a_waypoint_serves_the_addresses_of_the_workloads_that_name_it() {
        let mine = Scope {
            namespace: "shop".into(),
            name: "waypoint".into(),
        };
        let named = |ns: &str, name: &str| {
            Some(quicmesh_proto::config::Waypoint {
                namespace: ns.into(),
                name: name.into(),
                ..Default::default()
            })
        };
        let workload = |uid: &str, ns: &str, ip: &str, ready: bool, waypoint| {
            res(
                &format!("workload/{uid}"),
                resource::Kind::Workload(Workload {
                    uid: uid.into(),
                    namespace: ns.into(),
                    ips: vec![ip.into()],
                    ready,
                    identity: format!("spiffe://cluster.local/ns/{ns}/sa/{uid}"),
                    waypoint,
                    ..Default::default()
                }),
            )
        };
        let mut rs = resources();
        rs.extend([
            // w1 is web's endpoint at 10.244.1.2, and names this waypoint.
            workload("w1", "shop", "10.244.1.2", true, named("shop", "waypoint")),
            workload("w2", "shop", "10.244.1.5", true, named("shop", "edge")),
            workload("w3", "shop", "10.244.1.6", true, None),
            workload("w4", "front", "10.244.1.7", true, named("shop", "waypoint")),
            // A finished pod whose IP w1 reuses: w1 (ready) wins.
            workload("w0", "shop", "10.244.1.2", false, named("shop", "waypoint")),
        ]);
        let live = Live::new("cluster.local", Some(mine.clone()));
        live.apply(1, &rs).unwrap();
        let t = live.tables();
        assert_eq!(t.workloads.0.len(), 1, "w1's address only");
        // The Directory, through the live config and the tables alike.
        for d in [&*live.directory() as &dyn Directory, &*t as &dyn Directory] {
            let http = d.parent("10.244.1.2:8080".parse().unwrap()).unwrap();
            assert!(http.routes.is_empty());
            assert_eq!(http.protocol, Protocol::Http1, "web's port http is there");
            let eps = d.endpoints(&http.service);
            assert_eq!(eps.len(), 1);
            assert_eq!(eps[0].addr, "10.244.1.2:8080".parse().unwrap());
            assert_eq!(&*eps[0].workload, "w1");
            assert_eq!(
                eps[0].identity.as_str(),
                "spiffe://cluster.local/ns/shop/sa/w1"
            );
            assert!(d.access("w1").is_some(), "its policies are decided");
            // A port no Service declares: detected; admin's (9001, no
            // protocol) too.
            for port in [7777, 9001] {
                let p = d.parent(SocketAddr::new("10.244.1.2".parse().unwrap(), port));
                assert_eq!(p.unwrap().protocol, Protocol::Auto, "{port}");
            }
            // Workloads naming another waypoint, none, or of another
            // namespace: not served.
            for other in ["10.244.1.5:80", "10.244.1.6:80", "10.244.1.7:80"] {
                assert!(d.parent(other.parse().unwrap()).is_none(), "{other}");
            }
            // The Service is not served: web does not use this waypoint.
            assert!(d.parent("10.96.0.10:80".parse().unwrap()).is_none());
        }
        assert_eq!(
            live.dump()["workloads"]["10.244.1.2"]["ports"]["8080"],
            "Http1"
        );
        // An address that is not one is refused, for a served workload.
        let mut bad = rs.clone();
        bad.extend([workload(
            "w5",
            "shop",
            "pod-5",
            true,
            named("shop", "waypoint"),
        )]);
        let e = live.apply(2, &bad).unwrap_err();
        assert!(e.contains("workload/w5") && e.contains("pod-5"), "{e}");
        assert_eq!(live.version(), 1, "the previous view stays");
        // A declared protocol wins over an undeclared one for the port.
        let Some(resource::Kind::Service(svc)) = &mut rs.get_mut("service/shop/web").unwrap().kind
        else {
            panic!()
        };
        svc.endpoints[0].ports.clear();
        svc.ports[0].target_port = 8080;
        svc.ports[0].app_protocol = String::new();
        svc.ports[1].target_port = 8080;
        svc.ports[1].app_protocol = "grpc".into();
        let t = tables(&rs, "cluster.local", Some(&mine)).unwrap();
        assert_eq!(
            t.parent("10.244.1.2:8080".parse().unwrap())
                .unwrap()
                .protocol,
            Protocol::Http2
        );
    }

    #[test]
    fn a_bad_update_is_refused_and_the_previous_view_stays() {
        let live = Live::new("cluster.local", None);
        live.apply(3, &resources()).unwrap();
        live.update_result("ack");
        let mut bad = resources();
        let Some(resource::Kind::HttpRoute(h)) = &mut bad.get_mut("httproute/shop/r").unwrap().kind
        else {
            panic!()
        };
        h.rules.push(Default::default());
        h.rules[0].matches.push(quicmesh_proto::config::RouteMatch {
            path_type: 3,
            path: "(".into(),
            ..Default::default()
        });
        let e = live.apply(4, &bad).unwrap_err();
        assert!(e.starts_with("httproute/shop/r: rules[0]"), "{e}");
        assert_eq!(live.version(), 3);
        assert!(live
            .directory()
            .parent("10.96.0.10:80".parse().unwrap())
            .is_some());
    }
}
