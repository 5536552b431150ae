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
    AddEntry, Core, DigitalEntry, GroupEntry, HostEntry, Io, PermEntry, RequantEntry, Schedule,
    Stream, WindowEntry,
};
use crate::error::{BackendError, Result};
use crate::isa::Instr;
use crate::program::{Buf, Elem, Program, Step};
use crate::target::{Target, TargetRecord};

#[path = "emit_dataflow.rs"]
mod dataflow;
#[path = "emit_digital.rs"]
mod digital;
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
    /// Pipelined streams: activations flow between the cores' scratchpads in bands of rows
    /// (`send`/`recv`, `docs/stream.md`, "Dataflow") instead of through global memory.
    pub dataflow: bool,
}

impl Default for EmitOptions {
    fn default() -> Self {
        EmitOptions { schedule: ScheduleChoice::Auto, im2col_words: 1 << 16, dataflow: true }
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
    /// Words below which nothing is allocated (the dataflow's mailbox and rings).
    base: u64,
    /// Per scratchpad word: the widest value (bytes) it is given to hold, over the whole
    /// stream, as the cost report's footprint counts it; `footprint` is their sum.
    widths: Vec<u8>,
    footprint: u64,
}

impl CoreCode {
    /// Marks words `at..at + len` as holding values of `width` bytes.
    fn mark(&mut self, at: u64, len: u64, width: u8) {
        let end = (at + len) as usize;
        if self.widths.len() < end {
            self.widths.resize(end, 0);
        }
        for w in &mut self.widths[at as usize..end] {
            if *w < width {
                self.footprint += (width - *w) as u64;
                *w = width;
            }
        }
    }

    /// Whether the footprint (bytes) stays within `cap` if `regions` (`(words, width)`) were
    /// allocated from `top` on.
    fn fits_with(&self, regions: &[(u64, u8)], cap: u64) -> bool {
        let (mut at, mut total) = (self.top, self.footprint);
        let known = self.widths.len() as u64;
        for &(len, width) in regions {
            let end = at + len;
            // Words never marked: the whole width each.
            total += end.saturating_sub(at.max(known)) * width as u64;
            for &old in
                self.widths.get(at.min(known) as usize..end.min(known) as usize).unwrap_or(&[])
            {
                total += width.saturating_sub(old) as u64;
            }
            if total > cap {
                return false;
            }
            at = end;
        }
        true
    }
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
    pub(super) digital: Vec<DigitalEntry>,
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
    emit_with_notes(program, target, opts).map(|(s, _)| s)
}

/// [`emit`], with notes on the dataflow: how many steps stream, and which tensors go through
/// global memory and why.
pub fn emit_with_notes(
    program: &Program,
    target: &Target,
    opts: &EmitOptions,
) -> Result<(Stream, Vec<String>)> {
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
        digital: Vec::new(),
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
        units.push(match s.as_matrix() {
            Some(m) => Some(e.plan_matrix(&m)?),
            None => None,
        });
    }
    let mut flow = None;
    if schedule == Schedule::Pipelined {
        if opts.dataflow {
            flow = e.plan_dataflow(&mut units)?;
        }
        if flow.is_none() {
            e.unify_cores(&mut units);
        }
    }
    let n_cores = match &flow {
        Some(df) => e.core_count(df),
        None => e.groups.iter().map(|g| g.core as usize + 1).max().unwrap_or(1).max(1),
    };
    e.cores = (0..n_cores).map(|_| CoreCode::default()).collect();
    if let Some(df) = &flow {
        for (c, &r) in e.cores.iter_mut().zip(&df.reserved) {
            c.base = r;
            c.high = r;
            c.mark(0, 1, 1);
        }
        for &(core, at, len, width) in &df.rings {
            e.cores[core as usize].mark(at, len, width);
        }
    }
    e.loaded = vec![None; e.arrays as usize];
    let mut digital_core = 0u16;
    for (i, s) in program.steps.iter().enumerate() {
        e.step = i;
        for c in &mut e.cores {
            c.top = c.base;
        }
        if let Some(df) = flow.as_mut() {
            // Dataflow: no barriers; tokens order the global-memory traffic.
            e.recv_tokens(df, i);
            if df.stages[i].is_some() {
                if let Some(plan) = &units[i] {
                    digital_core = plan.core_of_first();
                }
                e.emit_stage(df, i, units[i].as_ref())?;
            } else if let (Some(m), Some(plan)) = (s.as_matrix(), &units[i]) {
                digital_core = plan.core_of_first();
                e.emit_matrix(&m, plan)?;
            } else {
                e.emit_digital(s, digital_core)?;
            }
            e.send_tokens(df, i);
            continue;
        }
        // Every matrix step has its plan; `emit_digital` refuses one that has none.
        if let (Some(m), Some(plan)) = (s.as_matrix(), &units[i]) {
            digital_core = plan.core_of_first();
            e.emit_matrix(&m, plan)?;
        } else {
            e.emit_digital(s, digital_core)?;
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
    let cap = e.scratch_capacity();
    if let Some((ci, c)) = e.cores.iter().enumerate().find(|(_, c)| c.footprint > cap) {
        return Err(BackendError::Format(format!(
            "core {ci} needs {} bytes of scratchpad ({} words) even with its steps in bands of \
             one unit (a row, a channel, an element); the target '{}' has {} KiB per core",
            c.footprint, c.high, target.name, target.core.scratchpad_kib
        )));
    }
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
        arrays: e.arrays,
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
        digital: e.digital,
    };
    stream
        .validate()
        .map_err(|err| BackendError::Internal(format!("the emitted stream is invalid: {err}")))?;
    let notes = match &flow {
        Some(df) => {
            let n = df.stages.iter().flatten().count();
            let mut v = vec![format!(
                "dataflow: {n} of {} steps stream between the cores' scratchpads",
                program.steps.len()
            )];
            v.extend(df.spills.iter().map(|s| format!("global memory: {s}")));
            v
        }
        None if schedule == Schedule::LayerSerial => vec![
            "global memory: every activation (a layer-serial stream runs its layers in turn on \
             one core; its steps do not stream)"
                .to_string(),
        ],
        None if opts.dataflow => {
            vec!["global memory: every activation (no step of this program streams, or the chip \
             lacks the cores for its stages)"
                .to_string()]
        }
        None => vec!["global memory: every activation (dataflow off)".to_string()],
    };
    Ok((stream, notes))
}

/// Arrays used by the tile pass's placement (0 when some matrix step was not placed).
fn placed_arrays(p: &Program) -> Option<u32> {
    let mut top = 0u32;
    for s in &p.steps {
        if let Some(m) = s.as_matrix() {
            match m.crossbar {
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

    /// Scratchpad words on `core` for the current step, holding codes (one byte each).
    pub(super) fn alloc(&mut self, core: u16, words: u64) -> Result<u32> {
        self.alloc_wide(core, words, 1)
    }

    /// Scratchpad words on `core` for the current step, holding values of up to `width` bytes
    /// (accumulators, wide codes).
    pub(super) fn alloc_wide(&mut self, core: u16, words: u64, width: u8) -> Result<u32> {
        let c = &mut self.cores[core as usize];
        let at = c.top;
        c.top += words;
        c.high = c.high.max(c.top);
        c.mark(at, words, width);
        u32::try_from(at).map_err(|_| BackendError::Format("scratchpad over 2^32 words".into()))
    }

    /// The target's scratchpad of one core, in bytes.
    pub(super) fn scratch_capacity(&self) -> u64 {
        (self.t.core.scratchpad_kib as u64).saturating_mul(1024)
    }

    /// Whether `regions` (`(words, width)`, allocated in turn from the current top) keep
    /// `core`'s footprint within the target's scratchpad, every word counted at the widest
    /// value it ever holds (in this or any other step).
    pub(super) fn fits(&self, core: u16, regions: &[(u64, u8)]) -> bool {
        self.cores[core as usize].fits_with(regions, self.scratch_capacity())
    }

    /// The largest `u` in `1..=max` whose regions `f(u)` fit `core` ([`Emitter::fits`];
    /// `f` grows with `u`), or `None` when not even `u = 1` fits.
    pub(super) fn largest_fit(
        &self,
        core: u16,
        max: usize,
        f: impl Fn(usize) -> Vec<(u64, u8)>,
    ) -> Option<usize> {
        if max == 0 || !self.fits(core, &f(1)) {
            return None;
        }
        let (mut lo, mut hi) = (1, max);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.fits(core, &f(mid)) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Some(lo)
    }

    /// Loads buffer `b` whole into a new scratchpad region of `core`.
    pub(super) fn load_buf(&mut self, core: u16, b: Buf) -> Result<u32> {
        let len = self.numel(b);
        let at = self.alloc_wide(core, len, self.bytes_of(b))?;
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
