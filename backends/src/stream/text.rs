//! The text form of a stream (`cimc disasm` prints it, `cimc asm` reads it back):
//! directives for everything that is not code, then each core's instructions in the text
//! assembly of [`crate::isa::asm`].
//!
//! ```text
//! ; cimc instruction stream, format 2
//! .stream "resnet18"
//! .target "isaac hash=… 128x128 arrays, …"
//! .target-description {"name":"isaac", …}  ; the whole target (JSON of its TOML keys)
//! .schedule pipelined
//! .arrays 16128
//! .global 1234567
//! .layer "conv /conv1/Conv"          ; one per layer, in order
//! .input {"name":"input", …}         ; JSON of the entry
//! .output {…}
//! .group {…}                         ; also .window .requant .add .perm .host .digital
//! .core 0 scratch=4096
//! .at 0                              ; from here the core works for layer 0
//! load dst=0 src=0 len=150528 elem_bytes=1
//! halt
//! ```
//!
//! Table entries are one line of JSON each (the group entries hold their weights, so the text of
//! a large model is large). `;` starts a comment. Reading the text back gives the same stream:
//! `parse(print(s)) == s`, and so the same bytes. Errors name the line.

use super::{Core, Schedule, Stream};
use crate::error::{BackendError, Result};
use crate::isa::asm;
use crate::target::{Target, TargetRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Write;

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("invariant: stream tables always serialize to JSON")
}

/// The text form of `s`.
pub fn print(s: &Stream) -> String {
    let mut o = String::new();
    // The version the binary form of this stream has (2 without digital entries).
    let version = if s.digital.is_empty() { 2 } else { super::FORMAT_VERSION };
    let _ = writeln!(o, "; cimc instruction stream, format {version}");
    let _ = writeln!(o, ".stream {}", json(&s.name));
    if let Some(t) = &s.target {
        let _ = writeln!(o, ".target {}", json(&t.stamp_line()));
        if let Some(full) = t.target() {
            let _ = writeln!(o, ".target-description {}", json(full));
        }
    }
    let _ = writeln!(o, ".schedule {}", s.schedule.name());
    let _ = writeln!(o, ".arrays {}", s.arrays);
    let _ = writeln!(o, ".global {}", s.global_words);
    for l in &s.layers {
        let _ = writeln!(o, ".layer {}", json(l));
    }
    for i in &s.inputs {
        let _ = writeln!(o, ".input {}", json(i));
    }
    for i in &s.outputs {
        let _ = writeln!(o, ".output {}", json(i));
    }
    for (k, g) in s.groups.iter().enumerate() {
        let _ = writeln!(o, ".group {} ; group {k}", json(g));
    }
    for (k, w) in s.windows.iter().enumerate() {
        let _ = writeln!(o, ".window {} ; window {k}", json(w));
    }
    for (k, r) in s.requants.iter().enumerate() {
        let _ = writeln!(o, ".requant {} ; requant {k}", json(r));
    }
    for (k, a) in s.adds.iter().enumerate() {
        let _ = writeln!(o, ".add {} ; add {k}", json(a));
    }
    for (k, p) in s.perms.iter().enumerate() {
        let _ = writeln!(o, ".perm {} ; perm {k}", json(p));
    }
    for (k, h) in s.hosts.iter().enumerate() {
        let _ = writeln!(o, ".host {} ; host {k}", json(h));
    }
    for (k, d) in s.digital.iter().enumerate() {
        let _ = writeln!(o, ".digital {} ; digital {k}", json(d));
    }
    for (ci, c) in s.cores.iter().enumerate() {
        let _ = writeln!(o, "\n.core {ci} scratch={}", c.scratch_words);
        let mut marks = c.marks.iter().peekable();
        for (i, instr) in c.code.iter().enumerate() {
            while let Some(&&(at, layer)) = marks.peek() {
                if at as usize != i {
                    break;
                }
                let name = s.layers.get(layer as usize).map_or("", |n| n.as_str());
                // A comment ends at the line's end: a name from a model may hold a newline
                // (and characters a terminal would act on), shown escaped.
                let _ = writeln!(o, ".at {layer} ; {}", escape_controls(name));
                marks.next();
            }
            let _ = writeln!(o, "{}", asm::print(instr));
        }
    }
    o
}

/// `name` with its control characters escaped (`\u{a}`), so it stays on one line.
fn escape_controls(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() })
        .collect()
}

/// The code of a line: without its comment (outside JSON strings) and surrounding blanks.
fn code_of(line: &str) -> &str {
    let mut in_str = false;
    let mut escaped = false;
    for (i, ch) in line.char_indices() {
        match ch {
            '\\' if in_str => escaped = !escaped,
            '"' if !escaped => in_str = !in_str,
            ';' if !in_str => return line[..i].trim(),
            _ => escaped = false,
        }
        if ch != '\\' {
            escaped = false;
        }
    }
    line.trim()
}

/// Reads the text form back (then validates the stream, as reading the binary form does).
pub fn parse(text: &str) -> Result<Stream> {
    let mut s = Stream {
        name: String::new(),
        target: None,
        schedule: Schedule::Pipelined,
        arrays: 0,
        global_words: 0,
        inputs: vec![],
        outputs: vec![],
        layers: vec![],
        cores: vec![],
        groups: vec![],
        windows: vec![],
        requants: vec![],
        adds: vec![],
        perms: vec![],
        hosts: vec![],
        digital: vec![],
    };
    let mut seen_stream = false;
    // `.target` (the stamp line) and `.target-description` (the whole target), checked against
    // each other at the end.
    let mut stamp: Option<(usize, String)> = None;
    let mut description: Option<Target> = None;
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let code = code_of(line);
        if code.is_empty() {
            continue;
        }
        let err = |m: String| BackendError::Format(format!("line {line_no}: {m}"));
        if let Some(d) = code.strip_prefix('.') {
            let (name, rest) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
            let rest = rest.trim();
            fn from_json<T: DeserializeOwned>(
                rest: &str,
                what: &str,
            ) -> std::result::Result<T, String> {
                serde_json::from_str(rest).map_err(|e| format!("malformed .{what}: {e}"))
            }
            let num = |what: &str| -> Result<u32> {
                rest.parse::<u32>()
                    .map_err(|_| err(format!(".{what} takes a number, found `{rest}`")))
            };
            match name {
                "stream" => {
                    s.name = from_json(rest, "stream").map_err(err)?;
                    seen_stream = true;
                }
                "target" => stamp = Some((line_no, from_json(rest, "target").map_err(err)?)),
                "target-description" => {
                    let t: Target = from_json(rest, "target-description").map_err(err)?;
                    t.validate(&format!("line {line_no}: .target-description"))?;
                    description = Some(t);
                }
                "schedule" => {
                    s.schedule = match rest {
                        "pipelined" => Schedule::Pipelined,
                        "layer-serial" => Schedule::LayerSerial,
                        o => {
                            return Err(err(format!(
                                "unknown schedule `{o}` (pipelined, layer-serial)"
                            )))
                        }
                    }
                }
                "arrays" => s.arrays = num("arrays")?,
                "global" => s.global_words = num("global")?,
                "layer" => s.layers.push(from_json(rest, "layer").map_err(err)?),
                "input" => s.inputs.push(from_json(rest, "input").map_err(err)?),
                "output" => s.outputs.push(from_json(rest, "output").map_err(err)?),
                "group" => s.groups.push(from_json(rest, "group").map_err(err)?),
                "window" => s.windows.push(from_json(rest, "window").map_err(err)?),
                "requant" => s.requants.push(from_json(rest, "requant").map_err(err)?),
                "add" => s.adds.push(from_json(rest, "add").map_err(err)?),
                "perm" => s.perms.push(from_json(rest, "perm").map_err(err)?),
                "host" => s.hosts.push(from_json(rest, "host").map_err(err)?),
                "digital" => s.digital.push(from_json(rest, "digital").map_err(err)?),
                "core" => {
                    let mut it = rest.split_whitespace();
                    let idx = it.next().and_then(|v| v.parse::<usize>().ok());
                    let scratch = it
                        .next()
                        .and_then(|v| v.strip_prefix("scratch="))
                        .and_then(|v| v.parse::<u32>().ok());
                    match (idx, scratch, it.next()) {
                        (Some(i), Some(w), None) if i == s.cores.len() => {
                            s.cores.push(Core { scratch_words: w, code: vec![], marks: vec![] })
                        }
                        (Some(i), Some(_), None) => {
                            return Err(err(format!(
                                ".core {i}: cores are numbered 0, 1, … in order; expected {}",
                                s.cores.len()
                            )))
                        }
                        _ => {
                            return Err(err(format!(
                                "expected `.core N scratch=WORDS`, found `.core {rest}`"
                            )))
                        }
                    }
                }
                "at" => {
                    let layer = num("at")?;
                    let c = s.cores.last_mut().ok_or_else(|| err(".at before any .core".into()))?;
                    c.marks.push((c.code.len() as u32, layer));
                }
                o => return Err(err(format!("unknown directive `.{o}`"))),
            }
            continue;
        }
        let instr = asm::parse_line(line, line_no)?;
        let c = s
            .cores
            .last_mut()
            .ok_or_else(|| err("an instruction before any `.core` directive".into()))?;
        c.code.push(instr);
    }
    if !seen_stream {
        return Err(BackendError::Format("not a stream listing: no `.stream` directive".into()));
    }
    s.target = match (stamp, description) {
        (Some((line_no, stamp)), Some(t)) if stamp != t.stamp().line() => {
            return Err(BackendError::Format(format!(
                "line {line_no}: .target \"{stamp}\" is not the stamp of the \
                 .target-description (\"{}\")",
                t.stamp().line()
            )))
        }
        (_, Some(t)) => Some(TargetRecord::Full(Box::new(t))),
        (Some((_, stamp)), None) => Some(TargetRecord::Stamp(stamp)),
        (None, None) => None,
    };
    s.validate()?;
    Ok(s)
}
