//! Resize (opsets 10 to 19) and the deprecated Upsample (7 to 9): every form is lowered to one
//! `Op::Resize` with a scale and an output size on every axis.
//!
//! Resize 10 and Upsample have no coordinate transformation attribute: they are `asymmetric`,
//! nearest rounding down when upsampling and up when downsampling (onnxruntime's rule for
//! them). Scales, sizes and roi must be constants (they decide the output shape).

use super::{norm_axes, norm_axis, show, Ctx, Import, Lowered, R};
use cimc_ir::{CoordMode, DType, NearestMode, Op, ResizeAttrs, ResizeMode, ValueId};

/// The ONNX ops this file lowers.
pub(super) const IMPORTS: &[Import] = &[
    Import::new("Resize", resize).values(&[1, 2, 3]).note(
        "modes nearest, linear, cubic; every coordinate transformation; scales or sizes \
         (with axes and keep_aspect_ratio_policy); antialias",
    ),
    Import::new("Upsample", upsample).values(&[1]).note("modes nearest and linear"),
];

fn mode_of(ctx: &Ctx) -> R<ResizeMode> {
    match ctx.attrs.string("mode")?.as_deref().unwrap_or("nearest") {
        "nearest" => Ok(ResizeMode::Nearest),
        "linear" | "bilinear" => Ok(ResizeMode::Linear),
        "cubic" if ctx.op_type == "Resize" && ctx.opset >= 11 => Ok(ResizeMode::Cubic),
        m => Err(format!("attribute 'mode': unknown mode '{m}'")),
    }
}

/// A constant float operand (`None` when absent or empty).
fn floats_operand(ctx: &Ctx, i: usize, what: &str) -> R<Option<Vec<f32>>> {
    match ctx.operand(i, what)? {
        Some(d) if d.numel() > 0 => {
            if !d.dtype().is_float() || d.shape().len() != 1 {
                return Err(format!(
                    "{what} must be a 1-D float tensor, got {}{:?}",
                    d.dtype(),
                    d.shape()
                ));
            }
            Ok(Some(d.to_f32_vec()))
        }
        _ => Ok(None),
    }
}

/// The output sizes of `scales` applied to `shape` (rounded down).
fn sizes_of(shape: &[usize], scales: &[f32]) -> R<Vec<usize>> {
    if scales.len() != shape.len() || scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(format!("scales {scales:?} must be {} positive numbers", shape.len()));
    }
    Ok(shape.iter().zip(scales).map(|(&d, &s)| (d as f64 * s as f64).floor() as usize).collect())
}

/// The legacy nearest rounding: down when upsampling, up when every axis shrinks or stays.
fn legacy_attrs(mode: ResizeMode, shape: &[usize], scales: Vec<f32>) -> R<ResizeAttrs> {
    let down = scales.iter().all(|&s| s <= 1.0) && scales.iter().any(|&s| s < 1.0);
    Ok(ResizeAttrs {
        mode,
        coord: CoordMode::Asymmetric,
        nearest: if down { NearestMode::Ceil } else { NearestMode::Floor },
        cubic_a: -0.75,
        exclude_outside: false,
        antialias: false,
        extrapolation: 0.0,
        sizes: sizes_of(shape, &scales)?,
        scales,
        roi: Vec::new(),
    })
}

pub fn upsample(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape.clone();
    let scales = if ctx.opset < 9 {
        ctx.attrs.check_known(&["mode", "scales"])?;
        ctx.max_inputs(1)?;
        ctx.attrs.floats("scales")?.ok_or("attribute 'scales' is required")?.to_vec()
    } else {
        ctx.attrs.check_known(&["mode"])?;
        ctx.max_inputs(2)?;
        floats_operand(ctx, 1, "scales")?.ok_or("input 1 (scales) is required")?
    };
    let a = legacy_attrs(mode_of(ctx)?, &shape, scales)?;
    resize_any_dtype(ctx, a, x)
}

pub fn resize(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let xt = ctx.ty(x).clone();
    let mode = mode_of(ctx)?;
    if ctx.opset < 11 {
        ctx.attrs.check_known(&["mode"])?;
        ctx.max_inputs(2)?;
        let scales = floats_operand(ctx, 1, "scales")?.ok_or("input 1 (scales) is required")?;
        let a = legacy_attrs(mode, &xt.shape, scales)?;
        return resize_any_dtype(ctx, a, x);
    }
    let mut known = vec![
        "coordinate_transformation_mode",
        "cubic_coeff_a",
        "exclude_outside",
        "extrapolation_value",
        "mode",
        "nearest_mode",
    ];
    if ctx.opset >= 18 {
        known.extend(["antialias", "axes", "keep_aspect_ratio_policy"]);
    }
    ctx.attrs.check_known(&known)?;
    ctx.max_inputs(4)?;
    let coord_name =
        ctx.attrs.string("coordinate_transformation_mode")?.unwrap_or_else(|| "half_pixel".into());
    let coord = CoordMode::from_name(&coord_name).ok_or_else(|| {
        format!("attribute 'coordinate_transformation_mode': unknown mode '{coord_name}'")
    })?;
    let nearest_name =
        ctx.attrs.string("nearest_mode")?.unwrap_or_else(|| "round_prefer_floor".into());
    let nearest = NearestMode::from_name(&nearest_name)
        .ok_or_else(|| format!("attribute 'nearest_mode': unknown mode '{nearest_name}'"))?;
    let r = xt.rank();
    // In the given order: scales, sizes and roi follow it.
    let axes = match ctx.attrs.ints("axes")? {
        Some(a) => {
            norm_axes(a, r)?;
            a.iter().map(|&v| norm_axis(v, r, false)).collect::<R<Vec<usize>>>()?
        }
        None => (0..r).collect(),
    };
    let roi_given = floats_operand(ctx, 1, "roi")?;
    let scales_given = floats_operand(ctx, 2, "scales")?;
    let sizes_given = ctx.ints_operand(3, "sizes")?.filter(|s| !s.is_empty());
    let per_axis = |v: usize, what: &str| {
        if v != axes.len() {
            return Err(format!("{v} {what} for the {} resized axes of {}", axes.len(), show(&xt)));
        }
        Ok(())
    };
    let roi = match (coord, roi_given) {
        (CoordMode::TfCropAndResize, Some(g)) => {
            per_axis(g.len() / 2, "roi pairs")?;
            let mut roi = [vec![0.0; r], vec![1.0; r]].concat();
            for (k, &a) in axes.iter().enumerate() {
                roi[a] = g[k];
                roi[r + a] = g[axes.len() + k];
            }
            roi
        }
        (CoordMode::TfCropAndResize, None) => {
            return Err("tf_crop_and_resize needs the roi input".into())
        }
        _ => Vec::new(),
    };
    let (scales, sizes) = match (scales_given, sizes_given) {
        (Some(_), Some(_)) => return Err("both scales and sizes are given".into()),
        (None, None) => return Err("neither scales nor sizes are given".into()),
        (Some(g), None) => {
            per_axis(g.len(), "scales")?;
            let mut scales = vec![1.0; r];
            for (k, &a) in axes.iter().enumerate() {
                scales[a] = g[k];
            }
            let sizes = sizes_of(&xt.shape, &scales)?;
            (scales, sizes)
        }
        (None, Some(g)) => {
            per_axis(g.len(), "sizes")?;
            let mut sizes = xt.shape.clone();
            for (k, &a) in axes.iter().enumerate() {
                sizes[a] = usize::try_from(g[k])
                    .map_err(|_| format!("sizes {g:?} has a negative entry"))?;
            }
            keep_aspect_ratio(ctx, &xt.shape, &axes, sizes)?
        }
    };
    let a = ResizeAttrs {
        mode,
        coord,
        nearest,
        cubic_a: ctx.attrs.float_or("cubic_coeff_a", -0.75)?,
        exclude_outside: ctx.attrs.bool_or("exclude_outside", false)?,
        antialias: ctx.attrs.bool_or("antialias", false)? && mode != ResizeMode::Nearest,
        extrapolation: ctx.attrs.float_or("extrapolation_value", 0.0)?,
        scales,
        sizes,
        roi,
    };
    resize_any_dtype(ctx, a, x)
}

/// `Resize(x)`; on integer codes (onnxruntime's QOperator models resize the u8 output of a
/// QLinearConv directly) as onnxruntime computes it: in f32, each result converted back with
/// `static_cast`, i.e. truncated toward zero (not rounded: a linear blend of codes 99 and 100 at
/// 0.5 is 99), which `Cast` to the integer dtype does. Cubic, whose results leave the range of
/// the codes, is refused on integers.

fn resize_any_dtype(ctx: &mut Ctx, a: ResizeAttrs, x: ValueId) -> R<Lowered> {
    let dtype = ctx.ty(x).dtype;
    if dtype.is_float() {
        return Ok(Lowered::Op(Op::Resize(a), vec![x]));
    }
    // f32 holds every 8- and 16-bit code exactly; wider integers are not resized.
    let small_int = matches!(dtype, DType::U8 | DType::I8 | DType::U16 | DType::I16);
    if a.mode == ResizeMode::Cubic || !small_int {
        return Err(format!("{} resize of a {dtype} input is not supported", a.mode.name()));
    }
    let xf = super::qonnx::add_op(ctx, "float", Op::Cast { to: DType::F32 }, vec![x])?;
    let y = super::qonnx::add_op(ctx, "resized", Op::Resize(a), vec![xf])?;
    Ok(Lowered::Op(Op::Cast { to: dtype }, vec![y]))
}

/// `keep_aspect_ratio_policy` on sizes: `stretch` keeps them (the scales are then their ratios
/// to the input, left empty); `not_larger` / `not_smaller` take the smallest / largest ratio
/// over the resized axes for all of them.
fn keep_aspect_ratio(
    ctx: &Ctx,
    shape: &[usize],
    axes: &[usize],
    sizes: Vec<usize>,
) -> R<(Vec<f32>, Vec<usize>)> {
    let policy = ctx.attrs.string("keep_aspect_ratio_policy")?.unwrap_or_else(|| "stretch".into());
    let ratios = axes.iter().map(|&a| sizes[a] as f64 / shape[a].max(1) as f64);
    let scale = match policy.as_str() {
        "stretch" => return Ok((Vec::new(), sizes)),
        "not_larger" => ratios.fold(f64::INFINITY, f64::min),
        "not_smaller" => ratios.fold(0.0, f64::max),
        p => return Err(format!("attribute 'keep_aspect_ratio_policy': unknown policy '{p}'")),
    };
    let mut scales = vec![1.0; shape.len()];
    let mut out = shape.to_vec();
    for &a in axes {
        scales[a] = scale as f32;
        out[a] = (scale * shape[a] as f64 + 0.5) as usize;
    }
    Ok((scales, out))
}
