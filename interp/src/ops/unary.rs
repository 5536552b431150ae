//! The elementwise functions of [`UnaryOp`] (`Op::Unary`): each member's value and derivative,
//! one arm each, so a new member does not compile until it has both. Values are computed in
//! f64 and rounded once to the tensor's dtype; large tensors are split over threads.

use super::num::Float;
use super::{floats, PAR_MIN};
use crate::error::Result;
use crate::tensor::Tensor;
use cimc_ir::UnaryOp;
use ndarray::ArrayD;
use rayon::prelude::*;
use std::f64::consts::FRAC_2_SQRT_PI;

/// The value of `f` at `x`.
pub(crate) fn value(f: UnaryOp, x: f64) -> f64 {
    match f {
        UnaryOp::Exp => x.exp(),
        UnaryOp::Erf => erf(x),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Selu { alpha, gamma } => {
            let (alpha, gamma) = (alpha as f64, gamma as f64);
            if x > 0.0 {
                gamma * x
            } else {
                gamma * alpha * x.exp_m1()
            }
        }
        UnaryOp::Log => x.ln(),
        UnaryOp::Bipolar => {
            if x >= 0.0 {
                1.0
            } else {
                -1.0
            }
        }
    }
}

/// `d f / d x` at `x`, where `y = f(x)` (the backward of `Op::Unary`).
pub(crate) fn derivative(f: UnaryOp, x: f64, y: f64) -> f64 {
    match f {
        UnaryOp::Exp => y,
        UnaryOp::Erf => FRAC_2_SQRT_PI * (-x * x).exp(),
        UnaryOp::Sqrt => 0.5 / y,
        UnaryOp::Selu { alpha, gamma } => {
            if x > 0.0 {
                gamma as f64
            } else {
                y + gamma as f64 * alpha as f64
            }
        }
        UnaryOp::Log => 1.0 / x,
        // A step: flat on both sides (training through it needs a straight-through estimator,
        // which is not the function's derivative).
        UnaryOp::Bipolar => 0.0,
    }
}

/// `f` applied to every element of a float tensor, in place.
pub(crate) fn eval(f: UnaryOp, t: Tensor) -> Result<Tensor> {
    Ok(floats!(t, a => map(f, a), f.name()))
}

fn map<T: Float>(f: UnaryOp, a: ArrayD<T>) -> ArrayD<T> {
    let mut a = super::activation::standard(a);
    let x = a.as_slice_mut().expect("invariant: standard() returns a contiguous array");
    let run = |c: &mut [T]| c.iter_mut().for_each(|v| *v = T::of(value(f, v.to_f64())));
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(PAR_MIN / 2).for_each(run);
    } else {
        run(x);
    }
    a
}

/// The error function, to about 1e-15 relative: for `|x| < 2.5` the series
/// `erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1))` (all terms positive, so no
/// cancellation); above, `1 − erfc(x)` with erfc's continued fraction
/// `e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`; 1 from 6 on (erfc(6) < 2⁻⁵⁴).
pub(crate) fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a >= 6.0 {
        1.0
    } else if a < 2.5 {
        let two_a2 = 2.0 * a * a;
        let (mut term, mut sum) = (a, a);
        let mut n = 0.0;
        while term > sum * 1e-17 {
            n += 1.0;
            term *= two_a2 / (2.0 * n + 1.0);
            sum += term;
        }
        FRAC_2_SQRT_PI * (-a * a).exp() * sum
    } else {
        let mut f = a;
        for k in (1..=60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the C library's erf (Python's `math.erf`), to 2e-15 relative.
    #[test]
    fn erf_matches_reference_values() {
        for (x, want) in [
            (0.0, 0.0),
            (1e-10, 1.1283791670955126e-10),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (2.5, 0.999593047982555),
            (3.0, 0.9999779095030014),
            (4.0, 0.9999999845827421),
            (-1.0, -0.8427007929497149),
            (7.0, 1.0),
        ] {
            let got = erf(x);
            assert!(
                (got - want).abs() <= 2e-15 * want.abs().max(1e-300),
                "erf({x}) = {got}, want {want}"
            );
        }
    }

    /// Each derivative agrees with a central difference of its value.
    #[test]
    fn derivatives_match_differences() {
        let fs =
            [UnaryOp::Exp, UnaryOp::Erf, UnaryOp::Sqrt, UnaryOp::Selu { alpha: 1.67, gamma: 1.05 }];
        for f in fs {
            for x in [-1.3, -0.2, 0.4, 1.7] {
                if matches!(f, UnaryOp::Sqrt | UnaryOp::Log) && x < 0.0 {
                    continue;
                }
                let h = 1e-6;
                let num = (value(f, x + h) - value(f, x - h)) / (2.0 * h);
                let d = derivative(f, x, value(f, x));
                assert!((num - d).abs() < 1e-6 * d.abs().max(1.0), "{f:?} at {x}: {d} vs {num}");
            }
        }
    }
}
