//! Helpers shared by passes: which ops are exact on codes, which input of a node holds weights
//! and along which axis its output channels lie, and quantization parameters from a range.

use cimc_ir::{DType, Graph, NodeId, Op, QuantParams, TensorData, ValueId};

/// Ops whose output codes are a rearrangement of their input codes (same quantization).
pub fn is_pass_through(op: &Op) -> bool {
    op.moves_values()
}

/// Ops that stay in float at the end of a program (after a Dequantize).
pub fn is_float_epilogue(op: &Op) -> bool {
    matches!(op, Op::Softmax { .. })
}

/// The weight input of a matrix op and the axis of the weight tensor along which its output
/// channels lie: Conv `[M, C/g, k..]` → axis 0; Gemm B `[K, N]` → 1, or `[N, K]` (transB) → 0;
/// MatMul B `[K, N]` → 1.
pub fn weight_input(op: &Op) -> Option<(usize, usize)> {
    match op {
        Op::Conv(_) => Some((1, 0)),
        Op::Gemm { trans_b, .. } => Some((1, if *trans_b { 0 } else { 1 })),
        Op::MatMul => Some((1, 1)),
        _ => None,
    }
}

/// The constant weight input of a matrix node, with its channel axis.
pub fn const_weight(g: &Graph, n: NodeId) -> Option<(ValueId, usize)> {
    let node = g.node(n);
    let (slot, axis) = weight_input(&node.op)?;
    let v = *node.inputs.get(slot)?;
    g.value(v).is_const().then_some((v, axis))
}

/// Per-tensor activation parameters for the real range `[lo, hi]` (widened to contain 0) at
/// `bits`: unsigned with zero point 0 when `lo >= 0`; otherwise signed symmetric (`signed`) or
/// unsigned with a zero point.
pub fn activation_params(lo: f32, hi: f32, bits: u8, signed: bool) -> QuantParams {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let levels = ((1u64 << bits) - 1) as f32;
    if lo >= 0.0 {
        let s = if hi > 0.0 { hi / levels } else { 1.0 };
        return QuantParams {
            bits,
            signed: false,
            scale: vec![s],
            zero_point: vec![0],
            axis: None,
        };
    }
    if signed {
        let half = ((1u64 << (bits - 1)) - 1) as f32;
        let m = (-lo).max(hi);
        let s = if m > 0.0 { m / half } else { 1.0 };
        return QuantParams { bits, signed: true, scale: vec![s], zero_point: vec![0], axis: None };
    }
    let s = (hi - lo) / levels;
    let s = if s > 0.0 { s } else { 1.0 };
    let z = (-lo / s).round_ties_even().clamp(0.0, levels) as i32;
    QuantParams { bits, signed: false, scale: vec![s], zero_point: vec![z], axis: None }
}

/// The dtype that stores codes of `bits` bits.
pub fn code_dtype(bits: u8, signed: bool) -> cimc_ir::DType {
    use cimc_ir::DType;
    match (bits <= 8, signed) {
        _ if bits > 16 => DType::I32,
        (true, true) => DType::I8,
        (true, false) => DType::U8,
        (false, true) => DType::I16,
        (false, false) => DType::U16,
    }
}

/// Values `data` (row-major, `shape`) grouped by index along `axis`: `out[c]` holds the values
/// of channel `c`.
pub fn by_channel(data: &[f32], shape: &[usize], axis: usize) -> Vec<Vec<f32>> {
    let c = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![Vec::with_capacity(data.len() / c.max(1)); c];
    for (r, run) in data.chunks(inner.max(1)).enumerate() {
        out[r % c.max(1)].extend_from_slice(run);
    }
    out
}

/// Whether only one node reads `v` (and it is no graph output).
pub fn single_use(g: &Graph, v: ValueId) -> bool {
    g.users(v).len() == 1 && !g.outputs().contains(&v)
}

/// A new constant: `w` with its slices along `axis` multiplied by `k`. An annotation becomes
/// per-channel along `axis` with scales times `|k|`.
pub fn scale_weights(g: &mut Graph, w: ValueId, axis: usize, k: &[f32]) -> Option<ValueId> {
    let val = g.value(w);
    if val.ty.dtype != DType::F32 {
        return None;
    }
    let data = val.const_data()?;
    if data.dtype() != DType::F32 {
        return None;
    }
    let shape = val.ty.shape.clone();
    let inner: usize = shape[axis + 1..].iter().product();
    let c = shape[axis];
    // Straight from the little-endian bytes to the new ones: one copy of the weights.
    let mut scaled = Vec::with_capacity(data.raw().len());
    for (r, run) in data.raw().chunks(4 * inner.max(1)).enumerate() {
        let kr = k[r % c.max(1)];
        for b in run.chunks_exact(4) {
            let v = f32::from_le_bytes(b.try_into().expect("invariant: chunks_exact(4)"));
            scaled.extend_from_slice(&(v * kr).to_le_bytes());
        }
    }
    let quant = match &val.ty.quant {
        None => None,
        Some(q) => {
            let per: Vec<f32> = match q.axis {
                Some(a) if a == axis => q.scale.clone(),
                None => vec![q.scale[0]; c],
                Some(_) => return None,
            };
            if q.zero_point.iter().any(|&z| z != 0) {
                return None;
            }
            Some(QuantParams {
                bits: q.bits,
                signed: q.signed,
                scale: per.iter().zip(k).map(|(s, k)| s * k.abs().max(f32::MIN_POSITIVE)).collect(),
                zero_point: vec![0; c],
                axis: Some(axis),
            })
        }
    };
    let name = format!("{}_scaled", val.name);
    let nw = g.add_const(
        name,
        TensorData::from_le_vec(DType::F32, shape, scaled)
            .expect("invariant: the scaled weights have the weights' shape"),
    );
    g.value_mut(nw).ty.quant = quant;
    Some(nw)
}

/// `bias·k + d` as a new `[C]` constant named after the weights.
pub fn new_bias(g: &mut Graph, w: ValueId, bias: &[f32], k: &[f32], d: &[f32]) -> ValueId {
    let vals: Vec<f32> = bias.iter().zip(k).zip(d).map(|((&b, &k), &d)| b * k + d).collect();
    let name = format!("{}_bias", g.value(w).name);
    g.add_const(name, TensorData::from_f32(vec![vals.len()], &vals))
}
