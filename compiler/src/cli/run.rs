//! `cimc run MODEL --input x.npy [--output y.npy]`: run a model (ONNX, text IR or program) on
//! .npy inputs (or one .npz of them). A program's outputs are dequantized to f32, as the float
//! model's would be. A model's outputs are written one `--output` per output, or all into one
//! `.npz` (named by the model's output names) when a single `--output x.npz` is given. Float
//! outputs are written in f32 even where the model declares float16 or bfloat16: such models run
//! in f32 (their weights widened once at import), and f32 holds their results without a second
//! rounding.
//! `--cascade-wbits B` / `--cascade-bits` run a program at lower weight widths; `--profile`
//! times a float model's steps (`profile.rs`).

use super::{print_json, ImportArgs};
use cimc::model::Model;
use cimc::output::Outputs;
use cimc::{npy, Error, Result};
use cimc_interp::tensor::argmax;
use cimc_interp::Tensor;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// An ONNX model, a text IR file (.cir) or a program (.cimp).
    model: PathBuf,
    /// One .npy per model input, in the model's input order, or one .npz with an array per
    /// input, keyed by the input's name (or `arr_0`, `arr_1`... in input order).
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Where to write the outputs: one .npy per model output, in order, or a single .npz that
    /// holds every output under its name in the model.
    #[arg(short, long)]
    output: Vec<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Time every step of a float model over N runs (after a warm-up) and print where the
    /// time goes instead of the outputs.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10")]
    profile: Option<usize>,
    #[command(flatten)]
    widths: WidthArgs,
    #[command(flatten)]
    import: ImportArgs,
}

/// Weight widths of a compiled program, switched without recompiling (`docs/cascade.md`).
/// Named apart from `cimc compile`'s `--wbits` / `--bits`, which choose the widths a model is
/// quantized at: these derive lower widths from a program's own.
#[derive(Args, Debug, Clone, Default)]
pub struct WidthArgs {
    /// Run a program's layers at B weight bits, derived from its own (the cascade).
    #[arg(long = "cascade-wbits", value_name = "B")]
    cascade_wbits: Option<u8>,
    /// Per-layer weight widths of the cascade (the TOML of `cimc compile --bits`, only
    /// `wbits`: `[layers."name"] wbits = 4`).
    #[arg(long = "cascade-bits", value_name = "TOML", alias = "wbits-file")]
    cascade_bits: Option<PathBuf>,
    /// The old name of `--cascade-wbits`, refused: `--wbits` is the width `cimc compile`
    /// quantizes at.
    #[arg(long = "wbits", value_name = "B", hide = true, value_parser = renamed_wbits)]
    wbits: Option<String>,
}

/// `--wbits` on `run`/`eval`: always an error naming the flag that took its place.
fn renamed_wbits(_: &str) -> std::result::Result<String, String> {
    Err("on `run` and `eval` the derived weight width is --cascade-wbits B (`--wbits` is the \
         width `cimc compile` quantizes at)"
        .into())
}

impl WidthArgs {
    pub fn widths(&self) -> Result<Option<cimc_sim::program::WeightWidths>> {
        cimc::model::weight_widths(self.cascade_wbits, self.cascade_bits.as_deref())
    }
}

pub fn read_inputs(files: &[PathBuf]) -> Result<Vec<Tensor>> {
    files
        .iter()
        .map(|p| {
            let d = npy::read(p)?;
            Tensor::from_data(&d).map_err(|e| Error::Npy { file: p.clone(), msg: e.to_string() })
        })
        .collect()
}

/// Whether `path` names a `.npz` archive (by its extension, in any case).
fn is_npz(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz"))
}

/// Writes the outputs to the `--output` paths: every output into one `.npz` when one such path
/// is given, else one path per output (a `.npz` path then holds its one output).
fn write_outputs(
    outs: &mut Outputs,
    paths: &[PathBuf],
    names: &[String],
    outputs: &[Tensor],
) -> Result<()> {
    if let [path] = paths {
        if is_npz(path) {
            let data: Vec<_> = outputs.iter().map(Tensor::to_data).collect();
            let arrays: Vec<_> = names.iter().map(String::as_str).zip(&data).collect();
            let bytes =
                npy::npz_bytes(&arrays).map_err(|msg| Error::Npy { file: path.clone(), msg })?;
            return outs.write(path, bytes);
        }
    }
    if !paths.is_empty() && paths.len() != outputs.len() {
        return Err(Error::Usage(format!(
            "the model has {} output(s) ({}), {} --output path(s) given: give one .npy per \
             output, or one .npz for all",
            outputs.len(),
            names.join(", "),
            paths.len()
        )));
    }
    for ((path, name), t) in paths.iter().zip(names).zip(outputs) {
        let bytes = if is_npz(path) {
            npy::npz_bytes(&[(name.as_str(), &t.to_data())])
                .map_err(|msg| Error::Npy { file: path.clone(), msg })?
        } else {
            npy::to_bytes(&t.to_data())
        };
        outs.write(path, bytes)?;
    }
    Ok(())
}

pub fn run(a: RunArgs) -> Result<()> {
    let inputs = std::iter::once(&a.model).chain(&a.input).map(PathBuf::as_path);
    let mut outs = Outputs::new(inputs, a.output.iter().map(PathBuf::as_path))?;
    let m = Model::open(&a.model, a.import.options()?)?;
    let widths = a.widths.widths()?;
    let arrays = cimc::model::read_arrays(&a.input)?;
    let n = arrays.first().and_then(|(_, t)| t.shape().first().copied()).unwrap_or(1);
    if n == 0 {
        return Err(Error::Npy {
            file: a.input[0].clone(),
            msg: "holds no samples (its first dimension is 0)".into(),
        });
    }
    let start = std::time::Instant::now();
    let prepared = m.prepare_at(n, widths.as_ref())?;
    let inputs = cimc::model::match_inputs(arrays, &a.input, &prepared.inputs)?;
    prepared.check_inputs(&inputs, &a.input)?;
    if let Some(reps) = a.profile {
        let cimc::model::Executable::Graph(runner) = &prepared.exe else {
            return Err(Error::Usage(format!(
                "{}: --profile times the steps of a float model (ONNX or .cir), not of a program",
                a.model.display()
            )));
        };
        let steps = super::profile::profile(runner, &inputs, reps)?;
        super::profile::print(&steps, 25, a.json);
        return Ok(());
    }
    let outputs = prepared.run_all(&inputs, |_| {})?;
    let seconds = start.elapsed().as_secs_f64();
    write_outputs(&mut outs, &a.output, &prepared.outputs, &outputs)?;
    outs.commit()?;
    if a.json {
        let outs: Vec<_> = prepared
            .outputs
            .iter()
            .zip(&outputs)
            .map(|(n, t)| serde_json::json!({"name": n, "dtype": t.dtype().name(), "shape": t.shape()}))
            .collect();
        print_json(&serde_json::json!({"outputs": outs, "samples": n, "seconds": seconds}));
    } else {
        for (name, t) in prepared.outputs.iter().zip(&outputs) {
            println!("{name}: {}{:?}", t.dtype(), t.shape());
            if let Some(a) = t.as_f32() {
                if a.ndim() == 2 {
                    for (i, row) in a.outer_iter().enumerate().take(8) {
                        println!("  sample {i}: argmax {}", argmax(row.iter().copied()));
                    }
                }
            }
        }
        println!("{n} sample(s) in {seconds:.3} s");
    }
    Ok(())
}
