//! Python values to JSON text and back.
//!
//! An appended dict that the fast path (direct.rs) declines, and every
//! dict of a batch, is written as one JSON line and handed to the engine's
//! own JSONL parser (`parse_event`), so a dict obeys exactly the rules a
//! line of `auditlog ingest` obeys, with the same messages naming the
//! field. The fast path writes its free-form values with [`write_value`]
//! too, so both store the same text. What is not JSON (bytes, sets, naive datetimes, NaN, objects)
//! is refused here, naming the path to it (`payload.args[2]`). Aware
//! `datetime`s become RFC 3339 strings, which the contract accepts for
//! `ts` and which read well inside payloads.
//!
//! Stored JSON (inputs, payloads, replayed events) comes back as Python
//! objects built straight from the text, in its key order.

use std::fmt;
use std::io::Write as _;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};

use crate::exact;
use crate::time;

/// Deepest nesting written (the engine keeps at most 64; this bound only
/// stops a container that holds itself from recursing without end).
pub const MAX_DEPTH: usize = 128;

/// One step of the path to a bad value.
#[derive(Debug, Clone)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Why a value could not be written.
pub enum Fault {
    /// Not JSON: the path to it (outermost first) and why.
    Bad { path: Vec<Seg>, reason: String },
    /// Python raised while the value was looked at.
    Py(PyErr),
}

impl From<PyErr> for Fault {
    fn from(e: PyErr) -> Fault {
        Fault::Py(e)
    }
}

impl Fault {
    fn bad(reason: impl Into<String>) -> Fault {
        Fault::Bad {
            path: Vec::new(),
            reason: reason.into(),
        }
    }

    /// The fault seen from one level up.
    fn under(mut self, seg: Seg) -> Fault {
        if let Fault::Bad { path, .. } = &mut self {
            path.insert(0, seg);
        }
        self
    }

    /// `payload.args[2]`-style path, or `event` for the whole value.
    pub fn path_text(path: &[Seg]) -> String {
        let mut s = String::new();
        for seg in path {
            match seg {
                Seg::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Seg::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        if s.is_empty() {
            s.push_str("event");
        }
        s
    }
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // Most strings need no escape: copied as they are. Otherwise
    // serde_json's escaping, well tested.
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Whether JSON needs any byte of `s` escaped (a control character, `"`
/// or `\\`). Eight bytes at a time (the "has less than" and "has zero
/// byte" word tricks; exact for the question "any byte?"), the last few
/// one by one: the byte-by-byte test was the largest part of writing a
/// payload's text (py29).
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // A high bit set in the byte of `x` that is zero (any such byte is
    // reported; bytes above it may be too, which does not change "any").
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let x = u64::from_ne_bytes(word);
        // Bytes under 0x20 (exact for any bound up to 0x80), `"`, `\\`.
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
        if control | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\'))) != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Write `v` as JSON.
pub fn write_value(
    py: Python<'_>,
    v: &Bound<'_, PyAny>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Fault> {
    if depth > MAX_DEPTH {
        return Err(Fault::bad(format!(
            "is nested more than {MAX_DEPTH} levels deep (or contains itself)"
        )));
    }
    if write_scalar(v, out)? {
        return Ok(());
    }
    if let Some(d) = exact::dict_of(v) {
        write_dict(py, d, out, depth)?;
    } else if let Ok(l) = v.cast::<PyList>() {
        write_items(py, l.iter(), out, depth)?;
    } else if let Ok(t) = v.cast::<PyTuple>() {
        write_items(py, t.iter(), out, depth)?;
    } else if time::is_datetime(py, v)? {
        write_instant(py, v, out)?;
    } else {
        return Err(Fault::bad(format!(
            "a value of type {} is not JSON (use str, int, float, bool, None, dict, list, tuple or an aware datetime)",
            type_name(v)
        )));
    }
    Ok(())
}

/// Write `v` if it is a scalar (str, None, bool, int, float): `false` if
/// it is not. Runs no Python code (type checks and C-level reads only), so
/// it may be given a value borrowed from a dict ([`for_each_item`]).
fn write_scalar(v: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<bool, Fault> {
    // What payloads hold, by the type pointer alone: an exact `int` is
    // written, and an exact `dict` or `list` answers at once, without the
    // subclass tests below (each a call into the interpreter:
    // `PyType_GetFlags` for bool and int, `PyType_IsSubtype` for float,
    // that every payload dict went through: 1.7% of a single append's
    // instructions with the int `ts` in direct.rs, py31). An exact `str`
    // is settled by `exact::str_of`'s pointer test, the first below.
    // `bool` is not an exact `int`: it is tested below, before `int`
    // takes subclasses.
    if let Ok(i) = v.cast_exact::<PyInt>() {
        write_int(i, out)?;
        return Ok(true);
    }
    if v.is_exact_instance_of::<PyDict>() || v.is_exact_instance_of::<PyList>() {
        return Ok(false);
    }
    // Type tests by pointer first (exact.rs); `bool` is tested before `int`
    // takes subclasses.
    if let Some(s) = exact::str_of(v) {
        write_str(s.to_str()?, out);
    } else if v.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(b) = v.cast::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if let Some(i) = exact::int_of(v) {
        write_int(i, out)?;
    } else if let Some(f) = exact::float_of(v) {
        let x = f.value();
        if !x.is_finite() {
            return Err(Fault::bad(format!("{x} is not a JSON number")));
        }
        let _ = serde_json::to_writer(&mut *out, &x);
    } else {
        return Ok(false);
    }
    Ok(true)
}

fn write_int(i: &Bound<'_, PyInt>, out: &mut Vec<u8>) -> Result<(), Fault> {
    // serde_json writes integers with itoa (far cheaper than `write!`).
    if let Ok(n) = i.extract::<i64>() {
        let _ = serde_json::to_writer(&mut *out, &n);
    } else if let Ok(n) = i.extract::<u64>() {
        let _ = serde_json::to_writer(&mut *out, &n);
    } else {
        // Beyond 64 bits: JSON numbers have no size limit; keep the digits.
        // `int.__repr__` itself, not the value's `str()`: a subclass (an
        // IntEnum, say) may print something else, which is not JSON.
        let digits = i
            .py()
            .get_type::<PyInt>()
            .getattr("__repr__")?
            .call1((i,))?;
        out.extend_from_slice(
            digits
                .cast::<PyString>()
                .map_err(PyErr::from)?
                .to_str()?
                .as_bytes(),
        );
    }
    Ok(())
}

fn write_instant(py: Python<'_>, v: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<(), Fault> {
    if v.call_method0("utcoffset")?.is_none() {
        return Err(Fault::bad(
            "is a naive datetime; give a timezone-aware one (e.g. datetime.now(timezone.utc))",
        ));
    }
    let us = time::datetime_micros(py, v, "datetime")?;
    out.push(b'"');
    time::rfc3339(us, out);
    out.push(b'"');
    Ok(())
}

fn key_text<'a>(k: &'a Bound<'_, PyAny>) -> Result<std::borrow::Cow<'a, str>, Fault> {
    match exact::str_of(k) {
        Some(s) => Ok(s.to_cow()?),
        None => Err(Fault::bad(format!(
            "has a key of type {} ({}); JSON object keys are strings",
            type_name(k),
            k.repr().map(|r| r.to_string()).unwrap_or_default()
        ))),
    }
}

fn write_dict(
    py: Python<'_>,
    d: &Bound<'_, PyDict>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Fault> {
    out.push(b'{');
    let mut first = true;
    for_each_item(d, dict_changed, |k, v| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_key(k, out)?;
        // The key's text only for a fault's path (a key that is not a
        // str was refused just above).
        let under = |f: Fault, k: &Bound<'_, PyAny>| match key_text(k) {
            Ok(key) => f.under(Seg::Key(key.to_string())),
            Err(_) => f,
        };
        // A scalar is written from the borrowed value; anything else may
        // run Python code (a datetime's `utcoffset`), so it is written
        // from references of its own.
        if depth < MAX_DEPTH && write_scalar(v, out).map_err(|f| under(f, k))? {
            return Ok(());
        }
        let (k, v) = (k.clone(), v.clone());
        write_value(py, &v, out, depth + 1).map_err(|f| under(f, &k))
    })?;
    out.push(b'}');
    Ok(())
}

/// Write a dict's key as JSON with its colon (`"tool":`): from this
/// thread's [`KeyTexts`] when the very key object was written before, else
/// from its text (and remembered). Payloads' keys are nearly always the
/// interned keys of dict literals, the same objects append after append:
/// this spares asking for their UTF-8 text and scanning it for escapes
/// each time (py30).
fn write_key(k: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> Result<(), Fault> {
    // Only exact `str`s are remembered: their text cannot change, and
    // dropping one (when its slot is taken) runs no Python code.
    let exact = k.is_exact_instance_of::<PyString>();
    if exact
        && KEY_TEXTS
            .try_with(|t| t.try_borrow().is_ok_and(|t| t.write(k, out)))
            .unwrap_or(false)
    {
        return Ok(());
    }
    let start = out.len();
    write_str(&key_text(k)?, out);
    out.push(b':');
    if exact {
        let _ = KEY_TEXTS.try_with(|t| {
            if let Ok(mut t) = t.try_borrow_mut() {
                t.keep(k, &out[start..]);
            }
        });
    }
    Ok(())
}

/// Slots of [`KeyTexts`], in pairs: a key may sit in either slot of the
/// pair its address picks (two keys of one payload that pick the same
/// pair both stay; with one slot each, a third of the payload keys of the
/// benchmark's workload were missed that way).
const KEY_SLOTS: usize = 128;
/// Longest key text remembered (quotes and colon included).
const KEY_TEXT_MAX: usize = 48;

/// Dict keys (exact `str` objects) and their JSON text, by the object's
/// address, a few per thread. Each slot holds a reference to its key, so
/// the object cannot be freed and its address taken by another while its
/// text is remembered.
struct KeyTexts {
    slots: Vec<Option<KeyText>>,
    /// Which slot of a full pair the next key takes (alternately).
    flip: usize,
}

struct KeyText {
    key: Py<PyString>,
    len: usize,
    text: [u8; KEY_TEXT_MAX],
}

impl KeyTexts {
    /// The first slot of `k`'s pair: the address, mixed (Fibonacci
    /// hashing), its top bits.
    fn pair(k: &Bound<'_, PyAny>) -> usize {
        let mixed = (k.as_ptr() as usize as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> (u64::BITS - KEY_SLOTS.trailing_zeros())) as usize & !1
    }

    /// Write `k`'s text if it is remembered.
    fn write(&self, k: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> bool {
        let at = Self::pair(k);
        let Some(pair) = self.slots.get(at..at + 2) else {
            return false;
        };
        for t in pair.iter().flatten() {
            if t.key.as_ptr() == k.as_ptr() {
                out.extend_from_slice(&t.text[..t.len]);
                return true;
            }
        }
        false
    }

    /// Remember `text` as `k`'s (an exact `str`): in a free slot of its
    /// pair, else in place of one of the two keys there.
    fn keep(&mut self, k: &Bound<'_, PyAny>, text: &[u8]) {
        if text.len() > KEY_TEXT_MAX {
            return;
        }
        let Ok(key) = k.cast::<PyString>() else {
            return;
        };
        if self.slots.is_empty() {
            self.slots.resize_with(KEY_SLOTS, || None);
        }
        let at = Self::pair(k);
        let Some(pair) = self.slots.get_mut(at..at + 2) else {
            return;
        };
        let mut kept = [0u8; KEY_TEXT_MAX];
        kept[..text.len()].copy_from_slice(text);
        let free = pair.iter().position(Option::is_none);
        let slot = free.unwrap_or_else(|| {
            self.flip ^= 1;
            self.flip
        });
        if let Some(slot) = pair.get_mut(slot) {
            *slot = Some(KeyText {
                key: key.clone().unbind(),
                len: text.len(),
                text: kept,
            });
        }
    }
}

thread_local! {
    static KEY_TEXTS: std::cell::RefCell<KeyTexts> =
        const {
            std::cell::RefCell::new(KeyTexts {
                slots: Vec::new(),
                flip: 0,
            })
        };
}

fn dict_changed() -> Fault {
    Fault::Py(pyo3::exceptions::PyRuntimeError::new_err(
        "dictionary changed size during iteration",
    ))
}

/// Call `f` on each item of `d`, borrowed: no reference counts taken and
/// dropped per item, and no size asked per step, as PyO3's iterator does
/// (that was about an eighth of a single append, docs/benchmarks.md,
/// "Python binding", py27).
///
/// `f` must not run Python code while it still uses the key or value it
/// was given: Python code could remove them from the dict and free them.
/// Where it may run some (writing a value that is not a plain scalar), it
/// takes references of its own first (`Bound::clone`). The walk stops at
/// the first error from `f`; a dict whose size changed during the walk
/// answers `changed()`.
pub fn for_each_item<'py, E>(
    d: &Bound<'py, PyDict>,
    changed: impl FnOnce() -> E,
    mut f: impl FnMut(&Bound<'py, PyAny>, &Bound<'py, PyAny>) -> Result<(), E>,
) -> Result<(), E> {
    let py = d.py();
    let len = d.len();
    let mut pos: pyo3::ffi::Py_ssize_t = 0;
    let mut key: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: `d` is a dict (its type was checked when it was cast) and the
    // GIL is held (`py`). PyDict_Next gives borrowed references to the
    // item at `pos`, valid while the dict holds it, which `f` does not end
    // while it uses them (above); PyDict_Next stays within the dict's
    // current entries even if Python code changed it between two steps.
    while unsafe { pyo3::ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut key, &mut value) } != 0 {
        // SAFETY: as above; both are set (non-null) when PyDict_Next
        // answers non-zero, and used only inside this step.
        let (k, v) = unsafe {
            (
                pyo3::Borrowed::from_ptr(py, key),
                pyo3::Borrowed::from_ptr(py, value),
            )
        };
        f(&k, &v)?;
    }
    if d.len() != len {
        return Err(changed());
    }
    Ok(())
}

/// The first item of `d` in its order (its own references), or `None` for
/// an empty dict: where a dict starts with `kind` (the contract's order),
/// reading it so spares a lookup by key (direct.rs).
pub fn first_item<'py>(d: &Bound<'py, PyDict>) -> Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let py = d.py();
    let mut pos: pyo3::ffi::Py_ssize_t = 0;
    let mut key: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: `d` is a dict and the GIL is held (`py`), as in
    // `for_each_item`; both references are borrowed from the dict and
    // turned into references of our own before any Python code can run.
    if unsafe { pyo3::ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut key, &mut value) } == 0 {
        return None;
    }
    // SAFETY: as above; set (non-null) when PyDict_Next answers non-zero.
    let (k, v) = unsafe {
        (
            pyo3::Borrowed::from_ptr(py, key),
            pyo3::Borrowed::from_ptr(py, value),
        )
    };
    Some((k.to_owned(), v.to_owned()))
}

fn write_items<'py>(
    py: Python<'py>,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Fault> {
    out.push(b'[');
    for (i, v) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(py, &v, out, depth + 1).map_err(|f| f.under(Seg::Index(i)))?;
    }
    out.push(b']');
    Ok(())
}

/// One event dict as a JSON line for the engine's parser. A missing (or
/// `None`) `ts` becomes `now`, the time of the append.
pub fn event_line(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    now: i64,
    out: &mut Vec<u8>,
) -> Result<(), Fault> {
    let d = obj.cast::<PyDict>().map_err(|_| {
        Fault::bad(format!(
            "expected a dict in the contract's event shape (kind, run_id, ts, ...), got {}",
            type_name(obj)
        ))
    })?;
    out.push(b'{');
    let mut has_ts = false;
    let mut first = true;
    for (k, v) in d.iter() {
        let key = key_text(&k)?;
        if key == "ts" {
            if v.is_none() {
                continue;
            }
            has_ts = true;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(&key, out);
        out.push(b':');
        write_value(py, &v, out, 1).map_err(|f| f.under(Seg::Key(key.to_string())))?;
    }
    if !has_ts {
        if !first {
            out.push(b',');
        }
        let _ = write!(out, "\"ts\":{now}");
    }
    out.push(b'}');
    Ok(())
}

/// Stored JSON text as Python objects.
pub fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = PySeed(py)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v))
        .map_err(|e| {
            pyo3::exceptions::PyValueError::new_err(format!("stored JSON does not read back: {e}"))
        })?;
    Ok(v)
}

struct PySeed<'py>(Python<'py>);

impl<'de, 'py> DeserializeSeed<'de> for PySeed<'py> {
    type Value = Bound<'py, PyAny>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(PyVisitor(self.0))
    }
}

struct PyVisitor<'py>(Python<'py>);

fn conv<'py, T: IntoPyObject<'py>, E: serde::de::Error>(
    py: Python<'py>,
    v: T,
) -> Result<Bound<'py, PyAny>, E> {
    v.into_bound_py_any(py).map_err(E::custom)
}

impl<'de, 'py> Visitor<'de> for PyVisitor<'py> {
    type Value = Bound<'py, PyAny>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(PyBool::new(self.0, v).to_owned().into_any())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        conv(self.0, v)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        conv(self.0, v)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        conv(self.0, v)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.0, v).into_any())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.0.None().into_bound(self.0))
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.0.None().into_bound(self.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let list = PyList::empty(self.0);
        while let Some(x) = seq.next_element_seed(PySeed(self.0))? {
            list.append(x).map_err(A::Error::custom)?;
        }
        Ok(list.into_any())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let dict = PyDict::new(self.0);
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(PySeed(self.0))?;
            dict.set_item(k, v).map_err(A::Error::custom)?;
        }
        Ok(dict.into_any())
    }
}
