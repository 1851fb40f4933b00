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
//!
//! Each class can also be kept to a set of CPUs (`AUDITLOG_INGEST_CPUS`,
//! `AUDITLOG_BACKGROUND_CPUS`, docs/operations.md): a deployment that can
//! spare a core gives the ingest path one that background work never
//! takes (docs/benchmarks.md, "Round fourteen": what that does to the
//! append-to-durable p99).

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

/// The most CPUs a CPU list may name: the size of glibc's `cpu_set_t`.
const MAX_CPUS: usize = 1024;

/// Parse a CPU list as the kernel writes one (`0`, `0,2`, `1-3,6`): the
/// CPUs it names, ascending, or why it is not one.
pub(crate) fn parse_cpu_list(text: &str) -> std::result::Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let num = |x: &str| {
            x.parse::<usize>()
                .ok()
                .filter(|&n| n < MAX_CPUS)
                .ok_or_else(|| {
                    format!("{part:?} is not a CPU number below {MAX_CPUS} or a range of them")
                })
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(format!("range {part:?} runs backwards"));
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Keep the calling thread to the CPUs the environment variable `var`
/// lists, if it is set. Best effort like the rest of this module: a list
/// that does not parse, or that the kernel refuses (no such CPU, outside
/// the process's cgroup), leaves the thread where it was, with a warning.
fn pin_from_env(var: &str) {
    let Ok(text) = std::env::var(var) else {
        return;
    };
    let pinned = parse_cpu_list(&text).and_then(|cpus| pin_current_thread(&cpus));
    if let Err(why) = pinned {
        tracing::warn!("{var}={text:?} ignored: {why}");
    }
}

/// Keep the calling thread to the CPUs `AUDITLOG_BACKGROUND_CPUS` lists,
/// if set (the full-text indexer, which keeps its own nice value).
pub(crate) fn background_cpus() {
    pin_from_env("AUDITLOG_BACKGROUND_CPUS");
}

/// Keep the calling thread (and the threads it starts later) to `cpus`,
/// each below 1024 (`cpu_set_t`'s size); why not, where the kernel
/// refuses or the platform has no affinity.
pub fn pin_current_thread(cpus: &[usize]) -> std::result::Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in cpus {
            if c >= MAX_CPUS {
                return Err(format!("CPU {c} is past the {MAX_CPUS} a CPU set holds"));
            }
            // SAFETY: CPU_SET writes one bit of `set`; `c` is within it.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t
        // of the size passed, only read during the call.
        let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if r != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpus;
        Err("CPU affinity is only set on Linux".into())
    }
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
/// when asked (`AUDITLOG_SCHED=idle`), on the CPUs `AUDITLOG_BACKGROUND_CPUS`
/// lists if set. Threads it creates inherit all of it.
pub(crate) fn background_thread(nice: i32) {
    background_cpus();
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
/// syncer): keeps its policy (`SCHED_OTHER`) and its nice value; on the
/// CPUs `AUDITLOG_INGEST_CPUS` lists if set.
pub(crate) fn ingest_thread() {
    pin_from_env("AUDITLOG_INGEST_CPUS");
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

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0"), Ok(vec![0]));
        assert_eq!(parse_cpu_list("3,1-2, 1"), Ok(vec![1, 2, 3]));
        for bad in ["", "a", "2-1", "1-", "-1", "1024", "0,,1"] {
            let e = parse_cpu_list(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad:?}");
        }
    }

    /// The CPUs the calling thread may run on, from the kernel.
    fn allowed_cpus() -> Vec<usize> {
        let text = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap();
        parse_cpu_list(line.trim()).unwrap()
    }

    #[test]
    fn a_thread_is_kept_to_the_cpus_listed_and_a_refused_list_changes_nothing() {
        std::thread::spawn(|| {
            let before = allowed_cpus();
            let one = before[before.len() - 1];
            pin_current_thread(&[one]).unwrap();
            assert_eq!(allowed_cpus(), vec![one]);
            // A CPU this machine does not have: refused, nothing changes.
            assert!(pin_current_thread(&[MAX_CPUS - 1]).is_err());
            assert_eq!(allowed_cpus(), vec![one]);
        })
        .join()
        .unwrap();
    }

    /// Run in a child process by the test below, with both variables set:
    /// open a log and report, per engine thread, the CPUs it may use.
    #[test]
    #[ignore = "run by threads_of_a_log_go_to_the_cpus_the_environment_lists"]
    fn child_reports_thread_cpus() {
        let dir = tempfile::tempdir().unwrap();
        let log = crate::Log::open(crate::Config::new(dir.path())).unwrap();
        let ev = crate::event::json::parse_event(
            br#"{"kind":"run_started","run_id":"r","ts":1,"skill":"s","caller":"c"}"#,
        )
        .unwrap();
        log.append(&ev).unwrap().wait().unwrap();
        for t in std::fs::read_dir("/proc/self/task").unwrap() {
            let t = t.unwrap().path();
            let comm = std::fs::read_to_string(t.join("comm")).unwrap();
            let status = std::fs::read_to_string(t.join("status")).unwrap();
            let cpus = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap();
            println!("THREAD {} {}", comm.trim(), cpus.trim());
        }
        log.close().unwrap();
    }

    #[test]
    fn threads_of_a_log_go_to_the_cpus_the_environment_lists() {
        let cpus = allowed_cpus();
        if cpus.len() < 2 {
            return; // Nothing to tell apart on one CPU.
        }
        let (ingest, background) = (cpus[cpus.len() - 1], cpus[0]);
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "priority::tests::child_reports_thread_cpus"])
            .args(["--ignored", "--nocapture", "--test-threads", "1"])
            .env("AUDITLOG_INGEST_CPUS", ingest.to_string())
            .env("AUDITLOG_BACKGROUND_CPUS", background.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        let cpus_of = |name: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix("THREAD "))
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .map(|c| parse_cpu_list(c).unwrap())
        };
        assert_eq!(cpus_of("auditlog-writer"), Some(vec![ingest]), "{text}");
        assert_eq!(cpus_of("auditlog-sync"), Some(vec![ingest]), "{text}");
        assert_eq!(cpus_of("auditlog-tree"), Some(vec![background]), "{text}");
    }

    fn unsafe_nice() -> i32 {
        // SAFETY: libc's wrapper; the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }
}
