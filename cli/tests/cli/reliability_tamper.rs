//! Tamper evidence: edit a byte, delete a record, insert a forged record
//! with a valid CRC, reorder records, truncate a sealed segment, delete a
//! middle segment, edit the MANIFEST. `verify` must fail and name the
//! segment and offset. A forger who rewrites the whole chain consistently
//! (the hash chain has no secret) is caught by an anchored head digest:
//! `verify --expect DIGEST` passes on an untouched log, fails after.

use crate::support;

use std::path::{Path, PathBuf};

use auditlog::internals::frame::{read_frame, write_frame, REC_COMMIT, REC_EVENT, REC_FOOTER};
use auditlog::internals::manifest::Manifest;
use auditlog::internals::segment::{Commit, COMMIT_FRAME_SIZE as COMMIT_FRAME, HEADER_SIZE};
use auditlog::{verify, Digest, Error, Log};
use support::*;

struct Built {
    _t: tempfile::TempDir,
    dir: PathBuf,
    /// Head after day 0 (anchored "yesterday").
    anchor: Digest,
    head: Digest,
    /// Segment file names, oldest first (two sealed, one active).
    segs: Vec<String>,
}

/// Three UTC days of events, 10 blocks of 3 per day: segments 1 and 2
/// sealed, 3 active.
fn build() -> Built {
    let (t, dir) = scratch();
    let log = Log::open(config(&dir)).unwrap();
    let mut n = 0;
    let mut anchor = None;
    for day in 0..3 {
        for _ in 0..10 {
            let batch: Vec<_> = (0..3)
                .map(|_| {
                    n += 1;
                    ev(n, DAY0 + day * DAY_US + n as i64)
                })
                .collect();
            log.append_batch(&batch).unwrap().wait().unwrap();
        }
        if day == 0 {
            anchor = Some(log.head().digest);
        }
    }
    let head = log.head().digest;
    log.close().unwrap();
    let mut segs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    segs.sort();
    assert_eq!(segs.len(), 3);
    verify(&dir, Some(head), |_, _| {}).expect("untouched log verifies");
    Built {
        _t: t,
        dir,
        anchor: anchor.unwrap(),
        head,
        segs,
    }
}

/// (offset, size, record type) of every frame after the header.
fn frames(path: &Path) -> Vec<(usize, usize, u8)> {
    let b = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = HEADER_SIZE;
    while let Ok(f) = read_frame(&b[pos..]) {
        out.push((pos, f.size, f.rec_type));
        pos += f.size;
        if f.rec_type == REC_FOOTER {
            break;
        }
    }
    out
}

fn events_of(path: &Path) -> Vec<(usize, usize)> {
    frames(path)
        .into_iter()
        .filter(|f| f.2 == REC_EVENT)
        .map(|f| (f.0, f.1))
        .collect()
}

fn commits_of(path: &Path) -> Vec<usize> {
    frames(path)
        .into_iter()
        .filter(|f| f.2 == REC_COMMIT)
        .map(|f| f.0)
        .collect()
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

/// verify must fail with Corrupt naming `seg`; returns (offset, reason).
fn corrupt_at(dir: &Path, seg: &str) -> (u64, String) {
    match verify(dir, None, |_, _| {}) {
        Err(Error::Corrupt {
            segment,
            offset,
            reason,
        }) => {
            assert_eq!(segment, seg, "names the tampered segment ({reason})");
            (offset, reason)
        }
        other => panic!("tampering not caught: {other:?}"),
    }
}

#[test]
fn an_edited_byte_is_caught_at_its_frame() {
    for which in [0usize, 2] {
        let b = build();
        let seg = &b.segs[which];
        let path = b.dir.join(seg);
        let (off, _) = events_of(&path)[4];
        edit(&path, |v| v[off + 12] ^= 0x20); // a byte of the run id
        let (at, reason) = corrupt_at(&b.dir, seg);
        assert_eq!(at, off as u64, "{reason}");
        assert!(reason.contains("CRC"), "{reason}");
        assert!(verify(&b.dir, Some(b.head), |_, _| {}).is_err());
    }
}

#[test]
fn a_deleted_record_is_caught() {
    // In the active segment: the block's commit no longer matches.
    let b = build();
    let seg = &b.segs[2];
    let path = b.dir.join(seg);
    let (off, size) = events_of(&path)[7]; // block 3 (events 6..9), middle
    let commit = commits_of(&path)[2];
    edit(&path, |v| {
        v.drain(off..off + size);
    });
    let (at, reason) = corrupt_at(&b.dir, seg);
    assert_eq!(at, (commit - size) as u64, "{reason}");
    assert!(reason.contains("commit record says"), "{reason}");

    // In a sealed segment: the footer no longer sits where the trailer says.
    let b = build();
    let seg = &b.segs[0];
    let path = b.dir.join(seg);
    let (off, size) = events_of(&path)[4];
    edit(&path, |v| {
        v.drain(off..off + size);
    });
    let (at, reason) = corrupt_at(&b.dir, seg);
    assert!(
        at > 0 && at < std::fs::metadata(&path).unwrap().len(),
        "{at} {reason}"
    );
}

#[test]
fn a_forged_record_with_a_valid_crc_is_caught() {
    let b = build();
    let seg = &b.segs[2];
    let path = b.dir.join(seg);
    let (off, size) = events_of(&path)[3]; // first event of block 2
    let commit = commits_of(&path)[1];
    // Clone a real event body under a new run id: a well-formed record.
    let bytes = std::fs::read(&path).unwrap();
    let body = read_frame(&bytes[off..]).unwrap().payload.to_vec();
    let forged_body = String::from_utf8_lossy(&body).replace("ev-64", "ev-99");
    assert_ne!(forged_body.as_bytes(), &body[..], "the run id was found");
    let mut forged = Vec::new();
    write_frame(&mut forged, REC_EVENT, forged_body.as_bytes());
    assert!(read_frame(&forged).is_ok(), "forged frame has a valid CRC");
    // 1. Inserted as is: the commit count is off.
    edit(&path, |v| {
        v.splice(off + size..off + size, forged.iter().copied());
    });
    let (at, reason) = corrupt_at(&b.dir, seg);
    assert_eq!(at, (commit + forged.len()) as u64, "{reason}");
    // 2. And the commit record rewritten to count it (valid CRC): the
    // chain digest gives it away.
    edit(&path, |v| {
        let c0 = commit + forged.len();
        let old = Commit::decode(read_frame(&v[c0..]).unwrap().payload).unwrap();
        let mut re = Vec::new();
        Commit {
            count: old.count + 1,
            ..old
        }
        .write(&mut re);
        v.splice(c0..c0 + re.len(), re);
    });
    let (at, reason) = corrupt_at(&b.dir, seg);
    assert_eq!(at, (commit + forged.len()) as u64, "{reason}");
    assert!(reason.contains("chain digest mismatch"), "{reason}");
}

#[test]
fn reordered_records_are_caught() {
    // Two records within a block of a sealed segment (same length, so the
    // footer and trailer still line up).
    let b = build();
    let seg = &b.segs[0];
    let path = b.dir.join(seg);
    let ev = events_of(&path);
    let (a, sa) = ev[6];
    let (c, sc) = ev[7];
    assert_eq!(sa, sc);
    let commit = commits_of(&path)[2];
    edit(&path, |v| {
        let x = v[a..a + sa].to_vec();
        let y = v[c..c + sc].to_vec();
        v[a..a + sa].copy_from_slice(&y);
        v[c..c + sc].copy_from_slice(&x);
    });
    let (at, reason) = corrupt_at(&b.dir, seg);
    assert_eq!(at, commit as u64, "{reason}");
    assert!(reason.contains("chain digest mismatch"), "{reason}");

    // Two whole blocks swapped in the active segment.
    let b = build();
    let seg = &b.segs[2];
    let path = b.dir.join(seg);
    let cs = commits_of(&path);
    let (start, mid, end) = (HEADER_SIZE, cs[0] + COMMIT_FRAME, cs[1] + COMMIT_FRAME);
    assert_eq!(
        read_frame(&std::fs::read(&path).unwrap()[cs[0]..])
            .unwrap()
            .size,
        COMMIT_FRAME
    );
    edit(&path, |v| {
        let first = v[start..mid].to_vec();
        let second = v[mid..end].to_vec();
        let mut both = second;
        both.extend_from_slice(&first);
        v[start..end].copy_from_slice(&both);
    });
    let (at, reason) = corrupt_at(&b.dir, seg);
    assert_eq!(at as usize, start + (end - mid) - COMMIT_FRAME, "{reason}");
}

#[test]
fn a_truncated_sealed_segment_is_caught() {
    for cut in [1u64, 16, 100, 2000] {
        let b = build();
        let seg = &b.segs[1];
        let path = b.dir.join(seg);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - cut).unwrap();
        let (at, reason) = corrupt_at(&b.dir, seg);
        assert_eq!(at, len - cut, "{reason}");
        assert!(reason.contains("footer"), "{reason}");
    }
}

#[test]
fn a_deleted_middle_segment_is_caught() {
    let b = build();
    std::fs::remove_file(b.dir.join(&b.segs[1])).unwrap();
    let (at, reason) = corrupt_at(&b.dir, &b.segs[1]);
    assert_eq!(at, 0);
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn an_edited_manifest_is_caught() {
    // A raw edit: the CRC line catches it.
    let b = build();
    let mpath = Manifest::path(&b.dir);
    edit(&mpath, |v| {
        let i = v.iter().position(|&c| c == b'"').unwrap();
        v[i + 1] ^= 1;
    });
    assert!(matches!(
        verify(&b.dir, None, |_, _| {}),
        Err(Error::Manifest { .. })
    ));
    // An edit with the CRC recomputed: the footers disagree with it.
    let b = build();
    let mut m = Manifest::load(&b.dir).unwrap().unwrap();
    m.sealed[1].count -= 1;
    m.store(&b.dir).unwrap();
    let (_, reason) = corrupt_at(&b.dir, &b.segs[1]);
    assert!(reason.contains("MANIFEST"), "{reason}");
}

/// The whole log rewritten by someone who knows the format: every CRC,
/// digest, footer and the MANIFEST consistent. Only an anchor catches it.
#[test]
fn a_consistent_rewrite_is_caught_by_the_anchored_digest() {
    let b = build();
    let events = replay_all(&b.dir);
    let (_t2, forged) = scratch();
    let log = Log::open(config(&forged)).unwrap();
    // Same blocks as the original (batches of 3), one record removed on
    // day 1.
    for (b, chunk) in events.chunks(3).enumerate() {
        let batch: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter(|(i, _)| b * 3 + i != 40)
            .map(|(_, (_, e))| e.clone())
            .collect();
        log.append_batch(&batch).unwrap().wait().unwrap();
    }
    log.close().unwrap();
    verify(&forged, None, |_, _| {}).expect("a consistent forgery verifies alone");
    assert!(verify(&forged, Some(b.head), |_, _| {})
        .unwrap()
        .expect_found_at
        .is_none());
    // The day-0 anchor still matches: the change came after it.
    assert_eq!(
        verify(&forged, Some(b.anchor), |_, _| {})
            .unwrap()
            .expect_found_at,
        Some(30)
    );
}

#[test]
fn cli_verify_expect_passes_untouched_and_fails_after_tampering() {
    let b = build();
    let head = b.head.to_hex();
    let (code, out, err) = cli(&b.dir, &["verify", "--expect", &head]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("\"ok\":true") && out.contains(&head), "{out}");
    let (code, out, _) = cli(&b.dir, &["verify", "--expect", &b.anchor.to_hex()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"found_at_lsn\":30"), "{out}");

    // The newest blocks cut off at a block boundary: no frame is damaged,
    // so only the anchor can tell.
    let seg = b.dir.join(&b.segs[2]);
    let keep = commits_of(&seg)[7] + COMMIT_FRAME;
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(keep as u64).unwrap();
    let (code, _, _) = cli(&b.dir, &["verify"]);
    assert_eq!(code, 0, "an unanchored verify cannot see a clean cut");
    let (code, out, err) = cli(&b.dir, &["verify", "--expect", &head]);
    assert_eq!(code, 1, "{out} {err}");
    assert!(err.contains("does not appear"), "{err}");
    // The whole active segment deleted: likewise.
    std::fs::remove_file(&seg).unwrap();
    let (code, _, _) = cli(&b.dir, &["verify", "--expect", &head]);
    assert_eq!(code, 1);

    // A flipped byte: exit 1, JSON naming segment and offset.
    let b = build();
    let path = b.dir.join(&b.segs[0]);
    let (off, _) = events_of(&path)[2];
    edit(&path, |v| v[off + 20] ^= 1);
    let (code, out, err) = cli(&b.dir, &["verify", "--expect", &b.head.to_hex()]);
    assert_eq!(code, 1, "{out} {err}");
    let want = format!("\"segment\":\"{}\",\"offset\":{off}", b.segs[0]);
    assert!(out.contains(&want), "{out}");
    assert!(err.contains(&b.segs[0]), "{err}");
}
