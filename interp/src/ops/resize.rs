//! Resize: separable interpolation, one axis at a time, in f64, as the ONNX reference defines
//! it (each output coordinate mapped to an input coordinate by the coordinate transformation,
//! then 2 taps for nearest and linear, 4 for cubic, edge-clamped).

use super::bad;
use super::norm::{float_like, floats_of};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::{CoordMode, NearestMode, ResizeAttrs, ResizeMode};

/// The input coordinate of output index `y` along an axis of `len_in` inputs.
fn source_coord(
    a: &ResizeAttrs,
    y: f64,
    scale: f64,
    len_in: usize,
    len_out: usize,
    roi: (f64, f64),
) -> f64 {
    let (l_in, out_w) = (len_in as f64, scale * len_in as f64);
    match a.coord {
        CoordMode::AlignCorners if out_w == 1.0 => 0.0,
        CoordMode::AlignCorners => y * (l_in - 1.0) / (out_w - 1.0),
        CoordMode::Asymmetric => y / scale,
        CoordMode::TfCropAndResize if out_w == 1.0 => {
            (roi.1 - roi.0) * (l_in - 1.0) / 2.0 + roi.0 * (l_in - 1.0)
        }
        CoordMode::TfCropAndResize => {
            y * (roi.1 - roi.0) * (l_in - 1.0) / (out_w - 1.0) + roi.0 * (l_in - 1.0)
        }
        CoordMode::PytorchHalfPixel if out_w == 1.0 => -0.5,
        CoordMode::PytorchHalfPixel | CoordMode::HalfPixel => (y + 0.5) / scale - 0.5,
        CoordMode::HalfPixelSymmetric => {
            let offset = l_in / 2.0 * (1.0 - len_out as f64 / out_w);
            offset + (y + 0.5) / scale - 0.5
        }
    }
}

/// The cubic convolution kernel with coefficient `a` at distance `x`.
fn cubic(a: f64, x: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// The antialiased taps (downsampling by `scale` < 1 stretches the kernel by `1/scale`),
/// normalized to sum 1: tap `k` is at distance `i_start + k − r` from the coordinate.
fn antialiased(a: &ResizeAttrs, r: f64, scale: f64) -> Vec<f64> {
    let s = scale.min(1.0);
    let reach = if a.mode == ResizeMode::Cubic { 2.0 } else { 1.0 };
    let start = (-reach / s).floor() as i64 + 1;
    let taps: Vec<f64> = (start..2 - start)
        .map(|i| {
            let d = s * (i as f64 - r);
            match a.mode {
                ResizeMode::Cubic => cubic(a.cubic_a as f64, d),
                _ => (1.0 - d.abs()).clamp(0.0, 1.0),
            }
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / sum).collect()
}

/// The tap weights for the fraction `r` in `(0, 1]` of a coordinate past its left neighbour.
fn coeffs(a: &ResizeAttrs, r: f64, scale: f64) -> Vec<f64> {
    if a.antialias && a.mode != ResizeMode::Nearest {
        return antialiased(a, r, scale);
    }
    match a.mode {
        ResizeMode::Nearest => {
            let right = match (r == 1.0, a.nearest) {
                (true, _) | (false, NearestMode::Ceil) => true,
                (false, NearestMode::RoundPreferFloor) => r > 0.5,
                (false, NearestMode::RoundPreferCeil) => r >= 0.5,
                (false, NearestMode::Floor) => false,
            };
            if right {
                vec![0.0, 1.0]
            } else {
                vec![1.0, 0.0]
            }
        }
        ResizeMode::Linear => vec![1.0 - r, r],
        ResizeMode::Cubic => {
            let a_ = a.cubic_a as f64;
            let far = |x: f64| ((a_ * x - 5.0 * a_) * x + 8.0 * a_) * x - 4.0 * a_;
            let near = |x: f64| ((a_ + 2.0) * x - (a_ + 3.0)) * x * x + 1.0;
            vec![far(r + 1.0), near(r), near(1.0 - r), far(2.0 - r)]
        }
    }
}

/// Per output index along one axis: the input indices and weights, or `None` where the output
/// takes the extrapolation value.
pub type Taps = Vec<Option<Vec<(usize, f64)>>>;

fn axis_taps(a: &ResizeAttrs, scale: f64, len_in: usize, len_out: usize, roi: (f64, f64)) -> Taps {
    (0..len_out)
        .map(|y| {
            let x = source_coord(a, y as f64, scale, len_in, len_out, roi);
            if a.coord == CoordMode::TfCropAndResize && (x < 0.0 || x > len_in as f64 - 1.0) {
                return None;
            }
            let fl = x.floor();
            // The left neighbour is strictly left of x: an integer x has ratio 1.
            let (base, r) = if x == fl { (fl as i64 - 1, 1.0) } else { (fl as i64, x - fl) };
            let mut w = coeffs(a, r, scale);
            let first = base - w.len() as i64 / 2 + 1;
            let idx: Vec<i64> = (0..w.len() as i64).map(|k| first + k).collect();
            if a.exclude_outside {
                for (k, &i) in idx.iter().enumerate() {
                    if i < 0 || i >= len_in as i64 {
                        w[k] = 0.0;
                    }
                }
                let sum: f64 = w.iter().sum();
                let sum = if sum == 0.0 { 1.0 } else { sum };
                w.iter_mut().for_each(|v| *v /= sum);
            }
            let hi = len_in as i64 - 1;
            Some(idx.into_iter().zip(w).map(|(i, w)| (i.clamp(0, hi) as usize, w)).collect())
        })
        .collect()
}

/// Resizes `x` (shape `shape`, row-major) along `axis` to `len_out` with the given taps.
fn along_axis(x: &[f64], shape: &mut [usize], axis: usize, taps: &Taps, extra: f64) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let (len_in, len_out) = (shape[axis], taps.len());
    let mut y = vec![0.0; outer * len_out * inner];
    for o in 0..outer {
        for (k, t) in taps.iter().enumerate() {
            let dst = &mut y[(o * len_out + k) * inner..(o * len_out + k + 1) * inner];
            match t {
                None => dst.fill(extra),
                Some(t) => {
                    for &(i, w) in t {
                        let src = &x[(o * len_in + i) * inner..(o * len_in + i + 1) * inner];
                        dst.iter_mut().zip(src).for_each(|(d, s)| *d += w * s);
                    }
                }
            }
        }
    }
    shape[axis] = len_out;
    y
}

/// The axes Resize `a` changes in an input of shape `shape`, in order, each with its taps: the
/// one coordinate computation of the float Resize, shared with the integer program's `resize`
/// step (`cimc_backends`' lowering rounds these weights to fixed point). An axis left as it is
/// (scale 1, same length, whole region) is not listed.
pub fn resize_axes(a: &ResizeAttrs, shape: &[usize]) -> Result<Vec<(usize, Taps)>> {
    let r = shape.len();
    if a.sizes.len() != r || !(a.scales.is_empty() || a.scales.len() == r) {
        return Err(bad(format!("resize to {:?} (scales {:?}) of rank {r}", a.sizes, a.scales)));
    }
    if !(a.roi.is_empty() || a.roi.len() == 2 * r) {
        return Err(bad(format!("resize with {} roi values for rank {r}", a.roi.len())));
    }
    let mut axes = Vec::new();
    for axis in 0..r {
        let (len_in, len_out) = (shape[axis], a.sizes[axis]);
        let scale = match a.scales.get(axis) {
            Some(&s) => s as f64,
            None if len_in == 0 => 1.0,
            None => len_out as f64 / len_in as f64,
        };
        let roi = if a.roi.is_empty() {
            (0.0, 1.0)
        } else {
            (a.roi[axis] as f64, a.roi[r + axis] as f64)
        };
        let identity = (scale - 1.0).abs() < 1e-9 && len_in == len_out && roi == (0.0, 1.0);
        if identity || len_in == 0 {
            continue;
        }
        axes.push((axis, axis_taps(a, scale, len_in, len_out, roi)));
    }
    Ok(axes)
}

/// Resize in f64. Integer inputs (the element numbers `lower` gathers by, ONNX's integer
/// Resize) are computed exactly in f64 (integers to 2^53) and rounded back to their dtype.
pub(crate) fn resize(a: &ResizeAttrs, t: &Tensor) -> Result<Tensor> {
    let mut shape = t.shape().to_vec();
    let integer = t.dtype().is_int();
    let mut x = if integer { t.to_f64_vec() } else { floats_of(t, "Resize")? };
    for (axis, taps) in resize_axes(a, &shape)? {
        x = along_axis(&x, &mut shape, axis, &taps, a.extrapolation as f64);
    }
    if integer {
        let rounded = Tensor::F64(super::array(&a.sizes, x.into_iter().map(f64::round).collect()));
        return Ok(super::cast::cast(&rounded, t.dtype()));
    }
    Ok(float_like(t, &a.sizes, x))
}
