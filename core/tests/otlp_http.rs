//! Traces as an OTLP receiver sees them over HTTP/protobuf: the receiver
//! is tests/python/otlp_receiver.py (the published OTLP protos, Python's
//! protobuf), the process's telemetry is set up as a binary's is
//! (`telemetry::init`), and a span continuing a remote `traceparent`, its
//! child, a warning inside it, and a log-only span go through. One test
//! in this file: the process's subscriber is set once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quicmesh_core::trace::{self, TraceArgs};
use serde_json::Value;
use tracing::Instrument;

const REMOTE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The spans in `out` once at least `n` are there (20 s at most).
fn spans(out: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<Value> = std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn spans_reach_an_otlp_receiver_over_http_with_their_parents_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let port = free_port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/python/otlp_receiver.py"
    );
    let mut receiver = Command::new("python3")
        .arg(script)
        .arg(&out)
        .args(["--grpc", "0", "--http", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the receiver");
    let mut ready = String::new();
    BufReader::new(receiver.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "the receiver did not start");

    // Exported every 100 ms rather than every 5 s (a standard variable).
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let injected = rt.block_on(async {
        let args = TraceArgs {
            otlp_endpoint: Some(format!("http://127.0.0.1:{port}/v1/traces")),
            ..Default::default()
        };
        let telemetry = quicmesh_core::telemetry::init("otlp-test", &args).unwrap();
        assert!(telemetry.traces());
        let mut incoming = http::HeaderMap::new();
        incoming.insert("traceparent", REMOTE.parse().unwrap());
        let server = tracing::info_span!(
            "server",
            otel.name = "test server",
            otel.kind = "server",
            test.count = 7i64,
            test.late = tracing::field::Empty
        );
        trace::continue_from(&server, &incoming, None);
        let mut outgoing = http::HeaderMap::new();
        async {
            let client = tracing::info_span!("client", otel.kind = "client");
            trace::inject(&client, &mut outgoing);
            drop(client);
            tracing::warn!("upstream answered late");
            // Not a trace span: log context only, never exported.
            tracing::info_span!("plain").in_scope(|| tracing::info!("inside"));
        }
        .instrument(server.clone())
        .await;
        server.record("test.late", "yes");
        drop(server);
        // The exporter's thread needs this runtime to send: shutdown
        // flushes from another thread while this one serves it.
        telemetry.shutdown().await;
        outgoing
    });

    let got = spans(&out, 2);
    let _ = receiver.kill();
    let _ = receiver.wait();
    assert_eq!(got.len(), 2, "exactly the two trace spans: {got:#?}");
    let by_name = |n: &str| {
        got.iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("no span {n:?} in {got:#?}"))
    };
    let server = by_name("test server");
    assert_eq!(server["via"], "http");
    assert_eq!(server["service"], "otlp-test");
    assert_eq!(server["kind"], "SPAN_KIND_SERVER");
    assert_eq!(server["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(server["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(server["attributes"]["test.count"], 7);
    assert_eq!(server["attributes"]["test.late"], "yes");
    assert!(
        server["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "upstream answered late"),
        "the warning is a span event: {server}"
    );
    let client = by_name("client");
    assert_eq!(client["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(client["trace_id"], server["trace_id"]);
    assert_eq!(client["parent_span_id"], server["span_id"]);
    // What the client sends on: its own span as the parent, same trace,
    // sampled.
    assert_eq!(
        injected.get("traceparent").unwrap().to_str().unwrap(),
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            client["span_id"].as_str().unwrap()
        )
    );

    let mut registry = prometheus_client::registry::Registry::default();
    trace::register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("quicmesh_trace_spans_exported_total{result=\"ok\"} 2"),
        "{text}"
    );
}
