//! How a log is opened: durability, queue, segment and batch limits,
//! redaction, and the hooks derived data hangs on the writer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::io::WriterIo;
use crate::layout::SegmentMeta;
use crate::limits::*;
use crate::redact::RedactionPolicy;
use crate::retention::RetentionReport;

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
    /// Encoded bytes that may wait in the queue (the full-queue policy
    /// applies past either bound).
    pub queue_max_bytes: usize,
    /// Most events one `append_batch` may carry ([`Error::BatchTooLarge`]).
    pub max_append_events: usize,
    /// Most encoded bytes one `append_batch` may carry.
    pub max_append_bytes: usize,
    pub on_full: FullPolicy,
    /// A segment is rolled when it would grow past this.
    pub segment_max_bytes: u64,
    /// The writer closes a group-commit block at this many bytes.
    pub max_batch_bytes: usize,
    /// Create the folder and log if missing.
    pub create: bool,
    /// The file-operation seam (fault injection in tests).
    #[doc(hidden)]
    pub io: WriterIo,
    /// Called on the writer thread with every segment just sealed.
    pub seal_hooks: Vec<SealHook>,
    /// Called on the writer thread after retention dropped segments.
    pub retain_hooks: Vec<RetainHook>,
    /// Fields dropped or hashed before encoding (docs/reliability.md).
    /// `None`: the policy the log recorded last stays in force (if any);
    /// an empty policy turns redaction off (and records that).
    pub redaction: Option<Arc<RedactionPolicy>>,
    /// Reopening after a failed fdatasync: rewrite and sync every segment
    /// from this sequence number on before recovery reads them, so that
    /// what it finds is on disk, not only in the page cache (whose dirty
    /// pages a failed sync may have marked clean). `AuditStore` sets it.
    #[doc(hidden)]
    pub resync_from_seq: Option<u64>,
    /// Keep the Merkle tree as blocks are written (a `STEM.mtree` file per
    /// sealed segment, docs/proofs.md). Off, the files are built when a
    /// proof or a retention needs them. Default on.
    pub merkle_tree: bool,
    /// Sign checkpoints of the tree with this key (at every seal, at close,
    /// and at this interval while events arrive). Needs `merkle_tree`.
    pub checkpoints: Option<crate::tree::CheckpointConfig>,
    /// Write retention records as format 4 did: without the tile hashes
    /// of the cut (tests of logs an older build wrote). Default off.
    #[doc(hidden)]
    pub retention_as_format_4: bool,
    /// Sign every checkpoint in place, as format 5 did (each covers every
    /// event before it), instead of deferring it to the tree's threads
    /// (tests of logs an older build wrote). Default off.
    #[doc(hidden)]
    pub checkpoints_in_place: bool,
}

impl Config {
    pub fn new(dir: impl Into<PathBuf>) -> Config {
        Config {
            dir: dir.into(),
            durability: Durability::EveryBatch,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            max_append_events: DEFAULT_MAX_APPEND_EVENTS,
            max_append_bytes: DEFAULT_MAX_APPEND_BYTES,
            on_full: FullPolicy::Block,
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            create: true,
            io: WriterIo::default(),
            seal_hooks: Vec::new(),
            retain_hooks: Vec::new(),
            redaction: None,
            resync_from_seq: None,
            merkle_tree: true,
            checkpoints: None,
            retention_as_format_4: false,
            checkpoints_in_place: false,
        }
    }

    /// Every limit within its bounds (docs/operations.md, "Limits").
    pub(crate) fn check(&self) -> Result<()> {
        within("queue_capacity", self.queue_capacity, 1, MAX_QUEUE_CAPACITY)?;
        within(
            "queue_max_bytes",
            self.queue_max_bytes,
            MIN_QUEUE_MAX_BYTES,
            usize::MAX,
        )?;
        within(
            "max_append_events",
            self.max_append_events,
            1,
            MAX_APPEND_EVENTS,
        )?;
        within(
            "max_append_bytes",
            self.max_append_bytes,
            MAX_EVENT_BYTES,
            MAX_APPEND_BYTES,
        )?;
        within(
            "max_batch_bytes",
            self.max_batch_bytes,
            MIN_MAX_BATCH_BYTES,
            MAX_MAX_BATCH_BYTES,
        )?;
        if let Some(cp) = &self.checkpoints {
            if !self.merkle_tree {
                return Err(Error::InvalidArgument(
                    "signing checkpoints needs the Merkle tree (merkle_tree = true)".into(),
                ));
            }
            if cp.interval.is_zero() {
                return Err(Error::InvalidArgument(
                    "the checkpoint interval must be above zero".into(),
                ));
            }
            if let Some(state) = &cp.state {
                if crate::fsutil::is_inside(state, &self.dir) {
                    return Err(Error::InvalidArgument(format!(
                        "the signing state {} must live outside the log folder (with the key, out of reach of whoever can write the log)",
                        state.display()
                    )));
                }
            }
        }
        if !(MIN_SEGMENT_MAX_BYTES..=MAX_SEGMENT_MAX_BYTES).contains(&self.segment_max_bytes) {
            return Err(Error::InvalidArgument(format!(
                "segment_max_bytes {} must be within {MIN_SEGMENT_MAX_BYTES}..={MAX_SEGMENT_MAX_BYTES}",
                self.segment_max_bytes
            )));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("dir", &self.dir)
            .field("durability", &self.durability)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_max_bytes", &self.queue_max_bytes)
            .field("max_append_events", &self.max_append_events)
            .field("max_append_bytes", &self.max_append_bytes)
            .field("on_full", &self.on_full)
            .field("segment_max_bytes", &self.segment_max_bytes)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("merkle_tree", &self.merkle_tree)
            .field("checkpoints", &self.checkpoints)
            .finish_non_exhaustive()
    }
}

fn within(name: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if (lo..=hi).contains(&v) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{name} {v} must be within {lo}..={hi}"
    )))
}
