//! The manifest: which sealed segments the log holds, with each one's final
//! chain digest and LSN range, and the retention anchor (the digest the
//! oldest kept segment must start from). A chain alone cannot see a
//! truncated tail or a deleted segment; the manifest can. It is one JSON
//! line and a CRC line, replaced atomically (write, fsync, rename, fsync
//! the folder).
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::Digest;
use crate::error::{Error, IoContext, Result};
use crate::event::system::SystemRecord;
use crate::event::Micros;
use crate::fsutil;

/// The fields every version has: read first, so that another version is
/// reported as such rather than as a missing field.
#[derive(Deserialize)]
struct Head {
    format: String,
    version: u32,
}

pub const MANIFEST_FILE: &str = "MANIFEST";

/// Why a JSON line's `crc32 HEX` line does not vouch for it (the MANIFEST
/// and the export marker share this two-line shape).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrcLineError {
    #[error("bad CRC line {0:?}")]
    BadLine(String),
    #[error("CRC mismatch (stored {stored:08x}, computed {computed:08x}): the file was damaged or edited")]
    Mismatch { stored: u32, computed: u32 },
}

/// Check `body` against its `crc32 HEX` line.
pub fn check_crc_line(body: &str, crc_line: &str) -> std::result::Result<(), CrcLineError> {
    let stored = crc_line
        .strip_prefix("crc32 ")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| CrcLineError::BadLine(crc_line.to_string()))?;
    let computed = crc32fast::hash(body.as_bytes());
    if stored != computed {
        return Err(CrcLineError::Mismatch { stored, computed });
    }
    Ok(())
}
/// Version 2 added `retention` and `pending`; version 3 the tree fields of
/// a pending retention record; version 4 `redaction`; version 5 a pending
/// retention's `tree_tiles` (docs/format.md); version 6 (no field of its
/// own) marks a log whose segments may hold deferred checkpoints, so that
/// a version 5 reader refuses it. Versions 3 to 5 are read, and written
/// back as version 6 by the next writer; version 2 is refused (its
/// retention records carry no tree).
pub const MANIFEST_VERSION: u32 = 6;
/// The oldest version read.
pub const MIN_MANIFEST_VERSION: u32 = 3;
/// Policy records kept (the newest); older ones are counted in
/// `redaction_records_trimmed`.
pub const MAX_POLICY_RECORDS: usize = 64;
const MAGIC: &str = "auditlog-manifest";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEntry {
    pub seq: u64,
    pub day: u32,
    pub first_lsn: u64,
    pub count: u64,
    pub min_ts: Micros,
    pub max_ts: Micros,
    /// Chain digest after the segment's last block (hex).
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// LSN of the oldest kept event (everything before was retained away).
    pub first_lsn: u64,
    /// Chain digest before that event (hex); all zeros for a new log.
    pub digest: String,
    /// Sequence number of the oldest segment that may exist.
    pub first_seq: u64,
}

/// Where a system event is stored: its segment, the offset of its frame
/// (the first frame of a block that holds only it) and its LSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    pub seq: u64,
    pub offset: u64,
    pub lsn: u64,
}

/// A redaction policy that came into force (docs/reliability.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// The first LSN appended under it.
    pub since_lsn: u64,
    /// When the writer that brought it in opened the log (µs, UTC).
    pub since_ts: Micros,
    /// `metadata-only`, `hash-and-sizes`, `custom`, ... or `none`.
    pub name: String,
    /// `blake3:<hex>` of `text`.
    pub fingerprint: String,
    /// The whole policy in the line format, so a later writer that names
    /// no policy applies it too. Never holds a hash key.
    pub text: String,
    /// Hashes are keyed: a writer must bring the key to go on with it.
    pub keyed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// Random id given at creation; tells two logs apart.
    pub log_id: String,
    pub anchor: Anchor,
    pub sealed: Vec<SealedEntry>,
    /// Totals of what retention has dropped over the log's life.
    pub dropped_segments: u64,
    pub dropped_events: u64,
    /// Where the newest retention record is (`None` while the anchor is
    /// the genesis).
    pub retention: Option<RecordRef>,
    /// A system record whose effects are being applied (a cut, a repair, a
    /// retention pass); cleared once its event is in the log.
    pub pending: Option<SystemRecord>,
    /// Redaction policies in force over the log's life, oldest first; the
    /// last is the current one. Empty: never any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redaction: Vec<PolicyRecord>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub redaction_records_trimmed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Manifest {
    pub fn new() -> Manifest {
        Manifest {
            format: MAGIC.to_string(),
            version: MANIFEST_VERSION,
            log_id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            anchor: Anchor {
                first_lsn: 0,
                digest: Digest::GENESIS.to_hex(),
                first_seq: 1,
            },
            sealed: Vec::new(),
            dropped_segments: 0,
            dropped_events: 0,
            retention: None,
            pending: None,
            redaction: Vec::new(),
            redaction_records_trimmed: 0,
        }
    }

    /// The policy in force now, if one was ever recorded.
    pub fn current_policy(&self) -> Option<&PolicyRecord> {
        self.redaction.last()
    }

    /// Record a policy coming into force (keeping the newest records).
    pub fn record_policy(&mut self, rec: PolicyRecord) {
        self.redaction.push(rec);
        while self.redaction.len() > MAX_POLICY_RECORDS {
            self.redaction.remove(0);
            self.redaction_records_trimmed += 1;
        }
    }

    /// Whether the anchor is where a new log starts (nothing ever dropped).
    pub fn anchor_is_genesis(&self) -> bool {
        self.anchor.first_lsn == 0
            && self.anchor.first_seq == 1
            && self.anchor_digest() == Digest::GENESIS
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    pub fn anchor_digest(&self) -> Digest {
        Digest::from_hex(&self.anchor.digest).unwrap_or(Digest::GENESIS)
    }

    /// Read and check the manifest of `dir`; `Ok(None)` if there is none.
    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = Manifest::path(dir);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let bad = |reason: String| Error::Manifest {
            path: path.clone(),
            reason,
        };
        // Exactly two lines, each ending with a newline.
        let lines: Vec<&str> = match text.strip_suffix('\n') {
            Some(t) => t.split('\n').collect(),
            None => {
                return Err(bad(
                    "the file does not end with a newline (cut short?)".into()
                ))
            }
        };
        let [body, crc_line] = lines[..] else {
            return Err(bad(format!(
                "{} lines; a MANIFEST is exactly a JSON line and a CRC line",
                lines.len()
            )));
        };
        check_crc_line(body, crc_line).map_err(|e| bad(e.to_string()))?;
        let head: Head = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
        if head.format != MAGIC {
            return Err(bad(format!(
                "not an auditlog manifest (format {:?})",
                head.format
            )));
        }
        if !(MIN_MANIFEST_VERSION..=MANIFEST_VERSION).contains(&head.version) {
            return Err(Error::UnsupportedVersion {
                what: path.display().to_string(),
                found: head.version,
                supported: MANIFEST_VERSION,
            });
        }
        let m: Manifest = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
        if m.format != MAGIC {
            return Err(bad(format!(
                "not an auditlog manifest (format {:?})",
                m.format
            )));
        }
        if !(MIN_MANIFEST_VERSION..=MANIFEST_VERSION).contains(&m.version) {
            return Err(Error::UnsupportedVersion {
                what: path.display().to_string(),
                found: m.version,
                supported: MANIFEST_VERSION,
            });
        }
        if let Some(r @ SystemRecord::Retention(_)) = &m.pending {
            // Its frontier and kept tile hashes are what the record to be
            // appended will store: checked as a stored one is.
            r.check().map_err(|e| {
                bad(format!(
                    "its pending retention record: {}: {}",
                    e.field, e.reason
                ))
            })?;
        }
        Ok(Some(m))
    }

    /// Replace the manifest atomically and durably.
    pub fn store(&self, dir: &Path) -> Result<()> {
        self.write_tmp(dir)?;
        Manifest::commit_tmp(dir)
    }

    /// The first half of [`Manifest::store`]: `MANIFEST.tmp` written and
    /// fsynced, nothing replaced yet (a roll runs this while the syncer
    /// makes the sealed segment's footer durable, then commits).
    pub fn write_tmp(&self, dir: &Path) -> Result<()> {
        let body = serde_json::to_string(self).map_err(|e| Error::Manifest {
            path: Manifest::path(dir),
            reason: e.to_string(),
        })?;
        let text = format!("{body}\ncrc32 {:08x}\n", crc32fast::hash(body.as_bytes()));
        let tmp = dir.join("MANIFEST.tmp");
        {
            let mut f =
                fsutil::create_private(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
            f.write_all(text.as_bytes())
                .ctx(|| format!("writing {}", tmp.display()))?;
            f.sync_all().ctx(|| format!("syncing {}", tmp.display()))?;
        }
        Ok(())
    }

    /// The second half of [`Manifest::store`]: `MANIFEST.tmp` renamed over
    /// `MANIFEST`, and the folder fsynced.
    pub fn commit_tmp(dir: &Path) -> Result<()> {
        let tmp = dir.join("MANIFEST.tmp");
        fs::rename(&tmp, Manifest::path(dir))
            .ctx(|| format!("renaming {} into place", tmp.display()))?;
        fsutil::sync_dir(dir)
    }
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest::new()
    }
}
