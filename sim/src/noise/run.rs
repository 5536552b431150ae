//! The noisy execution of one crossbar step: the same vectors, row tiles, input slices and
//! physical columns as the exact kernel, with the partial sums computed from the trial's
//! perturbed conductances.
//!
//! Per chunk of vectors and conv group: the vectors' input values (as the exact kernel reads
//! them); per row tile, the bit masks of every conversion row's nonzero input digits, the
//! ADCs' scale and shift, and [`super::kernel::run_tile`], which computes
//! `P'[i, v, c] = Σ_k x_i[v, k] · g[k, c]` over the set bits, the read noise
//! `σ_r·sqrt(P')·ε`, the ADC's gain and offset and the ADC of `docs/hardware-model.md` §3 on the
//! real value (`code = clamp(floor(P'·gain/(s·2^e) + offset + 1/2), 0, 2^b_adc − 1)` with `s`
//! the step scale, which for an integral `P'` and `s = 1` is exactly §3's `A(P)`; through the
//! ADC's thresholds when it has INL), summing the codes over the slices. Then, per output: the
//! ADC steps, shift-and-add in i64 as the exact path does, the layer's drift compensation factor,
//! and the digital terms.

use super::kernel::{run_tile, TileJob};
use super::NoisyCrossbar;
use crate::program::crossbar::kernel::input_planes;
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
    let (sx, d, ib) = (p.input_slices, p.x.geometry.dac_bits, p.input_bits);
    let tr = nx.tile_rows;
    let (pcp, words) = (p.pc_pad, p.words);
    let per_vec = p.tiles * words * 64;
    // Per vector: the bit planes of its inputs `[tile][input bit][word]`, and (digits of
    // several bits) the masks of the nonzero digits of each slice `[tile][slice][word]`.
    let (planes_per_vec, masks_per_vec) = (p.tiles * ib * words, p.tiles * sx * words);
    let top = p.x.adc_top() as f32;
    let mut vals = vec![0u16; nv * per_vec];
    let mut sumv = vec![0i64; nv];
    let mut planes = vec![0u64; nv * planes_per_vec];
    let mut masks = vec![0u64; if d == 1 { 0 } else { nv * masks_per_vec }];
    let mut colacc = vec![0i64; nv * pcp];
    // Flipped encoding (`docs/hardware-model.md` §1): one tile's codes at a time, and per
    // vector and output the digital `(2^b_c − 1)·Σx` terms of its flipped columns.
    let flipped = !p.flip.is_empty();
    let mut tile_acc = vec![0i64; if flipped { nv * pcp } else { 0 }];
    let mut digital = vec![0i64; if flipped { nv * p.mg } else { 0 }];
    let mut out = vec![T::default(); nv * m];
    let (mut scale, mut shift) = (vec![0f32; pcp], vec![0f32; pcp]);
    let mut weight = vec![0i64; pcp];
    let mut read_keys = Vec::with_capacity(if nx.sigma_read > 0.0 { nv * sx } else { 0 });
    let block = tr * pcp;
    for g in 0..p.groups {
        planes.fill(0);
        for (vi, buf) in vals.chunks_exact_mut(per_vec).enumerate() {
            sumv[vi] = vector_values(p, src, g, v0 + vi, buf)?;
            input_planes(buf, ib, words, &mut planes[vi * planes_per_vec..][..planes_per_vec]);
        }
        if d > 1 {
            // A slice's digit is nonzero where any of its `d` bits is set.
            masks.fill(0);
            for (vi, mv) in masks.chunks_exact_mut(masks_per_vec).enumerate() {
                let pv = &planes[vi * planes_per_vec..][..planes_per_vec];
                for t in 0..p.tiles {
                    for a in 0..ib {
                        let (from, to) = ((t * ib + a) * words, (t * sx + a / d as usize) * words);
                        for w in 0..words {
                            mv[to + w] |= pv[from + w];
                        }
                    }
                }
            }
        }
        colacc.fill(0);
        digital.fill(0);
        let e = &p.e[g * pcp..][..pcp];
        for t in 0..p.tiles {
            // Per ADC: `P'·gain/2^e + offset + 1/2` is `P'·scale + shift`.
            let adc = (g * p.tiles + t) * pcp;
            let (gain, offset) = (&nx.gain[adc..][..pcp], &nx.offset[adc..][..pcp]);
            for c in 0..pcp {
                scale[c] = gain[c] / ((1u64 << e[c]) as f64 * nx.step_scale) as f32;
                shift[c] = offset[c] + 0.5;
            }
            let inl_of: &[u32] = if nx.inl.is_empty() { &[] } else { &nx.inl_of[adc..][..pcp] };
            read_keys.clear();
            if nx.sigma_read > 0.0 {
                for vi in 0..nv {
                    let vid = v0 + vi;
                    let image = first_image + (vid / per_image) as u64;
                    let within = (vid % per_image) as u64;
                    let key = nx.read_key.extend(&[image, within, g as u64, t as u64]);
                    read_keys.extend((0..sx as u64).map(|i| key.extend(&[i])));
                }
            }
            let (masks, vector_stride) = if d == 1 {
                (&planes[t * ib * words..], planes_per_vec)
            } else {
                (&masks[t * sx * words..], masks_per_vec)
            };
            let job = TileJob {
                g: &nx.g[(g * p.tiles + t) * block..][..block],
                rows: tr,
                masks,
                vector_stride,
                words,
                vals: &vals[t * words * 64..],
                per_vec,
                vectors: nv,
                slices: sx,
                dac_bits: d,
                pc: p.pc,
                pc_pad: pcp,
                scale: &scale,
                shift: &shift,
                top,
                sigma_read: nx.sigma_read,
                read_keys: &read_keys,
                inl: &nx.inl,
                inl_of,
            };
            if !flipped {
                run_tile(&job, &mut colacc);
                continue;
            }
            tile_acc.fill(0);
            run_tile(&job, &mut tile_acc);
            let gt = g * p.tiles + t;
            let (flags, coef) = (&p.flip[gt * pcp..][..pcp], &p.flip_coef[gt * p.mg..][..p.mg]);
            for vi in 0..nv {
                let (acc, codes) = (&mut colacc[vi * pcp..][..pcp], &tile_acc[vi * pcp..][..pcp]);
                for ((a, &c), &f) in acc.iter_mut().zip(codes).zip(flags) {
                    *a += if f { -c } else { c };
                }
                let xp = &planes[vi * planes_per_vec + t * ib * words..][..ib * words];
                let sum_t = crate::program::crossbar::tile_sum(xp, words);
                for (d, &k) in digital[vi * p.mg..][..p.mg].iter_mut().zip(coef) {
                    *d += k * sum_t;
                }
            }
        }
        // The ADC steps, shift-and-add over the weight slices (and the two signs), then the
        // digital terms.
        // Each column's weight: ±2^(e + slice shift), − for the w⁻ columns.
        for (c, w) in weight.iter_mut().enumerate().take(p.pc) {
            let (neg, sh) = p.fold[c % p.cpo];
            *w = if neg { -1i64 } else { 1 } << (e[c] as u32 + sh);
        }
        for vi in 0..nv {
            let ca = &colacc[vi * pcp..][..p.pc];
            for (nl, (cols, ws)) in
                ca.chunks_exact(p.cpo).zip(weight.chunks_exact(p.cpo)).enumerate()
            {
                let n = g * p.mg + nl;
                let mut analog: i64 = cols.iter().zip(ws).map(|(&c, &w)| c * w).sum();
                // Drift compensation and a step that is not a power of two: one digital
                // multiply of the sum, rounded to the integer accumulator.
                let factor = nx.alpha * nx.step_scale;
                if factor != 1.0 {
                    analog = (factor * analog as f64).round() as i64;
                }
                let digital = if flipped { digital[vi * p.mg + nl] } else { 0 };
                out[vi * m + n] = fin(p.konst[n] - p.offset * sumv[vi] + digital + analog, n);
            }
        }
    }
    Ok(out)
}
