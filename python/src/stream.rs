//! The `Stream` class: `cimc sim` (the simulator, the cost model) and `cimc disasm` on arrays.

use crate::arrays::{borrow_all, input_name, list_to_python, raw, tensors};
use crate::detached;
use cimc::{Error, Result};
use cimc_backends::stream::{cost, text, Stream as CimcStream};
use cimc_backends::target::Target;
use cimc_sim::stream::StreamRunner;
use pyo3::prelude::*;
use std::path::PathBuf;

/// An instruction stream for one chip (`.cims`).
#[pyclass(frozen, module = "cimc._native")]
pub struct Stream {
    stream: CimcStream,
}

impl Stream {
    pub(crate) fn new(stream: CimcStream) -> Stream {
        Stream { stream }
    }

    /// The target of the cost figures: the one the stream records, or `name` when it maps the
    /// same way (the rule of `cimc sim --target`).
    fn target(&self, name: Option<&str>) -> Result<Target> {
        let s = &self.stream;
        let recorded = s.target.as_ref().and_then(|r| r.target());
        let (stamp_name, stamp_hash) =
            s.target.as_ref().map(|r| r.name_and_hash()).unwrap_or_default();
        match (name, recorded) {
            (None, Some(t)) => Ok(t.clone()),
            (Some(n), _) => {
                let t = Target::resolve(n).map_err(|e| Error::Usage(e.to_string()))?;
                if t.hash_hex() != stamp_hash {
                    return Err(Error::Usage(format!(
                        "--target {n}: '{}' (hash {}) maps differently from '{stamp_name}' \
                         (hash {stamp_hash}), the target the stream was emitted for",
                        t.name,
                        t.hash_hex()
                    )));
                }
                Ok(t)
            }
            (None, None) => Err(Error::Usage(
                "the stream names no target: give --target for its cost figures".into(),
            )),
        }
    }
}

#[pymethods]
impl Stream {
    /// Runs the stream on the simulator (`cimc sim`): one array per stream input, of exactly
    /// the stream's input shape.
    fn simulate(&self, py: Python<'_>, inputs: Vec<Bound<'_, PyAny>>) -> PyResult<Vec<Py<PyAny>>> {
        let borrowed = borrow_all(&inputs)?;
        let raw = raw(&borrowed)?;
        let outs = detached(py, || {
            let x = tensors(&raw)?;
            let s = &self.stream;
            if x.len() != s.inputs.len() {
                return Err(Error::Usage(format!(
                    "the stream has {} input(s), {} --input file(s) given",
                    s.inputs.len(),
                    x.len()
                )));
            }
            for (k, (t, io)) in x.iter().zip(&s.inputs).enumerate() {
                if t.shape() != io.shape.as_slice() {
                    return Err(Error::Npy {
                        file: input_name(k),
                        msg: format!(
                            "input '{}' has shape {:?}; the file holds {:?}",
                            io.name,
                            io.shape,
                            t.shape()
                        ),
                    });
                }
            }
            Ok(StreamRunner::new(s)?.run(x)?)
        })?;
        list_to_python(py, outs)
    }

    /// The cost report (`cimc sim --report`) as JSON text.
    #[pyo3(signature = (target=None))]
    fn cost(&self, py: Python<'_>, target: Option<String>) -> PyResult<String> {
        detached(py, || {
            let t = self.target(target.as_deref())?;
            let r = cost::estimate(&self.stream, &t)?;
            Ok(serde_json::to_string(&r).expect("invariant: reports serialize"))
        })
    }

    /// The cost report's table, as `cimc sim --report` prints it.
    #[pyo3(signature = (target=None))]
    fn cost_table(&self, py: Python<'_>, target: Option<String>) -> PyResult<String> {
        detached(py, || {
            let t = self.target(target.as_deref())?;
            Ok(cimc::stream_report::table(&cost::estimate(&self.stream, &t)?))
        })
    }

    /// The stream's text form (`cimc disasm`).
    fn text(&self, py: Python<'_>) -> PyResult<String> {
        detached(py, || Ok(text::print(&self.stream)))
    }

    /// Writes the stream file (`.cims`), the bytes `cimc compile --emit stream -o` writes.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        detached(py, || cimc::compile::write_with(&path, |w| self.stream.write_to(w)))
    }

    /// The number of instructions.
    fn instructions(&self) -> usize {
        self.stream.instructions()
    }

    /// The stream's inputs: (name, shape) each.
    fn inputs(&self) -> Vec<(String, Vec<usize>)> {
        self.stream.inputs.iter().map(|io| (io.name.clone(), io.shape.clone())).collect()
    }
}

/// Reads and validates a stream file (`.cims`).
#[pyfunction]
pub fn load_stream(py: Python<'_>, path: PathBuf) -> PyResult<Stream> {
    let s = detached(py, || {
        let bytes =
            cimc_ir::files::read_regular(&path, u64::MAX).map_err(|e| Error::io(&path, e))?;
        CimcStream::from_bytes(&bytes)
            .map_err(|e| Error::Program { file: path.clone(), msg: e.to_string() })
    })?;
    Ok(Stream::new(s))
}
