//! The functions of [`VariadicOp`] (`Op::Variadic`): one or more tensors of one dtype,
//! numpy-broadcast to one shape. Each member's value (folded input by input) and partial
//! derivatives, one arm each.

use super::elementwise;
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::{Op, VariadicOp};

/// `f` of the inputs (at least one; the importer and the verifier check the count).
pub(crate) fn eval(f: VariadicOp, inputs: &[&Tensor]) -> Result<Tensor> {
    let (first, rest) =
        inputs.split_first().ok_or_else(|| super::bad("expects 1 or more inputs"))?;
    match f {
        // In input order, as a chain of Adds: the same numbers, and every dtype Add takes.
        VariadicOp::Sum => {
            let mut acc = (*first).clone();
            for t in rest {
                acc = elementwise::binary(&Op::Add, &acc, t)?;
            }
            Ok(acc)
        }
    }
}

/// `∂y / ∂x_i` at one element, where `x_i` is the element of input `i` (broadcast), `y` the
/// output and `n` the number of inputs (the backward of `Op::Variadic`).
pub(crate) fn partial(f: VariadicOp, _x_i: f64, _y: f64, _n: usize) -> f64 {
    match f {
        VariadicOp::Sum => 1.0,
    }
}
