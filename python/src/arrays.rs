//! Arrays across the boundary. A float32 C-contiguous NumPy array is read in place (its buffer
//! borrowed for the call, copied once into the tensor, as `cimc run` copies a `.npy` file's
//! bytes); any other array arrives as the bytes of a `.npy` file (`numpy.save`, done by
//! `cimc/__init__.py`) and is read by the CLI's own `.npy` reader. Outputs go back the same
//! two ways: an f32 tensor becomes a NumPy array without a copy, others `.npy` bytes.

use bytes::Bytes;
use cimc::Error;
use cimc_interp::Tensor;
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;

/// An input as Python gave it, borrowed for the length of a call.
pub(crate) enum Borrowed<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    Npy(Bytes),
}

/// What a computation needs of an input, with the GIL released: plain slices and bytes.
pub(crate) enum Raw<'a> {
    F32(&'a [f32], Vec<usize>),
    Npy(Bytes),
}

/// Borrows each of `objs`: a float32 C-contiguous array, or `bytes` of a `.npy` file.
pub(crate) fn borrow_all<'py>(objs: &[Bound<'py, PyAny>]) -> PyResult<Vec<Borrowed<'py>>> {
    objs.iter()
        .map(|o| {
            if let Ok(a) = o.cast::<PyArrayDyn<f32>>() {
                let r = a.try_readonly().map_err(|e| crate::CimcError::new_err(e.to_string()))?;
                if r.is_c_contiguous() {
                    return Ok(Borrowed::F32(r));
                }
            }
            let b = o.cast::<PyBytes>().map_err(|_| {
                crate::CimcError::new_err(
                    "an input must be a float32 C-contiguous numpy array or the bytes of a .npy file",
                )
            })?;
            Ok(Borrowed::Npy(Bytes::copy_from_slice(b.as_bytes())))
        })
        .collect()
}

/// The Send views of borrowed inputs.
pub(crate) fn raw<'a>(b: &'a [Borrowed<'_>]) -> PyResult<Vec<Raw<'a>>> {
    b.iter()
        .map(|x| match x {
            Borrowed::F32(a) => {
                let s = a.as_slice().map_err(|e| crate::CimcError::new_err(e.to_string()))?;
                Ok(Raw::F32(s, a.shape().to_vec()))
            }
            Borrowed::Npy(bytes) => Ok(Raw::Npy(bytes.clone())),
        })
        .collect()
}

/// The name an input goes by in messages (the CLI names the file).
pub(crate) fn input_name(k: usize) -> PathBuf {
    PathBuf::from(format!("<input {k}>"))
}

impl Raw<'_> {
    /// The tensor of input `k`: one copy of an f32 array, or the `.npy` bytes read as the CLI
    /// reads a file.
    pub(crate) fn tensor(&self, k: usize) -> cimc::Result<Tensor> {
        match self {
            Raw::F32(s, shape) => Tensor::from_f32(shape, s.to_vec())
                .map_err(|e| Error::Npy { file: input_name(k), msg: e.to_string() }),
            Raw::Npy(bytes) => {
                let d = cimc::npy::parse(bytes.clone())
                    .map_err(|msg| Error::Npy { file: input_name(k), msg })?;
                Tensor::from_data(&d)
                    .map_err(|e| Error::Npy { file: input_name(k), msg: e.to_string() })
            }
        }
    }
}

/// Every input's tensor.
pub(crate) fn tensors(raw: &[Raw<'_>]) -> cimc::Result<Vec<Tensor>> {
    raw.iter().enumerate().map(|(k, r)| r.tensor(k)).collect()
}

/// A tensor for Python: an f32 array without a copy, any other dtype as `.npy` bytes.
pub(crate) fn to_python(py: Python<'_>, t: Tensor) -> PyResult<Py<PyAny>> {
    match t {
        Tensor::F32(a) => Ok(numpy::PyArray::from_owned_array(py, a).into_any().unbind()),
        other => {
            let bytes = cimc::npy::to_bytes(&other.to_data());
            Ok(PyBytes::new(py, &bytes).into_any().unbind())
        }
    }
}

/// A list of tensors for Python.
pub(crate) fn list_to_python(py: Python<'_>, ts: Vec<Tensor>) -> PyResult<Vec<Py<PyAny>>> {
    ts.into_iter().map(|t| to_python(py, t)).collect()
}
