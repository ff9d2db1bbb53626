//! Helpers for quicmesh's end-to-end tests: acting as an application inside a
//! pod (sockets created in the pod's network namespace are captured by the
//! pod's rules exactly like a real app's), and root checks; [`flood`], a
//! half-open QUIC handshake flood for the tunnel server's limits.

pub mod cli;
pub mod flood;
pub mod grafana;
pub mod kube_api;
pub mod waypoint;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use quicmesh_core::netns::NetnsWorker;
use tokio::net::{TcpListener, TcpStream};

/// Fails the test with a clear message when not root: the lab needs network
/// namespaces and nftables. Never skips silently.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "end-to-end tests build network namespaces and must run as root (try: sudo -E cargo test)"
    );
}

/// Connects from inside a pod, as its app would.
pub async fn connect_from(worker: &NetnsWorker, addr: SocketAddr) -> Result<TcpStream> {
    let std = worker
        .run(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)))
        .await?
        .with_context(|| format!("connecting to {addr}"))?;
    std.set_nonblocking(true)?;
    Ok(TcpStream::from_std(std)?)
}

/// Listens inside a pod, as its app would.
pub async fn listen_in(worker: &NetnsWorker, addr: SocketAddr) -> Result<TcpListener> {
    let std = worker
        .run(move || std::net::TcpListener::bind(addr))
        .await?
        .with_context(|| format!("listening on {addr}"))?;
    std.set_nonblocking(true)?;
    Ok(TcpListener::from_std(std)?)
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The topology most tests use: a client and a neighbour on node 1, a server
/// on node 2, a pod outside the mesh on node 2, and one external host.
pub fn two_node_spec() -> quicmesh_lab::MeshSpec {
    use quicmesh_lab::MeshPod;
    quicmesh_lab::MeshSpec {
        nodes: 2,
        pods: vec![
            MeshPod::new("client", 1, "demo", "client"),
            MeshPod::new("server", 2, "demo", "server"),
            MeshPod::new("stranger", 2, "other", "stranger").outside(),
        ],
        externals: 1,
    }
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Runs `curl` inside a pod (a real client, captured like any app).
pub fn curl(mesh: &quicmesh_lab::Mesh, pod: &str, url: &str) -> std::process::Output {
    mesh.lab
        .exec_timeout(
            &mesh.lab.pod(pod).netns,
            &["curl", "-sS", "--max-time", "10", url],
            Duration::from_secs(15),
        )
        .expect("curl ran")
}

/// Waits until `node`'s ztunnel counted a closed tunnel stream in
/// `direction` between the two identities.
pub async fn stream_counted(
    mesh: &quicmesh_lab::Mesh,
    node: usize,
    direction: &str,
    src: &str,
    dst: &str,
) -> bool {
    let labels = [
        ("direction", direction),
        ("src_principal", src),
        ("dst_principal", dst),
    ];
    eventually(Duration::from_secs(5), || async {
        mesh.metric(node, "quicmesh_tunnel_streams_closed_total", &labels)
            .await
            .unwrap_or(0.0)
            >= 1.0
    })
    .await
}

/// An app inside a pod: accepts connections on `port` and runs `serve` on
/// each, in its own task, until the test ends.
pub async fn app<F, Fut>(worker: &NetnsWorker, port: u16, serve: F) -> Result<()>
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = listen_in(worker, SocketAddr::from(([0, 0, 0, 0], port))).await?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    Ok(())
}

/// What a node's ztunnel holds: open file descriptors and runtime tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Footprint {
    pub fds: usize,
    pub tasks: f64,
}

/// Both nodes' ztunnel footprints (nodes 1 and 2).
pub async fn footprints(mesh: &quicmesh_lab::Mesh) -> [Footprint; 2] {
    let mut out = [Footprint { fds: 0, tasks: 0.0 }; 2];
    for (i, f) in out.iter_mut().enumerate() {
        f.fds = open_fds(mesh.ztunnel_pid(i + 1));
        f.tasks = mesh
            .metric(i + 1, "quicmesh_ztunnel_runtime_alive_tasks", &[])
            .await
            .unwrap_or(f64::MAX);
    }
    out
}

/// Waits up to `timeout` until neither ztunnel holds more than in `base`;
/// the footprints then and at the deadline otherwise.
pub async fn back_to_baseline(
    mesh: &quicmesh_lab::Mesh,
    base: [Footprint; 2],
    timeout: Duration,
) -> std::result::Result<(), String> {
    let ok = eventually(timeout, || async {
        footprints(mesh)
            .await
            .iter()
            .zip(&base)
            .all(|(now, b)| now.fds <= b.fds && now.tasks <= b.tasks)
    })
    .await;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "ztunnels did not return to baseline: now {:?}, base {base:?}",
            footprints(mesh).await
        ))
    }
}
