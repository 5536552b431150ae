//! `cimc compile MODEL [--calib x.npy] [--wbits --abits ...] -o model.cimp`: the interpreter
//! program.

use super::quant_args::QuantArgs;
use super::{print_json, ImportArgs};
use cimc::compile::{compile, write_program};
use cimc::model::Model;
use cimc::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// An ONNX model or a text IR file (.cir).
    model: PathBuf,
    /// The program file to write (.cimp).
    #[arg(short, long)]
    output: PathBuf,
    /// Also write the program's text listing here.
    #[arg(long)]
    listing: Option<PathBuf>,
    /// Print the IR after these passes (repeatable) on stdout.
    #[arg(long = "print-after")]
    print_after: Vec<String>,
    /// Print each pass's counters as JSON on stderr.
    #[arg(long)]
    stats: bool,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    quant: QuantArgs,
    #[command(flatten)]
    import: ImportArgs,
}

pub fn run(a: CompileArgs) -> Result<()> {
    let start = std::time::Instant::now();
    let m = Model::open(&a.model, a.import.options()?)?;
    let graph = m.graph()?;
    let cx = a.quant.context(&graph, a.json)?;
    let (program, report) = compile(graph, &cx, &a.print_after)?;
    write_program(&a.output, &program)?;
    if let Some(l) = &a.listing {
        std::fs::write(l, cimc_backends::program::listing::listing(&program))
            .map_err(|e| cimc::Error::io(l, e))?;
    }
    for (pass, text) in &report.printed {
        println!("// after {pass}\n{text}");
    }
    if a.stats {
        eprintln!("{}", super::stats_json(&report));
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    if a.json {
        print_json(&serde_json::json!({
            "program": a.output.display().to_string(),
            "steps": program.steps.len(),
            "buffers": program.buffers.len(),
            "bytes": bytes,
            "seconds": seconds,
        }));
    } else {
        println!(
            "{}: {} steps, {} buffers, {} bytes, {:.3} s",
            a.output.display(),
            program.steps.len(),
            program.buffers.len(),
            bytes,
            seconds
        );
    }
    Ok(())
}
