//! The Merkle tree, checkpoints and proofs (issue 19, docs/proofs.md),
//! through the library: the writer's tree equals one recomputed from the
//! stored bytes; it signs at every seal, at close and at its interval; every
//! event's inclusion proof and every pair of checkpoints' consistency proof
//! check out; the tree survives reopening, retention, lost or damaged tree
//! files, a forged tree file, and a log written with the tree off.

use std::path::Path;
use std::time::Duration;

use auditlog::internals::frame::REC_EVENT;
use auditlog::tlog::merkle::{leaf_hash, Frontier, TreeHash};
use auditlog::tree::segtree::{self, SegmentTree};
use auditlog::{Config, Log, LogReader, VerifyOptions};

use crate::support::forge;
use crate::support::*;

/// A signed log of 64 KiB segments (`SignedLog::small_config`).
fn keyed() -> SignedLog {
    SignedLog::new("auditlog.test/engine")
}

/// `n` events over `days` UTC days, appended in batches of 10; returns
/// the next n.
fn write(log: &Log, from: u64, n: u64, day: i64) -> u64 {
    let mut i = from;
    while i < from + n {
        let batch: Vec<_> = (i..(i + 10).min(from + n))
            .map(|k| ev(k, DAY0 + day * DAY_US + k as i64 * 1000))
            .collect();
        log.append_batch(&batch).unwrap().wait().unwrap();
        i += batch.len() as u64;
    }
    i
}

/// Every stored event payload, in LSN order (the leaves), read from the
/// segment files directly.
fn leaves(dir: &Path) -> Vec<TreeHash> {
    let mut out = Vec::new();
    for path in forge::segment_files(dir) {
        let (fr, _) = forge::frames(&std::fs::read(path).unwrap());
        for x in fr.iter().filter(|x| x.rec_type == REC_EVENT) {
            out.push(leaf_hash(&x.payload));
        }
    }
    out
}

fn roots(leaves: &[TreeHash]) -> Vec<TreeHash> {
    let mut f = Frontier::new();
    let mut out = vec![f.root()];
    for l in leaves {
        f.push(*l).unwrap();
        out.push(f.root());
    }
    out
}

#[test]
fn the_writer_keeps_the_tree_signs_at_seals_and_close_and_every_proof_checks() {
    let k = keyed();
    let log = Log::open(k.small_config()).unwrap();
    let mut n = 0;
    for day in 0..3 {
        n = write(&log, n, 1500, day);
    }
    log.close().unwrap();
    let segs = forge::segment_files(&k.dir);
    assert!(segs.len() >= 4, "rolls by day and by size: {segs:?}");
    let reader = LogReader::open(&k.dir).unwrap();
    for m in reader.segments().iter().filter(|m| m.sealed) {
        assert!(segtree::path_of(m).exists(), "{} has its tree file", m.name);
    }
    let all = leaves(&k.dir);
    let prefix = roots(&all);
    let cps = reader.checkpoints().unwrap();
    // A roll asks the tree's threads for its checkpoint (deferred: its
    // record lands in the next segment), unless one is asked for still;
    // close signs in place.
    assert!(cps.len() >= 2, "checkpoints at the rolls and at close");
    let v = k.key.verifier();
    let mut last = 0;
    for c in &cps {
        let size = c.record.tree_size;
        let opened = auditlog::tlog::checkpoint::open(&c.record.note, &v).unwrap();
        assert_eq!(opened.size, size);
        assert!(
            size <= c.leaf && size > last,
            "sizes grow, each at most its own leaf"
        );
        last = size;
        assert_eq!(opened.root, prefix[size as usize], "root of {size} leaves");
    }
    let newest = cps.last().unwrap();
    assert_eq!(
        (newest.leaf + 1, newest.record.tree_size),
        (all.len() as u64, newest.leaf),
        "the close checkpoint is the last event, signed in place"
    );
    // Every 7th event, and both ends (every event takes ~20 s in a debug
    // build; AUDITLOG_LONG=1 proves them all).
    let step = if std::env::var_os("AUDITLOG_LONG").is_some() {
        1
    } else {
        7
    };
    let picks = (0..newest.leaf).step_by(step).chain([newest.leaf - 1]);
    for lsn in picks {
        let p = reader.prove_inclusion(lsn, None).unwrap();
        let ok = p.check(&v, None).unwrap();
        assert_eq!((ok.lsn, ok.leaf_index), (lsn, lsn));
    }
    // Against an older checkpoint too.
    let old = cps[0].record.tree_size;
    let p = reader.prove_inclusion(3, Some(old)).unwrap();
    assert_eq!(p.tree_size, old);
    p.check(&v, None).unwrap();
    assert!(reader.prove_inclusion(old + 1, Some(old)).is_err());
    for w in cps.windows(2) {
        let (a, b) = (w[0].record.tree_size, w[1].record.tree_size);
        let p = reader.prove_consistency(a, Some(b)).unwrap();
        p.check(&v, None, None).unwrap();
    }
    let r = k.verify(true).unwrap();
    let t = r.tree.unwrap();
    assert_eq!(t.checkpoints_verified, cps.len() as u64);
    assert_eq!((t.tree_size, t.root), (all.len() as u64, prefix[all.len()]));
    assert_eq!((t.unsigned_events, t.tree_files_rebuilt), (0, 0));
}

/// Leaves hashed where the batch was encoded (`EncodedBatch::hash_leaves`,
/// as the command line's ingest does on its parsing threads) make the same
/// tree as leaves hashed by the append: every checkpoint's root is the one
/// recomputed from the stored bytes.
#[test]
fn leaves_hashed_before_the_append_make_the_same_tree() {
    let k = keyed();
    let log = Log::open(k.small_config()).unwrap();
    for (i, chunk) in (0..3000u64).collect::<Vec<_>>().chunks(100).enumerate() {
        let evs: Vec<_> = chunk
            .iter()
            .map(|&n| ev(n, DAY0 + (n as i64 / 1000) * DAY_US + n as i64 * 1000))
            .collect();
        let mut batch = auditlog::EncodedBatch::encode(&evs).unwrap();
        // Every other batch pre-hashed: both paths mix in one tree.
        if i % 2 == 0 {
            batch.hash_leaves();
        }
        log.append_encoded(batch).unwrap().wait().unwrap();
    }
    log.close().unwrap();
    let all = leaves(&k.dir);
    // The events, and the log's own records (checkpoints) among them.
    assert!(all.len() >= 3000, "{} leaves", all.len());
    let prefix = roots(&all);
    let r = k.verify(true).unwrap();
    let t = r.tree.unwrap();
    assert!(t.checkpoints_verified >= 2, "seals and close signed");
    assert_eq!((t.tree_size, t.root), (all.len() as u64, prefix[all.len()]));
}

/// Without a key, the appends hash no leaves: the tree thread reads each
/// block back from its segment and hashes it there (docs/proofs.md, "Who
/// hashes what"). The tree files it stores are the tree of the stored
/// bytes: a writer reopened with a key continues from them and signs the
/// root recomputed from the events, and no tree file needs rebuilding.
#[test]
fn without_a_key_the_tree_thread_hashes_the_leaves_read_back_from_the_segments() {
    let k = keyed();
    let mut unsigned = k.small_config();
    unsigned.checkpoints = None;
    let log = Log::open(unsigned).unwrap();
    let mut n = 0;
    for day in 0..3 {
        n = write(&log, n, 1200, day);
    }
    log.close().unwrap();
    let reader = LogReader::open(&k.dir).unwrap();
    let sealed: Vec<_> = reader.segments().into_iter().filter(|m| m.sealed).collect();
    assert!(sealed.len() >= 3, "{} sealed segments", sealed.len());
    for m in &sealed {
        assert!(segtree::path_of(m).exists(), "{} has its tree file", m.name);
    }
    let log = Log::open(k.small_config()).unwrap();
    write(&log, n, 10, 2);
    log.close().unwrap();
    let all = leaves(&k.dir);
    let t = k.verify(true).unwrap().tree.unwrap();
    assert_eq!(t.tree_files_rebuilt, 0, "{t:?}");
    assert_eq!(
        (t.tree_size, t.root),
        (all.len() as u64, roots(&all)[all.len()])
    );
}

#[test]
fn reopening_continues_the_tree_and_checkpoints_stay_consistent() {
    let k = keyed();
    let mut n = 0;
    for session in 0..4 {
        let log = Log::open(k.small_config()).unwrap();
        n = write(&log, n, 150, session / 2);
        log.close().unwrap();
    }
    let reader = LogReader::open(&k.dir).unwrap();
    let cps = reader.checkpoints().unwrap();
    assert!(cps.len() >= 4);
    let v = k.key.verifier();
    let first = cps[0].record.tree_size;
    reader
        .prove_consistency(first, None)
        .unwrap()
        .check(&v, None, None)
        .unwrap();
    assert_eq!(
        roots(&leaves(&k.dir)).len() as u64,
        cps.last().unwrap().leaf + 2
    );
    k.verify(true).unwrap();
    // A close with nothing new signs nothing new.
    Log::open(k.small_config()).unwrap().close().unwrap();
    assert_eq!(
        LogReader::open(&k.dir)
            .unwrap()
            .checkpoints()
            .unwrap()
            .len(),
        cps.len()
    );
}

#[test]
fn checkpoints_are_signed_at_the_interval_while_events_arrive() {
    let k = keyed();
    let mut cfg = k.small_config();
    if let Some(c) = cfg.checkpoints.as_mut() {
        c.interval = Duration::from_millis(20);
    }
    let log = Log::open(cfg).unwrap();
    let mut n = 0;
    for _ in 0..5 {
        n = write(&log, n, 10, 0);
        std::thread::sleep(Duration::from_millis(40));
    }
    let live = log.reader().checkpoints().unwrap();
    assert!(
        live.len() >= 3,
        "interval checkpoints before close: {}",
        live.len()
    );
    log.close().unwrap();
    k.verify(true).unwrap();
}

#[test]
fn retention_keeps_the_later_events_provable_and_signs_its_frontier() {
    let k = keyed();
    let log = Log::open(k.small_config()).unwrap();
    let mut n = 0;
    for day in 0..3 {
        n = write(&log, n, 400, day);
    }
    let before = leaves(&k.dir);
    let r = log.retain(DAY0 + DAY_US).unwrap();
    assert!(!r.dropped.is_empty());
    n = write(&log, n, 50, 2);
    log.close().unwrap();
    let _ = n;
    let reader = LogReader::open(&k.dir).unwrap();
    let first_kept = reader.first_lsn();
    assert!(first_kept > 0);
    let v = k.key.verifier();
    let newest = reader
        .checkpoints()
        .unwrap()
        .last()
        .unwrap()
        .record
        .tree_size;
    for lsn in (first_kept..newest).step_by(7) {
        reader
            .prove_inclusion(lsn, None)
            .unwrap()
            .check(&v, None)
            .unwrap();
    }
    assert!(reader.prove_inclusion(first_kept - 1, None).is_err());
    // The retention's signed frontier is a checkpoint the later ones extend.
    reader
        .prove_consistency(first_kept, None)
        .unwrap()
        .check(&v, None, None)
        .unwrap();
    // The dropped leaves still count: the root is the whole history's.
    let r = k.verify(true).unwrap();
    let t = r.tree.unwrap();
    assert_eq!(t.retentions_verified, 1);
    assert!(t.tree_size > before.len() as u64);
    // And a writer reopened after it carries on.
    let log = Log::open(k.small_config()).unwrap();
    write(&log, 5000, 20, 2);
    log.close().unwrap();
    k.verify(true).unwrap();
}

#[test]
fn tree_files_are_derived_lost_or_damaged_ones_are_rebuilt() {
    let k = keyed();
    let log = Log::open(k.small_config()).unwrap();
    write(&log, 0, 3000, 0);
    log.close().unwrap();
    let reader = LogReader::open(&k.dir).unwrap();
    let sealed: Vec<_> = reader.segments().into_iter().filter(|m| m.sealed).collect();
    assert!(sealed.len() >= 2);
    std::fs::remove_file(segtree::path_of(&sealed[0])).unwrap();
    let p = segtree::path_of(&sealed[1]);
    let mut b = std::fs::read(&p).unwrap();
    b[120] ^= 0x40;
    std::fs::write(&p, b).unwrap();
    let v = k.key.verifier();
    reader
        .prove_inclusion(10, None)
        .unwrap()
        .check(&v, None)
        .unwrap();
    assert!(segtree::path_of(&sealed[0]).exists(), "rebuilt and stored");
    std::fs::remove_file(segtree::path_of(&sealed[0])).unwrap();
    let t = k.verify(true).unwrap().tree.unwrap();
    assert!(t.tree_files_rebuilt >= 1, "{t:?}");
    assert_eq!(k.verify(true).unwrap().tree.unwrap().tree_files_rebuilt, 0);
}

/// Someone who can write the folder replaces a tree file by one that is
/// well formed (valid CRC, bound to its segment) but describes another
/// history. The writer continues only from a tree that reproduces the root
/// its key signed last, so it never signs the forged history; a proof made
/// from the forged file is refused before it is handed out.
#[test]
fn a_forged_tree_file_is_never_signed_or_used_for_a_proof() {
    let k = keyed();
    let log = Log::open(k.small_config()).unwrap();
    write(&log, 0, 3000, 0);
    log.close().unwrap();
    let reader = LogReader::open(&k.dir).unwrap();
    let sealed: Vec<_> = reader.segments().into_iter().filter(|m| m.sealed).collect();
    let last = sealed.last().unwrap();
    let path = segtree::path_of(last);
    let mut t = SegmentTree::decode(&std::fs::read(&path).unwrap(), last).unwrap();
    let mut forged = t.start.clone();
    for i in 0..t.count {
        forged
            .push(leaf_hash(format!("forged {i}").as_bytes()))
            .unwrap();
    }
    t.end = forged;
    for level in t.nodes.iter_mut() {
        for h in level.iter_mut() {
            h.0[0] ^= 1;
        }
    }
    std::fs::write(&path, t.encode()).unwrap();
    assert!(reader.prove_inclusion(t.first_leaf + 70, None).is_err());
    let log = Log::open(k.small_config()).unwrap();
    write(&log, 5000, 30, 0);
    log.close().unwrap();
    let r = k.verify(true).unwrap().tree.unwrap();
    assert_eq!(r.unsigned_events, 0);
    assert_eq!(r.tree_size, leaves(&k.dir).len() as u64);
}

#[test]
fn a_log_written_with_the_tree_off_gets_it_when_a_key_is_added() {
    let k = keyed();
    let mut off = Config::new(&k.dir);
    off.merkle_tree = false;
    off.segment_max_bytes = 64 * 1024;
    let log = Log::open(off).unwrap();
    write(&log, 0, 2500, 0);
    log.close().unwrap();
    let reader = LogReader::open(&k.dir).unwrap();
    assert!(reader.segments().iter().filter(|m| m.sealed).count() >= 1);
    for m in reader.segments() {
        assert!(
            !segtree::path_of(&m).exists(),
            "no tree file with the tree off"
        );
    }
    assert!(
        reader.prove_inclusion(0, None).is_err(),
        "no checkpoint yet"
    );
    let log = Log::open(k.small_config()).unwrap();
    write(&log, 2500, 10, 0);
    log.close().unwrap();
    let reader = LogReader::open(&k.dir).unwrap();
    reader
        .prove_inclusion(0, None)
        .unwrap()
        .check(&k.key.verifier(), None)
        .unwrap();
    k.verify(true).unwrap();
    // Signing needs the tree.
    let mut bad = k.small_config();
    bad.merkle_tree = false;
    assert!(Log::open(bad).is_err());
}

#[test]
fn the_signing_state_must_live_outside_the_log_and_failing_to_write_it_stops_nothing() {
    let k = keyed();
    let mut inside = k.small_config();
    if let Some(c) = inside.checkpoints.as_mut() {
        c.state = Some(k.dir.join("key.state"));
    }
    assert!(matches!(
        Log::open(inside),
        Err(auditlog::Error::InvalidArgument(_))
    ));
    // A state file that cannot be written: events are still stored, the
    // checkpoint too (it is valid), and the failure to remember it is
    // reported.
    let mut broken = k.small_config();
    if let Some(c) = broken.checkpoints.as_mut() {
        c.state = Some(k.keys.join("no-such-folder").join("key.state"));
    }
    let log = Log::open(broken).unwrap();
    write(&log, 0, 30, 0);
    log.seal().unwrap();
    assert!(log.checkpoint_error().is_some());
    log.close().unwrap();
    let cps = LogReader::open(&k.dir).unwrap().checkpoints().unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(replay_all(&k.dir).len(), 31);
    k.verify(true).unwrap();
    assert!(!k.keys.join("key.state").exists());
}

/// The key's state file once the log is closed, and the newest checkpoint
/// in the log.
fn state_and_newest(k: &SignedLog) -> (String, String) {
    let state = std::fs::read_to_string(k.keys.join("key.state")).unwrap();
    let cps = LogReader::open(&k.dir).unwrap().checkpoints().unwrap();
    let newest = cps.last().expect("a checkpoint").record.note.clone();
    (state, newest)
}

/// With `EveryBatch`, an interval checkpoint's fdatasync and its state file
/// are written by the syncer thread, not the writer: the state still ends
/// naming the newest checkpoint, and while the log is open it only ever
/// names a checkpoint whose events are durable (one in the log that a
/// reader, which sees durable events only, finds).
#[test]
fn interval_checkpoints_are_remembered_once_durable_by_the_syncer() {
    let k = keyed();
    let mut cfg = k.small_config();
    if let Some(c) = cfg.checkpoints.as_mut() {
        c.interval = Duration::from_millis(5);
    }
    let log = Log::open(cfg).unwrap();
    let mut n = 0;
    let mut seen = 0;
    for _ in 0..20 {
        n = write(&log, n, 10, 0);
        std::thread::sleep(Duration::from_millis(10));
        if let Ok(state) = std::fs::read_to_string(k.keys.join("key.state")) {
            let live = log.reader().checkpoints().unwrap();
            assert!(
                live.iter().any(|c| c.record.note == state),
                "the state names a checkpoint the log holds"
            );
            seen += 1;
        }
    }
    assert!(
        seen > 0,
        "a checkpoint was remembered while the log was open"
    );
    log.close().unwrap();
    let (state, newest) = state_and_newest(&k);
    assert_eq!(state, newest);
    k.verify(true).unwrap();
}

/// Fails every fdatasync once armed.
#[derive(Debug, Default)]
struct FailSyncs(std::sync::atomic::AtomicBool);

impl auditlog::internals::io::FaultInjector for FailSyncs {
    fn check(
        &self,
        op: auditlog::internals::io::IoOp,
        _path: &Path,
    ) -> Option<auditlog::internals::io::Fault> {
        let armed = self.0.load(std::sync::atomic::Ordering::SeqCst);
        (armed && matches!(op, auditlog::internals::io::IoOp::Sync)).then(|| {
            auditlog::internals::io::Fault::Fail(std::io::Error::other(
                "injected fdatasync failure",
            ))
        })
    }
}

/// A checkpoint whose fdatasync failed is never remembered: the state file
/// keeps naming the last durable one. The events are durable first, so
/// the checkpoint's own sync (on the syncer, signed at the interval in a
/// cycle that wrote nothing else) is the first one to fail.
#[test]
fn a_checkpoint_whose_sync_failed_is_never_remembered() {
    let k = keyed();
    let faults = std::sync::Arc::new(FailSyncs::default());
    let mut cfg = k.small_config();
    cfg.io.faults =
        Some(faults.clone() as std::sync::Arc<dyn auditlog::internals::io::FaultInjector>);
    if let Some(c) = cfg.checkpoints.as_mut() {
        c.interval = Duration::from_millis(300);
    }
    let state = k.keys.join("key.state");
    let log = Log::open(cfg).unwrap();
    write(&log, 0, 10, 0);
    log.flush().unwrap();
    log.flush().unwrap();
    let before = std::fs::read_to_string(&state).ok();
    faults.0.store(true, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(400));
    // This cycle syncs nothing (all is durable), then signs: the
    // checkpoint's sync fails on the syncer.
    let _ = log.flush();
    let _ = log.flush();
    drop(log);
    let after = std::fs::read_to_string(&state).ok();
    assert_eq!(after, before, "nothing that failed to sync is remembered");
    let cps = LogReader::open(&k.dir).unwrap().checkpoints().unwrap();
    let newest = cps.last().expect("the unsynced checkpoint was written");
    assert_ne!(
        Some(&newest.record.note),
        before.as_ref(),
        "a checkpoint was signed after the failure"
    );
}

/// A state file the syncer cannot write: reported, and nothing stops.
#[test]
fn a_state_file_the_syncer_cannot_write_is_reported_and_stops_nothing() {
    let k = keyed();
    let mut cfg = k.small_config();
    if let Some(c) = cfg.checkpoints.as_mut() {
        c.interval = Duration::from_millis(1);
        c.state = Some(k.keys.join("no-such-folder").join("key.state"));
    }
    let log = Log::open(cfg).unwrap();
    let mut n = write(&log, 0, 10, 0);
    std::thread::sleep(Duration::from_millis(5));
    n = write(&log, n, 10, 0);
    log.flush().unwrap();
    log.flush().unwrap();
    // The checkpoint is signed by the tree's thread once the flushed blocks
    // reach it; on a busy machine that can come after the second flush
    // returns (seen 1 in 20 runs under load), so keep appending and wait,
    // bounded, for the report rather than assume it is already there.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while log.checkpoint_error().is_none() && std::time::Instant::now() < deadline {
        n = write(&log, n, 1, 0);
        log.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(log.checkpoint_error().is_some());
    log.close().unwrap();
    assert_eq!(
        replay_all(&k.dir).len() as u64,
        n + LogReader::open(&k.dir)
            .unwrap()
            .checkpoints()
            .unwrap()
            .len() as u64
    );
    k.verify(true).unwrap();
}

/// A version-2 folder (written before the tree) is refused, never changed:
/// every entry point says which version it found and what to do
/// (docs/format.md, "Version history").
#[test]
fn a_version_2_log_is_refused_with_advice_and_left_untouched() {
    use auditlog::internals::manifest::Manifest;
    let (_t, dir) = scratch();
    let log = Log::open(config(&dir)).unwrap();
    write(&log, 0, 30, 0);
    log.close().unwrap();
    let mut m = Manifest::load(&dir).unwrap().unwrap();
    m.version = 2;
    m.store(&dir).unwrap();
    let before = walk_files(&dir)
        .into_iter()
        .map(|p| (std::fs::read(&p).unwrap(), p))
        .collect::<Vec<_>>();

    let refused = |e: auditlog::Error| {
        let text = e.to_string();
        assert!(
            matches!(
                e,
                auditlog::Error::UnsupportedVersion {
                    found: 2,
                    supported: 6,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(text.contains("older auditlog"), "{text}");
        assert!(text.contains("MANIFEST"), "{text}");
    };
    refused(Log::open(config(&dir)).err().unwrap());
    refused(LogReader::open(&dir).err().unwrap());
    refused(auditlog::verify_with(&dir, &VerifyOptions::default(), |_, _| {}).unwrap_err());

    for (bytes, path) in before {
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{}", path.display());
    }
}

/// A batch that crosses a segment roll while signing: the sealed segment's
/// checkpoint may not come between two of the batch's events (a batch
/// takes consecutive LSNs); it is signed after the batch instead, and the
/// log verifies with the key.
#[test]
fn a_batch_across_a_segment_roll_keeps_consecutive_lsns_while_signing() {
    let k = keyed();
    let log = Log::open(k.small_config()).unwrap();
    let mut i = 0u64;
    for _ in 0..100 {
        let batch: Vec<_> = (i..i + 50).map(|n| ev(n, DAY0 + n as i64 * 1000)).collect();
        let r = log.append_batch(&batch).unwrap().wait().unwrap();
        let (first, last) = (r.first, r.last);
        assert_eq!(last - first + 1, 50, "batch from LSN {first} to {last}");
        let got: Vec<_> = LogReader::open(&k.dir)
            .unwrap()
            .replay(auditlog::ReplayRange {
                from_lsn: Some(first),
                ..auditlog::ReplayRange::default()
            })
            .take(50)
            .map(|e| e.unwrap().1)
            .collect();
        assert_eq!(got, batch, "the batch's LSNs hold exactly its events");
        i += 50;
    }
    assert!(
        forge::segment_files(&k.dir).len() > 2,
        "the batches crossed rolls"
    );
    log.close().unwrap();
    k.verify(true).unwrap();
}

/// Copy the files of `from` (a log folder, subfolders included) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The tree's interior nodes are combined on a background thread that may
/// be behind the writer, and tree files are stored by it, unsynced: a
/// crash can leave any of them missing or stale. The folder as a crash
/// leaves it (copied while the writer runs, its tree files gone: the worst
/// a crash can do to them) opens; the next writer rebuilds the tree from
/// the segments, continues it, signs a checkpoint consistent with the one
/// the key signed last, and every event stays provable.
#[test]
fn a_crash_with_the_tree_thread_behind_is_recomputed_from_the_segments() {
    let k = keyed();
    let log = Log::open(k.small_config()).unwrap();
    let n = write(&log, 0, 2500, 0);
    let crashed = k.dir.with_file_name("crashed");
    copy_tree(&k.dir, &crashed);
    let keys = k.keys.with_file_name("crashed-keys");
    copy_tree(&k.keys, &keys);
    log.close().unwrap();
    for e in std::fs::read_dir(&crashed).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "mtree") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut cfg = k.small_config();
    cfg.dir = crashed.clone();
    if let Some(c) = cfg.checkpoints.as_mut() {
        c.state = Some(keys.join("key.state"));
    }
    let log = Log::open(cfg).unwrap();
    let m = write(&log, n, 500, 0);
    log.close().unwrap();
    let reader = LogReader::open(&crashed).unwrap();
    let v = k.key.verifier();
    let cps = reader.checkpoints().unwrap();
    let newest = cps.last().unwrap();
    assert!(newest.leaf >= m, "the close after the crash signed");
    for w in cps.windows(2) {
        reader
            .prove_consistency(w[0].record.tree_size, Some(w[1].record.tree_size))
            .unwrap()
            .check(&v, None, None)
            .unwrap();
    }
    for lsn in [0, n / 2, n - 1, newest.record.tree_size - 1] {
        reader
            .prove_inclusion(lsn, None)
            .unwrap()
            .check(&v, None)
            .unwrap();
    }
    let all = leaves(&crashed);
    let t = auditlog::verify_with(
        &crashed,
        &VerifyOptions {
            key: Some(v),
            ..VerifyOptions::default()
        },
        |_, _| {},
    )
    .unwrap()
    .tree
    .unwrap();
    assert_eq!(
        (t.tree_size, t.root),
        (all.len() as u64, roots(&all)[all.len()])
    );
}

// ---- Deferred signing (format 6, docs/proofs.md, "Deferred signing") ----

/// A checkpoint record's payload: `size` leaves with `root`, signed by
/// `k`'s key (a record the writer could have appended, or a forgery only
/// the key's holder can make).
fn checkpoint_payload(k: &SignedLog, size: u64, root: TreeHash) -> Vec<u8> {
    use auditlog::system::{SystemRecord, TreeCheckpoint};
    let note = auditlog::tlog::checkpoint::Checkpoint::new(k.key.name(), size, root)
        .sign(&k.key)
        .unwrap();
    let record = TreeCheckpoint {
        tree_size: size,
        root: root.to_hex(),
        signed_at: DAY0,
        note,
    };
    let ev = auditlog::Event {
        run_id: String::new(),
        ts: DAY0,
        data: auditlog::EventData::System(Box::new(SystemRecord::Checkpoint(record))),
        extra: Vec::new(),
    };
    let mut b = Vec::new();
    auditlog::internals::codec::encode_event(&ev, &mut b).unwrap();
    b
}

/// An ordinary event's payload.
fn event_payload(n: u64) -> Vec<u8> {
    let mut b = Vec::new();
    auditlog::internals::codec::encode_event(&ev(n, DAY0 + n as i64 * 1000), &mut b).unwrap();
    b
}

/// Append blocks of one event each (payloads) to the newest segment of
/// `k`'s log, then re-chain it: what an insider can do, and, with the
/// key's signature on a checkpoint payload, what the writer does.
fn append_blocks(k: &SignedLog, payloads: Vec<Vec<u8>>) {
    forge_newest_segment(k, |fr| {
        for p in payloads {
            fr.extend(one_event_block(p));
        }
    });
}

/// The frames of a block holding one event (`payload`) and its commit.
fn one_event_block(payload: Vec<u8>) -> [forge::RawFrame; 2] {
    [
        (REC_EVENT, payload),
        (auditlog::internals::frame::REC_COMMIT, Vec::new()),
    ]
    .map(|(rec_type, payload)| forge::RawFrame {
        offset: 0,
        rec_type,
        payload,
        size: 0,
    })
}

/// Rewrite the frames of the newest segment of `k`'s log with `edit`,
/// re-chain the log and drop the tree files: a well-formed forgery by
/// someone without the key.
fn forge_newest_segment(k: &SignedLog, edit: impl FnOnce(&mut Vec<forge::RawFrame>)) {
    let newest = forge::segment_files(&k.dir).pop().unwrap();
    forge::rewrite_frames(&newest, edit);
    forge::rechain(&k.dir);
    for p in forge::segment_files(&k.dir) {
        let _ = std::fs::remove_file(p.with_extension("mtree"));
    }
}

/// Append to `k`'s log a checkpoint record of its first `size` leaves,
/// signed by the key, with their root as the log's events stand.
fn append_checkpoint_of(k: &SignedLog, size: u64) {
    let root = roots(&leaves(&k.dir))[size as usize];
    append_blocks(k, vec![checkpoint_payload(k, size, root)]);
}

/// A closed signed log of `n` events (its close checkpoint, in place, is
/// leaf `n`).
fn closed_log(n: u64) -> SignedLog {
    let k = keyed();
    let log = Log::open(k.config()).unwrap();
    write(&log, 0, n, 0);
    log.close().unwrap();
    k
}

/// A deferred checkpoint: its size is a prefix of the leaves before its
/// record, and verify --key checks its root against that prefix; a record
/// whose size exceeds its own leaf index, or does not grow, is corrupt.
#[test]
fn a_deferred_record_checks_and_one_that_exceeds_its_leaf_or_shrinks_is_corrupt() {
    // 20 events, the close checkpoint at leaf 20, 5 more events (leaves
    // 21-25), then a record of 23 leaves at leaf 26 and one in place.
    let k = closed_log(20);
    let extra: Vec<_> = (100..105).map(event_payload).collect();
    append_blocks(&k, extra.clone());
    assert_eq!(leaves(&k.dir).len(), 26);
    append_checkpoint_of(&k, 23);
    let t = k.verify(true).unwrap_err().to_string();
    assert!(
        t.contains("covered by no signature"),
        "leaves 23-25 unsigned: {t}"
    );
    let report = auditlog::verify_with(
        &k.dir,
        &VerifyOptions {
            key: Some(k.key.verifier()),
            allow_unsigned_tail: true,
            ..VerifyOptions::default()
        },
        |_, _| {},
    )
    .unwrap()
    .tree
    .unwrap();
    assert_eq!(
        (report.newest_checkpoint, report.unsigned_events),
        (Some(23), 3)
    );
    append_checkpoint_of(&k, 27);
    let t = k.verify(true).unwrap().tree.unwrap();
    assert_eq!((t.checkpoints_verified, t.unsigned_events), (3, 0));
    // Proofs against the deferred checkpoint.
    let reader = LogReader::open(&k.dir).unwrap();
    let v = k.key.verifier();
    reader
        .prove_inclusion(22, Some(23))
        .unwrap()
        .check(&v, None)
        .unwrap();
    reader
        .prove_consistency(20, Some(23))
        .unwrap()
        .check(&v, None, None)
        .unwrap();
    reader
        .prove_consistency(23, Some(27))
        .unwrap()
        .check(&v, None, None)
        .unwrap();

    // A size past its own leaf index (the record at leaf 28 says 29).
    let k = closed_log(20);
    append_blocks(&k, (100..107).map(event_payload).collect());
    let all = leaves(&k.dir);
    let mut with_self = all.clone();
    with_self.push(TreeHash::default());
    append_blocks(&k, vec![checkpoint_payload(&k, 29, roots(&with_self)[28])]);
    let e = k.verify(true).unwrap_err().to_string();
    assert!(e.contains("signs a tree of 29 leaves"), "{e}");
    // A size that does not grow (the close checkpoint signed 20).
    let k = closed_log(20);
    append_blocks(&k, (100..103).map(event_payload).collect());
    append_checkpoint_of(&k, 18);
    let e = k.verify(true).unwrap_err().to_string();
    assert!(e.contains("only grows"), "{e}");
}

/// A forged block inserted between a deferred checkpoint's size and its
/// record is covered by the next checkpoint's root (a mismatch), or left
/// in the unsigned tail (refused).
#[test]
fn a_block_forged_between_a_checkpoints_size_and_its_record_is_caught() {
    let k = closed_log(20);
    append_blocks(&k, (100..105).map(event_payload).collect());
    append_checkpoint_of(&k, 23);
    append_checkpoint_of(&k, 27);
    k.verify(true).unwrap();
    // Insert a forged event at leaf 24 (after the size 23, before its
    // record at leaf 26, now 27): the record of 27 no longer checks.
    let forged = event_payload(999);
    forge_newest_segment(&k, |fr| {
        let events: Vec<usize> = (0..fr.len())
            .filter(|&i| fr[i].rec_type == REC_EVENT)
            .collect();
        let first_leaf = 28 - events.len();
        let at = events[24 - first_leaf];
        fr.splice(at..at, one_event_block(forged));
    });
    let e = k.verify(true).unwrap_err().to_string();
    assert!(e.contains("signs a tree of 27 leaves"), "{e}");
}

/// A crash after the last events' append and before the checkpoint
/// covering them (asked of the tree's threads, or signed but not yet in
/// the log): the reopened writer signs what is missing at once, and
/// verify --key finds no unsigned tail.
#[test]
fn a_crash_before_the_deferred_record_is_signed_at_the_next_open() {
    let k = closed_log(20);
    // The crash: 5 events after the close checkpoint, none after them.
    append_blocks(&k, (100..105).map(event_payload).collect());
    let e = k.verify(true).unwrap_err().to_string();
    assert!(e.contains("covered by no signature"), "{e}");
    let log = Log::open(k.config()).unwrap();
    log.flush().unwrap();
    let t = k.verify(true).unwrap().tree.unwrap();
    assert_eq!((t.unsigned_events, t.newest_checkpoint), (0, Some(26)));
    log.close().unwrap();
    let t = k.verify(true).unwrap().tree.unwrap();
    assert_eq!((t.unsigned_events, t.checkpoints_verified), (0, 2));
}

/// A crash after the tree's threads signed a checkpoint and before its
/// record's fdatasync: the record's block is torn. The open cuts it (and
/// records the cut) and signs again; verify --key passes.
#[test]
fn a_torn_deferred_record_is_cut_and_signed_again() {
    let k = closed_log(20);
    append_blocks(&k, (100..105).map(event_payload).collect());
    append_checkpoint_of(&k, 24);
    let newest = forge::segment_files(&k.dir).pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap();
    f.set_len(len - 7).unwrap();
    drop(f);
    let log = Log::open(k.config()).unwrap();
    log.close().unwrap();
    let t = k.verify(true).unwrap().tree.unwrap();
    assert_eq!(t.unsigned_events, 0);
    let cps = LogReader::open(&k.dir).unwrap().checkpoints().unwrap();
    assert!(
        cps.iter().all(|c| c.record.tree_size != 24),
        "the torn record is gone"
    );
}
