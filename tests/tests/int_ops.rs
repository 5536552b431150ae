//! The integer program of a model whose ops have integer forms only since the lookup-table and
//! element-wise steps (`tests/data/int_ops/`, made by `scripts/make_int_ops_model.py`): a
//! MobileNetV3-style net with HardSwish, a squeeze-excite block (Mul of `[N,C,H,W]` by
//! `[N,C,1,1]`), Sigmoid, Sub of two activations, Concat of inputs at different scales, Tanh, a
//! Softmax in the middle of the graph and one at the end. Its float run matches onnxruntime, it
//! compiles W8A8 with calibration, every such op becomes its integer step, and the program's
//! probabilities agree with the float model's (top-1 and output tolerance). The stream emitter
//! refuses the new steps by name (exit 1, never 2).

use cimc::onnx::{self, ImportOptions};
use cimc_backends::program::{Program, Step};
use cimc_interp::{Runner, Tensor};
use cimc_passes::PassContext;
use cimc_sim::program::ProgramRunner;
use cimc_tests::{data, npy};

const IMAGES: usize = 48;

fn model() -> std::path::PathBuf {
    data().join("int_ops/int_ops.onnx")
}

fn compile() -> Program {
    let g = onnx::import_file(
        &model(),
        &ImportOptions { batch: Some(IMAGES), ..Default::default() },
    )
    .unwrap();
    let calib = npy(&data().join("int_ops/x.npy"));
    let cx = PassContext { calib: Some(vec![calib]), ..Default::default() };
    cimc::compile::compile(g, &cx, &[]).unwrap_or_else(|e| panic!("int_ops: {e}")).0
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    let a = t.as_f32().expect("probabilities are f32");
    let n = a.shape()[1];
    a.iter().copied().collect::<Vec<_>>().chunks(n).map(<[f32]>::to_vec).collect()
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b })
}

#[test]
fn the_float_model_matches_onnxruntime() {
    let g = onnx::import_file(
        &model(),
        &ImportOptions { batch: Some(IMAGES), ..Default::default() },
    )
    .unwrap();
    let out = Runner::new(&g).unwrap().run(vec![npy(&data().join("int_ops/x.npy"))]).unwrap();
    let (abs, _) =
        cimc_tests::max_errors(&out[0], &npy(&data().join("int_ops/probs.npy"))).unwrap();
    assert!(abs < 1e-5, "float probabilities differ from onnxruntime's by {abs}");
}

#[test]
fn w8a8_program_runs_every_op_on_codes_and_agrees_with_the_float_model() {
    let p = compile();
    let count = |f: fn(&Step) -> bool| p.steps.iter().filter(|s| f(s)).count();
    // HardSwish ×2, Sigmoid, Tanh: tables; the SE gate and the attention: products.
    assert_eq!(count(|s| matches!(s, Step::Lut { .. })), 4, "lookup tables");
    assert_eq!(count(|s| matches!(s, Step::Mul { .. })), 2, "products of activations");
    assert_eq!(count(|s| matches!(s, Step::Sub { .. })), 1, "differences");
    assert_eq!(count(|s| matches!(s, Step::IntSoftmax { .. })), 1, "softmax on codes");
    assert_eq!(count(|s| matches!(s, Step::Softmax { .. })), 1, "the float epilogue");
    let x = npy(&data().join("int_ops/x.npy"));
    let got = ProgramRunner::new(&p).unwrap().run(vec![x]).unwrap();
    let want = npy(&data().join("int_ops/probs.npy"));
    let (got, want) = (rows(&got[0]), rows(&want));
    let agree = got.iter().zip(&want).filter(|(g, w)| argmax(g) == argmax(w)).count();
    let worst = got
        .iter()
        .zip(&want)
        .flat_map(|(g, w)| g.iter().zip(w).map(|(a, b)| (a - b).abs()))
        .fold(0f32, f32::max);
    eprintln!("W8A8 program: top-1 agreement {agree}/{IMAGES}, worst probability error {worst}");
    assert!(agree * 100 >= IMAGES * 90, "top-1 agreement {agree}/{IMAGES}");
    assert!(worst < 0.1, "a probability differs by {worst}");
}

#[test]
fn the_stream_emitter_refuses_the_new_steps_by_name() {
    let p = compile();
    let target = cimc_backends::target::Target::preset("isaac").unwrap();
    let e = cimc_backends::stream::emit::emit(&p, &target, &Default::default()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, cimc_backends::BackendError::Lower { .. }), "{msg}");
    assert!(msg.contains("has no instructions yet"), "{msg}");
}
