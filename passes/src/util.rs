//! Helpers shared by passes: which ops are exact on codes, which input of a node holds weights
//! and along which axis its output channels lie, and quantization parameters from a range.

use cimc_ir::{DType, Graph, NodeId, Op, QuantParams, TensorData, ValueId};

/// Ops whose output codes are a rearrangement of their input codes (same quantization).
pub fn is_pass_through(op: &Op) -> bool {
    op.moves_values()
}

/// Nodes that stay in float at the end of a program (after a Dequantize): a Softmax whose
/// result only leaves the graph and carries no quantization parameters of its own (an imported
/// QDQ model's Softmax has them, and runs on codes). Any other Softmax runs on codes
/// (`docs/hardware-model.md` §4, "Softmax on codes").
pub fn is_float_epilogue(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    matches!(node.op, Op::Softmax { .. })
        && node.outputs.iter().all(|&o| g.users(o).is_empty() && g.ty(o).quant.is_none())
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
            Some((q, per))
        }
    };
    // A channel whose factor takes its scale below the smallest normal f32 (a BatchNorm
    // channel of gamma 0, as pruned or dead channels have) is zero: its weights become exact
    // zeros, which any scale represents, and it keeps its old scale (a scale must stay a
    // positive normal number).
    let dead: Vec<bool> = match &quant {
        Some((_, per)) => per
            .iter()
            .zip(k)
            .map(|(s, k)| !(s * k.abs()).is_normal() || s * k.abs() < 0.0)
            .collect(),
        None => vec![false; c],
    };
    // Straight from the little-endian bytes to the new ones: one copy of the weights.
    let mut scaled = vec![0u8; data.raw().len()];
    let runs = scaled.chunks_mut(4 * inner.max(1)).zip(data.raw().chunks(4 * inner.max(1)));
    for (r, (out, run)) in runs.enumerate() {
        let ch = r % c.max(1);
        let kr = if dead[ch] { 0.0 } else { k[ch] };
        for (o, b) in out.chunks_exact_mut(4).zip(run.chunks_exact(4)) {
            let v = f32::from_le_bytes(b.try_into().expect("invariant: chunks_exact(4)"));
            o.copy_from_slice(&(v * kr).to_le_bytes());
        }
    }
    let quant = quant.map(|(q, per)| QuantParams {
        bits: q.bits,
        signed: q.signed,
        scale: per
            .iter()
            .zip(k)
            .zip(&dead)
            .map(|((s, k), &dead)| if dead { *s } else { s * k.abs() })
            .collect(),
        zero_point: vec![0; c],
        axis: Some(axis),
    });
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

/// The batch of a static graph: its first input's first dimension (1 without one).
pub fn graph_batch(g: &Graph) -> usize {
    g.inputs().first().and_then(|&v| g.ty(v).shape.first().copied()).unwrap_or(1).max(1)
}

/// Calibration samples cut into runs of a static graph: the first `samples` of the data, in
/// batches of the graph's own batch, the last one zero-padded (what `calibrate`,
/// `adc-calibrate`, `reference-stats`, `bn-calibrate` and `mixed-precision` run through).
///
/// How an array holds samples is decided by the rank of its graph input ([`as_samples`]): an
/// array of the input's rank is cut along its first axis in runs of the graph's batch (a
/// rank-0 input's array is one sample); an array with one more axis than the input is a stack
/// of samples, each of the input's shape.
pub struct CalibBatches<'a> {
    calib: Vec<std::borrow::Cow<'a, cimc_interp::Tensor>>,
    /// The shape of each graph input a run gets.
    shapes: Vec<Vec<usize>>,
    /// Samples used: all of the data's, or the first `calib_samples`.
    pub samples: usize,
    /// Samples per run ([`graph_batch`]).
    pub batch: usize,
}

impl<'a> CalibBatches<'a> {
    /// The first `limit` samples of `calib` (all without a limit) in batches of `g`'s; an
    /// error when that leaves none.
    pub fn new(
        g: &Graph,
        calib: &'a [cimc_interp::Tensor],
        limit: Option<usize>,
    ) -> crate::Result<CalibBatches<'a>> {
        let shapes: Vec<Vec<usize>> = g.inputs().iter().map(|&v| g.ty(v).shape.clone()).collect();
        let calib: Vec<_> = calib
            .iter()
            .zip(shapes.iter().chain(std::iter::repeat(&Vec::new())))
            .map(|(t, s)| as_samples(t, s))
            .collect();
        let all = calib.first().and_then(|t| t.shape().first().copied()).unwrap_or(0);
        let samples = limit.map_or(all, |k| k.min(all));
        if samples == 0 {
            return Err(crate::PassError::Missing("the calibration data holds no samples".into()));
        }
        Ok(CalibBatches { calib, shapes, samples, batch: graph_batch(g) })
    }

    /// `(start, len)` of every batch in order: `len` real samples from `start`.
    pub fn ranges(&self) -> impl Iterator<Item = (usize, usize)> {
        let (n, batch) = (self.samples, self.batch);
        (0..n).step_by(batch).map(move |start| (start, batch.min(n - start)))
    }

    /// The inputs of the batch of `len` real samples from `start`, zero-padded to the batch
    /// (a rank-0 input given its one sample as a scalar).
    pub fn inputs(&self, start: usize, len: usize) -> crate::Result<Vec<cimc_interp::Tensor>> {
        self.calib
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let part = calib_slice(t, start, len, self.batch)?;
                match self.shapes.get(k) {
                    Some(s) if s.is_empty() && part.shape() == [1] => reshaped(&part, s),
                    _ => Ok(part),
                }
            })
            .collect()
    }
}

/// `t` with its samples along its first axis, for a graph input of shape `input`: an array of
/// the input's rank as it is (its first axis holds the samples, in runs of the graph's batch),
/// a rank-0 array for a rank-0 input as one sample (`[1]`), and an array of one more axis (a
/// stack of samples of the input's shape, `[N] ++ input`) with its first two axes merged, so
/// that every run of `input[0]` rows is one sample.
pub fn as_samples<'a>(
    t: &'a cimc_interp::Tensor,
    input: &[usize],
) -> std::borrow::Cow<'a, cimc_interp::Tensor> {
    use std::borrow::Cow;
    let shape = t.shape();
    if input.is_empty() && shape.is_empty() {
        return reshaped(t, &[1]).map_or(Cow::Borrowed(t), Cow::Owned);
    }
    if shape.len() == input.len() + 1 && shape[1..] == *input && !input.is_empty() {
        let mut merged = vec![shape[0] * input[0]];
        merged.extend_from_slice(&input[1..]);
        return reshaped(t, &merged).map_or(Cow::Borrowed(t), Cow::Owned);
    }
    Cow::Borrowed(t)
}

/// The same elements in another shape of the same size.
fn reshaped(t: &cimc_interp::Tensor, shape: &[usize]) -> crate::Result<cimc_interp::Tensor> {
    let d = t.to_data().reshaped(shape.to_vec()).map_err(|e| {
        crate::PassError::Config(format!("calibration data {:?} as {shape:?}: {e}", t.shape()))
    })?;
    cimc_interp::Tensor::from_data(&d)
        .map_err(|e| crate::PassError::Config(format!("calibration data: {e}")))
}

/// Samples `start..start+len` of one calibration tensor (a scalar: one sample), zero-padded to
/// `padded` samples. Float data must be f32; integer data (the indices of an embedding, the
/// graph input of an integer type) is taken as it is.
pub fn calib_slice(
    t: &cimc_interp::Tensor,
    start: usize,
    len: usize,
    padded: usize,
) -> crate::Result<cimc_interp::Tensor> {
    if t.dtype() != DType::F32 && !t.dtype().is_int() {
        return Err(crate::PassError::Config(format!(
            "calibration data must be f32 or integer, got {}",
            t.dtype()
        )));
    }
    if t.shape().is_empty() {
        return Ok(cimc_interp::tensor::slice_batch(&reshaped(t, &[1])?, start, len, padded));
    }
    Ok(cimc_interp::tensor::slice_batch(t, start, len, padded))
}

/// The calibration data of the BN-calibration pair (`reference-stats`, `bn-calibrate`): `None`
/// when `--bn-calibrate` is off, an error when it is on without `--calib`.
pub fn bn_calibrate_data(
    cx: &crate::PassContext,
) -> crate::Result<Option<&Vec<cimc_interp::Tensor>>> {
    if !cx.config.bn_calibrate {
        return Ok(None);
    }
    cx.calib.as_ref().map(Some).ok_or_else(|| {
        crate::PassError::Missing("bn-calibrate needs calibration data (--calib)".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cimc_interp::Tensor;

    #[test]
    fn calibration_batches_cover_the_samples_in_the_graphs_batch() {
        let mut g = Graph::new("g");
        g.add_input("x", cimc_ir::TensorType::new(DType::F32, vec![2, 1]));
        let calib = [Tensor::from_f32(&[5, 1], vec![1.0, 2.0, 3.0, 4.0, 5.0]).unwrap()];
        let b = CalibBatches::new(&g, &calib, None).unwrap();
        assert_eq!(b.ranges().collect::<Vec<_>>(), [(0, 2), (2, 2), (4, 1)]);
        let last = b.inputs(4, 1).unwrap();
        assert_eq!(last[0], Tensor::from_f32(&[2, 1], vec![5.0, 0.0]).unwrap());
        let first3 = CalibBatches::new(&g, &calib, Some(3)).unwrap();
        assert_eq!(first3.ranges().collect::<Vec<_>>(), [(0, 2), (2, 1)]);
        let none = CalibBatches::new(&g, &calib, Some(0)).err().expect("no samples");
        assert!(none.to_string().contains("no samples"), "{none}");
        let bools =
            [Tensor::from_data(&TensorData::from_bool(vec![2, 1], &[true, false])).unwrap()];
        let err = CalibBatches::new(&g, &bools, None).unwrap().inputs(0, 2).expect_err("bool");
        assert!(err.to_string().contains("must be f32 or integer"), "{err}");
    }

    #[test]
    fn integer_calibration_data_is_taken_as_it_is() {
        // The token ids of an embedding: integer data of the input's type, unchanged.
        let mut g = Graph::new("g");
        g.add_input("ids", cimc_ir::TensorType::new(DType::I64, vec![1, 3]));
        let calib = [Tensor::from_i64(&[2, 3], vec![1, 2, 3, 4, 5, 6]).unwrap()];
        let b = CalibBatches::new(&g, &calib, None).unwrap();
        assert_eq!(b.inputs(1, 1).unwrap()[0], Tensor::from_i64(&[1, 3], vec![4, 5, 6]).unwrap());
    }

    #[test]
    fn a_rank_0_input_calibrates_on_one_sample_or_a_stack_of_them() {
        let mut g = Graph::new("g");
        g.add_input("a", cimc_ir::TensorType::new(DType::F32, vec![]));
        let scalar = Tensor::from_data(&TensorData::from_f32(vec![], &[2.5])).unwrap();
        let one = [scalar.clone()];
        let b = CalibBatches::new(&g, &one, None).unwrap();
        assert_eq!((b.samples, b.batch), (1, 1));
        assert_eq!(b.inputs(0, 1).unwrap(), [scalar]);
        let stack = [Tensor::from_f32(&[3], vec![1.0, 2.0, 3.0]).unwrap()];
        let b = CalibBatches::new(&g, &stack, None).unwrap();
        assert_eq!(b.samples, 3);
        let third = Tensor::from_data(&TensorData::from_f32(vec![], &[3.0])).unwrap();
        assert_eq!(b.inputs(2, 1).unwrap(), [third]);
    }

    #[test]
    fn an_array_of_one_more_axis_is_a_stack_of_samples() {
        let mut g = Graph::new("g");
        g.add_input("x", cimc_ir::TensorType::new(DType::F32, vec![2, 1]));
        let stack = [Tensor::from_f32(&[2, 2, 1], vec![1.0, 2.0, 3.0, 4.0]).unwrap()];
        let b = CalibBatches::new(&g, &stack, None).unwrap();
        assert_eq!(b.ranges().collect::<Vec<_>>(), [(0, 2), (2, 2)]);
        assert_eq!(b.inputs(2, 2).unwrap()[0], Tensor::from_f32(&[2, 1], vec![3.0, 4.0]).unwrap());
    }
}
