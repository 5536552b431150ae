//! The bit-accurate interpreter program: the golden model of the chip.
//!
//! A [`Program`] is a list of [`Step`]s over numbered buffers. Every buffer holds either f32
//! values (the graph's float inputs and outputs) or integer codes of a [`CodeType`]; every step
//! that produces codes from an accumulator carries a [`Requant`], executed by
//! [`crate::arith::requantize`]. Nothing in a program is float arithmetic except the explicit
//! `Quantize`/`Dequantize` steps at the edges and float-only epilogues (`Softmax`).
//!
//! File forms: a compact binary file (`.cimp`: the 8-byte magic `CIMCPROG`, a little-endian u32
//! format version, then the program serialized with postcard) and a readable text listing
//! ([`listing`]). The format is documented in `docs/program-format.md`; a change to these types
//! bumps [`FORMAT_VERSION`].

pub mod listing;
pub mod lower;

use crate::arith::FixedMultiplier;
use crate::error::{BackendError, Result};
use crate::target::TargetRecord;
use cimc_ir::CrossbarGeometry;
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"CIMCPROG";
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format version still read: version 3 recorded the target as its stamp line only
/// (read as [`TargetRecord::Stamp`]).
pub const OLDEST_FORMAT_VERSION: u32 = 3;
/// Most elements a buffer of a program read from a file may declare (2^32: 16 GiB of f32). A
/// buffer is allocated when the program runs, so its declared size is all a file controls.
pub const MAX_BUFFER_ELEMENTS: usize = 1 << 32;

/// The product of `shape`, `None` on overflow.
fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// A buffer index.
pub type Buf = usize;

/// The element type of integer codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeType {
    pub bits: u8,
    pub signed: bool,
}

impl CodeType {
    pub fn range(self) -> (i32, i32) {
        crate::arith::code_range(self.bits, self.signed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Elem {
    F32,
    Code(CodeType),
}

/// Quantization of a code buffer (`real = scale · (code − zero_point)`), for reading it back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BufQuant {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i32>,
    pub axis: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BufferDecl {
    pub name: String,
    pub shape: Vec<usize>,
    pub elem: Elem,
    pub quant: Option<BufQuant>,
}

impl BufferDecl {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Requantization of an accumulator to output codes (§4): one multiplier per output channel
/// (or one for the tensor), the output zero point and the clamp range (the output type's range,
/// narrowed by a fused ReLU/Clip).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requant {
    pub mult: Vec<FixedMultiplier>,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

impl Requant {
    #[inline]
    pub fn apply(&self, acc: i64, channel: usize) -> i32 {
        let m = if self.mult.len() == 1 { self.mult[0] } else { self.mult[channel] };
        crate::arith::requantize(acc, m, self.zero_point, self.lo, self.hi)
    }
}

/// Integer weights, row-major, with their code width.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntTensor {
    pub shape: Vec<usize>,
    pub bits: u8,
    pub data: Vec<i32>,
}

/// Spatial window of a convolution or pooling (resolved, n spatial dims).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// `[begin.., end..]`
    pub pads: Vec<usize>,
}

/// The crossbar execution of a Conv or Gemm step (`docs/hardware-model.md` §1 and §3).
///
/// For each im2col vector of a group, the crossbar receives `v[k] = q_x[k] − input_min`
/// (padding: `z_x − input_min`). Rows `k` are cut into row tiles of `rows`; the weight codes of
/// output column `n` are stored as unsigned magnitudes of `magnitude_bits` bits (differential:
/// `max(w,0)` and `max(−w,0)`; offset: `w + 2^(weight_bits−1)`) split into
/// `S_w = ceil(magnitude_bits / cell_bits)` slices; inputs are applied in
/// `S_x = ceil(input_bits / dac_bits)` slices. Every partial sum `P` of (row tile, input slice,
/// weight slice, physical column) goes through the ADC
/// `A(P) = 2^e · min((P + 2^e/2) >> e, 2^adc_bits − 1)` with `e = adc_step[column group of n]`
/// (or `adc_step[0]` when there is one step for the layer); then shift-and-add:
/// `acc[n] = Σ 2^(i·dac_bits + j·cell_bits) · (A(P⁺) − A(P⁻))` (differential) or
/// `Σ 2^(i·dac_bits + j·cell_bits) · A(P) − 2^(weight_bits−1) · Σ_k v[k]` (offset), plus
/// `(input_min − z_x) · Σ_k w[k,n]` and the bias, then the step's requantization.
///
/// Column groups: an array of `cols` physical columns holds
/// `cpg = cols / (S_w · (2 if differential else 1))` outputs of a group; with `mg` outputs per
/// group, output `n` is in column group `(n / mg) · ceil(mg / cpg) + (n % mg) / cpg`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Crossbar {
    /// The arrays: encoding, `R` (rows per row tile), `C` (physical columns of one array, for
    /// column groups), `cell_bits`, `dac_bits`, `adc_bits`.
    pub geometry: CrossbarGeometry,
    pub weight_bits: u32,
    pub magnitude_bits: u32,
    pub input_bits: u32,
    pub input_min: i32,
    /// `e` per layer (one entry) or per column group.
    pub adc_step: Vec<u32>,
    /// The physical arrays of each replica of the layer (sorted), as the `tile` pass placed
    /// them; empty when the step was not placed on a chip. Execution ignores it; the stream
    /// emitter makes one crossbar group per replica.
    pub arrays: Vec<Vec<u32>>,
}

impl Crossbar {
    pub fn weight_slices(&self) -> u32 {
        self.magnitude_bits.div_ceil(self.geometry.cell_bits.max(1))
    }

    pub fn input_slices(&self) -> u32 {
        self.input_bits.div_ceil(self.geometry.dac_bits.max(1))
    }

    pub fn columns_per_output(&self) -> usize {
        self.geometry.columns_per_output(self.weight_slices())
    }

    /// The largest partial sum of a row tile of `rows` rows.
    pub fn p_max(&self, rows: usize) -> u64 {
        self.geometry.p_max(rows)
    }

    pub fn adc_top(&self) -> u64 {
        self.geometry.adc_top()
    }

    /// Every conversion is exact for a matrix of `k` rows: then the result is the exact
    /// integer dot product, and one integer GEMM computes it.
    pub fn is_lossless(&self, k: usize) -> bool {
        self.p_max(k.min(self.geometry.rows)) <= self.adc_top()
            && self.adc_step.iter().all(|&e| e == 0)
    }

    /// The column group of output `n` when each group has `mg` outputs.
    pub fn column_group_of(&self, n: usize, mg: usize) -> usize {
        let cpg = (self.geometry.cols / self.columns_per_output().max(1)).max(1);
        (n / mg.max(1)) * mg.div_ceil(cpg) + (n % mg.max(1)) / cpg
    }

    /// The ADC step exponent of output `n`.
    pub fn step_of(&self, n: usize, mg: usize) -> u32 {
        if self.adc_step.len() == 1 {
            self.adc_step[0]
        } else {
            self.adc_step.get(self.column_group_of(n, mg)).copied().unwrap_or(0)
        }
    }

    /// The ADC of §3.
    #[inline]
    pub fn adc(&self, p: u64, e: u32) -> u64 {
        let half = if e == 0 { 0 } else { 1u64 << (e - 1) };
        ((p + half) >> e).min(self.adc_top()) << e
    }

    /// Checks the numbers are in range (a program from a file is not trusted): the geometry's
    /// bounds ([`CrossbarGeometry::validate`]), then the code widths and ADC steps.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let ok = |c: bool, m: &str| if c { Ok(()) } else { Err(m.to_string()) };
        let x = &self.geometry;
        x.validate()?;
        ok((2..=16).contains(&self.weight_bits), "weight_bits must be 2..=16")?;
        ok((1..=17).contains(&self.magnitude_bits), "magnitude_bits must be 1..=17")?;
        ok((1..=16).contains(&self.input_bits), "input_bits must be 1..=16")?;
        ok(self.columns_per_output() <= x.cols, "one output needs more columns than an array has")?;
        ok(
            !self.adc_step.is_empty() && self.adc_step.iter().all(|&e| e <= 40),
            "adc_step must hold 1.. exponents ≤ 40",
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// f32 → codes: `clamp(round_half_even(x / scale) + zero_point, lo, hi)`.
    Quantize {
        input: Buf,
        output: Buf,
        scale: f32,
        zero_point: i32,
        lo: i32,
        hi: i32,
    },
    /// codes → f32: `scale[c] · (q − zero_point[c])` (per channel along `axis`, or per tensor).
    Dequantize {
        input: Buf,
        output: Buf,
    },
    /// Integer convolution: `acc[n] = Σ (q_x − z_x) · w + bias[n]`, then `requant`. Padding
    /// reads the code `z_x` (real 0). Weights `[M, C/group, k..]`.
    Conv {
        input: Buf,
        output: Buf,
        input_zero_point: i32,
        weights: IntTensor,
        bias: Vec<i64>,
        window: Window,
        group: usize,
        requant: Requant,
        /// `Some`: computed as the crossbar computes it; `None`: the exact integer product.
        crossbar: Option<Crossbar>,
    },
    /// Integer matrix product `[M,K] × [K,N]` (weights already `[K,N]`), plus bias, then requant.
    Gemm {
        input: Buf,
        output: Buf,
        input_zero_point: i32,
        weights: IntTensor,
        bias: Vec<i64>,
        requant: Requant,
        /// As for `Conv`.
        crossbar: Option<Crossbar>,
    },
    /// A per-channel affine op (an unfolded BatchNormalization, §4):
    /// `acc = (q − z_x) · scale[c] + bias[c]` along axis 1, then requant.
    Affine {
        input: Buf,
        output: Buf,
        input_zero_point: i32,
        scale: Vec<i32>,
        bias: Vec<i64>,
        requant: Requant,
    },
    /// Requantize element-wise (`acc = q − z_x`): a standalone ReLU/Clip or a change of scale.
    Rescale {
        input: Buf,
        output: Buf,
        input_zero_point: i32,
        requant: Requant,
    },
    /// Max pooling on codes (exact); padding never wins.
    MaxPool {
        input: Buf,
        output: Buf,
        window: Window,
        ceil_mode: bool,
    },
    /// Average pooling: integer sum of `q − z_x`, then requant with `mult_by_count[k−1]`
    /// (= s_x / (s_y · k)) where `k` is the window's element count (with or without padding).
    AvgPool {
        input: Buf,
        output: Buf,
        window: Window,
        ceil_mode: bool,
        count_include_pad: bool,
        input_zero_point: i32,
        mult_by_count: Vec<FixedMultiplier>,
        zero_point: i32,
        lo: i32,
        hi: i32,
    },
    /// Global average pooling over all spatial positions: sum, then requant (M = s_x/(s_y·HW)).
    GlobalAvgPool {
        input: Buf,
        output: Buf,
        input_zero_point: i32,
        requant: Requant,
    },
    /// Element-wise sum of two code tensors (numpy broadcasting): each input minus its zero
    /// point, shifted left by `headroom` bits, rescaled to a common scale with its own multiplier
    /// (rounded once each), summed, then requantized with `requant`.
    Add {
        a: Buf,
        b: Buf,
        output: Buf,
        a_zero_point: i32,
        b_zero_point: i32,
        headroom: u32,
        a_mult: FixedMultiplier,
        b_mult: FixedMultiplier,
        requant: Requant,
    },
    /// Concatenation along `axis`; inputs whose scale differs from the output's are requantized
    /// (`Some`), others copied.
    Concat {
        inputs: Vec<Buf>,
        output: Buf,
        axis: usize,
        rescale: Vec<Option<(i32, Requant)>>,
    },
    /// Same elements in the same order, another shape (Reshape, Flatten, Squeeze, Unsqueeze).
    Reshape {
        input: Buf,
        output: Buf,
    },
    Transpose {
        input: Buf,
        output: Buf,
        perm: Vec<usize>,
    },
    /// Constant padding with a code (`pads` = `[begin.., end..]` over every axis).
    Pad {
        input: Buf,
        output: Buf,
        pads: Vec<usize>,
        code: i32,
    },
    /// Float softmax (an epilogue after a Dequantize: the digital host computes it).
    Softmax {
        input: Buf,
        output: Buf,
        axis: usize,
    },
    /// An element-wise function of one code tensor as a table computed at compile time:
    /// `y = table[q − input_min]`, one entry per code of the input type (`docs/hardware-model.md`
    /// §4, "Lookup tables").
    Lut {
        input: Buf,
        output: Buf,
        input_min: i32,
        table: Vec<i32>,
    },
    /// Element-wise difference of two code tensors (numpy broadcasting): the `Add` recipe on `a`
    /// and on `b` negated about its zero point (`z_b − q_b` shifted and rescaled).
    Sub {
        a: Buf,
        b: Buf,
        output: Buf,
        a_zero_point: i32,
        b_zero_point: i32,
        headroom: u32,
        a_mult: FixedMultiplier,
        b_mult: FixedMultiplier,
        requant: Requant,
    },
    /// Element-wise product of two code tensors (numpy broadcasting):
    /// `acc = (q_a − z_a)·(q_b − z_b)`, then `requant` (`M = s_a·s_b / s_y`).
    Mul {
        a: Buf,
        b: Buf,
        output: Buf,
        a_zero_point: i32,
        b_zero_point: i32,
        requant: Requant,
    },
    /// Element-wise quotient of two code tensors (numpy broadcasting):
    /// `acc = (q_a − z_a)·reciprocal[q_b − b_min]`, `reciprocal[k] = round(2^DIV_SHIFT / (q − z_b))`
    /// for the code `q = b_min + k`, then `requant` (`M = s_a / (s_b·s_y·2^DIV_SHIFT)`). A divisor
    /// code equal to `b_zero_point` (real 0) gives the clamp bound of the dividend's sign, or the
    /// output zero point for `0 / 0`.
    Div {
        a: Buf,
        b: Buf,
        output: Buf,
        a_zero_point: i32,
        b_zero_point: i32,
        b_min: i32,
        reciprocal: Vec<i64>,
        requant: Requant,
    },
    /// Softmax on codes along `axis`: per row, `d = max(q) − q`, `e = exp_table[d]`
    /// (`round(2^EXP_BITS·exp(−s_x·d))`), `t = round_half_up(e·2^32 / Σ e)`, then `requant`
    /// (`M = 1 / (s_y·2^32)`); `docs/hardware-model.md` §4, "Softmax on codes".
    IntSoftmax {
        input: Buf,
        output: Buf,
        axis: usize,
        exp_table: Vec<i64>,
        requant: Requant,
    },
    /// Output element `i` is input element `index[i]` (row-major), or the output's zero point
    /// (the code of 0.0) where `index[i]` is [`GATHER_ZERO_POINT`]: the ops that only move codes
    /// and have no step of their own (Expand, Tile, Split, Slice, DepthToSpace, SpaceToDepth,
    /// nearest Resize, ZeroInsert). `lower` takes the indices from the float interpreter run on
    /// the input's element numbers.
    Gather {
        input: Buf,
        output: Buf,
        index: Vec<u32>,
    },
    /// Matrix product of two code tensors, broadcast as ONNX MatMul (numpy's matmul: the batch
    /// axes broadcast, a 1-D `a` is a row, a 1-D `b` a column; [`matmul_shape`]):
    /// `acc = Σ_k (q_a − z_a)·(q_b − z_b)` in i64, then `requant` (`M = s_a·s_b / s_y`), as
    /// onnxruntime's QLinearMatMul.
    MatMulCodes {
        a: Buf,
        b: Buf,
        output: Buf,
        a_zero_point: i32,
        b_zero_point: i32,
        requant: Requant,
    },
    /// Rows of a constant table picked by integer indices (ONNX Gather along axis 0 of a
    /// constant, an embedding): output row `i` is row `indices[i]` of `table` (`rows` rows,
    /// row-major), the constant's values quantized once at compile time to the output's codes.
    /// An index `k < 0` counts from the end (`k + rows`), as in ONNX; one outside
    /// `[−rows, rows)` is an error when the program runs.
    GatherRows {
        indices: Buf,
        output: Buf,
        rows: usize,
        table: Vec<i32>,
    },
    /// An element-wise function of one code tensor and constants of several values (a
    /// per-channel Mul or Add, PRelu's slopes): one table per element of the constants
    /// broadcast together, `table_shape` (the output's rank, each axis 1 or the output's). Output
    /// element `i` reads `tables[t·n + q − input_min]`, `n` the entries of one table (one per
    /// code of the input type, ≤ 16 bits), `t` the element of `table_shape` that `i` broadcasts
    /// from and `q` the input code it broadcasts from (numpy rules for both). `lower` evaluates
    /// each table as [`Step::Lut`]'s: the op at every code and that element, rounded once.
    LutPerElement {
        input: Buf,
        output: Buf,
        input_min: i32,
        table_shape: Vec<usize>,
        tables: Vec<i32>,
    },
    /// Local response normalization on codes (`[N, C, ..]`): per element, the sum over the
    /// channel window `c − ⌊(size−1)/2⌋ ..= c + ⌈(size−1)/2⌉` (within the input) of
    /// `(q − z_x)²` exactly in integers, then `y = s_x·(q − z_x)·(bias + alpha/size·s_x²·Σ)^−beta`
    /// evaluated once in f64 and rounded once to the output code ([`FloatRequant`]).
    Lrn {
        input: Buf,
        output: Buf,
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
        rounding: FloatRequant,
    },
    /// Normalization over the axes from `axis` on (InstanceNormalization: `axis = 2`, one group
    /// per sample and channel; the same reduction serves LayerNormalization's trailing axes). Per
    /// group of `n` codes, `S1 = Σ (q − z_x)` and `S2 = Σ (q − z_x)²` exactly in integers; then
    /// each `y = scale·s_x·(n·(q − z_x) − S1) / (n·√(s_x²·(n·S2 − S1²)/n² + epsilon)) + bias`
    /// (mean and variance from the exact sums: `n·S2 − S1²` is exact) evaluated in f64 and
    /// rounded once to the output code ([`FloatRequant`]). `scale` and `bias` broadcast from
    /// `affine_shape` (the input's rank, numpy rules: `[1, C, 1..]` for InstanceNormalization).
    Normalize {
        input: Buf,
        output: Buf,
        axis: usize,
        epsilon: f32,
        affine_shape: Vec<usize>,
        scale: Vec<f32>,
        bias: Vec<f32>,
        rounding: FloatRequant,
    },
    /// Linear Resize on codes: output element `o` is
    /// `acc = Σ_k (Π_a weight_a[o_a][k_a])·(q[tap_k] − input_zero_point)` over the 2^n taps of
    /// the `n` resized `axes` (every other axis keeps its index), then `requant`
    /// (`M = s_x / (s_y·2^(RESIZE_FRAC_BITS·n))`). The taps and their weights are the float
    /// interpreter's (`cimc_interp::resize_axes`), each axis' pair rounded to sum
    /// `2^RESIZE_FRAC_BITS`.
    Resize {
        input: Buf,
        output: Buf,
        input_zero_point: i32,
        axes: Vec<ResizeAxis>,
        requant: Requant,
    },
    /// LayerNormalization on codes in integers only (`docs/hardware-model.md` §4, "LayerNorm
    /// on codes"): per group of the `n` codes from `axis` on, `d = q − z_x`, `S1 = Σ d`,
    /// `S2 = Σ d²` and `V = (n·S2 − S1²)·2^LN_EPS_BITS + epsilon_term` exactly
    /// (`epsilon_term = n²·ε/s_x²·2^LN_EPS_BITS` rounded at compile time);
    /// `r = ⌊√(V·2^(2·LN_ROOT_BITS − LN_EPS_BITS))⌋` ([`crate::arith::isqrt`],
    /// Newton's iteration on integers); `t = round((n·d − S1)·2^(LN_FRAC_BITS + LN_ROOT_BITS) /
    /// r)` (half away from zero; 0 when `r = 0`), the normalized value with `LN_FRAC_BITS`
    /// fraction bits; then `acc = t·gamma[j] + beta[j]`, `j` the element's place in its group,
    /// and `requant` (one multiplier `M = s_γ / (s_y·2^LN_FRAC_BITS)`; `gamma` the scale in
    /// `LN_GAMMA_BITS`-bit codes of step `s_γ`, `beta` the bias in units of `s_γ·2^−LN_FRAC_BITS`).
    IntLayerNorm {
        input: Buf,
        output: Buf,
        axis: usize,
        input_zero_point: i32,
        epsilon_term: i64,
        gamma: Vec<i32>,
        beta: Vec<i64>,
        requant: Requant,
    },
}

/// The output shape of a matrix product of operands shaped `a` and `b`, as ONNX MatMul
/// broadcasts them (`None` when they do not fit): a 1-D `a` is a row `[1, K]` whose axis is
/// dropped from the result, a 1-D `b` a column `[K, 1]` likewise, and the batch axes before the
/// last two broadcast as numpy's do.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let (ra, rb) = (a.len(), b.len());
    if ra == 0 || rb == 0 {
        return None;
    }
    let a2: Vec<usize> = if ra == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if rb == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return None;
    }
    let (ba, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let rank = ba.len().max(bb.len());
    let mut out = Vec::with_capacity(rank + 2);
    for d in 0..rank {
        let da = if d + ba.len() >= rank { ba[d + ba.len() - rank] } else { 1 };
        let db = if d + bb.len() >= rank { bb[d + bb.len() - rank] } else { 1 };
        out.push(match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        });
    }
    if ra > 1 {
        out.push(m);
    }
    if rb > 1 {
        out.push(n);
    }
    Some(out)
}

/// The f64 route of a step computed in floating point from exact integer sums (`Lrn`,
/// `Normalize`): the input's real value `s_x·(q − z_x)` in f64, and the one rounding of an f64
/// result `y` to the output code, `clamp(round_half_even(y / s_y) + z_y, lo, hi)` (NaN gives
/// `z_y`, ±∞ the clamp bound).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloatRequant {
    pub input_scale: f32,
    pub input_zero_point: i32,
    pub output_scale: f32,
    pub output_zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

impl FloatRequant {
    /// The output code of the real result `y`.
    #[inline]
    pub fn code(&self, y: f64) -> i32 {
        if y.is_nan() {
            return self.output_zero_point.clamp(self.lo, self.hi);
        }
        let v = (y / self.output_scale as f64).round_ties_even() + self.output_zero_point as f64;
        v.clamp(self.lo as f64, self.hi as f64) as i32
    }
}

/// One resized axis of a [`Step::Resize`]: per output index along `axis`, two input indices
/// and their fixed-point weights (`2^RESIZE_FRAC_BITS` in all).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResizeAxis {
    pub axis: usize,
    pub index: Vec<[u32; 2]>,
    pub weight: Vec<[i32; 2]>,
}

/// A [`Step::Gather`] index meaning "the output's zero point" rather than an input element.
pub const GATHER_ZERO_POINT: u32 = u32::MAX;

/// Fractional bits of a [`Step::Resize`]'s tap weights.
pub const RESIZE_FRAC_BITS: u32 = 12;

/// Fraction bits of the normalized value `t` of a [`Step::IntLayerNorm`].
pub const LN_FRAC_BITS: u32 = 16;
/// Extra bits of the square root of a [`Step::IntLayerNorm`]: `r = ⌊√V⌋·2^LN_ROOT_BITS` to
/// within one unit.
pub const LN_ROOT_BITS: u32 = 16;
/// Bits of a [`Step::IntLayerNorm`]'s scale codes `gamma` (signed).
pub const LN_GAMMA_BITS: u32 = 16;
/// Fraction bits of a [`Step::IntLayerNorm`]'s epsilon term (in codes², so that its rounding
/// is negligible beside the smallest variance of distinct codes).
pub const LN_EPS_BITS: u32 = 16;
/// The most codes one [`Step::IntLayerNorm`] group may hold (its sums then fit an i128 with room).
pub const LN_MAX_GROUP: usize = 1 << 24;

/// Bits of the fixed-point reciprocals of a `Div` step.
pub const DIV_SHIFT: u32 = 30;
/// Bits of the fixed-point exponentials of an `IntSoftmax` step: `exp_table[0] = 2^EXP_BITS`.
pub const EXP_BITS: u32 = 30;
/// The most entries a table of a step may have (a 16-bit input code type).
pub const MAX_TABLE: usize = 1 << 16;
/// The most entries the tables of one [`Step::LutPerElement`] may hold in all (16 MiB of i32).
pub const MAX_TABLE_ENTRIES: usize = 1 << 22;

/// A Conv or a Gemm step seen as the matrix product both are: the fields they share, and what
/// only a convolution has. [`Step::as_matrix`] is the one place that says which steps are
/// matrix products; the emitter, the validator and the simulators read them through it.
#[derive(Clone, Copy, Debug)]
pub struct MatrixStep<'a> {
    pub input: Buf,
    pub output: Buf,
    pub input_zero_point: i32,
    pub weights: &'a IntTensor,
    pub bias: &'a [i64],
    pub requant: &'a Requant,
    pub crossbar: Option<&'a Crossbar>,
    pub kind: MatrixKind<'a>,
}

/// What differs between the matrix steps.
#[derive(Clone, Copy, Debug)]
pub enum MatrixKind<'a> {
    /// Weights `[M, C/group, k..]`; the vectors are the im2col windows of the input.
    Conv { window: &'a Window, group: usize },
    /// Weights `[K, N]`; the vectors are the input's rows.
    Gemm,
}

impl MatrixStep<'_> {
    /// `(K, M)`: rows of one conv group's matrix and output channels of the whole layer (0
    /// where the weights' shape is too short to say).
    pub fn k_and_m(&self) -> (usize, usize) {
        let shape = &self.weights.shape;
        match self.kind {
            MatrixKind::Conv { .. } => {
                (shape.iter().skip(1).product(), shape.first().copied().unwrap_or(0))
            }
            MatrixKind::Gemm => {
                (shape.first().copied().unwrap_or(0), shape.get(1).copied().unwrap_or(0))
            }
        }
    }

    /// Conv groups (1 for a Gemm).
    pub fn groups(&self) -> usize {
        match self.kind {
            MatrixKind::Conv { group, .. } => group,
            MatrixKind::Gemm => 1,
        }
    }

    /// The weight of row `kk` (of its conv group's matrix) and output channel `n`, for a layer
    /// of `(k, m)` = [`MatrixStep::k_and_m`].
    pub fn weight_at(&self, (k, m): (usize, usize), kk: usize, n: usize) -> i32 {
        match self.kind {
            MatrixKind::Conv { .. } => self.weights.data[n * k + kk],
            MatrixKind::Gemm => self.weights.data[kk * m + n],
        }
    }

    /// The weights hold what their shape declares, one bias per output channel and one
    /// multiplier per channel or for all, and the crossbar's numbers are in range.
    fn validate(&self) -> std::result::Result<(), String> {
        if let Some(x) = self.crossbar {
            x.validate().map_err(|m| format!("crossbar: {m}"))?;
        }
        let w = self.weights;
        let numel = checked_numel(&w.shape);
        if numel != Some(w.data.len()) {
            let numel = numel.map_or("too many".into(), |n| n.to_string());
            return Err(format!("weights declare {numel} values, hold {}", w.data.len()));
        }
        let m = self.k_and_m().1;
        let mults = self.requant.mult.len();
        if self.bias.len() != m || (mults != 1 && mults != m) {
            return Err(format!(
                "{m} output channels but {} biases, {mults} multipliers",
                self.bias.len()
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    pub buffers: Vec<BufferDecl>,
    pub inputs: Vec<Buf>,
    pub outputs: Vec<Buf>,
    pub steps: Vec<Step>,
    /// The IR node each step comes from (same length as `steps`), for reports and messages.
    pub origins: Vec<String>,
    /// The chip the program was mapped for: the whole target when the compiler had it (cost
    /// figures and noise included), else the graph's stamp line `name hash=HEX summary`.
    pub target: Option<TargetRecord>,
}

/// The body of a version-3 file: the target was its stamp line.
#[derive(Deserialize)]
struct ProgramV3 {
    name: String,
    buffers: Vec<BufferDecl>,
    inputs: Vec<Buf>,
    outputs: Vec<Buf>,
    steps: Vec<Step>,
    origins: Vec<String>,
    target: Option<String>,
}

impl From<ProgramV3> for Program {
    fn from(p: ProgramV3) -> Program {
        Program {
            name: p.name,
            buffers: p.buffers,
            inputs: p.inputs,
            outputs: p.outputs,
            steps: p.steps,
            origins: p.origins,
            target: p.target.map(TargetRecord::Stamp),
        }
    }
}

impl Program {
    /// The binary file form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("invariant: writing to a Vec cannot fail");
        out
    }

    /// Writes the binary file form ([`Program::to_bytes`]'s bytes) to `w`, serializing as it
    /// goes (no copy of the whole file in memory).
    pub fn write_to(&self, mut w: impl std::io::Write) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        postcard::to_io(self, w).map(|_| ()).map_err(std::io::Error::other)
    }

    /// Reads the binary file form; checks the magic, the version and every buffer reference.
    /// Versions from [`OLDEST_FORMAT_VERSION`] on are read.
    pub fn from_bytes(bytes: &[u8]) -> Result<Program> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(BackendError::Format(
                "not a cimc program (missing the CIMCPROG magic)".into(),
            ));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let malformed = |e| BackendError::Format(format!("malformed program body: {e}"));
        let p: Program = match version {
            FORMAT_VERSION => crate::error::decode_body(&bytes[12..], 12).map_err(malformed)?,
            3 => {
                crate::error::decode_body::<ProgramV3>(&bytes[12..], 12).map_err(malformed)?.into()
            }
            _ => {
                return Err(BackendError::Format(format!(
                    "program format version {version}; this cimc reads versions \
                     {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"
                )))
            }
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks that every step names existing buffers of the right kinds and sizes, so an
    /// executor can index without checking again.
    pub fn validate(&self) -> Result<()> {
        let n = self.buffers.len();
        let bad = |i: usize, msg: String| BackendError::Format(format!("step {i}: {msg}"));
        for &b in self.inputs.iter().chain(&self.outputs) {
            if b >= n {
                return Err(BackendError::Format(format!(
                    "input/output buffer {b} does not exist"
                )));
            }
        }
        for (i, b) in self.buffers.iter().enumerate() {
            // Codes are i32.
            if let Elem::Code(c) = b.elem {
                if !(1..=32).contains(&c.bits) {
                    return Err(BackendError::Format(format!(
                        "buffer {i} '{}' holds {}-bit codes (1..=32 expected)",
                        b.name, c.bits
                    )));
                }
            }
            if checked_numel(&b.shape).is_none_or(|n| n > MAX_BUFFER_ELEMENTS) {
                return Err(BackendError::Format(format!(
                    "buffer {i} '{}' declares shape {:?}, above {MAX_BUFFER_ELEMENTS} elements",
                    b.name, b.shape
                )));
            }
        }
        if self.origins.len() != self.steps.len() {
            return Err(BackendError::Format(format!(
                "{} steps but {} origins",
                self.steps.len(),
                self.origins.len()
            )));
        }
        for (i, s) in self.steps.iter().enumerate() {
            for b in step_buffers(s) {
                if b >= n {
                    return Err(bad(i, format!("buffer {b} does not exist ({n} buffers)")));
                }
            }
            if let Some(m) = s.as_matrix() {
                m.validate().map_err(|msg| bad(i, msg))?;
            }
            self.validate_tables(s).map_err(|msg| bad(i, msg))?;
        }
        Ok(())
    }
}

impl Program {
    /// The code type of buffer `b` (checked to exist), or why it has none.
    fn code_type(&self, b: Buf) -> std::result::Result<CodeType, String> {
        match self.buffers[b].elem {
            Elem::Code(c) => Ok(c),
            Elem::F32 => Err(format!("buffer b{b} holds f32 values, codes expected")),
        }
    }

    /// A step's table has one entry per code of the type it is indexed by, starting at that
    /// type's smallest code, so an executor indexes it without checking again; its entries are
    /// codes of the output type.
    fn validate_tables(&self, s: &Step) -> std::result::Result<(), String> {
        let table_of = |b: Buf, min: i32, len: usize| -> std::result::Result<(), String> {
            let c = self.code_type(b)?;
            let (lo, hi) = c.range();
            let want = (hi as i64 - lo as i64 + 1) as usize;
            if c.bits > 16 || min != lo || len != want {
                return Err(format!(
                    "a table of {len} entries from code {min} for {}-bit codes of [{lo}, {hi}] \
                     (at most 16-bit inputs, one entry per code)",
                    c.bits
                ));
            }
            Ok(())
        };
        match s {
            Step::Lut { input, output, input_min, table } => {
                table_of(*input, *input_min, table.len())?;
                let (lo, hi) = self.code_type(*output)?.range();
                if let Some(v) = table.iter().find(|&&v| v < lo || v > hi) {
                    return Err(format!("table entry {v} outside the output codes [{lo}, {hi}]"));
                }
                Ok(())
            }
            Step::Div { b, b_min, reciprocal, requant, .. } => {
                table_of(*b, *b_min, reciprocal.len())?;
                if reciprocal.iter().any(|r| r.unsigned_abs() > 1u64 << DIV_SHIFT) {
                    return Err(format!("a reciprocal above 2^{DIV_SHIFT}"));
                }
                one_multiplier(requant)
            }
            Step::IntSoftmax { input, exp_table, requant, .. } => {
                let c = self.code_type(*input)?;
                let (lo, hi) = c.range();
                if c.bits > 16 || exp_table.len() as i64 != hi as i64 - lo as i64 + 1 {
                    return Err(format!(
                        "an exponential table of {} entries for {}-bit codes",
                        exp_table.len(),
                        c.bits
                    ));
                }
                if exp_table.iter().any(|&e| !(0..=1i64 << EXP_BITS).contains(&e)) {
                    return Err(format!("an exponential outside [0, 2^{EXP_BITS}]"));
                }
                one_multiplier(requant)
            }
            Step::Sub { requant, .. } | Step::Mul { requant, .. } => one_multiplier(requant),
            Step::MatMulCodes { a, b, output, requant, .. } => {
                let (sa, sb) = (&self.buffers[*a].shape, &self.buffers[*b].shape);
                let so = &self.buffers[*output].shape;
                if matmul_shape(sa, sb).as_ref() != Some(so) {
                    return Err(format!("a matrix product of {sa:?} and {sb:?} into {so:?}"));
                }
                one_multiplier(requant)
            }
            Step::GatherRows { indices, output, rows, table } => {
                let n_idx = self.buffers[*indices].shape.iter().product::<usize>();
                let n_out = self.buffers[*output].shape.iter().product::<usize>();
                let row = n_out.checked_div(n_idx).unwrap_or(0);
                if *rows == 0 || n_idx * row != n_out || rows.checked_mul(row) != Some(table.len())
                {
                    return Err(format!(
                        "a table of {} codes in {rows} rows for {n_idx} indices and {n_out} \
                         outputs",
                        table.len()
                    ));
                }
                let (lo, hi) = self.code_type(*output)?.range();
                if let Some(v) = table.iter().find(|&&v| v < lo || v > hi) {
                    return Err(format!("table entry {v} outside the output codes [{lo}, {hi}]"));
                }
                self.code_type(*indices).map(|_| ())
            }
            Step::Gather { input, output, index } => {
                let n_in = self.buffers[*input].shape.iter().product::<usize>();
                let n_out = self.buffers[*output].shape.iter().product::<usize>();
                let beyond = |i: u32| i as usize >= n_in && i != GATHER_ZERO_POINT;
                if index.len() != n_out || index.iter().any(|&i| beyond(i)) {
                    return Err(format!(
                        "{} gather indices for {n_out} outputs of {n_in} inputs, or one beyond",
                        index.len()
                    ));
                }
                Ok(())
            }
            Step::LutPerElement { input, output, input_min, table_shape, tables } => {
                let (lo, hi) = self.code_type(*input)?.range();
                let entries = (hi as i64 - lo as i64 + 1) as usize;
                let out = &self.buffers[*output].shape;
                broadcasts(&self.buffers[*input].shape, out)?;
                broadcasts(table_shape, out)?;
                if table_shape.len() != out.len() {
                    return Err(format!("table shape {table_shape:?} for an output {out:?}"));
                }
                let n = checked_numel(table_shape).and_then(|t| t.checked_mul(entries));
                if n.is_none_or(|n| n > MAX_TABLE_ENTRIES) {
                    return Err(format!(
                        "tables of shape {table_shape:?} above {MAX_TABLE_ENTRIES} entries"
                    ));
                }
                table_of(*input, *input_min, entries)?;
                if n != Some(tables.len()) {
                    return Err(format!(
                        "{} table entries for tables {table_shape:?} of {entries} codes",
                        tables.len()
                    ));
                }
                let (lo, hi) = self.code_type(*output)?.range();
                if let Some(v) = tables.iter().find(|&&v| v < lo || v > hi) {
                    return Err(format!("table entry {v} outside the output codes [{lo}, {hi}]"));
                }
                Ok(())
            }
            Step::Lrn { input, output, size, rounding, .. } => {
                let shape = &self.buffers[*input].shape;
                if shape.len() < 3 || *size == 0 || shape != &self.buffers[*output].shape {
                    return Err(format!(
                        "an LRN of size {size} over {shape:?} (rank ≥ 3, size ≥ 1, one shape)"
                    ));
                }
                self.float_requant(*input, *output, rounding)
            }
            Step::Normalize {
                input, output, axis, affine_shape, scale, bias, rounding, ..
            } => {
                let shape = &self.buffers[*input].shape;
                if *axis > shape.len() || shape != &self.buffers[*output].shape {
                    return Err(format!(
                        "a normalization from axis {axis} of {shape:?} (one shape)"
                    ));
                }
                broadcasts(affine_shape, shape)?;
                let n = checked_numel(affine_shape);
                if n != Some(scale.len()) || n != Some(bias.len()) {
                    return Err(format!(
                        "{} scales and {} biases for the affine shape {affine_shape:?}",
                        scale.len(),
                        bias.len()
                    ));
                }
                self.float_requant(*input, *output, rounding)
            }
            Step::Resize { input, output, axes, requant, .. } => {
                self.validate_resize(*input, *output, axes)?;
                one_multiplier(requant)
            }
            Step::IntLayerNorm {
                input,
                output,
                axis,
                input_zero_point,
                epsilon_term,
                gamma,
                beta,
                requant,
            } => {
                let shape = &self.buffers[*input].shape;
                if *axis > shape.len() || shape != &self.buffers[*output].shape {
                    return Err(format!(
                        "a layer normalization from axis {axis} of {shape:?} (one shape)"
                    ));
                }
                let n: usize = shape[*axis..].iter().product();
                if n == 0 || n > LN_MAX_GROUP || gamma.len() != n || beta.len() != n {
                    return Err(format!(
                        "{} scales and {} biases for groups of {n} codes (1..={LN_MAX_GROUP})",
                        gamma.len(),
                        beta.len()
                    ));
                }
                let c = self.code_type(*input)?;
                let z_ok = (c.range().0 as i64 - 65536..=c.range().1 as i64 + 65536)
                    .contains(&(*input_zero_point as i64));
                if c.bits > 16 || !z_ok {
                    return Err(format!(
                        "{}-bit input codes with zero point {input_zero_point} (at most 16 bits)",
                        c.bits
                    ));
                }
                let g_max = 1i32 << (LN_GAMMA_BITS - 1);
                let ok = (0..=1i64 << 62).contains(epsilon_term)
                    && gamma.iter().all(|g| (-g_max..=g_max).contains(g))
                    && beta.iter().all(|b| b.unsigned_abs() <= 1 << 62);
                if !ok {
                    return Err(format!(
                        "epsilon term, scales or biases out of range (0..=2^62, \
                         |gamma| ≤ 2^{}, |beta| ≤ 2^62)",
                        LN_GAMMA_BITS - 1
                    ));
                }
                one_multiplier(requant)
            }
            _ => Ok(()),
        }
    }
}

impl Program {
    /// A [`FloatRequant`] reads and writes per-tensor codes of its buffers' types.
    fn float_requant(
        &self,
        input: Buf,
        output: Buf,
        r: &FloatRequant,
    ) -> std::result::Result<(), String> {
        self.code_type(input)?;
        let (lo, hi) = self.code_type(output)?.range();
        if r.lo < lo || r.hi > hi || r.lo > r.hi {
            return Err(format!(
                "clamp [{}, {}] outside the output codes [{lo}, {hi}]",
                r.lo, r.hi
            ));
        }
        if !(r.input_scale.is_finite() && r.output_scale.is_finite() && r.output_scale > 0.0) {
            return Err("scales must be finite, the output's positive".into());
        }
        Ok(())
    }

    /// A resize step's axes are distinct, in order, of the input's rank, with one tap pair per
    /// output index inside the input, weights of at most `2^RESIZE_FRAC_BITS` in magnitude, and
    /// the other axes keep their length; so its accumulator (at most 8 taps of weight products
    /// up to 2^36 times a 17-bit difference) fits an i64.
    fn validate_resize(
        &self,
        input: Buf,
        output: Buf,
        axes: &[ResizeAxis],
    ) -> std::result::Result<(), String> {
        let (si, so) = (&self.buffers[input].shape, &self.buffers[output].shape);
        if si.len() != so.len() || axes.len() > 3 {
            return Err(format!("a resize from {si:?} to {so:?} along {} axes", axes.len()));
        }
        let mut prev = None;
        for a in axes {
            if a.axis >= si.len() || prev.is_some_and(|p| p >= a.axis) {
                return Err(format!("resize axis {} out of order or beyond rank", a.axis));
            }
            prev = Some(a.axis);
            let ok = a.index.len() == so[a.axis]
                && a.weight.len() == so[a.axis]
                && a.index.iter().flatten().all(|&i| (i as usize) < si[a.axis])
                && a.weight
                    .iter()
                    .all(|w| w.iter().all(|&v| v.unsigned_abs() <= 1 << RESIZE_FRAC_BITS));
            if !ok {
                return Err(format!(
                    "resize axis {}: {} tap pairs for {} outputs of {} inputs, or a tap beyond",
                    a.axis,
                    a.index.len(),
                    so[a.axis],
                    si[a.axis]
                ));
            }
        }
        for (d, (i, o)) in si.iter().zip(so).enumerate() {
            if i != o && !axes.iter().any(|a| a.axis == d) {
                return Err(format!("resize: axis {d} changes from {i} to {o} with no taps"));
            }
        }
        Ok(())
    }
}

/// `from` broadcasts to `to` (numpy rules: aligned at the last axis, each 1 or equal).
fn broadcasts(from: &[usize], to: &[usize]) -> std::result::Result<(), String> {
    let fits = from.len() <= to.len()
        && from.iter().rev().zip(to.iter().rev()).all(|(&f, &t)| f == 1 || f == t);
    if fits {
        Ok(())
    } else {
        Err(format!("shape {from:?} does not broadcast to {to:?}"))
    }
}

/// The element-wise steps requantize with one multiplier.
fn one_multiplier(r: &Requant) -> std::result::Result<(), String> {
    if r.mult.len() != 1 {
        return Err(format!("{} multipliers, 1 expected", r.mult.len()));
    }
    Ok(())
}

/// Every buffer a step reads or writes.
pub fn step_buffers(s: &Step) -> Vec<Buf> {
    match s {
        Step::Quantize { input, output, .. }
        | Step::Dequantize { input, output }
        | Step::Conv { input, output, .. }
        | Step::Gemm { input, output, .. }
        | Step::Affine { input, output, .. }
        | Step::Rescale { input, output, .. }
        | Step::MaxPool { input, output, .. }
        | Step::AvgPool { input, output, .. }
        | Step::GlobalAvgPool { input, output, .. }
        | Step::Reshape { input, output }
        | Step::Transpose { input, output, .. }
        | Step::Pad { input, output, .. }
        | Step::Softmax { input, output, .. }
        | Step::Lut { input, output, .. }
        | Step::IntSoftmax { input, output, .. }
        | Step::Gather { input, output, .. }
        | Step::LutPerElement { input, output, .. }
        | Step::Lrn { input, output, .. }
        | Step::Normalize { input, output, .. }
        | Step::Resize { input, output, .. }
        | Step::IntLayerNorm { input, output, .. } => vec![*input, *output],
        Step::Add { a, b, output, .. }
        | Step::Sub { a, b, output, .. }
        | Step::Mul { a, b, output, .. }
        | Step::Div { a, b, output, .. }
        | Step::MatMulCodes { a, b, output, .. } => vec![*a, *b, *output],
        Step::GatherRows { indices, output, .. } => vec![*indices, *output],
        Step::Concat { inputs, output, .. } => inputs.iter().copied().chain([*output]).collect(),
    }
}

impl Step {
    /// The step as a matrix product (Conv, Gemm); `None` for every other step.
    pub fn as_matrix(&self) -> Option<MatrixStep<'_>> {
        match self {
            Step::Conv {
                input,
                output,
                input_zero_point,
                weights,
                bias,
                window,
                group,
                requant,
                crossbar,
            } => Some(MatrixStep {
                input: *input,
                output: *output,
                input_zero_point: *input_zero_point,
                weights,
                bias,
                requant,
                crossbar: crossbar.as_ref(),
                kind: MatrixKind::Conv { window, group: *group },
            }),
            Step::Gemm { input, output, input_zero_point, weights, bias, requant, crossbar } => {
                Some(MatrixStep {
                    input: *input,
                    output: *output,
                    input_zero_point: *input_zero_point,
                    weights,
                    bias,
                    requant,
                    crossbar: crossbar.as_ref(),
                    kind: MatrixKind::Gemm,
                })
            }
            Step::Quantize { .. }
            | Step::Dequantize { .. }
            | Step::Affine { .. }
            | Step::Rescale { .. }
            | Step::MaxPool { .. }
            | Step::AvgPool { .. }
            | Step::GlobalAvgPool { .. }
            | Step::Add { .. }
            | Step::Concat { .. }
            | Step::Reshape { .. }
            | Step::Transpose { .. }
            | Step::Pad { .. }
            | Step::Softmax { .. }
            | Step::Lut { .. }
            | Step::Sub { .. }
            | Step::Mul { .. }
            | Step::Div { .. }
            | Step::IntSoftmax { .. }
            | Step::Gather { .. }
            | Step::MatMulCodes { .. }
            | Step::GatherRows { .. }
            | Step::LutPerElement { .. }
            | Step::Lrn { .. }
            | Step::Normalize { .. }
            | Step::Resize { .. }
            | Step::IntLayerNorm { .. } => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Step::Quantize { .. } => "quantize",
            Step::Dequantize { .. } => "dequantize",
            Step::Conv { .. } => "conv",
            Step::Gemm { .. } => "gemm",
            Step::Affine { .. } => "affine",
            Step::Rescale { .. } => "rescale",
            Step::MaxPool { .. } => "max_pool",
            Step::AvgPool { .. } => "avg_pool",
            Step::GlobalAvgPool { .. } => "global_avg_pool",
            Step::Add { .. } => "add",
            Step::Concat { .. } => "concat",
            Step::Reshape { .. } => "reshape",
            Step::Transpose { .. } => "transpose",
            Step::Pad { .. } => "pad",
            Step::Softmax { .. } => "softmax",
            Step::Lut { .. } => "lut",
            Step::Sub { .. } => "sub",
            Step::Mul { .. } => "mul",
            Step::Div { .. } => "div",
            Step::IntSoftmax { .. } => "int_softmax",
            Step::Gather { .. } => "gather",
            Step::MatMulCodes { .. } => "matmul_codes",
            Step::GatherRows { .. } => "gather_rows",
            Step::LutPerElement { .. } => "lut_per_element",
            Step::Lrn { .. } => "lrn",
            Step::Normalize { .. } => "normalize",
            Step::Resize { .. } => "resize",
            Step::IntLayerNorm { .. } => "int_layer_norm",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    fn empty(target: Option<TargetRecord>) -> Program {
        Program {
            name: "p".into(),
            buffers: vec![],
            inputs: vec![],
            outputs: vec![],
            steps: vec![],
            origins: vec![],
            target,
        }
    }

    #[test]
    fn the_whole_target_round_trips() {
        let mut t = Target::preset("puma").expect("invariant: puma is a preset");
        t.cost.clock_ghz = 0.75;
        let p = empty(Some(TargetRecord::Full(Box::new(t))));
        assert_eq!(Program::from_bytes(&p.to_bytes()).unwrap(), p);
        let stamp = empty(Some(TargetRecord::Stamp("x hash=0 y".into())));
        assert_eq!(Program::from_bytes(&stamp.to_bytes()).unwrap(), stamp);
    }

    /// Two 4-bit code buffers of `shape` and one step between them.
    fn one_step(shape: &[usize], step: Step) -> Program {
        let code = Elem::Code(CodeType { bits: 4, signed: false });
        let buf = |name: &str| BufferDecl {
            name: name.into(),
            shape: shape.to_vec(),
            elem: code,
            quant: None,
        };
        Program {
            buffers: vec![buf("x"), buf("y")],
            inputs: vec![0],
            outputs: vec![1],
            steps: vec![step],
            origins: vec!["n".into()],
            ..empty(None)
        }
    }

    #[test]
    fn steps_from_files_are_checked_before_they_run() {
        let rounding = FloatRequant {
            input_scale: 0.5,
            input_zero_point: 8,
            output_scale: 0.5,
            output_zero_point: 8,
            lo: 0,
            hi: 15,
        };
        let tables = |n: usize, shape: Vec<usize>| Step::LutPerElement {
            input: 0,
            output: 1,
            input_min: 0,
            table_shape: shape,
            tables: vec![3; n],
        };
        let check =
            |shape: &[usize], s: Step| one_step(shape, s).validate().map_err(|e| e.to_string());
        assert!(check(&[1, 2, 3], tables(32, vec![1, 2, 1])).is_ok());
        for (s, why) in [
            (tables(31, vec![1, 2, 1]), "table entries"),
            (tables(48, vec![1, 3, 1]), "does not broadcast"),
            (tables(32, vec![2, 1]), "table shape"),
        ] {
            let e = check(&[1, 2, 3], s).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let lrn =
            Step::Lrn { input: 0, output: 1, size: 3, alpha: 1.0, beta: 0.75, bias: 1.0, rounding };
        assert!(check(&[1, 2, 3], lrn.clone()).is_ok());
        assert!(check(&[2, 3], lrn).unwrap_err().contains("rank ≥ 3"));
        let norm = |scale: Vec<f32>, r: FloatRequant| Step::Normalize {
            input: 0,
            output: 1,
            axis: 2,
            epsilon: 1e-5,
            affine_shape: vec![1, 2, 1],
            bias: scale.clone(),
            scale,
            rounding: r,
        };
        assert!(check(&[1, 2, 3], norm(vec![1.0; 2], rounding)).is_ok());
        assert!(check(&[1, 2, 3], norm(vec![1.0; 3], rounding)).unwrap_err().contains("scales"));
        let wide = FloatRequant { hi: 16, ..rounding };
        assert!(check(&[1, 2, 3], norm(vec![1.0; 2], wide)).unwrap_err().contains("clamp"));
    }

    #[test]
    fn version_3_is_read_with_its_stamp() {
        let p = empty(None);
        // Version 3's body: the same fields, the target a stamp line.
        let line = "isaac hash=0123456789abcdef 128x128 arrays".to_string();
        let body = (&p.name, &p.buffers, &p.inputs, &p.outputs, &p.steps, &p.origins, Some(&line));
        let mut bytes = MAGIC.to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(postcard::to_stdvec(&body).unwrap());
        let back = Program::from_bytes(&bytes).unwrap();
        assert_eq!(back, empty(Some(TargetRecord::Stamp(line))));
        bytes[8] = 2;
        let err = Program::from_bytes(&bytes).unwrap_err().to_string();
        assert!(err.contains("version 2; this cimc reads versions 3 to 4"), "{err}");
    }
}
