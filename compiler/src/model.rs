//! Loading a model from what a user names on the command line: an ONNX file, or the text IR
//! (`.cir`, with its constants' data in `<file>.data` beside it when it has large ones).
//!
//! A model has a fixed batch once it is a graph. [`Model`] keeps where it came from, so that an
//! ONNX model can be re-imported at the batch a run needs, while a text-IR graph runs in chunks
//! of its own batch.

use crate::error::{Error, Result};
use crate::onnx::{self, ImportOptions};
use cimc_interp::{Runner, Tensor};
use cimc_ir::Graph;
use std::path::{Path, PathBuf};

/// Where a model comes from, and how to build its graph.
pub enum Model {
    Onnx { path: PathBuf, opts: ImportOptions },
    Ir { path: PathBuf, graph: Graph },
}

/// The file that holds the data of a text IR file's referenced constants.
pub fn data_path(cir: &Path) -> PathBuf {
    let mut s = cir.as_os_str().to_owned();
    s.push(".data");
    PathBuf::from(s)
}

/// Reads a text IR file (and its data file when present) and verifies the graph.
pub fn read_ir(path: &Path) -> Result<Graph> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let dpath = data_path(path);
    let data = match std::fs::read(&dpath) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(dpath, e)),
    };
    let graph = cimc_ir::parse::parse_with_data(&text, data.as_deref())
        .map_err(|source| Error::Ir { file: path.to_path_buf(), source })?;
    verify(&graph, path)?;
    Ok(graph)
}

/// Writes a graph as text IR to `path`, and its large constants to `<path>.data` (removing a
/// stale data file when the graph has none).
pub fn write_ir(graph: &Graph, path: &Path) -> Result<()> {
    std::fs::write(path, graph.to_string()).map_err(|e| Error::io(path, e))?;
    let data = cimc_ir::datafile::write_data(graph);
    let dpath = data_path(path);
    if cimc_ir::datafile::has_referenced_data(graph) {
        std::fs::write(&dpath, data).map_err(|e| Error::io(dpath, e))?;
    } else if dpath.exists() {
        std::fs::remove_file(&dpath).map_err(|e| Error::io(dpath, e))?;
    }
    Ok(())
}

pub fn verify(graph: &Graph, file: &Path) -> Result<()> {
    cimc_ir::verify::verify(graph).map_err(|source| Error::Ir { file: file.to_path_buf(), source })
}

impl Model {
    /// Opens `path`: `.onnx` (or any file that is not text IR) is imported, `.cir` parsed.
    pub fn open(path: &Path, opts: ImportOptions) -> Result<Model> {
        if !path.exists() {
            return Err(Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        let is_ir = path.extension().is_some_and(|e| e == "cir");
        if is_ir {
            Ok(Model::Ir { path: path.to_path_buf(), graph: read_ir(path)? })
        } else {
            Ok(Model::Onnx { path: path.to_path_buf(), opts })
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Model::Onnx { path, .. } | Model::Ir { path, .. } => path,
        }
    }

    /// The graph at its default batch (the one `--batch`/`--input-shape` gave, else 1).
    pub fn graph(&self) -> Result<Graph> {
        match self {
            Model::Onnx { path, opts } => {
                let g = onnx::import_file(path, opts)?;
                verify(&g, path)?;
                Ok(g)
            }
            Model::Ir { graph, .. } => Ok(graph.clone()),
        }
    }

    /// A graph whose inputs take `batch` samples, when the model can be rebuilt at any batch
    /// (ONNX); `None` for a text-IR graph, whose batch is fixed.
    pub fn graph_for_batch(&self, batch: usize) -> Result<Option<Graph>> {
        match self {
            Model::Onnx { path, opts } => {
                let mut o = opts.clone();
                o.batch = Some(batch);
                let g = onnx::import_file(path, &o)?;
                verify(&g, path)?;
                Ok(Some(g))
            }
            Model::Ir { .. } => Ok(None),
        }
    }
}

/// The first dimension of a graph input (its batch), if it has one.
pub fn input_batch(graph: &Graph) -> Option<usize> {
    graph.inputs().first().and_then(|&v| graph.ty(v).shape.first().copied())
}

/// Runs `runner` (built for a graph of batch `graph_batch`) over `inputs` of any sample count,
/// in chunks of `graph_batch` along the first axis; a short last chunk is zero-padded and its
/// outputs trimmed. `on_chunk` is told how many samples each chunk carried.
pub fn run_in_chunks(
    runner: &Runner,
    graph_batch: usize,
    inputs: &[Tensor],
    mut on_chunk: impl FnMut(usize),
) -> Result<Vec<Tensor>> {
    let n = inputs.first().map(|t| t.shape().first().copied().unwrap_or(1)).unwrap_or(0);
    if inputs.iter().any(|t| t.shape().first().copied() != Some(n)) {
        return Err(Error::Usage("all inputs must have the same number of samples (first dimension)".into()));
    }
    if n == graph_batch {
        let out = runner.run(inputs.to_vec())?;
        on_chunk(n);
        return Ok(out);
    }
    let mut parts: Vec<Vec<Tensor>> = Vec::new();
    let mut start = 0;
    while start < n {
        let len = graph_batch.min(n - start);
        let chunk: Vec<Tensor> =
            inputs.iter().map(|t| crate::tensor_util::slice_batch(t, start, len, graph_batch)).collect();
        let mut out = runner.run(chunk)?;
        if len < graph_batch {
            out = out.iter().map(|t| crate::tensor_util::slice_batch(t, 0, len, len)).collect();
        }
        parts.push(out);
        start += len;
        on_chunk(len);
    }
    crate::tensor_util::concat_batches(parts)
}
