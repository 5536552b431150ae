//! QuantizeLinear and DequantizeLinear (per-tensor, per-axis and blocked).
//!
//! A scalar (or one-element 1-D) scale means per-tensor (`axis: None`); a 1-D scale means per
//! axis; `block_size > 0` means blocked along `axis`. The quantized dtype is the zero point's,
//! else `output_dtype`, else u8.

use super::{norm_axis, show, Ctx, Import, Lowered, R};
use crate::onnx::tensor::dtype_of;
use cimc_ir::{DType, Op};

/// The ONNX ops this file lowers (QONNX's `Quant` is dispatched by its domain).
pub(super) const IMPORTS: &[Import] =
    &[Import::new("QuantizeLinear", quantize), Import::new("DequantizeLinear", dequantize)];

/// The resolved `axis` for the scale's shape.
fn axis_for(ctx: &Ctx, x_rank: usize, block_size: usize) -> R<Option<usize>> {
    let scale = ctx.in_ty(1)?;
    let axis = ctx.attrs.int_or("axis", 1)?;
    if block_size > 0 {
        return norm_axis(axis, x_rank, false).map(Some);
    }
    if scale.rank() == 0 || (scale.rank() == 1 && scale.shape[0] == 1) {
        return Ok(None);
    }
    if scale.rank() != 1 {
        return Err(format!(
            "scale must be a scalar or 1-D without block_size, got {}",
            show(scale)
        ));
    }
    norm_axis(axis, x_rank, false).map(Some)
}

/// A dtype attribute (0 = absent).
fn dtype_attr(ctx: &Ctx, name: &str) -> R<Option<DType>> {
    match ctx.attrs.int_or(name, 0)? {
        0 => Ok(None),
        c => i32::try_from(c)
            .map_err(|_| format!("bad type code {c}"))
            .and_then(dtype_of)
            .map(Some)
            .map_err(|e| format!("attribute '{name}': {e}")),
    }
}

fn block_size(ctx: &Ctx) -> R<usize> {
    let b = ctx.attrs.int_or("block_size", 0)?;
    usize::try_from(b).map_err(|_| format!("attribute 'block_size' must be >= 0, got {b}"))
}

pub fn quantize(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["axis", "block_size", "saturate", "output_dtype", "precision"])?;
    ctx.max_inputs(3)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let scale_dtype = ctx.in_ty(1)?.dtype;
    if let Some(p) = dtype_attr(ctx, "precision")?.filter(|&p| p != scale_dtype) {
        return Err(format!(
            "attribute 'precision' {p} differs from the scale's dtype {scale_dtype}: not supported"
        ));
    }
    let zp = ctx.opt(2);
    let declared = dtype_attr(ctx, "output_dtype")?;
    let to = match (zp.map(|z| ctx.ty(z).dtype), declared) {
        (Some(z), Some(d)) if z != d => {
            return Err(format!("output_dtype {d} differs from the zero point's dtype {z}"))
        }
        (Some(z), _) => z,
        (None, Some(d)) => d,
        (None, None) => DType::U8,
    };
    let block_size = block_size(ctx)?;
    let axis = axis_for(ctx, ctx.ty(x).rank(), block_size)?;
    // `saturate` concerns float8 targets only; integer targets always saturate.
    let saturate = ctx.attrs.bool_or("saturate", true)?;
    let mut inputs = vec![x, ctx.input(1)?];
    inputs.extend(per_tensor_zero_point(ctx, axis)?);
    Ok(Lowered::Op(Op::QuantizeLinear { axis, block_size, saturate, to }, inputs))
}

pub fn dequantize(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["axis", "block_size", "output_dtype"])?;
    ctx.max_inputs(3)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let scale_dtype = ctx.in_ty(1)?.dtype;
    if let Some(o) = dtype_attr(ctx, "output_dtype")?.filter(|&o| o != scale_dtype) {
        return Err(format!(
            "attribute 'output_dtype' {o} differs from the scale's dtype {scale_dtype}: not supported"
        ));
    }
    let block_size = block_size(ctx)?;
    let axis = axis_for(ctx, ctx.ty(x).rank(), block_size)?;
    let mut inputs = vec![x, ctx.input(1)?];
    inputs.extend(per_tensor_zero_point(ctx, axis)?);
    Ok(Lowered::Op(Op::DequantizeLinear { axis, block_size }, inputs))
}

/// The zero point (input 2), given the shape of the scale (input 1) when the quantization is
/// per tensor: see [`zero_point_like_scale`].
fn per_tensor_zero_point(ctx: &mut Ctx, axis: Option<usize>) -> R<Option<cimc_ir::ValueId>> {
    let Some(zp) = ctx.opt(2) else { return Ok(None) };
    if axis.is_some() {
        return Ok(Some(zp));
    }
    zero_point_like_scale(ctx, zp, ctx.input(1)?).map(Some)
}

/// A one-element constant zero point reshaped to its one-element scale's shape. onnxruntime's
/// quantizer writes a bias' scale as `f32[1]` and its zero point as `i32[]` (Tract's exports
/// the reverse): both are per tensor, and the IR wants them of one shape. Any other zero point
/// is returned as it is.
pub(super) fn zero_point_like_scale(
    ctx: &mut Ctx,
    zp: cimc_ir::ValueId,
    scale: cimc_ir::ValueId,
) -> R<cimc_ir::ValueId> {
    let scale_shape = ctx.ty(scale).shape.clone();
    let zp_ty = ctx.ty(zp);
    if zp_ty.shape == scale_shape
        || zp_ty.numel() != 1
        || scale_shape.iter().product::<usize>() != 1
    {
        return Ok(zp);
    }
    match ctx.data(zp) {
        Some(d) => {
            let d = d.reshaped(scale_shape).map_err(|e| format!("zero point: {e}"))?;
            Ok(ctx.add_const("zero_point", d))
        }
        None => Ok(zp),
    }
}

/// QONNX `Quant(x, scale, zero_point, bitwidth)` with `signed`, `narrow`, `rounding_mode`
/// (in `qonnx.custom_op.general`, `finn.custom_op.general` and Brevitas' `onnx.brevitas`):
/// `scale · (clamp(round(x / scale + zp), lo, hi) − zp)`. It is imported as the equivalent
/// chain `QuantizeLinear → Clip → DequantizeLinear` (exact for an integer zero point and
/// `ROUND`, which is half to even as QuantizeLinear rounds), the form QCDQ exporters write, so
/// `fold-qdq` turns all three formats into the same annotations. A signed 1-bit Quant is
/// bipolar in qonnx's executor (`x / scale >= 0 ? scale : −scale`, zero point 0), and imported
/// so.
pub fn qonnx_quant(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["signed", "narrow", "rounding_mode"])?;
    let signed = ctx.attrs.bool_or("signed", true)?;
    let narrow = ctx.attrs.bool_or("narrow", false)?;
    let rounding = super::qonnx::rounding(ctx, "ROUND")?;
    if rounding != cimc_ir::Rounding::HalfEven {
        return Err(format!(
            "rounding_mode {} is not supported (ROUND and HALF_EVEN are)",
            rounding.name().to_ascii_uppercase()
        ));
    }
    let x = ctx.input(0)?;
    let cst = |i: usize, what: &str| -> R<Vec<f64>> {
        let v = ctx.input(i)?;
        ctx.imp
            .g
            .value(v)
            .const_data()
            .map(|d| d.to_f64_vec())
            .ok_or_else(|| format!("{what} (input {i}) must be a constant"))
    };
    let scale = cst(1, "scale")?;
    let zp = cst(2, "zero_point")?;
    let bw = cst(3, "bitwidth")?;
    let scale_shape = ctx.imp.g.ty(ctx.input(1)?).shape.clone();
    let x_shape = ctx.imp.g.ty(x).shape.clone();
    let bits = match bw.as_slice() {
        [b] if b.fract() == 0.0 && (1.0..=16.0).contains(b) => *b as u8,
        _ => return Err(format!("bitwidth {bw:?}: an integer in 1..=16 is supported")),
    };
    if zp.iter().any(|z| z.fract() != 0.0) {
        return Err("a non-integer zero point is not supported".into());
    }
    if bits == 1 && signed {
        if zp.iter().any(|&z| z != 0.0) {
            return Err("a signed 1-bit (bipolar) Quant with a zero point other than 0 is not \
                        supported"
                .into());
        }
        let s = ctx.input(1)?;
        let ratio = super::qonnx::add_op(ctx, "ratio", Op::Div, vec![x, s])?;
        let bipolar = cimc_ir::UnaryOp::Bipolar;
        let step = super::qonnx::add_op(ctx, "bipolar", Op::Unary(bipolar), vec![ratio])?;
        return Ok(Lowered::Op(Op::Mul, vec![step, s]));
    }
    // The scale broadcasts against x: a scalar, or one axis of x (e.g. [C,1,1,1] for weights).
    let axis = if scale.len() == 1 {
        None
    } else {
        let pad = x_shape.len().saturating_sub(scale_shape.len());
        let non1: Vec<usize> =
            scale_shape.iter().enumerate().filter(|(_, &d)| d != 1).map(|(i, _)| i + pad).collect();
        match non1.as_slice() {
            [a] if x_shape.get(*a) == Some(&scale.len()) => Some(*a),
            _ => {
                return Err(format!(
                    "scale of shape {scale_shape:?} is not per-tensor or per-axis of {x_shape:?}"
                ))
            }
        }
    };
    if zp.len() != 1 && zp.len() != scale.len() {
        return Err(format!("{} zero points for {} scales", zp.len(), scale.len()));
    }
    let storage = match (bits <= 8, signed) {
        (true, true) => DType::I8,
        (true, false) => DType::U8,
        (false, true) => DType::I16,
        (false, false) => DType::U16,
    };
    let (lo, hi): (i64, i64) = match (signed, narrow) {
        (true, false) => (-(1 << (bits - 1)), (1 << (bits - 1)) - 1),
        (true, true) => (-(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1),
        (false, false) => (0, (1 << bits) - 1),
        (false, true) => (0, (1 << bits) - 2),
    };
    let name = ctx.name.to_string();
    let g = &mut ctx.imp.g;
    let n = scale.len();
    let dims = if axis.is_some() { vec![n] } else { vec![] };
    let ints = |v: Vec<i64>, shape: Vec<usize>| -> cimc_ir::TensorData {
        match storage {
            DType::I8 => {
                cimc_ir::TensorData::from_i8(shape, &v.iter().map(|&x| x as i8).collect::<Vec<_>>())
            }
            DType::U8 => {
                cimc_ir::TensorData::from_u8(shape, &v.iter().map(|&x| x as u8).collect::<Vec<_>>())
            }
            DType::I16 => cimc_ir::TensorData::from_i16(
                shape,
                &v.iter().map(|&x| x as i16).collect::<Vec<_>>(),
            ),
            _ => cimc_ir::TensorData::from_u16(
                shape,
                &v.iter().map(|&x| x as u16).collect::<Vec<_>>(),
            ),
        }
    };
    let s_c = g.add_const(
        format!("{name}_scale"),
        cimc_ir::TensorData::from_f32(
            dims.clone(),
            &scale.iter().map(|&s| s as f32).collect::<Vec<_>>(),
        ),
    );
    let zps: Vec<i64> = (0..n).map(|i| zp[if zp.len() == 1 { 0 } else { i }] as i64).collect();
    let z_c = g.add_const(format!("{name}_zero_point"), ints(zps, dims));
    let lo_c = g.add_const(format!("{name}_lo"), ints(vec![lo], vec![]));
    let hi_c = g.add_const(format!("{name}_hi"), ints(vec![hi], vec![]));
    let q_op = Op::QuantizeLinear { axis, block_size: 0, saturate: true, to: storage };
    let q_ty = cimc_ir::infer::infer(&q_op, &[g.ty(x), g.ty(s_c), g.ty(z_c)], 1)?.remove(0);
    let q = g.add_node(
        format!("{name}_quantize"),
        q_op,
        vec![x, s_c, z_c],
        vec![(format!("{name}_codes"), q_ty.clone())],
    );
    let q_out = g.node(q).outputs[0];
    let c = g.add_node(
        format!("{name}_clip"),
        Op::Clip,
        vec![q_out, lo_c, hi_c],
        vec![(format!("{name}_clipped"), q_ty)],
    );
    let c_out = g.node(c).outputs[0];
    Ok(Lowered::Op(Op::DequantizeLinear { axis, block_size: 0 }, vec![c_out, s_c, z_c]))
}
