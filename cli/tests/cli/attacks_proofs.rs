//! The attacks that only signed checkpoints catch (issue 19; the rows of
//! docs/reliability.md's attack table marked "verify --key"): a forged but
//! well-formed block appended at the end, the oldest segment deleted and a
//! retention faked (record, chain and MANIFEST as good as the format
//! allows), and every event rewritten consistently without the key. Each
//! passes plain `verify` and is refused by `verify --key`. Also: the tail
//! cut back at a block boundary, which `verify --key` cannot see, is
//! refused by the next writer open with the key (its state file remembers
//! what it signed).

use crate::support;

use std::path::{Path, PathBuf};

use auditlog::event::system::{DroppedSegment, Retention, SystemRecord};
use auditlog::event::{Event, EventData};
use auditlog::internals::frame::{write_frame, REC_COMMIT, REC_EVENT};
use auditlog::internals::manifest::{Manifest, RecordRef};
use auditlog::tlog::{Frontier, SignerKey};
use auditlog::tree::CheckpointConfig;
use auditlog::{Config, Log};
use support::forge::{self, rechain, rewrite_frames};
use support::*;

const KEY_NAME: &str = "auditlog.test/attacks";

/// A signed log of three UTC days (segments 1 and 2 sealed with a
/// checkpoint each, 3 active, closed with a checkpoint); the key and its
/// state live in `keys/`, outside the log folder.
struct Signed {
    _t: tempfile::TempDir,
    dir: PathBuf,
    keys: PathBuf,
    key: SignerKey,
}

fn signed_config(dir: &Path, keys: &Path, key: &SignerKey) -> Config {
    let mut cfg = Config::new(dir);
    cfg.checkpoints = Some(CheckpointConfig {
        key: key.clone(),
        interval: std::time::Duration::from_secs(3600),
        state: Some(keys.join("key.state")),
    });
    cfg
}

fn signed_log() -> Signed {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("log");
    let keys = t.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let key = SignerKey::generate(KEY_NAME).unwrap();
    std::fs::write(keys.join("key.pub"), format!("{}\n", key.verifier())).unwrap();
    let log = Log::open(signed_config(&dir, &keys, &key)).unwrap();
    let mut n = 0;
    for day in 0..3i64 {
        for _ in 0..20 {
            n += 1;
            let ts = DAY0 + day * DAY_US + n as i64 * 1000;
            log.append_batch(&[ev(n, ts), finished(&format!("r-{n}"), ts + 1, "ok")])
                .unwrap()
                .wait()
                .unwrap();
        }
    }
    log.close().unwrap();
    let s = Signed {
        _t: t,
        dir,
        keys,
        key,
    };
    assert_eq!(forge::segment_files(&s.dir).len(), 3);
    let (code, out, err) = s.verify_key();
    assert_eq!(
        code, 0,
        "the untouched log verifies with the key: {out} {err}"
    );
    assert!(out.contains("\"checkpoints_verified\":3"), "{out}");
    s
}

impl Signed {
    fn verify(&self) -> (i32, String, String) {
        cli(&self.dir, &["verify"])
    }

    fn verify_key(&self) -> (i32, String, String) {
        let key = self.keys.join("key.pub");
        cli(&self.dir, &["verify", "--key", key.to_str().unwrap()])
    }

    fn seg(&self, i: usize) -> PathBuf {
        forge::segment_files(&self.dir)[i].clone()
    }
}

/// Append `events` as one well-formed block at the end of the active
/// segment: CRC-valid frames, a commit record continuing the chain. The
/// segment offset of the block and its first LSN.
fn append_block(path: &Path, events: &[Event]) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    let (fr, _) = forge::frames(&bytes);
    let last = fr.iter().rev().find(|x| x.rec_type == REC_COMMIT).unwrap();
    let c = auditlog::internals::segment::Commit::decode(&last.payload).unwrap();
    let mut block = Vec::new();
    for e in events {
        let mut body = Vec::new();
        auditlog::internals::codec::encode_event(e, &mut body).unwrap();
        write_frame(&mut block, REC_EVENT, &body);
    }
    let first = c.first_lsn + c.count as u64;
    let n = events.len() as u32;
    let digest = auditlog::internals::chain::block_digest(&c.digest, first, n, &block);
    auditlog::internals::segment::Commit {
        first_lsn: first,
        count: n,
        digest,
    }
    .write(&mut block);
    let at = bytes.len() as u64;
    let mut out = bytes;
    out.extend_from_slice(&block);
    std::fs::write(path, out).unwrap();
    (at, first)
}

fn fails_naming(r: &(i32, String, String), words: &[&str]) {
    let (code, out, err) = r;
    assert_eq!(*code, 1, "verify --key must refuse: {out} {err}");
    let text = format!("{out} {err}");
    assert!(
        words.iter().any(|w| text.contains(w)),
        "the refusal says why ({words:?}): {text}"
    );
}

/// Row "append a valid block": plain verify and the anchored digest pass
/// (the chain continues); no checkpoint covers the new event.
#[test]
fn proofs_catch_a_forged_block_appended_at_the_end() {
    let s = signed_log();
    let (_, lsn) = append_block(&s.seg(2), &[ev(999, DAY0 + 2 * DAY_US + 999_000)]);
    assert_eq!(s.verify().0, 0, "the chain alone cannot tell");
    fails_naming(&s.verify_key(), &["covered by no signature"]);
    // A running writer's newest events are unsigned too: reported, not
    // refused, when asked.
    let key = s.keys.join("key.pub");
    let (code, out, _) = cli(
        &s.dir,
        &[
            "verify",
            "--key",
            key.to_str().unwrap(),
            "--allow-unsigned-tail",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("\"unsigned_events\":1"), "{out}");
    // No proof of it can be made: no checkpoint covers it.
    let (code, _, err) = cli(&s.dir, &["prove", &lsn.to_string()]);
    assert_ne!(code, 0);
    assert!(err.contains("newer than the checkpoint"), "{err}");
}

/// The frontier of the first `n` events of the log (what an attacker who
/// read the segment before deleting it can compute).
fn frontier_of_first(dir: &Path, n: u64) -> Frontier {
    let mut f = Frontier::new();
    let mut left = n;
    for path in forge::segment_files(dir) {
        let (fr, _) = forge::frames(&std::fs::read(path).unwrap());
        for x in fr.iter().filter(|x| x.rec_type == REC_EVENT) {
            if left == 0 {
                return f;
            }
            f.push(auditlog::tlog::merkle::leaf_hash(&x.payload))
                .unwrap();
            left -= 1;
        }
    }
    f
}

/// Row "fake a retention", done as well as the format allows: the oldest
/// segment deleted, a retention record forged (right frontier, right
/// anchor, right totals) and appended as a well-formed block, the
/// MANIFEST pointing at it. Plain verify passes; the record carries no
/// note signed by the key (none, or one signed by another key of the same
/// name), so verify --key refuses it.
#[test]
fn proofs_catch_a_deleted_oldest_segment_with_a_faked_retention() {
    for fake_key in [false, true] {
        let s = signed_log();
        let m = Manifest::load(&s.dir).unwrap().unwrap();
        let gone = m.sealed[0].clone();
        let frontier = frontier_of_first(&s.dir, gone.count);
        let note = match fake_key {
            false => String::new(),
            true => {
                let other = SignerKey::generate(KEY_NAME).unwrap();
                let mut c = auditlog::tlog::Checkpoint::new(KEY_NAME, gone.count, frontier.root());
                c.extensions.push(format!(
                    "auditlog-retention {} {}",
                    gone.first_lsn + gone.count,
                    gone.digest
                ));
                c.sign(&other).unwrap()
            }
        };
        let rec = Retention {
            cutoff: DAY0 + DAY_US,
            reason: "every event of these segments is older than 2026-11-24T00:00:00.000000Z"
                .into(),
            dropped: vec![DroppedSegment {
                seq: gone.seq,
                day: gone.day,
                first_lsn: gone.first_lsn,
                count: gone.count,
                min_ts: gone.min_ts,
                max_ts: gone.max_ts,
                digest: gone.digest.clone(),
            }],
            anchor_first_seq: gone.seq + 1,
            anchor_first_lsn: gone.first_lsn + gone.count,
            anchor_digest: gone.digest.clone(),
            total_dropped_segments: 1,
            total_dropped_events: gone.count,
            tree_size: gone.count,
            tree_frontier: frontier.nodes().iter().map(|h| h.to_hex()).collect(),
            tree_note: note,
            tree_tiles: Vec::new(),
        };
        let record = Event {
            run_id: String::new(),
            ts: DAY0 + 2 * DAY_US + 999_000,
            data: EventData::System(Box::new(SystemRecord::Retention(rec))),
            extra: Vec::new(),
        };
        let active = s.seg(2);
        let seq3 = m.sealed.last().unwrap().seq + 1;
        let (offset, lsn) = append_block(&active, &[record]);
        std::fs::remove_file(s.seg(0)).unwrap();
        let mut m2 = m.clone();
        m2.sealed.remove(0);
        m2.anchor.first_lsn = gone.first_lsn + gone.count;
        m2.anchor.digest = gone.digest.clone();
        m2.anchor.first_seq = gone.seq + 1;
        m2.dropped_segments = 1;
        m2.dropped_events = gone.count;
        m2.retention = Some(RecordRef {
            seq: seq3,
            offset,
            lsn,
        });
        m2.store(&s.dir).unwrap();
        let (code, out, err) = s.verify();
        assert_eq!(
            code, 0,
            "the forgery is as good as the format allows: {out} {err}"
        );
        fails_naming(&s.verify_key(), &["not vouched for by the key"]);
    }
}

/// Row "rewrite everything consistently": an event edited in the first
/// segment and every commit record, footer, header link and MANIFEST entry
/// recomputed. Plain verify passes; the checkpoints' signed roots no longer
/// match the events. Stripping the checkpoints as well leaves nothing
/// signed.
#[test]
fn proofs_catch_a_consistent_rewrite_without_the_key() {
    let s = signed_log();
    let first = s.seg(0);
    rewrite_frames(&first, |fr| {
        let x = fr.iter_mut().find(|x| x.rec_type == REC_EVENT).unwrap();
        let at = x.payload.iter().position(|b| *b == b'r').unwrap();
        x.payload[at] = b'R';
    });
    rechain(&s.dir);
    let (code, out, err) = s.verify();
    assert_eq!(
        code, 0,
        "a consistent rewrite passes the chain: {out} {err}"
    );
    fails_naming(&s.verify_key(), &["signs a tree of"]);

    // And with every checkpoint taken out of the log too.
    let s = signed_log();
    for path in forge::segment_files(&s.dir) {
        rewrite_frames(&path, |fr| {
            let drop_from = |fr: &Vec<forge::RawFrame>| {
                fr.iter().position(|x| {
                    x.rec_type == REC_EVENT && auditlog::tree::segtree::is_checkpoint(&x.payload)
                })
            };
            while let Some(i) = drop_from(fr) {
                // The checkpoint is alone in its block: drop it and its
                // commit record.
                fr.remove(i);
                fr.remove(i);
            }
        });
    }
    rechain(&s.dir);
    let (code, out, err) = s.verify();
    assert_eq!(code, 0, "{out} {err}");
    fails_naming(
        &s.verify_key(),
        &["no checkpoint", "covered by no signature"],
    );
}

/// Row "cut the tail": the active segment cut back to a block boundary
/// before its last checkpoint. What is left verifies (the older
/// checkpoints still hold), but the key's state remembers the tree it
/// signed last: a writer open with the key refuses to sign a log that does
/// not extend it.
#[test]
fn proofs_the_writer_refuses_to_sign_a_log_cut_back() {
    let s = signed_log();
    let path = s.seg(2);
    let bytes = std::fs::read(&path).unwrap();
    let (fr, _) = forge::frames(&bytes);
    let commits: Vec<_> = fr.iter().filter(|x| x.rec_type == REC_COMMIT).collect();
    let keep = commits[commits.len() - 4];
    std::fs::write(&path, &bytes[..keep.offset + keep.size]).unwrap();
    let key = s.keys.join("key.pub");
    let (code, _, _) = cli(
        &s.dir,
        &[
            "verify",
            "--key",
            key.to_str().unwrap(),
            "--allow-unsigned-tail",
        ],
    );
    assert_eq!(code, 0, "the prefix is genuine");
    let err = Log::open(signed_config(&s.dir, &s.keys, &s.key))
        .err()
        .expect("the writer must not sign a tree that drops signed events");
    assert!(
        err.to_string().contains("already signed") || err.to_string().contains("does not extend"),
        "{err}"
    );
    // Without the key the log still opens (nothing is signed then).
    let mut cfg = Config::new(&s.dir);
    cfg.create = false;
    Log::open(cfg).unwrap().close().unwrap();
}
