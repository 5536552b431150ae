//! ONNX node → IR op, one file per op family.
//!
//! A lowering reads the node's attributes and inputs through [`Ctx`] and returns a
//! [`Lowered`]: an IR op with its inputs (the importer infers the output types and folds it when
//! every input is constant), or constants that replace the node's outputs. Inputs whose values
//! decide shapes (Reshape's shape, Slice's starts...) must be constants: see
//! [`value_operand_slots`].

mod conv_pool;
mod elementwise;
pub(crate) mod quant;
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
}

/// The ops of the default domain the importer lowers.
pub const SUPPORTED: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "QuantizeLinear",
    "Range",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
];

/// Input slots whose values (not only types) the importer needs, so they must be constants.
pub fn value_operand_slots(op_type: &str) -> &'static [usize] {
    match op_type {
        "Reshape" | "Squeeze" | "Unsqueeze" => &[1],
        "Slice" => &[1, 2, 3, 4],
        "Pad" => &[1, 3],
        "ConstantOfShape" => &[0],
        "Range" => &[0, 1, 2],
        _ => &[],
    }
}

/// The context of one node being lowered.
pub struct Ctx<'a> {
    pub imp: &'a mut Importer,
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

/// Lowers one node of the default domain (`op_type` is one of [`SUPPORTED`]).
pub fn lower(ctx: &mut Ctx, op_type: &str) -> R<Lowered> {
    match op_type {
        "Conv" => conv_pool::conv(ctx),
        "MaxPool" => conv_pool::pool(ctx, true),
        "AveragePool" => conv_pool::pool(ctx, false),
        "GlobalAveragePool" => conv_pool::global_average_pool(ctx),
        "BatchNormalization" => conv_pool::batch_norm(ctx),
        "Relu" | "Sigmoid" | "Tanh" | "HardSwish" | "Identity" | "LeakyRelu" | "HardSigmoid" => {
            elementwise::unary(ctx, op_type)
        }
        "Add" | "Sub" | "Mul" | "Div" | "MatMul" => elementwise::binary(ctx, op_type),
        "Clip" => elementwise::clip(ctx),
        "Gemm" => elementwise::gemm(ctx),
        "Softmax" => elementwise::softmax(ctx),
        "Dropout" => elementwise::dropout(ctx),
        "Cast" => elementwise::cast(ctx),
        "Concat" => shape_ops::concat(ctx),
        "Flatten" => shape_ops::flatten(ctx),
        "Reshape" => shape_ops::reshape(ctx),
        "Transpose" => shape_ops::transpose(ctx),
        "Squeeze" => shape_ops::squeeze(ctx),
        "Unsqueeze" => shape_ops::unsqueeze(ctx),
        "Pad" => shape_ops::pad(ctx),
        "Gather" => shape_ops::gather(ctx),
        "Slice" => shape_ops::slice(ctx),
        "Shape" => shape_ops::shape(ctx),
        "Constant" => shape_ops::constant(ctx),
        "ConstantOfShape" => shape_ops::constant_of_shape(ctx),
        "Range" => shape_ops::range(ctx),
        "QuantizeLinear" => quant::quantize(ctx),
        "DequantizeLinear" => quant::dequantize(ctx),
        other => Err(format!("internal: no lowering for {other}")),
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
