//! `cascade`: weight scales that serve every width of the cascade (`docs/cascade.md`).
//!
//! A program runs at a lower weight width `b` by deriving its codes from the stored `B`-bit
//! codes one bit at a time (`w_(b−1) = clamp(round_half_even(w_b / 2))`, scale doubled;
//! `cimc_sim::program::cascade_codes`), so the `B`-bit scale decides the error at every
//! width. Min-max scales are chosen for `B` alone; this pass re-chooses them for all widths.
//!
//! **Does** (only when `QuantConfig::cascade_min_bits` is `Some(min)`): for every constant
//! weight of a Conv/Gemm/MatMul annotated at `B > min` bits, per output channel, a
//! deterministic grid search over `s = α·max|w| / (2^(B−1) − 1)`, `α` on the grid
//! `0.50, 0.51, .., 1.00` searched coarse to fine (`1.00, 0.95, .., 0.50`, then the 8 points
//! around the best of those), minimizing `Σ_(b=min..B) MSE_b(α) / MSE_b^indep` where `MSE_b(α)` is the squared error of the
//! cascade-derived weights `s·2^(B−b)·w_b` and `MSE_b^indep` that of an independent min-max
//! `b`-bit quantization of the channel (the normalization keeps the 2-bit error from
//! dominating). The calibrated scale stays unless a grid point is strictly better (ties go to
//! the larger `α`), so the objective never gets worse. The chosen scales replace the annotation's; the
//! codes are made later by `quantize`, as for any annotation. A graph output read out as a
//! 32-bit accumulator (its scale `s_x·s_w`, set by `calibrate`) follows the new scales.
//!
//! **Requires**: `calibrate` ran (weights are f32 with per-channel `QuantParams`), `quantize`
//! did not. Weights whose values are already representable on their scale (a model quantized
//! elsewhere, `fold-qdq`) keep the model's scales.
//!
//! **Guarantees**: the graph's structure is unchanged; only weight scales (and the scales of
//! accumulator read-outs) change. Every rescaled layer has a note
//! `cascade {min_bits=.., alpha=<mean α>, rel_mse_before=[..], rel_mse_after=[..]}` (per width
//! `B, B−1, .., min`: the layer's `Σ MSE_b / Σ MSE_b^indep`, with the calibrated scales and
//! with the chosen ones), and the report (`--report`) lists the same per layer.

use crate::error::{PassError, Result};
use crate::util::{by_channel, const_weight};
use crate::{Pass, PassContext, Stats};
use cimc_ir::{DType, Graph, Note, NoteValue, QuantParams};
use cimc_sim::program::cascade_step;
use rayon::prelude::*;
use serde_json::json;

pub struct Cascade;

/// The grid of `α`, in hundredths.
const ALPHA_PERCENT: std::ops::RangeInclusive<u32> = 50..=100;

/// The derived codes of every `B`-bit code: `table[i][c + qmax]` is the code at width `B − i`
/// that the cascade derives from `c` (independent of the scale, so made once per layer).
struct CascadeTable {
    qmax: i32,
    codes: Vec<Vec<i32>>,
}

impl CascadeTable {
    fn new(bits: u32, min: u32) -> CascadeTable {
        let qmax = (1i32 << (bits - 1)) - 1;
        let mut codes = vec![(-qmax..=qmax).collect::<Vec<i32>>()];
        for b in (min..bits).rev() {
            let prev = codes.last().expect("invariant: starts with the B-bit codes");
            codes.push(prev.iter().map(|&q| cascade_step(q, b + 1)).collect());
        }
        CascadeTable { qmax, codes }
    }
}

/// Per width `B, B−1, .., min`: the squared error of the cascade from the `B`-bit codes of `ch`
/// on scale `s`.
///
/// The weights are bucketed by their `B`-bit code (count, `Σw`, `Σw²`), so the error of width
/// `B − i` is `Σ_c Σw² − 2·a·Σw + n·a²` with `a = s·2^i·code_i(c)`: one pass over the weights
/// per scale instead of one per width. (`Σw²` and the error differ by ~`(s/|w|)²` ≥ 1e-5 in
/// relative terms, far above f64's 1e-16, so the cancellation costs nothing that matters.)
fn cascade_errors(ch: &[f32], s: f32, table: &CascadeTable, buckets: &mut [[f64; 3]]) -> Vec<f64> {
    let qmax = table.qmax;
    buckets.iter_mut().for_each(|b| *b = [0.0; 3]);
    for &w in ch {
        // The code `quantize` will make (f32, ties to even).
        let q = (w / s).round_ties_even().clamp(-qmax as f32, qmax as f32) as i32;
        let b = &mut buckets[(q + qmax) as usize];
        let w = w as f64;
        b[0] += 1.0;
        b[1] += w;
        b[2] += w * w;
    }
    table
        .codes
        .iter()
        .enumerate()
        .map(|(i, codes)| {
            let step = s as f64 * (1u64 << i) as f64;
            let e: f64 = buckets
                .iter()
                .zip(codes)
                .filter(|(b, _)| b[0] > 0.0)
                .map(|(&[n, s1, s2], &c)| {
                    let a = step * c as f64;
                    s2 - 2.0 * a * s1 + n * a * a
                })
                .sum();
            e.max(0.0)
        })
        .collect()
}

/// Per width `B, B−1, .., min`: the squared error of an independent min-max quantization of
/// `ch` at that width.
fn independent_errors(ch: &[f32], m: f32, bits: u32, min: u32) -> Vec<f64> {
    (min..=bits)
        .rev()
        .map(|b| {
            let qmax = ((1i32 << (b - 1)) - 1) as f32;
            let s = m / qmax;
            ch.iter()
                .map(|&w| {
                    let q = (w / s).round_ties_even().clamp(-qmax, qmax);
                    let d = w as f64 - s as f64 * q as f64;
                    d * d
                })
                .sum()
        })
        .collect()
}

/// What the search gives for one channel.
struct Channel {
    scale: f32,
    alpha: f64,
    before: Vec<f64>,
    after: Vec<f64>,
    indep: Vec<f64>,
}

fn search(ch: &[f32], old: f32, table: &CascadeTable) -> Channel {
    let m = ch.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let widths = table.codes.len();
    let bits = (table.qmax + 1).ilog2() + 1;
    let min = bits + 1 - widths as u32;
    if m == 0.0 || !m.is_finite() {
        let zero = vec![0.0; widths];
        return Channel {
            scale: old,
            alpha: 1.0,
            before: zero.clone(),
            after: zero.clone(),
            indep: zero,
        };
    }
    let indep = independent_errors(ch, m, bits, min);
    let energy: f64 = ch.iter().map(|&w| w as f64 * w as f64).sum();
    let floor = (energy * 1e-12).max(f64::MIN_POSITIVE);
    let objective = |e: &[f64]| e.iter().zip(&indep).map(|(&e, &i)| e / i.max(floor)).sum::<f64>();
    let qmax = table.qmax as f32;
    let mut buckets = vec![[0f64; 3]; (2 * table.qmax + 1) as usize];
    // The calibrated scale stays unless a point of the grid is strictly better.
    let before = cascade_errors(ch, old, table, &mut buckets);
    let mut best = (objective(&before), old, (old * qmax / m) as f64, before.clone());
    // Coarse to fine: every 5th point of the grid, then the 8 points around the best of them
    // (19 evaluations instead of 51; the objective is smooth in α at this resolution).
    let mut try_point = |a: u32, best: &mut (f64, f32, f64, Vec<f64>)| {
        let s = m * a as f32 / 100.0 / qmax;
        let e = cascade_errors(ch, s, table, &mut buckets);
        let o = objective(&e);
        if o < best.0 {
            *best = (o, s, a as f64 / 100.0, e);
        }
        o
    };
    let mut coarse_best = (f64::INFINITY, *ALPHA_PERCENT.end());
    for a in ALPHA_PERCENT.rev().step_by(5) {
        let o = try_point(a, &mut best);
        if o < coarse_best.0 {
            coarse_best = (o, a);
        }
    }
    let (c, lo, hi) = (coarse_best.1, *ALPHA_PERCENT.start(), *ALPHA_PERCENT.end());
    for a in (c.saturating_sub(4).max(lo)..=(c + 4).min(hi)).rev().filter(|&a| a != c) {
        try_point(a, &mut best);
    }
    let (_, scale, alpha, after) = best;
    Channel { scale, alpha, before, after, indep }
}

/// `x` to 4 decimals (short, stable notes and reports).
fn r4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

impl Pass for Cascade {
    fn name(&self) -> &'static str {
        "cascade"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        let Some(min) = cx.config.cascade_min_bits else { return Ok(stats) };
        let min = crate::config::check_bits("cascade min bits", min)? as u32;
        let mut report = Vec::new();
        for n in g.node_ids() {
            let Some((w, axis)) = const_weight(g, n) else { continue };
            let node = g.node(n);
            let node_err = |msg: &str| PassError::node("cascade", g, n, msg);
            let ty = g.ty(w);
            if ty.dtype != DType::F32 {
                return Err(node_err("its weights are codes already: run cascade before quantize"));
            }
            let q = ty.quant.clone().ok_or_else(|| {
                node_err("its weights have no quantization parameters (run calibrate first)")
            })?;
            let bits = q.bits as u32;
            if bits <= min {
                *stats.entry("layers at or below the lowest width").or_default() += 1;
                continue;
            }
            let c = ty.shape.get(axis).copied().unwrap_or(1);
            if q.zero_point.iter().any(|&z| z != 0) || (q.axis != Some(axis) && q.scale.len() != 1)
            {
                return Err(node_err("its weights are not symmetric per output channel"));
            }
            let old: Vec<f32> = (0..c).map(|k| q.scale[k.min(q.scale.len() - 1)]).collect();
            let data = g
                .value(w)
                .const_data()
                .expect("invariant: const_weight gives constants")
                .to_f32_vec();
            let chans = by_channel(&data, &ty.shape, axis);
            // Values already on their scale's grid: a model quantized elsewhere states them.
            let representable = chans
                .iter()
                .zip(&old)
                .all(|(ch, &s)| ch.iter().all(|&v| ((v / s) - (v / s).round()).abs() <= 1e-3));
            if representable {
                *stats.entry("layers kept (the model's scales)").or_default() += 1;
                continue;
            }
            let table = CascadeTable::new(bits, min);
            let found: Vec<Channel> = chans
                .par_iter()
                .zip(old.par_iter())
                .map(|(ch, &s)| search(ch, s, &table))
                .collect();
            let new: Vec<f32> = found.iter().map(|f| f.scale).collect();
            let total = |pick: &dyn Fn(&Channel) -> &Vec<f64>| -> Vec<f64> {
                (0..(bits - min + 1) as usize)
                    .map(|i| {
                        let e: f64 = found.iter().map(|f| pick(f)[i]).sum();
                        let ind: f64 = found.iter().map(|f| f.indep[i]).sum();
                        r4(if ind > 0.0 { e / ind } else { 1.0 })
                    })
                    .collect()
            };
            let (before, after) = (total(&|f| &f.before), total(&|f| &f.after));
            let alphas: Vec<f64> = found.iter().map(|f| f.alpha).collect();
            let mean = r4(alphas.iter().sum::<f64>() / alphas.len().max(1) as f64);
            let name = node.name.clone();
            let out = node.outputs[0];
            g.value_mut(w).ty.quant = Some(QuantParams {
                bits: q.bits,
                signed: q.signed,
                scale: new.clone(),
                zero_point: vec![0; c],
                axis: Some(axis),
            });
            // A 32-bit accumulator read-out keeps the scale s_x·s_w.
            if let Some(oq) = g.value_mut(out).ty.quant.as_mut() {
                if oq.bits == 32 && oq.axis.is_some() && oq.scale.len() == c {
                    for (k, s) in oq.scale.iter_mut().enumerate() {
                        *s = *s / old[k] * new[k];
                    }
                }
            }
            let note = Note::new("cascade")
                .with("min_bits", NoteValue::Int(min as i64))
                .with("alpha", NoteValue::Float(mean))
                .with("rel_mse_before", NoteValue::Floats(before.clone()))
                .with("rel_mse_after", NoteValue::Floats(after.clone()));
            cimc_ir::note::put(&mut g.node_mut(n).notes, note);
            let fold = |f: fn(f64, f64) -> f64, init| alphas.iter().copied().fold(init, f);
            report.push(json!({
                "layer": name,
                "bits": bits,
                "channels": c,
                "widths": (min..=bits).rev().collect::<Vec<_>>(),
                "alpha_mean": mean,
                "alpha_min": fold(f64::min, f64::INFINITY),
                "alpha_max": fold(f64::max, f64::NEG_INFINITY),
                "rel_mse_before": before,
                "rel_mse_after": after,
            }));
            *stats.entry("layers rescaled").or_default() += 1;
        }
        cx.report("cascade", json!({ "min_bits": min, "layers": report }));
        Ok(stats)
    }
}
