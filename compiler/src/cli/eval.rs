//! `cimc eval MODEL --data x.npy --labels y.npy`: top-1 accuracy on a labelled set.

use super::{print_json, progress, ImportArgs};
use cimc::model::{self, Model};
use cimc::{npy, Error, Result};
use cimc_interp::{Runner, Tensor};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// An ONNX model or a text IR file (.cir).
    model: PathBuf,
    /// Inputs, `[N, ...]` (.npy).
    #[arg(long)]
    data: PathBuf,
    /// Integer class labels, `[N]` (.npy).
    #[arg(long)]
    labels: PathBuf,
    /// Evaluate only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Samples per run of the model (ONNX models; a text IR graph keeps its own batch).
    #[arg(long = "eval-batch", default_value_t = 50)]
    eval_batch: usize,
    /// Print one JSON object (`top1`, `samples`, `seconds`) instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    import: ImportArgs,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let m = Model::open(&a.model, a.import.options()?)?;
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
        return Err(Error::Usage(format!(
            "{} has {n_all} samples but {} has {} labels",
            a.data.display(),
            a.labels.display(),
            yd.shape()[0]
        )));
    }
    let n = a.limit.map_or(n_all, |l| l.min(n_all));
    if n == 0 {
        return Err(Error::Usage("no samples to evaluate".into()));
    }
    let labels = yd.to_i64_vec();
    let x = Tensor::from_data(&xd).map_err(|e| Error::Npy { file: a.data.clone(), msg: e.to_string() })?;
    let x = cimc::tensor_util::slice_batch(&x, 0, n, n);

    let start = std::time::Instant::now();
    let batch = a.eval_batch.max(1).min(n);
    let graph = match m.graph_for_batch(batch)? {
        Some(g) => g,
        None => m.graph()?,
    };
    super::run::check_inputs(&graph, std::slice::from_ref(&x), std::slice::from_ref(&a.data))?;
    let runner = Runner::new(&graph)?;
    let gb = model::input_batch(&graph).unwrap_or(batch);
    let pb = progress(n as u64, a.json);
    let outputs = model::run_in_chunks(&runner, gb, std::slice::from_ref(&x), |k| pb.inc(k as u64))?;
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let logits = outputs
        .first()
        .and_then(|t| t.as_f32())
        .filter(|l| l.ndim() == 2)
        .ok_or_else(|| Error::Usage("eval needs a model whose first output is f32 [N, classes]".into()))?;
    let correct = logits
        .outer_iter()
        .zip(&labels)
        .filter(|(row, &y)| super::run::argmax(row.iter().copied()) as i64 == y)
        .count();
    let top1 = 100.0 * correct as f64 / n as f64;
    if a.json {
        print_json(&serde_json::json!({"top1": top1, "samples": n, "correct": correct, "seconds": seconds}));
    } else {
        println!("top-1   {top1:.2} %  ({correct}/{n})");
        println!("time    {seconds:.3} s  ({:.3} ms/sample)", 1000.0 * seconds / n as f64);
    }
    Ok(())
}
