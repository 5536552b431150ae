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
//! Bits of a layer: its `mixed-precision` note (`wbits`, `abits`; [`BITS_NOTE`]) wins over the
//! per-layer overrides of the configuration, which win over the uniform `wbits` / `abits`. The
//! float observation ([`observe`]) is separate from the annotation at given bits
//! ([`annotate`]), so the same observation serves any bit widths.
//!
//! Layout ops move codes (Transpose, Reshape, Flatten, Squeeze, Unsqueeze): an unannotated input
//! of one whose output the model quantizes takes the output's parameters (onnxruntime quantizes
//! a transposed graph input after the Transpose; quantizing before it is the same codes). A
//! pass-through op whose input and output the model quantizes differently (per tensor; Brevitas
//! quantizes a nearest Resize's output on its own) moves its input's codes and a Clip with no
//! bounds after it requantizes them to the output's parameters (the program's `Rescale`, which
//! changes only the rounding); per-channel ones are refused by name.
//! The output of a float epilogue (Softmax) stays float: a quantization the model states on it
//! (onnxruntime wraps Softmax in Q/DQ) is dropped, the program computing it in float; a float
//! epilogue read by an op that runs on codes is refused by name.
//!
//! A graph output produced by a Conv/Gemm/MatMul is not requantized: it is read out as the
//! 32-bit accumulator, annotated with the accumulator's own scale `s_x · s_w[n]` per output
//! channel (exact, and needs no calibration — as a Brevitas model whose logits are float means).
//!
//! Guarantees: every f32 activation feeding or produced by a quantizable op is annotated; the
//! graph's float semantics are unchanged (annotations only).

use crate::config::{check_bits, CalibMethod, QuantConfig, WeightMethod};
use crate::error::{PassError, Result};
use crate::util::{
    activation_params, by_channel, const_weight, is_float_epilogue, is_pass_through, CalibBatches,
};
use crate::{Pass, PassContext, Stats};
use cimc_backends::program::lower::masks_with_minus_inf;
use cimc_interp::{Runner, Tensor};
use cimc_ir::{DType, Graph, NodeId, NoteValue, Op, QuantParams, ValueDef, ValueId};

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
        adopt_layout_params(g);
        let float_tails = float_epilogue_outputs(g)?;
        let obs = observe(g, cfg, cx.calib.as_deref(), cx.progress.as_deref())?;
        let mut stats = annotate(g, &obs, cfg)?;
        let requantized = requantize_pass_through(g)?;
        if requantized > 0 {
            *stats.entry("pass-through outputs requantized").or_default() += requantized as u64;
        }
        if float_tails > 0 {
            *stats.entry("float epilogue outputs left in float").or_default() += float_tails as u64;
        }
        Ok(stats)
    }
}

/// Ops that only lay codes out differently: their input and output hold the same codes.
fn is_layout(op: &cimc_ir::Op) -> bool {
    use cimc_ir::Op;
    matches!(
        op,
        Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Identity
            | Op::Dropout
    )
}

/// An unannotated f32 activation read only by layout ops whose outputs all carry the same
/// per-tensor parameters takes them (from the graph's end backwards, so chains propagate).
fn adopt_layout_params(g: &mut Graph) {
    for n in g.node_ids().into_iter().rev() {
        let node = g.node(n);
        if !is_layout(&node.op) {
            continue;
        }
        let x = node.inputs[0];
        let Some(q) = g.ty(node.outputs[0]).quant.clone() else { continue };
        if q.axis.is_some()
            || g.value(x).is_const()
            || g.ty(x).quant.is_some()
            || g.ty(x).dtype != DType::F32
            || g.outputs().contains(&x)
        {
            continue;
        }
        let agree = g.users(x).iter().all(|&(u, _)| {
            let un = g.node(u);
            is_layout(&un.op) && g.ty(un.outputs[0]).quant.as_ref() == Some(&q)
        });
        if agree {
            g.value_mut(x).ty.quant = Some(q);
        }
    }
}

/// Drops the annotation of every float epilogue's output (it stays float) and refuses one
/// whose output feeds an op that runs on codes. Returns how many annotations were dropped.
fn float_epilogue_outputs(g: &mut Graph) -> Result<usize> {
    let mut dropped = 0;
    for n in g.node_ids() {
        if !is_float_epilogue(g, n) {
            continue;
        }
        let y = g.node(n).outputs[0];
        if let Some(&(u, _)) = g.users(y).iter().find(|&&(u, _)| !is_float_epilogue(g, u)) {
            return Err(PassError::node(
                "calibrate",
                g,
                n,
                format!(
                    "this op has no integer implementation in the program, which computes it in float only at its end, but its output feeds node '{}', which runs on integer codes",
                    g.node(u).name
                ),
            ));
        }
        if g.value_mut(y).ty.quant.take().is_some() {
            dropped += 1;
        }
    }
    Ok(dropped)
}

/// Whether node `n` only moves its first input's values, so its outputs share that input's
/// parameters: the pass-through ops, and a Gather of an activation at constant indices (a
/// class token `x[:, 0]`), which the program runs as a move of codes (`lower::gather`).
fn moves_codes(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    is_pass_through(&node.op)
        || (matches!(node.op, Op::Gather { .. })
            && !g.value(node.inputs[0]).is_const()
            && g.ty(node.inputs[0]).dtype == DType::F32
            && node.inputs.get(1).is_some_and(|&i| g.value(i).is_const()))
}

/// A pass-through op must hold the same codes before and after: when the model quantizes its
/// input and its output differently (per tensor), the op's output takes the input's parameters
/// and an unbounded Clip (a rescale) after it gives the output's; refused by name per channel.
/// Returns how many were requantized.
fn requantize_pass_through(g: &mut Graph) -> Result<usize> {
    let mut done = 0;
    for n in g.node_ids() {
        let node = g.node(n);
        if !moves_codes(g, n) || node.outputs.len() != 1 {
            continue;
        }
        let (x, y) = (node.inputs[0], node.outputs[0]);
        if let (Some(a), Some(b)) = (g.ty(x).quant.clone(), g.ty(y).quant.clone()) {
            if a != b && g.ty(y).dtype == DType::F32 && a.axis.is_none() && b.axis.is_none() {
                let lo = g.add_const(
                    g.unique_name("requant_lo"),
                    cimc_ir::TensorData::from_f32(vec![], &[f32::NEG_INFINITY]),
                );
                let hi = g.add_const(
                    g.unique_name("requant_hi"),
                    cimc_ir::TensorData::from_f32(vec![], &[f32::INFINITY]),
                );
                // The Clip's result takes over the output (its readers, its name, its
                // parameters); the op's own output holds the input's codes.
                let out_name = g.value(y).name.clone();
                g.rename_value(y, &g.unique_name(&format!("{out_name}_moved")));
                let clip = g.add_node(
                    format!("{}_requant", g.node(n).name),
                    cimc_ir::Op::Clip,
                    vec![y, lo, hi],
                    vec![(out_name, g.ty(y).clone())],
                );
                let y2 = g.node(clip).outputs[0];
                g.replace_uses(y, y2);
                g.node_mut(clip).inputs[0] = y;
                g.value_mut(y).ty.quant = Some(a);
                done += 1;
                continue;
            }
        }
        let node = g.node(n);
        let (x, y) = (node.inputs[0], node.outputs[0]);
        if let (Some(a), Some(b)) = (&g.ty(x).quant, &g.ty(y).quant) {
            if a != b && g.ty(y).dtype == DType::F32 {
                return Err(PassError::node(
                    "calibrate",
                    g,
                    n,
                    format!(
                        "only moves codes, but the model quantizes its input '{}' (scale {:?}, zero point {:?}) and its output '{}' (scale {:?}, zero point {:?}) differently; a requantization between them is not supported",
                        g.value(x).name, a.scale, a.zero_point, g.value(y).name, b.scale, b.zero_point
                    ),
                ));
            }
        }
    }
    Ok(done)
}

/// The note `mixed-precision` writes on a matrix layer and `calibrate` reads: `wbits` (its
/// weights) and `abits` (the activation it produces) win over the configuration.
pub const BITS_NOTE: &str = "mixed-precision";

/// `key` (`wbits` / `abits`) of node `n`'s `mixed-precision` note, checked.
fn note_bits(g: &Graph, n: NodeId, key: &str) -> Result<Option<u8>> {
    let notes = &g.node(n).notes;
    let Some(v) = cimc_ir::note::find(notes, BITS_NOTE).and_then(|note| note.get(key)) else {
        return Ok(None);
    };
    match v {
        NoteValue::Int(b) if (2..=16).contains(b) => Ok(Some(*b as u8)),
        _ => Err(PassError::node(
            "calibrate",
            g,
            n,
            format!("note {BITS_NOTE}: {key}={v} is no bit width in 2..=16"),
        )),
    }
}

/// The bits of node `n`'s weights: its `mixed-precision` note, else the per-layer override,
/// else the uniform width.
pub fn layer_wbits(g: &Graph, n: NodeId, cfg: &QuantConfig) -> Result<u8> {
    Ok(note_bits(g, n, "wbits")?.unwrap_or_else(|| cfg.wbits_of(&g.node(n).name)))
}

/// The bits of the activation node `n` produces: its `mixed-precision` note, else the
/// per-layer override, else the uniform width.
pub fn layer_abits(g: &Graph, n: NodeId, cfg: &QuantConfig) -> Result<u8> {
    Ok(note_bits(g, n, "abits")?.unwrap_or_else(|| cfg.abits_of(&g.node(n).name)))
}

/// What `calibrate` measures of the float graph, once: the activations it must calibrate and
/// their statistics on the calibration data. [`annotate`] turns it into parameters at any bit
/// widths, cheaply (`mixed-precision` annotates many copies of a graph from one observation).
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// The activations to calibrate: graph inputs, then node outputs, in id order.
    values: Vec<ValueId>,
    mins: Vec<f32>,
    maxs: Vec<f32>,
    /// Per value, a histogram of `BINS` bins over `[min(lo, 0), max(hi, 0)]` (empty for
    /// min-max calibration).
    hists: Vec<Vec<u64>>,
    method: Option<CalibMethod>,
}

impl Observation {
    /// The calibration range of the `k`-th observed value at `bits`.
    fn range(&self, k: usize, bits: u8) -> (f32, f32) {
        let (lo, hi) = (self.mins[k].min(0.0), self.maxs[k].max(0.0));
        if !lo.is_finite() || !hi.is_finite() {
            return (0.0, 0.0);
        }
        match self.method {
            None | Some(CalibMethod::MinMax) => (lo, hi),
            Some(CalibMethod::Percentile(p)) => percentile_range(&self.hists[k], lo, hi, p),
            Some(CalibMethod::Mse) => mse_range(&self.hists[k], lo, hi, bits),
        }
    }
}

/// Runs the float graph on the calibration samples and records the statistics of every
/// activation that needs parameters (none without such activations: then no data is needed).
pub fn observe(
    g: &Graph,
    cfg: &QuantConfig,
    calib: Option<&[Tensor]>,
    progress: Option<&(dyn Fn(u64, u64) + Send + Sync)>,
) -> Result<Observation> {
    let accumulators = accumulator_outputs(g);
    let todo: Vec<ValueId> = activation_values(g)
        .into_iter()
        .filter(|v| g.ty(*v).quant.is_none() && !accumulators.contains(v))
        .collect();
    if todo.is_empty() {
        return Ok(Observation::default());
    }
    let calib = calib.ok_or_else(|| {
        PassError::Missing(format!(
            "calibration data is needed for {} activation(s) without quantization parameters (e.g. '{}'): give --calib x.npy",
            todo.len(),
            g.value(todo[0]).name
        ))
    })?;
    observe_values(g, todo, calib, cfg, progress)
}

/// Annotates every weight and activation of `g` that has no parameters: weights at
/// [`layer_wbits`], the observed activations at [`layer_abits`] of their producer (graph
/// inputs at `abits`), pass-through outputs and accumulator read-outs as described above.
pub fn annotate(g: &mut Graph, obs: &Observation, cfg: &QuantConfig) -> Result<Stats> {
    let mut stats = Stats::new();
    // Weights.
    for n in g.node_ids() {
        let Some((w, axis)) = const_weight(g, n) else { continue };
        if g.ty(w).quant.is_some() || g.ty(w).dtype != DType::F32 {
            continue;
        }
        let bits = layer_wbits(g, n, cfg)?;
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
    // Activations, at the bits of their producer.
    let mut calibrated = 0;
    for (k, &v) in obs.values.iter().enumerate() {
        if g.ty(v).quant.is_some() {
            continue;
        }
        let bits = match g.value(v).def {
            ValueDef::Node { node, .. } => layer_abits(g, node, cfg)?,
            _ => cfg.abits,
        };
        let (lo, hi) = obs.range(k, bits);
        let mut q = activation_params(lo, hi, bits, cfg.act_signed);
        // A causal mask's output: the scores' codes as calibrated, and one bit more below them
        // (signed, same scale and zero point) for `−inf`, which the integer softmax weighs 0.
        let mask = g.producer(v).is_some_and(|p| masks_with_minus_inf(g, p));
        if mask && !q.signed && q.bits < 16 {
            q.bits += 1;
            q.signed = true;
        }
        g.value_mut(v).ty.quant = Some(q);
        calibrated += 1;
    }
    if calibrated > 0 {
        *stats.entry("activations calibrated").or_default() += calibrated;
    }
    // Pass-through outputs take their input's parameters (in order, so chains propagate).
    for n in g.node_ids() {
        let node = g.node(n);
        if !moves_codes(g, n) {
            continue;
        }
        let Some(q) = node.inputs.first().and_then(|&i| g.ty(i).quant.clone()) else {
            continue;
        };
        // Every output (a Split has several).
        for out in node.outputs.clone() {
            if g.ty(out).dtype == DType::F32 && g.ty(out).quant.is_none() {
                g.value_mut(out).ty.quant = Some(q.clone());
                *stats.entry("pass-through annotated").or_default() += 1;
            }
        }
    }
    for v in accumulator_outputs(g) {
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

/// The f32 activations the integer program holds: graph inputs and outputs of
/// non-pass-through, non-float nodes, in id order.
fn activation_values(g: &Graph) -> Vec<ValueId> {
    let mut out = Vec::new();
    for &v in g.inputs() {
        if g.ty(v).dtype == DType::F32 {
            out.push(v);
        }
    }
    for (n, node) in g.nodes() {
        if moves_codes(g, n) || is_float_epilogue(g, n) {
            continue;
        }
        for &o in &node.outputs {
            if g.ty(o).dtype == DType::F32 {
                out.push(o);
            }
        }
    }
    out
}

/// Graph outputs produced by a matrix op, without parameters: read out as accumulators.
pub(crate) fn accumulator_outputs(g: &Graph) -> Vec<ValueId> {
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
    if method == WeightMethod::MinMax {
        // The largest magnitude per channel, read in place (no copy per channel).
        let scale: Vec<f32> = channel_max_abs(data, shape, axis)
            .into_iter()
            .map(|m| if m == 0.0 { 1.0 } else { m / qmax })
            .collect();
        let c = scale.len();
        return QuantParams { bits, signed: true, scale, zero_point: vec![0; c], axis: Some(axis) };
    }
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

/// `max |v|` (from 0) of each channel along `axis` of `data` (row-major, `shape`): the same
/// numbers as folding [`by_channel`]'s values, whose maximum no order changes.
fn channel_max_abs(data: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    let c = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut max = vec![0f32; c];
    if c == 0 || inner == 0 {
        return max;
    }
    for cycle in data.chunks(c * inner) {
        if inner == 1 {
            max.iter_mut().zip(cycle).for_each(|(m, &v)| *m = m.max(v.abs()));
            continue;
        }
        for (m, run) in max.iter_mut().zip(cycle.chunks(inner)) {
            *m = run.iter().fold(*m, |a, &v| a.max(v.abs()));
        }
    }
    max
}

/// Makes the probe compute what the model does where it states an activation's quantization:
/// each annotated per-tensor activation is read through `s·clip(round(x / s), lo − z, hi − z)`
/// (QuantizeLinear then DequantizeLinear, as the imported model had them), so the ranges
/// observed after it are those of the model and not of its unclipped float values (a 4-bit
/// input quantizer clips most of a normal input: without this, a Brevitas U-Net's unannotated
/// conv outputs were calibrated 1000 times too wide and its program read zeros). The probe's
/// outputs, the observed values, follow the compaction.
fn quantize_annotated_activations(probe: &mut Graph) -> Result<()> {
    use cimc_ir::{Op, TensorData, UnaryOp};
    let annotated: Vec<(ValueId, QuantParams)> = probe
        .values()
        .filter(|(v, val)| !val.is_const() && val.ty.dtype == DType::F32 && probe.use_count(*v) > 0)
        .filter_map(|(v, val)| {
            let q = val.ty.quant.as_ref()?;
            (q.axis.is_none() && q.scale.len() == 1 && q.bits < 32).then(|| (v, q.clone()))
        })
        .collect();
    if annotated.is_empty() {
        return Ok(());
    }
    for (v, q) in annotated {
        let readers = probe.users(v);
        let (lo, hi) = q.code_range();
        let (s, z) = (q.scale[0], q.zero_point[0] as i64);
        let ty = cimc_ir::TensorType::new(DType::F32, probe.ty(v).shape.clone());
        let name = probe.value(v).name.clone();
        let k = |g: &mut Graph, tag: &str, x: f32| {
            g.add_const(format!("{name}_fq_{tag}"), TensorData::from_f32(vec![], &[x]))
        };
        let (sv, lov, hiv) =
            (k(probe, "s", s), k(probe, "lo", (lo - z) as f32), k(probe, "hi", (hi - z) as f32));
        let step = |g: &mut Graph, tag: &str, op: Op, inputs: Vec<ValueId>| {
            let n = g.add_node(
                format!("{name}_fq_{tag}"),
                op,
                inputs,
                vec![(format!("{name}_fq_{tag}"), ty.clone())],
            );
            g.node(n).outputs[0]
        };
        let t = step(probe, "div", Op::Div, vec![v, sv]);
        let t = step(probe, "round", Op::Unary(UnaryOp::Round), vec![t]);
        let t = step(probe, "clip", Op::Clip, vec![t, lov, hiv]);
        let t = step(probe, "mul", Op::Mul, vec![t, sv]);
        for (u, slot) in readers {
            probe.node_mut(u).inputs[slot] = t;
        }
    }
    probe.compact().map_err(PassError::Internal)
}

/// The statistics of `values` on the calibration samples, by the configured method: min and
/// max, and for percentile and MSE calibration a histogram (a second pass over the data).
fn observe_values(
    g: &Graph,
    values: Vec<ValueId>,
    calib: &[Tensor],
    cfg: &QuantConfig,
    progress: Option<&(dyn Fn(u64, u64) + Send + Sync)>,
) -> Result<Observation> {
    // A copy of the graph whose outputs are the observed values. Graphs are static: the samples
    // go through in chunks of the graph's own batch (the last one zero-padded).
    let batches = CalibBatches::new(g, calib, cfg.calib_samples)?;
    let (n, chunk) = (batches.samples, batches.batch);
    let mut probe = g.clone();
    probe.set_outputs(values.clone());
    quantize_annotated_activations(&mut probe)?;
    // The observed values, as the compaction renumbered them; they are watched, not made
    // outputs, so that each is observed as soon as it is computed and freed after its last
    // reader (the activations of a ViT-B/16 held to the end were 300 MB).
    let watched = probe.outputs().to_vec();
    probe.set_outputs(Vec::new());
    // Lean: a few runs, and a prepared runner would hold a second copy of every weight.
    let runner = Runner::lean_watching(&probe, &watched)?;
    let mut mins = vec![f32::INFINITY; values.len()];
    let mut maxs = vec![f32::NEG_INFINITY; values.len()];
    let needs_hist = !matches!(cfg.calib_method, CalibMethod::MinMax);
    let passes = if needs_hist { 2 } else { 1 };
    let mut hists = if needs_hist { vec![vec![0u64; BINS]; values.len()] } else { Vec::new() };
    for pass in 0..passes {
        for (start, len) in batches.ranges() {
            let mut observe_one = |k: usize, t: &Tensor| {
                let Some(a) = t.as_f32() else { return };
                // Only the real samples of a zero-padded last chunk. A full chunk is read
                // whole: a value need not hold `chunk` rows (an unrolled recurrent op's step
                // states, when the first axis of the input is time).
                let per = a.len() / chunk;
                let take = if len == chunk { a.len() } else { per * len };
                // An output may be a strided view (a softmax over an inner axis): read it in
                // logical order then.
                let strided: Vec<f32>;
                let vals = match a.as_slice() {
                    Some(v) => &v[..take],
                    None => {
                        strided = a.iter().copied().take(take).collect();
                        &strided[..]
                    }
                };
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
            };
            runner.run_watching(batches.inputs(start, len)?, &mut observe_one)?;
            if let Some(p) = progress {
                p((pass * n + start + len) as u64, (passes * n) as u64);
            }
        }
    }
    Ok(Observation { values, mins, maxs, hists, method: Some(cfg.calib_method) })
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
