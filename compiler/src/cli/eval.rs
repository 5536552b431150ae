//! `cimc eval MODEL --data x.npy --labels y.npy`: top-1 accuracy on a labelled set. One command,
//! four modes, each chosen by its own flag; a flag that belongs to another mode is refused by
//! the parser (one clap argument group per mode, the groups in conflict), never ignored:
//!
//! - **top-1** (the default): a float model or a compiled program; `--compare FLOAT.onnx` beside
//!   it; one `--format` (a float model) or `--multiplier` (a program); `--cascade-wbits` /
//!   `--cascade-bits` (a program at lower weight widths, `docs/cascade.md`);
//! - **format sweep**, chosen by `--format` given twice or more: a table of top-1 against
//!   format, `--svg` its plot;
//! - **noise**, chosen by `--noise FILE` (`noise_eval.rs`): `--trials`, `--seed`,
//!   `--drift-time`, `--sweep`, `--report`;
//! - **worst case**, chosen by `--worst-case K,..` (`worst_case.rs`): `--sigma`, `--float`,
//!   `--pgd-steps`, `--trials`, `--seed`, `--svg`.
//!
//! Flags given with every mode: `--limit`, `--json`, `--eval-batch`, `--batch`,
//! `--input-shape`. Reduced float formats and approximate multipliers are `cimc::numerics`'s
//! (`docs/approximate.md`).

use super::{print_json, progress, ImportArgs};
use cimc::model::{Model, Prepared};
use cimc::{npy, Error, Result};
use cimc_interp::tensor::{count_correct, top1_percent};
use cimc_interp::Tensor;
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};

/// The flags of each mode, by argument id. The groups of two modes conflict, so a flag of one
/// mode given with a flag of another is refused (naming both); a mode's own flags also
/// `require` the flag that chooses it. (The conflicts are what refuses, say, `--sigma` with
/// `--compare`: clap waives a requirement that conflicts with a flag given.)
const TOP1_FLAGS: [&str; 5] = ["compare", "format", "multiplier", "cascade_wbits", "cascade_bits"];
const NOISE_FLAGS: [&str; 4] = ["noise", "drift_time", "sweep", "report"];
const WORST_CASE_FLAGS: [&str; 4] = ["ks", "sigma", "float", "pgd_steps"];

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("top1_mode").multiple(true).args(TOP1_FLAGS)))]
#[command(group(
    ArgGroup::new("noise_mode")
        .multiple(true)
        .args(NOISE_FLAGS)
        // The noise report's plot is written next to `--report`.
        .conflicts_with_all(["top1_mode", "worst_mode", "svg"])
))]
#[command(group(
    ArgGroup::new("worst_mode")
        .multiple(true)
        .args(WORST_CASE_FLAGS)
        .conflicts_with_all(["top1_mode", "noise_mode"])
))]
// What `--trials` and `--seed` need: one of the two sampled modes.
#[command(group(ArgGroup::new("sampled").args(["noise", "ks"])))]
pub struct EvalArgs {
    /// An ONNX model, a text IR file (.cir) or a program (.cimp).
    model: PathBuf,
    /// Inputs, `[N, ...]` (.npy).
    #[arg(long)]
    data: PathBuf,
    /// Integer class labels, `[N]` (.npy).
    #[arg(long)]
    labels: PathBuf,
    /// Also evaluate this (float) model and count the predictions that differ.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Evaluate only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Samples per run of an ONNX model (text IR graphs and programs keep their own batch).
    #[arg(long = "eval-batch", default_value_t = 50)]
    eval_batch: usize,
    /// Print one JSON object (`top1`, `samples`, `seconds`...) instead of the table.
    #[arg(long)]
    json: bool,
    /// Float formats of a float model: FMT (bf16, fp16, e4m3, e5m2, e3m2, eXmY[-nosub]) for
    /// weights, activations and accumulation, or w=FMT,a=FMT,acc=FMT. Given several times,
    /// evaluates each and prints a table of top-1 against format (`--svg` plots it).
    // Within the top-1 mode: the cascade's widths are for the exact arithmetic.
    #[arg(long, conflicts_with_all = ["cascade_wbits", "cascade_bits"])]
    format: Vec<String>,
    /// Write the plot here (SVG): top-1 against format (several `--format`s), or against K
    /// (`--worst-case`).
    #[arg(long, value_name = "FILE", alias = "worst-svg")]
    svg: Option<PathBuf>,
    /// The 8x8 multiplier of a program's digital MACs: exact, trunc:K, drum:K, mitchell,
    /// table:FILE.
    #[arg(long, conflicts_with_all = ["cascade_wbits", "cascade_bits"])]
    multiplier: Option<String>,
    #[command(flatten)]
    widths: super::run::WidthArgs,
    #[command(flatten)]
    import: ImportArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    noise: super::noise_eval::NoiseArgs,
    #[command(flatten)]
    worst: super::worst_case::WorstCaseArgs,
}

/// Refuses, before any work, an output (`--svg`, `--report` and its plot) that is one of the
/// inputs; each output is then written whole when its mode finishes.
fn check_outputs(a: &EvalArgs) -> Result<()> {
    let inputs = [Some(&a.model), Some(&a.data), Some(&a.labels), a.compare.as_ref()];
    let inputs = inputs.into_iter().flatten().chain(&a.noise.noise).chain(&a.worst.float);
    let report_svg = a.noise.report.as_ref().map(|r| r.with_extension("svg"));
    let dests = a.svg.iter().chain(&a.noise.report).chain(&report_svg);
    cimc::output::Outputs::new(inputs.map(PathBuf::as_path), dests.map(PathBuf::as_path)).map(drop)
}

/// The random draws of the two sampled modes (`--noise`, `--worst-case`); each mode has its
/// own defaults.
#[derive(Args, Debug, Default, Clone, Copy)]
pub struct SamplingArgs {
    /// Random trials: programmings of the chip with --noise (default 20); random-sign patterns
    /// per K and Gaussian mean-case trials with --worst-case (default 3).
    #[arg(long, value_name = "N", alias = "worst-trials", requires = "sampled")]
    pub trials: Option<usize>,
    /// Seed of every random draw (default 0 with --noise, 1 with --worst-case).
    #[arg(long, value_name = "S", alias = "worst-seed", requires = "sampled")]
    pub seed: Option<u64>,
}

/// Predictions (argmax of the first output) of a model over `x`, whose `labels` (from
/// `labels_file`) must name classes the model has.
fn predictions(
    p: &Prepared,
    x: &Tensor,
    file: &PathBuf,
    (labels, labels_file): (&[i64], &Path),
    json: bool,
) -> Result<Vec<usize>> {
    p.check_inputs(std::slice::from_ref(x), std::slice::from_ref(file))?;
    let n = x.shape()[0];
    let pb = progress(n as u64, json);
    let outputs = p.run_all(std::slice::from_ref(x), |k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    let classes = outputs.first().and_then(|t| t.shape().get(1).copied()).unwrap_or(0);
    if let Some((i, &l)) =
        labels.iter().enumerate().find(|(_, &l)| l < 0 || l as u64 >= classes as u64)
    {
        return Err(Error::Npy {
            file: labels_file.to_path_buf(),
            msg: format!("label {l} of sample {i} is not one of the model's {classes} classes"),
        });
    }
    cimc::model::predicted_classes(&outputs)
}

pub fn run(a: EvalArgs) -> Result<()> {
    check_outputs(&a)?;
    let m = Model::open(&a.model, a.import.options()?)?;
    let widths = a.widths.widths()?;
    let xd = npy::read(&a.data)?;
    let yd = npy::read(&a.labels)?;
    if !yd.dtype().is_int() || yd.shape().len() != 1 {
        return Err(Error::Npy {
            file: a.labels.clone(),
            msg: format!("labels must be a 1-D integer array, got {}{:?}", yd.dtype(), yd.shape()),
        });
    }
    let n_all = xd.shape().first().copied().unwrap_or(0);
    if yd.shape()[0] != n_all {
        return Err(Error::Npy {
            file: a.labels.clone(),
            msg: format!(
                "{} labels for the {n_all} samples of {}",
                yd.shape()[0],
                a.data.display()
            ),
        });
    }
    let n = a.limit.map_or(n_all, |l| l.min(n_all));
    if n == 0 {
        return Err(Error::Usage("no samples to evaluate".into()));
    }
    let labels = yd.to_i64_vec();
    let x = Tensor::from_data(&xd)
        .map_err(|e| Error::Npy { file: a.data.clone(), msg: e.to_string() })?;
    let x = cimc::tensor_util::slice_batch(&x, 0, n, n);
    let labels = &labels[..n];
    if a.worst.asked() {
        return super::worst_case::run(
            &a.worst,
            a.sampling,
            a.svg.as_deref(),
            &m,
            &x,
            labels,
            a.json,
        );
    }
    if a.noise.active() {
        return super::noise_eval::run(&a.noise, a.sampling, &m, &x, labels, a.json);
    }
    let batch = a.eval_batch.max(1).min(n);

    if a.format.len() > 1 || a.svg.is_some() {
        return format_sweep(&a, &m, &x, labels, batch);
    }
    let start = std::time::Instant::now();
    let format = a.format.first().map(String::as_str);
    let numerics = cimc::numerics::Numerics::parse(format, a.multiplier.as_deref())?;
    let prepared = numerics.prepare(&m, batch, widths.as_ref())?;
    // With weight widths: the time to switch (prepare the derived weights), part of `seconds`.
    let switch_seconds = widths.as_ref().map(|_| start.elapsed().as_secs_f64());
    let pred = predictions(&prepared, &x, &a.data, (labels, &a.labels), a.json)?;
    let seconds = start.elapsed().as_secs_f64();
    let top1 = |p: &[usize]| {
        let c = count_correct(p, labels);
        (c, top1_percent(c, n))
    };
    let (correct, acc) = top1(&pred);
    let mut report =
        serde_json::json!({"top1": acc, "samples": n, "correct": correct, "seconds": seconds});
    report.as_object_mut().expect("invariant: an object").extend(numerics.json());
    let mut lines = vec![
        format!("top-1   {acc:.2} %  ({correct}/{n})"),
        format!("time    {seconds:.3} s  ({:.3} ms/sample)", 1000.0 * seconds / n as f64),
    ];
    if let Some(s) = switch_seconds {
        report["switch_seconds"] = serde_json::json!(s);
        lines.push(format!("switch  {:.3} ms  (weight widths, no recompilation)", 1000.0 * s));
    }
    if let Some(f) = &a.compare {
        let fm = Model::open(f, a.import.options()?)?;
        let fpred = predictions(&fm.prepare(batch)?, &x, &a.data, (labels, &a.labels), a.json)?;
        let (fc, facc) = top1(&fpred);
        let differ = pred.iter().zip(&fpred).filter(|(a, b)| a != b).count();
        report["float_top1"] = serde_json::json!(facc);
        report["float_correct"] = serde_json::json!(fc);
        report["disagreements"] = serde_json::json!(differ);
        lines.push(format!("float   {facc:.2} %  ({fc}/{n}), {differ} prediction(s) differ"));
    }
    if a.json {
        print_json(&report);
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

/// Several `--format`s: top-1 in each, a table (or JSON), and the bar plot of `--svg`.
fn format_sweep(a: &EvalArgs, m: &Model, x: &Tensor, labels: &[i64], batch: usize) -> Result<()> {
    if a.format.len() < 2 {
        return Err(Error::Usage(
            "--svg plots top-1 against format (give --format twice or more) or against K \
             (with --worst-case)"
                .into(),
        ));
    }
    if a.compare.is_some() {
        return Err(Error::Usage(
            "--compare counts the predictions of one evaluation that differ; it does not \
             combine with several --format"
                .into(),
        ));
    }
    let n = labels.len();
    let mut rows = Vec::new();
    for f in &a.format {
        let numerics = cimc::numerics::Numerics::parse(Some(f), a.multiplier.as_deref())?;
        let start = std::time::Instant::now();
        let pred = predictions(
            &numerics.prepare(m, batch, None)?,
            x,
            &a.data,
            (labels, &a.labels),
            a.json,
        )?;
        let seconds = start.elapsed().as_secs_f64();
        let correct = count_correct(&pred, labels);
        rows.push((f.clone(), correct, top1_percent(correct, n), seconds));
    }
    if let Some(path) = &a.svg {
        let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let top1: Vec<f64> = rows.iter().map(|r| r.2).collect();
        let title = format!("top-1 against number format: {}", a.model.display());
        let svg = cimc::svg::bars(&title, &labels, &[("top-1 %", &top1[..])]);
        cimc::output::write_whole(path, svg)?;
    }
    if a.json {
        let formats: Vec<_> = rows
            .iter()
            .map(|(f, c, t, s)| serde_json::json!({"format": f, "top1": t, "correct": c, "seconds": s}))
            .collect();
        print_json(&serde_json::json!({"samples": n, "formats": formats}));
    } else {
        println!("{:<28} {:>8} {:>12} {:>9}", "format", "top-1 %", "correct", "seconds");
        for (f, c, t, s) in &rows {
            println!("{f:<28} {t:>8.2} {:>12} {s:>9.3}", format!("{c}/{n}"));
        }
    }
    Ok(())
}
