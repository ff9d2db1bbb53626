//! An HTTP/3 client that is not ours (Python aioquic) sends an RFC 9114
//! §4.4 CONNECT — `:method` and `:authority` only — to a pod's tunnel port
//! with a valid SVID, and its bytes reach the app and come back.

use std::net::SocketAddr;
use std::time::Duration;

use quicmesh_core::identity::ca::svid_to_pem;
use quicmesh_e2e::{listen_in, require_root, two_node_spec};
use quicmesh_lab::Mesh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioquic_compliant_connect_gets_bytes_through() {
    require_root();
    let probe = std::process::Command::new("python3")
        .args(["-c", "import aioquic"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "python3 cannot import aioquic; the test setup installs it (pip install aioquic): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let mesh = Mesh::start(two_node_spec()).await.unwrap();

    // The app: answers with what it read, upper-cased, after the client's FIN.
    let w = mesh.worker(&mesh.lab.pod("server").netns).unwrap();
    let l = listen_in(&w, "0.0.0.0:7200".parse().unwrap())
        .await
        .unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).await.unwrap();
        s.write_all(&v.to_ascii_uppercase()).await.unwrap();
        s.shutdown().await.unwrap();
    });

    // A valid SVID for the independent client, written as PEM files.
    let id =
        quicmesh_core::identity::SpiffeId::workload("cluster.local", "other", "python").unwrap();
    let svid = mesh.ca().mint(&id, Duration::from_secs(3600)).unwrap();
    let (chain, key) = svid_to_pem(&svid);
    let (cert_path, key_path, ca_path) = (
        mesh.dir.join("py-cert.pem"),
        mesh.dir.join("py-key.pem"),
        mesh.dir.join("ca/ca.pem"),
    );
    std::fs::write(&cert_path, chain).unwrap();
    std::fs::write(&key_path, key).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/h3_connect.py");
    let server_ip = mesh.pod_ip("server");
    let authority = SocketAddr::new(server_ip.into(), 7200).to_string();
    let host = server_ip.to_string();
    let expect = mesh.identity("server").to_string();
    let args = [
        script,
        "--host",
        &host,
        "--authority",
        &authority,
        "--cert",
        cert_path.to_str().unwrap(),
        "--key",
        key_path.to_str().unwrap(),
        "--ca",
        ca_path.to_str().unwrap(),
        "--expect-id",
        &expect,
        "--payload",
        "bytes from aioquic",
    ];
    let mut full = vec!["python3"];
    full.extend_from_slice(&args);
    let out = mesh
        .lab
        .exec_timeout(
            &mesh.lab.pod("stranger").netns,
            &full,
            Duration::from_secs(30),
        )
        .expect("the python client ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aioquic client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["status"], "200", "{stdout}");
    assert_eq!(v["body"], "BYTES FROM AIOQUIC", "{stdout}");
    let log = mesh.log(2);
    assert!(
        log.lines().any(|l| l.contains("connection complete")
            && l.contains("spiffe://cluster.local/ns/other/sa/python")),
        "node2 did not log the aioquic stream:\n{log}"
    );
}
