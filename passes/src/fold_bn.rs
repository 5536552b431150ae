//! `fold-bn`: BatchNormalization folded into the Conv/Gemm/MatMul that produces its input.
//!
//! Requires: a float graph; BN parameters constant.
//!
//! Does: for `y = k[c]·x + d[c]` (`k = γ/√(σ²+ε)`, `d = β − μ·k`) after a matrix op whose output
//! only the BN reads — directly, or through a single-use Reshape/Flatten that keeps the channels
//! on axis 1 (`[N,C,1,..,1] → [N,C]`) — scales the op's output channel `c` of the weights by
//! `k[c]` and sets its bias to `b[c]·k[c] + d[c]` (a MatMul with a 2-D input becomes a Gemm to
//! carry the bias). Annotated weights stay exact: their per-channel scale is multiplied by
//! `|k[c]|`, so the integer codes (negated where `k < 0`) are the model's own. Any other BN (after
//! a ReLU, on a graph input, on a tensor with other readers) is left in place: the integer
//! program runs it as a per-channel affine step.
//!
//! Guarantees: the same function up to float rounding; no BN whose producer could take it.

use crate::error::Result;
use crate::util::{new_bias, scale_weights, single_use};
use crate::{Pass, PassContext, Stats};
use cimc_ir::{Graph, NodeId, Op, ValueId};

pub struct FoldBn;

impl Pass for FoldBn {
    fn name(&self) -> &'static str {
        "fold-bn"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        for bn in g.node_ids() {
            if !g.is_live(bn) {
                continue;
            }
            let Op::BatchNorm { epsilon } = g.node(bn).op else { continue };
            *stats.entry("batch norms").or_default() += 1;
            if fold_one(g, bn, epsilon).is_some() {
                *stats.entry("folded").or_default() += 1;
            } else {
                *stats.entry("kept as affine").or_default() += 1;
            }
        }
        Ok(stats)
    }
}

fn const_vec(g: &Graph, v: ValueId) -> Option<Vec<f32>> {
    g.value(v).const_data().map(|d| d.to_f32_vec())
}

/// Folds one BN; `None` when its producer cannot take it (the graph is then unchanged).
fn fold_one(g: &mut Graph, bn: NodeId, eps: f32) -> Option<()> {
    let node = g.node(bn);
    let x = node.inputs[0];
    let y = node.outputs[0];
    let [gamma, beta, mean, var] =
        [1, 2, 3, 4].map(|k| node.inputs.get(k).and_then(|&v| const_vec(g, v)));
    let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
    let k: Vec<f32> = gamma.iter().zip(&var).map(|(&ga, &v)| ga / (v + eps).sqrt()).collect();
    let d: Vec<f32> = beta.iter().zip(&mean).zip(&k).map(|((&b, &m), &k)| b - m * k).collect();
    if !single_use(g, x) {
        return None;
    }
    // The matrix op, directly or through a channel-preserving reshape.
    let mut p = g.producer(x)?;
    let mut through = None;
    if matches!(g.node(p).op, Op::Reshape { .. } | Op::Flatten { .. }) {
        let r_in = g.node(p).inputs[0];
        let s_in = &g.ty(r_in).shape;
        let s_out = &g.ty(x).shape;
        let keeps = s_out.len() == 2
            && s_in.len() >= 2
            && s_in[..2] == s_out[..]
            && s_in[2..].iter().all(|&d| d == 1);
        if !keeps || !single_use(g, r_in) {
            return None;
        }
        through = Some(p);
        p = g.producer(r_in)?;
    }
    let c = k.len();
    let old_weights = g.node(p).inputs.get(1).copied();
    match g.node(p).op.clone() {
        Op::Conv(_) => {
            let w = g.node(p).inputs[1];
            if g.ty(w).shape.first() != Some(&c) {
                return None;
            }
            let nw = scale_weights(g, w, 0, &k)?;
            let bias = match g.node(p).inputs.get(2) {
                Some(&b) => const_vec(g, b)?,
                None => vec![0.0; c],
            };
            let nb = new_bias(g, w, &bias, &k, &d);
            let mut node = g.node_mut(p);
            node.inputs[1] = nw;
            node.inputs.truncate(2);
            node.inputs.push(nb);
        }
        Op::Gemm { alpha, beta, trans_a, trans_b, clamp } => {
            let w = g.node(p).inputs[1];
            let axis = if trans_b { 0 } else { 1 };
            if g.ty(w).shape.get(axis) != Some(&c) {
                return None;
            }
            // k·(alpha·A·B + beta·C) + d = alpha·A·(B·k) + 1·((beta·C)·k + d).
            let bias = match g.node(p).inputs.get(2) {
                Some(&cv) => {
                    let cs = const_vec(g, cv)?;
                    if cs.len() != c && cs.len() != 1 {
                        return None;
                    }
                    (0..c).map(|i| beta * cs[if cs.len() == 1 { 0 } else { i }]).collect()
                }
                None => vec![0.0; c],
            };
            let nw = scale_weights(g, w, axis, &k)?;
            let nb = new_bias(g, w, &bias, &k, &d);
            let mut node = g.node_mut(p);
            node.inputs[1] = nw;
            node.inputs.truncate(2);
            node.inputs.push(nb);
            node.op = Op::Gemm { alpha, beta: 1.0, trans_a, trans_b, clamp };
        }
        Op::MatMul => {
            let a = g.node(p).inputs[0];
            let w = g.node(p).inputs[1];
            if g.ty(a).rank() != 2 || g.ty(w).rank() != 2 || g.ty(w).shape[1] != c {
                return None;
            }
            let nw = scale_weights(g, w, 1, &k)?;
            let nb = new_bias(g, w, &vec![0.0; c], &k, &d);
            let mut node = g.node_mut(p);
            node.inputs = vec![a, nw, nb];
            node.op =
                Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false, clamp: None };
        }
        _ => return None,
    }
    // The original weights (often the model file's own pages) go now, not after the pass.
    if let Some(w) = old_weights {
        g.release_if_unused(w);
    }
    let out = match through {
        Some(r) => g.node(r).outputs[0],
        None => g.node(p).outputs[0],
    };
    // The folded tensor is the BN's output: it takes over the BN output's annotation, if any.
    if let Some(q) = g.ty(y).quant.clone() {
        g.value_mut(out).ty.quant = Some(q);
    }
    g.replace_uses(y, out);
    g.remove_node(bn);
    Some(())
}
