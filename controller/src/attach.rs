//! What quicmesh's policy kinds share in their Kubernetes form (Gateway
//! API policy attachment): the `targetRefs` entries they attach by, and
//! the `status.conditions` the controller writes on them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Gateway API policy target reference (in the policy's namespace).
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct TargetRef {
    /// `gateway.networking.k8s.io` for Gateway and GatewayClass, `""` for Service.
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// What the controller says of a policy (written by it, not by users).
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// `Accepted`: True when the object is understood (its message may
    /// name parts that fail closed somewhere); False, reason `Invalid`,
    /// when it is not (what it targets is then refused).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<StatusCondition>,
}

/// A condition as Kubernetes APIs write them (`metav1.Condition`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCondition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default)]
    pub last_transition_time: String,
}
