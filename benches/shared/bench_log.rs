//! The log the read-path benches measure (read_path.rs, index_build.rs):
//! the load run's workload, written once in batches, unsynced, 64 MiB
//! segments, so that every bench reads the same shape of log.

use auditlog::{Config, Durability, Log};
use auditlog_loadrun::workload::WorkloadSpec;

/// `AUDITLOG_READ_BENCH_EVENTS`, or a million.
pub fn events_wanted() -> u64 {
    std::env::var("AUDITLOG_READ_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The folder of the log to measure and its event count: the log in
/// `AUDITLOG_READ_BENCH_DIR` if that is set (made there first if the
/// folder holds no log yet, and kept, so that repeated runs and profiles
/// skip the write), otherwise a new log in `tmp`.
pub fn bench_log(tmp: &std::path::Path) -> (std::path::PathBuf, u64) {
    let Some(dir) = std::env::var_os("AUDITLOG_READ_BENCH_DIR").map(std::path::PathBuf::from)
    else {
        let dir = tmp.join("log");
        let n = make_log(&dir, events_wanted());
        return (dir, n);
    };
    if dir.join("MANIFEST").exists() {
        let r = auditlog::LogReader::open(&dir).expect("reader");
        let n = r.segments().iter().map(|s| s.count).sum();
        return (dir, n);
    }
    let n = make_log(&dir, events_wanted());
    (dir, n)
}

/// A log of the load run's workload, written once, batched, unsynced.
pub fn make_log(dir: &std::path::Path, n: u64) -> u64 {
    make_log_of_days(dir, n, 8)
}

/// [`make_log`] spread over `days` daily segments (the load run rolls a
/// segment per simulated day).
pub fn make_log_of_days(dir: &std::path::Path, n: u64, days: u32) -> u64 {
    // About 5.5 events per top-level run in this workload.
    let spec = WorkloadSpec {
        runs: (n * 2 / 11).max(1),
        days,
        ..WorkloadSpec::default()
    };
    let mut cfg = Config::new(dir);
    cfg.durability = Durability::Never;
    cfg.segment_max_bytes = 64 << 20;
    let log = Log::open(cfg).expect("open");
    let mut batch = Vec::with_capacity(1000);
    let mut stored = 0u64;
    for ev in spec.events(0, spec.runs) {
        batch.push(ev);
        if batch.len() == 1000 {
            let _receipt = log.append_batch(&batch).expect("append");
            stored += batch.len() as u64;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        stored += batch.len() as u64;
        let _receipt = log.append_batch(&batch).expect("append");
    }
    log.flush().expect("flush");
    log.close().expect("close");
    stored
}

/// CPU time of this process so far, user and system, all its threads,
/// ended ones included (getrusage, microseconds).
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is a
    // plain C struct for which all zeroes is a valid value.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return 0.0;
        }
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
