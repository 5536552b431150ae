//! The backward of each op: from d loss / d output to d loss / d each input (f64).
//!
//! Elementwise, matrix and shape ops live here; Conv and the pools in `spatial.rs`. Every
//! function returns one entry per node input (`None` where no gradient is defined or needed:
//! integer operands, shapes, bounds).

use super::{node_err, spatial};
use crate::error::Result;
use crate::ops::{reduce, variadic};
use crate::tensor::Tensor;
use cimc_ir::{Node, Op, PadMode, VariadicOp};
use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2, IxDyn, Slice};

type Grads = Vec<Option<ArrayD<f64>>>;

/// The f64 array of an operand (the forward run converts every float to f64).
pub(super) fn arr<'a>(node: &Node, t: &'a Tensor) -> Result<&'a ArrayD<f64>> {
    match t {
        Tensor::F64(a) => Ok(a),
        other => Err(node_err(node, format!("backward of a {} operand", other.dtype()))),
    }
}

/// `dy` where `lo < y < hi`, 0 elsewhere: the backward of a clamp (Relu, Clip, a fused
/// activation) written in terms of its output.
pub(super) fn clamp_mask(dy: &ArrayD<f64>, y: &ArrayD<f64>, lo: f64, hi: f64) -> ArrayD<f64> {
    let mut d = dy.clone();
    d.zip_mut_with(y, |g, &v| {
        if !(v > lo && v < hi) {
            *g = 0.0;
        }
    });
    d
}

/// Sums a broadcast gradient back to `shape` (numpy broadcasting).
pub(super) fn unbroadcast(g: ArrayD<f64>, shape: &[usize]) -> ArrayD<f64> {
    let mut g = g;
    while g.ndim() > shape.len() {
        g = g.sum_axis(Axis(0));
    }
    for (d, &s) in shape.iter().enumerate() {
        if s == 1 && g.shape()[d] != 1 {
            g = g.sum_axis(Axis(d)).insert_axis(Axis(d));
        }
    }
    g
}

fn two_d<'a>(node: &Node, a: &'a ArrayD<f64>) -> Result<ArrayView2<'a, f64>> {
    a.view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| node_err(node, format!("backward needs 2-D operands, got {:?}", a.shape())))
}

fn reshaped(dy: &ArrayD<f64>, shape: &[usize]) -> ArrayD<f64> {
    let v: Vec<f64> = dy.iter().copied().collect();
    ArrayD::from_shape_vec(IxDyn(shape), v)
        .expect("invariant: a reshaping op keeps the element count")
}

/// The backward of `node`: gradients of its inputs given its inputs, outputs and the gradient
/// `dy` of its first output; `need[i]` says whether input `i` wants one. One arm per op; an op
/// without a backward says so.
pub(super) fn backward(
    node: &Node,
    ins: &[&Tensor],
    outs: &[&Tensor],
    dy: &ArrayD<f64>,
    need: &[bool],
) -> Result<Grads> {
    let n_in = ins.len();
    let only_first = |d: ArrayD<f64>| {
        let mut v = vec![None; n_in];
        v[0] = Some(d);
        v
    };
    let x = || arr(node, ins[0]);
    let y = || arr(node, outs[0]);
    match &node.op {
        Op::Conv(a) => spatial::conv_backward(node, a, ins, y()?, dy, need),
        Op::MaxPool(a) => Ok(only_first(spatial::max_pool_backward(node, a, x()?, dy)?)),
        Op::AveragePool(a) => Ok(only_first(spatial::average_pool_backward(node, a, x()?, dy)?)),
        Op::GlobalAveragePool => Ok(only_first(global_average_pool(x()?, dy))),
        Op::Relu => Ok(only_first(clamp_mask(dy, y()?, 0.0, f64::INFINITY))),
        Op::Clip => clip(node, ins, dy, need),
        Op::LeakyRelu { alpha } => {
            let mut d = dy.clone();
            d.zip_mut_with(x()?, |g, &v| {
                if v < 0.0 {
                    *g *= *alpha as f64;
                }
            });
            Ok(only_first(d))
        }
        Op::Sigmoid => {
            let mut d = dy.clone();
            d.zip_mut_with(y()?, |g, &s| *g *= s * (1.0 - s));
            Ok(only_first(d))
        }
        Op::Tanh => {
            let mut d = dy.clone();
            d.zip_mut_with(y()?, |g, &t| *g *= 1.0 - t * t);
            Ok(only_first(d))
        }
        Op::Add => binary(node, ins, dy, need, Arith::Add),
        Op::Sub => binary(node, ins, dy, need, Arith::Sub),
        Op::Mul => binary(node, ins, dy, need, Arith::Mul),
        Op::Div => binary(node, ins, dy, need, Arith::Div),
        Op::Gemm { alpha, beta, trans_a, trans_b, clamp } => {
            let dy = match clamp {
                Some((lo, hi)) => clamp_mask(dy, y()?, *lo as f64, *hi as f64),
                None => dy.clone(),
            };
            gemm(node, ins, &dy, need, (*alpha as f64, *beta as f64), (*trans_a, *trans_b))
        }
        Op::MatMul => {
            let (a, b) = (two_d(node, x()?)?, two_d(node, arr(node, ins[1])?)?);
            let d2 = two_d(node, dy)?;
            Ok(vec![
                need[0].then(|| d2.dot(&b.t()).into_dyn()),
                need[1].then(|| a.t().dot(&d2).into_dyn()),
            ])
        }
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity
        | Op::Dropout => Ok(only_first(reshaped(dy, ins[0].shape()))),
        Op::Transpose { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            Ok(only_first(dy.clone().permuted_axes(IxDyn(&inv)).as_standard_layout().to_owned()))
        }
        Op::Concat { axis } => {
            let mut at = 0;
            let mut g = Vec::with_capacity(n_in);
            for t in ins {
                let len = t.shape()[*axis];
                g.push(Some(dy.slice_axis(Axis(*axis), Slice::from(at..at + len)).to_owned()));
                at += len;
            }
            Ok(g)
        }
        Op::Pad { mode, pads } => Ok(only_first(pad(node, *mode, pads, ins[0].shape(), dy)?)),
        Op::Softmax { axis, coerce_2d } => {
            let y = y()?;
            if *coerce_2d && *axis + 1 != y.ndim() {
                return Err(node_err(node, "no backward for a legacy softmax over several axes"));
            }
            let prod = dy * y;
            let s = prod.sum_axis(Axis(*axis)).insert_axis(Axis(*axis));
            Ok(only_first(y * &(dy - &s)))
        }
        Op::BatchNorm { epsilon } => batch_norm(node, *epsilon as f64, ins, dy),
        Op::Unary(f) => {
            let mut d = dy.clone();
            ndarray::Zip::from(&mut d)
                .and(x()?)
                .and(y()?)
                .for_each(|g, &x, &y| *g *= f.derivative(x, y));
            Ok(only_first(d))
        }
        Op::Variadic(f) => variadic(node, *f, ins, y()?, dy, need),
        Op::Reduce(r) => Ok(only_first(reduce::backward(r, x()?, y()?, dy))),
        Op::Pow => pow(node, ins, y()?, dy, need),
        Op::PRelu => prelu(node, ins, dy, need),
        Op::Where => where_(node, ins, dy, need),
        // Their results are indices or bools: no gradient reaches their inputs.
        Op::ArgMax { .. } | Op::ArgMin { .. } | Op::Compare(_) | Op::Logic(_) | Op::Not => {
            Ok(vec![None; n_in])
        }
        Op::TopK { .. } => Err(no_backward(node)),
        Op::Expand { .. } | Op::Tile { .. } | Op::DepthToSpace { .. } | Op::SpaceToDepth { .. } => {
            Ok(only_first(moves_backward(node, ins[0].shape(), dy)?))
        }
        Op::LogSoftmax { axis, coerce_2d } => {
            let y = y()?;
            if *coerce_2d && *axis + 1 != y.ndim() {
                return Err(node_err(
                    node,
                    "no backward for a legacy log_softmax over several axes",
                ));
            }
            let s = dy.sum_axis(Axis(*axis)).insert_axis(Axis(*axis));
            Ok(only_first(dy - &(y.mapv(f64::exp) * &s)))
        }
        // Split's other outputs would need their own gradients; the rest have no backward yet.
        Op::Split { .. }
        | Op::Resize(_)
        | Op::Lrn { .. }
        | Op::InstanceNorm { .. }
        | Op::LayerNorm { .. }
        | Op::ConvTranspose { .. }
        | Op::Lstm(_)
        | Op::Gru(_)
        | Op::Rnn(_)
        | Op::ZeroInsert { .. }
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Gather { .. }
        | Op::Slice { .. }
        | Op::Cast { .. }
        | Op::QuantizeLinear { .. }
        | Op::DequantizeLinear { .. }
        | Op::Trunc { .. }
        | Op::MultiThreshold { .. } => Err(no_backward(node)),
    }
}

/// The backward of an op that only moves elements of its first input: the forward run on the
/// flat indices of the input says where each output element came from, and `dy` is added back
/// there.
fn moves_backward(node: &Node, x_shape: &[usize], dy: &ArrayD<f64>) -> Result<ArrayD<f64>> {
    let n: usize = x_shape.iter().product();
    let iota = Tensor::I64(
        ArrayD::from_shape_vec(IxDyn(x_shape), (0..n as i64).collect())
            .expect("invariant: n elements of shape x_shape"),
    );
    let src = crate::eval_node(&node.op, &[&iota], 1).map_err(|e| node_err(node, e.to_string()))?;
    let Some(Tensor::I64(src)) = src.into_iter().next() else {
        return Err(node_err(node, "the index run gave no i64 output"));
    };
    let mut dx = ArrayD::zeros(IxDyn(x_shape));
    let d = dx.as_slice_mut().expect("invariant: a new array is contiguous");
    for (&i, &g) in src.iter().zip(dy.iter()) {
        d[i as usize] += g;
    }
    Ok(dx)
}

/// The error of an op without a backward.
fn no_backward(node: &Node) -> crate::error::InterpError {
    node_err(node, format!("no backward for '{}'", node.op.name()))
}

/// GlobalAveragePool: each input element gets `dy / (H·W)` of its channel.
fn global_average_pool(x: &ArrayD<f64>, dy: &ArrayD<f64>) -> ArrayD<f64> {
    let hw: usize = x.shape()[2..].iter().product();
    let mut dx = ArrayD::zeros(x.shape());
    let data = dx.as_slice_mut().expect("invariant: a new array is contiguous");
    for (p, &g) in dy.iter().enumerate() {
        data[p * hw..(p + 1) * hw].fill(g / hw as f64);
    }
    dx
}

/// Clip, in terms of the input: the gradient passes inside the bounds, and each bound
/// collects it where the input is beyond that bound.
fn clip(node: &Node, ins: &[&Tensor], dy: &ArrayD<f64>, need: &[bool]) -> Result<Grads> {
    let n_in = ins.len();
    let bound = |i: usize, d: f64| -> Result<f64> {
        match ins.get(i) {
            None => Ok(d),
            Some(t) => {
                arr(node, t)?.iter().next().copied().ok_or_else(|| node_err(node, "an empty bound"))
            }
        }
    };
    let (lo, hi) = (bound(1, f64::NEG_INFINITY)?, bound(2, f64::INFINITY)?);
    let x = arr(node, ins[0])?;
    let mut g = vec![Some(clamp_mask(dy, x, lo, hi)), None, None];
    for (i, beyond) in [(1, -1.0), (2, 1.0)] {
        if i < n_in && need[i] {
            let b = if i == 1 { lo } else { hi };
            let s: f64 = dy
                .iter()
                .zip(x.iter())
                .filter(|(_, &v)| (v - b) * beyond > 0.0)
                .map(|(d, _)| d)
                .sum();
            g[i] = Some(ArrayD::from_elem(ins[i].shape(), s));
        }
    }
    g.truncate(n_in);
    Ok(g)
}

/// Gemm `alpha·A'·B' + beta·C` (A' = A or Aᵀ, B' likewise), given the gradient after its
/// fused clamp.
fn gemm(
    node: &Node,
    ins: &[&Tensor],
    dy: &ArrayD<f64>,
    need: &[bool],
    (alpha, beta): (f64, f64),
    (trans_a, trans_b): (bool, bool),
) -> Result<Grads> {
    let n_in = ins.len();
    let (a, b) = (two_d(node, arr(node, ins[0])?)?, two_d(node, arr(node, ins[1])?)?);
    let ap = if trans_a { a.t() } else { a };
    let bp = if trans_b { b.t() } else { b };
    let d2 = two_d(node, dy)?;
    let mut g: Grads = vec![None; n_in];
    if need[0] {
        let dap: Array2<f64> = d2.dot(&bp.t()) * alpha;
        g[0] = Some(if trans_a { dap.t().to_owned() } else { dap }.into_dyn());
    }
    if need.get(1) == Some(&true) {
        let dbp: Array2<f64> = ap.t().dot(&d2) * alpha;
        g[1] = Some(if trans_b { dbp.t().to_owned() } else { dbp }.into_dyn());
    }
    if n_in > 2 && need[2] {
        let c = arr(node, ins[2])?;
        g[2] = Some(unbroadcast(dy.clone() * beta, c.shape()));
    }
    Ok(g)
}

/// Pad: the gradient of the input is the output gradient cropped back; only constant
/// padding without cropping has one.
fn pad(
    node: &Node,
    mode: PadMode,
    pads: &[i64],
    x_shape: &[usize],
    dy: &ArrayD<f64>,
) -> Result<ArrayD<f64>> {
    if mode != PadMode::Constant || pads.iter().any(|&p| p < 0) {
        return Err(no_backward(node));
    }
    let mut v = dy.view();
    for (d, &s) in x_shape.iter().enumerate() {
        let b = pads[d] as usize;
        v.slice_axis_inplace(Axis(d), Slice::from(b..b + s));
    }
    Ok(v.to_owned())
}

/// A variadic op: input `i` gets `dy · ∂y/∂x_i`, summed back to its shape.
fn variadic(
    node: &Node,
    f: VariadicOp,
    ins: &[&Tensor],
    y: &ArrayD<f64>,
    dy: &ArrayD<f64>,
    need: &[bool],
) -> Result<Grads> {
    let n = ins.len();
    let mut g: Grads = vec![None; n];
    for (i, t) in ins.iter().enumerate() {
        if !need[i] {
            continue;
        }
        let x = arr(node, t)?;
        let xb = x
            .broadcast(dy.raw_dim())
            .ok_or_else(|| node_err(node, "an input does not broadcast to the output"))?;
        let mut d = dy.clone();
        ndarray::Zip::from(&mut d)
            .and(&xb)
            .and(y)
            .for_each(|d, &x, &y| *d *= variadic::partial(f, x, y, n));
        g[i] = Some(unbroadcast(d, x.shape()));
    }
    Ok(g)
}

/// Pow `y = a^b`: `∂y/∂a = b·a^(b−1)`, `∂y/∂b = ln(a)·y`. An integer exponent (a constant
/// power) gets no gradient.
fn pow(
    node: &Node,
    ins: &[&Tensor],
    y: &ArrayD<f64>,
    dy: &ArrayD<f64>,
    need: &[bool],
) -> Result<Grads> {
    let a = arr(node, ins[0])?;
    let b = match ins[1] {
        Tensor::F64(b) => b.clone(),
        other => match crate::ops::cast::cast(other, cimc_ir::DType::F64) {
            Tensor::F64(b) => b,
            _ => return Err(node_err(node, "invariant: a cast to f64 gives f64")),
        },
    };
    let sh = dy.raw_dim();
    let (ab, bb) = match (a.broadcast(sh.clone()), b.broadcast(sh)) {
        (Some(ab), Some(bb)) => (ab, bb),
        _ => return Err(node_err(node, "operands do not broadcast to the output")),
    };
    let mut g: Grads = vec![None, None];
    if need[0] {
        let mut d = dy.clone();
        ndarray::Zip::from(&mut d)
            .and(&ab)
            .and(&bb)
            .for_each(|d, &a, &b| *d *= b * a.powf(b - 1.0));
        g[0] = Some(unbroadcast(d, a.shape()));
    }
    if need[1] && matches!(ins[1], Tensor::F64(_)) {
        let mut d = dy.clone();
        ndarray::Zip::from(&mut d).and(&ab).and(y).for_each(|d, &a, &y| *d *= a.ln() * y);
        g[1] = Some(unbroadcast(d, b.shape()));
    }
    Ok(g)
}

/// PRelu `y = x < 0 ? slope·x : x`: `∂y/∂x` is `slope` or 1, `∂y/∂slope` is `x` or 0
/// (summed back to the slope's shape).
fn prelu(node: &Node, ins: &[&Tensor], dy: &ArrayD<f64>, need: &[bool]) -> Result<Grads> {
    let (x, s) = (arr(node, ins[0])?, arr(node, ins[1])?);
    let sb = s
        .broadcast(x.raw_dim())
        .ok_or_else(|| node_err(node, "the slope does not broadcast to the input"))?;
    let mut g: Grads = vec![None, None];
    if need[0] {
        let mut d = dy.clone();
        ndarray::Zip::from(&mut d).and(x).and(&sb).for_each(|d, &x, &s| {
            if x < 0.0 {
                *d *= s
            }
        });
        g[0] = Some(d);
    }
    if need[1] {
        let mut d = dy.clone();
        ndarray::Zip::from(&mut d).and(x).for_each(|d, &x| *d *= if x < 0.0 { x } else { 0.0 });
        g[1] = Some(unbroadcast(d, s.shape()));
    }
    Ok(g)
}

/// Where: the gradient goes to `x` where the condition holds, to `y` elsewhere (each summed
/// back to its shape); the condition gets none.
fn where_(node: &Node, ins: &[&Tensor], dy: &ArrayD<f64>, need: &[bool]) -> Result<Grads> {
    let Tensor::Bool(c) = ins[0] else {
        return Err(node_err(node, "the condition is not bool"));
    };
    let cb = c
        .broadcast(dy.raw_dim())
        .ok_or_else(|| node_err(node, "the condition does not broadcast to the output"))?;
    let mut g: Grads = vec![None, None, None];
    for (i, when) in [(1, true), (2, false)] {
        if need[i] {
            let mut d = dy.clone();
            ndarray::Zip::from(&mut d).and(&cb).for_each(|d, &c| {
                if c != when {
                    *d = 0.0
                }
            });
            g[i] = Some(unbroadcast(d, ins[i].shape()));
        }
    }
    Ok(g)
}

/// The four broadcasting arithmetic ops.
#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

fn binary(
    node: &Node,
    ins: &[&Tensor],
    dy: &ArrayD<f64>,
    need: &[bool],
    op: Arith,
) -> Result<Grads> {
    let (a, b) = (arr(node, ins[0])?, arr(node, ins[1])?);
    let sh = dy.shape();
    let bc = |t: &ArrayD<f64>| -> Result<ArrayD<f64>> {
        Ok(t.broadcast(IxDyn(sh))
            .ok_or_else(|| node_err(node, "operands do not broadcast to the output"))?
            .to_owned())
    };
    let (ga, gb) = match op {
        Arith::Add => (dy.clone(), dy.clone()),
        Arith::Sub => (dy.clone(), -dy),
        Arith::Mul => (dy * &bc(b)?, dy * &bc(a)?),
        Arith::Div => {
            let (ab, bb) = (bc(a)?, bc(b)?);
            let ga = dy / &bb;
            let gb = -(&ga * &ab) / &bb;
            (ga, gb)
        }
    };
    Ok(vec![
        need[0].then(|| unbroadcast(ga, a.shape())),
        need[1].then(|| unbroadcast(gb, b.shape())),
    ])
}

/// BatchNormalization (inference): `y = γ (x − μ) / sqrt(σ² + ε) + β` along axis 1.
fn batch_norm(node: &Node, eps: f64, ins: &[&Tensor], dy: &ArrayD<f64>) -> Result<Grads> {
    let x = arr(node, ins[0])?;
    let p: Vec<&ArrayD<f64>> = ins[1..].iter().map(|t| arr(node, t)).collect::<Result<_>>()?;
    let c = x.shape()[1];
    if p.len() != 4 || p.iter().any(|a| a.len() != c) {
        return Err(node_err(node, "backward needs 4 per-channel parameters"));
    }
    let (gamma, mean, var) = (p[0].as_slice(), p[2].as_slice(), p[3].as_slice());
    let (gamma, mean, var) = match (gamma, mean, var) {
        (Some(g), Some(m), Some(v)) => (g, m, v),
        _ => return Err(node_err(node, "parameters are not contiguous")),
    };
    let mut dx = dy.clone();
    let (mut dg, mut db, mut dm, mut dv) = (vec![0.0; c], vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    for (ch, (mut dxc, xc)) in dx.axis_iter_mut(Axis(1)).zip(x.axis_iter(Axis(1))).enumerate() {
        let inv = 1.0 / (var[ch] + eps).sqrt();
        for (g, &xv) in dxc.iter_mut().zip(xc.iter()) {
            let xh = (xv - mean[ch]) * inv;
            dg[ch] += *g * xh;
            db[ch] += *g;
            dm[ch] -= *g * gamma[ch] * inv;
            dv[ch] -= 0.5 * *g * gamma[ch] * xh * inv * inv;
            *g *= gamma[ch] * inv;
        }
    }
    let v = |d: Vec<f64>, like: &ArrayD<f64>| {
        reshaped(
            &ArrayD::from_shape_vec(IxDyn(&[c]), d).expect("invariant: c elements"),
            like.shape(),
        )
    };
    Ok(vec![Some(dx), Some(v(dg, p[0])), Some(v(db, p[1])), Some(v(dm, p[2])), Some(v(dv, p[3]))])
}
