//! `auditlog bench`: the load run (docs/benchmarks.md). A synthetic gateway
//! workload is appended by producer threads into a log (in a temporary
//! folder unless `--dir`), while its indexes are built; then the same
//! workload and the same questions go to the baselines a gateway has today
//! (SQLite with the executus-style schema, daily JSONL files), and one
//! report puts every figure beside each baseline's, with the ratio and the
//! durability level of each line.
//!
//! Phases, in order: disk probe; auditlog peak ingest (durable, indexes
//! built as segments seal); index catch-up; opening the log in a new
//! process (wall time and the child's peak RSS); queries after ingest; mixed
//! read/write (ingest goes on for `--mixed-secs` while a reader thread
//! asks every query kind in turn); a phase paced at 80% of
//! the peak (p99 append-to-durable); auditlog with no sync (the like of the
//! unsynced baselines); SQLite WAL synchronous=FULL (+ queries, + mixed) and
//! NORMAL; JSONL flushed per line and fdatasynced every N lines; `auditlog
//! ingest FILE` as a child process. `--quick` skips the baselines and the
//! unsynced line; `--duration` runs the sustained mode instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::ProgressBar;

use auditlog::event::json::write_event;
use auditlog::query::{BackgroundIndexer, Engine, IndexOnSeal};
use auditlog::{Config, Durability, Event, Log};
use auditlog_terminal::{progress, CliError, CliResult, Counts, Out};

use crate::baselines::{self, JsonlMode, SqliteSync};
use crate::ingest::{run_phase, Phase, PhaseResult};
use crate::queries::{
    self, auditlog_query, sqlite_query, time_kind, view_query, KindTiming, QuerySet, KINDS,
};
use crate::report::{CliIngest, OpenCost, OpenQuery, Paced, QueryRow, Report, Sustained};
use crate::workload::WorkloadSpec;
use crate::{dir_bytes, retag, shift, IngestLine, Lat, Machine, RssProbe};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Approximate number of events to write (ignored with --duration).
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,
    /// Sustained mode: append for this long (e.g. 60s, 10m), looping over
    /// the workload, with small segments and retention during the run.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Sustained mode: pace the producers to this many events/s in all
    /// (default: as fast as they go). The "derived data keeps up"
    /// aim is stated at 80% of the durable peak: measure the peak first,
    /// then give 0.8 of it here.
    #[arg(long, requires = "duration")]
    pub rate: Option<f64>,
    /// Producer threads appending at once.
    #[arg(long, default_value_t = 2)]
    pub producers: usize,
    /// Events per append call (1 = every event appended on its own).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// auditlog's policy for the main line: every-batch (group commit +
    /// fdatasync), interval:MS, or never.
    #[arg(long, default_value = "every-batch")]
    pub durability: String,
    /// Simulated days the workload spans.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Mean tool calls per run.
    #[arg(long, default_value_t = 3)]
    pub tool_calls: u32,
    /// Probability that a tool call fails.
    #[arg(long, default_value_t = 0.05)]
    pub fail_rate: f64,
    /// Probability that a run starts a sub-run.
    #[arg(long, default_value_t = 0.2)]
    pub sub_run_rate: f64,
    /// Probability that a run is a dry run.
    #[arg(long, default_value_t = 0.02)]
    pub dry_run_rate: f64,
    /// Probability that a run never finishes.
    #[arg(long, default_value_t = 0.01)]
    pub unfinished_rate: f64,
    /// Segment size cap in MiB (default 256; 32 in sustained mode).
    #[arg(long)]
    pub segment_mb: Option<u64>,
    /// Sustained mode: keep this many simulated days; older segments are
    /// dropped by retention while the run goes on.
    #[arg(long, default_value_t = 3)]
    pub retain_days: u32,
    /// Skip the baselines (and auditlog's unsynced line): a quick run.
    #[arg(long)]
    pub quick: bool,
    /// Skip the child-process measurements: `auditlog ingest FILE`, and the
    /// time and memory to open the log in a new process.
    #[arg(long)]
    pub no_cli: bool,
    /// Time budget per query kind and system, milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub query_ms: u64,
    /// Length of the mixed read/write phase, seconds (at most a fifth of
    /// the events are appended in it).
    #[arg(long, default_value_t = 10.0)]
    pub mixed_secs: f64,
    /// Length of the phase paced at 80% of the peak, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub paced_secs: f64,
    /// Pace that phase at this many events/s instead of 80% of the
    /// measured peak (latency below saturation at a rate you choose).
    #[arg(long)]
    pub paced_eps: Option<f64>,
    /// Time each append of the paced phase (in the sustained mode: of the
    /// whole run) by stage (queue, gather, write, to-sync, fdatasync,
    /// complete, wake; src/stages.rs), and sum the stages of the appends
    /// slower than this many ms apart.
    #[arg(long, value_name = "SLOW_MS")]
    pub stages: Option<f64>,
    /// Events per SQLite transaction.
    #[arg(long, default_value_t = 1000)]
    pub txn: usize,
    /// JSONL lines between fdatasyncs.
    #[arg(long, default_value_t = 1000)]
    pub sync_every: usize,
    /// Also measure full-text search (indexing throughput, lag, latency).
    #[arg(long)]
    pub search: bool,
    /// Runs written for the full-text measurement.
    #[arg(long, default_value_t = 100_000)]
    pub search_runs: u64,
    /// Full-text: instead of the burst measurement, hold this many
    /// events/s for `--search-secs` with the indexer following, and report
    /// its lag over time.
    #[arg(long)]
    pub search_eps: Option<f64>,
    /// Full-text: also rebuild with bulk settings (1M-event batches,
    /// commits every 4 s, 256 MB tantivy budget), A B B A against the defaults.
    #[arg(long)]
    pub search_ab: bool,
    /// Full-text: with `--search-eps`, write an SVG plot of the lag over
    /// time here.
    #[arg(long)]
    pub search_plot: Option<PathBuf>,
    /// Full-text: seconds the `--search-eps` rate is held.
    #[arg(long, default_value_t = 30.0)]
    pub search_secs: f64,
    /// Full-text indexer settings to compare (default: the library's;
    /// `FullTextOptions`): events per batch...
    #[arg(long)]
    pub search_batch_events: Option<usize>,
    /// ...milliseconds between commits while following...
    #[arg(long)]
    pub search_commit_ms: Option<u64>,
    /// ...tantivy's indexing memory in MiB...
    #[arg(long)]
    pub search_budget_mb: Option<usize>,
    /// ...segments of a size before tantivy merges them...
    #[arg(long)]
    pub search_merge_segments: Option<usize>,
    /// ...and stored fields without lz4 compression.
    #[arg(long)]
    pub search_store_plain: bool,
    /// Run the tool-call benchmark instead of the load run: `--events`
    /// standalone tool calls into auditlog and into SQLite with the
    /// gateways' own table and indexes; the gateways' questions timed on
    /// both (docs/benchmarks.md, "Tool calls").
    #[arg(long)]
    pub calls: bool,
    /// Tool calls: sessions the calls are spread over.
    #[arg(long, default_value_t = 50_000)]
    pub sessions: u32,
    /// Tool calls: time the questions again over the data an earlier run
    /// with the same workload left in `--dir` (what is missing is loaded).
    #[arg(long, requires = "calls")]
    pub reuse: bool,
    /// Tool calls: only these questions (comma-separated names).
    #[arg(long, requires = "calls", value_delimiter = ',')]
    pub questions: Vec<String>,
    /// Time only the query phase, auditlog beside SQLite, over the log and
    /// the SQLite database kept in `--dir` (built there first, from the
    /// same workload, if missing): the load run's queries after ingest
    /// without its other phases (docs/benchmarks.md, issue 17, "q27").
    #[arg(long, conflicts_with_all = ["calls", "duration"])]
    pub queries_only: bool,
    /// Pin the producer threads (and their latency waiters) to the first
    /// CPU and everything else (the engine's writer, syncer and indexers,
    /// the baselines) to the last: where the append-to-durable time goes
    /// when producers cannot take the engine's core. Linux only.
    #[arg(long)]
    pub pin: bool,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write an SVG plot of throughput, p99 latency and memory over time.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also write the JSON report to this file (with the table on stdout).
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

pub fn parse_durability(s: &str) -> Result<Durability, CliError> {
    match s {
        "every-batch" => Ok(Durability::EveryBatch),
        "never" => Ok(Durability::Never),
        other => match other
            .strip_prefix("interval:")
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            Some(ms) => Ok(Durability::Interval(Duration::from_millis(ms))),
            None => Err(CliError::usage(format!(
                "--durability {other:?}: use every-batch, never or interval:MS"
            ))),
        },
    }
}

fn durability_text(d: Durability) -> (&'static str, String, bool) {
    match d {
        Durability::EveryBatch => (
            "every-batch",
            "durable when the receipt completes (group commit, fdatasync per block)".into(),
            true,
        ),
        Durability::Interval(i) => (
            "interval",
            format!(
                "durable within {} ms (fdatasync at most every {} ms)",
                i.as_millis(),
                i.as_millis()
            ),
            true,
        ),
        Durability::Never => (
            "never",
            "written to the OS page cache when the receipt completes: never synced".into(),
            false,
        ),
    }
}

/// The workload the arguments describe (the sustained mode loops over at
/// most 4M events).
pub(crate) fn workload_spec(a: &BenchArgs) -> WorkloadSpec {
    let mut spec = WorkloadSpec {
        days: a.days.max(1),
        tool_calls: a.tool_calls,
        fail_rate: a.fail_rate,
        sub_run_rate: a.sub_run_rate,
        dry_run_rate: a.dry_run_rate,
        unfinished_rate: a.unfinished_rate,
        ..WorkloadSpec::default()
    };
    let events_wanted = if a.duration.is_some() {
        a.events.min(4_000_000)
    } else {
        a.events
    };
    spec.runs = runs_for_events(&spec, events_wanted.max(1));
    spec
}

/// Top-level runs needed for about `events` events.
pub fn runs_for_events(spec: &WorkloadSpec, events: u64) -> u64 {
    let sample = 2_000u64;
    let n = spec.events(0, sample).count() as u64;
    (events * sample / n.max(1)).max(1)
}

/// Generate each producer's share of the workload up front, so the timed
/// part measures the log, not the generator (which costs more per event
/// than an append). Producer `p` gets runs `p, p + P, p + 2P, ...`, so the
/// producers move through simulated time together, as a gateway's worker
/// threads do.
pub fn pregenerate(spec: &WorkloadSpec, producers: usize) -> Vec<Vec<Event>> {
    let producers = producers.max(1) as u64;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut i = p;
                    while i < spec.runs {
                        out.extend(spec.events(i, i + 1));
                        i += producers;
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Move each share back so that its first event is at `origin` again
/// (phases that loop move each share on by a whole number of passes).
fn restore(shares: &mut [Vec<Event>], origin: &[i64]) {
    for (share, o) in shares.iter_mut().zip(origin) {
        let delta = share.first().map_or(0, |e| e.ts - o);
        for ev in share.iter_mut() {
            ev.ts -= delta;
        }
    }
}

pub(crate) fn bar(len: u64, label: &str) -> ProgressBar {
    progress(Some(len), &format!("{label:<28}"), Counts::Items(""))
}

fn note(json: bool, msg: &str) {
    if !json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("{msg}");
    }
}

fn failed(what: &str) -> impl Fn(String) -> CliError + '_ {
    move |e| CliError::failed(format!("{what}: {e}"))
}

/// An auditlog log with the library's indexer thread (as `AuditStore` and
/// `ingest` run it): ingest goes on while sealed segments are indexed, and
/// queries are answered while it builds.
pub(crate) struct Indexed {
    pub(crate) log: Log,
    pub(crate) engine: Arc<Mutex<Engine>>,
    indexer: Option<BackgroundIndexer>,
}

impl Indexed {
    pub(crate) fn open(mut cfg: Config) -> Result<Indexed, CliError> {
        let on_seal = IndexOnSeal::hook(&mut cfg);
        let log = Log::open(cfg)?;
        let indexer = on_seal.start(&log)?;
        Ok(Indexed {
            engine: indexer.engine().clone(),
            log,
            indexer: Some(indexer),
        })
    }

    pub(crate) fn close(mut self) -> Result<(), CliError> {
        if let Some(mut ix) = self.indexer.take() {
            ix.stop();
        }
        drop(self.engine);
        self.log.close()?;
        Ok(())
    }
}

fn auditlog_line(
    name: &str,
    policy: Durability,
    args: &BenchArgs,
    r: &PhaseResult,
    dir: &Path,
    rss: Option<u64>,
) -> IngestLine {
    let (pname, text, durable) = durability_text(policy);
    IngestLine {
        system: name.into(),
        config: format!(
            "{pname}, {} producer(s), {} event(s) per append",
            args.producers, args.batch
        ),
        durability: text,
        durable,
        threads: args.producers,
        events: r.events,
        seconds: r.seconds,
        data_bytes: dir_bytes(dir, Some(".seg")),
        disk_bytes: dir_bytes(dir, None),
        append: Lat::of(&r.append),
        to_durable: Lat::of(&r.to_durable),
        rss_delta_bytes: rss,
    }
}

/// Run every query kind in rounds until `stop`, one timing per query.
/// `ask` returns the answer's size and the time to count (it may leave
/// out waiting for a lock).
fn query_rounds<E: std::fmt::Display>(
    stop: &AtomicBool,
    mut ask: impl FnMut(usize, usize) -> Result<(u64, Duration), E>,
) -> Vec<KindTiming> {
    let mut t: Vec<KindTiming> = KINDS.iter().map(|_| KindTiming::new()).collect();
    let mut i = 0usize;
    'outer: loop {
        for (k, kt) in t.iter_mut().enumerate() {
            if stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            match ask(k, i) {
                Ok((n, d)) => {
                    crate::record(&mut kt.hist, d);
                    kt.sizes.push(n);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "query during the mixed phase");
                    break 'outer;
                }
            }
        }
        i += 1;
    }
    t
}

/// Run the load run; `dir` keeps the log there instead of in a temporary
/// folder.
pub fn bench(dir: Option<&Path>, a: BenchArgs) -> CliResult {
    if a.calls {
        return calls_bench(dir, &a);
    }
    if a.queries_only {
        return crate::queries_only::queries_only(dir, &a);
    }
    let policy = parse_durability(&a.durability)?;
    if a.producers == 0 || a.producers > 256 {
        return Err(CliError::usage("--producers must be within 1..=256"));
    }
    let mut machine = Machine::probe();
    let pin = match a.pin {
        false => None,
        true => {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            // Before the log opens: its threads inherit this thread's CPU.
            if cpus < 2 || auditlog::internals::priority::pin_current_thread(&[cpus - 1]).is_err() {
                return Err(CliError::usage(
                    "--pin needs Linux and at least two CPUs this process may use",
                ));
            }
            Some(0)
        }
    };
    let tmp = tempfile::Builder::new()
        .prefix("auditlog-bench")
        .tempdir()
        .map_err(|e| CliError::failed(format!("creating a temporary folder: {e}")))?;
    let log_dir: PathBuf = match dir {
        Some(d) => {
            if !a.reuse && std::fs::read_dir(d).is_ok_and(|mut rd| rd.next().is_some()) {
                return Err(CliError::usage(format!(
                    "{}: the load run writes a new log; name an empty or missing folder with --dir",
                    d.display()
                )));
            }
            d.to_path_buf()
        }
        None => tmp.path().join("auditlog"),
    };
    let sustained = a.duration.is_some();
    let spec = workload_spec(&a);
    note(
        a.json,
        &format!("generating the workload ({} runs) ...", spec.runs),
    );
    let mut shares = pregenerate(&spec, a.producers);
    let total: u64 = shares.iter().map(|s| s.len() as u64).sum();
    let mean_json = {
        let mut s = String::new();
        let sample: Vec<&Event> = shares.iter().flatten().take(2000).collect();
        for ev in &sample {
            write_event(ev, None, &mut s);
            s.push('\n');
        }
        s.len() as f64 / sample.len().max(1) as f64
    };
    let qs = QuerySet::from_events(&shares, 256);
    let day: i64 = 86_400_000_000;
    let step = ((qs.last_ts - qs.first_ts).div_euclid(day) + 2) * day;

    let mut rep = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        events: total,
        runs: spec.runs,
        producers: a.producers,
        batch: a.batch.max(1),
        days: spec.days,
        mean_json_bytes: mean_json,
        ..Report::default()
    };

    let probe_bytes = (total * 250).clamp(16 << 20, 256 << 20);
    rep.disk_mbps = crate::disk_probe(tmp.path(), probe_bytes).ok();

    // Phase A: auditlog at its peak (or sustained), indexes built as
    // segments seal.
    let mut cfg = Config::new(&log_dir);
    cfg.durability = policy;
    cfg.segment_max_bytes = a.segment_mb.unwrap_or(if sustained { 32 } else { 256 }) << 20;
    let seal_clock = sustained.then(|| {
        let c = Arc::new(crate::seal_clock::SealClock::default());
        cfg.seal_hooks.push(c.hook());
        c
    });
    let ix = Indexed::open(cfg)?;
    let mut ph = Phase::new(a.batch);
    ph.seal_clock = seal_clock;
    ph.pin_producers = pin;
    ph.index_lag = true;
    if let Some(d) = a.duration {
        ph.deadline = Some(d);
        ph.rate = a.rate.filter(|r| *r > 0.0);
        ph.loop_shift = Some(step);
        ph.retain_keep = Some(a.retain_days.max(1) as i64 * day);
        ph.progress = bar(d.as_secs(), "sustained (events)");
    } else {
        ph.sample_every = Duration::from_millis(250);
        ph.progress = bar(total, "auditlog ingest");
    }
    let probe = RssProbe::start();
    // `--stages` times the sustained run's appends (the paced phase's
    // otherwise).
    let sustained_stages = sustained && a.stages.is_some();
    if let (true, Some(slow_ms)) = (sustained_stages, a.stages) {
        auditlog::internals::stages::enable(Duration::from_secs_f64(slow_ms.max(0.0) / 1e3));
    }
    let res = run_phase(&ix.log, &mut shares, &ph)?;
    let stages = sustained_stages.then(|| {
        auditlog::internals::stages::disable();
        auditlog::internals::stages::report()
    });
    let rss = probe.delta();
    ph.progress.finish_and_clear();
    rep.timeline = res.timeline.clone();
    rep.peak_threads = (res.threads.clone(), res.seconds);
    rep.peak_machine = res.machine;
    let peak = auditlog_line("auditlog", policy, &a, &res, &log_dir, rss);
    let peak_eps = peak.eps();
    rep.lines.push(peak);

    if sustained {
        let tl = &res.timeline;
        let half = tl.len() / 2;
        let third = (tl.len() / 3).max(1);
        let mean = |s: &[crate::ingest::Sample]| {
            s.iter().map(|x| x.events_per_sec).sum::<f64>() / s.len().max(1) as f64
        };
        rep.sustained = Some(Sustained {
            seconds: res.seconds,
            events: res.events,
            passes: res.passes,
            segments_dropped: res.retained_segments,
            events_dropped: res.retained_events,
            segments_max: tl.iter().map(|s| s.segments).max().unwrap_or(0),
            rss_max_first_half: tl[..half].iter().map(|s| s.rss_bytes).max().unwrap_or(0),
            rss_max_second_half: tl[half..].iter().map(|s| s.rss_bytes).max().unwrap_or(0),
            eps_first_third: mean(&tl[..third.min(tl.len())]),
            eps_last_third: mean(&tl[tl.len().saturating_sub(third)..]),
            index_lag_max_segments: tl.iter().map(|s| s.unindexed_segments).max().unwrap_or(0),
            index_lag_max_events: tl.iter().map(|s| s.unindexed_events).max().unwrap_or(0),
            index_lag_median_segments: median_lag(tl),
            samples_within_one_roll: tl.iter().filter(|s| s.unindexed_segments <= 1).count() as u64,
            samples: tl.len() as u64,
            rate: ph.rate,
            seal_to_index: res.seal_to_index.clone().unwrap_or_default(),
            stages,
        });
        ix.close()?;
        return finish(&a, rep, &mut machine);
    }

    // Indexes: what was not indexed while ingest ran.
    let t = Instant::now();
    ix.engine
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .refresh()?;
    rep.index_catch_up_seconds = Some(t.elapsed().as_secs_f64());

    // Opening the log afresh: a new process reads the manifest, maps the
    // segments and stored indexes and answers one query (the writer here
    // stays open, as a running gateway's would).
    if !a.no_cli {
        note(a.json, "auditlog open (child processes) ...");
        rep.open = Some(open_cost(&log_dir, ix.log.head().next_lsn, &qs)?);
    }

    // Queries after ingest.
    note(a.json, "auditlog queries ...");
    let budget = Duration::from_millis(a.query_ms);
    let mut after_a: Vec<KindTiming> = Vec::new();
    {
        let mut eng = ix.engine.lock().unwrap_or_else(|p| p.into_inner());
        for k in 0..KINDS.len() {
            after_a.push(time_kind(budget, 3, 2000, |i| {
                auditlog_query(&mut eng, &qs, k, i)
            })?);
        }
    }

    // Mixed: ingest goes on (the same workload moved on in time) while a
    // reader thread asks every kind in turn.
    let origin: Vec<i64> = shares
        .iter()
        .map(|s| s.first().map_or(0, |e| e.ts))
        .collect();
    shift(&mut shares, step);
    retag(&mut shares, "~m");
    let mut ph = Phase::new(a.batch);
    ph.pin_producers = pin;
    ph.loop_shift = Some(step);
    ph.deadline = Some(Duration::from_secs_f64(a.mixed_secs.max(0.1)));
    ph.progress = bar(
        (peak_eps * a.mixed_secs) as u64,
        "auditlog mixed read/write",
    );
    let stop = AtomicBool::new(false);
    let (mixed_res, mixed_a) = std::thread::scope(|s| {
        let eng = ix.engine.clone();
        let (stop, qs) = (&stop, &qs);
        let h = s.spawn(move || {
            // Answered from the indexes as the indexer thread keeps them
            // (it refreshes as segments seal): the time counted is the
            // query's, not the wait for the indexer's lock.
            query_rounds(stop, |k, i| {
                let e = eng.lock().unwrap_or_else(|p| p.into_inner());
                let t0 = Instant::now();
                let n = view_query(&e.view(), qs, k, i)?;
                Ok::<_, auditlog::Error>((n, t0.elapsed()))
            })
        });
        let r = run_phase(&ix.log, &mut shares, &ph);
        stop.store(true, Ordering::Relaxed);
        (r, h.join().unwrap_or_default())
    });
    let mixed_res = mixed_res?;
    ph.progress.finish_and_clear();
    let t = Instant::now();
    ix.engine
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .refresh()?;
    rep.mixed.auditlog_index_catch_up_seconds = Some(t.elapsed().as_secs_f64());
    rep.mixed.auditlog_eps = Some(mixed_res.events as f64 / mixed_res.seconds.max(1e-9));
    rep.mixed.auditlog_events = mixed_res.events;

    // Paced at 80% of the peak: append-to-durable latency below saturation.
    shift(&mut shares, step);
    retag(&mut shares, "~p");
    let mut ph = Phase::new(a.batch);
    ph.pin_producers = pin;
    let target = a.paced_eps.filter(|r| *r > 0.0).unwrap_or(peak_eps * 0.8);
    ph.rate = Some(target);
    ph.deadline = Some(Duration::from_secs_f64(a.paced_secs.max(0.1)));
    ph.loop_shift = Some(step);
    ph.progress = bar((target * a.paced_secs) as u64, "auditlog paced");
    if let Some(slow_ms) = a.stages {
        auditlog::internals::stages::enable(Duration::from_secs_f64(slow_ms.max(0.0) / 1e3));
    }
    let paced = run_phase(&ix.log, &mut shares, &ph)?;
    let stages = a.stages.map(|_| {
        auditlog::internals::stages::disable();
        auditlog::internals::stages::report()
    });
    ph.progress.finish_and_clear();
    rep.paced = Some(Paced {
        target_eps: target,
        of_peak: target / peak_eps.max(1e-9),
        achieved_eps: paced.events as f64 / paced.seconds.max(1e-9),
        events: paced.events,
        seconds: paced.seconds,
        to_durable: Lat::of(&paced.to_durable),
        threads: paced.threads.clone(),
        machine: paced.machine,
        stages,
    });
    restore(&mut shares, &origin);
    retag(&mut shares, "");
    ix.close()?;

    let mut rows: Vec<QueryRow> = KINDS
        .iter()
        .enumerate()
        .map(|(k, (kind, what))| QueryRow {
            kind: kind.to_string(),
            what: what.to_string(),
            auditlog_after: after_a[k].lat(),
            auditlog_mixed: mixed_a.get(k).and_then(KindTiming::lat),
            ..QueryRow::default()
        })
        .collect();

    if !a.quick {
        // auditlog with no sync: the like of the unsynced baselines.
        let dir = tmp.path().join("auditlog-never");
        let mut cfg = Config::new(&dir);
        cfg.durability = Durability::Never;
        let ix = Indexed::open(cfg)?;
        let mut ph = Phase::new(a.batch);
        ph.pin_producers = pin;
        ph.progress = bar(total, "auditlog ingest, no sync");
        let probe = RssProbe::start();
        let r = run_phase(&ix.log, &mut shares, &ph)?;
        let rss = probe.delta();
        ph.progress.finish_and_clear();
        ix.close()?;
        rep.lines.push(auditlog_line(
            "auditlog",
            Durability::Never,
            &a,
            &r,
            &dir,
            rss,
        ));
        let _ = std::fs::remove_dir_all(&dir);

        // SQLite, synchronous=FULL: ingest, queries, mixed.
        let dir = tmp.path().join("sqlite-full");
        let pb = bar(total, "sqlite WAL FULL ingest");
        let (line, mut conn, path) =
            baselines::sqlite_ingest(&dir, &shares, SqliteSync::Full, a.txn, &pb)
                .map_err(failed("sqlite"))?;
        pb.finish_and_clear();
        rep.lines.push(line);
        note(a.json, "sqlite queries ...");
        for (k, row) in rows.iter_mut().enumerate() {
            let t = time_kind(budget, 3, 2000, |i| sqlite_query(&conn, &qs, k, i))
                .map_err(|e| CliError::failed(format!("sqlite query: {e}")))?;
            row.sqlite_after = t.lat();
            row.answers_match = Some(queries::answers_match(&after_a[k].sizes, &t.sizes));
        }
        shift(&mut shares, step);
        retag(&mut shares, "~m");
        let pb = bar(total, "sqlite mixed read/write");
        let stop = AtomicBool::new(false);
        let (load, mixed_s) = std::thread::scope(|s| {
            let (stop, qs, path) = (&stop, &qs, &path);
            let h = s.spawn(move || match rusqlite::Connection::open(path) {
                Ok(rc) => {
                    let _ = rc.busy_timeout(Duration::from_secs(30));
                    query_rounds(stop, |k, i| {
                        let t0 = Instant::now();
                        let n = sqlite_query(&rc, qs, k, i)?;
                        Ok::<_, rusqlite::Error>((n, t0.elapsed()))
                    })
                }
                Err(_) => Vec::new(),
            });
            let r = baselines::sqlite_load(
                &mut conn,
                &shares,
                a.txn,
                None,
                Some(Duration::from_secs_f64(a.mixed_secs.max(0.1))),
                &pb,
            );
            stop.store(true, Ordering::Relaxed);
            (r, h.join().unwrap_or_default())
        });
        pb.finish_and_clear();
        restore(&mut shares, &origin);
        retag(&mut shares, "");
        let load = load.map_err(|e| CliError::failed(format!("sqlite: {e}")))?;
        rep.mixed.sqlite_eps = Some(load.events as f64 / load.seconds.max(1e-9));
        rep.mixed.sqlite_events = load.events;
        for (k, row) in rows.iter_mut().enumerate() {
            row.sqlite_mixed = mixed_s.get(k).and_then(KindTiming::lat);
        }
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);

        let dir = tmp.path().join("sqlite-normal");
        let pb = bar(total, "sqlite WAL NORMAL ingest");
        let (line, conn, _) =
            baselines::sqlite_ingest(&dir, &shares, SqliteSync::Normal, a.txn, &pb)
                .map_err(failed("sqlite"))?;
        pb.finish_and_clear();
        drop(conn);
        rep.lines.push(line);
        let _ = std::fs::remove_dir_all(&dir);

        for mode in [
            JsonlMode::FlushPerLine,
            JsonlMode::SyncEvery(a.sync_every.max(1)),
        ] {
            let dir = tmp.path().join("jsonl");
            let pb = bar(total, "jsonl daily files");
            let line = baselines::jsonl_ingest(&dir, &shares, mode, &pb)
                .map_err(|e| CliError::failed(format!("jsonl: {e}")))?;
            pb.finish_and_clear();
            rep.lines.push(line);
            if matches!(mode, JsonlMode::SyncEvery(_)) {
                let t = time_kind(budget, 3, 200, |i| {
                    let d = qs.days[i % qs.days.len().max(1)].div_euclid(day);
                    baselines::jsonl_scan_errors(&dir, d)
                })
                .map_err(|e| CliError::failed(format!("jsonl scan: {e}")))?;
                if let Some(l) = t.lat() {
                    rep.jsonl_scan = Some((l, t.sizes.first().copied().unwrap_or(0)));
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    rep.queries = rows;

    if !a.no_cli {
        note(a.json, "auditlog ingest FILE (child process) ...");
        rep.cli = Some(cli_ingest(tmp.path(), &shares)?);
    }
    if let (true, Some(eps)) = (a.search, a.search_eps) {
        note(a.json, "full-text search at a steady rate ...");
        let spec = crate::search_bench::PacedSpec {
            eps: eps.max(1.0),
            secs: a.search_secs.max(1.0),
            sample_every: std::time::Duration::from_millis(500),
            logs_per_run: 3,
            batch: 1000,
            options: search_options(&a),
        };
        let r = crate::search_bench::measure_paced(&tmp.path().join("search"), &spec)
            .map_err(|e| CliError::failed(format!("full-text measurement: {e}")))?;
        if let Some(p) = &a.search_plot {
            let title = format!(
                "full-text search lag at {:.0} events/s for {:.0} s ({:.0} achieved)",
                r.target_eps, spec.secs, r.achieved_eps
            );
            let pts: Vec<(f64, f64, f64)> = r
                .lag
                .iter()
                .map(|l| (l.at, l.events as f64, l.appended_seconds))
                .collect();
            std::fs::write(p, crate::plot::lag_svg(&title, &pts))
                .map_err(|e| CliError::failed(format!("{}: {e}", p.display())))?;
        }
        rep.search = Some(r.to_json());
    } else if a.search {
        note(a.json, "full-text search measurement ...");
        let spec = crate::search_bench::BenchSpec {
            runs: a.search_runs.max(1),
            options: search_options(&a),
            rebuild_variant: a.search_ab.then(crate::search_bench::bulk_variant),
            ..crate::search_bench::BenchSpec::default()
        };
        let r = crate::search_bench::measure(&tmp.path().join("search"), &spec)
            .map_err(|e| CliError::failed(format!("full-text measurement: {e}")))?;
        rep.search = Some(r.to_json());
    }
    finish(&a, rep, &mut machine)
}

/// The full-text indexer's settings: the library's defaults, with the
/// `--search-*` settings given on the command line.
fn search_options(a: &BenchArgs) -> auditlog::fulltext::FullTextOptions {
    let d = auditlog::fulltext::FullTextOptions::default();
    // A larger batch raises the batch's run and text bounds in proportion.
    let scale = a
        .search_batch_events
        .map_or(1.0, |n| (n as f64 / d.max_batch_events as f64).max(1.0));
    auditlog::fulltext::FullTextOptions {
        max_batch_events: a.search_batch_events.unwrap_or(d.max_batch_events),
        max_batch_runs: (d.max_batch_runs as f64 * scale) as usize,
        max_batch_bytes: (d.max_batch_bytes as f64 * scale) as usize,
        commit_interval: a
            .search_commit_ms
            .map_or(d.commit_interval, std::time::Duration::from_millis),
        memory_budget_bytes: a
            .search_budget_mb
            .map_or(d.memory_budget_bytes, |mb| mb << 20),
        merge_min_segments: a.search_merge_segments.unwrap_or(d.merge_min_segments),
        compress_stored: d.compress_stored && !a.search_store_plain,
        ..d
    }
}

/// Write the workload as one JSONL file and time `auditlog ingest FILE` on
/// it in a child process (the same binary, a fresh log).
fn cli_ingest(tmp: &Path, shares: &[Vec<Event>]) -> Result<CliIngest, CliError> {
    let file = tmp.join("workload.jsonl");
    {
        let f = std::fs::File::create(&file)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut line = String::with_capacity(1024);
        for chunk in baselines::round_robin(shares, 1000) {
            for ev in chunk {
                line.clear();
                write_event(ev, None, &mut line);
                line.push('\n');
                w.write_all(line.as_bytes())?;
            }
        }
        w.flush()?;
    }
    let file_bytes = std::fs::metadata(&file)?.len();
    let exe = std::env::current_exe()?;
    let dir = tmp.join("cli-log");
    let mem_free_bytes_at_start = crate::meminfo_kb("MemFree:").map(|kb| kb << 10);
    let cpu_before = crate::threads::ended_children_cpu();
    let t = Instant::now();
    let out = std::process::Command::new(exe)
        .arg("--dir")
        .arg(&dir)
        .arg("ingest")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()?;
    let wall = t.elapsed().as_secs_f64();
    let cpu = crate::threads::ended_children_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.since(before));
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Err(CliError::failed(format!(
            "`auditlog ingest` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| CliError::failed(format!("`auditlog ingest` printed no summary: {text}")))?;
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    Ok(CliIngest {
        events: f("accepted") as u64,
        file_bytes,
        seconds: f("seconds"),
        events_per_sec: f("events_per_sec"),
        wall_seconds: wall,
        cpu_seconds: cpu.map(|c| c.total()),
        cpu_user_seconds: cpu.map(|c| c.user),
        cpu_sys_seconds: cpu.map(|c| c.sys),
        mem_free_bytes_at_start,
    })
}

/// Time and peak memory of child processes that each open the log at
/// `dir` and answer one query: a run by id, then a count over every
/// segment.
fn open_cost(dir: &Path, events: u64, qs: &QuerySet) -> Result<OpenCost, CliError> {
    let segments = auditlog::LogReader::open(dir)?.stats()?.segments;
    let mut asks: Vec<Vec<String>> = Vec::new();
    if let Some(id) = qs.runs.first() {
        asks.push(vec!["run".into(), id.clone()]);
    }
    if let Some(skill) = qs.skills.first() {
        asks.push(vec!["count".into(), "--skill".into(), skill.clone()]);
    }
    let exe = std::env::current_exe()?;
    let mut queries = Vec::new();
    for args in asks {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("--dir")
            .arg(dir)
            .args(&args)
            .env_remove("AUDITLOG_DIR");
        let r = crate::run_child(&mut cmd)?;
        if !r.output.status.success() {
            return Err(CliError::failed(format!(
                "`auditlog {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&r.output.stderr).trim()
            )));
        }
        queries.push(OpenQuery {
            command: args.join(" "),
            wall_seconds: r.wall.as_secs_f64(),
            peak_rss_bytes: r.peak_rss_bytes,
        });
    }
    Ok(OpenCost {
        events,
        segments,
        log_bytes: dir_bytes(dir, Some(".seg")),
        index_bytes: dir_bytes(dir, Some(".idx")) + dir_bytes(dir, Some(".aidx")),
        queries,
    })
}

fn finish(a: &BenchArgs, mut rep: Report, machine: &mut Machine) -> CliResult {
    machine.load_end = crate::loadavg();
    rep.machine = machine.clone();
    if let Some(p) = &a.plot {
        let title = format!(
            "auditlog load run: {} events, {} producer(s), batch {}",
            rep.lines.first().map_or(0, |l| l.events),
            rep.producers,
            rep.batch
        );
        let seal_lag = rep
            .sustained
            .as_ref()
            .map_or(&[][..], |u| &u.seal_to_index.indexed[..]);
        std::fs::write(p, crate::plot::svg(&title, &rep.timeline, seal_lag))
            .map_err(|e| CliError::failed(format!("{}: {e}", p.display())))?;
    }
    if let Some(p) = &a.json_out {
        std::fs::write(p, rep.to_json() + "\n")
            .map_err(|e| CliError::failed(format!("{}: {e}", p.display())))?;
    }
    let mut out = Out::new();
    if a.json {
        out.line(&rep.to_json())?;
    } else {
        out.line(rep.to_table().trim_end())?;
    }
    out.flush()
}

/// `bench --calls`: the tool-call benchmark (crate::calls_bench).
fn calls_bench(dir: Option<&Path>, a: &BenchArgs) -> CliResult {
    let tmp = tempfile::Builder::new()
        .prefix("auditlog-bench-calls")
        .tempdir()
        .map_err(|e| CliError::failed(format!("creating a temporary folder: {e}")))?;
    let root = match dir {
        Some(d) => {
            if !a.reuse && std::fs::read_dir(d).is_ok_and(|mut rd| rd.next().is_some()) {
                return Err(CliError::usage(format!(
                    "{}: the benchmark writes new data; name an empty or missing folder with --dir (or pass --reuse)",
                    d.display()
                )));
            }
            d.to_path_buf()
        }
        None => tmp.path().to_path_buf(),
    };
    let spec = crate::calls_bench::CallsSpec {
        events: a.events.max(1),
        days: a.days.max(1),
        sessions: a.sessions.max(1),
        fail_rate: a.fail_rate,
        batch: a.batch.max(1000),
        query_ms: a.query_ms,
        sqlite: !a.quick,
        reuse: a.reuse,
        only: a.questions.clone(),
        ..crate::calls_bench::CallsSpec::default()
    };
    let json = a.json;
    let r = crate::calls_bench::measure(&root, &spec, &|m| note(json, m))
        .map_err(|e| CliError::failed(format!("tool-call benchmark: {e}")))?;
    let mut out = Out::new();
    if json {
        out.line(&r.to_json())?;
    } else {
        out.line(r.to_table().trim_end())?;
    }
    if let Some(p) = &a.json_out {
        std::fs::write(p, r.to_json() + "\n")
            .map_err(|e| CliError::failed(format!("writing {}: {e}", p.display())))?;
    }
    out.flush()
}

/// The median of the sampled index lags, in sealed segments.
fn median_lag(tl: &[crate::ingest::Sample]) -> u64 {
    let mut v: Vec<u64> = tl.iter().map(|s| s.unindexed_segments).collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}
