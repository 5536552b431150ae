//! Per-op tables shared by the text form and the verifier.
//!
//! Adding an [`Op`] variant is a local change here: one arm in `op_attrs` (fields → `key=value`
//! pairs, in print order), one in `build_op` (the same keys back into the variant) and one in
//! [`arity`] (input and output counts), plus its mnemonic in [`Op::name`]. The attribute helpers
//! (`Attr` for printing, `Attrs` for parsing) cover integers, floats, booleans, words and
//! lists of them; a new kind of value is added to both.

use crate::print::fmt_f32;
use crate::{ConvAttrs, DType, Op, PadMode, PoolAttrs, SliceAxis};
use std::fmt::{self, Write};
use std::ops::RangeInclusive;

/// How many inputs and outputs a node of `op` may have.
pub fn arity(op: &Op) -> (RangeInclusive<usize>, RangeInclusive<usize>) {
    let one = 1..=1;
    match op {
        Op::Conv(_) | Op::Gemm { .. } => (2..=3, one),
        Op::BatchNorm { .. } => (5..=5, one),
        Op::Clip => (3..=3, one),
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Sigmoid
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Tanh
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Softmax { .. }
        | Op::Identity
        | Op::Slice { .. }
        | Op::Cast { .. } => (one.clone(), one),
        Op::MaxPool(_) | Op::Dropout => (one, 1..=2),
        Op::MatMul | Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Gather { .. } => (2..=2, one),
        Op::Concat { .. } => (1..=usize::MAX, one),
        Op::Pad { .. } => (1..=2, one),
        Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. } => (2..=3, one),
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
        }
    }
}

fn conv_attrs(a: &ConvAttrs) -> Vec<(&'static str, Attr)> {
    let mut v = vec![
        ("kernel", Attr::UInts(a.kernel.clone())),
        ("strides", Attr::UInts(a.strides.clone())),
        ("dilations", Attr::UInts(a.dilations.clone())),
        ("pads", Attr::UInts(a.pads.clone())),
        ("group", Attr::UInt(a.group)),
    ];
    v.extend(a.clamp.map(|(lo, hi)| ("clamp", Attr::Bounds(lo, hi))));
    v
}

fn pool_attrs(a: &PoolAttrs) -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel", Attr::UInts(a.kernel.clone())),
        ("strides", Attr::UInts(a.strides.clone())),
        ("dilations", Attr::UInts(a.dilations.clone())),
        ("pads", Attr::UInts(a.pads.clone())),
        ("ceil_mode", Attr::Bool(a.ceil_mode)),
        ("count_include_pad", Attr::Bool(a.count_include_pad)),
        ("storage_order", Attr::UInt(a.storage_order as usize)),
    ]
}

/// The attributes of `op` in print order. Every field of the variant appears (an `Option` field
/// only when `Some`).
pub(crate) fn op_attrs(op: &Op) -> Vec<(&'static str, Attr)> {
    use Attr::*;
    match op {
        Op::Conv(a) => conv_attrs(a),
        Op::MaxPool(a) | Op::AveragePool(a) => pool_attrs(a),
        Op::BatchNorm { epsilon } => vec![("epsilon", Float(*epsilon))],
        Op::LeakyRelu { alpha } => vec![("alpha", Float(*alpha))],
        Op::HardSigmoid { alpha, beta } => vec![("alpha", Float(*alpha)), ("beta", Float(*beta))],
        Op::Gemm { alpha, beta, trans_a, trans_b, clamp } => {
            let mut v = vec![
                ("alpha", Float(*alpha)),
                ("beta", Float(*beta)),
                ("trans_a", Bool(*trans_a)),
                ("trans_b", Bool(*trans_b)),
            ];
            v.extend(clamp.map(|(lo, hi)| ("clamp", Bounds(lo, hi))));
            v
        }
        Op::Concat { axis } | Op::Flatten { axis } | Op::Gather { axis } => {
            vec![("axis", UInt(*axis))]
        }
        Op::Reshape { shape } => vec![("shape", UInts(shape.clone()))],
        Op::Transpose { perm } => vec![("perm", UInts(perm.clone()))],
        Op::Squeeze { axes } | Op::Unsqueeze { axes } => vec![("axes", UInts(axes.clone()))],
        Op::Softmax { axis, coerce_2d } => {
            vec![("axis", UInt(*axis)), ("coerce_2d", Bool(*coerce_2d))]
        }
        Op::Pad { mode, pads } => vec![("mode", Word(mode.name())), ("pads", Ints(pads.clone()))],
        Op::Slice { axes } => vec![
            ("axes", UInts(axes.iter().map(|s| s.axis).collect())),
            ("starts", Ints(axes.iter().map(|s| s.start).collect())),
            ("ends", Ints(axes.iter().map(|s| s.end).collect())),
            ("steps", Ints(axes.iter().map(|s| s.step).collect())),
        ],
        Op::Cast { to } => vec![("to", Word(to.name()))],
        Op::QuantizeLinear { axis, block_size, saturate, to } => {
            let mut v = Vec::new();
            if let Some(a) = axis {
                v.push(("axis", UInt(*a)));
            }
            v.push(("block_size", UInt(*block_size)));
            v.push(("saturate", Bool(*saturate)));
            v.push(("to", Word(to.name())));
            v
        }
        Op::DequantizeLinear { axis, block_size } => {
            let mut v = Vec::new();
            if let Some(a) = axis {
                v.push(("axis", UInt(*a)));
            }
            v.push(("block_size", UInt(*block_size)));
            v
        }
        Op::Relu
        | Op::Clip
        | Op::Sigmoid
        | Op::HardSwish
        | Op::Tanh
        | Op::GlobalAveragePool
        | Op::MatMul
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Identity
        | Op::Dropout => Vec::new(),
    }
}

/// The op named `name` with attributes taken from `a`; `Ok(None)` for an unknown name. The caller
/// then calls [`Attrs::finish`] to reject attributes the op does not have.
pub(crate) fn build_op(name: &str, a: &mut Attrs) -> Result<Option<Op>, AttrErr> {
    let op = match name {
        "conv" => Op::Conv(ConvAttrs {
            kernel: a.uints("kernel")?,
            strides: a.uints("strides")?,
            dilations: a.uints("dilations")?,
            pads: a.uints("pads")?,
            group: a.uint("group")?,
            clamp: a.opt_bounds("clamp")?,
        }),
        "max_pool" => Op::MaxPool(pool(a)?),
        "average_pool" => Op::AveragePool(pool(a)?),
        "batch_norm" => Op::BatchNorm { epsilon: a.f32("epsilon")? },
        "relu" => Op::Relu,
        "clip" => Op::Clip,
        "leaky_relu" => Op::LeakyRelu { alpha: a.f32("alpha")? },
        "sigmoid" => Op::Sigmoid,
        "hard_sigmoid" => Op::HardSigmoid { alpha: a.f32("alpha")?, beta: a.f32("beta")? },
        "hard_swish" => Op::HardSwish,
        "tanh" => Op::Tanh,
        "global_average_pool" => Op::GlobalAveragePool,
        "gemm" => Op::Gemm {
            alpha: a.f32("alpha")?,
            beta: a.f32("beta")?,
            trans_a: a.bool("trans_a")?,
            trans_b: a.bool("trans_b")?,
            clamp: a.opt_bounds("clamp")?,
        },
        "matmul" => Op::MatMul,
        "add" => Op::Add,
        "sub" => Op::Sub,
        "mul" => Op::Mul,
        "div" => Op::Div,
        "concat" => Op::Concat { axis: a.uint("axis")? },
        "flatten" => Op::Flatten { axis: a.uint("axis")? },
        "reshape" => Op::Reshape { shape: a.uints("shape")? },
        "transpose" => Op::Transpose { perm: a.uints("perm")? },
        "squeeze" => Op::Squeeze { axes: a.uints("axes")? },
        "unsqueeze" => Op::Unsqueeze { axes: a.uints("axes")? },
        "softmax" => Op::Softmax { axis: a.uint("axis")?, coerce_2d: a.bool("coerce_2d")? },
        "identity" => Op::Identity,
        "dropout" => Op::Dropout,
        "pad" => {
            let (pos, w) = a.word("mode")?;
            let mode = PadMode::from_name(&w).ok_or_else(|| AttrErr {
                pos,
                msg: format!("unknown pad mode '{w}' (expected constant, reflect, edge or wrap)"),
            })?;
            Op::Pad { mode, pads: a.ints("pads")? }
        }
        "gather" => Op::Gather { axis: a.uint("axis")? },
        "slice" => {
            let pos = a.pos;
            let (axes, starts, ends, steps) =
                (a.uints("axes")?, a.ints("starts")?, a.ints("ends")?, a.ints("steps")?);
            if starts.len() != axes.len() || ends.len() != axes.len() || steps.len() != axes.len() {
                return Err(AttrErr {
                    pos,
                    msg: "slice: axes, starts, ends and steps must have the same length".into(),
                });
            }
            let axes = (0..axes.len())
                .map(|i| SliceAxis {
                    axis: axes[i],
                    start: starts[i],
                    end: ends[i],
                    step: steps[i],
                })
                .collect();
            Op::Slice { axes }
        }
        "cast" => Op::Cast { to: a.dtype("to")? },
        "quantize_linear" => Op::QuantizeLinear {
            axis: a.opt_uint("axis")?,
            block_size: a.uint("block_size")?,
            saturate: a.bool("saturate")?,
            to: a.dtype("to")?,
        },
        "dequantize_linear" => {
            Op::DequantizeLinear { axis: a.opt_uint("axis")?, block_size: a.uint("block_size")? }
        }
        _ => return Ok(None),
    };
    Ok(Some(op))
}

fn pool(a: &mut Attrs) -> Result<PoolAttrs, AttrErr> {
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
