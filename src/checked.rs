//! What a reader has checked against the chain (docs/integrity.md): per
//! segment, a range of blocks that ends at a trusted digest, so that a
//! segment read again (a grown active one, a replay from further back) is
//! checked only where it was not before.

use crate::chain::Digest;
use crate::error::{Error, Result};
use crate::layout::SegmentMeta;
use crate::segment::HEADER_SIZE;

/// Per segment (by seq): the block range `[from, to)` that was checked
/// against the chain up to a trusted digest at `to`, and that digest.
#[derive(Default)]
pub(crate) struct Checked {
    ranges: std::sync::Mutex<std::collections::HashMap<u64, CheckedRange>>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckedRange {
    pub(crate) from: u64,
    pub(crate) to: u64,
    digest_at_to: Digest,
}

impl CheckedRange {
    /// Whether the blocks `[from, to)` lie inside this range and `to` is
    /// its end, where the chain reached `digest_at_to` (so a span that
    /// claims to end at `digest` there is this span's chain checked).
    pub(crate) fn covers(&self, from: u64, to: u64, digest_at_to: Digest) -> bool {
        self.from <= from && self.to == to && self.digest_at_to == digest_at_to
    }
}

impl Checked {
    pub(crate) fn get(&self, seq: u64) -> Option<CheckedRange> {
        self.ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&seq)
            .copied()
    }

    fn set(&self, seq: u64, r: CheckedRange) {
        self.ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq, r);
    }

    /// Record that `[from, to)` of segment `meta` was checked (by an open
    /// scan that walked it from its header).
    pub(crate) fn note(&self, meta: &SegmentMeta, from: u64) {
        self.set(
            meta.seq,
            CheckedRange {
                from,
                to: meta.data_len,
                digest_at_to: meta.digest,
            },
        );
    }

    /// Make sure the blocks of `meta` from block boundary `from` to its
    /// committed end chain to its trusted final digest (`meta.digest`: a
    /// footer cross-checked with the MANIFEST, the writer's head, or an
    /// open scan's result), checking only what was not checked before.
    pub(crate) fn ensure(&self, meta: &SegmentMeta, map: &[u8], from: u64, lsn: u64) -> Result<()> {
        let corrupt = |s: crate::blocks::Stop| Error::Corrupt {
            segment: meta.name.clone(),
            offset: s.offset,
            reason: s.reason,
        };
        let digest_at = |at: u64| -> Result<(Digest, u64)> {
            if at == HEADER_SIZE as u64 {
                return Ok((meta.prev_digest, meta.first_lsn));
            }
            crate::blocks::stored_digest_at(map, at).ok_or_else(|| Error::Corrupt {
                segment: meta.name.clone(),
                offset: at,
                reason: "no commit record ends at this block boundary".into(),
            })
        };
        let mut have = self.get(meta.seq).filter(|r| r.to <= meta.data_len);
        // The segment grew (the active one): check what was added.
        if let Some(r) = have.filter(|r| r.to < meta.data_len) {
            let lsn_to = digest_at(r.to)?.1;
            crate::blocks::check_range(
                map,
                r.to,
                meta.data_len,
                r.digest_at_to,
                lsn_to,
                meta.digest,
            )
            .map_err(corrupt)?;
            have = Some(CheckedRange {
                to: meta.data_len,
                digest_at_to: meta.digest,
                ..r
            });
        }
        let r = match have {
            Some(r) if r.from <= from => r,
            // Checked from further on: check up to where that began.
            Some(r) => {
                let (at_from, _) = digest_at(from)?;
                let (at_r, _) = digest_at(r.from)?;
                crate::blocks::check_range(map, from, r.from, at_from, lsn, at_r)
                    .map_err(corrupt)?;
                CheckedRange { from, ..r }
            }
            None => {
                let (at_from, _) = digest_at(from)?;
                crate::blocks::check_range(map, from, meta.data_len, at_from, lsn, meta.digest)
                    .map_err(corrupt)?;
                CheckedRange {
                    from,
                    to: meta.data_len,
                    digest_at_to: meta.digest,
                }
            }
        };
        self.set(meta.seq, r);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a range that holds the whole span and ends where it ends, at
    /// the same digest, covers it.
    #[test]
    fn a_range_covers_only_spans_inside_it_that_end_at_its_end_digest() {
        let d = Digest([7; 32]);
        let r = CheckedRange {
            from: 64,
            to: 1000,
            digest_at_to: d,
        };
        assert!(r.covers(64, 1000, d));
        assert!(r.covers(500, 1000, d));
        assert!(!r.covers(32, 1000, d), "begins before the range");
        assert!(!r.covers(64, 900, d), "ends before the range's end");
        assert!(!r.covers(64, 1000, Digest([8; 32])), "another end digest");
    }
}
