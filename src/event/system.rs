//! System events: what the engine does to the log itself (a torn tail cut
//! on open, a repair, a retention pass), recorded in the log as events of
//! kind `system`, chained like every other event, so that nothing is ever
//! taken out of the log silently. Byte layout in docs/format.md ("System
//! events"); why and when in docs/integrity.md.
//!
//! A system event has `run_id` `""` (no run can have it), `ts` = the wall
//! clock when it was recorded, no unknown fields, and one record. Only the
//! engine writes them: `Log::append` and the JSON parser refuse them.

use serde::{Deserialize, Serialize};

use super::time::format_rfc3339;
use super::Micros;
use crate::chain::Digest;
use crate::error::EventError;

/// The record a system event carries. Stored as `SystemWire`: a
/// retention record that keeps tile hashes is variant 4 (format 5); one
/// that keeps none is variant 2, the bytes formats 3 and 4 wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SystemWire", into = "SystemWire")]
pub enum SystemRecord {
    /// A writer open cut a torn tail off the active segment.
    TornTailCut(Cut),
    /// `auditlog repair` moved a damaged segment into `quarantine/`.
    Repair(Cut),
    /// Retention dropped the oldest sealed segments.
    Retention(Retention),
    /// A signed checkpoint of the Merkle tree over the events before it
    /// (docs/proofs.md).
    Checkpoint(TreeCheckpoint),
}

/// A signed tree head, stored in the log: the C2SP `tlog-checkpoint` signed
/// note for the tree over every event before this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeCheckpoint {
    /// Leaves covered: the events before this one, since the log began
    /// (retention drops events, never leaves).
    pub tree_size: u64,
    /// The RFC 6962 root over them (hex; the note carries it in base64).
    pub root: String,
    /// Wall clock when it was signed, µs (the event's `ts` is the newest
    /// covered event's, so that a segment's time range stays its events').
    pub signed_at: Micros,
    /// The signed note: origin, tree size, root, signature lines.
    pub note: String,
}

/// Bytes taken out of a segment, where they went, and the LSNs and segment
/// numbers that are never used again because of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// File name of the segment that was cut.
    pub segment: String,
    pub seq: u64,
    /// Offset just past its last whole, valid block: what stays in the log.
    pub valid_end: u64,
    /// Events of that segment that stay in the log.
    pub kept_events: u64,
    /// Chain digest at `valid_end` (hex): the digest the log goes on from.
    pub kept_digest: String,
    /// Where the damage was found (== `valid_end` for a torn tail).
    pub damage_offset: u64,
    /// What was found there.
    pub reason: String,
    /// The file under the log folder holding the bytes taken out.
    pub quarantine: String,
    /// Segment offset of the quarantine file's first byte (0 = whole file).
    pub quarantine_from: u64,
    pub quarantine_bytes: u64,
    /// BLAKE3 of the quarantine file (hex).
    pub quarantine_blake3: String,
    /// LSNs `[skip_from_lsn, skip_to_lsn)` are never given to an event.
    pub skip_from_lsn: u64,
    pub skip_to_lsn: u64,
    /// Segment numbers `[skip_from_seq, skip_to_seq)` are never used again.
    pub skip_from_seq: u64,
    pub skip_to_seq: u64,
}

/// One segment a retention pass dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedSegment {
    pub seq: u64,
    pub day: u32,
    pub first_lsn: u64,
    pub count: u64,
    pub min_ts: Micros,
    pub max_ts: Micros,
    /// Its final chain digest (hex).
    pub digest: String,
}

/// What a retention pass dropped, why, and where the kept log now starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Segments whose newest event is older than this were dropped.
    pub cutoff: Micros,
    pub reason: String,
    pub dropped: Vec<DroppedSegment>,
    /// The MANIFEST anchor after this pass.
    pub anchor_first_seq: u64,
    pub anchor_first_lsn: u64,
    pub anchor_digest: String,
    /// Totals over the log's life, after this pass.
    pub total_dropped_segments: u64,
    pub total_dropped_events: u64,
    /// Leaves of the Merkle tree before the first kept event.
    pub tree_size: u64,
    /// The roots of the complete subtrees over those leaves, largest first
    /// (hex): the stored frontier that keeps later events provable.
    pub tree_frontier: Vec<String>,
    /// A checkpoint of `tree_size` leaves whose root is the frontier's,
    /// with an extension line `auditlog-retention FIRST_LSN ANCHOR_DIGEST`,
    /// signed like every checkpoint ("" when the log signs nothing).
    pub tree_note: String,
    /// Format 5: the hashes the cut keeps for tiles (hex), one list per
    /// tile level, level 0 first ([`crate::tlog::CutTiles`]); they fold to
    /// the frontier. Empty: none kept (a record of format 3 or 4, or a cut
    /// under leaves an older retention dropped without them).
    #[serde(default)]
    pub tree_tiles: Vec<Vec<String>>,
}

/// The record as stored (bincode and the MANIFEST's `pending`): the
/// variants in the order of docs/format.md.
#[derive(Serialize, Deserialize)]
enum SystemWire {
    TornTailCut(Cut),
    Repair(Cut),
    /// Formats 3 and 4, and format 5 when no tile hashes are kept.
    Retention(RetentionV4),
    Checkpoint(TreeCheckpoint),
    /// Format 5, with tile hashes.
    RetentionTiles(Retention),
}

/// A retention record of formats 3 and 4: [`Retention`] without
/// `tree_tiles`.
#[derive(Serialize, Deserialize)]
struct RetentionV4 {
    cutoff: Micros,
    reason: String,
    dropped: Vec<DroppedSegment>,
    anchor_first_seq: u64,
    anchor_first_lsn: u64,
    anchor_digest: String,
    total_dropped_segments: u64,
    total_dropped_events: u64,
    tree_size: u64,
    tree_frontier: Vec<String>,
    tree_note: String,
}

impl From<SystemWire> for SystemRecord {
    fn from(w: SystemWire) -> SystemRecord {
        match w {
            SystemWire::TornTailCut(c) => SystemRecord::TornTailCut(c),
            SystemWire::Repair(c) => SystemRecord::Repair(c),
            SystemWire::Retention(r) => SystemRecord::Retention(Retention {
                cutoff: r.cutoff,
                reason: r.reason,
                dropped: r.dropped,
                anchor_first_seq: r.anchor_first_seq,
                anchor_first_lsn: r.anchor_first_lsn,
                anchor_digest: r.anchor_digest,
                total_dropped_segments: r.total_dropped_segments,
                total_dropped_events: r.total_dropped_events,
                tree_size: r.tree_size,
                tree_frontier: r.tree_frontier,
                tree_note: r.tree_note,
                tree_tiles: Vec::new(),
            }),
            SystemWire::Checkpoint(c) => SystemRecord::Checkpoint(c),
            SystemWire::RetentionTiles(r) => SystemRecord::Retention(r),
        }
    }
}

impl From<SystemRecord> for SystemWire {
    fn from(r: SystemRecord) -> SystemWire {
        match r {
            SystemRecord::TornTailCut(c) => SystemWire::TornTailCut(c),
            SystemRecord::Repair(c) => SystemWire::Repair(c),
            // Nothing kept: the bytes of format 4, which mean the same.
            SystemRecord::Retention(r) if r.tree_tiles.is_empty() => {
                SystemWire::Retention(RetentionV4 {
                    cutoff: r.cutoff,
                    reason: r.reason,
                    dropped: r.dropped,
                    anchor_first_seq: r.anchor_first_seq,
                    anchor_first_lsn: r.anchor_first_lsn,
                    anchor_digest: r.anchor_digest,
                    total_dropped_segments: r.total_dropped_segments,
                    total_dropped_events: r.total_dropped_events,
                    tree_size: r.tree_size,
                    tree_frontier: r.tree_frontier,
                    tree_note: r.tree_note,
                })
            }
            SystemRecord::Retention(r) => SystemWire::RetentionTiles(r),
            SystemRecord::Checkpoint(c) => SystemWire::Checkpoint(c),
        }
    }
}

impl SystemRecord {
    /// The name `replay` shows as `"record"`.
    pub fn name(&self) -> &'static str {
        match self {
            SystemRecord::TornTailCut(_) => "torn_tail_cut",
            SystemRecord::Repair(_) => "repair",
            SystemRecord::Retention(_) => "retention",
            SystemRecord::Checkpoint(_) => "checkpoint",
        }
    }

    /// The cut of a torn-tail cut or a repair.
    pub fn cut(&self) -> Option<&Cut> {
        match self {
            SystemRecord::TornTailCut(c) | SystemRecord::Repair(c) => Some(c),
            SystemRecord::Retention(_) | SystemRecord::Checkpoint(_) => None,
        }
    }

    /// What a reader of stored bytes requires of a record (the strict
    /// decoder's part for system events); the error names the field.
    pub fn check(&self) -> Result<(), EventError> {
        match self {
            SystemRecord::TornTailCut(c) | SystemRecord::Repair(c) => c.check(),
            SystemRecord::Retention(r) => r.check(),
            SystemRecord::Checkpoint(c) => c.check(),
        }
    }
}

fn hex_digest(field: &str, s: &str) -> Result<Digest, EventError> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(EventError::new(field, "is not 64 lowercase hex digits"));
    }
    Digest::from_hex(s).ok_or_else(|| EventError::new(field, "is not a digest"))
}

impl Cut {
    fn check(&self) -> Result<(), EventError> {
        hex_digest("record.kept_digest", &self.kept_digest)?;
        hex_digest("record.quarantine_blake3", &self.quarantine_blake3)?;
        if self.skip_to_lsn < self.skip_from_lsn || self.skip_to_seq < self.skip_from_seq {
            return Err(EventError::new(
                "record.skip_to_lsn",
                "the skipped range runs backwards",
            ));
        }
        if self.quarantine.is_empty() || self.quarantine.contains("..") {
            return Err(EventError::new(
                "record.quarantine",
                "the file name is empty or leaves the log folder",
            ));
        }
        Ok(())
    }

    /// The chain digest the log goes on from after this cut.
    pub fn kept_digest(&self) -> Digest {
        Digest::from_hex(&self.kept_digest).unwrap_or_default()
    }

    /// Whether the next segment must start after a gap (LSNs or segment
    /// numbers skipped), with this record as its first event.
    pub fn needs_new_segment(&self) -> bool {
        self.skip_to_lsn > self.skip_from_lsn || self.skip_to_seq > self.skip_from_seq
    }
}

impl Retention {
    fn check(&self) -> Result<(), EventError> {
        hex_digest("record.anchor_digest", &self.anchor_digest)?;
        for d in &self.dropped {
            hex_digest("record.dropped.digest", &d.digest)?;
        }
        if self.dropped.is_empty() {
            return Err(EventError::new(
                "record.dropped",
                "a retention record drops nothing",
            ));
        }
        let frontier = self.frontier()?;
        self.cut_tiles_of(&frontier)?;
        if !self.tree_note.is_empty() {
            let c = crate::tlog::Checkpoint::parse(note_text("record.tree_note", &self.tree_note)?)
                .map_err(|e| EventError::new("record.tree_note", e.to_string()))?;
            if c.size != self.tree_size || c.root != frontier.root() {
                return Err(EventError::new(
                    "record.tree_note",
                    "the retention note does not sign the stored frontier",
                ));
            }
        }
        Ok(())
    }

    /// The stored frontier, checked: one root per set bit of `tree_size`.
    pub fn frontier(&self) -> Result<crate::tlog::Frontier, EventError> {
        let nodes = self
            .tree_frontier
            .iter()
            .map(|h| {
                crate::tlog::TreeHash::from_hex(h).ok_or_else(|| {
                    EventError::new("record.tree_frontier", "a hash is not 64 hex digits")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        crate::tlog::Frontier::from_parts(self.tree_size, nodes)
            .map_err(|e| EventError::new("record.tree_frontier", e.to_string()))
    }

    /// The hashes the cut kept for tiles, checked: the right count at
    /// every level, folding to exactly the stored frontier (which the note
    /// signs). `None` when the record keeps none.
    pub fn cut_tiles(&self) -> Result<Option<crate::tlog::CutTiles>, EventError> {
        self.cut_tiles_of(&self.frontier()?)
    }

    fn cut_tiles_of(
        &self,
        frontier: &crate::tlog::Frontier,
    ) -> Result<Option<crate::tlog::CutTiles>, EventError> {
        if self.tree_tiles.is_empty() {
            return Ok(None);
        }
        let bad_hex = || EventError::new("record.tree_tiles", "a hash is not 64 hex digits");
        let levels = self
            .tree_tiles
            .iter()
            .map(|level| {
                level
                    .iter()
                    .map(|h| crate::tlog::TreeHash::from_hex(h).ok_or_else(bad_hex))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        crate::tlog::CutTiles::new(self.tree_size, levels, frontier)
            .map(Some)
            .map_err(|e| {
                EventError::new(
                    "record.tree_tiles",
                    format!("the retention record's tile hashes are not its cut's: {e}"),
                )
            })
    }

    pub fn anchor_digest(&self) -> Digest {
        Digest::from_hex(&self.anchor_digest).unwrap_or_default()
    }
}

/// A signed note's text (the part the signatures cover), shape checked.
fn note_text<'a>(field: &str, note: &'a str) -> Result<&'a str, EventError> {
    crate::tlog::note::split(note)
        .map(|(text, _)| text)
        .map_err(|e| EventError::new(field, e.to_string()))
}

impl TreeCheckpoint {
    fn check(&self) -> Result<(), EventError> {
        let root = crate::tlog::TreeHash::from_hex(&self.root)
            .ok_or_else(|| EventError::new("record.root", "is not 64 hex digits"))?;
        let c = crate::tlog::Checkpoint::parse(note_text("record.note", &self.note)?)
            .map_err(|e| EventError::new("record.note", e.to_string()))?;
        if c.size != self.tree_size || c.root != root {
            return Err(EventError::new(
                "record.note",
                "the checkpoint's note and its fields disagree",
            ));
        }
        Ok(())
    }

    /// The checkpoint in the note (not its signature: see `tlog::checkpoint::open`).
    pub fn parsed(&self) -> Option<crate::tlog::Checkpoint> {
        crate::tlog::Checkpoint::parse(note_text("record.note", &self.note).ok()?).ok()
    }
}

// ---------------------------------------------------------------------------
// JSON output (replay, tail, the MANIFEST's `pending`)
// ---------------------------------------------------------------------------

/// The record's fields as JSON object members, each preceded by a comma:
/// `,"record":"...",...` (the event's kind, run_id and ts come first).
pub fn write_fields(r: &SystemRecord, out: &mut String) {
    out.push_str(",\"record\":\"");
    out.push_str(r.name());
    out.push('"');
    // serde_json writes the struct's fields in declaration order.
    let body = match r {
        SystemRecord::TornTailCut(c) | SystemRecord::Repair(c) => serde_json::to_string(c),
        SystemRecord::Retention(x) => serde_json::to_string(x),
        SystemRecord::Checkpoint(x) => serde_json::to_string(x),
    };
    if let Ok(body) = body {
        // `{...}` without its braces, after a comma.
        let inner = &body[1..body.len() - 1];
        if !inner.is_empty() {
            out.push(',');
            out.push_str(inner);
        }
    }
}

/// A one-line description for people (stderr, `stats`).
pub fn describe(r: &SystemRecord, ts: Micros) -> String {
    let mut when = String::new();
    format_rfc3339(ts, &mut when);
    match r {
        SystemRecord::TornTailCut(c) | SystemRecord::Repair(c) => format!(
            "{when} {}: {} cut at offset {} ({}); {} bytes moved to {}; LSNs {}..{} and segments {}..{} skipped",
            r.name(),
            c.segment,
            c.valid_end,
            c.reason,
            c.quarantine_bytes,
            c.quarantine,
            c.skip_from_lsn,
            c.skip_to_lsn,
            c.skip_from_seq,
            c.skip_to_seq
        ),
        SystemRecord::Retention(x) => format!(
            "{when} retention: dropped {} segment(s); the log now starts at LSN {} (segment {})",
            x.dropped.len(),
            x.anchor_first_lsn,
            x.anchor_first_seq
        ),
        SystemRecord::Checkpoint(x) => format!(
            "{when} checkpoint: tree of {} leaves, root {}",
            x.tree_size, x.root
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut() -> Cut {
        Cut {
            segment: "20261123-0000000003.seg".into(),
            seq: 3,
            valid_end: 500,
            kept_events: 4,
            kept_digest: Digest([1; 32]).to_hex(),
            damage_offset: 500,
            reason: "frame cut short".into(),
            quarantine: "quarantine/20261123-0000000003.seg.cut-500".into(),
            quarantine_from: 500,
            quarantine_bytes: 20,
            quarantine_blake3: Digest([2; 32]).to_hex(),
            skip_from_lsn: 10,
            skip_to_lsn: 11,
            skip_from_seq: 4,
            skip_to_seq: 4,
        }
    }

    #[test]
    fn json_fields_follow_the_record_name() {
        let mut s = String::new();
        write_fields(&SystemRecord::TornTailCut(cut()), &mut s);
        assert!(
            s.starts_with(",\"record\":\"torn_tail_cut\",\"segment\":"),
            "{s}"
        );
        let v: serde_json::Value = serde_json::from_str(&format!("{{\"x\":1{s}}}")).unwrap();
        assert_eq!(v["skip_to_lsn"], 11);
    }

    #[test]
    fn checks_refuse_malformed_records() {
        assert!(SystemRecord::TornTailCut(cut()).check().is_ok());
        let mut c = cut();
        c.kept_digest = "zz".into();
        assert!(SystemRecord::Repair(c).check().is_err());
        let mut c = cut();
        c.skip_to_lsn = 1;
        assert!(SystemRecord::Repair(c).check().is_err());
        let mut c = cut();
        c.quarantine = "../etc/passwd".into();
        assert!(SystemRecord::Repair(c).check().is_err());
        assert!(cut().needs_new_segment());
    }
}
