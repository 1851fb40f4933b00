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
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, Durability};
use crate::error::{Error, Result};
use crate::event::{Event, EventData, Json, Micros, RunFinished, RunLog, RunStarted};
#[cfg(feature = "search")]
use crate::fulltext::{FullText, FullTextError, FullTextOptions, Hit, Indexer, Lag};
use crate::layout::Head;
use crate::log::Log;
use crate::query::{BackgroundIndexer, Engine, ErrorGroup, Filter, IndexOnSeal, Page};
use crate::reader::{Follower, LogReader, Replay, ReplayRange};
use crate::receipt::Receipt;
use crate::redact::RedactionPolicy;
use crate::retention::RetentionReport;
use crate::stats::Stats;
use crate::verify::{verify, VerifyReport};
use crate::view::{Anomalies, Run, RunLogEntry};

/// Run ids remembered between a start and its finish (for the NotFound
/// check before the start is visible to queries, and for skipped runs).
pub const RECENT_IDS: usize = 100_000;

/// Events per append when a purge carries runs forward.
const CARRY_BATCH_EVENTS: usize = 4096;

/// How an [`AuditStore`] is opened: the log's own [`Config`] (durability,
/// limits, redaction, whether to create it) plus what the store adds.
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
    /// Full-text search over runs (`None`: off). A failure to open the
    /// index never keeps the store from opening: see
    /// [`AuditStore::search_error`].
    #[cfg(feature = "search")]
    pub search: Option<FullTextOptions>,
}

impl StoreConfig {
    pub fn new(dir: impl Into<std::path::PathBuf>) -> StoreConfig {
        StoreConfig {
            log: Config::new(dir),
            allow_skills: None,
            allow_event_types: None,
            fire_and_forget: false,
            wait_durable: false,
            #[cfg(feature = "search")]
            search: None,
        }
    }

    /// When appended events become durable.
    pub fn durability(mut self, d: Durability) -> StoreConfig {
        self.log.durability = d;
        self
    }

    /// Create the folder and the log if missing (the default), or refuse.
    pub fn create(mut self, create: bool) -> StoreConfig {
        self.log.create = create;
        self
    }

    /// Drop or hash these fields before anything is stored.
    pub fn redaction(mut self, policy: RedactionPolicy) -> StoreConfig {
        self.log.redaction = Some(Arc::new(policy));
        self
    }

    /// Record only runs of these skills.
    pub fn allow_skills<S: Into<String>>(
        mut self,
        skills: impl IntoIterator<Item = S>,
    ) -> StoreConfig {
        self.allow_skills = Some(skills.into_iter().map(Into::into).collect());
        self
    }

    /// Record only `run_log`s of these event types.
    pub fn allow_event_types<S: Into<String>>(
        mut self,
        types: impl IntoIterator<Item = S>,
    ) -> StoreConfig {
        self.allow_event_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Never return audit failures: count them and report via `tracing`.
    pub fn fire_and_forget(mut self, on: bool) -> StoreConfig {
        self.fire_and_forget = on;
        self
    }

    /// Wait for each write's receipt before the write call returns.
    pub fn wait_durable(mut self, on: bool) -> StoreConfig {
        self.wait_durable = on;
        self
    }

    /// Run full-text search with these options (`None`: off).
    #[cfg(feature = "search")]
    pub fn search(mut self, opts: Option<FullTextOptions>) -> StoreConfig {
        self.search = opts;
        self
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
    pub queue_bytes: u64,
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
    /// The full-text index (searched through the clone, followed by the
    /// indexer thread, whose lag and catch-up waits need it exclusively).
    #[cfg(feature = "search")]
    search: Option<(FullText, Mutex<Indexer>)>,
    #[cfg(feature = "search")]
    search_error: Option<FullTextError>,
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
    /// Open (or create) the log, its indexes and, if asked, its full-text
    /// index. One store per folder: a second writer gets [`Error::Locked`].
    pub fn open(cfg: StoreConfig) -> Result<AuditStore> {
        let mut log_cfg = cfg.log.clone();
        let on_seal = IndexOnSeal::hook(&mut log_cfg);
        #[cfg(feature = "search")]
        let (log, search, search_error) = match &cfg.search {
            Some(opts) => {
                let opened = crate::fulltext::open_log(log_cfg, opts)?;
                let search = opened.search.map(|ix| ((*ix).clone(), Mutex::new(ix)));
                (opened.log, search, opened.search_error)
            }
            None => (Log::open(log_cfg)?, None, None),
        };
        #[cfg(not(feature = "search"))]
        let log = Log::open(log_cfg)?;
        let indexer = on_seal.start(&log)?;
        let engine = indexer.engine().clone();
        Ok(AuditStore {
            log: Some(log),
            engine,
            indexer: Some(indexer),
            #[cfg(feature = "search")]
            search,
            #[cfg(feature = "search")]
            search_error,
            cfg,
            started: Mutex::new(Recent::default()),
            skipped_runs: Mutex::new(Recent::default()),
            skipped: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The log's folder.
    pub fn dir(&self) -> PathBuf {
        self.log().dir().to_path_buf()
    }

    /// The log underneath (append encoded batches, seal, recovery report).
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

    fn write(&self, ev: &Event) -> Result<()> {
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
        let r = self.write(&Event::run_started(id, ts, start));
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
        let r = self
            .require_started(id)
            .and_then(|()| self.write(&Event::run_finished(id, ts, finish)));
        self.outcome("finish_run", r)
    }

    /// [`Error::NotFound`] unless run `id` was started: through this store
    /// (remembered), or stored in the log (its start possibly still queued).
    pub fn require_started(&self, id: &str) -> Result<()> {
        if Self::lock(&self.started).contains(id) || self.engine().get_run(id)?.is_some() {
            return Ok(());
        }
        // Its start may still be queued (appended but not yet committed,
        // and evicted from the recent set by a large queue): make
        // everything appended visible and ask again, so NotFound means
        // never started. Costs a flush on this error path only.
        self.log().flush()?;
        match self.engine().get_run(id)? {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("run {id:?}"))),
        }
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
        let r = self.write(&Event::run_log(id, ts, log));
        self.outcome("append_log", r)
    }

    /// Append any events (one unit of the queue; consecutive LSNs). The
    /// allowlists apply: events of skipped skills' runs and of unlisted
    /// event types are counted as skipped, not written. `Ok(None)` when
    /// nothing was queued (all skipped, or a failure swallowed in
    /// fire-and-forget mode); otherwise a receipt to await durability
    /// (already awaited with `wait_durable`). Any invalid event rejects
    /// the whole call ([`Error::InvalidEvent`] names it).
    pub fn append_batch(&self, events: &[Event]) -> Result<Option<Receipt>> {
        let kept = self.allowed(events);
        let events: &[Event] = match &kept {
            Some(v) => v,
            None => events,
        };
        if events.is_empty() {
            return Ok(None);
        }
        let r = (|| {
            let receipt = self.log().append_batch(events)?;
            if self.cfg.wait_durable {
                receipt.wait()?;
            }
            for ev in events {
                if let EventData::RunStarted(_) = ev.data {
                    Self::lock(&self.started).insert(&ev.run_id);
                }
            }
            Ok(receipt)
        })();
        match r {
            Ok(receipt) => Ok(Some(receipt)),
            Err(e) => self.outcome("append", Err(e)).map(|()| None),
        }
    }

    /// Append one event; see [`AuditStore::append_batch`].
    pub fn append(&self, event: &Event) -> Result<Option<Receipt>> {
        self.append_batch(std::slice::from_ref(event))
    }

    /// `Some(kept)` when the allowlists skip some of `events` (counted).
    fn allowed(&self, events: &[Event]) -> Option<Vec<Event>> {
        if self.cfg.allow_skills.is_none() && self.cfg.allow_event_types.is_none() {
            return None;
        }
        let keep = |ev: &Event| match &ev.data {
            EventData::RunStarted(s) => {
                let ok = self
                    .cfg
                    .allow_skills
                    .as_ref()
                    .is_none_or(|a| a.contains(&s.skill_id));
                if !ok {
                    Self::lock(&self.skipped_runs).insert(&ev.run_id);
                }
                ok
            }
            EventData::RunLog(l) => {
                !Self::lock(&self.skipped_runs).contains(&ev.run_id)
                    && self
                        .cfg
                        .allow_event_types
                        .as_ref()
                        .is_none_or(|a| a.contains(&l.event_type))
            }
            EventData::RunFinished(_) => !Self::lock(&self.skipped_runs).contains(&ev.run_id),
            // Refused by the append itself (the log writes its own).
            EventData::System(_) => true,
        };
        let kept: Vec<Event> = events.iter().filter(|e| keep(e)).cloned().collect();
        let skipped = (events.len() - kept.len()) as u64;
        self.skipped.fetch_add(skipped, Ordering::Relaxed);
        Some(kept)
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
    /// Drop whole segments older than `cutoff` (and their indexes). A run
    /// defined in a dropped segment that is still running, or finishes at
    /// or after the cutoff, is carried forward first: its start, logs and
    /// finish are appended again as amending events with their original
    /// times (durably, before anything is dropped), so no reader loses it.
    /// See docs/queries.md, "Retention".
    pub fn purge_older_than(&self, cutoff: Micros) -> Result<RetentionReport> {
        self.retain_with(cutoff, crate::retention::RetainOptions::default())
    }

    /// [`AuditStore::purge_older_than`] with options: `exported_first`
    /// keeps every segment that not every recorded export destination
    /// holds yet (docs/export.md). Runs are carried forward only from the
    /// segments this pass will drop, and the pass drops no segment past
    /// the last one carried from (`RetainOptions::up_to_seq`), so an
    /// export marker that moves meanwhile cannot make it drop a segment
    /// whose runs were not carried.
    pub fn retain_with(
        &self,
        cutoff: Micros,
        opts: crate::retention::RetainOptions,
    ) -> Result<RetentionReport> {
        let segments = self.log().reader().segments();
        let (doomed, held_for_export) =
            crate::retention::droppable(self.log().dir(), &segments, cutoff, opts)?;
        let Some(last) = doomed.checked_sub(1).and_then(|i| segments.get(i)) else {
            return Ok(RetentionReport {
                cutoff,
                dropped: Vec::new(),
                first_kept_lsn: self.log().reader().first_lsn(),
                held_for_export,
            });
        };
        let end_lsn = last.end_lsn();
        let carried = self
            .engine()
            .query(|v| v.carry_forward_events(end_lsn, cutoff))?;
        for batch in carried.chunks(CARRY_BATCH_EVENTS) {
            self.log().append_batch(batch)?.wait()?;
        }
        let opts = crate::retention::RetainOptions {
            up_to_seq: Some(last.seq),
            ..opts
        };
        let rep = self.log().retain_with(cutoff, opts)?;
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
    /// Finished runs (dry runs too) with finished_at before `before`,
    /// newest start first.
    pub fn finished_runs_before(&self, before: Micros) -> Result<Vec<Run>> {
        self.finished_runs_before_limit(before, None)
    }
    /// [`AuditStore::finished_runs_before`], at most `limit` runs (the
    /// merge stops there).
    pub fn finished_runs_before_limit(
        &self,
        before: Micros,
        limit: Option<usize>,
    ) -> Result<Vec<Run>> {
        self.engine().finished_before(before, true, limit)
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

    /// The run and its logs in seq order, read in one view of the log.
    pub fn run_with_logs(&self, id: &str) -> Result<Option<(Run, Vec<RunLogEntry>)>> {
        self.engine().run_with_logs(id)
    }

    /// Drop whole sealed segments whose newest event is older than
    /// `cutoff` (µs), with their indexes; see docs/operations.md.
    pub fn retain(&self, cutoff: Micros) -> Result<RetentionReport> {
        self.purge_older_than(cutoff)
    }

    /// A reader of what is committed, now and as the log grows.
    pub fn reader(&self) -> LogReader {
        self.log().reader()
    }

    /// Every stored event in `range`, in log order, with its LSN.
    pub fn replay(&self, range: ReplayRange) -> Replay {
        self.reader().replay(range)
    }

    /// The newest `n` events, oldest first.
    pub fn tail(&self, n: u64) -> Result<Vec<(u64, Event)>> {
        self.reader().tail(n)
    }

    /// Follow the log from `from_lsn` on (`None`: from the head, i.e. only
    /// new events); see [`Follower::poll`].
    pub fn follow(&self, from_lsn: Option<u64>) -> Follower {
        let reader = self.reader();
        let from = from_lsn.unwrap_or_else(|| reader.head().next_lsn);
        reader.follow(from)
    }

    /// The newest committed position and its chain digest.
    pub fn head(&self) -> Head {
        self.log().head()
    }

    /// Make everything appended durable, then check every frame and the
    /// integrity chain of the folder (see [`crate::verify`]).
    pub fn verify(&self) -> Result<VerifyReport> {
        self.flush()?;
        verify(self.log().dir(), None, |_, _| {})
    }

    /// Segments, events, bytes and time span (cheap: no event is read).
    pub fn stats(&self) -> Result<Stats> {
        self.reader().stats()
    }

    /// Events kept in the log but ignored by the run view (reads the whole
    /// log once).
    pub fn anomalies(&self) -> Result<Anomalies> {
        self.reader().anomalies(|_| {})
    }

    /// Full-text search over runs (tantivy's query syntax), best first, at
    /// most `limit`. [`FullTextError::NotRunning`] when search was not
    /// asked for or could not start.
    #[cfg(feature = "search")]
    pub fn search(
        &self,
        query: &str,
        filters: &crate::fulltext::Filters,
        limit: usize,
    ) -> std::result::Result<Vec<Hit>, FullTextError> {
        match &self.search {
            Some((ft, _)) => ft.search(query, filters, limit),
            None => Err(self.search_off()),
        }
    }

    /// Wait until everything appended so far is searchable, or `timeout`
    /// ends; true when caught up.
    #[cfg(feature = "search")]
    pub fn wait_searchable(
        &self,
        timeout: std::time::Duration,
    ) -> std::result::Result<bool, FullTextError> {
        self.flush()?;
        match &self.search {
            Some((_, ix)) => Ok(Self::lock(ix).wait_caught_up(timeout)),
            None => Err(self.search_off()),
        }
    }

    /// How far search is behind the log.
    #[cfg(feature = "search")]
    pub fn search_lag(&self) -> std::result::Result<Lag, FullTextError> {
        match &self.search {
            Some((_, ix)) => Ok(Self::lock(ix).lag()),
            None => Err(self.search_off()),
        }
    }

    /// Why search is not running although it was asked for.
    #[cfg(feature = "search")]
    pub fn search_error(&self) -> Option<&FullTextError> {
        self.search_error.as_ref()
    }

    #[cfg(feature = "search")]
    fn search_off(&self) -> FullTextError {
        let reason = match &self.search_error {
            Some(e) => e.to_string(),
            None => "it is switched off (StoreConfig::search)".to_string(),
        };
        FullTextError::NotRunning(reason)
    }

    pub fn counters(&self) -> StoreCounters {
        let c = self.log().counters();
        StoreCounters {
            appended: c.appended,
            dropped: c.dropped,
            rejected: c.rejected,
            durable_lsn: c.durable_lsn,
            queue_depth: c.queue_depth,
            queue_bytes: c.queue_bytes,
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
        // Full-text first: it commits what it has folded.
        #[cfg(feature = "search")]
        if let Some((_, ix)) = self.search.take() {
            ix.into_inner().unwrap_or_else(|p| p.into_inner()).stop();
        }
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
