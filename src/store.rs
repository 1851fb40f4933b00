//! The gateway-facing audit store: the whole audit-store surface the
//! gateways use today (start/finish runs, logs, the run queries, purge),
//! over one [`Log`] and its indexes, plus the ergonomics they expect: a
//! run guard that times a run, an allowlist, a fire-and-forget mode and
//! exportable counters. See docs/queries.md.
//!
//! Writes go through the log's lock-free queue and return at once (the
//! receipt is not awaited unless `wait_durable`). Reads go through a query
//! engine behind a mutex; a background thread indexes each segment as it
//! seals, off the writer thread.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::event::{Event, Json, Micros, RunFinished, RunLog, RunStarted};
use crate::log::Log;
use crate::query::{BackgroundIndexer, Engine, ErrorGroup, Filter, IndexOnSeal, Page};
use crate::retention::RetentionReport;
use crate::view::{Run, RunLogEntry};

/// Run ids remembered between a start and its finish (for the NotFound
/// check before the start is visible to queries, and for skipped runs).
pub const RECENT_IDS: usize = 100_000;

/// How an [`AuditStore`] is opened.
#[derive(Clone)]
pub struct StoreConfig {
    pub log: Config,
    /// Record only runs of these skills (`None`: all).
    pub allow_skills: Option<HashSet<String>>,
    /// Record only `run_log`s of these event types (`None`: all).
    pub allow_event_types: Option<HashSet<String>>,
    /// Never return audit failures: count them and report via `tracing`.
    pub fire_and_forget: bool,
    /// Wait for each write's receipt (durability per the log's policy).
    pub wait_durable: bool,
}

impl StoreConfig {
    pub fn new(dir: impl Into<std::path::PathBuf>) -> StoreConfig {
        StoreConfig {
            log: Config::new(dir),
            allow_skills: None,
            allow_event_types: None,
            fire_and_forget: false,
            wait_durable: false,
        }
    }
}

/// Counters an operator can export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounters {
    pub appended: u64,
    pub dropped: u64,
    pub rejected: u64,
    pub durable_lsn: u64,
    pub queue_depth: u64,
    /// Events skipped by the allowlist.
    pub skipped: u64,
    /// Audit failures swallowed in fire-and-forget mode.
    pub failures: u64,
}

/// A bounded set of ids, oldest evicted first.
#[derive(Default)]
struct Recent {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Recent {
    fn insert(&mut self, id: &str) {
        if self.set.insert(id.to_string()) {
            self.order.push_back(id.to_string());
            while self.order.len() > RECENT_IDS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

/// The audit store.
pub struct AuditStore {
    /// Always Some until `close` consumes the store.
    log: Option<Log>,
    engine: Arc<Mutex<Engine>>,
    indexer: Option<BackgroundIndexer>,
    cfg: StoreConfig,
    started: Mutex<Recent>,
    skipped_runs: Mutex<Recent>,
    skipped: AtomicU64,
    failures: AtomicU64,
}

fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

impl AuditStore {
    /// Open (or create) the log and its indexes.
    pub fn open(cfg: StoreConfig) -> Result<AuditStore> {
        let mut log_cfg = cfg.log.clone();
        let on_seal = IndexOnSeal::hook(&mut log_cfg);
        let log = Log::open(log_cfg)?;
        let indexer = on_seal.start(&log)?;
        let engine = indexer.engine().clone();
        Ok(AuditStore {
            log: Some(log),
            engine,
            indexer: Some(indexer),
            cfg,
            started: Mutex::new(Recent::default()),
            skipped_runs: Mutex::new(Recent::default()),
            skipped: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    pub fn log(&self) -> &Log {
        match &self.log {
            Some(l) => l,
            None => unreachable!("the log is only taken by close(self)"),
        }
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// In fire-and-forget mode, count and report a failure instead.
    fn outcome(&self, what: &str, r: Result<()>) -> Result<()> {
        match r {
            Err(e) if self.cfg.fire_and_forget => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "audit {what} failed");
                Ok(())
            }
            other => other,
        }
    }

    fn append(&self, ev: &Event) -> Result<()> {
        let receipt = self.log().append(ev)?;
        if self.cfg.wait_durable {
            receipt.wait()?;
        }
        Ok(())
    }

    fn skip(&self) -> Result<()> {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn lock<'a, T>(m: &'a Mutex<T>) -> std::sync::MutexGuard<'a, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a run's start.
    pub fn start_run(&self, id: &str, ts: Micros, start: RunStarted) -> Result<()> {
        if let Some(allow) = &self.cfg.allow_skills {
            if !allow.contains(&start.skill_id) {
                Self::lock(&self.skipped_runs).insert(id);
                return self.skip();
            }
        }
        let r = self.append(&Event::run_started(id, ts, start));
        if r.is_ok() {
            Self::lock(&self.started).insert(id);
        }
        self.outcome("start_run", r)
    }

    /// Record a run's finish. Finishing a run that was never started is
    /// [`Error::NotFound`] (and is not written).
    pub fn finish_run(&self, id: &str, ts: Micros, finish: RunFinished) -> Result<()> {
        if Self::lock(&self.skipped_runs).contains(id) {
            return self.skip();
        }
        let r = (|| {
            if !Self::lock(&self.started).contains(id) && self.engine().get_run(id)?.is_none() {
                // Its start may still be queued (appended but not yet
                // committed, and evicted from the recent set by a large
                // queue): make everything appended visible and ask again,
                // so NotFound means never started. Costs a flush on this
                // error path only.
                self.log().flush()?;
                if self.engine().get_run(id)?.is_none() {
                    return Err(Error::NotFound(format!("run {id:?}")));
                }
            }
            self.append(&Event::run_finished(id, ts, finish))
        })();
        self.outcome("finish_run", r)
    }

    /// Record a log line of a run.
    pub fn append_log(&self, id: &str, ts: Micros, log: RunLog) -> Result<()> {
        if Self::lock(&self.skipped_runs).contains(id) {
            return self.skip();
        }
        if let Some(allow) = &self.cfg.allow_event_types {
            if !allow.contains(&log.event_type) {
                return self.skip();
            }
        }
        let r = self.append(&Event::run_log(id, ts, log));
        self.outcome("append_log", r)
    }

    /// Start a run now and get a guard that records its finish.
    pub fn guard(&self, id: &str, start: RunStarted) -> RunGuard<'_> {
        let _ = self.start_run(id, now_micros(), start);
        RunGuard {
            store: self,
            id: id.to_string(),
            began: Instant::now(),
            seq: 0,
            tool_calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            thinking_tokens: 0,
            done: false,
        }
    }

    /// Make everything appended durable and visible to queries.
    pub fn flush(&self) -> Result<u64> {
        self.log().flush()
    }

    pub fn get_run(&self, id: &str) -> Result<Option<Run>> {
        self.engine().get_run(id)
    }
    /// The run's logs in seq order.
    pub fn list_logs(&self, id: &str) -> Result<Vec<RunLogEntry>> {
        self.engine().logs(id)
    }
    pub fn list_runs_by_skill(&self, skill: &str, include_dry_run: bool) -> Result<Vec<Run>> {
        self.list_runs_by_skill_page(skill, Page::all(), include_dry_run)
    }
    pub fn list_runs_by_skill_page(
        &self,
        skill: &str,
        page: Page,
        include_dry_run: bool,
    ) -> Result<Vec<Run>> {
        let f = Filter {
            skill: Some(skill.into()),
            include_dry_run,
            ..Filter::default()
        };
        self.engine().list(&f, page)
    }
    pub fn count_by_skill(&self, skill: &str, include_dry_run: bool) -> Result<u64> {
        let f = Filter {
            skill: Some(skill.into()),
            include_dry_run,
            ..Filter::default()
        };
        self.engine().count(&f)
    }
    pub fn list_runs_by_caller(&self, caller: &str, page: Page) -> Result<Vec<Run>> {
        let f = Filter {
            caller: Some(caller.into()),
            ..Filter::default()
        };
        self.engine().list(&f, page)
    }
    pub fn list_runs(&self, f: &Filter, page: Page) -> Result<Vec<Run>> {
        self.engine().list(f, page)
    }
    pub fn count_runs(&self, f: &Filter) -> Result<u64> {
        self.engine().count(f)
    }
    /// Drop whole segments older than `cutoff` (and their indexes).
    pub fn purge_older_than(&self, cutoff: Micros) -> Result<RetentionReport> {
        let rep = self.log().retain(cutoff)?;
        self.engine().refresh()?;
        Ok(rep)
    }
    pub fn children(&self, id: &str, include_dry_run: bool) -> Result<Vec<Run>> {
        self.engine().children(id, include_dry_run)
    }
    /// The run and its ancestors (cycle-safe); NotFound for an unknown run.
    pub fn parent_chain(&self, id: &str) -> Result<Vec<Run>> {
        self.engine()
            .chain(id)?
            .ok_or_else(|| Error::NotFound(format!("run {id:?}")))
    }
    pub fn finished_runs_before(&self, before: Micros) -> Result<Vec<Run>> {
        self.engine().finished_before(before, true)
    }
    pub fn last_run_per_skill(
        &self,
        skills: &[String],
        include_failed: bool,
    ) -> Result<Vec<(String, Option<Micros>)>> {
        self.engine().last_run(skills, include_failed, false)
    }
    pub fn tool_errors(
        &self,
        since: Option<Micros>,
        until: Option<Micros>,
    ) -> Result<Vec<ErrorGroup>> {
        self.engine().errors(since, until, false)
    }

    pub fn counters(&self) -> StoreCounters {
        let c = self.log().counters();
        StoreCounters {
            appended: c.appended,
            dropped: c.dropped,
            rejected: c.rejected,
            durable_lsn: c.durable_lsn,
            queue_depth: c.queue_depth,
            skipped: self.skipped.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Flush and stop.
    pub fn close(mut self) -> Result<()> {
        self.stop();
        match self.log.take() {
            Some(log) => log.close(),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        if let Some(mut i) = self.indexer.take() {
            i.stop();
        }
    }
}

impl Drop for AuditStore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Times a run: records the start when created and the finish (runtime
/// measured, token totals summed) on [`RunGuard::complete`] or, if never
/// completed, when dropped ("error" while panicking, else "cancelled").
pub struct RunGuard<'a> {
    store: &'a AuditStore,
    id: String,
    began: Instant,
    seq: u64,
    tool_calls: u64,
    input_tokens: u64,
    output_tokens: u64,
    thinking_tokens: u64,
    done: bool,
}

impl RunGuard<'_> {
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Add to the token totals.
    pub fn add_tokens(&mut self, input: u64, output: u64, thinking: u64) {
        self.input_tokens += input;
        self.output_tokens += output;
        self.thinking_tokens += thinking;
    }
    /// Record a log line (seq numbered by the guard); `tool_call`s count.
    pub fn log(&mut self, event_type: &str, payload: Json) {
        if event_type == "tool_call" {
            self.tool_calls += 1;
        }
        let l = RunLog {
            seq: self.seq,
            event_type: event_type.into(),
            payload,
        };
        self.seq += 1;
        let _ = self.store.append_log(&self.id, now_micros(), l);
    }
    /// Finish with a status, output and error.
    pub fn complete(mut self, status: &str, output: &str, error: &str) -> Result<()> {
        self.finish(status, output, error)
    }
    fn finish(&mut self, status: &str, output: &str, error: &str) -> Result<()> {
        self.done = true;
        let f = RunFinished {
            status: status.into(),
            output: output.into(),
            error: error.into(),
            tool_calls: self.tool_calls,
            runtime_seconds: self.began.elapsed().as_secs_f64(),
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            thinking_tokens: self.thinking_tokens,
        };
        self.store.finish_run(&self.id, now_micros(), f)
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let (status, error) = if std::thread::panicking() {
                ("error", "panicked")
            } else {
                ("cancelled", "dropped without completing")
            };
            let _ = self.finish(status, "", error);
        }
    }
}
