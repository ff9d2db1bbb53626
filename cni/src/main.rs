//! `quicmesh-cni`: with `CNI_COMMAND` in the environment, the CNI plugin
//! (one command, then exit); `quicmesh-cni agent [flags]`, the node agent.

use clap::Parser;

#[derive(Debug, clap::Parser)]
#[command(
    name = "quicmesh-cni",
    version,
    about = "quicmesh's CNI plugin (when run by a container runtime, with CNI_COMMAND set) and its node agent"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// The node agent: serves the plugin, enrolls the node's pods in
    /// ztunnel.
    Agent(quicmesh_cni::agent::Args),
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("CNI_COMMAND").is_some() {
        let stdin = quicmesh_cni::plugin::read_stdin(std::io::stdin().lock());
        let out = quicmesh_cni::plugin::run(|k| std::env::var(k).ok(), stdin);
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.stdout.as_bytes());
        let _ = stdout.flush();
        if let Some(e) = &out.error {
            // The runtime logs a plugin's stderr: one line there too.
            let cmd = std::env::var("CNI_COMMAND").unwrap_or_default();
            eprintln!("quicmesh-cni {cmd}: {e}");
        }
        std::process::exit(out.exit);
    }
    let Cmd::Agent(args) = Cli::parse().cmd;
    quicmesh_core::telemetry::init_logging();
    let threads = quicmesh_core::runtime::worker_threads("QUICMESH_CNI_WORKER_THREADS", 1);
    quicmesh_core::runtime::build(threads)?.block_on(quicmesh_cni::agent::run(args))
}
