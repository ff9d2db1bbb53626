//! Applies the [`Plan`](super::Plan) to a cluster: server-side apply of
//! each object (field manager [`FIELD_MANAGER`], forced: the controller owns
//! these fields), deletion of the Gateways it created that no label asks
//! for any more. Runs after the sources have synced (a partial view would
//! delete what it has not seen yet), again on every change of the objects,
//! and every [`RESYNC`] in full (what someone changed by hand is put back).
//! An object the API server refuses is logged and counted, and retried on
//! the next pass; the others go ahead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;

use super::{plan, Settings, FIELD_MANAGER};
use crate::store::{Pass, Passes, Retries, Store};

/// Everything is applied again this often, changed or not.
pub const RESYNC: Duration = Duration::from_secs(300);

/// `quicmesh_controller_waypoint_provisioning_total{kind, result}`.
pub type ProvisionMetrics = Family<Vec<(String, String)>, Counter>;

/// The API resource of an object the plan holds.
fn resource(o: &Value) -> Option<ApiResource> {
    let (group, version, plural) = match (o["apiVersion"].as_str()?, o["kind"].as_str()?) {
        ("v1", "ServiceAccount") => ("", "v1", "serviceaccounts"),
        ("v1", "ConfigMap") => ("", "v1", "configmaps"),
        ("v1", "Service") => ("", "v1", "services"),
        ("apps/v1", "Deployment") => ("apps", "v1", "deployments"),
        ("gateway.networking.k8s.io/v1", "Gateway") => {
            return Some(crate::sources::kube::gateway_api("Gateway", "gateways"))
        }
        _ => return None,
    };
    Some(ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: o["apiVersion"].as_str()?.into(),
        kind: o["kind"].as_str()?.into(),
        plural: plural.into(),
    })
}

fn describe(o: &Value) -> String {
    format!(
        "{} {}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["namespace"].as_str().unwrap_or("?"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Counts one outcome in a `{kind, result}` family.
pub(crate) fn count(metrics: &ProvisionMetrics, kind: &str, result: &str) {
    metrics
        .get_or_create(&vec![
            ("kind".into(), kind.into()),
            ("result".into(), result.into()),
        ])
        .inc();
}

/// Why an object was not applied.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    /// An object of that name exists and is not ours (a user's Service or
    /// ServiceAccount named like the Gateway): never taken over.
    #[error(
        "{0} exists and is not the waypoint's (no owner reference to its Gateway): left alone"
    )]
    NotOurs(String),
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Whether `existing` is one the controller applied for the same owner.
fn ours(existing: &DynamicObject, o: &Value) -> bool {
    let owner = o["metadata"]["ownerReferences"][0]["uid"].as_str();
    existing
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(super::MANAGED_BY_LABEL))
        .is_some_and(|v| v == FIELD_MANAGER)
        && existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| Some(r.uid.as_str()) == owner)
}

/// Server-side applies `o`; an object it owns (not a Gateway) only if no
/// object of its name exists yet or the existing one is ours.
async fn apply(client: &kube::Client, o: &Value) -> Result<(), ApplyError> {
    let ar = resource(o).expect("the plan holds only kinds the controller applies");
    let (ns, name) = (
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default(),
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    if ar.kind != "Gateway" {
        if let Some(existing) = api.get_opt(name).await? {
            if !ours(&existing, o) {
                return Err(ApplyError::NotOurs(describe(o)));
            }
        }
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(o),
    )
    .await?;
    Ok(())
}

/// Reconciles until the process ends.
pub async fn run(
    client: kube::Client,
    store: Arc<Store>,
    settings: Settings,
    metrics: ProvisionMetrics,
) {
    let mut passes = Passes::start(&store, RESYNC).await;
    // What was applied, by object, so that an unchanged plan costs nothing.
    let mut applied: HashMap<String, Value> = HashMap::new();
    let mut retries = Retries::default();
    loop {
        let p = store.with_index(|ix| plan(ix, &settings));
        let now = std::time::Instant::now();
        let planned: std::collections::HashSet<String> = p.apply.iter().map(describe).collect();
        retries.retain(|k| planned.contains(k));
        for o in &p.apply {
            let what = describe(o);
            if applied.get(&what) == Some(o) || !retries.ready(&what, now) {
                continue;
            }
            let kind = o["kind"].as_str().unwrap_or("?");
            match apply(&client, o).await {
                Ok(()) => {
                    tracing::info!(object = %what, "waypoint object applied");
                    count(&metrics, kind, "applied");
                    retries.succeeded(&what);
                    applied.insert(what, o.clone());
                }
                Err(e @ ApplyError::NotOurs(_)) => {
                    let after = retries.failed(&what, now);
                    tracing::warn!(object = %what, error = %e, retry_in_s = after.as_secs(), "waypoint object not applied; checked again later");
                    count(&metrics, kind, "not_ours");
                    applied.remove(&what);
                }
                Err(e) => {
                    let after = retries.failed(&what, now);
                    tracing::warn!(object = %what, error = %e, retry_in_s = after.as_secs(), "waypoint object refused by the API server; retried later");
                    count(&metrics, kind, "error");
                    applied.remove(&what);
                }
            }
        }
        for (ns, name, why) in &p.invalid {
            tracing::warn!(gateway = %format!("{ns}/{name}"), reason = %why, "waypoint not provisioned");
        }
        for (ns, name) in &p.delete {
            let ar = resource(&serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway"}))
                .expect("a known kind");
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {
                    tracing::info!(gateway = %format!("{ns}/{name}"), "deleted the waypoint Gateway no label asks for any more");
                    count(&metrics, "Gateway", "deleted");
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(gateway = %format!("{ns}/{name}"), error = %e, "could not delete a waypoint Gateway; retried on the next pass");
                    count(&metrics, "Gateway", "error");
                }
            }
            applied.retain(|k, _| !k.starts_with(&format!("Gateway {ns}/{name}")));
        }
        match passes.next(&retries).await {
            None => return,
            Some(Pass::Resync) => applied.clear(),
            Some(Pass::Changed | Pass::Retry) => {}
        }
    }
}
