//! The `EXPORTED` marker: which sealed segments have been copied out of
//! the log, and where. An export (the `auditlog-export` crate) records
//! here, after its destination holds a segment's files and its manifest,
//! the newest segment it has exported; retention run with
//! [`RetainOptions::exported_first`](crate::retention::RetainOptions)
//! keeps every segment that some recorded destination does not hold yet.
//!
//! One JSON line and a CRC line, like the MANIFEST, replaced atomically
//! (write, fsync, rename, fsync the folder). Only the holder of the
//! export lock (`EXPORTED.lock`, [`try_lock`]) changes it, so two exports
//! to different destinations cannot lose each other's entry. Byte layout
//! in docs/format.md.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use fs2::FileExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::lock::HeldLock;

pub const EXPORTED_FILE: &str = "EXPORTED";
pub const EXPORTED_LOCK_FILE: &str = "EXPORTED.lock";
const EXPORTED_TMP_FILE: &str = "EXPORTED.tmp";
pub const EXPORTED_VERSION: u32 = 1;
const MAGIC: &str = "auditlog-exported";

/// One destination and the newest segment it holds. Exports go in segment
/// order, so it holds every segment of the log up to `through_seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportMark {
    /// The destination as the export names it (`file:///…`, `s3://…`).
    pub destination: String,
    pub through_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marks {
    format: String,
    version: u32,
    destinations: Vec<ExportMark>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(EXPORTED_FILE)
}

/// The destinations recorded for the log in `dir` (none if never exported).
pub fn load(dir: &Path) -> Result<Vec<ExportMark>> {
    let path = path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let bad = |reason: String| Error::Manifest {
        path: path.clone(),
        reason,
    };
    let mut lines = text.lines();
    let body = lines.next().ok_or_else(|| bad("empty file".into()))?;
    let crc_line = lines.next().ok_or_else(|| bad("no CRC line".into()))?;
    crate::manifest::check_crc_line(body, crc_line).map_err(|e| bad(e.to_string()))?;
    let m: Marks = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
    if m.format != MAGIC {
        return Err(bad(format!("not an export marker (format {:?})", m.format)));
    }
    if m.version != EXPORTED_VERSION {
        return Err(Error::UnsupportedVersion {
            what: path.display().to_string(),
            found: m.version,
            supported: EXPORTED_VERSION,
        });
    }
    Ok(m.destinations)
}

/// The newest segment that every recorded destination holds: retention
/// with `exported_first` drops nothing newer. `None` when nothing was
/// ever recorded (then it drops nothing at all).
pub fn exported_through(dir: &Path) -> Result<Option<u64>> {
    Ok(load(dir)?.iter().map(|m| m.through_seq).min())
}

/// Held by the one export of a log that may change its marker: an
/// exclusive lock on `EXPORTED.lock`, released when dropped.
#[derive(Debug)]
pub struct ExportLock {
    dir: PathBuf,
    _lock: HeldLock,
}

/// Take the export lock of the log in `dir`; `None` while another export
/// holds it.
pub fn try_lock(dir: &Path) -> Result<Option<ExportLock>> {
    if crate::manifest::Manifest::load(dir)?.is_none() {
        return Err(Error::NoLog(dir.to_path_buf()));
    }
    let lock_path = dir.join(EXPORTED_LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .ctx(|| format!("opening {}", lock_path.display()))?;
    match file.try_lock_exclusive() {
        Ok(()) => Ok(Some(ExportLock {
            dir: dir.to_path_buf(),
            _lock: HeldLock::from_locked(file),
        })),
        Err(e) if e.kind() == fs2::lock_contended_error().kind() => Ok(None),
        Err(e) => Err(Error::io(format!("locking {}", lock_path.display()), e)),
    }
}

/// Record that `destination` holds every segment up to `through_seq`.
/// A mark never moves back: an older `through_seq` leaves it as it is.
pub fn record(lock: &ExportLock, destination: &str, through_seq: u64) -> Result<()> {
    update(&lock.dir, |marks| {
        match marks.iter_mut().find(|m| m.destination == destination) {
            Some(m) if m.through_seq >= through_seq => return false,
            Some(m) => m.through_seq = through_seq,
            None => marks.push(ExportMark {
                destination: destination.to_string(),
                through_seq,
            }),
        }
        true
    })
}

/// Stop counting `destination` for retention; whether it was recorded.
pub fn forget(lock: &ExportLock, destination: &str) -> Result<bool> {
    let mut found = false;
    update(&lock.dir, |marks| {
        let before = marks.len();
        marks.retain(|m| m.destination != destination);
        found = marks.len() != before;
        found
    })?;
    Ok(found)
}

/// Read, change and atomically replace the marker (under the lock).
fn update(dir: &Path, change: impl FnOnce(&mut Vec<ExportMark>) -> bool) -> Result<()> {
    let mut marks = load(dir)?;
    if !change(&mut marks) {
        return Ok(());
    }
    let body = serde_json::to_string(&Marks {
        format: MAGIC.to_string(),
        version: EXPORTED_VERSION,
        destinations: marks,
    })
    .map_err(|e| Error::Manifest {
        path: path(dir),
        reason: e.to_string(),
    })?;
    let text = format!("{body}\ncrc32 {:08x}\n", crc32fast::hash(body.as_bytes()));
    let tmp = dir.join(EXPORTED_TMP_FILE);
    {
        let mut f = fsutil::create_private(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .ctx(|| format!("writing {}", tmp.display()))?;
        f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
    }
    fs::rename(&tmp, path(dir)).ctx(|| format!("renaming {} into place", tmp.display()))?;
    fsutil::sync_dir(dir)
}
