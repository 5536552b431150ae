//! The accelerator's instruction set, defined once. The `isa!` invocation in this file generates
//! the [`Instr`] enum and [`INSTRS`], the table of every instruction's opcode, mnemonic,
//! semantics and fields (type, range, meaning), which the binary encoding
//! ([`encode`](mod@encode)), the text assembly ([`asm`]) and the reference `docs/isa.md`
//! ([`doc`]) all read. Everything from "Machine model" to the end of this comment is copied into
//! `docs/isa.md` ([`doc::isa_markdown`]), so it is written as plain Markdown.
//!
//! # Machine model
//!
//! **Cores.** The chip has `cores` cores (a number of the target). Each core runs its own list of
//! instructions: straight-line code without branches, ending in `halt`. Cores run concurrently
//! and meet only at `sync` barriers and through `send`/`recv`, so the result of a correct stream
//! never depends on timing.
//!
//! **Memories.** Each core has a local scratchpad; all cores share one global memory. A memory
//! is an array of 64-bit signed words and an address is a word index (`u32`). A word holds one
//! value whatever its kind: a code, an accumulator, or (for the host operations at the edges) an
//! f32 as its bit pattern. Vector and crossbar instructions work on the scratchpad of the core
//! that runs them; `load` and `store` move words between global memory and that scratchpad;
//! `send` writes into another core's scratchpad. The width of a value in the hardware is what a
//! data-moving instruction declares in `elem_bytes` (1 for 8-bit codes, 4 for 32-bit
//! accumulators...): the cost model charges memory traffic by it, not by the 8 bytes of a word.
//!
//! **Crossbar groups.** A group holds the weights of one replica of one layer (all its row tiles
//! and column groups, over one or more arrays) and belongs to one core. Weights are data of the
//! stream file, not instructions: the stream's group table gives each group its core, its weight
//! codes (`N` outputs, `K` rows per conv group, the number of conv groups) and its arrays. A
//! pipelined stream programs every group when it is loaded; a layer-serial stream, whose layers
//! take turns on the same arrays, programs a group with `xbar_load` before its first `mvm`.
//! `xbar_config` sets a group's numerics before its first `mvm`; `adc_step` then refines the ADC
//! step of single column groups.
//!
//! **Tables.** Parameters that do not fit in an instruction are data of the stream file, in
//! tables that instructions index by number:
//!
//! | table | used by | an entry holds |
//! |---|---|---|
//! | window | `im2col`, `max_pool`, `avg_pool` | the source image as it lies in memory (channels, height, width, channel-first), kernel, strides, dilations, pads, conv groups (`im2col`), the output's height and width, count-include-pad (pooling), and the range of output positions produced (row-major; so that a layer can be cut into chunks). `im2col` writes its vectors position after position; pooling writes channel-first, `[C][positions]` |
//! | requant | `requant`, `avg_pool` | per index `c`: a bias `b[c]` (i64), an integer scale `a[c]` (1 when absent) and a multiplier `M[c] = m[c]·2^(−31−sh[c])`; the output zero point `z` and the clamp range `lo..=hi`. A vector holds one value per index, or one value shared by all |
//! | add | `add` | the input zero points `z_a`, `z_b`, the headroom `h`, the input multipliers `M_a`, `M_b`, and the output multiplier `M`, zero point `z` and clamp range `lo..=hi` |
//! | permutation | `transpose` | the source shape and the permutation of its axes |
//! | host | `host` | a float operation with its global addresses and parameters: quantize (scale, zero point, clamp range), dequantize (scales, zero points, axis), softmax (shape, axis) |
//! | digital | `lut`, `mul`, `softmax`, `layer_norm`, `gather`, `gather_rows`, `lut_per_element`, `matmul` | one kind per instruction: a lookup table and its smallest code; the zero points and requantization of a product; a softmax's shape, axis, exponential table and requantization; a LayerNorm's groups, group length, zero point, epsilon term, scale and bias codes and requantization; a gather's indices and fill code; an embedding's rows; a tensor's shape, the smallest code and the tables of a per-element lookup with their shape; a matrix product's shapes, zero points and requantization |
//!
//! **Arithmetic.** Integer and exact, bit-exact with the interpreter program: i64 on words (the
//! emitter guarantees that no result overflows), requantization as `arith::requantize` computes
//! it (`docs/hardware-model.md` §4), the crossbar as `docs/hardware-model.md` §1 and §3 describe
//! it.
//!
//! # From program steps to instructions
//!
//! Every step of the interpreter program is expressed with these instructions as follows.
//!
//! | program step | instructions | how |
//! |---|---|---|
//! | `Quantize`, `Dequantize`, `Softmax` | `host` | float arithmetic at the edges of the network; the chip has no float unit. The host entry holds the step's parameters |
//! | `Conv` | `im2col`, `mvm`, `requant` | `xbar_config` (and `adc_step`) once per group before its first `mvm`; the crossbar computes the product with the ADC, shift-and-add and the offset and input-offset terms; the bias is in the requant entry. A step without a crossbar map runs on a group configured lossless (§3), which computes the exact product |
//! | `Gemm` | `mvm`, `requant` | as `Conv`; the input rows are the vectors (no `im2col`) |
//! | `Affine` | `requant` | table-driven: the entry's integer scales `a[c]` and biases `b[c] − z_x·a[c]` give `(q − z_x)·a[c] + b[c]` exactly |
//! | `Rescale` | `requant` | `a = 1`, `b = −z_x` (a ReLU whose multiplier is exactly 1 may be `relu` instead) |
//! | `MaxPool` | `max_pool` | |
//! | `AvgPool` | `avg_pool` | the requant entry's multipliers are indexed by the window count `k − 1` |
//! | `GlobalAvgPool` | `avg_pool` | a window covering the whole spatial extent, and a requant entry of one multiplier |
//! | `Add` | `add` | operands of equal length; a broadcast operand is first expanded to the output's shape with `gather` |
//! | `Sub` | `requant`, `add` | `b` negated about its zero point by a `requant` in place (`a = −1`, `b = 2·z_b`, multiplier 1: `2·z_b − q_b` exactly), then `add` |
//! | `Lut` | `lut` | a digital entry holding the table |
//! | `Mul` | `mul` | operands of equal length; a broadcast operand is first expanded to the output's shape with `gather` |
//! | `IntSoftmax` | `softmax` | the whole tensor at once; the entry holds its shape and axis |
//! | `IntLayerNorm` | `layer_norm` | the whole tensor at once, group after group |
//! | `Gather` | `gather` | the moves of Slice, Split, Expand, Tile, DepthToSpace, nearest Resize...; the entry holds the index of every output code |
//! | `GatherRows` | `gather_rows` | the embedding table is the entry's; the indices are loaded like codes |
//! | `MatMulCodes` | `matmul` | on the core's digital matrix unit (not a crossbar: both operands change with the input) |
//! | `LutPerElement` | `lut_per_element` | the entry holds the tables; an input that broadcasts to the output is first expanded with `gather` |
//! | `Div`, `Resize`, `Lrn`, `Normalize` | none yet | the emitter refuses a program holding one, naming the step and its node (exit 1); `Lrn` and `Normalize` compute in f64, which the chip has not |
//! | `Concat` | `copy` or `store` | each input lands at its offset in the output, one copy per contiguous run; an input whose scale differs goes through `requant` (`a = 1`, `b = −z_x`) first |
//! | `Reshape` | none | the same words in the same order: the emitter reuses the address (or copies) |
//! | `Transpose` | `transpose` | a permutation entry; the same instruction converts between channel-first and channel-last layouts |
//! | `Pad` | `fill`, `copy` | fill the output with the code, then copy each contiguous run of the input into place |
//!
//! `shift_add` adds partial accumulators (shift 0) when the emitter splits the rows of one layer
//! over several groups, or weight slices that were converted separately; `relu` clamps codes
//! from below without a change of scale.

pub mod asm;
pub mod doc;
pub mod encode;

pub use cimc_ir::WeightEncoding;
pub use encode::{decode, decode_all, encode, encode_all};

use crate::error::{BackendError, Result};

/// Bytes per encoded instruction.
pub const WIDTH: usize = 24;

/// The most fields any instruction has.
pub const MAX_FIELDS: usize = 16;

/// The type of an instruction field: its width in the encoding, its signedness and its text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    U8,
    U16,
    U32,
    I32,
    /// A crossbar [`WeightEncoding`]: one byte, its index in `WeightEncoding::NAMES` (0
    /// differential, 1 offset, 2 flipped); in text the name.
    Encoding,
}

impl FieldKind {
    /// Bytes the field takes in the binary encoding.
    pub const fn bytes(self) -> usize {
        match self {
            FieldKind::U8 | FieldKind::Encoding => 1,
            FieldKind::U16 => 2,
            FieldKind::U32 | FieldKind::I32 => 4,
        }
    }

    pub const fn signed(self) -> bool {
        matches!(self, FieldKind::I32)
    }

    /// The name used in the documentation.
    pub const fn name(self) -> &'static str {
        match self {
            FieldKind::U8 => "u8",
            FieldKind::U16 => "u16",
            FieldKind::U32 => "u32",
            FieldKind::I32 => "i32",
            FieldKind::Encoding => "encoding",
        }
    }
}

/// A value an instruction field can hold, seen as an `i64` by the generic code.
pub trait FieldValue: Sized + Copy {
    const KIND: FieldKind;
    const MIN: i64;
    const MAX: i64;
    fn to_i64(self) -> i64;
    /// `None` when `v` is not a value of the type.
    fn from_i64(v: i64) -> Option<Self>;
}

macro_rules! int_field {
    ($($t:ty => $k:ident),*) => {$(
        impl FieldValue for $t {
            const KIND: FieldKind = FieldKind::$k;
            const MIN: i64 = <$t>::MIN as i64;
            const MAX: i64 = <$t>::MAX as i64;
            fn to_i64(self) -> i64 {
                self as i64
            }
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    )*};
}
int_field!(u8 => U8, u16 => U16, u32 => U32, i32 => I32);

impl FieldValue for WeightEncoding {
    const KIND: FieldKind = FieldKind::Encoding;
    const MIN: i64 = 0;
    const MAX: i64 = WeightEncoding::ALL.len() as i64 - 1;
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn from_i64(v: i64) -> Option<Self> {
        usize::try_from(v).ok().and_then(|i| WeightEncoding::ALL.get(i)).copied()
    }
}

/// One field of an instruction.
#[derive(Clone, Copy, Debug)]
pub struct FieldInfo {
    pub name: &'static str,
    pub kind: FieldKind,
    /// The accepted range (inclusive); the decoder and the parser reject values outside it.
    pub min: i64,
    pub max: i64,
    /// Its meaning (lines of the doc comment).
    pub doc: &'static [&'static str],
}

impl FieldInfo {
    /// The accepted range as text (`1..=16`, `differential, offset or flipped`).
    pub fn range_text(&self) -> String {
        match self.kind {
            FieldKind::Encoding => {
                let names = WeightEncoding::NAMES.iter().enumerate();
                let each: Vec<String> = names.map(|(i, n)| format!("`{n}` ({i})")).collect();
                match each.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} or {last}", rest.join(", "))
                    }
                    _ => each.concat(),
                }
            }
            _ => format!("{}..={}", self.min, self.max),
        }
    }
}

/// One instruction: opcode, mnemonic, semantics and fields in encoding (and text) order.
#[derive(Clone, Copy, Debug)]
pub struct InstrInfo {
    pub opcode: u8,
    pub mnemonic: &'static str,
    /// The Rust variant name.
    pub name: &'static str,
    /// Semantics (lines of the doc comment; the first paragraph is the summary).
    pub doc: &'static [&'static str],
    pub fields: &'static [FieldInfo],
}

impl InstrInfo {
    /// Bytes used by the opcode and the fields; the rest of the [`WIDTH`] is reserved (zero).
    pub const fn used_bytes(&self) -> usize {
        let mut n = 1;
        let mut k = 0;
        while k < self.fields.len() {
            n += self.fields[k].kind.bytes();
            k += 1;
        }
        n
    }

    /// The byte offset of each field in the encoding, in order.
    pub fn offsets(&self) -> impl Iterator<Item = (usize, &'static FieldInfo)> {
        let fields: &'static [FieldInfo] = self.fields;
        fields.iter().scan(1usize, |at, f| {
            let o = *at;
            *at += f.kind.bytes();
            Some((o, f))
        })
    }

    /// The summary: the first paragraph of the doc, on one line.
    pub fn summary(&self) -> String {
        let mut s = Vec::new();
        for l in self.doc {
            let l = l.trim();
            if l.is_empty() {
                break;
            }
            s.push(l);
        }
        s.join(" ")
    }

    /// The class of the instruction, from the high nibble of its opcode.
    pub fn class(&self) -> &'static str {
        match self.opcode >> 4 {
            0 => "Control",
            1 => "Memory and communication",
            2 => "Crossbar",
            4 => "Digital matrix unit",
            _ => "Vector (digital units)",
        }
    }

    pub fn field(&self, name: &str) -> Option<(usize, &'static FieldInfo)> {
        let fields: &'static [FieldInfo] = self.fields;
        fields.iter().enumerate().find(|(_, f)| f.name == name)
    }
}

/// The field values of one instruction, in order, as `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Values {
    len: usize,
    vals: [i64; MAX_FIELDS],
}

impl Values {
    fn from_slice(s: &[i64]) -> Values {
        let mut vals = [0; MAX_FIELDS];
        vals[..s.len()].copy_from_slice(s);
        Values { len: s.len(), vals }
    }
}

impl std::ops::Deref for Values {
    type Target = [i64];
    fn deref(&self) -> &[i64] {
        &self.vals[..self.len]
    }
}

macro_rules! field_range {
    ($ty:ident) => {
        (<$ty as FieldValue>::MIN, <$ty as FieldValue>::MAX)
    };
    ($ty:ident, $lo:expr, $hi:expr) => {{
        let range: (i64, i64) = ($lo, $hi);
        range
    }};
}

/// The ranges of `xbar_config`'s geometry fields: the bounds of [`cimc_ir::CrossbarGeometry`],
/// the one set every executor supports (the 16-bit `rows` and `cols` fields are why those end
/// at 65535).
const fn geometry_range((lo, hi): (u64, u64)) -> (i64, i64) {
    (lo as i64, hi as i64)
}
const XBAR_ROWS: (i64, i64) = geometry_range(cimc_ir::CrossbarGeometry::ROWS);
const XBAR_COLS: (i64, i64) = geometry_range(cimc_ir::CrossbarGeometry::COLS);
const XBAR_CELL_BITS: (i64, i64) = geometry_range(cimc_ir::CrossbarGeometry::CELL_BITS);
const XBAR_DAC_BITS: (i64, i64) = geometry_range(cimc_ir::CrossbarGeometry::DAC_BITS);
const XBAR_ADC_BITS: (i64, i64) = geometry_range(cimc_ir::CrossbarGeometry::ADC_BITS);

/// Generates [`Instr`], [`INSTRS`] and the conversions between them from one list.
macro_rules! isa {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident = $opcode:literal $mnemonic:literal {
            $(
                $(#[doc = $fdoc:literal])*
                $field:ident : $ty:ident $([$lo:expr, $hi:expr])?
            ),* $(,)?
        }
    )*) => {
        /// One instruction of the accelerator (see the module documentation and `docs/isa.md`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Instr {
            $(
                $(#[doc = $doc])*
                $name { $( $(#[doc = $fdoc])* $field: $ty ),* },
            )*
        }

        /// Every instruction, in opcode order: the one table of the instruction set.
        pub const INSTRS: &[InstrInfo] = &[
            $(InstrInfo {
                opcode: $opcode,
                mnemonic: $mnemonic,
                name: stringify!($name),
                doc: &[$($doc),*],
                fields: &[$(FieldInfo {
                    name: stringify!($field),
                    kind: <$ty as FieldValue>::KIND,
                    min: field_range!($ty $(, $lo, $hi)?).0,
                    max: field_range!($ty $(, $lo, $hi)?).1,
                    doc: &[$($fdoc),*],
                }),*],
            }),*
        ];

        impl Instr {
            pub fn opcode(&self) -> u8 {
                match self {
                    $(Instr::$name { .. } => $opcode,)*
                }
            }

            /// The field values in order.
            pub fn values(&self) -> Values {
                match *self {
                    $(Instr::$name { $($field),* } => {
                        Values::from_slice(&[$(FieldValue::to_i64($field)),*])
                    })*
                }
            }

            /// The instruction of `opcode` with these field values; `None` for an unknown
            /// opcode, a wrong number of values or a value its type cannot hold (ranges
            /// narrower than the type are checked by [`Instr::validate`], not here).
            pub fn from_values(opcode: u8, values: &[i64]) -> Option<Instr> {
                let mut it = values.iter().copied();
                let instr = match opcode {
                    $($opcode => Instr::$name { $($field: FieldValue::from_i64(it.next()?)?),* },)*
                    _ => return None,
                };
                match it.next() {
                    Some(_) => None,
                    None => Some(instr),
                }
            }
        }
    };
}

isa! {
    /// Stops this core: the last instruction of every core's list.
    Halt = 0x01 "halt" {}

    /// Barrier: the core waits until every core has reached a `sync` with the same `barrier`.
    ///
    /// Every core meets the same barriers in the same order.
    Sync = 0x02 "sync" {
        /// Barrier number.
        barrier: u32,
    }

    /// Runs entry `op` of the host table, a float operation at the edges of the network
    /// (quantize the input, dequantize the output, softmax), on global memory; the core waits for
    /// it to finish.
    ///
    /// The entry names the global addresses it reads and writes. The cost model counts it as
    /// host work, not chip work.
    Host = 0x03 "host" {
        /// Index into the host table.
        op: u16,
    }

    /// `local[dst + i] = global[src + i]` for `i < len`.
    Load = 0x10 "load" {
        /// Scratchpad address of the first word written.
        dst: u32,
        /// Global address of the first word read.
        src: u32,
        /// Words moved.
        len: u32,
        /// Bytes of one value in the hardware (cost model).
        elem_bytes: u8 [1, 8],
    }

    /// `global[dst + i] = local[src + i]` for `i < len`.
    Store = 0x11 "store" {
        /// Global address of the first word written.
        dst: u32,
        /// Scratchpad address of the first word read.
        src: u32,
        /// Words moved.
        len: u32,
        /// Bytes of one value in the hardware (cost model).
        elem_bytes: u8 [1, 8],
    }

    /// `local[dst + i] = local[src + i]` for `i < len`, as if the source were read entirely
    /// before anything is written (the ranges may overlap).
    Copy = 0x12 "copy" {
        /// Scratchpad address of the first word written.
        dst: u32,
        /// Scratchpad address of the first word read.
        src: u32,
        /// Words copied.
        len: u32,
    }

    /// `local[dst + i] = value` for `i < len`: clears accumulators, fills padding.
    Fill = 0x13 "fill" {
        /// Scratchpad address of the first word written.
        dst: u32,
        /// Words written.
        len: u32,
        /// The value written.
        value: i32,
    }

    /// Copies `local[src .. src + len]` of this core to `local[dst .. dst + len]` of core `to`.
    ///
    /// The sender does not wait. The receiver reads the words only after a `recv` from this
    /// core has accounted for them.
    Send = 0x14 "send" {
        /// The receiving core.
        to: u16,
        /// Address in the receiver's scratchpad of the first word written.
        dst: u32,
        /// Address in this core's scratchpad of the first word read.
        src: u32,
        /// Words sent.
        len: u32,
        /// Bytes of one value in the hardware (cost model).
        elem_bytes: u8 [1, 8],
    }

    /// Waits until `len` more words sent by core `from` have arrived.
    ///
    /// Each core keeps, per sender, the number of words that have arrived and that no `recv`
    /// has consumed yet; `recv` waits until that number is at least `len`, then consumes `len`.
    Recv = 0x15 "recv" {
        /// The sending core.
        from: u16,
        /// Words to wait for.
        len: u32,
    }

    /// Sets the numerics of crossbar group `group` (`docs/hardware-model.md` §1 and §3) for the
    /// `mvm`s that follow; every column group gets the ADC step `adc_step`.
    XbarConfig = 0x20 "xbar_config" {
        /// The crossbar group.
        group: u16,
        /// `R`: rows per row tile (rows activated at once).
        rows: u16 [XBAR_ROWS.0, XBAR_ROWS.1],
        /// `C`: physical columns of one array (fixes the column groups).
        cols: u16 [XBAR_COLS.0, XBAR_COLS.1],
        /// `b_a`: bits of the crossbar input `v = q − input_min`.
        input_bits: u8 [1, 16],
        /// `b_d`: input bits applied per cycle (1 = bit-serial).
        dac_bits: u8 [XBAR_DAC_BITS.0, XBAR_DAC_BITS.1],
        /// `b_c`: bits stored per cell.
        cell_bits: u8 [XBAR_CELL_BITS.0, XBAR_CELL_BITS.1],
        /// `b_w`: bits of the weight codes.
        weight_bits: u8 [2, 16],
        /// Bits of the unsigned magnitudes stored (`b_w − 1` differential, `b_w` offset or
        /// flipped).
        magnitude_bits: u8 [1, 17],
        /// How signed weights sit in non-negative cells.
        encoding: WeightEncoding,
        /// `b_adc`: ADC resolution in bits.
        adc_bits: u8 [XBAR_ADC_BITS.0, XBAR_ADC_BITS.1],
        /// `e`: the ADC step is `2^e`.
        adc_step: u8 [0, 40],
        /// `q_min`: the smallest input code; the crossbar receives `q − input_min`.
        input_min: i32,
        /// `z_x`: the input zero point (the input-offset term `(input_min − z_x)·Σ_k w[k,n]`).
        input_zero: i32,
    }

    /// Sets the ADC step of one column group of `group` to `2^step` (per-column-group ADC
    /// ranges, `docs/hardware-model.md` §3); comes after the group's `xbar_config`.
    AdcStep = 0x21 "adc_step" {
        /// The crossbar group.
        group: u16,
        /// The column group, numbered as in `program::Crossbar::column_group_of`.
        column_group: u16,
        /// `e`: the ADC step is `2^e`.
        step: u8 [0, 40],
    }

    /// Matrix-vector products on a crossbar group: `count` input vectors from `local[src ..]`
    /// (im2col layout: per vector, the `K` codes of each conv group); writes `N` accumulators
    /// per vector from `local[dst ..]`.
    ///
    /// The exact crossbar arithmetic of `docs/hardware-model.md` §1 and §3 with the group's
    /// configuration: input slices, weight slices, every partial sum through the ADC,
    /// shift-and-add, the offset-encoding term and the input-offset term. No bias. The group
    /// entry gives the strides: row `r` of conv group `g` of vector `v` is
    /// `local[src + v·in_stride + in_offset + g·group_stride + r]`, output `o` of vector `v` goes
    /// to `local[dst + v·out_stride + o]` (a whole layer: `in_stride = groups·K`,
    /// `out_stride = N`), so that the parts of a layer split over several groups read their
    /// rows out of the same vectors and write into the same accumulators.
    Mvm = 0x22 "mvm" {
        /// The crossbar group.
        group: u16,
        /// Scratchpad address of the first input code.
        src: u32,
        /// Scratchpad address of the first accumulator written.
        dst: u32,
        /// Input vectors.
        count: u32,
    }

    /// Programs the weights of group `group` (its entry in the group table) into the group's
    /// arrays, replacing whatever group held them.
    ///
    /// Layer-serial schedules, where the layers of a network take turns on fewer arrays than
    /// they need together, reprogram arrays with it; a pipelined schedule programs every group
    /// once when the stream is loaded and never needs it. An `mvm` on a group whose arrays hold
    /// another group's weights is an error.
    XbarLoad = 0x23 "xbar_load" {
        /// The crossbar group.
        group: u16,
    }

    /// Writes the im2col vectors of window entry `window`: for each output position the entry
    /// produces, `groups·K` codes (per conv group, rows `(c, ky, kx)` in row-major order), one
    /// vector after the other.
    ///
    /// Reads the source tensor at `local[src ..]` as the entry describes it; positions in the
    /// padding read the code `pad` (the input zero point, real 0).
    Im2col = 0x30 "im2col" {
        /// Index into the window table.
        window: u16,
        /// Scratchpad address of the source tensor.
        src: u32,
        /// Scratchpad address of the first vector written.
        dst: u32,
        /// The code read in the padding.
        pad: i32,
    }

    /// `local[dst + i] += local[src + i] << shift` for `i < len`, on i64 accumulators.
    ShiftAdd = 0x31 "shift_add" {
        /// Scratchpad address of the accumulators updated.
        dst: u32,
        /// Scratchpad address of the accumulators added.
        src: u32,
        /// Accumulators.
        len: u32,
        /// Left shift of the added values.
        shift: u8 [0, 63],
    }

    /// Requantizes: `local[dst + i] = clamp(z + round((a[c]·x + b[c])·M[c]), lo, hi)` with
    /// `x = local[src + i]`, `c = (first_channel + i / channel_len) mod channels`, the
    /// parameters of requant entry `table`.
    ///
    /// `round(y·M)` with `M = m·2^(−31−sh)` is `(y·m + 2^(30+sh)) >> (31+sh)` in i128 (round
    /// half up, `docs/hardware-model.md` §4, `arith::requantize`); `a[c]` is 1 when the entry has
    /// no scales; `channels` is the entry's number of channels.
    Requant = 0x32 "requant" {
        /// Index into the requant table.
        table: u16,
        /// Scratchpad address of the first accumulator read.
        src: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
        /// Values.
        len: u32,
        /// Consecutive values of one channel (`H·W` channel-first, 1 channel-last).
        channel_len: u32 [1, 4294967295],
        /// The channel of the first value (when a tensor is requantized in chunks).
        first_channel: u32,
    }

    /// `local[dst + i] = max(local[src + i], zero)` for `i < len`: ReLU on codes whose scale
    /// does not change.
    Relu = 0x33 "relu" {
        /// Scratchpad address of the first code written.
        dst: u32,
        /// Scratchpad address of the first code read.
        src: u32,
        /// Codes.
        len: u32,
        /// The zero point (real 0).
        zero: i32,
    }

    /// Max pooling on codes over window entry `window`: each output is the largest code of its
    /// window inside the input (padding never wins).
    MaxPool = 0x34 "max_pool" {
        /// Index into the window table.
        window: u16,
        /// Scratchpad address of the source tensor.
        src: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
    }

    /// Average pooling over window entry `window`: each output is
    /// `clamp(z + round(s·M[k−1]), lo, hi)` with `s = Σ (x − zero)` over the window's
    /// positions inside the input, `k` the number of its positions inside the input (or inside
    /// input and padding, as the entry says), and `M`, `z`, `lo`, `hi` from requant entry
    /// `table`.
    ///
    /// The requant entry is indexed by `k − 1` instead of a channel (its biases are 0, its
    /// scales 1); an entry of one multiplier serves every count (global average pooling).
    AvgPool = 0x35 "avg_pool" {
        /// Index into the window table.
        window: u16,
        /// Index into the requant table.
        table: u16,
        /// Scratchpad address of the source tensor.
        src: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
        /// The input zero point `z_x`.
        zero: i32,
    }

    /// Quantized addition: `local[dst + i] = clamp(z + round((r_a + r_b)·M), lo, hi)` with
    /// `r_a = clamp_i32(round(((local[a + i] − z_a) << h)·M_a))` and `r_b` likewise, the
    /// parameters of add entry `table`.
    ///
    /// Each rounding is that of `requant` (`docs/hardware-model.md` §4); `clamp_i32` clamps to the
    /// i32 range.
    Add = 0x36 "add" {
        /// Index into the add table.
        table: u16,
        /// Scratchpad address of the first operand.
        a: u32,
        /// Scratchpad address of the second operand.
        b: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
        /// Codes.
        len: u32,
    }

    /// Writes the source tensor with its axes permuted as permutation entry `table` says.
    Transpose = 0x37 "transpose" {
        /// Index into the permutation table.
        table: u16,
        /// Scratchpad address of the source tensor.
        src: u32,
        /// Scratchpad address of the first word written.
        dst: u32,
    }

    /// Table lookup: `local[dst + i] = table[local[src + i] − input_min]` for `i < len`, with
    /// the table and `input_min` of digital entry `table` (a `lut` entry).
    ///
    /// A code outside the table is an error. The program's `Lut` step: every element-wise
    /// function of one activation (GELU, sigmoid, a product by a constant...).
    Lut = 0x38 "lut" {
        /// Index into the digital table.
        table: u16,
        /// Scratchpad address of the first code read.
        src: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
        /// Codes.
        len: u32,
    }

    /// Product of two code vectors: `local[dst + i] = requantize((local[a + i] − z_a)·(local[b
    /// + i] − z_b), M, z, lo, hi)` with the parameters of digital entry `table` (a `mul` entry).
    Mul = 0x39 "mul" {
        /// Index into the digital table.
        table: u16,
        /// Scratchpad address of the first operand.
        a: u32,
        /// Scratchpad address of the second operand.
        b: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
        /// Codes.
        len: u32,
    }

    /// Softmax on codes over the axis of digital entry `table` (a `softmax` entry: the
    /// tensor's shape, the axis, the exponential table and the requantization), exactly as the
    /// program's `IntSoftmax` (`docs/hardware-model.md` §4, "Softmax on codes").
    ///
    /// Per row: the largest code, `e = E[max − q]` from the entry's table, their sum `S`, then
    /// `t = floor((e·2^32 + floor(S/2)) / S)` requantized. A difference outside the table is an
    /// error.
    Softmax = 0x3a "softmax" {
        /// Index into the digital table.
        table: u16,
        /// Scratchpad address of the source tensor.
        src: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
    }

    /// LayerNorm on codes over consecutive groups (a `layer_norm` entry: groups, group length,
    /// input zero point, epsilon term, scale and bias codes, requantization), exactly as the
    /// program's `IntLayerNorm` (`docs/hardware-model.md` §4, "LayerNorm on codes").
    ///
    /// Per group: the sums `S1`, `S2`, the integer square root by Newton's iteration, one
    /// division per element, a product by the scale code, the bias, the requantization.
    LayerNorm = 0x3b "layer_norm" {
        /// Index into the digital table.
        table: u16,
        /// Scratchpad address of the source tensor.
        src: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
    }

    /// Moves codes by index: `local[dst + i] = local[src + index[i]]`, or the entry's fill code
    /// where `index[i]` is `u32::MAX`, for every index of digital entry `table` (a `gather`
    /// entry); the program's `Gather` step (Slice, Split, Expand, Tile...).
    Gather = 0x3c "gather" {
        /// Index into the digital table.
        table: u16,
        /// Scratchpad address of the source tensor.
        src: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
    }

    /// Rows of a constant table by integer indices (an embedding): for each of the entry's
    /// `count` indices `k = local[src + i]` (`k < 0` counts from the end), row `k` of the table
    /// of digital entry `table` (a `gather_rows` entry) goes to `local[dst + i·row ..]`.
    ///
    /// An index outside `[−rows, rows)` is an error.
    GatherRows = 0x3d "gather_rows" {
        /// Index into the digital table.
        table: u16,
        /// Scratchpad address of the first index.
        src: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
    }

    /// One table per element: `local[dst + i] = tables[t(i)·n + local[src + i] − input_min]`
    /// for every element `i` of the tensor of digital entry `table` (a `lut_per_element` entry:
    /// the tensor's shape, `input_min`, the tables' shape and the tables of `n` entries each),
    /// `t(i)` the table that element `i` broadcasts from (numpy rules, the tables' shape of the
    /// tensor's rank); the program's `LutPerElement`.
    ///
    /// A constant of several values beside one activation: a per-channel product or sum, a
    /// class token concatenated with the patches (the activation's codes requantized, the
    /// token's code where it goes), a causal mask (`Where`: the scores where the mask keeps
    /// them, the lowest code where it chooses `−inf`). A code outside its table is an error.
    LutPerElement = 0x3e "lut_per_element" {
        /// Index into the digital table.
        table: u16,
        /// Scratchpad address of the source tensor.
        src: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
    }

    /// Matrix product of two code tensors on the core's digital matrix unit:
    /// `local[dst ..] = requantize(Σ_k (a[.., i, k] − z_a)·(b[.., k, j] − z_b))` over the shapes,
    /// batch broadcasting and parameters of digital entry `table` (a `matmul` entry), exactly as
    /// the program's `MatMulCodes` (onnxruntime's QLinearMatMul).
    ///
    /// The dynamic products of attention (`Q·Kᵀ`, `attention·V`): neither operand is a
    /// constant, so neither can sit in a crossbar. The accumulator is i64.
    Matmul = 0x40 "matmul" {
        /// Index into the digital table.
        table: u16,
        /// Scratchpad address of the first operand.
        a: u32,
        /// Scratchpad address of the second operand.
        b: u32,
        /// Scratchpad address of the first code written.
        dst: u32,
    }
}

// The table is consistent: opcodes unique and non-zero, every instruction fits in WIDTH bytes,
// no instruction has more than MAX_FIELDS fields.
const _: () = {
    let mut i = 0;
    while i < INSTRS.len() {
        assert!(INSTRS[i].opcode != 0, "opcode 0 is reserved");
        assert!(INSTRS[i].used_bytes() <= WIDTH, "an instruction does not fit in WIDTH");
        assert!(INSTRS[i].fields.len() <= MAX_FIELDS, "too many fields");
        let mut j = i + 1;
        while j < INSTRS.len() {
            assert!(INSTRS[i].opcode != INSTRS[j].opcode, "two instructions share an opcode");
            j += 1;
        }
        i += 1;
    }
};

/// `OPCODE_INDEX[op]`: the index in [`INSTRS`] of opcode `op`, or `u8::MAX`.
const OPCODE_INDEX: [u8; 256] = {
    let mut t = [u8::MAX; 256];
    let mut i = 0;
    while i < INSTRS.len() {
        t[INSTRS[i].opcode as usize] = i as u8;
        i += 1;
    }
    t
};

/// The instruction of an opcode.
pub fn info_by_opcode(opcode: u8) -> Option<&'static InstrInfo> {
    INSTRS.get(OPCODE_INDEX[opcode as usize] as usize)
}

/// The instruction of a mnemonic.
pub fn info_by_mnemonic(mnemonic: &str) -> Option<&'static InstrInfo> {
    INSTRS.iter().find(|i| i.mnemonic == mnemonic)
}

impl Instr {
    pub fn info(&self) -> &'static InstrInfo {
        info_by_opcode(self.opcode()).expect("invariant: every variant is in INSTRS")
    }

    pub fn mnemonic(&self) -> &'static str {
        self.info().mnemonic
    }

    /// Checks every field against its range (the encoder does not; the decoder and the parser
    /// do).
    pub fn validate(&self) -> Result<()> {
        let info = self.info();
        for (f, &v) in info.fields.iter().zip(self.values().iter()) {
            if v < f.min || v > f.max {
                return Err(BackendError::Format(format!(
                    "{}: field `{}` = {v} is out of range {}",
                    info.mnemonic,
                    f.name,
                    f.range_text()
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Instr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&asm::print(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (k, a) in INSTRS.iter().enumerate() {
            assert_eq!(info_by_opcode(a.opcode).map(|i| i.mnemonic), Some(a.mnemonic));
            assert_eq!(info_by_mnemonic(a.mnemonic).map(|i| i.opcode), Some(a.opcode));
            for b in &INSTRS[k + 1..] {
                assert_ne!(a.mnemonic, b.mnemonic);
            }
            for f in a.fields {
                let (lo, hi) = match f.kind {
                    FieldKind::U8 => (0, u8::MAX as i64),
                    FieldKind::U16 => (0, u16::MAX as i64),
                    FieldKind::U32 => (0, u32::MAX as i64),
                    FieldKind::I32 => (i32::MIN as i64, i32::MAX as i64),
                    FieldKind::Encoding => (0, WeightEncoding::ALL.len() as i64 - 1),
                };
                assert!(lo <= f.min && f.min <= f.max && f.max <= hi, "{}.{}", a.name, f.name);
                assert!(!f.doc.is_empty(), "{}.{} has no doc", a.name, f.name);
            }
            assert!(!a.doc.is_empty(), "{} has no doc", a.name);
        }
        assert!(info_by_opcode(0).is_none());
    }

    #[test]
    fn values_round_trip() {
        let i = Instr::XbarConfig {
            group: 3,
            rows: 128,
            cols: 128,
            input_bits: 8,
            dac_bits: 1,
            cell_bits: 2,
            weight_bits: 8,
            magnitude_bits: 7,
            encoding: WeightEncoding::Offset,
            adc_bits: 8,
            adc_step: 2,
            input_min: -128,
            input_zero: -3,
        };
        assert_eq!(Instr::from_values(i.opcode(), &i.values()), Some(i));
        assert!(i.validate().is_ok());
        assert_eq!(Instr::from_values(0x01, &[1]), None);
        assert_eq!(Instr::from_values(0x02, &[]), None);
        assert_eq!(Instr::from_values(0x02, &[-1]), None);
        assert_eq!(Instr::from_values(0xff, &[]), None);
    }
}
