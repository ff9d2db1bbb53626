//! The secure L4 data path end to end: real curl and a real HTTP server in
//! pods on different nodes, ztunnel capturing and tunnelling over QUIC.

use std::time::Duration;

use quicmesh_e2e::require_root;
use quicmesh_lab::{Mesh, MeshPod, MeshSpec};

fn spec() -> MeshSpec {
    MeshSpec {
        nodes: 2,
        pods: vec![
            MeshPod::new("client", 1, "demo", "client"),
            MeshPod::new("server", 2, "demo", "server"),
            MeshPod::new("neighbour", 1, "demo", "neighbour"),
        ],
        externals: 1,
    }
}

fn curl(mesh: &Mesh, pod: &str, url: &str) -> std::process::Output {
    mesh.lab
        .exec_timeout(
            &mesh.lab.pod(pod).netns,
            &["curl", "-sS", "--max-time", "10", url],
            Duration::from_secs(15),
        )
        .expect("curl ran")
}

fn http_server(mesh: &Mesh, pod: &str, port: u16) {
    let dir = mesh.dir.join(format!("www-{pod}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), format!("hello from {pod}\n")).unwrap();
    let port = port.to_string();
    let d = dir.to_str().unwrap().to_string();
    mesh.lab
        .spawn(
            &mesh.lab.pod(pod).netns,
            "python3",
            &[
                "-m",
                "http.server",
                "--bind",
                "0.0.0.0",
                "--directory",
                &d,
                &port,
            ],
            &[],
            Some(&mesh.dir.join(format!("http-{pod}.log"))),
        )
        .unwrap();
}

async fn wait_listening(mesh: &Mesh, pod: &str, port: u16) {
    let w = mesh.worker(&mesh.lab.pod(pod).netns).unwrap();
    let ok = quicmesh_e2e::eventually(Duration::from_secs(10), || {
        let w = w.clone();
        async move {
            w.run(move || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
                .await
                .unwrap_or(false)
        }
    })
    .await;
    assert!(ok, "server in {pod} did not start listening on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_across_nodes_goes_through_the_quic_tunnel() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    http_server(&mesh, "server", 8080);
    wait_listening(&mesh, "server", 8080).await;
    for node in [1, 2] {
        mesh.lab
            .add_link_counter(node, "quic", "udp dport 15008")
            .unwrap();
        mesh.lab
            .add_link_counter(node, "app_tcp", "tcp dport 8080")
            .unwrap();
    }

    let url = format!("http://{}:8080/hello.txt", mesh.pod_ip("server"));
    let out = curl(&mesh, "client", &url);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from server\n");

    // The node link carried QUIC to the tunnel port and no plain TCP to the app.
    let (quic_pkts, _) = mesh.lab.link_counter(1, "quic").unwrap();
    let (tcp_pkts, _) = mesh.lab.link_counter(1, "app_tcp").unwrap();
    assert!(quic_pkts > 0, "no UDP/15008 packets crossed node1's link");
    assert_eq!(
        tcp_pkts, 0,
        "plain TCP to the app port crossed the node link"
    );
    let (tcp2, _) = mesh.lab.link_counter(2, "app_tcp").unwrap();
    assert_eq!(tcp2, 0);

    // Both ztunnels saw the stream with both SPIFFE IDs.
    let (src, dst) = (mesh.identity("client"), mesh.identity("server"));
    let ok = quicmesh_e2e::eventually(Duration::from_secs(5), || async {
        mesh.metric(
            1,
            "quicmesh_tunnel_streams_closed_total",
            &[
                ("direction", "outbound"),
                ("src_principal", src.as_str()),
                ("dst_principal", dst.as_str()),
            ],
        )
        .await
        .unwrap()
            >= 1.0
            && mesh
                .metric(
                    2,
                    "quicmesh_tunnel_streams_closed_total",
                    &[
                        ("direction", "inbound"),
                        ("src_principal", src.as_str()),
                        ("dst_principal", dst.as_str()),
                    ],
                )
                .await
                .unwrap()
                >= 1.0
    })
    .await;
    assert!(
        ok,
        "stream metrics with both identities missing:\n{}",
        mesh.metrics(1).await.unwrap()
    );
    let log1 = mesh.log(1);
    assert!(
        log1.lines().any(|l| l.contains("connection complete")
            && l.contains(src.as_str())
            && l.contains(dst.as_str())
            && l.contains("path=\"tunnel\"")),
        "node1 access log lacks the tunnelled connection:\n{log1}"
    );
    let log2 = mesh.log(2);
    assert!(
        log2.lines().any(|l| l.contains("connection complete")
            && l.contains(src.as_str())
            && l.contains(dst.as_str())),
        "node2 access log lacks the inbound stream:\n{log2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_node_traffic_also_goes_through_the_tunnel() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    http_server(&mesh, "neighbour", 8081);
    wait_listening(&mesh, "neighbour", 8081).await;
    let url = format!("http://{}:8081/hello.txt", mesh.pod_ip("neighbour"));
    let out = curl(&mesh, "client", &url);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from neighbour\n"
    );
    let (src, dst) = (mesh.identity("client"), mesh.identity("neighbour"));
    let ok = quicmesh_e2e::eventually(Duration::from_secs(5), || async {
        mesh.metric(
            1,
            "quicmesh_tunnel_streams_closed_total",
            &[
                ("direction", "inbound"),
                ("src_principal", src.as_str()),
                ("dst_principal", dst.as_str()),
            ],
        )
        .await
        .unwrap()
            >= 1.0
    })
    .await;
    assert!(
        ok,
        "same-node stream not seen by the tunnel server:\n{}",
        mesh.metrics(1).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_outside_the_mesh_pass_through() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    let ext = mesh.lab.external(1).clone();
    let dir = mesh.dir.join("www-ext");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from outside\n").unwrap();
    mesh.lab
        .spawn(
            &ext.netns,
            "python3",
            &[
                "-m",
                "http.server",
                "--bind",
                "0.0.0.0",
                "--directory",
                dir.to_str().unwrap(),
                "9090",
            ],
            &[],
            None,
        )
        .unwrap();
    let w = mesh.worker(&ext.netns).unwrap();
    assert!(
        quicmesh_e2e::eventually(Duration::from_secs(10), || {
            let w = w.clone();
            async move {
                w.run(|| std::net::TcpStream::connect(("127.0.0.1", 9090)).is_ok())
                    .await
                    .unwrap_or(false)
            }
        })
        .await
    );
    let out = curl(
        &mesh,
        "client",
        &format!("http://{}:9090/hello.txt", ext.ip),
    );
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from outside\n");
    assert!(
        mesh.metric(1, "ztunnel_passthrough_connections_total", &[])
            .await
            .unwrap()
            >= 1.0
    );
    assert!(mesh.log(1).contains("path=\"passthrough\""));
}
