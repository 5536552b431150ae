//! Dataflow emission of a pipelined stream (`docs/stream.md`, "Dataflow"): activations stay
//! on chip. A *stage* is a step that streams: a Conv on its crossbar group's core, or a
//! MaxPool, Add, Sub, Rescale or Affine on a core of its own. A stage computes its output in
//! bands of rows (never across an image) and sends each band, row-major (`[row][col][channel]`,
//! the crossbar's position-major order), to the scratchpads of the stages that read it; a
//! consumer holds, per input, a ring of slots, each slot the input rows one of its bands needs
//! (a conv's halo rows are sent to both slots that need them). Flow control is by credits: a
//! consumer sends one word to the producer's mailbox (word 0 of every core) for each slot it
//! frees, and the producer receives a credit before it writes a band's slot. A residual `Add`
//! gets enough slots on its early input for the producer to run ahead of the deeper path.
//!
//! Everything else (host steps, Gemm, GlobalAvgPool, Reshape...) runs as before, through global
//! memory; a stage whose output such a step reads also stores its bands there (channel-first),
//! and point-to-point tokens (one word, writer to reader) replace the barriers: a step waits for
//! a token from every other core that wrote a global buffer it reads.
//!
//! Bands are as tall as the core's scratchpad allows (`core.scratchpad_kib`, every word counted
//! at its width, as the cost report counts it), at most an eighth of the output's rows; a stage
//! that does not fit even with one row per band falls back to global memory.

use super::matrix::MatrixPlan;
use super::{elem_bytes, window_entry, Emitter};
use crate::error::Result;
use crate::isa::Instr;
use crate::program::{step_buffers, Buf, MatrixKind, MatrixStep, Step, Window};
use crate::stream::cost::ACC_BYTES;
use crate::stream::{AddEntry, PermEntry, RequantEntry, WindowEntry};
use std::collections::{BTreeMap, BTreeSet};

/// `[n, c, h, w]` of a streamed tensor.
#[derive(Clone, Copy, Debug)]
struct Geo {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
}

impl Geo {
    fn of(shape: &[usize]) -> Option<Geo> {
        match *shape {
            [n, c, h, w] if n * c * h * w > 0 => Some(Geo { n, c, h, w }),
            _ => None,
        }
    }

    /// Words of one row in the row-major layout.
    fn row(&self) -> usize {
        self.c * self.w
    }
}

/// The vertical extent of a window: kernel, stride, dilation, top padding.
#[derive(Clone, Copy, Debug)]
struct VWin {
    k: usize,
    s: usize,
    d: usize,
    top: usize,
}

impl VWin {
    fn of(w: &Window) -> Option<VWin> {
        Some(VWin {
            k: *w.kernel.first()?,
            s: *w.strides.first()?,
            d: *w.dilations.first()?,
            top: *w.pads.first()?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Conv,
    MaxPool,
    Add,
    Sub,
    Requant,
}

/// Where a stage's input comes from.
#[derive(Clone, Copy, Debug)]
enum Input {
    Edge(usize),
    Global(Buf),
}

#[derive(Debug)]
pub(super) struct Stage {
    pub(super) core: u16,
    kind: Kind,
    out: Buf,
    geo: Geo,
    /// Output bands, as rows `n·h + row` of the output, never across an image.
    bands: Vec<(usize, usize)>,
    inputs: Vec<Input>,
    /// The rows of each input each band needs (same numbering, the input's height).
    need: Vec<Vec<(usize, usize)>>,
    outs: Vec<usize>,
    to_global: bool,
    /// Conv: output positions per `im2col` chunk.
    chunk: usize,
}

/// A producer stage's tensor flowing into a consumer stage's ring of slots.
#[derive(Debug)]
struct Edge {
    buf: Buf,
    from: usize,
    to: usize,
    geo: Geo,
    slots: usize,
    slot_words: usize,
    base: u32,
    /// The rows each consumer band needs.
    need: Vec<(usize, usize)>,
    /// `(producer band, consumer band, rows a..b)` in the order the producer sends them.
    pieces: Vec<(usize, usize, usize, usize)>,
    /// Per piece: whether it is the first of its consumer band (a credit precedes it).
    first: Vec<bool>,
    /// Per consumer band: words to receive before it runs.
    recv: Vec<u64>,
}

/// The dataflow plan of a stream.
pub(super) struct Dataflow {
    pub(super) stages: Vec<Option<Stage>>,
    edges: Vec<Edge>,
    /// Words reserved at the bottom of each core's scratchpad (mailbox, rings).
    pub(super) reserved: Vec<u64>,
    /// Each ring: its core, first word, words and the bytes of its values (footprints).
    pub(super) rings: Vec<(u16, u64, u64, u8)>,
    /// Per step: its cores, the global regions (roots) it reads and those it writes.
    cores: Vec<Vec<u16>>,
    reads: Vec<Vec<Buf>>,
    writes: Vec<Vec<Buf>>,
    /// Per root region: the cores that read it from global memory.
    readers: BTreeMap<Buf, BTreeSet<u16>>,
    /// Per root region: the cores that write it.
    writers: BTreeMap<Buf, Vec<u16>>,
    received: BTreeSet<(u16, Buf)>,
    /// Why each tensor that goes through global memory does (reports).
    pub(super) spills: Vec<String>,
}

/// The mailbox: credits and tokens land in word 0 of every core, which nothing reads.
const MAILBOX: u32 = 0;

/// Output bands of `b` rows per image.
fn bands_of(g: Geo, b: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for n in 0..g.n {
        let mut r = 0;
        while r < g.h {
            let e = (r + b).min(g.h);
            v.push((n * g.h + r, n * g.h + e));
            r = e;
        }
    }
    v
}

/// Input rows a band needs through a vertical window (`None` when a band reads only padding).
fn window_need(
    bands: &[(usize, usize)],
    out_h: usize,
    in_h: usize,
    w: VWin,
) -> Option<Vec<(usize, usize)>> {
    let eff = (w.k - 1) * w.d + 1;
    bands
        .iter()
        .map(|&(r0, r1)| {
            let n = r0 / out_h;
            let (o0, o1) = (r0 - n * out_h, r1 - n * out_h);
            let lo = (o0 * w.s).saturating_sub(w.top);
            let hi = ((o1 - 1) * w.s + eff).saturating_sub(w.top).min(in_h);
            (hi > lo).then_some((n * in_h + lo, n * in_h + hi))
        })
        .collect()
}

/// Pieces of an edge: each producer band's rows that each consumer band needs, in the
/// producer's order (bands, then consumer bands ascending), with the first piece of each
/// consumer band marked and the words each consumer band receives.
fn pieces(
    prod: &[(usize, usize)],
    need: &[(usize, usize)],
    row: usize,
) -> (Vec<(usize, usize, usize, usize)>, Vec<bool>, Vec<u64>) {
    let mut v = Vec::new();
    let mut first = Vec::new();
    let mut seen = vec![false; need.len()];
    let mut last_end = vec![0u64; need.len()];
    let mut total = 0u64;
    let mut start = 0usize;
    for (j, &(a, b)) in prod.iter().enumerate() {
        while start < need.len() && need[start].1 <= a {
            start += 1;
        }
        for (i, &(lo, hi)) in need.iter().enumerate().skip(start) {
            if lo >= b {
                break;
            }
            let (x, y) = (a.max(lo), b.min(hi));
            if y > x {
                v.push((j, i, x, y));
                first.push(!seen[i]);
                seen[i] = true;
                total += ((y - x) * row) as u64;
                last_end[i] = total;
            }
        }
    }
    let mut recv = Vec::with_capacity(need.len());
    let mut got = 0u64;
    for &e in &last_end {
        let e = e.max(got);
        recv.push(e - got);
        got = e;
    }
    (v, first, recv)
}

/// The fewest slots with which the producer never waits for a slot that only its own later
/// pieces can free: band `i`'s first piece needs band `i − slots` complete.
fn min_slots(pieces: &[(usize, usize, usize, usize)], n: usize) -> usize {
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (p, &(_, i, _, _)) in pieces.iter().enumerate() {
        first[i] = first[i].min(p);
        last[i] = p;
    }
    let (mut slots, mut done) = (1, 0);
    for i in 0..n {
        while done < n && last[done] < first[i] {
            done += 1;
        }
        slots = slots.max((i + 1).saturating_sub(done));
    }
    slots
}

/// A stage being planned: what `plan_stage` needs to know of the step.
struct Candidate {
    kind: Kind,
    out: Buf,
    geo: Geo,
    ins: Vec<Buf>,
    /// Conv and pooling: the vertical window and the input's geometry.
    win: Option<(VWin, Geo)>,
    /// Conv: im2col words per position (`g·k`) and outputs `m`.
    conv: Option<(usize, usize)>,
}

impl Emitter<'_> {
    /// The step as a stage candidate, when its kind and shapes allow streaming.
    fn candidate(&self, s: &Step, unit: Option<&MatrixPlan>) -> Option<Candidate> {
        let geo = |b: Buf| Geo::of(&self.p.buffers[b].shape);
        let bufs = step_buffers(s);
        let (out, ins) = bufs.split_last()?;
        let g = geo(*out)?;
        let same = |b: &Buf| self.p.buffers[*b].shape == self.p.buffers[*out].shape;
        let (kind, win, conv) = match s {
            Step::Conv { input, window, .. } => {
                let plan = unit?;
                if plan.replicas.len() != 1 || plan.replicas[0].len() != 1 {
                    return None;
                }
                let gi = geo(*input)?;
                (
                    Kind::Conv,
                    Some((VWin::of(window)?, gi)),
                    Some((plan.g * plan.k, plan.g * plan.mg)),
                )
            }
            Step::MaxPool { input, window, .. } => {
                (Kind::MaxPool, Some((VWin::of(window)?, geo(*input)?)), None)
            }
            Step::Add { a, b, .. } if a != b && same(a) && same(b) => (Kind::Add, None, None),
            Step::Sub { a, b, .. } if a != b && same(a) && same(b) => (Kind::Sub, None, None),
            Step::Rescale { input, .. } | Step::Affine { input, .. } if same(input) => {
                (Kind::Requant, None, None)
            }
            _ => return None,
        };
        Some(Candidate { kind, out: *out, geo: g, ins: ins.to_vec(), win, conv })
    }

    /// Rows of `x` that must have been produced (whole bands of every stage on the way) for
    /// rows `0..r` of `t` to be computed; `None` when `t` does not derive from `x` by stages.
    fn reach(df: &Dataflow, producer: &[Option<usize>], x: Buf, t: Buf, r: usize) -> Option<usize> {
        if t == x {
            return Some(r);
        }
        let st = df.stages[producer[t]?].as_ref()?;
        let bi = st.bands.iter().position(|&(a, b)| a < r && r <= b)?;
        let mut best: Option<usize> = None;
        for (k, inp) in st.inputs.iter().enumerate() {
            if let Input::Edge(e) = inp {
                let hi = st.need[k][bi].1;
                if let Some(v) = Self::reach(df, producer, x, df.edges[*e].buf, hi) {
                    best = Some(best.map_or(v, |b| b.max(v)));
                }
            }
        }
        best
    }

    /// Slots the ring of input `k` of a multi-input stage needs so that the producer of that
    /// input can run ahead while the other inputs' deeper paths catch up (1 at least).
    fn lag_slots(
        df: &Dataflow,
        producer: &[Option<usize>],
        ins: &[Buf],
        k: usize,
        need: &[Vec<(usize, usize)>],
    ) -> usize {
        let x = ins[k];
        let Some(px) = producer[x].and_then(|p| df.stages[p].as_ref()) else { return 1 };
        let mut slots = 1;
        for (o, &y) in ins.iter().enumerate() {
            if o == k {
                continue;
            }
            for i in 0..need[k].len() {
                let Some(r) = Self::reach(df, producer, x, y, need[o][i].1) else { continue };
                // The producer of x completes the band holding row r − 1 and sends it whole,
                // into the slots of every band that needs its rows, while band i waits.
                let end = px.bands.iter().find(|b| b.0 < r && r <= b.1).map_or(r, |b| b.1);
                let last = need[k].iter().rposition(|n| n.0 < end).unwrap_or(i).max(i);
                slots = slots.max(last - i + 1);
            }
        }
        slots
    }

    /// Plans the dataflow of a pipelined stream: stages, bands, rings, cores. `None` when no
    /// step streams or the chip lacks the cores (the stream is then emitted as before).
    pub(super) fn plan_dataflow(
        &mut self,
        units: &mut [Option<MatrixPlan>],
    ) -> Result<Option<Dataflow>> {
        let n_steps = self.p.steps.len();
        let cap = (self.t.core.scratchpad_kib as u64).saturating_mul(1024);
        let mut df = Dataflow {
            stages: (0..n_steps).map(|_| None).collect(),
            edges: Vec::new(),
            reserved: Vec::new(),
            rings: Vec::new(),
            cores: vec![Vec::new(); n_steps],
            reads: vec![Vec::new(); n_steps],
            writes: vec![Vec::new(); n_steps],
            readers: BTreeMap::new(),
            writers: BTreeMap::new(),
            received: BTreeSet::new(),
            spills: Vec::new(),
        };
        let mut producer: Vec<Option<usize>> = vec![None; self.p.buffers.len()];
        // The buffers each buffer derives from, through any steps.
        let mut ancestors: Vec<BTreeSet<Buf>> = vec![BTreeSet::new(); self.p.buffers.len()];
        for s in &self.p.steps {
            let bufs = step_buffers(s);
            if let Some((&out, ins)) = bufs.split_last() {
                let mut a = BTreeSet::new();
                for &i in ins {
                    a.insert(i);
                    a.extend(ancestors[i].iter().copied());
                }
                ancestors[out] = a;
            }
        }
        for (si, s) in self.p.steps.iter().enumerate() {
            let Some(c) = self.candidate(s, units[si].as_ref()) else { continue };
            let streamed: Vec<bool> = c.ins.iter().map(|&b| producer[b].is_some()).collect();
            if c.kind != Kind::Conv && !streamed.iter().all(|&x| x) {
                continue;
            }
            // Inputs that meet after a path through global memory: the early one's producer
            // would have to finish before the other path can start, which no ring allows.
            let meets_via_global = c.ins.iter().any(|&x| {
                c.ins.iter().any(|&y| {
                    x != y
                        && ancestors[y].contains(&x)
                        && Self::reach(&df, &producer, x, y, 1).is_none()
                })
            });
            if meets_via_global {
                df.spills.push(format!(
                    "{} ({}): does not stream, its inputs meet after a path through global memory",
                    self.p.buffers[c.out].name, self.p.origins[si]
                ));
                continue;
            }
            let Some((stage, edges)) = self.plan_stage(&df, &producer, &c, &streamed, cap) else {
                df.spills.push(format!(
                    "{} ({}): does not stream, its band of one row does not fit a {} KiB scratchpad",
                    self.p.buffers[c.out].name,
                    self.p.origins[si],
                    self.t.core.scratchpad_kib
                ));
                continue;
            };
            let first_edge = df.edges.len();
            let mut stage = stage;
            for e in edges {
                let idx = df.edges.len();
                let from = e.from;
                df.edges.push(Edge { to: si, ..e });
                if let Some(Some(p)) = df.stages.get_mut(from) {
                    p.outs.push(idx);
                }
            }
            let mut next = first_edge;
            for inp in stage.inputs.iter_mut() {
                if let Input::Edge(e) = inp {
                    *e = next;
                    next += 1;
                }
            }
            producer[c.out] = Some(si);
            df.stages[si] = Some(stage);
        }
        if df.stages.iter().all(|s| s.is_none()) {
            return Ok(None);
        }
        if !self.place_stages(&mut df, units) {
            return Ok(None);
        }
        // Rings: from word 1 of each consumer core, in edge order.
        let n_cores = self.core_count(&df);
        df.reserved = vec![1; n_cores];
        for e in df.edges.iter_mut() {
            let Some(st) = df.stages[e.to].as_ref() else { continue };
            let c = st.core as usize;
            e.base = df.reserved[c] as u32;
            let words = (e.slots * e.slot_words) as u64;
            let width = elem_bytes(self.p.buffers[e.buf].elem);
            df.rings.push((st.core, df.reserved[c], words, width));
            df.reserved[c] += words;
        }
        self.plan_tokens(&mut df, units);
        Ok(Some(df))
    }

    /// Bands, input edges and the ring words of one candidate stage, or `None` when it does not
    /// fit the scratchpad even with one row per band.
    fn plan_stage(
        &self,
        df: &Dataflow,
        producer: &[Option<usize>],
        c: &Candidate,
        streamed: &[bool],
        cap: u64,
    ) -> Option<(Stage, Vec<Edge>)> {
        let g = c.geo;
        let eb_out = elem_bytes(self.p.buffers[c.out].elem) as u64;
        let top = g.h.div_ceil(8).max(1);
        for b in (1..=top).rev() {
            let bands = bands_of(g, b);
            let need: Vec<Vec<(usize, usize)>> = match c.win {
                Some((w, gi)) => vec![window_need(&bands, g.h, gi.h, w)?],
                None => c.ins.iter().map(|_| bands.clone()).collect(),
            };
            let in_geo = |_: usize| c.win.map_or(g, |w| w.1);
            let rw = |k: usize| need[k].iter().map(|n| n.1 - n.0).max().unwrap_or(0);
            let eb_in = |k: usize| elem_bytes(self.p.buffers[c.ins[k]].elem) as u64;
            // The pieces of each streamed input, and its slots: as many as the producer's
            // order of pieces needs (a band's first piece may come before an earlier band's
            // last), and for a multi-input stage as many as its lag needs.
            let mut cut = Vec::with_capacity(c.ins.len());
            let mut slots = Vec::with_capacity(c.ins.len());
            for k in 0..c.ins.len() {
                if !streamed[k] {
                    cut.push(None);
                    slots.push(0);
                    continue;
                }
                let pst = df.stages[producer[c.ins[k]]?].as_ref()?;
                let p = pieces(&pst.bands, &need[k], in_geo(k).row());
                let mut n = min_slots(&p.0, bands.len());
                if c.ins.len() > 1 {
                    n = n.max(Self::lag_slots(df, producer, &c.ins, k, &need));
                }
                slots.push(n.min(bands.len()));
                cut.push(Some(p));
            }
            let ring = |slots: &[usize]| -> u64 {
                (0..c.ins.len())
                    .filter(|&k| streamed[k])
                    .map(|k| (slots[k] * rw(k) * in_geo(k).row()) as u64 * eb_in(k))
                    .sum()
            };
            let out_band = (b * g.row()) as u64;
            let work = match c.kind {
                // Staging (channel-first window), accumulators, the channel-first copy for
                // global memory, one im2col vector.
                Kind::Conv => {
                    let (gk, _) = c.conv?;
                    (rw(0) * in_geo(0).row()) as u64 * eb_in(0)
                        + out_band * ACC_BYTES
                        + out_band * eb_out
                        + gk as u64
                }
                Kind::MaxPool => {
                    (rw(0) * in_geo(0).row()) as u64 * eb_in(0) + 2 * out_band * eb_out
                }
                _ => 2 * out_band * eb_out,
            };
            let fits = |slots: &[usize]| 1 + ring(slots) + work <= cap;
            if !fits(&slots) {
                continue;
            }
            // One more slot, when it fits, lets the producer run a band ahead.
            if c.ins.len() == 1 && streamed[0] && slots[0] < bands.len() {
                slots[0] += 1;
                if !fits(&slots) {
                    slots[0] -= 1;
                }
            }
            let chunk = match c.conv {
                Some((gk, _)) => {
                    let spare = cap - (1 + ring(&slots) + work) + gk as u64;
                    let by_opts = (self.opts.im2col_words / gk.max(1)).max(1);
                    (spare / gk.max(1) as u64).max(1).min(by_opts as u64).min((b * g.w) as u64)
                        as usize
                }
                None => 0,
            };
            let mut inputs = Vec::new();
            let mut edges = Vec::new();
            for (k, &buf) in c.ins.iter().enumerate() {
                if !streamed[k] {
                    inputs.push(Input::Global(buf));
                    continue;
                }
                let from = producer[buf]?;
                let geo = in_geo(k);
                let (pieces, first, recv) = cut[k].take()?;
                inputs.push(Input::Edge(usize::MAX));
                edges.push(Edge {
                    buf,
                    from,
                    to: usize::MAX,
                    geo,
                    slots: slots[k].clamp(1, bands.len()),
                    slot_words: rw(k) * geo.row(),
                    base: 0,
                    need: need[k].clone(),
                    pieces,
                    first,
                    recv,
                });
            }
            let stage = Stage {
                core: 0,
                kind: c.kind,
                out: c.out,
                geo: g,
                bands,
                inputs,
                need,
                outs: Vec::new(),
                to_global: false,
                chunk,
            };
            return Some((stage, edges));
        }
        None
    }

    /// Cores: every matrix step's groups move to arrays of cores of their own (a core runs
    /// one stage's band loop); each digital stage gets a core of its own after them. `false`
    /// when the chip has too few arrays for that.
    fn place_stages(&mut self, df: &mut Dataflow, units: &mut [Option<MatrixPlan>]) -> bool {
        let per_core = self.t.core.arrays.max(1) as u64;
        let mut next = 0u64;
        let mut moves: Vec<(u16, u64, usize)> = Vec::new();
        for plan in units.iter().flatten() {
            for rep in &plan.replicas {
                for pg in rep {
                    let len = self.groups[pg.group as usize].arrays.len();
                    moves.push((pg.group, next, len));
                    next += (len as u64).div_ceil(per_core).max(1);
                }
            }
        }
        let digital: Vec<usize> = df
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| s.kind != Kind::Conv))
            .map(|(i, _)| i)
            .collect();
        let cores = next + digital.len() as u64;
        let chip = self.t.chip.arrays as u64;
        if (chip > 0 && cores * per_core > chip.max(per_core)) || cores > u16::MAX as u64 {
            return false;
        }
        for (group, core, len) in moves {
            let g = &mut self.groups[group as usize];
            let first = core * per_core;
            g.arrays = (first..first + len as u64).map(|a| a as u32).collect();
            g.core = core as u16;
        }
        if chip == 0 {
            // A chip without a fixed count has the arrays its groups use.
            let top = self.groups.iter().flat_map(|g| g.arrays.iter().map(|&a| a + 1)).max();
            self.arrays = self.arrays.max(top.unwrap_or(0));
        }
        for plan in units.iter_mut().flatten() {
            for rep in &mut plan.replicas {
                for pg in rep.iter_mut() {
                    pg.core = self.groups[pg.group as usize].core;
                }
            }
        }
        for (si, unit) in units.iter().enumerate() {
            if let (Some(st), Some(plan)) = (df.stages[si].as_mut(), unit) {
                st.core = plan.core_of_first();
            }
        }
        for (k, si) in digital.into_iter().enumerate() {
            if let Some(st) = df.stages[si].as_mut() {
                st.core = (next + k as u64) as u16;
            }
        }
        true
    }

    pub(super) fn core_count(&self, df: &Dataflow) -> usize {
        let groups = self.groups.iter().map(|g| g.core as usize + 1).max().unwrap_or(1);
        let stages = df.stages.iter().flatten().map(|s| s.core as usize + 1).max().unwrap_or(1);
        groups.max(stages).max(1)
    }

    /// Cores, global reads and writes of every step; which stage outputs go to global memory
    /// too; the readers of every region.
    fn plan_tokens(&self, df: &mut Dataflow, units: &[Option<MatrixPlan>]) {
        let p = self.p;
        let mut root: Vec<Buf> = (0..p.buffers.len()).collect();
        for s in &p.steps {
            if let Step::Reshape { input, output } = s {
                root[*output] = root[*input];
            }
        }
        let mut digital_core = 0u16;
        for (si, s) in p.steps.iter().enumerate() {
            let bufs = step_buffers(s);
            let Some((&out, ins)) = bufs.split_last() else { continue };
            if matches!(s, Step::Reshape { .. }) {
                continue;
            }
            if let Some(st) = &df.stages[si] {
                df.cores[si] = vec![st.core];
                for inp in &st.inputs {
                    if let Input::Global(b) = inp {
                        df.reads[si].push(root[*b]);
                    }
                }
                if let Some(plan) = &units[si] {
                    digital_core = plan.core_of_first();
                }
                continue;
            }
            df.cores[si] = match &units[si] {
                Some(plan) => {
                    digital_core = plan.core_of_first();
                    plan.replicas.iter().filter_map(|r| r.first().map(|g| g.core)).collect()
                }
                None => vec![digital_core],
            };
            df.reads[si] = ins.iter().map(|&b| root[b]).collect();
            df.writes[si] = vec![root[out]];
        }
        // Stage outputs that a non-stage step or the caller reads go to global memory too.
        let mut wanted: BTreeSet<Buf> = p.outputs.iter().map(|&b| root[b]).collect();
        for r in df.reads.iter().flatten() {
            wanted.insert(*r);
        }
        for (si, st) in df.stages.iter_mut().enumerate() {
            if let Some(st) = st {
                if wanted.contains(&st.out) {
                    st.to_global = true;
                    df.writes[si] = vec![st.out];
                    df.spills.push(format!(
                        "{} ({}): read by a step that does not stream, stored to global memory",
                        p.buffers[st.out].name, p.origins[si]
                    ));
                }
            }
        }
        for si in 0..p.steps.len() {
            for &w in &df.writes[si] {
                df.writers.entry(w).or_default().extend(df.cores[si].iter().copied());
            }
            for &r in &df.reads[si] {
                df.readers.entry(r).or_default().extend(df.cores[si].iter().copied());
            }
        }
        for (si, s) in p.steps.iter().enumerate() {
            if df.stages[si].is_none()
                && !matches!(s, Step::Reshape { .. })
                && !df.writes[si].is_empty()
            {
                let b = df.writes[si][0];
                if df.readers.contains_key(&b) {
                    df.spills.push(format!(
                        "{} ({}): written by a step that does not stream ({}: {})",
                        p.buffers[b].name,
                        p.origins[si],
                        s.name(),
                        Self::why_not_streamed(s, units[si].as_ref())
                    ));
                }
            }
        }
    }

    /// Why step `s` (with its matrix plan, if any) is not a stage, for the notes.
    fn why_not_streamed(s: &Step, unit: Option<&MatrixPlan>) -> String {
        match (s, unit) {
            (Step::Conv { .. }, Some(plan)) if plan.replicas.len() > 1 => format!(
                "replicated on {} groups; a replicated layer does not stream yet",
                plan.replicas.len()
            ),
            (Step::Conv { .. }, Some(plan)) if plan.replicas.iter().any(|r| r.len() > 1) => {
                "its weights are cut into parts; such a layer does not stream yet".into()
            }
            (Step::Conv { .. }, _) => "no band of it fits, or its inputs meet through global \
                                       memory (noted above)"
                .into(),
            (Step::Gemm { .. }, _) => "a Gemm does not stream yet".into(),
            (Step::AvgPool { .. } | Step::GlobalAvgPool { .. }, _) => {
                "pooling other than max does not stream yet".into()
            }
            (
                Step::MaxPool { .. }
                | Step::Add { .. }
                | Step::Sub { .. }
                | Step::Rescale { .. }
                | Step::Affine { .. },
                _,
            ) => "an input does not stream, or its shapes differ".into(),
            (Step::Quantize { .. } | Step::Dequantize { .. }, _) => "the host computes it".into(),
            _ => "this kind of step does not stream yet".into(),
        }
    }

    /// Before step `si`: each of its cores waits for a token from every other core that wrote
    /// a region it reads.
    pub(super) fn recv_tokens(&mut self, df: &mut Dataflow, si: usize) {
        for &c in &df.cores[si].clone() {
            for &r in &df.reads[si].clone() {
                if !df.received.insert((c, r)) {
                    continue;
                }
                let writers = df.writers.get(&r).cloned().unwrap_or_default();
                let mut seen = BTreeSet::new();
                for w in writers {
                    if w != c && seen.insert(w) {
                        self.push(c, Instr::Recv { from: w, len: 1 });
                    }
                }
            }
        }
    }

    /// After step `si`: a token from each of its cores to every other core that reads a region
    /// it wrote.
    pub(super) fn send_tokens(&mut self, df: &Dataflow, si: usize) {
        let mut cores = df.cores[si].clone();
        cores.dedup();
        for &c in &cores {
            for &r in &df.writes[si] {
                for &reader in df.readers.get(&r).into_iter().flatten() {
                    if reader != c {
                        let token = Instr::Send {
                            to: reader,
                            dst: MAILBOX,
                            src: MAILBOX,
                            len: 1,
                            elem_bytes: 1,
                        };
                        self.push(c, token);
                    }
                }
            }
        }
    }

    /// Emits stage `si`'s band loop on its core.
    pub(super) fn emit_stage(
        &mut self,
        df: &Dataflow,
        si: usize,
        unit: Option<&MatrixPlan>,
    ) -> Result<()> {
        let st = df.stages[si].as_ref().expect("invariant: emit_stage is called on a stage");
        let s = &self.p.steps[si];
        // The consumer's first credits: one per slot of each ring.
        for inp in &st.inputs {
            if let Input::Edge(e) = *inp {
                let edge = &df.edges[e];
                let to = df.stages[edge.from].as_ref().map_or(0, |p| p.core);
                for _ in 0..edge.slots.min(st.bands.len()) {
                    self.credit(st.core, to);
                }
            }
        }
        match (st.kind, s.as_matrix(), unit) {
            (Kind::Conv, Some(m), Some(plan)) => self.conv_stage(df, st, &m, plan),
            (Kind::MaxPool, _, _) => self.pool_stage(df, st, s),
            (Kind::Add | Kind::Sub, _, _) => self.add_stage(df, st, s),
            (Kind::Requant, _, _) => self.requant_stage(df, st, s),
            _ => Err(self.err("a stage without its crossbar plan")),
        }
    }

    fn credit(&mut self, from: u16, to: u16) {
        let i = Instr::Send { to, dst: MAILBOX, src: MAILBOX, len: 1, elem_bytes: 1 };
        self.push(from, i);
    }

    /// Receives band `bi` of input edge `e`; returns the slot's address.
    fn recv_band(&mut self, df: &Dataflow, st: &Stage, e: usize, bi: usize) -> u32 {
        let edge = &df.edges[e];
        let from = df.stages[edge.from].as_ref().map_or(0, |p| p.core);
        let len = edge.recv[bi];
        if len > 0 {
            self.push(st.core, Instr::Recv { from, len: len as u32 });
        }
        edge.base + ((bi % edge.slots) * edge.slot_words) as u32
    }

    /// Band `bi`'s slot of edge `e` is free: a credit for band `bi + slots`.
    fn free_slot(&mut self, df: &Dataflow, st: &Stage, e: usize, bi: usize) {
        let edge = &df.edges[e];
        if bi + edge.slots < st.bands.len() {
            let to = df.stages[edge.from].as_ref().map_or(0, |p| p.core);
            self.credit(st.core, to);
        }
    }

    /// Sends band `bi` of the stage's output (row-major at `at`) to its consumers, and stores
    /// it channel-first (`cf`, when given: `[channel][rows·w]`) to global memory.
    fn emit_outputs(&mut self, df: &Dataflow, st: &Stage, bi: usize, at: u32, cf: Option<u32>) {
        let (r0, r1) = st.bands[bi];
        let row = st.geo.row();
        let eb = elem_bytes(self.p.buffers[st.out].elem);
        for &e in &st.outs {
            let edge = &df.edges[e];
            let to = df.stages[edge.to].as_ref().map_or(0, |c| c.core);
            let need = &edge.need;
            for (pi, &(j, i, a, b)) in edge.pieces.iter().enumerate() {
                if j != bi {
                    continue;
                }
                if edge.first[pi] {
                    self.push(st.core, Instr::Recv { from: to, len: 1 });
                }
                let dst = edge.base as usize
                    + (i % edge.slots) * edge.slot_words
                    + (a - need[i].0) * edge.geo.row();
                let src = at as usize + (a - r0) * row;
                let send = Instr::Send {
                    to,
                    dst: dst as u32,
                    src: src as u32,
                    len: ((b - a) * row) as u32,
                    elem_bytes: eb,
                };
                self.push(st.core, send);
            }
        }
        if let (true, Some(cf)) = (st.to_global, cf) {
            let g = st.geo;
            let n = r0 / g.h;
            let (o0, rows) = (r0 - n * g.h, r1 - r0);
            let base = self.addr[st.out] as usize + n * g.c * g.h * g.w;
            for ch in 0..g.c {
                let store = Instr::Store {
                    dst: (base + ch * g.h * g.w + o0 * g.w) as u32,
                    src: cf + (ch * rows * g.w) as u32,
                    len: (rows * g.w) as u32,
                    elem_bytes: eb,
                };
                self.push(st.core, store);
            }
        }
    }

    /// `[a][b]` at `src` → `[b][a]` at `dst`.
    fn transpose2(&mut self, core: u16, (a, b): (usize, usize), src: u32, dst: u32) -> Result<()> {
        let entry = PermEntry { shape: vec![a as u32, b as u32], perm: vec![1, 0] };
        let table = Self::table(&mut self.perms, entry)?;
        self.push(core, Instr::Transpose { table, src, dst });
        Ok(())
    }

    /// The largest band (rows) and the largest window (rows) of input `k`.
    fn band_rows(st: &Stage, k: usize) -> (usize, usize) {
        let b = st.bands.iter().map(|b| b.1 - b.0).max().unwrap_or(0);
        let w = st.need.get(k).map_or(0, |n| n.iter().map(|n| n.1 - n.0).max().unwrap_or(0));
        (b, w)
    }

    /// The channel-first window of band `bi` of input 0 at `staging`: from the ring (a
    /// transpose) or from global memory (a load per channel).
    fn window_in(
        &mut self,
        df: &Dataflow,
        st: &Stage,
        bi: usize,
        gi: Geo,
        staging: u32,
    ) -> Result<()> {
        let (lo, hi) = st.need[0][bi];
        let rows = hi - lo;
        match st.inputs[0] {
            Input::Edge(e) => {
                let slot = self.recv_band(df, st, e, bi);
                self.transpose2(st.core, (rows * gi.w, gi.c), slot, staging)?;
                self.free_slot(df, st, e, bi);
            }
            Input::Global(b) => {
                let n = lo / gi.h;
                let eb = self.bytes_of(b);
                let base = self.addr[b] as usize + n * gi.c * gi.h * gi.w + (lo - n * gi.h) * gi.w;
                for ch in 0..gi.c {
                    let load = Instr::Load {
                        dst: staging + (ch * rows * gi.w) as u32,
                        src: (base + ch * gi.h * gi.w) as u32,
                        len: (rows * gi.w) as u32,
                        elem_bytes: eb,
                    };
                    self.push(st.core, load);
                }
            }
        }
        Ok(())
    }

    /// The window entry of band `bi` over its staged input rows.
    fn band_window(st: &Stage, bi: usize, full: &WindowEntry, gi: Geo) -> WindowEntry {
        let (r0, r1) = st.bands[bi];
        let (lo, hi) = st.need[0][bi];
        let n = r0 / st.geo.h;
        let (o0, o1) = (r0 - n * st.geo.h, r1 - n * st.geo.h);
        let ilo = lo - n * gi.h;
        let rows = hi - lo;
        let (k, s, d) =
            (full.kernel[0] as usize, full.strides[0] as usize, full.dilations[0] as usize);
        let pt = full.pads[0] as usize + ilo - o0 * s;
        let span = (o1 - o0 - 1) * s + (k - 1) * d + 1;
        let pb = span.saturating_sub(pt + rows);
        WindowEntry {
            height: rows as u32,
            pads: [pt as u32, full.pads[1], pb as u32, full.pads[3]],
            out_height: (o1 - o0) as u32,
            first_position: 0,
            positions: ((o1 - o0) * st.geo.w) as u32,
            ..full.clone()
        }
    }

    fn conv_stage(
        &mut self,
        df: &Dataflow,
        st: &Stage,
        s: &MatrixStep,
        plan: &MatrixPlan,
    ) -> Result<()> {
        let pg = &plan.replicas[0][0];
        self.configure(s, plan, pg)?;
        let MatrixKind::Conv { window, group } = s.kind else {
            return Err(self.err("a streamed Gemm"));
        };
        let si = self.p.buffers[s.input].shape.clone();
        let so = self.p.buffers[s.output].shape.clone();
        let full = window_entry(&si, &so, window, group).map_err(|e| self.err(e))?;
        let gi = Geo::of(&si).ok_or_else(|| self.err("a streamed conv on a tensor of rank ≠ 4"))?;
        let (k, g, m) = (plan.k, plan.g, plan.g * plan.mg);
        let (bmax, rw) = Self::band_rows(st, 0);
        let core = st.core;
        let eb_in = self.bytes_of(s.input);
        let eb_out = self.bytes_of(s.output);
        let staging = self.alloc_wide(core, (rw * gi.row()) as u64, eb_in)?;
        let col = self.alloc(core, (st.chunk * g * k) as u64)?;
        let acc = self.alloc_wide(core, (bmax * st.geo.w * m) as u64, ACC_BYTES as u8)?;
        let tmp = if st.to_global {
            Some(self.alloc_wide(core, (bmax * st.geo.w * m) as u64, eb_out)?)
        } else {
            None
        };
        let rq = RequantEntry::matrix(s.bias, s.requant);
        let rq = Self::table(&mut self.requants, rq)?;
        for bi in 0..st.bands.len() {
            self.window_in(df, st, bi, gi, staging)?;
            let bw = Self::band_window(st, bi, &full, gi);
            let positions = bw.positions as usize;
            let mut p0 = 0;
            while p0 < positions {
                let cnt = st.chunk.min(positions - p0);
                let w =
                    WindowEntry { first_position: p0 as u32, positions: cnt as u32, ..bw.clone() };
                let window = Self::table(&mut self.windows, w)?;
                self.push(
                    core,
                    Instr::Im2col { window, src: staging, dst: col, pad: s.input_zero_point },
                );
                let dst = acc + (p0 * m) as u32;
                self.push(core, Instr::Mvm { group: pg.group, src: col, dst, count: cnt as u32 });
                p0 += cnt;
            }
            let len = (positions * m) as u32;
            self.push(
                core,
                Instr::Requant {
                    table: rq,
                    src: acc,
                    dst: acc,
                    len,
                    channel_len: 1,
                    first_channel: 0,
                },
            );
            if let Some(t) = tmp {
                self.transpose2(core, (positions, m), acc, t)?;
            }
            self.emit_outputs(df, st, bi, acc, tmp);
        }
        Ok(())
    }

    fn pool_stage(&mut self, df: &Dataflow, st: &Stage, s: &Step) -> Result<()> {
        let Step::MaxPool { input, output, window, .. } = s else {
            return Err(self.err("a pooling stage on another step"));
        };
        let si = self.p.buffers[*input].shape.clone();
        let so = self.p.buffers[*output].shape.clone();
        let full = window_entry(&si, &so, window, 1).map_err(|e| self.err(e))?;
        let gi = Geo::of(&si).ok_or_else(|| self.err("a streamed pooling of rank ≠ 4"))?;
        let (bmax, rw) = Self::band_rows(st, 0);
        let core = st.core;
        let c = st.geo.c;
        let staging = self.alloc_wide(core, (rw * gi.row()) as u64, self.bytes_of(*input))?;
        let pooled = self.alloc(core, (bmax * st.geo.row()) as u64)?;
        let hwc = self.alloc(core, (bmax * st.geo.row()) as u64)?;
        for bi in 0..st.bands.len() {
            self.window_in(df, st, bi, gi, staging)?;
            let bw = Self::band_window(st, bi, &full, gi);
            let positions = bw.positions as usize;
            let window = Self::table(&mut self.windows, bw)?;
            self.push(core, Instr::MaxPool { window, src: staging, dst: pooled });
            if !st.outs.is_empty() {
                self.transpose2(core, (c, positions), pooled, hwc)?;
            }
            self.emit_outputs(df, st, bi, hwc, Some(pooled));
        }
        Ok(())
    }

    fn add_stage(&mut self, df: &Dataflow, st: &Stage, s: &Step) -> Result<()> {
        let entry = AddEntry::of_step(s).ok_or_else(|| self.err("an add stage on another step"))?;
        let b_zero_point = entry.b_zero_point;
        let table = Self::table(&mut self.adds, entry)?;
        let negate = if st.kind == Kind::Sub {
            let e = RequantEntry::negate_about(b_zero_point);
            Some(Self::table(&mut self.requants, e)?)
        } else {
            None
        };
        let (bmax, _) = Self::band_rows(st, 0);
        let core = st.core;
        let row = st.geo.row();
        let out = self.alloc(core, (bmax * row) as u64)?;
        let cf = if st.to_global { Some(self.alloc(core, (bmax * row) as u64)?) } else { None };
        for bi in 0..st.bands.len() {
            let (r0, r1) = st.bands[bi];
            let len = ((r1 - r0) * row) as u32;
            let mut at = [0u32; 2];
            for (k, inp) in st.inputs.iter().enumerate().take(2) {
                let Input::Edge(e) = *inp else {
                    return Err(self.err("an add stage reads global memory"));
                };
                at[k] = self.recv_band(df, st, e, bi);
            }
            if let Some(t) = negate {
                let rq = Instr::Requant {
                    table: t,
                    src: at[1],
                    dst: at[1],
                    len,
                    channel_len: 1,
                    first_channel: 0,
                };
                self.push(core, rq);
            }
            self.push(core, Instr::Add { table, a: at[0], b: at[1], dst: out, len });
            for inp in st.inputs.iter().take(2) {
                if let Input::Edge(e) = *inp {
                    self.free_slot(df, st, e, bi);
                }
            }
            if let Some(t) = cf {
                self.transpose2(core, ((r1 - r0) * st.geo.w, st.geo.c), out, t)?;
            }
            self.emit_outputs(df, st, bi, out, cf);
        }
        Ok(())
    }

    fn requant_stage(&mut self, df: &Dataflow, st: &Stage, s: &Step) -> Result<()> {
        let entry = match s {
            Step::Rescale { input_zero_point, requant, .. } => {
                RequantEntry::rescale(*input_zero_point, requant)
            }
            Step::Affine { input_zero_point, scale, bias, requant, .. } => {
                if scale.len() != st.geo.c || bias.len() != st.geo.c {
                    return Err(self.err(format!("{} channels, {} scales", st.geo.c, scale.len())));
                }
                RequantEntry::affine(*input_zero_point, scale, bias, requant)
            }
            _ => return Err(self.err("a requant stage on another step")),
        };
        let table = Self::table(&mut self.requants, entry)?;
        let (bmax, _) = Self::band_rows(st, 0);
        let core = st.core;
        let row = st.geo.row();
        let out = self.alloc(core, (bmax * row) as u64)?;
        let cf = if st.to_global { Some(self.alloc(core, (bmax * row) as u64)?) } else { None };
        let Input::Edge(e) = st.inputs[0] else {
            return Err(self.err("a requant stage reads global memory"));
        };
        for bi in 0..st.bands.len() {
            let (r0, r1) = st.bands[bi];
            let len = ((r1 - r0) * row) as u32;
            let slot = self.recv_band(df, st, e, bi);
            let rq = Instr::Requant {
                table,
                src: slot,
                dst: out,
                len,
                channel_len: 1,
                first_channel: 0,
            };
            self.push(core, rq);
            self.free_slot(df, st, e, bi);
            if let Some(t) = cf {
                self.transpose2(core, ((r1 - r0) * st.geo.w, st.geo.c), out, t)?;
            }
            self.emit_outputs(df, st, bi, out, cf);
        }
        Ok(())
    }
}
