//! Compiling a graph to the interpreter program: the pass pipeline, then `lower`.

use crate::error::{Error, Result};
use cimc_backends::program::{lower::lower, Program};
use cimc_backends::target::TargetRecord;
use cimc_ir::Graph;
use cimc_passes::{PassContext, PassError, PassTime, Pipeline, PipelineReport};
use std::path::Path;

impl From<PassError> for Error {
    fn from(e: PassError) -> Error {
        match e {
            PassError::Internal(m) => Error::Internal(m),
            PassError::Interp(i) => Error::Interp(i),
            other => Error::Usage(other.to_string()),
        }
    }
}

/// Runs the default pipeline (or up to `stop_after`) on `graph`, printing after the passes
/// named in `print_after`. The graph is left as the last pass made it.
pub fn run_pipeline(
    graph: &mut Graph,
    cx: &PassContext,
    print_after: &[String],
    stop_after: Option<&str>,
) -> Result<PipelineReport> {
    crate::values::check_values(graph)?;
    Ok(Pipeline::default_pipeline().run(graph, cx, print_after, stop_after)?)
}

/// The whole compilation: every pass, then `lower`.
pub fn compile(
    mut graph: Graph,
    cx: &PassContext,
    print_after: &[String],
) -> Result<(Program, PipelineReport)> {
    compile_in_place(&mut graph, cx, print_after)
}

/// As [`compile`], leaving `graph` as the last pass made it (for reports on the mapping). A
/// program mapped for the context's chip carries that whole target (`docs/program-format.md`).
pub fn compile_in_place(
    graph: &mut Graph,
    cx: &PassContext,
    print_after: &[String],
) -> Result<(Program, PipelineReport)> {
    let mut report = run_pipeline(graph, cx, print_after, None)?;
    let start = std::time::Instant::now();
    let mut program = lower(graph)?;
    if let Some(chip) = &cx.chip {
        if graph.target.as_ref() == Some(&chip.target.stamp()) {
            program.target = Some(TargetRecord::Full(Box::new(chip.target.clone())));
        }
    }
    report.times.push(PassTime::since("(lower)", start));
    Ok((program, report))
}

/// Reads a `.cimp` program file.
pub fn read_program(path: &Path) -> Result<Program> {
    let bytes = cimc_ir::files::read_regular(path, u64::MAX).map_err(|e| Error::io(path, e))?;
    Program::from_bytes(&bytes)
        .map_err(|e| Error::Program { file: path.to_path_buf(), msg: e.to_string() })
}

/// Writes `p` to a `.cimp` file, serialized straight into the file (no copy of the whole file
/// in memory; the same bytes as [`Program::to_bytes`]).
pub fn write_program(path: &Path, p: &Program) -> Result<()> {
    write_with(path, |w| p.write_to(w))
}

/// Writes `path` through a buffer with `write`, whole or not at all (`crate::output`).
pub fn write_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let mut outs = crate::output::Outputs::default();
    outs.write_with(path, write)?;
    outs.commit()
}
