//! ONNX node → IR op, one file per op family.
//!
//! A lowering reads the node's attributes and inputs through [`Ctx`] and returns a
//! [`Lowered`]: an IR op with its inputs (the importer infers the output types and folds it when
//! every input is constant), or constants that replace the node's outputs. Inputs whose values
//! decide shapes (Reshape's shape, Slice's starts...) must be constants: see
//! [`Import::value_inputs`].
//!
//! Each family file registers the ops it lowers in its `IMPORTS` table; [`FAMILIES`] lists the
//! files. A new op is a lowering function and its line in that table
//! (`docs/adding-an-op.md`).

mod conv_pool;
mod elementwise;
pub(crate) mod qonnx;
pub(crate) mod qoperator;
pub(crate) mod quant;
mod recurrent;
mod reduce;
mod resize;
mod shape_ops;

use super::attrs::Attrs;
use super::Importer;
use cimc_ir::{DType, Op, TensorData, TensorType, ValueId};

pub type R<T> = Result<T, String>;

/// What a node becomes.
pub enum Lowered {
    /// An IR node with these inputs; outputs are the ONNX node's outputs.
    Op(Op, Vec<ValueId>),
    /// Constants, one per ONNX output.
    Consts(Vec<TensorData>),
    /// An IR node for the first outputs and constants for the last ones (Dropout before
    /// opset 10: its mask, all ones of the input's type in inference).
    OpThenConsts(Op, Vec<ValueId>, Vec<TensorData>),
}

/// One ONNX op of the default domain that the importer lowers: its line in the table of the
/// family file that lowers it (`IMPORTS`). [`FAMILIES`] gathers them: the one list of what
/// the importer supports, from which the unsupported-op check, the lowering dispatch, the
/// value inputs and `docs/onnx-ops.md` are all read.
pub struct Import {
    /// The ONNX op type.
    pub op_type: &'static str,
    /// Lowers a node of this type (the op type is in [`Ctx::op_type`]).
    pub lower: fn(&mut Ctx) -> R<Lowered>,
    /// Input slots whose values (not only types) the importer needs, so they must be
    /// constants (Reshape's shape, Slice's starts...).
    pub value_inputs: &'static [usize],
    /// What of the op is supported, when not all of it (for `docs/onnx-ops.md`).
    pub note: &'static str,
}

impl Import {
    pub const fn new(op_type: &'static str, lower: fn(&mut Ctx) -> R<Lowered>) -> Import {
        Import { op_type, lower, value_inputs: &[], note: "" }
    }

    /// With input slots whose values decide the output.
    pub const fn values(self, value_inputs: &'static [usize]) -> Import {
        Import { value_inputs, ..self }
    }

    /// With a note on what is supported.
    pub const fn note(self, note: &'static str) -> Import {
        Import { note, ..self }
    }
}

/// Every family file's table, with the file's name.
pub const FAMILIES: &[(&str, &[Import])] = &[
    ("conv_pool.rs", conv_pool::IMPORTS),
    ("elementwise.rs", elementwise::IMPORTS),
    ("shape_ops.rs", shape_ops::IMPORTS),
    ("quant.rs", quant::IMPORTS),
    ("reduce.rs", reduce::IMPORTS),
    ("resize.rs", resize::IMPORTS),
    ("recurrent.rs", recurrent::IMPORTS),
    ("qoperator.rs", qoperator::IMPORTS),
];

/// The registration of `op_type` (default domain), `None` when the importer does not lower it.
pub fn find(op_type: &str) -> Option<&'static Import> {
    FAMILIES.iter().flat_map(|(_, ops)| ops.iter()).find(|i| i.op_type == op_type)
}

/// Input slots whose values (not only types) the importer needs, so they must be constants.
pub fn value_operand_slots(op_type: &str) -> &'static [usize] {
    find(op_type).map_or(&[], |i| i.value_inputs)
}

/// The text of `docs/onnx-ops.md`: every supported op, from [`FAMILIES`].
pub fn supported_ops_markdown() -> String {
    let mut rows: Vec<(&str, &str, &Import)> = FAMILIES
        .iter()
        .flat_map(|(file, ops)| ops.iter().map(move |i| (i.op_type, *file, i)))
        .collect();
    rows.sort_by_key(|r| r.0);
    let mut s = String::from(
        "# Supported ONNX ops\n\n\
         <!-- Generated from the importer's tables (`IMPORTS` in each file of \
         compiler/src/onnx/nodes/). Do not edit: change those and run \
         `CIMC_BLESS=1 cargo test -p cimc --lib onnx_ops_doc`. -->\n\n\
         The ops of the default ONNX domain (`ai.onnx`) that `cimc` imports, at every opset from \
         1 to 28 where their semantics are the implemented ones (the opset policy is in \
         `compiler/src/onnx/mod.rs`; the nodes of opsets 1 to 6 are rewritten to their opset-7 \
         form by `compiler/src/onnx/legacy.rs`). Any other op is refused at import with one error listing \
         every such node. 'Constant inputs' are the inputs whose values decide the output's \
         shape: they must be constants, or graph inputs bound at import.\n\n\
         | op | notes | constant inputs | lowered in |\n|---|---|---|---|\n",
    );
    for (op, file, i) in rows {
        let slots: Vec<String> = i.value_inputs.iter().map(|k| k.to_string()).collect();
        s.push_str(&format!("| {op} | {} | {} | `{file}` |\n", i.note, slots.join(", ")));
    }
    s.push_str(&format!(
        "\nOf onnxruntime's `{}` domain: {}, lowered in `qoperator.rs`.\n",
        qoperator::MICROSOFT_DOMAIN,
        qoperator::MICROSOFT
            .iter()
            .map(|i| format!("`{}`", i.op_type))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push_str(
        "\nOther domains (QONNX, Brevitas, FINN), with the meaning qonnx's executor gives them; \
         their table is in `qonnx.rs` (Quant is lowered in `quant.rs`):\n\n\
         | op | domains |\n|---|---|\n",
    );
    for i in qonnx::IMPORTS {
        let domains: Vec<String> = i.domains.iter().map(|d| format!("`{d}`")).collect();
        s.push_str(&format!("| {} | {} |\n", i.op_type, domains.join(", ")));
    }
    s
}

/// The context of one node being lowered.
pub struct Ctx<'a> {
    pub imp: &'a mut Importer,
    /// The node's ONNX op type.
    pub op_type: &'a str,
    pub attrs: Attrs<'a>,
    pub opset: i64,
    pub name: &'a str,
    pub inputs: Vec<Option<ValueId>>,
    pub n_outputs: usize,
}

impl Ctx<'_> {
    /// Required input `i`.
    pub fn input(&self, i: usize) -> R<ValueId> {
        self.opt(i).ok_or_else(|| format!("input {i} is required but missing"))
    }

    /// Optional input `i` (`None` when absent or given as "").
    pub fn opt(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    pub fn n_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// Fails when more than `max` inputs are given.
    pub fn max_inputs(&self, max: usize) -> R<()> {
        if self.inputs.len() > max {
            return Err(format!("expected at most {max} input(s), got {}", self.inputs.len()));
        }
        Ok(())
    }

    pub fn ty(&self, v: ValueId) -> &TensorType {
        self.imp.g.ty(v)
    }

    pub fn in_ty(&self, i: usize) -> R<&TensorType> {
        Ok(self.ty(self.input(i)?))
    }

    pub fn data(&self, v: ValueId) -> Option<&TensorData> {
        self.imp.g.value(v).const_data()
    }

    /// The value of input `i`, which must be a constant when present.
    pub fn operand(&self, i: usize, what: &str) -> R<Option<TensorData>> {
        let Some(v) = self.opt(i) else { return Ok(None) };
        match self.data(v) {
            Some(d) => Ok(Some(d.clone())),
            None => Err(format!(
                "{what} (input {i}, '{}') must be a constant: its value decides the output shape \
                 (bind the graph input it comes from with ImportOptions::bind)",
                self.imp.g.value(v).name
            )),
        }
    }

    /// A constant integer operand (i32 or i64, scalar or 1-D) as i64s.
    pub fn ints_operand(&self, i: usize, what: &str) -> R<Option<Vec<i64>>> {
        match self.operand(i, what)? {
            None => Ok(None),
            Some(d) => {
                if !matches!(d.dtype(), DType::I64 | DType::I32) || d.shape().len() > 1 {
                    return Err(format!(
                        "{what} must be a 1-D i64 or i32 tensor, got {}{:?}",
                        d.dtype(),
                        d.shape()
                    ));
                }
                Ok(Some(d.to_i64_vec()))
            }
        }
    }

    /// Adds a constant made by the importer, named after the node.
    pub fn add_const(&mut self, suffix: &str, data: TensorData) -> ValueId {
        let name = self.imp.fresh_name(&format!("{}_{suffix}", self.name));
        self.imp.g.add_const(name, data)
    }

    /// Fails unless the node has between 1 and `max` outputs.
    pub fn max_outputs(&self, max: usize) -> R<()> {
        if self.n_outputs > max {
            return Err(format!("expected at most {max} output(s), got {}", self.n_outputs));
        }
        Ok(())
    }
}

/// Lowers one node of the default domain through its registration.
pub fn lower(ctx: &mut Ctx) -> R<Lowered> {
    match find(ctx.op_type) {
        Some(import) => (import.lower)(ctx),
        // invariant: the importer calls `lower` only for op types `find` knows.
        None => unreachable!("invariant: no lowering registered for {}", ctx.op_type),
    }
}

/// `axis` in `-rank..rank` (or `-rank..=rank` with `inclusive`) made non-negative.
pub fn norm_axis(axis: i64, rank: usize, inclusive: bool) -> R<usize> {
    let r = rank as i64;
    let hi = if inclusive { r } else { r - 1 };
    if axis < -r || axis > hi {
        let range =
            if inclusive { format!("[{}, {}]", -r, r) } else { format!("[{}, {}]", -r, r - 1) };
        return Err(format!("axis {axis} out of range {range} for rank {rank}"));
    }
    Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
}

/// Normalized axes, sorted, refusing duplicates.
pub fn norm_axes(axes: &[i64], rank: usize) -> R<Vec<usize>> {
    let mut out = axes.iter().map(|&a| norm_axis(a, rank, false)).collect::<R<Vec<usize>>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("axes {axes:?} repeat an axis"));
    }
    Ok(out)
}

/// `f32[1,3]` for messages.
pub fn show(t: &TensorType) -> String {
    cimc_ir::infer::show(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No op type is registered twice.
    #[test]
    fn op_types_are_unique() {
        let mut all: Vec<&str> =
            FAMILIES.iter().flat_map(|(_, ops)| ops.iter().map(|i| i.op_type)).collect();
        all.extend(qoperator::MICROSOFT.iter().map(|i| i.op_type));
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "an op type is registered twice");
    }

    /// `docs/onnx-ops.md` is generated from the tables; this test fails when it is stale.
    /// `CIMC_BLESS=1 cargo test -p cimc --lib onnx_ops_doc` rewrites it.
    #[test]
    fn onnx_ops_doc_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/onnx-ops.md");
        let want = supported_ops_markdown();
        if std::env::var_os("CIMC_BLESS").is_some() {
            std::fs::write(&path, &want).expect("cannot write docs/onnx-ops.md");
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/onnx-ops.md is stale; regenerate it with \
             `CIMC_BLESS=1 cargo test -p cimc --lib onnx_ops_doc`"
        );
    }
}
