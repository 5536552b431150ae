//! `cimc eval --worst-case` on the command line (`docs/worst-case.md`): the JSON report of the
//! digits CNN on the `isaac` preset, the plot, determinism, and the errors.

mod common;
use common::{cimc, data, user_error};

#[test]
fn worst_case_report_plot_and_errors() {
    let dir = std::env::temp_dir().join(format!("cimc_worst_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("d.cimp").to_string_lossy().into_owned();
    let model = data("models/digits_cnn.onnx");
    let out = cimc(&[
        "compile",
        &model,
        "--calib",
        &data("sets/digits_calib_x.npy"),
        "--target",
        "isaac",
        "-o",
        &prog,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = dir.join("wc.svg").to_string_lossy().into_owned();
    let (x, y) = (data("sets/digits_test_x.npy"), data("sets/digits_test_y.npy"));
    let args = [
        "eval",
        &prog,
        "--data",
        &x,
        "--labels",
        &y,
        "--limit",
        "40",
        "--worst-case",
        "3",
        "--sigma",
        "0.05",
        "--float",
        &model,
        "--pgd-steps",
        "2",
        "--trials",
        "1",
        "--svg",
        &svg,
        "--json",
    ];
    let out = cimc(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["samples"], 40);
    let row = &v["rows"][0];
    let (worst, nominal) =
        (row["worst_top1"].as_f64().unwrap(), v["nominal_top1"].as_f64().unwrap());
    assert!(worst < nominal - 20.0, "k = 3 at σ 0.05 hurts: {v}");
    assert!(row["random_sign"]["mean"].as_f64().unwrap() > worst);
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    // Same input, same seed: byte-identical report apart from the time.
    let again: serde_json::Value = serde_json::from_slice(&cimc(&args).stdout).unwrap();
    assert_eq!(again["rows"], v["rows"]);
    assert_eq!(again["mean_case"], v["mean_case"]);

    let base = ["eval", &prog, "--data", &x, "--labels", &y, "--limit", "40", "--worst-case", "1"];
    user_error(&cimc(&base), &["--float"]);
    let mut neg = base.to_vec();
    neg.extend(["--float", &model, "--sigma", "2"]);
    user_error(&cimc(&neg), &["sigma"]);
    let float_args = ["eval", &model, "--data", &x, "--labels", &y, "--worst-case", "1"];
    user_error(&cimc(&float_args), &["compiled program"]);
    let _ = std::fs::remove_dir_all(&dir);
}
