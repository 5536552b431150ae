//! The noisy execution of one crossbar step: the same vectors, row tiles, input slices and
//! physical columns as the exact kernel, with the partial sums computed from the trial's
//! perturbed conductances.
//!
//! Per chunk of vectors, conv group and row tile, one f32 GEMM over every input slice of every
//! vector of the chunk at once: `P'[i, v, c] = Σ_k x_i[v, k] · g[k, c]` (`x_i` are small
//! integers, `g` the perturbed levels; with `g` integral the products and sums are exact in
//! f32, so the noiseless limit is the exact arithmetic). Then per conversion: read noise
//! `σ_r·sqrt(P')·ε`, the ADC's gain and offset, and the ADC of §3 on the real value
//! (`code = clamp(floor(P'·gain/2^e + offset + 1/2), 0, 2^b_adc − 1)`, which for an integral
//! `P'` is exactly §3's `A(P)`); then shift-and-add in i64 as the exact path does, the layer's
//! drift compensation factor, and the digital terms.

use super::rng::normal_pair;
use super::NoisyCrossbar;
use crate::program::crossbar::{source_of, vector_values, Outputs, PreparedCrossbar};
use cimc_backends::program::Step;
use rayon::prelude::*;

/// Vectors per task.
const CHUNK: usize = 64;

/// Runs crossbar step `s` on the trial's perturbed crossbar `nx`: every output's accumulator
/// goes through `fin(acc, output)`, in the output buffer's layout. `first_image` is the index,
/// in the whole evaluation, of the first image of this run's batch (read noise is keyed on it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_with<T, F>(
    s: &Step,
    p: &PreparedCrossbar,
    nx: &NoisyCrossbar,
    x: &[i32],
    si: &[usize],
    so: &[usize],
    first_image: u64,
    fin: &F,
) -> Result<Vec<T>, String>
where
    T: Copy + Default + Send,
    F: Fn(i64, usize) -> T + Sync,
{
    let (src, nvec) = source_of(s, p, x, si, so)?;
    if nx.g.len() != p.groups * p.tiles * nx.tile_rows * p.pc_pad {
        return Err("the noisy crossbar was programmed for another step".into());
    }
    let batch = si.first().copied().unwrap_or(1).max(1);
    let per_image = (nvec / batch).max(1);
    let parts = (0..nvec.div_ceil(CHUNK))
        .into_par_iter()
        .map(|ci| {
            let v0 = ci * CHUNK;
            let v1 = (v0 + CHUNK).min(nvec);
            let vals = chunk(p, nx, &src, v0, v1, first_image, per_image, fin)?;
            Ok((v0, vals))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let results = Outputs::whole(parts, p.groups, p.mg);
    Ok(crate::program::crossbar::scatter(&src, p, nvec, &results))
}

/// The outputs `[vector][M]` of vectors `v0..v1`.
#[allow(clippy::too_many_arguments)]
pub(super) fn chunk<T, F>(
    p: &PreparedCrossbar,
    nx: &NoisyCrossbar,
    src: &crate::program::crossbar::Source,
    v0: usize,
    v1: usize,
    first_image: u64,
    per_image: usize,
    fin: &F,
) -> Result<Vec<T>, String>
where
    T: Copy + Default,
    F: Fn(i64, usize) -> T,
{
    let nv = v1 - v0;
    let m = p.groups * p.mg;
    let (sx, d) = (p.input_slices, p.x.dac_bits as usize);
    let mask = (1u32 << d) - 1;
    let tr = nx.tile_rows;
    let (pcp, per_vec) = (p.pc_pad, p.tiles * p.words * 64);
    let top = p.x.adc_top() as f32;
    let mut vals = vec![0u16; nv * per_vec];
    let mut sumv = vec![0i64; nv];
    let mut xs = vec![0f32; sx * nv * tr];
    let mut pp = vec![0f32; sx * nv * pcp];
    let mut colacc = vec![0i64; nv * pcp];
    let mut out = vec![T::default(); nv * m];
    // The (input slice, vector) rows of a tile whose inputs are not all zero.
    let mut live: Vec<(usize, usize)> = Vec::with_capacity(sx * nv);
    let (mut scale, mut shift, mut stepi, mut code0) =
        (vec![0f32; pcp], vec![0f32; pcp], vec![0i64; pcp], vec![0i64; pcp]);
    let esh: Vec<u32> = (0..p.groups * pcp).map(|i| p.e[i] as u32).collect();
    let block = tr * pcp;
    for g in 0..p.groups {
        for (vi, buf) in vals.chunks_exact_mut(per_vec).enumerate() {
            sumv[vi] = vector_values(p, src, g, v0 + vi, buf)?;
        }
        colacc.fill(0);
        let e = &p.e[g * pcp..][..pcp];
        let esh = &esh[g * pcp..][..pcp];
        for t in 0..p.tiles {
            // x_i of the live rows: `[row of live][tile row]`.
            live.clear();
            for i in 0..sx {
                for vi in 0..nv {
                    let v = &vals[vi * per_vec + t * p.words * 64..][..tr];
                    let dst = &mut xs[live.len() * tr..][..tr];
                    let mut any = 0u32;
                    for (x, &v) in dst.iter_mut().zip(v) {
                        let b = (v as u32 >> (i * d)) & mask;
                        any |= b;
                        *x = b as f32;
                    }
                    if any != 0 {
                        live.push((i, vi));
                    }
                }
            }
            let gt = &nx.g[(g * p.tiles + t) * block..][..block];
            sgemm(live.len(), tr, pcp, &xs, gt, &mut pp);
            // Per ADC: `P'·gain/2^e + offset + 1/2` is `P'·scale + shift`.
            let adc = (g * p.tiles + t) * pcp;
            let (gain, offset) = (&nx.gain[adc..][..pcp], &nx.offset[adc..][..pcp]);
            for c in 0..p.pc {
                stepi[c] = 1i64 << e[c];
                scale[c] = gain[c] / stepi[c] as f32;
                shift[c] = offset[c] + 0.5;
                code0[c] = adc_code(shift[c], top) as i64 * stepi[c];
            }
            // A row of all-zero inputs converts P' = 0: only the ADC's offset shows.
            if code0.iter().any(|&c| c != 0) {
                let mut is_live = vec![false; sx * nv];
                for &(i, vi) in &live {
                    is_live[i * nv + vi] = true;
                }
                for i in 0..sx {
                    for vi in 0..nv {
                        if !is_live[i * nv + vi] {
                            let acc = &mut colacc[vi * pcp..][..p.pc];
                            for (a, &c0) in acc.iter_mut().zip(&code0) {
                                *a += c0 << (i * d);
                            }
                        }
                    }
                }
            }
            for (li, &(i, vi)) in live.iter().enumerate() {
                let ish = (i * d) as u32;
                let row = &mut pp[li * pcp..][..pcp];
                if nx.sigma_read > 0.0 {
                    let vid = v0 + vi;
                    let image = first_image + (vid / per_image) as u64;
                    let within = (vid % per_image) as u64;
                    for c in (0..p.pc).step_by(2) {
                        let key = [image, within, g as u64, t as u64, i as u64, c as u64];
                        let (e0, e1) = normal_pair(nx.read_key.bits(&key));
                        for (cc, eps) in [(c, e0), (c + 1, e1)] {
                            if cc < p.pc {
                                let pv = row[cc];
                                row[cc] = pv + nx.sigma_read * pv.max(0.0).sqrt() * eps as f32;
                            }
                        }
                    }
                }
                let acc = &mut colacc[vi * pcp..][..p.pc];
                adc_row(&row[..p.pc], &scale[..p.pc], &shift[..p.pc], &esh[..p.pc], top, ish, acc);
            }
        }
        // Shift-and-add over the weight slices (and the two signs), then the digital terms.
        for vi in 0..nv {
            let ca = &colacc[vi * pcp..][..p.pc];
            for (nl, cols) in ca.chunks_exact(p.cpo).enumerate() {
                let n = g * p.mg + nl;
                let mut analog = 0i64;
                for (&c, &(neg, sh)) in cols.iter().zip(&p.fold) {
                    let v = c << sh;
                    analog += if neg { -v } else { v };
                }
                if nx.alpha != 1.0 {
                    analog = (nx.alpha * analog as f64).round() as i64;
                }
                out[vi * m + n] = fin(p.konst[n] - p.offset * sumv[vi] + analog, n);
            }
        }
    }
    Ok(out)
}

/// Adds `A(P')·2^ish` to each column's accumulator: `code = clamp(floor(P'·scale + shift), 0,
/// top)`, shifted by the column's step exponent `esh` and the input slice's `ish`.
#[inline(always)]
fn adc_body(
    r: &[f32],
    scale: &[f32],
    shift: &[f32],
    esh: &[u32],
    top: f32,
    ish: u32,
    acc: &mut [i64],
) {
    let n = acc.len();
    let (r, scale, shift, esh) = (&r[..n], &scale[..n], &shift[..n], &esh[..n]);
    for c in 0..n {
        let code = adc_code(r[c] * scale[c] + shift[c], top) as i64;
        acc[c] += code << (esh[c] + ish);
    }
}

/// [`adc_body`] with AVX-512 or AVX2 (16 or 8 columns per instruction) where the CPU has it: the same
/// operations in the same order (no fused multiply-add), so the same results.
fn adc_row(
    r: &[f32],
    scale: &[f32],
    shift: &[f32],
    esh: &[u32],
    top: f32,
    ish: u32,
    acc: &mut [i64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX512.get_or_init(|| std::is_x86_feature_detected!("avx512f")) {
            // SAFETY: AVX-512 F was detected on this CPU; the function has no other precondition.
            unsafe { adc_avx512(r, scale, shift, esh, top, ish, acc) };
            return;
        }
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX2.get_or_init(|| std::is_x86_feature_detected!("avx2")) {
            // SAFETY: AVX2 was detected on this CPU; the function has no other precondition.
            unsafe { adc_avx2(r, scale, shift, esh, top, ish, acc) };
            return;
        }
    }
    adc_body(r, scale, shift, esh, top, ish, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn adc_avx512(
    r: &[f32],
    scale: &[f32],
    shift: &[f32],
    esh: &[u32],
    top: f32,
    ish: u32,
    acc: &mut [i64],
) {
    adc_body(r, scale, shift, esh, top, ish, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn adc_avx2(
    r: &[f32],
    scale: &[f32],
    shift: &[f32],
    esh: &[u32],
    top: f32,
    ish: u32,
    acc: &mut [i64],
) {
    adc_body(r, scale, shift, esh, top, ish, acc)
}

/// `clamp(floor(y), 0, top)`: clamping first (`f32::max` turns a NaN into 0) leaves a value in
/// `[0, top]`, whose truncation is its floor and needs no saturation: it vectorizes, where
/// `floor` would be a call.
#[inline(always)]
fn adc_code(y: f32, top: f32) -> i32 {
    let v = y.max(0.0).min(top);
    // SAFETY: `v` is finite and in [0, top] with top < 2^16, so it fits an i32.
    unsafe { v.to_int_unchecked::<i32>() }
}

/// `c[m×n] = a[m×k] · b[k×n]`, row-major f32, on the calling thread (the tasks are already
/// parallel).
fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "invariant: the operands are sized by chunk()"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    // SAFETY: the assertion above makes every strided range lie inside its slice; with
    // `read_dst` false the destination's old contents are not read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}
