//! Integer matrix products of the program's exact Conv/Gemm steps, summed in i32: activation
//! codes as u8 and weight codes as i8 on AVX-512 VNNI (`vpdpbusd`); both as 16-bit on AVX2
//! (`vpmaddwd`, `avx2.rs`) and in the portable Rust (the baseline CPU, other architectures).
//!
//! An accumulator `Σ_k (q_x[k] − z_x)·w[k,n]` is computed as `Σ_k v[k]·w[k,n] + (lo − z_x)·Σ_k
//! w[k,n]` with `v = q_x − lo ∈ [0, hi − lo]` (`lo..=hi` the input codes' range; padding reads
//! `z_x`, so `v = z_x − lo`). The step takes this path when `v` (and the padding's) fits a u8
//! and the weights an i8 (VNNI), or `v` fits 0..=32767 and the weights an i16 (AVX2,
//! portable), and `K·max v·max |w| < 2^31`: then every product and every partial sum of any
//! lane, in any order, is an integer of magnitude below 2^31 (a sum of at most `K` products of
//! magnitude at most `max v·max |w|`), so nothing wraps, the sum is the exact integer, and the
//! result is the f64 GEMM's bit for bit (that one is exact too). Other widths keep the f64
//! GEMM (`program/kernels.rs`).
//!
//! No im2col: the input of one (sample, conv group) is copied once into a padded
//! channel-last image (`[PH][PW][C4]`, u8 for VNNI, u16 for the 16-bit kernels, channels
//! rounded up to quads, the extra channels' weights zero); tap `(ky, kx)` of output pixel
//! `(oy, ox)` reads the `C4` codes at `((oy·s + ky·d)·PW + ox·s + kx·d)·C4`, so the rows of one
//! tap are contiguous quads. A Gemm is the same with one tap and one "pixel" per input row. The
//! weights are packed once (at load) in blocks of [`MR`] output channels: for each tap and
//! channel quad, `[MR][4]` bytes (VNNI: one 64-byte vector holds 16 channels × 4 taps) or
//! `[2 pairs][MR][2]` i16 (AVX2 and portable: one 32-byte vector holds 8 channels × 2 taps, the
//! operand of `vpmaddwd`). A micro-tile is [`MR`] channels × [`NR`] pixels of i32 accumulators,
//! summed over every tap and quad in registers.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

/// Output channels per packed block (two 16-lane vectors).
pub(crate) const MR: usize = 32;
/// Pixels per micro-tile.
pub(crate) const NR: usize = 12;

/// Which kernel computes the integer products. All give the same integers (the sums are exact);
/// the choice changes the time only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntKernel {
    /// Portable Rust, compiled for the baseline CPU.
    Portable,
    /// AVX2 `vpmaddwd`: 16 i16×i16 products per instruction (x86-64, chosen at run time).
    Avx2,
    /// AVX-512 VNNI: `vpdpbusd`, 64 u8×i8 products per instruction.
    Avx512Vnni,
}

impl IntKernel {
    /// The fastest kernel this CPU runs (detected once). The environment variable
    /// `CIMC_PORTABLE_KERNELS` turns off the AVX-512 kernel, as it does the float
    /// interpreter's (whose convolutions then take their AVX2 build, `interp/src/ops/conv/
    /// avx2.rs`): then AVX2 where the CPU has it, as on a CPU without AVX-512.
    pub fn best() -> IntKernel {
        static BEST: std::sync::OnceLock<IntKernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            if IntKernel::Avx512Vnni.available() && !cimc_interp::portable_kernels_forced() {
                IntKernel::Avx512Vnni
            } else if IntKernel::Avx2.available() {
                IntKernel::Avx2
            } else {
                IntKernel::Portable
            }
        })
    }

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        match self {
            IntKernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            IntKernel::Avx2 => std::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            IntKernel::Avx512Vnni => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            IntKernel::Avx2 | IntKernel::Avx512Vnni => false,
        }
    }

    /// `portable`, `avx2` or `avx512-vnni`.
    pub fn name(self) -> &'static str {
        match self {
            IntKernel::Portable => "portable",
            IntKernel::Avx2 => "avx2",
            IntKernel::Avx512Vnni => "avx512-vnni",
        }
    }

    /// Every kernel this CPU runs (for tests comparing them).
    pub fn all_available() -> Vec<IntKernel> {
        [IntKernel::Portable, IntKernel::Avx2, IntKernel::Avx512Vnni]
            .into_iter()
            .filter(|k| k.available())
            .collect()
    }
}

/// The packed weights, in the layout of their kernel.
enum PackedData {
    /// `[group][block][tap][quad][MR][4]` (VNNI).
    I8(Vec<i8>),
    /// `[group][block][tap][quad][pair][MR][2]` (AVX2, portable).
    I16(Vec<i16>),
}

/// A matrix step's weights packed for the integer kernels, with what turns the u8 products
/// back into the step's accumulators.
pub(crate) struct PackedWeights {
    kernel: IntKernel,
    groups: usize,
    /// Outputs per group, and blocks of [`MR`] of them.
    mg: usize,
    blocks: usize,
    taps: usize,
    /// Channel quads per tap (`ceil(channels / 4)`).
    quads: usize,
    data: PackedData,
    /// Per output: `(lo − z_x)·Σ_k w[k,n]`.
    konst: Vec<i64>,
    /// The input codes' least value and the largest `q − lo`.
    lo: i32,
    vmax: i32,
    /// The padding's `z_x − lo` (at most 255 for VNNI, 32767 for the 16-bit kernels).
    pad: u16,
}

/// What the weights of a step are, for packing: `w(n, tap, channel)` of output `n` (over all
/// groups), with `taps` taps and `channels` channels per group.
pub(crate) struct WeightSpec<W> {
    pub groups: usize,
    pub m: usize,
    pub taps: usize,
    pub channels: usize,
    pub w: W,
    /// The input codes' range and zero point.
    pub range: (i32, i32),
    pub zero_point: i32,
}

impl PackedWeights {
    /// Packs the weights for `kernel`, or `None` when the widths do not admit its i32 sums:
    /// inputs after the offset (or the padding's) beyond u8 (VNNI) or 0..=32767 (AVX2,
    /// portable), weights beyond i8 (VNNI) or i16, or `K·max(v, pad)·max |w| ≥ 2^31`.
    pub(crate) fn new<W: Fn(usize, usize, usize) -> i32 + Sync>(
        spec: &WeightSpec<W>,
        kernel: IntKernel,
    ) -> Option<PackedWeights> {
        let WeightSpec { groups, m, taps, channels, ref w, range: (lo, hi), zero_point: z } = *spec;
        let vmax = hi as i64 - lo as i64;
        let pad = z as i64 - lo as i64;
        // The 16-bit kernels read `v` as an i16 (`vpmaddwd` multiplies signed words).
        let (vlim, wlim) = match kernel {
            IntKernel::Avx512Vnni => (u8::MAX as i64, i8::MIN as i32..=i8::MAX as i32),
            IntKernel::Avx2 | IntKernel::Portable => {
                (i16::MAX as i64, i16::MIN as i32..=i16::MAX as i32)
            }
        };
        if groups == 0 || m % groups != 0 || !(0..=vlim).contains(&vmax) {
            return None;
        }
        if !(0..=vlim).contains(&pad) {
            return None;
        }
        let mg = m / groups;
        let k = taps * channels;
        let mut wmax = 0i64;
        for n in 0..m {
            for t in 0..taps {
                for c in 0..channels {
                    let v = w(n, t, c);
                    if !wlim.contains(&v) {
                        return None;
                    }
                    wmax = wmax.max((v as i64).abs());
                }
            }
        }
        // Every value the image holds is at most `max(vmax, pad)` (the padding's may exceed
        // the codes' when the zero point lies outside their range).
        let bound = (k as u128) * (vmax.max(pad) as u128) * (wmax as u128);
        if bound >= 1u128 << 31 {
            return None;
        }
        let blocks = mg.div_ceil(MR);
        let quads = channels.div_ceil(4);
        let per_block = taps * quads * 4 * MR;
        // The weight of block lane `l`, tap `t`, channel `c` of group `g`'s block `b` (0 past
        // the group's outputs or channels).
        let at = |g: usize, b: usize, l: usize, t: usize, c: usize| -> i32 {
            let nl = b * MR + l;
            if nl < mg && c < channels {
                w(g * mg + nl, t, c)
            } else {
                0
            }
        };
        let data = match kernel {
            IntKernel::Avx512Vnni => {
                let mut d = vec![0i8; groups * blocks * per_block];
                d.par_chunks_mut(per_block).enumerate().for_each(|(gb, blk)| {
                    let (g, b) = (gb / blocks, gb % blocks);
                    for t in 0..taps {
                        for q in 0..quads {
                            let dst = &mut blk[(t * quads + q) * 4 * MR..][..4 * MR];
                            for l in 0..MR {
                                for j in 0..4 {
                                    dst[l * 4 + j] = at(g, b, l, t, q * 4 + j) as i8;
                                }
                            }
                        }
                    }
                });
                PackedData::I8(d)
            }
            IntKernel::Portable | IntKernel::Avx2 => {
                let mut d = vec![0i16; groups * blocks * per_block];
                d.par_chunks_mut(per_block).enumerate().for_each(|(gb, blk)| {
                    let (g, b) = (gb / blocks, gb % blocks);
                    for t in 0..taps {
                        for q in 0..quads {
                            let dst = &mut blk[(t * quads + q) * 4 * MR..][..4 * MR];
                            for p in 0..2 {
                                for l in 0..MR {
                                    for i in 0..2 {
                                        let c = q * 4 + p * 2 + i;
                                        dst[(p * MR + l) * 2 + i] = at(g, b, l, t, c) as i16;
                                    }
                                }
                            }
                        }
                    }
                });
                PackedData::I16(d)
            }
        };
        let konst = (0..m)
            .map(|n| {
                let colsum: i64 = (0..taps)
                    .flat_map(|t| (0..channels).map(move |c| (t, c)))
                    .map(|(t, c)| w(n, t, c) as i64)
                    .sum();
                (lo as i64 - z as i64) * colsum
            })
            .collect();
        Some(PackedWeights {
            kernel,
            groups,
            mg,
            blocks,
            taps,
            quads,
            data,
            konst,
            lo,
            vmax: vmax as i32,
            pad: pad as u16,
        })
    }

    /// The packed weights of group `g`'s block `b`.
    fn block(&self, g: usize, b: usize) -> Block<'_> {
        let per_block = self.taps * self.quads * 4 * MR;
        let at = (g * self.blocks + b) * per_block;
        match &self.data {
            PackedData::I8(d) => Block::I8(&d[at..][..per_block]),
            PackedData::I16(d) => Block::I16(&d[at..][..per_block]),
        }
    }
}

#[derive(Clone, Copy)]
enum Block<'a> {
    // Read by the VNNI kernel only, which exists on x86-64 only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    I8(&'a [i8]),
    I16(&'a [i16]),
}

/// The values `v = q − lo` of an image: u8 for VNNI, u16 for the 16-bit kernels.
enum Pixels {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

impl Pixels {
    fn len(&self) -> usize {
        match self {
            Pixels::U8(d) => d.len(),
            Pixels::U16(d) => d.len(),
        }
    }
}

/// An element of an image: `v` converted from a u32 already checked to be at most the
/// kernel's limit (255 for u8, 32767 for u16), so nothing is cut.
trait Code: Copy + Send + Sync {
    fn of(v: u32) -> Self;
}

impl Code for u8 {
    fn of(v: u32) -> u8 {
        v as u8
    }
}

impl Code for u16 {
    fn of(v: u32) -> u16 {
        v as u16
    }
}

/// The input of one (sample, conv group) as the kernels read it: values `v = q − lo`, and
/// where each pixel's taps start.
pub(crate) struct Image {
    data: Pixels,
    /// Per output pixel, the offset of its tap (0, 0), channel 0; padded with copies of the last
    /// to whole micro-tiles.
    bases: Vec<usize>,
    /// Per tap, its offset from a pixel's base.
    taps: Vec<usize>,
}

/// The window of a convolution over one image: `[C][H][W]` codes in, `oh × ow` pixels out.
pub(crate) struct ConvWindow {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dil: [usize; 2],
    /// Padding before each spatial axis.
    pub pads: [usize; 2],
}

/// Pads `bases` with copies of its last entry to whole micro-tiles.
fn pad_bases(mut bases: Vec<usize>) -> Vec<usize> {
    let last = bases.last().copied().unwrap_or(0);
    bases.resize(bases.len().div_ceil(NR) * NR, last);
    bases
}

impl PackedWeights {
    /// The image of the channels `x` (`[C][H][W]` codes) for window `win`, or `None` when a
    /// code lies outside the input range the weights were packed for.
    pub(crate) fn conv_image(&self, x: &[i32], win: &ConvWindow) -> Option<Image> {
        let c4 = self.quads * 4;
        let [kh, kw] = win.kernel;
        let ph = ((win.oh.max(1) - 1) * win.strides[0] + (kh.max(1) - 1) * win.dil[0] + 1)
            .max(win.pads[0] + win.h);
        let pw = ((win.ow.max(1) - 1) * win.strides[1] + (kw.max(1) - 1) * win.dil[1] + 1)
            .max(win.pads[1] + win.w);
        let data = match self.kernel {
            IntKernel::Avx512Vnni => Pixels::U8(self.conv_pixels(x, win, [ph, pw])?),
            IntKernel::Avx2 | IntKernel::Portable => {
                Pixels::U16(self.conv_pixels(x, win, [ph, pw])?)
            }
        };
        let bases = (0..win.oh * win.ow)
            .map(|p| ((p / win.ow) * win.strides[0] * pw + (p % win.ow) * win.strides[1]) * c4)
            .collect();
        let taps = (0..kh * kw)
            .map(|t| ((t / kw) * win.dil[0] * pw + (t % kw) * win.dil[1]) * c4)
            .collect();
        Some(Image { data, bases: pad_bases(bases), taps })
    }

    /// The padded `[ph][pw][C4]` values of [`PackedWeights::conv_image`] (the padding's value
    /// outside the input), or `None` when a code lies outside the input range.
    fn conv_pixels<E: Code>(
        &self,
        x: &[i32],
        win: &ConvWindow,
        [ph, pw]: [usize; 2],
    ) -> Option<Vec<E>> {
        let c4 = self.quads * 4;
        let mut data = vec![E::of(self.pad as u32); ph * pw * c4];
        let (lo, vmax) = (self.lo, self.vmax as u32);
        let (h, w, plane) = (win.h, win.w, win.h * win.w);
        if plane > 0 && win.c > 0 {
            let ok = data[win.pads[0] * pw * c4..][..h * pw * c4]
                .par_chunks_mut(pw * c4)
                .enumerate()
                .map(|(y, row)| {
                    let mut bad = false;
                    let row = &mut row[win.pads[1] * c4..][..w * c4];
                    for (xi, px) in row.chunks_exact_mut(c4).enumerate() {
                        for (ci, d) in px[..win.c].iter_mut().enumerate() {
                            let v = x[ci * plane + y * w + xi].wrapping_sub(lo) as u32;
                            bad |= v > vmax;
                            *d = E::of(v);
                        }
                    }
                    !bad
                })
                .reduce(|| true, |a, b| a && b);
            if !ok {
                return None;
            }
        }
        Some(data)
    }

    /// The image of `rows` Gemm input rows of `k` codes each (one tap, one pixel per row), or
    /// `None` when a code lies outside the input range.
    pub(crate) fn rows_image(&self, x: &[i32], rows: usize, k: usize) -> Option<Image> {
        let data = match self.kernel {
            IntKernel::Avx512Vnni => Pixels::U8(self.rows_pixels(x, rows, k)?),
            IntKernel::Avx2 | IntKernel::Portable => Pixels::U16(self.rows_pixels(x, rows, k)?),
        };
        let c4 = self.quads * 4;
        let bases = (0..rows).map(|r| r * c4).collect();
        Some(Image { data, bases: pad_bases(bases), taps: vec![0] })
    }

    /// The `[rows][C4]` values of [`PackedWeights::rows_image`].
    fn rows_pixels<E: Code>(&self, x: &[i32], rows: usize, k: usize) -> Option<Vec<E>> {
        let c4 = self.quads * 4;
        let mut data = vec![E::of(0); rows * c4];
        let (lo, vmax) = (self.lo, self.vmax as u32);
        let mut bad = false;
        if k > 0 {
            for (src, dst) in x.chunks_exact(k).zip(data.chunks_exact_mut(c4)) {
                for (d, &q) in dst.iter_mut().zip(src) {
                    let v = q.wrapping_sub(lo) as u32;
                    bad |= v > vmax;
                    *d = E::of(v);
                }
            }
        }
        (!bad).then_some(data)
    }

    /// Runs group `g` over `img`, writing `fin(acc, n)` of every output `n` of the group
    /// (numbered over all groups) and pixel `p < pixels` of the image at
    /// `out[layout.base + n·layout.n_stride + p·layout.p_stride]`, where `acc` is the exact
    /// accumulator `Σ_k (q_x[k] − z_x)·w[k,n]`. Tasks (blocks × pixel ranges) run on rayon's
    /// pool.
    pub(crate) fn run<T, F>(
        &self,
        g: usize,
        img: &Image,
        pixels: usize,
        out: &mut [T],
        layout: OutLayout,
        fin: &F,
    ) where
        T: Copy + Default + Send,
        F: Finish<T> + ?Sized,
    {
        let tiles = img.bases.len() / NR;
        let m = self.groups * self.mg;
        if tiles == 0 || self.blocks == 0 || pixels == 0 || m == 0 {
            return;
        }
        let OutLayout { base, n_stride, p_stride } = layout;
        // Distinct (n, p) go to distinct elements, all inside `out`.
        assert!(
            g < self.groups
                && pixels <= img.bases.len()
                && ((p_stride == 1 && n_stride >= pixels) || (n_stride == 1 && p_stride >= m))
                && base + (m - 1) * n_stride + (pixels - 1) * p_stride < out.len(),
            "invariant: the output layout is one-to-one and inside the buffer"
        );
        let shared = SharedOut(out.as_mut_ptr());
        let threads = rayon::current_num_threads().max(1);
        // Tiles per task: enough tasks to balance the threads, a few hundred pixels at most.
        let per_block_tasks = (threads * 4).div_ceil(self.blocks);
        let chunk = tiles.div_ceil(per_block_tasks).clamp(1, 24);
        let chunks = tiles.div_ceil(chunk);
        (0..self.blocks * chunks).into_par_iter().for_each(|task| {
            let (b, ci) = (task / chunks, task % chunks);
            let t0 = ci * chunk;
            let t1 = (t0 + chunk).min(tiles);
            let bases = &img.bases[t0 * NR..t1 * NR];
            let mut acc = vec![[0i32; MR]; bases.len()];
            accumulate(self.kernel, self.block(g, b), img, bases, self.quads, &mut acc);
            let lanes = MR.min(self.mg - b * MR);
            let shared = &shared;
            // The task's pixels `t0·NR .. p1`, output by output (a Conv's outputs of one
            // channel are contiguous: one run of stores per channel).
            let p1 = (t1 * NR).min(pixels);
            let count = p1.saturating_sub(t0 * NR);
            let mut column = vec![0i32; count];
            let mut vals = vec![T::default(); count];
            for l in 0..lanes {
                let n = g * self.mg + b * MR + l;
                for (c, a) in column.iter_mut().zip(&acc) {
                    *c = a[l];
                }
                fin.channel(n, self.konst[n], &column, &mut vals);
                for (j, &val) in vals.iter().enumerate() {
                    let p = t0 * NR + j;
                    // SAFETY: `n < m` and `p < pixels`, so the index lies inside `out` (asserted
                    // above); the layout is one-to-one (asserted above) and each (n, p) belongs
                    // to exactly one task (its block of outputs, its range of tiles), so no two
                    // threads write the same element, and `out` is borrowed mutably for the
                    // whole call.
                    unsafe { shared.0.add(base + n * n_stride + p * p_stride).write(val) };
                }
            }
        });
    }
}

/// How [`PackedWeights::run`] finishes its accumulators: every output's exact accumulator
/// becomes a value, one output channel at a time (a finish that knows its arithmetic can run a
/// whole channel in vector instructions).
pub(crate) trait Finish<T>: Sync {
    /// The value of accumulator `acc` of output `n`.
    fn one(&self, acc: i64, n: usize) -> T;
    /// `out[j] = one(accs[j] + konst, n)` for every `j` (`out` as long as `accs`).
    fn channel(&self, n: usize, konst: i64, accs: &[i32], out: &mut [T]) {
        for (o, &a) in out.iter_mut().zip(accs) {
            *o = self.one(a as i64 + konst, n);
        }
    }
}

/// Any `fin(acc, n)` as a [`Finish`], called once per output.
pub(crate) struct EachOutput<F>(pub F);

impl<T, F: Fn(i64, usize) -> T + Sync> Finish<T> for EachOutput<F> {
    fn one(&self, acc: i64, n: usize) -> T {
        (self.0)(acc, n)
    }
}

/// Where the outputs of [`PackedWeights::run`] go: output `n`, pixel `p` at
/// `base + n·n_stride + p·p_stride` (`[M][pixels]` for Conv, `[rows][M]` for Gemm).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutLayout {
    pub base: usize,
    pub n_stride: usize,
    pub p_stride: usize,
}

/// The output buffer shared by the tasks of one [`PackedWeights::run`], each writing its own
/// elements.
struct SharedOut<T>(*mut T);
// SAFETY: the pointer is only written through at indices that no other task writes (see
// `PackedWeights::run`), while the buffer it points into is mutably borrowed by that call.
unsafe impl<T: Send> Sync for SharedOut<T> {}
// SAFETY: as for `Sync`: moving the pointer to another thread changes nothing above.
unsafe impl<T: Send> Send for SharedOut<T> {}

/// `acc[j][l] = Σ_tap Σ_channel v[bases[j] + tap + channel]·w[l, tap, channel]` for every pixel
/// `j` of `bases` (whole micro-tiles) and lane `l` of the block.
fn accumulate(
    kernel: IntKernel,
    w: Block<'_>,
    img: &Image,
    bases: &[usize],
    quads: usize,
    acc: &mut [[i32; MR]],
) {
    let reach = img.taps.iter().max().copied().unwrap_or(0) + quads * 4;
    // The packing's length: `taps · quads` steps of `4·MR` weights.
    #[cfg(target_arch = "x86_64")]
    let steps = img.taps.len() * quads * 4 * MR;
    assert!(
        bases.len().is_multiple_of(NR)
            && acc.len() == bases.len()
            && bases.iter().all(|&b| b + reach <= img.data.len()),
        "invariant: the image holds every tap of every pixel"
    );
    match (kernel, w, &img.data) {
        #[cfg(target_arch = "x86_64")]
        (IntKernel::Avx512Vnni, Block::I8(w), Pixels::U8(px)) => {
            assert!(
                IntKernel::Avx512Vnni.available() && w.len() == steps,
                "invariant: the VNNI kernel runs on CPUs that have it, on its own packing"
            );
            // SAFETY: the CPU has the kernel's target features (checked above); every read of
            // the image stays below `bases[j] + reach ≤ img.data.len()` and every read of the
            // weights inside `w` (`taps · quads` steps of `4·MR` bytes), as asserted above.
            unsafe { avx512::accumulate(w, px, bases, &img.taps, quads, acc) }
        }
        #[cfg(target_arch = "x86_64")]
        (IntKernel::Avx2, Block::I16(w), Pixels::U16(px)) => {
            assert!(
                IntKernel::Avx2.available() && w.len() == steps,
                "invariant: the AVX2 kernel runs on CPUs that have it, on its own packing"
            );
            // SAFETY: the CPU has AVX2 (checked above); every read of the image stays below
            // `bases[j] + reach ≤ img.data.len()` and every read of the weights inside `w`
            // (`taps · quads` steps of `4·MR` i16), as asserted above.
            unsafe { avx2::accumulate(w, px, bases, &img.taps, quads, acc) }
        }
        (_, Block::I16(w), Pixels::U16(px)) => {
            accumulate_portable(w, px, bases, &img.taps, quads, acc)
        }
        _ => {
            unreachable!("invariant: weights and image are laid out for the kernel that runs them")
        }
    }
}

/// The portable kernel: one pixel at a time, its [`MR`] i32 accumulators kept in registers
/// over every tap and channel pair (the order of `vpmaddwd`, `avx2.rs`). Each pair's
/// `v₀·w₀ + v₁·w₁` has magnitude below 2^31 (`v ≤ 32767`, `|w| ≤ 32768`), and every partial sum
/// stays below 2^31 (checked when the weights were packed): no addition wraps.
fn accumulate_portable(
    w: &[i16],
    img: &[u16],
    bases: &[usize],
    taps: &[usize],
    quads: usize,
    acc: &mut [[i32; MR]],
) {
    for (&base, out) in bases.iter().zip(acc.iter_mut()) {
        let mut a = [0i32; MR];
        let mut steps = w.chunks_exact(2 * MR);
        for &off in taps {
            let px = &img[base + off..][..4 * quads];
            for (x, wp) in px.chunks_exact(2).zip(&mut steps) {
                let (x0, x1) = (x[0] as i32, x[1] as i32);
                for (al, wl) in a.iter_mut().zip(wp.chunks_exact(2)) {
                    *al += x0 * wl[0] as i32 + x1 * wl[1] as i32;
                }
            }
        }
        *out = a;
    }
}
