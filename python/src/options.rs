//! The options of `cimc.compile`: the same settings, checks and messages as the command line's
//! `QuantArgs` and `ImportArgs` (`compiler/src/cli/quant_args.rs`, `compiler/src/cli/mod.rs`),
//! with calibration data as arrays instead of a `.npy` file and a target, bit widths or noise
//! given as TOML text (the Python layer turns a dict into TOML).

use cimc::onnx::ImportOptions;
use cimc::quant_settings::QuantSettings;
use cimc::{Error, Result};
use cimc_backends::target::Target;
use cimc_interp::Tensor;
use cimc_ir::Graph;
use cimc_passes::PassContext;
use std::path::Path;

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

/// The settings of `cimc.compile`: the library's [`QuantSettings`] (the CLI's checks and
/// messages), the target as a name or TOML text and the per-layer widths as TOML text.
pub(crate) struct QuantOptions {
    pub settings: QuantSettings,
    /// The TOML of `--bits` and a name for it in messages.
    pub bits: Option<(String, String)>,
    pub target: Option<TargetSource>,
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
        self.settings.apply_target_overrides(&mut t, "the command line")?;
        Ok(Some(t))
    }

    /// The pass context for `graph` (`QuantArgs::context`), with `calib` checked against the
    /// graph's inputs.
    pub(crate) fn context(&self, graph: &Graph, calib: Option<Vec<Tensor>>) -> Result<PassContext> {
        let target = self.target()?;
        let bits = self.bits.as_ref().map(|(t, o)| (t.as_str(), o.as_str()));
        let calib_name = Path::new("<calib>");
        self.settings.context(graph, target.as_ref(), bits, calib.map(|c| (c, calib_name)))
    }
}
