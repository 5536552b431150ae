//! The accelerator instruction stream: a file holding, for a tiled CIM chip, every core's
//! instructions (the ISA of [`crate::isa`]) and the tables they index (crossbar groups with their
//! weights, windows, requantizations, additions, permutations, host operations), plus the layout
//! of the global memory where the inputs and outputs live.
//!
//! File form (`.cims`): the 8-byte magic `CIMCSTRM`, a little-endian u32 format version, then the
//! stream serialized with postcard, in which each core's instructions are one byte string of
//! 24-byte instruction words ([`crate::isa::encode`]). Reading a file decodes every instruction
//! and runs [`Stream::validate`], so an executor may trust a stream it got from
//! [`Stream::from_bytes`]: every address range, table index and group reference has been
//! checked, and every error names the core and the instruction index. The text form
//! (`cimc disasm` / `cimc asm`) is [`text`]. The emitter, from an interpreter program, is
//! [`emit`]; the static cost model is [`cost`].

pub mod cost;
pub mod emit;
pub mod text;
mod validate;

pub use validate::{column_groups, xbar_crossbar};

use crate::arith::FixedMultiplier;
use crate::error::{BackendError, Result};
use crate::isa::{self, Instr};
use crate::program::{BufQuant, Elem, Requant};
use crate::target::TargetRecord;
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 8] = b"CIMCSTRM";
/// The version written when the stream has digital entries; one without them is written as
/// version 2, the same bytes as before the digital table existed.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version still read: version 1 recorded the target as its stamp line only
/// (read as [`TargetRecord::Stamp`]).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// How the layers of a network share the chip's arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// Every group's weights are resident from the start (ISAAC, PUMA): each array holds one
    /// block of one layer for the whole run.
    Pipelined,
    /// Layers take turns on the same arrays (the AON-CIM accelerator of AnalogNets): before a
    /// layer's first `mvm` its groups are programmed with `xbar_load`.
    LayerSerial,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Pipelined => "pipelined",
            Schedule::LayerSerial => "layer-serial",
        }
    }
}

/// A tensor of the stream's inputs or outputs, in global memory: `numel` words from `addr`,
/// row-major. Code tensors hold one code per word; f32 tensors one f32 bit pattern per word
/// (in the low 32 bits).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Io {
    pub name: String,
    pub shape: Vec<usize>,
    pub elem: Elem,
    pub quant: Option<BufQuant>,
    pub addr: u32,
}

impl Io {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One core: its scratchpad size and its instructions (straight-line, ending in `halt`).
#[derive(Clone, Debug, PartialEq)]
pub struct Core {
    pub scratch_words: u32,
    pub code: Vec<Instr>,
    /// `(first instruction, layer)`: from that instruction on, the core works for layer
    /// `layers[layer]` (reports; sorted by instruction index).
    pub marks: Vec<(u32, u32)>,
}

impl Core {
    /// The layer of instruction `i` (from `marks`), if any.
    pub fn layer_of(&self, i: usize) -> Option<u32> {
        let k = self.marks.partition_point(|&(at, _)| at as usize <= i);
        k.checked_sub(1).map(|k| self.marks[k].1)
    }
}

/// A crossbar group: the weights of one replica of one layer (or of a part of it, when a layer
/// does not fit the chip at once), on arrays of one core.
///
/// The matrix of conv group `g` (`0 ≤ g < conv_groups`) has `k` rows and `n / conv_groups`
/// columns: output `o` of the group (`0 ≤ o < n`) belongs to conv group `o / (n / conv_groups)`,
/// and its weight on row `r` is `weights[o·k + r]` (output-major, as a Conv's
/// `[M, C/g·kh·kw]` weights).
///
/// How `mvm group src dst count` addresses the scratchpad: input row `r` of conv group `g` of
/// vector `v` is `local[src + v·in_stride + in_offset + g·group_stride + r]`, and output `o` of
/// vector `v` goes to `local[dst + v·out_stride + o]`. A whole layer in one group has
/// `in_stride = conv_groups·k`, `in_offset = 0`, `group_stride = k`, `out_stride = n`; a part
/// of a layer reads its rows or conv groups out of the layer's im2col vectors and writes its
/// outputs into the layer's accumulators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupEntry {
    pub core: u16,
    /// Index into [`Stream::layers`].
    pub layer: u32,
    pub replica: u32,
    pub k: u32,
    pub n: u32,
    pub conv_groups: u32,
    pub in_stride: u32,
    pub in_offset: u32,
    pub group_stride: u32,
    pub out_stride: u32,
    /// Bits of the weight codes (the codes lie in the signed range of this width).
    pub weight_bits: u8,
    pub weights: Vec<i32>,
    /// The physical arrays holding the group (indices below [`Stream::arrays`]).
    pub arrays: Vec<u32>,
}

/// A window over a channel-first image `[channels][height][width]` (2-D; 1-D runs as height 1).
///
/// Output position `p` (row-major over `out_height × out_width`) reads input row
/// `oy·stride[0] + ky·dilation[0] − pads[0]` and column `ox·stride[1] + kx·dilation[1] − pads[1]`
/// for every kernel offset `(ky, kx)`; `pads` is `[top, left, bottom, right]`. Only positions
/// `first_position .. first_position + positions` are produced. `im2col` writes, per position,
/// `conv_groups` runs of `(channels / conv_groups)·kh·kw` codes, rows `(c, ky, kx)` row-major;
/// pooling writes channel-first, `channels × positions` codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowEntry {
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    pub kernel: [u32; 2],
    pub strides: [u32; 2],
    pub dilations: [u32; 2],
    pub pads: [u32; 4],
    pub conv_groups: u32,
    pub out_height: u32,
    pub out_width: u32,
    pub first_position: u32,
    pub positions: u32,
    /// Average pooling: the count `k` includes window positions in the padding (but never
    /// those beyond it, which ceil mode can create).
    pub count_include_pad: bool,
}

impl WindowEntry {
    /// Words of the source image.
    pub fn source_len(&self) -> u64 {
        self.channels as u64 * self.height as u64 * self.width as u64
    }

    /// Rows of one conv group's im2col vector.
    pub fn k(&self) -> u64 {
        (self.channels / self.conv_groups.max(1)) as u64
            * self.kernel[0] as u64
            * self.kernel[1] as u64
    }

    /// Words `im2col` writes.
    pub fn im2col_len(&self) -> u64 {
        self.positions as u64 * self.conv_groups as u64 * self.k()
    }

    /// Words a pooling instruction writes.
    pub fn pool_len(&self) -> u64 {
        self.channels as u64 * self.positions as u64
    }
}

/// `y[i] = clamp(z + round((a[c]·x[i] + b[c])·M[c]), lo, hi)` (`docs/hardware-model.md` §4, exactly
/// as `arith::requantize`); each vector holds one value per channel or one shared value; an empty
/// `scale` means `a = 1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequantEntry {
    pub scale: Vec<i32>,
    pub bias: Vec<i64>,
    pub mult: Vec<FixedMultiplier>,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

impl RequantEntry {
    /// Channels: the longest of the per-channel vectors (1 when all are shared).
    pub fn channels(&self) -> usize {
        self.scale.len().max(self.bias.len()).max(self.mult.len()).max(1)
    }

    /// The parameters of channel `c`, or `None` when a vector has neither 1 nor `c+1..` values.
    #[inline]
    pub fn at(&self, c: usize) -> Option<(i64, i64, FixedMultiplier)> {
        let pick = |len: usize| if len == 1 { Some(0) } else { (c < len).then_some(c) };
        let a = if self.scale.is_empty() { 1 } else { self.scale[pick(self.scale.len())?] as i64 };
        let b = if self.bias.is_empty() { 0 } else { self.bias[pick(self.bias.len())?] };
        let m = self.mult[pick(self.mult.len())?];
        Some((a, b, m))
    }

    #[inline]
    pub fn apply(&self, x: i64, c: usize) -> Option<i32> {
        let (a, b, m) = self.at(c)?;
        Some(crate::arith::requantize(a * x + b, m, self.zero_point, self.lo, self.hi))
    }
}

impl RequantEntry {
    /// `requant(q − z)` of an element-wise step: no scales, the bias `−z`, the step's first
    /// multiplier.
    pub(crate) fn rescale(z: i32, r: &Requant) -> Self {
        RequantEntry {
            scale: vec![],
            bias: vec![-(z as i64)],
            mult: vec![r.mult[0]],
            zero_point: r.zero_point,
            lo: r.lo,
            hi: r.hi,
        }
    }

    /// A matrix step's requantization of its accumulators: per-channel bias and multipliers.
    pub(crate) fn matrix(bias: &[i64], r: &Requant) -> Self {
        RequantEntry {
            scale: vec![],
            bias: bias.to_vec(),
            mult: r.mult.clone(),
            zero_point: r.zero_point,
            lo: r.lo,
            hi: r.hi,
        }
    }

    /// A per-channel affine step `requant(a·(q − z) + b)`, with `z` folded into the bias:
    /// `a·q + (b − a·z)`.
    pub(crate) fn affine(z: i32, scale: &[i32], bias: &[i64], r: &Requant) -> Self {
        RequantEntry {
            scale: scale.to_vec(),
            bias: bias.iter().zip(scale).map(|(&b, &a)| b - z as i64 * a as i64).collect(),
            mult: r.mult.clone(),
            zero_point: r.zero_point,
            lo: r.lo,
            hi: r.hi,
        }
    }

    /// `2·z − q`: Sub's `b` negated about its zero point `z`, with the multiplier 1 (exact on
    /// integers; `docs/hardware-model.md` §4).
    pub(crate) fn negate_about(z: i32) -> Self {
        let one = FixedMultiplier::from_real(1.0)
            .expect("invariant: 1.0 is a fixed-point multiplier (mantissa 2^30, shift 30)");
        RequantEntry {
            scale: vec![-1],
            bias: vec![2 * z as i64],
            mult: vec![one],
            zero_point: 0,
            lo: i32::MIN,
            hi: i32::MAX,
        }
    }
}

impl AddEntry {
    /// The entry of the program's `Add` or `Sub` step (Sub is Add with `b` negated), or `None`
    /// for another step.
    pub(crate) fn of_step(s: &crate::program::Step) -> Option<AddEntry> {
        use crate::program::Step;
        let (Step::Add { a_zero_point, b_zero_point, headroom, a_mult, b_mult, requant, .. }
        | Step::Sub { a_zero_point, b_zero_point, headroom, a_mult, b_mult, requant, .. }) = s
        else {
            return None;
        };
        Some(AddEntry {
            a_zero_point: *a_zero_point,
            b_zero_point: *b_zero_point,
            headroom: *headroom,
            a_mult: *a_mult,
            b_mult: *b_mult,
            mult: requant.mult[0],
            zero_point: requant.zero_point,
            lo: requant.lo,
            hi: requant.hi,
        })
    }
}

/// The parameters of `add` (the program's `Add` step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AddEntry {
    pub a_zero_point: i32,
    pub b_zero_point: i32,
    pub headroom: u32,
    pub a_mult: FixedMultiplier,
    pub b_mult: FixedMultiplier,
    pub mult: FixedMultiplier,
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

/// A source tensor's shape and the permutation of its axes (`out` axis `d` is source axis
/// `perm[d]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermEntry {
    pub shape: Vec<u32>,
    pub perm: Vec<u32>,
}

impl PermEntry {
    pub fn len(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A float operation of the host, on global memory (words holding f32 bit patterns or codes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HostEntry {
    /// `dst[i] = clamp(round_half_even(src[i] / scale) + zero_point, lo, hi)`, f32 → code.
    Quantize { src: u32, dst: u32, len: u32, scale: f32, zero_point: i32, lo: i32, hi: i32 },
    /// `dst[i] = scale[c]·(src[i] − zero_point[c])`, code → f32, `c` the index along `axis` of
    /// `shape` (per tensor when `axis` is `None`).
    Dequantize { src: u32, dst: u32, shape: Vec<u32>, quant: BufQuant },
    /// Softmax over `axis` of the f32 tensor `shape`.
    Softmax { src: u32, dst: u32, shape: Vec<u32>, axis: u32 },
}

/// The parameters of an instruction of the digital units that works on whole tensors (one
/// variant per instruction: `lut`, `mul`, `softmax`, `layer_norm`, `gather`, `gather_rows`,
/// `matmul`, `lut_per_element`), each as the program step it executes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DigitalEntry {
    /// `y = table[q − input_min]` (the program's `Lut`).
    Lut { input_min: i32, table: Vec<i32> },
    /// `requantize((q_a − z_a)·(q_b − z_b))` (the program's `Mul` of equal shapes).
    Mul { a_zero_point: i32, b_zero_point: i32, requant: Requant },
    /// Softmax on codes along `axis` of `shape` (the program's `IntSoftmax`).
    Softmax { shape: Vec<u32>, axis: u32, exp_table: Vec<i64>, requant: Requant },
    /// `groups` groups of `n` codes normalized (the program's `IntLayerNorm`).
    LayerNorm {
        groups: u32,
        n: u32,
        input_zero_point: i32,
        epsilon_term: i64,
        gamma: Vec<i32>,
        beta: Vec<i64>,
        requant: Requant,
    },
    /// Output code `i` is source code `index[i]`, or `fill` where the index is `u32::MAX`; the
    /// source has `src_len` codes (the program's `Gather`).
    Gather { src_len: u32, index: Vec<u32>, fill: i32 },
    /// `count` indices into `rows` rows of `table` (row-major; the program's `GatherRows`).
    GatherRows { count: u32, rows: u32, table: Vec<i32> },
    /// `a_shape × b_shape` as ONNX MatMul broadcasts them (the program's `MatMulCodes`).
    MatMul {
        a_shape: Vec<u32>,
        b_shape: Vec<u32>,
        a_zero_point: i32,
        b_zero_point: i32,
        requant: Requant,
    },
    /// Element `i` of the tensor `shape` is `tables[t·n + q − input_min]`, `q` its code, `t` the
    /// element of `table_shape` (the tensor's rank, each axis 1 or the tensor's) it broadcasts
    /// from and `n` the entries of one table (the program's `LutPerElement`, its input of the
    /// output's shape).
    LutPerElement { shape: Vec<u32>, input_min: i32, table_shape: Vec<u32>, tables: Vec<i32> },
}

impl DigitalEntry {
    /// The instruction mnemonic the entry serves.
    pub fn kind(&self) -> &'static str {
        match self {
            DigitalEntry::Lut { .. } => "lut",
            DigitalEntry::Mul { .. } => "mul",
            DigitalEntry::Softmax { .. } => "softmax",
            DigitalEntry::LayerNorm { .. } => "layer_norm",
            DigitalEntry::Gather { .. } => "gather",
            DigitalEntry::GatherRows { .. } => "gather_rows",
            DigitalEntry::MatMul { .. } => "matmul",
            DigitalEntry::LutPerElement { .. } => "lut_per_element",
        }
    }

    /// Words the instruction reads from its (first) source and writes: `None` for `lut` and
    /// `mul`, whose lengths are the instruction's.
    pub fn lengths(&self) -> Option<(u64, u64)> {
        let prod = |s: &[u32]| s.iter().map(|&d| d as u64).product::<u64>();
        match self {
            DigitalEntry::Lut { .. } | DigitalEntry::Mul { .. } => None,
            DigitalEntry::Softmax { shape, .. } | DigitalEntry::LutPerElement { shape, .. } => {
                Some((prod(shape), prod(shape)))
            }
            DigitalEntry::LayerNorm { groups, n, .. } => {
                let len = *groups as u64 * *n as u64;
                Some((len, len))
            }
            DigitalEntry::Gather { src_len, index, .. } => {
                Some((*src_len as u64, index.len() as u64))
            }
            DigitalEntry::GatherRows { count, rows, table } => {
                let row = table.len() as u64 / (*rows as u64).max(1);
                Some((*count as u64, *count as u64 * row))
            }
            DigitalEntry::MatMul { a_shape, b_shape, .. } => {
                let a: Vec<usize> = a_shape.iter().map(|&d| d as usize).collect();
                let b: Vec<usize> = b_shape.iter().map(|&d| d as usize).collect();
                let out = crate::program::matmul_shape(&a, &b)
                    .map_or(0, |o| o.iter().map(|&d| d as u64).product::<u64>());
                Some((prod(a_shape), out))
            }
        }
    }
}

/// An instruction stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    pub name: String,
    /// The chip the stream was emitted for: the whole target (cost figures and noise included),
    /// or, in a file of format version 1, its stamp line `name hash=HEX summary`.
    pub target: Option<TargetRecord>,
    pub schedule: Schedule,
    /// Physical arrays of the chip (group arrays are below this).
    pub arrays: u32,
    pub global_words: u32,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    /// The program's layers (its step origins), for reports.
    pub layers: Vec<String>,
    pub cores: Vec<Core>,
    pub groups: Vec<GroupEntry>,
    pub windows: Vec<WindowEntry>,
    pub requants: Vec<RequantEntry>,
    pub adds: Vec<AddEntry>,
    pub perms: Vec<PermEntry>,
    pub hosts: Vec<HostEntry>,
    /// The digital table (format version 3; empty in streams without transformer steps, which
    /// are written as version 2).
    pub digital: Vec<DigitalEntry>,
}

/// The serialized form: instructions as bytes. `T` is the target's record: a [`TargetRecord`]
/// (format version 2), or the stamp line (`String`, version 1).
#[derive(Serialize, Deserialize)]
struct StreamFile<T> {
    name: String,
    target: Option<T>,
    schedule: Schedule,
    arrays: u32,
    global_words: u32,
    inputs: Vec<Io>,
    outputs: Vec<Io>,
    layers: Vec<String>,
    cores: Vec<CoreFile>,
    /// Each group without its weights, and its weights packed.
    groups: Vec<(GroupEntry, PackedCodes)>,
    windows: Vec<WindowEntry>,
    requants: Vec<RequantEntry>,
    adds: Vec<AddEntry>,
    perms: Vec<PermEntry>,
    hosts: Vec<HostEntry>,
}

impl<T> StreamFile<T> {
    /// The same file with its target record converted.
    fn with_target<U>(self, f: impl FnOnce(T) -> U) -> StreamFile<U> {
        StreamFile {
            name: self.name,
            target: self.target.map(f),
            schedule: self.schedule,
            arrays: self.arrays,
            global_words: self.global_words,
            inputs: self.inputs,
            outputs: self.outputs,
            layers: self.layers,
            cores: self.cores,
            groups: self.groups,
            windows: self.windows,
            requants: self.requants,
            adds: self.adds,
            perms: self.perms,
            hosts: self.hosts,
        }
    }
}

/// The serialized form of version 3: version 2's, then the digital table.
#[derive(Serialize, Deserialize)]
struct StreamFileV3<T> {
    base: StreamFile<T>,
    digital: Vec<DigitalEntry>,
}

#[derive(Serialize, Deserialize)]
struct CoreFile {
    scratch_words: u32,
    #[serde(with = "serde_bytes_compat")]
    code: Vec<u8>,
    marks: Vec<(u32, u32)>,
}

/// Weight codes as little-endian integers of the narrowest of 1, 2 or 4 bytes that holds them
/// all (postcard's per-element varints are several times slower to read and write for the
/// millions of weights of a large model).
#[derive(Serialize, Deserialize)]
struct PackedCodes(#[serde(with = "serde_bytes_compat")] Vec<u8>);

impl PackedCodes {
    fn pack(codes: &[i32]) -> PackedCodes {
        let width: usize = if codes.iter().all(|&c| i8::try_from(c).is_ok()) {
            1
        } else if codes.iter().all(|&c| i16::try_from(c).is_ok()) {
            2
        } else {
            4
        };
        let mut b = Vec::with_capacity(1 + width * codes.len());
        b.push(width as u8);
        match width {
            1 => b.extend(codes.iter().map(|&c| c as i8 as u8)),
            2 => b.extend(codes.iter().flat_map(|&c| (c as i16).to_le_bytes())),
            _ => b.extend(codes.iter().flat_map(|&c| c.to_le_bytes())),
        }
        PackedCodes(b)
    }

    fn unpack(&self) -> Result<Vec<i32>> {
        let bad = || BackendError::Format("malformed packed weight codes".into());
        let (&width, rest) = self.0.split_first().ok_or_else(bad)?;
        match width {
            1 => Ok(rest.iter().map(|&b| b as i8 as i32).collect()),
            2 if rest.len() % 2 == 0 => {
                Ok(rest.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as i32).collect())
            }
            4 if rest.len() % 4 == 0 => Ok(rest
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()),
            _ => Err(bad()),
        }
    }
}

/// A group's entry without its weights (they travel packed beside it).
fn without_weights(g: &GroupEntry) -> GroupEntry {
    GroupEntry {
        core: g.core,
        layer: g.layer,
        replica: g.replica,
        k: g.k,
        n: g.n,
        conv_groups: g.conv_groups,
        in_stride: g.in_stride,
        in_offset: g.in_offset,
        group_stride: g.group_stride,
        out_stride: g.out_stride,
        weight_bits: g.weight_bits,
        weights: Vec::new(),
        arrays: g.arrays.clone(),
    }
}

/// Byte strings as one length-prefixed run (postcard serializes `Vec<u8>` element by element
/// otherwise, which is the same bytes but slower to read).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(V)
    }
}

impl Stream {
    /// The binary file form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("invariant: writing to a Vec cannot fail");
        out
    }

    /// Writes the binary file form ([`Stream::to_bytes`]'s bytes) to `w`, serializing as it
    /// goes (no copy of the whole file in memory; the packed weights are made once).
    pub fn write_to(&self, mut w: impl std::io::Write) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        // A stream without digital entries keeps the version-2 form, byte for byte.
        if self.digital.is_empty() {
            w.write_all(&2u32.to_le_bytes())?;
            return postcard::to_io(&self.file(), w).map(|_| ()).map_err(std::io::Error::other);
        }
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        let file = StreamFileV3 { base: self.file(), digital: self.digital.clone() };
        postcard::to_io(&file, w).map(|_| ()).map_err(std::io::Error::other)
    }

    /// The serialized form (instructions encoded, weights packed).
    fn file(&self) -> StreamFile<TargetRecord> {
        StreamFile {
            name: self.name.clone(),
            target: self.target.clone(),
            schedule: self.schedule,
            arrays: self.arrays,
            global_words: self.global_words,
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            layers: self.layers.clone(),
            cores: self
                .cores
                .iter()
                .map(|c| CoreFile {
                    scratch_words: c.scratch_words,
                    code: isa::encode::encode_all(&c.code),
                    marks: c.marks.clone(),
                })
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|g| (without_weights(g), PackedCodes::pack(&g.weights)))
                .collect(),
            windows: self.windows.clone(),
            requants: self.requants.clone(),
            adds: self.adds.clone(),
            perms: self.perms.clone(),
            hosts: self.hosts.clone(),
        }
    }

    /// Reads the binary file form: checks the magic and the version (from
    /// [`OLDEST_FORMAT_VERSION`] on), decodes every instruction and validates the whole stream
    /// ([`Stream::validate`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Stream> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(BackendError::Format(
                "not a cimc instruction stream (missing the CIMCSTRM magic)".into(),
            ));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let malformed =
            |e| BackendError::Format(format!("malformed stream (truncated or corrupt): {e}"));
        let (f, digital): (StreamFile<TargetRecord>, _) = match version {
            FORMAT_VERSION => {
                let f: StreamFileV3<TargetRecord> =
                    crate::error::decode_body(&bytes[12..], 12).map_err(malformed)?;
                (f.base, f.digital)
            }
            2 => (crate::error::decode_body(&bytes[12..], 12).map_err(malformed)?, vec![]),
            1 => {
                let f: StreamFile<String> =
                    crate::error::decode_body(&bytes[12..], 12).map_err(malformed)?;
                (f.with_target(TargetRecord::Stamp), vec![])
            }
            _ => {
                return Err(BackendError::Format(format!(
                    "stream format version {version}; this cimc reads versions \
                     {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"
                )))
            }
        };
        let mut cores = Vec::with_capacity(f.cores.len());
        for (ci, c) in f.cores.into_iter().enumerate() {
            let code = isa::encode::decode_all(&c.code)
                .map_err(|e| BackendError::Format(format!("core {ci}: {e}")))?;
            cores.push(Core { scratch_words: c.scratch_words, code, marks: c.marks });
        }
        let mut groups = Vec::with_capacity(f.groups.len());
        for (gi, (mut g, packed)) in f.groups.into_iter().enumerate() {
            g.weights =
                packed.unpack().map_err(|e| BackendError::Format(format!("group {gi}: {e}")))?;
            groups.push(g);
        }
        let s = Stream {
            name: f.name,
            target: f.target,
            schedule: f.schedule,
            arrays: f.arrays,
            global_words: f.global_words,
            inputs: f.inputs,
            outputs: f.outputs,
            layers: f.layers,
            cores,
            groups,
            windows: f.windows,
            requants: f.requants,
            adds: f.adds,
            perms: f.perms,
            hosts: f.hosts,
            digital,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks everything an executor relies on, statically (the code has no branches): every
    /// core ends in `halt`; every address range lies in its memory; every table index, group
    /// and core exists; a group is used only by its core, configured before its first `mvm`
    /// and (layer-serial) programmed; every core meets the same barriers in the same order;
    /// the words sent from one core to another equal the words received. Errors name the core
    /// and the instruction index.
    pub fn validate(&self) -> Result<()> {
        validate::validate(self)
    }

    /// Instructions over all cores.
    pub fn instructions(&self) -> usize {
        self.cores.iter().map(|c| c.code.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    /// A stream of one core that halts, for a target that is no preset.
    fn tiny() -> Stream {
        let mut t = Target::preset("edge").expect("invariant: edge is a preset");
        t.name = "tiny".into();
        t.cost.adc_energy_pj = 3.5;
        Stream {
            name: "tiny".into(),
            target: Some(TargetRecord::Full(Box::new(t))),
            schedule: Schedule::Pipelined,
            arrays: 0,
            global_words: 0,
            inputs: vec![],
            outputs: vec![],
            layers: vec![],
            cores: vec![Core { scratch_words: 0, code: vec![Instr::Halt {}], marks: vec![] }],
            groups: vec![],
            windows: vec![],
            requants: vec![],
            adds: vec![],
            perms: vec![],
            hosts: vec![],
            digital: vec![],
        }
    }

    fn with_version(version: u32, body: &impl Serialize) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend(version.to_le_bytes());
        b.extend(postcard::to_stdvec(body).unwrap());
        b
    }

    #[test]
    fn the_whole_target_round_trips() {
        let s = tiny();
        assert_eq!(Stream::from_bytes(&s.to_bytes()).unwrap(), s);
        let text = text::print(&s);
        assert!(text.contains(".target-description {"), "{text}");
        assert_eq!(text::parse(&text).unwrap(), s);
        // A stamp that is not the description's is refused.
        let stamp = s.target.as_ref().unwrap().stamp_line();
        let bad = text.replace(&stamp, &stamp.replace("tiny", "other"));
        let err = text::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("is not the stamp of the .target-description"), "{err}");
    }

    #[test]
    fn the_digital_table_makes_version_3_and_round_trips() {
        let mut s = tiny();
        assert_eq!(&s.to_bytes()[8..12], &2u32.to_le_bytes(), "no digital entries: version 2");
        s.digital.push(DigitalEntry::Lut { input_min: -2, table: vec![1, 0, -1, 5] });
        s.cores[0].scratch_words = 8;
        s.cores[0].code.insert(0, Instr::Lut { table: 0, src: 0, dst: 4, len: 4 });
        let bytes = s.to_bytes();
        assert_eq!(&bytes[8..12], &3u32.to_le_bytes());
        assert_eq!(Stream::from_bytes(&bytes).unwrap(), s);
        assert_eq!(text::parse(&text::print(&s)).unwrap(), s);
        // An instruction whose entry is of another kind is refused.
        s.cores[0].code[0] = Instr::Softmax { table: 0, src: 0, dst: 4 };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("digital entry 0 is a lut entry"), "{err}");
    }

    #[test]
    fn version_1_is_read_with_its_stamp() {
        let s = tiny();
        let stamp = s.target.as_ref().unwrap().stamp_line();
        let v1 = with_version(1, &s.file().with_target(|r| r.stamp_line()));
        let back = Stream::from_bytes(&v1).unwrap();
        assert_eq!(back.target, Some(TargetRecord::Stamp(stamp)));
        assert_eq!(Stream { target: s.target.clone(), ..back }, s);
        let err = Stream::from_bytes(&with_version(4, &s.file())).unwrap_err().to_string();
        assert!(err.contains("version 4; this cimc reads versions 1 to 3"), "{err}");
    }

    /// A layer name holding a newline and a directive stays in its comment: the text reads
    /// back as the same stream (issue 25).
    #[test]
    fn a_layer_name_with_a_newline_round_trips_through_the_text() {
        let mut s = tiny();
        s.layers = vec!["fc\n.core 7 scratch=9\r\u{1b}[2J".into()];
        s.cores[0].marks = vec![(0, 0)];
        let text = text::print(&s);
        assert!(text.contains(".at 0 ; fc\\u{a}.core 7"), "{text}");
        assert_eq!(text::parse(&text).unwrap(), s);
    }

    /// A core declaring more scratchpad words than its target has bytes is refused (the
    /// emitter bands every step to fit; issue 23).
    #[test]
    fn a_scratchpad_above_the_targets_is_refused() {
        let mut s = tiny();
        s.cores[0].scratch_words = 256 * 1024;
        s.validate().unwrap();
        s.cores[0].scratch_words += 1;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("core 0 declares a scratchpad of 262145 words"), "{err}");
        assert!(err.contains("256 KiB per core"), "{err}");
    }

    /// Memories no simulator could hold are refused when a stream is read (issue 25).
    #[test]
    fn memories_above_the_limit_are_refused() {
        let mut s = tiny();
        s.cores[0].scratch_words = u32::MAX;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("4294967295 words") && err.contains("limit"), "{err}");
        let mut s = tiny();
        s.global_words = u32::MAX;
        assert!(text::parse(&text::print(&s)).is_err());
    }
}
