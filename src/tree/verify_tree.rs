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
    /// Where the first event after the newest checkpoint is.
    unsigned_at: Option<(String, u64)>,
    pub report: TreeReport,
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
        let mut seg = SegmentTree::empty(segments.first().unwrap_or(&placeholder()), base.clone());
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
            unsigned_at: None,
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

    /// A segment begins.
    pub(crate) fn segment_start(&mut self, meta: &SegmentMeta) {
        self.seg = SegmentTree::empty(meta, self.seg.end.clone());
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
        match ev.data.system() {
            Some(SystemRecord::Checkpoint(c)) => {
                let cp = checkpoint::open(&c.note, &self.key).map_err(|e| {
                    corrupt(
                        &meta.name,
                        at,
                        format!("the checkpoint at LSN {lsn} is not signed by the key: {e}"),
                    )
                })?;
                let root = self.seg.end.root();
                if cp.size != leaf || cp.root != root {
                    return Err(corrupt(&meta.name, at, format!(
                        "the checkpoint at LSN {lsn} signs a tree of {} leaves with root {}, but the events before it make {leaf} leaves with root {} (events before it were changed, removed or inserted)",
                        cp.size, cp.root, root
                    )));
                }
                if block_events == 1 {
                    self.seg.checkpoints.push((leaf, block_start));
                }
                self.report.checkpoints_verified += 1;
                self.report.newest_checkpoint = Some(leaf);
                self.unsigned_at = None;
                self.report.unsigned_events = 0;
                self.report.unsigned_from_lsn = None;
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
                if self.unsigned_at.is_none() {
                    self.unsigned_at = Some((meta.name.clone(), at));
                    self.report.unsigned_from_lsn = Some(lsn);
                }
                self.report.unsigned_events += 1;
            }
        }
        self.seg
            .push_leaf(block_start, block_lsn, leaf_hash(payload))
            .map_err(|e| corrupt(&meta.name, at, e.to_string()))
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
        let r = self.report;
        if r.unsigned_events == 0 || allow_unsigned_tail {
            return Ok(r);
        }
        let (segment, offset) = self.unsigned_at.unwrap_or_default();
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

fn placeholder() -> SegmentMeta {
    SegmentMeta {
        seq: 0,
        day: 0,
        name: String::new(),
        path: std::path::PathBuf::new(),
        first_lsn: 0,
        count: 0,
        min_ts: None,
        max_ts: None,
        data_len: 0,
        prev_digest: crate::chain::Digest::GENESIS,
        digest: crate::chain::Digest::GENESIS,
        sealed: false,
    }
}
