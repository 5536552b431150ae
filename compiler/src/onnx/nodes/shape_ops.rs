//! Shape manipulation (Concat, Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Pad, Gather,
//! Slice) and the ops whose outputs are always constants (Shape, Constant, ConstantOfShape,
//! Range): shapes are static, so these are evaluated here.

use super::{norm_axes, norm_axis, show, Ctx, Import, Lowered, R};
use crate::onnx::tensor::byte_size;
use cimc_ir::{DType, Op, PadMode, SliceAxis, TensorData};

/// The ONNX ops this file lowers.
pub(super) const IMPORTS: &[Import] = &[
    Import::new("Concat", concat),
    Import::new("Flatten", flatten),
    Import::new("Reshape", reshape).values(&[1]),
    Import::new("Transpose", transpose),
    Import::new("Squeeze", squeeze).values(&[1]),
    Import::new("Unsqueeze", unsqueeze).values(&[1]),
    Import::new("Pad", pad).values(&[1, 3]).note("modes constant, reflect, edge, wrap"),
    Import::new("Gather", gather),
    Import::new("Slice", slice).values(&[1, 2, 3, 4]),
    Import::new("Expand", expand).values(&[1]),
    Import::new("Tile", tile).values(&[1]),
    Import::new("Split", split)
        .values(&[1])
        .note("split sizes as attribute (< 13), input, or num_outputs (>= 18)"),
    Import::new("DepthToSpace", depth_to_space).note("modes DCR and CRD"),
    Import::new("SpaceToDepth", space_to_depth).note("modes DCR and CRD"),
    Import::new("Shape", shape).note("folded to a constant"),
    Import::new("Constant", constant).note("folded to a constant"),
    Import::new("ConstantOfShape", constant_of_shape).values(&[0]).note("folded to a constant"),
    Import::new("Range", range).values(&[0, 1, 2]).note("folded to a constant"),
    Import::new("Trilu", trilu).values(&[0, 1]).note("of a constant (a causal mask): folded"),
];

pub fn concat(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["axis"])?;
    ctx.max_outputs(1)?;
    let inputs = (0..ctx.n_inputs()).map(|i| ctx.input(i)).collect::<R<Vec<_>>>()?;
    let first = *inputs.first().ok_or("expected at least 1 input")?;
    let axis = ctx.attrs.int("axis")?.ok_or("attribute 'axis' is required")?;
    let axis = norm_axis(axis, ctx.ty(first).rank(), false)?;
    Ok(Lowered::Op(Op::Concat { axis }, inputs))
}

pub fn flatten(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["axis"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let axis = norm_axis(ctx.attrs.int_or("axis", 1)?, ctx.ty(x).rank(), true)?;
    Ok(Lowered::Op(Op::Flatten { axis }, vec![x]))
}

/// Resolves 0 (copy the input's dim unless `allowzero`) and -1 (inferred) in the target shape.
pub fn reshape(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["allowzero"])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let xt = ctx.ty(x).clone();
    let target = ctx.ints_operand(1, "shape")?.ok_or("input 1 (shape) is required")?;
    let allowzero = ctx.attrs.bool_or("allowzero", false)?;
    let mut shape = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer_at.is_some() => {
                return Err(format!("shape {target:?} has more than one -1"))
            }
            -1 => {
                infer_at = Some(i);
                shape.push(1);
            }
            0 if !allowzero => {
                let v = xt.shape.get(i).ok_or_else(|| {
                    format!(
                        "shape {target:?}: 0 at index {i} copies a dim {} does not have",
                        show(&xt)
                    )
                })?;
                shape.push(*v);
            }
            d if d >= 0 => shape.push(d as usize),
            d => return Err(format!("shape {target:?}: invalid dim {d}")),
        }
    }
    let (n_in, _) = byte_size(xt.dtype, &xt.shape)?;
    if let Some(i) = infer_at {
        let rest = byte_size(xt.dtype, &shape)?.0;
        if rest == 0 || n_in % rest != 0 {
            return Err(format!("cannot infer the -1 of shape {target:?} for {}", show(&xt)));
        }
        shape[i] = n_in / rest;
    }
    if byte_size(xt.dtype, &shape)?.0 != n_in {
        return Err(format!("cannot reshape {} to {target:?} (resolved {shape:?})", show(&xt)));
    }
    Ok(Lowered::Op(Op::Reshape { shape }, vec![x]))
}

pub fn transpose(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["perm"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    let perm = match ctx.attrs.ints("perm")? {
        None => (0..rank).rev().collect(),
        Some(p) => p
            .iter()
            .map(|&a| {
                usize::try_from(a)
                    .map_err(|_| format!("attribute 'perm' {p:?} has a negative entry"))
            })
            .collect::<R<Vec<usize>>>()?,
    };
    Ok(Lowered::Op(Op::Transpose { perm }, vec![x]))
}

/// Axes from the attribute (before opset 13) or input 1 (from 13).
fn axes_arg(ctx: &Ctx) -> R<Option<Vec<i64>>> {
    if ctx.opset < 13 {
        ctx.attrs.check_known(&["axes"])?;
        ctx.max_inputs(1)?;
        Ok(ctx.attrs.ints("axes")?.map(|a| a.to_vec()))
    } else {
        ctx.attrs.check_known(&[])?;
        ctx.max_inputs(2)?;
        ctx.ints_operand(1, "axes")
    }
}

pub fn squeeze(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let xt = ctx.ty(x);
    let axes = match axes_arg(ctx)? {
        Some(a) => norm_axes(&a, xt.rank())?,
        None => (0..xt.rank()).filter(|&i| xt.shape[i] == 1).collect(),
    };
    Ok(Lowered::Op(Op::Squeeze { axes }, vec![x]))
}

pub fn unsqueeze(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let axes = axes_arg(ctx)?.ok_or("axes are required")?;
    let axes = norm_axes(&axes, ctx.ty(x).rank() + axes.len())?;
    Ok(Lowered::Op(Op::Unsqueeze { axes }, vec![x]))
}

/// Pads from input 1 (opset >= 11, optionally over `axes`, input 3) or the attribute; the
/// constant value stays an input (or becomes a constant from the old attribute).
pub fn pad(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let xt = ctx.ty(x).clone();
    let r = xt.rank();
    let mode_name = ctx.attrs.string("mode")?.unwrap_or_else(|| "constant".into());
    let mode = PadMode::from_name(&mode_name).ok_or_else(|| {
        format!("attribute 'mode': unknown mode '{mode_name}' (constant, reflect, edge, wrap)")
    })?;
    let (pads, value) = if ctx.opset < 11 {
        ctx.attrs.check_known(&["mode", "pads", "value"])?;
        ctx.max_inputs(1)?;
        let pads = ctx.attrs.ints("pads")?.ok_or("attribute 'pads' is required")?.to_vec();
        let v = ctx.attrs.float_or("value", 0.0)?;
        let value = if mode == PadMode::Constant && v != 0.0 {
            let d = match xt.dtype {
                DType::F64 => TensorData::from_f64(vec![], &[v as f64]),
                DType::F32 => TensorData::from_f32(vec![], &[v]),
                other => return Err(format!("attribute 'value' on a {other} input")),
            };
            Some(ctx.add_const("value", d))
        } else {
            None
        };
        (pads, value)
    } else {
        ctx.attrs.check_known(&["mode"])?;
        ctx.max_inputs(4)?;
        let pads = ctx.ints_operand(1, "pads")?.ok_or("input 1 (pads) is required")?;
        let pads = match ctx.ints_operand(3, "axes")? {
            None => pads,
            Some(axes) => {
                if pads.len() != 2 * axes.len() {
                    return Err(format!("{} pads for {} axes {axes:?}", pads.len(), axes.len()));
                }
                let mut full = vec![0; 2 * r];
                let mut seen = vec![false; r];
                for (k, &a) in axes.iter().enumerate() {
                    let a = norm_axis(a, r, false)?;
                    if std::mem::replace(&mut seen[a], true) {
                        return Err(format!("axes {axes:?} repeat an axis"));
                    }
                    full[a] = pads[k];
                    full[r + a] = pads[axes.len() + k];
                }
                full
            }
        };
        // ONNX ignores the constant value in the other modes.
        let value = if mode == PadMode::Constant { ctx.opt(2) } else { None };
        (pads, value)
    };
    if pads.len() != 2 * r {
        return Err(format!("{} pads for the {r} axes of {}", pads.len(), show(&xt)));
    }
    let mut inputs = vec![x];
    inputs.extend(value);
    Ok(Lowered::Op(Op::Pad { mode, pads }, inputs))
}

pub fn gather(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["axis"])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let (x, idx) = (ctx.input(0)?, ctx.input(1)?);
    let xt = ctx.ty(x);
    let axis = norm_axis(ctx.attrs.int_or("axis", 0)?, xt.rank(), false)?;
    let dim = xt.shape[axis] as i64;
    if let Some(d) = ctx.data(idx) {
        if matches!(d.dtype(), DType::I32 | DType::I64) {
            if let Some(bad) = d.to_i64_vec().into_iter().find(|&i| i < -dim || i >= dim) {
                return Err(format!("index {bad} out of range for axis {axis} of size {dim}"));
            }
        }
    }
    Ok(Lowered::Op(Op::Gather { axis }, vec![x, idx]))
}

/// Normalizes starts/ends per ONNX: negatives count from the end, then clamp to `[0, dim]`
/// for positive steps and `[-1, dim-1]` for negative ones.
pub fn slice(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let xt = ctx.ty(x).clone();
    let r = xt.rank();
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        ctx.attrs.check_known(&["starts", "ends", "axes"])?;
        ctx.max_inputs(1)?;
        let get = |n: &str| ctx.attrs.ints(n).map(|v| v.map(|v| v.to_vec()));
        (
            get("starts")?.ok_or("attribute 'starts' is required")?,
            get("ends")?.ok_or("attribute 'ends' is required")?,
            get("axes")?,
            None,
        )
    } else {
        ctx.attrs.check_known(&[])?;
        ctx.max_inputs(5)?;
        (
            ctx.ints_operand(1, "starts")?.ok_or("input 1 (starts) is required")?,
            ctx.ints_operand(2, "ends")?.ok_or("input 2 (ends) is required")?,
            ctx.ints_operand(3, "axes")?,
            ctx.ints_operand(4, "steps")?,
        )
    };
    let n = starts.len();
    let axes = axes.unwrap_or_else(|| (0..n as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if ends.len() != n || axes.len() != n || steps.len() != n {
        return Err(format!(
            "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
        ));
    }
    let mut out: Vec<SliceAxis> = Vec::with_capacity(n);
    for k in 0..n {
        let axis = norm_axis(axes[k], r, false)?;
        if out.iter().any(|s| s.axis == axis) {
            return Err(format!("axes {axes:?} repeat an axis"));
        }
        let step = steps[k];
        if step == 0 {
            return Err(format!("steps {steps:?}: a step is 0"));
        }
        let dim = xt.shape[axis] as i64;
        let from_end = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, end) = (from_end(starts[k]), from_end(ends[k]));
        let (start, end) = if step > 0 {
            (start.clamp(0, dim), end.clamp(0, dim))
        } else {
            (start.max(0).min(dim - 1), end.max(-1).min(dim - 1))
        };
        out.push(SliceAxis { axis, start, end, step });
    }
    out.sort_by_key(|s| s.axis);
    Ok(Lowered::Op(Op::Slice { axes: out }, vec![x]))
}

pub fn shape(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["start", "end"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let dims = &ctx.in_ty(0)?.shape;
    let r = dims.len() as i64;
    let clampi = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let start = clampi(ctx.attrs.int_or("start", 0)?);
    let end = clampi(ctx.attrs.int_or("end", r)?);
    let vals: Vec<i64> = dims[start..end.max(start)].iter().map(|&d| d as i64).collect();
    Ok(Lowered::Consts(vec![TensorData::from_i64(vec![vals.len()], &vals)]))
}

pub fn constant(ctx: &mut Ctx) -> R<Lowered> {
    let known = [
        "value",
        "value_float",
        "value_floats",
        "value_int",
        "value_ints",
        "sparse_value",
        "value_string",
        "value_strings",
    ];
    ctx.attrs.check_known(&known)?;
    ctx.max_inputs(0)?;
    ctx.max_outputs(1)?;
    let set: Vec<&str> = known.iter().copied().filter(|k| ctx.attrs.has(k)).collect();
    if set.len() != 1 {
        return Err(format!("exactly one value attribute must be set, found {set:?}"));
    }
    let a = &ctx.attrs;
    let data = match set[0] {
        "value" => {
            let t = a.tensor("value")?.ok_or("attribute 'value' has no tensor")?;
            ctx.imp.reader.read(t)?
        }
        "value_float" => TensorData::from_f32(vec![], &[a.float("value_float")?.unwrap_or(0.0)]),
        "value_floats" => {
            let v = a.floats("value_floats")?.unwrap_or(&[]);
            TensorData::from_f32(vec![v.len()], v)
        }
        "value_int" => TensorData::from_i64(vec![], &[a.int("value_int")?.unwrap_or(0)]),
        "value_ints" => {
            let v = a.ints("value_ints")?.unwrap_or(&[]);
            TensorData::from_i64(vec![v.len()], v)
        }
        other => {
            return Err(format!(
                "attribute '{other}' is not supported (no sparse or string tensors)"
            ))
        }
    };
    Ok(Lowered::Consts(vec![data]))
}

pub fn constant_of_shape(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["value"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let dims = ctx.ints_operand(0, "shape")?.ok_or("input 0 (shape) is required")?;
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("shape {dims:?} has a negative dim")))
        .collect::<R<Vec<usize>>>()?;
    let value = match ctx.attrs.tensor("value")? {
        Some(t) => ctx.imp.reader.read(t)?,
        None => TensorData::from_f32(vec![], &[0.0]),
    };
    if value.numel() != 1 {
        return Err(format!("attribute 'value' must hold one element, got {:?}", value.shape()));
    }
    ctx.imp.reader.check_created(value.dtype(), &shape)?;
    let (n, _) = byte_size(value.dtype(), &shape)?;
    let bytes = value.raw().repeat(n);
    TensorData::from_raw(value.dtype(), shape, bytes.into())
        .map(|d| Lowered::Consts(vec![d]))
        .map_err(|e| e.to_string())
}

pub fn range(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["stash_type"])?;
    ctx.max_inputs(3)?;
    ctx.max_outputs(1)?;
    let names = ["start", "limit", "delta"];
    let mut vals = Vec::with_capacity(3);
    for (i, what) in names.iter().enumerate() {
        let d = ctx.operand(i, what)?.ok_or_else(|| format!("input {i} ({what}) is required"))?;
        if d.numel() != 1 || d.shape().len() > 1 {
            return Err(format!("{what} must be a scalar, got {}{:?}", d.dtype(), d.shape()));
        }
        vals.push(d);
    }
    let dtype = vals[0].dtype();
    if vals.iter().any(|v| v.dtype() != dtype) {
        return Err("start, limit and delta differ in dtype".into());
    }
    let data = match dtype {
        DType::F32 | DType::F64 => {
            let (s, l, d) = (vals[0].get_f64(0), vals[1].get_f64(0), vals[2].get_f64(0));
            if d == 0.0 || !d.is_finite() || !s.is_finite() || !l.is_finite() {
                return Err(format!("range {s}..{l} step {d} is not finite"));
            }
            let n = ((l - s) / d).ceil().max(0.0);
            let n = check_len(ctx, n as u128, dtype)?;
            // Each element is computed straight into its final type: no wider temporary.
            let at = |i: usize| s + i as f64 * d;
            if dtype == DType::F32 {
                TensorData::from_f32(vec![n], &(0..n).map(|i| at(i) as f32).collect::<Vec<_>>())
            } else {
                TensorData::from_f64(vec![n], &(0..n).map(at).collect::<Vec<_>>())
            }
        }
        DType::I16 | DType::I32 | DType::I64 => {
            let (s, l, d) = (
                vals[0].get_i64(0) as i128,
                vals[1].get_i64(0) as i128,
                vals[2].get_i64(0) as i128,
            );
            if d == 0 {
                return Err("delta is 0".into());
            }
            let span = l - s;
            let n = if span * d.signum() <= 0 { 0 } else { (span.abs() + d.abs() - 1) / d.abs() };
            let n = check_len(ctx, n as u128, dtype)?;
            // Each element is computed straight into its final type: no i128 temporary.
            let at = |i: usize| s + i as i128 * d;
            match dtype {
                DType::I16 => {
                    TensorData::from_i16(vec![n], &(0..n).map(|i| at(i) as i16).collect::<Vec<_>>())
                }
                DType::I32 => {
                    TensorData::from_i32(vec![n], &(0..n).map(|i| at(i) as i32).collect::<Vec<_>>())
                }
                _ => {
                    TensorData::from_i64(vec![n], &(0..n).map(|i| at(i) as i64).collect::<Vec<_>>())
                }
            }
        }
        other => {
            return Err(format!("Range of {other} is not supported (f32, f64, i16, i32, i64)"))
        }
    };
    Ok(Lowered::Consts(vec![data]))
}

fn check_len(ctx: &Ctx, n: u128, dtype: DType) -> R<usize> {
    let n = usize::try_from(n).map_err(|_| "range is too long".to_string())?;
    ctx.imp.reader.check_created(dtype, &[n])?;
    Ok(n)
}

/// Expand: the shape operand broadcast with the input's shape (numpy rules, both ways).
pub fn expand(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let xt = ctx.ty(x).clone();
    let dims = ctx.ints_operand(1, "shape")?.ok_or("input 1 (shape) is required")?;
    let dims = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("shape {dims:?} has a negative dim")))
        .collect::<R<Vec<usize>>>()?;
    let shape = cimc_ir::infer::broadcast(&xt.shape, &dims)
        .ok_or_else(|| format!("{} does not broadcast with the shape {dims:?}", show(&xt)))?;
    Ok(Lowered::Op(Op::Expand { shape }, vec![x]))
}

pub fn tile(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let xt = ctx.ty(x).clone();
    let reps = ctx.ints_operand(1, "repeats")?.ok_or("input 1 (repeats) is required")?;
    if reps.len() != xt.rank() {
        return Err(format!("{} repeats {reps:?} for {}", reps.len(), show(&xt)));
    }
    let repeats = reps
        .iter()
        .map(|&r| usize::try_from(r).map_err(|_| format!("repeats {reps:?} has a negative entry")))
        .collect::<R<Vec<usize>>>()?;
    let mut shape = Vec::with_capacity(repeats.len());
    for (d, r) in xt.shape.iter().zip(&repeats) {
        shape.push(d.checked_mul(*r).ok_or("the tiled size overflows")?);
    }
    Ok(Lowered::Op(Op::Tile { repeats }, vec![x]))
}

/// Split sizes from the `split` attribute (< 13) or input 1 (>= 13); else equal parts, one per
/// output (or `num_outputs` from 18, the last part smaller when the axis does not divide).
pub fn split(ctx: &mut Ctx) -> R<Lowered> {
    let x = ctx.input(0)?;
    let xt = ctx.ty(x).clone();
    let given = if ctx.opset < 13 {
        ctx.attrs.check_known(&["axis", "split"])?;
        ctx.max_inputs(1)?;
        ctx.attrs.ints("split")?.map(|s| s.to_vec())
    } else {
        ctx.attrs.check_known(if ctx.opset >= 18 {
            &["axis", "num_outputs"]
        } else {
            &["axis"]
        })?;
        ctx.max_inputs(2)?;
        ctx.ints_operand(1, "split")?
    };
    let axis = norm_axis(ctx.attrs.int_or("axis", 0)?, xt.rank(), false)?;
    let dim = xt.shape[axis];
    let num_outputs = ctx.attrs.int("num_outputs")?;
    let sizes = match (given, num_outputs) {
        (Some(_), Some(_)) => return Err("both split sizes and 'num_outputs' are given".into()),
        (Some(s), None) => s
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| format!("split {s:?} has a negative size")))
            .collect::<R<Vec<usize>>>()?,
        (None, Some(k)) => {
            let k =
                usize::try_from(k).ok().filter(|&k| k > 0 && k <= dim.max(1)).ok_or_else(|| {
                    format!(
                        "attribute 'num_outputs' {k} must be in 1..={} for {}",
                        dim.max(1),
                        show(&xt)
                    )
                })?;
            let chunk = dim.div_ceil(k);
            (0..k).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect()
        }
        (None, None) => {
            let k = ctx.n_outputs;
            if !dim.is_multiple_of(k) {
                return Err(format!(
                    "axis {axis} of {} does not split into {k} equal parts",
                    show(&xt)
                ));
            }
            vec![dim / k; k]
        }
    };
    if sizes.len() != ctx.n_outputs {
        return Err(format!("{} split sizes {sizes:?} for {} outputs", sizes.len(), ctx.n_outputs));
    }
    Ok(Lowered::Op(Op::Split { axis, sizes }, vec![x]))
}

pub fn depth_to_space(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["blocksize", "mode"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let block = blocksize(ctx)?;
    let crd = crd_mode(ctx)?;
    Ok(Lowered::Op(Op::DepthToSpace { block, crd }, vec![ctx.input(0)?]))
}

pub fn space_to_depth(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["blocksize", "mode"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let block = blocksize(ctx)?;
    let crd = crd_mode(ctx)?;
    Ok(Lowered::Op(Op::SpaceToDepth { block, crd }, vec![ctx.input(0)?]))
}

/// DepthToSpace's and SpaceToDepth's `mode`: whether it is CRD (the default is DCR).
fn crd_mode(ctx: &Ctx) -> R<bool> {
    match ctx.attrs.string("mode")?.as_deref() {
        None | Some("DCR") => Ok(false),
        Some("CRD") => Ok(true),
        Some(m) => Err(format!("attribute 'mode': unknown mode '{m}' (DCR, CRD)")),
    }
}

fn blocksize(ctx: &Ctx) -> R<usize> {
    let b = ctx.attrs.int("blocksize")?.ok_or("attribute 'blocksize' is required")?;
    usize::try_from(b)
        .ok()
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("attribute 'blocksize' must be >= 1, got {b}"))
}

/// Trilu of a constant (a causal mask once the sequence length is fixed): the upper (`upper`,
/// the default) or lower triangle of the last two axes from diagonal `k` on, the rest zeros of
/// the input's type.
pub fn trilu(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["upper"])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let x = ctx.operand(0, "input")?.ok_or("input 0 is required")?;
    let k = match ctx.operand(1, "k")? {
        Some(d) if d.numel() == 1 => d.get_i64(0),
        Some(d) => return Err(format!("k must be a scalar, got {:?}", d.shape())),
        None => 0,
    };
    let upper = ctx.attrs.int_or("upper", 1)? != 0;
    let shape = x.shape().to_vec();
    if shape.len() < 2 {
        return Err(format!("expected an input of rank >= 2, got {shape:?}"));
    }
    let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let size = x.dtype().size();
    let mut bytes = x.raw().to_vec();
    for (e, chunk) in bytes.chunks_mut(size).enumerate() {
        let (i, j) = (((e / cols) % rows.max(1)) as i64, (e % cols) as i64);
        let kept = if upper { j - i >= k } else { j - i <= k };
        if !kept {
            chunk.fill(0);
        }
    }
    let data = TensorData::from_le_vec(x.dtype(), shape, bytes).map_err(|e| e.to_string())?;
    Ok(Lowered::Consts(vec![data]))
}
