//! The f32 convolution GEMM on AVX-512: `C[M, N] = W[M, K] * B[K, N]` per group, where W (the
//! weights) is packed once when the runner prepares the graph and B (im2col of the input) is
//! packed straight from the input by a row generator, so no im2col matrix is materialized and
//! nothing is packed twice.
//!
//! Micro-kernel: a tile of `R <= 6` output channels by `16*V <= 64` output positions, `R*V`
//! zmm accumulators; per step of K it loads V vectors of B and broadcasts R weights. The
//! epilogue (bias, BatchNorm's affine, Relu/Clip) is applied to the accumulators before the
//! store with the same operations, in the same order, as the scalar epilogue
//! ([`super::conv`]), so results do not depend on which path ran.
//!
//! Blocking: a task owns a range of output positions (or, when N is small, of channel tiles),
//! packs B for it (`K x 64` panels), then for each panel and each block of `KC` steps runs the
//! kernel over every channel tile: the B block stays in L1, the weights stream from L2.

use super::activation::Act;
use rayon::prelude::*;
use std::arch::x86_64::*;

/// Output channels per tile (broadcast dimension).
const MR: usize = 6;
/// Output positions per panel (vector dimension: 4 zmm).
const NR: usize = 64;
/// K steps per block (a `KC x NR` block of B is 32 KiB).
const KC: usize = 128;

/// Whether this CPU runs the kernels here.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

/// Weights `[G][Mg, K]` packed as `[G][tile][K][MR]` (rows past Mg zero).
#[derive(Clone, Debug)]
pub(crate) struct PackedWeights {
    mg: usize,
    k: usize,
    tiles: usize,
    data: Vec<f32>,
}

impl PackedWeights {
    /// Packs row-major weights `[groups * mg, k]`.
    pub(crate) fn new(w: &[f32], groups: usize, mg: usize, k: usize) -> PackedWeights {
        let tiles = mg.div_ceil(MR);
        let mut data = vec![0f32; groups * tiles * k * MR];
        for g in 0..groups {
            for t in 0..tiles {
                let base = (g * tiles + t) * k * MR;
                for i in 0..MR.min(mg - t * MR) {
                    let row = &w[(g * mg + t * MR + i) * k..][..k];
                    for (p, &v) in row.iter().enumerate() {
                        data[base + p * MR + i] = v;
                    }
                }
            }
        }
        PackedWeights { mg, k, tiles, data }
    }
}

/// The per-channel epilogue the kernel can apply in registers.
#[derive(Clone, Copy)]
pub(crate) struct Post<'a> {
    pub bias: Option<&'a [f32]>,
    pub affine: Option<(&'a [f32], &'a [f32])>,
    /// Relu as Clip(0, inf) is not the same bit pattern for -0.0, so Relu is its own case.
    pub act: Option<Act>,
}

impl Post<'_> {
    /// Whether the activation (if any) runs in the kernel; others run after, in `conv`.
    pub(crate) fn act_in_kernel(act: Option<Act>) -> bool {
        matches!(act, None | Some(Act::Relu) | Some(Act::Clip(..)))
    }
}

/// A row generator: writes row `r` of B, columns `n0..n1`, into the slice.
pub(crate) type RowFn<'a> = dyn Fn(usize, usize, usize, &mut [f32]) + Sync + 'a;

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint parts of the output (disjoint columns or disjoint rows).
unsafe impl Sync for OutPtr {}
unsafe impl Send for OutPtr {}
impl OutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `c` (`[Mg, n]` row-major) = group `g`'s weights times B, then `post` (channel `i` of the
/// group uses `post` entry `m0 + i`).
pub(crate) fn conv_gemm(
    w: &PackedWeights,
    g: usize,
    n: usize,
    row: &RowFn<'_>,
    c: &mut [f32],
    post: Post<'_>,
    m0: usize,
) {
    assert!(c.len() >= w.mg * n, "invariant: the output holds Mg x N values");
    if n == 0 || w.mg == 0 {
        return;
    }
    let k = w.k;
    let wg = &w.data[g * w.tiles * k * MR..(g + 1) * w.tiles * k * MR];
    let out = OutPtr(c.as_mut_ptr());
    let threads = rayon::current_num_threads().max(1);
    let panels = n.div_ceil(NR);
    if panels >= 2 * threads || w.tiles < 2 * threads {
        // Split the output positions: each task packs its own columns of B.
        let per = panels.div_ceil(threads * 2).max(1);
        let tasks = panels.div_ceil(per);
        (0..tasks).into_par_iter().for_each(|t| {
            let (n0, n1) = (t * per * NR, ((t + 1) * per * NR).min(n));
            with_packed_b(k, n0, n1, row, |b| {
                // SAFETY: this task writes only columns n0..n1 of every row.
                unsafe { compute(wg, w, 0, w.tiles, b, n0, n1, n, out.get(), post, m0) }
            });
        });
    } else {
        // Few positions, many channels: pack B once, split the channel tiles.
        with_packed_b(k, 0, n, row, |b| {
            let per = w.tiles.div_ceil(threads * 2).max(1);
            (0..w.tiles.div_ceil(per)).into_par_iter().for_each(|t| {
                let (t0, t1) = (t * per, ((t + 1) * per).min(w.tiles));
                // SAFETY: this task writes only the rows of tiles t0..t1.
                unsafe { compute(wg, w, t0, t1, b, 0, n, n, out.get(), post, m0) };
            });
        });
    }
}

thread_local! {
    /// Per-thread buffers for packed B and the generated row, reused across calls (their
    /// contents are always written before being read, except the padding columns of the last
    /// panel, whose results are never stored).
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` on B columns `n0..n1` packed as panels `[panel][K][NR]`.
fn with_packed_b<R>(k: usize, n0: usize, n1: usize, row: &RowFn<'_>, f: impl FnOnce(&[f32]) -> R) -> R {
    let w = n1 - n0;
    let panels = w.div_ceil(NR);
    let pack = |b: &mut Vec<f32>, tmp: &mut Vec<f32>| {
        if b.len() < panels * k * NR {
            b.resize(panels * k * NR, 0.0);
        }
        if tmp.len() < panels * NR {
            tmp.resize(panels * NR, 0.0);
        }
        for p in 0..k {
            row(p, n0, n1, &mut tmp[..w]);
            for (j, chunk) in tmp[..panels * NR].chunks_exact(NR).enumerate() {
                let dst: &mut [f32; NR] = (&mut b[(j * k + p) * NR..][..NR])
                    .try_into()
                    .expect("invariant: a panel row has NR values");
                let src: &[f32; NR] = chunk.try_into().expect("invariant: chunks_exact(NR)");
                *dst = *src;
            }
        }
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut guard) => {
            let (b, tmp) = &mut *guard;
            pack(b, tmp);
            f(&b[..panels * k * NR])
        }
        Err(_) => {
            let (mut b, mut tmp) = (Vec::new(), Vec::new());
            pack(&mut b, &mut tmp);
            f(&b[..panels * k * NR])
        }
    })
}

/// Tiles `t0..t1` x columns `n0..n1` (packed in `b` from column n0), into `c` with row stride
/// `ldc`.
///
/// # Safety
/// `c` must hold `Mg x ldc` values; no other thread may write the same tiles and columns.
unsafe fn compute(
    wg: &[f32],
    w: &PackedWeights,
    t0: usize,
    t1: usize,
    b: &[f32],
    n0: usize,
    n1: usize,
    ldc: usize,
    c: *mut f32,
    post: Post<'_>,
    m0: usize,
) {
    // SAFETY: the caller's contract; see the comment at the kernel call.
    unsafe {
        let k = w.k;
        let width = n1 - n0;
        for j in 0..width.div_ceil(NR) {
            let cols = NR.min(width - j * NR);
            let mut k0 = 0;
            loop {
                let kc = KC.min(k - k0);
                let last = k0 + kc >= k;
                for t in t0..t1 {
                    let rows = MR.min(w.mg - t * MR);
                    let a = wg.as_ptr().add((t * k + k0) * MR);
                    let bp = b.as_ptr().add((j * k + k0) * NR);
                    let cp = c.add(t * MR * ldc + n0 + j * NR);
                    let ch = m0 + t * MR;
                    // SAFETY: `available()` was checked by the caller's constructor; pointers
                    // cover kc steps of a and b and `rows` rows of `cols` values of c.
                    kernel_dyn(rows, cols, kc, a, bp, cp, ldc, k0 > 0, last.then_some((post, ch)));
                }
                k0 += kc;
                if last {
                    break;
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn kernel_dyn(
    rows: usize,
    cols: usize,
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    post: Option<(Post<'_>, usize)>,
) {
    macro_rules! go {
        ($r:literal) => {
            match cols.div_ceil(16) {
                4 => kernel::<$r, 4>(kc, a, b, c, ldc, cols, acc, post),
                3 => kernel::<$r, 3>(kc, a, b, c, ldc, cols, acc, post),
                2 => kernel::<$r, 2>(kc, a, b, c, ldc, cols, acc, post),
                _ => kernel::<$r, 1>(kc, a, b, c, ldc, cols, acc, post),
            }
        };
    }
    // SAFETY: forwarded.
    unsafe {
        match rows {
            6 => go!(6),
            5 => go!(5),
            4 => go!(4),
            3 => go!(3),
            2 => go!(2),
            _ => go!(1),
        }
    }
}

/// The mask of the valid lanes of vector `v` of a row of `cols` values.
#[inline(always)]
fn lane_mask(v: usize, cols: usize) -> __mmask16 {
    let n = cols.saturating_sub(v * 16).min(16);
    if n == 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as u16
    }
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<const R: usize, const V: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    acc: bool,
    post: Option<(Post<'_>, usize)>,
) {
    // SAFETY: avx512f is enabled (checked by `available()` before packing); the pointers
    // cover `kc` steps of a and b and R rows of `cols` values of c (masked beyond).
    unsafe {
        let mut s = [[_mm512_setzero_ps(); V]; R];
        if acc {
            for (i, row) in s.iter_mut().enumerate() {
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_maskz_loadu_ps(lane_mask(v, cols), c.add(i * ldc + v * 16));
                }
            }
        }
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let mut bv = [_mm512_setzero_ps(); V];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(v * 16));
            }
            for (i, row) in s.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i));
                for (v, x) in row.iter_mut().enumerate() {
                    *x = _mm512_fmadd_ps(av, bv[v], *x);
                }
            }
            a = a.add(MR);
            b = b.add(NR);
        }
        if let Some((p, ch)) = post {
            for (i, row) in s.iter_mut().enumerate() {
                let m = ch + i;
                if let Some(bias) = p.bias {
                    let bb = _mm512_set1_ps(bias[m]);
                    row.iter_mut().for_each(|x| *x = _mm512_add_ps(*x, bb));
                }
                if let Some((sa, sb)) = p.affine {
                    let (va, vb) = (_mm512_set1_ps(sa[m]), _mm512_set1_ps(sb[m]));
                    row.iter_mut().for_each(|x| *x = _mm512_add_ps(_mm512_mul_ps(*x, va), vb));
                }
                match p.act {
                    // max(0, x): x when x is NaN or -0.0, as the scalar `if x < 0 { 0 }`.
                    Some(Act::Relu) => {
                        let z = _mm512_setzero_ps();
                        row.iter_mut().for_each(|x| *x = _mm512_max_ps(z, *x));
                    }
                    Some(Act::Clip(lo, hi)) => {
                        let (l, h) = (_mm512_set1_ps(lo as f32), _mm512_set1_ps(hi as f32));
                        row.iter_mut().for_each(|x| *x = _mm512_min_ps(h, _mm512_max_ps(l, *x)));
                    }
                    _ => {}
                }
            }
        }
        for (i, row) in s.iter().enumerate() {
            for (v, x) in row.iter().enumerate() {
                _mm512_mask_storeu_ps(c.add(i * ldc + v * 16), lane_mask(v, cols), *x);
            }
        }
    }
}
