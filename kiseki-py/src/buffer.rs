//! Zero-copy access to the caller's buffer (bytearray, memoryview, numpy array, ...).
//!
//! The buffer protocol entered the limited API only in Python 3.11, so pyo3's
//! `PyBuffer` is unavailable to an abi3-py39 module. `PyObject_GetBuffer`,
//! `PyBuffer_Release` and the `Py_buffer` layout have been exported and unchanged since
//! Python 3.3 (3.11 made them stable ABI as they were), so they are declared here.

use std::ffi::{c_char, c_int, c_void};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi::{PyObject, Py_ssize_t};
use pyo3::prelude::*;

#[repr(C)]
struct PyBufferView {
    buf: *mut c_void,
    obj: *mut PyObject,
    len: Py_ssize_t,
    itemsize: Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut Py_ssize_t,
    strides: *mut Py_ssize_t,
    suboffsets: *mut Py_ssize_t,
    internal: *mut c_void,
}

extern "C" {
    fn PyObject_GetBuffer(obj: *mut PyObject, view: *mut PyBufferView, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut PyBufferView);
}

const PYBUF_SIMPLE: c_int = 0;
const PYBUF_WRITABLE: c_int = 0x0001;

/// A contiguous byte buffer held for the duration of one call. Released (with the GIL
/// held, as the protocol requires) when dropped.
pub struct Buffer<'py> {
    view: Box<PyBufferView>,
    _py: Python<'py>,
}

impl<'py> Buffer<'py> {
    /// A writable contiguous buffer (for readinto). Anything else is a `TypeError`, as
    /// `io.FileIO.readinto` raises for bytes, read-only or strided memoryviews.
    pub fn writable(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        Self::get(obj, PYBUF_WRITABLE, "read-write bytes-like object")
    }

    /// A contiguous buffer to read from (for write); anything else is a `TypeError`,
    /// as `io.FileIO.write` raises.
    pub fn readable(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        Self::get(obj, PYBUF_SIMPLE, "contiguous bytes-like object")
    }

    fn get(obj: &Bound<'py, PyAny>, flags: c_int, wanted: &str) -> PyResult<Self> {
        // SAFETY: a zeroed view is what PyObject_GetBuffer expects to fill; the GIL is
        // held (we have `obj`), and a non-zero return set a Python exception.
        unsafe {
            let mut view: Box<PyBufferView> = Box::new(std::mem::zeroed());
            if PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) != 0 {
                let why = PyErr::take(obj.py())
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                let kind = obj
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "object".into());
                return Err(PyTypeError::new_err(format!(
                    "argument must be a {wanted}, not {kind} ({why})"
                )));
            }
            Ok(Buffer {
                view,
                _py: obj.py(),
            })
        }
    }

    /// The buffer's address and length, to use while the GIL is released (the buffer
    /// object stays alive and exported until `self` drops).
    pub fn raw(&self) -> (usize, usize) {
        (self.view.buf as usize, self.view.len.max(0) as usize)
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        // SAFETY: the view was filled by PyObject_GetBuffer and is released once; the
        // GIL is held because `Buffer` carries `Python<'py>` and is not `Send`.
        unsafe { PyBuffer_Release(&mut *self.view) }
    }
}

/// The bytes at `raw` (from [`Buffer::raw`]).
///
/// # Safety
/// The `Buffer` that gave `raw` must outlive the returned slice.
pub unsafe fn slice_mut<'a>((addr, len): (usize, usize)) -> &'a mut [u8] {
    if len == 0 {
        return &mut [];
    }
    std::slice::from_raw_parts_mut(addr as *mut u8, len)
}

/// # Safety
/// As [`slice_mut`].
pub unsafe fn slice<'a>((addr, len): (usize, usize)) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    std::slice::from_raw_parts(addr as *const u8, len)
}
