//! `cimc sim model.cims --input x.npy [--output y.npy] [--report r.json]`: run an instruction
//! stream on the simulator, with the input and output conventions of `cimc run` (so the two
//! backends can be compared file to file), and optionally its cost report (JSON, plus an SVG
//! beside it, and a table on the terminal).

use super::print_json;
use super::run::read_inputs;
use super::stream::read_stream;
use cimc::output::Outputs;
use cimc::{npy, Error, Result};
use cimc_backends::stream::{cost, Stream};
use cimc_backends::target::Target;
use cimc_sim::stream::StreamRunner;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// A stream file (.cims).
    stream: PathBuf,
    /// One .npy per stream input, in order.
    #[arg(long, required = true)]
    input: Vec<PathBuf>,
    /// Where to write the outputs (.npy), one per stream output, in order.
    #[arg(long)]
    output: Vec<PathBuf>,
    /// Write the cost report (JSON) here, and its plot next to it (.svg).
    #[arg(long)]
    report: Option<PathBuf>,
    /// The target whose cost figures to use: by default the one the stream records (it was
    /// emitted for it). A target given here must map the same way (the same hash); its cost
    /// figures then replace the recorded ones.
    #[arg(long)]
    target: Option<String>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

/// The target of a stream's cost figures. A stream records the whole target it was emitted for
/// (format version 2 on): that one, unless `--target` names another, which must map the same way
/// (the same hash; its cost figures and noise then replace the recorded ones) or is refused. A
/// stream of format version 1 records only its stamp: `--target`, or the preset its stamp names;
/// a hash that differs from the stamp's is then reported on stderr (the stream was compiled with
/// command-line overrides such as `--adc-bits`, or for another chip) and the cost figures are
/// those of the target given.
pub fn stream_target(s: &Stream, name: Option<&str>, quiet: bool) -> Result<Target> {
    let recorded = s.target.as_ref();
    let (stamp_name, stamp_hash) = recorded.map(|r| r.name_and_hash()).unwrap_or_default();
    let resolve = |n: &str| Target::resolve(n).map_err(|e| Error::Usage(e.to_string()));
    match (name, recorded.and_then(|r| r.target())) {
        (None, Some(t)) => return Ok(t.clone()),
        (Some(n), Some(_)) => {
            let t = resolve(n)?;
            if t.hash_hex() != stamp_hash {
                return Err(Error::Usage(format!(
                    "--target {n}: '{}' (hash {}) maps differently from '{stamp_name}' (hash \
                     {stamp_hash}), the target the stream was emitted for, so its cost figures \
                     would not describe this stream; leave --target out to use the recorded one",
                    t.name,
                    t.hash_hex()
                )));
            }
            return Ok(t);
        }
        _ => {}
    }
    let t = match name {
        Some(n) => Target::resolve(n)?,
        None if recorded.is_none() => {
            return Err(Error::Usage(
                "the stream names no target: give --target for its cost figures".into(),
            ))
        }
        None => Target::preset(&stamp_name).ok_or_else(|| {
            Error::Usage(format!(
                "the stream (an older format, which records only the target's name) was \
                 compiled for target '{stamp_name}', which is not a preset: give --target FILE"
            ))
        })?,
    };
    if t.hash_hex() != stamp_hash && !quiet {
        eprintln!(
            "note: the stream was compiled for '{stamp_name}' (hash {stamp_hash}); the cost \
             figures are those of '{}' (hash {})",
            t.name,
            t.hash_hex()
        );
    }
    Ok(t)
}

pub fn run(a: SimArgs) -> Result<()> {
    let svg = a.report.as_ref().map(|r| r.with_extension("svg"));
    let inputs = [&a.stream].into_iter().chain(&a.input).map(PathBuf::as_path);
    let target_file = a.target.as_deref().map(std::path::Path::new);
    let dests = a.output.iter().chain(&a.report).chain(&svg).map(PathBuf::as_path);
    let mut outs = Outputs::new(inputs.chain(target_file), dests)?;
    let s = read_stream(&a.stream)?;
    let inputs = read_inputs(&a.input)?;
    if inputs.len() != s.inputs.len() {
        return Err(Error::Usage(format!(
            "the stream has {} input(s), {} --input file(s) given",
            s.inputs.len(),
            inputs.len()
        )));
    }
    for ((t, io), file) in inputs.iter().zip(&s.inputs).zip(&a.input) {
        if t.shape() != io.shape.as_slice() {
            return Err(Error::Npy {
                file: file.clone(),
                msg: format!(
                    "input '{}' has shape {:?}; the file holds {:?}",
                    io.name,
                    io.shape,
                    t.shape()
                ),
            });
        }
    }
    if !a.output.is_empty() && a.output.len() != s.outputs.len() {
        return Err(Error::Usage(format!(
            "the stream has {} output(s), {} --output path(s) given",
            s.outputs.len(),
            a.output.len()
        )));
    }
    // Resolve the cost figures before the run: a wrong target fails fast.
    let target = match &a.report {
        Some(_) => Some(stream_target(&s, a.target.as_deref(), a.json)?),
        None => None,
    };
    let start = std::time::Instant::now();
    let runner = StreamRunner::new(&s)?;
    let total = s.instructions() as u64;
    let bar = super::progress(total, a.json);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} instructions  {elapsed}")
            .expect("invariant: the template is valid"),
    );
    let outputs = runner.run_with_progress(inputs, &|done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    for (p, t) in a.output.iter().zip(&outputs) {
        outs.write(p, npy::to_bytes(&t.to_data()))?;
    }
    let report = match (&a.report, &target) {
        (Some(path), Some(t)) => {
            let r = cost::estimate(&s, t)?;
            let text = serde_json::to_string_pretty(&r).expect("invariant: reports serialize");
            outs.write(path, text + "\n")?;
            outs.write(&path.with_extension("svg"), cimc::stream_report::svg(&r))?;
            Some(r)
        }
        _ => None,
    };
    outs.commit()?;
    if a.json {
        let outs: Vec<_> = s
            .outputs
            .iter()
            .zip(&outputs)
            .map(|(io, t)| serde_json::json!({"name": io.name, "dtype": t.dtype().name(), "shape": t.shape()}))
            .collect();
        print_json(&serde_json::json!({
            "outputs": outs,
            "instructions": total,
            "seconds": seconds,
            "cost": report,
        }));
    } else {
        if let Some(r) = &report {
            print!("{}", cimc::stream_report::table(r));
        }
        for (io, t) in s.outputs.iter().zip(&outputs) {
            println!("{}: {}{:?}", io.name, t.dtype(), t.shape());
            if let Some(a) = t.as_f32() {
                if a.ndim() == 2 {
                    for (i, row) in a.outer_iter().enumerate().take(8) {
                        println!(
                            "  sample {i}: argmax {}",
                            cimc_interp::tensor::argmax(row.iter().copied())
                        );
                    }
                }
            }
        }
        println!("{total} instructions simulated in {seconds:.3} s");
    }
    Ok(())
}
