//! The corpus of real exports (`tests/data/corpus/`): its manifest, and what cimc does with each
//! model — import and float run against the reference outputs, `compile` W8A8 calibrated on the
//! seeded input and the program's agreement with the float model, and the same on the isaac
//! crossbar target. Shared by `tests/tests/corpus.rs` (which holds every vendored model to its
//! expected outcome) and the `model_coverage` example (which tabulates the whole corpus in
//! `docs/model-coverage.md`).
//!
//! The float metric: per output, `max |cimc − reference| / max |reference|` (the absolute
//! error where the reference is all zeros), the largest over the outputs; a model matches when
//! it is at most [`FLOAT_TOLERANCE`].

use cimc::model::{Model, Prepared};
use cimc::onnx::ImportOptions;
use cimc_interp::Tensor;
use cimc_passes::PassContext;
use serde::Deserialize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Largest relative error (the metric above) at which a float run matches the reference.
pub const FLOAT_TOLERANCE: f64 = 1e-4;

/// The manifest, `tests/data/corpus/corpus.toml` (its header documents every key).
#[derive(Deserialize)]
pub struct Manifest {
    pub model: Vec<Entry>,
}

/// One model of the manifest.
#[derive(Deserialize, Clone)]
pub struct Entry {
    pub id: String,
    pub exporter: String,
    pub kind: String,
    pub producer: String,
    pub opset: i64,
    #[serde(default)]
    pub domains: Vec<String>,
    pub repo: String,
    pub path: String,
    pub commit: String,
    pub license: String,
    pub bytes: u64,
    pub sha256: String,
    pub vendored: bool,
    #[serde(default)]
    pub slow: bool,
    #[serde(default)]
    pub reference: Option<String>,
    pub expect_import: Option<String>,
    pub expect_compile: Option<String>,
    pub expect_crossbar: Option<String>,
}

impl Manifest {
    /// Reads the manifest (panics with the file's problem: it is test data).
    pub fn load(path: &Path) -> Manifest {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("corpus manifest {}: {e}", path.display()));
        toml::from_str(&text).unwrap_or_else(|e| panic!("corpus manifest {}: {e}", path.display()))
    }
}

/// Where one model's files are: `<dir>/models/<id>.onnx` and `<dir>/ref/<id>/`.
pub struct Files {
    pub model: PathBuf,
    pub refs: PathBuf,
}

/// The files of `e`: in `vendored_dir` (tests/data/corpus) when vendored, else in `extra`;
/// `None` when the model or its seeded inputs are not present.
pub fn locate(e: &Entry, vendored_dir: &Path, extra: Option<&Path>) -> Option<Files> {
    let dir = if e.vendored { vendored_dir } else { extra? };
    let f = Files {
        model: dir.join("models").join(format!("{}.onnx", e.id)),
        refs: dir.join("ref").join(&e.id),
    };
    (f.model.is_file() && f.refs.join("index.json").is_file()).then_some(f)
}

/// What the corpus tests ask of a model (the test leaves out the long stages of slow models).
#[derive(Clone, Copy)]
pub struct Stages {
    pub compile: bool,
    pub crossbar: bool,
}

/// How a program's outputs agree with the float outputs.
#[derive(Clone, Copy, Debug)]
pub struct Agreement {
    /// For `[N, C]` outputs with `C ≥ 2`: samples whose argmax agrees, of N.
    pub top1: Option<(usize, usize)>,
    /// The float metric of the module doc, program against float.
    pub rel: f64,
}

/// What happened to one model; each stage is `None` when it was not reached or not asked for.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// "matches", "differs", "runs", "refused: ...", "internal: ...", "panic: ...".
    pub import: String,
    /// The float metric against the reference, when there is one and the model ran.
    pub float_rel: Option<f64>,
    /// "ok", "refused: ...", "internal: ...", "panic: ...".
    pub compile: Option<String>,
    pub compile_agreement: Option<Agreement>,
    pub crossbar: Option<String>,
    pub crossbar_agreement: Option<Agreement>,
    pub seconds: f64,
}

/// Whether an actual outcome is the expected one: equal, or for "refused: X" / "internal: X" /
/// "panic: X" / "differs: X", the same kind with X a substring of the actual message. A stage not reached
/// matches only a missing expectation.
pub fn matches_expected(actual: Option<&str>, expected: Option<&str>) -> bool {
    match (actual, expected) {
        (None, None) => true,
        (Some(a), Some(e)) => {
            a == e
                || ["refused: ", "internal: ", "panic: ", "differs: "].iter().any(|k| {
                    e.strip_prefix(k).zip(a.strip_prefix(k)).is_some_and(|(e, a)| a.contains(e))
                })
        }
        _ => false,
    }
}

/// The seeded inputs and reference outputs of a model (`ref/<id>/index.json`).
pub struct Refs {
    pub inputs: Vec<(String, Tensor)>,
    pub outputs: Option<Vec<Tensor>>,
    pub engine: String,
}

impl Refs {
    pub fn load(dir: &Path) -> Result<Refs, String> {
        let index = dir.join("index.json");
        let text =
            std::fs::read_to_string(&index).map_err(|e| format!("{}: {e}", index.display()))?;
        let j: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
        let read = |item: &serde_json::Value| -> Result<Tensor, String> {
            let p = dir.join(item["file"].as_str().unwrap_or_default());
            let d = cimc::npy::read(&p).map_err(|e| e.to_string())?;
            Tensor::from_data(&d).map_err(|e| format!("{}: {e}", p.display()))
        };
        let list = |key: &str| j[key].as_array().cloned().unwrap_or_default();
        let inputs = list("inputs")
            .iter()
            .map(|i| Ok((i["name"].as_str().unwrap_or_default().to_string(), read(i)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let outs = list("outputs");
        let outputs = if outs.is_empty() {
            None
        } else {
            Some(outs.iter().map(read).collect::<Result<Vec<_>, String>>()?)
        };
        Ok(Refs { inputs, outputs, engine: j["reference"].as_str().unwrap_or_default().into() })
    }

    fn tensors(&self) -> Vec<Tensor> {
        self.inputs.iter().map(|(_, t)| t.clone()).collect()
    }
}

/// The float metric of the module doc over two lists of outputs; an error for a different
/// count or shape.
pub fn relative_error(got: &[Tensor], want: &[Tensor]) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("{} output(s), the reference has {}", got.len(), want.len()));
    }
    let mut worst = 0f64;
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let count = |t: &Tensor| t.shape().iter().product::<usize>();
        if g.shape() != w.shape() && count(g) != count(w) {
            return Err(format!(
                "output {k}: shape {:?}, the reference's {:?}",
                g.shape(),
                w.shape()
            ));
        }
        let (g, w) = (g.to_data().to_f64_vec(), w.to_data().to_f64_vec());
        let mut abs = 0f64;
        let mut scale = 0f64;
        for (a, b) in g.iter().zip(&w) {
            if a.is_nan() && b.is_nan() {
                continue;
            }
            let d = (a - b).abs();
            abs = abs.max(if d.is_nan() { f64::INFINITY } else { d });
            scale = scale.max(b.abs());
        }
        worst = worst.max(if scale > 0.0 { abs / scale } else { abs });
    }
    Ok(worst)
}

/// Agreement of a program's outputs with the float outputs.
fn agreement(got: &[Tensor], float: &[Tensor]) -> Result<Agreement, String> {
    let rel = relative_error(got, float)?;
    let top1 = match (got.first(), float.first()) {
        (Some(g), Some(f)) if f.shape().len() == 2 && f.shape()[1] >= 2 => {
            match (g.argmax_rows(), f.argmax_rows()) {
                (Some(a), Some(b)) => {
                    Some((a.iter().zip(&b).filter(|(x, y)| x == y).count(), b.len()))
                }
                _ => None,
            }
        }
        _ => None,
    };
    Ok(Agreement { top1, rel })
}

/// A failure's outcome text: "refused: ..." (exit 1), "internal: ..." (exit 2).
fn failure(e: &cimc::Error) -> String {
    failure_in("", e)
}

/// [`failure`], the message after `stage` (e.g. "run: ").
fn failure_in(stage: &str, e: &cimc::Error) -> String {
    let msg = e.to_string().replace('\n', " ");
    let kind = if e.exit_code() == 2 { "internal" } else { "refused" };
    format!("{kind}: {stage}{msg}")
}

/// Runs `f`, turning a panic into "panic: <message>" (a panic is a bug, reported like one).
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(no message)".into());
        Err(format!("panic: {msg}"))
    })
}

/// Everything this module checks, on one model. Messages name the model by its file name
/// (`<id>.onnx`), not by where it happens to be.
pub fn evaluate(files: &Files, stages: Stages) -> Outcome {
    let mut out = evaluate_at(files, stages);
    let full = files.model.display().to_string();
    let name = files.model.file_name().map_or(full.clone(), |n| n.to_string_lossy().into_owned());
    let local = |s: &mut String| *s = s.replace(&full, &name);
    local(&mut out.import);
    out.compile.iter_mut().chain(out.crossbar.iter_mut()).for_each(local);
    out
}

fn evaluate_at(files: &Files, stages: Stages) -> Outcome {
    let start = Instant::now();
    let mut out = Outcome::default();
    let refs = match Refs::load(&files.refs) {
        Ok(r) => r,
        Err(e) => {
            out.import = format!("refused: (test data) {e}");
            return out;
        }
    };
    let opts = ImportOptions {
        input_shapes: refs.inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect(),
        ..ImportOptions::default()
    };
    let model = match Model::open(&files.model, opts) {
        Ok(m) => m,
        Err(e) => {
            out.import = failure(&e);
            return out;
        }
    };
    let float = guarded(|| {
        let g = model.graph().map_err(|e| failure(&e))?;
        let p = Prepared::from_graph(&g).map_err(|e| failure(&e))?;
        p.exe.run(refs.tensors()).map_err(|e| failure(&e))
    });
    let float = match float {
        Ok(f) => f,
        Err(e) => {
            out.import = e;
            out.seconds = start.elapsed().as_secs_f64();
            return out;
        }
    };
    out.import = match &refs.outputs {
        None => "runs".into(),
        Some(want) => match relative_error(&float, want) {
            Ok(rel) => {
                out.float_rel = Some(rel);
                if rel <= FLOAT_TOLERANCE { "matches" } else { "differs" }.into()
            }
            Err(e) => format!("differs: {e}"),
        },
    };
    // The program is compared with the reference where there is one, else with cimc's float run.
    let float_ref = refs.outputs.as_deref().unwrap_or(&float);
    if stages.compile {
        let (r, a) = compile_and_run(&model, &refs, float_ref, None);
        (out.compile, out.compile_agreement) = (Some(r), a);
    }
    if stages.crossbar && out.compile.as_deref() == Some("ok") {
        let (r, a) = compile_and_run(&model, &refs, float_ref, Some("isaac"));
        (out.crossbar, out.crossbar_agreement) = (Some(r), a);
    }
    out.seconds = start.elapsed().as_secs_f64();
    out
}

/// `cimc compile` W8A8 with `--calib` the seeded input (and `--target`), then the program run on
/// that input: "ok" and the agreement, or the failure.
fn compile_and_run(
    model: &Model,
    refs: &Refs,
    float: &[Tensor],
    target: Option<&str>,
) -> (String, Option<Agreement>) {
    let r = guarded(|| {
        let graph = model.graph().map_err(|e| failure(&e))?;
        let mut cx = PassContext { calib: Some(refs.tensors()), ..PassContext::default() };
        if let Some(t) = target {
            let t = cimc_backends::target::Target::resolve(t).map_err(|e| e.to_string())?;
            cx.chip = Some(cimc_passes::tile::Chip::from_target(&t, None));
        }
        let (program, _) = cimc::compile::compile(graph, &cx, &[]).map_err(|e| failure(&e))?;
        let p = Prepared::from_program(&program).map_err(|e| failure(&e))?;
        let got = p.exe.run(refs.tensors()).map_err(|e| failure_in("run: ", &e))?;
        agreement(&got, float).map_err(|e| format!("refused: program output: {e}"))
    });
    match r {
        Ok(a) => ("ok".into(), Some(a)),
        Err(e) => (e, None),
    }
}
