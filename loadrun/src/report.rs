//! The load run's report: one JSON object (`--json`) or human tables, each
//! baseline's figure beside auditlog's at the same durability level, with
//! the ratio.

use super::ingest::Sample;
use super::{lat_json, num, IngestLine, Lat, Machine};
use auditlog::event::json::json_string;

/// One query kind's figures.
#[derive(Debug, Clone, Default)]
pub struct QueryRow {
    pub kind: String,
    pub what: String,
    pub auditlog_after: Option<Lat>,
    pub sqlite_after: Option<Lat>,
    pub auditlog_mixed: Option<Lat>,
    pub sqlite_mixed: Option<Lat>,
    /// Both answered the same parameters with answers of the same size.
    pub answers_match: Option<bool>,
}

/// The rate-limited phase.
#[derive(Debug, Clone, Default)]
pub struct Paced {
    pub target_eps: f64,
    /// The target as a fraction of the measured durable peak.
    pub of_peak: f64,
    pub achieved_eps: f64,
    pub events: u64,
    pub seconds: f64,
    pub to_durable: Option<Lat>,
    /// CPU time and run-queue wait per thread name during the phase.
    pub threads: Vec<(String, crate::threads::ThreadTimes)>,
    /// The whole machine's CPU during the phase.
    pub machine: Option<crate::threads::MachineCpu>,
    /// Where the appends' time went, by stage (`--stages`).
    pub stages: Option<auditlog::internals::stages::StageReport>,
}

/// The sustained mode's findings.
#[derive(Debug, Clone, Default)]
pub struct Sustained {
    pub seconds: f64,
    pub events: u64,
    pub passes: u64,
    pub segments_dropped: u64,
    pub events_dropped: u64,
    pub segments_max: u64,
    pub rss_max_first_half: u64,
    pub rss_max_second_half: u64,
    pub eps_first_third: f64,
    pub eps_last_third: f64,
    /// Most sealed segments (and events in them) not yet indexed at once.
    pub index_lag_max_segments: u64,
    pub index_lag_max_events: u64,
    /// The median sample's lag, in sealed segments.
    pub index_lag_median_segments: u64,
    /// Samples where at most one sealed segment waited for its index (the
    /// aim: the indexes lag by at most one segment roll), of `samples`.
    pub samples_within_one_roll: u64,
    pub samples: u64,
    /// The pace asked for (`--rate`), events/s; `None`: unpaced.
    pub rate: Option<f64>,
    /// Seal to index per sealed segment: the lag in time, and counted in
    /// rolls, of every segment, also of those retention drops within a
    /// second of their seal (which the samples above never see).
    pub seal_to_index: crate::seal_clock::SealToIndex,
    /// Where the appends' time went, by stage (`--stages`).
    pub stages: Option<auditlog::internals::stages::StageReport>,
}

/// `auditlog ingest FILE` run as a child process.
#[derive(Debug, Clone, Default)]
pub struct CliIngest {
    pub events: u64,
    pub file_bytes: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    /// Wall time of the child process (start-up and exit included).
    pub wall_seconds: f64,
    /// The child's CPU, user plus system, all its threads (Linux).
    pub cpu_seconds: Option<f64>,
    /// The same, user time alone.
    pub cpu_user_seconds: Option<f64>,
    /// The same, system time alone.
    pub cpu_sys_seconds: Option<f64>,
    /// `MemFree` as the child started (Linux): its system time grows
    /// several-fold when little memory is free (its page-cache writes
    /// take fresh pages; docs/benchmarks.md, "Ingest, cli38 round").
    pub mem_free_bytes_at_start: Option<u64>,
}

/// Opening the kept log afresh in a child process (`auditlog run ID`, ...):
/// what a new process pays before its first answer.
#[derive(Debug, Clone, Default)]
pub struct OpenCost {
    /// Events and segments in the log when it was opened.
    pub events: u64,
    pub segments: u64,
    /// Bytes of segments and of stored index files.
    pub log_bytes: u64,
    pub index_bytes: u64,
    /// One child process each, the first a point lookup.
    pub queries: Vec<OpenQuery>,
}

/// One child process: open the log, answer one query, exit.
#[derive(Debug, Clone, Default)]
pub struct OpenQuery {
    /// The command line after `auditlog --dir DIR`.
    pub command: String,
    /// Spawn to exit.
    pub wall_seconds: f64,
    /// The child's peak resident memory (`ru_maxrss`), bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// Ingest rates while queries ran beside.
#[derive(Debug, Clone, Default)]
pub struct MixedIngest {
    pub auditlog_eps: Option<f64>,
    pub auditlog_events: u64,
    /// Time to bring the indexes up to date once the mixed phase ended
    /// (how far the indexes lagged the log).
    pub auditlog_index_catch_up_seconds: Option<f64>,
    pub sqlite_eps: Option<f64>,
    pub sqlite_events: u64,
}

/// Everything one load run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub machine: Machine,
    pub command: String,
    pub events: u64,
    pub runs: u64,
    pub producers: usize,
    pub batch: usize,
    pub days: u32,
    /// Mean size of an event as a JSONL line, bytes.
    pub mean_json_bytes: f64,
    pub disk_mbps: Option<f64>,
    pub lines: Vec<IngestLine>,
    pub index_catch_up_seconds: Option<f64>,
    /// CPU time and run-queue wait per thread name during the peak (or
    /// sustained) ingest phase, and its length in seconds.
    pub peak_threads: (Vec<(String, crate::threads::ThreadTimes)>, f64),
    /// The whole machine's CPU during that phase.
    pub peak_machine: Option<crate::threads::MachineCpu>,
    pub queries: Vec<QueryRow>,
    pub jsonl_scan: Option<(Lat, u64)>,
    pub mixed: MixedIngest,
    pub paced: Option<Paced>,
    pub cli: Option<CliIngest>,
    pub open: Option<OpenCost>,
    pub sustained: Option<Sustained>,
    pub timeline: Vec<Sample>,
    /// `fulltext::bench` report as JSON (with `--search`).
    pub search: Option<String>,
}

/// Per thread name: CPU seconds, run-queue wait seconds, times scheduled.
/// `--stages`: one object per stage (µs), the slow appends' count and
/// threshold, and the writer's segment rolls.
fn stages_json(r: &auditlog::internals::stages::StageReport) -> String {
    let stages: Vec<String> = r
        .stages
        .iter()
        .map(|s| {
            format!(
                "{{\"stage\":\"{}\",\"n\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"mean_us\":{},\"slow_mean_us\":{}}}",
                s.stage,
                s.n,
                s.p50_us,
                s.p99_us,
                s.p999_us,
                num(s.mean_us),
                num(s.slow_mean_us)
            )
        })
        .collect();
    let parts: Vec<String> = r
        .roll_parts
        .iter()
        .map(|p| {
            format!(
                "{{\"part\":\"{}\",\"n\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
                p.part, p.n, p.p50_us, p.p99_us, p.max_us
            )
        })
        .collect();
    format!(
        "{{\"slow_threshold_us\":{},\"slow\":{},\"rolls\":{},\"roll_p50_us\":{},\"roll_max_us\":{},\"roll_parts\":[{}],\"stages\":[{}]}}",
        r.slow_threshold_us,
        r.slow,
        r.rolls,
        r.roll_p50_us,
        r.roll_max_us,
        parts.join(","),
        stages.join(",")
    )
}

/// `--stages` as a table: each stage's percentiles over every append, and
/// its mean over all of them and over the slow ones.
fn stages_table(r: &auditlog::internals::stages::StageReport) -> String {
    let mut o = format!(
        "  stage (us)      p50      p99    p99.9     mean   mean of the {} appends >= {} us\n",
        r.slow, r.slow_threshold_us
    );
    for s in &r.stages {
        o.push_str(&format!(
            "  {:<10} {:>8} {:>8} {:>8} {:>8.0} {:>8.0}\n",
            s.stage, s.p50_us, s.p99_us, s.p999_us, s.mean_us, s.slow_mean_us
        ));
    }
    o.push_str(&format!(
        "  segment rolls on the writer: {} (median {} us, most {} us)\n",
        r.rolls, r.roll_p50_us, r.roll_max_us
    ));
    for p in &r.roll_parts {
        o.push_str(&format!(
            "    {:<8} p50 {} us, p99 {} us, most {} us\n",
            p.part, p.p50_us, p.p99_us, p.max_us
        ));
    }
    o
}

fn threads_json(threads: &[(String, crate::threads::ThreadTimes)]) -> String {
    let items: Vec<String> = threads
        .iter()
        .map(|(name, t)| {
            format!(
                "{{\"name\":{},\"cpu_seconds\":{},\"runqueue_wait_seconds\":{},\"slices\":{}}}",
                s(name),
                num(t.cpu_ns as f64 / 1e9),
                num(t.wait_ns as f64 / 1e9),
                t.slices
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// The per-thread lines under a phase: share of one core, run-queue wait,
/// and the mean wait each time the thread was scheduled.
fn threads_table(threads: &[(String, crate::threads::ThreadTimes)], seconds: f64) -> String {
    let mut o = String::new();
    if threads.is_empty() {
        return o;
    }
    o.push_str("  thread            CPU (of one core)  run-queue wait  per slice\n");
    for (name, t) in threads {
        let per = t.wait_ns as f64 / t.slices.max(1) as f64 / 1e3;
        o.push_str(&format!(
            "  {name:<17} {:>8.1}%          {:>9.3} s    {per:>7.1} us\n",
            t.cpu_ns as f64 / 1e7 / seconds.max(1e-9),
            t.wait_ns as f64 / 1e9,
        ));
    }
    o
}

/// The whole machine's CPU as shares of its time (every CPU, every
/// process, the kernel), as JSON: `null` without procfs, or when the
/// phase was too short for the kernel to count a tick.
fn machine_json(m: Option<&crate::threads::MachineCpu>) -> String {
    m.filter(|m| m.total() > 0).map_or("null".into(), |m| {
        format!(
            "{{\"busy\":{},\"busy_cpu_seconds\":{},\"user\":{},\"nice\":{},\"system\":{},\"irq\":{},\"softirq\":{},\"steal\":{},\"iowait\":{},\"idle\":{}}}",
            num(m.busy_share()),
            num(m.busy_seconds()),
            num(m.share(m.user)),
            num(m.share(m.nice)),
            num(m.share(m.system)),
            num(m.share(m.irq)),
            num(m.share(m.softirq)),
            num(m.share(m.steal)),
            num(m.share(m.iowait)),
            num(m.share(m.idle))
        )
    })
}

/// The line under a phase's threads: how busy the whole machine was, so
/// that a phase that left no CPU idle shows as such even where this
/// process's own threads sum to less (the kernel's threads, softirqs,
/// other processes). Then the machine's busy CPU per event of the phase
/// (`events`): what one event cost everything that ran, background work
/// and the kernel included. Empty without procfs.
fn machine_line(m: Option<&crate::threads::MachineCpu>, events: u64) -> String {
    let Some(m) = m.filter(|m| m.total() > 0) else {
        return String::new();
    };
    let pct = |t: u64| m.share(t) * 100.0;
    let per_event = if events > 0 {
        let us = m.busy_seconds() * 1e6 / events as f64;
        format!("; {us:.2} us of busy CPU per event")
    } else {
        String::new()
    };
    format!(
        "  machine (every CPU and process): busy {:.1}% (user {:.1}%, nice {:.1}%, system {:.1}%, irq+softirq {:.1}%, steal {:.1}%), iowait {:.1}%, idle {:.1}%{per_event}\n",
        m.busy_share() * 100.0,
        pct(m.user),
        pct(m.nice),
        pct(m.system),
        pct(m.irq + m.softirq),
        pct(m.steal),
        pct(m.iowait),
        pct(m.idle)
    )
}

fn s(v: &str) -> String {
    let mut o = String::new();
    json_string(v, &mut o);
    o
}

fn opt(v: Option<f64>) -> String {
    v.map_or("null".into(), num)
}

impl Report {
    /// The auditlog line a baseline line is compared with: the durable one
    /// for durable baselines, the unsynced one for the others.
    pub fn peer_of(&self, l: &IngestLine) -> Option<&IngestLine> {
        self.lines
            .iter()
            .find(|a| a.system == "auditlog" && a.durable == l.durable)
    }

    pub fn to_json(&self) -> String {
        let m = &self.machine;
        let mut o = String::with_capacity(8192);
        o.push_str(&format!(
            "{{\"machine\":{{\"nproc\":{},\"mem_bytes\":{},\"cpu\":{},\"load_start\":{},\"load_end\":{}}}",
            m.nproc,
            m.mem_bytes,
            s(&m.cpu),
            s(&m.load_start),
            s(&m.load_end)
        ));
        o.push_str(&format!(
            ",\"command\":{},\"workload\":{{\"events\":{},\"runs\":{},\"producers\":{},\"batch\":{},\"days\":{},\"mean_json_bytes\":{}}}",
            s(&self.command),
            self.events,
            self.runs,
            self.producers,
            self.batch,
            self.days,
            num(self.mean_json_bytes)
        ));
        o.push_str(&format!(",\"disk_mb_per_sec\":{}", opt(self.disk_mbps)));
        o.push_str(",\"ingest\":[");
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let ratio = self
                .peer_of(l)
                .filter(|p| p.system != l.system)
                .map(|p| p.eps() / l.eps().max(1e-9));
            o.push_str(&format!(
                "{{\"system\":{},\"config\":{},\"durability\":{},\"durable\":{},\"threads\":{},\"events\":{},\"seconds\":{},\"events_per_sec\":{},\"mb_per_sec\":{},\"bytes_per_event\":{},\"data_bytes\":{},\"disk_bytes\":{},\"append_ms\":{},\"to_durable_ms\":{},\"rss_delta_bytes\":{},\"auditlog_speedup\":{}}}",
                s(&l.system),
                s(&l.config),
                s(&l.durability),
                l.durable,
                l.threads,
                l.events,
                num(l.seconds),
                num(l.eps()),
                num(l.mbps()),
                num(l.bytes_per_event()),
                l.data_bytes,
                l.disk_bytes,
                lat_json(&l.append),
                lat_json(&l.to_durable),
                l.rss_delta_bytes.map_or("null".into(), |v| v.to_string()),
                opt(ratio)
            ));
        }
        o.push(']');
        o.push_str(&format!(
            ",\"index_catch_up_seconds\":{}",
            opt(self.index_catch_up_seconds)
        ));
        o.push_str(",\"queries\":[");
        for (i, q) in self.queries.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let ratio = match (&q.auditlog_after, &q.sqlite_after) {
                (Some(a), Some(b)) => Some(b.p50 / a.p50.max(1e-9)),
                _ => None,
            };
            o.push_str(&format!(
                "{{\"kind\":{},\"what\":{},\"auditlog_after_ms\":{},\"sqlite_after_ms\":{},\"auditlog_mixed_ms\":{},\"sqlite_mixed_ms\":{},\"sqlite_over_auditlog_p50\":{},\"answers_match\":{}}}",
                s(&q.kind),
                s(&q.what),
                lat_json(&q.auditlog_after),
                lat_json(&q.sqlite_after),
                lat_json(&q.auditlog_mixed),
                lat_json(&q.sqlite_mixed),
                opt(ratio),
                q.answers_match.map_or("null".into(), |b| b.to_string())
            ));
        }
        o.push(']');
        o.push_str(&format!(
            ",\"jsonl_scan_errors_1d\":{}",
            self.jsonl_scan
                .as_ref()
                .map_or("null".into(), |(l, n)| format!(
                    "{{\"matching_lines\":{n},\"ms\":{}}}",
                    l.to_json()
                ))
        ));
        let mx = &self.mixed;
        o.push_str(&format!(
            ",\"mixed_ingest\":{{\"auditlog_events_per_sec\":{},\"auditlog_events\":{},\"auditlog_index_catch_up_seconds\":{},\"sqlite_events_per_sec\":{},\"sqlite_events\":{}}}",
            opt(mx.auditlog_eps),
            mx.auditlog_events,
            opt(mx.auditlog_index_catch_up_seconds),
            opt(mx.sqlite_eps),
            mx.sqlite_events
        ));
        o.push_str(&format!(
            ",\"peak_threads\":{},\"peak_machine_cpu\":{}",
            threads_json(&self.peak_threads.0),
            machine_json(self.peak_machine.as_ref())
        ));
        o.push_str(&format!(
            ",\"paced\":{}",
            self.paced.as_ref().map_or("null".into(), |p| format!(
                "{{\"target_events_per_sec\":{},\"of_peak\":{},\"achieved_events_per_sec\":{},\"events\":{},\"seconds\":{},\"to_durable_ms\":{},\"threads\":{},\"machine_cpu\":{},\"stages\":{}}}",
                num(p.target_eps),
                num(p.of_peak),
                num(p.achieved_eps),
                p.events,
                num(p.seconds),
                lat_json(&p.to_durable),
                threads_json(&p.threads),
                machine_json(p.machine.as_ref()),
                p.stages.as_ref().map_or("null".into(), stages_json)
            ))
        ));
        o.push_str(&format!(
            ",\"cli_ingest\":{}",
            self.cli.as_ref().map_or("null".into(), |c| format!(
                "{{\"events\":{},\"file_bytes\":{},\"seconds\":{},\"events_per_sec\":{},\"mb_per_sec\":{},\"wall_seconds\":{},\"cpu_seconds\":{},\"cpu_user_seconds\":{},\"cpu_sys_seconds\":{},\"mem_free_bytes_at_start\":{}}}",
                c.events,
                c.file_bytes,
                num(c.seconds),
                num(c.events_per_sec),
                num(c.file_bytes as f64 / 1e6 / c.seconds.max(1e-9)),
                num(c.wall_seconds),
                c.cpu_seconds.map_or("null".into(), num),
                c.cpu_user_seconds.map_or("null".into(), num),
                c.cpu_sys_seconds.map_or("null".into(), num),
                c.mem_free_bytes_at_start
                    .map_or("null".into(), |b| b.to_string())
            ))
        ));
        o.push_str(&format!(
            ",\"open\":{}",
            self.open.as_ref().map_or("null".into(), open_json)
        ));
        o.push_str(&format!(
            ",\"sustained\":{}",
            self.sustained.as_ref().map_or("null".into(), |u| format!(
                "{{\"seconds\":{},\"events\":{},\"passes\":{},\"segments_dropped\":{},\"events_dropped\":{},\"segments_max\":{},\"rss_max_first_half\":{},\"rss_max_second_half\":{},\"eps_first_third\":{},\"eps_last_third\":{},\"index_lag_max_segments\":{},\"index_lag_max_events\":{},\"index_lag_median_segments\":{},\"samples_within_one_roll\":{},\"samples\":{},\"rate\":{},\"seal_to_index\":{},\"stages\":{}}}",
                num(u.seconds),
                u.events,
                u.passes,
                u.segments_dropped,
                u.events_dropped,
                u.segments_max,
                u.rss_max_first_half,
                u.rss_max_second_half,
                num(u.eps_first_third),
                num(u.eps_last_third),
                u.index_lag_max_segments,
                u.index_lag_max_events,
                u.index_lag_median_segments,
                u.samples_within_one_roll,
                u.samples,
                u.rate.map_or("null".into(), num),
                seal_to_index_json(&u.seal_to_index),
                u.stages.as_ref().map_or("null".into(), stages_json)
            ))
        ));
        o.push_str(",\"timeline\":[");
        for (i, t) in self.timeline.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str(&format!(
                "{{\"t\":{},\"events_per_sec\":{},\"p99_ms\":{},\"rss_bytes\":{},\"segments\":{},\"unindexed_segments\":{},\"unindexed_events\":{}}}",
                num(t.t),
                num(t.events_per_sec),
                num(t.p99_ms),
                t.rss_bytes,
                t.segments,
                t.unindexed_segments,
                t.unindexed_events
            ));
        }
        o.push(']');
        o.push_str(&format!(
            ",\"search\":{}}}",
            self.search.as_deref().unwrap_or("null")
        ));
        o
    }

    /// Human tables.
    pub fn to_table(&self) -> String {
        use auditlog_terminal::table;
        let mut o = String::new();
        let m = &self.machine;
        o.push_str(&format!(
            "auditlog load run: {} events ({} top-level runs over {} simulated days), {} producer(s), {} event(s) per append, mean event {:.0} B as JSON\nmachine: {} cores, {:.1} GiB RAM, {}; load average at start {} / end {}\n",
            self.events,
            self.runs,
            self.days,
            self.producers,
            self.batch,
            self.mean_json_bytes,
            m.nproc,
            m.mem_bytes as f64 / (1u64 << 30) as f64,
            m.cpu,
            m.load_start,
            m.load_end
        ));
        if let Some(d) = self.disk_mbps {
            o.push_str(&format!(
                "disk: {d:.0} MB/s sequential (1 MiB writes, fdatasync each)\n"
            ));
        }
        o.push_str("\nINGEST (auditlog x = auditlog's events/s over this line's, at the same durability)\n");
        let ms = |l: &Option<Lat>, f: fn(&Lat) -> f64| {
            l.as_ref().map_or("-".into(), |v| format!("{:.3}", f(v)))
        };
        let us = |l: &Option<Lat>, f: fn(&Lat) -> f64| {
            l.as_ref()
                .map_or("-".into(), |v| format!("{:.1}", f(v) * 1000.0))
        };
        let rows: Vec<Vec<String>> = self
            .lines
            .iter()
            .map(|l| {
                let ratio = self
                    .peer_of(l)
                    .filter(|p| p.system != l.system)
                    .map_or("-".into(), |p| {
                        format!("{:.1}x", p.eps() / l.eps().max(1e-9))
                    });
                vec![
                    l.system.clone(),
                    l.config.clone(),
                    if l.durable {
                        "durable".into()
                    } else {
                        "not synced".into()
                    },
                    format!("{:.0}", l.eps()),
                    format!("{:.1}", l.mbps()),
                    ratio,
                    format!("{:.0}", l.bytes_per_event()),
                    us(&l.append, |v| v.p50),
                    us(&l.append, |v| v.p99),
                    ms(&l.to_durable, |v| v.p50),
                    ms(&l.to_durable, |v| v.p99),
                    ms(&l.to_durable, |v| v.p999),
                    ms(&l.to_durable, |v| v.max),
                    l.rss_delta_bytes
                        .map_or("-".into(), |b| format!("{:.0}", b as f64 / 1048576.0)),
                ]
            })
            .collect();
        o.push_str(&table(
            &[
                "system",
                "config",
                "durability",
                "events/s",
                "MB/s",
                "auditlog x",
                "B/event",
                "append p50 us",
                "append p99 us",
                "durable p50 ms",
                "p99",
                "p99.9",
                "max",
                "RSS+ MiB",
            ],
            &rows,
        ));
        o.push_str("\ndurability of each line:\n");
        for l in &self.lines {
            o.push_str(&format!(
                "  {} ({}): {}\n",
                l.system, l.config, l.durability
            ));
        }
        if !self.peak_threads.0.is_empty() {
            o.push_str("\nauditlog's first ingest phase, per thread:\n");
            o.push_str(&threads_table(&self.peak_threads.0, self.peak_threads.1));
            let peak_events = self
                .lines
                .iter()
                .find(|l| l.system == "auditlog" && l.durable)
                .map_or(0, |l| l.events);
            o.push_str(&machine_line(self.peak_machine.as_ref(), peak_events));
        }
        if let Some(p) = &self.paced {
            o.push_str(&format!(
                "\npaced at {:.0}% of auditlog's durable peak: target {:.0} events/s, achieved {:.0} ({} events, {:.1} s): append->durable p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms\n",
                p.of_peak * 100.0,
                p.target_eps,
                p.achieved_eps,
                p.events,
                p.seconds,
                ms(&p.to_durable, |v| v.p50),
                ms(&p.to_durable, |v| v.p99),
                ms(&p.to_durable, |v| v.p999),
                ms(&p.to_durable, |v| v.max)
            ));
            o.push_str(&threads_table(&p.threads, p.seconds));
            o.push_str(&machine_line(p.machine.as_ref(), p.events));
            if let Some(st) = &p.stages {
                o.push_str(&stages_table(st));
            }
        }
        if let Some(c) = &self.cli {
            o.push_str(&format!(
                "CLI `auditlog ingest FILE` (child process, {} events, {:.0} MB of JSONL): {:.0} events/s, {:.0} MB/s ({:.2} s; {:.2} s wall with process start)\n",
                c.events,
                c.file_bytes as f64 / 1e6,
                c.events_per_sec,
                c.file_bytes as f64 / 1e6 / c.seconds.max(1e-9),
                c.seconds,
                c.wall_seconds
            ));
            if let Some(cpu) = c.cpu_seconds {
                o.push_str(&format!(
                    "  its CPU, user+sys of all its threads: {cpu:.2} s ({:.2} us per event, {:.2} cores over its wall)",
                    cpu * 1e6 / c.events.max(1) as f64,
                    cpu / c.wall_seconds.max(1e-9)
                ));
                if let (Some(u), Some(s)) = (c.cpu_user_seconds, c.cpu_sys_seconds) {
                    o.push_str(&format!("; user {u:.2} s, sys {s:.2} s"));
                }
                if let Some(b) = c.mem_free_bytes_at_start {
                    o.push_str(&format!("; {} MiB free at its start", b >> 20));
                }
                o.push('\n');
            }
        }
        if let Some(c) = &self.open {
            o.push_str(&open_text(c));
        }
        if let Some(s) = self.index_catch_up_seconds {
            o.push_str(&format!(
                "indexes: sealed segments indexed during ingest; catching up the rest after it took {s:.3} s\n"
            ));
        }
        if !self.queries.is_empty() {
            o.push_str("\nQUERIES (ms; \"after\": ingest finished, indexes up to date, same data in both;\n  \"mixed\": while ingest continues; auditlog answers from its indexes as the indexer thread keeps them, SQLite's are always current)\n");
            let rows: Vec<Vec<String>> = self
                .queries
                .iter()
                .map(|q| {
                    let ratio = match (&q.auditlog_after, &q.sqlite_after) {
                        (Some(a), Some(b)) => format!("{:.1}x", b.p50 / a.p50.max(1e-9)),
                        _ => "-".into(),
                    };
                    vec![
                        q.kind.clone(),
                        ms(&q.auditlog_after, |v| v.p50),
                        ms(&q.auditlog_after, |v| v.p99),
                        ms(&q.sqlite_after, |v| v.p50),
                        ms(&q.sqlite_after, |v| v.p99),
                        ratio,
                        q.auditlog_mixed
                            .as_ref()
                            .map_or("0".into(), |v| v.n.to_string()),
                        ms(&q.auditlog_mixed, |v| v.p50),
                        ms(&q.auditlog_mixed, |v| v.p99),
                        q.sqlite_mixed
                            .as_ref()
                            .map_or("0".into(), |v| v.n.to_string()),
                        ms(&q.sqlite_mixed, |v| v.p50),
                        ms(&q.sqlite_mixed, |v| v.p99),
                        q.answers_match
                            .map_or("-".into(), |b| if b { "yes" } else { "NO" }.into()),
                    ]
                })
                .collect();
            o.push_str(&table(
                &[
                    "query",
                    "auditlog p50",
                    "p99",
                    "sqlite p50",
                    "p99",
                    "sqlite/auditlog",
                    "mixed auditlog n",
                    "p50",
                    "p99",
                    "mixed sqlite n",
                    "p50",
                    "p99",
                    "same answers",
                ],
                &rows,
            ));
            for q in &self.queries {
                o.push_str(&format!("  {}: {}\n", q.kind, q.what));
            }
            let mx = &self.mixed;
            if mx.auditlog_eps.is_some() || mx.sqlite_eps.is_some() {
                o.push_str(&format!(
                    "ingest while queries ran: auditlog {} events/s ({} events; its indexes took {} s to catch up afterwards), sqlite FULL {} events/s ({} events)\n",
                    mx.auditlog_eps.map_or("-".into(), |v| format!("{v:.0}")),
                    mx.auditlog_events,
                    mx.auditlog_index_catch_up_seconds.map_or("-".into(), |v| format!("{v:.1}")),
                    mx.sqlite_eps.map_or("-".into(), |v| format!("{v:.0}")),
                    mx.sqlite_events
                ));
            }
            if let Some((l, n)) = &self.jsonl_scan {
                o.push_str(&format!(
                    "jsonl has no index: a grep-style scan of one day's file for failing tool calls ({n} lines, no grouping) takes p50 {:.3} ms\n",
                    l.p50
                ));
            }
        }
        if let Some(u) = &self.sustained {
            o.push_str(&format!(
                "\nSUSTAINED: {:.0} s, {} events in {} passes; retention dropped {} segments ({} events) during the run, at most {} segments at once\nthroughput first third {:.0} events/s, last third {:.0}; max RSS first half {:.0} MiB, second half {:.0} MiB\n{}index lag: at most {} sealed segments ({} events) not yet indexed at a sample, median {}; at most one segment behind in {} of {} samples\n{}",
                u.seconds,
                u.events,
                u.passes,
                u.segments_dropped,
                u.events_dropped,
                u.segments_max,
                u.eps_first_third,
                u.eps_last_third,
                u.rss_max_first_half as f64 / 1048576.0,
                u.rss_max_second_half as f64 / 1048576.0,
                u.rate.map_or(String::new(), |r| format!("paced at {r:.0} events/s; ")),
                u.index_lag_max_segments,
                u.index_lag_max_events,
                u.index_lag_median_segments,
                u.samples_within_one_roll,
                u.samples,
                seal_to_index_text(&u.seal_to_index)
            ));
            if let Some(st) = &u.stages {
                o.push_str(&stages_table(st));
            }
        }
        if let Some(sr) = &self.search {
            o.push_str(&format!("\nFULL-TEXT SEARCH: {sr}\n"));
        }
        o
    }
}

fn rss_json(v: Option<u64>) -> String {
    v.map_or("null".into(), |b| b.to_string())
}

/// `{"events":..,"segments":..,"ms":..,"peak_rss_bytes":..,"queries":[..]}`,
/// the top-level figures being the first query's (the point lookup).
fn open_json(c: &OpenCost) -> String {
    let first = c.queries.first();
    let mut o = format!(
        "{{\"events\":{},\"segments\":{},\"log_bytes\":{},\"index_bytes\":{},\"ms\":{},\"peak_rss_bytes\":{},\"queries\":[",
        c.events,
        c.segments,
        c.log_bytes,
        c.index_bytes,
        opt(first.map(|q| q.wall_seconds * 1e3)),
        rss_json(first.and_then(|q| q.peak_rss_bytes)),
    );
    for (i, q) in c.queries.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(&format!(
            "{{\"command\":{},\"ms\":{},\"peak_rss_bytes\":{}}}",
            s(&q.command),
            num(q.wall_seconds * 1e3),
            rss_json(q.peak_rss_bytes)
        ));
    }
    o.push_str("]}");
    o
}

fn open_text(c: &OpenCost) -> String {
    let mib = |q: &OpenQuery| {
        q.peak_rss_bytes.map_or("-".into(), |b| {
            format!("{:.1}", b as f64 / (1u64 << 20) as f64)
        })
    };
    let mut o = String::new();
    for (i, q) in c.queries.iter().enumerate() {
        if i == 0 {
            o.push_str(&format!(
                "open (a new process: `auditlog {}`): {:.0} ms, peak RSS {} MiB, for a log of {} events / {} segments ({:.0} MB, indexes {:.0} MB)\n",
                q.command,
                q.wall_seconds * 1e3,
                mib(q),
                c.events,
                c.segments,
                c.log_bytes as f64 / 1e6,
                c.index_bytes as f64 / 1e6
            ));
        } else {
            o.push_str(&format!(
                "  and `auditlog {}`: {:.0} ms, peak RSS {} MiB\n",
                q.command,
                q.wall_seconds * 1e3,
                mib(q)
            ));
        }
    }
    o
}

fn seal_to_index_json(s: &crate::seal_clock::SealToIndex) -> String {
    let q = |x: f64| s.quantile_ms(x).map_or("null".into(), num);
    let per: Vec<String> = s
        .indexed
        .iter()
        .map(|(t, ms)| format!("[{},{}]", num(*t), num(*ms)))
        .collect();
    format!(
        "{{\"indexed\":{},\"p50_ms\":{},\"p90_ms\":{},\"max_ms\":{},\"within_one_roll\":{},\"dropped_unindexed\":{},\"waiting_at_end\":{},\"seal_t_ms\":[{}]}}",
        s.indexed.len(),
        q(0.5),
        q(0.9),
        q(1.0),
        s.within_one_roll,
        s.dropped_unindexed,
        s.waiting_at_end,
        per.join(",")
    )
}

fn seal_to_index_text(s: &crate::seal_clock::SealToIndex) -> String {
    let sealed = s.indexed.len() as u64 + s.dropped_unindexed + s.waiting_at_end;
    match (s.quantile_ms(0.5), s.quantile_ms(0.9), s.quantile_ms(1.0)) {
        (Some(p50), Some(p90), Some(max)) => format!(
            "seal to index: median {p50:.0} ms, p90 {p90:.0} ms, max {max:.0} ms over {} images; stored before the next seal (within one roll) {} of {sealed} sealed segments; {} dropped by retention before indexed, {} waiting at the end\n",
            s.indexed.len(),
            s.within_one_roll,
            s.dropped_unindexed,
            s.waiting_at_end
        ),
        _ => format!("seal to index: no image stored of {sealed} sealed segments\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::MachineCpu;

    #[test]
    fn the_machine_line_and_json_say_nothing_for_a_phase_no_tick_counted() {
        let none = MachineCpu::default();
        assert_eq!(machine_json(Some(&none)), "null");
        assert_eq!(machine_json(None), "null");
        assert_eq!(machine_line(Some(&none), 10), "");
        let m = MachineCpu {
            user: 30,
            nice: 20,
            system: 40,
            idle: 8,
            iowait: 2,
            ..MachineCpu::default()
        };
        let json = machine_json(Some(&m));
        assert!(
            json.starts_with("{\"busy\":0.9,\"busy_cpu_seconds\":"),
            "{json}"
        );
        assert!(json.contains(",\"user\":0.3,"), "{json}");
        assert!(json.ends_with("\"iowait\":0.02,\"idle\":0.08}"), "{json}");
        let line = machine_line(Some(&m), 1_000_000);
        assert!(
            line.contains("busy 90.0% (user 30.0%, nice 20.0%, system 40.0%"),
            "{line}"
        );
        // 90 busy ticks at USER_HZ 100: 0.9 s over 1M events.
        assert!(
            line.ends_with("idle 8.0%; 0.90 us of busy CPU per event\n"),
            "{line}"
        );
        assert!(machine_line(Some(&m), 0).ends_with("iowait 2.0%, idle 8.0%\n"));
    }
}
