//! Batch slicing and concatenation of run-time tensors (for running a model over a data set).

use crate::error::{Error, Result};
use cimc_interp::{with_array, Tensor};
use ndarray::{concatenate, Axis};

/// Samples `start..start+len` of a tensor along axis 0, zero-padded (the interpreter's).
pub use cimc_interp::tensor::slice_batch;

/// Concatenates per-chunk outputs along axis 0 (`parts[chunk][output]`).
pub fn concat_batches(parts: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>> {
    let Some(first) = parts.first() else { return Ok(Vec::new()) };
    let n_out = first.len();
    let mut outs = Vec::with_capacity(n_out);
    for k in 0..n_out {
        let items: Vec<&Tensor> = parts.iter().map(|p| &p[k]).collect();
        macro_rules! cat {
            ($variant:ident) => {{
                let views: Option<Vec<_>> = items
                    .iter()
                    .map(|t| match t {
                        Tensor::$variant(a) => Some(a.view()),
                        _ => None,
                    })
                    .collect();
                let views =
                    views.ok_or_else(|| Error::Internal("chunks disagree on dtype".into()))?;
                Tensor::$variant(
                    concatenate(Axis(0), &views).map_err(|e| Error::Internal(e.to_string()))?,
                )
            }};
        }
        let t = match items[0] {
            Tensor::F32(_) => cat!(F32),
            Tensor::F64(_) => cat!(F64),
            Tensor::I8(_) => cat!(I8),
            Tensor::U8(_) => cat!(U8),
            Tensor::I16(_) => cat!(I16),
            Tensor::U16(_) => cat!(U16),
            Tensor::I32(_) => cat!(I32),
            Tensor::I64(_) => cat!(I64),
            Tensor::Bool(_) => cat!(Bool),
        };
        outs.push(t);
    }
    Ok(outs)
}

/// The number of samples (first dimension) of a tensor; 1 for a scalar.
pub fn samples(t: &Tensor) -> usize {
    with_array!(t, a => a.shape().first().copied().unwrap_or(1))
}
