//! CPU scheduling of the engine's threads (docs/benchmarks.md, "Where the
//! append-to-durable milliseconds went").
//!
//! Two classes, both best effort (a failure leaves the thread as it was;
//! only Linux has them, elsewhere these are no-ops):
//! - the ingest path (writer, syncer) asks for a short scheduler slice, so
//!   that when it wakes (an event queued, an fdatasync done) it runs at once
//!   instead of waiting behind the rest of a busy thread's slice;
//! - background work (the index builder) runs at nice 10 by default, or at
//!   `SCHED_IDLE` when asked (`AUDITLOG_SCHED=idle`): then it only takes
//!   CPU that nothing else wants, but on a saturated machine it can starve,
//!   and a query waiting for an image it is building waits with it, so
//!   idle is not the default. The full-text indexer keeps nice 19
//!   (src/fulltext/indexer.rs says why).

/// Slice asked for by the ingest path's threads, nanoseconds. The kernel
/// clamps it to its range (0.1-100 ms on Linux 6.12+, whose EEVDF
/// scheduler lets a waking thread with a shorter slice preempt the one
/// running); older kernels ignore it.
const INGEST_SLICE_NS: u64 = 100_000;

/// `struct sched_attr` (linux/sched/types.h, the 56-byte version 1;
/// libc has the call's number but not the struct).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

/// `AUDITLOG_SCHED=noslice` leaves the ingest threads' slice alone;
/// `AUDITLOG_SCHED=idle` puts the index builder at `SCHED_IDLE`
/// (docs/operations.md); to measure what each one does.
fn sched_option(what: &str) -> bool {
    std::env::var("AUDITLOG_SCHED")
        .map(|v| v.split(',').any(|x| x == what))
        .unwrap_or(false)
}

/// Set the calling thread's nice value (Linux applies nice per thread).
pub(crate) fn set_thread_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: libc's wrapper of a plain syscall; PRIO_PROCESS with
        // who 0 is the calling thread (Linux applies nice per thread).
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Make the calling thread background work: nice `nice`, or `SCHED_IDLE`
/// when asked (`AUDITLOG_SCHED=idle`). Threads it creates inherit it.
pub(crate) fn background_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    if sched_option("idle") {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: libc's wrapper; pid 0 is the calling thread, and `param`
        // is a valid `struct sched_param` that outlives the call.
        let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if r == 0 {
            return;
        }
    }
    set_thread_nice(nice);
}

/// Ask a short scheduler slice for the calling thread (the writer, the
/// syncer): keeps its policy (`SCHED_OTHER`) and its nice value.
pub(crate) fn ingest_thread() {
    #[cfg(target_os = "linux")]
    {
        if sched_option("noslice") {
            return;
        }
        // SAFETY: libc's wrapper; PRIO_PROCESS with who 0 is the calling
        // thread. -1 is also a valid nice value, so errno is not
        // consulted: at worst the nice value asked for is the one it has.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            sched_nice: nice,
            sched_runtime: INGEST_SLICE_NS,
            ..SchedAttr::default()
        };
        // SAFETY: sched_setattr(pid 0 = the calling thread, a valid,
        // initialised `struct sched_attr` whose `size` field is its size,
        // flags 0); the kernel only reads it during the call.
        let _ = unsafe {
            libc::syscall(
                libc::SYS_sched_setattr,
                0 as libc::pid_t,
                &attr as *const SchedAttr,
                0 as libc::c_uint,
            )
        };
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The policy and slice the calling thread has, read back from the
    /// kernel (`/proc/thread-self/sched` lists `policy` and `se.slice`).
    fn sched_field(name: &str) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))?
            .split(':')
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }

    #[test]
    fn background_threads_run_at_their_nice_value_unless_idle_is_asked() {
        if std::env::var_os("AUDITLOG_SCHED").is_some() {
            return; // The operator's choice is not the default under test.
        }
        std::thread::spawn(|| {
            background_thread(19);
            assert_eq!(unsafe_nice(), 19);
            if let Some(p) = sched_field("policy") {
                assert_eq!(p, 0, "SCHED_OTHER, not SCHED_IDLE (5)");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn ingest_threads_keep_their_policy_and_nice() {
        std::thread::spawn(|| {
            set_thread_nice(3);
            ingest_thread();
            assert_eq!(unsafe_nice(), 3);
            if let Some(p) = sched_field("policy") {
                assert_eq!(p, 0);
            }
        })
        .join()
        .unwrap();
    }

    fn unsafe_nice() -> i32 {
        // SAFETY: libc's wrapper; the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }
}
