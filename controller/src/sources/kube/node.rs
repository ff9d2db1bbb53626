//! The CNI node agent's view of the cluster: what it needs to enroll its
//! node's pods with ztunnel, and no more. Namespaces (their
//! `quicmesh.io/dataplane-mode` label puts their pods in the mesh), and the
//! Pods of one node only, selected by the API server with the field selector
//! `spec.nodeName=<node>`: an agent in a 5,000-node cluster holds its own
//! node's pods, not every pod.
//!
//! The watchers are the controller's ([`super::watch_kind_with`]): list,
//! then watch from the list's resourceVersion, a re-list after 410 Gone,
//! errors retried with backoff, and the same sync gate ([`Store::synced`]
//! waits for `kube/Namespace` and `kube/Pod`). A pod scheduled onto the
//! node later comes as a watch event once it is bound (`spec.nodeName` is
//! set once and never changes). The store's index then answers
//! [`crate::index::Index::in_mesh`] for each pod of the node.
//!
//! RBAC: list and watch on `pods` and `namespaces`, cluster-wide (a field
//! selector does not narrow what RBAC must grant); the chart grants exactly
//! that to the `quicmesh-cni` ServiceAccount (`helm/quicmesh/templates/cni.yaml`,
//! kept with the code in `helm/quicmesh/rbac-expected.yaml`).

use std::future::Future;
use std::sync::Arc;

use anyhow::bail;
use kube::runtime::watcher;

use super::{sync_name, watch_namespaces, watch_pods};
use crate::model::Kind;
use crate::store::Store;

/// The kinds [`run_for_node`] watches.
pub const NODE_KINDS: [Kind; 2] = [Kind::Namespace, Kind::Pod];

/// The watch of `node`'s pods: the field selector `spec.nodeName=<node>`
/// (sent with the list and every watch).
pub fn node_pods(node: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("spec.nodeName={node}"))
}

/// Watches Namespaces and the Pods of `node` ([`node_pods`]) and feeds
/// `store`. Runs until cancelled; transient errors are retried with
/// backoff. Fails at once if `node` is empty (that selector would pick the
/// pods no node has taken yet).
///
/// Both kinds are registered with the store's sync gate when this is
/// called, before the returned future first runs, as [`super::run`] does:
/// [`Store::synced`] returns once both have been listed.
pub fn run_for_node(
    client: kube::Client,
    store: Arc<Store>,
    node: String,
) -> impl Future<Output = anyhow::Result<()>> + Send {
    for kind in NODE_KINDS {
        store.expect_sync(&sync_name(kind));
    }
    async move {
        if node.is_empty() {
            bail!("no node name to select pods by (is NODE_NAME set from spec.nodeName?)");
        }
        tokio::try_join!(
            watch_namespaces(client.clone(), store.clone()),
            watch_pods(client, store, node_pods(&node)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_of_one_node_are_selected_by_field() {
        let c = node_pods("kind-worker");
        assert_eq!(
            c.field_selector.as_deref(),
            Some("spec.nodeName=kind-worker")
        );
        assert_eq!(c.label_selector, None);
    }

    #[tokio::test]
    async fn both_kinds_are_awaited_from_the_start_and_an_empty_node_is_refused() {
        let store = Store::new("cluster.local");
        let (client, _api) = {
            let (svc, handle) = tower_test::mock::pair::<
                http::Request<kube::client::Body>,
                http::Response<kube::client::Body>,
            >();
            (kube::Client::new(svc, "default"), handle)
        };
        let source = run_for_node(client, store.clone(), String::new());
        assert_eq!(store.pending_sources(), ["kube/Namespace", "kube/Pod"]);
        let err = source.await.unwrap_err().to_string();
        assert!(err.contains("no node name"), "{err}");
    }
}
