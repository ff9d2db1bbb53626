//! HTTP/3 clients that are not ours (Python aioquic) against a pod's tunnel
//! port, with a valid SVID: an RFC 9114 §4.4 CONNECT — `:method` and
//! `:authority` only — gets its bytes to the app and back; malformed,
//! oversized and stalled requests are refused, each with its reason counted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use quicmesh_core::identity::ca::svid_to_pem;
use quicmesh_e2e::{eventually, listen_in, require_root, two_node_spec};
use quicmesh_lab::Mesh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn require_aioquic() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import aioquic"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "python3 cannot import aioquic; the test setup installs it (pip install aioquic): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// A valid SVID for the independent client (`other/python`), written as PEM
/// files: (certificate chain, key).
fn python_svid(mesh: &Mesh) -> (PathBuf, PathBuf) {
    let id =
        quicmesh_core::identity::SpiffeId::workload("cluster.local", "other", "python").unwrap();
    let svid = mesh.ca().mint(&id, Duration::from_secs(3600)).unwrap();
    let (chain, key) = svid_to_pem(&svid);
    let (cert_path, key_path) = (mesh.dir.join("py-cert.pem"), mesh.dir.join("py-key.pem"));
    std::fs::write(&cert_path, chain).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

/// Runs `tests/python/<script>` in the stranger pod; its JSON output.
fn run_python(mesh: &Mesh, script: &str, args: &[&str]) -> serde_json::Value {
    let script = format!("{}/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut full = vec!["python3", script.as_str()];
    full.extend_from_slice(args);
    let out = mesh
        .lab
        .exec_timeout(
            &mesh.lab.pod("stranger").netns,
            &full,
            Duration::from_secs(60),
        )
        .expect("the python client ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// An app in the server pod: answers with what it read, upper-cased, after
/// the client's FIN.
async fn upper_app(mesh: &Mesh, port: u16) {
    let w = mesh.worker(&mesh.lab.pod("server").netns).unwrap();
    let l = listen_in(&w, SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut v = Vec::new();
                if s.read_to_end(&mut v).await.is_ok() {
                    let _ = s.write_all(&v.to_ascii_uppercase()).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_compliant_connect_gets_bytes_through() {
    require_root();
    require_aioquic();
    let mesh = Mesh::start(two_node_spec()).await.unwrap();
    upper_app(&mesh, 7200).await;
    let (cert, key) = python_svid(&mesh);
    let ca = mesh.dir.join("ca/ca.pem");
    let server_ip = mesh.pod_ip("server").to_string();
    let authority = format!("{server_ip}:7200");
    let expect = mesh.identity("server").to_string();
    let v = run_python(
        &mesh,
        "h3_connect.py",
        &[
            "--host",
            &server_ip,
            "--authority",
            &authority,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--ca",
            ca.to_str().unwrap(),
            "--expect-id",
            &expect,
            "--payload",
            "bytes from aioquic",
        ],
    );
    assert_eq!(v["status"], "200", "{v}");
    assert_eq!(v["body"], "BYTES FROM AIOQUIC", "{v}");
    let log = mesh.log(2);
    assert!(
        log.lines().any(|l| l.contains("connection complete")
            && l.contains("spiffe://cluster.local/ns/other/sa/python")),
        "node2 did not log the aioquic stream:\n{log}"
    );
}

/// Each malformed form the issue found answered 200 (h3 0.0.8 repaired
/// them), and the oversized and stalled HEADERS frames got no answer at
/// all: now each is refused with its status and its own metric reason,
/// while a compliant CONNECT on the same connection still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_malformed_oversized_and_stalled_requests_are_refused() {
    require_root();
    require_aioquic();
    let mesh = Mesh::start(two_node_spec()).await.unwrap();
    upper_app(&mesh, 7200).await;
    let (cert, key) = python_svid(&mesh);
    let server_ip = mesh.pod_ip("server").to_string();
    let authority = format!("{server_ip}:7200");
    let v = run_python(
        &mesh,
        "h3_hostile.py",
        &[
            "--host",
            &server_ip,
            "--authority",
            &authority,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            // The header timeout is 10 s; a server that never answers the
            // stalled stream shows as "timeout".
            "--wait",
            "25",
        ],
    );
    let want = [
        ("dup_authority", "status:400", "duplicate_pseudo_header"),
        ("scheme_path", "status:400", "connect_scheme_or_path"),
        ("host_only", "status:400", "missing_authority"),
        ("oversize", "status:431", "header_too_large"),
        ("stall", "status:408", "header_timeout"),
    ];
    for (case, outcome, _) in want {
        assert_eq!(v[case], outcome, "{case}: {v}");
    }
    assert_eq!(v["compliant"], "status:200", "{v}");
    for (case, _, reason) in want {
        let counted = eventually(Duration::from_secs(5), || async {
            mesh.metric(
                2,
                "quicmesh_tunnel_refusals_total",
                &[("direction", "inbound"), ("reason", reason)],
            )
            .await
            .unwrap()
                >= 1.0
        })
        .await;
        assert!(
            counted,
            "{case}: no refusal counted as {reason}:\n{}",
            mesh.metrics(2).await.unwrap()
        );
    }
    let log = mesh.log(2);
    assert!(
        log.contains("malformed request: pseudo-header :authority appears twice"),
        "the refusal reason is not in the log:\n{log}"
    );
}
