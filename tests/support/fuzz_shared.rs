//! What a fuzz target (fuzz/fuzz_targets/) and its regression test
//! (tests/reliability_fuzz_regressions.rs) must do alike, in one file that
//! both include (the fuzz crate through `#[path]`), so a replayed crash
//! goes through exactly what the fuzzer ran.

use auditlog::fulltext::{FullText, FullTextOptions};
use auditlog::index::{BLOCK, BODY_START, HEADER_LEN, MAGIC};
use auditlog::{Config, Event, Json, Log, LogReader, RunFinished, RunStarted};

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// index_reader: when the input looks like an index image (magic, a block
/// table that fits), recompute its block CRCs and header CRC, so the
/// fuzzer reaches the section readers instead of stopping at a checksum.
pub fn fix_up_index(b: &mut [u8]) {
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

/// search_query: a 50-run log in `dir` and its caught-up full-text index.
pub fn search_fixture(dir: &std::path::Path) -> FullText {
    let log = Log::open(Config::new(dir)).unwrap();
    let t0 = 1_795_392_000_000_000i64;
    for i in 0..50i64 {
        let id = format!("r-{i}");
        let failed = i % 4 == 0;
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
                status: if failed { "error" } else { "ok" }.into(),
                output: format!("sunny and {i} degrees"),
                error: if failed { "upstream timeout" } else { "" }.into(),
                ..RunFinished::default()
            },
        );
        log.append_batch(&[started, fin]).unwrap().wait().unwrap();
    }
    log.close().unwrap();
    let reader = LogReader::open(dir).unwrap();
    let ft = FullText::open_for(&reader, &FullTextOptions::default()).unwrap();
    ft.catch_up(&reader, |_| {}).unwrap();
    ft
}
