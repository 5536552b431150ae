//! `mixed-precision`: per-layer bit widths chosen under a budget (`--auto-bits --budget ...`).
//!
//! **Does** (only when `QuantConfig::auto_bits` is `Some(budget)`), on the float graph after
//! `canonicalize` (method and figures: `docs/mixed-precision.md`):
//! 1. *Sensitivity.* For every matrix layer with float weights and every candidate width `b`
//!    (`candidate_bits`), the network with only that layer's weights at `b` (every other layer
//!    at the configuration's widths) is calibrated from one float observation, quantized, with a
//!    chip tiled and its ADCs calibrated, lowered, and run as the bit-accurate program on at most
//!    256 calibration samples. Its error is the mean of `‖y − y_float‖² / ‖y_float‖²` over the
//!    samples; the sensitivity is that minus the error of the configuration's own widths. With
//!    an energy budget the layer's output activation is measured the same way.
//! 2. *Costs* per layer and width: weight bits `params · b`; arrays the layer's blocks take at
//!    `b`, packed alone (needs a chip); energy the crossbar, DAC, ADC and shift-and-add energy
//!    of its steps in the emitted stream (a chip), else `MACs · wbits · input bits`, linearized
//!    around the current assignment.
//! 3. *Search.* A deterministic multiple-choice knapsack ([`knapsack`]) picks the assignments
//!    of least predicted error (the sum of the sensitivities) within the budget. The real cost
//!    of each is computed (the whole tiled graph, the whole stream), the search budget corrected
//!    when they differ, then the best few and the widest uniform assignment within the budget
//!    are measured; the one of least measured error wins, so the result is never worse than
//!    uniform widths on the calibration samples.
//!
//! **Writes** a note `mixed-precision {wbits=W, abits=A, widths=[..], sensitivity=[..]}` on every
//! chosen layer (`calibrate` reads `wbits`/`abits`; they win over `--bits`), and the report:
//! per layer the sensitivities, costs and choice, the candidates measured, the frontier of
//! predicted error against budget, and `sensitivity_seconds`.
//!
//! **Requires**: calibration data. Layers with a `wbits`/`abits` in the per-layer overrides
//! keep those widths. Under weight-bits and arrays budgets the activations keep the
//! configuration's widths; only an energy budget chooses them (linearized energy, see the doc).
//!
//! **Guarantees**: the graph is unchanged but for the notes; the chosen assignment's real cost
//! is within the budget, or the pass fails naming the smallest achievable budget.

mod costs;
pub mod knapsack;
pub mod measure;
mod report;

use crate::calibrate::observe;
use crate::config::{check_bits, Budget};
use crate::error::{PassError, Result};
use crate::util::{calib_slice, CalibBatches};
use crate::{Pass, PassContext, Stats};
use cimc_ir::Graph;
use measure::{Assignment, Bench};
use rayon::prelude::*;
use report::budget_text;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct MixedPrecision;

/// Samples the sensitivity analysis runs (fewer with `--calib-samples`).
pub const MAX_SAMPLES: usize = 256;
/// Cells of the knapsack's cost axis.
const CELLS: u64 = 20_000;
/// Assignments of the search measured besides the uniform one.
const VERIFY: usize = 3;

impl Pass for MixedPrecision {
    fn name(&self) -> &'static str {
        "mixed-precision"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext) -> Result<Stats> {
        let Some(budget) = cx.config.auto_bits else { return Ok(Stats::new()) };
        precheck(g, cx, budget)?;
        let analysis = analyze(g, cx, matches!(budget, Budget::Energy(_)))?;
        let d = analysis.decide(budget)?;
        analysis.apply(g, &d);
        cx.report("mixed-precision", analysis.report(&d));
        let mut stats = Stats::new();
        stats.insert("layers", analysis.bench.layers.len() as u64);
        stats.insert("program runs", analysis.runs + d.verified.len() as u64);
        let def = analysis.bench.default_assignment();
        for (c, d) in d.assignment.iter().zip(&def) {
            if c.0 < d.0 {
                *stats.entry("weights narrowed").or_default() += 1;
            } else if c.0 > d.0 {
                *stats.entry("weights widened").or_default() += 1;
            }
            if c.1 != d.1 {
                *stats.entry("activations changed").or_default() += 1;
            }
        }
        Ok(stats)
    }
}

/// The measured sensitivities of a graph's layers, and what is needed to measure more.
pub struct Analysis<'a> {
    cx: &'a PassContext,
    pub bench: Bench,
    /// The error of the configuration's own widths.
    pub baseline: f64,
    /// Per layer, the weight widths it may take and the sensitivity of each.
    pub wopts: Vec<Vec<(u8, f64)>>,
    /// Per layer, the activation widths it may take and the sensitivity of each (the
    /// configuration's width alone when activations are not chosen).
    pub aopts: Vec<Vec<(u8, f64)>>,
    /// Time of the sensitivity analysis (observation, reference, program runs).
    pub seconds: f64,
    pub runs: u64,
    progress: Progress<'a>,
}

/// Progress over the whole pass, in samples run.
struct Progress<'a> {
    done: AtomicU64,
    total: u64,
    f: Option<&'a (dyn Fn(u64, u64) + Send + Sync)>,
}

impl Progress<'_> {
    fn add(&self, n: u64) {
        let d = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(f) = self.f {
            // The end is reported once, by `finish`.
            f(d.min(self.total.saturating_sub(1)), self.total);
        }
    }

    fn finish(&self) {
        if let Some(f) = self.f {
            f(self.total, self.total);
        }
    }
}

/// One assignment that was measured.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub label: String,
    pub assignment: Assignment,
    /// Its real cost, in the budget's cost unit (weight bits, arrays, pJ or bit operations).
    pub cost: f64,
    pub predicted: f64,
    pub measured: f64,
}

/// What the search chose.
#[derive(Clone, Debug)]
pub struct Decision {
    pub budget: Budget,
    /// The budget in the cost unit.
    pub limit: f64,
    pub assignment: Assignment,
    /// Index of the chosen candidate in `verified`.
    pub chosen: usize,
    pub verified: Vec<Candidate>,
    /// Index of the uniform candidate in `verified`.
    pub uniform: Option<usize>,
    /// `(budget, predicted error, predicted cost, average weight bits)` of the search's choice
    /// for a sweep of budgets (in the budget's unit).
    pub frontier: Vec<[f64; 4]>,
    /// Per layer, `(wbits, abits, cost)` of each option.
    pub costs: Vec<Vec<(u8, u8, f64)>>,
    pub seconds: f64,
}

impl Decision {
    pub fn chosen(&self) -> &Candidate {
        &self.verified[self.chosen]
    }
}

/// Measures the sensitivity of every layer of `g` (a float graph) at every candidate weight
/// width, and with `activations` at every activation width.
pub fn analyze<'a>(g: &Graph, cx: &'a PassContext, activations: bool) -> Result<Analysis<'a>> {
    let start = Instant::now();
    let cfg = &cx.config;
    check_bits("wbits", cfg.wbits)?;
    check_bits("abits", cfg.abits)?;
    if cfg.candidate_bits.is_empty() {
        return Err(PassError::Config("--auto-bits needs at least one candidate width".into()));
    }
    for &b in &cfg.candidate_bits {
        check_bits("a candidate bit width", b)?;
    }
    let mut widths = cfg.candidate_bits.clone();
    widths.sort_unstable();
    widths.dedup();
    let layers = measure::find_layers(g, cfg);
    if layers.is_empty() {
        return Err(PassError::Config(
            "--auto-bits: the model has no Conv/Gemm/MatMul with float weights to choose bits for"
                .into(),
        ));
    }
    let calib = cx.calib.as_deref().ok_or_else(|| {
        PassError::Missing(
            "--auto-bits measures each layer's sensitivity on calibration data: give --calib x.npy"
                .into(),
        )
    })?;
    let n_obs = CalibBatches::new(g, calib, cfg.calib_samples)?.samples;
    let n = n_obs.min(MAX_SAMPLES);
    let samples = calib.iter().map(|t| calib_slice(t, 0, n, n)).collect::<Result<Vec<_>>>()?;
    // The options of every layer.
    let wopts: Vec<Vec<u8>> =
        layers.iter().map(|l| l.pinned_w.map_or_else(|| widths.clone(), |p| vec![p])).collect();
    let aopts: Vec<Vec<u8>> = layers
        .iter()
        .map(|l| match l.pinned_a {
            Some(p) => vec![p],
            None if activations && !l.accumulator_out => widths.clone(),
            None => vec![l.default.1],
        })
        .collect();
    let obs_passes =
        if matches!(cfg.calib_method, crate::config::CalibMethod::MinMax) { 1 } else { 2 };
    // The runs: the baseline, then one per (layer, width) that differs from it.
    let base: Assignment = layers
        .iter()
        .map(|l| (l.pinned_w.unwrap_or(l.default.0), l.pinned_a.unwrap_or(l.default.1)))
        .collect();
    let mut runs: Vec<(usize, bool, u8)> = Vec::new();
    for (l, (ws, as_)) in wopts.iter().zip(&aopts).enumerate() {
        runs.extend(ws.iter().filter(|&&w| w != base[l].0).map(|&w| (l, true, w)));
        runs.extend(as_.iter().filter(|&&a| a != base[l].1).map(|&a| (l, false, a)));
    }
    let progress = Progress {
        done: AtomicU64::new(0),
        total: ((obs_passes * n_obs) + n * (runs.len() + 2 + VERIFY + 1)) as u64,
        f: cx.progress.as_deref(),
    };
    let obs_progress = |d: u64, _t: u64| {
        if let Some(f) = progress.f {
            f(d, progress.total);
        }
    };
    let obs = observe(g, cfg, Some(calib), Some(&obs_progress))?;
    progress.done.store((obs_passes * n_obs) as u64, Ordering::Relaxed);
    let bench = Bench::new(g.clone(), obs, layers, cfg, cx.chip.as_ref(), samples, n)?;
    progress.add(n as u64);
    let tick = |k: u64| progress.add(k);
    let baseline = bench.error(&base, &tick)?;
    let errors: Vec<f64> = runs
        .par_iter()
        .map(|&(l, weights, b)| {
            let mut a = base.clone();
            if weights {
                a[l].0 = b;
            } else {
                a[l].1 = b;
            }
            bench.error(&a, &tick)
        })
        .collect::<Result<_>>()?;
    let sens = |l: usize, weights: bool, b: u8| -> f64 {
        runs.iter().position(|&r| r == (l, weights, b)).map_or(0.0, |i| errors[i] - baseline)
    };
    let wopts = wopts
        .iter()
        .enumerate()
        .map(|(l, ws)| ws.iter().map(|&w| (w, sens(l, true, w))).collect())
        .collect();
    let aopts = aopts
        .iter()
        .enumerate()
        .map(|(l, as_)| as_.iter().map(|&a| (a, sens(l, false, a))).collect())
        .collect();
    Ok(Analysis {
        cx,
        bench,
        baseline,
        wopts,
        aopts,
        seconds: start.elapsed().as_secs_f64(),
        runs: runs.len() as u64 + 1,
        progress,
    })
}

/// Per layer, its options: `(wbits, abits, predicted error increase)`.
type Options = Vec<Vec<(u8, u8, f64)>>;

impl Analysis<'_> {
    fn options(&self) -> Options {
        self.wopts
            .iter()
            .zip(&self.aopts)
            .map(|(ws, as_)| {
                ws.iter()
                    .flat_map(|&(w, sw)| as_.iter().map(move |&(a, sa)| (w, a, sw + sa)))
                    .collect()
            })
            .collect()
    }

    fn predicted(&self, a: &Assignment) -> f64 {
        let opts = self.options();
        self.baseline
            + a.iter()
                .zip(&opts)
                .map(|(&(w, ab), o)| o.iter().find(|x| x.0 == w && x.1 == ab).map_or(0.0, |x| x.2))
                .sum::<f64>()
    }

    /// The narrowest (`wide` false) or widest assignment the options allow.
    fn extreme(&self, opts: &Options, wide: bool) -> Assignment {
        opts.iter()
            .map(|o| {
                let key = |x: &&(u8, u8, f64)| (x.0, x.1);
                let x = if wide { o.iter().max_by_key(key) } else { o.iter().min_by_key(key) };
                x.map_or((8, 8), |x| (x.0, x.1))
            })
            .collect()
    }

    /// Searches, corrects and verifies: the assignment of least measured error within `budget`.
    pub fn decide(&self, budget: Budget) -> Result<Decision> {
        let start = Instant::now();
        let opts = self.options();
        let values: Vec<Vec<f64>> = opts.iter().map(|o| o.iter().map(|x| x.2).collect()).collect();
        let energy = matches!(budget, Budget::Energy(_));
        let mut at = self.bench.default_assignment();
        let (mut costs, mut fixed) = self.costs(budget, &opts, &at)?;
        let limit = self.limit(budget);
        let fits = |c: f64| c <= limit * (1.0 + 1e-9);
        let to_assignment = |choice: &[usize]| -> Assignment {
            choice.iter().zip(&opts).map(|(&j, o)| (o[j].0, o[j].1)).collect()
        };
        let mut exact_memo: Vec<(Assignment, f64)> = Vec::new();
        let mut exact = |a: &Assignment| -> Result<f64> {
            if let Some(x) = exact_memo.iter().find(|m| &m.0 == a) {
                return Ok(x.1);
            }
            let c = self.exact(budget, a)?;
            exact_memo.push((a.clone(), c));
            Ok(c)
        };
        // The search. Weight bits are exact. Arrays: the search budget is corrected while the
        // real cost of its best differs (blocks of different layers share arrays). Energy: the
        // costs are linearized again at the search's best, until it no longer moves.
        let mut found: Vec<(f64, Assignment, f64)> = Vec::new();
        let mut b_dp = limit - fixed;
        let rounds = match budget {
            Budget::WeightBits(_) => 1,
            Budget::Arrays(_) => 6,
            Budget::Energy(_) => 4,
        };
        for round in 0..rounds {
            if energy && round > 0 {
                (costs, fixed) = self.costs(budget, &opts, &at)?;
                b_dp = limit - fixed;
            }
            let Some(d) = knapsack::discretize(&costs, &values, b_dp, CELLS) else { break };
            let sols = knapsack::k_best(&d.layers, d.budget, VERIFY);
            let mut best = None;
            for s in &sols {
                let a = to_assignment(&s.choice);
                let c = exact(&a)?;
                if fits(c) && !found.iter().any(|f| f.1 == a) {
                    found.push((s.value, a.clone(), c));
                }
                best.get_or_insert((a, c));
            }
            let Some((a0, c0)) = best else { break };
            if energy {
                if a0 == at {
                    break;
                }
                at = a0;
                continue;
            }
            if c0 <= 0.0 || (fits(c0) && c0 >= 0.99 * limit) {
                break;
            }
            let next = b_dp * limit / c0;
            b_dp = if fits(c0) { next } else { next.min(b_dp - d.unit) };
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0));
        found.truncate(VERIFY);
        let mut cands: Vec<(String, Assignment, f64)> = found
            .into_iter()
            .enumerate()
            .map(|(i, (_, a, c))| (format!("search #{}", i + 1), a, c))
            .collect();
        let narrowest = self.extreme(&opts, false);
        let lo = exact(&narrowest)?;
        let hi = exact(&self.extreme(&opts, true))?;
        if cands.is_empty() {
            if !fits(lo) {
                return Err(PassError::Config(format!(
                    "--budget {budget} is below the smallest achievable with widths {:?}: {}",
                    self.cx.config.candidate_bits,
                    budget_text(budget, self.in_budget_unit(budget, lo))
                )));
            }
            cands.push(("narrowest".into(), narrowest, lo));
        }
        let mut uniform = None;
        for &w in self.cx.config.candidate_bits.iter().rev() {
            let a = if energy { self.with_a(&self.uniform(w), w) } else { self.uniform(w) };
            let c = exact(&a)?;
            if fits(c) {
                uniform = Some(match cands.iter().position(|x| x.1 == a) {
                    Some(i) => i,
                    None => {
                        let label = if energy {
                            format!("uniform W{w}A{w}")
                        } else {
                            format!("uniform W{w}")
                        };
                        cands.push((label, a, c));
                        cands.len() - 1
                    }
                });
                break;
            }
        }
        let tick = |k: u64| self.progress.add(k);
        let measured: Vec<f64> =
            cands.par_iter().map(|c| self.bench.error(&c.1, &tick)).collect::<Result<_>>()?;
        self.progress.finish();
        let verified: Vec<Candidate> = cands
            .into_iter()
            .zip(measured)
            .map(|((label, assignment, cost), measured)| Candidate {
                predicted: self.predicted(&assignment),
                label,
                assignment,
                cost,
                measured,
            })
            .collect();
        let chosen = (0..verified.len())
            .min_by(|&a, &b| verified[a].measured.total_cmp(&verified[b].measured).then(a.cmp(&b)))
            .unwrap_or(0);
        let frontier = self.frontier(budget, (lo, hi), &opts, &costs, &values, fixed);
        Ok(Decision {
            budget,
            limit,
            assignment: verified[chosen].assignment.clone(),
            chosen,
            verified,
            uniform,
            frontier,
            costs: opts
                .iter()
                .zip(&costs)
                .map(|(o, c)| o.iter().zip(c).map(|(x, &c)| (x.0, x.1, c)).collect())
                .collect(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The search's choice (predicted error, cost, average weight bits) for a sweep of budgets
    /// between the real costs `range` of the narrowest and the widest assignment. The cost is
    /// the real one for weight bits and the op-count proxy, else the search's prediction.
    fn frontier(
        &self,
        budget: Budget,
        range: (f64, f64),
        opts: &Options,
        costs: &[Vec<f64>],
        values: &[Vec<f64>],
        fixed: f64,
    ) -> Vec<[f64; 4]> {
        let (lo, hi) = range;
        let p = self.params().max(1.0);
        let points: Vec<f64> = match budget {
            Budget::WeightBits(_) => {
                let (a, b) = ((lo / p * 4.0).ceil() as i64, (hi / p * 4.0).floor() as i64);
                (a..=b).map(|q| q as f64 / 4.0 * p).collect()
            }
            Budget::Arrays(_) => {
                let (a, b) = (lo.ceil() as i64, hi.floor() as i64);
                let step = ((b - a) / 24).max(1);
                (a..=b).step_by(step as usize).map(|x| x as f64).collect()
            }
            Budget::Energy(_) => (0..=24).map(|i| lo + (hi - lo) * i as f64 / 24.0).collect(),
        };
        points
            .into_iter()
            .filter_map(|c| {
                let d = knapsack::discretize(costs, values, c - fixed, CELLS)?;
                let s = knapsack::k_best(&d.layers, d.budget, 1).into_iter().next()?;
                let a: Assignment =
                    s.choice.iter().zip(opts).map(|(&j, o)| (o[j].0, o[j].1)).collect();
                let cost = match budget {
                    Budget::Energy(_) if self.bench.chip().is_none() => self.bench.bit_ops(&a),
                    _ => s.choice.iter().zip(costs).map(|(&j, c)| c[j]).sum::<f64>() + fixed,
                };
                let wb: f64 = a
                    .iter()
                    .zip(&self.bench.layers)
                    .map(|(x, l)| x.0 as f64 * l.params as f64)
                    .sum();
                Some([
                    self.in_budget_unit(budget, c),
                    self.baseline + s.value,
                    self.in_budget_unit(budget, cost),
                    wb / p,
                ])
            })
            .collect()
    }
}

/// What can be told before measuring: an arrays budget needs a chip; a weight budget below
/// every layer at its narrowest width cannot be met.
fn precheck(g: &Graph, cx: &PassContext, budget: Budget) -> Result<()> {
    match budget {
        Budget::Arrays(_) if cx.chip.is_none() => Err(PassError::Config(
            "--budget arrays=N counts crossbar arrays: it needs a chip (--target)".into(),
        )),
        Budget::WeightBits(x) => {
            let layers = measure::find_layers(g, &cx.config);
            let min = cx.config.candidate_bits.iter().copied().min().unwrap_or(2);
            let params: f64 = layers.iter().map(|l| l.params as f64).sum();
            let least: f64 =
                layers.iter().map(|l| l.params as f64 * l.pinned_w.unwrap_or(min) as f64).sum();
            if params > 0.0 && x * params < least * (1.0 - 1e-12) {
                return Err(PassError::Config(format!(
                    "--budget {budget} is below the smallest achievable with widths {:?}: {}",
                    cx.config.candidate_bits,
                    budget_text(budget, least / params)
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
