//! The sidecar data file: the bytes of the constants the text form prints as `= data`.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! magic    8 bytes  "CIMCDATA"
//! version  u32      1
//! count    u32      number of entries
//! entry*   in the order the constants appear in the text (value-id order):
//!   name_len  u32, name (UTF-8, name_len bytes)
//!   dtype_len u8,  dtype name (ASCII: "f32", "i64", ...)
//!   rank      u32, dims (u64 each, rank of them)
//!   byte_len  u64  (= product(dims) * dtype size)
//!   zero padding so the data starts at a multiple of 16 bytes from the file start
//!   data      byte_len bytes, row-major, little-endian
//! ```
//!
//! The file is deterministic (same graph, same bytes). [`read_data`] checks every length
//! against the bytes present before allocating, so a truncated or corrupt file gives an error
//! naming the byte offset, never a panic.

use crate::error::{IrError, Result};
use crate::print::{const_form, ConstForm};
use crate::{DType, Graph, TensorData, ValueDef};
use bytes::Bytes;
use std::collections::HashMap;

pub const MAGIC: &[u8; 8] = b"CIMCDATA";
pub const VERSION: u32 = 1;
/// Data starts at a multiple of this many bytes from the start of the file.
pub const ALIGN: usize = 16;
/// The largest rank an entry may declare.
pub const MAX_RANK: usize = 64;

/// One constant of the data file.
#[derive(Clone, Debug, PartialEq)]
pub struct DataEntry {
    pub name: String,
    pub data: TensorData,
    /// Byte offset of the entry in the file (for messages).
    pub offset: usize,
}

/// The constants of `g` the text form prints as `= data`, in value-id order.
fn referenced(g: &Graph) -> impl Iterator<Item = (&str, &TensorData)> {
    g.values().filter_map(|(_, v)| match &v.def {
        ValueDef::Const(d) if const_form(d) == ConstForm::Data => Some((v.name.as_str(), d)),
        _ => None,
    })
}

/// Whether the text form of `g` refers to a data file (some constant prints as `= data`).
/// When it does not, [`write_data`] gives a file with no entries, which need not be written.
pub fn has_referenced_data(g: &Graph) -> bool {
    referenced(g).next().is_some()
}

/// The data file of `g`: the bytes of every constant the text form prints as `= data`.
pub fn write_data(g: &Graph) -> Vec<u8> {
    let entries: Vec<(&str, &TensorData)> = referenced(g).collect();
    let total: usize =
        entries.iter().map(|(n, d)| 64 + n.len() + 8 * d.shape().len() + d.raw().len()).sum();
    let mut out = Vec::with_capacity(16 + total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (name, d) in entries {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        let dt = d.dtype().name();
        out.push(dt.len() as u8);
        out.extend_from_slice(dt.as_bytes());
        out.extend_from_slice(&(d.shape().len() as u32).to_le_bytes());
        for &dim in d.shape() {
            out.extend_from_slice(&(dim as u64).to_le_bytes());
        }
        out.extend_from_slice(&(d.raw().len() as u64).to_le_bytes());
        out.resize(out.len().next_multiple_of(ALIGN), 0);
        out.extend_from_slice(d.raw());
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn err(pos: usize, msg: impl std::fmt::Display) -> IrError {
    IrError::Other(format!("data file, byte {pos}: {msg}"))
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(err(self.pos, format!("{what} needs {n} bytes, only {left} left")));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len(&mut self, what: &str) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        usize::try_from(n).map_err(|_| err(at, format!("{what} {n} is too large")))
    }
}

/// Reads and validates a data file. Entry names are unique.
pub fn read_data(buf: &[u8]) -> Result<Vec<DataEntry>> {
    let mut r = Reader { buf, pos: 0 };
    let magic = r.take(8, "the magic")?;
    if magic != MAGIC {
        return Err(err(0, "not a cimc data file (the magic is not \"CIMCDATA\")"));
    }
    let version = r.u32("the version")?;
    if version != VERSION {
        return Err(err(8, format!("unsupported version {version} (this build reads {VERSION})")));
    }
    let count = r.u32("the entry count")?;
    let mut entries: Vec<DataEntry> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..count {
        let offset = r.pos;
        let name_len = r.u32("an entry's name length")? as usize;
        let at = r.pos;
        let name = std::str::from_utf8(r.take(name_len, "an entry's name")?)
            .map_err(|_| err(at, format!("entry {i}: the name is not UTF-8")))?
            .to_string();
        let named = |pos: usize, msg: String| err(pos, format!("entry '{name}': {msg}"));
        if let Some(prev) = seen.insert(name.clone(), offset) {
            return Err(named(offset, format!("duplicate name (first at byte {prev})")));
        }
        let dt_len = r.u8("the dtype length")? as usize;
        let at = r.pos;
        let dt_bytes = r.take(dt_len, "the dtype")?;
        let dtype =
            std::str::from_utf8(dt_bytes).ok().and_then(DType::from_name).ok_or_else(|| {
                named(at, format!("unknown dtype '{}'", String::from_utf8_lossy(dt_bytes)))
            })?;
        let at = r.pos;
        let rank = r.u32("the rank")? as usize;
        if rank > MAX_RANK {
            return Err(named(at, format!("rank {rank} is larger than {MAX_RANK}")));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(r.len("a dimension")?);
        }
        let at = r.pos;
        let byte_len = r.len("the byte length")?;
        let want = shape.iter().try_fold(dtype.size(), |a, &d| a.checked_mul(d));
        if want != Some(byte_len) {
            let want = want.map_or("more than usize::MAX".to_string(), |w| w.to_string());
            return Err(named(
                at,
                format!("byte length {byte_len} does not match {dtype}{shape:?} ({want} bytes)"),
            ));
        }
        let at = r.pos;
        let pad = r.take(at.next_multiple_of(ALIGN) - at, "the alignment padding")?;
        if pad.iter().any(|&b| b != 0) {
            return Err(named(at, "alignment padding is not zero".into()));
        }
        let bytes = Bytes::copy_from_slice(r.take(byte_len, "the data")?);
        let data =
            TensorData::from_raw(dtype, shape, bytes).map_err(|e| named(at, e.to_string()))?;
        entries.push(DataEntry { name, data, offset });
    }
    if r.pos != buf.len() {
        return Err(err(r.pos, format!("{} bytes after the last entry", buf.len() - r.pos)));
    }
    Ok(entries)
}
