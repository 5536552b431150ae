//! Products with constant f32 weights (`X · W`, a transformer's QKV, projection and MLP layers)
//! on weights packed once, when the runner is built, for an AVX-512 micro-kernel — the `gemm`
//! crate packs the weights again on every call (a seventh of a ViT-B/16 run).
//!
//! The results are the `gemm` crate's, bit for bit, so that a run gives the same numbers with
//! or without the packing: every output is summed in blocks of `kc` reduction steps, each an
//! FMA chain from zero in order, the blocks added to the output in order (to the bias first when
//! there is one), with the crate's `kc` (at most 512, the reduction split evenly; a product of
//! at most 64 rows and 64 columns takes blocks of 512 and a remainder). The crate's other paths
//! (a row or column vector, at most 256 outputs, at most two reduction steps) are left to it
//! ([`applies`]); `packed_matches_the_gemm_crate` checks the rest on random shapes.
//! Threads take panels of 32 columns: each output is computed by one micro-kernel call per block
//! whatever the split, so results do not depend on the number of threads.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output rows per micro-tile (broadcasts per reduction step).
const MR: usize = 8;
/// Output columns per panel (two vectors of 16 lanes).
const NR: usize = 32;

/// Whether this CPU runs the packed kernel (AVX-512 F, detected once), unless
/// `CIMC_PORTABLE_KERNELS` forces the portable paths.
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

/// Whether an `m × k × n` product goes through the `gemm` crate's general path (the one this
/// kernel reproduces): not a vector product, more than 256 outputs, more than two steps.
pub(crate) fn applies(m: usize, k: usize, n: usize) -> bool {
    m > 1 && n > 1 && k > 2 && m * n > 256 && available()
}

/// The crate's reduction blocks for an `m × k × n` product: `kc` (the last block may be
/// shorter).
fn block_len(m: usize, k: usize, n: usize) -> usize {
    if m <= 64 && n <= 64 {
        return k.min(512);
    }
    let kc = k.min(512);
    let iters = k.div_ceil(kc);
    k.div_ceil(iters)
}

/// Constant weights `W[k][n]` packed in panels of [`NR`] columns, `[panel][k][NR]` (the
/// columns past `n` zero).
#[derive(Clone, Debug)]
pub(crate) struct PackedWeights {
    data: Vec<f32>,
    pub(crate) k: usize,
    pub(crate) n: usize,
}

impl PackedWeights {
    /// Packs `w`, row-major `[k][n]`, or `[n][k]` when `transposed`.
    pub(crate) fn new(w: &[f32], k: usize, n: usize, transposed: bool) -> PackedWeights {
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        for (p, panel) in data.chunks_exact_mut((k * NR).max(1)).enumerate().take(panels) {
            for kk in 0..k {
                let row = &mut panel[kk * NR..][..NR];
                for (c, v) in row.iter_mut().enumerate().take(NR.min(n - p * NR)) {
                    let j = p * NR + c;
                    *v = if transposed { w[j * k + kk] } else { w[kk * n + j] };
                }
            }
        }
        PackedWeights { data, k, n }
    }

    /// `Y = X · W` (+ `bias`, one row of `n` broadcast to every row, added first) for a
    /// row-major `X` of `m` rows of `k`, into the row-major `y` (`m · n`).
    pub(crate) fn run(&self, x: &[f32], m: usize, bias: Option<&[f32]>, y: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        assert!(
            x.len() >= m * k && y.len() >= m * n && bias.is_none_or(|b| b.len() == n),
            "invariant: packed product operands are sized by the caller"
        );
        if let Some(b) = bias {
            y[..m * n].chunks_exact_mut(n).for_each(|row| row.copy_from_slice(b));
        }
        let kc = block_len(m, k, n);
        let panels = n.div_ceil(NR);
        let out = OutPtr(y.as_mut_ptr());
        use rayon::prelude::*;
        let run_panel = |p: usize| {
            let cols = NR.min(n - p * NR);
            let panel = &self.data[p * k * NR..][..k * NR];
            let mut k0 = 0;
            while k0 < k {
                let kb = kc.min(k - k0);
                let first = k0 == 0 && bias.is_none();
                let mut r0 = 0;
                while r0 < m {
                    let rows = MR.min(m - r0);
                    let tile = Tile {
                        kc: kb,
                        a: x[r0 * k + k0..].as_ptr(),
                        lda: k,
                        b: panel[k0 * NR..].as_ptr(),
                        // SAFETY: inside `y` (rows r0.., columns p·NR..); panels write disjoint
                        // columns.
                        c: unsafe { out.get().add(r0 * n + p * NR) },
                        ldc: n,
                        rows,
                        cols,
                        first,
                    };
                    // SAFETY: `available()` held (callers check `applies`); the tile's ranges
                    // lie inside `x`, the panel and `y` by the loop bounds.
                    unsafe { micro_tile(&tile) };
                    r0 += rows;
                }
                k0 += kb;
            }
        };
        if m * n * k >= 1 << 18 {
            (0..panels).into_par_iter().for_each(run_panel);
        } else {
            (0..panels).for_each(run_panel);
        }
    }
}

/// The output pointer shared by the panel tasks (they write disjoint columns).
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint elements through it; `run` outlives them.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}
impl OutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One micro-tile: `rows × cols` outputs over one reduction block.
struct Tile {
    kc: usize,
    /// `X[r0][k0]`, rows `lda` apart.
    a: *const f32,
    lda: usize,
    /// The panel's row `k0` (`[kc][NR]`).
    b: *const f32,
    /// `Y[r0][p·NR]`, rows `ldc` apart.
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    /// The block is the first and there is no bias: store the sums (else add them).
    first: bool,
}

/// # Safety
/// [`available`] returned true; the tile's ranges are valid.
#[cfg(target_arch = "x86_64")]
unsafe fn micro_tile(t: &Tile) {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        match t.rows {
            8 => tile::<8>(t),
            7 => tile::<7>(t),
            6 => tile::<6>(t),
            5 => tile::<5>(t),
            4 => tile::<4>(t),
            3 => tile::<3>(t),
            2 => tile::<2>(t),
            _ => tile::<1>(t),
        }
    }
}

/// Never called: [`available`] is false off x86-64.
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn micro_tile(_: &Tile) {
    unreachable!("invariant: micro_tile is only called when available() is true")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const R: usize>(t: &Tile) {
    let (m0, m1): (__mmask16, __mmask16) = crate::ops::simd::column_masks(t.cols);
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    // SAFETY (all pointer arithmetic below): within the ranges the caller vouches for.
    unsafe {
        for k in 0..t.kc {
            let bp = t.b.add(k * NR);
            let (b0, b1) = (_mm512_loadu_ps(bp), _mm512_loadu_ps(bp.add(16)));
            for (r, row) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*t.a.add(r * t.lda + k));
                row[0] = _mm512_fmadd_ps(a, b0, row[0]);
                row[1] = _mm512_fmadd_ps(a, b1, row[1]);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let cp = t.c.add(r * t.ldc);
            let (mut v0, mut v1) = (row[0], row[1]);
            if !t.first {
                v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cp), v0);
                v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cp.add(16)), v1);
            }
            _mm512_mask_storeu_ps(cp, m0, v0);
            _mm512_mask_storeu_ps(cp.add(16), m1, v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm::{gemm, Mat};

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    /// The packed product equals the `gemm` crate's bit for bit, with and without a bias, with
    /// transposed weights, on shapes across the crate's block rules (k above 512, at most 64
    /// rows and columns, ragged edges).
    #[test]
    fn packed_matches_the_gemm_crate() {
        if !available() {
            eprintln!("SKIPPED: no AVX-512");
            return;
        }
        let shapes = [
            (197, 768, 2304),
            (197, 3072, 100),
            (50, 1100, 40),
            (64, 700, 64),
            (65, 1500, 33),
            (3, 5, 300),
            (17, 513, 19),
            (9, 1025, 70),
            (300, 64, 197),
        ];
        for (case, &(m, k, n)) in shapes.iter().enumerate() {
            if !applies(m, k, n) {
                continue;
            }
            let x = data(m * k, case as u64);
            let w = data(k * n, 100 + case as u64);
            let bias = data(n, 200 + case as u64);
            for transposed in [false, true] {
                let bm = if transposed { Mat::rows_t(&w, k) } else { Mat::rows(&w, n) };
                let packed = PackedWeights::new(&w, k, n, transposed);
                let mut want = vec![0f32; m * n];
                gemm(m, k, n, 1.0, Mat::rows(&x, k), bm, 0.0, &mut want, n);
                let mut got = vec![f32::NAN; m * n];
                packed.run(&x, m, None, &mut got);
                assert!(
                    want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{m}x{k}x{n} transposed={transposed}"
                );
                let mut want: Vec<f32> = (0..m * n).map(|i| bias[i % n]).collect();
                gemm(m, k, n, 1.0, Mat::rows(&x, k), bm, 1.0, &mut want, n);
                packed.run(&x, m, Some(&bias), &mut got);
                assert!(
                    want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{m}x{k}x{n} transposed={transposed} with bias"
                );
            }
        }
    }
}
