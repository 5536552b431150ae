//! The AVX-512 f32 micro-kernel of the plane convolution (`conv/plane.rs`): an `MR x NR` block
//! of outputs (8 output channels x 32 positions) accumulated over `kc` rows of the reduction.
//!
//! The left operand (weights) is packed `[kc][MR]`, one broadcast per channel and row; the
//! right operand is not packed: row `k` is the `NR` floats at `b + boff[k]`, so the kernel reads
//! a padded input plane in place (the offsets are those of the kernel's taps) instead of an
//! im2col matrix. 16 accumulators of 16 lanes, two right-hand loads and eight broadcasts per
//! row: the two FMA pipes stay busy and the loads (misaligned ones included) keep up.
//!
//! [`lane_tile`], for `conv/lanes.rs`, is the transposed product: up to 64 output channels in
//! the lanes (the weights packed `[kc][64]`) times six output positions, each position's input
//! broadcast: 24 accumulators, four aligned loads and six broadcasts per row.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output channels per micro-tile (rows of C; broadcasts per reduction step).
pub(crate) const MR: usize = 8;
/// Output positions per micro-tile (columns of C; two vectors of 16 lanes).
pub(crate) const NR: usize = 32;

/// One micro-tile's operands.
pub(crate) struct MicroTile {
    /// Reduction rows.
    pub kc: usize,
    /// The packed weights `[kc][MR]`.
    pub a: *const f32,
    /// The right operand's base: row `k` is `b + boff[k] .. + cols`.
    pub b: *const f32,
    /// `kc` element offsets from `b`.
    pub boff: *const usize,
    /// The `MR x cols` output block, row stride `ldc`.
    pub c: *mut f32,
    pub ldc: usize,
    /// Valid columns, `1..=NR`: the rest are neither read from `b` nor written to `c`.
    pub cols: usize,
}

/// Whether this CPU runs [`micro_tile`] and [`depthwise_row`] (AVX-512 F, detected once),
/// unless the environment variable `CIMC_PORTABLE_KERNELS` is set (as for the crossbar
/// kernels: it forces the portable paths, to test them).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512F: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX512F.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f") && !crate::portable_kernels_forced()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `C[MR][cols] = sum_k A[k][..] * B[k][..cols]`.
///
/// # Safety
/// [`available`] returned true; `a` covers `kc * MR` floats, `boff` `kc` offsets, every
/// `b + boff[k] .. + cols` is readable and every row `c + r * ldc .. + cols` (r < MR) writable.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn micro_tile(t: &MicroTile) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        if t.cols == NR {
            tile::<true>(t)
        } else {
            tile::<false>(t)
        }
    }
}

/// Weight rows prefetched ahead (6 KiB, about 1,500 cycles of the kernel; 64 rows left
/// ResNet-18's `layer4` about 8 % slower, 128–384 did as well as 192): the deep layers stream their weights from memory once
/// per image, and the hardware prefetcher alone does not keep up with the kernel.
const PF: usize = 192;
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const FULL: bool>(t: &MicroTile) {
    debug_assert!(t.cols >= 1 && t.cols <= NR);
    // Lanes of the two column vectors that are inside `cols`.
    let (m0, m1): (__mmask16, __mmask16) = crate::ops::simd::column_masks(t.cols);
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY (all pointer arithmetic below): within the ranges the caller vouches for.
    unsafe {
        for k in 0..t.kc {
            let bp = t.b.add(*t.boff.add(k));
            let (b0, b1) = if FULL {
                (_mm512_loadu_ps(bp), _mm512_loadu_ps(bp.add(16)))
            } else {
                (_mm512_maskz_loadu_ps(m0, bp), _mm512_maskz_loadu_ps(m1, bp.add(16)))
            };
            let ak = t.a.add(k * MR);
            if PF > 0 {
                _mm_prefetch::<_MM_HINT_T0>(ak.wrapping_add(PF * MR) as *const i8);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*ak.add(r));
                row[0] = _mm512_fmadd_ps(a, b0, row[0]);
                row[1] = _mm512_fmadd_ps(a, b1, row[1]);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let cp = t.c.add(r * t.ldc);
            let (v0, v1) = (row[0], row[1]);
            if FULL {
                _mm512_storeu_ps(cp, v0);
                _mm512_storeu_ps(cp.add(16), v1);
            } else {
                _mm512_mask_storeu_ps(cp, m0, v0);
                _mm512_mask_storeu_ps(cp.add(16), m1, v1);
            }
        }
    }
}

/// Never called: [`available`] is false off x86-64.
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn micro_tile(_: &MicroTile) {
    unreachable!("invariant: micro_tile is only called when available() is true")
}

/// Output positions per micro-tile of [`lane_tile`] (rows of its output block).
pub(crate) const LANE_ROWS: usize = 6;
/// Floats per row of [`lane_tile`]'s output block (four vectors of channels).
const LANE_LD: usize = 64;

/// One micro-tile of the channels-in-lanes product (`conv/lanes.rs`).
pub(crate) struct LaneTile {
    /// Reduction rows.
    pub kc: usize,
    /// The packed weights `[kc][16 * vectors]`, 64-byte aligned.
    pub w: *const f32,
    /// `kc` element offsets from each `x[i]`.
    pub boff: *const usize,
    /// Each output position's base: its input for row `k` is `x[i] + boff[k]`.
    pub x: [*const f32; LANE_ROWS],
    /// The `LANE_ROWS x 64` output block (row `i`, channel `j` at `c + 64 * i + j`).
    pub c: *mut f32,
    /// Whether the sums go on from the block's values (a previous chunk of the reduction)
    /// instead of from zero.
    pub acc: bool,
}

/// `C[i][..16 * vectors] (+)= sum_k x[i][boff[k]] * W[k][..]` for `vectors` in 1..=4, summed
/// from zero (or from C's values when `acc`) in the order of `k` (one FMA per row, as
/// [`micro_tile`]: same results).
///
/// # Safety
/// [`available`] returned true; `w` covers `kc * 16 * vectors` floats at a 64-byte aligned
/// address, `boff` `kc` offsets, every `x[i] + boff[k]` is readable and `c + 64 * i ..
/// + 16 * vectors` (i < LANE_ROWS) writable (and readable when `acc`).
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn lane_tile(t: &LaneTile, vectors: usize) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        match vectors {
            4 => lanes::<4>(t),
            3 => lanes::<3>(t),
            2 => lanes::<2>(t),
            _ => lanes::<1>(t),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lanes<const NV: usize>(t: &LaneTile) {
    let mut acc = [[_mm512_setzero_ps(); NV]; LANE_ROWS];
    let x = t.x;
    // SAFETY (all pointer arithmetic below): within the ranges the caller vouches for.
    unsafe {
        if t.acc {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, a) in row.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps(t.c.add(LANE_LD * i + 16 * j));
                }
            }
        }
        for k in 0..t.kc {
            let o = *t.boff.add(k);
            let wk = t.w.add(k * 16 * NV);
            let wv: [__m512; NV] = std::array::from_fn(|j| _mm512_load_ps(wk.add(16 * j)));
            for (i, row) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*x[i].add(o));
                for (a, &wj) in row.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(b, wj, *a);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, &a) in row.iter().enumerate() {
                _mm512_storeu_ps(t.c.add(LANE_LD * i + 16 * j), a);
            }
        }
    }
}

/// Never called: [`available`] is false off x86-64.
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn lane_tile(_: &LaneTile, _: usize) {
    unreachable!("invariant: lane_tile is only called when available() is true")
}

/// Output positions per step of [`depthwise_row`]: eight accumulators cover the FMA latency.
const DW_COLS: usize = 128;

/// One output channel of a depthwise layer: `c[j] = sum_t w[t] * b[boff[t] + j]`, j < cols,
/// summed from zero in the order of `t`, each product rounded before its add (no FMA): with
/// the taps in the portable depthwise loop's order (`conv/depthwise.rs`) the results are that
/// loop's, bit for bit, so depthwise layers round the same on every CPU.
///
/// # Safety
/// [`available`] returned true; `w` and `boff` cover `taps` elements, every
/// `b + boff[t] .. + cols` is readable and `c .. + cols` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn depthwise_row(
    taps: usize,
    w: *const f32,
    b: *const f32,
    boff: *const usize,
    c: *mut f32,
    cols: usize,
) {
    // SAFETY (all pointer arithmetic below): within the ranges the caller vouches for.
    unsafe {
        let mut col = 0;
        while col + DW_COLS <= cols {
            let mut acc = [_mm512_setzero_ps(); DW_COLS / 16];
            for t in 0..taps {
                let wv = _mm512_set1_ps(*w.add(t));
                let bp = b.add(*boff.add(t) + col);
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(wv, _mm512_loadu_ps(bp.add(16 * i))));
                }
            }
            for (i, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(c.add(col + 16 * i), *a);
            }
            col += DW_COLS;
        }
        while col < cols {
            let lanes = (cols - col).min(16);
            let mask: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
            let mut acc = _mm512_setzero_ps();
            for t in 0..taps {
                let x = _mm512_maskz_loadu_ps(mask, b.add(*boff.add(t) + col));
                acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(*w.add(t)), x));
            }
            _mm512_mask_storeu_ps(c.add(col), mask, acc);
            col += 16;
        }
    }
}

/// Never called: [`available`] is false off x86-64.
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn depthwise_row(
    _: usize,
    _: *const f32,
    _: *const f32,
    _: *const usize,
    _: *mut f32,
    _: usize,
) {
    unreachable!("invariant: depthwise_row is only called when available() is true")
}

/// Output vectors computed together by [`depthwise_vectors`]: eight independent sums cover
/// the latency of the adds.
const DW_GROUP: usize = 8;

/// One output channel of a depthwise layer read in place (`conv/depthwise_vec.rs`): vector `v`
/// of the output is `sum_t w[t] * x[v, t]`, where `x[v, t]` is lane `j` of the input at
/// `x + off[v * taps + t]`, element `j` (stride 1) or `2 j` (stride 2, `S2`), for the lanes
/// whose bit is set in `mask[v * taps + t]` (bit `j`, or bit `2 j`), zero elsewhere. Summed
/// from zero in the order of `t`, each product rounded before its add (no FMA), as
/// [`depthwise_row`]: a masked-off tap adds a zero product, which leaves a sum started from
/// `+0` unchanged, so the results are the portable depthwise loop's bit for bit. Lanes of
/// `omask[v]` are stored at `c + ooff[v]`.
pub(crate) struct DwVectors {
    pub taps: usize,
    pub w: *const f32,
    pub x: *const f32,
    pub off: *const isize,
    pub mask: *const u32,
    pub ooff: *const usize,
    pub omask: *const u16,
    pub vectors: usize,
    pub c: *mut f32,
}

/// Runs [`DwVectors`].
///
/// # Safety
/// [`available`] returned true; `w` covers `taps` floats, `off` and `mask` `vectors * taps`
/// entries, `ooff` and `omask` `vectors`; for every entry, the lanes its mask sets are
/// readable floats at `x + off + j` (stride 1) or `x + off + 2 j` (stride 2) (masked-off lanes
/// are not accessed: AVX-512 masked loads suppress their faults, and the pointer is formed with
/// wrapping arithmetic), and the lanes of `omask[v]` are writable at `c + ooff[v]`.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn depthwise_vectors<const S2: bool>(d: &DwVectors) {
    let mut v = 0;
    // SAFETY: forwarded from the caller's contract (each group reads its own vectors' entries).
    unsafe {
        while v + DW_GROUP <= d.vectors {
            dw_group::<S2, DW_GROUP>(d, v);
            v += DW_GROUP;
        }
        match d.vectors - v {
            7 => dw_group::<S2, 7>(d, v),
            6 => dw_group::<S2, 6>(d, v),
            5 => dw_group::<S2, 5>(d, v),
            4 => dw_group::<S2, 4>(d, v),
            3 => dw_group::<S2, 3>(d, v),
            2 => dw_group::<S2, 2>(d, v),
            1 => dw_group::<S2, 1>(d, v),
            _ => {}
        }
    }
}

/// Vectors `v0..v0 + G` of [`depthwise_vectors`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dw_group<const S2: bool, const G: usize>(d: &DwVectors, v0: usize) {
    let mut acc = [_mm512_setzero_ps(); G];
    // Lane j takes element 2 j of the 32 loaded (indices 16..31 select from the second vector).
    let evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    // SAFETY (all pointer arithmetic below): within the ranges the caller vouches for; input
    // pointers are formed with wrapping arithmetic and only their masked lanes are read.
    unsafe {
        for t in 0..d.taps {
            let wv = _mm512_set1_ps(*d.w.add(t));
            for (i, a) in acc.iter_mut().enumerate() {
                let e = (v0 + i) * d.taps + t;
                let (p, m) = (d.x.wrapping_offset(*d.off.add(e)), *d.mask.add(e));
                let x = if S2 {
                    let lo = _mm512_maskz_loadu_ps(m as __mmask16, p);
                    let hi = _mm512_maskz_loadu_ps((m >> 16) as __mmask16, p.wrapping_add(16));
                    _mm512_permutex2var_ps(lo, evens, hi)
                } else {
                    _mm512_maskz_loadu_ps(m as __mmask16, p)
                };
                *a = _mm512_add_ps(*a, _mm512_mul_ps(wv, x));
            }
        }
        for (i, a) in acc.iter().enumerate() {
            let v = v0 + i;
            _mm512_mask_storeu_ps(d.c.add(*d.ooff.add(v)), *d.omask.add(v), *a);
        }
    }
}

/// Never called: [`available`] is false off x86-64.
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn depthwise_vectors<const S2: bool>(_: &DwVectors) {
    unreachable!("invariant: depthwise_vectors is only called when available() is true")
}
