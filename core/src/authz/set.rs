//! Where L4 authorization is decided for inbound connections: which
//! policies apply to a destination workload, and the decision. Pure: the
//! state goes in, a decision comes out. Evaluation itself is
//! [`crate::authz`]; enforcement (refusing, cutting live connections) is
//! the proxy's.

use std::collections::HashMap;
use std::sync::Arc;

use crate::authz::l7::{parse_host, parse_method, parse_path, parse_request_principal};
use crate::authz::{
    self, parse_namespace, parse_principal, Action, Condition, Connection, Decision, DenyReason,
    IpNet, Policy, StringMatch, Verdict,
};
use crate::identity::SpiffeId;
use quicmesh_proto::config::{
    Authorization, AuthorizationAction, AuthorizationScope, MtlsMode as PMtlsMode,
};

/// Whether a workload accepts plaintext (15006) from outside the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    #[default]
    Permissive,
    Strict,
}

impl MtlsMode {
    /// The mode a workload resource carries. A value this ztunnel does not
    /// know (a newer controller) is strict: never open plaintext by guess.
    pub fn from_proto(v: i32) -> Self {
        match PMtlsMode::try_from(v) {
            Ok(PMtlsMode::Permissive | PMtlsMode::Unspecified) => MtlsMode::Permissive,
            Ok(PMtlsMode::Strict) | Err(_) => MtlsMode::Strict,
        }
    }
}

/// The policies of the mesh, by how they reach workloads.
#[derive(Debug, Default, serde::Serialize)]
pub struct PolicySet {
    /// Every policy, by `<namespace>/<name>`.
    pub by_name: HashMap<String, Arc<Policy>>,
    /// Mesh-wide (root namespace, no selector).
    #[serde(skip)]
    mesh: Vec<Arc<Policy>>,
    /// Namespace-wide, by namespace.
    #[serde(skip)]
    namespace: HashMap<String, Vec<Arc<Policy>>>,
    /// Whether any policy reaches workloads by selector.
    #[serde(skip)]
    any_selector: bool,
    /// Attached to waypoints (`targetRefs`), by `<namespace>/<name>`:
    /// decided by waypoints only.
    pub attached: HashMap<String, Attached>,
}

/// A policy attached to waypoints, and to what.
#[derive(Debug, serde::Serialize)]
pub struct Attached {
    #[serde(skip)]
    pub policy: Arc<Policy>,
    pub namespace: String,
    pub targets: Vec<Target>,
}

/// What a policy is attached to (in its namespace).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Target {
    /// A waypoint, by its Gateway's name.
    Gateway(String),
    /// The requests a waypoint serves for a Service.
    Service(String),
    /// Every waypoint (the controller allows it in the root namespace).
    GatewayClass,
    /// A kind this proxy does not know: the policy is invalid and reaches
    /// every waypoint of its namespace, so it fails closed.
    Unknown(String),
}

impl Attached {
    /// Whether it applies to a request at the waypoint `gateway`
    /// (`namespace`, `name`) for `service` (`namespace`, `name`), if any.
    pub fn applies(&self, gateway: (&str, &str), service: Option<(&str, &str)>) -> bool {
        self.targets.iter().any(|t| match t {
            Target::GatewayClass => true,
            Target::Gateway(n) => (self.namespace.as_str(), n.as_str()) == gateway,
            Target::Service(n) => service == Some((self.namespace.as_str(), n.as_str())),
            Target::Unknown(_) => self.namespace == gateway.0,
        })
    }
}

impl PolicySet {
    /// Adds a policy from the controller. Never fails: what cannot be
    /// understood becomes an invalid policy, which fails closed.
    pub fn insert(&mut self, a: &Authorization) {
        let mut policy = compile(a);
        let scope =
            AuthorizationScope::try_from(a.scope).unwrap_or(AuthorizationScope::Unspecified);
        if scope == AuthorizationScope::Waypoint {
            let targets: Vec<Target> = a
                .targets
                .iter()
                .map(|t| match t.kind.as_str() {
                    "Gateway" => Target::Gateway(t.name.clone()),
                    "Service" => Target::Service(t.name.clone()),
                    "GatewayClass" => Target::GatewayClass,
                    other => Target::Unknown(other.to_string()),
                })
                .collect();
            if let Some(Target::Unknown(kind)) =
                targets.iter().find(|t| matches!(t, Target::Unknown(_)))
            {
                policy = Policy::invalid(
                    policy.name,
                    policy.action,
                    format!("targetRefs: unknown kind {kind:?}"),
                );
            }
            let policy = Arc::new(policy);
            self.attached.insert(
                policy.name.clone(),
                Attached {
                    policy,
                    namespace: a.namespace.clone(),
                    targets,
                },
            );
            return;
        }
        let policy = Arc::new(policy);
        match scope {
            AuthorizationScope::Mesh => self.mesh.push(policy.clone()),
            AuthorizationScope::Workload => self.any_selector = true,
            // Unknown scope: its own namespace, the narrowest safe reading
            // that still enforces it.
            AuthorizationScope::Namespace
            | AuthorizationScope::Unspecified
            | AuthorizationScope::Waypoint => self
                .namespace
                .entry(a.namespace.clone())
                .or_default()
                .push(policy.clone()),
        }
        self.by_name.insert(policy.name.clone(), policy);
    }

    /// The policies that apply to a workload of `namespace` that lists
    /// `selected` (workload-scoped policies selecting it). A name the set
    /// does not have fails closed.
    pub fn for_workload(&self, namespace: &str, selected: &[String]) -> Vec<Arc<Policy>> {
        let mut out: Vec<Arc<Policy>> = self.mesh.clone();
        out.extend(self.namespace.get(namespace).into_iter().flatten().cloned());
        for name in selected {
            out.push(self.by_name.get(name).cloned().unwrap_or_else(|| {
                Arc::new(Policy::invalid(
                    name.clone(),
                    Action::Allow,
                    "the workload names a policy the controller did not send".into(),
                ))
            }));
        }
        out
    }

    /// The policies for a destination this proxy has no workload record of
    /// (yet): mesh and namespace ones are known; if selector policies
    /// exist, one might target it, so nothing can be decided (None).
    pub fn for_unknown(&self, namespace: &str) -> Option<Vec<Arc<Policy>>> {
        (!self.any_selector).then(|| self.for_workload(namespace, &[]))
    }

    /// The policies attached to the waypoint `gateway` that apply to its
    /// requests for `service` (None: traffic addressed to a workload).
    pub fn for_waypoint(
        &self,
        gateway: (&str, &str),
        service: Option<(&str, &str)>,
    ) -> Vec<Arc<Policy>> {
        let mut out: Vec<_> = self
            .attached
            .values()
            .filter(|a| a.applies(gateway, service))
            .map(|a| a.policy.clone())
            .collect();
        // Deterministic: the first match names the decision.
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The compiled form of a controller policy.
fn compile(a: &Authorization) -> Policy {
    let name = format!("{}/{}", a.namespace, a.name);
    let action = match AuthorizationAction::try_from(a.action) {
        Ok(AuthorizationAction::Allow) => Action::Allow,
        Ok(AuthorizationAction::Deny) => Action::Deny,
        Ok(AuthorizationAction::Audit) => Action::Audit,
        Ok(AuthorizationAction::Unspecified) | Err(_) => {
            return Policy::invalid(name, Action::Allow, format!("unknown action {}", a.action))
        }
    };
    if !a.invalid.is_empty() {
        return Policy::invalid(name, action, a.invalid.clone());
    }
    match rules(a) {
        Ok(rules) => Policy {
            name,
            action,
            rules,
            invalid: None,
        },
        Err(e) => Policy::invalid(name, action, e),
    }
}

fn rules(a: &Authorization) -> Result<Vec<authz::Rule>, String> {
    let matches = |v: &[String], parse: fn(&str) -> Result<StringMatch, String>| {
        v.iter().map(|s| parse(s)).collect::<Result<Vec<_>, _>>()
    };
    let nets = |v: &[String]| {
        v.iter()
            .map(|s| IpNet::parse(s))
            .collect::<Result<Vec<_>, _>>()
    };
    let ports = |v: &[u32]| {
        v.iter()
            .map(|p| u16::try_from(*p).map_err(|_| format!("{p} is not a port")))
            .collect::<Result<Vec<_>, _>>()
    };
    a.rules
        .iter()
        .map(|r| {
            let when = r
                .when
                .iter()
                .map(|c| Condition::parse(&c.key, &c.values, &c.not_values))
                .collect::<Result<Vec<_>, String>>()?;
            Ok(authz::Rule {
                from: r
                    .from
                    .iter()
                    .map(|s| {
                        let request_principals =
                            matches(&s.request_principals, parse_request_principal)?;
                        let not_request_principals =
                            matches(&s.not_request_principals, parse_request_principal)?;
                        Ok(authz::Source {
                            principals: matches(&s.principals, parse_principal)?,
                            not_principals: matches(&s.not_principals, parse_principal)?,
                            namespaces: matches(&s.namespaces, parse_namespace)?,
                            not_namespaces: matches(&s.not_namespaces, parse_namespace)?,
                            ip_blocks: nets(&s.ip_blocks)?,
                            not_ip_blocks: nets(&s.not_ip_blocks)?,
                            via_waypoint: s.via_waypoint,
                            // What the controller flags, and what this
                            // proxy sees: either makes it L7.
                            l7: s.l7
                                || !request_principals.is_empty()
                                || !not_request_principals.is_empty(),
                            request_principals,
                            not_request_principals,
                        })
                    })
                    .collect::<Result<_, String>>()?,
                to: r
                    .to
                    .iter()
                    .map(|o| {
                        let op = authz::Operation {
                            ports: ports(&o.ports)?,
                            not_ports: ports(&o.not_ports)?,
                            methods: matches(&o.methods, parse_method)?,
                            not_methods: matches(&o.not_methods, parse_method)?,
                            paths: matches(&o.paths, parse_path)?,
                            not_paths: matches(&o.not_paths, parse_path)?,
                            hosts: matches(&o.hosts, parse_host)?,
                            not_hosts: matches(&o.not_hosts, parse_host)?,
                            l7: o.l7,
                        };
                        Ok(authz::Operation {
                            l7: op.l7 || op.has_l7(),
                            ..op
                        })
                    })
                    .collect::<Result<_, String>>()?,
                l7: r.l7 || when.iter().any(|c| c.key.l7()),
                when,
            })
        })
        .collect()
}

/// What the destination ztunnel knows about the workload a connection is for.
pub struct Destination<'a> {
    /// False until the first config (controller snapshot or workload file):
    /// nothing can be decided yet.
    pub configured: bool,
    pub namespace: &'a str,
    /// None: no workload record (see [`PolicySet::for_unknown`]).
    pub policies: Option<&'a [Arc<Policy>]>,
    /// Strict for a workload without a record: its namespace's mode is not
    /// known, and refusing plaintext costs mesh traffic nothing.
    pub mtls: MtlsMode,
    /// The waypoints that serve the workload (through its Services, or for
    /// traffic addressed to it): a connection from one of them is vouched
    /// for (see [`Verdict::Vouched`](crate::authz::Verdict::Vouched)).
    pub waypoints: &'a [SpiffeId],
}

/// The decision for an inbound connection. Without config everything is
/// refused; plaintext (no principal) to a strict workload is refused
/// before policy.
pub fn decide(set: &PolicySet, dst: &Destination<'_>, conn: &Connection) -> Decision {
    if !dst.configured {
        return Decision::deny(DenyReason::NoConfig, "-");
    }
    if let Some(w) = conn
        .principal
        .as_ref()
        .filter(|p| dst.waypoints.contains(p))
    {
        return Decision {
            verdict: Verdict::Vouched {
                waypoint: w.to_string(),
            },
            audited: Vec::new(),
        };
    }
    if conn.principal.is_none() && dst.mtls == MtlsMode::Strict {
        return Decision::deny(
            DenyReason::StrictMtls,
            format!("{}/mtls-mode=strict", dst.namespace),
        );
    }
    match dst.policies {
        Some(ps) => authz::evaluate(ps.iter().map(|p| &**p), conn),
        None => match set.for_unknown(dst.namespace) {
            Some(ps) => authz::evaluate(ps.iter().map(|p| &**p), conn),
            None => Decision::deny(DenyReason::UnknownWorkload, "-"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quicmesh_proto::config::{AuthorizationRule, AuthorizationSource};

    fn auth(
        ns: &str,
        name: &str,
        scope: AuthorizationScope,
        action: AuthorizationAction,
    ) -> Authorization {
        Authorization {
            name: name.into(),
            namespace: ns.into(),
            scope: scope.into(),
            action: action.into(),
            rules: vec![AuthorizationRule {
                from: vec![AuthorizationSource {
                    namespaces: vec!["ops".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn conn(principal: Option<&str>) -> Connection {
        Connection::new(
            principal.map(|p| SpiffeId::parse(p).unwrap()),
            "cluster.local",
            "10.0.0.1".parse().unwrap(),
            80,
        )
    }

    #[test]
    fn scopes_reach_the_right_workloads() {
        let mut set = PolicySet::default();
        set.insert(&auth(
            "root",
            "m",
            AuthorizationScope::Mesh,
            AuthorizationAction::Audit,
        ));
        set.insert(&auth(
            "shop",
            "n",
            AuthorizationScope::Namespace,
            AuthorizationAction::Deny,
        ));
        set.insert(&auth(
            "shop",
            "w",
            AuthorizationScope::Workload,
            AuthorizationAction::Allow,
        ));
        let names = |ps: Vec<Arc<Policy>>| ps.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(set.for_workload("shop", &["shop/w".into()])),
            ["root/m", "shop/n", "shop/w"]
        );
        assert_eq!(names(set.for_workload("other", &[])), ["root/m"]);
        // A selector policy exists: an unknown workload gets nothing.
        assert!(set.for_unknown("other").is_none());
        // A name the controller did not send fails closed.
        let ps = set.for_workload("other", &["x/missing".into()]);
        assert!(ps[1].invalid.is_some());
    }

    #[test]
    fn attached_policies_reach_waypoints_only() {
        use quicmesh_proto::config::AuthorizationTarget;
        let attached = |name: &str, ns: &str, targets: &[(&str, &str)]| Authorization {
            targets: targets
                .iter()
                .map(|(kind, name)| AuthorizationTarget {
                    kind: kind.to_string(),
                    name: name.to_string(),
                })
                .collect(),
            ..auth(
                ns,
                name,
                AuthorizationScope::Waypoint,
                AuthorizationAction::Deny,
            )
        };
        let mut set = PolicySet::default();
        set.insert(&attached("gw", "shop", &[("Gateway", "waypoint")]));
        set.insert(&attached("svc", "shop", &[("Service", "web")]));
        set.insert(&attached(
            "all",
            "root",
            &[("GatewayClass", "quicmesh-waypoint")],
        ));
        set.insert(&attached("odd", "ops", &[("Deployment", "x")]));
        let names = |ps: Vec<Arc<Policy>>| ps.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        // No workload (no ztunnel) ever gets one.
        assert_eq!(names(set.for_workload("shop", &[])), Vec::<String>::new());
        assert!(set.by_name.is_empty());
        assert_eq!(
            names(set.for_waypoint(("shop", "waypoint"), Some(("shop", "web")))),
            ["root/all", "shop/gw", "shop/svc"]
        );
        assert_eq!(
            names(set.for_waypoint(("shop", "waypoint"), Some(("shop", "db")))),
            ["root/all", "shop/gw"]
        );
        assert_eq!(
            names(set.for_waypoint(("shop", "other"), None)),
            ["root/all"]
        );
        // A kind this proxy does not know: invalid, on its namespace's waypoints.
        let odd = set.for_waypoint(("ops", "waypoint"), None);
        assert_eq!(names(odd.clone()), ["ops/odd", "root/all"]);
        assert!(odd[0].invalid.as_deref().unwrap().contains("Deployment"));
    }

    #[test]
    fn malformed_controller_policies_fail_closed() {
        let mut a = auth(
            "shop",
            "bad",
            AuthorizationScope::Namespace,
            AuthorizationAction::Deny,
        );
        a.rules[0].from[0].ip_blocks = vec!["not-a-net".into()];
        assert!(compile(&a).invalid.is_some());
        let mut a = auth(
            "shop",
            "bad",
            AuthorizationScope::Namespace,
            AuthorizationAction::Allow,
        );
        a.action = 42;
        assert!(compile(&a).invalid.is_some());
        let mut a = auth(
            "shop",
            "bad",
            AuthorizationScope::Namespace,
            AuthorizationAction::Allow,
        );
        a.invalid = "spec.rules: invalid type".into();
        let p = compile(&a);
        assert_eq!(p.invalid.as_deref(), Some("spec.rules: invalid type"));
    }

    #[test]
    fn strict_mode_refuses_plaintext_before_policy() {
        let set = PolicySet::default();
        let dst = |mtls| Destination {
            configured: true,
            namespace: "shop",
            policies: Some(&[]),
            mtls,
            waypoints: &[],
        };
        let d = decide(&set, &dst(MtlsMode::Strict), &conn(None));
        assert_eq!(d.to_string(), "deny (strict_mtls) by shop/mtls-mode=strict");
        assert!(decide(&set, &dst(MtlsMode::Permissive), &conn(None)).allowed());
        let mtls = conn(Some("spiffe://cluster.local/ns/a/sa/b"));
        assert!(decide(&set, &dst(MtlsMode::Strict), &mtls).allowed());
        // Before any config, nothing is decided in its favour.
        let none = Destination {
            configured: false,
            ..dst(MtlsMode::Permissive)
        };
        assert_eq!(
            decide(&set, &none, &mtls).to_string(),
            "deny (no_config) by -"
        );
    }

    #[test]
    fn a_waypoint_that_serves_the_workload_is_vouched_for() {
        // The workload admits only `ops`; a waypoint's identity is not in
        // `ops`, but a waypoint the controller names for the workload
        // decided that policy for its own clients.
        let mut set = PolicySet::default();
        set.insert(&auth(
            "shop",
            "ops-only",
            AuthorizationScope::Namespace,
            AuthorizationAction::Allow,
        ));
        let policies = set.for_workload("shop", &[]);
        let waypoint = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/waypoint").unwrap();
        let served = [waypoint.clone()];
        let dst = |waypoints| Destination {
            configured: true,
            namespace: "shop",
            policies: Some(&policies),
            mtls: MtlsMode::Strict,
            waypoints,
        };
        let from_waypoint = conn(Some(waypoint.as_str()));
        let d = decide(&set, &dst(&served), &from_waypoint);
        assert!(d.allowed());
        assert_eq!(
            d.to_string(),
            "allow via waypoint spiffe://cluster.local/ns/shop/sa/waypoint"
        );
        // The same identity, for a workload it does not serve: an ordinary
        // peer, decided by policy.
        assert_eq!(
            decide(&set, &dst(&[]), &from_waypoint).to_string(),
            "deny (no_allow_match) by shop/ops-only"
        );
        // Any other peer of a served workload: decided by policy.
        let d = decide(
            &set,
            &dst(&served),
            &conn(Some("spiffe://cluster.local/ns/shop/sa/web")),
        );
        assert!(!d.allowed());
        assert!(decide(
            &set,
            &dst(&served),
            &conn(Some("spiffe://cluster.local/ns/ops/sa/admin"))
        )
        .allowed());
        // Before config, not even a waypoint.
        let unconfigured = Destination {
            configured: false,
            ..dst(&served)
        };
        assert!(!decide(&set, &unconfigured, &from_waypoint).allowed());
    }

    #[test]
    fn unknown_mtls_values_are_strict() {
        assert_eq!(MtlsMode::from_proto(0), MtlsMode::Permissive);
        assert_eq!(MtlsMode::from_proto(1), MtlsMode::Permissive);
        assert_eq!(MtlsMode::from_proto(2), MtlsMode::Strict);
        assert_eq!(MtlsMode::from_proto(7), MtlsMode::Strict);
    }
}
