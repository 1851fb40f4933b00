//! `verify-export`: re-read every file of an export and prove it.
//!
//! - Every file named by the manifest exists, with the recorded size and
//!   BLAKE3, and its key-value metadata names its table, log, segment, LSN
//!   range and digests as the manifest does.
//! - `events`: the rows of each segment, re-encoded with the log's codec
//!   and hashed block by block (`auditlog::Rechain`), land on the
//!   segment's recorded final digest, and each segment starts from the
//!   digest the one before it ended on. So the rows are the log's events,
//!   byte for byte, with or without the log.
//! - `tool_calls`: derived again from those events, identical.
//! - `runs`: while the log still holds the segment, folded again by the
//!   engine as of the recorded segment, identical; once it is gone, the
//!   file's BLAKE3 is what is left to check (docs/export.md says how an
//!   auditor re-derives runs from events in SQL).
//! - With the log at hand, every exported segment still in it has the
//!   digest and LSN range the log has.

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use auditlog::QueryEngine as Engine;
use auditlog::SegmentMeta;
use auditlog::{Digest, LogReader, Rechain};

use crate::dest::Destination;
use crate::error::{ExportError, Result};
use crate::manifest::{self, ExportManifest, FileEntry, Gap, SegmentEntry};
use crate::pq::{self, keys};
use crate::readback::{event_rows, EventRow};
use crate::tables::{self, Scope, ToolCallRows};

/// What `verify-export` is to check.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The log, if it still exists: only its export is checked, and
    /// against it.
    pub log_dir: Option<PathBuf>,
    /// A digest anchored elsewhere earlier (`auditlog verify` prints the
    /// head digest): it must be the anchor or a block's digest.
    pub expect: Option<Digest>,
}

/// What was checked for one log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCheck {
    pub log_id: String,
    pub host: String,
    pub segments: u64,
    pub files: u64,
    pub events: u64,
    pub runs: u64,
    pub tool_calls: u64,
    pub first_lsn: Option<u64>,
    /// LSN one past the last exported event, and the digest there.
    pub head_lsn: Option<u64>,
    pub head_digest: Option<String>,
    /// Segments compared with the log itself (it still holds them).
    pub against_log: u64,
    /// Segments whose runs rows were folded again by the engine.
    pub runs_refolded: u64,
    pub gaps: Vec<Gap>,
}

/// Everything `verify-export` found (it stops at the first failure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyExportReport {
    pub logs: Vec<LogCheck>,
    /// Where the expected digest was found: the LSN one past its block.
    pub expect_found_at: Option<u64>,
}

/// Check the export in `dest`; an error names the first file or row that
/// does not hold.
pub fn verify_export(dest: &Destination, opts: &VerifyOptions) -> Result<VerifyExportReport> {
    let mut log = match &opts.log_dir {
        Some(dir) => Some(LogAtHand::open(dir)?),
        None => None,
    };
    let keys: Vec<String> = match &log {
        Some(l) => vec![manifest::key(&l.log_id)],
        None => dest
            .list(manifest::DIR)?
            .into_iter()
            .filter(|k| k.ends_with("/manifest.json"))
            .collect(),
    };
    if keys.is_empty() {
        return Err(ExportError::mismatch(
            dest.url(),
            "holds no export (no _auditlog/log_id=*/manifest.json)",
        ));
    }
    let mut report = VerifyExportReport::default();
    for key in keys {
        let bytes = dest
            .get(&key)?
            .ok_or_else(|| ExportError::mismatch(&key, "the log has no export here"))?;
        let man = ExportManifest::parse(&key, &bytes, log.as_ref().map(|l| l.log_id.as_str()))?;
        let check = check_log(dest, &man, log.as_mut(), opts.expect, &mut report)?;
        report.logs.push(check);
    }
    if opts.expect.is_some() && report.expect_found_at.is_none() {
        return Err(ExportError::mismatch(
            "--expect",
            "the expected digest is neither the export's anchor nor any block's digest",
        ));
    }
    Ok(report)
}

struct LogAtHand {
    log_id: String,
    sealed: Vec<SegmentMeta>,
    engine: Engine,
}

impl LogAtHand {
    fn open(dir: &std::path::Path) -> Result<LogAtHand> {
        let reader = LogReader::open(dir)?;
        let log_id = reader.manifest()?.log_id;
        let sealed = reader.segments().into_iter().filter(|s| s.sealed).collect();
        Ok(LogAtHand {
            log_id,
            sealed,
            engine: Engine::new(reader),
        })
    }
}

fn check_log(
    dest: &Destination,
    man: &ExportManifest,
    mut log: Option<&mut LogAtHand>,
    expect: Option<Digest>,
    report: &mut VerifyExportReport,
) -> Result<LogCheck> {
    let mut c = LogCheck {
        log_id: man.log_id.clone(),
        host: man.host.clone(),
        gaps: man.gaps.clone(),
        ..LogCheck::default()
    };
    let mut prev = man.anchor_digest.clone();
    let mut next_lsn = None;
    if expect.is_some_and(|d| Some(d.to_hex()) == man.anchor_digest) {
        report.expect_found_at = man.segments.first().map(|e| e.first_lsn);
    }
    for e in &man.segments {
        let after_gap = man.gaps.iter().any(|g| g.to_seq + 1 == e.seq);
        if !after_gap {
            if prev.as_deref() != Some(e.prev_digest.as_str()) {
                return Err(ExportError::mismatch(
                    seg_place(man, e),
                    format!(
                        "starts from digest {}, but the export before it ends at {}",
                        e.prev_digest,
                        prev.as_deref().unwrap_or("(nothing)")
                    ),
                ));
            }
            if next_lsn.is_some_and(|n| n != e.first_lsn) {
                return Err(ExportError::mismatch(
                    seg_place(man, e),
                    "its first LSN does not follow the segment before it",
                ));
            }
        }
        let files = read_files(dest, man, e)?;
        let events = check_events(man, e, &files, expect, report)?;
        check_tool_calls(man, e, &files, &events)?;
        c.tool_calls += files.rows(tables::TOOL_CALLS);
        c.runs += files.rows(tables::RUNS);
        if let Some(log) = log.as_deref_mut() {
            if let Some(s) = log.sealed.iter().find(|s| s.seq == e.seq) {
                if s.digest.to_hex() != e.digest || s.first_lsn != e.first_lsn || s.count != e.count
                {
                    return Err(ExportError::mismatch(
                        seg_place(man, e),
                        format!(
                            "the log's segment holds LSN {}..+{} ending at {}, the export LSN {}..+{} ending at {}",
                            s.first_lsn, s.count, s.digest, e.first_lsn, e.count, e.digest
                        ),
                    ));
                }
                c.against_log += 1;
                check_runs(man, e, &files, &mut log.engine)?;
                c.runs_refolded += 1;
            }
        }
        c.segments += 1;
        c.files += e.files.len() as u64;
        c.events += events.len() as u64;
        c.first_lsn = c.first_lsn.or(Some(e.first_lsn));
        c.head_lsn = Some(e.first_lsn + e.count);
        c.head_digest = Some(e.digest.clone());
        prev = Some(e.digest.clone());
        next_lsn = Some(e.first_lsn + e.count);
    }
    Ok(c)
}

fn seg_place(man: &ExportManifest, e: &SegmentEntry) -> String {
    format!("log {} segment {}", man.log_id, e.seq)
}

/// A segment's files, read and checked against the manifest, by table
/// and day.
struct SegmentFiles {
    by_table: BTreeMap<(String, String), (SchemaRef, Vec<RecordBatch>)>,
    rows: BTreeMap<String, u64>,
}

impl SegmentFiles {
    fn rows(&self, table: &str) -> u64 {
        self.rows.get(table).copied().unwrap_or(0)
    }

    fn batches<'a>(
        &'a self,
        table: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Vec<RecordBatch>)> + 'a {
        self.by_table
            .iter()
            .filter(move |((t, _), _)| t == table)
            .map(|((_, dt), (_, b))| (dt.as_str(), b))
    }
}

fn read_files(dest: &Destination, man: &ExportManifest, e: &SegmentEntry) -> Result<SegmentFiles> {
    let mut out = SegmentFiles {
        by_table: BTreeMap::new(),
        rows: BTreeMap::new(),
    };
    for f in &e.files {
        let bytes = dest
            .get(&f.path)?
            .ok_or_else(|| ExportError::mismatch(&f.path, "the file is missing"))?;
        if bytes.len() as u64 != f.bytes || blake3::hash(&bytes).to_hex().as_str() != f.blake3 {
            return Err(ExportError::mismatch(
                &f.path,
                format!(
                    "{} bytes with BLAKE3 {}, but the manifest recorded {} bytes with {}",
                    bytes.len(),
                    blake3::hash(&bytes).to_hex(),
                    f.bytes,
                    f.blake3
                ),
            ));
        }
        let file = pq::read(&f.path, bytes)?;
        check_file_meta(man, e, f, &file.meta)?;
        let rows: u64 = file.batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows != f.rows {
            return Err(ExportError::mismatch(
                &f.path,
                format!("holds {rows} rows, the manifest recorded {}", f.rows),
            ));
        }
        *out.rows.entry(f.table.clone()).or_default() += rows;
        out.by_table
            .insert((f.table.clone(), f.dt.clone()), (file.schema, file.batches));
    }
    Ok(out)
}

fn check_file_meta(
    man: &ExportManifest,
    e: &SegmentEntry,
    f: &FileEntry,
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    let mut want: Vec<(&str, String)> = vec![
        (keys::FORMAT, man.version.to_string()),
        (keys::LOG_FORMAT, man.log_format_version.to_string()),
        (keys::TABLE, f.table.clone()),
        (keys::LOG_ID, man.log_id.clone()),
        (keys::SEGMENT, e.seq.to_string()),
        (keys::FIRST_LSN, e.first_lsn.to_string()),
        (
            keys::LAST_LSN,
            (e.first_lsn + e.count).saturating_sub(1).to_string(),
        ),
        (keys::PREV_DIGEST, e.prev_digest.clone()),
        (keys::DIGEST, e.digest.clone()),
        (keys::DAY, f.dt.clone()),
    ];
    if f.table == tables::RUNS {
        want.push((keys::RUNS_THROUGH_SEGMENT, e.runs_through_seq.to_string()));
    }
    for (k, v) in want {
        if meta.get(k) != Some(&v) {
            return Err(ExportError::mismatch(
                &f.path,
                format!("metadata {k} is {:?}, the manifest says {v:?}", meta.get(k)),
            ));
        }
    }
    let expected = crate::export::file_key(&f.table, &f.dt, &man.log_id, e.seq);
    if f.path != expected {
        return Err(ExportError::mismatch(
            &f.path,
            format!("is not where this table, day and segment belong ({expected})"),
        ));
    }
    Ok(())
}

/// The segment's events, in LSN order, re-chained onto its digests.
fn check_events(
    man: &ExportManifest,
    e: &SegmentEntry,
    files: &SegmentFiles,
    expect: Option<Digest>,
    report: &mut VerifyExportReport,
) -> Result<Vec<EventRow>> {
    let place = seg_place(man, e);
    let mut rows = Vec::new();
    for (dt, batches) in files.batches(tables::EVENTS) {
        for b in batches {
            for r in event_rows(b).map_err(|m| ExportError::mismatch(&place, m))? {
                if crate::export::day_of(r.event.ts) != dt {
                    return Err(ExportError::mismatch(
                        &place,
                        format!(
                            "LSN {} is in the partition of day {dt}, not of its ts",
                            r.lsn
                        ),
                    ));
                }
                rows.push(r);
            }
        }
    }
    rows.sort_by_key(|r| r.lsn);
    for (i, r) in rows.iter().enumerate() {
        if r.lsn != e.first_lsn + i as u64 {
            return Err(ExportError::mismatch(
                &place,
                format!(
                    "events do not cover LSN {}..+{} once each: found LSN {} at position {i}",
                    e.first_lsn, e.count, r.lsn
                ),
            ));
        }
    }
    if rows.len() as u64 != e.count {
        return Err(ExportError::mismatch(
            &place,
            format!("{} events, the segment held {}", rows.len(), e.count),
        ));
    }
    let prev = Digest::from_hex(&e.prev_digest)
        .ok_or_else(|| ExportError::mismatch(&place, "prev_digest is not a digest"))?;
    let mut chain = Rechain::new(prev);
    let mut blocks = 0u64;
    let mut events = Vec::new();
    let mut at = 0;
    while at < rows.len() {
        let first = rows[at].lsn;
        if rows[at].block_lsn != first {
            return Err(ExportError::mismatch(
                &place,
                format!(
                    "LSN {first} starts a block but names block {}",
                    rows[at].block_lsn
                ),
            ));
        }
        let end = rows[at..]
            .iter()
            .position(|r| r.block_lsn != first)
            .map_or(rows.len(), |n| at + n);
        events.clear();
        events.extend(rows[at..end].iter().map(|r| r.event.clone()));
        let d = chain
            .block(first, &events)
            .map_err(|err| ExportError::mismatch(&place, err.to_string()))?;
        if Some(d) == expect {
            report.expect_found_at = Some(rows[end - 1].lsn + 1);
        }
        blocks += 1;
        at = end;
    }
    if chain.digest().to_hex() != e.digest {
        return Err(ExportError::mismatch(
            &place,
            format!(
                "the events re-encode to chain digest {}, but the segment's is {} (an event was changed, added, removed or reordered)",
                chain.digest(),
                e.digest
            ),
        ));
    }
    if blocks != e.blocks {
        return Err(ExportError::mismatch(
            &place,
            format!("{blocks} blocks, the manifest recorded {}", e.blocks),
        ));
    }
    Ok(rows)
}

/// Compare a table's files with rows built again, day by day.
fn same_rows(
    place: &str,
    table: &str,
    files: &SegmentFiles,
    mut expected: BTreeMap<String, RecordBatch>,
) -> Result<()> {
    for (dt, batches) in files.batches(table) {
        let want = expected.remove(dt).ok_or_else(|| {
            ExportError::mismatch(
                place,
                format!("{table} has a file for day {dt} that should not exist"),
            )
        })?;
        let got = arrow_select::concat::concat_batches(&want.schema(), batches)
            .map_err(|e| ExportError::parquet(place, e))?;
        if got.columns() != want.columns() {
            let col = (0..want.num_columns())
                .find(|&i| got.column(i) != want.column(i))
                .map_or("?".to_string(), |i| want.schema().field(i).name().clone());
            return Err(ExportError::mismatch(
                place,
                format!("{table} rows of day {dt} differ from what the log gives (column `{col}`)"),
            ));
        }
    }
    if let Some(dt) = expected.keys().next() {
        return Err(ExportError::mismatch(
            place,
            format!("{table} lacks its file for day {dt}"),
        ));
    }
    Ok(())
}

fn check_tool_calls(
    man: &ExportManifest,
    e: &SegmentEntry,
    files: &SegmentFiles,
    events: &[EventRow],
) -> Result<()> {
    let scope = Scope {
        log_id: man.log_id.clone(),
        host: man.host.clone(),
        segment: e.seq,
    };
    let mut parts: BTreeMap<String, ToolCallRows> = BTreeMap::new();
    for r in events {
        if tables::ToolCall::of(&r.event).is_some() {
            parts
                .entry(crate::export::day_of(r.event.ts))
                .or_insert_with(|| ToolCallRows::of_version(man.version))
                .push_if_call(&scope, r.lsn, &r.event);
        }
    }
    let mut expected = BTreeMap::new();
    for (dt, mut rows) in parts {
        let b = rows
            .finish()
            .map_err(|err| ExportError::parquet(seg_place(man, e), err))?;
        expected.insert(dt, b);
    }
    same_rows(&seg_place(man, e), tables::TOOL_CALLS, files, expected)
}

fn check_runs(
    man: &ExportManifest,
    e: &SegmentEntry,
    files: &SegmentFiles,
    engine: &mut Engine,
) -> Result<()> {
    let scope = Scope {
        log_id: man.log_id.clone(),
        host: man.host.clone(),
        segment: e.seq,
    };
    let rows =
        engine.query(|v| crate::runs::rows_of(v, e.seq, e.runs_through_seq, &man.carried, None))?;
    let expected = crate::runs::batches(&scope, &rows)?;
    same_rows(&seg_place(man, e), tables::RUNS, files, expected)
}
