//! Forensic full-text search over runs, with tantivy (docs/search.md).
//!
//! The index lives in `DIR/fulltext/index/` and is derived data: one
//! document per run (its inputs, output, error and log payload text, its
//! filter fields, and the stored run view), rebuilt from the segments when
//! missing or damaged. An [`Indexer`] follows the log on its own thread and
//! commits in batches; every commit records the LSN reached, so a restart
//! resumes exactly there. Nothing here writes to the log or waits on it:
//! a failure of the index never harms the log.

pub(crate) mod indexer;
mod schema;
mod search;

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::ops::Deref;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tantivy::{Index, IndexReader, ReloadPolicy};

use crate::config::{Config, RetainHook};
use crate::event::Micros;
use crate::lock::HeldLock;
use crate::log::Log;
use crate::manifest::Manifest;
use crate::reader::LogReader;

pub use search::{Filters, Hit};

use indexer::Core;
use schema::{build_schema, Fields};

/// Folder of the full-text index inside a log folder.
pub const FULLTEXT_DIR: &str = "fulltext";
/// The tantivy index inside [`FULLTEXT_DIR`].
const INDEX_DIR: &str = "index";
/// Held (fs2) by whoever writes the index; outside `index/` so that a
/// rebuild can delete `index/` while holding it.
const LOCK_FILE: &str = "LOCK";
/// Version of the document layout; a different one is rebuilt.
pub const FULLTEXT_VERSION: u32 = 3;
const PAYLOAD_FORMAT: &str = "auditlog-fulltext";

/// How the full-text index is run.
#[derive(Debug, Clone)]
pub struct FullTextOptions {
    /// Off: [`open_log`] opens the log alone (a gateway without search).
    pub enabled: bool,
    /// tantivy's indexing memory, all threads together (≥ 15 MB a thread).
    pub memory_budget_bytes: usize,
    /// tantivy indexing threads.
    pub indexing_threads: usize,
    /// A batch is committed once it holds this many events...
    pub max_batch_events: usize,
    /// ...or this many bytes of text...
    pub max_batch_bytes: usize,
    /// ...or this many distinct runs (bounds the fold's memory)...
    pub max_batch_runs: usize,
    /// ...or its oldest event was folded this long ago.
    pub commit_interval: Duration,
    /// When caught up, how long to let new events gather before reading.
    pub poll_interval: Duration,
    /// Check every index file's checksum on open (reads the whole index).
    pub verify_on_open: bool,
    /// Delete and rebuild the index on open whatever its state.
    pub force_rebuild: bool,
    /// Run the indexer thread (and tantivy's threads it starts) at the
    /// lowest CPU priority, so ingest wins when cores are scarce.
    pub background_priority: bool,
    /// Compress the stored fields (tantivy's doc store) with lz4. Applies
    /// to an index when it is created; an existing one keeps what it has.
    pub compress_stored: bool,
    /// tantivy merges segments of similar size once this many of them
    /// exist (its `LogMergePolicy`'s `min_num_segments`, default 8): more
    /// means fewer merges of each document, and more segments to search.
    pub merge_min_segments: usize,
}

impl Default for FullTextOptions {
    fn default() -> Self {
        FullTextOptions {
            enabled: true,
            memory_budget_bytes: 64 << 20,
            indexing_threads: 1,
            max_batch_events: 200_000,
            max_batch_bytes: 64 << 20,
            max_batch_runs: 100_000,
            commit_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
            verify_on_open: true,
            force_rebuild: false,
            background_priority: true,
            compress_stored: true,
            merge_min_segments: 8,
        }
    }
}

/// Errors of full-text search. None of them concerns the log's own data:
/// the index is derived, and rebuilt from the log when damaged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FullTextError {
    /// The query does not parse; `message` names the fault and its place.
    #[error("invalid search query {query:?}: {message}")]
    Query { query: String, message: String },
    /// tantivy failed while `context` (opening, adding, committing, ...).
    #[error("full-text index: {context}: {message}")]
    Index { context: String, message: String },
    /// A stored document does not read back.
    #[error("full-text index is damaged: {0}")]
    Corrupt(String),
    /// Another process holds the index's writer lock.
    #[error("full-text index {} is being written by another process", .0.display())]
    Locked(PathBuf),
    /// The index folder cannot be used (not rebuilt from a read-only open).
    #[error("full-text index {} cannot be used: {reason}", .dir.display())]
    Unusable { dir: PathBuf, reason: String },
    /// A read-only handle was asked to write, or its indexer already runs.
    #[error("this full-text handle is read-only, or its indexer is already running")]
    NotWritable,
    /// Search is not running in this store, and why.
    #[error("full-text search is not running: {0}")]
    NotRunning(String),
    /// Reading the log failed.
    #[error(transparent)]
    Log(#[from] crate::Error),
}

impl FullTextError {
    fn index(context: &'static str) -> impl FnOnce(tantivy::TantivyError) -> FullTextError {
        move |e| FullTextError::Index {
            context: context.to_string(),
            message: e.to_string(),
        }
    }
}

/// What each tantivy commit records (its payload, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CommitPayload {
    pub log_id: String,
    /// Every event before this LSN is in the index.
    pub next_lsn: u64,
    /// Runs started before this LSN were deleted (retention).
    pub first_lsn: u64,
    pub committed_at_us: i64,
    /// The indexer's lag in seconds when it committed.
    pub lag_seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct PayloadJson {
    format: String,
    version: u32,
    #[serde(flatten)]
    p: CommitPayload,
}

impl CommitPayload {
    fn fresh(log_id: &str) -> CommitPayload {
        CommitPayload {
            log_id: log_id.to_string(),
            next_lsn: 0,
            first_lsn: 0,
            committed_at_us: 0,
            lag_seconds: 0.0,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(&PayloadJson {
            format: PAYLOAD_FORMAT.to_string(),
            version: FULLTEXT_VERSION,
            p: self.clone(),
        })
        .unwrap_or_default()
    }

    fn parse(s: &str) -> Result<CommitPayload, Unusable> {
        let j: PayloadJson = serde_json::from_str(s)
            .map_err(|e| Unusable(format!("commit payload does not parse: {e}")))?;
        if j.format != PAYLOAD_FORMAT || j.version != FULLTEXT_VERSION {
            return Err(Unusable(format!(
                "index format {} version {} (this build writes version {FULLTEXT_VERSION})",
                j.format, j.version
            )));
        }
        Ok(j.p)
    }
}

pub(crate) fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

/// How far the index is behind the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Every event before this LSN is searchable.
    pub indexed_lsn: u64,
    pub head_lsn: u64,
    /// Events committed to the log but not yet searchable.
    pub events: u64,
    /// How long the oldest of those has been waiting (0 when caught up).
    pub seconds: f64,
}

/// Most head observations kept to measure lag in seconds.
const MAX_LAG_SAMPLES: usize = 4096;

#[derive(Default)]
struct State {
    indexed_lsn: u64,
    first_lsn: u64,
    /// (when, log head then), oldest first, only heads beyond `indexed_lsn`.
    samples: VecDeque<(Instant, u64)>,
    error: Option<String>,
    commits: u64,
    /// Documents written by commits, and how many of them replaced a
    /// committed document of the same run (read back, merged, re-indexed).
    docs_written: u64,
    docs_replaced: u64,
}

/// State shared by a handle, its indexer thread and waiters.
pub(crate) struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    stop: AtomicBool,
    kill: AtomicBool,
    flush_waiters: AtomicUsize,
}

impl Shared {
    fn new(indexed_lsn: u64, first_lsn: u64) -> Shared {
        Shared {
            state: Mutex::new(State {
                indexed_lsn,
                first_lsn,
                ..State::default()
            }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            flush_waiters: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn observe_head(&self, head: u64) {
        let mut s = self.lock();
        if head <= s.indexed_lsn {
            return;
        }
        if s.samples.len() >= MAX_LAG_SAMPLES {
            // Keep the span, halve the resolution. Refusing new samples
            // instead dated the events appended after the last kept one
            // by a head seen much later, so a long lag read too short
            // (59 s fell to 49 s at 500,000 events/s, docs/benchmarks.md).
            let mut keep = false;
            s.samples.retain(|_| {
                keep = !keep;
                keep
            });
        }
        let fresh = s
            .samples
            .back()
            .is_none_or(|(t, h)| *h < head && t.elapsed() >= Duration::from_millis(10));
        if fresh {
            s.samples.push_back((Instant::now(), head));
        }
    }

    /// Seconds the oldest event at or after `lsn` has been waiting.
    pub(crate) fn lag_seconds_at(&self, lsn: u64) -> f64 {
        let s = self.lock();
        s.samples
            .iter()
            .find(|(_, h)| *h > lsn)
            .map_or(0.0, |(t, _)| t.elapsed().as_secs_f64())
    }

    pub(crate) fn committed(&self, indexed_lsn: u64, first_lsn: u64, docs: (u64, u64)) {
        let mut s = self.lock();
        s.indexed_lsn = indexed_lsn;
        s.first_lsn = first_lsn;
        s.commits += 1;
        s.docs_written += docs.0;
        s.docs_replaced += docs.1;
        while s.samples.front().is_some_and(|(_, h)| *h <= indexed_lsn) {
            s.samples.pop_front();
        }
        drop(s);
        self.cv.notify_all();
    }

    pub(crate) fn flush_wanted(&self) -> bool {
        self.flush_waiters.load(Ordering::Acquire) > 0
    }

    pub(crate) fn set_error(&self, e: String) {
        self.lock().error = Some(e);
        self.cv.notify_all();
    }

    pub(crate) fn clear_error(&self) {
        let mut s = self.lock();
        if s.error.is_some() {
            s.error = None;
        }
    }

    fn indexed_lsn(&self) -> u64 {
        self.lock().indexed_lsn
    }
}

/// A full-text index of one log. Cheap to clone; search from any thread.
#[derive(Clone)]
pub struct FullText {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    f: Fields,
    shared: Arc<Shared>,
    /// The writing side, until an indexer thread takes it.
    core: Mutex<Option<Core>>,
    rebuilt: Option<String>,
    _lock: Option<HeldLock>,
}

fn index_dir(log_dir: &Path) -> PathBuf {
    log_dir.join(FULLTEXT_DIR).join(INDEX_DIR)
}

/// Why an existing index cannot be used (it is then rebuilt, or, opened
/// read-only, reported).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unusable(String);

impl Unusable {
    const MISSING: &'static str = "it does not exist";

    fn missing() -> Unusable {
        Unusable(Self::MISSING.to_string())
    }
}

/// Open an existing index and check it belongs to this log.
fn try_open(dir: &Path, log_id: &str, verify: bool) -> Result<(Index, CommitPayload), Unusable> {
    if !dir.join("meta.json").exists() {
        return Err(Unusable::missing());
    }
    let index = Index::open_in_dir(dir).map_err(|e| Unusable(format!("it does not open: {e}")))?;
    let (schema, _) = build_schema();
    if index.schema() != schema {
        return Err(Unusable("its schema is from another version".into()));
    }
    let metas = index
        .load_metas()
        .map_err(|e| Unusable(format!("its metadata does not load: {e}")))?;
    let payload = match metas.payload.as_deref() {
        Some(p) => CommitPayload::parse(p)?,
        None if metas.segments.is_empty() => CommitPayload::fresh(log_id),
        None => return Err(Unusable("it has documents but no commit payload".into())),
    };
    if payload.log_id != log_id {
        return Err(Unusable(format!(
            "it was built from another log (id {}, this log is {log_id})",
            payload.log_id
        )));
    }
    if verify {
        let bad = index
            .validate_checksum()
            .map_err(|e| Unusable(format!("its checksums cannot be read: {e}")))?;
        if !bad.is_empty() {
            let mut names: Vec<String> = bad.iter().map(|p| p.display().to_string()).collect();
            names.sort();
            return Err(Unusable(format!(
                "checksum mismatch in {}",
                names.join(", ")
            )));
        }
    }
    // Open every segment once: a damaged file usually fails here.
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(|e: tantivy::TantivyError| Unusable(format!("its segments do not open: {e}")))?;
    let searcher = reader.searcher();
    for seg in searcher.segment_readers() {
        seg.get_store_reader(0)
            .map_err(|e| Unusable(format!("a document store does not open: {e}")))?;
    }
    Ok((index, payload))
}

fn create_fresh(
    dir: &Path,
    log_id: &str,
    opts: &FullTextOptions,
) -> Result<(Index, CommitPayload), FullTextError> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| FullTextError::Unusable {
            dir: dir.to_path_buf(),
            reason: format!("removing the old index: {e}"),
        })?;
    }
    private_dir(dir).map_err(|e| FullTextError::Unusable {
        dir: dir.to_path_buf(),
        reason: format!("creating it: {e}"),
    })?;
    let (schema, _) = build_schema();
    let settings = tantivy::IndexSettings {
        docstore_compression: if opts.compress_stored {
            tantivy::store::Compressor::Lz4
        } else {
            tantivy::store::Compressor::None
        },
        ..tantivy::IndexSettings::default()
    };
    let index = Index::builder()
        .schema(schema)
        .settings(settings)
        .create_in_dir(dir)
        .map_err(FullTextError::index("creating"))?;
    Ok((index, CommitPayload::fresh(log_id)))
}

/// Owner-only folders (0700), like the rest of the log folder; tantivy's
/// own files inside are then out of reach of other users.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn log_id_of(log_dir: &Path) -> Result<String, FullTextError> {
    match Manifest::load(log_dir)? {
        Some(m) => Ok(m.log_id),
        None => Err(crate::Error::NoLog(log_dir.to_path_buf()).into()),
    }
}

fn make_reader(index: &Index, policy: ReloadPolicy) -> Result<IndexReader, FullTextError> {
    index
        .reader_builder()
        .reload_policy(policy)
        .try_into()
        .map_err(FullTextError::index("opening a reader"))
}

impl FullText {
    /// Open the index of the log in `log_dir` for writing (taking its lock),
    /// creating it, or deleting and rebuilding it when it is missing,
    /// damaged, of another version or of another log. Documents come from
    /// [`FullText::catch_up`] or [`FullText::spawn_indexer`].
    pub fn open(log_dir: &Path, opts: &FullTextOptions) -> Result<FullText, FullTextError> {
        let log = LogReader::open(log_dir)?;
        FullText::open_for(&log, opts)
    }

    /// [`FullText::open`] with a reader of the log already at hand.
    pub fn open_for(log: &LogReader, opts: &FullTextOptions) -> Result<FullText, FullTextError> {
        let log_dir = log.dir().to_path_buf();
        let log_id = log.manifest()?.log_id;
        let ft_dir = log_dir.join(FULLTEXT_DIR);
        private_dir(&ft_dir).map_err(|e| FullTextError::Unusable {
            dir: ft_dir.clone(),
            reason: format!("creating it: {e}"),
        })?;
        let lock_path = ft_dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| FullTextError::Unusable {
                dir: ft_dir.clone(),
                reason: format!("opening {}: {e}", lock_path.display()),
            })?;
        if fs2::FileExt::try_lock_exclusive(&lock).is_err() {
            return Err(FullTextError::Locked(ft_dir));
        }
        let dir = index_dir(&log_dir);
        let head = log.head().next_lsn;
        let opened = if opts.force_rebuild {
            Err(Unusable("a rebuild was asked for".to_string()))
        } else {
            try_open(&dir, &log_id, opts.verify_on_open).and_then(|(i, p)| {
                if p.next_lsn > head {
                    Err(Unusable(format!(
                        "it is ahead of the log (indexed to LSN {}, log head {head})",
                        p.next_lsn
                    )))
                } else {
                    Ok((i, p))
                }
            })
        };
        let (index, payload, rebuilt) = match opened {
            Ok((i, p)) => (i, p, None),
            Err(Unusable(reason)) => {
                let (i, p) = create_fresh(&dir, &log_id, opts)?;
                (i, p, Some(reason))
            }
        };
        let (_, f) = build_schema();
        let reader = make_reader(&index, ReloadPolicy::Manual)?;
        let shared = Arc::new(Shared::new(payload.next_lsn, payload.first_lsn));
        let core = Core::new(
            dir.clone(),
            index.clone(),
            reader.clone(),
            f,
            opts.clone(),
            payload,
            shared.clone(),
        );
        Ok(FullText {
            inner: Arc::new(Inner {
                dir: log_dir,
                index,
                reader,
                f,
                shared,
                core: Mutex::new(Some(core)),
                rebuilt,
                _lock: Some(HeldLock::from_locked(lock)),
            }),
        })
    }

    /// Open the index read-only, beside whoever writes it. Fails when it is
    /// missing or does not open (it is not rebuilt from here).
    pub fn open_read_only(log_dir: &Path) -> Result<FullText, FullTextError> {
        let log_id = log_id_of(log_dir)?;
        let dir = index_dir(log_dir);
        let (index, payload) = try_open(&dir, &log_id, false)
            .map_err(|Unusable(reason)| FullTextError::Unusable { dir, reason })?;
        let (_, f) = build_schema();
        let reader = make_reader(&index, ReloadPolicy::OnCommitWithDelay)?;
        Ok(FullText {
            inner: Arc::new(Inner {
                dir: log_dir.to_path_buf(),
                index,
                reader,
                f,
                shared: Arc::new(Shared::new(payload.next_lsn, payload.first_lsn)),
                core: Mutex::new(None),
                rebuilt: None,
                _lock: None,
            }),
        })
    }

    /// Why the index was (re)created on open, if it was.
    pub fn rebuilt(&self) -> Option<&str> {
        self.inner.rebuilt.as_deref()
    }

    pub fn log_dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Every event before this LSN is searchable.
    pub fn indexed_lsn(&self) -> u64 {
        if self.inner._lock.is_none() {
            // Read-only: the writer is elsewhere; ask the newest commit.
            if let Some(p) = self.disk_payload() {
                return p.next_lsn;
            }
        }
        self.inner.shared.indexed_lsn()
    }

    fn disk_payload(&self) -> Option<CommitPayload> {
        let metas = self.inner.index.load_metas().ok()?;
        CommitPayload::parse(metas.payload.as_deref()?).ok()
    }

    /// Runs (and pending orphans) in the index.
    pub fn num_docs(&self) -> u64 {
        let _ = self.inner.reader.reload();
        self.inner.reader.searcher().num_docs()
    }

    /// How far the index is behind the log that `log` reads.
    pub fn lag(&self, log: &LogReader) -> Lag {
        let head = log.head().next_lsn;
        let indexed = self.indexed_lsn().max(log.first_lsn()).min(head);
        let events = head - indexed;
        let seconds = if events == 0 {
            0.0
        } else if self.inner._lock.is_some() {
            // The indexer samples the head once a round; without this a
            // caller between its commit and its next round read 0 s with
            // events behind (seen at 500,000 events/s).
            self.inner.shared.observe_head(head);
            self.inner.shared.lag_seconds_at(indexed)
        } else {
            self.disk_payload().map_or(0.0, |p| {
                p.lag_seconds + (now_micros() - p.committed_at_us).max(0) as f64 / 1e6
            })
        };
        Lag {
            indexed_lsn: indexed,
            head_lsn: head,
            events,
            seconds,
        }
    }

    /// Index everything the log holds now, in the foreground, and commit.
    /// `tick(indexed_so_far)` is called after every batch (for progress).
    pub fn catch_up(&self, log: &LogReader, tick: impl FnMut(u64)) -> Result<u64, FullTextError> {
        let mut guard = self.inner.core.lock().unwrap_or_else(|p| p.into_inner());
        let core = guard.as_mut().ok_or(FullTextError::NotWritable)?;
        core.catch_up(log, tick)?;
        Ok(core.next_lsn)
    }

    /// Start the indexer thread following `log` (a live reader of an open
    /// [`Log`], or a read-only one, which polls the folder).
    pub fn spawn_indexer(&self, log: LogReader) -> Result<Indexer, FullTextError> {
        let core = self
            .inner
            .core
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(FullTextError::NotWritable)?;
        let head_reader = LogReader::open(log.dir()).ok();
        let shared = self.inner.shared.clone();
        let handle = std::thread::Builder::new()
            .name("auditlog-fulltext".into())
            .spawn(move || indexer::run_thread(core, log, shared))
            .map_err(|e| FullTextError::Unusable {
                dir: self.inner.dir.clone(),
                reason: format!("starting the indexer thread: {e}"),
            })?;
        Ok(Indexer {
            ft: self.clone(),
            handle: Some(handle),
            head: head_reader,
        })
    }

    /// A hook for [`Config::retain_hooks`]: retention is applied to the
    /// index at the indexer's next round (it also checks on its own; the
    /// hook only records that it should not wait for the commit interval).
    pub fn retain_hook(&self) -> RetainHook {
        let shared = Arc::downgrade(&self.inner.shared);
        Arc::new(move |_report| {
            if let Some(s) = shared.upgrade() {
                s.cv.notify_all();
            }
        })
    }
}

/// The indexer thread of a [`FullText`]; derefs to it for searching.
/// Dropping it stops the thread after committing what it has folded.
pub struct Indexer {
    ft: FullText,
    handle: Option<JoinHandle<()>>,
    /// Reads the log's head for lag (set by [`open_log`] to a live reader).
    head: Option<LogReader>,
}

impl Deref for Indexer {
    type Target = FullText;
    fn deref(&self) -> &FullText {
        &self.ft
    }
}

impl Indexer {
    fn shared(&self) -> &Shared {
        &self.ft.inner.shared
    }

    fn head_lsn(&mut self) -> Option<u64> {
        let r = self.head.as_mut()?;
        let _ = r.refresh();
        Some(r.head().next_lsn)
    }

    /// How far search is behind the log.
    pub fn lag(&mut self) -> Lag {
        match self.head.as_mut() {
            Some(r) => {
                let _ = r.refresh();
                self.ft.lag(r)
            }
            None => {
                let i = self.shared().indexed_lsn();
                Lag {
                    indexed_lsn: i,
                    head_lsn: i,
                    events: 0,
                    seconds: 0.0,
                }
            }
        }
    }

    /// Wait until everything the log held when called is searchable, or
    /// `timeout` ends; true when caught up.
    pub fn wait_caught_up(&mut self, timeout: Duration) -> bool {
        let Some(target) = self.head_lsn() else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let sh = self.ft.inner.shared.clone();
        sh.flush_waiters.fetch_add(1, Ordering::AcqRel);
        let mut s = sh.lock();
        let ok = loop {
            if s.indexed_lsn >= target || s.first_lsn >= target {
                break true;
            }
            let now = Instant::now();
            if now >= deadline || self.handle.as_ref().is_none_or(|h| h.is_finished()) {
                break false;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            s = sh
                .cv
                .wait_timeout(s, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        };
        drop(s);
        sh.flush_waiters.fetch_sub(1, Ordering::AcqRel);
        ok
    }

    /// The indexer's last error, if its last round failed.
    pub fn error(&self) -> Option<String> {
        self.shared().lock().error.clone()
    }

    /// Commits so far (by this indexer).
    pub fn commits(&self) -> u64 {
        self.shared().lock().commits
    }

    /// Documents committed so far by this indexer, and how many of them
    /// replaced an already committed document of their run (a run whose
    /// events span commits is read back and indexed again).
    pub fn documents_written(&self) -> (u64, u64) {
        let s = self.shared().lock();
        (s.docs_written, s.docs_replaced)
    }

    /// Commit what is folded and stop the thread.
    pub fn stop(mut self) {
        self.finish(false);
    }

    /// Stop at once without committing what is folded: what a crash leaves.
    pub fn kill(mut self) {
        self.finish(true);
    }

    fn finish(&mut self, kill: bool) {
        let sh = &self.ft.inner.shared;
        if kill {
            sh.kill.store(true, Ordering::Release);
        } else {
            sh.stop.store(true, Ordering::Release);
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// A log opened with (or without) its full-text indexer.
pub struct LogWithSearch {
    pub log: Log,
    /// None when search is switched off or its index could not be opened.
    pub search: Option<Indexer>,
    /// Why search is not running although it is switched on.
    pub search_error: Option<FullTextError>,
}

/// Open a log for writing and, unless `opts.enabled` is false, its
/// full-text indexer. A failure of the index is reported in
/// `search_error` and never keeps the log from opening.
pub fn open_log(mut config: Config, opts: &FullTextOptions) -> crate::Result<LogWithSearch> {
    if !opts.enabled {
        return Ok(LogWithSearch {
            log: Log::open(config)?,
            search: None,
            search_error: None,
        });
    }
    // The hook must be in the config before the log opens; it reaches the
    // index through a slot filled afterwards.
    let slot: Arc<Mutex<Option<RetainHook>>> = Arc::new(Mutex::new(None));
    let hook_slot = slot.clone();
    config.retain_hooks.push(Arc::new(move |r| {
        let hook = hook_slot.lock().ok().and_then(|g| g.clone());
        if let Some(h) = hook {
            h(r);
        }
    }));
    let log = Log::open(config)?;
    let started = FullText::open_for(&log.reader(), opts).and_then(|ft| {
        if let Ok(mut g) = slot.lock() {
            *g = Some(ft.retain_hook());
        }
        let mut ix = ft.spawn_indexer(log.reader())?;
        ix.head = Some(log.reader());
        Ok(ix)
    });
    Ok(match started {
        Ok(ix) => LogWithSearch {
            log,
            search: Some(ix),
            search_error: None,
        },
        Err(e) => {
            tracing::warn!("full-text search is not running: {e}");
            LogWithSearch {
                log,
                search: None,
                search_error: Some(e),
            }
        }
    })
}

/// The `stats` fields of the full-text index, read from disk beside any
/// writer: one key, `fulltext`, whose value is a JSON object.
pub fn search_stats(reader: &LogReader) -> Vec<(String, String)> {
    let dir = index_dir(reader.dir());
    let value = if !dir.join("meta.json").exists() {
        "{\"state\":\"absent\"}".to_string()
    } else {
        match FullText::open_read_only(reader.dir()) {
            Ok(ft) => {
                let lag = ft.lag(reader);
                format!(
                    "{{\"state\":\"ok\",\"runs\":{},\"indexed_lsn\":{},\"lag_events\":{},\"lag_seconds\":{:.3}}}",
                    ft.inner.reader.searcher().num_docs(),
                    lag.indexed_lsn,
                    lag.events,
                    lag.seconds
                )
            }
            Err(e) => {
                let mut s = String::from("{\"state\":\"unusable\",\"reason\":");
                crate::event::json::json_string(&e.to_string(), &mut s);
                s.push('}');
                s
            }
        }
    };
    vec![("fulltext".to_string(), value)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_lag_history_thins_out_and_keeps_its_oldest_sample() {
        let sh = Shared::new(0, 0);
        let old = Instant::now() - Duration::from_secs(60);
        {
            let mut s = sh.lock();
            for i in 0..MAX_LAG_SAMPLES as u64 {
                s.samples.push_back((old, i + 1));
            }
        }
        sh.observe_head(MAX_LAG_SAMPLES as u64 + 10);
        let s = sh.lock();
        assert_eq!(s.samples.len(), MAX_LAG_SAMPLES / 2 + 1);
        assert_eq!(s.samples.front().map(|x| x.1), Some(1));
        assert_eq!(
            s.samples.back().map(|x| x.1),
            Some(MAX_LAG_SAMPLES as u64 + 10)
        );
        drop(s);
        // The oldest waiting event is still dated by the oldest sample.
        assert!(sh.lag_seconds_at(0) >= 59.0);
    }
}
