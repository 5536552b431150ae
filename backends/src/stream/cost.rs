//! The static cost model of a stream: latency (ns) and energy (pJ) of every instruction from
//! the target's `[cost]` figures, and the timeline of the cores (`docs/cost-model.md` gives
//! every formula; the crossbar ones are in [`model`]).
//!
//! The stream has no branches, so the timeline is deterministic. Each core runs its
//! instructions in order, one at a time: an instruction starts when the previous one ends, or
//! later when it must wait —
//!
//! - `sync`: every core reaches the barrier, then all continue from the latest of their clocks
//!   (plus one cycle);
//! - `recv`: the words it waits for have arrived (per sender, words arrive in order: a FIFO of
//!   the `send`s, each arriving `hops` cycles after its sender has pushed it out);
//! - `load`, `store`, `xbar_load`: the global memory is one channel shared by all cores, taken
//!   in the order the requests are issued.
//!
//! `host` is host work: 0 chip time and 0 chip energy, counted in `Counts::host_ops`. Hops are
//! the Manhattan distance between cores on a square mesh of `ceil(√cores)` columns, core `i`
//! at `(i mod side, i div side)`. Cores are simulated in order of their clocks (ties by
//! number), so the shared channel serves requests in time order.

mod build;
mod chip;
mod model;
mod report;
mod shadow;

pub use chip::{chip_cost, ChipCost, ComponentFigures, Converters};
pub use model::{
    array_peak, cascade_vector_cost, program_cost, vector_cost, CascadeVectorCost, GroupShape,
    Numerics, Peak, VectorCost, ACC_BYTES,
};
pub use report::{
    round, Breakdown, CoreCost, CostReport, Counts, Energy, InstrCost, LayerCost, Preload, Totals,
    Utilization, Work,
};

use super::{GroupEntry, HostEntry, Stream, WindowEntry};
use crate::error::{BackendError, Result};
use crate::isa::Instr;
use crate::target::{CostSpec, Target};
use shadow::Shadow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

/// Cycles of an `xbar_config` (its fields written into the group's configuration registers;
/// ASSUMED). `adc_step`, `sync` and `recv` take one cycle, `halt` and `host` none, and no
/// other instruction less than one.
pub const CONFIG_CYCLES: f64 = 4.0;

/// Time bins of [`Utilization`].
pub const UTILIZATION_BINS: usize = 100;

/// The cost of `stream` on `target`. Errors (naming the core and the instruction) when the
/// stream refers to a table entry, group or core that does not exist, uses a group before its
/// `xbar_config`, addresses words beyond a scratchpad, or deadlocks (a barrier or a `recv` that
/// can never complete).
pub fn estimate(stream: &Stream, target: &Target) -> Result<CostReport> {
    let mut sim = Sim::new(stream, target);
    sim.run()?;
    // The steady state: the same timeline for a stream of inferences, each core starting the
    // next as soon as it has finished one (its words and credits permitting).
    let mut steady = Sim::new(stream, target);
    steady.passes = STEADY_PASSES;
    steady.run()?;
    let e = &steady.pass_end;
    let interval = (e[STEADY_PASSES - 1] - e[1]) / (STEADY_PASSES - 2) as f64;
    Ok(sim.report(interval))
}

/// Inferences of the steady-state timeline: the interval is the mean over the last ones (the
/// first fills the pipeline).
pub const STEADY_PASSES: usize = 6;

#[derive(Default)]
struct CoreRun {
    pc: usize,
    clock: f64,
    busy: f64,
    energy: f64,
    instructions: u64,
    done: bool,
    /// Parked on a `recv` from this core.
    recv_from: Option<u16>,
    /// The inference it works on (steady-state timeline).
    pass: usize,
    configs: BTreeMap<u16, Numerics>,
}

enum Step {
    Next,
    Halt,
    Parked,
    Sync(u32),
}

struct Sim<'a> {
    s: &'a Stream,
    t: &'a Target,
    c: &'a CostSpec,
    cycle: f64,
    side: u64,
    cores: Vec<CoreRun>,
    shadows: Vec<Shadow>,
    /// `(from, to)` → chunks of words sent, with their arrival times.
    fifo: BTreeMap<(usize, usize), VecDeque<(u64, f64)>>,
    wake: Vec<usize>,
    mem_free: f64,
    layers: Vec<LayerCost>,
    unattributed: LayerCost,
    energy: Energy,
    counts: Counts,
    /// `(start, end, arrays)` of every `mvm`.
    busy: Vec<(f64, f64, u64)>,
    /// The first `xbar_config` of each group on each core.
    first_config: BTreeMap<(usize, u16), Numerics>,
    instrs: Vec<Vec<InstrCost>>,
    breakdown: Breakdown,
    /// Inferences each core runs back to back (1, or [`STEADY_PASSES`] for the steady state)
    /// and when the last core finished each.
    passes: usize,
    pass_end: Vec<f64>,
}

/// The first `xbar_config` of each group on each core.
fn first_configs(s: &Stream) -> BTreeMap<(usize, u16), Numerics> {
    let mut m = BTreeMap::new();
    for (c, core) in s.cores.iter().enumerate() {
        for i in &core.code {
            if let (Instr::XbarConfig { group, .. }, Some(n)) = (i, Numerics::of_config(i)) {
                m.entry((c, *group)).or_insert(n);
            }
        }
    }
    m
}

impl<'a> Sim<'a> {
    fn new(s: &'a Stream, t: &'a Target) -> Sim<'a> {
        let n = s.cores.len();
        let mut side = 1u64;
        while side * side < n as u64 {
            side += 1;
        }
        let layer = |name: &String| LayerCost { name: name.clone(), ..LayerCost::default() };
        Sim {
            s,
            t,
            c: &t.cost,
            cycle: 1.0 / t.cost.clock_ghz,
            side,
            cores: (0..n).map(|_| CoreRun::default()).collect(),
            shadows: (0..n).map(|_| Shadow::default()).collect(),
            fifo: BTreeMap::new(),
            wake: Vec::new(),
            mem_free: 0.0,
            layers: s.layers.iter().map(layer).collect(),
            unattributed: LayerCost { name: "(unattributed)".into(), ..LayerCost::default() },
            energy: Energy::default(),
            counts: Counts::default(),
            busy: Vec::new(),
            first_config: first_configs(s),
            instrs: s.cores.iter().map(|c| Vec::with_capacity(c.code.len())).collect(),
            breakdown: Breakdown::default(),
            passes: 1,
            pass_end: vec![0.0; STEADY_PASSES],
        }
    }

    fn hops(&self, a: usize, b: usize) -> u64 {
        let (a, b) = (a as u64, b as u64);
        (a % self.side).abs_diff(b % self.side) + (a / self.side).abs_diff(b / self.side)
    }

    fn run(&mut self) -> Result<()> {
        let n = self.cores.len();
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> = (0..n).map(|c| Reverse((0, c))).collect();
        let mut at_sync: Vec<(usize, u32)> = Vec::new();
        // Clocks are finite and >= 0, so their bit patterns order as the values do.
        while let Some(Reverse((_, c))) = heap.pop() {
            match self.step(c)? {
                Step::Next => heap.push(Reverse((self.cores[c].clock.to_bits(), c))),
                Step::Halt | Step::Parked => {}
                Step::Sync(b) => {
                    if let Some(&(o, ob)) = at_sync.first() {
                        if ob != b {
                            return Err(self.error(
                                c,
                                format!("barrier {b} while core {o} waits at barrier {ob}"),
                            ));
                        }
                    }
                    at_sync.push((c, b));
                    if at_sync.len() == n {
                        let t =
                            at_sync.iter().map(|&(k, _)| self.cores[k].clock).fold(0.0, f64::max);
                        for (k, _) in std::mem::take(&mut at_sync) {
                            let counts = Counts { instructions: 1, ..Counts::default() };
                            self.record(k, t, self.cycle, Energy::default(), counts);
                            heap.push(Reverse((self.cores[k].clock.to_bits(), k)));
                        }
                    }
                }
            }
            for k in std::mem::take(&mut self.wake) {
                heap.push(Reverse((self.cores[k].clock.to_bits(), k)));
            }
        }
        if let Some(c) = (0..n).find(|&c| !self.cores[c].done) {
            let why = match (self.cores[c].recv_from, at_sync.iter().find(|w| w.0 == c)) {
                (Some(f), _) => format!("waits forever for words from core {f}"),
                (_, Some(&(_, b))) => format!("waits forever at barrier {b} (a core halted first)"),
                _ => "never finishes".into(),
            };
            return Err(self.error(c, format!("deadlock: {why}")));
        }
        Ok(())
    }

    fn error(&self, c: usize, msg: String) -> BackendError {
        let i = self.cores[c].pc;
        let m = self.s.cores[c].code.get(i).map_or("end", |x| x.mnemonic());
        BackendError::Format(format!("cost: core {c}, instruction {i} ({m}): {msg}"))
    }

    fn check(&self, c: usize, on: usize, addr: u64, len: u64) -> Result<()> {
        let words = self.s.cores[on].scratch_words as u64;
        if addr + len > words {
            let whose = if on == c { String::new() } else { format!("core {on}'s ") };
            return Err(self.error(
                c,
                format!(
                    "words {addr}..{} are beyond {whose}scratchpad of {words} words",
                    addr + len
                ),
            ));
        }
        Ok(())
    }

    /// Energy, counts and latency of a vector-unit instruction of `elements` elements that
    /// reads `rb` and writes `wb` bytes of the scratchpad.
    fn vector(&self, ch: &mut Charge, (elements, rb, wb): Traffic) -> f64 {
        let c = self.c;
        let (e, k) = (&mut ch.e, &mut ch.k);
        e.vector = elements as f64 * c.vector_op_energy_pj;
        e.buffer = rb as f64 * c.buffer_read_pj_per_byte + wb as f64 * c.buffer_write_pj_per_byte;
        k.vector_elements = elements;
        k.buffer_read_bytes = rb;
        k.buffer_write_bytes = wb;
        (elements as f64 * c.vector_op_latency_ns / c.vector_lanes).max(self.cycle)
    }

    /// Starts a global-memory transfer of `bytes` at `clock`: (start, duration).
    fn channel(&mut self, clock: f64, bytes: u64) -> (f64, f64) {
        let start = clock.max(self.mem_free);
        let dur = bytes as f64 / self.c.global_mem_gb_per_s;
        self.mem_free = start + dur;
        (start, dur)
    }

    fn record(&mut self, c: usize, start: f64, latency: f64, e: Energy, k: Counts) {
        let total = e.total();
        let end = start + latency;
        let l = self.s.cores[c].layer_of(self.cores[c].pc).map(|l| l as usize);
        let layer = match l {
            Some(l) if l < self.layers.len() => &mut self.layers[l],
            _ => &mut self.unattributed,
        };
        if layer.instructions == 0 {
            layer.first_ns = start;
        }
        layer.first_ns = layer.first_ns.min(start);
        layer.last_ns = layer.last_ns.max(end);
        layer.instructions += 1;
        layer.mvm_vectors += k.mvm_vectors;
        layer.macs += k.macs;
        layer.conversions += k.conversions;
        layer.busy_ns += latency;
        layer.energy.add(&e);
        self.energy.add(&e);
        self.counts.add(&k);
        self.instrs[c].push(InstrCost { start_ns: start, latency_ns: latency, energy_pj: total });
        if let Some(ins) = self.s.cores[c].code.get(self.cores[c].pc) {
            let w = self.breakdown.kind_mut(ins.opcode());
            w.energy_pj += total;
            w.busy_ns += latency;
            w.instructions += 1;
        }
        let core = &mut self.cores[c];
        core.clock = end;
        core.busy += latency;
        core.energy += total;
        core.instructions += 1;
        core.pc += 1;
    }

    /// The numerics for programming group `g` on core `c`: its current configuration, else
    /// [`Sim::first_numerics`].
    fn load_numerics(&self, c: usize, g: u16) -> Numerics {
        match self.cores.get(c).and_then(|r| r.configs.get(&g)) {
            Some(n) => *n,
            None => self.first_numerics(c, g),
        }
    }

    /// The first `xbar_config` of group `g` on core `c`, else the target's numerics with 8-bit
    /// inputs and the group's weight bits.
    fn first_numerics(&self, c: usize, g: u16) -> Numerics {
        self.first_config.get(&(c, g)).copied().unwrap_or_else(|| {
            let enc = self.t.chip.crossbar.encoding;
            let wb = self.s.groups[g as usize].weight_bits as u32;
            Numerics::of_target(self.t, 8, wb, enc)
        })
    }

    fn shape(&self, g: usize) -> GroupShape {
        let e = &self.s.groups[g];
        GroupShape {
            k: e.k as u64,
            n: e.n as u64,
            conv_groups: e.conv_groups as u64,
            arrays: e.arrays.len() as u64,
        }
    }

    /// Runs core `c`'s next instruction: one function per instruction (the vector-unit ones
    /// return their traffic, charged by [`Sim::vector`]); a new instruction fails to compile
    /// here until it has a cost.
    fn step(&mut self, c: usize) -> Result<Step> {
        let i = self.cores[c].pc;
        let Some(&instr) = self.s.cores[c].code.get(i) else {
            self.cores[c].done = true;
            return Ok(Step::Halt);
        };
        let clock = self.cores[c].clock;
        let mut ch = Charge {
            start: clock,
            e: Energy::default(),
            k: Counts { instructions: 1, ..Counts::default() },
        };
        let latency = match instr {
            Instr::Halt {} => {
                self.record(c, clock, 0.0, ch.e, ch.k);
                let core = &mut self.cores[c];
                let end = &mut self.pass_end[core.pass.min(STEADY_PASSES - 1)];
                *end = end.max(clock);
                if core.pass + 1 < self.passes {
                    core.pass += 1;
                    core.pc = 0;
                    return Ok(Step::Next);
                }
                core.done = true;
                return Ok(Step::Halt);
            }
            Instr::Sync { barrier } => return Ok(Step::Sync(barrier)),
            Instr::Host { op } => self.host(c, op, &mut ch)?,
            Instr::Load { dst, len, elem_bytes, .. } => {
                self.load(c, dst, len, elem_bytes, &mut ch)?
            }
            Instr::Store { src, len, elem_bytes, .. } => {
                self.store(c, src, len, elem_bytes, &mut ch)?
            }
            Instr::Copy { dst, src, len } => {
                let t = self.copy(c, dst, src, len)?;
                self.vector(&mut ch, t)
            }
            Instr::Fill { dst, len, .. } => {
                let t = self.fill(c, dst, len)?;
                self.vector(&mut ch, t)
            }
            Instr::Send { to, dst, src, len, elem_bytes } => {
                self.send(c, to as usize, (dst, src, len, elem_bytes), &mut ch)?
            }
            Instr::Recv { from, len } => match self.recv(c, from, len)? {
                Some(start) => {
                    ch.start = start;
                    self.cycle
                }
                None => return Ok(Step::Parked),
            },
            Instr::XbarConfig { group, .. } => self.xbar_config(c, group, &instr)?,
            Instr::AdcStep { group, .. } => {
                self.group_of(c, group)?;
                self.cycle
            }
            Instr::Mvm { group, src, dst, count } => {
                self.mvm(c, group, (src, dst, count), &mut ch)?
            }
            Instr::XbarLoad { group } => self.xbar_load(c, group, &mut ch)?,
            Instr::Im2col { window, src, dst, .. } => {
                let t = self.im2col(c, window, src, dst)?;
                self.vector(&mut ch, t)
            }
            Instr::ShiftAdd { dst, src, len, .. } => {
                let t = self.shift_add(c, dst, src, len)?;
                self.vector(&mut ch, t)
            }
            Instr::Requant { table, src, dst, len, .. } => {
                let t = self.requant(c, table, src, dst, len)?;
                self.vector(&mut ch, t)
            }
            Instr::Relu { dst, src, len, .. } => {
                let t = self.relu(c, dst, src, len)?;
                self.vector(&mut ch, t)
            }
            Instr::MaxPool { window, src, dst } => {
                let t = self.pool(c, window, None, src, dst)?;
                self.vector(&mut ch, t)
            }
            Instr::AvgPool { window, table, src, dst, .. } => {
                let t = self.pool(c, window, Some(table), src, dst)?;
                self.vector(&mut ch, t)
            }
            Instr::Add { table, a, b, dst, len } => {
                let t = self.add(c, table, [a, b, dst], len)?;
                self.vector(&mut ch, t)
            }
            Instr::Transpose { table, src, dst } => {
                let t = self.transpose(c, table, src, dst)?;
                self.vector(&mut ch, t)
            }
            Instr::Lut { table, src, dst, len } => {
                let t = self.digital_vector(c, table, [src, 0, dst], len)?;
                self.vector(&mut ch, t)
            }
            Instr::Mul { table, a, b, dst, len } => {
                let t = self.digital_vector(c, table, [a, b, dst], len)?;
                self.vector(&mut ch, t)
            }
            Instr::Softmax { table, src, dst }
            | Instr::LayerNorm { table, src, dst }
            | Instr::Gather { table, src, dst }
            | Instr::GatherRows { table, src, dst }
            | Instr::LutPerElement { table, src, dst } => {
                let t = self.digital_vector(c, table, [src, 0, dst], 0)?;
                self.vector(&mut ch, t)
            }
            Instr::Matmul { table, a, b, dst } => self.matmul(c, table, [a, b, dst], &mut ch)?,
        };
        self.record(c, ch.start, latency, ch.e, ch.k);
        Ok(Step::Next)
    }

    fn missing(&self, c: usize, what: &str, idx: usize) -> BackendError {
        self.error(c, format!("{what} {idx} does not exist"))
    }

    fn group_of(&self, c: usize, g: u16) -> Result<&'a GroupEntry> {
        let s: &'a Stream = self.s;
        s.groups.get(g as usize).ok_or_else(|| self.missing(c, "group", g as usize))
    }

    /// Host work: no chip time or energy, its elements counted.
    fn host(&self, c: usize, op: u16, ch: &mut Charge) -> Result<f64> {
        let h = self
            .s
            .hosts
            .get(op as usize)
            .ok_or_else(|| self.missing(c, "host entry", op as usize))?;
        ch.k.host_ops = 1;
        ch.k.host_elements = match h {
            HostEntry::Quantize { len, .. } => *len as u64,
            HostEntry::Dequantize { shape, .. } | HostEntry::Softmax { shape, .. } => {
                shape.iter().map(|&d| d as u64).product()
            }
        };
        Ok(0.0)
    }

    /// A transfer of `len` words of `elem_bytes` bytes between the global memory and the
    /// scratchpad words at `addr`, on the shared channel.
    fn transfer(
        &mut self,
        c: usize,
        addr: u32,
        len: u32,
        elem_bytes: u8,
        ch: &mut Charge,
    ) -> Result<f64> {
        let (addr, len) = (addr as u64, len as u64);
        self.check(c, c, addr, len)?;
        let bytes = len * elem_bytes as u64;
        let (st, dur) = self.channel(ch.start, bytes);
        ch.start = st;
        ch.e.global_memory = bytes as f64 * self.c.global_mem_pj_per_byte;
        ch.k.global_bytes = bytes;
        Ok(dur.max(self.cycle))
    }

    fn load(
        &mut self,
        c: usize,
        dst: u32,
        len: u32,
        elem_bytes: u8,
        ch: &mut Charge,
    ) -> Result<f64> {
        let latency = self.transfer(c, dst, len, elem_bytes, ch)?;
        let bytes = len as u64 * elem_bytes as u64;
        ch.e.buffer = bytes as f64 * self.c.buffer_write_pj_per_byte;
        ch.k.buffer_write_bytes = bytes;
        self.shadows[c].write(dst as u64, len as u64, elem_bytes);
        Ok(latency)
    }

    fn store(
        &mut self,
        c: usize,
        src: u32,
        len: u32,
        elem_bytes: u8,
        ch: &mut Charge,
    ) -> Result<f64> {
        let latency = self.transfer(c, src, len, elem_bytes, ch)?;
        let bytes = len as u64 * elem_bytes as u64;
        ch.e.buffer = bytes as f64 * self.c.buffer_read_pj_per_byte;
        ch.k.buffer_read_bytes = bytes;
        self.shadows[c].touch(src as u64, len as u64);
        Ok(latency)
    }

    fn copy(&mut self, c: usize, dst: u32, src: u32, len: u32) -> Result<Traffic> {
        self.check(c, c, src as u64, len as u64)?;
        self.check(c, c, dst as u64, len as u64)?;
        let w = self.shadows[c].widths(src as u64, len as u64, 1);
        let bytes = w.iter().map(|&b| b as u64).sum();
        self.shadows[c].write_with(dst as u64, len as u64, |j| w[j]);
        Ok((len as u64, bytes, bytes))
    }

    fn fill(&mut self, c: usize, dst: u32, len: u32) -> Result<Traffic> {
        self.check(c, c, dst as u64, len as u64)?;
        let w = self.shadows[c].widths(dst as u64, len as u64, 1);
        let bytes = w.iter().map(|&b| b as u64).sum();
        self.shadows[c].write_with(dst as u64, len as u64, |j| w[j]);
        Ok((len as u64, 0, bytes))
    }

    /// `send`: the words leave at the sender's pace and arrive `hops` cycles later, queued for
    /// the receiver (whom they wake when it waits for them).
    fn send(
        &mut self,
        c: usize,
        to: usize,
        (dst, src, len, elem_bytes): (u32, u32, u32, u8),
        ch: &mut Charge,
    ) -> Result<f64> {
        if to >= self.cores.len() {
            return Err(self.missing(c, "core", to));
        }
        let (cs, cyc, clock) = (self.c, self.cycle, ch.start);
        let (len, eb) = (len as u64, elem_bytes as u64);
        self.check(c, c, src as u64, len)?;
        self.check(c, to, dst as u64, len)?;
        let (bytes, hops) = (len * eb, self.hops(c, to));
        ch.e.interconnect = (bytes * hops) as f64 * cs.interconnect_pj_per_byte_hop;
        ch.e.buffer = bytes as f64 * (cs.buffer_read_pj_per_byte + cs.buffer_write_pj_per_byte);
        ch.k.interconnect_byte_hops = bytes * hops;
        ch.k.buffer_read_bytes = bytes;
        ch.k.buffer_write_bytes = bytes;
        self.shadows[c].touch(src as u64, len);
        self.shadows[to].write(dst as u64, len, elem_bytes);
        let latency = (bytes as f64 / cs.interconnect_gb_per_s).max(cyc);
        let arrival = clock + latency + hops as f64 * cyc;
        self.fifo.entry((c, to)).or_default().push_back((len, arrival));
        if self.cores[to].recv_from == Some(c as u16) {
            self.cores[to].recv_from = None;
            self.wake.push(to);
        }
        Ok(latency)
    }

    /// `recv`: when the words have all been sent, its start (the arrival of the last of them);
    /// `None` (the core parked) until then.
    fn recv(&mut self, c: usize, from: u16, len: u32) -> Result<Option<f64>> {
        if from as usize >= self.cores.len() {
            return Err(self.missing(c, "core", from as usize));
        }
        let clock = self.cores[c].clock;
        let q = self.fifo.entry((from as usize, c)).or_default();
        if q.iter().map(|x| x.0).sum::<u64>() < len as u64 {
            self.cores[c].recv_from = Some(from);
            return Ok(None);
        }
        let (mut need, mut arrival) = (len as u64, 0.0f64);
        while need > 0 {
            let front = q.front_mut().expect("invariant: enough words are queued");
            arrival = arrival.max(front.1);
            let take = front.0.min(need);
            front.0 -= take;
            need -= take;
            if front.0 == 0 {
                q.pop_front();
            }
        }
        Ok(Some(clock.max(arrival)))
    }

    fn xbar_config(&mut self, c: usize, group: u16, instr: &Instr) -> Result<f64> {
        self.group_of(c, group)?;
        let num = Numerics::of_config(instr).expect("invariant: an xbar_config");
        self.cores[c].configs.insert(group, num);
        Ok(CONFIG_CYCLES * self.cycle)
    }

    /// `count` vectors through the group as configured: [`vector_cost`] each.
    fn mvm(
        &mut self,
        c: usize,
        group: u16,
        (src, dst, count): (u32, u32, u32),
        ch: &mut Charge,
    ) -> Result<f64> {
        let g = self.group_of(c, group)?;
        let Some(num) = self.cores[c].configs.get(&group).copied() else {
            return Err(self.error(c, format!("group {group} is used before its xbar_config")));
        };
        let shape = self.shape(group as usize);
        let cnt = count as u64;
        if cnt > 0 {
            let groups = shape.conv_groups.max(1);
            let last_in = (cnt - 1) * g.in_stride as u64
                + g.in_offset as u64
                + (groups - 1) * g.group_stride as u64
                + shape.k;
            let last_out = (cnt - 1) * g.out_stride as u64 + shape.n;
            self.check(c, c, src as u64, last_in)?;
            self.check(c, c, dst as u64, last_out)?;
            self.shadows[c].touch(src as u64, last_in);
            if g.out_stride as u64 == shape.n {
                self.shadows[c].write(dst as u64, cnt * shape.n, ACC_BYTES as u8);
            } else {
                for v in 0..cnt {
                    let at = dst as u64 + v * g.out_stride as u64;
                    self.shadows[c].write(at, shape.n, ACC_BYTES as u8);
                }
            }
        }
        let v = vector_cost(&num, &shape, self.c);
        ch.e = v.energy.scaled(cnt as f64);
        ch.k.mvm_vectors = cnt;
        ch.k.macs = v.macs * cnt;
        ch.k.conversions = v.conversions * cnt;
        ch.k.buffer_read_bytes = v.read_bytes * cnt;
        ch.k.buffer_write_bytes = v.write_bytes * cnt;
        let latency = (v.ns * cnt as f64).max(self.cycle);
        if cnt > 0 {
            self.busy.push((ch.start, ch.start + latency, shape.arrays));
        }
        Ok(latency)
    }

    /// Programming a group: [`program_cost`], its weights read on the shared channel.
    fn xbar_load(&mut self, c: usize, group: u16, ch: &mut Charge) -> Result<f64> {
        let g = self.group_of(c, group)?;
        let num = self.load_numerics(c, group);
        let (cells, pj, prog_ns) = program_cost(&num, &self.shape(group as usize), self.c);
        let bytes = g.k as u64 * g.n as u64 * (g.weight_bits as u64).div_ceil(8);
        let (st, dur) = self.channel(ch.start, bytes);
        ch.start = st;
        ch.e.programming = pj;
        ch.e.global_memory = bytes as f64 * self.c.global_mem_pj_per_byte;
        ch.k.cells_programmed = cells;
        ch.k.global_bytes = bytes;
        Ok(prog_ns.max(dur).max(self.cycle))
    }

    fn window(&self, c: usize, w: u16) -> Result<&'a WindowEntry> {
        let s: &'a Stream = self.s;
        s.windows.get(w as usize).ok_or_else(|| self.missing(c, "window", w as usize))
    }

    fn requant_entry(&self, c: usize, table: u16) -> Result<()> {
        match self.s.requants.get(table as usize) {
            Some(_) => Ok(()),
            None => Err(self.missing(c, "requant entry", table as usize)),
        }
    }

    fn im2col(&mut self, c: usize, w: u16, src: u32, dst: u32) -> Result<Traffic> {
        let w = self.window(c, w)?;
        let out = w.im2col_len();
        self.check(c, c, src as u64, w.source_len())?;
        self.check(c, c, dst as u64, out)?;
        self.shadows[c].touch(src as u64, w.source_len());
        self.shadows[c].write(dst as u64, out, 1);
        Ok((out, out, out))
    }

    fn shift_add(&mut self, c: usize, dst: u32, src: u32, len: u32) -> Result<Traffic> {
        let len = len as u64;
        self.check(c, c, src as u64, len)?;
        self.check(c, c, dst as u64, len)?;
        self.shadows[c].touch(src as u64, len);
        self.shadows[c].write(dst as u64, len, ACC_BYTES as u8);
        Ok((len, 2 * ACC_BYTES * len, ACC_BYTES * len))
    }

    fn requant(&mut self, c: usize, table: u16, src: u32, dst: u32, len: u32) -> Result<Traffic> {
        self.requant_entry(c, table)?;
        let len = len as u64;
        self.check(c, c, src as u64, len)?;
        self.check(c, c, dst as u64, len)?;
        let rb = self.shadows[c].read_bytes(src as u64, len, ACC_BYTES as u8);
        self.shadows[c].write(dst as u64, len, 1);
        Ok((len, rb, len))
    }

    fn relu(&mut self, c: usize, dst: u32, src: u32, len: u32) -> Result<Traffic> {
        let len = len as u64;
        self.check(c, c, src as u64, len)?;
        self.check(c, c, dst as u64, len)?;
        self.shadows[c].touch(src as u64, len);
        self.shadows[c].write(dst as u64, len, 1);
        Ok((len, len, len))
    }

    /// `max_pool`, or `avg_pool` with its requant entry `avg`: one element op per window
    /// position, and average pooling one more per output (its requantization).
    fn pool(&mut self, c: usize, w: u16, avg: Option<u16>, src: u32, dst: u32) -> Result<Traffic> {
        if let Some(table) = avg {
            self.requant_entry(c, table)?;
        }
        let w = self.window(c, w)?;
        let (out, kk) = (w.pool_len(), w.kernel[0] as u64 * w.kernel[1] as u64);
        self.check(c, c, src as u64, w.source_len())?;
        self.check(c, c, dst as u64, out)?;
        self.shadows[c].touch(src as u64, w.source_len());
        self.shadows[c].write(dst as u64, out, 1);
        let el = if avg.is_some() { out * (kk + 1) } else { out * kk };
        Ok((el, out * kk, out))
    }

    /// Two rescales and one requantization per output.
    fn add(&mut self, c: usize, table: u16, [a, b, dst]: [u32; 3], len: u32) -> Result<Traffic> {
        if self.s.adds.get(table as usize).is_none() {
            return Err(self.missing(c, "add entry", table as usize));
        }
        let len = len as u64;
        for at in [a, b, dst] {
            self.check(c, c, at as u64, len)?;
        }
        self.shadows[c].touch(a as u64, len);
        self.shadows[c].touch(b as u64, len);
        self.shadows[c].write(dst as u64, len, 1);
        Ok((3 * len, 2 * len, len))
    }

    fn transpose(&mut self, c: usize, table: u16, src: u32, dst: u32) -> Result<Traffic> {
        let s: &'a Stream = self.s;
        let p = s
            .perms
            .get(table as usize)
            .ok_or_else(|| self.missing(c, "permutation entry", table as usize))?;
        let n = p.len();
        self.check(c, c, src as u64, n)?;
        self.check(c, c, dst as u64, n)?;
        let w = self.shadows[c].widths(src as u64, n, 1);
        let bytes = w.iter().map(|&b| b as u64).sum();
        self.shadows[c].write_with(dst as u64, n, |j| w[j]);
        Ok((n, bytes, bytes))
    }
}

impl<'a> Sim<'a> {
    fn digital_entry(&self, c: usize, table: u16) -> Result<&'a super::DigitalEntry> {
        let s: &'a Stream = self.s;
        s.digital
            .get(table as usize)
            .ok_or_else(|| self.missing(c, "digital entry", table as usize))
    }

    /// An instruction of the vector unit with a digital entry: its element operations per
    /// output (`docs/cost-model.md`, "Transformer steps"), codes read and written (1 byte each).
    fn digital_vector(
        &mut self,
        c: usize,
        table: u16,
        [src, b, dst]: [u32; 3],
        len: u32,
    ) -> Result<Traffic> {
        use super::DigitalEntry as D;
        let e = self.digital_entry(c, table)?;
        let (read, written) = e.lengths().unwrap_or((len as u64, len as u64));
        self.check(c, c, src as u64, read)?;
        self.check(c, c, dst as u64, written)?;
        self.shadows[c].touch(src as u64, read);
        if matches!(e, D::Mul { .. }) {
            self.check(c, c, b as u64, read)?;
            self.shadows[c].touch(b as u64, read);
        }
        self.shadows[c].write(dst as u64, written, 1);
        Ok(match e {
            // A lookup per code; a gather moves one code per output.
            D::Lut { .. } | D::Gather { .. } | D::GatherRows { .. } | D::LutPerElement { .. } => {
                (written, read, written)
            }
            // The product and its requantization.
            D::Mul { .. } => (2 * written, 2 * read, written),
            // Max, lookup, sum, division, requantization per code; two passes over the input.
            D::Softmax { .. } => (5 * written, 2 * read, written),
            // S1, S2 (2), numerator (2), division, scale and bias (2), requantization per code,
            // and per group the square root: 8 Newton iterations of 3 operations.
            D::LayerNorm { groups, .. } => (8 * written + 24 * *groups as u64, 2 * read, written),
            D::MatMul { .. } => {
                return Err(self.error(c, "a matmul entry for a vector instruction".into()))
            }
        })
    }

    /// `matmul` on the digital matrix unit: `digital_mac_energy_pj` per multiply-accumulate at
    /// `digital_macs_per_cycle`, then one requantization per output on the vector unit; both
    /// operands and the output cross the scratchpad once.
    fn matmul(
        &mut self,
        c: usize,
        table: u16,
        [a, b, dst]: [u32; 3],
        ch: &mut Charge,
    ) -> Result<f64> {
        let e = self.digital_entry(c, table)?;
        let super::DigitalEntry::MatMul { a_shape, b_shape, .. } = e else {
            return Err(self.error(c, format!("a {} entry for matmul", e.kind())));
        };
        let (a_len, out) = e.lengths().unwrap_or((0, 0));
        let b_len: u64 = b_shape.iter().map(|&v| v as u64).product();
        let k = a_shape.last().copied().unwrap_or(1) as u64;
        let macs = out * k;
        self.check(c, c, a as u64, a_len)?;
        self.check(c, c, b as u64, b_len)?;
        self.check(c, c, dst as u64, out)?;
        self.shadows[c].touch(a as u64, a_len);
        self.shadows[c].touch(b as u64, b_len);
        self.shadows[c].write(dst as u64, out, 1);
        let cs = self.c;
        let requant = self.vector(ch, (out, a_len + b_len, out));
        ch.e.digital_matrix = macs as f64 * cs.digital_mac_energy_pj;
        ch.k.digital_macs = macs;
        let mac_ns = macs as f64 / cs.digital_macs_per_cycle * self.cycle;
        Ok((mac_ns + requant).max(self.cycle))
    }
}

/// What an instruction is charged besides its latency: when it starts (later than the core's
/// clock when it waits for the memory channel or for words), its energy and its counts.
struct Charge {
    start: f64,
    e: Energy,
    k: Counts,
}

/// A vector-unit instruction's elements, scratchpad bytes read and bytes written.
type Traffic = (u64, u64, u64);
