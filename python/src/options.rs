//! The options of `cimc.compile`: the same settings, checks and messages as the command line's
//! `QuantArgs` and `ImportArgs` (`compiler/src/cli/quant_args.rs`, `compiler/src/cli/mod.rs`),
//! with calibration data as arrays instead of a `.npy` file and a target, bit widths or noise
//! given as TOML text (the Python layer turns a dict into TOML).

use cimc::model::InputDecl;
use cimc::onnx::ImportOptions;
use cimc::{Error, Result};
use cimc_backends::target::Target;
use cimc_interp::Tensor;
use cimc_ir::Graph;
use cimc_passes::config::{check_bits, CalibMethod, WeightMethod};
use cimc_passes::PassContext;
use std::path::PathBuf;

/// `--batch` and `--input-shape`, as `ImportArgs::options` checks them.
pub(crate) fn import_options(
    batch: Option<usize>,
    input_shapes: Vec<(String, Vec<usize>)>,
) -> Result<ImportOptions> {
    if batch == Some(0) {
        return Err(Error::Usage("--batch 0: a batch holds at least one sample".into()));
    }
    for (name, dims) in &input_shapes {
        if dims.contains(&0) {
            let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
            return Err(Error::Usage(format!(
                "--input-shape '{name}={}': every dimension must be at least 1",
                dims.join(",")
            )));
        }
    }
    Ok(ImportOptions { batch, input_shapes, ..ImportOptions::default() })
}

/// A target: a preset name or a file (`--target`), or a target file's text (a dict in Python).
pub(crate) enum TargetSource {
    Named(String),
    Toml(String),
}

/// The quantization and mapping settings of `cimc compile` (`QuantArgs`).
pub(crate) struct QuantOptions {
    pub wbits: u8,
    pub abits: u8,
    pub calib_method: String,
    pub weight_method: String,
    pub calib_samples: Option<usize>,
    /// The TOML of `--bits` and a name for it in messages.
    pub bits: Option<(String, String)>,
    pub act_signed: bool,
    pub target: Option<TargetSource>,
    pub arrays: Option<usize>,
    pub adc_range: Option<String>,
    pub adc_bits: Option<u32>,
    pub array_rows: Option<usize>,
    pub bn_calibrate: bool,
    pub budget: Option<String>,
    pub bits_candidates: String,
    pub cascade: Option<u8>,
}

impl QuantOptions {
    /// The target with the overrides, validated again (`QuantArgs::target`).
    pub(crate) fn target(&self) -> Result<Option<Target>> {
        let mut t = match &self.target {
            None => return Ok(None),
            Some(TargetSource::Named(n)) => Target::resolve(n),
            Some(TargetSource::Toml(text)) => Target::from_toml_str(text, "target"),
        }
        .map_err(|e| Error::Usage(e.to_string()))?;
        cimc::compile::apply_target_overrides(
            &mut t,
            self.adc_range.as_deref(),
            self.adc_bits,
            self.array_rows,
        )?;
        Ok(Some(t))
    }

    /// The pass context for `graph` (`QuantArgs::context`), with `calib` checked against the
    /// graph's inputs.
    pub(crate) fn context(&self, graph: &Graph, calib: Option<Vec<Tensor>>) -> Result<PassContext> {
        let mut cx = PassContext::default();
        let c = &mut cx.config;
        c.wbits = check_bits("--wbits", self.wbits)?;
        c.abits = check_bits("--abits", self.abits)?;
        c.calib_method = CalibMethod::parse(&self.calib_method)?;
        c.weight_method = WeightMethod::parse(&self.weight_method)?;
        c.calib_samples = self.calib_samples;
        c.act_signed = self.act_signed;
        c.bn_calibrate = self.bn_calibrate;
        c.candidate_bits = cimc_passes::config::parse_bit_list(&self.bits_candidates)?;
        if let Some(b) = &self.budget {
            c.auto_bits = Some(cimc_passes::config::Budget::parse(b)?);
        }
        if let Some(b) = self.cascade {
            c.cascade_min_bits = Some(check_bits("--cascade", b)?);
        }
        if let Some(n) = self.arrays {
            if n > 1 << 24 {
                return Err(Error::Usage(format!(
                    "--arrays {n} is above the limit of {}",
                    1 << 24
                )));
            }
        }
        if let Some(t) = self.target()? {
            cx.chip = Some(cimc_passes::tile::Chip::from_target(&t, self.arrays));
        } else if self.arrays.is_some() || self.adc_range.is_some() || self.adc_bits.is_some() {
            return Err(Error::Usage("--arrays, --adc-range and --adc-bits need --target".into()));
        }
        if let Some((text, origin)) = &self.bits {
            c.read_overrides(text, origin)?;
        }
        if let Some(calib) = calib {
            check_calibration(&calib, graph)?;
            cx.calib = Some(calib);
        }
        Ok(cx)
    }
}

/// The name calibration data go by in messages (the CLI names the `--calib` file).
fn calib_name() -> PathBuf {
    PathBuf::from("<calib>")
}

/// Checks calibration arrays against `graph`'s inputs as `calibration_arrays` does for a
/// `--calib` file: one array per input, each of the input's rank with any first dimension or a
/// stack of arrays of its shape, every input as many samples, finite values.
fn check_calibration(calib: &[Tensor], graph: &Graph) -> Result<()> {
    let inputs: Vec<InputDecl> = graph
        .inputs()
        .iter()
        .map(|&v| InputDecl {
            name: graph.value(v).name.clone(),
            dtype: graph.ty(v).dtype,
            shape: graph.ty(v).shape.clone(),
        })
        .collect();
    if calib.len() != inputs.len() {
        return Err(Error::Usage(format!(
            "--calib: the model has {} inputs ({}), {} calibration array(s) given",
            inputs.len(),
            inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "),
            calib.len()
        )));
    }
    let mut samples = None;
    for (t, want) in calib.iter().zip(&inputs) {
        let (shape, w) = (t.shape(), &want.shape);
        let n = if shape.len() == w.len() && shape.get(1..) == w.get(1..) {
            shape.first().copied().unwrap_or(1)
        } else if shape.len() == w.len() + 1 && shape[1..] == w[..] {
            shape[0] * w.first().copied().unwrap_or(1)
        } else {
            usize::MAX
        };
        if t.dtype() != want.dtype || n == usize::MAX {
            return Err(Error::Npy {
                file: calib_name(),
                msg: format!(
                    "calibration data {}{:?} does not fit the input '{}' {}{:?} (an array of \
                     the input's rank, any first dimension, or a stack of arrays of its shape)",
                    t.dtype(),
                    t.shape(),
                    want.name,
                    want.dtype,
                    want.shape
                ),
            });
        }
        if samples.is_some_and(|s| s != n) {
            return Err(Error::Npy {
                file: calib_name(),
                msg: format!(
                    "input '{}' gets {n} samples, the first input {:?}",
                    want.name, samples
                ),
            });
        }
        samples = Some(n);
        if let Some(a) = t.as_f32() {
            if let Some((i, v)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(Error::Npy {
                    file: calib_name(),
                    msg: format!(
                        "calibration data must be finite: element {i} (in memory order) is {v}"
                    ),
                });
            }
        }
    }
    Ok(())
}
