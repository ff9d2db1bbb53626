//! Writes [`super`]'s status to the API server, as Gateway API controllers
//! do:
//!
//! - a waypoint Gateway's `status.conditions`: server-side apply on the
//!   `status` subresource (conditions are a map by `type`, so only ours are
//!   touched);
//! - a quicmesh policy's `status.conditions` (AuthorizationPolicy,
//!   RequestAuthentication, TrustDomainFederation): the same, on its own group's `status`
//!   subresource;
//! - a route's `status.parents`: a list other controllers write too (a
//!   route may also have Gateway parents), so it is read, our entries
//!   replaced and the others kept, and written back with a merge patch that
//!   carries the resourceVersion read: a concurrent writer makes it fail
//!   (409) and it is done again on the next pass;
//! - a TrafficPolicy's `status.ancestors` the same way (policy attachment
//!   status is shared by the controllers of a policy's ancestors).
//!
//! Runs after the sources have synced, on every change of the objects, and
//! in full every [`RESYNC`]; what is unchanged since it was last written is
//! not written again. Failures are logged, counted and retried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{json, Value};

use super::{
    api_condition, authentications, authorization_policies, gateways, merge_ancestors,
    merge_parents, routes, since, traffic_policies, GatewayStatus, PolicyStatus, RouteStatus,
    TrafficPolicyStatus,
};
use crate::gamma::Condition;
use crate::provision::kube::count;
use crate::provision::FIELD_MANAGER;
use crate::sources::kube::gateway_api;
use crate::store::{Pass, Passes, Retries, Store};

/// Everything is checked again this often.
pub const RESYNC: Duration = Duration::from_secs(300);

/// `quicmesh_controller_status_writes_total{kind, result}`.
pub type StatusMetrics = Family<Vec<(String, String)>, Counter>;

fn now() -> String {
    serde_json::to_value(Time(k8s_openapi::jiff::Timestamp::now()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What a status says, without its timestamps: what decides whether it
/// must be written again.
fn gist_of_gateway(g: &GatewayStatus) -> Value {
    json!([g.generation, g.conditions])
}

fn gist_of_route(r: &RouteStatus) -> Value {
    json!([r.generation, r.parents])
}

/// The last transition of each condition written, by (kind, namespace,
/// name, condition): kept across writes while a condition's status holds.
type Times = HashMap<(String, String, String, &'static str), Value>;

/// One object whose `status.conditions` the controller owns: applied
/// server-side on its `status` subresource (conditions are a map by
/// `type`, so only ours are touched).
struct Conditions<'a> {
    api_version: &'static str,
    resource: kube::api::ApiResource,
    namespace: &'a str,
    name: &'a str,
    generation: i64,
    conditions: &'a [Condition],
}

async fn write_conditions(
    client: &kube::Client,
    o: Conditions<'_>,
    times: &mut Times,
) -> anyhow::Result<()> {
    let now = now();
    let key = |c: &Condition| {
        (
            o.resource.kind.clone(),
            o.namespace.to_string(),
            o.name.to_string(),
            c.kind,
        )
    };
    let conditions: Vec<Value> = o
        .conditions
        .iter()
        .map(|c| api_condition(c, o.generation, since(c, times.get(&key(c)), &now)))
        .collect();
    let body = json!({
        "apiVersion": o.api_version,
        "kind": o.resource.kind,
        "metadata": {"name": o.name, "namespace": o.namespace},
        "status": {"conditions": conditions},
    });
    // Cluster-scoped objects (TrustDomainFederation) have no namespace.
    let (api, body): (Api<DynamicObject>, _) = if o.namespace.is_empty() {
        let mut body = body;
        if let Some(m) = body["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        (Api::all_with(client.clone(), &o.resource), body)
    } else {
        (
            Api::namespaced_with(client.clone(), o.namespace, &o.resource),
            body,
        )
    };
    api.patch_status(
        o.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    // What was written is what later writes compare with.
    for (c, v) in o.conditions.iter().zip(conditions) {
        times.insert(key(c), v);
    }
    Ok(())
}

/// Writes a Gateway's conditions.
async fn write_gateway(
    client: &kube::Client,
    g: &GatewayStatus,
    times: &mut Times,
) -> anyhow::Result<()> {
    let o = Conditions {
        api_version: "gateway.networking.k8s.io/v1",
        resource: gateway_api("Gateway", "gateways"),
        namespace: &g.namespace,
        name: &g.name,
        generation: g.generation,
        conditions: &g.conditions,
    };
    write_conditions(client, o, times).await
}

/// Writes a quicmesh policy's conditions.
async fn write_policy(
    client: &kube::Client,
    p: &PolicyStatus,
    times: &mut Times,
) -> anyhow::Result<()> {
    let o = Conditions {
        api_version: "quicmesh.io/v1alpha1",
        resource: quicmesh_api(p.kind, p.plural),
        namespace: &p.namespace,
        name: &p.name,
        generation: p.generation,
        conditions: &p.conditions,
    };
    write_conditions(client, o, times).await
}

/// A kind of quicmesh.io/v1alpha1.
fn quicmesh_api(kind: &str, plural: &str) -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "quicmesh.io".into(),
        version: "v1alpha1".into(),
        api_version: "quicmesh.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Reads an object, merges ours into the list at `field` of its status
/// (a list other controllers write too) and writes the list back, with the
/// resourceVersion read, if it changed.
async fn merge_status_list(
    client: &kube::Client,
    ar: &kube::api::ApiResource,
    (namespace, name): (&str, &str),
    field: &str,
    merge: impl FnOnce(&[Value]) -> Vec<Value>,
) -> anyhow::Result<bool> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
    let current = api.get(name).await?;
    let list: Vec<Value> = current
        .data
        .pointer(&format!("/status/{field}"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let merged = merge(&list);
    if merged == list {
        return Ok(false);
    }
    let body = json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "status": {field: merged},
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(true)
}

/// A route's `status.parents`, ours merged in.
async fn write_route(client: &kube::Client, r: &RouteStatus) -> anyhow::Result<bool> {
    let ar = match r.kind {
        crate::model::RouteKind::Http => gateway_api("HTTPRoute", "httproutes"),
        crate::model::RouteKind::Grpc => gateway_api("GRPCRoute", "grpcroutes"),
    };
    merge_status_list(client, &ar, (&r.namespace, &r.name), "parents", |current| {
        merge_parents(current, r, &now())
    })
    .await
}

fn gist_of_traffic_policy(p: &TrafficPolicyStatus) -> Value {
    json!([p.generation, p.ancestors])
}

/// A TrafficPolicy's `status.ancestors`, ours merged in.
async fn write_traffic_policy(
    client: &kube::Client,
    p: &TrafficPolicyStatus,
) -> anyhow::Result<bool> {
    let ar = kube::api::ApiResource::erase::<crate::traffic::TrafficPolicy>(&());
    merge_status_list(
        client,
        &ar,
        (&p.namespace, &p.name),
        "ancestors",
        |current| merge_ancestors(current, p, &now()),
    )
    .await
}

/// Writes status until the process ends.
pub async fn run(client: kube::Client, store: Arc<Store>, metrics: StatusMetrics) {
    let mut passes = Passes::start(&store, RESYNC).await;
    let mut written: HashMap<String, Value> = HashMap::new();
    let mut times = HashMap::new();
    let mut retries = Retries::default();
    loop {
        let (gs, rs, ps, ts) = store.with_index(|ix| {
            let mut ps = authorization_policies(ix);
            ps.extend(authentications(ix).iter().map(|a| a.policy_status()));
            ps.extend(crate::federation::statuses(ix, store.trust_domain()));
            (gateways(ix), routes(ix), ps, traffic_policies(ix))
        });
        let now = std::time::Instant::now();
        for g in &gs {
            let key = format!("Gateway {}/{}", g.namespace, g.name);
            let gist = gist_of_gateway(g);
            if written.get(&key) == Some(&gist) || !retries.ready(&key, now) {
                continue;
            }
            match write_gateway(&client, g, &mut times).await {
                Ok(()) => {
                    count(&metrics, "Gateway", "written");
                    retries.succeeded(&key);
                    written.insert(key, gist);
                }
                Err(e) => {
                    let after = retries.failed(&key, now);
                    tracing::warn!(gateway = %key, error = %format!("{e:#}"), retry_in_s = after.as_secs(), "could not write a Gateway's status; retried later");
                    count(&metrics, "Gateway", "error");
                    written.remove(&key);
                }
            }
        }
        for r in &rs {
            let kind = r.kind.api_kind();
            let key = format!("{kind} {}/{}", r.namespace, r.name);
            let gist = gist_of_route(r);
            // A route with no Service parent that this run never wrote has
            // nothing of ours to change (routes of other controllers are
            // not read one by one).
            if written.get(&key) == Some(&gist)
                || (r.parents.is_empty() && !written.contains_key(&key))
                || !retries.ready(&key, now)
            {
                continue;
            }
            match write_route(&client, r).await {
                Ok(changed) => {
                    count(
                        &metrics,
                        kind,
                        if changed { "written" } else { "unchanged" },
                    );
                    retries.succeeded(&key);
                    written.insert(key, gist);
                }
                // Gone meanwhile: its watch event will follow.
                Err(e) if is_not_found(&e) => retries.succeeded(&key),
                Err(e) => {
                    let after = retries.failed(&key, now);
                    tracing::warn!(route = %key, error = %format!("{e:#}"), retry_in_s = after.as_secs(), "could not write a route's status; retried later");
                    count(&metrics, kind, "error");
                    written.remove(&key);
                }
            }
        }
        for p in &ps {
            let key = format!("{} {}/{}", p.kind, p.namespace, p.name);
            let gist = json!([p.generation, p.conditions]);
            if written.get(&key) == Some(&gist) || !retries.ready(&key, now) {
                continue;
            }
            match write_policy(&client, p, &mut times).await {
                Ok(()) => {
                    count(&metrics, p.kind, "written");
                    retries.succeeded(&key);
                    written.insert(key, gist);
                }
                // Gone meanwhile: its watch event will follow.
                Err(e) if is_not_found(&e) => retries.succeeded(&key),
                Err(e) => {
                    let after = retries.failed(&key, now);
                    tracing::warn!(policy = %key, error = %format!("{e:#}"), retry_in_s = after.as_secs(), "could not write a policy's status; retried later");
                    count(&metrics, p.kind, "error");
                    written.remove(&key);
                }
            }
        }
        for p in &ts {
            let key = format!("TrafficPolicy {}/{}", p.namespace, p.name);
            let gist = gist_of_traffic_policy(p);
            if written.get(&key) == Some(&gist) || !retries.ready(&key, now) {
                continue;
            }
            match write_traffic_policy(&client, p).await {
                Ok(changed) => {
                    count(
                        &metrics,
                        "TrafficPolicy",
                        if changed { "written" } else { "unchanged" },
                    );
                    retries.succeeded(&key);
                    written.insert(key, gist);
                }
                Err(e) if is_not_found(&e) => retries.succeeded(&key),
                Err(e) => {
                    let after = retries.failed(&key, now);
                    tracing::warn!(policy = %key, error = %format!("{e:#}"), retry_in_s = after.as_secs(), "could not write a TrafficPolicy's status; retried later");
                    count(&metrics, "TrafficPolicy", "error");
                    written.remove(&key);
                }
            }
        }
        let live: std::collections::HashSet<String> = gs
            .iter()
            .map(|g| format!("Gateway {}/{}", g.namespace, g.name))
            .chain(
                ps.iter()
                    .map(|p| format!("{} {}/{}", p.kind, p.namespace, p.name)),
            )
            .chain(
                ts.iter()
                    .map(|p| format!("TrafficPolicy {}/{}", p.namespace, p.name)),
            )
            .chain(
                rs.iter()
                    .map(|r| format!("{} {}/{}", r.kind.api_kind(), r.namespace, r.name)),
            )
            .collect();
        retries.retain(|k| live.contains(k));
        match passes.next(&retries).await {
            None => return,
            Some(Pass::Resync) => written.clear(),
            Some(Pass::Changed | Pass::Retry) => {}
        }
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<kube::Error>(), Some(kube::Error::Api(s)) if s.code == 404)
}
