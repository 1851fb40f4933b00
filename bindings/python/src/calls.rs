//! Tool calls as records of their own (docs/tool-calls.md): the event the
//! `tool_call` helper writes, and the `calls` query's filter and answer,
//! shared by `Store` and `Served`.

use auditlog::query::{Call, CallCursor, CallFilter, CallKey, CallOrder, CallPage};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyString};

use crate::convert::json_to_py;
use crate::errors;
use crate::time::opt_micros;

/// The `tool_call` fields a keyword argument sets directly; any other
/// keyword goes into the call's `payload`.
pub const TYPED_FIELDS: [&str; 14] = [
    "call_id",
    "channel_id",
    "caller_id",
    "workspace_id",
    "request_id",
    "engine",
    "error",
    "input_bytes",
    "result_bytes",
    "exit_code",
    "http_status",
    "input_hash",
    "args_summary",
    "payload",
];

/// The arguments of the `tool_call` helper.
pub struct CallArgs<'a, 'py> {
    pub run_id: &'a str,
    pub tool: &'a str,
    pub status: &'a str,
    pub error_type: Option<&'a str>,
    pub duration_ms: Option<f64>,
    pub ts: Option<&'a Bound<'py, PyAny>>,
    pub fields: Option<&'a Bound<'py, PyDict>>,
}

/// The helper's arguments as a `tool_call` event dict, which `append`
/// then checks by the engine's rules (naming a bad field).
pub fn event<'py>(py: Python<'py>, a: &CallArgs<'_, 'py>) -> PyResult<Bound<'py, PyDict>> {
    let ev = PyDict::new(py);
    ev.set_item("kind", "tool_call")?;
    ev.set_item("run_id", PyString::new(py, a.run_id))?;
    if let Some(ts) = a.ts {
        ev.set_item("ts", ts)?;
    }
    ev.set_item("tool", PyString::new(py, a.tool))?;
    ev.set_item("status", PyString::new(py, a.status))?;
    if let Some(et) = a.error_type {
        ev.set_item("error_type", PyString::new(py, et))?;
    }
    if let Some(d) = a.duration_ms {
        ev.set_item("duration_ms", PyFloat::new(py, d))?;
    }
    let extra = PyDict::new(py);
    if let Some(fields) = a.fields {
        for (k, v) in fields.iter() {
            let key: String = k.extract()?;
            if TYPED_FIELDS.contains(&key.as_str()) {
                ev.set_item(key, v)?;
            } else {
                extra.set_item(key, v)?;
            }
        }
    }
    if !extra.is_empty() {
        match ev.get_item("payload")? {
            None => ev.set_item("payload", extra)?,
            Some(p) => {
                let p = p.cast_into::<PyDict>().map_err(|_| {
                    errors::invalid_argument(
                        py,
                        "tool_call: `payload` must be a dict when other keywords join it"
                            .to_string(),
                    )
                })?;
                let merged = p.copy()?;
                merged.update(extra.as_mapping())?;
                ev.set_item("payload", merged)?;
            }
        }
    }
    Ok(ev)
}

/// The filters of `calls` and `count_calls`.
pub struct FilterArgs<'a, 'py> {
    pub tool: Option<String>,
    pub engine: Option<String>,
    pub session: Option<String>,
    pub agent: Option<String>,
    pub workspace: Option<String>,
    pub status: Option<String>,
    pub error_type: Option<String>,
    pub run_id: Option<String>,
    pub since: Option<&'a Bound<'py, PyAny>>,
    pub until: Option<&'a Bound<'py, PyAny>>,
    pub include_dry_run: bool,
}

pub fn filter(py: Python<'_>, a: FilterArgs<'_, '_>) -> PyResult<CallFilter> {
    Ok(CallFilter {
        tool: a.tool,
        engine: a.engine,
        channel: a.session,
        caller: a.agent,
        workspace: a.workspace,
        status: a.status,
        error_type: a.error_type,
        run_id: a.run_id,
        since: opt_micros(py, a.since, "since")?,
        until: opt_micros(py, a.until, "until")?,
        include_dry_run: a.include_dry_run,
    })
}

pub fn page(
    py: Python<'_>,
    limit: Option<usize>,
    cursor: Option<&str>,
    oldest_first: bool,
) -> PyResult<CallPage> {
    let cursor = match cursor {
        Some(c) => Some(
            CallCursor::parse(c)
                .map_err(|e| errors::invalid_argument(py, format!("cursor: {e}")))?,
        ),
        None => None,
    };
    Ok(CallPage {
        limit,
        cursor,
        order: if oldest_first {
            CallOrder::OldestFirst
        } else {
            CallOrder::NewestFirst
        },
    })
}

pub fn key(py: Python<'_>, by: &str) -> PyResult<CallKey> {
    CallKey::parse(by).map_err(|e| errors::invalid_argument(py, format!("by: {e}")))
}

/// Calls as dicts, as `auditlog calls` prints them.
pub fn to_py<'py>(py: Python<'py>, calls: &[Call]) -> PyResult<Vec<Bound<'py, PyAny>>> {
    calls.iter().map(|c| json_to_py(py, &c.to_json())).collect()
}
