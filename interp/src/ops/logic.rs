//! Ops giving or taking `bool` tensors: the comparisons of [`CompareOp`] (`Op::Compare`), the
//! logical functions of [`LogicOp`] (`Op::Logic`), Not and Where, all with numpy broadcasting.
//! Comparisons take any dtype (both operands of one), so int64 token ids compare as they do
//! in onnxruntime.

use super::bad;
use super::elementwise::broadcast_shape;
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::{CompareOp, LogicOp};
use ndarray::{ArrayD, IxDyn, Zip};

/// `f(x, y)` over the broadcast of `a` and `b`.
fn zip2<A: Copy, B: Copy, O>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> O,
) -> Result<ArrayD<O>> {
    let shape = IxDyn(&broadcast_shape(a.shape(), b.shape())?);
    match (a.broadcast(shape.clone()), b.broadcast(shape)) {
        (Some(av), Some(bv)) => Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y))),
        _ => Err(bad(format!("shapes {:?} and {:?} do not broadcast", a.shape(), b.shape()))),
    }
}

/// The comparison `f` of two tensors of one dtype.
pub(crate) fn compare(f: CompareOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    fn typed<T: PartialOrd + Copy>(f: CompareOp, a: &ArrayD<T>, b: &ArrayD<T>) -> Result<Tensor> {
        let out = match f {
            CompareOp::Equal => zip2(a, b, |x, y| x == y),
            CompareOp::Less => zip2(a, b, |x, y| x < y),
            CompareOp::LessOrEqual => zip2(a, b, |x, y| x <= y),
            CompareOp::Greater => zip2(a, b, |x, y| x > y),
            CompareOp::GreaterOrEqual => zip2(a, b, |x, y| x >= y),
        }?;
        Ok(Tensor::Bool(out))
    }
    match (a, b) {
        (Tensor::F32(x), Tensor::F32(y)) => typed(f, x, y),
        (Tensor::F64(x), Tensor::F64(y)) => typed(f, x, y),
        (Tensor::I8(x), Tensor::I8(y)) => typed(f, x, y),
        (Tensor::U8(x), Tensor::U8(y)) => typed(f, x, y),
        (Tensor::I16(x), Tensor::I16(y)) => typed(f, x, y),
        (Tensor::U16(x), Tensor::U16(y)) => typed(f, x, y),
        (Tensor::I32(x), Tensor::I32(y)) => typed(f, x, y),
        (Tensor::I64(x), Tensor::I64(y)) => typed(f, x, y),
        (Tensor::Bool(x), Tensor::Bool(y)) if f == CompareOp::Equal => typed(f, x, y),
        (a, b) => Err(bad(format!("{} of {} and {} tensors", f.name(), a.dtype(), b.dtype()))),
    }
}

/// The logical function `f` of two bool tensors.
pub(crate) fn logic(f: LogicOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (Tensor::Bool(a), Tensor::Bool(b)) = (a, b) else {
        return Err(bad(format!("{} of {} and {} tensors", f.name(), a.dtype(), b.dtype())));
    };
    let out = match f {
        LogicOp::And => zip2(a, b, |x, y| x & y),
        LogicOp::Or => zip2(a, b, |x, y| x | y),
        LogicOp::Xor => zip2(a, b, |x, y| x ^ y),
    }?;
    Ok(Tensor::Bool(out))
}

/// The negation of a bool tensor.
pub(crate) fn not(t: Tensor) -> Result<Tensor> {
    match t {
        Tensor::Bool(a) => Ok(Tensor::Bool(a.mapv_into(|x| !x))),
        other => Err(bad(format!("not of a {} tensor", other.dtype()))),
    }
}

/// `x` where `cond`, else `y`, the three broadcast together.
pub(crate) fn where_(cond: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    fn typed<T: Copy>(c: &ArrayD<bool>, x: &ArrayD<T>, y: &ArrayD<T>) -> Result<ArrayD<T>> {
        let shape = broadcast_shape(&broadcast_shape(c.shape(), x.shape())?, y.shape())?;
        let sh = IxDyn(&shape);
        match (c.broadcast(sh.clone()), x.broadcast(sh.clone()), y.broadcast(sh)) {
            (Some(cv), Some(xv), Some(yv)) => {
                Ok(Zip::from(&cv).and(&xv).and(&yv).map_collect(|&c, &x, &y| if c { x } else { y }))
            }
            _ => Err(bad("the condition and the inputs do not broadcast")),
        }
    }
    let Tensor::Bool(c) = cond else {
        return Err(bad(format!("the condition is {}, not bool", cond.dtype())));
    };
    Ok(match (x, y) {
        (Tensor::F32(x), Tensor::F32(y)) => Tensor::F32(typed(c, x, y)?),
        (Tensor::F64(x), Tensor::F64(y)) => Tensor::F64(typed(c, x, y)?),
        (Tensor::I8(x), Tensor::I8(y)) => Tensor::I8(typed(c, x, y)?),
        (Tensor::U8(x), Tensor::U8(y)) => Tensor::U8(typed(c, x, y)?),
        (Tensor::I16(x), Tensor::I16(y)) => Tensor::I16(typed(c, x, y)?),
        (Tensor::U16(x), Tensor::U16(y)) => Tensor::U16(typed(c, x, y)?),
        (Tensor::I32(x), Tensor::I32(y)) => Tensor::I32(typed(c, x, y)?),
        (Tensor::I64(x), Tensor::I64(y)) => Tensor::I64(typed(c, x, y)?),
        (Tensor::Bool(x), Tensor::Bool(y)) => Tensor::Bool(typed(c, x, y)?),
        (x, y) => {
            return Err(bad(format!("inputs of different dtypes {} and {}", x.dtype(), y.dtype())))
        }
    })
}
