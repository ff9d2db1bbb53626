use clap::Parser;

fn main() -> anyhow::Result<()> {
    quicmesh_core::install_crypto_provider();
    let args = waypoint::app::Args::parse();
    // One thread by default: at the request rates one waypoint replica
    // serves, cross-thread wake-ups cost more than a second core gives
    // (docs/performance.md); scale out with replicas, or set more.
    let threads = quicmesh_core::runtime::worker_threads("WAYPOINT_WORKER_THREADS", 0);
    quicmesh_core::runtime::build(threads)?.block_on(async {
        let telemetry = quicmesh_core::telemetry::init("waypoint", &args.trace)?;
        let r = waypoint::app::run(args).await;
        telemetry.shutdown().await;
        r
    })
}
