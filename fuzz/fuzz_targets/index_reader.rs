//! The per-segment index reader (`index::Image`) over arbitrary bytes.
//! When the input looks like an image (magic, sane block table), the
//! header and block CRCs are fixed up first so the fuzzer reaches the
//! section readers instead of stopping at a checksum. Every accessor must
//! answer (or poison the image), never panic or read out of bounds.
#![no_main]

use auditlog::index::{
    Backing, Image, BLOCK, BODY_START, HEADER_LEN, K_CALLER, K_CHANNEL, K_PARENT, K_SKILL,
    K_STATUS, MAGIC,
};
use libfuzzer_sys::fuzz_target;

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Recompute the block CRC table and the header CRC, when the header's
/// block table fits the input.
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
    let crc = h.finalize();
    b[124..128].copy_from_slice(&crc.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    fix_up(&mut bytes);
    let Ok(img) = Image::open(Backing::Vec(bytes)) else {
        return;
    };
    let _ = img.verify_all();
    let n = img.n_runs().min(64);
    for i in 0..n {
        let r = img.run(i);
        let _ = (r.dry_run(), r.has_local_finish());
        let (_, id) = img.run_key(i);
        let id = id.to_vec();
        let _ = img.find_run(&id);
        let _ = img.logs_of(&id);
    }
    let all = img.all();
    for i in 0..all.len().min(64) {
        let _ = img.at(&all, i);
    }
    let _ = img.narrow(all, Some(i64::MIN), Some(i64::MAX));
    for kind in [K_SKILL, K_CALLER, K_CHANNEL, K_PARENT, K_STATUS, 0, 99] {
        let keys: Vec<Vec<u8>> = img
            .keys(kind)
            .into_iter()
            .take(16)
            .map(|(k, _)| k.to_vec())
            .collect();
        for k in keys.iter().chain([b"x".to_vec()].iter()) {
            let l = img.posting(kind, k);
            for i in 0..l.len().min(16) {
                let _ = img.at(&l, i);
            }
            let _ = img.narrow(l, Some(0), None);
        }
    }
    for i in 0..img.n_fins().min(64) {
        let _ = img.fin(i);
    }
    for i in 0..img.n_errs().min(64) {
        let _ = img.err(i);
    }
    let _ = img.errs_between(None, Some(0));
    let _ = img.n_logs();
});
