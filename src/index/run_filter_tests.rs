//! The run-id filter stored in sealed images (RFILT, version 7; version 8
//! adds the ids of LOGS): every started id and every id with a log passes
//! it, chunks have none, and a damaged filter never hides a run or its
//! logs (a line in a block failing its CRC reads "maybe present").

use super::image::*;
use super::run_filter::{line_of, lines_for, LINE};
use super::{Builder, NoOlder};
use crate::chain::Digest;
use crate::event::{Event, Json, RunLog, RunStarted};
use crate::segment::HEADER_SIZE;

/// Enough runs that RUNS (112 bytes each) spans several 64 KiB blocks and
/// the filter, the last section, lies in a block of its own.
const RUNS: usize = 3000;

fn image_bytes(kind: u32) -> Vec<u8> {
    let mut b = Builder::new(kind, 2, 100, HEADER_SIZE as u64);
    for i in 0..RUNS {
        let lsn = 100 + i as u64;
        let off = HEADER_SIZE as u64 + 10 * i as u64;
        let ev = Event::run_started(format!("r-{i}"), 1_000 + i as i64, RunStarted::default());
        b.add(lsn, off, off + 10, &ev);
    }
    b.finish(Digest([0; 32]), &NoOlder)
}

fn open(bytes: Vec<u8>) -> Image {
    Image::open(Backing::Vec(bytes)).unwrap()
}

fn section(b: &[u8], s: usize) -> (usize, usize) {
    let at = HEADER_LEN + 16 * s;
    let w = |at| usize::try_from(le_u64(b, at)).unwrap();
    (w(at), w(at + 8))
}

#[test]
fn a_sealed_image_stores_two_bytes_a_run_and_passes_every_id() {
    let b = image_bytes(KIND_SEALED);
    let (_, len) = section(&b, S_RFILT);
    assert_eq!(len, lines_for(RUNS) * LINE);
    assert!((RUNS * 2..RUNS * 2 + LINE).contains(&len), "2 bytes a run");
    let img = open(b);
    assert!(img.has_run_filter());
    for i in 0..RUNS {
        let id = format!("r-{i}");
        let h = RunHash::of(id.as_bytes());
        let pos = img.find_run_if_filtered(id.as_bytes(), h);
        assert_eq!(pos, img.find_run(id.as_bytes()), "{id}");
        assert!(pos.is_some());
    }
    let skipped = (0..10_000)
        .filter(|i| {
            let id = format!("elsewhere-{i}");
            img.find_run_if_filtered(id.as_bytes(), RunHash::of(id.as_bytes()))
                .is_none()
        })
        .count();
    assert_eq!(skipped, 10_000);
    assert!(img.verify_all());
}

#[test]
fn a_chunk_stores_no_filter_and_still_finds_its_runs() {
    let b = image_bytes(KIND_CHUNK);
    assert_eq!(section(&b, S_RFILT).1, 0);
    let img = open(b);
    assert!(!img.has_run_filter());
    let id = b"r-17";
    assert!(img.find_run_if_filtered(id, RunHash::of(id)).is_some());
}

#[test]
fn a_damaged_filter_line_reads_maybe_present_and_poisons_the_image() {
    let b = image_bytes(KIND_SEALED);
    let (off, len) = section(&b, S_RFILT);
    let lines = len / LINE;
    let runs_end = {
        let (o, l) = section(&b, S_RUNS);
        o + l
    };
    assert!(
        (off - BODY_START) / BLOCK > (runs_end - BODY_START) / BLOCK,
        "the filter is in a block of its own"
    );
    for i in [0usize, 1, 1234, RUNS - 1] {
        let id = format!("r-{i}");
        let h = RunHash::of(id.as_bytes());
        // Every bit of the id's line clear: unchecked, it would say "absent".
        let at = off + line_of(h, lines) * LINE;
        let mut bad = b.clone();
        bad[at..at + LINE].fill(0);
        let want = open(b.clone()).find_run(id.as_bytes());
        assert!(want.is_some());
        let img = open(bad);
        assert_eq!(img.find_run_if_filtered(id.as_bytes(), h), want, "{id}");
        assert!(img.poisoned(), "the engine rebuilds a poisoned image");
    }
    // A single flipped bit anywhere in the filter does the same.
    let mut bad = b.clone();
    bad[off + len / 2] ^= 0x10;
    let img = open(bad);
    for i in (0..RUNS).step_by(97) {
        let id = format!("r-{i}");
        let h = RunHash::of(id.as_bytes());
        assert!(img.find_run_if_filtered(id.as_bytes(), h).is_some(), "{id}");
    }
    assert!(img.poisoned());
}

#[test]
fn images_of_versions_6_and_7_are_refused_by_number() {
    // 7's filter lacks the ids of LOGS: read as version 8 it would hide
    // the logs of runs started in another image.
    for v in [6u32, 7] {
        let mut b = image_bytes(KIND_SEALED);
        b[hdr::VERSION..hdr::VERSION + 4].copy_from_slice(&v.to_le_bytes());
        assert!(matches!(
            Image::open(Backing::Vec(b)),
            Err(ImageError::UnsupportedVersion { found }) if found == v
        ));
    }
}

/// Runs started here (`r-*`, one log each for the even ones) and logs of
/// runs started elsewhere (`late-*`, two logs each, no start here).
const LATE: usize = 500;

fn log(seq: u64) -> RunLog {
    RunLog {
        seq,
        event_type: "note".into(),
        payload: Json::null(),
    }
}

fn image_with_logs(kind: u32) -> Vec<u8> {
    let mut b = Builder::new(kind, 2, 100, HEADER_SIZE as u64);
    let mut lsn = 100u64;
    let mut add = |b: &mut Builder, ev: &Event| {
        let off = HEADER_SIZE as u64 + 10 * (lsn - 100);
        b.add(lsn, off, off + 10, ev);
        lsn += 1;
    };
    for i in 0..RUNS {
        let id = format!("r-{i}");
        add(
            &mut b,
            &Event::run_started(id.clone(), 1_000 + i as i64, RunStarted::default()),
        );
        if i.is_multiple_of(2) {
            add(&mut b, &Event::run_log(id, 1_001 + i as i64, log(0)));
        }
    }
    for i in 0..LATE {
        for seq in 0..2 {
            let id = format!("late-{i}");
            add(&mut b, &Event::run_log(id, 9_000 + i as i64, log(seq)));
        }
    }
    b.finish(Digest([0; 32]), &NoOlder)
}

#[test]
fn ids_with_logs_but_no_start_pass_the_filter_and_their_logs_are_found() {
    let b = image_with_logs(KIND_SEALED);
    let (_, len) = section(&b, S_RFILT);
    assert_eq!(
        len,
        lines_for(RUNS + LATE) * LINE,
        "2 bytes an id, each once"
    );
    let img = open(b);
    for i in 0..LATE {
        let id = format!("late-{i}");
        let h = RunHash::of(id.as_bytes());
        let logs = img.logs_of_if_filtered(id.as_bytes(), h);
        assert_eq!(logs.len(), 2, "{id}");
        assert_eq!(logs.len(), img.logs_of(id.as_bytes()).len());
        // Not a start: the search of RUNS behind the filter says so.
        assert_eq!(img.find_run_if_filtered(id.as_bytes(), h), None);
    }
    for i in 0..RUNS {
        let id = format!("r-{i}");
        let h = RunHash::of(id.as_bytes());
        assert_eq!(
            img.logs_of_if_filtered(id.as_bytes(), h).len(),
            usize::from(i.is_multiple_of(2)),
            "{id}"
        );
    }
    // Ids with nothing here: the filter answers, no search of LOGS.
    let skipped = (0..10_000)
        .filter(|i| {
            let id = format!("elsewhere-{i}");
            !img.may_hold_run(RunHash::of(id.as_bytes()))
        })
        .count();
    assert!(skipped > 9_950, "{skipped} of 10000 skipped");
    assert!(img.verify_all());
}

#[test]
fn a_chunk_has_no_filter_and_its_logs_are_searched() {
    let b = image_with_logs(KIND_CHUNK);
    assert_eq!(section(&b, S_RFILT).1, 0);
    let img = open(b);
    let id = b"late-7";
    assert_eq!(img.logs_of_if_filtered(id, RunHash::of(id)).len(), 2);
}

#[test]
fn a_damaged_filter_never_hides_logs_and_poisons_the_image() {
    let b = image_with_logs(KIND_SEALED);
    let (off, len) = section(&b, S_RFILT);
    let lines = len / LINE;
    for i in [0usize, 17, LATE - 1] {
        let id = format!("late-{i}");
        let h = RunHash::of(id.as_bytes());
        let at = off + line_of(h, lines) * LINE;
        let mut bad = b.clone();
        bad[at..at + LINE].fill(0);
        let img = open(bad);
        // "Maybe": LOGS is searched (its records may share the damaged
        // block and read empty: the poisoned image's answer is thrown
        // away and the image rebuilt, tests/engine/query_index.rs).
        assert!(img.may_hold_run(h), "{id}");
        assert!(img.poisoned(), "the engine rebuilds a poisoned image");
    }
}
