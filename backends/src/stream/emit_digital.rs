//! Emission of the steps that run on a core's digital units or on the host: one function per
//! step kind (`docs/isa.md`, "From program steps to instructions", says which instructions
//! each one becomes).

use super::{window_entry, Emitter};
use crate::error::Result;
use crate::isa::Instr;
use crate::program::{Buf, Requant, Step, Window};
use crate::stream::{AddEntry, DigitalEntry, HostEntry, PermEntry, RequantEntry, WindowEntry};

/// The requant entry and zero point of an average pooling.
struct Pool {
    table: u16,
    zero: i32,
    include_pad: bool,
}

/// The shape as the stream's tables hold it.
fn shape32(sh: &[usize]) -> Vec<u32> {
    sh.iter().map(|&d| d as u32).collect()
}

/// For each element of `to` (row-major), the element of `from` it broadcasts from (numpy rules:
/// axes aligned at the end, an axis of 1 repeated); `None` when `from` does not broadcast.
fn broadcast_map(from: &[usize], to: &[usize]) -> Option<Vec<u32>> {
    let pad = to.len().checked_sub(from.len())?;
    let mut strides = vec![0u64; to.len()];
    let mut stride = 1u64;
    for (d, &n) in from.iter().enumerate().rev() {
        if n == to[d + pad] {
            strides[d + pad] = stride;
        } else if n != 1 {
            return None;
        }
        stride *= n as u64;
    }
    let total: usize = to.iter().product();
    let mut index = Vec::with_capacity(total);
    for mut k in 0..total {
        let mut at = 0u64;
        for d in (0..to.len()).rev() {
            at += (k % to[d]) as u64 * strides[d];
            k /= to[d];
        }
        index.push(u32::try_from(at).ok()?);
    }
    Some(index)
}

impl Emitter<'_> {
    /// A step that is not a matrix product, on `core`. Every step kind has its arm; a new kind
    /// fails to compile here until it says how it is emitted.
    pub(super) fn emit_digital(&mut self, s: &Step, core: u16) -> Result<()> {
        match s {
            Step::Quantize { input, output, scale, zero_point, lo, hi } => {
                let h = HostEntry::Quantize {
                    src: self.addr[*input],
                    dst: self.addr[*output],
                    len: self.numel(*input) as u32,
                    scale: *scale,
                    zero_point: *zero_point,
                    lo: *lo,
                    hi: *hi,
                };
                self.host(core, h)
            }
            Step::Dequantize { input, output } => self.dequantize(core, *input, *output),
            Step::Softmax { input, output, axis } => {
                let h = HostEntry::Softmax {
                    src: self.addr[*input],
                    dst: self.addr[*output],
                    shape: shape32(&self.p.buffers[*input].shape),
                    axis: *axis as u32,
                };
                self.host(core, h)
            }
            Step::Affine { input, output, input_zero_point, scale, bias, requant } => {
                self.affine(core, (*input, *output), *input_zero_point, (scale, bias), requant)
            }
            Step::Rescale { input, output, input_zero_point, requant } => {
                let entry = RequantEntry::rescale(*input_zero_point, requant);
                self.requant_step(core, *input, *output, entry, 1)
            }
            Step::MaxPool { input, output, window, .. } => {
                self.pool_step(core, *input, *output, window, None)
            }
            Step::AvgPool {
                input,
                output,
                window,
                count_include_pad,
                input_zero_point,
                mult_by_count,
                zero_point,
                lo,
                hi,
                ..
            } => {
                let entry = RequantEntry {
                    scale: vec![],
                    bias: vec![],
                    mult: mult_by_count.clone(),
                    zero_point: *zero_point,
                    lo: *lo,
                    hi: *hi,
                };
                let table = Self::table(&mut self.requants, entry)?;
                let pool = Pool { table, zero: *input_zero_point, include_pad: *count_include_pad };
                self.pool_step(core, *input, *output, window, Some(pool))
            }
            Step::GlobalAvgPool { input, output, input_zero_point, requant } => {
                self.global_avg_pool(core, (*input, *output), *input_zero_point, requant)
            }
            // Sub is the Add recipe with `b` negated about its zero point: one entry for both.
            Step::Add { a, b, output, .. } | Step::Sub { a, b, output, .. } => {
                let entry = AddEntry::of_step(s)
                    .ok_or_else(|| self.err("an Add or Sub step without its parameters"))?;
                if matches!(s, Step::Sub { .. }) {
                    self.sub(core, (*a, *b), *output, entry)
                } else {
                    self.add(core, (*a, *b), *output, entry)
                }
            }
            Step::Concat { inputs, output, axis, rescale } => {
                self.concat(core, inputs, *output, *axis, rescale)
            }
            // Same words, same order: the output shares the input's region.
            Step::Reshape { .. } => Ok(()),
            Step::Transpose { input, output, perm } => self.transpose(core, *input, *output, perm),
            Step::Pad { input, output, pads, code } => self.pad(core, *input, *output, pads, *code),
            Step::Conv { .. } | Step::Gemm { .. } => Err(self.err("matrix step without a plan")),
            Step::Lut { input, output, input_min, table } => {
                let e = DigitalEntry::Lut { input_min: *input_min, table: table.clone() };
                self.unary_digital(core, (*input, *output), e, true)
            }
            Step::Mul { a, b, output, a_zero_point, b_zero_point, requant } => {
                let e = DigitalEntry::Mul {
                    a_zero_point: *a_zero_point,
                    b_zero_point: *b_zero_point,
                    requant: requant.clone(),
                };
                self.mul(core, (*a, *b), *output, e)
            }
            Step::IntSoftmax { input, output, axis, exp_table, requant } => {
                let e = DigitalEntry::Softmax {
                    shape: shape32(&self.p.buffers[*input].shape),
                    axis: *axis as u32,
                    exp_table: exp_table.clone(),
                    requant: requant.clone(),
                };
                self.unary_digital(core, (*input, *output), e, false)
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
                let sh = &self.p.buffers[*input].shape;
                let n: usize = sh[(*axis).min(sh.len())..].iter().product();
                let e = DigitalEntry::LayerNorm {
                    groups: (self.numel(*input) / n.max(1) as u64) as u32,
                    n: n as u32,
                    input_zero_point: *input_zero_point,
                    epsilon_term: *epsilon_term,
                    gamma: gamma.clone(),
                    beta: beta.clone(),
                    requant: requant.clone(),
                };
                self.unary_digital(core, (*input, *output), e, false)
            }
            Step::Gather { input, output, index } => {
                let fill = self.p.buffers[*output].quant.as_ref().map_or(0, |q| q.zero_point[0]);
                let src_len = self.numel(*input) as u32;
                let e = DigitalEntry::Gather { src_len, index: index.clone(), fill };
                self.unary_digital(core, (*input, *output), e, false)
            }
            Step::GatherRows { indices, output, rows, table } => {
                let count = self.numel(*indices) as u32;
                let e =
                    DigitalEntry::GatherRows { count, rows: *rows as u32, table: table.clone() };
                self.unary_digital(core, (*indices, *output), e, false)
            }
            Step::MatMulCodes { a, b, output, a_zero_point, b_zero_point, requant } => {
                let e = DigitalEntry::MatMul {
                    a_shape: shape32(&self.p.buffers[*a].shape),
                    b_shape: shape32(&self.p.buffers[*b].shape),
                    a_zero_point: *a_zero_point,
                    b_zero_point: *b_zero_point,
                    requant: requant.clone(),
                };
                self.matmul(core, (*a, *b), *output, e)
            }
            Step::LutPerElement { input, output, input_min, table_shape, tables } => {
                let e = DigitalEntry::LutPerElement {
                    shape: shape32(&self.p.buffers[*output].shape),
                    input_min: *input_min,
                    table_shape: shape32(table_shape),
                    tables: tables.clone(),
                };
                self.lut_per_element(core, (*input, *output), e)
            }
            // The instruction set has no quotient or interpolation yet, and LRN and the f64
            // normalization need a float unit: the program runs these steps, a stream cannot.
            Step::Div { .. } | Step::Lrn { .. } | Step::Normalize { .. } | Step::Resize { .. } => {
                Err(self.err(format!(
                    "the '{}' step has no instructions yet (the program runs it; compile without \
                 --emit stream)",
                    s.name()
                )))
            }
        }
    }

    /// `load` the input, one instruction with digital entry `e` (`lut` when `with_len`, else
    /// the entry's own instruction), `store`.
    fn unary_digital(
        &mut self,
        core: u16,
        (input, output): (Buf, Buf),
        e: DigitalEntry,
        with_len: bool,
    ) -> Result<()> {
        let kind = e.kind();
        if with_len {
            let table = Self::table(&mut self.digital, e.clone())?;
            let ops = self.flat_operands(&[input], output)?;
            if let Some(u) = self.flat_band_size(core, &ops, self.numel(output) as usize) {
                return self.flat_banded(core, &ops, output, u, |e, (a, b), x, dst| {
                    let len = (b - a) as u32;
                    e.push(core, Instr::Lut { table, src: x[0], dst, len });
                    Ok(())
                });
            }
        }
        if let Some((rows, per_row)) = self.row_bands(&e, input) {
            let eb = self.bytes_of(input);
            let regions = |r: usize| vec![((r * per_row) as u64, eb), ((r * per_row) as u64, 1)];
            if !self.fits(core, &regions(rows)) {
                if let Some(r) = self.largest_fit(core, rows, regions) {
                    return self.row_banded(core, (input, output), &e, (rows, per_row), r);
                }
            }
        }
        let table = Self::table(&mut self.digital, e)?;
        let x = self.load_buf(core, input)?;
        let out = self.alloc(core, self.numel(output))?;
        let (src, dst) = (x, out);
        self.push(
            core,
            match kind {
                _ if with_len => Instr::Lut { table, src, dst, len: self.numel(output) as u32 },
                "softmax" => Instr::Softmax { table, src, dst },
                "layer_norm" => Instr::LayerNorm { table, src, dst },
                "gather" => Instr::Gather { table, src, dst },
                _ => Instr::GatherRows { table, src, dst },
            },
        );
        self.store_buf(core, out, output);
        Ok(())
    }

    /// `lut_per_element` on the input expanded to the output's shape.
    fn lut_per_element(
        &mut self,
        core: u16,
        (input, output): (Buf, Buf),
        e: DigitalEntry,
    ) -> Result<()> {
        let table = Self::table(&mut self.digital, e)?;
        let x = self.load_expanded(core, input, output)?;
        let out = self.alloc(core, self.numel(output))?;
        self.push(core, Instr::LutPerElement { table, src: x, dst: out });
        self.store_buf(core, out, output);
        Ok(())
    }

    /// Loads buffer `b`; when its shape is not `like`'s, a `gather` expands it to that shape
    /// (numpy broadcasting) in a new region, whose address is returned.
    fn load_expanded(&mut self, core: u16, b: Buf, like: Buf) -> Result<u32> {
        let x = self.load_buf(core, b)?;
        let (from, to) = (&self.p.buffers[b].shape, &self.p.buffers[like].shape);
        if from == to {
            return Ok(x);
        }
        let index = broadcast_map(from, to)
            .ok_or_else(|| self.err(format!("{from:?} does not broadcast to {to:?}")))?;
        let src_len = u32::try_from(self.numel(b))
            .map_err(|_| self.err("a broadcast operand of 2^32 codes or more"))?;
        let table =
            Self::table(&mut self.digital, DigitalEntry::Gather { src_len, index, fill: 0 })?;
        let out = self.alloc(core, self.numel(like))?;
        self.push(core, Instr::Gather { table, src: x, dst: out });
        Ok(out)
    }

    /// `mul` of two operands of the output's shape (a broadcast one expanded first).
    fn mul(&mut self, core: u16, (a, b): (Buf, Buf), output: Buf, e: DigitalEntry) -> Result<()> {
        let table = Self::table(&mut self.digital, e)?;
        let ops = self.flat_operands(&[a, b], output)?;
        if let Some(u) = self.flat_band_size(core, &ops, self.numel(output) as usize) {
            return self.flat_banded(core, &ops, output, u, |e, (a, b), x, dst| {
                let len = (b - a) as u32;
                e.push(core, Instr::Mul { table, a: x[0], b: x[1], dst, len });
                Ok(())
            });
        }
        let xa = self.load_expanded(core, a, output)?;
        let xb = self.load_expanded(core, b, output)?;
        let len = self.numel(output) as u32;
        let out = self.alloc(core, len as u64)?;
        self.push(core, Instr::Mul { table, a: xa, b: xb, dst: out, len });
        self.store_buf(core, out, output);
        Ok(())
    }

    /// `matmul` on the digital matrix unit: both operands loaded whole.
    fn matmul(
        &mut self,
        core: u16,
        (a, b): (Buf, Buf),
        output: Buf,
        e: DigitalEntry,
    ) -> Result<()> {
        let table = Self::table(&mut self.digital, e)?;
        let xa = self.load_buf(core, a)?;
        let xb = self.load_buf(core, b)?;
        let out = self.alloc(core, self.numel(output))?;
        self.push(core, Instr::Matmul { table, a: xa, b: xb, dst: out });
        self.store_buf(core, out, output);
        Ok(())
    }

    fn host(&mut self, core: u16, h: HostEntry) -> Result<()> {
        let op = Self::table(&mut self.hosts, h)?;
        self.push(core, Instr::Host { op });
        Ok(())
    }

    fn dequantize(&mut self, core: u16, input: Buf, output: Buf) -> Result<()> {
        let d = &self.p.buffers[input];
        let quant = d.quant.clone().ok_or_else(|| self.err("input has no scale"))?;
        let h = HostEntry::Dequantize {
            src: self.addr[input],
            dst: self.addr[output],
            shape: shape32(&d.shape),
            quant,
        };
        self.host(core, h)
    }

    /// `requant` with the entry's integer scales `a[c]` and biases `b[c] − z_x·a[c]`.
    fn affine(
        &mut self,
        core: u16,
        (input, output): (Buf, Buf),
        z: i32,
        (scale, bias): (&[i32], &[i64]),
        requant: &Requant,
    ) -> Result<()> {
        let sh = &self.p.buffers[input].shape;
        let c = sh.get(1).copied().unwrap_or(1);
        let inner: usize = sh.iter().skip(2).product();
        if scale.len() != c || bias.len() != c {
            return Err(self.err(format!("{c} channels, {} scales", scale.len())));
        }
        let entry = RequantEntry::affine(z, scale, bias, requant);
        self.requant_step(core, input, output, entry, inner.max(1))
    }

    /// `avg_pool` over a window covering the whole spatial extent, with one multiplier.
    fn global_avg_pool(
        &mut self,
        core: u16,
        (input, output): (Buf, Buf),
        z: i32,
        requant: &Requant,
    ) -> Result<()> {
        let sh = self.p.buffers[input].shape.clone();
        let spatial = &sh[2.min(sh.len())..];
        let window = Window {
            kernel: spatial.to_vec(),
            strides: vec![1; spatial.len()],
            dilations: vec![1; spatial.len()],
            pads: vec![0; 2 * spatial.len()],
        };
        let entry = RequantEntry {
            scale: vec![],
            bias: vec![],
            mult: vec![requant.mult[0]],
            zero_point: requant.zero_point,
            lo: requant.lo,
            hi: requant.hi,
        };
        let table = Self::table(&mut self.requants, entry)?;
        let pool = Pool { table, zero: z, include_pad: false };
        self.pool_step(core, input, output, &window, Some(pool))
    }

    /// `Sub` as `add` of `a` and of `b` negated about its zero point: `b` is loaded, then a
    /// `requant` with `a = −1`, `b = 2·z_b` and the multiplier 1 (exact on integers) writes
    /// `2·z_b − q_b` in place (`docs/hardware-model.md` §4).
    fn sub(&mut self, core: u16, (a, b): (Buf, Buf), output: Buf, entry: AddEntry) -> Result<()> {
        let negate = RequantEntry::negate_about(entry.b_zero_point);
        self.add_with(core, (a, b), output, entry, Some(negate))
    }

    /// `add` of two operands of the output's shape (a broadcast one expanded first).
    fn add(&mut self, core: u16, (a, b): (Buf, Buf), output: Buf, entry: AddEntry) -> Result<()> {
        self.add_with(core, (a, b), output, entry, None)
    }

    /// `add` of `a` and `b`, `b` first requantized in place with `prepare_b` when given.
    fn add_with(
        &mut self,
        core: u16,
        (a, b): (Buf, Buf),
        output: Buf,
        entry: AddEntry,
        prepare_b: Option<RequantEntry>,
    ) -> Result<()> {
        let table = Self::table(&mut self.adds, entry)?;
        let prep = match prepare_b {
            Some(p) => Some(Self::table(&mut self.requants, p)?),
            None => None,
        };
        let ops = self.flat_operands(&[a, b], output)?;
        if let Some(u) = self.flat_band_size(core, &ops, self.numel(output) as usize) {
            return self.flat_banded(core, &ops, output, u, |e, (a, b), x, dst| {
                let len = (b - a) as u32;
                if let Some(t) = prep {
                    let (src, dst) = (x[1], x[1]);
                    let rq = Instr::Requant {
                        table: t,
                        src,
                        dst,
                        len,
                        channel_len: 1,
                        first_channel: 0,
                    };
                    e.push(core, rq);
                }
                e.push(core, Instr::Add { table, a: x[0], b: x[1], dst, len });
                Ok(())
            });
        }
        let xa = self.load_expanded(core, a, output)?;
        let xb = self.load_expanded(core, b, output)?;
        let len = self.numel(output) as u32;
        if let Some(t) = prep {
            let rq = Instr::Requant {
                table: t,
                src: xb,
                dst: xb,
                len,
                channel_len: 1,
                first_channel: 0,
            };
            self.push(core, rq);
        }
        let out = self.alloc(core, len as u64)?;
        self.push(core, Instr::Add { table, a: xa, b: xb, dst: out, len });
        self.store_buf(core, out, output);
        Ok(())
    }

    /// Each input loaded at its offset in the output, one `load` per contiguous run, and
    /// requantized in place when its scale differs.
    fn concat(
        &mut self,
        core: u16,
        inputs: &[Buf],
        output: Buf,
        axis: usize,
        rescale: &[Option<(i32, Requant)>],
    ) -> Result<()> {
        let so = self.p.buffers[output].shape.clone();
        let outer: usize = so[..axis].iter().product();
        let out_inner: usize = so[axis..].iter().product();
        let out = self.alloc(core, self.numel(output))?;
        let mut offset = 0usize;
        for (k, &b) in inputs.iter().enumerate() {
            let inner: usize = self.p.buffers[b].shape[axis..].iter().product();
            let eb = self.bytes_of(b);
            for o in 0..outer {
                let dst = out + (o * out_inner + offset) as u32;
                let src = self.addr[b] + (o * inner) as u32;
                self.push(core, Instr::Load { dst, src, len: inner as u32, elem_bytes: eb });
                if let Some(Some((z, r))) = rescale.get(k) {
                    let table = Self::table(&mut self.requants, RequantEntry::rescale(*z, r))?;
                    let len = inner as u32;
                    self.push(
                        core,
                        Instr::Requant {
                            table,
                            src: dst,
                            dst,
                            len,
                            channel_len: 1,
                            first_channel: 0,
                        },
                    );
                }
            }
            offset += inner;
        }
        self.store_buf(core, out, output);
        Ok(())
    }

    fn transpose(&mut self, core: u16, input: Buf, output: Buf, perm: &[usize]) -> Result<()> {
        let x = self.load_buf(core, input)?;
        let entry = PermEntry {
            shape: shape32(&self.p.buffers[input].shape),
            perm: perm.iter().map(|&d| d as u32).collect(),
        };
        let table = Self::table(&mut self.perms, entry)?;
        let out = self.alloc(core, self.numel(output))?;
        self.push(core, Instr::Transpose { table, src: x, dst: out });
        self.store_buf(core, out, output);
        Ok(())
    }

    /// `fill` the output with the code, then `copy` each innermost run of the input into place.
    fn pad(&mut self, core: u16, input: Buf, output: Buf, pads: &[usize], code: i32) -> Result<()> {
        let si = self.p.buffers[input].shape.clone();
        let so = self.p.buffers[output].shape.clone();
        let r = si.len();
        if pads.len() != 2 * r || so.len() != r || r == 0 {
            return Err(self.err(format!("pads {pads:?} for rank {r}")));
        }
        let x = self.load_buf(core, input)?;
        let out = self.alloc(core, self.numel(output))?;
        self.push(core, Instr::Fill { dst: out, len: self.numel(output) as u32, value: code });
        let run = si[r - 1];
        let runs: usize = si[..r - 1].iter().product();
        for k in 0..runs {
            let mut rest = k;
            let mut o_off = pads[r - 1];
            let mut stride = so[r - 1];
            for d in (0..r - 1).rev() {
                let i = rest % si[d];
                rest /= si[d];
                o_off += (i + pads[d]) * stride;
                stride *= so[d];
            }
            self.push(
                core,
                Instr::Copy { dst: out + o_off as u32, src: x + (k * run) as u32, len: run as u32 },
            );
        }
        self.store_buf(core, out, output);
        Ok(())
    }

    /// `load`, one `requant` over the whole buffer, `store`.
    fn requant_step(
        &mut self,
        core: u16,
        input: Buf,
        output: Buf,
        entry: RequantEntry,
        channel_len: usize,
    ) -> Result<()> {
        let table = Self::table(&mut self.requants, entry)?;
        let ops = self.flat_operands(&[input], output)?;
        if let Some(u) = self.flat_band_size(core, &ops, self.numel(output) as usize) {
            return self.flat_banded(core, &ops, output, u, |e, band, x, dst| {
                e.requant_pieces(core, table, (x[0], dst), band, channel_len);
                Ok(())
            });
        }
        let x = self.load_buf(core, input)?;
        let len = self.numel(input) as u32;
        let out = self.alloc(core, len as u64)?;
        self.push(
            core,
            Instr::Requant {
                table,
                src: x,
                dst: out,
                len,
                channel_len: channel_len as u32,
                first_channel: 0,
            },
        );
        self.store_buf(core, out, output);
        Ok(())
    }

    /// A pooling step, one instruction per image.
    fn pool_step(
        &mut self,
        core: u16,
        input: Buf,
        output: Buf,
        window: &Window,
        avg: Option<Pool>,
    ) -> Result<()> {
        let si = self.p.buffers[input].shape.clone();
        let so = self.p.buffers[output].shape.clone();
        let mut w = window_entry(&si, &so, window, 1).map_err(|m| self.err(m))?;
        w.count_include_pad = avg.as_ref().is_some_and(|a| a.include_pad);
        let (hw, ohw) = (w.source_len() / w.channels as u64, w.pool_len() / w.channels as u64);
        let eb = self.bytes_of(input);
        let regions =
            |c: usize| vec![(c as u64 * hw * si[0] as u64, eb), (c as u64 * ohw * si[0] as u64, 1)];
        let channels = w.channels as usize;
        if !self.fits(core, &regions(channels)) {
            let per = |c: usize| vec![(c as u64 * hw, eb), (c as u64 * ohw, 1)];
            if let Some(cb) = self.largest_fit(core, channels, per) {
                return self.pool_channel_bands(core, (input, output), &w, cb, avg.as_ref());
            }
        }
        let window = Self::table(&mut self.windows, w.clone())?;
        let x = self.load_buf(core, input)?;
        let out = self.alloc(core, self.numel(output))?;
        let (in_len, out_len) = (w.source_len() as u32, w.pool_len() as u32);
        for b in 0..si[0] as u32 {
            let (src, dst) = (x + b * in_len, out + b * out_len);
            self.push(
                core,
                match &avg {
                    None => Instr::MaxPool { window, src, dst },
                    Some(a) => Instr::AvgPool { window, table: a.table, src, dst, zero: a.zero },
                },
            );
        }
        self.store_buf(core, out, output);
        Ok(())
    }
}

/// An operand of an element-wise step cut into flat bands of the output: a buffer of the
/// output's shape, or one that broadcasts to it (`index`: the element each output element
/// reads).
struct FlatOperand {
    buf: Buf,
    index: Option<Vec<u32>>,
}

impl FlatOperand {
    /// The source words band `e0..e1` reads: `(first, count)`.
    fn span(&self, (e0, e1): (usize, usize)) -> (u32, u32) {
        match &self.index {
            None => (e0 as u32, (e1 - e0) as u32),
            Some(ix) => {
                let s = &ix[e0..e1];
                let lo = s.iter().copied().min().unwrap_or(0);
                let hi = s.iter().copied().max().map_or(0, |h| h + 1);
                (lo, hi - lo)
            }
        }
    }
}

/// Flat bands of `u` elements over `n`.
fn flat_bands(n: usize, u: usize) -> Vec<(usize, usize)> {
    (0..n).step_by(u.max(1)).map(|a| (a, (a + u.max(1)).min(n))).collect()
}

impl Emitter<'_> {
    /// The operands of an element-wise step whose output is `like`.
    fn flat_operands(&self, bufs: &[Buf], like: Buf) -> Result<Vec<FlatOperand>> {
        bufs.iter()
            .map(|&b| {
                let (from, to) = (&self.p.buffers[b].shape, &self.p.buffers[like].shape);
                if from == to {
                    return Ok(FlatOperand { buf: b, index: None });
                }
                let index = broadcast_map(from, to)
                    .ok_or_else(|| self.err(format!("{from:?} does not broadcast to {to:?}")))?;
                Ok(FlatOperand { buf: b, index: Some(index) })
            })
            .collect()
    }

    /// The regions of flat bands of `u` elements: per operand its span (and, broadcast, its
    /// expanded band), then the output band.
    fn flat_regions(&self, ops: &[FlatOperand], n: usize, u: usize) -> Vec<(u64, u8)> {
        let bands = flat_bands(n, u);
        let mut v = Vec::new();
        for op in ops {
            let span = bands.iter().map(|&b| op.span(b).1).max().unwrap_or(0);
            v.push((span as u64, self.bytes_of(op.buf)));
            if op.index.is_some() {
                v.push((u as u64, 1));
            }
        }
        v.push((u as u64, 1));
        v
    }

    /// Band size of an element-wise step of `n` output elements on `core`, when the whole
    /// step does not fit at once (`None`: run it whole, as it fits or as not even one element
    /// fits).
    fn flat_band_size(&self, core: u16, ops: &[FlatOperand], n: usize) -> Option<usize> {
        if self.fits(core, &self.flat_regions(ops, n, n)) {
            return None;
        }
        self.largest_fit(core, n, |u| self.flat_regions(ops, n, u)).filter(|&u| u < n)
    }

    /// Allocates the regions of flat bands of `u` elements: per operand `(span, expanded)`,
    /// and the output band.
    fn flat_alloc(
        &mut self,
        core: u16,
        ops: &[FlatOperand],
        n: usize,
        u: usize,
    ) -> Result<(Vec<(u32, u32)>, u32)> {
        let regions = self.flat_regions(ops, n, u);
        let mut at = Vec::new();
        let mut k = 0;
        for op in ops {
            let span = self.alloc_wide(core, regions[k].0, regions[k].1)?;
            k += 1;
            let exp = if op.index.is_some() {
                k += 1;
                self.alloc(core, u as u64)?
            } else {
                span
            };
            at.push((span, exp));
        }
        let out = self.alloc(core, u as u64)?;
        Ok((at, out))
    }

    /// Loads band `e0..e1` of each operand (a broadcast one through its span and a `gather`);
    /// returns each operand's band address.
    fn flat_load(
        &mut self,
        core: u16,
        ops: &[FlatOperand],
        at: &[(u32, u32)],
        (e0, e1): (usize, usize),
    ) -> Result<Vec<u32>> {
        let mut v = Vec::with_capacity(ops.len());
        for (op, &(span_at, exp_at)) in ops.iter().zip(at) {
            let (first, count) = op.span((e0, e1));
            let eb = self.bytes_of(op.buf);
            let src = self.addr[op.buf] + first;
            self.push(core, Instr::Load { dst: span_at, src, len: count, elem_bytes: eb });
            match &op.index {
                None => v.push(span_at),
                Some(ix) => {
                    let index = ix[e0..e1].iter().map(|&i| i - first).collect();
                    let e = DigitalEntry::Gather { src_len: count, index, fill: 0 };
                    let table = Self::table(&mut self.digital, e)?;
                    self.push(core, Instr::Gather { table, src: span_at, dst: exp_at });
                    v.push(exp_at);
                }
            }
        }
        Ok(v)
    }

    /// An element-wise step in flat bands of `u` output elements: per band, its operands
    /// loaded, `body(band, operand addresses, output address)`, the band stored.
    fn flat_banded(
        &mut self,
        core: u16,
        ops: &[FlatOperand],
        output: Buf,
        u: usize,
        mut body: impl FnMut(&mut Self, (usize, usize), &[u32], u32) -> Result<()>,
    ) -> Result<()> {
        let n = self.numel(output) as usize;
        let (at, out) = self.flat_alloc(core, ops, n, u)?;
        let eb = self.bytes_of(output);
        for band in flat_bands(n, u) {
            let x = self.flat_load(core, ops, &at, band)?;
            body(self, band, &x, out)?;
            let (dst, len) = (self.addr[output] + band.0 as u32, (band.1 - band.0) as u32);
            self.push(core, Instr::Store { dst, src: out, len, elem_bytes: eb });
        }
        Ok(())
    }

    /// `requant` of band `e0..e1` of a tensor whose channels are runs of `channel_len`
    /// elements: one instruction per piece that starts a channel run or stays in one.
    fn requant_pieces(
        &mut self,
        core: u16,
        table: u16,
        (src, dst): (u32, u32),
        (e0, e1): (usize, usize),
        channel_len: usize,
    ) {
        let cl = channel_len.max(1);
        let mut a = e0;
        while a < e1 {
            // A piece inside one run, up to the run's end, or from a run's start every whole
            // run of the band.
            let (b, cl_here, first) = if a % cl != 0 || e1 - a < cl {
                let b = ((a / cl + 1) * cl).min(e1);
                (b, b - a, a / cl)
            } else {
                (a + (e1 - a) / cl * cl, cl, a / cl)
            };
            let off = (a - e0) as u32;
            self.push(
                core,
                Instr::Requant {
                    table,
                    src: src + off,
                    dst: dst + off,
                    len: (b - a) as u32,
                    channel_len: cl_here as u32,
                    first_channel: first as u32,
                },
            );
            a = b;
        }
    }

    /// A pooling step in bands of `cb` channels of one image (pooling is per channel: no
    /// halo), each loaded, pooled and stored before the next.
    fn pool_channel_bands(
        &mut self,
        core: u16,
        (input, output): (Buf, Buf),
        w: &WindowEntry,
        cb: usize,
        avg: Option<&Pool>,
    ) -> Result<()> {
        let (hw, ohw) = (w.source_len() / w.channels as u64, w.pool_len() / w.channels as u64);
        let (eb_in, eb_out) = (self.bytes_of(input), self.bytes_of(output));
        let x = self.alloc_wide(core, cb as u64 * hw, eb_in)?;
        let out = self.alloc(core, cb as u64 * ohw)?;
        let (c, images) = (w.channels as usize, self.p.buffers[input].shape[0]);
        for img in 0..images {
            for c0 in (0..c).step_by(cb) {
                let n = cb.min(c - c0);
                let entry = WindowEntry { channels: n as u32, ..w.clone() };
                let window = Self::table(&mut self.windows, entry)?;
                let at = ((img * c + c0) as u64 * hw) as u32;
                let len = (n as u64 * hw) as u32;
                let src = self.addr[input] + at;
                self.push(core, Instr::Load { dst: x, src, len, elem_bytes: eb_in });
                self.push(
                    core,
                    match avg {
                        None => Instr::MaxPool { window, src: x, dst: out },
                        Some(a) => Instr::AvgPool {
                            window,
                            table: a.table,
                            src: x,
                            dst: out,
                            zero: a.zero,
                        },
                    },
                );
                let dst = self.addr[output] + ((img * c + c0) as u64 * ohw) as u32;
                let len = (n as u64 * ohw) as u32;
                self.push(core, Instr::Store { dst, src: out, len, elem_bytes: eb_out });
            }
        }
        Ok(())
    }

    /// A row-wise step as independent rows: `(rows, codes per row)` (Softmax: the rows before
    /// its axis, each `axis·inner` codes; LayerNorm: its groups); `None` for another entry.
    fn row_bands(&self, e: &DigitalEntry, input: Buf) -> Option<(usize, usize)> {
        let n = self.numel(input) as usize;
        match e {
            DigitalEntry::Softmax { shape, axis, .. } => {
                let outer: usize = shape[..(*axis as usize).min(shape.len())]
                    .iter()
                    .map(|&d| d as usize)
                    .product();
                (outer > 0).then(|| (outer, n / outer))
            }
            DigitalEntry::LayerNorm { groups, n: per, .. } => {
                Some((*groups as usize, *per as usize))
            }
            _ => None,
        }
    }

    /// A row-wise step in bands of `r` rows: each band loaded, normalized with the entry of
    /// its rows (the same parameters, fewer rows) and stored.
    fn row_banded(
        &mut self,
        core: u16,
        (input, output): (Buf, Buf),
        e: &DigitalEntry,
        (rows, per_row): (usize, usize),
        r: usize,
    ) -> Result<()> {
        let (eb_in, eb_out) = (self.bytes_of(input), self.bytes_of(output));
        let x = self.alloc_wide(core, (r * per_row) as u64, eb_in)?;
        let out = self.alloc(core, (r * per_row) as u64)?;
        for a in (0..rows).step_by(r) {
            let n = r.min(rows - a);
            let band = match e {
                DigitalEntry::Softmax { shape, axis, exp_table, requant } => {
                    let ax = *axis as usize;
                    let mut sh = vec![n as u32];
                    sh.extend_from_slice(&shape[ax.min(shape.len())..]);
                    DigitalEntry::Softmax {
                        shape: sh,
                        axis: 1,
                        exp_table: exp_table.clone(),
                        requant: requant.clone(),
                    }
                }
                DigitalEntry::LayerNorm {
                    n: per,
                    input_zero_point,
                    epsilon_term,
                    gamma,
                    beta,
                    requant,
                    ..
                } => DigitalEntry::LayerNorm {
                    groups: n as u32,
                    n: *per,
                    input_zero_point: *input_zero_point,
                    epsilon_term: *epsilon_term,
                    gamma: gamma.clone(),
                    beta: beta.clone(),
                    requant: requant.clone(),
                },
                _ => return Err(self.err("a row band of a step that is not row-wise")),
            };
            let table = Self::table(&mut self.digital, band)?;
            let (off, len) = ((a * per_row) as u32, (n * per_row) as u32);
            let src = self.addr[input] + off;
            self.push(core, Instr::Load { dst: x, src, len, elem_bytes: eb_in });
            self.push(
                core,
                match e {
                    DigitalEntry::Softmax { .. } => Instr::Softmax { table, src: x, dst: out },
                    _ => Instr::LayerNorm { table, src: x, dst: out },
                },
            );
            let dst = self.addr[output] + off;
            self.push(core, Instr::Store { dst, src: out, len, elem_bytes: eb_out });
        }
        Ok(())
    }
}
