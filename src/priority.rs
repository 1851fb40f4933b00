//! Background threads (indexers, full-text search) run at a lower priority
//! than the ingest path, so derived data catches up in the time ingest
//! leaves and never delays the writer or the syncer.

/// Set the calling thread's nice value (Linux applies nice per thread; a
/// no-op elsewhere). Best effort: a failure leaves the priority as it was.
pub(crate) fn set_thread_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn setpriority(which: i32, who: u32, prio: i32) -> i32;
        }
        // SAFETY: a plain syscall wrapper from libc (always linked on
        // Linux); PRIO_PROCESS (0) with who 0 is the calling thread.
        let _ = unsafe { setpriority(0, 0, nice) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
