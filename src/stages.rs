//! Where an append's time goes between being queued and its receipt
//! waking its waiter, by stage (docs/benchmarks.md, "Append-to-durable p99
//! on this machine, lat34 round"). Off by default; a measurement tool (the
//! load run's `--stages`) turns it on for one phase and reads it back.
//!
//! When off, the ingest path pays one relaxed atomic load per append and
//! per block, and no clock reading. When on, one append in
//! eight per producing thread reads the clock when it is
//! queued and when the writer takes it, each block when its
//! write starts and ends, each fdatasync when it starts and ends, and each
//! receipt when it completes and when a parked waiter wakes; the syncer
//! (or the writer, for a sync it ran itself) folds them into the
//! histograms below once the receipts are complete.
//!
//! The histograms are process-wide (every log open in the process adds to
//! them): this is a measuring aid, not a per-log statistic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ON: AtomicBool = AtomicBool::new(false);

/// Whether stage timing is on (one relaxed load: the cost when off).
#[inline]
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// One append in this many (per producing thread) is timed: folding an
/// append into the histograms costs the syncer about 0.1 µs, and timing
/// all of them took a third of a core at 1M appends/s, enough to change
/// what is measured.
const SAMPLE_EVERY: u32 = 8;

/// Whether this thread's next append is one of the timed ones.
pub(crate) fn sampled() -> bool {
    thread_local! {
        static N: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    N.with(|n| {
        let v = n.get().wrapping_add(1);
        n.set(v);
        v % SAMPLE_EVERY == 0
    })
}

/// The stages of one append, in order. Each is the time between two clock
/// readings on the way; together they make up `Total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Stage {
    /// Queued by the producer until the writer took it off the queue
    /// (the writer busy with earlier blocks, a roll, or not on a core).
    Queue = 0,
    /// Taken until its block's write began: the block stays open while
    /// the previous block's fdatasync runs.
    Gather,
    /// The block's write: digest, commit record, write(2), publication.
    Write,
    /// Written until its fdatasync began: the hand-over to the syncer and
    /// any fdatasync still running ahead of it.
    ToSync,
    /// The fdatasync that covers it.
    Sync,
    /// fdatasync done until its receipt completed (the receipts of the
    /// block completed one by one before it).
    Complete,
    /// Queued until the receipt completed: the sum of the stages above.
    Total,
    /// Receipt completed until a parked waiter ran again (only appends
    /// whose waiter had to sleep).
    Wake,
}

const STAGES: usize = 8;

/// Names as printed, in [`Stage`] order.
pub const STAGE_NAMES: [&str; STAGES] = [
    "queue",
    "gather",
    "write",
    "to-sync",
    "fdatasync",
    "complete",
    "total",
    "wake",
];

/// Buckets of a histogram: exact below 16 µs, then 8 per power of two (at
/// most 12.5% wide), up to 2^40 µs.
const BUCKETS: usize = 16 + 37 * 8;

fn bucket(us: u64) -> usize {
    if us < 16 {
        return us as usize;
    }
    let e = 63 - us.leading_zeros() as usize; // 4..=63
    let sub = ((us >> (e - 3)) & 7) as usize;
    (16 + (e - 4) * 8 + sub).min(BUCKETS - 1)
}

/// The largest value (µs) that falls into bucket `b`.
fn bucket_top(b: usize) -> u64 {
    if b < 16 {
        return b as u64;
    }
    let e = (b - 16) / 8 + 4;
    let sub = ((b - 16) % 8) as u64;
    ((8 + sub + 1) << (e - 3)) - 1
}

struct Hist {
    counts: Vec<AtomicU64>,
    n: AtomicU64,
    sum_us: AtomicU64,
}

impl Hist {
    fn new() -> Hist {
        Hist {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            n: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    fn add(&self, us: u64) {
        self.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.n.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn reset(&self) {
        for c in &self.counts {
            c.store(0, Ordering::Relaxed);
        }
        self.n.store(0, Ordering::Relaxed);
        self.sum_us.store(0, Ordering::Relaxed);
    }

    /// The value (µs, a bucket's top) at quantile `q`.
    fn quantile(&self, q: f64) -> u64 {
        let n = self.n.load(Ordering::Relaxed);
        if n == 0 {
            return 0;
        }
        let want = ((n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= want {
                return bucket_top(b);
            }
        }
        bucket_top(BUCKETS - 1)
    }
}

struct Trace {
    epoch: Instant,
    /// Every append, per stage.
    all: Vec<Hist>,
    /// Per stage, summed over the appends whose `Total` reached `slow_us`.
    slow_sum_us: Vec<AtomicU64>,
    slow_n: AtomicU64,
    slow_us: AtomicU64,
    /// Segment rolls on the writer (seal, then create), µs each.
    rolls: Hist,
    /// The same rolls by part, in [`RollPart`] order.
    roll_parts: Vec<Hist>,
}

impl Trace {
    fn new() -> Trace {
        Trace {
            epoch: Instant::now(),
            all: (0..STAGES).map(|_| Hist::new()).collect(),
            slow_sum_us: (0..STAGES).map(|_| AtomicU64::new(0)).collect(),
            slow_n: AtomicU64::new(0),
            slow_us: AtomicU64::new(u64::MAX),
            rolls: Hist::new(),
            roll_parts: (0..ROLL_PARTS).map(|_| Hist::new()).collect(),
        }
    }

    fn reset(&self, slow: Duration) {
        for h in &self.all {
            h.reset();
        }
        for s in &self.slow_sum_us {
            s.store(0, Ordering::Relaxed);
        }
        self.slow_n.store(0, Ordering::Relaxed);
        self.rolls.reset();
        for h in &self.roll_parts {
            h.reset();
        }
        self.slow_us.store(
            slow.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    fn report(&self) -> StageReport {
        let slow = self.slow_n.load(Ordering::Relaxed);
        let stages = (0..STAGES)
            .map(|i| {
                let h = &self.all[i];
                let n = h.n.load(Ordering::Relaxed);
                let mean = h.sum_us.load(Ordering::Relaxed) as f64 / n.max(1) as f64;
                StageFigures {
                    stage: STAGE_NAMES[i],
                    n,
                    p50_us: h.quantile(0.5),
                    p99_us: h.quantile(0.99),
                    p999_us: h.quantile(0.999),
                    mean_us: mean,
                    slow_mean_us: self.slow_sum_us[i].load(Ordering::Relaxed) as f64
                        / slow.max(1) as f64,
                }
            })
            .collect();
        StageReport {
            slow_threshold_us: self.slow_us.load(Ordering::Relaxed),
            slow,
            stages,
            rolls: self.rolls.n.load(Ordering::Relaxed),
            roll_p50_us: self.rolls.quantile(0.5),
            roll_max_us: self.rolls.quantile(1.0),
            roll_parts: (0..ROLL_PARTS)
                .map(|i| {
                    let h = &self.roll_parts[i];
                    RollFigures {
                        part: ROLL_PART_NAMES[i],
                        n: h.n.load(Ordering::Relaxed),
                        p50_us: h.quantile(0.5),
                        p99_us: h.quantile(0.99),
                        max_us: h.quantile(1.0),
                    }
                })
                .collect(),
        }
    }
}

fn trace() -> &'static Trace {
    static T: OnceLock<Trace> = OnceLock::new();
    T.get_or_init(Trace::new)
}

/// Turn stage timing on, clearing what was recorded; appends whose time
/// from queue to completion reaches `slow` are also summed apart, to show
/// which stages make the slow ones slow.
#[doc(hidden)]
pub fn enable(slow: Duration) {
    trace().reset(slow);
    ON.store(true, Ordering::Relaxed);
}

/// Turn stage timing off (what was recorded stays readable).
#[doc(hidden)]
pub fn disable() {
    ON.store(false, Ordering::Relaxed);
}

/// One stage's figures (µs).
#[derive(Debug, Clone, PartialEq)]
pub struct StageFigures {
    pub stage: &'static str,
    pub n: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub mean_us: f64,
    /// Mean over the slow appends only (0 for `wake`, not linked to them).
    pub slow_mean_us: f64,
}

/// What was recorded since [`enable`].
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    pub slow_threshold_us: u64,
    /// Appends whose queue-to-completion time reached the threshold.
    pub slow: u64,
    pub stages: Vec<StageFigures>,
    /// Segment rolls on the writer: count, median and most µs.
    pub rolls: u64,
    pub roll_p50_us: u64,
    pub roll_max_us: u64,
    /// The rolls by part, in [`RollPart`] order.
    pub roll_parts: Vec<RollFigures>,
}

/// One part of the writer's segment rolls (µs).
#[derive(Debug, Clone, PartialEq)]
pub struct RollFigures {
    pub part: &'static str,
    pub n: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The parts of a segment roll on the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum RollPart {
    /// The old segment's last block and footer written and made durable,
    /// the MANIFEST replaced (or an event-less segment removed).
    Seal = 0,
    /// The next segment created with its header (and, without a syncer
    /// thread, its fdatasync and the folder's).
    Create,
}

const ROLL_PARTS: usize = 2;

/// Names as printed, in [`RollPart`] order.
pub const ROLL_PART_NAMES: [&str; ROLL_PARTS] = ["seal", "create"];

/// Read the histograms.
#[doc(hidden)]
pub fn report() -> StageReport {
    trace().report()
}

/// A clock reading as µs since the trace's epoch, for a `u64` slot field
/// (0 means "not taken").
pub(crate) fn now_us() -> u64 {
    let t = trace();
    (t.epoch.elapsed().as_micros() as u64).max(1)
}

fn us_between(a: Instant, b: Instant) -> u64 {
    b.saturating_duration_since(a).as_micros() as u64
}

/// One append on its way: stamps taken before its fdatasync.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamps {
    pub queued: Instant,
    pub taken: Instant,
    /// Its block's write: start and end (`taken` until written).
    pub write: (Instant, Instant),
}

/// The appends of one fdatasync completed at `done`: fold their stages in.
pub(crate) fn record(events: &[Stamps], sync: (Instant, Instant), done: Instant) {
    if !events.is_empty() {
        trace().record(events, sync, done);
    }
}

impl Trace {
    fn record(&self, events: &[Stamps], sync: (Instant, Instant), done: Instant) {
        let slow_us = self.slow_us.load(Ordering::Relaxed);
        for e in events {
            let parts = [
                us_between(e.queued, e.taken),
                us_between(e.taken, e.write.0),
                us_between(e.write.0, e.write.1),
                us_between(e.write.1, sync.0),
                us_between(sync.0, sync.1),
                us_between(sync.1, done),
                us_between(e.queued, done),
            ];
            for (i, us) in parts.iter().enumerate() {
                self.all[i].add(*us);
            }
            if parts[Stage::Total as usize] >= slow_us {
                self.slow_n.fetch_add(1, Ordering::Relaxed);
                for (i, us) in parts.iter().enumerate() {
                    self.slow_sum_us[i].fetch_add(*us, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A parked waiter woke `us` after its receipt completed.
pub(crate) fn record_wake(us: u64) {
    trace().all[Stage::Wake as usize].add(us);
}

/// A segment roll took `d` on the writer.
pub(crate) fn record_roll(d: Duration) {
    trace().rolls.add(d.as_micros() as u64);
}

/// One part of a segment roll took `d` on the writer.
pub(crate) fn record_roll_part(part: RollPart, d: Duration) {
    trace().roll_parts[part as usize].add(d.as_micros() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_hold_their_values() {
        let mut last = 0;
        for us in [0u64, 1, 15, 16, 17, 31, 32, 100, 1_000, 5_000, 1 << 30] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            assert!(bucket_top(b) >= us, "{us}: top {}", bucket_top(b));
            if b > 0 {
                assert!(bucket_top(b - 1) < us, "{us}");
            }
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn stages_add_up_and_slow_appends_are_summed_apart() {
        // A trace of its own: other tests may append while this runs.
        let t = Trace::new();
        t.reset(Duration::from_millis(5));
        let q = Instant::now();
        let ms = Duration::from_millis;
        // Queued 2 ms before the sync ended: under the threshold.
        let fast = Stamps {
            queued: q + ms(4),
            taken: q + ms(4),
            write: (q + ms(4), q + ms(5)),
        };
        let slow = Stamps {
            queued: q,
            taken: q + ms(4),
            write: (q + ms(4), q + ms(5)),
        };
        t.record(&[fast, slow], (q + ms(5), q + ms(6)), q + ms(6));
        let r = t.report();
        assert_eq!(r.slow, 1);
        let total = &r.stages[Stage::Total as usize];
        assert_eq!(total.n, 2);
        assert!((total.slow_mean_us - 6_000.0).abs() < 1.0);
        let queue = &r.stages[Stage::Queue as usize];
        assert!((queue.slow_mean_us - 4_000.0).abs() < 1.0);
    }
}
