//! The emitter: from an interpreter program (lowered from a tiled graph) to an instruction
//! stream for the target's chip.
//!
//! Memory plan. Every program buffer gets a region of global memory (a `Reshape` output shares
//! its input's region); the inputs and outputs of the stream are those regions. Each step runs
//! on one core (a matrix step on the cores of its crossbar groups, one per replica) as: `load`
//! its operands whole into the scratchpad, compute, `store` the result. Scratchpad space is
//! allocated by a bump pointer that restarts at every step, since nothing stays in a scratchpad
//! from one step to the next; a core's `scratch_words` is its high-water mark. When the stream
//! has several cores, all of them meet at a `sync` after every step, so the step that reads a
//! buffer always runs after the one that wrote it.
//!
//! Schedules ([`Schedule`]). *Pipelined*: every group is resident on the arrays the `tile` pass
//! gave it (`Crossbar::arrays`); a group belongs to the core owning its first array
//! (`core.arrays` arrays per core); replicas of a layer run on their own cores and split the
//! layer's output positions. *Layer-serial*: one core and the chip's `array.count` arrays, which
//! the layers take in turn; a layer larger than the chip is cut into parts (whole conv groups,
//! then column groups, then row tiles), each part a group programmed by `xbar_load` before its
//! `mvm`s; parts that split the rows are summed with `shift_add`. Cutting at column-group and
//! row-tile boundaries keeps every partial sum and ADC conversion of the layer unchanged, so
//! the result is bit-exact whatever the schedule.
//!
//! Emission is deterministic: the same program and target give the same bytes.

use super::{
    AddEntry, Core, GroupEntry, HostEntry, Io, PermEntry, RequantEntry, Schedule, Stream,
    WindowEntry,
};
use crate::error::{BackendError, Result};
use crate::isa::Instr;
use crate::program::{Buf, Elem, Program, Step};
use crate::target::{Target, TargetRecord};

#[path = "emit_matrix.rs"]
mod matrix;

/// Which schedule to emit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScheduleChoice {
    /// Pipelined when every layer's arrays fit the chip at once, else layer-serial.
    #[default]
    Auto,
    Pipelined,
    LayerSerial,
}

#[derive(Clone, Debug)]
pub struct EmitOptions {
    pub schedule: ScheduleChoice,
    /// The largest im2col buffer of one chunk of output positions (words); a layer's positions
    /// are processed in chunks that fit it.
    pub im2col_words: usize,
}

impl Default for EmitOptions {
    fn default() -> Self {
        EmitOptions { schedule: ScheduleChoice::Auto, im2col_words: 1 << 16 }
    }
}

/// A core's code while it is being emitted.
#[derive(Default)]
struct CoreCode {
    code: Vec<Instr>,
    marks: Vec<(u32, u32)>,
    /// Bump pointer of the current step and the high-water mark.
    top: u64,
    high: u64,
}

pub(super) struct Emitter<'a> {
    pub(super) p: &'a Program,
    pub(super) t: &'a Target,
    pub(super) opts: &'a EmitOptions,
    pub(super) schedule: Schedule,
    pub(super) arrays: u32,
    cores: Vec<CoreCode>,
    pub(super) groups: Vec<GroupEntry>,
    pub(super) windows: Vec<WindowEntry>,
    pub(super) requants: Vec<RequantEntry>,
    adds: Vec<AddEntry>,
    pub(super) perms: Vec<PermEntry>,
    hosts: Vec<HostEntry>,
    /// Global address of each buffer.
    pub(super) addr: Vec<u32>,
    global_words: u64,
    barrier: u32,
    /// The step being emitted (messages, layer marks).
    pub(super) step: usize,
    /// Layer-serial: the group each array holds now (to skip a reload).
    pub(super) loaded: Vec<Option<u16>>,
}

/// Emits the stream of `program` for `target`.
pub fn emit(program: &Program, target: &Target, opts: &EmitOptions) -> Result<Stream> {
    program.validate()?;
    let schedule = choose_schedule(program, target, opts.schedule)?;
    let arrays = chip_arrays(program, target, schedule);
    let mut e = Emitter {
        p: program,
        t: target,
        opts,
        schedule,
        arrays,
        cores: Vec::new(),
        groups: Vec::new(),
        windows: Vec::new(),
        requants: Vec::new(),
        adds: Vec::new(),
        perms: Vec::new(),
        hosts: Vec::new(),
        addr: vec![u32::MAX; program.buffers.len()],
        global_words: 0,
        barrier: 0,
        step: 0,
        loaded: Vec::new(),
    };
    e.plan_global()?;
    // The groups (and so the cores) of every matrix step, before any code: every core must
    // meet every barrier.
    let mut units = Vec::with_capacity(program.steps.len());
    for (i, s) in program.steps.iter().enumerate() {
        e.step = i;
        units.push(match s {
            Step::Conv { .. } | Step::Gemm { .. } => Some(e.plan_matrix(s)?),
            _ => None,
        });
    }
    if schedule == Schedule::Pipelined {
        e.unify_cores(&mut units);
    }
    let n_cores = e.groups.iter().map(|g| g.core as usize + 1).max().unwrap_or(1).max(1);
    e.cores = (0..n_cores).map(|_| CoreCode::default()).collect();
    e.loaded = vec![None; e.arrays as usize];
    let mut digital_core = 0u16;
    for (i, s) in program.steps.iter().enumerate() {
        e.step = i;
        for c in &mut e.cores {
            c.top = 0;
        }
        match (s, &units[i]) {
            (Step::Conv { .. } | Step::Gemm { .. }, Some(plan)) => {
                digital_core = plan.core_of_first();
                e.emit_matrix(s, plan)?;
            }
            _ => e.emit_digital(s, digital_core)?,
        }
        if e.cores.len() > 1 {
            let b = e.barrier;
            e.barrier += 1;
            for c in &mut e.cores {
                c.code.push(Instr::Sync { barrier: b });
            }
        }
    }
    let global_words = u32::try_from(e.global_words).map_err(|_| {
        BackendError::Format(format!(
            "the model needs {} words of global memory; a stream addresses at most 2^32",
            e.global_words
        ))
    })?;
    let io = |b: Buf| -> Io {
        let d = &program.buffers[b];
        Io {
            name: d.name.clone(),
            shape: d.shape.clone(),
            elem: d.elem,
            quant: d.quant.clone(),
            addr: e.addr[b],
        }
    };
    let inputs = program.inputs.iter().map(|&b| io(b)).collect();
    let outputs = program.outputs.iter().map(|&b| io(b)).collect();
    let mut cores = Vec::with_capacity(e.cores.len());
    for (ci, c) in e.cores.into_iter().enumerate() {
        let mut code = c.code;
        code.push(Instr::Halt {});
        let scratch_words = u32::try_from(c.high.max(1)).map_err(|_| {
            BackendError::Format(format!("core {ci} needs {} scratchpad words (over 2^32)", c.high))
        })?;
        cores.push(Core { scratch_words, code, marks: c.marks });
    }
    let stream = Stream {
        name: program.name.clone(),
        target: Some(TargetRecord::Full(Box::new(target.clone()))),
        schedule,
        arrays,
        global_words,
        inputs,
        outputs,
        layers: program
            .steps
            .iter()
            .zip(&program.origins)
            .map(|(s, o)| format!("{} {o}", s.name()))
            .collect(),
        cores,
        groups: e.groups,
        windows: e.windows,
        requants: e.requants,
        adds: e.adds,
        perms: e.perms,
        hosts: e.hosts,
    };
    stream
        .validate()
        .map_err(|err| BackendError::Internal(format!("the emitted stream is invalid: {err}")))?;
    Ok(stream)
}

/// Arrays used by the tile pass's placement (0 when some matrix step was not placed).
fn placed_arrays(p: &Program) -> Option<u32> {
    let mut top = 0u32;
    for s in &p.steps {
        if let Step::Conv { crossbar, .. } | Step::Gemm { crossbar, .. } = s {
            match crossbar {
                Some(x) if !x.arrays.is_empty() && x.arrays.iter().all(|a| !a.is_empty()) => {
                    top = top.max(x.arrays.iter().flatten().max().map_or(0, |a| a + 1));
                }
                Some(_) => return None,
                None => {}
            }
        }
    }
    Some(top)
}

fn choose_schedule(p: &Program, t: &Target, choice: ScheduleChoice) -> Result<Schedule> {
    let placed = placed_arrays(p);
    let fits = match placed {
        Some(n) => t.chip.arrays == 0 || n as usize <= t.chip.arrays,
        None => false,
    };
    match choice {
        ScheduleChoice::Auto => Ok(if fits { Schedule::Pipelined } else { Schedule::LayerSerial }),
        ScheduleChoice::LayerSerial => {
            if t.chip.arrays == 0 {
                return Err(BackendError::Format(
                    "a layer-serial schedule needs a chip with a fixed number of arrays \
                     (array.count > 0)"
                        .into(),
                ));
            }
            Ok(Schedule::LayerSerial)
        }
        ScheduleChoice::Pipelined => match placed {
            None => Err(BackendError::Format(
                "a pipelined schedule needs every matrix layer placed on arrays by the tile pass \
                 (compile with --target)"
                    .into(),
            )),
            Some(n) if !fits => Err(BackendError::Format(format!(
                "a pipelined schedule needs {n} arrays resident; the chip has {} \
                 (use the layer-serial schedule)",
                t.chip.arrays
            ))),
            Some(_) => Ok(Schedule::Pipelined),
        },
    }
}

fn chip_arrays(p: &Program, t: &Target, s: Schedule) -> u32 {
    let placed = placed_arrays(p).unwrap_or(0);
    let count = u32::try_from(t.chip.arrays).unwrap_or(u32::MAX);
    match s {
        Schedule::Pipelined if count == 0 => placed,
        _ => count,
    }
}

/// Bytes of one value of a buffer in the hardware (the cost model's traffic).
pub(super) fn elem_bytes(e: Elem) -> u8 {
    match e {
        Elem::F32 => 4,
        Elem::Code(c) if c.bits <= 8 => 1,
        Elem::Code(c) if c.bits <= 16 => 2,
        Elem::Code(_) => 4,
    }
}

impl Emitter<'_> {
    pub(super) fn err(&self, msg: impl Into<String>) -> BackendError {
        let s = &self.p.steps[self.step];
        BackendError::Lower {
            node: self.p.origins[self.step].clone(),
            op: s.name().to_string(),
            msg: format!("stream emission: {}", msg.into()),
        }
    }

    /// Global regions, in buffer order; a Reshape output aliases its input.
    fn plan_global(&mut self) -> Result<()> {
        let mut alias = vec![None; self.p.buffers.len()];
        for s in &self.p.steps {
            if let Step::Reshape { input, output } = s {
                alias[*output] = Some(*input);
            }
        }
        for b in 0..self.p.buffers.len() {
            if alias[b].is_none() {
                self.addr[b] = self.global_words as u32;
                self.global_words += self.p.buffers[b].numel() as u64;
                if self.global_words > u32::MAX as u64 {
                    return Err(BackendError::Format(format!(
                        "the model needs over 2^32 words of global memory (at buffer '{}')",
                        self.p.buffers[b].name
                    )));
                }
            }
        }
        // Aliases resolve in step order (a reshape of a reshape).
        for s in &self.p.steps {
            if let Step::Reshape { input, output } = s {
                self.addr[*output] = self.addr[*input];
            }
        }
        Ok(())
    }

    pub(super) fn numel(&self, b: Buf) -> u64 {
        self.p.buffers[b].numel() as u64
    }

    pub(super) fn bytes_of(&self, b: Buf) -> u8 {
        elem_bytes(self.p.buffers[b].elem)
    }

    /// Appends an instruction to `core`'s code; the first instruction of a step on a core marks
    /// the layer.
    pub(super) fn push(&mut self, core: u16, i: Instr) {
        let step = self.step as u32;
        let c = &mut self.cores[core as usize];
        if c.marks.last().map(|m| m.1) != Some(step) {
            c.marks.push((c.code.len() as u32, step));
        }
        c.code.push(i);
    }

    /// Scratchpad words on `core` for the current step.
    pub(super) fn alloc(&mut self, core: u16, words: u64) -> Result<u32> {
        let c = &mut self.cores[core as usize];
        let at = c.top;
        c.top += words;
        c.high = c.high.max(c.top);
        u32::try_from(at).map_err(|_| BackendError::Format("scratchpad over 2^32 words".into()))
    }

    /// Loads buffer `b` whole into a new scratchpad region of `core`.
    pub(super) fn load_buf(&mut self, core: u16, b: Buf) -> Result<u32> {
        let len = self.numel(b);
        let at = self.alloc(core, len)?;
        let eb = self.bytes_of(b);
        self.push(
            core,
            Instr::Load { dst: at, src: self.addr[b], len: len as u32, elem_bytes: eb },
        );
        Ok(at)
    }

    /// Stores `numel(b)` words from scratchpad `at` to buffer `b`.
    pub(super) fn store_buf(&mut self, core: u16, at: u32, b: Buf) {
        let len = self.numel(b) as u32;
        let eb = self.bytes_of(b);
        self.push(core, Instr::Store { dst: self.addr[b], src: at, len, elem_bytes: eb });
    }

    pub(super) fn table<T: PartialEq>(v: &mut Vec<T>, e: T) -> Result<u16> {
        // Reuse an equal entry: pooling and requant entries repeat across chunks and images.
        if let Some(i) = v.iter().rposition(|x| *x == e) {
            return Ok(i as u16);
        }
        if v.len() >= u16::MAX as usize {
            return Err(BackendError::Format("a stream table is over 65535 entries".into()));
        }
        v.push(e);
        Ok((v.len() - 1) as u16)
    }

    fn host(&mut self, core: u16, h: HostEntry) -> Result<()> {
        let op = Self::table(&mut self.hosts, h)?;
        self.push(core, Instr::Host { op });
        Ok(())
    }

    fn emit_digital(&mut self, s: &Step, core: u16) -> Result<()> {
        let shape32 = |sh: &[usize]| sh.iter().map(|&d| d as u32).collect::<Vec<u32>>();
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
            Step::Dequantize { input, output } => {
                let d = &self.p.buffers[*input];
                let quant = d.quant.clone().ok_or_else(|| self.err("input has no scale"))?;
                let h = HostEntry::Dequantize {
                    src: self.addr[*input],
                    dst: self.addr[*output],
                    shape: shape32(&d.shape),
                    quant,
                };
                self.host(core, h)
            }
            Step::Softmax { input, output, axis } => {
                let h = HostEntry::Softmax {
                    src: self.addr[*input],
                    dst: self.addr[*output],
                    shape: shape32(&self.p.buffers[*input].shape),
                    axis: *axis as u32,
                };
                self.host(core, h)
            }
            Step::Affine { input, output, input_zero_point: z, scale, bias, requant } => {
                let sh = &self.p.buffers[*input].shape;
                let c = sh.get(1).copied().unwrap_or(1);
                let inner: usize = sh.iter().skip(2).product();
                if scale.len() != c || bias.len() != c {
                    return Err(self.err(format!("{c} channels, {} scales", scale.len())));
                }
                let entry = RequantEntry {
                    scale: scale.clone(),
                    bias: bias.iter().zip(scale).map(|(&b, &a)| b - *z as i64 * a as i64).collect(),
                    mult: requant.mult.clone(),
                    zero_point: requant.zero_point,
                    lo: requant.lo,
                    hi: requant.hi,
                };
                self.requant_step(core, *input, *output, entry, inner.max(1))
            }
            Step::Rescale { input, output, input_zero_point: z, requant } => {
                let entry = RequantEntry {
                    scale: vec![],
                    bias: vec![-(*z as i64)],
                    mult: vec![requant.mult[0]],
                    zero_point: requant.zero_point,
                    lo: requant.lo,
                    hi: requant.hi,
                };
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
                let sh = self.p.buffers[*input].shape.clone();
                let spatial = &sh[2.min(sh.len())..];
                let window = crate::program::Window {
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
                let pool = Pool { table, zero: *input_zero_point, include_pad: false };
                self.pool_step(core, *input, *output, &window, Some(pool))
            }
            Step::Add {
                a,
                b,
                output,
                a_zero_point,
                b_zero_point,
                headroom,
                a_mult,
                b_mult,
                requant,
            } => {
                let (sa, sb, so) = (
                    &self.p.buffers[*a].shape,
                    &self.p.buffers[*b].shape,
                    &self.p.buffers[*output].shape,
                );
                if sa != so || sb != so {
                    return Err(self.err(format!(
                        "an Add that broadcasts ({sa:?} + {sb:?} → {so:?}) is not supported by \
                         the stream emitter"
                    )));
                }
                let entry = AddEntry {
                    a_zero_point: *a_zero_point,
                    b_zero_point: *b_zero_point,
                    headroom: *headroom,
                    a_mult: *a_mult,
                    b_mult: *b_mult,
                    mult: requant.mult[0],
                    zero_point: requant.zero_point,
                    lo: requant.lo,
                    hi: requant.hi,
                };
                let table = Self::table(&mut self.adds, entry)?;
                let xa = self.load_buf(core, *a)?;
                let xb = self.load_buf(core, *b)?;
                let len = self.numel(*output) as u32;
                let out = self.alloc(core, len as u64)?;
                self.push(core, Instr::Add { table, a: xa, b: xb, dst: out, len });
                self.store_buf(core, out, *output);
                Ok(())
            }
            Step::Concat { inputs, output, axis, rescale } => {
                let so = self.p.buffers[*output].shape.clone();
                let outer: usize = so[..*axis].iter().product();
                let out_inner: usize = so[*axis..].iter().product();
                let out = self.alloc(core, self.numel(*output))?;
                let mut offset = 0usize;
                for (k, &b) in inputs.iter().enumerate() {
                    let inner: usize = self.p.buffers[b].shape[*axis..].iter().product();
                    let eb = self.bytes_of(b);
                    for o in 0..outer {
                        let dst = out + (o * out_inner + offset) as u32;
                        let src = self.addr[b] + (o * inner) as u32;
                        self.push(
                            core,
                            Instr::Load { dst, src, len: inner as u32, elem_bytes: eb },
                        );
                        if let Some(Some((z, r))) = rescale.get(k) {
                            let entry = RequantEntry {
                                scale: vec![],
                                bias: vec![-(*z as i64)],
                                mult: vec![r.mult[0]],
                                zero_point: r.zero_point,
                                lo: r.lo,
                                hi: r.hi,
                            };
                            let table = Self::table(&mut self.requants, entry)?;
                            self.push(
                                core,
                                Instr::Requant {
                                    table,
                                    src: dst,
                                    dst,
                                    len: inner as u32,
                                    channel_len: 1,
                                    first_channel: 0,
                                },
                            );
                        }
                    }
                    offset += inner;
                }
                self.store_buf(core, out, *output);
                Ok(())
            }
            // Same words, same order: the output shares the input's region.
            Step::Reshape { .. } => Ok(()),
            Step::Transpose { input, output, perm } => {
                let x = self.load_buf(core, *input)?;
                let entry = PermEntry {
                    shape: shape32(&self.p.buffers[*input].shape),
                    perm: perm.iter().map(|&d| d as u32).collect(),
                };
                let table = Self::table(&mut self.perms, entry)?;
                let out = self.alloc(core, self.numel(*output))?;
                self.push(core, Instr::Transpose { table, src: x, dst: out });
                self.store_buf(core, out, *output);
                Ok(())
            }
            Step::Pad { input, output, pads, code } => {
                let si = self.p.buffers[*input].shape.clone();
                let so = self.p.buffers[*output].shape.clone();
                let r = si.len();
                if pads.len() != 2 * r || so.len() != r || r == 0 {
                    return Err(self.err(format!("pads {pads:?} for rank {r}")));
                }
                let x = self.load_buf(core, *input)?;
                let out = self.alloc(core, self.numel(*output))?;
                self.push(
                    core,
                    Instr::Fill { dst: out, len: self.numel(*output) as u32, value: *code },
                );
                // One copy per innermost run of the input.
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
                        Instr::Copy {
                            dst: out + o_off as u32,
                            src: x + (k * run) as u32,
                            len: run as u32,
                        },
                    );
                }
                self.store_buf(core, out, *output);
                Ok(())
            }
            Step::Conv { .. } | Step::Gemm { .. } => Err(self.err("matrix step without a plan")),
        }
    }

    fn requant_step(
        &mut self,
        core: u16,
        input: Buf,
        output: Buf,
        entry: RequantEntry,
        channel_len: usize,
    ) -> Result<()> {
        let table = Self::table(&mut self.requants, entry)?;
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
        window: &crate::program::Window,
        avg: Option<Pool>,
    ) -> Result<()> {
        let si = self.p.buffers[input].shape.clone();
        let so = self.p.buffers[output].shape.clone();
        let mut w = window_entry(&si, &so, window, 1).map_err(|m| self.err(m))?;
        w.count_include_pad = avg.as_ref().is_some_and(|a| a.include_pad);
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

struct Pool {
    table: u16,
    zero: i32,
    include_pad: bool,
}

/// The window entry of a 1-D or 2-D conv or pooling over `[N, C, (H,) W]`, all output positions.
pub(super) fn window_entry(
    si: &[usize],
    so: &[usize],
    w: &crate::program::Window,
    conv_groups: usize,
) -> std::result::Result<WindowEntry, String> {
    let at = |v: &[usize], i: usize| v.get(i).copied().ok_or("window too short".to_string());
    let u = |v: usize| u32::try_from(v).map_err(|_| format!("{v} does not fit 32 bits"));
    let (h, wd, oh, ow, kernel, strides, dil, pads) = match (si.len(), so.len()) {
        (4, 4) => (
            si[2],
            si[3],
            so[2],
            so[3],
            [at(&w.kernel, 0)?, at(&w.kernel, 1)?],
            [at(&w.strides, 0)?, at(&w.strides, 1)?],
            [at(&w.dilations, 0)?, at(&w.dilations, 1)?],
            [at(&w.pads, 0)?, at(&w.pads, 1)?, at(&w.pads, 2)?, at(&w.pads, 3)?],
        ),
        (3, 3) => (
            1,
            si[2],
            1,
            so[2],
            [1, at(&w.kernel, 0)?],
            [1, at(&w.strides, 0)?],
            [1, at(&w.dilations, 0)?],
            [0, at(&w.pads, 0)?, 0, at(&w.pads, 1)?],
        ),
        (a, b) => return Err(format!("windows over rank {a} → {b} tensors are not supported")),
    };
    Ok(WindowEntry {
        channels: u(si[1])?,
        height: u(h)?,
        width: u(wd)?,
        kernel: [u(kernel[0])?, u(kernel[1])?],
        strides: [u(strides[0])?, u(strides[1])?],
        dilations: [u(dil[0])?, u(dil[1])?],
        pads: [u(pads[0])?, u(pads[1])?, u(pads[2])?, u(pads[3])?],
        conv_groups: u(conv_groups)?,
        out_height: u(oh)?,
        out_width: u(ow)?,
        first_position: 0,
        positions: u(oh * ow)?,
        count_include_pad: false,
    })
}
