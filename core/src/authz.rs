//! Authorization: policies as the proxies enforce them, and their
//! evaluation. Pure: no I/O, no clock, no config source. The controller
//! compiles `AuthorizationPolicy` objects into [`Policy`] (with the same
//! parsers, so what it accepts the proxies accept); ztunnels evaluate them
//! for every inbound connection ([`evaluate`], and again for live ones when
//! policy changes), waypoints for every request ([`evaluate_request`],
//! with the request's method, path, host, headers and JWT identity).
//!
//! Semantics (docs/policy.md is the user-facing reference):
//! 1. An invalid ALLOW or DENY policy denies everything it targets.
//! 2. Any matching DENY policy denies.
//! 3. If at least one ALLOW policy applies, one of them must match; with
//!    none applying, the connection is allowed.
//! 4. AUDIT policies never change the decision; matches are reported.
//!
//! L7 conditions (methods, paths, hosts, headers, request principals,
//! claims) cannot be decided from a TCP connection: at a ztunnel, in an
//! ALLOW or AUDIT policy the part that carries them never matches; in a
//! DENY policy they are taken as matched, so the rest of the rule decides.
//! Both directions fail closed. A waypoint decides all of them.

pub mod l7;
pub mod matcher;
pub mod set;

use std::fmt;
use std::net::IpAddr;

pub use l7::{Authenticated, Condition, Request};
pub use matcher::{parse_namespace, parse_principal, principal_key, IpNet, StringMatch};

use crate::identity::SpiffeId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Allow,
    Deny,
    Audit,
}

/// One policy, compiled. `name` is `<namespace>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    pub name: String,
    pub action: Action,
    /// OR: the policy matches when any rule matches. An ALLOW policy with no
    /// rules allows nothing; a DENY policy with no rules denies nothing.
    pub rules: Vec<Rule>,
    /// Why the policy is invalid, when it is; it then denies all it targets
    /// (an invalid AUDIT policy only reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
}

/// AND of its parts; an empty list (`from`, `to`) matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rule {
    /// OR: any source matches.
    pub from: Vec<Source>,
    /// OR: any operation matches.
    pub to: Vec<Operation>,
    /// AND: every condition holds.
    pub when: Vec<Condition>,
    /// Some condition of `when` needs a request (see [`l7::Key::l7`]).
    pub l7: bool,
}

/// AND of its set fields; within a field, OR of its values.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub principals: Vec<StringMatch>,
    pub not_principals: Vec<StringMatch>,
    pub namespaces: Vec<StringMatch>,
    pub not_namespaces: Vec<StringMatch>,
    pub ip_blocks: Vec<IpNet>,
    pub not_ip_blocks: Vec<IpNet>,
    /// Some(true): only connections (requests) that came through a waypoint
    /// serving the destination; Some(false): only those that did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_waypoint: Option<bool>,
    /// `<iss>/<sub>` of the request's JWT (L7).
    pub request_principals: Vec<StringMatch>,
    pub not_request_principals: Vec<StringMatch>,
    /// The source has L7 conditions (request principals).
    pub l7: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub ports: Vec<u16>,
    pub not_ports: Vec<u16>,
    /// L7: the request's method (case-sensitive).
    pub methods: Vec<StringMatch>,
    pub not_methods: Vec<StringMatch>,
    /// L7: the canonical path, without the query.
    pub paths: Vec<StringMatch>,
    pub not_paths: Vec<StringMatch>,
    /// L7: the authority, with or without its port, case-insensitive.
    pub hosts: Vec<StringMatch>,
    pub not_hosts: Vec<StringMatch>,
    /// The operation has L7 conditions (methods, paths, hosts).
    pub l7: bool,
}

/// What L4 knows about an inbound connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The peer's SPIFFE ID, proven by its certificate; None for plaintext.
    pub principal: Option<SpiffeId>,
    /// The source namespace: the principal's, when it belongs to the local
    /// trust domain (a federated domain cannot speak for our namespaces).
    pub namespace: Option<String>,
    pub src_ip: IpAddr,
    pub dst_port: u16,
    /// Decided at a waypoint, for a request (or TCP connection) it
    /// forwards to a destination it serves; false at a ztunnel.
    pub via_waypoint: bool,
    /// The principal belongs to another (federated) trust domain: it is
    /// authenticated, and authorized only by an ALLOW policy that matches
    /// it, never by the absence of policy.
    pub foreign: bool,
}

impl Connection {
    pub fn new(
        principal: Option<SpiffeId>,
        local_trust_domain: &str,
        src_ip: IpAddr,
        dst_port: u16,
    ) -> Self {
        let foreign = principal
            .as_ref()
            .is_some_and(|p| p.trust_domain() != local_trust_domain);
        let namespace = principal
            .as_ref()
            .filter(|p| p.trust_domain() == local_trust_domain)
            .and_then(|p| p.namespace_and_service_account().ok())
            .map(|(ns, _)| ns.to_string());
        Connection {
            principal,
            namespace,
            src_ip,
            dst_port,
            via_waypoint: false,
            foreign,
        }
    }

    /// The same, as a waypoint decides it (see [`Source::via_waypoint`]).
    pub fn at_waypoint(self) -> Self {
        Connection {
            via_waypoint: true,
            ..self
        }
    }
}

/// Why a connection was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// A DENY policy matched.
    DenyPolicy,
    /// ALLOW policies apply and none matched.
    NoAllowMatch,
    /// A policy that targets the workload is invalid (fails closed).
    InvalidPolicy,
    /// Plaintext to a workload in strict mTLS mode (decided by the proxy).
    StrictMtls,
    /// The destination workload is not known yet and workload-scoped
    /// policies exist that might target it (decided by the proxy).
    UnknownWorkload,
    /// The proxy has no config yet, so it cannot know what applies.
    NoConfig,
    /// A peer of a federated trust domain, and no ALLOW policy applies: a
    /// foreign identity is authenticated, not authorized, by default.
    FederatedNotAllowed,
    /// The peer's trust domain has no bundle any more (its federation was
    /// removed after the peer authenticated; decided by the proxy).
    UntrustedDomain,
}

impl DenyReason {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            DenyReason::DenyPolicy => "deny_policy",
            DenyReason::NoAllowMatch => "no_allow_match",
            DenyReason::InvalidPolicy => "invalid_policy",
            DenyReason::StrictMtls => "strict_mtls",
            DenyReason::UnknownWorkload => "unknown_workload",
            DenyReason::NoConfig => "no_config",
            DenyReason::FederatedNotAllowed => "federated_not_allowed",
            DenyReason::UntrustedDomain => "untrusted_trust_domain",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `policy`: the ALLOW policy that matched, None when no ALLOW policy applies.
    Allow { policy: Option<String> },
    /// The peer is a waypoint that serves the destination (`waypoint`: its
    /// SPIFFE ID). The waypoint decided the destination's policies for the
    /// client of each request it forwards, so they are not decided again
    /// against the waypoint's own identity.
    Vouched { waypoint: String },
    /// `policy`: the policy that denied (for `NoAllowMatch`, the ALLOW
    /// policies that apply, comma-separated).
    Deny { reason: DenyReason, policy: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// AUDIT policies that matched (their name), whatever the verdict.
    pub audited: Vec<String>,
}

impl Decision {
    /// A denial decided outside policy evaluation.
    pub fn deny(reason: DenyReason, policy: impl Into<String>) -> Self {
        Decision {
            verdict: Verdict::Deny {
                reason,
                policy: policy.into(),
            },
            audited: Vec::new(),
        }
    }

    pub fn allowed(&self) -> bool {
        matches!(
            self.verdict,
            Verdict::Allow { .. } | Verdict::Vouched { .. }
        )
    }
}

impl fmt::Display for Decision {
    /// The access-log form: `allow`, `allow by shop/x`, `deny (deny_policy) by shop/y`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Allow { policy: None } => f.write_str("allow"),
            Verdict::Allow { policy: Some(p) } => write!(f, "allow by {p}"),
            Verdict::Vouched { waypoint } => write!(f, "allow via waypoint {waypoint}"),
            Verdict::Deny { reason, policy } => write!(f, "deny ({}) by {policy}", reason.label()),
        }
    }
}

/// Decides `conn` against the policies that apply to its destination, as
/// a ztunnel does: without a request (L7 parts as the module says).
pub fn evaluate<'p>(policies: impl IntoIterator<Item = &'p Policy>, conn: &Connection) -> Decision {
    evaluate_with(policies, conn, None)
}

/// Decides a request of `conn`'s client, as a waypoint does: every part
/// of every rule is decided.
pub fn evaluate_request<'p>(
    policies: impl IntoIterator<Item = &'p Policy>,
    conn: &Connection,
    req: &Request<'_>,
) -> Decision {
    evaluate_with(policies, conn, Some(req))
}

fn evaluate_with<'p>(
    policies: impl IntoIterator<Item = &'p Policy>,
    conn: &Connection,
    req: Option<&Request<'_>>,
) -> Decision {
    let policies: Vec<&Policy> = policies.into_iter().collect();
    let audited = policies
        .iter()
        .filter(|p| p.action == Action::Audit && p.invalid.is_none() && p.matches(conn, req))
        .map(|p| p.name.clone())
        .collect();
    let deny = |reason, policy: &str| Decision::deny(reason, policy);
    let mut decision = if let Some(p) = policies
        .iter()
        .find(|p| p.invalid.is_some() && p.action != Action::Audit)
    {
        deny(DenyReason::InvalidPolicy, &p.name)
    } else if let Some(p) = policies
        .iter()
        .find(|p| p.action == Action::Deny && p.matches(conn, req))
    {
        deny(DenyReason::DenyPolicy, &p.name)
    } else {
        let mut allows = policies
            .iter()
            .filter(|p| p.action == Action::Allow)
            .peekable();
        if allows.peek().is_none() && conn.foreign {
            deny(DenyReason::FederatedNotAllowed, "-")
        } else if allows.peek().is_none() {
            Decision {
                verdict: Verdict::Allow { policy: None },
                audited: Vec::new(),
            }
        } else {
            let all: Vec<&&Policy> = allows.collect();
            match all.iter().find(|p| p.matches(conn, req)) {
                Some(p) => Decision {
                    verdict: Verdict::Allow {
                        policy: Some(p.name.clone()),
                    },
                    audited: Vec::new(),
                },
                None => {
                    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
                    deny(DenyReason::NoAllowMatch, &names.join(","))
                }
            }
        }
    };
    decision.audited = audited;
    decision
}

impl Policy {
    /// A policy that denies everything it targets, with the reason.
    pub fn invalid(name: String, action: Action, reason: String) -> Self {
        Policy {
            name,
            action,
            rules: Vec::new(),
            invalid: Some(reason),
        }
    }

    fn matches(&self, conn: &Connection, req: Option<&Request<'_>>) -> bool {
        let deny = self.action == Action::Deny;
        self.rules.iter().any(|r| r.matches(conn, req, deny))
    }
}

impl Rule {
    /// Without a request, `deny`: L7 conditions count as matched (DENY)
    /// rather than unmatched.
    fn matches(&self, conn: &Connection, req: Option<&Request<'_>>, deny: bool) -> bool {
        let decided = |c: &&Condition| req.is_some() || !c.key.l7();
        (req.is_some() || deny || !self.l7)
            && (self.from.is_empty() || self.from.iter().any(|s| s.matches(conn, req, deny)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(conn, req, deny)))
            && self
                .when
                .iter()
                .filter(decided)
                .all(|c| c.matches(conn, req))
    }
}

/// `values` empty: no constraint; otherwise `value` must be present and match one.
fn any_of(values: &[StringMatch], value: Option<&str>) -> bool {
    values.is_empty() || value.is_some_and(|v| values.iter().any(|m| m.matches(v)))
}

/// `values` empty: no constraint; otherwise `value` must be absent or match none.
fn none_of(values: &[StringMatch], value: Option<&str>) -> bool {
    values.is_empty() || !value.is_some_and(|v| values.iter().any(|m| m.matches(v)))
}

impl Source {
    fn matches(&self, conn: &Connection, req: Option<&Request<'_>>, deny: bool) -> bool {
        let principal = conn.principal.as_ref().map(|p| principal_key(p.as_str()));
        let namespace = conn.namespace.as_deref();
        let l7 = match req {
            None => deny || !self.l7,
            Some(r) => {
                let rp = r.auth.map(|a| a.principal);
                any_of(&self.request_principals, rp) && none_of(&self.not_request_principals, rp)
            }
        };
        l7 && any_of(&self.principals, principal)
            && none_of(&self.not_principals, principal)
            && any_of(&self.namespaces, namespace)
            && none_of(&self.not_namespaces, namespace)
            && (self.ip_blocks.is_empty() || self.ip_blocks.iter().any(|n| n.contains(conn.src_ip)))
            && !self.not_ip_blocks.iter().any(|n| n.contains(conn.src_ip))
            && self.via_waypoint.is_none_or(|v| v == conn.via_waypoint)
    }
}

impl Operation {
    /// Whether it has L7 patterns (methods, paths, hosts).
    pub fn has_l7(&self) -> bool {
        [
            &self.methods,
            &self.not_methods,
            &self.paths,
            &self.not_paths,
            &self.hosts,
            &self.not_hosts,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }

    fn matches(&self, conn: &Connection, req: Option<&Request<'_>>, deny: bool) -> bool {
        let l7 = match req {
            None => deny || !self.l7,
            Some(r) => {
                let hosts = |ps: &[StringMatch]| l7::host_matches(ps, r.host);
                any_of(&self.methods, Some(r.method))
                    && none_of(&self.not_methods, Some(r.method))
                    && any_of(&self.paths, Some(r.path))
                    && none_of(&self.not_paths, Some(r.path))
                    && (self.hosts.is_empty() || hosts(&self.hosts))
                    && (self.not_hosts.is_empty() || !hosts(&self.not_hosts))
            }
        };
        l7 && (self.ports.is_empty() || self.ports.contains(&conn.dst_port))
            && !self.not_ports.contains(&conn.dst_port)
    }
}

#[cfg(test)]
mod l7_tests;
#[cfg(test)]
mod tests;
