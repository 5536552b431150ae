//! Operations. Attributes are fully resolved: the importer turns ONNX's optional inputs and
//! defaults (auto_pad, axes given as inputs, negative axes) into the explicit fields here, so a
//! pass or an interpreter never re-derives them.

use crate::{DType, RecurrentAttrs, ResizeAttrs};

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

/// How an op rounds a real number to an integer (QONNX's `rounding_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounding {
    /// To the nearest, halves to even (QONNX's ROUND and HALF_EVEN).
    HalfEven,
    /// Toward +∞.
    Ceil,
    /// Toward −∞.
    Floor,
    /// Away from zero.
    Up,
    /// Toward zero.
    Down,
    /// To the nearest, halves away from zero.
    HalfUp,
    /// To the nearest, halves toward zero.
    HalfDown,
}

impl Rounding {
    pub const ALL: [Rounding; 7] = [
        Rounding::HalfEven,
        Rounding::Ceil,
        Rounding::Floor,
        Rounding::Up,
        Rounding::Down,
        Rounding::HalfUp,
        Rounding::HalfDown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rounding::HalfEven => "half_even",
            Rounding::Ceil => "ceil",
            Rounding::Floor => "floor",
            Rounding::Up => "up",
            Rounding::Down => "down",
            Rounding::HalfUp => "half_up",
            Rounding::HalfDown => "half_down",
        }
    }

    pub fn from_name(s: &str) -> Option<Rounding> {
        Rounding::ALL.into_iter().find(|m| m.name() == s)
    }

    /// `x` rounded, in f32 as numpy computes it for QONNX (`HalfUp` is
    /// `sign(x) · floor(|x| + 0.5)`, the sum rounded to f32 first).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Rounding::HalfEven => x.round_ties_even(),
            Rounding::Ceil => x.ceil(),
            Rounding::Floor => x.floor(),
            Rounding::Up => x.abs().ceil().copysign(x),
            Rounding::Down => x.trunc(),
            Rounding::HalfUp => (x.abs() + 0.5).floor().copysign(x),
            Rounding::HalfDown => (x.abs() - 0.5).ceil().copysign(x),
        }
    }
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

crate::optable::op_family! {
    /// An elementwise function of one float tensor, applied to every element (`Op::Unary`):
    /// the same shape, dtype, kernels and gradient structure for every member, which differ
    /// only in the function (and its derivative, in the float interpreter).
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum UnaryOp {
        /// `e^x`.
        Exp = "exp";
        /// The error function `2/√π ∫₀ˣ e^(−t²) dt`.
        Erf = "erf";
        /// `√x` (NaN below 0).
        Sqrt = "sqrt";
        /// `gamma · x` for `x > 0`, else `gamma · alpha · (e^x − 1)`.
        Selu { alpha: f32, gamma: f32 } = "selu";
        /// The natural logarithm `ln x` (−∞ at 0, NaN below).
        Log = "log";
        /// `|x|`.
        Abs = "abs";
        /// `−x`.
        Neg = "neg";
        /// `1 / x`.
        Reciprocal = "reciprocal";
        /// The least integer `>= x`.
        Ceil = "ceil";
        /// The greatest integer `<= x`.
        Floor = "floor";
        /// The nearest integer, halves to the even one.
        Round = "round";
        /// `ln(1 + e^x)`.
        Softplus = "softplus";
        /// `x / (1 + |x|)`.
        Softsign = "softsign";
        /// `x` for `x >= 0`, else `alpha · (e^x − 1)`.
        Elu { alpha: f32 } = "elu";
        /// `max(0, x) + min(0, alpha · (e^(x/alpha) − 1))`.
        Celu { alpha: f32 } = "celu";
        /// `x · tanh(ln(1 + e^x))`.
        Mish = "mish";
        /// `x` for `x > alpha`, else 0.
        ThresholdedRelu { alpha: f32 } = "thresholded_relu";
        /// `x + bias` for `x < −lambd`, `x − bias` for `x > lambd`, else 0.
        Shrink { bias: f32, lambd: f32 } = "shrink";
        /// `x · Φ(x)` (Φ the standard normal CDF, `½(1 + erf(x/√2))`), or with `tanh` its
        /// approximation `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
        Gelu { tanh: bool } = "gelu";
        /// `+1` for `x >= 0` (−0 included), else `−1` (NaN too): QONNX's BipolarQuant before
        /// its scale.
        Bipolar = "bipolar";
        /// `x` rounded (by `rounding`) to a minifloat of `mantissa_bits` mantissa bits and
        /// exponent bias `exponent_bias`, with subnormals, clamped to `[−max, max]`: QONNX's
        /// `FloatQuant` before its scale. The step at `x` is `2^(e − mantissa_bits)`, `e` the
        /// exponent of `x` (`floor(log2 |x|)`, in f32 as qonnx computes it), and at least
        /// `2^(1 − exponent_bias − mantissa_bits)` (the subnormal step).
        Minifloat {
            mantissa_bits: usize,
            exponent_bias: f32,
            max: f32,
            rounding: Rounding,
        } = "minifloat";
    }
}

crate::optable::op_family! {
    /// An elementwise function of one or more tensors of one dtype, numpy-broadcast to one
    /// shape (`Op::Variadic`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum VariadicOp {
        /// The sum of the inputs (one input: a copy).
        Sum = "sum";
        /// The elementwise minimum (NaN if any input is NaN).
        Min = "min";
        /// The elementwise maximum (NaN if any input is NaN).
        Max = "max";
        /// The arithmetic mean of the inputs (floats only).
        Mean = "mean";
    }
}

crate::optable::op_family! {
    /// A comparison of two numpy-broadcast tensors of one dtype, elementwise, giving `bool`
    /// (`Op::Compare`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum CompareOp {
        /// `a == b` (numbers or bools).
        Equal = "equal";
        /// `a < b`.
        Less = "less";
        /// `a <= b`.
        LessOrEqual = "less_equal";
        /// `a > b`.
        Greater = "greater";
        /// `a >= b`.
        GreaterOrEqual = "greater_equal";
    }
}

crate::optable::op_family! {
    /// A logical function of two numpy-broadcast `bool` tensors (`Op::Logic`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum LogicOp {
        And = "and";
        Or = "or";
        Xor = "xor";
    }
}

crate::optable::op_family! {
    /// How [`Reduce`] combines the elements along its axes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum ReduceOp {
        /// The arithmetic mean.
        Mean = "reduce_mean";
        /// The sum (0 over no elements).
        Sum = "reduce_sum";
        /// The largest element (−∞ over none).
        Max = "reduce_max";
        /// The smallest element (+∞ over none).
        Min = "reduce_min";
        /// The product (1 over no elements).
        Prod = "reduce_prod";
        /// The Euclidean norm `√Σx²`.
        L2 = "reduce_l2";
        /// The sum of squares `Σx²`.
        SumSquare = "reduce_sum_square";
        /// The sum of absolute values `Σ|x|`.
        L1 = "reduce_l1";
        /// `ln Σx`.
        LogSum = "reduce_log_sum";
        /// `ln Σe^x` (computed from the maximum, without overflow).
        LogSumExp = "reduce_log_sum_exp";
    }
}

/// A reduction of a float tensor along some axes (`Op::Reduce`); its mnemonic is its
/// [`ReduceOp`]'s.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub op: ReduceOp,
    /// Sorted, unique axes (the importer resolves ONNX's "none given" to every axis, or to no
    /// reduction at all with `noop_with_empty_axes`).
    pub axes: Vec<usize>,
    /// Reduced axes stay as size 1 (else they are removed).
    pub keep_dims: bool,
}

impl crate::optable::OpFamily for Reduce {
    const NAMES: &'static [&'static str] = <ReduceOp as crate::optable::OpFamily>::NAMES;

    fn name(&self) -> &'static str {
        self.op.name()
    }

    fn print(&self, out: &mut Vec<(&'static str, crate::optable::Attr)>) {
        use crate::optable::AttrField;
        crate::optable::OpFamily::print(&self.op, out);
        self.axes.print("axes", out);
        self.keep_dims.print("keep_dims", out);
    }

    fn parse(
        name: &str,
        a: &mut crate::optable::Attrs,
    ) -> Result<Option<Self>, crate::optable::AttrErr> {
        use crate::optable::AttrField;
        let Some(op) = <ReduceOp as crate::optable::OpFamily>::parse(name, a)? else {
            return Ok(None);
        };
        Ok(Some(Reduce {
            op,
            axes: AttrField::parse("axes", a)?,
            keep_dims: AttrField::parse("keep_dims", a)?,
        }))
    }
}

/// What an op does with integer codes (values with quantization parameters, after the
/// `quantize` pass): the rule the verifier checks between a node's inputs and results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnCodes {
    /// Multiplies by a stationary weight matrix (goes on a crossbar later): on codes, its
    /// weights and bias are codes too (the bias i32) and its result is codes.
    Matrix,
    /// Only moves or selects elements of its first input: exact on codes, so its result keeps
    /// the input's dtype and quantization.
    Moves,
    /// Has an integer form: on codes, its result is codes (with parameters of its own).
    Integer,
    /// Computes in float only: it may not read codes (they are dequantized first).
    Float,
    /// QuantizeLinear: converts reals to codes (inferred on its real input types).
    Quantizes,
    /// DequantizeLinear: converts codes to reals (inferred on its code types).
    Dequantizes,
}

crate::optable::op_table! {
    /// An operation. Inputs are listed per variant as `inputs: ...`; optional trailing inputs
    /// may be absent (the node's input list is shorter).
    ///
    /// This enum is generated from its table (`crate::optable::op_table!`): each line gives the
    /// variant, its mnemonic in the text IR (a family's members have their own), its input and
    /// output counts and what it does with integer codes; its fields are its attributes in the
    /// text form. `docs/adding-an-op.md` is the recipe for a new op.
    #[derive(Clone, Debug, PartialEq)]
    pub enum Op {
        /// inputs: x `[N,C,D..]`, w `[M,C/group,K..]`, optional bias `[M]`.
        Conv(a: ConvAttrs) = "conv", inputs 2..=3, outputs 1..=1, codes Matrix;
        /// inputs: x, scale, bias, mean, var (each `[C]`). Inference mode only.
        BatchNorm { epsilon: f32 } = "batch_norm", inputs 5..=5, outputs 1..=1, codes Integer;
        Relu = "relu", inputs 1..=1, outputs 1..=1, codes Integer;
        /// inputs: x, min, max (scalars; the importer supplies the dtype's bounds when absent).
        Clip = "clip", inputs 3..=3, outputs 1..=1, codes Integer;
        LeakyRelu { alpha: f32 } = "leaky_relu", inputs 1..=1, outputs 1..=1, codes Integer;
        Sigmoid = "sigmoid", inputs 1..=1, outputs 1..=1, codes Integer;
        HardSigmoid { alpha: f32, beta: f32 } = "hard_sigmoid",
            inputs 1..=1, outputs 1..=1, codes Integer;
        HardSwish = "hard_swish", inputs 1..=1, outputs 1..=1, codes Integer;
        Tanh = "tanh", inputs 1..=1, outputs 1..=1, codes Integer;
        /// outputs: y, optional indices (i64).
        MaxPool(a: PoolAttrs) = "max_pool", inputs 1..=1, outputs 1..=2, codes Moves;
        AveragePool(a: PoolAttrs) = "average_pool", inputs 1..=1, outputs 1..=1, codes Integer;
        GlobalAveragePool = "global_average_pool", inputs 1..=1, outputs 1..=1, codes Integer;
        /// inputs: a, b, optional c (unidirectionally broadcastable to `[M,N]`).
        /// `clamp`: a fused activation, as in [`ConvAttrs::clamp`].
        Gemm {
            alpha: f32,
            beta: f32,
            trans_a: bool,
            trans_b: bool,
            clamp: Option<(f32, f32)>,
        } = "gemm", inputs 2..=3, outputs 1..=1, codes Matrix;
        /// numpy matmul semantics (1-D promotion, batch broadcasting).
        MatMul = "matmul", inputs 2..=2, outputs 1..=1, codes Matrix;
        /// numpy broadcasting; integer Div truncates toward zero.
        Add = "add", inputs 2..=2, outputs 1..=1, codes Integer;
        Sub = "sub", inputs 2..=2, outputs 1..=1, codes Integer;
        Mul = "mul", inputs 2..=2, outputs 1..=1, codes Integer;
        Div = "div", inputs 2..=2, outputs 1..=1, codes Integer;
        Concat { axis: usize } = "concat", inputs 1..=usize::MAX, outputs 1..=1, codes Integer;
        Flatten { axis: usize } = "flatten", inputs 1..=1, outputs 1..=1, codes Moves;
        /// The output shape, resolved (no 0 or -1 left).
        Reshape { shape: Vec<usize> } = "reshape", inputs 1..=1, outputs 1..=1, codes Moves;
        Transpose { perm: Vec<usize> } = "transpose", inputs 1..=1, outputs 1..=1, codes Moves;
        /// Sorted, non-negative axes.
        Squeeze { axes: Vec<usize> } = "squeeze", inputs 1..=1, outputs 1..=1, codes Moves;
        /// Sorted, non-negative axes of the output.
        Unsqueeze { axes: Vec<usize> } = "unsqueeze", inputs 1..=1, outputs 1..=1, codes Moves;
        /// `coerce_2d`: opset < 13 semantics (flatten to 2-D at `axis`, softmax over the second).
        Softmax { axis: usize, coerce_2d: bool } = "softmax",
            inputs 1..=1, outputs 1..=1, codes Integer;
        Identity = "identity", inputs 1..=1, outputs 1..=1, codes Moves;
        /// Inference mode: y = x; optional output mask (bool, all true).
        Dropout = "dropout", inputs 1..=1, outputs 1..=2, codes Moves;
        /// inputs: x, optional constant value (scalar). `pads` = `[begin.., end..]` over every
        /// axis; negative entries crop.
        Pad { mode: PadMode, pads: Vec<i64> } = "pad", inputs 1..=2, outputs 1..=1, codes Moves;
        /// inputs: data, indices (i32/i64, negative counts from the end).
        Gather { axis: usize } = "gather", inputs 2..=2, outputs 1..=1, codes Integer;
        /// One entry per sliced axis.
        Slice { axes: Vec<SliceAxis> } = "slice", inputs 1..=1, outputs 1..=1, codes Moves;
        Cast { to: DType } = "cast", inputs 1..=1, outputs 1..=1, codes Integer;
        /// inputs: x (f32), scale, optional zero point (its dtype is the output dtype).
        /// `axis`: per-axis scale; `block_size` > 0: blocked quantization along `axis`.
        QuantizeLinear {
            axis: Option<usize>,
            block_size: usize,
            saturate: bool,
            to: DType,
        } = "quantize_linear", inputs 2..=3, outputs 1..=1, codes Quantizes;
        /// inputs: x (integer), scale, optional zero point.
        DequantizeLinear {
            axis: Option<usize>,
            block_size: usize,
        } = "dequantize_linear", inputs 2..=3, outputs 1..=1, codes Dequantizes;
        /// An elementwise function of one float tensor ([`UnaryOp`]).
        Unary(f: UnaryOp) = family, inputs 1..=1, outputs 1..=1, codes Integer;
        /// An elementwise function of one or more broadcast tensors ([`VariadicOp`]).
        Variadic(f: VariadicOp) = family, inputs 1..=usize::MAX, outputs 1..=1, codes Float;
        /// A reduction along axes ([`Reduce`]).
        Reduce(r: Reduce) = family, inputs 1..=1, outputs 1..=1, codes Float;
        /// inputs: base, exponent (numpy broadcasting; the exponent may have another numeric
        /// dtype). The result has the base's dtype: computed in f64, then converted (integers
        /// truncate toward zero).
        Pow = "pow", inputs 2..=2, outputs 1..=1, codes Integer;
        /// inputs: x, slope (unidirectionally broadcast to x). `x` for `x >= 0`, else
        /// `slope · x`.
        PRelu = "prelu", inputs 2..=2, outputs 1..=1, codes Integer;
        /// The index (i64) of the first largest element along `axis` (the last with
        /// `select_last`); `keep_dims`: the axis stays as size 1.
        ArgMax { axis: usize, keep_dims: bool, select_last: bool } = "arg_max",
            inputs 1..=1, outputs 1..=1, codes Float;
        /// As [`Op::ArgMax`], for the smallest element.
        ArgMin { axis: usize, keep_dims: bool, select_last: bool } = "arg_min",
            inputs 1..=1, outputs 1..=1, codes Float;
        /// The `k` largest (`largest`, else smallest) elements along `axis`, in that order
        /// (equal elements: the lower index first), and their indices (i64) as the second
        /// output.
        TopK { axis: usize, k: usize, largest: bool } = "top_k",
            inputs 1..=1, outputs 1..=2, codes Float;
        /// A comparison of two broadcast tensors giving `bool` ([`CompareOp`]).
        Compare(f: CompareOp) = family, inputs 2..=2, outputs 1..=1, codes Float;
        /// A logical function of two broadcast `bool` tensors ([`LogicOp`]).
        Logic(f: LogicOp) = family, inputs 2..=2, outputs 1..=1, codes Float;
        /// The logical negation of a `bool` tensor.
        Not = "not", inputs 1..=1, outputs 1..=1, codes Float;
        /// inputs: cond (bool), x, y (one dtype), numpy-broadcast together: `x` where `cond`,
        /// else `y`.
        Where = "where", inputs 3..=3, outputs 1..=1, codes Float;
        /// QONNX's Trunc. inputs: x, scale, zero point, trunc scale (a power of two), output
        /// zero point, output scale (each broadcast to x). Every step in f32:
        /// `y = (R(clamp(round(x / scale + zp) / trunc_scale)) − out_zp) · out_scale`, `round`
        /// half to even, `R` the rounding, `clamp` to `[lo, hi]` when given.
        Trunc { rounding: Rounding, clamp: Option<(f32, f32)> } = "trunc",
            inputs 6..=6, outputs 1..=1, codes Float;
        /// FINN's MultiThreshold. inputs: x, thresholds `[C or 1, T]` (C along axis 1, or the
        /// last axis with `channels_last`). In f32: `y = out_scale · #{t : x >= t} + out_bias`.
        MultiThreshold { out_scale: f32, out_bias: f32, channels_last: bool } = "multi_threshold",
            inputs 2..=2, outputs 1..=1, codes Float;
        /// `shape`: the output shape, the input broadcast (numpy rules) with ONNX's shape operand.
        Expand { shape: Vec<usize> } = "expand", inputs 1..=1, outputs 1..=1, codes Moves;
        /// The input repeated `repeats[i]` times along each axis `i`.
        Tile { repeats: Vec<usize> } = "tile", inputs 1..=1, outputs 1..=1, codes Moves;
        /// Consecutive parts along `axis`, of `sizes` (one output per part; they sum to the
        /// axis' size).
        Split { axis: usize, sizes: Vec<usize> } = "split",
            inputs 1..=1, outputs 1..=usize::MAX, codes Moves;
        /// `[N, C, H, W]` to `[N, C/b², H·b, W·b]`; `crd`: the channel index is `c·b² + i·b + j`
        /// (ONNX's CRD mode), else `(i·b + j)·C/b² + c` (DCR).
        DepthToSpace { block: usize, crd: bool } = "depth_to_space",
            inputs 1..=1, outputs 1..=1, codes Moves;
        /// `[N, C, H, W]` to `[N, C·b², H/b, W/b]`, the inverse of DepthToSpace in the same
        /// mode (`crd`: ONNX's CRD, else DCR).
        SpaceToDepth { block: usize, crd: bool } = "space_to_depth",
            inputs 1..=1, outputs 1..=1, codes Moves;
        /// Interpolation to `a.sizes` ([`ResizeAttrs`]). On codes as its attributes say
        /// ([`ResizeAttrs::on_codes`]): nearest moves codes, linear has an integer form.
        Resize(a: ResizeAttrs) = "resize", inputs 1..=1, outputs 1..=1, codes Float;
        /// `x − log Σ e^x` along `axis`; `coerce_2d` as in Softmax.
        LogSoftmax { axis: usize, coerce_2d: bool } = "log_softmax",
            inputs 1..=1, outputs 1..=1, codes Float;
        /// Local response normalization over `size` channels centred on each one:
        /// `x / (bias + alpha/size · Σ x²)^beta`.
        Lrn { size: usize, alpha: f32, beta: f32, bias: f32 } = "lrn",
            inputs 1..=1, outputs 1..=1, codes Integer;
        /// inputs: x `[N,C,D..]`, scale `[C]`, bias `[C]`: each (sample, channel) normalized
        /// over its spatial elements.
        InstanceNorm { epsilon: f32 } = "instance_norm", inputs 3..=3, outputs 1..=1, codes Integer;
        /// inputs: x, scale, optional bias, the last two broadcast (numpy rules) to x's dims from
        /// `axis` on: each group of x's elements over those dims normalized to mean 0 and
        /// variance 1 (`(x − mean) / √(var + epsilon)`), then `· scale + bias`.
        LayerNorm { axis: usize, epsilon: f32 } = "layer_norm",
            inputs 2..=3, outputs 1..=1, codes Integer;
        /// inputs: x `[N,C,D..]`, w `[C,M/group,K..]`, optional bias `[M]`. `conv.pads` crop
        /// the full output (`[begin.., end..]`); `output_padding` is added at the end of each
        /// spatial axis.
        ConvTranspose { conv: ConvAttrs, output_padding: Vec<usize> } = "conv_transpose",
            inputs 2..=3, outputs 1..=1, codes Float;
        /// inputs: x, w `[dirs,4H,I]`, r `[dirs,4H,H]`, b `[dirs,8H]`, initial h and c
        /// `[dirs,batch,H]`, optional peepholes `[dirs,3H]` (the importer supplies zeros for
        /// absent ones). outputs: y, y_h, y_c.
        Lstm(a: RecurrentAttrs) = "lstm", inputs 6..=7, outputs 1..=3, codes Float;
        /// inputs: x, w `[dirs,3H,I]`, r `[dirs,3H,H]`, b `[dirs,6H]`, initial h. outputs: y,
        /// y_h.
        Gru(a: RecurrentAttrs) = "gru", inputs 5..=5, outputs 1..=2, codes Float;
        /// inputs: x, w `[dirs,H,I]`, r `[dirs,H,H]`, b `[dirs,2H]`, initial h. outputs: y, y_h.
        Rnn(a: RecurrentAttrs) = "rnn", inputs 5..=5, outputs 1..=2, codes Float;
        /// Internal (no ONNX op: the `conv-transpose` pass writes it). Along each spatial axis
        /// `i` (axes 2..): `strides[i] − 1` zeros between consecutive elements, then `pads[i]`
        /// zeros before and `pads[n + i]` after (a negative pad crops). A ConvTranspose is this
        /// followed by a Conv of the flipped kernel.
        ZeroInsert { strides: Vec<usize>, pads: Vec<i64> } = "zero_insert",
            inputs 1..=1, outputs 1..=1, codes Moves;
    }
}

impl Op {
    /// What the op does with integer codes: its table line's word, refined by the attributes
    /// of the ops whose line cannot say it alone (Resize: nearest only moves codes).
    pub fn on_codes(&self) -> OnCodes {
        match self {
            Op::Resize(a) => a.on_codes(),
            _ => self.table_on_codes(),
        }
    }

    /// Whether the op only moves or selects elements of its first input (MaxPool, reshapes,
    /// Transpose, Pad, Slice...): exact on integer codes, so its output keeps the input's
    /// quantization.
    pub fn moves_values(&self) -> bool {
        match self.on_codes() {
            OnCodes::Moves => true,
            OnCodes::Matrix
            | OnCodes::Integer
            | OnCodes::Float
            | OnCodes::Quantizes
            | OnCodes::Dequantizes => false,
        }
    }

    /// Whether the op multiplies by a stationary weight matrix (goes on a crossbar later).
    pub fn is_matrix_op(&self) -> bool {
        match self.on_codes() {
            OnCodes::Matrix => true,
            OnCodes::Moves
            | OnCodes::Integer
            | OnCodes::Float
            | OnCodes::Quantizes
            | OnCodes::Dequantizes => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rounding;

    /// Each rounding at ties, between them and on both signs, against its definition.
    #[test]
    fn roundings_at_ties_and_between() {
        let cases: [(Rounding, [f32; 6]); 7] = [
            (Rounding::HalfEven, [2.0, -2.0, 4.0, 2.0, -3.0, 0.0]),
            (Rounding::Ceil, [3.0, -2.0, 4.0, 3.0, -2.0, 1.0]),
            (Rounding::Floor, [2.0, -3.0, 3.0, 2.0, -3.0, 0.0]),
            (Rounding::Up, [3.0, -3.0, 4.0, 3.0, -3.0, 1.0]),
            (Rounding::Down, [2.0, -2.0, 3.0, 2.0, -2.0, 0.0]),
            (Rounding::HalfUp, [3.0, -3.0, 4.0, 2.0, -3.0, 0.0]),
            (Rounding::HalfDown, [2.0, -2.0, 3.0, 2.0, -3.0, 0.0]),
        ];
        let xs = [2.5f32, -2.5, 3.5, 2.25, -2.75, 0.25];
        for (r, want) in cases {
            let got: Vec<f32> = xs.iter().map(|&x| r.apply(x)).collect();
            assert_eq!(got, want, "{}", r.name());
            assert_eq!(Rounding::from_name(r.name()), Some(r));
        }
    }
}
