//! The parameters of the analog non-idealities (`docs/hardware-model.md` §5): a `[noise]` table,
//! either inside a target file (`targets/pcm.toml`) or in a file of its own
//! (`targets/noise/*.toml`), read and validated like targets (`docs/noise.md` lists every key).
//!
//! Everything defaults to off; a spec that [`NoiseSpec::is_off`] leaves the program's exact
//! arithmetic untouched. The sampling and the application live in `cimc_sim::noise`; this
//! crate only holds the numbers, so that a target file can carry them.

use crate::error::{BackendError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `[noise]` table. Relative quantities are fractions of a cell's level; ADC errors are in
/// LSB of the ADC (one step `2^e` of `docs/hardware-model.md` §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseSpec {
    /// Programming variation `σ_p`: each cell's conductance is `u·(1 + σ_p·ε)`, `ε ~ N(0,1)`
    /// drawn once per cell per trial (one programming of the chip). In `[0, 1]`.
    pub sigma_prog: f64,
    /// Read noise `σ_r`: each conversion sees `P + σ_r·sqrt(Σ x·g)·ε`, in units of one cell
    /// level (the LSB of `P`). In `[0, 100]`.
    pub sigma_read: f64,
    /// Drift exponent `ν` per cell from `N(nu_mean, nu_std)` (clamped at 0): `g(t) = g(t0)·(t /
    /// t0)^(−ν)`. Each in `[0, 1]`.
    pub nu_mean: f64,
    pub nu_std: f64,
    /// `t0`: the time after programming at which the conductances are the programmed ones
    /// (seconds, > 0).
    pub t0_s: f64,
    /// The time after programming at which the chip is read (seconds, >= 0); times up to `t0`
    /// read the programmed conductances.
    pub drift_time_s: f64,
    /// Global drift compensation: every crossbar output of a layer is scaled by one factor
    /// calibrated on the chip (`docs/noise.md`).
    pub drift_compensation: bool,
    /// Fractions of cells stuck at level 0 and at the top level `2^cell_bits − 1`; each in
    /// `[0, 1]`, their sum at most 1.
    pub p_stuck_off: f64,
    pub p_stuck_on: f64,
    /// ADC gain error per ADC per trial, `N(0, σ)` LSB at full scale (>= 0, at most 2^16).
    pub adc_gain_sigma_lsb: f64,
    /// ADC offset error per ADC per trial, `N(0, σ)` LSB (>= 0, at most 2^16).
    pub adc_offset_sigma_lsb: f64,

    // The conductance model (`docs/noise.md`, *Conductances*): levels `0..=top` map to
    // `g_min + u·(g_max − g_min)/top` µS.
    /// The conductance of the top level, µS (> 0, at most 10^6); aihwkit's `g_max` = 25 µS.
    pub g_max_us: f64,
    /// The off-state conductance of a level-0 cell, µS (>= 0, below `g_max_us`): with it a
    /// zero-level cell conducts, the on/off ratio is `g_max / g_min`.
    pub g_min_us: f64,
    /// Conductance-dependent programming noise (aihwkit's `PCMLikeNoiseModel`): the additive
    /// σ of a cell programmed to `g_T` is `(g_max/25)·Σ_i c_i·(g_T/g_max)^i` µS (coefficients
    /// fitted at `g_max` = 25 µS), clamped at 0. Empty: off. At most 8 coefficients.
    pub prog_poly_us: Vec<f64>,
    /// How each cell's drift exponent is drawn: `normal` (`N(nu_mean, nu_std)`, every cell
    /// alike) or `pcm` (aihwkit's conductance-dependent `ν(g_T)`; `nu_mean`/`nu_std` unused).
    pub nu_model: NuModel,
    /// Scale of aihwkit's accumulated 1/f read noise at the read time (0: off, 1: aihwkit's
    /// fit): each cell's conductance gets `|g|·Q_s(g_T)·sqrt(ln((t + t_read)/(2·t_read)))·ε`,
    /// once per trial. In `[0, 100]`.
    pub read_1f_scale: f64,
    /// `t_read` of the 1/f fit, seconds (> 0); aihwkit's 250 ns.
    pub t_read_s: f64,
    /// ADC differential non-linearity: each code's width of every ADC is `1 + N(0, σ)` LSB,
    /// drawn once per trial; the INL is its running sum, end-point corrected. In `[0, 4]`.
    pub adc_dnl_sigma_lsb: f64,
    /// A deterministic bow-shaped INL, `A·4x(1 − x)` LSB at `x = code/top` (the second-order
    /// non-linearity of a converter), the same on every ADC. In `[-64, 64]`.
    pub adc_inl_bow_lsb: f64,
    /// The ADC step as a fraction of the program's `2^e`: `s·2^e`, `s` in `[0.5, 1]` (1: the
    /// power-of-two step). The digital side multiplies each code by the step (rounded to the
    /// integer accumulator), so any real step between two powers of two is modelled.
    pub adc_step_scale: f64,
    /// Wire resistance of one segment (one cell pitch) of a word or bit line, Ω (>= 0, at most
    /// 10^4; 0: no IR drop).
    pub wire_ohm: f64,
    /// How the IR drop is computed: `first_order` (the first iterate of the nodal equations,
    /// from the ideal cell currents) or `solve` (the nodal equations of every array solved).
    pub ir_model: IrModel,
    /// The fraction of a row's full input voltage at which the attenuation of every cell is
    /// computed (the operating point: every used row driven at this level). In `(0, 1]`.
    pub ir_row_activity: f64,
}

/// How drift exponents depend on the cell (`NoiseSpec::nu_model`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NuModel {
    /// `ν ~ N(nu_mean, nu_std)` for every cell.
    #[default]
    Normal,
    /// aihwkit's PCM fit: `μ_ν = clamp(−0.0155·ln(g_T/g_max) + 0.0244, 0.049, 0.1)`,
    /// `σ_ν = clamp(−0.0125·ln(g_T/g_max) − 0.0059, 0.008, 0.045)`, `ν = |μ_ν + σ_ν·ε|`.
    Pcm,
}

/// How the IR drop of an array is computed (`NoiseSpec::ir_model`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrModel {
    /// The first iterate of the nodal equations from the ideal cell currents.
    #[default]
    FirstOrder,
    /// The nodal equations solved (line Gauss–Seidel).
    Solve,
}

impl Default for NoiseSpec {
    fn default() -> Self {
        NoiseSpec {
            sigma_prog: 0.0,
            sigma_read: 0.0,
            nu_mean: 0.0,
            nu_std: 0.0,
            t0_s: 20.0,
            drift_time_s: 0.0,
            drift_compensation: false,
            p_stuck_off: 0.0,
            p_stuck_on: 0.0,
            adc_gain_sigma_lsb: 0.0,
            adc_offset_sigma_lsb: 0.0,
            g_max_us: 25.0,
            g_min_us: 0.0,
            prog_poly_us: Vec::new(),
            nu_model: NuModel::Normal,
            read_1f_scale: 0.0,
            t_read_s: 250e-9,
            adc_dnl_sigma_lsb: 0.0,
            adc_inl_bow_lsb: 0.0,
            adc_step_scale: 1.0,
            wire_ohm: 0.0,
            ir_model: IrModel::FirstOrder,
            ir_row_activity: 0.5,
        }
    }
}

/// A file that holds a `[noise]` table, and optionally a whole target around it.
#[derive(Deserialize)]
struct NoiseFile {
    noise: Option<NoiseSpec>,
}

impl NoiseSpec {
    /// Every key at its default (the table is then left out of a serialized target).
    pub fn is_default(&self) -> bool {
        self == &NoiseSpec::default()
    }

    /// Whether the spec changes nothing: then the exact arithmetic runs, untouched.
    pub fn is_off(&self) -> bool {
        self.sigma_prog == 0.0
            && self.sigma_read == 0.0
            && !self.drifts()
            && self.p_stuck_off == 0.0
            && self.p_stuck_on == 0.0
            && self.adc_gain_sigma_lsb == 0.0
            && self.adc_offset_sigma_lsb == 0.0
            && self.g_min_us == 0.0
            && !self.has_prog_poly()
            && self.read_1f_scale == 0.0
            && !self.adc_has_inl()
            && self.adc_step_scale == 1.0
            && self.wire_ohm == 0.0
    }

    /// Whether drift changes any conductance (a drift exponent and a read time after `t0`).
    pub fn drifts(&self) -> bool {
        let exponent = match self.nu_model {
            NuModel::Normal => self.nu_mean > 0.0 || self.nu_std > 0.0,
            NuModel::Pcm => true,
        };
        exponent && self.drift_time_s > self.t0_s
    }

    /// Whether the conductance-dependent programming noise is on (a nonzero coefficient).
    pub fn has_prog_poly(&self) -> bool {
        self.prog_poly_us.iter().any(|&c| c != 0.0)
    }

    /// Whether the ADCs have a non-linear transfer curve (DNL or a bow INL).
    pub fn adc_has_inl(&self) -> bool {
        self.adc_dnl_sigma_lsb > 0.0 || self.adc_inl_bow_lsb != 0.0
    }

    /// The conductance of one level step, µS: `(g_max − g_min)/top` for `top` the top level.
    pub fn level_us(&self, top: f64) -> f64 {
        (self.g_max_us - self.g_min_us) / top
    }

    /// Reads the `[noise]` table of a file: a noise file, or a target file with such a table
    /// (then the whole file is validated as a target). Errors name the file and the key.
    pub fn load(path: &Path) -> Result<NoiseSpec> {
        let origin = path.display().to_string();
        let text = cimc_ir::files::read_text(path)
            .map_err(|e| BackendError::Target(format!("{origin}: cannot read noise file: {e}")))?;
        NoiseSpec::from_toml_str(&text, &origin)
    }

    /// As [`NoiseSpec::load`], from the file's text; `origin` prefixes every message.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<NoiseSpec> {
        // A whole target (validated as one, unknown keys refused) with its `[noise]` table.
        let target = crate::target::Target::from_toml_str(text, origin)?;
        // The target parser accepted the table; read whether it was present at all.
        let present: NoiseFile = toml::from_str(text)
            .map_err(|e| BackendError::Target(format!("{origin}: {}", e.message())))?;
        if present.noise.is_none() {
            return Err(BackendError::Target(format!(
                "{origin}: no [noise] table (docs/noise.md lists its keys)"
            )));
        }
        Ok(target.noise)
    }

    /// Checks every range of `docs/noise.md`; all problems in one message starting with
    /// `origin`.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let p = self.problems();
        if p.is_empty() {
            Ok(())
        } else {
            Err(BackendError::Target(format!("{origin}: {}", p.join("; "))))
        }
    }

    /// Every out-of-range value, each naming its key (`noise.KEY`).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut check = |key: &str, v: f64, lo: f64, hi: f64, open_lo: bool| {
            let ok = v.is_finite() && if open_lo { v > lo } else { v >= lo } && v <= hi;
            if !ok {
                let l = if open_lo { format!("> {lo}") } else { format!(">= {lo}") };
                p.push(format!("noise.{key} = {v}: expected a number {l} and <= {hi}"));
            }
        };
        check("sigma_prog", self.sigma_prog, 0.0, 1.0, false);
        check("sigma_read", self.sigma_read, 0.0, 100.0, false);
        check("nu_mean", self.nu_mean, 0.0, 1.0, false);
        check("nu_std", self.nu_std, 0.0, 1.0, false);
        check("t0_s", self.t0_s, 0.0, 1e12, true);
        check("drift_time_s", self.drift_time_s, 0.0, 1e12, false);
        check("p_stuck_off", self.p_stuck_off, 0.0, 1.0, false);
        check("p_stuck_on", self.p_stuck_on, 0.0, 1.0, false);
        check("adc_gain_sigma_lsb", self.adc_gain_sigma_lsb, 0.0, 65536.0, false);
        check("adc_offset_sigma_lsb", self.adc_offset_sigma_lsb, 0.0, 65536.0, false);
        check("g_max_us", self.g_max_us, 0.0, 1e6, true);
        check("g_min_us", self.g_min_us, 0.0, 1e6, false);
        check("read_1f_scale", self.read_1f_scale, 0.0, 100.0, false);
        check("t_read_s", self.t_read_s, 0.0, 1e3, true);
        check("adc_dnl_sigma_lsb", self.adc_dnl_sigma_lsb, 0.0, 4.0, false);
        check("adc_inl_bow_lsb", self.adc_inl_bow_lsb, -64.0, 64.0, false);
        check("adc_step_scale", self.adc_step_scale, 0.5, 1.0, false);
        check("wire_ohm", self.wire_ohm, 0.0, 1e4, false);
        check("ir_row_activity", self.ir_row_activity, 0.0, 1.0, true);
        if self.g_min_us.is_finite() && self.g_max_us.is_finite() && self.g_min_us >= self.g_max_us
        {
            p.push(format!(
                "noise.g_min_us = {}: expected a number below noise.g_max_us = {}",
                self.g_min_us, self.g_max_us
            ));
        }
        if self.prog_poly_us.len() > 8 {
            p.push(format!(
                "noise.prog_poly_us has {} coefficients: expected at most 8",
                self.prog_poly_us.len()
            ));
        }
        for (i, &c) in self.prog_poly_us.iter().enumerate() {
            if !c.is_finite() || c.abs() > 1e3 {
                p.push(format!(
                    "noise.prog_poly_us[{i}] = {c}: expected a number in [-1000, 1000]"
                ));
            }
        }
        if self.p_stuck_off + self.p_stuck_on > 1.0 {
            p.push(format!(
                "noise.p_stuck_off + noise.p_stuck_on = {}: at most 1",
                self.p_stuck_off + self.p_stuck_on
            ));
        }
        p
    }
}
