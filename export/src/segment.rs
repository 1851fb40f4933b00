//! One sealed segment's `events` and `tool_calls` files: its events read
//! in LSN order through the engine's checked replay (every block's chain
//! digest checked before any of its events is used, every event decoded
//! strictly; docs/integrity.md), one file per table and UTC day.

use std::collections::BTreeMap;

use auditlog::{Replay, SegmentMeta};

use crate::error::{ExportError, Result};
use crate::manifest::FileEntry;
use crate::pq::{FileWriter, BATCH_ROWS};
use crate::tables::{self, EventRows, Scope, ToolCallRows};

/// A file made in memory, ready to be put under its key.
pub(crate) struct MadeFile {
    pub entry: FileEntry,
    pub bytes: Vec<u8>,
}

impl MadeFile {
    pub fn new(table: &str, dt: &str, key: String, rows: u64, bytes: Vec<u8>) -> MadeFile {
        MadeFile {
            entry: FileEntry {
                table: table.to_string(),
                dt: dt.to_string(),
                path: key,
                rows,
                bytes: bytes.len() as u64,
                blake3: blake3::hash(&bytes).to_hex().to_string(),
            },
            bytes,
        }
    }
}

/// What one segment's events became.
pub(crate) struct EventFiles {
    pub files: Vec<MadeFile>,
    /// Group-commit blocks the events came in.
    pub blocks: u64,
    pub events: u64,
    pub tool_calls: u64,
}

/// How the files of a segment are named and described.
pub(crate) trait Namer {
    fn writer(&self, s: &SegmentMeta, table: &str, dt: &str) -> Result<FileWriter>;
    fn key(&self, s: &SegmentMeta, table: &str, dt: &str) -> String;
    /// The export layout version the files are written in.
    fn version(&self) -> u32;
}

/// One day's partition of a table being written.
struct Part<R> {
    rows: R,
    file: FileWriter,
}

/// Read sealed segment `s` whole from `replay` (positioned at its first
/// LSN) and write its `events` and `tool_calls` files.
pub(crate) fn event_files(
    replay: Replay,
    s: &SegmentMeta,
    scope: &Scope,
    namer: &dyn Namer,
) -> Result<EventFiles> {
    let mut events: BTreeMap<String, Part<EventRows>> = BTreeMap::new();
    let mut calls: BTreeMap<String, Part<ToolCallRows>> = BTreeMap::new();
    let mut replay = replay;
    let mut seen = 0u64;
    let mut blocks = 0u64;
    let mut last_block = None;
    let mut day = DayCache::default();
    while seen < s.count {
        // Lent, not owned: the event's strings are read where they lie in
        // the segment and copied once, into the columns.
        let Some(item) = replay.next_lent() else {
            break;
        };
        let item = item?;
        let (lsn, seq, block_lsn) = (item.lsn, item.segment, item.block_lsn);
        let ev = item.event.view();
        if seq != s.seq || lsn != s.first_lsn + seen {
            return Err(ExportError::mismatch(
                &s.name,
                format!(
                    "replay gave LSN {lsn} of segment {seq}, expected LSN {} of segment {}",
                    s.first_lsn + seen,
                    s.seq
                ),
            ));
        }
        if last_block != Some(block_lsn) {
            blocks += 1;
            last_block = Some(block_lsn);
        }
        seen += 1;
        let dt = day.of(ev.ts);
        let p = part(&mut events, dt, EventRows::default, || {
            namer.writer(s, tables::EVENTS, dt)
        })?;
        p.rows
            .push_view(scope, lsn, block_lsn, &ev, item.event.owned());
        if p.rows.len() >= BATCH_ROWS {
            flush(&mut p.rows, &mut p.file, EventRows::finish)?;
        }
        if let Some(call) = tables::ToolCall::of_view(&ev) {
            let rows = || ToolCallRows::of_version(namer.version());
            let p = part(&mut calls, dt, rows, || {
                namer.writer(s, tables::TOOL_CALLS, dt)
            })?;
            p.rows.push_call_view(scope, lsn, &ev, call);
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
    let mut out = EventFiles {
        files: Vec::new(),
        blocks,
        events: seen,
        tool_calls: 0,
    };
    for (dt, mut p) in events {
        flush(&mut p.rows, &mut p.file, EventRows::finish)?;
        out.files.push(made(namer, s, tables::EVENTS, &dt, p.file)?);
    }
    for (dt, mut p) in calls {
        flush(&mut p.rows, &mut p.file, ToolCallRows::finish)?;
        out.tool_calls += p.file.rows();
        out.files
            .push(made(namer, s, tables::TOOL_CALLS, &dt, p.file)?);
    }
    Ok(out)
}

/// The partition of day `dt`, begun with `rows` and `open` if new.
fn part<'m, R>(
    parts: &'m mut BTreeMap<String, Part<R>>,
    dt: &str,
    rows: impl FnOnce() -> R,
    open: impl FnOnce() -> Result<FileWriter>,
) -> Result<&'m mut Part<R>> {
    if !parts.contains_key(dt) {
        let file = open()?;
        parts.insert(dt.to_string(), Part { rows: rows(), file });
    }
    parts
        .get_mut(dt)
        .ok_or_else(|| ExportError::parquet(dt, "partition vanished"))
}

pub(crate) fn made(
    namer: &dyn Namer,
    s: &SegmentMeta,
    table: &str,
    dt: &str,
    file: FileWriter,
) -> Result<MadeFile> {
    let rows = file.rows();
    let bytes = file.finish()?;
    Ok(MadeFile::new(
        table,
        dt,
        namer.key(s, table, dt),
        rows,
        bytes,
    ))
}

/// Hand the rows built so far to the file.
pub(crate) fn flush<R>(
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

/// The UTC day of an instant, remembered for the day it fell in last
/// (events come in nearly time order: one formatting per day, not per
/// event).
#[derive(Default)]
pub(crate) struct DayCache {
    /// [start, end) of the day in `text`, µs.
    range: (i64, i64),
    text: String,
}

const DAY_MICROS: i64 = 86_400_000_000;

impl DayCache {
    pub(crate) fn of(&mut self, ts: i64) -> &str {
        if !(self.range.0 <= ts && ts < self.range.1) || self.text.is_empty() {
            let start = ts.div_euclid(DAY_MICROS) * DAY_MICROS;
            self.range = (start, start.saturating_add(DAY_MICROS));
            self.text = crate::export::day_of(ts);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditlog::{
        Config, Durability, Event, Json, Lent, Log, LogReader, ReplayRange, ReplayThreads,
        RunFinished, RunLog, RunStarted,
    };

    /// Files named by table and day, in memory.
    struct Mem;

    impl Namer for Mem {
        fn writer(&self, s: &SegmentMeta, table: &str, dt: &str) -> Result<FileWriter> {
            let schema = match table {
                tables::EVENTS => tables::events_schema(),
                _ => tables::tool_calls_schema(),
            };
            FileWriter::new(&self.key(s, table, dt), schema, &BTreeMap::new())
        }

        fn key(&self, _: &SegmentMeta, table: &str, dt: &str) -> String {
            format!("{table}/{dt}")
        }

        fn version(&self) -> u32 {
            crate::manifest::VERSION
        }
    }

    /// A sealed segment of starts, tool calls (one with an unknown field)
    /// and finishes.
    fn sealed_log(dir: &std::path::Path) {
        let t0 = 1_795_132_800_000_000;
        let mut events = Vec::new();
        for i in 0..40i64 {
            let id = format!("r-{i}");
            let t = t0 + i * 1_000;
            events.push(Event::run_started(
                id.clone(),
                t,
                RunStarted {
                    skill_id: format!("s{}", i % 3),
                    inputs: Json::parse(format!("{{\"i\":{i}}}")).unwrap(),
                    ..RunStarted::default()
                },
            ));
            let payload = format!("{{\"tool\":\"t{}\",\"status\":\"ok\",\"x\":[{i}]}}", i % 2);
            let mut call = Event::run_log(
                id.clone(),
                t + 1,
                RunLog {
                    seq: 0,
                    event_type: "tool_call".into(),
                    payload: Json::parse(payload).unwrap(),
                },
            );
            if i % 5 == 0 {
                call.extra.push(("x_gw".into(), Json::parse("1").unwrap()));
            }
            events.push(call);
            events.push(Event::run_finished(id, t + 2, RunFinished::default()));
        }
        let mut cfg = Config::new(dir);
        cfg.durability = Durability::Never;
        let log = Log::open(cfg).unwrap();
        log.append_batch(&events).unwrap().wait().unwrap();
        log.seal().unwrap();
        log.close().unwrap();
    }

    /// The export thread borrows a lent event in place and views an owned
    /// one (a replay with a time bound lends owned events): the same files.
    #[test]
    fn events_lent_in_place_or_owned_make_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        sealed_log(dir.path());
        let reader = LogReader::open(dir.path()).unwrap();
        let s = reader
            .segments()
            .into_iter()
            .find(|s| s.sealed)
            .expect("a sealed segment");
        let scope = Scope {
            log_id: "log".into(),
            host: "h".into(),
            segment: s.seq,
        };
        let range = ReplayRange {
            from_lsn: Some(s.first_lsn),
            ..ReplayRange::default()
        };
        let mut in_place = reader.replay_with(range, ReplayThreads::None);
        assert!(matches!(
            in_place.next_lent().unwrap().unwrap().event,
            Lent::View(_)
        ));
        let bounded = ReplayRange {
            since: Some(i64::MIN),
            ..range
        };
        let mut owned = reader.replay_with(bounded, ReplayThreads::None);
        assert!(matches!(
            owned.next_lent().unwrap().unwrap().event,
            Lent::Owned(_)
        ));

        let files =
            |r| event_files(reader.replay_with(r, ReplayThreads::None), &s, &scope, &Mem).unwrap();
        let (a, b) = (files(range), files(bounded));
        assert_eq!((a.events, a.tool_calls, a.blocks), (120, 40, b.blocks));
        assert_eq!((b.events, b.tool_calls), (120, 40));
        assert_eq!(a.files.len(), 2);
        for (x, y) in a.files.iter().zip(&b.files) {
            assert_eq!(x.entry, y.entry);
            assert_eq!(x.bytes, y.bytes);
        }
    }
}
