//! The quantization and mapping settings of a compilation as plain data, checked once.
//!
//! Three front ends set them: `cimc compile`/`cimc dump` (`cli/quant_args.rs`, from flags),
//! the Python package's `cimc.compile` (from keyword arguments) and a sweep file's `[compile]`
//! table (`sweep/point.rs`). Each builds a [`QuantSettings`] and calls
//! [`QuantSettings::context`], so all three accept and refuse the same values; only the names
//! in messages differ ([`Naming`]: `--calib-method` for flags and keywords, `calib_method` for
//! a sweep file's keys).

use crate::error::{Error, Result};
use crate::model::InputDecl;
use cimc_backends::target::{AdcRange, Target};
use cimc_interp::Tensor;
use cimc_ir::Graph;
use cimc_passes::config::{check_bits, parse_bit_list, Budget, CalibMethod, WeightMethod};
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use std::path::Path;

/// The most arrays `arrays` may ask for (`Chip::from_target` sizes tables by it).
const MAX_ARRAYS: usize = 1 << 24;

/// How a setting is named in messages: as a command-line flag (`--adc-range`, also the
/// Python package's wording, which mirrors the CLI) or as a sweep file's key (`adc_range`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Naming {
    #[default]
    Flag,
    Key,
}

impl Naming {
    /// The name of the setting whose key is `key` (snake_case).
    pub fn name(self, key: &str) -> String {
        match self {
            Naming::Flag => format!("--{}", key.replace('_', "-")),
            Naming::Key => key.to_string(),
        }
    }
}

/// Every setting of `cimc compile` that shapes the pass context; defaults are the CLI's.
#[derive(Clone, Debug)]
pub struct QuantSettings {
    pub wbits: u8,
    pub abits: u8,
    pub calib_method: String,
    pub weight_method: String,
    pub calib_samples: Option<usize>,
    pub act_signed: bool,
    pub bn_calibrate: bool,
    /// The budget of the mixed-precision pass; `Some` runs it (`--auto-bits --budget B`).
    pub budget: Option<String>,
    pub bits_candidates: String,
    /// The cascade's lowest width (`--cascade MIN`).
    pub cascade: Option<u8>,
    /// The array budget for replication (`--arrays`); needs a target.
    pub arrays: Option<usize>,
    /// Target overrides (`--adc-range`, `--adc-bits`, `--array-rows`).
    pub adc_range: Option<String>,
    pub adc_bits: Option<u32>,
    pub array_rows: Option<usize>,
    pub naming: Naming,
}

impl Default for QuantSettings {
    fn default() -> Self {
        QuantSettings {
            wbits: 8,
            abits: 8,
            calib_method: "minmax".into(),
            weight_method: "minmax".into(),
            calib_samples: None,
            act_signed: false,
            bn_calibrate: false,
            budget: None,
            bits_candidates: "2,3,4,5,6,8".into(),
            cascade: None,
            arrays: None,
            adc_range: None,
            adc_bits: None,
            array_rows: None,
            naming: Naming::Flag,
        }
    }
}

impl QuantSettings {
    /// `t` with the target overrides applied and, when any was given, validated again as a
    /// target file is (`origin` names where the overrides came from in that message).
    pub fn apply_target_overrides(&self, t: &mut Target, origin: &str) -> Result<()> {
        let mut changed = false;
        if let Some(r) = &self.adc_range {
            t.chip.adc_range = AdcRange::from_name(r).ok_or_else(|| {
                let name = self.naming.name("adc_range");
                Error::Usage(format!("{name} '{r}': expected {}", AdcRange::expected()))
            })?;
            changed = true;
        }
        if let Some(b) = self.adc_bits {
            t.chip.crossbar.adc_bits = b;
            changed = true;
        }
        if let Some(r) = self.array_rows {
            t.chip.crossbar.rows = r;
            changed = true;
        }
        if changed {
            t.validate(origin).map_err(|e| Error::Usage(e.to_string()))?;
        }
        Ok(())
    }

    /// The pass context for `graph`: every setting checked, the chip of `target` (already
    /// overridden), per-layer widths from `bits` (a TOML text and its name in messages) and
    /// calibration data checked against the graph's inputs (`calib` and the file, or the
    /// name, it came from).
    pub fn context(
        &self,
        graph: &Graph,
        target: Option<&Target>,
        bits: Option<(&str, &str)>,
        calib: Option<(Vec<Tensor>, &Path)>,
    ) -> Result<PassContext> {
        let name = |key: &str| self.naming.name(key);
        let mut cx = PassContext::default();
        let c = &mut cx.config;
        c.wbits = check_bits(&name("wbits"), self.wbits)?;
        c.abits = check_bits(&name("abits"), self.abits)?;
        c.calib_method = CalibMethod::parse(&self.calib_method)?;
        c.weight_method = WeightMethod::parse(&self.weight_method)?;
        c.calib_samples = self.calib_samples;
        c.act_signed = self.act_signed;
        c.bn_calibrate = self.bn_calibrate;
        c.candidate_bits = parse_bit_list(&self.bits_candidates)?;
        if let Some(b) = &self.budget {
            c.auto_bits = Some(Budget::parse(b)?);
        }
        if let Some(b) = self.cascade {
            c.cascade_min_bits = Some(check_bits(&name("cascade"), b)?);
        }
        if let Some(n) = self.arrays.filter(|&n| n > MAX_ARRAYS) {
            let arrays = name("arrays");
            return Err(Error::Usage(format!("{arrays} {n} is above the limit of {MAX_ARRAYS}")));
        }
        match target {
            Some(t) => cx.chip = Some(Chip::from_target(t, self.arrays)),
            None if self.arrays.is_some()
                || self.adc_range.is_some()
                || self.adc_bits.is_some() =>
            {
                return Err(Error::Usage(format!(
                    "{}, {} and {} need {}",
                    name("arrays"),
                    name("adc_range"),
                    name("adc_bits"),
                    name("target")
                )));
            }
            None => {}
        }
        if let Some((text, origin)) = bits {
            cx.config.read_overrides(text, origin)?;
        }
        if let Some((calib, file)) = calib {
            check_calibration(&calib, graph, file)?;
            cx.calib = Some(calib);
        }
        Ok(cx)
    }
}

/// The declarations of `graph`'s inputs, as calibration and run inputs are matched to them.
pub fn input_decls(graph: &Graph) -> Vec<InputDecl> {
    graph
        .inputs()
        .iter()
        .map(|&v| InputDecl {
            name: graph.value(v).name.clone(),
            dtype: graph.ty(v).dtype,
            shape: graph.ty(v).shape.clone(),
        })
        .collect()
}

/// Checks calibration arrays (one per input of `graph`, from `file`) as every front end must:
/// each of its input's type, either of the input's rank with any first dimension (samples
/// along it; a rank-0 input's array is one sample) or a stack of arrays of the input's shape;
/// every input as many samples; finite values (a NaN or an infinity would give every layer a
/// NaN or infinite range).
pub fn check_calibration(calib: &[Tensor], graph: &Graph, file: &Path) -> Result<()> {
    let inputs = input_decls(graph);
    if calib.len() != inputs.len() {
        return Err(Error::Usage(format!(
            "{}: the model has {} inputs ({}), {} calibration array(s) given",
            file.display(),
            inputs.len(),
            inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
            calib.len()
        )));
    }
    let npy_error = |msg: String| Error::Npy { file: file.to_path_buf(), msg };
    let mut samples = None;
    for (t, want) in calib.iter().zip(&inputs) {
        let (shape, w) = (t.shape(), &want.shape);
        let n = if shape.len() == w.len() && shape.get(1..) == w.get(1..) {
            Some(shape.first().copied().unwrap_or(1))
        } else if shape.len() == w.len() + 1 && shape[1..] == w[..] {
            Some(shape[0] * w.first().copied().unwrap_or(1))
        } else {
            None
        };
        let n = match n {
            Some(n) if t.dtype() == want.dtype => n,
            _ => {
                return Err(npy_error(format!(
                    "calibration data {}{:?} does not fit the input '{}' {}{:?} (an array of \
                     the input's rank, any first dimension, or a stack of arrays of its shape)",
                    t.dtype(),
                    t.shape(),
                    want.name,
                    want.dtype,
                    want.shape
                )))
            }
        };
        if samples.is_some_and(|s| s != n) {
            return Err(npy_error(format!(
                "input '{}' gets {n} samples, the first input {:?}",
                want.name, samples
            )));
        }
        samples = Some(n);
    }
    for t in calib {
        if let Some((i, v)) =
            t.as_f32().and_then(|a| a.iter().enumerate().find(|(_, v)| !v.is_finite()))
        {
            return Err(npy_error(format!(
                "calibration data must be finite: element {i} (in memory order) is {v}"
            )));
        }
    }
    Ok(())
}
