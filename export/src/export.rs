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
use auditlog::{LogReader, Replay, ReplayRange, ReplayThreads};

use crate::dest::Destination;
use crate::error::{ExportError, Result};
use crate::manifest::{self, ExportManifest, FileEntry, Gap, SegmentEntry};
use crate::pq::{keys, FileWriter};
use crate::runs;
use crate::segment::{self, MadeFile, Namer};
use crate::tables::{self, Scope};

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
    /// Segments read and encoded at once, each on a thread of its own.
    /// Default: the machine's cores, at most [`MAX_THREADS`]. The files
    /// are uploaded and the manifest written in segment order whatever
    /// this is, so the destination goes through the same states.
    pub threads: Option<usize>,
}

/// The most segments encoded at once by default (each holds its files in
/// memory until they are uploaded).
pub const MAX_THREADS: usize = 4;

fn threads(opts: &ExportOptions) -> usize {
    opts.threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
        })
        .max(1)
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
    let mut engine = Engine::new(reader);
    let log_first_seq = engine
        .reader()
        .segments()
        .first()
        .map_or(u64::MAX, |s| s.seq);
    let carried_changed = runs::note_departures(dest, &mut man, &mut engine, log_first_seq)?;
    let mut ctx = Ctx {
        dest,
        engine: &mut engine,
        scope: Scope {
            log_id: log_id.clone(),
            host: man.host.clone(),
            segment: 0,
        },
        through_seq,
        version: man.version,
    };
    let mut last_write = Instant::now();
    std::thread::scope(|sc| -> Result<()> {
        let mut pending = std::collections::VecDeque::new();
        let mut next = todo.iter();
        // Keep `threads` segments reading and encoding ahead; they are
        // taken back in segment order.
        let mut fill = |pending: &mut std::collections::VecDeque<_>, ctx: &Ctx| -> Result<()> {
            while pending.len() < threads(opts) {
                let Some(s) = next.next() else { break };
                let (replay, files) = ctx.segment_job(s);
                // Named, so that per-thread CPU figures (top -H, perf)
                // tell reading and building rows from Parquet encoding.
                let job = std::thread::Builder::new()
                    .name("auditlog-export".into())
                    .spawn_scoped(sc, move || {
                        segment::event_files(replay, s, &files.scope, &files)
                    })
                    .map_err(|e| {
                        ExportError::parquet(&s.name, format!("cannot start a thread: {e}"))
                    })?;
                pending.push_back((*s, job));
            }
            Ok(())
        };
        fill(&mut pending, &ctx)?;
        loop {
            let Some((s, job)) = pending.pop_front() else {
                return Ok(());
            };
            let events = job.join().map_err(|_| {
                ExportError::parquet(&s.name, "the thread encoding the segment panicked")
            })??;
            // The next segment starts before this one's runs rows are
            // folded and its files handed over (this thread's serial
            // part): otherwise a core waits for them (docs/benchmarks.md,
            // "export27").
            fill(&mut pending, &ctx)?;
            let entry = ctx.finish_segment(s, events, &man, &mut report)?;
            man.segments.push(entry);
            report.segments.push(s.seq);
            report.through_seq = Some(s.seq);
            if last_write.elapsed() >= MANIFEST_EVERY {
                commit(dest, &man, &lock)?;
                last_write = Instant::now();
            }
        }
    })?;
    if let Some(first_new) = todo.first().map(|s| s.seq) {
        ctx.rewrite_out_of_date(&mut man, first_new, &mut report)?;
    }
    let changed = !report.segments.is_empty()
        || !report.runs_rewritten.is_empty()
        || !report.new_gaps.is_empty()
        || carried_changed;
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

struct Ctx<'a> {
    dest: &'a Destination,
    engine: &'a mut Engine,
    scope: Scope,
    through_seq: u64,
    /// The destination's export layout version (its manifest's).
    version: u32,
}

/// The key-value metadata of one file.
fn file_meta(
    version: u32,
    scope: &Scope,
    s: &SegmentMeta,
    table: &str,
    dt: &str,
    through_seq: u64,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put(keys::FORMAT, version.to_string());
    put(keys::LOG_FORMAT, auditlog::FORMAT_VERSION.to_string());
    put(keys::TABLE, table.to_string());
    put(keys::LOG_ID, scope.log_id.clone());
    put(keys::SEGMENT, s.seq.to_string());
    put(keys::FIRST_LSN, s.first_lsn.to_string());
    put(keys::LAST_LSN, s.end_lsn().saturating_sub(1).to_string());
    put(keys::PREV_DIGEST, s.prev_digest.to_hex());
    put(keys::DIGEST, s.digest.to_hex());
    put(keys::DAY, dt.to_string());
    if table == tables::RUNS {
        put(keys::RUNS_THROUGH_SEGMENT, through_seq.to_string());
    }
    m
}

/// Names and describes the files of one segment.
struct Files {
    scope: Scope,
    through_seq: u64,
    version: u32,
}

impl Namer for Files {
    fn writer(&self, s: &SegmentMeta, table: &str, dt: &str) -> Result<FileWriter> {
        let schema = match table {
            tables::EVENTS => tables::events_schema(),
            tables::RUNS => tables::runs_schema(),
            _ => tables::tool_calls_schema_of(self.version),
        };
        let meta = file_meta(self.version, &self.scope, s, table, dt, self.through_seq);
        // Room for the file up front: a table's Parquet has been 0.05-0.15
        // of its segment's bytes (docs/benchmarks.md); a quarter leaves
        // headroom, and pages never written to cost no memory.
        let bytes = usize::try_from(s.data_len / 4).unwrap_or(0);
        FileWriter::with_capacity(&self.key(s, table, dt), schema, &meta, bytes)
    }

    fn key(&self, s: &SegmentMeta, table: &str, dt: &str) -> String {
        file_key(table, dt, &self.scope.log_id, s.seq)
    }

    fn version(&self) -> u32 {
        self.version
    }
}

impl Ctx<'_> {
    fn files(&self, seq: u64) -> Files {
        Files {
            scope: Scope {
                segment: seq,
                ..self.scope.clone()
            },
            through_seq: self.through_seq,
            version: self.version,
        }
    }

    /// What a thread needs to read sealed segment `s` and encode its
    /// `events` and `tool_calls` files ([`segment::event_files`]). Its
    /// events come through the engine's checked replay: every block's
    /// chain digest is checked against the segment's trusted final digest
    /// before its events are used (docs/integrity.md), so the digests
    /// recorded here are proven.
    fn segment_job(&self, s: &SegmentMeta) -> (Replay, Files) {
        // One segment per job, on the export's own threads: no replay
        // threads of its own (they would check and decode segments past
        // this one for nothing).
        let range = ReplayRange {
            from_lsn: Some(s.first_lsn),
            ..ReplayRange::default()
        };
        let replay = self.engine.reader().replay_with(range, ReplayThreads::None);
        (replay, self.files(s.seq))
    }

    /// Upload one sealed segment's `events` and `tool_calls` files, then
    /// write and upload its `runs` files.
    fn finish_segment(
        &mut self,
        s: &SegmentMeta,
        ev: segment::EventFiles,
        man: &ExportManifest,
        report: &mut ExportReport,
    ) -> Result<SegmentEntry> {
        self.scope.segment = s.seq;
        report.events += ev.events;
        report.tool_calls += ev.tool_calls;
        let mut files = Vec::new();
        for f in ev.files {
            files.push(self.upload(f, report)?);
        }
        // The runs rows go straight into their columns as the engine
        // builds them (no `Run` kept): the calling thread's share of the
        // export (docs/benchmarks.md, "exp35").
        let (scope, through) = (self.scope.clone(), self.through_seq);
        let (parts, n) = self
            .engine
            .query(|v| runs::defined_parts(v, &scope, s.seq, through, &man.carried))?;
        report.runs += n;
        let batches = runs::finish_parts(&scope, parts)?;
        for f in self.runs_files_of(s, batches)? {
            files.push(self.upload(f, report)?);
        }
        report.segment_bytes += s.data_len;
        Ok(SegmentEntry {
            seq: s.seq,
            day: s.day,
            first_lsn: s.first_lsn,
            count: s.count,
            prev_digest: s.prev_digest.to_hex(),
            digest: s.digest.to_hex(),
            blocks: ev.blocks,
            runs_through_seq: self.through_seq,
            segment_bytes: s.data_len,
            files,
        })
    }

    fn runs_rows(
        &mut self,
        seq: u64,
        carried: &BTreeMap<String, u64>,
        held: Option<&[runs::Row]>,
    ) -> Result<Vec<runs::Row>> {
        let through = self.through_seq;
        Ok(self
            .engine
            .query(|v| runs::rows_of(v, seq, through, carried, held))?)
    }

    /// The runs files of segment `s` holding `rows`, one per UTC day.
    fn runs_files(&mut self, s: &SegmentMeta, rows: &[runs::Row]) -> Result<Vec<MadeFile>> {
        self.scope.segment = s.seq;
        let batches = runs::batches(&self.scope, rows)?;
        self.runs_files_of(s, batches)
    }

    /// The runs files of segment `s`, one per UTC day's batch.
    fn runs_files_of(
        &mut self,
        s: &SegmentMeta,
        batches: BTreeMap<String, arrow_array::RecordBatch>,
    ) -> Result<Vec<MadeFile>> {
        let files = self.files(s.seq);
        let mut out = Vec::new();
        for (dt, batch) in batches {
            let mut w = files.writer(s, tables::RUNS, &dt)?;
            w.write(&batch)?;
            out.push(segment::made(&files, s, tables::RUNS, &dt, w)?);
        }
        Ok(out)
    }

    fn upload(&self, f: MadeFile, report: &mut ExportReport) -> Result<FileEntry> {
        report.files += 1;
        report.parquet_bytes += f.entry.bytes;
        // Durable before the manifest naming it is written: `commit`'s
        // `put` waits for the fsyncs begun here.
        self.dest.put_file(&f.entry.path, f.bytes)?;
        Ok(f.entry)
    }

    /// Exported segments before `first_new` whose runs a finish or
    /// amending event in the newly exported segments changed: write their
    /// runs files again, as of `through_seq`. A segment that has left the
    /// log keeps its rows but for carried runs (see [`runs`]).
    fn rewrite_out_of_date(
        &mut self,
        man: &mut ExportManifest,
        first_new: u64,
        report: &mut ExportReport,
    ) -> Result<()> {
        let through = self.through_seq;
        let stale = self
            .engine
            .query(|v| Ok(runs::out_of_date(v, man, first_new, through)))?;
        let in_log: Vec<SegmentMeta> = self.engine.reader().segments();
        for seq in stale {
            let Some(i) = man.segments.iter().position(|e| e.seq == seq) else {
                continue;
            };
            let e = man.segments[i].clone();
            let held = match in_log.iter().find(|m| m.seq == seq) {
                Some(_) => None,
                None => Some(runs::read_rows(self.dest, &e)?),
            };
            let rows = self.runs_rows(seq, &man.carried, held.as_deref())?;
            let meta = segment_meta_of(&e, in_log.iter().find(|m| m.seq == seq));
            let mut scratch = ExportReport::default();
            let mut files = Vec::new();
            for f in self.runs_files(&meta, &rows)? {
                files.push(self.upload(f, &mut scratch)?);
            }
            for old in e.files.iter().filter(|f| f.table == tables::RUNS) {
                if !files.iter().any(|f| f.path == old.path) {
                    self.dest.delete(&old.path)?;
                }
            }
            let entry = &mut man.segments[i];
            entry.files.retain(|f| f.table != tables::RUNS);
            entry.files.extend(files);
            entry.runs_through_seq = through;
            report.runs_rewritten.push(seq);
            report.files += scratch.files;
            report.parquet_bytes += scratch.parquet_bytes;
        }
        Ok(())
    }
}

/// What the files of an exported segment say of it: from the log while it
/// holds the segment, else from the manifest.
fn segment_meta_of(e: &SegmentEntry, in_log: Option<&SegmentMeta>) -> SegmentMeta {
    if let Some(m) = in_log {
        return m.clone();
    }
    SegmentMeta {
        seq: e.seq,
        day: e.day,
        name: format!("segment {} (exported, no longer in the log)", e.seq),
        path: std::path::PathBuf::new(),
        first_lsn: e.first_lsn,
        count: e.count,
        min_ts: None,
        max_ts: None,
        data_len: e.segment_bytes,
        prev_digest: auditlog::Digest::from_hex(&e.prev_digest).unwrap_or_default(),
        digest: auditlog::Digest::from_hex(&e.digest).unwrap_or_default(),
        sealed: true,
    }
}
