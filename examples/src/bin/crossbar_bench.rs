//! Crossbar figures: how long the `tile` pass takes on ResNet-18 and MobileNetV2 and what it
//! gives (arrays, utilization, next to a naive one-block-per-array mapping, and with the chip's
//! arrays as a replication budget), then the time per image of the exact crossbar program at
//! batch 1 next to the plain integer program, cimc's float interpreter and onnxruntime (float,
//! same machine, same run, via `scripts/bench_onnxruntime.py` when python3 has onnxruntime).
//!
//! `cargo run --release -p cimc-examples --bin crossbar_bench -- [--shared DIR] [--reps N]
//!  [--target isaac] [--json]`

use cimc::onnx::{self, ImportOptions};
use cimc_backends::target::Target;
use cimc_examples::{arg, onnxruntime, time_ms};
use cimc_interp::{Runner, Tensor};
use cimc_passes::tile::{Chip, Tile};
use cimc_passes::{Pass, PassContext, Pipeline};
use cimc_sim::program::ProgramRunner;
use std::path::PathBuf;

struct Mapping {
    arrays: u64,
    util: f64,
    naive_arrays: usize,
    naive_util: f64,
    replicas_added: u64,
}

fn mapping(g: &cimc_ir::Graph, t: &Target, stats: &cimc_passes::Stats) -> Mapping {
    let tj = serde_json::to_value(t).expect("targets serialize");
    let r = cimc::report::MappingReport::new(g, tj, t.chip.arrays);
    Mapping {
        arrays: r.totals.arrays as u64,
        util: 100.0 * r.totals.utilization,
        naive_arrays: r.totals.naive_arrays,
        naive_util: 100.0 * r.totals.naive_utilization,
        replicas_added: stats.get("replicas added").copied().unwrap_or(0),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared: PathBuf = arg(&args, "--shared").unwrap_or_else(|| root.join("../shared"));
    let reps: usize = arg(&args, "--reps").unwrap_or(3);
    let json = args.iter().any(|a| a == "--json");
    let target_name: String = arg(&args, "--target").unwrap_or_else(|| "isaac".into());
    let target = Target::resolve(&target_name).unwrap_or_else(|e| panic!("{e}"));
    if !shared.join("models/resnet18_bn.onnx").exists() {
        eprintln!(
            "skipped: {} has no models/resnet18_bn.onnx (pass --shared DIR)",
            shared.display()
        );
        return;
    }
    let calib =
        Tensor::from_data(&cimc::npy::read(&shared.join("data/imagenet_random_x.npy")).unwrap())
            .unwrap();
    let x1 = cimc::tensor_util::slice_batch(&calib, 0, 1, 1);
    let mut out = serde_json::Map::new();
    for model in ["resnet18_bn", "mobilenet_v2_bn"] {
        let path = shared.join(format!("models/{model}.onnx"));
        let g = onnx::import_file(&path, &ImportOptions { batch: Some(1), ..Default::default() })
            .expect("import");
        let float_runner = Runner::new(&g).unwrap();
        let mut cx = PassContext { calib: Some(vec![calib.clone()]), ..Default::default() };
        let mut q = g.clone();
        cimc::compile::run_pipeline(&mut q, &cx, &[], Some("quantize")).expect("quantize");

        // The tile pass alone.
        cx.chip = Some(Chip::from_target(&target, None));
        let mut tiled = q.clone();
        let tile_ms = time_ms(10, || {
            tiled = q.clone();
            Tile.run(&mut tiled, &cx).expect("tile");
        })
        .1;
        let clone_ms = time_ms(10, || {
            std::hint::black_box(q.clone());
        })
        .1;
        let stats = Tile.run(&mut q.clone(), &cx).unwrap();
        let plain = mapping(&tiled, &target, &stats);
        cx.chip = Some(Chip::from_target(&target, Some(target.chip.arrays)));
        let mut repl = q.clone();
        let rstats = Tile.run(&mut repl, &cx).expect("tile with a budget");
        let replicated = mapping(&repl, &target, &rstats);
        println!(
            "{model}: tile on {} in {:.2} ms (median of 10, graph copy excluded: {:.2} ms); {} arrays, utilization {:.1} % (naive one block per array: {} arrays, {:.1} %); with the chip's {} arrays as budget: {} arrays, {} replicas added",
            target.name,
            tile_ms - clone_ms,
            clone_ms,
            plain.arrays,
            plain.util,
            plain.naive_arrays,
            plain.naive_util,
            target.chip.arrays,
            replicated.arrays,
            replicated.replicas_added
        );
        let mut m = serde_json::json!({
            "tile_ms": tile_ms - clone_ms,
            "arrays": plain.arrays, "utilization": plain.util,
            "naive_arrays": plain.naive_arrays, "naive_utilization": plain.naive_util,
            "budget": target.chip.arrays, "arrays_with_budget": replicated.arrays,
            "replicas_added": replicated.replicas_added,
        });
        if model == "resnet18_bn" {
            // Time per image of each way to run it, batch 1.
            cx.chip = Some(Chip::from_target(&target, None));
            let mut xg = q.clone();
            let names: Vec<&str> = ["tile", "adc-calibrate"]
                .into_iter()
                .filter(|n| cimc_passes::pass_by_name(n).is_some())
                .collect();
            Pipeline::from_names(&names).unwrap().run(&mut xg, &cx, &[], None).expect("map");
            let xprog = cimc_backends::program::lower::lower(&xg).expect("lower");
            let iprog = cimc_backends::program::lower::lower(&q).expect("lower");
            let xr = ProgramRunner::new(&xprog).unwrap();
            let ir = ProgramRunner::new(&iprog).unwrap();
            let t_x = time_ms(reps, || {
                xr.run(vec![x1.clone()]).unwrap();
            })
            .1;
            let t_i = time_ms(reps, || {
                ir.run(vec![x1.clone()]).unwrap();
            })
            .1;
            let t_f = time_ms(reps, || {
                float_runner.run(vec![x1.clone()]).unwrap();
            })
            .1;
            let ort = onnxruntime(&path, 1, 10);
            println!("\n| ResNet-18, batch 1, 2 threads | ms per image | vs onnxruntime float |");
            println!("|---|---|---|");
            let ratio =
                |t: f64| ort.as_ref().map_or("-".to_string(), |o| format!("{:.1}×", t / o.1));
            println!(
                "| exact crossbar program ({}: {}) | {t_x:.1} | {} |",
                target.name,
                target.summary(),
                ratio(t_x)
            );
            println!("| integer program, no crossbar (W8A8) | {t_i:.1} | {} |", ratio(t_i));
            println!("| cimc float interpreter | {t_f:.1} | {} |", ratio(t_f));
            if let Some((name, t)) = &ort {
                println!("| {name} float | {t:.1} | 1.0× |");
            }
            m["crossbar_ms"] = t_x.into();
            m["integer_ms"] = t_i.into();
            m["float_ms"] = t_f.into();
            m["onnxruntime_ms"] = ort.map(|o| o.1).into();
        }
        out.insert(model.to_string(), m);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(out)).unwrap());
    }
}
