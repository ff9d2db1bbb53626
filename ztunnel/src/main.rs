use clap::Parser;

// Optional allocators (cargo features; docs/performance.md has the
// measurements). With both features, jemalloc wins.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    quicmesh_core::install_crypto_provider();
    let args = ztunnel::config::Args::parse();
    // Two worker threads match the machines quicmesh is measured on; more
    // threads than cores only adds contention on the UDP sockets. 0: a
    // single-threaded runtime (no cross-thread wake-ups).
    let threads = quicmesh_core::runtime::worker_threads("ZTUNNEL_WORKER_THREADS", 2);
    let rt = quicmesh_core::runtime::build(threads)?;
    rt.block_on(async {
        let telemetry = quicmesh_core::telemetry::init("ztunnel", &args.trace)?;
        raise_fd_limit();
        let r = ztunnel::app::run(args).await;
        telemetry.shutdown().await;
        r
    })
}

/// Every tunnelled connection holds a socket (two on the destination node):
/// a node proxy needs far more descriptors than the common soft limit of
/// 1024. Raise the soft limit to the hard one, which the operator sets.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let from = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            tracing::debug!(from, to = lim.rlim_max, "raised the open-file limit");
        } else {
            tracing::warn!(
                soft = from,
                hard = lim.rlim_max,
                "could not raise the open-file limit"
            );
        }
    }
}
