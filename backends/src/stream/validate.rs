//! Static validation of a stream (see [`super::Stream::validate`]).
//!
//! The code has no branches, so everything an executor relies on can be checked by walking each
//! core's instructions once, in order: address ranges (computed in u128, so that no sum
//! overflows), table indices, group ownership, the configuration state of every group and, in a
//! layer-serial stream, which group each array holds. Then across cores: the barrier sequences
//! and the words sent between every ordered pair of cores. Tables are checked entry by entry
//! first ([`tables`]). Nothing here panics, whatever the stream holds.

mod tables;

use super::{GroupEntry, Schedule, Stream, WindowEntry};
use crate::error::{BackendError, Result};
use crate::isa::Instr;
use crate::program::Crossbar;
use cimc_ir::{CrossbarGeometry, WeightEncoding};
use std::collections::{BTreeMap, HashMap};
use tables::Check;

fn fail(msg: String) -> BackendError {
    BackendError::Format(msg)
}

/// The [`Crossbar`] an `xbar_config` sets (one ADC step for the layer) and its input zero
/// point `z_x`; `None` for another instruction.
pub fn xbar_crossbar(i: &Instr) -> Option<(Crossbar, i32)> {
    let Instr::XbarConfig {
        rows,
        cols,
        input_bits,
        dac_bits,
        cell_bits,
        weight_bits,
        magnitude_bits,
        encoding,
        adc_bits,
        adc_step,
        input_min,
        input_zero,
        ..
    } = *i
    else {
        return None;
    };
    let x = Crossbar {
        geometry: CrossbarGeometry {
            encoding,
            rows: rows as usize,
            cols: cols as usize,
            cell_bits: cell_bits as u32,
            dac_bits: dac_bits as u32,
            adc_bits: adc_bits as u32,
        },
        weight_bits: weight_bits as u32,
        magnitude_bits: magnitude_bits as u32,
        input_bits: input_bits as u32,
        input_min,
        adc_step: vec![adc_step as u32],
        arrays: vec![],
    };
    Some((x, input_zero))
}

/// The column groups of group `g` under the numerics `x` (what `adc_step` numbers), as
/// `Crossbar::column_group_of` numbers them with `n / conv_groups` outputs per conv group.
pub fn column_groups(x: &Crossbar, g: &GroupEntry) -> usize {
    let mg = (g.n / g.conv_groups.max(1)) as usize;
    match g.n.checked_sub(1) {
        Some(last) => x.column_group_of(last as usize, mg) + 1,
        None => 0,
    }
}

/// Most words the memories of a stream may declare in all (global memory and every core's
/// scratchpad): 2^29 words, 4 GiB of the simulator's 8-byte words, far above what the emitter
/// writes for a CNN. A text stream declaring a 2^32-word scratchpad is refused when it is read,
/// not when the simulator fails to allocate it.
pub const MAX_MEMORY_WORDS: u64 = 1 << 29;

/// A core may not declare more scratchpad than the target it was emitted for has: every
/// word holds at least one byte (a code), so a core of more words than the target's
/// `core.scratchpad_kib · 1024` bytes cannot fit it. Streams that record only a stamp carry no
/// capacity and are not checked.
fn check_scratch_capacity(s: &Stream) -> Result<()> {
    let Some(crate::target::TargetRecord::Full(t)) = &s.target else { return Ok(()) };
    let cap = (t.core.scratchpad_kib as u64).saturating_mul(1024);
    match s.cores.iter().position(|c| c.scratch_words as u64 > cap) {
        Some(i) => Err(fail(format!(
            "core {i} declares a scratchpad of {} words; the target '{}' has {} KiB per core \
             ({cap} bytes, and every word holds at least one byte)",
            s.cores[i].scratch_words, t.name, t.core.scratchpad_kib
        ))),
        None => Ok(()),
    }
}

pub(super) fn validate(s: &Stream) -> Result<()> {
    if s.cores.is_empty() {
        return Err(fail("the stream has no cores".into()));
    }
    if s.cores.len() > 1 << 16 {
        return Err(fail(format!("{} cores (at most 65536 can be addressed)", s.cores.len())));
    }
    let words = s.cores.iter().fold(s.global_words as u64, |a, c| a + c.scratch_words as u64);
    if words > MAX_MEMORY_WORDS {
        return Err(fail(format!(
            "the memories declare {words} words (global memory {} words, the largest scratchpad \
             {} words), above the limit of {MAX_MEMORY_WORDS} words that a simulator can hold",
            s.global_words,
            s.cores.iter().map(|c| c.scratch_words).max().unwrap_or(0)
        )));
    }
    check_scratch_capacity(s)?;
    for (kind, list) in [("input", &s.inputs), ("output", &s.outputs)] {
        for (i, io) in list.iter().enumerate() {
            tables::io(io, s.global_words)
                .map_err(|m| fail(format!("{kind} {i} ('{}'): {m}", io.name)))?;
        }
    }
    for (i, g) in s.groups.iter().enumerate() {
        tables::group(g, s.arrays, s.cores.len(), s.layers.len())
            .map_err(|m| fail(format!("group {i}: {m}")))?;
    }
    check_array_sharing(s)?;
    let entry =
        |table: &str, i: usize, c: Check| c.map_err(|m| fail(format!("{table} entry {i}: {m}")));
    for (i, w) in s.windows.iter().enumerate() {
        entry("window", i, tables::window(w))?;
    }
    for (i, r) in s.requants.iter().enumerate() {
        entry("requant", i, tables::requant(r))?;
    }
    for (i, a) in s.adds.iter().enumerate() {
        entry("add", i, tables::add(a))?;
    }
    for (i, p) in s.perms.iter().enumerate() {
        entry("permutation", i, tables::perm(p))?;
    }
    for (i, d) in s.digital.iter().enumerate() {
        entry("digital", i, tables::digital(d))?;
    }
    for (i, h) in s.hosts.iter().enumerate() {
        let ranges = tables::host(h).map_err(|m| fail(format!("host entry {i}: {m}")))?;
        for (start, n) in ranges {
            if start as u64 + n > s.global_words as u64 {
                return Err(fail(format!(
                    "host entry {i}: global words {start}..{} lie outside the global memory ({} words)",
                    start as u64 + n,
                    s.global_words
                )));
            }
        }
    }
    // Per group: its smallest and largest weight, for the configurations' magnitude checks.
    let extremes: Vec<(i32, i32)> = s
        .groups
        .iter()
        .map(|g| {
            let lo = g.weights.iter().copied().min().unwrap_or(0);
            (lo, g.weights.iter().copied().max().unwrap_or(0))
        })
        .collect();
    let mut state = State {
        config: vec![None; s.groups.len()],
        loaded: vec![false; s.groups.len()],
        owner: HashMap::new(),
        extremes,
    };
    for c in 0..s.cores.len() {
        check_core(s, c, &mut state)?;
    }
    check_barriers(s)?;
    check_traffic(s)
}

/// Layer-serial: groups of different cores never share an array, since which group an array
/// holds is tracked core by core (an array belongs to one core). Groups of one core may share
/// an array, and so may any groups of a pipelined stream: the `tile` pass packs the blocks of
/// several layers (or conv groups) into one array when they do not overlap
/// (`docs/hardware-model.md` §1), and the group table does not say where in its arrays a group
/// lies, so cells are not checked here (the IR verifier checks them on the crossbar maps).
fn check_array_sharing(s: &Stream) -> Result<()> {
    let mut holder: HashMap<u32, usize> = HashMap::new();
    for (i, g) in s.groups.iter().enumerate() {
        for &a in &g.arrays {
            if let Some(j) = holder.insert(a, i) {
                if s.schedule == Schedule::LayerSerial && s.groups[j].core != g.core {
                    return Err(fail(format!(
                        "group {i} (core {}): array {a} also holds group {j} of core {} (an array belongs to one core)",
                        g.core, s.groups[j].core
                    )));
                }
            }
        }
    }
    Ok(())
}

/// What the walk over the code knows of the groups.
struct State {
    /// The numerics of each group (with its ADC steps per column group once an `adc_step`
    /// refines them) and its number of column groups.
    config: Vec<Option<(Crossbar, usize)>>,
    /// Layer-serial: whether the group has been programmed by an `xbar_load`...
    loaded: Vec<bool>,
    /// ...and which group each array holds since.
    owner: HashMap<u32, u16>,
    extremes: Vec<(i32, i32)>,
}

/// One instruction being checked: its errors name the core, the index and the mnemonic.
struct At<'a> {
    s: &'a Stream,
    core: usize,
    index: usize,
    instr: &'a Instr,
}

impl At<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> BackendError {
        fail(format!(
            "core {}, instruction {} ({}): {msg}",
            self.core,
            self.index,
            self.instr.mnemonic()
        ))
    }

    fn range(&self, memory: &str, size: u32, what: &str, start: u128, len: u128) -> Result<()> {
        let end = start + len;
        if end > size as u128 {
            return Err(self.err(format!(
                "{what}: words {start}..{end} lie outside the {memory} ({size} words)"
            )));
        }
        Ok(())
    }

    /// `len` words from `start` of this core's scratchpad.
    fn local(&self, what: &str, start: u32, len: u128) -> Result<()> {
        let size = self.s.cores[self.core].scratch_words;
        self.range("scratchpad", size, what, start as u128, len)
    }

    fn global(&self, what: &str, start: u32, len: u128) -> Result<()> {
        self.range("global memory", self.s.global_words, what, start as u128, len)
    }

    fn table<'t, T>(&self, name: &str, table: &'t [T], i: u16) -> Result<&'t T> {
        table.get(i as usize).ok_or_else(|| {
            self.err(format!("{name} entry {i} does not exist ({} entries)", table.len()))
        })
    }

    /// The group `g`, which must belong to this core.
    fn group(&self, g: u16) -> Result<&GroupEntry> {
        let entry = self.table("group", &self.s.groups, g)?;
        if entry.core as usize != self.core {
            return Err(self.err(format!("group {g} belongs to core {}", entry.core)));
        }
        Ok(entry)
    }

    fn other_core(&self, c: u16, role: &str) -> Result<()> {
        if c as usize >= self.s.cores.len() || c as usize == self.core {
            return Err(self
                .err(format!("{role} core {c} must be another core (0..{})", self.s.cores.len())));
        }
        Ok(())
    }
}

fn check_core(s: &Stream, c: usize, st: &mut State) -> Result<()> {
    let core = &s.cores[c];
    match core.code.iter().position(|i| matches!(i, Instr::Halt {})) {
        None => return Err(fail(format!("core {c}: no halt at the end"))),
        Some(h) if h + 1 != core.code.len() => {
            return Err(fail(format!(
                "core {c}, instruction {h} (halt): {} instruction(s) after the first halt",
                core.code.len() - h - 1
            )))
        }
        Some(_) => {}
    }
    let mut last = 0;
    for &(at, layer) in &core.marks {
        if at < last || at as usize >= core.code.len() || layer as usize >= s.layers.len() {
            return Err(fail(format!(
                "core {c}: layer mark (instruction {at}, layer {layer}) is out of order or out of range ({} instructions, {} layers)",
                core.code.len(),
                s.layers.len()
            )));
        }
        last = at;
    }
    for (index, instr) in core.code.iter().enumerate() {
        let at = At { s, core: c, index, instr };
        if let Err(BackendError::Format(m)) = instr.validate() {
            let prefix = format!("{}: ", instr.mnemonic());
            return Err(at.err(m.strip_prefix(&prefix).unwrap_or(&m)));
        }
        check_instr(&at, st)?;
    }
    Ok(())
}

fn check_instr(at: &At, st: &mut State) -> Result<()> {
    let s = at.s;
    match *at.instr {
        Instr::Halt {} | Instr::Sync { .. } => {}
        Instr::Host { op } => {
            at.table("host", &s.hosts, op)?;
        }
        Instr::Load { dst, src, len, .. } => {
            at.local("destination", dst, len as u128)?;
            at.global("source", src, len as u128)?;
        }
        Instr::Store { dst, src, len, .. } => {
            at.global("destination", dst, len as u128)?;
            at.local("source", src, len as u128)?;
        }
        Instr::Copy { dst, src, len } | Instr::ShiftAdd { dst, src, len, .. } => {
            at.local("destination", dst, len as u128)?;
            at.local("source", src, len as u128)?;
        }
        Instr::Relu { dst, src, len, .. } => {
            at.local("destination", dst, len as u128)?;
            at.local("source", src, len as u128)?;
        }
        Instr::Fill { dst, len, .. } => at.local("destination", dst, len as u128)?,
        Instr::Send { to, dst, src, len, .. } => {
            at.other_core(to, "the receiving")?;
            at.local("source", src, len as u128)?;
            let size = s.cores[to as usize].scratch_words;
            at.range(
                &format!("scratchpad of core {to}"),
                size,
                "destination",
                dst as u128,
                len as u128,
            )?;
        }
        Instr::Recv { from, .. } => at.other_core(from, "the sending")?,
        Instr::XbarConfig { group, .. } => {
            let g = at.group(group)?;
            let (x, z) = xbar_crossbar(at.instr).ok_or_else(|| at.err("not a configuration"))?;
            check_config(g, &x, z, st.extremes[group as usize]).map_err(|m| at.err(m))?;
            let n_cg = column_groups(&x, g);
            st.config[group as usize] = Some((x, n_cg));
        }
        Instr::AdcStep { group, column_group, step } => {
            at.group(group)?;
            let Some((x, n_cg)) = &mut st.config[group as usize] else {
                return Err(at.err(format!("group {group} has no xbar_config before it")));
            };
            if column_group as usize >= *n_cg {
                return Err(at.err(format!(
                    "column group {column_group} of group {group}, which has {n_cg}"
                )));
            }
            if x.adc_step.len() == 1 {
                x.adc_step = vec![x.adc_step[0]; *n_cg];
            }
            x.adc_step[column_group as usize] = step as u32;
        }
        Instr::XbarLoad { group } => {
            let g = at.group(group)?;
            st.loaded[group as usize] = true;
            for &a in &g.arrays {
                st.owner.insert(a, group);
            }
        }
        Instr::Mvm { group, src, dst, count } => {
            let g = at.group(group)?;
            if st.config[group as usize].is_none() {
                return Err(at.err(format!("group {group} has no xbar_config before it")));
            }
            if s.schedule == Schedule::LayerSerial {
                if !st.loaded[group as usize] {
                    return Err(at.err(format!(
                        "group {group} is not programmed (no xbar_load before it in a layer-serial stream)"
                    )));
                }
                if let Some((&a, &h)) = g
                    .arrays
                    .iter()
                    .find_map(|a| st.owner.get_key_value(a).filter(|(_, &h)| h != group))
                {
                    return Err(at.err(format!(
                        "array {a} of group {group} holds group {h} since its xbar_load"
                    )));
                }
            }
            if count > 0 {
                let last = (count - 1) as u128;
                let input = last * g.in_stride as u128
                    + g.in_offset as u128
                    + (g.conv_groups - 1) as u128 * g.group_stride as u128
                    + g.k as u128;
                at.local("input vectors", src, input)?;
                at.local("accumulators", dst, last * g.out_stride as u128 + g.n as u128)?;
            }
        }
        Instr::Im2col { window, src, dst, .. } => {
            let w = at.table("window", &s.windows, window)?;
            at.local("source image", src, w.source_len() as u128)?;
            at.local("im2col vectors", dst, w.im2col_len() as u128)?;
        }
        Instr::MaxPool { window, src, dst } => {
            let w = at.table("window", &s.windows, window)?;
            check_pool_windows(w, false)
                .map_err(|m| at.err(format!("window entry {window}: {m}")))?;
            at.local("source image", src, w.source_len() as u128)?;
            at.local("pooled codes", dst, w.pool_len() as u128)?;
        }
        Instr::AvgPool { window, table, src, dst, .. } => {
            let w = at.table("window", &s.windows, window)?;
            let r = at.table("requant", &s.requants, table)?;
            check_pool_windows(w, w.count_include_pad)
                .map_err(|m| at.err(format!("window entry {window}: {m}")))?;
            let counts = w.kernel[0] as u64 * w.kernel[1] as u64;
            if r.channels() != 1 && (r.channels() as u64) < counts {
                return Err(at.err(format!(
                    "requant entry {table} has {} multipliers for windows of up to {counts} positions",
                    r.channels()
                )));
            }
            if r.scale.iter().any(|&a| a != 1) || r.bias.iter().any(|&b| b != 0) {
                return Err(at.err(format!(
                    "requant entry {table} has scales other than 1 or biases other than 0"
                )));
            }
            at.local("source image", src, w.source_len() as u128)?;
            at.local("pooled codes", dst, w.pool_len() as u128)?;
        }
        Instr::Requant { table, src, dst, len, .. } => {
            at.table("requant", &s.requants, table)?;
            at.local("destination", dst, len as u128)?;
            at.local("source", src, len as u128)?;
        }
        Instr::Add { table, a, b, dst, len } => {
            at.table("add", &s.adds, table)?;
            at.local("first operand", a, len as u128)?;
            at.local("second operand", b, len as u128)?;
            at.local("destination", dst, len as u128)?;
        }
        Instr::Transpose { table, src, dst } => {
            let p = at.table("permutation", &s.perms, table)?;
            at.local("source", src, p.len() as u128)?;
            at.local("destination", dst, p.len() as u128)?;
        }
        Instr::Lut { table, src, dst, len } => {
            digital_entry(at, s, table)?;
            at.local("source", src, len as u128)?;
            at.local("destination", dst, len as u128)?;
        }
        Instr::Mul { table, a, b, dst, len } => {
            digital_entry(at, s, table)?;
            at.local("first operand", a, len as u128)?;
            at.local("second operand", b, len as u128)?;
            at.local("destination", dst, len as u128)?;
        }
        Instr::Softmax { table, src, dst }
        | Instr::LayerNorm { table, src, dst }
        | Instr::Gather { table, src, dst }
        | Instr::GatherRows { table, src, dst }
        | Instr::LutPerElement { table, src, dst } => {
            let d = digital_entry(at, s, table)?;
            let (read, written) = d.lengths().unwrap_or((0, 0));
            at.local("source", src, read as u128)?;
            at.local("destination", dst, written as u128)?;
        }
        Instr::Matmul { table, a, b, dst } => {
            let d = digital_entry(at, s, table)?;
            let super::DigitalEntry::MatMul { b_shape, .. } = d else {
                return Err(at.err("not a matmul entry"));
            };
            let (read, written) = d.lengths().unwrap_or((0, 0));
            let b_len: u128 = b_shape.iter().map(|&v| v as u128).product();
            at.local("first operand", a, read as u128)?;
            at.local("second operand", b, b_len)?;
            at.local("destination", dst, written as u128)?;
        }
    }
    Ok(())
}

/// Digital entry `table`, which must be of the instruction's kind.
fn digital_entry<'s>(at: &At, s: &'s Stream, table: u16) -> Result<&'s super::DigitalEntry> {
    let d = at.table("digital", &s.digital, table)?;
    if d.kind() != at.instr.mnemonic() {
        return Err(at.err(format!("digital entry {table} is a {} entry", d.kind())));
    }
    Ok(d)
}

/// An `xbar_config` against its group: the crossbar's own rules, the weights' width and
/// magnitudes, the padding code, and an accumulator that stays inside i64.
fn check_config(g: &GroupEntry, x: &Crossbar, z: i32, (wmin, wmax): (i32, i32)) -> Check {
    x.validate()?;
    if x.weight_bits != g.weight_bits as u32 {
        return Err(format!(
            "weight_bits {} but the group's weights have {} bits",
            x.weight_bits, g.weight_bits
        ));
    }
    let vmax = (1i64 << x.input_bits) - 1;
    if !(0..=vmax).contains(&(z as i64 - x.input_min as i64)) {
        return Err(format!(
            "the input zero point {z} (padding) minus input_min {} does not fit {} input bits",
            x.input_min, x.input_bits
        ));
    }
    let umax = (1i64 << x.magnitude_bits) - 1;
    let half = 1i64 << (x.weight_bits - 1);
    let (lo, hi) = match x.geometry.encoding {
        WeightEncoding::Differential => (-umax, umax),
        WeightEncoding::Offset | WeightEncoding::Flipped => (-half, umax - half),
    };
    for w in [wmin, wmax] {
        if !(lo..=hi).contains(&(w as i64)) {
            return Err(format!(
                "weight code {w} does not fit {} magnitude bits ({:?} encoding, weight_bits {})",
                x.magnitude_bits, x.geometry.encoding, x.weight_bits
            ));
        }
    }
    let bound = 4 * (vmax as u128 + 1) * g.k as u128 * (umax + half) as u128;
    if bound >= 1u128 << 62 {
        return Err(format!("k = {} with these code widths could overflow i64", g.k));
    }
    Ok(())
}

/// Every window a pooling instruction produces has a position inside the input (or, with
/// `include_pad`, inside input and padding), so its maximum or its count exists.
fn check_pool_windows(w: &WindowEntry, include_pad: bool) -> Check {
    if w.positions == 0 {
        return Ok(());
    }
    let (first, last) = (w.first_position as u64, w.first_position as u64 + w.positions as u64 - 1);
    let ow = w.out_width as u64;
    let (r0, r1) = (first / ow, last / ow);
    let (c0, c1) = if r0 == r1 { (first % ow, last % ow) } else { (0, ow - 1) };
    let axes = [
        ("row", r0, r1, w.height, w.kernel[0], w.strides[0], w.dilations[0], w.pads[0], w.pads[2]),
        (
            "column",
            c0,
            c1,
            w.width,
            w.kernel[1],
            w.strides[1],
            w.dilations[1],
            w.pads[1],
            w.pads[3],
        ),
    ];
    for (name, o0, o1, len, k, s, d, p0, p1) in axes {
        let (lo, hi) =
            if include_pad { (-(p0 as i128), len as i128 + p1 as i128) } else { (0, len as i128) };
        if let Some(o) = empty_window(o0..=o1, k as i128, s as i128, d as i128, p0 as i128, lo, hi)
        {
            return Err(format!("output {name} {o}: its window lies entirely in the padding"));
        }
    }
    Ok(())
}

/// The first output index in `outs` whose window `o·s − p0 + j·d` (`j < k`) has no position in
/// `lo..hi`, if any.
fn empty_window(
    outs: std::ops::RangeInclusive<u64>,
    k: i128,
    s: i128,
    d: i128,
    p0: i128,
    lo: i128,
    hi: i128,
) -> Option<u64> {
    let start = |o: u64| o as i128 * s - p0;
    let good = |o: u64| {
        let a = start(o);
        let j0 = if a >= lo { 0 } else { (lo - a + d - 1) / d };
        j0 < k && a + j0 * d < hi
    };
    if d <= hi - lo {
        // Steps no longer than the interval: the good starts are one interval
        // `lo − (k−1)·d ..= hi − 1`, and `start` increases with `o`.
        let (o0, o1) = (*outs.start(), *outs.end());
        return [o0, o1].into_iter().find(|&o| !good(o));
    }
    outs.into_iter().find(|&o| !good(o))
}

/// Every core meets the same barriers in the same order (core 0's sequence is the reference).
fn check_barriers(s: &Stream) -> Result<()> {
    let syncs = |c: usize| -> Vec<(usize, u32)> {
        s.cores[c]
            .code
            .iter()
            .enumerate()
            .filter_map(|(i, ins)| match ins {
                Instr::Sync { barrier } => Some((i, *barrier)),
                // A query for the barriers, not a facet of every instruction.
                _ => None,
            })
            .collect()
    };
    let reference = syncs(0);
    for c in 1..s.cores.len() {
        let mine = syncs(c);
        for (k, (&(i, b), &(i0, b0))) in mine.iter().zip(&reference).enumerate() {
            if b != b0 {
                return Err(fail(format!(
                    "core {c}, instruction {i} (sync): barrier {b} is its sync number {k}; core 0's (instruction {i0}) is barrier {b0}"
                )));
            }
        }
        if mine.len() != reference.len() {
            let (longer, (i, b)) = if mine.len() > reference.len() {
                (c, mine[reference.len()])
            } else {
                (0, reference[mine.len()])
            };
            return Err(fail(format!(
                "core {longer}, instruction {i} (sync): barrier {b} is never met by core {} (core {c} meets {} barriers, core 0 meets {})",
                if longer == 0 { c } else { 0 },
                mine.len(),
                reference.len()
            )));
        }
    }
    Ok(())
}

/// For every ordered pair of cores, the words sent equal the words received.
fn check_traffic(s: &Stream) -> Result<()> {
    // (from, to) → words sent, words received, the first instruction of either.
    let mut pairs: BTreeMap<(usize, usize), (u128, u128, (usize, usize, &str))> = BTreeMap::new();
    for (c, core) in s.cores.iter().enumerate() {
        for (i, ins) in core.code.iter().enumerate() {
            let (key, sent, recv) = match *ins {
                Instr::Send { to, len, .. } => ((c, to as usize), len as u128, 0),
                Instr::Recv { from, len } => ((from as usize, c), 0, len as u128),
                // A query for the traffic between cores, not a facet of every instruction.
                _ => continue,
            };
            let e = pairs.entry(key).or_insert((0, 0, (c, i, ins.mnemonic())));
            e.0 += sent;
            e.1 += recv;
        }
    }
    for ((a, b), (sent, recv, (c, i, m))) in pairs {
        if sent != recv {
            return Err(fail(format!(
                "core {c}, instruction {i} ({m}): core {a} sends {sent} words to core {b}, which receives {recv} from it"
            )));
        }
    }
    Ok(())
}
