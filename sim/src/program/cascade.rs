//! Cascade weight downsampling: one program, every weight width (`docs/cascade.md`).
//!
//! **The definition.** A matrix step's weight codes `w_B` (`B` = the step's weight bits, signed
//! narrow range `±(2^(B−1) − 1)`, zero point 0, per-channel scale `s`) define its codes at every
//! lower width by stepping down one bit at a time:
//!
//! ```text
//! w_(b−1) = clamp( round_half_even(w_b / 2), −(2^(b−2) − 1), 2^(b−2) − 1 )     scale 2·s_b
//! ```
//!
//! Width `b` is reached by `d = B − b` such steps ([`cascade_codes`]; iterated rounding, which
//! is not one rounding of `w_B / 2^d`: `w = 5, d = 3` gives 0, not 1). The accumulator stays in
//! the source units `s_x·s`, so the step at width `b` is the step with weight codes `w_b·2^d`;
//! bias and requantization are unchanged. That is the reference ([`Derivation::exact`]).
//!
//! **On a crossbar** the cells keep the slices of `w_B`; width `b` drives only the slices
//! `j ≥ j0 = floor(d / cell_bits)` (those that do not lie wholly in the dropped bits). With
//! `m = j0·cell_bits` those slices are exactly the cells of a crossbar storing the codes
//! `T = sign(w_B)·(|w_B| >> m)` (differential) or `T = ((w_B + 2^(B−1)) >> m) − 2^(B−1−m)`
//! (offset) at `B − m` weight bits, so the existing crossbar kernel runs on that derived
//! crossbar ([`TopSlices`]) with every partial sum and conversion of the stored array. The rest
//! is digital and exact: `acc_b = 2^m·acc_T + Σ_k (q_x[k] − z_x)·R[k,n] + bias` with the residual
//! `R = w_b·2^d − T·2^m` (the rounding that truncating slices loses). When every conversion is
//! lossless, `acc_b` equals the reference exactly (`sim/tests/cascade_props.rs`).
//!
//! [`ProgramRunner::with_weight_widths`] prepares a program at given widths ([`WeightWidths`]);
//! nothing is recompiled.

use super::kernels::{self, PreparedMatrix};
use super::{step_err, ProgramRunner};
use cimc_backends::program::{Crossbar, IntTensor, MatrixKind, Program, Step};
use cimc_interp::{InterpError, Result};
use cimc_ir::WeightEncoding;
use rayon::prelude::*;
use std::collections::BTreeMap;

/// One cascade step: a code of width `b` to its adjacent code of width `b − 1`,
/// `clamp(round_half_even(w / 2), ±(2^(b−2) − 1))`.
pub fn cascade_step(w: i32, b: u32) -> i32 {
    let h = w >> 1; // floor(w / 2)
    let r = if w & 1 == 1 && h & 1 == 1 { h + 1 } else { h };
    let top = (1i32 << b.saturating_sub(2).min(30)) - 1;
    r.clamp(-top, top)
}

/// The codes of width `to_bits` derived from codes `w` of width `from_bits` by
/// `from_bits − to_bits` cascade steps ([`cascade_step`]); `w` itself when
/// `to_bits >= from_bits`.
pub fn cascade_codes(w: &[i32], from_bits: u32, to_bits: u32) -> Vec<i32> {
    w.iter().map(|&v| ((to_bits + 1..=from_bits).rev()).fold(v, cascade_step)).collect()
}

/// The weight width of every matrix step of a program: one width for all layers, and
/// overrides by layer (a step's origin, the IR node's name). A width at or above a layer's own
/// bits leaves it as compiled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightWidths {
    pub all: Option<u32>,
    pub layers: BTreeMap<String, u32>,
}

impl WeightWidths {
    /// Every layer at `bits`.
    pub fn uniform(bits: u32) -> WeightWidths {
        WeightWidths { all: Some(bits), layers: BTreeMap::new() }
    }

    /// The width of the layer named `origin`, when one is set.
    pub fn width_of(&self, origin: &str) -> Option<u32> {
        self.layers.get(origin).copied().or(self.all)
    }

    /// Checks the widths against `program`: every width at least 2, every layer named the
    /// origin of a Conv or Gemm step.
    pub fn check(&self, program: &Program) -> Result<()> {
        let bad = |name: &str, msg: String| InterpError::Input { name: name.to_string(), msg };
        if let Some(b) = self.all.filter(|&b| b < 2) {
            return Err(bad("wbits", format!("weight width {b}: widths must be at least 2")));
        }
        for (name, &b) in &self.layers {
            if b < 2 {
                return Err(bad(name, format!("weight width {b}: widths must be at least 2")));
            }
            let matrix = program
                .steps
                .iter()
                .zip(&program.origins)
                .any(|(s, o)| o == name && s.as_matrix().is_some());
            if !matrix {
                return Err(bad(
                    name,
                    format!("a weight width is given for '{name}', which is no Conv or Gemm layer of the program"),
                ));
            }
        }
        Ok(())
    }
}

/// A crossbar step's stored array with only its top weight slices driven, as a crossbar of its
/// own.
#[derive(Clone, Debug, PartialEq)]
pub struct TopSlices {
    /// The stored crossbar at `weight_bits − m` and `magnitude_bits − m`, with columns such that
    /// column groups hold the same outputs (so they keep their ADC steps).
    pub crossbar: Crossbar,
    /// `T`, in the step's weight layout: the codes whose slices are the driven ones.
    pub weights: Vec<i32>,
    /// `m = j0·cell_bits`: `acc_T` is worth `2^m` source units.
    pub shift: u32,
    /// `R = w_b·2^d − T·2^m`, in the step's weight layout: the digital residual.
    pub residual: Vec<i32>,
}

/// A matrix step's weights at a lower width.
#[derive(Clone, Debug, PartialEq)]
pub struct Derivation {
    /// `B`: the step's own weight bits.
    pub from_bits: u32,
    /// `b`.
    pub to_bits: u32,
    /// `w_b·2^d`, in the step's weight layout: the reference weights, in source units.
    pub exact: Vec<i32>,
    /// For a crossbar step: what the crossbar drives and the residual.
    pub top: Option<TopSlices>,
}

/// The codes of a stored crossbar's top slices: the slices of `T` are the slices `j ≥ m/cb`
/// of the stored magnitudes (differential: `|w| >> m` with the sign of `w`; offset and
/// flipped: `(w + 2^(B−1)) >> m − 2^(B−1−m)`, whose slice columns are the stored ones, so the
/// flip rule chooses the same complements).
pub fn top_codes(w: &[i32], encoding: WeightEncoding, weight_bits: u32, shift: u32) -> Vec<i32> {
    let half = 1i64 << weight_bits.saturating_sub(1).min(32);
    w.iter()
        .map(|&v| match encoding {
            WeightEncoding::Differential => v.signum() * (v.unsigned_abs() >> shift.min(31)) as i32,
            WeightEncoding::Offset | WeightEncoding::Flipped => {
                (((v as i64 + half) >> shift.min(63)) - (half >> shift.min(63))) as i32
            }
        })
        .collect()
}

/// The derivation of matrix step `s` at `to_bits` (see the module doc), `None` when
/// `to_bits` is at or above the step's weight bits.
pub fn derive(s: &Step, to_bits: u32) -> std::result::Result<Option<Derivation>, String> {
    let ms = s.as_matrix().ok_or("a weight width for a step that is no Conv or Gemm")?;
    let (weights, crossbar) = (ms.weights, ms.crossbar);
    let from_bits = weights.bits as u32;
    if to_bits < 2 {
        return Err(format!("weight width {to_bits}: widths must be at least 2"));
    }
    if to_bits >= from_bits {
        return Ok(None);
    }
    if from_bits > 16 {
        return Err(format!("weights of {from_bits} bits (at most 16 cascade)"));
    }
    let d = from_bits - to_bits;
    let exact: Vec<i32> =
        cascade_codes(&weights.data, from_bits, to_bits).into_iter().map(|v| v << d).collect();
    let top = match crossbar {
        None => None,
        Some(x) => {
            if x.weight_bits != from_bits {
                return Err(format!(
                    "crossbar weight_bits {} differ from the weights' {from_bits} bits",
                    x.weight_bits
                ));
            }
            let shift = d / x.geometry.cell_bits.max(1) * x.geometry.cell_bits;
            let cpg = x.geometry.cols / x.columns_per_output().max(1);
            let mut t = x.clone();
            t.weight_bits = x.weight_bits - shift;
            t.magnitude_bits =
                x.magnitude_bits.checked_sub(shift).filter(|&b| b >= 1).ok_or_else(|| {
                    format!("{} magnitude bits, {shift} dropped", x.magnitude_bits)
                })?;
            t.geometry.cols = cpg.max(1) * t.columns_per_output();
            let weights = top_codes(&weights.data, x.geometry.encoding, from_bits, shift);
            let residual = exact.iter().zip(&weights).map(|(&e, &t)| e - (t << shift)).collect();
            Some(TopSlices { crossbar: t, weights, shift, residual })
        }
    };
    Ok(Some(Derivation { from_bits, to_bits, exact, top }))
}

/// A crossbar step at a lower width, prepared: the top-slice crossbar sits in the runner's
/// `prepared` entry of the step; this holds the digital parts.
pub(crate) struct Derived {
    shift: u32,
    /// `w_b·2^d`: the exact product, taken when every conversion is lossless.
    exact: PreparedMatrix,
    /// `R`: the residual's exact product.
    residual: PreparedMatrix,
}

/// `s` with weights `data` (same shape) of `bits` bits, `crossbar`, and a zero bias (the
/// derived parts add the step's own bias once).
fn with_weights(s: &Step, data: Vec<i32>, bits: u32, crossbar: Option<Crossbar>) -> Step {
    let mut s = s.clone();
    if let Step::Conv { weights, bias, crossbar: x, .. }
    | Step::Gemm { weights, bias, crossbar: x, .. } = &mut s
    {
        *weights = IntTensor { shape: weights.shape.clone(), bits: bits as u8, data };
        bias.iter_mut().for_each(|b| *b = 0);
        *x = crossbar;
    }
    s
}

impl Derived {
    /// Prepares step `s` at `to_bits`: the preparation the runner keeps for the step, and the
    /// digital parts of a crossbar step (`None` for a step without a crossbar: its exact
    /// weights run as any step's).
    fn prepare(
        s: &Step,
        d: Derivation,
        bufs: &[cimc_backends::program::BufferDecl],
    ) -> std::result::Result<(PreparedMatrix, Option<Derived>), String> {
        let prep = |st: &Step| {
            kernels::prepare(st, bufs)?.ok_or_else(|| "a matrix step was not prepared".to_string())
        };
        let exact = prep(&with_weights(s, d.exact, d.from_bits, None))?;
        match d.top {
            None => Ok((exact, None)),
            Some(t) => {
                let top =
                    prep(&with_weights(s, t.weights, t.crossbar.weight_bits, Some(t.crossbar)))?;
                let residual = prep(&with_weights(s, t.residual, d.from_bits + 1, None))?;
                Ok((top, Some(Derived { shift: t.shift, exact, residual })))
            }
        }
    }

    /// Runs crossbar step `s` (its bias and requantization; its geometry) at the derived
    /// width: `top` is the prepared top-slice crossbar.
    pub(crate) fn run(
        &self,
        s: &Step,
        top: &PreparedMatrix,
        x: &[i32],
        si: &[usize],
        so: &[usize],
        stats: Option<&mut super::StepAdcStats>,
    ) -> std::result::Result<Vec<i32>, String> {
        let ms = s.as_matrix().ok_or("not a matrix step")?;
        let (bias, requant) = (ms.bias, ms.requant);
        let xb = top.crossbar().ok_or("a cascade step without its crossbar")?;
        if stats.is_none() && xb.lossless {
            return kernels::run_exact(s, &self.exact, x, si, so, &kernels::RequantFinish::of(s)?);
        }
        let acc: Vec<i64> = super::crossbar::run_with(s, xb, x, si, so, stats, &|a, _| a)?;
        let each = crate::int_gemm::EachOutput(|a: i64, _: usize| a);
        let res: Vec<i64> = kernels::run_exact(s, &self.residual, x, si, so, &each)?;
        let m = bias.len().max(1);
        // Output `i`'s channel: `[N, M, spatial..]` for Conv, `[.., N]` for Gemm.
        let inner = match ms.kind {
            MatrixKind::Conv { .. } => so.iter().skip(2).product::<usize>().max(1),
            MatrixKind::Gemm => 1,
        };
        let shift = self.shift;
        Ok(acc
            .par_iter()
            .zip(res.par_iter())
            .enumerate()
            .map(|(i, (&a, &r))| {
                let ch = (i / inner) % m;
                requant.apply((a << shift) + r + bias[ch], ch)
            })
            .collect())
    }
}

impl ProgramRunner {
    /// The program prepared at the weight widths `widths` (the cascade, see the module doc):
    /// every Conv/Gemm step whose width is below its weight bits runs its derived weights; the
    /// others run as compiled. Errors: a width below 2, a layer that is no Conv or Gemm step of
    /// the program.
    pub fn with_weight_widths(program: &Program, widths: &WeightWidths) -> Result<ProgramRunner> {
        widths.check(program)?;
        let mut plan: Vec<Option<Derivation>> = Vec::with_capacity(program.steps.len());
        for (i, (s, origin)) in program.steps.iter().zip(&program.origins).enumerate() {
            let d = match (s.as_matrix(), widths.width_of(origin)) {
                (Some(_), Some(b)) => derive(s, b).map_err(|m| step_err(i, s, m))?,
                (Some(_), None) | (None, _) => None,
            };
            plan.push(d);
        }
        let skip: Vec<bool> = plan.iter().map(Option::is_some).collect();
        let mut runner = ProgramRunner::new_except(program, &skip)?;
        let mut cascade = Vec::with_capacity(plan.len());
        for (i, d) in plan.into_iter().enumerate() {
            let Some(d) = d else {
                cascade.push(None);
                continue;
            };
            let s = &program.steps[i];
            let (prep, derived) =
                Derived::prepare(s, d, &program.buffers).map_err(|m| step_err(i, s, m))?;
            runner.prepared[i] = Some(prep);
            cascade.push(derived);
        }
        runner.cascade = cascade;
        Ok(runner)
    }
}
