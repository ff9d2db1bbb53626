//! `WorkloadEntry` (quicmesh.io/v1alpha1): a workload that is not a pod of
//! this mesh — a federated mesh's, or one a SPIRE-run system serves — at a
//! fixed address, with the SPIFFE ID it must prove. Both sources read it
//! with the manifest parser ([`crate::sources::manifest`]), so a file and
//! the API server are held to the same rules; this module is the CRD.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model;

/// A workload outside this mesh's pods. ztunnels tunnel to `address` as to
/// a pod (its tunnel port) and refuse it unless it proves `identity`
/// (verified against that identity's trust domain's bundle: federate it
/// first); Services of its namespace select it by `labels`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "quicmesh.io",
    version = "v1alpha1",
    kind = "WorkloadEntry",
    namespaced,
    shortname = "we"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntrySpec {
    /// Its IP address (IPv4 or IPv6). An address a pod of this mesh holds
    /// is the pod's: the entry is then ignored.
    pub address: String,
    /// The SPIFFE ID it must present, e.g.
    /// `spiffe://west.example/ns/shop/sa/web` (any path: a SPIRE-run
    /// workload's need not be `/ns/<ns>/sa/<sa>`).
    pub identity: String,
    /// Labels Services select it by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Named ports (a Service's named `targetPort` resolves here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
}

pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&WorkloadEntry::crd()).expect("CRD serializes")
}

/// An entry from the API server, read as a manifest is; one that does not
/// read is logged and skipped (no workload is better than a wrong one).
pub fn from_dynamic(o: &DynamicObject) -> Option<model::WorkloadEntry> {
    let name = format!(
        "WorkloadEntry {}/{}",
        o.metadata.namespace.as_deref().unwrap_or_default(),
        o.metadata.name.as_deref().unwrap_or_default()
    );
    // List items may come without their type: it is known.
    let mut o = o.clone();
    o.types = Some(kube::api::TypeMeta {
        api_version: crate::sources::manifest::QUICMESH_API_VERSION.into(),
        kind: "WorkloadEntry".into(),
    });
    let parsed = serde_yaml::to_value(&o)
        .map_err(|e| e.to_string())
        .and_then(|v| crate::sources::manifest::parse_value(&v, "kube").map_err(|e| e.to_string()));
    match parsed {
        Ok(Some(model::Object::WorkloadEntry(e))) => Some(e),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(entry = %name, error = %e, "skipped a WorkloadEntry that does not read");
            None
        }
    }
}
