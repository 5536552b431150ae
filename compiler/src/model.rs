//! Loading a model from what a user names on the command line: an ONNX file, the text IR
//! (`.cir`, with its constants' data in `<file>.data` beside it when it has large ones), or an
//! interpreter program (`.cimp`).
//!
//! A graph or a program has a fixed batch. [`Model`] keeps where it came from, so that an ONNX
//! model can be re-imported at the batch a run needs, while a text-IR graph or a program runs
//! in chunks of its own batch ([`run_in_chunks`]).

use crate::error::{Error, Result};
use crate::onnx::{self, ImportOptions};
use cimc_backends::program::{Elem, Program};
use cimc_interp::{Runner, Tensor};
use cimc_ir::{DType, Graph};
use cimc_sim::program::{ProgramRunner, WeightWidths};
use std::path::{Path, PathBuf};

/// Where a model comes from, and how to build what runs it.
pub enum Model {
    Onnx { path: PathBuf, opts: ImportOptions },
    Ir { path: PathBuf, graph: Graph },
    Program { path: PathBuf, program: Program },
}

/// The file that holds the data of a text IR file's referenced constants.
pub fn data_path(cir: &Path) -> PathBuf {
    let mut s = cir.as_os_str().to_owned();
    s.push(".data");
    PathBuf::from(s)
}

/// Reads a text IR file (and its data file when present) and verifies the graph.
pub fn read_ir(path: &Path) -> Result<Graph> {
    let text = cimc_ir::files::read_text(path).map_err(|e| Error::io(path, e))?;
    let dpath = data_path(path);
    let data = match cimc_ir::files::read_regular(&dpath, u64::MAX) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(dpath, e)),
    };
    let graph = cimc_ir::parse::parse_with_data(&text, data.as_deref())
        .map_err(|source| Error::Ir { file: path.to_path_buf(), source })?;
    verify(&graph, path)?;
    Ok(graph)
}

/// Stages a graph as text IR for `path`, and its large constants for `<path>.data` (removing a
/// stale data file at the commit when the graph has none): the two are replaced together.
pub fn write_ir(outs: &mut crate::output::Outputs, graph: &Graph, path: &Path) -> Result<()> {
    let dpath = data_path(path);
    if cimc_ir::datafile::has_referenced_data(graph) {
        outs.write(&dpath, cimc_ir::datafile::write_data(graph))?;
    } else {
        outs.remove_at_commit(&dpath);
    }
    outs.write(path, graph.to_string())
}

pub fn verify(graph: &Graph, file: &Path) -> Result<()> {
    cimc_ir::verify::verify(graph).map_err(|source| Error::Ir { file: file.to_path_buf(), source })
}

/// What a run needs to know of one input: name, dtype, shape (first dimension = batch).
#[derive(Clone, Debug)]
pub struct InputDecl {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// Something that runs: a float graph or an interpreter program.
pub enum Executable {
    Graph(Runner),
    Program(ProgramRunner),
}

impl Executable {
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        Ok(match self {
            Executable::Graph(r) => r.run(inputs)?,
            Executable::Program(p) => p.run(inputs)?,
        })
    }
}

/// A ready-to-run model: the executable, its inputs, its output names.
pub struct Prepared {
    pub exe: Executable,
    pub inputs: Vec<InputDecl>,
    pub outputs: Vec<String>,
}

impl Prepared {
    pub fn from_graph(g: &Graph) -> Result<Prepared> {
        let inputs = crate::quant_settings::input_decls(g);
        let outputs = g.outputs().iter().map(|&v| g.value(v).name.clone()).collect();
        Ok(Prepared { exe: Executable::Graph(Runner::new(g)?), inputs, outputs })
    }

    pub fn from_program(p: &Program) -> Result<Prepared> {
        Prepared::from_program_at(p, &WeightWidths::default())
    }

    /// A program at the weight widths `widths` (the cascade, `docs/cascade.md`): no
    /// recompilation, the derived weights are prepared here.
    pub fn from_program_at(p: &Program, widths: &WeightWidths) -> Result<Prepared> {
        let inputs = p
            .inputs
            .iter()
            .map(|&b| {
                let d = &p.buffers[b];
                let dtype = match (d.elem, &d.quant) {
                    (Elem::F32, _) => DType::F32,
                    // Plain integers (the token ids of an embedding), of their own type.
                    (Elem::Code(c), None) => match (c.bits, c.signed) {
                        (8, false) => DType::U8,
                        (8, true) => DType::I8,
                        (16, false) => DType::U16,
                        (16, true) => DType::I16,
                        _ => DType::I32,
                    },
                    (Elem::Code(_), Some(_)) => DType::I32,
                };
                InputDecl { name: d.name.clone(), dtype, shape: d.shape.clone() }
            })
            .collect();
        let outputs = p.outputs.iter().map(|&b| p.buffers[b].name.clone()).collect();
        let runner = if widths == &WeightWidths::default() {
            ProgramRunner::new(p)?
        } else {
            ProgramRunner::with_weight_widths(p, widths)?
        };
        Ok(Prepared { exe: Executable::Program(runner), inputs, outputs })
    }

    /// The batch of the first input.
    pub fn batch(&self) -> usize {
        self.inputs.first().and_then(|i| i.shape.first().copied()).unwrap_or(1)
    }

    /// Checks the user's arrays against the inputs (count, dtype, per-sample dimensions), so a
    /// wrong file gets a message naming it.
    pub fn check_inputs(&self, inputs: &[Tensor], files: &[PathBuf]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Usage(format!(
                "the model has {} input(s), {} input file(s) given",
                self.inputs.len(),
                inputs.len()
            )));
        }
        for (k, (d, t)) in self.inputs.iter().zip(inputs).enumerate() {
            // One file per input, or one .npz for all.
            let Some(f) = files.get(k).or(files.last()) else { break };
            if t.dtype() != d.dtype
                || t.shape().len() != d.shape.len()
                || t.shape().get(1..) != d.shape.get(1..)
            {
                return Err(Error::Npy {
                    file: f.clone(),
                    msg: format!(
                        "input '{}' expects {}[{}] (any first dimension), the file holds {}{:?}",
                        d.name,
                        d.dtype,
                        d.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
                        t.dtype(),
                        t.shape()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Runs over `inputs` of any sample count, in chunks of the model's batch.
    pub fn run_all(&self, inputs: &[Tensor], on_chunk: impl FnMut(usize)) -> Result<Vec<Tensor>> {
        run_in_chunks(|x| self.exe.run(x), self.batch(), inputs, on_chunk)
    }
}

impl Model {
    /// Opens `path`: `.cir` is parsed as text IR, `.cimp` read as a program, anything else
    /// imported as ONNX.
    pub fn open(path: &Path, opts: ImportOptions) -> Result<Model> {
        // The OS's own reason ("No such file or directory", "Permission denied"), with the path.
        std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("cir") => Ok(Model::Ir { path: path.to_path_buf(), graph: read_ir(path)? }),
            Some("cimp") => Ok(Model::Program {
                path: path.to_path_buf(),
                program: crate::compile::read_program(path)?,
            }),
            _ => Ok(Model::Onnx { path: path.to_path_buf(), opts }),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Model::Onnx { path, .. } | Model::Ir { path, .. } | Model::Program { path, .. } => path,
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
            Model::Program { path, .. } => Err(Error::Usage(format!(
                "{} is a compiled program, not a graph (give the .onnx or .cir model)",
                path.display()
            ))),
        }
    }

    /// The graph with inputs of `batch` samples: ONNX models are re-imported at that batch;
    /// a text-IR graph keeps its own.
    pub fn graph_at(&self, batch: usize) -> Result<Graph> {
        match self {
            Model::Onnx { path, opts } => {
                let mut o = opts.clone();
                o.batch = Some(batch);
                let g = onnx::import_file(path, &o)?;
                verify(&g, path)?;
                Ok(g)
            }
            _ => self.graph(),
        }
    }

    /// Ready to run, at `batch` samples per run where the model allows it.
    pub fn prepare(&self, batch: usize) -> Result<Prepared> {
        match self {
            Model::Program { program, path } => {
                crate::limits::check_program_run(path, program)?;
                Prepared::from_program(program)
            }
            _ => {
                let g = self.graph_at(batch)?;
                crate::limits::check_graph_run(self.path(), &g)?;
                Prepared::from_graph(&g)
            }
        }
    }

    /// As [`Model::prepare`], a program at the weight widths `widths` when some are given
    /// (`--cascade-wbits`, `--cascade-bits`); widths for a model that is no program are an error.
    pub fn prepare_at(&self, batch: usize, widths: Option<&WeightWidths>) -> Result<Prepared> {
        match (self, widths) {
            (_, None) => self.prepare(batch),
            (Model::Program { program, path }, Some(w)) => {
                crate::limits::check_program_run(path, program)?;
                Prepared::from_program_at(program, w)
            }
            (m, Some(_)) => Err(Error::Usage(format!(
                "{}: --cascade-wbits and --cascade-bits switch the weight width of a compiled program (.cimp); \
                 compile the model first (cimc compile --cascade)",
                m.path().display()
            ))),
        }
    }
}

/// The weight widths of `--cascade-wbits B` (every layer) and `--cascade-bits layers.toml` (per
/// layer, the TOML of `compile --bits`: `[layers."name"] wbits = 4`), `None` when neither is
/// given.
pub fn weight_widths(wbits: Option<u8>, file: Option<&Path>) -> Result<Option<WeightWidths>> {
    if wbits.is_none() && file.is_none() {
        return Ok(None);
    }
    let mut w = WeightWidths::default();
    if let Some(b) = wbits {
        w.all = Some(cimc_passes::config::check_bits("--cascade-wbits", b)? as u32);
    }
    if let Some(f) = file {
        let text = cimc_ir::files::read_text(f).map_err(|e| Error::io(f, e))?;
        let mut cfg = cimc_passes::QuantConfig::default();
        cfg.read_overrides(&text, &f.display().to_string())?;
        for (name, bits) in cfg.layers {
            if bits.abits.is_some() {
                return Err(Error::Usage(format!(
                    "{}: layers.\"{name}\".abits: only weight widths switch at run time",
                    f.display()
                )));
            }
            if let Some(b) = bits.wbits {
                w.layers.insert(name, b as u32);
            }
        }
    }
    Ok(Some(w))
}

/// The arrays for a model's inputs from the files a user names: one `.npy` per input, in the
/// inputs' order, or one `.npz` holding an array per input, keyed by the input's name (or, as
/// `numpy.savez(f, *arrays)` names them, `arr_0`, `arr_1`... in the inputs' order). An integer
/// array for an integer input of another type is converted when every value fits exactly.
pub fn read_input_arrays(files: &[PathBuf], inputs: &[InputDecl]) -> Result<Vec<Tensor>> {
    match_inputs(read_arrays(files)?, files, inputs)
}

/// The arrays of the files a user names, before they are matched to a model's inputs: one
/// unnamed array per `.npy`, or the named arrays of one `.npz`.
pub fn read_arrays(files: &[PathBuf]) -> Result<Vec<(String, cimc_ir::TensorData)>> {
    match npz_file(files) {
        Some(f) => crate::npy::read_npz(f),
        None => files.iter().map(|p| Ok((String::new(), crate::npy::read(p)?))).collect(),
    }
}

/// The one `.npz` among `files`, if that is what they are.
fn npz_file(files: &[PathBuf]) -> Option<&PathBuf> {
    match files {
        [f] if f.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz")) => Some(f),
        _ => None,
    }
}

/// [`read_input_arrays`] on arrays already read by [`read_arrays`].
pub fn match_inputs(
    mut arrays: Vec<(String, cimc_ir::TensorData)>,
    files: &[PathBuf],
    inputs: &[InputDecl],
) -> Result<Vec<Tensor>> {
    let Some(file) = npz_file(files) else {
        return arrays
            .into_iter()
            .zip(files)
            .enumerate()
            .map(|(k, ((_, d), p))| to_input_type(d, inputs.get(k), p))
            .collect();
    };
    let positional = |k: usize| format!("arr_{k}");
    let mut out = Vec::with_capacity(inputs.len());
    for (k, decl) in inputs.iter().enumerate() {
        let at = arrays
            .iter()
            .position(|(n, _)| *n == decl.name)
            .or_else(|| arrays.iter().position(|(n, _)| *n == positional(k)))
            .ok_or_else(|| Error::Npy {
                file: file.clone(),
                msg: format!(
                    "no array for input '{}' (keys: {}; expected the input's name or '{}')",
                    decl.name,
                    arrays.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
                    positional(k)
                ),
            })?;
        let (_, d) = arrays.remove(at);
        out.push(to_input_type(d, Some(decl), file)?);
    }
    if let Some((extra, _)) = arrays.first() {
        return Err(Error::Npy {
            file: file.clone(),
            msg: format!("array '{extra}' is none of the model's inputs"),
        });
    }
    Ok(out)
}

/// An array as a tensor, an integer one converted to an integer input's type when every value
/// fits exactly (other mismatches are left to the shape and type checks, which name them).
fn to_input_type(d: cimc_ir::TensorData, decl: Option<&InputDecl>, file: &Path) -> Result<Tensor> {
    let bad = |msg: String| Error::Npy { file: file.to_path_buf(), msg };
    let d = match decl {
        Some(i) if i.dtype != d.dtype() && i.dtype.is_int() && d.dtype().is_int() => {
            let values = d.to_i64_vec();
            let (lo, hi) = int_range(i.dtype);
            if let Some(v) = values.iter().find(|&&v| v < lo || v > hi) {
                return Err(bad(format!(
                    "input '{}' is {}: the {} value {v} does not convert exactly",
                    i.name,
                    i.dtype,
                    d.dtype()
                )));
            }
            let t = Tensor::from_i64(d.shape(), values).map_err(|e| bad(e.to_string()))?;
            let cast = cimc_ir::Op::Cast { to: i.dtype };
            let mut out =
                cimc_interp::eval_node(&cast, &[&t], 1).map_err(|e| bad(e.to_string()))?;
            out.pop().ok_or_else(|| Error::Internal("a cast gave no output".into()))?
        }
        _ => return Tensor::from_data(&d).map_err(|e| bad(e.to_string())),
    };
    Ok(d)
}

/// The values an integer dtype holds.
fn int_range(d: DType) -> (i64, i64) {
    match d {
        DType::I8 => (i8::MIN as i64, i8::MAX as i64),
        DType::U8 => (0, u8::MAX as i64),
        DType::I16 => (i16::MIN as i64, i16::MAX as i64),
        DType::U16 => (0, u16::MAX as i64),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

/// The predicted class of every sample: the argmax of each row of a model's first output,
/// which must be f32 logits `[N, classes]`.
pub fn predicted_classes(outputs: &[Tensor]) -> Result<Vec<usize>> {
    outputs.first().and_then(Tensor::argmax_rows).ok_or_else(|| {
        Error::Usage("eval needs a model whose first output is f32 [N, classes]".into())
    })
}

/// The first dimension of a graph input (its batch), if it has one.
pub fn input_batch(graph: &Graph) -> Option<usize> {
    graph.inputs().first().and_then(|&v| graph.ty(v).shape.first().copied())
}

/// Runs `run` (for `batch` samples per call) over `inputs` of any sample count, in chunks of
/// `batch` along the first axis; a short last chunk is zero-padded and its outputs trimmed.
/// `on_chunk` is told how many samples each chunk carried.
pub fn run_in_chunks(
    run: impl Fn(Vec<Tensor>) -> Result<Vec<Tensor>>,
    batch: usize,
    inputs: &[Tensor],
    mut on_chunk: impl FnMut(usize),
) -> Result<Vec<Tensor>> {
    // A rank-0 input is one sample.
    let samples = |t: &Tensor| t.shape().first().copied().unwrap_or(1);
    let n = inputs.first().map(samples).unwrap_or(0);
    if inputs.iter().any(|t| samples(t) != n) {
        return Err(Error::Usage(
            "all inputs must have the same number of samples (first dimension)".into(),
        ));
    }
    if n == batch {
        let out = run(inputs.to_vec())?;
        on_chunk(n);
        return Ok(out);
    }
    let mut parts: Vec<Vec<Tensor>> = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let chunk: Vec<Tensor> =
            inputs.iter().map(|t| crate::tensor_util::slice_batch(t, start, len, batch)).collect();
        let mut out = run(chunk)?;
        if len < batch {
            out = out.iter().map(|t| crate::tensor_util::slice_batch(t, 0, len, len)).collect();
        }
        parts.push(out);
        start += len;
        on_chunk(len);
    }
    crate::tensor_util::concat_batches(parts)
}
