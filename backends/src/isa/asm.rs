//! The text assembly: one instruction per line, the mnemonic then `field=value` for every field,
//! in the order of [`INSTRS`](super::INSTRS) (`mvm group=3 src=0 dst=4096 count=3136`).
//!
//! Values are decimal integers (`-` allowed where the field is signed), or hexadecimal with `0x`;
//! an encoding is its name (`differential`, `offset` or `flipped`, `cimc_ir::WeightEncoding`). `;` starts a comment that runs to the end of the
//! line; blank lines are allowed. The parser accepts the fields in any order, each exactly once.
//! Errors name the line and the column (1-based, in characters), and never panic.

use super::{info_by_mnemonic, FieldInfo, FieldKind, Instr, WeightEncoding, MAX_FIELDS};
use crate::error::{BackendError, Result};

/// One line of assembly (no newline, no comment).
pub fn print(instr: &Instr) -> String {
    let info = instr.info();
    let mut s = String::from(info.mnemonic);
    for (f, &v) in info.fields.iter().zip(instr.values().iter()) {
        s.push(' ');
        s.push_str(f.name);
        s.push('=');
        match f.kind {
            FieldKind::Encoding => {
                match usize::try_from(v).ok().and_then(|i| WeightEncoding::NAMES.get(i)) {
                    Some(name) => s.push_str(name),
                    None => s.push_str(&v.to_string()),
                }
            }
            _ => s.push_str(&v.to_string()),
        }
    }
    s
}

/// A listing: one instruction per line, each line ending in a newline.
pub fn print_program(instrs: &[Instr]) -> String {
    let mut s = String::new();
    for i in instrs {
        s.push_str(&print(i));
        s.push('\n');
    }
    s
}

/// Parses a whole listing, skipping blank and comment-only lines.
pub fn parse_program(text: &str) -> Result<Vec<Instr>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if code_of(line).trim().is_empty() {
            continue;
        }
        out.push(parse_line(line, n + 1)?);
    }
    Ok(out)
}

/// Parses the one instruction of a line (`line_no` is 1-based, for messages); a trailing comment
/// is allowed, a line without an instruction is an error.
pub fn parse_line(line: &str, line_no: usize) -> Result<Instr> {
    let code = code_of(line);
    let mut tokens = tokens(code);
    let err = |byte: usize, msg: String| {
        let col = code[..byte].chars().count() + 1;
        BackendError::Format(format!("line {line_no}, column {col}: {msg}"))
    };
    let Some((at, mnemonic)) = tokens.next() else {
        return Err(BackendError::Format(format!("line {line_no}: no instruction")));
    };
    let info = info_by_mnemonic(mnemonic)
        .ok_or_else(|| err(at, format!("unknown mnemonic `{mnemonic}`")))?;
    let mut values: [Option<i64>; MAX_FIELDS] = [None; MAX_FIELDS];
    for (at, tok) in tokens {
        let Some((key, value)) = tok.split_once('=') else {
            return Err(err(at, format!("expected `field=value`, found `{tok}`")));
        };
        let Some((k, f)) = info.field(key) else {
            return Err(err(
                at,
                format!("`{}` has no field `{key}` (its fields: {})", info.mnemonic, names(info)),
            ));
        };
        if values[k].is_some() {
            return Err(err(at, format!("field `{key}` given twice")));
        }
        let vat = at + key.len() + 1;
        values[k] = Some(parse_value(value, f).map_err(|m| err(vat, m))?);
    }
    let missing: Vec<&str> =
        info.fields.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(f, _)| f.name).collect();
    if !missing.is_empty() {
        return Err(err(
            code.trim_end().len(),
            format!("`{}` misses field(s) `{}`", info.mnemonic, missing.join("`, `")),
        ));
    }
    let vals: Vec<i64> = values[..info.fields.len()].iter().map(|v| v.unwrap_or(0)).collect();
    Instr::from_values(info.opcode, &vals).ok_or_else(|| {
        BackendError::Format(format!(
            "line {line_no}: field values do not form a `{}` instruction",
            info.mnemonic
        ))
    })
}

/// The line without its comment.
fn code_of(line: &str) -> &str {
    line.split_once(';').map_or(line, |(c, _)| c)
}

/// Whitespace-separated tokens with their byte offsets.
fn tokens(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = 0;
    std::iter::from_fn(move || {
        let tail = &s[rest..];
        let start = rest + tail.find(|c: char| !c.is_whitespace())?;
        let len = s[start..].find(char::is_whitespace).unwrap_or(s.len() - start);
        rest = start + len;
        Some((start, &s[start..start + len]))
    })
}

fn names(info: &super::InstrInfo) -> String {
    info.fields.iter().map(|f| f.name).collect::<Vec<_>>().join(" ")
}

fn parse_value(s: &str, f: &FieldInfo) -> std::result::Result<i64, String> {
    let out_of_range = || format!("field `{}` = {s} is out of range {}", f.name, f.range_text());
    if f.kind == FieldKind::Encoding {
        return match WeightEncoding::from_name(s) {
            Some(e) => Ok(e as i64),
            None => Err(format!(
                "field `{}`: expected {}, found `{s}`",
                f.name,
                WeightEncoding::NAMES
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
        };
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (radix, digits) = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(d) => (16, d),
        None => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!("field `{}`: `{s}` is not an integer", f.name));
    }
    let magnitude = u64::from_str_radix(digits, radix).map_err(|_| out_of_range())?;
    let v = if neg { -(magnitude as i128) } else { magnitude as i128 };
    if v < f.min as i128 || v > f.max as i128 {
        return Err(out_of_range());
    }
    Ok(v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(BackendError::Format(m)) => m,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn print_and_parse() {
        let i = Instr::Mvm { group: 3, src: 0, dst: 4096, count: 3136 };
        assert_eq!(print(&i), "mvm group=3 src=0 dst=4096 count=3136");
        assert_eq!(parse_line("  mvm count=3136 dst=0x1000 group=3 src=0 ; conv1", 1).unwrap(), i);
        assert_eq!(print(&Instr::Halt {}), "halt");
        let f = Instr::Fill { dst: 0, len: 9, value: -7 };
        assert_eq!(parse_line(&print(&f), 1).unwrap(), f);
        let text = "; a program\n\nsync barrier=0\n  halt ; done\n";
        assert_eq!(parse_program(text).unwrap(), vec![Instr::Sync { barrier: 0 }, Instr::Halt {}]);
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(msg(parse_line("  ; nothing", 4)), "line 4: no instruction");
        assert_eq!(msg(parse_line("  mvn group=1", 2)), "line 2, column 3: unknown mnemonic `mvn`");
        let m = msg(parse_line("mvm group=1 src=0 dst=0 count=1 size=2", 5));
        assert!(m.starts_with("line 5, column 33: `mvm` has no field `size`"), "{m}");
        let m = msg(parse_line("mvm group=1 group=2", 1));
        assert_eq!(m, "line 1, column 13: field `group` given twice");
        let m = msg(parse_line("mvm group=1 src=0", 1));
        assert_eq!(m, "line 1, column 18: `mvm` misses field(s) `dst`, `count`");
        let m = msg(parse_line("mvm group=70000 src=0 dst=0 count=1", 1));
        assert_eq!(m, "line 1, column 11: field `group` = 70000 is out of range 0..=65535");
        let m = msg(parse_line("mvm group=-1 src=0 dst=0 count=1", 1));
        assert!(m.contains("out of range"), "{m}");
        let m = msg(parse_line("mvm group=1x src=0 dst=0 count=1", 1));
        assert_eq!(m, "line 1, column 11: field `group`: `1x` is not an integer");
        let m = msg(parse_line("mvm group src=0", 1));
        assert_eq!(m, "line 1, column 5: expected `field=value`, found `group`");
        let m = msg(parse_line("load dst=0 src=0 len=1 elem_bytes=99999999999999999999999", 1));
        assert!(m.contains("out of range 1..=8"), "{m}");
        let m = msg(parse_program("halt\n\nsync barrier=x\n"));
        assert!(m.starts_with("line 3, column 14"), "{m}");
    }
}
