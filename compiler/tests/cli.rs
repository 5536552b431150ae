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
        &["unsupported_ops.onnx", "erf0", "Erf", "frob0", "Frobnicate", "com.example"],
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
