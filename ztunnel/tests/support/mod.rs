//! What the ztunnel binary's tests share.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A GET over HTTP/1.1 to a ztunnel's metrics port: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: ztunnel\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.ok()?;
    let status = resp.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = resp.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

/// `N` free loopback ports (held together while chosen, so they differ).
pub fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap())
}

/// Starts `ztunnel` (the binary, with the arguments it was given) serving
/// metrics on `metrics` and admin on `admin`, its output in `log`; killed
/// when the child is dropped.
pub fn spawn(
    ztunnel: &mut tokio::process::Command,
    metrics: SocketAddr,
    admin: SocketAddr,
    log: &std::path::Path,
) -> tokio::process::Child {
    let out = std::fs::File::create(log).unwrap();
    ztunnel
        .args(["--metrics-addr", &metrics.to_string()])
        .args(["--admin-addr", &admin.to_string()])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}
