//! `cimc eval --format` (reduced float formats) and `--multiplier` (approximate 8×8
//! multipliers) on the vendored digits CNN (`docs/approximate.md`), and their errors.

mod common;
use common::{cimc, ok_json as ok, repo as path, user_error};
use std::process::Output;

fn eval(model: &str, extra: &[&str]) -> Output {
    let (x, y) =
        (path("tests/data/sets/digits_test_x.npy"), path("tests/data/sets/digits_test_y.npy"));
    let mut args = vec!["eval", model, "--data", &x, "--labels", &y, "--json"];
    args.extend_from_slice(extra);
    cimc(&args)
}

#[test]
fn formats_change_the_float_model_and_fp32_does_not() {
    let model = path("tests/data/models/digits_cnn.onnx");
    let base = ok(&eval(&model, &[]));
    let fp32 = ok(&eval(&model, &["--format", "fp32"]));
    assert_eq!(fp32["correct"], base["correct"]);
    assert_eq!(fp32["format"], "fp32");
    let bf16 = ok(&eval(&model, &["--format", "bf16"]));
    assert_eq!(bf16["format"], "bf16");
    assert!(bf16["top1"].as_f64().unwrap() > 90.0, "{bf16}");
    // Two mantissa bits and three exponent bits everywhere: far from the float model.
    let e3m2 = ok(&eval(&model, &["--format", "e3m2"]));
    let split = ok(&eval(&model, &["--format", "w=e4m3,a=e4m3,acc=fp32"]));
    assert_eq!(split["format"], "w=e4m3,a=e4m3,acc=fp32");
    assert!(e3m2["top1"].as_f64().unwrap() < base["top1"].as_f64().unwrap());
    user_error(&eval(&model, &["--format", "e9m2"]), &["--format", "e9m2"]);
    user_error(&eval(&model, &["--format", "w=bf16,q=fp16"]), &["unknown key 'q'"]);
    user_error(&eval(&model, &["--multiplier", "drum:4"]), &["--multiplier", ".cimp"]);
}

#[test]
fn several_formats_give_a_table_and_a_plot() {
    let model = path("tests/data/models/digits_cnn.onnx");
    let dir = common::tmp_dir("format_sweep");
    let svg = dir.join("formats.svg").to_string_lossy().into_owned();
    let args = ["--format", "fp32", "--format", "bf16", "--format", "e3m2", "--svg", &svg];
    let v = ok(&eval(&model, &args));
    let rows = v["formats"].as_array().expect("a list of formats");
    assert_eq!(rows.len(), 3, "{v}");
    // Each row is what a single --format run gives.
    for (row, f) in rows.iter().zip(["fp32", "bf16", "e3m2"]) {
        assert_eq!(row["format"], f);
        let single = ok(&eval(&model, &["--format", f]));
        assert_eq!(row["correct"], single["correct"], "{f}");
    }
    let plot = std::fs::read_to_string(&svg).expect("the plot is written");
    assert!(plot.starts_with("<svg") && plot.contains("e3m2"), "{plot}");
    user_error(&eval(&model, &["--format", "bf16", "--svg", &svg]), &["--svg", "--format"]);
    let sweep_and_compare = ["--format", "bf16", "--format", "fp16", "--compare", &model];
    user_error(&eval(&model, &sweep_and_compare), &["--compare", "several --format"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn multipliers_change_the_program_and_exact_does_not() {
    let dir = std::env::temp_dir().join(format!("cimc_approx_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("d.cimp").to_string_lossy().into_owned();
    let out = cimc(&[
        "compile",
        &path("tests/data/models/digits_cnn.onnx"),
        "--calib",
        &path("tests/data/sets/digits_calib_x.npy"),
        "-o",
        &prog,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let base = ok(&eval(&prog, &[]));
    let exact = ok(&eval(&prog, &["--multiplier", "exact"]));
    assert_eq!(exact["correct"], base["correct"]);
    let table = format!("table:{}", path("examples/multipliers/mul8s_1L2H.mul8"));
    for m in ["trunc:8", "drum:4", "mitchell", table.as_str()] {
        let r = ok(&eval(&prog, &["--multiplier", m]));
        assert!(r["multiplier"].as_str().unwrap().starts_with(m.split(':').next().unwrap()));
        assert!(r["top1"].as_f64().unwrap() > 10.0, "{m}: {r}");
    }
    // A strong truncation loses accuracy.
    let t12 = ok(&eval(&prog, &["--multiplier", "trunc:12"]));
    assert!(t12["top1"].as_f64().unwrap() < base["top1"].as_f64().unwrap(), "{t12}");
    let bad = dir.join("bad.mul8");
    std::fs::write(&bad, b"cimc-mul8 signed\n1234").unwrap();
    let bad_arg = format!("table:{}", bad.display());
    user_error(&eval(&prog, &["--multiplier", &bad_arg]), &["bad.mul8", "262144"]);
    user_error(&eval(&prog, &["--multiplier", "drum:0"]), &["drum:K"]);
    user_error(&eval(&prog, &["--format", "bf16"]), &["--format", "program"]);
    std::fs::remove_dir_all(&dir).ok();
}
