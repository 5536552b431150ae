//! Worst-case device variation (`docs/worst-case.md`): top-1 of the trained CNNs compiled for
//! the ISAAC-like preset (W8A8, ADC ranges calibrated), under the first-order worst pattern of
//! programming variation `|ε| ≤ k` (FGSM, then PGD steps), next to random ±k signs and the
//! Gaussian mean case, at each k, with the time each model took.
//!
//! `cargo run --release -p cimc-examples --bin worst_case -- [--samples N] [--sigma S]
//!  [--ks 1,2,3] [--pgd-steps N] [--trials N] [--calib-samples N] [--models mnist_cnn,mnist_resnet]
//!  [--svg DIR] [--json]`
//!
//! The search uses the same samples it is judged on (the worst case *for that batch*).

use cimc::onnx::{self, ImportOptions};
use cimc::worst_case::{batch_dividing, float_graph, worst_case, Options};
use cimc_examples::arg;
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use std::path::PathBuf;
use std::time::Instant;

const PROGRAM_BATCH: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let samples: usize = arg(&args, "--samples").unwrap_or(500);
    let sigma: f64 = arg(&args, "--sigma").unwrap_or(0.1);
    let ks: Vec<f64> = arg::<String>(&args, "--ks")
        .map(|s| s.split(',').map(|k| k.parse().expect("--ks: numbers")).collect())
        .unwrap_or_else(|| vec![1.0, 2.0, 3.0]);
    let pgd_steps: usize = arg(&args, "--pgd-steps").unwrap_or(4);
    let trials: usize = arg(&args, "--trials").unwrap_or(3);
    let calib_n: usize = arg(&args, "--calib-samples").unwrap_or(500);
    let svg_dir: Option<PathBuf> = arg(&args, "--svg");
    let only: String = arg(&args, "--models").unwrap_or_else(|| "mnist_cnn".into());
    let target = cimc_examples::isaac_differential();
    let mut reports = Vec::new();
    for (name, set) in cimc_examples::trained_cnns() {
        if !only.split(',').any(|m| m == name) {
            continue;
        }
        let t0 = Instant::now();
        let (x, y) = set.test_set(Some(samples));
        let (n, y) = (y.len(), &y[..]);
        let calib = set.calib_images(calib_n);
        let path = cimc_examples::vendored_model(name);
        let g = onnx::import_file(
            &path,
            &ImportOptions { batch: Some(PROGRAM_BATCH), ..Default::default() },
        )
        .expect("import");
        let cx = PassContext {
            calib: Some(vec![calib]),
            chip: Some(Chip::from_target(&target, None)),
            ..Default::default()
        };
        let (program, _) = cimc::compile::compile(g, &cx, &[]).expect("compile");
        let compile_s = t0.elapsed().as_secs_f64();
        let float = float_graph(&path, batch_dividing(n, 100)).expect("float graph");
        let opts = Options { sigma, ks: ks.clone(), pgd_steps, trials, seed: 1 };
        let r = worst_case(&program, &float, &x, y, &opts, |s| eprintln!("{name}: {s}"))
            .expect("worst case");
        if !json {
            println!(
                "\n### {name} on `isaac` (W8A8; {n} test images; compile {compile_s:.1} s, search and evaluation {:.1} s)\n",
                r.seconds
            );
            for l in r.table() {
                println!("{l}");
            }
        }
        if let Some(dir) = &svg_dir {
            let f = dir.join(format!("worst-case-{name}.svg"));
            let title =
                format!("{name} on isaac: top-1 under programming variation, σ_p = {sigma}");
            std::fs::write(&f, r.svg(&title)).expect("write svg");
            eprintln!("wrote {}", f.display());
        }
        reports.push(serde_json::json!({"model": name, "target": "isaac",
            "compile_seconds": compile_s, "report": r}));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports).expect("json"));
    }
}
