//! The plane convolution with the output channels in the vector lanes: the path of layers
//! with whole vectors of output channels per group and a long reduction (every 3x3 layer of
//! ResNet-18 and most pointwise layers of MobileNetV2), on CPUs with AVX-512.
//!
//! The input copy and the tap offsets are the plane path's (`conv/plane.rs`), but the product
//! is transposed: a micro-tile (`avx512::lane_tile`) holds up to 64 output channels (four
//! vectors of weights, packed `[kk][64]` at load) for six output positions, each position's
//! input broadcast from its own place in the copy. Positions are taken one by one, so the
//! padded plane's wasted columns (`PW - OW` per output row) are never computed, and the tail
//! of a block is at most five positions instead of up to 31 columns: ResNet-18's 7x7 layers
//! compute 54 positions for their 49 instead of 64, its 14x14 ones 198 for 196 instead of 224.
//!
//! Every output is still one dot product summed in tap order from zero by one micro-kernel
//! call (FMA after FMA), as on the plane path: the results are that path's bit for bit, and do
//! not depend on the blocking or the thread count.

use super::avx2;
use super::avx512::{self, LaneTile, LANE_ROWS};
use super::plane::{Finish, Plane};
use super::tiled::OutPtr;
use super::PreparedConv;
use crate::ops::gemm::{with_thread_buffer, GemmFloat};
use rayon::prelude::*;
use std::cell::RefCell;

/// Output channels per block: four vectors of 16 lanes.
const MB: usize = 64;
/// Lanes per vector.
const LANES: usize = 16;
/// The shortest reduction that takes this path. The block's outputs are transposed into the
/// output rows (about a cycle per output), which a short reduction does not pay for: at
/// kk = 147 (ResNet-18's `conv1`) the lanes path was 10 % slower than the panels, at 576 and
/// more 0-13 % faster (one thread, sum of step minima).
const MIN_KK: usize = 256;
/// Fewest and most output positions per block (multiples of `LANE_ROWS`).
const QB_MIN: usize = 96;
const QB_MAX: usize = 384;

/// A 64-byte aligned run of 16 floats: one weight vector, loaded without crossing a line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Line([f32; LANES]);

/// The weights packed for the lanes kernel, once at load: per group, per block of up to 64
/// output channels, `[kk][width]` (width the block's channels, a multiple of 16).
#[derive(Clone, Debug)]
pub(super) struct LanesPack {
    w: Vec<Line>,
    /// The micro-kernel that runs it.
    pub(super) isa: Isa,
    /// Reduction rows per chunk (see `lanes_products`).
    pub(super) chunk_rows: usize,
    /// Output channels per block: 64 for AVX-512, 16 for AVX2 (whose micro-tile has 16: the
    /// 16 channels it reads are then contiguous, not every fourth line of 64-channel rows,
    /// which left the deep layers' weights a quarter of L2's sets).
    block: usize,
}

/// The instruction sets of the micro-kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Isa {
    /// `avx512::lane_tile`: up to 64 channels per micro-tile.
    Avx512,
    /// `avx2::lane_tile16`: 16 channels per micro-tile.
    Avx2,
}

impl Isa {
    /// The best this CPU runs (AVX-512 unless `CIMC_PORTABLE_KERNELS` turns it off), if any.
    fn detect() -> Option<Isa> {
        if avx512::available() {
            Some(Isa::Avx512)
        } else if avx2::available() {
            Some(Isa::Avx2)
        } else {
            None
        }
    }
}

/// Whether a layer with `mg` output channels per group and `kk` reduction rows takes this
/// path (the caller checks the plane path's own conditions on the kernel).
pub(super) fn applies(mg: usize, kk: usize) -> bool {
    mg > 0 && mg.is_multiple_of(LANES) && kk >= MIN_KK && Isa::detect().is_some()
}

/// Whether a 2-D layer (`kernel`, `cg` input and `mg` output channels per group, `kk`
/// reduction rows) takes this path on a CPU where the plane path's panels do not run (no
/// AVX-512, or `CIMC_PORTABLE_KERNELS` set): with the AVX2 kernel.
pub(super) fn applies_without_panels(kernel: &[usize], cg: usize, mg: usize, kk: usize) -> bool {
    kernel.len() == 2
        && cg > 0
        && (cg > 1 || kernel.iter().all(|&k| k == 1))
        && Isa::detect() == Some(Isa::Avx2)
        && applies(mg, kk)
}

impl LanesPack {
    /// Packs `w` (`[M, kk]` row-major, `group` groups of `M / group` rows).
    pub(super) fn new(w: &[f32], m: usize, kk: usize, group: usize) -> Self {
        let isa = Isa::detect().expect("invariant: `applies` found a kernel for this CPU");
        Self::for_isa(w, m, kk, group, isa)
    }

    /// [`LanesPack::new`] for the micro-kernel of `isa`.
    pub(super) fn for_isa(w: &[f32], m: usize, kk: usize, group: usize, isa: Isa) -> Self {
        let mg = m / group;
        let block = match isa {
            Isa::Avx512 => MB,
            Isa::Avx2 => LANES,
        };
        let mut packed = vec![Line::default(); m * kk / LANES];
        // The blocks of output channels, `(first row, width)`, each one contiguous run of
        // `kk · width` floats of `packed`, in order: transposed in parallel (a compile packs
        // every layer's weights for its calibration run, on the critical path).
        let blocks: Vec<(usize, usize)> = (0..group)
            .flat_map(|gi| (0..mg).step_by(block).map(move |b0| (gi * mg + b0, block.min(mg - b0))))
            .collect();
        let mut rest = flat_mut(&mut packed);
        let mut jobs = Vec::with_capacity(blocks.len());
        for &(row0, width) in &blocks {
            let (dst, tail) = std::mem::take(&mut rest).split_at_mut(kk * width);
            jobs.push((row0, width, dst));
            rest = tail;
        }
        jobs.into_par_iter().for_each(|(row0, width, dst)| {
            let src = &w[row0 * kk..][..kk * width];
            for (k, line) in dst.chunks_exact_mut(width).enumerate() {
                for (r, v) in line.iter_mut().enumerate() {
                    *v = src[r * kk + k];
                }
            }
        });
        // About 256 KiB of weights per chunk.
        let chunk_rows = (1 << 16) / block;
        LanesPack { w: packed, isa, chunk_rows, block }
    }

    /// The weights back in `[M, kk]` row-major order (the inverse of [`LanesPack::new`]).
    pub(super) fn unpack(&self, m: usize, kk: usize, group: usize) -> Vec<f32> {
        let (mg, flat) = (m / group, flat(&self.w));
        let mut w = vec![0f32; m * kk];
        for (row, dst) in w.chunks_exact_mut(kk.max(1)).enumerate().take(m) {
            let (gi, ch) = (row / mg, row % mg);
            let (b0, r) = (ch / self.block * self.block, ch % self.block);
            let width = self.block.min(mg - b0);
            let block = &flat[(gi * mg + b0) * kk..][..kk * width];
            for (k, v) in dst.iter_mut().enumerate() {
                *v = block[k * width + r];
            }
        }
        w
    }
}

/// The floats of `lines`.
fn flat(lines: &[Line]) -> &[f32] {
    // SAFETY: `Line` is `repr(C)` around `[f32; 16]` with an alignment of 64 = its size, so
    // the lines are contiguous floats with no padding between them.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<f32>(), lines.len() * LANES) }
}

/// The floats of `lines`, mutable.
fn flat_mut(lines: &mut [Line]) -> &mut [f32] {
    // SAFETY: as in `flat`; the borrow is unique.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<f32>(), lines.len() * LANES) }
}

thread_local! {
    /// A block's outputs, `[position][64 channels]`, on each worker thread.
    static BLOCK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl Plane {
    /// The column of the input copy where output position `q` (`[N][OH][OW]` order) reads
    /// its first tap.
    fn column(&self, q: usize) -> usize {
        let per_image = self.oh * self.ow;
        let (b, yx) = (q / per_image, q % per_image);
        b * self.ph * self.pw + (yx / self.ow) * self.pw + yx % self.ow
    }
}

impl<T: GemmFloat> PreparedConv<T> {
    /// The products and finish of every group and block, with the channels in lanes; `xp`,
    /// `boff` and `geo` as for the plane path's `plane_products`.
    pub(super) fn lanes_products(
        &self,
        pack: &LanesPack,
        xp: &[f32],
        boff: &[usize],
        geo: &Plane,
        out: &mut [f32],
        fin: Finish<'_>,
    ) {
        let g = self.attrs.group;
        let (mg, kk) = (self.m / g, boff.len());
        let per_image = geo.oh * geo.ow;
        let positions = geo.n * per_image;
        let mblocks = mg.div_ceil(pack.block);
        let qb = block_positions(positions, g * mblocks, rayon::current_num_threads());
        let qblocks = positions.div_ceil(qb);
        let reach = boff.iter().max().copied().unwrap_or(0) + geo.np;
        assert!(
            reach <= self.cg * geo.cs && xp.len() >= g * self.cg * geo.cs,
            "invariant: every tap of every position lies inside the input copy"
        );
        assert!(
            out.len() == positions * self.m
                && pack.w.len() * LANES == g * mg * kk
                && mg.is_multiple_of(LANES),
            "invariant: the output holds N x M x OH x OW floats, the pack G x Mg x kk"
        );
        let (dst, w) = (OutPtr(out.as_mut_ptr()), flat(&pack.w));
        (0..g * mblocks * qblocks).into_par_iter().for_each(|item| {
            let (gi, rest) = (item / (mblocks * qblocks), item % (mblocks * qblocks));
            let (mb, qbi) = (rest / qblocks, rest % qblocks);
            let (b0, q0) = (mb * pack.block, qbi * qb);
            let (width, q1) = (pack.block.min(mg - b0), (q0 + qb).min(positions));
            let wb = &w[(gi * mg + b0) * kk..][..kk * width];
            let xg = &xp[gi * self.cg * geo.cs..];
            let rows = (q1 - q0).next_multiple_of(LANE_ROWS);
            with_thread_buffer(&BLOCK, rows * MB, |blk| {
                // A micro-tile covers the block's channels on AVX-512, 16 of them on AVX2.
                let (chunks, vectors) = match pack.isa {
                    Isa::Avx512 => (1, width / LANES),
                    Isa::Avx2 => (width / LANES, 1),
                };
                // The reduction in chunks whose weights stay in L2 while every position of
                // the block reads them; each output's sum goes on from where the last chunk
                // stored it (`acc`), so the FMAs are the same, in the same order.
                for k0 in (0..kk).step_by(pack.chunk_rows) {
                    let kc = pack.chunk_rows.min(kk - k0);
                    for c in 0..chunks {
                        for t0 in (q0..q1).step_by(LANE_ROWS) {
                            // The tail's missing positions repeat the last one (computed, not
                            // kept).
                            let x = std::array::from_fn(|i| {
                                xg[geo.column((t0 + i).min(q1 - 1))..].as_ptr()
                            });
                            let tile = LaneTile {
                                kc,
                                w: wb[k0 * width + c * LANES..].as_ptr(),
                                boff: boff[k0..].as_ptr(),
                                x,
                                c: blk[(t0 - q0) * MB + c * LANES..].as_mut_ptr(),
                                acc: k0 > 0,
                            };
                            // SAFETY: `pack.isa` was detected on this CPU at load; `wb` holds
                            // kk x width floats from a 64-byte aligned start (a multiple of
                            // 16 x kk floats into the aligned pack), rows k0..k0+kc of which
                            // the tile reads (columns 16c.. of each on AVX2); `boff` holds kk
                            // offsets; every `x[i] + boff[k]` is below `reach` (a position's
                            // column is < np), inside the group's copy (asserted above);
                            // `blk` holds `rows` >= t0 - q0 + LANE_ROWS rows of MB floats, of
                            // which the tile reads and writes columns 16c..16(c + vectors),
                            // written by the previous chunk when `acc`.
                            unsafe {
                                match pack.isa {
                                    Isa::Avx512 => avx512::lane_tile(&tile, vectors),
                                    Isa::Avx2 => avx2::lane_tile16(&tile, width),
                                }
                            };
                        }
                    }
                }
                for r in 0..width {
                    let ch = gi * mg + b0 + r;
                    let (bias, affine) =
                        (fin.bias.map(|b| b[ch]), fin.affine.map(|(a, b)| (a[ch], b[ch])));
                    // The block's positions, one image at a time: a contiguous run of output
                    // row `ch` of that image.
                    let mut q = q0;
                    while q < q1 {
                        let (img, yx) = (q / per_image, q % per_image);
                        let len = (per_image - yx).min(q1 - q);
                        let o = (img * self.m + ch) * per_image + yx;
                        // SAFETY: (img, ch, yx..yx+len) is inside the output (img < N as
                        // q < positions, asserted length), and only the block owning channel
                        // ch and positions q0..q1 writes these elements.
                        let seg = unsafe { std::slice::from_raw_parts_mut(dst.get().add(o), len) };
                        for (j, v) in seg.iter_mut().enumerate() {
                            *v = blk[(q - q0 + j) * MB + r];
                        }
                        super::finish_seg(seg, bias, affine, fin.act);
                        q += len;
                    }
                }
            });
        });
    }
}

/// The positions per block (a multiple of `LANE_ROWS`) for `positions` positions and `rows`
/// blocks of channels on `threads` threads: the one whose busiest thread has the fewest
/// positions to compute, wider blocks winning ties.
fn block_positions(positions: usize, rows: usize, threads: usize) -> usize {
    let whole = positions.next_multiple_of(LANE_ROWS);
    if whole <= QB_MIN {
        return whole;
    }
    let threads = threads.max(1);
    (QB_MIN..=QB_MAX.min(whole))
        .step_by(LANE_ROWS)
        .min_by_key(|&qb| {
            let blocks = positions.div_ceil(qb);
            // The last block computes its positions rounded up to whole tiles only.
            let busiest = (rows * blocks).div_ceil(threads) * qb;
            (busiest, usize::MAX - qb)
        })
        .unwrap_or(whole)
}

#[cfg(test)]
mod tests {
    //! The lanes path (AVX-512 and AVX2 kernels) against the plane path's panels, bit for
    //! bit (all against a naive convolution in `interp/tests/props.rs`).

    use super::super::plane::{Finish, PlanePack};
    use super::super::PreparedConv;
    use crate::ops::activation::Act;
    use cimc_ir::ConvAttrs;
    use ndarray::ArrayD;
    use proptest::prelude::*;

    use super::super::plane::tests::values;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn unpack_inverts_pack(group in 1usize..=3, vectors in 1usize..=9, kk in 1usize..=300, seed: u64) {
            let m = group * 16 * vectors;
            let w = values(m * kk, seed);
            for isa in [super::Isa::Avx512, super::Isa::Avx2] {
                let pack = super::LanesPack::for_isa(&w, m, kk, group, isa);
                prop_assert_eq!(pack.unpack(m, kk, group), w.clone());
            }
        }

        #[test]
        fn lanes_give_the_panels_results_bit_for_bit(
            (batch, group, vectors, cg) in (1usize..=3, 1usize..=2, 1usize..=6, 15usize..=40),
            (k, stride, pad) in (prop_oneof![Just(1usize), Just(3)], 1usize..=2, 0usize..=1),
            (ih, iw, seed) in (3usize..=19, 3usize..=23, any::<u64>()),
            chunk in 1usize..=100,
        ) {
            // Nothing to compare on a CPU (or under `CIMC_PORTABLE_KERNELS`) without AVX-512.
            if !super::super::avx512::available() {
                return Ok(());
            }
            let (mg, cg) = (16 * vectors, if k == 1 { cg + 241 } else { cg + 14 });
            let (m, kk) = (group * mg, cg * k * k);
            let attrs = ConvAttrs {
                kernel: vec![k, k],
                strides: vec![stride; 2],
                dilations: vec![1; 2],
                pads: vec![pad; 4],
                group,
                clamp: None,
            };
            let w = ArrayD::from_shape_vec(vec![m, cg, k, k], values(m * kk, seed))
                .expect("invariant: the shape matches the values");
            let b = ArrayD::from_shape_vec(vec![m], values(m, seed ^ 5))
                .expect("invariant: the shape matches the values");
            let pc = PreparedConv::new(&attrs, &w, Some(&b)).expect("a valid layer");
            let lanes = pc.plane.as_ref().expect("an AVX-512 CPU packs for the plane path");
            prop_assert!(lanes.lanes.is_some());
            let unpacked = lanes.unpack(m, kk, group);
            let panels = PlanePack::panels(&unpacked, m, kk, group);
            let outs = pc.out_spatial(&[ih, iw]).expect("the window fits");
            let xs = [batch, group * cg, ih, iw];
            let x = values(xs.iter().product(), seed ^ 3);
            let (scale, shift) = (values(m, seed ^ 7), values(m, seed ^ 9));
            let fin = Finish {
                bias: pc.bias.as_deref(),
                affine: Some((&scale, &shift)),
                act: Some(Act::Relu),
            };
            let len = batch * m * outs[0] * outs[1];
            let (mut want, mut got) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            pc.run_plane(&panels, &x, &xs, &outs, &mut want, fin);
            pc.run_plane(lanes, &x, &xs, &outs, &mut got, fin);
            for (i, (u, v)) in want.iter().zip(&got).enumerate() {
                prop_assert_eq!(u.to_bits(), v.to_bits(), "element {}: {} vs {}", i, u, v);
            }
            // Both kernels, the reduction whole or in chunks of a few rows.
            let avx2 = super::avx2::available();
            for (isa, rows) in [(super::Isa::Avx512, chunk), (super::Isa::Avx2, kk), (super::Isa::Avx2, chunk)] {
                if isa == super::Isa::Avx2 && !avx2 {
                    continue;
                }
                let mut other = vec![f32::NAN; len];
                let pack = PlanePack::lanes_for(&unpacked, (m, kk, group), isa, rows);
                pc.run_plane(&pack, &x, &xs, &outs, &mut other, fin);
                for (i, (u, v)) in want.iter().zip(&other).enumerate() {
                    prop_assert_eq!(u.to_bits(), v.to_bits(), "{:?} in chunks of {}, element {}: {} vs {}", isa, rows, i, u, v);
                }
            }
        }
    }
}
