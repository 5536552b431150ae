//! The hostile suite as data (issue 25): every case of `tests/data/bad/hostile/hostile.json`
//! (written with its crafted files by `scripts/make_hostile_inputs.py`) runs the `cimc` binary
//! and must end with exit 1, one `error:` line holding the case's words (the file, the flag
//! that raises a limit), no panic, no internal error, no signal, within a time bound. Then the
//! regressions that need more than one command: a name with a newline through disasm and asm,
//! a `.npy` header giving a key twice, a model rewritten while `compile` reads it, reports of
//! identical runs.

mod common;

use common::{cimc, data, ok, tmp_dir, user_error};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Each case must end well within this (the huge ones are refused from their shapes).
const BOUND: Duration = Duration::from_secs(60);

fn hostile(p: &str) -> String {
    data(&format!("bad/hostile/{p}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("invariant: test paths are UTF-8")
}

/// Runs cimc with `args`, killing it past [`BOUND`] (a failure of the case).
fn cimc_bounded(args: &[String]) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cimc"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the cimc binary runs");
    loop {
        if child.try_wait().expect("invariant: waitable").is_some() {
            break;
        }
        if start.elapsed() > BOUND {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().expect("cimc ends"), start.elapsed())
}

#[test]
fn every_hostile_case_is_a_one_line_user_error_in_bounded_time() {
    let manifest = std::fs::read_to_string(hostile("hostile.json")).expect("the manifest");
    let cases: serde_json::Value = serde_json::from_str(&manifest).expect("JSON");
    let cases = cases.as_array().expect("a list of cases");
    assert!(cases.len() >= 20, "the suite lost cases: {}", cases.len());
    let tmp = tmp_dir("hostile_data");
    let dir = data("bad/hostile");
    let root = data("");
    let root = root.trim_end_matches('/');
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().expect("a name");
        let args: Vec<String> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| {
                a.as_str()
                    .expect("a string")
                    .replace("{dir}", &dir)
                    .replace("{data}", root)
                    .replace("{tmp}", s(&tmp))
            })
            .collect();
        let (out, took) = cimc_bounded(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        let needles: Vec<&str> =
            c["expect"].as_array().expect("expect").iter().filter_map(|n| n.as_str()).collect();
        let fine = out.status.code() == Some(1)
            && err.starts_with("error: ")
            && err.trim_end().lines().count() == 1
            && !err.contains("panicked")
            && !err.contains("internal error")
            && needles.iter().all(|n| err.contains(n))
            && took < BOUND;
        if !fine {
            failures.push(format!("{name}: {:?} in {took:?}: {err}", out.status));
        }
    }
    std::fs::remove_dir_all(&tmp).ok();
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn limits_are_raised_by_their_flags() {
    // The rank cap: 300 dimensions import with --max-rank 300.
    ok(&cimc(&["dump", &hostile("rank_300_input.onnx"), "--max-rank", "300"]));
    // The constants' cap, lowered: digits_cnn's weights are more than 1 KiB.
    let model = data("models/digits_cnn.onnx");
    user_error(&cimc(&["dump", &model, "--max-constant-bytes", "1024"]), &["--max-constant-bytes"]);
    // The activations' cap, lowered, for a run and for the calibration of a compile.
    let x = data("sets/digits_test_x.npy");
    let low = ["--max-activation-bytes", "1000"];
    user_error(&cimc(&[&["run", &model, "--input", &x][..], &low].concat()), &["a run at batch"]);
    let tmp = tmp_dir("hostile_flags");
    let p = tmp.join("x.cimp");
    let out = cimc(&[&["compile", &model, "-o", s(&p)][..], &low].concat());
    user_error(&out, &["calibration", "--max-activation-bytes"]);
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn huge_counts_of_eval_are_refused_at_once() {
    let tmp = tmp_dir("hostile_counts");
    let p = tmp.join("p.cimp");
    let model = data("models/digits_cnn.onnx");
    let calib = data("sets/digits_calib_x.npy");
    ok(&cimc(&["compile", &model, "--calib", &calib, "--target", "isaac", "-o", s(&p)]));
    let (x, y) = (data("sets/digits_test_x.npy"), data("sets/digits_test_y.npy"));
    let eval = ["eval", s(&p), "--data", &x, "--labels", &y];
    let worst = ["--worst-case", "1", "--float", &model, "--pgd-steps", "4000000000"];
    let (out, took) = cimc_bounded(
        &[&eval[..], &worst].concat().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    );
    user_error(&out, &["--pgd-steps 4000000000", "limit"]);
    assert!(took < BOUND);
    let noise = common::repo("targets/noise/variation.toml");
    let trials = ["--noise", &noise, "--trials", "1000000000000"];
    user_error(&cimc(&[&eval[..], &trials].concat()), &["--trials 1000000000000", "limit"]);
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn a_node_name_with_a_newline_survives_disasm_and_asm() {
    let tmp = tmp_dir("hostile_names");
    let cims = tmp.join("n.cims");
    let model = hostile("newline_name.onnx");
    let calib = hostile("x4.npy");
    let out = cimc(
        &["compile", &model, "--calib", &calib, "--target", "edge", "--emit", "stream", "-o"]
            .iter()
            .copied()
            .chain([s(&cims)])
            .collect::<Vec<_>>(),
    );
    ok(&out);
    let text = tmp.join("n.s");
    ok(&cimc(&["disasm", s(&cims), "-o", s(&text)]));
    let printed = std::fs::read_to_string(&text).expect("the text form");
    assert!(!printed.contains('\r') && !printed.contains('\u{1b}'), "{printed}");
    let back = tmp.join("back.cims");
    ok(&cimc(&["asm", s(&text), "-o", s(&back)]));
    assert_eq!(std::fs::read(&cims).expect("cims"), std::fs::read(&back).expect("back"));
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn a_npy_header_giving_a_key_twice_reads_as_numpy_does() {
    // 'shape' is (3, 7) then (1, 1, 8, 8): numpy takes the last, which fits digits_cnn.
    let out = cimc(&["run", &data("models/digits_cnn.onnx"), "--input", &hostile("dup_shape.npy")]);
    ok(&out);
}

/// Writes `bytes` over `path` in place (truncate, then write), as `onnx.save` does.
fn rewrite_in_place(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).truncate(true).open(path) {
        let _ = f.write_all(bytes);
    }
}

#[test]
fn a_model_rewritten_while_compile_reads_it_never_crashes_cimc() {
    let tmp = tmp_dir("hostile_rewrite");
    let model = tmp.join("m.onnx");
    let a = std::fs::read(data("models/mnist_resnet.onnx")).expect("a model");
    let b = std::fs::read(data("models/digits_cnn.onnx")).expect("another model");
    let calib = data("sets/mnist_calib200_x.npy");
    let mut outcomes = Vec::new();
    for round in 0..4u64 {
        std::fs::write(&model, &a).expect("writable");
        let out_path = tmp.join("m.cimp");
        let child = Command::new(env!("CARGO_BIN_EXE_cimc"))
            .args(["compile", s(&model), "--calib", &calib, "-o", s(&out_path)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the cimc binary runs");
        // Rewritten at different moments of the compile: during import, during the passes.
        std::thread::sleep(Duration::from_millis(20 + 150 * round));
        rewrite_in_place(&model, &b);
        rewrite_in_place(&model, &a);
        let out = child.wait_with_output().expect("cimc ends");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(matches!(out.status.code(), Some(0 | 1)), "round {round}: {:?}: {err}", out.status);
        assert!(!err.contains("internal error") && !err.contains("panicked"), "{err}");
        if out.status.code() == Some(1) {
            assert!(err.contains("m.onnx"), "the error names the model: {err}");
            assert!(!out_path.exists(), "nothing written after a failure");
        }
        let _ = std::fs::remove_file(&out_path);
        outcomes.push(out.status.code());
    }
    std::fs::remove_dir_all(&tmp).ok();
    eprintln!("outcomes: {outcomes:?}");
}

#[test]
fn reports_of_identical_runs_are_identical() {
    let tmp = tmp_dir("hostile_reports");
    let model = data("models/digits_cnn.onnx");
    let calib = data("sets/digits_calib_x.npy");
    let mut reports: Vec<Vec<Vec<u8>>> = Vec::new();
    for k in 0..2 {
        let dir = tmp.join(format!("run{k}"));
        std::fs::create_dir_all(&dir).expect("writable");
        let r = dir.join("r.json");
        let cims = dir.join("m.cims");
        let args = ["compile", &model, "--calib", &calib, "--target", "edge", "--emit", "stream"];
        let args: Vec<&str> =
            args.iter().copied().chain(["-o", s(&cims), "--report", s(&r)]).collect();
        ok(&cimc(&args));
        let sr = dir.join("sim.json");
        let x = hostile("digit1.npy");
        ok(&cimc(&["sim", s(&cims), "--input", &x, "--report", s(&sr)]));
        // A program (the same path for both runs: the report names it) under noise.
        let p = tmp.join("p.cimp");
        ok(&cimc(&["compile", &model, "--calib", &calib, "--target", "edge", "-o", s(&p)]));
        let nr = dir.join("noise.json");
        let (tx, ty) = (data("sets/digits_test_x.npy"), data("sets/digits_test_y.npy"));
        let noise = common::repo("targets/noise/variation.toml");
        let eval = ["eval", s(&p), "--data", &tx, "--labels", &ty, "--limit", "50"];
        let noisy = ["--noise", &noise, "--trials", "2", "--report", s(&nr)];
        ok(&cimc(&[&eval[..], &noisy].concat()));
        let files: Vec<PathBuf> =
            vec![r.clone(), r.with_extension("svg"), sr.clone(), sr.with_extension("svg"), nr];
        reports.push(files.iter().map(|f| std::fs::read(f).expect("a report")).collect());
    }
    assert_eq!(reports[0], reports[1], "identical runs give identical report files");
    std::fs::remove_dir_all(&tmp).ok();
}
