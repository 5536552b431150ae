//! Runs that count every crossbar step's partial sums ([`ProgramRunner::run_with_adc_stats`]),
//! for the `adc-calibrate` pass and ADC reports; on a lean runner the statistics records were
//! sized when the steps were checked (the converted weights are gone by then).

use super::{step_err, AdcStats, ProgramRunner};
use cimc_interp::Tensor;
use cimc_interp::{InterpError, Result};

impl ProgramRunner {
    /// Runs the program like [`ProgramRunner::run`] and adds the ADC statistics of every
    /// crossbar step to `stats` (an empty `stats` is sized for the program with full records;
    /// one filled by earlier runs of the same program accumulates; a step given a counting
    /// record, [`super::StepAdcStats::counting`], counts its levels instead of a histogram).
    /// Crossbar steps whose conversions are all exact still go through the crossbar kernel, so
    /// that they are counted too.
    pub fn run_with_adc_stats(
        &self,
        inputs: Vec<Tensor>,
        stats: &mut AdcStats,
    ) -> Result<Vec<Tensor>> {
        let n = self.program.steps.len();
        if stats.steps.is_empty() {
            stats.steps = vec![None; n];
        }
        if stats.steps.len() != n {
            return Err(InterpError::Input {
                name: "stats".into(),
                msg: format!("statistics of {} steps for a program of {n}", stats.steps.len()),
            });
        }
        for (i, s) in self.program.steps.iter().enumerate() {
            let fresh = match &self.lean {
                Some(templates) => templates.get(i).cloned().flatten(),
                None => self.prepared[i].as_ref().and_then(|p| p.new_stats()),
            };
            let Some(fresh) = fresh else {
                continue;
            };
            let fresh = fresh.map_err(|m| step_err(i, s, m))?;
            match &stats.steps[i] {
                None => stats.steps[i] = Some(fresh),
                Some(old) if old.at_least.len() != old.levels.len() => {
                    return Err(InterpError::Input {
                        name: "stats".into(),
                        msg: format!(
                            "step {i}: {} counts for {} levels",
                            old.at_least.len(),
                            old.levels.len()
                        ),
                    })
                }
                // A counting record ([`super::StepAdcStats::counting`]) or a full one of this step.
                Some(old)
                    if old.histogram.is_empty() || old.histogram.len() == fresh.histogram.len() => {
                }
                Some(_) => {
                    return Err(InterpError::Input {
                        name: "stats".into(),
                        msg: format!("step {i}: histogram of another length"),
                    })
                }
            }
        }
        self.run_impl(inputs, Some(stats))
    }
}
