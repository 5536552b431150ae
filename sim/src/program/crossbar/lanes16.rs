//! The crossbar kernel on 16-bit lanes: the same partial sums, ADC and shift-and-add as
//! [`super::kernel`], for the layers whose numbers fit 16 bits (every partial sum plus its
//! half step, and the per-tile sum `Σ_i A(P_i) >> e << (i·dac_bits)`; checked once when the
//! weights are prepared, [`fits`]) — every layer of the shipped targets.
//!
//! The weight planes are cut into 16-row words and laid out per block of [`COLS`] physical
//! columns, `[tile][column chunk][word16][cell bit][COLS]`: one 512-bit vector holds one
//! (word, cell bit) of 32 columns, and the `words16 · cell_bits` vectors a chunk reads over a
//! tile are one contiguous kilobyte (the `[cell bit][column]` rows of the u64 layout lie a
//! whole plane apart, and a chunk's sixteen 4 KiB-strided rows thrash one L1 set). Per
//! (vector, input slice, chunk): one AND, one `VPOPCNTW` and one add per (word, cell bit) for
//! 32 columns, then the ADC of 32 columns in one vector (`(P + half) >> e`, the clip, the shift
//! by the slice's place) — a quarter of the ADC instructions of 64-bit lanes. The sum over a
//! tile's input slices stays in u16 and is shifted by `e` into the i64 accumulator once per
//! tile. Input words that are zero, and input slices whose bits are all zero in a tile (most
//! high bits after a ReLU), are skipped: every partial sum is then 0 and `A(0) = 0`.
//!
//! Three builds, chosen once per process ([`Path`]): AVX-512 with BITALG (`VPOPCNTW`)
//! intrinsics, and one portable Rust body compiled with AVX2 (LLVM counts bits with `VPSHUFB`
//! nibble tables) and for the baseline CPU. All give the same integers; `lanes16` tests
//! compare them with the 64-bit kernel.

use super::kernel::{Slicing, Tally};

/// Physical columns per 16-bit chunk (one 512-bit vector of u16).
pub(crate) const COLS: usize = 32;

/// One block of physical columns of one group, for a chunk of input vectors (16-bit layout).
#[derive(Clone, Copy)]
pub(super) struct Block16<'a> {
    /// The layer's cut (`words` is u64 words per row tile of the input planes; the kernel reads
    /// them as `words16 = 4 · words`).
    pub slicing: Slicing,
    /// The group's weight planes, `[tile][column chunk][word16][cell bit][COLS]`.
    pub w: &'a [u16],
    /// Column chunks per tile of the group.
    pub chunks: usize,
    /// First chunk of the block, and the block's columns.
    pub chunk0: usize,
    pub pcn: usize,
    /// ADC step exponent and half step of each column of the block (whole chunks).
    pub e: &'a [u16],
    pub half: &'a [u16],
    /// Input planes of the vectors, `[vector][tile][input bit][u64 word]`.
    pub xplanes: &'a [u64],
    pub nvec: usize,
}

/// Which build of the crossbar kernels runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// AVX-512 F, BW, BITALG intrinsics.
    Avx512,
    /// The portable body compiled with AVX2.
    Avx2,
    /// The portable body for the baseline CPU.
    Portable,
}

impl Path {
    /// The fastest build this CPU runs (detected once); the portable one when the environment
    /// variable `CIMC_PORTABLE_KERNELS` is set.
    pub(crate) fn best() -> Path {
        static BEST: std::sync::OnceLock<Path> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            if cimc_interp::portable_kernels_forced() {
                Path::Portable
            } else if Path::Avx512.available() {
                Path::Avx512
            } else if Path::Avx2.available() {
                Path::Avx2
            } else {
                Path::Portable
            }
        })
    }

    /// Whether this CPU runs the build.
    pub(crate) fn available(self) -> bool {
        match self {
            Path::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => std::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512 => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512bitalg")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Path::Avx2 | Path::Avx512 => false,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Path::Avx512 => "avx512-bitalg",
            Path::Avx2 => "avx2",
            Path::Portable => "portable",
        }
    }
}

/// The numbers of a crossbar fit the 16-bit kernel: `P + half` for the largest partial sum
/// `p_max` of a tile and every column's half step, and `Σ_i q_i · 2^(i·dac_bits)` for the
/// largest ADC code `q` a column can give, stay below 2^16; steps below 16; at most 4 cell bits.
pub(crate) fn fits(
    p_max: u64,
    adc_top: u64,
    steps: impl Iterator<Item = u64>,
    input_slices: usize,
    dac_bits: usize,
    cell_bits: usize,
) -> bool {
    let place_sum: u128 = (0..input_slices).map(|i| 1u128 << (i * dac_bits).min(100)).sum();
    let mut ok = (1..=4).contains(&cell_bits) && p_max <= 0xFFFF;
    for e in steps {
        if !ok || e >= 16 {
            return false;
        }
        let half = if e == 0 { 0 } else { 1u64 << (e - 1) };
        let q_max = ((p_max + half) >> e).min(adc_top) as u128;
        ok = p_max + half <= 0xFFFF && q_max * place_sum <= 0xFFFF;
    }
    ok
}

/// Adds `Σ_t Σ_i 2^(i·dac_bits) · A(P[t,i,c])` to `colacc[vector][c]` for every column `c` of
/// the block, as [`super::kernel::run_block`] does; `colacc` is `[nvec][pcn rounded up to
/// COLS]`.
pub(super) fn run_block(path: Path, blk: &Block16, colacc: &mut [i64], tally: Option<&mut Tally>) {
    assert!(
        blk.e.len() >= blk.pcn.div_ceil(COLS) * COLS
            && blk.half.len() >= blk.pcn.div_ceil(COLS) * COLS
            && colacc.len() >= blk.nvec * blk.pcn.div_ceil(COLS) * COLS
            && blk.w.len()
                >= blk.slicing.tiles
                    * blk.chunks
                    * 4
                    * blk.slicing.words
                    * blk.slicing.cell_bits
                    * COLS
            && blk.chunk0 * COLS + blk.pcn <= blk.chunks * COLS
            && blk.xplanes.len()
                >= blk.nvec * blk.slicing.tiles * blk.slicing.input_bits * blk.slicing.words
            && (1..=4).contains(&blk.slicing.cell_bits),
        "invariant: the block's planes, steps and accumulators cover its columns"
    );
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Avx512 => {
            assert!(Path::Avx512.available(), "invariant: AVX-512 is chosen only where present");
            // SAFETY: the CPU has the target features (checked above); every read of the
            // weights, steps, input planes and accumulators lies inside the slices (asserted
            // above, the offsets computed as in the portable body).
            unsafe {
                match tally {
                    Some(t) => avx512::body::<true>(blk, colacc, t),
                    None => avx512::body::<false>(blk, colacc, &mut Tally::none()),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => {
            assert!(Path::Avx2.available(), "invariant: AVX2 is chosen only where present");
            // SAFETY: the CPU has AVX2 (checked above); the body is safe Rust.
            unsafe { block_avx2(blk, colacc, tally) }
        }
        _ => block_portable(blk, colacc, tally),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn block_avx2(blk: &Block16, colacc: &mut [i64], tally: Option<&mut Tally>) {
    dispatch(blk, colacc, tally)
}

fn block_portable(blk: &Block16, colacc: &mut [i64], tally: Option<&mut Tally>) {
    dispatch(blk, colacc, tally)
}

#[inline(always)]
fn dispatch(blk: &Block16, colacc: &mut [i64], tally: Option<&mut Tally>) {
    match tally {
        Some(t) => body::<true>(blk, colacc, t),
        None => body::<false>(blk, colacc, &mut Tally::none()),
    }
}

/// Which input bits of each vector have a nonzero word in tile `t` (bit `a` of `nz[vi]`), and
/// the vectors' 16-bit input words `[vector][input bit][word16]`.
#[inline(always)]
fn tile_inputs(blk: &Block16, t: usize, nz: &mut [u32], x16: &mut [u16]) {
    let xstride = blk.slicing.input_bits * blk.slicing.words;
    for (vi, m) in nz.iter_mut().enumerate() {
        let xp = &blk.xplanes[(vi * blk.slicing.tiles + t) * xstride..][..xstride];
        let dst = &mut x16[vi * xstride * 4..][..xstride * 4];
        *m = 0;
        for (a, ws) in xp.chunks_exact(blk.slicing.words).enumerate() {
            if ws.iter().any(|&x| x != 0) {
                *m |= 1 << a;
            }
        }
        for (d, &x) in dst.chunks_exact_mut(4).zip(xp) {
            for (q, d) in d.iter_mut().enumerate() {
                *d = (x >> (16 * q)) as u16;
            }
        }
    }
}

/// The statistics of one block call, added to the task's [`Tally`] at the end. The histogram
/// has [`COPIES`] copies, lane `l` counting into copy `l % COPIES` (equal sums of neighbouring
/// columns then never wait on each other's increments), and one extra entry per copy where the
/// lanes past the block's columns count; every lane of a vector with a nonzero sum is counted
/// without a branch. A counting record (the tally's histogram empty) keeps no histogram: per
/// level, the lanes at or above it are counted by a compare and a mask popcount.
struct Counts {
    hist: Vec<u64>,
    /// Entries per copy: the histogram's length plus the dead lanes' entry.
    len: usize,
    zeros: u64,
    conversions: u64,
    clipped: u64,
    /// A counting record's levels that a 16-bit sum can reach (the others count nothing), the
    /// tally's index of each, and their counts.
    levels: Vec<(u16, usize)>,
    at_least: Vec<u64>,
}

/// Copies of the statistics' histogram.
const COPIES: usize = 8;

impl Counts {
    fn new(tally: &Tally) -> Counts {
        let counting = tally.hist.is_empty();
        let len = tally.hist.len() + 1;
        let levels: Vec<(u16, usize)> = if counting {
            let reachable = tally.levels.iter().enumerate().filter(|(_, &l)| l <= 0xFFFF);
            reachable.map(|(i, &l)| (l as u16, i)).collect()
        } else {
            Vec::new()
        };
        Counts {
            hist: if counting { Vec::new() } else { vec![0; COPIES * len] },
            len,
            zeros: 0,
            conversions: 0,
            clipped: 0,
            at_least: vec![0; levels.len()],
            levels,
        }
    }

    /// A counting record: levels instead of the histogram.
    #[inline(always)]
    fn counting(&self) -> bool {
        self.hist.is_empty()
    }

    /// Counts `n` conversions of partial sum 0 (a slice with no input bit set: `A(0) = 0`).
    #[inline(always)]
    fn zero(&mut self, n: usize) {
        self.zeros += n as u64;
        self.conversions += n as u64;
    }

    /// Counts the sums `p` of the first `real` lanes (`nonzero`: a bit per lane whose sum is
    /// not 0; the sums are below the histogram's length).
    #[inline(always)]
    fn sums(&mut self, p: &[u16; COLS], nonzero: u32, real: usize) {
        self.conversions += real as u64;
        if nonzero == 0 {
            self.zeros += real as u64;
            return;
        }
        if self.counting() {
            for (&(level, _), n) in self.levels.iter().zip(&mut self.at_least) {
                *n += p[..real].iter().filter(|&&v| v >= level).count() as u64;
            }
            return;
        }
        let dead = self.len - 1;
        let copies: &mut [u64] = &mut self.hist[..COPIES * self.len];
        for (l, &v) in p.iter().enumerate() {
            let at = if l < real { (v as usize).min(dead) } else { dead };
            copies[(l % COPIES) * self.len + at] += 1;
        }
    }

    fn add_to(&self, tally: &mut Tally) {
        for copy in self.hist.chunks_exact(self.len) {
            for (h, &c) in tally.hist.iter_mut().zip(copy) {
                *h += c;
            }
        }
        if let Some(h0) = tally.hist.first_mut() {
            *h0 += self.zeros;
        }
        for (&(_, i), &n) in self.levels.iter().zip(&self.at_least) {
            tally.at_least[i] += n;
        }
        tally.conversions += self.conversions;
        tally.clipped += self.clipped;
    }
}

/// Counts the conversions of the first `real` columns of `p`.
#[inline(always)]
fn tally_block(
    counts: &mut Counts,
    p: &[u16; COLS],
    e: &[u16; COLS],
    half: &[u16; COLS],
    top: u16,
    real: usize,
) {
    let (mut nonzero, mut clipped) = (0u32, 0u32);
    for l in 0..COLS {
        let live = l < real;
        nonzero |= ((live && p[l] != 0) as u32) << l;
        clipped += (live && ((p[l] + half[l]) >> e[l]) > top) as u32;
    }
    counts.clipped += clipped as u64;
    counts.sums(p, nonzero, real);
}

/// The portable body: 32 columns as arrays of u16 the compiler vectorizes.
#[inline(always)]
fn body<const STATS: bool>(blk: &Block16, colacc: &mut [i64], tally: &mut Tally) {
    let Slicing { tiles, words, input_bits, dac_bits, cell_bits, input_slices, adc_top } =
        blk.slicing;
    let mut counts = Counts::new(tally);
    let (nvec, pcn, w16) = (blk.nvec, blk.pcn, 4 * words);
    let stride = pcn.div_ceil(COLS) * COLS;
    let chunk_len = w16 * cell_bits * COLS;
    let slice_mask = (1u32 << dac_bits) - 1;
    let top = adc_top.min(0xFFFF) as u16;
    let mut nz = vec![0u32; nvec];
    let mut x16 = vec![0u16; nvec * input_bits * w16];
    for t in 0..tiles {
        tile_inputs(blk, t, &mut nz, &mut x16);
        for c in (0..pcn).step_by(COLS) {
            let chunk = t * blk.chunks + blk.chunk0 + c / COLS;
            let wc = &blk.w[chunk * chunk_len..][..chunk_len];
            let ec: &[u16; COLS] = blk.e[c..][..COLS].try_into().expect("invariant: whole chunk");
            let hc: &[u16; COLS] =
                blk.half[c..][..COLS].try_into().expect("invariant: whole chunk");
            let real = COLS.min(pcn - c);
            for vi in 0..nvec {
                if nz[vi] == 0 {
                    if STATS {
                        counts.zero(input_slices * real);
                    }
                    continue;
                }
                let xv = &x16[vi * input_bits * w16..][..input_bits * w16];
                let mut acc = [0u16; COLS];
                for i in 0..input_slices {
                    let a0 = i * dac_bits;
                    if (nz[vi] >> a0) & slice_mask == 0 {
                        if STATS {
                            counts.zero(real);
                        }
                        continue;
                    }
                    let mut p = [0u16; COLS];
                    for a in a0..(a0 + dac_bits).min(input_bits) {
                        for (word, &x) in xv[a * w16..][..w16].iter().enumerate() {
                            if x == 0 {
                                continue;
                            }
                            let rows = &wc[word * cell_bits * COLS..][..cell_bits * COLS];
                            for (b, row) in rows.chunks_exact(COLS).enumerate() {
                                let sh = (a - a0 + b) as u32;
                                for l in 0..COLS {
                                    p[l] += ((x & row[l]).count_ones() as u16) << sh;
                                }
                            }
                        }
                    }
                    if STATS {
                        tally_block(&mut counts, &p, ec, hc, top, real);
                    }
                    let ish = (i * dac_bits) as u32;
                    for l in 0..COLS {
                        let q = ((p[l] + hc[l]) >> ec[l]).min(top);
                        acc[l] += q << ish;
                    }
                }
                let ca = &mut colacc[vi * stride + c..][..COLS];
                for l in 0..COLS {
                    ca[l] += (acc[l] as i64) << ec[l];
                }
            }
        }
    }
    if STATS {
        counts.add_to(tally);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{tile_inputs, Block16, Counts, Slicing, Tally, COLS};
    use std::arch::x86_64::*;

    /// The body of [`super::body`] with one 512-bit vector per 32 columns, the cell bits'
    /// counts in separate vectors (shifted once per input bit), the input word broadcast from
    /// a 32-bit copy.
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and BITALG; the block's slices cover its columns as
    /// [`super::run_block`] asserts.
    pub(super) unsafe fn body<const STATS: bool>(
        blk: &Block16,
        colacc: &mut [i64],
        tally: &mut Tally,
    ) {
        // SAFETY: forwarded from the caller's contract.
        unsafe {
            match blk.slicing.cell_bits {
                1 => body_cb::<STATS, 1>(blk, colacc, tally),
                2 => body_cb::<STATS, 2>(blk, colacc, tally),
                3 => body_cb::<STATS, 3>(blk, colacc, tally),
                _ => body_cb::<STATS, 4>(blk, colacc, tally),
            }
        }
    }

    /// [`body`] for `CB` cell bits (`CB == blk.slicing.cell_bits`).
    #[target_feature(enable = "avx512f,avx512bw,avx512bitalg")]
    unsafe fn body_cb<const STATS: bool, const CB: usize>(
        blk: &Block16,
        colacc: &mut [i64],
        tally: &mut Tally,
    ) {
        let Slicing { tiles, words, input_bits, dac_bits, input_slices, adc_top, .. } = blk.slicing;
        let cell_bits = CB;
        let (nvec, pcn, w16) = (blk.nvec, blk.pcn, 4 * words);
        let stride = pcn.div_ceil(COLS) * COLS;
        let chunk_len = w16 * cell_bits * COLS;
        let slice_mask = (1u32 << dac_bits) - 1;
        let topv = _mm512_set1_epi16(adc_top.min(0xFFFF) as u16 as i16);
        let one = _mm512_set1_epi16(1);
        let mut counts = Counts::new(tally);
        let levelv: Vec<__m512i> =
            counts.levels.iter().map(|&(l, _)| _mm512_set1_epi16(l as i16)).collect();
        // A counting record counts in 16-bit lanes (a masked increment per level and
        // conversion, no scalar chain through memory), added to `counts` at the block's end or
        // before a lane could overflow.
        // SAFETY: the CPU has AVX-512 F (this function's contract).
        let mut lanes = unsafe { LaneCounts::new(levelv.len()) };
        let mut nz = vec![0u32; nvec];
        let mut x16 = vec![0u16; nvec * input_bits * w16];
        let mut pbuf = [0u16; COLS];
        for t in 0..tiles {
            tile_inputs(blk, t, &mut nz, &mut x16);
            for c in (0..pcn).step_by(COLS) {
                let chunk = t * blk.chunks + blk.chunk0 + c / COLS;
                let wc = blk.w[chunk * chunk_len..][..chunk_len].as_ptr();
                let (ec, hc) = (&blk.e[c..][..COLS], &blk.half[c..][..COLS]);
                // SAFETY: `ec` and `hc` hold 32 u16 each, one unaligned 64-byte load.
                let (ev, hv) = unsafe {
                    (_mm512_loadu_si512(ec.as_ptr().cast()), _mm512_loadu_si512(hc.as_ptr().cast()))
                };
                let real = COLS.min(pcn - c);
                let live = if real == COLS { u32::MAX } else { (1u32 << real) - 1 };
                let counting = STATS && counts.counting();
                if counting {
                    // Every (vector, input slice) converts `real` columns, zero or not.
                    counts.conversions += (nvec * input_slices * real) as u64;
                }
                for vi in 0..nvec {
                    if counting && lanes.pending + input_slices > LaneCounts::MAX {
                        // SAFETY: the CPU has AVX-512 F and BW (this function's contract).
                        unsafe { lanes.flush(&mut counts) };
                    }
                    if nz[vi] == 0 {
                        if STATS && !counting {
                            counts.zero(input_slices * real);
                        }
                        continue;
                    }
                    lanes.pending += input_slices;
                    let xv = &x16[vi * input_bits * w16..][..input_bits * w16];
                    let mut acc = _mm512_setzero_si512();
                    for i in 0..input_slices {
                        let a0 = i * dac_bits;
                        if (nz[vi] >> a0) & slice_mask == 0 {
                            if STATS && !counting {
                                counts.zero(real);
                            }
                            continue;
                        }
                        let mut p = _mm512_setzero_si512();
                        for a in a0..(a0 + dac_bits).min(input_bits) {
                            let mut cnt = [_mm512_setzero_si512(); CB];
                            // Every word, zero or not: a skip's branch mispredicts on
                            // ReLU inputs more than the two ANDs and counts it saves.
                            for (word, &x) in xv[a * w16..][..w16].iter().enumerate() {
                                let xb = _mm512_set1_epi16(x as i16);
                                for (b, cb) in cnt.iter_mut().enumerate() {
                                    // SAFETY: row `word · cell_bits + b` of the chunk: 32 u16
                                    // inside `wc`'s `chunk_len`.
                                    let row = unsafe {
                                        _mm512_loadu_si512(
                                            wc.add((word * cell_bits + b) * COLS).cast(),
                                        )
                                    };
                                    let m = _mm512_and_si512(xb, row);
                                    *cb = _mm512_add_epi16(*cb, _mm512_popcnt_epi16(m));
                                }
                            }
                            for (b, cb) in cnt.iter().enumerate() {
                                let sh = _mm_cvtsi32_si128((a - a0 + b) as i32);
                                p = _mm512_add_epi16(p, _mm512_sll_epi16(*cb, sh));
                            }
                        }
                        let q_raw = _mm512_srlv_epi16(_mm512_add_epi16(p, hv), ev);
                        if STATS {
                            let clip = _mm512_cmpgt_epu16_mask(q_raw, topv) & live;
                            if counting {
                                lanes.clip =
                                    _mm512_mask_add_epi16(lanes.clip, clip, lanes.clip, one);
                                for (lv, n) in levelv.iter().zip(&mut lanes.at_least) {
                                    let at = _mm512_cmpge_epu16_mask(p, *lv) & live;
                                    *n = _mm512_mask_add_epi16(*n, at, *n, one);
                                }
                            } else {
                                counts.clipped += clip.count_ones() as u64;
                                let nonzero = _mm512_test_epi16_mask(p, p) & live;
                                // SAFETY: `pbuf` holds 32 u16, one 64-byte store.
                                unsafe { _mm512_storeu_si512(pbuf.as_mut_ptr().cast(), p) };
                                counts.sums(&pbuf, nonzero, real);
                            }
                        }
                        let q = _mm512_min_epu16(q_raw, topv);
                        let ish = _mm_cvtsi32_si128((i * dac_bits) as i32);
                        acc = _mm512_add_epi16(acc, _mm512_sll_epi16(q, ish));
                    }
                    // acc << e into the i64 accumulators, 8 columns at a time.
                    let ca = colacc[vi * stride + c..][..COLS].as_mut_ptr();
                    let quarters = [
                        _mm512_extracti32x4_epi32::<0>(acc),
                        _mm512_extracti32x4_epi32::<1>(acc),
                        _mm512_extracti32x4_epi32::<2>(acc),
                        _mm512_extracti32x4_epi32::<3>(acc),
                    ];
                    for (z, q4) in quarters.into_iter().enumerate() {
                        // SAFETY: columns `8z .. 8z + 8` of the chunk: inside `ec` (32 u16)
                        // and `ca` (32 i64).
                        unsafe {
                            let e8 = _mm512_cvtepu16_epi64(_mm_loadu_si128(
                                ec.as_ptr().add(8 * z).cast(),
                            ));
                            let v = _mm512_sllv_epi64(_mm512_cvtepu16_epi64(q4), e8);
                            let cz = ca.add(8 * z).cast();
                            _mm512_storeu_si512(cz, _mm512_add_epi64(_mm512_loadu_si512(cz), v));
                        }
                    }
                }
            }
        }
        if STATS {
            // SAFETY: the CPU has AVX-512 F and BW (this function's contract).
            unsafe { lanes.flush(&mut counts) };
            counts.add_to(tally);
        }
    }

    /// A counting record's counts of one block in 16-bit lanes: per lane (column of a chunk),
    /// its conversions that clipped and those at or above each level.
    struct LaneCounts {
        clip: __m512i,
        at_least: Vec<__m512i>,
        /// Increments a lane may have had since the last flush (at most one per conversion).
        pending: usize,
    }

    impl LaneCounts {
        /// The most increments a u16 lane holds.
        const MAX: usize = u16::MAX as usize;

        /// No counts, for `levels` levels.
        ///
        /// # Safety
        /// The CPU has AVX-512 F.
        #[target_feature(enable = "avx512f")]
        unsafe fn new(levels: usize) -> LaneCounts {
            let zero = _mm512_setzero_si512();
            LaneCounts { clip: zero, at_least: vec![zero; levels], pending: 0 }
        }

        /// Adds the lanes' counts to `counts` (the levels in their order) and zeroes them.
        ///
        /// # Safety
        /// The CPU has AVX-512 F and BW.
        #[target_feature(enable = "avx512f,avx512bw")]
        unsafe fn flush(&mut self, counts: &mut Counts) {
            // SAFETY: the caller's CPU has the features `lane_sum` needs.
            unsafe {
                counts.clipped += lane_sum(self.clip);
                for (n, v) in counts.at_least.iter_mut().zip(&self.at_least) {
                    *n += lane_sum(*v);
                }
                let zero = _mm512_setzero_si512();
                self.clip = zero;
                self.at_least.iter_mut().for_each(|v| *v = zero);
            }
            self.pending = 0;
        }
    }

    /// The sum of the 32 u16 lanes of `v`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn lane_sum(v: __m512i) -> u64 {
        let lo = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(v));
        let hi = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64::<1>(v));
        _mm512_reduce_add_epi32(_mm512_add_epi32(lo, hi)) as u32 as u64
    }
}

/// Converts a group's u64 weight planes `[tile][word][cell bit][pc_pad]` to the 16-bit
/// layout `[tile][column chunk][word16][cell bit][COLS]` (`pc_pad` a multiple of [`COLS`]).
pub(crate) fn repack(
    planes: &[u64],
    tiles: usize,
    words: usize,
    cb: usize,
    pc_pad: usize,
) -> Vec<u16> {
    let (w16, chunks) = (4 * words, pc_pad / COLS);
    let mut out = vec![0u16; tiles * chunks * w16 * cb * COLS];
    for (tc, dst) in out.chunks_exact_mut(w16 * cb * COLS).enumerate() {
        let (t, ch) = (tc / chunks, tc % chunks);
        for r in 0..w16 {
            for b in 0..cb {
                let src = &planes[((t * words + r / 4) * cb + b) * pc_pad + ch * COLS..][..COLS];
                for (d, &s) in dst[(r * cb + b) * COLS..][..COLS].iter_mut().zip(src) {
                    *d = (s >> (16 * (r % 4))) as u16;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::kernel::{self, Block};
    use super::*;
    use crate::noise::SplitMix64 as Rng;

    /// A random bit mask of 64 rows, sparse or dense, sometimes zero.
    fn mask(rng: &mut Rng) -> u64 {
        match rng.int(0i64, 3) {
            0 => 0,
            1 => rng.next_u64() & rng.next_u64() & rng.next_u64(),
            _ => rng.next_u64(),
        }
    }

    /// Every build of the 16-bit kernel this CPU runs gives the 64-bit kernel's accumulators
    /// and statistics on random blocks (shapes, widths, steps, sparse and dense inputs).
    #[test]
    fn lanes16_matches_the_u64_kernel() {
        let mut rng = Rng(24);
        let mut cases = 0;
        while cases < 300 {
            let tiles = rng.int(1i64, 3) as usize;
            let words = rng.int(1i64, 2) as usize;
            let input_bits = rng.int(1i64, 8) as usize;
            let dac_bits = rng.int(1i64, 3) as usize;
            let cell_bits = rng.int(1i64, 4) as usize;
            let adc_bits = rng.int(1i64, 10) as u32;
            let input_slices = input_bits.div_ceil(dac_bits);
            let adc_top = (1u64 << adc_bits) - 1;
            let pc = rng.int(1i64, 100) as usize;
            let pc_pad = pc.div_ceil(COLS) * COLS;
            let nvec = rng.int(1i64, 5) as usize;
            let p_max = (64 * words) as u64 * ((1 << cell_bits) - 1) * ((1 << dac_bits) - 1);
            let mut e: Vec<u64> = (0..pc).map(|_| rng.int(0i64, 4) as u64).collect();
            e.resize(pc_pad, 0);
            if !fits(p_max, adc_top, e.iter().copied(), input_slices, dac_bits, cell_bits) {
                continue;
            }
            cases += 1;
            let half: Vec<u64> = e.iter().map(|&e| if e == 0 { 0 } else { 1 << (e - 1) }).collect();
            let mut planes = vec![0u64; tiles * words * cell_bits * pc_pad];
            for (i, w) in planes.iter_mut().enumerate() {
                if i % pc_pad < pc {
                    *w = mask(&mut rng);
                }
            }
            let xplanes: Vec<u64> =
                (0..nvec * tiles * input_bits * words).map(|_| mask(&mut rng)).collect();
            let hist_len = p_max as usize + 1;
            let stats = |t: &Tally| (t.hist.clone(), t.conversions, t.clipped);
            let new_tally = || Tally::new(hist_len, Vec::new());
            let slicing =
                Slicing { tiles, words, input_bits, dac_bits, cell_bits, input_slices, adc_top };
            let blk = Block {
                slicing,
                w: &planes,
                pc_total: pc_pad,
                pc0: 0,
                pcn: pc,
                e: &e,
                half: &half,
                xplanes: &xplanes,
                nvec,
            };
            let mut want = vec![0i64; nvec * pc_pad];
            let mut want_t = new_tally();
            kernel::run_block(&blk, &mut want, Some(&mut want_t));
            let w16 = repack(&planes, tiles, words, cell_bits, pc_pad);
            let to16 = |v: &[u64]| v.iter().map(|&x| x as u16).collect::<Vec<u16>>();
            let (e16, half16) = (to16(&e), to16(&half));
            let b16 = Block16 {
                slicing,
                w: &w16,
                chunks: pc_pad / COLS,
                chunk0: 0,
                pcn: pc,
                e: &e16,
                half: &half16,
                xplanes: &xplanes,
                nvec,
            };
            for path in [Path::Portable, Path::Avx2, Path::Avx512] {
                if !path.available() {
                    continue;
                }
                let mut got = vec![0i64; nvec * pc_pad];
                run_block(path, &b16, &mut got, None);
                assert_eq!(got, want, "{path:?}, case {cases}");
                let mut got_t = new_tally();
                got.fill(0);
                run_block(path, &b16, &mut got, Some(&mut got_t));
                assert_eq!(got, want, "{path:?} with statistics, case {cases}");
                assert_eq!(stats(&got_t), stats(&want_t), "{path:?} statistics, case {cases}");
                // A counting record: the sums at or above each level, as the histogram has
                // them (levels 1 ..= p_max + 1 and one past 16 bits).
                let levels: Vec<u64> = (0..4)
                    .map(|_| rng.int(1i64, p_max as i64 + 1) as u64)
                    .chain([1 << 16])
                    .collect();
                let mut counted = Tally::new(0, levels.clone());
                got.fill(0);
                run_block(path, &b16, &mut got, Some(&mut counted));
                assert_eq!(got, want, "{path:?} counting, case {cases}");
                let from_hist: Vec<u64> =
                    levels.iter().map(|&l| want_t.hist.iter().skip(l as usize).sum()).collect();
                assert_eq!(counted.at_least, from_hist, "{path:?} levels {levels:?}, case {cases}");
                assert_eq!(
                    (counted.conversions, counted.clipped),
                    (want_t.conversions, want_t.clipped),
                    "{path:?} counting, case {cases}"
                );
            }
            // The 64-bit kernel counts the same levels.
            let levels: Vec<u64> = (0..3).map(|_| rng.int(1i64, p_max as i64 + 1) as u64).collect();
            let mut counted = Tally::new(0, levels.clone());
            let mut got = vec![0i64; nvec * pc_pad];
            kernel::run_block(&blk, &mut got, Some(&mut counted));
            assert_eq!(got, want, "u64 counting, case {cases}");
            let from_hist: Vec<u64> =
                levels.iter().map(|&l| want_t.hist.iter().skip(l as usize).sum()).collect();
            assert_eq!(counted.at_least, from_hist, "u64 levels {levels:?}, case {cases}");
        }
    }
}
