//! What the tunnel must get right about the bytes: integrity at volume,
//! concurrency without leaks, half-close, resets, and what happens when a pod
//! leaves the mesh or ztunnel restarts.

use std::net::SocketAddr;
use std::time::Duration;

use quicmesh_e2e::{
    app, back_to_baseline, connect_from, eventually, footprints, listen_in, require_root,
    two_node_spec,
};
use quicmesh_lab::Mesh;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app reply: writes `msg` and closes.
async fn say(mut s: tokio::net::TcpStream, msg: &'static [u8]) {
    let _ = s.write_all(msg).await;
    let _ = s.shutdown().await;
}

/// Deterministic pseudo-random bytes (xorshift), so each side can check the other.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn send_and_hash(mut w: impl AsyncWriteExt + Unpin, data: &[u8]) -> [u8; 32] {
    for chunk in data.chunks(256 * 1024) {
        w.write_all(chunk).await.unwrap();
    }
    w.shutdown().await.unwrap();
    Sha256::digest(data).into()
}

async fn read_and_hash(mut r: impl AsyncReadExt + Unpin) -> ([u8; 32], u64) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).await.unwrap();
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    (h.finalize().into(), n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_megabytes_each_way_arrive_intact() {
    require_root();
    let mesh = Mesh::start(two_node_spec()).await.unwrap();
    const LEN: usize = 200 << 20;
    let server_w = mesh.worker(&mesh.lab.pod("server").netns).unwrap();
    let client_w = mesh.worker(&mesh.lab.pod("client").netns).unwrap();
    let listener = listen_in(&server_w, "0.0.0.0:7000".parse().unwrap())
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (r, w) = s.into_split();
        let down = pattern(2, LEN);
        let (sent, (got, n)) = tokio::join!(send_and_hash(w, &down), read_and_hash(r));
        (sent, got, n)
    });
    let addr = SocketAddr::new(mesh.pod_ip("server").into(), 7000);
    let s = connect_from(&client_w, addr).await.unwrap();
    let (r, w) = s.into_split();
    let up = pattern(1, LEN);
    let (sent_up, (got_down, n_down)) = tokio::join!(send_and_hash(w, &up), read_and_hash(r));
    let (sent_down, got_up, n_up) = server.await.unwrap();
    assert_eq!(n_up, LEN as u64, "server received {n_up} of {LEN} bytes");
    assert_eq!(
        n_down, LEN as u64,
        "client received {n_down} of {LEN} bytes"
    );
    assert_eq!(got_up, sent_up, "upstream bytes corrupted");
    assert_eq!(got_down, sent_down, "downstream bytes corrupted");
    let (src, dst) = (mesh.identity("client"), mesh.identity("server"));
    let sent = mesh
        .metric(
            1,
            "quicmesh_tunnel_sent_bytes_total",
            &[
                ("src_principal", src.as_str()),
                ("dst_principal", dst.as_str()),
            ],
        )
        .await
        .unwrap();
    assert!(
        sent >= LEN as f64,
        "tunnel metrics counted only {sent} bytes sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_connections_and_no_leak() {
    require_root();
    let mesh = Mesh::start(two_node_spec()).await.unwrap();
    const N: usize = 500;
    let server_w = mesh.worker(&mesh.lab.pod("server").netns).unwrap();
    let client_w = mesh.worker(&mesh.lab.pod("client").netns).unwrap();
    // Echo server: each connection echoes until EOF.
    app(&server_w, 7001, |mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
    .await
    .unwrap();
    let addr = SocketAddr::new(mesh.pod_ip("server").into(), 7001);

    // Warm up: the pooled QUIC connections (a pod pair's streams spread
    // over two) exist in the baseline.
    let mut warm = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from(&client_w, addr).await.unwrap();
        s.write_all(b"warm").await.unwrap();
        let mut v = [0u8; 4];
        s.read_exact(&mut v).await.unwrap();
        assert_eq!(&v, b"warm");
        warm.push(s);
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = footprints(&mesh).await;

    // Open all N first, so they are simultaneous.
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        conns.push(connect_from(&client_w, addr).await.unwrap());
    }
    // ztunnel holds all of them at once (one task each).
    let all_held = eventually(Duration::from_secs(10), || async {
        footprints(&mesh).await[0].tasks >= base[0].tasks + N as f64
    })
    .await;
    assert!(
        all_held,
        "expected ≥{N} more tasks on node1 while connections are open, got {:?} (base {base:?})",
        footprints(&mesh).await
    );
    let mut handles = Vec::new();
    for (i, mut s) in conns.into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let msg = format!("connection {i} says hello");
            s.write_all(msg.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, msg.as_bytes());
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    back_to_baseline(&mesh, base, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        mesh.metric(1, "quicmesh_tunnel_streams_active", &[])
            .await
            .unwrap(),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_still_delivers_the_whole_response() {
    require_root();
    let mesh = Mesh::start(two_node_spec()).await.unwrap();
    let server_w = mesh.worker(&mesh.lab.pod("server").netns).unwrap();
    let client_w = mesh.worker(&mesh.lab.pod("client").netns).unwrap();
    let listener = listen_in(&server_w, "0.0.0.0:7002".parse().unwrap())
        .await
        .unwrap();
    let response = pattern(7, 3 << 20);
    let resp2 = response.clone();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        // Read the whole request: only the client's FIN ends it.
        let mut req = Vec::new();
        s.read_to_end(&mut req).await.unwrap();
        // Answer after the client half-closed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(&resp2).await.unwrap();
        s.shutdown().await.unwrap();
        req
    });
    let addr = SocketAddr::new(mesh.pod_ip("server").into(), 7002);
    let mut s = connect_from(&client_w, addr).await.unwrap();
    s.write_all(b"request, then FIN").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(server.await.unwrap(), b"request, then FIN");
    assert_eq!(got.len(), response.len());
    assert!(got == response, "response corrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_by_the_server_app_reaches_the_client_app() {
    require_root();
    let mesh = Mesh::start(two_node_spec()).await.unwrap();
    let server_w = mesh.worker(&mesh.lab.pod("server").netns).unwrap();
    let client_w = mesh.worker(&mesh.lab.pod("client").netns).unwrap();
    let listener = listen_in(&server_w, "0.0.0.0:7003".parse().unwrap())
        .await
        .unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        // Abort: close with SO_LINGER 0 sends RST.
        s.set_zero_linger().unwrap();
        drop(s);
    });
    let addr = SocketAddr::new(mesh.pod_ip("server").into(), 7003);
    let mut s = connect_from(&client_w, addr).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("client saw the end in time");
    let err = r.expect_err("the client must see a reset, not a clean EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_pod_is_no_longer_captured() {
    require_root();
    let mesh = Mesh::start(two_node_spec()).await.unwrap();
    let server_ns = mesh.lab.pod("server").netns.clone();
    let listening = |proto: &str| {
        let out = mesh.lab.exec(&server_ns, &["ss", "-Hln", proto]).unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(listening("-t").contains(":15001") && listening("-t").contains(":15006"));
    assert!(listening("-u").contains(":15008"));
    assert!(mesh
        .lab
        .exec(&server_ns, &["nft", "list", "table", "inet", "quicmesh"])
        .is_ok());

    // An app in the server pod and one in the client pod, both listening.
    let client_w = mesh.worker(&mesh.lab.pod("client").netns).unwrap();
    let server_w = mesh.worker(&server_ns).unwrap();
    app(&client_w, 7004, |s| say(s, b"hi")).await.unwrap();
    mesh.lab
        .add_link_counter(2, "plain", "tcp dport 7004")
        .unwrap();
    let to_client = SocketAddr::new(mesh.pod_ip("client").into(), 7004);
    let get = |w: quicmesh_core::netns::NetnsWorker| async move {
        let mut s = connect_from(&w, to_client).await.unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).await.unwrap();
        v
    };
    assert_eq!(get(server_w.clone()).await, b"hi");
    assert_eq!(
        mesh.lab.link_counter(2, "plain").unwrap().0,
        0,
        "captured traffic must not cross as plain TCP"
    );

    mesh.unenroll("server").await.unwrap();
    assert!(
        !listening("-t").contains(":15001"),
        "15001 still open: {}",
        listening("-t")
    );
    assert!(!listening("-t").contains(":15006"));
    let udp_closed = eventually(Duration::from_secs(5), || async {
        !listening("-u").contains(":15008")
    })
    .await;
    assert!(udp_closed, "udp/15008 still open: {}", listening("-u"));
    assert!(
        mesh.lab
            .exec(&server_ns, &["nft", "list", "table", "inet", "quicmesh"])
            .is_err(),
        "rules still present"
    );

    // Now the server pod's connection leaves as plain TCP (it is received by
    // the client pod's plaintext inbound port, in permissive mode).
    assert_eq!(get(server_w).await, b"hi");
    assert!(
        mesh.lab.link_counter(2, "plain").unwrap().0 > 0,
        "uncaptured traffic should cross as plain TCP"
    );
    assert!(
        mesh.metric(2, "quicmesh_ztunnel_enrolled_pods", &[])
            .await
            .unwrap()
            == 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_ztunnel_resyncs_from_a_snapshot() {
    require_root();
    let mut mesh = Mesh::start(two_node_spec()).await.unwrap();
    let server_w = mesh.worker(&mesh.lab.pod("server").netns).unwrap();
    let client_w = mesh.worker(&mesh.lab.pod("client").netns).unwrap();
    app(&server_w, 7005, |s| say(s, b"ok")).await.unwrap();
    let addr = SocketAddr::new(mesh.pod_ip("server").into(), 7005);
    let fetch = |w: quicmesh_core::netns::NetnsWorker| async move {
        let mut s = connect_from(&w, addr).await?;
        let mut v = Vec::new();
        s.read_to_end(&mut v).await?;
        anyhow::Ok(v)
    };
    assert_eq!(fetch(client_w.clone()).await.unwrap(), b"ok");
    mesh.restart_ztunnel(2).await.unwrap();
    mesh.restart_ztunnel(1).await.unwrap();
    assert_eq!(
        mesh.metric(2, "quicmesh_ztunnel_enrolled_pods", &[])
            .await
            .unwrap(),
        1.0
    );
    assert_eq!(fetch(client_w).await.unwrap(), b"ok");
    // The admin dump shows the re-synced pod (it refreshes twice a second).
    let dumped = eventually(Duration::from_secs(3), || async {
        let dump = mesh.ztunnel_http(2, 15000, "/config_dump").await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
        v["enrolledPods"][0]["name"] == "server"
    })
    .await;
    assert!(
        dumped,
        "{}",
        mesh.ztunnel_http(2, 15000, "/config_dump").await.unwrap()
    );
}
