//! onnxruntime's QOperator format and the integer ops, expanded into the
//! `DequantizeLinear → float op → QuantizeLinear` form of a QDQ model, which `fold-qdq` turns
//! into annotations: a QOperator model then compiles as the QDQ model of the same quantization
//! does, without calibration data.
//!
//! `QLinearX(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, ...)` becomes
//! `QuantizeLinear(X(DequantizeLinear(x, x_scale, x_zp), DequantizeLinear(w, ...)), y_scale,
//! y_zp)`: the ONNX meaning of each op (the dequantized inputs, the float op, the output
//! quantized with round half to even and saturation). A bias of QLinearConv / QGemm is `i32`
//! codes at scale `x_scale · w_scale[c]` (times QGemm's `alpha`), dequantized at that scale.
//! A per-channel weight scale lies along the weight's output-channel axis (Conv's 0, MatMul's
//! last, QGemm's 0 with `transB`, else 1).
//!
//! `ConvInteger` and `MatMulInteger` are the float op on `x − x_zp` and `w − w_zp` (each a
//! `DequantizeLinear` at scale 1), cast to `i32`: exact while every sum stays below 2^24, which
//! holds for 8-bit operands and up to 256 products per output. They run in the float
//! interpreter; the program refuses them (their activation operand has no scale).
//!
//! The com.microsoft ops (`QGemm`, `QLinearAdd`, `QLinearMul`, `QLinearGlobalAveragePool`,
//! `QLinearAveragePool`, `QLinearConcat`, `QLinearSoftmax`, `QLinearSigmoid`, `QLinearLeakyRelu`)
//! are dispatched by their domain
//! ([`MICROSOFT_DOMAIN`], [`MICROSOFT`]); channels-last forms are refused.

use super::{conv_pool, elementwise, quant, shape_ops, Ctx, Import, Lowered, R};
use crate::onnx::attrs::Attrs;
use crate::onnx::proto::NodeProto;
use cimc_ir::{DType, Op, TensorData, ValueId};

/// The default-domain ops this file lowers.
pub(super) const IMPORTS: &[Import] = &[
    Import::new("QLinearConv", qlinear_conv)
        .note("expanded to DequantizeLinear, Conv, QuantizeLinear"),
    Import::new("QLinearMatMul", qlinear_matmul)
        .note("expanded to DequantizeLinear, MatMul, QuantizeLinear"),
    Import::new("ConvInteger", conv_integer).note("float interpreter only"),
    Import::new("MatMulInteger", matmul_integer).note("float interpreter only"),
];

/// onnxruntime's contrib-op domain.
pub const MICROSOFT_DOMAIN: &str = "com.microsoft";

/// The ops of [`MICROSOFT_DOMAIN`] this file lowers.
pub const MICROSOFT: &[Import] = &[
    Import::new("QGemm", qgemm),
    Import::new("QLinearAdd", qlinear_binary),
    Import::new("QLinearMul", qlinear_binary),
    Import::new("QLinearGlobalAveragePool", qlinear_global_average_pool),
    Import::new("QLinearAveragePool", qlinear_average_pool),
    Import::new("QLinearConcat", qlinear_concat),
    Import::new("QLinearSoftmax", qlinear_softmax),
    Import::new("QLinearSigmoid", qlinear_unary),
    Import::new("QLinearLeakyRelu", qlinear_unary),
];

/// The registration of a com.microsoft op, `None` when the importer does not lower it.
pub fn find_microsoft(op_type: &str) -> Option<&'static Import> {
    MICROSOFT.iter().find(|i| i.op_type == op_type)
}

/// The constant values of input `i` (scales and zero points must be constants).
fn const_of(ctx: &Ctx, i: usize, what: &str) -> R<TensorData> {
    let v = ctx.input(i)?;
    ctx.data(v).cloned().ok_or_else(|| {
        format!("{what} (input {i}, '{}') must be a constant", ctx.imp.g.value(v).name)
    })
}

/// Adds a node of `op` on `inputs` (output type inferred) named `<node>_<suffix>`, or, for
/// the float op itself (`suffix` empty), after the node: the quantized value the program
/// holds then bears the name of the QOperator node that computes it in onnxruntime. Its output.
fn add(ctx: &mut Ctx, suffix: &str, op: Op, inputs: Vec<ValueId>) -> R<ValueId> {
    let tys: Vec<&cimc_ir::TensorType> = inputs.iter().map(|&v| ctx.imp.g.ty(v)).collect();
    let ty = cimc_ir::infer::infer(&op, &tys, 1).map_err(|e| e.to_string())?.remove(0);
    let base =
        if suffix.is_empty() { ctx.name.to_string() } else { format!("{}_{suffix}", ctx.name) };
    let name = ctx.imp.fresh_name(&base);
    let n = ctx.imp.g.add_node(name.clone(), op, inputs, vec![(name, ty)]);
    Ok(ctx.imp.g.node(n).outputs[0])
}

/// The per-channel axis of a scale input for a tensor of rank `rank`: `None` for a scalar
/// (or one-element) scale, `channel_axis` for a 1-D one.
fn scale_axis(
    ctx: &Ctx,
    scale: usize,
    channel_axis: Option<usize>,
    what: &str,
) -> R<Option<usize>> {
    let t = ctx.in_ty(scale)?;
    if t.shape.iter().product::<usize>() == 1 && t.rank() <= 1 {
        return Ok(None);
    }
    match (t.rank(), channel_axis) {
        (1, Some(a)) => Ok(Some(a)),
        _ => Err(format!(
            "the scale of {what} (input {scale}) must be a scalar{}",
            if channel_axis.is_some() { " or 1-D" } else { "" }
        )),
    }
}

/// `DequantizeLinear(input x, input s, input z)`; `channel_axis`: where a 1-D scale lies.
fn dequantize(
    ctx: &mut Ctx,
    x: usize,
    s: usize,
    z: Option<usize>,
    channel_axis: Option<usize>,
    what: &str,
) -> R<ValueId> {
    let axis = scale_axis(ctx, s, channel_axis, what)?;
    let scale = ctx.input(s)?;
    let mut inputs = vec![ctx.input(x)?, scale];
    if let Some(zp) = z.and_then(|z| ctx.opt(z)) {
        inputs.push(quant::zero_point_like_scale(ctx, zp, scale)?);
    }
    add(ctx, &format!("{what}_dq"), Op::DequantizeLinear { axis, block_size: 0 }, inputs)
}

/// The final `QuantizeLinear(y, input s, input z)` (the node's own output); u8 without a zero
/// point, as ONNX defines.
fn quantize(ctx: &mut Ctx, y: ValueId, s: usize, z: Option<usize>) -> R<Lowered> {
    scale_axis(ctx, s, None, "the output")?;
    let zp = z.and_then(|z| ctx.opt(z));
    let to = zp.map_or(DType::U8, |z| ctx.ty(z).dtype);
    let scale = ctx.input(s)?;
    let mut inputs = vec![y, scale];
    if let Some(zp) = zp {
        inputs.push(quant::zero_point_like_scale(ctx, zp, scale)?);
    }
    Ok(Lowered::Op(Op::QuantizeLinear { axis: None, block_size: 0, saturate: true, to }, inputs))
}

/// The float op of the node as `lower` makes it from the node's own attributes (less
/// `dropped`), on `inputs`; its output.
fn float_op(
    ctx: &mut Ctx,
    op_type: &str,
    lower: fn(&mut Ctx) -> R<Lowered>,
    inputs: Vec<Option<ValueId>>,
    dropped: &[&str],
) -> R<ValueId> {
    let mut proto: NodeProto = ctx.attrs.proto().clone();
    proto.attribute.retain(|a| !dropped.contains(&a.name.as_deref().unwrap_or("")));
    let name = ctx.name.to_string();
    let (op, ins) = {
        let mut sub = Ctx {
            imp: &mut *ctx.imp,
            op_type,
            attrs: Attrs::new(&proto),
            opset: ctx.opset,
            name: &name,
            inputs,
            n_outputs: 1,
        };
        match lower(&mut sub)? {
            Lowered::Op(op, ins) => (op, ins),
            _ => return Err(format!("{op_type} of constants is not supported here")),
        }
    };
    add(ctx, "", op, ins)
}

/// A channels-last attribute must be absent or 0.
fn channels_first(ctx: &Ctx) -> R<()> {
    match ctx.attrs.int_or("channels_last", 0)? {
        0 => Ok(()),
        c => Err(format!("channels_last = {c} is not supported (NCHW only)")),
    }
}

/// `i32` bias codes at scale `k · x_scale · w_scale[c]`, dequantized (axis 0 when per channel).
fn bias(ctx: &mut Ctx, b: usize, x_scale: usize, w_scale: usize, k: f32) -> R<Option<ValueId>> {
    let Some(bv) = ctx.opt(b) else { return Ok(None) };
    if ctx.ty(bv).dtype != DType::I32 {
        return Err(format!("the bias (input {b}) must be int32, got {}", ctx.ty(bv).dtype));
    }
    let sx = const_of(ctx, x_scale, "the input scale")?.to_f32_vec();
    let sw = const_of(ctx, w_scale, "the weight scale")?.to_f32_vec();
    if sx.len() != 1 {
        return Err("per-channel input quantization is not supported".into());
    }
    let scale: Vec<f32> = sw.iter().map(|&s| k * sx[0] * s).collect();
    let n = scale.len();
    let (shape, axis) = if n == 1 { (vec![], None) } else { (vec![n], Some(0)) };
    let s = ctx.add_const("bias_scale", TensorData::from_f32(shape.clone(), &scale));
    let z = ctx.add_const("bias_zero_point", TensorData::from_i32(shape, &vec![0; n]));
    add(ctx, "bias_dq", Op::DequantizeLinear { axis, block_size: 0 }, vec![bv, s, z]).map(Some)
}

/// QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B).
pub fn qlinear_conv(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_inputs(9)?;
    ctx.max_outputs(1)?;
    let x = dequantize(ctx, 0, 1, Some(2), None, "x")?;
    let w = dequantize(ctx, 3, 4, Some(5), Some(0), "w")?;
    let b = bias(ctx, 8, 1, 4, 1.0)?;
    let y = float_op(ctx, "Conv", conv_pool::conv, vec![Some(x), Some(w), b], &[])?;
    quantize(ctx, y, 6, Some(7))
}

/// QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp).
pub fn qlinear_matmul(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(8)?;
    ctx.max_outputs(1)?;
    let b_rank = ctx.in_ty(3)?.rank();
    let a = dequantize(ctx, 0, 1, Some(2), None, "a")?;
    let b = dequantize(ctx, 3, 4, Some(5), Some(b_rank.saturating_sub(1)), "b")?;
    let y = add(ctx, "", Op::MatMul, vec![a, b])?;
    quantize(ctx, y, 6, Some(7))
}

/// QGemm(A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp): float output without y_scale.
pub fn qgemm(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["alpha", "transA", "transB"])?;
    ctx.max_inputs(9)?;
    ctx.max_outputs(1)?;
    let alpha = ctx.attrs.float_or("alpha", 1.0)?;
    let trans_b = ctx.attrs.bool_or("transB", false)?;
    let a = dequantize(ctx, 0, 1, Some(2), None, "a")?;
    let b = dequantize(ctx, 3, 4, Some(5), Some(if trans_b { 0 } else { 1 }), "b")?;
    let c = bias(ctx, 6, 1, 4, alpha)?;
    let op = Op::Gemm {
        alpha,
        beta: 1.0,
        trans_a: ctx.attrs.bool_or("transA", false)?,
        trans_b,
        clamp: None,
    };
    let mut inputs = vec![a, b];
    inputs.extend(c);
    if ctx.opt(7).is_none() {
        return Ok(Lowered::Op(op, inputs));
    }
    let y = add(ctx, "", op, inputs)?;
    quantize(ctx, y, 7, Some(8))
}

/// QLinearAdd / QLinearMul(A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp).
pub fn qlinear_binary(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(8)?;
    ctx.max_outputs(1)?;
    let a = dequantize(ctx, 0, 1, Some(2), None, "a")?;
    let b = dequantize(ctx, 3, 4, Some(5), None, "b")?;
    let op = if ctx.op_type == "QLinearMul" { Op::Mul } else { Op::Add };
    let y = add(ctx, "", op, vec![a, b])?;
    quantize(ctx, y, 6, Some(7))
}

/// QLinearGlobalAveragePool(X, x_scale, x_zp, y_scale, y_zp).
pub fn qlinear_global_average_pool(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["channels_last"])?;
    channels_first(ctx)?;
    ctx.max_inputs(5)?;
    ctx.max_outputs(1)?;
    let x = dequantize(ctx, 0, 1, Some(2), None, "x")?;
    let y = add(ctx, "", Op::GlobalAveragePool, vec![x])?;
    quantize(ctx, y, 3, Some(4))
}

/// QLinearAveragePool(X, x_scale, x_zp, y_scale, y_zp) with AveragePool's attributes.
pub fn qlinear_average_pool(ctx: &mut Ctx) -> R<Lowered> {
    channels_first(ctx)?;
    ctx.max_inputs(5)?;
    ctx.max_outputs(1)?;
    let x = dequantize(ctx, 0, 1, Some(2), None, "x")?;
    let pool: fn(&mut Ctx) -> R<Lowered> = |c| conv_pool::pool(c, false);
    let y = float_op(ctx, "AveragePool", pool, vec![Some(x)], &["channels_last"])?;
    quantize(ctx, y, 3, Some(4))
}

/// QLinearConcat(Y_scale, Y_zp, X0, X0_scale, X0_zp, X1, ...) with Concat's `axis`.
pub fn qlinear_concat(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(1)?;
    let n = ctx.n_inputs();
    if n < 5 || !(n - 2).is_multiple_of(3) {
        return Err(format!(
            "expected Y_scale, Y_zero_point and triples (X, scale, zero point), got {n} inputs"
        ));
    }
    let mut xs = Vec::new();
    for k in (2..n).step_by(3) {
        xs.push(Some(dequantize(ctx, k, k + 1, Some(k + 2), None, &format!("x{}", (k - 2) / 3))?));
    }
    let y = float_op(ctx, "Concat", shape_ops::concat, xs, &[])?;
    quantize(ctx, y, 0, Some(1))
}

/// QLinearSoftmax(X, x_scale, x_zp, y_scale, y_zp) with `axis` and the `opset` whose Softmax
/// semantics it follows.
pub fn qlinear_softmax(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["axis", "opset"])?;
    ctx.max_inputs(5)?;
    ctx.max_outputs(1)?;
    let opset = ctx.attrs.int_or("opset", ctx.opset)?;
    let x = dequantize(ctx, 0, 1, Some(2), None, "x")?;
    let saved = ctx.opset;
    ctx.opset = opset;
    let y = float_op(ctx, "Softmax", elementwise::softmax, vec![Some(x)], &["opset"]);
    ctx.opset = saved;
    quantize(ctx, y?, 3, Some(4))
}

/// QLinearSigmoid / QLinearLeakyRelu(X, x_scale, x_zp, y_scale, y_zp), LeakyRelu with `alpha`
/// (default 0.01). onnxruntime runs both as a table of the 256 codes (`QLinearLookupBase`), each
/// entry `Q(f(DQ(code)))` in f32; the program runs `f` on codes as a `Step::Lut` computed the same
/// way from the float interpreter. The two tables agree at every code where `f` is evaluated
/// to the same f32: onnxruntime's logistic is MLAS' rational approximation
/// (`MlasComputeLogistic`, within a few ulp of `1 / (1 + e^−x)`), so an entry could differ by one
/// code only where `f(DQ(code)) / y_scale` falls within those few ulp of a rounding boundary.
pub fn qlinear_unary(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_inputs(5)?;
    ctx.max_outputs(1)?;
    let x = dequantize(ctx, 0, 1, Some(2), None, "x")?;
    let op_type = ctx.op_type.trim_start_matches("QLinear");
    let op_type = if op_type == "Sigmoid" { "Sigmoid" } else { "LeakyRelu" };
    let y = float_op(ctx, op_type, elementwise::unary, vec![Some(x)], &[])?;
    quantize(ctx, y, 3, Some(4))
}

/// `x − zp` as f32 (a DequantizeLinear at scale 1; the zero point per channel along
/// `channel_axis` when 1-D).
fn centered(
    ctx: &mut Ctx,
    x: usize,
    z: usize,
    channel_axis: Option<usize>,
    what: &str,
) -> R<ValueId> {
    let xv = ctx.input(x)?;
    let zp = ctx.opt(z);
    let n = zp.map_or(1, |z| ctx.ty(z).shape.iter().product::<usize>());
    let (shape, axis) = match (zp.map(|z| ctx.ty(z).rank()), channel_axis) {
        (Some(1), Some(a)) if n > 1 => (vec![n], Some(a)),
        (Some(r), _) if n > 1 || r > 1 => {
            return Err(format!("the zero point of {what} (input {z}) must be a scalar"))
        }
        _ => (vec![], None),
    };
    let s =
        ctx.add_const(&format!("{what}_unit_scale"), TensorData::from_f32(shape, &vec![1.0; n]));
    let mut inputs = vec![xv, s];
    if let Some(z) = zp {
        // DequantizeLinear wants the zero point in the codes' dtype and the scale's shape.
        let data = ctx
            .data(z)
            .cloned()
            .ok_or_else(|| format!("the zero point of {what} must be a constant"))?;
        let zv = ctx.add_const(
            &format!("{what}_zp"),
            data.reshaped(if axis.is_some() { vec![n] } else { vec![] })
                .map_err(|e| e.to_string())?,
        );
        inputs.push(zv);
    }
    add(ctx, &format!("{what}_centered"), Op::DequantizeLinear { axis, block_size: 0 }, inputs)
}

/// ConvInteger(x, w, x_zero_point, w_zero_point): i32.
pub fn conv_integer(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_inputs(4)?;
    ctx.max_outputs(1)?;
    let x = centered(ctx, 0, 2, None, "x")?;
    let w = centered(ctx, 1, 3, Some(0), "w")?;
    let y = float_op(ctx, "Conv", conv_pool::conv, vec![Some(x), Some(w)], &[])?;
    Ok(Lowered::Op(Op::Cast { to: DType::I32 }, vec![y]))
}

/// MatMulInteger(a, b, a_zero_point, b_zero_point): i32.
pub fn matmul_integer(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(4)?;
    ctx.max_outputs(1)?;
    let b_rank = ctx.in_ty(1)?.rank();
    let a = centered(ctx, 0, 2, None, "a")?;
    let b = centered(ctx, 1, 3, Some(b_rank.saturating_sub(1)), "b")?;
    let y = add(ctx, "matmul", Op::MatMul, vec![a, b])?;
    Ok(Lowered::Op(Op::Cast { to: DType::I32 }, vec![y]))
}
