//! Inference of the data-movement, resampling, normalization and recurrent ops of issue 19
//! (Expand, Tile, Split, DepthToSpace, SpaceToDepth, Resize, LogSoftmax, LRN,
//! InstanceNormalization, LayerNormalization, ConvTranspose, LSTM, GRU, RNN).

use super::{broadcast, float_input, same_dtype, show, window_attrs, R};
use crate::{ConvAttrs, RecurrentAttrs, ResizeAttrs, TensorType};

pub(super) fn expand(x: &TensorType, shape: &[usize]) -> R<TensorType> {
    if broadcast(&x.shape, shape).as_deref() != Some(shape) {
        return Err(format!("{} does not broadcast to the output shape {shape:?}", show(x)));
    }
    Ok(TensorType::new(x.dtype, shape.to_vec()))
}

pub(super) fn tile(x: &TensorType, repeats: &[usize]) -> R<TensorType> {
    if repeats.len() != x.rank() {
        return Err(format!("{} repeats for {}", repeats.len(), show(x)));
    }
    let shape = x
        .shape
        .iter()
        .zip(repeats)
        .map(|(&d, &r)| d.checked_mul(r).ok_or("the tiled size overflows"))
        .collect::<Result<Vec<usize>, _>>()?;
    Ok(TensorType::new(x.dtype, shape))
}

pub(super) fn split(
    x: &TensorType,
    axis: usize,
    sizes: &[usize],
    n_outputs: usize,
) -> R<Vec<TensorType>> {
    if axis >= x.rank() {
        return Err(format!("axis {axis} out of range for {}", show(x)));
    }
    if sizes.len() != n_outputs {
        return Err(format!("{} split sizes {sizes:?} for {n_outputs} outputs", sizes.len()));
    }
    if sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s)) != Some(x.shape[axis]) {
        return Err(format!(
            "split sizes {sizes:?} do not sum to the size of axis {axis} of {}",
            show(x)
        ));
    }
    Ok(sizes
        .iter()
        .map(|&s| {
            let mut shape = x.shape.clone();
            shape[axis] = s;
            TensorType::new(x.dtype, shape)
        })
        .collect())
}

fn nchw(x: &TensorType, block: usize) -> R<[usize; 4]> {
    if block == 0 {
        return Err("blocksize must be >= 1".into());
    }
    match x.shape[..] {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(format!("expected a 4-D input [N,C,H,W], got {}", show(x))),
    }
}

pub(super) fn depth_to_space(x: &TensorType, block: usize) -> R<TensorType> {
    let [n, c, h, w] = nchw(x, block)?;
    let bb = block.checked_mul(block).ok_or("blocksize overflows")?;
    if c % bb != 0 {
        return Err(format!("channels of {} are not divisible by blocksize² {bb}", show(x)));
    }
    let (h, w) = (h.checked_mul(block), w.checked_mul(block));
    let (h, w) = h.zip(w).ok_or("the output size overflows")?;
    Ok(TensorType::new(x.dtype, vec![n, c / bb, h, w]))
}

pub(super) fn space_to_depth(x: &TensorType, block: usize) -> R<TensorType> {
    let [n, c, h, w] = nchw(x, block)?;
    if h % block != 0 || w % block != 0 {
        return Err(format!("H and W of {} are not divisible by blocksize {block}", show(x)));
    }
    let c = c.checked_mul(block * block).ok_or("the output size overflows")?;
    Ok(TensorType::new(x.dtype, vec![n, c, h / block, w / block]))
}

pub(super) fn resize(x: &TensorType, a: &ResizeAttrs) -> R<TensorType> {
    float_input(x, "input")?;
    let r = x.rank();
    if !(a.scales.is_empty() || a.scales.len() == r) || a.sizes.len() != r {
        return Err(format!(
            "expected {r} sizes and {r} scales (or none) for {}, got {:?} and {:?}",
            show(x),
            a.scales,
            a.sizes
        ));
    }
    if a.scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(format!("scales {:?} must be finite and > 0", a.scales));
    }
    if !(a.roi.is_empty() || a.roi.len() == 2 * r) {
        return Err(format!("roi {:?} must be empty or have {} entries", a.roi, 2 * r));
    }
    if x.shape.iter().zip(&a.sizes).any(|(&i, &o)| i == 0 && o > 0) {
        return Err(format!("cannot resize the empty axes of {}", show(x)));
    }
    Ok(TensorType::new(x.dtype, a.sizes.clone()))
}

pub(super) fn lrn(x: &TensorType, size: usize) -> R<TensorType> {
    float_input(x, "input")?;
    if x.rank() < 3 {
        return Err(format!("expected an input [N,C,D..] of rank >= 3, got {}", show(x)));
    }
    if size == 0 {
        return Err("size must be >= 1".into());
    }
    Ok(TensorType::new(x.dtype, x.shape.clone()))
}

pub(super) fn instance_norm(epsilon: f32, inputs: &[&TensorType]) -> R<TensorType> {
    if !epsilon.is_finite() || epsilon < 0.0 {
        return Err(format!("epsilon must be finite and >= 0, got {epsilon}"));
    }
    let x = inputs[0];
    float_input(x, "input")?;
    if x.rank() < 3 {
        return Err(format!("expected an input [N,C,D..] of rank >= 3, got {}", show(x)));
    }
    let c = x.shape[1];
    for (t, what) in inputs[1..].iter().zip(["scale", "bias"]) {
        same_dtype(x, t, what)?;
        if t.shape != [c] {
            return Err(format!("expected {what} [{c}] for {c} channels, got {}", show(t)));
        }
    }
    Ok(TensorType::new(x.dtype, x.shape.clone()))
}

/// LayerNorm: x of rank > `axis`; scale and optional bias of x's dtype, each broadcast
/// (numpy rules) to x's dims from `axis` on.
pub(super) fn layer_norm(axis: usize, epsilon: f32, inputs: &[&TensorType]) -> R<TensorType> {
    if !epsilon.is_finite() || epsilon < 0.0 {
        return Err(format!("epsilon must be finite and >= 0, got {epsilon}"));
    }
    let x = inputs[0];
    float_input(x, "input")?;
    if axis >= x.rank() {
        return Err(format!("axis {axis} out of range for input {}", show(x)));
    }
    let normalized = &x.shape[axis..];
    for (t, what) in inputs[1..].iter().zip(["scale", "bias"]) {
        same_dtype(x, t, what)?;
        let fits = t.rank() <= normalized.len()
            && t.shape.iter().rev().zip(normalized.iter().rev()).all(|(&a, &b)| a == b || a == 1);
        if !fits {
            return Err(format!(
                "expected {what} broadcastable to the normalized dims {normalized:?}, got {}",
                show(t)
            ));
        }
    }
    Ok(TensorType::new(x.dtype, x.shape.clone()))
}

/// ConvTranspose: `out = stride·(in − 1) + output_padding + dilation·(k − 1) + 1 − pads`.
pub(super) fn conv_transpose(
    a: &ConvAttrs,
    output_padding: &[usize],
    inputs: &[&TensorType],
) -> R<TensorType> {
    let (x, w) = (inputs[0], inputs[1]);
    let n = a.kernel.len();
    window_attrs(n, &a.strides, &a.dilations, &a.pads)?;
    if n == 0 || output_padding.len() != n {
        return Err(format!(
            "a kernel of {n} dims needs {n} output_padding, got {output_padding:?}"
        ));
    }
    float_input(x, "input")?;
    same_dtype(x, w, "weight")?;
    if x.rank() != n + 2 || w.rank() != n + 2 || w.shape[2..] != a.kernel[..] {
        return Err(format!(
            "expected input [N,C,D..] and weight [C,M/group,K..] of rank {} with kernel {:?}, \
             got {} and {}",
            n + 2,
            a.kernel,
            show(x),
            show(w)
        ));
    }
    if a.group == 0 || w.shape[0] != x.shape[1] || x.shape[1] % a.group != 0 {
        return Err(format!(
            "channels of {} must equal the weight's first dim {} and be divisible by group {}",
            show(x),
            show(w),
            a.group
        ));
    }
    let m = w.shape[1].checked_mul(a.group).ok_or("channels overflow")?;
    if let Some(b) = inputs.get(2) {
        same_dtype(x, b, "bias")?;
        if b.shape != [m] {
            return Err(format!("expected bias [{m}], got {}", show(b)));
        }
    }
    let mut shape = vec![x.shape[0], m];
    for i in 0..n {
        let full = (x.shape[2 + i].max(1) as u128 - 1) * a.strides[i] as u128
            + output_padding[i] as u128
            + a.dilations[i] as u128 * (a.kernel[i].max(1) as u128 - 1)
            + 1;
        let crop = a.pads[i] as u128 + a.pads[n + i] as u128;
        if x.shape[2 + i] == 0 || a.kernel[i] == 0 || crop >= full || full > usize::MAX as u128 {
            return Err(format!(
                "spatial dim {i} of {}: pads {:?} leave no output (kernel {:?})",
                show(x),
                a.pads,
                a.kernel
            ));
        }
        shape.push((full - crop) as usize);
    }
    Ok(TensorType::new(x.dtype, shape))
}

/// LSTM (4 gates), GRU (3) and RNN (1): y `[seq, dirs, batch, H]`, y_h (and y_c)
/// `[dirs, batch, H]` (batch-first: `[batch, seq, dirs, H]` and `[batch, dirs, H]`).
pub(super) fn recurrent(
    a: &RecurrentAttrs,
    gates: usize,
    n_acts: usize,
    inputs: &[&TensorType],
    n_outputs: usize,
) -> R<Vec<TensorType>> {
    let x = inputs[0];
    float_input(x, "input")?;
    let (dirs, h) = (a.num_directions(), a.hidden);
    let [seq, batch, i] = match x.shape[..] {
        [s, b, i] if !a.batch_first => [s, b, i],
        [b, s, i] => [s, b, i],
        _ => return Err(format!("expected a 3-D input X, got {}", show(x))),
    };
    let gh = gates * h;
    let state = if a.batch_first { vec![batch, dirs, h] } else { vec![dirs, batch, h] };
    let mut want: Vec<(&str, Vec<usize>)> = vec![
        ("W", vec![dirs, gh, i]),
        ("R", vec![dirs, gh, h]),
        ("B", vec![dirs, 2 * gh]),
        ("initial_h", state.clone()),
    ];
    if gates == 4 {
        want.push(("initial_c", state.clone()));
        want.push(("P", vec![dirs, 3 * h]));
    }
    for (t, (what, shape)) in inputs[1..].iter().zip(&want) {
        same_dtype(x, t, what)?;
        if t.shape != *shape {
            return Err(format!("expected {what} {shape:?}, got {}", show(t)));
        }
    }
    let n = dirs * n_acts;
    if a.activations.len() != n || a.alphas.len() != n || a.betas.len() != n {
        return Err(format!(
            "expected {n} activations, alphas and betas ({n_acts} per direction), got {}, {} and {}",
            a.activations.len(),
            a.alphas.len(),
            a.betas.len()
        ));
    }
    let y = if a.batch_first { vec![batch, seq, dirs, h] } else { vec![seq, dirs, batch, h] };
    let mut out = vec![TensorType::new(x.dtype, y)];
    out.extend((1..n_outputs).map(|_| TensorType::new(x.dtype, state.clone())));
    Ok(out)
}

/// ZeroInsert: each spatial axis `s·(d − 1) + 1 + begin + end` long.
pub(super) fn zero_insert(x: &TensorType, strides: &[usize], pads: &[i64]) -> R<TensorType> {
    let n = strides.len();
    if x.rank() != n + 2 || pads.len() != 2 * n || strides.contains(&0) {
        return Err(format!(
            "zero_insert with strides {strides:?} and pads {pads:?} of {}",
            show(x)
        ));
    }
    let mut shape = x.shape.clone();
    for i in 0..n {
        let d = x.shape[2 + i] as i64;
        let len = if d == 0 { 0 } else { strides[i] as i64 * (d - 1) + 1 + pads[i] + pads[n + i] };
        if len < 1 && d > 0 {
            return Err(format!("zero_insert crops axis {} of {} to nothing", 2 + i, show(x)));
        }
        shape[2 + i] = len.max(0) as usize;
    }
    Ok(TensorType::new(x.dtype, shape))
}
