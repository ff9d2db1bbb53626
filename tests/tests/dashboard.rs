//! `quicmesh dashboard` in a real browser: the real binary serves the page
//! for `local up -f examples/waypoint`, whose client calls `web.shop`
//! through the namespace's waypoint every two seconds; headless Chromium
//! (Debian's, driven by playwright-core: tests/browser/dashboard.mjs)
//! must see the client → waypoint and the waypoint → web edges carrying
//! requests, and the waypoint marked as one. The screenshot is kept in
//! `<target dir>/test-artifacts/dashboard.png`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use quicmesh_e2e::cli::{free_loopback_addr, Cli};
use quicmesh_e2e::require_root;
use serde_json::{json, Value};

const CLIENT: &str = "spiffe://cluster.local/ns/front/sa/client";
const WAYPOINT: &str = "spiffe://cluster.local/ns/shop/sa/waypoint";
const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";

/// `<target>/test-artifacts`: beside `release/` (the test runs from
/// `release/deps/`).
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Kills the dashboard when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    quicmesh_lab::mesh::http_get(addr, path).ok()
}

#[test]
fn the_dashboard_shows_the_demo_graph_in_a_browser() {
    require_root();
    let cli = Cli::new();
    // No mesh: the command says so and what to do.
    let e = cli.fails(&["dashboard"]);
    assert!(e.contains("no local mesh is running"), "{e}");
    cli.up(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/waypoint"));

    let addr = free_loopback_addr();
    let _dashboard = Child(
        Command::new(cli.bin())
            .args(["dashboard", "--addr", &addr.to_string(), "--interval", "1"])
            .env("TMPDIR", cli.tmp())
            .env("KUBECONFIG", cli.tmp().join("no-kubeconfig"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The graph's JSON, once requests went through the waypoint.
    let deadline = Instant::now() + Duration::from_secs(60);
    let graph = loop {
        let g: Value = get(addr, "/api/graph")
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let flowing = g["edges"].as_array().into_iter().flatten().any(|e| {
            e["src"] == CLIENT
                && e["dst"] == WAYPOINT
                && e["requests"][0]["requestsPerSecond"].as_f64() > Some(0.0)
        });
        if flowing || Instant::now() > deadline {
            break g;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let edges = graph["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{graph}"));
    let to_waypoint = edges
        .iter()
        .find(|e| e["src"] == CLIENT && e["dst"] == WAYPOINT)
        .unwrap_or_else(|| panic!("no client → waypoint edge: {graph}"));
    let r = &to_waypoint["requests"][0];
    assert_eq!(r["service"], "shop/web:80", "{r}");
    assert!(r["requestsPerSecond"].as_f64() > Some(0.0), "{graph}");
    // The example's TrafficPolicy injects faults only with x-chaos: on.
    assert_eq!(r["successRate"], 1.0, "{r}");
    assert!(
        r["p99Seconds"].as_f64().is_some_and(|p| p > 0.0 && p < 5.0),
        "{r}"
    );
    assert_eq!(to_waypoint["mtls"]["client"], CLIENT);
    // What the waypoint sent on to web's endpoints (by their identity).
    let to_web = edges
        .iter()
        .find(|e| e["src"] == WAYPOINT && e["dst"] == WEB)
        .unwrap_or_else(|| panic!("no waypoint → web edge: {graph}"));
    assert!(
        to_web["connectionsPerSecond"].as_f64() > Some(0.0),
        "{to_web}"
    );
    assert_eq!(to_web["requests"][0]["service"], "shop/web:80", "{to_web}");
    assert!(
        to_web["requests"][0]["requestsPerSecond"].as_f64() > Some(0.0),
        "{to_web}"
    );
    let nodes = graph["nodes"].as_array().unwrap();
    let web = nodes
        .iter()
        .find(|n| n["id"] == WEB)
        .unwrap_or_else(|| panic!("{graph}"));
    let mut pods: Vec<&str> = web["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    pods.sort();
    assert_eq!(pods, ["shop/web-v1-0", "shop/web-v2-0"]);
    assert!(
        web["certificateExpiresInSeconds"].as_f64() > Some(3600.0),
        "{web}"
    );

    // The page, in Chromium.
    let page = get(addr, "/").unwrap_or_default();
    assert!(page.contains("<svg id=\"graph\""), "{page:.300}");
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let expect = cli.tmp().join("expect.json");
    std::fs::write(
        &expect,
        json!({"edges": [[CLIENT, WAYPOINT, true], [WAYPOINT, WEB, true]], "waypoints": [WAYPOINT], "timeoutMs": 60000})
            .to_string(),
    )
    .unwrap();
    let shot = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let out = Command::new("node")
        .arg(browser.join("dashboard.mjs"))
        .arg(format!("http://{addr}/"))
        .arg(&shot)
        .arg(&expect)
        .current_dir(&browser)
        .output()
        .expect("node (scripts/setup.sh installs it, with chromium and playwright-core)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser did not see the graph: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["seen"]["pageErrors"], json!([]), "{seen}");
    let label = seen["seen"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["src"] == CLIENT && e["dst"] == WAYPOINT)
        .map(|e| e["text"].to_string())
        .unwrap_or_default();
    assert!(
        label.contains("shop/web:80") && label.contains("req/s"),
        "{label}"
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
