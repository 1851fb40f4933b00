//! The baselines a gateway has today, fed the same workload:
//! - SQLite (rusqlite, bundled) with the executus-style schema and indexes
//!   of [`crate::sqlite_baseline`], WAL mode, one writer connection (SQLite
//!   has one writer), events applied in transactions of `txn` events;
//! - daily JSONL files (one file per UTC day of the event), written by the
//!   same producer threads behind a mutex: flushed per line (one write(2)
//!   per line, never synced), or buffered and flushed + fdatasynced every
//!   `sync_every` lines.
//!
//! The events are serialized (JSON) or bound (SQL) inside the timed part,
//! as auditlog's encoding is.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use rusqlite::Connection;

use super::{dir_bytes, hist, record, IngestLine, Lat, RssProbe};
use auditlog::event::json::write_event;
use auditlog::Event;

use crate::sqlite_baseline;

/// SQLite's `synchronous` setting (in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSync {
    /// fsync of the WAL at every commit: durable when the commit returns.
    Full,
    /// WAL synced only at checkpoints: a power loss may lose the last
    /// committed transactions (a process crash does not).
    Normal,
}

impl SqliteSync {
    pub fn name(self) -> &'static str {
        match self {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        }
    }
}

/// Open a baseline database at `path` with the schema, WAL and `sync`.
pub fn sqlite_open(path: &Path, sync: SqliteSync) -> rusqlite::Result<Connection> {
    let conn = sqlite_baseline::open(Some(path))?;
    conn.execute_batch(&format!("PRAGMA synchronous={};", sync.name()))?;
    Ok(conn)
}

/// The events of all shares, `chunk` at a time, taken from each share in
/// turn (so a single writer sees the producers' traffic interleaved).
pub fn round_robin(shares: &[Vec<Event>], chunk: usize) -> impl Iterator<Item = &[Event]> {
    let chunk = chunk.max(1);
    let rounds = shares
        .iter()
        .map(|s| s.len().div_ceil(chunk))
        .max()
        .unwrap_or(0);
    (0..rounds).flat_map(move |r| {
        shares.iter().filter_map(move |s| {
            let lo = r * chunk;
            (lo < s.len()).then(|| &s[lo..(lo + chunk).min(s.len())])
        })
    })
}

/// What a SQLite load measured.
pub struct SqliteLoad {
    pub events: u64,
    pub seconds: f64,
    pub append: Histogram<u64>,
    pub to_commit: Histogram<u64>,
}

/// Apply events in transactions of `txn` events until all are in, `cap`
/// events are, or `deadline` passes. Each event's append latency is the
/// time its caller is blocked (the insert; the commit for the last of a
/// transaction); its to-commit latency runs from its insert to the commit.
pub fn sqlite_load(
    conn: &mut Connection,
    shares: &[Vec<Event>],
    txn: usize,
    cap: Option<u64>,
    deadline: Option<Duration>,
    pb: &ProgressBar,
) -> rusqlite::Result<SqliteLoad> {
    let mut append = hist();
    let mut to_commit = hist();
    let mut stamps: Vec<Instant> = Vec::with_capacity(txn);
    let started = Instant::now();
    let mut n = 0u64;
    let mut loader = sqlite_baseline::Loader::without_calls();
    for chunk in round_robin(shares, txn) {
        if cap.is_some_and(|c| n >= c) || deadline.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        stamps.clear();
        loader.load(conn, chunk.iter().inspect(|_| stamps.push(Instant::now())))?;
        let end = Instant::now();
        for (i, t0) in stamps.iter().enumerate() {
            let next = stamps.get(i + 1).copied().unwrap_or(end);
            record(&mut append, next.duration_since(*t0));
            record(&mut to_commit, end.duration_since(*t0));
        }
        n += chunk.len() as u64;
        pb.inc(chunk.len() as u64);
    }
    Ok(SqliteLoad {
        events: n,
        seconds: started.elapsed().as_secs_f64(),
        append,
        to_commit,
    })
}

/// A SQLite ingest line: a fresh database in `dir`, all of `shares`.
pub fn sqlite_ingest(
    dir: &Path,
    shares: &[Vec<Event>],
    sync: SqliteSync,
    txn: usize,
    pb: &ProgressBar,
) -> Result<(IngestLine, Connection, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("audit.db");
    let mut conn = sqlite_open(&path, sync).map_err(|e| format!("sqlite open: {e}"))?;
    let probe = RssProbe::start();
    let load = sqlite_load(&mut conn, shares, txn, None, None, pb)
        .map_err(|e| format!("sqlite load: {e}"))?;
    let rss = probe.delta();
    let bytes = dir_bytes(dir, None);
    let line = IngestLine {
        system: "sqlite".into(),
        config: format!("WAL, synchronous={}, {txn}-event transactions", sync.name()),
        durability: match sync {
            SqliteSync::Full => "durable at commit (WAL fsync per transaction)".into(),
            SqliteSync::Normal => {
                "committed, not synced: power loss may lose recent transactions".into()
            }
        },
        durable: sync == SqliteSync::Full,
        threads: 1,
        events: load.events,
        seconds: load.seconds,
        data_bytes: bytes,
        disk_bytes: bytes,
        append: Lat::of(&load.append),
        to_durable: Lat::of(&load.to_commit),
        rss_delta_bytes: rss,
    };
    Ok((line, conn, path))
}

/// How the JSONL baseline writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonlMode {
    /// One write(2) per line, never synced.
    FlushPerLine,
    /// Buffered; flush + fdatasync of the touched files every N lines.
    SyncEvery(usize),
}

struct JsonlState {
    dir: PathBuf,
    files: HashMap<i64, BufWriter<File>>,
    dirty: Vec<i64>,
    pending: Vec<Instant>,
    lines: u64,
    to_durable: Histogram<u64>,
}

impl JsonlState {
    fn file(&mut self, day: i64, buffered: bool) -> std::io::Result<&mut BufWriter<File>> {
        if !self.files.contains_key(&day) {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("audit-day{day:05}.jsonl")))?;
            let cap = if buffered { 1 << 16 } else { 0 };
            self.files.insert(day, BufWriter::with_capacity(cap, f));
        }
        Ok(self.files.get_mut(&day).expect("inserted above"))
    }

    fn sync(&mut self) -> std::io::Result<()> {
        for day in std::mem::take(&mut self.dirty) {
            if let Some(f) = self.files.get_mut(&day) {
                f.flush()?;
                f.get_ref().sync_data()?;
            }
        }
        let now = Instant::now();
        for t0 in self.pending.drain(..) {
            record(&mut self.to_durable, now.duration_since(t0));
        }
        Ok(())
    }
}

/// The daily-JSONL line: `shares.len()` producer threads serialize their
/// events and append them, under one lock, to the file of the event's day.
pub fn jsonl_ingest(
    dir: &Path,
    shares: &[Vec<Event>],
    mode: JsonlMode,
    pb: &ProgressBar,
) -> std::io::Result<IngestLine> {
    std::fs::create_dir_all(dir)?;
    let state = Mutex::new(JsonlState {
        dir: dir.to_path_buf(),
        files: HashMap::new(),
        dirty: Vec::new(),
        pending: Vec::new(),
        lines: 0,
        to_durable: hist(),
    });
    let failed = AtomicBool::new(false);
    let probe = RssProbe::start();
    let started = Instant::now();
    let buffered = matches!(mode, JsonlMode::SyncEvery(_));
    let results: Vec<std::io::Result<(u64, Histogram<u64>)>> = std::thread::scope(|s| {
        let hs: Vec<_> = shares
            .iter()
            .map(|share| {
                let state = &state;
                let failed = &failed;
                s.spawn(move || -> std::io::Result<(u64, Histogram<u64>)> {
                    let mut append = hist();
                    let mut line = String::with_capacity(1024);
                    let mut n = 0u64;
                    for ev in share {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        let t0 = Instant::now();
                        line.clear();
                        write_event(ev, None, &mut line);
                        line.push('\n');
                        let day = ev.ts.div_euclid(86_400_000_000);
                        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                        let r = (|| {
                            let f = st.file(day, buffered)?;
                            f.write_all(line.as_bytes())?;
                            if let JsonlMode::SyncEvery(every) = mode {
                                if !st.dirty.contains(&day) {
                                    st.dirty.push(day);
                                }
                                st.pending.push(t0);
                                st.lines += 1;
                                if st.lines.is_multiple_of(every.max(1) as u64) {
                                    st.sync()?;
                                }
                            } else {
                                f.flush()?;
                            }
                            Ok(())
                        })();
                        drop(st);
                        if let Err(e) = r {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                        record(&mut append, t0.elapsed());
                        n += 1;
                        if n.is_multiple_of(1024) {
                            pb.inc(1024);
                        }
                    }
                    Ok((n, append))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a JSONL producer panicked")))
            })
            .collect()
    });
    let mut st = state.into_inner().unwrap_or_else(|p| p.into_inner());
    if buffered {
        st.sync()?;
    } else {
        for f in st.files.values_mut() {
            f.flush()?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let rss = probe.delta();
    let mut append = hist();
    let mut events = 0;
    for r in results {
        let (n, h) = r?;
        events += n;
        let _ = append.add(&h);
    }
    let bytes = dir_bytes(dir, None);
    Ok(IngestLine {
        system: "jsonl".into(),
        config: match mode {
            JsonlMode::FlushPerLine => "daily files, write(2) per line".into(),
            JsonlMode::SyncEvery(n) => format!("daily files, buffered, fdatasync every {n} lines"),
        },
        durability: match mode {
            JsonlMode::FlushPerLine => "in the OS page cache only: never synced".into(),
            JsonlMode::SyncEvery(n) => format!("durable at the next fdatasync (every {n} lines)"),
        },
        durable: buffered,
        threads: shares.len(),
        events,
        seconds,
        data_bytes: bytes,
        disk_bytes: bytes,
        append: Lat::of(&append),
        to_durable: if buffered {
            Lat::of(&st.to_durable)
        } else {
            None
        },
        rss_delta_bytes: rss,
    })
}

/// The one question the JSONL files can answer without an index, for
/// illustration: failing tool calls on one day, by a grep-style scan of
/// that day's file (substring tests, no parsing, no grouping). Returns the
/// number of matching lines.
pub fn jsonl_scan_errors(dir: &Path, day: i64) -> std::io::Result<u64> {
    let path = dir.join(format!("audit-day{day:05}.jsonl"));
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let tool = b"\"event_type\":\"tool_call\"";
    let err = b"\"status\":\"error\"";
    let has = |line: &[u8], pat: &[u8]| line.windows(pat.len()).any(|w| w == pat);
    Ok(data
        .split(|&b| b == b'\n')
        .filter(|l| has(l, tool) && has(l, err))
        .count() as u64)
}
