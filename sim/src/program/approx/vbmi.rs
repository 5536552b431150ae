//! The product-table kernel on AVX-512 VBMI: 64 table lookups per instruction group.
//!
//! A weight code's row `U_w` (256 non-negative integers) is stored as `np` byte planes of 256
//! bytes, each four 64-byte registers. For the 64 activation bytes `v` of one strip,
//! `vpermi2b` looks up the low 128 entries of a plane and another the high 128 (it reads the
//! index's low 7 bits), and the index's top bit (`vpmovb2m`) picks between them: three
//! instructions give 64 bytes of `U_w[v]`. The bytes are summed in u16 words — a word holds two
//! pixels (`even + 256·odd`); a second sum of the words shifted right by 8 keeps the odd pixels,
//! and `even = words − 256·odd` (mod 2^16, exact as long as each sum stays below 2^16: 256
//! bytes) — and every 256 `k`s the sums are widened and added, times `256^j` for plane `j`, to
//! the i32 accumulators. Those are kept per strip as `[32 even pixels | 32 odd pixels]`
//! ([`slot`] maps a pixel to its place).
//!
//! Four strips share each loaded row (the 4·np table registers), so the row is read from
//! cache once per 256 pixels.

/// Pixels per strip (one 64-byte register of activation bytes).
const STRIP: usize = 64;

/// Pairs summed in u16 before a widening add: 256 bytes of at most 255 each stay below 2^16.
const CHUNK: usize = 256;

/// Where [`accumulate`] keeps pixel `px`'s accumulator.
pub(super) fn slot(px: usize) -> usize {
    px / STRIP * STRIP + (px % 2) * (STRIP / 2) + (px % STRIP) / 2
}

/// `acc[slot(p)] += U_w[col[k·ppad + p]]` for every pair `k << 8 | w` in `pairs` and every
/// pixel `p < ppad`, with `planes` the rows' `np` byte planes (`[256][np][256]`). Wrapping
/// i32: the caller proved `K·max U` < 2^31.
pub(super) fn accumulate(
    planes: &[u8],
    np: usize,
    pairs: &[u32],
    col: &[u8],
    ppad: usize,
    acc: &mut [i32],
) {
    assert!(
        (1..=4).contains(&np)
            && planes.len() == 256 * np * 256
            && ppad.is_multiple_of(STRIP)
            && acc.len() == ppad
            && pairs.iter().all(|&e| ((e >> 8) as usize + 1) * ppad <= col.len()),
        "invariant: the kernel's operands are sized by its callers"
    );
    #[cfg(target_arch = "x86_64")]
    {
        assert!(
            super::LutKernel::Avx512Vbmi.available(),
            "invariant: the VBMI kernel is chosen only where the CPU has it"
        );
        // SAFETY: the CPU has AVX-512 F/BW/VBMI (checked above); every read stays inside
        // `planes` (w < 256, j < np), `col` (rows k < col.len() / ppad, strips < ppad / 64) and
        // `acc` (ppad entries), as asserted above.
        unsafe {
            match np {
                1 => x86::run::<1>(planes, pairs, col, ppad, acc),
                2 => x86::run::<2>(planes, pairs, col, ppad, acc),
                3 => x86::run::<3>(planes, pairs, col, ppad, acc),
                _ => x86::run::<4>(planes, pairs, col, ppad, acc),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (planes, pairs, col, acc);
        unreachable!("invariant: the VBMI kernel is chosen only on x86-64 CPUs that have it");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CHUNK, STRIP};
    use std::arch::x86_64::*;

    /// All strips: groups of four, then one at a time.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn run<const NP: usize>(
        planes: &[u8],
        pairs: &[u32],
        col: &[u8],
        ppad: usize,
        acc: &mut [i32],
    ) {
        let strips = ppad / STRIP;
        let mut s0 = 0;
        while s0 + 4 <= strips {
            // SAFETY: strips s0..s0 + 4 exist; the rest is the caller's contract.
            unsafe { strips_from::<NP, 4>(planes, pairs, col, ppad, s0, acc) };
            s0 += 4;
        }
        while s0 < strips {
            // SAFETY: as above, one strip.
            unsafe { strips_from::<NP, 1>(planes, pairs, col, ppad, s0, acc) };
            s0 += 1;
        }
    }

    /// Strips `s0..s0 + S`, every pair, `CHUNK` pairs per u16 round.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    #[inline]
    unsafe fn strips_from<const NP: usize, const S: usize>(
        planes: &[u8],
        pairs: &[u32],
        col: &[u8],
        ppad: usize,
        s0: usize,
        acc: &mut [i32],
    ) {
        // SAFETY: the caller's contract (see `accumulate`): pairs name rows of `planes` and
        // `col`, strips s0..s0 + S exist.
        unsafe {
            let zero = _mm512_setzero_si512();
            for chunk in pairs.chunks(CHUNK) {
                let mut words = [[zero; NP]; S];
                let mut odd = [[zero; NP]; S];
                for &e in chunk {
                    let (k, w) = ((e >> 8) as usize, (e & 255) as usize);
                    let row = planes.as_ptr().add(w * NP * 256);
                    let mut t = [[zero; 4]; NP];
                    for (j, tj) in t.iter_mut().enumerate() {
                        for (q, r) in tj.iter_mut().enumerate() {
                            *r = _mm512_loadu_si512(row.add(j * 256 + q * 64) as *const _);
                        }
                    }
                    let xs = col.as_ptr().add(k * ppad + s0 * STRIP);
                    for s in 0..S {
                        let idx = _mm512_loadu_si512(xs.add(s * STRIP) as *const _);
                        let high = _mm512_movepi8_mask(idx);
                        for j in 0..NP {
                            let lo = _mm512_permutex2var_epi8(t[j][0], idx, t[j][1]);
                            let hi = _mm512_permutex2var_epi8(t[j][2], idx, t[j][3]);
                            let u = _mm512_mask_blend_epi8(high, lo, hi);
                            words[s][j] = _mm512_add_epi16(words[s][j], u);
                            odd[s][j] = _mm512_add_epi16(odd[s][j], _mm512_srli_epi16::<8>(u));
                        }
                    }
                }
                for s in 0..S {
                    let a = acc.as_mut_ptr().add((s0 + s) * STRIP);
                    for j in 0..NP {
                        let o = odd[s][j];
                        let e = _mm512_sub_epi16(words[s][j], _mm512_slli_epi16::<8>(o));
                        let shift = _mm_cvtsi32_si128(8 * j as i32);
                        // [even 0..16, even 16..32, odd 0..16, odd 16..32] as i32.
                        let parts = [
                            _mm512_cvtepu16_epi32(_mm512_castsi512_si256(e)),
                            _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64::<1>(e)),
                            _mm512_cvtepu16_epi32(_mm512_castsi512_si256(o)),
                            _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64::<1>(o)),
                        ];
                        for (q, part) in parts.into_iter().enumerate() {
                            let dst = a.add(q * 16) as *mut __m512i;
                            let sum = _mm512_add_epi32(
                                _mm512_loadu_si512(dst as *const _),
                                _mm512_sll_epi32(part, shift),
                            );
                            _mm512_storeu_si512(dst as *mut _, sum);
                        }
                    }
                }
            }
        }
    }
}
