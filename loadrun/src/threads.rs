//! Where a phase's CPU went, per thread: CPU time and time spent runnable
//! but waiting for a core (the scheduler delay), from Linux's
//! `/proc/self/task/*/schedstat`, summed by thread name. Elsewhere (or
//! without procfs) the table is empty.

use std::collections::BTreeMap;

/// Counters of one thread (or of every thread of one name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadTimes {
    /// Nanoseconds on a CPU.
    pub cpu_ns: u64,
    /// Nanoseconds runnable but waiting on a run queue.
    pub wait_ns: u64,
    /// Times it was scheduled onto a CPU.
    pub slices: u64,
}

/// Per-thread counters at one moment, by thread id.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    threads: BTreeMap<u64, (String, ThreadTimes)>,
}

/// One line of `schedstat`: "cpu_ns wait_ns slices".
fn parse_schedstat(text: &str) -> Option<ThreadTimes> {
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some(ThreadTimes {
        cpu_ns: it.next()??,
        wait_ns: it.next()??,
        slices: it.next()??,
    })
}

impl ThreadTimes {
    /// The calling thread's counters so far.
    pub fn current() -> Option<ThreadTimes> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        parse_schedstat(&text)
    }

    /// What was added since `before`.
    pub fn minus(&self, before: &ThreadTimes) -> ThreadTimes {
        ThreadTimes {
            cpu_ns: self.cpu_ns.saturating_sub(before.cpu_ns),
            wait_ns: self.wait_ns.saturating_sub(before.wait_ns),
            slices: self.slices.saturating_sub(before.slices),
        }
    }

    pub fn add(&mut self, other: &ThreadTimes) {
        self.cpu_ns += other.cpu_ns;
        self.wait_ns += other.wait_ns;
        self.slices += other.slices;
    }
}

impl Snapshot {
    /// The counters of every thread of this process now.
    pub fn take() -> Snapshot {
        Snapshot::take_of("self")
    }

    /// The counters of every thread of process `pid` ("self": this one).
    pub fn take_of(pid: &str) -> Snapshot {
        let mut threads = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Snapshot { threads };
        };
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let path = entry.path();
            let stat = std::fs::read_to_string(path.join("schedstat"));
            let Some(times) = stat.ok().as_deref().and_then(parse_schedstat) else {
                continue;
            };
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            threads.insert(tid, (name.trim().to_string(), times));
        }
        Snapshot { threads }
    }

    /// What each thread name used between `before` and `self`: threads
    /// that started in between count from zero; threads that ended in
    /// between are missing (they report their own, see
    /// [`ThreadTimes::current`]).
    pub fn since(&self, before: &Snapshot) -> Vec<(String, ThreadTimes)> {
        let mut by_name: BTreeMap<String, ThreadTimes> = BTreeMap::new();
        for (tid, (name, now)) in &self.threads {
            let was = before
                .threads
                .get(tid)
                .filter(|(n, _)| n == name)
                .map_or(ThreadTimes::default(), |(_, t)| *t);
            by_name
                .entry(group_name(name))
                .or_default()
                .add(&now.minus(&was));
        }
        // A thread that kept its core the whole time was never scheduled
        // anew (slices 0) yet used CPU: either counter shows it ran.
        let mut out: Vec<_> = by_name
            .into_iter()
            .filter(|(_, t)| t.slices > 0 || t.cpu_ns > 0)
            .collect();
        out.sort_by_key(|b| std::cmp::Reverse(b.1.cpu_ns));
        out
    }
}

/// CPU time (user + system) of process `pid` ("self": this one) so far,
/// every thread counted, ended ones too, in nanoseconds; from
/// `/proc/PID/stat`, so in steps of 10 ms (Linux's USER_HZ is 100).
pub fn process_cpu_ns(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some((utime + stime) * 10_000_000)
}

/// CPU nanoseconds of the threads whose name starts with `prefix`
/// between two snapshots.
pub fn cpu_of(after: &Snapshot, before: &Snapshot, prefix: &str) -> u64 {
    after
        .since(before)
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(_, t)| t.cpu_ns)
        .sum()
}

/// CPU seconds, user and system apart, of this process's children that
/// have ended and been waited for (`None` where Linux's `getrusage` is not
/// available): the difference around one child is that child's CPU.
///
/// Why apart: the child's system time moves with the kernel's state (how
/// its page cache gets fresh memory) while its user time moves with the
/// machine's speed; the sum alone could not tell the two apart
/// (docs/benchmarks.md, "Ingest, cli38 round").
pub fn ended_children_cpu() -> Option<ChildCpu> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: rusage is plain integers; all zeroes is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: RUSAGE_CHILDREN is a valid `who`; `ru` is a valid
        // rusage written only during the call.
        let r = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (r == 0).then(|| ChildCpu {
            user: secs(ru.ru_utime),
            sys: secs(ru.ru_stime),
        })
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// User and system CPU seconds (of ended children, or a difference of two
/// such readings).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChildCpu {
    pub user: f64,
    pub sys: f64,
}

impl ChildCpu {
    /// What was used between `before` and `self`.
    pub fn since(self, before: ChildCpu) -> ChildCpu {
        ChildCpu {
            user: self.user - before.user,
            sys: self.sys - before.sys,
        }
    }

    pub fn total(self) -> f64 {
        self.user + self.sys
    }
}

/// Threads of one kind share a line: "producer-3" counts as "producer".
fn group_name(name: &str) -> String {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let base = base.trim_end_matches('-');
    if base.is_empty() {
        name.to_string()
    } else {
        base.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_cpu_differences_keep_user_and_system_apart() {
        let before = ChildCpu {
            user: 1.5,
            sys: 0.25,
        };
        let after = ChildCpu {
            user: 4.0,
            sys: 1.0,
        };
        let d = after.since(before);
        assert_eq!(
            d,
            ChildCpu {
                user: 2.5,
                sys: 0.75
            }
        );
        assert_eq!(d.total(), 3.25);
        // A reading exists on Linux, and never goes backwards.
        if cfg!(target_os = "linux") {
            let a = ended_children_cpu().expect("getrusage");
            let b = ended_children_cpu().expect("getrusage");
            assert!(b.user >= a.user && b.sys >= a.sys);
        }
    }

    #[test]
    fn schedstat_lines_parse() {
        let t = parse_schedstat("123 45 6\n").unwrap();
        assert_eq!((t.cpu_ns, t.wait_ns, t.slices), (123, 45, 6));
        assert!(parse_schedstat("1 2").is_none());
        assert!(parse_schedstat("x 2 3").is_none());
    }

    #[test]
    fn numbered_threads_share_a_line() {
        assert_eq!(group_name("producer-12"), "producer");
        assert_eq!(group_name("auditlog-writer"), "auditlog-writer");
        assert_eq!(group_name("42"), "42");
    }

    #[test]
    fn a_busy_thread_shows_its_cpu_time() {
        let Some(before) = ThreadTimes::current() else {
            return; // no procfs here
        };
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        // A spinning thread may keep its core throughout (no new slice);
        // a sleep ends the slice, so the thread is scheduled again after.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let spent = ThreadTimes::current().unwrap().minus(&before);
        assert!(spent.cpu_ns > 0 && spent.slices > 0, "{spent:?}");
        assert!(!Snapshot::take().threads.is_empty());
    }
}
