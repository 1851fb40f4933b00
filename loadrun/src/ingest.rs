//! One auditlog ingest phase: producer threads append pre-generated events
//! (encode + frame + CRC on the producer, then `append_encoded`), a
//! companion thread per producer awaits the receipts and stamps
//! append-to-durable latency, and a sampler records a timeline (events/s,
//! p99, memory, segments) for the plot and the sustained mode. A phase may
//! be paced to a rate, capped in events or time, loop over its workload
//! (moving it forward in simulated time each pass) and apply retention
//! while it runs.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use super::{hist, record, rss_bytes};
use crate::threads::{MachineCpu, Snapshot, ThreadTimes};
use auditlog::{EncodedBatch, Error, Event, Log, Micros, Receipt, Result};

/// How a phase runs.
#[derive(Clone)]
pub struct Phase {
    /// Events per append call.
    pub batch: usize,
    /// Total events/s to pace the producers to (`None`: as fast as they go).
    pub rate: Option<f64>,
    /// Stop after this many events in all.
    pub max_events: Option<u64>,
    /// Stop after this long.
    pub deadline: Option<Duration>,
    /// Loop over the workload until a limit is reached, moving it this many
    /// µs forward each pass (`None`: one pass).
    pub loop_shift: Option<Micros>,
    /// Timeline sample period.
    pub sample_every: Duration,
    /// Apply retention every second, keeping this many µs of simulated
    /// time behind the oldest producer's newest event.
    pub retain_keep: Option<Micros>,
    pub progress: ProgressBar,
    /// Pin the producer threads (and their latency waiters) to this CPU.
    pub pin_producers: Option<usize>,
    /// Sample how far the indexes lag (the log has an indexer that writes
    /// `STEM.idx` beside each segment it indexed).
    pub index_lag: bool,
    /// Time each sealed segment's image from its seal (the clock's hook is
    /// registered on the log's config).
    pub seal_clock: Option<std::sync::Arc<crate::seal_clock::SealClock>>,
}

impl Phase {
    pub fn new(batch: usize) -> Phase {
        Phase {
            batch: batch.max(1),
            rate: None,
            max_events: None,
            deadline: None,
            loop_shift: None,
            sample_every: Duration::from_secs(1),
            retain_keep: None,
            progress: ProgressBar::hidden(),
            pin_producers: None,
            index_lag: false,
            seal_clock: None,
        }
    }
}

/// One timeline sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Seconds since the phase started.
    pub t: f64,
    pub events_per_sec: f64,
    /// p99 append-to-durable over the sample period, ms (0 if none).
    pub p99_ms: f64,
    pub rss_bytes: u64,
    pub segments: u64,
    /// Sealed segments whose index file is not written yet, and the
    /// events in them (0 unless the phase samples index lag).
    pub unindexed_segments: u64,
    pub unindexed_events: u64,
}

/// What a phase measured.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub events: u64,
    pub seconds: f64,
    pub append: Histogram<u64>,
    pub to_durable: Histogram<u64>,
    pub timeline: Vec<Sample>,
    pub retained_segments: u64,
    pub retained_events: u64,
    /// Passes over the workload (sustained mode).
    pub passes: u64,
    /// CPU time and run-queue wait per thread name over the phase (the
    /// engine's threads, the producers, their latency waiters), most CPU
    /// first.
    pub threads: Vec<(String, ThreadTimes)>,
    /// The whole machine's CPU over the phase (every process and the
    /// kernel; `None` without procfs).
    pub machine: Option<MachineCpu>,
    /// Seal to index per segment (with [`Phase::seal_clock`]).
    pub seal_to_index: Option<crate::seal_clock::SealToIndex>,
}

/// Sealed segments of `log` without their index file (`STEM.idx`), and
/// the events in them.
fn unindexed(log: &Log) -> (u64, u64) {
    let mut out = (0, 0);
    for s in log.reader().segments() {
        if s.sealed && s.count > 0 && !s.path.with_extension("idx").exists() {
            out.0 += 1;
            out.1 += s.count;
        }
    }
    out
}

fn segments_in(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            .count() as u64
    })
}

/// Events appended, append latency, append-to-durable latency.
type ProducerOut = (u64, Histogram<u64>, Histogram<u64>);

struct Shared {
    appended: AtomicU64,
    stop: AtomicBool,
    newest: Vec<AtomicI64>,
    interval: Vec<Mutex<Histogram<u64>>>,
    passes: AtomicU64,
    /// What the producers and their waiters used (they end before the
    /// phase's last snapshot).
    own: Mutex<Vec<(String, ThreadTimes)>>,
}

impl Shared {
    /// Add what the calling thread used since `start` under `name`.
    fn report_own(&self, name: &str, start: Option<ThreadTimes>) {
        let (Some(start), Some(now)) = (start, ThreadTimes::current()) else {
            return;
        };
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        own.push((name.to_string(), now.minus(&start)));
    }
}

/// Run one phase over `shares` (one per producer thread). The shares are
/// moved in simulated time in place when the phase loops.
pub fn run_phase(log: &Log, shares: &mut [Vec<Event>], ph: &Phase) -> Result<PhaseResult> {
    let producers = shares.len().max(1);
    let sh = Shared {
        appended: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        newest: (0..producers).map(|_| AtomicI64::new(i64::MIN)).collect(),
        interval: (0..producers).map(|_| Mutex::new(hist())).collect(),
        passes: AtomicU64::new(0),
        own: Mutex::new(Vec::new()),
    };
    let at_start = Snapshot::take();
    let machine_at_start = MachineCpu::now();
    let started = Instant::now();
    let per_rate = ph.rate.map(|r| (r / producers as f64).max(1.0));
    let per_cap = ph.max_events.map(|m| m.div_ceil(producers as u64));
    let mut timeline = Vec::new();
    let mut retained = (0u64, 0u64);
    let mut seal_tracker = ph.seal_clock.clone().map(crate::seal_clock::Tracker::new);
    let results: Vec<Result<ProducerOut>> = std::thread::scope(|s| {
        let sh = &sh;
        let handles: Vec<_> = shares
            .iter_mut()
            .enumerate()
            .map(|(p, share)| {
                std::thread::Builder::new()
                    .name(format!("producer-{p}"))
                    .spawn_scoped(s, move || {
                        producer(log, share, p, ph, per_rate, per_cap, started, sh)
                    })
            })
            .collect::<std::io::Result<_>>()
            .unwrap_or_else(|e| panic!("starting a producer thread: {e}"));
        // Sampler and retention, on this thread, until the producers end.
        let mut last_t = started;
        let mut last_n = 0u64;
        let mut last_retain = started;
        while handles.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            if let Some(t) = seal_tracker.as_mut() {
                t.poll();
            }
            let now = Instant::now();
            if let Some(keep) = ph.retain_keep {
                if now.duration_since(last_retain) >= Duration::from_secs(1) {
                    last_retain = now;
                    let oldest_newest = sh
                        .newest
                        .iter()
                        .map(|a| a.load(Ordering::Relaxed))
                        .min()
                        .unwrap_or(i64::MIN);
                    if oldest_newest > i64::MIN {
                        match log.retain(oldest_newest - keep) {
                            Ok(r) => {
                                retained.0 += r.dropped.len() as u64;
                                retained.1 += r.events();
                            }
                            Err(e) => tracing::warn!(error = %e, "retention during the load run"),
                        }
                    }
                }
            }
            if now.duration_since(last_t) >= ph.sample_every {
                let n = sh.appended.load(Ordering::Relaxed);
                let mut h = hist();
                for m in &sh.interval {
                    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = h.add(&*g);
                    g.reset();
                }
                let dt = now.duration_since(last_t).as_secs_f64();
                let lag = if ph.index_lag { unindexed(log) } else { (0, 0) };
                timeline.push(Sample {
                    t: now.duration_since(started).as_secs_f64(),
                    events_per_sec: (n - last_n) as f64 / dt,
                    p99_ms: if h.is_empty() {
                        0.0
                    } else {
                        h.value_at_quantile(0.99) as f64 / 1e6
                    },
                    rss_bytes: rss_bytes().unwrap_or(0),
                    segments: segments_in(log.dir()),
                    unindexed_segments: lag.0,
                    unindexed_events: lag.1,
                });
                last_t = now;
                last_n = n;
            }
        }
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::WriterFailed("a producer thread panicked".into()))
                })
            })
            .collect()
    });
    log.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    let seal_to_index = seal_tracker.map(crate::seal_clock::Tracker::end);
    let threads = thread_times(&at_start, &sh);
    let machine = machine_at_start
        .zip(MachineCpu::now())
        .map(|(a, b)| b.since(&a));
    let mut append = hist();
    let mut to_durable = hist();
    let mut events = 0;
    for r in results {
        let (n, a, d) = r?;
        events += n;
        let _ = append.add(&a);
        let _ = to_durable.add(&d);
    }
    Ok(PhaseResult {
        events,
        seconds,
        append,
        to_durable,
        timeline,
        retained_segments: retained.0,
        retained_events: retained.1,
        passes: sh.passes.load(Ordering::Relaxed),
        threads,
        machine,
        seal_to_index,
    })
}

/// Per thread name: the engine's threads (alive throughout) from two
/// snapshots, the bench's own from what they reported.
fn thread_times(at_start: &Snapshot, sh: &Shared) -> Vec<(String, ThreadTimes)> {
    let mut all = Snapshot::take().since(at_start);
    // The sampler (this thread) is listed under the process's name.
    let own = std::mem::take(&mut *sh.own.lock().unwrap_or_else(|p| p.into_inner()));
    for (name, t) in own {
        match all.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => sum.add(&t),
            None => all.push((name, t)),
        }
    }
    all.sort_by_key(|b| std::cmp::Reverse(b.1.cpu_ns));
    all
}

/// Receipts handed to the latency waiter in groups of this many (and
/// before a paced producer sleeps), so the bench's own bookkeeping (a
/// channel send, shared counters, the progress bar) is paid per group,
/// not per event, and stays out of the library's figures.
const GROUP: usize = 64;

/// Record append-to-durable latencies of receipts seen complete: the clock
/// is read after they were seen done, so each figure is at least the true
/// latency (a group shares one reading instead of one per event).
fn record_durable(
    done: &mut Vec<Instant>,
    h: &mut Histogram<u64>,
    interval: &Mutex<Histogram<u64>>,
) {
    if done.is_empty() {
        return;
    }
    let now = Instant::now();
    let mut g = interval.lock().unwrap_or_else(|p| p.into_inner());
    for t0 in done.drain(..) {
        let d = now.duration_since(t0);
        record(h, d);
        record(&mut g, d);
    }
}

#[allow(clippy::too_many_arguments)]
fn producer(
    log: &Log,
    share: &mut [Event],
    p: usize,
    ph: &Phase,
    rate: Option<f64>,
    cap: Option<u64>,
    started: Instant,
    sh: &Shared,
) -> Result<ProducerOut> {
    if let Some(cpu) = ph.pin_producers {
        // The waiter started below inherits it.
        let _ = auditlog::internals::priority::pin_current_thread(&[cpu]);
    }
    let (tx, rx) = crossbeam_channel::bounded::<Vec<(Instant, Receipt)>>(1 << 12);
    let interval = &sh.interval[p];
    std::thread::scope(|s| {
        let waiter = s.spawn(move || -> Result<Histogram<u64>> {
            let start = ThreadTimes::current();
            let mut h = hist();
            let mut done = Vec::with_capacity(GROUP);
            for group in rx {
                for (t0, r) in group {
                    if !r.is_done() {
                        // About to block: stamp what is already complete.
                        record_durable(&mut done, &mut h, interval);
                    }
                    r.wait()?;
                    done.push(t0);
                }
                record_durable(&mut done, &mut h, interval);
            }
            sh.report_own("latency-waiter", start);
            Ok(h)
        });
        let start = ThreadTimes::current();
        let mut append = hist();
        let mut n = 0u64;
        let mut pass = 0u64;
        let mut group: Vec<(Instant, Receipt)> = Vec::with_capacity(GROUP);
        // Events appended but not yet added to the shared counters.
        let mut unpublished = 0u64;
        let mut newest = i64::MIN;
        let publish =
            |group: &mut Vec<(Instant, Receipt)>, unpublished: &mut u64, newest: i64| -> bool {
                sh.appended.fetch_add(*unpublished, Ordering::Relaxed);
                sh.newest[p].fetch_max(newest, Ordering::Relaxed);
                ph.progress.inc(*unpublished);
                *unpublished = 0;
                if group.is_empty() {
                    return true;
                }
                let g = std::mem::replace(group, Vec::with_capacity(GROUP));
                tx.send(g).is_ok()
            };
        // The end of the last append: the next one starts from it unless
        // the producer slept in between. That counts the bench's own
        // bookkeeping into the next append (a few ns, never less than the
        // truth) and saves a clock reading per event.
        let mut carry: Option<Instant> = None;
        let out: Result<()> = (|| {
            'outer: loop {
                for chunk in share.chunks(ph.batch) {
                    if sh.stop.load(Ordering::Relaxed) || cap.is_some_and(|c| n >= c) {
                        break 'outer;
                    }
                    let mut t0 = match carry.take() {
                        Some(t) => t,
                        None => Instant::now(),
                    };
                    if ph.deadline.is_some_and(|d| t0.duration_since(started) >= d) {
                        break 'outer;
                    }
                    if let Some(r) = rate {
                        let due = started + Duration::from_secs_f64(n as f64 / r);
                        if due > t0 {
                            if !publish(&mut group, &mut unpublished, newest) {
                                break 'outer;
                            }
                            std::thread::sleep(due - t0);
                            t0 = Instant::now();
                        }
                    }
                    let enc = EncodedBatch::encode(chunk)?;
                    let receipt = log.append_encoded(enc)?;
                    let t1 = Instant::now();
                    record(&mut append, t1.duration_since(t0));
                    carry = Some(t1);
                    n += chunk.len() as u64;
                    unpublished += chunk.len() as u64;
                    if let Some(last) = chunk.last() {
                        newest = newest.max(last.ts);
                    }
                    group.push((t0, receipt));
                    if group.len() >= GROUP && !publish(&mut group, &mut unpublished, newest) {
                        break 'outer;
                    }
                }
                pass += 1;
                match ph.loop_shift {
                    Some(delta) if !share.is_empty() => {
                        if !publish(&mut group, &mut unpublished, newest) {
                            break 'outer;
                        }
                        for ev in share.iter_mut() {
                            ev.ts += delta;
                        }
                    }
                    _ => break,
                }
            }
            Ok(())
        })();
        publish(&mut group, &mut unpublished, newest);
        sh.report_own("producer", start);
        drop(tx);
        if out.is_err() {
            sh.stop.store(true, Ordering::Relaxed);
        }
        sh.passes.fetch_max(pass, Ordering::Relaxed);
        let d = waiter
            .join()
            .unwrap_or_else(|_| Err(Error::WriterFailed("latency waiter panicked".into())));
        out?;
        Ok((n, append, d?))
    })
}
