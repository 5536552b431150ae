//! `lower`: the quantized IR (after the `quantize` pass) to the interpreter program.
//!
//! Requires: every value between integer ops has an integer dtype and `QuantParams`; weights
//! and biases are integer constants with theirs; float values only at the graph's inputs and
//! outputs and around float epilogues.
//!
//! Does: one [`Step`] per node, with the numbers of `docs/hardware-model.md` §4 computed here and
//! nowhere else: per-channel multipliers `M[n] = s_x · s_w[n] / s_y` as fixed-point `(m, sh)`,
//! clamp ranges (the output code range narrowed by a fused ReLU or Clip), average-pool multipliers
//! per window count, the Add recipe's rescaling multipliers.

use super::{
    BufQuant, BufferDecl, CodeType, Elem, FloatRequant, IntTensor, Program, Requant, ResizeAxis,
    Step, Window, DIV_SHIFT, EXP_BITS, GATHER_ZERO_POINT, MAX_TABLE_ENTRIES, RESIZE_FRAC_BITS,
};
use crate::arith::{quantize_value, FixedMultiplier};
use crate::error::{BackendError, Result};
use cimc_ir::{DType, Graph, Node, NodeId, Op, Placement, QuantParams, ValueId};
use std::collections::HashMap;

/// Headroom bits of the Add recipe: inputs are shifted left by this much before rescaling, so
/// their rounding errors are 2^-20 of an input LSB.
pub const ADD_HEADROOM: u32 = 20;

struct Lowering<'g> {
    g: &'g Graph,
    buffers: Vec<BufferDecl>,
    buf_of: HashMap<ValueId, usize>,
    steps: Vec<Step>,
    origins: Vec<String>,
}

fn err(node: &Node, msg: impl Into<String>) -> BackendError {
    BackendError::Lower { node: node.name.clone(), op: node.op.name().into(), msg: msg.into() }
}

fn mult(node: &Node, real: f64) -> Result<FixedMultiplier> {
    FixedMultiplier::from_real(real).map_err(|e| err(node, e.to_string()))
}

/// The integer parameters of a [`Step::IntLayerNorm`] over groups of `n` codes, from the
/// layer's float scale and bias (one each per element of a group, already broadcast), its
/// epsilon, the input's `(s_x, z_x)` and the output's `(s_y, z_y)` and clamp range:
/// `(epsilon_term, gamma, beta, requant)`.
///
/// `gamma = round(γ/s_γ)` with `s_γ = max|γ| / (2^(LN_GAMMA_BITS−1) − 1)` (so the largest scale
/// keeps 15 bits), `beta = round(β·2^LN_FRAC_BITS / s_γ)`, `M = s_γ / (s_y·2^LN_FRAC_BITS)` and
/// `epsilon_term = round(n²·ε / s_x²·2^LN_EPS_BITS)`; an epsilon term above 2^62 (`ε/s_x²`
/// above `2^46/n²` codes², far beyond any variance of 16-bit codes) is refused.
pub fn int_layer_norm_params(
    n: usize,
    (s_x, _z_x): (f32, i32),
    (s_y, z_y, lo, hi): (f32, i32, i32, i32),
    epsilon: f32,
    (gamma, beta): (&[f32], &[f32]),
) -> Result<(i64, Vec<i32>, Vec<i64>, Requant)> {
    use super::{LN_EPS_BITS, LN_FRAC_BITS, LN_GAMMA_BITS};
    let bad = |m: String| BackendError::Numeric(m);
    if gamma.len() != n || beta.len() != n || n == 0 {
        return Err(bad(format!(
            "{} scales, {} biases for groups of {n}",
            gamma.len(),
            beta.len()
        )));
    }
    if !(s_x.is_finite() && s_x > 0.0 && s_y.is_finite() && s_y > 0.0) {
        return Err(bad(format!("scales s_x = {s_x}, s_y = {s_y} must be finite and positive")));
    }
    let frac = (1u64 << LN_FRAC_BITS) as f64;
    let g_top = ((1i64 << (LN_GAMMA_BITS - 1)) - 1) as f64;
    let g_max = gamma.iter().fold(0f64, |m, &g| m.max((g as f64).abs()));
    let b_max = beta.iter().fold(0f64, |m, &b| m.max((b as f64).abs()));
    if !(g_max.is_finite() && b_max.is_finite()) {
        return Err(bad("a layer normalization with a non-finite scale or bias".into()));
    }
    // The scale's step; a bias far above every scale widens it so `beta` stays below 2^61.
    let s_g = (g_max / g_top).max(b_max * frac / (1u64 << 61) as f64).max(f64::MIN_POSITIVE);
    let gamma = gamma.iter().map(|&g| (g as f64 / s_g).round() as i32).collect();
    let beta = beta.iter().map(|&b| (b as f64 * frac / s_g).round() as i64).collect();
    let nn = n as f64;
    let eps_scale = (1u64 << LN_EPS_BITS) as f64;
    let eps = (nn * nn * epsilon.max(0.0) as f64 / (s_x as f64 * s_x as f64) * eps_scale).round();
    if eps.is_nan() || eps > (1u64 << 62) as f64 {
        return Err(bad(format!(
            "epsilon {epsilon} is too large for inputs of scale {s_x} in groups of {n} \
             (its term n²·ε/s_x² exceeds 2^46 codes²)"
        )));
    }
    let epsilon_term = eps as i64;
    let m = FixedMultiplier::from_real(s_g / (s_y as f64 * frac))?;
    Ok((epsilon_term, gamma, beta, Requant { mult: vec![m], zero_point: z_y, lo, hi }))
}

/// Lowers a quantized graph to a program.
pub fn lower(g: &Graph) -> Result<Program> {
    let mut l = Lowering {
        g,
        buffers: Vec::new(),
        buf_of: HashMap::new(),
        steps: Vec::new(),
        origins: Vec::new(),
    };
    let mut inputs = Vec::new();
    for &v in g.inputs() {
        inputs.push(l.buffer(v).map_err(|m| BackendError::Lower {
            node: g.value(v).name.clone(),
            op: "input".into(),
            msg: m,
        })?);
    }
    for (id, node) in g.nodes() {
        l.node(id, node)?;
    }
    let mut outputs = Vec::new();
    for &v in g.outputs() {
        let b = *l.buf_of.get(&v).ok_or_else(|| BackendError::Lower {
            node: g.value(v).name.clone(),
            op: "output".into(),
            msg: "a graph output that no step produces (a constant output?)".into(),
        })?;
        outputs.push(b);
    }
    let p = Program {
        name: g.name.clone(),
        buffers: l.buffers,
        inputs,
        outputs,
        steps: l.steps,
        origins: l.origins,
        target: g.target.as_ref().map(|t| crate::target::TargetRecord::Stamp(t.line())),
    };
    p.validate()?;
    Ok(p)
}

impl Lowering<'_> {
    fn buffer(&mut self, v: ValueId) -> std::result::Result<usize, String> {
        if let Some(&b) = self.buf_of.get(&v) {
            return Ok(b);
        }
        let val = self.g.value(v);
        let ty = &val.ty;
        let (elem, quant) = match (&ty.quant, ty.dtype) {
            (None, DType::F32) => (Elem::F32, None),
            // An integer value that holds no codes (the token ids of an embedding): its
            // integers, unchanged.
            (None, d) if d.is_int() => {
                let (bits, signed) = match d {
                    DType::U8 => (8, false),
                    DType::I8 => (8, true),
                    DType::U16 => (16, false),
                    DType::I16 => (16, true),
                    _ => (32, true),
                };
                (Elem::Code(CodeType { bits, signed }), None)
            }
            (Some(q), d) if d.is_int() => (
                Elem::Code(CodeType { bits: q.bits, signed: q.signed }),
                Some(BufQuant {
                    scale: q.scale.clone(),
                    zero_point: q.zero_point.clone(),
                    axis: q.axis,
                }),
            ),
            (q, d) => {
                return Err(format!(
                    "value '{}' is {d}{} : not f32 and not integer codes",
                    val.name,
                    if q.is_some() { " with quantization" } else { "" }
                ))
            }
        };
        let b = self.buffers.len();
        self.buffers.push(BufferDecl {
            name: val.name.clone(),
            shape: ty.shape.clone(),
            elem,
            quant,
        });
        self.buf_of.insert(v, b);
        Ok(b)
    }

    fn quant(&self, node: &Node, v: ValueId) -> Result<QuantParams> {
        self.g.ty(v).quant.clone().ok_or_else(|| {
            err(node, format!("'{}' has no quantization parameters", self.g.value(v).name))
        })
    }

    fn per_tensor(&self, node: &Node, v: ValueId) -> Result<(f32, i32, QuantParams)> {
        let q = self.quant(node, v)?;
        if q.axis.is_some() {
            return Err(err(
                node,
                format!(
                    "'{}' is quantized per channel; a per-tensor activation is expected",
                    self.g.value(v).name
                ),
            ));
        }
        Ok((q.scale[0], q.zero_point[0], q))
    }

    fn const_f32(&self, node: &Node, slot: usize) -> Result<Option<Vec<f32>>> {
        match node.inputs.get(slot) {
            None => Ok(None),
            Some(&v) => {
                let d = self
                    .g
                    .value(v)
                    .const_data()
                    .ok_or_else(|| err(node, format!("input {slot} must be a constant")))?;
                Ok(Some(d.to_f32_vec()))
            }
        }
    }

    fn int_weights(&self, node: &Node, v: ValueId) -> Result<(IntTensor, QuantParams)> {
        let val = self.g.value(v);
        let d = val.const_data().ok_or_else(|| err(node, "weights must be constant"))?;
        let q = self.quant(node, v)?;
        if !d.dtype().is_int() {
            return Err(err(node, "weights are not integer codes (run quantize)"));
        }
        if q.zero_point.iter().any(|&z| z != 0) {
            return Err(err(
                node,
                "weights with a non-zero zero point are not supported (symmetric weights only)",
            ));
        }
        // Codes of 8 bits (every quantized weight of a shipped width) straight from their
        // bytes: no i64 copy of a large model's weights.
        let data = match d.dtype() {
            DType::I8 => d.raw().iter().map(|&b| b as i8 as i32).collect(),
            _ => d.to_i64_vec().into_iter().map(|v| v as i32).collect(),
        };
        Ok((IntTensor { shape: val.ty.shape.clone(), bits: q.bits, data }, q))
    }

    fn bias(&self, node: &Node, slot: usize, n: usize) -> Result<Vec<i64>> {
        match node.inputs.get(slot) {
            None => Ok(vec![0; n]),
            Some(&v) => {
                let d = self
                    .g
                    .value(v)
                    .const_data()
                    .ok_or_else(|| err(node, "bias must be constant"))?;
                if !d.dtype().is_int() {
                    return Err(err(node, "bias is not integer codes (run quantize)"));
                }
                let b = d.to_i64_vec();
                if b.len() != n {
                    return Err(err(node, format!("{} biases for {n} outputs", b.len())));
                }
                Ok(b)
            }
        }
    }

    /// The requantization to `y`'s codes of an accumulator whose real scale is `acc_scale[n]`,
    /// with the clamp narrowed by `clamp` (real bounds).
    fn requant(
        &self,
        node: &Node,
        y: ValueId,
        acc_scale: &[f64],
        clamp: Option<(f32, f32)>,
    ) -> Result<Requant> {
        let q = self.quant(node, y)?;
        if q.axis.is_some() {
            // A 32-bit accumulator read out per channel: M[n] = acc_scale[n] / s_y[n].
            if q.bits != 32
                || q.scale.len() != acc_scale.len()
                || q.zero_point.iter().any(|&z| z != 0)
            {
                return Err(err(
                    node,
                    "a per-channel output must be a 32-bit accumulator read-out",
                ));
            }
            let mult = acc_scale
                .iter()
                .zip(&q.scale)
                .map(|(&a, &s)| mult(node, a / s as f64))
                .collect::<Result<Vec<_>>>()?;
            // A fused clamp's bound at 0 is code 0 in every channel (zero points 0): a ReLU
            // before the read-out holds; other bounds differ per channel and are not applied.
            let (lo, hi) = match clamp {
                Some((a, b)) => {
                    (if a == 0.0 { 0 } else { i32::MIN }, if b == 0.0 { 0 } else { i32::MAX })
                }
                None => (i32::MIN, i32::MAX),
            };
            return Ok(Requant { mult, zero_point: 0, lo, hi });
        }
        let (s_y, z_y) = (q.scale[0], q.zero_point[0]);
        let (lo, hi) = q.code_range();
        let (mut lo, mut hi) = (lo.max(i32::MIN as i64) as i32, hi.min(i32::MAX as i64) as i32);
        if let Some((a, b)) = clamp {
            if a.is_finite() {
                lo = lo.max(quantize_value(a, s_y, z_y, lo, hi));
            }
            if b.is_finite() {
                hi = hi.min(quantize_value(b, s_y, z_y, lo, hi));
            }
        }
        let mult =
            acc_scale.iter().map(|&s| mult(node, s / s_y as f64)).collect::<Result<Vec<_>>>()?;
        Ok(Requant { mult, zero_point: z_y, lo, hi })
    }

    fn push(&mut self, node: &Node, s: Step) {
        self.steps.push(s);
        self.origins.push(node.name.clone());
    }

    fn bufs(&mut self, node: &Node) -> Result<(usize, usize)> {
        let x = self.buffer(node.inputs[0]).map_err(|m| err(node, m))?;
        let y = self.buffer(node.outputs[0]).map_err(|m| err(node, m))?;
        Ok((x, y))
    }

    /// The step of one node: one function per op family; an op with no program step is named
    /// in the last arm, so a new op fails to compile until it says which it is.
    fn node(&mut self, _id: NodeId, node: &Node) -> Result<()> {
        let g = self.g;
        // A Split computes every output (one gather each).
        let extra = if matches!(node.op, Op::Split { .. }) { &[][..] } else { &node.outputs[1..] };
        for &o in extra {
            if !g.users(o).is_empty() || g.outputs().contains(&o) {
                return Err(err(
                    node,
                    format!(
                        "its extra output '{}' is used; the program computes only the first",
                        g.value(o).name
                    ),
                ));
            }
        }
        match &node.op {
            Op::QuantizeLinear { .. } => self.quantize(node),
            Op::DequantizeLinear { .. } => self.dequantize(node),
            Op::Conv(a) => self.conv(node, a),
            Op::Gemm { trans_a, trans_b, alpha, clamp, .. } => {
                if *trans_a || *alpha != 1.0 {
                    return Err(err(node, "transA and alpha != 1 are not supported in programs (canonicalize folds alpha)"));
                }
                self.matrix(node, *trans_b, *clamp)
            }
            Op::MatMul if !g.value(node.inputs[1]).is_const() => self.matmul_codes(node),
            Op::MatMul => self.matrix(node, false, None),
            Op::BatchNorm { epsilon } => self.batch_norm(node, *epsilon),
            Op::Relu => self.rescale(node, |_| Ok((0.0, f32::INFINITY))),
            Op::Clip => self.rescale(node, |l| {
                let lo = l.const_scalar(node, 1)?.unwrap_or(f32::NEG_INFINITY);
                let hi = l.const_scalar(node, 2)?.unwrap_or(f32::INFINITY);
                Ok((lo, hi))
            }),
            Op::MaxPool(a) => self.max_pool(node, a),
            Op::AveragePool(a) => self.avg_pool(node, a),
            Op::GlobalAveragePool => self.global_avg_pool(node),
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow => self.binary(node),
            Op::Concat { axis } if node.inputs.iter().any(|&v| g.value(v).is_const()) => {
                self.concat_constants(node, *axis)
            }
            Op::Concat { axis } => self.concat(node, *axis),
            Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Identity
            | Op::Dropout => self.reshape(node),
            Op::Transpose { perm } => self.transpose(node, perm),
            Op::Pad { mode, pads } => self.pad(node, *mode, pads),
            Op::Softmax { axis, coerce_2d } => self.softmax(node, *axis, *coerce_2d),
            Op::LeakyRelu { .. }
            | Op::Sigmoid
            | Op::HardSigmoid { .. }
            | Op::HardSwish
            | Op::Tanh
            | Op::Unary(_) => self.lut(node, 0),
            Op::Gather { axis } if g.value(node.inputs[0]).is_const() => {
                self.gather_rows(node, *axis)
            }
            // An activation at constant indices (a class token): a move of codes.
            Op::Gather { .. } if g.value(node.inputs[1]).is_const() => self.gather(node),
            // A constant condition between an activation and a constant (a causal mask): tables
            // of the activation's codes; a chosen −inf is the lowest output code.
            Op::Where if g.value(node.inputs[0]).is_const() => {
                match (g.value(node.inputs[1]).is_const(), g.value(node.inputs[2]).is_const()) {
                    (true, false) => self.lut(node, 2),
                    (false, true) => self.lut(node, 1),
                    _ => Err(err(node, "a Where of two activations has no program step")),
                }
            }
            Op::Cast { to } if to.is_int() && g.ty(node.inputs[0]).dtype.is_int() => {
                self.int_cast(node)
            }
            Op::Slice { .. } | Op::Split { .. } | Op::ZeroInsert { .. } => self.gather(node),
            Op::Resize(a) => match a.on_codes() {
                cimc_ir::OnCodes::Moves => self.gather(node),
                cimc_ir::OnCodes::Integer => self.resize(node, a),
                _ => Err(err(node, "this resize mode has no program step (nearest or linear)")),
            },
            Op::Gather { .. }
            | Op::Cast { .. }
            | Op::Variadic(_)
            | Op::Reduce(_)
            | Op::ArgMax { .. }
            | Op::ArgMin { .. }
            | Op::Compare(_)
            | Op::Logic(_)
            | Op::Not
            | Op::Where => Err(err(node, format!("'{}' has no program step", node.op.name()))),
            Op::Trunc { .. } | Op::MultiThreshold { .. } => {
                Err(err(node, format!("'{}' has no program step", node.op.name())))
            }
            Op::TopK { .. } => Err(err(node, format!("'{}' has no program step", node.op.name()))),
            Op::Expand { .. }
            | Op::Tile { .. }
            | Op::DepthToSpace { .. }
            | Op::SpaceToDepth { .. } => self.gather(node),
            Op::LogSoftmax { .. }
            | Op::ConvTranspose { .. }
            | Op::Lstm(_)
            | Op::Gru(_)
            | Op::Rnn(_) => Err(err(node, format!("'{}' has no program step", node.op.name()))),
            // A function of the activation and a constant slope: tables ([`Lowering::lut`]).
            Op::PRelu => self.binary(node),
            Op::Lrn { size, alpha, beta, bias } => self.lrn(node, *size, (*alpha, *beta, *bias)),
            Op::InstanceNorm { epsilon } => self.instance_norm(node, *epsilon),
            Op::LayerNorm { axis, epsilon } => self.layer_norm(node, *axis, *epsilon),
        }
    }

    /// The first value of constant input `slot`, if the node has that input.
    fn const_scalar(&self, node: &Node, slot: usize) -> Result<Option<f32>> {
        Ok(self.const_f32(node, slot)?.and_then(|v| v.first().copied()))
    }

    fn quantize(&mut self, node: &Node) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let (s, z, q) = self.per_tensor(node, node.outputs[0])?;
        let (lo, hi) = q.code_range();
        let step = Step::Quantize {
            input: x,
            output: yb,
            scale: s,
            zero_point: z,
            lo: lo as i32,
            hi: hi as i32,
        };
        self.push(node, step);
        Ok(())
    }

    fn dequantize(&mut self, node: &Node) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        self.quant(node, node.inputs[0])?;
        self.push(node, Step::Dequantize { input: x, output: yb });
        Ok(())
    }

    fn conv(&mut self, node: &Node, a: &cimc_ir::ConvAttrs) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let (s_x, z_x, _) = self.per_tensor(node, node.inputs[0])?;
        let (w, wq) = self.int_weights(node, node.inputs[1])?;
        let m = w.shape[0];
        let bias = self.bias(node, 2, m)?;
        let acc: Vec<f64> = (0..m)
            .map(|c| s_x as f64 * wq.scale[if wq.scale.len() == 1 { 0 } else { c }] as f64)
            .collect();
        let requant = self.requant(node, node.outputs[0], &acc, a.clamp)?;
        let window = window_of(&a.kernel, &a.strides, &a.dilations, &a.pads);
        let step = Step::Conv {
            input: x,
            output: yb,
            input_zero_point: z_x,
            weights: w,
            bias,
            window,
            group: a.group,
            requant,
            crossbar: crossbar_of(node),
        };
        self.push(node, step);
        Ok(())
    }

    /// An unfolded BatchNormalization as an integer affine map: `a = γ / √(σ² + ε)` as 16-bit
    /// integer scales over one shared real scale, `b = β − μ·a` as biases at the accumulator's
    /// scale.
    fn batch_norm(&mut self, node: &Node, epsilon: f32) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let (s_x, z_x, _) = self.per_tensor(node, node.inputs[0])?;
        let get = |k| {
            self.const_f32(node, k).and_then(|v| v.ok_or_else(|| err(node, "missing BN parameter")))
        };
        let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
        let a: Vec<f64> = gamma
            .iter()
            .zip(&var)
            .map(|(&g, &v)| g as f64 / (v as f64 + epsilon as f64).sqrt())
            .collect();
        let b: Vec<f64> = beta
            .iter()
            .zip(&mean)
            .zip(&a)
            .map(|((&be, &mu), &a)| be as f64 - mu as f64 * a)
            .collect();
        let amax = a.iter().fold(0f64, |m, v| m.max(v.abs()));
        let s_a = if amax > 0.0 { amax / 32767.0 } else { 1.0 };
        let scale: Vec<i32> = a.iter().map(|v| (v / s_a).round_ties_even() as i32).collect();
        let bias: Vec<i64> =
            b.iter().map(|v| (v / (s_x as f64 * s_a)).round_ties_even() as i64).collect();
        let requant = self.requant(node, node.outputs[0], &[s_x as f64 * s_a], None)?;
        let step =
            Step::Affine { input: x, output: yb, input_zero_point: z_x, scale, bias, requant };
        self.push(node, step);
        Ok(())
    }

    /// A standalone ReLU or Clip: a requantization whose clamp is the activation's real bounds
    /// (`clamp` reads them once the input is known to be a per-tensor code buffer).
    fn rescale(
        &mut self,
        node: &Node,
        clamp: impl FnOnce(&Self) -> Result<(f32, f32)>,
    ) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let (s_x, z_x, _) = self.per_tensor(node, node.inputs[0])?;
        let clamp = clamp(self)?;
        let requant = self.requant(node, node.outputs[0], &[s_x as f64], Some(clamp))?;
        self.push(node, Step::Rescale { input: x, output: yb, input_zero_point: z_x, requant });
        Ok(())
    }

    fn max_pool(&mut self, node: &Node, a: &cimc_ir::PoolAttrs) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        self.same_quant(node)?;
        let window = window_of(&a.kernel, &a.strides, &a.dilations, &a.pads);
        self.push(node, Step::MaxPool { input: x, output: yb, window, ceil_mode: a.ceil_mode });
        Ok(())
    }

    /// Average pooling: one multiplier `s_x / (s_y · c)` per window count `c`.
    fn avg_pool(&mut self, node: &Node, a: &cimc_ir::PoolAttrs) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let (s_x, z_x, _) = self.per_tensor(node, node.inputs[0])?;
        let (s_y, z_y, q) = self.per_tensor(node, node.outputs[0])?;
        let (lo, hi) = q.code_range();
        let k: usize = a.kernel.iter().product();
        let mult_by_count = (1..=k)
            .map(|c| mult(node, s_x as f64 / (s_y as f64 * c as f64)))
            .collect::<Result<Vec<_>>>()?;
        let window = window_of(&a.kernel, &a.strides, &a.dilations, &a.pads);
        let step = Step::AvgPool {
            input: x,
            output: yb,
            window,
            ceil_mode: a.ceil_mode,
            count_include_pad: a.count_include_pad,
            input_zero_point: z_x,
            mult_by_count,
            zero_point: z_y,
            lo: lo as i32,
            hi: hi as i32,
        };
        self.push(node, step);
        Ok(())
    }

    fn global_avg_pool(&mut self, node: &Node) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let (s_x, z_x, _) = self.per_tensor(node, node.inputs[0])?;
        let hw: usize = self.g.ty(node.inputs[0]).shape.iter().skip(2).product();
        let requant =
            self.requant(node, node.outputs[0], &[s_x as f64 / hw.max(1) as f64], None)?;
        let step = Step::GlobalAvgPool { input: x, output: yb, input_zero_point: z_x, requant };
        self.push(node, step);
        Ok(())
    }

    /// The Add recipe: both inputs rescaled to the larger input scale after [`ADD_HEADROOM`]
    /// bits of headroom, summed, then requantized.
    fn add(&mut self, node: &Node) -> Result<()> {
        let a = self.buffer(node.inputs[0]).map_err(|m| err(node, m))?;
        let b = self.buffer(node.inputs[1]).map_err(|m| err(node, m))?;
        let (s_a, z_a, _) = self.per_tensor(node, node.inputs[0])?;
        let (s_b, z_b, _) = self.per_tensor(node, node.inputs[1])?;
        self.add_codes(node, (a, s_a, z_a), (b, s_b, z_b))
    }

    /// The Add recipe on buffers `a` and `b` of the given scales and zero points.
    fn add_codes(
        &mut self,
        node: &Node,
        (a, s_a, z_a): (usize, f32, i32),
        (b, s_b, z_b): (usize, f32, i32),
    ) -> Result<()> {
        let y = node.outputs[0];
        let yb = self.buffer(y).map_err(|m| err(node, m))?;
        let s_c = s_a.max(s_b) as f64;
        let a_mult = mult(node, s_a as f64 / s_c)?;
        let b_mult = mult(node, s_b as f64 / s_c)?;
        let requant = self.requant(node, y, &[s_c / (1u64 << ADD_HEADROOM) as f64], None)?;
        let step = Step::Add {
            a,
            b,
            output: yb,
            a_zero_point: z_a,
            b_zero_point: z_b,
            headroom: ADD_HEADROOM,
            a_mult,
            b_mult,
            requant,
        };
        self.push(node, step);
        Ok(())
    }

    /// The table of a function of one code tensor, input `slot` (the other inputs, if any,
    /// constants): the float interpreter evaluates the node's op at the real value of every code
    /// of the input's type, `s_x·(q − z_x)` in f32 as a `Dequantize` step computes it, and each
    /// result is rounded once to the output's code (`quantize_value`). Any op the interpreter
    /// evaluates gets its table this way, a new one without new code.
    fn lut(&mut self, node: &Node, slot: usize) -> Result<()> {
        let xv = node.inputs[slot];
        let x = self.buffer(xv).map_err(|m| err(node, m))?;
        let yb = self.buffer(node.outputs[0]).map_err(|m| err(node, m))?;
        let (s_x, z_x, qx) = self.per_tensor(node, xv)?;
        let (s_y, z_y, qy) = self.per_tensor(node, node.outputs[0])?;
        if qx.bits > 16 {
            return Err(err(
                node,
                format!("a lookup table for {}-bit input codes (at most 16 bits)", qx.bits),
            ));
        }
        let (lo, hi) = qx.code_range();
        let reals: Vec<f32> =
            (lo..=hi).map(|q| (q as i32).wrapping_sub(z_x) as f32 * s_x).collect();
        let constants = self.constants_shape(node, slot)?;
        if constants.iter().product::<usize>() != 1 {
            return self.lut_per_element(node, slot, &reals, lo as i32, constants);
        }
        let ys = self.eval_elementwise(node, slot, reals)?;
        let (ylo, yhi) = qy.code_range();
        let table =
            ys.iter().map(|&v| quantize_value(v, s_y, z_y, ylo as i32, yhi as i32)).collect();
        self.push(node, Step::Lut { input: x, output: yb, input_min: lo as i32, table });
        Ok(())
    }

    /// The shape the node's inputs other than `slot` broadcast to together (numpy rules): one
    /// table per element of it.
    fn constants_shape(&self, node: &Node, slot: usize) -> Result<Vec<usize>> {
        let mut shape = Vec::new();
        for (k, &v) in node.inputs.iter().enumerate().filter(|&(k, _)| k != slot) {
            let s = &self.g.ty(v).shape;
            shape = cimc_ir::infer::broadcast(&shape, s).ok_or_else(|| {
                err(node, format!("constant input {k} of shape {s:?} does not broadcast"))
            })?;
        }
        Ok(shape)
    }

    /// [`Lowering::lut`] with constants of several values, as a [`Step::LutPerElement`]: one
    /// table per element of the constants broadcast together (`constants`), each evaluated by the
    /// float interpreter at every code of the input (`reals`, as `lut` computes them) and that
    /// element, exact to the op's definition, and rounded once to the output's code. The
    /// interpreter runs the op once on all of them: the input as `[tables, codes]` (every row
    /// the codes), each constant broadcast to `constants` by its own Expand and flattened to
    /// `[tables, 1]`. Identical tables (a constant of one repeated value) make one [`Step::Lut`].
    fn lut_per_element(
        &mut self,
        node: &Node,
        slot: usize,
        reals: &[f32],
        input_min: i32,
        constants: Vec<usize>,
    ) -> Result<()> {
        use cimc_interp::Tensor;
        let x = self.bufs_at(node, slot)?;
        let yb = self.buffer(node.outputs[0]).map_err(|m| err(node, m))?;
        let (s_y, z_y, qy) = self.per_tensor(node, node.outputs[0])?;
        let n_tables: usize = constants.iter().product();
        let entries = reals.len();
        let products = matches!(node.op, Op::Add | Op::Sub | Op::Mul);
        if n_tables.saturating_mul(entries) > MAX_TABLE_ENTRIES && products {
            return self.with_constant_codes(node, slot);
        }
        if n_tables.saturating_mul(entries) > MAX_TABLE_ENTRIES {
            return Err(err(
                node,
                format!(
                    "{n_tables} tables of {entries} codes (constants of shape {constants:?}):                      above the {} MiB a step's tables may hold",
                    (MAX_TABLE_ENTRIES * 4) >> 20
                ),
            ));
        }
        let grid: Vec<f32> = (0..n_tables).flat_map(|_| reals.iter().copied()).collect();
        let eval = |op: &Op, t: &Tensor| {
            cimc_interp::eval_node(op, &[t], 1)
                .map_err(|e| err(node, format!("broadcasting a constant for its tables: {e}")))?
                .pop()
                .ok_or_else(|| err(node, "a constant for its tables did not evaluate"))
        };
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for (k, &v) in node.inputs.iter().enumerate() {
            if k == slot {
                let d = cimc_ir::TensorData::from_f32(vec![n_tables, entries], &grid);
                let t = Tensor::from_data(&d)
                    .map_err(|e| BackendError::Internal(format!("a table's input: {e}")))?;
                inputs.push(t);
                continue;
            }
            let d = self.g.value(v).const_data().ok_or_else(|| {
                err(node, format!("input {k} must be a constant for a lookup table"))
            })?;
            let t =
                Tensor::from_data(d).map_err(|e| err(node, format!("constant input {k}: {e}")))?;
            let t = eval(&Op::Expand { shape: constants.clone() }, &t)?;
            inputs.push(eval(&Op::Reshape { shape: vec![n_tables, 1] }, &t)?);
        }
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let out = cimc_interp::eval_node(&node.op, &refs, 1)
            .map_err(|e| err(node, format!("evaluating its tables: {e}")))?;
        let ys = out
            .first()
            .and_then(|t| t.as_f32())
            .filter(|a| a.len() == n_tables * entries)
            .ok_or_else(|| err(node, "its tables do not evaluate to one f32 value per entry"))?;
        let (ylo, yhi) = qy.code_range();
        let tables: Vec<i32> =
            ys.iter().map(|&v| quantize_value(v, s_y, z_y, ylo as i32, yhi as i32)).collect();
        // One table for every element serves as a plain `Lut`, an element-wise step: only where
        // the activation itself does not broadcast to the output.
        let same_shape = self.g.ty(node.outputs[0]).shape == self.g.ty(node.inputs[slot]).shape;
        if same_shape && tables.chunks(entries.max(1)).all(|t| t == &tables[..entries]) {
            let table = tables[..entries].to_vec();
            self.push(node, Step::Lut { input: x, output: yb, input_min, table });
            return Ok(());
        }
        let rank = self.g.ty(node.outputs[0]).shape.len();
        let mut table_shape = vec![1; rank.saturating_sub(constants.len())];
        table_shape.extend(&constants);
        self.push(
            node,
            Step::LutPerElement { input: x, output: yb, input_min, table_shape, tables },
        );
        Ok(())
    }

    /// Add, Sub or Mul of the activation at input `slot` and a constant too varied for one
    /// table per element (ViT-B/16's position embedding: 197·768 tables of 256 codes): the
    /// constant's codes (per tensor, the output's width) become a buffer — a [`Step::Gather`] of
    /// none of the activation's codes into a 1-bit buffer of the constant's shape, then a
    /// [`Step::LutPerElement`] of two entries per table giving each element its code — and the
    /// op runs as on two code tensors (its Add recipe or product).
    fn with_constant_codes(&mut self, node: &Node, slot: usize) -> Result<()> {
        let x = self.bufs_at(node, slot)?;
        let (s_x, z_x, _) = self.per_tensor(node, node.inputs[slot])?;
        let (_, _, qy) = self.per_tensor(node, node.outputs[0])?;
        let cv = node.inputs[1 - slot];
        let shape = self.g.ty(cv).shape.clone();
        let values = self
            .g
            .value(cv)
            .const_data()
            .ok_or_else(|| err(node, "invariant: a constant operand"))?
            .to_f32_vec();
        let n = values.len();
        if n >= GATHER_ZERO_POINT as usize {
            return Err(err(node, format!("a constant of {n} elements: too many to gather")));
        }
        // Unsigned codes over [min(c, 0), max(c, 0)], as an activation's range.
        let lo = values.iter().copied().fold(0f32, f32::min);
        let hi = values.iter().copied().fold(0f32, f32::max);
        let levels = ((1u64 << qy.bits.min(16)) - 1) as f32;
        let s_c = if hi > lo { (hi - lo) / levels } else { 1.0 };
        let z_c = (-lo / s_c).round_ties_even().clamp(0.0, levels) as i32;
        let codes: Vec<i32> =
            values.iter().map(|&c| quantize_value(c, s_c, z_c, 0, levels as i32)).collect();
        let table_shape = invariant_axes_collapsed(&shape, &codes);
        let n_tables: usize = table_shape.iter().product();
        if n_tables.saturating_mul(2) > MAX_TABLE_ENTRIES {
            return Err(err(node, format!("a constant of {n_tables} distinct elements")));
        }
        let tables: Vec<i32> = (0..n_tables)
            .flat_map(|t| [codes[broadcast_source(&table_shape, &shape, t)]; 2])
            .collect();
        let name = format!("{}_constant", self.g.value(node.outputs[0]).name);
        let blank = self.buffers.len();
        let code_buf = |scale: f32, zero_point: i32| BufQuant {
            scale: vec![scale],
            zero_point: vec![zero_point],
            axis: None,
        };
        self.buffers.push(BufferDecl {
            name: format!("{name}_blank"),
            shape: shape.clone(),
            elem: Elem::Code(CodeType { bits: 1, signed: false }),
            quant: Some(code_buf(1.0, 0)),
        });
        let c = self.buffers.len();
        self.buffers.push(BufferDecl {
            name,
            shape,
            elem: Elem::Code(CodeType { bits: qy.bits.min(16), signed: false }),
            quant: Some(code_buf(s_c, z_c)),
        });
        self.push(
            node,
            Step::Gather { input: x, output: blank, index: vec![GATHER_ZERO_POINT; n] },
        );
        let step =
            Step::LutPerElement { input: blank, output: c, input_min: 0, table_shape, tables };
        self.push(node, step);
        let ops =
            if slot == 0 { [(x, s_x, z_x), (c, s_c, z_c)] } else { [(c, s_c, z_c), (x, s_x, z_x)] };
        match node.op {
            Op::Mul => {
                let [(a, s_a, z_a), (b, s_b, z_b)] = ops;
                let requant =
                    self.requant(node, node.outputs[0], &[s_a as f64 * s_b as f64], None)?;
                let output = self.buffer(node.outputs[0]).map_err(|m| err(node, m))?;
                let step =
                    Step::Mul { a, b, output, a_zero_point: z_a, b_zero_point: z_b, requant };
                self.push(node, step);
                Ok(())
            }
            Op::Sub => {
                self.add_codes(node, ops[0], ops[1])?;
                self.add_to_sub()
            }
            _ => self.add_codes(node, ops[0], ops[1]),
        }
    }

    /// The buffer of input `slot`.
    fn bufs_at(&mut self, node: &Node, slot: usize) -> Result<usize> {
        self.buffer(node.inputs[slot]).map_err(|m| err(node, m))
    }

    /// The node's op evaluated by the float interpreter with `values` (a 1-D tensor) as input
    /// `slot` and the node's other inputs, constants of one element, beside it.
    fn eval_elementwise(&self, node: &Node, slot: usize, values: Vec<f32>) -> Result<Vec<f32>> {
        use cimc_interp::Tensor;
        let n = values.len();
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for (k, &v) in node.inputs.iter().enumerate() {
            if k == slot {
                let d = cimc_ir::TensorData::from_f32(vec![n], &values);
                let t = Tensor::from_data(&d)
                    .map_err(|e| BackendError::Internal(format!("a table's input: {e}")))?;
                inputs.push(t);
            } else {
                let d = self.g.value(v).const_data().ok_or_else(|| {
                    err(node, format!("input {k} must be a constant for a lookup table"))
                })?;
                let t = Tensor::from_data(d)
                    .map_err(|e| err(node, format!("constant input {k}: {e}")))?;
                inputs.push(t);
            }
        }
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let out = cimc_interp::eval_node(&node.op, &refs, 1)
            .map_err(|e| err(node, format!("evaluating its table: {e}")))?;
        let ys = out
            .first()
            .and_then(|t| t.as_f32())
            .map(|a| a.iter().copied().collect::<Vec<f32>>())
            .ok_or_else(|| err(node, "its table does not evaluate to f32 values"))?;
        if ys.len() != n {
            return Err(err(node, "a constant operand of several values: no single table"));
        }
        Ok(ys)
    }

    /// Add, Sub, Mul, Div and Pow: with one operand a constant, a function of the other one's
    /// codes ([`Lowering::lut`], one table per element of the constant); Add, Sub, Mul and Div of
    /// two code tensors, their integer steps.
    fn binary(&mut self, node: &Node) -> Result<()> {
        let is_const = |k: usize| self.g.value(node.inputs[k]).is_const();
        match (is_const(0), is_const(1)) {
            (false, true) => return self.lut(node, 0),
            (true, false) => return self.lut(node, 1),
            (false, false) => {}
            (true, true) => {
                return Err(err(node, "two constant operands: no activation to run on"));
            }
        }
        match node.op {
            Op::Add => self.add(node),
            Op::Sub => self.sub(node),
            Op::Mul => self.mul(node),
            Op::Div => self.div(node),
            _ => Err(err(
                node,
                format!("'{}' of two activations has no program step", node.op.name()),
            )),
        }
    }

    /// The Add recipe with `b` negated about its zero point.
    fn sub(&mut self, node: &Node) -> Result<()> {
        self.add(node)?;
        self.add_to_sub()
    }

    /// The last step pushed, an Add, made the Sub of the same operands.
    fn add_to_sub(&mut self) -> Result<()> {
        let Some(Step::Add {
            a,
            b,
            output,
            a_zero_point,
            b_zero_point,
            headroom,
            a_mult,
            b_mult,
            requant,
        }) = self.steps.pop()
        else {
            return Err(BackendError::Internal("the Add recipe made no add step".into()));
        };
        let step = Step::Sub {
            a,
            b,
            output,
            a_zero_point,
            b_zero_point,
            headroom,
            a_mult,
            b_mult,
            requant,
        };
        self.steps.push(step);
        Ok(())
    }

    /// The buffers and per-tensor parameters of a two-operand step.
    #[allow(clippy::type_complexity)]
    fn operands(&mut self, node: &Node) -> Result<([usize; 3], [(f32, i32, QuantParams); 2])> {
        let a = self.buffer(node.inputs[0]).map_err(|m| err(node, m))?;
        let b = self.buffer(node.inputs[1]).map_err(|m| err(node, m))?;
        let y = self.buffer(node.outputs[0]).map_err(|m| err(node, m))?;
        let qa = self.per_tensor(node, node.inputs[0])?;
        let qb = self.per_tensor(node, node.inputs[1])?;
        Ok(([a, b, y], [qa, qb]))
    }

    /// `(q_a − z_a)·(q_b − z_b)` requantized with `M = s_a·s_b / s_y`.
    fn mul(&mut self, node: &Node) -> Result<()> {
        let ([a, b, output], [(s_a, z_a, _), (s_b, z_b, _)]) = self.operands(node)?;
        let requant = self.requant(node, node.outputs[0], &[s_a as f64 * s_b as f64], None)?;
        let step = Step::Mul { a, b, output, a_zero_point: z_a, b_zero_point: z_b, requant };
        self.push(node, step);
        Ok(())
    }

    /// `(q_a − z_a)·round(2^DIV_SHIFT / (q_b − z_b))` requantized with
    /// `M = s_a / (s_b·s_y·2^DIV_SHIFT)`.
    fn div(&mut self, node: &Node) -> Result<()> {
        let ([a, b, output], [(s_a, z_a, _), (s_b, z_b, qb)]) = self.operands(node)?;
        if qb.bits > 16 {
            return Err(err(node, format!("a divisor of {}-bit codes (at most 16 bits)", qb.bits)));
        }
        let (lo, hi) = qb.code_range();
        let one = (1i64 << DIV_SHIFT) as f64;
        let reciprocal = (lo..=hi)
            .map(|q| {
                let d = q - z_b as i64;
                if d == 0 {
                    0
                } else {
                    (one / d as f64).round() as i64
                }
            })
            .collect();
        let acc_scale = s_a as f64 / (s_b as f64 * one);
        let requant = self.requant(node, node.outputs[0], &[acc_scale], None)?;
        let step = Step::Div {
            a,
            b,
            output,
            a_zero_point: z_a,
            b_zero_point: z_b,
            b_min: lo as i32,
            reciprocal,
            requant,
        };
        self.push(node, step);
        Ok(())
    }

    /// Concatenation: inputs at the output's scale are copied, the others requantized.
    fn concat(&mut self, node: &Node, axis: usize) -> Result<()> {
        let y = node.outputs[0];
        let yb = self.buffer(y).map_err(|m| err(node, m))?;
        let (s_y, z_y, _) = self.per_tensor(node, y)?;
        let mut inputs = Vec::new();
        let mut rescale = Vec::new();
        for &v in &node.inputs {
            inputs.push(self.buffer(v).map_err(|m| err(node, m))?);
            let (s, z, _) = self.per_tensor(node, v)?;
            rescale.push(if s == s_y && z == z_y {
                None
            } else {
                Some((z, self.requant(node, y, &[s as f64], None)?))
            });
        }
        self.push(node, Step::Concat { inputs, output: yb, axis, rescale });
        Ok(())
    }

    /// Concat of one activation and constants (a class token before the patches): each
    /// constant becomes a buffer of its codes — a [`Step::Gather`] of none of the activation's
    /// codes (every index the zero point) into the constant's shape, then a
    /// [`Step::LutPerElement`] whose tables ignore their input and give each element the
    /// constant's code, one table per element along the axes where the constant changes (a class
    /// token expanded to a batch needs one per channel: 768 tables for ViT-B/16, not one per
    /// output element) — and a [`Step::Concat`] joins them with the activation, requantized.
    fn concat_constants(&mut self, node: &Node, axis: usize) -> Result<()> {
        let active: Vec<usize> =
            (0..node.inputs.len()).filter(|&k| !self.g.value(node.inputs[k]).is_const()).collect();
        let [slot] = active[..] else {
            return Err(err(
                node,
                "a Concat of constants and several activations has no program step",
            ));
        };
        let y = node.outputs[0];
        let yb = self.buffer(y).map_err(|m| err(node, m))?;
        let x = self.bufs_at(node, slot)?;
        let (s_x, z_x, qx) = self.per_tensor(node, node.inputs[slot])?;
        let (s_y, z_y, qy) = self.per_tensor(node, y)?;
        if qx.bits > 16 {
            return Err(err(
                node,
                format!("a lookup table for {}-bit input codes (at most 16 bits)", qx.bits),
            ));
        }
        let (lo, hi) = qx.code_range();
        let entries = (hi - lo + 1) as usize;
        let (ylo, yhi) = qy.code_range();
        let (ylo, yhi) = (ylo as i32, yhi as i32);
        let decl = |name: String, shape: Vec<usize>, q: &QuantParams| BufferDecl {
            name,
            shape,
            elem: Elem::Code(CodeType { bits: q.bits, signed: q.signed }),
            quant: Some(BufQuant {
                scale: q.scale.clone(),
                zero_point: q.zero_point.clone(),
                axis: None,
            }),
        };
        let mut inputs = Vec::with_capacity(node.inputs.len());
        let mut rescale = Vec::with_capacity(node.inputs.len());
        for (k, &v) in node.inputs.iter().enumerate() {
            if k == slot {
                inputs.push(x);
                rescale.push(if s_x == s_y && z_x == z_y {
                    None
                } else {
                    Some((z_x, self.requant(node, y, &[s_x as f64], None)?))
                });
                continue;
            }
            let shape = self.g.ty(v).shape.clone();
            let n: usize = shape.iter().product();
            if n >= GATHER_ZERO_POINT as usize {
                return Err(err(node, format!("a constant of {n} elements: too many to gather")));
            }
            let values = self
                .g
                .value(v)
                .const_data()
                .ok_or_else(|| err(node, "invariant: a constant"))?
                .to_f32_vec();
            let codes: Vec<i32> =
                values.iter().map(|&c| quantize_value(c, s_y, z_y, ylo, yhi)).collect();
            let table_shape = invariant_axes_collapsed(&shape, &codes);
            let n_tables: usize = table_shape.iter().product();
            if n_tables.saturating_mul(entries) > MAX_TABLE_ENTRIES {
                return Err(err(
                    node,
                    format!(
                        "{n_tables} tables of {entries} codes for constant input {k}: above the \
                         {} MiB a step's tables may hold",
                        (MAX_TABLE_ENTRIES * 4) >> 20
                    ),
                ));
            }
            let mut tables = Vec::with_capacity(n_tables * entries);
            for t in 0..n_tables {
                let code = codes[broadcast_source(&table_shape, &shape, t)];
                tables.extend(std::iter::repeat_n(code, entries));
            }
            let name = format!("{}_input{k}", self.g.value(y).name);
            let blank = self.buffers.len();
            self.buffers.push(decl(format!("{name}_blank"), shape.clone(), &qx));
            let codes_buf = self.buffers.len();
            self.buffers.push(decl(name, shape, &qy));
            let index = vec![GATHER_ZERO_POINT; n];
            self.push(node, Step::Gather { input: x, output: blank, index });
            self.push(
                node,
                Step::LutPerElement {
                    input: blank,
                    output: codes_buf,
                    input_min: lo as i32,
                    table_shape,
                    tables,
                },
            );
            inputs.push(codes_buf);
            rescale.push(None);
        }
        self.push(node, Step::Concat { inputs, output: yb, axis, rescale });
        Ok(())
    }

    /// Reshape, Flatten, Squeeze, Unsqueeze, Identity and Dropout: the same codes, another shape.
    fn reshape(&mut self, node: &Node) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        self.same_quant(node)?;
        self.push(node, Step::Reshape { input: x, output: yb });
        Ok(())
    }

    fn transpose(&mut self, node: &Node, perm: &[usize]) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        self.same_quant(node)?;
        self.push(node, Step::Transpose { input: x, output: yb, perm: perm.to_vec() });
        Ok(())
    }

    /// A data-movement op with no step of its own, as a [`Step::Gather`]: the float interpreter
    /// runs the op on the input's element numbers, so each output element holds the number of
    /// the input element it copies (the op's one definition decides, nothing is re-derived).
    /// An op with several outputs (Split) gives one gather per output.
    fn gather(&mut self, node: &Node) -> Result<()> {
        use cimc_interp::Tensor;
        let x = self.buffer(node.inputs[0]).map_err(|m| err(node, m))?;
        let shape = self.g.ty(node.inputs[0]).shape.clone();
        let n: usize = shape.iter().product();
        if n >= GATHER_ZERO_POINT as usize {
            return Err(err(node, format!("{n} input elements: a gather indexes fewer than 2^32")));
        }
        // Numbered from 1, so a 0 in the result is a zero the op wrote (ZeroInsert): the code of
        // 0.0, the output's zero point.
        let numbers: Vec<i64> = (1..=n as i64).collect();
        let d = cimc_ir::TensorData::from_i64(shape, &numbers);
        let t = Tensor::from_data(&d)
            .map_err(|e| BackendError::Internal(format!("a gather's element numbers: {e}")))?;
        let mut inputs = vec![t];
        // Gather's indices are an input: a constant (`node` checks), evaluated as it is.
        if matches!(node.op, Op::Gather { .. }) {
            let d = self
                .g
                .value(node.inputs[1])
                .const_data()
                .ok_or_else(|| err(node, "its indices must be a constant to move codes"))?;
            inputs.push(Tensor::from_data(d).map_err(|e| err(node, format!("its indices: {e}")))?);
        }
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let out = cimc_interp::eval_node(&node.op, &refs, node.outputs.len())
            .map_err(|e| err(node, format!("evaluating its gather indices: {e}")))?;
        if out.len() != node.outputs.len() {
            return Err(err(node, "its gather indices did not evaluate"));
        }
        for (&o, numbers) in node.outputs.iter().zip(out) {
            if self.g.ty(node.inputs[0]).quant != self.g.ty(o).quant {
                return Err(err(
                    node,
                    "input and output quantization differ; this op only moves codes",
                ));
            }
            let yb = self.buffer(o).map_err(|m| err(node, m))?;
            let index = numbers
                .to_f64_vec()
                .into_iter()
                .map(|v| if v < 1.0 { GATHER_ZERO_POINT } else { v as u32 - 1 })
                .collect();
            self.push(node, Step::Gather { input: x, output: yb, index });
        }
        Ok(())
    }

    /// Linear Resize on codes: the float interpreter's taps and weights
    /// ([`cimc_interp::resize_axes`]), each axis' pair rounded to fixed point summing to
    /// `2^RESIZE_FRAC_BITS` (a constant input stays exact), one requantization at the end.
    fn resize(&mut self, node: &Node, a: &cimc_ir::ResizeAttrs) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let (s_x, z_x, qx) = self.per_tensor(node, node.inputs[0])?;
        let (s_y, z_y, qy) = self.per_tensor(node, node.outputs[0])?;
        if qx.bits > 16 {
            return Err(err(node, format!("a resize of {}-bit codes (at most 16)", qx.bits)));
        }
        let shape = &self.g.ty(node.inputs[0]).shape;
        let taps =
            cimc_interp::resize_axes(a, shape).map_err(|e| err(node, format!("its taps: {e}")))?;
        if taps.len() > 3 {
            return Err(err(node, format!("a resize along {} axes (at most 3)", taps.len())));
        }
        let one = 1i64 << RESIZE_FRAC_BITS;
        let mut axes = Vec::new();
        for (axis, per_out) in &taps {
            let (mut index, mut weight) = (Vec::new(), Vec::new());
            for t in per_out {
                let pair = match t.as_deref() {
                    Some(&[(i0, w0), (i1, _)]) => {
                        let w0 = ((w0 * one as f64).round() as i64).clamp(0, one);
                        [(i0, w0), (i1, one - w0)]
                    }
                    _ => return Err(err(node, "a resize tap set other than two weighted inputs")),
                };
                index.push([pair[0].0 as u32, pair[1].0 as u32]);
                weight.push([pair[0].1 as i32, pair[1].1 as i32]);
            }
            axes.push(ResizeAxis { axis: *axis, index, weight });
        }
        let (lo, hi) = qy.code_range();
        let frac = 2f64.powi((RESIZE_FRAC_BITS as usize * axes.len()) as i32);
        let requant = Requant {
            mult: vec![mult(node, s_x as f64 / (s_y as f64 * frac))?],
            zero_point: z_y,
            lo: lo as i32,
            hi: hi as i32,
        };
        self.push(
            node,
            Step::Resize { input: x, output: yb, input_zero_point: z_x, axes, requant },
        );
        Ok(())
    }

    /// MatMul of two activations ([`Step::MatMulCodes`]): `Σ (q_a − z_a)(q_b − z_b)`
    /// requantized once with `M = s_a·s_b / s_y`, as `Lowering::mul`.
    fn matmul_codes(&mut self, node: &Node) -> Result<()> {
        let ([a, b, output], [(s_a, z_a, _), (s_b, z_b, _)]) = self.operands(node)?;
        let requant = self.requant(node, node.outputs[0], &[s_a as f64 * s_b as f64], None)?;
        let step =
            Step::MatMulCodes { a, b, output, a_zero_point: z_a, b_zero_point: z_b, requant };
        self.push(node, step);
        Ok(())
    }

    /// The f64 route of a step from the input's per-tensor codes to the output's.
    fn float_requant(&self, node: &Node) -> Result<FloatRequant> {
        let (s_x, z_x, _) = self.per_tensor(node, node.inputs[0])?;
        let (s_y, z_y, qy) = self.per_tensor(node, node.outputs[0])?;
        let (lo, hi) = qy.code_range();
        Ok(FloatRequant {
            input_scale: s_x,
            input_zero_point: z_x,
            output_scale: s_y,
            output_zero_point: z_y,
            lo: lo as i32,
            hi: hi as i32,
        })
    }

    /// LRN on codes ([`Step::Lrn`]): the window's sum of squares exact, the rest in f64.
    fn lrn(
        &mut self,
        node: &Node,
        size: usize,
        (alpha, beta, bias): (f32, f32, f32),
    ) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let shape = &self.g.ty(node.inputs[0]).shape;
        if shape.len() < 3 || size == 0 {
            return Err(err(
                node,
                format!("an LRN of size {size} over {shape:?} (rank ≥ 3, size ≥ 1)"),
            ));
        }
        let rounding = self.float_requant(node)?;
        self.push(node, Step::Lrn { input: x, output: yb, size, alpha, beta, bias, rounding });
        Ok(())
    }

    /// InstanceNormalization on codes: a [`Step::Normalize`] over the axes from 2 on, its scale
    /// and bias per channel (`[1, C, 1..]`).
    fn instance_norm(&mut self, node: &Node, epsilon: f32) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let shape = self.g.ty(node.inputs[0]).shape.clone();
        let get =
            |k| self.const_f32(node, k)?.ok_or_else(|| err(node, format!("input {k} is missing")));
        let (scale, bias) = (get(1)?, get(2)?);
        let c = shape.get(1).copied().unwrap_or(0);
        if shape.len() < 2 || scale.len() != c || bias.len() != c {
            return Err(err(
                node,
                format!(
                    "{} scales and {} biases for an input {shape:?} (rank ≥ 2, one per channel)",
                    scale.len(),
                    bias.len()
                ),
            ));
        }
        let mut affine_shape = vec![1; shape.len()];
        affine_shape[1] = c;
        let rounding = self.float_requant(node)?;
        let step = Step::Normalize {
            input: x,
            output: yb,
            axis: 2,
            epsilon,
            affine_shape,
            scale,
            bias,
            rounding,
        };
        self.push(node, step);
        Ok(())
    }

    /// LayerNormalization on codes: a [`Step::IntLayerNorm`] over the axes from `axis` on, its
    /// scale and bias (zeros when absent) expanded to those axes and quantized
    /// ([`int_layer_norm_params`]).
    fn layer_norm(&mut self, node: &Node, axis: usize, epsilon: f32) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let shape = self.g.ty(node.inputs[0]).shape.clone();
        let normalized = shape.get(axis..).unwrap_or_default().to_vec();
        let mut expanded = Vec::with_capacity(2);
        for slot in [1, 2] {
            let values = match self.const_f32(node, slot)? {
                Some(v) => v,
                None if slot == 2 => vec![0.0],
                None => return Err(err(node, "input 1 (scale) is missing")),
            };
            let from = &self.g.ty(node.inputs.get(slot).copied().unwrap_or(node.inputs[1])).shape;
            let from = if values.len() == 1 { &[][..] } else { &from[..] };
            let v = broadcast_values(&values, from, &normalized).ok_or_else(|| {
                err(node, format!("input {slot} {from:?} does not broadcast to {normalized:?}"))
            })?;
            expanded.push(v);
        }
        let bias = expanded.pop().unwrap_or_default();
        let scale = expanded.pop().unwrap_or_default();
        // Integers only (a chip has no float unit): `Step::IntLayerNorm`.
        let (s_x, z_x, qx) = self.per_tensor(node, node.inputs[0])?;
        if qx.bits > 16 {
            return Err(err(
                node,
                format!("layer normalization of {}-bit codes (at most 16)", qx.bits),
            ));
        }
        let (s_y, z_y, qy) = self.per_tensor(node, node.outputs[0])?;
        let (lo, hi) = qy.code_range();
        let n = normalized.iter().product();
        let output = (s_y, z_y, lo as i32, hi as i32);
        let (epsilon_term, gamma, beta, requant) =
            int_layer_norm_params(n, (s_x, z_x), output, epsilon, (&scale, &bias))
                .map_err(|e| err(node, e.to_string()))?;
        let step = Step::IntLayerNorm {
            input: x,
            output: yb,
            axis,
            input_zero_point: z_x,
            epsilon_term,
            gamma,
            beta,
            requant,
        };
        self.push(node, step);
        Ok(())
    }

    /// Gather of a constant table by integer indices along axis 0 (an embedding): the table's
    /// values quantized once to the output's codes ([`Step::GatherRows`]).
    fn gather_rows(&mut self, node: &Node, axis: usize) -> Result<()> {
        if axis != 0 {
            return Err(err(
                node,
                format!("a gather of a constant along axis {axis} (axis 0 runs)"),
            ));
        }
        let idx = node.inputs[1];
        if !self.g.ty(idx).dtype.is_int() || self.g.ty(idx).quant.is_some() {
            return Err(err(node, "the indices of a gather of a constant must be plain integers"));
        }
        let indices = self.buffer(idx).map_err(|m| err(node, m))?;
        let output = self.buffer(node.outputs[0]).map_err(|m| err(node, m))?;
        let (s_y, z_y, qy) = self.per_tensor(node, node.outputs[0])?;
        let values = self.const_f32(node, 0)?.unwrap_or_default();
        let rows = self.g.ty(node.inputs[0]).shape.first().copied().unwrap_or(0);
        let (lo, hi) = qy.code_range();
        let table =
            values.iter().map(|&v| quantize_value(v, s_y, z_y, lo as i32, hi as i32)).collect();
        self.push(node, Step::GatherRows { indices, output, rows, table });
        Ok(())
    }

    /// A Cast of plain integers to another integer type: the same values (a copy; the
    /// program's integer buffers hold every value of the types that reach here, and a value the
    /// output type cannot hold is refused when the program's input is read).
    fn int_cast(&mut self, node: &Node) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        if self.g.ty(node.inputs[0]).quant.is_some() || self.g.ty(node.outputs[0]).quant.is_some() {
            return Err(err(node, "a cast of quantized codes has no program step"));
        }
        let code = |b: usize| match self.buffers[b].elem {
            Elem::Code(c) => c.range(),
            Elem::F32 => (0, -1),
        };
        let ((xl, xh), (yl, yh)) = (code(x), code(yb));
        if xl < yl || xh > yh {
            return Err(err(node, "a narrowing cast of integers has no program step"));
        }
        self.push(node, Step::Reshape { input: x, output: yb });
        Ok(())
    }

    /// Constant padding: the pad value quantized to the output's code.
    fn pad(&mut self, node: &Node, mode: cimc_ir::PadMode, pads: &[i64]) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        self.same_quant(node)?;
        if mode != cimc_ir::PadMode::Constant || pads.iter().any(|&p| p < 0) {
            return Err(err(node, "only constant padding with non-negative pads runs in programs"));
        }
        let (s, z, q) = self.per_tensor(node, node.outputs[0])?;
        let (lo, hi) = q.code_range();
        let value = self.const_scalar(node, 1)?.unwrap_or(0.0);
        let code = quantize_value(value, s, z, lo as i32, hi as i32);
        let pads = pads.iter().map(|&p| p as usize).collect();
        self.push(node, Step::Pad { input: x, output: yb, pads, code });
        Ok(())
    }

    /// Softmax: in f32 on dequantized values (an epilogue), or on codes ([`Step::IntSoftmax`]).
    /// A legacy (opset < 13) softmax flattens the axes from `axis` on into one; it is the
    /// softmax over `axis` when the axes after it have size 1 (SqueezeNet's `[N, C, 1, 1]`).
    fn softmax(&mut self, node: &Node, axis: usize, coerce_2d: bool) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let shape = &self.g.ty(node.outputs[0]).shape;
        if coerce_2d && shape.iter().skip(axis + 1).any(|&d| d != 1) {
            return Err(err(
                node,
                format!(
                    "legacy (opset < 13) softmax over the axes {axis}.. of {shape:?}, several \
                     of them longer than 1, is not supported in programs"
                ),
            ));
        }
        if !self.g.ty(node.inputs[0]).dtype.is_int() {
            self.push(node, Step::Softmax { input: x, output: yb, axis });
            return Ok(());
        }
        let (s_x, _, qx) = self.per_tensor(node, node.inputs[0])?;
        if qx.bits > 16 {
            return Err(err(node, format!("softmax on {}-bit codes (at most 16 bits)", qx.bits)));
        }
        let (lo, hi) = qx.code_range();
        let one = (1i64 << EXP_BITS) as f64;
        // Scores masked by a Where with −inf hold the lowest code of a type one bit wider than
        // the scores' own (`calibrate`): 2^(bits−1) codes or more below any score of the
        // calibrated range, where the table gives them no weight at all.
        let masked =
            self.g.producer(node.inputs[0]).is_some_and(|p| masks_with_minus_inf(self.g, p))
                && qx.signed;
        let absent = if masked { 1i64 << (qx.bits - 1) } else { i64::MAX };
        let exp_table = (0..=hi - lo)
            .map(|d| {
                if d >= absent {
                    0
                } else {
                    (one * (-(s_x as f64) * d as f64).exp()).round() as i64
                }
            })
            .collect();
        let requant = self.requant(node, node.outputs[0], &[1.0 / (1u64 << 32) as f64], None)?;
        self.push(node, Step::IntSoftmax { input: x, output: yb, axis, exp_table, requant });
        Ok(())
    }

    fn matrix(&mut self, node: &Node, trans_b: bool, clamp: Option<(f32, f32)>) -> Result<()> {
        let (x, yb) = self.bufs(node)?;
        let (s_x, z_x, _) = self.per_tensor(node, node.inputs[0])?;
        let (mut w, wq) = self.int_weights(node, node.inputs[1])?;
        if w.shape.len() != 2 {
            return Err(err(node, format!("weights of shape {:?}: 2-D expected", w.shape)));
        }
        if trans_b {
            let (n, k) = (w.shape[0], w.shape[1]);
            let mut t = vec![0; n * k];
            for i in 0..n {
                for j in 0..k {
                    t[j * n + i] = w.data[i * k + j];
                }
            }
            w = IntTensor { shape: vec![k, n], bits: w.bits, data: t };
        }
        let n = w.shape[1];
        let bias = self.bias(node, 2, n)?;
        let acc: Vec<f64> = (0..n)
            .map(|c| s_x as f64 * wq.scale[if wq.scale.len() == 1 { 0 } else { c }] as f64)
            .collect();
        let requant = self.requant(node, node.outputs[0], &acc, clamp)?;
        self.push(
            node,
            Step::Gemm {
                input: x,
                output: yb,
                input_zero_point: z_x,
                weights: w,
                bias,
                requant,
                crossbar: crossbar_of(node),
            },
        );
        Ok(())
    }

    /// Pass-through ops must keep their input's quantization (they are exact on codes).
    fn same_quant(&self, node: &Node) -> Result<()> {
        let a = self.g.ty(node.inputs[0]).quant.as_ref();
        let b = self.g.ty(node.outputs[0]).quant.as_ref();
        if a != b {
            return Err(err(
                node,
                "input and output quantization differ; this op only moves codes",
            ));
        }
        Ok(())
    }
}

fn window_of(kernel: &[usize], strides: &[usize], dilations: &[usize], pads: &[usize]) -> Window {
    Window {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dilations.to_vec(),
        pads: pads.to_vec(),
    }
}

/// The program's crossbar execution of a node the `tile` pass placed on arrays.
fn crossbar_of(node: &Node) -> Option<super::Crossbar> {
    let Placement::Crossbar(m) = &node.placement else { return None };
    Some(super::Crossbar {
        geometry: m.geometry,
        weight_bits: m.weight_bits,
        magnitude_bits: m.magnitude_bits,
        input_bits: m.input_bits,
        input_min: m.input_min,
        adc_step: m.adc_step.clone(),
        arrays: (0..m.replicas)
            .map(|r| {
                let mut a: Vec<u32> =
                    m.blocks.iter().filter(|b| b.replica == r).map(|b| b.array as u32).collect();
                a.sort_unstable();
                a.dedup();
                a
            })
            .collect(),
    })
}

/// `values` (shaped `from`, numpy-broadcastable to `to`) expanded to `to`, row-major; `None`
/// when they do not broadcast.
fn broadcast_values(values: &[f32], from: &[usize], to: &[usize]) -> Option<Vec<f32>> {
    let lead = to.len().checked_sub(from.len())?;
    let mut strides = vec![0usize; to.len()];
    let mut s = 1;
    for (k, &d) in from.iter().enumerate().rev() {
        if d != 1 && d != to[lead + k] {
            return None;
        }
        strides[lead + k] = if d == 1 { 0 } else { s };
        s *= d;
    }
    if s != values.len() {
        return None;
    }
    let n: usize = to.iter().product();
    Some(
        (0..n)
            .map(|mut i| {
                let mut at = 0;
                for (&d, &st) in to.iter().zip(&strides).rev() {
                    at += (i % d) * st;
                    i /= d;
                }
                values[at]
            })
            .collect(),
    )
}

/// `shape` with every axis along which `values` (row-major) never changes set to 1.
fn invariant_axes_collapsed<T: PartialEq>(shape: &[usize], values: &[T]) -> Vec<usize> {
    let mut out = shape.to_vec();
    for (a, extent) in out.iter_mut().enumerate() {
        let stride: usize = shape[a + 1..].iter().product();
        let invariant = (0..values.len()).all(|i| {
            let k = (i / stride.max(1)) % (*extent).max(1);
            values[i] == values[i - k * stride]
        });
        if invariant {
            *extent = 1;
        }
    }
    out
}

/// Whether node `n` is a mask: a Where of a constant condition choosing between an activation
/// and a constant that is `−inf` everywhere (a causal mask before a Softmax). `calibrate` gives
/// its output one bit more than the scores need, so that `−inf` has a code of its own that the
/// integer softmax weighs 0 ([`Lowering::softmax`]).
pub fn masks_with_minus_inf(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    if !matches!(node.op, Op::Where) || node.inputs.len() != 3 {
        return false;
    }
    let is_const = |k: usize| g.value(node.inputs[k]).is_const();
    let minus_inf = |k: usize| {
        g.value(node.inputs[k]).const_data().is_some_and(|d| {
            let v = d.to_f32_vec();
            !v.is_empty() && v.iter().all(|&x| x == f32::NEG_INFINITY)
        })
    };
    is_const(0) && ((minus_inf(1) && !is_const(2)) || (minus_inf(2) && !is_const(1)))
}

/// The row-major index in `full` of element `t` of `small` (the same rank, each axis 1 or
/// `full`'s): the element of `full` at `t`'s coordinates.
fn broadcast_source(small: &[usize], full: &[usize], t: usize) -> usize {
    let (mut rest, mut index, mut stride) = (t, 0, 1);
    for a in (0..full.len()).rev() {
        let coord = rest % small[a].max(1);
        rest /= small[a].max(1);
        index += coord * stride;
        stride *= full[a];
    }
    index
}
