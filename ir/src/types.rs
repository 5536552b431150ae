//! Tensor types: dtype, static shape and optional quantization parameters.

use crate::DType;

/// Affine quantization of a tensor: `real = scale * (code - zero_point)`.
///
/// Per-tensor when `axis` is `None` (then `scale` and `zero_point` have one entry), per-channel
/// along `axis` otherwise (one entry per index of that axis).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantParams {
    /// Code width in bits (2..=16); the storage dtype may be wider.
    pub bits: u8,
    /// Signed (`[-2^(bits-1), 2^(bits-1)-1]`) or unsigned (`[0, 2^bits-1]`) codes.
    pub signed: bool,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i32>,
    pub axis: Option<usize>,
}

impl QuantParams {
    /// The smallest and largest code of this type.
    pub fn code_range(&self) -> (i64, i64) {
        let b = self.bits as u32;
        if self.signed {
            (-(1i64 << (b - 1)), (1i64 << (b - 1)) - 1)
        } else {
            (0, (1i64 << b) - 1)
        }
    }
}

/// The type of a value: element type, static shape, optional quantization.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub quant: Option<QuantParams>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<usize>) -> TensorType {
        TensorType { dtype, shape, quant: None }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn with_shape(&self, shape: Vec<usize>) -> TensorType {
        TensorType { dtype: self.dtype, shape, quant: self.quant.clone() }
    }
}
