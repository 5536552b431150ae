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
    let block = tr * pcp;
    for g in 0..p.groups {
        for (vi, buf) in vals.chunks_exact_mut(per_vec).enumerate() {
            sumv[vi] = vector_values(p, src, g, v0 + vi, buf)?;
        }
        colacc.fill(0);
        for t in 0..p.tiles {
            // x_i of every vector and row of the tile: `[slice][vector][row]`.
            for i in 0..sx {
                for vi in 0..nv {
                    let v = &vals[vi * per_vec + t * p.words * 64..][..tr];
                    let dst = &mut xs[(i * nv + vi) * tr..][..tr];
                    for (x, &v) in dst.iter_mut().zip(v) {
                        *x = ((v as u32 >> (i * d)) & mask) as f32;
                    }
                }
            }
            let gt = &nx.g[(g * p.tiles + t) * block..][..block];
            sgemm(sx * nv, tr, pcp, &xs, gt, &mut pp);
            let adc = (g * p.tiles + t) * pcp;
            let (gain, offset) = (&nx.gain[adc..][..pcp], &nx.offset[adc..][..pcp]);
            let e = &p.e[g * pcp..][..pcp];
            for i in 0..sx {
                let ish = (i * d) as u32;
                for vi in 0..nv {
                    let row = &mut pp[(i * nv + vi) * pcp..][..pcp];
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
                    let acc = &mut colacc[vi * pcp..][..pcp];
                    for c in 0..p.pc {
                        let step = (1u64 << e[c]) as f32;
                        let code = (row[c] * gain[c] / step + offset[c] + 0.5).floor();
                        let code = code.clamp(0.0, top) as i64;
                        acc[c] += (code << e[c]) << ish;
                    }
                }
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
