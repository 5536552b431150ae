//! The AVX2 build of the channels-in-lanes micro-kernel (`conv/lanes.rs`), for CPUs without
//! AVX-512 (and for all of them under `CIMC_PORTABLE_KERNELS=1`, which turns off the AVX-512
//! kernels): 16 output channels (two vectors of 8 lanes) times six output positions, 12
//! accumulators, two loads and six broadcasts per reduction row; the 16 registers of AVX2
//! allow no more. Each output is summed from zero in the order of the rows, one FMA per row,
//! as the AVX-512 kernels do: the results are theirs bit for bit.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::avx512::{LaneTile, LANE_ROWS};

/// Floats per row of the tile's output block (as for the AVX-512 kernel).
const LANE_LD: usize = 64;

/// Whether this CPU runs [`lane_tile16`] (AVX2 and FMA, detected once).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX2.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `C[i][..16] (+)= sum_k x[i][boff[k]] * W[k * ldw ..][..16]`, summed from zero (or from C's
/// values when `acc`) in the order of `k`.
///
/// # Safety
/// [`available`] returned true; `w + k * ldw .. + 16` is readable for every `k < kc`, `boff`
/// covers `kc` offsets, every `x[i] + boff[k]` is readable and `c + 64 * i .. + 16` writable
/// (and readable when `acc`) for `i < LANE_ROWS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn lane_tile16(t: &LaneTile, ldw: usize) {
    let mut acc = [[_mm256_setzero_ps(); 2]; LANE_ROWS];
    let x = t.x;
    // SAFETY (all pointer arithmetic below): within the ranges the caller vouches for.
    unsafe {
        if t.acc {
            for (i, row) in acc.iter_mut().enumerate() {
                row[0] = _mm256_loadu_ps(t.c.add(LANE_LD * i));
                row[1] = _mm256_loadu_ps(t.c.add(LANE_LD * i + 8));
            }
        }
        for k in 0..t.kc {
            let o = *t.boff.add(k);
            let wk = t.w.add(k * ldw);
            let (w0, w1) = (_mm256_loadu_ps(wk), _mm256_loadu_ps(wk.add(8)));
            for (i, row) in acc.iter_mut().enumerate() {
                let b = _mm256_broadcast_ss(&*x[i].add(o));
                row[0] = _mm256_fmadd_ps(b, w0, row[0]);
                row[1] = _mm256_fmadd_ps(b, w1, row[1]);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            _mm256_storeu_ps(t.c.add(LANE_LD * i), row[0]);
            _mm256_storeu_ps(t.c.add(LANE_LD * i + 8), row[1]);
        }
    }
}

/// Never called: [`available`] is false off x86-64.
///
/// # Safety
/// None needed; it panics.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn lane_tile16(_: &LaneTile, _: usize) {
    unreachable!("invariant: lane_tile16 is only called when available() is true")
}
