//! Quantized models in onnxruntime's QOperator format, and the dense layers and quantized
//! graphs of issue 19 that compilation refused (data and references: `tests/data/qop/`, made
//! by `scripts/make_qoperator_models.py`).
//!
//! A QOperator model is imported as the `DequantizeLinear → float op → QuantizeLinear` form
//! (`compiler/src/onnx/nodes/qoperator.rs`): its float interpretation is compared with
//! onnxruntime's run of the same quantization in QDQ form with no graph optimization (the ONNX
//! meaning), and its program, compiled without calibration data, layer by layer with the codes
//! of onnxruntime's integer kernels, as `tests/quantized.rs` does for the QDQ model.

use cimc::onnx::{self, ImportOptions};
use cimc_backends::program::{Program, Step};
use cimc_interp::{Runner, Tensor};
use cimc_ir::{Graph, Op};
use cimc_passes::PassContext;
use cimc_sim::program::ProgramRunner;
use cimc_tests::{data, npy};
use std::path::PathBuf;

fn qop(file: &str) -> PathBuf {
    data().join("qop").join(file)
}

/// The model with its symbolic batch set to its test input's.
fn import(model: &str) -> Graph {
    let batch = input(model).shape().first().copied();
    let g = onnx::import_file(
        &qop(&format!("{model}.onnx")),
        &ImportOptions { batch, ..Default::default() },
    )
    .unwrap_or_else(|e| panic!("import {model}: {e}"));
    cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("verify {model}: {e}"));
    g
}

fn compile(model: &str, calib: Option<Vec<Tensor>>) -> cimc::error::Result<Program> {
    let cx = PassContext { calib, ..PassContext::default() };
    cimc::compile::compile(import(model), &cx, &[]).map(|(p, _)| p)
}

fn input(model: &str) -> Tensor {
    npy(&qop(&format!("{model}.x.npy")))
}

fn run_float(model: &str) -> Tensor {
    let g = import(model);
    Runner::new(&g).unwrap().run(vec![input(model)]).unwrap().remove(0)
}

fn run_program(p: &Program, model: &str) -> Tensor {
    ProgramRunner::new(p).unwrap().run(vec![input(model)]).unwrap().remove(0)
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_data().to_f64_vec()
}

/// The scale of the DequantizeLinear that makes the graph's output.
fn output_scale(g: &Graph) -> f64 {
    let p = g.producer(g.outputs()[0]).expect("the output has a producer");
    assert!(matches!(g.node(p).op, Op::DequantizeLinear { .. }), "output not dequantized");
    g.value(g.node(p).inputs[1]).const_data().unwrap().get_f64(0)
}

/// Largest absolute difference.
fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "sizes");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

const QOPERATOR: &[&str] =
    &["mnist_cnn_int8_qop", "mlp_int8_qop", "pool_int8_qop", "branches_int8_qop"];

/// The float interpretation of each QOperator model is the ONNX meaning of its expansion: at
/// most one output step from onnxruntime's unoptimized QDQ run (a float sum in another order
/// may cross a rounding boundary), and equal on nearly every element.
#[test]
fn qoperator_float_interpretation_matches_the_qdq_meaning() {
    for model in QOPERATOR {
        let got = values(&run_float(model));
        let want = values(&npy(&qop(&format!("{model}.float.npy"))));
        let step = output_scale(&import(model));
        let equal = got.iter().zip(&want).filter(|(a, b)| (*a - *b).abs() <= 1e-6 * step).count();
        let worst = max_diff(&got, &want);
        eprintln!("{model}: {equal}/{} outputs equal, worst {:.2} steps", got.len(), worst / step);
        assert!(worst <= step * 1.0001, "{model}: {worst} > one output step {step}");
        assert!(equal * 100 >= got.len() * 95, "{model}: only {equal}/{} equal", got.len());
    }
}

/// onnxruntime's codes for the buffer cimc calls `name` (a QOperator node's name, a tensor's,
/// or `<input>_q`).
fn codes(model: &str, name: &str) -> Option<Tensor> {
    let dir = qop(&format!("{model}.codes"));
    [name, name.trim_end_matches("_q")].into_iter().find_map(|k| {
        let f = dir.join(format!("{}.npy", k.replace('/', "~")));
        f.exists().then(|| {
            let t = npy(&f);
            let v: Vec<i32> = t.to_data().to_i64_vec().into_iter().map(|v| v as i32).collect();
            Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(t.shape()), v).unwrap())
        })
    })
}

/// Runs step `i` of `p` alone on the given input codes.
fn run_step(p: &Program, i: usize, inputs: Vec<Tensor>) -> Tensor {
    let step = p.steps[i].clone();
    let bufs = cimc_backends::program::step_buffers(&step);
    let (ins, out) = bufs.split_at(bufs.len() - 1);
    let single = Program {
        name: format!("step {i}"),
        buffers: p.buffers.clone(),
        inputs: ins.to_vec(),
        outputs: out.to_vec(),
        steps: vec![step],
        origins: vec![p.origins[i].clone()],
        target: None,
    };
    ProgramRunner::new(&single).unwrap().run(inputs).unwrap().remove(0)
}

/// (codes compared, codes equal, worst difference in LSB, steps compared) of every program
/// step of `model` fed onnxruntime's input codes.
fn layer_by_layer(model: &str) -> (usize, usize, i64, usize) {
    let p = compile(model, None).unwrap_or_else(|e| panic!("{model}: {e}"));
    let (mut total, mut equal, mut worst, mut compared) = (0, 0, 0, 0);
    for (i, step) in p.steps.iter().enumerate() {
        if matches!(step, Step::Quantize { .. } | Step::Dequantize { .. }) {
            continue;
        }
        let bufs = cimc_backends::program::step_buffers(step);
        let (ins, out) = bufs.split_at(bufs.len() - 1);
        let inputs: Option<Vec<Tensor>> =
            ins.iter().map(|&b| codes(model, &p.buffers[b].name)).collect();
        let (Some(inputs), Some(want)) = (inputs, codes(model, &p.buffers[out[0]].name)) else {
            panic!("{model} step {i} ({}): no onnxruntime codes for its buffers", p.origins[i]);
        };
        let got = run_step(&p, i, inputs).to_data().to_i64_vec();
        let want = want.to_data().to_i64_vec();
        assert_eq!(got.len(), want.len(), "{model} step {i}: sizes");
        let eq = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).max().unwrap_or(0);
        eprintln!(
            "{model} step {i:2} {:<10} {:<22}: {eq}/{} codes equal, max difference {max} LSB",
            step.name(),
            p.origins[i],
            got.len()
        );
        total += got.len();
        equal += eq;
        worst = worst.max(max);
        compared += 1;
    }
    (total, equal, worst, compared)
}

/// The MNIST CNN in QOperator form (QLinearConv, QGemm) compiles without calibration data and
/// each step agrees with onnxruntime's integer kernels as the QDQ model's do: the program's
/// requantization rounds the exact accumulator once, onnxruntime's multiplies it by a float
/// scale, so a code may differ by one LSB where the two round a tie or a near-tie apart.
/// So do QLinearAveragePool and QLinearGlobalAveragePool (com.microsoft).
#[test]
fn qoperator_cnn_layer_by_layer_against_onnxruntime() {
    for (model, steps) in [("mnist_cnn_int8_qop", 6), ("pool_int8_qop", 3)] {
        let (total, equal, worst, compared) = layer_by_layer(model);
        let rate = 100.0 * equal as f64 / total as f64;
        eprintln!("{model}: {equal}/{total} codes equal ({rate:.3} %), worst {worst} LSB");
        assert!(compared >= steps, "{model}: compared only {compared} steps");
        assert!(rate >= 99.0, "{model}: only {rate:.3} % of codes equal onnxruntime's");
        assert!(worst <= 1, "{model}: a code differs from onnxruntime's by {worst} LSB");
    }
}

/// The MLP in QOperator form: QLinearMatMul then QLinearAdd of the bias become one Gemm step,
/// whose bias is added to the exact accumulator; onnxruntime rounds the product to 8 bits
/// before adding the bias, so a code may differ by one LSB (two roundings against one).
#[test]
fn qoperator_mlp_layer_by_layer_against_onnxruntime() {
    let (total, equal, worst, compared) = layer_by_layer("mlp_int8_qop");
    let rate = 100.0 * equal as f64 / total as f64;
    eprintln!("mlp_int8_qop: {equal}/{total} codes equal ({rate:.3} %), worst {worst} LSB");
    assert!(compared >= 2, "compared only {compared} steps");
    assert!(rate >= 75.0, "only {rate:.3} % of codes equal onnxruntime's");
    assert!(worst <= 1, "a code differs from onnxruntime's by {worst} LSB");
}

/// Each QOperator program end to end: within two output steps of onnxruntime's integer run.
#[test]
fn qoperator_programs_end_to_end() {
    for model in ["mnist_cnn_int8_qop", "mlp_int8_qop", "pool_int8_qop"] {
        let p = compile(model, None).unwrap_or_else(|e| panic!("{model}: {e}"));
        let got = values(&run_program(&p, model));
        let want = values(&npy(&qop(&format!("{model}.ort.npy"))));
        let step = output_scale(&import(model));
        let worst = max_diff(&got, &want);
        eprintln!("{model}: program vs onnxruntime: worst {:.2} output steps", worst / step);
        assert!(worst <= 2.0001 * step, "{model}: {worst} > two output steps {step}");
    }
}

/// QLinearMul and QLinearConcat import and run; compiling needs an integer Mul of two
/// activations, which the program may not have: then a user error naming the node, never an
/// internal one.
#[test]
fn qoperator_mul_concat_compile_or_name_the_node() {
    match compile("branches_int8_qop", None) {
        Ok(p) => assert!(!p.steps.is_empty()),
        Err(e) => {
            assert_eq!(e.exit_code(), 1, "{e}");
            assert!(e.to_string().contains("QLinear"), "{e}");
        }
    }
}

/// ConvInteger and MatMulInteger run in the float interpreter, exactly as onnxruntime's.
#[test]
fn integer_ops_match_onnxruntime() {
    let got = run_float("integer_ops").to_data().to_i64_vec();
    let want = npy(&qop("integer_ops.ort.npy")).to_data().to_i64_vec();
    assert_eq!(got, want);
}

/// Compiles a float model calibrated on its own test input and runs it.
fn calibrated_program(model: &str) -> (Vec<f64>, Vec<f64>) {
    let p = compile(model, Some(vec![input(model)])).unwrap_or_else(|e| panic!("{model}: {e}"));
    (values(&run_program(&p, model)), values(&npy(&qop(&format!("{model}.ort.npy")))))
}

/// MatMul + Add of a constant bias (the dense layer of keras2onnx, tf2onnx, CNTK), MatMul of a
/// 3-D input and MatMul with the weight on the left compile as Gemms (they failed with "'B'
/// has no quantization parameters"); the 8-bit program stays within 3 % of the output range.
#[test]
fn dense_layers_compile_as_gemm() {
    for model in ["mlp", "dense_3d", "dense_left"] {
        let (got, want) = calibrated_program(model);
        let range = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = max_diff(&got, &want);
        eprintln!("{model}: program vs onnxruntime: worst {worst:.4} of range {range:.4}");
        assert!(worst <= 0.03 * range, "{model}: {worst} vs range {range}");
    }
}

/// onnxruntime's QDQ models of issue 19, compiled without calibration data: a graph input
/// transposed before its QuantizeLinear (was exit 2), a Softmax wrapped in Q/DQ (was a
/// message naming no cause), the MLP of MatMul + Add; each within two output steps.
#[test]
fn onnxruntime_qdq_models_compile_without_calibration() {
    for model in ["transposed_int8_qdq", "softmax_int8_qdq", "mlp_int8_qdq"] {
        let p = compile(model, None).unwrap_or_else(|e| panic!("{model}: {e}"));
        let got = values(&run_program(&p, model));
        let want = values(&npy(&qop(&format!("{model}.ort.npy"))));
        let step = output_scale(&import(model));
        let worst = max_diff(&got, &want);
        eprintln!("{model}: program vs onnxruntime: worst {:.2} output steps", worst / step);
        assert!(worst <= 2.0001 * step, "{model}: {worst} > two output steps {step}");
    }
}

/// A per-channel QCDQ weight through a Transpose into a MatMul (Brevitas' Linear export; was
/// exit 2, "quantization along axis 0 needs 12 scale(s)..."): its scales follow the axis, and
/// the output, read as the accumulator, is the float product of the dequantized operands.
#[test]
fn per_channel_weight_through_transpose() {
    let p = compile("weight_transposed", None).unwrap_or_else(|e| panic!("{e}"));
    let got = values(&run_program(&p, "weight_transposed"));
    let want = values(&npy(&qop("weight_transposed.ort.npy")));
    let range = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = max_diff(&got, &want);
    assert!(worst <= 1e-5 * range.max(1.0), "worst {worst} of range {range}");
}

/// A Softmax whose output feeds a matrix product runs on codes (the program's integer softmax,
/// `docs/hardware-model.md` §4): the W8A8 program follows the float model.
#[test]
fn softmax_inside_the_program_runs_on_codes() {
    let p =
        compile("softmax_mid", Some(vec![input("softmax_mid")])).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.steps.iter().any(|s| matches!(s, Step::IntSoftmax { .. })), "an integer softmax");
    let got = values(&run_program(&p, "softmax_mid"));
    let want = values(&npy(&qop("softmax_mid.ort.npy")));
    let range = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = max_diff(&got, &want);
    assert!(worst <= 0.05 * range, "worst {worst} of range {range}");
}
