//! The element-wise instructions that carry real work in a network's stream — `requant` after
//! every matrix layer and `transpose` between layouts — written for speed: parameters looked
//! up once per channel, chunks in parallel, a tiled transpose.

use cimc_backends::arith::{requantize, FixedMultiplier};
use cimc_backends::stream::{PermEntry, RequantEntry};
use rayon::prelude::*;

/// Words per parallel task.
const CHUNK: usize = 1 << 14;

/// `requant` of `len` words: `out[i] = requantize(a[c]·x[i] + b[c], M[c])` with
/// `c = (first + i / channel_len) mod channels`. `x` is `None` when the instruction works in
/// place (the input is `out` itself).
pub(super) fn requant(
    e: &RequantEntry,
    x: Option<&[i64]>,
    out: &mut [i64],
    channel_len: usize,
    first: usize,
) -> Result<(), String> {
    let channels = e.channels();
    let params = (0..channels)
        .map(|c| e.at(c).ok_or_else(|| format!("the requant entry has no channel {c}")))
        .collect::<Result<Vec<(i64, i64, FixedMultiplier)>, String>>()?;
    let cl = channel_len.max(1);
    let run = |i0: usize, out: &mut [i64], x: Option<&[i64]>| -> Result<(), String> {
        let mut ch = ((first as u128 + (i0 / cl) as u128) % channels as u128) as usize;
        let mut left = cl - i0 % cl;
        for (i, d) in out.iter_mut().enumerate() {
            let v = x.map_or(*d, |x| x[i]);
            let (a, b, m) = params[ch];
            let acc = a
                .checked_mul(v)
                .and_then(|y| y.checked_add(b))
                .ok_or_else(|| format!("{a}·{v} + {b} overflows i64"))?;
            *d = requantize(acc, m, e.zero_point, e.lo, e.hi) as i64;
            left -= 1;
            if left == 0 {
                left = cl;
                ch += 1;
                if ch == channels {
                    ch = 0;
                }
            }
        }
        Ok(())
    };
    match x {
        Some(x) => out
            .par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .enumerate()
            .try_for_each(|(k, (o, x))| run(k * CHUNK, o, Some(x))),
        None => {
            out.par_chunks_mut(CHUNK).enumerate().try_for_each(|(k, o)| run(k * CHUNK, o, None))
        }
    }
}

/// `transpose`: `out` (the entry's number of words) is the source `x` with its axes permuted.
pub(super) fn transpose(p: &PermEntry, x: &[i64], out: &mut [i64]) -> Result<(), String> {
    let rank = p.shape.len();
    let mut seen = vec![false; rank];
    if p.perm.len() != rank
        || !p
            .perm
            .iter()
            .all(|&a| seen.get_mut(a as usize).is_some_and(|s| !std::mem::replace(s, true)))
    {
        return Err(format!("{:?} is not a permutation of the axes of {:?}", p.perm, p.shape));
    }
    let n: usize = p.shape.iter().map(|&d| d as usize).product();
    if x.len() < n || out.len() < n {
        return Err("transpose: the source or the destination is too short".into());
    }
    // Source strides, then the output's axes with the source stride of each; axes of size 1
    // dropped.
    let mut stride = vec![0usize; rank];
    let mut s = 1;
    for d in (0..rank).rev() {
        stride[d] = s;
        s *= p.shape[d] as usize;
    }
    let axes: Vec<(usize, usize)> = p
        .perm
        .iter()
        .map(|&a| (p.shape[a as usize] as usize, stride[a as usize]))
        .filter(|&(len, _)| len > 1)
        .collect();
    let out = &mut out[..n];
    match axes.as_slice() {
        [] => out.copy_from_slice(&x[..n]),
        [(_, rs), (cols, cs)] => tiled(x, out, *rs, *cols, *cs),
        _ => {
            // Row by row of the output's last axis, an odometer over the others.
            let (last, ls) = *axes.last().unwrap_or(&(1, 1));
            let outer = &axes[..axes.len().saturating_sub(1)];
            let mut idx = vec![0usize; outer.len()];
            for row in out.chunks_exact_mut(last) {
                let base: usize = idx.iter().zip(outer).map(|(&i, &(_, s))| i * s).sum();
                for (j, o) in row.iter_mut().enumerate() {
                    *o = x[base + j * ls];
                }
                for d in (0..outer.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < outer[d].0 {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
    }
    Ok(())
}

/// `out[i·cols + j] = x[i·rs + j·cs]`, in tiles (both sides stay in cache), rows in parallel.
fn tiled(x: &[i64], out: &mut [i64], rs: usize, cols: usize, cs: usize) {
    const T: usize = 32;
    out.par_chunks_mut(cols * T).enumerate().for_each(|(bi, block)| {
        let i0 = bi * T;
        let nrows = block.len() / cols;
        for j0 in (0..cols).step_by(T) {
            for i in 0..nrows {
                let src = (i0 + i) * rs;
                let dst = &mut block[i * cols..][j0..(j0 + T).min(cols)];
                for (jj, o) in dst.iter_mut().enumerate() {
                    *o = x[src + (j0 + jj) * cs];
                }
            }
        }
    });
}
