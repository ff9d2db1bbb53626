//! The `RequestAuthentication` custom resource (`quicmesh.io/v1alpha1`):
//! JWT checks at waypoints (docs/authentication.md). Its Rust types (from
//! which the CRD schema is generated) and its compilation into the
//! waypoints' [`Authentication`] resource, shared by both sources.
//!
//! Compilation never fails: an object that cannot be understood — an
//! unknown field, a wrong type, a bad URI or header name, a JWKS that does
//! not parse, a Secret or file that cannot be read — becomes an *invalid*
//! one, which the waypoints answer with 401 for every request it targets,
//! and its `Accepted` condition says why (the field's path first). It
//! targets what can still be read of it: its `targetRefs`, else its
//! namespace (the mesh, in the root namespace).
//!
//! Pure: Secrets come from the index, files as the file source read them.

use std::collections::BTreeMap;

use kube::CustomResource;
use quicmesh_core::jwt::{self, Jwks};
use quicmesh_proto::config::{
    Authentication, AuthenticationScope, AuthenticationTarget, ClaimToHeader, JwtHeader, JwtRule,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::attach::{PolicyStatus, TargetRef};
use crate::gamma::Condition;

/// JWT authentication of requests at waypoints. Without targetRefs it
/// applies to every waypoint of its namespace (of the mesh, in the root
/// namespace).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "quicmesh.io",
    version = "v1alpha1",
    kind = "RequestAuthentication",
    namespaced,
    shortname = "reqauthn",
    status = "PolicyStatus"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct RequestAuthenticationSpec {
    /// The waypoint Gateways (group gateway.networking.k8s.io) or Services
    /// (group "") of its namespace it applies to; absent: all waypoints of
    /// the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<TargetRef>,
    /// The issuers whose tokens are accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_rules: Vec<JwtRuleSpec>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct JwtRuleSpec {
    /// Must equal the token's `iss`.
    pub issuer: String,
    /// The token's `aud` must hold one of these; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The JWKS document, inline (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// The JWKS document from a Secret key or (file source) a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_from: Option<JwksFrom>,
    /// Where the waypoint fetches the JWKS (http or https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// How often `jwksUri` is fetched again (5 to 86400; default 1200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_refresh_seconds: Option<i64>,
    /// Headers tokens are read from; with `fromParams` absent too, the
    /// default is `Authorization` with prefix `Bearer `.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<FromHeader>,
    /// Query parameters tokens are read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Claims copied into request headers once the token verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeaderSpec>,
    /// Keep the token in the forwarded request (default: removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_original_token: Option<bool>,
    /// Leeway on `exp` and `nbf` (0 to 300; default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_seconds: Option<i64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct JwksFrom {
    /// A key of a Secret of the same namespace, labeled `quicmesh.io/jwks: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A file (file source only), relative to the manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct FromHeader {
    pub name: String,
    /// What the value starts with before the token (e.g. `Bearer `).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ClaimToHeaderSpec {
    pub header: String,
    /// A claim name, or names joined by `.` for nested objects.
    pub claim: String,
}

/// The label a Secret needs for `jwksFrom.secretKeyRef` to read it (the
/// controller watches only those).
pub const JWKS_SECRET_LABEL: &str = "quicmesh.io/jwks";

/// Bounds on one object.
pub const MAX_RULES: usize = 16;
pub const MAX_TARGETS: usize = 16;
pub const MAX_LOCATIONS: usize = 8;
pub const MAX_OUTPUTS: usize = 16;
pub const MAX_AUDIENCES: usize = 32;
const MAX_TEXT: usize = 256;
const MAX_ISSUER: usize = 1024;
const MAX_URI: usize = 2048;
pub const DEFAULT_JWKS_REFRESH_SECONDS: u32 = 20 * 60;
pub const MIN_JWKS_REFRESH_SECONDS: i64 = 5;
pub const MAX_JWKS_REFRESH_SECONDS: i64 = 24 * 3600;

/// Headers a claim may not be written to: the waypoint's own, the
/// message's framing, and the connection's.
const RESERVED_HEADERS: [&str; 10] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "x-forwarded-client-cert",
];

/// The CRD as YAML (checked in as controller/crds/requestauthentications.quicmesh.io.yaml).
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&RequestAuthentication::crd()).expect("CRD serializes")
}

/// What the object needs from elsewhere.
pub trait Sources {
    /// The value of `key` in the JWKS Secret `namespace/name`: None when
    /// there is no such (labeled) Secret, `Some(None)` without that key.
    fn secret_key(&self, namespace: &str, name: &str, key: &str) -> Option<Option<Vec<u8>>>;
}

/// A compiled object: what waypoints get, and what its status says.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub resource: Authentication,
    /// Keys of its JWKS that were skipped, and the like (informational).
    pub warnings: Vec<String>,
}

impl Compiled {
    pub fn invalid(&self) -> Option<&str> {
        Some(self.resource.invalid.as_str()).filter(|s| !s.is_empty())
    }

    /// Its `Accepted` condition.
    pub fn condition(&self) -> Condition {
        match self.invalid() {
            Some(why) => Condition {
                kind: "Accepted",
                status: false,
                reason: "Invalid",
                message: format!("{why}; every request it targets is refused (401)"),
            },
            None => Condition {
                kind: "Accepted",
                status: true,
                reason: "Accepted",
                message: self.warnings.join("; "),
            },
        }
    }
}

/// The `KeysFetched` condition of a compiled object in `namespace`, from
/// what the waypoints that enforce it reported of its `jwksUri` key sets
/// (those of its namespace; every waypoint for the root namespace's):
/// True when each waypoint's last fetch of each worked, False naming the
/// waypoint, the URI and the error otherwise. None when it has no
/// `jwksUri` rule, is invalid, or no such waypoint has reported yet.
pub fn keys_fetched<'a>(
    compiled: &Compiled,
    namespace: &str,
    root: &str,
    reports: impl Iterator<Item = &'a crate::model::ProxyReport>,
) -> Option<Condition> {
    if compiled.invalid().is_some() {
        return None;
    }
    let subjects: std::collections::BTreeSet<String> = compiled
        .resource
        .rules
        .iter()
        .filter(|r| !r.jwks_uri.is_empty())
        .map(|r| format!("jwks/{}", r.jwks_uri))
        .collect();
    if subjects.is_empty() {
        return None;
    }
    let mut seen = 0;
    let mut failures = Vec::new();
    for p in reports.filter(|p| namespace == root || p.namespace == namespace) {
        for r in p.reports.iter().filter(|r| subjects.contains(&r.subject)) {
            seen += 1;
            if !r.ok {
                let uri = r.subject.trim_start_matches("jwks/");
                let kept = if r.last_good_kept {
                    "the last good keys are in use"
                } else {
                    "no keys yet: its tokens are refused (401)"
                };
                failures.push(format!(
                    "waypoint {}/{}: {uri}: {}; {kept}",
                    p.namespace, p.waypoint, r.error
                ));
            }
        }
    }
    if seen == 0 {
        return None;
    }
    failures.sort();
    failures.dedup();
    Some(if failures.is_empty() {
        Condition {
            kind: "KeysFetched",
            status: true,
            reason: "Fetched",
            message: String::new(),
        }
    } else {
        const SHOWN: usize = 4;
        let more = failures.len().saturating_sub(SHOWN);
        failures.truncate(SHOWN);
        let mut message = failures.join("; ");
        if more > 0 {
            message.push_str(&format!("; and {more} more"));
        }
        Condition {
            kind: "KeysFetched",
            status: false,
            reason: "FetchFailed",
            message,
        }
    })
}

/// Compiles `ra` (its spec in JSON form) against what the sources hold;
/// `root` is the mesh's root namespace.
pub fn compile(
    ra: &crate::model::RequestAuthentication,
    root: &str,
    src: &dyn Sources,
) -> Compiled {
    let mut resource = Authentication {
        name: ra.name.clone(),
        namespace: ra.namespace.clone(),
        ..Authentication::default()
    };
    // A spec that is a string is why it could not even be read (an
    // unserved apiVersion): handed on, it still fails closed.
    let parsed: Result<RequestAuthenticationSpec, String> = match &ra.spec {
        serde_json::Value::String(why) => Err(why.clone()),
        spec => serde_path_to_error::deserialize(spec).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("spec: {}", e.inner())
            } else {
                format!("spec.{path}: {}", e.inner())
            }
        }),
    };
    let mut warnings = Vec::new();
    let result = parsed.and_then(|spec| {
        let targets = targets(&spec.target_refs)?;
        if spec.jwt_rules.len() > MAX_RULES {
            return Err(format!(
                "spec.jwtRules: {} rules (at most {MAX_RULES})",
                spec.jwt_rules.len()
            ));
        }
        let rules = spec
            .jwt_rules
            .iter()
            .enumerate()
            .map(|(i, r)| rule(r, &format!("spec.jwtRules[{i}]"), ra, src, &mut warnings))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((targets, rules))
    });
    match result {
        Ok((targets, rules)) => {
            resource.targets = targets;
            resource.rules = rules;
        }
        Err(why) => {
            // What can still be read of it is what it targets.
            resource.targets = ra
                .spec
                .get("targetRefs")
                .and_then(|t| serde_json::from_value::<Vec<TargetRef>>(t.clone()).ok())
                .and_then(|t| targets(&t).ok())
                .unwrap_or_default();
            resource.invalid = why;
            warnings.clear();
        }
    }
    let scope = match (resource.targets.is_empty(), ra.namespace == root) {
        (false, _) => AuthenticationScope::Targets,
        (true, true) => AuthenticationScope::Mesh,
        (true, false) => AuthenticationScope::Namespace,
    };
    resource.scope = scope.into();
    Compiled { resource, warnings }
}

fn dns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && n.as_bytes()[0].is_ascii_alphanumeric()
        && n.as_bytes()[n.len() - 1].is_ascii_alphanumeric()
}

fn targets(refs: &[TargetRef]) -> Result<Vec<AuthenticationTarget>, String> {
    if refs.len() > MAX_TARGETS {
        return Err(format!(
            "spec.targetRefs: {} targets (at most {MAX_TARGETS})",
            refs.len()
        ));
    }
    refs.iter()
        .enumerate()
        .map(|(i, t)| {
            let path = format!("spec.targetRefs[{i}]");
            let kind = match (t.group.as_str(), t.kind.as_str()) {
                (crate::sources::manifest::GATEWAY_GROUP, "Gateway") => "Gateway",
                ("", "Service") => "Service",
                (g, k) => {
                    return Err(format!(
                        "{path}: {k} of group {g:?} cannot be a target (a Gateway of group \
                         gateway.networking.k8s.io, or a Service of group \"\")"
                    ))
                }
            };
            if !dns_name(&t.name) {
                return Err(format!("{path}.name: {:?} is not a valid name", t.name));
            }
            Ok(AuthenticationTarget {
                kind: kind.into(),
                name: t.name.clone(),
            })
        })
        .collect()
}

fn bounded_text(s: &str, path: &str, max: usize) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{path}: must not be empty"));
    }
    if s.len() > max {
        return Err(format!("{path}: {} bytes (at most {max})", s.len()));
    }
    Ok(())
}

fn header_name(s: &str, path: &str) -> Result<String, String> {
    bounded_text(s, path, MAX_TEXT)?;
    let h = http::HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| format!("{path}: {s:?} is not a header name"))?;
    Ok(h.as_str().to_string())
}

fn in_range(
    v: Option<i64>,
    path: &str,
    range: std::ops::RangeInclusive<i64>,
    default: u32,
) -> Result<u32, String> {
    match v {
        None => Ok(default),
        Some(n) if range.contains(&n) => Ok(n as u32),
        Some(n) => Err(format!(
            "{path}: {n} is out of range ({} to {})",
            range.start(),
            range.end()
        )),
    }
}

fn jwks_uri(u: &str, path: &str) -> Result<String, String> {
    if u.len() > MAX_URI {
        return Err(format!("{path}: {} bytes (at most {MAX_URI})", u.len()));
    }
    let uri: http::Uri = u
        .parse()
        .map_err(|e| format!("{path}: {u:?} is not a URI: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{path}: {u:?} is not an http or https URI")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{path}: {u:?} names no host"));
    }
    Ok(u.to_string())
}

/// Reads a JWKS document and checks it, as the waypoint will.
fn jwks_doc(bytes: &[u8], path: &str, warnings: &mut Vec<String>) -> Result<String, String> {
    let keys = Jwks::parse(bytes).map_err(|e| format!("{path}: {e}"))?;
    if keys.keys.is_empty() {
        let why = keys
            .skipped
            .first()
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        return Err(format!("{path}: no usable key{why}"));
    }
    warnings.extend(keys.skipped.iter().map(|s| format!("{path}: skipped {s}")));
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{path}: not UTF-8"))
}

fn rule(
    r: &JwtRuleSpec,
    path: &str,
    ra: &crate::model::RequestAuthentication,
    src: &dyn Sources,
    warnings: &mut Vec<String>,
) -> Result<JwtRule, String> {
    bounded_text(&r.issuer, &format!("{path}.issuer"), MAX_ISSUER)?;
    if r.audiences.len() > MAX_AUDIENCES {
        return Err(format!("{path}.audiences: at most {MAX_AUDIENCES}"));
    }
    for (i, a) in r.audiences.iter().enumerate() {
        bounded_text(a, &format!("{path}.audiences[{i}]"), MAX_TEXT)?;
    }
    let given = [
        r.jwks.is_some(),
        r.jwks_from.is_some(),
        r.jwks_uri.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(format!(
            "{path}: exactly one of jwks, jwksFrom and jwksUri is required"
        ));
    }
    let mut out = JwtRule {
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        ..JwtRule::default()
    };
    if let Some(doc) = &r.jwks {
        out.jwks = jwks_doc(doc.as_bytes(), &format!("{path}.jwks"), warnings)?;
    }
    if let Some(from) = &r.jwks_from {
        let p = format!("{path}.jwksFrom");
        out.jwks = match (&from.secret_key_ref, &from.file) {
            (Some(s), None) => {
                let p = format!("{p}.secretKeyRef");
                let value = src
                    .secret_key(&ra.namespace, &s.name, &s.key)
                    .ok_or_else(|| {
                        format!(
                            "{p}: no Secret {}/{} labeled {JWKS_SECRET_LABEL}: \"true\"",
                            ra.namespace, s.name
                        )
                    })?
                    .ok_or_else(|| {
                        format!(
                            "{p}: Secret {}/{} has no key {:?}",
                            ra.namespace, s.name, s.key
                        )
                    })?;
                jwks_doc(&value, &p, warnings)?
            }
            (None, Some(f)) => {
                let p = format!("{p}.file");
                let read = ra
                    .files
                    .as_ref()
                    .ok_or_else(|| format!("{p}: files are read only by the file source (use jwks, secretKeyRef or jwksUri)"))?
                    .get(f)
                    .ok_or_else(|| format!("{p}: {f:?} was not read"))?;
                let text = read.as_ref().map_err(|e| format!("{p}: {e}"))?;
                jwks_doc(text.as_bytes(), &p, warnings)?
            }
            _ => {
                return Err(format!(
                    "{p}: exactly one of secretKeyRef and file is required"
                ))
            }
        };
    }
    if let Some(u) = &r.jwks_uri {
        out.jwks_uri = jwks_uri(u, &format!("{path}.jwksUri"))?;
    }
    out.jwks_refresh_seconds = in_range(
        r.jwks_refresh_seconds,
        &format!("{path}.jwksRefreshSeconds"),
        MIN_JWKS_REFRESH_SECONDS..=MAX_JWKS_REFRESH_SECONDS,
        DEFAULT_JWKS_REFRESH_SECONDS,
    )?;
    out.clock_skew_seconds = in_range(
        r.clock_skew_seconds,
        &format!("{path}.clockSkewSeconds"),
        0..=jwt::MAX_CLOCK_SKEW_SECONDS as i64,
        jwt::DEFAULT_CLOCK_SKEW_SECONDS as u32,
    )?;
    if r.from_headers.len() > MAX_LOCATIONS || r.from_params.len() > MAX_LOCATIONS {
        return Err(format!(
            "{path}: at most {MAX_LOCATIONS} fromHeaders and {MAX_LOCATIONS} fromParams"
        ));
    }
    for (i, h) in r.from_headers.iter().enumerate() {
        let name = header_name(&h.name, &format!("{path}.fromHeaders[{i}].name"))?;
        let prefix = h.prefix.clone().unwrap_or_default();
        if prefix.len() > MAX_TEXT || http::HeaderValue::from_str(&prefix).is_err() {
            return Err(format!(
                "{path}.fromHeaders[{i}].prefix: {prefix:?} cannot start a header value"
            ));
        }
        out.from_headers.push(JwtHeader { name, prefix });
    }
    for (i, p) in r.from_params.iter().enumerate() {
        let pp = format!("{path}.fromParams[{i}]");
        bounded_text(p, &pp, MAX_TEXT)?;
        if p.bytes()
            .any(|b| matches!(b, b'&' | b'=' | b'#' | b'?') || !b.is_ascii_graphic())
        {
            return Err(format!("{pp}: {p:?} is not a query parameter name"));
        }
        out.from_params.push(p.clone());
    }
    if out.from_headers.is_empty() && out.from_params.is_empty() {
        out.from_headers.push(JwtHeader {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        });
    }
    if r.output_claim_to_headers.len() > MAX_OUTPUTS {
        return Err(format!(
            "{path}.outputClaimToHeaders: at most {MAX_OUTPUTS}"
        ));
    }
    for (i, o) in r.output_claim_to_headers.iter().enumerate() {
        let p = format!("{path}.outputClaimToHeaders[{i}]");
        let header = header_name(&o.header, &format!("{p}.header"))?;
        if RESERVED_HEADERS.contains(&header.as_str())
            || out.from_headers.iter().any(|h| h.name == header)
        {
            return Err(format!(
                "{p}.header: {header:?} may not be set from a claim (reserved, or where tokens are read)"
            ));
        }
        bounded_text(&o.claim, &format!("{p}.claim"), MAX_TEXT)?;
        if o.claim.split('.').any(str::is_empty) {
            return Err(format!(
                "{p}.claim: {:?} has an empty name in its path",
                o.claim
            ));
        }
        out.output_claim_to_headers.push(ClaimToHeader {
            header,
            claim: o.claim.clone(),
        });
    }
    out.forward_original_token = r.forward_original_token.unwrap_or(false);
    Ok(out)
}

/// The `jwksFrom.file` paths an object names (what the file source reads
/// for it), from whatever of its spec can be read.
pub fn files(spec: &serde_json::Value) -> Vec<String> {
    spec.get("jwtRules")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.pointer("/jwksFrom/file")?.as_str().map(str::to_string))
        .collect()
}

/// Index-free lookups for tests and for objects without Secrets.
impl Sources for BTreeMap<(String, String), BTreeMap<String, Vec<u8>>> {
    fn secret_key(&self, namespace: &str, name: &str, key: &str) -> Option<Option<Vec<u8>>> {
        self.get(&(namespace.to_string(), name.to_string()))
            .map(|d| d.get(key).cloned())
    }
}

#[cfg(test)]
mod tests;
