//! `export`: every sealed segment not yet exported becomes Parquet files in
//! the destination, oldest first; then the runs rows of earlier segments
//! whose running runs have since finished are rewritten. See docs/export.md.
//!
//! Crash safety comes from names, not from bookkeeping: every file's name
//! is a function of (table, day, log, segment) and its bytes a function of
//! the log, so a rerun after a crash writes the same files again under the
//! same names (each row lands exactly once), and the manifest, replaced
//! whole after the files it names, says only what is complete.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use auditlog::exported::{self, ExportLock};
use auditlog::QueryEngine as Engine;
use auditlog::SegmentMeta;
use auditlog::{LogReader, ReplayRange};

use crate::dest::Destination;
use crate::error::{ExportError, Result};
use crate::manifest::{self, ExportManifest, FileEntry, Gap, SegmentEntry};
use crate::pq::{keys, FileWriter, BATCH_ROWS};
use crate::tables::{self, EventRows, RunRows, Scope, ToolCallRows};

/// How often, at most, the manifest is rewritten during a long export
/// (besides at the end): it names every file, so rewriting it per segment
/// would cost O(segments²) over a first export of a long log.
const MANIFEST_EVERY: Duration = Duration::from_secs(5);

/// Choices of an export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The `host` column's value. Default: what the destination recorded
    /// for this log, else this machine's host name.
    pub host: Option<String>,
    /// Export at most this many segments in this run (tests, and slicing a
    /// first export of a long log into steps).
    pub max_segments: Option<usize>,
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportReport {
    pub destination: String,
    pub log_id: String,
    /// Segments exported in this run.
    pub segments: Vec<u64>,
    /// Earlier segments whose runs rows were rewritten (finishes arrived).
    pub runs_rewritten: Vec<u64>,
    pub events: u64,
    pub runs: u64,
    pub tool_calls: u64,
    pub files: u64,
    /// Bytes of Parquet written, and of the segments they came from.
    pub parquet_bytes: u64,
    pub segment_bytes: u64,
    /// The newest segment the destination now holds.
    pub through_seq: Option<u64>,
    /// Segments found missing from the log (retention) before export.
    pub new_gaps: Vec<Gap>,
    pub seconds: f64,
}

/// Export the log in `dir` to `dest`.
pub fn export(dir: &Path, dest: &Destination, opts: &ExportOptions) -> Result<ExportReport> {
    let started = Instant::now();
    let lock = exported::try_lock(dir)?.ok_or_else(|| ExportError::Busy(dir.to_path_buf()))?;
    let reader = LogReader::open(dir)?;
    let log_id = reader.manifest()?.log_id;
    let mkey = manifest::key(&log_id);
    let mut man = match dest.get(&mkey)? {
        Some(b) => ExportManifest::parse(&mkey, &b, Some(&log_id))?,
        None => ExportManifest::new(&log_id, &default_host()),
    };
    if let Some(h) = &opts.host {
        man.host = h.clone();
    }
    dest.remove_stale_staging(&format!("log_id={log_id}"))?;
    let sealed: Vec<SegmentMeta> = reader.segments().into_iter().filter(|s| s.sealed).collect();
    check_continuity(dest, &man, &sealed)?;
    let mut report = ExportReport {
        destination: dest.url().to_string(),
        log_id: log_id.clone(),
        through_seq: man.last().map(|e| e.seq),
        ..ExportReport::default()
    };
    let last_done = man.last().map(|e| e.seq);
    let todo: Vec<&SegmentMeta> = sealed
        .iter()
        .filter(|s| last_done.is_none_or(|l| s.seq > l))
        .take(opts.max_segments.unwrap_or(usize::MAX))
        .collect();
    let Some(through_seq) = todo.last().map(|s| s.seq).or(last_done) else {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    };
    if let (Some(last), Some(first)) = (last_done, todo.first()) {
        if first.seq > last + 1 {
            let gap = record_gap(dest, &mut man, last + 1, first.seq - 1)?;
            report.new_gaps.push(gap);
        }
    }
    if man.first_seq.is_none() {
        man.first_seq = todo.first().map(|s| s.seq);
        man.anchor_digest = todo.first().map(|s| s.prev_digest.to_hex());
    }
    let since_seq = man.first_seq.unwrap_or(0);
    let mut engine = Engine::open(dir)?;
    let mut ctx = Ctx {
        dest,
        reader: &reader,
        engine: &mut engine,
        scope: Scope {
            log_id: log_id.clone(),
            host: man.host.clone(),
            segment: 0,
        },
        since_seq,
        through_seq,
    };
    let mut last_write = Instant::now();
    for s in &todo {
        let entry = ctx.export_segment(s, &mut report)?;
        man.segments.push(entry);
        report.segments.push(s.seq);
        report.through_seq = Some(s.seq);
        if last_write.elapsed() >= MANIFEST_EVERY {
            commit(dest, &man, &lock)?;
            last_write = Instant::now();
        }
    }
    ctx.refresh_open_runs(&mut man, &sealed, &mut report)?;
    let changed = !report.segments.is_empty()
        || !report.runs_rewritten.is_empty()
        || !report.new_gaps.is_empty();
    if changed {
        commit(dest, &man, &lock)?;
    } else if let Some(last) = man.last() {
        // A crash between a manifest write and its mark leaves the mark
        // behind: bring it up to what the destination holds.
        exported::record(&lock, dest.url(), last.seq)?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// This machine's host name, for the `host` column.
fn default_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Replace the manifest, then tell the log (the `EXPORTED` marker for
/// retention) which segments the destination now holds.
fn commit(dest: &Destination, man: &ExportManifest, lock: &ExportLock) -> Result<()> {
    dest.put(&manifest::key(&man.log_id), man.to_bytes()?)?;
    if let Some(last) = man.last() {
        exported::record(lock, dest.url(), last.seq)?;
    }
    Ok(())
}

/// The log must still be the one the destination holds: every exported
/// segment still in the log has the digest recorded, and the first new
/// segment starts from the last exported one's digest.
fn check_continuity(
    dest: &Destination,
    man: &ExportManifest,
    sealed: &[SegmentMeta],
) -> Result<()> {
    let diverged = |reason: String| ExportError::Diverged {
        dest: dest.url().to_string(),
        reason,
    };
    for e in &man.segments {
        if let Some(s) = sealed.iter().find(|s| s.seq == e.seq) {
            if s.digest.to_hex() != e.digest || s.first_lsn != e.first_lsn || s.count != e.count {
                return Err(diverged(format!(
                    "segment {} holds LSN {}..+{} ending at digest {}, but the export recorded LSN {}..+{} ending at {}",
                    s.seq, s.first_lsn, s.count, s.digest, e.first_lsn, e.count, e.digest
                )));
            }
        }
    }
    let Some(last) = man.last() else {
        return Ok(());
    };
    if let Some(next) = sealed.iter().find(|s| s.seq == last.seq + 1) {
        if next.prev_digest.to_hex() != last.digest || next.first_lsn != last.first_lsn + last.count
        {
            return Err(diverged(format!(
                "segment {} starts at LSN {} from digest {}, but the export ends at LSN {} with digest {}",
                next.seq,
                next.first_lsn,
                next.prev_digest,
                last.first_lsn + last.count,
                last.digest
            )));
        }
    }
    Ok(())
}

/// Segments `from..=to` left the log before they were exported: say so in
/// the manifest, and remove any files a crashed export had begun for them
/// (no rerun can complete those).
fn record_gap(dest: &Destination, man: &mut ExportManifest, from: u64, to: u64) -> Result<Gap> {
    for key in dest.list("")? {
        let seq = key
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_prefix("seg-"))
            .and_then(|f| f.strip_suffix(".parquet"))
            .and_then(|n| n.parse::<u64>().ok());
        let ours = key.contains(&format!("/log_id={}/", man.log_id));
        if ours && seq.is_some_and(|s| (from..=to).contains(&s)) {
            dest.delete(&key)?;
        }
    }
    let gap = Gap {
        from_seq: from,
        to_seq: to,
        reason: "dropped from the log (retention) before it was exported".to_string(),
    };
    man.gaps.push(gap.clone());
    Ok(gap)
}

/// The key of one file.
pub fn file_key(table: &str, dt: &str, log_id: &str, seq: u64) -> String {
    format!("table={table}/dt={dt}/log_id={log_id}/seg-{seq:010}.parquet")
}

/// The UTC day of an instant, `YYYY-MM-DD`.
pub fn day_of(ts: auditlog::Micros) -> String {
    let mut s = String::with_capacity(32);
    auditlog::event::time::format_rfc3339(ts, &mut s);
    s.truncate(10);
    s
}

/// One day's partition of a table being written for a segment.
struct Part<R> {
    rows: R,
    file: FileWriter,
}

struct Ctx<'a> {
    dest: &'a Destination,
    reader: &'a LogReader,
    engine: &'a mut Engine,
    scope: Scope,
    since_seq: u64,
    through_seq: u64,
}

impl Ctx<'_> {
    fn meta(&self, s: &SegmentMeta, table: &str, dt: &str) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put(keys::FORMAT, manifest::VERSION.to_string());
        put(keys::LOG_FORMAT, auditlog::FORMAT_VERSION.to_string());
        put(keys::TABLE, table.to_string());
        put(keys::LOG_ID, self.scope.log_id.clone());
        put(keys::SEGMENT, s.seq.to_string());
        put(keys::FIRST_LSN, s.first_lsn.to_string());
        put(keys::LAST_LSN, s.end_lsn().saturating_sub(1).to_string());
        put(keys::PREV_DIGEST, s.prev_digest.to_hex());
        put(keys::DIGEST, s.digest.to_hex());
        put(keys::DAY, dt.to_string());
        if table == tables::RUNS {
            put(keys::RUNS_THROUGH_SEGMENT, self.through_seq.to_string());
        }
        m
    }

    /// Check one sealed segment's chain, then write its three tables.
    fn export_segment(
        &mut self,
        s: &SegmentMeta,
        report: &mut ExportReport,
    ) -> Result<SegmentEntry> {
        let proof = auditlog::verify_sealed_segment(s)?;
        self.scope.segment = s.seq;
        let mut files = self.write_events(s, &proof.blocks, report)?;
        let (run_files, open_runs) = self.write_runs(s, report)?;
        files.extend(run_files);
        report.segment_bytes += s.data_len;
        Ok(SegmentEntry {
            seq: s.seq,
            day: s.day,
            first_lsn: proof.first_lsn,
            count: proof.count,
            prev_digest: proof.prev_digest.to_hex(),
            digest: proof.digest.to_hex(),
            blocks: proof.blocks.len() as u64,
            open_runs,
            runs_through_seq: self.through_seq,
            segment_bytes: s.data_len,
            files,
        })
    }

    /// `events` and `tool_calls`, one file per table and UTC day.
    fn write_events(
        &mut self,
        s: &SegmentMeta,
        blocks: &[(u64, u32)],
        report: &mut ExportReport,
    ) -> Result<Vec<FileEntry>> {
        let mut events: BTreeMap<String, Part<EventRows>> = BTreeMap::new();
        let mut calls: BTreeMap<String, Part<ToolCallRows>> = BTreeMap::new();
        let mut block = blocks.iter().copied().peekable();
        let mut cur = block.next();
        let range = ReplayRange {
            from_lsn: Some(s.first_lsn),
            ..ReplayRange::default()
        };
        let mut seen = 0u64;
        for item in self.reader.replay(range).take(s.count as usize) {
            let (lsn, ev) = item?;
            while cur.is_some_and(|(first, n)| lsn >= first + u64::from(n)) {
                cur = block.next();
            }
            let Some((block_lsn, _)) = cur.filter(|(f, _)| lsn >= *f) else {
                return Err(ExportError::mismatch(
                    &s.name,
                    format!("LSN {lsn} lies in no block of the verified segment"),
                ));
            };
            if lsn != s.first_lsn + seen {
                return Err(ExportError::mismatch(
                    &s.name,
                    format!("replay gave LSN {lsn}, expected {}", s.first_lsn + seen),
                ));
            }
            seen += 1;
            let dt = day_of(ev.ts);
            let p = match events.get_mut(&dt) {
                Some(p) => p,
                None => {
                    let file = self.writer(s, tables::EVENTS, &dt)?;
                    events.entry(dt.clone()).or_insert(Part {
                        rows: EventRows::default(),
                        file,
                    })
                }
            };
            p.rows.push(&self.scope, lsn, block_lsn, &ev);
            if p.rows.len() >= BATCH_ROWS {
                flush(&mut p.rows, &mut p.file, EventRows::finish)?;
            }
            if tables::ToolCall::of(&ev).is_some() {
                let p = match calls.get_mut(&dt) {
                    Some(p) => p,
                    None => {
                        let file = self.writer(s, tables::TOOL_CALLS, &dt)?;
                        calls.entry(dt.clone()).or_insert(Part {
                            rows: ToolCallRows::default(),
                            file,
                        })
                    }
                };
                p.rows.push_if_call(&self.scope, lsn, &ev);
                if p.rows.len() >= BATCH_ROWS {
                    flush(&mut p.rows, &mut p.file, ToolCallRows::finish)?;
                }
            }
        }
        if seen != s.count {
            return Err(ExportError::mismatch(
                &s.name,
                format!("replay gave {seen} events, the segment holds {}", s.count),
            ));
        }
        report.events += seen;
        let mut out = Vec::new();
        for (dt, mut p) in events {
            flush(&mut p.rows, &mut p.file, EventRows::finish)?;
            out.push(self.upload(s, tables::EVENTS, &dt, p.file, report)?);
        }
        for (dt, mut p) in calls {
            flush(&mut p.rows, &mut p.file, ToolCallRows::finish)?;
            report.tool_calls += p.file.rows();
            out.push(self.upload(s, tables::TOOL_CALLS, &dt, p.file, report)?);
        }
        Ok(out)
    }

    /// `runs` of the runs started in `s`, as of `through_seq`; the files
    /// and how many runs are still running.
    fn write_runs(
        &mut self,
        s: &SegmentMeta,
        report: &mut ExportReport,
    ) -> Result<(Vec<FileEntry>, u64)> {
        self.scope.segment = s.seq;
        let runs = self
            .engine
            .runs_started_in(s.seq, self.since_seq, self.through_seq)?;
        let open = runs.iter().filter(|(_, r)| r.finished_at.is_none()).count() as u64;
        let mut parts: BTreeMap<String, RunRows> = BTreeMap::new();
        for (lsn, r) in &runs {
            parts
                .entry(day_of(r.started_at))
                .or_default()
                .push(&self.scope, *lsn, r);
        }
        report.runs += runs.len() as u64;
        let mut out = Vec::new();
        for (dt, mut rows) in parts {
            let mut file = self.writer(s, tables::RUNS, &dt)?;
            flush(&mut rows, &mut file, RunRows::finish)?;
            out.push(self.upload(s, tables::RUNS, &dt, file, report)?);
        }
        Ok((out, open))
    }

    fn writer(&self, s: &SegmentMeta, table: &str, dt: &str) -> Result<FileWriter> {
        let schema = match table {
            tables::EVENTS => tables::events_schema(),
            tables::RUNS => tables::runs_schema(),
            _ => tables::tool_calls_schema(),
        };
        let key = file_key(table, dt, &self.scope.log_id, s.seq);
        FileWriter::new(&key, schema, &self.meta(s, table, dt))
    }

    fn upload(
        &self,
        s: &SegmentMeta,
        table: &str,
        dt: &str,
        file: FileWriter,
        report: &mut ExportReport,
    ) -> Result<FileEntry> {
        let rows = file.rows();
        let bytes = file.finish()?;
        let key = file_key(table, dt, &self.scope.log_id, s.seq);
        let entry = FileEntry {
            table: table.to_string(),
            dt: dt.to_string(),
            path: key.clone(),
            rows,
            bytes: bytes.len() as u64,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        };
        report.files += 1;
        report.parquet_bytes += entry.bytes;
        self.dest.put(&key, bytes)?;
        Ok(entry)
    }

    /// Earlier segments whose runs were running when exported: if some
    /// have finished since (in a segment up to `through_seq`), rewrite
    /// their runs files. Segments retention has dropped keep their rows.
    fn refresh_open_runs(
        &mut self,
        man: &mut ExportManifest,
        sealed: &[SegmentMeta],
        report: &mut ExportReport,
    ) -> Result<()> {
        for e in man.segments.iter_mut() {
            if e.open_runs == 0 || e.runs_through_seq >= self.through_seq {
                continue;
            }
            let Some(s) = sealed.iter().find(|s| s.seq == e.seq) else {
                continue;
            };
            let running =
                self.engine
                    .running_started_in(s.seq, self.since_seq, self.through_seq)?;
            if running == e.open_runs {
                continue;
            }
            let mut scratch = ExportReport::default();
            let (files, open) = self.write_runs(s, &mut scratch)?;
            for old in e.files.iter().filter(|f| f.table == tables::RUNS) {
                if !files.iter().any(|f| f.path == old.path) {
                    self.dest.delete(&old.path)?;
                }
            }
            e.files.retain(|f| f.table != tables::RUNS);
            e.files.extend(files);
            e.open_runs = open;
            e.runs_through_seq = self.through_seq;
            report.runs_rewritten.push(e.seq);
            report.files += scratch.files;
            report.parquet_bytes += scratch.parquet_bytes;
        }
        Ok(())
    }
}

/// Hand the rows built so far to the file.
fn flush<R>(
    rows: &mut R,
    file: &mut FileWriter,
    finish: fn(&mut R) -> std::result::Result<arrow_array::RecordBatch, arrow_schema::ArrowError>,
) -> Result<()> {
    let batch = finish(rows).map_err(|e| ExportError::parquet("batch", e))?;
    if batch.num_rows() > 0 {
        file.write(&batch)?;
    }
    Ok(())
}
