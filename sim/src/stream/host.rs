//! `host`: the float operations at the edges of the network, on global memory. Each is the
//! program's own arithmetic (`arith::quantize_value`, `program::dequantize`,
//! `program::softmax`), so results are bit-identical; f32 values are words holding their bit
//! pattern in the low 32 bits.

use crate::program::{dequantize, softmax};
use cimc_backends::arith::quantize_value;
use cimc_backends::stream::HostEntry;

/// The f32 a word holds.
pub(super) fn word_f32(w: i64) -> f32 {
    f32::from_bits(w as u32)
}

/// The word holding an f32 (its bit pattern, zero-extended).
pub(super) fn f32_word(v: f32) -> i64 {
    v.to_bits() as i64
}

fn region(global: &[i64], start: u32, len: usize) -> Result<&[i64], String> {
    global.get(start as usize..start as usize + len).ok_or_else(|| {
        format!("global words {start}..{} lie outside the global memory", start as usize + len)
    })
}

fn write(
    global: &mut [i64],
    start: u32,
    vals: impl ExactSizeIterator<Item = i64>,
) -> Result<(), String> {
    let len = vals.len();
    let dst = global.get_mut(start as usize..start as usize + len).ok_or_else(|| {
        format!("global words {start}..{} lie outside the global memory", start as usize + len)
    })?;
    for (d, v) in dst.iter_mut().zip(vals) {
        *d = v;
    }
    Ok(())
}

/// Runs one host entry on the global memory.
pub(super) fn run(h: &HostEntry, global: &mut [i64]) -> Result<(), String> {
    match h {
        HostEntry::Quantize { src, dst, len, scale, zero_point, lo, hi } => {
            if lo > hi {
                return Err(format!("empty clamp range {lo}..={hi}"));
            }
            let codes: Vec<i64> = region(global, *src, *len as usize)?
                .iter()
                .map(|&w| quantize_value(word_f32(w), *scale, *zero_point, *lo, *hi) as i64)
                .collect();
            write(global, *dst, codes.into_iter())
        }
        HostEntry::Dequantize { src, dst, shape, quant } => {
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let n = shape.iter().product();
            let codes = region(global, *src, n)?
                .iter()
                .map(|&w| {
                    i32::try_from(w).map_err(|_| format!("dequantize: word {w} is not a code"))
                })
                .collect::<Result<Vec<i32>, String>>()?;
            if quant.scale.is_empty() || quant.zero_point.is_empty() {
                return Err("dequantize: no scale".into());
            }
            let vals = dequantize(&codes, &shape, quant)?;
            write(global, *dst, vals.into_iter().map(f32_word))
        }
        HostEntry::Softmax { src, dst, shape, axis } => {
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            let n = shape.iter().product();
            let x: Vec<f32> = region(global, *src, n)?.iter().map(|&w| word_f32(w)).collect();
            let y = softmax(&x, &shape, *axis as usize)?;
            write(global, *dst, y.into_iter().map(f32_word))
        }
    }
}
