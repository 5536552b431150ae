//! Monte Carlo evaluation of a crossbar program under analog non-idealities
//! (`docs/hardware-model.md` §5, `docs/noise.md`): top-1 over independent programmings of the chip
//! (trials), for one noise spec or a series of them (a swept key, drift times), with the JSON
//! report and SVG plot of `cimc eval --noise`.
//!
//! Trials run in parallel over rayon's pool (each also parallel inside its crossbar steps).
//! Trial `t` of seed `s` draws from `(s, t)` only, and read noise is keyed on each image's index
//! in the data set, so every figure is the same for any number of threads. A spec that is off
//! runs the exact program (`ProgramRunner::run`), untouched.

use crate::error::{Error, Result};
use crate::model::predicted_classes;
use crate::svg;
use crate::tensor_util::slice_batch;
use cimc_backends::noise::NoiseSpec;
use cimc_interp::tensor::{count_correct, top1_percent};
use cimc_interp::Tensor;
use cimc_sim::noise::{NoiseConfig, NoisyChip};
use cimc_sim::program::ProgramRunner;
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// One evaluated configuration: a label, its spec, and its position on the plot's x axis.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub label: String,
    pub spec: NoiseSpec,
    pub x: f64,
}

/// Top-1 over the trials of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioResult {
    pub label: String,
    pub spec: NoiseSpec,
    pub x: f64,
    /// Top-1 (%) of each trial, in trial order.
    pub top1: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Wall time of all the scenario's trials, and divided by the trials.
    pub seconds: f64,
    pub seconds_per_trial: f64,
}

/// A Monte Carlo evaluation: the exact program beside every scenario.
#[derive(Clone, Debug, Serialize)]
pub struct McReport {
    pub samples: usize,
    pub trials: usize,
    pub seed: u64,
    pub exact_top1: f64,
    /// Wall time of one exact run over the samples.
    pub exact_seconds: f64,
    pub scenarios: Vec<ScenarioResult>,
}

/// A duration such as `20s`, `1.5m`, `1h`, `1d`, `1y` (a bare number is seconds; `m` is
/// minutes, `y` 365 days), in seconds.
pub fn parse_duration(s: &str) -> Result<f64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 'h')) => (&t[..i], 3600.0),
        Some((i, 'd')) => (&t[..i], 86400.0),
        Some((i, 'y')) => (&t[..i], 365.0 * 86400.0),
        _ => (t, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v * mult),
        _ => Err(Error::Usage(format!(
            "--drift-time '{s}': expected a duration such as 20s, 5m, 1h, 1d or 1y"
        ))),
    }
}

/// `spec` with `key` set to `value` (a key of the `[noise]` table), validated; `origin` names
/// where the value came from in errors.
pub fn with_key(spec: &NoiseSpec, key: &str, value: f64, origin: &str) -> Result<NoiseSpec> {
    let mut j = serde_json::to_value(spec).expect("invariant: a spec serializes");
    let obj = j.as_object_mut().expect("invariant: a spec is a JSON object");
    match obj.get(key) {
        Some(serde_json::Value::Number(_)) => {
            obj.insert(key.to_string(), serde_json::json!(value));
        }
        _ => {
            let keys: Vec<&str> =
                obj.iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k.as_str()).collect();
            return Err(Error::Usage(format!(
                "{origin}: '{key}' is not a numeric key of [noise] (one of {})",
                keys.join(", ")
            )));
        }
    }
    let s: NoiseSpec = serde_json::from_value(j)
        .map_err(|e| Error::Usage(format!("{origin}: {key} = {value}: {e}")))?;
    s.validate(origin).map_err(|e| Error::Usage(e.to_string()))?;
    Ok(s)
}

/// Correct predictions of `run` over `x` (`[N, ...]`) in batches of `batch` (the last one
/// zero-padded); `run(inputs, first_image)`.
fn correct_in_batches(
    x: &Tensor,
    labels: &[i64],
    batch: usize,
    run: impl Fn(Vec<Tensor>, u64) -> Result<Vec<Tensor>>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<usize> {
    let n = labels.len();
    let mut correct = 0;
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let out = run(vec![slice_batch(x, start, len, batch)], start as u64)?;
        correct += count_correct(&predicted_classes(&out)?, &labels[start..start + len]);
        start += len;
        progress(len);
    }
    Ok(correct)
}

/// Top-1 (%) of the exact program over `x`.
pub fn exact_top1(
    runner: &ProgramRunner,
    batch: usize,
    x: &Tensor,
    labels: &[i64],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<f64> {
    let c = correct_in_batches(x, labels, batch, |i, _| Ok(runner.run(i)?), progress)?;
    Ok(top1_percent(c, labels.len()))
}

/// Top-1 (%) of each of `trials` programmings of the chip under `cfg`, trials in parallel.
pub fn trials_top1(
    runner: &ProgramRunner,
    batch: usize,
    x: &Tensor,
    labels: &[i64],
    cfg: &NoiseConfig,
    trials: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<f64>> {
    if cfg.is_off() {
        // Noise off: the exact program, once (every trial is the same).
        let t = exact_top1(runner, batch, x, labels, progress)?;
        for _ in 1..trials {
            progress(labels.len());
        }
        return Ok(vec![t; trials]);
    }
    (0..trials as u64)
        .into_par_iter()
        .map(|trial| {
            let chip = NoisyChip::program(runner, cfg, trial)?;
            let c = correct_in_batches(
                x,
                labels,
                batch,
                |i, first| Ok(runner.run_noisy(i, &chip, first)?),
                progress,
            )?;
            Ok(top1_percent(c, labels.len()))
        })
        .collect()
}

/// Runs every scenario (`trials` trials each, seed `seed`) and the exact program.
#[allow(clippy::too_many_arguments)]
pub fn monte_carlo(
    runner: &ProgramRunner,
    batch: usize,
    x: &Tensor,
    labels: &[i64],
    scenarios: &[Scenario],
    trials: usize,
    seed: u64,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<McReport> {
    let t0 = Instant::now();
    let exact = exact_top1(runner, batch, x, labels, progress)?;
    let exact_seconds = t0.elapsed().as_secs_f64();
    let mut out = Vec::with_capacity(scenarios.len());
    for sc in scenarios {
        let cfg = NoiseConfig::new(sc.spec.clone(), seed);
        let t = Instant::now();
        let top1 = trials_top1(runner, batch, x, labels, &cfg, trials, progress)?;
        let seconds = t.elapsed().as_secs_f64();
        let (mean, std, min, max) = stats(&top1);
        out.push(ScenarioResult {
            label: sc.label.clone(),
            spec: sc.spec.clone(),
            x: sc.x,
            top1,
            mean,
            std,
            min,
            max,
            seconds,
            seconds_per_trial: seconds / trials.max(1) as f64,
        });
    }
    Ok(McReport {
        samples: labels.len(),
        trials,
        seed,
        exact_top1: exact,
        exact_seconds,
        scenarios: out,
    })
}

/// Mean, sample standard deviation (0 for one value), min and max.
pub fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), min, max)
}

impl McReport {
    /// The table: one row per scenario (mean, std, min, max top-1, time per trial), the exact
    /// program first.
    pub fn table(&self, what: &str) -> String {
        let mut s = format!(
            "{:<24} {:>8} {:>7} {:>8} {:>8} {:>12}\n",
            what, "mean %", "std", "min %", "max %", "s/trial"
        );
        s += &format!(
            "{:<24} {:>8.2} {:>7} {:>8.2} {:>8.2} {:>12.3}\n",
            "exact", self.exact_top1, "-", self.exact_top1, self.exact_top1, self.exact_seconds
        );
        for r in &self.scenarios {
            s += &format!(
                "{:<24} {:>8.2} {:>7.2} {:>8.2} {:>8.2} {:>12.3}\n",
                r.label, r.mean, r.std, r.min, r.max, r.seconds_per_trial
            );
        }
        s
    }

    /// Top-1 (mean, min, max over the trials, and the exact program) against the scenarios'
    /// x values.
    pub fn svg(&self, title: &str, x_label: &str) -> String {
        let xs: Vec<f64> = self.scenarios.iter().map(|r| r.x).collect();
        let col = |f: fn(&ScenarioResult) -> f64| -> Vec<Option<f64>> {
            self.scenarios.iter().map(|r| Some(f(r))).collect()
        };
        let series = vec![
            ("mean top-1".to_string(), col(|r| r.mean)),
            ("min".to_string(), col(|r| r.min)),
            ("max".to_string(), col(|r| r.max)),
            ("exact".to_string(), vec![Some(self.exact_top1); xs.len()]),
        ];
        let lo = self.scenarios.iter().map(|r| r.min).fold(self.exact_top1, f64::min);
        let y0 = ((lo - 1.0) / 5.0).floor() * 5.0;
        svg::lines(title, x_label, "top-1 (%)", &xs, &series, (y0.max(0.0), 100.0))
    }
}
