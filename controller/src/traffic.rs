//! The `TrafficPolicy` custom resource (`quicmesh.io/v1alpha1`): resilience
//! settings for Services, attached as Gateway API policies are (GEP-713:
//! `targetRefs`, `status.ancestors`). Its Rust types (from which the CRD
//! schema is generated), its compilation into the model, and its
//! resolution against the rest of the index: which targets it is accepted
//! for, and the status conditions of each. Shared by the Kubernetes and
//! the file source; pure.
//!
//! 1. Compilation never fails: a spec that cannot be read, or a value out
//!    of its bounds, makes the policy *invalid* (`Accepted=False`,
//!    `Invalid`, the message naming the field). An invalid policy is not
//!    sent to waypoints: its targets run without it (fail open — a typo in
//!    a resilience setting must not take a Service down; the other,
//!    valid, policies of the Service still apply). Unknown fields are
//!    errors, not ignored (the CRD keeps them for us with
//!    `x-kubernetes-preserve-unknown-fields`).
//! 2. A target is a Service of the policy's namespace (`group: ""`,
//!    `kind: Service`), or one of its ports (`sectionName`: the port's
//!    name). A Service (or port name) that does not exist is
//!    `TargetNotFound`; the policy applies as soon as it does.
//! 3. Two policies that set the same part (`rateLimit`, `timeouts`...) for
//!    the same target conflict: the older (`creationTimestamp`, then
//!    name) wins; the newer is `Conflicted` for that target and does not
//!    apply there at all. A policy naming a port and one naming the whole
//!    Service do not conflict: the port's wins part by part (see
//!    [`quicmesh_core::traffic`]).
//! 4. Bounds are [`quicmesh_core::traffic`]'s, checked with
//!    [`quicmesh_core::traffic::Policy::from_proto`], the waypoint's own
//!    reading of what is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::CustomResource;
use quicmesh_core::traffic as tp;
use quicmesh_proto::config as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::gamma::Condition;
use crate::index::Index;
use crate::model;

/// Reasons of `Accepted`, as Gateway API policies spell them.
pub mod reason {
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID: &str = "Invalid";
    pub const TARGET_NOT_FOUND: &str = "TargetNotFound";
    pub const CONFLICTED: &str = "Conflicted";
}

/// Resilience for the Services it targets: outlier detection, circuit
/// breaking, rate limits, fault injection, timeouts, a body limit
/// (docs/resilience.md). Enforced by the Services' waypoint.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "quicmesh.io",
    version = "v1alpha1",
    kind = "TrafficPolicy",
    namespaced,
    shortname = "tp",
    status = "TrafficPolicyStatus"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct TrafficPolicySpec {
    /// Services of this namespace (`group: ""`, `kind: Service`), or one
    /// port of one (`sectionName`: the port's name). 1 to 16.
    pub target_refs: Vec<TargetRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetectionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_injection: Option<FaultInjectionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<TimeoutsSpec>,
    /// Requests with a longer body are answered 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct TargetRef {
    /// `""` (the core API group).
    #[serde(default)]
    pub group: String,
    /// `Service`.
    pub kind: String,
    pub name: String,
    /// A port's name: only that port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct OutlierDetectionSpec {
    /// 5xx answers (or failures to get one) in a row that eject an
    /// endpoint; 0 or absent: off.
    #[serde(
        default,
        rename = "consecutive5xxErrors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    /// 502, 503, 504 or connect failures in a row that eject; 0 or
    /// absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<SuccessRateSpec>,
    /// How often success rates are judged and ejection counts decay
    /// (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The first ejection's length, multiplied by the ejection's number
    /// (default 30s; at most 300s or this, whichever is longer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// Endpoints ejected at once at most (default 10; at least one may go
    /// and one always stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct SuccessRateSpec {
    /// Endpoints with `requestVolume` requests in an interval needed to
    /// judge any (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    /// Requests in an interval an endpoint needs to be judged (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
    /// An endpoint whose success rate over an interval is below this
    /// percentage (1-100) is ejected.
    pub threshold: u32,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ConnectionPoolSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct RateLimitSpec {
    /// Requests allowed per `per`.
    pub requests: u32,
    /// A duration (`1s`, `1m`).
    pub per: String,
    /// Requests allowed at once after a quiet while (default `requests`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// What each bucket is for: `route`, `sourceIdentity` or
    /// `header:<name>`; absent: one bucket for the Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct FaultInjectionSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelaySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortSpec>,
    /// Only requests with all of these headers get faults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<FaultHeaderSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct DelaySpec {
    /// 0 to 100, fractions allowed (`0.5`).
    pub percentage: f64,
    pub fixed_delay: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct AbortSpec {
    pub percentage: f64,
    /// 400-599; or `grpcStatus` (1-16), answered as a gRPC status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct FaultHeaderSpec {
    pub name: String,
    /// Exact; absent: any value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct TimeoutsSpec {
    /// Opening a connection to an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    /// A connection to an endpoint unused this long is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
    /// The whole request, for routes without `timeouts.request` of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// What the controller writes back (Gateway API `PolicyStatus`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicyStatus {
    #[serde(default)]
    pub ancestors: Vec<AncestorStatus>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AncestorStatus {
    pub ancestor_ref: AncestorRef,
    pub controller_name: String,
    #[serde(default)]
    pub conditions: Vec<StatusCondition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AncestorRef {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// `metav1.Condition`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCondition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default)]
    pub last_transition_time: String,
}

/// The CRD as YAML (checked in as controller/crds/trafficpolicies.quicmesh.io.yaml).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&TrafficPolicy::crd()).expect("CRD serializes")
}

/// Targets per policy at most.
pub const MAX_TARGET_REFS: usize = tp::MAX_TARGETS;

/// Compiles a policy object from its raw `spec` (JSON form). Never fails:
/// what cannot be read makes it invalid, with the field.
pub fn compile(
    namespace: &str,
    name: &str,
    created: i64,
    generation: i64,
    spec: &Value,
) -> model::TrafficPolicy {
    let targets = read_targets(namespace, spec);
    // The targets are read one by one (a malformed one is invalid on its
    // own); the rest of the spec as a whole.
    let count = spec
        .get("targetRefs")
        .and_then(Value::as_array)
        .map(Vec::len);
    let mut rest = spec.clone();
    if let Some(o) = rest.as_object_mut() {
        o.insert("targetRefs".into(), json!([]));
    }
    let parts = match count {
        _ if !spec.is_object() => Err(format!("spec: not an object: {spec}")),
        None if spec.get("targetRefs").is_some() => Err("spec.targetRefs: not a list".into()),
        None => Err("spec.targetRefs: is required".into()),
        Some(n) if n == 0 || n > MAX_TARGET_REFS => Err(format!(
            "spec.targetRefs: {n} targets; 1 to {MAX_TARGET_REFS} are allowed"
        )),
        Some(_) => serde_path_to_error::deserialize::<_, TrafficPolicySpec>(&rest)
            .map_err(|e| match e.path().to_string().as_str() {
                "." => format!("spec: {}", e.inner()),
                path => format!("spec.{path}: {}", e.inner()),
            })
            .and_then(|s| parts(&s)),
    };
    model::TrafficPolicy {
        name: name.to_string(),
        namespace: namespace.to_string(),
        created,
        generation,
        targets,
        parts,
        spec: spec.clone(),
    }
}

/// A policy whose object could not be read as one (an unserved
/// apiVersion): invalid, with `reason`, for the targets its spec names.
/// Its `spec` becomes the reason, a string, so that handing it on (as
/// `quicmesh local` does) and compiling again keeps it invalid.
pub fn compile_failed(
    namespace: &str,
    name: &str,
    created: i64,
    spec: &Value,
    reason: String,
) -> model::TrafficPolicy {
    model::TrafficPolicy {
        name: name.to_string(),
        namespace: namespace.to_string(),
        created,
        generation: 0,
        targets: read_targets(namespace, spec),
        parts: Err(reason.clone()),
        spec: Value::String(reason),
    }
}

/// Each `targetRefs` entry, read on its own (so that every one gets a
/// status even when another, or the rest of the spec, is malformed).
fn read_targets(namespace: &str, spec: &Value) -> Vec<model::TrafficTarget> {
    let Some(refs) = spec.get("targetRefs").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    refs.iter()
        .take(MAX_TARGET_REFS)
        .enumerate()
        .filter_map(|(i, raw)| {
            let path = format!("spec.targetRefs[{i}]");
            let read = serde_path_to_error::deserialize::<_, TargetRef>(raw)
                .map_err(|e| match e.path().to_string().as_str() {
                    "." => format!("{path}: {}", e.inner()),
                    p => format!("{path}.{p}: {}", e.inner()),
                })
                .and_then(|t| {
                    if !t.group.is_empty() || t.kind != "Service" {
                        return Err(format!(
                            "{path}: {}/{} is not a Service (group \"\", kind Service)",
                            t.group, t.kind
                        ));
                    }
                    if t.name.is_empty() {
                        return Err(format!("{path}.name: is required"));
                    }
                    Ok((t.name, t.section_name))
                });
            let ancestor = match &read {
                Ok((name, section)) => ancestor_ref(namespace, name, section.as_deref()),
                // What can be read of it, as strings (the status schema's).
                Err(_) => {
                    let field = |f: &str| raw.get(f).and_then(Value::as_str).unwrap_or_default();
                    let mut a = json!({"group": field("group"), "kind": field("kind"),
                        "namespace": namespace, "name": field("name")});
                    if let Some(s) = raw.get("sectionName").and_then(Value::as_str) {
                        a["sectionName"] = json!(s);
                    }
                    a
                }
            };
            // The same target twice is one.
            seen.insert(ancestor.to_string())
                .then_some(model::TrafficTarget {
                    ancestor,
                    target: read,
                })
        })
        .collect()
}

/// A target as the status names it (`ancestorRef`).
pub fn ancestor_ref(namespace: &str, name: &str, section: Option<&str>) -> Value {
    let mut r = json!({"group": "", "kind": "Service", "namespace": namespace, "name": name});
    if let Some(s) = section {
        r["sectionName"] = json!(s);
    }
    r
}

fn duration(s: &str, path: &str) -> Result<Duration, String> {
    let d = crate::gamma::duration(s).map_err(|e| format!("{path}: {e}"))?;
    if d.is_zero() {
        return Err(format!(
            "{path}: must be more than 0 (leave it out for none)"
        ));
    }
    Ok(d)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A count that must be at least 1 when given.
fn positive(n: Option<u32>, path: &str) -> Result<u32, String> {
    match n {
        None => Ok(0),
        Some(0) => Err(format!(
            "{path}: must be at least 1 (leave it out for no limit)"
        )),
        Some(n) => Ok(n),
    }
}

/// The parts the spec sets, in the wire form, defaults filled in, then
/// checked by the waypoint's own reading.
fn parts(s: &TrafficPolicySpec) -> Result<tp::Parts, String> {
    let outlier_detection = s
        .outlier_detection
        .as_ref()
        .map(|o| {
            let p = "spec.outlierDetection";
            Ok::<_, String>(pb::OutlierDetection {
                consecutive_5xx_errors: o.consecutive_5xx_errors.unwrap_or(0),
                consecutive_gateway_errors: o.consecutive_gateway_errors.unwrap_or(0),
                success_rate: o.success_rate.as_ref().map(|r| pb::SuccessRate {
                    minimum_hosts: r.minimum_hosts.unwrap_or(tp::DEFAULT_MINIMUM_HOSTS),
                    request_volume: r.request_volume.unwrap_or(tp::DEFAULT_REQUEST_VOLUME),
                    threshold_percent: r.threshold,
                }),
                interval_ms: ms(o
                    .interval
                    .as_deref()
                    .map(|d| duration(d, &format!("{p}.interval")))
                    .transpose()?
                    .unwrap_or(tp::DEFAULT_INTERVAL)),
                base_ejection_time_ms: ms(o
                    .base_ejection_time
                    .as_deref()
                    .map(|d| duration(d, &format!("{p}.baseEjectionTime")))
                    .transpose()?
                    .unwrap_or(tp::DEFAULT_BASE_EJECTION)),
                max_ejection_percent: o
                    .max_ejection_percent
                    .unwrap_or(tp::DEFAULT_MAX_EJECTION_PERCENT),
            })
        })
        .transpose()?;
    let connection_pool = s
        .connection_pool
        .as_ref()
        .map(|c| {
            let p = "spec.connectionPool";
            Ok::<_, String>(pb::ConnectionPool {
                max_connections: positive(c.max_connections, &format!("{p}.maxConnections"))?,
                max_pending_requests: positive(
                    c.max_pending_requests,
                    &format!("{p}.maxPendingRequests"),
                )?,
                max_requests_per_connection: positive(
                    c.max_requests_per_connection,
                    &format!("{p}.maxRequestsPerConnection"),
                )?,
                max_concurrent_requests: positive(
                    c.max_concurrent_requests,
                    &format!("{p}.maxConcurrentRequests"),
                )?,
            })
        })
        .transpose()?;
    let rate_limit = s
        .rate_limit
        .as_ref()
        .map(|r| {
            let p = "spec.rateLimit";
            let (key, header) = match r.key.as_deref() {
                None => (pb::RateLimitKey::Unspecified, String::new()),
                Some("route") => (pb::RateLimitKey::Route, String::new()),
                Some("sourceIdentity") => (pb::RateLimitKey::SourceIdentity, String::new()),
                Some(k) => match k.strip_prefix("header:") {
                    Some(h) if tp::valid_header_name(&h.to_ascii_lowercase()) => {
                        (pb::RateLimitKey::Header, h.to_ascii_lowercase())
                    }
                    _ => {
                        return Err(format!(
                            "{p}.key: {k:?} is none of route, sourceIdentity, header:<name>"
                        ))
                    }
                },
            };
            Ok(pb::RateLimit {
                requests: r.requests,
                per_ms: ms(duration(&r.per, &format!("{p}.per"))?),
                burst: r.burst.unwrap_or(r.requests),
                key: key.into(),
                header,
            })
        })
        .transpose()?;
    let fault_injection = s
        .fault_injection
        .as_ref()
        .map(|f| {
            let p = "spec.faultInjection";
            let share =
                |v: f64, path: String| tp::per_million(v).map_err(|e| format!("{path}: {e}"));
            Ok::<_, String>(pb::FaultInjection {
                delay: f
                    .delay
                    .as_ref()
                    .map(|d| {
                        Ok::<_, String>(pb::FaultDelay {
                            per_million: share(d.percentage, format!("{p}.delay.percentage"))?,
                            fixed_delay_ms: ms(duration(
                                &d.fixed_delay,
                                &format!("{p}.delay.fixedDelay"),
                            )?),
                        })
                    })
                    .transpose()?,
                abort: f
                    .abort
                    .as_ref()
                    .map(|a| {
                        Ok::<_, String>(pb::FaultAbort {
                            per_million: share(a.percentage, format!("{p}.abort.percentage"))?,
                            http_status: a.http_status.unwrap_or(0),
                            grpc_status: a.grpc_status.unwrap_or(0),
                        })
                    })
                    .transpose()?,
                headers: f
                    .headers
                    .iter()
                    .map(|h| pb::FaultHeader {
                        name: h.name.to_ascii_lowercase(),
                        value: h.value.clone().unwrap_or_default(),
                        present_only: h.value.is_none(),
                    })
                    .collect(),
            })
        })
        .transpose()?;
    let timeouts = s
        .timeouts
        .as_ref()
        .map(|t| {
            let p = "spec.timeouts";
            let one = |v: &Option<String>, f: &str| {
                v.as_deref()
                    .map(|d| duration(d, &format!("{p}.{f}")).map(ms))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            Ok::<_, String>(pb::TrafficTimeouts {
                connect_ms: one(&t.connect, "connect")?,
                idle_ms: one(&t.idle, "idle")?,
                request_ms: one(&t.request, "request")?,
            })
        })
        .transpose()?;
    if s.max_request_body_bytes == Some(0) {
        return Err("spec.maxRequestBodyBytes: must be at least 1".into());
    }
    let wire = pb::TrafficPolicy {
        outlier_detection,
        connection_pool,
        rate_limit,
        fault_injection,
        timeouts,
        max_request_body_bytes: s.max_request_body_bytes.unwrap_or(0),
        ..Default::default()
    };
    tp::Policy::from_proto(&wire)
        .map(|p| p.parts)
        .map_err(|e| format!("spec.{e}"))
}

/// A policy read against the index: the targets it applies to, and the
/// conditions of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    pub targets: Vec<tp::Target>,
    /// Per target (`ancestorRef`), its `Accepted` condition.
    pub ancestors: Vec<(Value, Vec<Condition>)>,
}

fn accepted(status: bool, reason: &'static str, message: String) -> Vec<Condition> {
    vec![Condition {
        kind: "Accepted",
        status,
        reason,
        message,
    }]
}

/// Every policy of `namespace` read against the index, oldest first (the
/// order conflicts are decided in), by name.
pub fn resolve_namespace(index: &Index, namespace: &str) -> BTreeMap<String, Resolved> {
    let mut policies: Vec<&model::TrafficPolicy> = index.traffic_policies_in(namespace).collect();
    policies.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
    // Who holds each part of each target: (service, port) -> part -> policy.
    let mut held: BTreeMap<(String, Option<u16>), BTreeMap<&'static str, String>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for p in policies {
        let mut r = Resolved::default();
        for t in &p.targets {
            let conditions = match (&t.target, &p.parts) {
                (Err(why), _) | (_, Err(why)) => accepted(false, reason::INVALID, why.clone()),
                (Ok((service, section)), Ok(parts)) => {
                    match target(index, namespace, service, section.as_deref()) {
                        Err(why) => accepted(false, reason::TARGET_NOT_FOUND, why),
                        Ok(port) => {
                            let holders = held.entry((service.clone(), port)).or_default();
                            let taken: Vec<String> = parts
                                .names()
                                .into_iter()
                                .filter_map(|part| {
                                    holders.get(part).map(|by| {
                                        format!("spec.{part} (set by the older {namespace}/{by})")
                                    })
                                })
                                .collect();
                            if taken.is_empty() {
                                for part in parts.names() {
                                    holders.insert(part, p.name.clone());
                                }
                                r.targets.push(tp::Target {
                                    service: service.clone(),
                                    port,
                                });
                                accepted(true, reason::ACCEPTED, String::new())
                            } else {
                                accepted(
                                    false,
                                    reason::CONFLICTED,
                                    format!(
                                        "another policy sets the same parts for this target: {}; this policy does not apply to it",
                                        taken.join(", ")
                                    ),
                                )
                            }
                        }
                    }
                }
            };
            r.ancestors.push((t.ancestor.clone(), conditions));
        }
        out.insert(p.name.clone(), r);
    }
    out
}

/// The port a target names (None: the whole Service), if it exists.
fn target(
    index: &Index,
    namespace: &str,
    service: &str,
    section: Option<&str>,
) -> Result<Option<u16>, String> {
    let svc = index
        .service(namespace, service)
        .ok_or_else(|| format!("Service {namespace}/{service} does not exist"))?;
    match section {
        None => Ok(None),
        Some(s) => svc
            .ports
            .iter()
            .find(|p| p.name == s)
            .map(|p| Some(p.port))
            .ok_or_else(|| format!("Service {namespace}/{service} has no port named {s:?}")),
    }
}

/// The resource for the waypoints: the policy with the targets it is
/// accepted for; None when there is none (invalid, or nothing found, or
/// all conflicted).
pub fn translate(index: &Index, p: &model::TrafficPolicy) -> Option<pb::TrafficPolicy> {
    let parts = p.parts.as_ref().ok()?;
    let resolved = resolve_namespace(index, &p.namespace).remove(&p.name)?;
    if resolved.targets.is_empty() {
        return None;
    }
    Some(
        tp::Policy {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            created: p.created,
            targets: resolved.targets,
            parts: parts.clone(),
        }
        .to_proto(),
    )
}

/// Says, once per change touching it, which targets a policy does not
/// apply to, and why.
pub fn report(index: &Index, resource: &str) {
    let Some((ns, name)) = resource
        .strip_prefix("trafficpolicy/")
        .and_then(|r| r.split_once('/'))
    else {
        return;
    };
    if index.traffic_policy(ns, name).is_none() {
        return;
    }
    let Some(r) = resolve_namespace(index, ns).remove(name) else {
        return;
    };
    for (target, conditions) in &r.ancestors {
        for c in conditions.iter().filter(|c| !c.status) {
            tracing::warn!(
                policy = %format!("{ns}/{name}"),
                target = %target,
                reason = c.reason,
                message = %c.message,
                "TrafficPolicy does not apply to a target (the target runs without it)"
            );
        }
    }
}

#[cfg(test)]
mod tests;
