//! `verify`'s check of derived index files against the segments they were
//! built from (docs/index-format.md, "What `verify` checks"): the header
//! binds the file to its segment (seq, LSN range, byte range, final
//! digest), every checksum holds, and every chain digest in it equals the
//! one `verify` recomputed from the segment; `deep` rebuilds each image and
//! compares it byte for byte. A file that fails is moved into
//! `quarantine/` (never believed again, never deleted) and rebuilt.

use std::path::Path;

use crate::error::{Error, Result};
use crate::index::{self, Backing, Image, ImageError, Span, Unusable, KIND_CHUNK, KIND_SEALED};
use crate::layout::{map_file, Layout, SegmentMeta};
use crate::segment::HEADER_SIZE;

/// A segment's chain points as `verify` recomputed them: (offset, digest)
/// at its start and after every block.
pub(crate) type ChainPoints = Vec<(u64, crate::chain::Digest)>;

/// What the check of the derived files found (no failure: those are an
/// error).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Checked {
    /// Files checked (and, deep, rebuilt and compared).
    pub checked: u64,
    /// Files of an older format: stale, rebuilt by the next read.
    pub stale: u64,
}

/// A derived file that failed a check.
struct Failure {
    file: String,
    reason: String,
}

/// Check every `STEM.idx` and the active `STEM.aidx` of `lay`; `chains`
/// are the segments' chain points as `verify` recomputed them.
pub(crate) fn check_indexes(
    dir: &Path,
    lay: &Layout,
    chains: &[ChainPoints],
    deep: bool,
    read_only: bool,
    report: &mut Checked,
) -> Result<()> {
    let mut failures = Vec::new();
    // Images of the older sealed segments, for the look-ups a rebuild makes.
    let mut older: Vec<(u64, Image)> = Vec::new();
    for (meta, chain) in lay.segments.iter().zip(chains) {
        let map = match map_file(&meta.path)? {
            Some(m) => m,
            None => continue,
        };
        let checked = if meta.sealed {
            check_one(meta, &map, chain, &older, deep, report)
        } else {
            check_active(meta, &map, chain, &older, deep, report)
        };
        match checked {
            Ok(Some(img)) if meta.sealed => older.push((meta.seq, img)),
            Ok(_) => {}
            Err(f) => failures.push(f),
        }
        if deep && meta.sealed && older.last().is_none_or(|(s, _)| *s != meta.seq) {
            // The stored file was missing or failed: look-ups of the newer
            // ones use what the segment gives.
            if let Ok(img) = build(meta, &map, meta.data_len, &older) {
                older.push((meta.seq, img));
            }
        }
    }
    let Some(first) = failures.first() else {
        return Ok(());
    };
    let mut moved = Vec::new();
    if !read_only {
        for f in &failures {
            moved.push(quarantine(dir, &f.file)?);
        }
        // The next reads would rebuild them; do it now, from the segments.
        let mut engine = crate::query::Engine::open(dir)?;
        engine.refresh()?;
    }
    let what = if read_only {
        "left in place (read-only verify)".to_string()
    } else {
        format!("moved to {} and rebuilt from the segment", moved.join(", "))
    };
    Err(Error::Corrupt {
        segment: first.file.clone(),
        offset: 0,
        reason: format!(
            "derived index does not match the segment it was built from: {}; {} file(s) failed, {what}",
            first.reason,
            failures.len()
        ),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A sealed segment's stored index: bound to the segment, checksums, chain
/// digests, and (deep) the same bytes as a rebuild. The image when good.
fn check_one(
    meta: &SegmentMeta,
    seg: &[u8],
    chain: &ChainPoints,
    older: &[(u64, Image)],
    deep: bool,
    report: &mut Checked,
) -> std::result::Result<Option<Image>, Failure> {
    let path = index::index_path(meta);
    let fail = |reason: String| Failure {
        file: file_name(&path),
        reason,
    };
    let img = match index::load_sealed(meta) {
        Ok(img) => img,
        Err(Unusable::Missing) => return Ok(None),
        Err(Unusable::Damaged(ImageError::UnsupportedVersion { .. })) => {
            report.stale += 1;
            return Ok(None);
        }
        Err(r) => return Err(fail(r.to_string())),
    };
    report.checked += 1;
    same_chain(&img, chain).map_err(|m| fail(m.to_string()))?;
    if deep {
        let built = build(meta, seg, meta.data_len, older).map_err(|e| fail(e.to_string()))?;
        compare(&img, &built).map_err(|m| fail(m.to_string()))?;
    }
    Ok(Some(img))
}

/// The active segment's stored prefix index (`STEM.aidx`), likewise.
fn check_active(
    meta: &SegmentMeta,
    seg: &[u8],
    chain: &ChainPoints,
    older: &[(u64, Image)],
    deep: bool,
    report: &mut Checked,
) -> std::result::Result<Option<Image>, Failure> {
    let path = index::active_index_path(meta);
    if !path.exists() {
        return Ok(None);
    }
    let fail = |reason: String| Failure {
        file: file_name(&path),
        reason,
    };
    let img = match map_file(&path)
        .ok()
        .flatten()
        .map(|m| Image::open(Backing::Map(m)))
    {
        Some(Err(ImageError::UnsupportedVersion { .. })) => {
            report.stale += 1;
            return Ok(None);
        }
        _ => index::load_active(meta, seg).ok_or_else(|| {
            fail("it does not match the active segment's committed prefix".into())
        })?,
    };
    report.checked += 1;
    let upto: ChainPoints = chain
        .iter()
        .copied()
        .filter(|p| p.0 <= img.header.end_off)
        .collect();
    same_chain(&img, &upto).map_err(|m| fail(m.to_string()))?;
    if deep {
        let built = build(meta, seg, img.header.end_off, older).map_err(|e| fail(e.to_string()))?;
        compare(&img, &built).map_err(|m| fail(m.to_string()))?;
    }
    Ok(None)
}

/// Why a stored index file is not the one its segment gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Mismatch {
    #[error("a block checksum does not match")]
    Checksum,
    #[error("its {found} chain digests are not the segment's {want} block boundaries")]
    Chain { found: usize, want: usize },
    #[error("rebuilt from its segment it is {built} bytes, the file {stored}")]
    Length { built: usize, stored: usize },
    #[error("rebuilt from its segment it differs from the file at byte {at} (a forged or corrupt index)")]
    Bytes { at: usize },
}

/// Every checksum of the image holds, and its CHAIN section is exactly the
/// segment's chain points.
fn same_chain(img: &Image, chain: &ChainPoints) -> std::result::Result<(), Mismatch> {
    if !img.verify_all() {
        return Err(Mismatch::Checksum);
    }
    let n = img.n_chain_points();
    if n != chain.len() || (0..n).any(|i| img.chain_point(i) != chain[i]) {
        return Err(Mismatch::Chain {
            found: n,
            want: chain.len(),
        });
    }
    Ok(())
}

/// The image of `meta`'s blocks up to `to`, as the query engine builds it.
fn build(meta: &SegmentMeta, seg: &[u8], to: u64, older: &[(u64, Image)]) -> Result<Image> {
    let kind = if meta.sealed { KIND_SEALED } else { KIND_CHUNK };
    let trusted_end = if to == meta.data_len {
        meta.digest
    } else {
        crate::blocks::stored_digest_at(seg, to)
            .map(|(d, _)| d)
            .unwrap_or_default()
    };
    let span = Span {
        from: HEADER_SIZE as u64,
        first_lsn: meta.first_lsn,
        digest_at_from: meta.prev_digest,
        to,
        trusted_end,
    };
    let shadow = crate::query::shadow_in(older.iter().map(|(s, i)| (*s, i)));
    let bytes = index::build_image(meta, seg, kind, span, &shadow, None)?;
    Image::open(Backing::Vec(bytes)).map_err(|r| Error::Corrupt {
        segment: meta.name.clone(),
        offset: 0,
        reason: format!("rebuilt index does not read back: {r}"),
    })
}

fn compare(stored: &Image, built: &Image) -> std::result::Result<(), Mismatch> {
    let (a, b) = (stored.bytes(), built.bytes());
    match a.iter().zip(b).position(|(x, y)| x != y) {
        None if a.len() == b.len() => Ok(()),
        None => Err(Mismatch::Length {
            built: b.len(),
            stored: a.len(),
        }),
        Some(at) => Err(Mismatch::Bytes { at }),
    }
}

/// Move a derived file into `quarantine/` (a free name), never deleting it.
fn quarantine(dir: &Path, file: &str) -> Result<String> {
    let q = crate::recovery::quarantine_dir(dir)?;
    let mut n = 1u32;
    let target = loop {
        let name = if n == 1 {
            format!("{file}.failed")
        } else {
            format!("{file}.failed.{n}")
        };
        if !q.join(&name).exists() {
            break name;
        }
        n += 1;
    };
    std::fs::rename(dir.join(file), q.join(&target))
        .map_err(|e| Error::io(format!("moving {file} into quarantine"), e))?;
    crate::fsutil::sync_dir(&q)?;
    crate::fsutil::sync_dir(dir)?;
    Ok(format!("{}/{target}", crate::recovery::QUARANTINE_DIR))
}
