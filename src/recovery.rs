//! What may take bytes out of a segment, and how nothing is lost when it
//! does: a torn tail cut by a writer open, and `auditlog repair`. Both move
//! the bytes into `quarantine/` (BLAKE3 recorded), skip every LSN and
//! segment number the bytes may hold, and record the cut as a system event
//! (docs/integrity.md). The steps survive a crash: the record is stored in
//! the MANIFEST as `pending` before anything is touched, and an open that
//! finds it resumes; resuming never cuts on the strength of the record, it
//! only finishes copies and moves whose bytes still hash as recorded.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::chain::Digest;
use crate::error::{Error, IoContext, Result};
use crate::event::system::{Cut, SystemRecord};
use crate::fsutil;
use crate::layout::TailDamage;
use crate::manifest::Manifest;
use crate::num::{u64_of, usize_of};
use crate::segment::HEADER_SIZE;

/// The folder (inside the log folder) that holds what was taken out.
pub const QUARANTINE_DIR: &str = "quarantine";

/// `DIR/quarantine`, created owner-only if missing.
pub fn quarantine_dir(dir: &Path) -> Result<PathBuf> {
    let q = dir.join(QUARANTINE_DIR);
    if !q.is_dir() {
        fsutil::create_private_dir(&q)?;
        fsutil::sync_dir(dir)?;
    }
    Ok(q)
}

fn blake3_hex(bytes: &[u8]) -> String {
    Digest(*blake3::hash(bytes).as_bytes()).to_hex()
}

/// A name under `quarantine/` for `base` that is free, or already holds
/// exactly `bytes` (a resumed cut): `base`, then `base.2`, `base.3`, ...
fn quarantine_name(dir: &Path, base: &str, hash: &str) -> String {
    for n in 1u32.. {
        let name = if n == 1 {
            base.to_string()
        } else {
            format!("{base}.{n}")
        };
        let path = dir.join(QUARANTINE_DIR).join(&name);
        match fs::read(&path) {
            Err(_) => return format!("{QUARANTINE_DIR}/{name}"),
            Ok(b) if blake3_hex(&b) == hash => return format!("{QUARANTINE_DIR}/{name}"),
            Ok(_) => {}
        }
    }
    unreachable!("u32 names run out before the folder does")
}

/// The cut a writer open makes of a torn tail (`damage.committed_after` is
/// false): what to quarantine, what to keep, which LSNs and segment
/// numbers to skip.
pub fn plan_torn_tail_cut(dir: &Path, damage: &TailDamage, bytes: &[u8]) -> Cut {
    let keep_segment =
        damage.header.is_some() && (damage.kept_events > 0 || damage.events_after == 0);
    let whole = !keep_segment;
    plan(
        dir,
        damage,
        bytes,
        whole,
        damage.next_lsn + damage.events_after,
        "torn",
    )
}

/// The cut `auditlog repair` makes: the whole damaged file is moved aside
/// (its valid prefix is written back as the segment), and every LSN the
/// damaged part may hold is skipped.
pub fn plan_repair(dir: &Path, damage: &TailDamage, bytes: &[u8]) -> Cut {
    // An LSN named by a commit record after the damage may have been
    // acknowledged: never give it out again. Bounded by the file's size (one
    // LSN per byte is more than any frame can hold), so a forged record
    // cannot push the numbering to its end.
    let bound = damage.next_lsn.saturating_add(damage.file_len);
    let skip_to = damage
        .max_committed_lsn
        .max(damage.next_lsn + damage.events_after)
        .min(bound);
    plan(dir, damage, bytes, true, skip_to, "repair")
}

fn plan(
    dir: &Path,
    damage: &TailDamage,
    bytes: &[u8],
    whole: bool,
    skip_to_lsn: u64,
    why: &str,
) -> Cut {
    let from = if whole { 0 } else { damage.valid_end };
    let taken = bytes.get(usize_of(from)..).unwrap_or_default();
    let hash = blake3_hex(taken);
    let base = if whole {
        damage.name.clone()
    } else {
        format!("{}.cut-{}", damage.name, damage.valid_end)
    };
    let quarantine = quarantine_name(dir, &base, &hash);
    // A segment that keeps no event is not kept at all (it is in quarantine
    // whole), so its number is skipped too.
    let seq_skipped = whole && damage.kept_events == 0;
    let next_seq = damage.seq + 1;
    Cut {
        segment: damage.name.clone(),
        seq: damage.seq,
        valid_end: damage.valid_end,
        kept_events: damage.kept_events,
        kept_digest: damage.kept_digest.to_hex(),
        damage_offset: damage.stop.offset,
        reason: format!("{why}: {}", damage.stop.reason),
        quarantine,
        quarantine_from: from,
        quarantine_bytes: u64_of(taken.len()),
        quarantine_blake3: hash,
        skip_from_lsn: damage.next_lsn,
        skip_to_lsn,
        skip_from_seq: if seq_skipped { damage.seq } else { next_seq },
        skip_to_seq: next_seq,
    }
}

/// Store `record` as the MANIFEST's pending record (before anything is
/// touched), durably.
pub fn set_pending(dir: &Path, manifest: &mut Manifest, record: SystemRecord) -> Result<()> {
    manifest.pending = Some(record);
    manifest.store(dir)
}

/// The file-level steps of a pending cut or repair, each done only if not
/// done yet: the quarantine file holds the recorded bytes (copied or moved
/// from the segment, which must still hash as recorded), and the segment
/// holds exactly its kept prefix (cut back, or written back from the
/// quarantined file). Called by every writer open that finds a pending
/// record, before the layout is read.
pub fn apply_cut_files(dir: &Path, cut: &Cut) -> Result<()> {
    quarantine_dir(dir)?;
    let seg = dir.join(&cut.segment);
    // The stored index of the active segment's prefix may cover what is
    // cut: derived data, rebuilt by the next query.
    let _ = fs::remove_file(seg.with_extension("aidx"));
    let qpath = dir.join(&cut.quarantine);
    let have_q = fs::read(&qpath).is_ok_and(|b| blake3_hex(&b) == cut.quarantine_blake3);
    if !have_q {
        let current = fs::read(&seg).ctx(|| format!("reading {}", seg.display()))?;
        let from = usize::try_from(cut.quarantine_from).unwrap_or(usize::MAX);
        let taken = current.get(from..).unwrap_or(&[]);
        if blake3_hex(taken) != cut.quarantine_blake3 {
            return Err(pending_mismatch(
                cut,
                "the bytes to quarantine no longer hash as recorded",
            ));
        }
        if cut.quarantine_from == 0 {
            // The whole file, moved (same inode, byte for byte).
            fs::rename(&seg, &qpath).ctx(|| format!("moving {} into quarantine", seg.display()))?;
        } else {
            write_synced(&qpath, taken)?;
        }
        fsutil::sync_dir(&dir.join(QUARANTINE_DIR))?;
        fsutil::sync_dir(dir)?;
    }
    restore_kept_prefix(dir, cut, &seg, &qpath)
}

/// Make the segment hold exactly its kept prefix: cut a copied tail off, or
/// write the valid prefix of a moved file back (temporary file, fsync,
/// rename). A segment that keeps nothing is not in the log at all.
fn restore_kept_prefix(dir: &Path, cut: &Cut, seg: &Path, qpath: &Path) -> Result<()> {
    let keep =
        cut.kept_events > 0 || (cut.quarantine_from > 0 && cut.valid_end >= HEADER_SIZE as u64);
    let len = fs::metadata(seg).map(|m| m.len()).ok();
    match (keep, len) {
        (false, _) => Ok(()),
        // Already cut back (or sealed after the cut: a footer follows).
        (true, Some(l)) if l == cut.valid_end || sealed_at(seg, cut.valid_end) => Ok(()),
        (true, Some(l)) if l > cut.valid_end && cut.quarantine_from == cut.valid_end => {
            // Only bytes that are, byte for byte, in quarantine are cut.
            let current = fs::read(seg).ctx(|| format!("reading {}", seg.display()))?;
            let tail = current.get(usize_of(cut.valid_end)..).unwrap_or_default();
            if blake3_hex(tail) != cut.quarantine_blake3 {
                return Err(pending_mismatch(
                    cut,
                    "the tail to cut is not what was quarantined",
                ));
            }
            let f = OpenOptions::new()
                .write(true)
                .open(seg)
                .ctx(|| format!("opening {} to cut its torn tail", seg.display()))?;
            f.set_len(cut.valid_end)
                .and_then(|_| f.sync_all())
                .ctx(|| format!("cutting the torn tail of {}", seg.display()))
        }
        (true, None) if cut.quarantine_from == 0 => {
            let q = fs::read(qpath).ctx(|| format!("reading {}", qpath.display()))?;
            let prefix = q.get(..usize_of(cut.valid_end)).ok_or_else(|| {
                pending_mismatch(cut, "the quarantined file is shorter than the kept prefix")
            })?;
            let tmp = seg.with_extension("seg.tmp");
            write_synced(&tmp, prefix)?;
            fs::rename(&tmp, seg).ctx(|| format!("renaming {} into place", tmp.display()))?;
            fsutil::sync_dir(dir)
        }
        (true, _) => Err(pending_mismatch(
            cut,
            "the segment is not in the state the record expects",
        )),
    }
}

/// Whether `seg` is sealed with its data ending at `end`.
fn sealed_at(seg: &Path, end: u64) -> bool {
    fs::read(seg)
        .ok()
        .and_then(|b| crate::segment::read_footer(&b).ok().flatten())
        .is_some_and(|f| f.data_end == end)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fsutil::create_private(path).ctx(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", path.display()))
}

fn pending_mismatch(cut: &Cut, why: &str) -> Error {
    Error::Corrupt {
        segment: cut.segment.clone(),
        offset: cut.valid_end,
        reason: format!(
            "the MANIFEST holds a pending {} of this segment ({}), but {why}; nothing was changed",
            if cut.quarantine_from == 0 {
                "move into quarantine"
            } else {
                "cut"
            },
            cut.quarantine
        ),
    }
}
