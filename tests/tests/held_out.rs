//! The held-out acceptance model of issue 19: a MobileNetV3-style MNIST net that no pass or test
//! was written against (inverted residuals with depthwise convolutions, unfolded BatchNorm,
//! HardSwish and ReLU, squeeze-excite with HardSigmoid and a Mul of two activations, a Concat
//! of two branches, residual Adds, a Gemm head). Made by `scripts/make_mbv3_model.py`; its
//! provenance and onnxruntime's top-1 are in `tests/data/models/mnist_mbv3.json`.
//!
//! The float run must match onnxruntime, and the W8A8 program compiled with the calibration set
//! of `../shared` must stay within 0.5 points of the float model's top-1 on the 10,000 MNIST
//! test images — what `cimc compile --calib` and `cimc eval` do (the README's section "A model
//! cimc was not written for").

use cimc::onnx::{self, ImportOptions};
use cimc_interp::Runner;
use cimc_ir::Graph;
use cimc_tests::{argmax_rows, data, max_errors, npy};
use std::path::Path;

/// The exports of the model: the TorchScript exporter (opset 17, BatchNorm kept) and the dynamo
/// exporter with its defaults (opset 20; its optimizer folds BatchNorm into the convolutions).
const EXPORTS: [&str; 2] = ["mnist_mbv3", "mnist_mbv3_dynamo"];

fn import(path: &Path, batch: usize) -> Graph {
    let opts = ImportOptions { batch: Some(batch), ..ImportOptions::default() };
    let g =
        onnx::import_file(path, &opts).unwrap_or_else(|e| panic!("import {}: {e}", path.display()));
    cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("verify {}: {e}", path.display()));
    g
}

/// Both exports import, verify and run in the float interpreter with onnxruntime's logits on
/// the first 100 test images (vendored), and predict the same classes.
#[test]
fn mbv3_float_matches_onnxruntime() {
    let d = data();
    let n = 100;
    let x = npy(&d.join("sets/mnist_test500_x.npy"));
    let x = cimc::tensor_util::slice_batch(&x, 0, n, n);
    for export in EXPORTS {
        let g = import(&d.join(format!("models/{export}.onnx")), n);
        let out = Runner::new(&g).expect("runner").run(vec![x.clone()]).expect("run");
        let want = npy(&d.join(format!("sets/{export}_ref_logits.npy")));
        let (abs, rel) = max_errors(&out[0], &want).expect("same shape and dtype");
        eprintln!("{export}: max abs error {abs:.3e}, relative {rel:.3e} over {n} samples");
        assert!(rel <= 1e-4, "{export}: relative error {rel:.3e} > 1e-4");
        assert_eq!(argmax_rows(&out[0]), argmax_rows(&want), "{export}: predictions differ");
    }
}

/// The W8A8 programs on the full test set (`heavy`: CI runs it in release mode).
#[cfg(feature = "heavy")]
mod w8a8 {
    use super::*;
    use cimc_passes::PassContext;
    use cimc_sim::program::ProgramRunner;

    /// onnxruntime's top-1 (percent, 10,000 test images) of one export, from the provenance file.
    fn onnxruntime_top1(export: &str) -> f64 {
        let path = data().join("models/mnist_mbv3.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let info: serde_json::Value = serde_json::from_str(&text).expect("mnist_mbv3.json is JSON");
        info["files"][export]["top1_onnxruntime"]
            .as_f64()
            .unwrap_or_else(|| panic!("mnist_mbv3.json has no top1_onnxruntime of {export}"))
    }

    /// Top-1 (percent) of `predictions` against `labels`.
    fn top1(predictions: &[usize], labels: &[i64]) -> f64 {
        let correct = cimc_interp::tensor::count_correct(predictions, labels);
        100.0 * correct as f64 / labels.len() as f64
    }

    /// The acceptance criterion: `export` compiled W8A8 (the defaults of `cimc compile`, calibrated
    /// min/max on the 1000 images of `mnist_calib_x.npy`) is within 0.5 points of the float model's
    /// top-1 on the 10,000 test images. The float top-1 is the interpreter's, which must itself be
    /// onnxruntime's to within one image.
    fn check_w8a8_top1(export: &str, shared: &Path) {
        let x = npy(&shared.join("data/mnist_test_x.npy"));
        let y = cimc::npy::read(&shared.join("data/mnist_test_y.npy")).unwrap().to_i64_vec();
        let calib = npy(&shared.join("data/mnist_calib_x.npy"));
        let batch = 500;
        let g = import(&data().join(format!("models/{export}.onnx")), batch);
        let runner = Runner::new(&g).expect("runner");
        let float = cimc::model::run_in_chunks(
            |t| Ok(runner.run(t)?),
            batch,
            std::slice::from_ref(&x),
            |_| {},
        )
        .expect("float run");
        let float_pred = argmax_rows(&float[0]);
        let float_top1 = top1(&float_pred, &y);
        let ort = onnxruntime_top1(export);
        assert!(
            (float_top1 - ort).abs() <= 0.01 + 1e-9,
            "{export}: float top-1 {float_top1:.2} vs onnxruntime {ort:.2}"
        );

        let cx = PassContext { calib: Some(vec![calib]), ..PassContext::default() };
        let program = cimc::compile::compile(g, &cx, &[])
            .unwrap_or_else(|e| panic!("{export}: cimc compile --calib: {e}"))
            .0;
        let runner = ProgramRunner::new(&program).expect("program runner");
        let out = cimc::model::run_in_chunks(
            |t| Ok(runner.run(t)?),
            batch,
            std::slice::from_ref(&x),
            |_| {},
        )
        .expect("program run");
        let pred = argmax_rows(&out[0]);
        let program_top1 = top1(&pred, &y);
        let differ = pred.iter().zip(&float_pred).filter(|(a, b)| a != b).count();
        eprintln!(
            "{export}: W8A8 program top-1 {program_top1:.2} %, float {float_top1:.2} % \
             (onnxruntime {ort:.2} %), {differ} prediction(s) differ"
        );
        assert!(
            (float_top1 - program_top1).abs() <= 0.5 + 1e-9,
            "{export}: W8A8 top-1 {program_top1:.2} is more than 0.5 points from float \
             {float_top1:.2}"
        );
    }

    /// Issue 19's "done when": the TorchScript export (BatchNorm, HardSwish, HardSigmoid, the Mul
    /// of squeeze-excite and the Concat all reach the program).
    #[test]
    fn mbv3_w8a8_within_half_a_point_of_float() {
        let Some(shared) = cimc_tests::shared("mbv3_w8a8_within_half_a_point_of_float") else {
            return;
        };
        check_w8a8_top1("mnist_mbv3", &shared);
    }

    /// The same model from the dynamo exporter: BatchNorm folded, and squeeze-excite's pooling
    /// written as ReduceMean over the spatial axes.
    #[test]
    fn mbv3_dynamo_w8a8_within_half_a_point_of_float() {
        let Some(shared) = cimc_tests::shared("mbv3_dynamo_w8a8_within_half_a_point_of_float")
        else {
            return;
        };
        check_w8a8_top1("mnist_mbv3_dynamo", &shared);
    }
}
