//! The `AuthorizationPolicy` custom resource (`quicmesh.io/v1alpha1`): its
//! Rust types (from which the CRD schema is generated) and its compilation
//! into the model, shared by the Kubernetes and the file source.
//!
//! Compilation never fails: a policy that cannot be understood becomes an
//! *invalid* policy that denies everything it targets, with the reason. A
//! policy whose selector cannot be understood targets its whole namespace.
//! Nothing invalid ever opens anything.
//!
//! Unknown fields are errors, not ignored: a typo such as `principal:` for
//! `principals:` would otherwise widen a rule to every source. The CRD
//! marks every object `x-kubernetes-preserve-unknown-fields` so the API
//! server hands such fields to us instead of silently pruning them.

use std::collections::BTreeMap;

use kube::CustomResource;
use quicmesh_core::authz::l7::{parse_host, parse_method, parse_path, parse_request_principal};
use quicmesh_core::authz::set::Target;
use quicmesh_core::authz::{
    self, parse_namespace, parse_principal, Action, Condition, IpNet, StringMatch,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::attach::{PolicyStatus, TargetRef};
use crate::model::{self, Labels, PolicyTarget};

/// Authorization for workloads in the mesh. Without a selector it applies to
/// every workload of its namespace (of the mesh, in the root namespace);
/// with `targetRefs` it is attached to waypoints instead, for the requests
/// they serve.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "quicmesh.io",
    version = "v1alpha1",
    kind = "AuthorizationPolicy",
    namespaced,
    shortname = "authz",
    status = "PolicyStatus",
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct AuthorizationPolicySpec {
    /// The workloads (pods) it applies to; absent: all of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Attaches the policy to waypoints instead of workloads: a waypoint
    /// `Gateway` (all its requests), a `Service` (the requests a waypoint
    /// serves for it), or, in the root namespace only, the `GatewayClass`
    /// `quicmesh-waypoint` (every waypoint). Not with `selector`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
    /// ALLOW (default), DENY or AUDIT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionSpec>,
    /// OR of rules. ALLOW with no rules allows nothing; DENY with no rules
    /// denies nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleSpec>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ActionSpec {
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "DENY")]
    Deny,
    #[serde(rename = "AUDIT")]
    Audit,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct TargetRefSpec {
    /// `gateway.networking.k8s.io` for Gateway and GatewayClass, `""` for Service.
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct WorkloadSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// AND of `from`, `to` and `when`; an empty or absent list matches anything.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct RuleSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<FromSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<ToSpec>,
    /// Conditions (e.g. `request.headers[x-user]`,
    /// `request.auth.claims[groups]`, `source.ip`), all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<ConditionSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct FromSpec {
    pub source: SourceSpec,
}

/// AND of the fields that are set; within a field, OR of its values.
#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct SourceSpec {
    /// SPIFFE IDs, with or without `spiffe://`: exact, `prefix*`, `*suffix`, `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// Source namespaces (of this mesh's trust domain): exact, `prefix*`, `*suffix`, `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Source IP addresses or CIDR blocks, IPv4 or IPv6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// true: only traffic forwarded by a waypoint that serves the
    /// destination (the policy is then decided at that waypoint, for the
    /// original client); false: only traffic that came without one (e.g. a
    /// pod IP dialled directly, around the namespace's waypoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_waypoint: Option<bool>,
    /// JWT principals, `<iss>/<sub>` (L7: decided by a waypoint):
    /// exact, `prefix*`, `*suffix`, `*` (any valid JWT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ToSpec {
    pub operation: OperationSpec,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct OperationSpec {
    /// Destination ports (the workload's port, not a service port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<PortSpec>,
    /// L7 (decided by a waypoint): HTTP methods (case-sensitive), paths
    /// (canonical, without the query) and hosts (case-insensitive, with
    /// or without a port); exact, `prefix*`, `*suffix` or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ConditionSpec {
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// A port, written as a number or a numeric string (`8080` or `"8080"`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortSpec {
    Number(i64),
    Text(String),
}

impl JsonSchema for PortSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Port".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "x-kubernetes-int-or-string": true })
    }
}

impl PortSpec {
    fn port(&self) -> Result<u16, String> {
        let n = match self {
            PortSpec::Number(n) => *n,
            PortSpec::Text(s) => s
                .parse()
                .map_err(|_| format!("{s:?} is not a port number"))?,
        };
        u16::try_from(n)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{n} is not a port (1-65535)"))
    }
}

/// The CRD as YAML (checked in as controller/crds/authorizationpolicies.quicmesh.io.yaml).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&AuthorizationPolicy::crd()).expect("CRD serializes")
}

/// Compiles a policy object. `spec` is the raw `spec` (JSON form of the
/// YAML or of the API object) so that a malformed one is still known by
/// name and still fails closed.
pub fn compile(
    namespace: &str,
    name: &str,
    spec: &serde_json::Value,
) -> model::AuthorizationPolicy {
    let full = format!("{namespace}/{name}");
    let parsed: Result<AuthorizationPolicySpec, String> = serde_path_to_error::deserialize(spec)
        .map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("spec: {}", e.inner())
            } else {
                format!("spec.{path}: {}", e.inner())
            }
        });
    let parsed_spec = match parsed {
        Ok(s) => s,
        Err(reason) => {
            // Fail closed on whatever it could target: its selector when
            // that much can be read, else the whole namespace.
            let target = spec
                .get("selector")
                .and_then(|s| serde_json::from_value::<WorkloadSelector>(s.clone()).ok())
                .map_or(PolicyTarget::Namespace, |s| target(&s));
            let action = spec
                .get("action")
                .and_then(|a| serde_json::from_value::<ActionSpec>(a.clone()).ok())
                .map_or(Action::Allow, action);
            return model::AuthorizationPolicy {
                name: name.to_string(),
                namespace: namespace.to_string(),
                generation: 0,
                target,
                policy: authz::Policy::invalid(full, action, reason),
                warnings: Vec::new(),
                spec: spec.clone(),
            };
        }
    };
    let action = parsed_spec.action.map_or(Action::Allow, action);
    let selected = parsed_spec
        .selector
        .as_ref()
        .map_or(PolicyTarget::Namespace, target);
    let (target, attached) = match targets(&parsed_spec.target_refs) {
        Ok(None) => (Ok(selected.clone()), false),
        Ok(Some(_)) if parsed_spec.selector.is_some() => (
            Err("spec: selector and targetRefs cannot both be set".to_string()),
            false,
        ),
        Ok(Some(ts)) => (Ok(PolicyTarget::Attached(ts)), true),
        Err(e) => (Err(e), false),
    };
    // A policy whose targets cannot be read fails closed on its
    // namespace's workloads.
    let (target, target_error) = match target {
        Ok(t) => (t, None),
        Err(e) => (selected, Some(e)),
    };
    let mut warnings = Vec::new();
    // At a waypoint every part is decided: nothing to warn about.
    let mut sink = Vec::new();
    let w = if attached { &mut sink } else { &mut warnings };
    let rules = parsed_spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(r, &format!("spec.rules[{i}]"), action, w))
        .collect::<Result<Vec<_>, String>>();
    let policy = match (rules, target_error) {
        (_, Some(reason)) | (Err(reason), None) => authz::Policy::invalid(full, action, reason),
        (Ok(rules), None) => authz::Policy {
            name: full,
            action,
            rules,
            invalid: None,
        },
    };
    model::AuthorizationPolicy {
        name: name.to_string(),
        namespace: namespace.to_string(),
        generation: 0,
        target,
        policy,
        warnings,
        spec: spec.clone(),
    }
}

/// The waypoint attachments of `targetRefs`; None when it is empty.
fn targets(refs: &[TargetRef]) -> Result<Option<Vec<Target>>, String> {
    const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
    if refs.is_empty() {
        return Ok(None);
    }
    refs.iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("spec.targetRefs[{i}]");
            if r.name.is_empty() {
                return Err(format!("{at}.name: required"));
            }
            match (r.group.as_str(), r.kind.as_str()) {
                (GATEWAY_GROUP, "Gateway") => Ok(Target::Gateway(r.name.clone())),
                ("" | "core", "Service") => Ok(Target::Service(r.name.clone())),
                (GATEWAY_GROUP, "GatewayClass") if r.name == crate::waypoint::WAYPOINT_CLASS => {
                    Ok(Target::GatewayClass)
                }
                (GATEWAY_GROUP, "GatewayClass") => Err(format!(
                    "{at}.name: only the GatewayClass {:?} can be targeted",
                    crate::waypoint::WAYPOINT_CLASS
                )),
                (g, k) => Err(format!(
                    "{at}: {k:?} of group {g:?} cannot be targeted (Gateway or GatewayClass of {GATEWAY_GROUP:?}, Service of \"\")"
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A policy whose spec could not even be read: denies its whole namespace.
/// Its `spec` is the reason, a string, so that handing it on (as
/// `quicmesh local` does) and compiling again still fails closed.
pub fn compile_failed(namespace: &str, name: &str, reason: String) -> model::AuthorizationPolicy {
    model::AuthorizationPolicy {
        name: name.to_string(),
        namespace: namespace.to_string(),
        generation: 0,
        target: PolicyTarget::Namespace,
        policy: authz::Policy::invalid(
            format!("{namespace}/{name}"),
            Action::Allow,
            reason.clone(),
        ),
        warnings: Vec::new(),
        spec: serde_json::Value::String(reason),
    }
}

fn action(a: ActionSpec) -> Action {
    match a {
        ActionSpec::Allow => Action::Allow,
        ActionSpec::Deny => Action::Deny,
        ActionSpec::Audit => Action::Audit,
    }
}

/// An empty selector selects the namespace, as an absent one does.
fn target(s: &WorkloadSelector) -> PolicyTarget {
    if s.match_labels.is_empty() {
        PolicyTarget::Namespace
    } else {
        PolicyTarget::Selector(s.match_labels.clone().into_iter().collect::<Labels>())
    }
}

fn l7_warning(path: &str, action: Action) -> String {
    let effect = match action {
        Action::Deny => "taken as matched (the rest of the rule decides)",
        Action::Allow | Action::Audit => "never matched (this part allows nothing)",
    };
    format!(
        "{path}: L7 conditions are decided by a waypoint for traffic that goes through one; at a ztunnel they are {effect}"
    )
}

fn rule(
    r: &RuleSpec,
    path: &str,
    action: Action,
    warnings: &mut Vec<String>,
) -> Result<authz::Rule, String> {
    let from = r
        .from
        .iter()
        .enumerate()
        .map(|(i, f)| {
            source(
                &f.source,
                &format!("{path}.from[{i}].source"),
                action,
                warnings,
            )
        })
        .collect::<Result<_, _>>()?;
    let to =
        r.to.iter()
            .enumerate()
            .map(|(i, t)| {
                operation(
                    &t.operation,
                    &format!("{path}.to[{i}].operation"),
                    action,
                    warnings,
                )
            })
            .collect::<Result<_, _>>()?;
    let when = r
        .when
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Condition::parse(&c.key, &c.values, &c.not_values)
                .map_err(|e| format!("{path}.when[{i}]: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let l7 = when.iter().any(|c| c.key.l7());
    if l7 {
        warnings.push(l7_warning(&format!("{path}.when"), action));
    }
    Ok(authz::Rule { from, to, when, l7 })
}

fn patterns(
    values: &[String],
    path: &str,
    parse: fn(&str) -> Result<StringMatch, String>,
) -> Result<Vec<StringMatch>, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| parse(v).map_err(|e| format!("{path}[{i}]: {e}")))
        .collect()
}

fn nets(values: &[String], path: &str) -> Result<Vec<IpNet>, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| IpNet::parse(v).map_err(|e| format!("{path}[{i}]: {e}")))
        .collect()
}

fn source(
    s: &SourceSpec,
    path: &str,
    action: Action,
    warnings: &mut Vec<String>,
) -> Result<authz::Source, String> {
    let l7 = !s.request_principals.is_empty() || !s.not_request_principals.is_empty();
    if l7 {
        warnings.push(l7_warning(path, action));
    }
    Ok(authz::Source {
        principals: patterns(
            &s.principals,
            &format!("{path}.principals"),
            parse_principal,
        )?,
        not_principals: patterns(
            &s.not_principals,
            &format!("{path}.notPrincipals"),
            parse_principal,
        )?,
        namespaces: patterns(
            &s.namespaces,
            &format!("{path}.namespaces"),
            parse_namespace,
        )?,
        not_namespaces: patterns(
            &s.not_namespaces,
            &format!("{path}.notNamespaces"),
            parse_namespace,
        )?,
        ip_blocks: nets(&s.ip_blocks, &format!("{path}.ipBlocks"))?,
        not_ip_blocks: nets(&s.not_ip_blocks, &format!("{path}.notIpBlocks"))?,
        via_waypoint: s.via_waypoint,
        request_principals: patterns(
            &s.request_principals,
            &format!("{path}.requestPrincipals"),
            parse_request_principal,
        )?,
        not_request_principals: patterns(
            &s.not_request_principals,
            &format!("{path}.notRequestPrincipals"),
            parse_request_principal,
        )?,
        l7,
    })
}

fn ports(values: &[PortSpec], path: &str) -> Result<Vec<u16>, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, p)| p.port().map_err(|e| format!("{path}[{i}]: {e}")))
        .collect()
}

fn operation(
    o: &OperationSpec,
    path: &str,
    action: Action,
    warnings: &mut Vec<String>,
) -> Result<authz::Operation, String> {
    let l7 = [
        &o.methods,
        &o.not_methods,
        &o.paths,
        &o.not_paths,
        &o.hosts,
        &o.not_hosts,
    ]
    .iter()
    .any(|v| !v.is_empty());
    if l7 {
        warnings.push(l7_warning(path, action));
    }
    Ok(authz::Operation {
        ports: ports(&o.ports, &format!("{path}.ports"))?,
        not_ports: ports(&o.not_ports, &format!("{path}.notPorts"))?,
        methods: patterns(&o.methods, &format!("{path}.methods"), parse_method)?,
        not_methods: patterns(&o.not_methods, &format!("{path}.notMethods"), parse_method)?,
        paths: patterns(&o.paths, &format!("{path}.paths"), parse_path)?,
        not_paths: patterns(&o.not_paths, &format!("{path}.notPaths"), parse_path)?,
        hosts: patterns(&o.hosts, &format!("{path}.hosts"), parse_host)?,
        not_hosts: patterns(&o.not_hosts, &format!("{path}.notHosts"), parse_host)?,
        l7,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile_yaml(yaml: &str) -> model::AuthorizationPolicy {
        let v: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
        compile("shop", "p", &v)
    }

    #[test]
    fn compiles_a_full_policy() {
        let p = compile_yaml(
            r#"
selector: {matchLabels: {app: web}}
action: DENY
rules:
- from:
  - source:
      principals: ["cluster.local/ns/a/sa/b", "*/sa/c"]
      notNamespaces: [shop]
      ipBlocks: [10.0.0.0/8, "fd00::/8"]
  - source: {viaWaypoint: false}
  to:
  - operation: {ports: [8080, "9090"], notPorts: [1]}
"#,
        );
        assert_eq!(p.policy.invalid, None);
        assert_eq!(p.policy.action, Action::Deny);
        assert_eq!(p.policy.name, "shop/p");
        assert_eq!(
            p.target,
            PolicyTarget::Selector([("app".to_string(), "web".to_string())].into())
        );
        let r = &p.policy.rules[0];
        assert_eq!(r.from[0].principals.len(), 2);
        assert_eq!(r.from[0].ip_blocks.len(), 2);
        assert_eq!(r.from[0].via_waypoint, None);
        assert_eq!(r.from[1].via_waypoint, Some(false));
        assert_eq!(r.to[0].ports, vec![8080, 9090]);
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn defaults_allow_and_namespace_scope() {
        let p = compile("shop", "p", &json!({}));
        assert_eq!(p.policy.action, Action::Allow);
        assert!(p.policy.rules.is_empty());
        assert_eq!(p.target, PolicyTarget::Namespace);
        let p = compile("shop", "p", &json!({"selector": {}}));
        assert_eq!(p.target, PolicyTarget::Namespace);
    }

    #[test]
    fn invalid_policies_fail_closed_and_say_why() {
        let cases = [
            (
                json!({"rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.1/8"]}}]}]}),
                "spec.rules[0].from[0].source.ipBlocks[0]",
            ),
            (
                json!({"rules": [{"from": [{"source": {"principals": ["a*b"]}}]}]}),
                "spec.rules[0].from[0].source.principals[0]",
            ),
            (
                json!({"rules": [{"to": [{"operation": {"ports": [70000]}}]}]}),
                "spec.rules[0].to[0].operation.ports[0]",
            ),
            (json!({"action": "PERMIT"}), "spec.action"),
            (
                json!({"rules": [{"from": [{"source": {"principal": ["x"]}}]}]}),
                "unknown field `principal`",
            ),
            (json!({"rules": "all"}), "spec.rules"),
        ];
        for (spec, want) in cases {
            let p = compile("shop", "p", &spec);
            let why = p.policy.invalid.as_deref().unwrap_or_default();
            assert!(why.contains(want), "{spec}: {why:?} lacks {want:?}");
        }
        // What can be read of an invalid policy still scopes it.
        let p = compile(
            "shop",
            "p",
            &json!({"selector": {"matchLabels": {"app": "web"}}, "action": "DENY", "rules": 1}),
        );
        assert_eq!(p.policy.action, Action::Deny);
        assert!(matches!(p.target, PolicyTarget::Selector(_)));
        let p = compile("shop", "p", &json!({"selector": {"matchExpressions": []}}));
        assert!(p.policy.invalid.is_some());
        assert_eq!(p.target, PolicyTarget::Namespace);
    }

    #[test]
    fn l7_fields_are_flagged_with_a_warning() {
        let p = compile_yaml(
            r#"
rules:
- to: [{operation: {ports: [80], methods: [GET]}}]
- from: [{source: {requestPrincipals: ["*"]}}]
- when: [{key: "request.headers[x]", values: ["1"]}]
"#,
        );
        assert!(p.policy.invalid.is_none());
        assert!(p.policy.rules[0].to[0].l7);
        assert!(p.policy.rules[1].from[0].l7);
        assert!(p.policy.rules[2].l7);
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("never matched"), "{:?}", p.warnings);
    }

    #[test]
    fn l7_parts_compile_with_the_proxies_parsers() {
        let p = compile_yaml(
            r#"
rules:
- from: [{source: {requestPrincipals: ["https://issuer.example/*"], notRequestPrincipals: ["https://issuer.example/bot"]}}]
  to: [{operation: {methods: [GET, HEAD], notPaths: ["/admin/*"], hosts: ["Web.Shop"], paths: ["/api/*", "*.png"]}}]
  when:
  - {key: "request.headers[X-User]", values: ["alice"]}
  - {key: "request.auth.claims[groups]", notValues: ["banned"]}
  - {key: "source.ip", values: ["10.0.0.0/8"]}
"#,
        );
        assert_eq!(p.policy.invalid, None);
        let r = &p.policy.rules[0];
        assert_eq!(r.to[0].methods.len(), 2);
        assert_eq!(r.to[0].hosts[0].to_string(), "web.shop");
        assert_eq!(
            r.from[0].request_principals[0].to_string(),
            "https://issuer.example/*"
        );
        assert_eq!(r.when.len(), 3);
        assert_eq!(r.when[0].key.to_string(), "request.headers[x-user]");
        assert!(r.l7 && r.to[0].l7 && r.from[0].l7);
        // Only L4 conditions: decided by ztunnels too, no warning.
        let p = compile_yaml(
            r#"
rules:
- when: [{key: destination.port, values: ["8080"]}, {key: source.namespace, values: [front]}]
"#,
        );
        assert!(!p.policy.rules[0].l7);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // Each malformed L7 part names its path.
        for (yaml, want) in [
            (
                "rules: [{to: [{operation: {methods: [get]}}]}]",
                "spec.rules[0].to[0].operation.methods[0]",
            ),
            (
                "rules: [{to: [{operation: {paths: [\"/a/../b\"]}}]}]",
                "spec.rules[0].to[0].operation.paths[0]",
            ),
            (
                "rules: [{to: [{operation: {notHosts: [\"a b\"]}}]}]",
                "spec.rules[0].to[0].operation.notHosts[0]",
            ),
            (
                "rules: [{when: [{key: request.method, values: [GET]}]}]",
                "spec.rules[0].when[0]",
            ),
            (
                "rules: [{when: [{key: \"request.headers[x]\"}]}]",
                "needs values or notValues",
            ),
            (
                "rules: [{when: [{key: source.ip, values: [nope]}]}]",
                "spec.rules[0].when[0]: values[0]",
            ),
        ] {
            let p = compile_yaml(yaml);
            let why = p.policy.invalid.as_deref().unwrap_or_default();
            assert!(why.contains(want), "{yaml}: {why:?} lacks {want:?}");
        }
    }

    #[test]
    fn target_refs_attach_a_policy_to_waypoints() {
        let p = compile_yaml(
            r#"
targetRefs:
- {group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}
- {kind: Service, name: web}
- {group: gateway.networking.k8s.io, kind: GatewayClass, name: quicmesh-waypoint}
rules: [{to: [{operation: {methods: [GET]}}]}]
"#,
        );
        assert_eq!(p.policy.invalid, None);
        assert_eq!(
            p.target,
            PolicyTarget::Attached(vec![
                Target::Gateway("waypoint".into()),
                Target::Service("web".into()),
                Target::GatewayClass,
            ])
        );
        // At a waypoint every part is decided: no L4 warning.
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        for (yaml, want) in [
            (
                "{selector: {matchLabels: {app: web}}, targetRefs: [{kind: Service, name: web}]}",
                "selector and targetRefs cannot both be set",
            ),
            ("{targetRefs: [{kind: Deployment, group: apps, name: web}]}", "spec.targetRefs[0]: \"Deployment\""),
            ("{targetRefs: [{kind: Gateway, name: waypoint}]}", "spec.targetRefs[0]: \"Gateway\" of group \"\""),
            ("{targetRefs: [{kind: Service, name: \"\"}]}", "spec.targetRefs[0].name: required"),
            (
                "{targetRefs: [{group: gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint}]}",
                "only the GatewayClass",
            ),
        ] {
            let p = compile_yaml(yaml);
            let why = p.policy.invalid.as_deref().unwrap_or_default();
            assert!(why.contains(want), "{yaml}: {why:?} lacks {want:?}");
            // Unreadable targets fail closed on what it could target.
            assert!(!matches!(p.target, PolicyTarget::Attached(_)), "{yaml}");
        }
    }

    #[test]
    fn crd_yaml_names_the_group_and_kind() {
        let y = crd_yaml();
        assert!(y.contains("name: authorizationpolicies.quicmesh.io"), "{y}");
        assert!(y.contains("x-kubernetes-int-or-string: true"), "{y}");
        // Every object level keeps unknown fields, so typos reach compile().
        assert_eq!(
            y.matches("x-kubernetes-preserve-unknown-fields: true")
                .count(),
            9,
            "{y}"
        );
    }
}
