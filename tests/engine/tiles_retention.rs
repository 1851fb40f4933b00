//! Tiles written only after retention (format 5, docs/proofs.md, "Tiles
//! after retention"): the retention record keeps the hashes of the tiles
//! that span its cut, so a folder first written after one or two cuts
//! (inside a tile, on a tile boundary, across levels 0 and 1; past level 2
//! with AUDITLOG_LONG=1) serves the
//! checkpoint, and every kept leaf is provable from its tiles alone. A
//! changed or missing kept hash is refused, naming the retention record; a
//! log whose retention record is format 4 still opens and retains, and its
//! tiles name the gap as before.

use std::path::{Path, PathBuf};

use auditlog::event::system::SystemRecord;
use auditlog::internals::codec;
use auditlog::internals::frame::REC_EVENT;
use auditlog::internals::manifest::Manifest;
use auditlog::tlog::merkle::{
    consistency_proof, inclusion_proof, root_at, verify_consistency, verify_inclusion,
};
use auditlog::tlog::tiles::{decode_tile, tiles_of, TileHashes};
use auditlog::tree::{TilesOptions, TilesReport};
use auditlog::{EventData, Log, LogReader};

use crate::support::forge;
use crate::support::*;

fn signed() -> SignedLog {
    SignedLog::new("auditlog.test/tiles-retention")
}

/// Write tiles into a fresh folder `name` beside the log.
fn tiles_at(s: &SignedLog, name: &str) -> (PathBuf, TilesReport) {
    let dest = s.beside(name);
    let r = s.tiles(&dest).unwrap();
    (dest, r)
}

/// Append events `from..from + n` on UTC day `day`.
fn write(log: &Log, from: u64, n: u64, day: i64) -> u64 {
    let mut i = from;
    while i < from + n {
        let batch: Vec<_> = (i..(i + 500).min(from + n))
            .map(|k| ev(k, DAY0 + day * DAY_US + k as i64))
            .collect();
        log.append_batch(&batch).unwrap().wait().unwrap();
        i += batch.len() as u64;
    }
    i
}

/// A signed log of one segment per day, `per_day[d]` events on day d,
/// then `retain_days` retentions (each dropping the oldest day), each
/// followed by 50 events on the newest day. Returns the cuts (leaves).
fn log_with_cuts(s: &SignedLog, per_day: &[u64], retain_days: i64, format_4: bool) -> Vec<u64> {
    let mut cfg = s.config();
    cfg.retention_as_format_4 = format_4;
    // A format 4 log's checkpoints cover every event before them.
    cfg.checkpoints_in_place = format_4;
    let log = Log::open(cfg).unwrap();
    let mut n = 0;
    for (day, &k) in per_day.iter().enumerate() {
        n = write(&log, n, k, day as i64);
    }
    let last = per_day.len() as i64 - 1;
    let mut cuts = Vec::new();
    for d in 1..=retain_days {
        let r = log.retain(DAY0 + d * DAY_US).unwrap();
        assert!(!r.dropped.is_empty());
        cuts.push(r.first_kept_lsn);
        n = write(&log, n, 50, last);
    }
    log.close().unwrap();
    cuts
}

/// Events to write on day 0 so that its segment holds `leaves` leaves
/// (the writer adds its own events: checkpoints).
fn day0_events_for(leaves: u64) -> u64 {
    let s = signed();
    let log = Log::open(s.config()).unwrap();
    write(&log, 0, 100, 0);
    write(&log, 100, 1, 1);
    log.close().unwrap();
    let m = Manifest::load(&s.dir).unwrap().unwrap();
    let extra = m.sealed[0].count - 100;
    leaves - extra
}

/// The folder serves the newest checkpoint, and its tiles alone prove
/// every kept leaf and give every kept checkpoint's root: what tile-based
/// tlog tooling reads. Only tiles wholly over dropped leaves (and bundles
/// of dropped events) are missing, and the report names exactly those.
fn check_after_cut(s: &SignedLog, dest: &Path, r: &TilesReport, cut: u64) {
    assert!(r.checkpoint_written, "{r:?}");
    let reader = LogReader::open(&s.dir).unwrap();
    let cps = reader.checkpoints().unwrap();
    let newest = cps.last().unwrap();
    let size = newest.record.tree_size;
    assert_eq!(
        std::fs::read_to_string(dest.join("checkpoint")).unwrap(),
        newest.record.note
    );
    let mut held = TileHashes::default();
    let mut missing = Vec::new();
    for tile in tiles_of(size) {
        let (start, end) = tile.leaf_range();
        match std::fs::read(dest.join(tile.path())) {
            Ok(b) => held.insert(tile, decode_tile(&b).unwrap()),
            Err(_) => {
                assert!(end <= cut, "{} is missing", tile.path());
                missing.push(tile.path());
            }
        }
        if tile.level == 0 && !dest.join(tile.entries_path()).exists() {
            assert!(start < cut, "{} is missing", tile.entries_path());
            missing.push(tile.entries_path());
        }
    }
    let mut named = r.unavailable.clone();
    named.sort();
    missing.sort();
    assert_eq!(named, missing);
    let root = newest.record.parsed().unwrap().root;
    assert_eq!(root_at(&mut held, size).unwrap(), root);
    for cp in cps.iter().filter(|c| c.record.tree_size >= cut) {
        let old = cp.record.tree_size;
        let old_root = cp.record.parsed().unwrap().root;
        assert_eq!(root_at(&mut held, old).unwrap(), old_root, "size {old}");
        let p = consistency_proof(&mut held, old, size).unwrap().unwrap();
        verify_consistency(old, size, &p, &old_root, &root).unwrap();
    }
    for leaf in cut..size {
        let (_, record) = record_of(&reader, leaf);
        let want = auditlog::tlog::merkle::leaf_hash(&record);
        let p = inclusion_proof(&mut held, leaf, size).unwrap().unwrap();
        verify_inclusion(leaf, size, &want, &p, &root)
            .unwrap_or_else(|e| panic!("leaf {leaf}: {e}"));
    }
}

/// The stored bytes of leaf `leaf` (its LSN: these logs have no gaps).
fn record_of(reader: &LogReader, leaf: u64) -> (u64, Vec<u8>) {
    use base64::Engine as _;
    let p = reader.prove_inclusion(leaf, None).unwrap();
    let b = base64::engine::general_purpose::STANDARD
        .decode(&p.record)
        .unwrap();
    (leaf, b)
}

/// The retention records of the log, newest last.
fn retention_records(dir: &Path) -> Vec<auditlog::event::system::Retention> {
    replay_all(dir)
        .into_iter()
        .filter_map(|(_, e)| match e.data {
            EventData::System(r) => match *r {
                SystemRecord::Retention(x) => Some(x),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn tiles_first_written_after_a_cut_inside_a_tile_serve_the_tree() {
    // Cut near 700: level 0 keeps 700 % 256 leaf hashes, level 1 two.
    let s = signed();
    let cuts = log_with_cuts(&s, &[700, 300, 200], 1, false);
    let cut = cuts[0];
    assert!(!cut.is_multiple_of(256) && cut > 512, "{cut}");
    let rec = retention_records(&s.dir).pop().unwrap();
    assert_eq!(rec.tree_size, cut);
    let counts: Vec<u64> = rec.tree_tiles.iter().map(|l| l.len() as u64).collect();
    assert_eq!(counts, vec![cut % 256, cut / 256]);
    let (dest, r) = tiles_at(&s, "tiles");
    check_after_cut(&s, &dest, &r, cut);
    // The tile spanning the cut is there, its bundle is not (its first
    // events were dropped); the two full tiles before it are not.
    assert!(r.unavailable.contains(&"tile/entries/002".to_string()));
    assert!(r.unavailable.contains(&"tile/0/000".to_string()));
    assert!(dest.join("tile/0/002").exists());
    s.verify(true).unwrap();
}

#[test]
fn tiles_after_a_cut_on_a_tile_boundary_serve_the_tree() {
    let s = signed();
    let k = day0_events_for(512);
    let cuts = log_with_cuts(&s, &[k, 300], 1, false);
    assert_eq!(cuts, vec![512]);
    let rec = retention_records(&s.dir).pop().unwrap();
    let counts: Vec<usize> = rec.tree_tiles.iter().map(Vec::len).collect();
    assert_eq!(counts, vec![0, 2]);
    let (dest, r) = tiles_at(&s, "tiles");
    check_after_cut(&s, &dest, &r, 512);
    assert!(!r.unavailable.iter().any(|p| p.starts_with("tile/1/")));
    s.verify(true).unwrap();
}

#[test]
fn tiles_after_two_cuts_in_one_level_1_tile_serve_the_tree() {
    // The second cut's level-1 hashes lie partly over leaves the first
    // cut dropped: they come from the first record's kept hashes.
    let s = signed();
    let cuts = log_with_cuts(&s, &[300, 400, 500, 200], 2, false);
    assert!(
        cuts[1] / 65_536 == 0 && cuts[1] / 256 > cuts[0] / 256,
        "{cuts:?}"
    );
    let recs = retention_records(&s.dir);
    assert_eq!(recs.len(), 2);
    assert!(recs.iter().all(|r| !r.tree_tiles.is_empty()));
    let (dest, r) = tiles_at(&s, "tiles");
    check_after_cut(&s, &dest, &r, cuts[1]);
    s.verify(true).unwrap();
    // Reopened and retained again: still complete.
    let log = Log::open(s.config()).unwrap();
    write(&log, 10_000, 10, 3);
    log.close().unwrap();
    let (dest2, r2) = tiles_at(&s, "tiles-2");
    check_after_cut(&s, &dest2, &r2, cuts[1]);
}

/// Rewrite the retention record with `edit` applied (same length: a hex
/// digit changed), the chain recomputed around it.
fn forge_retention(dir: &Path, edit: impl Fn(&mut auditlog::event::system::Retention)) {
    for path in forge::segment_files(dir) {
        forge::rewrite_frames(&path, |frames| {
            for f in frames.iter_mut().filter(|f| f.rec_type == REC_EVENT) {
                let Ok(mut e) = codec::decode_event(&f.payload) else {
                    continue;
                };
                if let EventData::System(r) = &mut e.data {
                    if let SystemRecord::Retention(x) = r.as_mut() {
                        edit(x);
                        let mut out = Vec::new();
                        codec::encode_event(&e, &mut out).unwrap();
                        assert_eq!(out.len(), f.payload.len());
                        f.payload = out;
                    }
                }
            }
        });
    }
    forge::rechain(dir);
}

#[test]
fn a_changed_kept_tile_hash_is_refused_naming_the_retention_record() {
    let s = signed();
    log_with_cuts(&s, &[700, 300], 1, false);
    forge_retention(&s.dir, |r| {
        let h = &mut r.tree_tiles[0][3];
        let flipped = if h.starts_with('0') { "1" } else { "0" };
        h.replace_range(0..1, flipped);
    });
    for key in [false, true] {
        let err = s.verify(key).unwrap_err().to_string();
        assert!(
            err.contains("record.tree_tiles") && err.contains("retention record"),
            "{err}"
        );
    }
    let err = LogReader::open(&s.dir)
        .and_then(|r| r.write_tiles(&s.t.path().join("x"), &TilesOptions::default()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("retention record"), "{err}");
    let err = Log::open(s.config()).err().unwrap().to_string();
    assert!(err.contains("retention record"), "{err}");
}

#[test]
fn a_pending_retention_missing_a_kept_hash_is_refused() {
    let s = signed();
    log_with_cuts(&s, &[700, 300], 1, false);
    let mut rec = retention_records(&s.dir).pop().unwrap();
    rec.tree_tiles[0].pop();
    let mut m = Manifest::load(&s.dir).unwrap().unwrap();
    m.pending = Some(SystemRecord::Retention(rec));
    m.store(&s.dir).unwrap();
    let err = Manifest::load(&s.dir).unwrap_err().to_string();
    assert!(
        err.contains("pending retention record") && err.contains("record.tree_tiles"),
        "{err}"
    );
}

#[test]
fn a_format_4_log_opens_retains_and_its_tiles_name_the_gap() {
    let s = signed();
    let cuts = log_with_cuts(&s, &[700, 300, 200, 100], 1, true);
    assert!(retention_records(&s.dir)[0].tree_tiles.is_empty());
    downgrade_log(&s.dir, 4, "tree_tiles");
    s.verify(true).unwrap();
    // As before format 5: the tile spanning the cut cannot be made.
    let (_, r) = tiles_at(&s, "old");
    assert!(!r.checkpoint_written);
    assert!(
        r.unavailable.iter().any(|p| p.starts_with("tile/0/002")),
        "{r:?}"
    );

    // A new writer opens it (MANIFEST now 6) and retains again; this cut
    // lies in the same level-1 tile as the old one, whose hashes the old
    // record did not keep: the new record keeps none either.
    let log = Log::open(s.config()).unwrap();
    let m = Manifest::load(&s.dir).unwrap().unwrap();
    assert_eq!(m.version, 6, "the writer upgrades the MANIFEST");
    let again = log.retain(DAY0 + 2 * DAY_US).unwrap();
    assert!(!again.dropped.is_empty());
    write(&log, 20_000, 20, 3);
    log.close().unwrap();
    let recs = retention_records(&s.dir);
    assert_eq!(recs.len(), 2);
    assert!(recs[1].tree_tiles.is_empty(), "{:?}", recs[1].tree_tiles);
    s.verify(true).unwrap();
    let (_, r) = tiles_at(&s, "after");
    assert!(!r.checkpoint_written);
    assert!(again.first_kept_lsn > cuts[0]);
}

#[test]
fn tiles_after_a_cut_past_level_2_serve_the_tree() {
    // 66,000 events: the cut keeps hashes at levels 0, 1 and 2. Long in a
    // debug build: AUDITLOG_LONG=1.
    if std::env::var_os("AUDITLOG_LONG").is_none() {
        return;
    }
    let s = signed();
    let cuts = log_with_cuts(&s, &[66_000, 300], 1, false);
    let rec = retention_records(&s.dir).pop().unwrap();
    let counts: Vec<u64> = rec.tree_tiles.iter().map(|l| l.len() as u64).collect();
    let c = cuts[0];
    assert_eq!(counts, vec![c % 256, (c >> 8) % 256, c >> 16]);
    let (dest, r) = tiles_at(&s, "tiles");
    check_after_cut(&s, &dest, &r, c);
    s.verify(true).unwrap();
}
