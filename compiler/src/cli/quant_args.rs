//! Quantization settings on the command line (shared by `compile` and `dump`).

use cimc::quant_settings::{input_decls, Naming, QuantSettings};
use cimc::{Error, Result};
use cimc_backends::target::Target;
use cimc_interp::Tensor;
use cimc_ir::Graph;
use cimc_passes::PassContext;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct QuantArgs {
    /// Calibration inputs, for models without quantization parameters: a .npy for a model of
    /// one input, a .npz of one array per input (keyed by input name, or `arr_0`... in input
    /// order). An array of the input's rank holds samples along its first axis (`[N, ...]`, cut
    /// into the model's batch); a rank-0 input's array is one sample; an array with one more
    /// axis than the input is a stack of samples of the input's shape. Integer inputs (token
    /// ids) take integer data of their type, fed unchanged.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Use only the first N calibration samples.
    #[arg(long = "calib-samples")]
    calib_samples: Option<usize>,
    /// Weight bits (2..16).
    #[arg(long, default_value_t = 8)]
    wbits: u8,
    /// Activation bits (2..16).
    #[arg(long, default_value_t = 8)]
    abits: u8,
    /// Activation ranges: minmax, percentile (99.99), percentile=P, mse.
    #[arg(long = "calib-method", default_value = "minmax")]
    calib_method: String,
    /// Weight scales: minmax, mse.
    #[arg(long = "weight-method", default_value = "minmax")]
    weight_method: String,
    /// Per-layer bit widths by node name (TOML: `[layers."name"] wbits = 4, abits = 6`).
    #[arg(long = "bits")]
    bits_file: Option<PathBuf>,
    /// Signed symmetric codes for activations that can be negative (default: unsigned with a
    /// zero point).
    #[arg(long = "act-signed")]
    act_signed: bool,
    /// The chip to map onto: a preset (isaac, puma, edge) or a target file (.toml). Runs the
    /// `tile` and `adc-calibrate` passes.
    #[arg(long)]
    pub target: Option<String>,
    /// Array budget: layers that bound throughput are replicated into the arrays left spare.
    #[arg(long)]
    arrays: Option<usize>,
    /// ADC ranges: worst (never clips) or calib (a percentile of the calibration partial
    /// sums); overrides the target's `adc.range`.
    #[arg(long = "adc-range")]
    adc_range: Option<String>,
    /// Override the target's ADC resolution (bits, 1..16).
    #[arg(long = "adc-bits")]
    adc_bits: Option<u32>,
    /// Override the target's array rows.
    #[arg(long = "array-rows")]
    array_rows: Option<usize>,
    /// Re-estimate every layer's per-channel scale and bias on the calibration data so that the
    /// program's outputs have the float model's mean and variance (the `bn-calibrate` pass).
    #[arg(long = "bn-calibrate")]
    bn_calibrate: bool,
    /// Choose per-layer bit widths under `--budget` (the `mixed-precision` pass).
    #[arg(long = "auto-bits", requires = "budget")]
    auto_bits: bool,
    /// The budget of `--auto-bits`: arrays=N, weight-bits=X (average) or energy=E (pJ).
    #[arg(long)]
    budget: Option<String>,
    /// The widths `--auto-bits` chooses from.
    #[arg(long = "bits-candidates", default_value = "2,3,4,5,6,8")]
    bits_candidates: String,
    /// Choose the weights' scales so that every lower width derived from them by the cascade
    /// (down to MIN bits) stays accurate; the program then runs at any of those widths
    /// (`cimc run/eval --cascade-wbits`).
    #[arg(long, value_name = "MIN", num_args = 0..=1, default_missing_value = "2")]
    cascade: Option<u8>,
}

impl QuantArgs {
    /// The settings as the library checks them (`cimc::quant_settings`).
    fn settings(&self) -> Result<QuantSettings> {
        let budget = match (self.auto_bits, &self.budget) {
            (true, b) => Some(b.clone().unwrap_or_default()),
            (false, Some(_)) => {
                return Err(Error::Usage("--budget is the budget of --auto-bits".into()))
            }
            (false, None) => None,
        };
        Ok(QuantSettings {
            wbits: self.wbits,
            abits: self.abits,
            calib_method: self.calib_method.clone(),
            weight_method: self.weight_method.clone(),
            calib_samples: self.calib_samples,
            act_signed: self.act_signed,
            bn_calibrate: self.bn_calibrate,
            budget,
            bits_candidates: self.bits_candidates.clone(),
            cascade: self.cascade,
            arrays: self.arrays,
            adc_range: self.adc_range.clone(),
            adc_bits: self.adc_bits,
            array_rows: self.array_rows,
            naming: Naming::Flag,
        })
    }

    /// The target named by `--target`, with the command line's overrides, validated again.
    pub fn target(&self) -> Result<Option<Target>> {
        let Some(name) = &self.target else { return Ok(None) };
        let mut t = Target::resolve(name).map_err(|e| Error::Usage(e.to_string()))?;
        self.settings()?.apply_target_overrides(&mut t, "the command line")?;
        Ok(Some(t))
    }

    /// The files these options read (the calibration data, the bit widths, a target file), for
    /// the check that no output overwrites an input.
    pub fn input_paths(&self) -> Vec<&std::path::Path> {
        let target = self.target.as_deref().map(std::path::Path::new);
        [self.calib.as_deref(), self.bits_file.as_deref(), target].into_iter().flatten().collect()
    }

    /// The pass context for `graph`: settings, calibration data (checked against the graph's
    /// inputs), and a progress bar unless `quiet`.
    pub fn context(&self, graph: &Graph, quiet: bool) -> Result<PassContext> {
        let settings = self.settings()?;
        let target = self.target()?;
        let bits = match &self.bits_file {
            Some(f) => {
                let text = cimc_ir::files::read_text(f).map_err(|e| Error::io(f, e))?;
                Some((text, f.display().to_string()))
            }
            None => None,
        };
        let calib = match &self.calib {
            Some(p) => Some((calibration_arrays(p, graph)?, p.as_path())),
            None => None,
        };
        let mut cx = settings.context(
            graph,
            target.as_ref(),
            bits.as_ref().map(|(t, o)| (t.as_str(), o.as_str())),
            calib,
        )?;
        if cx.calib.is_some() && !quiet {
            let pb = super::progress(0, false);
            pb.set_message("calibrating");
            cx.progress = Some(Box::new(move |done, total| {
                pb.set_length(total);
                pb.set_position(done);
                if done >= total {
                    pb.finish_and_clear();
                }
            }));
        }
        Ok(cx)
    }
}

/// The calibration arrays of `--calib` for `graph`'s inputs: a `.npy` for a model of one input,
/// a `.npz` of one array per input (by name, or `arr_0`... in input order). Their shapes are
/// checked by the library (`cimc::quant_settings::check_calibration`).
fn calibration_arrays(p: &std::path::Path, graph: &Graph) -> Result<Vec<Tensor>> {
    let inputs = input_decls(graph);
    let files = [p.to_path_buf()];
    let arrays = cimc::model::read_arrays(&files)?;
    if arrays.len() == 1 && inputs.len() > 1 {
        return Err(Error::Usage(format!(
            "--calib {}: the model has {} inputs ({}); give a .npz with one array per input, \
             keyed by input name",
            p.display(),
            inputs.len(),
            inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    cimc::model::match_inputs(arrays, &files, &inputs)
}
