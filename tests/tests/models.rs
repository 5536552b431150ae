//! Real models from real exporters: each imports, verifies, round-trips through the text IR and
//! runs in the float interpreter with the outputs of onnxruntime (reference logits made by
//! `../shared/scripts/make_models.py`). Small models and data are vendored; ResNet-18 and
//! MobileNetV2 come from `../shared` (feature `heavy`, which CI enables in release mode).

use cimc::onnx::{self, ImportOptions};
use cimc_interp::{Runner, Tensor};
use cimc_ir::Graph;
use cimc_tests::{argmax_rows, data, max_errors, npy};
use std::path::Path;

fn import(path: &Path, batch: usize) -> Graph {
    let opts = ImportOptions { batch: Some(batch), ..ImportOptions::default() };
    let g =
        onnx::import_file(path, &opts).unwrap_or_else(|e| panic!("import {}: {e}", path.display()));
    cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("verify {}: {e}", path.display()));
    g
}

/// print -> parse (with the data file) -> print is the identity.
fn assert_text_roundtrip(g: &Graph) {
    let text = g.to_string();
    let data = cimc_ir::datafile::write_data(g);
    let back = cimc_ir::parse::parse_with_data(&text, Some(&data))
        .unwrap_or_else(|e| panic!("re-parse of {}: {e}", g.name));
    cimc_ir::verify::verify(&back).unwrap_or_else(|e| panic!("verify re-parsed {}: {e}", g.name));
    assert_eq!(back.to_string(), text, "text round trip of {}", g.name);
}

/// Runs `model` on the first `n` samples of `x` and compares with onnxruntime's logits.
fn check_against_reference(model: &Path, x: &Path, reference: &Path, n: usize, rel_tol: f64) {
    let x = npy(x);
    let x = cimc::tensor_util::slice_batch(&x, 0, n, n);
    let g = import(model, n);
    assert_text_roundtrip(&g);
    let runner = Runner::new(&g).expect("runner");
    // A model whose batch is fixed in the file (the QONNX export: 1) runs in chunks of it.
    let batch = cimc::model::input_batch(&g).unwrap_or(n);
    let out =
        cimc::model::run_in_chunks(|t| Ok(runner.run(t)?), batch, std::slice::from_ref(&x), |_| {})
            .expect("run");
    let want = npy(reference);
    let want = cimc::tensor_util::slice_batch(&want, 0, n, n);
    let (abs, rel) = max_errors(&out[0], &want).expect("same shape and dtype");
    eprintln!("{}: max abs error {abs:.3e}, relative {rel:.3e} over {n} samples", model.display());
    assert!(rel <= rel_tol, "{}: relative error {rel:.3e} > {rel_tol:.0e}", model.display());
    assert_eq!(argmax_rows(&out[0]), argmax_rows(&want), "predictions differ from onnxruntime");
}

#[test]
fn digits_cnn_matches_onnxruntime() {
    let d = data();
    check_against_reference(
        &d.join("models/digits_cnn.onnx"),
        &d.join("sets/digits_test_x.npy"),
        &d.join("sets/digits_cnn_ref_logits.npy"),
        100,
        1e-4,
    );
}

#[test]
fn mnist_cnn_matches_onnxruntime() {
    let d = data();
    check_against_reference(
        &d.join("models/mnist_cnn.onnx"),
        &d.join("sets/mnist_test500_x.npy"),
        &d.join("sets/mnist_cnn_ref_logits.npy"),
        100,
        1e-4,
    );
}

#[test]
fn mnist_resnet_matches_onnxruntime() {
    let d = data();
    check_against_reference(
        &d.join("models/mnist_resnet.onnx"),
        &d.join("sets/mnist_test500_x.npy"),
        &d.join("sets/mnist_resnet_ref_logits.npy"),
        100,
        1e-4,
    );
}

/// The Brevitas QCDQ model runs with the ONNX meaning of its Q/DQ/Clip nodes. onnxruntime runs
/// the same float graph, so the outputs agree to float rounding.
#[test]
fn mnist_qcdq_matches_onnxruntime() {
    let d = data();
    check_against_reference(
        &d.join("models/mnist_cnn_w4a4_qcdq.onnx"),
        &d.join("sets/mnist_test500_x.npy"),
        &d.join("sets/mnist_cnn_w4a4_qcdq_ref_logits.npy"),
        100,
        1e-4,
    );
}

/// The QDQ model in the float interpreter has the ONNX meaning of QuantizeLinear and
/// DequantizeLinear: it matches onnxruntime run without graph optimizations (reference made by
/// `scripts/make_qdq_reference.py`). onnxruntime's default session fuses the Q/DQ pairs into
/// integer kernels that round differently (an activation can land one code apart), so against
/// the shared reference logits only the predictions are compared.
#[test]
fn mnist_qdq_runs_with_onnx_semantics() {
    let d = data();
    let n = 32;
    let x = npy(&d.join("sets/mnist_test500_x.npy"));
    let x = cimc::tensor_util::slice_batch(&x, 0, n, n);
    let g = import(&d.join("models/mnist_cnn_int8_qdq.onnx"), n);
    assert_text_roundtrip(&g);
    let out = Runner::new(&g).expect("runner").run(vec![x]).expect("run");
    let unfused = npy(&d.join("qdq_ref/logits_unfused.npy"));
    let (abs, rel) = max_errors(&out[0], &unfused).expect("same shape");
    eprintln!("mnist_cnn_int8_qdq vs onnxruntime (no fusion): max abs error {abs:.3e}, relative {rel:.3e}");
    assert!(rel <= 1e-4, "relative error {rel}");
    let fused = npy(&d.join("sets/mnist_cnn_int8_qdq_ref_logits.npy"));
    let fused = cimc::tensor_util::slice_batch(&fused, 0, n, n);
    let same =
        argmax_rows(&out[0]).iter().zip(argmax_rows(&fused)).filter(|(a, b)| **a == *b).count();
    assert!(same + 1 >= n, "only {same}/{n} predictions agree with onnxruntime's fused kernels");
}

/// The QONNX export (`Quant` nodes, domain qonnx.custom_op.general) imports as
/// QuantizeLinear → Clip → DequantizeLinear chains and matches qonnx's own executor.
#[test]
fn mnist_qonnx_matches_qonnx_executor() {
    let d = data();
    check_against_reference(
        &d.join("models/mnist_cnn_w4a4_qonnx.onnx"),
        &d.join("sets/mnist_test500_x.npy"),
        &d.join("sets/mnist_cnn_w4a4_qonnx_ref_logits.npy"),
        100,
        1e-4,
    );
}

/// Top-1 on the whole digits test set (vendored): within one image of onnxruntime's 99.16 %.
#[test]
fn digits_cnn_accuracy() {
    let d = data();
    let x = npy(&d.join("sets/digits_test_x.npy"));
    let y = cimc::npy::read(&d.join("sets/digits_test_y.npy")).unwrap().to_i64_vec();
    let n = y.len();
    let g = import(&d.join("models/digits_cnn.onnx"), n);
    let out = Runner::new(&g).unwrap().run(vec![x]).unwrap();
    let correct = cimc_interp::tensor::count_correct(&argmax_rows(&out[0]), &y);
    let top1 = 100.0 * correct as f64 / n as f64;
    eprintln!("digits_cnn: top-1 {top1:.2} % ({correct}/{n}), onnxruntime 99.16 %");
    let ort_correct = (0.9916 * n as f64).round() as i64;
    assert!((correct as i64 - ort_correct).abs() <= 1, "top-1 {top1} vs onnxruntime 99.16");
}

/// Top-1 on the full MNIST test set (from ../shared): within one image of onnxruntime.
#[test]
fn mnist_models_accuracy_full_test_set() {
    let Some(shared) = cimc_tests::shared("mnist_models_accuracy_full_test_set") else { return };
    let x = npy(&shared.join("data/mnist_test_x.npy"));
    let y = cimc::npy::read(&shared.join("data/mnist_test_y.npy")).unwrap().to_i64_vec();
    for (model, ort) in [("mnist_cnn", 99.22), ("mnist_resnet", 99.36)] {
        let batch = 500;
        let g = import(&shared.join(format!("models/{model}.onnx")), batch);
        let runner = Runner::new(&g).unwrap();
        let out = cimc::model::run_in_chunks(
            |x| Ok(runner.run(x)?),
            batch,
            std::slice::from_ref(&x),
            |_| {},
        )
        .unwrap();
        let correct = cimc_interp::tensor::count_correct(&argmax_rows(&out[0]), &y);
        let top1 = correct as f64 / 100.0;
        eprintln!("{model}: top-1 {top1:.2} % on 10000, onnxruntime {ort} %");
        assert!((correct as f64 - ort * 100.0).abs() <= 1.0, "{model}: {top1} vs {ort}");
    }
}

/// ResNet-18 and MobileNetV2 (random weights, BN not folded) against onnxruntime on two images.
#[cfg(feature = "heavy")]
#[test]
fn imagenet_models_match_onnxruntime() {
    let Some(shared) = cimc_tests::shared("imagenet_models_match_onnxruntime") else { return };
    for m in ["resnet18_bn", "mobilenet_v2_bn"] {
        check_against_reference(
            &shared.join(format!("models/{m}.onnx")),
            &shared.join("data/imagenet_random_x.npy"),
            &shared.join(format!("data/{m}_ref_logits.npy")),
            2,
            1e-4,
        );
    }
}

/// Every model in ../shared/models imports at batch 1 and 4 and verifies.
#[test]
fn every_shared_model_imports() {
    let Some(shared) = cimc_tests::shared("every_shared_model_imports") else { return };
    let mut names: Vec<_> =
        std::fs::read_dir(shared.join("models")).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "onnx")) {
        // The QONNX export fixes batch 1 (the file's name says so, not its folder's).
        let static_batch = p.file_name().is_some_and(|n| n.to_string_lossy().contains("qonnx"));
        for batch in [1, 4] {
            let g = import(p, batch);
            let want = if static_batch { 1 } else { batch };
            assert_eq!(cimc::model::input_batch(&g), Some(want), "{}", p.display());
        }
    }
    let _ = Tensor::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(&[1])));
}
