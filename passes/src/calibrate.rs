//! `calibrate`: quantization parameters for every value that has none yet.
//!
//! Requires: a float graph (after `fold-bn` and `canonicalize`, so that ranges are those of the
//! tensors the chip will hold: a Conv's output after its fused ReLU). Calibration data in the
//! [`PassContext`] unless every activation is already annotated (a model quantized elsewhere).
//!
//! Does: runs the float interpreter on the calibration samples (in chunks) and sets, on each
//! unannotated activation, per-tensor `QuantParams` from its range — min-max, a percentile, or
//! the MSE-optimal clipping range (from a 2048-bin histogram) — at the layer's `abits`; on each
//! unannotated constant weight of a Conv/Gemm/MatMul, per-output-channel symmetric parameters
//! (narrow range, min-max or MSE-optimal clipping) at the layer's `wbits`. Outputs of
//! pass-through ops (MaxPool, Reshape, ...) take their input's parameters.
//!
//! A graph output produced by a Conv/Gemm/MatMul is not requantized: it is read out as the
//! 32-bit accumulator, annotated with the accumulator's own scale `s_x · s_w[n]` per output
//! channel (exact, and needs no calibration — as a Brevitas model whose logits are float means).
//!
//! Guarantees: every f32 activation feeding or produced by a quantizable op is annotated; the
//! graph's float semantics are unchanged (annotations only).

use crate::config::{check_bits, CalibMethod, WeightMethod};
use crate::error::{PassError, Result};
use crate::util::{
    activation_params, by_channel, const_weight, is_float_epilogue, is_pass_through,
};
use crate::{Pass, PassContext, Stats};
use cimc_interp::{Runner, Tensor};
use cimc_ir::{DType, Graph, QuantParams, ValueDef, ValueId};

pub struct Calibrate;

const BINS: usize = 2048;

impl Pass for Calibrate {
    fn name(&self) -> &'static str {
        "calibrate"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<Stats> {
        let cfg = &cx.config;
        check_bits("wbits", cfg.wbits)?;
        check_bits("abits", cfg.abits)?;
        for name in cfg.layers.keys() {
            if !g.nodes().any(|(_, n)| &n.name == name) {
                return Err(PassError::Config(format!(
                    "per-layer bits given for '{name}', which is no node of the model"
                )));
            }
        }
        let mut stats = Stats::new();
        // Weights.
        for n in g.node_ids() {
            let Some((w, axis)) = const_weight(g, n) else { continue };
            if g.ty(w).quant.is_some() || g.ty(w).dtype != DType::F32 {
                continue;
            }
            let bits = cfg.wbits_of(&g.node(n).name);
            let data = g
                .value(w)
                .const_data()
                .expect("invariant: const_weight returns constants")
                .to_f32_vec();
            let shape = g.ty(w).shape.clone();
            let q = weight_params(&data, &shape, axis, bits, cfg.weight_method);
            g.value_mut(w).ty.quant = Some(q);
            *stats.entry("weights annotated").or_default() += 1;
        }
        // Activations: which values, and at which bits.
        let targets = activation_targets(g, cfg);
        let accumulators = accumulator_outputs(g);
        let todo: Vec<(ValueId, u8)> = targets
            .iter()
            .copied()
            .filter(|(v, _)| g.ty(*v).quant.is_none() && !accumulators.contains(v))
            .collect();
        if !todo.is_empty() {
            let calib = cx.calib.as_ref().ok_or_else(|| {
                PassError::Missing(format!(
                    "calibration data is needed for {} activation(s) without quantization parameters (e.g. '{}'): give --calib x.npy",
                    todo.len(),
                    g.value(todo[0].0).name
                ))
            })?;
            let ranges =
                observe_ranges(g, &todo.iter().map(|t| t.0).collect::<Vec<_>>(), calib, cx)?;
            for ((v, bits), r) in todo.iter().zip(ranges) {
                g.value_mut(*v).ty.quant = Some(activation_params(r.0, r.1, *bits, cfg.act_signed));
            }
            *stats.entry("activations calibrated").or_default() += todo.len() as u64;
        }
        // Pass-through outputs take their input's parameters (in order, so chains propagate).
        for n in g.node_ids() {
            let node = g.node(n);
            if !is_pass_through(&node.op) {
                continue;
            }
            let Some(q) = node.inputs.first().and_then(|&i| g.ty(i).quant.clone()) else {
                continue;
            };
            let out = node.outputs[0];
            if g.ty(out).dtype == DType::F32 && g.ty(out).quant.is_none() {
                let q = if q.axis.is_some() { q } else { q.clone() };
                g.value_mut(out).ty.quant = Some(q);
                *stats.entry("pass-through annotated").or_default() += 1;
            }
        }
        for v in accumulators {
            let p = g.producer(v).expect("invariant: accumulator outputs have a producer");
            let node = g.node(p);
            let (xq, wq) = (g.ty(node.inputs[0]).quant.clone(), g.ty(node.inputs[1]).quant.clone());
            let (Some(xq), Some(wq)) = (xq, wq) else {
                return Err(PassError::Missing(format!(
                    "output '{}': its layer's input or weights have no parameters",
                    g.value(v).name
                )));
            };
            let channels = g.ty(v).shape.get(1).copied().unwrap_or(1);
            let scale: Vec<f32> = (0..channels)
                .map(|c| xq.scale[0] * wq.scale[if wq.scale.len() == 1 { 0 } else { c }])
                .collect();
            g.value_mut(v).ty.quant = Some(QuantParams {
                bits: 32,
                signed: true,
                scale,
                zero_point: vec![0; channels],
                axis: Some(1),
            });
            *stats.entry("outputs read as accumulators").or_default() += 1;
        }
        Ok(stats)
    }
}

/// The f32 activations the integer program holds, with the bits each gets: graph inputs (default
/// `abits`) and outputs of non-pass-through, non-float nodes (their node's `abits`), in id order.
fn activation_targets(g: &Graph, cfg: &crate::QuantConfig) -> Vec<(ValueId, u8)> {
    let mut out = Vec::new();
    for &v in g.inputs() {
        if g.ty(v).dtype == DType::F32 {
            out.push((v, cfg.abits));
        }
    }
    for (_, node) in g.nodes() {
        if is_pass_through(&node.op) || is_float_epilogue(&node.op) {
            continue;
        }
        for &o in &node.outputs {
            if g.ty(o).dtype == DType::F32 {
                out.push((o, cfg.abits_of(&node.name)));
            }
        }
    }
    out
}

/// Graph outputs produced by a matrix op, without parameters: read out as accumulators.
fn accumulator_outputs(g: &Graph) -> Vec<ValueId> {
    g.outputs()
        .iter()
        .copied()
        .filter(|&v| g.ty(v).quant.is_none() && g.ty(v).dtype == DType::F32 && g.ty(v).rank() >= 2)
        .filter(|&v| {
            g.producer(v)
                .is_some_and(|p| g.node(p).op.is_matrix_op() && const_weight(g, p).is_some())
        })
        .collect()
}

/// Per-channel symmetric weight parameters (narrow range), axis `axis`.
pub fn weight_params(
    data: &[f32],
    shape: &[usize],
    axis: usize,
    bits: u8,
    method: WeightMethod,
) -> QuantParams {
    let qmax = ((1i32 << (bits - 1)) - 1) as f32;
    let scale: Vec<f32> = by_channel(data, shape, axis)
        .iter()
        .map(|ch| {
            let m = ch.iter().fold(0f32, |a, &v| a.max(v.abs()));
            if m == 0.0 {
                return 1.0;
            }
            match method {
                WeightMethod::MinMax => m / qmax,
                WeightMethod::Mse => {
                    let err = |s: f32| -> f64 {
                        ch.iter()
                            .map(|&w| {
                                let q = (w / s).round_ties_even().clamp(-qmax, qmax);
                                let d = (w - q * s) as f64;
                                d * d
                            })
                            .sum()
                    };
                    (50..=100)
                        .map(|k| m * k as f32 / 100.0 / qmax)
                        .map(|s| (err(s), s))
                        .fold(
                            (f64::INFINITY, m / qmax),
                            |best, c| if c.0 < best.0 { c } else { best },
                        )
                        .1
                }
            }
        })
        .collect();
    let c = scale.len();
    QuantParams { bits, signed: true, scale, zero_point: vec![0; c], axis: Some(axis) }
}

/// The calibration range `(lo, hi)` of each value in `values`, by the configured method.
fn observe_ranges(
    g: &Graph,
    values: &[ValueId],
    calib: &[Tensor],
    cx: &PassContext,
) -> Result<Vec<(f32, f32)>> {
    let n_all = calib.first().map(|t| t.shape().first().copied().unwrap_or(1)).unwrap_or(0);
    let n = cx.config.calib_samples.map_or(n_all, |k| k.min(n_all));
    if n == 0 {
        return Err(PassError::Missing("the calibration data holds no samples".into()));
    }
    // A copy of the graph whose outputs are the observed values. Graphs are static: the samples
    // go through in chunks of the graph's own batch (the last one zero-padded).
    let chunk =
        g.inputs().first().and_then(|&v| g.ty(v).shape.first().copied()).unwrap_or(1).max(1);
    let mut probe = g.clone();
    probe.set_outputs(values.to_vec());
    let runner = Runner::new(&probe)?;
    let mut mins = vec![f32::INFINITY; values.len()];
    let mut maxs = vec![f32::NEG_INFINITY; values.len()];
    let needs_hist = !matches!(cx.config.calib_method, CalibMethod::MinMax);
    let passes = if needs_hist { 2 } else { 1 };
    let mut hists = vec![vec![0u64; BINS]; values.len()];
    for pass in 0..passes {
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let inputs = calib
                .iter()
                .map(|t| slice(t, start, len, chunk))
                .collect::<Result<Vec<Tensor>>>()?;
            let outs = runner.run(inputs)?;
            for (k, t) in outs.iter().enumerate() {
                let Some(a) = t.as_f32() else { continue };
                // Only the real samples of a zero-padded last chunk.
                let per = a.len() / chunk;
                let vals = &a.as_slice().expect("invariant: interpreter outputs are contiguous")
                    [..per * len];
                if pass == 0 {
                    for &v in vals {
                        if v.is_finite() {
                            mins[k] = mins[k].min(v);
                            maxs[k] = maxs[k].max(v);
                        }
                    }
                } else {
                    let (lo, hi) = (mins[k].min(0.0), maxs[k].max(0.0));
                    let w = (hi - lo).max(f32::MIN_POSITIVE) / BINS as f32;
                    for &v in vals {
                        if v.is_finite() {
                            let b = (((v - lo) / w) as usize).min(BINS - 1);
                            hists[k][b] += 1;
                        }
                    }
                }
            }
            start += len;
            if let Some(p) = &cx.progress {
                p((pass * n + start) as u64, (passes * n) as u64);
            }
        }
    }
    let bits_of = |v: ValueId| -> u8 {
        match g.value(v).def {
            ValueDef::Node { node, .. } => cx.config.abits_of(&g.node(node).name),
            _ => cx.config.abits,
        }
    };
    Ok((0..values.len())
        .map(|k| {
            let (lo, hi) = (mins[k].min(0.0), maxs[k].max(0.0));
            if !lo.is_finite() || !hi.is_finite() {
                return (0.0, 0.0);
            }
            match cx.config.calib_method {
                CalibMethod::MinMax => (lo, hi),
                CalibMethod::Percentile(p) => percentile_range(&hists[k], lo, hi, p),
                CalibMethod::Mse => mse_range(&hists[k], lo, hi, bits_of(values[k])),
            }
        })
        .collect())
}

fn bin_center(lo: f32, hi: f32, b: usize) -> f32 {
    lo + (b as f32 + 0.5) * (hi - lo) / BINS as f32
}

/// The `p`-th percentile on the high side and `100 − p` on the low side (0 stays in the range).
fn percentile_range(h: &[u64], lo: f32, hi: f32, p: f64) -> (f32, f32) {
    let total: u64 = h.iter().sum();
    if total == 0 {
        return (lo, hi);
    }
    let cut = ((1.0 - p / 100.0) * total as f64).floor() as u64;
    let edge = |b: usize| lo + b as f32 * (hi - lo) / BINS as f32;
    let mut acc = 0;
    let mut top = BINS;
    for b in (0..BINS).rev() {
        acc += h[b];
        if acc > cut {
            top = b + 1;
            break;
        }
    }
    acc = 0;
    let mut bottom = 0;
    for (b, &c) in h.iter().enumerate() {
        acc += c;
        if acc > cut {
            bottom = b;
            break;
        }
    }
    (if lo < 0.0 { edge(bottom).min(0.0) } else { lo }, edge(top).max(0.0))
}

/// The range `α·[lo, hi]`, α ∈ [0.2, 1], minimizing clipping error plus uniform rounding noise
/// (`step² / 12` per value) over the histogram.
fn mse_range(h: &[u64], lo: f32, hi: f32, bits: u8) -> (f32, f32) {
    let levels = ((1u64 << bits) - 1) as f64;
    let mut best = (f64::INFINITY, lo, hi);
    for k in 20..=100 {
        let a = k as f32 / 100.0;
        let (l, u) = (lo * a, hi * a);
        let step = ((u - l) as f64 / levels).max(1e-30);
        let mut err = 0.0;
        for (b, &c) in h.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let x = bin_center(lo, hi, b);
            let e = if x > u {
                ((x - u) as f64).powi(2)
            } else if x < l {
                ((l - x) as f64).powi(2)
            } else {
                step * step / 12.0
            };
            err += e * c as f64;
        }
        if err < best.0 {
            best = (err, l, u);
        }
    }
    (best.1, best.2)
}

/// Samples `start..start+len` of a calibration tensor, zero-padded to `padded` samples.
pub(crate) fn slice(t: &Tensor, start: usize, len: usize, padded: usize) -> Result<Tensor> {
    use ndarray::{Axis, IxDyn, Slice};
    let Tensor::F32(a) = t else {
        return Err(PassError::Config(format!("calibration data must be f32, got {}", t.dtype())));
    };
    let part = a.slice_axis(Axis(0), Slice::from(start..start + len));
    let mut shape = a.shape().to_vec();
    shape[0] = padded;
    let mut out = ndarray::ArrayD::zeros(IxDyn(&shape));
    out.slice_axis_mut(Axis(0), Slice::from(0..len)).assign(&part);
    Ok(Tensor::F32(out))
}
