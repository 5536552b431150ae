//! The command line as a user meets it: the README's commands work, and bad input of every kind
//! gets exit status 1 and one line naming the file (and the node), never a panic.

use std::path::PathBuf;
use std::process::{Command, Output};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

fn cimc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimc")).args(args).output().expect("the cimc binary runs")
}

fn path(p: &str) -> String {
    data().join(p).to_string_lossy().into_owned()
}

/// Exit status 1, no panic, and a message on stderr containing every `needle`.
fn assert_user_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected exit 1, got {:?}; stderr: {err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks '{n}': {err}");
    }
}

#[test]
fn eval_digits_reports_top1_as_json() {
    let out = cimc(&[
        "eval",
        &path("models/digits_cnn.onnx"),
        "--data",
        &path("sets/digits_test_x.npy"),
        "--labels",
        &path("sets/digits_test_y.npy"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["samples"], 597);
    let top1 = v["top1"].as_f64().unwrap();
    assert!((top1 - 99.16).abs() <= 100.0 / 597.0 + 1e-9, "top1 {top1}");
    assert!(v["seconds"].as_f64().unwrap() >= 0.0);
}

#[test]
fn dump_then_run_the_text_ir_gives_the_same_outputs() {
    let dir = std::env::temp_dir().join(format!("cimc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cir = dir.join("digits.cir");
    let out = cimc(&[
        "dump",
        &path("models/digits_cnn.onnx"),
        "--batch",
        "4",
        "-o",
        cir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let x = dir.join("x.npy");
    let sample = cimc::npy::read(&data().join("sets/digits_test_x.npy")).unwrap();
    let t = cimc_interp::Tensor::from_data(&sample).unwrap();
    cimc::npy::write(&x, &cimc::tensor_util::slice_batch(&t, 0, 4, 4).to_data()).unwrap();
    let (y1, y2) = (dir.join("y1.npy"), dir.join("y2.npy"));
    let a = cimc(&[
        "run",
        &path("models/digits_cnn.onnx"),
        "--input",
        x.to_str().unwrap(),
        "--output",
        y1.to_str().unwrap(),
    ]);
    let b = cimc(&[
        "run",
        cir.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        y2.to_str().unwrap(),
    ]);
    assert!(a.status.success() && b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(std::fs::read(&y1).unwrap(), std::fs::read(&y2).unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn missing_file() {
    assert_user_error(&cimc(&["dump", "no/such/model.onnx"]), &["no/such/model.onnx"]);
}

#[test]
fn empty_truncated_and_random_files() {
    for f in ["bad/empty.onnx", "bad/truncated.onnx", "bad/random.onnx"] {
        assert_user_error(&cimc(&["dump", &path(f)]), &[f]);
    }
}

#[test]
fn unsupported_ops_are_listed_in_one_error() {
    let out = cimc(&["dump", &path("bad/unsupported_ops.onnx")]);
    assert_user_error(
        &out,
        &["unsupported_ops.onnx", "acosh0", "Acosh", "frob0", "Frobnicate", "com.example"],
    );
}

#[test]
fn a_node_input_that_nothing_produces() {
    assert_user_error(&cimc(&["dump", &path("bad/dangling_input.onnx")]), &["add_ghost", "ghost"]);
}

#[test]
fn inconsistent_shapes() {
    assert_user_error(&cimc(&["dump", &path("bad/inconsistent_shapes.onnx")]), &["bad_add"]);
}

#[test]
fn npy_of_wrong_shape_dtype_or_format() {
    for f in ["bad/digits_wrong_shape.npy", "bad/digits_wrong_dtype.npy", "bad/not_npy.npy"] {
        let out = cimc(&["run", &path("models/digits_cnn.onnx"), "--input", &path(f)]);
        assert_user_error(&out, &[f]);
    }
}

#[test]
fn labels_that_do_not_fit() {
    let out = cimc(&[
        "eval",
        &path("models/digits_cnn.onnx"),
        "--data",
        &path("sets/digits_test_x.npy"),
        "--labels",
        &path("sets/mnist_test500_y.npy"),
    ]);
    assert_user_error(&out, &["labels"]);
}

#[test]
fn bad_command_line_is_a_user_error() {
    let out = cimc(&["dump"]);
    assert_eq!(out.status.code(), Some(1));
    let out = cimc(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    let out = cimc(&["dump", &path("models/digits_cnn.onnx"), "--input-shape", "input"]);
    assert_user_error(&out, &["--input-shape"]);
}

#[test]
fn broken_text_ir_names_the_line() {
    let dir = std::env::temp_dir().join(format!("cimc-cli-ir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("broken.cir");
    std::fs::write(
        &f,
        "graph g {\n  input %x : f32[1,4]\n  %y : f32[1,4] = relu(%nothing)\n  output %y\n}\n",
    )
    .unwrap();
    assert_user_error(&cimc(&["dump", f.to_str().unwrap()]), &["broken.cir", "line 3"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_target_files_name_the_file_and_the_key() {
    let dir = data().join("bad_targets");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let expect = text.lines().next().and_then(|l| l.strip_prefix("# expect:")).unwrap().trim();
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        let out = cimc(&[
            "compile",
            &path("models/digits_cnn.onnx"),
            "--calib",
            &path("sets/digits_calib_x.npy"),
            "--target",
            &p.to_string_lossy(),
            "-o",
            &std::env::temp_dir().join("cimc_bad_target.cimp").to_string_lossy(),
        ]);
        assert_user_error(&out, &[&file, expect]);
        n += 1;
    }
    assert!(n >= 10, "only {n} bad target cases");
}

#[test]
fn unknown_target_and_flags_without_target() {
    let out = cimc(&[
        "compile",
        &path("models/digits_cnn.onnx"),
        "--target",
        "nosuchchip",
        "-o",
        "x.cimp",
    ]);
    assert_user_error(&out, &["nosuchchip", "isaac"]);
    let out = cimc(&["compile", &path("models/digits_cnn.onnx"), "--arrays", "10", "-o", "x.cimp"]);
    assert_user_error(&out, &["--target"]);
    let out = cimc(&[
        "compile",
        &path("models/digits_cnn.onnx"),
        "--calib",
        &path("sets/digits_calib_x.npy"),
        "--target",
        "edge",
        "--adc-range",
        "sometimes",
        "-o",
        "x.cimp",
    ]);
    assert_user_error(&out, &["--adc-range", "sometimes"]);
}

/// `compile --target --report`: the mapping report is deterministic JSON with the target and its
/// hash echoed, the table names every crossbar layer, and the program evaluates to the float
/// accuracy within a few images.
#[test]
fn compile_for_a_target_writes_a_report_and_a_program() {
    let dir = std::env::temp_dir().join(format!("cimc_report_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("d.cimp");
    let report = dir.join("d.json");
    let args = |prog: &PathBuf, report: &PathBuf| {
        cimc(&[
            "compile",
            &path("models/digits_cnn.onnx"),
            "--calib",
            &path("sets/digits_calib_x.npy"),
            "--target",
            "isaac",
            "--report",
            &report.to_string_lossy(),
            "-o",
            &prog.to_string_lossy(),
        ])
    };
    let out = args(&prog, &report);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("target isaac (hash "), "{table}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["target"]["name"], "isaac");
    assert_eq!(r["target_hash"].as_str().unwrap().len(), 16);
    let layers = r["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "digits_cnn has two convs and a Gemm");
    for l in layers {
        assert!(table.contains(l["name"].as_str().unwrap()), "{table}");
        let u = l["utilization"].as_f64().unwrap();
        assert!(u > 0.0 && u <= 1.0, "{l}");
        assert!(l["clip_rate"].as_f64().is_some(), "calibrated layers report a clip rate: {l}");
    }
    assert!(dir.join("d.svg").exists());
    // Deterministic: the same command gives the same bytes.
    let (prog2, report2) = (dir.join("e.cimp"), dir.join("e.json"));
    assert!(args(&prog2, &report2).status.success());
    assert_eq!(std::fs::read(&report).unwrap(), std::fs::read(&report2).unwrap());
    assert_eq!(std::fs::read(&prog).unwrap(), std::fs::read(&prog2).unwrap());
    let out = cimc(&[
        "eval",
        &prog.to_string_lossy(),
        "--data",
        &path("sets/digits_test_x.npy"),
        "--labels",
        &path("sets/digits_test_y.npy"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let top1 = v["top1"].as_f64().unwrap();
    assert!(top1 >= 98.0, "digits on isaac: {top1}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn dump_with_a_target_prints_the_stamp_and_the_tile_map() {
    let out = cimc(&[
        "dump",
        &path("models/digits_cnn.onnx"),
        "--calib",
        &path("sets/digits_calib_x.npy"),
        "--target",
        "edge",
        "--adc-range",
        "worst",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  target \"edge\" hash="), "{text}");
    assert!(text.contains("xbar {encoding=differential, array=[64, 64]"), "{text}");
    assert!(text.contains("tile {replica=0, group=0"), "{text}");
    assert!(text.contains("  digital"), "{text}");
    // Written to a file, the dump reads back: the tile map is part of the IR.
    let f = std::env::temp_dir().join(format!("cimc_tiled_{}.cir", std::process::id()));
    let out = cimc(&[
        "dump",
        &path("models/digits_cnn.onnx"),
        "--calib",
        &path("sets/digits_calib_x.npy"),
        "--target",
        "edge",
        "--adc-range",
        "worst",
        "-o",
        &f.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(&f).unwrap();
    assert_eq!(written, text);
    let data = std::fs::read(f.with_extension("cir.data")).unwrap();
    let g = cimc_ir::parse_with_data(&written, Some(&data)).unwrap_or_else(|e| panic!("{e}"));
    cimc_ir::verify::verify(&g).unwrap();
    assert_eq!(g.to_string(), text);
}

#[test]
fn mapping_that_cannot_work_is_a_user_error() {
    let compile = |extra: &[&str]| {
        let mut args = vec![
            "compile".to_string(),
            path("models/digits_cnn.onnx"),
            "--calib".into(),
            path("sets/digits_calib_x.npy"),
            "--target".into(),
            "isaac".into(),
            "-o".into(),
            std::env::temp_dir().join("cimc_map_err.cimp").to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        cimc(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // digits_cnn needs 7 arrays of 128x128 (one per weight slice: isaac's flipped encoding).
    assert_user_error(&compile(&["--arrays", "2"]), &["needs 7 arrays", "budget is 2"]);
    // Flipped, 128 rows x 1 x 3 partial sums stay under 256: not lossless in a 7-bit ADC.
    assert_user_error(
        &compile(&["--adc-range", "lossless", "--adc-bits", "7"]),
        &["adc.bits = 7", "largest sum 255 > 127"],
    );
    // In isaac's 8-bit ADC they are: every layer is then exact.
    let out = compile(&["--adc-range", "lossless", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &v["mapping"];
    assert_eq!(m["totals"]["lossless_layers"], m["totals"]["crossbar_layers"], "{m}");
}
