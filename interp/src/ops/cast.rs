//! Cast between every pair of dtypes, with numpy's `astype` rules: integers wrap (two's
//! complement truncation), floats round to nearest, float to integer truncates toward zero
//! (saturating at the type's bounds, NaN to 0, where numpy's result is undefined), anything to
//! bool is `!= 0` (NaN is true), bool is 0 or 1.

use crate::tensor::Tensor;
use cimc_ir::DType;
use ndarray::ArrayD;

/// Primitive conversions with Rust's `as` semantics (and `!= 0` to bool).
pub(crate) trait AsPrim: Copy {
    fn f32(self) -> f32;
    fn f64(self) -> f64;
    fn i8(self) -> i8;
    fn u8(self) -> u8;
    fn i16(self) -> i16;
    fn u16(self) -> u16;
    fn i32(self) -> i32;
    fn i64(self) -> i64;
    fn bool(self) -> bool;
}

macro_rules! as_prim {
    ($($t:ty),*) => {$(
        impl AsPrim for $t {
            #[inline(always)] fn f32(self) -> f32 { self as f32 }
            #[inline(always)] fn f64(self) -> f64 { self as f64 }
            #[inline(always)] fn i8(self) -> i8 { self as i8 }
            #[inline(always)] fn u8(self) -> u8 { self as u8 }
            #[inline(always)] fn i16(self) -> i16 { self as i16 }
            #[inline(always)] fn u16(self) -> u16 { self as u16 }
            #[inline(always)] fn i32(self) -> i32 { self as i32 }
            #[inline(always)] fn i64(self) -> i64 { self as i64 }
            #[inline(always)] fn bool(self) -> bool { self != (0 as $t) }
        }
    )*};
}
as_prim!(f32, f64, i8, u8, i16, u16, i32, i64);

impl AsPrim for bool {
    fn f32(self) -> f32 {
        self as u8 as f32
    }
    fn f64(self) -> f64 {
        self as u8 as f64
    }
    fn i8(self) -> i8 {
        self as i8
    }
    fn u8(self) -> u8 {
        self as u8
    }
    fn i16(self) -> i16 {
        self as i16
    }
    fn u16(self) -> u16 {
        self as u16
    }
    fn i32(self) -> i32 {
        self as i32
    }
    fn i64(self) -> i64 {
        self as i64
    }
    fn bool(self) -> bool {
        self
    }
}

fn to<T: AsPrim>(a: &ArrayD<T>, dt: DType) -> Tensor {
    match dt {
        DType::F32 => Tensor::F32(a.mapv(T::f32)),
        DType::F64 => Tensor::F64(a.mapv(T::f64)),
        DType::I8 => Tensor::I8(a.mapv(T::i8)),
        DType::U8 => Tensor::U8(a.mapv(T::u8)),
        DType::I16 => Tensor::I16(a.mapv(T::i16)),
        DType::U16 => Tensor::U16(a.mapv(T::u16)),
        DType::I32 => Tensor::I32(a.mapv(T::i32)),
        DType::I64 => Tensor::I64(a.mapv(T::i64)),
        DType::Bool => Tensor::Bool(a.mapv(T::bool)),
    }
}

/// Casts `t` to `dt` (a clone when the dtype already is `dt`).
pub(crate) fn cast(t: &Tensor, dt: DType) -> Tensor {
    if t.dtype() == dt {
        return t.clone();
    }
    crate::with_array!(t, a => to(a, dt))
}
