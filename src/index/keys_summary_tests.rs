//! The KEYS summary (format 6): each posting list's count of plain runs
//! (not dry, not shadowed) and of shadowed ones, as the builder wrote
//! them; a damaged summary poisons the image instead of answering.

use super::image::*;
use super::Builder;
use crate::chain::Digest;
use crate::event::{Event, RunFinished, RunStarted};
use crate::segment::HEADER_SIZE;

/// Older images hold a start of every `sh-*` id (so this image's starts
/// of them are shadowed).
struct ShStartsOlder;

impl super::Older for ShStartsOlder {
    fn start(&self, id: &str) -> Option<(u64, u32)> {
        id.starts_with("sh-").then_some((1, 0))
    }
    fn has_log(&self, _: &str, _: u64) -> bool {
        false
    }
}

/// Runs `r-0..n`: every third a dry run; statuses cycle error, ok, none
/// (running); plus `shadowed` runs `sh-*` finished with error.
fn image_bytes(n: usize, shadowed: usize) -> Vec<u8> {
    let mut b = Builder::new(KIND_SEALED, 2, 100, HEADER_SIZE as u64);
    let mut lsn = 100u64;
    let mut add = |b: &mut Builder, ev: Event| {
        let off = HEADER_SIZE as u64 + 10 * (lsn - 100);
        b.add(lsn, off, off + 10, &ev);
        lsn += 1;
    };
    let run = |id: &str, dry: bool| {
        let s = RunStarted {
            skill_id: "skill".into(),
            dry_run: dry,
            ..RunStarted::default()
        };
        Event::run_started(id, 1_000, s)
    };
    let fin = |id: &str, status: &str| {
        let f = RunFinished {
            status: status.into(),
            ..RunFinished::default()
        };
        Event::run_finished(id, 2_000, f)
    };
    for i in 0..n {
        let id = format!("r-{i}");
        add(&mut b, run(&id, i % 3 == 0));
        match i % 3 {
            0 => add(&mut b, fin(&id, "error")),
            1 => add(&mut b, fin(&id, "ok")),
            _ => {}
        }
    }
    for i in 0..shadowed {
        let id = format!("sh-{i}");
        add(&mut b, run(&id, false));
        add(&mut b, fin(&id, "error"));
    }
    b.finish(Digest([0; 32]), &ShStartsOlder)
}

fn open(bytes: Vec<u8>) -> Image {
    Image::open(Backing::Vec(bytes)).expect("image opens")
}

/// What the summary must say of a list: counted run by run.
fn counted(img: &Image, kind: u32, key: &[u8]) -> KeySummary {
    let list = img.posting(kind, key);
    let mut sum = KeySummary {
        len: list.len(),
        plain: 0,
        shadowed: 0,
    };
    for i in 0..list.len() {
        let r = img.run_lazy(img.at(&list, i));
        let shadowed = r.shadow_seq() != NONE;
        sum.shadowed += u32::from(shadowed);
        sum.plain += u32::from(!shadowed && !r.dry_run());
    }
    sum
}

#[test]
fn every_list_carries_its_plain_and_shadowed_counts() {
    let img = open(image_bytes(300, 7));
    for (kind, key) in [
        (K_STATUS, &b"error"[..]),
        (K_STATUS, b"ok"),
        (K_STATUS, RUNNING),
        (K_SKILL, b"skill"),
    ] {
        let sum = img.posting_summary(kind, key).expect("key present");
        assert_eq!(sum, counted(&img, kind, key), "{kind} {key:?}");
    }
    // 100 errors among r-*, all dry (i % 3 == 0), and 7 shadowed sh-*.
    assert_eq!(
        img.posting_summary(K_STATUS, b"error"),
        Some(KeySummary {
            len: 107,
            plain: 0,
            shadowed: 7
        })
    );
    assert_eq!(
        img.posting_summary(K_STATUS, b"ok"),
        Some(KeySummary {
            len: 100,
            plain: 100,
            shadowed: 0
        })
    );
    assert_eq!(img.posting_summary(K_STATUS, b"timeout"), None);
    assert!(img.verify_all() && !img.poisoned());
}

/// The KEYS record of `key` (status kind) in the image's bytes.
fn keys_record_at(b: &[u8], key: &[u8]) -> usize {
    let img = open(b.to_vec());
    let at = HEADER_LEN + 16 * S_KEYS;
    let off = usize::try_from(le_u64(b, at)).unwrap();
    let n = usize::try_from(le_u64(b, at + 8)).unwrap() / key::SIZE;
    (0..n)
        .map(|i| off + i * key::SIZE)
        .find(|&r| {
            le_u32(b, r + key::KIND) == K_STATUS
                && img.str_at(&b[r..r + key::SIZE], key::VALUE) == key
        })
        .expect("key present")
}

/// Recompute the CRC of the block holding `at`, and the header's CRC.
fn reseal(b: &mut [u8], at: usize) {
    let table = usize::try_from(le_u64(b, hdr::CRC_TABLE_OFF)).unwrap();
    let blk = (at - BODY_START) / BLOCK;
    let s = BODY_START + blk * BLOCK;
    let e = (s + BLOCK).min(table);
    let crc = crc32fast::hash(&b[s..e]);
    b[table + 4 * blk..table + 4 * blk + 4].copy_from_slice(&crc.to_le_bytes());
    let n_blocks = le_u32(b, hdr::N_BLOCKS) as usize;
    let crc = header_crc(b, table, n_blocks);
    b[hdr::CRC..hdr::CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_damaged_summary_poisons_the_image_instead_of_answering() {
    let b = image_bytes(50, 3);
    let rec = keys_record_at(&b, b"ok");
    // A flipped byte: the block's CRC fails on the read.
    let mut bad = b.clone();
    bad[rec + key::PLAIN] ^= 0x40;
    let img = open(bad);
    let _ = img.posting_summary(K_STATUS, b"ok");
    assert!(img.poisoned(), "the engine rebuilds a poisoned image");
    // Counts that cannot be the list's (more than it holds), CRCs sealed
    // over them: refused too.
    for (field, v) in [
        (key::PLAIN, 18u32),
        (key::SHADOWED, 18),
        (key::PLAIN, u32::MAX),
    ] {
        let mut bad = b.clone();
        bad[rec + field..rec + field + 4].copy_from_slice(&v.to_le_bytes());
        reseal(&mut bad, rec + field);
        let img = open(bad);
        assert_eq!(img.posting_summary(K_STATUS, b"ok"), None, "{field} = {v}");
        assert!(img.poisoned(), "{field} = {v}");
    }
}

#[test]
fn an_image_of_the_previous_version_is_refused_by_number() {
    let mut b = image_bytes(5, 0);
    b[hdr::VERSION..hdr::VERSION + 4].copy_from_slice(&5u32.to_le_bytes());
    assert!(matches!(
        Image::open(Backing::Vec(b)),
        Err(ImageError::UnsupportedVersion { found: 5 })
    ));
}
