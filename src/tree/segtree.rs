//! The part of the Merkle tree one segment adds, kept in a derived file
//! `STEM.mtree` beside the segment: the tree's frontier before and after
//! the segment, the hash of every complete subtree of at least
//! [`MIN_HEIGHT`] levels that one of the segment's events completes, and
//! where each group of `2^MIN_HEIGHT` leaves starts in the segment. With
//! these, a proof needs O(log n) stored hashes and at most two groups of
//! events hashed again. The file is derived: it is rebuilt from the segment
//! (and the frontier before it) whenever it is missing or fails a check,
//! and nothing signed is ever taken from it unchecked (docs/proofs.md).
//! Byte layout in docs/format.md.

use std::path::{Path, PathBuf};

use crate::blocks::Walk;
use crate::chain::Digest;
use crate::layout::SegmentMeta;
use crate::segment::HEADER_SIZE;

use crate::tlog::merkle::{leaf_hash, Frontier, TreeError, TreeHash};

pub const MTREE_MAGIC: &[u8; 8] = b"AUDLMTRE";
pub const MTREE_VERSION: u16 = 1;
/// Subtrees this high or higher are stored; lower ones are hashed again
/// from at most `2^MIN_HEIGHT` events.
pub const MIN_HEIGHT: u32 = 6;
const HEADER: usize = 96;

/// The file name of a segment's tree file.
pub fn file_name(segment_name: &str) -> String {
    let stem = segment_name.strip_suffix(".seg").unwrap_or(segment_name);
    format!("{stem}.mtree")
}

pub fn path_of(meta: &SegmentMeta) -> PathBuf {
    meta.path.with_file_name(file_name(&meta.name))
}

/// Why a segment's share of the tree cannot be built from the segment, or
/// why a stored tree file cannot be used (it is then rebuilt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeFileError {
    /// The file is shorter than its header and CRC, or than the hashes
    /// its header counts.
    #[error("cut short")]
    CutShort,
    /// The file's CRC does not match its bytes.
    #[error("CRC mismatch")]
    BadCrc,
    #[error("not a tree file (bad magic)")]
    BadMagic,
    /// A version (or stored subtree height) this build does not read.
    #[error("tree file version {version} (subtree height {min_height}) is not supported")]
    UnsupportedVersion { version: u16, min_height: u8 },
    /// The header's counts overflow or disagree with the tables after it.
    #[error("{0}")]
    Layout(&'static str),
    /// A well-formed file that belongs to another segment (or to another
    /// length of this one).
    #[error("it was built from another segment, or another version of it")]
    OtherSegment,
    /// An active segment's stored share that does not end at one of its
    /// block boundaries with the same chain digest.
    #[error("it is not a prefix of this segment")]
    NotAPrefix,
    /// The segment's blocks could not be walked.
    #[error("{segment} at offset {offset}: {reason}")]
    Segment {
        segment: String,
        offset: u64,
        reason: String,
    },
    /// The segment holds another number of events than its metadata says.
    #[error("{segment} holds {found} events, not the {expected} its metadata says")]
    EventCount {
        segment: String,
        found: u64,
        expected: u64,
    },
    /// The frontier (stored or being extended) is wrong.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// One segment's share of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentTree {
    pub seq: u64,
    pub first_lsn: u64,
    /// Leaf index of the segment's first event.
    pub first_leaf: u64,
    /// Events (leaves) in the segment.
    pub count: u64,
    /// The segment bytes this covers, and the chain digest there.
    pub data_len: u64,
    pub digest: Digest,
    /// The segment's checkpoint events: (leaf index, offset of the block
    /// holding only it), oldest first.
    pub checkpoints: Vec<(u64, u64)>,
    pub start: Frontier,
    pub end: Frontier,
    /// `nodes[h - MIN_HEIGHT]`: subtrees of height `h` completed here, in
    /// order of their index.
    pub nodes: Vec<Vec<TreeHash>>,
    /// Per group of `2^MIN_HEIGHT` leaves with a leaf here: (offset of the
    /// block holding its first leaf here, that block's first LSN).
    pub groups: Vec<(u64, u64)>,
}

impl SegmentTree {
    /// The state before the segment's first event.
    pub fn empty(meta: &SegmentMeta, start: Frontier) -> SegmentTree {
        SegmentTree {
            seq: meta.seq,
            first_lsn: meta.first_lsn,
            first_leaf: start.size(),
            count: 0,
            data_len: HEADER_SIZE as u64,
            digest: meta.prev_digest,
            checkpoints: Vec::new(),
            end: start.clone(),
            start,
            nodes: Vec::new(),
            groups: Vec::new(),
        }
    }

    pub fn end_leaf(&self) -> u64 {
        self.first_leaf + self.count
    }

    /// Add one leaf (its hash) of the block at `block_start`.
    #[inline]
    pub fn push_leaf(
        &mut self,
        block_start: u64,
        block_lsn: u64,
        leaf: TreeHash,
    ) -> Result<(), TreeError> {
        let index = self.end.size();
        if index.is_multiple_of(1 << MIN_HEIGHT) || self.count == 0 {
            self.groups.push((block_start, block_lsn));
        }
        let nodes = &mut self.nodes;
        self.end.push_with(leaf, MIN_HEIGHT, |c| {
            let slot = (c.height - MIN_HEIGHT) as usize;
            if nodes.len() <= slot {
                nodes.resize_with(slot + 1, Vec::new);
            }
            nodes[slot].push(c.hash);
        })?;
        self.count += 1;
        Ok(())
    }

    /// The stored subtree of `height` (>= MIN_HEIGHT) with this `index`, if
    /// this segment completed it.
    pub fn node(&self, height: u32, index: u64) -> Option<TreeHash> {
        if !(MIN_HEIGHT..64).contains(&height) {
            return None;
        }
        let first = self.first_leaf >> height;
        let pos = index.checked_sub(first)?;
        self.nodes
            .get((height - MIN_HEIGHT) as usize)?
            .get(usize::try_from(pos).ok()?)
            .copied()
    }

    /// Where to start walking to reach leaf `leaf`: (block offset, LSN of
    /// that block's first event).
    pub fn group_start(&self, leaf: u64) -> Option<(u64, u64)> {
        if leaf < self.first_leaf || leaf >= self.end_leaf() {
            return None;
        }
        let g = (leaf >> MIN_HEIGHT) - (self.first_leaf >> MIN_HEIGHT);
        self.groups.get(usize::try_from(g).ok()?).copied()
    }

    /// Build from the segment's committed bytes, after `start` (the tree
    /// before the segment). Frames are CRC-checked; the chain is not
    /// recomputed here (callers that need it walk the chain themselves).
    pub fn build(
        bytes: &[u8],
        meta: &SegmentMeta,
        start: Frontier,
    ) -> Result<SegmentTree, TreeFileError> {
        let mut t = SegmentTree::empty(meta, start);
        t.extend(bytes, meta)?;
        Ok(t)
    }

    /// Add the events stored after this share's end, up to `meta`'s
    /// committed length (an active segment that grew since the share was
    /// stored).
    pub fn extend(&mut self, bytes: &[u8], meta: &SegmentMeta) -> Result<(), TreeFileError> {
        let t = self;
        let lsn = meta.first_lsn + t.count;
        let mut walk = Walk::new(bytes, t.data_len, meta.data_len, t.digest, lsn).trusted();
        loop {
            let block = match walk.next_block() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(stop) => {
                    return Err(TreeFileError::Segment {
                        segment: meta.name.clone(),
                        offset: stop.offset,
                        reason: stop.reason,
                    })
                }
            };
            for (_, payload) in block.events() {
                if block.commit.count == 1 && is_checkpoint(payload) {
                    t.checkpoints.push((t.end.size(), block.start));
                }
                t.push_leaf(block.start, block.commit.first_lsn, leaf_hash(payload))?;
            }
            t.data_len = block.end;
            t.digest = block.commit.digest;
        }
        if t.count != meta.count {
            return Err(TreeFileError::EventCount {
                segment: meta.name.clone(),
                found: t.count,
                expected: meta.count,
            });
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 32 * 130 + self.groups.len() * 16);
        out.extend_from_slice(MTREE_MAGIC);
        out.extend_from_slice(&MTREE_VERSION.to_le_bytes());
        out.push(MIN_HEIGHT as u8);
        out.push(0);
        out.extend_from_slice(&0u32.to_le_bytes());
        for v in [
            self.seq,
            self.first_lsn,
            self.first_leaf,
            self.count,
            self.data_len,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.digest.0);
        out.extend_from_slice(&(self.checkpoints.len() as u64).to_le_bytes());
        debug_assert_eq!(out.len(), HEADER);
        for h in self.start.nodes().iter().chain(self.end.nodes()) {
            out.extend_from_slice(&h.0);
        }
        for h in MIN_HEIGHT..64 {
            let want = nodes_at(self.first_leaf, self.end_leaf(), h);
            let have = self.nodes.get((h - MIN_HEIGHT) as usize);
            debug_assert_eq!(have.map_or(0, Vec::len) as u64, want);
            for n in have.into_iter().flatten() {
                out.extend_from_slice(&n.0);
            }
        }
        for (a, b) in self.groups.iter().chain(&self.checkpoints) {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Read a tree file and check it belongs to `meta` (sequence number,
    /// first LSN, event count, committed length, final digest).
    pub fn decode(bytes: &[u8], meta: &SegmentMeta) -> Result<SegmentTree, TreeFileError> {
        let t = SegmentTree::decode_any(bytes)?;
        let binds = t.seq == meta.seq
            && t.first_lsn == meta.first_lsn
            && t.count == meta.count
            && t.data_len == meta.data_len
            && t.digest == meta.digest;
        if !binds {
            return Err(TreeFileError::OtherSegment);
        }
        Ok(t)
    }

    /// Read the stored share of an active segment that may have grown since
    /// (`segment` is its bytes): it must cover a prefix of it, ending at a
    /// block boundary whose stored chain digest is the share's.
    pub fn decode_prefix(
        bytes: &[u8],
        meta: &SegmentMeta,
        segment: &[u8],
    ) -> Result<SegmentTree, TreeFileError> {
        let t = SegmentTree::decode_any(bytes)?;
        let at_boundary = t.data_len == HEADER_SIZE as u64
            || crate::blocks::stored_digest_at(segment, t.data_len)
                .is_some_and(|(d, next)| d == t.digest && next == t.first_lsn + t.count);
        let binds = t.seq == meta.seq
            && t.first_lsn == meta.first_lsn
            && t.count <= meta.count
            && t.data_len <= meta.data_len
            && at_boundary;
        if !binds {
            return Err(TreeFileError::NotAPrefix);
        }
        Ok(t)
    }

    fn decode_any(bytes: &[u8]) -> Result<SegmentTree, TreeFileError> {
        if bytes.len() < HEADER + 4 {
            return Err(TreeFileError::CutShort);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(TreeFileError::BadCrc);
        }
        if &body[0..8] != MTREE_MAGIC {
            return Err(TreeFileError::BadMagic);
        }
        let version = u16::from_le_bytes([body[8], body[9]]);
        if version != MTREE_VERSION || body[10] as u32 != MIN_HEIGHT {
            return Err(TreeFileError::UnsupportedVersion {
                version,
                min_height: body[10],
            });
        }
        let u64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let (seq, first_lsn, first_leaf, count, data_len) =
            (u64_at(16), u64_at(24), u64_at(32), u64_at(40), u64_at(48));
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&body[56..88]);
        let checkpoints_n = u64_at(88);
        let end_leaf = first_leaf
            .checked_add(count)
            .ok_or(TreeFileError::Layout("leaf count overflows"))?;
        let mut at = HEADER;
        let mut take = |n: u64| -> Result<Vec<TreeHash>, TreeFileError> {
            let n = usize::try_from(n).map_err(|_| TreeFileError::Layout("too many hashes"))?;
            let end = n
                .checked_mul(32)
                .and_then(|b| b.checked_add(at))
                .filter(|e| *e <= body.len())
                .ok_or(TreeFileError::CutShort)?;
            let out = body[at..end]
                .chunks_exact(32)
                .map(|c| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(c);
                    TreeHash(h)
                })
                .collect();
            at = end;
            Ok(out)
        };
        let start = Frontier::from_parts(first_leaf, take(first_leaf.count_ones() as u64)?)?;
        let end = Frontier::from_parts(end_leaf, take(end_leaf.count_ones() as u64)?)?;
        let mut nodes = Vec::new();
        for h in MIN_HEIGHT..64 {
            nodes.push(take(nodes_at(first_leaf, end_leaf, h))?);
        }
        while nodes.last().is_some_and(Vec::is_empty) {
            nodes.pop();
        }
        let groups_n = match count {
            0 => 0,
            _ => ((end_leaf - 1) >> MIN_HEIGHT) - (first_leaf >> MIN_HEIGHT) + 1,
        };
        let rest = &body[at..];
        let pairs_n = groups_n
            .checked_add(checkpoints_n)
            .ok_or(TreeFileError::Layout("bad counts"))?;
        if rest.len() as u64 != pairs_n.saturating_mul(16) {
            return Err(TreeFileError::Layout(
                "group and checkpoint tables have the wrong size",
            ));
        }
        let mut pairs: Vec<(u64, u64)> = rest
            .chunks_exact(16)
            .map(|c| {
                let mut a = [0u8; 8];
                let mut b = [0u8; 8];
                a.copy_from_slice(&c[..8]);
                b.copy_from_slice(&c[8..]);
                (u64::from_le_bytes(a), u64::from_le_bytes(b))
            })
            .collect();
        let checkpoints = pairs.split_off(groups_n as usize);
        let groups = pairs;
        if checkpoints
            .iter()
            .any(|(leaf, _)| *leaf < first_leaf || *leaf >= end_leaf)
        {
            return Err(TreeFileError::Layout(
                "a checkpoint lies outside the segment",
            ));
        }
        Ok(SegmentTree {
            seq,
            first_lsn,
            first_leaf,
            count,
            data_len,
            digest: Digest(digest),
            checkpoints,
            start,
            end,
            nodes,
            groups,
        })
    }

    /// Write the file (a temporary, then renamed over; not synced: it is
    /// derived, checked when read, rebuilt when bad).
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let tmp = write_tmp(path, &self.encode())?;
        std::fs::rename(&tmp, path)
    }
}

/// Write an encoded tree file to a fresh temporary file beside `path`,
/// to be renamed over it (`SegmentTree::store`; the tree thread writes
/// outside the tree's lock and renames under it).
pub(crate) fn write_tmp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    // Unique per write: the tree thread and a reader of the same
    // process may store the same segment's file at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("mtree.tmp-{}-{n}", std::process::id()));
    {
        use std::io::Write as _;
        let mut f = crate::fsutil::create_private(&tmp)?;
        if let Err(e) = f.write_all(bytes) {
            drop(f);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    Ok(tmp)
}

/// Subtrees of height `h` completed by leaves `[first, end)`.
fn nodes_at(first: u64, end: u64, h: u32) -> u64 {
    (end >> h) - (first >> h)
}

/// Whether an event payload is a checkpoint system event: run_id "" (a
/// zero length byte), then the ts, the `System` variant (3) and the
/// `Checkpoint` record (3). Cheap enough for every event; exact because
/// only system events have an empty run_id.
pub fn is_checkpoint(payload: &[u8]) -> bool {
    if payload.first() != Some(&0) {
        return false;
    }
    crate::codec::decode_stored(payload).is_ok_and(|ev| {
        matches!(
            ev.data.system(),
            Some(crate::event::system::SystemRecord::Checkpoint(_))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::Frontier;

    fn meta() -> SegmentMeta {
        SegmentMeta {
            seq: 3,
            day: 20261123,
            name: "20261123-0000000003.seg".into(),
            path: PathBuf::from("/nowhere/20261123-0000000003.seg"),
            first_lsn: 1000,
            count: 0,
            min_ts: None,
            max_ts: None,
            data_len: HEADER_SIZE as u64,
            prev_digest: Digest([4; 32]),
            digest: Digest([4; 32]),
            sealed: true,
        }
    }

    #[test]
    fn encode_decode_round_trip_and_binding() {
        let mut start = Frontier::new();
        for i in 0..100u64 {
            start.push(leaf_hash(&i.to_le_bytes())).unwrap();
        }
        let mut m = meta();
        let mut t = SegmentTree::empty(&m, start.clone());
        for i in 0..300u64 {
            t.push_leaf(72 + i * 10, 1000 + i, leaf_hash(&(i + 100).to_le_bytes()))
                .unwrap();
        }
        t.checkpoints = vec![(150, 72 + 50 * 10), (399, 72 + 299 * 10)];
        m.count = 300;
        m.data_len = 5000;
        m.digest = Digest([9; 32]);
        t.data_len = 5000;
        t.digest = Digest([9; 32]);
        let bytes = t.encode();
        let back = SegmentTree::decode(&bytes, &m).unwrap();
        assert_eq!(back, t);
        // Every stored node is the subtree hash over the same leaves.
        let all: Vec<TreeHash> = (0..400u64).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut src = &all[..];
        for h in MIN_HEIGHT..9 {
            for j in (100u64 >> h)..(400u64 >> h) {
                if ((j + 1) << h) > 100 {
                    use crate::tlog::merkle::Subtrees;
                    assert_eq!(
                        back.node(h, j),
                        Some(src.subtree(j << h, h).unwrap()),
                        "{h} {j}"
                    );
                }
            }
        }
        assert_eq!(back.group_start(100), Some((72, 1000)));
        assert_eq!(back.group_start(128), Some((72 + 28 * 10, 1028)));
        assert_eq!(back.group_start(400), None);
        let mut other = m.clone();
        other.digest = Digest([8; 32]);
        assert_eq!(
            SegmentTree::decode(&bytes, &other),
            Err(TreeFileError::OtherSegment)
        );
        let mut flipped = bytes.clone();
        flipped[120] ^= 1;
        assert_eq!(
            SegmentTree::decode(&flipped, &m),
            Err(TreeFileError::BadCrc)
        );
        assert_eq!(
            SegmentTree::decode(&bytes[..50], &m),
            Err(TreeFileError::CutShort)
        );
        // With a valid CRC over changed bytes: what is wrong is named.
        let recrc = |mut b: Vec<u8>| {
            let n = b.len() - 4;
            let crc = crc32fast::hash(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(
            SegmentTree::decode(&recrc(magic), &m),
            Err(TreeFileError::BadMagic)
        );
        let mut version = bytes.clone();
        version[8] = 9;
        let err = SegmentTree::decode(&recrc(version), &m).unwrap_err();
        assert_eq!(
            err,
            TreeFileError::UnsupportedVersion {
                version: 9,
                min_height: MIN_HEIGHT as u8
            }
        );
        assert_eq!(
            err.to_string(),
            "tree file version 9 (subtree height 6) is not supported"
        );
        let mut longer = bytes[..bytes.len() - 4].to_vec();
        longer.extend_from_slice(&[0; 16 + 4]);
        assert_eq!(
            SegmentTree::decode(&recrc(longer), &m),
            Err(TreeFileError::Layout(
                "group and checkpoint tables have the wrong size"
            ))
        );
        let mut outside = bytes.clone();
        let n = outside.len();
        outside[n - 20..n - 12].copy_from_slice(&5u64.to_le_bytes());
        assert_eq!(
            SegmentTree::decode(&recrc(outside), &m),
            Err(TreeFileError::Layout(
                "a checkpoint lies outside the segment"
            ))
        );
        let mut prefix_meta = m.clone();
        prefix_meta.count = 299;
        assert_eq!(
            SegmentTree::decode_prefix(&bytes, &prefix_meta, &[]),
            Err(TreeFileError::NotAPrefix)
        );
    }
}
