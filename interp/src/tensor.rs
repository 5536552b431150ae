//! Run-time tensors of the float interpreter: one ndarray per element type.

use crate::error::{InterpError, Result};
use cimc_ir::{DType, TensorData};
use ndarray::{ArrayD, IxDyn};

/// A tensor at run time. The float interpreter computes in the tensor's own dtype (f32 for
/// models; integer and f64 tensors appear in shape arithmetic and the conformance cases).
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    I8(ArrayD<i8>),
    U8(ArrayD<u8>),
    I16(ArrayD<i16>),
    U16(ArrayD<u16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

/// Runs `$body` with `$a` bound to the inner array, whatever the dtype.
#[macro_export]
macro_rules! with_array {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $body,
            $crate::Tensor::F64($a) => $body,
            $crate::Tensor::I8($a) => $body,
            $crate::Tensor::U8($a) => $body,
            $crate::Tensor::I16($a) => $body,
            $crate::Tensor::U16($a) => $body,
            $crate::Tensor::I32($a) => $body,
            $crate::Tensor::I64($a) => $body,
            $crate::Tensor::Bool($a) => $body,
        }
    };
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::I16(_) => DType::I16,
            Tensor::U16(_) => DType::U16,
            Tensor::I32(_) => DType::I32,
            Tensor::I64(_) => DType::I64,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        with_array!(self, a => a.shape())
    }

    /// Converts constant data of the IR into a tensor (copies).
    pub fn from_data(d: &TensorData) -> Result<Tensor> {
        let shape = IxDyn(d.shape());
        let raw = d.raw();
        macro_rules! le {
            ($t:ty, $n:expr) => {
                raw.chunks_exact($n)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("invariant: exact chunk")))
                    .collect::<Vec<$t>>()
            };
        }
        let make = |r: std::result::Result<Tensor, ndarray::ShapeError>| {
            r.map_err(|e| InterpError::Internal(format!("constant data: {e}")))
        };
        match d.dtype() {
            DType::F32 => make(ArrayD::from_shape_vec(shape, le!(f32, 4)).map(Tensor::F32)),
            DType::F64 => make(ArrayD::from_shape_vec(shape, le!(f64, 8)).map(Tensor::F64)),
            DType::I8 => make(
                ArrayD::from_shape_vec(shape, raw.iter().map(|&b| b as i8).collect())
                    .map(Tensor::I8),
            ),
            DType::U8 => make(ArrayD::from_shape_vec(shape, raw.to_vec()).map(Tensor::U8)),
            DType::I16 => make(ArrayD::from_shape_vec(shape, le!(i16, 2)).map(Tensor::I16)),
            DType::U16 => make(ArrayD::from_shape_vec(shape, le!(u16, 2)).map(Tensor::U16)),
            DType::I32 => make(ArrayD::from_shape_vec(shape, le!(i32, 4)).map(Tensor::I32)),
            DType::I64 => make(ArrayD::from_shape_vec(shape, le!(i64, 8)).map(Tensor::I64)),
            DType::Bool => make(
                ArrayD::from_shape_vec(shape, raw.iter().map(|&b| b != 0).collect())
                    .map(Tensor::Bool),
            ),
        }
    }

    /// Converts the tensor into IR constant data (copies).
    pub fn to_data(&self) -> TensorData {
        let shape = self.shape().to_vec();
        match self {
            Tensor::F32(a) => TensorData::from_f32(shape, &a.iter().copied().collect::<Vec<_>>()),
            Tensor::F64(a) => TensorData::from_f64(shape, &a.iter().copied().collect::<Vec<_>>()),
            Tensor::I8(a) => TensorData::from_i8(shape, &a.iter().copied().collect::<Vec<_>>()),
            Tensor::U8(a) => TensorData::from_u8(shape, &a.iter().copied().collect::<Vec<_>>()),
            Tensor::I16(a) => TensorData::from_i16(shape, &a.iter().copied().collect::<Vec<_>>()),
            Tensor::U16(a) => TensorData::from_u16(shape, &a.iter().copied().collect::<Vec<_>>()),
            Tensor::I32(a) => TensorData::from_i32(shape, &a.iter().copied().collect::<Vec<_>>()),
            Tensor::I64(a) => TensorData::from_i64(shape, &a.iter().copied().collect::<Vec<_>>()),
            Tensor::Bool(a) => TensorData::from_bool(shape, &a.iter().copied().collect::<Vec<_>>()),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        with_array!(self, a => a.len())
    }

    /// The rank (number of axes).
    pub fn rank(&self) -> usize {
        self.shape().len()
    }

    /// A tensor of `dtype` and `shape` filled with zeros (`false` for bool).
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        let s = IxDyn(shape);
        match dtype {
            DType::F32 => Tensor::F32(ArrayD::zeros(s)),
            DType::F64 => Tensor::F64(ArrayD::zeros(s)),
            DType::I8 => Tensor::I8(ArrayD::zeros(s)),
            DType::U8 => Tensor::U8(ArrayD::zeros(s)),
            DType::I16 => Tensor::I16(ArrayD::zeros(s)),
            DType::U16 => Tensor::U16(ArrayD::zeros(s)),
            DType::I32 => Tensor::I32(ArrayD::zeros(s)),
            DType::I64 => Tensor::I64(ArrayD::zeros(s)),
            DType::Bool => Tensor::Bool(ArrayD::from_elem(s, false)),
        }
    }

    /// An f32 tensor from row-major data; fails when the length does not match the shape.
    pub fn from_f32(shape: &[usize], data: Vec<f32>) -> Result<Tensor> {
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(Tensor::F32)
            .map_err(|e| InterpError::Input { name: "f32 data".into(), msg: e.to_string() })
    }

    /// An i64 tensor from row-major data; fails when the length does not match the shape.
    pub fn from_i64(shape: &[usize], data: Vec<i64>) -> Result<Tensor> {
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(Tensor::I64)
            .map_err(|e| InterpError::Input { name: "i64 data".into(), msg: e.to_string() })
    }

    /// Every element converted to f64, in row-major order (exact except i64 beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            Tensor::F32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::F64(a) => a.iter().copied().collect(),
            Tensor::I8(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::U8(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I16(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::U16(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I32(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::I64(a) => a.iter().map(|&v| v as f64).collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as u8 as f64).collect(),
        }
    }

    /// "f32[1,3,224,224]": dtype and shape, for messages.
    pub fn type_string(&self) -> String {
        format!("{}{:?}", self.dtype(), self.shape())
    }

    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            _ => None,
        }
    }

    pub fn into_f32(self) -> Option<ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            _ => None,
        }
    }

    /// The predicted class of every row of logits `[N, classes]` (f32): each row's
    /// [`argmax`]. `None` for a tensor of another dtype or rank.
    pub fn argmax_rows(&self) -> Option<Vec<usize>> {
        let a = self.as_f32().filter(|a| a.ndim() == 2)?;
        Some(a.outer_iter().map(|row| argmax(row.iter().copied())).collect())
    }
}

/// The index of the largest value, the first among equals; NaNs never win (0 when no value is
/// above −∞).
pub fn argmax<T: PartialOrd + From<f32>>(values: impl IntoIterator<Item = T>) -> usize {
    let mut best = (0, T::from(f32::NEG_INFINITY));
    for (i, v) in values.into_iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// How many predicted classes equal their integer labels (pairwise; top-1 hits).
pub fn count_correct(predictions: &[usize], labels: &[i64]) -> usize {
    predictions.iter().zip(labels).filter(|(p, l)| **p as i64 == **l).count()
}

/// Top-1 in percent: `correct` hits among `samples` (0 when there are none).
pub fn top1_percent(correct: usize, samples: usize) -> f64 {
    100.0 * correct as f64 / samples.max(1) as f64
}

/// Samples `start..start+len` of `t` along axis 0, zero-padded to `padded` samples: a batch of a
/// static graph cut from a data set.
pub fn slice_batch(t: &Tensor, start: usize, len: usize, padded: usize) -> Tensor {
    fn go<T: Clone + Default>(a: &ArrayD<T>, start: usize, len: usize, padded: usize) -> ArrayD<T> {
        use ndarray::{Axis, Slice};
        let part = a.slice_axis(Axis(0), Slice::from(start..start + len));
        if padded == len {
            return part.to_owned();
        }
        let mut shape = a.shape().to_vec();
        shape[0] = padded;
        let mut out = ArrayD::<T>::default(IxDyn(&shape));
        out.slice_axis_mut(Axis(0), Slice::from(0..len)).assign(&part);
        out
    }
    match t {
        Tensor::F32(a) => Tensor::F32(go(a, start, len, padded)),
        Tensor::F64(a) => Tensor::F64(go(a, start, len, padded)),
        Tensor::I8(a) => Tensor::I8(go(a, start, len, padded)),
        Tensor::U8(a) => Tensor::U8(go(a, start, len, padded)),
        Tensor::I16(a) => Tensor::I16(go(a, start, len, padded)),
        Tensor::U16(a) => Tensor::U16(go(a, start, len, padded)),
        Tensor::I32(a) => Tensor::I32(go(a, start, len, padded)),
        Tensor::I64(a) => Tensor::I64(go(a, start, len, padded)),
        Tensor::Bool(a) => Tensor::Bool(go(a, start, len, padded)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_largest_and_never_a_nan() {
        assert_eq!(argmax([1.0f32, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax([f32::NAN, 0.5, f32::NAN, 0.25]), 1);
        assert_eq!(argmax([-1.0f64, -0.5]), 1);
        assert_eq!(argmax(Vec::<f32>::new()), 0);
        let logits = Tensor::from_f32(&[2, 3], vec![0.0, 2.0, 1.0, 5.0, -1.0, 5.0]).unwrap();
        assert_eq!(logits.argmax_rows(), Some(vec![1, 0]));
        assert_eq!(Tensor::from_f32(&[6], vec![0.0; 6]).unwrap().argmax_rows(), None);
        assert_eq!(count_correct(&[1, 0, 2], &[1, 1, 2]), 2);
        assert_eq!(top1_percent(2, 4), 50.0);
    }

    #[test]
    fn slice_batch_zero_pads_the_last_batch() {
        let t = Tensor::from_i64(&[3, 2], vec![1, 2, 3, 4, 5, 6]).unwrap();
        let last = slice_batch(&t, 2, 1, 2);
        assert_eq!(last, Tensor::from_i64(&[2, 2], vec![5, 6, 0, 0]).unwrap());
        assert_eq!(slice_batch(&t, 1, 2, 2), Tensor::from_i64(&[2, 2], vec![3, 4, 5, 6]).unwrap());
    }
}
