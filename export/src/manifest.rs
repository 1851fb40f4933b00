//! The export manifest: one JSON object per exported log, at
//! `_auditlog/log_id=ID/manifest.json` in the destination. It records every
//! segment exported (its LSN range, chain digests and blocks) and every
//! file written for it (rows, bytes, BLAKE3), so a rerun knows what is
//! missing and `verify-export` can check the files once the log's own
//! segments are gone. Replaced whole (one PUT or rename) after the files it
//! names are in place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ExportError, Result};

pub const FORMAT: &str = "auditlog-export";
/// Version of the export layout (paths, tables, columns, this manifest)
/// that a new export writes. A destination keeps the version its export
/// began with: an export goes on in it, and `verify-export` reads every
/// version from [`OLDEST_VERSION`] (docs/export.md, "Layout versions").
///
/// - 1: `tool_calls.payload` repeats each call's whole payload.
/// - 2: `tool_calls.extra` holds only what its typed columns do not
///   (the whole payload is in the call's `events` row).
pub const VERSION: u32 = 2;
/// The oldest layout this build reads and goes on writing.
pub const OLDEST_VERSION: u32 = 1;
/// The first layout with `tool_calls.extra` in place of `payload`.
pub const EXTRA_SINCE: u32 = 2;
/// Where manifests live in a destination.
pub const DIR: &str = "_auditlog";

/// The key of a log's manifest.
pub fn key(log_id: &str) -> String {
    format!("{DIR}/log_id={log_id}/manifest.json")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportManifest {
    pub format: String,
    pub version: u32,
    pub log_id: String,
    /// The `host` column's value for this log.
    pub host: String,
    /// The log's segment format version (docs/format.md).
    pub log_format_version: u32,
    /// The oldest segment exported, and the chain digest before it.
    pub first_seq: Option<u64>,
    pub anchor_digest: Option<String>,
    /// Every exported segment, oldest first.
    pub segments: Vec<SegmentEntry>,
    /// Segments that left the log (retention) before they were exported.
    pub gaps: Vec<Gap>,
    /// The log's oldest segment when an export last looked: exported
    /// segments older than it have left the log, and their runs have been
    /// looked for among the runs the log still defines ([`Self::carried`]).
    pub log_first_seq: Option<u64>,
    /// Runs whose row lives in the runs file of an exported segment that
    /// has left the log, while the log defines them again later (carried
    /// forward by retention): run id to the segment of its row. The row
    /// stays there, kept equal to the log's view (docs/export.md).
    pub carried: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub seq: u64,
    /// The segment's day (YYYYMMDD), as in its file name.
    pub day: u32,
    pub first_lsn: u64,
    pub count: u64,
    /// Chain digests before and after the segment (hex).
    pub prev_digest: String,
    pub digest: String,
    /// Group-commit blocks in the segment.
    pub blocks: u64,
    /// The newest segment whose events the runs rows have seen.
    pub runs_through_seq: u64,
    /// Bytes of the segment file that was exported.
    pub segment_bytes: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub table: String,
    /// The UTC day of the partition, YYYY-MM-DD.
    pub dt: String,
    /// Key relative to the destination.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// BLAKE3 of the file's bytes (hex).
    pub blake3: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from_seq: u64,
    pub to_seq: u64,
    pub reason: String,
}

impl ExportManifest {
    pub fn new(log_id: &str, host: &str) -> ExportManifest {
        ExportManifest {
            format: FORMAT.to_string(),
            version: VERSION,
            log_id: log_id.to_string(),
            host: host.to_string(),
            log_format_version: u32::from(auditlog::FORMAT_VERSION),
            first_seq: None,
            anchor_digest: None,
            segments: Vec::new(),
            gaps: Vec::new(),
            log_first_seq: None,
            carried: BTreeMap::new(),
        }
    }

    /// Parse and check a manifest read from `key`.
    pub fn parse(key: &str, bytes: &[u8], log_id: Option<&str>) -> Result<ExportManifest> {
        let bad = |reason: String| ExportError::Manifest {
            path: key.to_string(),
            reason,
        };
        let m: ExportManifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if m.format != FORMAT {
            return Err(bad(format!(
                "not an export manifest (format {:?})",
                m.format
            )));
        }
        if !(OLDEST_VERSION..=VERSION).contains(&m.version) {
            return Err(bad(format!(
                "export layout version {} is not supported: this build reads versions {OLDEST_VERSION} to {VERSION}{}",
                m.version,
                if m.version > VERSION {
                    " (a newer auditlog wrote it)"
                } else {
                    ""
                }
            )));
        }
        if let Some(id) = log_id.filter(|id| *id != m.log_id) {
            return Err(bad(format!("belongs to log {}, not {id}", m.log_id)));
        }
        let ordered = m.segments.windows(2).all(|w| w[0].seq < w[1].seq);
        if !ordered {
            return Err(bad("segments are not in ascending order".into()));
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = serde_json::to_vec_pretty(self).map_err(|e| ExportError::Manifest {
            path: key(&self.log_id),
            reason: e.to_string(),
        })?;
        v.push(b'\n');
        Ok(v)
    }

    pub fn last(&self) -> Option<&SegmentEntry> {
        self.segments.last()
    }

    pub fn segment(&self, seq: u64) -> Option<&SegmentEntry> {
        self.segments
            .binary_search_by_key(&seq, |e| e.seq)
            .ok()
            .map(|i| &self.segments[i])
    }
}
