//! Reading and writing NumPy `.npy` files (format versions 1.0, 2.0 and 3.0, little-endian,
//! C order), and reading and writing `.npz` archives of several arrays. The header's declared shape is
//! checked against the bytes present before anything is allocated, so a hostile header cannot
//! make cimc allocate without bound. Half-precision arrays (`<f2`) are widened to f32 as they are read: every float model runs in f32, float16 ones included.

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
    let half = descr == "<f2";
    let dtype = match descr {
        "<f2" => DType::F32,
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
                "unsupported dtype '{other}' (expected little-endian f2, f4, f8, i1, u1, i2, u2, i4, i8 or b1)"
            ))
        }
    };
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("declared shape overflows")?;
    let element_bytes = if half { 2 } else { dtype.size() };
    let want = numel.checked_mul(element_bytes).ok_or("declared size overflows")?;
    let have = bytes.len() - end;
    if want != have {
        let name = if half { "f16".to_string() } else { dtype.to_string() };
        return Err(format!(
            "header declares {name} {shape:?} = {want} bytes of data, the file holds {have}"
        ));
    }
    if half {
        let widened: Vec<f32> = bytes[end..]
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect();
        return Ok(TensorData::from_f32(shape, &widened));
    }
    TensorData::from_raw(dtype, shape, bytes.slice(end..)).map_err(|e| e.to_string())
}

/// The value of an IEEE 754 binary16 number (exact: every f16 is an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        // Subnormal: mant · 2^-24, exact in f32.
        (0, m) => {
            let magnitude = m as f32 * f32::powi(2.0, -24);
            return if sign == 0 { magnitude } else { -magnitude };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
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

/// Serializes named arrays as a `.npz` archive, what `numpy.savez` writes and `numpy.load`
/// reads: a zip file with one `NAME.npy` member per array, stored (uncompressed), so the only
/// computation a zip needs is each member's CRC-32. Without zip64 a member and the archive must
/// stay under 4 GiB; a larger output is refused with a message naming it.
pub fn npz_bytes(arrays: &[(&str, &TensorData)]) -> std::result::Result<Vec<u8>, String> {
    const LOCAL: u32 = 0x0403_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    const END: u32 = 0x0605_4b50;
    // Version 2.0 of the format; names are UTF-8 (flag bit 11); DOS date 1980-01-01, 00:00.
    const VERSION: u16 = 20;
    const UTF8_NAMES: u16 = 1 << 11;
    const DATE: u16 = 0x21;
    let too_large = |what: &str| {
        format!("{what} is over 4 GiB, too large for a .npz (write one .npy per output)")
    };
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in arrays {
        let member = to_bytes(data);
        let file_name = format!("{name}.npy");
        let size =
            u32::try_from(member.len()).map_err(|_| too_large(&format!("output '{name}'")))?;
        let name_len = u16::try_from(file_name.len())
            .map_err(|_| format!("output name '{name}' is too long for a .npz"))?;
        let offset = u32::try_from(out.len()).map_err(|_| too_large("the archive"))?;
        let crc = crc32(&member);
        // The fields the local header and the central directory entry share, from the version
        // needed to the name's length.
        let mut common = Vec::with_capacity(26);
        for half in [VERSION, UTF8_NAMES, 0, 0, DATE] {
            common.extend_from_slice(&half.to_le_bytes());
        }
        for word in [crc, size, size] {
            common.extend_from_slice(&word.to_le_bytes());
        }
        common.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&LOCAL.to_le_bytes());
        out.extend_from_slice(&common);
        out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        out.extend_from_slice(file_name.as_bytes());
        out.extend_from_slice(&member);
        central.extend_from_slice(&CENTRAL.to_le_bytes());
        central.extend_from_slice(&VERSION.to_le_bytes()); // version made by
        central.extend_from_slice(&common);
        // Extra field and comment lengths, disk number, internal and external attributes.
        central.extend_from_slice(&[0; 2 + 2 + 2 + 2 + 4]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(file_name.as_bytes());
    }
    let count = u16::try_from(arrays.len()).map_err(|_| "more than 65535 outputs for a .npz")?;
    let central_offset = u32::try_from(out.len()).map_err(|_| too_large("the archive"))?;
    let central_size = u32::try_from(central.len()).map_err(|_| too_large("the archive"))?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&END.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // this disk, the disk where the directory starts
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    Ok(out)
}

/// Writes named arrays to a `.npz` file (`npz_bytes`).
pub fn write_npz(path: &Path, arrays: &[(&str, &TensorData)]) -> Result<()> {
    let bytes = npz_bytes(arrays).map_err(|msg| Error::Npy { file: path.to_path_buf(), msg })?;
    crate::output::write_whole(path, bytes)
}

/// Reads a `.npz` archive (what `numpy.savez` writes): its arrays in the archive's order, each
/// named by its member's name without `.npy`. Members must be stored (`numpy.savez`);
/// compressed ones (`numpy.savez_compressed`) are refused with a message saying so.
pub fn read_npz(path: &Path) -> Result<Vec<(String, TensorData)>> {
    let bytes = cimc_ir::files::read_regular(path, u64::MAX).map_err(|e| Error::io(path, e))?;
    parse_npz(Bytes::from(bytes)).map_err(|msg| Error::Npy { file: path.to_path_buf(), msg })
}

/// Reads a `.npy` file (one array, named "") or, by its extension, a `.npz` archive.
pub fn read_arrays(path: &Path) -> Result<Vec<(String, TensorData)>> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npz")) {
        read_npz(path)
    } else {
        Ok(vec![(String::new(), read(path)?)])
    }
}

/// Parses the bytes of a `.npz` archive through its central directory (zip64 sizes and
/// offsets included: `numpy.savez` writes its members with zip64 local headers). Every offset
/// and size is checked against the bytes present.
pub fn parse_npz(bytes: Bytes) -> std::result::Result<Vec<(String, TensorData)>, String> {
    const LOCAL: u32 = 0x0403_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    const END: u32 = 0x0605_4b50;
    const ZIP64_END: u32 = 0x0606_4b50;
    let n = bytes.len();
    let u16_at = |o: usize| -> std::result::Result<u64, String> {
        bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u64).ok_or_else(|| {
            format!("truncated .npz: a field at byte {o} runs past the end ({n} bytes)")
        })
    };
    let u32_at =
        |o: usize| -> std::result::Result<u64, String> { Ok(u16_at(o)? | (u16_at(o + 2)? << 16)) };
    let u64_at =
        |o: usize| -> std::result::Result<u64, String> { Ok(u32_at(o)? | (u32_at(o + 4)? << 32)) };
    let offset = |v: u64| usize::try_from(v).ok().filter(|&o| o <= n);
    // The end record: its 22 bytes, then a comment of at most 65535 bytes.
    let end = (0..=n.saturating_sub(22))
        .rev()
        .take(65536)
        .find(|&o| u32_at(o).ok() == Some(END as u64))
        .ok_or("not a .npz archive (no zip end-of-directory record)")?;
    let (mut count, mut dir) = (u16_at(end + 10)?, u32_at(end + 16)?);
    if (count == 0xffff || dir == 0xffff_ffff) && end >= 20 && u32_at(end - 20)? == 0x0706_4b50 {
        let z = offset(u64_at(end - 12)?).ok_or("zip64 end record offset out of range")?;
        if u32_at(z)? != ZIP64_END as u64 {
            return Err("malformed .npz: no zip64 end record where its locator points".into());
        }
        (count, dir) = (u64_at(z + 32)?, u64_at(z + 48)?);
    }
    let mut at = offset(dir).ok_or("malformed .npz: central directory offset out of range")?;
    let mut arrays = Vec::new();
    for _ in 0..count {
        if u32_at(at)? != CENTRAL as u64 {
            return Err(format!("malformed .npz: no central directory entry at byte {at}"));
        }
        let method = u16_at(at + 10)?;
        let (mut size, mut local) = (u32_at(at + 20)?, u32_at(at + 42)?);
        let name_len = u16_at(at + 28)? as usize;
        let extra_len = u16_at(at + 30)? as usize;
        let comment_len = u16_at(at + 32)? as usize;
        let name_bytes = bytes.get(at + 46..at + 46 + name_len).ok_or("truncated .npz entry")?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        // A zip64 extra field holds, in order, the sizes and offset whose 32-bit field is full.
        let mut e = at + 46 + name_len;
        let extra_end = e + extra_len;
        while e + 4 <= extra_end {
            let (id, len) = (u16_at(e)?, u16_at(e + 2)? as usize);
            if id == 1 {
                let mut f = e + 4;
                if u32_at(at + 24)? == 0xffff_ffff {
                    f += 8; // the uncompressed size
                }
                if size == 0xffff_ffff {
                    size = u64_at(f)?;
                    f += 8;
                }
                if local == 0xffff_ffff {
                    local = u64_at(f)?;
                }
            }
            e += 4 + len;
        }
        at = extra_end + comment_len;
        if method != 0 {
            return Err(format!(
                "member '{name}' is compressed (method {method}); save with numpy.savez, not \
                 numpy.savez_compressed"
            ));
        }
        let local = offset(local).ok_or_else(|| format!("member '{name}': offset out of range"))?;
        if u32_at(local)? != LOCAL as u64 {
            return Err(format!("malformed .npz: member '{name}' has no local header"));
        }
        let data = local + 30 + u16_at(local + 26)? as usize + u16_at(local + 28)? as usize;
        let stop = offset(size)
            .and_then(|s| data.checked_add(s))
            .filter(|&s| s <= n)
            .ok_or_else(|| format!("member '{name}' runs past the end of the archive"))?;
        let array = parse(bytes.slice(data..stop)).map_err(|e| format!("member '{name}': {e}"))?;
        arrays.push((name.strip_suffix(".npy").unwrap_or(&name).to_string(), array));
    }
    Ok(arrays)
}

/// The CRC-32 of zip files (IEEE 802.3 polynomial, reflected), bytewise from a table.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |c, &b| TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
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
    fn crc32_of_the_check_string() {
        // The check value of CRC-32/ISO-HDLC (the zip CRC).
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn npz_members_are_the_npy_files_stored() {
        let a = TensorData::from_f32(vec![2], &[1.0, -2.0]);
        let b = TensorData::from_i64(vec![], &[7]);
        let zip = npz_bytes(&[("logits", &a), ("index", &b)]).unwrap();
        // The first member's data follows its 30-byte header and name, unchanged.
        let npy = to_bytes(&a);
        assert_eq!(&zip[30 + "logits.npy".len()..][..npy.len()], &npy[..]);
        assert_eq!(&zip[zip.len() - 22..][..4], &0x0605_4b50u32.to_le_bytes());
        // Two entries in the end record.
        assert_eq!(&zip[zip.len() - 12..][..2], &2u16.to_le_bytes());
    }

    #[test]
    fn half_precision_is_widened_to_f32() {
        for (h, want) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 5.960_464_5e-8),
            (0x8001, -5.960_464_5e-8),
            (0x0000, 0.0),
            (0x7c00, f32::INFINITY),
            (0xfc00, f32::NEG_INFINITY),
        ] {
            assert_eq!(f16_to_f32(h), want, "{h:#06x}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
        assert!(f16_to_f32(0x8000).is_sign_negative());
        // A .npy of dtype <f2 reads as f32.
        let mut b = to_bytes(&TensorData::from_i16(vec![2], &[0x3c00, 0x3800]));
        let text = String::from_utf8(b[10..].to_vec()).unwrap().replace("<i2", "<f2");
        b.truncate(10);
        b.extend_from_slice(text.as_bytes());
        let d = parse(Bytes::from(b)).unwrap();
        assert_eq!(d, TensorData::from_f32(vec![2], &[1.0, 0.5]));
    }

    #[test]
    fn npz_reads_back_what_it_writes() {
        let a = TensorData::from_f32(vec![2], &[1.0, -2.0]);
        let b = TensorData::from_i64(vec![], &[7]);
        let zip = npz_bytes(&[("logits", &a), ("index", &b)]).unwrap();
        let back = parse_npz(Bytes::from(zip.clone())).unwrap();
        assert_eq!(back, vec![("logits".to_string(), a), ("index".to_string(), b)]);
        for cut in [0, 10, zip.len() / 2, zip.len() - 1] {
            assert!(parse_npz(Bytes::copy_from_slice(&zip[..cut])).is_err(), "{cut}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for b in [&b""[..], b"\x93NUMPY", b"hello world, not npy", b"\x93NUMPY\x01\x00\xff\xff{"] {
            assert!(parse(Bytes::copy_from_slice(b)).is_err());
        }
    }
}
