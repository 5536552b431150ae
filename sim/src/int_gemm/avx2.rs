//! The AVX2 micro-kernel: `vpmaddwd` on 16-bit operands. The image holds `v = q − lo` as u16
//! (at most 32767, so it reads the same as i16) and the weights are i16, packed per tap and
//! channel quad as `[pair][MR lanes][2]`: the two weights of lane `l` for channels `2p, 2p+1`
//! are adjacent, and one 32-byte load holds them for 8 lanes. The pixel's two channels are
//! one u32 of the image, broadcast to every lane; `vpmaddwd` then gives each i32 lane
//! `v₀·w₀ + v₁·w₁` exactly (each product has magnitude at most 32767·32768 < 2^30, so the
//! pair sum lies strictly inside i32, and the instruction's one wrapping case, all four
//! operands −32768, cannot occur with `v ≥ 0`), and `vpaddd` adds it to the accumulator (no
//! partial sum leaves i32: the caller admitted the widths only when `K·max v·max |w| < 2^31`).
//!
//! `vpmaddubsw` (u8 × i8, 32 products per instruction) is not used: it saturates its pair sums
//! at i16, and 8-bit codes reach `2·255·128 = 65280`.
//!
//! A sub-tile is 16 output channels (two vectors of 8 i32) × 6 pixels: 12 accumulators, two
//! weight vectors and the broadcast fill 15 of the 16 registers. A micro-tile of `MR` = 32
//! channels × `NR` = 12 pixels is four sub-tiles.

use super::{MR, NR};
use std::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_set1_epi32,
    _mm256_setzero_si256, _mm256_storeu_si256,
};

/// Output channels per sub-tile (two vectors of 8 i32 lanes).
const HALF: usize = 16;
/// Pixels per sub-tile.
const PX: usize = 6;

/// `acc[j][l] = Σ_tap Σ_pair Σ_i img[bases[j] + tap + 2·pair + i] · w[tap][pair][l][i]` for
/// every pixel `j` of `bases` (whole micro-tiles of `NR`) and lane `l < MR`.
///
/// # Safety
/// The CPU has AVX2; `w` holds `taps.len() · quads` steps of `4·MR` i16;
/// `bases[j] + max(taps) + 4·quads ≤ img.len()` for every `j`; `acc.len() == bases.len()`, a
/// multiple of `NR`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn accumulate(
    w: &[i16],
    img: &[u16],
    bases: &[usize],
    taps: &[usize],
    quads: usize,
    acc: &mut [[i32; MR]],
) {
    const { assert!(MR.is_multiple_of(HALF) && NR.is_multiple_of(PX)) };
    let pairs = 2 * quads;
    // i16 per tap: `pairs` steps of `2·MR`.
    let per_tap = pairs * 2 * MR;
    for (tb, out) in bases.chunks_exact(NR).zip(acc.chunks_exact_mut(NR)) {
        for half in 0..MR / HALF {
            for (tp, op) in tb.chunks_exact(PX).zip(out.chunks_exact_mut(PX)) {
                let mut a = [[_mm256_setzero_si256(); 2]; PX];
                for (ti, &off) in taps.iter().enumerate() {
                    // SAFETY: `tp[j] + off` is at most `bases[j] + max(taps)`, inside `img`.
                    let px: [*const u16; PX] =
                        std::array::from_fn(|j| unsafe { img.as_ptr().add(tp[j] + off) });
                    // SAFETY: tap `ti < taps.len()` starts `ti · per_tap` i16 into `w`, and its
                    // half's lanes `2·HALF·half` further, inside the tap's `per_tap` i16.
                    let wt = unsafe { w.as_ptr().add(ti * per_tap + half * 2 * HALF) };
                    for p in 0..pairs {
                        // SAFETY: pair `p < pairs` of the tap: `2·MR·p` i16 further, and the
                        // two 16-i16 loads stay inside its `2·MR` (the half's 32 i16).
                        let (w0, w1) = unsafe {
                            let wp = wt.add(p * 2 * MR);
                            (
                                _mm256_loadu_si256(wp.cast::<__m256i>()),
                                _mm256_loadu_si256(wp.add(16).cast::<__m256i>()),
                            )
                        };
                        for j in 0..PX {
                            // SAFETY: channels `2p, 2p+1` of the pixel's tap lie below
                            // `bases[j] + max(taps) + 4·quads ≤ img.len()`.
                            let x = unsafe { px[j].add(2 * p).cast::<i32>().read_unaligned() };
                            let x = _mm256_set1_epi32(x);
                            a[j][0] = _mm256_add_epi32(a[j][0], _mm256_madd_epi16(x, w0));
                            a[j][1] = _mm256_add_epi32(a[j][1], _mm256_madd_epi16(x, w1));
                        }
                    }
                }
                for (o, aj) in op.iter_mut().zip(&a) {
                    let dst = &mut o[half * HALF..][..HALF];
                    // SAFETY: `dst` holds 16 i32, two 32-byte stores.
                    unsafe {
                        _mm256_storeu_si256(dst.as_mut_ptr().cast::<__m256i>(), aj[0]);
                        _mm256_storeu_si256(dst.as_mut_ptr().add(8).cast::<__m256i>(), aj[1]);
                    }
                }
            }
        }
    }
}
