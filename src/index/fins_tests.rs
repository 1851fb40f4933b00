//! The FINS section on disk: searched by (hash, id), with start pointers
//! and the dry-run header flag; damaged or short sections give typed
//! errors or a poisoned image, never a panic.

use super::image::*;
use super::Builder;
use crate::chain::Digest;
use crate::event::{Event, RunFinished, RunStarted};
use crate::segment::HEADER_SIZE;

fn finish(id: &str, ts: i64, status: &str) -> Event {
    let f = RunFinished {
        status: status.into(),
        ..RunFinished::default()
    };
    Event::run_finished(id, ts, f)
}

/// An image of segment 2 holding: starts of `s-*` (finished locally or
/// not), finishes of `f-*` whose starts are in an older image (the
/// shadow lookup says segment 1, position = the id's number), and one
/// orphan finish.
fn image_bytes(n: usize, dry: bool) -> Vec<u8> {
    let mut b = Builder::new(KIND_SEALED, 2, 100, HEADER_SIZE as u64);
    let mut lsn = 100u64;
    let mut add = |b: &mut Builder, ev: Event| {
        let off = HEADER_SIZE as u64 + 10 * (lsn - 100);
        b.add(lsn, off, off + 10, &ev);
        lsn += 1;
    };
    for i in 0..n {
        add(
            &mut b,
            Event::run_started(format!("s-{i}"), 1_000, RunStarted::default()),
        );
        if i % 2 == 0 {
            add(&mut b, finish(&format!("s-{i}"), 2_000, "ok"));
        }
        let status = if dry && i == 3 { "dry_run" } else { "error" };
        add(&mut b, finish(&format!("f-{i}"), 3_000 + i as i64, status));
    }
    add(&mut b, finish("orphan", 4_000, "ok"));
    b.finish(Digest([0; 32]), &FStartsOlder)
}

/// Older images hold the start of every `f-K`, at position K of segment 1.
struct FStartsOlder;

impl super::Older for FStartsOlder {
    fn start(&self, id: &str) -> Option<(u64, u32)> {
        id.strip_prefix("f-")
            .and_then(|k| k.parse::<u32>().ok())
            .map(|k| (1, k))
    }
    fn has_log(&self, _: &str, _: u64) -> bool {
        false
    }
}

fn open(bytes: Vec<u8>) -> Result<Image, ImageError> {
    Image::open(Backing::Vec(bytes))
}

#[test]
fn every_foreign_finish_is_found_with_its_start_pointer_and_nothing_else() {
    let img = open(image_bytes(200, false)).unwrap();
    assert_eq!(img.n_fins(), 201, "200 cross-image finishes and the orphan");
    assert!(!img.has_dry_fins());
    for i in 0..200u32 {
        let id = format!("f-{i}");
        let f = img
            .find_fin(id.as_bytes(), RunHash::of(id.as_bytes()))
            .unwrap();
        assert_eq!(f.id, id.as_bytes());
        assert_eq!((f.status, f.start_seq, f.start_pos), (&b"error"[..], 1, i));
        assert_eq!(f.ts, 3_000 + i64::from(i));
    }
    let o = img.find_fin(b"orphan", RunHash::of(b"orphan")).unwrap();
    assert_eq!(o.start_seq, NONE, "no start before it");
    // Ids started here (finished or not) and unknown ids are not in FINS.
    for id in ["s-0", "s-1", "f-200", "", "zzz"] {
        assert!(
            img.find_fin(id.as_bytes(), RunHash::of(id.as_bytes()))
                .is_none(),
            "{id}"
        );
    }
    // Sorted by (hash, id).
    let key = |i: usize| {
        let f = img.fin(i);
        (RunHash::of(f.id).0, f.id)
    };
    assert!((1..img.n_fins()).all(|i| key(i - 1) < key(i)));
    assert!(img.verify_all() && !img.poisoned());
}

#[test]
fn a_dry_run_finish_sets_the_header_flag() {
    assert!(open(image_bytes(10, true)).unwrap().has_dry_fins());
}

/// Rewrite the FINS entry of the section table and reseal the header CRC.
fn with_fins_entry(mut b: Vec<u8>, edit: impl Fn(u64, u64) -> (u64, u64)) -> Vec<u8> {
    let at = HEADER_LEN + 16 * S_FINS;
    let off = le_u64(&b, at);
    let len = le_u64(&b, at + 8);
    let (off, len) = edit(off, len);
    b[at..at + 8].copy_from_slice(&off.to_le_bytes());
    b[at + 8..at + 16].copy_from_slice(&len.to_le_bytes());
    let table = usize::try_from(le_u64(&b, hdr::CRC_TABLE_OFF)).unwrap();
    let n_blocks = le_u32(&b, hdr::N_BLOCKS) as usize;
    let crc = header_crc(&b, table, n_blocks);
    b[hdr::CRC..hdr::CRC + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn a_short_or_misplaced_fins_section_is_a_typed_error() {
    let b = image_bytes(50, false);
    let short = with_fins_entry(b.clone(), |off, len| (off, len - 1));
    assert_eq!(
        open(short).unwrap_err(),
        ImageError::BadSection {
            section: S_FINS,
            problem: "is not whole records"
        }
    );
    let past = with_fins_entry(b.clone(), |off, len| (off, (len + 1) << 40));
    assert!(matches!(
        open(past).unwrap_err(),
        ImageError::BadSection {
            section: S_FINS,
            ..
        }
    ));
    let over = with_fins_entry(b.clone(), |_, _| (u64::MAX - 8, 64));
    assert!(matches!(
        open(over).unwrap_err(),
        ImageError::BadSection {
            section: S_FINS,
            ..
        }
    ));
    // Cut anywhere: a typed error, never a panic.
    for cut in [0, 10, HEADER_LEN, BODY_START, b.len() / 2, b.len() - 1] {
        assert!(open(b[..cut].to_vec()).is_err(), "cut at {cut}");
    }
}

#[test]
fn an_older_version_is_refused_by_number() {
    let mut b = image_bytes(5, false);
    b[hdr::VERSION..hdr::VERSION + 4].copy_from_slice(&4u32.to_le_bytes());
    assert_eq!(
        open(b).unwrap_err(),
        ImageError::UnsupportedVersion { found: 4 }
    );
}

#[test]
fn a_damaged_fins_block_poisons_the_image_instead_of_answering() {
    let b = image_bytes(300, false);
    let at = HEADER_LEN + 16 * S_FINS;
    let off = usize::try_from(le_u64(&b, at)).unwrap();
    let mut bad = b.clone();
    bad[off + fin::HASH] ^= 0x55;
    let img = open(bad).unwrap();
    let id = b"f-7";
    // Whatever the search reads, it reads from a block whose CRC fails.
    let _ = img.find_fin(id, RunHash::of(id));
    assert!(img.poisoned(), "the engine rebuilds a poisoned image");
}
