//! Measurements of full-text search for the load run: indexing throughput,
//! lag while ingest runs at full speed and the time to catch up after it,
//! ingest throughput with search on versus off, and search latency.
//! [`measure`] does it all in one folder; docs/search.md shows the figures.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use auditlog::event::json::json_f64;
use auditlog::fulltext::{open_log, Filters, FullText, FullTextError, FullTextOptions};
use auditlog::{
    Config, EncodedBatch, Event, Json, Log, LogReader, RunFinished, RunLog, RunStarted,
};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// Runs written (each: a start, `logs_per_run` tool calls, a finish).
    pub runs: u64,
    pub logs_per_run: u32,
    /// Events per append call.
    pub batch: usize,
    /// Also ingest the same workload with search off, for the ratio.
    pub compare_off: bool,
    /// Also rebuild the whole index from the log (pure indexing speed).
    pub rebuild: bool,
    /// Searches timed for the latency figures.
    pub queries: usize,
    pub options: FullTextOptions,
    /// Also rebuild with these options, A B B A against `options` (same
    /// log, same process), to compare indexing settings.
    pub rebuild_variant: Option<(String, FullTextOptions)>,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            runs: 100_000,
            logs_per_run: 3,
            batch: 1000,
            compare_off: true,
            rebuild: true,
            queries: 2000,
            options: FullTextOptions::default(),
            rebuild_variant: None,
        }
    }
}

/// The figures.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub runs: u64,
    pub events: u64,
    /// Ingest events/s with search off (if measured).
    pub ingest_off_eps: Option<f64>,
    /// Ingest events/s with the indexer running beside.
    pub ingest_on_eps: f64,
    /// on / off.
    pub ingest_ratio: Option<f64>,
    /// Largest lag seen while ingest ran.
    pub max_lag_events: u64,
    pub max_lag_seconds: f64,
    /// Lag when ingest finished.
    pub end_lag_events: u64,
    /// From the end of ingest until everything was searchable.
    pub catch_up_seconds: f64,
    /// Events indexed per second following the live log (ingest start to
    /// caught up).
    pub follow_eps: f64,
    /// Events (and runs) indexed per second rebuilding from the log alone.
    pub rebuild_eps: Option<f64>,
    pub rebuild_runs_per_s: Option<f64>,
    /// Process CPU (user + system, all threads) per event of the rebuild.
    pub rebuild_cpu_us_per_event: Option<f64>,
    /// The rebuild A/B: (options, events/s, CPU µs per event) for each
    /// rebuild in run order (A B B A), when `spec.rebuild_variant` is set.
    pub rebuild_ab: Vec<(String, f64, f64)>,
    pub index_bytes: u64,
    pub log_bytes: u64,
    pub searches: u64,
    pub search_median_us: u64,
    pub search_p99_us: u64,
    pub search_max_us: u64,
    /// Average hits per search (limit 10).
    pub avg_hits: f64,
}

impl Report {
    pub fn to_json(&self) -> String {
        let f = |v: f64| {
            let mut s = String::new();
            json_f64((v * 1000.0).round() / 1000.0, &mut s);
            s
        };
        let o = |v: Option<f64>| v.map_or("null".to_string(), f);
        format!(
            "{{\"runs\":{},\"events\":{},\"ingest_off_eps\":{},\"ingest_on_eps\":{},\"ingest_ratio\":{},\"max_lag_events\":{},\"max_lag_seconds\":{},\"end_lag_events\":{},\"catch_up_seconds\":{},\"follow_eps\":{},\"rebuild_eps\":{},\"rebuild_runs_per_s\":{},\"rebuild_cpu_us_per_event\":{},\"rebuild_ab\":[{}],\"index_bytes\":{},\"log_bytes\":{},\"searches\":{},\"search_median_us\":{},\"search_p99_us\":{},\"search_max_us\":{},\"avg_hits\":{}}}",
            self.runs,
            self.events,
            o(self.ingest_off_eps),
            f(self.ingest_on_eps),
            o(self.ingest_ratio),
            self.max_lag_events,
            f(self.max_lag_seconds),
            self.end_lag_events,
            f(self.catch_up_seconds),
            f(self.follow_eps),
            o(self.rebuild_eps),
            o(self.rebuild_runs_per_s),
            o(self.rebuild_cpu_us_per_event),
            self.rebuild_ab
                .iter()
                .map(|(n, eps, cpu)| format!("[\"{n}\",{},{}]", f(*eps), f(*cpu)))
                .collect::<Vec<_>>()
                .join(","),
            self.index_bytes,
            self.log_bytes,
            self.searches,
            self.search_median_us,
            self.search_p99_us,
            self.search_max_us,
            f(self.avg_hits),
        )
    }
}

/// A vocabulary of made-up words (deterministic), common ones first.
fn vocabulary() -> Vec<String> {
    const SYL: [&str; 24] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "qu", "da", "fe", "gi", "ho",
        "ju", "ly", "mo", "ni", "ox", "pe", "ri", "su", "ta",
    ];
    let mut v = Vec::with_capacity(SYL.len().pow(3));
    for a in SYL {
        for b in SYL {
            for c in SYL {
                v.push(format!("{a}{b}{c}"));
            }
        }
    }
    v
}

const SKILLS: [&str; 8] = [
    "web.search",
    "mail.send",
    "code.run",
    "doc.summarize",
    "pki.check",
    "db.query",
    "img.render",
    "cal.book",
];
const TOOLS: [&str; 6] = [
    "http.get",
    "http.post",
    "sql.exec",
    "fs.read",
    "shell.exec",
    "pki.fetch",
];
const ERRORS: [(&str, &str); 5] = [
    ("timeout", "upstream timeout after 30s"),
    ("tls_handshake", "upstream certificate expired"),
    ("http_5xx", "bad gateway from upstream"),
    ("quota", "rate limit exceeded for caller"),
    ("parse", "could not parse tool result"),
];

/// The synthetic gateway workload: run `i`'s events, deterministic.
struct Workload {
    words: Vec<String>,
    rng: fastrand::Rng,
    ts: i64,
    logs: u32,
}

impl Workload {
    fn new(logs: u32) -> Workload {
        Workload {
            words: vocabulary(),
            rng: fastrand::Rng::with_seed(42),
            ts: 1_763_884_800_000_000,
            logs,
        }
    }

    /// A word, Zipf-like: low ranks far more often.
    fn word(&mut self) -> &str {
        let n = self.words.len() as f64;
        let r = self.rng.f64();
        let i = ((n.powf(r) - 1.0) as usize).min(self.words.len() - 1);
        &self.words[i]
    }

    fn words(&mut self, k: usize) -> String {
        let mut s = String::new();
        for j in 0..k {
            if j > 0 {
                s.push(' ');
            }
            let w = self.word().to_string();
            s.push_str(&w);
        }
        s
    }

    fn run(&mut self, i: u64, out: &mut Vec<Event>) {
        let id = format!("run-{i:010}");
        self.ts += 1000;
        let skill = SKILLS[self.rng.usize(..SKILLS.len())];
        let q = self.words(4);
        out.push(Event::run_started(
            id.clone(),
            self.ts,
            RunStarted {
                skill_id: skill.to_string(),
                caller_id: format!("u-{}", self.rng.u32(..5000)),
                channel_id: format!("ch-{}", self.rng.u32(..200)),
                parent_run_id: String::new(),
                inputs: Json::parse(format!("{{\"q\":\"{q}\",\"lang\":\"en\",\"max\":10}}"))
                    .expect("generated JSON is valid"),
                dry_run: false,
            },
        ));
        let failing = self.rng.u32(..100) < 10;
        let err = ERRORS[self.rng.usize(..ERRORS.len())];
        for k in 0..self.logs {
            let tool = TOOLS[self.rng.usize(..TOOLS.len())];
            let last = k + 1 == self.logs;
            let (status, etype) = if failing && last {
                ("error", err.0)
            } else {
                ("ok", "")
            };
            let arg = self.words(2);
            let payload = format!(
                "{{\"tool\":\"{tool}\",\"status\":\"{status}\",\"error_type\":\"{etype}\",\"duration_ms\":{},\"args_summary\":\"GET {arg}.example/api\",\"result_bytes\":{}}}",
                self.rng.u32(1..5000),
                self.rng.u32(..100_000)
            );
            out.push(Event::run_log(
                id.clone(),
                self.ts + 1 + k as i64,
                RunLog {
                    seq: k as u64,
                    event_type: "tool_call".into(),
                    payload: Json::parse(payload).expect("generated JSON is valid"),
                },
            ));
        }
        let output = if failing {
            String::new()
        } else {
            self.words(12)
        };
        out.push(Event::run_finished(
            id,
            self.ts + 500,
            RunFinished {
                status: if failing { "error" } else { "ok" }.to_string(),
                output,
                error: if failing {
                    err.1.to_string()
                } else {
                    String::new()
                },
                tool_calls: self.logs as u64,
                runtime_seconds: 0.5,
                input_tokens: 120,
                output_tokens: 300,
                thinking_tokens: 0,
            },
        ));
    }
}

/// The workload, encoded ahead so that ingest is timed alone.
fn encoded_workload(spec: &BenchSpec) -> auditlog::Result<(Vec<EncodedBatch>, u64)> {
    let mut w = Workload::new(spec.logs_per_run);
    let mut out = Vec::new();
    let mut events = 0u64;
    let mut buf = Vec::with_capacity(spec.batch + 16);
    for i in 0..spec.runs {
        w.run(i, &mut buf);
        if buf.len() >= spec.batch || i + 1 == spec.runs {
            events += buf.len() as u64;
            out.push(EncodedBatch::encode(&buf)?);
            buf.clear();
        }
    }
    Ok((out, events))
}

/// Append the batches at full speed; events/s.
fn ingest(
    log: &Log,
    batches: Vec<EncodedBatch>,
    events: u64,
    done: &AtomicBool,
) -> auditlog::Result<f64> {
    let t = Instant::now();
    let mut last = None;
    for b in batches {
        last = Some(log.append_encoded(b)?);
    }
    if let Some(r) = last {
        r.wait()?;
    }
    log.flush()?;
    let secs = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    Ok(events as f64 / secs)
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    dir_bytes(&p)
                } else {
                    e.metadata().map_or(0, |m| m.len())
                }
            })
            .sum()
    })
}

/// Rebuild the index of the log in `on` from scratch with `opts`:
/// (wall seconds, process CPU seconds). Nothing else runs in the process
/// meanwhile, so its CPU is the indexing's.
fn rebuild(on: &Path, opts: &FullTextOptions) -> Result<(f64, f64), FullTextError> {
    let opts = FullTextOptions {
        force_rebuild: true,
        ..opts.clone()
    };
    let ft = FullText::open(on, &opts)?;
    let reader = LogReader::open(on).map_err(bench_err)?;
    let cpu0 = process_cpu_seconds();
    let t = Instant::now();
    ft.catch_up(&reader, |_| {})?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu0;
    Ok((secs, cpu))
}

/// User + system CPU of this process so far, all threads (/proc/self/stat,
/// in clock ticks of 10 ms).
fn process_cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) closed by ')'.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = f
        .get(11..13)
        .map_or(0, |v| v.iter().filter_map(|x| x.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

fn bench_err(e: auditlog::Error) -> FullTextError {
    FullTextError::Log(e)
}

/// Run the whole measurement in `dir` (created; two logs go in `dir/off`
/// and `dir/on`). Takes a while: `spec.runs` of 1,000,000 is minutes.
pub fn measure(dir: &Path, spec: &BenchSpec) -> Result<Report, FullTextError> {
    let mut rep = Report {
        runs: spec.runs,
        ..Report::default()
    };
    if spec.compare_off {
        let off = dir.join("off");
        let (batches, events) = encoded_workload(spec).map_err(bench_err)?;
        let log = Log::open(Config::new(&off)).map_err(bench_err)?;
        let done = AtomicBool::new(false);
        let eps = ingest(&log, batches, events, &done).map_err(bench_err)?;
        log.close().map_err(bench_err)?;
        rep.ingest_off_eps = Some(eps);
        let _ = std::fs::remove_dir_all(&off);
    }

    let on = dir.join("on");
    let (batches, events) = encoded_workload(spec).map_err(bench_err)?;
    let mut lws = open_log(Config::new(&on), &spec.options).map_err(bench_err)?;
    if let Some(e) = lws.search_error.take() {
        return Err(e);
    }
    let mut ix = lws.search.take().ok_or(FullTextError::NotWritable)?;
    let done = AtomicBool::new(false);
    let t0 = Instant::now();
    let mut max_lag = (0u64, 0f64);
    let res = std::thread::scope(|s| {
        let h = s.spawn(|| ingest(&lws.log, batches, events, &done));
        while !done.load(Ordering::Acquire) && !h.is_finished() {
            let l = ix.lag();
            max_lag.0 = max_lag.0.max(l.events);
            max_lag.1 = max_lag.1.max(l.seconds);
            std::thread::sleep(Duration::from_millis(100));
        }
        h.join()
    });
    let eps = res
        .map_err(|_| FullTextError::NotWritable)?
        .map_err(bench_err)?;
    let t_end = Instant::now();
    let end = ix.lag();
    rep.events = events;
    rep.ingest_on_eps = eps;
    rep.ingest_ratio = rep.ingest_off_eps.map(|off| eps / off);
    rep.end_lag_events = end.events;
    rep.max_lag_events = max_lag.0.max(end.events);
    rep.max_lag_seconds = max_lag.1.max(end.seconds);
    while !ix.wait_caught_up(Duration::from_secs(600)) {
        if let Some(e) = ix.error() {
            return Err(FullTextError::Corrupt(e));
        }
    }
    rep.catch_up_seconds = t_end.elapsed().as_secs_f64();
    rep.follow_eps = events as f64 / t0.elapsed().as_secs_f64();
    ix.stop();
    lws.log.close().map_err(bench_err)?;
    rep.log_bytes = dir_bytes(&on) - dir_bytes(&on.join(auditlog::fulltext::FULLTEXT_DIR));

    if spec.rebuild {
        let base = ("default".to_string(), spec.options.clone());
        let order = match &spec.rebuild_variant {
            Some(v) => vec![&base, v, v, &base],
            None => vec![&base],
        };
        for (name, opts) in order {
            let (secs, cpu) = rebuild(&on, opts)?;
            if spec.rebuild_variant.is_some() {
                let cpu_us = cpu * 1e6 / events as f64;
                rep.rebuild_ab
                    .push((name.clone(), events as f64 / secs, cpu_us));
            }
            if name == "default" && rep.rebuild_eps.is_none() {
                rep.rebuild_eps = Some(events as f64 / secs);
                rep.rebuild_runs_per_s = Some(spec.runs as f64 / secs);
                rep.rebuild_cpu_us_per_event = Some(cpu * 1e6 / events as f64);
            }
        }
    }
    rep.index_bytes = dir_bytes(&on.join(auditlog::fulltext::FULLTEXT_DIR));

    // Search latency over the whole index, read-only as a CLI would be.
    let ft = FullText::open_read_only(&on)?;
    let mut w = Workload::new(1);
    let mut hist = Histogram::<u64>::new(3).map_err(|e| FullTextError::Corrupt(e.to_string()))?;
    let mut hits_total = 0usize;
    for i in 0..spec.queries {
        let (q, filters) = match i % 6 {
            0 => (w.word().to_string(), Filters::default()),
            1 => (w.words(2), Filters::default()),
            2 => (format!("\"{}\"", w.words(2)), Filters::default()),
            3 => (
                "error:certificate".to_string(),
                Filters {
                    skill: Some(SKILLS[i % SKILLS.len()].to_string()),
                    status: Some("error".into()),
                    ..Filters::default()
                },
            ),
            4 => (
                format!("tool:{} AND error_type:timeout", TOOLS[i % TOOLS.len()]),
                Filters::default(),
            ),
            _ => (
                w.words(2).replace(' ', " OR "),
                Filters {
                    channel: Some(format!("ch-{}", i % 200)),
                    ..Filters::default()
                },
            ),
        };
        let t = Instant::now();
        let hits = ft.search(&q, &filters, 10)?;
        let us = t.elapsed().as_micros() as u64;
        hits_total += hits.len();
        let _ = hist.record(us.max(1));
    }
    rep.searches = spec.queries as u64;
    rep.search_median_us = hist.value_at_quantile(0.5);
    rep.search_p99_us = hist.value_at_quantile(0.99);
    rep.search_max_us = hist.max();
    rep.avg_hits = hits_total as f64 / spec.queries.max(1) as f64;
    Ok(rep)
}

/// A steady ingest rate held for a while with the indexer following, and
/// the lag sampled over time (docs/benchmarks.md, "Full-text search").
#[derive(Debug, Clone)]
pub struct PacedSpec {
    /// Target events/s (appended in `batch`-event batches on a schedule).
    pub eps: f64,
    /// How long the rate is held.
    pub secs: f64,
    /// How often the lag is sampled.
    pub sample_every: Duration,
    pub logs_per_run: u32,
    pub batch: usize,
    pub options: FullTextOptions,
}

/// One lag sample: seconds since ingest started, events behind, how long
/// the oldest of them has waited as the indexer reports it (`Lag::seconds`,
/// timed from when the indexer first saw them in the head), and as the
/// producer's own append times say (`appended_seconds`: since the oldest
/// unsearchable event was appended; the stricter of the two).
#[derive(Debug, Clone, Copy, Default)]
pub struct LagSample {
    pub at: f64,
    pub events: u64,
    pub seconds: f64,
    pub appended_seconds: f64,
}

/// When the producer had appended how many events: (seconds since start,
/// events appended so far), in order.
type Appended = std::sync::Mutex<Vec<(f64, u64)>>;

/// A lag sample now: `appended` says when the oldest event not yet
/// searchable went in.
fn sample(ix: &mut auditlog::fulltext::Indexer, t0: Instant, appended: &Appended) -> LagSample {
    let l = ix.lag();
    let at = t0.elapsed().as_secs_f64();
    let log = appended.lock().unwrap_or_else(|p| p.into_inner());
    let total = log.last().map_or(0, |e| e.1);
    let searchable = total.saturating_sub(l.events);
    // The first append that took the count past what is searchable.
    let i = log.partition_point(|e| e.1 <= searchable);
    let appended_seconds = if l.events == 0 {
        0.0
    } else {
        log.get(i).map_or(0.0, |e| (at - e.0).max(0.0))
    };
    LagSample {
        at,
        events: l.events,
        seconds: l.seconds,
        appended_seconds,
    }
}

/// The figures of a paced run.
#[derive(Debug, Clone, Default)]
pub struct PacedReport {
    pub target_eps: f64,
    /// Events appended divided by the ingest time (below the target when
    /// the producer could not keep the schedule).
    pub achieved_eps: f64,
    pub events: u64,
    pub ingest_seconds: f64,
    /// Largest lag seen while ingest ran (indexer's view, producer's view).
    pub max_lag_seconds: f64,
    pub max_appended_lag_seconds: f64,
    pub max_lag_events: u64,
    /// From the end of ingest until everything was searchable.
    pub catch_up_seconds: f64,
    /// Samples, during ingest and through the catch-up.
    pub lag: Vec<LagSample>,
    /// The indexer's commits, documents written, and how many of those
    /// replaced a committed document of their run (re-indexed).
    pub commits: u64,
    pub docs_written: u64,
    pub docs_replaced: u64,
}

impl PacedReport {
    pub fn to_json(&self) -> String {
        let f = |v: f64| {
            let mut s = String::new();
            json_f64((v * 1000.0).round() / 1000.0, &mut s);
            s
        };
        let samples: Vec<String> = self
            .lag
            .iter()
            .map(|l| {
                format!(
                    "[{},{},{},{}]",
                    f(l.at),
                    l.events,
                    f(l.seconds),
                    f(l.appended_seconds)
                )
            })
            .collect();
        format!(
            "{{\"paced\":true,\"target_eps\":{},\"achieved_eps\":{},\"events\":{},\"ingest_seconds\":{},\"max_lag_seconds\":{},\"max_appended_lag_seconds\":{},\"max_lag_events\":{},\"catch_up_seconds\":{},\"commits\":{},\"docs_written\":{},\"docs_replaced\":{},\"lag_at_events_seconds_appended_seconds\":[{}]}}",
            f(self.target_eps),
            f(self.achieved_eps),
            self.events,
            f(self.ingest_seconds),
            f(self.max_lag_seconds),
            f(self.max_appended_lag_seconds),
            self.max_lag_events,
            f(self.catch_up_seconds),
            self.commits,
            self.docs_written,
            self.docs_replaced,
            samples.join(",")
        )
    }
}

/// Generate, encode and append the workload on a schedule of `eps`
/// events/s for `secs` seconds (the producer's own generating and
/// encoding are on its thread, as in a gateway); returns events appended.
fn paced_ingest(
    log: &Log,
    spec: &PacedSpec,
    done: &AtomicBool,
    t0: Instant,
    appended: &Appended,
) -> auditlog::Result<u64> {
    let mut w = Workload::new(spec.logs_per_run);
    let total = (spec.eps * spec.secs) as u64;
    let mut buf = Vec::with_capacity(spec.batch + 16);
    let mut events = 0u64;
    let mut run = 0u64;
    let mut last = None;
    while events < total {
        while buf.len() < spec.batch {
            w.run(run, &mut buf);
            run += 1;
        }
        let due = t0 + Duration::from_secs_f64(events as f64 / spec.eps);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        events += buf.len() as u64;
        last = Some(log.append_encoded(EncodedBatch::encode(&buf)?)?);
        buf.clear();
        appended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((t0.elapsed().as_secs_f64(), events));
    }
    if let Some(r) = last {
        r.wait()?;
    }
    log.flush()?;
    done.store(true, Ordering::Release);
    Ok(events)
}

/// Hold `spec.eps` events/s for `spec.secs` with the indexer following,
/// sampling its lag, then wait until it has caught up. Uses `dir/paced`
/// (removed afterwards).
pub fn measure_paced(dir: &Path, spec: &PacedSpec) -> Result<PacedReport, FullTextError> {
    let on = dir.join("paced");
    let mut lws = open_log(Config::new(&on), &spec.options).map_err(bench_err)?;
    if let Some(e) = lws.search_error.take() {
        return Err(e);
    }
    let mut ix = lws.search.take().ok_or(FullTextError::NotWritable)?;
    let done = AtomicBool::new(false);
    let t0 = Instant::now();
    let mut rep = PacedReport {
        target_eps: spec.eps,
        ..PacedReport::default()
    };
    let appended = Appended::default();
    let res = std::thread::scope(|s| {
        let h = s.spawn(|| paced_ingest(&lws.log, spec, &done, t0, &appended));
        while !done.load(Ordering::Acquire) && !h.is_finished() {
            rep.lag.push(sample(&mut ix, t0, &appended));
            std::thread::sleep(spec.sample_every);
        }
        h.join()
    });
    let events = res
        .map_err(|_| FullTextError::NotWritable)?
        .map_err(bench_err)?;
    let t_end = Instant::now();
    rep.events = events;
    rep.ingest_seconds = (t_end - t0).as_secs_f64();
    rep.achieved_eps = events as f64 / rep.ingest_seconds;
    rep.max_lag_seconds = rep.lag.iter().map(|l| l.seconds).fold(0.0, f64::max);
    rep.max_appended_lag_seconds = rep
        .lag
        .iter()
        .map(|l| l.appended_seconds)
        .fold(0.0, f64::max);
    rep.max_lag_events = rep.lag.iter().map(|l| l.events).max().unwrap_or(0);
    // Through the catch-up: keep sampling until nothing is behind.
    loop {
        let l = sample(&mut ix, t0, &appended);
        rep.lag.push(l);
        if l.events == 0 {
            break;
        }
        if let Some(e) = ix.error() {
            return Err(FullTextError::Corrupt(e));
        }
        if t_end.elapsed() > Duration::from_secs(600) {
            return Err(FullTextError::Corrupt("no catch-up within 600 s".into()));
        }
        std::thread::sleep(spec.sample_every);
    }
    rep.catch_up_seconds = t_end.elapsed().as_secs_f64();
    rep.commits = ix.commits();
    (rep.docs_written, rep.docs_replaced) = ix.documents_written();
    ix.stop();
    lws.log.close().map_err(bench_err)?;
    let _ = std::fs::remove_dir_all(&on);
    Ok(rep)
}

/// Bulk indexing settings for the rebuild A/B: larger batches (fewer
/// commits every 4 s, fewer and larger tantivy segments) and a larger
/// budget.
pub fn bulk_variant() -> (String, FullTextOptions) {
    (
        "bulk".to_string(),
        FullTextOptions {
            max_batch_events: 1_000_000,
            max_batch_runs: 250_000,
            max_batch_bytes: 256 << 20,
            memory_budget_bytes: 256 << 20,
            commit_interval: Duration::from_secs(4),
            ..FullTextOptions::default()
        },
    )
}
