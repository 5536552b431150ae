//! Constant tensor data.
//!
//! Data is kept as little-endian, row-major raw bytes in a [`bytes::Bytes`], so that an importer
//! can hand over a slice of the file it read without copying the weights.

use crate::error::{IrError, Result};
use crate::DType;
use bytes::Bytes;

#[derive(Clone, PartialEq)]
pub struct TensorData {
    dtype: DType,
    shape: Vec<usize>,
    bytes: Bytes,
}

impl std::fmt::Debug for TensorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TensorData({}{:?}, {} bytes)", self.dtype, self.shape, self.bytes.len())
    }
}

macro_rules! typed_ctor {
    ($name:ident, $t:ty, $dt:expr) => {
        pub fn $name(shape: Vec<usize>, values: &[$t]) -> TensorData {
            assert_eq!(
                shape.iter().product::<usize>(),
                values.len(),
                "invariant: callers pass as many values as the shape holds"
            );
            let mut out = Vec::with_capacity(values.len() * std::mem::size_of::<$t>());
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
            TensorData { dtype: $dt, shape, bytes: Bytes::from(out) }
        }
    };
}

impl TensorData {
    /// Wraps raw little-endian bytes; fails when the length does not match dtype and shape.
    pub fn from_raw(dtype: DType, shape: Vec<usize>, bytes: Bytes) -> Result<TensorData> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let want = n.and_then(|n| n.checked_mul(dtype.size()));
        if want != Some(bytes.len()) {
            return Err(IrError::Other(format!(
                "{dtype}{shape:?} needs {} bytes, got {}",
                want.map_or("too many".to_string(), |w| w.to_string()),
                bytes.len()
            )));
        }
        Ok(TensorData { dtype, shape, bytes })
    }

    /// Wraps little-endian bytes made by the caller (no copy); fails as [`TensorData::from_raw`].
    pub fn from_le_vec(dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) -> Result<TensorData> {
        Self::from_raw(dtype, shape, Bytes::from(bytes))
    }

    typed_ctor!(from_f32, f32, DType::F32);
    typed_ctor!(from_f64, f64, DType::F64);
    typed_ctor!(from_i8, i8, DType::I8);
    typed_ctor!(from_u8, u8, DType::U8);
    typed_ctor!(from_i16, i16, DType::I16);
    typed_ctor!(from_u16, u16, DType::U16);
    typed_ctor!(from_i32, i32, DType::I32);
    typed_ctor!(from_i64, i64, DType::I64);

    pub fn from_bool(shape: Vec<usize>, values: &[bool]) -> TensorData {
        let bytes: Vec<u8> = values.iter().map(|&b| b as u8).collect();
        assert_eq!(shape.iter().product::<usize>(), bytes.len(), "invariant: length matches");
        TensorData { dtype: DType::Bool, shape, bytes: Bytes::from(bytes) }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn raw(&self) -> &Bytes {
        &self.bytes
    }

    /// The value of element `i` as f64 (exact for every dtype but i64 beyond 2^53).
    pub fn get_f64(&self, i: usize) -> f64 {
        let s = self.dtype.size();
        let b = &self.bytes[i * s..(i + 1) * s];
        match self.dtype {
            DType::F32 => f32::from_le_bytes(b.try_into().expect("invariant: 4-byte chunk")) as f64,
            DType::F64 => f64::from_le_bytes(b.try_into().expect("invariant: 8-byte chunk")),
            DType::I8 => b[0] as i8 as f64,
            DType::U8 | DType::Bool => b[0] as f64,
            DType::I16 => i16::from_le_bytes(b.try_into().expect("invariant: 2-byte chunk")) as f64,
            DType::U16 => u16::from_le_bytes(b.try_into().expect("invariant: 2-byte chunk")) as f64,
            DType::I32 => i32::from_le_bytes(b.try_into().expect("invariant: 4-byte chunk")) as f64,
            DType::I64 => i64::from_le_bytes(b.try_into().expect("invariant: 8-byte chunk")) as f64,
        }
    }

    /// The value of element `i` as i64 (floats truncated toward zero).
    pub fn get_i64(&self, i: usize) -> i64 {
        let s = self.dtype.size();
        let b = &self.bytes[i * s..(i + 1) * s];
        match self.dtype {
            DType::I64 => i64::from_le_bytes(b.try_into().expect("invariant: 8-byte chunk")),
            _ => self.get_f64(i) as i64,
        }
    }

    /// All elements converted to f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        if self.dtype == DType::F32 {
            return self
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("invariant: chunks_exact(4)")))
                .collect();
        }
        (0..self.numel()).map(|i| self.get_f64(i) as f32).collect()
    }

    /// All elements converted to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.numel()).map(|i| self.get_f64(i)).collect()
    }

    /// All elements converted to i64 (floats truncated toward zero).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        // The common integer types without a per-element dtype dispatch (weights of large
        // models go through here).
        match self.dtype {
            DType::I8 => return self.bytes.iter().map(|&b| b as i8 as i64).collect(),
            DType::U8 => return self.bytes.iter().map(|&b| b as i64).collect(),
            DType::I32 => {
                return self
                    .bytes
                    .chunks_exact(4)
                    .map(|c| {
                        i32::from_le_bytes(c.try_into().expect("invariant: chunks_exact(4)")) as i64
                    })
                    .collect()
            }
            _ => {}
        }
        (0..self.numel()).map(|i| self.get_i64(i)).collect()
    }

    /// A copy with another shape of the same element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> Result<TensorData> {
        TensorData::from_raw(self.dtype, shape, self.bytes.clone())
    }
}
