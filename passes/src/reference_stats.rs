//! `reference-stats`: the float model's statistics of every matrix layer's output, per channel
//! — what `bn-calibrate` makes the program match.
//!
//! **Does** (only when `bn-calibrate` is on, `QuantConfig::bn_calibrate`): runs the float graph
//! on the calibration samples and, for every Conv/Gemm/MatMul with constant weights, evaluates
//! the layer on its observed input *without* its fused activation (the pre-activation output,
//! where a BatchNormalization folded into the layer would have normalized), and writes a note
//!
//! ```text
//! note reference {samples=N, mean=[..], std=[..]}
//! ```
//!
//! with the per-output-channel mean and (population) standard deviation over samples and
//! positions. The statistics come from data, not from BN nodes, so models whose BN was folded
//! (or that never had one) are covered.
//!
//! **Requires**: a float graph with its weights still real numbers (run before `calibrate` and
//! `quantize`), and calibration data.
//!
//! **Guarantees**: the graph's computation is unchanged (notes only); every matrix layer with
//! constant weights has a `reference` note with one entry per output channel.

use crate::error::{PassError, Result};
use crate::util::{const_weight, CalibBatches};
use crate::{Pass, PassContext, Stats};
use cimc_interp::{eval_node, Runner, Tensor};
use cimc_ir::{Graph, Note, NoteValue, Op};
use rayon::prelude::*;

pub struct ReferenceStats;

/// Sums of one layer's pre-activation outputs, per channel.
#[derive(Clone)]
struct Moments {
    count: u64,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
}

/// The op without its fused activation.
fn without_clamp(op: &Op) -> Op {
    let mut op = op.clone();
    match &mut op {
        Op::Conv(a) => a.clamp = None,
        Op::Gemm { clamp, .. } => *clamp = None,
        _ => {}
    }
    op
}

/// The channel count and the stride between channels (elements per channel position) of a
/// layer's output of shape `shape`: axis 1 for Conv/Gemm (`[N, C, ..]`), the last for MatMul.
pub(crate) fn channel_layout(op: &Op, shape: &[usize]) -> (usize, usize) {
    match op {
        Op::MatMul => (shape.last().copied().unwrap_or(1), 1),
        _ => (shape.get(1).copied().unwrap_or(1), shape.iter().skip(2).product()),
    }
}

impl Pass for ReferenceStats {
    fn name(&self) -> &'static str {
        "reference-stats"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        let Some(calib) = crate::util::bn_calibrate_data(cx)? else { return Ok(stats) };
        // The layers, with their weights and biases as tensors, evaluated without activation.
        struct Layer {
            node: cimc_ir::NodeId,
            op: Op,
            consts: Vec<Tensor>,
            input: usize,
        }
        let mut layers = Vec::new();
        let mut probe_outputs = Vec::new();
        for n in g.node_ids() {
            if const_weight(g, n).is_none() {
                continue;
            }
            let node = g.node(n);
            let mut consts = Vec::new();
            for &v in &node.inputs[1..] {
                let d = g.value(v).const_data().ok_or_else(|| {
                    PassError::node("reference-stats", g, n, "its bias is not a constant")
                })?;
                if d.dtype() != cimc_ir::DType::F32 {
                    return Err(PassError::node(
                        "reference-stats",
                        g,
                        n,
                        "its weights are codes already: run before quantize",
                    ));
                }
                consts.push(Tensor::from_data(d)?);
            }
            let x = node.inputs[0];
            let input = match probe_outputs.iter().position(|&v| v == x) {
                Some(i) => i,
                None => {
                    probe_outputs.push(x);
                    probe_outputs.len() - 1
                }
            };
            layers.push(Layer { node: n, op: without_clamp(&node.op), consts, input });
        }
        if layers.is_empty() {
            return Ok(stats);
        }
        let batches = CalibBatches::new(g, calib, cx.config.calib_samples)?;
        let chunk = batches.batch;
        let mut probe = g.clone();
        probe.set_outputs(probe_outputs);
        let runner = Runner::lean(&probe)?;
        let mut moments: Vec<Option<Moments>> = vec![None; layers.len()];
        for (start, len) in batches.ranges() {
            let observed = runner.run(batches.inputs(start, len)?)?;
            let chunk_moments: Vec<Moments> = layers
                .par_iter()
                .map(|l| -> Result<Moments> {
                    let mut args = vec![&observed[l.input]];
                    args.extend(l.consts.iter());
                    let y = eval_node(&l.op, &args, 1)?.into_iter().next().ok_or_else(|| {
                        PassError::Internal("a matrix op evaluated to no output".into())
                    })?;
                    let y = y.into_f32().ok_or_else(|| {
                        PassError::Internal("a float matrix op gave no f32 output".into())
                    })?;
                    let shape = y.shape().to_vec();
                    let (c, inner) = channel_layout(&l.op, &shape);
                    let per_sample = y.len() / chunk;
                    let vals = y.as_slice().ok_or_else(|| {
                        PassError::Internal("interpreter outputs are contiguous".into())
                    })?;
                    let mut m = Moments { count: 0, sum: vec![0.0; c], sum_sq: vec![0.0; c] };
                    // Only the real samples of a zero-padded last chunk.
                    for (k, &v) in vals[..per_sample * len].iter().enumerate() {
                        let ch = (k / inner.max(1)) % c.max(1);
                        m.sum[ch] += v as f64;
                        m.sum_sq[ch] += v as f64 * v as f64;
                    }
                    m.count = (per_sample * len / c.max(1)) as u64;
                    Ok(m)
                })
                .collect::<Result<_>>()?;
            for (acc, m) in moments.iter_mut().zip(chunk_moments) {
                match acc {
                    None => *acc = Some(m),
                    Some(a) => {
                        a.count += m.count;
                        a.sum.iter_mut().zip(&m.sum).for_each(|(a, b)| *a += b);
                        a.sum_sq.iter_mut().zip(&m.sum_sq).for_each(|(a, b)| *a += b);
                    }
                }
            }
            if let Some(p) = &cx.progress {
                p((start + len) as u64, batches.samples as u64);
            }
        }
        for (l, m) in layers.iter().zip(moments) {
            let m = m.expect("invariant: every layer was observed on at least one chunk");
            let (mean, std) = mean_std(&m.sum, &m.sum_sq, m.count);
            let note = Note::new("reference")
                .with("samples", NoteValue::Int(batches.samples as i64))
                .with("mean", NoteValue::Floats(mean))
                .with("std", NoteValue::Floats(std));
            cimc_ir::note::put(&mut g.node_mut(l.node).notes, note);
            *stats.entry("layers measured").or_default() += 1;
        }
        Ok(stats)
    }
}

/// Per-channel mean and population standard deviation from sums over `count` values each,
/// rounded to f32 precision (what the notes need, and what prints short).
pub(crate) fn mean_std(sum: &[f64], sum_sq: &[f64], count: u64) -> (Vec<f64>, Vec<f64>) {
    let k = count.max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / k).collect();
    let std: Vec<f64> =
        sum_sq.iter().zip(&mean).map(|(q, m)| (q / k - m * m).max(0.0).sqrt()).collect();
    let r = |v: Vec<f64>| v.into_iter().map(|x| x as f32 as f64).collect();
    (r(mean), r(std))
}
