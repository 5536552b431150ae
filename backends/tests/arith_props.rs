//! Property tests of the arithmetic of `docs/hardware-model.md` §4 against naive references
//! written here.

use cimc_backends::arith::{code_range, requantize, FixedMultiplier};
use proptest::prelude::*;

/// Naive reference: the exact rational acc · m / 2^(31+sh), rounded half up, by big-integer
/// division (floor division of (2·acc·m + 2^(31+sh)) by 2^(32+sh)).
fn reference(acc: i64, m: i32, sh: i32, zp: i32, lo: i32, hi: i32) -> i32 {
    let num = 2 * acc as i128 * m as i128 + (1i128 << (31 + sh));
    let den = 1i128 << (32 + sh);
    let q = num.div_euclid(den);
    (q + zp as i128).clamp(lo as i128, hi as i128) as i32
}

proptest! {
    #[test]
    fn multiplier_is_within_half_ulp(real in 1e-12f64..1e6) {
        let f = FixedMultiplier::from_real(real).unwrap();
        prop_assert!((1 << 30..=i32::MAX as i64).contains(&(f.m as i64)));
        prop_assert!(f.sh >= -30);
        let err = (f.to_real() - real).abs() / real;
        prop_assert!(err <= 2f64.powi(-31), "relative error {err}");
    }

    #[test]
    fn requantize_matches_exact_rounding(acc in -(1i64 << 40)..(1i64 << 40), real in 1e-9f64..8.0,
                                         zp in -128i32..128, bits in 2u8..=16, signed: bool) {
        let f = FixedMultiplier::from_real(real).unwrap();
        let (lo, hi) = code_range(bits, signed);
        prop_assert_eq!(requantize(acc, f, zp, lo, hi), reference(acc, f.m, f.sh, zp, lo, hi));
    }

    #[test]
    fn requantize_is_within_one_lsb_of_float(acc in -(1i64 << 24)..(1i64 << 24), real in 1e-6f64..1.0) {
        let f = FixedMultiplier::from_real(real).unwrap();
        let y = requantize(acc, f, 0, i32::MIN, i32::MAX) as f64;
        let exact = acc as f64 * real;
        prop_assert!((y - exact).abs() <= 0.5 + exact.abs() * 2f64.powi(-30) + 1e-9, "{y} vs {exact}");
    }
}
