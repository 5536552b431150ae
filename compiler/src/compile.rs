//! Compiling a graph to the interpreter program: the pass pipeline, then `lower`.

use crate::error::{Error, Result};
use cimc_backends::program::{lower::lower, Program};
use cimc_ir::Graph;
use cimc_passes::{PassContext, PassError, Pipeline, PipelineReport};
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

/// As [`compile`], leaving `graph` as the last pass made it (for reports on the mapping).
pub fn compile_in_place(
    graph: &mut Graph,
    cx: &PassContext,
    print_after: &[String],
) -> Result<(Program, PipelineReport)> {
    let report = run_pipeline(graph, cx, print_after, None)?;
    let program = lower(graph).map_err(|e| Error::Usage(e.to_string()))?;
    Ok((program, report))
}

/// Reads a `.cimp` program file.
pub fn read_program(path: &Path) -> Result<Program> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Program::from_bytes(&bytes)
        .map_err(|e| Error::Program { file: path.to_path_buf(), msg: e.to_string() })
}

pub fn write_program(path: &Path, p: &Program) -> Result<()> {
    std::fs::write(path, p.to_bytes()).map_err(|e| Error::io(path, e))
}
