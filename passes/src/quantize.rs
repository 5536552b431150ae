//! `quantize`: integer codes for weights, biases and activations.
//!
//! Requires: every f32 activation and every Conv/Gemm/MatMul weight annotated with
//! `QuantParams` (by `calibrate` or `fold-qdq`); Gemm with `alpha = 1` (canonicalize folds it).
//!
//! Does: weights become integer constants (`i8` up to 8 bits, `i16` up to 16) —
//! `clamp(round_half_even(w / s[c]) + z[c])`; biases of Conv/Gemm become `i32` codes with scale
//! `s_x · s_w[n]` (times Gemm's `beta`); annotated activations take the integer dtype of their
//! codes; a `quantize_linear` follows every float graph input and a `dequantize_linear` precedes
//! every graph output (which keeps its name), and precedes a float epilogue (a Softmax whose
//! result only leaves the graph, `util::is_float_epilogue`; any other Softmax runs on codes).
//!
//! Guarantees: no f32 activation is left between integer ops; the graph's float interface is
//! unchanged; every op left is one that `lower` turns into a program step, or the pass names the
//! node that cannot run on codes.

use crate::error::{PassError, Result};
use crate::util::{code_dtype, const_weight, is_float_epilogue};
use crate::{Pass, PassContext, Stats};
use cimc_ir::{DType, Graph, NodeId, Op, QuantParams, TensorData, TensorType, ValueDef, ValueId};
use rayon::prelude::*;

pub struct Quantize;

/// Ops the integer program executes on codes: those with a program step (`lower`). This is
/// narrower than `Op::on_codes`, which says what the IR allows on codes (Gather and Cast have
/// an integer form but no program step yet). Exhaustive, so a new op is decided here.
fn runs_on_codes(op: &Op) -> bool {
    match op {
        Op::Conv(_)
        | Op::Gemm { .. }
        | Op::MatMul
        | Op::BatchNorm { .. }
        | Op::Relu
        | Op::Clip
        | Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::Add
        | Op::Concat { .. }
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Pad { .. }
        | Op::Identity
        | Op::Dropout
        // Tables of the float function at every input code (`lower::lut`).
        | Op::LeakyRelu { .. }
        | Op::Sigmoid
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Tanh
        | Op::Unary(_)
        // Of two activations, or of an activation and a scalar (then a table).
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Softmax { .. }
        // Only move codes: a gather of the input's elements.
        | Op::Expand { .. }
        | Op::Tile { .. }
        | Op::DepthToSpace { .. }
        | Op::SpaceToDepth { .. }
        | Op::Split { .. }
        | Op::Slice { .. }
        | Op::ZeroInsert { .. }
        // The window's or the group's sums exact in integers, then f64 rounded once.
        | Op::Lrn { .. }
        | Op::InstanceNorm { .. }
        | Op::LayerNorm { .. } => true,
        // By its attributes: nearest moves codes (a gather), linear has a step of its own.
        Op::Resize(a) => a.on_codes() != cimc_ir::OnCodes::Float,
        // Its order depends on the values: no program step.
        Op::TopK { .. } => false,
        // Pow and PRelu run with constant operands (tables): [`runs_on_codes_here`] decides.
        Op::Pow
        | Op::PRelu
        | Op::Gather { .. }
        | Op::Cast { .. }
        | Op::QuantizeLinear { .. }
        | Op::DequantizeLinear { .. }
        | Op::Variadic(_)
        | Op::Reduce(_)
        | Op::ArgMax { .. }
        | Op::ArgMin { .. }
        | Op::Compare(_)
        | Op::Logic(_)
        | Op::Not
        | Op::Where
        | Op::Trunc { .. }
        | Op::MultiThreshold { .. }
        | Op::LogSoftmax { .. }
        | Op::ConvTranspose { .. }
        | Op::Lstm(_)
        | Op::Gru(_)
        | Op::Rnn(_) => false,
    }
}

/// Whether node `n` runs on codes: its op does ([`runs_on_codes`]), it is a Pow or a PRelu
/// with one activation and a constant operand, which `lower` turns into tables of the
/// activation's codes (one per element of the constant), an integer Cast of integers, or a
/// Gather of a constant by integer indices.
fn runs_on_codes_here(g: &Graph, n: NodeId) -> bool {
    let node = g.node(n);
    let int = |k: usize| node.inputs.get(k).is_some_and(|&v| g.ty(v).dtype.is_int());
    runs_on_codes(&node.op)
        // Plain integers (token ids) cast to a wider integer type: a copy (`lower::int_cast`).
        || matches!(node.op, Op::Cast { to } if to.is_int() && int(0))
        // The rows of a constant table picked by integer indices, an embedding
        // (`lower::gather_rows`): the table quantized once to the output's codes.
        || (matches!(node.op, Op::Gather { axis: 0 }) && g.value(node.inputs[0]).is_const() && int(1))
        || (matches!(node.op, Op::Pow | Op::PRelu)
            && node.inputs.iter().filter(|&&v| !g.value(v).is_const()).count() == 1)
        // An activation's elements at constant indices (a class token `x[:, 0]`): a move of
        // codes (`lower::gather`).
        || (matches!(node.op, Op::Gather { .. })
            && !g.value(node.inputs[0]).is_const()
            && node.inputs.get(1).is_some_and(|&v| g.value(v).is_const()))
        // A constant condition choosing between an activation and a constant (a causal mask):
        // tables of the activation's codes, one per element of the constants (`lower::lut`).
        || (matches!(node.op, Op::Where)
            && g.value(node.inputs[0]).is_const()
            && node.inputs[1..].iter().filter(|&&v| !g.value(v).is_const()).count() == 1)
}

/// Codes of `data` (shape `shape`) under `q`, clamped to the code range.
pub fn codes_of(data: &[f32], shape: &[usize], q: &QuantParams) -> Vec<i32> {
    let (lo, hi) = q.code_range();
    let inner: usize = q.axis.map_or(1, |a| shape[a + 1..].iter().product()).max(1);
    let c = q.axis.map_or(1, |a| shape[a]).max(1);
    let scale: Vec<f32> = (0..c).map(|ch| q.scale[ch.min(q.scale.len() - 1)]).collect();
    let zero: Vec<f64> =
        (0..c).map(|ch| q.zero_point[ch.min(q.zero_point.len() - 1)] as f64).collect();
    let code = |w: f32, s: f32, z: f64| {
        let v = round_ties_even(w / s) as f64 + z;
        v.clamp(lo as f64, hi as f64) as i32
    };
    // Tasks of whole cycles of the channels (`c · inner` values, channel `(i / inner) % c`),
    // about `TASK` values each, in parallel (large weight tensors; a task per run of `inner`
    // values was one per value of a `[K, N]` MatMul weight).
    const TASK: usize = 1 << 15;
    let cycle = if c == 1 { TASK } else { c * inner };
    let task = cycle * (TASK / cycle).max(1);
    let mut out = vec![0i32; data.len()];
    out.par_chunks_mut(task).zip(data.par_chunks(task)).for_each(|(o, d)| {
        if c == 1 {
            o.iter_mut().zip(d).for_each(|(o, &w)| *o = code(w, scale[0], zero[0]));
            return;
        }
        for (o, d) in o.chunks_mut(cycle).zip(d.chunks(cycle)) {
            if inner == 1 {
                for ((o, &w), (&s, &z)) in o.iter_mut().zip(d).zip(scale.iter().zip(&zero)) {
                    *o = code(w, s, z);
                }
                continue;
            }
            for ((o, d), (&s, &z)) in
                o.chunks_mut(inner).zip(d.chunks(inner)).zip(scale.iter().zip(&zero))
            {
                o.iter_mut().zip(d).for_each(|(o, &w)| *o = code(w, s, z));
            }
        }
    });
    out
}

/// `x.round_ties_even()` without a libm call: adding and subtracting 1.5·2^23 rounds to an
/// integer in the default (ties-to-even) mode for |x| < 2^22; larger values are integers already
/// (or infinite/NaN, returned as they are).
#[inline]
fn round_ties_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    if x.abs() < 4_194_304.0 {
        (x + MAGIC) - MAGIC
    } else {
        x
    }
}

fn code_data(shape: Vec<usize>, codes: &[i32], dtype: DType) -> TensorData {
    match dtype {
        DType::I8 => {
            TensorData::from_i8(shape, &codes.iter().map(|&v| v as i8).collect::<Vec<_>>())
        }
        DType::U8 => {
            TensorData::from_u8(shape, &codes.iter().map(|&v| v as u8).collect::<Vec<_>>())
        }
        DType::I16 => {
            TensorData::from_i16(shape, &codes.iter().map(|&v| v as i16).collect::<Vec<_>>())
        }
        DType::U16 => {
            TensorData::from_u16(shape, &codes.iter().map(|&v| v as u16).collect::<Vec<_>>())
        }
        _ => TensorData::from_i32(shape, codes),
    }
}

/// Replaces constant `v` by its codes under its annotation; returns the new value.
fn quantize_const(g: &mut Graph, v: ValueId) -> ValueId {
    let val = g.value(v);
    let q = val.ty.quant.clone().expect("invariant: callers pass annotated constants");
    let data = val.const_data().expect("invariant: callers pass constants").to_f32_vec();
    let shape = val.ty.shape.clone();
    let dtype = code_dtype(q.bits, q.signed);
    let codes = codes_of(&data, &shape, &q);
    let name = format!("{}_q", val.name);
    let nv = g.add_const(name, code_data(shape, &codes, dtype));
    g.value_mut(nv).ty.quant = Some(q);
    nv
}

fn set_input(g: &mut Graph, n: NodeId, slot: usize, v: ValueId) {
    g.node_mut(n).inputs[slot] = v;
}

impl Pass for Quantize {
    fn name(&self) -> &'static str {
        "quantize"
    }

    fn run(&self, g: &mut Graph, _cx: &PassContext) -> Result<Stats> {
        let mut stats = Stats::new();
        let nodes = g.node_ids();
        // Every op must run on codes (or be a float epilogue).
        for &n in &nodes {
            if !runs_on_codes_here(g, n) && !is_float_epilogue(g, n) {
                return Err(PassError::node(
                    "quantize",
                    g,
                    n,
                    "this op has no integer implementation in the program (integer programs \
                     run matrix ops, pooling, element-wise functions of one activation and \
                     constants, Add/Sub/Mul/Div of activations, Concat, Softmax, LRN, \
                     InstanceNormalization and ops that move values)",
                ));
            }
        }
        for &n in &nodes {
            quantize_weights(g, n, &mut stats)?;
        }
        quantize_activations(g, &mut stats)?;
        dequantize_epilogue_inputs(g);
        dequantize_outputs(g, &mut stats);
        g.compact().map_err(PassError::Internal)?;
        Ok(stats)
    }
}

/// The weights of matrix op `n` become codes under their annotation, and its bias `i32` codes
/// at scale `s_x · s_w[n]`.
fn quantize_weights(g: &mut Graph, n: NodeId, stats: &mut Stats) -> Result<()> {
    let Some((w, _axis)) = const_weight(g, n) else { return Ok(()) };
    let Some(wq) = g.ty(w).quant.clone() else {
        return Err(PassError::node(
            "quantize",
            g,
            n,
            "its weights have no quantization parameters (run calibrate)",
        ));
    };
    if let Op::Gemm { alpha, .. } = g.node(n).op {
        if alpha != 1.0 {
            return Err(PassError::node(
                "quantize",
                g,
                n,
                format!("alpha = {alpha}: run canonicalize first"),
            ));
        }
    }
    let x = g.node(n).inputs[0];
    let Some(xq) = g.ty(x).quant.clone() else {
        return Err(PassError::node(
            "quantize",
            g,
            n,
            "its input has no quantization parameters (run calibrate)",
        ));
    };
    if xq.axis.is_some() {
        return Err(PassError::node(
            "quantize",
            g,
            n,
            "per-channel input quantization is not supported",
        ));
    }
    let nw = quantize_const(g, w);
    set_input(g, n, 1, nw);
    *stats.entry("weights quantized").or_default() += 1;
    if let Some(&b) = g.node(n).inputs.get(2) {
        quantize_bias(g, n, b, &wq, &xq)?;
        *stats.entry("biases quantized").or_default() += 1;
    }
    Ok(())
}

/// Bias `b` of node `n` as `i32` codes at scale `s_x · s_w[c]` (times Gemm's `beta`, which
/// becomes 1).
fn quantize_bias(
    g: &mut Graph,
    n: NodeId,
    b: ValueId,
    wq: &QuantParams,
    xq: &QuantParams,
) -> Result<()> {
    let beta = match g.node(n).op {
        Op::Gemm { beta, .. } => beta,
        _ => 1.0,
    };
    let bias = g
        .value(b)
        .const_data()
        .ok_or_else(|| PassError::node("quantize", g, n, "its bias is not a constant"))?
        .to_f32_vec();
    let channels = wq.scale.len();
    let n_out = bias.len();
    if n_out != channels && channels != 1 {
        return Err(PassError::node(
            "quantize",
            g,
            n,
            format!("bias of {n_out} values for {channels} output channels"),
        ));
    }
    let scale: Vec<f32> =
        (0..n_out).map(|c| xq.scale[0] * wq.scale[if channels == 1 { 0 } else { c }]).collect();
    let codes: Vec<i32> = bias
        .iter()
        .zip(&scale)
        .map(|(&v, &s)| {
            ((beta * v) as f64 / s as f64).round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64)
                as i32
        })
        .collect();
    let name = format!("{}_q", g.value(b).name);
    let nb = g.add_const(name, TensorData::from_i32(vec![n_out], &codes));
    g.value_mut(nb).ty.quant = Some(QuantParams {
        bits: 32,
        signed: true,
        scale,
        zero_point: vec![0; n_out],
        axis: Some(0),
    });
    set_input(g, n, 2, nb);
    if let Op::Gemm { beta, .. } = &mut g.node_mut(n).op {
        *beta = 1.0;
    }
    Ok(())
}

/// Annotated activations take the integer dtype of their codes; a float graph input is kept
/// and quantized right after it.
fn quantize_activations(g: &mut Graph, stats: &mut Stats) -> Result<()> {
    let values: Vec<ValueId> = g.values().map(|(v, _)| v).collect();
    for v in values {
        let val = g.value(v);
        if val.is_const() || val.ty.dtype != DType::F32 {
            continue;
        }
        if let ValueDef::Node { node, .. } = val.def {
            if !g.is_live(node) || is_float_epilogue(g, node) {
                continue;
            }
        }
        let Some(q) = val.ty.quant.clone() else {
            if matches!(val.def, ValueDef::Input) {
                return Err(PassError::Missing(format!(
                    "graph input '{}' has no quantization parameters (run calibrate)",
                    val.name
                )));
            }
            let n = g.producer(v).expect("invariant: non-input, non-const values have a producer");
            return Err(PassError::node(
                "quantize",
                g,
                n,
                format!("its output '{}' has no quantization parameters (run calibrate)", val.name),
            ));
        };
        if q.axis.is_some() && q.bits != 32 {
            return Err(PassError::Config(format!(
                "activation '{}': per-channel activation quantization is not supported",
                val.name
            )));
        }
        let dtype = code_dtype(q.bits, q.signed);
        if matches!(val.def, ValueDef::Input) {
            // Keep the float input; quantize right after it.
            let name = val.name.clone();
            let shape = val.ty.shape.clone();
            g.value_mut(v).ty.quant = None;
            let s =
                g.add_const(format!("{name}_scale"), TensorData::from_f32(vec![], &[q.scale[0]]));
            let z = g.add_const(
                format!("{name}_zero_point"),
                code_data(vec![], &[q.zero_point[0]], dtype),
            );
            let qn = g.add_node(
                format!("{name}_quantize"),
                Op::QuantizeLinear { axis: None, block_size: 0, saturate: true, to: dtype },
                vec![v, s, z],
                vec![(format!("{name}_q"), TensorType { dtype, shape, quant: Some(q) })],
            );
            let qv = g.node(qn).outputs[0];
            for (user, slot) in g.users(v) {
                if user != qn {
                    g.node_mut(user).inputs[slot] = qv;
                }
            }
            *stats.entry("inputs quantized").or_default() += 1;
        } else {
            g.value_mut(v).ty.dtype = dtype;
            *stats.entry("activations quantized").or_default() += 1;
        }
    }
    Ok(())
}

/// Float epilogues read dequantized values.
fn dequantize_epilogue_inputs(g: &mut Graph) {
    for n in g.node_ids() {
        if !is_float_epilogue(g, n) {
            continue;
        }
        let x = g.node(n).inputs[0];
        if g.ty(x).quant.is_some() {
            let d = dequantize_after(g, x);
            g.node_mut(n).inputs[0] = d;
        }
    }
}

/// Graph outputs are dequantized, keeping the output's name.
fn dequantize_outputs(g: &mut Graph, stats: &mut Stats) {
    let outputs = g.outputs().to_vec();
    let mut new_outputs = Vec::with_capacity(outputs.len());
    for o in outputs {
        if g.ty(o).quant.is_some() && g.ty(o).dtype != DType::F32 {
            let name = g.value(o).name.clone();
            g.rename_value(o, &format!("{name}_q"));
            let d = dequantize_after(g, o);
            g.rename_value(d, &name);
            new_outputs.push(d);
            *stats.entry("outputs dequantized").or_default() += 1;
        } else {
            new_outputs.push(o);
        }
    }
    g.set_outputs(new_outputs);
}

/// Adds a `dequantize_linear` of code value `x`; returns its f32 output.
fn dequantize_after(g: &mut Graph, x: ValueId) -> ValueId {
    let q = g.ty(x).quant.clone().expect("invariant: callers pass quantized values");
    let dtype = g.ty(x).dtype;
    let shape = g.ty(x).shape.clone();
    let name = g.value(x).name.clone();
    let (s, z) = if q.axis.is_some() {
        let c = q.scale.len();
        (
            g.add_const(format!("{name}_scale"), TensorData::from_f32(vec![c], &q.scale)),
            g.add_const(format!("{name}_zero_point"), code_data(vec![c], &q.zero_point, dtype)),
        )
    } else {
        (
            g.add_const(format!("{name}_scale"), TensorData::from_f32(vec![], &[q.scale[0]])),
            g.add_const(format!("{name}_zero_point"), code_data(vec![], &[q.zero_point[0]], dtype)),
        )
    };
    let n = g.add_node(
        format!("{name}_dequantize"),
        Op::DequantizeLinear { axis: q.axis, block_size: 0 },
        vec![x, s, z],
        vec![(format!("{name}_dq"), TensorType::new(DType::F32, shape))],
    );
    g.node(n).outputs[0]
}
