//! Quantization settings: uniform bit widths (`--wbits`, `--abits`), calibration methods, and
//! per-layer overrides by node name from a TOML file:
//!
//! ```toml
//! # bits of the weights of a layer, and of the activation it produces
//! [layers."/c1/Conv"]
//! wbits = 4
//! abits = 6
//! ```

use crate::error::{PassError, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// How activation ranges are chosen from calibration data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CalibMethod {
    /// The observed minimum and maximum.
    MinMax,
    /// The given percentile of the values (e.g. 99.99) on each side.
    Percentile(f64),
    /// The clipping range that minimizes the expected squared quantization error.
    Mse,
}

impl CalibMethod {
    pub fn parse(s: &str) -> Result<CalibMethod> {
        match s {
            "minmax" | "min-max" => Ok(CalibMethod::MinMax),
            "mse" => Ok(CalibMethod::Mse),
            "percentile" => Ok(CalibMethod::Percentile(99.99)),
            p if p.starts_with("percentile=") => {
                let v: f64 = p["percentile=".len()..].parse().map_err(|_| {
                    PassError::Config(format!("calibration method '{s}': expected percentile=P"))
                })?;
                if !(50.0..=100.0).contains(&v) {
                    return Err(PassError::Config(format!("percentile {v} must be in [50, 100]")));
                }
                Ok(CalibMethod::Percentile(v))
            }
            _ => Err(PassError::Config(format!(
                "unknown calibration method '{s}' (minmax, percentile, percentile=P, mse)"
            ))),
        }
    }
}

/// How per-channel weight scales are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightMethod {
    MinMax,
    Mse,
}

impl WeightMethod {
    pub fn parse(s: &str) -> Result<WeightMethod> {
        match s {
            "minmax" | "min-max" => Ok(WeightMethod::MinMax),
            "mse" => Ok(WeightMethod::Mse),
            _ => Err(PassError::Config(format!("unknown weight method '{s}' (minmax, mse)"))),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerBits {
    pub wbits: Option<u8>,
    pub abits: Option<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuantConfig {
    pub wbits: u8,
    pub abits: u8,
    /// Signed symmetric activation codes for tensors that can be negative (else unsigned with a
    /// zero point).
    pub act_signed: bool,
    pub calib_method: CalibMethod,
    pub weight_method: WeightMethod,
    /// Use only the first N calibration samples.
    pub calib_samples: Option<usize>,
    /// Per-layer bits by node name.
    pub layers: BTreeMap<String, LayerBits>,
    /// Run `bn-calibrate` (and `reference-stats`, which measures what it matches).
    pub bn_calibrate: bool,
    /// Run `mixed-precision` under this budget.
    pub auto_bits: Option<Budget>,
    /// The bit widths `mixed-precision` chooses from (sorted, unique).
    pub candidate_bits: Vec<u8>,
    /// Run `cascade`: the weights' scales serve every width from their bits down to this one.
    pub cascade_min_bits: Option<u8>,
}

/// What `mixed-precision` must stay within.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Crossbar arrays of the chip (needs a target).
    Arrays(usize),
    /// Average weight bits, weighted by each layer's weight count (= weight memory).
    WeightBits(f64),
    /// Energy per inference in pJ: the cost model's crossbar and converter energy of the
    /// mapped layers with a target, else an op-count proxy (bit operations).
    Energy(f64),
}

impl Budget {
    /// `arrays=N`, `weight-bits=X` or `energy=E`.
    pub fn parse(s: &str) -> Result<Budget> {
        let bad = || {
            PassError::Config(format!(
                "budget '{s}': expected arrays=N, weight-bits=X or energy=E (pJ)"
            ))
        };
        let (k, v) = s.split_once('=').ok_or_else(bad)?;
        let b = match k.trim() {
            "arrays" => Budget::Arrays(v.trim().parse().map_err(|_| bad())?),
            "weight-bits" | "wbits" => Budget::WeightBits(v.trim().parse().map_err(|_| bad())?),
            "energy" => Budget::Energy(v.trim().parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        let ok = match b {
            Budget::Arrays(n) => n > 0,
            Budget::WeightBits(x) => x.is_finite() && x > 0.0,
            Budget::Energy(e) => e.is_finite() && e > 0.0,
        };
        if ok {
            Ok(b)
        } else {
            Err(PassError::Config(format!("budget '{s}' must be positive")))
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::Arrays(n) => write!(f, "arrays={n}"),
            Budget::WeightBits(x) => write!(f, "weight-bits={x}"),
            Budget::Energy(e) => write!(f, "energy={e}"),
        }
    }
}

/// `2,3,4` → sorted unique widths, each in 2..=16.
pub fn parse_bit_list(s: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let b: u8 = part.trim().parse().map_err(|_| {
            PassError::Config(format!("bit widths '{s}': expected a list like 2,3,4,5,6,8"))
        })?;
        v.push(check_bits("a candidate bit width", b)?);
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            wbits: 8,
            abits: 8,
            act_signed: false,
            calib_method: CalibMethod::MinMax,
            weight_method: WeightMethod::MinMax,
            calib_samples: None,
            layers: BTreeMap::new(),
            bn_calibrate: false,
            auto_bits: None,
            candidate_bits: vec![2, 3, 4, 5, 6, 8],
            cascade_min_bits: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    #[serde(default)]
    layers: BTreeMap<String, LayerBits>,
}

pub fn check_bits(what: &str, b: u8) -> Result<u8> {
    if (2..=16).contains(&b) {
        Ok(b)
    } else {
        Err(PassError::Config(format!("{what} = {b}: bit widths must be in 2..=16")))
    }
}

impl QuantConfig {
    /// Reads per-layer overrides (the `[layers."name"]` tables) from TOML text.
    pub fn read_overrides(&mut self, toml_text: &str, file: &str) -> Result<()> {
        let f: OverrideFile =
            toml::from_str(toml_text).map_err(|e| PassError::Config(format!("{file}: {e}")))?;
        for (name, bits) in f.layers {
            if let Some(b) = bits.wbits {
                check_bits(&format!("{file}: layers.\"{name}\".wbits"), b)?;
            }
            if let Some(b) = bits.abits {
                check_bits(&format!("{file}: layers.\"{name}\".abits"), b)?;
            }
            self.layers.insert(name, bits);
        }
        Ok(())
    }

    /// The per-layer overrides as TOML (the format `read_overrides` takes).
    pub fn overrides_toml(&self) -> String {
        let mut s = String::new();
        for (name, b) in &self.layers {
            s.push_str(&format!("[layers.{name:?}]\n"));
            if let Some(w) = b.wbits {
                s.push_str(&format!("wbits = {w}\n"));
            }
            if let Some(a) = b.abits {
                s.push_str(&format!("abits = {a}\n"));
            }
            s.push('\n');
        }
        s
    }

    pub fn wbits_of(&self, node: &str) -> u8 {
        self.layers.get(node).and_then(|l| l.wbits).unwrap_or(self.wbits)
    }

    pub fn abits_of(&self, node: &str) -> u8 {
        self.layers.get(node).and_then(|l| l.abits).unwrap_or(self.abits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_roundtrip() {
        let mut c = QuantConfig::default();
        c.read_overrides("[layers.\"/c1/Conv\"]\nwbits = 4\nabits = 6\n", "o.toml").unwrap();
        assert_eq!(c.wbits_of("/c1/Conv"), 4);
        assert_eq!(c.abits_of("/c1/Conv"), 6);
        assert_eq!(c.wbits_of("other"), 8);
        let mut d = QuantConfig::default();
        d.read_overrides(&c.overrides_toml(), "o.toml").unwrap();
        assert_eq!(c, d);
    }

    #[test]
    fn bad_overrides_are_errors() {
        let mut c = QuantConfig::default();
        assert!(c.read_overrides("[layers.a]\nwbits = 1\n", "o.toml").is_err());
        assert!(c.read_overrides("[layers.a]\nbits = 4\n", "o.toml").is_err());
        assert!(c.read_overrides("not toml", "o.toml").is_err());
    }
}
