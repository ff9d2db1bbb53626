//! What the controller reports about itself: the reports behind /status
//! (on the loopback admin port) and the state gauges of /metrics. Pure over
//! the index.

use quicmesh_core::authz::set::Target;

use crate::index::Index;

/// One line per AuthorizationPolicy for /status and the metrics.
#[derive(serde::Serialize)]
pub struct PolicyReport {
    pub name: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What `targetRefs` attach it to (decided by waypoints only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attached_to: Vec<String>,
}

pub fn policy_report(ix: &Index) -> Vec<PolicyReport> {
    ix.policies()
        .map(|p| PolicyReport {
            name: p.policy.name.clone(),
            state: match (&p.policy.invalid, p.warnings.is_empty()) {
                (Some(_), _) => "invalid",
                (None, false) => "l7_at_waypoint",
                (None, true) => "valid",
            },
            invalid: p.policy.invalid.clone(),
            warnings: p.warnings.clone(),
            attached_to: match &p.target {
                crate::model::PolicyTarget::Attached(ts) => ts
                    .iter()
                    .map(|t| match t {
                        Target::Gateway(n) => format!("Gateway {}/{n}", p.namespace),
                        Target::Service(n) => format!("Service {}/{n}", p.namespace),
                        Target::GatewayClass => {
                            format!("GatewayClass {}", crate::waypoint::WAYPOINT_CLASS)
                        }
                        Target::Unknown(k) => k.clone(),
                    })
                    .collect(),
                _ => Vec::new(),
            },
        })
        .collect()
}

/// HTTPRoutes (with a Service parent) by state, for the metric.
pub fn route_states(ix: &Index) -> [(&'static str, i64); 3] {
    let mut n = [("accepted", 0), ("unresolved_refs", 0), ("not_accepted", 0)];
    for (_, c) in ix.compiled_routes() {
        if c.parents.is_empty() {
            continue;
        }
        let accepted = c
            .parents
            .iter()
            .any(|(_, cs)| cs.first().is_some_and(|c| c.status));
        let resolved = c.parents.iter().all(|(_, cs)| cs.iter().all(|c| c.status));
        let i = match (accepted, resolved) {
            (true, true) => 0,
            (true, false) => 1,
            (false, _) => 2,
        };
        n[i].1 += 1;
    }
    n
}

/// Each HTTPRoute's status per Service parent, as a Gateway API controller
/// writes it (`status.parents[].conditions`), for /status.
pub fn route_report(ix: &Index) -> Vec<serde_json::Value> {
    crate::status::routes(ix)
        .into_iter()
        .map(|r| {
            let parents: Vec<_> = r
                .parents
                .iter()
                .map(|(parent, conditions)| {
                    serde_json::json!({
                        "parentRef": parent,
                        "controllerName": crate::status::CONTROLLER_NAME,
                        "conditions": conditions,
                    })
                })
                .collect();
            serde_json::json!({"kind": r.kind.api_kind(), "namespace": r.namespace, "name": r.name, "parents": parents})
        })
        .collect()
}

/// Every waypoint with its Gateway status, for /status.
pub fn waypoint_report(ix: &Index) -> Vec<serde_json::Value> {
    crate::waypoint::all(ix)
        .into_iter()
        .map(|w| {
            let conditions = crate::waypoint::conditions(ix, &w);
            serde_json::json!({"namespace": w.namespace, "name": w.name, "implied": w.implied,
                "gatewayClassName": crate::waypoint::WAYPOINT_CLASS,
                "waypointFor": w.waypoint_for, "conditions": conditions})
        })
        .collect()
}

/// Each RequestAuthentication with its conditions (`Accepted`,
/// `KeysFetched`; as written back in Kubernetes) and, per rule, where its
/// keys come from, for /status.
pub fn authentication_report(ix: &Index) -> Vec<serde_json::Value> {
    crate::status::authentications(ix)
        .into_iter()
        .map(|a| {
            let rules: Vec<_> = a
                .compiled
                .resource
                .rules
                .iter()
                .map(|r| {
                    let keys = if r.jwks_uri.is_empty() {
                        "inline"
                    } else {
                        r.jwks_uri.as_str()
                    };
                    serde_json::json!({"issuer": r.issuer, "keys": keys})
                })
                .collect();
            serde_json::json!({"namespace": a.namespace, "name": a.name,
                "conditions": a.conditions(), "rules": rules})
        })
        .collect()
}

/// Each TrafficPolicy's status per target, as Gateway API policies carry
/// it (`status.ancestors[].conditions`), for /status; an invalid one also
/// says why at the top (it may name no readable target).
pub fn traffic_policy_report(ix: &Index) -> Vec<serde_json::Value> {
    crate::status::traffic_policies(ix)
        .into_iter()
        .map(|p| {
            let ancestors: Vec<_> = p
                .ancestors
                .iter()
                .map(|(target, conditions)| {
                    serde_json::json!({
                        "ancestorRef": target,
                        "controllerName": crate::status::CONTROLLER_NAME,
                        "conditions": conditions,
                    })
                })
                .collect();
            let mut v = serde_json::json!({"namespace": p.namespace, "name": p.name, "ancestors": ancestors});
            if let Some(Err(why)) = ix.traffic_policy(&p.namespace, &p.name).map(|t| &t.parts) {
                v["invalid"] = why.clone().into();
            }
            v
        })
        .collect()
}

/// TrafficPolicy targets by the reason of their `Accepted` condition
/// (`Accepted`, `Invalid`, `TargetNotFound`, `Conflicted`), for the metric.
pub fn traffic_policy_targets(ix: &Index) -> Vec<(&'static str, i64)> {
    use crate::traffic::reason;
    let mut n = [
        (reason::ACCEPTED, 0),
        (reason::INVALID, 0),
        (reason::TARGET_NOT_FOUND, 0),
        (reason::CONFLICTED, 0),
    ];
    for p in crate::status::traffic_policies(ix) {
        for (_, conditions) in &p.ancestors {
            for c in conditions {
                if let Some(slot) = n.iter_mut().find(|(r, _)| *r == c.reason) {
                    slot.1 += 1;
                }
            }
        }
    }
    n.to_vec()
}
