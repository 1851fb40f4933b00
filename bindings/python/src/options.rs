//! Arguments as Python gives them (strings, numbers, timedeltas, dicts),
//! turned into the engine's configuration and query types; bad values
//! raise `InvalidArgumentError` naming the argument.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use auditlog::{Durability, Filter, FullPolicy, RedactionPolicy};

use crate::convert::{self, Fault};
use crate::errors::{self, IntoPy};
use crate::time::opt_micros;

pub fn parse_durability(py: Python<'_>, v: Option<&Bound<'_, PyAny>>) -> PyResult<Durability> {
    let Some(v) = v.filter(|v| !v.is_none()) else {
        return Ok(Durability::EveryBatch);
    };
    if let Ok(s) = v.cast::<PyString>() {
        return match s.to_str()? {
            "every_batch" | "every-batch" | "batch" => Ok(Durability::EveryBatch),
            "never" => Ok(Durability::Never),
            other => Err(errors::invalid_argument(
                py,
                format!("durability: {other:?}; use \"every_batch\", \"never\", or an interval (seconds as a number, or a timedelta)"),
            )),
        };
    }
    let secs: f64 = if v.is_instance_of::<PyFloat>() || v.is_instance_of::<PyInt>() {
        v.extract()?
    } else if v.hasattr("total_seconds")? {
        v.call_method0("total_seconds")?.extract()?
    } else {
        return Err(errors::invalid_argument(
            py,
            "durability: expected \"every_batch\", \"never\", seconds or a timedelta".into(),
        ));
    };
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(errors::invalid_argument(
            py,
            format!("durability: an interval of {secs} s; it must be within (0, 3600] seconds"),
        ));
    }
    Ok(Durability::Interval(Duration::from_secs_f64(secs)))
}

pub fn parse_on_full(py: Python<'_>, v: &str) -> PyResult<FullPolicy> {
    match v {
        "block" => Ok(FullPolicy::Block),
        "fail" => Ok(FullPolicy::FailFast),
        "drop" => Ok(FullPolicy::DropAndCount),
        other => Err(errors::invalid_argument(
            py,
            format!("on_full: {other:?}; use \"block\", \"fail\" or \"drop\""),
        )),
    }
}

/// A policy as text (the engine's grammar or its JSON form), a dict in the
/// JSON form, or a list of `(path, action)` pairs.
pub fn parse_redaction(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<RedactionPolicy> {
    let text = if let Ok(s) = v.cast::<PyString>() {
        s.to_str()?.to_string()
    } else if v.is_instance_of::<PyDict>() {
        let mut out = Vec::new();
        convert::write_value(py, v, &mut out, 0).map_err(|f| match f {
            Fault::Bad { path, reason } => errors::invalid_argument(
                py,
                format!("redaction.{}: {reason}", Fault::path_text(&path)),
            ),
            Fault::Py(e) => e,
        })?;
        String::from_utf8_lossy(&out).into_owned()
    } else if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut lines = String::new();
        for item in v.try_iter()? {
            let (path, action): (String, String) = item?.extract().map_err(|_| {
                errors::invalid_argument(
                    py,
                    "redaction: a list must hold (path, action) pairs, e.g. (\"inputs.password\", \"drop\")".into(),
                )
            })?;
            lines.push_str(&format!("{path} {action}\n"));
        }
        lines
    } else {
        return Err(errors::invalid_argument(
            py,
            "redaction: expected policy text, a {\"rules\": [...]} dict, or a list of (path, action) pairs".into(),
        ));
    };
    RedactionPolicy::parse(&text).py_err(py)
}

#[allow(clippy::too_many_arguments)]
pub fn filter(
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
) -> PyResult<Filter> {
    Ok(Filter {
        skill,
        caller,
        channel,
        status,
        parent,
        top_level,
        since: opt_micros(py, since, "since")?,
        until: opt_micros(py, until, "until")?,
        include_dry_run,
    })
}
