//! `canonicalize`: the graph in the form the quantizer expects.
//!
//! Requires: a float graph (annotations allowed).
//!
//! Does, in order:
//! 1. makes a Sum of two inputs an Add and of one an Identity (onnx-caffe2 writes residual
//!    additions as Sum), then removes Identity, and Dropout whose mask nobody reads (inference:
//!    y = x);
//! 2. folds nodes whose inputs are all constants (except quantize/dequantize, which carry
//!    quantization and are `fold-qdq`'s to absorb) by evaluating them with the interpreter; a
//!    constant with quantization parameters is folded only through a layout op (Transpose,
//!    Reshape, Flatten, Squeeze, Unsqueeze), its per-channel axis following the op (Brevitas
//!    exports a Linear layer's quantized weight through a Transpose);
//! 3. rewrites a MatMul with a constant operand, and the Add of a constant bias after it, as a
//!    Gemm ([`crate::dense`]);
//! 4. folds a Gemm's `alpha` into its weights and `beta` into its bias;
//! 5. rewrites a ConvTranspose with constant weights as a ZeroInsert (the input
//!    with zeros between its elements, framed) and a Conv of the flipped, transposed kernel
//!    ([`crate::conv_transpose`]), so the quantizer, the tiling and the crossbar see a Conv;
//! 6. folds a chain of element-wise constant ops after a Conv/Gemm (`Mul`, `Add`, `Sub`, `Div` by
//!    per-channel constants, each the only reader of the previous value) into the weights and
//!    bias: the chain is simplified to `x·A + B` by the egg rules of [`crate::epilogue`];
//! 7. fuses a Relu or a Clip with constant bounds into the producing Conv/Gemm's output clamp
//!    when it is the only reader;
//! 8. makes a ReduceMean over the spatial axes of an `[N, C, H, W]` tensor that keeps its axes
//!    (squeeze-excite's pooling as the dynamo exporter writes it) a GlobalAveragePool: the same
//!    function, with an integer form in the program.
//!
//! Guarantees: the same function up to float rounding; no Identity; Gemm with `alpha = beta = 1`.

use crate::epilogue::{normalize, TermBuilder};
use crate::error::{PassError, Result};
use crate::util::{new_bias, scale_weights, single_use};
use crate::{Pass, PassContext, Stats};
use cimc_interp::{eval_node, Tensor};
use cimc_ir::{Graph, NodeId, Op, QuantParams, ValueDef, ValueId};

pub struct Canonicalize;

impl Pass for Canonicalize {
    fn name(&self) -> &'static str {
        "canonicalize"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        sums_as_adds(g, &mut stats);
        remove_identities(g, &mut stats);
        fold_constants(g, &mut stats)?;
        let dense = crate::dense::matmuls_to_gemm(g);
        if dense > 0 {
            *stats.entry("matmuls as gemm").or_default() += dense as u64;
        }
        fold_gemm_scalars(g, &mut stats);
        let deconvs = crate::conv_transpose::conv_transposes_to_convs(g);
        if deconvs > 0 {
            *stats.entry("conv transposes as zero insertion and conv").or_default() +=
                deconvs as u64;
        }
        fold_epilogues(g, &mut stats);
        fuse_activations(g, &mut stats);
        spatial_means_as_global_pools(g, &mut stats);
        Ok(stats)
    }
}

fn sums_as_adds(g: &mut Graph, stats: &mut Stats) {
    for n in g.node_ids() {
        let node = g.node(n);
        if node.op != Op::Variadic(cimc_ir::VariadicOp::Sum) {
            continue;
        }
        let op = match node.inputs.len() {
            1 => Op::Identity,
            2 => Op::Add,
            _ => continue,
        };
        g.node_mut(n).op = op;
        bump(stats, "sums as adds");
    }
}

fn spatial_means_as_global_pools(g: &mut Graph, stats: &mut Stats) {
    for n in g.node_ids() {
        let node = g.node(n);
        let Op::Reduce(r) = &node.op else { continue };
        let x = g.ty(node.inputs[0]);
        let spatial = r.op == cimc_ir::ReduceOp::Mean
            && r.keep_dims
            && x.rank() == 4
            && x.dtype.is_float()
            && r.axes == [2, 3];
        if spatial {
            g.node_mut(n).op = Op::GlobalAveragePool;
            bump(stats, "spatial means as global pools");
        }
    }
}

fn bump(stats: &mut Stats, k: &'static str) {
    *stats.entry(k).or_default() += 1;
}

fn remove_identities(g: &mut Graph, stats: &mut Stats) {
    for n in g.node_ids() {
        let node = g.node(n);
        let removable = match node.op {
            Op::Identity => true,
            Op::Dropout => node.outputs[1..]
                .iter()
                .all(|&m| g.users(m).is_empty() && !g.outputs().contains(&m)),
            _ => false,
        };
        if !removable {
            continue;
        }
        let (x, y) = (node.inputs[0], node.outputs[0]);
        if let Some(q) = g.ty(y).quant.clone() {
            g.value_mut(x).ty.quant.get_or_insert(q);
        }
        g.replace_uses(y, x);
        g.remove_node(n);
        bump(stats, "identities removed");
    }
}

fn fold_constants(g: &mut Graph, stats: &mut Stats) -> Result<()> {
    for n in g.node_ids() {
        let node = g.node(n);
        if matches!(node.op, Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. }) {
            continue;
        }
        if node.inputs.is_empty() || !node.inputs.iter().all(|&v| g.value(v).is_const()) {
            continue;
        }
        let annotated = node.inputs.iter().any(|&v| g.ty(v).quant.is_some());
        let quant = if annotated {
            let Some(q) = relaid_quant(g, n)? else { continue };
            Some(q)
        } else {
            None
        };
        let node = g.node(n);
        let ins: Vec<Tensor> = node
            .inputs
            .iter()
            .map(|&v| {
                Tensor::from_data(g.value(v).const_data().expect("invariant: checked constant"))
            })
            .collect::<std::result::Result<_, _>>()?;
        let refs: Vec<&Tensor> = ins.iter().collect();
        let outs = eval_node(&node.op, &refs, node.outputs.len())?;
        let old: Vec<ValueId> = node.outputs.clone();
        for (o, t) in old.into_iter().zip(outs) {
            let name = g.value(o).name.clone();
            g.rename_value(o, &format!("{name}_folded"));
            let c = g.add_const(name, t.to_data());
            g.value_mut(c).ty.quant = quant.clone();
            g.replace_uses(o, c);
        }
        g.remove_node(n);
        bump(stats, "constants folded");
    }
    Ok(())
}

/// The quantization of the output of layout op `n` applied to an annotated constant: the
/// input's, its per-channel axis moved where the op puts it. `None` (not folded) for any other
/// op; an error when the op splits or merges the quantized axis.
fn relaid_quant(g: &Graph, n: NodeId) -> Result<Option<QuantParams>> {
    let node = g.node(n);
    let layout = matches!(
        node.op,
        Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
    );
    if !layout || node.inputs.len() != 1 {
        return Ok(None);
    }
    let q = g.ty(node.inputs[0]).quant.clone().expect("invariant: the caller saw an annotation");
    let Some(a) = q.axis else { return Ok(Some(q)) };
    let (from, to) = (&g.ty(node.inputs[0]).shape, &g.ty(node.outputs[0]).shape);
    let moved = match &node.op {
        Op::Transpose { perm } => perm.iter().position(|&p| p == a),
        // A reshape keeps the axis when some output axis has its size and the same number of
        // elements before it.
        _ => {
            let before: usize = from[..a].iter().product();
            (0..to.len()).find(|&b| to[b] == from[a] && to[..b].iter().product::<usize>() == before)
        }
    };
    match moved {
        Some(b) => Ok(Some(QuantParams { axis: Some(b), ..q })),
        None => Err(PassError::node(
            "canonicalize",
            g,
            n,
            format!(
                "splits or merges axis {a} of constant '{}' {from:?}, along which it is quantized per channel, into {to:?}",
                g.value(node.inputs[0]).name
            ),
        )),
    }
}

fn fold_gemm_scalars(g: &mut Graph, stats: &mut Stats) {
    for n in g.node_ids() {
        let Op::Gemm { alpha, beta, trans_a, trans_b, clamp } = g.node(n).op else { continue };
        if alpha == 1.0 && beta == 1.0 {
            continue;
        }
        let w = g.node(n).inputs[1];
        if !g.value(w).is_const() {
            continue;
        }
        let c = g.ty(w).shape[if trans_b { 0 } else { 1 }];
        let Some(nw) = scale_weights(g, w, if trans_b { 0 } else { 1 }, &vec![alpha; c]) else {
            continue;
        };
        g.node_mut(n).inputs[1] = nw;
        if let Some(&cv) = g.node(n).inputs.get(2) {
            let Some(cs) = g.value(cv).const_data().map(|d| d.to_f32_vec()) else { continue };
            if cs.len() == c || cs.len() == 1 {
                let b: Vec<f32> = (0..c).map(|i| cs[if cs.len() == 1 { 0 } else { i }]).collect();
                let nb = new_bias(g, w, &b, &vec![beta; c], &vec![0.0; c]);
                g.node_mut(n).inputs[2] = nb;
            }
        }
        g.node_mut(n).op = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a, trans_b, clamp };
        bump(stats, "gemm alpha/beta folded");
    }
}

/// A constant as a per-channel vector for an output of shape `out` whose channels lie on
/// `axis`: right-aligned, every other dimension 1. `None` if it is not of that form.
fn per_channel(g: &Graph, v: ValueId, out: &[usize], axis: usize) -> Option<Vec<f64>> {
    let d = g.value(v).const_data()?;
    if g.ty(v).quant.is_some() || !d.dtype().is_float() {
        return None;
    }
    let shape = d.shape();
    if shape.len() > out.len() {
        return None;
    }
    let pad = out.len() - shape.len();
    for (i, &s) in shape.iter().enumerate() {
        if s != 1 && (i + pad != axis || s != out[axis]) {
            return None;
        }
    }
    Some(d.to_f64_vec())
}

fn fold_epilogues(g: &mut Graph, stats: &mut Stats) {
    for p in g.node_ids() {
        if !g.is_live(p) {
            continue;
        }
        let (w_axis, ch_axis) = match g.node(p).op {
            Op::Conv(_) => (0, 1),
            Op::Gemm { trans_b, alpha, beta, .. } if alpha == 1.0 && beta == 1.0 => {
                (if trans_b { 0 } else { 1 }, 1)
            }
            _ => continue,
        };
        let w = g.node(p).inputs[1];
        if !g.value(w).is_const() {
            continue;
        }
        let out = g.node(p).outputs[0];
        let shape = g.ty(out).shape.clone();
        if shape.len() <= ch_axis {
            continue;
        }
        let c = shape[ch_axis];
        let mut term = TermBuilder::new();
        let mut chain: Vec<NodeId> = Vec::new();
        let mut v = out;
        while single_use(g, v) {
            let (u, slot) = g.users(v)[0];
            let node = g.node(u);
            if !matches!(node.op, Op::Add | Op::Sub | Op::Mul | Op::Div)
                || g.ty(node.outputs[0]).shape != shape
            {
                break;
            }
            let other = node.inputs[1 - slot];
            let Some(k) = per_channel(g, other, &shape, ch_axis) else { break };
            match (&node.op, slot) {
                (Op::Add, _) => term.add(k),
                (Op::Mul, _) => term.mul(k),
                (Op::Sub, 0) => term.sub(k),
                (Op::Sub, _) => {
                    term.mul(vec![-1.0]);
                    term.add(k);
                }
                (Op::Div, 0) => {
                    if k.contains(&0.0) {
                        break;
                    }
                    term.div(k)
                }
                _ => break,
            }
            chain.push(u);
            v = node.outputs[0];
        }
        if chain.is_empty() {
            continue;
        }
        let Some(affine) = normalize(&term.expr, term.table.clone()) else { continue };
        let expand = |x: &Option<Vec<f64>>, dflt: f32| -> Vec<f32> {
            match x {
                None => vec![dflt; c],
                Some(v) if v.len() == 1 => vec![v[0] as f32; c],
                Some(v) => v.iter().map(|&x| x as f32).collect(),
            }
        };
        let a = expand(&affine.scale, 1.0);
        let b = expand(&affine.shift, 0.0);
        let Some(nw) = scale_weights(g, w, w_axis, &a) else { continue };
        let bias = match g.node(p).inputs.get(2) {
            Some(&bv) => match g.value(bv).const_data().map(|d| d.to_f32_vec()) {
                Some(bb) if bb.len() == c => bb,
                Some(bb) if bb.len() == 1 => vec![bb[0]; c],
                _ => continue,
            },
            None => vec![0.0; c],
        };
        let nb = new_bias(g, w, &bias, &a, &b);
        {
            let mut node = g.node_mut(p);
            node.inputs[1] = nw;
            node.inputs.truncate(2);
            node.inputs.push(nb);
        }
        if let Some(q) = g.ty(v).quant.clone() {
            g.value_mut(out).ty.quant = Some(q);
        }
        g.replace_uses(v, out);
        for u in chain {
            g.remove_node(u);
            bump(stats, "epilogue ops folded");
        }
    }
}

fn fuse_activations(g: &mut Graph, stats: &mut Stats) {
    for n in g.node_ids() {
        if !g.is_live(n) {
            continue;
        }
        let bounds = match g.node(n).op {
            Op::Relu => (0.0f32, f32::INFINITY),
            Op::Clip => {
                let get = |k: usize| -> Option<f32> {
                    let v = *g.node(n).inputs.get(k)?;
                    let d = g.value(v).const_data()?;
                    (d.numel() == 1).then(|| d.get_f64(0) as f32)
                };
                match (get(1), get(2)) {
                    (Some(lo), Some(hi)) => (lo, hi),
                    _ => continue,
                }
            }
            _ => continue,
        };
        let x = g.node(n).inputs[0];
        let Some(p) = g.producer(x) else { continue };
        if !single_use(g, x) {
            continue;
        }
        let fused = match &mut g.node_mut(p).op {
            Op::Conv(a) => {
                a.clamp = Some(intersect(a.clamp, bounds));
                true
            }
            Op::Gemm { clamp, .. } => {
                *clamp = Some(intersect(*clamp, bounds));
                true
            }
            _ => false,
        };
        if !fused {
            continue;
        }
        let y = g.node(n).outputs[0];
        if let Some(q) = g.ty(y).quant.clone() {
            g.value_mut(x).ty.quant = Some(q);
        }
        g.replace_uses(y, x);
        g.remove_node(n);
        bump(stats, "activations fused");
    }
    let _ = ValueDef::Input;
}

fn intersect(old: Option<(f32, f32)>, new: (f32, f32)) -> (f32, f32) {
    match old {
        None => new,
        Some((a, b)) => (a.max(new.0), b.min(new.1)),
    }
}
