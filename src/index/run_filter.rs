//! The run-id filter of a sealed image (section RFILT, since version 7):
//! a blocked Bloom filter over the ids RUNS holds (and, since version 8,
//! the ids of LOGS without a start here, so a run's logs are searched
//! only in the images that may hold some), written by the builder
//! when it seals and read mapped, so a `run` or `chain` lookup skips every
//! image that does not hold the id from the first lookup of a process
//! (before version 7 the filter lived in memory only, and a reopened
//! engine or a one-shot `auditlog run ID` binary-searched ~31 images).
//!
//! Byte layout (docs/index-format.md, "RFILT"): `lines` 64-byte lines, at
//! least one. An id whose [`RunHash`] is `h` sets [`PROBES`] bits, all in
//! one line, so a lookup reads one line, i.e. one 64 KiB block to check
//! per image instead of one per probe:
//! - line `((h >> 32) * lines) >> 32` (the high half of the hash scaled
//!   to the line count: any count works, so the filter is sized to 16
//!   bits a run, 2 bytes, instead of a power of two);
//! - with `p = h * 0x9e3779b97f4a7c15` (wrapping), probe `i` in `0..6` is
//!   bit `(p >> (10 + 9 * i)) & 511` of the line, bit `b` being bit
//!   `b % 8` of the line's byte `b / 8`.
//!
//! About 0.12% false positives at 16 bits a run (one needless binary
//! search in one image of ~800 asked); a hit is always confirmed by the
//! search, so a false positive costs time, never an answer.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use super::RunHash;
use crate::num::usize_of;

/// Bytes of one line (a cache line: every probe of an id reads it).
pub const LINE: usize = 64;
const LINE_BITS: usize = LINE * 8;
/// Filter bits per run id (the section is about 2 bytes a run).
pub const BITS_PER_RUN: usize = 16;
/// Bits set per id, all in its line.
pub const PROBES: u32 = 6;

/// Lines of a filter over `n_runs` ids (at least one, so an empty image's
/// filter says "absent" to every id).
pub fn lines_for(n_runs: usize) -> usize {
    (n_runs.saturating_mul(BITS_PER_RUN))
        .div_ceil(LINE_BITS)
        .max(1)
}

/// The line of a filter of `lines` lines that holds `h`'s bits.
pub fn line_of(h: RunHash, lines: usize) -> usize {
    let scaled = u128::from(h.0 >> 32) * lines as u128;
    usize_of(u64::try_from(scaled >> 32).unwrap_or(u64::MAX))
}

/// The bits of `h` inside its line.
fn bits(h: RunHash) -> impl Iterator<Item = usize> {
    let p = h.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..PROBES).map(move |i| usize_of((p >> (10 + 9 * i)) & 511))
}

/// The filter section over `ids` (`n` of them).
#[cfg(test)]
pub fn build<'a>(n: usize, ids: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    build_into(Vec::new(), n, ids)
}

/// [`build`] into `f` (emptied first; a kept buffer, `index::pool`).
pub(crate) fn build_into<'a>(
    mut f: Vec<u8>,
    n: usize,
    ids: impl Iterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let lines = lines_for(n);
    f.clear();
    f.resize(lines * LINE, 0);
    for id in ids {
        let h = RunHash::of(id);
        let line = &mut f[line_of(h, lines) * LINE..][..LINE];
        for b in bits(h) {
            line[b / 8] |= 1 << (b % 8);
        }
    }
    f
}

/// Whether `line` (the id's line, [`line_of`]) may hold the id.
pub fn line_has(line: &[u8], h: RunHash) -> bool {
    bits(h).all(|b| {
        line.get(b / 8)
            .is_some_and(|&byte| byte & (1 << (b % 8)) != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(f: &[u8], id: &[u8]) -> bool {
        let h = RunHash::of(id);
        let line = line_of(h, f.len() / LINE);
        line_has(&f[line * LINE..][..LINE], h)
    }

    #[test]
    fn every_id_put_in_is_found_and_few_others_are() {
        let ids: Vec<String> = (0..50_000).map(|i| format!("run-{i:08}")).collect();
        let f = build(ids.len(), ids.iter().map(|s| s.as_bytes()));
        assert_eq!(f.len(), 50_016 * 2, "2 bytes a run, in whole lines");
        assert!(ids.iter().all(|id| has(&f, id.as_bytes())));
        let asked = 200_000;
        let false_hits = (0..asked)
            .filter(|i| has(&f, format!("other-{i:08}").as_bytes()))
            .count();
        // Expected ~0.12%; generous bound against an unlucky hash.
        assert!(false_hits * 1000 < asked * 3, "{false_hits} of {asked}");
    }

    #[test]
    fn an_empty_filter_is_one_line_that_holds_nothing() {
        let f = build(0, std::iter::empty());
        assert_eq!(f.len(), LINE);
        assert!(!has(&f, b"r-1"));
    }

    #[test]
    fn line_of_stays_inside_any_line_count() {
        for lines in [1, 2, 3, 1000, 1 << 20] {
            for h in [0, 1, u64::MAX, 0x8000_0000_0000_0000, 0xffff_ffff] {
                assert!(line_of(RunHash(h), lines) < lines);
            }
        }
    }
}
