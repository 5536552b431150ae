//! Analog non-idealities of the crossbar program (`docs/hardware-model.md` §5), seeded and off by
//! default.
//!
//! A *trial* is one programming of the chip: [`NoisyChip::program`] draws, for every cell of
//! every crossbar step of a program, its programming variation, stuck-at fault, drift
//! exponent and the device models of `docs/noise.md` (off-state, aihwkit's PCM fits, IR drop),
//! and for every ADC its gain, offset and transfer curve, into the perturbed conductances the
//! noisy execution reads. [`crate::ProgramRunner::run_noisy`] then runs the program with each
//! crossbar step computing the perturbed partial sums `P'` (with read noise per conversion),
//! the ADC of §3 on the real-valued `P'`, and shift-and-add; every digital step is unchanged.
//! With a spec that [`NoiseSpec::is_off`], nothing here runs: the exact path is untouched.
//!
//! Why here: the noise acts where the hardware adds it — per cell and per conversion — so it
//! needs the program's crossbar layout (row tiles, slices, physical columns), which is
//! `program::crossbar`'s. The numbers come from a `[noise]` table
//! ([`cimc_backends::noise::NoiseSpec`]); the model and its decisions are in `docs/noise.md`.
//!
//! Determinism: every draw comes from a counter-based generator keyed on what it belongs to
//! ([`rng`]): per-cell draws on (seed, trial, step, output, row, sign, slice), per-ADC draws on
//! (seed, trial, step, ADC) — the ADCs shared as `[cost] adcs_per_array` says — read noise on (seed, trial,
//! step, image index in the whole evaluation, vector within the image, conv group, row tile,
//! input slice, physical column). So results do not depend on the number of threads, the
//! chunking of vectors, or how the evaluation cuts the data set into batches.

pub mod ir_drop;
mod kernel;
pub(crate) mod rng;
pub(crate) mod run;
mod sample;

pub use cimc_backends::noise::NoiseSpec;
pub use rng::SplitMix64;
pub use sample::{NoisyChip, NoisyCrossbar};

use std::sync::Arc;

/// A fixed programming-variation pattern instead of random draws: the ε of every cell.
///
/// The cell is named against the program format (`cimc_backends::program::Crossbar`):
/// - `step`: the index of the Conv/Gemm step in `Program::steps`;
/// - `k`: the row of the step's weight matrix within its conv group, `0..K`: for Conv the
///   im2col row `(ci·kh + ky)·kw + kx` of the weights `[M, C/group, kh, kw]` (`ci` the input
///   channel within the group); for Gemm the row of the weights `[K, N]`. Row `k` sits in row
///   tile `k / rows`, on word line `k % rows` of its array;
/// - `n`: the output column over all conv groups, `0..M` (the output channel for Conv; conv
///   group `n / (M / group)`);
/// - `negative`: the `w⁻ = max(−w, 0)` column of the differential encoding; always false for
///   the offset encoding (one column `w + 2^(b_w−1)`);
/// - `slice`: the weight slice `j`, 0 = least significant: the cell holds
///   `u_j = (u >> (j·cell_bits)) & (2^cell_bits − 1)` of the magnitude `u`.
pub trait CellPattern: Send + Sync {
    /// ε of the cell holding weight slice `slice` (0 = least significant) of weight (row `k`
    /// of the step's weight matrix within its group, output column `n` over all groups),
    /// `negative` = the w⁻ column of the differential encoding (always false for offset).
    fn epsilon(&self, step: usize, k: usize, n: usize, negative: bool, slice: u32) -> f32;
}

/// What a noisy evaluation draws from: the device's parameters, the seed, and optionally a
/// fixed pattern of programming variation.
#[derive(Clone, Default)]
pub struct NoiseConfig {
    pub spec: NoiseSpec,
    pub seed: u64,
    /// When set, replaces the random ε of programming variation (σ_p still scales it:
    /// `g = u·(1 + σ_p·ε)`); every other non-ideality is still drawn from the seed.
    pub pattern: Option<Arc<dyn CellPattern>>,
}

impl std::fmt::Debug for NoiseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseConfig")
            .field("spec", &self.spec)
            .field("seed", &self.seed)
            .field("pattern", &self.pattern.as_ref().map(|_| "CellPattern"))
            .finish()
    }
}

impl NoiseConfig {
    pub fn new(spec: NoiseSpec, seed: u64) -> NoiseConfig {
        NoiseConfig { spec, seed, pattern: None }
    }

    /// With a fixed programming-variation pattern.
    pub fn with_pattern(mut self, pattern: Arc<dyn CellPattern>) -> NoiseConfig {
        self.pattern = Some(pattern);
        self
    }

    /// Whether nothing is perturbed (no pattern and a spec that is off): the exact path runs.
    pub fn is_off(&self) -> bool {
        self.spec.is_off() && (self.pattern.is_none() || self.spec.sigma_prog == 0.0)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_device;
