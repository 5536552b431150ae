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
    BufQuant, BufferDecl, CodeType, Elem, IntTensor, Program, Requant, ResizeAxis, Step, Window,
    DIV_SHIFT, EXP_BITS, GATHER_ZERO_POINT, RESIZE_FRAC_BITS,
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
        let data = d.to_i64_vec().into_iter().map(|v| v as i32).collect();
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
            | Op::PRelu
            | Op::ArgMax { .. }
            | Op::ArgMin { .. }
            | Op::Compare(_)
            | Op::Logic(_)
            | Op::Not
            | Op::Where => Err(err(node, format!("'{}' has no program step", node.op.name()))),
            Op::Trunc { .. } | Op::MultiThreshold { .. } => {
                Err(err(node, format!("'{}' has no program step", node.op.name())))
            }
            Op::Expand { .. }
            | Op::Tile { .. }
            | Op::DepthToSpace { .. }
            | Op::SpaceToDepth { .. } => self.gather(node),
            Op::LogSoftmax { .. }
            | Op::Lrn { .. }
            | Op::InstanceNorm { .. }
            | Op::ConvTranspose { .. }
            | Op::Lstm(_)
            | Op::Gru(_)
            | Op::Rnn(_) => Err(err(node, format!("'{}' has no program step", node.op.name()))),
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
        let y = node.outputs[0];
        let a = self.buffer(node.inputs[0]).map_err(|m| err(node, m))?;
        let b = self.buffer(node.inputs[1]).map_err(|m| err(node, m))?;
        let yb = self.buffer(y).map_err(|m| err(node, m))?;
        let (s_a, z_a, _) = self.per_tensor(node, node.inputs[0])?;
        let (s_b, z_b, _) = self.per_tensor(node, node.inputs[1])?;
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
        let ys = self.eval_elementwise(node, slot, reals)?;
        let (ylo, yhi) = qy.code_range();
        let table =
            ys.iter().map(|&v| quantize_value(v, s_y, z_y, ylo as i32, yhi as i32)).collect();
        self.push(node, Step::Lut { input: x, output: yb, input_min: lo as i32, table });
        Ok(())
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

    /// Add, Sub, Mul, Div and Pow: with one operand a constant of one element, a function of the
    /// other one's codes ([`Lowering::lut`]); Add, Sub, Mul and Div of two code tensors, their
    /// integer steps.
    fn binary(&mut self, node: &Node) -> Result<()> {
        let is_const = |k: usize| self.g.value(node.inputs[k]).is_const();
        let single = |k: usize| self.g.ty(node.inputs[k]).shape.iter().product::<usize>() == 1;
        match (is_const(0), is_const(1)) {
            (false, true) if single(1) => return self.lut(node, 0),
            (true, false) if single(0) => return self.lut(node, 1),
            (false, false) => {}
            _ => {
                return Err(err(
                    node,
                    "a constant operand of several values: the program runs this op only on \
                     two activations or an activation and a scalar",
                ))
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
        let out = cimc_interp::eval_node(&node.op, &[&t], node.outputs.len())
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
        let exp_table = (0..=hi - lo)
            .map(|d| (one * (-(s_x as f64) * d as f64).exp()).round() as i64)
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
