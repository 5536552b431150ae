//! The functions of [`VariadicOp`] (`Op::Variadic`): one or more tensors of one dtype,
//! numpy-broadcast to one shape. Each member's value (folded input by input) and partial
//! derivatives, one arm each.

use super::elementwise;
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::{Op, VariadicOp};
use ndarray::{ArrayD, IxDyn};

/// `f` of the inputs (at least one; the importer and the verifier check the count).
pub(crate) fn eval(f: VariadicOp, inputs: &[&Tensor]) -> Result<Tensor> {
    let (first, rest) =
        inputs.split_first().ok_or_else(|| super::bad("expects 1 or more inputs"))?;
    let fold = |step: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>| -> Result<Tensor> {
        let mut acc = (*first).clone();
        for t in rest {
            acc = step(&acc, t)?;
        }
        Ok(acc)
    };
    match f {
        // In input order, as a chain of Adds: the same numbers, and every dtype Add takes.
        VariadicOp::Sum => fold(&|a, b| elementwise::binary(&Op::Add, a, b)),
        VariadicOp::Min => fold(&|a, b| elementwise::extremum(a, b, false)),
        VariadicOp::Max => fold(&|a, b| elementwise::extremum(a, b, true)),
        // The sum (as Sum), divided once by the count in the inputs' dtype, as numpy does.
        VariadicOp::Mean => {
            let sum = fold(&|a, b| elementwise::binary(&Op::Add, a, b))?;
            let n = inputs.len();
            let count = match &sum {
                Tensor::F32(_) => Tensor::F32(ArrayD::from_elem(IxDyn(&[]), n as f32)),
                Tensor::F64(_) => Tensor::F64(ArrayD::from_elem(IxDyn(&[]), n as f64)),
                other => {
                    return Err(super::unsupported(format!("mean of {} tensors", other.dtype())))
                }
            };
            elementwise::binary(&Op::Div, &sum, &count)
        }
    }
}

/// `∂y / ∂x_i` at one element, where `x_i` is the element of input `i` (broadcast), `y` the
/// output and `n` the number of inputs (the backward of `Op::Variadic`). Min and Max pass the
/// gradient to every input equal to the result.
pub(crate) fn partial(f: VariadicOp, x_i: f64, y: f64, n: usize) -> f64 {
    match f {
        VariadicOp::Sum => 1.0,
        VariadicOp::Min | VariadicOp::Max => {
            if x_i == y {
                1.0
            } else {
                0.0
            }
        }
        VariadicOp::Mean => 1.0 / n as f64,
    }
}
