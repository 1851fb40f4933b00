//! One sealed segment's `events` and `tool_calls` files: its events read
//! in LSN order through the engine's checked replay (every block's chain
//! digest checked before any of its events is used, every event decoded
//! strictly; docs/integrity.md), one file per table and UTC day.

use std::collections::BTreeMap;
use std::sync::Mutex;

use auditlog::{Event, EventData, Replay, SegmentMeta};

use crate::error::{ExportError, Result};
use crate::manifest::FileEntry;
use crate::pq::{FileWriter, BATCH_ROWS};
use crate::tables::{self, EventRows, Room, Scope, ToolCallRows};

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
}

/// One day's partition of a table being written.
struct Part<R> {
    rows: R,
    file: FileWriter,
}

/// Read sealed segment `s` whole from `replay` (positioned at its first
/// LSN) and write its `events` and `tool_calls` files. `then` is given the
/// segment's `run_started` and `run_finished` events, in LSN order, once
/// the last rows are handed to the encoders and before their files are
/// finished (so that its work, the `runs` rows, overlaps their encoding),
/// and its answer is returned beside the files.
pub(crate) fn event_files<T>(
    replay: Replay,
    s: &SegmentMeta,
    scope: &Scope,
    namer: &dyn Namer,
    rooms: &Rooms,
    then: impl FnOnce(&[(u64, Event)]) -> Result<T>,
) -> Result<(EventFiles, T)> {
    let mut events: BTreeMap<String, Part<EventRows>> = BTreeMap::new();
    let mut calls: BTreeMap<String, Part<ToolCallRows>> = BTreeMap::new();
    // The segment's main day gets the room of the latest segment's
    // largest batches; a late event's day starts small.
    let (ev_room, call_room) = rooms.get();
    let (mut ev_seen, mut call_seen) = (Room::default(), Room::default());
    let mut replay = replay;
    let mut seen = 0u64;
    let mut blocks = 0u64;
    let mut last_block = None;
    let mut day = DayCache::default();
    // The runs' starts and finishes, kept for `then`: folded from here,
    // the runs rows need not read and check their frames again
    // (docs/benchmarks.md, "export29").
    let mut kept: Vec<(u64, Event)> = Vec::new();
    while seen < s.count {
        let Some(item) = replay.next() else {
            break;
        };
        let (lsn, ev) = item?;
        let Some((seq, block_lsn)) = replay.block_of_last() else {
            return Err(ExportError::mismatch(&s.name, "replay lost its place"));
        };
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
        let p = part(
            &mut events,
            dt,
            || namer.writer(s, tables::EVENTS, dt),
            || EventRows::with_room(&ev_room),
        )?;
        p.rows.push(scope, lsn, block_lsn, &ev);
        if p.rows.len() >= BATCH_ROWS {
            ev_seen.widen(flush(&mut p.rows, &mut p.file, EventRows::finish)?);
        }
        if let Some(call) = tables::ToolCall::of(&ev) {
            let p = part(
                &mut calls,
                dt,
                || namer.writer(s, tables::TOOL_CALLS, dt),
                || ToolCallRows::with_room(&call_room),
            )?;
            p.rows.push_call(scope, lsn, &ev, call);
            if p.rows.len() >= BATCH_ROWS {
                call_seen.widen(flush(&mut p.rows, &mut p.file, ToolCallRows::finish)?);
            }
        }
        if matches!(
            ev.data,
            EventData::RunStarted(_) | EventData::RunFinished(_)
        ) {
            kept.push((lsn, ev));
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
    for p in events.values_mut() {
        ev_seen.widen(flush(&mut p.rows, &mut p.file, EventRows::finish)?);
    }
    for p in calls.values_mut() {
        call_seen.widen(flush(&mut p.rows, &mut p.file, ToolCallRows::finish)?);
    }
    rooms.set(ev_seen, call_seen);
    let answer = then(&kept)?;
    drop(kept);
    for (dt, p) in events {
        out.files.push(made(namer, s, tables::EVENTS, &dt, p.file)?);
    }
    for (dt, p) in calls {
        out.tool_calls += p.file.rows();
        out.files
            .push(made(namer, s, tables::TOOL_CALLS, &dt, p.file)?);
    }
    Ok((out, answer))
}

/// The partition of day `dt`, begun with `open` if new: the first one
/// with the rows `first` makes (presized), any later one with empty rows.
fn part<'m, R: Default>(
    parts: &'m mut BTreeMap<String, Part<R>>,
    dt: &str,
    open: impl FnOnce() -> Result<FileWriter>,
    first: impl FnOnce() -> R,
) -> Result<&'m mut Part<R>> {
    if !parts.contains_key(dt) {
        let file = open()?;
        let rows = if parts.is_empty() {
            first()
        } else {
            R::default()
        };
        parts.insert(dt.to_string(), Part { rows, file });
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

/// Hand the rows built so far to the file; the room they took.
pub(crate) fn flush<R>(
    rows: &mut R,
    file: &mut FileWriter,
    finish: fn(&mut R) -> std::result::Result<arrow_array::RecordBatch, arrow_schema::ArrowError>,
) -> Result<Room> {
    let batch = finish(rows).map_err(|e| ExportError::parquet("batch", e))?;
    if batch.num_rows() > 0 {
        file.write(&batch)?;
    }
    Ok(Room::of(&batch))
}

/// The room the `events` and `tool_calls` builders of the latest segment
/// took (its largest batch of each), shared by the segment threads: the
/// next segment's builders start with it ([`Room`]).
#[derive(Default)]
pub(crate) struct Rooms {
    latest: Mutex<(Room, Room)>,
}

impl Rooms {
    fn get(&self) -> (Room, Room) {
        self.latest.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn set(&self, events: Room, calls: Room) {
        if let Ok(mut r) = self.latest.lock() {
            if events.rows() > 0 {
                r.0 = events;
            }
            if calls.rows() > 0 {
                r.1 = calls;
            }
        }
    }
}

/// The UTC day of an instant, remembered for the day it fell in last
/// (events come in nearly time order: one formatting per day, not per
/// event).
#[derive(Default)]
struct DayCache {
    /// [start, end) of the day in `text`, µs.
    range: (i64, i64),
    text: String,
}

const DAY_MICROS: i64 = 86_400_000_000;

impl DayCache {
    fn of(&mut self, ts: i64) -> &str {
        if !(self.range.0 <= ts && ts < self.range.1) || self.text.is_empty() {
            let start = ts.div_euclid(DAY_MICROS) * DAY_MICROS;
            self.range = (start, start.saturating_add(DAY_MICROS));
            self.text = crate::export::day_of(ts);
        }
        &self.text
    }
}
