//! `cimc dump MODEL [-o out.cir]`: the IR as text.

use super::ImportArgs;
use cimc::model::{self, Model};
use cimc::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// An ONNX model or a text IR file (.cir).
    model: PathBuf,
    /// Write the text IR here (and large constants to OUT.data) instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    import: ImportArgs,
}

pub fn run(a: DumpArgs) -> Result<()> {
    let m = Model::open(&a.model, a.import.options()?)?;
    let g = m.graph()?;
    match &a.output {
        Some(out) => model::write_ir(&g, out),
        None => {
            print!("{g}");
            Ok(())
        }
    }
}
