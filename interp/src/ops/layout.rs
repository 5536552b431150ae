//! Data movement by index map: Expand, Tile, Split, DepthToSpace, SpaceToDepth (and ZeroInsert,
//! whose outputs between the input's elements are zeros). Each output
//! element is one input element, so every kernel computes the flat input index of each output
//! element ([`index_map`]) and gathers ([`take`]): any dtype, exact on integer codes. The
//! gradient of these ops scatters through the same maps (`grad::ops::moves_backward`).

use super::num::Elem;
use super::{array, bad, data_of};
use crate::error::Result;
use crate::tensor::Tensor;

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// For every element of an output of shape `out` (row-major), the flat index into the input
/// that `src` computes from the output's multi-index.
fn index_map(out: &[usize], mut src: impl FnMut(&[usize]) -> usize) -> Vec<usize> {
    let n: usize = out.iter().product();
    let mut map = Vec::with_capacity(n);
    let mut ix = vec![0usize; out.len()];
    for _ in 0..n {
        map.push(src(&ix));
        for d in (0..out.len()).rev() {
            ix[d] += 1;
            if ix[d] < out[d] {
                break;
            }
            ix[d] = 0;
        }
    }
    map
}

/// The tensor of shape `shape` whose element `k` is the input's flat element `map[k]`.
pub(crate) fn take(t: &Tensor, map: &[usize], shape: &[usize]) -> Tensor {
    fn go<T: Elem>(a: &ndarray::ArrayD<T>, map: &[usize], shape: &[usize]) -> Tensor {
        let d = data_of(a);
        T::wrap(array(shape, map.iter().map(|&i| d[i]).collect()))
    }
    match t {
        Tensor::F32(a) => go(a, map, shape),
        Tensor::F64(a) => go(a, map, shape),
        Tensor::I8(a) => go(a, map, shape),
        Tensor::U8(a) => go(a, map, shape),
        Tensor::I16(a) => go(a, map, shape),
        Tensor::U16(a) => go(a, map, shape),
        Tensor::I32(a) => go(a, map, shape),
        Tensor::I64(a) => go(a, map, shape),
        Tensor::Bool(a) => go(a, map, shape),
    }
}

/// Expand to `shape`: numpy broadcasting of the input to the output shape.
pub(crate) fn expand(shape: &[usize], t: &Tensor) -> Result<Tensor> {
    let s = t.shape();
    if s.len() > shape.len()
        || s.iter().rev().zip(shape.iter().rev()).any(|(&i, &o)| i != o && i != 1)
    {
        return Err(bad(format!("cannot expand {s:?} to {shape:?}")));
    }
    let lead = shape.len() - s.len();
    let st = strides(s);
    let map = index_map(shape, |ix| {
        (0..s.len()).map(|d| if s[d] == 1 { 0 } else { ix[lead + d] * st[d] }).sum()
    });
    Ok(take(t, &map, shape))
}

/// Tile: the input repeated `repeats[d]` times along each axis.
pub(crate) fn tile(repeats: &[usize], t: &Tensor) -> Result<Tensor> {
    let s = t.shape();
    if repeats.len() != s.len() {
        return Err(bad(format!("{} repeats for rank {}", repeats.len(), s.len())));
    }
    let shape: Vec<usize> = s.iter().zip(repeats).map(|(&d, &r)| d * r).collect();
    let st = strides(s);
    let map = index_map(&shape, |ix| (0..s.len()).map(|d| (ix[d] % s[d]) * st[d]).sum());
    Ok(take(t, &map, &shape))
}

/// Split along `axis` into consecutive parts of `sizes`.
pub(crate) fn split(axis: usize, sizes: &[usize], t: &Tensor) -> Result<Vec<Tensor>> {
    let s = t.shape();
    if axis >= s.len() || sizes.iter().sum::<usize>() != s[axis] {
        return Err(bad(format!("cannot split {s:?} along axis {axis} into {sizes:?}")));
    }
    if let Tensor::F32(a) = t {
        return Ok(split_rows(a, axis, sizes).into_iter().map(Tensor::F32).collect());
    }
    let st = strides(s);
    let mut at = 0;
    let mut out = Vec::with_capacity(sizes.len());
    for &len in sizes {
        let mut shape = s.to_vec();
        shape[axis] = len;
        let map = index_map(&shape, |ix| {
            (0..s.len()).map(|d| (ix[d] + if d == axis { at } else { 0 }) * st[d]).sum()
        });
        out.push(take(t, &map, &shape));
        at += len;
    }
    Ok(out)
}

/// [`split`] of an array as contiguous runs: each part copies, per index of the dims before
/// `axis`, its `len · inner` consecutive elements (the same values as the index map, without
/// building it).
fn split_rows<T: Elem>(
    a: &ndarray::ArrayD<T>,
    axis: usize,
    sizes: &[usize],
) -> Vec<ndarray::ArrayD<T>> {
    let s = a.shape();
    let d = data_of(a);
    let inner: usize = s[axis + 1..].iter().product();
    let outer: usize = s[..axis].iter().product();
    let row = s[axis] * inner;
    let mut at = 0;
    sizes
        .iter()
        .map(|&len| {
            let mut v = Vec::with_capacity(outer * len * inner);
            for o in 0..outer {
                v.extend_from_slice(&d[o * row + at * inner..][..len * inner]);
            }
            at += len;
            let mut shape = s.to_vec();
            shape[axis] = len;
            array(&shape, v)
        })
        .collect()
}

/// TopK: along `axis`, the `k` largest (`largest`) or smallest elements of each lane in that
/// order, equal elements by increasing index (a stable sort, as onnxruntime orders them), and
/// their indices. Elements compare as f64 (`total_cmp`: NaN beyond ±∞), exact for every dtype
/// but i64 beyond 2^53.
pub(crate) fn top_k(t: &Tensor, axis: usize, k: usize, largest: bool) -> Result<Vec<Tensor>> {
    let s = t.shape().to_vec();
    if axis >= s.len() || k > s[axis] {
        return Err(bad(format!("cannot take the top {k} along axis {axis} of {s:?}")));
    }
    let values = t.to_f64_vec();
    let (st, n) = (strides(&s), s[axis]);
    let mut out_shape = s.clone();
    out_shape[axis] = k;
    let out_st = strides(&out_shape);
    let mut lane_shape = s.clone();
    lane_shape[axis] = 1;
    let mut out_bases = Vec::new();
    let in_bases = index_map(&lane_shape, |ix| {
        out_bases.push(ix.iter().zip(&out_st).map(|(i, s)| i * s).sum::<usize>());
        ix.iter().zip(&st).map(|(i, s)| i * s).sum()
    });
    let total: usize = out_shape.iter().product();
    let (mut map, mut indices) = (vec![0usize; total], vec![0i64; total]);
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for (&base, &out_base) in in_bases.iter().zip(&out_bases) {
        order.clear();
        order.extend(0..n);
        // −0 and +0 are equal, as onnxruntime compares them.
        let at = |i: usize| values[base + i * st[axis]] + 0.0;
        if largest {
            order.sort_by(|&a, &b| at(b).total_cmp(&at(a)));
        } else {
            order.sort_by(|&a, &b| at(a).total_cmp(&at(b)));
        }
        for (j, &i) in order.iter().take(k).enumerate() {
            map[out_base + j * out_st[axis]] = base + i * st[axis];
            indices[out_base + j * out_st[axis]] = i as i64;
        }
    }
    Ok(vec![take(t, &map, &out_shape), Tensor::I64(array(&out_shape, indices))])
}

fn nchw(t: &Tensor, block: usize) -> Result<[usize; 4]> {
    match t.shape()[..] {
        [n, c, h, w] if block > 0 => Ok([n, c, h, w]),
        _ => Err(bad(format!("expected a 4-D input and blocksize >= 1, got {}", t.type_string()))),
    }
}

/// DepthToSpace: output `(n, c, y·b + i, x·b + j)` is input `(n, ch, y, x)` with `ch` the
/// DCR (`(i·b + j)·C' + c`) or CRD (`c·b² + i·b + j`) channel.
pub(crate) fn depth_to_space(block: usize, crd: bool, t: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = nchw(t, block)?;
    let b = block;
    if c % (b * b) != 0 {
        return Err(bad(format!("{c} channels are not divisible by blocksize² {}", b * b)));
    }
    let co = c / (b * b);
    let shape = [n, co, h * b, w * b];
    let map = index_map(&shape, |ix| {
        let (y, x) = (ix[2], ix[3]);
        let (i, j) = (y % b, x % b);
        let ch = if crd { ix[1] * b * b + i * b + j } else { (i * b + j) * co + ix[1] };
        ((ix[0] * c + ch) * h + y / b) * w + x / b
    });
    Ok(take(t, &map, &shape))
}

/// SpaceToDepth: output `(n, ch, y, x)` is input `(n, c, y·b + i, x·b + j)`, with `ch` the DCR
/// (`(i·b + j)·C + c`) or CRD (`c·b² + i·b + j`) channel.
pub(crate) fn space_to_depth(block: usize, crd: bool, t: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = nchw(t, block)?;
    let b = block;
    if h % b != 0 || w % b != 0 {
        return Err(bad(format!("H {h} and W {w} are not divisible by blocksize {b}")));
    }
    let shape = [n, c * b * b, h / b, w / b];
    let map = index_map(&shape, |ix| {
        let (k, ch) = if crd { (ix[1] % (b * b), ix[1] / (b * b)) } else { (ix[1] / c, ix[1] % c) };
        let (i, j) = (k / b, k % b);
        ((ix[0] * c + ch) * h + ix[2] * b + i) * w + ix[3] * b + j
    });
    Ok(take(t, &map, &shape))
}

/// ZeroInsert: along each spatial axis `i` (axes 2..), `strides[i] − 1` zeros between
/// consecutive elements and `pads` zeros around (negative pads crop); any dtype.
pub(crate) fn zero_insert(steps: &[usize], pads: &[i64], t: &Tensor) -> Result<Tensor> {
    fn go<T: Elem>(a: &ndarray::ArrayD<T>, map: &[Option<usize>], shape: &[usize]) -> Tensor {
        let d = data_of(a);
        T::wrap(array(shape, map.iter().map(|&i| i.map_or_else(T::default, |i| d[i])).collect()))
    }
    let s = t.shape();
    let n = steps.len();
    if s.len() != n + 2 || pads.len() != 2 * n || steps.contains(&0) {
        return Err(bad(format!("zero_insert {steps:?} {pads:?} of {s:?}")));
    }
    let mut shape = s.to_vec();
    for i in 0..n {
        let d = s[2 + i] as i64;
        let len = if d == 0 { 0 } else { steps[i] as i64 * (d - 1) + 1 + pads[i] + pads[n + i] };
        shape[2 + i] = len.max(0) as usize;
    }
    let st = strides(s);
    let mut map = Vec::with_capacity(shape.iter().product());
    let mut ix = vec![0usize; shape.len()];
    for _ in 0..shape.iter().product::<usize>() {
        let mut at = Some(ix[0] * st[0] + ix[1] * st[1]);
        for i in 0..n {
            let t = ix[2 + i] as i64 - pads[i];
            let step = steps[i] as i64;
            if t < 0 || t % step != 0 || t / step >= s[2 + i] as i64 {
                at = None;
                break;
            }
            at = at.map(|a| a + (t / step) as usize * st[2 + i]);
        }
        map.push(at);
        for d in (0..shape.len()).rev() {
            ix[d] += 1;
            if ix[d] < shape[d] {
                break;
            }
            ix[d] = 0;
        }
    }
    Ok(match t {
        Tensor::F32(a) => go(a, &map, &shape),
        Tensor::F64(a) => go(a, &map, &shape),
        Tensor::I8(a) => go(a, &map, &shape),
        Tensor::U8(a) => go(a, &map, &shape),
        Tensor::I16(a) => go(a, &map, &shape),
        Tensor::U16(a) => go(a, &map, &shape),
        Tensor::I32(a) => go(a, &map, &shape),
        Tensor::I64(a) => go(a, &map, &shape),
        Tensor::Bool(a) => go(a, &map, &shape),
    })
}
