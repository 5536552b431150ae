//! A counter-based generator: every random number is a hash of what it belongs to (seed, trial,
//! step, cell or conversion index), so draws are independent of evaluation order, threads and
//! chunking. The hash is splitmix64's finalizer chained over the key words (a few lines, no
//! dependency); normals come from Box–Muller on two 32-bit uniforms of one hash: in f64 through
//! the standard library for the per-cell and per-ADC draws of a trial (a few per cell, once per
//! trial), and in f32 through the branch-free polynomials of [`normal_pair_f32`] for read noise
//! (two normals per conversion pair, in the innermost loop, where they vectorize).

/// What a draw is for: keeps the streams of the different non-idealities apart.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub(crate) enum Stream {
    Variation = 1,
    Stuck = 2,
    Drift = 3,
    AdcGain = 4,
    AdcOffset = 5,
    Read = 6,
    /// Conductance-dependent programming noise (`prog_poly_us`).
    ProgPoly = 7,
    /// aihwkit's accumulated 1/f read noise, per cell at the read time.
    Read1f = 8,
    /// The DNL of every code of every ADC.
    AdcDnl = 9,
}

/// splitmix64's output function: a bijective mix of 64 bits.
#[inline(always)]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The hash of a key: the words chained through [`mix`] with splitmix64's increment.
#[inline(always)]
pub(crate) fn hash(words: &[u64]) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &w in words {
        h = mix(h.wrapping_add(w).wrapping_add(GOLDEN));
    }
    h
}

/// splitmix64's increment, added to every key word before it is mixed in.
pub(crate) const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A sequential splitmix64 generator (the same increment and [`mix`] as the keys): a stream of
/// reproducible numbers for the tests that build random cases. The noise model never uses it:
/// its draws are keyed ([`Key`]), so they do not depend on the order they are made in.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `lo..=hi` (the remainder of the next bits: slightly biased, fine for tests).
    pub fn int<T>(&mut self, lo: T, hi: T) -> T
    where
        T: Into<i64> + TryFrom<i64>,
        <T as TryFrom<i64>>::Error: std::fmt::Debug,
    {
        let (lo, hi) = (lo.into(), hi.into());
        let v = lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64;
        T::try_from(v).expect("invariant: a value in lo..=hi fits their type")
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// Uniform in [0, 1) (53 bits).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A key prefix: (seed, trial, stream, step) hashed once, extended per draw.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key(u64);

impl Key {
    pub(crate) fn new(seed: u64, trial: u64, stream: Stream, step: usize) -> Key {
        Key(hash(&[seed, trial, stream as u64, step as u64]))
    }

    /// The 64 random bits of the draw `words` under this prefix.
    #[inline(always)]
    pub(crate) fn bits(self, words: &[u64]) -> u64 {
        let mut h = self.0;
        for &w in words {
            h = mix(h.wrapping_add(w).wrapping_add(GOLDEN));
        }
        h
    }

    /// The prefix of every draw whose key starts with `words`: `extend(a).bits(b)` is
    /// `bits(a ++ b)`.
    #[inline(always)]
    pub(crate) fn extend(self, words: &[u64]) -> Key {
        Key(self.bits(words))
    }

    /// `bits(&[word])`, written out so that it vectorizes over `word`.
    #[inline(always)]
    pub(crate) fn bits1(self, word: u64) -> u64 {
        mix(self.0.wrapping_add(word).wrapping_add(GOLDEN))
    }

    /// A uniform in [0, 1) (53 bits).
    #[inline(always)]
    pub(crate) fn uniform(self, words: &[u64]) -> f64 {
        (self.bits(words) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal.
    #[inline(always)]
    pub(crate) fn normal(self, words: &[u64]) -> f64 {
        normal_pair(self.bits(words)).0
    }
}

/// Two independent standard normals from 64 random bits (Box–Muller on two 32-bit uniforms,
/// the first in (0, 1] so its logarithm is finite).
#[inline(always)]
pub(crate) fn normal_pair(bits: u64) -> (f64, f64) {
    let u1 = ((bits >> 32) as f64 + 1.0) * (1.0 / 4_294_967_296.0);
    let u2 = (bits & 0xffff_ffff) as f64 * (1.0 / 4_294_967_296.0);
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * c, r * s)
}

/// Two independent standard normals from 64 random bits, in f32 and without a call or a
/// branch, so that a loop of them vectorizes: Box–Muller on a uniform `u1` in (0, 1] from the
/// high 32 bits (the smallest is 2^−32, so the normals reach 6.66 σ as [`normal_pair`]'s do)
/// and an angle `u2` in [0, 1) from 24 of the low bits, with [`ln_f32`] and [`sincos_2pi`]
/// accurate to a few f32 ulps (a test compares them with the f64 library functions). These
/// are exact normals up to f32 rounding, not an approximation of the distribution.
#[inline(always)]
pub(crate) fn normal_pair_f32(bits: u64) -> (f32, f32) {
    // (hi >> 1) + 1/2 in units of 2^−31: (0, 1]; the conversion rounds large values to 24
    // bits, which can give exactly 1 (then r = 0), never 0.
    let hi = ((bits >> 33) as i32) as f32;
    let u1 = (hi + 0.5) * (1.0 / 2_147_483_648.0);
    let u2 = (((bits & 0xffff_ffff) >> 8) as i32) as f32 * (1.0 / 16_777_216.0);
    let r = (-2.0 * ln_f32(u1)).sqrt();
    let (s, c) = sincos_2pi(u2);
    (r * c, r * s)
}

/// `ln(x)` for a positive normal f32 `x`: `x = m·2^k` with `m` in [√½, √2), and
/// `ln m = 2·atanh(s)`, `s = (m − 1)/(m + 1)`, `|s| ≤ 0.172`, as its series to `s^9` (the next
/// term is below 10^−9 of the result).
#[inline(always)]
pub(crate) fn ln_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75; // ln 2 to 16 bits: k·LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6;
    let bits = x.to_bits() as i32;
    // The exponent that brings x into [√½, √2): 0x3f3504f3 is √½'s bits.
    let k = (bits - 0x3f35_04f3) >> 23;
    let m = f32::from_bits((bits - (k << 23)) as u32);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0))));
    let kf = k as f32;
    kf * LN2_HI + ((2.0 * s + s * poly) + kf * LN2_LO)
}

/// `(sin 2πu, cos 2πu)` for `u` in [0, 1) with 24 fractional bits: the quadrant `q` of `4u`
/// (nearest), the rest `a = 2π(u − q/4)` in [−π/4, π/4] (the subtraction is exact), Taylor
/// polynomials of sin and cos in `a` (the first omitted terms are below 2·10^−8), and the
/// quadrant applied by swapping and negating.
#[inline(always)]
pub(crate) fn sincos_2pi(u: f32) -> (f32, f32) {
    let qf = (u * 4.0 + 0.5).floor();
    let q = qf as i32;
    let a = (u - qf * 0.25) * std::f32::consts::TAU;
    let a2 = a * a;
    let s = a + a * a2 * (-1.0 / 6.0 + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 / 362_880.0)));
    let c = 1.0
        + a2 * (-0.5
            + a2 * (1.0 / 24.0 + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40_320.0 - a2 / 3_628_800.0))));
    // q = 0: (s, c); 1: (c, −s); 2: (−s, −c); 3: (−c, s) (q = 4 is q = 0).
    let odd = q & 1 != 0;
    let (s0, c0) = if odd { (c, s) } else { (s, c) };
    let sin_neg = ((q & 2) as u32) << 30;
    let cos_neg = (((q + 1) & 2) as u32) << 30;
    (f32::from_bits(s0.to_bits() ^ sin_neg), f32::from_bits(c0.to_bits() ^ cos_neg))
}
