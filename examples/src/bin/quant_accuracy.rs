//! Accuracy of cimc's integer programs on the trained CNNs: float, W8A8, W4A8 and W4A4 top-1
//! on the full test sets, next to onnxruntime's own static int8 quantization of the same model
//! with the same calibration samples (`scripts/ort_static_quant.py`, when python3 has
//! onnxruntime), and the models quantized elsewhere (QDQ, QCDQ) compiled without calibration.
//!
//! `cargo run --release -p cimc-examples --bin quant_accuracy -- [--json] [--calib-samples N]`

use cimc::onnx::{self, ImportOptions};
use cimc_examples::{load, top1};
use cimc_interp::Runner;
use cimc_passes::config::{CalibMethod, WeightMethod};
use cimc_passes::PassContext;
use cimc_sim::program::ProgramRunner;
use std::process::Command;

const BATCH: usize = 100;

struct Row {
    model: String,
    results: Vec<(String, f64)>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let calib_n: usize = args
        .iter()
        .position(|a| a == "--calib-samples")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let cases = cimc_examples::trained_cnns();
    let mnist = cases[0].1.clone();
    let configs: [(&str, u8, u8, CalibMethod, WeightMethod); 5] = [
        ("W8A8", 8, 8, CalibMethod::MinMax, WeightMethod::MinMax),
        ("W8A8 percentile", 8, 8, CalibMethod::Percentile(99.99), WeightMethod::MinMax),
        ("W4A8", 4, 8, CalibMethod::MinMax, WeightMethod::Mse),
        ("W4A4", 4, 4, CalibMethod::Mse, WeightMethod::Mse),
        ("W4A4 minmax", 4, 4, CalibMethod::MinMax, WeightMethod::MinMax),
    ];
    let mut rows = Vec::new();
    for (name, set) in cases {
        let (xp, yp, cp) = (&set.test_x, &set.test_y, &set.calib);
        let x = load(xp);
        let y = cimc::npy::read(yp).unwrap().to_i64_vec();
        let calib = set.calib_images(calib_n);
        let n_cal = calib.shape()[0];
        let path = cimc_examples::vendored_model(name);
        let import = |b| {
            onnx::import_file(&path, &ImportOptions { batch: Some(b), ..Default::default() })
                .expect("import")
        };
        let mut results = Vec::new();
        let g = import(BATCH);
        let r = Runner::new(&g).unwrap();
        let out =
            cimc::model::run_in_chunks(|t| Ok(r.run(t)?), BATCH, std::slice::from_ref(&x), |_| {})
                .unwrap();
        results.push(("float".to_string(), top1(&out[0], &y)));
        for (label, wb, ab, cm, wm) in configs {
            let mut cx = PassContext { calib: Some(vec![calib.clone()]), ..Default::default() };
            (cx.config.wbits, cx.config.abits, cx.config.calib_method, cx.config.weight_method) =
                (wb, ab, cm, wm);
            let (p, _) = cimc::compile::compile(import(BATCH), &cx, &[]).expect("compile");
            let pr = ProgramRunner::new(&p).unwrap();
            let out = cimc::model::run_in_chunks(
                |t| Ok(pr.run(t)?),
                BATCH,
                std::slice::from_ref(&x),
                |_| {},
            )
            .unwrap();
            results.push((label.to_string(), top1(&out[0], &y)));
        }
        let ort = Command::new("python3")
            .arg(cimc_examples::repo_root().join("scripts/ort_static_quant.py"))
            .args([path.as_os_str(), cp.as_os_str()])
            .arg(n_cal.to_string())
            .args([xp.as_os_str(), yp.as_os_str()])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
        if let Some(v) = ort.and_then(|v| v["int8_top1"].as_f64()) {
            results.push(("onnxruntime int8 (same calib)".to_string(), v));
        }
        rows.push(Row { model: format!("{name} ({} test, {n_cal} calib)", y.len()), results });
    }
    // Models quantized elsewhere, compiled without calibration data.
    for name in ["mnist_cnn_int8_qdq", "mnist_cnn_w4a4_qcdq"] {
        let x = load(&mnist.test_x);
        let y = cimc::npy::read(&mnist.test_y).unwrap().to_i64_vec();
        let g = cimc_examples::import_vendored(name, BATCH);
        let r = Runner::new(&g).unwrap();
        let float =
            cimc::model::run_in_chunks(|t| Ok(r.run(t)?), BATCH, std::slice::from_ref(&x), |_| {})
                .unwrap();
        let (p, _) = cimc::compile::compile(g, &PassContext::default(), &[]).expect("compile");
        let pr = ProgramRunner::new(&p).unwrap();
        let out =
            cimc::model::run_in_chunks(|t| Ok(pr.run(t)?), BATCH, std::slice::from_ref(&x), |_| {})
                .unwrap();
        rows.push(Row {
            model: format!("{name} (no calibration)"),
            results: vec![
                ("model's float meaning".into(), top1(&float[0], &y)),
                ("cimc program".into(), top1(&out[0], &y)),
            ],
        });
    }
    if json {
        let v: Vec<_> = rows.iter().map(|r| serde_json::json!({"model": r.model, "top1": r.results.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>()})).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return;
    }
    for r in &rows {
        println!("{}", r.model);
        for (k, v) in &r.results {
            println!("    {k:<34} {v:6.2} %");
        }
    }
}
