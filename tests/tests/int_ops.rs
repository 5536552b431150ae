//! The integer program of a model whose ops have integer forms only since the lookup-table and
//! element-wise steps (`tests/data/int_ops/`, made by `scripts/make_int_ops_model.py`): a
//! MobileNetV3-style net with HardSwish, a squeeze-excite block (Mul of `[N,C,H,W]` by
//! `[N,C,1,1]`), Sigmoid, Sub of two activations, Concat of inputs at different scales, Tanh, a
//! Softmax in the middle of the graph and one at the end. Its float run matches onnxruntime, it
//! compiles W8A8 with calibration, every such op becomes its integer step, and the program's
//! probabilities agree with the float model's (top-1 and output tolerance). Its stream is
//! bit-exact with its program.

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
    let g =
        onnx::import_file(&model(), &ImportOptions { batch: Some(IMAGES), ..Default::default() })
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
    let g =
        onnx::import_file(&model(), &ImportOptions { batch: Some(IMAGES), ..Default::default() })
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

/// The program's stream on the isaac preset — the squeeze-excite Mul broadcasting its
/// per-channel gate expanded by `gather` before `mul`, the tables, products and the softmax on
/// the digital units — simulated bit-exact with the program.
#[test]
fn the_stream_runs_every_new_step_bit_exact() {
    let p = compile();
    let target = cimc_backends::target::Target::preset("isaac").unwrap();
    let s = cimc_backends::stream::emit::emit(&p, &target, &Default::default())
        .unwrap_or_else(|e| panic!("emit: {e}"));
    let used = |m: &str| s.cores.iter().flat_map(|c| &c.code).any(|i| i.mnemonic() == m);
    for m in ["lut", "mul", "gather", "softmax"] {
        assert!(used(m), "no {m} in the stream");
    }
    let x = npy(&data().join("int_ops/x.npy"));
    let want = ProgramRunner::new(&p).unwrap().run(vec![x.clone()]).unwrap();
    let got = cimc_sim::stream::StreamRunner::new(&s).unwrap().run(vec![x]).unwrap();
    let bits = |t: &Tensor| -> Vec<u32> {
        t.as_f32().expect("probabilities are f32").iter().map(|v| v.to_bits()).collect()
    };
    assert_eq!(bits(&got[0]), bits(&want[0]), "the stream and the program differ");
}

/// onnxruntime's `QLinearAdd` and `QLinearMul` (com.microsoft) on random codes, scales and zero
/// points, broadcasting included (`tests/data/int_ops/qlinear.json`, made by
/// `scripts/make_qlinear_reference.py`): cimc's `Add` and `Mul` steps give the same codes but
/// where onnxruntime's f32 computation and cimc's fixed-point rounding part on a near-tie, by 1
/// LSB at most (`docs/hardware-model.md` §4).
#[test]
fn add_and_mul_agree_with_onnxruntime_qlinear_ops() {
    let text = std::fs::read_to_string(data().join("int_ops/qlinear.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (mut equal, mut total, mut worst) = (0usize, 0usize, 0i64);
    for case in json["cases"].as_array().unwrap() {
        let ints = |k: &str| -> Vec<i64> {
            case[k].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
        };
        let shape = |k: &str| -> Vec<usize> { ints(k).iter().map(|&d| d as usize).collect() };
        let (sa, sb) = (shape("a_shape"), shape("b_shape"));
        let scales: Vec<f64> =
            case["scales"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let zps = ints("zero_points");
        let signed = case["signed"].as_bool().unwrap();
        let op = if case["op"] == "QLinearAdd" { "add" } else { "mul" };
        let ty = |k: usize, sh: &[usize]| {
            let dims = sh.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
            format!(
                "{}[{dims}] q(bits=8, {}, scale=[{:?}], zp=[{}])",
                if signed { "i8" } else { "u8" },
                if signed { "signed" } else { "unsigned" },
                scales[k] as f32,
                zps[k]
            )
        };
        let g = format!(
            "graph q {{\n  input %a : {}\n  input %b : {}\n  %y : {} = {op}(%a, %b) \"n\"\n  output %y\n}}\n",
            ty(0, &sa),
            ty(1, &sb),
            ty(2, &sa)
        );
        let g = cimc_ir::parse(&g).unwrap();
        let p = cimc_backends::program::lower::lower(&g).unwrap();
        let t = |v: Vec<i64>, sh: &[usize]| {
            Tensor::I32(
                ndarray::ArrayD::from_shape_vec(
                    ndarray::IxDyn(sh),
                    v.into_iter().map(|x| x as i32).collect(),
                )
                .unwrap(),
            )
        };
        let out = ProgramRunner::new(&p)
            .unwrap()
            .run(vec![t(ints("a"), &sa), t(ints("b"), &sb)])
            .unwrap();
        let Tensor::I32(y) = &out[0] else { panic!("codes expected") };
        for (&got, want) in y.iter().zip(ints("y")) {
            let d = (got as i64 - want).abs();
            worst = worst.max(d);
            equal += (d == 0) as usize;
            total += 1;
        }
    }
    eprintln!("QLinearAdd/QLinearMul: {equal}/{total} codes equal, worst difference {worst} LSB");
    assert!(worst <= 1, "a code differs from onnxruntime's by {worst} LSB");
    assert!(equal * 100 >= total * 99, "only {equal}/{total} codes equal onnxruntime's");
}

/// An op with no integer form is refused when the graph is quantized: exit status 1 (the
/// user's model, not a bug), naming the op and the node.
#[test]
fn an_op_without_an_integer_form_is_a_user_error_naming_it() {
    let text = "graph r {\n  input %x : f32[2,4]\n  %y : f32[2] = reduce_mean(%x) {axes=[1], keep_dims=false} \"row_mean\"\n  output %y\n}\n";
    let g = cimc_ir::parse(text).unwrap();
    let calib = Tensor::F32(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[2, 4]), 0.5f32));
    let cx = PassContext { calib: Some(vec![calib]), ..Default::default() };
    let e = cimc::compile::compile(g, &cx, &[]).unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.exit_code(), 1, "{msg}");
    assert!(msg.contains("'row_mean'") && msg.contains("reduce_mean"), "{msg}");
}
