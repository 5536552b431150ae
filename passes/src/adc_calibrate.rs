//! `adc-calibrate`: chooses ADC steps from the partial sums seen on calibration data, and
//! measures every crossbar layer's clip rate.
//!
//! **Does**: lowers the graph to the interpreter program, runs it on the calibration samples
//! with every crossbar layer's partial sums counted (exact sums `P`, before the ADC), and for
//! each layer whose range is `calib` sets the step `2^e` to the smallest with
//! `(2^b_adc − 1) · 2^e ≥ P_q`, `P_q` the chip's percentile (default 99.99 %) of the observed
//! sums (`docs/hardware-model.md` §3). The clip rate of every crossbar layer (the fraction of its
//! conversions whose code would exceed the top code with its step) is written into its map.
//!
//! Decision: the step and the clip count need no histogram. `P_q ≤ L` exactly when at least
//! `⌈q·N⌉` of the `N` conversions saw a sum `≤ L`, so the step is decided by how many sums reach
//! `(2^b_adc − 1)·2^e + 1` for each candidate `e` below the worst case, and a step `e` clips the
//! sums `≥ 2^e·2^b_adc − half`: the run counts only those levels (a vector compare per 32
//! conversions, [`StepAdcStats::counting`]) instead of histogramming every partial sum (a
//! scattered increment per conversion, most of the compile's time before). The ISAAC-like
//! target needs one level (256: `p_max` = 384, `2^b_adc − 1` = 255).
//!
//! Decision: the sums are observed with the steps the `tile` pass chose (worst case, which
//! never clips), not layer by layer with the calibrated steps of the layers before; so the
//! inputs each layer sees during calibration are the ones of a chip that does not clip.
//! One step per layer: with `per_column_group`, every column group gets the layer's step.
//!
//! **Requires**: `tile` ran (crossbar maps) and calibration data is given. Without a chip the
//! pass does nothing; with `calib` layers but no calibration data it is an error.
//!
//! **Guarantees**: when some layer's range is `calib`, every crossbar layer gets its clip rate
//! measured on the calibration data; lossless and worst-case layers keep their steps (and, when
//! no layer is calibrated, the clip rate of 0 that `tile` gave them, which holds by
//! construction).

use crate::error::{PassError, Result};
use crate::util::CalibBatches;
use crate::{Pass, PassContext, Stats};
use cimc_ir::{AdcRange, CrossbarMap, Graph, NodeId, Placement};
use cimc_sim::program::StepAdcStats;

pub struct AdcCalibrate;

/// The smallest partial sum whose code `(P + half) >> e` exceeds `top`: `(top + 1)·2^e − half`.
pub fn clip_level(e: u32, top: u64) -> u64 {
    let half = if e == 0 { 0 } else { 1u64 << (e - 1) };
    ((top + 1) << e) - half
}

/// The step `e` for the `q` percentile (0..=1) of the sums `st` counted: the smallest with
/// `top·2^e ≥ max(P_q, 1)`, `P_q` as [`StepAdcStats::percentile`] gives it (`p_max` when there
/// were no conversions). `at_least(L)` is the number of conversions with `P ≥ L`; `None` when
/// it does not count a level it needs.
pub fn calibrated_step(
    conversions: u64,
    at_least: impl Fn(u64) -> Option<u64>,
    q: f64,
    p_max: u64,
    top: u64,
) -> Option<u32> {
    let e_max = crate::tile::worst_case_step(p_max.max(1), top);
    let need = ((q.clamp(0.0, 1.0) * conversions as f64).ceil() as u64).max(1);
    for e in 0..e_max {
        // P_q ≤ top·2^e: at least `need` sums are at most top·2^e.
        if conversions.saturating_sub(at_least((top << e) + 1)?) >= need {
            return Some(e);
        }
    }
    Some(e_max)
}

/// The levels [`calibrated_step`] and the clip count of layer `m` need counted, those a sum can
/// reach (`≤ p_max`; no sum reaches the others).
fn levels_of(m: &CrossbarMap) -> Vec<u64> {
    let (top, p_max) = (m.geometry.adc_top(), m.geometry.p_max(m.geometry.rows));
    let mut levels = Vec::new();
    if m.adc_range == AdcRange::Calib {
        let e_max = crate::tile::worst_case_step(p_max.max(1), top);
        levels.extend((0..e_max).map(|e| (top << e) + 1));
        levels.extend((0..=e_max).map(|e| clip_level(e, top)));
    } else {
        levels.push(clip_level(m.adc_step[0], top));
    }
    levels.retain(|&l| l <= p_max);
    levels.sort_unstable();
    levels.dedup();
    levels
}

impl Pass for AdcCalibrate {
    fn name(&self) -> &'static str {
        "adc-calibrate"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        let Some(chip) = &cx.chip else { return Ok(stats) };
        let layers: Vec<NodeId> = g
            .node_ids()
            .into_iter()
            .filter(|&id| matches!(g.node(id).placement, Placement::Crossbar(_)))
            .collect();
        if layers.is_empty() {
            return Ok(stats);
        }
        let wants_calib = layers.iter().any(|&id| match &g.node(id).placement {
            Placement::Crossbar(m) => m.adc_range == AdcRange::Calib,
            _ => false,
        });
        if !wants_calib {
            // Lossless and worst-case steps never clip: their clip rate (0) is already set.
            return Ok(stats);
        }
        let Some(calib) = &cx.calib else {
            return Err(PassError::Missing(
                "ADC range 'calib' needs calibration data (--calib), or use --adc-range worst"
                    .into(),
            ));
        };
        let program = cimc_backends::program::lower::lower(g)
            .map_err(|e| PassError::lowering("lowering for ADC calibration", e))?;
        // Lean: the program is run once per calibration chunk, and a prepared runner would
        // hold every layer's converted weights at once (`docs/compile-memory.md`).
        let runner = cimc_sim::program::ProgramRunner::lean(program)?;
        let program = runner.program();
        let xbar_steps: Vec<usize> = program
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(
                    s,
                    cimc_backends::program::Step::Conv { crossbar: Some(_), .. }
                        | cimc_backends::program::Step::Gemm { crossbar: Some(_), .. }
                )
            })
            .map(|(i, _)| i)
            .collect();
        if xbar_steps.len() != layers.len() {
            return Err(PassError::Internal(format!(
                "{} crossbar layers but {} crossbar steps in the program",
                layers.len(),
                xbar_steps.len()
            )));
        }
        // A counting record per crossbar step, with the levels its layer needs.
        let mut adc = cimc_sim::program::AdcStats { steps: vec![None; program.steps.len()] };
        for (&id, &step) in layers.iter().zip(&xbar_steps) {
            if let Placement::Crossbar(m) = &g.node(id).placement {
                adc.steps[step] = Some(StepAdcStats::counting(levels_of(m)));
            }
        }
        let batches = CalibBatches::new(g, calib, cx.config.calib_samples)?;
        // Whole chunks only (a zero-padded chunk would count made-up partial sums), unless the
        // data is smaller than one batch.
        for (start, len) in batches.ranges() {
            if len < batches.batch && start > 0 {
                break;
            }
            runner.run_with_adc_stats(batches.inputs(start, len)?, &mut adc)?;
            if let Some(p) = &cx.progress {
                p((start + len) as u64, batches.samples as u64);
            }
        }
        for (&id, &step) in layers.iter().zip(&xbar_steps) {
            let Some(Some(st)) = adc.steps.get(step) else {
                return Err(PassError::Internal(format!(
                    "no partial sums counted for step {step}"
                )));
            };
            let Placement::Crossbar(m) = &mut g.node_mut(id).placement else {
                unreachable!("invariant: layers holds crossbar nodes only")
            };
            let (top, p_max) = (m.geometry.adc_top(), m.geometry.p_max(m.geometry.rows));
            // No sum exceeds p_max: the levels above it were not counted.
            let at_least = |l: u64| if l > p_max { Some(0) } else { st.count_at_least(l) };
            let uncounted = || PassError::Internal(format!("step {step}: a level not counted"));
            if m.adc_range == AdcRange::Calib {
                let q = chip.geometry().percentile / 100.0;
                let e = calibrated_step(st.conversions, at_least, q, p_max, top)
                    .ok_or_else(uncounted)?;
                m.adc_step.iter_mut().for_each(|s| *s = e);
                *stats.entry("calibrated layers").or_default() += 1;
            }
            let clip = at_least(clip_level(m.adc_step[0], top)).ok_or_else(uncounted)?;
            let total = st.conversions;
            m.clip_rate = Some(if total == 0 { 0.0 } else { clip as f64 / total as f64 });
            *stats.entry("conversions").or_default() += total;
            *stats.entry("clipped conversions").or_default() += clip;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tile::worst_case_step;

    /// Conversions of `hist` whose code `(P + half) >> e` exceeds `top` (the reference).
    fn clipped(hist: &[u64], e: u32, top: u64) -> u64 {
        let half = if e == 0 { 0 } else { 1u64 << (e - 1) };
        let codes = hist.iter().enumerate().filter(|(p, _)| ((*p as u64 + half) >> e) > top);
        codes.map(|(_, &c)| c).sum()
    }

    /// The step and clip count from counted levels equal those from the whole histogram
    /// (`percentile`, `worst_case_step`, the clip of every sum) on random histograms: sparse
    /// and dense, empty, all in the tail, percentiles from 0 to 1.
    #[test]
    fn counted_levels_decide_as_the_histogram() {
        let mut rng = cimc_sim::noise::SplitMix64(7);
        for case in 0..3000 {
            let adc_bits = rng.int(1i64, 9) as u32;
            let top = (1u64 << adc_bits) - 1;
            let p_max = rng.int(0i64, 1200) as u64;
            let mut hist = vec![0u64; p_max as usize + 1];
            let kind = rng.int(0i64, 3);
            for (p, h) in hist.iter_mut().enumerate() {
                *h = match kind {
                    0 => 0,
                    1 => (rng.int(0i64, 9) == 0) as u64 * rng.int(0i64, 3) as u64,
                    2 => rng.int(0i64, 1000) as u64 >> (p / 64).min(20),
                    _ => rng.int(0i64, 5) as u64,
                };
            }
            let n: u64 = hist.iter().sum();
            let q = [0.0, 0.5, 0.9, 0.99, 0.9999, 1.0][rng.int(0i64, 5) as usize];
            let mut st = StepAdcStats::counting(Vec::new());
            st.conversions = n;
            st.histogram = hist.clone();
            let want = worst_case_step(st.percentile(q).max(1), top);
            // The counting record a run would give: the levels' counts only.
            let map_levels = {
                let e_max = worst_case_step(p_max.max(1), top);
                let mut l: Vec<u64> = (0..e_max).map(|e| (top << e) + 1).collect();
                l.extend((0..=e_max).map(|e| clip_level(e, top)));
                l.retain(|&l| l <= p_max);
                l
            };
            let mut counted = StepAdcStats::counting(map_levels.clone());
            counted.conversions = n;
            for (c, &l) in counted.at_least.iter_mut().zip(&map_levels) {
                *c = hist[l as usize..].iter().sum();
            }
            let at_least = |l: u64| if l > p_max { Some(0) } else { counted.count_at_least(l) };
            let got = calibrated_step(n, at_least, q, p_max, top).unwrap();
            assert_eq!(got, want, "case {case}: step");
            for e in 0..=got {
                let clip = at_least(clip_level(e, top)).unwrap();
                assert_eq!(clip, clipped(&hist, e, top), "case {case}: clip with step {e}");
            }
        }
    }
}
