//! An image as its builder leaves it: the header and section table, the
//! sections each in its own buffer, and the block CRC table, computed
//! over the bytes the sections make once laid out (docs/index-format.md).
//! Stored as they are, the sections go to the file without being copied
//! into one buffer first: that copy was a fresh buffer the size of the
//! image (~8 MiB per 64 MiB segment, every page of it faulted in and
//! zeroed by the kernel) and a `memcpy` of every byte, per image, for
//! bytes the kernel copies into the page cache anyway
//! (docs/benchmarks.md, "Index lag, idx41 round").

#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::io::Write;

use super::build::FinishBufs;
use super::image::{header_crc, IndexHeader, BLOCK, BODY_START, HEADER_LEN, N_SECT};
use super::pool;
use crate::num::u32_of;

/// Zero bytes of padding: every section starts at a multiple of 8.
const PAD: [u8; 8] = [0; 8];

/// The bytes of one image, in pieces: see the module doc.
pub struct ImageParts {
    /// Header and section table (`BODY_START` bytes).
    head: Vec<u8>,
    sections: [Vec<u8>; N_SECT],
    /// One CRC-32 per `BLOCK` of the body, little-endian.
    crcs: Vec<u8>,
    len: usize,
    /// The finish's tables, given back to the pool with the sections when
    /// the image is dropped (`super::pool`).
    kept: FinishBufs,
}

impl Drop for ImageParts {
    fn drop(&mut self) {
        let mut kept = std::mem::take(&mut self.kept);
        kept.sections = std::mem::take(&mut self.sections);
        pool::give_finish(kept);
    }
}

/// Padding after `len` bytes to the next multiple of 8.
fn pad_of(len: usize) -> usize {
    len.next_multiple_of(8) - len
}

/// Block CRCs of a body given as pieces: a new CRC every `BLOCK` bytes.
struct BlockCrcs {
    h: crc32fast::Hasher,
    in_block: usize,
    out: Vec<u8>,
}

impl BlockCrcs {
    fn update(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            let n = b.len().min(BLOCK - self.in_block);
            self.h.update(&b[..n]);
            self.in_block += n;
            b = &b[n..];
            if self.in_block == BLOCK {
                let h = std::mem::take(&mut self.h);
                self.out.extend_from_slice(&h.finalize().to_le_bytes());
                self.in_block = 0;
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.in_block > 0 {
            self.out.extend_from_slice(&self.h.finalize().to_le_bytes());
        }
        self.out
    }
}

impl ImageParts {
    /// The image of `sections` with `header` (its `crc_table_off` and
    /// `n_blocks` are set here, and the header CRC).
    #[cfg(test)]
    pub(crate) fn new(header: IndexHeader, sections: [Vec<u8>; N_SECT]) -> ImageParts {
        ImageParts::new_in(header, sections, FinishBufs::default())
    }

    /// [`ImageParts::new`], with the finish's tables `kept` to give back.
    pub(crate) fn new_in(
        mut header: IndexHeader,
        sections: [Vec<u8>; N_SECT],
        kept: FinishBufs,
    ) -> ImageParts {
        let mut head = vec![0u8; BODY_START];
        let mut at = BODY_START;
        let mut crcs = BlockCrcs {
            h: crc32fast::Hasher::new(),
            in_block: 0,
            out: Vec::new(),
        };
        for (i, s) in sections.iter().enumerate() {
            // `at` is a multiple of 8 here: BODY_START is, and so is
            // every section's end with its padding.
            let t = HEADER_LEN + 16 * i;
            head[t..t + 8].copy_from_slice(&(at as u64).to_le_bytes());
            head[t + 8..t + 16].copy_from_slice(&(s.len() as u64).to_le_bytes());
            crcs.update(s);
            crcs.update(&PAD[..pad_of(s.len())]);
            at += s.len() + pad_of(s.len());
        }
        let crcs = crcs.finish();
        let n_blocks = crcs.len() / 4;
        header.crc_table_off = at as u64;
        header.n_blocks = u32_of(n_blocks);
        head[..HEADER_LEN].copy_from_slice(&header.encode());
        // The header CRC covers the header, the section table and the CRC
        // table: laid out as in the file for `header_crc`.
        let mut covered = Vec::with_capacity(BODY_START + crcs.len());
        covered.extend_from_slice(&head);
        covered.extend_from_slice(&crcs);
        let crc = header_crc(&covered, BODY_START, n_blocks);
        let c = super::image::hdr::CRC;
        head[c..c + 4].copy_from_slice(&crc.to_le_bytes());
        ImageParts {
            head,
            sections,
            len: at + crcs.len(),
            crcs,
            kept,
        }
    }

    /// The finish's tables and sections, not given back (tests: reused
    /// by hand).
    #[cfg(test)]
    pub(crate) fn into_kept(mut self) -> FinishBufs {
        let mut kept = std::mem::take(&mut self.kept);
        kept.sections = std::mem::take(&mut self.sections);
        kept
    }

    /// Bytes of the image.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every piece of the image in file order.
    fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.head[..])
            .chain(
                self.sections
                    .iter()
                    .flat_map(|s| [&s[..], &PAD[..pad_of(s.len())]]),
            )
            .chain(std::iter::once(&self.crcs[..]))
    }

    /// The image in one buffer (sized once).
    pub fn into_bytes(self) -> Vec<u8> {
        // A new buffer, not a kept one: the caller keeps it (an image
        // served from memory).
        let mut out = Vec::with_capacity(self.len);
        for p in self.pieces() {
            out.extend_from_slice(p);
        }
        out
    }

    /// Write the image to `w` in writes of at most `max` bytes (at least
    /// 8): a piece that large is handed over in place, smaller pieces are
    /// gathered into one buffer of `max` bytes first (the padding and
    /// the small sections: one write(2) each was a system call for a
    /// few bytes).
    pub fn write_to(&self, w: &mut impl Write, max: usize) -> std::io::Result<()> {
        let mut small: Vec<u8> = Vec::new();
        for mut p in self.pieces() {
            while !p.is_empty() {
                if small.is_empty() && p.len() >= max {
                    w.write_all(&p[..max])?;
                    p = &p[max..];
                    continue;
                }
                let n = p.len().min(max - small.len());
                if small.capacity() == 0 {
                    small.reserve_exact(max);
                }
                small.extend_from_slice(&p[..n]);
                p = &p[n..];
                if small.len() == max {
                    w.write_all(&small)?;
                    small.clear();
                }
            }
        }
        if !small.is_empty() {
            w.write_all(&small)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every write it is handed.
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The image as `Builder::finish` laid it out in one buffer before
    /// the idx41 round (its code, kept as the reference).
    fn assembled(mut header: IndexHeader, sections: &[Vec<u8>; N_SECT]) -> Vec<u8> {
        let mut out = vec![0u8; BODY_START];
        for (i, s) in sections.iter().enumerate() {
            while !out.len().is_multiple_of(8) {
                out.push(0);
            }
            let off = out.len() as u64;
            out[HEADER_LEN + 16 * i..HEADER_LEN + 16 * i + 8].copy_from_slice(&off.to_le_bytes());
            out[HEADER_LEN + 16 * i + 8..HEADER_LEN + 16 * i + 16]
                .copy_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s);
        }
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
        let table = out.len();
        let n_blocks = (table - BODY_START).div_ceil(BLOCK);
        for blk in 0..n_blocks {
            let s = BODY_START + blk * BLOCK;
            let e = (s + BLOCK).min(table);
            let crc = crc32fast::hash(&out[s..e]);
            out.extend_from_slice(&crc.to_le_bytes());
        }
        header.crc_table_off = table as u64;
        header.n_blocks = u32_of(n_blocks);
        out[..HEADER_LEN].copy_from_slice(&header.encode());
        let crc = header_crc(&out, table, n_blocks);
        let c = crate::index::image::hdr::CRC;
        out[c..c + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    proptest::proptest! {
        /// Whatever the section sizes and write size, the pieces written
        /// are the image's bytes, in writes of at most `max` bytes.
        #[test]
        fn written_pieces_are_the_whole_image(
            lens in proptest::collection::vec(0usize..3 * BLOCK, N_SECT),
            max in 8usize..200_000,
        ) {
            let sections: [Vec<u8>; N_SECT] = std::array::from_fn(|i| {
                (0..lens[i]).map(|j| u8::try_from((i * 7 + j * 31) % 251).unwrap()).collect()
            });
            let header = IndexHeader {
                kind: 0,
                seq: 3,
                first_lsn: 10,
                end_lsn: 20,
                start_off: 72,
                end_off: 900,
                digest: crate::chain::Digest([5; 32]),
                min_ts: 1,
                max_ts: 2,
                crc_table_off: 0,
                n_blocks: 0,
                dup_starts: 0,
                flags: 0,
            };
            let want = assembled(header.clone(), &sections);
            let parts = ImageParts::new(header, sections);
            let mut w = Writes(Vec::new());
            parts.write_to(&mut w, max).unwrap();
            proptest::prop_assert!(w.0.iter().all(|b| b.len() <= max));
            let written: Vec<u8> = w.0.concat();
            let len = parts.len();
            let bytes = parts.into_bytes();
            proptest::prop_assert_eq!(bytes.len(), len);
            proptest::prop_assert!(written == want, "written as laid out before");
            proptest::prop_assert!(bytes == want, "assembled as laid out before");
        }
    }
}
