//! Traces end to end: every process of a lab cluster exports OTLP over
//! gRPC (the standard `OTEL_*` variables, as a user would set them) to a
//! receiver on the control-plane host (tests/python/otlp_receiver.py, the
//! published OTLP protos). One request from `front/client` to
//! `shop/whoami` through shop's waypoint is one trace: the client node's
//! ztunnel (outbound, client), the waypoint's tunnel stream (server), its
//! request (server), the backend node's ztunnel (inbound, server), each
//! the parent of the next, with the identities and HTTP attributes on
//! them; the backend sees the request span as its `traceparent`. A
//! request that brings its own `traceparent` is continued by the
//! waypoint (linked to the mesh's hop). The controller's certificate
//! signing is a span too. One test in this file: the variables are the
//! process's.

use std::time::Duration;

use quicmesh_e2e::waypoint::*;
use quicmesh_e2e::{eventually, require_root};
use quicmesh_lab::local::CONTROLLER_IP;
use serde_json::Value;

const OTLP_GRPC: u16 = 4317;
const APP_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const APP_PARENT: &str = "b7ad6b7169203331";

fn spans(out: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `traceparent` the backend received (its echo of the headers).
fn backend_traceparent(body: &str) -> Option<(String, String)> {
    let tp = body
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))?
        .trim();
    let parts: Vec<&str> = tp.split('-').collect();
    (parts.len() == 4).then(|| (parts[1].to_string(), parts[2].to_string()))
}

fn find<'a>(spans: &'a [Value], trace: &str, service: &str, name: &str) -> Option<&'a Value> {
    spans
        .iter()
        .find(|s| s["trace_id"] == trace && s["service"] == service && s["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_through_the_waypoint_is_one_trace() {
    require_root();
    // What a user sets; every process the lab starts inherits it.
    std::env::set_var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        format!("http://{CONTROLLER_IP}:{OTLP_GRPC}"),
    );
    std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
    let (mut cluster, _dir) = start_with(&[("whoami.yaml", WHOAMI), ("echo.py", ECHO)]).await;
    let rx = tempfile::tempdir().unwrap();
    let out = rx.path().join("spans.jsonl");
    let netns = cluster.lab.external(1).netns.clone();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/otlp_receiver.py");
    let (out_s, bind, port) = (
        out.display().to_string(),
        CONTROLLER_IP.to_string(),
        OTLP_GRPC.to_string(),
    );
    let log = rx.path().join("receiver.log");
    let _receiver = cluster
        .lab
        .spawn(
            &netns,
            "python3",
            &[
                script, &out_s, "--bind", &bind, "--grpc", &port, "--http", "0",
            ],
            &[],
            Some(&log),
        )
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ready"))
        })
        .await,
        "the OTLP receiver did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline && cluster.pods.values().any(|p| !p.ready) {
        cluster.reconcile().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // One request; the backend echoes the traceparent it got. Until the
    // waypoint has the backend's endpoint in its config it answers 503:
    // `-f` makes that a retry (an answer is the backend's 200).
    let mut answered = None;
    let mut last_error = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while answered.is_none() && std::time::Instant::now() < deadline {
        match curl(&cluster, &["-f", "http://whoami.shop/traced"]) {
            Ok(body) => answered = Some(body),
            Err(e) => {
                last_error = e;
                tokio::time::sleep(Duration::from_millis(500)).await
            }
        }
    }
    let body = answered.unwrap_or_else(|| panic!("the request was never answered: {last_error}"));
    let (trace, backend_parent) = backend_traceparent(&body)
        .unwrap_or_else(|| panic!("the backend saw no traceparent; it saw:\n{body}"));

    // The four spans of that trace, each the child of the one before.
    let mut all = Vec::new();
    let complete = eventually(Duration::from_secs(30), || {
        all = spans(&out);
        let done = ["tunnel outbound", "GET"].iter().all(|n| {
            all.iter()
                .any(|s| s["trace_id"] == trace.as_str() && s["name"] == *n)
        }) && all
            .iter()
            .filter(|s| s["trace_id"] == trace.as_str() && s["name"] == "tunnel inbound")
            .count()
            >= 2;
        async move { done }
    })
    .await;
    let in_trace: Vec<&Value> = all
        .iter()
        .filter(|s| s["trace_id"] == trace.as_str())
        .collect();
    assert!(
        complete,
        "the trace is incomplete: {in_trace:#?}\nevery span: {:#?}\nwaypoint log:\n{}",
        all.iter()
            .map(|s| (&s["service"], &s["name"], &s["trace_id"]))
            .collect::<Vec<_>>(),
        cluster.pod_log("shop", "waypoint-0")
    );
    let outbound = find(&all, &trace, "ztunnel", "tunnel outbound").expect("client ztunnel span");
    let hop = find(&all, &trace, "waypoint", "tunnel inbound").expect("waypoint stream span");
    let request = find(&all, &trace, "waypoint", "GET").expect("waypoint request span");
    let inbound = find(&all, &trace, "ztunnel", "tunnel inbound").expect("backend ztunnel span");

    assert_eq!(outbound["parent_span_id"], "", "the mesh starts the trace");
    assert_eq!(outbound["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(hop["parent_span_id"], outbound["span_id"]);
    assert_eq!(hop["kind"], "SPAN_KIND_SERVER");
    assert_eq!(request["parent_span_id"], hop["span_id"]);
    assert_eq!(request["kind"], "SPAN_KIND_SERVER");
    assert_eq!(inbound["parent_span_id"], request["span_id"]);
    assert_eq!(inbound["kind"], "SPAN_KIND_SERVER");
    assert_eq!(
        backend_parent,
        request["span_id"].as_str().unwrap(),
        "the backend continues the waypoint's request span"
    );

    // Who talked to whom, as the certificates proved it.
    let client = "spiffe://cluster.local/ns/front/sa/client";
    let waypoint = "spiffe://cluster.local/ns/shop/sa/waypoint";
    let web = "spiffe://cluster.local/ns/shop/sa/web";
    let a = |s: &Value, k: &str| s["attributes"][k].clone();
    assert_eq!(a(outbound, "quicmesh.source.principal"), client);
    assert_eq!(a(outbound, "quicmesh.destination.principal"), waypoint);
    assert_eq!(a(outbound, "quicmesh.path"), "waypoint");
    assert_eq!(a(outbound, "server.port"), 80);
    assert!(a(outbound, "quicmesh.bytes_sent").as_i64().unwrap() > 0);
    assert_eq!(a(outbound, "quicmesh.outcome"), "closed");
    assert_eq!(a(hop, "quicmesh.source.principal"), client);
    assert_eq!(a(hop, "quicmesh.destination.principal"), waypoint);
    assert_eq!(a(request, "http.request.method"), "GET");
    assert_eq!(a(request, "url.path"), "/traced");
    assert_eq!(a(request, "http.response.status_code"), 200);
    assert_eq!(a(request, "network.protocol.version"), "1.1");
    assert_eq!(a(request, "quicmesh.source.principal"), client);
    assert!(
        a(request, "quicmesh.upstream")
            .as_str()
            .is_some_and(|u| u.ends_with(":8080")),
        "{request}"
    );
    assert_eq!(a(inbound, "quicmesh.source.principal"), waypoint);
    assert_eq!(a(inbound, "quicmesh.destination.principal"), web);
    assert_eq!(a(inbound, "server.port"), 8080);
    for s in [outbound, hop, request, inbound] {
        assert_eq!(s["via"], "grpc");
        assert_ne!(s["status"], "STATUS_CODE_ERROR", "{s}");
    }

    // A request with its own trace: the waypoint continues it (and links
    // the mesh's hop); the backend is in the app's trace.
    let header = format!("traceparent: 00-{APP_TRACE}-{APP_PARENT}-01");
    let body = curl(&cluster, &["-H", &header, "http://whoami.shop/app"]).unwrap();
    let (seen, _) = backend_traceparent(&body).expect("traceparent reached the backend");
    assert_eq!(seen, APP_TRACE);
    let mut app = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            app = spans(&out)
                .into_iter()
                .find(|s| s["trace_id"] == APP_TRACE && s["service"] == "waypoint");
            let found = app.is_some();
            async move { found }
        })
        .await,
        "no waypoint span in the app's trace"
    );
    let app = app.unwrap();
    assert_eq!(app["parent_span_id"], APP_PARENT);
    assert_eq!(app["attributes"]["url.path"], "/app");
    let link = &app["links"][0];
    assert_ne!(
        link["trace_id"], APP_TRACE,
        "linked to the mesh's own trace"
    );
    assert!(
        spans(&out)
            .iter()
            .any(|s| s["span_id"] == link["span_id"] && s["name"] == "tunnel inbound"),
        "the link names the tunnel stream the request came on"
    );

    // The controller: a certificate signed is a span (a restarted ztunnel
    // asks for its pods' SVIDs again).
    cluster.restart_ztunnel(1).await.unwrap();
    let mut csr = None;
    assert!(
        eventually(Duration::from_secs(30), || {
            csr = spans(&out).into_iter().find(|s| {
                s["service"] == "quicmesh-controller"
                    && s["attributes"]["rpc.method"] == "CreateCertificate"
                    && s["attributes"]["rpc.grpc.status_code"] == 0
            });
            let found = csr.is_some();
            async move { found }
        })
        .await,
        "no certificate signing span: {:#?}",
        spans(&out)
            .iter()
            .map(|s| (&s["service"], &s["name"]))
            .collect::<Vec<_>>()
    );
    let csr = csr.unwrap();
    assert_eq!(csr["kind"], "SPAN_KIND_SERVER");
    assert_eq!(csr["attributes"]["rpc.system"], "grpc");
    assert!(csr["attributes"]["quicmesh.identity"]
        .as_str()
        .is_some_and(|id| id.starts_with("spiffe://cluster.local/")));

    // Exports are counted.
    let m = waypoint_metrics(&cluster).await;
    assert!(
        quicmesh_lab::mesh::sum_metric(
            &m,
            "quicmesh_trace_spans_exported_total",
            &[("result", "ok")]
        ) > 0.0,
        "{m}"
    );
}
