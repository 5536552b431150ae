//! `FloatFormat` rounding against a naive reference: every representable value of the format
//! enumerated from its encodings, the nearest one picked, ties to the even encoding.

use cimc_interp::format::{FloatFormat, Precision, Special};
use proptest::prelude::*;

/// The non-negative finite values of `f` with their encodings, ascending.
fn values(f: &FloatFormat) -> Vec<(f64, u32)> {
    let (e_bits, m_bits) = (f.exp_bits, f.man_bits);
    let top = (1u32 << e_bits) - 1;
    let bias = (1i32 << (e_bits - 1)) - 1;
    let mut v = Vec::new();
    for e in 0..=top {
        for m in 0..(1u32 << m_bits) {
            let reserved = match f.special {
                Special::Ieee => e == top,
                Special::FiniteNan => e == top && m == (1 << m_bits) - 1,
                Special::Finite => false,
            };
            if reserved || (e == 0 && m != 0 && !f.subnormals) {
                continue;
            }
            let val = if e == 0 {
                m as f64 * 2f64.powi(1 - bias - m_bits as i32)
            } else {
                ((1u64 << m_bits) + m as u64) as f64 * 2f64.powi(e as i32 - bias - m_bits as i32)
            };
            v.push((val, (e << m_bits) | m));
        }
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// The naive rounding of `x` to `f`.
fn reference(f: &FloatFormat, table: &[(f64, u32)], x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let mut cands = table.to_vec();
    let max = cands.last().unwrap().0;
    if f.special == Special::Ieee {
        // Infinity behaves as the next power of two (its encoding's fraction is 0: even).
        let e_top = (1u32 << f.exp_bits) - 1;
        let next = 2f64.powi((1 << (f.exp_bits - 1)) - 1 + 1);
        cands.push((next, e_top << f.man_bits));
    } else if a > max {
        return sign * max;
    }
    let i = cands.partition_point(|c| c.0 < a);
    let pick = if i == 0 {
        cands[0]
    } else if i == cands.len() {
        cands[i - 1]
    } else {
        let (lo, hi) = (cands[i - 1], cands[i]);
        let (dl, dh) = (a - lo.0, hi.0 - a);
        if dl < dh {
            lo
        } else if dh < dl {
            hi
        } else if lo.1 % 2 == 0 {
            // Both even only between 0 and the smallest normal without subnormals: 0 wins.
            lo
        } else {
            hi
        }
    };
    if f.special == Special::Ieee && pick.0 > max {
        return sign * f64::INFINITY;
    }
    sign * pick.0
}

fn small_format() -> impl Strategy<Value = FloatFormat> {
    // 8 exponent bits only IEEE-like: a finite top exponent would exceed f32's range.
    (2u32..=8, 0u32..=7, any::<bool>(), 0usize..3).prop_map(|(e, m, sub, sp)| FloatFormat {
        exp_bits: if sp == 0 { e } else { e.min(7) },
        man_bits: m.max(u32::from(sp == 1)),
        subnormals: sub,
        special: [Special::Ieee, Special::FiniteNan, Special::Finite][sp],
    })
}

/// An f32 near the format's range (exponents from below the subnormals to above the max).
fn value_near(f: FloatFormat) -> impl Strategy<Value = f32> {
    let emin = 1 - ((1i32 << (f.exp_bits - 1)) - 1) - f.man_bits as i32 - 3;
    let emax = (1i32 << (f.exp_bits - 1)) + 2;
    (any::<bool>(), emin.max(-149)..emax.min(128), any::<u32>()).prop_map(|(neg, e, m)| {
        // (1 + m/2^23)·2^e, rounded to f32 (a subnormal f32 below 2^-126).
        let mag = ((1.0 + (m & 0x7f_ffff) as f64 / 8388608.0) * 2f64.powi(e)) as f32;
        if neg {
            -mag
        } else {
            mag
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn rounding_matches_the_enumeration((f, xs) in small_format().prop_flat_map(|f| (Just(f), proptest::collection::vec(value_near(f), 64)))) {
        let table = values(&f);
        for x in xs {
            let got = f.round_f32(x) as f64;
            let want = reference(&f, &table, x as f64);
            prop_assert!(got == want || (got.is_nan() && want.is_nan()),
                "{f:?}: round({x:e}) = {got:e}, reference {want:e}");
        }
    }

    #[test]
    fn named_formats_match((i, xs) in (0usize..5).prop_flat_map(|i| {
        let f = [FloatFormat::BF16, FloatFormat::FP16, FloatFormat::E4M3, FloatFormat::E5M2, FloatFormat::E3M2][i];
        (Just(i), proptest::collection::vec(value_near(f), 256))
    })) {
        let f = [FloatFormat::BF16, FloatFormat::FP16, FloatFormat::E4M3, FloatFormat::E5M2, FloatFormat::E3M2][i];
        let table = values(&f);
        for x in xs {
            let got = f.round_f32(x) as f64;
            let want = reference(&f, &table, x as f64);
            prop_assert_eq!(got, want, "{}: round({:e})", f, x);
        }
    }

    #[test]
    fn a_rounded_sum_is_the_rounded_exact_sum(s in -1000f32..1000f32, p in -1000f32..1000f32) {
        // Two f32 within 2^20 of each other in magnitude: their f64 sum is exact.
        let f = FloatFormat::BF16;
        let s = f.round_f32(s) as f64;
        let table = values(&f);
        prop_assert_eq!(f.round_sum(s, p as f64), reference(&f, &table, s + p as f64));
    }
}

#[test]
fn fp32_is_the_identity() {
    for bits in [0u32, 1, 0x0080_0000, 0x3f80_0001, 0x7f7f_ffff, 0x8000_0001, 0x7f80_0000] {
        let x = f32::from_bits(bits);
        assert_eq!(FloatFormat::FP32.round_f32(x).to_bits(), bits);
        assert_eq!(FloatFormat::parse("e8m23").unwrap().round_f32(x).to_bits(), bits);
    }
}

#[test]
fn largest_values_and_overflow() {
    assert_eq!(FloatFormat::E4M3.max_value(), 448.0);
    assert_eq!(FloatFormat::E5M2.max_value(), 57344.0);
    assert_eq!(FloatFormat::E3M2.max_value(), 28.0);
    assert_eq!(FloatFormat::FP16.max_value(), 65504.0);
    assert_eq!(FloatFormat::BF16.max_value(), f32::from_bits(0x7f7f_0000) as f64);
    // IEEE: the tie above the max goes to infinity, below it stays.
    assert_eq!(FloatFormat::FP16.round_f32(65520.0), f32::INFINITY);
    assert_eq!(FloatFormat::FP16.round_f32(65519.0), 65504.0);
    // OCP E4M3 and FP6 E3M2 saturate (and so does infinity).
    assert_eq!(FloatFormat::E4M3.round_f32(464.0), 448.0);
    assert_eq!(FloatFormat::E4M3.round_f32(-1e9), -448.0);
    assert_eq!(FloatFormat::E3M2.round_f32(f32::INFINITY), 28.0);
    assert!(FloatFormat::E4M3.round_f32(f32::NAN).is_nan());
    // Subnormals: E4M3's smallest is 2^-9; without subnormals values below 2^-6 go to 0 or 2^-6.
    assert_eq!(FloatFormat::E4M3.round_f32(2f32.powi(-9)), 2f32.powi(-9));
    let nosub = FloatFormat::parse("e4m3-nosub").unwrap();
    assert_eq!(nosub.round_f32(2f32.powi(-9)), 0.0);
    assert_eq!(nosub.round_f32(0.6 * 2f32.powi(-6)), 2f32.powi(-6));
    assert_eq!(nosub.round_f32(0.5 * 2f32.powi(-6)), 0.0);
}

#[test]
fn the_sum_breaks_a_false_tie_with_its_rounding_error() {
    // 1 + 2^-8 + 2^-60: just above bf16's tie between 1 and 1 + 2^-7; the f64 sum alone rounds
    // to the tie (and then to 1).
    let p = 2f64.powi(-8) + 2f64.powi(-60);
    assert_eq!(FloatFormat::BF16.round_f64(1.0 + p), 1.0);
    assert_eq!(FloatFormat::BF16.round_sum(1.0, p), 1.0 + 2f64.powi(-7));
    assert_eq!(FloatFormat::BF16.round_sum(1.0, 2f64.powi(-8) - 2f64.powi(-60)), 1.0);
}

#[test]
fn names_parse_and_print_back() {
    for n in ["fp32", "bf16", "fp16", "e4m3", "e5m2", "e3m2", "e6m5", "e4m3-nosub", "e2m0"] {
        assert_eq!(FloatFormat::parse(n).unwrap().name(), n);
    }
    for bad in ["e9m2", "e1m3", "e4m24", "fp8", "e4", ""] {
        let err = FloatFormat::parse(bad).unwrap_err();
        assert!(err.contains(bad) || bad.is_empty(), "{err}");
    }
    let p = Precision::parse("w=e4m3,a=e4m3,acc=fp32").unwrap();
    assert_eq!(p.weights, FloatFormat::E4M3);
    assert_eq!(p.accumulation, FloatFormat::FP32);
    assert_eq!(p.to_string(), "w=e4m3,a=e4m3,acc=fp32");
    assert_eq!(Precision::parse("bf16").unwrap(), Precision::uniform(FloatFormat::BF16));
    assert!(Precision::parse("w=bf16,x=fp16").unwrap_err().contains("'x'"));
}
