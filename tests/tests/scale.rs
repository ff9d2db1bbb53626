//! Many connections at once through both ztunnels, every byte checked, and
//! nothing left behind: ztunnel's open file descriptors and runtime tasks
//! return to their baseline once the connections close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quicmesh_e2e::{back_to_baseline, connect_from, eventually, footprints, require_root};
use quicmesh_lab::{Mesh, MeshPod, MeshSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Ten thousand connections from one client pod, split over two server
/// pods (each pod pair's streams stay under one QUIC connection's stream
/// limit of 4096 times the pool's two connections).
const N: usize = 10_000;

/// Raises this process's soft open-file limit to its hard one (inherited
/// by the ztunnels the lab starts) and checks it covers `need`.
fn raise_nofile(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a live rlimit.
    let rc = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim)
    };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
    assert!(
        lim.rlim_max >= need,
        "this test needs {need} open files per process; the hard limit is {}",
        lim.rlim_max
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_connections_close_without_a_leak() {
    require_root();
    // The test holds the client ends; each ztunnel holds one socket per
    // connection; the echo servers are processes of their own.
    raise_nofile(N as u64 + 2_000);
    let mesh = Mesh::start(MeshSpec {
        nodes: 2,
        pods: vec![
            MeshPod::new("client", 1, "demo", "client"),
            MeshPod::new("server-a", 2, "demo", "server"),
            MeshPod::new("server-b", 2, "demo", "server"),
        ],
        externals: 0,
    })
    .await
    .unwrap();
    let client_w = mesh.worker(&mesh.lab.pod("client").netns).unwrap();
    let mut servers = Vec::new();
    let echo = concat!(env!("CARGO_MANIFEST_DIR"), "/python/echo.py");
    for pod in ["server-a", "server-b"] {
        let netns = &mesh.lab.pod(pod).netns;
        mesh.lab
            .spawn(netns, "python3", &[echo, "--port", "7001"], &[], None)
            .unwrap();
        let addr = SocketAddr::new(mesh.pod_ip(pod).into(), 7001);
        let w = mesh.worker(netns).unwrap();
        let up = eventually(Duration::from_secs(10), || async {
            connect_from(&w, addr).await.is_ok()
        })
        .await;
        assert!(up, "the echo server in {pod} did not start");
        servers.push(addr);
    }

    // Warm up: each pod pair's two pooled QUIC connections exist in the
    // baseline (two streams at once open the second).
    for &addr in &servers {
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = connect_from(&client_w, addr).await.unwrap();
            s.write_all(b"warm").await.unwrap();
            let mut v = [0u8; 4];
            s.read_exact(&mut v).await.unwrap();
            held.push(s);
        }
    }
    // The warm-up connections' tasks end shortly after they close.
    let settled = eventually(Duration::from_secs(10), || async {
        mesh.metric(1, "quicmesh_tunnel_streams_active", &[])
            .await
            .unwrap()
            == 0.0
            && mesh
                .metric(2, "quicmesh_tunnel_streams_active", &[])
                .await
                .unwrap()
                == 0.0
    })
    .await;
    assert!(settled, "warm-up streams still open");
    let base = footprints(&mesh).await;

    // Open all N first, so they are simultaneous.
    let started = Instant::now();
    let mut conns = Vec::with_capacity(N);
    for i in 0..N {
        conns.push(connect_from(&client_w, servers[i % 2]).await.unwrap());
    }
    let opened = started.elapsed();
    // Both ztunnels hold all of them at once: a stream each.
    let all_held = eventually(Duration::from_secs(60), || async {
        let (a, b) = (
            mesh.metric(1, "quicmesh_tunnel_streams_active", &[])
                .await
                .unwrap(),
            mesh.metric(2, "quicmesh_tunnel_streams_active", &[])
                .await
                .unwrap(),
        );
        a >= N as f64 && b >= N as f64
    })
    .await;
    assert!(
        all_held,
        "expected {N} active streams on both nodes, got {} / {}",
        mesh.metric(1, "quicmesh_tunnel_streams_active", &[])
            .await
            .unwrap(),
        mesh.metric(2, "quicmesh_tunnel_streams_active", &[])
            .await
            .unwrap()
    );
    let held = started.elapsed();
    let peak = footprints(&mesh).await;

    let mut handles = Vec::with_capacity(N);
    for (i, mut s) in conns.into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let msg = format!("connection {i} says hello");
            s.write_all(msg.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.unwrap();
            back == msg.as_bytes()
        }));
    }
    let mut intact = 0;
    for h in handles {
        intact += usize::from(h.await.unwrap());
    }
    assert_eq!(intact, N, "connections whose echo came back intact");
    let exchanged = started.elapsed();

    back_to_baseline(&mesh, base, Duration::from_secs(60))
        .await
        .unwrap();
    println!(
        "{N} connections: opened in {opened:?}, all held after {held:?} (fds at peak {} / {}, base {} / {}), \
         echoed after {exchanged:?}, baseline again after {:?}",
        peak[0].fds,
        peak[1].fds,
        base[0].fds,
        base[1].fds,
        started.elapsed()
    );
}
