//! `cimc.load`, `cimc.compile` and the `Model` and `Program` classes: `cimc run`, `cimc eval`
//! and `cimc compile` on arrays, through the library functions those commands call.

use crate::arrays::{borrow_all, input_name, list_to_python, raw, tensors, Raw};
use crate::options::{import_options, QuantOptions, TargetSource};
use crate::{detached, to_py};
use bytes::Bytes;
use cimc::model::{Executable, Prepared};
use cimc::onnx::ImportOptions;
use cimc::quant_settings::{Naming, QuantSettings};
use cimc::{Error, Result};
use cimc_backends::noise::NoiseSpec;
use cimc_backends::program::Program as CimcProgram;
use cimc_interp::tensor::{count_correct, top1_percent};
use cimc_interp::Tensor;
use cimc_ir::Graph;
use cimc_sim::noise::{NoiseConfig, NoisyChip};
use cimc_sim::program::ProgramRunner;
use pyo3::prelude::*;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where a model comes from: a file the CLI would open, or ONNX bytes.
enum Source {
    File(cimc::model::Model),
    Bytes { bytes: Bytes, opts: ImportOptions },
}

/// The name ONNX bytes go by in messages.
const BYTES_NAME: &str = "<onnx bytes>";

/// A model: an ONNX model (a file or bytes), a text IR file or a program file.
#[pyclass(frozen, module = "cimc._native")]
pub struct Model {
    source: Source,
}

impl Model {
    /// The graph at the import options' batch (`Model::graph`).
    fn graph(&self) -> Result<Graph> {
        match &self.source {
            Source::File(m) => m.graph(),
            Source::Bytes { bytes, opts } => import_bytes(bytes, opts),
        }
    }

    /// Ready to run at `batch` samples per run where the model allows it (`Model::prepare`).
    fn prepare(&self, batch: usize) -> Result<Prepared> {
        match &self.source {
            Source::File(m) => m.prepare(batch),
            Source::Bytes { bytes, opts } => {
                let mut o = opts.clone();
                o.batch = Some(batch);
                Prepared::from_graph(&import_bytes(bytes, &o)?)
            }
        }
    }
}

fn import_bytes(bytes: &Bytes, opts: &ImportOptions) -> Result<Graph> {
    let name = Path::new(BYTES_NAME);
    let g = cimc::onnx::import_bytes(bytes.clone(), name, opts)?;
    cimc::model::verify(&g, name)?;
    Ok(g)
}

/// Runs `p` on `inputs` (of any sample count, in chunks of its batch), as `cimc run` does.
fn run_prepared(p: &Prepared, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
    let names: Vec<PathBuf> = (0..inputs.len()).map(input_name).collect();
    p.check_inputs(&inputs, &names)?;
    let n = inputs.first().and_then(|t| t.shape().first().copied()).unwrap_or(1);
    if n == 0 {
        return Err(Error::Npy {
            file: input_name(0),
            msg: "holds no samples (its first dimension is 0)".into(),
        });
    }
    p.run_all(&inputs, |_| {})
}

#[pymethods]
impl Model {
    /// Runs the float model on the inputs (one array per model input) and returns its outputs,
    /// as `cimc run MODEL` does.
    fn run(&self, py: Python<'_>, inputs: Vec<Bound<'_, PyAny>>) -> PyResult<Vec<Py<PyAny>>> {
        let borrowed = borrow_all(&inputs)?;
        let raw = raw(&borrowed)?;
        let outs = detached(py, || {
            let x = tensors(&raw)?;
            let n = x.first().and_then(|t| t.shape().first().copied()).unwrap_or(1);
            run_prepared(&self.prepare(n.max(1))?, x)
        })?;
        list_to_python(py, outs)
    }

    /// The IR of the imported model as text (`cimc dump MODEL`).
    fn dump(&self, py: Python<'_>) -> PyResult<String> {
        detached(py, || Ok(self.graph()?.to_string()))
    }

    /// The model's inputs: (name, dtype, shape) each.
    fn inputs(&self, py: Python<'_>) -> PyResult<Vec<(String, String, Vec<usize>)>> {
        detached(py, || {
            let g = self.graph()?;
            Ok(g.inputs()
                .iter()
                .map(|&v| {
                    let t = g.ty(v);
                    (g.value(v).name.clone(), t.dtype.to_string(), t.shape.clone())
                })
                .collect())
        })
    }
}

/// Opens a model: `source` is a path (ONNX, `.cir`, `.cimp`) or ONNX bytes.
#[pyfunction]
#[pyo3(signature = (source, batch=None, input_shapes=Vec::new()))]
pub fn load(
    py: Python<'_>,
    source: Bound<'_, PyAny>,
    batch: Option<usize>,
    input_shapes: Vec<(String, Vec<usize>)>,
) -> PyResult<Model> {
    let opts = import_options(batch, input_shapes).map_err(to_py)?;
    if let Ok(b) = source.cast::<pyo3::types::PyBytes>() {
        let bytes = Bytes::copy_from_slice(b.as_bytes());
        return Ok(Model { source: Source::Bytes { bytes, opts } });
    }
    let path: PathBuf = source.extract()?;
    let m = detached(py, || cimc::model::Model::open(&path, opts))?;
    Ok(Model { source: Source::File(m) })
}

/// A compiled program: the bit-accurate golden model of the chip (`.cimp`).
#[pyclass(frozen, module = "cimc._native")]
pub struct Program {
    program: CimcProgram,
    /// What `cimc compile --report` writes (the mapping, every pass's decisions), and the bit
    /// widths (`--bits-out`); `None` for a program read from a file.
    report: Option<serde_json::Value>,
    /// The runner, prepared on first use and kept (weights converted once).
    prepared: OnceLock<Prepared>,
}

impl Program {
    fn new(program: CimcProgram, report: Option<serde_json::Value>) -> Program {
        Program { program, report, prepared: OnceLock::new() }
    }

    fn prepared(&self) -> Result<&Prepared> {
        if let Some(p) = self.prepared.get() {
            return Ok(p);
        }
        let p = Prepared::from_program(&self.program)?;
        // Another thread may have prepared it meanwhile: either one is the same runner.
        Ok(self.prepared.get_or_init(|| p))
    }

    fn runner(&self) -> Result<&ProgramRunner> {
        match &self.prepared()?.exe {
            Executable::Program(r) => Ok(r),
            Executable::Graph(_) => Err(Error::Internal("a program prepared as a graph".into())),
        }
    }

    /// The program's batch (its first input's first dimension).
    fn batch(&self) -> usize {
        self.program
            .inputs
            .first()
            .and_then(|&b| self.program.buffers[b].shape.first().copied())
            .unwrap_or(1)
            .max(1)
    }
}

/// A `[noise]` table: from a file (a noise or target file) or TOML text.
fn noise_spec(path: Option<PathBuf>, toml: Option<String>) -> Result<Option<NoiseSpec>> {
    let spec = match (path, toml) {
        (Some(p), _) => NoiseSpec::load(&p),
        (None, Some(t)) => NoiseSpec::from_toml_str(&t, "noise"),
        (None, None) => return Ok(None),
    };
    spec.map(Some).map_err(|e| Error::Usage(e.to_string()))
}

/// Runs `runner` on `x` in chunks of `batch` on the chip `chip`, read noise keyed on each
/// sample's index (as `cimc eval --noise` runs a trial).
fn run_noisy_chunks(
    runner: &ProgramRunner,
    batch: usize,
    x: &[Tensor],
    chip: &NoisyChip,
) -> Result<Vec<Tensor>> {
    let n = x.first().and_then(|t| t.shape().first().copied()).unwrap_or(1);
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let chunk: Vec<Tensor> =
            x.iter().map(|t| cimc::tensor_util::slice_batch(t, start, len, batch)).collect();
        let mut out = runner.run_noisy(chunk, chip, start as u64)?;
        if len < batch {
            out = out.iter().map(|t| cimc::tensor_util::slice_batch(t, 0, len, len)).collect();
        }
        parts.push(out);
        start += len;
    }
    cimc::tensor_util::concat_batches(parts)
}

/// The labels of `eval`, checked as `cimc eval` checks its `--labels` file.
fn check_labels(labels: &[i64], n_all: usize) -> Result<()> {
    if labels.len() != n_all {
        return Err(Error::Npy {
            file: PathBuf::from("<labels>"),
            msg: format!("{} labels for the {n_all} samples of <input 0>", labels.len()),
        });
    }
    Ok(())
}

#[pymethods]
impl Program {
    /// Runs the program on the inputs; with a noise spec, on `trials` programmings of the chip
    /// (trial `t` of seed `seed`, as `cimc eval --noise` draws them), returning one list of
    /// outputs per trial.
    #[pyo3(signature = (inputs, noise_path=None, noise_toml=None, seed=0, trials=1))]
    fn run(
        &self,
        py: Python<'_>,
        inputs: Vec<Bound<'_, PyAny>>,
        noise_path: Option<PathBuf>,
        noise_toml: Option<String>,
        seed: u64,
        trials: usize,
    ) -> PyResult<Vec<Vec<Py<PyAny>>>> {
        let borrowed = borrow_all(&inputs)?;
        let raw = raw(&borrowed)?;
        let outs = detached(py, || self.run_trials(&raw, noise_path, noise_toml, seed, trials))?;
        outs.into_iter().map(|o| list_to_python(py, o)).collect()
    }

    /// Top-1 on a labelled set, as `cimc eval PROGRAM` (exact) or `cimc eval PROGRAM --noise`
    /// (Monte Carlo over `trials` programmings); the report as JSON text.
    #[pyo3(signature = (x, labels, noise_path=None, noise_toml=None, seed=0, trials=20))]
    fn eval(
        &self,
        py: Python<'_>,
        x: Bound<'_, PyAny>,
        labels: Vec<i64>,
        noise_path: Option<PathBuf>,
        noise_toml: Option<String>,
        seed: u64,
        trials: usize,
    ) -> PyResult<String> {
        let borrowed = borrow_all(std::slice::from_ref(&x))?;
        let raw = raw(&borrowed)?;
        detached(py, || {
            let j = self.eval_report(&raw[0], &labels, noise_path, noise_toml, seed, trials)?;
            Ok(j.to_string())
        })
    }

    /// The compile report as JSON text: `{"steps", "buffers", "target"}`, and for a program
    /// compiled here what `cimc compile --report` writes (`mapping` fields, `passes`) and the
    /// per-layer bit widths (`bits`, the TOML of `--bits-out`).
    fn report(&self) -> String {
        let mut j = self.report.clone().unwrap_or_else(|| serde_json::json!({}));
        j["steps"] = serde_json::json!(self.program.steps.len());
        j["buffers"] = serde_json::json!(self.program.buffers.len());
        if let Some(t) = &self.program.target {
            j["target_stamp"] = serde_json::json!(t.name_and_hash().0);
        }
        j.to_string()
    }

    /// The program's text listing (`cimc compile --listing`).
    fn listing(&self, py: Python<'_>) -> PyResult<String> {
        detached(py, || Ok(cimc_backends::program::listing::listing(&self.program)))
    }

    /// Writes the program file (`.cimp`), the bytes `cimc compile -o` writes.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        detached(py, || cimc::compile::write_program(&path, &self.program))
    }

    /// The program's inputs: (name, shape) each; the first dimension is its batch.
    fn inputs(&self) -> Vec<(String, Vec<usize>)> {
        let p = &self.program;
        p.inputs.iter().map(|&b| (p.buffers[b].name.clone(), p.buffers[b].shape.clone())).collect()
    }

    /// The program's output names.
    fn outputs(&self) -> Vec<String> {
        self.program.outputs.iter().map(|&b| self.program.buffers[b].name.clone()).collect()
    }
}

impl Program {
    fn run_trials(
        &self,
        raw: &[Raw<'_>],
        noise_path: Option<PathBuf>,
        noise_toml: Option<String>,
        seed: u64,
        trials: usize,
    ) -> Result<Vec<Vec<Tensor>>> {
        let x = tensors(raw)?;
        let prepared = self.prepared()?;
        let Some(spec) = noise_spec(noise_path, noise_toml)? else {
            return Ok(vec![run_prepared(prepared, x)?]);
        };
        if trials == 0 || trials > 1_000_000 {
            return Err(Error::Usage("--trials must be between 1 and 1000000".into()));
        }
        let names: Vec<PathBuf> = (0..x.len()).map(input_name).collect();
        prepared.check_inputs(&x, &names)?;
        let runner = self.runner()?;
        let cfg = NoiseConfig::new(spec, seed);
        (0..trials as u64)
            .into_par_iter()
            .map(|trial| {
                if cfg.is_off() {
                    return run_prepared(prepared, x.clone());
                }
                let chip = NoisyChip::program(runner, &cfg, trial)?;
                run_noisy_chunks(runner, self.batch(), &x, &chip)
            })
            .collect()
    }

    fn eval_report(
        &self,
        raw: &Raw<'_>,
        labels: &[i64],
        noise_path: Option<PathBuf>,
        noise_toml: Option<String>,
        seed: u64,
        trials: usize,
    ) -> Result<serde_json::Value> {
        let start = std::time::Instant::now();
        let x = raw.tensor(0)?;
        let n = x.shape().first().copied().unwrap_or(0);
        check_labels(labels, n)?;
        if n == 0 {
            return Err(Error::Usage("no samples to evaluate".into()));
        }
        let prepared = self.prepared()?;
        prepared.check_inputs(std::slice::from_ref(&x), &[input_name(0)])?;
        if let Some(spec) = noise_spec(noise_path, noise_toml)? {
            if trials == 0 || trials > 1_000_000 {
                return Err(Error::Usage("--trials must be between 1 and 1000000".into()));
            }
            let sc = cimc::noise_eval::Scenario { label: "noise".into(), spec, x: 0.0 };
            let r = cimc::noise_eval::monte_carlo(
                self.runner()?,
                self.batch(),
                &x,
                labels,
                &[sc],
                trials,
                seed,
                &|_| {},
            )?;
            return Ok(serde_json::to_value(&r).expect("invariant: reports serialize"));
        }
        let outputs = prepared.run_all(std::slice::from_ref(&x), |_| {})?;
        let classes = outputs.first().and_then(|t| t.shape().get(1).copied()).unwrap_or(0);
        if let Some((i, &l)) =
            labels.iter().enumerate().find(|(_, &l)| l < 0 || l as u64 >= classes as u64)
        {
            return Err(Error::Npy {
                file: PathBuf::from("<labels>"),
                msg: format!("label {l} of sample {i} is not one of the model's {classes} classes"),
            });
        }
        let pred = cimc::model::predicted_classes(&outputs)?;
        let correct = count_correct(&pred, labels);
        let seconds = start.elapsed().as_secs_f64();
        Ok(serde_json::json!({
            "top1": top1_percent(correct, n),
            "samples": n,
            "correct": correct,
            "seconds": seconds,
        }))
    }
}

/// Reads a program file (`.cimp`).
#[pyfunction]
pub fn load_program(py: Python<'_>, path: PathBuf) -> PyResult<Program> {
    let p = detached(py, || cimc::compile::read_program(&path))?;
    Ok(Program::new(p, None))
}

/// Compiles `model` as `cimc compile` does: a `Program`, or with `emit="stream"` a `Stream`.
#[pyfunction]
#[pyo3(signature = (
    model, calib=None, wbits=8, abits=8, calib_method="minmax".to_string(),
    weight_method="minmax".to_string(), calib_samples=None, bits_toml=None, act_signed=false,
    target=None, target_toml=None, arrays=None, adc_range=None, adc_bits=None, array_rows=None,
    bn_calibrate=false, budget=None, bits_candidates="2,3,4,5,6,8".to_string(), cascade=None,
    emit="program".to_string(), schedule="auto".to_string()
))]
pub fn compile(
    py: Python<'_>,
    model: &Model,
    calib: Option<Vec<Bound<'_, PyAny>>>,
    wbits: u8,
    abits: u8,
    calib_method: String,
    weight_method: String,
    calib_samples: Option<usize>,
    bits_toml: Option<String>,
    act_signed: bool,
    target: Option<String>,
    target_toml: Option<String>,
    arrays: Option<usize>,
    adc_range: Option<String>,
    adc_bits: Option<u32>,
    array_rows: Option<usize>,
    bn_calibrate: bool,
    budget: Option<String>,
    bits_candidates: String,
    cascade: Option<u8>,
    emit: String,
    schedule: String,
) -> PyResult<Py<PyAny>> {
    let settings = QuantSettings {
        wbits,
        abits,
        calib_method,
        weight_method,
        calib_samples,
        act_signed,
        bn_calibrate,
        budget,
        bits_candidates,
        cascade,
        arrays,
        adc_range,
        adc_bits,
        array_rows,
        naming: Naming::Flag,
    };
    let q = QuantOptions {
        settings,
        bits: bits_toml.map(|t| (t, "bits".to_string())),
        target: match (target, target_toml) {
            (_, Some(t)) => Some(TargetSource::Toml(t)),
            (Some(n), None) => Some(TargetSource::Named(n)),
            (None, None) => None,
        },
    };
    let borrowed = calib.as_deref().map(borrow_all).transpose()?;
    let raw = borrowed.as_deref().map(raw).transpose()?;
    let out = detached(py, || compile_native(model, raw.as_deref(), &q, &emit, &schedule))?;
    match out {
        Compiled::Program(p) => Ok(Py::new(py, *p)?.into_any()),
        Compiled::Stream(s) => Ok(Py::new(py, *s)?.into_any()),
    }
}

enum Compiled {
    Program(Box<Program>),
    Stream(Box<crate::stream::Stream>),
}

/// `cimc compile`'s work (`compiler/src/cli/compile.rs`): the pipeline and `lower`, the report,
/// and the stream when asked for.
fn compile_native(
    model: &Model,
    calib: Option<&[Raw<'_>]>,
    q: &QuantOptions,
    emit: &str,
    schedule: &str,
) -> Result<Compiled> {
    use cimc_backends::stream::emit::{EmitOptions, ScheduleChoice};
    let schedule = match schedule {
        "auto" => ScheduleChoice::Auto,
        "pipelined" => ScheduleChoice::Pipelined,
        "layer-serial" => ScheduleChoice::LayerSerial,
        s => {
            return Err(Error::Usage(format!(
                "schedule '{s}': expected auto, pipelined or layer-serial"
            )))
        }
    };
    let stream = match emit {
        "program" => false,
        "stream" => true,
        e => return Err(Error::Usage(format!("emit '{e}': expected program or stream"))),
    };
    let target = q.target()?;
    if stream && target.is_none() {
        return Err(Error::Usage(
            "--emit stream needs --target: a stream is code for one chip".into(),
        ));
    }
    let mut graph = model.graph()?;
    let calib = calib.map(|c| c.iter().enumerate().map(|(k, r)| r.tensor(k)).collect());
    let calib = calib.transpose().map_err(|e: Error| match e {
        Error::Npy { msg, .. } => Error::Npy { file: PathBuf::from("<calib>"), msg },
        other => other,
    })?;
    let cx = q.context(&graph, calib)?;
    let (program, _) = cimc::compile::compile_in_place(&mut graph, &cx, &[])?;
    let mapping = target.as_ref().map(|t| {
        let tj = serde_json::to_value(t).expect("invariant: targets serialize");
        cimc::report::MappingReport::new(&graph, tj, t.chip.arrays)
    });
    let mut report = match &mapping {
        Some(r) => serde_json::to_value(r).expect("invariant: reports serialize"),
        None => serde_json::json!({}),
    };
    let mut passes = serde_json::json!(cx.reports());
    cimc::report::strip_wall_clock(&mut passes);
    report["passes"] = passes;
    report["bits"] = serde_json::json!(cimc::report::bits_toml(&graph));
    if let Some(r) = &mapping {
        report["table"] = serde_json::json!(r.table());
    }
    drop(graph);
    match (stream, target) {
        (true, Some(t)) => {
            let opts = EmitOptions { schedule, ..EmitOptions::default() };
            let s = cimc_backends::stream::emit::emit(&program, &t, &opts)?;
            Ok(Compiled::Stream(Box::new(crate::stream::Stream::new(s))))
        }
        _ => Ok(Compiled::Program(Box::new(Program::new(program, Some(report))))),
    }
}
