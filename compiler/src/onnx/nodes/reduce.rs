//! Reductions (ReduceMean). Their axes are an attribute up to a version of the op and an
//! optional input after it ([`axes_input_since`]); `keepdims` defaults to 1. With no axes the
//! reduction is over every axis, unless `noop_with_empty_axes` (which came with the axes input)
//! is set: the node is then the identity.

use super::{norm_axes, Ctx, Import, Lowered, R};
use cimc_ir::{Op, Reduce, ReduceOp};

/// The ONNX ops this file lowers.
pub(super) const IMPORTS: &[Import] = &[Import::new("ReduceMean", reduce)
    .values(&[1])
    .note("axes as an attribute before opset 18, as an input from 18")];

/// The opset from which the op takes its axes as input 1 (before: an attribute).
fn axes_input_since(op: ReduceOp) -> i64 {
    match op {
        ReduceOp::Mean => 18,
    }
}

pub fn reduce(ctx: &mut Ctx) -> R<Lowered> {
    let op = match ctx.op_type {
        "ReduceMean" => ReduceOp::Mean,
        other => {
            unreachable!("invariant: IMPORTS registers only reductions with `reduce`, not {other}")
        }
    };
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    let (axes, noop) = if ctx.opset < axes_input_since(op) {
        ctx.attrs.check_known(&["axes", "keepdims"])?;
        ctx.max_inputs(1)?;
        (ctx.attrs.ints("axes")?.map(<[i64]>::to_vec), false)
    } else {
        ctx.attrs.check_known(&["keepdims", "noop_with_empty_axes"])?;
        ctx.max_inputs(2)?;
        (ctx.ints_operand(1, "axes")?, ctx.attrs.bool_or("noop_with_empty_axes", false)?)
    };
    let axes = match axes {
        Some(a) if !a.is_empty() => norm_axes(&a, rank)?,
        _ if noop => return Ok(Lowered::Op(Op::Identity, vec![x])),
        _ => (0..rank).collect(),
    };
    let keep_dims = ctx.attrs.bool_or("keepdims", true)?;
    Ok(Lowered::Op(Op::Reduce(Reduce { op, axes, keep_dims }), vec![x]))
}
