//! The text form of the IR (`Display for Graph`); [`crate::parse()`] reads it back.
//!
//! ```text
//! graph mnist_cnn {
//!   input %input : f32[1,1,28,28]
//!   const @w0 : f32[32,1,3,3] = data
//!   const @b0 : f32[32] = zeros
//!   const @shape0 : i64[2] = [1, -1]
//!   const @wq : i8[4,2] q(bits=4, signed, scale=[0.5, 0.25, 1.0, 2.0], zp=[0, 0, 0, 0], axis=0) = [1, -2, 3, -4, 5, -6, 7, -8]
//!   %conv0 : f32[1,32,28,28] = conv(%input, @w0, @b0) {kernel=[3, 3], strides=[1, 1], dilations=[1, 1], pads=[1, 1, 1, 1], group=1}  "Conv_0"
//!   %p : f32[1,32,14,14], %idx : i64[1,32,14,14] = max_pool(%conv0) {kernel=[2, 2], strides=[2, 2], dilations=[1, 1], pads=[0, 0, 0, 0], ceil_mode=false, count_include_pad=false, storage_order=0}  "MaxPool_2"
//!   %"onnx::Relu_7" : f32[1,32,14,14] = relu(%p)
//!   output %"onnx::Relu_7", %idx, @shape0
//! }
//! ```
//!
//! # Grammar
//!
//! ```text
//! file     := 'graph' name '{' stmt* '}'
//! stmt     := 'input' '%'name ':' type
//!           | 'const' '@'name ':' type '=' init
//!           | [result (',' result)* '='] opcall     (a node; no results is allowed)
//!           | 'output' value (',' value)*           (may repeat; outputs are appended)
//! result   := '%'name ':' type
//! opcall   := opname '(' [value (',' value)*] ')' ['{' [attr (',' attr)*] '}'] [string]
//! value    := '%'name        (a graph input or a node result)
//!           | '@'name        (a constant)
//! attr     := key '=' attrval
//! attrval  := word | string | '[' [attrval (',' attrval)*] ']'
//! type     := dtype '[' [dim (',' dim)*] ']' [quant]
//! quant    := 'q' '(' 'bits' '=' int ',' ('signed' | 'unsigned') ',' 'scale' '=' '[' floats ']'
//!             ',' 'zp' '=' '[' ints ']' [',' 'axis' '=' int] ')'
//! init     := '[' [elem (',' elem)*] ']'   (row-major, exactly numel elements, any size)
//!           | 'zeros' | 'splat' '(' elem ')'
//!           | 'data'                       (the bytes are in the data file)
//! name     := bare | string                (no space between the sigil and the name)
//! bare     := [A-Za-z0-9_.\-/]+, not containing "//"
//! string   := '"' (char | \" | \\ | \n | \r | \t | \u{hex})* '"'
//! word     := [A-Za-z0-9_.+\-]+            (numbers, true/false, op names, dtypes, enum members)
//! ```
//!
//! Whitespace (newlines included) is insignificant; `//` starts a comment to the end of the line.
//!
//! * Statements print in a fixed order: graph inputs (in input order), constants (in value-id
//!   order), nodes (in arena = execution order), then one `output` line (none when the graph
//!   has no outputs). Values are defined before they are used: the parser rejects forward
//!   references. Results of removed nodes are not printed.
//! * Names print bare when they are made of `[A-Za-z0-9_.-/]` (so ONNX paths like
//!   `/layer1/conv/Conv_output_0` stay readable), quoted with escapes otherwise (`onnx::Conv_1`,
//!   spaces, quotes, non-ASCII; control characters as `\u{..}`). A node's trailing string is
//!   its name in the source model, omitted when empty.
//! * Element values and float attributes print so they read back bit-exactly: floats use Rust's
//!   shortest round-trip form (`0.1`, `1e-7`, `-0.0`), `inf`, `-inf`, `nan` (the canonical
//!   quiet NaN) and otherwise raw bits in hex (`0xFFC00001`; 16 digits for f64). Booleans print
//!   `true`/`false` (a stored byte other than 0 or 1 prints as its number).
//! * Constants with at most [`INLINE_MAX`] elements print inline. Larger ones print `zeros` when
//!   every byte is zero, `splat(v)` when every element is the same, and otherwise `data`: their
//!   bytes go to the data file ([`crate::datafile`], written by [`crate::write_data`], read back
//!   with [`crate::parse_with_data`]). Hand-written files may write any constant inline.
//! * A constant's type may carry quantization (`const @w : i8[4] q(...) = ...`); its dtype and
//!   shape must match the data.
//! * Op attributes print as `{key=value, ...}` in the order of the op's fields in its table
//!   (`op.rs`, [`crate::optable`]); every field of the op appears (an `Option` field only when
//!   `Some`). The parser takes them in any order, and rejects missing, unknown and duplicate
//!   ones.

use crate::optable::Attr;
use crate::{DType, Graph, Placement, TensorData, TensorType, ValueDef, ValueId};
use std::fmt::{self, Write};

/// Constants with at most this many elements are printed inline.
pub const INLINE_MAX: usize = 16;

/// The f32 `v` in a form [`parse_f32`] reads back bit-exactly.
pub fn fmt_f32(v: f32) -> String {
    if v.is_nan() {
        if v.to_bits() == f32::NAN.to_bits() {
            "nan".into()
        } else {
            format!("0x{:08X}", v.to_bits())
        }
    } else {
        format!("{v:?}")
    }
}

/// The f64 `v` in a form [`parse_f64`] reads back bit-exactly.
pub fn fmt_f64(v: f64) -> String {
    if v.is_nan() {
        if v.to_bits() == f64::NAN.to_bits() {
            "nan".into()
        } else {
            format!("0x{:016X}", v.to_bits())
        }
    } else {
        format!("{v:?}")
    }
}

/// Reads a float in the text form: a decimal, `inf`, `-inf`, `nan` or raw bits `0x7FC00001`.
pub fn parse_f32(s: &str) -> Option<f32> {
    if let Some(hex) = s.strip_prefix("0x") {
        return u32::from_str_radix(hex, 16).ok().map(f32::from_bits);
    }
    if s == "nan" {
        return Some(f32::NAN);
    }
    s.parse().ok()
}

/// As [`parse_f32`], for f64.
pub fn parse_f64(s: &str) -> Option<f64> {
    if let Some(hex) = s.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok().map(f64::from_bits);
    }
    if s == "nan" {
        return Some(f64::NAN);
    }
    s.parse().ok()
}

/// Characters a name may have without quotes (it must also not contain `//`).
pub(crate) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

fn is_bare_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_name_char) && !s.contains("//")
}

/// Writes `s` as a quoted string literal.
pub(crate) fn write_quoted(f: &mut dyn Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Writes a value or graph name: bare when it is a plain identifier, quoted otherwise.
pub(crate) fn write_name(f: &mut dyn Write, s: &str) -> fmt::Result {
    if is_bare_name(s) {
        f.write_str(s)
    } else {
        write_quoted(f, s)
    }
}

fn write_list<T>(
    f: &mut dyn Write,
    xs: &[T],
    sep: &str,
    mut each: impl FnMut(&mut dyn Write, &T) -> fmt::Result,
) -> fmt::Result {
    for (i, x) in xs.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        each(f, x)?;
    }
    Ok(())
}

/// `f32[1,3,224,224]`, then ` q(...)` for a quantized type.
impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        write_list(f, &self.shape, ",", |f, d| write!(f, "{d}"))?;
        f.write_char(']')?;
        if let Some(q) = &self.quant {
            let sign = if q.signed { "signed" } else { "unsigned" };
            write!(f, " q(bits={}, {sign}, scale=[", q.bits)?;
            write_list(f, &q.scale, ", ", |f, s| f.write_str(&fmt_f32(*s)))?;
            f.write_str("], zp=[")?;
            write_list(f, &q.zero_point, ", ", |f, z| write!(f, "{z}"))?;
            f.write_char(']')?;
            if let Some(a) = q.axis {
                write!(f, ", axis={a}")?;
            }
            f.write_char(')')?;
        }
        Ok(())
    }
}

/// How a constant's data is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConstForm {
    Inline,
    Zeros,
    Splat,
    /// In the sidecar data file.
    Data,
}

pub(crate) fn const_form(d: &TensorData) -> ConstForm {
    let raw = d.raw();
    let size = d.dtype().size();
    if d.numel() <= INLINE_MAX || raw.len() < size {
        return ConstForm::Inline;
    }
    if raw.iter().all(|&b| b == 0) {
        ConstForm::Zeros
    } else if raw.chunks_exact(size).all(|c| c == &raw[..size]) {
        ConstForm::Splat
    } else {
        ConstForm::Data
    }
}

/// Writes one element (the raw little-endian bytes `b` of `dtype`).
pub(crate) fn write_elem(f: &mut dyn Write, dtype: DType, b: &[u8]) -> fmt::Result {
    fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        for (x, y) in a.iter_mut().zip(b) {
            *x = *y;
        }
        a
    }
    match dtype {
        DType::F32 => f.write_str(&fmt_f32(f32::from_le_bytes(arr(b)))),
        DType::F64 => f.write_str(&fmt_f64(f64::from_le_bytes(arr(b)))),
        DType::I8 => write!(f, "{}", i8::from_le_bytes(arr(b))),
        DType::U8 => write!(f, "{}", u8::from_le_bytes(arr(b))),
        DType::I16 => write!(f, "{}", i16::from_le_bytes(arr(b))),
        DType::U16 => write!(f, "{}", u16::from_le_bytes(arr(b))),
        DType::I32 => write!(f, "{}", i32::from_le_bytes(arr(b))),
        DType::I64 => write!(f, "{}", i64::from_le_bytes(arr(b))),
        DType::Bool => match b.first().copied().unwrap_or(0) {
            0 => f.write_str("false"),
            1 => f.write_str("true"),
            n => write!(f, "{n}"),
        },
    }
}

fn write_const_init(f: &mut dyn Write, d: &TensorData) -> fmt::Result {
    let size = d.dtype().size();
    let raw = d.raw();
    match const_form(d) {
        ConstForm::Zeros => f.write_str("zeros"),
        ConstForm::Data => f.write_str("data"),
        ConstForm::Splat => {
            f.write_str("splat(")?;
            write_elem(f, d.dtype(), &raw[..size])?;
            f.write_char(')')
        }
        ConstForm::Inline => {
            f.write_char('[')?;
            let elems: Vec<&[u8]> = raw.chunks_exact(size).collect();
            write_list(f, &elems, ", ", |f, b| write_elem(f, d.dtype(), b))?;
            f.write_char(']')
        }
    }
}

/// Writes a reference to value `id`: `%name`, or `@name` for a constant.
fn write_ref(f: &mut dyn Write, g: &Graph, id: ValueId) -> fmt::Result {
    if id.index() >= g.value_count() {
        return write!(f, "%\"<bad value #{}>\"", id.0);
    }
    let v = g.value(id);
    f.write_char(if v.is_const() { '@' } else { '%' })?;
    write_name(f, &v.name)
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("graph ")?;
        write_name(f, &self.name)?;
        f.write_str(" {\n")?;
        if let Some(t) = &self.target {
            f.write_str("  target ")?;
            write_quoted(f, &t.name)?;
            write!(f, " hash={} ", t.hash)?;
            write_quoted(f, &t.summary)?;
            f.write_char('\n')?;
        }
        for &id in self.inputs() {
            f.write_str("  input ")?;
            write_ref(f, self, id)?;
            if id.index() < self.value_count() {
                write!(f, " : {}", self.ty(id))?;
            }
            f.write_char('\n')?;
        }
        for (_, v) in self.values() {
            if let ValueDef::Const(d) = &v.def {
                f.write_str("  const @")?;
                write_name(f, &v.name)?;
                write!(f, " : {} = ", v.ty)?;
                write_const_init(f, d)?;
                f.write_char('\n')?;
            }
        }
        for (_, node) in self.nodes() {
            f.write_str("  ")?;
            for (i, &o) in node.outputs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_ref(f, self, o)?;
                if o.index() < self.value_count() {
                    write!(f, " : {}", self.ty(o))?;
                }
            }
            if !node.outputs.is_empty() {
                f.write_str(" = ")?;
            }
            write!(f, "{}(", node.op.name())?;
            write_list(f, &node.inputs, ", ", |f, &v| write_ref(f, self, v))?;
            f.write_char(')')?;
            let attrs = node.op.attrs();
            if !attrs.is_empty() {
                f.write_str(" {")?;
                write_list(f, &attrs, ", ", |f, (k, v): &(&str, Attr)| write!(f, "{k}={v}"))?;
                f.write_char('}')?;
            }
            if !node.name.is_empty() {
                f.write_str("  ")?;
                write_quoted(f, &node.name)?;
            }
            match &node.placement {
                Placement::Unplaced => {}
                Placement::Digital => f.write_str("  digital")?,
                Placement::Crossbar(m) => {
                    let attr = |f: &mut dyn Write, (k, v): &(&str, Attr)| write!(f, "{k}={v}");
                    f.write_str("\n    xbar {")?;
                    write_list(f, &crate::crossbar::map_attrs(m), ", ", attr)?;
                    f.write_char('}')?;
                    for b in &m.blocks {
                        f.write_str("\n    tile {")?;
                        write_list(f, &crate::crossbar::block_attrs(b), ", ", attr)?;
                        f.write_char('}')?;
                    }
                }
            }
            for n in &node.notes {
                write!(f, "\n    {n}")?;
            }
            f.write_char('\n')?;
        }
        if !self.outputs().is_empty() {
            f.write_str("  output ")?;
            write_list(f, self.outputs(), ", ", |f, &v| write_ref(f, self, v))?;
            f.write_char('\n')?;
        }
        f.write_str("}\n")
    }
}
