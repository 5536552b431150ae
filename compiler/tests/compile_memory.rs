//! The memory savings of a compilation change no output (`docs/compile-memory.md`):
//! - the programs and streams `cimc compile` writes are byte for byte the committed fuzz seeds,
//!   which `fuzz/make_seeds.py` made with the compiler before the savings (regenerate them
//!   with that script when a format changes on purpose);
//! - the lean runners (weights converted per layer while it runs) compute exactly what the
//!   prepared runners compute, float outputs and ADC statistics included;
//! - a model imported from its memory map (large weights owning their pages) compiles to the
//!   same program as the same bytes imported from memory.

mod common;

use cimc::onnx::{self, ImportOptions};
use cimc_backends::target::Target;
use cimc_interp::{Runner, Tensor};
use cimc_passes::tile::Chip;
use cimc_passes::{PassContext, Pipeline};
use cimc_sim::program::{AdcStats, ProgramRunner};
use common::{cimc, data, ok, repo, tmp_dir};
use std::path::Path;

#[test]
fn compiled_files_are_the_committed_seeds() {
    let dir = tmp_dir("compile_memory_seeds");
    let digits = [
        repo("examples/models/digits_cnn.onnx"),
        "--calib".into(),
        repo("examples/models/digits_calib_x.npy"),
        "--calib-samples".into(),
        "16".into(),
    ];
    // The runs of `fuzz/make_seeds.py`'s `compiled()`.
    let runs: [(&str, &str, &[&str]); 6] = [
        ("program", "seed-digits.cimp", &[]),
        ("program", "seed-digits-edge.cimp", &["--target", "edge"]),
        (
            "program",
            "seed-digits-puma-w4a4.cimp",
            &["--wbits", "4", "--abits", "4", "--act-signed", "--target", "puma"],
        ),
        ("stream", "seed-digits-edge.cims", &["--target", "edge", "--emit", "stream"]),
        (
            "stream",
            "seed-digits-edge-serial.cims",
            &["--target", "edge", "--schedule", "layer-serial", "--emit", "stream"],
        ),
        (
            "stream",
            "seed-digits-isaac-arrays16.cims",
            &["--target", "isaac", "--arrays", "16", "--emit", "stream"],
        ),
    ];
    for (kind, name, extra) in runs {
        let out = dir.join(name);
        let mut args: Vec<&str> = vec!["compile"];
        args.extend(digits.iter().map(String::as_str));
        args.extend_from_slice(extra);
        args.extend(["-o", out.to_str().expect("the temp path is UTF-8")]);
        ok(&cimc(&args));
        let got = std::fs::read(&out).expect("cimc wrote the output");
        let want = std::fs::read(repo(&format!("fuzz/seeds/{kind}/{name}")))
            .expect("the seed is committed");
        assert!(got == want, "{name}: {} bytes differ from the committed seed's", got.len());
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn calib(n: usize) -> Tensor {
    let d = cimc::npy::read(Path::new(&data("sets/mnist_calib200_x.npy")))
        .expect("the vendored calibration set reads");
    let t = Tensor::from_data(&d).expect("f32 data");
    cimc::tensor_util::slice_batch(&t, 0, n, n)
}

fn import(batch: usize) -> cimc_ir::Graph {
    let opts = ImportOptions { batch: Some(batch), ..Default::default() };
    onnx::import_file(Path::new(&data("models/mnist_resnet.onnx")), &opts)
        .expect("the vendored model imports")
}

#[test]
fn lean_float_runner_computes_what_the_prepared_one_does() {
    let mut g = import(8);
    let cx = PassContext::default();
    Pipeline::from_names(&["fold-qdq", "fold-bn", "canonicalize"])
        .and_then(|p| p.run(&mut g, &cx, &[], None))
        .expect("the float passes run");
    let x = calib(8);
    let prepared = Runner::new(&g).expect("prepares").run(vec![x.clone()]).expect("runs");
    let lean = Runner::lean(&g).expect("prepares").run(vec![x]).expect("runs");
    assert_eq!(prepared, lean);
}

#[test]
fn lean_program_runner_computes_what_the_prepared_one_does() {
    let g = import(8);
    let x = calib(16);
    let target = Target::preset("isaac").expect("the isaac preset exists");
    let cx = PassContext {
        calib: Some(vec![x.clone()]),
        chip: Some(Chip::from_target(&target, None)),
        ..Default::default()
    };
    let (program, _) = cimc::compile::compile(g, &cx, &[]).expect("compiles");
    let chunk = cimc::tensor_util::slice_batch(&x, 8, 8, 8);
    let (mut a, mut b) = (AdcStats::default(), AdcStats::default());
    let prepared = ProgramRunner::new(&program)
        .expect("prepares")
        .run_with_adc_stats(vec![chunk.clone()], &mut a)
        .expect("runs");
    let lean = ProgramRunner::lean(program)
        .expect("prepares")
        .run_with_adc_stats(vec![chunk], &mut b)
        .expect("runs");
    assert_eq!(prepared, lean);
    assert!(a.steps.iter().any(Option::is_some), "the program has crossbar steps");
    assert_eq!(a, b);
}

#[test]
fn mapped_and_in_memory_imports_compile_to_the_same_program() {
    let path = data("models/mnist_resnet.onnx");
    let opts = ImportOptions { batch: Some(8), ..Default::default() };
    let bytes = bytes::Bytes::from(std::fs::read(&path).expect("the vendored model reads"));
    let in_memory = onnx::import_bytes(bytes, Path::new(&path), &opts).expect("imports");
    let cx = || PassContext { calib: Some(vec![calib(8)]), ..Default::default() };
    let (p1, _) = cimc::compile::compile(import(8), &cx(), &[]).expect("compiles");
    let (p2, _) = cimc::compile::compile(in_memory, &cx(), &[]).expect("compiles");
    assert!(p1.to_bytes() == p2.to_bytes());
    let mut streamed = Vec::new();
    p1.write_to(&mut streamed).expect("writes to a Vec");
    assert!(streamed == p1.to_bytes(), "write_to writes to_bytes' bytes");
}
