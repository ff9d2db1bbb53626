//! The tokio runtime a proxy binary runs on, sized by an environment
//! variable (`ZTUNNEL_WORKER_THREADS`, `WAYPOINT_WORKER_THREADS`).
//!
//! `0` is a single-threaded runtime: every task, the QUIC endpoint drivers
//! and the connections' tasks on one thread, so a packet's arrival, the
//! request it completes and the answer sent back never wake another
//! thread (no futex, no cross-core hand-off). `n > 0` is a multi-threaded
//! runtime with `n` workers, which spreads load over cores at the price of
//! those hand-offs.

/// How many worker threads `var` asks for (`default` when unset or not a
/// number; a value that is not a number is reported).
pub fn worker_threads(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("{var}={v:?} is not a number of threads; using {default}");
            default
        }),
        Err(_) => default,
    }
}

/// A runtime with `threads` workers (`0`: single-threaded), timers and I/O
/// enabled.
pub fn build(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_is_a_current_thread_runtime_and_n_is_n_workers() {
        let rt = build(0).unwrap();
        assert_eq!(
            rt.handle().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        );
        let rt = build(3).unwrap();
        assert_eq!(
            rt.handle().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::MultiThread
        );
        assert_eq!(rt.metrics().num_workers(), 3);
    }

    #[test]
    fn the_variable_is_read_and_garbage_falls_back_to_the_default() {
        assert_eq!(worker_threads("QUICMESH_TEST_UNSET_THREADS", 2), 2);
        std::env::set_var("QUICMESH_TEST_THREADS_GARBAGE", "many");
        assert_eq!(worker_threads("QUICMESH_TEST_THREADS_GARBAGE", 2), 2);
        std::env::set_var("QUICMESH_TEST_THREADS_ZERO", " 0 ");
        assert_eq!(worker_threads("QUICMESH_TEST_THREADS_ZERO", 2), 0);
    }
}
