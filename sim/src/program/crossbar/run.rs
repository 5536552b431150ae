//! Running a prepared crossbar matrix over input vectors: tasks of (chunk of vectors, range of
//! column blocks) on rayon's pool, each filling the vectors' bit planes and running the
//! [`kernel`] block by block, then shift-and-add and the digital terms per output.
//!
//! The vectors come from a [`Source`]: the program's Conv input (im2col on the fly), its Gemm
//! input rows, or the stream simulator's scratchpad words. What becomes of an accumulator is
//! the caller's `fin`: the program requantizes it to a code, the simulator keeps it.

use super::kernel;
use super::lanes16;
use super::{PreparedCrossbar, StepAdcStats};
use crate::program::kernels::ConvGeom;
use cimc_backends::program::{MatrixKind, Step};
use rayon::prelude::*;

/// Where the input vectors come from.
pub(crate) enum Source<'a> {
    /// Vector `b · pixels + (oy · ow + ox)`: the im2col vector of one group.
    Conv { x: &'a [i32], z: i32, geo: ConvGeom },
    /// Vector `r`: row `r` of the `[rows, K]` input.
    Gemm { x: &'a [i32] },
    /// Words of a scratchpad: row `r` of conv group `g` of vector `v` is
    /// `x[base + v·in_stride + g·group_stride + r]`.
    Words { x: &'a [i64], base: usize, in_stride: usize, group_stride: usize },
    /// Im2col vectors never written out, read from their image (the stream simulator's lazy
    /// `im2col`).
    Window(WindowView<'a>),
    /// As `Conv`, over the crossbar inputs `q − input_min` made once per step ([`inputs16`]);
    /// `pad` is the padding's.
    Inputs16 { v: &'a [u16], pad: u16, geo: &'a ConvGeom },
}

/// The im2col vectors of a window over a channel-first image `x` (`[c][h][w]`), as the
/// stream's `im2col` lays them out (per output position, rows `(channel, ky, kx)` row-major),
/// seen through a group's strides: row `r` of conv group `g` of vector `v` is element
/// `offset + g·group_stride + r` of the vector of output position `first + v`. Positions in the
/// padding read `pad`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowView<'a> {
    pub x: &'a [i64],
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Padding at the top and the left.
    pub pads: [usize; 2],
    pub out_width: usize,
    pub first: usize,
    pub offset: usize,
    pub group_stride: usize,
    pub pad: i64,
}

impl WindowView<'_> {
    /// Calls `put(r, value)` for rows `0..k` of conv group `g` of vector `v`, in order. The
    /// caller has checked that they lie inside the vector and the image inside `x`.
    #[inline]
    pub(crate) fn for_row(&self, v: usize, g: usize, k: usize, mut put: impl FnMut(usize, i64)) {
        let [kh, kw] = self.kernel;
        let pos = self.first + v;
        let (oy, ox) = (pos / self.out_width.max(1), pos % self.out_width.max(1));
        let e0 = self.offset + g * self.group_stride;
        let (mut ch, rest) = (e0 / (kh * kw), e0 % (kh * kw));
        let (mut ky, mut kx) = (rest / kw, rest % kw);
        let mut r = 0;
        while r < k {
            let plane = &self.x[ch * self.h * self.w..][..self.h * self.w];
            while ky < kh && r < k {
                let iy = (oy * self.strides[0] + ky * self.dilations[0]) as isize
                    - self.pads[0] as isize;
                let row = (iy >= 0 && (iy as usize) < self.h)
                    .then(|| &plane[iy as usize * self.w..][..self.w]);
                while kx < kw && r < k {
                    let ix = (ox * self.strides[1] + kx * self.dilations[1]) as isize
                        - self.pads[1] as isize;
                    let q = match row {
                        Some(row) if ix >= 0 && (ix as usize) < self.w => row[ix as usize],
                        _ => self.pad,
                    };
                    put(r, q);
                    r += 1;
                    kx += 1;
                }
                kx = 0;
                ky += 1;
            }
            ky = 0;
            ch += 1;
        }
    }
}

impl Source<'_> {
    /// Calls `put(r, value)` for rows `0..k` of conv group `g` of vector `v` of a stream source
    /// (`Words` or `Window`); an error when they lie outside the memory.
    pub(crate) fn for_row(
        &self,
        v: usize,
        g: usize,
        k: usize,
        mut put: impl FnMut(usize, i64),
    ) -> Result<(), String> {
        match self {
            Source::Words { x, base, in_stride, group_stride } => {
                let at = v
                    .checked_mul(*in_stride)
                    .and_then(|a| a.checked_add(g.checked_mul(*group_stride)?))
                    .and_then(|a| a.checked_add(*base));
                let row = at.and_then(|a| x.get(a..a.checked_add(k)?)).ok_or_else(|| {
                    format!("vector {v} of conv group {g} lies outside the memory")
                })?;
                for (r, &q) in row.iter().enumerate() {
                    put(r, q);
                }
            }
            Source::Window(view) => view.for_row(v, g, k, put),
            _ => return Err("not a stream source".into()),
        }
        Ok(())
    }
}

/// The results of [`run_vectors`] as its tasks left them: per task, its first vector, its
/// local outputs and its values `[vector][output]`.
pub(crate) struct Outputs<T> {
    parts: Vec<(usize, std::ops::Range<usize>, Vec<T>)>,
    groups: usize,
    mg: usize,
}

impl<T> Outputs<T> {
    /// Results of whole vectors: per part, its first vector and its values `[vector][M]`.
    pub(crate) fn whole(parts: Vec<(usize, Vec<T>)>, groups: usize, mg: usize) -> Outputs<T> {
        let parts = parts.into_iter().map(|(v0, vals)| (v0, 0..mg, vals)).collect();
        Outputs { parts, groups, mg }
    }

    /// Calls `f(vector, n0, values)` for each vector and each run of its outputs
    /// `n0 .. n0 + values.len()` (every output of every vector exactly once).
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize, usize, &[T])) {
        let m = self.groups * self.mg;
        for (v0, nl, vals) in &self.parts {
            for (vi, row) in vals.chunks_exact(m.max(1)).enumerate() {
                for g in 0..self.groups {
                    let n0 = g * self.mg + nl.start;
                    f(v0 + vi, n0, &row[n0..g * self.mg + nl.end]);
                }
            }
        }
    }
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
    let requant = s.as_matrix().ok_or("not a matrix step")?.requant;
    run_with(s, p, x, si, so, stats, &|acc, n| requant.apply(acc, n))
}

/// Runs the prepared crossbar matrix `p` over the vectors of step `s`'s input (the step gives
/// the geometry only; the weights, bias and input-offset term are `p`'s): every output's
/// accumulator goes through `fin(acc, output)`, in the output buffer's layout.
pub(crate) fn run_with<T, F>(
    s: &Step,
    p: &PreparedCrossbar,
    x: &[i32],
    si: &[usize],
    so: &[usize],
    stats: Option<&mut StepAdcStats>,
    fin: &F,
) -> Result<Vec<T>, String>
where
    T: Copy + Default + Send,
    F: Fn(i64, usize) -> T + Sync,
{
    let (src, nvec) = source_of(s, p, x, si, so)?;
    let results = run_vectors(p, &src, None, nvec, stats, fin)?;
    Ok(scatter(&src, p, nvec, &results))
}

/// The input vectors of step `s` (Conv or Gemm) over its input `x`, and how many there are.
pub(crate) fn source_of<'a>(
    s: &Step,
    p: &PreparedCrossbar,
    x: &'a [i32],
    si: &[usize],
    so: &[usize],
) -> Result<(Source<'a>, usize), String> {
    let ms = s.as_matrix().ok_or("not a matrix step")?;
    Ok(match ms.kind {
        MatrixKind::Conv { window, group } => {
            let geo = ConvGeom::new(ms.weights, window, group, si, so, x.len())?;
            let nvec = geo.n * geo.oh * geo.ow;
            if geo.g != p.groups || geo.cg * geo.kh * geo.kw != p.k {
                return Err("conv geometry differs from the prepared weights".into());
            }
            (Source::Conv { x, z: ms.input_zero_point, geo }, nvec)
        }
        MatrixKind::Gemm => {
            let nvec = crate::program::kernels::gemm_rows(si, so, x.len(), p.k, p.groups * p.mg)?;
            (Source::Gemm { x }, nvec)
        }
    })
}

/// The values of [`run_vectors`]' results in the output buffer's layout (`[N, M, oh, ow]` for
/// Conv, `[rows, M]` for Gemm).
pub(crate) fn scatter<T: Copy + Default>(
    src: &Source,
    p: &PreparedCrossbar,
    nvec: usize,
    results: &Outputs<T>,
) -> Vec<T> {
    let m = p.groups * p.mg;
    let mut out = vec![T::default(); nvec * m];
    results.for_each(|v, n0, codes| {
        // Where output n of this vector goes: `base + n · step`.
        let geo = match src {
            Source::Conv { geo, .. } => Some(geo),
            Source::Inputs16 { geo, .. } => Some(*geo),
            _ => None,
        };
        let (base, step) = match geo {
            Some(geo) => {
                let pixels = geo.oh * geo.ow;
                let (b, px) = (v / pixels, v % pixels);
                (b * m * pixels + px, pixels)
            }
            _ => (v * m, 1),
        };
        for (j, &c) in codes.iter().enumerate() {
            out[base + (n0 + j) * step] = c;
        }
    });
    out
}

/// Runs the prepared matrix over vectors `0..nvec` of `src` (or of `planes`, their input planes
/// made ahead by [`input_planes`]): every output's accumulator (with the prepared bias and
/// input-offset term) goes through `fin(acc, output)`. With `stats`, also counts every
/// conversion.
pub(crate) fn run_vectors<T, F>(
    p: &PreparedCrossbar,
    src: &Source,
    planes: Option<&Planes>,
    nvec: usize,
    stats: Option<&mut StepAdcStats>,
    fin: &F,
) -> Result<Outputs<T>, String>
where
    T: Copy + Default + Send,
    F: Fn(i64, usize) -> T + Sync,
{
    if let Some(pl) = planes {
        if pl.layout != p.planes_layout() || pl.nvec != nvec {
            return Err("input planes of another layout or another number of vectors".into());
        }
    }
    let converted = match (src, planes) {
        (Source::Conv { x, .. }, None) => inputs16(p, x),
        _ => None,
    };
    let src16 = match (src, &converted) {
        // The padding fits the input bits (checked when the weights were prepared).
        (Source::Conv { z, geo, .. }, Some(v)) => {
            Some(Source::Inputs16 { v, pad: (*z as i64 - p.input_min as i64) as u16, geo })
        }
        _ => None,
    };
    let src = src16.as_ref().unwrap_or(src);
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
    // Fewer tasks than threads (few vectors and few columns, as the parts of a layer that a
    // stream splits over groups have): smaller chunks of vectors.
    let (chunk, n_chunks) = if n_chunks * splits < threads {
        let chunk = nvec.div_ceil(threads.div_ceil(splits)).max(1);
        (chunk, nvec.div_ceil(chunk))
    } else {
        (chunk, n_chunks)
    };
    // Each task's statistics are added here as soon as it ends (one task's histogram alive
    // per thread, not one per task).
    let merged = stats.map(std::sync::Mutex::new);
    let (hist_len, levels) = merged.as_ref().map_or((0, Vec::new()), |st| {
        let st = st.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (st.histogram.len(), st.levels.clone())
    });
    let results: Vec<Result<(usize, std::ops::Range<usize>, Vec<T>), String>> = (0..n_chunks
        * splits)
        .into_par_iter()
        .map(|task| {
            let (ci, sp) = (task / splits, task % splits);
            let v0 = ci * chunk;
            let v1 = (v0 + chunk).min(nvec);
            let blocks = sp * per_split..((sp + 1) * per_split).min(n_blocks);
            let mut tally = merged.as_ref().map(|_| kernel::Tally::new(hist_len, levels.clone()));
            let out = run_task(p, src, planes, fin, v0..v1, blocks, tally.as_mut())?;
            if let (Some(st), Some(t)) = (&merged, tally) {
                let mut st = st.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (h, c) in st.histogram.iter_mut().zip(&t.hist) {
                    *h += c;
                }
                st.conversions += t.conversions;
                st.clipped += t.clipped;
                // Level 0: every conversion (the kernels count only nonzero sums per level).
                let st = &mut *st;
                for ((n, &level), &c) in st.at_least.iter_mut().zip(&st.levels).zip(&t.at_least) {
                    *n += if level == 0 { t.conversions } else { c };
                }
            }
            // This task's outputs: local outputs `nl0..nl1` of every group.
            let nl0 = (sp * per_split * pcb / p.cpo).min(p.mg);
            let nl1 = (((sp + 1) * per_split * pcb).min(p.pc) / p.cpo).min(p.mg);
            Ok((v0, nl0..nl1, out))
        })
        .collect();
    let parts = results.into_iter().collect::<Result<Vec<_>, String>>()?;
    Ok(Outputs { parts, groups: p.groups, mg: p.mg })
}

/// The input planes and `Σ_k v[k]` of vectors `0..nvec` of a source for every conv group, made
/// once for several prepared matrices of the same [`PreparedCrossbar::planes_layout`] (parts of
/// a layer that read the same vectors).
pub(crate) struct Planes {
    /// `[conv group][vector][tile][input bit][word]`.
    x: Vec<u64>,
    /// `[conv group][vector]`.
    sum: Vec<i64>,
    nvec: usize,
    layout: PlanesLayout,
}

impl Planes {
    /// Words held (for a cache's budget).
    pub(crate) fn words(&self) -> usize {
        self.x.len() + self.sum.len()
    }
}

/// What input planes depend on besides the vectors: rows per conv group and per tile, conv
/// groups, input bits, `input_min`.
pub(crate) type PlanesLayout = [i64; 5];

/// The input planes of vectors `0..nvec` of `src` for `p`'s layout.
pub(crate) fn input_planes(
    p: &PreparedCrossbar,
    src: &Source,
    nvec: usize,
) -> Result<Planes, String> {
    const CHUNK: usize = 32;
    let per_vec = p.tiles * p.input_bits * p.words;
    let mut x = vec![0u64; p.groups * nvec * per_vec];
    let mut sum = vec![0i64; p.groups * nvec];
    x.par_chunks_mut((nvec * per_vec).max(1))
        .zip(sum.par_chunks_mut(nvec.max(1)))
        .enumerate()
        .try_for_each(|(g, (xg, sg))| {
            xg.par_chunks_mut((CHUNK * per_vec).max(1))
                .zip(sg.par_chunks_mut(CHUNK))
                .enumerate()
                .try_for_each(|(c, (xp, sv))| {
                    let v0 = c * CHUNK;
                    fill_planes(p, src, g, v0, (v0 + CHUNK).min(nvec), xp, sv)
                })
        })?;
    Ok(Planes { x, sum, nvec, layout: p.planes_layout() })
}

/// Values `[vector][n]` of the vectors `vecs`, for the column blocks `blocks` of every group
/// (the other outputs are left `T::default()`).
fn run_task<T, F>(
    p: &PreparedCrossbar,
    src: &Source,
    planes: Option<&Planes>,
    fin: &F,
    vecs: std::ops::Range<usize>,
    blocks: std::ops::Range<usize>,
    mut tally: Option<&mut kernel::Tally>,
) -> Result<Vec<T>, String>
where
    T: Copy + Default,
    F: Fn(i64, usize) -> T,
{
    let (v0, v1) = (vecs.start, vecs.end);
    let nvec = v1 - v0;
    let m = p.groups * p.mg;
    let per_vec = p.tiles * p.input_bits * p.words;
    let pcb = p.block_columns();
    let (mut xplanes, mut sumv) = match planes {
        Some(_) => (Vec::new(), Vec::new()),
        None => (vec![0u64; nvec * per_vec], vec![0i64; nvec]),
    };
    let mut colacc = vec![0i64; nvec * pcb.min(p.pc_pad)];
    let mut out = vec![T::default(); nvec * m];
    // The shift-and-add's `c << sh`, negated for a `−` column, as `c · (±2^sh)`: no branch,
    // no shift by a variable.
    let fold: Vec<i64> =
        p.fold.iter().map(|&(neg, sh)| if neg { -(1i64 << sh) } else { 1i64 << sh }).collect();
    for g in 0..p.groups {
        let (xplanes, sumv): (&[u64], &[i64]) = match planes {
            Some(pl) => {
                let at = g * pl.nvec + v0;
                (&pl.x[at * per_vec..][..nvec * per_vec], &pl.sum[at..][..nvec])
            }
            None => {
                xplanes.fill(0);
                fill_planes(p, src, g, v0, v1, &mut xplanes, &mut sumv)?;
                (&xplanes, &sumv)
            }
        };
        for blk_i in blocks.clone() {
            let pc0 = blk_i * pcb;
            if pc0 >= p.pc {
                break;
            }
            let pcn = pcb.min(p.pc - pc0);
            // Whole lanes: pc0 is a multiple of LANES, so this stays inside pc_pad.
            let stride = pcn.div_ceil(kernel::LANES) * kernel::LANES;
            if !p.flip.is_empty() {
                let cols = BlockCols { g, pc0, pcn, stride, nvec };
                let accs =
                    flipped_block(p, &cols, xplanes, &mut colacc, &fold, tally.as_deref_mut());
                let n0 = g * p.mg + pc0 / p.cpo;
                for (vi, accs) in accs.chunks_exact(pcn / p.cpo).enumerate() {
                    let base = p.offset * sumv[vi];
                    let outs = &mut out[vi * m + n0..][..pcn / p.cpo];
                    for (nl, (&acc, o)) in accs.iter().zip(outs).enumerate() {
                        *o = fin(acc + (p.konst[n0 + nl] - base), n0 + nl);
                    }
                }
                continue;
            }
            colacc[..nvec * stride].fill(0);
            let cols = BlockCols { g, pc0, pcn, stride, nvec };
            kernel_block(p, &cols, None, xplanes, &mut colacc, tally.as_deref_mut());
            // Shift-and-add over the weight slices (and the two signs), then the digital terms.
            let n0 = g * p.mg + pc0 / p.cpo;
            for vi in 0..nvec {
                let ca = &colacc[vi * stride..][..pcn];
                let base = p.offset * sumv[vi];
                let outs = &mut out[vi * m + n0..][..pcn / p.cpo];
                for (nl, (cols, o)) in ca.chunks_exact(p.cpo).zip(outs).enumerate() {
                    let n = n0 + nl;
                    let acc: i64 = cols.iter().zip(&fold).map(|(&c, &f)| c * f).sum();
                    *o = fin(acc + (p.konst[n] - base), n);
                }
            }
        }
    }
    Ok(out)
}

/// The columns of one kernel block: conv group `g`, physical columns `pc0 .. pc0 + pcn`,
/// `stride` (`pcn` in whole lanes) per vector of `colacc`, `nvec` vectors.
struct BlockCols {
    g: usize,
    pc0: usize,
    pcn: usize,
    stride: usize,
    nvec: usize,
}

/// Runs the kernel (16-bit or 64-bit) of block `b` over every row tile (`tile = None`, the
/// input planes `[vector][tile][input bit][word]`) or over row tile `t` alone (`Some(t)`, the
/// planes `[vector][input bit][word]` of that tile): adds `Σ_i 2^(i·b_d)·A(P)` of each column
/// to `colacc`.
fn kernel_block(
    p: &PreparedCrossbar,
    b: &BlockCols,
    tile: Option<usize>,
    xplanes: &[u64],
    colacc: &mut [i64],
    tally: Option<&mut kernel::Tally>,
) {
    let BlockCols { g, pc0, pcn, stride, nvec } = *b;
    let cell_bits = p.x.geometry.cell_bits as usize;
    let slicing = kernel::Slicing {
        tiles: if tile.is_some() { 1 } else { p.tiles },
        words: p.words,
        input_bits: p.input_bits,
        dac_bits: p.x.geometry.dac_bits as usize,
        cell_bits,
        input_slices: p.input_slices,
        adc_top: p.x.adc_top(),
    };
    let t = tile.unwrap_or(0);
    if !p.planes16.is_empty() {
        let chunks = p.pc_pad / lanes16::COLS;
        let per_tile = chunks * 4 * p.words * cell_bits * lanes16::COLS;
        let at = g * p.tiles * per_tile + t * per_tile;
        let blk = lanes16::Block16 {
            slicing,
            w: &p.planes16[at..][..slicing.tiles * per_tile],
            chunks,
            chunk0: pc0 / lanes16::COLS,
            pcn,
            e: &p.e16[g * p.pc_pad + pc0..][..stride],
            half: &p.half16[g * p.pc_pad + pc0..][..stride],
            xplanes,
            nvec,
        };
        lanes16::run_block(lanes16::Path::best(), &blk, colacc, tally);
    } else {
        let per_tile = p.words * cell_bits * p.pc_pad;
        let at = g * p.tiles * per_tile + t * per_tile;
        let blk = kernel::Block {
            slicing,
            w: &p.planes[at..][..slicing.tiles * per_tile],
            pc_total: p.pc_pad,
            pc0,
            pcn,
            e: &p.e[g * p.pc_pad + pc0..][..stride],
            half: &p.half[g * p.pc_pad + pc0..][..stride],
            xplanes,
            nvec,
        };
        kernel::run_block(&blk, colacc, tally);
    }
}

/// The flipped encoding's shift-and-add of block `b` (`docs/hardware-model.md` §1): row tile
/// by row tile (a column's flip differs from tile to tile), each tile's `Σ_i 2^(i·b_d)·A(P)`
/// of a flipped column negated and `(2^b_c − 1)·Σ_{k in tile} v[k]` added per flipped slice
/// ([`PreparedCrossbar::flip_coef`]). Returns the accumulators `[vector][output of the block]`
/// without the digital terms.
fn flipped_block(
    p: &PreparedCrossbar,
    b: &BlockCols,
    xplanes: &[u64],
    colacc: &mut [i64],
    fold: &[i64],
    mut tally: Option<&mut kernel::Tally>,
) -> Vec<i64> {
    let BlockCols { g, pc0, pcn, stride, nvec } = *b;
    let outs = pcn / p.cpo;
    let xstride = p.input_bits * p.words;
    let mut accs = vec![0i64; nvec * outs];
    let mut xt = vec![0u64; nvec * xstride];
    for t in 0..p.tiles {
        for (vi, dst) in xt.chunks_exact_mut(xstride.max(1)).enumerate() {
            dst.copy_from_slice(&xplanes[(vi * p.tiles + t) * xstride..][..xstride]);
        }
        colacc[..nvec * stride].fill(0);
        kernel_block(p, b, Some(t), &xt, colacc, tally.as_deref_mut());
        let gt = g * p.tiles + t;
        let flags = &p.flip[gt * p.pc_pad + pc0..][..pcn];
        let coef = &p.flip_coef[gt * p.mg + pc0 / p.cpo..][..outs];
        for vi in 0..nvec {
            let sum_t = super::tile_sum(&xt[vi * xstride..][..xstride], p.words);
            let ca = &colacc[vi * stride..][..pcn];
            let acc = &mut accs[vi * outs..][..outs];
            for (nl, (cols, fl)) in
                ca.chunks_exact(p.cpo).zip(flags.chunks_exact(p.cpo)).enumerate()
            {
                let a: i64 = cols
                    .iter()
                    .zip(fl)
                    .zip(fold)
                    .map(|((&c, &f), &w)| if f { -c * w } else { c * w })
                    .sum();
                acc[nl] += a + coef[nl] * sum_t;
            }
        }
    }
    accs
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
        sumv[vi] = vector_values(p, src, g, vid, &mut vbuf)?;
        kernel::input_planes(&vbuf, ib, words, &mut xplanes[vi * per_vec..][..per_vec]);
    }
    Ok(())
}

/// The crossbar inputs `v[k] = q_x[k] − input_min` of vector `vid` of conv group `g` into
/// `vbuf` (`[tile][word][64 rows]`, rows past the matrix left as they are: zero), and their sum.
#[inline]
pub(crate) fn vector_values(
    p: &PreparedCrossbar,
    src: &Source,
    g: usize,
    vid: usize,
    vbuf: &mut [u16],
) -> Result<i64, String> {
    let ib = p.input_bits;
    let mut sum = 0i64;
    let mut bad = None;
    let mut put = |kk: usize, q: i64| {
        // Negative differences wrap to huge values: one unsigned comparison.
        let v = q.wrapping_sub(p.input_min as i64) as u64;
        if v > p.vmax as u64 {
            bad = Some(q);
        }
        sum += v as i64;
        vbuf[p.kpos[kk] as usize] = v as u16;
    };
    match src {
        Source::Conv { x, z, geo } => conv_vector(geo, x, *z, g, vid, |k, q| put(k, q as i64)),
        Source::Inputs16 { v, pad, geo } => {
            // Converted and checked once per step ([`inputs16`]): stored as they are.
            let (kpos, mut s16) = (&p.kpos, 0u64);
            conv_vector(geo, v, *pad, g, vid, |k, v| {
                vbuf[kpos[k] as usize] = v;
                s16 += v as u64;
            });
            sum = s16 as i64;
        }
        Source::Gemm { x } => {
            for (kk, &q) in x[vid * p.k..][..p.k].iter().enumerate() {
                put(kk, q as i64);
            }
        }
        Source::Words { .. } | Source::Window(_) => src.for_row(vid, g, p.k, &mut put)?,
    }
    if let Some(q) = bad {
        return Err(format!(
            "crossbar: input code {q} minus input_min {} does not fit {ib} input bits",
            p.input_min
        ));
    }
    Ok(sum)
}

/// Calls `put(k, value)` for every row `k` of conv group `g`'s im2col vector `vid` over the
/// channel-first input `x` (`pad` in the padding).
#[inline(always)]
fn conv_vector<T: Copy>(
    geo: &ConvGeom,
    x: &[T],
    pad: T,
    g: usize,
    vid: usize,
    mut put: impl FnMut(usize, T),
) {
    let pixels = geo.oh * geo.ow;
    let (b, px) = (vid / pixels, vid % pixels);
    let (oy, ox) = (px / geo.ow, px % geo.ow);
    // Whether the window's columns all lie inside the input (then a row inside it reads `kw`
    // values at fixed steps, with no test per value).
    let ix0 = (ox * geo.strides[1]) as isize - geo.pads[1] as isize;
    let inside_x = ix0 >= 0 && ix0 as usize + (geo.kw.max(1) - 1) * geo.dil[1] < geo.w;
    for ci in 0..geo.cg {
        let plane = &x[(b * geo.c + g * geo.cg + ci) * geo.h * geo.w..][..geo.h * geo.w];
        for ky in 0..geo.kh {
            let iy = (oy * geo.strides[0] + ky * geo.dil[0]) as isize - geo.pads[0] as isize;
            let row =
                (iy >= 0 && (iy as usize) < geo.h).then(|| &plane[iy as usize * geo.w..][..geo.w]);
            let k0 = (ci * geo.kh + ky) * geo.kw;
            if let (Some(row), true) = (row, inside_x) {
                let row = &row[ix0 as usize..];
                for kx in 0..geo.kw {
                    put(k0 + kx, row[kx * geo.dil[1]]);
                }
                continue;
            }
            for kx in 0..geo.kw {
                let ix = (ox * geo.strides[1] + kx * geo.dil[1]) as isize - geo.pads[1] as isize;
                let q = match row {
                    Some(row) if ix >= 0 && (ix as usize) < geo.w => row[ix as usize],
                    _ => pad,
                };
                put(k0 + kx, q);
            }
        }
    }
}

/// A Conv step's input converted once to crossbar inputs `v = q − input_min` (u16, a quarter
/// of the i32 codes' bytes for the im2col to read, no test per value read), in parallel; `None`
/// when the inputs are wider than 16 bits or some code does not fit (then the vectors are read
/// from the codes, and the error names the first such code a vector reads, as before).
fn inputs16(p: &PreparedCrossbar, x: &[i32]) -> Option<Vec<u16>> {
    if p.vmax > u16::MAX as u32 {
        return None;
    }
    let (lo, vmax) = (p.input_min as i64, p.vmax as u64);
    let mut out = vec![0u16; x.len()];
    let fits = out.par_chunks_mut(1 << 14).zip(x.par_chunks(1 << 14)).all(|(o, xs)| {
        let mut bad = false;
        for (o, &q) in o.iter_mut().zip(xs) {
            // Negative differences wrap to huge values: one unsigned comparison.
            let v = (q as i64).wrapping_sub(lo) as u64;
            bad |= v > vmax;
            *o = v as u16;
        }
        !bad
    });
    fits.then_some(out)
}
