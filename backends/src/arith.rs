//! The integer arithmetic of `docs/hardware-model.md` §2 and §4, in one place:
//! rounding of real values to codes, fixed-point multipliers, and [`requantize`], the only
//! function of cimc that rounds an accumulator to an output code. The program interpreter and the
//! instruction-stream simulator both call it.

use crate::error::{BackendError, Result};

/// A real multiplier `M > 0` as `m · 2^(−31 − sh)`, `m ∈ [2^30, 2^31)`, `sh ≥ −30` (§4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FixedMultiplier {
    pub m: i32,
    pub sh: i32,
}

/// The largest right shift cimc emits (`31 + sh ≤ 93`): multipliers below `2^−63` are rejected;
/// no layer of a real network has one (it would need `s_x · s_w / s_y < 2^−63`).
pub const MAX_SHIFT: i32 = 62;

impl FixedMultiplier {
    /// The fixed-point form of `real`, the nearest `m` (ties to even); errors when `real` is not a
    /// finite positive number in `[2^−63, 2^30)` (`sh = 62` holds `m · 2^−93 ≥ 2^−63`).
    pub fn from_real(real: f64) -> Result<FixedMultiplier> {
        if !(real.is_finite() && real > 0.0) {
            return Err(BackendError::Numeric(format!(
                "multiplier {real} is not a finite positive number"
            )));
        }
        // real = f · 2^e with f ∈ [0.5, 1).
        let mut e = real.log2().floor() as i32 + 1;
        let mut f = real / 2f64.powi(e);
        // log2 can be off by one ulp at powers of two: normalise.
        while f >= 1.0 {
            f /= 2.0;
            e += 1;
        }
        while f < 0.5 {
            f *= 2.0;
            e -= 1;
        }
        let mut m = (f * 2f64.powi(31)).round_ties_even() as i64;
        if m == 1 << 31 {
            m = 1 << 30;
            e += 1;
        }
        let sh = -e;
        if sh < -30 {
            return Err(BackendError::Numeric(format!("multiplier {real} is too large (≥ 2^30)")));
        }
        if sh > MAX_SHIFT {
            return Err(BackendError::Numeric(format!("multiplier {real} is too small (< 2^-62)")));
        }
        Ok(FixedMultiplier { m: m as i32, sh })
    }

    /// The real value this multiplier stands for (exact in f64).
    pub fn to_real(self) -> f64 {
        self.m as f64 * 2f64.powi(-31 - self.sh)
    }
}

/// §4: `clamp(z_y + ((acc · m + 2^(30+sh)) >> (31+sh)), lo, hi)`, one rounding, half towards
/// +∞, computed exactly in i128.
#[inline]
pub fn requantize(acc: i64, mul: FixedMultiplier, zero_point: i32, lo: i32, hi: i32) -> i32 {
    let shift = (31 + mul.sh) as u32;
    // The common case in i64 (the same integers: `|acc · m| < 2^62` and the rounding term at
    // most 2^61, so nothing wraps; `>>` floors as in i128): a quarter of the i128 path's time,
    // which the program spends on every output code.
    if (1..=62).contains(&shift) && acc.unsigned_abs() < 1 << 31 {
        let prod = acc * mul.m as i64 + (1i64 << (shift - 1));
        let y = (prod >> shift) + zero_point as i64;
        return y.clamp(lo as i64, hi as i64) as i32;
    }
    let prod = acc as i128 * mul.m as i128 + (1i128 << (shift - 1));
    let y = (prod >> shift) + zero_point as i128;
    y.clamp(lo as i128, hi as i128) as i32
}

/// §2: a real value to a code, `clamp(round_half_even(x / s) + z, lo, hi)` (as ONNX
/// QuantizeLinear does). NaN maps to the zero point.
#[inline]
pub fn quantize_value(x: f32, scale: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    let q = (x / scale).round_ties_even();
    if q.is_nan() {
        return zero_point.clamp(lo, hi);
    }
    let q = q as f64 + zero_point as f64;
    q.clamp(lo as f64, hi as f64) as i32
}

/// §2: the code range of `bits`-bit codes: signed `[−2^(b−1), 2^(b−1)−1]`, unsigned `[0, 2^b−1]`.
/// Computed in i64, so 32-bit codes give the whole i32 range (unsigned ones stop at
/// `i32::MAX`, codes being i32); `bits` must be 1..=32 (programs from files are validated).
pub fn code_range(bits: u8, signed: bool) -> (i32, i32) {
    let b = (bits as u32).clamp(1, 32);
    if signed {
        let h = 1i64 << (b - 1);
        (-h as i32, (h - 1) as i32)
    } else {
        (0, ((1i64 << b) - 1).min(i32::MAX as i64) as i32)
    }
}

/// §2: the narrow symmetric weight range `[−(2^(b−1)−1), 2^(b−1)−1]`.
pub fn narrow_weight_range(bits: u8) -> (i32, i32) {
    let h = (1i32 << (bits as u32 - 1)) - 1;
    (-h, h)
}

/// §4: `⌊√v⌋` by Newton's iteration on integers (`x ← (x + v/x) / 2` from a power of two at or
/// above the root, until it stops decreasing), as a digital unit computes it: shifts, one
/// division and one addition per iteration, at most 7 iterations for 128-bit `v` beyond the
/// first halving of the exponent.
pub fn isqrt(v: u128) -> u128 {
    if v < 2 {
        return v;
    }
    let bits = 128 - v.leading_zeros();
    // 2^⌈bits/2⌉ ≥ √v, and x + v/x < 2^65 never overflows.
    let mut x = 1u128 << bits.div_ceil(2);
    loop {
        let y = (x + v / x) >> 1;
        if y >= x {
            return x;
        }
        x = y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isqrt_is_the_floor_of_the_root() {
        for v in (0u128..5000).chain([u64::MAX as u128, (1u128 << 100) + 12345, u128::MAX >> 2]) {
            let r = isqrt(v);
            assert!(r * r <= v && (r + 1) * (r + 1) > v, "{v}: {r}");
        }
    }

    #[test]
    fn multiplier_examples() {
        let one = FixedMultiplier::from_real(1.0).unwrap();
        assert_eq!(one, FixedMultiplier { m: 1 << 30, sh: -1 });
        let half = FixedMultiplier::from_real(0.5).unwrap();
        assert_eq!(half, FixedMultiplier { m: 1 << 30, sh: 0 });
        assert!(FixedMultiplier::from_real(0.0).is_err());
        assert!(FixedMultiplier::from_real(f64::NAN).is_err());
        assert!(FixedMultiplier::from_real(2f64.powi(31)).is_err());
    }

    #[test]
    fn requantize_rounds_half_up() {
        let half = FixedMultiplier::from_real(0.5).unwrap();
        assert_eq!(requantize(3, half, 0, -128, 127), 2); // 1.5 -> 2
        assert_eq!(requantize(-3, half, 0, -128, 127), -1); // -1.5 -> -1 (half up)
        assert_eq!(requantize(5, half, 10, -128, 127), 13); // 2.5 -> 3, + zp
        assert_eq!(requantize(1000, half, 0, -128, 127), 127);
    }

    /// The i64 path gives the i128 formula's codes, at the edges of where it is taken
    /// (`|acc|` near 2^31, shifts 1..=62 and beyond) and on scattered values.
    #[test]
    fn requantize_matches_the_i128_formula() {
        let reference = |acc: i64, mul: FixedMultiplier, z: i32, lo: i32, hi: i32| {
            let shift = (31 + mul.sh) as u32;
            let prod = acc as i128 * mul.m as i128 + (1i128 << (shift - 1));
            ((prod >> shift) + z as i128).clamp(lo as i128, hi as i128) as i32
        };
        let edge = 1i64 << 31;
        let mut accs = vec![0, 1, -1, 3, -3, edge - 1, -(edge - 1), edge, -edge, edge + 1];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            accs.push((x as i64) >> (x % 40));
        }
        for sh in [-30, -20, -1, 0, 1, 7, 20, 31, 32, 40, 62] {
            for m in [1 << 30, (1 << 30) + 12_345, i32::MAX] {
                let mul = FixedMultiplier { m, sh };
                for &acc in &accs {
                    for (z, lo, hi) in [(0, -128, 127), (-7, 0, 255), (3, i32::MIN, i32::MAX)] {
                        assert_eq!(
                            requantize(acc, mul, z, lo, hi),
                            reference(acc, mul, z, lo, hi),
                            "acc {acc}, {mul:?}, z {z}"
                        );
                    }
                }
            }
        }
    }
}
