//! `_native.Served`: the same append and query API as `_native.Store`,
//! served by `auditlog serve` over its Unix socket (the Rust client
//! `auditlog-client`, docs/protocol.md). `auditlog.connect(path)` wraps it.
//!
//! Differences from an open store, by design of a served log: every write
//! returns once the server has made it durable (there is nothing to
//! stage, so `wait` changes nothing); a write the server could not answer
//! is retried with the same idempotency key for `retry_for` seconds and is
//! stored once; search runs on the server (it indexes unless started with
//! `--no-search`). Every call releases the GIL while it waits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString, PyTuple};

use auditlog::event::json::parse_event;
use auditlog::{EncodedBatch, Event, Json, Page, ReplayRange, RunFinished, RunLog, RunStarted};
use auditlog_client::{Client, ClientConfig};

use crate::convert::{self, json_to_py};
use crate::errors::{self, IntoPy};
use crate::inner::{json_of, now_micros, ts_of};
use crate::options::filter;
use crate::store::MAX_BATCH_EVENTS;
use crate::time::{self, datetime, opt_micros};
use crate::views::{ErrorGroup, LogEntry, Run};

/// A log served by `auditlog serve`. Create it with `auditlog.connect(...)`.
#[pyclass(frozen, subclass, module = "auditlog._native")]
pub struct Served {
    socket: PathBuf,
    slot: Mutex<Option<Arc<Client>>>,
    closed: AtomicBool,
}

/// The Python exception of a conversion failure.
fn into_err(f: crate::failures::Failure) -> PyErr {
    f.err
}

impl Served {
    fn client(&self, py: Python<'_>) -> PyResult<Arc<Client>> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.clone().ok_or_else(|| errors::closed(py))
    }

    /// One event dict, parsed by the engine's rules (naming the field).
    fn event_of(py: Python<'_>, obj: &Bound<'_, PyAny>, index: Option<usize>) -> PyResult<Event> {
        let mut line = Vec::with_capacity(320);
        convert::event_line(py, obj, now_micros(), &mut line)
            .map_err(|f| into_err(crate::inner::fault_failure(py, f, index)))?;
        parse_event(&line).map_err(|e| errors::invalid_event(py, index, &e.field, &e.reason))
    }

    fn write(&self, py: Python<'_>, events: Vec<Event>) -> PyResult<()> {
        let c = self.client(py)?;
        py.detach(|| append_split(&c, &events)).py_err(py)
    }
}

/// Append as few requests as the server's size limit allows (each stored
/// once, all or nothing per request).
fn append_split(c: &Client, events: &[Event]) -> auditlog::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let batch = EncodedBatch::encode(events)?;
    if batch.bytes() <= c.max_request_bytes() || events.len() == 1 {
        return c.append_encoded(&batch, &c.new_key()).map(|_| ());
    }
    let (a, b) = events.split_at(events.len() / 2);
    append_split(c, a)?;
    append_split(c, b)
}

fn runs(v: Vec<auditlog::Run>) -> Vec<Run> {
    v.into_iter().map(Run::from).collect()
}

fn json_value<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &v.to_string())
}

#[pymethods]
impl Served {
    /// Connect to the server listening on `socket`. See `auditlog.connect`.
    #[new]
    #[pyo3(signature = (socket, *, retry_for = 30.0))]
    fn new(py: Python<'_>, socket: PathBuf, retry_for: f64) -> PyResult<Served> {
        if !(retry_for.is_finite() && retry_for >= 0.0) {
            return Err(errors::invalid_argument(
                py,
                format!("retry_for: {retry_for}; give seconds >= 0"),
            ));
        }
        let mut cfg = ClientConfig::new(&socket);
        cfg.retry_for = Duration::from_secs_f64(retry_for);
        let client = py.detach(|| Client::with_config(cfg)).py_err(py)?;
        Ok(Served {
            socket,
            slot: Mutex::new(Some(Arc::new(client))),
            closed: AtomicBool::new(false),
        })
    }

    /// The server's socket.
    #[getter]
    fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Always false: a served write raises what it could not store.
    #[getter]
    fn fire_and_forget(&self) -> bool {
        false
    }

    /// Append one event (a dict in the contract's shape); returns once the
    /// server made it durable (`wait` is accepted for the same signature).
    #[pyo3(signature = (event, *, wait = false))]
    fn append(&self, py: Python<'_>, event: &Bound<'_, PyAny>, wait: bool) -> PyResult<()> {
        let _ = wait;
        let ev = Self::event_of(py, event, None)?;
        self.write(py, vec![ev])
    }

    /// Append events as one unit (split only past the server's request
    /// size); returns the refused ones (non-strict).
    #[pyo3(signature = (events, *, strict = true, wait = false))]
    fn append_batch(
        &self,
        py: Python<'_>,
        events: &Bound<'_, PyAny>,
        strict: bool,
        wait: bool,
    ) -> PyResult<Vec<(usize, String)>> {
        let _ = wait;
        let mut good = Vec::new();
        let mut refused = Vec::new();
        for (index, item) in events.try_iter()?.enumerate() {
            if index >= MAX_BATCH_EVENTS {
                return Err(errors::invalid_argument(
                    py,
                    format!("append_batch takes at most {MAX_BATCH_EVENTS} events per call; split the batch"),
                ));
            }
            match Self::event_of(py, &item?, Some(index)) {
                Ok(ev) => good.push(ev),
                Err(e) if strict => return Err(e),
                Err(e) => refused.push((
                    index,
                    e.value(py).str().map(|s| s.to_string()).unwrap_or_default(),
                )),
            }
        }
        self.write(py, good)?;
        Ok(refused)
    }

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
        let start = RunStarted {
            skill_id,
            caller_id,
            channel_id,
            parent_run_id,
            inputs: json_of(py, inputs, "inputs", Json::empty_object()).map_err(into_err)?,
            dry_run,
        };
        let ts = ts_of(py, ts).map_err(into_err)?;
        let c = self.client(py)?;
        py.detach(|| c.start_run(run_id, ts, start)).py_err(py)
    }

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
        let log = RunLog {
            seq,
            event_type,
            payload: json_of(py, payload, "payload", Json::null()).map_err(into_err)?,
        };
        let ts = ts_of(py, ts).map_err(into_err)?;
        let c = self.client(py)?;
        py.detach(|| c.append_log(run_id, ts, log)).py_err(py)
    }

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
        let payload = PyDict::new(py);
        payload.set_item("tool", PyString::new(py, tool))?;
        payload.set_item("status", PyString::new(py, status))?;
        if let Some(et) = error_type {
            payload.set_item("error_type", PyString::new(py, et))?;
        }
        if let Some(d) = duration_ms {
            payload.set_item("duration_ms", PyFloat::new(py, d))?;
        }
        if let Some(extra) = fields {
            for (k, v) in extra.iter() {
                payload.set_item(k, v)?;
            }
        }
        self.log(
            py,
            run_id,
            "tool_call".into(),
            Some(payload.as_any()),
            seq,
            ts,
        )
    }

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
        let ts = ts_of(py, ts).map_err(into_err)?;
        let c = self.client(py)?;
        py.detach(|| c.finish_run(run_id, ts, finish)).py_err(py)
    }

    /// Everything acknowledged is durable already; asks the server to sync
    /// and returns the LSN one past the last durable event.
    fn flush(&self, py: Python<'_>) -> PyResult<u64> {
        let c = self.client(py)?;
        py.detach(|| c.flush()).py_err(py)
    }

    fn get_run(&self, py: Python<'_>, run_id: &str) -> PyResult<Option<Run>> {
        let c = self.client(py)?;
        Ok(py.detach(|| c.get_run(run_id)).py_err(py)?.map(Run::from))
    }

    fn list_logs(&self, py: Python<'_>, run_id: &str) -> PyResult<Vec<LogEntry>> {
        let c = self.client(py)?;
        let logs = py.detach(|| c.list_logs(run_id)).py_err(py)?;
        Ok(logs.into_iter().map(LogEntry::from).collect())
    }

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
        let c = self.client(py)?;
        Ok(runs(
            py.detach(|| c.list_runs(&f, Page { limit, offset }))
                .py_err(py)?,
        ))
    }

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
        let c = self.client(py)?;
        py.detach(|| c.count_runs(&f)).py_err(py)
    }

    #[pyo3(signature = (run_id, *, include_dry_run = false))]
    fn children(&self, py: Python<'_>, run_id: &str, include_dry_run: bool) -> PyResult<Vec<Run>> {
        let c = self.client(py)?;
        Ok(runs(
            py.detach(|| c.children(run_id, include_dry_run))
                .py_err(py)?,
        ))
    }

    fn chain(&self, py: Python<'_>, run_id: &str) -> PyResult<Vec<Run>> {
        let c = self.client(py)?;
        Ok(runs(py.detach(|| c.parent_chain(run_id)).py_err(py)?))
    }

    fn finished_before(&self, py: Python<'_>, before: &Bound<'_, PyAny>) -> PyResult<Vec<Run>> {
        let t = time::to_micros(py, before, "before")?;
        let c = self.client(py)?;
        Ok(runs(py.detach(|| c.finished_runs_before(t)).py_err(py)?))
    }

    #[pyo3(signature = (skills, *, include_failed = false))]
    fn last_run<'py>(
        &self,
        py: Python<'py>,
        skills: Vec<String>,
        include_failed: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let c = self.client(py)?;
        let found = py
            .detach(|| c.last_run_per_skill(&skills, include_failed))
            .py_err(py)?;
        let d = PyDict::new(py);
        for (skill, t) in found {
            match t {
                Some(us) => d.set_item(skill, datetime(py, us)?)?,
                None => d.set_item(skill, py.None())?,
            }
        }
        Ok(d)
    }

    #[pyo3(signature = (*, since = None, until = None))]
    fn tool_errors(
        &self,
        py: Python<'_>,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<ErrorGroup>> {
        let since = opt_micros(py, since, "since")?;
        let until = opt_micros(py, until, "until")?;
        let c = self.client(py)?;
        let groups = py.detach(|| c.tool_errors(since, until)).py_err(py)?;
        Ok(groups.into_iter().map(ErrorGroup::from).collect())
    }

    /// Retention on the server (it holds the writer lock); the report as a
    /// dict with instants as RFC 3339 strings.
    fn purge_older_than<'py>(
        &self,
        py: Python<'py>,
        cutoff: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cutoff = time::to_micros(py, cutoff, "cutoff")?;
        let c = self.client(py)?;
        let v = py.detach(|| c.purge_older_than(cutoff)).py_err(py)?;
        json_value(py, &v)
    }

    /// One page of events (dicts as `replay` prints them, `ts` a datetime)
    /// from `from_lsn`, and the LSN to go on from; with `wait_ms`, waits
    /// that long for a new event when there is none yet.
    #[pyo3(signature = (*, since = None, until = None, from_lsn = None, limit = 1000, wait_ms = None))]
    fn _replay_page<'py>(
        &self,
        py: Python<'py>,
        since: Option<&Bound<'_, PyAny>>,
        until: Option<&Bound<'_, PyAny>>,
        from_lsn: Option<u64>,
        limit: usize,
        wait_ms: Option<u64>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let range = ReplayRange {
            from_lsn,
            since: opt_micros(py, since, "since")?,
            until: opt_micros(py, until, "until")?,
        };
        let c = self.client(py)?;
        let (events, next) = py
            .detach(|| c.replay(range, limit, wait_ms.map(Duration::from_millis)))
            .py_err(py)?;
        let out = PyList::empty(py);
        let mut text = String::with_capacity(320);
        for (lsn, ev) in &events {
            text.clear();
            auditlog::event::json::write_event(ev, Some(*lsn), &mut text);
            let obj = json_to_py(py, &text)?;
            obj.set_item("ts", datetime(py, ev.ts)?)?;
            out.append(obj)?;
        }
        PyTuple::new(py, [out.into_any(), next.into_pyobject(py)?.into_any()])
    }

    /// The LSN one past the newest committed event.
    fn _head_lsn(&self, py: Python<'_>) -> PyResult<u64> {
        let c = self.client(py)?;
        let v = py.detach(|| c.counters()).py_err(py)?;
        Ok(v.get("head_lsn").and_then(|h| h.as_u64()).unwrap_or(0))
    }

    #[pyo3(signature = (*, expect = None))]
    fn verify<'py>(&self, py: Python<'py>, expect: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.client(py)?;
        let v = py.detach(|| c.verify(expect)).py_err(py)?;
        json_value(py, &v)
    }

    #[pyo3(signature = (*, anomalies = true))]
    fn stats<'py>(&self, py: Python<'py>, anomalies: bool) -> PyResult<Bound<'py, PyAny>> {
        let c = self.client(py)?;
        let (mut st, counters) = py
            .detach(|| -> auditlog::Result<_> { Ok((c.stats()?, c.counters()?)) })
            .py_err(py)?;
        if let Some(o) = st.as_object_mut() {
            if !anomalies {
                o.remove("anomalies");
            }
            o.insert("counters".into(), counters);
        }
        json_value(py, &st)
    }

    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.client(py)?;
        let v = py.detach(|| c.counters()).py_err(py)?;
        json_value(py, &v)
    }

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
        // The server waits up to `timeout` for its indexer first.
        let catch_up = Duration::from_secs_f64(if timeout.is_finite() {
            timeout.clamp(0.0, 600.0)
        } else {
            0.0
        });
        let filters = [
            ("skill", skill),
            ("caller", caller),
            ("channel", channel),
            ("status", status),
        ];
        let since = opt_micros(py, since, "since")?;
        let until = opt_micros(py, until, "until")?;
        let c = self.client(py)?;
        let hits = py
            .detach(|| c.search_filtered(query, limit, &filters, since, until, Some(catch_up)))
            .map_err(|e| match e {
                auditlog::Error::InvalidArgument(m) if m.contains("invalid search query") => {
                    errors::raise(py, "QuerySyntaxError", m, &[])
                }
                other => errors::to_py(py, other),
            })?;
        hits.into_iter()
            .map(|h| {
                Ok(crate::views::Hit {
                    run: Py::new(py, Run::from(h.run))?,
                    score: h.score,
                    snippet: h.snippet,
                })
            })
            .collect()
    }

    /// Let go of the connection (the server keeps running).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let _ = py;
        self.closed.store(true, Ordering::Release);
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "auditlog.ServedStore(socket={:?}{})",
            self.socket.display().to_string(),
            if self.closed() { ", closed" } else { "" }
        )
    }
}
