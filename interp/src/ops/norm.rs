//! LRN, InstanceNormalization, LayerNormalization and LogSoftmax, computed in f64 and rounded once to the input's
//! float dtype.

use super::{array, bad, unsupported};
use crate::error::Result;
use crate::tensor::Tensor;

/// The elements of a float tensor as f64 (row-major).
pub(crate) fn floats_of(t: &Tensor, what: &str) -> Result<Vec<f64>> {
    match t {
        Tensor::F32(_) | Tensor::F64(_) => Ok(t.to_f64_vec()),
        other => Err(unsupported(format!("{what} of {} tensors", other.dtype()))),
    }
}

/// A tensor of `like`'s float dtype from f64 values.
pub(crate) fn float_like(like: &Tensor, shape: &[usize], v: Vec<f64>) -> Tensor {
    match like {
        Tensor::F64(_) => Tensor::F64(array(shape, v)),
        _ => Tensor::F32(array(shape, v.into_iter().map(|x| x as f32).collect())),
    }
}

/// LRN: `x / (bias + alpha/size · Σ x²)^beta`, the sum over channels
/// `c − ⌊(size−1)/2⌋ ..= c + ⌈(size−1)/2⌉` (within the input).
pub(crate) fn lrn(size: usize, alpha: f32, beta: f32, bias: f32, t: &Tensor) -> Result<Tensor> {
    let s = t.shape().to_vec();
    if s.len() < 3 || size == 0 {
        return Err(bad(format!("LRN needs rank >= 3 and size >= 1, got {s:?}, size {size}")));
    }
    let x = floats_of(t, "LRN")?;
    let (n, c, inner) = (s[0], s[1], s[2..].iter().product::<usize>());
    let (lo, hi) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let (alpha, beta, bias) = (alpha as f64 / size as f64, beta as f64, bias as f64);
    let mut y = vec![0.0; x.len()];
    for b in 0..n {
        for ch in 0..c {
            let (c0, c1) = (ch.saturating_sub(lo), (ch + hi).min(c - 1));
            for p in 0..inner {
                let at = |k: usize| x[(b * c + k) * inner + p];
                let sq: f64 = (c0..=c1).map(|k| at(k) * at(k)).sum();
                y[(b * c + ch) * inner + p] = at(ch) / (bias + alpha * sq).powf(beta);
            }
        }
    }
    Ok(float_like(t, &s, y))
}

/// InstanceNormalization: each (sample, channel) normalized over its spatial elements, then
/// scaled and shifted per channel.
pub(crate) fn instance_norm(epsilon: f32, inputs: &[&Tensor]) -> Result<Tensor> {
    super::arity(inputs, 3, 3)?;
    let t = inputs[0];
    let s = t.shape().to_vec();
    if s.len() < 2 {
        return Err(bad(format!("InstanceNormalization needs rank >= 2, got {s:?}")));
    }
    let (n, c, inner) = (s[0], s[1], s[2..].iter().product::<usize>());
    let x = floats_of(t, "InstanceNormalization")?;
    let (scale, bias) = (floats_of(inputs[1], "scale")?, floats_of(inputs[2], "bias")?);
    if scale.len() != c || bias.len() != c {
        return Err(bad(format!("scale and bias must have {c} elements")));
    }
    let mut y = vec![0.0; x.len()];
    for (k, (xs, ys)) in x.chunks(inner.max(1)).zip(y.chunks_mut(inner.max(1))).enumerate() {
        if k >= n * c {
            break;
        }
        let ch = k % c;
        let mean = xs.iter().sum::<f64>() / inner as f64;
        let var = xs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / inner as f64;
        let inv = 1.0 / (var + epsilon as f64).sqrt();
        for (o, v) in ys.iter_mut().zip(xs) {
            *o = (v - mean) * inv * scale[ch] + bias[ch];
        }
    }
    Ok(float_like(t, &s, y))
}

/// `v` (shaped `shape`, numpy-broadcastable to `to`) expanded to `to`, row-major.
fn broadcast_to(v: &[f64], shape: &[usize], to: &[usize]) -> Vec<f64> {
    let n: usize = to.iter().product();
    let lead = to.len() - shape.len();
    let mut strides = vec![0usize; to.len()];
    let mut s = 1;
    for (k, &d) in shape.iter().enumerate().rev() {
        strides[lead + k] = if d == 1 { 0 } else { s };
        s *= d;
    }
    (0..n)
        .map(|mut i| {
            let mut at = 0;
            for (&d, &st) in to.iter().zip(&strides).rev() {
                at += (i % d) * st;
                i /= d;
            }
            v[at]
        })
        .collect()
}

/// LayerNormalization: each group of elements over the dims from `axis` on normalized to mean 0
/// and variance 1, then scaled and shifted (scale and optional bias broadcast to those dims).
pub(crate) fn layer_norm(axis: usize, epsilon: f32, inputs: &[&Tensor]) -> Result<Tensor> {
    super::arity(inputs, 2, 3)?;
    let t = inputs[0];
    let s = t.shape().to_vec();
    if axis >= s.len() {
        return Err(bad(format!("LayerNormalization axis {axis} out of range for {s:?}")));
    }
    let normalized = &s[axis..];
    let inner: usize = normalized.iter().product();
    let affine = |k: usize, what: &str| -> Result<Vec<f64>> {
        let Some(a) = inputs.get(k) else { return Ok(vec![0.0; inner]) };
        let sh = a.shape();
        let fits = sh.len() <= normalized.len()
            && sh.iter().rev().zip(normalized.iter().rev()).all(|(&p, &q)| p == q || p == 1);
        if !fits {
            return Err(bad(format!("{what} {sh:?} does not broadcast to {normalized:?}")));
        }
        Ok(broadcast_to(&floats_of(a, what)?, sh, normalized))
    };
    let (scale, bias) = (affine(1, "scale")?, affine(2, "bias")?);
    let eps = epsilon as f64;
    Ok(match t {
        Tensor::F32(a) => {
            let x = super::data_of(a);
            let mut y = vec![0f32; x.len()];
            norm_rows(&x, &mut y, inner, &scale, &bias, eps, |v| v as f32);
            Tensor::F32(array(&s, y))
        }
        Tensor::F64(a) => {
            let x = super::data_of(a);
            let mut y = vec![0f64; x.len()];
            norm_rows(&x, &mut y, inner, &scale, &bias, eps, |v| v);
            Tensor::F64(array(&s, y))
        }
        other => {
            return Err(unsupported(format!("LayerNormalization of {} tensors", other.dtype())))
        }
    })
}

/// LayerNormalization of each row of `inner` elements of `x` into `y`, in f64 (the row's mean,
/// then its variance, each summed in order) and rounded once by `out`; rows split over threads
/// when large (each row's arithmetic is the same on any thread).
fn norm_rows<X: Copy + Into<f64> + Sync, O: Copy + Send>(
    x: &[X],
    y: &mut [O],
    inner: usize,
    scale: &[f64],
    bias: &[f64],
    eps: f64,
    out: impl Fn(f64) -> O + Sync,
) {
    if inner == 0 {
        return;
    }
    let row = |xs: &[X], ys: &mut [O]| {
        let mean = xs.iter().map(|&v| v.into()).sum::<f64>() / inner as f64;
        let var = xs
            .iter()
            .map(|&v| {
                let d = v.into() - mean;
                d * d
            })
            .sum::<f64>()
            / inner as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &v), g), b) in ys.iter_mut().zip(xs).zip(scale).zip(bias) {
            *o = out((v.into() - mean) * inv * g + b);
        }
    };
    let rows_per_task = (super::PAR_MIN / 2 / inner).max(1) * inner;
    if x.len() >= super::PAR_MIN {
        use rayon::prelude::*;
        y.par_chunks_mut(rows_per_task).zip(x.par_chunks(rows_per_task)).for_each(|(ys, xs)| {
            ys.chunks_mut(inner).zip(xs.chunks(inner)).for_each(|(yr, xr)| row(xr, yr))
        });
    } else {
        y.chunks_mut(inner).zip(x.chunks(inner)).for_each(|(yr, xr)| row(xr, yr));
    }
}

/// LogSoftmax along `axis`, or with `coerce_2d` over the flattened dims from `axis` on.
pub(crate) fn log_softmax(axis: usize, coerce_2d: bool, t: &Tensor) -> Result<Tensor> {
    let s = t.shape().to_vec();
    if axis >= s.len().max(1) {
        return Err(bad(format!("axis {axis} out of range for rank {}", s.len())));
    }
    let x = floats_of(t, "LogSoftmax")?;
    let (len, inner) = match (s.is_empty(), coerce_2d) {
        (true, _) => (1, 1),
        (false, true) => (s[axis..].iter().product::<usize>(), 1),
        (false, false) => (s[axis], s[axis + 1..].iter().product::<usize>()),
    };
    let mut y = x.clone();
    if len > 0 && inner > 0 {
        for blk in y.chunks_mut(len * inner) {
            for j in 0..inner {
                let at = |i: usize| i * inner + j;
                let m = (0..len).map(|i| blk[at(i)]).fold(f64::NEG_INFINITY, f64::max);
                let lse = m + (0..len).map(|i| (blk[at(i)] - m).exp()).sum::<f64>().ln();
                (0..len).for_each(|i| blk[at(i)] -= lse);
            }
        }
    }
    Ok(float_like(t, &s, y))
}
