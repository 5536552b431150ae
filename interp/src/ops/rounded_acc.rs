//! Dot products whose every partial sum is rounded to a reduced float format (the
//! accumulation of a [`crate::format::Precision`]): Conv (through its im2col matrix) and
//! Gemm/MatMul on f32.
//!
//! Why a loop of its own: a GEMM kernel sums in f32 registers in blocked order, so it cannot
//! round after each add. Here each output is `s = 0; for k in 0..K { s = round(s + w[k]·x[k]) }`
//! in ascending `k`, the product exact (an f32 × f32 product is exact in f64) and each add
//! rounded once from the exact sum ([`FloatFormat::round_sum`]); the bias is one more rounded
//! add. It is a plain loop, parallel over output rows: 10–30× slower than the GEMM path, which
//! stays the path for fp32 accumulation.

use super::gemm::Mat;
use super::{arity, array, bad, data_of, same_dtype, unsupported, PAR_MIN};
use crate::error::Result;
use crate::format::FloatFormat;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// `c[m×n] = a[m×k] · b[k×n]` with every partial sum rounded to `fmt` (c is overwritten).
pub(crate) fn gemm_rounded(
    m: usize,
    k: usize,
    n: usize,
    a: Mat<'_, f32>,
    b: Mat<'_, f32>,
    c: &mut [f32],
    fmt: FloatFormat,
) {
    let row = |(i, out): (usize, &mut [f32])| {
        for (j, o) in out.iter_mut().enumerate() {
            let mut s = 0f64;
            for p in 0..k {
                let prod = a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
                s = fmt.round_sum(s, prod);
            }
            *o = s as f32;
        }
    };
    let c = &mut c[..m * n];
    if m * n * k >= PAR_MIN && n > 0 {
        c.par_chunks_mut(n).enumerate().for_each(row);
    } else if n > 0 {
        c.chunks_mut(n).enumerate().for_each(row);
    }
}

/// Adds `b` to `v` as one rounded add.
pub(crate) fn add_rounded(v: &mut f32, b: f32, fmt: FloatFormat) {
    *v = fmt.round_sum(*v as f64, b as f64) as f32;
}

/// ONNX Gemm (`Y = alpha·A'·B' + beta·C`) on f32 with a rounded accumulation: the dot products
/// are accumulated in `fmt`, then scaled by `alpha` and `beta·C` added (each one rounded step).
pub(crate) fn gemm_op(
    alpha: f32,
    beta: f32,
    ta: bool,
    tb: bool,
    inputs: &[&Tensor],
    fmt: FloatFormat,
) -> Result<Tensor> {
    arity(inputs, 2, 3)?;
    same_dtype(inputs)?;
    let (Some(a), Some(b)) = (inputs[0].as_f32(), inputs[1].as_f32()) else {
        return Err(unsupported(format!(
            "gemm with a reduced accumulation format on {} tensors (f32 only)",
            inputs[0].dtype()
        )));
    };
    let (ash, bsh) = (a.shape(), b.shape());
    if ash.len() != 2 || bsh.len() != 2 {
        return Err(bad(format!("A and B must be 2-D, got {ash:?} and {bsh:?}")));
    }
    let (m, k) = if ta { (ash[1], ash[0]) } else { (ash[0], ash[1]) };
    let (k2, n) = if tb { (bsh[1], bsh[0]) } else { (bsh[0], bsh[1]) };
    if k != k2 {
        return Err(bad(format!("inner dims differ: A' is {m}x{k}, B' is {k2}x{n}")));
    }
    let (ad, bd) = (data_of(a), data_of(b));
    let am = if ta { Mat::rows_t(&ad, m) } else { Mat::rows(&ad, k) };
    let bm = if tb { Mat::rows_t(&bd, k) } else { Mat::rows(&bd, n) };
    let mut out = vec![0f32; m * n];
    gemm_rounded(m, k, n, am, bm, &mut out, fmt);
    if alpha != 1.0 {
        out.iter_mut().for_each(|v| *v = fmt.round_f64(*v as f64 * alpha as f64) as f32);
    }
    if let Some(c) = inputs.get(2) {
        let c = c.as_f32().ok_or_else(|| bad("C must be f32"))?;
        let bc = c
            .broadcast(ndarray::IxDyn(&[m, n]))
            .ok_or_else(|| bad(format!("C {:?} does not broadcast to [{m}, {n}]", c.shape())))?;
        for (v, &cv) in out.iter_mut().zip(bc.iter()) {
            let t = fmt.round_f64(beta as f64 * cv as f64) as f32;
            add_rounded(v, t, fmt);
        }
    }
    Ok(Tensor::F32(array(&[m, n], out)))
}

/// MatMul of f32 operands with a rounded accumulation: `[.., M, K] × [K, N]` (B one matrix,
/// A's leading dimensions folded into rows), the case of the CNNs' classifier heads.
pub(crate) fn matmul(inputs: &[&Tensor], fmt: FloatFormat) -> Result<Tensor> {
    arity(inputs, 2, 2)?;
    let (Some(a), Some(b)) = (inputs[0].as_f32(), inputs[1].as_f32()) else {
        return Err(unsupported("matmul with a reduced accumulation format: f32 operands only"));
    };
    let (ash, bsh) = (a.shape().to_vec(), b.shape().to_vec());
    if ash.len() < 2 || bsh.len() != 2 || ash[ash.len() - 1] != bsh[0] {
        return Err(unsupported(format!(
            "matmul {ash:?} x {bsh:?} with a reduced accumulation format (supported: [.., M, K] x [K, N])"
        )));
    }
    let (k, n) = (bsh[0], bsh[1]);
    let rows = a.len() / k.max(1);
    let (ad, bd) = (data_of(a), data_of(b));
    let mut out = vec![0f32; rows * n];
    gemm_rounded(rows, k, n, Mat::rows(&ad, k), Mat::rows(&bd, n), &mut out, fmt);
    let mut shape = ash[..ash.len() - 1].to_vec();
    shape.push(n);
    Ok(Tensor::F32(array(&shape, out)))
}
