//! What a Kubernetes cluster runs for its waypoints, as the controller
//! applies it (server-side apply, [`kube`]): pure, from the index.
//!
//! - A `use-waypoint` label naming a Gateway that does not exist: the
//!   Gateway (class `quicmesh-waypoint`), labeled as created by the
//!   controller ([`CREATED_LABEL`]). When no label asks for it any more, the
//!   controller deletes it — only a Gateway it created itself.
//! - Each Gateway of the class (once the API server has given it a uid):
//!   a ServiceAccount, a ConfigMap with the mesh's CA certificate, a
//!   Service and a Deployment, all named after the Gateway (the waypoint's
//!   pods run as the service account of its name, so its identity is
//!   `spiffe://<td>/ns/<namespace>/sa/<name>`) and owned by it: deleting
//!   the Gateway deletes them (Kubernetes' garbage collector).

use serde_json::{json, Value};

use crate::index::Index;
use crate::waypoint::{self, Waypoint, GATEWAY_NAME_LABEL, WAYPOINT_CLASS};

pub mod kube;

/// The field manager of everything the controller applies.
pub const FIELD_MANAGER: &str = "quicmesh-controller";
/// On a Gateway the controller created for a label (value `"true"`).
pub const CREATED_LABEL: &str = "quicmesh.io/created-for-label";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The tunnel port waypoints serve (UDP) and their metrics/health port.
pub const TUNNEL_PORT: u16 = quicmesh_core::tunnel::TUNNEL_PORT;
pub const METRICS_PORT: u16 = 15020;

/// How waypoints are run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The waypoint image, e.g. `ghcr.io/quicmesh/waypoint:0.1.0`.
    pub image: String,
    pub image_pull_policy: String,
    /// The controller as waypoint pods reach it (`name:port`, its Service).
    pub controller: String,
    pub controller_identity: String,
    pub trust_domain: String,
    pub cluster_domain: String,
    /// The mesh's CA certificate(s), PEM (the waypoint's trust bundle).
    pub ca_pem: String,
    /// Environment every waypoint gets: the controller's own logging and
    /// trace settings ([`inherited_env`]), so waypoints log and trace as
    /// the chart configured the mesh.
    pub env: Vec<(String, String)>,
}

/// The variables of `vars` a waypoint inherits from the controller:
/// `RUST_LOG`, `LOG_FORMAT` and the OpenTelemetry ones (`OTEL_*`, but not
/// `OTEL_SERVICE_NAME`: a waypoint is `waypoint`), sorted.
pub fn inherited_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| {
            k == "RUST_LOG"
                || k == "LOG_FORMAT"
                || (k.starts_with("OTEL_") && k != "OTEL_SERVICE_NAME")
        })
        .collect();
    env.sort();
    env
}

/// One reconciliation's worth of work.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Objects to apply, in order: Gateways first, then what each owns.
    pub apply: Vec<Value>,
    /// Gateways (namespace, name) the controller created that no label asks
    /// for any more.
    pub delete: Vec<(String, String)>,
    /// Waypoints (namespace, name) that cannot be run, and why.
    pub invalid: Vec<(String, String, String)>,
}

/// An RFC 1035 label: what a Service name and a label value must be.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What the cluster should run for the index's waypoints.
pub fn plan(index: &Index, settings: &Settings) -> Plan {
    let mut plan = Plan::default();
    let requested = waypoint::requested(index);
    for g in index.gateways() {
        let created = g.labels.get(CREATED_LABEL).is_some_and(|v| v == "true")
            && g.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(FIELD_MANAGER);
        if created
            && g.class == WAYPOINT_CLASS
            && !requested.contains(&(g.namespace.clone(), g.name.clone()))
        {
            plan.delete.push((g.namespace.clone(), g.name.clone()));
        }
    }
    for w in waypoint::all(index) {
        // Going: what it owns goes with it.
        if plan.delete.contains(&(w.namespace.clone(), w.name.clone())) {
            continue;
        }
        // Its name names a Service, a ServiceAccount and a label value.
        if !dns_label(&w.name) {
            plan.invalid.push((
                w.namespace.clone(),
                w.name.clone(),
                "the name must be a DNS label (lower case letters, digits, '-', at most 63)".into(),
            ));
            continue;
        }
        // Another pod runs as its service account: not used, not run
        // (see waypoint::usable); running it would take that account over.
        if !waypoint::usable(index, &w) {
            continue;
        }
        if w.implied {
            plan.apply.push(gateway(&w));
            continue;
        }
        let Some(g) = index.gateway(&w.namespace, &w.name) else {
            continue;
        };
        // Owner references need the uid: a Gateway just created is owned
        // once the watch brings it back.
        if g.uid.is_empty() {
            continue;
        }
        let owner = json!([{
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "name": g.name,
            "uid": g.uid,
            "controller": true,
        }]);
        plan.apply
            .extend(owned(&w, settings).into_iter().map(|mut o| {
                o["metadata"]["ownerReferences"] = owner.clone();
                o
            }));
    }
    plan
}

fn labels(w: &Waypoint) -> Value {
    json!({
        GATEWAY_NAME_LABEL: w.name,
        MANAGED_BY_LABEL: FIELD_MANAGER,
    })
}

/// The Gateway a label implies.
fn gateway(w: &Waypoint) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": w.name,
            "namespace": w.namespace,
            "labels": {CREATED_LABEL: "true", MANAGED_BY_LABEL: FIELD_MANAGER},
        },
        "spec": {
            "gatewayClassName": WAYPOINT_CLASS,
            // Gateway API requires a listener; this one says what the
            // waypoint serves: the mesh tunnel.
            "listeners": [{"name": "mesh", "port": TUNNEL_PORT, "protocol": "quicmesh.io/H3"}],
        },
    })
}

/// The Kubernetes objects that run waypoint `w` (without owner references).
pub fn owned(w: &Waypoint, s: &Settings) -> Vec<Value> {
    let p = waypoint::provision(w);
    let meta = |name: &str| {
        json!({
            "name": name,
            "namespace": w.namespace,
            "labels": labels(w),
        })
    };
    let ca = format!("{}-ca-root", w.name);
    let selector = json!({ GATEWAY_NAME_LABEL: w.name });
    let env = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let container_env: Vec<Value> = [
        env("POD_NAMESPACE", "metadata.namespace"),
        env("NODE_NAME", "spec.nodeName"),
        json!({"name": "GATEWAY_NAME", "value": w.name}),
    ]
    .into_iter()
    .chain(s.env.iter().map(|(k, v)| json!({"name": k, "value": v})))
    .collect();
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(&p.service_account),
            // The waypoint asks for its token through a projected volume
            // (audience quicmesh), not the default mount.
            "automountServiceAccountToken": false,
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(&ca),
            "data": {"ca.pem": s.ca_pem},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(&w.name),
            "spec": {
                "selector": selector,
                "ports": [
                    {"name": "tunnel", "port": TUNNEL_PORT, "targetPort": TUNNEL_PORT, "protocol": "UDP"},
                    {"name": "http-metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP"},
                ],
            },
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(&w.name),
            // No `replicas`: 1 when created, then whatever scales it
            // (kubectl scale, an autoscaler) is not undone.
            "spec": {
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {
                        "labels": p.pod_labels,
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": METRICS_PORT.to_string(),
                        },
                    },
                    "spec": {
                        "serviceAccountName": p.service_account,
                        "automountServiceAccountToken": false,
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 1337,
                            "runAsGroup": 1337,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [{
                            "name": "waypoint",
                            "image": s.image,
                            "imagePullPolicy": s.image_pull_policy,
                            "args": [
                                "--controller", s.controller,
                                "--controller-identity", s.controller_identity,
                                "--bootstrap-token", "/var/run/secrets/quicmesh/token/token",
                                "--trust-bundle", "/var/run/secrets/quicmesh/ca/ca.pem",
                                "--trust-domain", s.trust_domain,
                                "--cluster-domain", s.cluster_domain,
                            ],
                            "env": container_env,
                            "ports": [
                                {"name": "tunnel", "containerPort": TUNNEL_PORT, "protocol": "UDP"},
                                {"name": "http-metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz/ready", "port": METRICS_PORT},
                                "periodSeconds": 2,
                                "failureThreshold": 3,
                            },
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "32Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "quicmesh-token", "mountPath": "/var/run/secrets/quicmesh/token", "readOnly": true},
                                {"name": "quicmesh-ca", "mountPath": "/var/run/secrets/quicmesh/ca", "readOnly": true},
                            ],
                        }],
                        "volumes": [
                            {"name": "quicmesh-token", "projected": {"sources": [{"serviceAccountToken": {
                                "audience": "quicmesh", "expirationSeconds": 3600, "path": "token"}}]}},
                            {"name": "quicmesh-ca", "configMap": {"name": ca}},
                        ],
                    },
                },
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    pub(crate) fn settings() -> Settings {
        Settings {
            image: "ghcr.io/quicmesh/waypoint:test".into(),
            image_pull_policy: "IfNotPresent".into(),
            controller: "quicmesh-controller.quicmesh-system.svc:15012".into(),
            controller_identity: "spiffe://cluster.local/ns/quicmesh-system/sa/controller".into(),
            trust_domain: "cluster.local".into(),
            cluster_domain: "cluster.local".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            env: inherited_env([
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                    "http://collector:4317".to_string(),
                ),
                (
                    "OTEL_SERVICE_NAME".to_string(),
                    "quicmesh-controller".to_string(),
                ),
                ("RUST_LOG".to_string(), "info".to_string()),
                ("HOME".to_string(), "/root".to_string()),
            ]),
        }
    }

    fn ns(name: &str, use_waypoint: Option<&str>) -> Object {
        Object::Namespace(Namespace {
            name: name.into(),
            labels: use_waypoint
                .map(|v| [(waypoint::USE_WAYPOINT_LABEL.to_string(), v.to_string())].into())
                .unwrap_or_default(),
        })
    }

    fn gw(ns: &str, name: &str, uid: &str, created: bool) -> Object {
        let mut labels = Labels::new();
        if created {
            labels.insert(CREATED_LABEL.into(), "true".into());
            labels.insert(MANAGED_BY_LABEL.into(), FIELD_MANAGER.into());
        }
        Object::Gateway(Gateway {
            name: name.into(),
            namespace: ns.into(),
            class: WAYPOINT_CLASS.into(),
            labels,
            uid: uid.into(),
            generation: 1,
        })
    }

    fn kinds(p: &Plan) -> Vec<String> {
        p.apply
            .iter()
            .map(|o| {
                format!(
                    "{} {}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["namespace"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn a_label_creates_a_gateway_and_a_gateway_gets_its_deployment() {
        let s = settings();
        let mut ix = Index::new();
        ix.upsert(ns("shop", Some("waypoint")));
        // The label alone: the Gateway, nothing owned yet.
        let p = plan(&ix, &s);
        assert_eq!(kinds(&p), ["Gateway shop/waypoint"]);
        assert_eq!(p.apply[0]["spec"]["gatewayClassName"], WAYPOINT_CLASS);
        assert_eq!(p.apply[0]["metadata"]["labels"][CREATED_LABEL], "true");
        assert!(p.delete.is_empty());
        // The Gateway is back from the API server: what runs it, owned by it.
        ix.upsert(gw("shop", "waypoint", "uid-1", true));
        let p = plan(&ix, &s);
        assert_eq!(
            kinds(&p),
            [
                "ServiceAccount shop/waypoint",
                "ConfigMap shop/waypoint-ca-root",
                "Service shop/waypoint",
                "Deployment shop/waypoint"
            ]
        );
        for o in &p.apply {
            assert_eq!(o["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            assert_eq!(o["metadata"]["ownerReferences"][0]["kind"], "Gateway");
        }
        let d = &p.apply[3];
        let pod = &d["spec"]["template"];
        assert_eq!(pod["spec"]["serviceAccountName"], "waypoint");
        assert_eq!(
            pod["metadata"]["labels"][DATAPLANE_MODE_LABEL], DATAPLANE_MODE_NONE,
            "never captured by ztunnel"
        );
        assert_eq!(
            d["spec"]["selector"]["matchLabels"][GATEWAY_NAME_LABEL],
            "waypoint"
        );
        let args: Vec<&str> = pod["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.windows(2).any(|w| w
            == [
                "--controller",
                "quicmesh-controller.quicmesh-system.svc:15012"
            ]));
        assert_eq!(
            pod["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
            "quicmesh"
        );
        assert_eq!(p.apply[1]["data"]["ca.pem"], s.ca_pem);
        // The controller's logging and trace settings, nothing else of its
        // environment, and not its service name.
        let env: Vec<(String, String)> = pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_string(),
                    e["value"].as_str()?.to_string(),
                ))
            })
            .collect();
        assert!(env.contains(&(
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            "http://collector:4317".into()
        )));
        assert!(env.contains(&("RUST_LOG".into(), "info".into())));
        assert!(!env
            .iter()
            .any(|(k, _)| k == "HOME" || k == "OTEL_SERVICE_NAME"));
    }

    #[test]
    fn names_that_cannot_be_run_and_taken_service_accounts_are_skipped() {
        let s = settings();
        let mut ix = Index::new();
        ix.upsert(ns("shop", Some("my.waypoint")));
        let p = plan(&ix, &s);
        assert!(p.apply.is_empty());
        assert_eq!(p.invalid[0].1, "my.waypoint");
        // A Gateway named after the service account apps run as: not run
        // (it would take the account over), nothing applied.
        ix.upsert(ns("shop", Some("default")));
        ix.upsert(Object::Pod(Pod {
            uid: "a".into(),
            name: "app-0".into(),
            namespace: "shop".into(),
            labels: Labels::new(),
            annotations: Default::default(),
            service_account: "default".into(),
            node: None,
            ips: vec![],
            ready: true,
            containers: vec![],
        }));
        assert_eq!(plan(&ix, &s), Plan::default());
    }

    #[test]
    fn only_gateways_the_controller_created_are_deleted_with_their_label() {
        let s = settings();
        let mut ix = Index::new();
        ix.upsert(ns("shop", None));
        ix.upsert(gw("shop", "waypoint", "uid-1", true));
        ix.upsert(ns("bank", None));
        ix.upsert(gw("bank", "waypoint", "uid-2", false));
        let p = plan(&ix, &s);
        assert_eq!(p.delete, [("shop".to_string(), "waypoint".to_string())]);
        // A user's Gateway stays, and keeps running, without any label.
        assert!(kinds(&p).contains(&"Deployment bank/waypoint".to_string()));
        // A Service's label asks for it too: kept.
        ix.upsert(Object::Service(Service {
            name: "web".into(),
            namespace: "shop".into(),
            vips: vec![],
            ports: vec![],
            selector: None,
            labels: [(
                waypoint::USE_WAYPOINT_LABEL.to_string(),
                "waypoint".to_string(),
            )]
            .into(),
        }));
        assert!(plan(&ix, &s).delete.is_empty());
    }

    #[test]
    fn the_manifests_are_valid_kubernetes_objects() {
        // The Kubernetes kinds, checked by kubernetes-validate (strict: no
        // field Kubernetes does not know) against the 1.31 schemas.
        let w = Waypoint {
            namespace: "shop".into(),
            name: "waypoint".into(),
            implied: false,
            waypoint_for: Default::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("waypoint.yaml");
        let docs: Vec<String> = owned(&w, &settings())
            .iter()
            .map(|o| serde_yaml::to_string(o).unwrap())
            .collect();
        std::fs::write(&path, docs.join("---\n")).unwrap();
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let out = std::process::Command::new(python)
            .args(["-m", "kubernetes_validate", "-k", "1.31.0", "--strict"])
            .arg(&path)
            .output()
            .expect("kubernetes-validate (scripts/setup.sh installs it)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert_eq!(text.matches("passed").count(), 4, "{text}");
    }
}
