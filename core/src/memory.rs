//! Giving freed heap memory back to the kernel after a burst.
//!
//! glibc's malloc keeps the pages it frees for reuse: after a burst that
//! allocated a few megabytes (a handshake flood, say) and freed them all,
//! the process stays at its peak RSS for good (docs/performance.md,
//! "Handshake flood"). `malloc_trim(0)` hands free pages of every arena
//! back (`madvise(MADV_DONTNEED)`); live allocations are untouched, so it
//! is always safe, and cheap for a heap of a proxy's size. Callers run it
//! when a burst has ended, never on a hot path.

/// Returns free heap pages to the kernel; `true` if any were. A no-op
/// (`false`) where the C library has no `malloc_trim`. With another global
/// allocator (the `jemalloc`/`mimalloc` features of ztunnel) only the C
/// library's own small heap is trimmed; those allocators purge by
/// themselves.
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only releases memory no
        // allocation uses; it is thread-safe (it locks each arena).
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_blocks_go_back_to_the_kernel() {
        // 40 MB in blocks of 4 KiB (below the mmap threshold, so on the
        // heap), written so their pages are resident; then nine in ten are
        // freed. Every tenth stays, so the holes cannot merge into the top
        // of the heap (which free() gives back by itself): glibc keeps their
        // pages until trimmed. The margin absorbs what tests running beside
        // this one allocate meanwhile.
        let mut blocks: Vec<Vec<u8>> = (0..10_000).map(|i| vec![i as u8 | 1; 4096]).collect();
        let with = resident_kib();
        let mut i = 0;
        blocks.retain(|_| {
            i += 1;
            i % 10 == 0
        });
        assert!(super::release_free_heap(), "nothing was released");
        let without = resident_kib();
        assert!(
            without + 20_000 <= with,
            "RSS {with} KiB with the blocks, {without} KiB after freeing nine in ten and trimming"
        );
        assert_eq!(blocks.len(), 1_000);
    }

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
