//! Worst-case device variation of a crossbar program: top-1 under the first-order worst
//! pattern (`|ε| ≤ k` per cell) next to random ±k signs and the Gaussian mean case, for each
//! `k` asked — the work of `cimc eval --worst-case` and of the `worst_case` example.
//!
//! The search itself is `cimc_sim::worst_case`; this module builds the float surrogate
//! (the ONNX model through the passes that precede quantization, so node names match the
//! program's origins — which needs `passes`, hence here and not in `interp`), evaluates the
//! patterns on the crossbar program through the noise API (`cimc_sim::noise`), and writes
//! the table, the JSON report and the SVG plot. `docs/worst-case.md` explains the figures.

use crate::error::{Error, Result};
use crate::onnx::{self, ImportOptions};
use cimc_backends::noise::NoiseSpec;
use cimc_backends::program::Program;
use cimc_interp::tensor::{count_correct, top1_percent};
use cimc_interp::Tensor;
use cimc_ir::Graph;
use cimc_sim::noise::{CellPattern, NoiseConfig, NoisyChip};
use cimc_sim::worst_case::search::{self, Evaluation, Search};
use cimc_sim::worst_case::Pattern;
use cimc_sim::ProgramRunner;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// What to search and compare.
#[derive(Clone, Debug)]
pub struct Options {
    /// `σ_p`: relative programming variation of one cell.
    pub sigma: f64,
    /// The bounds `k` (|ε| ≤ k) to search at.
    pub ks: Vec<f64>,
    /// Projected gradient steps after FGSM (0: FGSM only).
    pub pgd_steps: usize,
    /// Random-sign patterns per `k`, and Gaussian (mean-case) trials.
    pub trials: usize,
    pub seed: u64,
}

/// The Pattern as the noise API reads it.
struct Fixed(Pattern);

impl CellPattern for Fixed {
    fn epsilon(&self, step: usize, k: usize, n: usize, negative: bool, slice: u32) -> f32 {
        self.0.epsilon(step, k, n, negative, slice)
    }
}

/// Top-1 statistics over trials (percent).
#[derive(Clone, Debug, Serialize)]
pub struct Trials {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub trials: usize,
}

impl Trials {
    fn of(v: &[f64]) -> Trials {
        let n = v.len().max(1) as f64;
        Trials {
            mean: v.iter().sum::<f64>() / n,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            trials: v.len(),
        }
    }
}

/// One bound `k`.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub k: f64,
    /// Crossbar program top-1 under the FGSM pattern and under the best PGD iterate.
    pub fgsm_top1: f64,
    pub pgd_top1: f64,
    /// The worst of the two: the reported worst case (an upper bound on the true worst).
    pub worst_top1: f64,
    /// Random ±k sign patterns on the crossbar program.
    pub random_sign: Trials,
    /// The float surrogate (dequantized weights, no ADC): FGSM, PGD, random sign (first trial).
    pub surrogate_fgsm_top1: f64,
    pub surrogate_pgd_top1: f64,
    pub surrogate_random_top1: f64,
    /// Surrogate loss: none, FGSM (and its first-order prediction), PGD iterates, random.
    pub loss_fgsm: f64,
    pub loss_fgsm_predicted: f64,
    pub loss_pgd: Vec<f64>,
    pub loss_random: f64,
}

/// The whole comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub sigma: f64,
    pub samples: usize,
    pub pgd_steps: usize,
    /// The crossbar program with no variation.
    pub nominal_top1: f64,
    /// Gaussian ε ~ N(0,1) per cell (the noise API's own draws), over trials.
    pub mean_case: Trials,
    /// The surrogate with no variation, and its loss.
    pub surrogate_top1: f64,
    pub loss_nominal: f64,
    pub rows: Vec<Row>,
    pub seconds: f64,
}

/// The float graph a program's weights come from: `model` imported at `batch`, through the
/// passes that precede quantization (`fold-qdq`, `fold-bn`, `canonicalize`).
pub fn float_graph(model: &Path, batch: usize) -> Result<Graph> {
    let mut g =
        onnx::import_file(model, &ImportOptions { batch: Some(batch), ..Default::default() })?;
    let cx = cimc_passes::PassContext::default();
    crate::compile::run_pipeline(&mut g, &cx, &[], Some("canonicalize"))?;
    Ok(g)
}

/// The largest divisor of `n` that is at most `cap`: a float batch that cuts `n` samples into
/// equal chunks.
pub fn batch_dividing(n: usize, cap: usize) -> usize {
    (1..=cap.min(n).max(1)).rev().find(|b| n.is_multiple_of(*b)).unwrap_or(1)
}

/// Top-1 (percent) of the crossbar program on `(x, y)` under `cfg` (trial `trial`), or exact
/// when `cfg` is `None`.
fn program_top1(
    runner: &ProgramRunner,
    batch: usize,
    cfg: Option<&NoiseConfig>,
    trial: u64,
    x: &Tensor,
    y: &[i64],
) -> Result<f64> {
    let chip = cfg.map(|c| NoisyChip::program(runner, c, trial)).transpose()?;
    let next = std::cell::Cell::new(0u64);
    let out = crate::model::run_in_chunks(
        |t| {
            let first = next.get();
            next.set(first + batch as u64);
            Ok(match &chip {
                Some(c) => runner.run_noisy(t, c, first)?,
                None => runner.run(t)?,
            })
        },
        batch,
        std::slice::from_ref(x),
        |_| {},
    )?;
    let correct = count_correct(&crate::model::predicted_classes(&out)?, y);
    Ok(top1_percent(correct, y.len()))
}

/// Runs the comparison: `float` is [`float_graph`] of the model `program` was compiled from,
/// at a batch dividing the sample count. `progress` gets a line per stage.
pub fn worst_case(
    program: &Program,
    float: &Graph,
    x: &Tensor,
    y: &[i64],
    opts: &Options,
    mut progress: impl FnMut(&str),
) -> Result<Report> {
    let start = std::time::Instant::now();
    if opts.ks.iter().any(|&k| !(k.is_finite() && k > 0.0)) || opts.ks.is_empty() {
        return Err(Error::Usage("--worst-case: each k must be a number > 0".into()));
    }
    let spec = NoiseSpec { sigma_prog: opts.sigma, ..NoiseSpec::default() };
    spec.validate("--sigma").map_err(|e| Error::Usage(e.to_string()))?;
    let runner = ProgramRunner::new(program)?;
    let pbatch = program
        .inputs
        .first()
        .and_then(|&b| program.buffers.get(b))
        .and_then(|d| d.shape.first().copied())
        .unwrap_or(1)
        .max(1);
    let mut float = float.clone();
    cimc_sim::worst_case::clamp_to_program_ranges(&mut float, program)?;
    let mut s = Search::new(&float, program, opts.sigma)?;
    let with = |p: &Pattern| {
        NoiseConfig::new(spec.clone(), opts.seed).with_pattern(Arc::new(Fixed(p.clone())))
    };
    progress("nominal and mean case");
    let nominal_top1 = program_top1(&runner, pbatch, None, 0, x, y)?;
    let gauss: Vec<f64> = (0..opts.trials as u64)
        .map(|t| {
            program_top1(&runner, pbatch, Some(&NoiseConfig::new(spec.clone(), opts.seed)), t, x, y)
        })
        .collect::<Result<_>>()?;
    let zero = Pattern::zeros(&s.layers);
    let nominal = s.evaluate(&zero, x, y, true)?;
    let mut rows = Vec::new();
    for &k in &opts.ks {
        progress(&format!("k = {k}: FGSM"));
        let mut fgsm = zero.clone();
        search::step_sign(&mut fgsm, &nominal.grad, 2.0 * k, k);
        let predicted = nominal.loss + Search::predicted_change(&nominal.grad, &zero, &fgsm);
        progress(&format!("k = {k}: PGD ({} steps)", opts.pgd_steps));
        let (pgd, trace) = s.pgd(x, y, fgsm.clone(), k, opts.pgd_steps, k / 2.0)?;
        let ev_fgsm: &Evaluation = &trace[0];
        let ev_pgd = s.evaluate(&pgd, x, y, false)?;
        progress(&format!("k = {k}: crossbar program under the patterns"));
        let fgsm_top1 = program_top1(&runner, pbatch, Some(&with(&fgsm)), 0, x, y)?;
        let pgd_top1 = program_top1(&runner, pbatch, Some(&with(&pgd)), 0, x, y)?;
        let mut random = Vec::new();
        let mut surrogate_random = None;
        for t in 0..opts.trials as u64 {
            let p = search::random_sign(&s.layers, k, opts.seed.wrapping_add(t));
            if surrogate_random.is_none() {
                surrogate_random = Some(s.evaluate(&p, x, y, false)?);
            }
            random.push(program_top1(&runner, pbatch, Some(&with(&p)), 0, x, y)?);
        }
        let sr = surrogate_random.map_or((f64::NAN, f64::NAN), |e| (e.top1(), e.loss));
        rows.push(Row {
            k,
            fgsm_top1,
            pgd_top1,
            worst_top1: fgsm_top1.min(pgd_top1),
            random_sign: Trials::of(&random),
            surrogate_fgsm_top1: ev_fgsm.top1(),
            surrogate_pgd_top1: ev_pgd.top1(),
            surrogate_random_top1: sr.0,
            loss_fgsm: ev_fgsm.loss,
            loss_fgsm_predicted: predicted,
            loss_pgd: trace.iter().map(|e| e.loss).collect(),
            loss_random: sr.1,
        });
    }
    Ok(Report {
        sigma: opts.sigma,
        samples: y.len(),
        pgd_steps: opts.pgd_steps,
        nominal_top1,
        mean_case: Trials::of(&gauss),
        surrogate_top1: nominal.top1(),
        loss_nominal: nominal.loss,
        rows,
        seconds: start.elapsed().as_secs_f64(),
    })
}

impl Report {
    /// The markdown table (crossbar program; surrogate in the last columns).
    pub fn table(&self) -> Vec<String> {
        let mut l = vec![
            format!(
                "σ_p = {}, {} samples; no variation {:.2} %; mean case (ε ~ N(0,1), {} trials) {:.2} % (min {:.2})",
                self.sigma, self.samples, self.nominal_top1, self.mean_case.trials,
                self.mean_case.mean, self.mean_case.min
            ),
            String::new(),
            "| k | worst case (FGSM / PGD) | random ±k (mean, min) | mean case | surrogate: none / FGSM / PGD / random | loss: none / FGSM (predicted) / PGD best / random |".into(),
            "|---|---|---|---|---|---|".into(),
        ];
        for r in &self.rows {
            let pgd_best = r.loss_pgd.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            l.push(format!(
                "| {} | **{:.2} %** ({:.2} / {:.2}) | {:.2} %, {:.2} % | {:.2} % | {:.2} / {:.2} / {:.2} / {:.2} % | {:.3} / {:.3} ({:.3}) / {:.3} / {:.3} |",
                r.k, r.worst_top1, r.fgsm_top1, r.pgd_top1, r.random_sign.mean, r.random_sign.min,
                self.mean_case.mean, self.surrogate_top1, r.surrogate_fgsm_top1,
                r.surrogate_pgd_top1, r.surrogate_random_top1, self.loss_nominal, r.loss_fgsm,
                r.loss_fgsm_predicted, pgd_best, r.loss_random
            ));
        }
        l
    }

    /// Top-1 against k: worst case, random signs, mean case, no variation.
    pub fn svg(&self, title: &str) -> String {
        let xs: Vec<f64> = self.rows.iter().map(|r| r.k).collect();
        let col = |f: &dyn Fn(&Row) -> f64| self.rows.iter().map(|r| Some(f(r))).collect();
        let series = vec![
            ("worst case (first-order)".to_string(), col(&|r| r.worst_top1)),
            ("random ±k signs (mean)".to_string(), col(&|r| r.random_sign.mean)),
            ("mean case, ε ~ N(0,1)".to_string(), col(&|_| self.mean_case.mean)),
            ("no variation".to_string(), col(&|_| self.nominal_top1)),
        ];
        crate::svg::lines(title, "k (|ε| ≤ k)", "top-1 %", &xs, &series, (0.0, 100.0))
    }
}
