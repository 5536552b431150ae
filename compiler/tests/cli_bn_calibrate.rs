//! `bn-calibrate` on the command line (`docs/bn-calibrate.md`): a real model on a lossy crossbar,
//! its report (the drift before, none after), its notes in the IR dump, and bad input.

mod common;
use common::{cimc, data, ok};

#[test]
fn drift_on_a_lossy_crossbar_is_corrected_layer_by_layer() {
    let dir = common::tmp_dir("bncal");
    let prog = dir.join("r.cimp").to_string_lossy().into_owned();
    let report = dir.join("r.json").to_string_lossy().into_owned();
    let (model, calib) = (data("models/mnist_resnet.onnx"), data("sets/mnist_calib200_x.npy"));
    // mnist_resnet: its BatchNormalizations are folded by `fold-bn`, so the statistics can only
    // come from data. A 4-bit ADC that never clips has coarse steps: the outputs drift.
    let compile = |extra: &[&str]| {
        let mut a = vec!["compile", &model, "--calib", &calib, "--calib-samples", "64"];
        a.extend(["--target", "edge", "--adc-bits", "4", "--adc-range", "worst"]);
        a.push("--bn-calibrate");
        a.extend_from_slice(extra);
        cimc(&a)
    };
    ok(&compile(&["--report", &report, "-o", &prog]));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let bn = &r["passes"]["bn-calibrate"];
    assert_eq!(bn["samples"], 64);
    let layers = bn["layers"].as_array().expect("the bn-calibrate report lists layers");
    assert!(layers.len() >= 5, "every Conv/Gemm of mnist_resnet is corrected: {layers:?}");
    let f = |l: &serde_json::Value, k: &str| l[k].as_f64().unwrap_or_else(|| panic!("{k} in {l}"));
    // The crossbar moved the distributions (else this test would prove nothing) ...
    let drifted = layers.iter().filter(|l| f(l, "mean_shift_before") > 0.05).count();
    assert!(drifted >= 2, "the 4-bit worst-range ADC shifts layer outputs: {layers:?}");
    // ... and after the pass every layer has the float model's mean, and its std where the gain
    // did not reach the clamp.
    for l in layers {
        assert!(f(l, "mean_shift_after") < 0.01, "{l}");
        if l["gains_clamped"].as_u64() == Some(0) {
            assert!((f(l, "std_ratio_after") - 1.0).abs() < 0.01, "{l}");
        }
    }
    // Same compile, same bytes (deterministic).
    let again = dir.join("r2.cimp").to_string_lossy().into_owned();
    ok(&compile(&["-o", &again]));
    assert_eq!(std::fs::read(&prog).unwrap(), std::fs::read(&again).unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_dump_shows_each_correction_as_a_note() {
    let out = cimc(&[
        "dump",
        &data("models/digits_cnn.onnx"),
        "--calib",
        &data("sets/digits_calib_x.npy"),
        "--target",
        "edge",
        "--adc-bits",
        "4",
        "--bn-calibrate",
    ]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let notes = text.lines().filter(|l| l.trim_start().starts_with("note bn-calibrate")).count();
    assert_eq!(notes, 3, "one note per Conv/Gemm of digits_cnn:\n{text}");
    assert!(text.contains("gain=[") && text.contains("shift=["), "{text}");
}
