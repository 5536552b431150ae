//! The integer program's digital Conv/Gemm steps computed with an approximate 8×8 multiplier
//! ([`super::multiplier`]): every product of the dot product is read from the product table.
//!
//! **Operands.** The digital MAC multiplies what a crossbar would be fed (hardware-model §1):
//! the activation operand is `v = q_x − q_min` (`q_min` the smallest code of the input type:
//! 0 for unsigned codes, so `v` is the code itself; `−2^(b−1)` for signed ones), never the
//! zero-point-shifted `q_x − z_x`; the weight operand is the signed weight code `w`. Then
//! `Σ_k (q_x − z_x)·w = Σ_k v·w + (q_min − z_x)·Σ_k w`, and the second term is a per-channel
//! constant added exactly (as the bias is). Padding feeds the code `z_x`, so `v = z_x − q_min`.
//! - an **unsigned** table (the built-in families, `mul8u_*`) multiplies magnitudes: the
//!   product is `sign(w)·T[v][|w|]` (a sign-magnitude MAC: the sign is applied after the
//!   unsigned multiplier);
//! - a **signed** table (`mul8s_*`) takes two's complement bytes: the activation enters as
//!   `a = v − 128 ∈ [−128, 127]` (the usual uint8→int8 shift) and the product is `T[a][w]`;
//!   the shift comes back exactly: `Σ v·w = Σ a·w + 128·Σ w`.
//!
//! So the step's accumulator is `Σ_k P_w[v] + c·Σ_k w` with `c = (128 if signed else 0) +
//! q_min − z_x` and `P_w` a 256-entry row per weight code, built once per step.
//!
//! **Speed.** For a fixed weight code the product is a 256-entry table over activation codes.
//! The activation bytes are im2col'd in blocks of 32 output pixels (`[block][k][lane]`); for
//! each block (in parallel) the kernel walks every `(channel, k)` of the layer sorted by weight
//! code, so one 1 KB table row serves a whole run of products from L1, and adds
//! `P_w[v[k, lane]]` into the channel's 32 accumulators. One table read per product is what
//! bounds it, against 8 f64 FMAs per cycle of the exact path's GEMM (`docs/approximate.md`).
//! Accumulators are i32 when `K·max|T|` < 2^31 (always for 8-bit tables up to K = 33,000),
//! else an i64 scalar loop.

use super::kernels::ConvGeom;
use super::multiplier::ProductTable;
use cimc_backends::program::{BufferDecl, Elem, Step};
use rayon::prelude::*;

/// A digital matrix step prepared for a product table.
pub(crate) struct LutMatrix {
    /// `rows[w as u8][v]`: the product for weight code `w` and activation operand `v`.
    rows: Vec<[i32; 256]>,
    /// Weight codes as bytes, one row of `K` per output channel (`[M, K]`).
    w: Vec<u8>,
    k: usize,
    /// Per group: every `(channel in group, k)` packed as `m << 16 | k`, sorted by weight code
    /// (then channel, then k), and where each code's run starts (257 offsets). The kernel
    /// walks one code at a time, so that code's table row stays in L1.
    by_code: Vec<(Vec<u32>, Vec<usize>)>,
    /// `c·Σ_k w` per output channel.
    correction: Vec<i64>,
    /// The smallest code of the input type.
    q_min: i32,
    /// i64 accumulation needed (or channels/K too many to pack): the scalar loop.
    wide: bool,
}

/// Prepares a digital Conv/Gemm step (`crossbar: None`) for `table`; `None` for other steps
/// (crossbar steps are analog: the multiplier does not apply).
pub(crate) fn prepare(
    s: &Step,
    bufs: &[BufferDecl],
    table: &ProductTable,
) -> Result<Option<LutMatrix>, String> {
    let (input, z, weights) = match s {
        Step::Conv { input, input_zero_point, weights, crossbar: None, .. }
        | Step::Gemm { input, input_zero_point, weights, crossbar: None, .. } => {
            (*input, *input_zero_point, weights)
        }
        _ => return Ok(None),
    };
    let Elem::Code(c) = bufs[input].elem else {
        return Err(format!(
            "input buffer '{}' holds f32 values, codes expected",
            bufs[input].name
        ));
    };
    let (q_min, q_max) = c.range();
    if q_max - q_min > 255 {
        return Err(format!(
            "an 8x8 multiplier needs activation codes of at most 8 bits, '{}' has {}",
            bufs[input].name,
            q_max - q_min + 1
        ));
    }
    if let Some(w) = weights.data.iter().find(|&&w| !(-128..=127).contains(&w)) {
        return Err(format!("an 8x8 multiplier needs 8-bit weight codes, found {w}"));
    }
    // Weights as [M, K] bytes.
    let (m, k, w): (usize, usize, Vec<u8>) = match s {
        Step::Conv { .. } => {
            let m = weights.shape.first().copied().unwrap_or(0);
            let k = weights.data.len() / m.max(1);
            (m, k, weights.data.iter().map(|&v| v as u8).collect())
        }
        _ => {
            let (k, n) = (weights.shape[0], weights.shape[1]);
            let mut t = vec![0u8; n * k];
            for kk in 0..k {
                for nn in 0..n {
                    t[nn * k + kk] = weights.data[kk * n + nn] as u8;
                }
            }
            (n, k, t)
        }
    };
    let rows: Vec<[i32; 256]> = (0..256)
        .map(|wb| {
            let wv = wb as u8 as i8 as i32;
            let mut r = [0i32; 256];
            for (v, e) in r.iter_mut().enumerate() {
                *e = if table.signed {
                    table.get(v as i32 - 128, wv)
                } else {
                    table.get(v as i32, wv.abs()).map(|p| if wv < 0 { -p } else { p })
                }
                .expect("invariant: operands are bytes in the table's range");
            }
            r
        })
        .collect();
    let c = if table.signed { 128 } else { 0 } + q_min as i64 - z as i64;
    let correction = (0..m)
        .map(|ch| c * w[ch * k..(ch + 1) * k].iter().map(|&b| b as i8 as i64).sum::<i64>())
        .collect();
    let groups = match s {
        Step::Conv { group, .. } => (*group).max(1),
        _ => 1,
    };
    let mg = m / groups;
    let max = rows.iter().flat_map(|r| r.iter()).map(|&v| (v as i64).abs()).max().unwrap_or(0);
    let wide = (k as i64).saturating_mul(max) >= 1 << 31 || mg > 1 << 16 || k > 1 << 16;
    let by_code = if wide {
        Vec::new()
    } else {
        (0..groups)
            .map(|gi| {
                let mut e: Vec<(u8, u32)> = Vec::with_capacity(mg * k);
                for mo in 0..mg {
                    for kk in 0..k {
                        e.push((w[(gi * mg + mo) * k + kk], (mo as u32) << 16 | kk as u32));
                    }
                }
                e.sort_unstable();
                let mut starts = vec![0usize; 257];
                for &(c, _) in &e {
                    starts[c as usize + 1] += 1;
                }
                for c in 0..256 {
                    starts[c + 1] += starts[c];
                }
                (e.into_iter().map(|(_, v)| v).collect(), starts)
            })
            .collect()
    };
    Ok(Some(LutMatrix { rows, w, k, by_code, correction, q_min, wide }))
}

/// Runs a prepared step to its output codes: bias, then the step's requantization.
pub(crate) fn run_step(
    s: &Step,
    p: &LutMatrix,
    x: &[i32],
    si: &[usize],
    so: &[usize],
) -> Result<Vec<i32>, String> {
    let (bias, requant) = match s {
        Step::Conv { bias, requant, .. } | Step::Gemm { bias, requant, .. } => (bias, requant),
        _ => return Err("not a matrix step".into()),
    };
    run(s, p, x, si, so, &|a, ch| requant.apply(a + bias[ch], ch))
}

/// Pixels per block of the blocked im2col layout: the kernel's four 8-lane accumulators.
const BLOCK: usize = 32;

/// Runs a prepared step: every output's accumulator (no bias) goes through `fin(acc, channel)`,
/// in the output buffer's layout (as `kernels::run_exact`).
///
/// The activation bytes are laid out in blocks of [`BLOCK`] pixels, `col[block][k][lane]`, so
/// that the products of one block touch `K·32` contiguous bytes (in L2) whatever order the
/// sorted weights visit `k` in; a short last block is padded (its lanes are not used).
pub(crate) fn run<T, F>(
    s: &Step,
    p: &LutMatrix,
    x: &[i32],
    si: &[usize],
    so: &[usize],
    fin: &F,
) -> Result<Vec<T>, String>
where
    T: Copy + Default + Send,
    F: Fn(i64, usize) -> T + Sync,
{
    let byte = |q: i32| (q - p.q_min) as u8;
    match s {
        Step::Conv { input_zero_point: z, weights, window, group, .. } => {
            let ConvGeom { n, c, h, w, m, oh, ow, g, cg, mg, kh, kw, strides, dil, pads } =
                ConvGeom::new(weights, window, *group, si, so, x.len())?;
            let (kk, pixels) = (cg * kh * kw, oh * ow);
            let blocks = pixels.div_ceil(BLOCK);
            let pad = byte(*z);
            let mut out = vec![T::default(); n * m * pixels];
            let mut col = vec![0u8; blocks * kk * BLOCK];
            for b in 0..n {
                for gi in 0..g {
                    col.par_chunks_mut(kk * BLOCK).enumerate().for_each(|(blk, cb)| {
                        for lane in 0..BLOCK.min(pixels - blk * BLOCK) {
                            let px = blk * BLOCK + lane;
                            let (oy, ox) = (px / ow, px % ow);
                            for r in 0..kk {
                                let (ci, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                                let iy =
                                    (oy * strides[0] + ky * dil[0]) as isize - pads[0] as isize;
                                let ix =
                                    (ox * strides[1] + kx * dil[1]) as isize - pads[1] as isize;
                                let inside =
                                    iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w;
                                cb[r * BLOCK + lane] = if inside {
                                    let plane = ((b * c) + gi * cg + ci) * h * w;
                                    byte(x[plane + iy as usize * w + ix as usize])
                                } else {
                                    pad
                                };
                            }
                        }
                    });
                    let og = &mut out[(b * m + gi * mg) * pixels..][..mg * pixels];
                    matrix(p, gi, mg, &col, pixels, fin, og);
                }
            }
            Ok(out)
        }
        Step::Gemm { .. } => {
            let k = p.k;
            if si.last() != Some(&k) {
                return Err(format!("input {si:?} does not end in K = {k}"));
            }
            let rows = x.len() / k.max(1);
            let nn = p.correction.len();
            if so.iter().product::<usize>() != rows * nn {
                return Err(format!("output {so:?} is not [{rows}, {nn}]"));
            }
            // The rows play the role of a conv's pixels.
            let mut col = vec![0u8; rows.div_ceil(BLOCK) * k * BLOCK];
            for r in 0..rows {
                let (blk, lane) = (r / BLOCK, r % BLOCK);
                for kk in 0..k {
                    col[(blk * k + kk) * BLOCK + lane] = byte(x[r * k + kk]);
                }
            }
            // The kernel writes [N, rows]; the buffer is [rows, N].
            let mut t = vec![T::default(); nn * rows];
            matrix(p, 0, nn, &col, rows, fin, &mut t);
            let mut out = vec![T::default(); rows * nn];
            for ch in 0..nn {
                for r in 0..rows {
                    out[r * nn + ch] = t[ch * rows + r];
                }
            }
            Ok(out)
        }
        _ => Err("not a matrix step".into()),
    }
}

/// The outputs of group `gi`'s `mg` channels over `pixels` columns of the blocked `col`,
/// `fin(acc + correction, channel)` into `out` (`[mg, pixels]`): blocks in parallel.
fn matrix<T, F>(
    p: &LutMatrix,
    gi: usize,
    mg: usize,
    col: &[u8],
    pixels: usize,
    fin: &F,
    out: &mut [T],
) where
    T: Copy + Default + Send,
    F: Fn(i64, usize) -> T + Sync,
{
    let block_len = p.k * BLOCK;
    let blocks: Vec<Vec<i64>> = col
        .par_chunks(block_len.max(1))
        .enumerate()
        .map(|(blk, cb)| {
            let lanes = BLOCK.min(pixels - blk * BLOCK);
            let mut res = vec![0i64; mg * lanes];
            if p.wide {
                for mo in 0..mg {
                    let wrow = &p.w[(gi * mg + mo) * p.k..][..p.k];
                    for l in 0..lanes {
                        res[mo * lanes + l] = wrow
                            .iter()
                            .enumerate()
                            .map(|(k, &wb)| p.rows[wb as usize][cb[k * BLOCK + l] as usize] as i64)
                            .sum();
                    }
                }
            } else {
                let mut acc = vec![[0i32; BLOCK]; mg];
                let (entries, starts) = &p.by_code[gi];
                accumulate(entries, starts, &p.rows, cb, lanes, &mut acc);
                for mo in 0..mg {
                    for l in 0..lanes {
                        res[mo * lanes + l] = acc[mo][l] as i64;
                    }
                }
            }
            res
        })
        .collect();
    for (blk, res) in blocks.iter().enumerate() {
        let lanes = BLOCK.min(pixels - blk * BLOCK);
        for mo in 0..mg {
            let ch = gi * mg + mo;
            for l in 0..lanes {
                out[mo * pixels + blk * BLOCK + l] =
                    fin(res[mo * lanes + l] + p.correction[ch], ch);
            }
        }
    }
}

/// `acc[m][l] += rows[c][cb[k·BLOCK + l]]` for every entry `m << 16 | k` of code `c`
/// (`entries[starts[c]..starts[c + 1]]`) and the `lanes` first lanes of the block `cb`
/// (`[K][BLOCK]` bytes; wrapping i32, the caller proved no overflow). A plain loop: on this
/// project's AMD EPYC machine AVX2 gathers (`vpgatherdd`, tried) were no faster than the
/// scalar table reads, which three load ports serve.
pub(crate) fn accumulate(
    entries: &[u32],
    starts: &[usize],
    rows: &[[i32; 256]],
    cb: &[u8],
    lanes: usize,
    acc: &mut [[i32; BLOCK]],
) {
    assert!(
        starts.len() == 257
            && starts[256] == entries.len()
            && entries.iter().all(|&e| {
                ((e & 0xffff) as usize + 1) * BLOCK <= cb.len() && ((e >> 16) as usize) < acc.len()
            })
            && rows.len() == 256
            && lanes <= BLOCK,
        "invariant: the kernel's operands are sized by its callers"
    );
    for c in 0..256 {
        let row = &rows[c];
        for &e in &entries[starts[c]..starts[c + 1]] {
            let (m, k) = ((e >> 16) as usize, (e & 0xffff) as usize);
            for l in 0..lanes {
                acc[m][l] = acc[m][l].wrapping_add(row[cb[k * BLOCK + l] as usize]);
            }
        }
    }
}
