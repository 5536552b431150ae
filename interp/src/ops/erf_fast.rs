//! Erf of f32 tensors, fast and bit for bit what the exact path gives.
//!
//! The exact path (`ops/unary.rs`) computes `erf(x as f64) as f32` with [`cimc_ir::unary::erf`],
//! a series of 20 to 40 dependent divisions per element: 15 ms per GELU of a ViT-B/16 MLP
//! (605,000 elements), a third of the whole float run. Here, for `|x|` below [`LIMIT`], a fixed
//! Taylor polynomial `y ≈ erf(x)` in f64 runs on whole vectors of elements (no division, no
//! exponential), and `y` is rounded to f32. The two f64 values, `y` and the exact path's, both
//! lie within [`TOL`] (relative) of the true erf, so they round to the same f32 whenever `y` is
//! farther than `TOL · |y|` from every f32 rounding boundary; when it is not (about 3 elements
//! in 10,000), or outside the polynomial's range, the element takes the exact path. The output
//! is therefore the exact path's, on every CPU; tests compare the two on random and
//! boundary inputs and bound the polynomial's error.

use cimc_ir::unary::erf;

/// The polynomial serves `|x| < LIMIT` (the exact path's series range).
const LIMIT: f64 = 2.5;
/// Smallest `|x|` the polynomial serves (below it, and for ±0, the exact path: its sign of
/// zero and its subnormal results are then its own).
const TINY: f64 = 1e-30;
/// Terms of the Taylor series `erf(x) = 2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n+1))` summed: the
/// first term left out is below 1e-17 of the result at `|x| = 2.5`.
const TERMS: usize = 44;
/// Relative distance (from the true erf) that bounds both the polynomial's value (measured
/// below 1e-13 on `|x| < 2.5`, `polynomial_error_is_small`) and the exact path's (a few f64
/// ulps): 100 times the sum.
const TOL: f64 = 1e-11;
/// Elements per block: the polynomial runs on a block at a time, lanes in the inner loop.
const BLOCK: usize = 64;

/// The series' coefficients, `c[n] = 2/√π · (−1)ⁿ / (n! (2n+1))`.
fn coefficients() -> [f64; TERMS] {
    let mut c = [0.0; TERMS];
    let mut fact = 1.0f64;
    for (n, v) in c.iter_mut().enumerate() {
        if n > 0 {
            fact *= n as f64;
        }
        let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
        *v = std::f64::consts::FRAC_2_SQRT_PI * sign / (fact * (2 * n + 1) as f64);
    }
    c
}

/// `erf(x as f64) as f32` for every element of `xs`, in place.
pub(crate) fn erf_f32(xs: &mut [f32]) {
    let c = coefficients();
    #[cfg(target_arch = "x86_64")]
    if wide_available() {
        // SAFETY: the CPU has AVX-512 F (checked by `wide_available`).
        return unsafe { erf_avx512(xs, &c) };
    }
    erf_blocks(xs, &c)
}

/// Whether this CPU runs [`erf_avx512`] (AVX-512 F, detected once), unless
/// `CIMC_PORTABLE_KERNELS` forces the portable build (which gives the same values).
#[cfg(target_arch = "x86_64")]
fn wide_available() -> bool {
    static AVX512F: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512F.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f") && !crate::portable_kernels_forced()
    })
}

/// [`erf_blocks`] compiled with AVX-512 (the block loops become 8-lane vector loops).
///
/// # Safety
/// The CPU has AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn erf_avx512(xs: &mut [f32], c: &[f64; TERMS]) {
    erf_blocks(xs, c)
}

/// Terms enough for a block whose largest `x²` is `z_max`: the first term left out stays
/// below 1e-16 of the result (a GELU's inputs are mostly below 1 in magnitude).
fn terms_for(z_max: f64) -> usize {
    if z_max <= 0.25 {
        14
    } else if z_max <= 1.0 {
        20
    } else if z_max <= 2.25 {
        28
    } else {
        TERMS
    }
}

#[inline(always)]
fn erf_blocks(xs: &mut [f32], c: &[f64; TERMS]) {
    for blk in xs.chunks_mut(BLOCK) {
        let mut z = [0.0f64; BLOCK];
        for (zi, &x) in z.iter_mut().zip(blk.iter()) {
            let x = x as f64;
            *zi = x * x;
        }
        // (A NaN compares false, so it is left out here; it takes the exact path.)
        let z_max = z.iter().fold(0.0f64, |m, &v| if v > m { v } else { m });
        let terms = terms_for(z_max);
        let mut p = [c[terms - 1]; BLOCK];
        for &cn in c[..terms - 1].iter().rev() {
            for (pi, &zi) in p.iter_mut().zip(&z) {
                *pi = *pi * zi + cn;
            }
        }
        for (v, &pi) in blk.iter_mut().zip(&p) {
            let x = *v as f64;
            *v = guarded(x, x * pi).unwrap_or_else(|| erf(x) as f32);
        }
    }
}

/// `y` rounded to f32, when `x` is in the polynomial's range and every value within `TOL · |y|`
/// of `y` rounds to the same f32; `None` otherwise.
#[inline(always)]
fn guarded(x: f64, y: f64) -> Option<f32> {
    let a = x.abs();
    if !(TINY..LIMIT).contains(&a) {
        return None;
    }
    let t = y as f32;
    let bits = t.abs().to_bits();
    if bits == 0 || bits >= f32::INFINITY.to_bits() {
        return None;
    }
    // The gap below |t| is the smaller of its two gaps; the rounding boundaries around t lie
    // at least half of it away.
    let below = f32::from_bits(bits - 1) as f64;
    let half_gap = (t.abs() as f64 - below) * 0.5;
    ((y - t as f64).abs() + TOL * y.abs() < half_gap).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SplitMix64 stream of f32 inputs: uniform in (−3, 3), near zero, and near the values
    /// whose erf is close to an f32 rounding boundary.
    fn inputs(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n)
            .map(|i| {
                let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                match i % 4 {
                    0 | 1 => (u * 6.0 - 3.0) as f32,
                    2 => ((u - 0.5) * 1e-3) as f32,
                    _ => f32::from_bits((next() as u32) & 0x407f_ffff),
                }
            })
            .collect()
    }

    /// The fast path gives the exact path's f32, bit for bit, on a million inputs (and on
    /// zeros, tiny values, the range limits, infinities and NaN).
    #[test]
    fn fast_erf_is_the_exact_paths() {
        let mut xs = inputs(1 << 20, 11);
        // Blocks of small inputs only, which take fewer terms.
        for (k, scale) in [0.5f32, 1.0, 1.5].into_iter().enumerate() {
            xs.extend(
                inputs(1 << 16, 20 + k as u64).iter().map(|&x| x.clamp(-3.0, 3.0) * scale / 3.0),
            );
        }
        xs.extend([
            0.0,
            -0.0,
            1e-35,
            -1e-35,
            f32::MIN_POSITIVE,
            2.5,
            -2.5,
            2.4999998,
            6.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        let want: Vec<u32> = xs.iter().map(|&x| (erf(x as f64) as f32).to_bits()).collect();
        let mut got = xs.clone();
        erf_f32(&mut got);
        let mut portable = xs.clone();
        erf_blocks(&mut portable, &coefficients());
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(got[i].to_bits(), want[i], "erf({x:e}) fast");
            assert_eq!(portable[i].to_bits(), want[i], "erf({x:e}) portable build");
        }
    }

    /// The polynomial, with the terms [`terms_for`] gives, stays within 1e-13 (relative) of the
    /// exact path on |x| < 2.5, a hundredth of the tolerance the guard assumes.
    #[test]
    fn polynomial_error_is_small() {
        let c = coefficients();
        let mut worst = 0.0f64;
        for i in 1..200_000 {
            let x = 2.5 * i as f64 / 200_000.0;
            let terms = terms_for(x * x);
            let p = c[..terms].iter().rev().fold(0.0, |acc, &cn| acc * (x * x) + cn);
            let (y, e) = (x * p, erf(x));
            worst = worst.max(((y - e) / e).abs());
        }
        assert!(worst < 1e-13, "relative error {worst:e}");
    }

    /// Few elements take the exact path in the polynomial's range (the guard is not so wide
    /// that the fast path does nothing).
    #[test]
    fn guard_rarely_falls_back() {
        let c = coefficients();
        let xs: Vec<f64> = (1..100_000).map(|i| 2.4 * i as f64 / 100_000.0).collect();
        let fallbacks = xs
            .iter()
            .filter(|&&x| {
                let p = c.iter().rev().fold(0.0, |acc, &cn| acc * (x * x) + cn);
                guarded(x, x * p).is_none()
            })
            .count();
        assert!(fallbacks < 100, "{fallbacks} of {} fell back", xs.len());
    }
}
