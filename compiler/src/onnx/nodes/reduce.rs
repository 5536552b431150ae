//! Reductions (ReduceMean, ReduceSum, ReduceMax...), ArgMax/ArgMin and TopK. The reductions' axes
//! are an attribute up to a version of the op and an optional input after it
//! ([`axes_input_since`]); `keepdims` defaults to 1. With no axes the reduction is over every
//! axis, unless `noop_with_empty_axes` (which came with the axes input) is set: the node is
//! then the identity.

use super::{norm_axes, norm_axis, Ctx, Import, Lowered, R};
use cimc_ir::{Op, Reduce, ReduceOp};

const AXES_18: &str = "axes as an attribute before opset 18, as an input from 18";

/// The ONNX ops this file lowers.
pub(super) const IMPORTS: &[Import] = &[
    Import::new("ReduceMean", reduce).values(&[1]).note(AXES_18),
    Import::new("ReduceSum", reduce)
        .values(&[1])
        .note("axes as an attribute before opset 13, as an input from 13"),
    Import::new("ReduceMax", reduce).values(&[1]).note(AXES_18),
    Import::new("ReduceMin", reduce).values(&[1]).note(AXES_18),
    Import::new("ReduceProd", reduce).values(&[1]).note(AXES_18),
    Import::new("ReduceL1", reduce).values(&[1]).note(AXES_18),
    Import::new("ReduceL2", reduce).values(&[1]).note(AXES_18),
    Import::new("ReduceSumSquare", reduce).values(&[1]).note(AXES_18),
    Import::new("ReduceLogSum", reduce).values(&[1]).note(AXES_18),
    Import::new("ReduceLogSumExp", reduce).values(&[1]).note(AXES_18),
    Import::new("ArgMax", arg_extreme),
    Import::new("ArgMin", arg_extreme),
    Import::new("TopK", top_k).values(&[1]).note("sorted output (also for sorted = 0)"),
];

/// The opset from which the op takes its axes as input 1 (before: an attribute).
fn axes_input_since(op: ReduceOp) -> i64 {
    match op {
        ReduceOp::Sum => 13,
        ReduceOp::Mean
        | ReduceOp::Max
        | ReduceOp::Min
        | ReduceOp::Prod
        | ReduceOp::L2
        | ReduceOp::SumSquare
        | ReduceOp::L1
        | ReduceOp::LogSum
        | ReduceOp::LogSumExp => 18,
    }
}

pub fn reduce(ctx: &mut Ctx) -> R<Lowered> {
    let op = match ctx.op_type {
        "ReduceMean" => ReduceOp::Mean,
        "ReduceSum" => ReduceOp::Sum,
        "ReduceMax" => ReduceOp::Max,
        "ReduceMin" => ReduceOp::Min,
        "ReduceProd" => ReduceOp::Prod,
        "ReduceL1" => ReduceOp::L1,
        "ReduceL2" => ReduceOp::L2,
        "ReduceSumSquare" => ReduceOp::SumSquare,
        "ReduceLogSum" => ReduceOp::LogSum,
        "ReduceLogSumExp" => ReduceOp::LogSumExp,
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

/// ArgMax, ArgMin: `axis` (default 0), `keepdims` (default 1), `select_last_index` (opset 12
/// on; default 0).
pub fn arg_extreme(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["axis", "keepdims", "select_last_index"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let axis = norm_axis(ctx.attrs.int_or("axis", 0)?, ctx.ty(x).rank(), false)?;
    let keep_dims = ctx.attrs.bool_or("keepdims", true)?;
    let select_last = ctx.attrs.bool_or("select_last_index", false)?;
    let op = if ctx.op_type == "ArgMax" {
        Op::ArgMax { axis, keep_dims, select_last }
    } else {
        Op::ArgMin { axis, keep_dims, select_last }
    };
    Ok(Lowered::Op(op, vec![x]))
}

/// TopK: `k` an attribute before opset 10, else input 1 (one i64); `axis` (default −1);
/// `largest` and `sorted` from opset 11 (default 1). ONNX leaves the order of an unsorted
/// result unspecified: it is sorted here too.
pub fn top_k(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(2)?;
    let k = if ctx.opset < 10 {
        ctx.attrs.check_known(&["axis", "k"])?;
        ctx.max_inputs(1)?;
        ctx.attrs.int("k")?.ok_or("attribute 'k' is required")?
    } else {
        ctx.attrs.check_known(if ctx.opset < 11 {
            &["axis"][..]
        } else {
            &["axis", "largest", "sorted"][..]
        })?;
        ctx.max_inputs(2)?;
        match ctx.ints_operand(1, "k")?.as_deref() {
            Some(&[k]) => k,
            Some(other) => return Err(format!("k must hold one value, got {other:?}")),
            None => return Err("input 1 (k) is required".into()),
        }
    };
    let x = ctx.input(0)?;
    let axis = norm_axis(ctx.attrs.int_or("axis", -1)?, ctx.ty(x).rank(), false)?;
    let k = usize::try_from(k).map_err(|_| format!("k must be >= 0, got {k}"))?;
    let largest = ctx.attrs.bool_or("largest", true)?;
    Ok(Lowered::Op(Op::TopK { axis, k, largest }, vec![x]))
}
