//! `cimc compile MODEL [--calib x.npy] [--wbits --abits ...] -o model.cimp`: the interpreter
//! program; with `--emit stream --target T`, the accelerator's instruction stream (.cims).

use super::quant_args::QuantArgs;
use super::{print_json, ImportArgs};
use cimc::compile::compile_in_place;
use cimc::model::Model;
use cimc::output::Outputs;
use cimc::report::MappingReport;
use cimc::Result;
use cimc_backends::program::Program;
use cimc_backends::stream::emit::{emit_with_notes, EmitOptions, ScheduleChoice};
use cimc_backends::stream::Stream;
use cimc_backends::target::Target;
use cimc_passes::PassTime;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    Program,
    Stream,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleArg {
    Auto,
    Pipelined,
    LayerSerial,
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// An ONNX model or a text IR file (.cir).
    model: PathBuf,
    /// The file to write: the program (.cimp), or with `--emit stream` the stream (.cims).
    #[arg(short, long)]
    output: PathBuf,
    /// What to write: the interpreter program, or the accelerator instruction stream (needs
    /// --target).
    #[arg(long, value_enum, default_value_t = Emit::Program)]
    emit: Emit,
    /// The stream's schedule: pipelined (every layer resident), layer-serial (layers take turns
    /// on the arrays), or auto (pipelined when the chip holds every layer).
    #[arg(long, value_enum, default_value_t = ScheduleArg::Auto)]
    schedule: ScheduleArg,
    /// Also write the program's text listing here.
    #[arg(long)]
    listing: Option<PathBuf>,
    /// Print the IR after these passes (repeatable) on stdout.
    #[arg(long = "print-after")]
    print_after: Vec<String>,
    /// Print each pass's counters as JSON on stderr.
    #[arg(long)]
    stats: bool,
    /// Print each pass's wall time on stderr (like LLVM's -time-passes).
    #[arg(long = "time-passes")]
    time_passes: bool,
    /// Write the report (JSON) here: what each pass decided, and with --target the mapping
    /// (its plot goes next to it, .svg).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the per-layer bit widths the program uses (the TOML of --bits) here.
    #[arg(long = "bits-out")]
    bits_out: Option<PathBuf>,
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
    let mut outs = declare_outputs(&a)?;
    let target = a.quant.target()?;
    if a.emit == Emit::Stream && target.is_none() {
        return Err(cimc::Error::Usage(
            "--emit stream needs --target: a stream is code for one chip".into(),
        ));
    }
    let m = Model::open(&a.model, a.import.options()?)?;
    let mut graph = m.graph()?;
    // Calibration holds every observed value of a batch at once (`cimc::limits`).
    let planned = cimc::limits::graph_activation_bytes(&graph, cimc::limits::Holding::All);
    cimc::limits::check_activations(&a.model, "calibration", planned)?;
    let cx = a.quant.context(&graph, a.json)?;
    let (program, mut report) =
        compile_in_place(&mut graph, &cx, &a.print_after).map_err(|e| e.naming(&a.model))?;
    let mapping = target.as_ref().map(|t| {
        let tj = serde_json::to_value(t).expect("invariant: targets serialize");
        MappingReport::new(&graph, tj, t.chip.arrays)
    });
    if let Some(path) = &a.report {
        let mut passes = serde_json::json!(cx.reports());
        if !a.time_passes {
            cimc::report::strip_wall_clock(&mut passes);
        }
        write_report(&mut outs, path, mapping.as_ref(), passes)?;
    }
    if let Some(path) = &a.bits_out {
        let toml = cimc::report::bits_toml(&graph);
        outs.write(path, toml)?;
    }
    if let (Some(r), false) = (&mapping, a.json) {
        print!("{}", r.table());
    }
    // Nothing reads the graph from here on: its weights (codes) leave memory before the
    // output is made (`docs/compile-memory.md`).
    drop(graph);
    if let Some(l) = &a.listing {
        outs.write(l, cimc_backends::program::listing::listing(&program))?;
    }
    let shape = ProgramShape { steps: program.steps.len(), buffers: program.buffers.len() };
    let stream = write_output(&mut outs, &a, program, target.as_ref(), &mut report.times)?;
    outs.commit()?;
    for (pass, text) in &report.printed {
        println!("// after {pass}\n{text}");
    }
    if a.stats {
        eprintln!("{}", super::stats_json(&report));
    }
    if a.time_passes {
        print_pass_times(&report.times);
    }
    let seconds = start.elapsed().as_secs_f64();
    print_summary(&a, stream.as_ref(), shape, mapping.as_ref(), seconds);
    Ok(())
}

/// Every file `cimc compile` will write, checked against what it reads before any work.
fn declare_outputs(a: &CompileArgs) -> Result<Outputs> {
    let inputs = std::iter::once(a.model.as_path()).chain(a.quant.input_paths());
    let report_svg =
        a.report.as_ref().filter(|_| a.quant.target.is_some()).map(|r| r.with_extension("svg"));
    let dests = [
        Some(&a.output),
        a.listing.as_ref(),
        a.report.as_ref(),
        report_svg.as_ref(),
        a.bits_out.as_ref(),
    ];
    Outputs::new(inputs, dests.into_iter().flatten().map(PathBuf::as_path))
}

/// The `--report` JSON (the mapping, when there is a target, and what each pass decided) and
/// the mapping's plot next to it.
fn write_report(
    outs: &mut Outputs,
    path: &Path,
    mapping: Option<&MappingReport>,
    passes: serde_json::Value,
) -> Result<()> {
    let mut j = match mapping {
        Some(r) => serde_json::to_value(r).expect("invariant: reports serialize"),
        None => serde_json::json!({}),
    };
    j["passes"] = passes;
    let text = serde_json::to_string_pretty(&j).expect("invariant: reports serialize");
    outs.write(path, text + "\n")?;
    if let Some(r) = mapping {
        outs.write(&path.with_extension("svg"), r.svg())?;
    }
    Ok(())
}

/// Writes `-o`: the program, or with `--emit stream` the stream emitted from it (returned, for
/// the summary). The stages' times join the passes' in `times`.
fn write_output(
    outs: &mut Outputs,
    a: &CompileArgs,
    program: Program,
    target: Option<&Target>,
    times: &mut Vec<PassTime>,
) -> Result<Option<Stream>> {
    match (a.emit, target) {
        (Emit::Program, _) => {
            let start = std::time::Instant::now();
            outs.write_with(&a.output, |w| program.write_to(w))?;
            times.push(PassTime::since("(write)", start));
            Ok(None)
        }
        (Emit::Stream, None) => Err(cimc::Error::Internal(
            "--emit stream without a target passed the check at the start".into(),
        )),
        (Emit::Stream, Some(t)) => {
            let opts = EmitOptions {
                schedule: match a.schedule {
                    ScheduleArg::Auto => ScheduleChoice::Auto,
                    ScheduleArg::Pipelined => ScheduleChoice::Pipelined,
                    ScheduleArg::LayerSerial => ScheduleChoice::LayerSerial,
                },
                ..EmitOptions::default()
            };
            let start = std::time::Instant::now();
            let (stream, notes) = emit_with_notes(&program, t, &opts)
                .map_err(|e| cimc::Error::from(e).naming(&a.model))?;
            for n in notes {
                eprintln!("note: {n}");
            }
            // The stream holds its own copy of the weights: the program's go first.
            drop(program);
            times.push(PassTime::since("(emit)", start));
            let start = std::time::Instant::now();
            outs.write_with(&a.output, |w| stream.write_to(w))?;
            times.push(PassTime::since("(write)", start));
            Ok(Some(stream))
        }
    }
}

/// `--time-passes` on stderr: the passes, then the stages after them in parentheses
/// (lowering, emission, writing).
fn print_pass_times(times: &[PassTime]) {
    let total: f64 = times.iter().map(|p| p.time.as_secs_f64()).sum();
    eprintln!(
        "{:<20} {:>10} {:>7} {:>12} {:>8}",
        "pass", "seconds", "share", "resident MB", "peak MB"
    );
    let mb = |b: Option<u64>| b.map_or("—".into(), |b| format!("{:.1}", b as f64 / 1e6));
    for p in times {
        let t = p.time.as_secs_f64();
        eprintln!(
            "{:<20} {t:>10.3} {:>6.1}% {:>12} {:>8}",
            p.pass,
            100.0 * t / total.max(1e-12),
            mb(p.resident),
            mb(p.peak)
        );
    }
    eprintln!("{:<20} {total:>10.3}", "all stages");
}

/// The size of the lowered program, kept for the summary after the program is dropped.
#[derive(Clone, Copy)]
struct ProgramShape {
    steps: usize,
    buffers: usize,
}

/// The last line (or the `--json` object): what was written, its size and the time taken.
fn print_summary(
    a: &CompileArgs,
    stream: Option<&Stream>,
    program: ProgramShape,
    mapping: Option<&MappingReport>,
    seconds: f64,
) {
    let bytes = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    if let Some(st) = stream {
        let summary = serde_json::json!({
            "stream": a.output.display().to_string(),
            "schedule": st.schedule.name(),
            "cores": st.cores.len(),
            "groups": st.groups.len(),
            "instructions": st.instructions(),
            "bytes": bytes,
            "seconds": seconds,
            "mapping": mapping,
        });
        if a.json {
            print_json(&summary);
        } else {
            println!(
                "{}: {} schedule, {} cores, {} crossbar groups, {} instructions, {} bytes, {:.3} s",
                a.output.display(),
                st.schedule.name(),
                st.cores.len(),
                st.groups.len(),
                st.instructions(),
                bytes,
                seconds
            );
        }
    } else if a.json {
        print_json(&serde_json::json!({
            "program": a.output.display().to_string(),
            "steps": program.steps,
            "buffers": program.buffers,
            "bytes": bytes,
            "seconds": seconds,
            "mapping": mapping,
        }));
    } else {
        println!(
            "{}: {} steps, {} buffers, {} bytes, {:.3} s",
            a.output.display(),
            program.steps,
            program.buffers,
            bytes,
            seconds
        );
    }
}
