//! `fuse-layer-norm`: the decomposed LayerNormalization that opset-13 exporters write, as one
//! [`Op::LayerNorm`].
//!
//! Requires: a float graph.
//!
//! Finds, over the trailing axes `a..` of a float `x` (both means keeping their axes):
//!
//! ```text
//! m = ReduceMean(x); d = x − m; v = ReduceMean(d² or d·d); s = Sqrt(v + ε)
//! n = d / s  or  d · Reciprocal(s)          then optionally  n · γ,  then optionally  + β
//! ```
//!
//! (the TorchScript exporter's form before opset 17, and tf2onnx's), `ε`, `γ` and `β`
//! constants (`γ`, `β` broadcastable to `x`'s dims from `a` on, either operand order), each
//! intermediate read only by the next step (`d` by the square and the normalization), and
//! replaces it with `LayerNorm { axis: a, epsilon: ε }(x, γ or ones, β if any)`, whose program
//! step computes mean and variance from exact integer sums.
//!
//! Guarantees: the same function up to float rounding (the fused op computes in f64).

use crate::error::Result;
use crate::{Pass, PassContext, Stats};
use cimc_ir::{Graph, NodeId, Op, ReduceOp, TensorData, ValueId};

pub struct FuseLayerNorm;

impl Pass for FuseLayerNorm {
    fn name(&self) -> &'static str {
        "fuse-layer-norm"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        for n in g.node_ids() {
            if !g.is_live(n) {
                continue;
            }
            if let Some(found) = match_layer_norm(g, n) {
                fuse(g, found);
                *stats.entry("layer norms fused").or_default() += 1;
            }
        }
        Ok(stats)
    }
}

/// A decomposed LayerNormalization found from its first mean.
struct Found {
    x: ValueId,
    axis: usize,
    epsilon: f32,
    scale: Option<ValueId>,
    bias: Option<ValueId>,
    /// The value the chain computes (the last node's output).
    output: ValueId,
    /// Every node of the chain, to remove.
    nodes: Vec<NodeId>,
}

/// The trailing axis from which a mean over `axes` of a rank-`rank` tensor keeping its axes
/// runs, if it does.
fn trailing_mean(g: &Graph, n: NodeId) -> Option<usize> {
    let node = g.node(n);
    let Op::Reduce(r) = &node.op else { return None };
    let rank = g.ty(node.inputs[0]).rank();
    let first = *r.axes.first()?;
    let trailing =
        r.axes.iter().enumerate().all(|(k, &a)| a == first + k) && r.axes.len() + first == rank;
    (r.op == ReduceOp::Mean && r.keep_dims && trailing && g.ty(node.inputs[0]).dtype.is_float())
        .then_some(first)
}

/// The only node reading `v` (once), unless `v` is also a graph output.
fn only_user(g: &Graph, v: ValueId) -> Option<NodeId> {
    match g.users(v).as_slice() {
        [(n, _)] if !g.outputs().contains(&v) => Some(*n),
        _ => None,
    }
}

/// The value of a one-element float constant.
fn scalar(g: &Graph, v: ValueId) -> Option<f32> {
    let d: &TensorData = g.value(v).const_data()?;
    let values = d.to_f32_vec();
    (values.len() == 1).then(|| values[0])
}

/// For a binary node `n` with `v` as one operand: the other operand.
fn other_operand(g: &Graph, n: NodeId, v: ValueId) -> Option<ValueId> {
    match g.node(n).inputs.as_slice() {
        [a, b] if *a == v && *b != v => Some(*b),
        [a, b] if *b == v && *a != v => Some(*a),
        _ => None,
    }
}

/// A constant broadcastable to `x`'s dims from `axis` on (numpy rules), of `x`'s dtype.
fn affine_const(g: &Graph, v: ValueId, x: ValueId, axis: usize) -> bool {
    let (t, xt) = (g.ty(v), g.ty(x));
    let normalized = &xt.shape[axis..];
    g.value(v).is_const()
        && t.dtype == xt.dtype
        && t.rank() <= normalized.len()
        && t.shape.iter().rev().zip(normalized.iter().rev()).all(|(&a, &b)| a == b || a == 1)
}

fn match_layer_norm(g: &Graph, m1: NodeId) -> Option<Found> {
    let axis = trailing_mean(g, m1)?;
    let x = g.node(m1).inputs[0];
    let mean = g.node(m1).outputs[0];
    let sub = only_user(g, mean)?;
    (g.node(sub).op == Op::Sub && g.node(sub).inputs == [x, mean]).then_some(())?;
    let d = g.node(sub).outputs[0];
    // `d` feeds the square and the normalization, nothing else.
    let users = g.users(d);
    if g.outputs().contains(&d) || users.len() > 3 {
        return None;
    }
    let is_square = |n: NodeId| {
        let node = g.node(n);
        match node.op {
            Op::Pow => node.inputs[0] == d && scalar(g, node.inputs[1]) == Some(2.0),
            Op::Mul => node.inputs == [d, d],
            _ => false,
        }
    };
    let square = users.iter().map(|&(n, _)| n).find(|&n| is_square(n))?;
    let normalize = users.iter().map(|&(n, _)| n).find(|&n| n != square)?;
    if users.iter().any(|&(n, _)| n != square && n != normalize) {
        return None;
    }
    let m2 = only_user(g, g.node(square).outputs[0])?;
    (trailing_mean(g, m2) == Some(axis)).then_some(())?;
    let var = g.node(m2).outputs[0];
    let add_eps = only_user(g, var)?;
    (g.node(add_eps).op == Op::Add).then_some(())?;
    let epsilon = scalar(g, other_operand(g, add_eps, var)?)?;
    let sqrt = only_user(g, g.node(add_eps).outputs[0])?;
    (g.node(sqrt).op == Op::Unary(cimc_ir::UnaryOp::Sqrt)).then_some(())?;
    let s = g.node(sqrt).outputs[0];
    let mut nodes = vec![m1, sub, square, m2, add_eps, sqrt];
    let normed = match g.node(normalize).op {
        Op::Div if g.node(normalize).inputs == [d, s] => g.node(normalize).outputs[0],
        Op::Mul => {
            let r = other_operand(g, normalize, d)?;
            let recip = g.producer(r)?;
            let is_recip = g.node(recip).op == Op::Unary(cimc_ir::UnaryOp::Reciprocal)
                && g.node(recip).inputs == [s]
                && only_user(g, s) == Some(recip)
                && only_user(g, r) == Some(normalize);
            is_recip.then_some(())?;
            nodes.push(recip);
            g.node(normalize).outputs[0]
        }
        _ => return None,
    };
    if g.node(normalize).op == Op::Div && only_user(g, s) != Some(normalize) {
        return None;
    }
    nodes.push(normalize);
    let mut found = Found { x, axis, epsilon, scale: None, bias: None, output: normed, nodes };
    // Optional `· γ`, then optional `+ β`.
    for (op, is_scale) in [(Op::Mul, true), (Op::Add, false)] {
        let Some(next) = only_user(g, found.output) else { break };
        if g.node(next).op != op {
            continue;
        }
        let Some(c) = other_operand(g, next, found.output) else { break };
        if !affine_const(g, c, x, axis) {
            continue;
        }
        if is_scale {
            found.scale = Some(c);
        } else {
            found.bias = Some(c);
        }
        found.output = g.node(next).outputs[0];
        found.nodes.push(next);
    }
    Some(found)
}

fn fuse(g: &mut Graph, f: Found) {
    let xt = g.ty(f.x).clone();
    let scale = f.scale.unwrap_or_else(|| {
        let n = xt.shape[f.axis..].iter().product::<usize>();
        let name = g.unique_name(&format!("{}_ones", g.value(f.output).name));
        let dims = xt.shape[f.axis..].to_vec();
        let ones = match xt.dtype {
            cimc_ir::DType::F64 => TensorData::from_f64(dims, &vec![1.0; n]),
            _ => TensorData::from_f32(dims, &vec![1.0; n]),
        };
        g.add_const(name, ones)
    });
    let mut inputs = vec![f.x, scale];
    inputs.extend(f.bias);
    let last = *f.nodes.last().expect("invariant: a chain has nodes");
    let name = g.node(last).name.clone();
    let out_name = g.value(f.output).name.clone();
    g.rename_value(f.output, &format!("{out_name}_unfused"));
    let op = Op::LayerNorm { axis: f.axis, epsilon: f.epsilon };
    let id = g.add_node(name, op, inputs, vec![(out_name, xt)]);
    let y = g.node(id).outputs[0];
    g.replace_uses(f.output, y);
    for n in f.nodes.into_iter().rev() {
        g.remove_node(n);
    }
}
