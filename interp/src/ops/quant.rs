//! QuantizeLinear and DequantizeLinear: per-tensor, per-axis and blocked; QONNX's Trunc and
//! FINN's MultiThreshold (below, in f32 step by step as qonnx's executor computes them).
//!
//! Quantize: `q = saturate(round_half_even(x / scale) + zero_point)`, the division in x's
//! float type, saturating to the output dtype's range. Dequantize:
//! `y = (q - zero_point) * scale`, the difference exact (in i64), then converted to the
//! scale's float type and multiplied.

use super::cast::AsPrim;
use super::{arity, bad, unsupported};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::DType;
use ndarray::{ArrayD, IxDyn};

/// For every element of x (row-major), the index of its scale / zero point.
fn param_index(
    xs: &[usize],
    ps: &[usize],
    axis: Option<usize>,
    block: usize,
) -> Result<Vec<usize>> {
    let n: usize = xs.iter().product();
    let pn: usize = ps.iter().product();
    if pn == 1 && (block == 0 || ps.len() <= 1) {
        return Ok(vec![0; n]);
    }
    let axis =
        axis.ok_or_else(|| bad(format!("scale {ps:?} is not a scalar but no axis is given")))?;
    if axis >= xs.len() {
        return Err(bad(format!("axis {axis} out of range for x {xs:?}")));
    }
    if block == 0 {
        if ps.len() != 1 || ps[0] != xs[axis] {
            return Err(bad(format!("per-axis scale {ps:?} does not fit axis {axis} of x {xs:?}")));
        }
        let inner: usize = xs[axis + 1..].iter().product();
        return Ok((0..n).map(|i| (i / inner.max(1)) % xs[axis]).collect());
    }
    let fits = ps.len() == xs.len()
        && (0..xs.len()).all(|d| {
            if d == axis {
                ps[d] == xs[d].div_ceil(block)
            } else {
                ps[d] == xs[d]
            }
        });
    if !fits {
        return Err(bad(format!(
            "blocked scale {ps:?} does not fit x {xs:?} (axis {axis}, block {block})"
        )));
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; xs.len()];
    for _ in 0..n {
        let mut p = 0;
        for d in 0..xs.len() {
            let c = if d == axis { idx[d] / block } else { idx[d] };
            p = p * ps[d] + c;
        }
        out.push(p);
        for d in (0..xs.len()).rev() {
            idx[d] += 1;
            if idx[d] < xs[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// The zero points as i64 (zeros when absent), checking their count against the scale's.
fn zero_points(zp: Option<&&Tensor>, scale_len: usize) -> Result<Vec<i64>> {
    match zp {
        None => Ok(vec![0; scale_len]),
        Some(z) => {
            if z.numel() != scale_len {
                return Err(bad(format!(
                    "zero point {} does not match the scale's {scale_len} elements",
                    z.type_string()
                )));
            }
            Ok(crate::with_array!(z, a => a.iter().map(|v| v.i64()).collect()))
        }
    }
}

/// QuantizeLinear; the output dtype is the zero point's, or `to` without one.
pub(crate) fn quantize_linear(
    axis: Option<usize>,
    block: usize,
    to: DType,
    inputs: &[&Tensor],
) -> Result<Tensor> {
    arity(inputs, 2, 3)?;
    let (x, scale) = (inputs[0], inputs[1]);
    let out_dt = inputs.get(2).map_or(to, |z| z.dtype());
    let (lo, hi): (i64, i64) = match out_dt {
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U8 => (0, u8::MAX as i64),
        DType::I16 => (i16::MIN as i64, i16::MAX as i64),
        DType::U16 => (0, u16::MAX as i64),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        d => return Err(unsupported(format!("quantize_linear to {d}"))),
    };
    let pidx = param_index(x.shape(), scale.shape(), axis, block)?;
    let zp = zero_points(inputs.get(2), scale.numel())?;
    let shape = IxDyn(x.shape());
    let q: Vec<i64> = match (x, scale) {
        (Tensor::F32(xa), Tensor::F32(sa)) => {
            let s: Vec<f32> = sa.iter().copied().collect();
            xa.iter()
                .zip(&pidx)
                .map(|(&v, &p)| sat((v / s[p]).round_ties_even() as f64, zp[p], lo, hi))
                .collect()
        }
        (Tensor::F64(xa), Tensor::F64(sa)) => {
            let s: Vec<f64> = sa.iter().copied().collect();
            xa.iter()
                .zip(&pidx)
                .map(|(&v, &p)| sat((v / s[p]).round_ties_even(), zp[p], lo, hi))
                .collect()
        }
        (Tensor::F64(xa), Tensor::F32(sa)) => {
            let s: Vec<f64> = sa.iter().map(|&v| v as f64).collect();
            xa.iter()
                .zip(&pidx)
                .map(|(&v, &p)| sat((v / s[p]).round_ties_even(), zp[p], lo, hi))
                .collect()
        }
        _ => {
            return Err(unsupported(format!(
                "quantize_linear of {} with {} scale",
                x.dtype(),
                scale.dtype()
            )))
        }
    };
    let arr = ArrayD::from_shape_vec(shape, q).expect("invariant: one code per element");
    Ok(match out_dt {
        DType::I8 => Tensor::I8(arr.mapv(|v| v as i8)),
        DType::U8 => Tensor::U8(arr.mapv(|v| v as u8)),
        DType::I16 => Tensor::I16(arr.mapv(|v| v as i16)),
        DType::U16 => Tensor::U16(arr.mapv(|v| v as u16)),
        _ => Tensor::I32(arr.mapv(|v| v as i32)),
    })
}

/// `clamp(r + zp, lo, hi)` for a rounded value `r` (NaN gives 0 + zp clamped).
#[inline]
fn sat(r: f64, zp: i64, lo: i64, hi: i64) -> i64 {
    let r = if r.is_nan() { 0.0 } else { r };
    (r + zp as f64).clamp(lo as f64, hi as f64) as i64
}

/// DequantizeLinear of an integer tensor; the output has the scale's float dtype.
pub(crate) fn dequantize_linear(
    axis: Option<usize>,
    block: usize,
    inputs: &[&Tensor],
) -> Result<Tensor> {
    arity(inputs, 2, 3)?;
    let (x, scale) = (inputs[0], inputs[1]);
    if let Some(z) = inputs.get(2) {
        if z.dtype() != x.dtype() {
            return Err(bad(format!(
                "zero point dtype {} differs from x's {}",
                z.dtype(),
                x.dtype()
            )));
        }
    }
    if !x.dtype().is_int() {
        return Err(unsupported(format!("dequantize_linear of {} tensors", x.dtype())));
    }
    let pidx = param_index(x.shape(), scale.shape(), axis, block)?;
    let zp = zero_points(inputs.get(2), scale.numel())?;
    let shape = IxDyn(x.shape());
    let diff: Vec<i64> =
        crate::with_array!(x, a => a.iter().zip(&pidx).map(|(v, &p)| v.i64() - zp[p]).collect());
    Ok(match scale {
        Tensor::F32(sa) => {
            let s: Vec<f32> = sa.iter().copied().collect();
            let y = diff.iter().zip(&pidx).map(|(&d, &p)| d as f32 * s[p]).collect();
            Tensor::F32(ArrayD::from_shape_vec(shape, y).expect("invariant: one value per element"))
        }
        Tensor::F64(sa) => {
            let s: Vec<f64> = sa.iter().copied().collect();
            let y = diff.iter().zip(&pidx).map(|(&d, &p)| d as f64 * s[p]).collect();
            Tensor::F64(ArrayD::from_shape_vec(shape, y).expect("invariant: one value per element"))
        }
        t => return Err(unsupported(format!("dequantize_linear with a {} scale", t.dtype()))),
    })
}

/// The f32 array of input `i`, or an error naming the op.
fn f32_input<'a>(inputs: &[&'a Tensor], i: usize, op: &str) -> Result<&'a ArrayD<f32>> {
    inputs[i].as_f32().ok_or_else(|| unsupported(format!("{op} of {} tensors", inputs[i].dtype())))
}

/// QONNX's Trunc (`Op::Trunc`): `(R(clamp(round(x / s + zp) / t)) − out_zp) · out_s`, each
/// step rounded to f32 in qonnx's order.
pub(crate) fn trunc(
    rounding: cimc_ir::Rounding,
    clamp: Option<(f32, f32)>,
    inputs: &[&Tensor],
) -> Result<Tensor> {
    arity(inputs, 6, 6)?;
    let x = f32_input(inputs, 0, "trunc")?;
    let mut params = Vec::with_capacity(5);
    for i in 1..6 {
        let p = f32_input(inputs, i, "trunc")?;
        params.push(p.broadcast(x.raw_dim()).ok_or_else(|| {
            bad(format!("input {i} {:?} does not broadcast to x {:?}", p.shape(), x.shape()))
        })?);
    }
    let (s, zp, t, out_zp, out_s) = (&params[0], &params[1], &params[2], &params[3], &params[4]);
    let (lo, hi) = clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let values = x
        .iter()
        .zip(s.iter().zip(zp.iter()))
        .zip(t.iter().zip(out_zp.iter().zip(out_s.iter())))
        .map(|((&x, (&s, &zp)), (&t, (&out_zp, &out_s)))| {
            let codes = (x / s + zp).round_ties_even() / t;
            // qonnx clamps with `where(y > hi, hi, y)` then `where(y < lo, lo, y)`.
            let clamped = if codes > hi {
                hi
            } else if codes < lo {
                lo
            } else {
                codes
            };
            (rounding.apply(clamped) - out_zp) * out_s
        })
        .collect();
    let y = ArrayD::from_shape_vec(x.raw_dim(), values)
        .map_err(|e| bad(format!("trunc output: {e}")))?;
    Ok(Tensor::F32(y))
}

/// FINN's MultiThreshold (`Op::MultiThreshold`): per element, the number of its channel's
/// thresholds it is at or above (a threshold table of one row serves every channel), then
/// `out_scale · count + out_bias` in f32.
pub(crate) fn multi_threshold(
    out_scale: f32,
    out_bias: f32,
    channels_last: bool,
    inputs: &[&Tensor],
) -> Result<Tensor> {
    arity(inputs, 2, 2)?;
    let x = f32_input(inputs, 0, "multi_threshold")?;
    let t = f32_input(inputs, 1, "multi_threshold")?;
    let axis = if channels_last { x.ndim().saturating_sub(1) } else { 1 };
    let channels = x.shape().get(axis).copied().unwrap_or(0);
    let rows = t.shape().first().copied().unwrap_or(0);
    if t.ndim() != 2 || (rows != 1 && rows != channels) {
        return Err(bad(format!(
            "thresholds {:?} need 1 or {channels} rows of x {:?}",
            t.shape(),
            x.shape()
        )));
    }
    let t = super::contiguous(t);
    let t = t.as_slice().expect("invariant: a standard-layout array is contiguous");
    let per_row = t.len() / rows.max(1);
    // In row-major order, element i lies in channel (i / inner) % channels.
    let inner: usize = x.shape()[axis + 1..].iter().product();
    let mut y = super::contiguous(x).into_owned();
    let values = y.as_slice_mut().expect("invariant: a standard-layout array is contiguous");
    for (i, v) in values.iter_mut().enumerate() {
        let row = if rows == 1 { 0 } else { (i / inner.max(1)) % channels };
        let count = t[row * per_row..(row + 1) * per_row].iter().filter(|&&th| *v >= th).count();
        *v = out_scale * count as f32 + out_bias;
    }
    Ok(Tensor::F32(y))
}
