//! One point's work, with the library functions `cimc compile` and `cimc eval` use: the pass
//! pipeline and `lower` (`crate::compile`), the stream emitter and its cost model (as
//! `cimc compile --emit stream` and `cimc sim --report`), and the exact or Monte Carlo top-1
//! of `crate::noise_eval` (as `cimc eval`, with or without `--noise`).

use super::spec::{noise_spec, resolve_target};
use crate::compile::compile_in_place;
use crate::error::{Error, Result};
use crate::model::{match_inputs, read_arrays, Model};
use crate::noise_eval::{exact_top1, parse_duration, stats, trials_top1};
use crate::onnx::ImportOptions;
use crate::quant_settings::{input_decls, Naming, QuantSettings};
use crate::tensor_util::slice_batch;
use cimc_backends::program::Program;
use cimc_backends::stream::cost;
use cimc_backends::stream::emit::{emit, EmitOptions, ScheduleChoice};
use cimc_backends::target::Target;
use cimc_interp::Tensor;
use cimc_sim::noise::{NoiseConfig, NoisyChip};
use cimc_sim::program::ProgramRunner;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// The evaluation set every point of a sweep shares: the inputs (cut to `limit`), and the
/// labels, or for a model without labels the float model's outputs the error is measured
/// against.
pub struct Dataset {
    pub x: Tensor,
    pub labels: Option<Vec<i64>>,
    pub reference: Option<Tensor>,
}

impl Dataset {
    /// Reads the data of a configuration (paths relative to `dir`).
    pub fn load(config: &Value, dir: &Path) -> Result<Dataset> {
        let data = dir.join(config["data"].as_str().unwrap_or_default());
        let xd = crate::npy::read(&data)?;
        let n_all = xd.shape().first().copied().unwrap_or(0);
        let n = config["limit"].as_u64().map_or(n_all, |l| (l as usize).min(n_all));
        if n == 0 {
            return Err(Error::Usage(format!("{}: no samples to evaluate", data.display())));
        }
        let x = Tensor::from_data(&xd)
            .map_err(|e| Error::Npy { file: data.clone(), msg: e.to_string() })?;
        let x = slice_batch(&x, 0, n, n);
        let labels = match config["labels"].as_str() {
            None => None,
            Some(l) => {
                let file = dir.join(l);
                let yd = crate::npy::read(&file)?;
                if !yd.dtype().is_int() || yd.shape().len() != 1 || yd.shape()[0] < n {
                    return Err(Error::Npy {
                        file,
                        msg: format!(
                            "labels must be a 1-D integer array of at least {n} labels, got {}{:?}",
                            yd.dtype(),
                            yd.shape()
                        ),
                    });
                }
                Some(yd.to_i64_vec()[..n].to_vec())
            }
        };
        let reference = match labels {
            Some(_) => None,
            None => {
                let model = dir.join(config["model"].as_str().unwrap_or_default());
                let m = Model::open(&model, ImportOptions::default())?;
                let batch = config["batch"].as_u64().unwrap_or(1) as usize;
                let out = m.prepare(batch)?.run_all(std::slice::from_ref(&x), |_| {})?;
                Some(out.into_iter().next().ok_or_else(|| {
                    Error::Usage(format!("{}: the model has no output", model.display()))
                })?)
            }
        };
        Ok(Dataset { x, labels, reference })
    }
}

/// A compiled point: the program, and its cost per inference when it has a target.
pub struct Compiled {
    pub program: Program,
    pub cost: Option<Map<String, Value>>,
    /// Compilations made (two when the evaluation batch is not 1: the cost is a batch-1
    /// stream's).
    pub compilations: usize,
}

/// The target of a configuration, with the compile options that override it (`adc_range`,
/// `adc_bits`, `array_rows`, as `cimc compile`'s flags do).
fn target_of(config: &Value, dir: &Path) -> Result<Option<Target>> {
    if config["target"].is_null() {
        return Ok(None);
    }
    let mut t = resolve_target(&config["target"], dir)?;
    settings(config)?.apply_target_overrides(&mut t, "the sweep's compile options")?;
    Ok(Some(t))
}

/// The settings of a configuration's `[compile]` table (keys named as `cimc compile`'s flags,
/// with underscores), checked by the library as the CLI's flags are.
fn settings(config: &Value) -> Result<QuantSettings> {
    let o = &config["compile"];
    let d = QuantSettings::default();
    let string = |key: &str, default: String| o[key].as_str().map_or(default, str::to_string);
    // A width above 255 is refused by `check_bits` as 255.
    let width = |key: &str| o[key].as_u64().map(|b| u8::try_from(b).unwrap_or(u8::MAX));
    Ok(QuantSettings {
        wbits: width("wbits").unwrap_or(d.wbits),
        abits: width("abits").unwrap_or(d.abits),
        calib_method: string("calib_method", d.calib_method),
        weight_method: string("weight_method", d.weight_method),
        calib_samples: o["calib_samples"].as_u64().map(|n| n as usize),
        act_signed: o["act_signed"].as_bool().unwrap_or(false),
        bn_calibrate: o["bn_calibrate"].as_bool().unwrap_or(false),
        budget: o["budget"].as_str().map(str::to_string),
        bits_candidates: string("bits_candidates", d.bits_candidates),
        cascade: width("cascade"),
        arrays: o["arrays"].as_u64().map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        adc_range: o["adc_range"].as_str().map(str::to_string),
        adc_bits: o["adc_bits"].as_u64().map(|b| u32::try_from(b).unwrap_or(u32::MAX)),
        array_rows: o["array_rows"].as_u64().map(|r| r as usize),
        naming: Naming::Key,
    })
}

/// The calibration arrays of the configuration for `graph`'s inputs (as `--calib`), and the
/// file they came from.
fn calibration(
    config: &Value,
    dir: &Path,
    graph: &cimc_ir::Graph,
) -> Result<Option<(Vec<Tensor>, PathBuf)>> {
    let Some(c) = config["calib"].as_str() else { return Ok(None) };
    let files = [dir.join(c)];
    let calib = match_inputs(read_arrays(&files)?, &files, &input_decls(graph))?;
    let [file] = files;
    Ok(Some((calib, file)))
}

/// The program of a configuration at `batch` samples per run.
fn program_at(
    config: &Value,
    dir: &Path,
    target: Option<&Target>,
    batch: usize,
) -> Result<Program> {
    let model = dir.join(config["model"].as_str().unwrap_or_default());
    let opts = ImportOptions { batch: Some(batch), ..ImportOptions::default() };
    let mut graph = Model::open(&model, opts)?.graph()?;
    let settings = settings(config)?;
    let cx = match calibration(config, dir, &graph)? {
        Some((calib, file)) => settings.context(&graph, target, None, Some((calib, &file)))?,
        None => settings.context(&graph, target, None, None)?,
    };
    Ok(compile_in_place(&mut graph, &cx, &[])?.0)
}

/// Compiles a configuration: the program at the evaluation batch, and with a target the cost
/// of one inference from the stream of the program at batch 1 (the emitter and cost model of
/// `cimc compile --emit stream` and `cimc sim --report`).
pub fn compile(config: &Value, dir: &Path) -> Result<Compiled> {
    let target = target_of(config, dir)?;
    let batch = config["batch"].as_u64().unwrap_or(1).max(1) as usize;
    let program = program_at(config, dir, target.as_ref(), batch)?;
    let mut compilations = 1;
    let cost = match &target {
        None => None,
        Some(t) => {
            let single;
            let p = if batch == 1 {
                &program
            } else {
                single = program_at(config, dir, Some(t), 1)?;
                compilations += 1;
                &single
            };
            let schedule = match config["compile"]["schedule"].as_str().unwrap_or("auto") {
                "auto" => ScheduleChoice::Auto,
                "pipelined" => ScheduleChoice::Pipelined,
                "layer-serial" => ScheduleChoice::LayerSerial,
                other => {
                    return Err(Error::Usage(format!(
                        "schedule '{other}': expected auto, pipelined or layer-serial"
                    )))
                }
            };
            let stream = emit(p, t, &EmitOptions { schedule, ..EmitOptions::default() })?;
            let r = cost::estimate(&stream, t)?;
            let mut m = Map::new();
            m.insert("energy_pj".into(), json!(r.totals.energy_pj));
            m.insert("latency_ns".into(), json!(r.totals.latency_ns));
            m.insert("interval_ns".into(), json!(r.totals.interval_ns));
            m.insert("arrays".into(), json!(r.utilization.used_arrays));
            m.insert("schedule".into(), json!(r.schedule));
            Some(m)
        }
    };
    Ok(Compiled { program, cost, compilations })
}

/// The noise of a configuration's evaluation settings (`None`: the exact program).
fn noise_config(config: &Value) -> Result<Option<NoiseConfig>> {
    let e = &config["eval"];
    if e["noise"].is_null() && e["drift_time"].is_null() {
        return Ok(None);
    }
    let mut spec = noise_spec(&e["noise"], "the sweep's [noise]").map_err(Error::Usage)?;
    if let Some(t) = e["drift_time"].as_str() {
        spec.drift_time_s = parse_duration(t)?;
    }
    let cfg = NoiseConfig::new(spec, e["seed"].as_u64().unwrap_or(0));
    Ok(Some(cfg).filter(|c| !c.is_off()))
}

/// The accuracy of a compiled configuration on the data set: `top1` (%, the mean over the
/// trials; each trial's in `top1_trials` when there are several), or without labels
/// `output_error` (the first output's RMS error relative to the float model's RMS).
pub fn evaluate(
    runner: &ProgramRunner,
    p: &Program,
    config: &Value,
    d: &Dataset,
) -> Result<Map<String, Value>> {
    let batch =
        p.inputs.first().and_then(|&b| p.buffers[b].shape.first().copied()).unwrap_or(1).max(1);
    let trials = config["eval"]["trials"].as_u64().unwrap_or(1).max(1) as usize;
    let noise = noise_config(config)?;
    let mut m = Map::new();
    let n = d.x.shape()[0];
    m.insert("samples".into(), json!(n));
    let per_trial: Vec<f64> = match (&d.labels, &noise) {
        (Some(l), None) => vec![exact_top1(runner, batch, &d.x, l, &|_| {})?],
        (Some(l), Some(cfg)) => trials_top1(runner, batch, &d.x, l, cfg, trials, &|_| {})?,
        (None, _) => {
            let reference = d.reference.as_ref().ok_or_else(|| {
                Error::Internal("a data set without labels has no reference outputs".into())
            })?;
            let t = if noise.is_some() { trials } else { 1 };
            (0..t as u64)
                .map(|trial| output_error(runner, batch, &d.x, reference, noise.as_ref(), trial))
                .collect::<Result<_>>()?
        }
    };
    let key = if d.labels.is_some() { "top1" } else { "output_error" };
    let (mean, ..) = stats(&per_trial);
    m.insert(key.into(), json!(mean));
    if per_trial.len() > 1 {
        m.insert(format!("{key}_trials"), json!(per_trial));
    }
    Ok(m)
}

/// The first output's RMS error against `reference`, relative to the reference's RMS, over
/// `x` in batches (the last zero-padded and trimmed), on the exact program or one programming
/// of the chip under `noise` (trial `trial`).
fn output_error(
    runner: &ProgramRunner,
    batch: usize,
    x: &Tensor,
    reference: &Tensor,
    noise: Option<&NoiseConfig>,
    trial: u64,
) -> Result<f64> {
    let chip = match noise {
        Some(cfg) => Some(NoisyChip::program(runner, cfg, trial)?),
        None => None,
    };
    let n = x.shape()[0];
    let r = reference
        .as_f32()
        .ok_or_else(|| Error::Usage("the output error needs an f32 first output".into()))?;
    let per_sample = r.len() / n.max(1);
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    let mut start = 0;
    while start < n {
        let len = batch.min(n - start);
        let inputs = vec![slice_batch(x, start, len, batch)];
        let out = match &chip {
            Some(c) => runner.run_noisy(inputs, c, start as u64)?,
            None => runner.run(inputs)?,
        };
        let y = out
            .first()
            .and_then(Tensor::as_f32)
            .ok_or_else(|| Error::Usage("the output error needs an f32 first output".into()))?;
        let got = y.iter().take(len * per_sample);
        let want = r.iter().skip(start * per_sample).take(len * per_sample);
        for (a, b) in got.zip(want) {
            err += (f64::from(*a) - f64::from(*b)).powi(2);
            norm += f64::from(*b).powi(2);
        }
        start += len;
    }
    Ok(if norm > 0.0 { (err / norm).sqrt() } else { err.sqrt() })
}
