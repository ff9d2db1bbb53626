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
    let mut authentications = Vec::new();
    let mut traffic = Vec::new();
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
            // Never fails either: what cannot be used refuses what it targets.
            Some(resource::Kind::Authentication(a)) => {
                authentications.push(Arc::new(crate::authn::Authentication::from_proto(a)))
            }
            // Trust bundles are taken by the config stream itself
            // (identity::bundles).
            Some(resource::Kind::Service(_) | resource::Kind::TrustBundle(_)) => {}
            // Checked by the controller with the same code: one that does
            // not read is a controller of another version; refused whole.
            Some(resource::Kind::TrafficPolicy(p)) => traffic.push(
                quicmesh_core::traffic::Policy::from_proto(p)
                    .map_err(|e| format!("{name}: {e}"))?,
            ),
            None => return Err(format!("{name}: resource without a kind")),
        }
    }
    let mut t = Tables {
        authn: Arc::new(crate::authn::Table {
            authentications,
            waypoint: scope.map(|s| (s.namespace.clone(), s.name.clone())),
            ..crate::authn::Table::default()
        }),
        ..Tables::default()
    };
    // Attached policies name the waypoint by its Gateway; without a scope
    // (a waypoint fed by hand) only Service and GatewayClass ones apply.
    let gateway = scope.map_or(("", ""), |s| (s.namespace.as_str(), s.name.as_str()));
    t.waypoint_policies = policies.for_waypoint(gateway, None);
    t.policy_free = policies.by_name.is_empty() && policies.attached.is_empty();
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
                    policies: policies
                        .for_waypoint(gateway, Some((svc.namespace.as_str(), svc.name.as_str()))),
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
            if let Some(e) =
                quicmesh_core::traffic::effective(&traffic, &svc.namespace, &svc.name, port)
            {
                t.traffic.insert(service.clone(), Arc::new(e));
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
    /// The version in effect, when updates were last taken or refused.
    gauges: quicmesh_core::metrics::ConfigGauges,
    /// A config has been applied since start.
    configured: std::sync::atomic::AtomicBool,
    /// The key sets of `jwksUri` rules.
    jwks: Arc<crate::jwks::Fetcher>,
}

impl Live {
    pub fn new(cluster_domain: &str, scope: Option<Scope>) -> Arc<Self> {
        Self::with_fetcher(cluster_domain, scope, crate::jwks::Fetcher::new())
    }

    /// With the fetcher of `jwksUri` key sets given (tests: other roots).
    pub fn with_fetcher(
        cluster_domain: &str,
        scope: Option<Scope>,
        jwks: Arc<crate::jwks::Fetcher>,
    ) -> Arc<Self> {
        Arc::new(Live {
            jwks,
            cluster_domain: cluster_domain.to_string(),
            scope,
            current: Arc::default(),
            updates: Family::default(),
            connected: Gauge::default(),
            gauges: Default::default(),
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
            "quicmesh_waypoint_config_updates",
            "Config updates from the controller, by result (ack: applied; nack: refused, the previous config stays)",
            self.updates.clone(),
        );
        reg.register(
            "quicmesh_waypoint_config_connected",
            "1 while the config stream to the controller is up",
            self.connected.clone(),
        );
        self.jwks.register(reg);
        self.gauges.register(reg);
    }

    /// What the waypoint serves, for the admin endpoint.
    pub fn dump(&self) -> serde_json::Value {
        let (version, t) = self.current.snapshot();
        let name = |b: &BackendRef| format!("{}/{}:{}", b.namespace, b.name, b.port);
        // Every route attached to a Service served, once, with its rules.
        let mut routes: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for p in t.parents.values() {
            for r in std::iter::once(&p.routes)
                .chain(p.consumers.values())
                .flat_map(|t| t.routes())
            {
                let entry = routes
                    .entry(format!("{}/{}", r.namespace, r.name))
                    .or_insert_with(|| {
                        let mut d = r.dump();
                        d["services"] = serde_json::json!([]);
                        d
                    });
                let service = serde_json::json!(name(&p.service));
                if let Some(services) = entry["services"].as_array_mut() {
                    if !services.contains(&service) {
                        services.push(service);
                    }
                }
            }
        }
        let destinations: BTreeMap<String, serde_json::Value> = t
            .parents
            .iter()
            .map(|(addr, p)| {
                let routes: Vec<String> = std::iter::once(&p.routes)
                    .chain(p.consumers.values())
                    .flat_map(|t| t.routes())
                    .map(|r| format!("{}/{}", r.namespace, r.name))
                    .collect();
                let policies: Vec<&str> = p.policies.iter().map(|p| p.name.as_str()).collect();
                (
                    addr.to_string(),
                    serde_json::json!({"service": name(&p.service), "host": p.host, "routes": routes, "policies": policies}),
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
        let waypoint_policies: Vec<&str> = t
            .waypoint_policies
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        // Each Service port's effective TrafficPolicy settings, each part
        // with the policy it comes from.
        let traffic: BTreeMap<String, &quicmesh_core::traffic::Effective> =
            t.traffic.iter().map(|(b, e)| (name(b), &**e)).collect();
        serde_json::json!({"version": version, "scope": self.scope, "connected": self.connected.get() == 1,
            "destinations": destinations, "routes": routes, "workloads": workloads, "endpoints": endpoints, "policies": policies,
            "waypointPolicies": waypoint_policies, "authentication": t.authn.dump(), "jwks": self.jwks.dump(),
            "trafficPolicies": traffic})
    }
}

impl ConfigSink for Live {
    fn version(&self) -> u64 {
        self.current.version()
    }

    fn apply(&self, version: u64, resources: &BTreeMap<String, Resource>) -> Result<(), String> {
        let mut t = tables(resources, &self.cluster_domain, self.scope.as_ref())?;
        // Fetched keys: the URIs the rules name are fetched from now on.
        let mut authn = (*t.authn).clone();
        self.jwks
            .sync(&crate::authn::Table::remote_uris(&authn.authentications));
        authn.keys = self.jwks.clone();
        t.authn = Arc::new(authn);
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
        self.gauges.updated(result, self.version());
    }

    fn reports(&self) -> Option<tokio::sync::watch::Receiver<Vec<quicmesh_proto::config::Report>>> {
        Some(self.jwks.reports())
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
mod tests;
