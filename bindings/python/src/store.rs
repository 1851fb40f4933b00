//! `_native.Store`: one open log (an [`AuditStore`]) shared by every
//! Python thread.
//!
//! Threads: the handle is `Sync`; each call reads the inner `Arc` from an
//! arc-swap slot (no lock, so nothing to deadlock with the GIL) and works
//! on a clone of it, or, for a single append, under the slot's guard.
//! `close` swaps the inner store out, so later calls see `ClosedError`,
//! and closes it once in-flight calls have let go of their clones and
//! guards.
//!
//! The GIL: turning Python objects into events needs it; everything that
//! may wait (a full queue, a receipt, a flush, a query, the disk) runs
//! detached from it, so other Python threads go on meanwhile. A single
//! append into a queue with room only hands an encoded frame to the
//! writer's queue, and keeps the GIL: releasing and taking it back would
//! cost more than the append.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use auditlog::event::json::parse_event;
use auditlog::internals::frame::FRAME_HEADER;
use auditlog::{
    EncodedBatch, Event, Json, Page, Receipt, RunFinished, RunLog, RunStarted, StoreConfig,
};

use crate::batch::{self, BatchError};
use crate::calls;
use crate::convert;
use crate::direct;
use crate::errors::{self, IntoPy};
use crate::failures::{Failure, Failures, Reason};
use crate::faults::Faults;
use crate::fork;
use crate::inner::{
    close_inner, engine_failure, fault_failure, json_of, lost_failure, now_micros, open_inner,
    ts_of, Inner,
};
use crate::iter::{ReplayIter, TailIter};
use crate::options::{filter, parse_durability, parse_on_full, parse_redaction};
use crate::stage::Stager;
use crate::stats;
use crate::time::{self, opt_micros};
use crate::views::{ErrorGroup, LogEntry, Run};

/// Most events one `append_batch` call takes (they are all checked before
/// any is stored, so they are held in memory together).
pub const MAX_BATCH_EVENTS: usize = 100_000;

/// An open audit log. Create it with `auditlog.open(...)`.
#[pyclass(frozen, subclass, module = "auditlog._native")]
pub struct Store {
    generation: u64,
    /// The log folder, canonical (fork clean-up compares it with
    /// /proc/self/fd links).
    dir: PathBuf,
    slot: ArcSwapOption<Inner>,
    closed: Arc<AtomicBool>,
    fire_and_forget: bool,
    failures: Failures,
}
impl Store {
    fn alive(&self, py: Python<'_>) -> Result<Arc<Inner>, Failure> {
        self.with_alive(py, |inner| Ok(Arc::clone(inner)))
    }

    /// Run `f` on the open store without taking a reference count: under
    /// a guard of the slot (arc-swap's: two atomic steps where a mutex and
    /// an `Arc` clone took four, 3-4% of a single append before py29).
    /// `close` swaps the store out, which turns every guard still held
    /// into a reference, and then waits, as before, until all have let go.
    fn with_alive<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Arc<Inner>) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        if fork::generation() != self.generation {
            return Err(Failure::new(
                Reason::Forked,
                1,
                errors::forked(py, &self.dir),
            ));
        }
        match &*self.slot.load() {
            Some(inner) => f(inner),
            None => Err(Failure::new(Reason::Closed, 1, errors::closed(py))),
        }
    }

    /// For queries: the inner store or the exception.
    fn open_inner(&self, py: Python<'_>) -> PyResult<Arc<Inner>> {
        self.alive(py).map_err(|f| f.err)
    }

    /// In fire-and-forget mode a failure is counted, not raised.
    fn settle<T>(
        &self,
        py: Python<'_>,
        r: Result<T, Failure>,
        fallback: impl FnOnce() -> T,
    ) -> PyResult<T> {
        match r {
            Ok(v) => Ok(v),
            Err(f) if self.fire_and_forget => {
                self.failures.record(py, &f);
                Ok(fallback())
            }
            Err(f) => Err(f.err),
        }
    }

    fn append_one(
        &self,
        py: Python<'_>,
        event: &Bound<'_, PyAny>,
        wait: bool,
    ) -> Result<(), Failure> {
        self.with_alive(py, |inner| append_one_to(py, inner, event, wait))
    }

    /// Convert the batch's dicts to JSON lines (with the GIL), then parse,
    /// encode and append them without it.
    fn append_many(
        &self,
        py: Python<'_>,
        events: &Bound<'_, PyAny>,
        strict: bool,
        wait: bool,
    ) -> Result<Vec<(usize, String)>, Failure> {
        let inner = self.alive(py)?;
        if let Some((e, n)) = inner.pending.take_failure() {
            let called = events.len().map_or(0, |l| l as u64);
            return Err(engine_failure(py, e, n + called));
        }
        let now = now_micros();
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut lines: Vec<(usize, usize, usize)> = Vec::new();
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let items = events
            .try_iter()
            .map_err(|e| Failure::new(Reason::Invalid, 1, e))?;
        for (index, item) in items.enumerate() {
            if index >= MAX_BATCH_EVENTS {
                return Err(Failure::new(
                    Reason::Invalid,
                    index as u64,
                    errors::invalid_argument(
                        py,
                        format!("append_batch takes at most {MAX_BATCH_EVENTS} events per call; split the batch"),
                    ),
                ));
            }
            let item = item.map_err(|e| Failure::new(Reason::Invalid, index as u64, e))?;
            let start = buf.len();
            match convert::event_line(py, &item, now, &mut buf) {
                Ok(()) => lines.push((index, start, buf.len())),
                Err(f) => {
                    buf.truncate(start);
                    let failure = fault_failure(py, f, Some(index));
                    if strict {
                        return Err(Failure {
                            events: (lines.len() + 1) as u64,
                            ..failure
                        });
                    }
                    rejected.push((
                        index,
                        failure
                            .err
                            .value(py)
                            .str()
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                    ));
                }
            }
        }
        let total = lines.len() + rejected.len();
        let lines = batch::Lines { buf, spans: lines };
        let outcome = py.detach(|| match &inner.stager {
            Some(st) if !wait => batch::stage_batch(&inner, st, lines, strict),
            Some(st) => st
                .ordered(&inner.store, || {
                    batch::store_batch(&inner, lines, strict, wait)
                })
                .unwrap_or_else(|(e, n)| Err(BatchError::Engine(e, n + total as u64))),
            None => batch::store_batch(&inner, lines, strict, wait),
        });
        match outcome {
            Ok(more) => {
                for (index, field, reason) in more {
                    rejected.push((index, format!("event {index}: field `{field}`: {reason}")));
                }
                rejected.sort_by_key(|r| r.0);
                if self.fire_and_forget && !rejected.is_empty() {
                    let first = &rejected[0].1;
                    let f = Failure::new(
                        Reason::Invalid,
                        rejected.len() as u64,
                        errors::invalid_argument(py, first.clone()),
                    );
                    self.failures.record(py, &f);
                }
                Ok(rejected)
            }
            Err(BatchError::Invalid((index, field, reason))) => Err(Failure::new(
                Reason::Invalid,
                total as u64,
                errors::invalid_event(py, Some(index), &field, &reason),
            )),
            Err(BatchError::Engine(e, lost)) => Err(engine_failure(py, e, lost)),
        }
    }
}

#[pymethods]
impl Store {
    /// Open (or create) the log in `dir`. See `auditlog.open`.
    #[new]
    #[pyo3(signature = (
        dir, *, durability = None, create = true, queue_capacity = 16384, on_full = "block",
        segment_max_bytes = 268435456, max_batch_bytes = 1048576, redaction = None,
        search = false, fire_and_forget = false, _faults = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        dir: PathBuf,
        durability: Option<&Bound<'_, PyAny>>,
        create: bool,
        queue_capacity: usize,
        on_full: &str,
        segment_max_bytes: u64,
        max_batch_bytes: usize,
        redaction: Option<&Bound<'_, PyAny>>,
        search: bool,
        fire_and_forget: bool,
        _faults: Option<PyRef<'_, Faults>>,
    ) -> PyResult<Store> {
        let mut cfg = StoreConfig::new(&dir);
        // Test-only (faults.rs): scripted I/O failures for the writer.
        cfg.log.io.faults = _faults.map(|f| f.injector());
        cfg.log.durability = parse_durability(py, durability)?;
        cfg.log.create = create;
        cfg.log.queue_capacity = queue_capacity;
        cfg.log.on_full = parse_on_full(py, on_full)?;
        cfg.log.segment_max_bytes = segment_max_bytes;
        cfg.log.max_batch_bytes = max_batch_bytes;
        if let Some(r) = redaction.filter(|r| !r.is_none()) {
            cfg.log.redaction = Some(Arc::new(parse_redaction(py, r)?));
        }
        #[cfg(not(feature = "search"))]
        if search {
            return Err(errors::unsupported(
                py,
                "this build of auditlog has no full-text search; build the extension with the `search` feature (bindings/python/README.md)",
            ));
        }
        let inner = Arc::new(py.detach(|| open_inner(cfg, search)).py_err(py)?);
        if let Err(e) = Stager::start(&inner) {
            let _ = py.detach(|| close_inner(inner));
            return Err(errors::to_py(
                py,
                auditlog::Error::io("starting the stage flusher thread", e),
            ));
        }
        let canonical = std::fs::canonicalize(&dir).unwrap_or(dir);
        Ok(Store {
            generation: fork::generation(),
            dir: canonical,
            slot: ArcSwapOption::from(Some(inner)),
            closed: Arc::new(AtomicBool::new(false)),
            fire_and_forget,
            failures: Failures::default(),
        })
    }

    /// The log folder.
    #[getter]
    fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// True once closed.
    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether failed appends are counted instead of raised.
    #[getter]
    fn fire_and_forget(&self) -> bool {
        self.fire_and_forget
    }

    /// Append one event (a dict in the contract's shape); returns at once.
    #[pyo3(signature = (event, *, wait = false))]
    fn append(&self, py: Python<'_>, event: &Bound<'_, PyAny>, wait: bool) -> PyResult<()> {
        let r = self.append_one(py, event, wait);
        self.settle(py, r, || ())
    }

    /// Append events as one unit; returns the refused ones (non-strict).
    #[pyo3(signature = (events, *, strict = true, wait = false))]
    fn append_batch(
        &self,
        py: Python<'_>,
        events: &Bound<'_, PyAny>,
        strict: bool,
        wait: bool,
    ) -> PyResult<Vec<(usize, String)>> {
        let r = self.append_many(py, events, strict, wait);
        self.settle(py, r, Vec::new)
    }

    /// Record a run's start.
    #[pyo3(signature = (
        run_id, *, skill_id = String::new(), caller_id = String::new(),
        channel_id = String::new(), parent_run_id = String::new(), inputs = None,
        dry_run = false, ts = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn start_run(
        &self,
        py: Python<'_>,
        run_id: &str,
        skill_id: String,
        caller_id: String,
        channel_id: String,
        parent_run_id: String,
        inputs: Option<&Bound<'_, PyAny>>,
        dry_run: bool,
        ts: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let r = (|| {
            let inner = self.alive(py)?;
            let start = RunStarted {
                skill_id,
                caller_id,
                channel_id,
                parent_run_id,
                inputs: json_of(py, inputs, "inputs", Json::empty_object())?,
                dry_run,
            };
            let ts = ts_of(py, ts)?;
            inner
                .ordered(py, |s| s.start_run(run_id, ts, start))
                .map_err(|l| lost_failure(py, l))
        })();
        self.settle(py, r, || ())
    }

    /// Record a log line of a run.
    #[pyo3(signature = (run_id, event_type, payload = None, *, seq = 0, ts = None))]
    fn log(
        &self,
        py: Python<'_>,
        run_id: &str,
        event_type: String,
        payload: Option<&Bound<'_, PyAny>>,
        seq: u64,
        ts: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let r = (|| {
            let inner = self.alive(py)?;
            let log = RunLog {
                seq,
                event_type,
                payload: json_of(py, payload, "payload", Json::null())?,
            };
            let ts = ts_of(py, ts)?;
            inner
                .ordered(py, |s| s.append_log(run_id, ts, log))
                .map_err(|l| lost_failure(py, l))
        })();
        self.settle(py, r, || ())
    }

    /// Record a tool call: a `tool_call` event, of run `run_id` or ("")
    /// of no run. The typed fields (`channel_id`, `caller_id`, `engine`,
    /// `http_status`, ...) are keywords; any other keyword joins
    /// `payload`. `seq` is accepted for older callers and unused (calls
    /// order by time).
    #[pyo3(signature = (
        run_id, tool, *, status = "ok", error_type = None, duration_ms = None, seq = 0,
        ts = None, **fields
    ))]
    #[allow(clippy::too_many_arguments)]
    fn tool_call(
        &self,
        py: Python<'_>,
        run_id: &str,
        tool: &str,
        status: &str,
        error_type: Option<&str>,
        duration_ms: Option<f64>,
        seq: u64,
        ts: Option<&Bound<'_, PyAny>>,
        fields: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let _ = seq;
        let args = calls::CallArgs {
            run_id,
            tool,
            status,
            error_type,
            duration_ms,
            ts,
            fields,
        };
        let r = calls::event(py, &args)
            .map_err(|e| Failure::new(Reason::Invalid, 1, e))
            .and_then(|ev| self.append_one(py, ev.as_any(), false));
        self.settle(py, r, || ())
    }

    /// Record a run's finish; `NotFoundError` (and nothing written) when
    /// the run was never started.
    #[pyo3(signature = (
        run_id, *, status = "ok".to_string(), output = String::new(), error = String::new(),
        tool_calls = 0, runtime_seconds = 0.0, input_tokens = 0, output_tokens = 0,
        thinking_tokens = 0, ts = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn finish_run(
        &self,
        py: Python<'_>,
        run_id: &str,
        status: String,
        output: String,
        error: String,
        tool_calls: u64,
        runtime_seconds: f64,
        input_tokens: u64,
        output_tokens: u64,
        thinking_tokens: u64,
        ts: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let r = (|| {
            let inner = self.alive(py)?;
            let finish = RunFinished {
                status,
                output,
                error,
                tool_calls,
                runtime_seconds,
                input_tokens,
                output_tokens,
                thinking_tokens,
            };
            let ts = ts_of(py, ts)?;
            // An unknown id is looked up in the indexes (and may flush):
            // always without the GIL, after anything staged (its start).
            py.detach(|| match &inner.stager {
                Some(st) => st
                    .ordered(&inner.store, || inner.store.finish_run(run_id, ts, finish))
                    .and_then(|r| r.map_err(|e| (e, 1))),
                None => inner
                    .store
                    .finish_run(run_id, ts, finish)
                    .map_err(|e| (e, 1)),
            })
            .map_err(|l| lost_failure(py, l))
        })();
        self.settle(py, r, || ())
    }

    /// Make everything appended so far durable and visible to queries;
    /// returns the LSN one past the last durable event.
    fn flush(&self, py: Python<'_>) -> PyResult<u64> {
        let inner = self.open_inner(py)?;
        let (lost, flushed) = py.detach(|| {
            let drained = match &inner.stager {
                Some(st) => st.drain(&inner.store).err(),
                None => None,
            };
            let flushed = inner.store.flush();
            // Every append before this call is resolved now: a write that
            // failed after its append returned is reported here.
            let late = inner.pending.settle();
            let lost = match (drained, late) {
                (Some((e, n)), Some((_, m))) => Some((e, n + m)),
                (a, b) => a.or(b),
            };
            (lost, flushed)
        });
        // Earlier appends' failures first (they say which events were
        // lost); counted, not raised, in fire-and-forget mode.
        if let Some(l) = lost {
            self.settle(py, Err(lost_failure(py, l)), || ())?;
        }
        flushed.py_err(py)
    }

    /// One run, or None.
    fn get_run(&self, py: Python<'_>, run_id: &str) -> PyResult<Option<Run>> {
        let inner = self.open_inner(py)?;
        let r = py.detach(|| inner.store.get_run(run_id)).py_err(py)?;
        Ok(r.map(Run::from))
    }

    /// The run's logs in seq order.
    fn list_logs(&self, py: Python<'_>, run_id: &str) -> PyResult<Vec<LogEntry>> {
        let inner = self.open_inner(py)?;
        let logs = py.detach(|| inner.store.list_logs(run_id)).py_err(py)?;
        Ok(logs.into_iter().map(LogEntry::from).collect())
    }

    /// Runs matching every filter given, newest first.
    #[pyo3(signature = (
        *, skill = None, caller = None, channel = None, status = None, parent = None,
        top_level = false, since = None, until = None, include_dry_run = false,
        limit = None, offset = 0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn runs(
        &self,
        py: Python<'_>,
        skill: Option<String>,
        caller: Option<String>,
        channel: Option<String>,
        status: Option<String>,
        parent: Option<String>,
        top_level: bool,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
        include_dry_run: bool,
        limit: Option<usize>,
        offset: usize,
    ) -> PyResult<Vec<Run>> {
        let f = filter(
            py,
            skill,
            caller,
            channel,
            status,
            parent,
            top_level,
            since,
            until,
            include_dry_run,
        )?;
        let page = Page { limit, offset };
        let inner = self.open_inner(py)?;
        let runs = py.detach(|| inner.store.list_runs(&f, page)).py_err(py)?;
        Ok(runs.into_iter().map(Run::from).collect())
    }

    /// How many runs match every filter given.
    #[pyo3(signature = (
        *, skill = None, caller = None, channel = None, status = None, parent = None,
        top_level = false, since = None, until = None, include_dry_run = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn count(
        &self,
        py: Python<'_>,
        skill: Option<String>,
        caller: Option<String>,
        channel: Option<String>,
        status: Option<String>,
        parent: Option<String>,
        top_level: bool,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
        include_dry_run: bool,
    ) -> PyResult<u64> {
        let f = filter(
            py,
            skill,
            caller,
            channel,
            status,
            parent,
            top_level,
            since,
            until,
            include_dry_run,
        )?;
        let inner = self.open_inner(py)?;
        py.detach(|| inner.store.count_runs(&f)).py_err(py)
    }

    /// Runs whose parent is `run_id`, newest first.
    #[pyo3(signature = (run_id, *, include_dry_run = false))]
    fn children(&self, py: Python<'_>, run_id: &str, include_dry_run: bool) -> PyResult<Vec<Run>> {
        let inner = self.open_inner(py)?;
        let runs = py
            .detach(|| inner.store.children(run_id, include_dry_run))
            .py_err(py)?;
        Ok(runs.into_iter().map(Run::from).collect())
    }

    /// The run, its parent, its parent's parent...; NotFoundError if unknown.
    fn chain(&self, py: Python<'_>, run_id: &str) -> PyResult<Vec<Run>> {
        let inner = self.open_inner(py)?;
        let runs = py.detach(|| inner.store.parent_chain(run_id)).py_err(py)?;
        Ok(runs.into_iter().map(Run::from).collect())
    }

    /// Finished runs with finished_at before `before`, newest first.
    fn finished_before(&self, py: Python<'_>, before: &Bound<'_, PyAny>) -> PyResult<Vec<Run>> {
        let t = time::to_micros(py, before, "before")?;
        let inner = self.open_inner(py)?;
        let runs = py
            .detach(|| inner.store.finished_runs_before(t))
            .py_err(py)?;
        Ok(runs.into_iter().map(Run::from).collect())
    }

    /// The latest started_at per skill, in the order given (None: no run).
    #[pyo3(signature = (skills, *, include_failed = false))]
    fn last_run<'py>(
        &self,
        py: Python<'py>,
        skills: Vec<String>,
        include_failed: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let inner = self.open_inner(py)?;
        let found = py
            .detach(|| inner.store.last_run_per_skill(&skills, include_failed))
            .py_err(py)?;
        let d = PyDict::new(py);
        for (skill, t) in found {
            match t {
                Some(us) => d.set_item(skill, time::datetime(py, us)?)?,
                None => d.set_item(skill, py.None())?,
            }
        }
        Ok(d)
    }

    /// Failing tool calls grouped by (channel, tool, error type).
    #[pyo3(signature = (*, since = None, until = None))]
    fn tool_errors(
        &self,
        py: Python<'_>,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<ErrorGroup>> {
        let since = opt_micros(py, since, "since")?;
        let until = opt_micros(py, until, "until")?;
        let inner = self.open_inner(py)?;
        let groups = py
            .detach(|| inner.store.tool_errors(since, until))
            .py_err(py)?;
        Ok(groups.into_iter().map(ErrorGroup::from).collect())
    }

    /// Tool calls, with or without a run (docs/tool-calls.md), as dicts
    /// (as `auditlog calls` prints them), newest first unless
    /// `oldest_first`; `cursor` is `"TS,LSN"` of the last call of the
    /// previous page.
    #[pyo3(signature = (
        *, tool = None, engine = None, session = None, agent = None, workspace = None,
        status = None, error_type = None, run_id = None, since = None, until = None,
        include_dry_run = false, oldest_first = false, limit = None, cursor = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn calls<'py>(
        &self,
        py: Python<'py>,
        tool: Option<String>,
        engine: Option<String>,
        session: Option<String>,
        agent: Option<String>,
        workspace: Option<String>,
        status: Option<String>,
        error_type: Option<String>,
        run_id: Option<String>,
        since: Option<&Bound<'py, PyAny>>,
        until: Option<&Bound<'py, PyAny>>,
        include_dry_run: bool,
        oldest_first: bool,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let f = calls::filter(
            py,
            calls::FilterArgs {
                tool,
                engine,
                session,
                agent,
                workspace,
                status,
                error_type,
                run_id,
                since,
                until,
                include_dry_run,
            },
        )?;
        let page = calls::page(py, limit, cursor, oldest_first)?;
        let inner = self.open_inner(py)?;
        let found = py.detach(|| inner.store.calls(&f, page)).py_err(py)?;
        calls::to_py(py, &found)
    }

    /// How many tool calls match; with `by` (`tool`, `engine`, `session`,
    /// `agent`, `workspace`, `status`, `error_type`, `run_id`), a list of
    /// (value, count), most first.
    #[pyo3(signature = (
        *, by = None, tool = None, engine = None, session = None, agent = None,
        workspace = None, status = None, error_type = None, run_id = None, since = None,
        until = None, include_dry_run = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn count_calls<'py>(
        &self,
        py: Python<'py>,
        by: Option<&str>,
        tool: Option<String>,
        engine: Option<String>,
        session: Option<String>,
        agent: Option<String>,
        workspace: Option<String>,
        status: Option<String>,
        error_type: Option<String>,
        run_id: Option<String>,
        since: Option<&Bound<'py, PyAny>>,
        until: Option<&Bound<'py, PyAny>>,
        include_dry_run: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let f = calls::filter(
            py,
            calls::FilterArgs {
                tool,
                engine,
                session,
                agent,
                workspace,
                status,
                error_type,
                run_id,
                since,
                until,
                include_dry_run,
            },
        )?;
        let inner = self.open_inner(py)?;
        match by {
            None => {
                let n = py.detach(|| inner.store.count_calls(&f)).py_err(py)?;
                Ok(n.into_pyobject(py)?.into_any())
            }
            Some(by) => {
                let key = calls::key(py, by)?;
                let groups = py
                    .detach(|| inner.store.count_calls_by(&f, key))
                    .py_err(py)?;
                Ok(groups.into_pyobject(py)?.into_any())
            }
        }
    }

    /// Drop whole segments whose newest event is older than `cutoff`.
    fn purge_older_than<'py>(
        &self,
        py: Python<'py>,
        cutoff: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let cutoff = time::to_micros(py, cutoff, "cutoff")?;
        let inner = self.open_inner(py)?;
        let rep = py
            .detach(|| inner.store.purge_older_than(cutoff))
            .py_err(py)?;
        stats::retention_dict(py, &rep)
    }

    /// Every stored event in log order, as dicts (with `lsn`).
    #[pyo3(signature = (*, since = None, until = None, from_lsn = None))]
    fn replay(
        &self,
        py: Python<'_>,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
        from_lsn: Option<u64>,
    ) -> PyResult<ReplayIter> {
        let range = auditlog::ReplayRange {
            from_lsn,
            since: opt_micros(py, since, "since")?,
            until: opt_micros(py, until, "until")?,
        };
        let inner = self.open_inner(py)?;
        let reader = inner.store.log().reader();
        Ok(ReplayIter::new(
            self.generation,
            self.dir.clone(),
            reader.replay(range),
        ))
    }

    /// The newest `n` events, then (with `follow`) new ones as they come.
    #[pyo3(signature = (n = 10, *, follow = false, idle_timeout = None))]
    fn tail(
        &self,
        py: Python<'_>,
        n: u64,
        follow: bool,
        idle_timeout: Option<f64>,
    ) -> PyResult<TailIter> {
        let inner = self.open_inner(py)?;
        let reader = inner.store.log().reader();
        let idle = match idle_timeout {
            Some(s) if !(s.is_finite() && s >= 0.0) => {
                return Err(errors::invalid_argument(
                    py,
                    format!("idle_timeout: {s}; give seconds >= 0"),
                ))
            }
            Some(s) => Some(Duration::from_secs_f64(s)),
            None => None,
        };
        Ok(TailIter::new(
            self.generation,
            self.dir.clone(),
            reader,
            n,
            follow,
            idle,
            self.closed.clone(),
        ))
    }

    /// Check every frame and the integrity chain (read-only, beside the
    /// writer). `expect`: a head digest (hex) anchored earlier.
    #[pyo3(signature = (*, expect = None))]
    fn verify<'py>(&self, py: Python<'py>, expect: Option<&str>) -> PyResult<Bound<'py, PyDict>> {
        self.open_inner(py)?;
        stats::verify(py, &self.dir, expect)
    }

    /// Segments, events, bytes, time span, LSNs, drops and (by default)
    /// the anomalies a replay finds.
    #[pyo3(signature = (*, anomalies = true))]
    fn stats<'py>(&self, py: Python<'py>, anomalies: bool) -> PyResult<Bound<'py, PyDict>> {
        let inner = self.open_inner(py)?;
        let d = stats::stats(py, &inner.store, anomalies)?;
        d.set_item("counters", self.counters(py)?)?;
        d.set_item("failures", self.failures.to_dict(py)?)?;
        Ok(d)
    }

    /// Operator counters: appended, dropped, rejected, durable_lsn,
    /// queue_depth, skipped, staged, stage_full, stage_full_drained,
    /// failures.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let inner = self.open_inner(py)?;
        let c = inner.store.counters();
        let d = PyDict::new(py);
        d.set_item("appended", c.appended)?;
        d.set_item("dropped", c.dropped)?;
        d.set_item("rejected", c.rejected)?;
        d.set_item("durable_lsn", c.durable_lsn)?;
        d.set_item("queue_depth", c.queue_depth)?;
        d.set_item("skipped", c.skipped)?;
        d.set_item("staged", inner.stager.as_ref().map_or(0, Stager::staged))?;
        let (full, drained) = inner.stager.as_ref().map_or((0, 0), Stager::full_counts);
        d.set_item("stage_full", full)?;
        d.set_item("stage_full_drained", drained)?;
        d.set_item("failures", c.failures + self.failures.total())?;
        Ok(d)
    }

    /// Events not stored in fire-and-forget mode, per reason.
    fn failures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.failures.to_dict(py)
    }

    /// Full-text search over runs (the `search` build with `search=True`).
    #[pyo3(signature = (
        query, *, limit = 20, skill = None, caller = None, channel = None, status = None,
        since = None, until = None, timeout = 10.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn search(
        &self,
        py: Python<'_>,
        query: &str,
        limit: usize,
        skill: Option<String>,
        caller: Option<String>,
        channel: Option<String>,
        status: Option<String>,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
        timeout: f64,
    ) -> PyResult<Vec<crate::views::Hit>> {
        let since = opt_micros(py, since, "since")?;
        let until = opt_micros(py, until, "until")?;
        let inner = self.open_inner(py)?;
        #[cfg(feature = "search")]
        {
            let filters = auditlog::fulltext::Filters {
                skill,
                caller,
                channel,
                status,
                since,
                until,
            };
            crate::search::search(py, &inner, query, &filters, limit, timeout)
        }
        #[cfg(not(feature = "search"))]
        {
            let _ = (
                inner, query, limit, skill, caller, channel, status, since, until, timeout,
            );
            Err(errors::unsupported(
                py,
                "this build of auditlog has no full-text search; build the extension with the `search` feature",
            ))
        }
    }

    /// Flush, stop the background threads and release the log. Idempotent.
    /// In a forked child the inherited handle is only let go of (the
    /// parent still owns the log).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if fork::generation() != self.generation {
            self.closed.store(true, Ordering::Release);
            return Ok(());
        }
        let taken = self.slot.swap(None);
        let Some(arc) = taken else {
            return Ok(());
        };
        self.closed.store(true, Ordering::Release);
        // In fire-and-forget mode what closing could not store is counted
        // (and logged), not raised.
        let r = py
            .detach(move || close_inner(arc))
            .map_err(|l| lost_failure(py, l));
        self.settle(py, r, || ())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// Called by the package's after-fork hook in a child: close the
    /// descriptors this inherited handle holds (the writer lock among
    /// them). Returns how many were closed.
    fn _disown_after_fork(&self) -> usize {
        if fork::generation() == self.generation {
            return 0;
        }
        self.closed.store(true, Ordering::Release);
        fork::close_inherited_fds(&self.dir)
    }

    /// The generation of forks this handle was opened in (for tests).
    #[getter]
    fn _generation(&self) -> u64 {
        self.generation
    }

    fn __repr__(&self) -> String {
        format!(
            "<auditlog.Store {} {}>",
            self.dir.display(),
            if self.closed.load(Ordering::Acquire) {
                "closed"
            } else {
                "open"
            }
        )
    }
}
impl Drop for Store {
    fn drop(&mut self) {
        let slot = self.slot.swap(None);
        if let Some(inner) = slot {
            if fork::generation() != self.generation {
                // Inherited through fork: its threads are not in this
                // process; dropping it would join them. Leak it.
                std::mem::forget(inner);
            } else {
                // Not closed: append what is staged and stop the flusher
                // (which holds a reference); dropping the last reference
                // then stops the indexers and the writer, which drains its
                // queue. (No call is in flight: each holds the object.)
                if let Some(st) = &inner.stager {
                    let _ = st.stop(&inner.store);
                }
                drop(inner);
            }
        }
    }
}

/// `_native.verify_dir(dir, expect=None)`: verify a log folder, read-only.
#[pyfunction]
#[pyo3(signature = (dir, *, expect = None))]
pub fn verify_dir<'py>(
    py: Python<'py>,
    dir: PathBuf,
    expect: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    stats::verify(py, &dir, expect)
}

/// [`Store::append_one`] into the open store `inner`.
fn append_one_to(
    py: Python<'_>,
    inner: &Arc<Inner>,
    event: &Bound<'_, PyAny>,
    wait: bool,
) -> Result<(), Failure> {
    if let Some((e, n)) = inner.pending.take_failure() {
        return Err(engine_failure(py, e, n + 1));
    }
    // Built in this thread's reused event (no allocation per field).
    let staged = direct::with_scratch(|scratch| -> Result<Option<Receipt>, Failure> {
        let (ev, bytes) = checked_event(py, event, scratch)?;
        if let Some(st) = inner.stager.as_ref().filter(|_| !wait) {
            let full = st.push(ev, bytes).map_err(|l| lost_failure(py, l))?;
            if full {
                py.detach(|| st.relieve(&inner.store))
                    .map_err(|l| lost_failure(py, l))?;
            }
            return Ok(None);
        }
        inner
            .ordered(py, |s| {
                let redaction = s.log().redaction().cloned();
                EncodedBatch::encode_parsed(std::slice::from_ref(&*ev), redaction.as_ref())
                    .and_then(|b| s.append_encoded(b))
            })
            .map(Some)
            .map_err(|l| lost_failure(py, l))
    })?;
    let Some(receipt) = staged else {
        return Ok(());
    };
    if wait {
        py.detach(|| receipt.wait())
            .map_err(|e| engine_failure(py, e, 1))?;
    } else {
        inner.pending.track(receipt, 1);
    }
    Ok(())
}

/// An appended dict as a checked event in one of `scratch`'s events, and
/// the JSON size the stage counts for it: straight from the dict when it
/// is plainly valid (direct.rs), else through the line path (dict to JSON
/// line, the engine's parser), which stores the same event or raises the
/// ValueError naming the field.
fn checked_event<'s>(
    py: Python<'_>,
    event: &Bound<'_, PyAny>,
    scratch: &'s mut direct::Scratch,
) -> Result<(&'s mut Event, usize), Failure> {
    if let Some(built) = direct::event_into(event, now_micros, scratch) {
        return Ok((scratch.event(built), built.bytes));
    }
    let (ev, bytes) = line_event(py, event, now_micros())?;
    let out = scratch.line();
    *out = ev;
    Ok((out, bytes))
}

/// The line path of [`checked_event`].
fn line_event(
    py: Python<'_>,
    event: &Bound<'_, PyAny>,
    now: i64,
) -> Result<(Event, usize), Failure> {
    let mut line = Vec::with_capacity(320);
    convert::event_line(py, event, now, &mut line).map_err(|f| fault_failure(py, f, None))?;
    let ev = parse_event(&line).map_err(|e| {
        Failure::new(
            Reason::Invalid,
            1,
            errors::invalid_event(py, None, &e.field, &e.reason),
        )
    })?;
    Ok((ev, line.len()))
}

/// TEST-ONLY (tests/test_direct.py): the stored bytes (the engine's
/// encoding) of the event `append(event)` would store, made by the fast
/// path (`None` when it declines) or by the line path (raising what
/// `append` raises), with `now` for a missing `ts`; `encode=False` only
/// converts (and answers `b""`).
#[pyfunction]
#[pyo3(name = "_event_bytes", signature = (event, *, fast, now = 0, encode = true))]
pub fn event_bytes_py<'py>(
    py: Python<'py>,
    event: &Bound<'py, PyAny>,
    fast: bool,
    now: i64,
    encode: bool,
) -> PyResult<Option<Bound<'py, pyo3::types::PyBytes>>> {
    if fast {
        // As a staged append makes them: in this thread's reused event,
        // encoded one at a time into a batch (whose frame is cut off).
        return direct::with_scratch(|scratch| {
            let Some(built) = direct::event_into(event, || now, scratch) else {
                return Ok(None);
            };
            let ev = scratch.event(built);
            if !encode {
                return Ok(Some(pyo3::types::PyBytes::new(py, b"")));
            }
            let mut b = auditlog::BatchBuilder::default();
            b.push_checked(ev)
                .map_err(|e| errors::invalid_argument(py, e.to_string()))?;
            let batch = b.finish();
            let body = batch.frames().get(FRAME_HEADER + 1..).unwrap_or_default();
            Ok(Some(pyo3::types::PyBytes::new(py, body)))
        });
    }
    let ev = line_event(py, event, now).map_err(|f| f.err)?.0;
    let mut out = Vec::new();
    if !encode {
        // For timing the conversion alone (bench/append_cost.py).
        return Ok(Some(pyo3::types::PyBytes::new(py, &out)));
    }
    auditlog::internals::codec::encode_event(&ev, &mut out)
        .map_err(|e| errors::invalid_argument(py, e.to_string()))?;
    Ok(Some(pyo3::types::PyBytes::new(py, &out)))
}
