//! The status the controller reports for what it serves, as Gateway API
//! controllers write it: each waypoint Gateway's conditions (`Accepted`,
//! `Programmed`); for each HTTPRoute and GRPCRoute, one `status.parents[]`
//! entry per Service parent (controller [`CONTROLLER_NAME`]) with
//! `Accepted` and `ResolvedRefs`; quicmesh's own policies'
//! `status.conditions` ([`PolicyStatus`]: AuthorizationPolicy's and
//! RequestAuthentication's `Accepted`, False with the reason when it is
//! invalid, and RequestAuthentication's `KeysFetched` from what its
//! waypoints report of their jwksUri fetches); and for each TrafficPolicy, one `status.ancestors[]` entry
//! per target with `Accepted` (policy attachment, GEP-713). Pure, from the
//! index: `/status` serves it, and in Kubernetes [`kube`] writes it back.

use serde_json::{json, Value};

use crate::gamma::Condition;
use crate::index::Index;
use crate::model::RouteKind;
use crate::waypoint;

pub mod kube;

/// Our `controllerName` in route parent statuses.
pub const CONTROLLER_NAME: &str = "quicmesh.io/waypoint-controller";

/// A Gateway's conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayStatus {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub conditions: Vec<Condition>,
}

/// A route's parent statuses (ours only).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteStatus {
    pub kind: RouteKind,
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    /// `{parentRef, controllerName, conditions}` without timestamps.
    pub parents: Vec<(Value, Vec<Condition>)>,
}

/// The conditions of one of quicmesh's own objects (group `quicmesh.io`),
/// written to its `status.conditions`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyStatus {
    /// The API kind and plural (`AuthorizationPolicy`, `authorizationpolicies`).
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub conditions: Vec<Condition>,
}

/// Every AuthorizationPolicy: `Accepted` True (the message names the parts
/// a ztunnel decides failing closed, if any), or False with reason
/// `Invalid` and why (it then denies what it targets).
pub fn authorization_policies(index: &Index) -> Vec<PolicyStatus> {
    index
        .policies()
        .map(|p| {
            let accepted = match &p.policy.invalid {
                Some(why) => Condition {
                    kind: "Accepted",
                    status: false,
                    reason: "Invalid",
                    message: format!("{why}; it denies all traffic it targets"),
                },
                None => Condition {
                    kind: "Accepted",
                    status: true,
                    reason: "Accepted",
                    message: p.warnings.join("; "),
                },
            };
            PolicyStatus {
                kind: "AuthorizationPolicy",
                plural: "authorizationpolicies",
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                generation: p.generation,
                conditions: vec![accepted],
            }
        })
        .collect()
}

/// A RequestAuthentication's status.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticationStatus {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    pub compiled: crate::authn::Compiled,
    /// `KeysFetched`, once a waypoint enforcing it reported its jwksUri
    /// fetches.
    pub keys: Option<Condition>,
}

impl AuthenticationStatus {
    pub fn conditions(&self) -> Vec<Condition> {
        std::iter::once(self.compiled.condition())
            .chain(self.keys.clone())
            .collect()
    }
}

/// Every RequestAuthentication, compiled against the index.
pub fn authentications(index: &Index) -> Vec<AuthenticationStatus> {
    index
        .request_authentications()
        .map(|ra| {
            let compiled = index.compiled_authentication(ra);
            let keys = crate::authn::keys_fetched(
                &compiled,
                &ra.namespace,
                index.root_namespace(),
                index.proxy_reports(),
            );
            AuthenticationStatus {
                namespace: ra.namespace.clone(),
                name: ra.name.clone(),
                generation: ra.generation,
                compiled,
                keys,
            }
        })
        .collect()
}

impl AuthenticationStatus {
    /// What the status writer applies.
    pub fn policy_status(&self) -> PolicyStatus {
        PolicyStatus {
            kind: "RequestAuthentication",
            plural: "requestauthentications",
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            generation: self.generation,
            conditions: self.conditions(),
        }
    }
}

/// A TrafficPolicy's ancestor statuses (ours only).
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficPolicyStatus {
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    /// `{ancestorRef, controllerName, conditions}` without timestamps.
    pub ancestors: Vec<(Value, Vec<Condition>)>,
}

/// Every TrafficPolicy, with its targets.
pub fn traffic_policies(index: &Index) -> Vec<TrafficPolicyStatus> {
    let namespaces: std::collections::BTreeSet<&str> = index
        .traffic_policies()
        .map(|p| p.namespace.as_str())
        .collect();
    let mut out = Vec::new();
    for ns in namespaces {
        for (name, r) in crate::traffic::resolve_namespace(index, ns) {
            let generation = index.traffic_policy(ns, &name).map_or(0, |p| p.generation);
            out.push(TrafficPolicyStatus {
                namespace: ns.to_string(),
                name,
                generation,
                ancestors: r.ancestors,
            });
        }
    }
    out
}

/// Every waypoint Gateway that exists (an implied one has no object yet).
pub fn gateways(index: &Index) -> Vec<GatewayStatus> {
    waypoint::all(index)
        .into_iter()
        .filter(|w| !w.implied)
        .filter_map(|w| {
            let g = index.gateway(&w.namespace, &w.name)?;
            Some(GatewayStatus {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                generation: g.generation,
                conditions: waypoint::conditions(index, &w),
            })
        })
        .collect()
}

/// Every route, with its Service parents (none: any entry of ours it still
/// carries goes).
pub fn routes(index: &Index) -> Vec<RouteStatus> {
    index
        .compiled_routes()
        .into_iter()
        .map(|(r, c)| RouteStatus {
            kind: r.kind,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            generation: r.generation,
            parents: c
                .parents
                .into_iter()
                .map(|((ns, name, port), conditions)| (parent_ref(&ns, &name, port), conditions))
                .collect(),
        })
        .collect()
}

/// A Service `parentRef` as routes write it.
pub fn parent_ref(namespace: &str, name: &str, port: Option<u16>) -> Value {
    let mut r = json!({"group": "", "kind": "Service", "namespace": namespace, "name": name});
    if let Some(p) = port {
        r["port"] = json!(p);
    }
    r
}

/// A condition as the API stores it (`metav1.Condition`).
pub fn api_condition(c: &Condition, generation: i64, since: &str) -> Value {
    json!({
        "type": c.kind,
        "status": if c.status { "True" } else { "False" },
        "reason": c.reason,
        "message": c.message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    })
}

/// The transition time to write for `c`: the one `previous` (the same
/// condition as stored) carries when its status is unchanged, else `now`.
pub fn since<'a>(c: &Condition, previous: Option<&'a Value>, now: &'a str) -> &'a str {
    let status = if c.status { "True" } else { "False" };
    match previous {
        Some(p) if p["status"] == status => p["lastTransitionTime"].as_str().unwrap_or(now),
        _ => now,
    }
}

/// A route's `status.parents` with ours replaced by `ours`: entries of other
/// controllers are kept as they are, ours keep their transition times where
/// a condition's status did not change.
pub fn merge_parents(current: &[Value], ours: &RouteStatus, now: &str) -> Vec<Value> {
    merge(current, "parentRef", &ours.parents, ours.generation, now)
}

/// A TrafficPolicy's `status.ancestors`, merged as [`merge_parents`] does.
pub fn merge_ancestors(current: &[Value], ours: &TrafficPolicyStatus, now: &str) -> Vec<Value> {
    merge(
        current,
        "ancestorRef",
        &ours.ancestors,
        ours.generation,
        now,
    )
}

/// Entries of other controllers kept, ours (`key`: the field naming what
/// an entry is for) replaced, with their transition times where a
/// condition's status held.
fn merge(
    current: &[Value],
    key: &str,
    ours: &[(Value, Vec<Condition>)],
    generation: i64,
    now: &str,
) -> Vec<Value> {
    let mut out: Vec<Value> = current
        .iter()
        .filter(|p| p["controllerName"] != CONTROLLER_NAME)
        .cloned()
        .collect();
    for (parent, conditions) in ours {
        let before = current
            .iter()
            // We write every field of our references, so the stored one is
            // the same value (no API defaults fill it in).
            .find(|p| p["controllerName"] == CONTROLLER_NAME && &p[key] == parent);
        let conditions: Vec<Value> = conditions
            .iter()
            .map(|c| {
                let previous = before.and_then(|b| {
                    b["conditions"]
                        .as_array()?
                        .iter()
                        .find(|p| p["type"] == c.kind)
                });
                api_condition(c, generation, since(c, previous, now))
            })
            .collect();
        out.push(json!({
            key: parent,
            "controllerName": CONTROLLER_NAME,
            "conditions": conditions,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(kind: &'static str, status: bool) -> Condition {
        Condition {
            kind,
            status,
            reason: if status {
                "Accepted"
            } else {
                "BackendNotFound"
            },
            message: String::new(),
        }
    }

    #[test]
    fn other_controllers_entries_stay_and_transition_times_hold() {
        let ours = RouteStatus {
            kind: RouteKind::Http,
            namespace: "shop".into(),
            name: "r".into(),
            generation: 3,
            parents: vec![(
                parent_ref("shop", "web", Some(80)),
                vec![cond("Accepted", true), cond("ResolvedRefs", false)],
            )],
        };
        let theirs = json!({"parentRef": {"name": "edge", "kind": "Gateway"}, "controllerName": "example.com/edge", "conditions": []});
        let before = json!({
            "parentRef": parent_ref("shop", "web", Some(80)),
            "controllerName": CONTROLLER_NAME,
            "conditions": [
                {"type": "Accepted", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "ResolvedRefs", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]
        });
        let now = "2026-12-01T00:00:00Z";
        let merged = merge_parents(&[theirs.clone(), before], &ours, now);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0], theirs, "another controller's entry, untouched");
        let c = merged[1]["conditions"].as_array().unwrap();
        assert_eq!(
            c[0]["lastTransitionTime"], "2026-01-01T00:00:00Z",
            "unchanged"
        );
        assert_eq!(c[1]["lastTransitionTime"], now, "changed: True -> False");
        assert_eq!(c[1]["status"], "False");
        assert_eq!(c[1]["reason"], "BackendNotFound");
        assert_eq!(c[1]["observedGeneration"], 3);
        // Once written, writing again changes nothing.
        assert_eq!(
            merge_parents(&merged, &ours, "2027-01-01T00:00:00Z"),
            merged
        );
    }

    #[test]
    fn a_policys_ancestors_are_merged_as_route_parents_are() {
        let target = crate::traffic::ancestor_ref("shop", "web", None);
        let ours = TrafficPolicyStatus {
            namespace: "shop".into(),
            name: "p".into(),
            generation: 4,
            ancestors: vec![(target.clone(), vec![cond("Accepted", true)])],
        };
        let theirs = json!({"ancestorRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "edge"},
            "controllerName": "example.com/edge", "conditions": []});
        let stale = json!({"ancestorRef": crate::traffic::ancestor_ref("shop", "gone", None),
            "controllerName": CONTROLLER_NAME, "conditions": []});
        let merged = merge_ancestors(&[theirs.clone(), stale], &ours, "2026-12-01T00:00:00Z");
        assert_eq!(merged.len(), 2, "ours for a target no longer named goes");
        assert_eq!(merged[0], theirs);
        assert_eq!(merged[1]["ancestorRef"], target);
        assert_eq!(merged[1]["conditions"][0]["observedGeneration"], 4);
        assert_eq!(
            merge_ancestors(&merged, &ours, "2027-01-01T00:00:00Z"),
            merged
        );
    }
}
