//! Writing a log's tree as C2SP `tlog-tiles` static files (docs/proofs.md,
//! "Tiles"): the newest (or a chosen) signed checkpoint, the hash tiles of
//! its tree and the entry bundles of its events, into a folder any static
//! web server can serve and tile-based tlog tooling can read.
//!
//! Incremental: full tiles are immutable, so a rerun checks the ones there
//! against the log (their row hash is a stored subtree hash: no event is
//! read) and writes only the new ones; partial tiles are written afresh.
//! Every file goes to a temporary name, is synced, then renamed, and the
//! checkpoint is written last, so a reader never sees a checkpoint whose
//! tiles are not all there.
//!
//! After retention, the tiles that span the cut are made from the hashes
//! the retention record kept (format 5, `tlog::cut_tiles`); tiles wholly
//! over dropped leaves only exist if the folder already holds them.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, IoContext, Result};
use crate::layout::SegmentMeta;
use crate::lock::HeldLock;
use crate::manifest::Manifest;
use crate::tlog::merkle::{leaf_hash, root_at, Subtrees, TreeHash};
use crate::tlog::tiles::{
    decode_tile, encode_tile, row_hash, tiles_of, Tile, TileHashes, FULL_TILE_BYTES, TILE_HEIGHT,
};

use super::logtree::LogTree;
use super::prove::{log_tree, pick_checkpoint};

/// What to write.
#[derive(Debug, Clone)]
pub struct TilesOptions {
    /// The checkpoint to serve, by tree size (default: the newest).
    pub tree_size: Option<u64>,
    /// Write entry bundles (`tile/entries/...`) beside the hash tiles.
    pub entries: bool,
}

impl Default for TilesOptions {
    fn default() -> TilesOptions {
        TilesOptions {
            tree_size: None,
            entries: true,
        }
    }
}

/// What a run wrote, kept and could not write.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TilesReport {
    /// The served checkpoint's tree size and root (base64).
    pub tree_size: u64,
    pub root: String,
    /// Hash tiles written: full ones, and partial ones (rewritten each run).
    pub full_tiles_written: u64,
    pub partial_tiles_written: u64,
    /// Full tiles already there and found equal to the log's hashes.
    pub full_tiles_checked: u64,
    /// Full tiles already there over leaves retention dropped: the log can
    /// no longer check them; kept as they are.
    pub full_tiles_unchecked: u64,
    pub bundles_written: u64,
    /// Full entry bundles already there (not re-read).
    pub bundles_kept: u64,
    /// Bundles not written because an event is longer than a bundle entry
    /// can be (65,535 bytes); their tiles are written.
    pub bundles_too_large: Vec<String>,
    /// Tiles and bundles over leaves retention dropped that the folder
    /// does not hold either: tooling cannot read those parts of the tree.
    pub unavailable: Vec<String>,
    /// Whether `checkpoint` was written: not when a partial tile of this
    /// tree size could not be (its leaves were dropped by retention and the
    /// folder lacks the full tiles below it), as a checkpoint must not be
    /// served without the tiles that give its root.
    pub checkpoint_written: bool,
    /// Temporary files of an interrupted run, removed.
    pub temp_files_removed: u64,
    pub bytes_written: u64,
}

/// The lock file in the destination: one writer at a time.
const LOCK_FILE: &str = ".auditlog-tiles.lock";
/// Temporary files: `NAME.tmp-PID-N`, renamed over `NAME`.
const TEMP_MARK: &str = ".tmp-";

/// Write the tiles of the checkpoint `opts.tree_size` (default: the
/// newest) of the log (`manifest`, `segments`) into `dest`.
pub fn write_tiles(
    manifest: &Manifest,
    segments: &[SegmentMeta],
    dest: &Path,
    opts: &TilesOptions,
) -> Result<TilesReport> {
    let mut tree = log_tree(manifest, segments, true)?;
    let cp = pick_checkpoint(&mut tree, opts.tree_size)?;
    let root = cp
        .record
        .parsed()
        .map(|c| c.root)
        .ok_or_else(|| Error::InvalidArgument("the stored checkpoint does not parse".into()))?;
    fs::create_dir_all(dest).ctx(|| format!("creating {}", dest.display()))?;
    let _lock = lock(dest)?;
    let mut w = TileWriter {
        dest: dest.to_path_buf(),
        tree: &mut tree,
        entries: opts.entries,
        report: TilesReport {
            tree_size: cp.record.tree_size,
            root: root.to_base64(),
            ..TilesReport::default()
        },
        partials: TileHashes::default(),
        partial_missing: false,
    };
    w.report.temp_files_removed = remove_temps(dest)?;
    for tile in tiles_of(cp.record.tree_size) {
        w.tile(tile)?;
    }
    if w.partial_missing {
        return Ok(w.report);
    }
    check_root(&mut w.partials, cp.record.tree_size, &root, dest)?;
    let n = write_atomic(&dest.join("checkpoint"), cp.record.note.as_bytes())?;
    w.report.bytes_written += n;
    w.report.checkpoint_written = true;
    Ok(w.report)
}

/// The partial tiles of a size alone give its root: it must be the one the
/// checkpoint signs.
fn check_root(partials: &mut TileHashes, size: u64, root: &TreeHash, dest: &Path) -> Result<()> {
    let got = root_at(partials, size).map_err(|e| {
        Error::InvalidArgument(format!("the tiles written do not give the root: {e}"))
    })?;
    if got != *root {
        return Err(corrupt(format!(
                "the tiles give the root {got}, the checkpoint of {} leaves signs {root}: the log or its tree files changed (run `auditlog verify --key`), or {} holds changed tiles over leaves retention dropped",
                size,
                dest.display()
            )));
    }
    Ok(())
}

struct TileWriter<'a> {
    dest: PathBuf,
    tree: &'a mut LogTree,
    entries: bool,
    report: TilesReport,
    /// The partial tiles written: they alone give the root.
    partials: TileHashes,
    /// A partial tile could not be written (retention dropped its leaves).
    partial_missing: bool,
}

/// A tile's hashes and, for level 0, its entry bundle (`None` when an
/// event is too long for one, or was dropped).
struct Computed {
    hashes: Vec<TreeHash>,
    bundle: Option<Vec<u8>>,
    /// Some of its leaves were dropped by retention: its hashes are those
    /// the cut kept, its events are gone.
    dropped: bool,
}

impl TileWriter<'_> {
    fn tile(&mut self, tile: Tile) -> Result<()> {
        let path = self.dest.join(tile.path());
        let bundle_path = self.dest.join(tile.entries_path());
        let want_bundle = self.entries && tile.level == 0;
        if tile.is_full() && path.exists() {
            self.check_existing(tile, &path)?;
            if want_bundle && bundle_path.exists() {
                self.report.bundles_kept += 1;
            } else if want_bundle {
                match self.compute(tile, true)? {
                    Some(c) => self.write_bundle(tile, &bundle_path, c)?,
                    None => self.report.unavailable.push(tile.entries_path()),
                }
            }
            return self.drop_partials(tile);
        }
        let Some(c) = self.compute(tile, want_bundle)? else {
            self.report.unavailable.push(tile.path());
            if want_bundle && !bundle_path.exists() {
                self.report.unavailable.push(tile.entries_path());
            }
            self.partial_missing |= !tile.is_full();
            return Ok(());
        };
        if tile.is_full() {
            self.check_row(tile, &c.hashes)?;
        }
        self.report.bytes_written += write_atomic(&path, &encode_tile(&c.hashes))?;
        let hashes = c.hashes.clone();
        if want_bundle {
            self.write_bundle(tile, &bundle_path, c)?;
        }
        if tile.is_full() {
            self.report.full_tiles_written += 1;
            self.drop_partials(tile)
        } else {
            self.report.partial_tiles_written += 1;
            self.partials.insert(tile, hashes);
            Ok(())
        }
    }

    /// The hashes of `tile` from the log, `None` if retention dropped
    /// leaves it needs.
    fn compute(&mut self, tile: Tile, bundle: bool) -> Result<Option<Computed>> {
        let (start, end) = tile.leaf_range();
        let dropped = start < self.tree.base().size();
        if tile.level == 0 {
            // Leaves left of the cut: the hashes it kept (the tile that
            // spans it), or none.
            let kept_from = self.tree.base().size().clamp(start, end);
            let mut hashes = Vec::with_capacity(tile.width as usize);
            for leaf in start..kept_from {
                match self.tree.subtree(leaf, 0) {
                    Ok(h) => hashes.push(h),
                    Err(_) => return Ok(None),
                }
            }
            let mut data = (bundle && !dropped).then(Vec::new);
            self.tree.each_record(kept_from, end, |_, payload| {
                hashes.push(leaf_hash(payload));
                data = data.take().and_then(|mut d| {
                    let len = u16::try_from(payload.len()).ok()?;
                    d.extend_from_slice(&len.to_be_bytes());
                    d.extend_from_slice(payload);
                    Some(d)
                });
            })?;
            return Ok(Some(Computed {
                hashes,
                bundle: data,
                dropped,
            }));
        }
        let height = tile.height();
        let first = tile.first_hash();
        let mut hashes = Vec::with_capacity(tile.width as usize);
        for k in first..first + tile.width {
            match self.tree.subtree(k << height, height) {
                Ok(h) => hashes.push(h),
                Err(_) if dropped => match self.row_below(tile.level - 1, k)? {
                    Some(h) => hashes.push(h),
                    None => return Ok(None),
                },
                Err(e) => return Err(e),
            }
        }
        Ok(Some(Computed {
            hashes,
            bundle: None,
            dropped,
        }))
    }

    /// Over leaves retention dropped, the log has only its frontier: the
    /// hash is the row hash of full tile `index` of `level`, if the folder
    /// holds it (written before the retention; the root check at the end
    /// authenticates what it gives).
    fn row_below(&mut self, level: u8, index: u64) -> Result<Option<TreeHash>> {
        let below = Tile {
            level,
            index,
            width: crate::tlog::tiles::TILE_WIDTH,
        };
        let path = self.dest.join(below.path());
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        };
        Ok(decode_tile(&bytes)
            .filter(|_| bytes.len() == FULL_TILE_BYTES)
            .map(|h| row_hash(&h)))
    }

    /// A full tile's row hash must be the log's subtree one level up (when
    /// the log still has it).
    fn check_row(&mut self, tile: Tile, hashes: &[TreeHash]) -> Result<()> {
        let (start, _) = tile.leaf_range();
        let want = match self.tree.subtree(start, tile.height() + TILE_HEIGHT) {
            Ok(h) => h,
            Err(_) if start < self.tree.base().size() => return Ok(()),
            Err(e) => return Err(e),
        };
        if row_hash(hashes) != want {
            return Err(corrupt(format!(
                "{}: the hashes computed from the events do not give the stored subtree hash {want}: the log or its tree files changed; run `auditlog verify --key`",
                tile.path()
            )));
        }
        Ok(())
    }

    /// A full tile already in the folder: kept if it is what the log gives,
    /// refused (never rewritten) if not.
    fn check_existing(&mut self, tile: Tile, path: &Path) -> Result<()> {
        let bytes = fs::read(path).ctx(|| format!("reading {}", path.display()))?;
        let refuse = |why: String| {
            Error::InvalidArgument(format!(
                "{} is already in {} and {why}: full tiles are immutable, so it is not rewritten. It belongs to another log or tree, or was damaged: serve this log's tiles from a new folder (or remove that file if you know it is damage)",
                tile.path(),
                self.dest.display()
            ))
        };
        let hashes = match decode_tile(&bytes) {
            Some(h) if bytes.len() == FULL_TILE_BYTES => h,
            _ => {
                return Err(refuse(format!(
                    "holds {} bytes, not a full tile's {FULL_TILE_BYTES}",
                    bytes.len()
                )))
            }
        };
        let (start, _) = tile.leaf_range();
        match self.tree.subtree(start, tile.height() + TILE_HEIGHT) {
            Ok(want) if row_hash(&hashes) == want => self.report.full_tiles_checked += 1,
            Ok(want) => {
                return Err(refuse(format!(
                    "its hashes do not give this log's subtree hash {want}"
                )))
            }
            Err(_) if start < self.tree.base().size() => self.report.full_tiles_unchecked += 1,
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// A level-0 tile's bundle: written, or named as too large, or (over
    /// dropped events) named as unavailable unless the folder has it.
    fn write_bundle(&mut self, tile: Tile, path: &Path, c: Computed) -> Result<()> {
        match c.bundle {
            Some(b) => {
                self.report.bytes_written += write_atomic(path, &b)?;
                self.report.bundles_written += 1;
            }
            None if c.dropped && path.exists() => self.report.bundles_kept += 1,
            None if c.dropped => self.report.unavailable.push(tile.entries_path()),
            None => self.report.bundles_too_large.push(tile.entries_path()),
        }
        Ok(())
    }

    /// Once a full tile is there, its partial versions may go (the spec
    /// allows it; clients fall back to the full tile).
    fn drop_partials(&mut self, tile: Tile) -> Result<()> {
        for dir in [tile.partial_dir(), tile.entries_partial_dir()] {
            let dir = self.dest.join(dir);
            if dir.is_dir() {
                fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))?;
            }
        }
        Ok(())
    }
}

fn corrupt(reason: String) -> Error {
    Error::Corrupt {
        segment: "tree".into(),
        offset: 0,
        reason,
    }
}

/// Hold the destination's lock: two runs into one folder would remove
/// each other's temporary files.
fn lock(dest: &Path) -> Result<HeldLock> {
    let path = dest.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ctx(|| format!("opening {}", path.display()))?;
    fs2::FileExt::try_lock_exclusive(&file).map_err(|_| Error::Locked {
        dir: dest.to_path_buf(),
        holder: "another `auditlog tiles` run".into(),
    })?;
    Ok(HeldLock::from_locked(file))
}

/// Write `bytes` to `path` through a synced temporary file and a rename;
/// returns the bytes written.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<u64> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        "{name}{TEMP_MARK}{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_data()))
        .and_then(|_| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.ctx(|| format!("writing {}", path.display()))?;
    Ok(bytes.len() as u64)
}

/// Remove the temporary files an interrupted run left (under `tile/`, and
/// the checkpoint's).
fn remove_temps(dest: &Path) -> Result<u64> {
    let mut removed = 0;
    let mut stack = vec![dest.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx(|| format!("reading {}", dir.display())),
        };
        for entry in rd {
            let entry = entry.ctx(|| format!("reading {}", dir.display()))?;
            let path = entry.path();
            let top_level = dir == dest;
            let kind = entry
                .file_type()
                .ctx(|| format!("reading {}", path.display()))?;
            if kind.is_dir() && (!top_level || entry.file_name() == "tile") {
                stack.push(path);
            } else if kind.is_file() && entry.file_name().to_string_lossy().contains(TEMP_MARK) {
                fs::remove_file(&path).ctx(|| format!("removing {}", path.display()))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
