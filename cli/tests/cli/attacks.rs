//! The attack table of docs/reliability.md, one test per row. Each attack
//! is what an insider with write access to the log folder can do with
//! docs/format.md alone. Every test asserts the two promises of issue 11:
//!
//! - no read returns altered data with exit status 0: every read command
//!   (replay, tail, runs, count, run, children, errors, search, stats) either
//!   fails or answers exactly what it answered before the attack, both with
//!   the derived files left as they were and with them removed;
//! - no writer open deletes a committed block: every byte of every segment
//!   file as it was before the open is still in the log or, byte for byte,
//!   in `quarantine/`;
//!
//! and then what `verify`, `verify --expect` and a writer open do, as the
//! row says (including the rows where only an anchored digest, or the
//! signed checkpoints of issue 19, can tell).

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use auditlog::event::{Event, Json, RunFinished, RunLog, RunStarted};
use auditlog::internals::frame::{read_frame, write_frame, REC_COMMIT, REC_EVENT};
use auditlog::internals::manifest::Manifest;
use auditlog::internals::segment::HEADER_SIZE;
use auditlog::{Config, Digest, Log};
use support::forge::{self, rechain, rewrite_frames, RawFrame, COMMIT_FRAME};
use support::*;

/// The read commands whose answers must never be altered.
const READS: &[&[&str]] = &[
    &["replay"],
    &["tail", "-n", "7"],
    &["runs"],
    &["count"],
    &["count", "--caller", "caller-1"],
    &["run", "r-4"],
    &["run", "r-25"],
    &["run", "r-15"],
    &["children", "r-4"],
    &["errors"],
    &["search", "25"],
    &["stats"],
];

/// A log of three UTC days (segments 1 and 2 sealed, 3 active), 10 blocks
/// of one run each per day: started, a tool call (every third fails),
/// finished. Run `r-N` has caller `caller-{N % 3}`; `r-N` for N % 10 == 4
/// has a sub-run. `truth` holds every read's answer before any attack.
struct Fixture {
    _t: tempfile::TempDir,
    dir: PathBuf,
    segs: Vec<String>,
    head: Digest,
    /// Head after day 0, anchored "yesterday".
    anchor: Digest,
    truth: BTreeMap<String, String>,
}

fn started(n: u64, ts: i64, parent: &str) -> Event {
    Event::run_started(
        format!("r-{n}"),
        ts,
        RunStarted {
            skill_id: format!("skill-{}", n % 4),
            caller_id: format!("caller-{}", n % 3),
            channel_id: "chan".into(),
            parent_run_id: parent.into(),
            inputs: Json::parse(format!(r#"{{"q":"needle {n}"}}"#)).unwrap(),
            dry_run: false,
        },
    )
}

fn block_of_run(n: u64, ts: i64) -> Vec<Event> {
    let status = if n.is_multiple_of(3) { "error" } else { "ok" };
    let mut v = vec![
        started(n, ts, ""),
        Event::run_log(
            format!("r-{n}"),
            ts + 1,
            RunLog {
                seq: 0,
                event_type: "tool_call".into(),
                payload: Json::parse(format!(
                    r#"{{"tool":"t{}","status":"{status}","error_type":"x","duration_ms":{n}}}"#,
                    n % 2
                ))
                .unwrap(),
            },
        ),
    ];
    if n % 10 == 4 {
        v.push(started(n + 1000, ts + 2, &format!("r-{n}")));
    }
    v.push(Event::run_finished(
        format!("r-{n}"),
        ts + 3,
        RunFinished {
            status: status.into(),
            output: format!("output of r-{n}"),
            ..RunFinished::default()
        },
    ));
    v
}

fn fixture() -> Fixture {
    let (t, dir) = scratch();
    let log = Log::open(Config::new(&dir)).unwrap();
    let mut anchor = None;
    let mut n = 0;
    for day in 0..3i64 {
        for _ in 0..10 {
            n += 1;
            let ts = DAY0 + day * DAY_US + n as i64 * 1000;
            log.append_batch(&block_of_run(n, ts))
                .unwrap()
                .wait()
                .unwrap();
        }
        if day == 0 {
            anchor = Some(log.head().digest);
        }
    }
    let head = log.head().digest;
    log.close().unwrap();
    let segs: Vec<String> = forge::segment_files(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(segs.len(), 3, "{segs:?}");
    let mut truth = BTreeMap::new();
    for args in READS {
        let (code, out, err) = cli(&dir, args);
        assert_eq!(code, 0, "{args:?} on the untouched log: {err}");
        truth.insert(args.join(" "), out);
    }
    let (code, out, err) = cli(&dir, &["verify", "--expect", &head.to_hex()]);
    assert_eq!(code, 0, "untouched log verifies: {out} {err}");
    Fixture {
        _t: t,
        dir,
        segs,
        head,
        anchor: anchor.unwrap(),
        truth,
    }
}

impl Fixture {
    fn seg(&self, i: usize) -> PathBuf {
        self.dir.join(&self.segs[i])
    }

    /// Every read either fails or answers as before the attack: first with
    /// the derived files as they are, then rebuilt from scratch. Returns
    /// how many reads failed in each pass.
    fn reads_never_altered(&self) -> (usize, usize) {
        let first = self.reads_pass("with the derived files as they were");
        remove_derived(&self.dir);
        let second = self.reads_pass("with the derived files rebuilt");
        (first, second)
    }

    fn reads_pass(&self, when: &str) -> usize {
        let mut failed = 0;
        for args in READS {
            let key = args.join(" ");
            let (code, out, err) = cli(&self.dir, args);
            if code == 0 {
                assert_eq!(
                    out, self.truth[&key],
                    "`{key}` {when} returned altered data with exit status 0 (stderr: {err})"
                );
            } else {
                failed += 1;
            }
        }
        failed
    }

    /// `replay` and `runs` (which read every segment) fail and name `seg`
    /// and an offset.
    fn replay_fails_naming(&self, seg: &str) {
        for args in [&["replay"][..], &["runs"]] {
            let (code, out, err) = cli(&self.dir, args);
            assert_ne!(code, 0, "{args:?} read a tampered segment: {out}");
            assert!(
                err.contains(seg) && err.contains("offset"),
                "{args:?}: the error names {seg} and an offset: {err}"
            );
        }
    }

    fn verify_code(&self) -> (i32, String, String) {
        cli(&self.dir, &["verify"])
    }

    fn verify_expect_code(&self) -> i32 {
        cli(&self.dir, &["verify", "--expect", &self.head.to_hex()]).0
    }
}

/// Remove every derived file (indexes, the full-text index) so that the
/// next read builds them from the segments.
fn remove_derived(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(".idx") || name.contains(".aidx") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let ft = dir.join("fulltext");
    if ft.exists() {
        std::fs::remove_dir_all(ft).unwrap();
    }
}

/// The segment files' bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    forge::segment_files(dir)
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// No byte of any segment in `before` is gone: each file is still a prefix
/// of what the folder holds, or the part after the common prefix (or the
/// whole file) is in `quarantine/`, byte for byte.
fn nothing_destroyed(dir: &Path, before: &[(String, Vec<u8>)]) {
    let quarantined: Vec<Vec<u8>> = std::fs::read_dir(dir.join("quarantine"))
        .map(|rd| {
            rd.flatten()
                .map(|e| std::fs::read(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    for (name, bytes) in before {
        let now = std::fs::read(dir.join(name)).unwrap_or_default();
        let common = now.iter().zip(bytes).take_while(|(a, b)| a == b).count();
        if common == bytes.len() {
            continue;
        }
        let kept = quarantined
            .iter()
            .any(|q| q[..] == bytes[..] || q[..] == bytes[common..]);
        assert!(
            kept,
            "{name}: bytes {common}..{} are gone from the log and are not in quarantine/",
            bytes.len()
        );
    }
}

/// Open for writing (and close): returns the error, if the open refused.
/// Asserts that nothing committed was destroyed either way.
fn writer_open(dir: &Path) -> Option<auditlog::Error> {
    let before = snapshot(dir);
    let mut cfg = Config::new(dir);
    cfg.create = false;
    let r = Log::open(cfg);
    let err = match r {
        Ok(log) => {
            log.close().unwrap();
            None
        }
        Err(e) => Some(e),
    };
    nothing_destroyed(dir, &before);
    err
}

fn corrupt_names(e: &Option<auditlog::Error>, seg: &str) {
    match e {
        Some(auditlog::Error::Corrupt {
            segment, reason, ..
        }) => assert_eq!(segment, seg, "{reason}"),
        other => panic!("the writer open should refuse, naming {seg}: {other:?}"),
    }
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

/// (offset, size) of the event frames of a segment file.
fn event_frames(path: &Path) -> Vec<(usize, usize)> {
    let (fr, _) = forge::frames(&std::fs::read(path).unwrap());
    fr.iter()
        .filter(|f| f.rec_type == REC_EVENT)
        .map(|f| (f.offset, f.size))
        .collect()
}

fn commit_frames(path: &Path) -> Vec<usize> {
    let (fr, _) = forge::frames(&std::fs::read(path).unwrap());
    fr.iter()
        .filter(|f| f.rec_type == REC_COMMIT)
        .map(|f| f.offset)
        .collect()
}

/// Where `needle` first occurs in `hay`.
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A frame whose body says `from` replaced by `to` (same length), with a
/// valid CRC.
fn reframe(frame: &RawFrame, from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut body = frame.payload.clone();
    let at = find_bytes(&body, from.as_bytes()).expect("the text is in the frame");
    body[at..at + to.len()].copy_from_slice(to.as_bytes());
    let mut out = Vec::new();
    write_frame(&mut out, REC_EVENT, &body);
    out
}

// ---------------------------------------------------------------------------
// The rows
// ---------------------------------------------------------------------------

/// Row "edit": one flipped byte, CRC not fixed, in a sealed and in the
/// active segment.
#[test]
fn attack_edit_a_byte() {
    for which in [0usize, 2] {
        let f = fixture();
        let path = f.seg(which);
        let (off, _) = event_frames(&path)[5];
        edit(&path, |v| v[off + 12] ^= 0x20);
        f.replay_fails_naming(&f.segs[which]);
        let (first, second) = f.reads_never_altered();
        assert!(first > 0 && second > 0);
        let (code, out, _) = f.verify_code();
        assert_eq!(code, 1);
        assert!(out.contains(&format!("\"offset\":{off}")), "{out}");
        assert_eq!(f.verify_expect_code(), 1);
        let e = writer_open(&f.dir);
        if which == 2 {
            // Committed blocks follow the damage: refused, nothing changed.
            corrupt_names(&e, &f.segs[2]);
        } else {
            // Sealed segments are not re-read on open; nothing is cut.
            assert!(e.is_none(), "{e:?}");
        }
    }
}

/// Row "forge with valid CRC": a record's caller changed, same length,
/// its frame CRC fixed (mode 0); also its block's commit record recomputed,
/// so that the block checks against the stored digest before it and only
/// the next block's link breaks (mode 1); the whole chain rewritten
/// consistently, footers and MANIFEST too (mode 2), which only the
/// anchored digest catches.
#[test]
fn attack_forge_a_record_with_a_valid_crc() {
    for (which, mode) in [(0usize, 0), (2, 0), (0, 1), (2, 1), (0, 2), (2, 2)] {
        let f = fixture();
        let path = f.seg(which);
        let run = if which == 0 { 4 } else { 25 };
        let bytes = std::fs::read(&path).unwrap();
        let (fr, _) = forge::frames(&bytes);
        let i = fr
            .iter()
            .position(|x| {
                x.rec_type == REC_EVENT
                    && auditlog::internals::codec::decode_event(&x.payload).is_ok_and(|e| {
                        e.run_id == format!("r-{run}")
                            && matches!(e.data, auditlog::EventData::RunStarted(_))
                    })
            })
            .unwrap();
        let forged = reframe(
            &fr[i],
            &format!("caller-{}", run % 3),
            &format!("caller-{}", (run + 1) % 3),
        );
        let at = fr[i].offset;
        edit(&path, |v| v[at..at + forged.len()].copy_from_slice(&forged));
        if mode >= 1 {
            recommit_block_holding(&path, at);
        }
        if mode == 2 {
            rechain(&f.dir);
            if which == 0 {
                // The sealed segment's index still describes the original:
                // verify gives the rewrite away through it...
                let (code, out, _) = f.verify_code();
                assert_eq!(code, 1, "{out}");
                assert!(out.contains(".idx"), "{out}");
                // ...so a careful forger removes the derived files too.
                remove_derived(&f.dir);
            }
            assert_eq!(f.verify_code().0, 0, "a consistent rewrite verifies alone");
            assert_eq!(f.verify_expect_code(), 1, "the anchored digest catches it");
            continue;
        }
        f.replay_fails_naming(&f.segs[which]);
        let (first, second) = f.reads_never_altered();
        assert!(first > 0 && second > 0);
        assert_eq!(f.verify_code().0, 1);
        assert_eq!(f.verify_expect_code(), 1);
        let e = writer_open(&f.dir);
        if which == 2 {
            corrupt_names(&e, &f.segs[2]);
        }
    }
}

/// Recompute the commit record of the block holding the frame at `at`
/// from the stored digest before the block (what a forger who fixes only
/// the block he edited does).
fn recommit_block_holding(path: &Path, at: usize) {
    let bytes = std::fs::read(path).unwrap();
    let header = auditlog::internals::segment::Header::decode(&bytes).unwrap();
    let (fr, _) = forge::frames(&bytes);
    let mut prev = header.prev_digest;
    let mut start = HEADER_SIZE;
    for x in fr.iter().filter(|x| x.rec_type == REC_COMMIT) {
        let c = auditlog::internals::segment::Commit::decode(&x.payload).unwrap();
        if x.offset > at {
            let digest = auditlog::internals::chain::block_digest(
                &prev,
                c.first_lsn,
                c.count,
                &bytes[start..x.offset],
            );
            let mut re = Vec::new();
            auditlog::internals::segment::Commit { digest, ..c }.write(&mut re);
            let o = x.offset;
            edit(path, |v| v[o..o + re.len()].copy_from_slice(&re));
            return;
        }
        prev = c.digest;
        start = x.offset + x.size;
    }
    panic!("no block holds offset {at}");
}

/// Row "delete": an event frame removed (frame CRCs all valid), in a
/// sealed and in the active segment.
#[test]
fn attack_delete_a_record() {
    for which in [0usize, 2] {
        let f = fixture();
        let path = f.seg(which);
        let (off, size) = event_frames(&path)[6];
        edit(&path, |v| {
            v.drain(off..off + size);
        });
        f.replay_fails_naming(&f.segs[which]);
        let (first, second) = f.reads_never_altered();
        assert!(first > 0 && second > 0);
        assert_eq!(f.verify_code().0, 1);
        assert_eq!(f.verify_expect_code(), 1);
        let e = writer_open(&f.dir);
        if which == 2 {
            corrupt_names(&e, &f.segs[2]);
        }
    }
}

/// Row "insert": a well-formed event frame (a copy of a real one under
/// another run id, valid CRC) inserted into a block.
#[test]
fn attack_insert_a_record() {
    for which in [0usize, 2] {
        let f = fixture();
        let path = f.seg(which);
        let bytes = std::fs::read(&path).unwrap();
        let (off, size) = event_frames(&path)[4];
        let orig = read_frame(&bytes[off..]).unwrap();
        let frame = RawFrame {
            offset: off,
            rec_type: REC_EVENT,
            payload: orig.payload.to_vec(),
            size: orig.size,
        };
        let run = auditlog::internals::codec::decode_event(orig.payload)
            .unwrap()
            .run_id;
        let forged_id = format!("x{}", &run[1..]);
        let forged = reframe(&frame, &run, &forged_id);
        edit(&path, |v| {
            v.splice(off + size..off + size, forged.iter().copied());
        });
        f.replay_fails_naming(&f.segs[which]);
        let (first, second) = f.reads_never_altered();
        assert!(first > 0 && second > 0);
        assert_eq!(f.verify_code().0, 1);
        let e = writer_open(&f.dir);
        if which == 2 {
            corrupt_names(&e, &f.segs[2]);
        }
    }
}

/// Row "reorder": two whole blocks swapped (their commit records too),
/// in a sealed segment (blocks of the same length, so the footer still
/// lines up) and in the active one.
#[test]
fn attack_reorder_blocks() {
    for which in [0usize, 2] {
        let f = fixture();
        let path = f.seg(which);
        // Two neighbouring blocks of the same length.
        let mut ends = vec![HEADER_SIZE];
        ends.extend(commit_frames(&path).iter().map(|c| c + COMMIT_FRAME));
        let k = (0..ends.len() - 2)
            .find(|&k| ends[k + 1] - ends[k] == ends[k + 2] - ends[k + 1])
            .expect("two blocks of one shape");
        let (a, b, c) = (ends[k], ends[k + 1], ends[k + 2]);
        edit(&path, |v| {
            let first = v[a..b].to_vec();
            let second = v[b..c].to_vec();
            v[a..b].copy_from_slice(&second);
            v[b..c].copy_from_slice(&first);
        });
        f.replay_fails_naming(&f.segs[which]);
        let (first, second) = f.reads_never_altered();
        assert!(first > 0 && second > 0);
        assert_eq!(f.verify_code().0, 1);
        let e = writer_open(&f.dir);
        if which == 2 {
            corrupt_names(&e, &f.segs[2]);
        }
    }
}

/// Row "truncate": a sealed segment cut short (its footer is gone: every
/// open refuses); the active segment cut inside a block (it looks exactly
/// like a torn write: reads see the committed prefix, the writer open
/// moves the cut bytes into quarantine/ and records the cut; only the
/// anchored digest tells that committed blocks went).
#[test]
fn attack_truncate() {
    let f = fixture();
    let path = f.seg(1);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let (first, second) = f.reads_never_altered();
    assert_eq!(first, READS.len());
    assert_eq!(second, READS.len());
    assert_eq!(f.verify_code().0, 1);
    corrupt_names(&writer_open(&f.dir), &f.segs[1]);

    let f = fixture();
    let path = f.seg(2);
    let cs = commit_frames(&path);
    let cut = cs[6] + COMMIT_FRAME + 20; // inside block 8
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    // The committed prefix is unaltered: reads of it succeed (answers
    // that include the lost blocks differ, and that is not "altered").
    let (code, out, err) = cli(&f.dir, &["replay"]);
    assert_eq!(code, 0, "{err}");
    assert!(f.truth["replay"].starts_with(&out), "a prefix of the truth");
    let (code, out, _) = f.verify_code();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"uncommitted_tail_bytes\":20"), "{out}");
    assert_eq!(f.verify_expect_code(), 1, "the anchored digest catches it");
    assert!(writer_open(&f.dir).is_none());
    // The cut is recorded, the cut bytes are quarantined.
    let (_, out, _) = cli(&f.dir, &["replay"]);
    assert!(
        out.contains("\"kind\":\"system\"") && out.contains("torn_tail_cut"),
        "{out}"
    );
    let (_, stats, _) = cli(&f.dir, &["stats"]);
    assert!(stats.contains("\"torn_tail_cuts\":1"), "{stats}");
    assert_eq!(f.verify_code().0, 0);
}

/// Row "drop a segment": a middle sealed segment deleted, and the newest
/// sealed one (listed in the MANIFEST): every open refuses, naming it.
#[test]
fn attack_drop_a_segment() {
    for which in [1usize, 0] {
        let f = fixture();
        std::fs::remove_file(f.seg(which)).unwrap();
        let (first, second) = f.reads_never_altered();
        assert_eq!((first, second), (READS.len(), READS.len()));
        let (code, out, _) = f.verify_code();
        assert_eq!(code, 1);
        assert!(out.contains(&f.segs[which]), "{out}");
        corrupt_names(&writer_open(&f.dir), &f.segs[which]);
    }
}

/// Row "edit the MANIFEST": a raw edit (the CRC catches it); with the CRC
/// recomputed: an entry removed (it is not re-added: every open refuses),
/// an entry's digest changed, the anchor moved.
#[test]
fn attack_edit_the_manifest() {
    let f = fixture();
    edit(&Manifest::path(&f.dir), |v| {
        let i = v.iter().position(|&c| c == b'"').unwrap();
        v[i + 1] ^= 1;
    });
    let (first, second) = f.reads_never_altered();
    assert_eq!((first, second), (READS.len(), READS.len()));
    assert_eq!(f.verify_code().0, 1);
    assert!(writer_open(&f.dir).is_some());

    type Change = fn(&mut Manifest);
    let changes: [(&str, Change); 3] = [
        ("entry removed", |m| {
            m.sealed.remove(0);
        }),
        ("digest changed", |m| {
            m.sealed[1].digest = Digest([7; 32]).to_hex();
        }),
        ("anchor moved", |m| {
            m.anchor.first_lsn = 3;
        }),
    ];
    for (what, change) in changes {
        let f = fixture();
        let mut m = Manifest::load(&f.dir).unwrap().unwrap();
        change(&mut m);
        m.store(&f.dir).unwrap();
        let (first, second) = f.reads_never_altered();
        assert_eq!((first, second), (READS.len(), READS.len()), "{what}");
        assert_eq!(f.verify_code().0, 1, "{what}");
        let before = std::fs::read(Manifest::path(&f.dir)).unwrap();
        assert!(writer_open(&f.dir).is_some(), "{what}: the writer refuses");
        assert_eq!(
            std::fs::read(Manifest::path(&f.dir)).unwrap(),
            before,
            "{what}: the MANIFEST is not silently repaired"
        );
    }
}

/// Row "forge an index file": a stored index replaced by garbage, by
/// another segment's index, and rewritten consistently (a posting list
/// changed, every CRC recomputed). The first two are rebuilt by every read
/// and fail `verify`; the consistent one is believed by index-only answers
/// until `verify` (plain: it compares every stored index with the image
/// built from the events it decodes) finds it, moves it aside and rebuilds
/// it.
#[test]
fn attack_forge_an_index_file() {
    let f = fixture();
    let idx0 = f.seg(0).with_extension("idx");
    let idx1 = f.seg(1).with_extension("idx");
    assert!(
        idx0.exists() && idx1.exists(),
        "the reads built the indexes"
    );
    // Garbage.
    std::fs::write(&idx0, b"not an index at all").unwrap();
    assert_eq!(f.reads_pass("with a garbage index"), 0);
    // Another segment's index under this name.
    std::fs::copy(&idx1, &idx0).unwrap();
    let (code, out, _) = f.verify_code();
    assert_eq!(code, 1, "verify names the foreign index: {out}");
    assert!(out.contains(".idx"), "{out}");
    assert!(f.dir.join("quarantine").read_dir().unwrap().count() > 0);
    assert_eq!(f.reads_pass("after verify moved it aside"), 0);
    assert_eq!(f.verify_code().0, 0, "rebuilt by then");

    // A consistent forgery: caller-1's runs of segment 1 attributed to
    // caller-2 in the string heap, every checksum recomputed.
    let mut b = std::fs::read(&idx0).unwrap();
    crate::fuzz_shared::forge_index_caller(&mut b);
    std::fs::write(&idx0, &b).unwrap();
    let (code, out, _) = f.verify_code();
    assert_eq!(
        code, 1,
        "plain verify compares with the image its walk built: {out}"
    );
    assert!(out.contains(".idx"), "{out}");
    assert_eq!(f.reads_pass("after verify"), 0);
    assert_eq!(f.verify_code().0, 0);
    // --deep (a second build through the query engine's path) agrees.
    assert_eq!(cli(&f.dir, &["verify", "--deep"]).0, 0);
}

/// Row "fake a retention": the oldest segment deleted and the MANIFEST
/// edited to look like a retention (anchor moved to its end, entry
/// removed, totals bumped, CRC recomputed). No retention record in the
/// log: every open refuses.
#[test]
fn attack_fake_a_retention() {
    let f = fixture();
    let mut m = Manifest::load(&f.dir).unwrap().unwrap();
    let gone = m.sealed.remove(0);
    m.anchor.first_lsn = gone.first_lsn + gone.count;
    m.anchor.digest = gone.digest.clone();
    m.anchor.first_seq = gone.seq + 1;
    m.dropped_segments += 1;
    m.dropped_events += gone.count;
    m.store(&f.dir).unwrap();
    std::fs::remove_file(f.seg(0)).unwrap();
    let _ = std::fs::remove_file(f.seg(0).with_extension("idx"));
    let (first, second) = f.reads_never_altered();
    assert_eq!((first, second), (READS.len(), READS.len()));
    let (code, out, err) = f.verify_code();
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("retention") || out.contains("retention"),
        "{out} {err}"
    );
    assert!(writer_open(&f.dir).is_some());

    // A real retention verifies and leaves its record.
    let f = fixture();
    let (code, out, err) = cli(&f.dir, &["retain", "--before", "2026-11-24T00:00:00Z"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&f.segs[0]), "{out}");
    assert_eq!(f.verify_code().0, 0);
    let (_, out, _) = cli(&f.dir, &["replay"]);
    assert!(out.contains("\"record\":\"retention\""), "{out}");
    let (_, stats, _) = cli(&f.dir, &["stats"]);
    assert!(stats.contains("\"retentions\":1"), "{stats}");
}

/// Row "cut the tail": the active segment cut at a block boundary, then
/// deleted. Nothing is damaged, so only the anchored digest can tell (and
/// the next writer reuses those LSNs: issue 19's signed checkpoints are
/// what would catch it without an anchor).
#[test]
fn attack_cut_the_tail() {
    let f = fixture();
    let path = f.seg(2);
    let keep = commit_frames(&path)[6] + COMMIT_FRAME;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(keep as u64)
        .unwrap();
    let (code, out, _) = cli(&f.dir, &["replay"]);
    assert_eq!(code, 0);
    assert!(f.truth["replay"].starts_with(&out), "an unaltered prefix");
    assert_eq!(f.verify_code().0, 0, "an unanchored verify cannot see it");
    assert_eq!(f.verify_expect_code(), 1);
    let anchor = cli(&f.dir, &["verify", "--expect", &f.anchor.to_hex()]).0;
    assert_eq!(anchor, 0, "yesterday's anchor is still in the chain");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(f.verify_code().0, 0);
    assert_eq!(f.verify_expect_code(), 1);
    assert!(writer_open(&f.dir).is_none());
}

/// Row "forge an undecodable record": a record with trailing bytes, an
/// unknown variant, a bool byte of 2, invalid JSON text in a JSON field,
/// a timestamp of -1 or 2^62, each in a chain rewritten consistently. The
/// strict decoder that every read uses refuses it, and so does `verify`.
#[test]
fn attack_forge_an_undecodable_record() {
    type Spoil = fn(&mut Vec<u8>, &Event);
    let spoilers: [(&str, Spoil); 6] = [
        ("trailing bytes", |p, _| p.extend_from_slice(&[0, 0])),
        ("unknown variant", |p, e| {
            // After run_id (a one-byte length) and ts: the EventData index.
            p[1 + e.run_id.len() + ts_len(e.ts)] = 7;
        }),
        ("bool byte 2", |p, _| {
            // RunStarted's last field is dry_run, before the empty extra.
            let n = p.len();
            p[n - 2] = 2;
        }),
        ("invalid JSON text", |p, _| {
            let i = find_bytes(p, b"{\"q\":").unwrap();
            p[i] = b'[';
        }),
        ("ts -1", |p, e| respell_ts(p, e, -1)),
        ("ts 2^62", |p, e| respell_ts(p, e, 1 << 62)),
    ];
    for (what, spoil) in spoilers {
        let f = fixture();
        let path = f.seg(0);
        rewrite_frames(&path, |fr| {
            let i = fr.iter().position(|x| x.rec_type == REC_EVENT).unwrap();
            let ev = auditlog::internals::codec::decode_event(&fr[i].payload).unwrap();
            spoil(&mut fr[i].payload, &ev);
        });
        rechain(&f.dir);
        let (code, out, _) = f.verify_code();
        assert_eq!(code, 1, "{what}: {out}");
        assert!(
            out.contains(&f.segs[0]) && out.contains("\"offset\":72"),
            "{what}: {out}"
        );
        let (first, second) = f.reads_never_altered();
        assert!(first > 0 && second > 0, "{what}");
        let (code, _, err) = cli(&f.dir, &["replay"]);
        assert_ne!(code, 0, "{what}");
        assert!(err.contains(&f.segs[0]), "{what}: {err}");
        // An ingest into this log stores its events, and then does not
        // claim success: the log cannot be indexed.
        if what == "trailing bytes" {
            let line = std::env::temp_dir().join(format!("attack-{}.jsonl", std::process::id()));
            std::fs::write(
                &line,
                r#"{"kind":"run_started","run_id":"late","ts":1795564800000000}"#.to_string()
                    + "\n",
            )
            .unwrap();
            let (code, out, err) = cli(&f.dir, &["ingest", line.to_str().unwrap()]);
            let _ = std::fs::remove_file(&line);
            assert_ne!(code, 0, "{out} {err}");
            assert!(err.contains("stored") && err.contains(&f.segs[0]), "{err}");
        }
    }
}

/// Bytes of `ts` in the codec's encoding (zigzag, then a varint).
fn ts_len(ts: i64) -> usize {
    let z = ((ts << 1) ^ (ts >> 63)) as u64;
    match z {
        0..=250 => 1,
        251..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Re-encode the event with another ts (as the codec would write it).
fn respell_ts(p: &mut Vec<u8>, e: &Event, ts: i64) {
    let mut b = Vec::new();
    auditlog::internals::codec::encode_event(&Event { ts, ..e.clone() }, &mut b).unwrap();
    *p = b;
}

/// Row "append a valid block": a well-formed block (a forged event, its
/// commit record with the right digest) appended to the active segment.
/// Nothing in the log can tell it from a real one: it verifies, even
/// against yesterday's and today's anchors (which it does not remove).
/// Signed checkpoints (issue 19) are what will catch it.
#[test]
fn attack_append_a_valid_block() {
    let f = fixture();
    let path = f.seg(2);
    let bytes = std::fs::read(&path).unwrap();
    let (fr, _) = forge::frames(&bytes);
    let last_commit = fr.iter().rev().find(|x| x.rec_type == REC_COMMIT).unwrap();
    let c = auditlog::internals::segment::Commit::decode(&last_commit.payload).unwrap();
    let ev = started(999, DAY0 + 2 * DAY_US + 999_000, "");
    let mut frame = Vec::new();
    let mut body = Vec::new();
    auditlog::internals::codec::encode_event(&ev, &mut body).unwrap();
    write_frame(&mut frame, REC_EVENT, &body);
    let first = c.first_lsn + c.count as u64;
    let digest = auditlog::internals::chain::block_digest(&c.digest, first, 1, &frame);
    auditlog::internals::segment::Commit {
        first_lsn: first,
        count: 1,
        digest,
    }
    .write(&mut frame);
    edit(&path, |v| v.extend_from_slice(&frame));
    assert_eq!(f.verify_code().0, 0, "not detectable without checkpoints");
    assert_eq!(f.verify_expect_code(), 0, "an append keeps the anchor");
    assert!(writer_open(&f.dir).is_none());
    let _ = HEADER_SIZE;
}

/// The repair path of row "edit" in the active segment: `auditlog repair`
/// moves the damaged file into quarantine/ byte for byte, keeps the valid
/// prefix, skips the LSNs the damaged part held, records the repair; then
/// the log verifies, reads work, a new append gets a fresh LSN.
#[test]
fn repair_moves_the_damaged_segment_aside_and_the_log_verifies() {
    let f = fixture();
    let path = f.seg(2);
    let (off, _) = event_frames(&path)[8];
    edit(&path, |v| v[off + 12] ^= 0x20);
    let damaged = std::fs::read(&path).unwrap();
    corrupt_names(&writer_open(&f.dir), &f.segs[2]);
    let (code, out, err) = cli(&f.dir, &["repair"]);
    assert_eq!(code, 0, "{out} {err}");
    let q: Vec<Vec<u8>> = std::fs::read_dir(f.dir.join("quarantine"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert!(q.contains(&damaged), "the damaged file, byte for byte");
    assert_eq!(f.verify_code().0, 0);
    let (code, out, _) = cli(&f.dir, &["replay"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"record\":\"repair\""), "{out}");
    // Every event before the damage is still there.
    let before: Vec<&str> = f.truth["replay"].lines().collect();
    let after: Vec<&str> = out.lines().collect();
    let kept = before.iter().take_while(|l| after.contains(l)).count();
    assert!(
        kept >= 20 * 3,
        "the sealed days and the valid prefix are kept"
    );
    let (_, stats, _) = cli(&f.dir, &["stats"]);
    assert!(stats.contains("\"repairs\":1"), "{stats}");
    let mut cfg = Config::new(&f.dir);
    cfg.create = false;
    let log = Log::open(cfg).unwrap();
    let head_before = log.head().next_lsn;
    let r = log
        .append(&started(777, DAY0 + 3 * DAY_US, ""))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(r.first, head_before);
    log.close().unwrap();
    assert_eq!(f.verify_code().0, 0);
}
