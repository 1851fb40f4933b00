//! Type tests that cost one pointer comparison for the built-in types.
//!
//! Under the stable ABI (abi3) PyO3's `cast::<PyString>()` (and `PyInt`,
//! `PyFloat`, `PyDict`) asks `PyType_GetFlags`, a call into the
//! interpreter, so that subclasses pass too; the keys and values of an
//! appended dict are nearly always of the exact built-in types, which
//! comparing the object's type pointer with the type object settles
//! (`PyUnicode_CheckExact` and friends). Anything else falls back to the
//! subclass-aware cast, so what is accepted is exactly what it was
//! (docs/benchmarks.md, "Python binding", py29: the type tests were part of
//! the 12% of a single append spent walking dicts).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyString};

/// `v` as a `str` (a subclass too), or `None`.
#[inline]
pub fn str_of<'a, 'py>(v: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyString>> {
    if v.is_exact_instance_of::<PyString>() {
        // SAFETY: `v`'s type is exactly `str` (its type pointer was just
        // compared with `PyUnicode_Type`), so it is a `PyString`.
        return Some(unsafe { v.cast_unchecked::<PyString>() });
    }
    v.cast::<PyString>().ok()
}

/// `v` as an `int` (a subclass too, `bool` among them), or `None`.
#[inline]
pub fn int_of<'a, 'py>(v: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyInt>> {
    if v.is_exact_instance_of::<PyInt>() {
        // SAFETY: `v`'s type is exactly `int` (compared with `PyLong_Type`).
        return Some(unsafe { v.cast_unchecked::<PyInt>() });
    }
    v.cast::<PyInt>().ok()
}

/// `v` as a `float` (a subclass too), or `None`.
#[inline]
pub fn float_of<'a, 'py>(v: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyFloat>> {
    if v.is_exact_instance_of::<PyFloat>() {
        // SAFETY: `v`'s type is exactly `float` (compared with
        // `PyFloat_Type`).
        return Some(unsafe { v.cast_unchecked::<PyFloat>() });
    }
    v.cast::<PyFloat>().ok()
}

/// `v` as a `dict` (a subclass too), or `None`.
#[inline]
pub fn dict_of<'a, 'py>(v: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyDict>> {
    if v.is_exact_instance_of::<PyDict>() {
        // SAFETY: `v`'s type is exactly `dict` (compared with
        // `PyDict_Type`).
        return Some(unsafe { v.cast_unchecked::<PyDict>() });
    }
    v.cast::<PyDict>().ok()
}
