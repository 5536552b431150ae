//! `cimc eval PROGRAM --worst-case K[,K..] --sigma S --float MODEL.onnx`: top-1 of a crossbar
//! program under the first-order worst-case pattern of programming variation (`|ε| ≤ k` per
//! cell), next to random ±k signs and the Gaussian mean case (`cimc::worst_case`,
//! `docs/worst-case.md`); a table or `--json`, and `--worst-svg FILE` for the plot.

use super::print_json;
use cimc::model::Model;
use cimc::worst_case::{batch_dividing, float_graph, worst_case, Options};
use cimc::{Error, Result};
use cimc_interp::Tensor;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Default)]
pub struct WorstCaseArgs {
    /// Search the worst-case programming-variation pattern with |ε| ≤ K per cell, for each K
    /// given (comma-separated), on the samples evaluated.
    #[arg(long = "worst-case", value_delimiter = ',')]
    pub ks: Vec<f64>,
    /// σ_p of the programming variation, g = u·(1 + σ_p·ε) (with --worst-case).
    #[arg(long, default_value_t = 0.05)]
    pub sigma: f64,
    /// The float ONNX model the program was compiled from (its gradients guide the search).
    #[arg(long = "float")]
    pub float: Option<PathBuf>,
    /// Projected gradient steps after the first (FGSM) pattern.
    #[arg(long = "pgd-steps", default_value_t = 4)]
    pub pgd_steps: usize,
    /// Random-sign patterns per K, and Gaussian mean-case trials.
    #[arg(long = "worst-trials", default_value_t = 3)]
    pub worst_trials: usize,
    /// Seed of the random-sign and Gaussian patterns.
    #[arg(long = "worst-seed", default_value_t = 1)]
    pub worst_seed: u64,
    /// Write the plot (top-1 against K) to this SVG file.
    #[arg(long = "worst-svg")]
    pub worst_svg: Option<PathBuf>,
}

impl WorstCaseArgs {
    pub fn asked(&self) -> bool {
        !self.ks.is_empty()
    }
}

/// Runs the comparison on the first `x`/`labels` samples and prints it.
pub fn run(a: &WorstCaseArgs, model: &Model, x: &Tensor, labels: &[i64], json: bool) -> Result<()> {
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
    let opts = Options {
        sigma: a.sigma,
        ks: a.ks.clone(),
        pgd_steps: a.pgd_steps,
        trials: a.worst_trials,
        seed: a.worst_seed,
    };
    let r = worst_case(program, &graph, x, labels, &opts, |s| {
        if !json {
            eprintln!("{s}");
        }
    })?;
    if let Some(f) = &a.worst_svg {
        let title = format!("top-1 under programming variation, σ_p = {}", a.sigma);
        std::fs::write(f, r.svg(&title)).map_err(|e| Error::io(f, e))?;
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
