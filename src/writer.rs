//! The writer thread: drains the ingest queue in batches (group commit),
//! assigns LSNs, frames blocks with their chain digest, rolls segments by
//! UTC day and size, seals them, and syncs per the durability policy.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use crate::chain::{block_digest, Digest};
use crate::codec;
use crate::config::{Config, Durability};
use crate::error::{Error, IoContext, Result};
use crate::event::system::{Cut, Retention, SystemRecord, TreeCheckpoint};
use crate::event::time::{day_to_yyyymmdd, utc_day, MICROS_PER_DAY};
use crate::event::Event;
use crate::event::Micros;
use crate::frame::FRAME_HEADER;
use crate::fsutil;
use crate::handoff::{Handoff, WorkerGone};
use crate::io::IoOp;
use crate::layout::{Head, SegmentMeta};
use crate::manifest::{Manifest, RecordRef};
use crate::receipt::{Failure, Slot};
use crate::retention::{self, RetentionReport};
use crate::segment::{self, Commit, Footer, Header, FORMAT_VERSION, HEADER_SIZE};
use crate::shared::Shared;
use crate::stages::{self, Stamps};
use crate::tlog::{Frontier, TreeHash};
use crate::tree::worker::TreeWorker;

mod retire;

/// Longest a batch waits for more events when the policy has no sync to
/// wait for (`Never`, `Interval`).
const LINGER: Duration = Duration::from_micros(200);

/// A batch of pre-framed events from one `append` call.
pub(crate) struct Batch {
    /// Event frames, back to back.
    pub frames: Vec<u8>,
    /// Per event: its timestamp and frame length.
    pub metas: Metas,
    pub slot: Arc<Slot>,
    /// The events' Merkle leaf hashes, computed on the producer's thread
    /// when the log keeps the tree (empty otherwise: the writer hashes).
    pub leaves: Leaves,
    /// Where `frames` goes once the writer has copied it into its block
    /// (a caller's buffer pool), instead of being freed on the writer.
    pub recycle: Option<FrameRecycler>,
    /// When it was queued, if stage timing is on (src/stages.rs).
    pub queued: Option<Instant>,
}

/// Takes a batch's frame buffer back after the writer is done with it, so
/// that a producer (the server's connections) can read its next request
/// into memory that is already mapped instead of a fresh allocation whose
/// pages the kernel must fault in and zero.
pub type FrameRecycler = Arc<dyn Fn(Vec<u8>) + Send + Sync>;

/// Leaf hashes of a [`Batch`], one per event; inline for the common
/// single-event append, like [`Metas`].
pub(crate) enum Leaves {
    None,
    One(TreeHash),
    Many(Vec<TreeHash>),
}

impl Leaves {
    /// The leaf hashes of `frames` (event frames back to back, lengths in
    /// `metas`): SHA-256 over each event's stored bytes.
    pub(crate) fn of(frames: &[u8], metas: &Metas) -> Leaves {
        let leaf = |off: usize, len: u32| {
            let end = off + len as usize;
            crate::tlog::merkle::leaf_hash(&frames[off + FRAME_HEADER + 1..end])
        };
        match metas {
            Metas::One((_, len)) => Leaves::One(leaf(0, *len)),
            Metas::Many(v) => {
                let mut off = 0usize;
                let mut out = Vec::with_capacity(v.len());
                for &(_, len) in v {
                    out.push(leaf(off, len));
                    off += len as usize;
                }
                Leaves::Many(out)
            }
        }
    }

    fn get(&self, i: usize) -> Option<TreeHash> {
        match self {
            Leaves::None => None,
            Leaves::One(h) => (i == 0).then_some(*h),
            Leaves::Many(v) => v.get(i).copied(),
        }
    }
}

/// Per-event timestamp and frame length of a [`Batch`]. Most appends carry
/// one event: that one is kept inline, saving an allocation on the
/// producer and a (cross-thread) free on the writer per append.
pub(crate) enum Metas {
    One((Micros, u32)),
    Many(Vec<(Micros, u32)>),
}

impl Metas {
    pub(crate) fn as_slice(&self) -> &[(Micros, u32)] {
        match self {
            Metas::One(m) => std::slice::from_ref(m),
            Metas::Many(v) => v,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }
}

pub(crate) enum Msg {
    Append(Batch),
    /// Make everything before it durable, whatever the policy.
    Flush(Arc<Slot>),
    /// Drop sealed segments whose newest event is older than the cutoff.
    Retain {
        cutoff: Micros,
        opts: crate::retention::RetainOptions,
        reply: crossbeam_channel::Sender<Result<RetentionReport>>,
        /// What to carry forward before dropping (runs still running).
        carry: Option<retention::CarryFn>,
    },
    /// Seal the active segment now (tests, and a clean hand-over).
    Seal(Arc<Slot>),
}

struct Active {
    file: File,
    meta: SegmentMeta,
    /// A second handle on the file for the syncer thread (`None` if the
    /// descriptor could not be duplicated: this segment syncs inline).
    sync: Option<Arc<File>>,
    /// Its header's format version: from 6 on its checkpoint records may
    /// cover a prefix of the events before them (deferred signing); an
    /// older active segment, reopened, is signed in place until it seals.
    version: u16,
    /// Whether the folder was fsynced since the file was created (its name
    /// durable). A roll leaves that, and the header's fdatasync, to the
    /// first sync of the segment's events: no receipt of it completes
    /// before both (pace42 round).
    name_synced: bool,
}

/// The first format whose checkpoint records may be deferred.
const DEFERRED_CHECKPOINTS_FROM: u16 = 6;

/// How often an idle writer looks for a checkpoint the tree's threads
/// signed (deferred signing).
const SIGNED_POLL: Duration = Duration::from_millis(20);

/// How often the writer looks at the queue while an fdatasync is in flight.
const SYNC_POLL: Duration = Duration::from_micros(250);

/// Blocks written but not yet synced that the syncer thread may hold at
/// once; past this the writer waits for it (bounds the unsynced data and
/// the receipts waiting on it).
const MAX_SYNCS_IN_FLIGHT: usize = 2;

/// What the syncer makes durable: everything written to `file` before the
/// job was handed over, then `slots` complete.
struct SyncJob {
    file: Arc<File>,
    path: PathBuf,
    slots: Vec<Arc<Slot>>,
    /// LSN one past the last event covered.
    durable_lsn: u64,
    /// A signed checkpoint written before the job was handed over: stored
    /// in the key's state file once the sync made it (and every event it
    /// covers) durable, and never if the sync failed.
    remember: Option<String>,
    /// Stage timing of the appends in `slots` (empty unless it is on).
    stamps: Vec<Stamps>,
    /// fsync the log's folder after the fdatasync, before `slots`
    /// complete: a segment created by a roll, whose name is not durable yet.
    sync_dir: bool,
}

/// The syncer thread of `Durability::EveryBatch`. fdatasync runs there
/// while the writer builds and writes the next block, so the writer's CPU
/// work (copying, hashing, the write) overlaps the disk's flush instead of
/// adding to it: with both in one thread, a cycle took their sum. Jobs go
/// over a [`Handoff`], not a channel: the writer waiting for an fdatasync
/// parks at once instead of spinning and yielding its core
/// (src/handoff.rs says why, and why the syncer still yields a little).
struct Syncer {
    handoff: Arc<Handoff<SyncJob>>,
    in_flight: usize,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Start the syncer; the calling thread (the writer) owns it.
    fn start(shared: Arc<Shared>) -> std::io::Result<Syncer> {
        let handoff = Arc::new(Handoff::<SyncJob>::new());
        let theirs = handoff.clone();
        let handle = std::thread::Builder::new()
            .name("auditlog-sync".into())
            .spawn(move || {
                let _gone = WorkerGone(&*theirs);
                crate::priority::ingest_thread();
                sync_loop(&shared, &theirs)
            })?;
        handoff.set_worker(handle.thread().clone());
        Ok(Syncer {
            handoff,
            in_flight: 0,
            handle: Some(handle),
        })
    }

    /// Hand a job over; it back if the syncer has ended.
    fn send(&mut self, job: SyncJob) -> std::result::Result<(), SyncJob> {
        self.handoff.send(job)?;
        self.in_flight += 1;
        Ok(())
    }

    /// Count the fdatasyncs finished, waiting at most `timeout` (`None`:
    /// until one finishes) when none has.
    fn count_done(&mut self, timeout: Option<Duration>) {
        let n = self.handoff.wait_done(timeout);
        self.in_flight = self.in_flight.saturating_sub(n);
        if self.handoff.is_gone() && n == 0 {
            // Nothing more will finish.
            self.in_flight = 0;
        }
    }

    /// Wait for one finished fdatasync (false if the syncer is gone).
    fn wait_one(&mut self) -> bool {
        self.count_done(None);
        !self.handoff.is_gone() || self.in_flight > 0
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the hand-off ends the thread once it synced the rest.
        self.handoff.close();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Store a durable checkpoint in the key's state file (if the log keeps
/// one). A failure is reported, not fatal: the state then names an older,
/// still consistent checkpoint, and events keep being stored.
fn remember_checkpoint(shared: &Shared, note: &str) {
    let state = shared
        .config
        .checkpoints
        .as_ref()
        .and_then(|c| c.state.as_ref());
    let Some(state) = state else {
        return;
    };
    if let Err(e) = crate::tree::keeper::store_state(state, note) {
        tracing::error!(error = %e, "auditlog could not remember a signed checkpoint; events are still stored");
        *shared
            .checkpoint_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }
}

/// The stage stamps of the appends written and of those in the open block,
/// taken together (a free function: the writer's other fields stay
/// borrowable meanwhile).
fn take_stamps(written: &mut Vec<Stamps>, open: &mut Vec<Stamps>) -> Vec<Stamps> {
    let mut stamps = std::mem::take(written);
    stamps.append(open);
    stamps
}

/// fsync the log's folder if a job of one sync asks for it (a new
/// segment's name made durable); why, if that failed.
fn sync_dirs(shared: &Shared, batch: &[SyncJob]) -> Option<String> {
    if !batch.iter().any(|j| j.sync_dir) {
        return None;
    }
    fsutil::sync_dir(&shared.dir).err().map(|e| e.to_string())
}

/// A failed flush on the syncer: logged, kept as the writer's failure
/// (the first one wins), and returned.
fn record_sync_failure(shared: &Shared, why: String) -> String {
    tracing::error!(error = %why, "auditlog sync failed");
    let mut f = shared.failed.lock().unwrap_or_else(|p| p.into_inner());
    if f.is_none() {
        *f = Some(why.clone());
    }
    shared.has_failed.store(true, Ordering::Release);
    why
}

fn sync_loop(shared: &Shared, jobs: &Handoff<SyncJob>) {
    // Once an fdatasync failed, nothing is ever reported durable again
    // (the kernel may have dropped the dirty pages): every later job fails.
    let mut failed: Option<String> = None;
    let mut batch: Vec<SyncJob> = Vec::new();
    // Jobs queued together were all written before this sync starts: one
    // fdatasync covers them all.
    while jobs.take_jobs(&mut batch) {
        let traced = batch.iter().any(|j| !j.stamps.is_empty());
        let sync_start = traced.then(Instant::now);
        if failed.is_none() {
            let io = &shared.config.io;
            let mut synced: Option<&Arc<File>> = None;
            for job in &batch {
                if synced.is_some_and(|f| Arc::ptr_eq(f, &job.file)) {
                    continue;
                }
                if let Err(e) = io.sync_data(&job.file, &job.path) {
                    let why = format!("fdatasync of {} failed: {e}", job.path.display());
                    failed = Some(record_sync_failure(shared, why));
                    break;
                }
                synced = Some(&job.file);
            }
            if failed.is_none() {
                failed = sync_dirs(shared, &batch).map(|why| record_sync_failure(shared, why));
            }
        }
        let sync_span = sync_start.map(|t0| (t0, Instant::now()));
        match &failed {
            None => {
                // Timed before the receipts complete, so that a waiter who
                // reads the figures once its append is durable finds it.
                if let Some(span) = sync_span {
                    let now = Instant::now();
                    for job in &batch {
                        stages::record(&job.stamps, span, now);
                    }
                }
                // Every receipt of this sync first, then the wake-ups.
                crate::receipt::complete_all(batch.iter().flat_map(|j| j.slots.iter()));
                for job in &batch {
                    shared
                        .durable_lsn
                        .fetch_max(job.durable_lsn, Ordering::AcqRel);
                }
                for note in batch.iter().filter_map(|j| j.remember.as_ref()) {
                    remember_checkpoint(shared, note);
                }
            }
            Some(why) => {
                for s in batch.iter().flat_map(|j| j.slots.iter()) {
                    s.fail(Failure::Stopped(why.clone()));
                }
            }
        }
        // The writer first, then the jobs' drop (the receipts' last
        // references, freed here on the syncer).
        jobs.finished(batch.len());
        batch.clear();
    }
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    manifest: Manifest,
    active: Option<Active>,
    /// Segments known to the writer (sealed ones, then the active one).
    next_seq: u64,
    last_day: u32,
    next_lsn: u64,
    digest: Digest,
    /// The block being built: event frames only; the commit is added on write.
    block: Vec<u8>,
    block_first_lsn: u64,
    block_count: u32,
    block_min_ts: Micros,
    block_max_ts: Micros,
    /// Slots written but not yet durable.
    pending: Vec<Arc<Slot>>,
    /// Written since the last sync.
    dirty: bool,
    last_sync: Instant,
    failed: Option<String>,
    /// Set when the last failed block write was cut back cleanly.
    rolled_back: bool,
    /// The UTC day (YYYYMMDD) of timestamps in `[.0, .1)`: consecutive
    /// events nearly always share a day, so routing one is a comparison
    /// instead of a calendar conversion.
    day_cache: (Micros, Micros, u32),
    /// `EveryBatch` only: the thread that runs fdatasync.
    syncer: Option<Syncer>,
    /// The Merkle tree and checkpoint signing (docs/proofs.md); `None`
    /// when `Config::merkle_tree` is off.
    tree: Option<TreeWorker>,
    /// The tree before the first kept event (what retention stored last).
    tree_base: Frontier,
    /// The block being built is one checkpoint event.
    block_is_checkpoint: bool,
    /// Between two events of one batch (no checkpoint may go in there).
    mid_batch: bool,
    /// `Log::seal` is sealing: its checkpoint is signed in place.
    seal_in_place: bool,
    /// A segment sealed mid-batch without its checkpoint: sign at the end
    /// of the cycle.
    checkpoint_owed: bool,
    /// Leaf hashes of the block's events, when their producers computed
    /// them (all of them, or the block's are hashed here).
    block_leaves: Vec<TreeHash>,
    /// The newest event timestamp written (a checkpoint event takes it, so
    /// that it never widens its segment's time range).
    newest_ts: Option<Micros>,
    /// Stage timing (src/stages.rs), only while it is on: the appends of
    /// the block being built, those written but not yet synced, and the
    /// span of the last fdatasync run on this thread.
    stamps_open: Vec<Stamps>,
    stamps_written: Vec<Stamps>,
    inline_sync: Option<(Instant, Instant)>,
    /// Retention passes: the one out, those waiting, the retire thread
    /// (src/writer/retire.rs).
    passes: retire::Passes,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        manifest: Manifest,
        segments: &[SegmentMeta],
        tree: Option<TreeWorker>,
        tree_base: Frontier,
    ) -> Result<Writer> {
        let last = segments.last();
        let Head { next_lsn, digest } = Head::of(&manifest, segments);
        let next_seq = last.map_or(manifest.anchor.first_seq, |s| s.seq + 1);
        let last_day = last.map_or(0, |s| s.day);
        let mut w = Writer {
            shared,
            manifest,
            active: None,
            next_seq,
            last_day,
            next_lsn,
            digest,
            block: Vec::new(),
            block_first_lsn: next_lsn,
            block_count: 0,
            block_min_ts: Micros::MAX,
            block_max_ts: Micros::MIN,
            pending: Vec::new(),
            dirty: false,
            last_sync: Instant::now(),
            failed: None,
            rolled_back: false,
            day_cache: (0, 0, 0),
            syncer: None,
            tree,
            tree_base,
            block_is_checkpoint: false,
            mid_batch: false,
            checkpoint_owed: false,
            seal_in_place: false,
            block_leaves: Vec::new(),
            newest_ts: last.and_then(|s| s.max_ts),
            stamps_open: Vec::new(),
            stamps_written: Vec::new(),
            inline_sync: None,
            passes: retire::Passes::default(),
        };
        if let Some(meta) = last.filter(|s| !s.sealed) {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&meta.path)
                .ctx(|| format!("opening {} for append", meta.path.display()))?;
            // Appends land at the end anyway; the cursor is put there too,
            // where the writer's position invariant expects it.
            file.seek(SeekFrom::End(0))
                .ctx(|| format!("seeking to the end of {}", meta.path.display()))?;
            let sync = file.try_clone().ok().map(Arc::new);
            let version =
                header_version(&meta.path).ctx(|| format!("reading {}", meta.path.display()))?;
            w.active = Some(Active {
                file,
                meta: meta.clone(),
                sync,
                version,
                name_synced: true,
            });
        }
        Ok(w)
    }

    /// The tile hashes the previous retention kept (checked against its
    /// frontier when the log was opened), if any: a new cut inside the
    /// same tiles needs them.
    fn base_cut_tiles(&self, segments: &[SegmentMeta]) -> Option<crate::tlog::CutTiles> {
        let at = self.manifest.retention?;
        let rec = crate::tree::logtree::retention_record(segments, at).ok()??;
        rec.cut_tiles().ok()?
    }

    fn cfg(&self) -> &Config {
        &self.shared.config
    }

    /// The thread body.
    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        crate::priority::ingest_thread();
        let max_batch = self.cfg().max_batch_bytes;
        let every_batch = matches!(self.cfg().durability, Durability::EveryBatch);
        self.start_retirer();
        if every_batch {
            // Without the thread, syncs simply run inline as before.
            self.syncer = match Syncer::start(self.shared.clone()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no syncer thread; syncing on the writer");
                    None
                }
            };
        }
        // With a key, events no checkpoint covers (a crash before the
        // writer appended the one covering them, or a torn one cut at
        // open) are signed at once, in place (docs/proofs.md, "Deferred
        // signing"): before any message, so a flush after open sees it.
        if let Err(e) = self.checkpoint_if_due(true, true) {
            let _ = self.on_error(&e.to_string());
        }
        loop {
            let first = match self.next_message(&rx) {
                Some(m) => m,
                None => break,
            };
            // Bytes taken into this batch: bounds it even when the queue
            // never runs dry, so receipts keep completing under any load.
            let mut taken = self.handle(first);
            let mut linger_until = None;
            while taken < max_batch {
                match rx.try_recv() {
                    Ok(m) => taken += self.handle(m),
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        if every_batch {
                            // While an fdatasync is in flight, keep taking
                            // events: this block is written when it ends,
                            // so there is one write and one sync per cycle
                            // and the copying overlaps the disk's flush.
                            // The queue is polled, not waited on: a writer
                            // asleep on it would be woken (a futex call on
                            // the producer) for every single event.
                            if let Some(s) = self.syncer.as_mut().filter(|s| s.in_flight > 0) {
                                s.count_done(Some(SYNC_POLL));
                                continue;
                            }
                            break;
                        }
                        // Without a sync to wait for, a writer faster than
                        // its producers would write one event per syscall:
                        // linger briefly so a batch can form.
                        if taken >= max_batch / 4 {
                            break;
                        }
                        let until = *linger_until.get_or_insert_with(|| Instant::now() + LINGER);
                        match rx.recv_deadline(until) {
                            Ok(m) => taken += self.handle(m),
                            Err(_) => break,
                        }
                    }
                }
            }
            // The queue's byte budget, given back once per cycle (a blocked
            // producer is woken when the block is published).
            self.shared.release_queue_bytes(taken);
            if every_batch {
                self.end_batch_pipelined();
            } else {
                self.end_batch(false);
            }
            self.shared
                .queue_depth
                .store(rx.len() as u64, Ordering::Relaxed);
            let owed = std::mem::take(&mut self.checkpoint_owed);
            if let Err(e) = self.checkpoint_if_due(owed, false) {
                let _ = self.on_error(&e.to_string());
            }
            // A retention pass whose tree fields came in is recorded
            // between two cycles (src/writer/retire.rs).
            self.poll_retention(false);
        }
        // Every sender is gone: make everything durable, finish the
        // retention passes asked for, sign what the tree holds, then stop.
        self.sync_barrier();
        self.end_batch(true);
        self.poll_retention(true);
        if let Err(e) = self.checkpoint_if_due(true, true) {
            let _ = self.on_error(&e.to_string());
        }
        self.end_batch(true);
        // The last checkpoint's sync (and its state file) may be on the
        // syncer: wait for it, and take over its failure.
        self.sync_barrier();
        self.syncer = None;
        // Close returns once every dropped file is gone.
        self.stop_retirer();
    }

    /// Wait until every fdatasync handed to the syncer has finished (and
    /// take over its failure, if one failed): before anything that must
    /// see all earlier events durable (flush, seal, retention, close).
    fn sync_barrier(&mut self) {
        if let Some(s) = self.syncer.as_mut() {
            while s.in_flight > 0 && s.wait_one() {}
        }
        self.adopt_sync_failure();
    }

    /// A failed fdatasync on the syncer stops the writer too.
    fn adopt_sync_failure(&mut self) {
        if self.failed.is_none() && self.shared.has_failed.load(Ordering::Acquire) {
            let why = self
                .shared
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_else(|| "fdatasync failed".into());
            self.fail(&why);
        }
    }

    /// `EveryBatch`: write the block, then hand its fdatasync and receipts
    /// to the syncer (inline if there is none, or the segment has no
    /// second handle).
    fn end_batch_pipelined(&mut self) {
        self.adopt_sync_failure();
        let file = self
            .active
            .as_ref()
            .and_then(|a| Some((a.sync.clone()?, a.meta.path.clone())));
        let (Some((file, path)), true) = (file, self.syncer.is_some()) else {
            self.end_batch(true);
            return;
        };
        if self.failed.is_none() {
            if let Err(e) = self.write_block() {
                let _ = self.on_error(&e.to_string());
            }
        }
        if self.failed.is_some() || !self.dirty {
            // Failed: fail what waits. Nothing written since the last sync
            // (a seal synced it): complete what waits.
            self.end_batch(false);
            return;
        }
        // The block may have gone to a new segment (a roll): sync that one.
        let (file, path) = match self.active.as_ref() {
            Some(a) if a.meta.path != path => match a.sync.clone() {
                Some(f) => (f, a.meta.path.clone()),
                None => {
                    self.end_batch(true);
                    return;
                }
            },
            _ => (file, path),
        };
        let cap = self.pending.len();
        let job = SyncJob {
            file,
            path,
            slots: std::mem::replace(&mut self.pending, Vec::with_capacity(cap)),
            durable_lsn: self.next_lsn,
            remember: None,
            stamps: self.take_stamps(),
            sync_dir: self.name_to_sync(),
        };
        let Some(s) = self.syncer.as_mut() else {
            return;
        };
        while s.in_flight >= MAX_SYNCS_IN_FLIGHT && s.wait_one() {}
        match s.send(job) {
            Ok(()) => {
                self.dirty = false;
                self.last_sync = Instant::now();
            }
            Err(job) => {
                // The syncer is gone: sync here from now on.
                self.syncer = None;
                self.pending.extend(job.slots);
                self.give_back_name_sync(job.sync_dir);
                self.end_batch(true);
            }
        }
        self.adopt_sync_failure();
    }

    /// Whether the next sync job fsyncs the folder (the active segment's
    /// name is not durable yet); the job owns that fsync from here on.
    fn name_to_sync(&mut self) -> bool {
        match self.active.as_mut() {
            Some(a) if !a.name_synced => {
                a.name_synced = true;
                true
            }
            _ => false,
        }
    }

    /// A job that owned the folder's fsync was not handed over.
    fn give_back_name_sync(&mut self, owned: bool) {
        if let (true, Some(a)) = (owned, self.active.as_mut()) {
            a.name_synced = false;
        }
    }

    /// fsync the folder here if the active segment's name is not durable
    /// yet (a sync run on the writer).
    fn sync_name_here(&mut self) -> Result<()> {
        if self.active.as_ref().is_some_and(|a| !a.name_synced) {
            fsutil::sync_dir(&self.shared.dir)?;
            if let Some(a) = self.active.as_mut() {
                a.name_synced = true;
            }
        }
        Ok(())
    }

    /// Wait for the next message; on the interval policy, sync when due.
    fn next_message(&mut self, rx: &Receiver<Msg>) -> Option<Msg> {
        loop {
            let sync_due = match self.cfg().durability {
                Durability::Interval(every) if self.dirty => {
                    let due = self.last_sync + every;
                    let now = Instant::now();
                    if now >= due {
                        self.end_batch(true);
                        continue;
                    }
                    Some(due - now)
                }
                _ => None,
            };
            // A checkpoint asked of the tree's threads is appended once
            // signed even if no event comes (an idle log after a roll);
            // likewise a retention pass's record once its tree fields are in.
            let asked = self.checkpoint_owed
                || self.tree.as_ref().is_some_and(|t| t.requested())
                || self.passes.busy();
            let wait = match (sync_due, asked) {
                (Some(d), true) => Some(d.min(SIGNED_POLL)),
                (None, true) => Some(SIGNED_POLL),
                (d, false) => d,
            };
            match wait {
                None => return rx.recv().ok(),
                Some(d) => match rx.recv_timeout(d) {
                    Ok(m) => return Some(m),
                    Err(RecvTimeoutError::Timeout) => {
                        if sync_due.is_some_and(|due| due <= d) {
                            self.end_batch(true);
                        }
                        if asked {
                            let owed = std::mem::take(&mut self.checkpoint_owed);
                            if let Err(e) = self.checkpoint_if_due(owed, false) {
                                let _ = self.on_error(&e.to_string());
                            }
                            self.poll_retention(false);
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => return None,
                },
            }
        }
    }

    /// Handle one message; the event bytes it added to the batch.
    fn handle(&mut self, msg: Msg) -> usize {
        match msg {
            Msg::Append(batch) => {
                let bytes = batch.frames.len();
                let failure = if let Some(why) = &self.failed {
                    Some(Failure::Stopped(why.clone()))
                } else if let Err(e) = self.append_batch(&batch) {
                    Some(self.on_error(&e.to_string()))
                } else {
                    None
                };
                let Batch {
                    frames,
                    slot,
                    recycle,
                    queued,
                    ..
                } = batch;
                match failure {
                    Some(why) => slot.fail(why),
                    None => {
                        // Moved, not cloned: a clone and the batch's drop
                        // were two atomic updates per append of a count
                        // whose cache line the producer had just written
                        // (the writer's costliest instruction at one event
                        // per append, docs/benchmarks.md, dur39 round).
                        self.pending.push(slot);
                        if let Some(queued) = queued {
                            let now = Instant::now();
                            self.stamps_open.push(Stamps {
                                queued,
                                taken: now,
                                write: (now, now),
                            });
                        }
                    }
                }
                // The frames are in the block (or refused): the buffer is
                // free for its owner's next request.
                if let Some(give_back) = recycle {
                    give_back(frames);
                }
                return bytes;
            }
            Msg::Flush(slot) => {
                self.sync_barrier();
                // A flush whose writes failed (even if cut back cleanly)
                // must not report success.
                let err = self.end_batch(true);
                self.finish_slot_or(slot, err);
            }
            Msg::Seal(slot) => {
                self.sync_barrier();
                let r = self.write_block().and_then(|_| self.seal_in_place());
                // A seal returns with its checkpoint remembered (the
                // syncer writes the state file).
                self.sync_barrier();
                if let Some(t) = self.tree.as_ref() {
                    // A seal returns with the segment's tree file stored.
                    t.caught_up();
                }
                let mut err = None;
                if let Err(e) = r {
                    err = Some(self.on_error(&e.to_string()));
                }
                let later = self.end_batch(true);
                self.finish_slot_or(slot, err.or(later));
            }
            Msg::Retain {
                cutoff,
                opts,
                reply,
                carry,
            } => {
                // Begun here, recorded at the end of a later cycle, its
                // files removed on the retire thread: the writer never
                // waits for the tree or the unlinks (src/writer/retire.rs).
                self.ask_retention(retire::RetainAsk {
                    cutoff,
                    opts,
                    reply,
                    carry,
                });
            }
        }
        0
    }

    /// Append event frames as stored (retention's carried copies).
    fn append_frames(&mut self, frames: &[(Micros, Vec<u8>)]) -> Result<()> {
        for (ts, frame) in frames {
            self.route(*ts, frame.len())?;
            self.block.extend_from_slice(frame);
            self.block_count += 1;
            self.block_min_ts = self.block_min_ts.min(*ts);
            self.block_max_ts = self.block_max_ts.max(*ts);
            if self.block.len() >= self.cfg().max_batch_bytes {
                self.write_block()?;
            }
        }
        self.write_block()
    }

    fn finish_slot_or(&mut self, slot: Arc<Slot>, err: Option<Failure>) {
        match err {
            Some(why) => slot.fail(why),
            None => self.finish_slot(slot),
        }
    }

    fn finish_slot(&mut self, slot: Arc<Slot>) {
        match &self.failed {
            Some(why) => slot.fail(Failure::Stopped(why.clone())),
            None => {
                let last = self.next_lsn.saturating_sub(1);
                slot.set_lsns(self.next_lsn, last);
                slot.complete();
            }
        }
    }

    /// Append a batch: its events take consecutive LSNs, so a segment
    /// roll inside it owes its checkpoint until the batch is in
    /// (`checkpoint_owed`, signed at the end of the cycle).
    fn append_batch(&mut self, batch: &Batch) -> Result<()> {
        let r = self.append_batch_frames(batch);
        self.mid_batch = false;
        r
    }

    fn append_batch_frames(&mut self, batch: &Batch) -> Result<()> {
        let mut off = 0usize;
        let mut first = self.next_lsn + u64::from(self.block_count);
        for (i, &(ts, len)) in batch.metas.as_slice().iter().enumerate() {
            let len = len as usize;
            self.mid_batch = i > 0;
            self.route(ts, len)?;
            if i == 0 {
                // A roll before the first event may have signed the
                // sealed segment (a checkpoint took an LSN).
                first = self.next_lsn + u64::from(self.block_count);
            }
            self.block.extend_from_slice(&batch.frames[off..off + len]);
            if let Some(h) = batch.leaves.get(i) {
                self.block_leaves.push(h);
            }
            off += len;
            self.block_count += 1;
            self.block_min_ts = self.block_min_ts.min(ts);
            self.block_max_ts = self.block_max_ts.max(ts);
            if self.block.len() >= self.cfg().max_batch_bytes {
                self.write_block()?;
            }
        }
        let last = self.next_lsn + u64::from(self.block_count) - 1;
        // Every frame of the batch went in, each with the next LSN.
        let n = batch.metas.len() as u64;
        self.invariant(off == batch.frames.len() && last + 1 - first == n, || {
            format!(
                "batch of {n} events ({} bytes) took LSN {first}..={last} and {off} bytes",
                batch.frames.len()
            )
        })?;
        batch.slot.set_lsns(first, last);
        Ok(())
    }

    /// An invariant of the writer (TigerBeetle style: asserted where it
    /// must hold). A violation is a bug: it stops the writer (a reopen
    /// recovers from what is on disk) rather than write on from a wrong
    /// state, in every build. It never panics: a panic on the writer
    /// thread would leave the waiters of the batch in hand blocked, where
    /// a stopped writer fails them with `WriterFailed` naming the breach.
    fn invariant(&mut self, holds: bool, what: impl FnOnce() -> String) -> Result<()> {
        if holds {
            return Ok(());
        }
        let why = format!("internal invariant violated: {}", what());
        tracing::error!("{why}");
        self.fail(&why);
        Err(Error::WriterFailed(why))
    }

    /// The block being built holds exactly `block_count` event frames
    /// (walked in debug builds only: it reads every frame header).
    fn block_is_whole(&self) -> bool {
        if !cfg!(debug_assertions) {
            return true;
        }
        let mut at = 0usize;
        let mut n = 0u32;
        while at < self.block.len() {
            match crate::frame::peek_frame(&self.block[at..]) {
                Some((crate::frame::REC_EVENT, size)) => at += size,
                _ => return false,
            }
            n += 1;
        }
        n == self.block_count
    }

    /// The active segment's file position is where its committed data
    /// ends (checked in debug builds: one `lseek` per block).
    fn at_data_end(active: &mut Active) -> bool {
        if !cfg!(debug_assertions) {
            return true;
        }
        active
            .file
            .stream_position()
            .is_ok_and(|p| p == active.meta.data_len)
    }

    /// Make sure the next event (of `ts`, `len` frame bytes) goes to the
    /// right segment: a new UTC day or a full segment starts a new one.
    fn route(&mut self, ts: Micros, len: usize) -> Result<()> {
        let day = self.day_of(ts);
        let mut roll_started = None;
        if let Some(a) = &self.active {
            let size = a.meta.data_len + (self.block.len() + len + 64) as u64;
            let has_data = a.meta.count > 0 || self.block_count > 0;
            let roll = day > a.meta.day || (has_data && size > self.cfg().segment_max_bytes);
            if !roll {
                return Ok(());
            }
            roll_started = stages::on().then(Instant::now);
            self.write_block()?;
            match self.active.as_ref().map(|a| a.meta.count) {
                Some(0) => self.discard_empty_active()?,
                _ => self.seal_active()?,
            }
        }
        let sealed_at = roll_started.map(|t0| {
            stages::record_roll_part(stages::RollPart::Seal, t0.elapsed());
            Instant::now()
        });
        // Late events (an older day) go into the current day's segment:
        // retention looks at each segment's newest event, so they are kept
        // at least as long as their neighbours.
        let day = day.max(self.last_day);
        // With a syncer, the new file's header and name are made durable
        // by the first sync of its events, not here: a roll no longer
        // stops the writer for two more flushes (pace42 round).
        let made = self.create_segment(day, self.syncer.is_some());
        if let (Some(t0), Some(t1)) = (roll_started, sealed_at) {
            stages::record_roll_part(stages::RollPart::Create, t1.elapsed());
            stages::record_roll(t0.elapsed());
        }
        made
    }

    fn day_of(&mut self, ts: Micros) -> u32 {
        let (from, to, day) = self.day_cache;
        if ts >= from && ts < to {
            return day;
        }
        let d = utc_day(ts);
        let yyyymmdd = day_to_yyyymmdd(d);
        // Every ts of UTC day `d` maps to the same YYYYMMDD (clamped days
        // included); near the ends of i64 nothing is cached.
        let start = d.checked_mul(MICROS_PER_DAY);
        self.day_cache = match start.and_then(|s| Some((s, s.checked_add(MICROS_PER_DAY)?))) {
            Some((s, e)) => (s, e, yyyymmdd),
            None => (0, 0, 0),
        };
        yyyymmdd
    }

    /// Remove an active segment that holds no event (a crash right after
    /// it was created, or a day that passed without events) instead of
    /// sealing it: only the newest segment may lack a footer, and an empty
    /// one cannot have one. Its sequence number is taken again, so the
    /// numbering has no gap.
    fn discard_empty_active(&mut self) -> Result<()> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        let m = &active.meta;
        debug_assert_eq!(m.count, 0);
        let io = &self.shared.config.io;
        let removed = io
            .gate(IoOp::Remove, &m.path)
            .and_then(|_| std::fs::remove_file(&m.path))
            .ctx(|| format!("removing the empty segment {}", m.path.display()));
        if let Err(e) = removed {
            // Still there and still ours: carry on with it.
            self.rolled_back = true;
            self.active = Some(active);
            return Err(e);
        }
        fsutil::sync_dir(&self.shared.dir)?;
        self.shared.segments_mut().retain(|s| s.seq != m.seq);
        self.next_seq = m.seq;
        if let Some(t) = self.tree.as_ref() {
            t.segment_discarded();
        }
        Ok(())
    }

    /// Create the next segment with its header. `deferred`: neither the
    /// header's fdatasync nor the folder's fsync here; the first sync job
    /// of the segment runs both before any of its receipts completes (a
    /// crash before then leaves the file missing, empty or with a header
    /// and unacknowledged blocks: what a crash during a create always
    /// could leave, docs/format.md "Recovery").
    fn create_segment(&mut self, day: u32, deferred: bool) -> Result<()> {
        let seq = self.next_seq;
        let name = segment::file_name(day, seq);
        let path: PathBuf = self.shared.dir.join(&name);
        let io = &self.shared.config.io;
        let header = Header {
            version: FORMAT_VERSION,
            codec: codec::CODEC_BINCODE2_STANDARD,
            day,
            seq,
            first_lsn: self.next_lsn,
            prev_digest: self.digest,
        };
        // A create that fails leaves no file behind (a partial one would
        // block the retry with EEXIST), so the writer can carry on once the
        // cause (a full disk, too many open files) is gone.
        if let Err(e) = io.gate(IoOp::Create, &path) {
            self.rolled_back = true;
            return Err(Error::io(format!("creating {}", path.display()), e));
        }
        let mut file = match fsutil::create_new_private(&path) {
            Ok(f) => f,
            Err(e) => {
                self.rolled_back = e.kind() != std::io::ErrorKind::AlreadyExists;
                return Err(Error::io(format!("creating {}", path.display()), e));
            }
        };
        let made = io
            .write_all(&mut file, &path, &header.encode())
            .ctx(|| format!("writing the header of {}", path.display()))
            .and_then(|_| {
                if deferred {
                    return Ok(());
                }
                io.sync_data(&file, &path)
                    .ctx(|| format!("syncing {}", path.display()))
                    .and_then(|_| fsutil::sync_dir(&self.shared.dir))
            });
        if let Err(e) = made {
            drop(file);
            self.rolled_back = std::fs::remove_file(&path).is_ok();
            return Err(e);
        }
        let meta = SegmentMeta {
            seq,
            day,
            name,
            path,
            first_lsn: self.next_lsn,
            count: 0,
            min_ts: None,
            max_ts: None,
            data_len: HEADER_SIZE as u64,
            prev_digest: self.digest,
            digest: self.digest,
            sealed: false,
        };
        self.shared.segments_mut().push(meta.clone());
        if let Some(t) = self.tree.as_ref() {
            t.segment_created(&meta);
        }
        let sync = file.try_clone().ok().map(Arc::new);
        self.active = Some(Active {
            file,
            meta,
            sync,
            version: FORMAT_VERSION,
            name_synced: !deferred,
        });
        self.next_seq += 1;
        self.last_day = day;
        Ok(())
    }

    /// Write the block built so far, closed by its commit record. No sync.
    fn write_block(&mut self) -> Result<()> {
        if self.block_count == 0 {
            return Ok(());
        }
        let whole = self.block_is_whole();
        let (block_first, count) = (self.block_first_lsn, self.block_count);
        let log_at = self.next_lsn;
        let continues = block_first == log_at;
        self.invariant(whole && continues, || {
            format!("a block of {count} events from LSN {block_first} (log at {log_at}) is not whole or does not continue the log")
        })?;
        let positioned = self.active.as_mut().is_none_or(Self::at_data_end);
        self.invariant(positioned, || {
            "the segment file is not positioned at its committed end".into()
        })?;
        let Some(active) = self.active.as_mut() else {
            return Err(Error::WriterFailed(
                "block without an active segment".into(),
            ));
        };
        let write_start = (!self.stamps_open.is_empty()).then(Instant::now);
        let first_lsn = self.next_lsn;
        let digest = block_digest(&self.digest, first_lsn, self.block_count, &self.block);
        let commit = Commit {
            first_lsn,
            count: self.block_count,
            digest,
        };
        let frames_len = self.block.len();
        let block_start = active.meta.data_len;
        commit.write(&mut self.block);
        let path = active.meta.path.clone();
        let io = &self.shared.config.io;
        if let Err(e) = io.write_all(&mut active.file, &path, &self.block) {
            // Cut whatever part of the block reached the file, so nothing is
            // stored half-way. If that works the log stays usable (a full
            // disk is retried once space is freed); if not, the writer stops
            // and a reopen recovers from what is on disk.
            // The file may not be in append mode (a segment created by this
            // writer is not): put the cursor back too, or the next write
            // would leave a hole of zeros where the cut bytes were.
            let len = active.meta.data_len;
            self.rolled_back = active
                .file
                .set_len(len)
                .and_then(|_| active.file.seek(SeekFrom::Start(len)))
                .is_ok();
            self.reset_block();
            return Err(Error::io(format!("writing to {}", path.display()), e));
        }
        self.dirty = true;
        let m = &mut active.meta;
        m.data_len += self.block.len() as u64;
        m.count += self.block_count as u64;
        m.min_ts = Some(
            m.min_ts
                .map_or(self.block_min_ts, |t| t.min(self.block_min_ts)),
        );
        m.max_ts = Some(
            m.max_ts
                .map_or(self.block_max_ts, |t| t.max(self.block_max_ts)),
        );
        m.digest = digest;
        if let Some(t) = self.tree.as_mut() {
            let frames = &self.block[..frames_len];
            let is_checkpoint = std::mem::take(&mut self.block_is_checkpoint);
            let count = u64::from(self.block_count);
            t.block_written(
                (m.seq, m.path.as_path()),
                block_start,
                first_lsn,
                count,
                &mut self.block_leaves,
                frames,
                is_checkpoint,
            );
        }
        if self.block_max_ts != Micros::MIN {
            self.newest_ts = Some(
                self.newest_ts
                    .map_or(self.block_max_ts, |t| t.max(self.block_max_ts)),
            );
        }
        self.next_lsn += u64::from(self.block_count);
        self.digest = digest;
        let snapshot = m.clone();
        let seg_end = snapshot.end_lsn();
        let next = self.next_lsn;
        self.invariant(seg_end == next, || {
            format!("segment ends at LSN {seg_end} but the log is at {next}")
        })?;
        self.reset_block();
        self.shared.publish_active(snapshot, self.next_lsn, digest);
        if let Some(t0) = write_start {
            let t1 = Instant::now();
            for mut e in self.stamps_open.drain(..) {
                e.write = (t0, t1);
                self.stamps_written.push(e);
            }
        }
        Ok(())
    }

    /// Forget the block being built (written, or cut back after a failure;
    /// a stale min/max ts would leak into the segment's footer).
    fn reset_block(&mut self) {
        self.block_is_checkpoint = false;
        self.block_leaves.clear();
        self.block.clear();
        self.block_count = 0;
        self.block_first_lsn = self.next_lsn;
        self.block_min_ts = Micros::MAX;
        self.block_max_ts = Micros::MIN;
    }

    /// `Log::seal`: the segment's checkpoint is signed in place, its
    /// last event (a roll defers it: `seal_active`).
    fn seal_in_place(&mut self) -> Result<()> {
        self.seal_in_place = true;
        let r = self.seal_active();
        self.seal_in_place = false;
        r
    }

    /// Seal the active segment: a checkpoint when signing, footer, sync,
    /// then record it in the manifest (and store its share of the tree).
    /// A roll of a format 6 segment asks the tree's threads for the
    /// checkpoint of its last event instead, which lands in the next
    /// segment (or, if one is still asked for, at the end of the cycle).
    fn seal_active(&mut self) -> Result<()> {
        // The segment's last event: a checkpoint, remembered once the
        // footer's sync made it and what it covers durable.
        let mut signed = None;
        let defers = !self.seal_in_place && self.defers();
        let has_events = self.active.as_ref().is_some_and(|a| a.meta.count > 0);
        if has_events && defers {
            if let Some(t) = self.tree.as_mut() {
                if t.checkpoint_due(true) && !t.request_checkpoint() {
                    // One is out already: ask at the cycle's end.
                    self.checkpoint_owed = true;
                }
            }
        } else if has_events {
            if self.mid_batch {
                // Not between two events of one batch (they take
                // consecutive LSNs): the next segment gets it instead.
                self.checkpoint_owed = self.tree.is_some();
            } else {
                signed = self.append_checkpoint(true)?;
            }
        }
        let Some(mut active) = self.active.take() else {
            return Ok(());
        };
        let m = &mut active.meta;
        if m.count == 0 {
            // Nothing in it: keep it as the active segment instead.
            self.active = Some(active);
            return Ok(());
        }
        let footer = Footer {
            count: m.count,
            first_lsn: m.first_lsn,
            min_ts: m.min_ts.unwrap_or(0),
            max_ts: m.max_ts.unwrap_or(0),
            digest: m.digest,
            data_end: m.data_len,
        };
        let bytes = footer.encode_with_trailer(m.data_len);
        let shared = self.shared.clone();
        let io = &shared.config.io;
        if let Err(e) = io.write_all(&mut active.file, &m.path, &bytes) {
            // Cut the partial footer and keep the segment active: a full
            // disk at a roll is retried like any failed block write.
            let len = m.data_len;
            let path = m.path.clone();
            self.rolled_back = active
                .file
                .set_len(len)
                .and_then(|_| active.file.seek(SeekFrom::Start(len)))
                .is_ok();
            self.active = Some(active);
            return Err(Error::io(format!("sealing {}", path.display()), e));
        }
        // The footer's fdatasync runs on the syncer (after the blocks
        // handed to it before, with the receipts still waiting and the
        // checkpoint to remember) while MANIFEST.tmp is written and synced
        // here: the two flushes overlap instead of following each other.
        // The MANIFEST is replaced only once both are durable, so what a
        // crash can leave is unchanged (pace42 round).
        let footer_job = match (active.sync.clone(), self.syncer.is_some()) {
            (Some(file), true) => Some(SyncJob {
                file,
                path: m.path.clone(),
                slots: std::mem::take(&mut self.pending),
                durable_lsn: self.next_lsn,
                remember: signed.take(),
                stamps: self.take_stamps(),
                sync_dir: false,
            }),
            _ => None,
        };
        let on_syncer = match footer_job.map(|job| self.send_job(job)) {
            Some(Ok(())) => true,
            Some(Err(job)) => {
                signed = job.remember;
                false
            }
            None => false,
        };
        if !on_syncer {
            let t0 = stages::on().then(Instant::now);
            io.sync_data(&active.file, &m.path)
                .ctx(|| format!("syncing {}", m.path.display()))?;
            self.inline_sync = t0.map(|t0| (t0, Instant::now()));
        }
        self.dirty = false;
        m.sealed = true;
        if let Some(note) = signed {
            // Durable now; the state file is written by the syncer (after
            // the checkpoints handed to it before), or here without one.
            let handed = match active.sync.clone() {
                Some(f) => self.hand_remember(f, m.path.clone(), note),
                None => Err(note),
            };
            if let Err(note) = handed {
                self.remember_checkpoint(&note);
            }
        }
        self.manifest.sealed.push(m.manifest_entry());
        self.shared
            .config
            .io
            .gate(IoOp::Rename, &self.shared.dir.join("MANIFEST"))
            .ctx(|| "replacing MANIFEST".to_string())?;
        self.manifest.write_tmp(&self.shared.dir)?;
        if on_syncer {
            // The footer durable (and every block before it), or the
            // syncer's failure taken over: no MANIFEST names the seal then.
            self.sync_barrier();
            if let Some(why) = &self.failed {
                return Err(Error::WriterFailed(why.clone()));
            }
        }
        Manifest::commit_tmp(&self.shared.dir)?;
        let sealed = m.clone();
        if let Some(t) = self.tree.as_ref() {
            t.segment_sealed(&sealed);
        }
        self.shared.replace_segment(sealed.clone());
        self.shared.run_seal_hooks(&sealed);
        // Receipts written to this segment are durable now.
        self.complete_pending();
        Ok(())
    }

    /// Close the batch: write the block, sync if asked, complete receipts.
    /// The failure of a write or sync that failed here, if one did.
    fn end_batch(&mut self, sync: bool) -> Option<Failure> {
        let mut err = None;
        if self.failed.is_none() {
            if let Err(e) = self.write_block() {
                err = Some(self.on_error(&e.to_string()));
            }
        }
        if self.failed.is_none() && sync && self.dirty {
            let synced = self.active.as_ref().map(|a| {
                let t0 = stages::on().then(Instant::now);
                let r = self.shared.config.io.sync_data(&a.file, &a.meta.path);
                (r, t0, a.meta.path.clone())
            });
            if let Some((synced, t0, path)) = synced {
                // A roll may have left the segment's name to this sync.
                let synced = synced.and_then(|_| {
                    self.sync_name_here()
                        .map_err(|e| std::io::Error::other(e.to_string()))
                });
                self.inline_sync = t0.map(|t0| (t0, Instant::now()));
                if let Err(e) = synced {
                    // Never retry a failed fdatasync as if the data were safe
                    // (the kernel may have dropped the dirty pages): fail
                    // everything pending; a reopen recovers from the disk.
                    let why = format!("fdatasync of {} failed: {e}", path.display());
                    self.fail(&why);
                    err = Some(Failure::Stopped(why));
                }
            }
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        let durable_now = self.failed.is_none()
            && (!self.dirty || matches!(self.cfg().durability, Durability::Never));
        if durable_now {
            self.complete_pending();
        } else if self.failed.is_some() {
            let why = self.failed.clone().unwrap_or_default();
            for s in self.pending.drain(..) {
                s.fail(Failure::Stopped(why.clone()));
            }
            self.take_stamps();
        }
        err
    }

    /// The stage stamps of every append handed on or finished now (those
    /// whose block was not written alone keep their take time as its).
    fn take_stamps(&mut self) -> Vec<Stamps> {
        take_stamps(&mut self.stamps_written, &mut self.stamps_open)
    }

    fn complete_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // Timed before the receipts complete (see `sync_loop`).
        let stamps = self.take_stamps();
        if !stamps.is_empty() {
            let now = Instant::now();
            stages::record(&stamps, self.inline_sync.unwrap_or((now, now)), now);
        }
        crate::receipt::complete_all(self.pending.iter());
        self.pending.clear();
        // fetch_max: the syncer may report an older LSN after this.
        self.shared
            .durable_lsn
            .fetch_max(self.next_lsn, Ordering::AcqRel);
    }

    /// A failed write that was cut back cleanly only fails the receipts
    /// that were waiting (retryable); anything else stops the writer.
    fn on_error(&mut self, why: &str) -> Failure {
        if std::mem::take(&mut self.rolled_back) {
            tracing::warn!(error = why, "auditlog write failed and was rolled back");
            let failure = Failure::RolledBack(why.to_string());
            for s in self.pending.drain(..) {
                s.fail(failure.clone());
            }
            self.take_stamps();
            failure
        } else {
            self.fail(why);
            Failure::Stopped(why.to_string())
        }
    }

    fn fail(&mut self, why: &str) {
        if self.failed.is_none() {
            tracing::error!(error = why, "auditlog writer stopped");
            self.failed = Some(why.to_string());
            *self.shared.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
            self.shared
                .has_failed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        self.reset_block();
    }
}

// ---------------------------------------------------------------------------
// System events: cuts, repairs and retention, recorded in the log
// (docs/integrity.md). Run on the writer thread, or before it starts.
// ---------------------------------------------------------------------------

/// The wall clock as a valid event timestamp.
fn now_micros() -> Micros {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    i64::try_from(now)
        .unwrap_or(i64::MAX)
        .clamp(0, crate::event::time::MAX_TS)
}

impl Writer {
    /// Append one system event as a block of its own and make it durable
    /// (fdatasync, whatever the policy). Where it landed.
    pub(crate) fn append_system(&mut self, record: SystemRecord) -> Result<RecordRef> {
        if let Some(why) = &self.failed {
            return Err(Error::WriterFailed(why.clone()));
        }
        self.write_block()?;
        let ev = Event::system(now_micros(), record);
        let mut body = Vec::new();
        codec::encode_event(&ev, &mut body).map_err(|reason| Error::Corrupt {
            segment: "system event".into(),
            offset: 0,
            reason: reason.to_string(),
        })?;
        let mut frame = Vec::with_capacity(body.len() + 9);
        crate::frame::write_frame(&mut frame, crate::frame::REC_EVENT, &body);
        self.route_system(frame.len())?;
        let (seq, offset) = match &self.active {
            Some(a) => (a.meta.seq, a.meta.data_len),
            None => {
                return Err(Error::WriterFailed(
                    "no active segment for a system event".into(),
                ))
            }
        };
        let lsn = self.next_lsn;
        self.block.extend_from_slice(&frame);
        self.block_count = 1;
        self.block_min_ts = ev.ts;
        self.block_max_ts = ev.ts;
        self.write_block()?;
        self.sync_active()?;
        self.dirty = false;
        self.shared
            .durable_lsn
            .fetch_max(self.next_lsn, Ordering::AcqRel);
        Ok(RecordRef { seq, offset, lsn })
    }

    /// Where a system event goes: the active segment whatever the day (the
    /// log's own record belongs with what it is about), unless it is full;
    /// a new segment (of today, or the newest day seen) if there is none.
    fn route_system(&mut self, len: usize) -> Result<()> {
        if let Some(a) = &self.active {
            let size = a.meta.data_len + (len + 64) as u64;
            if a.meta.count == 0 || size <= self.cfg().segment_max_bytes {
                return Ok(());
            }
            self.seal_active()?;
        }
        let day = self.day_of(now_micros()).max(self.last_day);
        self.create_segment(day, false)
    }

    /// The newest block of the log, if it holds only `record` (a pending
    /// record that already reached the log before a crash).
    fn last_record_is(&self, record: &SystemRecord) -> Option<RecordRef> {
        let meta = self
            .shared
            .segments()
            .into_iter()
            .rev()
            .find(|s| s.count > 0)?;
        let map = crate::layout::map_file(&meta.path).ok()??;
        let mut walk = crate::blocks::Walk::new(
            &map,
            HEADER_SIZE as u64,
            meta.data_len,
            meta.prev_digest,
            meta.first_lsn,
        );
        let mut last = None;
        while let Ok(Some(b)) = walk.next_block() {
            last = Some((
                b.start,
                b.commit,
                b.events().next().map(|(_, p)| p.to_vec()),
            ));
        }
        let (start, commit, payload) = last?;
        let ev = codec::decode_stored(&payload?).ok()?;
        (commit.count == 1 && ev.data.system() == Some(record)).then_some(RecordRef {
            seq: meta.seq,
            offset: start,
            lsn: commit.first_lsn,
        })
    }

    /// Finish a cut or repair whose files are in place (the quarantine file
    /// written, the segment cut back to its kept prefix): seal the kept
    /// segment and start the next one after the gap when LSNs or segment
    /// numbers are skipped, append the record, clear `pending`.
    pub(crate) fn record_cut(&mut self, record: SystemRecord) -> Result<()> {
        let Some(cut) = record.cut().cloned() else {
            return Err(Error::InvalidArgument("not a cut record".into()));
        };
        if self.digest != cut.kept_digest() {
            return Err(Error::Corrupt {
                segment: cut.segment.clone(),
                offset: cut.valid_end,
                reason: format!(
                    "the pending {} record goes on from digest {}, but the log ends at {}; nothing was changed",
                    record.name(),
                    cut.kept_digest,
                    self.digest
                ),
            });
        }
        let done = match cut.needs_new_segment() {
            true => self
                .shared
                .segments()
                .last()
                .is_some_and(|s| s.seq == cut.skip_to_seq && s.count > 0),
            false => self.last_record_is(&record).is_some(),
        };
        if !done {
            if cut.needs_new_segment() {
                self.open_after_gap(&cut)?;
            }
            self.append_system(record)?;
        }
        self.manifest.pending = None;
        self.manifest.store(&self.shared.dir)
    }

    /// Make the segment after a gap the active one: the kept segment sealed,
    /// then (unless a crash left it already) a new segment whose header
    /// starts at the gap's end.
    fn open_after_gap(&mut self, cut: &Cut) -> Result<()> {
        let reuse = self
            .active
            .as_ref()
            .is_some_and(|a| a.meta.seq == cut.skip_to_seq && a.meta.count == 0);
        if reuse {
            return Ok(());
        }
        if self.active.as_ref().is_some_and(|a| a.meta.count > 0) {
            self.seal_active()?;
        }
        self.active = None;
        self.next_seq = self.next_seq.max(cut.skip_to_seq);
        self.next_lsn = self.next_lsn.max(cut.skip_to_lsn);
        // The one place LSNs jump (a recorded gap): the empty block being
        // built starts after it.
        let (waiting, to) = (self.block_count, self.next_lsn);
        self.invariant(waiting == 0, || {
            format!("{waiting} events were waiting in a block when the log jumped to LSN {to}")
        })?;
        self.block_first_lsn = self.next_lsn;
        let day = self.day_of(now_micros()).max(self.last_day);
        self.create_segment(day, false)
    }

    /// Sign a checkpoint of the tree and append it, if one is due (at the
    /// interval, and at close when forced), and remember it beside the key.
    /// Every event the checkpoint covers is made durable before it is
    /// remembered, so that the state file never names a tree the log cannot
    /// reproduce after a crash. With the syncer thread (`EveryBatch`), both
    /// the fdatasync and the state file's write (two fsyncs) run there,
    /// after the blocks before, instead of stalling the writer; otherwise
    /// here. A signing failure (the state file cannot be written) is
    /// reported and skipped: events keep being stored; the write of the
    /// checkpoint itself fails like any write.
    ///
    /// Deferred signing (format 6, docs/proofs.md): unless `in_place`
    /// (close) or the active segment is older, a due checkpoint is only
    /// asked of the tree's threads (`TreeWorker::request_checkpoint`);
    /// the one they signed is appended here at a later cycle
    /// (`append_signed`), covering the events up to where it was asked.
    fn checkpoint_if_due(&mut self, forced: bool, in_place: bool) -> Result<()> {
        self.append_signed(in_place)?;
        if !in_place && self.defers() {
            let Some(t) = self.tree.as_mut() else {
                return Ok(());
            };
            if self.failed.is_none() && t.checkpoint_due(forced) && !t.request_checkpoint() {
                // One is out still (a seal asked for it): ask again later.
                self.checkpoint_owed = forced;
            }
            // Bounds how long events stay unsigned behind a starved tree.
            t.hurry_if_late();
            return Ok(());
        }
        let Some(note) = self.append_checkpoint(forced)? else {
            return Ok(());
        };
        self.remember_once_durable(note)
    }

    /// Whether the active segment (or, with none, the next) takes
    /// deferred checkpoint records.
    fn defers(&self) -> bool {
        !self.cfg().checkpoints_in_place
            && self
                .active
                .as_ref()
                .is_none_or(|a| a.version >= DEFERRED_CHECKPOINTS_FROM)
    }

    /// Append the checkpoint the tree's threads signed, if they have
    /// (`wait`: signed here if not yet: before close, a signing in place
    /// and a retention cut), and remember it once durable.
    fn append_signed(&mut self, wait: bool) -> Result<()> {
        let Some(t) = self.tree.as_mut() else {
            return Ok(());
        };
        let got = match wait {
            true => t.wait_requested(),
            false => t.take_signed(),
        };
        let record = match got {
            None => return Ok(()),
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                self.signing_failed(&e);
                return Ok(());
            }
        };
        if self.failed.is_some() {
            return Ok(());
        }
        let note = self.append_record(record)?;
        self.remember_once_durable(note)
    }

    /// A checkpoint could not be signed: reported, events still stored.
    fn signing_failed(&self, e: &Error) {
        tracing::error!(error = %e, "auditlog could not sign a checkpoint; events are still stored");
        *self
            .shared
            .checkpoint_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Make the checkpoint just appended durable, then remember `note`
    /// (on the syncer if there is one, else here).
    fn remember_once_durable(&mut self, note: String) -> Result<()> {
        let note = match self.sync_then_remember(note) {
            Ok(()) => {
                self.dirty = false;
                self.last_sync = Instant::now();
                return Ok(());
            }
            Err(note) => note,
        };
        self.sync_active()?;
        self.remember_checkpoint(&note);
        Ok(())
    }

    /// Hand the syncer a job that makes everything written so far durable
    /// (the checkpoint's block included) and then remembers `note`; the
    /// note back if there is no syncer to take it. Every remembered
    /// checkpoint goes this way while there is a syncer, so the state file
    /// is written in the order they were signed.
    fn sync_then_remember(&mut self, note: String) -> std::result::Result<(), String> {
        let file = self
            .active
            .as_ref()
            .and_then(|a| Some((a.sync.clone()?, a.meta.path.clone())));
        let Some((file, path)) = file else {
            return Err(note);
        };
        self.hand_remember(file, path, note)
    }

    /// Queue `note` to be remembered after an fdatasync of `file`.
    fn hand_remember(
        &mut self,
        file: Arc<File>,
        path: PathBuf,
        note: String,
    ) -> std::result::Result<(), String> {
        if self.syncer.is_none() {
            return Err(note);
        }
        let job = SyncJob {
            file,
            path,
            slots: std::mem::take(&mut self.pending),
            durable_lsn: self.next_lsn,
            remember: Some(note),
            stamps: take_stamps(&mut self.stamps_written, &mut self.stamps_open),
            sync_dir: false,
        };
        self.send_job(job)
            .map_err(|job| job.remember.unwrap_or_default())
    }

    /// Hand `job` to the syncer (the folder's fsync with it if the active
    /// segment's name is not durable yet and the job syncs that segment);
    /// it back, its receipts and that fsync taken back, if there is none.
    fn send_job(&mut self, mut job: SyncJob) -> std::result::Result<(), SyncJob> {
        let is_active = self
            .active
            .as_ref()
            .is_some_and(|a| a.meta.path == job.path);
        if is_active && !job.sync_dir {
            job.sync_dir = self.name_to_sync();
        }
        let Some(s) = self.syncer.as_mut() else {
            self.pending.append(&mut job.slots);
            self.give_back_name_sync(job.sync_dir);
            return Err(job);
        };
        while s.in_flight >= MAX_SYNCS_IN_FLIGHT && s.wait_one() {}
        match s.send(job) {
            Ok(()) => Ok(()),
            Err(mut job) => {
                // The syncer is gone: sync here from now on.
                self.syncer = None;
                self.pending.append(&mut job.slots);
                self.give_back_name_sync(job.sync_dir);
                Err(job)
            }
        }
    }

    /// fdatasync the active segment (if any), naming it in the error; its
    /// name too if a roll left that.
    fn sync_active(&mut self) -> Result<()> {
        if let Some(a) = &self.active {
            self.shared
                .config
                .io
                .sync_data(&a.file, &a.meta.path)
                .ctx(|| format!("syncing {}", a.meta.path.display()))?;
        }
        self.sync_name_here()
    }

    /// Remember a checkpoint whose events are durable, here (a failure is
    /// reported, not fatal: the key's state then names an older, still
    /// consistent checkpoint). Only without a syncer thread.
    fn remember_checkpoint(&mut self, note: &str) {
        if self.tree.is_some() {
            remember_checkpoint(&self.shared, note);
        }
    }

    /// Sign a checkpoint in place and append it, if one is due (a
    /// checkpoint asked of the tree's threads before is appended first);
    /// its note, to remember once what it covers is durable.
    fn append_checkpoint(&mut self, forced: bool) -> Result<Option<String>> {
        if self.tree.as_ref().is_some_and(|t| t.requested()) {
            self.append_signed(true)?;
        }
        let due = self.tree.as_ref().is_some_and(|t| t.checkpoint_due(forced));
        if !due || self.failed.is_some() {
            return Ok(None);
        }
        self.write_block()?;
        let Some(tree) = self.tree.as_mut() else {
            return Ok(None);
        };
        let record = match tree.sign_checkpoint() {
            Ok(r) => r,
            Err(e) => {
                self.signing_failed(&e);
                return Ok(None);
            }
        };
        self.append_record(record).map(Some)
    }

    /// Append a signed checkpoint record, alone in its block (the block
    /// being built is written first); its note.
    fn append_record(&mut self, record: TreeCheckpoint) -> Result<String> {
        self.write_block()?;
        let note = record.note.clone();
        if self.active.is_none() {
            // The checkpoint belongs with the events it covers: the newest
            // segment's day, not the wall clock's.
            self.create_segment(self.last_day, false)?;
        }
        let ts = self.newest_ts.unwrap_or_else(now_micros);
        let ev = Event::system(ts, SystemRecord::Checkpoint(record));
        let mut body = Vec::new();
        codec::encode_event(&ev, &mut body).map_err(|reason| Error::Corrupt {
            segment: "checkpoint event".into(),
            offset: 0,
            reason: reason.to_string(),
        })?;
        crate::frame::write_frame(&mut self.block, crate::frame::REC_EVENT, &body);
        self.block_count = 1;
        self.block_min_ts = ts;
        self.block_max_ts = ts;
        self.block_is_checkpoint = true;
        self.write_block()?;
        if let (Some(t), Some(a)) = (self.tree.as_ref(), self.active.as_ref()) {
            t.store_share(&a.meta);
        }
        Ok(note)
    }

    /// Act on a retention record that is in the log at `at`.
    fn apply_retention(&mut self, rec: &Retention, at: RecordRef) -> Result<RetentionReport> {
        let (report, gone) = self.anchor_retention(rec, at)?;
        retire::remove_dropped(&self.shared, report, &gone)
    }

    /// The first half of acting on a retention record in the log at `at`
    /// (`retention::anchor`: the MANIFEST's new anchor, the dropped
    /// segments forgotten): the report and the segments whose files are
    /// to be removed. Shared by the open path and the writer's passes.
    fn anchor_retention(
        &mut self,
        rec: &Retention,
        at: RecordRef,
    ) -> Result<(RetentionReport, Vec<SegmentMeta>)> {
        let segments = self.shared.segments();
        let pass = retention::Pass {
            dir: &self.shared.dir,
            io: &self.shared.config.io,
            segments: &segments,
        };
        let shared = &self.shared;
        retention::anchor(pass, &mut self.manifest, rec, at, |last| {
            shared.segments_mut().retain(|s| s.seq > last)
        })
    }

    /// At open: finish a retention whose record reached the log before a
    /// crash, or forget one that did not (nothing was dropped then).
    pub(crate) fn finish_pending_retention(&mut self, record: SystemRecord) -> Result<()> {
        let SystemRecord::Retention(rec) = &record else {
            return Err(Error::InvalidArgument("not a retention record".into()));
        };
        match self.last_record_is(&record) {
            Some(at) => self.apply_retention(rec, at).map(|_| ()),
            None => {
                self.manifest.pending = None;
                self.manifest.store(&self.shared.dir)
            }
        }
    }
}

/// The format version in a segment file's header.
fn header_version(path: &std::path::Path) -> std::io::Result<u16> {
    use std::io::Read as _;
    let mut b = [0u8; HEADER_SIZE];
    File::open(path)?.read_exact(&mut b)?;
    Header::decode(&b)
        .map(|h| h.version)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}
