//! The writer's side of the tree: the active segment's share kept as
//! blocks are written (one SHA-256 per event plus, on average, one per
//! interior node), stored as `STEM.mtree` when the segment seals, and the
//! checkpoints signed from it. Also how an open finds the tree to continue
//! from without believing a derived file: the frontier it continues from
//! must reproduce the root the key signed last (docs/proofs.md, "What the
//! writer trusts").

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};
use crate::event::system::TreeCheckpoint;
use crate::event::Micros;
use crate::frame::{peek_frame, FRAME_HEADER};
use crate::layout::SegmentMeta;

use super::logtree::LogTree;
use super::segtree::{self, SegmentTree};
use crate::tlog::checkpoint::{self, Checkpoint};
use crate::tlog::cut_tiles::{kept_counts, kept_starts};
use crate::tlog::merkle::{leaf_hash, Frontier, Subtrees, TreeHash};
use crate::tlog::note::SignerKey;
use crate::tlog::tiles::TILE_HEIGHT;
use crate::tlog::CutTiles;

/// How a writer signs checkpoints.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// The private key; its name is the checkpoints' origin.
    pub key: SignerKey,
    /// Sign a checkpoint at least this often while events arrive (and at
    /// every seal and at close).
    pub interval: Duration,
    /// Where the key's last signed checkpoint is remembered, outside the
    /// log folder: the writer refuses to sign a tree that does not extend
    /// it (a log must never sign two inconsistent checkpoints). `None`
    /// keeps no memory (then only the checkpoints in the log are checked).
    pub state: Option<PathBuf>,
}

/// Default checkpoint interval.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

impl CheckpointConfig {
    /// Read a private key file (written by `auditlog keygen`); the state is
    /// kept beside it as `FILE.state`.
    pub fn from_key_file(path: &Path) -> Result<CheckpointConfig> {
        let text = std::fs::read_to_string(path)
            .ctx(|| format!("reading the signing key {}", path.display()))?;
        let key = SignerKey::parse(&text)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
        let mut state = path.as_os_str().to_owned();
        state.push(".state");
        Ok(CheckpointConfig {
            key,
            interval: DEFAULT_CHECKPOINT_INTERVAL,
            state: Some(PathBuf::from(state)),
        })
    }
}

/// The last checkpoint a key signed, as remembered beside the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedState {
    pub size: u64,
    pub root: TreeHash,
}

/// Read the state file (the signed note of the key's last checkpoint).
pub fn load_state(path: &Path, key: &SignerKey) -> Result<Option<SignedState>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let c = checkpoint::open(&text, &key.verifier()).map_err(|e| {
        Error::InvalidArgument(format!(
            "{} is not a checkpoint signed by this key ({e}); it remembers what the key last signed: remove it only to accept a log that does not extend it",
            path.display()
        ))
    })?;
    Ok(Some(SignedState {
        size: c.size,
        root: c.root,
    }))
}

/// Remember `note` as the key's last signed checkpoint (atomically,
/// durably).
pub(crate) fn store_state(path: &Path, note: &str) -> Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("state.tmp");
    {
        let mut f =
            crate::fsutil::create_private(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(note.as_bytes())
            .and_then(|_| f.sync_all())
            .ctx(|| format!("writing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).ctx(|| format!("renaming {} into place", tmp.display()))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::fsutil::sync_dir(parent)?;
    }
    Ok(())
}

/// The writer's tree.
pub(crate) struct TreeKeeper {
    /// The active segment's share; with no active segment, an empty share
    /// whose `end` is the whole tree.
    seg: SegmentTree,
    signing: Option<CheckpointConfig>,
    /// Leaves already covered by a checkpoint in the log (the newest
    /// checkpoint's own leaf included): nothing to sign until it grows.
    covered: u64,
    /// A block written to the log never reached the tree (the tree
    /// thread could not read it back): the tree is short of the log, so
    /// it signs nothing and stores no tree file until the log is reopened
    /// (which rebuilds the tree from the segments).
    short: bool,
}

impl TreeKeeper {
    /// The tree at open: continue from `segments` (the log's, the newest
    /// possibly active) and `base` (the tree before the first kept event).
    /// With a key, the tree continued from must reproduce the root the key
    /// signed last (state file, else the newest checkpoint in the log).
    pub(crate) fn open(
        dir: &Path,
        segments: &[SegmentMeta],
        base: Frontier,
        signing: Option<CheckpointConfig>,
    ) -> Result<TreeKeeper> {
        let mut tree = LogTree::new(segments.to_vec(), base, true);
        let active = segments.last().filter(|s| !s.sealed);
        let mut seg = share_of_active(&mut tree, segments, active)?;
        let mut covered = 0;
        if let Some(cfg) = &signing {
            covered = tree.newest_checkpoint()?.map_or(0, |c| c.covered());
            let signed = last_signed(&mut tree, cfg)?;
            if let Some(s) = &signed {
                if let Err(why) = check_extends(&mut tree, &seg, s) {
                    // The derived files may be what is wrong: rebuild
                    // everything from the events and look again.
                    tracing::warn!(error = %why, "tree files disagree with the signed root; rebuilding the tree from the events");
                    let mut fresh = LogTree::from_events(segments.to_vec(), tree.base().clone());
                    seg = share_of_active(&mut fresh, segments, active)?;
                    check_extends(&mut fresh, &seg, s).map_err(|why| {
                        Error::Corrupt {
                            segment: "tree".into(),
                            offset: 0,
                            reason: format!(
                                "{why}: the log does not extend the tree of {} leaves this key signed last, so the writer will not sign (was the log rewritten, truncated or repaired? see docs/proofs.md)",
                                s.size
                            ),
                        }
                    })?;
                    for (i, meta) in segments.iter().enumerate() {
                        if meta.sealed {
                            let t = fresh.tree(i)?;
                            let _ = t.store(&segtree::path_of(meta));
                        }
                    }
                }
            }
        }
        let _ = dir;
        Ok(TreeKeeper {
            seg,
            signing,
            covered,
            short: false,
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.seg.end.size()
    }

    /// The active segment's share as it stands (tests).
    #[cfg(test)]
    pub(crate) fn share(&self) -> &SegmentTree {
        &self.seg
    }

    pub(crate) fn root(&self) -> TreeHash {
        self.seg.end.root()
    }

    /// Leaves already covered by a checkpoint in the log.
    pub(crate) fn covered(&self) -> u64 {
        self.covered
    }

    pub(crate) fn signing(&self) -> Option<&CheckpointConfig> {
        self.signing.as_ref()
    }

    /// A new active segment starts its share.
    pub(crate) fn segment_created(&mut self, meta: &SegmentMeta) {
        self.seg = SegmentTree::empty(meta, self.seg.end.clone());
    }

    /// The active segment was removed empty: nothing of it stays.
    pub(crate) fn segment_discarded(&mut self) {
        self.seg.groups.clear();
        self.seg.checkpoints.clear();
    }

    /// A block was written to the active segment: its event frames
    /// (without the commit record) or the leaf hashes the producers
    /// computed (else they are hashed here).
    #[inline]
    pub(crate) fn block_written(&mut self, block: &BlockRef<'_>) -> Result<()> {
        push_block(&mut self.seg, &mut self.covered, block)
    }

    /// What the next block will grow: a private copy of the tree's
    /// growing edge (its end frontier, O(log n) hashes), for the tree
    /// thread to combine a block on without holding the tree
    /// (`Growth::block_written`, then `install`).
    pub(crate) fn growth(&self) -> Growth {
        let s = &self.seg;
        Growth {
            from: s.end.size(),
            seq: s.seq,
            covered: self.covered,
            tail: SegmentTree {
                seq: s.seq,
                first_lsn: s.first_lsn,
                first_leaf: s.first_leaf,
                count: s.count,
                data_len: s.data_len,
                digest: s.digest,
                checkpoints: Vec::new(),
                start: Frontier::new(),
                end: s.end.clone(),
                nodes: Vec::new(),
                groups: Vec::new(),
            },
        }
    }

    /// Add what `g` grew, if the tree is still where `g` was taken (else
    /// someone applied the block meanwhile, or something else: nothing
    /// changes, and `false`). O(what the block added), no hashing.
    pub(crate) fn install(&mut self, g: Growth) -> bool {
        if g.from != self.seg.end.size() || g.seq != self.seg.seq {
            return false;
        }
        let (s, t) = (&mut self.seg, g.tail);
        s.end = t.end;
        s.count = t.count;
        if s.nodes.len() < t.nodes.len() {
            s.nodes.resize_with(t.nodes.len(), Vec::new);
        }
        for (level, added) in t.nodes.into_iter().enumerate() {
            s.nodes[level].extend(added);
        }
        s.groups.extend(t.groups);
        s.checkpoints.extend(t.checkpoints);
        self.covered = g.covered;
        true
    }

    /// A block written to the log could not be added (see `short`).
    pub(crate) fn block_lost(&mut self) {
        self.short = true;
    }

    /// Store the active segment's share as it stands (after a checkpoint,
    /// at a seal and at close), so that proofs made meanwhile hash only
    /// the events written since. `meta` is the active segment's, as
    /// written. Derived, not synced.
    pub(crate) fn store_share(&mut self, meta: &SegmentMeta) {
        let Some((path, bytes)) = self.share_file(meta) else {
            return;
        };
        let stored = segtree::write_tmp(&path, &bytes).and_then(|tmp| std::fs::rename(tmp, &path));
        if let Err(e) = stored {
            share_not_stored(&e, meta);
        }
    }

    /// `store_share`'s file: its path and bytes, or `None` if the share
    /// is not `meta`'s as written (or the tree is short).
    pub(crate) fn share_file(&mut self, meta: &SegmentMeta) -> Option<(PathBuf, Vec<u8>)> {
        if self.short || meta.seq != self.seg.seq || meta.count != self.seg.count {
            return None;
        }
        self.seg.data_len = meta.data_len;
        self.seg.digest = meta.digest;
        Some((segtree::path_of(meta), self.seg.encode()))
    }

    /// Sign the tree as it stands and return the record to append. The
    /// caller then remembers it (`TreeWorker::remember`) once every event
    /// it covers is durable: before that, a crash could leave the state
    /// file naming a tree the log no longer holds.
    pub(crate) fn sign_checkpoint(&mut self) -> Result<TreeCheckpoint> {
        let Some(cfg) = &self.signing else {
            return Err(Error::InvalidArgument("no signing key".into()));
        };
        if self.short {
            return Err(Error::InvalidArgument(
                "a block never reached the Merkle tree (it could not be read back from its segment): nothing is signed until the log is reopened".into(),
            ));
        }
        let (size, root) = (self.size(), self.root());
        let note = Checkpoint::new(cfg.key.name(), size, root)
            .sign(&cfg.key)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(TreeCheckpoint {
            tree_size: size,
            root: root.to_hex(),
            signed_at: now_micros(),
            note,
        })
    }
}

/// A tree file could not be stored: it is rebuilt when needed.
pub(crate) fn share_not_stored(e: &std::io::Error, meta: &SegmentMeta) {
    tracing::warn!(error = %e, segment = %meta.name, "could not store the segment's tree file; it is rebuilt when needed");
}

/// The wall clock as µs.
fn now_micros() -> Micros {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// One written block, as the tree takes it (`TreeKeeper::block_written`).
pub(crate) struct BlockRef<'a> {
    pub block_start: u64,
    pub first_lsn: u64,
    /// The event frames (without the commit record); unused if `leaves`.
    pub frames: &'a [u8],
    /// The events' leaf hashes, if the producers computed them.
    pub leaves: Option<&'a [TreeHash]>,
    /// The block is a checkpoint event alone.
    pub is_checkpoint: bool,
}

/// Push a block's leaves onto a share (the tree's, or a `Growth`'s tail:
/// the same code, so both grow the same nodes, groups and checkpoints).
fn push_block(seg: &mut SegmentTree, covered: &mut u64, b: &BlockRef<'_>) -> Result<()> {
    if b.is_checkpoint {
        seg.checkpoints.push((seg.end.size(), b.block_start));
        *covered = seg.end.size() + 1;
    }
    if let Some(leaves) = b.leaves {
        // Hashed by the producers, over the same bytes.
        for l in leaves {
            seg.push_leaf(b.block_start, b.first_lsn, *l)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        return Ok(());
    }
    let frames = b.frames;
    let mut pos = 0usize;
    while let Some((_, size)) = peek_frame(&frames[pos..]) {
        let payload = &frames[pos + FRAME_HEADER + 1..pos + size];
        seg.push_leaf(b.block_start, b.first_lsn, leaf_hash(payload))
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        pos += size;
    }
    Ok(())
}

/// A block combined away from the tree (`TreeKeeper::growth`): the tree
/// thread hashes without holding the tree's lock, so that the writer,
/// which takes it at every checkpoint, never waits behind a preempted
/// background thread in the middle of a block (docs/proofs.md, "Who
/// hashes what").
pub(crate) struct Growth {
    /// The tree's size and active segment when it was taken.
    from: u64,
    seq: u64,
    covered: u64,
    /// Starts as the share's end and count with nothing else; collects
    /// the nodes, groups and checkpoints the block adds.
    tail: SegmentTree,
}

impl Growth {
    /// `TreeKeeper::block_written`, on the private copy.
    pub(crate) fn block_written(&mut self, block: &BlockRef<'_>) -> Result<()> {
        push_block(&mut self.tail, &mut self.covered, block)
    }
}

/// The active segment's share (or, with none, an empty share after the
/// newest sealed one).
fn share_of_active(
    tree: &mut LogTree,
    segments: &[SegmentMeta],
    active: Option<&SegmentMeta>,
) -> Result<SegmentTree> {
    let n = segments.len();
    match (active, n) {
        (Some(_), _) => Ok((*tree.tree(n - 1)?).clone()),
        (None, 0) => {
            let mut t = SegmentTree::empty(&SegmentMeta::placeholder(), tree.base().clone());
            t.first_leaf = tree.base().size();
            Ok(t)
        }
        (None, _) => {
            let end = tree.frontier_after(n - 1)?;
            let last = &segments[n - 1];
            Ok(SegmentTree::empty(last, end))
        }
    }
}

/// A segment's meta in `dir`, with no events (tests).
#[cfg(test)]
pub(crate) fn tests_meta(dir: &Path) -> SegmentMeta {
    SegmentMeta {
        seq: 1,
        name: "00000001.seg".into(),
        path: dir.join("00000001.seg"),
        ..SegmentMeta::placeholder()
    }
}

/// What the key signed last: its state file, else the newest checkpoint
/// in the log that the key's signature verifies.
fn last_signed(tree: &mut LogTree, cfg: &CheckpointConfig) -> Result<Option<SignedState>> {
    if let Some(path) = &cfg.state {
        if let Some(s) = load_state(path, &cfg.key)? {
            return Ok(Some(s));
        }
    }
    let Some(c) = tree.newest_checkpoint()? else {
        return Ok(None);
    };
    match checkpoint::open(&c.record.note, &cfg.key.verifier()) {
        Ok(cp) => Ok(Some(SignedState {
            size: cp.size,
            root: cp.root,
        })),
        // Signed by another key (a rotation): nothing this key vouched for.
        Err(_) => Ok(None),
    }
}

/// The tree the writer would continue from must hold `signed.size` leaves
/// whose root is the one signed, computed so that the active share's
/// starting frontier (taken from derived files) is an input of the check:
/// pushing the stored events onto it must reproduce the signed root, or
/// the signed frontier plus the events after it must reproduce it.
fn check_extends(
    tree: &mut LogTree,
    seg: &SegmentTree,
    signed: &SignedState,
) -> std::result::Result<(), ExtendError> {
    let (m, start, end) = (signed.size, seg.start.size(), seg.end.size());
    if m > end {
        return Err(ExtendError::Shorter {
            leaves: end,
            signed: m,
        });
    }
    let push_all =
        |f: &mut Frontier, leaves: Vec<TreeHash>| leaves.into_iter().try_for_each(|l| f.push(l));
    if m >= start {
        let mut f = seg.start.clone();
        let leaves = tree.leaves(start, m)?;
        push_all(&mut f, leaves)?;
        if f.root() != signed.root {
            return Err(ExtendError::OtherRoot { size: m });
        }
        return Ok(());
    }
    let mut nodes = Vec::new();
    let mut at = 0u64;
    for b in (0..64u32).rev().filter(|b| m & (1u64 << b) != 0) {
        nodes.push(tree.subtree(at, b)?);
        at += 1u64 << b;
    }
    let mut f = Frontier::from_parts(m, nodes)?;
    if f.root() != signed.root {
        return Err(ExtendError::OtherRoot { size: m });
    }
    let leaves = tree.leaves(m, start)?;
    push_all(&mut f, leaves)?;
    if f != seg.start {
        return Err(ExtendError::StartDisagrees);
    }
    Ok(())
}

/// Why the log does not (provably) extend the tree a key signed last.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
enum ExtendError {
    #[error("the log's tree has {leaves} leaves, fewer than the {signed} already signed")]
    Shorter { leaves: u64, signed: u64 },
    #[error("the root of the first {size} leaves is not the one signed")]
    OtherRoot { size: u64 },
    #[error("the tree before the active segment disagrees with the events")]
    StartDisagrees,
    /// The leaves or stored subtrees the check needs could not be read.
    #[error(transparent)]
    Read(#[from] Error),
    #[error(transparent)]
    Tree(#[from] crate::tlog::merkle::TreeError),
}

/// A retention record's tree fields (docs/format.md, `Retention`).
pub(crate) struct RetentionTree {
    pub size: u64,
    pub frontier: Vec<String>,
    pub note: String,
    pub tiles: Vec<Vec<String>>,
}

/// The retention fields for a cut before leaf `cut` (the first kept
/// segment's first leaf): the frontier there, checked against the
/// writer's own tree by a consistency proof, a signed note, and the tile
/// hashes left of the cut (`base_cut`: those the previous cut kept).
pub(crate) fn retention_tree(
    keeper: Option<&TreeKeeper>,
    segments: &[SegmentMeta],
    base: Frontier,
    base_cut: Option<CutTiles>,
    last_gone: usize,
    first_kept_lsn: u64,
    anchor_hex: &str,
) -> Result<RetentionTree> {
    let mut tree = LogTree::new(segments.to_vec(), base, true).with_cut_tiles(base_cut);
    let frontier = tree.frontier_after(last_gone)?;
    let cut = frontier.size();
    let signing = keeper.and_then(|k| k.signing.clone());
    let (keeper_size, keeper_root) = match keeper {
        Some(k) => (k.size(), k.root()),
        None => (0, TreeHash::default()),
    };
    if cut > 0 && cut < keeper_size {
        // The frontier comes from derived files: it must be a prefix of
        // the tree this writer holds.
        let proof = crate::tlog::merkle::consistency_proof(&mut tree, cut, keeper_size)?
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        crate::tlog::merkle::verify_consistency(cut, keeper_size, &proof, &frontier.root(), &keeper_root)
            .map_err(|e| Error::Corrupt {
                segment: "tree".into(),
                offset: 0,
                reason: format!("the tree files before the retention cut do not match the writer's tree ({e}); run `auditlog verify --key`"),
            })?;
    }
    let note = match &signing {
        None => String::new(),
        Some(cfg) => {
            let mut c = Checkpoint::new(cfg.key.name(), cut, frontier.root());
            c.extensions
                .push(format!("auditlog-retention {first_kept_lsn} {anchor_hex}"));
            c.sign(&cfg.key)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?
        }
    };
    let tiles = match cut_tiles(&mut tree, cut)? {
        Some(levels) => CutTiles::new(cut, levels, &frontier)
            .map_err(|e| Error::Corrupt {
                segment: "tree".into(),
                offset: 0,
                reason: format!("the tree files before the retention cut disagree with its frontier ({e}); run `auditlog verify --key`"),
            })?
            .levels()
            .iter()
            .map(|l| l.iter().map(TreeHash::to_hex).collect())
            .collect(),
        None => Vec::new(),
    };
    Ok(RetentionTree {
        size: cut,
        frontier: frontier.nodes().iter().map(TreeHash::to_hex).collect(),
        note,
        tiles,
    })
}

/// The hashes a cut before leaf `cut` keeps for tiles, level 0 first
/// (`tlog::cut_tiles`); `None` when some lie over leaves an earlier
/// retention dropped without keeping them (a format 3 or 4 record).
fn cut_tiles(tree: &mut LogTree, cut: u64) -> Result<Option<Vec<Vec<TreeHash>>>> {
    let dropped = tree.base().size();
    let mut levels = Vec::new();
    for level in 0..kept_counts(cut).len() as u32 {
        let height = level * TILE_HEIGHT;
        let mut hashes = Vec::new();
        let mut starts = kept_starts(cut, level).peekable();
        if level == 0 {
            // Leaves still in the log are read in one pass.
            let first_kept = starts.peek().map_or(cut, |&s| s.max(dropped).min(cut));
            for s in starts.by_ref().take_while(|&s| s < first_kept) {
                match tree.subtree(s, 0) {
                    Ok(h) => hashes.push(h),
                    Err(_) => return Ok(None),
                }
            }
            hashes.extend(tree.leaves(first_kept, cut)?);
        } else {
            for s in starts {
                match tree.subtree(s, height) {
                    Ok(h) => hashes.push(h),
                    Err(_) if s + (1 << height) <= dropped => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        }
        levels.push(hashes);
    }
    Ok(Some(levels))
}
