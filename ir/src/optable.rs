//! The op table: how each op is declared once.
//!
//! [`op_table!`] turns one line per op into the [`crate::Op`] enum (its invocation is in
//! `op.rs`) and everything that can be said on that line: the variant with its fields, its
//! mnemonic in the text IR ([`crate::Op::name`]), its attributes in the text form (printed and
//! parsed from the field types through [`AttrField`]; the print order is the field order), its
//! input and output counts ([`arity`]) and what it does with integer codes
//! ([`crate::OnCodes`], which the verifier checks and from which `moves_values` and
//! `is_matrix_op` follow). [`op_family!`] does the same for a family of ops that share one
//! variant of `Op` and differ only in the function they compute (`Op::Unary(UnaryOp)`): a new
//! member of a family is one line of its table, and every facet of the family handles it.
//!
//! The facets a line cannot say — shape inference (`infer.rs`), the float kernels and the
//! gradient (`interp`), the importer (`compiler/src/onnx/nodes`) — are exhaustive matches
//! without a wildcard, so a new variant does not compile until each has its arm.
//! `docs/adding-an-op.md` is the recipe.
//!
//! A field type prints and parses through [`AttrField`]: integers, floats, booleans, words
//! (dtypes, enum members), lists of them, optional ones (printed only when `Some`), and the
//! attribute groups of the tuple variants (`ConvAttrs`, `PoolAttrs`). A new kind of value is a
//! new `impl AttrField` here.

use crate::print::fmt_f32;
use crate::{ConvAttrs, DType, Op, PadMode, PoolAttrs, Rounding, SliceAxis};
use std::fmt::{self, Write};
use std::ops::RangeInclusive;

/// How many inputs and outputs a node of `op` may have (the `inputs`/`outputs` of its line).
pub fn arity(op: &Op) -> (RangeInclusive<usize>, RangeInclusive<usize>) {
    op.arity()
}

/// Generates an op enum from its table (see the module documentation). Each line is
///
/// ```text
/// /// doc
/// Name                         = "mnemonic", inputs A..=B, outputs C..=D, codes ON_CODES;
/// Name { field: Type, .. }     = "mnemonic", ...;
/// Name(binding: Group)         = "mnemonic", ...;   (Group: an attribute group, e.g. ConvAttrs)
/// Name(binding: Family)        = family, ...;       (Family: an `op_family!` enum)
/// ```
///
/// and generates the enum, `name`, `attrs` (print), `parse`, `mnemonics`, `arity` and
/// `on_codes`.
macro_rules! op_table {
    (
        $(#[$meta:meta])*
        pub enum $E:ident {
            $(
                $(#[doc = $doc:literal])*
                $V:ident
                $( ( $b:ident : $bty:ty ) )?
                $( { $( $f:ident : $fty:ty ),* $(,)? } )?
                = $mn:tt, inputs $ins:expr, outputs $outs:expr, codes $codes:ident;
            )*
        }
    ) => {
        $(#[$meta])*
        pub enum $E {
            $(
                $(#[doc = $doc])*
                $V $( ($bty) )? $( { $( $f: $fty ),* } )?,
            )*
        }

        impl $E {
            /// The mnemonic used in the text IR.
            #[allow(unused_variables)]
            pub fn name(&self) -> &'static str {
                match self {
                    $( $E::$V $( ($b) )? $( { $( $f: _ ),* } )? => {
                        $crate::optable::mnemonic!($mn $(, $b)?)
                    } )*
                }
            }

            /// The attributes in print order: every field, an `Option` one only when `Some`.
            pub(crate) fn attrs(&self) -> Vec<(&'static str, $crate::optable::Attr)> {
                #[allow(unused_mut)]
                let mut out = Vec::new();
                match self {
                    $( $E::$V $( ($b) )? $( { $( $f ),* } )? => {
                        $( $crate::optable::print_inner!($mn, $b, out); )?
                        $( $( $crate::optable::AttrField::print($f, stringify!($f), &mut out); )* )?
                    } )*
                }
                out
            }

            /// The op whose mnemonic is `name`, its fields taken from `a`; `Ok(None)` for an
            /// unknown name. The caller then calls [`Attrs::finish`] to reject attributes the
            /// op does not have.
            pub(crate) fn parse(
                name: &str,
                a: &mut $crate::optable::Attrs,
            ) -> Result<Option<$E>, $crate::optable::AttrErr> {
                $(
                    $crate::optable::parse_entry!(
                        $mn, name, a, $E :: $V,
                        [ $( ($bty) )? ],
                        [ $( { $( $f : $fty ),* } )? ]
                    );
                )*
                Ok(None)
            }

            /// Every mnemonic of the text IR (a family's members each have theirs).
            pub fn mnemonics() -> Vec<&'static str> {
                let mut all = Vec::new();
                $( all.extend_from_slice($crate::optable::names!($mn $(, $bty)?)); )*
                all
            }

            /// How many inputs and outputs a node of this op may have.
            pub fn arity(&self) -> (::std::ops::RangeInclusive<usize>, ::std::ops::RangeInclusive<usize>) {
                match self {
                    $( $E::$V { .. } => ($ins, $outs), )*
                }
            }

            /// What the op's table line says it does with integer codes; [`crate::Op::on_codes`]
            /// refines it by the attributes of the ops whose line cannot say it alone.
            fn table_on_codes(&self) -> $crate::OnCodes {
                match self {
                    $( $E::$V { .. } => $crate::OnCodes::$codes, )*
                }
            }
        }
    };
}
pub(crate) use op_table;

/// Generates the enum of an op family (see the module documentation): one line per member,
///
/// ```text
/// /// doc
/// Name = "mnemonic";
/// Name { field: Type, .. } = "mnemonic";
/// ```
///
/// and its [`OpFamily`] implementation (mnemonic, attributes, parsing).
macro_rules! op_family {
    (
        $(#[$meta:meta])*
        pub enum $E:ident {
            $(
                $(#[doc = $doc:literal])*
                $V:ident $( { $( $f:ident : $fty:ty ),* $(,)? } )? = $mn:literal;
            )*
        }
    ) => {
        $(#[$meta])*
        pub enum $E {
            $(
                $(#[doc = $doc])*
                $V $( { $( $f: $fty ),* } )?,
            )*
        }

        impl $E {
            /// The mnemonic used in the text IR.
            pub fn name(&self) -> &'static str {
                match self {
                    $( $E::$V { .. } => $mn, )*
                }
            }
        }

        impl $crate::optable::OpFamily for $E {
            const NAMES: &'static [&'static str] = &[$($mn),*];

            fn name(&self) -> &'static str {
                $E::name(self)
            }

            #[allow(unused_variables)]
            fn print(&self, out: &mut Vec<(&'static str, $crate::optable::Attr)>) {
                match self {
                    $( $E::$V $( { $( $f ),* } )? => {
                        $( $( $crate::optable::AttrField::print($f, stringify!($f), out); )* )?
                    } )*
                }
            }

            #[allow(unused_variables)]
            fn parse(
                name: &str,
                a: &mut $crate::optable::Attrs,
            ) -> Result<Option<$E>, $crate::optable::AttrErr> {
                $(
                    $crate::optable::parse_entry!(
                        $mn, name, a, $E :: $V, [ ], [ $( { $( $f : $fty ),* } )? ]
                    );
                )*
                Ok(None)
            }
        }
    };
}
pub(crate) use op_family;

/// The mnemonic of one line of [`op_table!`]: the literal, or the family member's.
macro_rules! mnemonic {
    (family, $b:ident) => {
        $crate::optable::OpFamily::name($b)
    };
    ($mn:literal $(, $b:ident)?) => {
        $mn
    };
}
pub(crate) use mnemonic;

/// The mnemonics of one line of [`op_table!`]: the literal, or every member's of the family.
macro_rules! names {
    (family, $ty:ty) => {
        <$ty as $crate::optable::OpFamily>::NAMES
    };
    ($mn:literal $(, $ty:ty)?) => {
        &[$mn]
    };
}
pub(crate) use names;

/// Prints the inner value of a tuple variant: an attribute group, or a family member.
macro_rules! print_inner {
    (family, $b:ident, $out:ident) => {
        $crate::optable::OpFamily::print($b, &mut $out)
    };
    ($mn:literal, $b:ident, $out:ident) => {
        $crate::optable::AttrField::print($b, "", &mut $out)
    };
}
pub(crate) use print_inner;

/// Parses one line of a table: returns from the enclosing function when `name` is its op.
macro_rules! parse_entry {
    (family, $name:ident, $a:ident, $E:ident :: $V:ident, [ ($ty:ty) ], [ ]) => {
        if let Some(member) = <$ty as $crate::optable::OpFamily>::parse($name, $a)? {
            return Ok(Some($E::$V(member)));
        }
    };
    (
        $mn:literal, $name:ident, $a:ident, $E:ident :: $V:ident,
        [ $( ($ty:ty) )? ],
        [ $( { $( $f:ident : $fty:ty ),* } )? ]
    ) => {
        if $name == $mn {
            return Ok(Some($E::$V
                $( (<$ty as $crate::optable::AttrField>::parse("", $a)?) )?
                $( { $( $f: <$fty as $crate::optable::AttrField>::parse(stringify!($f), $a)? ),* } )?
            ));
        }
    };
}
pub(crate) use parse_entry;

/// A family of ops sharing one variant of [`Op`] (generated by [`op_family!`]).
pub(crate) trait OpFamily: Sized {
    /// The mnemonics of every member.
    const NAMES: &'static [&'static str];
    /// The member's mnemonic, which is the op's in the text IR.
    fn name(&self) -> &'static str;
    /// Appends the member's attributes in print order.
    fn print(&self, out: &mut Vec<(&'static str, Attr)>);
    /// The member whose mnemonic is `name`, its fields taken from `a`; `None` for another name.
    fn parse(name: &str, a: &mut Attrs) -> Result<Option<Self>, AttrErr>;
}

/// A field of an op (or the attribute group of a tuple variant) in the text form.
pub(crate) trait AttrField: Sized {
    /// Appends the field's `key=value` pair (none for an absent optional field; a group
    /// appends its own keys and ignores `key`).
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>);
    /// Takes the field back from the attributes.
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr>;
}

impl AttrField for usize {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::UInt(*self)));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.uint(key)
    }
}

impl AttrField for f32 {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Float(*self)));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.f32(key)
    }
}

impl AttrField for bool {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Bool(*self)));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.bool(key)
    }
}

impl AttrField for Vec<usize> {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::UInts(self.clone())));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.uints(key)
    }
}

impl AttrField for Vec<i64> {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Ints(self.clone())));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.ints(key)
    }
}

impl AttrField for Vec<f32> {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Floats(self.clone())));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.f32s(key)
    }
}

impl AttrField for Option<f32> {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.extend(self.map(|v| (key, Attr::Float(v))));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.opt_f32(key)
    }
}

impl AttrField for Option<usize> {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.extend(self.map(|v| (key, Attr::UInt(v))));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.opt_uint(key)
    }
}

/// A fused clamp `[lo, hi]`.
impl AttrField for Option<(f32, f32)> {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.extend(self.map(|(lo, hi)| (key, Attr::Bounds(lo, hi))));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.opt_bounds(key)
    }
}

impl AttrField for DType {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Word(self.name())));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        a.dtype(key)
    }
}

impl AttrField for PadMode {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Word(self.name())));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        let (pos, w) = a.word(key)?;
        PadMode::from_name(&w).ok_or_else(|| AttrErr {
            pos,
            msg: format!("unknown pad mode '{w}' (expected constant, reflect, edge or wrap)"),
        })
    }
}

impl AttrField for Rounding {
    fn print(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Word(self.name())));
    }
    fn parse(key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        let (pos, w) = a.word(key)?;
        Rounding::from_name(&w).ok_or_else(|| AttrErr {
            pos,
            msg: format!(
                "unknown rounding '{w}' (expected half_even, ceil, floor, up, down, half_up or \
                 half_down)"
            ),
        })
    }
}

/// Slice's axes print as four parallel lists: `axes`, `starts`, `ends`, `steps`.
impl AttrField for Vec<SliceAxis> {
    fn print(&self, _key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push(("axes", Attr::UInts(self.iter().map(|s| s.axis).collect())));
        out.push(("starts", Attr::Ints(self.iter().map(|s| s.start).collect())));
        out.push(("ends", Attr::Ints(self.iter().map(|s| s.end).collect())));
        out.push(("steps", Attr::Ints(self.iter().map(|s| s.step).collect())));
    }
    fn parse(_key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        let pos = a.pos;
        let (axes, starts, ends, steps) =
            (a.uints("axes")?, a.ints("starts")?, a.ints("ends")?, a.ints("steps")?);
        if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
            return Err(AttrErr {
                pos,
                msg: "slice: axes, starts, ends and steps must have the same length".into(),
            });
        }
        Ok((0..axes.len())
            .map(|i| SliceAxis { axis: axes[i], start: starts[i], end: ends[i], step: steps[i] })
            .collect())
    }
}

impl AttrField for ConvAttrs {
    fn print(&self, _key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push(("kernel", Attr::UInts(self.kernel.clone())));
        out.push(("strides", Attr::UInts(self.strides.clone())));
        out.push(("dilations", Attr::UInts(self.dilations.clone())));
        out.push(("pads", Attr::UInts(self.pads.clone())));
        out.push(("group", Attr::UInt(self.group)));
        self.clamp.print("clamp", out);
    }
    fn parse(_key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        Ok(ConvAttrs {
            kernel: a.uints("kernel")?,
            strides: a.uints("strides")?,
            dilations: a.uints("dilations")?,
            pads: a.uints("pads")?,
            group: a.uint("group")?,
            clamp: a.opt_bounds("clamp")?,
        })
    }
}

impl AttrField for PoolAttrs {
    fn print(&self, _key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push(("kernel", Attr::UInts(self.kernel.clone())));
        out.push(("strides", Attr::UInts(self.strides.clone())));
        out.push(("dilations", Attr::UInts(self.dilations.clone())));
        out.push(("pads", Attr::UInts(self.pads.clone())));
        out.push(("ceil_mode", Attr::Bool(self.ceil_mode)));
        out.push(("count_include_pad", Attr::Bool(self.count_include_pad)));
        out.push(("storage_order", Attr::UInt(self.storage_order as usize)));
    }
    fn parse(_key: &'static str, a: &mut Attrs) -> Result<Self, AttrErr> {
        Ok(PoolAttrs {
            kernel: a.uints("kernel")?,
            strides: a.uints("strides")?,
            dilations: a.uints("dilations")?,
            pads: a.uints("pads")?,
            ceil_mode: a.bool("ceil_mode")?,
            count_include_pad: a.bool("count_include_pad")?,
            storage_order: a.num("storage_order", "an integer 0..=255")?,
        })
    }
}

/// An attribute value to print.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Attr {
    UInt(usize),
    Int(i64),
    Double(f64),
    Float(f32),
    Bool(bool),
    UInts(Vec<usize>),
    Ints(Vec<i64>),
    /// Two real bounds, `[lo, hi]` (a fused clamp).
    Bounds(f32, f32),
    /// A bare word: an enum member or a dtype.
    Word(&'static str),
    Floats(Vec<f32>),
    /// A list of bare words (enum members).
    Words(Vec<&'static str>),
}

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, xs: &[T]) -> fmt::Result {
            f.write_char('[')?;
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{x}")?;
            }
            f.write_char(']')
        }
        match self {
            Attr::UInt(v) => write!(f, "{v}"),
            Attr::Int(v) => write!(f, "{v}"),
            Attr::Double(v) => f.write_str(&crate::print::fmt_f64(*v)),
            Attr::Float(v) => f.write_str(&fmt_f32(*v)),
            Attr::Bool(v) => write!(f, "{v}"),
            Attr::UInts(v) => list(f, v),
            Attr::Ints(v) => list(f, v),
            Attr::Bounds(lo, hi) => write!(f, "[{}, {}]", fmt_f32(*lo), fmt_f32(*hi)),
            Attr::Word(w) => f.write_str(w),
            Attr::Floats(v) => list(f, &v.iter().map(|x| fmt_f32(*x)).collect::<Vec<_>>()),
            Attr::Words(v) => list(f, v),
        }
    }
}

/// A parse error at byte `pos` of the text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AttrErr {
    pub pos: usize,
    pub msg: String,
}

/// A parsed attribute value, not yet interpreted.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AttrKind {
    /// A number, `true`/`false` or a bare word.
    Word(String),
    /// A quoted string.
    Str(String),
    List(Vec<AttrVal>),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AttrVal {
    pub pos: usize,
    pub kind: AttrKind,
}

/// The `{key=value, ...}` of one node, consumed key by key while the op is built.
pub(crate) struct Attrs {
    pub op: String,
    /// Where the op's name is (for "missing attribute" errors).
    pub pos: usize,
    pub items: Vec<(String, usize, AttrVal)>,
}

impl Attrs {
    fn err<T>(pos: usize, msg: String) -> Result<T, AttrErr> {
        Err(AttrErr { pos, msg })
    }

    fn take_opt(&mut self, key: &str) -> Option<AttrVal> {
        let i = self.items.iter().position(|(k, _, _)| k == key)?;
        Some(self.items.remove(i).2)
    }

    fn take(&mut self, key: &str) -> Result<AttrVal, AttrErr> {
        match self.take_opt(key) {
            Some(v) => Ok(v),
            None => Self::err(self.pos, format!("op '{}' needs attribute '{key}'", self.op)),
        }
    }

    fn scalar<T: std::str::FromStr>(v: &AttrVal, key: &str, what: &str) -> Result<T, AttrErr> {
        let found = match &v.kind {
            AttrKind::Word(w) => match w.parse::<T>() {
                Ok(x) => return Ok(x),
                Err(_) => format!("'{w}'"),
            },
            AttrKind::Str(_) => "a string".to_string(),
            AttrKind::List(_) => "a list".to_string(),
        };
        Self::err(v.pos, format!("attribute '{key}' must be {what}, found {found}"))
    }

    fn list<T: std::str::FromStr>(&mut self, key: &str, what: &str) -> Result<Vec<T>, AttrErr> {
        let v = self.take(key)?;
        match &v.kind {
            AttrKind::List(items) => {
                let what = format!("a list of {what}s");
                items.iter().map(|x| Self::scalar(x, key, &what)).collect()
            }
            _ => Self::err(v.pos, format!("attribute '{key}' must be a list [...] of {what}s")),
        }
    }

    fn num<T: std::str::FromStr>(&mut self, key: &str, what: &str) -> Result<T, AttrErr> {
        let v = self.take(key)?;
        Self::scalar(&v, key, what)
    }

    pub fn uint(&mut self, key: &str) -> Result<usize, AttrErr> {
        self.num(key, "a non-negative integer")
    }

    pub fn opt_uint(&mut self, key: &str) -> Result<Option<usize>, AttrErr> {
        match self.take_opt(key) {
            Some(v) => Self::scalar(&v, key, "a non-negative integer").map(Some),
            None => Ok(None),
        }
    }

    pub fn uints(&mut self, key: &str) -> Result<Vec<usize>, AttrErr> {
        self.list(key, "non-negative integer")
    }

    pub fn ints(&mut self, key: &str) -> Result<Vec<i64>, AttrErr> {
        self.list(key, "integer")
    }

    pub fn int(&mut self, key: &str) -> Result<i64, AttrErr> {
        self.num(key, "an integer")
    }

    pub fn opt_f64(&mut self, key: &str) -> Result<Option<f64>, AttrErr> {
        let Some(v) = self.take_opt(key) else { return Ok(None) };
        if let AttrKind::Word(w) = &v.kind {
            if let Some(x) = crate::print::parse_f64(w) {
                return Ok(Some(x));
            }
        }
        Self::err(v.pos, format!("attribute '{key}' must be a number (f64)"))
    }

    /// A `[a, b]` pair of non-negative integers.
    pub fn pair(&mut self, key: &str) -> Result<(usize, usize), AttrErr> {
        let at = self.items.iter().find(|(k, _, _)| k == key).map_or(self.pos, |(_, p, _)| *p);
        match self.uints(key)?[..] {
            [a, b] => Ok((a, b)),
            _ => Self::err(at, format!("attribute '{key}' must be [a, b] (two integers)")),
        }
    }

    pub fn bool(&mut self, key: &str) -> Result<bool, AttrErr> {
        self.num(key, "true or false")
    }

    pub fn f32(&mut self, key: &str) -> Result<f32, AttrErr> {
        let v = self.take(key)?;
        if let AttrKind::Word(w) = &v.kind {
            if let Some(x) = crate::print::parse_f32(w) {
                return Ok(x);
            }
        }
        Self::err(v.pos, format!("attribute '{key}' must be a number (f32)"))
    }

    /// An optional `[lo, hi]` pair of f32 bounds.
    pub fn opt_bounds(&mut self, key: &str) -> Result<Option<(f32, f32)>, AttrErr> {
        let Some(v) = self.take_opt(key) else { return Ok(None) };
        if let AttrKind::List(items) = &v.kind {
            let nums: Vec<f32> = items
                .iter()
                .filter_map(|x| match &x.kind {
                    AttrKind::Word(w) => crate::print::parse_f32(w),
                    _ => None,
                })
                .collect();
            if let [lo, hi] = nums[..] {
                if items.len() == 2 {
                    return Ok(Some((lo, hi)));
                }
            }
        }
        Self::err(v.pos, format!("attribute '{key}' must be [lo, hi] (two numbers)"))
    }

    /// A list of f32 numbers.
    pub fn f32s(&mut self, key: &str) -> Result<Vec<f32>, AttrErr> {
        let v = self.take(key)?;
        if let AttrKind::List(items) = &v.kind {
            let nums: Vec<f32> = items
                .iter()
                .filter_map(|x| match &x.kind {
                    AttrKind::Word(w) => crate::print::parse_f32(w),
                    _ => None,
                })
                .collect();
            if nums.len() == items.len() {
                return Ok(nums);
            }
        }
        Self::err(v.pos, format!("attribute '{key}' must be a list [...] of numbers (f32)"))
    }

    /// An optional f32.
    pub fn opt_f32(&mut self, key: &str) -> Result<Option<f32>, AttrErr> {
        if self.items.iter().any(|(k, _, _)| k == key) {
            self.f32(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A list of bare words, each with its position.
    pub fn words(&mut self, key: &str) -> Result<Vec<(usize, String)>, AttrErr> {
        let v = self.take(key)?;
        if let AttrKind::List(items) = &v.kind {
            let words: Vec<(usize, String)> = items
                .iter()
                .filter_map(|x| match &x.kind {
                    AttrKind::Word(w) => Some((x.pos, w.clone())),
                    _ => None,
                })
                .collect();
            if words.len() == items.len() {
                return Ok(words);
            }
        }
        Self::err(v.pos, format!("attribute '{key}' must be a list [...] of words"))
    }

    pub fn word(&mut self, key: &str) -> Result<(usize, String), AttrErr> {
        let v = self.take(key)?;
        match v.kind {
            AttrKind::Word(w) => Ok((v.pos, w)),
            _ => Self::err(v.pos, format!("attribute '{key}' must be a word")),
        }
    }

    pub fn dtype(&mut self, key: &str) -> Result<DType, AttrErr> {
        let (pos, w) = self.word(key)?;
        match DType::from_name(&w) {
            Some(d) => Ok(d),
            None => Self::err(pos, format!("unknown dtype '{w}'")),
        }
    }

    /// Fails on an attribute the op did not take.
    pub fn finish(self) -> Result<(), AttrErr> {
        match self.items.into_iter().next() {
            Some((k, pos, _)) => Self::err(pos, format!("op '{}' has no attribute '{k}'", self.op)),
            None => Ok(()),
        }
    }
}
