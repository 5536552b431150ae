//! The instructions of the digital units that work on whole tensors with a digital entry —
//! `lut`, `mul`, `softmax`, `layer_norm`, `gather`, `gather_rows`, `lut_per_element` and the
//! digital matrix unit's `matmul` — computed by the program interpreter's own functions for the
//! steps they execute (`Lut`, `Mul`, `IntSoftmax`, `IntLayerNorm`, `Gather`, `GatherRows`,
//! `LutPerElement`, `MatMulCodes`), so the
//! stream and the program cannot drift apart.

use crate::program::steps::{
    int_layer_norm, int_softmax, lut_per_element_codes, matmul_code_slices, LayerNormCodes,
};
use cimc_backends::program::GATHER_ZERO_POINT;
use cimc_backends::stream::DigitalEntry;

/// Words as codes (a word that is no i32 is an error).
fn codes(words: &[i64]) -> Result<Vec<i32>, String> {
    words
        .iter()
        .map(|&w| i32::try_from(w).map_err(|_| format!("the word {w} is not a code")))
        .collect()
}

fn usizes(s: &[u32]) -> Vec<usize> {
    s.iter().map(|&d| d as usize).collect()
}

/// `lut`: `out[i] = table[x[i] − input_min]`.
pub(super) fn lut(e: &DigitalEntry, x: &[i64], out: &mut [i64]) -> Result<(), String> {
    let DigitalEntry::Lut { input_min, table } = e else {
        return Err(format!("a {} entry for lut", e.kind()));
    };
    for (o, &q) in out.iter_mut().zip(x) {
        let at = q.checked_sub(*input_min as i64).and_then(|d| usize::try_from(d).ok());
        *o = *at
            .and_then(|d| table.get(d))
            .ok_or_else(|| format!("the code {q} is outside the table"))? as i64;
    }
    Ok(())
}

/// `mul`: the requantized product of the centred codes, as the program's `Mul`.
pub(super) fn mul(e: &DigitalEntry, a: &[i64], b: &[i64], out: &mut [i64]) -> Result<(), String> {
    let DigitalEntry::Mul { a_zero_point, b_zero_point, requant } = e else {
        return Err(format!("a {} entry for mul", e.kind()));
    };
    let (za, zb) = (*a_zero_point as i64, *b_zero_point as i64);
    for ((o, &qa), &qb) in out.iter_mut().zip(codes(a)?.iter()).zip(codes(b)?.iter()) {
        *o = requant.apply((qa as i64 - za) * (qb as i64 - zb), 0) as i64;
    }
    Ok(())
}

/// `softmax`, `layer_norm`, `gather`, `gather_rows`, `lut_per_element`: `out` (the entry's output length) from the
/// source `x` (its input length).
pub(super) fn tensor_op(e: &DigitalEntry, x: &[i64], out: &mut [i64]) -> Result<(), String> {
    let y: Vec<i32> = match e {
        DigitalEntry::Softmax { shape, axis, exp_table, requant } => {
            int_softmax(&codes(x)?, &usizes(shape), *axis as usize, exp_table, requant)?
        }
        DigitalEntry::LayerNorm {
            n, input_zero_point, epsilon_term, gamma, beta, requant, ..
        } => {
            let p = LayerNormCodes {
                zero_point: *input_zero_point,
                epsilon_term: *epsilon_term,
                gamma,
                beta,
                requant,
            };
            int_layer_norm(&codes(x)?, *n as usize, &p)?
        }
        DigitalEntry::Gather { index, fill, .. } => {
            for (o, &i) in out.iter_mut().zip(index) {
                *o = if i == GATHER_ZERO_POINT { *fill as i64 } else { x[i as usize] };
            }
            return Ok(());
        }
        DigitalEntry::GatherRows { rows, table, .. } => {
            let row = table.len() / (*rows as usize).max(1);
            for (k, &idx) in x.iter().enumerate() {
                let at = if idx < 0 { idx + *rows as i64 } else { idx };
                if at < 0 || at >= *rows as i64 {
                    return Err(format!("index {idx} outside [-{rows}, {rows})"));
                }
                let src = &table[at as usize * row..(at as usize + 1) * row];
                for (o, &v) in out[k * row..(k + 1) * row].iter_mut().zip(src) {
                    *o = v as i64;
                }
            }
            return Ok(());
        }
        DigitalEntry::LutPerElement { shape, input_min, table_shape, tables } => {
            let (shape, table_shape) = (usizes(shape), usizes(table_shape));
            let tables = (table_shape.as_slice(), tables.as_slice());
            lut_per_element_codes(&codes(x)?, (&shape, &shape), *input_min, tables)?
        }
        DigitalEntry::Lut { .. } | DigitalEntry::Mul { .. } | DigitalEntry::MatMul { .. } => {
            return Err(format!("a {} entry for a tensor instruction", e.kind()))
        }
    };
    for (o, v) in out.iter_mut().zip(y) {
        *o = v as i64;
    }
    Ok(())
}

/// `matmul`: the program's `MatMulCodes` on the entry's shapes.
pub(super) fn matmul(
    e: &DigitalEntry,
    a: &[i64],
    b: &[i64],
    out: &mut [i64],
) -> Result<(), String> {
    let DigitalEntry::MatMul { a_shape, b_shape, a_zero_point, b_zero_point, requant } = e else {
        return Err(format!("a {} entry for matmul", e.kind()));
    };
    let (sa, sb) = (usizes(a_shape), usizes(b_shape));
    let zero = (*a_zero_point as i64, *b_zero_point as i64);
    let y = matmul_code_slices((&codes(a)?, &sa), (&codes(b)?, &sb), zero, requant)?;
    for (o, v) in out.iter_mut().zip(y) {
        *o = v as i64;
    }
    Ok(())
}
