//! `quicmesh check --kubeconfig/--context`: a Kubernetes cluster's mesh.
//! The API server and its version, the CRDs (quicmesh's, the Gateway
//! API's), the controller Deployment, the ztunnel and CNI DaemonSets on
//! every node, the versions they run against this CLI's, and whether
//! every proxy took its config (through the controller's admin page, as
//! `proxy-status` reads it). Reads only: `get` on the CRDs, Deployments,
//! DaemonSets and `/version`, and what `proxy-status` needs.

use serde_json::Value;

use super::{bad, ok, proxy_checks, Check, Level};
use crate::kube::{Kube, KubeArgs};
use crate::target::Mesh;

/// The oldest Kubernetes quicmesh supports: projected tokens name their
/// node from 1.30 (docs/install.md).
const MIN_KUBERNETES: (u32, u32) = (1, 30);

/// quicmesh's CRDs: the files of helm/quicmesh/crds (a test keeps them
/// equal).
const QUICMESH_CRDS: [&str; 5] = [
    "authorizationpolicies.quicmesh.io",
    "requestauthentications.quicmesh.io",
    "trafficpolicies.quicmesh.io",
    "trustdomainfederations.quicmesh.io",
    "workloadentries.quicmesh.io",
];

/// What waypoints need from the Gateway API (standard channel).
const GATEWAY_API_CRDS: [&str; 3] = [
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "grpcroutes.gateway.networking.k8s.io",
];

const GATEWAY_API_INSTALL: &str = "kubectl apply -f https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.2.1/standard-install.yaml";

/// `major.minor` of the API server's `/version` (`minor` may carry a
/// `+`, as some providers write it).
fn server_version(v: &Value) -> Option<(u32, u32)> {
    let num = |k: &str| -> Option<u32> {
        let s = v[k].as_str()?;
        s.trim_end_matches('+').parse().ok()
    };
    Some((num("major")?, num("minor")?))
}

/// The tag of each container image of a workload's pod template.
fn image_tags(workload: &Value) -> Vec<String> {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["image"].as_str())
        .map(|i| {
            let no_digest = i.split('@').next().unwrap_or(i);
            match no_digest.rsplit_once(':') {
                Some((_, tag)) if !tag.contains('/') => tag.to_string(),
                _ => "latest".to_string(),
            }
        })
        .collect()
}

pub async fn checks(args: &KubeArgs) -> Vec<Check> {
    let kube = match Kube::connect(args).await {
        Ok(k) => k,
        Err(e) => {
            return vec![bad(
                "kubernetes",
                Level::Fail,
                format!("{e:#}"),
                "name the cluster with --kubeconfig FILE and --context NAME",
            )]
        }
    };
    let mut out = Vec::new();
    match kube.get_json("/version").await {
        Ok(Some(v)) => {
            let shown = format!(
                "{} at {}",
                v["gitVersion"].as_str().unwrap_or("?"),
                kube.url()
            );
            out.push(match server_version(&v) {
                Some(have) if have >= MIN_KUBERNETES => ok("kubernetes", shown),
                Some(_) => bad(
                    "kubernetes",
                    Level::Fail,
                    shown,
                    format!(
                        "quicmesh needs Kubernetes {}.{} or newer (projected tokens that name their node)",
                        MIN_KUBERNETES.0, MIN_KUBERNETES.1
                    ),
                ),
                None => bad(
                    "kubernetes",
                    Level::Warn,
                    format!("{shown}: version not understood"),
                    "expected major and minor numbers",
                ),
            });
        }
        Ok(None) => out.push(bad(
            "kubernetes",
            Level::Fail,
            format!(
                "{} has no /version: not a Kubernetes API server?",
                kube.url()
            ),
            "check the kubeconfig's server",
        )),
        // Nothing else can be read.
        Err(e) => {
            out.push(bad(
                "kubernetes",
                Level::Fail,
                format!("{e:#}"),
                "check the kubeconfig (--kubeconfig, --context) and that the API server is up",
            ));
            return out;
        }
    }

    out.push(crds(&kube, &QUICMESH_CRDS, Level::Fail, "quicmesh CRDs",
        "the chart installs them (helm install/upgrade), or: kubectl apply -f helm/quicmesh/crds").await);
    out.push(
        crds(
            &kube,
            &GATEWAY_API_CRDS,
            Level::Warn,
            "Gateway API CRDs",
            &format!("waypoints and routes need them (v1.2 or later): {GATEWAY_API_INSTALL}"),
        )
        .await,
    );

    let ns = kube.namespace().to_string();
    let mut tags: Vec<(String, String)> = Vec::new();
    let controller = kube
        .get_json(&format!(
            "/apis/apps/v1/namespaces/{ns}/deployments/quicmesh-controller"
        ))
        .await;
    out.push(match controller {
        Ok(Some(d)) => {
            tags.extend(image_tags(&d).into_iter().map(|t| ("controller".into(), t)));
            let want = d["spec"]["replicas"].as_u64().unwrap_or(1);
            let ready = d["status"]["readyReplicas"].as_u64().unwrap_or(0);
            if ready > 0 {
                ok("controller pods", format!("{ready}/{want} ready"))
            } else {
                bad("controller pods", Level::Fail, format!("0/{want} ready"),
                    format!("kubectl -n {ns} describe deploy/quicmesh-controller; kubectl -n {ns} logs deploy/quicmesh-controller"))
            }
        }
        Ok(None) => bad("controller pods", Level::Fail, format!("no Deployment quicmesh-controller in namespace {ns}"),
            format!("install quicmesh (helm install quicmesh helm/quicmesh -n {ns} --create-namespace), or name its namespace with --mesh-namespace")),
        Err(e) => bad("controller pods", Level::Fail, format!("{e:#}"), "the CLI's user needs get on deployments in the quicmesh namespace"),
    });
    for (check, name) in [("ztunnel", "ztunnel"), ("cni", "quicmesh-cni")] {
        let ds = kube
            .get_json(&format!("/apis/apps/v1/namespaces/{ns}/daemonsets/{name}"))
            .await;
        out.push(match ds {
            Ok(Some(d)) => {
                tags.extend(image_tags(&d).into_iter().map(|t| (name.to_string(), t)));
                let want = d["status"]["desiredNumberScheduled"].as_u64().unwrap_or(0);
                let ready = d["status"]["numberReady"].as_u64().unwrap_or(0);
                if want > 0 && ready == want {
                    ok(check, format!("ready on {ready}/{want} nodes"))
                } else {
                    bad(check, Level::Fail, format!("ready on {ready}/{want} nodes"),
                        format!("kubectl -n {ns} get pods -l app.kubernetes.io/name={name} -o wide, then describe/logs the ones not ready"))
                }
            }
            Ok(None) => bad(check, Level::Fail, format!("no DaemonSet {name} in namespace {ns}"),
                "the chart installs it: helm upgrade --install quicmesh helm/quicmesh (or --mesh-namespace)"),
            Err(e) => bad(check, Level::Fail, format!("{e:#}"), "the CLI's user needs get on daemonsets in the quicmesh namespace"),
        });
    }
    out.push(versions(&tags));

    match Mesh::kubernetes(kube).await {
        Ok(mesh) => out.extend(proxy_checks(&mesh).await),
        Err(e) => out.push(bad(
            "proxies",
            Level::Fail,
            format!("{e:#}"),
            "see the controller check above",
        )),
    }
    out
}

/// Whether each of `names` is a CRD the API server has, and established.
async fn crds(
    kube: &Kube,
    names: &[&str],
    missing_level: Level,
    check: &'static str,
    hint: &str,
) -> Check {
    let mut missing = Vec::new();
    for name in names {
        let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
        match kube.get_json(&path).await {
            Ok(Some(crd)) => {
                let established = crd["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Established" && c["status"] == "True");
                if !established {
                    missing.push(format!("{name} (not established)"));
                }
            }
            Ok(None) => missing.push(name.to_string()),
            Err(e) => {
                return bad(
                    check,
                    Level::Fail,
                    format!("{e:#}"),
                    "the CLI's user needs get on customresourcedefinitions",
                )
            }
        }
    }
    if missing.is_empty() {
        ok(check, format!("{} installed", names.len()))
    } else {
        bad(
            check,
            missing_level,
            format!("missing: {}", missing.join(", ")),
            hint,
        )
    }
}

/// The images the mesh runs, against this CLI's version.
fn versions(tags: &[(String, String)]) -> Check {
    let want = env!("CARGO_PKG_VERSION");
    let other: Vec<String> = tags
        .iter()
        .filter(|(_, t)| t.trim_start_matches('v') != want)
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    if tags.is_empty() {
        bad(
            "versions",
            Level::Warn,
            "no image found to compare",
            "see the checks above",
        )
    } else if other.is_empty() {
        ok("versions", format!("{want} everywhere, as this CLI"))
    } else {
        bad(
            "versions",
            Level::Warn,
            format!("this CLI is {want}; the cluster runs {}", other.join(", ")),
            "use the CLI of the installed version, or upgrade the chart (docs/install.md)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_crds_checked_are_the_charts() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../helm/quicmesh/crds");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|f| f.strip_suffix(".yaml").map(str::to_string))
            .collect();
        files.sort();
        assert_eq!(files, QUICMESH_CRDS);
    }

    #[test]
    fn versions_and_tags_read_as_clusters_write_them() {
        assert_eq!(
            server_version(&json!({"major": "1", "minor": "33"})),
            Some((1, 33))
        );
        assert_eq!(
            server_version(&json!({"major": "1", "minor": "29+"})),
            Some((1, 29))
        );
        assert_eq!(server_version(&json!({"major": "x"})), None);
        let d = |image: &str| json!({"spec": {"template": {"spec": {"containers": [{"image": image}]}}}});
        assert_eq!(image_tags(&d("ghcr.io/quicmesh/ztunnel:0.1.0")), ["0.1.0"]);
        assert_eq!(image_tags(&d("registry:5000/quicmesh/ztunnel")), ["latest"]);
        assert_eq!(image_tags(&d("ghcr.io/q/z:v0.2.0@sha256:abc")), ["v0.2.0"]);
        let tags = [("ztunnel".to_string(), "0.0.9".to_string())];
        assert!(versions(&tags).level == Level::Warn);
        let tags = [(
            "ztunnel".to_string(),
            format!("v{}", env!("CARGO_PKG_VERSION")),
        )];
        assert!(versions(&tags).level == Level::Ok);
    }
}
