//! `auditlog bench`: the load run. A synthetic gateway workload is appended
//! by producer threads into a log (in a temporary folder unless `--dir`),
//! and the run reports events/s, MB/s and append-to-durable latency.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use super::output::{table, Out};
use super::{CliError, CliResult, Ctx};
use crate::event::Event;
use crate::log::{Config, Durability, EncodedBatch, Log};
use crate::receipt::Receipt;
use crate::workload::WorkloadSpec;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Approximate number of events to write.
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,
    /// Producer threads appending at once.
    #[arg(long, default_value_t = 2)]
    pub producers: usize,
    /// Events per append call (1 = every event appended on its own).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// every-batch (group commit + fdatasync), interval:MS, or never.
    #[arg(long, default_value = "every-batch")]
    pub durability: String,
    /// Simulated days the workload spans.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn parse_durability(s: &str) -> Result<Durability, CliError> {
    match s {
        "every-batch" => Ok(Durability::EveryBatch),
        "never" => Ok(Durability::Never),
        other => match other.strip_prefix("interval:").and_then(|ms| ms.parse::<u64>().ok()) {
            Some(ms) => Ok(Durability::Interval(Duration::from_millis(ms))),
            None => Err(CliError::usage(format!(
                "--durability {other:?}: use every-batch, never or interval:MS"
            ))),
        },
    }
}

/// Figures of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestFigures {
    pub events: u64,
    pub seconds: f64,
    pub bytes_on_disk: u64,
    pub latency_us: Histogram<u64>,
    pub peak_rss_bytes: Option<u64>,
}

impl IngestFigures {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes_on_disk as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// Peak resident memory of this process (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Top-level runs needed for about `events` events.
pub fn runs_for_events(spec: &WorkloadSpec, events: u64) -> u64 {
    let sample = 2_000u64;
    let n = spec.events(0, sample).count() as u64;
    (events * sample / n.max(1)).max(1)
}

/// Generate each producer's share of the workload up front, so the timed
/// part measures the log, not the generator (which costs more per event
/// than an append).
pub fn pregenerate(spec: &WorkloadSpec, producers: usize) -> Vec<Vec<Event>> {
    let producers = producers.max(1) as u64;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let from = spec.runs * p / producers;
                let to = spec.runs * (p + 1) / producers;
                s.spawn(move || spec.events(from, to).collect::<Vec<Event>>())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    })
}

/// Append pre-generated events, one thread per share; measure throughput
/// and append-to-durable latency (each producer's receipts are awaited by a
/// companion thread that stamps them as they complete).
pub fn run_ingest(
    log: &Log,
    shares: &[Vec<Event>],
    batch: usize,
    pb: &ProgressBar,
) -> Result<IngestFigures, CliError> {
    let batch = batch.max(1);
    let started = Instant::now();
    let failed = AtomicBool::new(false);
    let hists: Vec<Result<(u64, Histogram<u64>), CliError>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .iter()
            .map(|share| {
                let failed = &failed;
                s.spawn(move || -> Result<(u64, Histogram<u64>), CliError> {
                    let (tx, rx) = crossbeam_channel::bounded::<(Instant, Receipt)>(1 << 16);
                    let waiter = std::thread::spawn(move || -> Result<Histogram<u64>, String> {
                        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                            .map_err(|e| e.to_string())?;
                        for (t0, r) in rx {
                            r.wait().map_err(|e| e.to_string())?;
                            let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
                        }
                        Ok(h)
                    });
                    let mut n = 0u64;
                    for chunk in share.chunks(batch) {
                        let t0 = Instant::now();
                        let enc = EncodedBatch::encode(chunk)?;
                        let r = log.append_encoded(enc)?;
                        n += chunk.len() as u64;
                        pb.inc(chunk.len() as u64);
                        if tx.send((t0, r)).is_err() || failed.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    drop(tx);
                    let h = waiter
                        .join()
                        .map_err(|_| CliError::failed("latency waiter panicked"))?
                        .map_err(|e| {
                            failed.store(true, Ordering::Relaxed);
                            CliError::failed(e)
                        })?;
                    Ok((n, h))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(CliError::failed("producer panicked"))))
            .collect()
    });
    log.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| CliError::failed(e.to_string()))?;
    let mut events = 0;
    for h in hists {
        let (n, h) = h?;
        events += n;
        latency.add(&h).map_err(|e| CliError::failed(e.to_string()))?;
    }
    Ok(IngestFigures {
        events,
        seconds,
        bytes_on_disk: dir_bytes(log.dir()),
        latency_us: latency,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

pub fn bench(ctx: &Ctx, a: BenchArgs) -> CliResult {
    let durability = parse_durability(&a.durability)?;
    let tmp;
    let dir: PathBuf = match &ctx.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().map_err(|e| CliError::failed(format!("creating a temporary folder: {e}")))?;
            tmp.path().join("log")
        }
    };
    let mut spec = WorkloadSpec { days: a.days, ..WorkloadSpec::default() };
    spec.runs = runs_for_events(&spec, a.events);
    let mut cfg = Config::new(&dir);
    cfg.durability = durability;
    let log = Log::open(cfg)?;
    let pb = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let pb = ProgressBar::new(a.events);
        if let Ok(st) = ProgressStyle::with_template("ingest [{bar:30}] {pos}/{len} events {per_sec} eta {eta}") {
            pb.set_style(st.progress_chars("=> "));
        }
        pb
    } else {
        ProgressBar::hidden()
    };
    let shares = pregenerate(&spec, a.producers);
    let f = run_ingest(&log, &shares, a.batch, &pb)?;
    pb.finish_and_clear();
    log.close()?;
    let q = |p: f64| f.latency_us.value_at_quantile(p) as f64 / 1000.0;
    let mut out = Out::new();
    if a.json {
        out.line(&format!(
            "{{\"events\":{},\"seconds\":{:.3},\"events_per_sec\":{:.0},\"mb_per_sec\":{:.1},\"bytes_per_event\":{:.1},\"durability\":\"{}\",\"producers\":{},\"batch\":{},\"append_to_durable_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}},\"peak_rss_bytes\":{}}}",
            f.events,
            f.seconds,
            f.events_per_sec(),
            f.mb_per_sec(),
            f.bytes_on_disk as f64 / f.events.max(1) as f64,
            a.durability,
            a.producers,
            a.batch,
            q(0.5),
            q(0.99),
            q(0.999),
            f.latency_us.max() as f64 / 1000.0,
            f.peak_rss_bytes.map_or("null".into(), |b| b.to_string()),
        ))?;
    } else {
        let rows = vec![
            vec!["events".into(), f.events.to_string()],
            vec!["seconds".into(), format!("{:.3}", f.seconds)],
            vec!["events/s".into(), format!("{:.0}", f.events_per_sec())],
            vec!["MB/s (on disk)".into(), format!("{:.1}", f.mb_per_sec())],
            vec!["bytes/event".into(), format!("{:.1}", f.bytes_on_disk as f64 / f.events.max(1) as f64)],
            vec!["durability".into(), a.durability.clone()],
            vec!["producers x batch".into(), format!("{} x {}", a.producers, a.batch)],
            vec!["append->durable p50 ms".into(), format!("{:.3}", q(0.5))],
            vec!["append->durable p99 ms".into(), format!("{:.3}", q(0.99))],
            vec!["append->durable p99.9 ms".into(), format!("{:.3}", q(0.999))],
            vec!["append->durable max ms".into(), format!("{:.3}", f.latency_us.max() as f64 / 1000.0)],
            vec!["peak RSS MiB".into(), f.peak_rss_bytes.map_or("?".into(), |b| format!("{:.1}", b as f64 / 1048576.0))],
        ];
        out.line(table(&["figure", "value"], &rows).trim_end())?;
    }
    out.flush()
}
