//! `verify`'s check of derived index files against the segments they were
//! built from (docs/index-format.md, "What `verify` checks"): the header
//! binds the file to its segment (seq, LSN range, byte range, final
//! digest), every checksum holds, every chain digest in it equals the one
//! `verify` recomputed from the segment, and the whole file equals, byte for
//! byte, the image built from the events `verify` decoded on its walk (so a
//! consistently forged file fails an ordinary `verify`); `deep` also
//! rebuilds each image through the query engine's own build path and
//! compares that too. A file that fails is moved into `quarantine/` (never
//! believed again, never deleted) and rebuilt.

use std::path::Path;

use crate::error::{Error, Result};
use crate::event::Event;
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

/// The check of the derived files, made during `verify`'s own walk of the
/// segments, oldest first. Every sealed segment's image (and the active
/// segment's, up to its stored prefix) is built from the events `verify`
/// decodes anyway, and each stored file must equal it byte for byte: a file
/// forged consistently (every checksum and chain digest right, a posting
/// changed) fails here, not only under `--deep`. docs/index-format.md,
/// "What `verify` checks".
pub(crate) struct IndexCheck {
    deep: bool,
    /// Seq of the oldest segment kept, once retention dropped any (shadows
    /// older than it point into dropped segments; no one can rebuild those).
    first_seq: Option<u64>,
    /// The images of the older sealed segments, for the look-ups a build
    /// makes: the stored file when it passed, else the one built here.
    older: Vec<(u64, Image)>,
    failures: Vec<Failure>,
    report: Checked,
}

/// An image being built during `verify`'s walk of one segment, and the
/// stored file it will be compared with.
pub(crate) struct Feed {
    builder: index::Builder,
    /// Blocks ending at or before this offset are fed.
    upto: u64,
    stored: Option<Image>,
}

impl Feed {
    /// An event `verify` checked and decoded, with the end of its block:
    /// its LSN, frame offset and frame end.
    pub(crate) fn event(&mut self, block_end: u64, lsn: u64, off: u64, end: u64, ev: &Event) {
        if block_end <= self.upto {
            self.builder.add(lsn, off, end, ev);
        }
    }

    /// The end of a block `verify` checked, and the chain digest there.
    pub(crate) fn block(&mut self, end: u64, digest: crate::chain::Digest) {
        if end <= self.upto {
            self.builder.chain_point(end, digest);
        }
    }
}

impl IndexCheck {
    pub(crate) fn new(lay: &Layout, deep: bool) -> IndexCheck {
        IndexCheck {
            deep,
            // Only a log that retention shortened has such shadows.
            first_seq: lay
                .segments
                .first()
                .map(|s| s.seq)
                .filter(|_| lay.manifest.dropped_segments > 0),
            older: Vec::new(),
            failures: Vec::new(),
            report: Checked::default(),
        }
    }

    /// Before `verify` walks `meta`: the image to build alongside (every
    /// sealed segment, for the look-ups of the newer ones; the active one
    /// only up to a stored prefix index, if there is one). A stored file
    /// that cannot be used at all is a failure right away.
    pub(crate) fn start(&mut self, meta: &SegmentMeta, seg: &[u8]) -> Option<Feed> {
        let (stored, upto) = if meta.sealed {
            (self.load_sealed(meta), meta.data_len)
        } else {
            let img = self.load_active(meta, seg)?;
            let upto = img.header.end_off;
            (Some(img), upto)
        };
        let kind = if meta.sealed { KIND_SEALED } else { KIND_CHUNK };
        let mut builder = index::Builder::new(kind, meta.seq, meta.first_lsn, HEADER_SIZE as u64);
        builder.chain_point(HEADER_SIZE as u64, meta.prev_digest);
        Some(Feed {
            builder,
            upto,
            stored,
        })
    }

    fn load_sealed(&mut self, meta: &SegmentMeta) -> Option<Image> {
        match index::load_sealed(meta) {
            Ok(img) => Some(img),
            Err(Unusable::Missing) => None,
            Err(Unusable::Damaged(ImageError::UnsupportedVersion { .. })) => {
                self.report.stale += 1;
                None
            }
            Err(r) => {
                self.fail(&index::index_path(meta), r.to_string());
                None
            }
        }
    }

    fn load_active(&mut self, meta: &SegmentMeta, seg: &[u8]) -> Option<Image> {
        let path = index::active_index_path(meta);
        if !path.exists() {
            return None;
        }
        match map_file(&path)
            .ok()
            .flatten()
            .map(|m| Image::open(Backing::Map(m)))
        {
            Some(Err(ImageError::UnsupportedVersion { .. })) => {
                self.report.stale += 1;
                None
            }
            _ => {
                let img = index::load_active(meta, seg);
                if img.is_none() {
                    self.fail(
                        &path,
                        "it does not match the active segment's committed prefix".into(),
                    );
                }
                img
            }
        }
    }

    fn fail(&mut self, path: &Path, reason: String) {
        self.failures.push(Failure {
            file: file_name(path),
            reason,
        });
    }

    /// After `verify` walked `meta` (whose chain points it recomputed as
    /// `chain`): compare the stored file with the image built from the
    /// walk, and (deep) with one rebuilt by the query engine's own path.
    pub(crate) fn end(
        &mut self,
        meta: &SegmentMeta,
        seg: &[u8],
        chain: &ChainPoints,
        feed: Option<Feed>,
    ) {
        let Some(Feed {
            mut builder,
            upto,
            stored,
        }) = feed
        else {
            return;
        };
        builder.set_end_off(upto);
        let trusted_end = chain
            .iter()
            .find(|p| p.0 == upto)
            .map_or(meta.digest, |p| p.1);
        let built = {
            let shadow = shadows(&self.older, stored.as_ref(), self.first_seq);
            Image::open(Backing::Vec(builder.finish(trusted_end, &shadow)))
        };
        let path = if meta.sealed {
            index::index_path(meta)
        } else {
            index::active_index_path(meta)
        };
        let verdict = match (&stored, &built) {
            (None, _) => None,
            (Some(_), Err(e)) => Some(Err(format!(
                "the image built from the segment does not read back: {e}"
            ))),
            (Some(img), Ok(b)) => Some(self.compare_stored(meta, seg, img, b, chain, upto)),
        };
        let passed = matches!(verdict, Some(Ok(())));
        if let Some(Err(reason)) = verdict {
            self.fail(&path, reason);
        }
        if !meta.sealed {
            return;
        }
        // Newer segments' look-ups use the stored file if it passed, else
        // what the segment gives.
        match (stored, built) {
            (Some(img), _) if passed => self.older.push((meta.seq, img)),
            (_, Ok(b)) => self.older.push((meta.seq, b)),
            _ => {}
        }
    }

    fn compare_stored(
        &mut self,
        meta: &SegmentMeta,
        seg: &[u8],
        stored: &Image,
        built: &Image,
        chain: &ChainPoints,
        upto: u64,
    ) -> std::result::Result<(), String> {
        self.report.checked += 1;
        let upto_chain: ChainPoints = chain.iter().copied().filter(|p| p.0 <= upto).collect();
        same_chain(stored, &upto_chain).map_err(|m| m.to_string())?;
        compare(stored, built).map_err(|m| m.to_string())?;
        if self.deep {
            let shadow = shadows(&self.older, Some(stored), self.first_seq);
            let rebuilt = build(meta, seg, upto, &shadow).map_err(|e| e.to_string())?;
            compare(stored, &rebuilt).map_err(|m| m.to_string())?;
        }
        Ok(())
    }

    /// After every segment: a file that failed is moved into `quarantine/`
    /// (unless read-only) and rebuilt; the first failure is the error.
    pub(crate) fn finish(self, dir: &Path, read_only: bool, report: &mut Checked) -> Result<()> {
        *report = self.report;
        let failures = self.failures;
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
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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
/// The look-ups of a build into older images, as the query engine makes
/// them. A shadow pointing into a segment retention dropped (older than
/// `kept`, the oldest kept seq once any was dropped) cannot be rebuilt by
/// anyone: for those only, the stored file's word is taken.
fn shadows<'a>(
    older: &'a [(u64, Image)],
    stored: Option<&'a Image>,
    kept: Option<u64>,
) -> Lookups<'a> {
    Lookups {
        live: crate::query::shadow_in(older.iter().map(|(s, i)| (*s, i))),
        stored: kept.and(stored),
        kept: kept.unwrap_or(0),
    }
}

/// The look-ups of a rebuild: into the older images still there, and,
/// once retention dropped segments, the stored file's word for what lay
/// in them.
struct Lookups<'a> {
    live: crate::query::Shadows<'a>,
    /// The stored file, when retention dropped segments (else `None`).
    stored: Option<&'a Image>,
    /// The oldest kept segment's seq.
    kept: u64,
}

impl index::Older for Lookups<'_> {
    fn start(&self, id: &str) -> Option<(u64, u32)> {
        self.live.start(id).or_else(|| {
            let img = self.stored?;
            let gone = |s: u64| s != index::NONE && s < self.kept;
            // A finish whose start lies elsewhere records where (FINS); a
            // shadowed start only which segment (RUNS).
            if let Some(f) = img.find_fin(id.as_bytes(), index::RunHash::of(id.as_bytes())) {
                if gone(f.start_seq) {
                    return Some((f.start_seq, f.start_pos));
                }
            }
            let s = img.run_lazy(img.find_run(id.as_bytes())?).shadow_seq();
            gone(s).then_some((s, 0))
        })
    }

    /// A log in a dropped segment is gone: the stored file's kind-3 AMND
    /// records say which replacing logs of `id` and `seq` it listed.
    fn has_log(&self, id: &str, seq: u64) -> bool {
        self.live.has_log(id, seq) || self.stored.is_some_and(|img| lists_relog(img, id, seq))
    }
}

/// Does `img` list a replacing log of `id` with `seq` in AMND (kind 3)?
fn lists_relog(img: &Image, id: &str, seq: u64) -> bool {
    let logs = img.logs_of(id.as_bytes());
    (0..img.n_amends()).map(|i| img.amend(i)).any(|a| {
        a.kind == index::AMEND_LOG
            && a.id == id.as_bytes()
            && logs.iter().any(|l| l.lsn == a.lsn && l.seq == seq)
    })
}

fn build(meta: &SegmentMeta, seg: &[u8], to: u64, shadow: &dyn index::Older) -> Result<Image> {
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
    let bytes = index::build_image(meta, seg, kind, span, shadow, None)?;
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
