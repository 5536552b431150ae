//! Integer matrix products of the program's exact Conv/Gemm steps: activation codes as u8,
//! weight codes as i8, products summed in i32 — AVX-512 VNNI (`vpdpbusd`), the same portable
//! Rust compiled for AVX2, or compiled for the baseline CPU.
//!
//! An accumulator `Σ_k (q_x[k] − z_x)·w[k,n]` is computed as `Σ_k v[k]·w[k,n] + (lo − z_x)·Σ_k
//! w[k,n]` with `v = q_x − lo ∈ [0, hi − lo]` (`lo..=hi` the input codes' range; padding reads
//! `z_x`, so `v = z_x − lo`). The step takes this path when `v` fits a u8, the weights an i8,
//! and `K·max v·max |w| < 2^31`: then no partial sum of any lane, in any order, leaves i32, the
//! sum is the exact integer, and the result is the f64 GEMM's bit for bit (that one is exact
//! too). Other widths keep the f64 GEMM (`program/kernels.rs`).
//!
//! No im2col: the input of one (sample, conv group) is copied once into a padded
//! channel-last image of u8 (`[PH][PW][C4]`, channels rounded up to quads, the extra channels'
//! weights zero); tap `(ky, kx)` of output pixel `(oy, ox)` reads the `C4` bytes at
//! `((oy·s + ky·d)·PW + ox·s + kx·d)·C4`, so the rows of one tap are contiguous quads. A Gemm is
//! the same with one tap and one "pixel" per input row. The weights are packed once (at load)
//! in blocks of [`MR`] output channels: for each tap and channel quad, `[MR][4]` bytes
//! (VNNI: one 64-byte vector holds 16 channels × 4 taps) or `[4][MR]` i16 (portable). A
//! micro-tile is [`MR`] channels × [`NR`] pixels of i32 accumulators, summed over every tap
//! and quad in registers.

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
    /// The portable Rust compiled with AVX2 (x86-64, chosen at run time).
    Avx2,
    /// AVX-512 VNNI: `vpdpbusd`, 64 u8×i8 products per instruction.
    Avx512Vnni,
}

impl IntKernel {
    /// The fastest kernel this CPU runs (detected once); the portable one when the environment
    /// variable `CIMC_PORTABLE_KERNELS` is set (as for the float and crossbar kernels).
    pub fn best() -> IntKernel {
        static BEST: std::sync::OnceLock<IntKernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            if cimc_interp::portable_kernels_forced() {
                IntKernel::Portable
            } else if IntKernel::Avx512Vnni.available() {
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
    /// `[group][block][tap][quad][4][MR]` (portable, AVX2).
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
    /// The padding's `z_x − lo`.
    pad: u8,
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
    /// Packs the weights for `kernel`, or `None` when the widths do not admit the i32 kernels
    /// (inputs beyond u8 after the offset, weights beyond i8, or `K·max v·max |w| ≥ 2^31`).
    pub(crate) fn new<W: Fn(usize, usize, usize) -> i32 + Sync>(
        spec: &WeightSpec<W>,
        kernel: IntKernel,
    ) -> Option<PackedWeights> {
        let WeightSpec { groups, m, taps, channels, ref w, range: (lo, hi), zero_point: z } = *spec;
        let vmax = hi as i64 - lo as i64;
        let pad = z as i64 - lo as i64;
        if groups == 0 || m % groups != 0 || !(0..=255).contains(&vmax) {
            return None;
        }
        if !(0..=255).contains(&pad) {
            return None;
        }
        let mg = m / groups;
        let k = taps * channels;
        let mut wmax = 0i64;
        for n in 0..m {
            for t in 0..taps {
                for c in 0..channels {
                    let v = w(n, t, c);
                    if !(-128..=127).contains(&v) {
                        return None;
                    }
                    wmax = wmax.max((v as i64).abs());
                }
            }
        }
        if (k as u128) * (vmax as u128) * (wmax as u128) >= 1u128 << 31 {
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
                            for j in 0..4 {
                                for l in 0..MR {
                                    dst[j * MR + l] = at(g, b, l, t, q * 4 + j) as i16;
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
            pad: pad as u8,
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
    I8(&'a [i8]),
    I16(&'a [i16]),
}

/// The input of one (sample, conv group) as the kernels read it: u8 values `v = q − lo`, and
/// where each pixel's taps start.
pub(crate) struct Image {
    data: Vec<u8>,
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
        let mut data = vec![self.pad; ph * pw * c4];
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
                            *d = v as u8;
                        }
                    }
                    !bad
                })
                .reduce(|| true, |a, b| a && b);
            if !ok {
                return None;
            }
        }
        let bases = (0..win.oh * win.ow)
            .map(|p| ((p / win.ow) * win.strides[0] * pw + (p % win.ow) * win.strides[1]) * c4)
            .collect();
        let taps = (0..kh * kw)
            .map(|t| ((t / kw) * win.dil[0] * pw + (t % kw) * win.dil[1]) * c4)
            .collect();
        Some(Image { data, bases: pad_bases(bases), taps })
    }

    /// The image of `rows` Gemm input rows of `k` codes each (one tap, one pixel per row), or
    /// `None` when a code lies outside the input range.
    pub(crate) fn rows_image(&self, x: &[i32], rows: usize, k: usize) -> Option<Image> {
        let c4 = self.quads * 4;
        let mut data = vec![0u8; rows * c4];
        let (lo, vmax) = (self.lo, self.vmax as u32);
        let mut bad = false;
        if k > 0 {
            for (src, dst) in x.chunks_exact(k).zip(data.chunks_exact_mut(c4)) {
                for (d, &q) in dst.iter_mut().zip(src) {
                    let v = q.wrapping_sub(lo) as u32;
                    bad |= v > vmax;
                    *d = v as u8;
                }
            }
        }
        if bad {
            return None;
        }
        let bases = (0..rows).map(|r| r * c4).collect();
        Some(Image { data, bases: pad_bases(bases), taps: vec![0] })
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
        T: Copy + Send,
        F: Fn(i64, usize) -> T + Sync,
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
            for (j, a) in acc.iter().enumerate() {
                let p = t0 * NR + j;
                if p >= pixels {
                    break;
                }
                for (l, &v) in a[..lanes].iter().enumerate() {
                    let n = g * self.mg + b * MR + l;
                    let val = fin(v as i64 + self.konst[n], n);
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
    assert!(
        bases.len().is_multiple_of(NR)
            && acc.len() == bases.len()
            && bases.iter().all(|&b| b + reach <= img.data.len()),
        "invariant: the image holds every tap of every pixel"
    );
    match (kernel, w) {
        #[cfg(target_arch = "x86_64")]
        (IntKernel::Avx512Vnni, Block::I8(w)) => {
            assert!(
                IntKernel::Avx512Vnni.available() && w.len() == img.taps.len() * quads * 4 * MR,
                "invariant: the VNNI kernel runs on CPUs that have it, on its own packing"
            );
            // SAFETY: the CPU has the kernel's target features (checked above); every read of
            // the image stays below `bases[j] + reach ≤ img.data.len()` and every read of the
            // weights inside `w` (`taps · quads` steps of `4·MR` bytes), as asserted above.
            unsafe { avx512::accumulate(w, &img.data, bases, &img.taps, quads, acc) }
        }
        #[cfg(target_arch = "x86_64")]
        (IntKernel::Avx2, Block::I16(w)) => {
            assert!(IntKernel::Avx2.available(), "invariant: AVX2 is chosen only where present");
            // SAFETY: the CPU has AVX2 (checked above); the function is safe Rust otherwise.
            unsafe { accumulate_avx2(w, &img.data, bases, &img.taps, quads, acc) }
        }
        (_, Block::I16(w)) => accumulate_portable(w, &img.data, bases, &img.taps, quads, acc),
        _ => unreachable!("invariant: weights are packed for the kernel that runs them"),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn accumulate_avx2(
    w: &[i16],
    img: &[u8],
    bases: &[usize],
    taps: &[usize],
    quads: usize,
    acc: &mut [[i32; MR]],
) {
    accumulate_body(w, img, bases, taps, quads, acc)
}

fn accumulate_portable(
    w: &[i16],
    img: &[u8],
    bases: &[usize],
    taps: &[usize],
    quads: usize,
    acc: &mut [[i32; MR]],
) {
    accumulate_body(w, img, bases, taps, quads, acc)
}

/// The portable kernel: one pixel at a time, its [`MR`] i32 accumulators kept in registers
/// over every tap and quad (the compiler vectorizes the lanes; with 16-bit operands it
/// multiplies with `pmaddwd`). Products of a u8 and an i8 are exact in i32 and the sums stay
/// below 2^31 (checked when the weights were packed): wrapping adds never wrap.
#[inline(always)]
fn accumulate_body(
    w: &[i16],
    img: &[u8],
    bases: &[usize],
    taps: &[usize],
    quads: usize,
    acc: &mut [[i32; MR]],
) {
    for (&base, out) in bases.iter().zip(acc.iter_mut()) {
        let mut a = [0i32; MR];
        let mut steps = w.chunks_exact(4 * MR);
        for &off in taps {
            let px = &img[base + off..][..4 * quads];
            for (x, wq) in px.chunks_exact(4).zip(&mut steps) {
                let (x0, x1, x2, x3) = (x[0] as i32, x[1] as i32, x[2] as i32, x[3] as i32);
                let (w0, rest) = wq.split_at(MR);
                let (w1, rest) = rest.split_at(MR);
                let (w2, w3) = rest.split_at(MR);
                for l in 0..MR {
                    let s = x0 * w0[l] as i32
                        + x1 * w1[l] as i32
                        + x2 * w2[l] as i32
                        + x3 * w3[l] as i32;
                    a[l] = a[l].wrapping_add(s);
                }
            }
        }
        *out = a;
    }
}
