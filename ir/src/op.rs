//! Operations. Attributes are fully resolved: the importer turns ONNX's optional inputs and
//! defaults (auto_pad, axes given as inputs, negative axes) into the explicit fields here, so a
//! pass or an interpreter never re-derives them.

use crate::DType;

/// Attributes of a convolution over `n` spatial dims (n = kernel.len()).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvAttrs {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// `[begin_0, .., begin_{n-1}, end_0, .., end_{n-1}]`, as ONNX orders them.
    pub pads: Vec<usize>,
    pub group: usize,
    /// A fused activation: the output is clamped to `[lo, hi]` (real values; `canonicalize`
    /// sets it from a following Relu or Clip).
    pub clamp: Option<(f32, f32)>,
}

/// Attributes of MaxPool/AveragePool over `n` spatial dims.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAttrs {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// `[begin.., end..]` as in [`ConvAttrs::pads`].
    pub pads: Vec<usize>,
    pub ceil_mode: bool,
    /// AveragePool only: divide by the full window including padding.
    pub count_include_pad: bool,
    /// MaxPool only, for the optional Indices output: 0 = row-major, 1 = column-major.
    pub storage_order: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

impl PadMode {
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Edge => "edge",
            PadMode::Wrap => "wrap",
        }
    }

    pub fn from_name(s: &str) -> Option<PadMode> {
        [PadMode::Constant, PadMode::Reflect, PadMode::Edge, PadMode::Wrap]
            .into_iter()
            .find(|m| m.name() == s)
    }
}

/// One axis of a Slice, normalized: `start` and `end` are clamped into the valid range for
/// the step's direction, as ONNX specifies, so `len = ceil((end - start) / step)` (>= 0).
#[derive(Clone, Debug, PartialEq)]
pub struct SliceAxis {
    pub axis: usize,
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

/// An operation. Inputs are listed per variant as `inputs: ...`; optional trailing inputs may be
/// absent (the node's input list is shorter).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// inputs: x `[N,C,D..]`, w `[M,C/group,K..]`, optional bias `[M]`.
    Conv(ConvAttrs),
    /// inputs: x, scale, bias, mean, var (each `[C]`). Inference mode only.
    BatchNorm {
        epsilon: f32,
    },
    Relu,
    /// inputs: x, min, max (scalars; the importer supplies the dtype's bounds when absent).
    Clip,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    Tanh,
    /// outputs: y, optional indices (i64).
    MaxPool(PoolAttrs),
    AveragePool(PoolAttrs),
    GlobalAveragePool,
    /// inputs: a, b, optional c (unidirectionally broadcastable to `[M,N]`).
    /// `clamp`: a fused activation, as in [`ConvAttrs::clamp`].
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
        clamp: Option<(f32, f32)>,
    },
    /// numpy matmul semantics (1-D promotion, batch broadcasting).
    MatMul,
    /// numpy broadcasting; integer Div truncates toward zero.
    Add,
    Sub,
    Mul,
    Div,
    Concat {
        axis: usize,
    },
    Flatten {
        axis: usize,
    },
    /// The output shape, resolved (no 0 or -1 left).
    Reshape {
        shape: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    /// Sorted, non-negative axes.
    Squeeze {
        axes: Vec<usize>,
    },
    /// Sorted, non-negative axes of the output.
    Unsqueeze {
        axes: Vec<usize>,
    },
    /// `coerce_2d`: opset < 13 semantics (flatten to 2-D at `axis`, softmax over the second).
    Softmax {
        axis: usize,
        coerce_2d: bool,
    },
    Identity,
    /// Inference mode: y = x; optional output mask (bool, all true).
    Dropout,
    /// inputs: x, optional constant value (scalar). `pads` = `[begin.., end..]` over every axis;
    /// negative entries crop.
    Pad {
        mode: PadMode,
        pads: Vec<i64>,
    },
    /// inputs: data, indices (i32/i64, negative counts from the end).
    Gather {
        axis: usize,
    },
    /// One entry per sliced axis.
    Slice {
        axes: Vec<SliceAxis>,
    },
    Cast {
        to: DType,
    },
    /// inputs: x (f32), scale, optional zero point (its dtype is the output dtype).
    /// `axis`: per-axis scale; `block_size` > 0: blocked quantization along `axis`.
    QuantizeLinear {
        axis: Option<usize>,
        block_size: usize,
        saturate: bool,
        to: DType,
    },
    /// inputs: x (integer), scale, optional zero point.
    DequantizeLinear {
        axis: Option<usize>,
        block_size: usize,
    },
}

impl Op {
    /// The mnemonic used in the text IR.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv(_) => "conv",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Relu => "relu",
            Op::Clip => "clip",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Sigmoid => "sigmoid",
            Op::HardSigmoid { .. } => "hard_sigmoid",
            Op::HardSwish => "hard_swish",
            Op::Tanh => "tanh",
            Op::MaxPool(_) => "max_pool",
            Op::AveragePool(_) => "average_pool",
            Op::GlobalAveragePool => "global_average_pool",
            Op::Gemm { .. } => "gemm",
            Op::MatMul => "matmul",
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::Concat { .. } => "concat",
            Op::Flatten { .. } => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Squeeze { .. } => "squeeze",
            Op::Unsqueeze { .. } => "unsqueeze",
            Op::Softmax { .. } => "softmax",
            Op::Identity => "identity",
            Op::Dropout => "dropout",
            Op::Pad { .. } => "pad",
            Op::Gather { .. } => "gather",
            Op::Slice { .. } => "slice",
            Op::Cast { .. } => "cast",
            Op::QuantizeLinear { .. } => "quantize_linear",
            Op::DequantizeLinear { .. } => "dequantize_linear",
        }
    }

    /// Whether the op only moves or selects elements of its first input (MaxPool, reshapes,
    /// Transpose, Pad, Slice...): exact on integer codes, so its output keeps the input's
    /// quantization.
    pub fn moves_values(&self) -> bool {
        matches!(
            self,
            Op::MaxPool(_)
                | Op::Reshape { .. }
                | Op::Flatten { .. }
                | Op::Transpose { .. }
                | Op::Squeeze { .. }
                | Op::Unsqueeze { .. }
                | Op::Identity
                | Op::Dropout
                | Op::Pad { .. }
                | Op::Slice { .. }
        )
    }

    /// Whether the op multiplies by a stationary weight matrix (goes on a crossbar later).
    pub fn is_matrix_op(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::Gemm { .. } | Op::MatMul)
    }
}
