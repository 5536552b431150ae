//! Instruction-stream figures (issue 5): the time to compile `resnet18_bn.onnx` to a stream end
//! to end (import, passes with a one-image calibration, lowering, emission, the file written),
//! the simulator's time per image next to the interpreter program's on the same stream and
//! program, and the cost model's estimate for every model × preset (latency, energy, TOPS/W,
//! array utilization), for `docs/cost-model.md` and `docs/benchmarks.md`.
//!
//! Times are the minimum (and median) of `--reps` runs after a warm-up; the ratio is of minima.
//!
//! `cargo run --release -p cimc-examples --bin stream_bench -- [--shared DIR] [--reps N]
//!  [--json] [--cost-only]`: `--cost-only` skips the timings and prints the cost model's table
//! of `docs/cost-model.md` ("Measured on the shared models") as Markdown.

use cimc::onnx::{self, ImportOptions};
use cimc_backends::program::Program;
use cimc_backends::stream::emit::{emit, EmitOptions};
use cimc_backends::stream::{cost, Stream};
use cimc_backends::target::{AdcRange, Target};
use cimc_examples::{arg, time_ms};
use cimc_interp::Tensor;
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use cimc_sim::program::ProgramRunner;
use cimc_sim::stream::StreamRunner;
use std::path::{Path, PathBuf};

fn compile(model: &Path, calib: &Tensor, t: &Target) -> Program {
    let g = onnx::import_file(model, &ImportOptions { batch: Some(1), ..Default::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    let cx = PassContext {
        calib: Some(vec![calib.clone()]),
        chip: Some(Chip::from_target(t, None)),
        ..Default::default()
    };
    cimc::compile::compile(g, &cx, &[]).unwrap_or_else(|e| panic!("{e}")).0
}

fn load(p: &Path) -> Tensor {
    Tensor::from_data(&cimc::npy::read(p).unwrap_or_else(|e| panic!("{e}"))).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared: PathBuf = arg(&args, "--shared").unwrap_or_else(|| root.join("../shared"));
    let reps: usize = arg(&args, "--reps").unwrap_or(3);
    let json = args.iter().any(|a| a == "--json");
    let cost_only = args.iter().any(|a| a == "--cost-only");
    if !shared.join("models/resnet18_bn.onnx").exists() {
        eprintln!(
            "skipped: {} has no models/resnet18_bn.onnx (pass --shared DIR)",
            shared.display()
        );
        return;
    }
    let img = load(&shared.join("data/imagenet_random_x.npy"));
    let x0 = cimc::tensor_util::slice_batch(&img, 0, 1, 1);
    let x1 = cimc::tensor_util::slice_batch(&img, 1, 1, 1);
    let mut out = serde_json::Map::new();
    if cost_only {
        cost_table(&shared);
        return;
    }

    // 1. Compile ResNet-18 to a stream, end to end, as `cimc compile --emit stream` does.
    let r18 = shared.join("models/resnet18_bn.onnx");
    let calib_file = std::env::temp_dir().join("cimc_stream_bench_calib.npy");
    cimc::npy::write(&calib_file, &x0.to_data()).unwrap();
    let cims = std::env::temp_dir().join("cimc_stream_bench.cims");
    let mut compile_rows = Vec::new();
    for (label, range) in
        [("worst-case ADC steps", AdcRange::Worst), ("calibrated ADC steps", AdcRange::Calib)]
    {
        let mut t = Target::preset("isaac").unwrap();
        t.chip.adc_range = range;
        let (ms, med) = time_ms(reps, || {
            let calib = load(&calib_file);
            let p = compile(&r18, &calib, &t);
            let s = emit(&p, &t, &EmitOptions::default()).unwrap();
            std::fs::write(&cims, s.to_bytes()).unwrap();
        });
        compile_rows.push(serde_json::json!({"adc": label, "min_ms": ms, "median_ms": med}));
        if !json {
            println!("compile resnet18_bn.onnx → stream (isaac, {label}): min {ms:.0} ms, median {med:.0} ms");
        }
    }
    out.insert("compile_resnet18_to_stream".into(), serde_json::json!(compile_rows));

    // 2. Simulator against the interpreter program, per image, batch 1, per preset.
    let mut sim_rows = Vec::new();
    let mut cost_rows = Vec::new();
    for (model, data) in MODELS {
        let x = load(&shared.join(data));
        let (c, input) = (
            cimc::tensor_util::slice_batch(&x, 0, 1, 1),
            cimc::tensor_util::slice_batch(&x, 1, 1, 1),
        );
        for name in Target::PRESETS {
            let t = Target::preset(name).unwrap();
            let p = compile(&shared.join(format!("models/{model}.onnx")), &c, &t);
            let s: Stream = emit(&p, &t, &EmitOptions::default()).unwrap();
            let report = cost::estimate(&s, &t).unwrap_or_else(|e| panic!("{model}/{name}: {e}"));
            let rj = serde_json::to_value(&report).unwrap();
            cost_rows.push(
                serde_json::json!({"model": model, "target": name, "schedule": s.schedule.name(),
                "instructions": s.instructions(), "cores": s.cores.len(), "report": rj}),
            );
            if model == "resnet18_bn" || model == "mobilenet_v2_bn" || model == "mnist_resnet" {
                let prog = ProgramRunner::new(&p).unwrap();
                let sim = StreamRunner::new(&s).unwrap();
                let (pm, pmed) = time_ms(reps, || {
                    prog.run(vec![input.clone()]).unwrap();
                });
                let (sm, smed) = time_ms(reps, || {
                    sim.run(vec![input.clone()]).unwrap();
                });
                let same = prog.run(vec![input.clone()]).unwrap()[0].to_data().to_f32_vec()
                    == sim.run(vec![input.clone()]).unwrap()[0].to_data().to_f32_vec();
                sim_rows.push(serde_json::json!({"model": model, "target": name, "schedule": s.schedule.name(),
                    "program_min_ms": pm, "program_median_ms": pmed, "sim_min_ms": sm, "sim_median_ms": smed, "ratio": sm / pm, "same_output": same}));
                if !json {
                    println!(
                        "{model:16} {name:6} {:13} program {pm:8.1} ms (median {pmed:8.1})   simulator {sm:8.1} ms (median {smed:8.1})   ratio {:.2}   outputs equal: {same}",
                        s.schedule.name(),
                        sm / pm
                    );
                }
            }
        }
    }
    let _ = x1;
    out.insert("simulator_vs_program".into(), serde_json::json!(sim_rows));
    if !json {
        println!("\nmodel            target schedule       instr   latency (us)   energy (uJ)   TOPS/W    GOPS");
        for r in &cost_rows {
            let rep = &r["report"];
            let tot = &rep["totals"];
            println!(
                "{:16} {:6} {:13} {:>7} {:>14.1} {:>13.3} {:>8.2} {:>7.1}",
                r["model"].as_str().unwrap_or(""),
                r["target"].as_str().unwrap_or(""),
                r["schedule"].as_str().unwrap_or(""),
                r["instructions"],
                tot["latency_ns"].as_f64().unwrap_or(f64::NAN) / 1e3,
                tot["energy_pj"].as_f64().unwrap_or(f64::NAN) / 1e6,
                tot["tops_per_w"].as_f64().unwrap_or(f64::NAN),
                tot["gops"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    out.insert("cost".into(), serde_json::json!(cost_rows));
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(out)).unwrap());
    }
}

/// The models of the table, with their calibration data (one image calibrates, batch 1).
const MODELS: [(&str, &str); 5] = [
    ("mnist_cnn", "data/mnist_calib_x.npy"),
    ("mnist_resnet", "data/mnist_calib_x.npy"),
    ("digits_cnn", "data/digits_calib_x.npy"),
    ("resnet18_bn", "data/imagenet_random_x.npy"),
    ("mobilenet_v2_bn", "data/imagenet_random_x.npy"),
];

/// The cost model's figures for every model × preset with the default emitter (dataflow on
/// pipelined streams), as the Markdown table of `docs/cost-model.md`.
fn cost_table(shared: &Path) {
    println!(
        "| model | target | schedule | instructions | cores | latency (µs) | interval (µs) | \
         energy per inference (µJ) | TOPS/W | ADC | global memory | arrays busy, steady |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (model, data) in MODELS {
        let x = load(&shared.join(data));
        let c = cimc::tensor_util::slice_batch(&x, 0, 1, 1);
        for name in Target::PRESETS {
            let t = Target::preset(name).expect("invariant: a listed preset exists");
            let p = compile(&shared.join(format!("models/{model}.onnx")), &c, &t);
            let s: Stream = emit(&p, &t, &EmitOptions::default()).unwrap_or_else(|e| panic!("{e}"));
            let r = cost::estimate(&s, &t).unwrap_or_else(|e| panic!("{model}/{name}: {e}"));
            let tot = &r.totals;
            let share = |pj: f64| 100.0 * pj / tot.energy_pj;
            println!(
                "| {model} | {name} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.2} | {:.1} % | {:.1} % | {:.2} % |",
                s.schedule.name(),
                s.instructions(),
                s.cores.len(),
                tot.latency_ns / 1e3,
                tot.interval_ns / 1e3,
                tot.energy_pj / 1e6,
                tot.tops_per_w,
                share(tot.energy.adc),
                share(tot.energy.global_memory),
                100.0 * r.utilization.steady_used,
            );
        }
    }
}
