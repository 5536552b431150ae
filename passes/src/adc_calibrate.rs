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
use cimc_ir::{AdcRange, Graph, NodeId, Placement};

pub struct AdcCalibrate;

/// Conversions of `hist` whose code `(P + half) >> e` exceeds `top`.
pub fn clipped(hist: &[u64], e: u32, top: u64) -> u64 {
    let half = if e == 0 { 0 } else { 1u64 << (e - 1) };
    hist.iter().enumerate().filter(|(p, _)| ((*p as u64 + half) >> e) > top).map(|(_, &c)| c).sum()
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
        let mut adc = cimc_sim::program::AdcStats::default();
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
            let top = m.geometry.adc_top();
            if m.adc_range == AdcRange::Calib {
                let p_q = st.percentile(chip.geometry().percentile / 100.0).max(1);
                let e = crate::tile::worst_case_step(p_q, top);
                m.adc_step.iter_mut().for_each(|s| *s = e);
                *stats.entry("calibrated layers").or_default() += 1;
            }
            let clip = clipped(&st.histogram, m.adc_step[0], top);
            let total: u64 = st.histogram.iter().sum();
            m.clip_rate = Some(if total == 0 { 0.0 } else { clip as f64 / total as f64 });
            *stats.entry("conversions").or_default() += total;
            *stats.entry("clipped conversions").or_default() += clip;
        }
        Ok(stats)
    }
}
