//! QuantizeLinear and DequantizeLinear (per-tensor, per-axis and blocked).
//!
//! A scalar (or one-element 1-D) scale means per-tensor (`axis: None`); a 1-D scale means per
//! axis; `block_size > 0` means blocked along `axis`. The quantized dtype is the zero point's,
//! else `output_dtype`, else u8.

use super::{norm_axis, show, Ctx, Lowered, R};
use crate::onnx::tensor::dtype_of;
use cimc_ir::{DType, Op};

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
    inputs.extend(zp);
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
    inputs.extend(ctx.opt(2));
    Ok(Lowered::Op(Op::DequantizeLinear { axis, block_size }, inputs))
}
