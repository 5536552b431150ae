//! Reverse-mode gradients (`cimc_interp::grad`) against central finite differences, on small
//! seeded random graphs covering every op with a backward, and the error of an op without one.

mod common;

use cimc_interp::grad::{cross_entropy, GradGraph};
use cimc_interp::{eval_node, InterpError, Tensor};
use cimc_ir::{
    CompareOp, ConvAttrs, DType, Graph, Op, PadMode, PoolAttrs, Reduce, ReduceOp, TensorData,
    TensorType, UnaryOp, ValueId, VariadicOp,
};
use common::*;
use std::collections::HashMap;

/// Builds a graph while evaluating it, so that every node's output type is known.
struct Builder {
    g: Graph,
    env: HashMap<ValueId, Tensor>,
    seed: u64,
}

impl Builder {
    fn new(input: &[usize]) -> (Builder, ValueId) {
        let mut g = Graph::new("t");
        let x = g.add_input("x", TensorType::new(DType::F32, input.to_vec()));
        let n = input.iter().product();
        let mut env = HashMap::new();
        env.insert(x, f32t(input, &rand_vec(n, 7)));
        (Builder { g, env, seed: 100 }, x)
    }

    /// A random constant of `shape`, uniform in `[lo, hi)`.
    fn cst(&mut self, shape: &[usize], lo: f32, hi: f32) -> ValueId {
        self.seed += 1;
        let n = shape.iter().product();
        let v: Vec<f32> =
            rand_vec(n, self.seed).into_iter().map(|r| lo + (r + 1.0) / 2.0 * (hi - lo)).collect();
        let id =
            self.g.add_const(format!("c{}", self.seed), TensorData::from_f32(shape.to_vec(), &v));
        self.env.insert(id, f32t(shape, &v));
        id
    }

    fn node(&mut self, op: Op, ins: Vec<ValueId>) -> ValueId {
        let ts: Vec<&Tensor> = ins.iter().map(|v| &self.env[v]).collect();
        let out = eval_node(&op, &ts, 1).unwrap().remove(0);
        let name = format!("n{}", self.g.node_count());
        let ty = TensorType::new(out.dtype(), out.shape().to_vec());
        let id = self.g.add_node(name.clone(), op, ins, vec![(format!("{name}_out"), ty)]);
        let o = self.g.node(id).outputs[0];
        self.env.insert(o, out);
        o
    }

    fn finish(mut self, out: ValueId) -> (Graph, Tensor) {
        self.g.set_outputs(vec![out]);
        let x = self.env[&self.g.inputs()[0]].clone();
        (self.g, x)
    }
}

fn conv(k: usize, stride: usize, pads: [usize; 4], dil: usize, group: usize) -> Op {
    Op::Conv(ConvAttrs {
        kernel: vec![k, k],
        strides: vec![stride; 2],
        dilations: vec![dil; 2],
        pads: pads.to_vec(),
        group,
        clamp: None,
    })
}

fn pool(k: usize, stride: usize, pads: [usize; 4], ceil: bool, include_pad: bool) -> PoolAttrs {
    PoolAttrs {
        kernel: vec![k, k],
        strides: vec![stride; 2],
        dilations: vec![1, 1],
        pads: pads.to_vec(),
        ceil_mode: ceil,
        count_include_pad: include_pad,
        storage_order: 0,
    }
}

fn gemm(trans_a: bool, trans_b: bool, alpha: f32, beta: f32) -> Op {
    Op::Gemm { alpha, beta, trans_a, trans_b, clamp: None }
}

/// Checks every float constant's gradient (all elements, or 40 spread ones of a large one)
/// against central differences `(L(c+h) − L(c−h)) / 2h`.
///
/// Tolerance: the graph runs in f64, so with `h = 1e-6` the truncation error `h²·L'''/6` is
/// ~1e-12 and the rounding error `ε_f64·|L| / h` ~1e-10; `1e-7 + 1e-5·|g|` leaves a wide margin
/// for that while any wrong backward (a missed term, a transposed index, a wrong divisor) is
/// off by far more. Kinks (Relu, Clip, MaxPool) are crossed only if a pre-activation lies
/// within ~1e-6 of one, which the seeded data does not do.
fn check(g: &Graph, x: Tensor, labels: &[i64]) {
    let mut gg = GradGraph::new(g).unwrap();
    let grads = gg.loss_and_gradients(vec![x.clone()], labels).unwrap();
    assert!(grads.loss.is_finite());
    assert!(!grads.consts.is_empty());
    let h = 1e-6;
    let mut checked = 0;
    for (v, gv) in &grads.consts {
        let base = gg.const_value(*v).unwrap().clone();
        let n = base.len();
        let idx: Vec<usize> =
            if n <= 40 { (0..n).collect() } else { (0..40).map(|i| i * n / 40).collect() };
        for i in idx {
            let mut at = |d: f64| {
                let mut p = base.clone();
                p.as_slice_mut().unwrap()[i] += d;
                gg.set_const(*v, p).unwrap();
                let logits = gg.forward(vec![x.clone()]).unwrap();
                cross_entropy(&logits, labels).unwrap().0
            };
            let fd = (at(h) - at(-h)) / (2.0 * h);
            let got = gv.as_slice().unwrap()[i];
            assert!(
                (got - fd).abs() <= 1e-7 + 1e-5 * fd.abs(),
                "constant '{}'[{i}]: reverse mode {got:e}, finite differences {fd:e}",
                g.value(*v).name
            );
            checked += 1;
        }
        gg.set_const(*v, base).unwrap();
    }
    assert!(checked > 0);
}

#[test]
fn conv_groups_strides_pads_dilations_clamp_gemm() {
    let (mut b, x) = Builder::new(&[2, 4, 9, 8]);
    let w = b.cst(&[6, 2, 3, 3], -0.5, 0.5);
    let bias = b.cst(&[6], -0.1, 0.1);
    let mut c = conv(3, 2, [1, 0, 2, 1], 2, 2);
    if let Op::Conv(a) = &mut c {
        a.clamp = Some((0.0, 0.6));
    }
    let y = b.node(c, vec![x, w, bias]);
    let f = b.node(Op::Flatten { axis: 1 }, vec![y]);
    let n = b.env[&f].shape()[1];
    let w2 = b.cst(&[5, n], -0.3, 0.3);
    let b2 = b.cst(&[5], -0.1, 0.1);
    let out = b.node(gemm(false, true, 1.0, 1.0), vec![f, w2, b2]);
    let (g, x) = b.finish(out);
    check(&g, x, &[1, 4]);
}

#[test]
fn relu_pools_matmul_broadcast_add() {
    let (mut b, x) = Builder::new(&[3, 2, 7, 7]);
    let w = b.cst(&[4, 2, 3, 3], -0.5, 0.5);
    let y = b.node(conv(3, 1, [1, 1, 1, 1], 1, 1), vec![x, w]);
    let y = b.node(Op::Relu, vec![y]);
    let y = b.node(Op::MaxPool(pool(3, 2, [1, 1, 0, 1], true, false)), vec![y]);
    let y = b.node(Op::AveragePool(pool(2, 1, [1, 0, 1, 1], false, true)), vec![y]);
    let z = b.node(Op::AveragePool(pool(2, 2, [0, 1, 1, 0], true, false)), vec![y]);
    let z = b.node(Op::GlobalAveragePool, vec![z]);
    let z = b.node(Op::Flatten { axis: 1 }, vec![z]);
    let m = b.cst(&[4, 3], -1.0, 1.0);
    let z = b.node(Op::MatMul, vec![z, m]);
    let bias = b.cst(&[1, 3], -0.2, 0.2);
    let out = b.node(Op::Add, vec![z, bias]);
    let (g, x) = b.finish(out);
    check(&g, x, &[0, 2, 1]);
}

#[test]
fn elementwise_activations_softmax() {
    let (mut b, x) = Builder::new(&[2, 6]);
    let w = b.cst(&[6, 4], -1.0, 1.0);
    let y = b.node(Op::MatMul, vec![x, w]);
    let s = b.cst(&[4], 0.5, 2.0);
    let y = b.node(Op::Mul, vec![y, s]);
    let d = b.cst(&[1, 4], 1.0, 2.0);
    let y = b.node(Op::Div, vec![y, d]);
    let sub = b.cst(&[2, 1], -0.3, 0.3);
    let y = b.node(Op::Sub, vec![sub, y]);
    let lo = b.g.add_const("lo", TensorData::from_f32(vec![], &[-0.7]));
    let hi = b.g.add_const("hi", TensorData::from_f32(vec![], &[0.8]));
    b.env.insert(lo, f32t(&[], &[-0.7]));
    b.env.insert(hi, f32t(&[], &[0.8]));
    let y1 = b.node(Op::Clip, vec![y, lo, hi]);
    let y2 = b.node(Op::LeakyRelu { alpha: 0.1 }, vec![y]);
    let y3 = b.node(Op::Sigmoid, vec![y1]);
    let y4 = b.node(Op::Tanh, vec![y2]);
    let y = b.node(Op::Mul, vec![y3, y4]);
    let y = b.node(Op::Add, vec![y, y1]);
    let out = b.node(Op::Softmax { axis: 1, coerce_2d: false }, vec![y]);
    let (g, x) = b.finish(out);
    check(&g, x, &[3, 0]);
}

#[test]
fn batch_norm_transpose_concat_pad_reshape_gemm_trans_a() {
    let (mut b, x) = Builder::new(&[2, 3, 4, 4]);
    let gamma = b.cst(&[3], 0.5, 1.5);
    let beta = b.cst(&[3], -0.5, 0.5);
    let mean = b.cst(&[3], -0.2, 0.2);
    let var = b.cst(&[3], 0.5, 2.0);
    let y = b.node(Op::BatchNorm { epsilon: 1e-5 }, vec![x, gamma, beta, mean, var]);
    let p =
        b.node(Op::Pad { mode: PadMode::Constant, pads: vec![0, 0, 1, 0, 0, 0, 0, 2] }, vec![y]);
    let t = b.node(Op::Transpose { perm: vec![0, 1, 3, 2] }, vec![p]);
    let t = b.node(Op::Reshape { shape: vec![2, 3, 30] }, vec![t]);
    let u = b.node(Op::Reshape { shape: vec![2, 3, 16] }, vec![y]);
    let c = b.node(Op::Concat { axis: 2 }, vec![t, u]);
    let c = b.node(Op::Flatten { axis: 1 }, vec![c]);
    let ct = b.node(Op::Transpose { perm: vec![1, 0] }, vec![c]);
    let w = b.cst(&[4, 138], -0.2, 0.2);
    let bias = b.cst(&[4], -0.1, 0.1);
    let out = b.node(gemm(true, true, 0.7, 1.3), vec![ct, w, bias]);
    let (g, x) = b.finish(out);
    check(&g, x, &[2, 3]);
}

#[test]
fn unary_functions_sum_pow_reduce_mean() {
    let (mut b, x) = Builder::new(&[6, 4]);
    let w = b.cst(&[4, 4], -0.5, 0.5);
    let y = b.node(Op::MatMul, vec![x, w]);
    let y = b.node(Op::Reshape { shape: vec![2, 3, 4] }, vec![y]);
    let e = b.node(Op::Unary(UnaryOp::Exp), vec![y]);
    let s = b.node(Op::Unary(UnaryOp::Selu { alpha: 1.67, gamma: 1.05 }), vec![y]);
    let r = b.node(Op::Unary(UnaryOp::Erf), vec![s]);
    let c = b.cst(&[4], 0.5, 1.5);
    let q = b.node(Op::Unary(UnaryOp::Sqrt), vec![c]);
    let sum = b.node(Op::Variadic(VariadicOp::Sum), vec![e, r, q]);
    let base = b.cst(&[1, 4], 0.5, 1.5);
    let exponent = b.cst(&[3, 1], 0.5, 2.0);
    let p = b.node(Op::Pow, vec![base, exponent]);
    let sum = b.node(Op::Variadic(VariadicOp::Sum), vec![sum, p]);
    let mean = Reduce { op: ReduceOp::Mean, axes: vec![1], keep_dims: false };
    let out = b.node(Op::Reduce(mean), vec![sum]);
    let (g, x) = b.finish(out);
    check(&g, x, &[1, 3]);
}

/// Every unary function of issue 19 (Ceil, Floor and Round pass no gradient), Min, Max and
/// Mean, PRelu (input and slope), and Where on a comparison (the condition gets none).
#[test]
fn unary_family_min_max_mean_prelu_where() {
    let (mut b, x) = Builder::new(&[6, 4]);
    let w = b.cst(&[4, 4], -0.8, 0.8);
    let y = b.node(Op::MatMul, vec![x, w]);
    let y = b.node(Op::Reshape { shape: vec![2, 3, 4] }, vec![y]);
    let fs = [
        UnaryOp::Abs,
        UnaryOp::Neg,
        UnaryOp::Softplus,
        UnaryOp::Softsign,
        UnaryOp::Elu { alpha: 0.7 },
        UnaryOp::Celu { alpha: 1.3 },
        UnaryOp::Mish,
        UnaryOp::ThresholdedRelu { alpha: 0.05 },
        UnaryOp::Shrink { bias: 0.1, lambd: 0.05 },
        UnaryOp::Gelu { tanh: false },
        UnaryOp::Gelu { tanh: true },
        UnaryOp::Ceil,
        UnaryOp::Floor,
        UnaryOp::Round,
    ];
    let us: Vec<ValueId> = fs.iter().map(|&f| b.node(Op::Unary(f), vec![y])).collect();
    let c = b.cst(&[3, 1], 0.5, 1.5);
    let r = b.node(Op::Unary(UnaryOp::Reciprocal), vec![c]);
    // No two inputs of Max or Min are equal anywhere (|y| and −y would be where y < 0).
    let hi = b.node(Op::Variadic(VariadicOp::Max), vec![us[0], us[3], r]);
    let lo = b.node(Op::Variadic(VariadicOp::Min), vec![us[1], us[2], us[4]]);
    let mean = b.node(Op::Variadic(VariadicOp::Mean), vec![us[5], us[6], us[7], us[8]]);
    let slope = b.cst(&[3, 1], 0.1, 0.4);
    let pr = b.node(Op::PRelu, vec![y, slope]);
    let zero = b.cst(&[4], -0.05, 0.05);
    let cond = b.node(Op::Compare(CompareOp::Greater), vec![y, zero]);
    let other = b.cst(&[1, 4], -1.0, 1.0);
    let wh = b.node(Op::Where, vec![cond, pr, other]);
    let mut all = vec![hi, lo, mean, wh];
    all.extend_from_slice(&us[9..]);
    let sum = b.node(Op::Variadic(VariadicOp::Sum), all);
    let total = Reduce { op: ReduceOp::Sum, axes: vec![2], keep_dims: false };
    let out = b.node(Op::Reduce(total), vec![sum]);
    let (g, x) = b.finish(out);
    check(&g, x, &[1, 2]);
}

/// Every reduction of `ReduceOp` on the same input, summed.
#[test]
fn reductions() {
    let (mut b, x) = Builder::new(&[6, 4]);
    let w = b.cst(&[4, 4], -0.8, 0.8);
    let y = b.node(Op::MatMul, vec![x, w]);
    let y = b.node(Op::Reshape { shape: vec![2, 3, 4] }, vec![y]);
    let pos = b.node(Op::Unary(UnaryOp::Softplus), vec![y]);
    let ops = [
        (ReduceOp::Sum, y),
        (ReduceOp::Max, y),
        (ReduceOp::Min, y),
        (ReduceOp::Prod, y),
        (ReduceOp::L1, y),
        (ReduceOp::L2, y),
        (ReduceOp::SumSquare, y),
        (ReduceOp::LogSum, pos),
        (ReduceOp::LogSumExp, y),
        (ReduceOp::Mean, y),
    ];
    let rs: Vec<ValueId> = ops
        .iter()
        .map(|&(op, v)| b.node(Op::Reduce(Reduce { op, axes: vec![2], keep_dims: false }), vec![v]))
        .collect();
    let out = b.node(Op::Variadic(VariadicOp::Sum), rs);
    let (g, x) = b.finish(out);
    check(&g, x, &[0, 2]);
}

#[test]
fn op_without_backward_is_named() {
    let (mut b, x) = Builder::new(&[2, 3]);
    let w = b.cst(&[3, 4], -1.0, 1.0);
    let y = b.node(Op::MatMul, vec![x, w]);
    let out = b.node(Op::HardSwish, vec![y]);
    let (g, x) = b.finish(out);
    let gg = GradGraph::new(&g).unwrap();
    let e = gg.loss_and_gradients(vec![x], &[0, 1]).unwrap_err();
    match e {
        InterpError::Node { node, op, msg } => {
            assert_eq!(node, "n1");
            assert_eq!(op, "hard_swish");
            assert!(msg.contains("no backward"), "{msg}");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn bad_labels_and_inputs_are_errors() {
    let (mut b, x) = Builder::new(&[2, 3]);
    let w = b.cst(&[3, 4], -1.0, 1.0);
    let out = b.node(Op::MatMul, vec![x, w]);
    let (g, x) = b.finish(out);
    let gg = GradGraph::new(&g).unwrap();
    assert!(gg
        .loss_and_gradients(vec![x.clone()], &[0, 4])
        .unwrap_err()
        .to_string()
        .contains("label 4"));
    assert!(gg.loss_and_gradients(vec![x], &[0]).is_err());
    assert!(gg.loss_and_gradients(vec![f32t(&[3, 3], &[0.0; 9])], &[0, 1]).is_err());
}

/// The data-movement ops scatter their gradient back through their index map; LogSoftmax.
#[test]
fn expand_tile_depth_to_space_space_to_depth_log_softmax() {
    let (mut b, x) = Builder::new(&[2, 2]);
    let c = b.cst(&[1, 8, 1, 1], -1.0, 1.0);
    let e = b.node(Op::Expand { shape: vec![2, 8, 1, 2] }, vec![c]);
    let t = b.node(Op::Tile { repeats: vec![1, 1, 2, 1] }, vec![e]);
    let d = b.node(Op::DepthToSpace { block: 2, crd: true }, vec![t]);
    let s = b.node(Op::SpaceToDepth { block: 2, crd: false }, vec![d]);
    let f = b.node(Op::Reshape { shape: vec![2, 32] }, vec![s]);
    let w = b.cst(&[32, 2], -0.5, 0.5);
    let y = b.node(Op::MatMul, vec![f, w]);
    let y = b.node(Op::Add, vec![y, x]);
    let out = b.node(Op::LogSoftmax { axis: 1, coerce_2d: false }, vec![y]);
    let (g, x) = b.finish(out);
    check(&g, x, &[1, 0]);
}
