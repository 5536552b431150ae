//! Conv and Gemm steps executed as the crossbar computes them (hardware-model §1 and §3; the
//! spec is the doc comment of [`cimc_backends::program::Crossbar`]).
//!
//! Per input vector (an im2col vector of one group for Conv, one input row for Gemm) the
//! crossbar receives `v[k] = q_x[k] − input_min`; every partial sum `P` of (row tile, input
//! slice, weight slice, physical column) goes through the ADC, then shift-and-add rebuilds the
//! accumulator in i64. When every conversion is exact ([`Crossbar::is_lossless`]) the result is
//! the exact integer product and the caller takes the GEMM path instead (unless ADC statistics
//! are collected).
//!
//! The partial sums are computed exactly by bit-plane popcounts (see [`kernel`]): at prepare
//! time every physical column's cell bits become bitmasks over each row tile's rows, packed in
//! u64 words; at run time the input vectors' bits become the same kind of masks.

mod kernel;

use super::kernels::ConvGeom;
use cimc_backends::program::{BufferDecl, Crossbar, Elem, Encoding, Requant, Step};
use rayon::prelude::*;

/// ADC statistics of a program's crossbar steps, accumulated over runs
/// ([`super::ProgramRunner::run_with_adc_stats`]), for calibrating the ADC ranges (§3).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdcStats {
    /// One entry per program step: `Some` for a crossbar step, `None` otherwise.
    pub steps: Vec<Option<StepAdcStats>>,
}

/// The conversions of one crossbar step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepAdcStats {
    /// `histogram[P]`: how many conversions saw the partial sum `P` (before the ADC); length
    /// `p_max(rows) + 1`.
    pub histogram: Vec<u64>,
    pub conversions: u64,
    /// Conversions where `(P + half) >> e > adc_top` with the step's current `e`.
    pub clipped: u64,
}

impl StepAdcStats {
    /// The fraction of conversions that clipped (0 when there were none).
    pub fn clip_rate(&self) -> f64 {
        if self.conversions == 0 {
            0.0
        } else {
            self.clipped as f64 / self.conversions as f64
        }
    }

    /// The smallest `P` such that at least the fraction `q` (0..=1) of the conversions saw a
    /// partial sum `≤ P` (0 when there were none).
    pub fn percentile(&self, q: f64) -> u64 {
        let need = (q.clamp(0.0, 1.0) * self.conversions as f64).ceil() as u64;
        let mut seen = 0u64;
        for (p, &c) in self.histogram.iter().enumerate() {
            seen += c;
            if seen >= need.max(1) {
                return p as u64;
            }
        }
        self.histogram.len().saturating_sub(1) as u64
    }
}

/// The largest histogram [`StepAdcStats`] allocates (entries).
const MAX_HISTOGRAM: u64 = 1 << 22;

/// Physical columns per block of the kernel, about (a multiple of the columns of one output
/// and of the lanes).
const BLOCK_COLUMNS: usize = 256;

/// A crossbar step's weights as bit planes, with everything per column the kernel needs.
pub(crate) struct PreparedCrossbar {
    x: Crossbar,
    /// `is_lossless(K)`: the exact GEMM gives the same result.
    pub(crate) lossless: bool,
    /// Rows of one group's matrix.
    k: usize,
    groups: usize,
    /// Outputs per group.
    mg: usize,
    tiles: usize,
    words: usize,
    input_bits: usize,
    input_slices: usize,
    /// Physical columns per output, per group.
    cpo: usize,
    pc: usize,
    /// `pc` rounded up to whole lanes (the stride of `planes`, `e` and `half`).
    pc_pad: usize,
    /// `[group][tile][word][cell bit][physical column]`.
    planes: Vec<u64>,
    /// ADC exponent and half step per `[group][physical column]`.
    e: Vec<u64>,
    half: Vec<u64>,
    /// Per column slot of an output: subtract (the `−` column) and the shift `j·cell_bits`.
    fold: Vec<(bool, u32)>,
    /// Per output: `bias + (input_min − z_x)·Σ_k w[k,n]`.
    konst: Vec<i64>,
    /// `2^(weight_bits−1)` (offset encoding), else 0: times `Σ_k v[k]`, subtracted.
    offset: i64,
    input_min: i32,
    vmax: u32,
    /// Per row `k`: its place in a vector's padded input buffer `[tile][word][64 rows]`.
    kpos: Vec<u32>,
}

impl PreparedCrossbar {
    /// Physical columns per kernel block: a multiple of the columns of one output and of the
    /// lanes, about [`BLOCK_COLUMNS`].
    fn block_columns(&self) -> usize {
        let unit = self.cpo * kernel::LANES / gcd(self.cpo, kernel::LANES);
        (BLOCK_COLUMNS / unit).max(1) * unit
    }

    /// An empty statistics record of the right size, or an error when it would be too large.
    pub(crate) fn new_stats(&self) -> Result<StepAdcStats, String> {
        let p_max = self.x.p_max(self.x.rows);
        if p_max >= MAX_HISTOGRAM {
            return Err(format!(
                "crossbar: partial sums up to {p_max} are too many to histogram (limit {MAX_HISTOGRAM})"
            ));
        }
        Ok(StepAdcStats { histogram: vec![0; p_max as usize + 1], conversions: 0, clipped: 0 })
    }
}

/// Checks a crossbar step against its weights and input type and converts the weights to bit
/// planes.
pub(crate) fn prepare(
    s: &Step,
    x: &Crossbar,
    bufs: &[BufferDecl],
) -> Result<PreparedCrossbar, String> {
    x.validate().map_err(|m| format!("crossbar: {m}"))?;
    let (input, z, weights, bias, groups) = match s {
        Step::Conv { input, input_zero_point, weights, bias, group, .. } => {
            (*input, *input_zero_point, weights, bias, *group)
        }
        Step::Gemm { input, input_zero_point, weights, bias, .. } => {
            (*input, *input_zero_point, weights, bias, 1)
        }
        _ => return Err("crossbar execution of a step that is not Conv or Gemm".into()),
    };
    let decl = &bufs[input];
    let Elem::Code(ct) = decl.elem else {
        return Err(format!("input buffer '{}' holds f32 values, codes expected", decl.name));
    };
    let ib = x.input_bits;
    let vmax = ((1u64 << ib) - 1) as i64;
    let (lo, hi) = ct.range();
    let fits = |q: i32| (0..=vmax).contains(&(q as i64 - x.input_min as i64));
    if !fits(lo) || !fits(hi) {
        return Err(format!(
            "crossbar: input codes [{lo}, {hi}] minus input_min {} do not fit {ib} input bits",
            x.input_min
        ));
    }
    if !fits(z) {
        return Err(format!(
            "crossbar: the input zero point {z} (padding) minus input_min {} does not fit {ib} input bits",
            x.input_min
        ));
    }

    // The weight matrix w[k, n] of each group.
    let (k, m) = match s {
        Step::Conv { .. } => (
            weights.shape.iter().skip(1).product::<usize>(),
            weights.shape.first().copied().unwrap_or(0),
        ),
        _ => {
            if weights.shape.len() != 2 {
                return Err(format!("gemm weights of shape {:?}, [K, N] expected", weights.shape));
            }
            (weights.shape[0], weights.shape[1])
        }
    };
    if groups == 0 || m % groups != 0 || weights.data.len() != k * m || bias.len() != m {
        return Err(format!(
            "weights {:?} with {} biases do not make {groups} group(s)",
            weights.shape,
            bias.len()
        ));
    }
    let mg = m / groups;
    let w_at = |kk: usize, n: usize| -> i32 {
        match s {
            Step::Conv { .. } => weights.data[n * k + kk],
            _ => weights.data[kk * m + n],
        }
    };

    // Magnitudes.
    let mb = x.magnitude_bits;
    let umax = (1i64 << mb) - 1;
    let half_range = 1i64 << (x.weight_bits - 1);
    let magnitude = |w: i32, neg: bool| -> i64 {
        match (x.encoding, neg) {
            (Encoding::Differential, false) => (w as i64).max(0),
            (Encoding::Differential, true) => (-(w as i64)).max(0),
            (Encoding::Offset, _) => w as i64 + half_range,
        }
    };
    for n in 0..m {
        for kk in 0..k {
            let w = w_at(kk, n);
            let ok = match x.encoding {
                Encoding::Differential => (w as i64).abs() <= umax,
                Encoding::Offset => (0..=umax).contains(&magnitude(w, false)),
            };
            if !ok {
                return Err(format!(
                    "crossbar: weight code {w} (output {n}, row {kk}) does not fit {mb} magnitude bits ({:?} encoding, weight_bits {})",
                    x.encoding, x.weight_bits
                ));
            }
        }
    }
    // The accumulator stays far inside i64: |A(P)| ≤ 2P, so every term is at most twice the
    // exact product's.
    let bound = bias.iter().map(|b| b.unsigned_abs() as u128).max().unwrap_or(0)
        + 4 * (vmax as u128 + 1) * k as u128 * (umax + half_range) as u128;
    if bound >= 1u128 << 62 {
        return Err(format!("crossbar: K = {k} with these code widths could overflow i64"));
    }

    // Column groups and steps.
    if x.adc_step.len() != 1 && m > 0 {
        let needed = x.column_group_of(m - 1, mg) + 1;
        if x.adc_step.len() < needed {
            return Err(format!(
                "crossbar: {} ADC steps for {needed} column groups (one per layer or one per column group)",
                x.adc_step.len()
            ));
        }
    }

    let sw = x.weight_slices() as usize;
    let cb = x.cell_bits as usize;
    let cpo = x.columns_per_output();
    let signs = cpo / sw;
    let pc = mg * cpo;
    // The planes' stride: whole lanes, the columns past `pc` zero.
    let pc_pad = pc.div_ceil(kernel::LANES) * kernel::LANES;
    let rows = x.rows;
    let tiles = k.div_ceil(rows);
    let words = k.min(rows).div_ceil(64);
    // One (group, tile) block of planes at a time, in parallel: `[word][cell bit][column]`.
    let mut planes = vec![0u64; groups * tiles * words * cb * pc_pad];
    planes.par_chunks_mut((words * cb * pc_pad).max(1)).enumerate().for_each(|(gt, block)| {
        let (g, t) = (gt / tiles, gt % tiles);
        let mut u = [0u32; 64];
        for nl in 0..mg {
            let n = g * mg + nl;
            for s in 0..signs {
                for word in 0..words {
                    // The magnitudes of the word's 64 rows (0 past the tile's end).
                    let r0 = t * rows + word * 64;
                    let r1 = (r0 + 64).min(((t + 1) * rows).min(k));
                    u.fill(0);
                    for kk in r0..r1 {
                        u[kk - r0] = magnitude(w_at(kk, n), s == 1) as u32;
                    }
                    for j in 0..sw {
                        let col = nl * cpo + s * sw + j;
                        for b in 0..cb.min(mb as usize - j * cb) {
                            block[(word * cb + b) * pc_pad + col] =
                                kernel::bit_plane(&u, (j * cb + b) as u32);
                        }
                    }
                }
            }
        }
    });
    let mut e = Vec::with_capacity(groups * pc_pad);
    for g in 0..groups {
        for nl in 0..mg {
            let step = x.step_of(g * mg + nl, mg) as u64;
            e.extend(std::iter::repeat_n(step, cpo));
        }
        e.resize((g + 1) * pc_pad, 0);
    }
    let half = e.iter().map(|&e| if e == 0 { 0 } else { 1u64 << (e - 1) }).collect();
    let fold = (0..cpo).map(|slot| (slot >= sw, ((slot % sw) * cb) as u32)).collect();
    let konst = (0..m)
        .map(|n| {
            let colsum: i64 = (0..k).map(|kk| w_at(kk, n) as i64).sum();
            bias[n] + (x.input_min as i64 - z as i64) * colsum
        })
        .collect();
    let ibu = ib as usize;
    let kpos = (0..k).map(|kk| ((kk / rows) * words * 64 + kk % rows) as u32).collect();
    Ok(PreparedCrossbar {
        lossless: x.is_lossless(k),
        x: x.clone(),
        k,
        groups,
        mg,
        tiles,
        words,
        input_bits: ibu,
        input_slices: x.input_slices() as usize,
        cpo,
        pc,
        pc_pad,
        planes,
        e,
        half,
        fold,
        konst,
        offset: if x.encoding == Encoding::Offset { half_range } else { 0 },
        input_min: x.input_min,
        vmax: vmax as u32,
        kpos,
    })
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Where the input vectors come from.
enum Source<'a> {
    /// Vector `b · pixels + (oy · ow + ox)`: the im2col vector of one group.
    Conv { x: &'a [i32], z: i32, geo: ConvGeom },
    /// Vector `r`: row `r` of the `[rows, K]` input.
    Gemm { x: &'a [i32] },
}

/// Runs a crossbar Conv/Gemm step; with `stats`, also counts every conversion.
pub(crate) fn run(
    s: &Step,
    p: &PreparedCrossbar,
    x: &[i32],
    si: &[usize],
    so: &[usize],
    stats: Option<&mut StepAdcStats>,
) -> Result<Vec<i32>, String> {
    let (src, nvec, requant) = match s {
        Step::Conv { input_zero_point, weights, window, group, requant, .. } => {
            let geo = ConvGeom::new(weights, window, *group, si, so, x.len())?;
            let nvec = geo.n * geo.oh * geo.ow;
            if geo.g != p.groups || geo.cg * geo.kh * geo.kw != p.k {
                return Err("conv geometry differs from the prepared weights".into());
            }
            (Source::Conv { x, z: *input_zero_point, geo }, nvec, requant)
        }
        Step::Gemm { requant, .. } => {
            if si.last() != Some(&p.k) {
                return Err(format!("input {si:?} does not end in K = {}", p.k));
            }
            let nvec = x.len() / p.k.max(1);
            let m = p.groups * p.mg;
            if so.iter().product::<usize>() != nvec * m {
                return Err(format!("output {so:?} is not [{nvec}, {m}]"));
            }
            (Source::Gemm { x }, nvec, requant)
        }
        _ => return Err("not a matrix step".into()),
    };
    let m = p.groups * p.mg;
    // Tasks: chunks of vectors (each reuses the weights it streams over its vectors) times
    // ranges of column blocks, enough of them to keep every thread busy when there are few
    // vectors (late layers at batch 1).
    let threads = rayon::current_num_threads().max(1);
    let target = threads * 4;
    let chunk = nvec.div_ceil(target).clamp(nvec.min(16), 32).max(1);
    let n_chunks = nvec.div_ceil(chunk);
    let pcb = p.block_columns();
    let n_blocks = p.pc.div_ceil(pcb).max(1);
    let splits = target.div_ceil(n_chunks.max(1)).clamp(1, n_blocks);
    let per_split = n_blocks.div_ceil(splits);
    let splits = n_blocks.div_ceil(per_split);
    // Each task's statistics are added here as soon as it ends (one task's histogram alive
    // per thread, not one per task).
    let merged = stats.map(std::sync::Mutex::new);
    let hist_len = merged.as_ref().map_or(0, |st| {
        st.lock().unwrap_or_else(std::sync::PoisonError::into_inner).histogram.len()
    });
    let results: Vec<Result<(usize, usize, Vec<i32>), String>> = (0..n_chunks * splits)
        .into_par_iter()
        .map(|task| {
            let (ci, sp) = (task / splits, task % splits);
            let v0 = ci * chunk;
            let v1 = (v0 + chunk).min(nvec);
            let blocks = sp * per_split..((sp + 1) * per_split).min(n_blocks);
            let mut tally = merged.as_ref().map(|_| kernel::Tally {
                hist: vec![0; hist_len],
                conversions: 0,
                clipped: 0,
            });
            let out = run_task(p, &src, requant, v0..v1, blocks, tally.as_mut())?;
            if let (Some(st), Some(t)) = (&merged, tally) {
                let mut st = st.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (h, c) in st.histogram.iter_mut().zip(&t.hist) {
                    *h += c;
                }
                st.conversions += t.conversions;
                st.clipped += t.clipped;
            }
            Ok((v0, sp, out))
        })
        .collect();
    let mut out = vec![0i32; nvec * m];
    for r in results {
        let (v0, sp, codes) = r?;
        let nv = codes.len() / m.max(1);
        // This task's outputs: local outputs `nl0..nl1` of every group.
        let nl0 = sp * per_split * pcb / p.cpo;
        let nl1 = (((sp + 1) * per_split * pcb).min(p.pc) / p.cpo).min(p.mg);
        for vi in 0..nv {
            // Where output n of this vector goes: `base + n · step`.
            let (base, step) = match &src {
                Source::Conv { geo, .. } => {
                    let pixels = geo.oh * geo.ow;
                    let (b, px) = ((v0 + vi) / pixels, (v0 + vi) % pixels);
                    (b * m * pixels + px, pixels)
                }
                Source::Gemm { .. } => ((v0 + vi) * m, 1),
            };
            for g in 0..p.groups {
                for n in g * p.mg + nl0..g * p.mg + nl1 {
                    out[base + n * step] = codes[vi * m + n];
                }
            }
        }
    }
    Ok(out)
}

/// Output codes `[vector][n]` of the vectors `vecs`, for the column blocks `blocks` of every
/// group (the other outputs are left 0).
fn run_task(
    p: &PreparedCrossbar,
    src: &Source,
    requant: &Requant,
    vecs: std::ops::Range<usize>,
    blocks: std::ops::Range<usize>,
    mut tally: Option<&mut kernel::Tally>,
) -> Result<Vec<i32>, String> {
    let (v0, v1) = (vecs.start, vecs.end);
    let nvec = v1 - v0;
    let m = p.groups * p.mg;
    let per_vec = p.tiles * p.input_bits * p.words;
    let pcb = p.block_columns();
    let mut xplanes = vec![0u64; nvec * per_vec];
    let mut sumv = vec![0i64; nvec];
    let mut colacc = vec![0i64; nvec * pcb.min(p.pc_pad)];
    let mut out = vec![0i32; nvec * m];
    let group_planes = p.tiles * p.words * p.x.cell_bits as usize * p.pc_pad;
    for g in 0..p.groups {
        xplanes.fill(0);
        fill_planes(p, src, g, v0, v1, &mut xplanes, &mut sumv)?;
        for blk_i in blocks.clone() {
            let pc0 = blk_i * pcb;
            if pc0 >= p.pc {
                break;
            }
            let pcn = pcb.min(p.pc - pc0);
            // Whole lanes: pc0 is a multiple of LANES, so this stays inside pc_pad.
            let stride = pcn.div_ceil(kernel::LANES) * kernel::LANES;
            colacc[..nvec * stride].fill(0);
            let blk = kernel::Block {
                tiles: p.tiles,
                words: p.words,
                input_bits: p.input_bits,
                dac_bits: p.x.dac_bits as usize,
                cell_bits: p.x.cell_bits as usize,
                input_slices: p.input_slices,
                adc_top: p.x.adc_top(),
                w: &p.planes[g * group_planes..][..group_planes],
                pc_total: p.pc_pad,
                pc0,
                pcn,
                e: &p.e[g * p.pc_pad + pc0..][..stride],
                half: &p.half[g * p.pc_pad + pc0..][..stride],
                xplanes: &xplanes,
                nvec,
            };
            kernel::run_block(&blk, &mut colacc, tally.as_deref_mut());
            // Shift-and-add over the weight slices (and the two signs), then the digital terms.
            for vi in 0..nvec {
                let ca = &colacc[vi * stride..][..pcn];
                for (nl, cols) in ca.chunks_exact(p.cpo).enumerate() {
                    let n = g * p.mg + pc0 / p.cpo + nl;
                    let mut acc = p.konst[n] - p.offset * sumv[vi];
                    for (&c, &(neg, sh)) in cols.iter().zip(&p.fold) {
                        let v = c << sh;
                        acc += if neg { -v } else { v };
                    }
                    out[vi * m + n] = requant.apply(acc, n);
                }
            }
        }
    }
    Ok(out)
}

/// The input planes and `Σ_k v[k]` of group `g` for the vectors `v0..v1` (planes zeroed).
fn fill_planes(
    p: &PreparedCrossbar,
    src: &Source,
    g: usize,
    v0: usize,
    v1: usize,
    xplanes: &mut [u64],
    sumv: &mut [i64],
) -> Result<(), String> {
    let (ib, words) = (p.input_bits, p.words);
    let per_vec = p.tiles * ib * words;
    // One vector's inputs, rows padded with zeros to whole words of each tile.
    let mut vbuf = vec![0u16; p.tiles * words * 64];
    for (vi, vid) in (v0..v1).enumerate() {
        let mut sum = 0i64;
        let mut bad = None;
        let mut put = |kk: usize, q: i32| {
            let v = q.wrapping_sub(p.input_min) as u32;
            if v > p.vmax {
                bad = Some(q);
            }
            sum += v as i64;
            vbuf[p.kpos[kk] as usize] = v as u16;
        };
        match src {
            Source::Conv { x, z, geo } => {
                let pixels = geo.oh * geo.ow;
                let (b, px) = (vid / pixels, vid % pixels);
                let (oy, ox) = (px / geo.ow, px % geo.ow);
                for ci in 0..geo.cg {
                    let plane =
                        &x[(b * geo.c + g * geo.cg + ci) * geo.h * geo.w..][..geo.h * geo.w];
                    for ky in 0..geo.kh {
                        let iy =
                            (oy * geo.strides[0] + ky * geo.dil[0]) as isize - geo.pads[0] as isize;
                        let row = (iy >= 0 && (iy as usize) < geo.h)
                            .then(|| &plane[iy as usize * geo.w..][..geo.w]);
                        let k0 = (ci * geo.kh + ky) * geo.kw;
                        for kx in 0..geo.kw {
                            let ix = (ox * geo.strides[1] + kx * geo.dil[1]) as isize
                                - geo.pads[1] as isize;
                            let q = match row {
                                Some(row) if ix >= 0 && (ix as usize) < geo.w => row[ix as usize],
                                _ => *z,
                            };
                            put(k0 + kx, q);
                        }
                    }
                }
            }
            Source::Gemm { x } => {
                for (kk, &q) in x[vid * p.k..][..p.k].iter().enumerate() {
                    put(kk, q);
                }
            }
        }
        if let Some(q) = bad {
            return Err(format!(
                "crossbar: input code {q} minus input_min {} does not fit {ib} input bits",
                p.input_min
            ));
        }
        sumv[vi] = sum;
        kernel::input_planes(&vbuf, ib, words, &mut xplanes[vi * per_vec..][..per_vec]);
    }
    Ok(())
}
