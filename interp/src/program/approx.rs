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
//! **Speed.** For a fixed weight code the product is a 256-entry table over activation codes,
//! so the kernel walks each output channel's weights `k` and, for blocks of 32 output pixels,
//! gathers `P_{w[k]}[v[k, p]]` from the im2col matrix of activation bytes (AVX2 `vpgatherdd`,
//! 8 lanes, four independent accumulators kept in registers over the whole `K` loop; a
//! scalar loop elsewhere). One gather per product is what bounds it (`docs/approximate.md`).
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
    /// `c·Σ_k w` per output channel.
    correction: Vec<i64>,
    /// The smallest code of the input type.
    q_min: i32,
    /// i64 accumulation needed.
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
    let max = rows.iter().flat_map(|r| r.iter()).map(|&v| (v as i64).abs()).max().unwrap_or(0);
    let wide = (k as i64).saturating_mul(max) >= 1 << 31;
    Ok(Some(LutMatrix { rows, w, k, correction, q_min, wide }))
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
    match s {
        Step::Conv { input_zero_point: z, weights, window, group, .. } => {
            let ConvGeom { n, c, h, w, m, oh, ow, g, cg, mg, kh, kw, strides, dil, pads } =
                ConvGeom::new(weights, window, *group, si, so, x.len())?;
            let (kk, pixels) = (cg * kh * kw, oh * ow);
            let pad = byte(*z);
            let mut out = vec![T::default(); n * m * pixels];
            let mut col = vec![0u8; kk * pixels];
            for b in 0..n {
                for gi in 0..g {
                    col.par_chunks_mut(pixels.max(1)).enumerate().for_each(|(r, row)| {
                        let (ci, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
                        let plane = &x[((b * c) + gi * cg + ci) * h * w..][..h * w];
                        for oy in 0..oh {
                            let iy = (oy * strides[0] + ky * dil[0]) as isize - pads[0] as isize;
                            for ox in 0..ow {
                                let ix =
                                    (ox * strides[1] + kx * dil[1]) as isize - pads[1] as isize;
                                let inside =
                                    iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w;
                                row[oy * ow + ox] = if inside {
                                    byte(plane[iy as usize * w + ix as usize])
                                } else {
                                    pad
                                };
                            }
                        }
                    });
                    let og = &mut out[(b * m + gi * mg) * pixels..][..mg * pixels];
                    og.par_chunks_mut(pixels.max(1)).enumerate().for_each(|(mo, dst)| {
                        let ch = gi * mg + mo;
                        channel(p, ch, &col, pixels, |i, acc| dst[i] = fin(acc, ch));
                    });
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
            // Activation bytes as [K, rows]: the rows play the role of a conv's pixels.
            let mut col = vec![0u8; k * rows];
            for r in 0..rows {
                for kk in 0..k {
                    col[kk * rows + r] = byte(x[r * k + kk]);
                }
            }
            let per_n: Vec<Vec<T>> = (0..nn)
                .into_par_iter()
                .map(|ch| {
                    let mut v = vec![T::default(); rows];
                    channel(p, ch, &col, rows, |i, acc| v[i] = fin(acc, ch));
                    v
                })
                .collect();
            let mut out = vec![T::default(); rows * nn];
            for (ch, v) in per_n.iter().enumerate() {
                for (r, &t) in v.iter().enumerate() {
                    out[r * nn + ch] = t;
                }
            }
            Ok(out)
        }
        _ => Err("not a matrix step".into()),
    }
}

/// The accumulators of output channel `ch` over the `pixels` columns of `col` (`[K, pixels]`
/// activation bytes), handed to `put(pixel, acc)` with the correction added.
fn channel(p: &LutMatrix, ch: usize, col: &[u8], pixels: usize, mut put: impl FnMut(usize, i64)) {
    let wrow = &p.w[ch * p.k..(ch + 1) * p.k];
    let corr = p.correction[ch];
    if p.wide {
        for i in 0..pixels {
            let acc: i64 = wrow
                .iter()
                .enumerate()
                .map(|(k, &wb)| p.rows[wb as usize][col[k * pixels + i] as usize] as i64)
                .sum();
            put(i, acc + corr);
        }
        return;
    }
    let mut acc = vec![0i32; pixels];
    accumulate(wrow, &p.rows, col, pixels, &mut acc);
    for (i, &a) in acc.iter().enumerate() {
        put(i, a as i64 + corr);
    }
}

/// `acc[i] = Σ_k rows[wrow[k]][col[k·pixels + i]]` (wrapping i32; the caller proved no
/// overflow).
pub(crate) fn accumulate(
    wrow: &[u8],
    rows: &[[i32; 256]],
    col: &[u8],
    pixels: usize,
    acc: &mut [i32],
) {
    assert!(
        col.len() >= wrow.len() * pixels && acc.len() >= pixels && rows.len() == 256,
        "invariant: the kernel's operands are sized by its callers"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; the assert above bounds every access (see the function).
        done = unsafe { avx2::accumulate(wrow, rows, col, pixels, acc) };
    }
    for i in done..pixels {
        let mut s = 0i32;
        for (k, &wb) in wrow.iter().enumerate() {
            s = s.wrapping_add(rows[wb as usize][col[k * pixels + i] as usize]);
        }
        acc[i] = s;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// The AVX2 part of [`super::accumulate`]: pixels in blocks of 32 (four 8-lane
    /// accumulators), then of 8; returns how many pixels it did (the rest is the caller's).
    ///
    /// # Safety
    /// AVX2 must be available, `col.len() ≥ wrow.len()·pixels`, `acc.len() ≥ pixels`,
    /// `rows.len() == 256`. Gather indices are bytes, so always inside a 256-entry row.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn accumulate(
        wrow: &[u8],
        rows: &[[i32; 256]],
        col: &[u8],
        pixels: usize,
        acc: &mut [i32],
    ) -> usize {
        let cp = col.as_ptr();
        let load = |k: usize, i: usize| {
            // SAFETY: i + 8 ≤ pixels, so the 8 bytes are inside row k of col.
            unsafe {
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(cp.add(k * pixels + i) as *const __m128i))
            }
        };
        let mut i = 0;
        while i + 32 <= pixels {
            let (mut a0, mut a1, mut a2, mut a3) = (
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
            );
            for (k, &wb) in wrow.iter().enumerate() {
                let r = rows[wb as usize].as_ptr();
                // SAFETY: indices are zero-extended bytes (< 256) into a 256-entry row.
                unsafe {
                    a0 = _mm256_add_epi32(a0, _mm256_i32gather_epi32::<4>(r, load(k, i)));
                    a1 = _mm256_add_epi32(a1, _mm256_i32gather_epi32::<4>(r, load(k, i + 8)));
                    a2 = _mm256_add_epi32(a2, _mm256_i32gather_epi32::<4>(r, load(k, i + 16)));
                    a3 = _mm256_add_epi32(a3, _mm256_i32gather_epi32::<4>(r, load(k, i + 24)));
                }
            }
            // SAFETY: i + 32 ≤ pixels ≤ acc.len().
            unsafe {
                let o = acc.as_mut_ptr().add(i) as *mut __m256i;
                _mm256_storeu_si256(o, a0);
                _mm256_storeu_si256(o.add(1), a1);
                _mm256_storeu_si256(o.add(2), a2);
                _mm256_storeu_si256(o.add(3), a3);
            }
            i += 32;
        }
        while i + 8 <= pixels {
            let mut a0 = _mm256_setzero_si256();
            for (k, &wb) in wrow.iter().enumerate() {
                // SAFETY: as above.
                unsafe {
                    let r = rows[wb as usize].as_ptr();
                    a0 = _mm256_add_epi32(a0, _mm256_i32gather_epi32::<4>(r, load(k, i)));
                }
            }
            // SAFETY: i + 8 ≤ pixels ≤ acc.len().
            unsafe { _mm256_storeu_si256(acc.as_mut_ptr().add(i) as *mut __m256i, a0) };
            i += 8;
        }
        i
    }
}
