//! Reading and writing NumPy `.npy` files (format versions 1.0, 2.0 and 3.0, little-endian,
//! C order). The header's declared shape is checked against the bytes present before anything
//! is allocated, so a hostile header cannot make cimc allocate without bound.

use crate::error::{Error, Result};
use bytes::Bytes;
use cimc_ir::{DType, TensorData};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a `.npy` file into constant data (dtype, shape, raw little-endian bytes).
pub fn read(path: &Path) -> Result<TensorData> {
    let bytes = cimc_ir::files::read_regular(path, u64::MAX).map_err(|e| Error::io(path, e))?;
    parse(Bytes::from(bytes)).map_err(|msg| Error::Npy { file: path.to_path_buf(), msg })
}

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: Bytes) -> std::result::Result<TensorData, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (missing the \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (header_len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let end = start.checked_add(header_len).filter(|&e| e <= bytes.len()).ok_or_else(|| {
        format!(
            "header of {header_len} bytes runs past the end of the file ({} bytes)",
            bytes.len()
        )
    })?;
    let header = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| "header is not valid text".to_string())?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    if fortran.trim() != "False" {
        return Err(
            "Fortran-order arrays are not supported (save with np.ascontiguousarray)".into()
        );
    }
    let shape_text = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let shape = parse_shape(shape_text)?;
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "|i1" | "<i1" => DType::I8,
        "|u1" | "<u1" => DType::U8,
        "<i2" => DType::I16,
        "<u2" => DType::U16,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "|b1" => DType::Bool,
        other => {
            return Err(format!(
                "unsupported dtype '{other}' (expected little-endian f4, f8, i1, u1, i2, u2, i4, i8 or b1)"
            ))
        }
    };
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("declared shape overflows")?;
    let want = numel.checked_mul(dtype.size()).ok_or("declared size overflows")?;
    let have = bytes.len() - end;
    if want != have {
        return Err(format!(
            "header declares {} {shape:?} = {want} bytes of data, the file holds {have}",
            dtype
        ));
    }
    TensorData::from_raw(dtype, shape, bytes.slice(end..)).map_err(|e| e.to_string())
}

/// The text of `key`'s value in a Python dict literal (up to the next top-level comma). A key
/// given twice has its last value, as in Python (and so in numpy).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}'");
    let pat2 = format!("\"{key}\"");
    let pos = header.rfind(&pat1).max(header.rfind(&pat2))?;
    let rest = &header[pos + pat1.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    Some(rest.trim())
}

fn parse_shape(s: &str) -> std::result::Result<Vec<usize>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("shape '{s}' is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad dimension '{t}' in shape"))
        })
        .collect()
}

/// Serializes constant data as a version 1.0 `.npy` file.
pub fn to_bytes(data: &TensorData) -> Vec<u8> {
    let descr = match data.dtype() {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I16 => "<i2",
        DType::U16 => "<u2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
    };
    let shape = match data.shape() {
        [d] => format!("({d},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending the header with a newline.
    let total = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.raw().len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data.raw());
    out
}

/// Writes constant data to a `.npy` file, whole or not at all.
pub fn write(path: &Path, data: &TensorData) -> Result<()> {
    let mut outs = crate::output::Outputs::default();
    outs.write(path, to_bytes(data))?;
    outs.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_has_its_last_value_as_in_numpy() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'shape': (1,), }";
        assert_eq!(dict_value(h, "shape"), Some("(1,)"));
        assert_eq!(dict_value(h, "descr"), Some("'<f4'"));
    }

    #[test]
    fn roundtrip_f32() {
        let d = TensorData::from_f32(vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        let back = parse(Bytes::from(to_bytes(&d))).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn roundtrip_1d_and_scalar() {
        let d = TensorData::from_i64(vec![3], &[1, -2, 3]);
        assert_eq!(parse(Bytes::from(to_bytes(&d))).unwrap(), d);
        let s = TensorData::from_f64(vec![], &[2.5]);
        assert_eq!(parse(Bytes::from(to_bytes(&s))).unwrap(), s);
    }

    #[test]
    fn refuses_huge_declared_shape_without_allocating() {
        let d = TensorData::from_f32(vec![1], &[0.0]);
        let mut b = to_bytes(&d);
        let text = String::from_utf8_lossy(&b[10..]).replace("(1,)", "(1000000000,)");
        b.truncate(10);
        b.extend_from_slice(text.as_bytes());
        let err = parse(Bytes::from(b)).unwrap_err();
        assert!(err.contains("declares"), "{err}");
    }

    #[test]
    fn refuses_garbage() {
        for b in [&b""[..], b"\x93NUMPY", b"hello world, not npy", b"\x93NUMPY\x01\x00\xff\xff{"] {
            assert!(parse(Bytes::copy_from_slice(b)).is_err());
        }
    }
}
