//! One programming of the chip (a trial): the perturbed conductance of every cell and the gain
//! and offset of every ADC of every crossbar step, drawn once and read by every run of the
//! trial.
//!
//! A cell's nominal level `u` (0..2^cell_bits − 1) is read back from the prepared bit planes,
//! so the cells are exactly the ones the exact kernel multiplies. Conductances are kept in
//! level units (one level = `(g_max − g_min)/top` µS), the off-state `g_min` included. Then, in
//! this order ([`CellModel::cell`]): stuck-at (a stuck cell holds 0 or the top level, plus the
//! off-state, and neither varies nor drifts), programming variation `u·(1 + σ_p·ε)` (clamped at
//! 0; a zero level stays zero), the off-state conductance, aihwkit's conductance-dependent
//! programming noise (additive, clamped at 0), drift `·(t/t0)^(−ν)` with `ν` normal or
//! aihwkit's `ν(g_T)`, aihwkit's accumulated 1/f noise at the read time. Then the IR drop of
//! each array scales every cell by its attenuation ([`super::ir_drop`]). The ADCs are shared
//! as the cost model shares them (`[cost] adcs_per_array`), each with a gain, an offset and a
//! transfer curve (DNL/INL) of its own ([`sample_adcs`]).

use super::ir_drop;
use super::kernel::BLOCK;
use super::rng::{Key, Stream};
use super::{CellPattern, NoiseConfig, NoiseSpec};
use crate::program::crossbar::PreparedCrossbar;
use crate::ProgramRunner;
use cimc_backends::noise::{IrModel, NuModel};
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
    /// Per physical column `[group][tile][column (pc_pad)]`: the gain `1 + γ` and the offset
    /// in LSB of the ADC that converts it (columns that share an ADC share them).
    pub(crate) gain: Vec<f32>,
    pub(crate) offset: Vec<f32>,
    /// The ADCs' transfer curves when they are not ideal (else empty): per ADC, `top + 2`
    /// thresholds `T[0] = −∞, T[1..=top], T[top + 1] = +∞` in the ADC's input units (the code
    /// is the largest `k` with `y ≥ T[k]`; ideally `T[k] = k`).
    pub(crate) inl: Vec<f32>,
    /// Per physical column `[group][tile][column (pc_pad)]`: the offset in `inl` of its ADC's
    /// thresholds (empty without `inl`).
    pub(crate) inl_of: Vec<u32>,
    /// The ADC step as a fraction of the program's `2^e` (`adc_step_scale`).
    pub(crate) step_scale: f64,
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
        // ADC sharing as the cost model has it (`[cost] adcs_per_array` of the program's
        // target; 1 per array when the program records only the target's stamp).
        let adcs_per_array = runner
            .program()
            .target
            .as_ref()
            .and_then(|t| t.target())
            .map_or(1.0, |t| t.cost.adcs_per_array);
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
            .map(|(i, p)| p.map(|p| sample_step(p, cfg, trial, i, adcs_per_array)))
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

/// aihwkit's conductance-dependent drift exponent (`PCMLikeNoiseModel.generate_drift_
/// coefficients`): `g_rel = g_T/g_max` (at least 1e-7), `μ = clamp(−0.0155·ln g_rel + 0.0244,
/// 0.049, 0.1)`, `σ = clamp(−0.0125·ln g_rel − 0.0059, 0.008, 0.045)`, `ν = |μ + σ·ε|`.
pub(crate) fn pcm_nu(g_rel: f64, eps: f64) -> f64 {
    let l = g_rel.max(1e-7).ln();
    let mu = (-0.0155 * l + 0.0244).clamp(0.049, 0.1);
    let sigma = (-0.0125 * l - 0.0059).clamp(0.008, 0.045);
    (mu + sigma * eps).abs()
}

/// aihwkit's 1/f noise amplitude of a cell programmed to `g_rel = g_prog/g_max`
/// (`apply_drift_noise_to_conductance`): `Q_s = min(0.0088 / max(g_rel^0.65, 1e-3), 0.2)`.
pub(crate) fn pcm_q_s(g_rel: f64) -> f64 {
    (0.0088 / g_rel.abs().powf(0.65).max(1e-3)).min(0.2)
}

/// The programming-noise polynomial `σ(g_T) = (g_max/25)·Σ_i c_i·(g_T/g_max)^i` µS, at least 0.
pub(crate) fn prog_sigma_us(spec: &NoiseSpec, g_target_us: f64) -> f64 {
    let x = g_target_us / spec.g_max_us;
    let sum = spec.prog_poly_us.iter().rev().fold(0.0, |acc, &c| acc * x + c);
    (sum * spec.g_max_us / 25.0).max(0.0)
}

/// Everything a cell's draws need, derived once per step from the spec.
struct CellModel<'a> {
    spec: &'a NoiseSpec,
    pattern: Option<&'a dyn CellPattern>,
    step: usize,
    /// The top level `2^cell_bits − 1`, one level in µS, and the off-state in levels.
    top: f64,
    level_us: f64,
    g_off: f64,
    kv: Key,
    ks: Key,
    kd: Key,
    kp: Key,
    kr: Key,
    drifts: bool,
    stuck: bool,
    poly: bool,
    /// `read_1f_scale·sqrt(ln((t + t_read)/(2·t_read)))` at the read time (0: no 1/f noise).
    sig_1f: f64,
}

impl<'a> CellModel<'a> {
    fn new(cfg: &'a NoiseConfig, top: f64, trial: u64, step: usize) -> CellModel<'a> {
        let (spec, seed) = (&cfg.spec, cfg.seed);
        let level_us = spec.level_us(top);
        let t = spec.drift_time_s.max(spec.t0_s);
        let sig_1f = if spec.read_1f_scale > 0.0 {
            spec.read_1f_scale * ((t + spec.t_read_s) / (2.0 * spec.t_read_s)).ln().max(0.0).sqrt()
        } else {
            0.0
        };
        CellModel {
            spec,
            pattern: cfg.pattern.as_deref(),
            step,
            top,
            level_us,
            g_off: spec.g_min_us / level_us,
            kv: Key::new(seed, trial, Stream::Variation, step),
            ks: Key::new(seed, trial, Stream::Stuck, step),
            kd: Key::new(seed, trial, Stream::Drift, step),
            kp: Key::new(seed, trial, Stream::ProgPoly, step),
            kr: Key::new(seed, trial, Stream::Read1f, step),
            drifts: spec.drifts(),
            stuck: spec.p_stuck_off + spec.p_stuck_on > 0.0,
            poly: spec.has_prog_poly(),
            sig_1f,
        }
    }

    /// The conductance (levels) of the cell of nominal level `u` holding slice `j` of weight
    /// `(k, n)` (`negative`: its w⁻ cell): right after programming and at the read time.
    fn cell(&self, u: u32, k: usize, n: usize, negative: bool, j: u64) -> (f64, f64) {
        let spec = self.spec;
        let key = [n as u64, k as u64, negative as u64, j];
        let mut level = u as f64;
        if self.stuck {
            let v = self.ks.uniform(&key);
            if v < spec.p_stuck_off {
                return (self.g_off, self.g_off);
            } else if v < spec.p_stuck_off + spec.p_stuck_on {
                return (self.top + self.g_off, self.top + self.g_off);
            }
        }
        let target_us = spec.g_min_us + level * self.level_us;
        if level > 0.0 && spec.sigma_prog > 0.0 {
            let eps = match self.pattern {
                Some(pat) => pat.epsilon(self.step, k, n, negative, j as u32) as f64,
                None => self.kv.normal(&key),
            };
            level = (level * (1.0 + spec.sigma_prog * eps)).max(0.0);
        }
        let mut g = level + self.g_off;
        if self.poly {
            let sigma = prog_sigma_us(spec, target_us) / self.level_us;
            g = (g + sigma * self.kp.normal(&key)).max(0.0);
        }
        let g0 = g;
        if g > 0.0 && self.drifts {
            let nu = match spec.nu_model {
                NuModel::Normal => (spec.nu_mean + spec.nu_std * self.kd.normal(&key)).max(0.0),
                NuModel::Pcm => pcm_nu(target_us / spec.g_max_us, self.kd.normal(&key)),
            };
            g *= drift_factor(spec, nu);
        }
        if self.sig_1f > 0.0 && g0 > 0.0 {
            let q_s = pcm_q_s(g0 * self.level_us / spec.g_max_us);
            g = (g + g.abs() * q_s * self.sig_1f * self.kr.normal(&key)).max(0.0);
        }
        (g0, g)
    }
}

pub(super) fn sample_step(
    p: &PreparedCrossbar,
    cfg: &NoiseConfig,
    trial: u64,
    step: usize,
    adcs_per_array: f64,
) -> NoisyCrossbar {
    let spec = &cfg.spec;
    let cb = p.x.geometry.cell_bits as usize;
    let model = CellModel::new(cfg, ((1u32 << cb) - 1) as f64, trial, step);
    let sw = p.x.weight_slices() as usize;
    let tile_rows = p.k.min(p.x.geometry.rows);
    let block = tile_rows * p.pc_pad;
    let mut g = vec![0f32; p.groups * p.tiles * block];
    // Per (group, tile) block: Σ g at t0 and at t, for the compensation factor.
    let sums: Vec<(f64, f64)> = g
        .par_chunks_mut(block.max(1))
        .enumerate()
        .map(|(gt, out)| {
            let (grp, t) = (gt / p.tiles, gt % p.tiles);
            let planes = &p.planes[gt * p.words * cb * p.pc_pad..][..p.words * cb * p.pc_pad];
            let (mut s0, mut st) = (0f64, 0f64);
            // The tile's conductances at the read time, `[row][physical column]`.
            let mut lv = vec![0f64; tile_rows * p.pc];
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
                    let negative =
                        slot >= sw && p.x.geometry.encoding == WeightEncoding::Differential;
                    let (g0, gt) = model.cell(u, k, grp * p.mg + nl, negative, (slot % sw) as u64);
                    s0 += g0;
                    st += gt;
                    lv[r * p.pc + c] = gt;
                }
            }
            if spec.wire_ohm > 0.0 {
                apply_ir_drop(
                    &mut lv,
                    tile_rows,
                    p.pc,
                    p.x.geometry.rows,
                    p.x.geometry.cols,
                    spec,
                    model.level_us,
                );
            }
            for r in 0..tile_rows {
                for c in 0..p.pc {
                    out[((c / BLOCK) * tile_rows + r) * BLOCK + c % BLOCK] =
                        lv[r * p.pc + c] as f32;
                }
            }
            (s0, st)
        })
        .collect();
    let (s0, st) = sums.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    let alpha = if spec.drift_compensation && spec.drifts() && st > 0.0 { s0 / st } else { 1.0 };
    let adcs = sample_adcs(p, cfg, trial, step, adcs_per_array);
    NoisyCrossbar {
        tile_rows,
        g,
        gain: adcs.gain,
        offset: adcs.offset,
        inl: adcs.inl,
        inl_of: adcs.inl_of,
        step_scale: spec.adc_step_scale,
        alpha,
        sigma_read: spec.sigma_read as f32,
        read_key: Key::new(cfg.seed, trial, Stream::Read, step),
    }
}

/// Scales every cell of a tile's conductances `lv` (`[row][physical column]`, levels) by its
/// IR-drop attenuation: each array of `cols` columns is solved on its full `rows` word lines
/// (the tile's cells on the first `tile_rows`), every row driven at `ir_row_activity`.
fn apply_ir_drop(
    lv: &mut [f64],
    tile_rows: usize,
    pc: usize,
    rows: usize,
    cols: usize,
    spec: &NoiseSpec,
    level_us: f64,
) {
    // r·G of a cell of `x` levels: Ω · µS · 1e-6.
    let rg_per_level = spec.wire_ohm * level_us * 1e-6;
    for c0 in (0..pc).step_by(cols.max(1)) {
        let w = cols.min(pc - c0);
        let mut rg = vec![0f64; rows * w];
        for r in 0..tile_rows {
            for c in 0..w {
                rg[r * w + c] = lv[r * pc + c0 + c] * rg_per_level;
            }
        }
        let solved = spec.ir_model == IrModel::Solve;
        let a = ir_drop::attenuation(&rg, rows, w, rows, spec.ir_row_activity, solved);
        for r in 0..tile_rows {
            for c in 0..w {
                lv[r * pc + c0 + c] *= a[r * w + c];
            }
        }
    }
}

/// The ADCs of one step, expanded per physical column.
struct Adcs {
    gain: Vec<f32>,
    offset: Vec<f32>,
    inl: Vec<f32>,
    inl_of: Vec<u32>,
}

/// The ADC of physical column `c` of (conv group, row tile) block `gt`: the columns of an
/// array of `cols` are split into `round(A)` equal groups for `A = adcs_per_array ≥ 1`; for
/// `A < 1`, `round(1/A)` consecutive arrays of the step share one ADC.
fn adc_of(gt: usize, c: usize, arrays_per_block: usize, cols: usize, adcs_per_array: f64) -> usize {
    let array = gt * arrays_per_block + c / cols;
    if adcs_per_array >= 1.0 {
        let n = (adcs_per_array.round() as usize).clamp(1, cols);
        array * n + (c % cols) / cols.div_ceil(n)
    } else {
        array / ((1.0 / adcs_per_array).round() as usize).max(1)
    }
}

/// Every ADC's gain, offset and transfer curve, drawn once per trial and keyed on the ADC.
fn sample_adcs(
    p: &PreparedCrossbar,
    cfg: &NoiseConfig,
    trial: u64,
    step: usize,
    adcs_per_array: f64,
) -> Adcs {
    let (spec, seed) = (&cfg.spec, cfg.seed);
    let cols = p.x.geometry.cols.max(1);
    let arrays_per_block = p.pc_pad.div_ceil(cols);
    let n_col = p.groups * p.tiles * p.pc_pad;
    let which: Vec<usize> = (0..n_col)
        .map(|x| adc_of(x / p.pc_pad, x % p.pc_pad, arrays_per_block, cols, adcs_per_array))
        .collect();
    let n_adc = which.iter().max().map_or(0, |&a| a + 1);
    let kg = Key::new(seed, trial, Stream::AdcGain, step);
    let ko = Key::new(seed, trial, Stream::AdcOffset, step);
    let top = p.x.adc_top() as usize;
    let (mut gain, mut offset) = (vec![1f32; n_adc], vec![0f32; n_adc]);
    for a in 0..n_adc {
        let key = [a as u64];
        if spec.adc_gain_sigma_lsb > 0.0 {
            gain[a] = (1.0 + spec.adc_gain_sigma_lsb * kg.normal(&key) / top as f64) as f32;
        }
        if spec.adc_offset_sigma_lsb > 0.0 {
            offset[a] = (spec.adc_offset_sigma_lsb * ko.normal(&key)) as f32;
        }
    }
    let (mut inl, mut inl_of) = (Vec::new(), Vec::new());
    if spec.adc_has_inl() {
        let kn = Key::new(seed, trial, Stream::AdcDnl, step);
        for a in 0..n_adc {
            inl.extend(adc_thresholds(spec, top, kn.extend(&[a as u64])));
        }
        inl_of = which.iter().map(|&a| (a * (top + 2)) as u32).collect();
    }
    Adcs {
        gain: which.iter().map(|&a| gain[a]).collect(),
        offset: which.iter().map(|&a| offset[a]).collect(),
        inl,
        inl_of,
    }
}

/// One ADC's thresholds `T[0..=top + 1]` (`T[0] = −∞`, `T[top + 1] = +∞`): the inner codes
/// `1..top` have widths `1 + σ_DNL·ε` (at least 0: a negative width is a missing code), the
/// running sum is end-point corrected (`INL[1] = INL[top] = 0`, the convention of converter
/// data sheets), then the bow `A·4x(1 − x)` at `x = k/top` is added. Kept non-decreasing.
pub(crate) fn adc_thresholds(spec: &NoiseSpec, top: usize, key: Key) -> Vec<f32> {
    let mut t = vec![0f64; top + 2];
    t[1] = 1.0;
    for k in 1..top {
        let width = if spec.adc_dnl_sigma_lsb > 0.0 {
            (1.0 + spec.adc_dnl_sigma_lsb * key.normal(&[k as u64])).max(0.0)
        } else {
            1.0
        };
        t[k + 1] = t[k] + width;
    }
    if top > 1 {
        // End-point correction: the line through (1, INL[1]) and (top, INL[top]) removed.
        let (i1, it) = (t[1] - 1.0, t[top] - top as f64);
        for (k, tk) in t.iter_mut().enumerate().take(top + 1).skip(1) {
            *tk -= i1 + (it - i1) * (k - 1) as f64 / (top - 1) as f64;
        }
    }
    for (k, tk) in t.iter_mut().enumerate().take(top + 1).skip(1) {
        let x = k as f64 / top as f64;
        *tk += spec.adc_inl_bow_lsb * 4.0 * x * (1.0 - x);
    }
    for k in 2..=top {
        t[k] = t[k].max(t[k - 1]);
    }
    let mut out: Vec<f32> = t.iter().map(|&v| v as f32).collect();
    out[0] = f32::NEG_INFINITY;
    out[top + 1] = f32::INFINITY;
    out
}
