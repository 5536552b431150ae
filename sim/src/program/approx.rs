//! The integer program's digital Conv/Gemm steps computed with an approximate 8×8 multiplier
//! ([`super::multiplier`]): every product of the dot product is read from the product table.
//!
//! **Operands.** The digital MAC multiplies what a crossbar would be fed
//! (`docs/hardware-model.md` §1): the activation operand is `v = q_x − q_min` (`q_min` the
//! smallest code of the input type: 0 for unsigned codes, so `v` is the code itself; `−2^(b−1)`
//! for signed ones), never the zero-point-shifted `q_x − z_x`; the weight operand is the signed
//! weight code `w`. Then `Σ_k (q_x − z_x)·w = Σ_k v·w + (q_min − z_x)·Σ_k w`, and the second term
//! is a per-channel constant added exactly (as the bias is). Padding feeds the code `z_x`, so
//! `v = z_x − q_min`.
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
//! **Speed.** Each row is split as `P_w[v] = base_w + U_w[v]` with `base_w` the row's minimum,
//! so `U_w ≥ 0`; `Σ_k base_w` is a per-channel constant (added with the zero-point term), and a
//! constant row (`U_w = 0`: the weight code 0 of every built-in family) costs nothing. The
//! activation bytes are im2col'd as `[K][P]` (one row of pixels per `k`, padded to 64), and
//! each output channel (in parallel) walks its non-constant `(k, w)` pairs, adding the row
//! `U_w` over all pixels of row `k`:
//! - [`LutKernel::Avx512Vbmi`] (`approx/vbmi.rs`): `U_w` as byte planes, a 256-entry byte
//!   table looked up for 64 pixels by two `vpermi2b` and a blend, summed in u16 for 256 `k`s at
//!   a time, then in i32;
//! - [`LutKernel::Scalar`]: one i32 table read per product, i32 accumulators.
//!
//! Both add the same non-negative integers, so they agree bit for bit. Accumulators are i32
//! when `K·max U` < 2^31 (always for 8-bit products up to K = 32,768), else an i64 scalar loop.

mod vbmi;

use super::kernels::ConvGeom;
use super::multiplier::{LutKernel, ProductTable};
use cimc_backends::program::{BufferDecl, Elem, MatrixKind, Step};
use rayon::prelude::*;

/// Pixels per strip: one 64-byte vector of activation codes.
const STRIP: usize = 64;

/// A digital matrix step prepared for a product table.
pub(crate) struct LutMatrix {
    /// `rows[w as u8][v] = P_w[v] − base_w ≥ 0`.
    rows: Vec<[u32; 256]>,
    /// The byte planes of `rows` for the vector kernel: `planes[(w·np + j)·256 + v]` is byte `j`
    /// of `rows[w][v]` (empty unless that kernel runs).
    planes: Vec<u8>,
    /// Byte planes needed for the largest `U` of a weight code the step uses (0..=4).
    np: usize,
    /// Per output channel, its `(k, w)` pairs whose row is not constant, packed `k << 8 | w`;
    /// channel `m`'s are `pairs[starts[m]..starts[m + 1]]`.
    pairs: Vec<u32>,
    starts: Vec<usize>,
    k: usize,
    /// `c·Σ_k w + Σ_k base_w` per output channel.
    correction: Vec<i64>,
    /// The smallest code of the input type.
    q_min: i32,
    /// i64 accumulation needed: the scalar i64 loop.
    wide: bool,
    kernel: LutKernel,
}

/// Prepares a digital Conv/Gemm step (`crossbar: None`) for `table`, run by `kernel` (which the
/// caller checked is available); `None` for other steps (crossbar steps are analog: the
/// multiplier does not apply).
pub(crate) fn prepare(
    s: &Step,
    bufs: &[BufferDecl],
    table: &ProductTable,
    kernel: LutKernel,
) -> Result<Option<LutMatrix>, String> {
    // Crossbar steps stay analog.
    let Some(ms) = s.as_matrix().filter(|m| m.crossbar.is_none()) else { return Ok(None) };
    let (input, z, weights) = (ms.input, ms.input_zero_point, ms.weights);
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
    let (m, k, w): (usize, usize, Vec<u8>) = match ms.kind {
        MatrixKind::Conv { .. } => {
            let m = weights.shape.first().copied().unwrap_or(0);
            let k = weights.data.len() / m.max(1);
            (m, k, weights.data.iter().map(|&v| v as u8).collect())
        }
        MatrixKind::Gemm => {
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
    let mut base = [0i64; 256];
    let mut span = [0u64; 256];
    let rows: Vec<[u32; 256]> = (0..256)
        .map(|wb| {
            let wv = wb as u8 as i8 as i32;
            let mut r = [0i64; 256];
            for (v, e) in r.iter_mut().enumerate() {
                *e = if table.signed {
                    table.get(v as i32 - 128, wv)
                } else {
                    table.get(v as i32, wv.abs()).map(|p| if wv < 0 { -p } else { p })
                }
                .expect("invariant: operands are bytes in the table's range")
                    as i64;
            }
            let (lo, hi) = (r.iter().min(), r.iter().max());
            let (lo, hi) = (*lo.expect("256 entries"), *hi.expect("256 entries"));
            base[wb] = lo;
            span[wb] = (hi - lo) as u64;
            // hi − lo < 2^32: both are i32.
            r.map(|v| (v - lo) as u32)
        })
        .collect();
    let c = if table.signed { 128 } else { 0 } + q_min as i64 - z as i64;
    let correction = (0..m)
        .map(|ch| {
            w[ch * k..(ch + 1) * k].iter().map(|&b| c * (b as i8 as i64) + base[b as usize]).sum()
        })
        .collect();
    let mut used = [false; 256];
    w.iter().for_each(|&b| used[b as usize] = true);
    let max_span = (0..256).filter(|&b| used[b]).map(|b| span[b]).max().unwrap_or(0);
    let np = (64 - max_span.leading_zeros() as usize).div_ceil(8);
    let wide = k >= 1 << 24 || (k as u64).saturating_mul(max_span) >= 1 << 31;
    let (mut pairs, mut starts) = (Vec::new(), vec![0usize]);
    for ch in 0..m {
        for (kk, &b) in w[ch * k..(ch + 1) * k].iter().enumerate() {
            if span[b as usize] > 0 {
                pairs.push((kk as u32) << 8 | b as u32);
            }
        }
        starts.push(pairs.len());
    }
    let kernel = if wide || np == 0 { LutKernel::Scalar } else { kernel };
    let planes = match kernel {
        LutKernel::Scalar => Vec::new(),
        LutKernel::Avx512Vbmi => {
            let mut p = vec![0u8; 256 * np * 256];
            for (wb, row) in rows.iter().enumerate() {
                for j in 0..np {
                    for (v, &u) in row.iter().enumerate() {
                        p[(wb * np + j) * 256 + v] = (u >> (8 * j)) as u8;
                    }
                }
            }
            p
        }
    };
    Ok(Some(LutMatrix { rows, planes, np, pairs, starts, k, correction, q_min, wide, kernel }))
}

/// Runs a prepared step to its output codes: bias, then the step's requantization.
pub(crate) fn run_step(
    s: &Step,
    p: &LutMatrix,
    x: &[i32],
    si: &[usize],
    so: &[usize],
) -> Result<Vec<i32>, String> {
    run(s, p, x, si, so, &super::kernels::finisher(s)?)
}

/// Runs a prepared step: every output's accumulator (no bias) goes through `fin(acc, channel)`,
/// in the output buffer's layout (as `kernels::run_exact`).
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
    let ms = s.as_matrix().ok_or("not a matrix step")?;
    let (z, weights) = (ms.input_zero_point, ms.weights);
    match ms.kind {
        MatrixKind::Conv { window, group } => {
            let ConvGeom { n, c, h, w, m, oh, ow, g, cg, mg, kh, kw, strides, dil, pads } =
                ConvGeom::new(weights, window, group, si, so, x.len())?;
            if p.k != cg * kh * kw || p.correction.len() != m {
                return Err(format!("weights {:?} are not the prepared ones", weights.shape));
            }
            let (kk, pixels) = (cg * kh * kw, oh * ow);
            let ppad = pixels.div_ceil(STRIP) * STRIP;
            let pad = byte(z);
            let mut out = vec![T::default(); n * m * pixels];
            let mut col = vec![0u8; kk * ppad];
            for b in 0..n {
                for gi in 0..g {
                    // im2col, transposed: one row of pixels per (ci, ky, kx).
                    col.par_chunks_mut(ppad).enumerate().for_each(|(r, row)| {
                        let (ci, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                        let plane = &x[((b * c) + gi * cg + ci) * h * w..][..h * w];
                        for oy in 0..oh {
                            let iy = (oy * strides[0] + ky * dil[0]) as isize - pads[0] as isize;
                            let dst = &mut row[oy * ow..(oy + 1) * ow];
                            if iy < 0 || iy as usize >= h {
                                dst.fill(pad);
                                continue;
                            }
                            let src = &plane[iy as usize * w..][..w];
                            for (ox, d) in dst.iter_mut().enumerate() {
                                let ix =
                                    (ox * strides[1] + kx * dil[1]) as isize - pads[1] as isize;
                                *d = if ix >= 0 && (ix as usize) < w {
                                    byte(src[ix as usize])
                                } else {
                                    pad
                                };
                            }
                        }
                    });
                    let og = &mut out[(b * m + gi * mg) * pixels..][..mg * pixels];
                    og.par_chunks_mut(pixels.max(1))
                        .enumerate()
                        .for_each(|(mo, o)| channel(p, gi * mg + mo, &col, ppad, pixels, fin, o));
                }
            }
            Ok(out)
        }
        MatrixKind::Gemm => {
            let (k, nn) = (p.k, p.correction.len());
            let rows = super::kernels::gemm_rows(si, so, x.len(), k, nn)?;
            // The rows play the role of a conv's pixels.
            let ppad = rows.div_ceil(STRIP) * STRIP;
            let mut col = vec![0u8; k * ppad];
            for r in 0..rows {
                for kk in 0..k {
                    col[kk * ppad + r] = byte(x[r * k + kk]);
                }
            }
            // The kernel writes [N, rows]; the buffer is [rows, N].
            let mut t = vec![T::default(); nn * rows];
            t.par_chunks_mut(rows.max(1))
                .enumerate()
                .for_each(|(ch, o)| channel(p, ch, &col, ppad, rows, fin, o));
            let mut out = vec![T::default(); rows * nn];
            for ch in 0..nn {
                for r in 0..rows {
                    out[r * nn + ch] = t[ch * rows + r];
                }
            }
            Ok(out)
        }
    }
}

/// Output channel `ch` over the `pixels` first columns of `col` (`[K][ppad]` bytes):
/// `fin(Σ_k U + correction, ch)` into `out`.
fn channel<T, F>(
    p: &LutMatrix,
    ch: usize,
    col: &[u8],
    ppad: usize,
    pixels: usize,
    fin: &F,
    out: &mut [T],
) where
    F: Fn(i64, usize) -> T,
{
    let pairs = &p.pairs[p.starts[ch]..p.starts[ch + 1]];
    let corr = p.correction[ch];
    if p.wide {
        let mut acc = vec![0i64; ppad];
        for &e in pairs {
            let (k, row) = ((e >> 8) as usize, &p.rows[(e & 255) as usize]);
            for (a, &v) in acc.iter_mut().zip(&col[k * ppad..(k + 1) * ppad]) {
                *a += row[v as usize] as i64;
            }
        }
        for (o, &a) in out.iter_mut().zip(&acc[..pixels]) {
            *o = fin(a + corr, ch);
        }
        return;
    }
    let mut acc = vec![0i32; ppad];
    match p.kernel {
        LutKernel::Scalar => scalar_i32(&p.rows, pairs, col, ppad, &mut acc),
        LutKernel::Avx512Vbmi => vbmi::accumulate(&p.planes, p.np, pairs, col, ppad, &mut acc),
    }
    for (px, o) in out.iter_mut().enumerate().take(pixels) {
        let a = match p.kernel {
            LutKernel::Scalar => acc[px],
            LutKernel::Avx512Vbmi => acc[vbmi::slot(px)],
        };
        *o = fin(a as i64 + corr, ch);
    }
}

/// `acc[p] += rows[w][col[k·ppad + p]]` for every pair `k << 8 | w` (wrapping i32: the caller
/// proved `K·max U` < 2^31).
fn scalar_i32(rows: &[[u32; 256]], pairs: &[u32], col: &[u8], ppad: usize, acc: &mut [i32]) {
    for &e in pairs {
        let (k, row) = ((e >> 8) as usize, &rows[(e & 255) as usize]);
        for (a, &v) in acc.iter_mut().zip(&col[k * ppad..(k + 1) * ppad]) {
            *a = a.wrapping_add(row[v as usize] as i32);
        }
    }
}
