//! The instructions that read a tensor through a window entry: `im2col`, `max_pool`,
//! `avg_pool`. Pooling is the program's own code
//! (`program::pool`), so the stream and the program pool alike.

use crate::program::pool::{avg_pool_codes, max_pool_codes, PoolGeom};
use cimc_backends::arith::requantize;
use cimc_backends::stream::{RequantEntry, WindowEntry};
use rayon::prelude::*;

/// Vectors per parallel task of `im2col`, about.
const IM2COL_WORDS_PER_TASK: usize = 1 << 14;

/// `im2col`: for each output position of the entry, `conv_groups` runs of `(C/g)·kh·kw` codes
/// (rows `(c, ky, kx)` row-major; the runs of the conv groups are consecutive channels), read
/// from the channel-first image `x`; positions in the padding read `pad`.
pub(super) fn im2col(w: &WindowEntry, x: &[i64], pad: i64, out: &mut [i64]) -> Result<(), String> {
    let (c, h, wd) = (w.channels as usize, w.height as usize, w.width as usize);
    let (kh, kw) = (w.kernel[0] as usize, w.kernel[1] as usize);
    let per_vec = c * kh * kw;
    let ow = (w.out_width as usize).max(1);
    if x.len() < c * h * wd || out.len() < w.positions as usize * per_vec || per_vec == 0 {
        return Err("im2col: the source or the destination is too short".into());
    }
    let out = &mut out[..w.positions as usize * per_vec];
    let geo = |axis: usize, o: usize, kk: usize| -> i64 {
        (o * w.strides[axis] as usize + kk * w.dilations[axis] as usize) as i64
            - w.pads[axis] as i64
    };
    let per_task = (IM2COL_WORDS_PER_TASK / per_vec).max(1);
    out.par_chunks_mut(per_vec).with_min_len(per_task).enumerate().for_each(|(j, vec)| {
        let pos = w.first_position as usize + j;
        let (oy, ox) = (pos / ow, pos % ow);
        let mut i = 0;
        for ch in 0..c {
            let plane = &x[ch * h * wd..][..h * wd];
            for ky in 0..kh {
                let iy = geo(0, oy, ky);
                let row = (iy >= 0 && (iy as usize) < h).then(|| &plane[iy as usize * wd..][..wd]);
                for kx in 0..kw {
                    let ix = geo(1, ox, kx);
                    vec[i] = match row {
                        Some(row) if ix >= 0 && (ix as usize) < wd => row[ix as usize],
                        _ => pad,
                    };
                    i += 1;
                }
            }
        }
    });
    Ok(())
}

fn pool_geom(w: &WindowEntry) -> PoolGeom {
    let u = |v: u32| v as usize;
    PoolGeom {
        planes: u(w.channels),
        h: u(w.height),
        w: u(w.width),
        ow: u(w.out_width),
        k: [u(w.kernel[0]), u(w.kernel[1])],
        s: [u(w.strides[0]), u(w.strides[1])],
        d: [u(w.dilations[0]), u(w.dilations[1])],
        p: [u(w.pads[0]), u(w.pads[1]), u(w.pads[2]), u(w.pads[3])],
        positions: u(w.first_position)..u(w.first_position) + u(w.positions),
    }
}

/// `max_pool`: the codes `[channels][positions]`.
pub(super) fn max_pool(w: &WindowEntry, x: &[i64]) -> Result<Vec<i64>, String> {
    max_pool_codes(x, &pool_geom(w))
}

/// `avg_pool`: the codes `[channels][positions]`; the multiplier of a window of `k` positions
/// is the requant entry's `k − 1`.
pub(super) fn avg_pool(
    w: &WindowEntry,
    r: &RequantEntry,
    zero: i32,
    x: &[i64],
) -> Result<Vec<i32>, String> {
    avg_pool_codes(x, &pool_geom(w), zero as i64, w.count_include_pad, |sum, count| {
        let (a, b, m) = count
            .checked_sub(1)
            .and_then(|c| r.at(c))
            .ok_or_else(|| format!("no multiplier for a window of {count} positions"))?;
        let acc = a
            .checked_mul(sum)
            .and_then(|v| v.checked_add(b))
            .ok_or_else(|| format!("the window's sum {sum} overflows i64 when scaled"))?;
        Ok(requantize(acc, m, r.zero_point, r.lo, r.hi))
    })
}
