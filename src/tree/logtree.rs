//! The Merkle tree of a log folder as stored: the frontier retention kept
//! (the tree before the first kept event), then each segment's share
//! ([`SegmentTree`]), read from its `STEM.mtree` file or rebuilt from the
//! segment when the file is missing or does not fit. Answers the one
//! question proofs ask ([`Subtrees`]) and finds events and checkpoints by
//! leaf index.

use std::collections::HashMap;
use std::sync::Arc;

use crate::blocks::Walk;
use crate::codec;
use crate::error::{Error, Result};
use crate::event::system::{SystemRecord, TreeCheckpoint};
use crate::layout::{map_file, SegmentMeta};

use super::segtree::{self, SegmentTree, MIN_HEIGHT};
use crate::tlog::merkle::{leaf_hash, node_hash, Frontier, Subtrees, TreeHash};
use crate::tlog::CutTiles;

/// A checkpoint event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The checkpoint event's own LSN and leaf index. It covers the first
    /// `record.tree_size` leaves: every leaf before it (signed in place,
    /// always so before format 6), or a prefix of them (deferred signing).
    pub lsn: u64,
    pub leaf: u64,
    pub record: TreeCheckpoint,
}

impl StoredCheckpoint {
    /// The leaves no later checkpoint needs to cover: the record's own
    /// leaf too when it was signed in place (a record vouches for itself
    /// by its signature), else only its tree size.
    pub fn covered(&self) -> u64 {
        match self.record.tree_size == self.leaf {
            true => self.leaf + 1,
            false => self.record.tree_size,
        }
    }
}

/// The tree over a log's kept segments.
pub struct LogTree {
    segments: Vec<SegmentMeta>,
    base: Frontier,
    /// The tile hashes the newest retention kept left of its cut (checked
    /// against `base`), if it kept any.
    cut: Option<CutTiles>,
    first_leaf: Vec<u64>,
    trees: HashMap<usize, Arc<SegmentTree>>,
    /// Store the tree files of sealed segments that had to be rebuilt.
    persist: bool,
    /// Use the stored tree files (else rebuild every share from events).
    read_files: bool,
}

fn corrupt(segment: &str, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        segment: segment.to_string(),
        offset,
        reason: reason.into(),
    }
}

impl LogTree {
    /// `segments`: the kept segments in order (each with its committed
    /// length); `base`: the tree before the first kept event.
    pub fn new(segments: Vec<SegmentMeta>, base: Frontier, persist: bool) -> LogTree {
        let mut first_leaf = Vec::with_capacity(segments.len());
        let mut at = base.size();
        for s in &segments {
            first_leaf.push(at);
            at += s.count;
        }
        LogTree {
            segments,
            base,
            cut: None,
            first_leaf,
            trees: HashMap::new(),
            persist,
            read_files: true,
        }
    }

    /// The same tree, rebuilt from the events alone: no tree file is read.
    pub fn from_events(segments: Vec<SegmentMeta>, base: Frontier) -> LogTree {
        let mut t = LogTree::new(segments, base, false);
        t.read_files = false;
        t
    }

    /// Also answer for the tile hashes a retention kept left of the cut
    /// (ignored unless they are of the cut `base` is the frontier of).
    pub fn with_cut_tiles(mut self, cut: Option<CutTiles>) -> LogTree {
        self.cut = cut.filter(|c| c.size() == self.base.size());
        self
    }

    /// Leaves in the tree (every event ever stored, dropped ones included).
    pub fn size(&self) -> u64 {
        self.segments
            .last()
            .zip(self.first_leaf.last())
            .map_or(self.base.size(), |(s, f)| f + s.count)
    }

    /// Leaves before the first kept event (dropped by retention).
    pub fn base(&self) -> &Frontier {
        &self.base
    }

    pub fn segments(&self) -> &[SegmentMeta] {
        &self.segments
    }

    /// The segment holding leaf `leaf`.
    pub fn segment_of_leaf(&self, leaf: u64) -> Option<usize> {
        if leaf < self.base.size() || leaf >= self.size() {
            return None;
        }
        let i = self.first_leaf.partition_point(|f| *f <= leaf);
        let i = i.checked_sub(1)?;
        // Skip empty segments that share the same first leaf.
        (i..self.segments.len()).find(|&j| leaf < self.first_leaf[j] + self.segments[j].count)
    }

    /// The leaf index of the event at `lsn`, if the log holds it.
    pub fn leaf_of_lsn(&self, lsn: u64) -> Option<u64> {
        let i = self
            .segments
            .iter()
            .position(|s| lsn >= s.first_lsn && lsn < s.end_lsn())?;
        Some(self.first_leaf[i] + (lsn - self.segments[i].first_lsn))
    }

    /// The LSN of leaf `leaf` and its segment.
    pub fn lsn_of_leaf(&self, leaf: u64) -> Option<(usize, u64)> {
        let i = self.segment_of_leaf(leaf)?;
        Some((i, self.segments[i].first_lsn + (leaf - self.first_leaf[i])))
    }

    /// Segment `i`'s share of the tree: its file if it fits, else rebuilt
    /// from the segment (after the share of the one before it).
    pub fn tree(&mut self, i: usize) -> Result<Arc<SegmentTree>> {
        if let Some(t) = self.trees.get(&i) {
            return Ok(t.clone());
        }
        let meta = self
            .segments
            .get(i)
            .ok_or_else(|| Error::InvalidArgument(format!("no segment {i} in the tree")))?
            .clone();
        if meta.sealed && self.read_files {
            let path = segtree::path_of(&meta);
            if let Ok(bytes) = std::fs::read(&path) {
                if let Ok(t) = SegmentTree::decode(&bytes, &meta) {
                    if t.first_leaf == self.first_leaf[i] {
                        let t = Arc::new(t);
                        self.trees.insert(i, t.clone());
                        return Ok(t);
                    }
                }
            }
        }
        let start = match i {
            0 => self.base.clone(),
            _ => self.tree(i - 1)?.end.clone(),
        };
        if !meta.sealed && self.read_files {
            // The writer stores the active segment's share at every
            // checkpoint and at close: hash only what came after it.
            if let Some(t) = self.active_prefix(&meta, &start)? {
                let t = Arc::new(t);
                self.trees.insert(i, t.clone());
                return Ok(t);
            }
        }
        let t = Arc::new(build(&meta, start)?);
        if self.persist && meta.sealed {
            // Derived: a failed write only means the next read rebuilds it.
            let _ = t.store(&segtree::path_of(&meta));
        }
        self.trees.insert(i, t.clone());
        Ok(t)
    }

    /// The active segment's stored share, grown to its committed end, if
    /// there is one that fits (it must start where the tree before it ends).
    fn active_prefix(&self, meta: &SegmentMeta, start: &Frontier) -> Result<Option<SegmentTree>> {
        let Ok(bytes) = std::fs::read(segtree::path_of(meta)) else {
            return Ok(None);
        };
        let Some(map) = map_file(&meta.path)? else {
            return Ok(None);
        };
        let Ok(mut t) = SegmentTree::decode_prefix(&bytes, meta, &map) else {
            return Ok(None);
        };
        if t.start != *start || t.extend(&map, meta).is_err() {
            return Ok(None);
        }
        Ok(Some(t))
    }

    /// The tree (frontier) after segment `i`'s last event.
    pub fn frontier_after(&mut self, i: usize) -> Result<Frontier> {
        Ok(self.tree(i)?.end.clone())
    }

    /// The hashes of leaves `[from, to)`.
    pub fn leaves(&mut self, from: u64, to: u64) -> Result<Vec<TreeHash>> {
        let mut out = Vec::with_capacity((to - from) as usize);
        self.each_record(from, to, |_, payload| out.push(leaf_hash(payload)))?;
        Ok(out)
    }

    /// The stored bytes (leaf data) and LSN of leaf `leaf`.
    pub fn record(&mut self, leaf: u64) -> Result<(u64, Vec<u8>)> {
        let mut got = None;
        self.each_record(leaf, leaf + 1, |lsn, payload| {
            got = Some((lsn, payload.to_vec()))
        })?;
        got.ok_or_else(|| Error::InvalidArgument(format!("leaf {leaf} is not in the log")))
    }

    /// Call `f(lsn, payload)` for every event of leaves `[from, to)`.
    pub(crate) fn each_record(
        &mut self,
        from: u64,
        to: u64,
        mut f: impl FnMut(u64, &[u8]),
    ) -> Result<()> {
        let mut leaf = from;
        while leaf < to {
            let i = self.segment_of_leaf(leaf).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "leaf {leaf} is not in the kept log (leaves {}..{})",
                    self.base.size(),
                    self.size()
                ))
            })?;
            let tree = self.tree(i)?;
            let meta = &self.segments[i];
            let seg_end = (self.first_leaf[i] + meta.count).min(to);
            let (off, lsn) = tree
                .group_start(leaf)
                .ok_or_else(|| corrupt(&meta.name, 0, format!("no group for leaf {leaf}")))?;
            let first_lsn = meta.first_lsn + (leaf - self.first_leaf[i]);
            let last_lsn = meta.first_lsn + (seg_end - self.first_leaf[i]);
            let map = map_file(&meta.path)?
                .ok_or_else(|| corrupt(&meta.name, 0, "the segment is empty"))?;
            let mut walk = Walk::new(&map, off, meta.data_len, meta.prev_digest, lsn).trusted();
            'blocks: loop {
                let block = match walk.next_block() {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(s) => return Err(corrupt(&meta.name, s.offset, s.reason)),
                };
                for (ev_lsn, (_, payload)) in (block.commit.first_lsn..).zip(block.events()) {
                    if ev_lsn >= last_lsn {
                        break 'blocks;
                    }
                    if ev_lsn >= first_lsn {
                        f(ev_lsn, payload);
                    }
                }
            }
            leaf = seg_end;
        }
        Ok(())
    }

    /// Every checkpoint event of the kept log, oldest first.
    pub fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>> {
        let mut out = Vec::new();
        for i in 0..self.segments.len() {
            let tree = self.tree(i)?;
            for &(leaf, offset) in &tree.checkpoints {
                out.push(self.read_checkpoint(i, leaf, offset)?);
            }
        }
        Ok(out)
    }

    /// The newest checkpoint event, if any (searched from the newest
    /// segment back).
    pub fn newest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>> {
        for i in (0..self.segments.len()).rev() {
            let tree = self.tree(i)?;
            if let Some(&(leaf, offset)) = tree.checkpoints.last() {
                return self.read_checkpoint(i, leaf, offset).map(Some);
            }
        }
        Ok(None)
    }

    /// The checkpoint event whose tree size is `size`, if any: at leaf
    /// `size` (signed in place) or after it (deferred; the sizes of the
    /// records after it only grow, so the search stops at a larger one).
    pub fn checkpoint_of_size(&mut self, size: u64) -> Result<Option<StoredCheckpoint>> {
        let Some(first) = self.segment_of_leaf(size) else {
            return Ok(None);
        };
        for i in first..self.segments.len() {
            let tree = self.tree(i)?;
            for &(leaf, offset) in tree.checkpoints.iter().filter(|(leaf, _)| *leaf >= size) {
                let c = self.read_checkpoint(i, leaf, offset)?;
                match c.record.tree_size.cmp(&size) {
                    std::cmp::Ordering::Equal => return Ok(Some(c)),
                    std::cmp::Ordering::Greater => return Ok(None),
                    std::cmp::Ordering::Less => {}
                }
            }
        }
        Ok(None)
    }

    fn read_checkpoint(&self, i: usize, leaf: u64, offset: u64) -> Result<StoredCheckpoint> {
        let meta = &self.segments[i];
        let lsn = meta.first_lsn + (leaf - self.first_leaf[i]);
        let map =
            map_file(&meta.path)?.ok_or_else(|| corrupt(&meta.name, 0, "the segment is empty"))?;
        let mut walk = Walk::new(&map, offset, meta.data_len, meta.prev_digest, lsn).trusted();
        let bad = |why: String| corrupt(&meta.name, offset, why);
        let block = walk
            .next_block()
            .map_err(|s| bad(s.reason))?
            .ok_or_else(|| bad("no block where the tree file says a checkpoint is".into()))?;
        let mut evs = block.events();
        let (Some((_, payload)), None) = (evs.next(), evs.next()) else {
            return Err(bad(
                "the checkpoint's block holds more than one event".into()
            ));
        };
        let ev = codec::decode_stored(payload).map_err(|e| bad(e.to_string()))?;
        match ev.data.system() {
            Some(SystemRecord::Checkpoint(c)) if c.tree_size <= leaf => Ok(StoredCheckpoint {
                lsn,
                leaf,
                record: c.clone(),
            }),
            _ => Err(bad(format!(
                "the event at LSN {lsn} is not the checkpoint the tree file names (at leaf {leaf}, of at most {leaf} leaves)"
            ))),
        }
    }
}

/// Build segment `meta`'s share from its bytes.
fn build(meta: &SegmentMeta, start: Frontier) -> Result<SegmentTree> {
    let Some(map) = map_file(&meta.path)? else {
        return Ok(SegmentTree::empty(meta, start));
    };
    SegmentTree::build(&map, meta, start).map_err(|r| corrupt(&meta.name, 0, r.to_string()))
}

impl Subtrees for LogTree {
    type Error = Error;

    fn subtree(&mut self, start: u64, height: u32) -> Result<TreeHash> {
        let end = start + (1u64 << height);
        if end > self.size() {
            return Err(Error::InvalidArgument(format!(
                "leaves {start}..{end} are past the tree's {} leaves",
                self.size()
            )));
        }
        if end <= self.base.size() {
            // Dropped by retention: only the stored frontier's own subtrees
            // are known (all a later proof needs), and the tile hashes the
            // cut kept (all a later tile needs).
            return self
                .base
                .subtrees()
                .find(|(s, h, _)| *s == start && *h == height)
                .map(|(_, _, hash)| hash)
                .or_else(|| self.cut.as_ref().and_then(|c| c.node(start, height)))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "leaves {start}..{end} were dropped by retention (the log keeps leaves {}.. and the frontier before them)",
                        self.base.size()
                    ))
                });
        }
        if height >= MIN_HEIGHT {
            let i = self.segment_of_leaf(end - 1).ok_or_else(|| {
                Error::InvalidArgument(format!("no segment holds leaf {}", end - 1))
            })?;
            let tree = self.tree(i)?;
            return tree.node(height, start >> height).ok_or_else(|| {
                corrupt(
                    &self.segments[i].name,
                    0,
                    format!("its tree file lacks the subtree of height {height} at leaf {start}"),
                )
            });
        }
        if start < self.base.size() {
            let half = height - 1;
            let left = self.subtree(start, half)?;
            let right = self.subtree(start + (1 << half), half)?;
            return Ok(node_hash(&left, &right));
        }
        let mut f = Frontier::new();
        for l in self.leaves(start, end)? {
            f.push(l)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        Ok(f.root())
    }
}

/// The tree before the first kept event: empty for a log that never
/// dropped anything, else the frontier its newest retention record stored.
pub fn tree_base(
    manifest: &crate::manifest::Manifest,
    segments: &[SegmentMeta],
) -> Result<Frontier> {
    Ok(tree_start(manifest, segments)?.0)
}

/// The tree before the first kept event and the tile hashes its cut kept
/// (`None` for a log that never dropped anything, or a retention record
/// that kept none).
pub fn tree_start(
    manifest: &crate::manifest::Manifest,
    segments: &[SegmentMeta],
) -> Result<(Frontier, Option<CutTiles>)> {
    let Some(at) = manifest.retention else {
        return Ok((Frontier::new(), None));
    };
    let r = retention_record(segments, at)?.ok_or_else(|| {
        corrupt(
            "MANIFEST",
            0,
            "the retention record it names is not a retention record",
        )
    })?;
    let bad = |why: crate::error::EventError| {
        corrupt("MANIFEST", 0, format!("its retention record: {why}"))
    };
    Ok((r.frontier().map_err(bad)?, r.cut_tiles().map_err(bad)?))
}

/// The retention record stored at `at`, if that is one.
pub fn retention_record(
    segments: &[SegmentMeta],
    at: crate::manifest::RecordRef,
) -> Result<Option<crate::event::system::Retention>> {
    let meta = segments.iter().find(|s| s.seq == at.seq).ok_or_else(|| {
        corrupt(
            "MANIFEST",
            0,
            format!(
                "its retention record's segment {} is not in the log",
                at.seq
            ),
        )
    })?;
    let map = map_file(&meta.path)?.ok_or_else(|| corrupt(&meta.name, 0, "empty"))?;
    let ev = crate::layout::read_lone_record(&map, meta, at.offset, at.lsn)
        .map_err(|r| corrupt(&meta.name, at.offset, r.to_string()))?;
    Ok(match ev.data.system() {
        Some(SystemRecord::Retention(r)) => Some(r.clone()),
        _ => None,
    })
}
