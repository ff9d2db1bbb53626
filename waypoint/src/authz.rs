//! Authorization at the waypoint. A waypoint decides the destination
//! workload's AuthorizationPolicies — the ones its ztunnel would decide —
//! for the client of each request (the peer of the downstream tunnel,
//! proven by its SVID), once the endpoint is chosen. The destination's
//! ztunnel then admits the waypoint's tunnel without deciding them again
//! (`Verdict::Vouched`): one HTTP/2 connection from the waypoint carries
//! many clients' requests, and only the waypoint knows whose each one is.
//! So a policy means the same with or without a waypoint in the path.
//!
//! Evaluation is [`quicmesh_core::authz`], the same code the ztunnels run;
//! what differs is the connection (`via_waypoint` is true here) and that
//! a request is known: its method, path, host, headers and JWT identity
//! decide the L7 parts that a ztunnel cannot.
//!
//! Two layers decide each request, and both must allow it: the policies
//! attached to the waypoint (`targetRefs`: its Gateway, the Service the
//! request is for, the waypoint GatewayClass), before routing; then the
//! destination workload's own, once the endpoint is chosen.

use std::net::SocketAddr;
use std::sync::Arc;

use quicmesh_core::authz::{
    self, Authenticated, Connection, Decision, DenyReason, Policy, Verdict,
};
use quicmesh_core::identity::SpiffeId;
use quicmesh_core::jwt::Verified;

/// A request's facts as policies read them, taken after authentication
/// (the token removed unless forwarded, claims copied to headers) and
/// before the route's filters change the request: the client's method,
/// canonical path, host, headers, and what its JWT proved.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    method: http::Method,
    path: String,
    host: Option<String>,
    headers: http::HeaderMap,
    /// The verified JWT and its `<iss>/<sub>`.
    jwt: Option<(Arc<Verified>, String)>,
}

impl RequestFacts {
    pub fn of<B>(req: &http::Request<B>, jwt: Option<Arc<Verified>>) -> Self {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            });
        RequestFacts {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            host,
            headers: req.headers().clone(),
            jwt: jwt.map(|v| {
                let principal = v.principal();
                (v, principal)
            }),
        }
    }

    pub fn view(&self) -> authz::Request<'_> {
        authz::Request {
            method: self.method.as_str(),
            path: &self.path,
            host: self.host.as_deref(),
            headers: &self.headers,
            auth: self.jwt.as_ref().map(|(v, principal)| Authenticated {
                principal,
                audiences: &v.audiences,
                presenter: v.presenter.as_deref(),
                claims: &v.claims,
            }),
        }
    }
}

/// What applies to one destination workload.
#[derive(Debug, Default)]
pub struct Access {
    /// Every policy that reaches it (mesh, namespace, selector).
    pub policies: Vec<Arc<Policy>>,
}

/// The client of a tunnelled connection, as policies see it.
#[derive(Debug, Clone)]
pub struct Client(Connection);

impl Client {
    /// `peer`: the downstream tunnel's proven identity and UDP address;
    /// `trust_domain`: the mesh's (namespaces come only from it).
    pub fn new(peer: &SpiffeId, peer_addr: SocketAddr, trust_domain: &str) -> Self {
        Client(Connection::new(Some(peer.clone()), trust_domain, peer_addr.ip(), 0).at_waypoint())
    }

    /// Its namespace, when its identity is of this mesh's trust domain.
    pub fn namespace(&self) -> Option<&str> {
        self.0.namespace.as_deref()
    }

    /// The decision for a request (`req`; None for a TCP connection) of
    /// this client to the workload port `dst_port`. A workload the
    /// waypoint has no record of is refused: it cannot know what applies.
    pub fn decide(
        &self,
        access: Option<&Access>,
        dst_port: u16,
        req: Option<&RequestFacts>,
    ) -> Decision {
        match access {
            None => Decision::deny(DenyReason::UnknownWorkload, "-"),
            Some(a) => self.evaluate(&a.policies, dst_port, req),
        }
    }

    /// The decision of the policies attached to the waypoint for a request
    /// (or TCP connection) to the destination port `port`.
    pub fn decide_attached(
        &self,
        policies: &[Arc<Policy>],
        port: u16,
        req: Option<&RequestFacts>,
    ) -> Decision {
        self.evaluate(policies, port, req)
    }

    fn evaluate(
        &self,
        policies: &[Arc<Policy>],
        port: u16,
        req: Option<&RequestFacts>,
    ) -> Decision {
        // The common case, decided without building a connection per
        // request: no policy applies, so it is allowed.
        if policies.is_empty() {
            return Decision {
                verdict: Verdict::Allow { policy: None },
                audited: Vec::new(),
            };
        }
        let conn = Connection {
            dst_port: port,
            ..self.0.clone()
        };
        let ps = policies.iter().map(|p| &**p);
        match req {
            Some(r) => authz::evaluate_request(ps, &conn, &r.view()),
            None => authz::evaluate(ps, &conn),
        }
    }
}

#[cfg(test)]
mod tests {
    use quicmesh_core::authz::{parse_principal, Action, Rule, Source};

    use super::*;

    fn policy(action: Action, source: Source) -> Arc<Policy> {
        Arc::new(Policy {
            name: "shop/p".into(),
            action,
            rules: vec![Rule {
                from: vec![source],
                ..Rule::default()
            }],
            invalid: None,
        })
    }

    #[test]
    fn clients_are_decided_as_having_come_via_the_waypoint() {
        let peer = SpiffeId::parse("spiffe://cluster.local/ns/front/sa/web").unwrap();
        let client = Client::new(&peer, "10.244.1.7:40000".parse().unwrap(), "cluster.local");
        // The client's own identity, namespace and address are what match.
        let allow = Access {
            policies: vec![policy(
                Action::Allow,
                Source {
                    principals: vec![parse_principal("cluster.local/ns/front/*").unwrap()],
                    ip_blocks: vec![quicmesh_core::authz::IpNet::parse("10.244.0.0/16").unwrap()],
                    ..Source::default()
                },
            )],
        };
        assert!(client.decide(Some(&allow), 8080, None).allowed());
        // "Only around a waypoint" never matches here; "only through one" does.
        let direct_only = |v| Access {
            policies: vec![policy(
                Action::Deny,
                Source {
                    via_waypoint: Some(v),
                    ..Source::default()
                },
            )],
        };
        assert!(client
            .decide(Some(&direct_only(false)), 8080, None)
            .allowed());
        assert!(!client
            .decide(Some(&direct_only(true)), 8080, None)
            .allowed());
        // No policy: allowed, as core evaluation decides it.
        let none = Access::default();
        assert_eq!(
            client.decide(Some(&none), 8080, None),
            authz::evaluate(
                std::iter::empty(),
                &Connection::new(None, "cluster.local", "10.0.0.1".parse().unwrap(), 1)
            )
        );
        // A workload the waypoint has no record of: refused.
        assert_eq!(
            client.decide(None, 8080, None).to_string(),
            "deny (unknown_workload) by -"
        );
    }
}
