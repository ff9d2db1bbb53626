//! A real ztunnel (the binary) with `--svid-source workload-api:PATH`,
//! against a Workload API server the test runs on that socket (the one of
//! core's tests): not ready until the first answer, ready after it, the
//! answer counted in its metrics, and still ready when the agent goes
//! away. Every wait is a poll with a deadline.

#[path = "../../core/tests/support/workload_api.rs"]
mod workload_api;

mod support;

use std::net::SocketAddr;

use std::time::{Duration, Instant};
use support::get;

use quicmesh_core::identity::ca::Ca;
use workload_api::{answer, id, mint, Answer, Server};

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(30);

/// Asks `path` until `want` holds, for at most [`STEP`].
async fn until(
    addr: SocketAddr,
    path: &str,
    log: &std::path::Path,
    what: &str,
    want: impl Fn(u16, &str) -> bool,
) -> String {
    let deadline = Instant::now() + STEP;
    let mut last = None;
    loop {
        if let Some((status, body)) = get(addr, path).await {
            if want(status, &body) {
                return body;
            }
            last = Some((status, body));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {STEP:?}; last answer {last:?}\nztunnel log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn value(scrape: &str, series: &str) -> Option<i64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_the_workload_api_answered_and_while_the_agent_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, workloads, enroll, log) = (
        dir.path().join("agent.sock"),
        dir.path().join("workloads.yaml"),
        dir.path().join("ztunnel.sock"),
        dir.path().join("ztunnel.log"),
    );
    std::fs::write(
        &workloads,
        "workloads:\n- {uid: a, name: web-0, namespace: shop, serviceAccount: web, node: node1, ips: [10.0.0.1]}\n",
    )
    .unwrap();
    let [metrics, admin] = support::free_ports();
    // The agent is up but has nothing for ztunnel yet.
    let server = Server::start(&agent, Answer::Nothing);
    let _ztunnel = support::spawn(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ztunnel"))
            .args(["--node", "node1", "--workloads"])
            .arg(&workloads)
            .arg("--svid-source")
            .arg(format!("workload-api:unix:{}", agent.display()))
            .arg("--enroll-socket")
            .arg(&enroll),
        metrics,
        admin,
        &log,
    );

    until(
        metrics,
        "/healthz/ready",
        &log,
        "waiting for the agent",
        |s, b| {
            s == 503
                && b.starts_with("not ready: certificates (no answer from the Workload API yet")
        },
    )
    .await;
    let scrape = until(metrics, "/metrics", &log, "stream up", |_, b| {
        value(b, "quicmesh_workload_api_connected") == Some(1)
    })
    .await;
    assert_eq!(server.refused_without_header(), 0, "{scrape}");

    let ca = Ca::generate("cluster.local").unwrap();
    let web = mint(&ca, &id("shop", "web"));
    server.set(answer(&[(&web, &[&ca])], &[]));
    until(metrics, "/healthz/ready", &log, "answer taken", |s, b| {
        s == 200 && b == "ready\n"
    })
    .await;
    let scrape = get(metrics, "/metrics").await.unwrap().1;
    assert_eq!(
        value(
            &scrape,
            "quicmesh_workload_api_updates_total{result=\"applied\"}"
        ),
        Some(1),
        "{scrape}"
    );

    // The agent goes away: the stream is down, ztunnel stays ready on the
    // SVIDs it holds.
    server.stop().await;
    until(metrics, "/metrics", &log, "stream down", |_, b| {
        value(b, "quicmesh_workload_api_connected") == Some(0)
    })
    .await;
    let (status, body) = get(metrics, "/healthz/ready").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ready\n"));
}
