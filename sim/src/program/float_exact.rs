//! The program's exact Conv and Gemm on float GEMMs: the path for code widths the integer
//! kernels do not take (f64, every partial sum an integer below 2^53) and, on CPUs without AVX2,
//! for 8-bit codes too (f32 over chunks of K short enough that every partial sum is an integer
//! below 2^24). Either way every sum is exact in any order, so
//! the blocking below changes only the speed, never a result.
//!
//! Blocking, as the float interpreter's convolutions do (docs/performance.md): layers with many
//! output positions are cut into column tiles whose im2col block stays in L2, each expanded,
//! multiplied on one thread and finished while in cache; layers with few positions and many
//! channels build their im2col once and run blocks of output channels in parallel. Scratch
//! buffers are kept per thread across calls: fresh multi-megabyte buffers per layer cost more
//! in page faults than the products themselves (a quarter of the portable W8A8 ResNet-18 run).

use super::kernels::{gemm_rows, ConvGeom};
use cimc_backends::program::{MatrixKind, Step};
use cimc_interp::gemm::{gemm_serial, with_thread_buffer, GemmFloat, Mat};
use rayon::prelude::*;
use std::cell::RefCell;

/// Bytes of one column tile's im2col block: under half of a 1 MiB L2.
const TILE_BYTES: usize = 384 << 10;
/// Fewer columns per tile than this feed the GEMM poorly: such layers take channel blocks.
const MIN_TILE_COLS: usize = 64;
/// Output channels per task of the channel-block path.
const CHANNEL_BLOCK: usize = 64;

/// A float type the exact GEMM path runs in.
pub(crate) trait ExactFloat: GemmFloat + Copy + Default + Send + Sync {
    fn of_code(v: i32) -> Self;
    /// The integer the value holds (exactly, by the chunk bound).
    fn int(self) -> i64;
    /// Runs `f` on this thread's product buffer of `len` elements (contents unspecified).
    fn with_product<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

macro_rules! exact_float {
    ($t:ty, $key:ident) => {
        thread_local! {
            static $key: RefCell<Vec<$t>> = const { RefCell::new(Vec::new()) };
        }
        impl ExactFloat for $t {
            fn of_code(v: i32) -> $t {
                v as $t
            }
            fn int(self) -> i64 {
                self as i64
            }
            fn with_product<R>(len: usize, f: impl FnOnce(&mut [$t]) -> R) -> R {
                with_thread_buffer(&$key, len, f)
            }
        }
    };
}
exact_float!(f32, PRODUCT_F32);
exact_float!(f64, PRODUCT_F64);

thread_local! {
    static ACC: RefCell<Vec<i64>> = const { RefCell::new(Vec::new()) };
}

/// `acc[m×n] = a[m×k] · b[k×n]` on the calling thread (`a` row-major with row stride `lda`,
/// `b` row-major with row stride `ldb`), one GEMM per `chunk` rows of K, each chunk's exact
/// sums added into `acc` as integers.
#[allow(clippy::too_many_arguments)]
fn product<W: ExactFloat>(
    (m, k, n): (usize, usize, usize),
    a: &[W],
    lda: usize,
    b: &[W],
    ldb: usize,
    chunk: usize,
    acc: &mut [i64],
) {
    acc[..m * n].fill(0);
    W::with_product(m * n, |tmp| {
        for k0 in (0..k).step_by(chunk.max(1)) {
            let kc = chunk.min(k - k0);
            let am = Mat { data: &a[k0..], rs: lda, cs: 1 };
            let bm = Mat { data: &b[k0 * ldb..], rs: ldb, cs: 1 };
            gemm_serial(m, kc, n, am, bm, tmp, n);
            for (s, &t) in acc.iter_mut().zip(&tmp[..m * n]) {
                *s += t.int();
            }
        }
    })
}

/// Columns `cols` (output positions `oy·ow + ox`) of the im2col matrix of `xs`, `channels`
/// planes of `[h, w]`: `col[r·cols.len() + j]` for row `r = (ci, ky, kx)` is the code at the
/// tap's place minus `z`, 0 in the padding (each output row's valid columns found once).
fn im2col_cols<W: ExactFloat>(
    xs: &[i32],
    channels: usize,
    geo: &ConvGeom,
    z: i32,
    cols: std::ops::Range<usize>,
    col: &mut [W],
) {
    let (h, w, ow, nc) = (geo.h, geo.w, geo.ow.max(1), cols.len());
    let (sy, sx) = (geo.strides[0], geo.strides[1]);
    let mut rows = col.chunks_exact_mut(nc.max(1));
    for ci in 0..channels {
        let plane = &xs[ci * h * w..][..h * w];
        for ky in 0..geo.kh {
            for kx in 0..geo.kw {
                let Some(row) = rows.next() else { return };
                let x_off = (kx * geo.dil[1]) as isize - geo.pads[1] as isize;
                // Output columns whose input column `ox·sx + x_off` lies in 0..w.
                let (ox_lo, ox_hi) = valid_columns(x_off, sx, w, ow);
                let mut j = 0;
                while j < nc {
                    let p = cols.start + j;
                    let (oy, ox0) = (p / ow, p % ow);
                    let len = (ow - ox0).min(nc - j);
                    let out = &mut row[j..j + len];
                    j += len;
                    let iy = (oy * sy + ky * geo.dil[0]) as isize - geo.pads[0] as isize;
                    if iy < 0 || iy as usize >= h {
                        out.fill(W::default());
                        continue;
                    }
                    let src = &plane[iy as usize * w..][..w];
                    // The segment's columns ox0.. split into padding, valid, padding.
                    let lo = ox_lo.clamp(ox0, ox0 + len) - ox0;
                    let hi = ox_hi.clamp(ox0 + lo, ox0 + len) - ox0;
                    out[..lo].fill(W::default());
                    for (ox, d) in (ox0 + lo..).zip(&mut out[lo..hi]) {
                        *d = W::of_code(src[(ox as isize * sx as isize + x_off) as usize] - z);
                    }
                    out[hi..].fill(W::default());
                }
            }
        }
    }
}

/// The output columns `ox_lo..ox_hi` whose input column `ox·sx + x_off` lies in `0..w`.
fn valid_columns(x_off: isize, sx: usize, w: usize, ow: usize) -> (usize, usize) {
    if sx == 0 {
        // Every output column reads the same input column.
        let inside = x_off >= 0 && (x_off as usize) < w;
        return if inside { (0, ow) } else { (0, 0) };
    }
    let lo = if x_off >= 0 { 0 } else { ((-x_off) as usize).div_ceil(sx) }.min(ow);
    let hi = if (w as isize) <= x_off { 0 } else { ((w as isize - x_off) as usize).div_ceil(sx) };
    (lo, hi.min(ow).max(lo))
}

/// The width of the column tiles for a layer of `pixels` positions and `kk` im2col rows of `W`,
/// or `None` when tiles would be too narrow or too few (then channel blocks).
fn tile_width<W>(pixels: usize, kk: usize) -> Option<usize> {
    let nt = (TILE_BYTES / std::mem::size_of::<W>() / kk.max(1)) / 16 * 16;
    (nt >= MIN_TILE_COLS && pixels >= 2 * nt).then_some(nt)
}

/// The exact product of a matrix step with the float weights `pw` (per group `[M/g, K]`
/// row-major for Conv, `[K, N]` for Gemm), over `chunk` rows of K at a time: every accumulator
/// goes through `fin(acc, channel)`, in the output buffer's layout.
pub(crate) fn run<W: ExactFloat, T, F>(
    s: &Step,
    pw: &[W],
    chunk: usize,
    x: &[i32],
    si: &[usize],
    so: &[usize],
    fin: &F,
) -> Result<Vec<T>, String>
where
    T: Copy + Default + Send,
    F: Fn(i64, usize) -> T + Sync,
{
    let ms = s.as_matrix().ok_or("not a matrix step")?;
    let (z, weights) = (ms.input_zero_point, ms.weights);
    match ms.kind {
        MatrixKind::Conv { window, group } => {
            let geo = ConvGeom::new(weights, window, group, si, so, x.len())?;
            let kk = geo.cg * geo.kh * geo.kw;
            let job = ConvJob { geo: &geo, pw, chunk, x, z, fin };
            Ok(match tile_width::<W>(geo.oh * geo.ow, kk) {
                Some(nt) => job.tiles(nt),
                None => job.channel_blocks(),
            })
        }
        MatrixKind::Gemm => {
            let (k, nn) = (weights.shape[0], weights.shape[1]);
            let rows = gemm_rows(si, so, x.len(), k, nn)?;
            // acc = a · pw with a [rows, K], one task per block of output columns.
            let a: Vec<W> = x.iter().map(|&q| W::of_code(q - z)).collect();
            let blocks: Vec<(usize, Vec<T>)> = (0..nn.div_ceil(CHANNEL_BLOCK))
                .into_par_iter()
                .map(|bi| {
                    let n0 = bi * CHANNEL_BLOCK;
                    let nb = CHANNEL_BLOCK.min(nn - n0);
                    let mut out = Vec::with_capacity(rows * nb);
                    with_thread_buffer(&ACC, rows * nb, |acc| {
                        product((rows, k, nb), &a, k, &pw[n0..], nn, chunk, acc);
                        out.extend(acc.iter().enumerate().map(|(i, &v)| fin(v, n0 + i % nb)));
                    });
                    (n0, out)
                })
                .collect();
            let mut out = vec![T::default(); rows * nn];
            for (n0, blk) in &blocks {
                let nb = blk.len() / rows.max(1);
                for (r, src) in blk.chunks_exact(nb.max(1)).enumerate() {
                    out[r * nn + n0..][..nb].copy_from_slice(src);
                }
            }
            Ok(out)
        }
    }
}

/// One exact convolution: its geometry, weights `pw` (per group `[M/g, K]`), chunk of K, input
/// codes, input zero point and finish.
struct ConvJob<'a, W, F> {
    geo: &'a ConvGeom,
    pw: &'a [W],
    chunk: usize,
    x: &'a [i32],
    z: i32,
    fin: &'a F,
}

impl<W: ExactFloat, F> ConvJob<'_, W, F> {
    /// Image `b`'s input planes of group `gi` and that group's weights.
    fn operands(&self, b: usize, gi: usize) -> (&[i32], &[W]) {
        let ConvGeom { c, h, w, cg, mg, kh, kw, .. } = *self.geo;
        let kk = cg * kh * kw;
        (&self.x[(b * c + gi * cg) * h * w..][..cg * h * w], &self.pw[gi * mg * kk..][..mg * kk])
    }

    /// A convolution with many output positions: tasks over (image, group, column tile), each
    /// expanding its tile, multiplying it on its thread and finishing it; then the tiles' outputs
    /// are put in place.
    fn tiles<T>(&self, nt: usize) -> Vec<T>
    where
        T: Copy + Default + Send,
        F: Fn(i64, usize) -> T + Sync,
    {
        let (geo, chunk, z, fin) = (self.geo, self.chunk, self.z, self.fin);
        let ConvGeom { n, m, g, cg, mg, kh, kw, .. } = *geo;
        let (kk, pixels) = (cg * kh * kw, geo.oh * geo.ow);
        let tiles = pixels.div_ceil(nt);
        let blocks: Vec<Vec<T>> = (0..n * g * tiles)
            .into_par_iter()
            .map(|t| {
                let (bg, ti) = (t / tiles, t % tiles);
                let (b, gi) = (bg / g, bg % g);
                let cols = ti * nt..(ti * nt + nt).min(pixels);
                let nc = cols.len();
                let (xs, wg) = self.operands(b, gi);
                let mut out = Vec::with_capacity(mg * nc);
                W::with_scratch(kk * nc, |col| {
                    im2col_cols(xs, cg, geo, z, cols, col);
                    with_thread_buffer(&ACC, mg * nc, |acc| {
                        product((mg, kk, nc), wg, kk, col, nc, chunk, acc);
                        out.extend(acc.iter().enumerate().map(|(i, &a)| fin(a, gi * mg + i / nc)));
                    });
                });
                out
            })
            .collect();
        let mut out = vec![T::default(); n * m * pixels];
        for (t, blk) in blocks.iter().enumerate() {
            let (bg, ti) = (t / tiles, t % tiles);
            let (b, gi) = (bg / g, bg % g);
            let c0 = ti * nt;
            let nc = blk.len() / mg.max(1);
            for (mo, src) in blk.chunks_exact(nc.max(1)).enumerate() {
                out[(b * m + gi * mg + mo) * pixels + c0..][..nc].copy_from_slice(src);
            }
        }
        out
    }

    /// A convolution with few output positions: per (image, group) the im2col matrix once (in
    /// parallel over input channels), then blocks of output channels in parallel, each writing its
    /// rows of the output.
    fn channel_blocks<T>(&self) -> Vec<T>
    where
        T: Copy + Default + Send,
        F: Fn(i64, usize) -> T + Sync,
    {
        let (geo, chunk, z, fin) = (self.geo, self.chunk, self.z, self.fin);
        let ConvGeom { n, h, w, m, g, mg, kh, kw, .. } = *geo;
        let (kk, pixels) = (geo.cg * kh * kw, geo.oh * geo.ow);
        let mut out = vec![T::default(); n * m * pixels];
        for b in 0..n {
            for gi in 0..g {
                let (xs, wg) = self.operands(b, gi);
                let og = &mut out[(b * m + gi * mg) * pixels..][..mg * pixels];
                W::with_scratch(kk * pixels, |col| {
                    col.par_chunks_mut((kh * kw * pixels).max(1)).enumerate().for_each(
                        |(ci, rows)| {
                            let plane = &xs[ci * h * w..][..h * w];
                            im2col_cols(plane, 1, geo, z, 0..pixels, rows);
                        },
                    );
                    let col = &*col;
                    og.par_chunks_mut((CHANNEL_BLOCK * pixels).max(1)).enumerate().for_each(
                        |(bi, rows)| {
                            let m0 = bi * CHANNEL_BLOCK;
                            let mb = rows.len() / pixels.max(1);
                            let wb = &wg[m0 * kk..][..mb * kk];
                            with_thread_buffer(&ACC, mb * pixels, |acc| {
                                product((mb, kk, pixels), wb, kk, col, pixels, chunk, acc);
                                for (i, (d, &a)) in rows.iter_mut().zip(acc.iter()).enumerate() {
                                    *d = fin(a, gi * mg + m0 + i / pixels);
                                }
                            });
                        },
                    );
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! Both blockings and the chunked f32 products against a naive integer convolution, on
    //! shapes that reach each path (column tiles, channel blocks with a partial last block,
    //! groups, strides, padding, several chunks of K).
    use super::*;
    use cimc_backends::program::{IntTensor, Requant, Window};

    struct Lcg(u64);
    impl Lcg {
        fn code(&mut self, lo: i32, hi: i32) -> i32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + ((self.0 >> 33) % (hi - lo + 1) as u64) as i32
        }
    }

    /// `(n, c, h, w, m, group, k, stride, pad)`.
    type Shape = (usize, usize, usize, usize, usize, usize, usize, usize, usize);

    fn naive_conv(s: Shape, x: &[i32], z: i32, wts: &[i32]) -> (Vec<i64>, [usize; 4]) {
        let (n, c, h, w, m, g, k, st, p) = s;
        let (cg, mg) = (c / g, m / g);
        let (oh, ow) = ((h + 2 * p - k) / st + 1, (w + 2 * p - k) / st + 1);
        let mut out = vec![0i64; n * m * oh * ow];
        for b in 0..n {
            for o in 0..m {
                for y in 0..oh {
                    for xx in 0..ow {
                        let mut a = 0i64;
                        for ci in 0..cg {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (y * st + ky) as isize - p as isize;
                                    let ix = (xx * st + kx) as isize - p as isize;
                                    if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                        continue;
                                    }
                                    let cin = (o / mg) * cg + ci;
                                    let v = x[((b * c + cin) * h + iy as usize) * w + ix as usize];
                                    let wv = wts[((o * cg + ci) * k + ky) * k + kx];
                                    a += (v - z) as i64 * wv as i64;
                                }
                            }
                        }
                        out[((b * m + o) * oh + y) * ow + xx] = a;
                    }
                }
            }
        }
        (out, [n, m, oh, ow])
    }

    fn check_conv(s: Shape, chunk: usize) {
        let (n, c, h, w, m, g, k, st, p) = s;
        let mut rng = Lcg(n as u64 * 31 + c as u64 * 7 + m as u64);
        let z = 3;
        let x: Vec<i32> = (0..n * c * h * w).map(|_| rng.code(0, 255)).collect();
        let wts: Vec<i32> = (0..m * (c / g) * k * k).map(|_| rng.code(-127, 127)).collect();
        let (want, so) = naive_conv(s, &x, z, &wts);
        let window = Window {
            kernel: vec![k, k],
            strides: vec![st, st],
            dilations: vec![1, 1],
            pads: vec![p; 4],
        };
        let step = Step::Conv {
            input: 0,
            output: 1,
            input_zero_point: z,
            weights: IntTensor { shape: vec![m, c / g, k, k], bits: 8, data: wts.clone() },
            bias: vec![0; m],
            window,
            group: g,
            requant: Requant { mult: vec![], zero_point: 0, lo: 0, hi: 0 },
            crossbar: None,
        };
        let pixels = so[2] * so[3];
        let fin = |a: i64, ch: usize| a * 1024 + ch as i64;
        let expect: Vec<i64> =
            want.iter().enumerate().map(|(i, &a)| fin(a, (i / pixels) % m)).collect();
        let w32: Vec<f32> = wts.iter().map(|&v| v as f32).collect();
        let w64: Vec<f64> = wts.iter().map(|&v| v as f64).collect();
        let si = [n, c, h, w];
        let got32: Vec<i64> = run(&step, &w32, chunk, &x, &si, &so, &fin).unwrap();
        assert_eq!(got32, expect, "f32, {s:?}, chunk {chunk}");
        let got64: Vec<i64> = run(&step, &w64, usize::MAX, &x, &si, &so, &fin).unwrap();
        assert_eq!(got64, expect, "f64, {s:?}");
    }

    #[test]
    fn column_tiles_match_the_naive_convolution() {
        // kk = 144: tiles of 672 columns over 1,600 and 2,025 positions (the last partial).
        assert_eq!(tile_width::<f32>(2025, 144), Some(672));
        assert_eq!(tile_width::<f32>(1600, 144), Some(672));
        check_conv((2, 16, 40, 40, 70, 1, 3, 1, 1), 50);
        check_conv((1, 32, 90, 90, 6, 2, 3, 2, 1), 200);
    }

    #[test]
    fn channel_blocks_match_the_naive_convolution() {
        assert_eq!(tile_width::<f32>(49, 576), None);
        check_conv((2, 64, 7, 7, 130, 1, 3, 1, 1), 100);
        check_conv((1, 12, 9, 9, 150, 3, 1, 2, 0), 5);
    }

    #[test]
    fn gemm_blocks_match_the_naive_product() {
        let (rows, k, nn, z) = (3, 700, 150, -2);
        let mut rng = Lcg(5);
        let x: Vec<i32> = (0..rows * k).map(|_| rng.code(-128, 127)).collect();
        let wts: Vec<i32> = (0..k * nn).map(|_| rng.code(-127, 127)).collect();
        let step = Step::Gemm {
            input: 0,
            output: 1,
            input_zero_point: z,
            weights: IntTensor { shape: vec![k, nn], bits: 8, data: wts.clone() },
            bias: vec![0; nn],
            requant: Requant { mult: vec![], zero_point: 0, lo: 0, hi: 0 },
            crossbar: None,
        };
        let fin = |a: i64, ch: usize| a * 1024 + ch as i64;
        let expect: Vec<i64> = (0..rows * nn)
            .map(|i| {
                let (r, j) = (i / nn, i % nn);
                let a = (0..k).map(|t| (x[r * k + t] - z) as i64 * wts[t * nn + j] as i64).sum();
                fin(a, j)
            })
            .collect();
        let w32: Vec<f32> = wts.iter().map(|&v| v as f32).collect();
        let got: Vec<i64> = run(&step, &w32, 300, &x, &[rows, k], &[rows, nn], &fin).unwrap();
        assert_eq!(got, expect);
    }
}
