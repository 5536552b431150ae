//! Reads the text form back into a [`crate::Graph`]. The grammar is described in
//! [`crate::print`]. The parser never panics: every problem is an [`IrError::Parse`] with the
//! line and column (1-based, in characters) where it was found.

use crate::datafile::{read_data, DataEntry};
use crate::error::IrError;
use crate::optable::{AttrErr, AttrKind, AttrVal, Attrs};
use crate::print::{parse_f32, parse_f64, write_name};
use crate::{DType, Graph, Op, Placement, QuantParams, TensorData, TensorType, ValueId};
use bytes::Bytes;
use std::collections::HashMap;

mod lex;

pub use crate::datafile::{has_referenced_data, write_data};

/// Constants written `zeros` or `splat(v)` may not be larger than this (bytes).
pub const MAX_GENERATED_BYTES: usize = 256 << 20;
/// How deeply attribute lists may nest.
const MAX_DEPTH: usize = 16;

/// Parses the text form of a graph. A constant written `= data` is an error here: its bytes are
/// in a data file, read with [`parse_with_data`].
pub fn parse(text: &str) -> Result<Graph, IrError> {
    parse_with_data(text, None)
}

/// Parses the text form of a graph whose `= data` constants are in `data`, a data file written
/// by [`crate::write_data`]. Every entry of the data file must be used by the text.
pub fn parse_with_data(text: &str, data: Option<&[u8]>) -> Result<Graph, IrError> {
    let sidecar = match data {
        Some(d) => {
            let entries: Vec<(DataEntry, bool)> =
                read_data(d)?.into_iter().map(|e| (e, false)).collect();
            let index = entries.iter().enumerate().map(|(i, (e, _))| (e.name.clone(), i)).collect();
            Some(Sidecar { entries, index })
        }
        None => None,
    };
    let mut p = Parser {
        src: text,
        pos: 0,
        g: Graph::new(""),
        defined_at: HashMap::new(),
        sidecar,
        outputs: Vec::new(),
    };
    if let Err(e) = p.file() {
        let (line, col) = line_col(text, e.pos);
        return Err(IrError::Parse { line, col, msg: e.msg });
    }
    if let Some(sidecar) = &p.sidecar {
        if let Some((e, _)) = sidecar.entries.iter().find(|(_, used)| !used) {
            return Err(IrError::Other(format!(
                "data file, byte {}: entry '{}' is not used by any `= data` constant of the text",
                e.offset, e.name
            )));
        }
    }
    p.g.set_outputs(p.outputs);
    Ok(p.g)
}

fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = text.get(..pos).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

type PResult<T> = Result<T, AttrErr>;

fn err<T>(pos: usize, msg: impl Into<String>) -> PResult<T> {
    Err(AttrErr { pos, msg: msg.into() })
}

/// `%name` / `@name` as printed.
fn show(sigil: char, name: &str) -> String {
    let mut s = String::new();
    s.push(sigil);
    let _ = write_name(&mut s, name);
    s
}

/// The entries of a data file, whether the text used each, and an index by name.
struct Sidecar {
    entries: Vec<(DataEntry, bool)>,
    index: HashMap<String, usize>,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    g: Graph,
    /// Where each value name was defined.
    defined_at: HashMap<String, usize>,
    /// The data file's entries and whether the text used them.
    sidecar: Option<Sidecar>,
    outputs: Vec<ValueId>,
}

impl<'a> Parser<'a> {
    fn file(&mut self) -> PResult<()> {
        self.keyword("graph", "expected 'graph' at the start of the file")?;
        self.skip_ws();
        self.g.name = self.name("'graph'")?;
        self.expect('{', "expected '{' after the graph name")?;
        loop {
            match self.peek() {
                None => {
                    return err(self.pos, "unexpected end of file: missing '}' closing the graph")
                }
                Some('}') => break,
                Some('%') => self.node()?,
                _ => {
                    let at = self.pos;
                    match self.peek_word() {
                        "input" => self.input()?,
                        "const" => self.constant()?,
                        "output" => self.output()?,
                        "target" => self.target()?,
                        w if !w.is_empty()
                            && self
                                .rest()
                                .get(w.len()..)
                                .unwrap_or("")
                                .trim_start()
                                .starts_with('(') =>
                        {
                            self.op_call(Vec::new())?
                        }
                        _ => {
                            let found = self.found();
                            return err(at, format!("expected a statement (input, const, output or a node), found {found}"));
                        }
                    }
                }
            }
        }
        self.pos += 1;
        if self.peek().is_some() {
            return err(self.pos, "unexpected text after the closing '}'");
        }
        Ok(())
    }

    fn input(&mut self) -> PResult<()> {
        self.pos += "input".len();
        self.skip_ws();
        if self.rest().starts_with('@') {
            return err(self.pos, "graph inputs are named with '%', not '@'");
        }
        let (at, name) = self.sigil_name('%', "expected '%name' after 'input'")?;
        self.define(at, '%', &name)?;
        self.expect(':', "expected ':' after value name")?;
        let ty = self.ty()?;
        self.g.add_input(name, ty);
        Ok(())
    }

    fn output(&mut self) -> PResult<()> {
        self.pos += "output".len();
        loop {
            let v = self.value_ref()?;
            self.outputs.push(v);
            if !self.eat(',') {
                return Ok(());
            }
        }
    }

    fn value_ref(&mut self) -> PResult<ValueId> {
        let sigil = match self.peek() {
            Some(c @ ('%' | '@')) => c,
            _ => {
                let found = self.found();
                return err(self.pos, format!("expected a value (%name or @name), found {found}"));
            }
        };
        let (at, name) = self.sigil_name(sigil, "expected a value")?;
        let Some(id) = self.g.find_value(&name) else {
            let what = if self.defined_at.contains_key(&name) {
                "a result of this node"
            } else {
                "used before definition"
            };
            return err(at, format!("unknown value {} ({what})", show(sigil, &name)));
        };
        match (self.g.value(id).is_const(), sigil) {
            (true, '%') => {
                err(at, format!("{} is a constant: write {}", show('%', &name), show('@', &name)))
            }
            (false, '@') => err(
                at,
                format!("{} is not a constant: write {}", show('@', &name), show('%', &name)),
            ),
            _ => Ok(id),
        }
    }

    fn ty(&mut self) -> PResult<TensorType> {
        let (at, w) = self.word("a type such as f32[1,3]")?;
        let Some(dtype) = DType::from_name(w) else {
            let names: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
            return err(at, format!("unknown dtype '{w}' (expected one of {})", names.join(", ")));
        };
        self.expect('[', "expected '[' after the dtype")?;
        let mut shape = Vec::new();
        if !self.eat(']') {
            loop {
                shape.push(self.uint("a dimension (a non-negative integer)")?);
                if self.eat(']') {
                    break;
                }
                self.expect(',', "expected ',' or ']' in the shape")?;
            }
        }
        let quant = if self.peek_word() == "q" {
            self.pos += 1;
            Some(self.quant()?)
        } else {
            None
        };
        Ok(TensorType { dtype, shape, quant })
    }

    fn key(&mut self, key: &str) -> PResult<()> {
        self.keyword(key, &format!("expected '{key}=' in q(...)"))?;
        self.expect('=', &format!("expected '=' after '{key}'"))
    }

    fn num_list<T>(&mut self, what: &str, parse: impl Fn(&str) -> Option<T>) -> PResult<Vec<T>> {
        self.expect('[', &format!("expected '[' starting a list of {what}s"))?;
        let mut out = Vec::new();
        if self.eat(']') {
            return Ok(out);
        }
        loop {
            let (at, w) = self.word(what)?;
            out.push(parse(w).ok_or_else(|| AttrErr {
                pos: at,
                msg: format!("expected {what}, found '{w}'"),
            })?);
            if self.eat(']') {
                return Ok(out);
            }
            self.expect(',', "expected ',' or ']' in the list")?;
        }
    }

    fn quant(&mut self) -> PResult<QuantParams> {
        self.expect('(', "expected '(' after 'q'")?;
        self.key("bits")?;
        let bits = self.uint("the bit width (an integer 0..=255)")?;
        self.expect(',', "expected ',' after the bit width")?;
        let (at, w) = self.word("'signed' or 'unsigned'")?;
        let signed = match w {
            "signed" => true,
            "unsigned" => false,
            _ => return err(at, format!("expected 'signed' or 'unsigned', found '{w}'")),
        };
        self.expect(',', "expected ',' after signedness")?;
        self.key("scale")?;
        let scale = self.num_list("an f32 scale", parse_f32)?;
        self.expect(',', "expected ',' after the scales")?;
        self.key("zp")?;
        let zero_point = self.num_list("an i32 zero point", |w| w.parse().ok())?;
        let axis = if self.eat(',') {
            self.key("axis")?;
            Some(self.uint("an axis (a non-negative integer)")?)
        } else {
            None
        };
        self.expect(')', "expected ')' closing q(...)")?;
        Ok(QuantParams { bits, signed, scale, zero_point, axis })
    }

    /// One element of `dtype`, appended to `out` as little-endian bytes.
    fn elem(&mut self, dtype: DType, out: &mut Vec<u8>) -> PResult<()> {
        let w = self.peek_word();
        if w.is_empty() {
            let found = self.found();
            return err(self.pos, format!("expected a {dtype} value, found {found}"));
        }
        let at = self.pos;
        self.pos += w.len();
        let ok = match dtype {
            DType::F32 => parse_f32(w).map(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::F64 => parse_f64(w).map(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::I8 => w.parse::<i8>().ok().map(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::U8 => w.parse::<u8>().ok().map(|v| out.push(v)),
            DType::I16 => w.parse::<i16>().ok().map(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::U16 => w.parse::<u16>().ok().map(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::I32 => w.parse::<i32>().ok().map(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::I64 => w.parse::<i64>().ok().map(|v| out.extend_from_slice(&v.to_le_bytes())),
            DType::Bool => match w {
                "true" => Some(1),
                "false" => Some(0),
                _ => w.parse::<u8>().ok(),
            }
            .map(|b| out.push(b)),
        };
        ok.ok_or_else(|| AttrErr { pos: at, msg: format!("'{w}' is not a {dtype} value") })
    }

    fn constant(&mut self) -> PResult<()> {
        self.pos += "const".len();
        self.skip_ws();
        if self.rest().starts_with('%') {
            return err(self.pos, "constants are named with '@', not '%'");
        }
        let (at, name) = self.sigil_name('@', "expected '@name' after 'const'")?;
        self.define(at, '@', &name)?;
        self.expect(':', "expected ':' after value name")?;
        let ty = self.ty()?;
        self.expect('=', "expected '=' and the constant's data")?;
        let c = show('@', &name);
        let numel = ty.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let nbytes = numel.and_then(|n| n.checked_mul(ty.dtype.size()));
        let data_at = {
            self.skip_ws();
            self.pos
        };
        let bytes = if self.eat('[') {
            let mut out = Vec::new();
            let mut count = 0usize;
            if !self.eat(']') {
                loop {
                    self.elem(ty.dtype, &mut out)?;
                    count += 1;
                    if self.eat(']') {
                        break;
                    }
                    self.expect(',', "expected ',' or ']' in the constant's data")?;
                }
            }
            if Some(count) != numel {
                let want = numel.map_or("more than usize::MAX".to_string(), |n| n.to_string());
                return err(
                    data_at,
                    format!("constant {c} : {ty} needs {want} values, found {count}"),
                );
            }
            out
        } else {
            let (wat, w) = self.word("constant data: '[...]', 'zeros', 'splat(v)' or 'data'")?;
            match w {
                "zeros" | "splat" => {
                    let n = match nbytes {
                        Some(n) if n <= MAX_GENERATED_BYTES => n,
                        _ => return err(wat, format!("constant {c} : {ty} is too large to generate (limit {MAX_GENERATED_BYTES} bytes)")),
                    };
                    if w == "zeros" {
                        vec![0u8; n]
                    } else {
                        self.expect('(', "expected '(' after 'splat'")?;
                        let mut one = Vec::new();
                        self.elem(ty.dtype, &mut one)?;
                        self.expect(')', "expected ')' closing splat(...)")?;
                        one.repeat(numel.unwrap_or(0))
                    }
                }
                "data" => return self.const_from_file(at, wat, name, ty),
                _ => return err(wat, format!("expected constant data: '[...]', 'zeros', 'splat(v)' or 'data', found '{w}'")),
            }
        };
        let data = TensorData::from_raw(ty.dtype, ty.shape.clone(), Bytes::from(bytes))
            .or_else(|e| err(data_at, format!("constant {c}: {e}")))?;
        let id = self.g.add_const(name, data);
        self.g.value_mut(id).ty = ty;
        Ok(())
    }

    fn const_from_file(
        &mut self,
        at: usize,
        wat: usize,
        name: String,
        ty: TensorType,
    ) -> PResult<()> {
        let c = show('@', &name);
        let Some(sidecar) = &mut self.sidecar else {
            return err(wat, format!("constant {c} has its data in a separate file; none given"));
        };
        let Some((entry, used)) =
            sidecar.index.get(&name).and_then(|&i| sidecar.entries.get_mut(i))
        else {
            return err(wat, format!("constant {c}: the data file has no entry '{name}'"));
        };
        let d = &entry.data;
        if d.dtype() != ty.dtype || d.shape() != ty.shape.as_slice() {
            let file_ty = TensorType::new(d.dtype(), d.shape().to_vec());
            return err(
                at,
                format!(
                    "constant {c} is declared {ty} but the data file has {file_ty} (byte {})",
                    entry.offset
                ),
            );
        }
        *used = true;
        let data = d.clone();
        let id = self.g.add_const(name, data);
        self.g.value_mut(id).ty = ty;
        Ok(())
    }

    /// `%a : T, %b : U = op(...)...`
    fn node(&mut self) -> PResult<()> {
        let mut results = Vec::new();
        loop {
            let (at, name) = self.sigil_name('%', "node results are named with '%'")?;
            self.define(at, '%', &name)?;
            self.expect(':', "expected ':' after value name")?;
            let ty = self.ty()?;
            results.push((name, ty));
            if !self.eat(',') {
                break;
            }
        }
        self.expect('=', "expected '=' after the node's results")?;
        self.op_call(results)
    }

    fn attr_val(&mut self, depth: usize) -> PResult<AttrVal> {
        let at = {
            self.skip_ws();
            self.pos
        };
        if depth > MAX_DEPTH {
            return err(at, "attribute lists nested too deeply");
        }
        if self.eat('[') {
            let mut items = Vec::new();
            if !self.eat(']') {
                loop {
                    items.push(self.attr_val(depth + 1)?);
                    if self.eat(']') {
                        break;
                    }
                    self.expect(',', "expected ',' or ']' in the list")?;
                }
            }
            return Ok(AttrVal { pos: at, kind: AttrKind::List(items) });
        }
        if self.peek() == Some('"') {
            return Ok(AttrVal { pos: at, kind: AttrKind::Str(self.string()?) });
        }
        let (_, w) = self.word("an attribute value")?;
        Ok(AttrVal { pos: at, kind: AttrKind::Word(w.to_string()) })
    }

    fn op_call(&mut self, results: Vec<(String, TensorType)>) -> PResult<()> {
        let (op_at, op_name) = self.word("an op name")?;
        if !self.eat('(') {
            let found = self.found();
            return err(self.pos, format!("expected '(' after op name '{op_name}', found {found}"));
        }
        let mut inputs = Vec::new();
        if !self.eat(')') {
            loop {
                inputs.push(self.value_ref()?);
                if self.eat(')') {
                    break;
                }
                self.expect(',', "expected ',' or ')' in the argument list")?;
            }
        }
        let mut attrs = Attrs { op: op_name.to_string(), pos: op_at, items: Vec::new() };
        if self.eat('{') {
            attrs.items = self.attr_items()?;
        }
        let node_name = if self.peek() == Some('"') { self.string()? } else { String::new() };
        let Some(op) = Op::parse(op_name, &mut attrs)? else {
            return err(op_at, format!("unknown op '{op_name}'"));
        };
        attrs.finish()?;
        let id = self.g.add_node(node_name, op, inputs, results);
        self.g.node_mut(id).placement = self.placement()?;
        loop {
            self.skip_ws();
            if self.peek_word() != "note" {
                break;
            }
            let note = self.note()?;
            self.g.node_mut(id).notes.push(note);
        }
        Ok(())
    }

    /// The items of an attribute list after its `{`, through the closing `}`.
    fn attr_items(&mut self) -> PResult<Vec<(String, usize, AttrVal)>> {
        let mut items: Vec<(String, usize, AttrVal)> = Vec::new();
        if self.eat('}') {
            return Ok(items);
        }
        loop {
            let (kat, key) = self.word("an attribute name")?;
            if items.iter().any(|(k, _, _)| k == key) {
                return err(kat, format!("duplicate attribute '{key}'"));
            }
            if !self.eat('=') {
                let found = self.found();
                return err(
                    self.pos,
                    format!("expected '=' after attribute '{key}', found {found}"),
                );
            }
            let v = self.attr_val(0)?;
            items.push((key.to_string(), kat, v));
            if self.eat('}') {
                return Ok(items);
            }
            self.expect(',', "expected ',' or '}' in the attribute list")?;
        }
    }

    /// `{...}` after the keyword `what`, as [`Attrs`].
    fn record(&mut self, what: &str) -> PResult<Attrs> {
        self.skip_ws();
        let pos = self.pos;
        self.pos += what.len();
        self.expect('{', &format!("expected '{{' after '{what}'"))?;
        Ok(Attrs { op: what.to_string(), pos, items: self.attr_items()? })
    }

    /// What may follow a node: `digital`, or `xbar {...}` and its `tile {...}` records.
    fn placement(&mut self) -> PResult<Placement> {
        self.skip_ws();
        match self.peek_word() {
            "digital" => {
                self.pos += "digital".len();
                Ok(Placement::Digital)
            }
            "xbar" => {
                let mut a = self.record("xbar")?;
                let mut map = crate::crossbar::map_from_attrs(&mut a)?;
                a.finish()?;
                loop {
                    self.skip_ws();
                    if self.peek_word() != "tile" {
                        break;
                    }
                    let mut a = self.record("tile")?;
                    map.blocks.push(crate::crossbar::block_from_attrs(&mut a)?);
                    a.finish()?;
                }
                Ok(Placement::Crossbar(Box::new(map)))
            }
            _ => Ok(Placement::Unplaced),
        }
    }

    /// `note NAME {key=value, ...}`: numbers, lists of numbers and words.
    fn note(&mut self) -> PResult<crate::note::Note> {
        use crate::note::{scalar, NoteValue};
        self.pos += "note".len();
        self.skip_ws();
        let name = self.word("the note's name")?.1.to_string();
        self.expect('{', "expected '{' after the note's name")?;
        let mut note = crate::note::Note::new(name);
        for (key, kat, v) in self.attr_items()? {
            let value = match v.kind {
                AttrKind::Word(w) => scalar(&w),
                AttrKind::List(items) => {
                    let mut words = Vec::with_capacity(items.len());
                    for it in items {
                        match it.kind {
                            AttrKind::Word(w) => words.push(w),
                            _ => {
                                return err(
                                    it.pos,
                                    format!("note '{key}': a list of numbers expected"),
                                )
                            }
                        }
                    }
                    let vals: Vec<NoteValue> = words.iter().map(|w| scalar(w)).collect();
                    if !vals.is_empty() && vals.iter().all(|v| matches!(v, NoteValue::Int(_))) {
                        NoteValue::Ints(
                            vals.iter()
                                .map(|v| match v {
                                    NoteValue::Int(i) => *i,
                                    _ => 0,
                                })
                                .collect(),
                        )
                    } else {
                        let mut fs = Vec::with_capacity(vals.len());
                        for (v, w) in vals.iter().zip(&words) {
                            match v {
                                NoteValue::Int(i) => fs.push(*i as f64),
                                NoteValue::Float(x) => fs.push(*x),
                                _ => {
                                    return err(kat, format!("note '{key}': '{w}' is not a number"))
                                }
                            }
                        }
                        NoteValue::Floats(fs)
                    }
                }
                AttrKind::Str(_) => {
                    return err(kat, format!("note '{key}': strings are not note values"))
                }
            };
            note.items.push((key, value));
        }
        Ok(note)
    }

    /// `target "name" hash=HEX "summary"`
    fn target(&mut self) -> PResult<()> {
        let at = self.pos;
        self.pos += "target".len();
        if self.g.target.is_some() {
            return err(at, "a second 'target' line");
        }
        self.skip_ws();
        if self.peek() != Some('"') {
            return err(self.pos, "expected the target's name as a string after 'target'");
        }
        let name = self.string()?;
        self.skip_ws();
        let (hat, h) = self.word("hash=...")?;
        if h != "hash" || !self.eat('=') {
            return err(hat, "expected hash=HEX after the target's name");
        }
        let hash = self.word("the target's hash")?.1.to_string();
        self.skip_ws();
        if self.peek() != Some('"') {
            return err(self.pos, "expected the target's summary as a string after its hash");
        }
        let summary = self.string()?;
        self.g.target = Some(crate::TargetStamp { name, hash, summary });
        Ok(())
    }
}
