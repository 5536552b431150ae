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
    }

    /// Whether drift changes any conductance (a drift exponent and a read time after `t0`).
    pub fn drifts(&self) -> bool {
        (self.nu_mean > 0.0 || self.nu_std > 0.0) && self.drift_time_s > self.t0_s
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
        if self.p_stuck_off + self.p_stuck_on > 1.0 {
            p.push(format!(
                "noise.p_stuck_off + noise.p_stuck_on = {}: at most 1",
                self.p_stuck_off + self.p_stuck_on
            ));
        }
        p
    }
}
