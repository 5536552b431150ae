//! One programming of the chip (a trial): the perturbed conductance of every cell and the gain
//! and offset of every ADC of every crossbar step, drawn once and read by every run of the
//! trial.
//!
//! A cell's nominal level `u` (0..2^cell_bits − 1) is read back from the prepared bit planes,
//! so the cells are exactly the ones the exact kernel multiplies. Then, in this order:
//! stuck-at (a stuck cell holds 0 or the top level, and neither varies nor drifts), programming
//! variation `u·(1 + σ_p·ε)` (clamped at 0: a conductance is never negative; a zero level stays
//! zero), drift `·(t/t0)^(−ν)` with `ν ~ N(ν_mean, ν_std)` clamped at 0.

use super::kernel::BLOCK;
use super::rng::{Key, Stream};
use super::{NoiseConfig, NoiseSpec};
use crate::program::crossbar::PreparedCrossbar;
use crate::ProgramRunner;
use cimc_interp::{InterpError, Result};
use cimc_ir::WeightEncoding;
use rayon::prelude::*;

/// The perturbed crossbar of one step in one trial.
pub struct NoisyCrossbar {
    /// Rows of one tile's block in `g` (the tile's rows, at most `R`).
    pub(crate) tile_rows: usize,
    /// Conductances in level units, `[conv group][row tile][column block][row][column in the
    /// block]` (blocks of [`BLOCK`] physical columns, `pc_pad / BLOCK` of them; [`Self::index`]
    /// reads one cell): a block of a tile is contiguous, which is how the kernel reads it.
    /// Rows past the matrix and columns past `pc` are 0.
    pub(crate) g: Vec<f32>,
    /// Per ADC (one per physical column of each array: `[group][tile][column (pc_pad)]`): the
    /// gain `1 + γ` and the offset in LSB.
    pub(crate) gain: Vec<f32>,
    pub(crate) offset: Vec<f32>,
    /// The global drift compensation factor of the layer (1 without compensation).
    pub(crate) alpha: f64,
    /// `σ_r` (0: no read noise).
    pub(crate) sigma_read: f32,
    /// The read-noise key prefix of this step and trial.
    pub(crate) read_key: Key,
}

impl NoisyCrossbar {
    /// The index in `g` of row `r`, physical column `c` of the `gt`-th (conv group, row tile)
    /// block, for `pc_pad` columns.
    #[cfg(test)]
    pub(crate) fn index(&self, pc_pad: usize, gt: usize, r: usize, c: usize) -> usize {
        ((gt * (pc_pad / BLOCK) + c / BLOCK) * self.tile_rows + r) * BLOCK + c % BLOCK
    }

    /// The global drift compensation factor applied to this step's crossbar outputs (1 when
    /// compensation is off or nothing drifts).
    pub fn compensation(&self) -> f64 {
        self.alpha
    }
}

/// Every crossbar step of a program, programmed once (one trial).
pub struct NoisyChip {
    /// Per program step: `Some` for a crossbar step.
    pub(crate) steps: Vec<Option<NoisyCrossbar>>,
}

impl NoisyChip {
    /// Programs the chip for trial `trial`: draws every cell and every ADC of `runner`'s
    /// program from `cfg` (deterministic in `(cfg.seed, trial)`, independent of threads).
    /// An error when the program has no crossbar step (nothing analog to perturb) or runs at
    /// derived weight widths.
    pub fn program(runner: &ProgramRunner, cfg: &NoiseConfig, trial: u64) -> Result<NoisyChip> {
        cfg.spec
            .validate("noise")
            .map_err(|e| InterpError::Input { name: "noise".into(), msg: e.to_string() })?;
        let prepared = runner.crossbar_steps()?;
        if prepared.iter().all(Option::is_none) {
            return Err(InterpError::Input {
                name: "noise".into(),
                msg: "the program has no crossbar step: noise acts on the analog crossbar \
                      arithmetic (compile with --target)"
                    .into(),
            });
        }
        let steps = prepared
            .iter()
            .enumerate()
            .map(|(i, p)| p.map(|p| sample_step(p, cfg, trial, i)))
            .collect();
        Ok(NoisyChip { steps })
    }

    /// The perturbed crossbar of step `i` (`None` for a step that is not a crossbar step).
    pub fn step(&self, i: usize) -> Option<&NoisyCrossbar> {
        self.steps.get(i).and_then(Option::as_ref)
    }
}

/// The drift factor `(t/t0)^(−ν)` at the spec's read time (1 before `t0`).
fn drift_factor(spec: &NoiseSpec, nu: f64) -> f64 {
    if spec.drift_time_s > spec.t0_s {
        (spec.drift_time_s / spec.t0_s).powf(-nu)
    } else {
        1.0
    }
}

pub(super) fn sample_step(
    p: &PreparedCrossbar,
    cfg: &NoiseConfig,
    trial: u64,
    step: usize,
) -> NoisyCrossbar {
    let spec = &cfg.spec;
    let (seed, cb) = (cfg.seed, p.x.geometry.cell_bits as usize);
    let top = ((1u32 << cb) - 1) as f64;
    let sw = p.x.weight_slices() as usize;
    let tile_rows = p.k.min(p.x.geometry.rows);
    let block = tile_rows * p.pc_pad;
    let kv = Key::new(seed, trial, Stream::Variation, step);
    let ks = Key::new(seed, trial, Stream::Stuck, step);
    let kd = Key::new(seed, trial, Stream::Drift, step);
    let drifts = spec.drifts();
    let stuck = spec.p_stuck_off + spec.p_stuck_on > 0.0;
    let mut g = vec![0f32; p.groups * p.tiles * block];
    // Per (group, tile) block: Σ g at t0 and at t, for the compensation factor.
    let sums: Vec<(f64, f64)> = g
        .par_chunks_mut(block.max(1))
        .enumerate()
        .map(|(gt, out)| {
            let (grp, t) = (gt / p.tiles, gt % p.tiles);
            let planes = &p.planes[gt * p.words * cb * p.pc_pad..][..p.words * cb * p.pc_pad];
            let (mut s0, mut st) = (0f64, 0f64);
            for r in 0..tile_rows {
                let k = t * p.x.geometry.rows + r;
                if k >= p.k {
                    break;
                }
                let (word, bit) = (r / 64, r % 64);
                for c in 0..p.pc {
                    let mut u = 0u32;
                    for b in 0..cb {
                        u |= (((planes[(word * cb + b) * p.pc_pad + c] >> bit) & 1) as u32) << b;
                    }
                    let (nl, slot) = (c / p.cpo, c % p.cpo);
                    let n = grp * p.mg + nl;
                    let negative =
                        slot >= sw && p.x.geometry.encoding == WeightEncoding::Differential;
                    let j = (slot % sw) as u64;
                    let key = [n as u64, k as u64, negative as u64, j];
                    let mut level = u as f64;
                    let mut fixed = false;
                    if stuck {
                        let v = ks.uniform(&key);
                        if v < spec.p_stuck_off {
                            level = 0.0;
                            fixed = true;
                        } else if v < spec.p_stuck_off + spec.p_stuck_on {
                            level = top;
                            fixed = true;
                        }
                    }
                    if !fixed && level > 0.0 && spec.sigma_prog > 0.0 {
                        let eps = match &cfg.pattern {
                            Some(pat) => pat.epsilon(step, k, n, negative, j as u32) as f64,
                            None => kv.normal(&key),
                        };
                        level = (level * (1.0 + spec.sigma_prog * eps)).max(0.0);
                    }
                    s0 += level;
                    if !fixed && level > 0.0 && drifts {
                        let nu = (spec.nu_mean + spec.nu_std * kd.normal(&key)).max(0.0);
                        level *= drift_factor(spec, nu);
                    }
                    st += level;
                    out[((c / BLOCK) * tile_rows + r) * BLOCK + c % BLOCK] = level as f32;
                }
            }
            (s0, st)
        })
        .collect();
    let (s0, st) = sums.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let alpha = if spec.drift_compensation && drifts && st > 0.0 { s0 / st } else { 1.0 };

    // One ADC per physical column of each array: (group, tile, column).
    let kg = Key::new(seed, trial, Stream::AdcGain, step);
    let ko = Key::new(seed, trial, Stream::AdcOffset, step);
    let adc_top = p.x.adc_top() as f64;
    let n_adc = p.groups * p.tiles * p.pc_pad;
    let (mut gain, mut offset) = (vec![1f32; n_adc], vec![0f32; n_adc]);
    if spec.adc_gain_sigma_lsb > 0.0 || spec.adc_offset_sigma_lsb > 0.0 {
        for (a, (gn, of)) in gain.iter_mut().zip(offset.iter_mut()).enumerate() {
            let key = [a as u64];
            if spec.adc_gain_sigma_lsb > 0.0 {
                *gn = (1.0 + spec.adc_gain_sigma_lsb * kg.normal(&key) / adc_top) as f32;
            }
            if spec.adc_offset_sigma_lsb > 0.0 {
                *of = (spec.adc_offset_sigma_lsb * ko.normal(&key)) as f32;
            }
        }
    }
    NoisyCrossbar {
        tile_rows,
        g,
        gain,
        offset,
        alpha,
        sigma_read: spec.sigma_read as f32,
        read_key: Key::new(seed, trial, Stream::Read, step),
    }
}
