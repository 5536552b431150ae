//! A stream and a program carry the whole target they were compiled for: `cimc sim --report`
//! on a stream compiled for a target file needs no `--target`, and gives the cost that
//! `--target FILE` gives; `--target` may replace the cost figures with those of a target that
//! maps the same way, and is refused for one that maps differently (`docs/stream.md`).

mod common;
use common::{cimc, data, ok, ok_json, tmp_dir, user_error};
use std::path::Path;

/// A chip that is no preset: the edge geometry with a 5-bit ADC, and cost figures of its own.
const CHIP: &str = r#"
name = "test-chip"
description = "written by cli_stream_target.rs"
[array]
rows = 64
cols = 64
cell_bits = 1
count = 64
[adc]
bits = 5
range = "calib"
[core]
arrays = 8
[cost]
adc_energy_pj = 7.25
xbar_read_energy_pj = 0.125
global_mem_pj_per_byte = 33.0
clock_ghz = 0.5
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One digits test image as a .npy.
fn one_image(dir: &Path) -> String {
    let x = cimc::npy::read(Path::new(&data("sets/digits_test_x.npy"))).unwrap();
    let t = cimc_interp::Tensor::from_data(&x).unwrap();
    let one = cimc::tensor_util::slice_batch(&t, 0, 1, 1);
    let p = dir.join("x.npy");
    cimc::npy::write(&p, &one.to_data()).unwrap();
    s(&p).to_string()
}

/// `cimc sim STREAM --report` with `extra` flags: the report's JSON.
fn sim_report(dir: &Path, stream: &Path, x: &str, tag: &str, extra: &[&str]) -> serde_json::Value {
    let report = dir.join(format!("{tag}.json"));
    let args = [&["sim", s(stream), "--input", x, "--report", s(&report), "--json"][..], extra];
    ok_json(&cimc(&args.concat()));
    serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap()
}

#[test]
fn sim_reports_cost_of_the_recorded_target_file() {
    let dir = tmp_dir("stream_target");
    let chip = dir.join("chip.toml");
    std::fs::write(&chip, CHIP).unwrap();
    let (model, calib) = (data("models/digits_cnn.onnx"), data("sets/digits_calib_x.npy"));
    let common = ["compile", &model, "--calib", &calib, "--calib-samples", "16", "--target"];
    let cims = dir.join("m.cims");
    ok(&cimc(&[&common[..], &[s(&chip), "--emit", "stream", "-o", s(&cims)]].concat()));
    let x = one_image(&dir);

    // No --target: the recorded target file's figures, the same report as with --target FILE.
    let recorded = sim_report(&dir, &cims, &x, "recorded", &[]);
    let given = sim_report(&dir, &cims, &x, "given", &["--target", s(&chip)]);
    assert_eq!(recorded, given);
    assert_eq!(recorded["target"], "test-chip", "{recorded}");
    let energy = |r: &serde_json::Value| r["totals"]["energy_pj"].as_f64().unwrap();
    assert!(energy(&recorded) > 0.0, "{recorded}");

    // The same geometry with other cost figures: accepted, and its figures are used.
    let dearer = dir.join("dearer.toml");
    std::fs::write(&dearer, CHIP.replace("adc_energy_pj = 7.25", "adc_energy_pj = 70.25")).unwrap();
    let other = sim_report(&dir, &cims, &x, "dearer", &["--target", s(&dearer)]);
    assert!(energy(&other) > energy(&recorded), "{other}");

    // A target that maps differently is refused: its figures would describe another stream.
    let report = dir.join("edge.json");
    let out = cimc(&["sim", s(&cims), "--input", &x, "--report", s(&report), "--target", "edge"]);
    user_error(&out, &["--target edge", "maps differently", "test-chip"]);

    // The program carries the whole target too, cost figures included.
    let cimp = dir.join("m.cimp");
    ok(&cimc(&[&common[..], &[s(&chip), "-o", s(&cimp)]].concat()));
    let p = cimc_backends::program::Program::from_bytes(&std::fs::read(&cimp).unwrap()).unwrap();
    let t = p.target.as_ref().and_then(|r| r.target()).expect("the program records its target");
    let file = cimc_backends::target::Target::load(&chip).unwrap();
    assert_eq!(t, &file);
    assert_eq!(t.cost.adc_energy_pj, 7.25);
}
