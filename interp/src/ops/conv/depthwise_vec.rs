//! Depthwise layers (one input channel per group, any channel multiplier) with horizontal
//! stride 1 or 2 on CPUs with AVX-512, read in place: no padded copy of the input, no row
//! buffer, no scatter.
//!
//! Each output channel is cut into vectors of up to 16 positions along its rows. For every
//! vector and kernel tap, a table made once per run holds where the tap's inputs start in the
//! channel's input plane and which lanes fall inside it (the others read as zero: the padding).
//! A stride of 2 loads 32 floats and keeps the even ones. The kernel (`avx512::depthwise_vectors`)
//! writes each vector straight into the output plane, which is then finished (bias, BatchNorm
//! affine, activation) whole while in cache. The sums are the portable loop's, term by term
//! (see `avx512::DwVectors`), so the results are that loop's bit for bit, whatever the threads.

use super::avx512::{self, DwVectors};
use super::plane::Finish;
use super::PreparedConv;
use crate::ops::gemm::GemmFloat;
use rayon::prelude::*;

/// Lanes of an output vector.
const LANES: usize = 16;

/// Where each tap of each output vector reads, for one layer's geometry.
struct TapTable {
    /// Per vector, per tap: the input offset (relative to the channel's plane) of lane 0.
    off: Vec<isize>,
    /// Per vector, per tap: the lanes (bit `j`; bit `2 j` with stride 2) inside the input.
    mask: Vec<u32>,
    /// Per vector: its offset in the output plane, and its lanes.
    ooff: Vec<usize>,
    omask: Vec<u16>,
}

/// The geometry of a depthwise layer on one input plane.
struct DwGeometry {
    /// Input and output height and width.
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    /// Strides, dilations, top and left padding.
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    top: usize,
    left: usize,
    /// The taps `(ky, kx)` in summation order.
    taps: Vec<(usize, usize)>,
}

impl DwGeometry {
    /// The tap table: vectors row by row, `LANES` positions at a time.
    fn table(&self) -> TapTable {
        let nt = self.taps.len();
        let per_row = self.ow.div_ceil(LANES);
        let vectors = self.oh * per_row;
        let mut t = TapTable {
            off: Vec::with_capacity(vectors * nt),
            mask: Vec::with_capacity(vectors * nt),
            ooff: Vec::with_capacity(vectors),
            omask: Vec::with_capacity(vectors),
        };
        for y in 0..self.oh {
            for x0 in (0..self.ow).step_by(LANES) {
                let lanes = LANES.min(self.ow - x0);
                t.ooff.push(y * self.ow + x0);
                t.omask.push(((1u32 << lanes) - 1) as u16);
                for &(ky, kx) in &self.taps {
                    let (off, mask) = self.tap(y, x0, lanes, ky, kx);
                    t.off.push(off);
                    t.mask.push(mask);
                }
            }
        }
        t
    }

    /// The input offset of lane 0 and the mask of valid lanes for tap `(ky, kx)` of the vector
    /// at output row `y`, columns `x0..x0 + lanes`.
    fn tap(&self, y: usize, x0: usize, lanes: usize, ky: usize, kx: usize) -> (isize, u32) {
        let iy = (y * self.sh + ky * self.dh) as isize - self.top as isize;
        if !(0..self.ih as isize).contains(&iy) {
            return (0, 0);
        }
        let ix0 = (x0 * self.sw + kx * self.dw) as isize - self.left as isize;
        // The lanes j with 0 <= ix0 + j*sw < IW.
        let (jlo, jhi) =
            super::valid_range(lanes, self.iw, self.sw, self.left, x0 * self.sw + kx * self.dw);
        if jhi <= jlo {
            return (0, 0);
        }
        // Bit j*sw of each lane j in jlo..jhi (bits 0, 2, 4, .. with stride 2).
        let every = if self.sw == 2 { 0x5555_5555u32 } else { u32::MAX };
        let bits =
            |j: usize| if j * self.sw >= 32 { u32::MAX } else { (1u32 << (j * self.sw)) - 1 };
        (iy * self.iw as isize + ix0, every & bits(jhi) & !bits(jlo))
    }
}

/// Whether a depthwise layer that takes the plane path (`plane::applies_depthwise`) takes
/// this one: horizontal stride 1 or 2 (a stride-2 vector reads 32 floats).
pub(super) fn applies(strides: &[usize]) -> bool {
    matches!(strides.get(1), Some(1 | 2))
}

impl<T: GemmFloat> PreparedConv<T> {
    /// A depthwise layer (`w` the weights `[M, KH*KW]`) on `x` (`[N, C, IH, IW]`) into `out`
    /// (`[N, M, OH, OW]`), finished by `fin`, output channels in parallel. Requires
    /// `plane::applies_depthwise` and [`applies`].
    pub(super) fn run_depthwise_vec(
        &self,
        w: &[f32],
        x: &[f32],
        xs: &[usize],
        outs: &[usize],
        out: &mut [f32],
        fin: Finish<'_>,
    ) {
        let (n, c, ih, iw) = (xs[0], xs[1], xs[2], xs[3]);
        let (oh, ow) = (outs[0], outs[1]);
        let (kh, kw) = (self.kernel[0], self.kernel[1]);
        let kt = kh * kw;
        if n == 0 || oh == 0 || ow == 0 || self.m == 0 {
            return;
        }
        // The taps column by column (kx outer, ky inner): the portable loop's order.
        let taps: Vec<(usize, usize)> =
            (0..kw).flat_map(|kx| (0..kh).map(move |ky| (ky, kx))).collect();
        let geo = DwGeometry {
            ih,
            iw,
            oh,
            ow,
            sh: self.attrs.strides[0],
            sw: self.attrs.strides[1],
            dh: self.attrs.dilations[0],
            dw: self.attrs.dilations[1],
            top: self.attrs.pads[0],
            left: self.attrs.pads[1],
            taps,
        };
        let table = geo.table();
        let w: Vec<f32> = w
            .chunks_exact(kt)
            .flat_map(|wm| geo.taps.iter().map(move |&(ky, kx)| wm[ky * kw + kx]))
            .collect();
        let mg = self.m / self.attrs.group;
        let (iplane, oplane) = (ih * iw, oh * ow);
        assert!(
            x.len() == n * c * iplane
                && out.len() == n * self.m * oplane
                && w.len() == self.m * kt
                && c * mg == self.m,
            "invariant: the input is N x C x IH x IW, the output N x M x OH x OW, the weights \
             M x taps, and M = C x the channel multiplier"
        );
        let s2 = geo.sw == 2;
        let per_task = (1 << 15) / (oplane * kt).max(1) + 1;
        out.par_chunks_mut(oplane).with_min_len(per_task).enumerate().for_each(|(i, o)| {
            let (b, m) = (i / self.m, i % self.m);
            let xc = &x[(b * c + m / mg) * iplane..][..iplane];
            let d = DwVectors {
                taps: kt,
                w: w[m * kt..].as_ptr(),
                x: xc.as_ptr(),
                off: table.off.as_ptr(),
                mask: table.mask.as_ptr(),
                ooff: table.ooff.as_ptr(),
                omask: table.omask.as_ptr(),
                vectors: table.ooff.len(),
                c: o.as_mut_ptr(),
            };
            // SAFETY: the caller checked `avx512::available()` (`plane::applies_depthwise`);
            // `w[m*kt..]` holds kt floats; the table has `vectors * kt` entries and each
            // entry's set lanes are input elements `iy*IW + ix` with 0 <= iy < IH and
            // 0 <= ix < IW (`DwGeometry::tap`), inside `xc`; each vector's lanes are output
            // positions `y*OW + x` with y < OH, x < OW, inside `o`.
            unsafe {
                if s2 {
                    avx512::depthwise_vectors::<true>(&d)
                } else {
                    avx512::depthwise_vectors::<false>(&d)
                }
            };
            let (bias, affine) = (fin.bias.map(|b| b[m]), fin.affine.map(|(a, b)| (a[m], b[m])));
            super::finish_seg(o, bias, affine, fin.act);
        });
    }
}
