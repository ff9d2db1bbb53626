//! On stop, the agent tells an uninstall (its DaemonSet gone or being
//! deleted) from a restart or an upgrade (it is there) by asking the API
//! server; a mock API server answers with objects in the API server's
//! format.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use quicmesh_cni::agent::kube_parts::uninstalling;
use tower_test::mock;

const DAEMONSET: &str = "/apis/apps/v1/namespaces/quicmesh-system/daemonsets/quicmesh-cni";

fn daemonset(deleting: bool) -> serde_json::Value {
    let mut ds = serde_json::json!({
        "kind": "DaemonSet", "apiVersion": "apps/v1",
        "metadata": {"name": "quicmesh-cni", "namespace": "quicmesh-system", "uid": "d-1",
            "resourceVersion": "901", "generation": 3, "creationTimestamp": "2026-12-02T00:00:00Z"},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "quicmesh-cni"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "quicmesh-cni"}},
                "spec": {"containers": [{"name": "cni-agent", "image": "ghcr.io/quicmesh/cni:0.1.0"}]}}},
        "status": {"currentNumberScheduled": 2, "desiredNumberScheduled": 2,
            "numberMisscheduled": 0, "numberReady": 2}
    });
    if deleting {
        ds["metadata"]["deletionTimestamp"] = "2026-12-02T01:00:00Z".into();
        ds["metadata"]["finalizers"] = serde_json::json!(["foregroundDeletion"]);
    }
    ds
}

fn status(code: u16, reason: &str) -> serde_json::Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("daemonsets.apps \"quicmesh-cni\" is {reason}"), "reason": reason,
        "details": {"name": "quicmesh-cni", "group": "apps", "kind": "daemonsets"}, "code": code})
}

/// Asks once, answering the agent's one GET with `status` and `body`.
async fn ask(code: StatusCode, body: serde_json::Value) -> kube::Result<bool> {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let answer = async move {
        let (req, send) = handle.next_request().await.expect("one request");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), DAEMONSET);
        send.send_response(
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    };
    let (got, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(
            uninstalling(&client, "quicmesh-system", "quicmesh-cni"),
            answer
        )
    })
    .await
    .expect("answered");
    got
}

#[tokio::test]
async fn an_uninstall_is_told_from_a_restart_by_the_daemonset() {
    // A rolling update or a restart: the DaemonSet is there.
    assert!(!ask(StatusCode::OK, daemonset(false)).await.unwrap());
    // helm uninstall: the DaemonSet is gone, or being deleted.
    assert!(ask(StatusCode::NOT_FOUND, status(404, "NotFound"))
        .await
        .unwrap());
    assert!(ask(StatusCode::OK, daemonset(true)).await.unwrap());
    // Not allowed to ask (or any error): not known, so the plugin stays.
    assert!(ask(StatusCode::FORBIDDEN, status(403, "Forbidden"))
        .await
        .is_err());
}
