//! `verify --key`: the Merkle tree recomputed from every stored event (from
//! the frontier the newest retention record stored and signed), every
//! checkpoint's signature and root checked against it, every retention
//! note's signature, and what no signature covers yet reported (and, by
//! default, refused: a forged block appended at the end looks exactly like
//! that). The segments' tree files are compared with what was recomputed
//! and rewritten when they differ (they are derived).

use crate::error::{Error, Result};
use crate::event::system::{Retention, SystemRecord};
use crate::event::Event;
use crate::layout::SegmentMeta;
use crate::manifest::Manifest;

use super::logtree::tree_base;
use super::segtree::{self, SegmentTree};
use crate::tlog::checkpoint;
use crate::tlog::merkle::{leaf_hash, Frontier, TreeHash};
use crate::tlog::note::VerifierKey;

/// What the tree check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeReport {
    /// Leaves of the tree (every event ever stored, dropped ones included).
    pub tree_size: u64,
    pub root: TreeHash,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints_verified: u64,
    /// Tree size of the newest checkpoint, if any.
    pub newest_checkpoint: Option<u64>,
    /// Events after the newest checkpoint (other than itself): covered by
    /// no signature yet.
    pub unsigned_events: u64,
    /// First LSN of those, if any.
    pub unsigned_from_lsn: Option<u64>,
    /// Retention notes whose signature was checked.
    pub retentions_verified: u64,
    /// Tree files of sealed segments that were missing or differed from
    /// the recomputation (rewritten unless read-only).
    pub tree_files_rebuilt: u64,
}

/// The running check, fed every event in LSN order.
pub(crate) struct TreeCheck {
    key: VerifierKey,
    seg: SegmentTree,
    read_only: bool,
    base_record: Option<Retention>,
    /// The format version of the segment being read: before 6 a
    /// checkpoint's size must be its own leaf index.
    version: u16,
    /// The tree at the start of `window`: at the newest checkpoint's size
    /// (or the kept log's first leaf), unless the window overflowed.
    signed: Frontier,
    /// The leaves after `signed`, which a deferred checkpoint may still
    /// cover (format 6: its size lies between the previous one's and its
    /// own leaf index).
    window: std::collections::VecDeque<WindowLeaf>,
    /// Tree size of the newest checkpoint.
    last_size: Option<u64>,
    /// The kept log's first leaf (what retention dropped is before it).
    base_size: u64,
    /// Events dropped from the window's front when it overflowed
    /// (`MAX_WINDOW`) since the newest checkpoint, and the first of them.
    overflowed: u64,
    overflowed_at: Option<(String, u64, u64)>,
    /// The segments read, by first LSN (where a window leaf lies).
    segments: Vec<(u64, String)>,
    pub report: TreeReport,
}

/// Leaves a deferred checkpoint may lie behind its record in the log:
/// the writer asks for a checkpoint at its current size and appends the
/// record when the tree's threads signed it, at most the tree's lag
/// later (bounded by `CATCH_UP_PAST` and the producers' hashing past
/// `PRODUCERS_HASH_PAST`: ~3.1M leaves, overshot by up to ~20% when the
/// cores are saturated). 48 bytes a leaf: at most 200 MB.
const MAX_WINDOW: usize = 1 << 22;

/// A leaf after the newest checkpoint's size.
struct WindowLeaf {
    hash: TreeHash,
    lsn: u64,
    /// Its frame's offset in its segment.
    at: u64,
    /// Itself a checkpoint record (it vouches for itself: not counted
    /// as unsigned).
    checkpoint: bool,
}

fn corrupt(segment: &str, offset: u64, reason: String) -> Error {
    Error::Corrupt {
        segment: segment.to_string(),
        offset,
        reason,
    }
}

impl TreeCheck {
    pub(crate) fn new(
        key: VerifierKey,
        manifest: &Manifest,
        segments: &[SegmentMeta],
        read_only: bool,
    ) -> Result<TreeCheck> {
        let base = tree_base(manifest, segments)?;
        let base_record = match manifest.retention {
            None => None,
            Some(at) => super::logtree::retention_record(segments, at)?,
        };
        let mut seg = SegmentTree::empty(
            segments.first().unwrap_or(&SegmentMeta::placeholder()),
            base.clone(),
        );
        seg.first_leaf = base.size();
        let report = TreeReport {
            tree_size: base.size(),
            ..TreeReport::default()
        };
        let mut c = TreeCheck {
            key,
            seg,
            read_only,
            base_record,
            version: crate::segment::FORMAT_VERSION,
            signed: base.clone(),
            window: std::collections::VecDeque::new(),
            last_size: None,
            base_size: base.size(),
            overflowed: 0,
            overflowed_at: None,
            segments: Vec::new(),
            report,
        };
        c.check_base(&base)?;
        Ok(c)
    }

    /// The retention record the kept log starts from must carry a note
    /// signed by the key for exactly the frontier it stores, the first
    /// kept LSN and the anchor: a deleted oldest segment dressed up as a
    /// retention has none.
    fn check_base(&mut self, base: &Frontier) -> Result<()> {
        let Some(r) = &self.base_record else {
            return Ok(());
        };
        let why = match retention_note(r, &self.key) {
            Ok(()) if r.tree_size == base.size() => return Ok(()),
            Ok(()) => NoteCheckError::NotFirstLeaf,
            Err(e) => e,
        };
        Err(corrupt(
            "MANIFEST",
            0,
            format!(
                "the retention record the log starts from (first kept LSN {}) is not vouched for by the key: {why}",
                r.anchor_first_lsn
            ),
        ))
    }

    /// A segment begins; `version`: its header's format version.
    pub(crate) fn segment_start(&mut self, meta: &SegmentMeta, version: u16) {
        self.seg = SegmentTree::empty(meta, self.seg.end.clone());
        self.version = version;
        self.segments.push((meta.first_lsn, meta.name.clone()));
    }

    /// One event, in LSN order: `at` is its frame's offset, `block_start`
    /// and `block_lsn` its block's.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn event(
        &mut self,
        meta: &SegmentMeta,
        block_start: u64,
        block_lsn: u64,
        block_events: u32,
        at: u64,
        lsn: u64,
        payload: &[u8],
        ev: &Event,
    ) -> Result<()> {
        let leaf = self.seg.end.size();
        let hash = leaf_hash(payload);
        let is_checkpoint = match ev.data.system() {
            Some(SystemRecord::Checkpoint(c)) => {
                let cp = checkpoint::open(&c.note, &self.key).map_err(|e| {
                    corrupt(
                        &meta.name,
                        at,
                        format!("the checkpoint at LSN {lsn} is not signed by the key: {e}"),
                    )
                })?;
                self.checkpoint(meta, at, lsn, leaf, cp.size, cp.root)?;
                if block_events == 1 {
                    self.seg.checkpoints.push((leaf, block_start));
                }
                true
            }
            other => {
                if let Some(SystemRecord::Retention(r)) = other {
                    if !r.tree_note.is_empty() {
                        retention_note(r, &self.key).map_err(|why| {
                            corrupt(
                                &meta.name,
                                at,
                                format!("the retention record at LSN {lsn}: {why}"),
                            )
                        })?;
                        self.report.retentions_verified += 1;
                    }
                }
                false
            }
        };
        self.keep_in_window(WindowLeaf {
            hash,
            lsn,
            at,
            checkpoint: is_checkpoint,
        });
        self.seg
            .push_leaf(block_start, block_lsn, hash)
            .map_err(|e| corrupt(&meta.name, at, e.to_string()))
    }

    /// A checkpoint record at leaf `leaf` signing `size` leaves with
    /// `root`: its size must grow from the previous checkpoint's and be at
    /// most its own leaf index (exactly that in a segment before format
    /// 6), and `root` must be the root of the first `size` leaves. A size
    /// before the kept log's first leaf (a deferred checkpoint whose
    /// events a retention cut dropped) is checked by its signature only.
    fn checkpoint(
        &mut self,
        meta: &SegmentMeta,
        at: u64,
        lsn: u64,
        leaf: u64,
        size: u64,
        root: TreeHash,
    ) -> Result<()> {
        let bad =
            |why: String| corrupt(&meta.name, at, format!("the checkpoint at LSN {lsn} {why}"));
        if size > leaf || (self.version < 6 && size != leaf) {
            let root_here = self.seg.end.root();
            return Err(bad(format!(
                "signs a tree of {size} leaves with root {root}, but the events before it make {leaf} leaves with root {root_here} (events before it were changed, removed or inserted)"
            )));
        }
        if let Some(prev) = self.last_size.filter(|&p| size <= p) {
            return Err(bad(format!(
                "signs a tree of {size} leaves, not more than the {prev} of the checkpoint before it (a checkpoint's size only grows)"
            )));
        }
        let start = self.signed.size();
        if size < self.base_size {
            // Before the kept log: only its signature can be checked.
            self.last_size = Some(size);
            self.report.checkpoints_verified += 1;
            return Ok(());
        }
        if size < start {
            return Err(bad(format!(
                "signs a tree of {size} leaves, more than {MAX_WINDOW} leaves before its own leaf {leaf}: too far back to check"
            )));
        }
        let (frontier, root_here) = if size == leaf {
            (self.seg.end.clone(), self.seg.end.root())
        } else {
            let mut f = self.signed.clone();
            for w in self.window.iter().take((size - start) as usize) {
                f.push(w.hash)
                    .map_err(|e| corrupt(&meta.name, at, e.to_string()))?;
            }
            let r = f.root();
            (f, r)
        };
        if root_here != root {
            return Err(bad(format!(
                "signs a tree of {size} leaves with root {root}, but the events before it make root {root_here} for {size} leaves (events before it were changed, removed or inserted)"
            )));
        }
        self.window.drain(..(size - start) as usize);
        self.signed = frontier;
        self.last_size = Some(size);
        self.overflowed = 0;
        self.overflowed_at = None;
        self.report.checkpoints_verified += 1;
        self.report.newest_checkpoint = Some(size);
        Ok(())
    }

    /// Keep a leaf for the checkpoints still to come; past `MAX_WINDOW`
    /// the oldest is folded into `signed` (a checkpoint that far back can
    /// no longer be checked: refused).
    fn keep_in_window(&mut self, leaf: WindowLeaf) {
        self.window.push_back(leaf);
        if self.window.len() <= MAX_WINDOW {
            return;
        }
        if let Some(old) = self.window.pop_front() {
            let _ = self.signed.push(old.hash);
            if !old.checkpoint {
                if self.overflowed_at.is_none() {
                    let seg = self.segment_of(old.lsn);
                    self.overflowed_at = Some((seg, old.at, old.lsn));
                }
                self.overflowed += 1;
            }
        }
    }

    /// The name of the segment holding `lsn` (one read by this check).
    fn segment_of(&self, lsn: u64) -> String {
        let i = self.segments.partition_point(|(first, _)| *first <= lsn);
        self.segments
            .get(i.saturating_sub(1))
            .map(|(_, n)| n.clone())
            .unwrap_or_default()
    }

    /// A segment ended: compare its stored tree file with the recomputed
    /// share (sealed segments only) and rewrite it if it differs.
    pub(crate) fn segment_end(&mut self, meta: &SegmentMeta) {
        self.seg.data_len = meta.data_len;
        self.seg.digest = meta.digest;
        if !meta.sealed {
            return;
        }
        let path = segtree::path_of(meta);
        let stored = std::fs::read(&path)
            .ok()
            .and_then(|b| SegmentTree::decode(&b, meta).ok());
        if stored.as_ref() != Some(&self.seg) {
            self.report.tree_files_rebuilt += 1;
            if !self.read_only {
                let _ = self.seg.store(&path);
            }
        }
    }

    /// After the last event: the totals, and the unsigned tail refused
    /// unless `allow_unsigned_tail`.
    pub(crate) fn finish(mut self, allow_unsigned_tail: bool) -> Result<TreeReport> {
        self.report.tree_size = self.seg.end.size();
        self.report.root = self.seg.end.root();
        let mut first = self.overflowed_at.take();
        let mut unsigned = self.overflowed;
        for w in self.window.iter().filter(|w| !w.checkpoint) {
            if first.is_none() {
                first = Some((self.segment_of(w.lsn), w.at, w.lsn));
            }
            unsigned += 1;
        }
        self.report.unsigned_events = unsigned;
        self.report.unsigned_from_lsn = first.as_ref().map(|f| f.2);
        let r = self.report;
        if r.unsigned_events == 0 || allow_unsigned_tail {
            return Ok(r);
        }
        let (segment, offset, _) = first.unwrap_or_default();
        let what = match r.newest_checkpoint {
            Some(size) => format!("after the newest checkpoint (of {size} leaves)"),
            None => "and the log holds no checkpoint".to_string(),
        };
        Err(corrupt(&segment, offset, format!(
            "{} events from LSN {} on are covered by no signature {what}: a block appended without the key looks like this (a running writer signs its newest events within its checkpoint interval: pass --allow-unsigned-tail while it runs)",
            r.unsigned_events,
            r.unsigned_from_lsn.unwrap_or_default()
        )))
    }
}

/// A retention record's note: signed by the key, for its stored frontier
/// (checked by the strict decoder), naming its first kept LSN and anchor.
fn retention_note(r: &Retention, key: &VerifierKey) -> std::result::Result<(), NoteCheckError> {
    if r.tree_note.is_empty() {
        return Err(NoteCheckError::NoNote);
    }
    let c = checkpoint::open(&r.tree_note, key)?;
    let want = format!(
        "auditlog-retention {} {}",
        r.anchor_first_lsn, r.anchor_digest
    );
    let frontier_root = r.frontier()?.root();
    if c.size != r.tree_size || c.root != frontier_root || c.extensions != [want] {
        return Err(NoteCheckError::OtherCut);
    }
    Ok(())
}

/// Why a retention record's signed note does not vouch for its cut.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum NoteCheckError {
    #[error("it carries no signed note")]
    NoNote,
    /// The note's signature or text does not check under the key.
    #[error(transparent)]
    Note(#[from] crate::tlog::note::NoteError),
    /// The record's stored frontier is malformed.
    #[error(transparent)]
    Frontier(#[from] crate::error::EventError),
    #[error("its signed note names another cut")]
    OtherCut,
    /// The note checks, but the log does not start where it says.
    #[error("its tree size is not the kept log's first leaf")]
    NotFirstLeaf,
}
