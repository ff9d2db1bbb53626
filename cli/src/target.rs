//! Which mesh the inspect commands talk to, and how they reach its
//! processes' admin pages: the mesh `quicmesh local up` runs (each process
//! in a network namespace of this host, found through the local agent's
//! status file), or a Kubernetes cluster's through its API server
//! ([`crate::kube`]). A cluster is, for both, the same JSON: `controllers`,
//! `nodes` (each node's ztunnel, with `name`), `pods` (waypoints marked
//! `waypoint`, with their `gateway`), each object holding where its
//! process is: `netns` here, `pod` in Kubernetes.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::kube::{default_kubeconfig_exists, Kube, KubeArgs};

/// The admin port of every quicmesh process (loopback only).
pub const ADMIN: u16 = 15000;

pub struct Mesh {
    pub clusters: Vec<Value>,
    kube: Option<Kube>,
}

const NO_MESH: &str = "no local mesh is running: start one with `quicmesh local up -f DIR` \
    (e.g. `quicmesh local up -f examples/waypoint`), or name a Kubernetes cluster with \
    --kubeconfig FILE or --context NAME";

/// The clusters of the running local mesh as its agent last wrote them
/// (`only`: one of them).
pub fn local_clusters(only: Option<u64>) -> Result<Vec<Value>> {
    let all = crate::manifests::running_status()?.context(NO_MESH)?;
    let all = all.as_array().cloned().unwrap_or_default();
    let picked: Vec<Value> = all
        .iter()
        .filter(|c| only.is_none_or(|n| c["cluster"].as_u64() == Some(n)))
        .cloned()
        .collect();
    if picked.is_empty() {
        let have: Vec<String> = all.iter().map(|c| c["cluster"].to_string()).collect();
        bail!(
            "no cluster {} in the local mesh (it has: {})",
            only.unwrap_or_default(),
            have.join(", ")
        );
    }
    Ok(picked)
}

/// A local cluster in the shape of [`Mesh::clusters`].
fn normalized(mut c: Value) -> Value {
    c["controllers"] = json!([{"name": "controller", "netns": c["controller_netns"]}]);
    for p in c["pods"].as_array_mut().into_iter().flatten() {
        if p["waypoint"] == true {
            // A Gateway's pods are `<gateway>-<n>` here.
            let name = p["name"].as_str().unwrap_or_default();
            let gateway = name.rsplit_once('-').map_or(name, |(g, _)| g);
            p["gateway"] = json!(format!(
                "{}/{gateway}",
                p["namespace"].as_str().unwrap_or_default()
            ));
        }
    }
    c
}

impl Mesh {
    /// The Kubernetes cluster the flags name; else the running local mesh
    /// (`cluster`: one of its clusters); else the default kubeconfig's.
    pub async fn open(kube: &KubeArgs, cluster: Option<u64>) -> Result<Mesh> {
        let local = !kube.named()
            && (crate::manifests::running_status()?.is_some() || !default_kubeconfig_exists());
        if local {
            return Mesh::local(cluster);
        }
        if cluster.is_some() {
            bail!("--cluster picks a cluster of a local mesh; pick a Kubernetes cluster with --context");
        }
        Mesh::kubernetes(Kube::connect(kube).await?).await
    }

    /// The running local mesh (`cluster`: one of its clusters).
    pub fn local(cluster: Option<u64>) -> Result<Mesh> {
        crate::require_root()?;
        let clusters = local_clusters(cluster)?
            .into_iter()
            .map(normalized)
            .collect();
        Ok(Mesh {
            clusters,
            kube: None,
        })
    }

    /// The mesh in the cluster `kube` talks to.
    pub async fn kubernetes(kube: Kube) -> Result<Mesh> {
        let c = kube.cluster().await?;
        Ok(Mesh {
            clusters: vec![c],
            kube: Some(kube),
        })
    }

    pub fn is_kubernetes(&self) -> bool {
        self.kube.is_some()
    }

    /// GET `path` from `port` (loopback) of the process `at` names.
    pub async fn get(&self, at: &Value, port: u16, path: &str) -> Result<String> {
        match &self.kube {
            Some(k) => k.get(&at["pod"], port, path).await,
            None => {
                let netns = at["netns"]
                    .as_str()
                    .context("the status file names no netns")?;
                quicmesh_lab::mesh::netns_http_get(
                    netns,
                    SocketAddr::from(([127, 0, 0, 1], port)),
                    path,
                )
                .await
                .with_context(|| format!("reading {path} on port {port} in {netns}"))
            }
        }
    }

    /// `path` of the admin page of `at`, as JSON.
    pub async fn admin(&self, at: &Value, path: &str) -> Result<Value> {
        let text = self.get(at, ADMIN, path).await?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{path} of {} did not answer JSON: {text:.200}",
                self.name(at)
            )
        })
    }

    /// `at` for people: its pod, or its network namespace.
    pub fn name(&self, at: &Value) -> String {
        match pod_of(at) {
            Some((ns, name)) => format!("pod {ns}/{name}"),
            None => format!("netns {}", at["netns"].as_str().unwrap_or("?")),
        }
    }

    /// Where the log of the controller `at` names is read.
    pub fn controller_logs(&self, at: &Value) -> String {
        match pod_of(at) {
            Some((ns, name)) => format!("kubectl -n {ns} logs {name}"),
            None => "quicmesh local logs controller".into(),
        }
    }
}

/// The pod (namespace, name) `at` is in Kubernetes.
fn pod_of(at: &Value) -> Option<(&str, &str)> {
    let p = at["pod"].as_object()?;
    Some((p.get("namespace")?.as_str()?, p.get("name")?.as_str()?))
}
