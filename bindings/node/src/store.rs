//! `NativeStore`: one open [`AuditStore`] as a JavaScript object.
//!
//! The store lives in a lock shared with the async work it starts; the
//! JavaScript thread's calls take the lock for reading (uncontended: one
//! atomic each), `close()` takes it for writing, so it waits for work in
//! flight and then every later call fails with `AUDITLOG_CLOSED`.
//!
//! Process exit with the store still open: an environment cleanup hook
//! closes it (its queued events are written and synced, its threads
//! joined) before Node tears the environment down.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auditlog::{AuditStore, Micros, Page};
use napi::bindgen_prelude::AsyncTask;
use napi::{CleanupEnvHook, Env};
use napi_derive::napi;

use crate::cursor::{ReplayCursor, TailCursor};
use crate::errors::{self, Code};
use crate::json_out;
use crate::options::{micros, FilterOptions, OpenOptions};
use crate::tasks::{FlushTask, RetainTask, StatsTask, VerifyTask};
use crate::toolcall::{self, CallQuery, Shape, ToolCallRow};
use auditlog::event::json::parse_event;

/// What the JavaScript object and its async work share.
pub struct Shared {
    store: RwLock<Option<AuditStore>>,
    /// Set first thing by `close()`, so followers stop without the lock.
    closed: AtomicBool,
    pub dir: PathBuf,
    /// The head LSN when the store opened: with the events appended since
    /// (the log's `appended` counter), the head a query must see...
    opened_head: u64,
    /// ...less the events given up on: appended but never committed (a
    /// block write that failed and was cut back), so that later queries
    /// do not wait for them again.
    given_up: AtomicU64,
    /// Longest a query waits for them ([`COMMIT_WAIT`]).
    commit_wait: Duration,
}

impl Shared {
    pub fn new(store: AuditStore, dir: PathBuf, commit_wait: Duration) -> Shared {
        Shared {
            opened_head: store.head().next_lsn,
            given_up: AtomicU64::new(0),
            commit_wait,
            store: RwLock::new(Some(store)),
            closed: AtomicBool::new(false),
            dir,
        }
    }

    /// Run `f` on the open store; `AUDITLOG_CLOSED` once closed.
    pub fn with<T>(&self, f: impl FnOnce(&AuditStore) -> napi::Result<T>) -> napi::Result<T> {
        let guard = self.store.read().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(s) => f(s),
            None => Err(errors::closed()),
        }
    }

    /// Like [`Shared::with`], once everything appended through this store
    /// is committed, so that a query reads its own writes (as with
    /// better-sqlite3). Commits take microseconds to a group-commit sync;
    /// the wait is bounded, and skipped when the writer has failed.
    pub fn query<T>(&self, f: impl FnOnce(&AuditStore) -> napi::Result<T>) -> napi::Result<T> {
        self.with(|s| {
            // The log's guard is let go before `f`: the store takes it
            // again per call, and replaces the log when it heals.
            let log = s.log();
            let given_up = self.given_up.load(Ordering::Relaxed);
            let target = (self.opened_head + log.counters().appended).saturating_sub(given_up);
            if log.head().next_lsn < target && log.failed().is_none() {
                let mut reader = log.reader();
                drop(log);
                let _ = reader.wait_beyond(target - 1, self.commit_wait);
                let head = reader.head().next_lsn;
                if head < target {
                    self.given_up.fetch_add(target - head, Ordering::Relaxed);
                }
            } else {
                drop(log);
            }
            f(s)
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stop the store's threads (search commits what it folded), flush
    /// and close the log. Idempotent.
    pub fn close(&self) -> auditlog::Result<()> {
        self.closed.store(true, Ordering::Release);
        let store = self.store.write().unwrap_or_else(|p| p.into_inner()).take();
        match store {
            Some(s) => s.close(),
            None => Ok(()),
        }
    }
}

/// Longest a query waits for the store's own appends to commit.
const COMMIT_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn now_micros() -> Micros {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
    })
}

pub(crate) fn new_id() -> String {
    // Version 7: time-ordered, monotonic within the process, 74 random bits.
    uuid::Uuid::now_v7().to_string()
}

/// An open store.
#[napi]
pub struct NativeStore {
    shared: Arc<Shared>,
    cleanup: Option<CleanupEnvHook<Weak<Shared>>>,
}

/// Open (or, with `create`, create) the log in `dir`.
#[napi(catch_unwind)]
pub fn open(env: Env, dir: String, options_json: String) -> napi::Result<NativeStore> {
    let opts = OpenOptions::parse(&options_json)?;
    let cfg = opts.store_config(&dir)?;
    let store = AuditStore::open(cfg).map_err(errors::engine)?;
    let shared = Arc::new(Shared::new(store, PathBuf::from(&dir), COMMIT_WAIT));
    let weak = Arc::downgrade(&shared);
    let cleanup = env.add_env_cleanup_hook(weak, |weak| {
        if let Some(shared) = weak.upgrade() {
            // Nobody is left to tell of a failure at exit; the log's own
            // recovery handles whatever did not reach the disk.
            let _ = shared.close();
        }
    })?;
    Ok(NativeStore {
        shared,
        cleanup: Some(cleanup),
    })
}

/// Parse a batch of events, one JSON object per line; the error names the
/// line (0-based index) and the field.
fn parse_events(jsonl: &str) -> napi::Result<Vec<auditlog::Event>> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_event(l.as_bytes())
                .map_err(|e| errors::coded(Code::InvalidEvent, format!("event {i}: {e}")))
        })
        .collect()
}

fn limit_of(limit: Option<u32>) -> Option<usize> {
    limit.map(|l| l as usize)
}

#[napi]
impl NativeStore {
    /// The folder of the log.
    #[napi(getter)]
    pub fn dir(&self) -> String {
        self.shared.dir.to_string_lossy().into_owned()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Append one event (its contract JSON). Returns once it is queued.
    #[napi(catch_unwind)]
    pub fn append(&self, json: String) -> napi::Result<()> {
        let ev = parse_event(json.as_bytes())
            .map_err(|e| errors::coded(Code::InvalidEvent, format!("event: {e}")))?;
        self.shared.with(|s| {
            // Durability is awaited through flush(), not per event.
            s.append(&ev).map_err(errors::engine).map(drop)
        })
    }

    /// Append events (JSON lines) as one unit: all are queued or none.
    #[napi(catch_unwind)]
    pub fn append_batch(&self, jsonl: String) -> napi::Result<u32> {
        let events = parse_events(&jsonl)?;
        self.shared.with(|s| {
            s.append_batch(&events).map_err(errors::engine)?;
            Ok(u32::try_from(events.len()).unwrap_or(u32::MAX))
        })
    }

    /// Record one tool call row (the fields of `tool_call_log`, nothing
    /// else); returns its id.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn record_tool_call(
        &self,
        id: Option<String>,
        session_id: Option<String>,
        engine: Option<String>,
        tool_name: Option<String>,
        args_summary: Option<String>,
        duration_ms: Option<f64>,
        exit_code: Option<f64>,
        http_status: Option<f64>,
        error: Option<String>,
        result_truncated: Option<bool>,
        result_bytes: Option<f64>,
        created_at_us: Option<f64>,
    ) -> napi::Result<String> {
        let row = ToolCallRow {
            id,
            session_id,
            engine,
            tool_name,
            args_summary,
            duration_ms,
            exit_code,
            http_status,
            error,
            result_truncated,
            result_bytes,
            created_at_us: micros("created_at", created_at_us)?,
        };
        let (id, events) = toolcall::to_events(row, now_micros(), new_id)
            .map_err(|e| errors::coded(Code::InvalidEvent, e.to_string()))?;
        self.shared.with(|s| {
            s.append_batch(&events).map_err(errors::engine)?;
            Ok(id)
        })
    }

    /// Tool-call rows of one query shape (toolcall.rs), as JSON.
    #[napi(catch_unwind)]
    #[allow(clippy::too_many_arguments)]
    pub fn tool_calls(
        &self,
        shape: String,
        a: Option<String>,
        b: Option<String>,
        since: Option<f64>,
        until: Option<f64>,
        limit: Option<u32>,
        oldest_first: bool,
    ) -> napi::Result<String> {
        let q = CallQuery {
            shape: Shape::parse(&shape, a, b)?,
            since: micros("since", since)?,
            until: micros("until", until)?,
            limit: limit_of(limit),
            oldest_first,
        };
        self.shared
            .query(|s| toolcall::rows(s, &q).map_err(errors::engine))
    }

    /// Make everything appended durable; resolves to the head LSN.
    #[napi]
    pub fn flush(&self) -> AsyncTask<FlushTask> {
        AsyncTask::new(FlushTask(self.shared.clone()))
    }

    #[napi(catch_unwind)]
    pub fn get_run(&self, id: String) -> napi::Result<String> {
        self.shared.query(|s| {
            let r = s.get_run(&id).map_err(errors::engine)?;
            Ok(json_out::maybe_run(r.as_ref()))
        })
    }

    /// The run's logs in seq order.
    #[napi(catch_unwind)]
    pub fn logs(&self, id: String) -> napi::Result<String> {
        self.shared.query(|s| {
            let l = s.list_logs(&id).map_err(errors::engine)?;
            Ok(json_out::logs(&l))
        })
    }

    #[napi(catch_unwind)]
    pub fn list_runs(
        &self,
        filter_json: String,
        limit: Option<u32>,
        offset: Option<u32>,
    ) -> napi::Result<String> {
        let f = FilterOptions::parse(&filter_json)?;
        let page = Page {
            limit: limit_of(limit),
            offset: offset.unwrap_or(0) as usize,
        };
        self.shared.query(|s| {
            Ok(json_out::runs(
                &s.list_runs(&f, page).map_err(errors::engine)?,
            ))
        })
    }

    #[napi(catch_unwind)]
    pub fn count_runs(&self, filter_json: String) -> napi::Result<f64> {
        let f = FilterOptions::parse(&filter_json)?;
        self.shared
            .query(|s| Ok(s.count_runs(&f).map_err(errors::engine)? as f64))
    }

    #[napi(catch_unwind)]
    pub fn children(&self, id: String, include_dry_run: bool) -> napi::Result<String> {
        self.shared.query(|s| {
            let rs = s.children(&id, include_dry_run).map_err(errors::engine)?;
            Ok(json_out::runs(&rs))
        })
    }

    /// The run and its ancestors; `AUDITLOG_NOT_FOUND` for an unknown run.
    #[napi(catch_unwind)]
    pub fn chain(&self, id: String) -> napi::Result<String> {
        self.shared.query(|s| {
            Ok(json_out::runs(
                &s.parent_chain(&id).map_err(errors::engine)?,
            ))
        })
    }

    /// `[[skill, µs|null], ...]` in the order asked.
    #[napi(catch_unwind)]
    pub fn last_run(&self, skills: Vec<String>, include_failed: bool) -> napi::Result<String> {
        self.shared.query(|s| {
            let got = s
                .last_run_per_skill(&skills, include_failed)
                .map_err(errors::engine)?;
            Ok(json_out::last_runs(&got))
        })
    }

    /// Failing tool calls grouped by (channel, tool, error type).
    #[napi(catch_unwind)]
    pub fn tool_errors(&self, since: Option<f64>, until: Option<f64>) -> napi::Result<String> {
        let (since, until) = (micros("since", since)?, micros("until", until)?);
        self.shared.query(|s| {
            let g = s.tool_errors(since, until).map_err(errors::engine)?;
            Ok(json_out::error_groups(&g))
        })
    }

    /// Tool calls, with or without a run (calls.rs): a page as JSON.
    #[napi(catch_unwind)]
    pub fn calls(&self, filter_json: String) -> napi::Result<String> {
        let (f, page) = crate::calls::page_query(&filter_json)?;
        self.shared.query(|s| {
            let found = s.calls(&f, page).map_err(errors::engine)?;
            Ok(crate::calls::page(&found, &page))
        })
    }

    /// How many tool calls match.
    #[napi(catch_unwind)]
    pub fn count_calls(&self, filter_json: String) -> napi::Result<f64> {
        let f = crate::calls::count_filter(&filter_json)?;
        self.shared
            .query(|s| Ok(s.count_calls(&f).map_err(errors::engine)? as f64))
    }

    /// How many tool calls match, per value of `by` (most first), as JSON.
    #[napi(catch_unwind)]
    pub fn count_calls_by(&self, by: String, filter_json: String) -> napi::Result<String> {
        let key = crate::calls::key(&by)?;
        let f = crate::calls::count_filter(&filter_json)?;
        self.shared.query(|s| {
            let groups = s.count_calls_by(&f, key).map_err(errors::engine)?;
            Ok(crate::calls::counts(&groups))
        })
    }

    /// Finished runs with `finished_at` before `before` (µs).
    #[napi(catch_unwind)]
    pub fn finished_before(&self, before: f64) -> napi::Result<String> {
        let before = micros("before", Some(before))?.unwrap_or_default();
        self.shared.query(|s| {
            let rs = s.finished_runs_before(before).map_err(errors::engine)?;
            Ok(json_out::runs(&rs))
        })
    }

    /// Ingest counters, as JSON.
    #[napi(catch_unwind)]
    pub fn counters(&self) -> napi::Result<String> {
        self.shared.with(|s| {
            let c = s.counters();
            Ok(format!(
                "{{\"appended\":{},\"dropped\":{},\"rejected\":{},\"durableLsn\":{},\"queueDepth\":{},\"queueBytes\":{},\"skipped\":{},\"failures\":{}}}",
                c.appended, c.dropped, c.rejected, c.durable_lsn, c.queue_depth, c.queue_bytes, c.skipped, c.failures
            ))
        })
    }

    /// Segments, events, bytes, time span (and anomalies): JSON.
    #[napi]
    pub fn stats(&self, anomalies: bool) -> AsyncTask<StatsTask> {
        AsyncTask::new(StatsTask {
            shared: self.shared.clone(),
            anomalies,
        })
    }

    /// Check every frame and the chain; the report as JSON.
    #[napi]
    pub fn verify(&self, expect: Option<String>) -> AsyncTask<VerifyTask> {
        AsyncTask::new(VerifyTask {
            shared: self.shared.clone(),
            expect,
        })
    }

    /// Drop whole segments whose newest event is before `cutoff` (µs).
    #[napi]
    pub fn retain(&self, cutoff: f64) -> AsyncTask<RetainTask> {
        AsyncTask::new(RetainTask {
            shared: self.shared.clone(),
            cutoff,
        })
    }

    /// A cursor over stored events in log order (instants in µs).
    #[napi(catch_unwind)]
    pub fn replay(
        &self,
        since: Option<f64>,
        until: Option<f64>,
        from_lsn: Option<f64>,
    ) -> napi::Result<ReplayCursor> {
        ReplayCursor::new(
            self.shared.clone(),
            micros("since", since)?,
            micros("until", until)?,
            from_lsn.map(|l| l.max(0.0) as u64),
        )
    }

    /// A cursor over the newest `last` events and, when `follow`, the ones
    /// appended after them.
    #[napi(catch_unwind)]
    pub fn tail(&self, last: u32, follow: bool) -> napi::Result<TailCursor> {
        TailCursor::new(self.shared.clone(), u64::from(last), follow)
    }

    /// Full-text search (builds with the `search` feature): hits as JSON.
    #[napi]
    pub fn search(
        &self,
        query: String,
        filter_json: String,
        limit: u32,
        fresh: bool,
    ) -> AsyncTask<crate::tasks::SearchTask> {
        AsyncTask::new(crate::tasks::SearchTask {
            shared: self.shared.clone(),
            query,
            filter_json,
            limit: limit as usize,
            fresh,
        })
    }

    /// Flush, stop the threads, release the folder. Idempotent.
    #[napi(catch_unwind)]
    pub fn close(&mut self, env: Env) -> napi::Result<()> {
        if let Some(hook) = self.cleanup.take() {
            env.remove_env_cleanup_hook(hook)?;
        }
        self.shared.close().map_err(errors::engine)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use auditlog::internals::io::{Fault, FaultInjector, IoOp, WriterIo};
    use auditlog::{Event, RunStarted, StoreConfig};

    use super::*;

    /// Fails the first segment write after it is armed with ENOSPC (the
    /// writer cuts the block back and carries on).
    #[derive(Debug, Default)]
    struct FailOneWrite {
        armed: AtomicBool,
    }

    impl FaultInjector for FailOneWrite {
        fn check(&self, op: IoOp, path: &Path) -> Option<Fault> {
            let seg = path.extension().is_some_and(|e| e == "seg");
            (matches!(op, IoOp::Write(_)) && seg && self.armed.swap(false, Ordering::SeqCst))
                .then(|| Fault::Fail(std::io::Error::from_raw_os_error(28)))
        }
    }

    fn append(shared: &Shared, id: &str) {
        let ev = Event::run_started(id, 1_000, RunStarted::default());
        let r = shared.with(|s| s.log().append(&ev).map_err(errors::engine));
        assert!(r.is_ok(), "append {id}");
    }

    fn visible(shared: &Shared, id: &str) -> bool {
        let r = shared.query(|s| s.get_run(id).map_err(errors::engine));
        matches!(r, Ok(Some(_)))
    }

    #[test]
    fn queries_read_their_own_writes_and_give_up_on_a_lost_block_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let faults = Arc::new(FailOneWrite::default());
        let mut cfg = StoreConfig::new(dir.path());
        cfg.log.io = WriterIo {
            faults: Some(faults.clone()),
        };
        let store = AuditStore::open(cfg).unwrap_or_else(|e| panic!("open: {e}"));
        // Long enough that a loaded machine's ordinary query stays well
        // under it: the second look-up must be told apart from a wait.
        let wait = Duration::from_millis(1500);
        let shared = Shared::new(store, dir.path().to_path_buf(), wait);
        append(&shared, "a0");
        assert!(visible(&shared, "a0"), "a query sees the append before it");

        faults.armed.store(true, Ordering::SeqCst);
        append(&shared, "lost");
        let t = Instant::now();
        assert!(
            !visible(&shared, "lost"),
            "the cut-back block is not stored"
        );
        assert!(t.elapsed() >= wait, "the first query waited for it");
        let t = Instant::now();
        assert!(!visible(&shared, "lost"));
        assert!(t.elapsed() < wait, "later queries do not wait again");

        append(&shared, "b");
        assert!(visible(&shared, "b"), "the log carries on");
        assert!(shared.close().is_ok());
        assert!(shared.with(|_| Ok(())).is_err(), "closed");
    }
}
