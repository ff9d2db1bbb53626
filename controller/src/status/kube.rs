//! Writes [`super`]'s status to the API server, as Gateway API controllers
//! do:
//!
//! - a waypoint Gateway's `status.conditions`: server-side apply on the
//!   `status` subresource (conditions are a map by `type`, so only ours are
//!   touched);
//! - a RequestAuthentication's `status.conditions` (`Accepted`): the same,
//!   on its own `status` subresource;
//! - a route's `status.parents`: a list other controllers write too (a
//!   route may also have Gateway parents), so it is read, our entries
//!   replaced and the others kept, and written back with a merge patch that
//!   carries the resourceVersion read: a concurrent writer makes it fail
//!   (409) and it is done again on the next pass.
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
    api_condition, authentications, gateways, merge_parents, routes, since, AuthenticationStatus,
    GatewayStatus, RouteStatus,
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

fn gist_of_authentication(a: &AuthenticationStatus) -> Value {
    json!([a.generation, a.conditions()])
}

/// Writes a RequestAuthentication's conditions by server-side apply, as
/// for a Gateway.
async fn write_authentication(
    client: &kube::Client,
    a: &AuthenticationStatus,
    times: &mut HashMap<(String, String, &'static str), Value>,
) -> anyhow::Result<()> {
    let now = now();
    let kinds = a.conditions();
    let conditions: Vec<Value> = kinds
        .iter()
        .map(|c| {
            let key = (
                a.namespace.clone(),
                format!("RequestAuthentication {}", a.name),
                c.kind,
            );
            api_condition(c, a.generation, since(c, times.get(&key), &now))
        })
        .collect();
    let body = json!({
        "apiVersion": crate::sources::manifest::QUICMESH_API_VERSION,
        "kind": "RequestAuthentication",
        "metadata": {"name": a.name, "namespace": a.namespace},
        "status": {"conditions": conditions},
    });
    let resource = kube::api::ApiResource::erase::<crate::authn::RequestAuthentication>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &a.namespace, &resource);
    api.patch_status(
        &a.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    for (c, v) in kinds.iter().zip(conditions) {
        times.insert(
            (
                a.namespace.clone(),
                format!("RequestAuthentication {}", a.name),
                c.kind,
            ),
            v,
        );
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

/// Writes status until the process ends.
pub async fn run(client: kube::Client, store: Arc<Store>, metrics: StatusMetrics) {
    let mut passes = Passes::start(&store, RESYNC).await;
    let mut written: HashMap<String, Value> = HashMap::new();
    let mut times = HashMap::new();
    let mut retries = Retries::default();
    loop {
        let (gs, rs, auths) =
            store.with_index(|ix| (gateways(ix), routes(ix), authentications(ix)));
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
        for a in &auths {
            let key = format!("RequestAuthentication {}/{}", a.namespace, a.name);
            let gist = gist_of_authentication(a);
            if written.get(&key) == Some(&gist) || !retries.ready(&key, now) {
                continue;
            }
            match write_authentication(&client, a, &mut times).await {
                Ok(()) => {
                    count(&metrics, "RequestAuthentication", "written");
                    retries.succeeded(&key);
                    written.insert(key, gist);
                }
                Err(e) if is_not_found(&e) => retries.succeeded(&key),
                Err(e) => {
                    let after = retries.failed(&key, now);
                    tracing::warn!(object = %key, error = %format!("{e:#}"), retry_in_s = after.as_secs(), "could not write a RequestAuthentication's status; retried later");
                    count(&metrics, "RequestAuthentication", "error");
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
                auths
                    .iter()
                    .map(|a| format!("RequestAuthentication {}/{}", a.namespace, a.name)),
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
