//! Kubernetes YAML manifests → model objects, with errors that name the file,
//! the document, the object and the field. Used by the file source and by
//! `quicmesh local` (which reads the same manifests).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde_yaml::Value;

use crate::model::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    /// 0-based index of the YAML document in the file.
    pub doc: usize,
    /// `Kind namespace/name` when known.
    pub object: Option<String>,
    /// Dotted path of the offending field, e.g. `spec.ports[0].port`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file, self.doc)?;
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": field {}: {}", self.field, self.reason)
        }
    }
}

impl std::error::Error for ManifestError {}

/// The result of parsing one file: one entry per document.
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// Per document: the object, or None when the document was empty or of
    /// a kind quicmesh does not read.
    pub docs: Vec<Result<Option<Object>, ManifestError>>,
}

/// Kinds quicmesh reads; others are ignored without error.
pub const KINDS: [&str; 14] = [
    "Namespace",
    "ServiceAccount",
    "Pod",
    "Service",
    "EndpointSlice",
    "Deployment",
    "AuthorizationPolicy",
    "HTTPRoute",
    "GRPCRoute",
    "Gateway",
    "RequestAuthentication",
    "TrafficPolicy",
    "WorkloadEntry",
    "TrustDomainFederation",
];

/// The Gateway API group and the version of it quicmesh reads.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
pub const GATEWAY_API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// The API group of quicmesh's own kinds; an `AuthorizationPolicy` of
/// another group (e.g. Istio's) is not ours and is ignored.
pub const QUICMESH_GROUP: &str = "quicmesh.io";
pub const QUICMESH_API_VERSION: &str = "quicmesh.io/v1alpha1";

/// Seconds since the epoch as `metadata.creationTimestamp` writes them
/// (RFC 3339, UTC); None for 0 (unknown).
pub fn timestamp_text(secs: i64) -> Option<String> {
    if secs == 0 {
        return None;
    }
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Parses a multi-document YAML text. A YAML syntax error fails the whole
/// file; a bad field fails only its document.
pub fn parse_file(text: &str, file: &str) -> Result<ParsedFile, ManifestError> {
    let mut out = ParsedFile::default();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = <Value as serde::Deserialize>::deserialize(de).map_err(|e| ManifestError {
            file: file.to_string(),
            doc: i,
            object: None,
            field: String::new(),
            reason: format!("invalid YAML: {e}"),
        })?;
        let d = Doc {
            file,
            doc: i,
            object: None,
        };
        out.docs.push(d.object(&value));
    }
    Ok(out)
}

/// One document already parsed (an object the API server sent), read as
/// a document of `origin` is.
pub fn parse_value(value: &Value, origin: &str) -> Result<Option<Object>, ManifestError> {
    Doc {
        file: origin,
        doc: 0,
        object: None,
    }
    .object(value)
}

struct Doc<'a> {
    file: &'a str,
    doc: usize,
    object: Option<String>,
}

type R<T> = Result<T, ManifestError>;

impl Doc<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.to_string(),
            doc: self.doc,
            object: self.object.clone(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    fn get<'v>(&self, v: &'v Value, path: &str) -> Option<&'v Value> {
        let mut cur = v;
        for part in path.split('.') {
            cur = cur.get(part)?;
            if cur.is_null() {
                return None;
            }
        }
        Some(cur)
    }

    fn str(&self, v: &Value, path: &str) -> R<Option<String>> {
        match self.get(v, path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(
                path,
                format!("expected a string, found {}", type_name(other)),
            )),
        }
    }

    fn required(&self, v: &Value, path: &str) -> R<String> {
        self.str(v, path)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.err(path, "is required"))
    }

    fn name(&self, v: &Value, path: &str) -> R<String> {
        let n = self.required(v, path)?;
        let ok = n.len() <= 253
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && n.as_bytes()[0].is_ascii_alphanumeric()
            && n.as_bytes()[n.len() - 1].is_ascii_alphanumeric();
        if ok {
            Ok(n)
        } else {
            Err(self.err(
                path,
                format!("{n:?} is not a valid name (lower-case letters, digits, '-', '.')"),
            ))
        }
    }

    /// A service account name: a DNS subdomain, as Kubernetes requires. It
    /// becomes a segment of the workload's SPIFFE ID, which every proxy
    /// must accept: one a proxy refused would NACK the whole config update
    /// on every node. Absent or empty: `default`, as the API server sets.
    fn service_account(&self, v: &Value, path: &str) -> R<String> {
        match self.str(v, path)? {
            None => Ok("default".into()),
            Some(s) if s.is_empty() => Ok("default".into()),
            Some(_) => self.name(v, path),
        }
    }

    fn labels(&self, v: &Value, path: &str) -> R<Labels> {
        let Some(m) = self.get(v, path) else {
            return Ok(Labels::new());
        };
        let m = m
            .as_mapping()
            .ok_or_else(|| self.err(path, "expected a map of strings"))?;
        let mut out = BTreeMap::new();
        for (k, val) in m {
            let k = k
                .as_str()
                .ok_or_else(|| self.err(path, "label keys must be strings"))?;
            let val = match val {
                Value::String(s) => s.clone(),
                Value::Bool(b) => {
                    return Err(self.err(
                        &format!("{path}.{k}"),
                        format!("label values must be strings; quote {b}"),
                    ))
                }
                Value::Number(n) => {
                    return Err(self.err(
                        &format!("{path}.{k}"),
                        format!("label values must be strings; quote {n}"),
                    ))
                }
                other => {
                    return Err(self.err(
                        &format!("{path}.{k}"),
                        format!("expected a string, found {}", type_name(other)),
                    ))
                }
            };
            out.insert(k.to_string(), val);
        }
        Ok(out)
    }

    fn list<'v>(&self, v: &'v Value, path: &str) -> R<Vec<&'v Value>> {
        match self.get(v, path) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(s)) => Ok(s.iter().collect()),
            Some(other) => {
                Err(self.err(path, format!("expected a list, found {}", type_name(other))))
            }
        }
    }

    fn strings(&self, v: &Value, path: &str) -> R<Vec<String>> {
        self.list(v, path)?
            .into_iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(self.err(
                    &format!("{path}[{i}]"),
                    format!("expected a string, found {}", type_name(other)),
                )),
            })
            .collect()
    }

    fn port(&self, v: &Value, path: &str) -> R<Option<u16>> {
        match self.get(v, path) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(p @ 1..=65535) => Ok(Some(p as u16)),
                _ => Err(self.err(path, format!("{n} is not a port (1-65535)"))),
            },
            Some(other) => Err(self.err(
                path,
                format!("expected a port number, found {}", type_name(other)),
            )),
        }
    }

    /// An RFC 3339 UTC timestamp (`2024-05-01T10:00:00Z`, as the API server
    /// writes them) as seconds since the epoch; 0 when absent.
    fn timestamp(&self, v: &Value, path: &str) -> R<i64> {
        let Some(s) = self.str(v, path)? else {
            return Ok(0);
        };
        let format = time::format_description::well_known::Rfc3339;
        time::OffsetDateTime::parse(&s, &format)
            .map(|t| t.unix_timestamp())
            .map_err(|e| self.err(path, format!("{s:?} is not an RFC 3339 time: {e}")))
    }

    fn ip(&self, s: &str, path: &str) -> R<IpAddr> {
        s.parse()
            .map_err(|_| self.err(path, format!("{s:?} is not an IP address")))
    }

    fn object(mut self, v: &Value) -> R<Option<Object>> {
        if v.is_null() {
            return Ok(None);
        }
        if !v.is_mapping() {
            return Err(self.err("", "a manifest must be a map"));
        }
        let kind = self.required(v, "kind")?;
        if !KINDS.contains(&kind.as_str()) {
            return Ok(None);
        }
        // A policy of an unserved version is still known (below): an
        // AuthorizationPolicy fails closed, a TrafficPolicy is invalid.
        let mut unserved = None;
        if kind == "AuthorizationPolicy"
            || kind == "RequestAuthentication"
            || kind == "TrafficPolicy"
            || kind == "WorkloadEntry"
            || kind == "TrustDomainFederation"
        {
            let api_version = self.str(v, "apiVersion")?.unwrap_or_default();
            if api_version.split('/').next() != Some(QUICMESH_GROUP) {
                return Ok(None);
            }
            if api_version != QUICMESH_API_VERSION {
                unserved = Some(format!(
                    "apiVersion {api_version:?} is not served; use {QUICMESH_API_VERSION:?}"
                ));
            }
        }
        if ["HTTPRoute", "GRPCRoute", "Gateway"].contains(&kind.as_str()) {
            let api_version = self.str(v, "apiVersion")?.unwrap_or_default();
            if api_version.split('/').next() != Some(GATEWAY_GROUP) {
                return Ok(None);
            }
            if api_version != GATEWAY_API_VERSION {
                return Err(self.err(
                    "apiVersion",
                    format!("{api_version:?} is not served; use {GATEWAY_API_VERSION:?}"),
                ));
            }
        }
        let name = self.name(v, "metadata.name")?;
        let namespace = match kind.as_str() {
            // Cluster-scoped.
            "Namespace" | "TrustDomainFederation" => String::new(),
            _ => match self.str(v, "metadata.namespace")? {
                Some(ns) => self.name(v, "metadata.namespace").map(|_| ns)?,
                None => "default".to_string(),
            },
        };
        self.object = Some(if namespace.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {namespace}/{name}")
        });
        let labels = self.labels(v, "metadata.labels")?;
        Ok(Some(match kind.as_str() {
            "Namespace" => Object::Namespace(Namespace { name, labels }),
            "ServiceAccount" => Object::ServiceAccount(ServiceAccount { name, namespace }),
            "Pod" => Object::Pod(self.pod(v, name, namespace, labels)?),
            "Service" => Object::Service(self.service(v, name, namespace, labels)?),
            "EndpointSlice" => Object::EndpointSlice(self.slice(v, name, namespace, &labels)?),
            "Deployment" => Object::Deployment(self.deployment(v, name, namespace)?),
            "AuthorizationPolicy" => Object::AuthorizationPolicy(match unserved {
                Some(reason) => crate::policy::compile_failed(&namespace, &name, reason),
                None => self.policy(v, name, namespace),
            }),
            "HTTPRoute" | "GRPCRoute" => Object::Route(Route {
                kind: if kind == "HTTPRoute" {
                    RouteKind::Http
                } else {
                    RouteKind::Grpc
                },
                name,
                namespace,
                created: self.timestamp(v, "metadata.creationTimestamp")?,
                generation: 0,
                spec: match self.get(v, "spec") {
                    None => serde_json::json!({}),
                    Some(spec) => {
                        serde_json::to_value(spec).map_err(|e| self.err("spec", e.to_string()))?
                    }
                },
            }),
            "RequestAuthentication" => Object::RequestAuthentication(RequestAuthentication {
                name,
                namespace,
                generation: 0,
                // Never an error: what cannot be understood makes it
                // invalid, and an invalid one fails closed (see
                // [`crate::authn::compile`]); so does an unserved version.
                spec: match (unserved, self.get(v, "spec")) {
                    (Some(reason), _) => serde_json::Value::String(reason),
                    (None, None) => serde_json::json!({}),
                    (None, Some(spec)) => serde_json::to_value(spec)
                        .unwrap_or_else(|e| serde_json::Value::String(format!("spec: {e}"))),
                },
                files: None,
            }),
            "TrafficPolicy" => {
                let created = self.timestamp(v, "metadata.creationTimestamp")?;
                let spec = match self.get(v, "spec") {
                    None => Ok(serde_json::json!({})),
                    Some(spec) => serde_json::to_value(spec).map_err(|e| format!("spec: {e}")),
                };
                // Never an error: what cannot be read is an invalid
                // policy, reported in its status (see crate::traffic).
                Object::TrafficPolicy(match (spec, unserved) {
                    (Ok(spec), None) => {
                        crate::traffic::compile(&namespace, &name, created, 0, &spec)
                    }
                    (Ok(spec), Some(reason)) => {
                        crate::traffic::compile_failed(&namespace, &name, created, &spec, reason)
                    }
                    (Err(reason), _) => crate::traffic::compile_failed(
                        &namespace,
                        &name,
                        created,
                        &serde_json::json!({}),
                        reason,
                    ),
                })
            }
            "WorkloadEntry" => match unserved {
                Some(reason) => return Err(self.err("apiVersion", reason)),
                None => Object::WorkloadEntry(self.workload_entry(v, name, namespace)?),
            },
            // Never an error: what cannot be read makes it invalid, said
            // in its status (see crate::federation).
            "TrustDomainFederation" => Object::TrustDomainFederation(match unserved {
                Some(reason) => crate::federation::compile_failed(&name, reason),
                None => match self.get(v, "spec") {
                    None => crate::federation::compile(&name, 0, &serde_json::json!({})),
                    Some(spec) => match serde_json::to_value(spec) {
                        Ok(spec) => crate::federation::compile(&name, 0, &spec),
                        Err(e) => crate::federation::compile_failed(&name, format!("spec: {e}")),
                    },
                },
            }),
            "Gateway" => Object::Gateway(Gateway {
                name,
                namespace,
                class: self.required(v, "spec.gatewayClassName")?,
                labels,
                uid: String::new(),
                generation: 0,
            }),
            _ => unreachable!("checked against KINDS"),
        }))
    }

    /// Never an error: what cannot be understood makes the policy invalid,
    /// and an invalid policy fails closed (see [`crate::policy::compile`]).
    fn policy(&self, v: &Value, name: String, namespace: String) -> AuthorizationPolicy {
        let spec = match self.get(v, "spec") {
            None | Some(Value::Null) => Ok(serde_json::json!({})),
            Some(spec) => serde_json::to_value(spec).map_err(|e| format!("spec: {e}")),
        };
        match spec {
            Ok(spec) => crate::policy::compile(&namespace, &name, &spec),
            Err(reason) => crate::policy::compile_failed(&namespace, &name, reason),
        }
    }

    fn containers(&self, v: &Value, path: &str) -> R<Vec<Container>> {
        let list = self.list(v, path)?;
        let mut out = Vec::new();
        for (i, c) in list.into_iter().enumerate() {
            let p = format!("{path}[{i}]");
            let mut ports = Vec::new();
            for (j, port) in self.list(c, "ports")?.into_iter().enumerate() {
                let pp = format!("{p}.ports[{j}]");
                let number = self
                    .port(port, "containerPort")
                    .map_err(|e| ManifestError {
                        field: format!("{pp}.containerPort"),
                        ..e
                    })?
                    .ok_or_else(|| self.err(&format!("{pp}.containerPort"), "is required"))?;
                ports.push(ContainerPort {
                    name: self.str(port, "name")?,
                    port: number,
                });
            }
            let mut env = Vec::new();
            for (j, e) in self.list(c, "env")?.into_iter().enumerate() {
                let ep = format!("{p}.env[{j}]");
                let n = self
                    .str(e, "name")?
                    .ok_or_else(|| self.err(&format!("{ep}.name"), "is required"))?;
                let value = match self.get(e, "value") {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => b.to_string(),
                    Some(other) => {
                        return Err(self.err(
                            &format!("{ep}.value"),
                            format!("expected a string, found {}", type_name(other)),
                        ))
                    }
                };
                env.push((n, value));
            }
            out.push(Container {
                name: self.str(c, "name")?.unwrap_or_else(|| format!("c{i}")),
                command: self.strings(c, "command").map_err(|e| ManifestError {
                    field: format!("{p}.{}", e.field),
                    ..e
                })?,
                args: self.strings(c, "args").map_err(|e| ManifestError {
                    field: format!("{p}.{}", e.field),
                    ..e
                })?,
                env,
                ports,
            });
        }
        Ok(out)
    }

    fn pod(&self, v: &Value, name: String, namespace: String, labels: Labels) -> R<Pod> {
        let uid = self
            .str(v, "metadata.uid")?
            .unwrap_or_else(|| format!("file-{namespace}-{name}"));
        let mut ips = Vec::new();
        for (i, entry) in self.list(v, "status.podIPs")?.into_iter().enumerate() {
            let path = format!("status.podIPs[{i}].ip");
            let s = self
                .str(entry, "ip")?
                .ok_or_else(|| self.err(&path, "is required"))?;
            ips.push(self.ip(&s, &path)?);
        }
        if ips.is_empty() {
            if let Some(s) = self.str(v, "status.podIP")? {
                ips.push(self.ip(&s, "status.podIP")?);
            }
        }
        // A hostNetwork pod's IPs are its node's: no workload has them.
        if self.get(v, "spec.hostNetwork") == Some(&Value::Bool(true)) {
            ips.clear();
        }
        let conditions = self.list(v, "status.conditions")?;
        let ready = if conditions.is_empty() {
            !ips.is_empty()
        } else {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        };
        Ok(Pod {
            uid,
            name,
            namespace,
            labels,
            annotations: self.labels(v, "metadata.annotations")?,
            service_account: self.service_account(v, "spec.serviceAccountName")?,
            node: self.str(v, "spec.nodeName")?,
            ips,
            ready,
            containers: self.containers(v, "spec.containers")?,
        })
    }

    fn workload_entry(&self, v: &Value, name: String, namespace: String) -> R<WorkloadEntry> {
        let address = self.required(v, "spec.address")?;
        let address = self.ip(&address, "spec.address")?;
        let identity = self.required(v, "spec.identity")?;
        quicmesh_core::identity::SpiffeId::parse(&identity)
            .map_err(|e| self.err("spec.identity", format!("{identity:?}: {e}")))?;
        let mut ports = BTreeMap::new();
        if let Some(m) = self.get(v, "spec.ports") {
            let m = m
                .as_mapping()
                .ok_or_else(|| self.err("spec.ports", "expected a map of port names to numbers"))?;
            for (k, _) in m {
                let k = k
                    .as_str()
                    .ok_or_else(|| self.err("spec.ports", "port names must be strings"))?;
                let path = format!("spec.ports.{k}");
                let port = self
                    .port(v, &path)?
                    .ok_or_else(|| self.err(&path, "is required"))?;
                ports.insert(k.to_string(), port);
            }
        }
        Ok(WorkloadEntry {
            name,
            namespace,
            address,
            identity,
            labels: self.labels(v, "spec.labels")?,
            ports,
        })
    }

    fn service(&self, v: &Value, name: String, namespace: String, labels: Labels) -> R<Service> {
        let mut vips = Vec::new();
        let ips = self.strings(v, "spec.clusterIPs")?;
        let ips = if ips.is_empty() {
            self.str(v, "spec.clusterIP")?.into_iter().collect()
        } else {
            ips
        };
        for ip in ips {
            if ip != "None" && !ip.is_empty() {
                vips.push(self.ip(&ip, "spec.clusterIP")?);
            }
        }
        let mut ports = Vec::new();
        for (i, p) in self.list(v, "spec.ports")?.into_iter().enumerate() {
            let path = format!("spec.ports[{i}]");
            let port = self
                .port(p, "port")
                .map_err(|e| ManifestError {
                    field: format!("{path}.port"),
                    ..e
                })?
                .ok_or_else(|| self.err(&format!("{path}.port"), "is required"))?;
            let target = match p.get("targetPort") {
                None | Some(Value::Null) => TargetPort::Number(port),
                Some(Value::String(s)) => TargetPort::Name(s.clone()),
                Some(_) => TargetPort::Number(
                    self.port(p, "targetPort")
                        .map_err(|e| ManifestError {
                            field: format!("{path}.targetPort"),
                            ..e
                        })?
                        .expect("present"),
                ),
            };
            ports.push(ServicePort {
                name: self.str(p, "name")?.unwrap_or_default(),
                port,
                target,
                app_protocol: self.str(p, "appProtocol")?,
            });
        }
        let selector = match self.get(v, "spec.selector") {
            None => None,
            Some(_) => Some(self.labels(v, "spec.selector")?),
        };
        Ok(Service {
            name,
            namespace,
            vips,
            ports,
            selector,
            labels,
        })
    }

    fn slice(
        &self,
        v: &Value,
        name: String,
        namespace: String,
        labels: &Labels,
    ) -> R<EndpointSlice> {
        let service = labels
            .get("kubernetes.io/service-name")
            .cloned()
            .ok_or_else(|| self.err("metadata.labels.kubernetes.io/service-name", "is required"))?;
        let mut ports = Vec::new();
        for (i, p) in self.list(v, "ports")?.into_iter().enumerate() {
            let port = self
                .port(p, "port")
                .map_err(|e| ManifestError {
                    field: format!("ports[{i}].port"),
                    ..e
                })?
                .ok_or_else(|| self.err(&format!("ports[{i}].port"), "is required"))?;
            ports.push((self.str(p, "name")?.unwrap_or_default(), port));
        }
        let mut endpoints = Vec::new();
        for (i, e) in self.list(v, "endpoints")?.into_iter().enumerate() {
            let mut ips = Vec::new();
            for (j, a) in self.strings(e, "addresses")?.into_iter().enumerate() {
                ips.push(self.ip(&a, &format!("endpoints[{i}].addresses[{j}]"))?);
            }
            endpoints.push(SliceEndpoint {
                ips,
                ready: self
                    .get(e, "conditions.ready")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                pod: self.str(e, "targetRef.name")?,
                node: self.str(e, "nodeName")?,
            });
        }
        Ok(EndpointSlice {
            name,
            namespace,
            service,
            ports,
            endpoints,
        })
    }

    fn deployment(&self, v: &Value, name: String, namespace: String) -> R<Deployment> {
        let replicas = match self.get(v, "spec.replicas") {
            None => 1,
            Some(Value::Number(n)) => n.as_u64().filter(|r| *r <= 1000).ok_or_else(|| {
                self.err(
                    "spec.replicas",
                    format!("{n} is not a replica count (0-1000)"),
                )
            })? as u32,
            Some(other) => {
                return Err(self.err(
                    "spec.replicas",
                    format!("expected a number, found {}", type_name(other)),
                ))
            }
        };
        let labels = self.labels(v, "spec.template.metadata.labels")?;
        let containers = self.containers(v, "spec.template.spec.containers")?;
        if containers.is_empty() {
            return Err(self.err(
                "spec.template.spec.containers",
                "at least one container is required",
            ));
        }
        Ok(Deployment {
            name,
            namespace,
            replicas,
            labels,
            service_account: self.service_account(v, "spec.template.spec.serviceAccountName")?,
            containers,
        })
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    quicmesh.io/dataplane-mode: ambient
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        command: [python3, -m, http.server]
        args: ["8080"]
        env: [{name: GREETING, value: hi}]
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}, {port: 81}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
"#;

    #[test]
    fn parses_the_kinds_quicmesh_reads() {
        let f = parse_file(GOOD, "app.yaml").unwrap();
        let objs: Vec<_> = f.docs.into_iter().map(|d| d.unwrap()).collect();
        assert_eq!(objs.len(), 5);
        let Some(Object::Namespace(ns)) = &objs[0] else {
            panic!()
        };
        assert!(ns.ambient());
        let Some(Object::Deployment(d)) = &objs[1] else {
            panic!()
        };
        assert_eq!((d.replicas, d.service_account.as_str()), (3, "web"));
        assert_eq!(d.containers[0].command, ["python3", "-m", "http.server"]);
        assert_eq!(
            d.containers[0].env,
            [("GREETING".to_string(), "hi".to_string())]
        );
        let Some(Object::Service(s)) = &objs[2] else {
            panic!()
        };
        assert_eq!(s.ports[0].target, TargetPort::Name("http".into()));
        assert_eq!(s.ports[1].target, TargetPort::Number(81));
        assert!(objs[3].is_none(), "ConfigMap is ignored");
        assert!(objs[4].is_none(), "empty document");
    }

    #[test]
    fn http_routes_of_gateway_api_v1_only() {
        let docs = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: shop, creationTimestamp: "2024-05-01T10:00:00Z"}
spec: {parentRefs: [{group: "", kind: Service, name: web}]}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: old, namespace: shop}
---
apiVersion: example.com/v1
kind: HTTPRoute
metadata: {name: theirs}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r2, namespace: shop, creationTimestamp: yesterday}
"#;
        let f = parse_file(docs, "routes.yaml").unwrap();
        let Ok(Some(Object::Route(r))) = &f.docs[0] else {
            panic!("{:?}", f.docs[0])
        };
        assert_eq!(
            (r.name.as_str(), r.namespace.as_str(), r.created),
            ("r", "shop", 1_714_557_600)
        );
        assert_eq!(r.spec["parentRefs"][0]["name"], "web");
        let e = f.docs[1].as_ref().unwrap_err();
        assert!(
            e.field == "apiVersion" && e.reason.contains("v1beta1"),
            "{e}"
        );
        assert!(
            matches!(f.docs[2], Ok(None)),
            "another group's HTTPRoute is ignored"
        );
        let e = f.docs[3].as_ref().unwrap_err();
        assert_eq!(e.field, "metadata.creationTimestamp", "{e}");
    }

    #[test]
    fn traffic_policies_are_ours_only_and_never_an_error() {
        let docs = r#"
apiVersion: quicmesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: ok, namespace: shop, creationTimestamp: "2024-05-01T10:00:00Z"}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  rateLimit: {requests: 10, per: 1s}
---
apiVersion: example.com/v1
kind: TrafficPolicy
metadata: {name: theirs, namespace: shop}
---
apiVersion: quicmesh.io/v1beta1
kind: TrafficPolicy
metadata: {name: unserved, namespace: shop}
spec: {targetRefs: [{group: "", kind: Service, name: web}]}
---
apiVersion: quicmesh.io/v1alpha1
kind: TrafficPolicy
metadata: {name: typo, namespace: shop}
spec: {targetRefs: [{group: "", kind: Service, name: web}], ratelimit: {}}
"#;
        let f = parse_file(docs, "tp.yaml").unwrap();
        let objs: Vec<_> = f.docs.into_iter().map(|d| d.unwrap()).collect();
        let policy = |i: usize| match &objs[i] {
            Some(Object::TrafficPolicy(p)) => p.clone(),
            other => panic!("{other:?}"),
        };
        let ok = policy(0);
        assert_eq!(ok.created, 1_714_557_600);
        assert_eq!(
            timestamp_text(ok.created).as_deref(),
            Some("2024-05-01T10:00:00Z"),
            "written back as read"
        );
        assert_eq!(timestamp_text(0), None);
        assert!(ok.parts.as_ref().unwrap().rate_limit.is_some());
        assert!(
            objs[1].is_none(),
            "another group's TrafficPolicy is not ours"
        );
        let unserved = policy(2);
        assert!(unserved.parts.unwrap_err().contains("not served"));
        assert_eq!(unserved.targets.len(), 1, "its status names its target");
        let typo = policy(3);
        assert!(typo
            .parts
            .unwrap_err()
            .contains("unknown field `ratelimit`"));
    }

    #[test]
    fn authorization_policies_are_ours_only_and_fail_closed() {
        let docs = "\
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: ok, namespace: shop}
spec: {action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: istio, namespace: shop}
spec: {}
---
apiVersion: quicmesh.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: unserved, namespace: shop}
spec: {action: ALLOW}
---
apiVersion: quicmesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: nospec, namespace: shop}
";
        let f = parse_file(docs, "p.yaml").unwrap();
        let objs: Vec<_> = f.docs.into_iter().map(|d| d.unwrap()).collect();
        let policy = |i: usize| match &objs[i] {
            Some(Object::AuthorizationPolicy(p)) => p.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(policy(0).policy.invalid, None);
        assert!(
            objs[1].is_none(),
            "another group's AuthorizationPolicy is not ours"
        );
        let unserved = policy(2);
        assert!(
            unserved
                .policy
                .invalid
                .as_deref()
                .is_some_and(|r| r.contains("not served")),
            "{unserved:?}"
        );
        // Handing it on (as quicmesh local does) and compiling again still fails closed.
        let again = crate::policy::compile("shop", "unserved", &unserved.spec);
        assert!(again.policy.invalid.is_some());
        // No spec: an ALLOW policy without rules, i.e. allow-nothing.
        let nospec = policy(3);
        assert_eq!(nospec.policy.invalid, None);
        assert!(nospec.policy.rules.is_empty());
    }

    #[test]
    fn errors_name_file_document_object_and_field() {
        let bad = "kind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  ports: [{port: 99999}]\n";
        let f = parse_file(bad, "svc.yaml").unwrap();
        let e = f.docs[0].clone().unwrap_err();
        assert_eq!(e.field, "spec.ports[0].port");
        assert_eq!(
            e.to_string(),
            "svc.yaml: document 0 (Service shop/web): field spec.ports[0].port: 99999 is not a port (1-65535)"
        );

        let cases = [
            ("kind: Pod\nmetadata: {name: Bad_Name}\n", "metadata.name"),
            ("kind: Deployment\nmetadata: {name: d}\nspec: {replicas: many}\n", "spec.replicas"),
            ("kind: Namespace\nmetadata: {name: n, labels: {quicmesh.io/dataplane-mode: true}}\n", "metadata.labels.quicmesh.io/dataplane-mode"),
            ("kind: Pod\nmetadata: {name: p}\nstatus: {podIP: 10.0.0.300}\n", "status.podIP"),
            ("kind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: [{ports: [{containerPort: x}]}]}}}\n", "spec.template.spec.containers[0].ports[0].containerPort"),
            ("metadata: {name: x}\n", "kind"),
        ];
        for (text, field) in cases {
            let e = parse_file(text, "f.yaml").unwrap().docs[0]
                .clone()
                .unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
    }

    /// Found by the `manifest` fuzz target: a service account name that
    /// is not a SPIFFE path segment made a workload identity ztunnel
    /// refuses, so every node NACKed the whole config.
    #[test]
    fn service_account_names_are_dns_names() {
        let pod = |sa: &str| {
            format!("kind: Pod\nmetadata: {{name: p}}\nspec: {{serviceAccountName: {sa}}}\nstatus: {{podIP: 10.0.0.1}}\n")
        };
        for bad in ["'w[b'", "'a b'", "'a/b'", "Web", "'-x'"] {
            let e = parse_file(&pod(bad), "f.yaml").unwrap().docs[0]
                .clone()
                .unwrap_err();
            assert_eq!(e.field, "spec.serviceAccountName", "{bad}: {e}");
        }
        let deployment = "kind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {serviceAccountName: 'a b', containers: [{name: c}]}}}\n";
        let e = parse_file(deployment, "f.yaml").unwrap().docs[0]
            .clone()
            .unwrap_err();
        assert_eq!(e.field, "spec.template.spec.serviceAccountName");
        for (sa, want) in [("web.v2", "web.v2"), ("''", "default")] {
            let Ok(Some(Object::Pod(p))) = parse_file(&pod(sa), "f.yaml").unwrap().docs[0].clone()
            else {
                panic!("{sa} refused")
            };
            assert_eq!(p.service_account, want);
            let id = format!(
                "spiffe://cluster.local/ns/{}/sa/{}",
                p.namespace, p.service_account
            );
            assert!(
                quicmesh_core::identity::SpiffeId::parse(&id).is_ok(),
                "{id}"
            );
        }
    }

    #[test]
    fn yaml_syntax_errors_fail_the_file() {
        let e = parse_file("kind: Pod\nmetadata: {name: [\n", "broken.yaml").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("broken.yaml: document 0: invalid YAML"),
            "{e}"
        );
    }

    #[test]
    fn pods_with_status_are_scheduled_and_ready() {
        let text = "kind: Pod\nmetadata: {name: p, namespace: a, uid: u1}\nspec: {nodeName: node2, serviceAccountName: sa}\nstatus:\n  podIPs: [{ip: 10.244.2.5}]\n  conditions: [{type: Ready, status: \"False\"}]\n";
        let Some(Object::Pod(p)) = parse_file(text, "p.yaml").unwrap().docs[0].clone().unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (p.uid.as_str(), p.node.as_deref(), p.ready),
            ("u1", Some("node2"), false)
        );
        assert_eq!(p.ips, ["10.244.2.5".parse::<IpAddr>().unwrap()]);
        // hostNetwork: the node's IP, which is no workload's.
        let host = text.replace(
            "serviceAccountName: sa}",
            "serviceAccountName: sa, hostNetwork: true}",
        );
        let Some(Object::Pod(p)) = parse_file(&host, "p.yaml").unwrap().docs[0]
            .clone()
            .unwrap()
        else {
            panic!()
        };
        assert!(p.ips.is_empty(), "{:?}", p.ips);
        assert_eq!(p.node.as_deref(), Some("node2"));
    }
}
