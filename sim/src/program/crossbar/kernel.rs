//! The hot loop of the crossbar path: bit-plane popcounts, the ADC and shift-and-add over one
//! block of physical columns.
//!
//! For input bit `a` and cell bit `b`, `popcount(xplane_a & wplane_{b,c})` counts the rows of a
//! 64-row word where both bits are set; the partial sum of input slice `i`, weight slice `j`,
//! column `c` is `P = Σ_{a in slice i} Σ_b 2^((a − i·dac_bits) + b) · popcount(..)` summed over
//! the tile's words. The innermost loops run over 32 physical columns (8 for narrow layers),
//! contiguous in memory, whose partial sums and accumulators stay in registers over a tile, so
//! that LLVM vectorizes `count_ones` (VPOPCNTQ with AVX-512 VPOPCNTDQ) and the ADC's
//! per-column shifts (VPSRLVQ/VPSLLVQ). All-zero input words (most high bits after a ReLU) are
//! skipped. The kernels are compiled twice: once with those target features (chosen at run
//! time) and once portable (`CIMC_PORTABLE_KERNELS=1` forces it, for tests).
//!
//! Measured on ResNet-18 (batch 1, 8-bit inputs bit-serial, 8-bit differential weights in
//! 2-bit cells, 128-row tiles, 8-bit ADC, this project's 2-core AVX-512 machine): about 0.45 s
//! per image (the exact program: 0.16 s), about 80% of it in [`run_block`].

/// How a layer is cut for the arrays, shared by both kernels' blocks: row tiles, u64 words of
/// input planes per row tile, input bits and DAC slices, cell bits, and the ADC's top code.
#[derive(Clone, Copy)]
pub(super) struct Slicing {
    pub tiles: usize,
    /// u64 words per row tile.
    pub words: usize,
    pub input_bits: usize,
    pub dac_bits: usize,
    pub cell_bits: usize,
    pub input_slices: usize,
    pub adc_top: u64,
}

/// One block of physical columns of one group, for a chunk of input vectors.
#[derive(Clone, Copy)]
pub(super) struct Block<'a> {
    pub slicing: Slicing,
    /// The group's weight planes, `[tile][word][cell bit][physical column]`.
    pub w: &'a [u64],
    /// Physical columns of the group (the stride of `w`).
    pub pc_total: usize,
    /// First physical column of the block and how many.
    pub pc0: usize,
    pub pcn: usize,
    /// ADC step exponent and half step of each column of the block.
    pub e: &'a [u64],
    pub half: &'a [u64],
    /// Input planes of the chunk, `[vector][tile][input bit][word]`.
    pub xplanes: &'a [u64],
    pub nvec: usize,
}

/// ADC statistics of one task: histogram of partial sums (empty for a counting record), the
/// conversions at or above each level (`levels`, all at least 1: a counting record's nonzero
/// levels), conversions, clipped conversions.
pub(super) struct Tally {
    pub hist: Vec<u64>,
    pub levels: Vec<u64>,
    pub at_least: Vec<u64>,
    pub conversions: u64,
    pub clipped: u64,
}

impl Tally {
    /// A tally counting nothing (for the kernels' bodies without statistics).
    pub(super) fn none() -> Tally {
        Tally { hist: vec![], levels: vec![], at_least: vec![], conversions: 0, clipped: 0 }
    }

    /// A tally for a record with `hist_len` histogram entries (0 for a counting record) and
    /// these levels.
    pub(super) fn new(hist_len: usize, levels: Vec<u64>) -> Tally {
        let at_least = vec![0; levels.len()];
        Tally { hist: vec![0; hist_len], levels, at_least, conversions: 0, clipped: 0 }
    }
}

/// Whether this CPU has AVX-512 F, BW and VPOPCNTDQ (detected once), unless the environment
/// variable `CIMC_PORTABLE_KERNELS` is set (to test the portable build of the kernels).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vpopcntdq")
            && std::is_x86_feature_detected!("avx512bw")
            && !cimc_interp::portable_kernels_forced()
    })
}

/// The kernel path the crossbar steps run on: the 16-bit kernel's (`avx512-bitalg`, `avx2` or
/// `portable`, every layer of the shipped targets), or for wider numbers this file's
/// (`avx512-vpopcntdq` or `portable`).
pub fn path_name() -> &'static str {
    super::lanes16::Path::best().name()
}

/// Adds `Σ_t Σ_i 2^(i·dac_bits) · A(P[t,i,c])` to `colacc[vector][c]` for every column `c` of
/// the block. `colacc` is `[nvec][pcn rounded up to LANES]`; `w`, `e` and `half` must hold
/// whole lanes past `pc0 + pcn` (zero columns; their results are ignored).
pub(super) fn run_block(blk: &Block, colacc: &mut [i64], tally: Option<&mut Tally>) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: `avx512()` detected the three target features `block_avx512` is compiled
        // with on this CPU; the function has no other precondition.
        unsafe { block_avx512(blk, colacc, tally) };
        return;
    }
    block_portable(blk, colacc, tally);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw")]
fn block_avx512(blk: &Block, colacc: &mut [i64], tally: Option<&mut Tally>) {
    dispatch(blk, colacc, tally)
}

fn block_portable(blk: &Block, colacc: &mut [i64], tally: Option<&mut Tally>) {
    dispatch(blk, colacc, tally)
}

/// The bit planes of one input vector: `vbuf` holds its values `[tile][word][64 rows]`; bit `a`
/// of word `word` of tile `t` goes to `xp[(t · input_bits + a) · words + word]` (`xp` zeroed).
pub(crate) fn input_planes(vbuf: &[u16], input_bits: usize, words: usize, xp: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        // SAFETY: `avx512()` detected the target features `planes_avx512` is compiled with on
        // this CPU; the function has no other precondition.
        unsafe { planes_avx512(vbuf, input_bits, words, xp) };
        return;
    }
    planes_body(vbuf, input_bits, words, xp);
}

/// As [`planes_body`], with one VPTESTMW per 32 rows and input bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn planes_avx512(vbuf: &[u16], input_bits: usize, words: usize, xp: &mut [u64]) {
    use std::arch::x86_64::{
        __m512i, _mm512_loadu_si512, _mm512_or_si512, _mm512_set1_epi16, _mm512_test_epi16_mask,
    };
    for (tw, rows) in vbuf.chunks_exact(64).enumerate() {
        let (lo, hi) = rows.split_at(32);
        // SAFETY: `lo` and `hi` each hold 32 u16, the 64 bytes of one unaligned vector load.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(lo.as_ptr().cast::<__m512i>()),
                _mm512_loadu_si512(hi.as_ptr().cast::<__m512i>()),
            )
        };
        let any = _mm512_or_si512(lo, hi);
        if _mm512_test_epi16_mask(any, any) == 0 {
            continue;
        }
        let (t, word) = (tw / words, tw % words);
        for a in 0..input_bits {
            let bit = _mm512_set1_epi16((1u16 << a) as i16);
            let m = _mm512_test_epi16_mask(lo, bit) as u64
                | ((_mm512_test_epi16_mask(hi, bit) as u64) << 32);
            xp[(t * input_bits + a) * words + word] = m;
        }
    }
}

#[inline(always)]
fn planes_body(vbuf: &[u16], input_bits: usize, words: usize, xp: &mut [u64]) {
    for (tw, rows) in vbuf.chunks_exact(64).enumerate() {
        let rows: &[u16; 64] = rows.try_into().expect("invariant: chunks of 64");
        if rows.iter().fold(0, |o, &v| o | v) == 0 {
            continue;
        }
        let (t, word) = (tw / words, tw % words);
        for a in 0..input_bits {
            xp[(t * input_bits + a) * words + word] = bit_plane(rows, a as u32);
        }
    }
}

/// Bit `a` of 64 values as a mask (bit `r` from value `r`).
#[inline(always)]
pub(super) fn bit_plane<T: Copy + Into<u32>>(rows: &[T; 64], a: u32) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if a < 32 {
        // Four values per `movmskps`, their bit `a` shifted to the sign (SSE2, in every x86-64
        // CPU): a quarter of the scalar loop's shifts (the weights' bit planes were a tenth of
        // a compile's time).
        use std::arch::x86_64::*;
        let mut m = 0u64;
        for (q, c) in rows.chunks_exact(4).enumerate() {
            let v: [u32; 4] = [c[0].into(), c[1].into(), c[2].into(), c[3].into()];
            // SAFETY: SSE2 is part of the x86-64 baseline; the load reads the 16 bytes of `v`.
            let signs = unsafe {
                let x = _mm_loadu_si128(v.as_ptr().cast());
                let x = _mm_sll_epi32(x, _mm_cvtsi32_si128((31 - a) as i32));
                _mm_movemask_ps(_mm_castsi128_ps(x))
            };
            m |= (signs as u64) << (4 * q);
        }
        return m;
    }
    bit_plane_scalar(rows, a)
}

#[inline(always)]
fn bit_plane_scalar<T: Copy + Into<u32>>(rows: &[T; 64], a: u32) -> u64 {
    let mut m = 0u64;
    for (r, &v) in rows.iter().enumerate() {
        m |= (((v.into() >> a) & 1) as u64) << r;
    }
    m
}

/// Picks the monomorphic body: narrow blocks for narrow layers (depthwise), statistics or not.
#[inline(always)]
fn dispatch(blk: &Block, colacc: &mut [i64], tally: Option<&mut Tally>) {
    let mut none = Tally::none();
    match (tally, blk.pcn <= NARROW) {
        (Some(t), true) => body::<true, NARROW>(blk, colacc, t),
        (Some(t), false) => body::<true, LANES>(blk, colacc, t),
        (None, true) => body::<false, NARROW>(blk, colacc, &mut none),
        (None, false) => body::<false, LANES>(blk, colacc, &mut none),
    }
}

/// Columns computed together: four 512-bit vectors of u64 (the padding unit of the planes).
pub(crate) const LANES: usize = 32;
/// The width for blocks of at most this many columns.
const NARROW: usize = 8;

/// The kernel for columns `W` at a time, kept in registers over a tile: for each column, tile
/// and vector, `P` of every input slice, its ADC and its shift into the column's accumulator.
#[inline(always)]
fn body<const STATS: bool, const W: usize>(blk: &Block, colacc: &mut [i64], tally: &mut Tally) {
    let Block {
        slicing: Slicing { tiles, words, input_bits, dac_bits, cell_bits, input_slices, adc_top },
        w,
        pc_total,
        pc0,
        pcn,
        e,
        half,
        xplanes,
        nvec,
    } = *blk;
    let per_tile = words * cell_bits * pc_total;
    let xstride = input_bits * words;
    let stride = pcn.div_ceil(LANES) * LANES;
    let wrows = words * cell_bits;
    // The tile's weight rows of the current W columns, contiguous: `[word][cell bit][W]`.
    let mut wloc = vec![0u64; wrows * W];
    let mut zero = vec![false; nvec];
    for t in 0..tiles {
        let wt = &w[t * per_tile..][..per_tile];
        for (vi, z) in zero.iter_mut().enumerate() {
            *z = xplanes[(vi * tiles + t) * xstride..][..xstride].iter().all(|&x| x == 0);
        }
        for c in (0..pcn).step_by(W) {
            for (r, dst) in wloc.chunks_exact_mut(W).enumerate() {
                dst.copy_from_slice(&wt[r * pc_total + pc0 + c..][..W]);
            }
            let ec: &[u64; W] = e[c..c + W].try_into().expect("whole lanes");
            let hc: &[u64; W] = half[c..c + W].try_into().expect("whole lanes");
            let real = W.min(pcn - c);
            for vi in 0..nvec {
                if zero[vi] {
                    // Every partial sum is 0 and A(0) = 0: nothing to add, nothing clips.
                    if STATS {
                        let n = (input_slices * real) as u64;
                        if let Some(h0) = tally.hist.first_mut() {
                            *h0 += n;
                        }
                        tally.conversions += n;
                    }
                    continue;
                }
                let xp = &xplanes[(vi * tiles + t) * xstride..][..xstride];
                let ca: &mut [i64; W] =
                    (&mut colacc[vi * stride + c..][..W]).try_into().expect("whole lanes");
                let mut acc = *ca;
                for i in 0..input_slices {
                    let a0 = i * dac_bits;
                    let mut p = [0u64; W];
                    for a in a0..(a0 + dac_bits).min(input_bits) {
                        for (word, &x) in xp[a * words..][..words].iter().enumerate() {
                            // An all-zero input word adds nothing to any partial sum.
                            if x == 0 {
                                continue;
                            }
                            let rows = &wloc[word * cell_bits * W..][..cell_bits * W];
                            for (b, row) in rows.chunks_exact(W).enumerate() {
                                let sh = (a - a0 + b) as u32;
                                if sh == 0 {
                                    for l in 0..W {
                                        p[l] += (x & row[l]).count_ones() as u64;
                                    }
                                } else {
                                    for l in 0..W {
                                        p[l] += ((x & row[l]).count_ones() as u64) << sh;
                                    }
                                }
                            }
                        }
                    }
                    if STATS {
                        for l in 0..real {
                            tally.clipped += (((p[l] + hc[l]) >> ec[l]) > adc_top) as u64;
                        }
                        if tally.hist.is_empty() {
                            for (n, &level) in tally.at_least.iter_mut().zip(&tally.levels) {
                                *n += p[..real].iter().filter(|&&v| v >= level).count() as u64;
                            }
                        } else {
                            for &v in &p[..real] {
                                tally.hist[v as usize] += 1;
                            }
                        }
                        tally.conversions += real as u64;
                    }
                    let ish = (i * dac_bits) as u32;
                    for l in 0..W {
                        let q = ((p[l] + hc[l]) >> ec[l]).min(adc_top);
                        acc[l] += ((q << ec[l]) << ish) as i64;
                    }
                }
                *ca = acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector bit planes equal the scalar loop's on random values of every width, u16 and
    /// u32, every bit below 32.
    #[test]
    fn bit_plane_matches_the_scalar_loop() {
        let mut rng = crate::noise::SplitMix64(11);
        for case in 0..200 {
            let bits = rng.int(1i64, 32) as u32;
            let wide: [u32; 64] = std::array::from_fn(|_| (rng.next_u64() as u32) >> (32 - bits));
            let narrow: [u16; 64] = std::array::from_fn(|i| wide[i] as u16);
            for a in 0..32 {
                assert_eq!(bit_plane(&wide, a), bit_plane_scalar(&wide, a), "case {case} bit {a}");
                assert_eq!(
                    bit_plane(&narrow, a),
                    bit_plane_scalar(&narrow, a),
                    "case {case} bit {a} (u16)"
                );
            }
        }
    }
}
