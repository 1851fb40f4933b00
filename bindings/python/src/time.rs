//! Instants between Python and the engine. The engine counts integer
//! microseconds since the Unix epoch (UTC); Python sees timezone-aware
//! `datetime`s in UTC. Conversions go through `timedelta` arithmetic, which
//! is exact to the microsecond (floats are not).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyInt, PyString};

use crate::errors;

/// The datetime module's pieces, looked up once.
struct DateTime {
    datetime: Py<PyAny>,
    timedelta: Py<PyAny>,
    epoch: Py<PyAny>,
    one_us: Py<PyAny>,
}

static DT: PyOnceLock<DateTime> = PyOnceLock::new();

fn dt(py: Python<'_>) -> PyResult<&DateTime> {
    DT.get_or_try_init(py, || {
        let m = py.import("datetime")?;
        let datetime = m.getattr("datetime")?;
        let timedelta = m.getattr("timedelta")?;
        let utc = m.getattr("timezone")?.getattr("utc")?;
        let epoch = datetime.call((1970, 1, 1, 0, 0, 0, 0, utc), None)?;
        let one_us = timedelta.call1((0, 0, 1))?;
        Ok(DateTime {
            datetime: datetime.unbind(),
            timedelta: timedelta.unbind(),
            epoch: epoch.unbind(),
            one_us: one_us.unbind(),
        })
    })
}

/// A UTC `datetime` for `us` microseconds since the epoch.
pub fn datetime(py: Python<'_>, us: i64) -> PyResult<Bound<'_, PyAny>> {
    let d = dt(py)?;
    let days = us.div_euclid(86_400_000_000);
    let rest = us.rem_euclid(86_400_000_000);
    let delta = d.timedelta.bind(py).call1((days, 0, rest))?;
    d.epoch.bind(py).add(delta)
}

/// Whether `obj` is a `datetime.datetime`.
pub fn is_datetime(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    obj.is_instance(dt(py)?.datetime.bind(py))
}

/// Microseconds since the epoch of an aware `datetime`; a naive one is
/// refused (it names no instant).
pub fn datetime_micros(py: Python<'_>, obj: &Bound<'_, PyAny>, field: &str) -> PyResult<i64> {
    if obj.call_method0("utcoffset")?.is_none() {
        return Err(errors::invalid_argument(
            py,
            format!(
                "{field}: naive datetime {}; give a timezone-aware one (e.g. datetime.now(timezone.utc)) or integer microseconds since the epoch",
                obj.str()?
            ),
        ));
    }
    let d = dt(py)?;
    let delta = obj.sub(d.epoch.bind(py))?;
    delta
        .call_method1("__floordiv__", (d.one_us.bind(py),))?
        .extract::<i64>()
}

/// An instant given as integer microseconds, an aware `datetime`, or an
/// ISO 8601 / RFC 3339 string with an offset.
pub fn to_micros(py: Python<'_>, obj: &Bound<'_, PyAny>, field: &str) -> PyResult<i64> {
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(bad_instant(py, obj, field));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj.extract::<i64>().map_err(|_| {
            errors::invalid_argument(
                py,
                format!("{field}: {obj} is out of range for microseconds since the epoch"),
            )
        });
    }
    if is_datetime(py, obj)? {
        return datetime_micros(py, obj, field);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_str()?;
        let iso = text.replace(['z'], "Z");
        let parsed = dt(py)?
            .datetime
            .bind(py)
            .call_method1("fromisoformat", (iso,))
            .map_err(|e| {
                errors::invalid_argument(
                    py,
                    format!("{field}: {text:?} is not an RFC 3339 instant ({e})"),
                )
            })?;
        return datetime_micros(py, &parsed, field);
    }
    Err(bad_instant(py, obj, field))
}

fn bad_instant(py: Python<'_>, obj: &Bound<'_, PyAny>, field: &str) -> PyErr {
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    errors::invalid_argument(
        py,
        format!("{field}: expected integer microseconds, an aware datetime or an RFC 3339 string, got {ty}"),
    )
}

/// Optional instant argument.
pub fn opt_micros(
    py: Python<'_>,
    obj: Option<&Bound<'_, PyAny>>,
    field: &str,
) -> PyResult<Option<i64>> {
    match obj {
        Some(o) if !o.is_none() => to_micros(py, o, field).map(Some),
        _ => Ok(None),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for `us` (the contract's output form).
pub fn rfc3339(us: i64, out: &mut Vec<u8>) {
    let days = us.div_euclid(86_400_000_000);
    let rest = us.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let secs = rest / 1_000_000;
    let frac = rest % 1_000_000;
    let text = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    out.extend_from_slice(text.as_bytes());
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `_native.to_micros(value, field="ts")`: the conversion above, for the
/// Python layer.
#[pyfunction]
#[pyo3(name = "to_micros", signature = (value, field = "ts"))]
pub fn to_micros_py(py: Python<'_>, value: &Bound<'_, PyAny>, field: &str) -> PyResult<i64> {
    to_micros(py, value, field)
}

/// `_native.from_micros(us)`: a UTC datetime.
#[pyfunction]
#[pyo3(name = "from_micros")]
pub fn from_micros_py(py: Python<'_>, us: i64) -> PyResult<Bound<'_, PyAny>> {
    datetime(py, us)
}
