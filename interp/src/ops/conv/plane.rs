//! 2-D convolution (pointwise and strided included, not depthwise) as one product over the
//! padded input plane, with no im2col: the f32 path on CPUs with AVX-512.
//!
//! With stride 1, output position `(y, x)` and tap `(c, ky, kx)` read the padded input
//! `xp[c][y + ky*dh][x + kx*dw]`. Number the outputs by their position in the padded plane,
//! `n = y * PW + x` (PW the padded width): the tap then reads `xp[c*CS + ky*dh*PW + kx*dw + n]`,
//! so row `k` of the product's right-hand matrix, columns `n..n+32`, is a contiguous run of the
//! padded input at a per-tap offset, and the micro-kernel (`conv/avx512.rs`) reads it there.
//! The price is `PW - OW` wasted columns per output row (2 of 58 at 56x56, 2 of 9 at 7x7),
//! against the nine-fold im2col copy it replaces.
//!
//! A stride `s` is brought back to stride 1 by splitting the padded input into phases: phase
//! `(py, px)` holds the rows `s*i + py` and columns `s*j + px`. Tap `(ky, kx)` reads phase
//! `(ky*dh % s, kx*dw % s)` at `[y + ky*dh / s][x + kx*dw / s]`, a stride-1 access. Only the
//! phases some tap reads are built (one for a 1x1 stride-2 layer).
//!
//! The copy is laid out `[C][phase][N][PH'][PW']` (`PH'`, `PW'` a phase's size): images follow
//! each other along `n`, so a batch is one product (the deep layers' few positions per image
//! add up). A stride-1 pointwise layer on one image reads its input in place.
//!
//! Work is cut into blocks of 64 output channels x a few hundred positions, each computed on
//! one thread into a small buffer, then copied to the output (dropping the wasted columns) and
//! finished (bias, BatchNorm affine, activation) while in cache. Every output is one dot
//! product summed in tap order by one micro-kernel call, whatever the blocks, so results do not
//! depend on the number of threads.

use super::avx512::{self, MicroTile, MR, NR};
use super::lanes::{self, LanesPack};
use super::tiled::OutPtr;
use super::{valid_range, PreparedConv};
use crate::ops::activation::Act;
use crate::ops::gemm::{with_thread_buffer, GemmFloat};
use rayon::prelude::*;
use std::cell::RefCell;

/// Output channels per block (a multiple of `MR`).
const MB: usize = 64;
/// Fewest and most output positions per block (multiples of `NR`): enough columns to reuse a
/// weight panel from L1, few enough that a block's outputs stay in L1/L2.
const NB_MIN: usize = 128;
const NB_MAX: usize = 512;

/// The weights packed for the micro-kernel, once at load.
#[derive(Clone, Debug)]
pub(super) struct PlanePack {
    /// Per group, per panel of `MR` output channels: `[kk][MR]`, the channels past the
    /// group's last zero. Empty when `lanes` holds the weights.
    a: Vec<f32>,
    /// Panels per group.
    panels: usize,
    /// The weights packed for the channels-in-lanes product instead (`conv/lanes.rs`), for
    /// the layers that take it.
    pub(super) lanes: Option<LanesPack>,
}

impl PlanePack {
    /// Packs `w` (`[M, kk]` row-major, `group` groups of `M / group` rows).
    pub(super) fn new(w: &[f32], m: usize, kk: usize, group: usize) -> Self {
        let mg = m / group;
        if lanes::applies(mg, kk) {
            let lanes = Some(LanesPack::new(w, m, kk, group));
            return PlanePack { a: Vec::new(), panels: 0, lanes };
        }
        Self::panels(w, m, kk, group)
    }

    /// The weights (`[M, kk]`) packed for the lanes micro-kernel of `isa`, the reduction in
    /// chunks of `chunk_rows` rows.
    #[cfg(test)]
    pub(super) fn lanes_for(
        w: &[f32],
        (m, kk, group): (usize, usize, usize),
        isa: lanes::Isa,
        chunk_rows: usize,
    ) -> Self {
        let mut lanes = LanesPack::for_isa(w, m, kk, group, isa);
        lanes.chunk_rows = chunk_rows;
        PlanePack { a: Vec::new(), panels: 0, lanes: Some(lanes) }
    }

    /// Packs `w` in panels of `MR` output channels, whatever the layer (the lanes kernel's
    /// tests compare the two).
    pub(super) fn panels(w: &[f32], m: usize, kk: usize, group: usize) -> Self {
        let mg = m / group;
        let panels = mg.div_ceil(MR);
        let mut a = vec![0f32; group * panels * kk * MR];
        for gi in 0..group {
            for p in 0..panels {
                let dst = &mut a[(gi * panels + p) * kk * MR..][..kk * MR];
                for r in 0..MR.min(mg - p * MR) {
                    let src = &w[(gi * mg + p * MR + r) * kk..][..kk];
                    for (k, &v) in src.iter().enumerate() {
                        dst[k * MR + r] = v;
                    }
                }
            }
        }
        PlanePack { a, panels, lanes: None }
    }

    /// The weights back in `[M, kk]` row-major order (the inverse of [`PlanePack::new`]).
    pub(super) fn unpack(&self, m: usize, kk: usize, group: usize) -> Vec<f32> {
        if let Some(lanes) = &self.lanes {
            return lanes.unpack(m, kk, group);
        }
        let mg = m / group;
        let mut w = vec![0f32; m * kk];
        for (row, dst) in w.chunks_exact_mut(kk.max(1)).enumerate().take(m) {
            let (gi, ch) = (row / mg, row % mg);
            let panel = &self.a[(gi * self.panels + ch / MR) * kk * MR..][..kk * MR];
            for (k, v) in dst.iter_mut().enumerate() {
                *v = panel[k * MR + ch % MR];
            }
        }
        w
    }
}

/// Whether a layer takes this path: 2-D, not depthwise (that has its own direct loop; a 1x1
/// kernel with one channel per group is fine), on a CPU with AVX-512.
pub(super) fn applies(kernel: &[usize], cg: usize) -> bool {
    // (No input channels at all is left to the portable paths: there is no copy to read.)
    kernel.len() == 2 && cg > 0 && (cg > 1 || kernel.iter().all(|&k| k == 1)) && avx512::available()
}

/// Whether a depthwise layer (one input channel per group, a kernel larger than 1x1) takes
/// the plane path: 2-D, on a CPU with AVX-512.
pub(super) fn applies_depthwise(kernel: &[usize], cg: usize) -> bool {
    kernel.len() == 2 && cg == 1 && kernel.iter().any(|&k| k > 1) && avx512::available()
}

/// The fused finish of an output row, in f32.
#[derive(Clone, Copy)]
pub(super) struct Finish<'a> {
    pub bias: Option<&'a [f32]>,
    pub affine: Option<(&'a [f32], &'a [f32])>,
    pub act: Option<Act>,
}

thread_local! {
    /// A block's output buffer on each worker thread.
    static BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// One channel's padded, stride-split input copy on each worker thread (depthwise).
    static CHANNEL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's block buffer of `len` floats (contents unspecified).
fn with_block<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_thread_buffer(&BLOCK, len, f)
}

/// The geometry of one run.
pub(super) struct Plane {
    /// Images.
    pub(super) n: usize,
    /// Strides.
    sh: usize,
    sw: usize,
    /// A phase's height and width.
    pub(super) ph: usize,
    pub(super) pw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    /// The phases `(py, px)` some tap reads, in the order of the copy.
    phases: Vec<(usize, usize)>,
    /// Channel stride of the copy (`phases * N * PH' * PW'`).
    pub(super) cs: usize,
    /// Columns of the product: one past the last image's last output.
    pub(super) np: usize,
}

impl Plane {
    /// The offset of a tap reading padded-input row `ry`, column `rx` (relative to the output
    /// position) in channel 0 of the copy.
    fn tap(&self, ry: usize, rx: usize) -> usize {
        let phase = (ry % self.sh, rx % self.sw);
        let slot = self
            .phases
            .iter()
            .position(|&p| p == phase)
            .expect("invariant: `phases` lists the phase of every tap");
        slot * self.n * self.ph * self.pw + (ry / self.sh) * self.pw + rx / self.sw
    }
}

impl<T: GemmFloat> PreparedConv<T> {
    /// The geometry of a run on input shape `xs` with output spatial shape `outs`, and each
    /// kernel tap's offset into a channel of the input copy (taps in the weights' order), or
    /// `None` when the output is empty.
    fn plane_geometry(&self, xs: &[usize], outs: &[usize]) -> Option<(Plane, Vec<usize>)> {
        let (n, ih, iw) = (xs[0], xs[2], xs[3]);
        let pads = &self.attrs.pads;
        let (sh, sw) = (self.attrs.strides[0], self.attrs.strides[1]);
        let (kh, kw) = (self.kernel[0], self.kernel[1]);
        let (dh, dw) = (self.attrs.dilations[0], self.attrs.dilations[1]);
        let (oh, ow) = (outs[0], outs[1]);
        if n == 0 || oh == 0 || ow == 0 || self.m == 0 {
            return None;
        }
        let mut phases: Vec<(usize, usize)> =
            (0..kh * kw).map(|t| ((t / kw) * dh % sh, (t % kw) * dw % sw)).collect();
        phases.sort_unstable();
        phases.dedup();
        let (ph, pw) =
            ((ih + pads[0] + pads[2]).div_ceil(sh), (iw + pads[1] + pads[3]).div_ceil(sw));
        let cs = phases.len() * n * ph * pw;
        let np = (n - 1) * ph * pw + (oh - 1) * pw + ow;
        let geo = Plane { n, sh, sw, ph, pw, oh, ow, phases, cs, np };
        let taps = (0..kh * kw).map(|t| geo.tap((t / kw) * dh, (t % kw) * dw)).collect();
        Some((geo, taps))
    }

    /// The convolution of `x` (`[N, C, IH, IW]`, f32) into `out` (`[N, M, OH, OW]`), finished
    /// by `fin`. Requires [`applies`] (`pack` is `self.plane`).
    pub(super) fn run_plane(
        &self,
        pack: &PlanePack,
        x: &[f32],
        xs: &[usize],
        outs: &[usize],
        out: &mut [f32],
        fin: Finish<'_>,
    ) {
        let Some((geo, taps)) = self.plane_geometry(xs, outs) else { return };
        // Each reduction row's offset into a group's copy: rows run over (channel, ky, kx)
        // like the weights'.
        let kt = taps.len();
        let boff: Vec<usize> =
            (0..self.cg * kt).map(|k| (k / kt) * geo.cs + taps[k % kt]).collect();
        let pads = &self.attrs.pads;
        let in_place = geo.n == 1 && (geo.sh, geo.sw) == (1, 1) && pads.iter().all(|&p| p == 0);
        let products = |xp: &[f32], out: &mut [f32]| match &pack.lanes {
            Some(lanes) => self.lanes_products(lanes, xp, &boff, &geo, out, fin),
            None => self.plane_products(pack, xp, &boff, &geo, out, fin),
        };
        if in_place {
            products(x, out)
        } else {
            f32::with_scratch(xs[1] * geo.cs, |xp| {
                split_input(x, xs, pads, &geo, xp);
                products(xp, out)
            })
        }
    }

    /// A depthwise layer (one input channel per group, any channel multiplier; `w` the
    /// weights `[M, KH*KW]`): read in place when its horizontal stride is 1 or 2
    /// (`conv/depthwise_vec.rs`), else over the same input copy, made one channel at a time inside
    /// the channel's task: each output channel is one row of taps, computed whole
    /// (`avx512::depthwise_row`), then copied out and finished.
    pub(super) fn run_depthwise_plane(
        &self,
        w: &[f32],
        x: &[f32],
        xs: &[usize],
        outs: &[usize],
        out: &mut [f32],
        fin: Finish<'_>,
    ) {
        if super::depthwise_vec::applies(&self.attrs.strides) {
            return self.run_depthwise_vec(w, x, xs, outs, out, fin);
        }
        let Some((geo, taps)) = self.plane_geometry(xs, outs) else { return };
        let kt = taps.len();
        let mg = self.m / self.attrs.group;
        // The taps column by column (kx outer, ky inner), the portable loop's order, so that
        // the sums round as there (see `avx512::depthwise_row`).
        let (kh, kw) = (self.kernel[0], self.kernel[1]);
        let order: Vec<usize> =
            (0..kw).flat_map(|kx| (0..kh).map(move |ky| ky * kw + kx)).collect();
        let taps: Vec<usize> = order.iter().map(|&t| taps[t]).collect();
        let w: Vec<f32> = w.chunks_exact(kt).flat_map(|wm| order.iter().map(|&t| wm[t])).collect();
        assert!(
            taps.iter().all(|&t| t + geo.np <= geo.cs)
                && w.len() == self.m * kt
                && out.len() == geo.n * self.m * geo.oh * geo.ow,
            "invariant: every tap of every column lies inside its channel's copy, the weights \
             are M x taps and the output N x M x OH x OW"
        );
        let dst = OutPtr(out.as_mut_ptr());
        // Each task copies its own input channel (padded, stride-split) into a buffer of its
        // thread and runs that channel's output rows on it while it is in L2: copying every
        // channel first sent the whole copy through memory and back (12 % of MobileNetV2's
        // run). The copy and the sums are the same, so are the bits.
        let per_task = (1 << 16) / (geo.np * kt * mg).max(1) + 1;
        (0..xs[1]).into_par_iter().with_min_len(per_task).for_each(|ci| {
            with_thread_buffer(&CHANNEL, geo.cs, |xc| {
                fill_channel(x, xs, &self.attrs.pads, &geo, ci, xc);
                with_block(geo.np, |row| {
                    for m in ci * mg..(ci + 1) * mg {
                        // SAFETY: `avx512::available()` was checked by the caller; `w[m*kt..]`
                        // and `taps` hold kt elements; every `taps[t] + j` (j < np) is inside
                        // `xc`, cs floats (asserted above), and `row` holds np floats.
                        unsafe {
                            super::avx512::depthwise_row(
                                kt,
                                w[m * kt..][..kt].as_ptr(),
                                xc.as_ptr(),
                                taps.as_ptr(),
                                row.as_mut_ptr(),
                                geo.np,
                            )
                        };
                        self.scatter_row(&mut row[..geo.np], 0, m, &geo, dst, fin);
                    }
                })
            })
        });
    }

    /// The products and finish of every group and block.
    fn plane_products(
        &self,
        pack: &PlanePack,
        xp: &[f32],
        boff: &[usize],
        geo: &Plane,
        out: &mut [f32],
        fin: Finish<'_>,
    ) {
        let g = self.attrs.group;
        let (mg, kk) = (self.m / g, boff.len());
        let panels = pack.panels;
        let mblocks = panels.div_ceil(MB / MR);
        let nb = block_width(geo.np, g * mblocks, rayon::current_num_threads());
        let nblocks = geo.np.div_ceil(nb);
        // Every tap of every column lies inside its group's copy: the largest offset plus the
        // columns stays within the group's channels (the last phase's last row ends there).
        let reach = boff.iter().max().copied().unwrap_or(0) + geo.np;
        assert!(
            reach <= self.cg * geo.cs && xp.len() >= g * self.cg * geo.cs,
            "invariant: every tap of every column lies inside the input copy"
        );
        assert!(
            out.len() == geo.n * self.m * geo.oh * geo.ow && pack.a.len() == g * panels * kk * MR,
            "invariant: the output holds N x M x OH x OW floats, the pack G x panels x kk x MR"
        );
        let dst = OutPtr(out.as_mut_ptr());
        (0..g * mblocks * nblocks).into_par_iter().for_each(|item| {
            let (gi, rest) = (item / (mblocks * nblocks), item % (mblocks * nblocks));
            let (mb, nbi) = (rest / nblocks, rest % nblocks);
            let (p0, p1) = (mb * (MB / MR), ((mb + 1) * (MB / MR)).min(panels));
            let (n0, n1) = (nbi * nb, ((nbi + 1) * nb).min(geo.np));
            let xg = &xp[gi * self.cg * geo.cs..];
            // The product's columns are the output positions themselves (one image, a
            // pointwise layer without padding, read in place) and every panel is full: the
            // micro-tiles write straight into the output, with no block buffer to copy out.
            let direct = geo.n == 1 && (geo.ph, geo.pw) == (geo.oh, geo.ow) && mg % MR == 0;
            with_block(if direct { 0 } else { (p1 - p0) * MR * nb }, |blk| {
                // Panel outer: a panel's weights come from memory once and serve every
                // micro-tile of the block from L1.
                for p in p0..p1 {
                    let a = &pack.a[(gi * panels + p) * kk * MR..][..kk * MR];
                    for col0 in (n0..n1).step_by(NR) {
                        let (c, ldc) = if direct {
                            let o = (gi * mg + p * MR) * geo.np + col0;
                            (dst.get().wrapping_add(o), geo.np)
                        } else {
                            (blk[(p - p0) * MR * nb + (col0 - n0)..].as_mut_ptr(), nb)
                        };
                        let t = MicroTile {
                            kc: kk,
                            a: a.as_ptr(),
                            b: xg[col0..].as_ptr(),
                            boff: boff.as_ptr(),
                            c,
                            ldc,
                            cols: NR.min(n1 - col0),
                        };
                        // SAFETY: `plane` is only built when `avx512::available()`; `a` holds
                        // kk x MR floats and `boff` kk offsets; `col0 + boff[k] + j` for
                        // j < cols (col0 + cols <= np) is below `reach`, inside the group's
                        // copy (asserted above). C: rows (p - p0)*MR + r < (p1 - p0)*MR and
                        // columns col0 - n0 + j < nb of `blk`; or, direct, output rows
                        // gi*mg + p*MR + r (< (gi+1)*mg as the panels are full) and columns
                        // col0 + j < np = OH*OW of the one image, which only this block writes.
                        unsafe { avx512::micro_tile(&t) };
                    }
                }
                for p in p0..p1 {
                    for r in 0..MR.min(mg - p * MR) {
                        let ch = gi * mg + p * MR + r;
                        if direct {
                            // SAFETY: columns n0..n1 of output row ch, written above by this
                            // block only.
                            let row = unsafe {
                                std::slice::from_raw_parts_mut(
                                    dst.get().add(ch * geo.np + n0),
                                    n1 - n0,
                                )
                            };
                            let (bias, affine) =
                                (fin.bias.map(|b| b[ch]), fin.affine.map(|(a, b)| (a[ch], b[ch])));
                            super::finish_seg(row, bias, affine, fin.act);
                        } else {
                            let row = &mut blk[(p - p0) * MR * nb + r * nb..][..n1 - n0];
                            self.scatter_row(row, n0, ch, geo, dst, fin);
                        }
                    }
                }
            });
        });
    }

    /// Finishes one block row (`row`, product columns `n0..`) in place, in one pass over all
    /// its columns (the wasted ones too: cheaper than a pass per output row), then copies its
    /// valid positions into output channel `ch` of `dst`.
    fn scatter_row(
        &self,
        row: &mut [f32],
        n0: usize,
        ch: usize,
        geo: &Plane,
        dst: OutPtr<f32>,
        fin: Finish<'_>,
    ) {
        let img = geo.ph * geo.pw;
        let (bias, affine) = (fin.bias.map(|b| b[ch]), fin.affine.map(|(a, b)| (a[ch], b[ch])));
        super::finish_seg(row, bias, affine, fin.act);
        let end = n0 + row.len();
        let mut col = n0;
        while col < end {
            let (b, rem) = (col / img, col % img);
            let (y, x) = (rem / geo.pw, rem % geo.pw);
            if y >= geo.oh {
                col = (b + 1) * img;
                continue;
            }
            if x >= geo.ow {
                col += geo.pw - x;
                continue;
            }
            let len = (geo.ow - x).min(end - col);
            let o = ((b * self.m + ch) * geo.oh + y) * geo.ow + x;
            // SAFETY: (b, ch, y, x..x+len) is inside the output (b < N since col < np, y < OH,
            // x + len <= OW, checked by the caller's assert on its length), and only the block
            // owning channel ch and columns n0..end writes these elements.
            let seg = unsafe { std::slice::from_raw_parts_mut(dst.get().add(o), len) };
            seg.copy_from_slice(&row[col - n0..col - n0 + len]);
            col += len;
        }
    }
}

/// The block width (a multiple of `NR`) for `np` columns and `rows` blocks of channels on
/// `threads` threads: the one whose busiest thread has the fewest columns to compute, wider
/// blocks winning ties.
fn block_width(np: usize, rows: usize, threads: usize) -> usize {
    let whole = np.next_multiple_of(NR);
    if whole <= NB_MIN {
        return whole;
    }
    let threads = threads.max(1);
    (NB_MIN..=NB_MAX.min(whole))
        .step_by(NR)
        .min_by_key(|&nb| ((rows * np.div_ceil(nb)).div_ceil(threads) * nb, usize::MAX - nb))
        .unwrap_or(whole)
}

/// `x` (`[N, C, IH, IW]`) into `xp` (`[C][phase][N][PH'][PW']`), zeros in the padding.
fn split_input(x: &[f32], xs: &[usize], pads: &[usize], geo: &Plane, xp: &mut [f32]) {
    let c = xs[1];
    let fill = |(ci, chan): (usize, &mut [f32])| fill_channel(x, xs, pads, geo, ci, chan);
    let xp = &mut xp[..c * geo.cs];
    if x.len() >= 4 * crate::ops::PAR_MIN {
        xp.par_chunks_mut(geo.cs).enumerate().for_each(fill);
    } else {
        xp.chunks_mut(geo.cs).enumerate().for_each(fill);
    }
}

/// Input channel `ci` of `x` (`[N, C, IH, IW]`) padded and split into `geo`'s phases, into
/// `chan` (`geo.cs` floats: phase by phase, image by image, row by row).
fn fill_channel(x: &[f32], xs: &[usize], pads: &[usize], geo: &Plane, ci: usize, chan: &mut [f32]) {
    let (c, ih, iw) = (xs[1], xs[2], xs[3]);
    let (top, left) = (pads[0], pads[1]);
    let plane = geo.ph * geo.pw;
    for (slot, &(py, px)) in geo.phases.iter().enumerate() {
        // The phase's rows and columns that fall inside the input.
        let (ylo, yhi) = valid_range(geo.ph, ih, geo.sh, top, py);
        let (xlo, xhi) = valid_range(geo.pw, iw, geo.sw, left, px);
        for b in 0..geo.n {
            let src = &x[(b * c + ci) * ih * iw..][..ih * iw];
            let dst = &mut chan[(slot * geo.n + b) * plane..][..plane];
            dst[..ylo * geo.pw].fill(0.0);
            dst[yhi * geo.pw..].fill(0.0);
            for i in ylo..yhi {
                let srow = &src[(i * geo.sh + py - top) * iw..][..iw];
                let drow = &mut dst[i * geo.pw..][..geo.pw];
                drow[..xlo].fill(0.0);
                drow[xhi.max(xlo)..].fill(0.0);
                if xhi > xlo {
                    let j0 = xlo * geo.sw + px - left;
                    let body = &mut drow[xlo..xhi];
                    if geo.sw == 1 {
                        body.copy_from_slice(&srow[j0..j0 + body.len()]);
                    } else {
                        let src = srow[j0..].iter().step_by(geo.sw);
                        body.iter_mut().zip(src).for_each(|(d, &v)| *d = v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    //! The depthwise plane path against the portable depthwise loop, bit for bit (the plane
    //! path's products are checked against a naive convolution in `interp/tests/props.rs`).

    use super::super::{Epilogue, PreparedConv};
    use crate::ops::activation::Act;
    use cimc_ir::ConvAttrs;
    use ndarray::ArrayD;
    use proptest::prelude::*;

    /// Deterministic values in [-1, 1) with a few exact zeros (the lanes tests' too).
    pub(in crate::ops::conv) fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if i % 11 == 3 {
                    0.0
                } else {
                    (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn unpack_inverts_pack(group in 1usize..=3, mg in 1usize..=19, kk in 1usize..=30, seed: u64) {
            let m = group * mg;
            let w = values(m * kk, seed);
            let pack = super::PlanePack::new(&w, m, kk, group);
            prop_assert_eq!(pack.unpack(m, kk, group), w);
        }

        #[test]
        fn depthwise_plane_rounds_as_the_portable_loop(
            (c, mult, kh, kw) in (1usize..=5, 1usize..=2, 1usize..=4, 2usize..=4),
            (sh, sw, dil) in (1usize..=3, 1usize..=3, 1usize..=2),
            (pads, ih, iw) in (proptest::collection::vec(0usize..=2, 4), 1usize..=17, 1usize..=23),
            seed: u64,
        ) {
            // Nothing to compare on a CPU (or under `CIMC_PORTABLE_KERNELS`) without AVX-512.
            if !super::avx512::available() {
                return Ok(());
            }
            let (ih, iw) = (ih.max((kh - 1) * dil + 1), iw.max((kw - 1) * dil + 1));
            let attrs = ConvAttrs {
                kernel: vec![kh, kw],
                strides: vec![sh, sw],
                dilations: vec![dil; 2],
                pads: pads.clone(),
                group: c,
                clamp: None,
            };
            let m = c * mult;
            let w = ArrayD::from_shape_vec(vec![m, 1, kh, kw], values(m * kh * kw, seed))
                .expect("invariant: the shape matches the values");
            let b = ArrayD::from_shape_vec(vec![m], values(m, seed ^ 5))
                .expect("invariant: the shape matches the values");
            let pc = PreparedConv::new(&attrs, &w, Some(&b)).expect("valid depthwise layer");
            let epi = Epilogue {
                affine: Some((values(m, seed ^ 7), values(m, seed ^ 9))),
                act: Some(Act::Relu),
            };
            let outs = pc.out_spatial(&[ih, iw]).expect("the window fits");
            let (x, p) = (values(c * ih * iw, seed ^ 3), outs[0] * outs[1]);
            let mut portable = vec![0f32; m * p];
            pc.depthwise_2d(&x, &[ih, iw], &outs, &mut portable, &epi);
            let mut plane = vec![f32::NAN; m * p];
            let (a, bb) = epi.affine.as_ref().expect("set above");
            let fin = super::Finish { bias: pc.bias.as_deref(), affine: Some((a, bb)), act: epi.act };
            pc.run_depthwise_plane(&pc.w, &x, &[1, c, ih, iw], &outs, &mut plane, fin);
            for (i, (u, v)) in portable.iter().zip(&plane).enumerate() {
                prop_assert_eq!(u.to_bits(), v.to_bits(), "element {}: {} vs {}", i, u, v);
            }
        }
    }
}
