//! `cimc._native`: the compiler, the program interpreter and the stream simulator for Python.
//!
//! Every function here calls the library code the `cimc` command line calls (`cimc::compile`,
//! `cimc::model`, `cimc::noise_eval`, the back ends and simulators), so a program compiled or
//! run from Python is the one the CLI gives, bit for bit. The Python-facing API (argument
//! normalization, dicts to TOML, several outputs as a tuple) is `cimc/__init__.py`; this module
//! takes the normalized arguments.
//!
//! Three rules hold at the boundary: every call that computes releases the GIL (`Python::detach`);
//! a `cimc::Error` becomes `CimcError` (a `ValueError`, the CLI's message) or, for an internal
//! error, `CimcInternalError`; and no panic crosses it (`guarded` catches it and raises
//! `CimcInternalError`).

mod arrays;
mod options;
mod program;
mod stream;

use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

create_exception!(
    _native,
    CimcError,
    PyValueError,
    "A problem with the user's input (a file, an option, an array): the message the cimc \
     command line prints."
);
create_exception!(
    _native,
    CimcInternalError,
    PyRuntimeError,
    "A bug in cimc (a broken invariant or a panic); please report it."
);

/// The Python exception of a cimc error: user errors (exit code 1 on the command line) are
/// `CimcError`, internal ones (exit code 2) `CimcInternalError`.
pub(crate) fn to_py(e: cimc::Error) -> PyErr {
    if e.exit_code() == 2 {
        CimcInternalError::new_err(e.to_string())
    } else {
        CimcError::new_err(e.to_string())
    }
}

/// Runs `f`, turning a panic into an internal error: nothing unwinds into the interpreter.
pub(crate) fn guarded<T>(f: impl FnOnce() -> cimc::Result<T>) -> cimc::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            Err(cimc::Error::Internal(format!("a bug in cimc, please report it: {msg}")))
        }
    }
}

/// [`guarded`] with the GIL released: for every call that computes.
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> cimc::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| guarded(f)).map_err(to_py)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CimcError", py.get_type::<CimcError>())?;
    m.add("CimcInternalError", py.get_type::<CimcInternalError>())?;
    m.add_class::<program::Model>()?;
    m.add_class::<program::Program>()?;
    m.add_class::<stream::Stream>()?;
    m.add_function(wrap_pyfunction!(program::load, m)?)?;
    m.add_function(wrap_pyfunction!(program::compile, m)?)?;
    m.add_function(wrap_pyfunction!(program::load_program, m)?)?;
    m.add_function(wrap_pyfunction!(stream::load_stream, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
