//! `cimc compile --auto-bits`: the chosen widths come out as the `--bits` TOML, which compiles
//! back to the same program; budgets that cannot be met are user errors.

mod common;
use common::{cimc, data, ok, user_error};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cimc-mp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn auto_bits_toml_compiles_back_to_the_same_program() {
    let (model, calib) = (data("models/mnist_cnn.onnx"), data("sets/mnist_calib200_x.npy"));
    let (auto, again) = (tmp("auto.cimp"), tmp("again.cimp"));
    let (bits, report) = (tmp("bits.toml"), tmp("report.json"));
    let out = cimc(&[
        "compile",
        &model,
        "--calib",
        &calib,
        "--auto-bits",
        "--budget",
        "weight-bits=5",
        "--bits-out",
        bits.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "-o",
        auto.to_str().unwrap(),
        "--json",
    ]);
    ok(&out);
    // The report: the choice is within the budget and never worse than uniform widths on the
    // calibration samples.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let mp = &r["passes"]["mixed-precision"];
    assert_eq!(mp["budget"], "weight-bits=5");
    let chosen = &mp["chosen"];
    assert!(chosen["average_wbits"].as_f64().unwrap() <= 5.0 + 1e-9, "{chosen}");
    let uniform = &mp["uniform"];
    assert_eq!(uniform["average_wbits"].as_f64(), Some(5.0), "{uniform}");
    assert!(
        chosen["measured_error"].as_f64().unwrap() <= uniform["measured_error"].as_f64().unwrap()
    );
    // Wall-clock fields are in the report only with --time-passes (reports are deterministic).
    assert!(mp.get("sensitivity_seconds").is_none(), "{mp}");
    let layers = mp["layers"].as_array().unwrap();
    assert!(!layers.is_empty());
    for l in layers {
        assert_eq!(l["weight_sensitivity"].as_object().unwrap().len(), 6, "{l}");
    }
    // The TOML names every layer with its chosen width, and compiling with it gives the
    // same program.
    let toml = std::fs::read_to_string(&bits).unwrap();
    for (l, w) in layers.iter().zip(chosen["wbits"].as_array().unwrap()) {
        let entry = format!("[layers.{:?}]\nwbits = {w}\n", l["name"].as_str().unwrap());
        assert!(toml.contains(&entry), "{entry} not in\n{toml}");
    }
    ok(&cimc(&[
        "compile",
        &model,
        "--calib",
        &calib,
        "--bits",
        bits.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
        "--json",
    ]));
    assert!(
        std::fs::read(&auto).unwrap() == std::fs::read(&again).unwrap(),
        "the --bits TOML of --auto-bits compiles to another program"
    );
}

#[test]
fn budgets_that_cannot_be_met_are_user_errors() {
    let (model, calib) = (data("models/mnist_cnn.onnx"), data("sets/mnist_calib200_x.npy"));
    let o = tmp("x.cimp");
    let o = o.to_str().unwrap();
    let base = ["compile", &model, "-o", o, "--auto-bits", "--budget"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        cimc(&a)
    };
    user_error(
        &with(&[
            "weight-bits=3",
            "--calib",
            &calib,
            "--bits-candidates",
            "4,8",
            "--calib-samples",
            "8",
        ]),
        &["smallest achievable"],
    );
    user_error(&with(&["arrays=10", "--calib", &calib, "--calib-samples", "8"]), &["--target"]);
    user_error(&with(&["weight-bits=4"]), &["--calib"]);
    user_error(&with(&["bits=4", "--calib", &calib]), &["expected arrays=N"]);
}
