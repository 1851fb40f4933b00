//! The public handle: open a log for writing, append events through the
//! lock-free ingest queue, wait for durability, read it back.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};

use crate::codec;
use crate::config::{Config, FullPolicy};
use crate::error::{Error, Result};
use crate::event::borrowed::EventRef;
use crate::event::json::{check_incoming, check_incoming_ref, validate_event};
use crate::event::system::{Cut, SystemRecord};
use crate::event::{Event, Micros};
use crate::frame::{self, FRAME_HEADER, MAX_FRAME_BODY, REC_EVENT};
use crate::layout::{self, Head, Mode, RecoveryReport};
use crate::lock::WriterLock;
use crate::manifest::Manifest;
use crate::reader::LogReader;
use crate::receipt::{LsnRange, Receipt, Slot};
use crate::recovery;
use crate::redact::RedactionPolicy;
use crate::retention::RetentionReport;
use crate::shared::Shared;
use crate::tree::keeper::TreeKeeper;
use crate::tree::worker::{producers_hash_leaves, TreeWorker};
use crate::writer::{Batch, FrameRecycler, Leaves, Metas, Msg, Writer};

/// Operator counters, cheap to read at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub appended: u64,
    pub dropped: u64,
    pub rejected: u64,
    /// LSN one past the last event durable per policy.
    pub durable_lsn: u64,
    /// Appends waiting in the ingest queue.
    pub queue_depth: u64,
    /// Encoded bytes waiting in the ingest queue.
    pub queue_bytes: u64,
}

/// `Log::tree_waits`: how the writer waited for the Merkle tree.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeWaitStats {
    /// Times the writer took the tree.
    pub calls: u64,
    /// Total and longest wait for the tree's lock.
    pub lock_wait: std::time::Duration,
    pub longest_lock_wait: std::time::Duration,
    /// Total time the writer spent applying what the tree's threads had
    /// not yet (its catch-up).
    pub catch_up: std::time::Duration,
}

/// A log open for writing. One per folder (an fs2 lock enforces it).
pub struct Log {
    shared: Arc<Shared>,
    tx: Option<Sender<Msg>>,
    writer: Option<JoinHandle<()>>,
    recovery: RecoveryReport,
    /// Released by [`Log::shut_down`] (or when the log drops).
    lock: Option<WriterLock>,
}

impl Log {
    /// Open (or create) the log in `config.dir` for writing. A torn tail
    /// of the active segment is cut into `quarantine/` and the cut recorded;
    /// a cut, repair or retention a crash interrupted is finished; any
    /// other damage is refused (docs/integrity.md).
    pub fn open(config: Config) -> Result<Log> {
        config.check()?;
        let dir = config.dir.clone();
        let (manifest, fresh) = layout::load_or_create_manifest(&dir, config.create)?;
        let lock = WriterLock::acquire(&dir)?;
        if fresh {
            manifest.store(&dir)?;
        }
        // Reopening after a failed sync: what recovery reads must be on
        // disk, not only in the page cache (see `resync_segments`).
        if let Some(from) = config.resync_from_seq {
            resync_segments(&dir, from, &config.io)?;
        }
        let (mut lay, cut) = Self::recover(&dir, manifest)?;
        // The policy in force: the one given (a change is recorded in the
        // MANIFEST) or, given none, the one the log recorded last.
        let next_lsn = Head::of(&lay.manifest, &lay.segments).next_lsn;
        let (policy, policy_changed) = crate::redact::record::settle(
            config.redaction.as_ref(),
            &mut lay.manifest,
            next_lsn,
            crate::event::time::now_micros(),
        )?;
        let mut config = config;
        config.redaction = policy;
        // An older log is upgraded by its first new writer, so that a
        // reader too old for what this writer may add refuses the log
        // instead of misreading it.
        let upgrade = lay.manifest.version < crate::manifest::MANIFEST_VERSION;
        lay.manifest.version = crate::manifest::MANIFEST_VERSION;
        if policy_changed || upgrade {
            lay.manifest.store(&dir)?;
        }
        let head = Head::of(&lay.manifest, &lay.segments);
        let shared = Arc::new(Shared::new(config, lay.segments.clone(), head));
        let pending = lay.manifest.pending.clone();
        let mut recovery = lay.recovery;
        recovery.cut = cut;
        let tree_base = crate::tree::logtree::tree_base(&lay.manifest, &lay.segments)?;
        let keeper = match shared.config.merkle_tree {
            true => Some(TreeWorker::start(
                TreeKeeper::open(
                    &dir,
                    &lay.segments,
                    tree_base.clone(),
                    shared.config.checkpoints.clone(),
                )?,
                shared.tree_behind.clone(),
                shared.tree_waits.clone(),
            )?),
            false => None,
        };
        let mut writer = Writer::new(
            shared.clone(),
            lay.manifest,
            &lay.segments,
            keeper,
            tree_base,
        )?;
        if let Some(record) = pending {
            if recovery.cut.is_none() {
                recovery.finished_pending = Some(record.name().to_string());
            }
            match record {
                SystemRecord::Retention(_) => writer.finish_pending_retention(record)?,
                _ => writer.record_cut(record)?,
            }
        }
        let (tx, rx) = crossbeam_channel::bounded(shared.config.queue_capacity);
        let handle = std::thread::Builder::new()
            .name("auditlog-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io("starting the writer thread", e))?;
        Ok(Log {
            shared,
            tx: Some(tx),
            writer: Some(handle),
            recovery,
            lock: Some(lock),
        })
    }

    /// Read the layout, finishing the file steps of a pending cut and
    /// cutting a torn tail (into quarantine/, with a pending record the
    /// writer then appends). The cut made here, if any.
    fn recover(dir: &Path, manifest: Manifest) -> Result<(layout::Layout, Option<Cut>)> {
        if let Some(cut) = manifest.pending.as_ref().and_then(|p| p.cut()) {
            recovery::apply_cut_files(dir, cut)?;
        }
        let mut lay = layout::discover(dir, manifest, Mode::Write)?;
        let Some(tail) = lay.tail.take() else {
            if lay.manifest_changed {
                lay.manifest.store(dir)?;
            }
            return Ok((lay, None));
        };
        let bytes = std::fs::read(&tail.path)
            .map_err(|e| Error::io(format!("reading {}", tail.path.display()), e))?;
        let cut = recovery::plan_torn_tail_cut(dir, &tail, &bytes);
        drop(bytes);
        let mut manifest = lay.manifest;
        recovery::set_pending(dir, &mut manifest, SystemRecord::TornTailCut(cut.clone()))?;
        recovery::apply_cut_files(dir, &cut)?;
        let removed = lay.recovery.removed_leftovers;
        let mut lay = layout::discover(dir, manifest, Mode::Write)?;
        lay.recovery.removed_leftovers.splice(0..0, removed);
        if lay.manifest_changed {
            lay.manifest.store(dir)?;
        }
        Ok((lay, Some(cut)))
    }

    /// What opening repaired (a torn tail cut, leftovers removed).
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Append one event; returns at once with a receipt.
    pub fn append(&self, ev: &Event) -> Result<Receipt> {
        self.append_batch(std::slice::from_ref(ev))
    }

    /// Append events as one unit of the queue (cheaper per event). They get
    /// consecutive LSNs. Any invalid event rejects the whole call.
    pub fn append_batch(&self, events: &[Event]) -> Result<Receipt> {
        // The count is known before encoding: refuse an oversized call
        // before paying for it.
        if let Err(e) = self.check_batch(events.len(), 0) {
            self.reject(events.len());
            return Err(e);
        }
        match EncodedBatch::encode_redacted(events, self.redaction()) {
            Ok(b) => self.append_encoded(b),
            Err(e) => {
                self.reject(events.len());
                Err(e)
            }
        }
    }

    fn reject(&self, events: usize) {
        self.shared
            .rejected
            .fetch_add(events as u64, Ordering::Relaxed);
    }

    /// An append of `events` events and `bytes` encoded bytes is within
    /// the per-call limits.
    fn check_batch(&self, events: usize, bytes: usize) -> Result<()> {
        let c = &self.shared.config;
        if events <= c.max_append_events && bytes <= c.max_append_bytes {
            return Ok(());
        }
        Err(Error::BatchTooLarge {
            events,
            bytes,
            max_events: c.max_append_events,
            max_bytes: c.max_append_bytes,
        })
    }

    /// Append a batch encoded beforehand (possibly on another thread), so
    /// a caller can encode in parallel yet append in its own order.
    pub fn append_encoded(&self, batch: EncodedBatch) -> Result<Receipt> {
        self.check_redaction(&batch)?;
        let n = batch.0.metas.len();
        self.send_batch(batch.0, n)
    }

    /// [`Log::append_encoded`] that never waits for room: when the queue
    /// is full (by entries or bytes) the batch comes back untouched
    /// (`Ok(Err(batch))`, nothing counted as rejected) whatever the
    /// log's [`FullPolicy`], so an async caller can wait for room without
    /// blocking its thread (`auditlog serve`). Any other refusal is an
    /// error, as with `append_encoded`.
    #[doc(hidden)]
    pub fn try_append_encoded(
        &self,
        batch: EncodedBatch,
    ) -> Result<std::result::Result<Receipt, EncodedBatch>> {
        self.check_redaction(&batch)?;
        let EncodedBatch(inner, policy) = batch;
        let n = inner.metas.len();
        Ok(self
            .queue_batch(inner, n, OnFull::GiveBack)?
            .map_err(|b| EncodedBatch(b, policy)))
    }

    fn check_redaction(&self, batch: &EncodedBatch) -> Result<()> {
        if let Some(p) = self.redaction() {
            let same = batch
                .1
                .as_ref()
                .is_some_and(|b| Arc::ptr_eq(b, p) || **b == **p);
            if !same {
                return Err(Error::InvalidArgument(
                    "this log has a redaction policy; encode batches with EncodedBatch::encode_redacted(events, log.redaction())".into(),
                ));
            }
        }
        Ok(())
    }

    fn send_batch(&self, batch: Batch, n: usize) -> Result<Receipt> {
        match self.queue_batch(batch, n, OnFull::Policy)? {
            Ok(receipt) => Ok(receipt),
            // Not reached: `OnFull::Policy` answers a full queue itself.
            Err(_) => self.on_full(n),
        }
    }

    /// Queue a batch for the writer. A full queue is answered by the
    /// log's policy, or (`OnFull::GiveBack`) by handing the batch back.
    fn queue_batch(
        &self,
        mut batch: Batch,
        n: usize,
        full: OnFull,
    ) -> Result<std::result::Result<Receipt, Batch>> {
        if self.shared.has_failed.load(Ordering::Acquire) {
            let why = self.failed().unwrap_or_default();
            return Err(Error::WriterFailed(why));
        }
        // The Merkle leaves are not hashed here while the tree keeps up:
        // the tree thread reads the events back from the segment and
        // hashes them off the ingest path, and may lag during a burst.
        // Past `PRODUCERS_HASH_PAST` events behind they are hashed here
        // again, on the producers' threads, in parallel, so that the lag
        // stops growing without the writer doing that work. A log that
        // signs checkpoints does the same since format 6: the tree thread
        // signs each checkpoint when it reaches the size asked for
        // (docs/proofs.md, "Who hashes what"). Either way
        // [`EncodedBatch::hash_leaves`] may have done it already.
        let cfg = &self.shared.config;
        if cfg.merkle_tree
            && matches!(batch.leaves, Leaves::None)
            && producers_hash_leaves(self.shared.tree_behind.load(Ordering::Relaxed))
        {
            batch.leaves = Leaves::of(&batch.frames, &batch.metas);
        }
        if crate::stages::on() && crate::stages::sampled() {
            batch.queued = Some(std::time::Instant::now());
        }
        let bytes = batch.frames.len();
        if let Err(e) = self.check_batch(n, bytes) {
            self.reject(n);
            return Err(e);
        }
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let slot = batch.slot.clone();
        let policy = self.shared.config.on_full;
        let wait = policy == FullPolicy::Block && full == OnFull::Policy;
        // Room by bytes first, then by entries; the writer gives the bytes
        // back as it takes the batch off the queue.
        if !self.reserve_queue_bytes(bytes, wait) {
            return match full {
                OnFull::GiveBack => Ok(Err(batch)),
                OnFull::Policy => self.on_full(n).map(Ok),
            };
        }
        let msg = Msg::Append(batch);
        let sent = if wait {
            tx.send(msg).map_err(|_| Error::Closed)
        } else {
            match tx.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Disconnected(_)) => Err(Error::Closed),
                Err(TrySendError::Full(msg)) => {
                    self.shared.release_queue_bytes(bytes);
                    return match (full, msg) {
                        (OnFull::GiveBack, Msg::Append(batch)) => Ok(Err(batch)),
                        _ => self.on_full(n).map(Ok),
                    };
                }
            }
        };
        if let Err(e) = sent {
            self.shared.release_queue_bytes(bytes);
            return Err(e);
        }
        self.shared
            .ingest
            .appended
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(Ok(Receipt { slot: Some(slot) }))
    }

    /// Take `bytes` of the queue's byte budget; with `block`, wait for
    /// room. A batch alone in the queue always fits, whatever its size.
    fn reserve_queue_bytes(&self, bytes: usize, block: bool) -> bool {
        let max = self.shared.config.queue_max_bytes;
        let queued = &self.shared.ingest.queued_bytes;
        loop {
            let now = queued.load(Ordering::Acquire);
            let fits = now == 0 || now.saturating_add(bytes) <= max;
            if fits {
                let next = now.saturating_add(bytes);
                if queued
                    .compare_exchange_weak(now, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if !block {
                return false;
            }
            // The writer wakes the notifier after every block it writes.
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(50);
            self.shared.notifier.wait_until(Some(deadline), || {
                let now = queued.load(Ordering::Acquire);
                now == 0 || now.saturating_add(bytes) <= max
            });
        }
    }

    /// The queue is full: drop and count, or fail, per the policy.
    fn on_full(&self, n: usize) -> Result<Receipt> {
        let c = &self.shared.config;
        if c.on_full == FullPolicy::DropAndCount {
            self.shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return Ok(Receipt::dropped());
        }
        self.reject(n);
        Err(Error::QueueFull {
            entries: self.tx.as_ref().map_or(0, |t| t.len()),
            bytes: self.shared.ingest.queued_bytes.load(Ordering::Relaxed),
            capacity: c.queue_capacity,
            max_bytes: c.queue_max_bytes,
        })
    }

    fn control(&self, make: impl FnOnce(Arc<Slot>) -> Msg) -> Result<LsnRange> {
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let slot = Slot::new();
        tx.send(make(slot.clone())).map_err(|_| Error::Closed)?;
        Receipt { slot: Some(slot) }.wait()
    }

    /// Make everything appended so far durable (fdatasync), whatever the
    /// policy. Returns the LSN one past the last durable event.
    pub fn flush(&self) -> Result<u64> {
        self.control(Msg::Flush)?;
        Ok(self.head().next_lsn)
    }

    /// Seal the active segment now (the next event starts a new one).
    pub fn seal(&self) -> Result<()> {
        self.control(Msg::Seal).map(|_| ())
    }

    /// Drop whole sealed segments whose newest event is older than `cutoff`
    /// (µs); see docs/operations.md.
    ///
    /// This drops whole segments, whatever they hold: a run still running
    /// whose start is in one loses it. `AuditStore::purge_older_than` and
    /// `store::carry::retain_keeping_running` carry such runs forward.
    pub fn retain(&self, cutoff: crate::event::Micros) -> Result<RetentionReport> {
        self.retain_inner(cutoff, crate::retention::RetainOptions::default(), None)
    }

    /// [`Log::retain`] with options: `exported_first` keeps the segments
    /// that not every recorded export destination holds yet
    /// ([`crate::exported`], docs/export.md).
    pub fn retain_with(
        &self,
        cutoff: crate::event::Micros,
        opts: crate::retention::RetainOptions,
    ) -> Result<RetentionReport> {
        self.retain_inner(cutoff, opts, None)
    }

    /// [`Log::retain_with`], first appending (and syncing) what `carry`
    /// returns for the segments about to be dropped. `carry` runs on the
    /// writer thread while appends wait: it must not wait for the writer.
    pub fn retain_carrying(
        &self,
        cutoff: crate::event::Micros,
        opts: crate::retention::RetainOptions,
        carry: crate::retention::CarryFn,
    ) -> Result<RetentionReport> {
        self.retain_inner(cutoff, opts, Some(carry))
    }

    fn retain_inner(
        &self,
        cutoff: crate::event::Micros,
        opts: crate::retention::RetainOptions,
        carry: Option<crate::retention::CarryFn>,
    ) -> Result<RetentionReport> {
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let (reply, rx) = crossbeam_channel::bounded(1);
        tx.send(Msg::Retain {
            cutoff,
            opts,
            reply,
            carry,
        })
        .map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// The newest committed position and digest.
    pub fn head(&self) -> Head {
        self.shared.head()
    }

    pub fn counters(&self) -> Counters {
        Counters {
            appended: self.shared.ingest.appended.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            durable_lsn: self.shared.durable_lsn.load(Ordering::Acquire),
            queue_depth: self.tx.as_ref().map_or(0, |t| t.len() as u64),
            queue_bytes: self.shared.ingest.queued_bytes.load(Ordering::Relaxed) as u64,
        }
    }

    /// The redaction policy applied to every append, if any.
    pub fn redaction(&self) -> Option<&Arc<RedactionPolicy>> {
        self.shared.config.redaction.as_ref()
    }

    /// Why the last checkpoint could not be signed (the writer carries on
    /// storing events; see docs/proofs.md), if it could not.
    pub fn checkpoint_error(&self) -> Option<String> {
        self.shared
            .checkpoint_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Events written but not yet combined into the Merkle tree: its
    /// thread runs at background priority behind the writer, and the
    /// writer makes it catch up before every checkpoint, retention cut and
    /// seal, and at close (docs/proofs.md, "Who hashes what").
    pub fn tree_behind(&self) -> u64 {
        self.shared.tree_behind.load(Ordering::Relaxed)
    }

    /// How the writer waited for the Merkle tree since open (at every
    /// checkpoint, seal, retention cut and close it takes the tree and
    /// applies what the tree thread has not): a diagnostic for
    /// benchmarks, not a stable interface.
    #[doc(hidden)]
    pub fn tree_waits(&self) -> TreeWaitStats {
        let w = &self.shared.tree_waits;
        let d = |a: &std::sync::atomic::AtomicU64| {
            std::time::Duration::from_nanos(a.load(Ordering::Relaxed))
        };
        TreeWaitStats {
            calls: w.calls.load(Ordering::Relaxed),
            lock_wait: d(&w.wait_ns),
            longest_lock_wait: d(&w.max_wait_ns),
            catch_up: d(&w.catch_up_ns),
        }
    }

    /// Why the writer stopped, if it did.
    pub fn failed(&self) -> Option<String> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A reader over what is committed, now and as it grows.
    pub fn reader(&self) -> LogReader {
        LogReader::live(self.shared.clone())
    }

    /// Flush, stop the writer, release the lock.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    /// Stop the writer and release the folder's lock, keeping this handle
    /// (appends fail with [`Error::Closed`]; its reader still reads what
    /// was committed): a store that reopens its log after a failure
    /// closes the failed one in place.
    pub(crate) fn shut_down(&mut self) -> Result<()> {
        let r = self.shutdown();
        drop(self.lock.take());
        r
    }

    fn shutdown(&mut self) -> Result<()> {
        drop(self.tx.take());
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
        match self.failed() {
            Some(why) => Err(Error::WriterFailed(why)),
            None => Ok(()),
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Rewrite every segment file of `dir` from sequence number `from` on with
/// its own bytes, then sync it: pages a failed fdatasync left clean but
/// unwritten become dirty again and reach the disk (or the sync fails,
/// and so does the open). Bytes the page cache lost are read back as
/// whatever the disk holds, which recovery then checks like any tail.
fn resync_segments(dir: &Path, from: u64, io: &crate::io::WriterIo) -> Result<()> {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    for (_, seq, name) in layout::list_segment_files(dir)? {
        if seq < from {
            continue;
        }
        let path = dir.join(&name);
        let ctx = |what: &str, e| Error::io(format!("{what} {} to resync it", path.display()), e);
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ctx("opening", e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| ctx("reading", e))?;
            if n == 0 {
                break;
            }
            f.write_all_at(&buf[..n], off)
                .map_err(|e| ctx("rewriting", e))?;
            off += n as u64;
        }
        io.sync_data(&f, &path).map_err(|e| ctx("syncing", e))?;
    }
    Ok(())
}

/// What queueing a batch does when the queue is full.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnFull {
    /// The log's [`FullPolicy`].
    Policy,
    /// Hand the batch back to the caller.
    GiveBack,
}

/// Events validated, encoded and framed, ready for the writer, which then
/// only copies bytes. Encoding is the costly part of an append: doing it on
/// the producers' threads keeps the single writer thread free.
pub struct EncodedBatch(Batch, Option<Arc<RedactionPolicy>>);

impl EncodedBatch {
    pub fn encode(events: &[Event]) -> Result<EncodedBatch> {
        encode_batch(events, None, Validate::Yes).map(|b| EncodedBatch(b, None))
    }

    /// For events straight from [`crate::event::json::parse_event`], which
    /// already enforced every rule: skips validating them a second time
    /// (the JSON re-check is the costliest part of an encode). Only for
    /// events exactly as the parser returned them (the command line's
    /// ingest); anything else goes through [`EncodedBatch::encode`].
    #[doc(hidden)]
    pub fn encode_parsed(
        events: &[Event],
        policy: Option<&Arc<RedactionPolicy>>,
    ) -> Result<EncodedBatch> {
        // Redaction rewrites events, so what it returns is checked again.
        let validate = if policy.is_some_and(|p| !p.is_empty()) {
            Validate::Yes
        } else {
            Validate::AlreadyParsed
        };
        encode_batch(events, policy.map(|p| &**p), validate)
            .map(|b| EncodedBatch(b, policy.cloned()))
    }

    /// Encode with a redaction policy applied to each event first (pass
    /// [`Log::redaction`]; a log with a policy refuses batches without it).
    pub fn encode_redacted(
        events: &[Event],
        policy: Option<&Arc<RedactionPolicy>>,
    ) -> Result<EncodedBatch> {
        encode_batch(events, policy.map(|p| &**p), Validate::Yes)
            .map(|b| EncodedBatch(b, policy.cloned()))
    }

    /// Hash the events' Merkle leaves now, on this thread, instead of on
    /// the tree thread (which otherwise reads the events back from the
    /// segment, at background priority) or in [`Log::append_encoded`]
    /// (which hashes them on the appending thread when the tree is far
    /// behind). A caller that encodes on
    /// several threads of its own, with cores to spare (the command
    /// line's ingest), takes that SHA-256 work off the tree thread this
    /// way; one that doesn't need not call it.
    /// Harmless for a log without the tree: the hashes go unused.
    pub fn hash_leaves(&mut self) {
        if matches!(self.0.leaves, Leaves::None) {
            self.0.leaves = Leaves::of(&self.0.frames, &self.0.metas);
        }
    }

    pub fn len(&self) -> usize {
        self.0.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.metas.len() == 0
    }

    /// Give the frame buffer to `to` once the writer has copied it into
    /// its block (or refused the batch), instead of freeing it on the
    /// writer thread: `auditlog serve` reads its next requests into the
    /// buffers it gets back.
    #[doc(hidden)]
    pub fn recycle_frames_to(&mut self, to: FrameRecycler) {
        self.0.recycle = Some(to);
    }

    /// Encoded bytes (frames included).
    pub fn bytes(&self) -> usize {
        self.0.frames.len()
    }

    /// The event frames, back to back (docs/format.md, "Frames"): what a
    /// client of `auditlog serve` sends instead of JSON.
    pub fn frames(&self) -> &[u8] {
        &self.0.frames
    }

    /// Event frames made in another process (a client of `auditlog
    /// serve`), checked as if they were appended here: each frame's length
    /// and CRC, its record type, its body decoded whole, every rule of
    /// [`validate_event`], and its JSON texts (`inputs`, `payload`, the
    /// unknown fields' values) checked again, as the strict decoder does:
    /// bincode reads them as plain strings.
    ///
    /// Each event is first read in place (its strings borrowed from the
    /// frame, [`codec::decode_event_ref`]) and checked there. Only an
    /// event `wants_edit` asks for (given its index and its unknown
    /// fields: key and JSON text), or one that fails the in-place check,
    /// is decoded into an [`Event`]: `edit` may change it, returning true,
    /// and a changed event is checked and encoded again. A failing event
    /// is checked again owned, so the error (naming its index and field)
    /// is the one the owned decode gives. `wants_edit` returning false
    /// promises that `edit` would leave the event as it is. With a
    /// redaction policy every event is decoded, redacted and encoded again.
    ///
    /// Takes the bytes by value: when at most the first event changes
    /// (the server's idempotency marker), they become the batch in place,
    /// without a copy of the rest. Any bad frame or event rejects the
    /// whole batch, naming its index.
    pub fn from_frames(
        mut frames: Vec<u8>,
        policy: Option<&Arc<RedactionPolicy>>,
        mut wants_edit: impl FnMut(usize, &[(&str, &str)]) -> bool,
        mut edit: impl FnMut(usize, &mut Event) -> std::result::Result<bool, crate::EventError>,
    ) -> Result<EncodedBatch> {
        let policy_on = policy.filter(|p| !p.is_empty());
        // Per frame: its ts, and its new bytes when it changed.
        // Sized by the frames' length fields (a guess if they do not tile
        // the buffer: the checks below say why), so it is not regrown.
        let mut metas: Vec<(Micros, u32)> = Vec::with_capacity(frame_count_hint(&frames));
        let mut changed: Vec<(usize, usize, Vec<u8>)> = Vec::new();
        let mut off = 0usize;
        while off < frames.len() {
            let index = metas.len();
            let f = frame::read_frame(&frames[off..])
                .map_err(|e| frame_error(index, "frame", e.to_string()))?;
            if f.rec_type != REC_EVENT {
                return Err(frame_error(
                    index,
                    "frame",
                    format!("record type 0x{:02x} is not an event (0x01)", f.rec_type),
                ));
            }
            if policy_on.is_none() {
                if let Some(ts) = checked_in_place(f.payload, index, &mut wants_edit) {
                    metas.push((ts, f.size as u32));
                    off += f.size;
                    continue;
                }
            }
            let (ts, new) = check_owned(f.payload, f.size, index, policy_on, &mut edit)?;
            let len = match new {
                Some(one) => {
                    let len = one.len();
                    changed.push((off, f.size, one));
                    len
                }
                None => f.size,
            };
            metas.push((ts, len as u32));
            off += f.size;
        }
        let frames = match changed.as_slice() {
            [] => frames,
            [(0, old, new)] => {
                frames.splice(0..*old, new.iter().copied());
                frames
            }
            _ => {
                let mut out = Vec::with_capacity(frames.len() + changed.len() * 64);
                let mut at = 0usize;
                for (o, old, new) in &changed {
                    out.extend_from_slice(&frames[at..*o]);
                    out.extend_from_slice(new);
                    at = o + old;
                }
                out.extend_from_slice(&frames[at..]);
                out
            }
        };
        Ok(EncodedBatch::of_frames(frames, metas, policy.cloned()))
    }

    /// A batch of `frames` (sealed), one `(ts, size)` per event in
    /// `metas`, to be written under `policy`.
    fn of_frames(
        frames: Vec<u8>,
        metas: Vec<(Micros, u32)>,
        policy: Option<Arc<RedactionPolicy>>,
    ) -> EncodedBatch {
        let metas = match metas.len() {
            1 => Metas::One(metas[0]),
            _ => Metas::Many(metas),
        };
        EncodedBatch(
            Batch {
                frames,
                metas,
                leaves: Leaves::None,
                slot: Slot::new(),
                recycle: None,
                queued: None,
            },
            policy,
        )
    }
}

/// How many frames `frames` holds by their length fields alone (stops at
/// the first that does not fit; capped by what the bytes could hold).
fn frame_count_hint(frames: &[u8]) -> usize {
    let (mut off, mut n) = (0usize, 0usize);
    while let Some(len) = off.checked_add(4).and_then(|end| frames.get(off..end)) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        off = off.saturating_add(FRAME_HEADER + len);
        n += 1;
    }
    n.min(frames.len() / (FRAME_HEADER + 1) + 1)
}

fn frame_error(index: usize, field: &str, reason: String) -> Error {
    Error::InvalidEvent {
        index,
        source: crate::EventError::new(field, reason),
    }
}

/// The fast path of [`EncodedBatch::from_frames`]: the event's ts if its
/// body, read in place, passes every check and needs no edit; `None`
/// sends it down the owned path (which names any fault).
fn checked_in_place(
    body: &[u8],
    index: usize,
    wants_edit: &mut impl FnMut(usize, &[(&str, &str)]) -> bool,
) -> Option<Micros> {
    let ev = codec::decode_event_ref(body).ok()?;
    check_incoming_ref(&ev).ok()?;
    (!wants_edit(index, &ev.extra)).then_some(ev.ts)
}

/// The owned path of [`EncodedBatch::from_frames`]: decode, check, edit,
/// redact; the event's ts and its new frame if it changed.
fn check_owned(
    body: &[u8],
    size: usize,
    index: usize,
    policy: Option<&Arc<RedactionPolicy>>,
    edit: &mut impl FnMut(usize, &mut Event) -> std::result::Result<bool, crate::EventError>,
) -> Result<(Micros, Option<Vec<u8>>)> {
    let rule = |source| Error::InvalidEvent { index, source };
    let mut ev =
        codec::decode_event(body).map_err(|e| frame_error(index, "body", e.to_string()))?;
    check_incoming(&ev).map_err(rule)?;
    let mut edited = edit(index, &mut ev).map_err(rule)?;
    if let Some(p) = policy {
        p.apply_in_place(&mut ev);
        edited = true;
    }
    if !edited {
        return Ok((ev.ts, None));
    }
    check_incoming(&ev).map_err(rule)?;
    let mut one = Vec::with_capacity(size + 256);
    one.extend_from_slice(&[0u8; FRAME_HEADER]);
    one.push(REC_EVENT);
    codec::encode_event(&ev, &mut one).map_err(|e| frame_error(index, "event", e.to_string()))?;
    let body = one.len() - FRAME_HEADER;
    if body > MAX_FRAME_BODY {
        return Err(Error::EventTooLarge {
            index,
            bytes: body - 1,
            max: codec::MAX_BODY_BYTES,
        });
    }
    frame::seal_frame_in_place(&mut one[..], 0);
    Ok((ev.ts, Some(one)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Validate {
    Yes,
    AlreadyParsed,
}

fn encode_batch(
    events: &[Event],
    redaction: Option<&RedactionPolicy>,
    validate: Validate,
) -> Result<Batch> {
    let mut frames = Vec::with_capacity(events.len() * 320);
    // One event (the common append) needs no list: see `Metas`.
    let single = events.len() == 1;
    let mut one = None;
    let mut metas = Vec::with_capacity(if single { 0 } else { events.len() });
    for (index, ev) in events.iter().enumerate() {
        // Redact before anything else sees the event: what is dropped or
        // hashed here never reaches a segment or a derived index.
        let redacted;
        let ev = match redaction {
            Some(p) if !p.is_empty() => {
                redacted = p.apply(ev);
                &redacted
            }
            _ => ev,
        };
        if validate == Validate::Yes {
            validate_event(ev).map_err(|source| Error::InvalidEvent { index, source })?;
        }
        let start = frames.len();
        encode_unsealed_frame(ev, &mut frames, index)?;
        frame::seal_frame_in_place(&mut frames[..], start);
        let meta = (ev.ts, (frames.len() - start) as u32);
        if single {
            one = Some(meta);
        } else {
            metas.push(meta);
        }
    }
    let metas = match one {
        Some(m) => Metas::One(m),
        None => Metas::Many(metas),
    };
    Ok(Batch {
        frames,
        metas,
        leaves: Leaves::None,
        slot: Slot::new(),
        recycle: None,
        queued: None,
    })
}

/// Write `ev` as an event frame at the end of `frames`, its length and CRC
/// left zero for [`frame::seal_frame_in_place`]. On error `frames` may
/// hold a partial frame: the caller truncates it or drops the buffer.
fn encode_unsealed_frame(ev: &Event, frames: &mut Vec<u8>, index: usize) -> Result<()> {
    unsealed_frame_with(frames, index, |out| codec::encode_event(ev, out))
}

/// [`encode_unsealed_frame`] with the event's body written by `body` (an
/// owned event's encoder, or a view's: [`ViewBatch::push`]).
fn unsealed_frame_with(
    frames: &mut Vec<u8>,
    index: usize,
    body: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), codec::CodecError>,
) -> Result<()> {
    let start = frames.len();
    frames.extend_from_slice(&[0u8; FRAME_HEADER]);
    frames.push(REC_EVENT);
    if let Err(reason) = body(frames) {
        return Err(Error::InvalidEvent {
            index,
            source: crate::error::EventError::new("event", reason.to_string()),
        });
    }
    let body = frames.len() - start - FRAME_HEADER;
    if body > MAX_FRAME_BODY {
        return Err(Error::EventTooLarge {
            index,
            bytes: body - 1,
            max: codec::MAX_BODY_BYTES,
        });
    }
    Ok(())
}

/// A batch encoded one event at a time, as events arrive (the Python
/// binding's stage encodes each single append on the appending thread,
/// so it need not keep an owned [`Event`] per append for another thread
/// to encode and free). [`BatchBuilder::finish`] seals the frames (their
/// lengths and CRCs), so that part runs where the batch is finished.
///
/// The bytes are those [`EncodedBatch::encode_parsed`] writes for the same
/// events without a redaction policy; the batch carries no policy, so a
/// log with one refuses it. Like `encode_parsed`, it does not check the
/// events: the caller has (with [`validate_event`], or by parsing them).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct BatchBuilder {
    frames: Vec<u8>,
    /// Each frame's ts and size, in order.
    metas: Vec<(Micros, u32)>,
}

impl BatchBuilder {
    /// An empty builder with room for `events` events of `bytes` in all.
    pub fn with_capacity(events: usize, bytes: usize) -> BatchBuilder {
        BatchBuilder {
            frames: Vec::with_capacity(bytes),
            metas: Vec::with_capacity(events),
        }
    }

    /// An empty builder writing into `frames` (emptied first), a buffer
    /// with room from an earlier batch ([`EncodedBatch::recycle_frames_to`]).
    pub fn reusing(mut frames: Vec<u8>, events: usize) -> BatchBuilder {
        frames.clear();
        BatchBuilder {
            frames,
            metas: Vec::with_capacity(events),
        }
    }

    /// Encode a checked event after those pushed before. On error (it
    /// does not encode, or it is over the size limit) nothing is added.
    pub fn push_checked(&mut self, ev: &Event) -> Result<()> {
        let start = self.frames.len();
        if let Err(e) = encode_unsealed_frame(ev, &mut self.frames, self.metas.len()) {
            self.frames.truncate(start);
            return Err(e);
        }
        let size = (self.frames.len() - start) as u32;
        self.metas.push((ev.ts, size));
        Ok(())
    }

    /// Add the events of `other` after these.
    pub fn append(&mut self, other: &mut BatchBuilder) {
        self.frames.append(&mut other.frames);
        self.metas.append(&mut other.metas);
    }

    /// Events pushed.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// Encoded bytes so far (frames included).
    pub fn bytes(&self) -> usize {
        self.frames.len()
    }

    /// Room for this many bytes of frames without growing.
    pub fn capacity(&self) -> usize {
        self.frames.capacity()
    }

    /// The batch, every frame sealed (length and CRC).
    pub fn finish(self) -> EncodedBatch {
        let BatchBuilder { mut frames, metas } = self;
        let mut start = 0usize;
        for &(_, size) in &metas {
            let end = start + size as usize;
            frame::seal_frame_in_place(&mut frames[start..end], 0);
            start = end;
        }
        EncodedBatch::of_frames(frames, metas, None)
    }
}

/// A batch encoded from events seen in place ([`EventRef`]: the command
/// line's ingest parses each line into a view with
/// [`crate::event::json::with_parsed_event`] and encodes it here, with no
/// owned [`Event`] built and dropped per line). Each frame is sealed as it
/// is written, while its bytes are in cache.
///
/// The bytes are those [`EncodedBatch::encode_parsed`] writes for the
/// same events without redaction. Like `encode_parsed` it does not check
/// the events: only for views the JSONL parser returned (it has enforced
/// every rule). Redaction rewrites events, so a log with a non-empty
/// policy takes owned events ([`EncodedBatch::encode_parsed`]).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct ViewBatch {
    frames: Vec<u8>,
    /// Each frame's ts and size, in order.
    metas: Vec<(Micros, u32)>,
}

impl ViewBatch {
    /// An empty batch with room for `events` events of `bytes` in all.
    pub fn with_capacity(events: usize, bytes: usize) -> ViewBatch {
        ViewBatch {
            frames: Vec::with_capacity(bytes),
            metas: Vec::with_capacity(events),
        }
    }

    /// Encode and seal `ev` after the events pushed before. On error (a
    /// system event, or over the size limit: the errors `encode_parsed`
    /// gives, with this event's index) nothing is added.
    pub fn push(&mut self, ev: &EventRef<'_>) -> Result<()> {
        let start = self.frames.len();
        let index = self.metas.len();
        let written = unsealed_frame_with(&mut self.frames, index, |out| {
            codec::encode_event_ref(ev, out)
        });
        if let Err(e) = written {
            self.frames.truncate(start);
            return Err(e);
        }
        frame::seal_frame_in_place(&mut self.frames[..], start);
        let size = (self.frames.len() - start) as u32;
        self.metas.push((ev.ts, size));
        Ok(())
    }

    /// Events pushed.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// The batch, to be appended to a log whose redaction policy is
    /// `policy` (pass [`Log::redaction`]). A non-empty policy is refused:
    /// these events were not redacted.
    pub fn finish(self, policy: Option<&Arc<RedactionPolicy>>) -> Result<EncodedBatch> {
        if policy.is_some_and(|p| !p.is_empty()) {
            return Err(Error::InvalidArgument(
                "a batch encoded from views is not redacted; encode owned events with EncodedBatch::encode_parsed under a redaction policy".into(),
            ));
        }
        let ViewBatch { frames, metas } = self;
        Ok(EncodedBatch::of_frames(frames, metas, policy.cloned()))
    }
}
