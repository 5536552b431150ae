//! Helpers of the property tests of the program's integer steps (`int_elementwise.rs`,
//! `norm_steps.rs`): a tensor's affine code parameters, a strategy drawing them, and the check
//! that a code is a nearest code of a real result.
#![allow(dead_code)]

use proptest::prelude::*;
use std::ops::Range;

/// Affine parameters of one tensor.
#[derive(Clone, Copy, Debug)]
pub struct Q {
    pub bits: u8,
    pub signed: bool,
    pub scale: f32,
    pub zp: i32,
}

impl Q {
    pub fn range(&self) -> (i32, i32) {
        cimc_backends::arith::code_range(self.bits, self.signed)
    }

    pub fn dtype(&self) -> &'static str {
        match (self.bits > 8, self.signed) {
            (false, true) => "i8",
            (false, false) => "u8",
            (true, true) => "i16",
            (true, false) => "u16",
        }
    }

    /// The type of a tensor of `shape` with these parameters, in the text IR.
    pub fn ty(&self, shape: &[usize]) -> String {
        let dims = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        format!(
            "{}[{dims}] q(bits={}, {}, scale=[{:?}], zp=[{}])",
            self.dtype(),
            self.bits,
            if self.signed { "signed" } else { "unsigned" },
            self.scale,
            self.zp
        )
    }

    pub fn real(&self, q: i32) -> f64 {
        self.scale as f64 * (q - self.zp) as f64
    }
}

/// Parameters of 2 to 8 bits, either sign, scales `2^e·(1 + f)` for `e` in `exponents`, a
/// zero point anywhere in the codes when unsigned (0 when signed).
pub fn quant(exponents: Range<i32>) -> impl Strategy<Value = Q> {
    (2u8..=8, any::<bool>(), exponents, 0u32..1000, any::<u64>()).prop_map(
        |(bits, signed, e, frac, z)| {
            let (lo, hi) = cimc_backends::arith::code_range(bits, signed);
            let span = (hi - lo + 1) as u64;
            let zp = if signed { 0 } else { lo + (z % span) as i32 };
            Q { bits, signed, scale: 2f32.powi(e) * (1.0 + frac as f32 / 1000.0), zp }
        },
    )
}

/// `got` is a nearest code of the real `want` (in output codes, before clamping) within `tol`.
pub fn check_nearest(got: i32, want: f64, y: &Q, tol: f64, what: &str) {
    let (lo, hi) = y.range();
    let v = (want / y.scale as f64 + y.zp as f64).clamp(lo as f64, hi as f64);
    assert!((got as f64 - v).abs() <= 0.5 + tol, "{what}: got {got}, exact {v} (tolerance {tol})");
}
