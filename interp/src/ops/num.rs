//! Element traits shared by the kernels: [`Elem`] ties a Rust type to its [`Tensor`] variant,
//! [`Float`] is the arithmetic the float kernels need, [`Arith`] the wrapping arithmetic of
//! ONNX's integer ops.

use crate::tensor::Tensor;
use cimc_ir::DType;
use ndarray::ArrayD;

/// A Rust element type with its [`Tensor`] variant.
pub trait Elem: Copy + Send + Sync + PartialOrd + Default + std::fmt::Debug + 'static {
    const DTYPE: DType;
    fn view(t: &Tensor) -> Option<&ArrayD<Self>>;
    fn wrap(a: ArrayD<Self>) -> Tensor;
}

macro_rules! elem {
    ($t:ty, $v:ident, $dt:ident) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$dt;
            fn view(t: &Tensor) -> Option<&ArrayD<Self>> {
                match t {
                    Tensor::$v(a) => Some(a),
                    _ => None,
                }
            }
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$v(a)
            }
        }
    };
}
elem!(f32, F32, F32);
elem!(f64, F64, F64);
elem!(i8, I8, I8);
elem!(u8, U8, U8);
elem!(i16, I16, I16);
elem!(u16, U16, U16);
elem!(i32, I32, I32);
elem!(i64, I64, I64);
elem!(bool, Bool, Bool);

/// The arithmetic of Add/Sub/Mul/Div and of integer matrix products: IEEE for floats,
/// wrapping for integers (as ONNX runtimes and numpy do), Div truncating toward zero.
pub trait Arith: Elem {
    const ZERO: Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// `None` for an integer division by zero.
    fn div(self, o: Self) -> Option<Self>;
}

macro_rules! arith_int {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: Self = 0;
            #[inline(always)]
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline(always)]
            fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline(always)]
            fn div(self, o: Self) -> Option<Self> {
                if o == 0 { None } else { Some(self.wrapping_div(o)) }
            }
        }
    )*};
}
arith_int!(i8, u8, i16, u16, i32, i64);

macro_rules! arith_float {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            const ZERO: Self = 0.0;
            #[inline(always)]
            fn add(self, o: Self) -> Self { self + o }
            #[inline(always)]
            fn sub(self, o: Self) -> Self { self - o }
            #[inline(always)]
            fn mul(self, o: Self) -> Self { self * o }
            #[inline(always)]
            fn div(self, o: Self) -> Option<Self> { Some(self / o) }
        }
    )*};
}
arith_float!(f32, f64);

/// The float arithmetic of the activation, normalization and pooling kernels.
pub trait Float:
    Arith
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
{
    fn of(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    const NEG_INFINITY: Self;
}

macro_rules! float {
    ($($t:ident),*) => {$(
        impl Float for $t {
            #[inline(always)]
            fn of(v: f64) -> Self { v as $t }
            #[inline(always)]
            fn to_f64(self) -> f64 { self as f64 }
            #[inline(always)]
            fn exp(self) -> Self { $t::exp(self) }
            #[inline(always)]
            fn tanh(self) -> Self { $t::tanh(self) }
            #[inline(always)]
            fn sqrt(self) -> Self { $t::sqrt(self) }
            const NEG_INFINITY: Self = $t::NEG_INFINITY;
        }
    )*};
}
float!(f32, f64);
