//! `cimc eval PROGRAM --worst-case K[,K..] --sigma S --float MODEL.onnx`: top-1 of a crossbar
//! program under the first-order worst-case pattern of programming variation (`|ε| ≤ k` per
//! cell), next to random ±k signs and the Gaussian mean case (`cimc::worst_case`,
//! `docs/worst-case.md`); a table or `--json`, and `--svg FILE` for the plot.

use super::eval::SamplingArgs;
use super::print_json;
use cimc::model::Model;
use cimc::worst_case::{batch_dividing, float_graph, worst_case, Options};
use cimc::{Error, Result};
use cimc_interp::Tensor;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Default)]
pub struct WorstCaseArgs {
    /// Search the worst-case programming-variation pattern with |ε| ≤ K per cell, for each K
    /// given (comma-separated), on the samples evaluated.
    #[arg(long = "worst-case", value_name = "K", value_delimiter = ',')]
    pub ks: Vec<f64>,
    /// σ_p of the programming variation, g = u·(1 + σ_p·ε) (with --worst-case).
    #[arg(long, default_value_t = 0.05, requires = "ks")]
    pub sigma: f64,
    /// The float ONNX model the program was compiled from (its gradients guide the search;
    /// with --worst-case).
    #[arg(long = "float", requires = "ks")]
    pub float: Option<PathBuf>,
    /// Projected gradient steps after the first (FGSM) pattern (with --worst-case).
    #[arg(long = "pgd-steps", default_value_t = 4, requires = "ks")]
    pub pgd_steps: usize,
}

impl WorstCaseArgs {
    pub fn asked(&self) -> bool {
        !self.ks.is_empty()
    }
}

/// Runs the comparison on the first `x`/`labels` samples and prints it (and plots it to `svg`).
pub fn run(
    a: &WorstCaseArgs,
    sampling: SamplingArgs,
    svg: Option<&Path>,
    model: &Model,
    x: &Tensor,
    labels: &[i64],
    json: bool,
) -> Result<()> {
    let Model::Program { program, .. } = model else {
        return Err(Error::Usage(
            "--worst-case needs a compiled program (.cimp) mapped on a target".into(),
        ));
    };
    let float = a.float.as_ref().ok_or_else(|| {
        Error::Usage(
            "--worst-case needs --float MODEL.onnx, the model the program was compiled from".into(),
        )
    })?;
    let n = labels.len();
    let graph = float_graph(float, batch_dividing(n, 100))?;
    super::at_most("--pgd-steps", a.pgd_steps, 10_000)?;
    super::at_most("--trials", sampling.trials.unwrap_or(3), 1_000_000)?;
    let opts = Options {
        sigma: a.sigma,
        ks: a.ks.clone(),
        pgd_steps: a.pgd_steps,
        trials: sampling.trials.unwrap_or(3),
        seed: sampling.seed.unwrap_or(1),
    };
    let r = worst_case(program, &graph, x, labels, &opts, |s| {
        if !json {
            eprintln!("{s}");
        }
    })?;
    if let Some(f) = svg {
        let title = format!("top-1 under programming variation, σ_p = {}", a.sigma);
        cimc::output::write_whole(f, r.svg(&title))?;
    }
    if json {
        print_json(&serde_json::to_value(&r).map_err(|e| Error::Internal(e.to_string()))?);
    } else {
        for l in r.table() {
            println!("{l}");
        }
    }
    Ok(())
}
