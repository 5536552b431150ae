//! The function of each [`UnaryOp`] member at one element: its value ([`UnaryOp::apply`]) and
//! its derivative ([`UnaryOp::derivative`]), one arm each, so a new member does not compile
//! until it has both.
//!
//! Why here and not in the interpreter: the function is what the op means, and two executors
//! need it — the float interpreter (every element of a tensor) and the compiler, which turns a
//! unary op on integer codes into a lookup table of this function at each code.

use crate::UnaryOp;
use std::f64::consts::{FRAC_2_SQRT_PI, SQRT_2};

/// `√(2/π)`, of Gelu's tanh approximation.
const SQRT_2_OVER_PI: f64 = FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2;

impl UnaryOp {
    /// The value of the function at `x`, in f64 (an executor rounds it once to its dtype).
    pub fn apply(self, x: f64) -> f64 {
        match self {
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
            UnaryOp::Minifloat { mantissa_bits, exponent_bias, max, rounding } => {
                minifloat(x, mantissa_bits, exponent_bias, max, rounding)
            }
            UnaryOp::Abs => x.abs(),
            UnaryOp::Neg => -x,
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Ceil => x.ceil(),
            UnaryOp::Floor => x.floor(),
            UnaryOp::Round => x.round_ties_even(),
            UnaryOp::Softplus => softplus(x),
            UnaryOp::Softsign => x / (1.0 + x.abs()),
            UnaryOp::Elu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha as f64 * x.exp_m1()
                }
            }
            UnaryOp::Celu { alpha } => {
                let alpha = alpha as f64;
                x.max(0.0) + (alpha * (x / alpha).exp_m1()).min(0.0)
            }
            UnaryOp::Mish => x * softplus(x).tanh(),
            UnaryOp::ThresholdedRelu { alpha } => {
                if x > alpha as f64 {
                    x
                } else {
                    0.0
                }
            }
            UnaryOp::Shrink { bias, lambd } => {
                let (bias, lambd) = (bias as f64, lambd as f64);
                if x < -lambd {
                    x + bias
                } else if x > lambd {
                    x - bias
                } else {
                    0.0
                }
            }
            UnaryOp::Gelu { tanh: false } => 0.5 * x * (1.0 + erf(x / SQRT_2)),
            UnaryOp::Gelu { tanh: true } => {
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh())
            }
        }
    }

    /// `d f / d x` at `x`, where `y = f(x)` (the backward of `Op::Unary`). Piecewise-constant
    /// functions (Ceil, Floor, Round) have derivative 0; at a kink, the right side's.
    pub fn derivative(self, x: f64, y: f64) -> f64 {
        match self {
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
            // A step: flat on both sides (training through it needs a straight-through
            // estimator, which is not the function's derivative).
            UnaryOp::Bipolar => 0.0,
            // A staircase, flat between its steps as Round is.
            UnaryOp::Minifloat { .. } => 0.0,
            UnaryOp::Abs => {
                if x >= 0.0 {
                    1.0
                } else {
                    -1.0
                }
            }
            UnaryOp::Neg => -1.0,
            UnaryOp::Reciprocal => -y * y,
            UnaryOp::Ceil | UnaryOp::Floor | UnaryOp::Round => 0.0,
            UnaryOp::Softplus => sigmoid(x),
            UnaryOp::Softsign => 1.0 / ((1.0 + x.abs()) * (1.0 + x.abs())),
            UnaryOp::Elu { alpha } => {
                if x >= 0.0 {
                    1.0
                } else {
                    y + alpha as f64
                }
            }
            UnaryOp::Celu { alpha } => {
                if x >= 0.0 {
                    1.0
                } else {
                    (x / alpha as f64).exp()
                }
            }
            UnaryOp::Mish => {
                let t = softplus(x).tanh();
                t + x * (1.0 - t * t) * sigmoid(x)
            }
            UnaryOp::ThresholdedRelu { alpha } => {
                if x > alpha as f64 {
                    1.0
                } else {
                    0.0
                }
            }
            UnaryOp::Shrink { lambd, .. } => {
                if x.abs() > lambd as f64 {
                    1.0
                } else {
                    0.0
                }
            }
            UnaryOp::Gelu { tanh: false } => {
                let pdf = (-0.5 * x * x).exp() * FRAC_2_SQRT_PI / (2.0 * SQRT_2);
                0.5 * (1.0 + erf(x / SQRT_2)) + x * pdf
            }
            UnaryOp::Gelu { tanh: true } => {
                let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
                let t = u.tanh();
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
            }
        }
    }
}

/// `ln(1 + e^x)` without overflow for large `x` nor loss for very negative `x`.
/// QONNX's `float_quant` at scale 1 (`qonnx.custom_op.general.floatquant`), on one element.
/// The exponent is taken as qonnx takes it, `floor(log2(|x| + tiny))` in f32, so that an `x`
/// just below a power of two whose f32 logarithm rounds up to it gets the coarser step there
/// too (which matters for the directed roundings); the division by the step, a power of two,
/// and the product are exact.
fn minifloat(
    x: f64,
    mantissa_bits: usize,
    exponent_bias: f32,
    max: f32,
    r: crate::Rounding,
) -> f64 {
    let m = mantissa_bits as f64;
    let exponent = ((x as f32).abs() + f32::MIN_POSITIVE).log2().floor() as f64;
    let step = (exponent - m).max(1.0 - exponent_bias as f64 - m).exp2();
    let q = step * r.apply((x / step) as f32) as f64;
    let max = max as f64;
    // Not `clamp`: NaN stays NaN, as numpy's clip keeps it.
    if q > max {
        max
    } else if q < -max {
        -max
    } else {
        q
    }
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The error function, to about 1e-15 relative: for `|x| < 2.5` the series
/// `erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1))` (all terms positive, so no
/// cancellation); above, `1 − erfc(x)` with erfc's continued fraction
/// `e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`; 1 from 6 on (erfc(6) < 2⁻⁵⁴).
pub fn erf(x: f64) -> f64 {
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

    /// Every member, once each (a new member must be added here: the list is checked
    /// against the mnemonics).
    fn members() -> Vec<UnaryOp> {
        let all = vec![
            UnaryOp::Exp,
            UnaryOp::Erf,
            UnaryOp::Sqrt,
            UnaryOp::Selu { alpha: 1.67, gamma: 1.05 },
            UnaryOp::Log,
            UnaryOp::Abs,
            UnaryOp::Neg,
            UnaryOp::Reciprocal,
            UnaryOp::Ceil,
            UnaryOp::Floor,
            UnaryOp::Round,
            UnaryOp::Softplus,
            UnaryOp::Softsign,
            UnaryOp::Elu { alpha: 0.7 },
            UnaryOp::Celu { alpha: 1.3 },
            UnaryOp::Mish,
            UnaryOp::ThresholdedRelu { alpha: 0.3 },
            UnaryOp::Shrink { bias: 0.2, lambd: 0.5 },
            UnaryOp::Gelu { tanh: false },
            UnaryOp::Gelu { tanh: true },
            UnaryOp::Bipolar,
            UnaryOp::Minifloat {
                mantissa_bits: 3,
                exponent_bias: 7.0,
                max: 448.0,
                rounding: crate::Rounding::HalfEven,
            },
        ];
        let mut names: Vec<&str> = all.iter().map(|f| f.name()).collect();
        names.dedup();
        assert_eq!(names, <UnaryOp as crate::optable::OpFamily>::NAMES, "a member is missing");
        all
    }

    /// Each derivative agrees with a central difference of its value, away from kinks.
    #[test]
    fn derivatives_match_differences() {
        for f in members() {
            for x in [-1.3, -0.2, 0.4, 1.7] {
                if matches!(f, UnaryOp::Sqrt | UnaryOp::Log) && x < 0.0 {
                    continue;
                }
                let h = 1e-6;
                let num = (f.apply(x + h) - f.apply(x - h)) / (2.0 * h);
                let d = f.derivative(x, f.apply(x));
                assert!((num - d).abs() < 1e-6 * d.abs().max(1.0), "{f:?} at {x}: {d} vs {num}");
            }
        }
    }

    const E4M3: UnaryOp = UnaryOp::Minifloat {
        mantissa_bits: 3,
        exponent_bias: 7.0,
        max: 448.0,
        rounding: crate::Rounding::HalfEven,
    };

    /// Values at points where a member's definition changes branch or rounds a half.
    #[test]
    fn values_at_edges() {
        let cases = [
            (UnaryOp::Round, 2.5, 2.0),
            (UnaryOp::Round, -1.5, -2.0),
            (UnaryOp::Round, 0.5, 0.0),
            (UnaryOp::Ceil, -0.5, 0.0),
            (UnaryOp::Floor, -0.5, -1.0),
            (UnaryOp::Softplus, 800.0, 800.0),
            (UnaryOp::Softplus, -800.0, 0.0),
            (UnaryOp::ThresholdedRelu { alpha: 1.0 }, 1.0, 0.0),
            (UnaryOp::Shrink { bias: 0.5, lambd: 1.0 }, -1.0, 0.0),
            (UnaryOp::Shrink { bias: 0.5, lambd: 1.0 }, 2.0, 1.5),
            (UnaryOp::Elu { alpha: 2.0 }, 0.0, 0.0),
            // FP8 e4m3: 3 mantissa bits (a step of 1/32 in [0.25, 0.5)), subnormal step 2^-9,
            // 448 the largest; a half step to even.
            (E4M3, 0.3, 0.3125),
            (E4M3, 1e-3, 0.001953125),
            (E4M3, 500.0, 448.0),
            (E4M3, -17.0, -16.0),
            (E4M3, 0.0, 0.0),
        ];
        for (f, x, want) in cases {
            assert_eq!(f.apply(x), want, "{f:?} at {x}");
        }
    }
}
