//! The custom-domain ops of QONNX, Brevitas and FINN, each with the meaning qonnx's executor
//! gives it (`qonnx.custom_op.general`; Brevitas' older export writes the same ops in
//! `onnx.brevitas`, FINN in `finn.custom_op.general`, and qonnx reads all three alike):
//! `Quant` (lowered in `quant.rs`), `BipolarQuant`, `Trunc`, `MultiThreshold` and `FloatQuant`;
//! and qonnx's
//! channels-last `Conv`, `MaxPool` and `BatchNormalization` (`qonnx.custom_op.channels_last`),
//! the standard ops on an NHWC input, imported between two Transposes.

use super::{conv_pool, quant, Ctx, Lowered, R};
use cimc_ir::{infer, Op, Rounding, TensorData, UnaryOp, ValueId};

/// One op of a custom domain that the importer lowers.
pub struct CustomImport {
    /// The domains it is read in, alike.
    pub domains: &'static [&'static str],
    pub op_type: &'static str,
    pub lower: fn(&mut Ctx) -> R<Lowered>,
}

/// The domains of QONNX's general ops, which qonnx's executor treats as one.
pub const GENERAL: &[&str] =
    &["qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas"];

/// The domain of qonnx's channels-last wrappers of standard ops.
pub const CHANNELS_LAST: &[&str] = &["qonnx.custom_op.channels_last"];

const fn custom(
    domains: &'static [&'static str],
    op_type: &'static str,
    lower: fn(&mut Ctx) -> R<Lowered>,
) -> CustomImport {
    CustomImport { domains, op_type, lower }
}

/// Every custom-domain op the importer lowers.
pub const IMPORTS: &[CustomImport] = &[
    custom(GENERAL, "Quant", quant::qonnx_quant),
    custom(GENERAL, "BipolarQuant", bipolar_quant),
    custom(GENERAL, "Trunc", trunc),
    custom(GENERAL, "MultiThreshold", multi_threshold),
    custom(GENERAL, "FloatQuant", float_quant),
    custom(CHANNELS_LAST, "Conv", channels_last),
    custom(CHANNELS_LAST, "MaxPool", channels_last),
    custom(CHANNELS_LAST, "BatchNormalization", channels_last),
];

/// The registration of `op_type` in `domain`, `None` when the importer does not lower it.
pub fn find(domain: &str, op_type: &str) -> Option<&'static CustomImport> {
    IMPORTS.iter().find(|i| i.op_type == op_type && i.domains.contains(&domain))
}

/// Adds a node of `op` on `inputs` named after the node, or its value when every input is a
/// constant (weights rearranged at import stay constants), and returns its output.
pub(super) fn add_op(ctx: &mut Ctx, suffix: &str, op: Op, inputs: Vec<ValueId>) -> R<ValueId> {
    let g = &ctx.imp.g;
    let types: Vec<_> = inputs.iter().map(|&v| g.ty(v)).collect();
    let ty = infer::infer(&op, &types, 1)?.remove(0);
    let consts: Option<Vec<&TensorData>> =
        inputs.iter().map(|&v| g.value(v).const_data()).collect();
    if let Some(consts) = consts {
        let tensors = consts
            .iter()
            .map(|d| cimc_interp::Tensor::from_data(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let refs: Vec<_> = tensors.iter().collect();
        let mut out = cimc_interp::eval_node(&op, &refs, 1).map_err(|e| e.to_string())?;
        return Ok(ctx.add_const(suffix, out.remove(0).to_data()));
    }
    let name = ctx.imp.fresh_name(&format!("{}_{suffix}", ctx.name));
    let value = format!("{name}_out");
    let id = ctx.imp.g.add_node(name, op, inputs, vec![(value, ty)]);
    Ok(ctx.imp.g.node(id).outputs[0])
}

/// The values of constant input `i` as f32s, with its shape.
fn const_f32(ctx: &Ctx, i: usize, what: &str) -> R<(Vec<f32>, Vec<usize>)> {
    let v = ctx.input(i)?;
    let d = ctx.data(v).ok_or_else(|| format!("{what} (input {i}) must be a constant"))?;
    Ok((d.to_f32_vec(), d.shape().to_vec()))
}

/// A constant scalar bit width (input `i`), an integer in 1..=32.
fn bit_width(ctx: &Ctx, i: usize, what: &str) -> R<i32> {
    match const_f32(ctx, i, what)?.0.as_slice() {
        [b] if b.fract() == 0.0 && (1.0..=32.0).contains(b) => Ok(*b as i32),
        other => Err(format!("{what} (input {i}) {other:?}: one integer in 1..=32 is supported")),
    }
}

/// QONNX's rounding_mode names (upper or lower case).
pub(super) fn rounding(ctx: &Ctx, default: &str) -> R<Rounding> {
    let mode = ctx.attrs.string("rounding_mode")?.unwrap_or_else(|| default.to_string());
    Ok(match mode.to_ascii_uppercase().as_str() {
        "ROUND" | "HALF_EVEN" => Rounding::HalfEven,
        "CEIL" => Rounding::Ceil,
        "FLOOR" => Rounding::Floor,
        "UP" => Rounding::Up,
        "DOWN" => Rounding::Down,
        "HALF_UP" => Rounding::HalfUp,
        "HALF_DOWN" => Rounding::HalfDown,
        _ => {
            return Err(format!(
                "rounding_mode '{mode}' is not one of ROUND, HALF_EVEN, CEIL, FLOOR, UP, DOWN, \
                 HALF_UP, HALF_DOWN"
            ))
        }
    })
}

/// QONNX's integer range of `bits` (`min_int`, `max_int`).
pub(super) fn int_range(signed: bool, narrow: bool, bits: i32) -> (f64, f64) {
    let half = 2f64.powi(bits - 1);
    match (signed, narrow) {
        (true, false) => (-half, half - 1.0),
        (true, true) => (-half + 1.0, half - 1.0),
        (false, false) => (0.0, 2.0 * half - 1.0),
        (false, true) => (0.0, 2.0 * half - 2.0),
    }
}

/// `BipolarQuant(x, scale)`: `(x >= 0 ? 1 : −1) · scale`, a bipolar step then a Mul.
fn bipolar_quant(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let (x, scale) = (ctx.input(0)?, ctx.input(1)?);
    let step = add_op(ctx, "bipolar", Op::Unary(UnaryOp::Bipolar), vec![x])?;
    Ok(Lowered::Op(Op::Mul, vec![step, scale]))
}

/// `FloatQuant(x, scale, exponent_bitwidth, mantissa_bitwidth, exponent_bias, max_val)`
/// (Brevitas' FP8 export): `scale · minifloat(x / scale)`, the minifloat's largest value the
/// smaller of `max_val` and the format's own (`(2 − 2^−m) · 2^(2^e − 1 − bias)`), as qonnx's
/// executor computes it. It always saturates and keeps subnormals (`has_subnormal`, `has_inf`,
/// `has_nan` only describe the format there); `saturation = 0` is refused.
fn float_quant(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[
        "rounding_mode",
        "has_inf",
        "has_nan",
        "has_subnormal",
        "saturation",
        "signed",
    ])?;
    ctx.max_inputs(6)?;
    ctx.max_outputs(1)?;
    if !ctx.attrs.bool_or("saturation", true)? {
        return Err("saturation = 0 (overflow to inf or NaN) is not supported".into());
    }
    if !ctx.attrs.bool_or("signed", true)? {
        return Err("signed = 0 is not supported (qonnx's executor is always signed)".into());
    }
    let rounding = rounding(ctx, "ROUND")?;
    let scalar = |i: usize, what: &str| -> R<f32> {
        match const_f32(ctx, i, what)?.0.as_slice() {
            [v] => Ok(*v),
            other => Err(format!("{what} (input {i}) {other:?}: one value is supported")),
        }
    };
    let exponent_bits = scalar(2, "exponent_bitwidth")?;
    let mantissa_bits = scalar(3, "mantissa_bitwidth")?;
    let exponent_bias = scalar(4, "exponent_bias")?;
    let max_val = scalar(5, "max_val")?;
    if exponent_bits.fract() != 0.0 || !(1.0..=8.0).contains(&exponent_bits) {
        return Err(format!("exponent_bitwidth {exponent_bits}: an integer in 1..=8 is supported"));
    }
    if mantissa_bits.fract() != 0.0 || !(0.0..=23.0).contains(&mantissa_bits) {
        return Err(format!(
            "mantissa_bitwidth {mantissa_bits}: an integer in 0..=23 is supported"
        ));
    }
    if exponent_bias.fract() != 0.0 || exponent_bias.abs() > 127.0 {
        return Err(format!(
            "exponent_bias {exponent_bias}: an integer in -127..=127 is supported"
        ));
    }
    let (e, m, b) = (exponent_bits as f64, mantissa_bits as f64, exponent_bias as f64);
    let format_max = (2.0 - (-m).exp2()) * ((e.exp2() - 1.0 - b).exp2());
    let max = (format_max as f32).min(max_val);
    if !(max.is_finite() && max > 0.0) {
        return Err(format!("max_val {max_val}: a positive finite value is needed"));
    }
    let op =
        UnaryOp::Minifloat { mantissa_bits: mantissa_bits as usize, exponent_bias, max, rounding };
    let (x, scale) = (ctx.input(0)?, ctx.input(1)?);
    let ratio = add_op(ctx, "ratio", Op::Div, vec![x, scale])?;
    let q = add_op(ctx, "minifloat", Op::Unary(op), vec![ratio])?;
    Ok(Lowered::Op(Op::Mul, vec![q, scale]))
}

/// `Trunc`: version 1 (`x, scale, zero_point, input_bit_width, output_bit_width`) rescales
/// by `scale`; version 2 (`..., input_bit_width, output_scale, output_bit_width`, attributes
/// `signed`, `narrow`) clamps to the output range and rescales by `output_scale`. The trunc
/// scale (`2^(in − out bits)`, or `2^round(log2(output_scale / scale))`) and the output zero
/// point are computed here, in f32 as qonnx does, so the parameters must be constants.
fn trunc(ctx: &mut Ctx) -> R<Lowered> {
    let v2 = match ctx.n_inputs() {
        5 => false,
        6 => true,
        n => return Err(format!("expected 5 inputs (Trunc v1) or 6 (v2), got {n}")),
    };
    ctx.attrs.check_known(if v2 {
        &["rounding_mode", "signed", "narrow"]
    } else {
        &["rounding_mode"]
    })?;
    ctx.max_outputs(1)?;
    let rounding = rounding(ctx, "FLOOR")?;
    let x = ctx.input(0)?;
    let (scale, scale_shape) = const_f32(ctx, 1, "scale")?;
    let (zp, zp_shape) = const_f32(ctx, 2, "zero_point")?;
    let in_bits = bit_width(ctx, 3, "input_bit_width")?;
    let (trunc_scale, shape, out_zp, out_zp_shape, clamp, out_scale_input) = if v2 {
        let (out_scale, out_shape) = const_f32(ctx, 4, "output_scale")?;
        let out_bits = bit_width(ctx, 5, "output_bit_width")?;
        let shape = infer::broadcast(&out_shape, &scale_shape)
            .ok_or("output_scale and scale do not broadcast together")?;
        let ratio = broadcast_with(&out_scale, &out_shape, &scale, &scale_shape, &shape, |o, s| {
            2f32.powf((o / s).log2().round_ties_even())
        });
        let zp_shape_out = infer::broadcast(&zp_shape, &shape)
            .ok_or("zero_point and scale do not broadcast together")?;
        let out_zp = broadcast_with(&zp, &zp_shape, &ratio, &shape, &zp_shape_out, |z, t| z / t);
        let signed = ctx.attrs.bool_or("signed", true)?;
        let narrow = ctx.attrs.bool_or("narrow", false)?;
        let (lo, hi) = int_range(signed, narrow, out_bits);
        (ratio, shape, out_zp, zp_shape_out, Some((lo as f32, hi as f32)), ctx.input(4)?)
    } else {
        let out_bits = bit_width(ctx, 4, "output_bit_width")?;
        let t = 2f32.powi(in_bits - out_bits);
        (vec![t], vec![], zp, zp_shape, None, ctx.input(1)?)
    };
    let t = ctx.add_const("trunc_scale", TensorData::from_f32(shape, &trunc_scale));
    let z = ctx.add_const("output_zero_point", TensorData::from_f32(out_zp_shape, &out_zp));
    let inputs = vec![x, ctx.input(1)?, ctx.input(2)?, t, z, out_scale_input];
    Ok(Lowered::Op(Op::Trunc { rounding, clamp }, inputs))
}

/// `f(a, b)` for every element of `shape`, `a` and `b` numpy-broadcast to it.
fn broadcast_with(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    shape: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let index = |flat: usize, of: &[usize]| -> usize {
        // The element of a tensor of shape `of` (right-aligned, size-1 axes repeated) that
        // element `flat` of `shape` reads.
        let (mut rest, mut idx, mut stride) = (flat, 0, 1);
        for (k, &d) in shape.iter().enumerate().rev() {
            let coord = rest % d.max(1);
            rest /= d.max(1);
            let j = (k + of.len()).checked_sub(shape.len());
            if let Some(&od) = j.and_then(|j| of.get(j)) {
                if od != 1 {
                    idx += coord * stride;
                }
                stride *= od;
            }
        }
        idx
    };
    (0..n).map(|i| f(a[index(i, a_shape)], b[index(i, b_shape)])).collect()
}

/// FINN's `MultiThreshold(x, thresholds)` with `out_scale`, `out_bias` and `data_layout`
/// (channels last when it ends in `C`); `out_dtype` names the output's integer type for FINN
/// and does not change the values.
fn multi_threshold(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["out_dtype", "out_scale", "out_bias", "data_layout"])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let out_scale = ctx.attrs.float_or("out_scale", 1.0)?;
    let out_bias = ctx.attrs.float_or("out_bias", 0.0)?;
    let layout = ctx.attrs.string("data_layout")?.unwrap_or_else(|| "NCHW".to_string());
    let channels_last = layout.ends_with('C');
    let op = Op::MultiThreshold { out_scale, out_bias, channels_last };
    Ok(Lowered::Op(op, vec![ctx.input(0)?, ctx.input(1)?]))
}

/// A channels-last op: its input (and a Conv's weights, `[O, kH, kW, I]`) transposed to
/// channels first, the standard op's lowering, and its output transposed back, as qonnx's
/// wrapper runs it.
fn channels_last(ctx: &mut Ctx) -> R<Lowered> {
    if ctx.n_outputs != 1 {
        return Err(format!("expected 1 output, got {}", ctx.n_outputs));
    }
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    if rank < 3 {
        return Err(format!(
            "a channels-last input needs rank >= 3, got {}",
            super::show(ctx.ty(x))
        ));
    }
    let to_first: Vec<usize> = [0, rank - 1].into_iter().chain(1..rank - 1).collect();
    let to_last: Vec<usize> = [0].into_iter().chain(2..rank).chain([1]).collect();
    let transposed = if ctx.op_type == "Conv" { 2 } else { 1 };
    for slot in 0..transposed {
        let v = ctx.input(slot)?;
        if ctx.ty(v).rank() != rank {
            return Err(format!(
                "input {slot} must have rank {rank}, got {}",
                super::show(ctx.ty(v))
            ));
        }
        let perm = Op::Transpose { perm: to_first.clone() };
        let first = add_op(ctx, &format!("channels_first{slot}"), perm, vec![v])?;
        ctx.inputs[slot] = Some(first);
    }
    let inner = match ctx.op_type {
        "Conv" => conv_pool::conv(ctx)?,
        "MaxPool" => conv_pool::pool(ctx, true)?,
        _ => conv_pool::batch_norm(ctx)?,
    };
    let Lowered::Op(op, inputs) = inner else {
        return Err(format!("the standard {} did not lower to one op", ctx.op_type));
    };
    let y = add_op(ctx, "channels_first", op, inputs)?;
    Ok(Lowered::Op(Op::Transpose { perm: to_last }, vec![y]))
}
