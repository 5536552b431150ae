//! The stream commands as a user meets them: `compile --emit stream`, `sim` (same outputs as
//! `run` on the program, file for file), `disasm`/`asm` (back to the same bytes), the cost
//! report, and bad streams (exit 1, one line naming the instruction, never a panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

fn cimc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimc")).args(args).output().expect("the cimc binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn user_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected exit 1: {err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks '{n}': {err}");
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cimc-cli-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// One digits test image as a .npy.
fn one_image() -> PathBuf {
    let x = cimc::npy::read(&data().join("sets/digits_test_x.npy")).unwrap();
    let t = cimc_interp::Tensor::from_data(&x).unwrap();
    let one = cimc::tensor_util::slice_batch(&t, 3, 1, 1);
    let p = tmp("x.npy");
    cimc::npy::write(&p, &one.to_data()).unwrap();
    p
}

#[test]
fn sim_equals_run_and_asm_round_trips() {
    let model = data().join("models/digits_cnn.onnx");
    let calib = data().join("sets/digits_calib_x.npy");
    let (cims, cimp) = (tmp("d.cims"), tmp("d.cimp"));
    let common = ["--calib", s(&calib), "--target", "puma"];
    ok(&cimc(
        &[&["compile", s(&model)][..], &common, &["--emit", "stream", "-o", s(&cims)]].concat(),
    ));
    ok(&cimc(&[&["compile", s(&model)][..], &common, &["-o", s(&cimp)]].concat()));
    let x = one_image();
    let (ys, yp, report) = (tmp("ys.npy"), tmp("yp.npy"), tmp("cost.json"));
    ok(&cimc(&["sim", s(&cims), "--input", s(&x), "--output", s(&ys), "--report", s(&report)]));
    ok(&cimc(&["run", s(&cimp), "--input", s(&x), "--output", s(&yp)]));
    assert_eq!(std::fs::read(&ys).unwrap(), std::fs::read(&yp).unwrap(), "sim and run differ");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert!(r["totals"]["energy_pj"].as_f64().unwrap() > 0.0, "{r}");
    assert!(report.with_extension("svg").exists());
    // disasm → asm gives the same file.
    let (text, back) = (tmp("d.s"), tmp("back.cims"));
    ok(&cimc(&["disasm", s(&cims), "-o", s(&text)]));
    ok(&cimc(&["asm", s(&text), "-o", s(&back)]));
    assert_eq!(std::fs::read(&cims).unwrap(), std::fs::read(&back).unwrap());
    // --json is one object and prints no table.
    let out = cimc(&["sim", s(&cims), "--input", s(&x), "--json"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([1, 10]));
}

#[test]
fn bad_streams_and_flags_are_user_errors() {
    let model = data().join("models/digits_cnn.onnx");
    let calib = data().join("sets/digits_calib_x.npy");
    let out = cimc(&[
        "compile",
        s(&model),
        "--calib",
        s(&calib),
        "--emit",
        "stream",
        "-o",
        s(&tmp("n.cims")),
    ]);
    user_error(&out, &["--emit stream needs --target"]);
    let cims = tmp("b.cims");
    ok(&cimc(&[
        "compile",
        s(&model),
        "--calib",
        s(&calib),
        "--target",
        "isaac",
        "--emit",
        "stream",
        "-o",
        s(&cims),
    ]));
    let bytes = std::fs::read(&cims).unwrap();
    let x = one_image();
    // Truncated: every cut is refused cleanly.
    for cut in [0, 5, 12, 40, bytes.len() / 2, bytes.len() - 1] {
        let p = tmp("cut.cims");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        user_error(&cimc(&["sim", s(&p), "--input", s(&x)]), &["cut.cims"]);
    }
    // An instruction that reads past the scratchpad: edit the text form.
    let text = tmp("b.s");
    ok(&cimc(&["disasm", s(&cims), "-o", s(&text)]));
    let t = std::fs::read_to_string(&text).unwrap();
    // (Word 0 of a dataflow stream's cores is the mailbox: its first load writes from word 1.)
    let bad = t.replacen("load dst=1 ", "load dst=4000000000 ", 1);
    assert_ne!(bad, t);
    let bad_s = tmp("bad.s");
    std::fs::write(&bad_s, bad).unwrap();
    user_error(&cimc(&["asm", s(&bad_s), "-o", s(&tmp("bad.cims"))]), &["bad.s", "instruction"]);
    // No halt.
    let no_halt: String = t.lines().filter(|l| *l != "halt").map(|l| format!("{l}\n")).collect();
    std::fs::write(&bad_s, no_halt).unwrap();
    user_error(&cimc(&["asm", s(&bad_s), "-o", s(&tmp("bad.cims"))]), &["halt"]);
    // An unknown mnemonic names the line.
    std::fs::write(&bad_s, t.replacen("halt", "hcf", 1)).unwrap();
    user_error(&cimc(&["asm", s(&bad_s), "-o", s(&tmp("bad.cims"))]), &["line", "hcf"]);
    // Wrong input shape.
    let wrong = tmp("wrong.npy");
    std::fs::copy(data().join("sets/digits_test_x.npy"), &wrong).unwrap();
    user_error(&cimc(&["sim", s(&cims), "--input", s(&wrong)]), &["wrong.npy"]);
}
