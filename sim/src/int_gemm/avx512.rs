//! The VNNI micro-kernel: `MR` = 32 output channels (two 16-lane vectors of i32) × `NR` = 12
//! pixels, 24 accumulators. Per tap and channel quad it loads the block's two weight vectors
//! (`[32 channels][4 bytes]`, i8) and, per pixel, broadcasts the pixel's four input bytes (u8)
//! to every lane: `vpdpbusd` adds the four u8×i8 products of each lane to its i32 accumulator
//! (no saturation; the caller proved the sums stay below 2^31).

use super::{MR, NR};
use std::arch::x86_64::{
    __m512i, _mm512_dpbusd_epi32, _mm512_loadu_si512, _mm512_set1_epi32, _mm512_setzero_si512,
    _mm512_storeu_si512,
};

/// `acc[j][l] = Σ_tap Σ_quad Σ_i img[bases[j] + tap + 4·quad + i] · w[tap][quad][l][i]` for
/// every pixel `j` of `bases` (whole micro-tiles of `NR`).
///
/// # Safety
/// The CPU has AVX-512 F, BW and VNNI; `w` holds `taps.len() · quads` steps of `4·MR` bytes;
/// `bases[j] + max(taps) + 4·quads ≤ img.len()` for every `j`; `acc.len() == bases.len()`, a
/// multiple of `NR`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn accumulate(
    w: &[i8],
    img: &[u8],
    bases: &[usize],
    taps: &[usize],
    quads: usize,
    acc: &mut [[i32; MR]],
) {
    for (tb, out) in bases.chunks_exact(NR).zip(acc.chunks_exact_mut(NR)) {
        let mut a = [[_mm512_setzero_si512(); 2]; NR];
        let mut wp = w.as_ptr();
        for &off in taps {
            // SAFETY: `tb[j] + off` is at most `bases[j] + max(taps)`, inside `img`.
            let px: [*const u8; NR] =
                std::array::from_fn(|j| unsafe { img.as_ptr().add(tb[j] + off) });
            for q in 0..quads {
                // SAFETY: `wp` advances by 128 bytes per (tap, quad), `taps · quads` times in
                // all: both 64-byte loads lie inside `w`.
                let (w0, w1) = unsafe {
                    (
                        _mm512_loadu_si512(wp.cast::<__m512i>()),
                        _mm512_loadu_si512(wp.add(64).cast::<__m512i>()),
                    )
                };
                // SAFETY: as above: one step of `4·MR` bytes.
                wp = unsafe { wp.add(4 * MR) };
                for j in 0..NR {
                    // SAFETY: bytes `4q..4q+4` of the pixel's tap lie below
                    // `bases[j] + max(taps) + 4·quads ≤ img.len()`.
                    let x = unsafe { px[j].add(4 * q).cast::<i32>().read_unaligned() };
                    let x = _mm512_set1_epi32(x);
                    a[j][0] = _mm512_dpbusd_epi32(a[j][0], x, w0);
                    a[j][1] = _mm512_dpbusd_epi32(a[j][1], x, w1);
                }
            }
        }
        for (o, aj) in out.iter_mut().zip(&a) {
            let p = o.as_mut_ptr();
            // SAFETY: `o` holds MR = 32 i32, two 64-byte stores.
            unsafe {
                _mm512_storeu_si512(p.cast::<__m512i>(), aj[0]);
                _mm512_storeu_si512(p.add(16).cast::<__m512i>(), aj[1]);
            }
        }
    }
}
