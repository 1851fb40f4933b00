//! The load run's machinery (`auditlog bench`, docs/benchmarks.md): the
//! auditlog ingest phases ([`ingest`]), the baselines a user has today
//! ([`baselines`]: SQLite with the executus-style schema, daily JSONL
//! files), the query suite asked of both ([`queries`]), the report
//! ([`report`]) and the SVG plot ([`plot`]).
//!
//! Every latency is kept in an HDR histogram of nanoseconds and reported in
//! milliseconds (p50, p99, p99.9, max).

pub mod baselines;
pub mod calls_bench;
mod cmd;
pub mod ingest;
pub mod plot;
pub mod queries;
mod queries_only;
pub mod report;
pub mod seal_clock;
pub mod search_bench;
pub mod serve_bench;
pub mod sqlite_baseline;
pub mod threads;
pub mod workload;

pub use cmd::{bench, BenchArgs};

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;

use auditlog::{Event, Micros};

/// A histogram of nanoseconds, up to one hour.
pub fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("static histogram bounds are valid")
}

/// Record a duration (saturating at the histogram's top).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = (d.as_nanos() as u64).clamp(1, h.high());
    let _ = h.record(ns);
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Lat {
    pub n: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Lat {
    pub fn of(h: &Histogram<u64>) -> Option<Lat> {
        if h.is_empty() {
            return None;
        }
        let ms = |v: u64| v as f64 / 1e6;
        Some(Lat {
            n: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        })
    }

    pub fn to_json(&self) -> String {
        format!(
            "{{\"n\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}}",
            self.n,
            num(self.p50),
            num(self.p99),
            num(self.p999),
            num(self.max)
        )
    }
}

/// A JSON number with up to 6 fraction digits (never NaN or infinite).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "null".into();
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// An optional latency as JSON.
pub fn lat_json(l: &Option<Lat>) -> String {
    l.as_ref().map_or("null".into(), Lat::to_json)
}

/// One line of the ingest table: a system at one durability level.
#[derive(Debug, Clone, Default)]
pub struct IngestLine {
    /// "auditlog", "sqlite", "jsonl".
    pub system: String,
    /// How it was run (policy, batch, transaction size).
    pub config: String,
    /// What a caller can rely on when the write returns / completes.
    pub durability: String,
    /// The event counts as durable on power loss once acknowledged.
    pub durable: bool,
    pub threads: usize,
    pub events: u64,
    pub seconds: f64,
    /// Bytes written that hold the events (segments, db + wal, jsonl files).
    pub data_bytes: u64,
    /// Everything on disk afterwards (with indexes and derived files).
    pub disk_bytes: u64,
    /// Latency of the append call itself (what the gateway thread waits).
    pub append: Option<Lat>,
    /// From the append call to the event being durable per policy.
    pub to_durable: Option<Lat>,
    /// Peak resident memory during the phase above what was resident
    /// before it (the pre-generated workload is not counted).
    pub rss_delta_bytes: Option<u64>,
}

impl IngestLine {
    pub fn eps(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
    pub fn mbps(&self) -> f64 {
        self.data_bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
    pub fn bytes_per_event(&self) -> f64 {
        self.disk_bytes as f64 / self.events.max(1) as f64
    }
}

/// Resident memory now (`VmRSS`), bytes.
pub fn rss_bytes() -> Option<u64> {
    proc_status_kb("VmRSS:").map(|kb| kb * 1024)
}

/// Peak resident memory since start or the last [`reset_peak_rss`] (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kb("VmHWM:").map(|kb| kb * 1024)
}

fn proc_status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reset the kernel's peak-RSS mark to the current RSS (Linux: writing 5 to
/// /proc/self/clear_refs). Returns false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The line a command run with the hidden `--report-peak-rss` flag ends
/// its standard error with.
pub const PEAK_RSS_LINE: &str = "auditlog: peak RSS (VmHWM) bytes: ";

/// A child process run to completion: its output, wall time (from spawn
/// to exit) and the peak resident memory it reported.
pub struct ChildRun {
    pub output: std::process::Output,
    pub wall: Duration,
    /// The child's own peak (`VmHWM` of its address space), bytes; `None`
    /// where the platform does not report it.
    pub peak_rss_bytes: Option<u64>,
}

/// Run `cmd` (an `auditlog` command; stdin closed, output captured) and
/// measure it. The child reports its own peak: the kernel's `ru_maxrss`
/// for a child (wait4, getrusage) is no good here, because Linux carries
/// the address space's high-water mark over `exec`, and a child spawned
/// by this (large) process starts from this process's mark: `/bin/true`
/// spawned by a 500 MiB process reports 500 MiB.
pub fn run_child(cmd: &mut std::process::Command) -> std::io::Result<ChildRun> {
    let t = std::time::Instant::now();
    let output = cmd
        .arg("--report-peak-rss")
        .stdin(std::process::Stdio::null())
        .output()?;
    let wall = t.elapsed();
    let peak_rss_bytes = String::from_utf8_lossy(&output.stderr)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(PEAK_RSS_LINE)?.trim().parse().ok());
    Ok(ChildRun {
        output,
        wall,
        peak_rss_bytes,
    })
}

/// Measures a phase's peak memory above what was resident at its start.
pub struct RssProbe {
    base: Option<u64>,
    resettable: bool,
}

impl RssProbe {
    pub fn start() -> RssProbe {
        let resettable = reset_peak_rss();
        RssProbe {
            base: rss_bytes(),
            resettable,
        }
    }
    /// Peak above the start, if the kernel lets us know it.
    pub fn delta(&self) -> Option<u64> {
        if !self.resettable {
            return None;
        }
        Some(peak_rss_bytes()?.saturating_sub(self.base?))
    }
}

/// Total bytes of the files under `dir` (recursively), and of those whose
/// name ends with `suffix` (`None`: all).
pub fn dir_bytes(dir: &Path, suffix: Option<&str>) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&p, suffix),
                Ok(m) if suffix.is_none_or(|s| p.to_string_lossy().ends_with(s)) => m.len(),
                _ => 0,
            }
        })
        .sum()
}

/// Move every event of `shares` by `delta` µs (later phases re-append the
/// same workload further on in simulated time).
pub fn shift(shares: &mut [Vec<Event>], delta: Micros) {
    for share in shares {
        for ev in share.iter_mut() {
            ev.ts += delta;
        }
    }
}

/// Give every run id (and parent run id) of `shares` the suffix `tag`
/// (replacing an earlier one; `""` restores the ids), so that a later phase
/// that re-appends the workload writes new runs, not repeats that a store
/// could skip (SQLite's `INSERT OR IGNORE`).
pub fn retag(shares: &mut [Vec<Event>], tag: &str) {
    fn re(id: &mut String, tag: &str) {
        if id.is_empty() {
            return;
        }
        if let Some(pos) = id.rfind('~') {
            id.truncate(pos);
        }
        id.push_str(tag);
    }
    for share in shares {
        for ev in share.iter_mut() {
            re(&mut ev.run_id, tag);
            if let auditlog::EventData::RunStarted(s) = &mut ev.data {
                re(&mut s.parent_run_id, tag);
            }
        }
    }
}

/// One `/proc/meminfo` field (`key` with its colon, as `"MemFree:"`), in
/// kB; `None` where the file or the field is missing.
pub fn meminfo_kb(key: &str) -> Option<u64> {
    meminfo_field(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

/// [`meminfo_kb`] on the file's text.
fn meminfo_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
}

/// The machine, as the report states it.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub nproc: usize,
    pub mem_bytes: u64,
    pub cpu: String,
    pub load_start: String,
    pub load_end: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let mem_kb = meminfo_kb("MemTotal:").unwrap_or(0);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_bytes: mem_kb * 1024,
            cpu,
            load_start: loadavg(),
            load_end: String::new(),
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Sequential write bandwidth of the disk under `dir`: `total` bytes in
/// 1 MiB writes, fdatasync after each (what a group-committing log does at
/// best). Returns MB/s; the file is removed.
pub fn disk_probe(dir: &Path, total: u64) -> std::io::Result<f64> {
    use std::io::Write;
    let path = dir.join("disk-probe.bin");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let block = vec![0x5au8; 1 << 20];
    let t = std::time::Instant::now();
    let mut done = 0u64;
    while done < total {
        f.write_all(&block)?;
        f.sync_data()?;
        done += block.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(done as f64 / 1e6 / secs.max(1e-9))
}

#[cfg(test)]
mod meminfo_tests {
    use super::meminfo_field;

    #[test]
    fn meminfo_fields_are_read_by_their_key() {
        let text = "MemTotal:       24621236 kB\nMemFree:         3068248 kB\nMemAvailable:   22677128 kB\n";
        assert_eq!(meminfo_field(text, "MemTotal:"), Some(24_621_236));
        assert_eq!(meminfo_field(text, "MemFree:"), Some(3_068_248));
        assert_eq!(meminfo_field(text, "Cached:"), None);
        assert_eq!(meminfo_field("MemFree: lots kB\n", "MemFree:"), None);
    }
}
