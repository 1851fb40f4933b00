//! What a fuzz target (fuzz/fuzz_targets/) and its regression test
//! (tests/engine/reliability_fuzz_regressions.rs) must do alike, in one file that
//! both include (the fuzz crate through `#[path]`), so a replayed crash
//! goes through exactly what the fuzzer ran.

use auditlog::internals::index::{BLOCK, BODY_START, HEADER_LEN, MAGIC};

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

/// Forge an index image consistently: the first `caller-1` in its string
/// heap becomes `caller-2`, every checksum recomputed, so only a rebuild
/// from the segment can tell (the attack tests of the engine and the CLI).
pub fn forge_index_caller(b: &mut [u8]) {
    let at = b
        .windows(8)
        .position(|w| w == b"caller-1")
        .expect("the heap holds the caller");
    b[at + 7] = b'2';
    fix_up_index(b);
}
