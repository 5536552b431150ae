//! cimc's benchmark: each workload run repeatedly, min and median time, and the ratio to
//! onnxruntime measured in the same run (through `scripts/bench_onnxruntime.py` when python3 with
//! onnxruntime is available; otherwise the figures of `../shared/README.md`, marked as quoted).
//!
//! `cargo run --release -p cimc-examples --bin bench -- [--reps N] [--json] [--only SUBSTR]`

use cimc::onnx::{self, ImportOptions};
use cimc_examples::time_ms;
use cimc_interp::{Runner, Tensor};
use std::path::{Path, PathBuf};

struct Args {
    reps: usize,
    json: bool,
    only: Option<String>,
    shared: PathBuf,
    peers: bool,
}

fn parse_args() -> Args {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut a =
        Args { reps: 10, json: false, only: None, shared: root.join("../shared"), peers: true };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--reps" => a.reps = it.next().and_then(|v| v.parse().ok()).unwrap_or(10),
            "--json" => a.json = true,
            "--only" => a.only = it.next(),
            "--shared" => a.shared = it.next().map(PathBuf::from).unwrap_or(a.shared),
            "--no-peers" => a.peers = false,
            "-h" | "--help" => {
                println!("bench [--reps N] [--json] [--only SUBSTR] [--shared DIR] [--no-peers]");
                std::process::exit(0);
            }
            other => {
                eprintln!("error: unknown argument '{other}'");
                std::process::exit(1);
            }
        }
    }
    a
}

struct Peer {
    name: String,
    median_ms: f64,
    measured: bool,
}

struct Row {
    workload: String,
    min_ms: f64,
    median_ms: f64,
    peer: Option<Peer>,
}

fn onnxruntime(model: &Path, batch: usize, reps: usize) -> Option<Peer> {
    let (name, median_ms) = cimc_examples::onnxruntime(model, batch, reps)?;
    Some(Peer { name, median_ms, measured: true })
}

fn main() {
    let args = parse_args();
    let models = args.shared.join("models");
    if !models.is_dir() {
        eprintln!(
            "error: {} not found (the benchmark reads the shared models; pass --shared DIR)",
            models.display()
        );
        std::process::exit(1);
    }
    let want = |name: &str| args.only.as_deref().is_none_or(|o| name.contains(o));
    let mut rows = Vec::new();
    let resnet = models.join("resnet18_bn.onnx");
    let one = ImportOptions::default();

    if want("import") {
        let (min, med) = time_ms(args.reps, || {
            let g = onnx::import_file(&resnet, &one).expect("import");
            cimc_ir::verify::verify(&g).expect("verify");
        });
        rows.push(Row {
            workload: "import + verify resnet18_bn.onnx".into(),
            min_ms: min,
            median_ms: med,
            peer: None,
        });
    }
    if want("dump") {
        let (min, med) = time_ms(args.reps, || {
            let g = onnx::import_file(&resnet, &one).expect("import");
            let text = g.to_string();
            let data = cimc_ir::datafile::write_data(&g);
            std::hint::black_box((text, data));
        });
        rows.push(Row {
            workload: "import + text dump resnet18_bn.onnx".into(),
            min_ms: min,
            median_ms: med,
            peer: None,
        });
    }
    for (model, batch) in [("resnet18_bn", 1usize), ("resnet18_bn", 8), ("mobilenet_v2_bn", 1)] {
        let name = format!("float {model} batch {batch}");
        if !want(&name) {
            continue;
        }
        let path = models.join(format!("{model}.onnx"));
        let g = onnx::import_file(&path, &ImportOptions { batch: Some(batch), ..one.clone() })
            .expect("import");
        let runner = Runner::new(&g).expect("runner");
        let shape = g.ty(g.inputs()[0]).shape.clone();
        let numel: usize = shape.iter().product();
        let values: Vec<f32> = (0..numel).map(|i| ((i * 7919 % 17) as f32 - 8.0) / 8.0).collect();
        let x = Tensor::F32(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), values).expect("shape"),
        );
        let reps = if batch > 1 { args.reps.div_ceil(2) } else { args.reps };
        let (min, med) = time_ms(reps, || {
            std::hint::black_box(runner.run(vec![x.clone()]).expect("run"));
        });
        let peer = if args.peers { onnxruntime(&path, batch, reps.max(10)) } else { None };
        let peer = peer.or_else(|| {
            (model == "resnet18_bn" && batch == 1).then(|| Peer {
                name: "onnxruntime 1.32 (quoted from shared/README.md)".into(),
                median_ms: 22.0,
                measured: false,
            })
        });
        rows.push(Row { workload: name, min_ms: min, median_ms: med, peer });
    }
    if want("mnist") {
        let data = args.shared.join("data/mnist_test_x.npy");
        if let Ok(d) = cimc::npy::read(&data) {
            let x = Tensor::from_data(&d).expect("mnist data");
            let batch = 500;
            let path = models.join("mnist_cnn.onnx");
            let g = onnx::import_file(&path, &ImportOptions { batch: Some(batch), ..one.clone() })
                .expect("import");
            let runner = Runner::new(&g).expect("runner");
            let (min, med) = time_ms(args.reps.div_ceil(4), || {
                std::hint::black_box(
                    cimc::model::run_in_chunks(
                        |x| Ok(runner.run(x)?),
                        batch,
                        std::slice::from_ref(&x),
                        |_| {},
                    )
                    .expect("run"),
                );
            });
            let peer = if args.peers {
                onnxruntime(&path, 10000, 3).map(|p| Peer {
                    name: p.name,
                    median_ms: p.median_ms,
                    measured: true,
                })
            } else {
                None
            };
            rows.push(Row {
                workload: "float mnist_cnn, 10000 test images".into(),
                min_ms: min,
                median_ms: med,
                peer,
            });
        }
    }

    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "workload": r.workload, "min_ms": r.min_ms, "median_ms": r.median_ms,
                    "peer": r.peer.as_ref().map(|p| serde_json::json!({
                        "name": p.name, "median_ms": p.median_ms, "measured_in_this_run": p.measured,
                        "ratio": r.median_ms / p.median_ms })),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "reps": args.reps, "rows": v }))
                .expect("json")
        );
        return;
    }
    println!(
        "{:<40} {:>10} {:>10}   {:<46} {:>10} {:>7}",
        "workload", "min ms", "median ms", "peer", "peer ms", "ratio"
    );
    for r in &rows {
        match &r.peer {
            Some(p) => println!(
                "{:<40} {:>10.2} {:>10.2}   {:<46} {:>10.2} {:>6.2}x",
                r.workload,
                r.min_ms,
                r.median_ms,
                p.name,
                p.median_ms,
                r.median_ms / p.median_ms
            ),
            None => println!("{:<40} {:>10.2} {:>10.2}", r.workload, r.min_ms, r.median_ms),
        }
    }
    println!("(ratio = cimc median / peer median; lower is better; 2 threads for the peer)");
}
