//! `cimc run MODEL --input x.npy [--output y.npy]`: run a model on .npy inputs.

use super::{print_json, ImportArgs};
use cimc::model::{self, Model};
use cimc::{npy, Error, Result};
use cimc_interp::{Runner, Tensor};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// An ONNX model or a text IR file (.cir).
    model: PathBuf,
    /// One .npy per graph input, in the graph's input order.
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Where to write the outputs (.npy), one per graph output, in order.
    #[arg(long)]
    output: Vec<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    import: ImportArgs,
}

pub fn run(a: RunArgs) -> Result<()> {
    let m = Model::open(&a.model, a.import.options()?)?;
    let mut inputs = Vec::new();
    for p in &a.input {
        let d = npy::read(p)?;
        inputs.push(Tensor::from_data(&d).map_err(|e| Error::Npy { file: p.clone(), msg: e.to_string() })?);
    }
    let n = inputs.first().and_then(|t| t.shape().first().copied()).unwrap_or(1);
    let start = std::time::Instant::now();
    let graph = match m.graph_for_batch(n)? {
        Some(g) => g,
        None => m.graph()?,
    };
    check_inputs(&graph, &inputs, &a.input)?;
    let runner = Runner::new(&graph)?;
    let gb = model::input_batch(&graph).unwrap_or(n);
    let outputs = model::run_in_chunks(&runner, gb, &inputs, |_| {})?;
    let seconds = start.elapsed().as_secs_f64();
    if !a.output.is_empty() && a.output.len() != outputs.len() {
        return Err(Error::Usage(format!(
            "the model has {} output(s), {} --output path(s) given",
            outputs.len(),
            a.output.len()
        )));
    }
    for (p, t) in a.output.iter().zip(&outputs) {
        npy::write(p, &t.to_data())?;
    }
    let names: Vec<String> = graph.outputs().iter().map(|&v| graph.value(v).name.clone()).collect();
    if a.json {
        let outs: Vec<_> = names
            .iter()
            .zip(&outputs)
            .map(|(n, t)| serde_json::json!({"name": n, "dtype": t.dtype().name(), "shape": t.shape()}))
            .collect();
        print_json(&serde_json::json!({"outputs": outs, "samples": n, "seconds": seconds}));
    } else {
        for (name, t) in names.iter().zip(&outputs) {
            println!("{name}: {}{:?}", t.dtype(), t.shape());
            if let Some(a) = t.as_f32() {
                if a.ndim() == 2 {
                    for (i, row) in a.outer_iter().enumerate().take(8) {
                        let arg = argmax(row.iter().copied());
                        println!("  sample {i}: argmax {arg}");
                    }
                }
            }
        }
        println!("{n} sample(s) in {:.3} s", seconds);
    }
    Ok(())
}

/// Checks the user's arrays against the graph's inputs before running (count, dtype, and the
/// per-sample dimensions), so that a wrong file gets a message naming it.
pub fn check_inputs(graph: &cimc_ir::Graph, inputs: &[Tensor], files: &[PathBuf]) -> Result<()> {
    if inputs.len() != graph.inputs().len() {
        return Err(Error::Usage(format!(
            "the model has {} input(s), {} --input file(s) given",
            graph.inputs().len(),
            inputs.len()
        )));
    }
    for ((&v, t), f) in graph.inputs().iter().zip(inputs).zip(files) {
        let ty = graph.ty(v);
        let name = &graph.value(v).name;
        if t.dtype() != ty.dtype || t.shape().len() != ty.shape.len() || t.shape()[1..] != ty.shape[1..] {
            return Err(Error::Npy {
                file: f.clone(),
                msg: format!(
                    "input '{name}' expects {}[{}] (any first dimension), the file holds {}{:?}",
                    ty.dtype,
                    ty.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
                    t.dtype(),
                    t.shape()
                ),
            });
        }
    }
    Ok(())
}

pub fn argmax(it: impl Iterator<Item = f32>) -> usize {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, v) in it.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}
