//! Conv and Gemm steps executed as the crossbar computes them (`docs/hardware-model.md` §1 and §3;
//! the spec is the doc comment of [`cimc_backends::program::Crossbar`]).
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

pub(crate) mod kernel;
mod lanes16;
mod run;

pub(crate) use run::{
    input_planes, run, run_vectors, run_with, scatter, source_of, vector_values, Outputs, Planes,
    PlanesLayout, Source, WindowView,
};

use cimc_backends::program::{BufferDecl, Crossbar, Elem, MatrixKind, Step};
use cimc_ir::WeightEncoding;
use rayon::prelude::*;

/// ADC statistics of a program's crossbar steps, accumulated over runs
/// ([`super::ProgramRunner::run_with_adc_stats`]), for calibrating the ADC ranges (§3).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdcStats {
    /// One entry per program step: `Some` for a crossbar step, `None` otherwise.
    pub steps: Vec<Option<StepAdcStats>>,
}

/// The conversions of one crossbar step.
///
/// Two kinds: a full record ([`PreparedCrossbar::new_stats`]: the histogram of every partial
/// sum, one scattered increment per conversion) and a counting record
/// ([`StepAdcStats::counting`]: an empty histogram, and per level how many conversions saw a
/// partial sum at least that large — a vector compare and a mask popcount per 32 conversions).
/// The ADC calibration needs only the counts of a few levels (`passes/src/adc_calibrate.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct StepAdcStats {
    /// `histogram[P]`: how many conversions saw the partial sum `P` (before the ADC); length
    /// `p_max(rows) + 1`; empty in a counting record.
    pub histogram: Vec<u64>,
    pub conversions: u64,
    /// Conversions where `(P + half) >> e > adc_top` with the step's current `e`.
    pub clipped: u64,
    /// The levels a counting record counts (empty in a full record).
    pub levels: Vec<u64>,
    /// `at_least[i]`: conversions whose partial sum `P ≥ levels[i]`.
    pub at_least: Vec<u64>,
}

impl StepAdcStats {
    /// An empty counting record: no histogram, the conversions at or above each of `levels`
    /// counted. A run adds to it as to a full record
    /// ([`super::ProgramRunner::run_with_adc_stats`]).
    pub fn counting(levels: Vec<u64>) -> StepAdcStats {
        let at_least = vec![0; levels.len()];
        StepAdcStats { histogram: Vec::new(), conversions: 0, clipped: 0, levels, at_least }
    }

    /// Conversions whose partial sum is at least `level`: from the histogram, or from a
    /// counting record's count of that level (`None` when the record does not count it).
    pub fn count_at_least(&self, level: u64) -> Option<u64> {
        if level == 0 {
            return Some(self.conversions);
        }
        if !self.histogram.is_empty() {
            let from = (level.min(self.histogram.len() as u64)) as usize;
            return Some(self.histogram[from..].iter().sum());
        }
        self.levels.iter().position(|&l| l == level).map(|i| self.at_least[i])
    }

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
    pub(crate) x: Crossbar,
    /// `is_lossless(K)`: the exact GEMM gives the same result.
    pub(crate) lossless: bool,
    /// Rows of one group's matrix.
    pub(crate) k: usize,
    pub(crate) groups: usize,
    /// Outputs per group.
    pub(crate) mg: usize,
    pub(crate) tiles: usize,
    pub(crate) words: usize,
    pub(crate) input_bits: usize,
    pub(crate) input_slices: usize,
    /// Physical columns per output, per group.
    pub(crate) cpo: usize,
    pub(crate) pc: usize,
    /// `pc` rounded up to whole lanes (the stride of `planes`, `e` and `half`).
    pub(crate) pc_pad: usize,
    /// `[group][tile][word][cell bit][physical column]`.
    pub(crate) planes: Vec<u64>,
    /// The same planes for the 16-bit kernel (`lanes16.rs`, when the numbers fit it):
    /// `[group][tile][column chunk][word16][cell bit][32 columns]`; else empty.
    pub(crate) planes16: Vec<u16>,
    /// `e` and `half` as u16 for the 16-bit kernel (empty without it).
    pub(crate) e16: Vec<u16>,
    pub(crate) half16: Vec<u16>,
    /// ADC exponent and half step per `[group][physical column]`.
    pub(crate) e: Vec<u64>,
    pub(crate) half: Vec<u64>,
    /// Per column slot of an output: subtract (the `−` column) and the shift `j·cell_bits`.
    pub(crate) fold: Vec<(bool, u32)>,
    /// Per output: `bias + (input_min − z_x)·Σ_k w[k,n]`.
    pub(crate) konst: Vec<i64>,
    /// `2^(weight_bits−1)` (offset and flipped encodings), else 0: times `Σ_k v[k]`,
    /// subtracted.
    pub(crate) offset: i64,
    /// Flipped encoding: per `[group][tile][physical column (pc_pad)]`, whether the column
    /// holds the complements of its cells in that row tile ([`cimc_ir::CrossbarGeometry::flips`]);
    /// empty for the other encodings.
    pub(crate) flip: Vec<bool>,
    /// Flipped encoding: per `[group][tile][output of the group]`, `(2^b_c − 1)·Σ 2^(j·b_c)`
    /// over the output's flipped slices `j` in that tile: times the tile's `Σ_k v[k]`, added
    /// (`docs/hardware-model.md` §1); empty for the other encodings.
    pub(crate) flip_coef: Vec<i64>,
    pub(crate) input_min: i32,
    pub(crate) vmax: u32,
    /// Per row `k`: its place in a vector's padded input buffer `[tile][word][64 rows]`.
    pub(crate) kpos: Vec<u32>,
}

impl PreparedCrossbar {
    /// Physical columns per kernel block: a multiple of the columns of one output and of the
    /// lanes, about [`BLOCK_COLUMNS`].
    fn block_columns(&self) -> usize {
        let unit = self.cpo * kernel::LANES / gcd(self.cpo, kernel::LANES);
        (BLOCK_COLUMNS / unit).max(1) * unit
    }

    /// What its input planes depend on ([`run::Planes`]).
    pub(crate) fn planes_layout(&self) -> run::PlanesLayout {
        [
            self.k as i64,
            self.x.geometry.rows as i64,
            self.groups as i64,
            self.input_bits as i64,
            self.input_min as i64,
        ]
    }

    /// An empty statistics record of the right size, or an error when it would be too large.
    pub(crate) fn new_stats(&self) -> Result<StepAdcStats, String> {
        new_stats(&self.x)
    }
}

/// An empty statistics record for crossbar `x` (a histogram of every partial sum a tile can
/// give), or an error when it would be too large.
pub(crate) fn new_stats(x: &Crossbar) -> Result<StepAdcStats, String> {
    let p_max = x.p_max(x.geometry.rows);
    if p_max >= MAX_HISTOGRAM {
        return Err(format!(
            "crossbar: partial sums up to {p_max} are too many to histogram (limit {MAX_HISTOGRAM})"
        ));
    }
    Ok(StepAdcStats {
        histogram: vec![0; p_max as usize + 1],
        conversions: 0,
        clipped: 0,
        levels: Vec::new(),
        at_least: Vec::new(),
    })
}

/// Checks a crossbar step against its weights and input type and converts the weights to bit
/// planes.
pub(crate) fn prepare(
    s: &Step,
    x: &Crossbar,
    bufs: &[BufferDecl],
) -> Result<PreparedCrossbar, String> {
    let ms = checked_step(s, x, bufs)?;
    let (k, m) = ms.k_and_m();
    let w_at = |kk: usize, n: usize| -> i32 { ms.weight_at((k, m), kk, n) };
    let (z, bias, groups) = (ms.input_zero_point, ms.bias, ms.groups());
    prepare_matrix(&MatrixSpec { x, k, m, groups, w_at, input_zero: z, bias })
}

/// What [`prepare`] checks, without converting the weights.
pub(crate) fn check(s: &Step, x: &Crossbar, bufs: &[BufferDecl]) -> Result<(), String> {
    let ms = checked_step(s, x, bufs)?;
    let (k, m) = ms.k_and_m();
    let w_at = |kk: usize, n: usize| -> i32 { ms.weight_at((k, m), kk, n) };
    let (z, bias, groups) = (ms.input_zero_point, ms.bias, ms.groups());
    check_matrix(&MatrixSpec { x, k, m, groups, w_at, input_zero: z, bias })
}

/// As [`prepare`] for a step [`check`] accepted (a lean runner checks every step when it is
/// built and converts it when it runs): the weights converted without a second check.
pub(crate) fn prepare_checked(s: &Step, x: &Crossbar) -> Result<PreparedCrossbar, String> {
    let ms = s.as_matrix().ok_or("crossbar execution of a step that is not Conv or Gemm")?;
    let (k, m) = ms.k_and_m();
    let w_at = |kk: usize, n: usize| -> i32 { ms.weight_at((k, m), kk, n) };
    let (z, bias, groups) = (ms.input_zero_point, ms.bias, ms.groups());
    Ok(convert_matrix(&MatrixSpec { x, k, m, groups, w_at, input_zero: z, bias }))
}

/// Step `s` as a matrix, its input codes and weight shapes checked against crossbar `x`.
fn checked_step<'a>(
    s: &'a Step,
    x: &Crossbar,
    bufs: &[BufferDecl],
) -> Result<cimc_backends::program::MatrixStep<'a>, String> {
    x.validate().map_err(|m| format!("crossbar: {m}"))?;
    let ms = s.as_matrix().ok_or("crossbar execution of a step that is not Conv or Gemm")?;
    let (input, weights, bias, groups) = (ms.input, ms.weights, ms.bias, ms.groups());
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

    // The weight matrix w[k, n] of each group.
    if matches!(ms.kind, MatrixKind::Gemm) && weights.shape.len() != 2 {
        return Err(format!("gemm weights of shape {:?}, [K, N] expected", weights.shape));
    }
    let (k, m) = ms.k_and_m();
    if groups == 0 || m % groups != 0 || weights.data.len() != k * m || bias.len() != m {
        return Err(format!(
            "weights {:?} with {} biases do not make {groups} group(s)",
            weights.shape,
            bias.len()
        ));
    }
    Ok(ms)
}

/// What a crossbar matrix is prepared from: the numerics, the weights of every conv group and
/// the digital terms (`docs/hardware-model.md` §1).
pub(crate) struct MatrixSpec<'a, W> {
    pub x: &'a Crossbar,
    /// Rows of one conv group's matrix.
    pub k: usize,
    /// Outputs over all conv groups (`m / groups` per group).
    pub m: usize,
    pub groups: usize,
    /// `w_at(row, output)`: the weight code on row `row` of output `output`'s conv group.
    pub w_at: W,
    /// `z_x`, for the input-offset term `(input_min − z_x)·Σ_k w[k,n]`.
    pub input_zero: i32,
    /// Added to every output's accumulator (`m` values); empty for none.
    pub bias: &'a [i64],
}

/// Checks a crossbar matrix (numerics, weights against the magnitude bits, column groups
/// against the ADC steps, the accumulator's range) and converts its weights to bit planes: the
/// one preparation of the program's crossbar steps and of the stream simulator's groups.
pub(crate) fn prepare_matrix<W: Fn(usize, usize) -> i32 + Sync>(
    spec: &MatrixSpec<'_, W>,
) -> Result<PreparedCrossbar, String> {
    check_matrix(spec)?;
    Ok(convert_matrix(spec))
}

/// What [`prepare_matrix`] checks: the numerics, the weights against the magnitude bits, the
/// column groups against the ADC steps, the accumulator's range.
fn check_matrix<W: Fn(usize, usize) -> i32 + Sync>(spec: &MatrixSpec<'_, W>) -> Result<(), String> {
    let MatrixSpec { x, k, m, groups, ref w_at, input_zero: z, bias } = *spec;
    x.validate().map_err(|m| format!("crossbar: {m}"))?;
    let ib = x.input_bits;
    let vmax = ((1u64 << ib) - 1) as i64;
    if !(0..=vmax).contains(&(z as i64 - x.input_min as i64)) {
        return Err(format!(
            "crossbar: the input zero point {z} (padding) minus input_min {} does not fit {ib} input bits",
            x.input_min
        ));
    }
    if groups == 0 || m % groups != 0 || (!bias.is_empty() && bias.len() != m) {
        return Err(format!(
            "{m} outputs with {} biases do not make {groups} group(s)",
            bias.len()
        ));
    }
    // Magnitudes.
    let mb = x.magnitude_bits;
    let umax = (1i64 << mb) - 1;
    let half_range = 1i64 << (x.weight_bits - 1);
    let magnitude = |w: i32, neg: bool| magnitude(x, w, neg);
    for n in 0..m {
        for kk in 0..k {
            let w = w_at(kk, n);
            let ok = match x.geometry.encoding {
                WeightEncoding::Differential => (w as i64).abs() <= umax,
                WeightEncoding::Offset | WeightEncoding::Flipped => {
                    (0..=umax).contains(&magnitude(w, false))
                }
            };
            if !ok {
                return Err(format!(
                    "crossbar: weight code {w} (output {n}, row {kk}) does not fit {mb} magnitude bits ({:?} encoding, weight_bits {})",
                    x.geometry.encoding, x.weight_bits
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
        let needed = x.column_group_of(m - 1, m / groups) + 1;
        if x.adc_step.len() < needed {
            return Err(format!(
                "crossbar: {} ADC steps for {needed} column groups (one per layer or one per column group)",
                x.adc_step.len()
            ));
        }
    }
    Ok(())
}

/// The bit planes and per-column numbers of a matrix [`check_matrix`] accepted.
fn convert_matrix<W: Fn(usize, usize) -> i32 + Sync>(spec: &MatrixSpec<'_, W>) -> PreparedCrossbar {
    let MatrixSpec { x, k, m, groups, ref w_at, input_zero: z, bias } = *spec;
    let ib = x.input_bits;
    let vmax = ((1u64 << ib) - 1) as i64;
    let mg = m / groups;
    let bias_of = |n: usize| bias.get(n).copied().unwrap_or(0);
    let mb = x.magnitude_bits;
    let half_range = 1i64 << (x.weight_bits - 1);
    let magnitude = |w: i32, neg: bool| magnitude(x, w, neg);

    let sw = x.weight_slices() as usize;
    let cb = x.geometry.cell_bits as usize;
    let cpo = x.columns_per_output();
    let signs = cpo / sw;
    let pc = mg * cpo;
    // The planes' stride: whole lanes, the columns past `pc` zero.
    let pc_pad = pc.div_ceil(kernel::LANES) * kernel::LANES;
    let rows = x.geometry.rows;
    let tiles = k.div_ceil(rows);
    let words = k.min(rows).div_ceil(64);
    // One (group, tile) block of planes at a time, in parallel: `[word][cell bit][column]`.
    let mut planes = vec![0u64; groups * tiles * words * cb * pc_pad];
    let flipped = x.geometry.encoding == WeightEncoding::Flipped;
    let mut flip = vec![false; if flipped { groups * tiles * pc_pad } else { 0 }];
    if flipped {
        let tile = TileSpec { x, w_at, k, mg, words, pc_pad };
        planes
            .par_chunks_mut((words * cb * pc_pad).max(1))
            .zip(flip.par_chunks_mut(pc_pad.max(1)))
            .enumerate()
            .for_each(|(gt, (block, flags))| tile.flipped(gt / tiles, gt % tiles, block, flags));
    }
    planes.par_chunks_mut((words * cb * pc_pad).max(1)).enumerate().for_each(|(gt, block)| {
        if flipped {
            return;
        }
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
    let half: Vec<u64> = e.iter().map(|&e| if e == 0 { 0 } else { 1u64 << (e - 1) }).collect();
    // The 16-bit kernel's layout, when every number of the layer fits it. The u64 planes stay:
    // the noise model samples its cells from them (`noise/sample.rs`).
    let fits16 = lanes16::fits(
        x.p_max(k.min(rows)),
        x.adc_top(),
        e.iter().copied(),
        x.input_slices() as usize,
        x.geometry.dac_bits as usize,
        cb,
    );
    let (planes, planes16, e16, half16) = if fits16 {
        let per_group = tiles * words * cb * pc_pad;
        let mut p16 = Vec::with_capacity(planes.len());
        for g in planes.chunks_exact(per_group.max(1)) {
            p16.extend(lanes16::repack(g, tiles, words, cb, pc_pad));
        }
        let to16 = |v: &[u64]| v.iter().map(|&x| x as u16).collect::<Vec<u16>>();
        (planes, p16, to16(&e), to16(&half))
    } else {
        (planes, Vec::new(), Vec::new(), Vec::new())
    };
    let fold = (0..cpo).map(|slot| (slot >= sw, ((slot % sw) * cb) as u32)).collect();
    let konst = (0..m)
        .map(|n| {
            let colsum: i64 = (0..k).map(|kk| w_at(kk, n) as i64).sum();
            bias_of(n) + (x.input_min as i64 - z as i64) * colsum
        })
        .collect();
    let flip_coef = if flipped {
        let cmax = x.geometry.cell_max() as i64;
        (0..groups * tiles * mg)
            .map(|gtn| {
                let (gt, nl) = (gtn / mg, gtn % mg);
                let cols = &flip[gt * pc_pad + nl * cpo..][..cpo];
                cols.iter().enumerate().filter(|&(_, &f)| f).map(|(j, _)| cmax << (j * cb)).sum()
            })
            .collect()
    } else {
        Vec::new()
    };
    let ibu = ib as usize;
    let kpos = (0..k).map(|kk| ((kk / rows) * words * 64 + kk % rows) as u32).collect();
    PreparedCrossbar {
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
        planes16,
        e16,
        half16,
        e,
        half,
        fold,
        konst,
        offset: match x.geometry.encoding {
            WeightEncoding::Differential => 0,
            WeightEncoding::Offset | WeightEncoding::Flipped => half_range,
        },
        flip,
        flip_coef,
        input_min: x.input_min,
        vmax: vmax as u32,
        kpos,
    }
}

/// The magnitude a cell pair holds of weight code `w`: its positive or (`neg`) negative part
/// when differential, `w + 2^(weight_bits − 1)` with an offset.
fn magnitude(x: &Crossbar, w: i32, neg: bool) -> i64 {
    match (x.geometry.encoding, neg) {
        (WeightEncoding::Differential, false) => (w as i64).max(0),
        (WeightEncoding::Differential, true) => (-(w as i64)).max(0),
        (WeightEncoding::Offset | WeightEncoding::Flipped, _) => {
            w as i64 + (1i64 << (x.weight_bits - 1))
        }
    }
}

/// What the planes of one row tile of the flipped encoding are made from.
struct TileSpec<'a, W> {
    x: &'a Crossbar,
    w_at: &'a W,
    k: usize,
    mg: usize,
    words: usize,
    pc_pad: usize,
}

impl<W: Fn(usize, usize) -> i32> TileSpec<'_, W> {
    /// The planes `[word][cell bit][column]` of row tile `t` of conv group `g` with the flipped
    /// encoding (§1): each slice column holds its cells or, when the flip rule
    /// ([`cimc_ir::CrossbarGeometry::flips`], the one rule) says so for this tile, their
    /// complements `2^b_c − 1 − u_j`; `flags[column]` records the choice. Rows past the matrix
    /// hold 0.
    fn flipped(&self, g: usize, t: usize, block: &mut [u64], flags: &mut [bool]) {
        let x = self.x;
        let rows = x.geometry.rows;
        let (r0, r1) = (t * rows, ((t + 1) * rows).min(self.k));
        let cb = x.geometry.cell_bits as usize;
        let cmax = x.geometry.cell_max() as u32;
        let sw = x.weight_slices() as usize;
        let mut u = vec![0u32; r1 - r0];
        let mut cells = [0u32; 64];
        for nl in 0..self.mg {
            let n = g * self.mg + nl;
            for (r, m) in u.iter_mut().enumerate() {
                *m = magnitude(x, (self.w_at)(r0 + r, n), false) as u32;
            }
            for j in 0..sw {
                let col = nl * sw + j;
                let cell = |m: u32| (m >> (j * cb)) & cmax;
                let sum: u64 = u.iter().map(|&m| cell(m) as u64).sum();
                let flip = x.geometry.flips(r1 - r0, sum);
                flags[col] = flip;
                for word in 0..self.words {
                    cells.fill(0);
                    for (c, &m) in cells.iter_mut().zip(u.iter().skip(word * 64)) {
                        *c = if flip { cmax - cell(m) } else { cell(m) };
                    }
                    for b in 0..cb {
                        block[(word * cb + b) * self.pc_pad + col] =
                            kernel::bit_plane(&cells, b as u32);
                    }
                }
            }
        }
    }
}

/// `Σ 2^a · popcount(plane)` over the input planes `[input bit][word]` of one vector's row
/// tile: the tile's `Σ_k v[k]`, exact (the digital sum the flipped encoding's correction needs).
pub(crate) fn tile_sum(xp: &[u64], words: usize) -> i64 {
    xp.chunks_exact(words.max(1))
        .enumerate()
        .map(|(a, plane)| plane.iter().map(|w| w.count_ones() as i64).sum::<i64>() << a)
        .sum()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
