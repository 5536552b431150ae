//! The reductions of [`ReduceOp`] (`Op::Reduce`): the elements along the reduced axes of each
//! output position are combined by the member's function; its partial derivative gives the
//! backward. One arm each per member. The tensor is viewed with the kept axes first and the
//! reduced ones last, so each output position's elements are one contiguous run.

use super::floats;
use super::num::Float;
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::{Reduce, ReduceOp};
use ndarray::{ArrayD, IxDyn};

/// The member's value over the elements `xs` (in f64).
fn value(op: ReduceOp, xs: &mut dyn Iterator<Item = f64>, n: usize) -> f64 {
    match op {
        ReduceOp::Mean => xs.sum::<f64>() / n as f64,
    }
}

/// `∂y / ∂x` for one element `x` of a run of `n` whose reduction is `y`.
fn partial(op: ReduceOp, _x: f64, _y: f64, n: usize) -> f64 {
    match op {
        ReduceOp::Mean => 1.0 / n as f64,
    }
}

/// The axes permutation putting the kept axes first (in order), then the reduced ones.
fn permutation(r: &Reduce, rank: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..rank).filter(|i| !r.axes.contains(i)).collect();
    perm.extend(r.axes.iter().copied().filter(|&a| a < rank));
    perm
}

/// The output shape of `r` on an input of `shape`.
fn out_shape(r: &Reduce, shape: &[usize]) -> Vec<usize> {
    (0..shape.len())
        .filter_map(|i| match (r.axes.contains(&i), r.keep_dims) {
            (false, _) => Some(shape[i]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// `r` of a float tensor.
pub(crate) fn eval(r: &Reduce, t: &Tensor) -> Result<Tensor> {
    if let Some(&a) = r.axes.iter().find(|&&a| a >= t.shape().len()) {
        return Err(super::bad(format!("axis {a} out of range for rank {}", t.shape().len())));
    }
    Ok(floats!(t, a => reduce(r, a), r.op.name()))
}

fn reduce<T: Float>(r: &Reduce, a: &ArrayD<T>) -> ArrayD<T> {
    let n: usize = r.axes.iter().map(|&i| a.shape()[i]).product();
    let view = a.view().permuted_axes(IxDyn(&permutation(r, a.ndim())));
    let runs = view.as_standard_layout();
    let data = runs.as_slice().expect("invariant: a standard-layout array is contiguous");
    let shape = out_shape(r, a.shape());
    let len: usize = shape.iter().product();
    let out: Vec<T> = (0..len)
        .map(|k| {
            let run = &data[k * n..(k + 1) * n];
            T::of(value(r.op, &mut run.iter().map(|v| v.to_f64()), n))
        })
        .collect();
    super::array(&shape, out)
}

/// The backward of `r`: the gradient of its input `x` given its output `y` and the output's
/// gradient `dy`.
pub(crate) fn backward(
    r: &Reduce,
    x: &ArrayD<f64>,
    y: &ArrayD<f64>,
    dy: &ArrayD<f64>,
) -> ArrayD<f64> {
    let perm = permutation(r, x.ndim());
    let n: usize = r.axes.iter().map(|&i| x.shape()[i]).product();
    let view = x.view().permuted_axes(IxDyn(&perm));
    let runs = view.as_standard_layout();
    let data = runs.as_slice().expect("invariant: a standard-layout array is contiguous");
    let mut dx = vec![0.0; data.len()];
    for (k, (&yk, &gk)) in y.iter().zip(dy.iter()).enumerate() {
        for i in k * n..(k + 1) * n {
            dx[i] = gk * partial(r.op, data[i], yk, n);
        }
    }
    let permuted: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let mut inverse = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    super::array(&permuted, dx).permuted_axes(IxDyn(&inverse)).as_standard_layout().to_owned()
}
