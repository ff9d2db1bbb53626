//! The ceiling row's measurement over real QUIC and TLS, in this process's
//! own network namespace on loopback (root: the namespace workers enter it
//! with setns). Checks what arrived, never how fast.

use std::net::Ipv4Addr;
use std::path::Path;

use quicmesh_core::netns::NetnsWorker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ceiling_carries_every_stream_to_its_end() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "setns needs root");
    let here = Path::new("/proc/self/ns/net");
    let (client, server) = (
        NetnsWorker::start(here).unwrap(),
        NetnsWorker::start(here).unwrap(),
    );
    for streams in [1, 3] {
        let c = quicmesh_bench::ceiling::run(&client, &server, Ipv4Addr::LOCALHOST, streams, 0.3)
            .await
            .unwrap();
        assert_eq!(c.streams, streams);
        // Every stream's writes arrived (each writes 64 KiB at least), over
        // a span of time.
        assert!(c.bytes >= streams as u64 * (64 << 10), "{c:?}");
        assert!(c.seconds > 0.0 && c.gbit_s > 0.0, "{c:?}");
        assert!(c.sent_packets as f64 >= c.bytes as f64 / 1452.0, "{c:?}");
    }
}
