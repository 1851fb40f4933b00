//! The run-id filter stored in sealed images (RFILT, version 7): every
//! started id passes it, chunks have none, and a damaged filter never
//! hides a run (a line in a block failing its CRC reads "maybe present").

use super::image::*;
use super::run_filter::{line_of, lines_for, LINE};
use super::{Builder, NoOlder};
use crate::chain::Digest;
use crate::event::{Event, RunStarted};
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
fn an_image_of_version_6_is_refused_by_number() {
    let mut b = image_bytes(KIND_SEALED);
    b[hdr::VERSION..hdr::VERSION + 4].copy_from_slice(&6u32.to_le_bytes());
    assert!(matches!(
        Image::open(Backing::Vec(b)),
        Err(ImageError::UnsupportedVersion { found: 6 })
    ));
}
