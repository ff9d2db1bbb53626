//! The ceiling row: the tunnel's QUIC alone between two pods' network
//! namespaces. quinn with exactly the tunnel's TLS and transport settings
//! (`core::tunnel::config`: windows, GSO, UDP buffers, SPIFFE mutual TLS)
//! carries bulk streams from the client pod to the server pod, with no
//! ztunnel in between: no capture, no HTTP/3 framing, no TCP socket at
//! either end. Each side runs on a runtime of its own with two workers, as
//! each ztunnel does. What separates this from iperf3 through the mesh is
//! quicmesh's own work; what separates it from direct TCP is QUIC's.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use quicmesh_core::metrics::TunnelMetrics;
use quicmesh_core::netns::NetnsWorker;
use quicmesh_core::tunnel::config::{
    bind_udp, client_config, endpoint, server_config, TunnelSettings,
};
use serde::Serialize;

/// The UDP port the ceiling's server binds in the server pod.
const PORT: u16 = 15099;
/// Bytes per write: what the tunnel hands quinn per TCP read at most.
const CHUNK: usize = 64 << 10;

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub streams: usize,
    pub bytes: u64,
    /// From the first byte received to the last.
    pub seconds: f64,
    pub gbit_s: f64,
    /// Packets the sender lost, as quinn counts them.
    pub lost_packets: u64,
    pub sent_packets: u64,
}

/// Sends `streams` bulk streams for `secs` from `client`'s namespace to
/// `server_ip` in `server`'s, and measures what arrived.
pub async fn run(
    client: &NetnsWorker,
    server: &NetnsWorker,
    server_ip: Ipv4Addr,
    streams: usize,
    secs: f64,
) -> Result<Ceiling> {
    let settings = TunnelSettings::default();
    let addr = SocketAddr::from((server_ip, PORT));
    // The sockets are made inside the pods' namespaces; used from anywhere.
    let s = settings.clone();
    let server_sock = server.run(move || bind_udp(addr, &s)).await??;
    let s = settings.clone();
    let client_sock = client
        .run(move || bind_udp(SocketAddr::from(([0, 0, 0, 0], 0)), &s))
        .await??;
    // Runtimes are made and dropped off the async context that awaits this.
    tokio::task::spawn_blocking(move || {
        measure(server_sock, client_sock, addr, settings, streams, secs)
    })
    .await?
}

fn measure(
    server_sock: std::net::UdpSocket,
    client_sock: std::net::UdpSocket,
    addr: SocketAddr,
    settings: TunnelSettings,
    streams: usize,
    secs: f64,
) -> Result<Ceiling> {
    let peers = crate::tls::Peers::new()?;
    let metrics = TunnelMetrics::new();
    let server_cfg = server_config(
        &peers.server,
        peers.bundles.clone(),
        Box::new(|_| true),
        &metrics,
        &settings,
    )?;
    let client_cfg = client_config(
        &peers.client,
        peers.bundles.clone(),
        peers.server_id.clone(),
        &metrics,
        &settings,
    )?;

    let server_rt = quicmesh_core::runtime::build(2)?;
    let client_rt = quicmesh_core::runtime::build(2)?;
    let server_ep = {
        let _in = server_rt.enter();
        endpoint(server_sock, Some(server_cfg), &settings)?
    };
    let received = server_rt.spawn(receive(server_ep.clone(), streams));
    let result = client_rt.block_on(async move {
        let ep = endpoint(client_sock, None, &settings)?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ep.connect_with(client_cfg, addr, "tunnel.quicmesh")?,
        )
        .await
        .context("the ceiling's handshake timed out")??;
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        let mut senders = Vec::new();
        for _ in 0..streams {
            let (mut send, _recv) = conn.open_bi().await?;
            senders.push(tokio::spawn(async move {
                let chunk = Bytes::from(vec![0x5a; CHUNK]);
                // At least one write, however late the stream opened.
                loop {
                    send.write_chunk(chunk.clone()).await?;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                send.finish()?;
                // Until the peer has read it all.
                let _ = send.stopped().await;
                anyhow::Ok(())
            }));
        }
        // Bounded: a receiver that stopped reading would hold the writes.
        let sent = async {
            for s in senders {
                s.await??;
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs_f64(secs + 10.0), sent)
            .await
            .context("the ceiling's senders did not finish")??;
        let (bytes, seconds) = tokio::time::timeout(Duration::from_secs(10), received)
            .await
            .context("the ceiling's receiver did not finish")???;
        let stats = conn.stats();
        conn.close(0u32.into(), b"done");
        ep.wait_idle().await;
        anyhow::Ok(Ceiling {
            streams,
            bytes,
            seconds,
            gbit_s: bytes as f64 * 8.0 / seconds / 1e9,
            lost_packets: stats.path.lost_packets,
            sent_packets: stats.path.sent_packets,
        })
    });
    server_ep.close(0u32.into(), b"done");
    server_rt.shutdown_timeout(Duration::from_secs(1));
    client_rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Accepts one connection and reads `streams` streams to their end:
/// the bytes, and the seconds from the first to the last.
async fn receive(ep: quinn::Endpoint, streams: usize) -> Result<(u64, f64)> {
    let incoming = tokio::time::timeout(Duration::from_secs(10), ep.accept())
        .await
        .context("no ceiling connection arrived")?
        .context("the ceiling's endpoint closed")?;
    let conn = incoming.await?;
    let first = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut readers = Vec::new();
    for _ in 0..streams {
        let (_send, mut recv) = conn.accept_bi().await?;
        let first = first.clone();
        readers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(c) = recv.read_chunk(CHUNK, true).await? {
                first.get_or_init(Instant::now);
                n += c.bytes.len() as u64;
            }
            anyhow::Ok((n, Instant::now()))
        }));
    }
    let (mut bytes, mut last) = (0, None::<Instant>);
    for r in readers {
        let (n, t) = r.await??;
        bytes += n;
        last = Some(last.map_or(t, |l| l.max(t)));
    }
    match (first.get(), last) {
        (Some(f), Some(l)) if l > *f => Ok((bytes, (l - *f).as_secs_f64())),
        _ => bail!("the ceiling's streams carried nothing"),
    }
}
