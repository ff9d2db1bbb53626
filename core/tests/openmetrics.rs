//! The metrics and admin server as a scraper sees it: `/metrics` answers
//! with the OpenMetrics Content-Type (Prometheus 3 refuses a scrape whose
//! format it cannot tell) and a body the reference OpenMetrics parser
//! (Python's prometheus-client, installed by scripts/setup.sh) reads
//! whole — counters, gauges, labeled families and histograms; a JSON page
//! says it is JSON; an unknown path is a plain-text 404. And the tunnel
//! metrics' series stay bounded however many distinct peers come.

use std::process::Command;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quicmesh_core::metrics::{
    encode, handler, scrape, serve_http, LabelCap, Seconds, TunnelMetrics, MAX_PRINCIPALS,
};

/// Fetches each path with urllib, prints `path status content-type`, and
/// for /metrics every family the OpenMetrics parser found, as JSON.
const SCRAPER: &str = r#"
import json, sys, urllib.error, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
base = sys.argv[1]
for path in ["/metrics", "/dump", "/nope"]:
    try:
        r = urllib.request.urlopen(base + path, timeout=10)
        status, ctype, body = r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        status, ctype, body = e.code, e.headers["Content-Type"], e.read().decode()
    print(json.dumps({"path": path, "status": status, "type": ctype}))
    if path == "/metrics":
        fams = [{"name": f.name, "type": f.type, "samples": [s.name for s in f.samples]}
                for f in text_string_to_metric_families(body)]
        print(json.dumps({"families": fams}))
    if path == "/dump":
        print(json.dumps({"dump": json.loads(body)}))
"#;

#[tokio::test]
async fn a_scrape_is_openmetrics_that_the_reference_parser_reads() {
    let mut reg = Registry::default();
    let requests = Family::<Vec<(String, String)>, Counter>::default();
    requests
        .get_or_create(&vec![("code".into(), "200".into())])
        .inc_by(3);
    requests
        .get_or_create(&vec![("code".into(), "503".into())])
        .inc();
    reg.register("quicmesh_requests", "Requests by code", requests);
    let up = Gauge::<i64>::default();
    up.set(1);
    reg.register("quicmesh_up", "Up", up);
    let durations = Seconds::default();
    durations.observe(Duration::from_millis(5));
    durations.observe(Duration::from_millis(500));
    reg.register(
        "quicmesh_request_duration_seconds",
        "Request durations",
        durations,
    );
    let reg = std::sync::Arc::new(reg);

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve_http(
        l,
        vec![
            (
                "/metrics",
                handler(move || std::future::ready(scrape(&reg))),
            ),
            (
                "/dump",
                handler(|| std::future::ready(serde_json::json!({"version": 7}))),
            ),
        ],
        stop.clone(),
    ));

    let base = format!("http://{addr}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", SCRAPER, &base])
            .output()
            .expect("python3 runs (scripts/setup.sh installs prometheus-client)")
    })
    .await
    .unwrap();
    stop.cancel();
    assert!(
        out.status.success(),
        "scraper: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(
        lines[0]["type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let families = lines[1]["families"].as_array().unwrap();
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} not parsed: {families:?}"))
    };
    let counter = family("quicmesh_requests");
    assert_eq!(counter["type"], "counter");
    assert_eq!(counter["samples"].as_array().unwrap().len(), 2, "{counter}");
    assert_eq!(family("quicmesh_up")["type"], "gauge");
    let histogram = family("quicmesh_request_duration_seconds");
    assert_eq!(histogram["type"], "histogram");
    let samples: Vec<&str> = histogram["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        samples.contains(&"quicmesh_request_duration_seconds_bucket")
            && samples.contains(&"quicmesh_request_duration_seconds_count")
            && samples.contains(&"quicmesh_request_duration_seconds_sum"),
        "{samples:?}"
    );

    assert_eq!(
        (&lines[2]["status"], &lines[2]["type"]),
        (&200.into(), &"application/json".into())
    );
    assert_eq!(lines[3]["dump"]["version"], 7);
    assert_eq!(lines[4]["status"], 404);
    assert_eq!(lines[4]["type"], "text/plain; charset=utf-8");
}

#[test]
fn ten_thousand_distinct_peers_make_a_bounded_number_of_series() {
    let m = TunnelMetrics::default();
    let mut reg = Registry::default();
    m.register(&mut reg);
    let local = "spiffe://cluster.local/ns/shop/sa/web";
    for i in 0..10_000 {
        let peer = format!("spiffe://cluster.local/ns/n{i}/sa/client");
        let labels = m.stream_labels("inbound", &peer, local);
        m.streams_opened.get_or_create(&labels).inc();
        m.stream_ended("inbound", Instant::now());
    }
    let text = encode(&reg);
    let series = text
        .lines()
        .filter(|l| l.starts_with("quicmesh_tunnel_streams_opened_total{"))
        .count();
    // The local identity takes one of the kept values.
    assert_eq!(series, MAX_PRINCIPALS, "{series} series");
    let other = text
        .lines()
        .find(|l| {
            l.starts_with("quicmesh_tunnel_streams_opened_total{")
                && l.contains(r#"src_principal="other""#)
        })
        .expect("the rest counted as other");
    assert!(
        other.ends_with(&format!(" {}", 10_000 - (MAX_PRINCIPALS - 1))),
        "{other}"
    );
    // One duration histogram per direction, every stream in it.
    assert!(
        text.contains(
            r#"quicmesh_tunnel_stream_duration_seconds_count{direction="inbound"} 10000"#
        ),
        "{text}"
    );

    let cap = LabelCap::new(2);
    assert_eq!(cap.admit("a"), "a");
    assert_eq!(cap.admit("b"), "b");
    assert_eq!(cap.admit("c"), LabelCap::OTHER);
    assert_eq!(cap.admit("a"), "a", "kept values stay");
}
