//! What queries return: small immutable objects in the contract's shape.
//! They keep the engine's values and convert on attribute access (instants
//! to UTC `datetime`s, stored JSON to Python objects), so a query that
//! returns thousands of runs pays only for what the caller reads.
//! `to_dict()` gives the contract's JSON object as a dict.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::json_to_py;
use crate::time::datetime;

/// A run (docs/contract.md, "The run view"): its start and, once finished, its finish.
#[pyclass(frozen, eq, skip_from_py_object, module = "auditlog._native")]
#[derive(Clone, PartialEq)]
pub struct Run {
    #[pyo3(get)]
    pub id: String,
    #[pyo3(get)]
    pub skill_id: String,
    #[pyo3(get)]
    pub caller_id: String,
    #[pyo3(get)]
    pub channel_id: String,
    #[pyo3(get)]
    pub parent_run_id: String,
    /// `inputs` as the JSON text that was stored.
    #[pyo3(get)]
    pub inputs_json: String,
    #[pyo3(get)]
    pub dry_run: bool,
    #[pyo3(get)]
    pub started_at_us: i64,
    #[pyo3(get)]
    pub finished_at_us: Option<i64>,
    #[pyo3(get)]
    pub status: String,
    #[pyo3(get)]
    pub output: String,
    #[pyo3(get)]
    pub error: String,
    #[pyo3(get)]
    pub tool_calls: u64,
    #[pyo3(get)]
    pub runtime_seconds: f64,
    #[pyo3(get)]
    pub input_tokens: u64,
    #[pyo3(get)]
    pub output_tokens: u64,
    #[pyo3(get)]
    pub thinking_tokens: u64,
}

impl From<auditlog::Run> for Run {
    fn from(r: auditlog::Run) -> Run {
        Run {
            id: r.id,
            skill_id: r.skill_id,
            caller_id: r.caller_id,
            channel_id: r.channel_id,
            parent_run_id: r.parent_run_id,
            inputs_json: r.inputs.into_string(),
            dry_run: r.dry_run,
            started_at_us: r.started_at,
            finished_at_us: r.finished_at,
            status: r.status,
            output: r.output,
            error: r.error,
            tool_calls: r.tool_calls,
            runtime_seconds: r.runtime_seconds,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            thinking_tokens: r.thinking_tokens,
        }
    }
}

/// A Python-style quoted string for reprs.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn opt_us(us: Option<i64>) -> String {
    us.map_or_else(|| "None".to_string(), |t| t.to_string())
}

fn opt_datetime(py: Python<'_>, us: Option<i64>) -> PyResult<Bound<'_, PyAny>> {
    match us {
        Some(t) => datetime(py, t),
        None => Ok(py.None().into_bound(py)),
    }
}

#[pymethods]
impl Run {
    /// When the run started (UTC).
    #[getter]
    fn started_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.started_at_us)
    }
    /// When it finished (UTC), or None while running.
    #[getter]
    fn finished_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        opt_datetime(py, self.finished_at_us)
    }
    /// The run's inputs as stored (a dict, usually).
    #[getter]
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.inputs_json)
    }
    /// True once a finish is stored.
    #[getter]
    fn is_finished(&self) -> bool {
        self.finished_at_us.is_some()
    }
    /// The contract's run object as a dict (keys in contract order).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("id", &self.id)?;
        d.set_item("skill_id", &self.skill_id)?;
        d.set_item("caller_id", &self.caller_id)?;
        d.set_item("channel_id", &self.channel_id)?;
        d.set_item("parent_run_id", &self.parent_run_id)?;
        d.set_item("inputs", self.inputs(py)?)?;
        d.set_item("dry_run", self.dry_run)?;
        d.set_item("started_at", self.started_at(py)?)?;
        d.set_item("finished_at", self.finished_at(py)?)?;
        d.set_item("status", &self.status)?;
        d.set_item("output", &self.output)?;
        d.set_item("error", &self.error)?;
        d.set_item("tool_calls", self.tool_calls)?;
        d.set_item("runtime_seconds", self.runtime_seconds)?;
        d.set_item("input_tokens", self.input_tokens)?;
        d.set_item("output_tokens", self.output_tokens)?;
        d.set_item("thinking_tokens", self.thinking_tokens)?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "Run(id={}, skill_id={}, status={}, started_at_us={}, finished_at_us={})",
            q(&self.id),
            q(&self.skill_id),
            q(&self.status),
            self.started_at_us,
            opt_us(self.finished_at_us)
        )
    }
}

/// One log line of a run (`run ID`'s `logs`).
#[pyclass(frozen, eq, skip_from_py_object, module = "auditlog._native")]
#[derive(Clone, PartialEq)]
pub struct LogEntry {
    #[pyo3(get)]
    pub seq: u64,
    #[pyo3(get)]
    pub ts_us: i64,
    #[pyo3(get)]
    pub event_type: String,
    /// The payload as the JSON text that was stored.
    #[pyo3(get)]
    pub payload_json: String,
}

impl From<auditlog::RunLogEntry> for LogEntry {
    fn from(l: auditlog::RunLogEntry) -> LogEntry {
        LogEntry {
            seq: l.seq,
            ts_us: l.ts,
            event_type: l.event_type,
            payload_json: l.payload.into_string(),
        }
    }
}

#[pymethods]
impl LogEntry {
    #[getter]
    fn ts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.ts_us)
    }
    /// The payload as stored (None when absent).
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.payload_json)
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("seq", self.seq)?;
        d.set_item("ts", self.ts(py)?)?;
        d.set_item("event_type", &self.event_type)?;
        d.set_item("payload", self.payload(py)?)?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "LogEntry(seq={}, event_type={}, ts_us={}, payload_json={})",
            self.seq,
            q(&self.event_type),
            self.ts_us,
            q(&self.payload_json)
        )
    }
}

/// One group of the tool-error aggregation (contract: `errors`).
#[pyclass(frozen, eq, skip_from_py_object, module = "auditlog._native")]
#[derive(Clone, PartialEq)]
pub struct ErrorGroup {
    #[pyo3(get)]
    pub channel_id: String,
    #[pyo3(get)]
    pub tool: String,
    #[pyo3(get)]
    pub error_type: String,
    #[pyo3(get)]
    pub count: u64,
    #[pyo3(get)]
    pub first_ts_us: i64,
    #[pyo3(get)]
    pub last_ts_us: i64,
    #[pyo3(get)]
    pub avg_duration_ms: Option<f64>,
    /// Up to 10 distinct caller ids, sorted.
    #[pyo3(get)]
    pub caller_ids: Vec<String>,
    /// Up to 10 distinct run ids, sorted.
    #[pyo3(get)]
    pub run_ids: Vec<String>,
}

impl From<auditlog::ErrorGroup> for ErrorGroup {
    fn from(g: auditlog::ErrorGroup) -> ErrorGroup {
        ErrorGroup {
            channel_id: g.channel_id,
            tool: g.tool,
            error_type: g.error_type,
            count: g.count,
            first_ts_us: g.first_ts,
            last_ts_us: g.last_ts,
            avg_duration_ms: g.avg_duration_ms,
            caller_ids: g.caller_ids,
            run_ids: g.run_ids,
        }
    }
}

#[pymethods]
impl ErrorGroup {
    #[getter]
    fn first_ts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.first_ts_us)
    }
    #[getter]
    fn last_ts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.last_ts_us)
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("channel_id", &self.channel_id)?;
        d.set_item("tool", &self.tool)?;
        d.set_item("error_type", &self.error_type)?;
        d.set_item("count", self.count)?;
        d.set_item("first_ts", self.first_ts(py)?)?;
        d.set_item("last_ts", self.last_ts(py)?)?;
        d.set_item("avg_duration_ms", self.avg_duration_ms)?;
        d.set_item("caller_ids", self.caller_ids.clone())?;
        d.set_item("run_ids", self.run_ids.clone())?;
        Ok(d)
    }
    fn __repr__(&self) -> String {
        format!(
            "ErrorGroup(channel_id={}, tool={}, error_type={}, count={})",
            q(&self.channel_id),
            q(&self.tool),
            q(&self.error_type),
            self.count
        )
    }
}

/// A full-text search hit: the matching run, its score and a snippet.
#[pyclass(frozen, module = "auditlog._native")]
pub struct Hit {
    #[pyo3(get)]
    pub run: Py<Run>,
    #[pyo3(get)]
    pub score: f32,
    /// A short piece of the best matching text, matches marked `**so**`.
    #[pyo3(get)]
    pub snippet: String,
}

#[pymethods]
impl Hit {
    fn __repr__(&self) -> String {
        format!(
            "Hit(run={}, score={}, snippet={})",
            self.run.get().__repr__(),
            self.score,
            q(&self.snippet)
        )
    }
}
