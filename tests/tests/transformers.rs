//! The transformers of issue 20 (`docs/transformers.md`): a ViT on MNIST and a causal decoder
//! sorting digits, each exported by the TorchScript exporter at an opset before 17
//! (LayerNormalization decomposed, GELU as Erf), at opset 17 (LayerNormalization) and by the
//! dynamo exporter (opset 18). Made by `scripts/make_transformers.py`; provenance and
//! onnxruntime's accuracies in `tests/data/models/transformers.json`.
//!
//! Every export imports (the decoder's sequence fixed by `input_shapes`, as `--input-shape`
//! does), and the float run matches onnxruntime to 1e-4 relative on the first 100 test inputs;
//! in release (`heavy`), the W8A8 programs stay within one point of the float model's top-1
//! (token accuracy for the decoder), the isaac crossbar programs run, and no `cimc` command
//! exits 2 on them.

use cimc::onnx::{self, ImportOptions};
use cimc_interp::{Runner, Tensor};
use cimc_ir::Graph;
use cimc_tests::{data, max_errors, npy};

/// The ViT's exports (input `image` `[N,1,28,28]`).
const VITS: [&str; 3] = ["mnist_vit_ts13", "mnist_vit_ts17", "mnist_vit_dynamo"];
/// The decoder's exports (input `tokens` `[N,16]` int64, sequence axis dynamic).
const DECODERS: [&str; 3] = ["sort_decoder_ts14", "sort_decoder_ts17", "sort_decoder_dynamo"];
/// The decoder's sequence length.
const SEQ: usize = 16;

fn is_decoder(export: &str) -> bool {
    export.starts_with("sort_decoder")
}

fn import(export: &str, batch: usize) -> Graph {
    let path = data().join(format!("models/{export}.onnx"));
    let opts = if is_decoder(export) {
        ImportOptions {
            input_shapes: vec![("tokens".to_string(), vec![batch, SEQ])],
            ..ImportOptions::default()
        }
    } else {
        ImportOptions { batch: Some(batch), ..ImportOptions::default() }
    };
    let g = onnx::import_file(&path, &opts)
        .unwrap_or_else(|e| panic!("import {}: {e}", path.display()));
    cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("verify {}: {e}", path.display()));
    g
}

/// The test inputs of a model: MNIST's first 500 test images (vendored) or the decoder's 1000
/// sorting sequences.
fn test_inputs(export: &str) -> Tensor {
    let d = data();
    if is_decoder(export) {
        npy(&d.join("sets/sort_test_x.npy"))
    } else {
        npy(&d.join("sets/mnist_test500_x.npy"))
    }
}

/// Every export imports, verifies and runs in the float interpreter with onnxruntime's outputs
/// on the first 100 test inputs, to 1e-4 relative.
#[test]
fn transformers_float_match_onnxruntime() {
    let d = data();
    let n = 100;
    for export in VITS.iter().chain(&DECODERS) {
        let x = cimc::tensor_util::slice_batch(&test_inputs(export), 0, n, n);
        let g = import(export, n);
        let out = Runner::new(&g).expect("runner").run(vec![x]).expect("run");
        let want = npy(&d.join(format!("sets/{export}_ref_logits.npy")));
        let (abs, rel) = max_errors(&out[0], &want).expect("same shape and dtype");
        eprintln!("{export}: max abs error {abs:.3e}, relative {rel:.3e} over {n} inputs");
        assert!(rel <= 1e-4, "{export}: relative error {rel:.3e} > 1e-4");
    }
}

/// The isaac stream of every export (crossbars for the weight products, the digital units for
/// the rest: the class token's Concat and the causal mask as `lut_per_element`), written to
/// bytes and read back, simulated on a few inputs: bit-exact with the program it was emitted
/// from, as `cimc sim` against `cimc run`.
#[test]
fn isaac_streams_are_bit_exact_with_their_programs() {
    use cimc_backends::stream::emit::{emit, EmitOptions};
    use cimc_backends::stream::Stream;
    use cimc_backends::target::Target;
    use cimc_passes::tile::Chip;
    use cimc_passes::PassContext;
    use cimc_sim::program::ProgramRunner;
    use cimc_sim::stream::StreamRunner;
    let d = data();
    let t = Target::preset("isaac").expect("the isaac preset");
    let batch = 2;
    for export in VITS.iter().chain(&DECODERS) {
        let calib = if is_decoder(export) {
            npy(&d.join("sets/sort_calib_x.npy"))
        } else {
            npy(&d.join("sets/mnist_calib200_x.npy"))
        };
        let calib = cimc::tensor_util::slice_batch(&calib, 0, 16, 16);
        let mut cx = PassContext { calib: Some(vec![calib]), ..PassContext::default() };
        cx.chip = Some(Chip::from_target(&t, None));
        let p = cimc::compile::compile(import(export, batch), &cx, &[])
            .unwrap_or_else(|e| panic!("{export}: compile: {e}"))
            .0;
        let s = emit(&p, &t, &EmitOptions::default())
            .unwrap_or_else(|e| panic!("{export}: --emit stream: {e}"));
        let used = |m: &str| s.cores.iter().flat_map(|c| &c.code).any(|i| i.mnemonic() == m);
        for m in ["mvm", "matmul", "softmax", "layer_norm", "lut_per_element"] {
            assert!(used(m), "{export}: no {m} in the stream");
        }
        let s = Stream::from_bytes(&s.to_bytes()).expect("the stream reads back");
        let sim = StreamRunner::new(&s).unwrap_or_else(|e| panic!("{export}: simulator: {e}"));
        let prog = ProgramRunner::new(&p).expect("program runner");
        let x = test_inputs(export);
        for i in 0..2 {
            let x = cimc::tensor_util::slice_batch(&x, i * batch, batch, batch);
            let want = prog.run(vec![x.clone()]).unwrap_or_else(|e| panic!("{export}: run: {e}"));
            let got = sim.run(vec![x]).unwrap_or_else(|e| panic!("{export}: sim: {e}"));
            let bits = |t: &Tensor| -> Vec<u32> {
                t.to_f64_vec().iter().map(|&v| (v as f32).to_bits()).collect()
            };
            assert_eq!(got.len(), want.len(), "{export}: outputs");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.shape(), w.shape(), "{export}");
                let diff = bits(g).iter().zip(&bits(w)).filter(|(a, b)| a != b).count();
                assert_eq!(diff, 0, "{export}, inputs {i}: {diff} output values differ");
            }
        }
    }
}

/// A causal mask's `−inf` weighs exactly 0 in the integer softmax: scores in [−1, 1] (where
/// the lowest code of the scores' own range would weigh up to e^−2 ≈ 14 % of a row's largest),
/// masked by `Where(tril, scores, −inf)`, the softmax doubled so that it runs on codes (not as
/// the float epilogue): every masked output of the W8A8 program is exactly 0.0, every kept one
/// within two output steps of the float model's.
#[test]
fn masked_scores_weigh_exactly_zero_in_the_integer_softmax() {
    use cimc_ir::{DType, Op, TensorData, TensorType};
    let (n, t) = (8, 6);
    let ty = |s: Vec<usize>| TensorType::new(DType::F32, s);
    let mut g = Graph::new("masked_softmax");
    let x = g.add_input("scores", ty(vec![n, t, t]));
    let keep: Vec<bool> = (0..t * t).map(|k| k % t <= k / t).collect();
    let cond = g.add_const("tril", TensorData::from_bool(vec![t, t], &keep));
    let minus_inf = g.add_const("minus_inf", TensorData::from_f32(vec![1], &[f32::NEG_INFINITY]));
    let two = g.add_const("two", TensorData::from_f32(vec![1], &[2.0]));
    let node = |g: &mut Graph, name: &str, op: Op, inputs: Vec<cimc_ir::ValueId>| {
        let id = g.add_node(name, op, inputs, vec![(format!("{name}_out"), ty(vec![n, t, t]))]);
        g.node(id).outputs[0]
    };
    let masked = node(&mut g, "mask", Op::Where, vec![cond, x, minus_inf]);
    let p = node(&mut g, "softmax", Op::Softmax { axis: 2, coerce_2d: false }, vec![masked]);
    let y = node(&mut g, "doubled", Op::Mul, vec![p, two]);
    g.set_outputs(vec![y]);
    // Scores spread over [−1, 1], different for calibration and test.
    let scores = |seed: usize| {
        let v: Vec<f32> = (0..n * t * t)
            .map(|k| (((k * 7919 + seed * 104_729) % 2001) as f32 - 1000.0) / 1000.0)
            .collect();
        Tensor::from_data(&TensorData::from_f32(vec![n, t, t], &v)).expect("a tensor")
    };
    let cx = cimc_passes::PassContext { calib: Some(vec![scores(1)]), ..Default::default() };
    let program = cimc::compile::compile(g.clone(), &cx, &[]).expect("compile").0;
    let x = scores(2);
    let got = cimc_sim::program::ProgramRunner::new(&program)
        .expect("program runner")
        .run(vec![x.clone()])
        .expect("program run")[0]
        .to_f64_vec();
    let want = Runner::new(&g).expect("runner").run(vec![x]).expect("float run")[0].to_f64_vec();
    for (k, (&a, &b)) in got.iter().zip(&want).enumerate() {
        if keep[k % (t * t)] {
            assert!((a - b).abs() <= 4.0 / 255.0 + 1e-6, "kept score {k}: {a} vs {b}");
        } else {
            assert_eq!(a, 0.0, "masked score {k} weighs {a}");
        }
    }
}

/// Token accuracy (percent): the argmax over the last axis of `logits` `[N, T, V]` against the
/// targets `[N, T]`, counting only the targets ≥ 0.
#[cfg(feature = "heavy")]
fn token_accuracy(logits: &Tensor, targets: &[i64]) -> f64 {
    let v = *logits.shape().last().expect("invariant: logits have a vocabulary axis");
    let values = logits.to_f64_vec();
    let (mut right, mut scored) = (0usize, 0usize);
    for (row, &t) in values.chunks(v).zip(targets) {
        if t < 0 {
            continue;
        }
        scored += 1;
        let best = (0..v).fold(0, |b, k| if row[k] > row[b] { k } else { b });
        right += usize::from(best as i64 == t);
    }
    100.0 * right as f64 / scored.max(1) as f64
}

/// Top-1 (percent) of `[N, C]` logits against labels.
#[cfg(feature = "heavy")]
fn top1(logits: &Tensor, labels: &[i64]) -> f64 {
    let pred = cimc_tests::argmax_rows(logits);
    100.0 * cimc_interp::tensor::count_correct(&pred, labels) as f64 / labels.len() as f64
}

/// The accuracy of `logits` on `export`'s task: top-1 for the ViT, token accuracy for the decoder.
#[cfg(feature = "heavy")]
fn accuracy(export: &str, logits: &Tensor) -> f64 {
    let d = data();
    if is_decoder(export) {
        let y = cimc::npy::read(&d.join("sets/sort_test_y.npy")).expect("targets").to_i64_vec();
        token_accuracy(logits, &y)
    } else {
        let y = cimc::npy::read(&d.join("sets/mnist_test500_y.npy")).expect("labels").to_i64_vec();
        top1(logits, &y)
    }
}

/// The calibration inputs: 200 MNIST training images, or 200 sorting sequences made apart
/// from the test ones.
#[cfg(feature = "heavy")]
fn calibration(export: &str) -> Tensor {
    let d = data();
    if is_decoder(export) {
        npy(&d.join("sets/sort_calib_x.npy"))
    } else {
        npy(&d.join("sets/mnist_calib200_x.npy"))
    }
}

/// The W8A8 programs (`heavy`: CI runs them in release mode).
#[cfg(feature = "heavy")]
mod w8a8 {
    use super::*;
    use cimc_backends::target::Target;
    use cimc_passes::tile::Chip;
    use cimc_passes::PassContext;
    use cimc_sim::program::ProgramRunner;

    fn run_program(program: &cimc_backends::program::Program, x: &Tensor, batch: usize) -> Tensor {
        let runner = ProgramRunner::new(program).expect("program runner");
        let mut out = cimc::model::run_in_chunks(
            |t| Ok(runner.run(t)?),
            batch,
            std::slice::from_ref(x),
            |_| {},
        )
        .expect("program run");
        out.swap_remove(0)
    }

    /// Float, W8A8 program and isaac crossbar program accuracy of one export on its test set.
    fn check(export: &str) {
        let batch = 100;
        let x = test_inputs(export);
        let g = import(export, batch);
        let runner = Runner::new(&g).expect("runner");
        let float = cimc::model::run_in_chunks(
            |t| Ok(runner.run(t)?),
            batch,
            std::slice::from_ref(&x),
            |_| {},
        )
        .expect("float run");
        let float_acc = accuracy(export, &float[0]);
        let cx = PassContext { calib: Some(vec![calibration(export)]), ..PassContext::default() };
        let program = cimc::compile::compile(g.clone(), &cx, &[])
            .unwrap_or_else(|e| panic!("{export}: cimc compile --calib: {e}"))
            .0;
        let w8a8 = accuracy(export, &run_program(&program, &x, batch));
        let chip = Chip::from_target(&Target::preset("isaac").expect("the isaac preset"), None);
        let cx = PassContext {
            calib: Some(vec![calibration(export)]),
            chip: Some(chip),
            ..PassContext::default()
        };
        let program = cimc::compile::compile(g, &cx, &[])
            .unwrap_or_else(|e| panic!("{export}: cimc compile --target isaac: {e}"))
            .0;
        let isaac = accuracy(export, &run_program(&program, &x, batch));
        eprintln!("{export}: float {float_acc:.2} %, W8A8 program {w8a8:.2} %, isaac {isaac:.2} %");
        assert!(
            (float_acc - w8a8).abs() <= 1.0 + 1e-9,
            "{export}: W8A8 {w8a8:.2} is more than one point from float {float_acc:.2}"
        );
    }

    #[test]
    fn vit_ts13_w8a8() {
        check("mnist_vit_ts13");
    }

    #[test]
    fn vit_ts17_w8a8() {
        check("mnist_vit_ts17");
    }

    #[test]
    fn vit_dynamo_w8a8() {
        check("mnist_vit_dynamo");
    }

    #[test]
    fn decoder_ts14_w8a8() {
        check("sort_decoder_ts14");
    }

    #[test]
    fn decoder_ts17_w8a8() {
        check("sort_decoder_ts17");
    }

    #[test]
    fn decoder_dynamo_w8a8() {
        check("sort_decoder_dynamo");
    }
}
