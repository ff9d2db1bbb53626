//! The log filter of a running ztunnel (the binary) changed on its admin
//! port with curl: `GET /logging` says the filter in effect, `POST
//! /logging?level=...` replaces it (debug lines appear, `off` silences
//! even warnings), a bad filter or a missing one is refused with 400 and
//! changes nothing. The ztunnel's controller is a closed port, so it logs
//! failed attempts (warnings).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;

/// (status, body) of curl `args` against `admin`.
fn curl(admin: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--max-time",
            "10",
        ])
        .arg(format!("http://{admin}{path}"))
        .output()
        .expect("curl runs (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Waits (at most 30 s) until the log at `log` has a line after its first
/// `from` bytes that satisfies `want`.
fn wait_for_line(log: &Path, from: usize, what: &str, want: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.get(from..).is_some_and(|t| t.lines().any(&want)) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filter_changes_at_run_time_on_the_admin_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = quicmesh_core::identity::ca::Ca::generate("cluster.local").unwrap();
    let (bundle, token, log) = (
        dir.path().join("ca.pem"),
        dir.path().join("token"),
        dir.path().join("ztunnel.log"),
    );
    std::fs::write(&bundle, ca.cert_pem()).unwrap();
    std::fs::write(&token, "node1-token\n").unwrap();
    let [metrics, admin, controller] = support::free_ports();
    let _ztunnel = support::spawn(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ztunnel"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .args(["--node", "node1", "--controller", &controller.to_string()])
            .arg("--bootstrap-token")
            .arg(&token)
            .arg("--trust-bundle")
            .arg(&bundle)
            .arg("--enroll-socket")
            .arg(dir.path().join("ztunnel.sock")),
        metrics,
        admin,
        &log,
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while support::get(admin, "/logging")
        .await
        .is_none_or(|(status, _)| status != 200)
    {
        assert!(Instant::now() < deadline, "admin port never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(curl(admin, "GET", "/logging"), (200, "info\n".into()));
    wait_for_line(&log, 0, "a warning at info", |l| l.contains(" WARN "));

    // Refused, and nothing changed.
    let (code, body) = curl(admin, "POST", "/logging?level=info,%5B%7B");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is not a log filter"), "{body}");
    assert_eq!(curl(admin, "POST", "/logging").0, 400);
    assert_eq!(curl(admin, "DELETE", "/logging").0, 405);
    assert_eq!(curl(admin, "GET", "/logging").1, "info\n");

    // Debug: debug lines follow.
    let at = std::fs::metadata(&log).unwrap().len() as usize;
    assert_eq!(
        curl(admin, "POST", "/logging?level=debug"),
        (200, "debug\n".into())
    );
    wait_for_line(&log, at, "a debug line", |l| l.contains(" DEBUG "));

    // Off: a refused change, which is logged as a warning, logs nothing.
    assert_eq!(curl(admin, "POST", "/logging?level=off").0, 200);
    let at = std::fs::metadata(&log).unwrap().len() as usize;
    assert_eq!(curl(admin, "POST", "/logging?level=%5B").0, 400);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(&text[at..], "", "lines while off");
    // Warn: its warnings again, the change itself first.
    assert_eq!(curl(admin, "POST", "/logging?level=warn").0, 200);
    wait_for_line(&log, at, "the change logged", |l| {
        l.contains(" WARN ") && l.contains("log filter changed through the admin port")
    });
    assert_eq!(curl(admin, "GET", "/logging").1, "warn\n");
}
