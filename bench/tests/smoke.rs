//! Runs `quicmesh-bench --smoke` end to end (root: it builds a lab) and
//! checks only that it produced a well-formed table and JSON document; no
//! timing is asserted. Fails, never skips, when it cannot run. Needs the
//! `ztunnel` binary beside the bench binary (`cargo build --bins` of the same
//! profile) or `QUICMESH_ZTUNNEL`.

use std::process::Command;

use quicmesh_bench::report::ROWS;
use serde_json::Value;

#[test]
fn smoke_run_produces_a_table_and_json() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the smoke benchmark builds network namespaces: run as root"
    );
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_quicmesh-bench"))
        .args(["--smoke", "--out-dir"])
        .arg(out_dir.path())
        .output()
        .expect("running quicmesh-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quicmesh-bench --smoke failed:\n{stderr}\n{stdout}"
    );

    // The markdown table: header, separator, one line per row.
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(lines.len(), ROWS.len() + 2, "table:\n{stdout}");
    assert!(lines[0].contains("| direct | mesh L4 |"));
    assert!(
        lines.iter().all(|l| l.matches('|').count() == 6),
        "{stdout}"
    );

    // Exactly one JSON document, with the machine, versions and every row.
    let files: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap())
        .expect("well-formed JSON");
    assert_eq!(doc["mode"], "smoke");
    for field in [
        "cores",
        "kernel",
        "node_link_mtu",
        "net.core.rmem_max",
        "net.core.wmem_max",
    ] {
        assert!(!doc["machine"][field].is_null(), "machine.{field} missing");
    }
    assert!(doc["versions"]["quicmesh"].is_string());
    assert!(doc["date"].as_str().is_some_and(|d| d.len() >= 10));
    let rows = doc["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), ROWS.len());
    let mesh =
        |key: &str| -> Value { rows.iter().find(|r| r["key"] == key).expect(key)["mesh"].clone() };
    // The smoke run measured these in the mesh scenario (values, not notes).
    for key in [
        "tput1",
        "max_rps",
        "r1k_p50",
        "r1k_p999",
        "churn_cps",
        "cpu_both",
        "rss_n1",
        "first_cold",
    ] {
        let median = mesh(key)["median"].as_f64();
        assert!(
            median.is_some_and(|m| m.is_finite() && m > 0.0),
            "{key}: {}",
            mesh(key)
        );
    }
    // The lossy row has either numbers or a reason.
    let lossy = mesh("lossy_tput1");
    assert!(
        lossy["median"].is_number() || lossy["note"].is_string(),
        "{lossy}"
    );
    assert!(doc["table"]
        .as_str()
        .is_some_and(|t| stdout.contains(t.trim_end())));
}
