//! One entry point per file decoder, taking the file's bytes: what the fuzz targets in `fuzz/`
//! call, and what the replay test (`tests/tests/fuzz_replay.rs`) runs every seed and every
//! crash input through on stable `cargo test`.
//!
//! Every entry point must return (an error is a fine answer to garbage) and never panic, hang
//! or allocate beyond the bytes it was given times a small factor; [`TARGETS`] lists them by the
//! name of their fuzz target and corpus folder (`fuzz/corpus/<name>`,
//! `fuzz/regressions/<name>`). Adding a decoder is one function here, one line in [`TARGETS`]
//! and a three-line file in `fuzz/fuzz_targets/` (`docs/fuzzing.md`).
//!
//! The entry points read nothing but their bytes: the file name they give in messages lies in
//! a folder that does not exist, so an ONNX model's external data cannot reach real files.

use crate::onnx::{self, ImportLimits, ImportOptions};
use bytes::Bytes;
use std::path::Path;

/// A decoder's entry point: `Ok` with a one-line summary of what was read, or the error
/// message a user would see.
pub type Entry = fn(&[u8]) -> Result<String, String>;

/// Every fuzzed decoder, by fuzz target name.
pub const TARGETS: &[(&str, Entry)] = &[
    ("onnx_import", onnx_import),
    ("tensor_pb", tensor_pb),
    ("npy", npy),
    ("ir_text", ir_text),
    ("target_toml", target_toml),
    ("noise_toml", noise_toml),
    ("program", program),
    ("stream", stream),
    ("npz", npz),
    ("stream_text", stream_text),
];

/// The entry point of a target by name.
pub fn entry(name: &str) -> Option<Entry> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|&(_, e)| e)
}

/// The folder the fuzzed files pretend to live in (it does not exist).
const FAKE_DIR: &str = "/nonexistent-cimc-fuzz";

/// Caps for fuzzing: the defaults, but tensors limited to 64 MiB so that a run under
/// `-rss_limit_mb=2048` tells a real unbounded allocation from a legal large one.
pub fn fuzz_limits() -> ImportLimits {
    ImportLimits { max_tensor_bytes: 64 << 20, ..ImportLimits::default() }
}

/// ONNX import: bytes → IR graph (verified) or error.
pub fn onnx_import(data: &[u8]) -> Result<String, String> {
    let file = Path::new(FAKE_DIR).join("model.onnx");
    let opts = ImportOptions { limits: fuzz_limits(), ..ImportOptions::default() };
    let g = onnx::import_bytes(Bytes::copy_from_slice(data), &file, &opts)
        .map_err(|e| e.to_string())?;
    crate::model::verify(&g, &file).map_err(|e| e.to_string())?;
    Ok(format!("{} nodes", g.nodes().count()))
}

/// A `TensorProto` file (`.pb` of the ONNX test cases).
pub fn tensor_pb(data: &[u8]) -> Result<String, String> {
    let file = Path::new(FAKE_DIR).join("input_0.pb");
    let (name, t) = onnx::read_tensor_pb_bytes(Bytes::copy_from_slice(data), &file, fuzz_limits())
        .map_err(|e| e.to_string())?;
    Ok(format!("'{name}': {}{:?}", t.dtype(), t.shape()))
}

/// A `.npy` array.
pub fn npy(data: &[u8]) -> Result<String, String> {
    let t = crate::npy::parse(Bytes::copy_from_slice(data))?;
    Ok(format!("{}{:?}", t.dtype(), t.shape()))
}

/// The text IR, with its data file after the first NUL byte when there is one (text IR never
/// holds a NUL), parsed and verified as `cimc` reads a `.cir` file.
pub fn ir_text(data: &[u8]) -> Result<String, String> {
    let (text, side) = match data.iter().position(|&b| b == 0) {
        Some(p) => (&data[..p], Some(&data[p + 1..])),
        None => (data, None),
    };
    let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let g = cimc_ir::parse_with_data(text, side).map_err(|e| e.to_string())?;
    let file = Path::new(FAKE_DIR).join("graph.cir");
    crate::model::verify(&g, &file).map_err(|e| e.to_string())?;
    // A graph that verifies prints; printing is what `cimc dump` does next.
    let printed = g.to_string();
    Ok(format!("{} nodes, {} bytes of text", g.nodes().count(), printed.len()))
}

/// A target description (TOML), parsed and validated.
pub fn target_toml(data: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let origin = format!("{FAKE_DIR}/target.toml");
    let t =
        cimc_backends::target::Target::from_toml_str(text, &origin).map_err(|e| e.to_string())?;
    Ok(t.summary())
}

/// A noise file (TOML with a `[noise]` table, `docs/noise.md`), parsed and validated.
pub fn noise_toml(data: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let origin = format!("{FAKE_DIR}/noise.toml");
    let n =
        cimc_backends::noise::NoiseSpec::from_toml_str(text, &origin).map_err(|e| e.to_string())?;
    Ok(if n.is_off() { "noise off".into() } else { "noise on".into() })
}

/// A program file (`.cimp`), decoded and prepared for execution as `cimc run` does.
pub fn program(data: &[u8]) -> Result<String, String> {
    let p = cimc_backends::program::Program::from_bytes(data).map_err(|e| e.to_string())?;
    let runner = cimc_sim::ProgramRunner::new(&p).map_err(|e| e.to_string())?;
    Ok(format!("{} steps", runner.program().steps.len()))
}

/// An instruction stream file (`.cims`), decoded and validated; a valid stream also goes
/// through its text form and back (`cimc disasm` / `cimc asm`).
pub fn stream(data: &[u8]) -> Result<String, String> {
    use cimc_backends::stream::{text, Stream};
    let s = Stream::from_bytes(data).map_err(|e| e.to_string())?;
    let t = text::print(&s);
    // The text form of a valid stream parses back: a failure is a bug for the fuzzer to report,
    // so it panics rather than returning an input error.
    let back = text::parse(&t)
        .unwrap_or_else(|e| panic!("invariant: the printed stream does not parse: {e}"));
    Ok(format!(
        "{} cores, {} instructions, text {} bytes",
        back.cores.len(),
        back.instructions(),
        t.len()
    ))
}

/// A `.npz` archive (the arrays of `cimc run --input x.npz`, calibration and eval data).
pub fn npz(data: &[u8]) -> Result<String, String> {
    let arrays = crate::npy::parse_npz(Bytes::copy_from_slice(data))?;
    Ok(format!("{} arrays", arrays.len()))
}

/// A stream's text form (`cimc asm`), parsed and validated; a stream that reads prints back to
/// the same text's stream.
pub fn stream_text(data: &[u8]) -> Result<String, String> {
    use cimc_backends::stream::text;
    let source = std::str::from_utf8(data).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let s = text::parse(source).map_err(|e| e.to_string())?;
    let back = text::parse(&text::print(&s))
        .unwrap_or_else(|e| panic!("invariant: the printed stream does not parse: {e}"));
    Ok(format!("{} cores, {} instructions", back.cores.len(), back.instructions()))
}
