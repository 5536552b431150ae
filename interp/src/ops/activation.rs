//! Activations (Relu, Clip, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Tanh), inference
//! BatchNorm and Softmax.
//!
//! The activations and BatchNorm work in place on an owned tensor. [`Act`] and
//! [`affine_nc`] are also the epilogue of a convolution fused by the runner: the fused and
//! the unfused paths run the very same code, so their results are bit-identical.

use super::num::{Arith, Elem, Float};
use super::{bad, contiguous, floats, unsupported, PAR_MIN};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::Op;
use ndarray::ArrayD;
use rayon::prelude::*;

/// An elementwise float activation, with its parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Act {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    HardSigmoid(f32, f32),
    HardSwish,
    Tanh,
    /// Bounds as f64 (exact for f32 and f64 tensors).
    Clip(f64, f64),
}

impl Act {
    /// Applies the activation to every element, in place.
    pub(crate) fn apply<T: Float>(self, x: &mut [T]) {
        if x.len() >= PAR_MIN {
            x.par_chunks_mut(PAR_MIN / 2).for_each(|c| self.apply_seq(c));
        } else {
            self.apply_seq(x);
        }
    }

    /// Single-threaded [`Act::apply`] (for callers already running in parallel).
    pub(crate) fn apply_seq<T: Float>(self, x: &mut [T]) {
        let zero = T::ZERO;
        let one = T::of(1.0);
        match self {
            // Selects, not conditional stores: these loops vectorize (a conditional store
            // compiles to a branch per element). NaN < 0 is false, so NaN passes through.
            Act::Relu => x.iter_mut().for_each(|v| *v = if *v < zero { zero } else { *v }),
            Act::LeakyRelu(alpha) => {
                let a = T::of(alpha as f64);
                x.iter_mut().for_each(|v| *v = if *v < zero { *v * a } else { *v })
            }
            Act::Sigmoid => x.iter_mut().for_each(|v| *v = one / (one + (-*v).exp())),
            Act::HardSigmoid(alpha, beta) => {
                let (a, b) = (T::of(alpha as f64), T::of(beta as f64));
                x.iter_mut().for_each(|v| *v = clamp01(a * *v + b))
            }
            Act::HardSwish => {
                let (a, b) = (T::of((1.0f32 / 6.0) as f64), T::of(0.5));
                x.iter_mut().for_each(|v| *v = *v * clamp01(a * *v + b))
            }
            Act::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
            Act::Clip(lo, hi) => {
                let (lo, hi) = (T::of(lo), T::of(hi));
                x.iter_mut().for_each(|v| *v = clip1(*v, lo, hi))
            }
        }
    }
}

#[inline(always)]
fn clamp01<T: Float>(v: T) -> T {
    let (zero, one) = (T::ZERO, T::of(1.0));
    let v = if v < one { v } else { one };
    if v > zero {
        v
    } else {
        zero
    }
}

/// ONNX Clip: `min(max(x, lo), hi)`, so `hi` wins when `lo > hi`; NaN stays NaN.
#[inline(always)]
fn clip1<T: PartialOrd + Copy>(v: T, lo: T, hi: T) -> T {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

/// An owned array in standard layout (the in-place kernels need contiguous data).
pub(crate) fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        contiguous(&a).into_owned()
    }
}

fn slice_mut<T>(a: &mut ArrayD<T>) -> &mut [T] {
    a.as_slice_mut().expect("invariant: standard() returns a contiguous array")
}

/// Relu, LeakyRelu, Sigmoid, HardSigmoid, HardSwish and Tanh on an owned tensor, in place.
/// Relu also takes every integer dtype.
pub(crate) fn unary(op: &Op, t: Tensor) -> Result<Tensor> {
    let act = super::activation_of(op).ok_or_else(|| bad("not an activation"))?;
    if act == Act::Relu {
        fn relu_int<T: Arith>(a: ArrayD<T>) -> Tensor {
            let mut a = standard(a);
            slice_mut(&mut a).iter_mut().for_each(|v| {
                if *v < T::ZERO {
                    *v = T::ZERO
                }
            });
            T::wrap(a)
        }
        match t {
            Tensor::I8(a) => return Ok(relu_int(a)),
            Tensor::I16(a) => return Ok(relu_int(a)),
            Tensor::I32(a) => return Ok(relu_int(a)),
            Tensor::I64(a) => return Ok(relu_int(a)),
            Tensor::U8(_) | Tensor::U16(_) => return Ok(t),
            _ => {}
        }
    }
    Ok(floats!(t, a => {
        let mut a = standard(a);
        act.apply(slice_mut(&mut a));
        a
    }, op.name()))
}

/// Clip of any numeric dtype; `bounds` are the min and max inputs (scalars of x's dtype; an
/// absent one leaves that side open).
pub(crate) fn clip(t: Tensor, bounds: &[&Tensor]) -> Result<Tensor> {
    if bounds.len() > 2 {
        return Err(bad(format!("expects 1 to 3 inputs, got {}", bounds.len() + 1)));
    }
    fn go<T: Elem>(a: ArrayD<T>, bounds: &[&Tensor]) -> Result<Tensor> {
        let bound = |i: usize| -> Result<Option<T>> {
            match bounds.get(i) {
                None => Ok(None),
                Some(b) => {
                    let v = T::view(b).ok_or_else(|| {
                        bad(format!("bound has dtype {}, x has {}", b.dtype(), T::DTYPE))
                    })?;
                    if v.len() != 1 {
                        return Err(bad(format!(
                            "bounds must be scalars, got {}",
                            b.type_string()
                        )));
                    }
                    Ok(v.iter().next().copied())
                }
            }
        };
        let (lo, hi) = (bound(0)?, bound(1)?);
        let mut a = standard(a);
        let s = slice_mut(&mut a);
        let apply = |c: &mut [T]| {
            for v in c {
                if let Some(lo) = lo {
                    if *v < lo {
                        *v = lo
                    }
                }
                if let Some(hi) = hi {
                    if *v > hi {
                        *v = hi
                    }
                }
            }
        };
        if s.len() >= PAR_MIN {
            s.par_chunks_mut(PAR_MIN / 2).for_each(apply);
        } else {
            apply(s);
        }
        Ok(T::wrap(a))
    }
    match t {
        Tensor::F32(a) => go(a, bounds),
        Tensor::F64(a) => go(a, bounds),
        Tensor::I8(a) => go(a, bounds),
        Tensor::U8(a) => go(a, bounds),
        Tensor::I16(a) => go(a, bounds),
        Tensor::U16(a) => go(a, bounds),
        Tensor::I32(a) => go(a, bounds),
        Tensor::I64(a) => go(a, bounds),
        Tensor::Bool(_) => Err(unsupported("clip of bool tensors")),
    }
}

/// The per-channel `a = scale / sqrt(var + eps)` and `b = bias - mean * a` of a BatchNorm.
pub(crate) fn bn_coefficients<T: Float>(
    eps: f32,
    scale: &[T],
    bias: &[T],
    mean: &[T],
    var: &[T],
) -> (Vec<T>, Vec<T>) {
    let eps = T::of(eps as f64);
    let a: Vec<T> = scale.iter().zip(var).map(|(&s, &v)| s / (v + eps).sqrt()).collect();
    let b = bias.iter().zip(mean).zip(&a).map(|((&b, &m), &a)| b - m * a).collect();
    (a, b)
}

/// Inference BatchNormalization of an owned x `[N, C, ..]` (in place) with `params` = scale,
/// bias, mean, var (each `[C]`, x's dtype).
pub(crate) fn batch_norm(eps: f32, x: Tensor, params: &[&Tensor]) -> Result<Tensor> {
    if params.len() != 4 {
        return Err(bad(format!("expects 5 inputs, got {}", params.len() + 1)));
    }
    fn go<T: Float>(eps: f32, x: ArrayD<T>, params: &[&Tensor]) -> Result<Tensor> {
        let shape = x.shape().to_vec();
        let c = if shape.len() >= 2 { shape[1] } else { 1 };
        let mut ps = Vec::with_capacity(4);
        for (i, name) in ["scale", "bias", "mean", "var"].iter().enumerate() {
            let p = T::view(params[i]).ok_or_else(|| {
                bad(format!("{name} has dtype {}, x has {}", params[i].dtype(), T::DTYPE))
            })?;
            if p.len() != c {
                return Err(bad(format!(
                    "{name} has {} elements, x {shape:?} has {c} channels",
                    p.len()
                )));
            }
            ps.push(super::data_of(p).into_owned());
        }
        let (a, b) = bn_coefficients(eps, &ps[0], &ps[1], &ps[2], &ps[3]);
        let mut y = standard(x);
        affine_nc(slice_mut(&mut y), &shape, &a, &b);
        Ok(T::wrap(y))
    }
    match x {
        Tensor::F32(a) => go::<f32>(eps, a, params),
        Tensor::F64(a) => go::<f64>(eps, a, params),
        t => Err(unsupported(format!("batch_norm of {} tensors", t.dtype()))),
    }
}

/// `y = x * a[c] + b[c]` on contiguous data of shape `[N, C, D..]` (rank 1: `[N]`, one channel).
pub(crate) fn affine_nc<T: Float>(x: &mut [T], shape: &[usize], a: &[T], b: &[T]) {
    let c = if shape.len() >= 2 { shape[1] } else { 1 };
    let inner: usize = if shape.len() >= 2 {
        shape[2..].iter().product()
    } else {
        shape.first().copied().unwrap_or(0)
    };
    if inner == 0 || c == 0 || x.is_empty() {
        return;
    }
    let per = |(i, row): (usize, &mut [T])| {
        let ch = if shape.len() >= 2 { i % c } else { 0 };
        let (a, b) = (a[ch], b[ch]);
        row.iter_mut().for_each(|v| *v = *v * a + b);
    };
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(inner).enumerate().for_each(per);
    } else {
        x.chunks_mut(inner).enumerate().for_each(per);
    }
}

/// Softmax along `axis` (opset >= 13), or, with `coerce_2d`, over the flattened trailing
/// dims from `axis` on (opset < 13).
pub(crate) fn softmax(axis: usize, coerce_2d: bool, t: &Tensor) -> Result<Tensor> {
    let shape = t.shape().to_vec();
    if axis >= shape.len().max(1) {
        return Err(bad(format!("axis {axis} out of range for rank {}", shape.len())));
    }
    let (len, inner) = if shape.is_empty() {
        (1, 1)
    } else if coerce_2d {
        (shape[axis..].iter().product::<usize>(), 1)
    } else {
        (shape[axis], shape[axis + 1..].iter().product::<usize>())
    };
    fn go<T: Float>(a: &ArrayD<T>, len: usize, inner: usize) -> ArrayD<T> {
        let mut y = standard(a.clone());
        if len == 0 || inner == 0 || y.is_empty() {
            return y;
        }
        let s = slice_mut(&mut y);
        let block = |blk: &mut [T]| {
            for j in 0..inner {
                let mut m = T::NEG_INFINITY;
                for i in 0..len {
                    let v = blk[i * inner + j];
                    if v > m {
                        m = v;
                    }
                }
                let mut sum = T::ZERO;
                for i in 0..len {
                    let e = (blk[i * inner + j] - m).exp();
                    blk[i * inner + j] = e;
                    sum += e;
                }
                for i in 0..len {
                    blk[i * inner + j] = blk[i * inner + j] / sum;
                }
            }
        };
        if s.len() >= PAR_MIN {
            // Tasks of several blocks (a ViT's attention has 2,364 rows of 197).
            let per_task = (PAR_MIN / 4 / (len * inner)).max(1) * len * inner;
            s.par_chunks_mut(per_task).for_each(|c| c.chunks_mut(len * inner).for_each(block));
        } else {
            s.chunks_mut(len * inner).for_each(block);
        }
        y
    }
    Ok(floats!(t, a => go(a, len, inner), "softmax"))
}
