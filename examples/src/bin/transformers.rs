//! The accuracy, time and cost tables of `docs/transformers.md`: for the trained ViT on MNIST
//! and the causal sorting decoder (`tests/data/models/`, issue 20), the float model (`cimc
//! run`), the W8A8 program, the isaac crossbar program at every ADC resolution from 4 to 10 bits
//! and under the noise presets of `targets/noise/`; the time per image (per sequence and token
//! for the decoder) of the float run, the program and the crossbar program; and the cost
//! breakdown of one inference's isaac stream (crossbar / digital matrix / vector / movement).
//!
//! `cargo run --release -p cimc-examples --bin transformers -- [--limit N] [--trials N]
//!  [--models mnist_vit_ts17,sort_decoder_ts17] [--svg DIR] [--abits-sweep 8,6,5,4]`
//!
//! `--abits-sweep` prints only the accuracy of the programs at those activation widths
//! (per-tensor scales), beside `scripts/activation_granularity.py`'s per-token figures.
//!
//! The MNIST test set is all 10,000 images from `../shared/data` when it is there (the vendored
//! 500 otherwise); the decoder's is its 1,000 vendored sequences. Calibration: the 200 vendored
//! MNIST training images, the 200 vendored calibration sequences. Prints markdown; with `--svg
//! DIR` writes `transformers-adc.svg` (accuracy against ADC bits, one line per model).

use cimc_backends::noise::NoiseSpec;
use cimc_backends::program::Program;
use cimc_backends::stream::emit::{emit, EmitOptions};
use cimc_backends::target::Target;
use cimc_examples::{arg, load, repo_root};
use cimc_interp::{Runner, Tensor};
use cimc_ir::Graph;
use cimc_passes::tile::Chip;
use cimc_passes::{PassContext, Pipeline};
use cimc_sim::noise::{NoiseConfig, NoisyChip};
use cimc_sim::program::ProgramRunner;
use std::path::PathBuf;
use std::time::Instant;

const BATCH: usize = 100;
const ADC_BITS: [u32; 7] = [4, 5, 6, 7, 8, 9, 10];
/// The decoder's sequence length.
const SEQ: usize = 16;
const NOISE: [&str; 2] = ["variation", "all"];

/// One trained model with its test set.
struct Case {
    export: String,
    decoder: bool,
    x: Tensor,
    y: Vec<i64>,
    calib: Tensor,
    /// Samples in `x` (images or sequences).
    samples: usize,
}

impl Case {
    fn new(export: &str, limit: Option<usize>) -> Case {
        let sets = repo_root().join("tests/data/sets");
        let shared = repo_root().join("../shared/data");
        let decoder = export.starts_with("sort_decoder");
        let (x, y, calib) = if decoder {
            (sets.join("sort_test_x.npy"), sets.join("sort_test_y.npy"), "sort_calib_x.npy")
        } else if shared.join("mnist_test_x.npy").exists() {
            (
                shared.join("mnist_test_x.npy"),
                shared.join("mnist_test_y.npy"),
                "mnist_calib200_x.npy",
            )
        } else {
            eprintln!("../shared not found: using the vendored 500-image MNIST slice");
            (
                sets.join("mnist_test500_x.npy"),
                sets.join("mnist_test500_y.npy"),
                "mnist_calib200_x.npy",
            )
        };
        let x = load(&x);
        let mut y = cimc::npy::read(&y).expect("labels").to_i64_vec();
        let samples = limit.map_or(x.shape()[0], |l| l.min(x.shape()[0]));
        // Per sample: one label, or the decoder's 16 targets.
        y.truncate(samples * if decoder { SEQ } else { 1 });
        let x = cimc::tensor_util::slice_batch(&x, 0, samples, samples);
        let calib = load(&sets.join(calib));
        Case { export: export.to_string(), decoder, x, y, calib, samples }
    }

    fn import(&self, batch: usize) -> Graph {
        let path = repo_root().join("tests/data/models").join(format!("{}.onnx", self.export));
        let opts = if self.decoder {
            cimc::onnx::ImportOptions {
                input_shapes: vec![("tokens".to_string(), vec![batch, SEQ])],
                ..Default::default()
            }
        } else {
            cimc::onnx::ImportOptions { batch: Some(batch), ..Default::default() }
        };
        cimc::onnx::import_file(&path, &opts).expect("import")
    }

    /// Right and scored predictions of `logits` against `targets`: top-1 (ViT) or the tokens of
    /// the scored positions (decoder, targets ≥ 0).
    fn score(logits: &Tensor, targets: &[i64]) -> (usize, usize) {
        let v = *logits.shape().last().expect("invariant: logits have a class axis");
        let values = logits.to_f64_vec();
        let (mut right, mut scored) = (0usize, 0usize);
        for (row, &t) in values.chunks(v).zip(targets) {
            if t < 0 {
                continue;
            }
            scored += 1;
            let best = (0..v).fold(0, |b, k| if row[k] > row[b] { k } else { b });
            right += usize::from(best as i64 == t);
        }
        (right, scored)
    }

    /// Accuracy (percent) of `run` over the test set in batches of [`BATCH`] (the last one
    /// padded), and the seconds per sample; `run(inputs, index of the batch's first sample)`.
    fn eval(&self, run: &dyn Fn(Vec<Tensor>, u64) -> cimc::Result<Vec<Tensor>>) -> (f64, f64) {
        let per = if self.decoder { SEQ } else { 1 };
        let t = Instant::now();
        let (mut right, mut scored) = (0, 0);
        let mut start = 0;
        while start < self.samples {
            let len = BATCH.min(self.samples - start);
            let x = cimc::tensor_util::slice_batch(&self.x, start, len, BATCH);
            let out = run(vec![x], start as u64).expect("run").swap_remove(0);
            let (r, s) = Case::score(&out, &self.y[start * per..(start + len) * per]);
            right += r;
            scored += s;
            start += len;
        }
        let secs = t.elapsed().as_secs_f64() / self.samples as f64;
        (100.0 * right as f64 / scored.max(1) as f64, secs)
    }
}

/// One model's figures.
struct Row {
    export: String,
    decoder: bool,
    samples: usize,
    float: (f64, f64),
    w8a8: (f64, f64),
    /// Accuracy and seconds per sample at each of [`ADC_BITS`].
    adc: Vec<(f64, f64)>,
    /// Mean, min and max accuracy over the trials of each [`NOISE`] preset (8-bit ADCs).
    noise: Vec<(f64, f64, f64)>,
    cost: cimc_backends::stream::cost::CostReport,
}

/// The pass context of `case`: its calibration set, and `t`'s chip when given.
fn context(case: &Case, t: Option<&Target>) -> PassContext {
    PassContext {
        calib: Some(vec![case.calib.clone()]),
        chip: t.map(|t| Chip::from_target(t, None)),
        ..Default::default()
    }
}

/// The program of `q` (quantized) tiled for `t` with calibrated ADCs.
fn tiled(case: &Case, q: &Graph, t: &Target) -> Program {
    let cx = context(case, Some(t));
    let mut g = q.clone();
    Pipeline::from_names(&["tile", "adc-calibrate"])
        .expect("passes exist")
        .run(&mut g, &cx, &[], None)
        .expect("tile");
    cimc_backends::program::lower::lower(&g).expect("lower")
}

fn measure(case: &Case, trials: u64) -> Row {
    let name = &case.export;
    let g = case.import(BATCH);
    let r = Runner::new(&g).expect("runner");
    let float = case.eval(&|t, _| Ok(r.run(t)?));
    eprintln!("{name}: float {:.2} %", float.0);
    let cx = context(case, None);
    let mut q = g.clone();
    cimc::compile::run_pipeline(&mut q, &cx, &[], Some("quantize")).expect("quantize");
    let p = cimc_backends::program::lower::lower(&q).expect("lower");
    let pr = ProgramRunner::new(&p).expect("program runner");
    let w8a8 = case.eval(&|t, _| Ok(pr.run(t)?));
    eprintln!("{name}: W8A8 {:.2} %", w8a8.0);
    let base = cimc_examples::isaac_differential();
    let mut adc = Vec::new();
    for bits in ADC_BITS {
        let mut t = base.clone();
        t.chip.crossbar.adc_bits = bits;
        let p = tiled(case, &q, &t);
        let pr = ProgramRunner::new(&p).expect("program runner");
        let a = case.eval(&|t, _| Ok(pr.run(t)?));
        eprintln!("{name}: isaac, ADC {bits} bits: {:.2} %", a.0);
        adc.push(a);
    }
    let p = tiled(case, &q, &base);
    let pr = ProgramRunner::new(&p).expect("program runner");
    let mut noise = Vec::new();
    for preset in NOISE {
        let file = repo_root().join(format!("targets/noise/{preset}.toml"));
        let spec = NoiseSpec::load(&file).expect("a noise preset");
        let cfg = NoiseConfig::new(spec, 1);
        let accs: Vec<f64> = (0..trials)
            .map(|trial| {
                let chip = NoisyChip::program(&pr, &cfg, trial).expect("program the chip");
                case.eval(&|t, first| Ok(pr.run_noisy(t, &chip, first)?)).0
            })
            .collect();
        let mean = accs.iter().sum::<f64>() / accs.len().max(1) as f64;
        let min = accs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = accs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        eprintln!("{name}: isaac under {preset}: {mean:.2} % ({min:.2}..{max:.2})");
        noise.push((mean, min, max));
    }
    // One inference's stream (batch 1) for the cost breakdown.
    let cx1 = context(case, Some(&base));
    let p1 = cimc::compile::compile(case.import(1), &cx1, &[]).expect("compile at batch 1").0;
    let s = emit(&p1, &base, &EmitOptions::default()).expect("emit the isaac stream");
    let cost = cimc_backends::stream::cost::estimate(&s, &base).expect("cost");
    Row {
        export: name.clone(),
        decoder: case.decoder,
        samples: case.samples,
        float,
        w8a8,
        adc,
        noise,
        cost,
    }
}

/// Accuracy of the programs with per-tensor activation scales at each of `bits` (8-bit weights),
/// beside `scripts/activation_granularity.py`'s per-token figures.
fn abits_sweep(case: &Case, bits: &[u8]) {
    let g = case.import(BATCH);
    for &b in bits {
        let mut cx = context(case, None);
        cx.config.abits = b;
        let p = cimc::compile::compile(g.clone(), &cx, &[]).expect("compile").0;
        let pr = ProgramRunner::new(&p).expect("program runner");
        let (acc, _) = case.eval(&|t, _| Ok(pr.run(t)?));
        println!("| `{}` | {b} | {acc:.2} |", case.export);
    }
}

fn ms(secs: f64) -> String {
    format!("{:.3}", secs * 1e3)
}

fn print(rows: &[Row], trials: u64) {
    println!("\n### Accuracy (%)\n");
    print!("| model | samples | float | W8A8 program |");
    for b in ADC_BITS {
        print!(" isaac ADC {b} |");
    }
    for n in NOISE {
        print!(" isaac + `{n}.toml` ({trials} trials: mean, min–max) |");
    }
    println!();
    println!("|---|---|---|---|{}{}", "---|".repeat(ADC_BITS.len()), "---|".repeat(NOISE.len()));
    for r in rows {
        print!("| `{}` | {} | {:.2} | {:.2} |", r.export, r.samples, r.float.0, r.w8a8.0);
        for a in &r.adc {
            print!(" {:.2} |", a.0);
        }
        for (mean, min, max) in &r.noise {
            print!(" {mean:.2} ({min:.2}–{max:.2}) |");
        }
        println!();
    }
    println!("\n### Time per sample (ms; wall time of this machine, batches of {BATCH})\n");
    println!("| model | per | float run | W8A8 program | isaac crossbar program (8-bit ADC) |");
    println!("|---|---|---|---|---|");
    for r in rows {
        let isaac = r.adc[ADC_BITS.iter().position(|&b| b == 8).unwrap_or(0)].1;
        let per = if r.decoder { "sequence" } else { "image" };
        println!(
            "| `{}` | {per} | {} | {} | {} |",
            r.export,
            ms(r.float.1),
            ms(r.w8a8.1),
            ms(isaac)
        );
        if r.decoder {
            let t = |s: f64| ms(s / SEQ as f64);
            println!(
                "| `{}` | token | {} | {} | {} |",
                r.export,
                t(r.float.1),
                t(r.w8a8.1),
                t(isaac)
            );
        }
    }
    println!("\n### Cost of one inference on `isaac` (`cimc sim --report`)\n");
    println!(
        "| model | energy (µJ) | latency (µs) | crossbar | digital matrix | vector | movement | \
         busy cycles: crossbar / digital matrix / vector | outside the arrays, of the compute energy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let t = &r.cost.totals;
        let b = &t.breakdown;
        let part = |w: &cimc_backends::stream::cost::Work| {
            format!("{:.3} µJ ({:.1} %)", w.energy_pj * 1e-6, 100.0 * w.energy_share)
        };
        let compute = b.crossbar.energy_pj + b.digital_matrix.energy_pj + b.vector.energy_pj;
        let outside = (b.digital_matrix.energy_pj + b.vector.energy_pj) / compute.max(1e-30);
        println!(
            "| `{}` | {:.3} | {:.2} | {} | {} | {} | {} | {:.0} / {:.0} / {:.0} | {:.1} % |",
            r.export,
            t.energy_pj * 1e-6,
            t.latency_ns * 1e-3,
            part(&b.crossbar),
            part(&b.digital_matrix),
            part(&b.vector),
            part(&b.movement),
            b.crossbar.busy_cycles,
            b.digital_matrix.busy_cycles,
            b.vector.busy_cycles,
            100.0 * outside
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit: Option<usize> = arg(&args, "--limit");
    let trials: u64 = arg(&args, "--trials").unwrap_or(3);
    let svg_dir: Option<PathBuf> = arg(&args, "--svg");
    let models: String =
        arg(&args, "--models").unwrap_or_else(|| "mnist_vit_ts17,sort_decoder_ts17".to_string());
    if let Some(bits) = arg::<String>(&args, "--abits-sweep") {
        let bits: Vec<u8> = bits.split(',').map(|b| b.parse().expect("bit widths")).collect();
        println!("| model | activation bits | W8 program, per-tensor activations |\n|---|---|---|");
        for m in models.split(',') {
            abits_sweep(&Case::new(m, limit), &bits);
        }
        return;
    }
    let rows: Vec<Row> = models.split(',').map(|m| measure(&Case::new(m, limit), trials)).collect();
    print(&rows, trials);
    if let Some(dir) = svg_dir {
        let xs: Vec<f64> = ADC_BITS.iter().map(|&b| b as f64).collect();
        let mut series = Vec::new();
        for r in &rows {
            series.push((format!("{} isaac", r.export), r.adc.iter().map(|a| Some(a.0)).collect()));
            series.push((format!("{} W8A8", r.export), vec![Some(r.w8a8.0); xs.len()]));
        }
        let svg = cimc::svg::lines(
            "Transformers on isaac: accuracy vs ADC bits",
            "ADC bits",
            "accuracy %",
            &xs,
            &series,
            (0.0, 100.0),
        );
        let f = dir.join("transformers-adc.svg");
        std::fs::write(&f, svg).expect("write svg");
        eprintln!("wrote {}", f.display());
    }
}
