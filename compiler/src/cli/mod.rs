//! Command-line definitions (clap) and dispatch to one module per command.

mod compile;
mod dump;
mod eval;
mod noise_eval;
mod profile;
mod quant_args;
mod run;
mod sim;
mod stream;
mod sweep;
mod worst_case;

use cimc::limits::DEFAULT_MAX_ACTIVATION_BYTES;
use cimc::onnx::limits::{DEFAULT_MAX_CONSTANT_BYTES, DEFAULT_MAX_CREATED_BYTES, DEFAULT_MAX_RANK};
use cimc::onnx::limits::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_NODES, DEFAULT_MAX_TENSOR_BYTES};
use cimc::onnx::{ImportLimits, ImportOptions};
use cimc::{Error, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cimc", version, about = "Compile ONNX CNNs for compute-in-memory accelerators")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Refuse ONNX models with more nodes than this.
    #[arg(long, global = true, value_name = "N", default_value_t = DEFAULT_MAX_NODES)]
    max_nodes: usize,
    /// Refuse ONNX models whose longest chain of nodes is longer than this.
    #[arg(long, global = true, value_name = "N", default_value_t = DEFAULT_MAX_DEPTH)]
    max_graph_depth: usize,
    /// Refuse ONNX models with a tensor (weight, input or inferred value) larger than this.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = DEFAULT_MAX_TENSOR_BYTES)]
    max_tensor_bytes: usize,
    /// Refuse ONNX models whose constants (weights, and constants the importer makes) add up
    /// to more bytes than this.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = DEFAULT_MAX_CONSTANT_BYTES)]
    max_constant_bytes: usize,
    /// Refuse ONNX models that make the importer create more bytes of constants than this
    /// (ConstantOfShape, Range, constant folding), in all.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = DEFAULT_MAX_CREATED_BYTES)]
    max_created_bytes: usize,
    /// Refuse ONNX models with a tensor of more dimensions than this.
    #[arg(long, global = true, value_name = "N", default_value_t = DEFAULT_MAX_RANK)]
    max_rank: usize,
    /// Refuse a run (run, eval, the calibration of compile) that would hold more bytes of
    /// activations at once than this, planned from the shapes before anything is allocated.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = DEFAULT_MAX_ACTIVATION_BYTES)]
    max_activation_bytes: u64,
}

/// The import caps of this run (the global `--max-*` flags), set once by [`run`].
static IMPORT_LIMITS: std::sync::OnceLock<ImportLimits> = std::sync::OnceLock::new();

fn import_limits() -> ImportLimits {
    IMPORT_LIMITS.get().copied().unwrap_or_default()
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile a model to the bit-accurate interpreter program (.cimp).
    Compile(compile::CompileArgs),
    /// Import a model and print its IR as text (optionally after passes).
    Dump(dump::DumpArgs),
    /// Run a model on inputs from .npy files.
    Run(run::RunArgs),
    /// Top-1 accuracy of a model on a labelled data set.
    Eval(eval::EvalArgs),
    /// Assemble a stream's text form into a stream file (.cims).
    Asm(stream::AsmArgs),
    /// Print a stream file (.cims) as text: tables and every core's instructions.
    Disasm(stream::DisasmArgs),
    /// Run an instruction stream (.cims) on the simulator, optionally with its cost report.
    Sim(sim::SimArgs),
    /// A design-space sweep: compile, evaluate and cost every point of a sweep file.
    Sweep(sweep::SweepArgs),
}

/// How to import an ONNX model: shapes of symbolic dimensions.
#[derive(Args, Debug, Clone, Default)]
pub struct ImportArgs {
    /// The batch size given to a symbolic first dimension (default 1).
    #[arg(long)]
    batch: Option<usize>,
    /// The full shape of an input, as NAME=D0,D1,... (repeatable).
    #[arg(long = "input-shape", value_name = "NAME=DIMS")]
    input_shape: Vec<String>,
}

impl ImportArgs {
    fn options(&self) -> Result<ImportOptions> {
        if self.batch == Some(0) {
            return Err(Error::Usage("--batch 0: a batch holds at least one sample".into()));
        }
        let mut input_shapes = Vec::new();
        for s in &self.input_shape {
            let (name, dims) = s.split_once('=').ok_or_else(|| {
                Error::Usage(format!("--input-shape '{s}': expected NAME=D0,D1,..."))
            })?;
            let dims = dims
                .split(',')
                .map(|d| d.trim().parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| {
                    Error::Usage(format!("--input-shape '{s}': dimensions must be integers"))
                })?;
            if dims.contains(&0) {
                return Err(Error::Usage(format!(
                    "--input-shape '{s}': every dimension must be at least 1"
                )));
            }
            input_shapes.push((name.to_string(), dims));
        }
        Ok(ImportOptions {
            batch: self.batch,
            input_shapes,
            limits: import_limits(),
            ..ImportOptions::default()
        })
    }
}

impl Cli {
    /// Whether the command compiles a model (`compile`).
    pub fn is_compile(&self) -> bool {
        matches!(self.command, Command::Compile(_))
    }
}

pub fn run(cli: Cli) -> Result<()> {
    let limits = ImportLimits {
        max_nodes: cli.max_nodes,
        max_depth: cli.max_graph_depth,
        max_tensor_bytes: cli.max_tensor_bytes,
        max_constant_bytes: cli.max_constant_bytes,
        max_created_bytes: cli.max_created_bytes,
        max_rank: cli.max_rank,
    };
    cimc::limits::set_max_activation_bytes(cli.max_activation_bytes);
    // `run` is called once per process; a second call keeps the first caps.
    let _ = IMPORT_LIMITS.set(limits);
    match cli.command {
        Command::Compile(a) => compile::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Run(a) => run::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Asm(a) => stream::asm(a),
        Command::Disasm(a) => stream::disasm(a),
        Command::Sim(a) => sim::run(a),
        Command::Sweep(a) => sweep::run(a),
    }
}

/// Refuses a count option above `max`: far above any real use, it would only make cimc run
/// for hours or abort on an allocation (`--pgd-steps 4000000000`).
fn at_most(flag: &str, value: usize, max: usize) -> Result<()> {
    if value > max {
        return Err(Error::Usage(format!("{flag} {value} is above the limit of {max}")));
    }
    Ok(())
}

/// Prints a JSON value on stdout (the `--json` form of a report).
fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("invariant: JSON values serialize"));
}

/// A progress bar on stderr, hidden when stderr is not a terminal or in `--json` mode.
fn progress(len: u64, json: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} samples  {elapsed} (eta {eta})",
        )
        .expect("invariant: the template is valid"),
    );
    pb
}

/// Pass counters as one JSON object: `{"pass": {"counter": n, ...}, ...}` in run order.
fn stats_json(report: &cimc_passes::PipelineReport) -> String {
    let mut m = serde_json::Map::new();
    for (pass, stats) in &report.stats {
        m.insert((*pass).to_string(), serde_json::json!(stats));
    }
    serde_json::to_string(&serde_json::Value::Object(m)).expect("invariant: JSON values serialize")
}
