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
    Agent(Box<quicmesh_cni::agent::Args>),
    /// Takes the plugin out of the node's CNI config (every config file of
    /// the directory) and, given its directory, removes the plugin binary:
    /// what to run on a node the agent could not clean up when quicmesh
    /// was uninstalled (it was down, or the API did not answer).
    Uninstall {
        #[arg(long, default_value = "/etc/cni/net.d")]
        cni_conf_dir: std::path::PathBuf,
        #[arg(long)]
        cni_bin_dir: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    quicmesh_core::install_crypto_provider();
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
    let args = match Cli::parse().cmd {
        Cmd::Agent(args) => *args,
        Cmd::Uninstall {
            cni_conf_dir,
            cni_bin_dir,
        } => return uninstall(&cni_conf_dir, cni_bin_dir.as_deref()),
    };
    quicmesh_core::telemetry::init_logging();
    let threads = quicmesh_core::runtime::worker_threads("QUICMESH_CNI_WORKER_THREADS", 1);
    quicmesh_core::runtime::build(threads)?.block_on(quicmesh_cni::agent::run(args))
}

fn uninstall(conf: &std::path::Path, bin: Option<&std::path::Path>) -> anyhow::Result<()> {
    match quicmesh_cni::install::unchain(conf, quicmesh_cni::install::PLUGIN_TYPE)? {
        Some(path) => println!("unchained from {}", path.display()),
        None => println!("not chained in {}", conf.display()),
    }
    if let Some(bin) = bin {
        let plugin = bin.join(quicmesh_cni::install::PLUGIN_TYPE);
        match std::fs::remove_file(&plugin) {
            Ok(()) => println!("removed {}", plugin.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("removing {}: {e}", plugin.display())),
        }
    }
    Ok(())
}
