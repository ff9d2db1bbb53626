use clap::Parser;

fn main() -> anyhow::Result<()> {
    quicmesh_core::telemetry::init_logging();
    let args = waypoint::app::Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(waypoint::app::run(args))
}
