//! Resize (opsets 10 to 19) and the deprecated Upsample (7 to 9): every form is lowered to one
//! `Op::Resize` with a scale and an output size on every axis.
//!
//! Resize 10 and Upsample have no coordinate transformation attribute: they are `asymmetric`,
//! nearest rounding down when upsampling and up when downsampling (onnxruntime's rule for
//! them). Scales, sizes and roi must be constants (they decide the output shape).

use super::{norm_axes, norm_axis, show, Ctx, Import, Lowered, R};
use cimc_ir::{CoordMode, DType, NearestMode, Op, ResizeAttrs, ResizeMode, TensorData, ValueId};

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
/// QLinearConv directly) as onnxruntime computes it: in f32 (its 2-D bilinear kernel term by
/// term, [`bilinear_as_onnxruntime`], else the float Resize), each result converted back with
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
    let y = match bilinear_weights(&a, &ctx.ty(x).shape) {
        Some(w) => bilinear_as_onnxruntime(ctx, xf, w)?,
        None => super::qonnx::add_op(ctx, "resized", Op::Resize(a), vec![xf])?,
    };
    Ok(Lowered::Op(Op::Cast { to: dtype }, vec![y]))
}

/// The two taps along one axis of onnxruntime's bilinear Resize, per output index: the input
/// indices `i1`, `i2 = min(i1 + 1, len − 1)` and their weights `|c − i2|` and `|c − i1|` (both
/// ½ when `i1 = i2`), from the input coordinate `c` computed in f32 as onnxruntime does.
struct Taps {
    i1: Vec<i64>,
    i2: Vec<i64>,
    w1: Vec<f32>,
    w2: Vec<f32>,
}

/// onnxruntime's taps (`SetupUpsampleBilinear`) along an axis of `len_in` resized to `len_out`
/// at `scale`; `None` for the coordinate modes it computes otherwise.
fn ort_taps(coord: CoordMode, scale: f32, len_in: usize, len_out: usize) -> Option<Taps> {
    let (li, lo) = (len_in as f32, len_out as f32);
    let mut t = Taps { i1: vec![], i2: vec![], w1: vec![], w2: vec![] };
    for o in 0..len_out {
        let y = o as f32;
        let c = if scale == 1.0 {
            y
        } else {
            match coord {
                CoordMode::HalfPixel => (y + 0.5) / scale - 0.5,
                CoordMode::PytorchHalfPixel if len_out > 1 => (y + 0.5) / scale - 0.5,
                CoordMode::PytorchHalfPixel => 0.0,
                CoordMode::Asymmetric => y / scale,
                CoordMode::AlignCorners if len_out == 1 => 0.0,
                CoordMode::AlignCorners => y * (li - 1.0) / (lo - 1.0),
                CoordMode::HalfPixelSymmetric | CoordMode::TfCropAndResize => return None,
            }
        };
        let c = c.min(li - 1.0).max(0.0);
        let i1 = (c as i64).min(len_in as i64 - 1);
        let i2 = (i1 + 1).min(len_in as i64 - 1);
        let (w1, w2) =
            if i1 == i2 { (0.5, 0.5) } else { ((c - i2 as f32).abs(), (c - i1 as f32).abs()) };
        t.i1.push(i1);
        t.i2.push(i2);
        t.w1.push(w1);
        t.w2.push(w2);
    }
    Some(t)
}

/// The taps along the last two axes when onnxruntime's 2-D bilinear kernel runs the resize
/// (linear, no antialias, rank 2 or rank 4 with the first two axes kept), `None` otherwise.
fn bilinear_weights(a: &ResizeAttrs, shape: &[usize]) -> Option<(Taps, Taps)> {
    let r = shape.len();
    let kept = |i: usize| a.sizes[i] == shape[i];
    if a.mode != ResizeMode::Linear || a.antialias || !(r == 2 || (r == 4 && kept(0) && kept(1))) {
        return None;
    }
    // onnxruntime's scale of an axis given by its size is the ratio in f32.
    let scale = |i: usize| a.scales.get(i).copied().unwrap_or(a.sizes[i] as f32 / shape[i] as f32);
    let rows = ort_taps(a.coord, scale(r - 2), shape[r - 2], a.sizes[r - 2])?;
    let cols = ort_taps(a.coord, scale(r - 1), shape[r - 1], a.sizes[r - 1])?;
    Some((rows, cols))
}

/// onnxruntime's bilinear Resize of `xf` (f32 holding integer codes), term by term in its
/// order and precision: `dx2·dy2·X11 + dx1·dy2·X21 + dx2·dy1·X12 + dx1·dy1·X22`, each weight
/// product rounded to f32 first, the sum from the left. Its result is truncated to the codes'
/// type, so an f64 interpolation (the float `Resize`) would land on the other side of an integer
/// now and then; this one gives onnxruntime's codes.
fn bilinear_as_onnxruntime(ctx: &mut Ctx, xf: ValueId, (rows, cols): (Taps, Taps)) -> R<ValueId> {
    use super::qonnx::add_op;
    let r = ctx.ty(xf).rank();
    let (ho, wo) = (rows.i1.len(), cols.i1.len());
    let gather = |ctx: &mut Ctx, from: ValueId, axis: usize, idx: &[i64]| -> R<ValueId> {
        let i = ctx.add_const("taps", TensorData::from_i64(vec![idx.len()], idx));
        add_op(ctx, "gather", Op::Gather { axis }, vec![from, i])
    };
    let row1 = gather(ctx, xf, r - 2, &rows.i1)?;
    let row2 = gather(ctx, xf, r - 2, &rows.i2)?;
    let corners = [
        (gather(ctx, row1, r - 1, &cols.i1)?, &cols.w1, &rows.w1),
        (gather(ctx, row1, r - 1, &cols.i2)?, &cols.w2, &rows.w1),
        (gather(ctx, row2, r - 1, &cols.i1)?, &cols.w1, &rows.w2),
        (gather(ctx, row2, r - 1, &cols.i2)?, &cols.w2, &rows.w2),
    ];
    let mut sum: Option<ValueId> = None;
    for (corner, wx, wy) in corners {
        let w: Vec<f32> = (0..ho * wo).map(|k| wx[k % wo] * wy[k / wo]).collect();
        let w = ctx.add_const("weights", TensorData::from_f32(vec![ho, wo], &w));
        let term = add_op(ctx, "term", Op::Mul, vec![corner, w])?;
        sum = Some(match sum {
            None => term,
            Some(s) => add_op(ctx, "sum", Op::Add, vec![s, term])?,
        });
    }
    sum.ok_or_else(|| "invariant: four corners".into())
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
