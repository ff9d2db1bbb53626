//! The secure L4 data path end to end: real curl and a real HTTP server in
//! pods on different nodes, ztunnel capturing and tunnelling over QUIC.

use std::time::Duration;

use quicmesh_e2e::{curl, eventually, require_root, stream_counted};
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

/// Curls `url` from the client pod and checks the body.
fn fetch(mesh: &Mesh, url: &str, want: &str) {
    let out = curl(mesh, "client", url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl {url} failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

/// True when `node`'s access log has a completed connection mentioning all of `parts`.
fn logged(mesh: &Mesh, node: usize, parts: &[&str]) -> bool {
    mesh.log(node)
        .lines()
        .any(|l| l.contains("connection complete") && parts.iter().all(|p| l.contains(p)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_across_nodes_goes_through_the_quic_tunnel() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    let server_ns = mesh.lab.pod("server").netns.clone();
    mesh.http_server(&server_ns, 8080, &[("hello.txt", "hello from server\n")])
        .await
        .unwrap();
    for node in [1, 2] {
        mesh.lab
            .add_link_counter(node, "quic", "udp dport 15008")
            .unwrap();
        mesh.lab
            .add_link_counter(node, "app_tcp", "tcp dport 8080")
            .unwrap();
    }

    let url = format!("http://{}:8080/hello.txt", mesh.pod_ip("server"));
    fetch(&mesh, &url, "hello from server\n");

    // The node links carried QUIC to the tunnel port and no plain TCP to the app.
    assert!(
        mesh.lab.link_counter(1, "quic").unwrap().0 > 0,
        "no UDP/15008 packets crossed node1's link"
    );
    for node in [1, 2] {
        let (tcp, _) = mesh.lab.link_counter(node, "app_tcp").unwrap();
        assert_eq!(
            tcp, 0,
            "plain TCP to the app port crossed node{node}'s link"
        );
    }

    // Both ztunnels saw the stream with both SPIFFE IDs: metrics and access log.
    let (src, dst) = (mesh.identity("client"), mesh.identity("server"));
    let (src, dst) = (src.as_str(), dst.as_str());
    assert!(
        stream_counted(&mesh, 1, "outbound", src, dst).await,
        "node1 metrics lack the stream:\n{}",
        mesh.metrics(1).await.unwrap()
    );
    assert!(
        stream_counted(&mesh, 2, "inbound", src, dst).await,
        "node2 metrics lack the stream:\n{}",
        mesh.metrics(2).await.unwrap()
    );
    assert!(
        logged(&mesh, 1, &[src, dst, "path=\"tunnel\""]),
        "node1 log:\n{}",
        mesh.log(1)
    );
    assert!(
        logged(&mesh, 2, &[src, dst, "direction=\"inbound\""]),
        "node2 log:\n{}",
        mesh.log(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_node_traffic_also_goes_through_the_tunnel() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    let ns = mesh.lab.pod("neighbour").netns.clone();
    mesh.http_server(&ns, 8081, &[("hello.txt", "hello from neighbour\n")])
        .await
        .unwrap();
    let url = format!("http://{}:8081/hello.txt", mesh.pod_ip("neighbour"));
    fetch(&mesh, &url, "hello from neighbour\n");
    let (src, dst) = (mesh.identity("client"), mesh.identity("neighbour"));
    assert!(
        stream_counted(&mesh, 1, "inbound", src.as_str(), dst.as_str()).await,
        "same-node stream not seen by the tunnel server:\n{}",
        mesh.metrics(1).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_outside_the_mesh_pass_through() {
    require_root();
    let mesh = Mesh::start(spec()).await.unwrap();
    let ext = mesh.lab.external(1).clone();
    mesh.http_server(&ext.netns, 9090, &[("hello.txt", "hello from outside\n")])
        .await
        .unwrap();
    fetch(
        &mesh,
        &format!("http://{}:9090/hello.txt", ext.ip),
        "hello from outside\n",
    );
    let passed = mesh
        .metric(1, "quicmesh_ztunnel_passthrough_connections_total", &[])
        .await
        .unwrap();
    assert!(passed >= 1.0);
    // ztunnel logs a connection once both directions closed, which can
    // trail curl's exit.
    let ip = ext.ip.to_string();
    let seen = eventually(Duration::from_secs(5), || async {
        logged(&mesh, 1, &["path=\"passthrough\"", &ip])
    })
    .await;
    assert!(seen, "{}", mesh.log(1));
}
