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

/// The member's value over the elements `xs` (in f64; `n` of them).
fn value<I: Iterator<Item = f64> + Clone>(op: ReduceOp, xs: I, n: usize) -> f64 {
    match op {
        ReduceOp::Mean => xs.sum::<f64>() / n as f64,
        ReduceOp::Sum => xs.sum(),
        ReduceOp::Max => xs.fold(f64::NEG_INFINITY, |m, x| if x > m || x.is_nan() { x } else { m }),
        ReduceOp::Min => xs.fold(f64::INFINITY, |m, x| if x < m || x.is_nan() { x } else { m }),
        ReduceOp::Prod => xs.product(),
        ReduceOp::L2 => xs.map(|x| x * x).sum::<f64>().sqrt(),
        ReduceOp::SumSquare => xs.map(|x| x * x).sum(),
        ReduceOp::L1 => xs.map(f64::abs).sum(),
        ReduceOp::LogSum => xs.sum::<f64>().ln(),
        ReduceOp::LogSumExp => {
            let m = value(ReduceOp::Max, xs.clone(), n);
            if m.is_infinite() {
                return m;
            }
            m + xs.map(|x| (x - m).exp()).sum::<f64>().ln()
        }
    }
}

/// `∂y / ∂x` for element `i` of the run `xs` whose reduction is `y`. Max and Min pass the
/// gradient to every element equal to the result.
fn partial(op: ReduceOp, xs: &[f64], i: usize, y: f64) -> f64 {
    let x = xs[i];
    match op {
        ReduceOp::Mean => 1.0 / xs.len() as f64,
        ReduceOp::Sum => 1.0,
        ReduceOp::Max | ReduceOp::Min => {
            if x == y {
                1.0
            } else {
                0.0
            }
        }
        // The product of the others: y / x, unless x is 0.
        ReduceOp::Prod if x != 0.0 => y / x,
        ReduceOp::Prod => xs.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, v)| v).product(),
        ReduceOp::L2 if y == 0.0 => 0.0,
        ReduceOp::L2 => x / y,
        ReduceOp::SumSquare => 2.0 * x,
        ReduceOp::L1 => {
            if x >= 0.0 {
                1.0
            } else {
                -1.0
            }
        }
        ReduceOp::LogSum => (-y).exp(),
        ReduceOp::LogSumExp => (x - y).exp(),
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
            T::of(value(r.op, run.iter().map(|v| v.to_f64()), n))
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
        let run = &data[k * n..(k + 1) * n];
        for (i, d) in dx[k * n..(k + 1) * n].iter_mut().enumerate() {
            *d = gk * partial(r.op, run, i, yk);
        }
    }
    let permuted: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let mut inverse = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    super::array(&permuted, dx).permuted_axes(IxDyn(&inverse)).as_standard_layout().to_owned()
}

/// ArgMax (`max`) or ArgMin of a numeric tensor along `axis`: the index (i64) of the first
/// extreme element, or of the last with `select_last`. A NaN counts as the extreme (as numpy).
pub(crate) fn arg_extreme(
    t: &Tensor,
    axis: usize,
    keep_dims: bool,
    select_last: bool,
    max: bool,
) -> Result<Tensor> {
    fn typed<T: PartialOrd + Copy>(
        a: &ArrayD<T>,
        axis: usize,
        select_last: bool,
        max: bool,
    ) -> Result<Vec<i64>> {
        if axis >= a.ndim() || a.shape()[axis] == 0 {
            return Err(super::bad(format!("no elements along axis {axis} of {:?}", a.shape())));
        }
        let better = |v: T, best: T| {
            let nan = v.partial_cmp(&v).is_none();
            let best_nan = best.partial_cmp(&best).is_none();
            let ord = if max { v.partial_cmp(&best) } else { best.partial_cmp(&v) };
            match ord {
                _ if best_nan => select_last && nan,
                _ if nan => true,
                Some(std::cmp::Ordering::Greater) => true,
                Some(std::cmp::Ordering::Equal) => select_last,
                _ => false,
            }
        };
        Ok(a.lanes(ndarray::Axis(axis))
            .into_iter()
            .map(|lane| {
                let mut best = 0;
                for (i, &v) in lane.iter().enumerate().skip(1) {
                    if better(v, lane[best]) {
                        best = i;
                    }
                }
                best as i64
            })
            .collect())
    }
    let idx = crate::with_array!(t, a => typed(a, axis, select_last, max))?;
    let mut shape = t.shape().to_vec();
    if keep_dims {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    Ok(Tensor::I64(super::array(&shape, idx)))
}
