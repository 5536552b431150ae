//! The inner loop of the noisy crossbar step: one row tile of one conv group over a chunk of
//! vectors — the perturbed partial sums `P'`, read noise, the ADC on the real value, and the
//! sum of the codes over the input slices.
//!
//! Why not a GEMM: the inputs a conversion sees are the digits of one input slice (`dac_bits`
//! wide; bits with ISAAC's 1-bit DACs), mostly zero after a ReLU, and the GEMM of the whole
//! dense 0/1 matrix spent its time multiplying zeros. Here each conversion row keeps, per 64
//! word lines, a bit mask of its nonzero digits, and `P'[c]` is the sum of the conductance
//! rows `g[k, c]` of its set bits (times the digit when `dac_bits > 1`), in increasing `k`.
//! The columns go in blocks of [`BLOCK`] whose sums stay in registers and whose conductances
//! (`rows × BLOCK` f32, 16 KiB for 128 rows) stay in the L1 cache while every vector and
//! input slice of the chunk passes over them; the ADC and the read noise run on the block
//! while it is in registers. Per vector, the codes of every input slice are summed shifted by
//! the slice (`Σ_i code_i·2^(i·dac_bits)` < 2^16 · 2^16 fits a u32) before they join the i64
//! accumulators, and the ADC step `2^e` is applied after the tiles, by the caller.
//!
//! Determinism: every sum is over the set bits in increasing row order, whatever the block,
//! the chunk or the CPU: the AVX-512 and AVX2 versions are the same code compiled for wider
//! registers (Rust never fuses a multiply and an add on its own), so every path gives the same
//! bits. With integral conductances every partial sum is an integer below 2^24, exact in f32:
//! the noiseless limit is the exact arithmetic.

use super::rng::{normal_pair_f32, Key};

/// Physical columns per block: the kernel's sums, 2 AVX-512 registers; a block of 128 rows
/// is 16 KiB. It divides `pc_pad` (a multiple of the exact kernel's lanes).
pub(crate) const BLOCK: usize = 32;
const _: () = assert!(crate::program::crossbar::kernel::LANES.is_multiple_of(BLOCK));

/// One row tile of one conv group over a chunk of vectors.
pub(super) struct TileJob<'a> {
    /// The tile's conductances, `[column block][row][BLOCK]` (levels; columns past `pc` are 0).
    pub g: &'a [f32],
    /// Rows of the tile.
    pub rows: usize,
    /// Per conversion row (vector, input slice), `words` bit masks of its nonzero digits, at
    /// `masks[vector · vector_stride + slice · words ..]`.
    pub masks: &'a [u64],
    pub vector_stride: usize,
    pub words: usize,
    /// The vectors' input values (needed for digits wider than one bit): row `r` of vector
    /// `v` at `vals[v · per_vec + r]` (already offset to this tile).
    pub vals: &'a [u16],
    pub per_vec: usize,
    pub vectors: usize,
    pub slices: usize,
    pub dac_bits: u32,
    /// Physical columns that are used, and all of them (`pc_pad`, the stride of `colacc`).
    pub pc: usize,
    pub pc_pad: usize,
    /// Per column of this tile's ADCs: `P'·scale + shift` is the ADC input in steps plus 1/2.
    pub scale: &'a [f32],
    pub shift: &'a [f32],
    /// `2^b_adc − 1`.
    pub top: f32,
    /// `σ_r` (0: no read noise) and the read-noise key of each conversion row
    /// `[vector · slices + slice]` (extended by the even column of each pair).
    pub sigma_read: f32,
    pub read_keys: &'a [Key],
    /// The ADCs' thresholds (`top + 2` per ADC, `NoisyCrossbar::inl`) and, per column of this
    /// tile, the offset of its ADC's; both empty for ideal ADCs.
    pub inl: &'a [f32],
    pub inl_of: &'a [u32],
}

/// Adds, for every vector `v` of the job and column `c < pc`, `Σ_i code_i·2^(i·dac_bits)` to
/// `colacc[v · pc_pad + c]`.
pub(super) fn run_tile(job: &TileJob, colacc: &mut [i64]) {
    assert!(
        job.g.len() == job.rows * job.pc_pad
            && job.pc_pad.is_multiple_of(BLOCK)
            && job.pc <= job.pc_pad
            && job.scale.len() >= job.pc_pad
            && job.shift.len() >= job.pc_pad
            && job.vector_stride >= job.slices * job.words
            && job.masks.len()
                >= job.vectors.saturating_sub(1) * job.vector_stride + job.slices * job.words
            && job.words * 64 >= job.rows
            && colacc.len() >= job.vectors * job.pc_pad
            && (job.sigma_read == 0.0 || job.read_keys.len() >= job.vectors * job.slices)
            && (job.inl.is_empty()
                || (job.inl_of.len() >= job.pc_pad
                    && job
                        .inl_of
                        .iter()
                        .all(|&o| o as usize + job.top as usize + 2 <= job.inl.len()))),
        "invariant: the tile job is sized by chunk()"
    );
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let avx512 = *AVX512.get_or_init(|| {
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq")
        });
        if avx512 {
            // SAFETY: AVX-512 F and DQ were detected on this CPU; no other precondition.
            unsafe { tile_avx512(job, colacc) };
            return;
        }
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *AVX2.get_or_init(|| std::is_x86_feature_detected!("avx2")) {
            // SAFETY: AVX2 was detected on this CPU; no other precondition.
            unsafe { tile_avx2(job, colacc) };
            return;
        }
    }
    tile_portable(job, colacc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn tile_avx512(job: &TileJob, colacc: &mut [i64]) {
    if job.dac_bits == 1 {
        blocks(job, colacc, |r| x86::sum_avx512::<true>(r))
    } else {
        blocks(job, colacc, |r| x86::sum_avx512::<false>(r))
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) fn tile_avx2(job: &TileJob, colacc: &mut [i64]) {
    if job.dac_bits == 1 {
        blocks(job, colacc, |r| x86::sum_avx2::<true>(r))
    } else {
        blocks(job, colacc, |r| x86::sum_avx2::<false>(r))
    }
}

/// The kernel without SIMD intrinsics (what [`run_tile`] runs on other CPUs).
pub(super) fn tile_portable(job: &TileJob, colacc: &mut [i64]) {
    if job.dac_bits == 1 {
        blocks(job, colacc, sum_portable::<true>)
    } else {
        blocks(job, colacc, sum_portable::<false>)
    }
}

/// The conductance rows that one conversion sums: the set bits of `masks`, each weighted by
/// its digit.
struct RowSum<'a> {
    /// The block's conductances `[row][BLOCK]`.
    g: &'a [f32],
    masks: &'a [u64],
    /// The vector's input values in this tile, and the slice's shift, for the digits.
    vals: &'a [u16],
    ish: u32,
    digit: u32,
}

impl RowSum<'_> {
    /// Calls `add(row of g, r)` for every set row `r`, in increasing order.
    #[inline(always)]
    fn for_each(&self, mut add: impl FnMut(&[f32; BLOCK], usize)) {
        for (w, &m) in self.masks.iter().enumerate() {
            let mut m = m;
            while m != 0 {
                let r = w * 64 + m.trailing_zeros() as usize;
                m &= m - 1;
                add(block(self.g, r * BLOCK), r);
            }
        }
    }

    /// The digit of row `r`.
    #[inline(always)]
    fn digit(&self, r: usize) -> f32 {
        ((self.vals[r] as u32 >> self.ish) & self.digit) as f32
    }
}

/// `Σ_r x_r·g[r, c0..c0 + BLOCK]` in increasing `r`, portable; `UNIT`: one-bit digits, whose
/// products with `g` are `g` itself (adding it is the same as adding `1·g`).
#[inline(always)]
fn sum_portable<const UNIT: bool>(rs: &RowSum) -> [f32; BLOCK] {
    let mut p = [0f32; BLOCK];
    rs.for_each(|gr, r| {
        if UNIT {
            for j in 0..BLOCK {
                p[j] += gr[j];
            }
        } else {
            let x = rs.digit(r);
            for j in 0..BLOCK {
                p[j] += x * gr[j];
            }
        }
    });
    p
}

/// [`sum_portable`] in AVX-512 and AVX2 registers: the same additions (and multiplications)
/// in the same order, so the same results.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{RowSum, BLOCK};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn sum_avx512<const UNIT: bool>(rs: &RowSum) -> [f32; BLOCK] {
        const _: () = assert!(BLOCK == 32, "two AVX-512 registers");
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        rs.for_each(|gr, r| {
            let gr = gr.as_ptr();
            // SAFETY: `gr` points at BLOCK = 32 f32.
            let (l0, l1) = unsafe { (_mm512_loadu_ps(gr), _mm512_loadu_ps(gr.add(16))) };
            if UNIT {
                a0 = _mm512_add_ps(a0, l0);
                a1 = _mm512_add_ps(a1, l1);
            } else {
                let x = _mm512_set1_ps(rs.digit(r));
                a0 = _mm512_add_ps(a0, _mm512_mul_ps(x, l0));
                a1 = _mm512_add_ps(a1, _mm512_mul_ps(x, l1));
            }
        });
        let mut p = [0f32; BLOCK];
        // SAFETY: `p` holds 32 f32.
        unsafe {
            _mm512_storeu_ps(p.as_mut_ptr(), a0);
            _mm512_storeu_ps(p.as_mut_ptr().add(16), a1);
        }
        p
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn sum_avx2<const UNIT: bool>(rs: &RowSum) -> [f32; BLOCK] {
        const _: () = assert!(BLOCK == 32, "four AVX registers");
        let mut a = [_mm256_setzero_ps(); 4];
        rs.for_each(|gr, r| {
            let gr = gr.as_ptr();
            let x = _mm256_set1_ps(if UNIT { 1.0 } else { rs.digit(r) });
            for (q, a) in a.iter_mut().enumerate() {
                // SAFETY: `gr` points at BLOCK = 32 f32.
                let l = unsafe { _mm256_loadu_ps(gr.add(8 * q)) };
                *a = _mm256_add_ps(*a, if UNIT { l } else { _mm256_mul_ps(x, l) });
            }
        });
        let mut p = [0f32; BLOCK];
        for (q, a) in a.iter().enumerate() {
            // SAFETY: `p` holds 32 f32.
            unsafe { _mm256_storeu_ps(p.as_mut_ptr().add(8 * q), *a) };
        }
        p
    }
}

/// The kernel, with `sum` the [`RowSum`] of one conversion's block.
#[inline(always)]
fn blocks(job: &TileJob, colacc: &mut [i64], sum: impl Fn(&RowSum) -> [f32; BLOCK]) {
    let (words, slices, pc_pad, top) = (job.words, job.slices, job.pc_pad, job.top);
    let digit = (1u32 << job.dac_bits) - 1;
    for c0 in (0..job.pc).step_by(BLOCK) {
        let gb = &job.g[c0 * job.rows..][..job.rows * BLOCK];
        let scale: &[f32; BLOCK] = block(job.scale, c0);
        let shift: &[f32; BLOCK] = block(job.shift, c0);
        // The code of a conversion whose inputs are all zero (P' = 0, no read noise).
        let mut code0 = [0u32; BLOCK];
        let mut any0 = 0u32;
        for j in 0..BLOCK {
            code0[j] = adc_code(shift[j], top);
        }
        if !job.inl.is_empty() {
            inl_codes(&mut code0, &[0.0; BLOCK], scale, shift, job, c0);
        }
        for c in code0 {
            any0 |= c;
        }
        for v in 0..job.vectors {
            let mut acc = [0u32; BLOCK];
            for i in 0..slices {
                let row = v * slices + i;
                let masks = &job.masks[v * job.vector_stride + i * words..][..words];
                let ish = i as u32 * job.dac_bits;
                if masks.iter().all(|&m| m == 0) {
                    if any0 != 0 {
                        for j in 0..BLOCK {
                            acc[j] += code0[j] << ish;
                        }
                    }
                    continue;
                }
                let mut p =
                    sum(&RowSum { g: gb, masks, vals: &job.vals[v * job.per_vec..], ish, digit });
                if job.sigma_read > 0.0 {
                    read_noise(&mut p, job.read_keys[row], c0, job.sigma_read);
                }
                if job.inl.is_empty() {
                    for j in 0..BLOCK {
                        acc[j] += adc_code(p[j] * scale[j] + shift[j], top) << ish;
                    }
                } else {
                    let mut code = [0u32; BLOCK];
                    for j in 0..BLOCK {
                        code[j] = adc_code(p[j] * scale[j] + shift[j], top);
                    }
                    inl_codes(&mut code, &p, scale, shift, job, c0);
                    for j in 0..BLOCK {
                        acc[j] += code[j] << ish;
                    }
                }
            }
            let dst: &mut [i64; BLOCK] =
                (&mut colacc[v * pc_pad + c0..][..BLOCK]).try_into().expect("BLOCK columns");
            for j in 0..BLOCK {
                dst[j] += acc[j] as i64;
            }
        }
    }
}

/// The codes of ADCs with a non-linear transfer curve: from the ideal code `floor(y)`, moved
/// up while `y` reaches the next threshold and down while it is below the code's own (the
/// thresholds are non-decreasing with `T[0] = −∞` and `T[top + 1] = +∞`, so both loops stop;
/// with `|INL|` of a few LSB they take a few steps). Columns past `pc` keep their code.
#[inline(never)]
fn inl_codes(
    code: &mut [u32; BLOCK],
    p: &[f32; BLOCK],
    scale: &[f32; BLOCK],
    shift: &[f32; BLOCK],
    job: &TileJob,
    c0: usize,
) {
    for j in 0..BLOCK.min(job.pc.saturating_sub(c0)) {
        let y = p[j] * scale[j] + shift[j];
        if y.is_nan() {
            continue;
        }
        let t = &job.inl[job.inl_of[c0 + j] as usize..][..job.top as usize + 2];
        let mut c = code[j] as usize;
        while y >= t[c + 1] {
            c += 1;
        }
        while y < t[c] {
            c -= 1;
        }
        code[j] = c as u32;
    }
}

/// `BLOCK` values of `s` from `at`.
#[inline(always)]
fn block(s: &[f32], at: usize) -> &[f32; BLOCK] {
    s[at..at + BLOCK].try_into().expect("invariant: a slice of BLOCK values")
}

/// `P' += σ_r·sqrt(max(P', 0))·ε` for the block's columns `c0..c0 + BLOCK`: column pair
/// `(c, c + 1)` (c even) takes the two normals of `key.bits1(c)`.
#[inline(always)]
fn read_noise(p: &mut [f32; BLOCK], key: Key, c0: usize, sigma: f32) {
    let mut eps = [0f32; BLOCK];
    for j in 0..BLOCK / 2 {
        let (e0, e1) = normal_pair_f32(key.bits1((c0 + 2 * j) as u64));
        eps[2 * j] = e0;
        eps[2 * j + 1] = e1;
    }
    for j in 0..BLOCK {
        p[j] += sigma * p[j].max(0.0).sqrt() * eps[j];
    }
}

/// The ADC code `clamp(floor(y), 0, top)`: clamping first (`f32::max` turns a NaN into 0)
/// leaves a value in `[0, top]`, whose truncation is its floor and needs no saturation, so it
/// vectorizes where `floor` would be a call.
#[inline(always)]
pub(super) fn adc_code(y: f32, top: f32) -> u32 {
    let v = y.max(0.0).min(top);
    // SAFETY: `v` is finite and in [0, top] with top < 2^16, so it fits an i32.
    (unsafe { v.to_int_unchecked::<i32>() }) as u32
}
