//! CPU scheduling of the command line's own threads.

/// Nice value of `auditlog ingest`'s reader and parse workers while the
/// log's index builder runs beside them: five above the builder's nice 10
/// (docs/operations.md, "Thread scheduling"), so that on a busy machine
/// the builder indexes each segment as it seals and the parse takes the
/// CPU it leaves.
///
/// Why: the command waits for every index before it returns. With the
/// parse at nice 0 the builder (nice 10) got almost no CPU while the
/// input was parsed, and the ~30 images of a 2M-event ingest were built
/// after it, one core finishing them in log order: half the command's
/// wall time (docs/benchmarks.md, "Ingest, cli42 round").
pub const PARSE_NICE: i32 = 15;

/// Lower the calling thread's priority to nice `nice` (never raise it: a
/// thread already nicer stays as it is). Linux only, where nice values
/// are per thread; elsewhere nothing. Best effort: a refusal leaves the
/// thread as it was.
pub fn lower_this_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority and setpriority are plain syscalls reading
        // no memory of ours; PRIO_PROCESS with who 0 is the calling thread
        // (Linux applies nice per thread). getpriority may return -1 as a
        // value: then the thread is not nicer than `nice` and is lowered.
        unsafe {
            if libc::getpriority(libc::PRIO_PROCESS, 0) < nice {
                let _ = libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    fn nice_of_this_thread() -> i32 {
        // SAFETY: as in `lower_this_thread`.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_is_lowered_and_never_raised() {
        let here = nice_of_this_thread();
        std::thread::spawn(|| {
            let start = nice_of_this_thread();
            let want = PARSE_NICE.max(start);
            lower_this_thread(PARSE_NICE);
            assert_eq!(nice_of_this_thread(), want);
            // Asking for less niceness afterwards changes nothing.
            lower_this_thread(0);
            assert_eq!(nice_of_this_thread(), want);
        })
        .join()
        .unwrap();
        // Other threads keep theirs (a new one inherits this thread's).
        assert_eq!(nice_of_this_thread(), here);
        std::thread::spawn(move || assert_eq!(nice_of_this_thread(), here))
            .join()
            .unwrap();
    }
}
