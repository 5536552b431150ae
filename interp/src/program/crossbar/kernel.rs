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
/// the block (`colacc` is `[nvec][pcn]`); `p` is scratch of at least `pcn` values.
pub(super) fn run_block(blk: &Block, colacc: &mut [i64], p: &mut [u64], tally: Option<&mut Tally>) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vpopcntdq")
        && std::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: the three target features `block_avx512` is compiled with were detected on
        // this CPU just above; the function has no other precondition.
        unsafe { block_avx512(blk, colacc, p, tally) };
        return;
    }
    block_portable(blk, colacc, p, tally);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq,avx512bw")]
fn block_avx512(blk: &Block, colacc: &mut [i64], p: &mut [u64], tally: Option<&mut Tally>) {
    match tally {
        Some(t) => body::<true>(blk, colacc, p, t),
        None => {
            body::<false>(blk, colacc, p, &mut Tally { hist: vec![], conversions: 0, clipped: 0 })
        }
    }
}

fn block_portable(blk: &Block, colacc: &mut [i64], p: &mut [u64], tally: Option<&mut Tally>) {
    match tally {
        Some(t) => body::<true>(blk, colacc, p, t),
        None => {
            body::<false>(blk, colacc, p, &mut Tally { hist: vec![], conversions: 0, clipped: 0 })
        }
    }
}

/// `p[c] (+)= popcount(x & row[c]) << sh` over the block's columns (`FIRST`: assign).
#[inline(always)]
fn popcount_row<const FIRST: bool>(p: &mut [u64], row: &[u64], x: u64, sh: u32) {
    for (pp, &w) in p.iter_mut().zip(row) {
        let v = ((x & w).count_ones() as u64) << sh;
        if FIRST {
            *pp = v;
        } else {
            *pp += v;
        }
    }
}

#[inline(always)]
fn body<const STATS: bool>(blk: &Block, colacc: &mut [i64], p: &mut [u64], tally: &mut Tally) {
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
    let p = &mut p[..pcn];
    let e = &e[..pcn];
    let half = &half[..pcn];
    for t in 0..tiles {
        let wt = &w[t * per_tile..][..per_tile];
        for vi in 0..nvec {
            let xp = &xplanes[(vi * tiles + t) * xstride..][..xstride];
            let ca = &mut colacc[vi * pcn..][..pcn];
            for i in 0..input_slices {
                let a0 = i * dac_bits;
                let a1 = (a0 + dac_bits).min(input_bits);
                let mut any = false;
                for a in a0..a1 {
                    for word in 0..words {
                        let x = xp[a * words + word];
                        // An all-zero input word adds nothing to any partial sum.
                        if x == 0 {
                            continue;
                        }
                        for b in 0..cell_bits {
                            let row = &wt[(word * cell_bits + b) * pc_total + pc0..][..pcn];
                            let sh = (a - a0 + b) as u32;
                            if any {
                                popcount_row::<false>(p, row, x, sh);
                            } else {
                                popcount_row::<true>(p, row, x, sh);
                                any = true;
                            }
                        }
                    }
                }
                if !any {
                    // Every partial sum is 0 and A(0) = 0: nothing to add, nothing clips.
                    if STATS {
                        tally.hist[0] += pcn as u64;
                        tally.conversions += pcn as u64;
                    }
                    continue;
                }
                if STATS {
                    for c in 0..pcn {
                        tally.hist[p[c] as usize] += 1;
                        tally.clipped += (((p[c] + half[c]) >> e[c]) > adc_top) as u64;
                    }
                    tally.conversions += pcn as u64;
                }
                let ish = (i * dac_bits) as u32;
                for ((acc, &pp), (&ec, &hc)) in ca.iter_mut().zip(&*p).zip(e.iter().zip(half)) {
                    let q = ((pp + hc) >> ec).min(adc_top);
                    *acc += ((q << ec) << ish) as i64;
                }
            }
        }
    }
}
