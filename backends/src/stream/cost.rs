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
mod model;
mod report;
mod shadow;

pub use model::{
    array_peak, program_cost, vector_cost, GroupShape, Numerics, Peak, VectorCost, ACC_BYTES,
};
pub use report::{
    round, CoreCost, CostReport, Counts, Energy, InstrCost, LayerCost, Preload, Totals, Utilization,
};

use super::{HostEntry, Schedule, Stream};
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
    Ok(sim.report())
}

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
    fn vector(&self, e: &mut Energy, k: &mut Counts, elements: u64, rb: u64, wb: u64) -> f64 {
        let c = self.c;
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

    fn step(&mut self, c: usize) -> Result<Step> {
        let s = self.s;
        let i = self.cores[c].pc;
        let Some(&instr) = s.cores[c].code.get(i) else {
            self.cores[c].done = true;
            return Ok(Step::Halt);
        };
        let (clock, cyc, cs) = (self.cores[c].clock, self.cycle, self.c);
        let mut e = Energy::default();
        let mut k = Counts { instructions: 1, ..Counts::default() };
        let mut start = clock;
        let missing = |what: &str, idx: usize| format!("{what} {idx} does not exist");
        let group_of =
            |g: u16| s.groups.get(g as usize).ok_or_else(|| missing("group", g as usize));
        let latency = match instr {
            Instr::Halt {} => {
                self.record(c, clock, 0.0, e, k);
                self.cores[c].done = true;
                return Ok(Step::Halt);
            }
            Instr::Sync { barrier } => return Ok(Step::Sync(barrier)),
            Instr::Host { op } => {
                let h = s
                    .hosts
                    .get(op as usize)
                    .ok_or_else(|| self.error(c, missing("host entry", op as usize)))?;
                k.host_ops = 1;
                k.host_elements = match h {
                    HostEntry::Quantize { len, .. } => *len as u64,
                    HostEntry::Dequantize { shape, .. } | HostEntry::Softmax { shape, .. } => {
                        shape.iter().map(|&d| d as u64).product()
                    }
                };
                0.0
            }
            Instr::Load { dst, len, elem_bytes, .. }
            | Instr::Store { src: dst, len, elem_bytes, .. } => {
                let (addr, len) = (dst as u64, len as u64);
                self.check(c, c, addr, len)?;
                let bytes = len * elem_bytes as u64;
                let (st, dur) = self.channel(clock, bytes);
                start = st;
                e.global_memory = bytes as f64 * cs.global_mem_pj_per_byte;
                k.global_bytes = bytes;
                if matches!(instr, Instr::Load { .. }) {
                    e.buffer = bytes as f64 * cs.buffer_write_pj_per_byte;
                    k.buffer_write_bytes = bytes;
                    self.shadows[c].write(addr, len, elem_bytes);
                } else {
                    e.buffer = bytes as f64 * cs.buffer_read_pj_per_byte;
                    k.buffer_read_bytes = bytes;
                    self.shadows[c].touch(addr, len);
                }
                dur.max(cyc)
            }
            Instr::Copy { dst, src, len } => {
                self.check(c, c, src as u64, len as u64)?;
                self.check(c, c, dst as u64, len as u64)?;
                let w = self.shadows[c].widths(src as u64, len as u64, 1);
                let bytes = w.iter().map(|&b| b as u64).sum();
                self.shadows[c].write_with(dst as u64, len as u64, |j| w[j]);
                self.vector(&mut e, &mut k, len as u64, bytes, bytes)
            }
            Instr::Fill { dst, len, .. } => {
                self.check(c, c, dst as u64, len as u64)?;
                let w = self.shadows[c].widths(dst as u64, len as u64, 1);
                let bytes = w.iter().map(|&b| b as u64).sum();
                self.shadows[c].write_with(dst as u64, len as u64, |j| w[j]);
                self.vector(&mut e, &mut k, len as u64, 0, bytes)
            }
            Instr::Send { to, dst, src, len, elem_bytes } => {
                let to = to as usize;
                if to >= self.cores.len() {
                    return Err(self.error(c, missing("core", to)));
                }
                let (len, eb) = (len as u64, elem_bytes as u64);
                self.check(c, c, src as u64, len)?;
                self.check(c, to, dst as u64, len)?;
                let (bytes, hops) = (len * eb, self.hops(c, to));
                e.interconnect = (bytes * hops) as f64 * cs.interconnect_pj_per_byte_hop;
                e.buffer =
                    bytes as f64 * (cs.buffer_read_pj_per_byte + cs.buffer_write_pj_per_byte);
                k.interconnect_byte_hops = bytes * hops;
                k.buffer_read_bytes = bytes;
                k.buffer_write_bytes = bytes;
                self.shadows[c].touch(src as u64, len);
                self.shadows[to].write(dst as u64, len, elem_bytes);
                let latency = (bytes as f64 / cs.interconnect_gb_per_s).max(cyc);
                let arrival = clock + latency + hops as f64 * cyc;
                self.fifo.entry((c, to)).or_default().push_back((len, arrival));
                if self.cores[to].recv_from == Some(c as u16) {
                    self.cores[to].recv_from = None;
                    self.wake.push(to);
                }
                latency
            }
            Instr::Recv { from, len } => {
                if from as usize >= self.cores.len() {
                    return Err(self.error(c, missing("core", from as usize)));
                }
                let q = self.fifo.entry((from as usize, c)).or_default();
                if q.iter().map(|x| x.0).sum::<u64>() < len as u64 {
                    self.cores[c].recv_from = Some(from);
                    return Ok(Step::Parked);
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
                start = clock.max(arrival);
                cyc
            }
            Instr::XbarConfig { group, .. } => {
                group_of(group).map_err(|m| self.error(c, m))?;
                let num = Numerics::of_config(&instr).expect("invariant: an xbar_config");
                self.cores[c].configs.insert(group, num);
                CONFIG_CYCLES * cyc
            }
            Instr::AdcStep { group, .. } => {
                group_of(group).map_err(|m| self.error(c, m))?;
                cyc
            }
            Instr::Mvm { group, src, dst, count } => {
                let g = group_of(group).map_err(|m| self.error(c, m))?;
                let Some(num) = self.cores[c].configs.get(&group).copied() else {
                    return Err(
                        self.error(c, format!("group {group} is used before its xbar_config"))
                    );
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
                let v = vector_cost(&num, &shape, cs);
                e = v.energy.scaled(cnt as f64);
                k.mvm_vectors = cnt;
                k.macs = v.macs * cnt;
                k.conversions = v.conversions * cnt;
                k.buffer_read_bytes = v.read_bytes * cnt;
                k.buffer_write_bytes = v.write_bytes * cnt;
                let latency = (v.ns * cnt as f64).max(cyc);
                if cnt > 0 {
                    self.busy.push((clock, clock + latency, shape.arrays));
                }
                latency
            }
            Instr::XbarLoad { group } => {
                let g = group_of(group).map_err(|m| self.error(c, m))?;
                let num = self.load_numerics(c, group);
                let (cells, pj, prog_ns) = program_cost(&num, &self.shape(group as usize), cs);
                let bytes = g.k as u64 * g.n as u64 * (g.weight_bits as u64).div_ceil(8);
                let (st, dur) = self.channel(clock, bytes);
                start = st;
                e.programming = pj;
                e.global_memory = bytes as f64 * cs.global_mem_pj_per_byte;
                k.cells_programmed = cells;
                k.global_bytes = bytes;
                prog_ns.max(dur).max(cyc)
            }
            _ => self.vector_instr(c, &instr, &mut e, &mut k)?,
        };
        self.record(c, start, latency, e, k);
        Ok(Step::Next)
    }

    /// The vector instructions that read and write the scratchpad of their core only.
    fn vector_instr(
        &mut self,
        c: usize,
        instr: &Instr,
        e: &mut Energy,
        k: &mut Counts,
    ) -> Result<f64> {
        let s = self.s;
        let missing = |what: &str, idx: u16| self.error(c, format!("{what} {idx} does not exist"));
        let window = |w: u16| s.windows.get(w as usize).ok_or_else(|| missing("window", w));
        // (elements, bytes read, bytes written); the reads and writes registered below.
        let (el, rb, wb) = match *instr {
            Instr::Im2col { window: w, src, dst, .. } => {
                let w = window(w)?;
                let out = w.im2col_len();
                self.check(c, c, src as u64, w.source_len())?;
                self.check(c, c, dst as u64, out)?;
                self.shadows[c].touch(src as u64, w.source_len());
                self.shadows[c].write(dst as u64, out, 1);
                (out, out, out)
            }
            Instr::ShiftAdd { dst, src, len, .. } => {
                let len = len as u64;
                self.check(c, c, src as u64, len)?;
                self.check(c, c, dst as u64, len)?;
                self.shadows[c].touch(src as u64, len);
                self.shadows[c].write(dst as u64, len, ACC_BYTES as u8);
                (len, 2 * ACC_BYTES * len, ACC_BYTES * len)
            }
            Instr::Requant { table, src, dst, len, .. } => {
                s.requants.get(table as usize).ok_or_else(|| missing("requant entry", table))?;
                let len = len as u64;
                self.check(c, c, src as u64, len)?;
                self.check(c, c, dst as u64, len)?;
                let rb = self.shadows[c].read_bytes(src as u64, len, ACC_BYTES as u8);
                self.shadows[c].write(dst as u64, len, 1);
                (len, rb, len)
            }
            Instr::Relu { dst, src, len, .. } => {
                let len = len as u64;
                self.check(c, c, src as u64, len)?;
                self.check(c, c, dst as u64, len)?;
                self.shadows[c].touch(src as u64, len);
                self.shadows[c].write(dst as u64, len, 1);
                (len, len, len)
            }
            Instr::MaxPool { window: w, src, dst } | Instr::AvgPool { window: w, src, dst, .. } => {
                if let Instr::AvgPool { table, .. } = *instr {
                    s.requants
                        .get(table as usize)
                        .ok_or_else(|| missing("requant entry", table))?;
                }
                let w = window(w)?;
                let (out, kk) = (w.pool_len(), w.kernel[0] as u64 * w.kernel[1] as u64);
                self.check(c, c, src as u64, w.source_len())?;
                self.check(c, c, dst as u64, out)?;
                self.shadows[c].touch(src as u64, w.source_len());
                self.shadows[c].write(dst as u64, out, 1);
                // Average pooling also requantizes each output: one more element op.
                let el =
                    if matches!(instr, Instr::AvgPool { .. }) { out * (kk + 1) } else { out * kk };
                (el, out * kk, out)
            }
            Instr::Add { table, a, b, dst, len } => {
                s.adds.get(table as usize).ok_or_else(|| missing("add entry", table))?;
                let len = len as u64;
                for at in [a, b, dst] {
                    self.check(c, c, at as u64, len)?;
                }
                self.shadows[c].touch(a as u64, len);
                self.shadows[c].touch(b as u64, len);
                self.shadows[c].write(dst as u64, len, 1);
                // Two rescales and one requantization per output.
                (3 * len, 2 * len, len)
            }
            Instr::Transpose { table, src, dst } => {
                let p = s
                    .perms
                    .get(table as usize)
                    .ok_or_else(|| missing("permutation entry", table))?;
                let n = p.len();
                self.check(c, c, src as u64, n)?;
                self.check(c, c, dst as u64, n)?;
                let w = self.shadows[c].widths(src as u64, n, 1);
                let bytes = w.iter().map(|&b| b as u64).sum();
                self.shadows[c].write_with(dst as u64, n, |j| w[j]);
                (n, bytes, bytes)
            }
            _ => unreachable!("every other instruction is handled by Sim::step"),
        };
        Ok(self.vector(e, k, el, rb, wb))
    }
}
