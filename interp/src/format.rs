//! Reduced floating-point number formats for the float interpreter: bfloat16, fp16, the OCP
//! 8-bit formats E4M3 and E5M2, the OCP MX 6-bit E3M2 and any `eXmY`, with bit-exact
//! round-to-nearest-even from f32/f64.
//!
//! Why: a digital accelerator may store weights, pass activations and accumulate dot products
//! in a narrower float than f32 (what TorchAxf/AxTrain simulate); [`Precision`] says which
//! format each of the three uses and the [`crate::Runner`] rounds there (`docs/approximate.md`).
//!
//! Every value of an `eXmY` format (`exp_bits ≤ 8`, `man_bits ≤ 23`) is an f32, so a rounded
//! value is returned as an f32 (or f64) that holds it exactly. Overflow depends on what the
//! format encodes at its top exponent ([`Special`]): IEEE-like formats (bf16, fp16, E5M2,
//! custom `eXmY`) round to ±inf as IEEE 754 does; OCP FP8 E4M3 has no infinity (its top
//! exponent holds normal numbers, only `S.1111.111` is NaN, max 448) and OCP MX FP6 E3M2 has
//! neither infinity nor NaN (max 28): both **saturate** to ±max. The OCP 8-bit spec (OFP8,
//! v1.0, §5 "conversion": "saturation mode" and "non-saturation mode") allows either for E4M3;
//! we saturate because the non-saturating choice turns a single overflowing partial sum into a
//! NaN that poisons the whole output, which would measure the encoding's corner rather than
//! the format's precision; the OCP MX spec (v1.0, §5.3.2) requires saturation for FP6.

/// What a format encodes at its largest exponent field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// IEEE 754: the top exponent holds ±inf and NaN; overflow rounds to ±inf.
    Ieee,
    /// OCP FP8 E4M3 ("fn"): the top exponent holds normal numbers except the all-ones
    /// mantissa (NaN); no infinity, overflow saturates to ±max.
    FiniteNan,
    /// OCP MX FP6/FP4: every encoding is a number; overflow saturates to ±max (NaN inputs stay
    /// NaN in the interpreter, which has no other way to show them).
    Finite,
}

/// A binary floating-point format: 1 sign bit, `exp_bits` exponent bits (bias
/// `2^(exp_bits−1) − 1`), `man_bits` fraction bits. A non-IEEE [`Special`] needs
/// `exp_bits ≤ 7` (with 8, its top exponent would exceed f32; [`FloatFormat::parse`] never
/// builds one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloatFormat {
    pub exp_bits: u32,
    pub man_bits: u32,
    /// Whether values below the smallest normal are encoded (gradual underflow); without,
    /// the representable set is {0, normals}.
    pub subnormals: bool,
    pub special: Special,
}

impl FloatFormat {
    pub const FP32: FloatFormat =
        FloatFormat { exp_bits: 8, man_bits: 23, subnormals: true, special: Special::Ieee };
    pub const BF16: FloatFormat =
        FloatFormat { exp_bits: 8, man_bits: 7, subnormals: true, special: Special::Ieee };
    pub const FP16: FloatFormat =
        FloatFormat { exp_bits: 5, man_bits: 10, subnormals: true, special: Special::Ieee };
    /// OCP FP8 E4M3 (max 448, no inf).
    pub const E4M3: FloatFormat =
        FloatFormat { exp_bits: 4, man_bits: 3, subnormals: true, special: Special::FiniteNan };
    /// OCP FP8 E5M2 (IEEE-like, max 57344).
    pub const E5M2: FloatFormat =
        FloatFormat { exp_bits: 5, man_bits: 2, subnormals: true, special: Special::Ieee };
    /// OCP MX FP6 E3M2 (max 28, no inf or NaN).
    pub const E3M2: FloatFormat =
        FloatFormat { exp_bits: 3, man_bits: 2, subnormals: true, special: Special::Finite };

    /// Parses `fp32`, `bf16`, `fp16`, `e4m3`, `e5m2`, `e3m2` (the OCP formats above), any
    /// other `eXmY` (IEEE-like, 2 ≤ X ≤ 8, 0 ≤ Y ≤ 23), each optionally with `-nosub` (no
    /// subnormals).
    pub fn parse(s: &str) -> Result<FloatFormat, String> {
        let t = s.trim().to_ascii_lowercase();
        let (base, nosub) = match t.strip_suffix("-nosub") {
            Some(b) => (b, true),
            None => (t.as_str(), false),
        };
        let mut f = match base {
            "fp32" | "f32" => Self::FP32,
            "bf16" => Self::BF16,
            "fp16" | "f16" => Self::FP16,
            "e4m3" => Self::E4M3,
            "e5m2" => Self::E5M2,
            "e3m2" => Self::E3M2,
            _ => {
                let bad = || {
                    format!(
                        "format '{s}': expected fp32, bf16, fp16, e4m3, e5m2, e3m2 or eXmY \
                         (2 <= X <= 8, 0 <= Y <= 23), optionally with -nosub"
                    )
                };
                let rest = base.strip_prefix('e').ok_or_else(bad)?;
                let (x, y) = rest.split_once('m').ok_or_else(bad)?;
                let (x, y): (u32, u32) =
                    (x.parse().map_err(|_| bad())?, y.parse().map_err(|_| bad())?);
                if !(2..=8).contains(&x) || y > 23 {
                    return Err(bad());
                }
                FloatFormat { exp_bits: x, man_bits: y, subnormals: true, special: Special::Ieee }
            }
        };
        if nosub {
            f.subnormals = false;
        }
        Ok(f)
    }

    /// The exponent bias.
    pub fn bias(&self) -> i32 {
        (1 << (self.exp_bits - 1)) - 1
    }

    /// The exponent of the smallest normal number.
    pub fn emin(&self) -> i32 {
        1 - self.bias()
    }

    /// The exponent of the largest finite number.
    pub fn emax(&self) -> i32 {
        let top = (1 << self.exp_bits) - 1 - self.bias();
        match self.special {
            Special::Ieee => top - 1,
            Special::FiniteNan | Special::Finite => top,
        }
    }

    /// The largest finite value.
    pub fn max_value(&self) -> f64 {
        let m = self.man_bits as i32;
        // All-ones fraction, except E4M3's top exponent whose all-ones fraction is NaN.
        let frac = match self.special {
            Special::FiniteNan => (1u64 << m) - 2,
            _ => (1u64 << m) - 1,
        };
        let sig = (1u64 << m) + frac;
        sig as f64 * pow2(self.emax() - m)
    }

    /// Whether this is f32 itself (rounding is the identity).
    pub fn is_fp32(&self) -> bool {
        *self == Self::FP32
    }

    /// The name [`FloatFormat::parse`] reads back.
    pub fn name(&self) -> String {
        let key = FloatFormat { subnormals: true, ..*self };
        let named = [
            (Self::FP32, "fp32"),
            (Self::BF16, "bf16"),
            (Self::FP16, "fp16"),
            (Self::E4M3, "e4m3"),
            (Self::E5M2, "e5m2"),
            (Self::E3M2, "e3m2"),
        ];
        let base = match named.iter().find(|(f, _)| *f == key) {
            Some((_, n)) => n.to_string(),
            None => format!("e{}m{}", self.exp_bits, self.man_bits),
        };
        if self.subnormals {
            base
        } else {
            format!("{base}-nosub")
        }
    }

    /// `x` rounded to the nearest value of the format, ties to even (bit-exact; the result is
    /// exactly representable in f32).
    pub fn round_f32(&self, x: f32) -> f32 {
        if self.is_fp32() {
            return x;
        }
        self.round_f64(x as f64) as f32
    }

    /// `x` (any f64) rounded to the nearest value of the format, ties to even, with this
    /// format's overflow rule.
    pub fn round_f64(&self, x: f64) -> f64 {
        self.round_sticky(x, 0.0)
    }

    /// The exact sum `s + p` rounded to the format (each add of an accumulation in the format):
    /// the f64 sum plus its exact rounding error (TwoSum) decide, so no double rounding.
    pub fn round_sum(&self, s: f64, p: f64) -> f64 {
        let hi = s + p;
        if !hi.is_finite() {
            return self.round_f64(hi);
        }
        // TwoSum (Knuth): hi + lo == s + p exactly.
        let bp = hi - s;
        let lo = (s - (hi - bp)) + (p - bp);
        self.round_sticky(hi, lo)
    }

    /// Rounds the exact value `hi + lo` (`|lo|` at most half an ulp of `hi` in f64): `hi` is
    /// rounded, and `lo` only breaks an exact tie of `hi`.
    fn round_sticky(&self, hi: f64, lo: f64) -> f64 {
        if hi.is_nan() {
            return hi;
        }
        let max = self.max_value();
        let sat = |v: f64| if v.is_sign_negative() { -max } else { max };
        if hi.is_infinite() {
            return match self.special {
                Special::Ieee => hi,
                _ => sat(hi),
            };
        }
        if hi == 0.0 {
            // Only lo could be non-zero, and TwoSum gives lo = 0 when hi = 0.
            return hi;
        }
        let a = hi.abs();
        let sign = if hi < 0.0 { -1.0 } else { 1.0 };
        let lo = lo * sign; // the error in the direction of |hi|
        let m = self.man_bits as i32;
        let emin = self.emin();
        let e = exponent_of(a);
        let mag = if !self.subnormals && e < emin {
            // Representable neighbours: 0 and the smallest normal; the tie goes to 0.
            let min_normal = pow2(emin);
            let half = min_normal / 2.0;
            if a > half || (a == half && lo > 0.0) {
                min_normal
            } else {
                0.0
            }
        } else {
            // The quantum: the weight of the last fraction bit at this exponent.
            let q = e.max(emin) - m;
            let scaled = a * pow2(-q); // exact: a power-of-two scaling in range
            let floor = scaled.floor();
            let frac = scaled - floor;
            let up = if frac > 0.5 {
                true
            } else if frac < 0.5 {
                false
            } else if lo != 0.0 {
                lo > 0.0
            } else {
                floor % 2.0 != 0.0
            };
            let r = if up { floor + 1.0 } else { floor };
            // A tie broken downward when `frac` was 0 but lo < 0 is no tie: `scaled` is on the
            // grid and the exact value is below it by less than half a quantum.
            r * pow2(q)
        };
        if mag > max {
            return match self.special {
                Special::Ieee => sign * f64::INFINITY,
                _ => sign * max,
            };
        }
        sign * mag
    }
}

impl std::fmt::Display for FloatFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// `2^n`, exactly (built from its bits for normal f64 exponents).
fn pow2(n: i32) -> f64 {
    if (-1022..=1023).contains(&n) {
        f64::from_bits(((n + 1023) as u64) << 52)
    } else {
        2f64.powi(n)
    }
}

/// `floor(log2(a))` of a positive finite f64 (normal or subnormal).
fn exponent_of(a: f64) -> i32 {
    let bits = a.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal f64: never the case for values coming from f32 sums, but exact anyway.
        -1074 + (63 - (bits & ((1u64 << 52) - 1)).leading_zeros() as i32)
    } else {
        biased - 1023
    }
}

/// The formats of the three places a float accelerator rounds: weights (once, when the model
/// is prepared), activations (every tensor between ops, and the graph's inputs), accumulation
/// (every partial sum of a Conv/Gemm/MatMul dot product).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Precision {
    pub weights: FloatFormat,
    pub activations: FloatFormat,
    pub accumulation: FloatFormat,
}

impl Default for Precision {
    fn default() -> Self {
        Precision::uniform(FloatFormat::FP32)
    }
}

impl Precision {
    /// One format for all three.
    pub fn uniform(f: FloatFormat) -> Precision {
        Precision { weights: f, activations: f, accumulation: f }
    }

    /// Parses `FMT` (all three) or a comma list `w=FMT,a=FMT,acc=FMT` (unnamed ones fp32).
    pub fn parse(s: &str) -> Result<Precision, String> {
        if !s.contains('=') {
            return Ok(Precision::uniform(FloatFormat::parse(s)?));
        }
        let mut p = Precision::default();
        for part in s.split(',') {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                format!("format '{s}': expected FMT or w=FMT,a=FMT,acc=FMT, got part '{part}'")
            })?;
            let f = FloatFormat::parse(v)?;
            match k.trim() {
                "w" | "weights" => p.weights = f,
                "a" | "act" | "activations" => p.activations = f,
                "acc" | "accumulation" => p.accumulation = f,
                other => {
                    return Err(format!(
                        "format '{s}': unknown key '{other}' (expected w, a or acc)"
                    ))
                }
            }
        }
        Ok(p)
    }

    /// Whether every place is f32 (the default, untouched path).
    pub fn is_fp32(&self) -> bool {
        self.weights.is_fp32() && self.activations.is_fp32() && self.accumulation.is_fp32()
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.weights == self.activations && self.weights == self.accumulation {
            write!(f, "{}", self.weights)
        } else {
            write!(f, "w={},a={},acc={}", self.weights, self.activations, self.accumulation)
        }
    }
}
