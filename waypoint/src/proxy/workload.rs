//! Workload-addressed destinations: traffic a ztunnel sends to the waypoint
//! because it was addressed to a pod's IP (any port), not to a Service, and
//! the pod uses this waypoint for it (its Gateway's
//! `quicmesh.io/waypoint-for` is `workload` or `all`). Such an authority is
//! served as a [`Parent`] without routes whose only endpoint is that pod at
//! that port; the rest of the data path (authorization for each client,
//! protocol detection, TCP passthrough) is the one Services get.
//!
//! A workload address is named, where the data path names a backend, by a
//! [`BackendRef`] whose name is the pod's IP (`10.244.1.2`, `[fd00::2]`):
//! never the name of a Service (Service names are DNS labels), so the two
//! cannot collide in a [`super::Directory`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use quicmesh_core::authz::Policy;
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::route::{BackendRef, RouteTable};

use super::Parent;
use crate::upstream::{Endpoint, Protocol};

/// A workload whose own address the waypoint serves.
#[derive(Debug, Clone)]
pub struct AddressedWorkload {
    pub namespace: String,
    /// Its uid (whose policies apply to it).
    pub uid: Arc<str>,
    pub identity: SpiffeId,
    /// What its ports speak where a Service port that selects it says
    /// so (by the port its app listens on); any other port is detected
    /// per connection ([`Protocol::Auto`]).
    pub protocols: HashMap<u16, Protocol>,
}

impl AddressedWorkload {
    /// What `port` of the workload speaks.
    pub fn protocol(&self, port: u16) -> Protocol {
        self.protocols.get(&port).copied().unwrap_or(Protocol::Auto)
    }

    /// The backend `addr` (one of its IPs, and a port) stands for.
    pub fn backend(&self, addr: SocketAddr) -> BackendRef {
        BackendRef {
            namespace: self.namespace.clone(),
            name: backend_name(addr.ip()),
            port: addr.port(),
        }
    }

    /// `addr` as a destination: no routes, straight to the pod.
    pub fn parent(&self, addr: SocketAddr, policies: &[Arc<Policy>]) -> Parent {
        Parent {
            policies: policies.to_vec(),
            service: self.backend(addr),
            // No route, so no redirect needs a host name: the address is
            // the nearest thing the client used.
            host: backend_name(addr.ip()),
            routes: RouteTable::default(),
            consumers: HashMap::new(),
            protocol: self.protocol(addr.port()),
        }
    }

    /// The pod at `addr`, as an endpoint.
    pub fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            identity: self.identity.clone(),
            protocol: self.protocol(addr.port()),
            workload: self.uid.clone(),
        }
    }
}

/// The name of the backend a workload IP stands for: the IP, IPv6 in
/// brackets (so `namespace/name:port` reads as an address).
pub fn backend_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The IP a backend name stands for, if it is one [`backend_name`] makes
/// (exactly: no other spelling of the address).
pub fn backend_ip(name: &str) -> Option<IpAddr> {
    let ip: IpAddr = match name.strip_prefix('[') {
        Some(rest) => IpAddr::V6(rest.strip_suffix(']')?.parse().ok()?),
        None => IpAddr::V4(name.parse().ok()?),
    };
    (backend_name(ip) == name).then_some(ip)
}

/// Workloads whose own addresses the waypoint serves, by IP.
#[derive(Debug, Default, Clone)]
pub struct Addressed(pub HashMap<IpAddr, Arc<AddressedWorkload>>);

impl Addressed {
    /// The destination an authority addresses, if it is a served
    /// workload's IP (port 0 is no destination).
    /// `policies`: those attached to the waypoint itself.
    pub fn parent(&self, authority: SocketAddr, policies: &[Arc<Policy>]) -> Option<Arc<Parent>> {
        if authority.port() == 0 {
            return None;
        }
        let w = self.0.get(&authority.ip())?;
        Some(Arc::new(w.parent(authority, policies)))
    }

    /// The endpoint a workload backend (see [`AddressedWorkload::backend`])
    /// stands for; None for any other backend.
    pub fn endpoint(&self, backend: &BackendRef) -> Option<Endpoint> {
        let ip = backend_ip(&backend.name)?;
        let w = self.0.get(&ip)?;
        (w.namespace == backend.namespace && backend.port != 0)
            .then(|| w.endpoint(SocketAddr::new(ip, backend.port)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addressed() -> Addressed {
        let w = AddressedWorkload {
            namespace: "shop".into(),
            uid: "u1".into(),
            identity: SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/web").unwrap(),
            protocols: [(8080, Protocol::Http1), (5432, Protocol::Tcp)].into(),
        };
        let w = Arc::new(w);
        Addressed(
            [
                ("10.244.1.2".parse().unwrap(), w.clone()),
                ("fd00::2".parse().unwrap(), w),
            ]
            .into(),
        )
    }

    #[test]
    fn names_are_addresses_in_one_spelling_only() {
        for (ip, name) in [("10.244.1.2", "10.244.1.2"), ("fd00::2", "[fd00::2]")] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(backend_name(ip), name);
            assert_eq!(backend_ip(name), Some(ip));
        }
        for other in [
            "web",
            "fd00::2",
            "[fd00:0::2]",
            "010.244.1.2",
            "[10.244.1.2]",
            "10.244.1.2 ",
            "",
        ] {
            assert_eq!(backend_ip(other), None, "{other:?}");
        }
    }

    #[test]
    fn an_address_is_a_parent_without_routes_whose_endpoint_is_the_pod() {
        let a = addressed();
        let authority: SocketAddr = "10.244.1.2:8080".parse().unwrap();
        let p = a.parent(authority, &[]).unwrap();
        assert!(p.routes.is_empty() && p.consumers.is_empty());
        assert_eq!(p.protocol, Protocol::Http1, "from the Service port");
        assert_eq!(
            (
                p.service.namespace.as_str(),
                p.service.name.as_str(),
                p.service.port
            ),
            ("shop", "10.244.1.2", 8080)
        );
        let ep = a.endpoint(&p.service).unwrap();
        assert_eq!(ep.addr, authority);
        assert_eq!(&*ep.workload, "u1");
        assert_eq!(
            ep.identity.as_str(),
            "spiffe://cluster.local/ns/shop/sa/web"
        );
        // Any other port: detected.
        let p = a.parent("10.244.1.2:9999".parse().unwrap(), &[]).unwrap();
        assert_eq!(p.protocol, Protocol::Auto);
        assert_eq!(
            a.parent("[fd00::2]:5432".parse().unwrap(), &[])
                .unwrap()
                .protocol,
            Protocol::Tcp
        );
        let v6 = a.parent("[fd00::2]:80".parse().unwrap(), &[]).unwrap();
        assert_eq!(
            a.endpoint(&v6.service).unwrap().addr,
            "[fd00::2]:80".parse().unwrap()
        );
        // Not served: another address, port 0, another namespace's name.
        assert!(a.parent("10.244.1.3:8080".parse().unwrap(), &[]).is_none());
        assert!(a.parent("10.244.1.2:0".parse().unwrap(), &[]).is_none());
        let elsewhere = BackendRef {
            namespace: "front".into(),
            ..p.service.clone()
        };
        assert!(a.endpoint(&elsewhere).is_none());
        let service = BackendRef {
            namespace: "shop".into(),
            name: "web".into(),
            port: 8080,
        };
        assert!(a.endpoint(&service).is_none());
    }
}
