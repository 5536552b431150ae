//! The binary encoding: every instruction takes [`WIDTH`] bytes. Byte 0 is the opcode; the
//! fields follow from byte 1 in declaration order, each a whole number of bytes, little-endian
//! (`i32` in two's complement, an `Encoding` as one byte); the remaining bytes are reserved and
//! zero. The layout is derived from [`INSTRS`], so it cannot disagree with the text form or the
//! documentation.
//!
//! Decoding never panics: an unknown opcode, a field outside its range, a reserved byte that is
//! not zero and a truncated instruction are errors naming the instruction's index.

#[cfg(doc)]
use super::INSTRS;
use super::{info_by_opcode, FieldInfo, Instr, InstrInfo, MAX_FIELDS, WIDTH};
use crate::error::{BackendError, Result};

/// The encoding of one instruction. Ranges are not checked (see [`Instr::validate`]): a value
/// out of range encodes, and the decoder rejects it.
pub fn encode(instr: &Instr) -> [u8; WIDTH] {
    let mut out = [0u8; WIDTH];
    out[0] = instr.opcode();
    let values = instr.values();
    for ((at, f), &v) in instr.info().offsets().zip(values.iter()) {
        let n = f.kind.bytes();
        out[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
    }
    out
}

/// The encoding of a list of instructions, one after the other.
pub fn encode_all(instrs: &[Instr]) -> Vec<u8> {
    let mut out = Vec::with_capacity(instrs.len() * WIDTH);
    for i in instrs {
        out.extend_from_slice(&encode(i));
    }
    out
}

/// Decodes instruction `index` of `stream` (the bytes `index·WIDTH .. (index+1)·WIDTH`).
pub fn decode(stream: &[u8], index: usize) -> Result<Instr> {
    let start = index.checked_mul(WIDTH).filter(|&s| s < stream.len()).ok_or_else(|| {
        BackendError::Format(format!(
            "instruction {index}: beyond the end of the stream ({} bytes)",
            stream.len()
        ))
    })?;
    match stream.get(start..start + WIDTH) {
        Some(word) => {
            let word: &[u8; WIDTH] = word.try_into().expect("invariant: the slice has WIDTH bytes");
            decode_word(word, index)
        }
        None => Err(BackendError::Format(format!(
            "instruction {index}: truncated ({} of {WIDTH} bytes)",
            stream.len() - start
        ))),
    }
}

/// Decodes a whole list; its length must be a multiple of [`WIDTH`].
pub fn decode_all(stream: &[u8]) -> Result<Vec<Instr>> {
    let n = stream.len().div_ceil(WIDTH);
    (0..n).map(|i| decode(stream, i)).collect()
}

/// Decodes one encoded instruction; `index` is its position, for messages.
pub fn decode_word(word: &[u8; WIDTH], index: usize) -> Result<Instr> {
    let op = word[0];
    let info = info_by_opcode(op).ok_or_else(|| {
        BackendError::Format(format!("instruction {index}: unknown opcode 0x{op:02x}"))
    })?;
    let mut values = [0i64; MAX_FIELDS];
    let mut end = 1;
    for (k, (at, f)) in info.offsets().enumerate() {
        let v = read_field(word, at, f);
        if v < f.min || v > f.max {
            return Err(field_error(index, info, f, at, v));
        }
        values[k] = v;
        end = at + f.kind.bytes();
    }
    if let Some(p) = word[end..].iter().position(|&b| b != 0) {
        return Err(BackendError::Format(format!(
            "instruction {index} ({}): reserved byte {} is 0x{:02x}, must be 0",
            info.mnemonic,
            end + p,
            word[end + p]
        )));
    }
    Instr::from_values(op, &values[..info.fields.len()]).ok_or_else(|| {
        BackendError::Format(format!(
            "instruction {index} ({}): field values do not form an instruction",
            info.mnemonic
        ))
    })
}

fn read_field(word: &[u8; WIDTH], at: usize, f: &FieldInfo) -> i64 {
    let n = f.kind.bytes();
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&word[at..at + n]);
    let raw = u64::from_le_bytes(b);
    if f.kind.signed() {
        let unused = 64 - 8 * n as u32;
        ((raw << unused) as i64) >> unused
    } else {
        raw as i64
    }
}

fn field_error(index: usize, info: &InstrInfo, f: &FieldInfo, at: usize, v: i64) -> BackendError {
    BackendError::Format(format!(
        "instruction {index} ({}): field `{}` (bytes {}..{}) = {v} is out of range {}",
        info.mnemonic,
        f.name,
        at,
        at + f.kind.bytes(),
        f.range_text()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::WeightEncoding;

    fn msg<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(BackendError::Format(m)) => m,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn layout_example() {
        let i = Instr::Mvm { group: 0x0102, src: 0x03040506, dst: 7, count: 0xfffffffe };
        let w = encode(&i);
        assert_eq!(
            w[..16],
            [0x22, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 7, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0]
        );
        assert!(w[15..].iter().all(|&b| b == 0));
        assert_eq!(decode(&w, 0).unwrap(), i);
        let f = Instr::Fill { dst: 1, len: 2, value: -2 };
        let w = encode(&f);
        assert_eq!(w[9..13], [0xfe, 0xff, 0xff, 0xff]);
        assert_eq!(decode(&w, 0).unwrap(), f);
    }

    #[test]
    fn errors_name_the_instruction() {
        let mut s = encode_all(&[
            Instr::Sync { barrier: 1 },
            Instr::Load { dst: 0, src: 0, len: 4, elem_bytes: 1 },
            Instr::Halt {},
        ]);
        assert_eq!(decode_all(&s).unwrap().len(), 3);
        // Unknown opcode.
        let mut t = s.clone();
        t[WIDTH] = 0x7f;
        assert!(msg(decode_all(&t)).contains("instruction 1: unknown opcode 0x7f"));
        t[WIDTH] = 0;
        assert!(msg(decode_all(&t)).contains("instruction 1: unknown opcode 0x00"));
        // Field out of range: elem_bytes = 0.
        let mut t = s.clone();
        t[WIDTH + 13] = 0;
        let m = msg(decode_all(&t));
        assert!(m.contains("instruction 1 (load)") && m.contains("elem_bytes"), "{m}");
        // Reserved byte.
        let mut t = s.clone();
        t[2 * WIDTH + 5] = 1;
        assert!(msg(decode_all(&t)).contains("instruction 2 (halt): reserved byte 5"));
        // Truncated last instruction.
        s.truncate(2 * WIDTH + 3);
        assert!(msg(decode_all(&s)).contains("instruction 2: truncated (3 of 24 bytes)"));
        assert!(msg(decode(&s, usize::MAX)).contains("beyond the end"));
        // Encoding out of range.
        let x = Instr::XbarConfig {
            group: 0,
            rows: 1,
            cols: 1,
            input_bits: 1,
            dac_bits: 1,
            cell_bits: 1,
            weight_bits: 2,
            magnitude_bits: 1,
            encoding: WeightEncoding::Offset,
            adc_bits: 1,
            adc_step: 0,
            input_min: 0,
            input_zero: 0,
        };
        let mut w = encode(&x);
        assert_eq!(decode(&w, 0).unwrap(), x);
        // Every encoding's index decodes to it; the next is out of range.
        for (i, &e) in WeightEncoding::ALL.iter().enumerate() {
            w[12] = i as u8;
            let got = decode(&w, 0).unwrap();
            assert!(matches!(got, Instr::XbarConfig { encoding, .. } if encoding == e));
        }
        w[12] = WeightEncoding::ALL.len() as u8;
        assert!(msg(decode(&w, 0)).contains("`encoding`"));
    }
}
