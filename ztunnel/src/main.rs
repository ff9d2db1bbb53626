use clap::Parser;

fn main() -> anyhow::Result<()> {
    quicmesh_core::telemetry::init_logging();
    let args = ztunnel::config::Args::parse();
    // Two worker threads match the machines quicmesh is measured on; more
    // threads than cores only adds contention on the UDP sockets. 0: a
    // single-threaded runtime (no cross-thread wake-ups).
    let threads = std::env::var("ZTUNNEL_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let rt = match threads {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
    };
    rt.block_on(ztunnel::app::run(args))
}
