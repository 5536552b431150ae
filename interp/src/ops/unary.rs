//! The kernel of [`UnaryOp`] (`Op::Unary`): each member's function ([`UnaryOp::apply`], in
//! `ir/src/unary.rs`) at every element, computed in f64 and rounded once to the tensor's
//! dtype; large tensors are split over threads.

use super::num::Float;
use super::{floats, PAR_MIN};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::UnaryOp;
use ndarray::ArrayD;
use rayon::prelude::*;

/// `f` applied to every element of a float tensor, in place.
pub(crate) fn eval(f: UnaryOp, t: Tensor) -> Result<Tensor> {
    if let (UnaryOp::Erf, Tensor::F32(a)) = (f, &t) {
        if a.is_standard_layout() {
            let Tensor::F32(a) = t else { unreachable!("invariant: matched F32 just above") };
            return Ok(Tensor::F32(erf_f32(a)));
        }
    }
    Ok(floats!(t, a => map(f, a), f.name()))
}

/// Erf of an f32 tensor through the fast path of `erf_fast.rs` (the same values), split over
/// threads when large.
fn erf_f32(mut a: ArrayD<f32>) -> ArrayD<f32> {
    let x = a.as_slice_mut().expect("invariant: the caller checked the standard layout");
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(PAR_MIN / 2).for_each(super::erf_fast::erf_f32);
    } else {
        super::erf_fast::erf_f32(x);
    }
    a
}

fn map<T: Float>(f: UnaryOp, a: ArrayD<T>) -> ArrayD<T> {
    let mut a = super::activation::standard(a);
    let x = a.as_slice_mut().expect("invariant: standard() returns a contiguous array");
    let run = |c: &mut [T]| c.iter_mut().for_each(|v| *v = T::of(f.apply(v.to_f64())));
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(PAR_MIN / 2).for_each(run);
    } else {
        run(x);
    }
    a
}
