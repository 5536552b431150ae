//! 2-D convolution with one input channel per group (depthwise, any channel multiplier),
//! directly: no im2col, channels in parallel, the bias and epilogue applied to each channel's
//! plane while it is in cache.
//!
//! Each kernel tap adds `w * x` over a contiguous run of every output row. With a
//! horizontal stride `s > 1` the input plane is first split into `s` phases per row (columns
//! `q, q+s, q+2s, ..` stored together), so that the taps read contiguous memory too and the
//! inner loop vectorizes instead of gathering every `s`-th element.

use super::{valid_range, Epilogue, PreparedConv};
use crate::ops::gemm::GemmFloat;
use crate::ops::simd::axpy;
use crate::ops::PAR_MIN;
use rayon::prelude::*;

impl<T: GemmFloat> PreparedConv<T> {
    /// One image: `xb` `[C, IH, IW]` into `ob` `[M, OH, OW]`, the bias and `epi` included.
    pub(super) fn depthwise_2d(
        &self,
        xb: &[T],
        ins: &[usize],
        outs: &[usize],
        ob: &mut [T],
        epi: &Epilogue<T>,
    ) {
        let (ih, iw, oh, ow) = (ins[0], ins[1], outs[0], outs[1]);
        let (kh, kw) = (self.kernel[0], self.kernel[1]);
        let (sh, sw) = (self.attrs.strides[0], self.attrs.strides[1]);
        let (dh, dw) = (self.attrs.dilations[0], self.attrs.dilations[1]);
        let (ph, pw) = (self.attrs.pads[0], self.attrs.pads[1]);
        let mg = self.m / self.attrs.group;
        let plane = oh * ow;
        if plane == 0 {
            return;
        }
        // The valid output rows of each vertical tap and columns of each horizontal tap.
        let rows: Vec<(usize, usize)> =
            (0..kh).map(|ky| valid_range(oh, ih, sh, ph, ky * dh)).collect();
        let cols: Vec<(usize, usize)> =
            (0..kw).map(|kx| valid_range(ow, iw, sw, pw, kx * dw)).collect();
        // Elements per phase of a split row, and a split row's length.
        let pl = iw.div_ceil(sw);
        let split_row = sw * pl;
        let one = |(m, o): (usize, &mut [T])| {
            let ci = m / mg;
            let x = &xb[ci * ih * iw..(ci + 1) * ih * iw];
            let w = &self.w[m * kh * kw..(m + 1) * kh * kw];
            let split;
            let (src, row_len): (&[T], usize) = if sw == 1 {
                (x, iw)
            } else {
                let mut s = vec![T::ZERO; ih * split_row];
                for (xr, sr) in x.chunks_exact(iw).zip(s.chunks_exact_mut(split_row)) {
                    for (q, phase) in sr.chunks_exact_mut(pl).enumerate() {
                        phase
                            .iter_mut()
                            .zip(xr[q.min(iw)..].iter().step_by(sw))
                            .for_each(|(d, &v)| *d = v);
                    }
                }
                split = s;
                (&split[..], split_row)
            };
            o.fill(T::ZERO);
            // Tap by tap over the whole plane (it stays in L1): measured faster than row by
            // row with the taps inside.
            for (kx, &(lo, hi)) in cols.iter().enumerate() {
                if hi <= lo {
                    continue;
                }
                // Input column of output column `lo`, then its place in a split row.
                let i0 = lo * sw + kx * dw - pw;
                let start = if sw == 1 { i0 } else { (i0 % sw) * pl + i0 / sw };
                for (ky, &(ylo, yhi)) in rows.iter().enumerate() {
                    let wv = w[ky * kw + kx];
                    for y in ylo..yhi {
                        let srow = &src[(y * sh + ky * dh - ph) * row_len..][..row_len];
                        let xs = &srow[start..start + (hi - lo)];
                        let orow = &mut o[y * ow + lo..y * ow + hi];
                        axpy(orow, wv, xs);
                    }
                }
            }
            self.epilogue_row(m, o, epi);
        };
        if self.m * plane * kh * kw >= PAR_MIN {
            ob.par_chunks_mut(plane).enumerate().for_each(one);
        } else {
            ob.chunks_mut(plane).enumerate().for_each(one);
        }
    }
}
