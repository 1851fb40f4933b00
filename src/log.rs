//! The public handle: open a log for writing, append events through the
//! lock-free ingest queue, wait for durability, read it back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};

use crate::chain::Digest;
use crate::codec;
use crate::error::{Error, Result};
use crate::event::json::validate_event;
use crate::event::Event;
use crate::frame::{self, FRAME_HEADER, MAX_FRAME_BODY, REC_EVENT};
use crate::io::WriterIo;
use crate::layout::{self, Mode, RecoveryReport, SegmentMeta};
use crate::lock::WriterLock;
use crate::reader::LogReader;
use crate::receipt::{LsnRange, Notifier, Receipt, Slot};
use crate::redact::RedactionPolicy;
use crate::retention::RetentionReport;
use crate::writer::{Batch, Metas, Msg, Writer};

/// When the writer makes appended events durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Group commit: fdatasync after every batch, before its receipts
    /// complete.
    EveryBatch,
    /// fdatasync at most this often; receipts complete at that sync.
    Interval(Duration),
    /// Never sync on the hot path (the OS writes back when it likes);
    /// receipts complete once written. Sealing still syncs.
    Never,
}

/// What `append` does when the ingest queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Wait for room.
    Block,
    /// Return [`Error::QueueFull`] at once.
    FailFast,
    /// Drop the events, count them, and return a dropped receipt.
    DropAndCount,
}

/// Called with each segment just sealed (indexes build on it).
pub type SealHook = Arc<dyn Fn(&SegmentMeta) + Send + Sync>;
/// Called after retention dropped segments (derived data follows it).
pub type RetainHook = Arc<dyn Fn(&RetentionReport) + Send + Sync>;

/// How a log is opened.
#[derive(Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub durability: Durability,
    /// Appends (each a batch) that may wait in the queue.
    pub queue_capacity: usize,
    pub on_full: FullPolicy,
    /// A segment is rolled when it would grow past this.
    pub segment_max_bytes: u64,
    /// The writer closes a group-commit block at this many bytes.
    pub max_batch_bytes: usize,
    /// Create the folder and log if missing.
    pub create: bool,
    /// The file-operation seam (fault injection in tests).
    pub io: WriterIo,
    pub seal_hooks: Vec<SealHook>,
    pub retain_hooks: Vec<RetainHook>,
    /// Fields dropped or hashed before encoding (docs/reliability.md).
    pub redaction: Option<Arc<RedactionPolicy>>,
}

pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 256 * 1024 * 1024;
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;
pub const DEFAULT_QUEUE_CAPACITY: usize = 16 * 1024;
/// Smallest segment cap accepted: it must hold the largest event.
pub const MIN_SEGMENT_MAX_BYTES: u64 = 64 * 1024;

impl Config {
    pub fn new(dir: impl Into<PathBuf>) -> Config {
        Config {
            dir: dir.into(),
            durability: Durability::EveryBatch,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            on_full: FullPolicy::Block,
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            create: true,
            io: WriterIo::default(),
            seal_hooks: Vec::new(),
            retain_hooks: Vec::new(),
            redaction: None,
        }
    }

    fn check(&self) -> Result<()> {
        if self.queue_capacity == 0 || self.queue_capacity > 1 << 24 {
            return Err(Error::InvalidArgument(format!(
                "queue_capacity {} must be within 1..=16777216",
                self.queue_capacity
            )));
        }
        if self.segment_max_bytes < MIN_SEGMENT_MAX_BYTES {
            return Err(Error::InvalidArgument(format!(
                "segment_max_bytes {} is below the minimum {MIN_SEGMENT_MAX_BYTES}",
                self.segment_max_bytes
            )));
        }
        if self.max_batch_bytes < 4096 || self.max_batch_bytes > 64 << 20 {
            return Err(Error::InvalidArgument(format!(
                "max_batch_bytes {} must be within 4 KiB..=64 MiB",
                self.max_batch_bytes
            )));
        }
        Ok(())
    }

    /// Largest final block the writer can produce: a damaged tail this
    /// small may be a torn write even if a commit record survived in it.
    fn torn_tail_limit(&self) -> u64 {
        (self.max_batch_bytes + MAX_FRAME_BODY + 4096) as u64
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("dir", &self.dir)
            .field("durability", &self.durability)
            .field("queue_capacity", &self.queue_capacity)
            .field("on_full", &self.on_full)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .finish_non_exhaustive()
    }
}

/// Operator counters, cheap to read at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub appended: u64,
    pub dropped: u64,
    pub rejected: u64,
    /// LSN one past the last event durable per policy.
    pub durable_lsn: u64,
    pub queue_depth: u64,
}

/// The newest committed position and its chain digest: anchor it outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// LSN one past the last committed event (the event count ever).
    pub next_lsn: u64,
    pub digest: Digest,
}

/// A value alone on its cache line(s) (128 bytes: adjacent-line prefetch).
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// State shared by the handle, the writer thread and in-process readers.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    segments: RwLock<Vec<SegmentMeta>>,
    head: RwLock<Head>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) durable_lsn: AtomicU64,
    pub(crate) queue_depth: AtomicU64,
    /// Producers bump it on every append: kept off the cache line of the
    /// fields the writer stores after every batch.
    appended: Padded<AtomicU64>,
    dropped: AtomicU64,
    rejected: AtomicU64,
    pub(crate) failed: Mutex<Option<String>>,
    /// Set with `failed`: lets every append check it without a lock.
    pub(crate) has_failed: AtomicBool,
}

impl Shared {
    pub(crate) fn segments_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<SegmentMeta>> {
        self.segments.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn segments(&self) -> Vec<SegmentMeta> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publish the active segment's new committed state.
    pub(crate) fn publish_active(&self, meta: SegmentMeta, next_lsn: u64, digest: Digest) {
        self.replace_segment(meta);
        *self.head.write().unwrap_or_else(|p| p.into_inner()) = Head { next_lsn, digest };
        self.notifier.notify_all();
    }

    pub(crate) fn replace_segment(&self, meta: SegmentMeta) {
        let mut segs = self.segments_mut();
        match segs.iter_mut().rev().find(|s| s.seq == meta.seq) {
            Some(slot) => *slot = meta,
            None => segs.push(meta),
        }
    }

    pub(crate) fn head(&self) -> Head {
        *self.head.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn run_seal_hooks(&self, meta: &SegmentMeta) {
        for hook in &self.config.seal_hooks {
            hook(meta);
        }
    }
}

/// A log open for writing. One per folder (an fs2 lock enforces it).
pub struct Log {
    shared: Arc<Shared>,
    tx: Option<Sender<Msg>>,
    writer: Option<JoinHandle<()>>,
    recovery: RecoveryReport,
    _lock: WriterLock,
}

impl Log {
    /// Open (or create) the log in `config.dir` for writing.
    pub fn open(config: Config) -> Result<Log> {
        config.check()?;
        let dir = config.dir.clone();
        let (manifest, fresh) = layout::load_or_create_manifest(&dir, config.create)?;
        let lock = WriterLock::acquire(&dir)?;
        if fresh {
            manifest.store(&dir)?;
        }
        let mode = Mode::Write {
            torn_tail_limit: config.torn_tail_limit(),
        };
        let lay = layout::discover(&dir, manifest, mode)?;
        if lay.manifest_changed {
            lay.manifest.store(&dir)?;
        }
        let head = match lay.segments.last() {
            Some(s) => Head {
                next_lsn: s.end_lsn(),
                digest: s.digest,
            },
            None => Head {
                next_lsn: lay.manifest.anchor.first_lsn,
                digest: lay.manifest.anchor_digest(),
            },
        };
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            segments: RwLock::new(lay.segments.clone()),
            head: RwLock::new(head),
            notifier: Arc::new(Notifier::default()),
            durable_lsn: AtomicU64::new(head.next_lsn),
            queue_depth: AtomicU64::new(0),
            appended: Padded(AtomicU64::new(0)),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            config,
        });
        let writer = Writer::new(shared.clone(), lay.manifest, &lay.segments)?;
        let (tx, rx) = crossbeam_channel::bounded(shared.config.queue_capacity);
        let handle = std::thread::Builder::new()
            .name("auditlog-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io("starting the writer thread", e))?;
        Ok(Log {
            shared,
            tx: Some(tx),
            writer: Some(handle),
            recovery: lay.recovery,
            _lock: lock,
        })
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
        match EncodedBatch::encode_redacted(events, self.redaction()) {
            Ok(b) => self.append_encoded(b),
            Err(e) => {
                self.shared
                    .rejected
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Append a batch encoded beforehand (possibly on another thread), so
    /// a caller can encode in parallel yet append in its own order.
    pub fn append_encoded(&self, batch: EncodedBatch) -> Result<Receipt> {
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
        let n = batch.0.metas.len();
        self.send_batch(batch.0, n)
    }

    fn send_batch(&self, batch: Batch, n: usize) -> Result<Receipt> {
        if self.shared.has_failed.load(Ordering::Acquire) {
            let why = self.failed().unwrap_or_default();
            return Err(Error::WriterFailed(why));
        }
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let slot = batch.slot.clone();
        let msg = Msg::Append(batch);
        let sent = match self.shared.config.on_full {
            FullPolicy::Block => tx.send(msg).map_err(|_| Error::Closed),
            FullPolicy::FailFast | FullPolicy::DropAndCount => match tx.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Disconnected(_)) => Err(Error::Closed),
                Err(TrySendError::Full(_)) => {
                    if self.shared.config.on_full == FullPolicy::DropAndCount {
                        self.shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
                        return Ok(Receipt::dropped());
                    }
                    self.shared.rejected.fetch_add(n as u64, Ordering::Relaxed);
                    return Err(Error::QueueFull {
                        capacity: self.shared.config.queue_capacity,
                    });
                }
            },
        };
        sent?;
        self.shared.appended.fetch_add(n as u64, Ordering::Relaxed);
        Ok(Receipt { slot: Some(slot) })
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
    pub fn retain(&self, cutoff: crate::event::Micros) -> Result<RetentionReport> {
        let tx = self.tx.as_ref().ok_or(Error::Closed)?;
        let (reply, rx) = crossbeam_channel::bounded(1);
        tx.send(Msg::Retain { cutoff, reply })
            .map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// The newest committed position and digest.
    pub fn head(&self) -> Head {
        self.shared.head()
    }

    pub fn counters(&self) -> Counters {
        Counters {
            appended: self.shared.appended.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            durable_lsn: self.shared.durable_lsn.load(Ordering::Acquire),
            queue_depth: self.tx.as_ref().map_or(0, |t| t.len() as u64),
        }
    }

    /// The redaction policy applied to every append, if any.
    pub fn redaction(&self) -> Option<&Arc<RedactionPolicy>> {
        self.shared.config.redaction.as_ref()
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

    pub fn len(&self) -> usize {
        self.0.metas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.metas.len() == 0
    }

    /// Encoded bytes (frames included).
    pub fn bytes(&self) -> usize {
        self.0.frames.len()
    }
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
        frames.extend_from_slice(&[0u8; FRAME_HEADER]);
        frames.push(REC_EVENT);
        if let Err(reason) = codec::encode_event(ev, &mut frames) {
            return Err(Error::InvalidEvent {
                index,
                source: crate::error::EventError::new("event", reason),
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
        slot: Slot::new(),
    })
}
