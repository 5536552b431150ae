//! Conv, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool, BatchNormalization,
//! InstanceNormalization, LayerNormalization and LRN.
//!
//! `auto_pad` is resolved into explicit pads here (ONNX's rule: SAME gives
//! `ceil(in / stride)` outputs, the odd pad going to the end for SAME_UPPER and to the
//! beginning for SAME_LOWER); kernel shapes absent from a Conv come from its weight.

use super::{show, Ctx, Import, Lowered, R};
use cimc_ir::{ConvAttrs, Op, PoolAttrs};

/// The ONNX ops this file lowers.
pub(super) const IMPORTS: &[Import] = &[
    Import::new("Conv", conv),
    Import::new("MaxPool", |ctx| pool(ctx, true)).note("with the Indices output"),
    Import::new("AveragePool", |ctx| pool(ctx, false)),
    Import::new("GlobalAveragePool", global_average_pool),
    Import::new("BatchNormalization", batch_norm).note("inference mode"),
    Import::new("ConvTranspose", conv_transpose).note("float interpreter only"),
    Import::new("InstanceNormalization", instance_norm),
    Import::new("LRN", lrn),
    Import::new("LayerNormalization", layer_norm)
        .note("Mean and InvStdDev outputs only when unused"),
];

pub fn conv(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "pads",
        "strides",
    ])?;
    ctx.max_inputs(3)?;
    ctx.max_outputs(1)?;
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let (xt, wt) = (ctx.ty(x).clone(), ctx.ty(w).clone());
    if wt.rank() < 3 {
        return Err(format!("expected a weight [M,C/group,K..] of rank >= 3, got {}", show(&wt)));
    }
    let n = wt.rank() - 2;
    let kernel = match ctx.attrs.usizes("kernel_shape")? {
        Some(k) if k[..] != wt.shape[2..] => {
            return Err(format!("kernel_shape {k:?} does not match the weight {}", show(&wt)))
        }
        Some(k) => k,
        None => wt.shape[2..].to_vec(),
    };
    if xt.rank() != n + 2 {
        return Err(format!(
            "expected a {}-D input [N,C,spatial..] for a {n}-D kernel, got {}",
            n + 2,
            show(&xt)
        ));
    }
    let strides = spatial_attr(ctx, "strides", n)?;
    let dilations = spatial_attr(ctx, "dilations", n)?;
    let group = ctx.attrs.int_or("group", 1)?;
    if group < 1 {
        return Err(format!("attribute 'group' must be >= 1, got {group}"));
    }
    let pads = resolve_pads(ctx, &xt.shape[2..], &kernel, &strides, &dilations)?;
    let mut inputs = vec![x, w];
    inputs.extend(ctx.opt(2));
    let attrs = ConvAttrs { kernel, strides, dilations, pads, group: group as usize, clamp: None };
    Ok(Lowered::Op(Op::Conv(attrs), inputs))
}

pub fn pool(ctx: &mut Ctx, max: bool) -> R<Lowered> {
    if max {
        ctx.attrs.check_known(&[
            "auto_pad",
            "ceil_mode",
            "dilations",
            "kernel_shape",
            "pads",
            "storage_order",
            "strides",
        ])?;
        ctx.max_outputs(2)?;
    } else {
        ctx.attrs.check_known(&[
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "strides",
        ])?;
        ctx.max_outputs(1)?;
    }
    ctx.max_inputs(1)?;
    let x = ctx.input(0)?;
    let xt = ctx.ty(x).clone();
    let kernel = ctx.attrs.usizes("kernel_shape")?.ok_or("attribute 'kernel_shape' is required")?;
    let n = kernel.len();
    if n == 0 || xt.rank() != n + 2 {
        return Err(format!(
            "expected a {}-D input [N,C,spatial..] for kernel_shape {kernel:?}, got {}",
            n + 2,
            show(&xt)
        ));
    }
    let strides = spatial_attr(ctx, "strides", n)?;
    let dilations = spatial_attr(ctx, "dilations", n)?;
    let pads = resolve_pads(ctx, &xt.shape[2..], &kernel, &strides, &dilations)?;
    // As onnxruntime: a window that can lie wholly in the padding has no element to pool (an
    // average of nothing is NaN).
    for (i, &k) in kernel.iter().enumerate() {
        if pads[i] >= k || pads[i + n] >= k {
            return Err(format!(
                "pads {pads:?} must be smaller than kernel_shape {kernel:?} on every axis"
            ));
        }
    }
    let storage_order = ctx.attrs.int_or("storage_order", 0)?;
    if !(0..=1).contains(&storage_order) {
        return Err(format!("attribute 'storage_order' must be 0 or 1, got {storage_order}"));
    }
    let attrs = PoolAttrs {
        kernel,
        strides,
        dilations,
        pads,
        ceil_mode: ctx.attrs.bool_or("ceil_mode", false)?,
        count_include_pad: ctx.attrs.bool_or("count_include_pad", false)?,
        storage_order: storage_order as u8,
    };
    let op = if max { Op::MaxPool(attrs) } else { Op::AveragePool(attrs) };
    Ok(Lowered::Op(op, vec![x]))
}

pub fn global_average_pool(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(1)?;
    Ok(Lowered::Op(Op::GlobalAveragePool, vec![ctx.input(0)?]))
}

pub fn batch_norm(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["epsilon", "momentum", "training_mode", "spatial"])?;
    ctx.max_inputs(5)?;
    if ctx.attrs.bool_or("training_mode", false)? {
        return Err("training_mode=1 is not supported (inference only)".into());
    }
    if !ctx.attrs.bool_or("spatial", true)? {
        return Err("spatial=0 (per-activation statistics) is not supported".into());
    }
    if ctx.n_outputs > 1 {
        return Err(format!(
            "{} outputs: the training outputs (running mean/var, saved statistics) are not \
             supported (inference only)",
            ctx.n_outputs
        ));
    }
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5)?;
    let inputs = (0..5).map(|i| ctx.input(i)).collect::<R<Vec<_>>>()?;
    Ok(Lowered::Op(Op::BatchNorm { epsilon }, inputs))
}

pub fn instance_norm(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["epsilon"])?;
    ctx.max_inputs(3)?;
    ctx.max_outputs(1)?;
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5)?;
    let inputs = (0..3).map(|i| ctx.input(i)).collect::<R<Vec<_>>>()?;
    Ok(Lowered::Op(Op::InstanceNorm { epsilon }, inputs))
}

/// LayerNormalization (opset 17): `stash_type` float or double (the interpreter computes in
/// f64 either way); the optional Mean and InvStdDev outputs are left undefined, so the importer
/// refuses a model that reads them.
pub fn layer_norm(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["axis", "epsilon", "stash_type"])?;
    ctx.max_inputs(3)?;
    ctx.max_outputs(3)?;
    let stash = ctx.attrs.int_or("stash_type", 1)?;
    if stash != 1 && stash != 11 {
        return Err(format!("stash_type {stash} is not supported (1: float, 11: double)"));
    }
    let rank = ctx.in_ty(0)?.rank();
    let axis = super::norm_axis(ctx.attrs.int_or("axis", -1)?, rank, false)?;
    let epsilon = ctx.attrs.float_or("epsilon", 1e-5)?;
    let mut inputs = vec![ctx.input(0)?, ctx.input(1)?];
    inputs.extend(ctx.opt(2));
    Ok(Lowered::Op(Op::LayerNorm { axis, epsilon }, inputs))
}

pub fn lrn(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["alpha", "beta", "bias", "size"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let size = ctx.attrs.int("size")?.ok_or("attribute 'size' is required")?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| format!("attribute 'size' must be >= 1, got {size}"))?;
    let op = Op::Lrn {
        size,
        alpha: ctx.attrs.float_or("alpha", 1e-4)?,
        beta: ctx.attrs.float_or("beta", 0.75)?,
        bias: ctx.attrs.float_or("bias", 1.0)?,
    };
    Ok(Lowered::Op(op, vec![ctx.input(0)?]))
}

/// ConvTranspose: `auto_pad` and `output_shape` resolved into crops (`pads`) and extra
/// outputs at the end (`output_padding`), as the ONNX reference computes them.
pub fn conv_transpose(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "output_padding",
        "output_shape",
        "pads",
        "strides",
    ])?;
    ctx.max_inputs(3)?;
    ctx.max_outputs(1)?;
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let (xt, wt) = (ctx.ty(x).clone(), ctx.ty(w).clone());
    if wt.rank() < 3 || xt.rank() != wt.rank() {
        return Err(format!(
            "expected an input [N,C,D..] and a weight [C,M/group,K..] of one rank >= 3, got {} and {}",
            show(&xt),
            show(&wt)
        ));
    }
    let n = wt.rank() - 2;
    let kernel = match ctx.attrs.usizes("kernel_shape")? {
        Some(k) if k[..] != wt.shape[2..] => {
            return Err(format!("kernel_shape {k:?} does not match the weight {}", show(&wt)))
        }
        _ => wt.shape[2..].to_vec(),
    };
    let strides = spatial_attr(ctx, "strides", n)?;
    let dilations = spatial_attr(ctx, "dilations", n)?;
    let group = ctx.attrs.int_or("group", 1)?;
    if group < 1 {
        return Err(format!("attribute 'group' must be >= 1, got {group}"));
    }
    let mut output_padding = match ctx.attrs.usizes("output_padding")? {
        None => vec![0; n],
        Some(p) if p.len() == n => p,
        Some(p) => return Err(format!("attribute 'output_padding' {p:?} must have {n} entries")),
    };
    let target = match ctx.attrs.usizes("output_shape")? {
        Some(s) if s.len() >= n => Some(s[s.len() - n..].to_vec()),
        Some(s) => {
            return Err(format!("attribute 'output_shape' {s:?} has fewer than {n} entries"))
        }
        None => None,
    };
    let full: Vec<i64> = (0..n)
        .map(|i| {
            (strides[i] * xt.shape[2 + i].saturating_sub(1)
                + output_padding[i]
                + dilations[i] * (kernel[i].max(1) - 1)
                + 1) as i64
        })
        .collect();
    let auto = ctx.attrs.string("auto_pad")?.unwrap_or_default();
    let mut pads = match ctx.attrs.usizes("pads")? {
        Some(p) if p.len() != 2 * n => {
            return Err(format!("attribute 'pads' {p:?} must have {} entries", 2 * n))
        }
        Some(p) => p,
        None => vec![0; 2 * n],
    };
    match auto.as_str() {
        "SAME_UPPER" | "SAME_LOWER" => {
            for i in 0..n {
                let want = target.as_ref().map_or(xt.shape[2 + i] * strides[i], |t| t[i]) as i64;
                let total = full[i] - want;
                if total < 0 {
                    output_padding[i] += (-total) as usize;
                    pads[i] = 0;
                    pads[n + i] = 0;
                    continue;
                }
                let (small, big) = ((total / 2) as usize, (total - total / 2) as usize);
                (pads[i], pads[n + i]) =
                    if auto == "SAME_UPPER" { (small, big) } else { (big, small) };
            }
        }
        "" | "NOTSET" | "VALID" => {
            if auto == "VALID" {
                pads = vec![0; 2 * n];
            }
            for (i, t) in target.iter().flatten().enumerate() {
                let have = full[i] - pads[i] as i64 - pads[n + i] as i64;
                let diff = *t as i64 - have;
                if diff >= 0 {
                    output_padding[i] += diff as usize;
                } else {
                    pads[n + i] += (-diff) as usize;
                }
            }
        }
        other => {
            return Err(format!(
            "attribute 'auto_pad': unknown value '{other}' (NOTSET, VALID, SAME_UPPER, SAME_LOWER)"
        ))
        }
    }
    let mut inputs = vec![x, w];
    inputs.extend(ctx.opt(2));
    let conv = ConvAttrs { kernel, strides, dilations, pads, group: group as usize, clamp: None };
    Ok(Lowered::Op(Op::ConvTranspose { conv, output_padding }, inputs))
}

/// A per-spatial-dim attribute (strides, dilations): `n` entries >= 1, default all 1.
fn spatial_attr(ctx: &Ctx, name: &str, n: usize) -> R<Vec<usize>> {
    match ctx.attrs.usizes(name)? {
        None => Ok(vec![1; n]),
        Some(v) if v.len() != n => Err(format!("attribute '{name}' {v:?} must have {n} entries")),
        Some(v) if v.contains(&0) => Err(format!("attribute '{name}' {v:?} must be >= 1")),
        Some(v) => Ok(v),
    }
}

/// Explicit `[begin.., end..]` pads from `pads` or `auto_pad`.
fn resolve_pads(
    ctx: &Ctx,
    input: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> R<Vec<usize>> {
    let n = kernel.len();
    let explicit = match ctx.attrs.usizes("pads")? {
        Some(p) if p.len() != 2 * n => {
            return Err(format!("attribute 'pads' {p:?} must have {} entries", 2 * n))
        }
        p => p,
    };
    let auto = ctx.attrs.string("auto_pad")?.unwrap_or_default();
    match auto.as_str() {
        "" | "NOTSET" => Ok(explicit.unwrap_or_else(|| vec![0; 2 * n])),
        "VALID" | "SAME_UPPER" | "SAME_LOWER"
            if explicit.as_ref().is_some_and(|p| p.iter().any(|&v| v != 0)) =>
        {
            Err(format!("attribute 'pads' is given together with auto_pad {auto}"))
        }
        "VALID" => Ok(vec![0; 2 * n]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = vec![0; 2 * n];
            for i in 0..n {
                let out = input[i].div_ceil(strides[i]);
                let eff = dilations[i].saturating_mul(kernel[i].max(1) - 1).saturating_add(1);
                let span = (out.max(1) - 1).saturating_mul(strides[i]).saturating_add(eff);
                let total = span.saturating_sub(input[i]);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[i] = b;
                pads[n + i] = e;
            }
            Ok(pads)
        }
        other => Err(format!(
            "attribute 'auto_pad': unknown value '{other}' (NOTSET, VALID, SAME_UPPER, SAME_LOWER)"
        )),
    }
}
