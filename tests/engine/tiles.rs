//! The tree as C2SP tlog-tiles static files (docs/proofs.md, "Tiles"):
//! the files of a tree of 1, 255, 256, 257 and 65,537 leaves hold its
//! hashes (level 0 from the stored events, every level from the one below,
//! the root from the leaves, the bundles hashing to level 0); a rerun
//! writes only what is new and never rewrites a full tile; a run cut short
//! is finished by the next; retention keeps an old folder whole and leaves
//! a new one without the dropped leaves' tiles, named in the report; a
//! log being written serves its newest checkpoint.

use std::path::Path;

use auditlog::tlog::merkle::{leaf_hash, Frontier, TreeHash};
use auditlog::tlog::tiles::{decode_tile, row_hash, tiles_of, Tile, TILE_WIDTH};
use auditlog::tree::TilesOptions;
use auditlog::{Config, Log, LogReader};

use crate::support::*;

fn signed() -> SignedLog {
    SignedLog::new("auditlog.test/tiles")
}

/// Append events `from..from + n` of UTC day `day`, in batches of 1000.
fn write(log: &Log, from: u64, n: u64, day: i64) -> u64 {
    let mut i = from;
    while i < from + n {
        let batch: Vec<_> = (i..(i + 1000).min(from + n))
            .map(|k| ev(k, DAY0 + day * DAY_US + k as i64 * 1000))
            .collect();
        log.append_batch(&batch).unwrap().wait().unwrap();
        i += batch.len() as u64;
    }
    i
}

/// A signed log whose newest checkpoint covers exactly `n` leaves.
fn log_of(n: u64) -> SignedLog {
    let s = signed();
    let log = Log::open(s.config()).unwrap();
    write(&log, 0, n, 0);
    log.close().unwrap();
    s
}

fn read_tile(dest: &Path, tile: Tile) -> Vec<TreeHash> {
    let path = dest.join(tile.path());
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hashes = decode_tile(&bytes).unwrap();
    assert_eq!(hashes.len() as u64, tile.width, "{}", tile.path());
    hashes
}

fn read_bundle(dest: &Path, tile: Tile) -> Vec<Vec<u8>> {
    let mut b = &std::fs::read(dest.join(tile.entries_path())).unwrap()[..];
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = u16::from_be_bytes([b[0], b[1]]) as usize;
        out.push(b[2..2 + n].to_vec());
        b = &b[2 + n..];
    }
    out
}

/// The tree of `size` leaves as `dest` holds it: every level-0 hash is
/// the hash of the stored event (its bundle entry, which is the record
/// `prove` hands out), every hash above is the row hash of the full tile
/// below, and the leaves give the checkpoint's root.
fn check_folder(s: &SignedLog, dest: &Path, size: u64) {
    let reader = LogReader::open(&s.dir).unwrap();
    let cp = reader
        .checkpoints()
        .unwrap()
        .into_iter()
        .find(|c| c.record.tree_size == size)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("checkpoint")).unwrap(),
        cp.record.note
    );
    let mut leaves = Frontier::new();
    let mut below: Vec<Vec<TreeHash>> = Vec::new();
    let mut level = 0;
    let mut this: Vec<Vec<TreeHash>> = Vec::new();
    for tile in tiles_of(size) {
        if tile.level != level {
            below = std::mem::take(&mut this);
            level = tile.level;
        }
        let hashes = read_tile(dest, tile);
        if tile.level == 0 {
            let entries = read_bundle(dest, tile);
            assert_eq!(entries.len(), hashes.len());
            for (k, (e, h)) in entries.iter().zip(&hashes).enumerate() {
                assert_eq!(leaf_hash(e), *h, "leaf {}", tile.first_hash() + k as u64);
                leaves.push(*h).unwrap();
            }
        } else {
            for (k, h) in hashes.iter().enumerate() {
                let child = &below[tile.first_hash() as usize + k];
                assert_eq!(row_hash(child), *h, "{} hash {k}", tile.path());
            }
        }
        this.push(hashes);
    }
    assert_eq!(leaves.size(), size);
    assert_eq!(leaves.root(), cp.record.parsed().unwrap().root);
    // Some records against `prove`'s.
    for leaf in [0, size / 2, size.saturating_sub(1)] {
        if leaf >= size {
            continue;
        }
        let p = reader.prove_inclusion(leaf, Some(size)).unwrap();
        let tile = tiles_of(size)
            .find(|t| t.level == 0 && t.index == leaf / TILE_WIDTH)
            .unwrap();
        use base64::Engine as _;
        let want = base64::engine::general_purpose::STANDARD
            .decode(&p.record)
            .unwrap();
        assert_eq!(read_bundle(dest, tile)[(leaf % TILE_WIDTH) as usize], want);
    }
}

/// Every file under `dest`, relative, sorted (the lock file left out).
fn files(dest: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dest, dest, &mut out);
    out.retain(|f| f != ".auditlog-tiles.lock");
    out.sort();
    out
}

fn expected_files(size: u64) -> Vec<String> {
    let mut out = vec!["checkpoint".to_string()];
    for t in tiles_of(size) {
        out.push(t.path());
        if t.level == 0 {
            out.push(t.entries_path());
        }
    }
    out.sort();
    out
}

#[test]
fn tiles_of_small_trees_hold_the_tree() {
    for n in [1u64, 255, 256, 257] {
        let s = log_of(n);
        let dest = s.beside("tiles");
        let r = s.tiles(&dest).unwrap();
        assert_eq!(r.tree_size, n);
        assert!(r.unavailable.is_empty() && r.bundles_too_large.is_empty());
        assert_eq!(files(&dest), expected_files(n), "{n}");
        check_folder(&s, &dest, n);
    }
}

#[test]
fn tiles_at_the_level_1_edge_hold_the_tree() {
    // 65,536 + 1 leaves: a full level-1 tile, a level-2 tile of width 1.
    let n = 65_537;
    let s = log_of(n);
    let dest = s.beside("tiles");
    let r = s.tiles(&dest).unwrap();
    assert_eq!(r.full_tiles_written, 256 + 1);
    assert_eq!(r.partial_tiles_written, 2);
    assert_eq!(r.bundles_written, 257);
    assert!(dest.join("tile/1/000").is_file());
    assert!(dest.join("tile/2/000.p/1").is_file());
    assert!(dest.join("tile/0/256.p/1").is_file());
    assert_eq!(files(&dest), expected_files(n));
    check_folder(&s, &dest, n);
}

#[test]
fn a_log_with_no_checkpoint_or_an_unknown_size_is_refused() {
    let (_t, dir) = scratch();
    let log = Log::open(Config::new(&dir)).unwrap();
    write(&log, 0, 10, 0);
    log.close().unwrap();
    let dest = _t.path().join("tiles");
    let err = LogReader::open(&dir)
        .unwrap()
        .write_tiles(&dest, &TilesOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("no signed checkpoint"), "{err}");
    let s = log_of(10);
    let opts = TilesOptions {
        tree_size: Some(7),
        entries: true,
    };
    let err = LogReader::open(&s.dir)
        .unwrap()
        .write_tiles(&s.beside("tiles"), &opts)
        .unwrap_err();
    assert!(err.to_string().contains("tree size 7"), "{err}");
    assert!(!s.beside("tiles").join("checkpoint").exists());
}

#[test]
fn a_rerun_writes_only_what_is_new_and_replaces_partial_tiles() {
    let s = signed();
    let log = Log::open(s.config()).unwrap();
    write(&log, 0, 300, 0);
    log.close().unwrap();
    let dest = s.beside("tiles");
    let first = s.tiles(&dest).unwrap();
    assert_eq!(
        (first.full_tiles_written, first.partial_tiles_written),
        (1, 2)
    );
    let tile0 = dest.join("tile/0/000");
    let written_at = std::fs::metadata(&tile0).unwrap().modified().unwrap();
    assert!(dest.join("tile/0/001.p/44").is_file());

    // 300 events and the close checkpoint, then 213 more: 514 leaves.
    let log = Log::open(s.config()).unwrap();
    write(&log, 300, 213, 0);
    log.close().unwrap();
    let again = s.tiles(&dest).unwrap();
    assert_eq!(again.tree_size, 514);
    assert_eq!(again.full_tiles_checked, 1);
    assert_eq!(again.full_tiles_written, 1);
    assert_eq!(again.partial_tiles_written, 2);
    assert_eq!((again.bundles_kept, again.bundles_written), (1, 2));
    assert_eq!(
        std::fs::metadata(&tile0).unwrap().modified().unwrap(),
        written_at,
        "a full tile was rewritten"
    );
    // Tile 1 is full now: its partial versions went; the old level-1
    // partial of width 1 stays beside the new one of width 2 (the older
    // checkpoint still needs it).
    assert!(!dest.join("tile/0/001.p").exists());
    assert!(!dest.join("tile/entries/001.p").exists());
    assert!(dest.join("tile/1/000.p/1").is_file());
    assert!(dest.join("tile/1/000.p/2").is_file());
    check_folder(&s, &dest, 514);

    // Nothing new: nothing but the partial tiles and checkpoint written.
    let same = s.tiles(&dest).unwrap();
    assert_eq!(same.full_tiles_written, 0);
    assert_eq!(same.full_tiles_checked, 2);
}

#[test]
fn a_full_tile_that_differs_is_refused_not_rewritten() {
    let s = log_of(600);
    let dest = s.beside("tiles");
    s.tiles(&dest).unwrap();
    let tile = dest.join("tile/0/001");
    let mut bytes = std::fs::read(&tile).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&tile, &bytes).unwrap();
    let err = s.tiles(&dest).unwrap_err().to_string();
    assert!(
        err.contains("tile/0/001") && err.contains("immutable"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&tile).unwrap(),
        bytes,
        "the tile was rewritten"
    );
    // A truncated one too.
    std::fs::write(&tile, &bytes[..100]).unwrap();
    let err = s.tiles(&dest).unwrap_err().to_string();
    assert!(err.contains("100 bytes"), "{err}");
    // Another log's folder: its first full tile differs.
    std::fs::remove_file(&tile).unwrap();
    let other = signed();
    let log = Log::open(other.config()).unwrap();
    write(&log, 0, 600, 1);
    log.close().unwrap();
    let err = other.tiles(&dest).unwrap_err().to_string();
    assert!(err.contains("tile/0/000"), "{err}");
}

#[test]
fn a_run_cut_short_is_finished_by_the_next() {
    let s = log_of(700);
    let dest = s.beside("tiles");
    s.tiles(&dest).unwrap();
    // As a crash would leave it: temporary files, a full tile, a bundle
    // and the checkpoint not renamed into place yet.
    std::fs::rename(dest.join("tile/0/001"), dest.join("tile/0/001.tmp-99999-3")).unwrap();
    std::fs::rename(
        dest.join("tile/entries/001"),
        dest.join("tile/entries/001.tmp-99999-4"),
    )
    .unwrap();
    std::fs::rename(dest.join("checkpoint"), dest.join("checkpoint.tmp-99999-9")).unwrap();
    std::fs::write(dest.join("tile/1/000.p/2.tmp-99999-5"), b"half").unwrap();
    let r = s.tiles(&dest).unwrap();
    assert_eq!(r.temp_files_removed, 4);
    assert_eq!(r.full_tiles_written, 1);
    assert_eq!(r.full_tiles_checked, 1);
    assert_eq!(files(&dest), expected_files(700));
    check_folder(&s, &dest, 700);
}

#[test]
fn retention_keeps_an_old_folder_whole_and_a_new_one_names_what_it_lacks() {
    let s = signed();
    let log = Log::open(s.small_config()).unwrap();
    let mut n = 0;
    for day in 0..3 {
        n = write(&log, n, 700, day);
    }
    log.seal().unwrap();
    let old = s.beside("tiles");
    let before = s.tiles(&old).unwrap();
    assert!(before.unavailable.is_empty());
    let r = log.retain(DAY0 + DAY_US).unwrap();
    assert!(!r.dropped.is_empty());
    write(&log, n, 100, 2);
    log.close().unwrap();
    let reader = LogReader::open(&s.dir).unwrap();
    let first_kept = reader.first_lsn();
    let size = reader
        .checkpoints()
        .unwrap()
        .last()
        .unwrap()
        .record
        .tree_size;
    assert!(
        first_kept > 256,
        "retention dropped too little: {first_kept}"
    );

    // The old folder keeps the tiles over the dropped leaves and gets the
    // new ones. Those inside the level-1 tile spanning the cut are checked
    // against the hashes the retention record kept (format 5).
    let rerun = s.tiles(&old).unwrap();
    assert!(rerun.unavailable.is_empty(), "{:?}", rerun.unavailable);
    assert_eq!(rerun.full_tiles_unchecked, 0);
    assert!(rerun.full_tiles_checked > first_kept / 256);
    // Everything but the dropped leaves' events can be checked against the
    // log; the folder as a whole is one tree with the signed root.
    let mut leaves = Frontier::new();
    for tile in tiles_of(size).filter(|t| t.level == 0) {
        for h in read_tile(&old, tile) {
            leaves.push(h).unwrap();
        }
    }
    let cp = reader.checkpoints().unwrap().pop().unwrap();
    assert_eq!(leaves.root(), cp.record.parsed().unwrap().root);
    // A changed one is refused against the kept hash, not rewritten.
    let kept = old.join("tile/0/000");
    let good = std::fs::read(&kept).unwrap();
    let mut bad = good.clone();
    bad[7] ^= 1;
    std::fs::write(&kept, &bad).unwrap();
    let err = s.tiles(&old).unwrap_err().to_string();
    assert!(err.contains("is already in"), "{err}");
    std::fs::write(&kept, &good).unwrap();
    assert!(s.tiles(&old).unwrap().checkpoint_written);

    // A new folder cannot have the level-0 tiles wholly over dropped
    // leaves, nor the bundles of dropped events: the report names them.
    // The tiles spanning the cut are made from the hashes the retention
    // record kept, so the checkpoint is served (tiles_retention.rs checks
    // such folders in full).
    let new = s.beside("tiles-new");
    let fresh = s.tiles(&new).unwrap();
    let level0: Vec<_> = fresh
        .unavailable
        .iter()
        .filter(|p| p.starts_with("tile/0/"))
        .collect();
    assert_eq!(
        level0.len() as u64,
        first_kept / 256,
        "{:?}",
        fresh.unavailable
    );
    let bundles = fresh
        .unavailable
        .iter()
        .filter(|p| p.starts_with("tile/entries/"))
        .count() as u64;
    assert_eq!(bundles, first_kept.div_ceil(256), "{:?}", fresh.unavailable);
    for p in &fresh.unavailable {
        assert!(!new.join(p).exists(), "{p}");
    }
    assert!(fresh.checkpoint_written);
    assert!(new.join("checkpoint").exists());
    assert!(rerun.checkpoint_written);
    for f in files(&new) {
        assert_eq!(
            std::fs::read(new.join(&f)).unwrap(),
            std::fs::read(old.join(&f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn an_event_too_long_for_a_bundle_leaves_only_its_bundle_out() {
    let s = signed();
    let log = Log::open(s.config()).unwrap();
    write(&log, 0, 300, 0);
    let big = finished("ev-0", DAY0 + 1, &"x".repeat(70_000));
    log.append_batch(&[big]).unwrap().wait().unwrap();
    write(&log, 301, 10, 0);
    log.close().unwrap();
    let dest = s.beside("tiles");
    let r = s.tiles(&dest).unwrap();
    assert_eq!(
        r.bundles_too_large,
        vec!["tile/entries/001.p/55".to_string()]
    );
    assert!(dest.join("tile/0/001.p/55").is_file());
    assert!(!dest.join("tile/entries/001.p/55").exists());
    assert!(dest.join("tile/entries/000").is_file());
}

#[test]
fn tiles_of_a_log_being_written_serve_its_newest_checkpoint() {
    let s = signed();
    let log = Log::open(s.config()).unwrap();
    write(&log, 0, 600, 0);
    log.seal().unwrap(); // signs the checkpoint of 600 leaves
    write(&log, 600, 100, 1); // not signed yet
    let dest = s.beside("tiles");
    let r = s.tiles(&dest).unwrap();
    assert_eq!(r.tree_size, 600);
    check_folder(&s, &dest, 600);
    log.close().unwrap();
    // After the close checkpoint (600 + its own + 100 events).
    let r = s.tiles(&dest).unwrap();
    assert_eq!((r.tree_size, r.full_tiles_checked), (701, 2));
    check_folder(&s, &dest, 701);
}
