//! Writes [`super`]'s status to the API server, as Gateway API controllers
//! do:
//!
//! - a waypoint Gateway's `status.conditions`: server-side apply on the
//!   `status` subresource (conditions are a map by `type`, so only ours are
//!   touched);
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
    api_condition, gateways, merge_ancestors, merge_parents, routes, since, traffic_policies,
    GatewayStatus, PolicyStatus, RouteStatus,
};
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

/// Writes a Gateway's conditions; `times` holds each condition's last
/// transition (kept across writes while its status holds).
async fn write_gateway(
    client: &kube::Client,
    g: &GatewayStatus,
    times: &mut HashMap<(String, String, &'static str), Value>,
) -> anyhow::Result<()> {
    let now = now();
    let conditions: Vec<Value> = g
        .conditions
        .iter()
        .map(|c| {
            let key = (g.namespace.clone(), g.name.clone(), c.kind);
            api_condition(c, g.generation, since(c, times.get(&key), &now))
        })
        .collect();
    let body = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": g.name, "namespace": g.namespace},
        "status": {"conditions": conditions},
    });
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &g.namespace,
        &gateway_api("Gateway", "gateways"),
    );
    api.patch_status(
        &g.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    // What was written is what later writes compare with.
    for (c, v) in g.conditions.iter().zip(conditions) {
        times.insert((g.namespace.clone(), g.name.clone(), c.kind), v);
    }
    Ok(())
}

/// Reads a route, merges our parent statuses into it and writes them back
/// if they differ.
async fn write_route(client: &kube::Client, r: &RouteStatus) -> anyhow::Result<bool> {
    let ar = match r.kind {
        crate::model::RouteKind::Http => gateway_api("HTTPRoute", "httproutes"),
        crate::model::RouteKind::Grpc => gateway_api("GRPCRoute", "grpcroutes"),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &r.namespace, &ar);
    let current = api.get(&r.name).await?;
    let parents: Vec<Value> = current
        .data
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let merged = merge_parents(&parents, r, &now());
    if merged == parents {
        return Ok(false);
    }
    let body = json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "status": {"parents": merged},
    });
    api.patch_status(&r.name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(true)
}

fn gist_of_policy(p: &PolicyStatus) -> Value {
    json!([p.generation, p.ancestors])
}

/// Reads a TrafficPolicy, merges our ancestor statuses into it and writes
/// them back if they differ.
async fn write_traffic_policy(client: &kube::Client, p: &PolicyStatus) -> anyhow::Result<bool> {
    let ar = kube::api::ApiResource::erase::<crate::traffic::TrafficPolicy>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &p.namespace, &ar);
    let current = api.get(&p.name).await?;
    let ancestors: Vec<Value> = current
        .data
        .pointer("/status/ancestors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let merged = merge_ancestors(&ancestors, p, &now());
    if merged == ancestors {
        return Ok(false);
    }
    let body = json!({
        "metadata": {"resourceVersion": current.metadata.resource_version},
        "status": {"ancestors": merged},
    });
    api.patch_status(&p.name, &PatchParams::default(), &Patch::Merge(&body))
        .await?;
    Ok(true)
}

/// Writes status until the process ends.
pub async fn run(client: kube::Client, store: Arc<Store>, metrics: StatusMetrics) {
    let mut passes = Passes::start(&store, RESYNC).await;
    let mut written: HashMap<String, Value> = HashMap::new();
    let mut times = HashMap::new();
    let mut retries = Retries::default();
    loop {
        let (gs, rs, ps) = store.with_index(|ix| (gateways(ix), routes(ix), traffic_policies(ix)));
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
            let key = format!("TrafficPolicy {}/{}", p.namespace, p.name);
            let gist = gist_of_policy(p);
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
                rs.iter()
                    .map(|r| format!("{} {}/{}", r.kind.api_kind(), r.namespace, r.name)),
            )
            .chain(
                ps.iter()
                    .map(|p| format!("TrafficPolicy {}/{}", p.namespace, p.name)),
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
