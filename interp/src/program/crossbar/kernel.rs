//! The hot loop of the crossbar path: bit-plane popcounts, the ADC and shift-and-add over one
//! block of physical columns.
//!
//! For input bit `a` and cell bit `b`, `popcount(xplane_a & wplane_{b,c})` counts the rows of a
//! 64-row word where both bits are set; the partial sum of input slice `i`, weight slice `j`,
//! column `c` is `P = Σ_{a in slice i} Σ_b 2^((a − i·dac_bits) + b) · popcount(..)` summed over
//! the tile's words. The innermost loops run over physical columns, contiguous in memory, so
//! that LLVM vectorizes `count_ones` (VPOPCNTQ with AVX-512 VPOPCNTDQ) and the ADC's
//! per-column shifts (VPSRLVQ/VPSLLVQ). The body is compiled twice: once with those target
//! features (chosen at run time) and once portable.

/// One block of physical columns of one group, for a chunk of input vectors.
#[derive(Clone, Copy)]
pub(super) struct Block<'a> {
    pub tiles: usize,
    /// u64 words per row tile.
    pub words: usize,
    pub input_bits: usize,
    pub dac_bits: usize,
    pub cell_bits: usize,
    pub input_slices: usize,
    pub adc_top: u64,
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

/// ADC statistics of one task: histogram of partial sums, conversions, clipped conversions.
pub(super) struct Tally {
    pub hist: Vec<u64>,
    pub conversions: u64,
    pub clipped: u64,
}

/// Adds `Σ_t Σ_i 2^(i·dac_bits) · A(P[t,i,c])` to `colacc[vector][c]` for every column `c` of
/// the block. `colacc` is `[nvec][pcn rounded up to LANES]`; `w`, `e` and `half` must hold
/// whole lanes past `pc0 + pcn` (zero columns; their results are ignored).
pub(super) fn run_block(blk: &Block, colacc: &mut [i64], tally: Option<&mut Tally>) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vpopcntdq")
        && std::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: the three target features `block_avx512` is compiled with were detected on
        // this CPU just above; the function has no other precondition.
        unsafe { block_avx512(blk, colacc, tally) };
        return;
    }
    block_portable(blk, colacc, tally);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw")]
fn block_avx512(blk: &Block, colacc: &mut [i64], tally: Option<&mut Tally>) {
    match tally {
        Some(t) => body::<true>(blk, colacc, t),
        None => {
            body::<false>(blk, colacc, &mut Tally { hist: vec![], conversions: 0, clipped: 0 })
        }
    }
}

fn block_portable(blk: &Block, colacc: &mut [i64], tally: Option<&mut Tally>) {
    match tally {
        Some(t) => body::<true>(blk, colacc, t),
        None => {
            body::<false>(blk, colacc, &mut Tally { hist: vec![], conversions: 0, clipped: 0 })
        }
    }
}

/// Columns computed together (one 512-bit vector of u64).
pub(super) const LANES: usize = 8;

#[inline(always)]
fn lanes<T>(s: &[T], at: usize) -> &[T; LANES] {
    s[at..at + LANES].try_into().expect("invariant: blocks are whole lanes")
}

#[inline(always)]
fn body<const STATS: bool>(blk: &Block, colacc: &mut [i64], tally: &mut Tally) {
    let Block {
        tiles,
        words,
        input_bits,
        dac_bits,
        cell_bits,
        input_slices,
        adc_top,
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
    let lanes_n = pcn.div_ceil(LANES) * LANES;
    for t in 0..tiles {
        let wt = &w[t * per_tile..][..per_tile];
        for vi in 0..nvec {
            let xp = &xplanes[(vi * tiles + t) * xstride..][..xstride];
            if xp.iter().all(|&x| x == 0) {
                // Every partial sum is 0 and A(0) = 0: nothing to add, nothing clips.
                if STATS {
                    let n = (input_slices * pcn) as u64;
                    tally.hist[0] += n;
                    tally.conversions += n;
                }
                continue;
            }
            for c8 in (0..lanes_n).step_by(LANES) {
                let ca: &mut [i64; LANES] =
                    (&mut colacc[vi * lanes_n + c8..][..LANES]).try_into().expect("lanes");
                let ec = lanes(e, c8);
                let hc = lanes(half, c8);
                let mut acc = *ca;
                for i in 0..input_slices {
                    let a0 = i * dac_bits;
                    let mut p = [0u64; LANES];
                    for a in a0..(a0 + dac_bits).min(input_bits) {
                        for word in 0..words {
                            let x = xp[a * words + word];
                            // An all-zero input word adds nothing to any partial sum.
                            if x == 0 {
                                continue;
                            }
                            for b in 0..cell_bits {
                                let row = lanes(wt, (word * cell_bits + b) * pc_total + pc0 + c8);
                                let sh = (a - a0 + b) as u32;
                                for l in 0..LANES {
                                    p[l] += ((x & row[l]).count_ones() as u64) << sh;
                                }
                            }
                        }
                    }
                    if STATS {
                        for l in 0..LANES.min(pcn - c8) {
                            tally.hist[p[l] as usize] += 1;
                            tally.clipped += (((p[l] + hc[l]) >> ec[l]) > adc_top) as u64;
                        }
                        tally.conversions += LANES.min(pcn - c8) as u64;
                    }
                    let ish = (i * dac_bits) as u32;
                    for l in 0..LANES {
                        let q = ((p[l] + hc[l]) >> ec[l]).min(adc_top);
                        acc[l] += ((q << ec[l]) << ish) as i64;
                    }
                }
                *ca = acc;
            }
        }
    }
}
