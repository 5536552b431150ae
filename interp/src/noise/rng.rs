//! A counter-based generator: every random number is a hash of what it belongs to (seed, trial,
//! step, cell or conversion index), so draws are independent of evaluation order, threads and
//! chunking. The hash is splitmix64's finalizer chained over the key words (a few lines, no
//! dependency); normals come from Box–Muller on two 32-bit uniforms of one hash.

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
        h = mix(h.wrapping_add(w).wrapping_add(0x9e37_79b9_7f4a_7c15));
    }
    h
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
            h = mix(h.wrapping_add(w).wrapping_add(0x9e37_79b9_7f4a_7c15));
        }
        h
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
