//! The column-tiled path of 2-D convolution, for layers with many output positions (the first
//! layers of a CNN at batch 1), pointwise layers included (they need no im2col).
//!
//! The plain im2col path writes the whole `[Cg*KH*KW, P]` matrix (7 MB for a 3x3, 64-channel
//! layer at 56x56) and then multiplies it; the matrix leaves the caches in between and the
//! GEMM's threads synchronize once per product. Here the output positions are cut into tiles
//! whose im2col block fits in L2; each tile is expanded, multiplied on one thread and finished
//! (bias, BatchNorm affine, activation) while its outputs are still in cache, and the tiles run
//! in parallel. The tile width depends only on the layer's shape, never on the thread count,
//! so results do not depend on the number of threads.

use super::{valid_range, Epilogue, PreparedConv};
use crate::ops::gemm::GemmFloat;
use rayon::prelude::*;

/// Elements of one tile's im2col block: 96 Ki floats = 384 KiB, under half of a 1 MiB L2, so
/// the block and the GEMM's packed panels stay resident.
const TILE_ELEMS: usize = 96 * 1024;
/// Below this many columns per tile the GEMM's micro-kernel is poorly fed, and one whole
/// product parallel over its own blocks does better.
const MIN_TILE_COLS: usize = 64;
/// Fewer tiles than this leave the cores idle; the plain path is used.
const MIN_TILES: usize = 4;
/// Output channels per block of the row-tiled path: a multiple of the AVX-512 f32
/// micro-kernel's 64 rows... (4 vectors of 16).
pub(super) const ROW_TILE: usize = 64;

/// The output buffer shared by the tiles, which write disjoint column ranges of it.
#[derive(Clone, Copy)]
pub(super) struct OutPtr<T>(pub(super) *mut T);
// SAFETY: tiles write disjoint element ranges (distinct columns of each row), see `convolve`.
unsafe impl<T: Send> Send for OutPtr<T> {}
unsafe impl<T: Send> Sync for OutPtr<T> {}
impl<T> OutPtr<T> {
    /// A method, so that closures capture the whole (Send) wrapper, not the raw field.
    pub(super) fn get(self) -> *mut T {
        self.0
    }
}

impl<T: GemmFloat> PreparedConv<T> {
    /// The tile width for a 2-D layer with `p` output positions and `kk` = Cg*KH*KW rows of
    /// im2col, or `None` when the layer is too small for tiles to pay.
    pub(super) fn tile_width(&self, p: usize, kk: usize) -> Option<usize> {
        if self.kernel.len() != 2 || kk == 0 {
            return None;
        }
        let target = TILE_ELEMS / kk;
        if target < MIN_TILE_COLS {
            return None;
        }
        // An even number of tiles of about `target` columns (two cores share them evenly),
        // widths a multiple of 16 (the micro-kernels' vector width).
        let tiles = p.div_ceil(target).next_multiple_of(2);
        if tiles < MIN_TILES {
            return None;
        }
        Some(p.div_ceil(tiles).next_multiple_of(16))
    }

    /// One image's group `gi`: `xg` `[Cg, IH, IW]` into `og` `[Mg, P]` (row-major), tiles of
    /// `nt` columns, the bias and `epi` applied per tile.
    pub(super) fn convolve_tiled(
        &self,
        xg: &[T],
        ins: &[usize],
        outs: &[usize],
        og: &mut [T],
        gi: usize,
        nt: usize,
        pointwise: bool,
        epi: &Epilogue<T>,
    ) {
        let p = outs[0] * outs[1];
        let kk = self.cg * self.kernel[0] * self.kernel[1];
        let mg = self.m / self.attrs.group;
        let wg = &self.w[gi * mg * kk..(gi + 1) * mg * kk];
        assert!(
            og.len() == mg * p && xg.len() == self.cg * ins[0] * ins[1],
            "invariant: the caller slices one image's group"
        );
        let out = OutPtr(og.as_mut_ptr());
        let tiles = p.div_ceil(nt);
        (0..tiles).into_par_iter().for_each(|t| {
            let (n0, n1) = (t * nt, ((t + 1) * nt).min(p));
            let w = n1 - n0;
            // A pointwise layer's input already is its im2col matrix (`[Cg, P]`, P = the
            // input plane): the tile reads its columns in place.
            T::with_scratch(if pointwise { 0 } else { kk * w }, |col| {
                let (rhs, rs) = if pointwise {
                    (&xg[n0..], p)
                } else {
                    self.im2col_2d(xg, ins, outs, n0, n1, col);
                    (&col[..], w)
                };
                // SAFETY: `wg` is `mg x kk` and `rhs` is `kk x w` with row stride `rs` (the
                // im2col tile, or columns n0..n1 of the `kk x p` input); the C block is rows
                // 0..mg, columns n0..n1 of `og` (`mg x p`), in bounds by the assert above, and
                // no other tile touches these columns. Serial: the tiles are the threads.
                unsafe {
                    T::raw(
                        mg,
                        kk,
                        w,
                        T::of(1.0),
                        wg.as_ptr(),
                        kk as isize,
                        1,
                        rhs.as_ptr(),
                        rs as isize,
                        1,
                        T::ZERO,
                        out.get().add(n0),
                        p as isize,
                        1,
                        false,
                    );
                }
                for r in 0..mg {
                    // SAFETY: row r, columns n0..n1 of `og`: in bounds, owned by this tile.
                    let row =
                        unsafe { std::slice::from_raw_parts_mut(out.get().add(r * p + n0), w) };
                    self.epilogue_row(gi * mg + r, row, epi);
                }
            });
        });
    }

    /// One image's group `gi` when the output positions are too few for column tiles: the
    /// whole im2col matrix `col` (`[kk, P]`, filled here), then blocks of `ROW_TILE` output
    /// channels, each multiplied on one thread and finished while in cache.
    pub(super) fn convolve_row_tiled(
        &self,
        xg: &[T],
        ins: &[usize],
        outs: &[usize],
        og: &mut [T],
        gi: usize,
        col: &mut [T],
        epi: &Epilogue<T>,
    ) {
        let p = outs[0] * outs[1];
        let kk = self.cg * self.kernel.iter().product::<usize>();
        let mg = self.m / self.attrs.group;
        let wg = &self.w[gi * mg * kk..(gi + 1) * mg * kk];
        self.im2col(xg, ins, outs, col);
        let col = &col[..kk * p];
        og.par_chunks_mut(ROW_TILE * p).enumerate().for_each(|(t, ob)| {
            let rows = ob.len() / p;
            let m0 = t * ROW_TILE;
            crate::ops::gemm::gemm_serial(
                rows,
                kk,
                p,
                crate::ops::gemm::Mat::rows(&wg[m0 * kk..(m0 + rows) * kk], kk),
                crate::ops::gemm::Mat::rows(col, p),
                ob,
                p,
            );
            for (r, row) in ob.chunks_exact_mut(p).enumerate() {
                self.epilogue_row(gi * mg + m0 + r, row, epi);
            }
        });
    }

    /// Columns `n0..n1` of one group's im2col matrix `[Cg*KH*KW, P]` into `dst`
    /// (`[Cg*KH*KW, n1-n0]`): the 2-D case of `im2col_row`, one output row at a time with no
    /// per-element index arithmetic.
    fn im2col_2d(
        &self,
        xg: &[T],
        ins: &[usize],
        outs: &[usize],
        n0: usize,
        n1: usize,
        dst: &mut [T],
    ) {
        let (ih, iw, oh, ow) = (ins[0], ins[1], outs[0], outs[1]);
        let (kh, kw) = (self.kernel[0], self.kernel[1]);
        let (sh, sw) = (self.attrs.strides[0], self.attrs.strides[1]);
        let (dh, dw) = (self.attrs.dilations[0], self.attrs.dilations[1]);
        let (ph, pw) = (self.attrs.pads[0], self.attrs.pads[1]);
        let w = n1 - n0;
        for (r, drow) in dst.chunks_exact_mut(w).enumerate() {
            let (c, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
            let xc = &xg[c * ih * iw..(c + 1) * ih * iw];
            let (ylo, yhi) = valid_range(oh, ih, sh, ph, ky * dh);
            let (xlo, xhi) = valid_range(ow, iw, sw, pw, kx * dw);
            let mut col = n0;
            while col < n1 {
                let (oy, ox0) = (col / ow, col % ow);
                let ox1 = ow.min(ox0 + (n1 - col));
                let seg = &mut drow[col - n0..col - n0 + (ox1 - ox0)];
                col += ox1 - ox0;
                if oy < ylo || oy >= yhi {
                    seg.fill(T::ZERO);
                    continue;
                }
                let xrow = &xc[(oy * sh + ky * dh - ph) * iw..][..iw];
                // Valid columns of this segment, as positions within the output row.
                let (vlo, vhi) =
                    (xlo.clamp(ox0, ox1), xhi.clamp(ox0, ox1).max(xlo.clamp(ox0, ox1)));
                seg[..vlo - ox0].fill(T::ZERO);
                seg[vhi - ox0..].fill(T::ZERO);
                let body = &mut seg[vlo - ox0..vhi - ox0];
                if body.is_empty() {
                    continue;
                }
                let i0 = vlo * sw + kx * dw - pw;
                if sw == 1 {
                    body.copy_from_slice(&xrow[i0..i0 + body.len()]);
                } else {
                    body.iter_mut().zip(xrow[i0..].iter().step_by(sw)).for_each(|(d, &x)| *d = x);
                }
            }
        }
    }
}
