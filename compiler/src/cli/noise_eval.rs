//! `cimc eval PROGRAM --noise N.toml [--trials 20] [--seed 1] [--drift-time 1s,1h,1d,1y]
//! [--sweep KEY=V1,V2,..] [--report r.json]`: Monte Carlo top-1 of a crossbar program under the
//! non-idealities of a `[noise]` table (`docs/noise.md`); the work is `cimc::noise_eval`'s.

use super::eval::SamplingArgs;
use super::{print_json, progress};
use cimc::model::Model;
use cimc::noise_eval::{monte_carlo, parse_duration, with_key, Scenario};
use cimc::{Error, Result};
use cimc_backends::noise::NoiseSpec;
use cimc_interp::Tensor;
use cimc_sim::program::ProgramRunner;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct NoiseArgs {
    /// Evaluate under the analog non-idealities of this file's [noise] table (a noise file or
    /// a target file with one; docs/noise.md). The model must be a crossbar program (.cimp).
    #[arg(long, value_name = "FILE")]
    pub noise: Option<PathBuf>,
    /// Read times after programming, e.g. 1s,1h,1d,1y (units s, m, h, d, y): one row each
    /// (with --noise).
    #[arg(long = "drift-time", value_delimiter = ',', requires = "noise")]
    drift_time: Vec<String>,
    /// One row per value of a [noise] key, e.g. sigma_prog=0.02,0.05,0.1 (with --noise).
    #[arg(long, requires = "noise")]
    sweep: Option<String>,
    /// Write the Monte Carlo report (JSON) here, and its plot next to it (.svg) (with --noise).
    #[arg(long, requires = "noise")]
    pub report: Option<PathBuf>,
}

impl NoiseArgs {
    /// Whether a noisy evaluation was asked for.
    pub fn active(&self) -> bool {
        self.noise.is_some()
    }
}

/// The rows: every swept value × every drift time (or the file's spec alone), and the x axis.
fn scenarios(a: &NoiseArgs, base: &NoiseSpec) -> Result<(Vec<Scenario>, String)> {
    let mut times = Vec::new();
    for t in &a.drift_time {
        times.push((t.trim().to_string(), parse_duration(t)?));
    }
    let sweep = match &a.sweep {
        None => None,
        Some(s) => {
            let (key, vals) = s
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("--sweep '{s}': expected KEY=V1,V2,...")))?;
            let vals = vals
                .split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| Error::Usage(format!("--sweep '{s}': values must be numbers")))?;
            Some((key.trim().to_string(), vals))
        }
    };
    let mut out = Vec::new();
    let base_specs: Vec<(String, NoiseSpec, f64)> = match &sweep {
        None => vec![(String::new(), base.clone(), 0.0)],
        Some((key, vals)) => vals
            .iter()
            .map(|&v| Ok((format!("{key}={v}"), with_key(base, key, v, "--sweep")?, v)))
            .collect::<Result<_>>()?,
    };
    for (label, spec, x) in base_specs {
        if times.is_empty() {
            let label = if label.is_empty() { "noise".to_string() } else { label };
            out.push(Scenario { label, spec, x });
            continue;
        }
        for (name, secs) in &times {
            let mut s = spec.clone();
            s.drift_time_s = *secs;
            let l =
                if label.is_empty() { format!("t={name}") } else { format!("{label} t={name}") };
            let x = if sweep.is_some() { x } else { secs.max(1e-3).log10() };
            out.push(Scenario { label: l, spec: s, x });
        }
    }
    let x_label = match (&sweep, times.is_empty()) {
        (Some((k, _)), _) => k.clone(),
        (None, false) => "log10(time after programming / s)".to_string(),
        (None, true) => "-".to_string(),
    };
    Ok((out, x_label))
}

/// The Monte Carlo evaluation of `m` (a program) over `x`/`labels`.
pub fn run(
    a: &NoiseArgs,
    sampling: SamplingArgs,
    m: &Model,
    x: &Tensor,
    labels: &[i64],
    json: bool,
) -> Result<()> {
    let (trials, seed) = (sampling.trials.unwrap_or(20), sampling.seed.unwrap_or(0));
    let file = a.noise.as_ref().expect("invariant: called with --noise");
    let base = NoiseSpec::load(file).map_err(|e| Error::Usage(e.to_string()))?;
    let Model::Program { program, path } = m else {
        return Err(Error::Usage(format!(
            "{}: --noise evaluates a crossbar program (.cimp); compile the model with --target first",
            m.path().display()
        )));
    };
    super::at_most("--trials", trials, 1_000_000)?;
    if trials == 0 {
        return Err(Error::Usage("--trials must be at least 1".into()));
    }
    let (rows, x_label) = scenarios(a, &base)?;
    let runner = ProgramRunner::new(program)?;
    let batch = program
        .inputs
        .first()
        .and_then(|&b| program.buffers[b].shape.first().copied())
        .unwrap_or(1)
        .max(1);
    let n = labels.len();
    let pb = progress(((rows.len() * trials + 1) * n) as u64, json);
    let report =
        monte_carlo(&runner, batch, x, labels, &rows, trials, seed, &|k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    let mut j = serde_json::to_value(&report).expect("invariant: reports serialize");
    j["model"] = serde_json::json!(path.display().to_string());
    j["noise_file"] = serde_json::json!(file.display().to_string());
    if let Some(r) = &a.report {
        let mut j = j.clone();
        cimc::report::strip_wall_clock(&mut j);
        let text = serde_json::to_string_pretty(&j).expect("invariant: reports serialize");
        let mut outs = cimc::output::Outputs::default();
        outs.write(r, text)?;
        let title = format!("top-1 under noise, {} trials ({})", trials, file.display());
        outs.write(&r.with_extension("svg"), report.svg(&title, &x_label))?;
        outs.commit()?;
    }
    if json {
        print_json(&j);
    } else {
        print!("{}", report.table(&format!("{} trials, seed {}", trials, seed)));
        println!("{n} samples; exact run {:.3} s", report.exact_seconds);
    }
    Ok(())
}
