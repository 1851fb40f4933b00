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

/// The unit of the CPU times in `/proc/PID/stat` and `/proc/stat`:
/// Linux's USER_HZ, 100 ticks a second on every architecture (it is part
/// of the kernel's interface to user space, whatever its internal HZ).
const USER_HZ: u64 = 100;

/// CPU time (user + system) of process `pid` ("self": this one) so far,
/// every thread counted, ended ones too, in nanoseconds; from
/// `/proc/PID/stat`, so in steps of 10 ms (one USER_HZ tick).
pub fn process_cpu_ns(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some((utime + stime) * (1_000_000_000 / USER_HZ))
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

/// The whole machine's CPU time by kind, in the kernel's ticks (USER_HZ),
/// from the first line of `/proc/stat`: what every process and the
/// kernel's own threads used, which the per-thread lines of one process
/// cannot show (a phase can leave no idle CPU while its own threads sum
/// to well under the machine's cores: docs/benchmarks.md, "Round
/// eighteen").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineCpu {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl MachineCpu {
    /// The counters now (`None` without procfs).
    pub fn now() -> Option<MachineCpu> {
        MachineCpu::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The `cpu ` line of `/proc/stat`: user nice system idle iowait irq
    /// softirq steal (guest time is inside user and nice already).
    fn parse(text: &str) -> Option<MachineCpu> {
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        (v.len() >= 4).then(|| MachineCpu {
            user: at(0),
            nice: at(1),
            system: at(2),
            idle: at(3),
            iowait: at(4),
            irq: at(5),
            softirq: at(6),
            steal: at(7),
        })
    }

    /// What was added since `before`.
    pub fn since(&self, before: &MachineCpu) -> MachineCpu {
        MachineCpu {
            user: self.user.saturating_sub(before.user),
            nice: self.nice.saturating_sub(before.nice),
            system: self.system.saturating_sub(before.system),
            idle: self.idle.saturating_sub(before.idle),
            iowait: self.iowait.saturating_sub(before.iowait),
            irq: self.irq.saturating_sub(before.irq),
            softirq: self.softirq.saturating_sub(before.softirq),
            steal: self.steal.saturating_sub(before.steal),
        }
    }

    /// Every tick counted, busy or not.
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    /// Share of the machine's time spent in `ticks` (0 when nothing was
    /// counted).
    pub fn share(&self, ticks: u64) -> f64 {
        ticks as f64 / self.total().max(1) as f64
    }

    /// Ticks some CPU was running something (not idle, not waiting on
    /// I/O).
    fn busy_ticks(&self) -> u64 {
        self.total() - self.idle - self.iowait
    }

    /// CPU seconds the machine spent busy, every CPU counted.
    pub fn busy_seconds(&self) -> f64 {
        self.busy_ticks() as f64 / USER_HZ as f64
    }

    /// Share of the machine's time some CPU was running something (0
    /// when nothing was counted).
    pub fn busy_share(&self) -> f64 {
        self.share(self.busy_ticks())
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
    fn machine_cpu_reads_the_cpu_line_and_subtracts() {
        let text = "cpu  100 50 30 800 10 2 3 5 0 0\ncpu0 50 25 15 400 5 1 1 2 0 0\n";
        let a = MachineCpu::parse(text).unwrap();
        assert_eq!(a.user, 100);
        assert_eq!(a.steal, 5);
        assert_eq!(a.total(), 1000);
        let b = MachineCpu::parse("cpu  300 250 130 820 10 2 13 5 0 0\n").unwrap();
        let d = b.since(&a);
        assert_eq!(
            (d.user, d.nice, d.system, d.idle, d.softirq),
            (200, 200, 100, 20, 10)
        );
        assert_eq!(d.total(), 530);
        assert!((d.busy_share() - 510.0 / 530.0).abs() < 1e-12);
        // USER_HZ is 100: 510 busy ticks are 5.1 s.
        let s = d.busy_seconds();
        assert!((s - 5.1).abs() < 1e-9, "{s}");
        // An old kernel's shorter line: the missing kinds count as zero.
        let old = MachineCpu::parse("cpu 1 2 3 4\n").unwrap();
        assert_eq!((old.idle, old.steal), (4, 0));
        assert!(MachineCpu::parse("cpu 1 2\n").is_none());
        assert!(MachineCpu::parse("intr 5\n").is_none());
        assert_eq!(MachineCpu::default().busy_share(), 0.0);
    }

    #[test]
    fn machine_cpu_of_this_machine_moves_forward() {
        let Some(a) = MachineCpu::now() else {
            return; // No procfs here.
        };
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(t0.elapsed());
        }
        let d = MachineCpu::now().unwrap().since(&a);
        assert!(d.total() > 0, "ticks counted over 50 ms of spinning");
        assert!(d.busy_share() > 0.0);
    }

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
