//! `cimc asm` and `cimc disasm`: the text form of an instruction stream (.cims), both ways.

use cimc::output::Outputs;
use cimc::{Error, Result};
use cimc_backends::stream::{text, Stream};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct AsmArgs {
    /// A stream in text form (as `cimc disasm` prints it).
    input: PathBuf,
    /// The stream file to write (.cims).
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Args, Debug)]
pub struct DisasmArgs {
    /// A stream file (.cims).
    input: PathBuf,
    /// Write the text here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Reads and validates a `.cims` file; every problem names the file.
pub fn read_stream(path: &Path) -> Result<Stream> {
    let bytes = cimc_ir::files::read_regular(path, u64::MAX).map_err(|e| Error::io(path, e))?;
    Stream::from_bytes(&bytes)
        .map_err(|e| Error::Program { file: path.to_path_buf(), msg: e.to_string() })
}

pub fn asm(a: AsmArgs) -> Result<()> {
    let mut outs = Outputs::new([a.input.as_path()], [a.output.as_path()])?;
    let t = cimc_ir::files::read_text(&a.input).map_err(|e| Error::io(&a.input, e))?;
    let s = text::parse(&t)
        .map_err(|e| Error::Program { file: a.input.clone(), msg: e.to_string() })?;
    outs.write_with(&a.output, |w| s.write_to(w))?;
    outs.commit()?;
    println!("{}: {} cores, {} instructions", a.output.display(), s.cores.len(), s.instructions());
    Ok(())
}

pub fn disasm(a: DisasmArgs) -> Result<()> {
    let mut outs = Outputs::new([a.input.as_path()], a.output.iter().map(PathBuf::as_path))?;
    let s = read_stream(&a.input)?;
    let t = text::print(&s);
    match &a.output {
        Some(p) => {
            outs.write(p, t)?;
            outs.commit()
        }
        None => {
            use std::io::Write;
            // A closed pipe (`| head`) is not an error worth a message.
            let _ = std::io::stdout().lock().write_all(t.as_bytes());
            Ok(())
        }
    }
}
