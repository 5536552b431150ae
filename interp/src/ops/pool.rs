//! MaxPool (with the optional Indices output), AveragePool and GlobalAveragePool, N-d.
//!
//! The window of every output position is precomputed once per call as a list of in-plane
//! input offsets (only the taps inside the input), shared by all `N*C` planes, which run in
//! parallel. Output sizes follow ONNX: floor, or with `ceil_mode` ceil minus a last window that
//! would start in the end padding. AveragePool divides by the number of taps inside the input,
//! or with `count_include_pad` by the taps inside the padded input (never past it).

use super::num::{Elem, Float};
use super::{arity, array, bad, data_of, unsupported, PAR_MIN};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::PoolAttrs;
use ndarray::ArrayD;
use rayon::prelude::*;

/// The output spatial shape of a pool over input spatial shape `ins`.
pub(crate) fn pool_out_shape(a: &PoolAttrs, ins: &[usize]) -> Result<Vec<usize>> {
    let n = ins.len();
    if a.kernel.len() != n
        || a.strides.len() != n
        || a.dilations.len() != n
        || a.pads.len() != 2 * n
    {
        return Err(bad(format!(
            "attributes do not fit {n} spatial dims: kernel {:?}, strides {:?}, dilations {:?}, pads {:?}",
            a.kernel, a.strides, a.dilations, a.pads
        )));
    }
    if a.strides.contains(&0) || a.dilations.contains(&0) || a.kernel.contains(&0) {
        return Err(bad("kernel, strides and dilations must be >= 1"));
    }
    (0..n)
        .map(|d| {
            let span = (a.kernel[d] - 1) * a.dilations[d] + 1;
            let padded = ins[d] + a.pads[d] + a.pads[n + d];
            if padded < span {
                return Err(bad(format!("spatial dim {d}: padded input {padded} < window {span}")));
            }
            let s = a.strides[d];
            if !a.ceil_mode {
                return Ok((padded - span) / s + 1);
            }
            let mut o = (padded - span).div_ceil(s) + 1;
            if (o - 1) * s >= ins[d] + a.pads[d] {
                o -= 1;
            }
            Ok(o)
        })
        .collect()
}

/// Precomputed windows: for output position `j`, the in-plane offsets of its taps inside the
/// input are `offs[start[j]..start[j + 1]]`, and `padded_count[j]` counts its taps inside the
/// padded input.
pub(crate) struct Windows {
    pub(crate) offs: Vec<usize>,
    pub(crate) start: Vec<usize>,
    pub(crate) padded_count: Vec<usize>,
}

pub(crate) fn windows(a: &PoolAttrs, ins: &[usize], outs: &[usize]) -> Windows {
    let n = ins.len();
    // Per dim and output index: valid input coordinates, and taps inside the padded input.
    let per_dim: Vec<Vec<(Vec<usize>, usize)>> = (0..n)
        .map(|d| {
            (0..outs[d])
                .map(|o| {
                    let mut valid = Vec::with_capacity(a.kernel[d]);
                    let mut padded = 0;
                    for k in 0..a.kernel[d] {
                        let i = (o * a.strides[d] + k * a.dilations[d]) as i64 - a.pads[d] as i64;
                        if i < (ins[d] + a.pads[n + d]) as i64 {
                            padded += 1;
                        }
                        if i >= 0 && i < ins[d] as i64 {
                            valid.push(i as usize);
                        }
                    }
                    (valid, padded)
                })
                .collect()
        })
        .collect();
    let mut istr = vec![1usize; n];
    for d in (0..n.saturating_sub(1)).rev() {
        istr[d] = istr[d + 1] * ins[d + 1];
    }
    let total: usize = outs.iter().product();
    let mut w = Windows {
        offs: Vec::new(),
        start: Vec::with_capacity(total + 1),
        padded_count: Vec::with_capacity(total),
    };
    let mut oidx = vec![0usize; n];
    for _ in 0..total {
        w.start.push(w.offs.len());
        let lists: Vec<&Vec<usize>> = (0..n).map(|d| &per_dim[d][oidx[d]].0).collect();
        w.padded_count.push((0..n).map(|d| per_dim[d][oidx[d]].1).product());
        // Cartesian product of the per-dim coordinates, row-major (first dim outermost).
        if lists.iter().all(|l| !l.is_empty()) {
            let mut k = vec![0usize; n];
            'prod: loop {
                w.offs.push((0..n).map(|d| lists[d][k[d]] * istr[d]).sum());
                let mut d = n;
                loop {
                    if d == 0 {
                        break 'prod;
                    }
                    d -= 1;
                    k[d] += 1;
                    if k[d] < lists[d].len() {
                        break;
                    }
                    k[d] = 0;
                }
            }
        }
        for d in (0..n).rev() {
            oidx[d] += 1;
            if oidx[d] < outs[d] {
                break;
            }
            oidx[d] = 0;
        }
    }
    w.start.push(w.offs.len());
    w
}

/// Checks x `[N, C, D..]` and returns (planes, input plane size, output spatial shape).
pub(crate) fn geometry(a: &PoolAttrs, xs: &[usize]) -> Result<(usize, usize, Vec<usize>)> {
    if xs.len() < 3 {
        return Err(bad(format!("input must be [N, C, D..], got {xs:?}")));
    }
    let outs = pool_out_shape(a, &xs[2..])?;
    Ok((xs[0] * xs[1], xs[2..].iter().product(), outs))
}

/// MaxPool; with `n_outputs == 2` also the i64 indices of the maxima into the flattened input
/// (the spatial part column-major when `storage_order == 1`).
pub(crate) fn max_pool(a: &PoolAttrs, inputs: &[&Tensor], n_outputs: usize) -> Result<Vec<Tensor>> {
    arity(inputs, 1, 1)?;
    let xs = inputs[0].shape().to_vec();
    let (planes, plane, outs) = geometry(a, &xs)?;
    let out_shape = [&xs[..2], &outs[..]].concat();
    if n_outputs < 2 && xs.len() == 4 {
        if let Some(t) = max_pool_2d_separable(a, inputs[0], &xs, &outs) {
            return Ok(vec![t]);
        }
    }
    let win = windows(a, &xs[2..], &outs);
    let p: usize = outs.iter().product();
    fn go<T: Elem>(
        x: &ArrayD<T>,
        win: &Windows,
        planes: usize,
        plane: usize,
        p: usize,
    ) -> (Vec<T>, Vec<i64>) {
        let xd = data_of(x);
        let mut y = vec![T::default(); planes * p];
        let mut arg = vec![-1i64; planes * p];
        let one = |(pi, (yo, ao)): (usize, (&mut [T], &mut [i64]))| {
            let xp = &xd[pi * plane..(pi + 1) * plane];
            for j in 0..p {
                let taps = &win.offs[win.start[j]..win.start[j + 1]];
                if let Some((&first, rest)) = taps.split_first() {
                    let (mut best, mut at) = (xp[first], first);
                    for &o in rest {
                        if xp[o] > best {
                            best = xp[o];
                            at = o;
                        }
                    }
                    yo[j] = best;
                    ao[j] = at as i64;
                }
            }
        };
        if p == 0 {
            return (y, arg);
        }
        if planes * win.offs.len() >= PAR_MIN {
            y.par_chunks_mut(p).zip(arg.par_chunks_mut(p)).enumerate().for_each(one);
        } else {
            y.chunks_mut(p).zip(arg.chunks_mut(p)).enumerate().for_each(one);
        }
        (y, arg)
    }
    let (y, arg) = match inputs[0] {
        Tensor::F32(x) => {
            let (y, i) = go(x, &win, planes, plane, p);
            (Tensor::F32(array(&out_shape, y)), i)
        }
        Tensor::F64(x) => {
            let (y, i) = go(x, &win, planes, plane, p);
            (Tensor::F64(array(&out_shape, y)), i)
        }
        Tensor::I8(x) => {
            let (y, i) = go(x, &win, planes, plane, p);
            (Tensor::I8(array(&out_shape, y)), i)
        }
        Tensor::U8(x) => {
            let (y, i) = go(x, &win, planes, plane, p);
            (Tensor::U8(array(&out_shape, y)), i)
        }
        Tensor::I16(x) => {
            let (y, i) = go(x, &win, planes, plane, p);
            (Tensor::I16(array(&out_shape, y)), i)
        }
        Tensor::U16(x) => {
            let (y, i) = go(x, &win, planes, plane, p);
            (Tensor::U16(array(&out_shape, y)), i)
        }
        Tensor::I32(x) => {
            let (y, i) = go(x, &win, planes, plane, p);
            (Tensor::I32(array(&out_shape, y)), i)
        }
        Tensor::I64(x) => {
            let (y, i) = go(x, &win, planes, plane, p);
            (Tensor::I64(array(&out_shape, y)), i)
        }
        Tensor::Bool(_) => return Err(unsupported("max_pool of bool tensors")),
    };
    if n_outputs < 2 {
        return Ok(vec![y]);
    }
    // In-plane row-major offsets to flat indices (plane offset added; column-major if asked).
    let ins = &xs[2..];
    let n = ins.len();
    let mut colstr = vec![1usize; n];
    for d in 1..n {
        colstr[d] = colstr[d - 1] * ins[d - 1];
    }
    let idx: Vec<i64> = arg
        .iter()
        .enumerate()
        .map(|(j, &o)| {
            if o < 0 {
                return -1;
            }
            let base = (j / p.max(1) * plane) as i64;
            if a.storage_order == 0 {
                return base + o;
            }
            let (mut rem, mut cm) = (o as usize, 0usize);
            for d in (0..n).rev() {
                cm += (rem % ins[d]) * colstr[d];
                rem /= ins[d];
            }
            base + cm as i64
        })
        .collect();
    Ok(vec![y, Tensor::I64(array(&out_shape, idx))])
}

/// The valid taps of every output position along one dim: `(first, count)` with taps
/// `first + i*dil` for `i < count`; `None` if some window has no tap inside the input.
fn taps_1d(
    out: usize,
    len: usize,
    k: usize,
    s: usize,
    dil: usize,
    pad: usize,
) -> Option<Vec<(usize, usize)>> {
    (0..out)
        .map(|o| {
            let valid: Vec<usize> = (0..k)
                .map(|j| (o * s + j * dil) as i64 - pad as i64)
                .filter(|&i| i >= 0 && i < len as i64)
                .map(|i| i as usize)
                .collect();
            valid.first().map(|&f| (f, valid.len()))
        })
        .collect()
}

/// 2-D MaxPool, separably: per output row, the max over the kernel's input rows (contiguous,
/// vectorized), then the max over the kernel's columns of that reduced row; `None` when some window has
/// no tap inside the input (the general path handles that).
fn max_pool_2d_separable(
    a: &PoolAttrs,
    x: &Tensor,
    xs: &[usize],
    outs: &[usize],
) -> Option<Tensor> {
    let (ih, iw, oh, ow) = (xs[2], xs[3], outs[0], outs[1]);
    let rows = taps_1d(oh, ih, a.kernel[0], a.strides[0], a.dilations[0], a.pads[0])?;
    let cols = taps_1d(ow, iw, a.kernel[1], a.strides[1], a.dilations[1], a.pads[1])?;
    let (dh, dw) = (a.dilations[0], a.dilations[1]);
    fn go<T: Elem>(
        x: &ArrayD<T>,
        xs: &[usize],
        outs: &[usize],
        rows: &[(usize, usize)],
        cols: &[(usize, usize)],
        dh: usize,
        dw: usize,
    ) -> ArrayD<T> {
        let (ih, iw, oh, ow) = (xs[2], xs[3], outs[0], outs[1]);
        let xd = data_of(x);
        let planes = xs[0] * xs[1];
        let mut y = vec![T::default(); planes * oh * ow];
        let one = |(pi, yo): (usize, &mut [T])| {
            let xp = &xd[pi * ih * iw..(pi + 1) * ih * iw];
            let mut tmp = vec![T::default(); iw];
            for (o, &(f, n)) in rows.iter().enumerate() {
                // Column pass first, over whole contiguous rows (vectorizes).
                tmp.copy_from_slice(&xp[f * iw..(f + 1) * iw]);
                for j in 1..n {
                    let src = &xp[(f + j * dh) * iw..(f + j * dh + 1) * iw];
                    // A select, not a conditional store, so that the loop vectorizes.
                    for (d, &v) in tmp.iter_mut().zip(src) {
                        *d = if v > *d { v } else { *d };
                    }
                }
                // Then the row pass on the reduced row.
                let dst = &mut yo[o * ow..(o + 1) * ow];
                for (d, &(f, n)) in dst.iter_mut().zip(cols) {
                    let mut m = tmp[f];
                    for j in 1..n {
                        let v = tmp[f + j * dw];
                        m = if v > m { v } else { m };
                    }
                    *d = m;
                }
            }
        };
        if oh * ow > 0 {
            if planes * ih * iw >= PAR_MIN {
                y.par_chunks_mut(oh * ow).enumerate().for_each(one);
            } else {
                y.chunks_mut(oh * ow).enumerate().for_each(one);
            }
        }
        array(&[xs[0], xs[1], oh, ow], y)
    }
    Some(match x {
        Tensor::F32(v) => Tensor::F32(go(v, xs, outs, &rows, &cols, dh, dw)),
        Tensor::F64(v) => Tensor::F64(go(v, xs, outs, &rows, &cols, dh, dw)),
        Tensor::I8(v) => Tensor::I8(go(v, xs, outs, &rows, &cols, dh, dw)),
        Tensor::U8(v) => Tensor::U8(go(v, xs, outs, &rows, &cols, dh, dw)),
        Tensor::I16(v) => Tensor::I16(go(v, xs, outs, &rows, &cols, dh, dw)),
        Tensor::U16(v) => Tensor::U16(go(v, xs, outs, &rows, &cols, dh, dw)),
        Tensor::I32(v) => Tensor::I32(go(v, xs, outs, &rows, &cols, dh, dw)),
        Tensor::I64(v) => Tensor::I64(go(v, xs, outs, &rows, &cols, dh, dw)),
        Tensor::Bool(_) => return None,
    })
}

/// AveragePool of a float tensor.
pub(crate) fn average_pool(a: &PoolAttrs, inputs: &[&Tensor]) -> Result<Tensor> {
    arity(inputs, 1, 1)?;
    let xs = inputs[0].shape().to_vec();
    let (planes, plane, outs) = geometry(a, &xs)?;
    let win = windows(a, &xs[2..], &outs);
    let p: usize = outs.iter().product();
    let out_shape = [&xs[..2], &outs[..]].concat();
    fn go<T: Float>(
        x: &ArrayD<T>,
        a: &PoolAttrs,
        win: &Windows,
        planes: usize,
        plane: usize,
        p: usize,
    ) -> Vec<T> {
        let xd = data_of(x);
        let mut y = vec![T::ZERO; planes * p];
        let one = |(pi, yo): (usize, &mut [T])| {
            let xp = &xd[pi * plane..(pi + 1) * plane];
            for j in 0..p {
                let taps = &win.offs[win.start[j]..win.start[j + 1]];
                let mut s = T::ZERO;
                for &o in taps {
                    s += xp[o];
                }
                let count = if a.count_include_pad { win.padded_count[j] } else { taps.len() };
                yo[j] = s / T::of(count as f64);
            }
        };
        if p == 0 {
            return y;
        }
        if planes * win.offs.len() >= PAR_MIN {
            y.par_chunks_mut(p).enumerate().for_each(one);
        } else {
            y.chunks_mut(p).enumerate().for_each(one);
        }
        y
    }
    Ok(match inputs[0] {
        Tensor::F32(x) => Tensor::F32(array(&out_shape, go(x, a, &win, planes, plane, p))),
        Tensor::F64(x) => Tensor::F64(array(&out_shape, go(x, a, &win, planes, plane, p))),
        t => return Err(unsupported(format!("average_pool of {} tensors", t.dtype()))),
    })
}

/// GlobalAveragePool: the mean of each `[N, C]` plane (accumulated in f64), shape `[N, C, 1..]`.
pub(crate) fn global_average_pool(inputs: &[&Tensor]) -> Result<Tensor> {
    arity(inputs, 1, 1)?;
    let xs = inputs[0].shape().to_vec();
    if xs.len() < 3 {
        return Err(bad(format!("input must be [N, C, D..], got {xs:?}")));
    }
    let planes = xs[0] * xs[1];
    let plane: usize = xs[2..].iter().product();
    let out_shape: Vec<usize> =
        xs.iter().enumerate().map(|(i, &d)| if i < 2 { d } else { 1 }).collect();
    fn go<T: Float>(x: &ArrayD<T>, planes: usize, plane: usize) -> Vec<T> {
        let xd = data_of(x);
        (0..planes)
            .map(|pi| {
                let s: f64 = xd[pi * plane..(pi + 1) * plane].iter().map(|v| v.to_f64()).sum();
                T::of(s / plane as f64)
            })
            .collect()
    }
    Ok(match inputs[0] {
        Tensor::F32(x) => Tensor::F32(array(&out_shape, go(x, planes, plane))),
        Tensor::F64(x) => Tensor::F64(array(&out_shape, go(x, planes, plane))),
        t => return Err(unsupported(format!("global_average_pool of {} tensors", t.dtype()))),
    })
}
