//! Emission of Conv and Gemm steps: crossbar groups (one per replica, or one per part of a layer
//! that does not fit the chip), `im2col` chunks, `mvm`, `requant`, and the layout change from
//! the crossbar's vector-major accumulators to the program's channel-first tensors.

use super::{window_entry, Emitter};
use crate::error::Result;
use crate::isa::Instr;
use crate::program::{Buf, Crossbar, Elem, MatrixKind, MatrixStep};
use crate::stream::cost::ACC_BYTES;
use crate::stream::{GroupEntry, PermEntry, RequantEntry, Schedule, WindowEntry};
use cimc_ir::{CrossbarGeometry, WeightEncoding};

/// A part of a layer's matrix held by one group: conv groups `cg0..cg1`, and within one conv
/// group the local outputs `n0..n1` and the rows `r0..r1`.
#[derive(Clone, Debug)]
struct Part {
    cg0: usize,
    cg1: usize,
    n0: usize,
    n1: usize,
    r0: usize,
    r1: usize,
}

/// A group of the plan: its index in the group table and the part it holds.
#[derive(Clone, Debug)]
pub(super) struct PlannedGroup {
    pub(super) group: u16,
    pub(super) core: u16,
    part: Part,
}

/// How a matrix step is mapped: its numerics and its groups, per replica.
pub(super) struct MatrixPlan {
    pub(super) x: Crossbar,
    /// Rows per conv group, conv groups, outputs per conv group.
    pub(super) k: usize,
    pub(super) g: usize,
    pub(super) mg: usize,
    /// `replicas[r]`: the groups of replica `r` (one in a pipelined stream; the parts of the
    /// layer, in execution order, in a layer-serial one).
    pub(super) replicas: Vec<Vec<PlannedGroup>>,
}

impl MatrixPlan {
    pub(super) fn core_of_first(&self) -> u16 {
        self.replicas.first().and_then(|r| r.first()).map_or(0, |g| g.core)
    }
}

/// The numerics of an exact (digital) layer, as a crossbar configuration that is lossless:
/// one-bit cells and inputs, and an ADC wide enough for the largest partial sum.
fn lossless_config(
    k: usize,
    weight_bits: u8,
    min_code: bool,
    ct: crate::program::CodeType,
) -> Crossbar {
    let rows = k.clamp(1, u16::MAX as usize);
    let adc_bits = (usize::BITS - rows.leading_zeros()).max(1);
    let magnitude_bits =
        if min_code { weight_bits as u32 } else { (weight_bits as u32 - 1).max(1) };
    Crossbar {
        geometry: CrossbarGeometry {
            encoding: WeightEncoding::Differential,
            rows,
            cols: 2 * magnitude_bits as usize,
            cell_bits: 1,
            dac_bits: 1,
            adc_bits,
        },
        weight_bits: (weight_bits as u32).max(2),
        magnitude_bits,
        input_bits: ct.bits as u32,
        input_min: ct.range().0,
        adc_step: vec![0],
        arrays: vec![],
    }
}

/// Cuts a layer into parts of at most `a` arrays each: whole conv groups, then column groups,
/// then row tiles (see the module doc of `emit`).
fn split(g: usize, k: usize, mg: usize, rows: usize, cpg: usize, a: usize) -> Vec<Part> {
    let t = k.div_ceil(rows);
    let cgs = mg.div_ceil(cpg);
    let per = t * cgs;
    let whole = |cg0, cg1| Part { cg0, cg1, n0: 0, n1: mg, r0: 0, r1: k };
    if g * per <= a {
        return vec![whole(0, g)];
    }
    if per <= a {
        let step = a / per;
        return (0..g).step_by(step).map(|c| whole(c, (c + step).min(g))).collect();
    }
    let mut parts = Vec::new();
    for c in 0..g {
        if t <= a {
            let step = a / t;
            for c0 in (0..cgs).step_by(step) {
                let c1 = (c0 + step).min(cgs);
                parts.push(Part {
                    cg0: c,
                    cg1: c + 1,
                    n0: c0 * cpg,
                    n1: (c1 * cpg).min(mg),
                    r0: 0,
                    r1: k,
                });
            }
        } else {
            for cg in 0..cgs {
                for t0 in (0..t).step_by(a) {
                    let t1 = (t0 + a).min(t);
                    parts.push(Part {
                        cg0: c,
                        cg1: c + 1,
                        n0: cg * cpg,
                        n1: ((cg + 1) * cpg).min(mg),
                        r0: t0 * rows,
                        r1: (t1 * rows).min(k),
                    });
                }
            }
        }
    }
    parts
}

impl Emitter<'_> {
    /// Pipelined: groups whose blocks share an array (the tile pass packs small blocks of
    /// different layers onto one array) must belong to one core, since an array is wired to one
    /// core. Each set of groups linked by shared arrays goes to the core of its lowest array.
    pub(super) fn unify_cores(&mut self, units: &mut [Option<MatrixPlan>]) {
        let n = self.groups.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        let mut owner: std::collections::BTreeMap<u32, usize> = Default::default();
        for (gi, g) in self.groups.iter().enumerate() {
            for &a in &g.arrays {
                match owner.get(&a) {
                    Some(&other) => {
                        let (ra, rb) = (find(&mut parent, gi), find(&mut parent, other));
                        parent[ra.max(rb)] = ra.min(rb);
                    }
                    None => {
                        owner.insert(a, gi);
                    }
                }
            }
        }
        let per_core = self.t.core.arrays.max(1) as u32;
        let mut lowest = vec![u32::MAX; n];
        for gi in 0..n {
            let r = find(&mut parent, gi);
            if let Some(&a) = self.groups[gi].arrays.iter().min() {
                lowest[r] = lowest[r].min(a);
            }
        }
        for gi in 0..n {
            let r = find(&mut parent, gi);
            if lowest[r] != u32::MAX {
                self.groups[gi].core = (lowest[r] / per_core) as u16;
            }
        }
        for plan in units.iter_mut().flatten() {
            for rep in &mut plan.replicas {
                for pg in rep.iter_mut() {
                    pg.core = self.groups[pg.group as usize].core;
                }
            }
        }
    }

    /// Groups of a matrix step (added to the group table).
    pub(super) fn plan_matrix(&mut self, s: &MatrixStep) -> Result<MatrixPlan> {
        let (input, weights, groups, crossbar) = (s.input, s.weights, s.groups(), s.crossbar);
        let (k, m) = s.k_and_m();
        if groups == 0 || m % groups != 0 || k == 0 {
            return Err(self.err(format!("weights {:?} in {groups} groups", weights.shape)));
        }
        let mg = m / groups;
        let Elem::Code(ct) = self.p.buffers[input].elem else {
            return Err(self.err("a matrix step on f32 values"));
        };
        let x = match crossbar {
            Some(x) => x.clone(),
            None => {
                let min = -(1i64 << (weights.bits.max(2) - 1));
                let min_code = weights.data.iter().any(|&w| w as i64 == min);
                lossless_config(k, weights.bits, min_code, ct)
            }
        };
        let cpo = x.columns_per_output();
        let cpg = (x.geometry.cols / cpo.max(1)).max(1);
        // (part, arrays) per group of each replica.
        let layout: Vec<Vec<(Part, Vec<u32>, u16)>> = match self.schedule {
            Schedule::Pipelined => {
                let per_core = self.t.core.arrays.max(1) as u32;
                let reps = if x.arrays.is_empty() { vec![vec![]] } else { x.arrays.clone() };
                reps.into_iter()
                    .map(|arrays| {
                        let core = arrays.first().map_or(0, |&a| a / per_core) as u16;
                        vec![(
                            Part { cg0: 0, cg1: groups, n0: 0, n1: mg, r0: 0, r1: k },
                            arrays,
                            core,
                        )]
                    })
                    .collect()
            }
            Schedule::LayerSerial => {
                let a = self.arrays.max(1) as usize;
                let parts = if crossbar.is_none() {
                    vec![Part { cg0: 0, cg1: groups, n0: 0, n1: mg, r0: 0, r1: k }]
                } else {
                    split(groups, k, mg, x.geometry.rows, cpg, a)
                };
                vec![parts
                    .into_iter()
                    .map(|p| {
                        let need = if crossbar.is_none() {
                            0
                        } else {
                            (p.cg1 - p.cg0)
                                * (p.r1 - p.r0).div_ceil(x.geometry.rows)
                                * (p.n1 - p.n0).div_ceil(cpg)
                        };
                        (p, (0..need as u32).collect(), 0u16)
                    })
                    .collect()]
            }
        };
        let mut replicas = Vec::with_capacity(layout.len());
        for (r, parts) in layout.into_iter().enumerate() {
            let mut planned = Vec::with_capacity(parts.len());
            for (part, arrays, core) in parts {
                let (kp, np) = (part.r1 - part.r0, part.n1 - part.n0);
                let gp = part.cg1 - part.cg0;
                let mut w = Vec::with_capacity(gp * np * kp);
                for cg in part.cg0..part.cg1 {
                    for nl in part.n0..part.n1 {
                        for kk in part.r0..part.r1 {
                            w.push(s.weight_at((k, m), kk, cg * mg + nl));
                        }
                    }
                }
                let first_row = part.r0 == 0;
                let entry = GroupEntry {
                    core,
                    layer: self.step as u32,
                    replica: r as u32,
                    k: kp as u32,
                    n: (gp * np) as u32,
                    conv_groups: gp as u32,
                    in_stride: (groups * k) as u32,
                    in_offset: (part.cg0 * k + part.r0) as u32,
                    group_stride: k as u32,
                    out_stride: if first_row { m as u32 } else { (gp * np) as u32 },
                    weight_bits: weights.bits,
                    weights: w,
                    arrays,
                };
                if self.groups.len() >= u16::MAX as usize {
                    return Err(self.err("over 65535 crossbar groups"));
                }
                self.groups.push(entry);
                planned.push(PlannedGroup { group: (self.groups.len() - 1) as u16, core, part });
            }
            replicas.push(planned);
        }
        Ok(MatrixPlan { x, k, g: groups, mg, replicas })
    }

    /// `xbar_load` (layer-serial, unless the arrays already hold the group), `xbar_config` and
    /// the per-column-group `adc_step`s of a planned group.
    pub(super) fn configure(
        &mut self,
        s: &MatrixStep,
        plan: &MatrixPlan,
        pg: &PlannedGroup,
    ) -> Result<()> {
        let z = s.input_zero_point;
        let x = &plan.x;
        if self.schedule == Schedule::LayerSerial {
            let arrays = self.groups[pg.group as usize].arrays.clone();
            let resident = !arrays.is_empty()
                && arrays.iter().all(|&a| self.loaded.get(a as usize) == Some(&Some(pg.group)));
            if !resident {
                self.push(pg.core, Instr::XbarLoad { group: pg.group });
                for a in arrays {
                    if let Some(slot) = self.loaded.get_mut(a as usize) {
                        *slot = Some(pg.group);
                    }
                }
            }
        }
        let u8f = |v: u32, what: &str| -> Result<u8> {
            u8::try_from(v).map_err(|_| self.err(format!("{what} = {v} does not fit the ISA")))
        };
        // The part's column groups, numbered as the part's own group numbers them, and the
        // layer-wide column group each one is.
        let (cpo, part) = (x.columns_per_output(), &pg.part);
        let cpg = (x.geometry.cols / cpo.max(1)).max(1);
        let np = part.n1 - part.n0;
        let steps: Vec<u32> = if x.adc_step.len() == 1 {
            vec![x.adc_step[0]]
        } else {
            let per_cg = np.div_ceil(cpg);
            let mut v = Vec::new();
            for g in part.cg0..part.cg1 {
                for c in 0..per_cg {
                    let n_local = part.n0 + c * cpg;
                    v.push(x.step_of(g * plan.mg + n_local, plan.mg));
                }
            }
            v
        };
        // `R` and `C` fit 16 bits: `Program::validate` (run before emission) held the step's
        // geometry to `CrossbarGeometry`'s bounds, and `lossless_config` stays inside them.
        self.push(
            pg.core,
            Instr::XbarConfig {
                group: pg.group,
                rows: x.geometry.rows as u16,
                cols: x.geometry.cols as u16,
                input_bits: u8f(x.input_bits, "input_bits")?,
                dac_bits: u8f(x.geometry.dac_bits, "dac_bits")?,
                cell_bits: u8f(x.geometry.cell_bits, "cell_bits")?,
                weight_bits: u8f(x.weight_bits, "weight_bits")?,
                magnitude_bits: u8f(x.magnitude_bits, "magnitude_bits")?,
                encoding: x.geometry.encoding,
                adc_bits: u8f(x.geometry.adc_bits, "adc_bits")?,
                adc_step: u8f(steps[0], "adc_step")?,
                input_min: x.input_min,
                input_zero: z,
            },
        );
        if steps.len() > 1 {
            for (c, &e) in steps.iter().enumerate() {
                if e != steps[0] {
                    let column_group =
                        u16::try_from(c).map_err(|_| self.err("over 65535 column groups"))?;
                    self.push(
                        pg.core,
                        Instr::AdcStep { group: pg.group, column_group, step: e as u8 },
                    );
                }
            }
        }
        Ok(())
    }

    /// A matrix step: its replicas split the vectors; each runs `im2col` (Conv), `mvm` on its
    /// groups, `requant`, and stores the codes in the program's layout.
    pub(super) fn emit_matrix(&mut self, s: &MatrixStep, plan: &MatrixPlan) -> Result<()> {
        let vectors = self.vectors(s, plan)?;
        let rq = RequantEntry::matrix(s.bias, s.requant);
        let rq = Self::table(&mut self.requants, rq)?;
        let n_rep = plan.replicas.len();
        for (r, groups) in plan.replicas.iter().enumerate() {
            let (v0, v1) = (vectors.total * r / n_rep, vectors.total * (r + 1) / n_rep);
            if v0 == v1 {
                continue;
            }
            self.emit_replica(s, plan, &vectors, groups, (v0, v1), rq)?;
        }
        Ok(())
    }

    /// The vectors of a matrix step: per image `pixels` output positions (Conv), or the input's
    /// rows (Gemm, one "image" of all rows).
    fn vectors(&self, s: &MatrixStep, plan: &MatrixPlan) -> Result<Vectors> {
        let (k, g) = (plan.k, plan.g);
        let si = &self.p.buffers[s.input].shape;
        let so = &self.p.buffers[s.output].shape;
        match s.kind {
            MatrixKind::Conv { window, group } => {
                let w = window_entry(si, so, window, group).map_err(|e| self.err(e))?;
                if w.k() as usize != k || w.conv_groups as usize != g {
                    return Err(self.err("conv geometry differs from its weights"));
                }
                let pixels = (w.out_height * w.out_width) as usize;
                Ok(Vectors {
                    pixels,
                    total: si[0] * pixels,
                    chunk: (self.opts.im2col_words / (g * k).max(1)).max(1),
                    window: Some(w),
                })
            }
            MatrixKind::Gemm => {
                let rows = self.numel(s.input) as usize / k;
                Ok(Vectors { pixels: rows, total: rows, chunk: rows.max(1), window: None })
            }
        }
    }

    /// One replica's vectors `v0..v1` on its groups, in chunks that stay inside one image.
    fn emit_replica(
        &mut self,
        s: &MatrixStep,
        plan: &MatrixPlan,
        vs: &Vectors,
        groups: &[PlannedGroup],
        (v0, v1): (usize, usize),
        rq: u16,
    ) -> Result<()> {
        let (k, g, m) = (plan.k, plan.g, plan.g * plan.mg);
        let core = groups[0].core;
        let whole = replica_regions(self.whole_band(s, vs, (v0, v1)), plan, groups, false);
        if !self.fits(core, &whole) {
            return self.emit_replica_banded(s, plan, vs, groups, (v0, v1), rq);
        }
        let x_in = self.load_buf(core, s.input)?;
        let acc = self.alloc_wide(core, ((v1 - v0) * m) as u64, ACC_BYTES as u8)?;
        let chunks = segments((v0, v1), vs.pixels, vs.chunk);
        let longest = chunks.iter().map(|c| c.1 - c.0).max().unwrap_or(0);
        let col = match vs.window {
            Some(_) => self.alloc(core, (longest * g * k) as u64)?,
            None => 0,
        };
        let tmp_len = groups
            .iter()
            .filter(|pg| pg.part.r0 > 0)
            .map(|pg| (pg.part.cg1 - pg.part.cg0) * (pg.part.n1 - pg.part.n0));
        let tmp = match tmp_len.max() {
            Some(n) => self.alloc_wide(core, (longest * n) as u64, ACC_BYTES as u8)?,
            None => 0,
        };
        let at = ReplicaScratch { core, v0, x_in, acc, col, tmp, z: s.input_zero_point };
        if groups.len() == 1 {
            self.configure(s, plan, &groups[0])?;
            for &c in &chunks {
                let src = self.im2col_chunk(vs, k, &at, c)?;
                self.mvm_chunk(plan, &at, &groups[0], c, src);
            }
        } else if chunks.len() == 1 {
            let src = self.im2col_chunk(vs, k, &at, chunks[0])?;
            for pg in groups {
                self.configure(s, plan, pg)?;
                self.mvm_chunk(plan, &at, pg, chunks[0], src);
            }
        } else {
            for pg in groups {
                self.configure(s, plan, pg)?;
                for &c in &chunks {
                    let src = self.im2col_chunk(vs, k, &at, c)?;
                    self.mvm_chunk(plan, &at, pg, c, src);
                }
            }
        }
        // Accumulators → codes, in place; bias and multiplier per output channel.
        let len = ((v1 - v0) * m) as u32;
        self.push(
            core,
            Instr::Requant { table: rq, src: acc, dst: acc, len, channel_len: 1, first_channel: 0 },
        );
        match vs.window {
            None => {
                let (eb, out) = (self.bytes_of(s.output), self.addr[s.output]);
                self.push(
                    core,
                    Instr::Store { dst: out + (v0 * m) as u32, src: acc, len, elem_bytes: eb },
                );
                Ok(())
            }
            Some(_) => self.store_channel_first(core, acc, (v0, v1), vs.pixels, m, s.output),
        }
    }

    /// The vectors of chunk `c0..c1`: `im2col` into the replica's vector buffer (Conv), or the
    /// input rows where they lie (Gemm).
    fn im2col_chunk(
        &mut self,
        vs: &Vectors,
        k: usize,
        at: &ReplicaScratch,
        (c0, c1): (usize, usize),
    ) -> Result<u32> {
        let Some(w) = &vs.window else {
            return Ok(at.x_in + (c0 * k) as u32);
        };
        let (b, p0) = (c0 / vs.pixels, c0 % vs.pixels);
        let entry =
            WindowEntry { first_position: p0 as u32, positions: (c1 - c0) as u32, ..w.clone() };
        let window = Self::table(&mut self.windows, entry)?;
        let src = at.x_in + (b as u64 * w.source_len()) as u32;
        self.push(at.core, Instr::Im2col { window, src, dst: at.col, pad: at.z });
        Ok(at.col)
    }

    /// `mvm` of chunk `c0..c1` on group `pg` into the accumulators; a group holding rows after
    /// the first writes partial sums that `shift_add` adds in.
    fn mvm_chunk(
        &mut self,
        plan: &MatrixPlan,
        at: &ReplicaScratch,
        pg: &PlannedGroup,
        (c0, c1): (usize, usize),
        src: u32,
    ) {
        let m = plan.g * plan.mg;
        let count = (c1 - c0) as u32;
        let n_off = pg.part.cg0 * plan.mg + pg.part.n0;
        let np = (pg.part.cg1 - pg.part.cg0) * (pg.part.n1 - pg.part.n0);
        let dst = at.acc + ((c0 - at.v0) * m + n_off) as u32;
        if pg.part.r0 == 0 {
            self.push(at.core, Instr::Mvm { group: pg.group, src, dst, count });
            return;
        }
        self.push(at.core, Instr::Mvm { group: pg.group, src, dst: at.tmp, count });
        for i in 0..count {
            let (dst, src) = (dst + i * m as u32, at.tmp + i * np as u32);
            self.push(at.core, Instr::ShiftAdd { dst, src, len: np as u32, shift: 0 });
        }
    }

    /// Vector-major codes `[position][channel]` at `acc` → the program's `[channel][position]`
    /// in `output`, one image segment at a time.
    fn store_channel_first(
        &mut self,
        core: u16,
        acc: u32,
        (v0, v1): (usize, usize),
        pixels: usize,
        m: usize,
        output: Buf,
    ) -> Result<()> {
        let segs = segments((v0, v1), pixels, usize::MAX);
        let longest_seg = segs.iter().map(|s| s.1 - s.0).max().unwrap_or(0);
        let tbuf = self.alloc(core, (longest_seg * m) as u64)?;
        for (a, b_end) in segs {
            let seg_acc = acc + ((a - v0) * m) as u32;
            self.store_band(core, (seg_acc, tbuf), (a, b_end), pixels, m, output)?;
        }
        Ok(())
    }
}

/// The vectors of a matrix step, cut into chunks of at most `chunk`.
struct Vectors {
    /// Vectors per image.
    pixels: usize,
    total: usize,
    chunk: usize,
    /// Conv: the window entry of all of an image's output positions.
    window: Option<WindowEntry>,
}

/// Where one replica works on its core: its vectors start at `v0`; the input at `x_in`, the
/// accumulators at `acc`, im2col vectors at `col`, partial sums of row-split parts at `tmp`;
/// `z` is the padding code.
struct ReplicaScratch {
    core: u16,
    v0: usize,
    x_in: u32,
    acc: u32,
    col: u32,
    tmp: u32,
    z: i32,
}

/// `v0..v1` cut into pieces of at most `chunk` vectors that stay inside one image of `pixels`.
fn segments((v0, v1): (usize, usize), pixels: usize, chunk: usize) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut a = v0;
    while a < v1 {
        let end = ((a / pixels + 1) * pixels).min(v1).min(a.saturating_add(chunk));
        v.push((a, end));
        a = end;
    }
    v
}

/// What one band of a replica holds in the scratchpad: its input (words, bytes per word), its
/// vectors, the longest `im2col` chunk and the channel-first copy of its codes (`tbuf`
/// vectors; Conv only).
#[derive(Clone, Copy, Debug)]
struct BandNeed {
    input_words: u64,
    eb_in: u8,
    vectors: usize,
    chunk: usize,
    conv: bool,
    tbuf: usize,
}

/// The regions a replica allocates for a band ([`BandNeed`]), in the order it allocates them:
/// unbanded, the input, the accumulators, the `im2col` vectors, the partial sums of row parts,
/// the channel-first copy; banded (`wide_first`), the accumulators and partial sums first, so
/// that every band's widest words lie where earlier steps' widest words lie (the footprint
/// counts each word at the widest value it ever holds).
fn replica_regions(
    b: BandNeed,
    plan: &MatrixPlan,
    groups: &[PlannedGroup],
    wide_first: bool,
) -> Vec<(u64, u8)> {
    let (gk, m) = ((plan.g * plan.k) as u64, (plan.g * plan.mg) as u64);
    let acc = ACC_BYTES as u8;
    let tmp = groups
        .iter()
        .filter(|pg| pg.part.r0 > 0)
        .map(|pg| (pg.part.cg1 - pg.part.cg0) * (pg.part.n1 - pg.part.n0))
        .max()
        .map(|n| ((b.chunk * n) as u64, acc));
    let accs = (b.vectors as u64 * m, acc);
    let input = (b.input_words, b.eb_in);
    let col = b.conv.then_some((b.chunk as u64 * gk, 1));
    let tbuf = b.conv.then_some((b.tbuf as u64 * m, 1));
    if wide_first {
        [Some(accs), tmp, Some(input), col, tbuf].into_iter().flatten().collect()
    } else {
        [Some(input), Some(accs), col, tmp, tbuf].into_iter().flatten().collect()
    }
}

/// One band of a conv: output positions `p0..p1` of one image, the input rows `lo..hi` they
/// read and the window over those rows.
struct ConvBand {
    lo: usize,
    hi: usize,
    window: WindowEntry,
}

/// The band of positions `p0..p1` (of one image) of the conv `full`: the input rows its
/// windows reach (the halo included) and the window entry over them, its own top and bottom
/// padding; `None` when the band reads no input row (only padding).
fn conv_band(full: &WindowEntry, (p0, p1): (usize, usize)) -> Option<ConvBand> {
    let ow = full.out_width as usize;
    let (o0, o1) = (p0 / ow, (p1 - 1) / ow + 1);
    let (k, s, d) = (full.kernel[0] as usize, full.strides[0] as usize, full.dilations[0] as usize);
    let (top, h) = (full.pads[0] as usize, full.height as usize);
    let eff = (k - 1) * d + 1;
    let lo = (o0 * s).saturating_sub(top);
    let hi = ((o1 - 1) * s + eff).saturating_sub(top).min(h);
    if hi <= lo {
        return None;
    }
    let pt = top + lo - o0 * s;
    let span = (o1 - o0 - 1) * s + eff;
    let pb = span.saturating_sub(pt + hi - lo);
    let window = WindowEntry {
        height: (hi - lo) as u32,
        pads: [pt as u32, full.pads[1], pb as u32, full.pads[3]],
        out_height: (o1 - o0) as u32,
        first_position: (p0 - o0 * ow) as u32,
        positions: (p1 - p0) as u32,
        ..full.clone()
    };
    Some(ConvBand { lo, hi, window })
}

impl Emitter<'_> {
    /// What the whole of a replica's vectors `v0..v1` holds at once (the unbanded emission).
    fn whole_band(&self, s: &MatrixStep, vs: &Vectors, (v0, v1): (usize, usize)) -> BandNeed {
        let chunks = segments((v0, v1), vs.pixels, vs.chunk);
        let longest = chunks.iter().map(|c| c.1 - c.0).max().unwrap_or(0);
        let segs = segments((v0, v1), vs.pixels, usize::MAX);
        BandNeed {
            input_words: self.numel(s.input),
            eb_in: self.bytes_of(s.input),
            vectors: v1 - v0,
            chunk: longest,
            conv: vs.window.is_some(),
            tbuf: segs.iter().map(|s| s.1 - s.0).max().unwrap_or(0),
        }
    }

    /// The bands of `u` vectors of a replica's `v0..v1` (never across an image) and what the
    /// largest of them holds; `None` when a conv band reads only padding.
    fn bands_of(
        &self,
        s: &MatrixStep,
        vs: &Vectors,
        (v0, v1): (usize, usize),
        u: usize,
    ) -> Option<(Vec<(usize, usize)>, BandNeed)> {
        let bands = segments((v0, v1), vs.pixels, u);
        let eb_in = self.bytes_of(s.input);
        let longest = bands.iter().map(|b| b.1 - b.0).max().unwrap_or(0);
        let mut need = BandNeed {
            input_words: 0,
            eb_in,
            vectors: longest,
            chunk: longest.min(vs.chunk),
            conv: vs.window.is_some(),
            tbuf: longest,
        };
        match &vs.window {
            Some(w) => {
                let row = w.channels as u64 * w.width as u64;
                for &(a, b) in &bands {
                    let p0 = a % vs.pixels;
                    let cb = conv_band(w, (p0, p0 + b - a))?;
                    need.input_words = need.input_words.max((cb.hi - cb.lo) as u64 * row);
                }
            }
            None => need.input_words = (longest * s.k_and_m().0) as u64,
        }
        Some((bands, need))
    }

    /// A replica whose vectors do not fit the scratchpad at once: bands of output positions
    /// (rows of the output, or parts of a row; Gemm: rows of the input), each loading only the
    /// input rows its windows reach, computed and stored before the next. A layer cut into
    /// parts runs every part on each band (layer-serial: its arrays are programmed again when
    /// another part held them). When not even one position fits, the replica runs whole.
    fn emit_replica_banded(
        &mut self,
        s: &MatrixStep,
        plan: &MatrixPlan,
        vs: &Vectors,
        groups: &[PlannedGroup],
        (v0, v1): (usize, usize),
        rq: u16,
    ) -> Result<()> {
        let core = groups[0].core;
        let fit = |u: usize| match self.bands_of(s, vs, (v0, v1), u) {
            Some((_, need)) => replica_regions(need, plan, groups, true),
            None => vec![(u64::MAX / 8, 1)],
        };
        let mut u = self.largest_fit(core, v1 - v0, fit).unwrap_or(v1 - v0);
        // Whole output rows when one fits: a band of part of a row reads its halo rows whole.
        if let Some(w) = &vs.window {
            let ow = w.out_width as usize;
            if u >= ow && u < v1 - v0 {
                u -= u % ow;
            }
        }
        let (bands, need) = match self.bands_of(s, vs, (v0, v1), u) {
            Some(b) => b,
            None => (segments((v0, v1), vs.pixels, usize::MAX), self.whole_band(s, vs, (v0, v1))),
        };
        let (m, z) = (plan.g * plan.mg, s.input_zero_point);
        let acc = self.alloc_wide(core, (need.vectors * m) as u64, ACC_BYTES as u8)?;
        let tmp_len = groups
            .iter()
            .filter(|pg| pg.part.r0 > 0)
            .map(|pg| (pg.part.cg1 - pg.part.cg0) * (pg.part.n1 - pg.part.n0))
            .max();
        let tmp = match tmp_len {
            Some(n) => self.alloc_wide(core, (need.chunk * n) as u64, ACC_BYTES as u8)?,
            None => 0,
        };
        let x_in = self.alloc_wide(core, need.input_words, need.eb_in)?;
        let col = match vs.window {
            Some(_) => self.alloc(core, (need.chunk * plan.g * plan.k) as u64)?,
            None => 0,
        };
        let tbuf = match vs.window {
            Some(_) => self.alloc(core, (need.tbuf * m) as u64)?,
            None => 0,
        };
        if groups.len() == 1 {
            self.configure(s, plan, &groups[0])?;
        }
        for &(a, b) in &bands {
            let at = ReplicaScratch { core, v0: a, x_in, acc, col, tmp, z };
            let chunks = segments((a, b), vs.pixels, vs.chunk);
            match &vs.window {
                Some(w) => {
                    let p0 = a % vs.pixels;
                    let img = a / vs.pixels;
                    let cb = conv_band(w, (p0, p0 + b - a))
                        .ok_or_else(|| self.err("a band of the conv reads only padding"))?;
                    self.load_rows(core, s.input, (img, cb.lo, cb.hi), w, x_in);
                    for (gi, pg) in groups.iter().enumerate() {
                        if groups.len() > 1 {
                            self.configure(s, plan, pg)?;
                        }
                        for &(c0, c1) in &chunks {
                            // Only the first group's pass fills the vectors when one chunk
                            // covers the band.
                            if gi == 0 || chunks.len() > 1 {
                                let entry = WindowEntry {
                                    first_position: cb.window.first_position + (c0 - a) as u32,
                                    positions: (c1 - c0) as u32,
                                    ..cb.window.clone()
                                };
                                let window = Self::table(&mut self.windows, entry)?;
                                self.push(
                                    core,
                                    Instr::Im2col { window, src: x_in, dst: col, pad: z },
                                );
                            }
                            self.mvm_chunk(plan, &at, pg, (c0, c1), col);
                        }
                    }
                }
                None => {
                    let (k, eb) = (plan.g * plan.k, self.bytes_of(s.input));
                    let src = self.addr[s.input] + (a * k) as u32;
                    let len = ((b - a) * k) as u32;
                    self.push(core, Instr::Load { dst: x_in, src, len, elem_bytes: eb });
                    for pg in groups {
                        if groups.len() > 1 {
                            self.configure(s, plan, pg)?;
                        }
                        self.mvm_chunk(plan, &at, pg, (a, b), x_in);
                    }
                }
            }
            let len = ((b - a) * m) as u32;
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
            match vs.window {
                None => {
                    let (eb, out) = (self.bytes_of(s.output), self.addr[s.output]);
                    let dst = out + (a * m) as u32;
                    self.push(core, Instr::Store { dst, src: acc, len, elem_bytes: eb });
                }
                Some(_) => self.store_band(core, (acc, tbuf), (a, b), vs.pixels, m, s.output)?,
            }
        }
        Ok(())
    }

    /// Input rows `lo..hi` of image `img` of a conv's input (`w` its whole window),
    /// channel-first (`[c][rows][w]`) at `dst`: one `load` per channel, one in all when the
    /// rows are the whole image.
    fn load_rows(
        &mut self,
        core: u16,
        input: Buf,
        (img, lo, hi): (usize, usize, usize),
        w: &WindowEntry,
        dst: u32,
    ) {
        let (c, h, wd) = (w.channels as usize, w.height as usize, w.width as usize);
        let eb = self.bytes_of(input);
        let base = self.addr[input] as usize + img * c * h * wd;
        let rows = hi - lo;
        if rows == h {
            let len = (c * h * wd) as u32;
            self.push(core, Instr::Load { dst, src: base as u32, len, elem_bytes: eb });
            return;
        }
        for ch in 0..c {
            let load = Instr::Load {
                dst: dst + (ch * rows * wd) as u32,
                src: (base + ch * h * wd + lo * wd) as u32,
                len: (rows * wd) as u32,
                elem_bytes: eb,
            };
            self.push(core, load);
        }
    }

    /// The codes of band `a..b` (vector-major at `acc`, one image) to the program's
    /// channel-first output, through `tbuf`.
    fn store_band(
        &mut self,
        core: u16,
        (acc, tbuf): (u32, u32),
        (a, b): (usize, usize),
        pixels: usize,
        m: usize,
        output: Buf,
    ) -> Result<()> {
        let (eb, out) = (self.bytes_of(output), self.addr[output]);
        let (img, p0, len_p) = (a / pixels, a % pixels, b - a);
        let entry = PermEntry { shape: vec![len_p as u32, m as u32], perm: vec![1, 0] };
        let table = Self::table(&mut self.perms, entry)?;
        self.push(core, Instr::Transpose { table, src: acc, dst: tbuf });
        let img_base = out + (img * m * pixels) as u32;
        if len_p == pixels {
            let len = (m * pixels) as u32;
            self.push(core, Instr::Store { dst: img_base, src: tbuf, len, elem_bytes: eb });
            return Ok(());
        }
        for n in 0..m {
            self.push(
                core,
                Instr::Store {
                    dst: img_base + (n * pixels + p0) as u32,
                    src: tbuf + (n * len_p) as u32,
                    len: len_p as u32,
                    elem_bytes: eb,
                },
            );
        }
        Ok(())
    }
}
