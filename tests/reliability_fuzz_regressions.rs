//! Every input the fuzzers (fuzz/) found a crash with, replayed as a test.
//! The inputs are in tests/support/fuzz/; each test repeats what its fuzz
//! target does with them.

mod support;

use auditlog::codec::CODEC_BINCODE2_STANDARD;
use auditlog::index::{
    Backing, Image, BLOCK, BODY_START, HEADER_LEN, K_CALLER, K_CHANNEL, K_PARENT, K_SKILL,
    K_STATUS, MAGIC,
};
use auditlog::layout::{self, Mode};
use auditlog::manifest::Manifest;
use auditlog::segment::{self, Header, FORMAT_VERSION};
use auditlog::{verify, Error, LogReader, ReplayRange};

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// fuzz/fuzz_targets/index_reader.rs: fix up the CRCs of an image-like input.
fn fix_up(b: &mut [u8]) {
    if b.len() < BODY_START || &b[0..8] != MAGIC {
        return;
    }
    let table = le_u64(b, 104) as usize;
    let n = le_u32(b, 112) as usize;
    if table < BODY_START || table.checked_add(4 * n) != Some(b.len()) {
        return;
    }
    for blk in 0..n {
        let s = BODY_START + blk * BLOCK;
        let e = (s + BLOCK).min(table);
        if s >= e {
            return;
        }
        let crc = crc32fast::hash(&b[s..e]);
        b[table + 4 * blk..table + 4 * blk + 4].copy_from_slice(&crc.to_le_bytes());
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..124]);
    h.update(&b[HEADER_LEN..BODY_START]);
    h.update(&b[table..table + 4 * n]);
    b[124..128].copy_from_slice(&h.finalize().to_le_bytes());
}

/// A damaged index whose posting list claims ~4 billion entries: narrowing
/// it by time overflowed `(lo + hi) / 2` (a panic in debug builds, a wrong
/// midpoint in release). Fixed in src/index/image.rs.
#[test]
fn index_narrow_of_a_huge_posting_list_does_not_overflow() {
    let mut bytes = include_bytes!("support/fuzz/index_reader-narrow-overflow.bin").to_vec();
    fix_up(&mut bytes);
    let img = Image::open(Backing::Vec(bytes)).expect("the header is sane");
    for kind in [K_SKILL, K_CALLER, K_CHANNEL, K_PARENT, K_STATUS] {
        let keys: Vec<Vec<u8>> = img
            .keys(kind)
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        for k in keys {
            let l = img.posting(kind, &k);
            let _ = img.narrow(l, Some(0), Some(i64::MAX));
            let _ = img.narrow(l, Some(i64::MIN), None);
        }
    }
    let all = img.all();
    let _ = img.narrow(all, Some(i64::MIN), Some(i64::MAX));
}

/// A bit flipped inside a sealed segment (its footer intact): opening
/// trusts the checksummed footer by design, and `verify` names the damage.
/// (Found as a false alarm of the fuzz target's own invariant, kept to pin
/// the behaviour down.)
#[test]
fn a_bit_flip_in_a_sealed_segment_is_for_verify_to_find() {
    let data = include_bytes!("support/fuzz/segment_recovery-sealed-bitflip.bin");
    let (&mode, rest) = data.split_first().unwrap();
    assert_eq!(mode % 2, 0, "behind a made-up header");
    let dir = tempfile::tempdir().unwrap();
    let m = Manifest::new();
    m.store(dir.path()).unwrap();
    let h = Header {
        version: FORMAT_VERSION,
        codec: CODEC_BINCODE2_STANDARD,
        day: 20261123,
        seq: m.anchor.first_seq,
        first_lsn: m.anchor.first_lsn,
        prev_digest: m.anchor_digest(),
    };
    let mut bytes = h.encode().to_vec();
    bytes.extend_from_slice(rest);
    let name = segment::file_name(20261123, m.anchor.first_seq);
    std::fs::write(dir.path().join(&name), &bytes).unwrap();
    if let Ok(r) = LogReader::open(dir.path()) {
        let _ = r.replay(ReplayRange::default()).count();
    }
    let lay = layout::discover(
        dir.path(),
        Manifest::load(dir.path()).unwrap().unwrap(),
        Mode::Write {
            torn_tail_limit: 64,
        },
    )
    .expect("a sealed segment opens through its footer");
    assert!(lay.segments[0].sealed);
    match verify(dir.path(), None, |_, _| {}) {
        Err(Error::Corrupt {
            segment, offset, ..
        }) => {
            assert_eq!(segment, name);
            assert_eq!(offset, 131);
        }
        other => panic!("verify must find the flipped bit: {other:?}"),
    }
}

/// The 50-run index of fuzz/fuzz_targets/search_query.rs.
fn search_fixture() -> (tempfile::TempDir, auditlog::fulltext::FullText) {
    use auditlog::fulltext::{FullText, FullTextOptions};
    use auditlog::{Config, Event, Json, Log, RunFinished, RunStarted};
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(Config::new(dir.path())).unwrap();
    let t0 = 1_795_392_000_000_000i64;
    for i in 0..50i64 {
        let id = format!("r-{i}");
        let started = Event::run_started(
            id.as_str(),
            t0 + i,
            RunStarted {
                skill_id: format!("skill.{}", i % 5),
                caller_id: format!("u-{}", i % 3),
                inputs: Json::parse(format!(r#"{{"q":"find the weather in city {i}"}}"#)).unwrap(),
                ..RunStarted::default()
            },
        );
        let fin = Event::run_finished(
            id.as_str(),
            t0 + i + 1,
            RunFinished {
                status: if i % 4 == 0 {
                    "error".into()
                } else {
                    "ok".into()
                },
                output: format!("sunny and {i} degrees"),
                error: if i % 4 == 0 {
                    "upstream timeout".into()
                } else {
                    String::new()
                },
                ..RunFinished::default()
            },
        );
        log.append_batch(&[started, fin]).unwrap().wait().unwrap();
    }
    log.close().unwrap();
    let reader = LogReader::open(dir.path()).unwrap();
    let ft = FullText::open_for(&reader, &FullTextOptions::default()).unwrap();
    ft.catch_up(&reader, |_| {}).unwrap();
    (dir, ft)
}

/// A query with a negated phrase (`-` then `0--1--in ...`, tokenised as the
/// phrase "0 1 in") tripped a debug assertion inside tantivy's phrase
/// scorer (`target (0) should be greater than or equal to doc (2147483647)`).
#[test]
fn a_negated_phrase_query_does_not_panic() {
    let (_d, ft) = search_fixture();
    let data = include_bytes!("support/fuzz/search_query-phrase-seek.bin");
    let query = std::str::from_utf8(data).unwrap();
    // A panic inside tantivy is turned into a query error (src/fulltext/
    // search.rs); with debug assertions off tantivy answers.
    // A second input the fuzzer found for the same assertion.
    let again = "-\u{1}in\u{0}\u{0}in\u{11}1\u{5}0";
    for q in [
        query,
        again,
        "-0--1--in",
        "-\"0 1 in\"",
        "-in-0",
        "-\"find the\" 3",
    ] {
        match ft.search(q, &auditlog::fulltext::Filters::default(), 5) {
            Ok(_) | Err(auditlog::fulltext::FullTextError::Query { .. }) => {}
            Err(e) => panic!("{q:?}: {e}"),
        }
    }
}
