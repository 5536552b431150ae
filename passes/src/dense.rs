//! `canonicalize`'s rewrite of a MatMul with a constant operand into the Gemm the quantizer and
//! `lower` handle: the dense layer as CNTK, keras2onnx, tf2onnx and OnnxMLTools export it.
//!
//! - `MatMul(x[.., K], W[K, N])`, optionally followed by `Add` of a constant broadcast along
//!   the last axis (the bias, on either side of the Add): `Gemm(x, W, bias)`, with x first
//!   reshaped to `[rows, K]` and the result back to `[.., N]` when x has more than 2 axes;
//! - `MatMul(W[M, K], x[.., K, N])` (the weight on the left): `y = (xᵀ·Wᵀ)ᵀ`, the last two
//!   axes of x swapped, a Gemm with `transB`, and the result swapped back.
//!
//! The Add's output (with its quantization, when the model states one) becomes the Gemm's;
//! the MatMul's own output, and an annotation on the bias, disappear: the bias is requantized as
//! the 32-bit accumulator's (`quantize`), as for Conv and Gemm. An imported model that rounds
//! the MatMul's output before adding the bias (onnxruntime's QDQ and QOperator forms) thus
//! loses that intermediate rounding: the program is closer to the float model than it.
//!
//! Weights annotated along another axis than the output channels' are left alone (the
//! quantizer then names the node).

use crate::util::single_use;
use cimc_ir::{DType, Graph, NodeId, Op, QuantParams, TensorData, TensorType, ValueId};

/// Rewrites every MatMul with one constant 2-D operand; returns how many.
pub fn matmuls_to_gemm(g: &mut Graph) -> usize {
    let mut done = 0;
    for n in g.node_ids() {
        if !g.is_live(n) || g.node(n).op != Op::MatMul {
            continue;
        }
        let (a, b) = (g.node(n).inputs[0], g.node(n).inputs[1]);
        let (ca, cb) = (g.value(a).is_const(), g.value(b).is_const());
        let rewritten = match (ca, cb) {
            (false, true) => weight_on_right(g, n, a, b),
            (true, false) => weight_on_left(g, n, a, b),
            _ => false,
        };
        done += usize::from(rewritten);
    }
    done
}

/// A float constant weight of rank 2 whose annotation (if any) is per-tensor or along
/// `channel_axis`.
fn usable_weight(g: &Graph, w: ValueId, channel_axis: usize) -> bool {
    let t = g.ty(w);
    t.dtype == DType::F32
        && t.rank() == 2
        && t.quant.as_ref().is_none_or(|q| q.axis.is_none() || q.axis == Some(channel_axis))
}

fn weight_on_right(g: &mut Graph, n: NodeId, x: ValueId, w: ValueId) -> bool {
    let xs = g.ty(x).shape.clone();
    if xs.len() < 2 || !usable_weight(g, w, 1) || g.ty(x).dtype != DType::F32 {
        return false;
    }
    let cols = g.ty(w).shape[1];
    let h = g.node(n).outputs[0];
    let (bias, out) = match bias_add(g, h, cols) {
        Some((add, vals)) => {
            let name = format!("{}_bias", g.value(w).name);
            (
                Some((add, g.add_const(name, TensorData::from_f32(vec![cols], &vals)))),
                g.node(add).outputs[0],
            )
        }
        None => (None, h),
    };
    let name = g.node(n).name.clone();
    let (ty, vname) = (g.ty(out).clone(), g.value(out).name.clone());
    let y = dense(g, &name, x, w, false, bias.map(|b| b.1), ty, &vname);
    finish(g, out, y, &[Some(n), bias.map(|b| b.0)]);
    true
}

fn weight_on_left(g: &mut Graph, n: NodeId, w: ValueId, x: ValueId) -> bool {
    let xs = g.ty(x).shape.clone();
    let r = xs.len();
    if r < 2 || !usable_weight(g, w, 0) || g.ty(x).dtype != DType::F32 {
        return false;
    }
    let name = g.node(n).name.clone();
    let out = g.node(n).outputs[0];
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    let xt = transpose(g, &format!("{name}_in"), x, &perm, g.ty(x).quant.clone());
    // The product transposed, [.., N, M]: what the Gemm computes, swapped back below.
    let mut ot = g.ty(out).clone();
    ot.shape.swap(r - 2, r - 1);
    let vname = format!("{}_t", g.value(out).name);
    let prod = dense(g, &name, xt, w, true, None, ot, &vname);
    let y = transpose(g, &format!("{name}_out"), prod, &perm, g.ty(out).quant.clone());
    finish(g, out, y, &[Some(n)]);
    true
}

/// The Add reading `h` (its only reader) with a constant bias along the last axis of `cols`
/// values: the Add and the bias, expanded to `cols` values.
fn bias_add(g: &Graph, h: ValueId, cols: usize) -> Option<(NodeId, Vec<f32>)> {
    if !single_use(g, h) {
        return None;
    }
    let (add, slot) = g.users(h)[0];
    let node = g.node(add);
    if node.op != Op::Add || g.ty(node.outputs[0]).shape != g.ty(h).shape {
        return None;
    }
    let d = g.value(node.inputs[1 - slot]).const_data()?;
    if d.dtype() != DType::F32 {
        return None;
    }
    let shape = d.shape();
    let last_ok = shape.last().is_none_or(|&c| c == 1 || c == cols);
    if !last_ok || shape.iter().rev().skip(1).any(|&s| s != 1) {
        return None;
    }
    let v = d.to_f32_vec();
    Some((add, if v.len() == 1 { vec![v[0]; cols] } else { v }))
}

/// `y = x·W (+ bias)` over the last axis of x, a new value of type `out_ty` named after
/// `out_name`: a Gemm on `[rows, K]`, with Reshapes around it when x has more than two axes.
/// `trans_b`: W is `[N, K]`.
#[allow(clippy::too_many_arguments)]
fn dense(
    g: &mut Graph,
    name: &str,
    x: ValueId,
    w: ValueId,
    trans_b: bool,
    bias: Option<ValueId>,
    out_ty: TensorType,
    out_name: &str,
) -> ValueId {
    let xs = g.ty(x).shape.clone();
    let k = xs[xs.len() - 1];
    let rows: usize = xs[..xs.len() - 1].iter().product();
    let cols = out_ty.shape[out_ty.rank() - 1];
    let flat = xs.len() > 2;
    let x2 = if flat {
        let q = g.ty(x).quant.clone();
        reshape(g, &format!("{name}_rows"), x, vec![rows, k], q)
    } else {
        x
    };
    let mut inputs = vec![x2, w];
    inputs.extend(bias);
    let op = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b, clamp: None };
    let gemm_ty = TensorType { shape: vec![rows, cols], ..out_ty.clone() };
    let vname = g.unique_name(&format!("{out_name}_gemm"));
    let gemm = g.add_node(format!("{name}_gemm"), op, inputs, vec![(vname, gemm_ty)]);
    let y = g.node(gemm).outputs[0];
    if flat {
        reshape(g, &format!("{name}_unrows"), y, out_ty.shape.clone(), out_ty.quant)
    } else {
        y
    }
}

fn reshape(
    g: &mut Graph,
    name: &str,
    x: ValueId,
    shape: Vec<usize>,
    quant: Option<QuantParams>,
) -> ValueId {
    let ty = TensorType { dtype: g.ty(x).dtype, shape: shape.clone(), quant };
    let vname = g.unique_name(&format!("{}_{name}", g.value(x).name));
    let r = g.add_node(name.to_string(), Op::Reshape { shape }, vec![x], vec![(vname, ty)]);
    g.node(r).outputs[0]
}

fn transpose(
    g: &mut Graph,
    name: &str,
    x: ValueId,
    perm: &[usize],
    quant: Option<QuantParams>,
) -> ValueId {
    let xs = &g.ty(x).shape;
    let shape: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    let ty = TensorType { dtype: g.ty(x).dtype, shape, quant };
    let vname = g.unique_name(&format!("{}_t", g.value(x).name));
    let t = g.add_node(
        name.to_string(),
        Op::Transpose { perm: perm.to_vec() },
        vec![x],
        vec![(vname, ty)],
    );
    g.node(t).outputs[0]
}

/// `y` replaces `out` (and takes its name, which a graph output keeps); the replaced nodes go.
fn finish(g: &mut Graph, out: ValueId, y: ValueId, removed: &[Option<NodeId>]) {
    let name = g.value(out).name.clone();
    g.rename_value(out, &format!("{name}_replaced"));
    g.rename_value(y, &name);
    g.value_mut(y).ty.quant = g.ty(out).quant.clone();
    g.replace_uses(out, y);
    for n in removed.iter().flatten() {
        g.remove_node(*n);
    }
}
