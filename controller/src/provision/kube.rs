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
use crate::store::{Pass, Passes, Store};

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

/// Server-side applies `o`.
async fn apply(client: &kube::Client, o: &Value) -> anyhow::Result<()> {
    let ar = resource(o).ok_or_else(|| anyhow::anyhow!("not a kind the controller applies"))?;
    let (ns, name) = (
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default(),
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
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
    loop {
        let p = store.with_index(|ix| plan(ix, &settings));
        for o in &p.apply {
            let what = describe(o);
            if applied.get(&what) == Some(o) {
                continue;
            }
            let kind = o["kind"].as_str().unwrap_or("?");
            match apply(&client, o).await {
                Ok(()) => {
                    tracing::info!(object = %what, "waypoint object applied");
                    count(&metrics, kind, "applied");
                    applied.insert(what, o.clone());
                }
                Err(e) => {
                    tracing::warn!(object = %what, error = %format!("{e:#}"), "waypoint object refused by the API server; retried on the next pass");
                    count(&metrics, kind, "error");
                    applied.remove(&what);
                }
            }
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
        match passes.next().await {
            None => return,
            Some(Pass::Resync) => applied.clear(),
            Some(Pass::Changed) => {}
        }
    }
}
