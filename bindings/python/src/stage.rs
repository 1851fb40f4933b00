//! Producer-side batching of single appends (like a Kafka producer's
//! linger): `append(dict)` checks the event (so bad input still raises at
//! once), then stages it, encoded in the log's record format
//! ([`BatchBuilder`]: the bytes `EncodedBatch::encode_parsed` writes, their
//! frames not yet sealed); a flusher thread seals what is staged (lengths,
//! CRCs), hashes its Merkle leaves and hands it to the log's queue as one
//! batch. The calling thread so pays for turning its dict into an event
//! and encoding it (into a reused event: no allocation per field, nothing
//! for another thread to free); the CRCs, SHA-256 and the queue hand-over
//! (which wakes the writer thread, a system call per event when events
//! trickle) happen once per batch, on another core, without the GIL.
//!
//! Order: one lock (`order`) is held by whoever appends staged events to the
//! log, and every other write path (batches, the keyword helpers, flush,
//! `wait=True`) drains the stage under it first, so events reach the log in
//! the order their appends returned, whatever path each took.
//!
//! Errors: checking and encoding happen before staging (an event that
//! does not encode is refused by its append), so what the flusher can still
//! meet is an engine failure (a writer that stopped, a closed log); it is
//! kept and raised by the next append (or counted, in fire-and-forget mode)
//! with the number of events it lost. Stores with a redaction policy or
//! `on_full="fail"` do not stage (their per-event errors must be raised by
//! the append that caused them), nor do logs that keep a redaction policy
//! recorded by an earlier writer (see inner.rs).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use auditlog::{AuditStore, BatchBuilder, Event, Receipt};

use crate::batch::QUEUE_UNIT_BYTES;
use crate::pending::Pending;

/// How long the flusher lets a trickle of events gather before taking it.
const LINGER: Duration = Duration::from_micros(100);
/// Below this many staged events the flusher lingers first.
const LINGER_BELOW: usize = 64;
/// Most events staged; an append that finds this many waits for the
/// flusher to take them (see [`Stager::relieve`]).
pub const MAX_STAGED: usize = 4096;
/// How long a single append that found the stage full waits for the flusher
/// before it drains the stage itself: long enough for the flusher to finish
/// appending the batch before, short enough that a stalled flusher (a
/// writer waiting for queue room) only makes the append take the drain.
const HANDOFF_WAIT: Duration = Duration::from_millis(20);
/// The largest frame buffer the writer hands back that is kept for the
/// next round of staging (a batch staged whole may leave a far larger one:
/// freed instead).
const SPARE_MAX_BYTES: usize = 4 << 20;
/// Most bytes of frame buffers kept for staging: in durable mode many
/// staged batches can wait in the writer's queue during an fsync, and a
/// round of staging that finds no buffer returned grows a new one from
/// nothing on the calling thread (page faults: a third of a single
/// append's perf samples before py28). Typical stages hold 10-100 KiB.
const SPARE_POOL_BYTES: usize = 8 << 20;
/// Room a new frame buffer starts with when none has come back (else it
/// grows by doubling, reallocating, while events are staged into it).
const FRESH_MIN_BYTES: usize = 64 << 10;

/// The flusher's nice value (Linux), unless `AUDITLOG_PY_STAGE_NICE`
/// names another (0: as the calling thread). The append path's threads
/// (the calling thread, this flusher, the engine's writer, syncer and tree
/// thread) ask for nearly two cores' worth of CPU at a single thread's
/// peak on a two-core machine; at equal priority the calling thread, the
/// one that holds the GIL and paces every append, waited in the run
/// queue behind them (docs/benchmarks.md, py31 round). The flusher has
/// slack (it lingers up to 100 µs by design), so it yields first, as the
/// engine's tree thread and indexers do (nice 10).
const FLUSHER_NICE: i32 = 10;

/// Give the calling thread (the flusher) [`FLUSHER_NICE`], best effort: a
/// failure leaves it as it was.
fn lower_priority() {
    let nice = std::env::var("AUDITLOG_PY_STAGE_NICE")
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .unwrap_or(FLUSHER_NICE);
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: libc's wrapper of a plain syscall; PRIO_PROCESS with
        // who 0 is the calling thread (Linux applies nice per thread).
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// An engine failure met while appending staged events, and how many
/// events it lost.
pub type Lost = (auditlog::Error, u64);

#[derive(Default)]
struct State {
    /// The staged events, encoded.
    events: BatchBuilder,
    /// Appends waiting in [`Stager::relieve`] for the flusher to take.
    relieving: usize,
    /// Single appends that found the stage full, and of those, the ones
    /// that drained it themselves (for `counters()`).
    full: u64,
    full_drained: u64,
    /// JSON bytes of the staged events.
    bytes: usize,
    /// The flusher has taken events it has not appended yet.
    in_flight: bool,
    /// The flusher waits for the first staged event.
    waiting: bool,
    stop: bool,
    failed: Option<Lost>,
}

pub struct Stager {
    state: Mutex<State>,
    cv: Condvar,
    /// Signalled when staged events are taken (for [`Stager::relieve`]).
    taken: Condvar,
    order: Mutex<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Where the receipts of staged batches go (nobody waits on them).
    pending: Arc<Pending>,
    /// Frame buffers with room (at most [`SPARE_POOL_BYTES`]), handed back by
    /// the writer once it has copied a staged batch (see
    /// [`Stager::recycler`]); the flusher stages into the largest when it
    /// takes the events: staging then seldom grows a buffer from nothing
    /// (page faults and copies on the Python thread).
    returned: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stager {
    pub fn new(pending: Arc<Pending>) -> Stager {
        Stager {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            taken: Condvar::new(),
            order: Mutex::new(()),
            thread: Mutex::new(None),
            pending,
            returned: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

/// What the flusher thread needs of the store.
pub trait HasStager: Send + Sync + 'static {
    fn stager(&self) -> Option<&Stager>;
    fn audit_store(&self) -> &AuditStore;
}

impl Stager {
    /// Start the flusher thread of `owner`'s stager.
    pub fn start<T: HasStager>(owner: &Arc<T>) -> std::io::Result<()> {
        let Some(st) = owner.stager() else {
            return Ok(());
        };
        let o = owner.clone();
        let handle = std::thread::Builder::new()
            .name("auditlog-py-stage".into())
            .spawn(move || {
                lower_priority();
                flusher(&*o)
            })?;
        *lock(&st.thread) = Some(handle);
        Ok(())
    }

    /// Stage a checked event (`bytes`: its JSON size), encoded here.
    /// `Err`: an earlier flush failed (the event is not staged), or this
    /// one does not encode (refused, as a direct append would refuse it).
    /// `Ok(true)`: the stage is full; the caller calls [`Stager::relieve`].
    pub fn push(&self, ev: &Event, bytes: usize) -> Result<bool, Lost> {
        self.push_with(bytes, 1, |staged| staged.push_checked(ev))
    }

    /// Stage checked events (a batch's), in their order; as [`Stager::push`].
    /// Encoded before the stage is locked.
    pub fn push_many(&self, evs: Vec<Event>, bytes: usize) -> Result<bool, Lost> {
        let n = evs.len() as u64;
        let mut encoded = BatchBuilder::with_capacity(evs.len(), bytes.min(SPARE_MAX_BYTES));
        for ev in &evs {
            encoded.push_checked(ev).map_err(|e| (e, n))?;
        }
        drop(evs);
        self.push_with(bytes, n, |staged| {
            if staged.is_empty() && staged.capacity() < encoded.bytes() {
                *staged = encoded;
            } else {
                staged.append(&mut encoded);
            }
            Ok(())
        })
    }

    fn push_with(
        &self,
        bytes: usize,
        events: u64,
        add: impl FnOnce(&mut BatchBuilder) -> auditlog::Result<()>,
    ) -> Result<bool, Lost> {
        let mut s = lock(&self.state);
        if let Some((e, n)) = s.failed.take() {
            // Reported now: the flusher may try what is staged again.
            let wake = s.waiting && !s.events.is_empty();
            drop(s);
            if wake {
                self.cv.notify_one();
            }
            return Err((e, n + events));
        }
        if let Err(e) = add(&mut s.events) {
            return Err((e, events));
        }
        s.bytes += bytes;
        let full = s.events.len() >= MAX_STAGED || s.bytes >= QUEUE_UNIT_BYTES;
        let wake = s.waiting;
        s.waiting = false;
        drop(s);
        if wake {
            self.cv.notify_one();
        }
        Ok(full)
    }

    /// After [`Stager::push`] found the stage full: wait (without the GIL)
    /// until the flusher has taken what is staged, so that encoding stays
    /// on its thread; if it has not within [`HANDOFF_WAIT`], or a failure
    /// is held, drain the stage here (which reports the failure).
    pub fn relieve(&self, store: &AuditStore) -> Result<(), Lost> {
        let deadline = Instant::now() + HANDOFF_WAIT;
        let mut s = lock(&self.state);
        s.relieving += 1;
        s.full += 1;
        let relieved = loop {
            if s.failed.is_some() || s.stop {
                break false;
            }
            if s.events.len() < MAX_STAGED && s.bytes < QUEUE_UNIT_BYTES {
                break true;
            }
            if s.waiting {
                s.waiting = false;
                self.cv.notify_one();
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break false;
            };
            s = self
                .taken
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        s.relieving -= 1;
        if !relieved {
            s.full_drained += 1;
        }
        drop(s);
        if relieved {
            return Ok(());
        }
        self.drain(store).map(|_| ())
    }

    /// Single appends that found the stage full, and how many of them
    /// drained it on the calling thread (for counters).
    pub fn full_counts(&self) -> (u64, u64) {
        let s = lock(&self.state);
        (s.full, s.full_drained)
    }

    /// Events staged now (for counters).
    pub fn staged(&self) -> usize {
        lock(&self.state).events.len()
    }

    /// Whether nothing is staged or being appended from the stage: a direct
    /// append now lands after everything staged before.
    fn settled(&self) -> bool {
        let s = lock(&self.state);
        s.events.is_empty() && !s.in_flight && s.failed.is_none()
    }

    /// Append what is staged (under the order lock, which the caller holds).
    fn append_staged(&self, store: &AuditStore) -> Result<Option<Receipt>, Lost> {
        self.append_staged_or_hold(store, false)
    }

    /// [`Stager::append_staged`]; with `hold`, a failure is kept for the
    /// next call to report (the flusher's way) instead of returned. It is
    /// kept in the same step that ends the flight, so that no direct append
    /// can see the stage settled in between and stage an event behind a
    /// failure it then never hears of.
    fn append_staged_or_hold(
        &self,
        store: &AuditStore,
        hold: bool,
    ) -> Result<Option<Receipt>, Lost> {
        let events = {
            let mut s = lock(&self.state);
            if let Some(lost) = s.failed.take() {
                return Err(lost);
            }
            s.in_flight = true;
            s.bytes = 0;
            // The pool is kept sorted by capacity: the last is the largest.
            // Room for a full stage's frame sizes (16 bytes an event):
            // grown by doubling, they were half of the page faults left.
            let metas = s.events.len().max(MAX_STAGED);
            let next = match lock(&self.returned).pop() {
                Some(frames) => BatchBuilder::reusing(frames, metas),
                None => BatchBuilder::with_capacity(metas, s.events.bytes().max(FRESH_MIN_BYTES)),
            };
            let events = std::mem::replace(&mut s.events, next);
            if s.relieving > 0 {
                self.taken.notify_all();
            }
            events
        };
        let n = events.len() as u64;
        let result = if events.is_empty() {
            Ok(None)
        } else {
            let mut batch = events.finish();
            batch.hash_leaves();
            batch.recycle_frames_to(self.recycler());
            store.append_encoded(batch).map(Some)
        };
        let result = {
            let mut s = lock(&self.state);
            s.in_flight = false;
            match result.map_err(|e| (e, n)) {
                Err(lost) if hold => {
                    match &mut s.failed {
                        Some((_, held)) => *held += lost.1,
                        None => s.failed = Some(lost),
                    }
                    Ok(None)
                }
                other => other,
            }
        };
        if let Ok(Some(r)) = &result {
            self.pending.track(r.clone(), n);
        }
        result
    }

    /// Where the writer hands a staged batch's frame buffer back, kept for
    /// the next round of staging if it is of a size staging uses.
    fn recycler(&self) -> auditlog::FrameRecycler {
        let returned = Arc::downgrade(&self.returned);
        Arc::new(move |frames: Vec<u8>| {
            if frames.capacity() > SPARE_MAX_BYTES {
                return;
            }
            if let Some(pool) = returned.upgrade() {
                keep_spare(&mut lock(&pool), frames);
            }
        })
    }

    /// Drain the stage, then run `f` (a direct append) in order after it.
    /// May wait for the flusher and for queue room: call it detached.
    pub fn ordered<R>(&self, store: &AuditStore, f: impl FnOnce() -> R) -> Result<R, Lost> {
        let _order = lock(&self.order);
        self.append_staged(store)?;
        Ok(f())
    }

    /// Append what is staged and return the receipt covering it.
    pub fn drain(&self, store: &AuditStore) -> Result<Option<Receipt>, Lost> {
        let _order = lock(&self.order);
        self.append_staged(store)
    }

    /// Whether a direct append may skip [`Stager::ordered`].
    pub fn is_settled(&self) -> bool {
        self.settled()
    }

    /// Stop the flusher (joins it), then append what is left; a failure
    /// not yet reported comes back here, with the events staged behind it
    /// added to its count when they cannot be stored either.
    pub fn stop(&self, store: &AuditStore) -> Result<(), Lost> {
        lock(&self.state).stop = true;
        self.cv.notify_all();
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
        match self.drain(store) {
            Ok(_) => Ok(()),
            // A reported failure leaves what was staged after it in place
            // for the flusher's next try; there is no next try after stop,
            // so try it here, and count it as lost if that fails too.
            Err(mut lost) => {
                if let Err(more) = self.drain(store) {
                    lost.1 += more.1;
                }
                Err(lost)
            }
        }
    }
}

/// Add a returned frame buffer to `pool` (sorted by capacity), then drop
/// the smallest while the pool holds more than [`SPARE_POOL_BYTES`].
fn keep_spare(pool: &mut Vec<Vec<u8>>, frames: Vec<u8>) {
    let at = pool.partition_point(|b| b.capacity() <= frames.capacity());
    pool.insert(at, frames);
    let mut total: usize = pool.iter().map(Vec::capacity).sum();
    while total > SPARE_POOL_BYTES && pool.len() > 1 {
        total -= pool.remove(0).capacity();
    }
}

fn flusher<T: HasStager>(owner: &T) {
    let Some(st) = owner.stager() else {
        return;
    };
    loop {
        let linger = {
            let mut s = lock(&st.state);
            // A failure not yet reported holds what is staged: the next
            // append reports it, then this thread tries again.
            while (s.events.is_empty() || s.failed.is_some()) && !s.stop {
                s.waiting = true;
                s = st.cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            s.waiting = false;
            if s.stop {
                // stop() appends what is left, on the stopping thread.
                return;
            }
            s.events.len() < LINGER_BELOW
        };
        if linger {
            std::thread::sleep(LINGER);
        }
        {
            let _order = lock(&st.order);
            // A failure is held in the stage for the next append to report.
            let _ = st.append_staged_or_hold(owner.audit_store(), true);
        }
    }
}
