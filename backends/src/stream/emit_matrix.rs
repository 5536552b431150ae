//! Emission of Conv and Gemm steps: crossbar groups (one per replica, or one per part of a layer
//! that does not fit the chip), `im2col` chunks, `mvm`, `requant`, and the layout change from
//! the crossbar's vector-major accumulators to the program's channel-first tensors.

use super::{window_entry, Emitter};
use crate::error::Result;
use crate::isa::Instr;
use crate::program::{Crossbar, Elem, Step};
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
struct PlannedGroup {
    group: u16,
    core: u16,
    part: Part,
}

/// How a matrix step is mapped: its numerics and its groups, per replica.
pub(super) struct MatrixPlan {
    x: Crossbar,
    /// Rows per conv group, conv groups, outputs per conv group.
    k: usize,
    g: usize,
    mg: usize,
    /// `replicas[r]`: the groups of replica `r` (one in a pipelined stream; the parts of the
    /// layer, in execution order, in a layer-serial one).
    replicas: Vec<Vec<PlannedGroup>>,
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
    pub(super) fn plan_matrix(&mut self, s: &Step) -> Result<MatrixPlan> {
        let (input, weights, groups, crossbar) = match s {
            Step::Conv { input, weights, group, crossbar, .. } => {
                (*input, weights, *group, crossbar)
            }
            Step::Gemm { input, weights, crossbar, .. } => (*input, weights, 1, crossbar),
            _ => return Err(self.err("not a matrix step")),
        };
        let (k, m) = match s {
            Step::Conv { .. } => (
                weights.shape.iter().skip(1).product::<usize>(),
                weights.shape.first().copied().unwrap_or(0),
            ),
            _ => (weights.shape[0], weights.shape[1]),
        };
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
        if x.geometry.rows > u16::MAX as usize || x.geometry.cols > u16::MAX as usize {
            return Err(self.err(format!(
                "arrays of {}x{} exceed the ISA's 65535 rows or columns",
                x.geometry.rows, x.geometry.cols
            )));
        }
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
        let w_at = |kk: usize, n: usize| -> i32 {
            match s {
                Step::Conv { .. } => weights.data[n * k + kk],
                _ => weights.data[kk * m + n],
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
                            w.push(w_at(kk, cg * mg + nl));
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
    fn configure(&mut self, s: &Step, plan: &MatrixPlan, pg: &PlannedGroup) -> Result<()> {
        let z = match s {
            Step::Conv { input_zero_point, .. } | Step::Gemm { input_zero_point, .. } => {
                *input_zero_point
            }
            _ => 0,
        };
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

    pub(super) fn emit_matrix(&mut self, s: &Step, plan: &MatrixPlan) -> Result<()> {
        let (input, output, z, bias, requant) = match s {
            Step::Conv { input, output, input_zero_point, bias, requant, .. }
            | Step::Gemm { input, output, input_zero_point, bias, requant, .. } => {
                (*input, *output, *input_zero_point, bias, requant)
            }
            _ => return Err(self.err("not a matrix step")),
        };
        let (k, g, m) = (plan.k, plan.g, plan.g * plan.mg);
        let si = self.p.buffers[input].shape.clone();
        let so = self.p.buffers[output].shape.clone();
        // Vectors: per image `pixels` output positions (Conv), or the input's rows (Gemm, one
        // "image" of all rows).
        let (images, pixels, base_window) = match s {
            Step::Conv { window, group, .. } => {
                let w = window_entry(&si, &so, window, *group).map_err(|e| self.err(e))?;
                if w.k() as usize != k || w.conv_groups as usize != g {
                    return Err(self.err("conv geometry differs from its weights"));
                }
                (si[0], (w.out_height * w.out_width) as usize, Some(w))
            }
            _ => {
                let rows = self.numel(input) as usize / k;
                (1, rows, None)
            }
        };
        let vectors = images * pixels;
        let rq = RequantEntry {
            scale: vec![],
            bias: bias.clone(),
            mult: requant.mult.clone(),
            zero_point: requant.zero_point,
            lo: requant.lo,
            hi: requant.hi,
        };
        let rq = Self::table(&mut self.requants, rq)?;
        let chunk = match base_window {
            Some(_) => (self.opts.im2col_words / (g * k).max(1)).max(1),
            None => vectors.max(1),
        };
        let n_rep = plan.replicas.len();
        for (r, groups) in plan.replicas.iter().enumerate() {
            let core = groups[0].core;
            let (v0, v1) = (vectors * r / n_rep, vectors * (r + 1) / n_rep);
            if v0 == v1 {
                continue;
            }
            let x_in = self.load_buf(core, input)?;
            let acc = self.alloc(core, ((v1 - v0) * m) as u64)?;
            // Chunks of vectors that stay inside one image.
            let mut chunks = Vec::new();
            let mut v = v0;
            while v < v1 {
                let end = ((v / pixels + 1) * pixels).min(v1).min(v + chunk);
                chunks.push((v, end));
                v = end;
            }
            let longest = chunks.iter().map(|c| c.1 - c.0).max().unwrap_or(0);
            let col = match base_window {
                Some(_) => self.alloc(core, (longest * g * k) as u64)?,
                None => 0,
            };
            let tmp_len = groups
                .iter()
                .filter(|pg| pg.part.r0 > 0)
                .map(|pg| (pg.part.cg1 - pg.part.cg0) * (pg.part.n1 - pg.part.n0));
            let tmp = match tmp_len.max() {
                Some(n) => self.alloc(core, (longest * n) as u64)?,
                None => 0,
            };
            let im2col = |e: &mut Self, (c0, c1): (usize, usize)| -> Result<u32> {
                let Some(w) = &base_window else {
                    return Ok(x_in + (c0 * k) as u32);
                };
                let (b, p0) = (c0 / pixels, c0 % pixels);
                let entry = WindowEntry {
                    first_position: p0 as u32,
                    positions: (c1 - c0) as u32,
                    ..w.clone()
                };
                let window = Self::table(&mut e.windows, entry)?;
                let src = x_in + (b as u64 * w.source_len()) as u32;
                e.push(core, Instr::Im2col { window, src, dst: col, pad: z });
                Ok(col)
            };
            let mvm = |e: &mut Self, pg: &PlannedGroup, (c0, c1): (usize, usize), src: u32| {
                let count = (c1 - c0) as u32;
                let n_off = pg.part.cg0 * plan.mg + pg.part.n0;
                let np = (pg.part.cg1 - pg.part.cg0) * (pg.part.n1 - pg.part.n0);
                let at = acc + ((c0 - v0) * m + n_off) as u32;
                if pg.part.r0 == 0 {
                    e.push(core, Instr::Mvm { group: pg.group, src, dst: at, count });
                } else {
                    e.push(core, Instr::Mvm { group: pg.group, src, dst: tmp, count });
                    for i in 0..count {
                        e.push(
                            core,
                            Instr::ShiftAdd {
                                dst: at + i * m as u32,
                                src: tmp + i * np as u32,
                                len: np as u32,
                                shift: 0,
                            },
                        );
                    }
                }
            };
            if groups.len() == 1 {
                self.configure(s, plan, &groups[0])?;
                for &c in &chunks {
                    let src = im2col(self, c)?;
                    mvm(self, &groups[0], c, src);
                }
            } else if chunks.len() == 1 {
                let src = im2col(self, chunks[0])?;
                for pg in groups {
                    self.configure(s, plan, pg)?;
                    mvm(self, pg, chunks[0], src);
                }
            } else {
                for pg in groups {
                    self.configure(s, plan, pg)?;
                    for &c in &chunks {
                        let src = im2col(self, c)?;
                        mvm(self, pg, c, src);
                    }
                }
            }
            // Accumulators → codes, in place; bias and multiplier per output channel.
            let len = ((v1 - v0) * m) as u32;
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
            let eb = self.bytes_of(output);
            let out = self.addr[output];
            if base_window.is_none() {
                self.push(
                    core,
                    Instr::Store { dst: out + (v0 * m) as u32, src: acc, len, elem_bytes: eb },
                );
                continue;
            }
            // Vector-major codes `[position][channel]` → the program's `[channel][position]`,
            // one image segment at a time.
            let segs: Vec<(usize, usize)> = {
                let mut v = Vec::new();
                let mut a = v0;
                while a < v1 {
                    let end = ((a / pixels + 1) * pixels).min(v1);
                    v.push((a, end));
                    a = end;
                }
                v
            };
            let longest_seg = segs.iter().map(|s| s.1 - s.0).max().unwrap_or(0);
            let tbuf = self.alloc(core, (longest_seg * m) as u64)?;
            for (a, b_end) in segs {
                let (img, p0, len_p) = (a / pixels, a % pixels, b_end - a);
                let entry = PermEntry { shape: vec![len_p as u32, m as u32], perm: vec![1, 0] };
                let table = Self::table(&mut self.perms, entry)?;
                self.push(
                    core,
                    Instr::Transpose { table, src: acc + ((a - v0) * m) as u32, dst: tbuf },
                );
                let img_base = out + (img * m * pixels) as u32;
                if len_p == pixels {
                    self.push(
                        core,
                        Instr::Store {
                            dst: img_base,
                            src: tbuf,
                            len: (m * pixels) as u32,
                            elem_bytes: eb,
                        },
                    );
                } else {
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
                }
            }
        }
        Ok(())
    }
}
