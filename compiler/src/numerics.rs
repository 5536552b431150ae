//! The arithmetic a model is evaluated with when it is not the default: reduced float formats
//! for a float model (`--format`, [`cimc_interp::format::Precision`]) or an approximate 8×8
//! multiplier for a program's digital MACs (`--multiplier`,
//! [`cimc_sim::program::multiplier::Multiplier`]); `docs/approximate.md`.
//!
//! Kept out of `cli/eval.rs` so the command only gains two flags.

use crate::error::{Error, Result};
use crate::model::{Model, Prepared};
use cimc_interp::format::Precision;
use cimc_interp::Runner;
use cimc_sim::program::multiplier::Multiplier;
use cimc_sim::program::{ProgramRunner, WeightWidths};

/// What `--format` and `--multiplier` asked for.
#[derive(Clone, Debug, Default)]
pub struct Numerics {
    pub precision: Option<Precision>,
    pub multiplier: Option<Multiplier>,
}

impl Numerics {
    /// Parses the two flags' values (a table file is read here).
    pub fn parse(format: Option<&str>, multiplier: Option<&str>) -> Result<Numerics> {
        let precision =
            format.map(|f| Precision::parse(f).map_err(|e| Error::Usage(format!("--format: {e}"))));
        let multiplier = multiplier
            .map(|m| Multiplier::parse(m).map_err(|e| Error::Usage(format!("--multiplier: {e}"))));
        Ok(Numerics { precision: precision.transpose()?, multiplier: multiplier.transpose()? })
    }

    pub fn is_default(&self) -> bool {
        self.precision.is_none() && self.multiplier.is_none()
    }

    /// The JSON fields of a report (`format`, `multiplier`), only those given.
    pub fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if let Some(p) = &self.precision {
            m.insert("format".into(), p.to_string().into());
        }
        if let Some(x) = &self.multiplier {
            m.insert("multiplier".into(), x.name().into());
        }
        m
    }

    /// `model` ready to run with these numerics (and the cascade's weight widths, which do not
    /// combine with them), at `batch` samples per run where the model allows it.
    pub fn prepare(
        &self,
        model: &Model,
        batch: usize,
        widths: Option<&WeightWidths>,
    ) -> Result<Prepared> {
        if self.is_default() {
            return model.prepare_at(batch, widths);
        }
        let path = model.path().display();
        if widths.is_some() {
            return Err(Error::Usage(
                "--cascade-wbits/--cascade-bits do not combine with --format or --multiplier"
                    .into(),
            ));
        }
        match model {
            Model::Program { program, .. } => {
                if self.precision.is_some() {
                    return Err(Error::Usage(format!(
                        "{path}: --format sets the float formats of a float model (.onnx, .cir); \
                         a compiled program computes in integers (see --multiplier)"
                    )));
                }
                let mul = self.multiplier.as_ref().expect("invariant: one of the two is set");
                crate::limits::check_program_run(model.path(), program)?;
                let runner = ProgramRunner::with_multiplier(program, mul)?;
                let mut p = Prepared::from_program(program)?;
                p.exe = crate::model::Executable::Program(runner);
                Ok(p)
            }
            _ => {
                if self.multiplier.is_some() {
                    return Err(Error::Usage(format!(
                        "{path}: --multiplier sets the 8x8 multiplier of a compiled program's \
                         digital MACs (.cimp); a float model takes --format"
                    )));
                }
                let precision = self.precision.expect("invariant: one of the two is set");
                let g = model.graph_at(batch)?;
                crate::limits::check_graph_run(model.path(), &g)?;
                let mut p = Prepared::from_graph(&g)?;
                p.exe = crate::model::Executable::Graph(Runner::with_precision(&g, precision)?);
                Ok(p)
            }
        }
    }
}
