//! Data movement: Concat, Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Dropout, Pad,
//! Gather, Slice. All dtypes.
//!
//! The reshaping ops take an owned tensor and reuse its buffer when it is contiguous.

use super::num::Elem;
use super::{arity, array, bad, data_of, same_dtype};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::PadMode;
use ndarray::{ArrayD, Axis, IxDyn, Slice};

/// Applies `$body` (an expression producing an array of the same element type) to the array
/// inside an owned tensor, rewrapping it in the same variant.
macro_rules! map_array {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            Tensor::F32($a) => Tensor::F32($body),
            Tensor::F64($a) => Tensor::F64($body),
            Tensor::I8($a) => Tensor::I8($body),
            Tensor::U8($a) => Tensor::U8($body),
            Tensor::I16($a) => Tensor::I16($body),
            Tensor::U16($a) => Tensor::U16($body),
            Tensor::I32($a) => Tensor::I32($body),
            Tensor::I64($a) => Tensor::I64($body),
            Tensor::Bool($a) => Tensor::Bool($body),
        }
    };
}

/// Calls a generic function with `T` the element type of the tensor.
macro_rules! dispatch_elem {
    ($t:expr, $T:ident => $body:expr) => {
        match $t {
            Tensor::F32(_) => {
                type $T = f32;
                $body
            }
            Tensor::F64(_) => {
                type $T = f64;
                $body
            }
            Tensor::I8(_) => {
                type $T = i8;
                $body
            }
            Tensor::U8(_) => {
                type $T = u8;
                $body
            }
            Tensor::I16(_) => {
                type $T = i16;
                $body
            }
            Tensor::U16(_) => {
                type $T = u16;
                $body
            }
            Tensor::I32(_) => {
                type $T = i32;
                $body
            }
            Tensor::I64(_) => {
                type $T = i64;
                $body
            }
            Tensor::Bool(_) => {
                type $T = bool;
                $body
            }
        }
    };
}

/// A tensor of the same data with a new shape of the same element count.
pub(crate) fn reshape(shape: &[usize], t: Tensor) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    if n != t.numel() {
        return Err(bad(format!("cannot reshape {} to {shape:?}", t.type_string())));
    }
    fn go<T: Clone>(a: ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
        let a = super::activation::standard(a);
        a.into_shape_with_order(IxDyn(shape)).expect("invariant: element counts checked equal")
    }
    Ok(map_array!(t, a => go(a, shape)))
}

/// Flatten to `[prod(dims[..axis]), prod(dims[axis..])]`.
pub(crate) fn flatten(axis: usize, t: Tensor) -> Result<Tensor> {
    let s = t.shape();
    if axis > s.len() {
        return Err(bad(format!("axis {axis} out of range for rank {}", s.len())));
    }
    let shape = [s[..axis].iter().product(), s[axis..].iter().product()];
    reshape(&shape, t)
}

/// Removes the given size-1 axes (sorted, non-negative).
pub(crate) fn squeeze(axes: &[usize], t: Tensor) -> Result<Tensor> {
    let s = t.shape();
    let mut shape = Vec::with_capacity(s.len());
    for (i, &d) in s.iter().enumerate() {
        if axes.contains(&i) {
            if d != 1 {
                return Err(bad(format!("cannot squeeze axis {i} of size {d} in {s:?}")));
            }
        } else {
            shape.push(d);
        }
    }
    if let Some(&a) = axes.iter().find(|&&a| a >= s.len()) {
        return Err(bad(format!("axis {a} out of range for rank {}", s.len())));
    }
    reshape(&shape, t)
}

/// Inserts size-1 axes at the given output positions (sorted, non-negative).
pub(crate) fn unsqueeze(axes: &[usize], t: Tensor) -> Result<Tensor> {
    let s = t.shape();
    let rank = s.len() + axes.len();
    let mut shape = Vec::with_capacity(rank);
    let mut it = s.iter();
    for i in 0..rank {
        if axes.contains(&i) {
            shape.push(1);
        } else {
            match it.next() {
                Some(&d) => shape.push(d),
                None => return Err(bad(format!("axes {axes:?} do not fit rank {}", s.len()))),
            }
        }
    }
    reshape(&shape, t)
}

/// Dropout in inference: y = x, and the mask (all true) when asked for.
pub(crate) fn dropout(t: Tensor, n_outputs: usize) -> Result<Vec<Tensor>> {
    if n_outputs >= 2 {
        let mask = Tensor::Bool(ArrayD::from_elem(IxDyn(t.shape()), true));
        return Ok(vec![t, mask]);
    }
    Ok(vec![t])
}

/// Permutes the axes (a copy in standard layout).
pub(crate) fn transpose(perm: &[usize], t: &Tensor) -> Result<Tensor> {
    let r = t.rank();
    let mut seen = vec![false; r];
    if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
        return Err(bad(format!("perm {perm:?} is not a permutation of rank {r}")));
    }
    Ok(map_array!(t, a => a.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned()))
}

/// Concatenation along `axis`; every input has the same dtype and rank and equal other dims.
pub(crate) fn concat(axis: usize, inputs: &[&Tensor]) -> Result<Tensor> {
    if inputs.is_empty() {
        return Err(bad("expects at least 1 input"));
    }
    same_dtype(inputs)?;
    let s0 = inputs[0].shape();
    if axis >= s0.len() {
        return Err(bad(format!("axis {axis} out of range for rank {}", s0.len())));
    }
    for t in inputs {
        let s = t.shape();
        if s.len() != s0.len() || (0..s.len()).any(|i| i != axis && s[i] != s0[i]) {
            return Err(bad(format!("cannot concatenate {s0:?} and {s:?} on axis {axis}")));
        }
    }
    fn go<T: Elem>(axis: usize, inputs: &[&Tensor]) -> Tensor {
        let views: Vec<_> = inputs
            .iter()
            .map(|t| T::view(t).expect("invariant: dtypes checked equal").view())
            .collect();
        let joined = ndarray::concatenate(Axis(axis), &views).expect("invariant: shapes checked");
        // Along an inner axis ndarray returns a strided array; every reader expects the
        // standard (row-major) layout a tensor has everywhere else.
        T::wrap(if joined.is_standard_layout() {
            joined
        } else {
            joined.as_standard_layout().into_owned()
        })
    }
    Ok(dispatch_elem!(inputs[0], T => go::<T>(axis, inputs)))
}

/// Indices of an i32/i64 tensor as i64.
fn indices(t: &Tensor) -> Result<Vec<i64>> {
    match t {
        Tensor::I64(a) => Ok(data_of(a).into_owned()),
        Tensor::I32(a) => Ok(a.iter().map(|&v| v as i64).collect()),
        t => Err(bad(format!("indices must be i32 or i64, got {}", t.dtype()))),
    }
}

/// Gather along `axis` with indices of any shape (negative ones count from the end).
pub(crate) fn gather(axis: usize, data: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let ds = data.shape();
    if axis >= ds.len() {
        return Err(bad(format!("axis {axis} out of range for rank {}", ds.len())));
    }
    let n = ds[axis] as i64;
    let ix = indices(idx)?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n {
                Err(bad(format!("index {i} out of range for axis {axis} of size {n}")))
            } else {
                Ok(j as usize)
            }
        })
        .collect::<Result<Vec<usize>>>()?;
    let out_shape = [&ds[..axis], idx.shape(), &ds[axis + 1..]].concat();
    let outer: usize = ds[..axis].iter().product();
    let inner: usize = ds[axis + 1..].iter().product();
    fn go<T: Elem>(
        a: &ArrayD<T>,
        ix: &[usize],
        outer: usize,
        inner: usize,
        out_shape: &[usize],
    ) -> Tensor {
        let d = data_of(a);
        let n = a.shape().iter().product::<usize>() / (outer * inner).max(1);
        let mut out = Vec::with_capacity(outer * ix.len() * inner);
        for o in 0..outer {
            for &i in ix {
                let s = (o * n + i) * inner;
                out.extend_from_slice(&d[s..s + inner]);
            }
        }
        T::wrap(array(out_shape, out))
    }
    Ok(
        dispatch_elem!(data, T => go::<T>(T::view(data).expect("invariant: dispatched on dtype"), &ix, outer, inner, &out_shape)),
    )
}

/// Slice with normalized per-axis entries (start/end clamped for the step's direction).
pub(crate) fn slice(axes: &[cimc_ir::SliceAxis], t: &Tensor) -> Result<Tensor> {
    let s = t.shape().to_vec();
    let mut out = t.clone();
    for ax in axes {
        if ax.axis >= s.len() || ax.step == 0 {
            return Err(bad(format!(
                "bad slice axis {} (step {}) for rank {}",
                ax.axis,
                ax.step,
                s.len()
            )));
        }
        let dim = s[ax.axis] as i64;
        let len = if ax.step > 0 {
            ((ax.end - ax.start).max(0) as u64).div_ceil(ax.step as u64)
        } else {
            ((ax.start - ax.end).max(0) as u64).div_ceil((-ax.step) as u64)
        } as i64;
        let idx: Vec<usize> =
            (0..len).map(|i| ax.start + i * ax.step).map(|i| i as usize).collect();
        if len > 0
            && (ax.start < 0
                || ax.start >= dim
                || (ax.start + (len - 1) * ax.step) < 0
                || (ax.start + (len - 1) * ax.step) >= dim)
        {
            return Err(bad(format!(
                "slice {}..{} step {} is out of range for axis {} of size {dim}",
                ax.start, ax.end, ax.step, ax.axis
            )));
        }
        out = map_array!(out, a => a.select(Axis(ax.axis), &idx));
    }
    Ok(out)
}

/// Pad: `pads` = `[begin.., end..]` over every axis; negative entries crop first, then the
/// positive ones pad with `mode` (constant value: the optional scalar input, default 0).
pub(crate) fn pad(mode: PadMode, pads: &[i64], inputs: &[&Tensor]) -> Result<Tensor> {
    arity(inputs, 1, 4)?;
    let t = inputs[0];
    let r = t.rank();
    if pads.len() != 2 * r {
        return Err(bad(format!("{} pads for rank {r}", pads.len())));
    }
    let value = inputs.get(1).filter(|v| v.numel() > 0);
    if let Some(v) = value {
        if v.dtype() != t.dtype() || v.numel() != 1 {
            return Err(bad(format!(
                "constant value {} must be a scalar of {}",
                v.type_string(),
                t.dtype()
            )));
        }
    }
    // Crop.
    let mut x = t.clone();
    for d in 0..r {
        let (b, e) = ((-pads[d]).max(0) as usize, (-pads[r + d]).max(0) as usize);
        if b + e > 0 {
            let n = x.shape()[d];
            if b + e > n {
                return Err(bad(format!("negative pads crop more than axis {d} of size {n}")));
            }
            x = map_array!(x, a => a.slice_axis(Axis(d), Slice::from(b..n - e)).to_owned());
        }
    }
    let (pb, pe): (Vec<usize>, Vec<usize>) =
        (0..r).map(|d| (pads[d].max(0) as usize, pads[r + d].max(0) as usize)).unzip();
    if mode == PadMode::Constant {
        fn go<T: Elem>(a: &ArrayD<T>, fill: T, pb: &[usize], pe: &[usize]) -> ArrayD<T> {
            let shape: Vec<usize> = (0..pb.len()).map(|d| a.shape()[d] + pb[d] + pe[d]).collect();
            let mut out = ArrayD::from_elem(IxDyn(&shape), fill);
            let mut view = out.view_mut();
            for d in 0..pb.len() {
                view.slice_axis_inplace(Axis(d), Slice::from(pb[d]..pb[d] + a.shape()[d]));
            }
            view.assign(a);
            out
        }
        return Ok(dispatch_elem!(&x, T => {
            let fill = value.and_then(|v| T::view(v)).and_then(|v| v.iter().next().copied()).unwrap_or_default();
            T::wrap(go::<T>(T::view(&x).expect("invariant: dispatched on dtype"), fill, &pb, &pe))
        }));
    }
    for d in 0..r {
        if pb[d] + pe[d] == 0 {
            continue;
        }
        let n = x.shape()[d];
        if n == 0 {
            return Err(bad(format!("cannot {} pad the empty axis {d}", mode.name())));
        }
        let idx: Vec<usize> =
            (-(pb[d] as i64)..(n + pe[d]) as i64).map(|i| src_index(mode, i, n)).collect();
        x = map_array!(x, a => a.select(Axis(d), &idx));
    }
    Ok(x)
}

/// The source index of padded position `i` (may be outside `[0, n)`) on an axis of size `n`.
fn src_index(mode: PadMode, i: i64, n: usize) -> usize {
    let n = n as i64;
    let j = match mode {
        PadMode::Edge | PadMode::Constant => i.clamp(0, n - 1),
        PadMode::Wrap => i.rem_euclid(n),
        PadMode::Reflect => {
            if n == 1 {
                0
            } else {
                // numpy's reflect: period 2(n-1), mirrored without repeating the edge.
                let p = 2 * (n - 1);
                let k = i.rem_euclid(p);
                if k < n {
                    k
                } else {
                    p - k
                }
            }
        }
    };
    j as usize
}
