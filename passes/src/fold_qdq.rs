//! `fold-qdq`: quantization stated by an imported model becomes annotations.
//!
//! Requires: a float graph from the importer, where QuantizeLinear, DequantizeLinear and Clips
//! on integer codes are kept unfolded (the importer never folds them).
//!
//! Does:
//! - `DequantizeLinear(codes, s, z, axis)` of constant codes, optionally through a `Clip` on the
//!   codes (QCDQ weights): the float constant `s·(codes − z)`, annotated with the model's `s`,
//!   `z`, axis and bit width (8 for i8/u8, 32 for i32 biases, or what the Clip bounds allow);
//! - `QuantizeLinear(x, s, z) [→ Clip(lo, hi)] → DequantizeLinear(·, s, z)` on an activation:
//!   removed, and `x` annotated with `s`, `z` and the bits of the code range (the Clip's bounds
//!   narrow it: `[0, 15]` is 4-bit unsigned, `[-8, 7]` 4-bit signed); where `x` is a float
//!   constant (a QONNX weight or bias), a new constant of the values the DequantizeLinear gave
//!   (rounded and clipped to the codes) takes its place, annotated, so the float graph still
//!   computes what the model does;
//! - `QuantizeLinear(x, s, z) → MaxPool/Flatten/Reshape/... on codes → DequantizeLinear(·, s, z)`
//!   (onnxruntime's QOperator models): the moves run on `x` instead, their outputs annotated.
//!
//! Guarantees: no QuantizeLinear/DequantizeLinear pair left on activations; the model's scales
//! and zero points are kept exactly, nothing is re-derived (`docs/quantization.md`).

use crate::error::{PassError, Result};
use crate::{Pass, PassContext, Stats};
use cimc_ir::{DType, Graph, NodeId, Op, QuantParams, TensorData, ValueId};

pub struct FoldQdq;

impl Pass for FoldQdq {
    fn name(&self) -> &'static str {
        "fold-qdq"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        for n in g.node_ids() {
            if !g.is_live(n) || !matches!(g.node(n).op, Op::DequantizeLinear { .. }) {
                continue;
            }
            let src = g.node(n).inputs[0];
            if const_codes(g, src).is_some() {
                fold_constant(g, n)?;
                *stats.entry("constants annotated").or_default() += 1;
            } else if fold_activation(g, n)? {
                *stats.entry("activations annotated").or_default() += 1;
            }
        }
        Ok(stats)
    }
}

/// Constant codes, possibly through a Clip with constant bounds: (codes, shape, dtype, bounds).
fn const_codes(g: &Graph, v: ValueId) -> Option<(Vec<i64>, Vec<usize>, DType, Option<(i64, i64)>)> {
    if let Some(d) = g.value(v).const_data() {
        return d.dtype().is_int().then(|| (d.to_i64_vec(), d.shape().to_vec(), d.dtype(), None));
    }
    let p = g.producer(v)?;
    let node = g.node(p);
    if node.op != Op::Clip {
        return None;
    }
    let d = g.value(node.inputs[0]).const_data()?;
    if !d.dtype().is_int() {
        return None;
    }
    let (lo, hi) = clip_bounds(g, p)?;
    let codes = d.to_i64_vec().into_iter().map(|c| c.clamp(lo, hi)).collect();
    Some((codes, d.shape().to_vec(), d.dtype(), Some((lo, hi))))
}

fn clip_bounds(g: &Graph, clip: NodeId) -> Option<(i64, i64)> {
    let node = g.node(clip);
    let get = |k: usize| -> Option<i64> {
        let d = g.value(*node.inputs.get(k)?).const_data()?;
        (d.numel() == 1)
            .then(|| d.get_f64(0).clamp(-(1i64 << 40) as f64, (1i64 << 40) as f64) as i64)
    };
    Some((get(1)?, get(2)?))
}

/// Bits and signedness of a code range `[lo, hi]` (the smallest width that holds it).
fn bits_of_range(lo: i64, hi: i64) -> (u8, bool) {
    let width = |m: i64| (64 - (m.max(1) as u64).leading_zeros()) as u8;
    if lo >= 0 {
        (width(hi).max(2), false)
    } else {
        ((1 + width((-lo).max(hi + 1) - 1)).max(2), true)
    }
}

fn dtype_bits(d: DType) -> (u8, bool) {
    match d {
        DType::I8 => (8, true),
        DType::U8 => (8, false),
        DType::I16 => (16, true),
        DType::U16 => (16, false),
        DType::I32 => (32, true),
        _ => (32, true),
    }
}

/// The scale and zero point inputs of a Q or DQ node, per element of `axis`.
fn scale_zp(g: &Graph, n: NodeId) -> Option<(Vec<f32>, Vec<i32>)> {
    let node = g.node(n);
    let s = g.value(*node.inputs.get(1)?).const_data()?.to_f32_vec();
    let z = match node.inputs.get(2) {
        Some(&v) => g.value(v).const_data()?.to_i64_vec().into_iter().map(|z| z as i32).collect(),
        None => vec![0; s.len()],
    };
    Some((s, z))
}

fn dq_axis(op: &Op) -> Option<usize> {
    match op {
        Op::DequantizeLinear { axis, .. } | Op::QuantizeLinear { axis, .. } => *axis,
        _ => None,
    }
}

fn fold_constant(g: &mut Graph, n: NodeId) -> Result<()> {
    let node = g.node(n).clone();
    if let Op::DequantizeLinear { block_size, .. } = node.op {
        if block_size != 0 {
            return Err(PassError::node("fold-qdq", g, n, "blocked quantization is not supported"));
        }
    }
    let (codes, shape, dtype, bounds) =
        const_codes(g, node.inputs[0]).expect("invariant: checked by the caller");
    let (scale, zp) = scale_zp(g, n).ok_or_else(|| {
        PassError::node("fold-qdq", g, n, "scale and zero point must be constants")
    })?;
    let (bits, signed) = match bounds {
        Some((lo, hi)) => bits_of_range(lo, hi),
        None => dtype_bits(dtype),
    };
    let per_axis = scale.len() > 1;
    let axis = if per_axis { dq_axis(&node.op).or(Some(0)) } else { None };
    let inner: usize = axis.map_or(1, |a| shape[a + 1..].iter().product());
    let c = axis.map_or(1, |a| shape[a]);
    if per_axis && scale.len() != c {
        return Err(PassError::node(
            "fold-qdq",
            g,
            n,
            format!("{} scales for {c} channels", scale.len()),
        ));
    }
    let vals: Vec<f32> = codes
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let ch = if per_axis { (i / inner.max(1)) % c } else { 0 };
            (q - zp[ch.min(zp.len() - 1)] as i64) as f32 * scale[ch]
        })
        .collect();
    let name = g.value(node.outputs[0]).name.clone();
    g.rename_value(node.outputs[0], &format!("{name}_dq"));
    let v = g.add_const(name, TensorData::from_f32(shape, &vals));
    let zp = if zp.len() == scale.len() { zp } else { vec![zp[0]; scale.len()] };
    g.value_mut(v).ty.quant = Some(QuantParams { bits, signed, scale, zero_point: zp, axis });
    g.replace_uses(node.outputs[0], v);
    g.remove_node(n);
    // The Clip on constant codes is dead now unless something else reads it.
    if let Some(p) = g.producer(node.inputs[0]) {
        if g.users(node.inputs[0]).is_empty() && !g.outputs().contains(&node.inputs[0]) {
            g.remove_node(p);
        }
    }
    Ok(())
}

/// Ops that only move codes, of one input and one output: onnxruntime's QOperator models run
/// them on codes between a QuantizeLinear and the DequantizeLinear of the next QLinear op.
fn moves_codes_alone(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    node.op.moves_values() && node.inputs.len() == 1 && node.outputs.len() == 1
}

/// `Q(x) → moves… → DQ` with the DQ's parameters (or `moves…` from a value already turned to
/// annotated floats): the moves run on the floats instead, annotated with those parameters,
/// and the DQ goes. `false` when the DQ's input is not of that form.
fn fold_moved_codes(g: &mut Graph, dq: NodeId) -> Result<bool> {
    let mut chain = Vec::new();
    let mut v = g.node(dq).inputs[0];
    while let Some(p) = g.producer(v) {
        if !moves_codes_alone(g, p) || g.ty(v).dtype == DType::F32 {
            break;
        }
        chain.push(p);
        v = g.node(p).inputs[0];
    }
    if chain.is_empty() {
        return Ok(false);
    }
    let (s2, z2) = scale_zp(g, dq).ok_or_else(|| {
        PassError::node("fold-qdq", g, dq, "scale and zero point must be constants")
    })?;
    // The float the moved codes stand for: the Q's input, or a value converted before.
    let (x, q, quant) = match (g.producer(v), &g.ty(v).quant) {
        (_, Some(qp)) if g.ty(v).dtype == DType::F32 => (v, None, qp.clone()),
        (Some(q), _) if matches!(g.node(q).op, Op::QuantizeLinear { .. }) => {
            let Some((s1, z1)) = scale_zp(g, q) else { return Ok(false) };
            if s1.len() != 1 {
                return Ok(false);
            }
            let (bits, signed) = dtype_bits(g.ty(v).dtype);
            let qp = QuantParams { bits, signed, scale: s1, zero_point: z1, axis: None };
            (g.node(q).inputs[0], Some(q), qp)
        }
        _ => return Ok(false),
    };
    if quant.scale != s2 || quant.zero_point != z2 {
        return Err(PassError::node(
            "fold-qdq",
            g,
            dq,
            "dequantizes codes moved from a QuantizeLinear with different parameters",
        ));
    }
    g.value_mut(x).ty.quant = Some(quant.clone());
    let mut prev = x;
    for &n in chain.iter().rev() {
        g.node_mut(n).inputs[0] = prev;
        let o = g.node(n).outputs[0];
        let ty = &mut g.value_mut(o).ty;
        ty.dtype = DType::F32;
        ty.quant = Some(quant.clone());
        prev = o;
    }
    let out = g.node(dq).outputs[0];
    g.replace_uses(out, prev);
    g.remove_node(dq);
    if let Some(q) = q {
        let o = g.node(q).outputs[0];
        if g.users(o).is_empty() && !g.outputs().contains(&o) {
            g.remove_node(q);
        }
    }
    Ok(true)
}

/// Q [→ Clip] → DQ on an activation (or Q → moves → DQ, [`fold_moved_codes`]); `false` when
/// the DQ's input is not of that form.
fn fold_activation(g: &mut Graph, dq: NodeId) -> Result<bool> {
    if fold_moved_codes(g, dq)? {
        return Ok(true);
    }
    let mut v = g.node(dq).inputs[0];
    let mut clip = None;
    let Some(mut p) = g.producer(v) else { return Ok(false) };
    if g.node(p).op == Op::Clip {
        clip = Some(p);
        v = g.node(p).inputs[0];
        let Some(q) = g.producer(v) else { return Ok(false) };
        p = q;
    }
    if !matches!(g.node(p).op, Op::QuantizeLinear { .. }) {
        return Ok(false);
    }
    let q = p;
    let (s1, z1) = scale_zp(g, q).ok_or_else(|| {
        PassError::node("fold-qdq", g, q, "scale and zero point must be constants")
    })?;
    let (s2, z2) = scale_zp(g, dq).ok_or_else(|| {
        PassError::node("fold-qdq", g, dq, "scale and zero point must be constants")
    })?;
    if s1 != s2 || z1 != z2 {
        return Err(PassError::node(
            "fold-qdq",
            g,
            dq,
            "quantizes and dequantizes with different parameters",
        ));
    }
    let x = g.node(q).inputs[0];
    // Per-channel parameters only for constants (weights quantized by a QONNX Quant node).
    let axis = if s1.len() == 1 { None } else { dq_axis(&g.node(q).op) };
    if s1.len() != 1 && (!g.value(x).is_const() || axis.is_none()) {
        return Err(PassError::node(
            "fold-qdq",
            g,
            q,
            "per-channel activation quantization is not supported",
        ));
    }
    let (bits, signed, bounds) = match clip {
        Some(c) => {
            let (lo, hi) = clip_bounds(g, c).ok_or_else(|| {
                PassError::node("fold-qdq", g, c, "Clip bounds on codes must be constants")
            })?;
            let (bits, signed) = bits_of_range(lo, hi);
            (bits, signed, (lo, hi))
        }
        None => {
            let (bits, signed) = dtype_bits(g.ty(v).dtype);
            let q = QuantParams { bits, signed, scale: vec![1.0], zero_point: vec![0], axis: None };
            (bits, signed, q.code_range())
        }
    };
    let out = g.node(dq).outputs[0];
    let quant = QuantParams { bits, signed, scale: s1, zero_point: z1, axis };
    if g.value(x).is_const() {
        // A constant (a QONNX weight or bias): its values become what the DequantizeLinear gave,
        // rounded and clipped to the codes, so the float graph after this pass computes what the
        // model does (calibration runs it: a bias beyond its codes' range otherwise skews every
        // range after it).
        let fq = fake_quantized(g, x, &quant, bounds);
        g.replace_uses(out, fq);
        g.remove_node(dq);
        for n in [clip, Some(q)].into_iter().flatten() {
            let o = g.node(n).outputs[0];
            if g.users(o).is_empty() && !g.outputs().contains(&o) {
                g.remove_node(n);
            }
        }
        return Ok(true);
    }
    g.value_mut(x).ty.quant = Some(quant);
    if g.outputs().contains(&out) && !g.outputs().contains(&x) && !g.value(x).is_const() {
        // A graph output keeps its name.
        let name = g.value(out).name.clone();
        g.rename_value(out, &format!("{name}_dq"));
        g.rename_value(x, &name);
    }
    g.replace_uses(out, x);
    g.remove_node(dq);
    for n in [clip, Some(q)].into_iter().flatten() {
        let o = g.node(n).outputs[0];
        if g.users(o).is_empty() && !g.outputs().contains(&o) {
            g.remove_node(n);
        }
    }
    Ok(true)
}

/// A new constant: the float constant `x` quantized as QuantizeLinear does (`round_half_even(x /
/// s) + z`, per channel along `q.axis`), clipped to `bounds`, and dequantized as
/// DequantizeLinear does (`(code − z)·s` in f32), annotated with `q`.
fn fake_quantized(g: &mut Graph, x: ValueId, q: &QuantParams, bounds: (i64, i64)) -> ValueId {
    let d = g.value(x).const_data().expect("invariant: called on a constant");
    let shape = d.shape().to_vec();
    let data = d.to_f32_vec();
    let (c, inner) = match q.axis {
        Some(a) => (shape[a], shape[a + 1..].iter().product::<usize>().max(1)),
        None => (1, data.len().max(1)),
    };
    let vals: Vec<f32> = data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = if c == 1 { 0 } else { (i / inner) % c };
            let (s, z) = (q.scale[ch], q.zero_point[ch]);
            let code = ((v / s).round_ties_even() as i64 + z as i64).clamp(bounds.0, bounds.1);
            (code as f32 - z as f32) * s
        })
        .collect();
    let name = format!("{}_fq", g.value(x).name);
    let v = g.add_const(name, TensorData::from_f32(shape, &vals));
    g.value_mut(v).ty.quant = Some(q.clone());
    v
}

#[cfg(test)]
mod tests {
    use super::bits_of_range;

    #[test]
    fn code_ranges_to_bits() {
        assert_eq!(bits_of_range(0, 15), (4, false));
        assert_eq!(bits_of_range(0, 255), (8, false));
        assert_eq!(bits_of_range(-8, 7), (4, true));
        assert_eq!(bits_of_range(-7, 7), (4, true));
        assert_eq!(bits_of_range(-128, 127), (8, true));
        assert_eq!(bits_of_range(0, 1), (2, false));
    }
}
