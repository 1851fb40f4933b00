//! State shared by a log's handle, its writer thread and in-process
//! readers: the segment list, the committed head, the counters and the
//! writer's failure.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::chain::Digest;
use crate::config::Config;
use crate::layout::{Head, SegmentMeta};
use crate::receipt::Notifier;

/// A value alone on its cache line(s) (128 bytes: adjacent-line prefetch).
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The producers' side of the ingest queue.
pub(crate) struct Ingest {
    /// Events appended (queued) so far.
    pub(crate) appended: AtomicU64,
    /// Encoded bytes of the batches in the ingest queue: producers add,
    /// the writer gives them back once per group commit
    /// (`Config::queue_max_bytes` bounds it).
    pub(crate) queued_bytes: AtomicUsize,
}

/// State shared by the handle, the writer thread and in-process readers.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    segments: RwLock<Vec<SegmentMeta>>,
    /// Bumped whenever `segments` is taken for writing: a reader that saw
    /// the same value before has seen the list as it still is (an
    /// engine's refresh skips its work then, see `Engine::refresh`).
    segments_gen: AtomicU64,
    head: RwLock<Head>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) durable_lsn: AtomicU64,
    pub(crate) queue_depth: AtomicU64,
    /// What producers change on every append: kept together, and off the
    /// cache line of the fields the writer stores after every batch.
    pub(crate) ingest: Padded<Ingest>,
    pub(crate) dropped: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) failed: Mutex<Option<String>>,
    /// Set with `failed`: lets every append check it without a lock.
    pub(crate) has_failed: AtomicBool,
    /// Why the last checkpoint could not be signed, if it could not.
    pub(crate) checkpoint_error: Mutex<Option<String>>,
    /// Leaves written but not yet combined into the Merkle tree by its
    /// thread (`crate::tree::worker`).
    pub(crate) tree_behind: Arc<AtomicU64>,
    /// The writer's waits for the Merkle tree (`Log::tree_waits`).
    pub(crate) tree_waits: Arc<crate::tree::worker::TreeWaits>,
    /// Every event from this LSN on was appended through this `Log`
    /// after the check of every rule of the contract (docs/integrity.md,
    /// "Builds of what this process appended"): the head at the open,
    /// moved past any frames a retention carried forward (those come from
    /// the caller's `CarryFn` and are not checked on the way in).
    appends_checked_from: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: Config, segments: Vec<SegmentMeta>, head: Head) -> Shared {
        Shared {
            dir: config.dir.clone(),
            segments: RwLock::new(segments),
            segments_gen: AtomicU64::new(0),
            head: RwLock::new(head),
            notifier: Arc::new(Notifier::default()),
            durable_lsn: AtomicU64::new(head.next_lsn),
            queue_depth: AtomicU64::new(0),
            ingest: Padded(Ingest {
                appended: AtomicU64::new(0),
                queued_bytes: AtomicUsize::new(0),
            }),
            dropped: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            checkpoint_error: Mutex::new(None),
            tree_behind: Arc::new(AtomicU64::new(0)),
            tree_waits: Arc::default(),
            appends_checked_from: AtomicU64::new(head.next_lsn),
            config,
        }
    }

    /// From which LSN on every event was checked on append (the field's
    /// docs).
    pub(crate) fn appends_checked_from(&self) -> u64 {
        self.appends_checked_from.load(Ordering::Acquire)
    }

    /// Frames not checked on the way in are about to get LSNs below `lsn`:
    /// index builds stop trusting everything before it.
    pub(crate) fn appends_unchecked_until(&self, lsn: u64) {
        self.appends_checked_from.fetch_max(lsn, Ordering::AcqRel);
    }

    /// The writer took a batch of `bytes` off the queue.
    pub(crate) fn release_queue_bytes(&self, bytes: usize) {
        self.ingest.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn segments_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<SegmentMeta>> {
        let guard = self.segments.write().unwrap_or_else(|p| p.into_inner());
        // Under the lock, before the change: whoever reads the old value
        // read it before the change began (and its list from before it).
        self.segments_gen.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// See `segments_gen`: read it before [`Shared::segments`].
    pub(crate) fn segments_gen(&self) -> u64 {
        self.segments_gen.load(Ordering::SeqCst)
    }

    /// Whether the list still holds segment `seq` (retention drops the
    /// oldest), without copying the list.
    pub(crate) fn holds_segment(&self, seq: u64) -> bool {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|s| s.seq == seq)
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
