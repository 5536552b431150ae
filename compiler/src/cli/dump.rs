//! `cimc dump MODEL [-o out.cir]`: the IR as text — as imported, or after passes
//! (`--stop-after PASS`, `--print-after PASS`), with pass counters (`--stats`). A `.cimp`
//! program prints its listing.

use super::quant_args::QuantArgs;
use super::ImportArgs;
use cimc::compile::run_pipeline;
use cimc::model::{self, Model};
use cimc::output::Outputs;
use cimc::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// An ONNX model, a text IR file (.cir) or a program (.cimp).
    model: PathBuf,
    /// Write the text IR here (and large constants to OUT.data) instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Run the pipeline up to and including this pass, then print.
    #[arg(long = "stop-after")]
    stop_after: Option<String>,
    /// Print the IR after these passes (repeatable); runs the pipeline.
    #[arg(long = "print-after")]
    print_after: Vec<String>,
    /// Print each pass's counters as JSON on stderr (runs the pipeline).
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    quant: QuantArgs,
    #[command(flatten)]
    import: ImportArgs,
}

pub fn run(a: DumpArgs) -> Result<()> {
    let data = a.output.as_deref().map(model::data_path);
    let inputs = std::iter::once(a.model.as_path()).chain(a.quant.input_paths());
    let mut outs = Outputs::new(inputs, a.output.iter().chain(&data).map(PathBuf::as_path))?;
    let m = Model::open(&a.model, a.import.options()?)?;
    if let Model::Program { program, .. } = &m {
        print!("{}", cimc_backends::program::listing::listing(program));
        return Ok(());
    }
    let mut g = m.graph()?;
    let run_passes =
        a.stop_after.is_some() || !a.print_after.is_empty() || a.stats || a.quant.target.is_some();
    if run_passes {
        // The passes may calibrate, which holds every observed value at once (`cimc::limits`).
        let planned = cimc::limits::graph_activation_bytes(&g, cimc::limits::Holding::All);
        cimc::limits::check_activations(&a.model, "calibration", planned)?;
        let cx = a.quant.context(&g, true)?;
        let report = run_pipeline(&mut g, &cx, &a.print_after, a.stop_after.as_deref())
            .map_err(|e| e.naming(&a.model))?;
        for (pass, text) in &report.printed {
            println!("// after {pass}\n{text}");
        }
        if a.stats {
            eprintln!("{}", super::stats_json(&report));
        }
        if !a.print_after.is_empty() && a.output.is_none() {
            return Ok(());
        }
    }
    match &a.output {
        Some(out) => {
            model::write_ir(&mut outs, &g, out)?;
            outs.commit()
        }
        None => {
            print!("{g}");
            Ok(())
        }
    }
}
