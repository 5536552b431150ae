//! ONNX tensors: element types, `TensorProto` → [`TensorData`] (raw, typed fields and external
//! data), and declared value types.
//!
//! `raw_data` is never copied: the decoded `Bytes` is a slice of the file's memory map. Sizes
//! declared by `dims` are checked against the bytes present before anything is allocated.
//!
//! float16 and bfloat16 models run in f32: [`dtype_of`] gives f32 for both (declared inputs and
//! outputs, Cast's `to`), and their tensors are widened to f32 once, as they are read (every
//! 16-bit value is exactly an f32). A Cast to float16 is then a cast to f32: the model computes
//! in f32 throughout, without rounding to 16 bits between ops.

use super::limits::ImportLimits;
use super::mapped::MappedFile;
use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::TensorProto;
use bytes::Bytes;
use cimc_ir::{DType, TensorData};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

type R<T> = Result<T, String>;

/// The IR dtype of an ONNX `TensorProto.DataType` code.
pub fn dtype_of(code: i32) -> R<DType> {
    let dt = DataType::try_from(code).map_err(|_| format!("unknown element type code {code}"))?;
    Ok(match dt {
        DataType::Float => DType::F32,
        DataType::Double => DType::F64,
        DataType::Int8 => DType::I8,
        DataType::Uint8 => DType::U8,
        DataType::Int16 => DType::I16,
        DataType::Uint16 => DType::U16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Bool => DType::Bool,
        DataType::Float16 | DataType::Bfloat16 => DType::F32,
        other => {
            return Err(format!(
            "element type {} is not supported (f32, f64, f16 and bf16 read as f32, i8, u8, i16, \
                 u16, i32, i64, bool)",
            other.as_str_name()
        ))
        }
    })
}

/// A 16-bit float format, stored as 2 bytes and widened to f32 as it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Half {
    F16,
    Bf16,
}

impl Half {
    fn of(code: i32) -> Option<Half> {
        match DataType::try_from(code) {
            Ok(DataType::Float16) => Some(Half::F16),
            Ok(DataType::Bfloat16) => Some(Half::Bf16),
            _ => None,
        }
    }

    fn to_f32(self, bits: u16) -> f32 {
        match self {
            Half::F16 => crate::npy::f16_to_f32(bits),
            Half::Bf16 => f32::from_bits(u32::from(bits) << 16),
        }
    }

    /// Little-endian 16-bit values widened to little-endian f32 bytes.
    fn widen(self, bytes: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(bytes.len() * 2);
        for c in bytes.chunks_exact(2) {
            let v = self.to_f32(u16::from_le_bytes([c[0], c[1]]));
            out.extend_from_slice(&v.to_le_bytes());
        }
        Bytes::from(out)
    }
}

/// Absolute bound on any tensor size computed from declared dims (bytes): sizes above it are
/// refused as overflow before any comparison; the configurable cap is
/// [`ImportLimits::max_tensor_bytes`].
pub const MAX_TENSOR_BYTES: usize = 1 << 36;

/// Checked element count and byte size of `shape` in `dtype`.
pub fn byte_size(dtype: DType, shape: &[usize]) -> R<(usize, usize)> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has too many elements"))?;
    let b = n.checked_mul(dtype.size()).filter(|&b| b <= MAX_TENSOR_BYTES).ok_or_else(|| {
        format!("{dtype}{shape:?} is too large ({n} elements, limit {MAX_TENSOR_BYTES} bytes)")
    })?;
    Ok((n, b))
}

/// Reads tensors, resolving external data relative to `dir` (never outside it) and
/// memory-mapping each external file once.
pub struct TensorReader {
    dir: PathBuf,
    /// Each external file's map (`None`: empty) and its whole bytes.
    files: HashMap<PathBuf, (Option<MappedFile>, Bytes)>,
    /// The map of the model file the `TensorProto`s were decoded from, when it is one: large
    /// `raw_data` then own their pages ([`MappedFile::tensor_bytes`]).
    model_map: Option<MappedFile>,
    pub limits: ImportLimits,
    /// Bytes of the constants read or created so far ([`ImportLimits::max_constant_bytes`]).
    constant_bytes: std::cell::Cell<usize>,
    /// Bytes of the constants created so far ([`ImportLimits::max_created_bytes`]).
    created_bytes: std::cell::Cell<usize>,
}

impl TensorReader {
    pub fn new(dir: PathBuf, limits: ImportLimits) -> TensorReader {
        TensorReader {
            dir,
            files: HashMap::new(),
            model_map: None,
            limits,
            constant_bytes: std::cell::Cell::new(0),
            created_bytes: std::cell::Cell::new(0),
        }
    }

    /// A reader of tensors decoded from `map`'s bytes.
    pub fn with_model_map(mut self, map: Option<MappedFile>) -> TensorReader {
        self.model_map = map;
        self
    }

    /// Fails when a constant the importer would create itself (ConstantOfShape, Range,
    /// folding) exceeds the tensor cap, or brings the constants it created to more than
    /// [`ImportLimits::max_created_bytes`]; checked before the constant is made.
    pub fn check_created(&self, dtype: DType, shape: &[usize]) -> R<()> {
        self.limits.check_rank(shape.len(), || format!("the constant {dtype}[..]"))?;
        let (_, b) = byte_size(dtype, shape)?;
        self.limits.check_tensor(b, || format!("the constant {dtype}{shape:?}"))?;
        let created = self.created_bytes.get().saturating_add(b);
        let cap = self.limits.max_created_bytes;
        if created > cap {
            return Err(format!(
                "with the constant {dtype}{shape:?} ({b} bytes) the constants the importer creates \
                 reach {created} bytes, above the limit of {cap} bytes (raise it with \
                 --max-created-bytes)"
            ));
        }
        self.count_constant(b, || format!("the constant {dtype}{shape:?} it creates"))?;
        self.created_bytes.set(created);
        Ok(())
    }

    /// Adds `bytes` of a constant (described by `what`) to the import's total, failing above
    /// [`ImportLimits::max_constant_bytes`]: checked before the constant is made.
    fn count_constant(&self, bytes: usize, what: impl FnOnce() -> String) -> R<()> {
        let total = self.constant_bytes.get().saturating_add(bytes);
        self.limits.check_constants(total, what)?;
        self.constant_bytes.set(total);
        Ok(())
    }

    /// Converts a tensor; messages start with the tensor's name.
    pub fn read(&mut self, t: &TensorProto) -> R<TensorData> {
        let name = t.name.as_deref().unwrap_or("");
        self.read_inner(t).map_err(|e| format!("tensor '{name}': {e}"))
    }

    fn read_inner(&mut self, t: &TensorProto) -> R<TensorData> {
        let code = t.data_type.ok_or("no data_type")?;
        let dtype = dtype_of(code)?;
        if t.segment.is_some() {
            return Err("segmented tensors are not supported".into());
        }
        self.limits.check_rank(t.dims.len(), || format!("{dtype}[..]"))?;
        let shape = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("negative dim in {:?}", t.dims)))
            .collect::<R<Vec<usize>>>()?;
        if let Some(half) = Half::of(code) {
            return self.read_half(t, half, shape);
        }
        let (n, nbytes) = byte_size(dtype, &shape)?;
        let external = t.data_location == Some(DataLocation::External as i32);
        let bytes = if external {
            self.external(t, nbytes)?
        } else if let Some(raw) = &t.raw_data {
            if raw.len() != nbytes {
                return Err(format!(
                    "{dtype}{shape:?} needs {nbytes} bytes of raw_data, found {}",
                    raw.len()
                ));
            }
            self.model_map.as_ref().and_then(|m| m.tensor_bytes(raw)).unwrap_or_else(|| raw.clone())
        } else {
            typed_fields(t, dtype, n)?
        };
        // The bytes are present (checked above against the declared size): now the caps.
        self.limits.check_tensor(nbytes, || format!("{dtype}{shape:?}"))?;
        self.count_constant(nbytes, || format!("{dtype}{shape:?}"))?;
        TensorData::from_raw(dtype, shape, bytes).map_err(|e| e.to_string())
    }

    /// A float16 or bfloat16 tensor (raw, external, or its bits in `int32_data`), widened to
    /// f32; the size checks are those of a 2-byte type, the cap applies to the f32 result.
    fn read_half(&mut self, t: &TensorProto, half: Half, shape: Vec<usize>) -> R<TensorData> {
        let (n, nbytes) = byte_size(DType::I16, &shape)?;
        let (_, wide_bytes) = byte_size(DType::F32, &shape)?;
        let name = if half == Half::F16 { "f16" } else { "bf16" };
        let bytes = if t.data_location == Some(DataLocation::External as i32) {
            self.external(t, nbytes)?
        } else if let Some(raw) = &t.raw_data {
            if raw.len() != nbytes {
                return Err(format!(
                    "{name}{shape:?} needs {nbytes} bytes of raw_data, found {}",
                    raw.len()
                ));
            }
            raw.clone()
        } else {
            if t.int32_data.len() != n {
                return Err(format!(
                    "{name} tensor of {n} elements has {} entries in int32_data",
                    t.int32_data.len()
                ));
            }
            t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect()
        };
        self.limits.check_tensor(wide_bytes, || format!("{name}{shape:?} widened to f32"))?;
        self.count_constant(wide_bytes, || format!("{name}{shape:?} widened to f32"))?;
        TensorData::from_raw(DType::F32, shape, half.widen(&bytes)).map_err(|e| e.to_string())
    }

    fn external(&mut self, t: &TensorProto, nbytes: usize) -> R<Bytes> {
        let mut location = None;
        let (mut offset, mut length) = (0usize, None);
        for kv in &t.external_data {
            let v = kv.value.as_deref().unwrap_or("");
            match kv.key.as_deref().unwrap_or("") {
                "location" => location = Some(v.to_string()),
                "offset" => {
                    offset = v.parse().map_err(|_| format!("bad external data offset '{v}'"))?
                }
                "length" => {
                    length = Some(
                        v.parse::<usize>()
                            .map_err(|_| format!("bad external data length '{v}'"))?,
                    )
                }
                _ => {}
            }
        }
        let location = location.ok_or("external data without a location")?;
        let rel = Path::new(&location);
        if rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(format!(
                "external data location '{location}' must be a relative path without '..'"
            ));
        }
        if let Some(l) = length {
            if l != nbytes {
                return Err(format!(
                    "external data length {l} differs from the {nbytes} bytes the tensor needs"
                ));
            }
        }
        let path = self.dir.join(rel);
        if !self.files.contains_key(&path) {
            // A symbolic link may still lead out of the model's folder: compare real paths.
            let real = path
                .canonicalize()
                .map_err(|e| format!("external data '{}': {e}", path.display()))?;
            let dir = if self.dir.as_os_str().is_empty() { Path::new(".") } else { &self.dir };
            let real_dir = dir
                .canonicalize()
                .map_err(|e| format!("external data folder '{}': {e}", dir.display()))?;
            if !real.starts_with(&real_dir) {
                return Err(format!(
                    "external data location '{location}' leads out of the model's folder (to '{}')",
                    real.display()
                ));
            }
            let m = MappedFile::open(&path)
                .map_err(|e| format!("external data '{}': {e}", path.display()))?;
            let b = m.as_ref().map_or_else(Bytes::new, MappedFile::bytes);
            self.files.insert(path.clone(), (m, b));
        }
        let (map, file) = &self.files[&path];
        let end = offset.checked_add(nbytes).filter(|&e| e <= file.len()).ok_or_else(|| {
            format!(
                "external data '{}': bytes {offset}..{offset}+{nbytes} lie beyond its {} bytes",
                path.display(),
                file.len()
            )
        })?;
        let slice = file.slice(offset..end);
        Ok(map.as_ref().and_then(|m| m.tensor_bytes(&slice)).unwrap_or(slice))
    }
}

/// The data of a tensor stored in the typed fields, as little-endian bytes.
fn typed_fields(t: &TensorProto, dtype: DType, n: usize) -> R<Bytes> {
    let (len, field) = match dtype {
        DType::F32 => (t.float_data.len(), "float_data"),
        DType::F64 => (t.double_data.len(), "double_data"),
        DType::I64 => (t.int64_data.len(), "int64_data"),
        _ => (t.int32_data.len(), "int32_data"),
    };
    if len != n {
        return Err(format!("{dtype} tensor of {n} elements has {len} entries in {field}"));
    }
    let mut out = Vec::with_capacity(n * dtype.size());
    match dtype {
        DType::F32 => t.float_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::F64 => t.double_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I64 => t.int64_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I32 => t.int32_data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        DType::I16 => {
            t.int32_data.iter().for_each(|&v| out.extend_from_slice(&(v as i16).to_le_bytes()))
        }
        DType::U16 => {
            t.int32_data.iter().for_each(|&v| out.extend_from_slice(&(v as u16).to_le_bytes()))
        }
        DType::I8 => out.extend(t.int32_data.iter().map(|&v| v as i8 as u8)),
        DType::U8 => out.extend(t.int32_data.iter().map(|&v| v as u8)),
        DType::Bool => out.extend(t.int32_data.iter().map(|&v| (v != 0) as u8)),
    }
    Ok(Bytes::from(out))
}

/// Memory-maps a file (zero copy); an empty file gives empty bytes.
pub fn map_file(path: &Path) -> std::io::Result<Bytes> {
    Ok(MappedFile::open(path)?.map_or_else(Bytes::new, |m| m.bytes()))
}
