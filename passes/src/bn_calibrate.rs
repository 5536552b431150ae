//! `bn-calibrate`: re-estimates every layer's per-channel scale and bias so that the program's
//! outputs have the float model's mean and variance (the BN calibration of PIM-aware
//! quantization, post-training).
//!
//! After quantization and crossbar lowering (weight slices, lossy ADCs) a layer's output
//! distribution drifts from the float model's: clipped conversions shrink it, rounding shifts
//! it. With calibration data, this pass runs the bit-accurate program and, **layer by layer in
//! program order** (so each layer sees inputs already corrected), measures the per-channel mean
//! `μ_p` and standard deviation `σ_p` of the layer's dequantized accumulator (its output before
//! the fused activation, where a BatchNormalization would normalize) and matches them to the
//! float model's `μ_f`, `σ_f` (the `reference` note of `reference-stats`):
//!
//! ```text
//! y' = a·y + b,   a = σ_f / σ_p (clamped to [1/2, 2]; 1 for a constant channel),   b = μ_f − a·μ_p
//! ```
//!
//! The correction is folded into numbers the program already has, so nothing new runs:
//! the weights' scale becomes `s_w' = a·s_w` (the codes, hence every crossbar cell and partial
//! sum, are unchanged; the requantization multiplier `s_x·s_w'/s_y` takes the gain) and the bias
//! codes gain `round(b / (s_x·s_w'))`.
//!
//! **Requires**: `quantize` ran (and `tile`/`adc-calibrate`, for a chip), `reference-stats` wrote
//! the float statistics, calibration data. Does nothing unless `QuantConfig::bn_calibrate`.
//!
//! **Guarantees**: weights' codes and crossbar maps are unchanged; every corrected layer has a
//! note `bn-calibrate {gain=[..], shift=[..]}` (the `a` and `b` applied, per channel) and the
//! report lists per layer the mean shift `|μ_p − μ_f|/σ_f` and std ratio `σ_p/σ_f` (channel
//! averages) before and after. The ADC steps chosen by `adc-calibrate` are kept: they were set on
//! the uncorrected program.

use crate::error::{PassError, Result};
use crate::reference_stats::channel_layout;
use crate::util::{const_weight, CalibBatches};
use crate::{Pass, PassContext, Stats};
use cimc_backends::arith::FixedMultiplier;
use cimc_backends::program::{lower::lower, Requant, Step};
use cimc_ir::{Graph, NodeId, Note, NoteValue, QuantParams, TensorData};
use cimc_sim::program::{ProgramRunner, RunState};
use serde_json::json;

pub struct BnCalibrate;

const MIN_GAIN: f64 = 0.5;
const MAX_GAIN: f64 = 2.0;

/// One chunk of calibration samples paused in the program.
struct Chunk {
    state: RunState,
    /// Real samples in it (the last chunk may be zero-padded).
    len: usize,
}

/// Per-channel statistics of one layer.
struct Moments {
    mean: Vec<f64>,
    std: Vec<f64>,
}

/// How far `m` is from the reference: channel averages of `|μ − μ_f|/σ_f` and `σ/σ_f`
/// (channels whose reference is constant left out).
fn distance(m: &Moments, mean_f: &[f64], std_f: &[f64]) -> (f64, f64) {
    let (mut shift, mut ratio, mut k) = (0.0, 0.0, 0usize);
    for c in 0..mean_f.len() {
        if std_f[c] > 0.0 {
            shift += (m.mean[c] - mean_f[c]).abs() / std_f[c];
            ratio += m.std[c] / std_f[c];
            k += 1;
        }
    }
    let k = k.max(1) as f64;
    (shift / k, ratio / k)
}

impl Pass for BnCalibrate {
    fn name(&self) -> &'static str {
        "bn-calibrate"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        let Some(calib) = crate::util::bn_calibrate_data(cx)? else { return Ok(stats) };
        let program = lower(g).map_err(|e| PassError::lowering("lowering for bn-calibrate", e))?;
        // Lean: one run over the calibration data, one layer's converted weights at a time.
        let runner = ProgramRunner::lean(program)?;
        let program = runner.program();
        // The layers to correct: matrix nodes with reference statistics, and their steps.
        let mut layers: Vec<(NodeId, usize)> = Vec::new();
        for n in g.node_ids() {
            if const_weight(g, n).is_none()
                || cimc_ir::note::find(&g.node(n).notes, "reference").is_none()
            {
                continue;
            }
            let name = &g.node(n).name;
            let steps: Vec<usize> = (0..program.steps.len())
                .filter(|&i| {
                    &program.origins[i] == name
                        && matches!(program.steps[i], Step::Conv { .. } | Step::Gemm { .. })
                })
                .collect();
            match steps[..] {
                [i] => layers.push((n, i)),
                _ => {
                    return Err(PassError::node(
                        "bn-calibrate",
                        g,
                        n,
                        format!("{} matrix steps come from this node; 1 expected", steps.len()),
                    ))
                }
            }
        }
        if layers.is_empty() {
            return Err(PassError::Missing(
                "bn-calibrate: no layer has reference statistics (run reference-stats on the float graph)"
                    .into(),
            ));
        }
        let batches = CalibBatches::new(g, calib, cx.config.calib_samples)?;
        let batch = batches.batch;
        let mut chunks = Vec::new();
        for (start, len) in batches.ranges() {
            chunks.push(Chunk { state: runner.start(batches.inputs(start, len)?)?, len });
        }
        let mut report = Vec::new();
        let mut expected: Vec<(usize, Vec<i64>, Requant)> = Vec::new();
        for (done, &(node, step)) in layers.iter().enumerate() {
            let fix = self.correct(g, cx, &runner, &mut chunks, node, step, batch)?;
            report.push(fix.report);
            expected.push((step, fix.bias, fix.requant));
            *stats.entry("layers corrected").or_default() += 1;
            if let Some(p) = &cx.progress {
                p(done as u64 + 1, layers.len() as u64);
            }
        }
        // The graph lowers to exactly the steps the corrected run used.
        let check = lower(g).map_err(|e| PassError::lowering("lowering after bn-calibrate", e))?;
        for (step, bias, requant) in expected {
            match &check.steps[step] {
                Step::Conv { bias: b, requant: r, .. } | Step::Gemm { bias: b, requant: r, .. }
                    if *b == bias && *r == requant => {}
                _ => {
                    return Err(PassError::Internal(format!(
                    "bn-calibrate: step {step} of the corrected graph differs from the step it ran"
                )))
                }
            }
        }
        cx.report("bn-calibrate", json!({ "samples": batches.samples, "layers": report }));
        Ok(stats)
    }
}

/// The accumulators of matrix step `step` on every chunk (run up to it), and their per-channel
/// mean and standard deviation in real units (`acc · s_x · s_w[c]`); `layout` is
/// `(channels, inner)` of [`channel_layout`].
fn accumulator_moments(
    runner: &ProgramRunner,
    chunks: &mut [Chunk],
    step: usize,
    batch: usize,
    layout: (usize, usize),
    s_x: f32,
    s_w: &[f32],
) -> Result<(Vec<Vec<i64>>, Vec<f64>, Vec<f64>)> {
    let (c, inner) = layout;
    let mut accs = Vec::with_capacity(chunks.len());
    let (mut sum, mut sum_sq, mut count) = (vec![0f64; c], vec![0f64; c], 0u64);
    for ch in chunks.iter_mut() {
        runner.run_until(&mut ch.state, step)?;
        let acc = runner.accumulators(&ch.state, step)?;
        let per_sample = acc.len() / batch;
        for (k, &a) in acc[..per_sample * ch.len].iter().enumerate() {
            let cc = (k / inner.max(1)) % c;
            let v = a as f64 * s_x as f64 * s_w[cc] as f64;
            sum[cc] += v;
            sum_sq[cc] += v * v;
        }
        count += (per_sample * ch.len / c) as u64;
        accs.push(acc);
    }
    let (mean_p, std_p) = crate::reference_stats::mean_std(&sum, &sum_sq, count);
    Ok((accs, mean_p, std_p))
}

/// A layer's per-channel affine correction, as the graph holds it.
struct Correction {
    /// The new weight scales `s_w' = a · s_w` (rounded to f32).
    new_sw: Vec<f32>,
    /// The bias change in accumulator units of `s_x · s_w'`.
    delta: Vec<i64>,
    /// The gain `a` and shift `b` actually applied (after rounding).
    gains: Vec<f64>,
    shifts: Vec<f64>,
}

/// The gain that matches the program's std to the float model's (clamped to
/// `[MIN_GAIN, MAX_GAIN]`), then the shift that matches the means, rounded to bias codes.
fn correction(
    mean_p: &[f64],
    std_p: &[f64],
    mean_f: &[f64],
    std_f: &[f64],
    s_x: f32,
    s_w: &[f32],
) -> Correction {
    let c = s_w.len();
    let mut new_sw = vec![0f32; c];
    let mut delta = vec![0i64; c];
    let (mut gains, mut shifts) = (vec![0f64; c], vec![0f64; c]);
    for k in 0..c {
        let a = if std_p[k] > 0.0 && std_f[k] > 0.0 {
            (std_f[k] / std_p[k]).clamp(MIN_GAIN, MAX_GAIN)
        } else {
            1.0
        };
        new_sw[k] = (a * s_w[k] as f64) as f32;
        let a = new_sw[k] as f64 / s_w[k] as f64;
        let b = mean_f[k] - a * mean_p[k];
        let unit = s_x as f64 * new_sw[k] as f64;
        delta[k] = (b / unit).round_ties_even() as i64;
        gains[k] = a;
        shifts[k] = delta[k] as f64 * unit;
    }
    Correction { new_sw, delta, gains, shifts }
}

/// What correcting one layer produced.
struct Fix {
    report: serde_json::Value,
    bias: Vec<i64>,
    requant: Requant,
}

impl BnCalibrate {
    #[allow(clippy::too_many_arguments)]
    fn correct(
        &self,
        g: &mut Graph,
        cx: &PassContext,
        runner: &ProgramRunner,
        chunks: &mut [Chunk],
        node: NodeId,
        step: usize,
        batch: usize,
    ) -> Result<Fix> {
        let _ = cx;
        let reference = cimc_ir::note::find(&g.node(node).notes, "reference")
            .expect("invariant: layers have a reference note");
        let (mean_f, std_f) = match (reference.floats("mean"), reference.floats("std")) {
            (Some(m), Some(s)) if m.len() == s.len() => (m, s),
            _ => {
                return Err(PassError::node(
                    "bn-calibrate",
                    g,
                    node,
                    "its reference note lacks mean/std lists",
                ))
            }
        };
        let (w, axis) = const_weight(g, node).expect("invariant: layers have constant weights");
        let x = g.node(node).inputs[0];
        let y = g.node(node).outputs[0];
        let op = g.node(node).op.clone();
        let out_shape = g.ty(y).shape.clone();
        let (c, inner) = channel_layout(&op, &out_shape);
        if c != mean_f.len() {
            return Err(PassError::node(
                "bn-calibrate",
                g,
                node,
                format!("{} reference channels for {c} output channels", mean_f.len()),
            ));
        }
        let s_x = match &g.ty(x).quant {
            Some(q) if q.scale.len() == 1 => q.scale[0],
            _ => {
                return Err(PassError::node(
                    "bn-calibrate",
                    g,
                    node,
                    "its input has no per-tensor scale (run quantize)",
                ))
            }
        };
        let wq = g
            .ty(w)
            .quant
            .clone()
            .ok_or_else(|| PassError::node("bn-calibrate", g, node, "unquantized weights"))?;
        let yq = g
            .ty(y)
            .quant
            .clone()
            .ok_or_else(|| PassError::node("bn-calibrate", g, node, "unquantized output"))?;
        let s_w: Vec<f32> =
            (0..c).map(|k| wq.scale[if wq.scale.len() == 1 { 0 } else { k }]).collect();
        // The program's accumulators on every chunk, and their per-channel moments (real units).
        let (accs, mean_p, std_p) =
            accumulator_moments(runner, chunks, step, batch, (c, inner), s_x, &s_w)?;
        let before = Moments { mean: mean_p.clone(), std: std_p.clone() };
        // The correction, rounded to what the graph can hold.
        let Correction { new_sw, delta, gains, shifts } =
            correction(&mean_p, &std_p, &mean_f, &std_f, s_x, &s_w);
        let after = Moments {
            mean: (0..c).map(|k| gains[k] * mean_p[k] + shifts[k]).collect(),
            std: (0..c).map(|k| gains[k] * std_p[k]).collect(),
        };
        // The step as the corrected graph lowers it: bias plus delta, multipliers with s_w'.
        let (old_bias, old_requant) = match &runner.program().steps[step] {
            Step::Conv { bias, requant, .. } | Step::Gemm { bias, requant, .. } => {
                (bias.clone(), requant.clone())
            }
            _ => unreachable!("invariant: layers map to Conv/Gemm steps"),
        };
        let bias: Vec<i64> = old_bias.iter().zip(&delta).map(|(b, d)| b + d).collect();
        if bias.iter().any(|&b| b < i32::MIN as i64 || b > i32::MAX as i64) {
            return Err(PassError::node(
                "bn-calibrate",
                g,
                node,
                "the corrected bias overflows 32 bits",
            ));
        }
        let mult = (0..c)
            .map(|k| {
                let s_y = yq.scale[if yq.scale.len() == 1 { 0 } else { k }];
                FixedMultiplier::from_real(s_x as f64 * new_sw[k] as f64 / s_y as f64)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| PassError::node("bn-calibrate", g, node, e.to_string()))?;
        let requant = Requant { mult, ..old_requant };
        // The corrected layer's outputs, from the accumulators already computed.
        for (ch, acc) in chunks.iter_mut().zip(accs) {
            let codes: Vec<i32> = acc
                .iter()
                .enumerate()
                .map(|(k, &a)| {
                    let cc = (k / inner.max(1)) % c;
                    requant.apply(a + delta[cc], cc)
                })
                .collect();
            runner.set_output(&mut ch.state, step, codes)?;
        }
        self.write_back(g, node, w, axis, &wq, s_x, &new_sw, &bias)?;
        let note = Note::new("bn-calibrate")
            .with("gain", NoteValue::Floats(gains.iter().map(|&a| a as f32 as f64).collect()))
            .with("shift", NoteValue::Floats(shifts.iter().map(|&b| b as f32 as f64).collect()));
        cimc_ir::note::put(&mut g.node_mut(node).notes, note);
        let (shift0, ratio0) = distance(&before, &mean_f, &std_f);
        let (shift1, ratio1) = distance(&after, &mean_f, &std_f);
        let clamped = gains.iter().filter(|&&a| a <= MIN_GAIN || a >= MAX_GAIN).count();
        let report = json!({
            "layer": g.node(node).name,
            "channels": c,
            "mean_shift_before": shift0,
            "mean_shift_after": shift1,
            "std_ratio_before": ratio0,
            "std_ratio_after": ratio1,
            "gain_min": gains.iter().copied().fold(f64::INFINITY, f64::min),
            "gain_max": gains.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            "gains_clamped": clamped,
        });
        Ok(Fix { report, bias, requant })
    }

    /// Writes the corrected weight scales and bias codes into the graph.
    #[allow(clippy::too_many_arguments)]
    fn write_back(
        &self,
        g: &mut Graph,
        node: NodeId,
        w: cimc_ir::ValueId,
        axis: usize,
        wq: &QuantParams,
        s_x: f32,
        new_sw: &[f32],
        bias: &[i64],
    ) -> Result<()> {
        let c = new_sw.len();
        let zero_point = if wq.zero_point.len() == c { wq.zero_point.clone() } else { vec![0; c] };
        g.value_mut(w).ty.quant = Some(QuantParams {
            bits: wq.bits,
            signed: wq.signed,
            scale: new_sw.to_vec(),
            zero_point,
            axis: Some(axis),
        });
        let codes: Vec<i32> = bias.iter().map(|&b| b as i32).collect();
        let base = match g.node(node).inputs.get(2) {
            Some(&b) => g.value(b).name.clone(),
            None => format!("{}_bias", g.node(node).name),
        };
        let name = g.unique_name(&format!("{base}_bncal"));
        let nb = g.add_const(name, TensorData::from_i32(vec![c], &codes));
        g.value_mut(nb).ty.quant = Some(QuantParams {
            bits: 32,
            signed: true,
            scale: new_sw.iter().map(|&s| s_x * s).collect(),
            zero_point: vec![0; c],
            axis: Some(0),
        });
        let inputs = &mut g.node_mut(node).inputs;
        if inputs.len() > 2 {
            inputs[2] = nb;
        } else {
            inputs.push(nb);
        }
        Ok(())
    }
}
