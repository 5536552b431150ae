//! Add, Sub, Mul and Div with numpy broadcasting, for every numeric dtype; and Pow.
//!
//! Integers wrap around on overflow (as numpy and onnxruntime do) and Div truncates toward
//! zero; an integer division by zero is an error. Equal shapes and scalar operands take
//! contiguous (and, when large, parallel) fast paths; the general path walks rows of the
//! broadcast output after merging the dims it can.

use super::num::Arith;
use super::{array, bad, data_of, unsupported, PAR_MIN};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::Op;
use ndarray::ArrayD;
use rayon::prelude::*;

/// The numpy broadcast of two shapes, or an error naming both.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(bad(format!("shapes {a:?} and {b:?} do not broadcast"))),
        };
    }
    Ok(out)
}

/// Element strides of a row-major array of `shape` broadcast to `out` (0 on broadcast dims).
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut strides = vec![0; r];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        let o = i + r - shape.len();
        strides[o] = if shape[i] == 1 { 0 } else { acc };
        acc *= shape[i];
    }
    strides
}

/// One contiguous run of the output: `len` elements from `out`, reading `a` from `a` with step
/// `sa` and `b` from `b` with step `sb` (steps are 0 or 1 after merging, but any works).
struct Row {
    out: usize,
    a: usize,
    b: usize,
    len: usize,
    sa: usize,
    sb: usize,
}

/// Calls `f` for every row of the broadcast of operands with strides `sa`, `sb` to `out`.
fn for_each_row(out: &[usize], sa: &[usize], sb: &[usize], mut f: impl FnMut(Row)) {
    // Merge dim i into i+1 where both operands are "contiguous across" the two dims.
    let mut dims: Vec<(usize, usize, usize)> = Vec::new(); // (size, stride a, stride b)
    for i in 0..out.len() {
        if out[i] == 1 {
            continue;
        }
        if let Some(last) = dims.last_mut() {
            if last.1 == sa[i] * out[i] && last.2 == sb[i] * out[i] {
                *last = (last.0 * out[i], sa[i], sb[i]);
                continue;
            }
        }
        dims.push((out[i], sa[i], sb[i]));
    }
    let total: usize = out.iter().product();
    if total == 0 {
        return;
    }
    let Some(&(len, ia, ib)) = dims.last() else {
        f(Row { out: 0, a: 0, b: 0, len: 1, sa: 0, sb: 0 });
        return;
    };
    let outer = &dims[..dims.len() - 1];
    let mut idx = vec![0usize; outer.len()];
    let (mut oa, mut ob) = (0usize, 0usize);
    let mut o = 0;
    loop {
        f(Row { out: o, a: oa, b: ob, len, sa: ia, sb: ib });
        o += len;
        // Odometer increment over the outer dims.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            oa += outer[d].1;
            ob += outer[d].2;
            if idx[d] < outer[d].0 {
                break;
            }
            oa -= outer[d].1 * outer[d].0;
            ob -= outer[d].2 * outer[d].0;
            idx[d] = 0;
        }
    }
}

#[inline(always)]
fn run_row<T: Copy, F: Fn(T, T) -> T>(out: &mut [T], a: &[T], b: &[T], r: &Row, f: &F) {
    let o = &mut out[r.out..r.out + r.len];
    match (r.sa, r.sb) {
        (1, 1) => {
            let (a, b) = (&a[r.a..r.a + r.len], &b[r.b..r.b + r.len]);
            o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&x, &y))| *o = f(x, y));
        }
        (1, 0) => {
            let (a, y) = (&a[r.a..r.a + r.len], b[r.b]);
            o.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x, y));
        }
        (0, 1) => {
            let (x, b) = (a[r.a], &b[r.b..r.b + r.len]);
            o.iter_mut().zip(b).for_each(|(o, &y)| *o = f(x, y));
        }
        (sa, sb) => {
            for (i, o) in o.iter_mut().enumerate() {
                *o = f(a[r.a + i * sa], b[r.b + i * sb]);
            }
        }
    }
}

/// `f` over the broadcast of `a` (shape `ash`) and `b` (shape `bsh`), into a new vector.
fn broadcast_map<T: Arith, F: Fn(T, T) -> T + Sync>(
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
    out_shape: &[usize],
    f: F,
) -> Vec<T> {
    let n: usize = out_shape.iter().product();
    let mut out = vec![T::ZERO; n];
    if a.len() == n && b.len() == n {
        let go = |(o, (a, b)): (&mut [T], (&[T], &[T]))| {
            o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&x, &y))| *o = f(x, y))
        };
        if n >= PAR_MIN {
            let c = PAR_MIN / 2;
            out.par_chunks_mut(c).zip(a.par_chunks(c).zip(b.par_chunks(c))).for_each(go);
        } else {
            go((&mut out[..], (a, b)));
        }
        return out;
    }
    if b.len() == 1 && a.len() == n {
        let y = b[0];
        let go = |(o, a): (&mut [T], &[T])| o.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x, y));
        if n >= PAR_MIN {
            out.par_chunks_mut(PAR_MIN / 2).zip(a.par_chunks(PAR_MIN / 2)).for_each(go);
        } else {
            go((&mut out[..], a));
        }
        return out;
    }
    let (sa, sb) = (broadcast_strides(ash, out_shape), broadcast_strides(bsh, out_shape));
    for_each_row(out_shape, &sa, &sb, |r| run_row(&mut out, a, b, &r, &f));
    out
}

/// `dst = f(dst, other)` (or `f(other, dst)` when `!dst_is_lhs`), `dst` having the output
/// shape `out_shape` and `other` broadcasting to it.
fn broadcast_in_place<T: Arith, F: Fn(T, T) -> T + Sync>(
    dst: &mut [T],
    other: &[T],
    osh: &[usize],
    out_shape: &[usize],
    dst_is_lhs: bool,
    f: F,
) {
    let n = dst.len();
    let g = |x: T, y: T| if dst_is_lhs { f(x, y) } else { f(y, x) };
    if other.len() == n {
        let go = |(d, o): (&mut [T], &[T])| d.iter_mut().zip(o).for_each(|(d, &y)| *d = g(*d, y));
        if n >= PAR_MIN {
            dst.par_chunks_mut(PAR_MIN / 2).zip(other.par_chunks(PAR_MIN / 2)).for_each(go);
        } else {
            go((dst, other));
        }
        return;
    }
    if other.len() == 1 {
        let y = other[0];
        let go = |d: &mut [T]| d.iter_mut().for_each(|d| *d = g(*d, y));
        if n >= PAR_MIN {
            dst.par_chunks_mut(PAR_MIN / 2).for_each(go);
        } else {
            go(dst);
        }
        return;
    }
    let sd = broadcast_strides(out_shape, out_shape);
    let so = broadcast_strides(osh, out_shape);
    for_each_row(out_shape, &sd, &so, |r| {
        let d = &mut dst[r.out..r.out + r.len];
        if r.sb == 0 {
            let y = other[r.b];
            d.iter_mut().for_each(|d| *d = g(*d, y));
        } else {
            for (i, d) in d.iter_mut().enumerate() {
                *d = g(*d, other[r.b + i * r.sb]);
            }
        }
    });
}

/// Fails on an integer division by zero (checked before dividing, so kernels never panic).
fn check_div<T: Arith>(b: &[T]) -> Result<()> {
    if T::DTYPE.is_int() && b.contains(&T::ZERO) {
        return Err(bad("integer division by zero"));
    }
    Ok(())
}

macro_rules! with_bin {
    ($op:expr, $t:ty, $f:ident => $body:expr) => {
        match $op {
            Op::Add => {
                let $f = |x: $t, y: $t| x.add(y);
                $body
            }
            Op::Sub => {
                let $f = |x: $t, y: $t| x.sub(y);
                $body
            }
            Op::Mul => {
                let $f = |x: $t, y: $t| x.mul(y);
                $body
            }
            Op::Div => {
                let $f = |x: $t, y: $t| x.div(y).unwrap_or(<$t as Arith>::ZERO);
                $body
            }
            other => return Err(bad(format!("{} is not a binary arithmetic op", other.name()))),
        }
    };
}

fn typed<T: Arith>(op: &Op, a: &ArrayD<T>, b: &ArrayD<T>) -> Result<Tensor> {
    let out_shape = broadcast_shape(a.shape(), b.shape())?;
    let (ad, bd) = (data_of(a), data_of(b));
    if matches!(op, Op::Div) {
        check_div(&bd)?;
    }
    let v = with_bin!(op, T, f => broadcast_map(&ad, a.shape(), &bd, b.shape(), &out_shape, f));
    Ok(T::wrap(array(&out_shape, v)))
}

fn typed_in_place<T: Arith>(
    op: &Op,
    dst: ArrayD<T>,
    other: &ArrayD<T>,
    dst_is_lhs: bool,
) -> Result<Tensor> {
    let out_shape = broadcast_shape(dst.shape(), other.shape())?;
    if out_shape != dst.shape() {
        return if dst_is_lhs { typed(op, &dst, other) } else { typed(op, other, &dst) };
    }
    let mut dst = super::activation::standard(dst);
    let od = data_of(other);
    if matches!(op, Op::Div) {
        if dst_is_lhs {
            check_div(&od)?;
        } else {
            check_div(dst.as_slice().expect("invariant: standard layout"))?;
        }
    }
    let d = dst.as_slice_mut().expect("invariant: standard layout");
    with_bin!(op, T, f => broadcast_in_place(d, &od, other.shape(), &out_shape, dst_is_lhs, f));
    Ok(T::wrap(dst))
}

macro_rules! dispatch2 {
    ($a:expr, $b:expr, $x:ident, $y:ident => $body:expr) => {
        match ($a, $b) {
            (Tensor::F32($x), Tensor::F32($y)) => $body,
            (Tensor::F64($x), Tensor::F64($y)) => $body,
            (Tensor::I8($x), Tensor::I8($y)) => $body,
            (Tensor::U8($x), Tensor::U8($y)) => $body,
            (Tensor::I16($x), Tensor::I16($y)) => $body,
            (Tensor::U16($x), Tensor::U16($y)) => $body,
            (Tensor::I32($x), Tensor::I32($y)) => $body,
            (Tensor::I64($x), Tensor::I64($y)) => $body,
            (Tensor::Bool(_), Tensor::Bool(_)) => Err(unsupported("arithmetic on bool tensors")),
            (a, b) => Err(bad(format!("operand dtypes differ: {} and {}", a.dtype(), b.dtype()))),
        }
    };
}

/// `a op b` with numpy broadcasting.
pub(crate) fn binary(op: &Op, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    dispatch2!(a, b, x, y => typed(op, x, y))
}

/// `a op b` (or `b op a` when `!owned_is_lhs`) reusing the owned operand's buffer when it
/// already has the output's shape.
pub(crate) fn binary_in_place(
    op: &Op,
    owned: Tensor,
    other: &Tensor,
    owned_is_lhs: bool,
) -> Result<Tensor> {
    dispatch2!(owned, other, x, y => typed_in_place(op, x, y, owned_is_lhs))
}

/// Pow: `base ^ exponent`, numpy-broadcast, computed in f64 and converted to the base's dtype
/// as a cast converts (an integer result truncates toward zero), as the ONNX reference
/// (`np.power(x, y).astype(x.dtype)`) does.
pub(crate) fn pow(base: &Tensor, exponent: &Tensor) -> Result<Tensor> {
    use cimc_ir::DType;
    let (Tensor::F64(b), Tensor::F64(e)) =
        (super::cast::cast(base, DType::F64), super::cast::cast(exponent, DType::F64))
    else {
        return Err(bad("invariant: a cast to f64 gives f64"));
    };
    let shape = broadcast_shape(b.shape(), e.shape())?;
    let (bv, ev) = match (b.broadcast(shape.as_slice()), e.broadcast(shape.as_slice())) {
        (Some(bv), Some(ev)) => (bv, ev),
        _ => {
            return Err(bad(format!("shapes {:?} and {:?} do not broadcast", b.shape(), e.shape())))
        }
    };
    let out = ndarray::Zip::from(&bv).and(&ev).map_collect(|&x, &y| x.powf(y));
    Ok(super::cast::cast(&Tensor::F64(out), base.dtype()))
}

/// The elementwise maximum (`max`) or minimum of `a` and `b`, numpy-broadcast, for every
/// numeric dtype; a NaN operand gives NaN (as numpy's `maximum`/`minimum`).
pub(crate) fn extremum(a: &Tensor, b: &Tensor, max: bool) -> Result<Tensor> {
    dispatch2!(a, b, x, y => extremum_typed(x, y, max))
}

fn extremum_typed<T: Arith>(a: &ArrayD<T>, b: &ArrayD<T>, max: bool) -> Result<Tensor> {
    let out_shape = broadcast_shape(a.shape(), b.shape())?;
    let (ad, bd) = (data_of(a), data_of(b));
    let f = move |x: T, y: T| match x.partial_cmp(&y) {
        Some(o) => {
            if (o == std::cmp::Ordering::Less) == max {
                y
            } else {
                x
            }
        }
        // At least one is NaN: keep it.
        None => {
            if x.partial_cmp(&x).is_none() {
                x
            } else {
                y
            }
        }
    };
    let v = broadcast_map(&ad, a.shape(), &bd, b.shape(), &out_shape, f);
    Ok(T::wrap(array(&out_shape, v)))
}

/// PRelu: `x` where `x >= 0`, else `slope · x`, the slope broadcast to `x`'s shape.
pub(crate) fn prelu(x: &Tensor, slope: &Tensor) -> Result<Tensor> {
    fn typed<T: super::num::Float>(x: &ArrayD<T>, s: &ArrayD<T>) -> Result<ArrayD<T>> {
        let sv = s.broadcast(x.raw_dim()).ok_or_else(|| {
            bad(format!("slope {:?} does not broadcast to the input {:?}", s.shape(), x.shape()))
        })?;
        Ok(ndarray::Zip::from(x).and(&sv).map_collect(|&v, &a| if v < T::ZERO { a * v } else { v }))
    }
    match (x, slope) {
        (Tensor::F32(x), Tensor::F32(s)) => Ok(Tensor::F32(typed(x, s)?)),
        (Tensor::F64(x), Tensor::F64(s)) => Ok(Tensor::F64(typed(x, s)?)),
        (x, s) => Err(unsupported(format!("prelu of {} by {} tensors", x.dtype(), s.dtype()))),
    }
}
