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
use pyo3::type_object::PyTypeInfo;
use pyo3::types::{PyDict, PyFloat, PyInt, PyString};

/// `v` as a `T` (a subclass too), or `None`: the type pointer first, then
/// the subclass-aware cast.
#[inline]
fn exact_or_subclass<'a, 'py, T: PyTypeInfo>(
    v: &'a Bound<'py, PyAny>,
) -> Option<&'a Bound<'py, T>> {
    if v.is_exact_instance_of::<T>() {
        // SAFETY: `v`'s type pointer was just compared with `T`'s type
        // object (`PyUnicode_Type`, `PyLong_Type`, ...), so it is a `T`.
        return Some(unsafe { v.cast_unchecked::<T>() });
    }
    v.cast::<T>().ok()
}

/// `v` as a `str` (a subclass too), or `None`.
#[inline]
pub fn str_of<'a, 'py>(v: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyString>> {
    exact_or_subclass::<PyString>(v)
}

/// `v` as an `int` (a subclass too, `bool` among them), or `None`.
#[inline]
pub fn int_of<'a, 'py>(v: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyInt>> {
    exact_or_subclass::<PyInt>(v)
}

/// `v` as a `float` (a subclass too), or `None`.
#[inline]
pub fn float_of<'a, 'py>(v: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyFloat>> {
    exact_or_subclass::<PyFloat>(v)
}

/// `v` as a `dict` (a subclass too), or `None`.
#[inline]
pub fn dict_of<'a, 'py>(v: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyDict>> {
    exact_or_subclass::<PyDict>(v)
}
