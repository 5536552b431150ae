//! Notes: what a pass measured or decided about a node, kept in the graph.
//!
//! A [`Note`] is a named record of numbers and words. It prints after its node (and after the
//! node's crossbar records) as `note NAME {key=value, ...}` and parses back, so the text IR shows
//! every decision a design-space pass made (`bn-calibrate`'s per-channel gains, the bits
//! `mixed-precision` chose and why) and a later pass can read what an earlier one measured
//! (`reference-stats` → `bn-calibrate`). The IR gives notes no meaning: each pass documents the
//! names and keys it writes.

use std::fmt::{self, Write};

#[derive(Clone, Debug, PartialEq)]
pub enum NoteValue {
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    /// A bare word (`[A-Za-z_][A-Za-z0-9_.-]*`).
    Word(String),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Note {
    pub name: String,
    pub items: Vec<(String, NoteValue)>,
}

impl Note {
    pub fn new(name: impl Into<String>) -> Note {
        Note { name: name.into(), items: Vec::new() }
    }

    /// Adds (or replaces) `key`.
    pub fn set(&mut self, key: &str, v: NoteValue) -> &mut Note {
        match self.items.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.items.push((key.to_string(), v)),
        }
        self
    }

    pub fn with(mut self, key: &str, v: NoteValue) -> Note {
        self.set(key, v);
        self
    }

    pub fn get(&self, key: &str) -> Option<&NoteValue> {
        self.items.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `key` as numbers (an integer or float list; a scalar is a list of one).
    pub fn floats(&self, key: &str) -> Option<Vec<f64>> {
        match self.get(key)? {
            NoteValue::Floats(v) => Some(v.clone()),
            NoteValue::Ints(v) => Some(v.iter().map(|&x| x as f64).collect()),
            NoteValue::Float(x) => Some(vec![*x]),
            NoteValue::Int(x) => Some(vec![*x as f64]),
            NoteValue::Word(_) => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            NoteValue::Int(x) => Some(*x),
            _ => None,
        }
    }
}

/// The note called `name` among `notes`.
pub fn find<'a>(notes: &'a [Note], name: &str) -> Option<&'a Note> {
    notes.iter().find(|n| n.name == name)
}

/// Replaces the note of the same name, or adds it.
pub fn put(notes: &mut Vec<Note>, note: Note) {
    match notes.iter_mut().find(|n| n.name == note.name) {
        Some(slot) => *slot = note,
        None => notes.push(note),
    }
}

fn float(v: f64) -> String {
    // A value that is an f32 prints as the shortest f32 that reads back to it.
    let s = if v.is_finite() && (v as f32) as f64 == v {
        format!("{:?}", v as f32)
    } else {
        crate::print::fmt_f64(v)
    };
    // Floats always carry a '.', 'e', "inf" or "nan" so they parse back as floats.
    if s.contains(['.', 'e', 'n', 'x']) {
        s
    } else {
        format!("{s}.0")
    }
}

impl fmt::Display for NoteValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T>(f: &mut fmt::Formatter<'_>, xs: &[T], g: impl Fn(&T) -> String) -> fmt::Result {
            f.write_char('[')?;
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                f.write_str(&g(x))?;
            }
            f.write_char(']')
        }
        match self {
            NoteValue::Int(v) => write!(f, "{v}"),
            NoteValue::Float(v) => f.write_str(&float(*v)),
            NoteValue::Ints(v) => list(f, v, |x| x.to_string()),
            NoteValue::Floats(v) => list(f, v, |x| float(*x)),
            NoteValue::Word(w) => f.write_str(w),
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "note {} {{", self.name)?;
        for (i, (k, v)) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}={v}")?;
        }
        f.write_char('}')
    }
}

/// A parsed word as a scalar note value: an integer, a float, or a word.
pub(crate) fn scalar(w: &str) -> NoteValue {
    if let Ok(i) = w.parse::<i64>() {
        return NoteValue::Int(i);
    }
    match crate::print::parse_f64(w) {
        Some(x) => NoteValue::Float(x),
        None => NoteValue::Word(w.to_string()),
    }
}
