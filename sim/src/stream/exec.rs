//! The machine state of one run and the execution of one instruction.
//!
//! Every instruction reads all its operands before it writes (an overlapping source is copied
//! first), as `copy` documents; so the result never depends on how its ranges overlap. Every
//! address range is checked again here (an error, never a panic), although validation proved
//! them.

use super::matrix::{self, Cache, GroupConfig};
use super::{digital, host, lazy, vector, window};
use crate::program::crossbar::Source;
use cimc_backends::arith::requantize;
use cimc_backends::isa::Instr;
use cimc_backends::stream::{column_groups, xbar_crossbar, AddEntry, GroupEntry, Stream};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// What a core did when asked to run one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// It ran the instruction (`n` instructions count as done: a barrier releases every core).
    Ran(u64),
    /// It waits at a `sync` or a `recv`.
    Blocked,
    Halted,
}

pub(super) struct Machine<'a> {
    pub s: &'a Stream,
    cache: &'a Cache,
    pub global: Vec<i64>,
    pub(super) scratch: Vec<Vec<i64>>,
    /// Each core's recorded `im2col` ([`super::lazy`]), and whether to record them.
    pub(super) lazy: Vec<Vec<super::lazy::Lazy>>,
    pub(super) lazy_im2col: bool,
    /// Input planes kept for the `mvm`s that read the same vectors ([`super::planes`]).
    pub(super) planes: Vec<super::planes::KeptPlanes>,
    pub pc: Vec<usize>,
    pub halted: Vec<bool>,
    /// The barrier each core waits at, if it does.
    at_sync: Vec<Option<u32>>,
    /// `(receiver, sender)` → words arrived that no `recv` has consumed.
    pub pending: BTreeMap<(usize, usize), u64>,
    groups: Vec<Option<GroupConfig>>,
    /// Layer-serial: groups programmed by `xbar_load`, and the group each array holds.
    loaded: Vec<bool>,
    owner: HashMap<u32, u16>,
}

/// A zeroed memory of `n` words, or an error when it cannot be allocated.
fn memory(n: u32, what: &str) -> Result<Vec<i64>, String> {
    let mut probe: Vec<i64> = Vec::new();
    probe
        .try_reserve_exact(n as usize)
        .map_err(|_| format!("cannot allocate the {what} ({n} words)"))?;
    drop(probe);
    Ok(vec![0; n as usize])
}

/// The words an `mvm` of group `g` reads (from its first row to its last) and writes, checked
/// against a scratchpad of `size` words.
fn mvm_ranges(
    g: &GroupEntry,
    src: usize,
    dst: usize,
    count: usize,
    size: usize,
) -> Result<(Range<usize>, Range<usize>), String> {
    let w = |v: usize| v as u128;
    let last = w(count.saturating_sub(1));
    let base = w(src) + g.in_offset as u128;
    let groups = (g.conv_groups as u128).saturating_sub(1);
    let in_end = base + last * g.in_stride as u128 + groups * g.group_stride as u128 + g.k as u128;
    let out_end = w(dst) + last * g.out_stride as u128 + g.n as u128;
    if in_end > w(size) || out_end > w(size) {
        return Err(format!(
            "words up to {in_end} read, up to {out_end} written: the scratchpad has {size}"
        ));
    }
    Ok((base as usize..in_end as usize, dst..out_end as usize))
}

/// `start .. start + len` if it lies inside a memory of `size` words.
fn span(start: u32, len: u64, size: usize, what: &str) -> Result<Range<usize>, String> {
    let end = start as u64 + len;
    if end > size as u64 {
        return Err(format!("{what}: words {start}..{end} lie outside a memory of {size} words"));
    }
    Ok(start as usize..end as usize)
}

/// Writes `vals` over `dst` of `mem` (ranges checked by the caller).
fn put(mem: &mut [i64], dst: &Range<usize>, vals: impl IntoIterator<Item = i64>) {
    for (d, v) in mem[dst.clone()].iter_mut().zip(vals) {
        *d = v;
    }
}

/// Runs `f(source, destination)` on two ranges of one memory; a source that overlaps the
/// destination is copied first, so that it is read entirely before anything is written.
pub(super) fn with_src_dst<R>(
    mem: &mut [i64],
    src: Range<usize>,
    dst: Range<usize>,
    f: impl FnOnce(&[i64], &mut [i64]) -> R,
) -> R {
    if src.end <= dst.start {
        let (a, b) = mem.split_at_mut(dst.start);
        f(&a[src], &mut b[..dst.len()])
    } else if dst.end <= src.start {
        let (a, b) = mem.split_at_mut(src.start);
        f(&b[..src.len()], &mut a[dst])
    } else {
        let x = mem[src].to_vec();
        f(&x, &mut mem[dst])
    }
}

/// `mem[dst] = f(i, mem[src])` for each `i`, reading the source before writing.
fn map_words(
    mem: &mut [i64],
    src: Range<usize>,
    dst: Range<usize>,
    f: impl Fn(usize, i64) -> Result<i64, String>,
) -> Result<(), String> {
    if src.start == dst.start {
        for (i, w) in mem[dst].iter_mut().enumerate() {
            *w = f(i, *w)?;
        }
    } else if src.end <= dst.start || dst.end <= src.start {
        for i in 0..dst.len() {
            mem[dst.start + i] = f(i, mem[src.start + i])?;
        }
    } else {
        let x = mem[src].to_vec();
        for (i, (d, &v)) in mem[dst].iter_mut().zip(&x).enumerate() {
            *d = f(i, v)?;
        }
    }
    Ok(())
}

impl<'a> Machine<'a> {
    pub fn new(s: &'a Stream, cache: &'a Cache) -> Result<Machine<'a>, String> {
        let n = s.cores.len();
        let scratch = s
            .cores
            .iter()
            .enumerate()
            .map(|(c, core)| memory(core.scratch_words, &format!("scratchpad of core {c}")))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Machine {
            s,
            cache,
            global: memory(s.global_words, "global memory")?,
            scratch,
            lazy: vec![Vec::new(); n],
            lazy_im2col: true,
            planes: Vec::new(),
            pc: vec![0; n],
            halted: vec![false; n],
            at_sync: vec![None; n],
            pending: BTreeMap::new(),
            groups: vec![None; s.groups.len()],
            loaded: vec![false; s.groups.len()],
            owner: HashMap::new(),
        })
    }

    /// Runs the next instruction of core `c`, unless it waits or has halted. Every
    /// instruction has its function; a new one fails to compile here until it has one.
    pub fn step(&mut self, c: usize) -> Result<Flow, String> {
        if self.halted[c] {
            return Ok(Flow::Halted);
        }
        let Some(&instr) = self.s.cores[c].code.get(self.pc[c]) else {
            return Err("the code ends without a halt".into());
        };
        // Recorded im2cols whose words the instruction touches are written first.
        if let Some((here, there)) = lazy::touched(self.s, &instr) {
            self.settle(c, &here)?;
            if let Some((to, r)) = there.filter(|(to, _)| *to < self.lazy.len()) {
                self.settle(to, &[r])?;
            }
        }
        match instr {
            Instr::Halt {} => {
                self.halted[c] = true;
                return Ok(Flow::Ran(1));
            }
            Instr::Sync { barrier } => return self.sync(c, barrier),
            Instr::Recv { from, len } => {
                if !self.recv(c, from, len) {
                    return Ok(Flow::Blocked);
                }
            }
            Instr::Host { op } => self.host(op)?,
            Instr::Load { dst, src, len, .. } => self.load(c, dst, src, len)?,
            Instr::Store { dst, src, len, .. } => self.store(c, dst, src, len)?,
            Instr::Copy { dst, src, len } => self.copy(c, dst, src, len)?,
            Instr::Fill { dst, len, value } => self.fill(c, dst, len, value)?,
            Instr::Send { to, dst, src, len, .. } => self.send(c, to as usize, dst, src, len)?,
            Instr::XbarConfig { group, .. } => self.xbar_config(c, group, &instr)?,
            Instr::AdcStep { group, column_group, step } => {
                self.adc_step(c, group, column_group, step)?
            }
            Instr::XbarLoad { group } => self.xbar_load(c, group)?,
            Instr::Mvm { group, src, dst, count } => self.mvm(c, group, src, dst, count)?,
            Instr::Im2col { window, src, dst, pad } => {
                self.im2col_instr(c, window, src, dst, pad)?
            }
            Instr::MaxPool { window, src, dst } => self.max_pool(c, window, src, dst)?,
            Instr::AvgPool { window, table, src, dst, zero } => {
                self.avg_pool(c, (window, table), src, dst, zero)?
            }
            Instr::ShiftAdd { dst, src, len, shift } => self.shift_add(c, dst, src, len, shift)?,
            Instr::Requant { table, src, dst, len, channel_len, first_channel } => {
                self.requant(c, table, (src, dst, len), channel_len, first_channel)?
            }
            Instr::Relu { dst, src, len, zero } => self.relu(c, dst, src, len, zero)?,
            Instr::Add { table, a, b, dst, len } => self.add(c, table, [a, b, dst], len)?,
            Instr::Transpose { table, src, dst } => self.transpose(c, table, src, dst)?,
            Instr::Lut { table, src, dst, len } => self.digital(c, table, [src, 0, dst], len)?,
            Instr::Mul { table, a, b, dst, len } => self.digital(c, table, [a, b, dst], len)?,
            Instr::Softmax { table, src, dst }
            | Instr::LayerNorm { table, src, dst }
            | Instr::Gather { table, src, dst }
            | Instr::GatherRows { table, src, dst }
            | Instr::LutPerElement { table, src, dst } => {
                self.digital(c, table, [src, 0, dst], 0)?
            }
            Instr::Matmul { table, a, b, dst } => self.digital(c, table, [a, b, dst], 0)?,
        }
        self.pc[c] += 1;
        Ok(Flow::Ran(1))
    }

    /// `recv`: consumes `len` words from core `from` when they have arrived; `false` (the core
    /// waits) until then.
    fn recv(&mut self, c: usize, from: u16, len: u32) -> bool {
        let have = self.pending.entry((c, from as usize)).or_insert(0);
        if *have < len as u64 {
            return false;
        }
        *have -= len as u64;
        true
    }

    /// Core `c` reaches `sync barrier`: when every core waits at a sync, all go on.
    fn sync(&mut self, c: usize, barrier: u32) -> Result<Flow, String> {
        self.at_sync[c] = Some(barrier);
        if self.at_sync.iter().any(|b| b.is_none()) {
            return Ok(Flow::Blocked);
        }
        if let Some((other, b)) = self
            .at_sync
            .iter()
            .enumerate()
            .find_map(|(o, &b)| (b != Some(barrier)).then_some((o, b)))
        {
            return Err(format!("barrier {barrier} meets core {other} at barrier {b:?}"));
        }
        for (pc, b) in self.pc.iter_mut().zip(&mut self.at_sync) {
            *pc += 1;
            *b = None;
        }
        Ok(Flow::Ran(self.pc.len() as u64))
    }

    /// Why core `c` waits (for a deadlock message).
    pub fn waiting(&self, c: usize) -> String {
        match self.s.cores[c].code.get(self.pc[c]) {
            Some(Instr::Recv { from, len }) => format!(
                "recv waits for {len} words from core {from}, {} arrived",
                self.pending.get(&(c, *from as usize)).copied().unwrap_or(0)
            ),
            Some(Instr::Sync { barrier }) => format!("sync waits at barrier {barrier}"),
            Some(i) => i.mnemonic().to_string(),
            None => "end of code".into(),
        }
    }

    /// `start .. start + len` of core `c`'s scratchpad, if it lies inside.
    fn local(&self, c: usize, start: u32, len: u64, what: &str) -> Result<Range<usize>, String> {
        span(start, len, self.scratch[c].len(), what)
    }

    fn host(&mut self, op: u16) -> Result<(), String> {
        let s = self.s;
        let h = &s.hosts[entry("host", s.hosts.len(), op)?];
        host::run(h, &mut self.global)
    }

    fn load(&mut self, c: usize, dst: u32, src: u32, len: u32) -> Result<(), String> {
        let d = self.local(c, dst, len as u64, "destination")?;
        let r = span(src, len as u64, self.global.len(), "source")?;
        self.scratch[c][d].copy_from_slice(&self.global[r]);
        Ok(())
    }

    fn store(&mut self, c: usize, dst: u32, src: u32, len: u32) -> Result<(), String> {
        let d = span(dst, len as u64, self.global.len(), "destination")?;
        let r = self.local(c, src, len as u64, "source")?;
        self.global[d].copy_from_slice(&self.scratch[c][r]);
        Ok(())
    }

    fn copy(&mut self, c: usize, dst: u32, src: u32, len: u32) -> Result<(), String> {
        let d = self.local(c, dst, len as u64, "destination")?;
        let r = self.local(c, src, len as u64, "source")?;
        self.scratch[c].copy_within(r, d.start);
        Ok(())
    }

    fn fill(&mut self, c: usize, dst: u32, len: u32, value: i32) -> Result<(), String> {
        let d = self.local(c, dst, len as u64, "destination")?;
        self.scratch[c][d].fill(value as i64);
        Ok(())
    }

    /// `send`: the words land in core `to`'s scratchpad and count as arrived for its `recv`.
    fn send(&mut self, c: usize, to: usize, dst: u32, src: u32, len: u32) -> Result<(), String> {
        if to == c || to >= self.scratch.len() {
            return Err(format!("core {to} cannot receive from core {c}"));
        }
        let r = self.local(c, src, len as u64, "source")?;
        let d = self.local(to, dst, len as u64, "destination")?;
        let words = self.scratch[c][r].to_vec();
        self.scratch[to][d].copy_from_slice(&words);
        *self.pending.entry((to, c)).or_insert(0) += len as u64;
        Ok(())
    }

    fn xbar_config(&mut self, c: usize, group: u16, instr: &Instr) -> Result<(), String> {
        let g = self.own_group(c, group)?;
        let (x, z) = xbar_crossbar(instr).ok_or("not a configuration")?;
        let column_groups = column_groups(&x, g);
        self.groups[group as usize] = Some(GroupConfig { x, z, column_groups, prepared: None });
        Ok(())
    }

    fn adc_step(
        &mut self,
        c: usize,
        group: u16,
        column_group: u16,
        step: u8,
    ) -> Result<(), String> {
        self.own_group(c, group)?;
        let cfg = self.groups[group as usize]
            .as_mut()
            .ok_or_else(|| format!("group {group} has no xbar_config"))?;
        cfg.set_step(column_group as usize, step as u32)
    }

    /// Layer-serial: the group's arrays hold its weights from now on.
    fn xbar_load(&mut self, c: usize, group: u16) -> Result<(), String> {
        let g = self.own_group(c, group)?;
        self.loaded[group as usize] = true;
        for &a in &g.arrays {
            self.owner.insert(a, group);
        }
        Ok(())
    }

    /// `mvm`: the group's prepared weights on `count` vectors, read through a recorded
    /// `im2col` when one covers them (with input planes kept for the next `mvm` on them).
    fn mvm(&mut self, c: usize, group: u16, src: u32, dst: u32, count: u32) -> Result<(), String> {
        let s = self.s;
        let g = self.own_group(c, group)?;
        if s.schedule == cimc_backends::stream::Schedule::LayerSerial {
            let other = g.arrays.iter().find_map(|a| self.owner.get(a).filter(|&&h| h != group));
            if !self.loaded[group as usize] || other.is_some() {
                return Err(format!("group {group} is not programmed on its arrays"));
            }
        }
        let cfg = self.groups[group as usize]
            .as_mut()
            .ok_or_else(|| format!("group {group} has no xbar_config"))?;
        let p = matrix::prepared(self.cache, group, g, cfg)?;
        if count == 0 {
            return Ok(());
        }
        let size = self.scratch[c].len();
        let (src, dst, count) = (src as usize, dst as usize, count as usize);
        let (input, output) = mvm_ranges(g, src, dst, count, size)?;
        let view = self.mvm_view(c, g, src, count, input.clone(), output.clone())?;
        self.forget_planes(c, &[output]);
        let planes = match (&*p, view) {
            (matrix::Prepared::Crossbar(pc), Some(at)) => Some(self.planes_for(c, at, count, pc)?),
            _ => None,
        };
        let mem = &self.scratch[c];
        let source = match view {
            Some(at) => Source::Window(at.view(s, mem)),
            None => Source::Words {
                x: mem,
                base: input.start,
                in_stride: g.in_stride as usize,
                group_stride: g.group_stride as usize,
            },
        };
        let acc = matrix::mvm(&p, g, &source, planes.as_deref(), count)?;
        acc.write(&mut self.scratch[c], dst, g.out_stride as usize)
    }

    /// `im2col`, recorded ([`super::lazy`]) or written.
    fn im2col_instr(
        &mut self,
        c: usize,
        window: u16,
        src: u32,
        dst: u32,
        pad: i32,
    ) -> Result<(), String> {
        let wi = entry("window", self.s.windows.len(), window)?;
        let w = &self.s.windows[wi];
        let r = self.local(c, src, w.source_len(), "source image")?;
        let d = self.local(c, dst, w.im2col_len(), "im2col vectors")?;
        self.im2col(c, wi, r, d, pad as i64)
    }

    fn max_pool(&mut self, c: usize, window: u16, src: u32, dst: u32) -> Result<(), String> {
        let s = self.s;
        let w = &s.windows[entry("window", s.windows.len(), window)?];
        let r = self.local(c, src, w.source_len(), "source image")?;
        let d = self.local(c, dst, w.pool_len(), "pooled codes")?;
        let y = window::max_pool(w, &self.scratch[c][r])?;
        put(&mut self.scratch[c], &d, y);
        Ok(())
    }

    fn avg_pool(
        &mut self,
        c: usize,
        (window, table): (u16, u16),
        src: u32,
        dst: u32,
        zero: i32,
    ) -> Result<(), String> {
        let s = self.s;
        let w = &s.windows[entry("window", s.windows.len(), window)?];
        let rq = &s.requants[entry("requant", s.requants.len(), table)?];
        let r = self.local(c, src, w.source_len(), "source image")?;
        let d = self.local(c, dst, w.pool_len(), "pooled codes")?;
        let y = window::avg_pool(w, rq, zero, &self.scratch[c][r])?;
        put(&mut self.scratch[c], &d, y.into_iter().map(i64::from));
        Ok(())
    }

    fn shift_add(
        &mut self,
        c: usize,
        dst: u32,
        src: u32,
        len: u32,
        shift: u8,
    ) -> Result<(), String> {
        let d = self.local(c, dst, len as u64, "destination")?;
        let r = self.local(c, src, len as u64, "source")?;
        with_src_dst(&mut self.scratch[c], r, d, |add, out| {
            for (o, &v) in out.iter_mut().zip(add) {
                let sum = *o as i128 + ((v as i128) << shift);
                *o = i64::try_from(sum)
                    .map_err(|_| format!("{o} + ({v} << {shift}) overflows i64"))?;
            }
            Ok::<(), String>(())
        })
    }

    fn requant(
        &mut self,
        c: usize,
        table: u16,
        (src, dst, len): (u32, u32, u32),
        channel_len: u32,
        first_channel: u32,
    ) -> Result<(), String> {
        let s = self.s;
        let e = &s.requants[entry("requant", s.requants.len(), table)?];
        let r = self.local(c, src, len as u64, "source")?;
        let d = self.local(c, dst, len as u64, "destination")?;
        let (cl, first) = (channel_len as usize, first_channel as usize);
        let mem = &mut self.scratch[c];
        if r == d {
            vector::requant(e, None, &mut mem[d], cl, first)
        } else {
            with_src_dst(mem, r, d, |x, out| vector::requant(e, Some(x), out, cl, first))
        }
    }

    fn relu(&mut self, c: usize, dst: u32, src: u32, len: u32, zero: i32) -> Result<(), String> {
        let r = self.local(c, src, len as u64, "source")?;
        let d = self.local(c, dst, len as u64, "destination")?;
        map_words(&mut self.scratch[c], r, d, |_, x| Ok(x.max(zero as i64)))
    }

    fn add(&mut self, c: usize, table: u16, [a, b, dst]: [u32; 3], len: u32) -> Result<(), String> {
        let s = self.s;
        let e = &s.adds[entry("add", s.adds.len(), table)?];
        let ra = self.local(c, a, len as u64, "first operand")?;
        let rb = self.local(c, b, len as u64, "second operand")?;
        let d = self.local(c, dst, len as u64, "destination")?;
        let mem = &self.scratch[c];
        let y = mem[ra]
            .iter()
            .zip(&mem[rb])
            .map(|(&qa, &qb)| add_codes(e, qa, qb))
            .collect::<Result<Vec<i64>, String>>()?;
        put(&mut self.scratch[c], &d, y);
        Ok(())
    }

    fn transpose(&mut self, c: usize, table: u16, src: u32, dst: u32) -> Result<(), String> {
        let s = self.s;
        let p = &s.perms[entry("permutation", s.perms.len(), table)?];
        let r = self.local(c, src, p.len(), "source")?;
        let d = self.local(c, dst, p.len(), "destination")?;
        with_src_dst(&mut self.scratch[c], r, d, |x, out| vector::transpose(p, x, out))
    }

    /// An instruction with a digital entry ([`digital`]): its operands read (copied) before
    /// its result is written. `len` is the instruction's length for `lut` and `mul`; the other
    /// instructions take their lengths from the entry.
    fn digital(
        &mut self,
        c: usize,
        table: u16,
        [a, b, dst]: [u32; 3],
        len: u32,
    ) -> Result<(), String> {
        let s = self.s;
        let e = &s.digital[entry("digital", s.digital.len(), table)?];
        let (read, written) = e.lengths().unwrap_or((len as u64, len as u64));
        let x = self.scratch[c][self.local(c, a, read, "source")?].to_vec();
        let d = self.local(c, dst, written, "destination")?;
        let mut out = vec![0i64; d.len()];
        match e {
            cimc_backends::stream::DigitalEntry::Lut { .. } => digital::lut(e, &x, &mut out)?,
            cimc_backends::stream::DigitalEntry::Mul { .. } => {
                let y = &self.scratch[c][self.local(c, b, len as u64, "second operand")?];
                digital::mul(e, &x, y, &mut out)?
            }
            cimc_backends::stream::DigitalEntry::MatMul { b_shape, .. } => {
                let b_len = b_shape.iter().map(|&v| v as u64).product();
                let y = &self.scratch[c][self.local(c, b, b_len, "second operand")?];
                digital::matmul(e, &x, y, &mut out)?
            }
            _ => digital::tensor_op(e, &x, &mut out)?,
        }
        put(&mut self.scratch[c], &d, out);
        Ok(())
    }

    /// Group `group`, which must belong to core `c`.
    fn own_group(
        &self,
        c: usize,
        group: u16,
    ) -> Result<&'a cimc_backends::stream::GroupEntry, String> {
        let s: &'a Stream = self.s;
        let g =
            s.groups.get(group as usize).ok_or_else(|| format!("group {group} does not exist"))?;
        if g.core as usize != c {
            return Err(format!("group {group} belongs to core {}", g.core));
        }
        Ok(g)
    }
}

/// The index of entry `i` of a table of `len` entries named `name`, if it exists.
fn entry(name: &str, len: usize, i: u16) -> Result<usize, String> {
    if (i as usize) < len {
        Ok(i as usize)
    } else {
        Err(format!("{name} entry {i} does not exist"))
    }
}

/// `add` on one pair of codes, as the program's Add step: each operand minus its zero point,
/// shifted left by the headroom and rescaled to i32 (one rounding each), then the sum
/// requantized.
fn add_codes(e: &AddEntry, qa: i64, qb: i64) -> Result<i64, String> {
    let rescale = |q: i64, z: i32, m| -> Result<i64, String> {
        let shifted = q
            .checked_sub(z as i64)
            .and_then(|d| d.checked_mul(1i64.checked_shl(e.headroom).filter(|&f| f > 0)?))
            .ok_or_else(|| format!("({q} − {z}) << {} overflows i64", e.headroom))?;
        Ok(requantize(shifted, m, 0, i32::MIN, i32::MAX) as i64)
    };
    let sum = rescale(qa, e.a_zero_point, e.a_mult)? + rescale(qb, e.b_zero_point, e.b_mult)?;
    Ok(requantize(sum, e.mult, e.zero_point, e.lo, e.hi) as i64)
}
