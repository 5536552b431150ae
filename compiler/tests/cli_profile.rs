//! `cimc run --profile`: the per-step profile of a float model (table and JSON), and the clear
//! error for a compiled program.

mod common;
use common::*;

#[test]
fn profile_lists_every_step_and_sums_them() {
    let out = cimc(&[
        "run",
        &data("models/digits_cnn.onnx"),
        "--input",
        &data("sets/digits_calib_x.npy"),
        "--profile",
        "2",
        "--json",
    ]);
    let v = ok_json(&out);
    let steps = v["steps"].as_array().expect("a list of steps");
    assert!(steps.len() >= 3, "digits_cnn runs at least two convs and a Gemm: {v}");
    assert!(steps.iter().any(|s| s["ops"].as_str().is_some_and(|o| o.starts_with("conv"))));
    let sum: f64 = steps.iter().map(|s| s["ms"].as_f64().expect("ms")).sum();
    let total = v["total_ms"].as_f64().expect("total_ms");
    assert!((sum - total).abs() <= 1e-9 * total.max(1.0), "total {total} != sum {sum}");
    let kinds: usize = v["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| k["steps"].as_u64().expect("steps") as usize)
        .sum();
    assert_eq!(kinds, steps.len(), "every step counted in one kind");

    let table = cimc(&[
        "run",
        &data("models/digits_cnn.onnx"),
        "--input",
        &data("sets/digits_calib_x.npy"),
        "--profile",
    ]);
    ok(&table);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("total (sum of step minima)"), "{text}");
}

#[test]
fn profile_of_a_program_is_a_user_error() {
    let dir = tmp_dir("profile");
    let prog = dir.join("d.cimp").to_string_lossy().into_owned();
    ok(&cimc(&[
        "compile",
        &data("models/digits_cnn.onnx"),
        "--calib",
        &data("sets/digits_calib_x.npy"),
        "-o",
        &prog,
    ]));
    let out = cimc(&["run", &prog, "--input", &data("sets/digits_calib_x.npy"), "--profile"]);
    user_error(&out, &["d.cimp", "--profile", "float model"]);
    std::fs::remove_dir_all(&dir).ok();
}
