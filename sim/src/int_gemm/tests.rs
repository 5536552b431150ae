//! Every integer kernel this CPU runs against a naive i64 convolution and matrix product, on
//! random shapes, code widths (1 to 15 bits of input, 1 to 16 of weights), zero points and
//! weights; and the edge widths where a partial sum comes within one product of 2^31.

use super::{ConvWindow, IntKernel, OutLayout, PackedWeights, WeightSpec};
use proptest::prelude::*;

/// A random convolution: shape, window, code range, zero point, inputs and weights.
#[derive(Debug, Clone)]
struct Case {
    n: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    h: usize,
    w: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    dil: [usize; 2],
    /// Begin and end padding of each axis.
    pads: [usize; 4],
    range: (i32, i32),
    zero_point: i32,
    x: Vec<i32>,
    /// `[M][cg][kh][kw]`.
    wts: Vec<i32>,
}

impl Case {
    fn out_hw(&self) -> (usize, usize) {
        let ext = |i: usize, n: usize, p: usize| {
            (n + p - (self.kernel[i] - 1) * self.dil[i] - 1) / self.strides[i] + 1
        };
        (ext(0, self.h, self.pads[0] + self.pads[2]), ext(1, self.w, self.pads[1] + self.pads[3]))
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1usize..3, 1usize..3, 1usize..10, 1usize..40),
        (1usize..9, 1usize..9, 1usize..4, 1usize..4),
        (1usize..3, 1usize..3, 1usize..3, 0usize..3, 0usize..3),
        (1u8..=15, any::<bool>(), -3i32..1260, 1u8..=16),
    )
        .prop_filter(
            "the kernel fits the padded input",
            |((..), (h, w, kh, kw), (_, _, d0, p0, p1), _)| {
                h + 2 * p0 > (kh - 1) * d0 && w + 2 * p1 > (kw - 1) * d0
            },
        )
        .prop_flat_map(
            |(
                (n, groups, cg, mg),
                (h, w, kh, kw),
                (s0, s1, d, p0, p1),
                (bits, signed, zsel, wbits),
            )| {
                let (lo, hi) = if signed {
                    (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1)
                } else {
                    (0, (1i32 << bits) - 1)
                };
                // Mostly inside the range; now and then outside it (the padding's code need not
                // be a code of the range, as long as `z − lo` fits the kernel's image).
                let z = match zsel {
                    ..0 => lo + zsel,
                    0..=1000 => lo + ((hi - lo) as i64 * zsel as i64 / 1000) as i32,
                    1001..=1003 => hi + zsel - 1000,
                    _ => lo + zsel - 1004,
                };
                let wlim = 1i32 << (wbits - 1);
                let xs = proptest::collection::vec(lo..=hi, n * groups * cg * h * w);
                let ws = proptest::collection::vec(-wlim..wlim, groups * mg * cg * kh * kw);
                (xs, ws).prop_map(move |(x, wts)| Case {
                    n,
                    groups,
                    cg,
                    mg,
                    h,
                    w,
                    kernel: [kh, kw],
                    strides: [s0, s1],
                    dil: [d, d],
                    pads: [p0, p1, p0, p1],
                    range: (lo, hi),
                    zero_point: z,
                    x,
                    wts,
                })
            },
        )
}

/// Whether `kernel` should admit a product: input values `v = q − lo` up to `vmax`, the
/// padding's `pad`, weights `w`, `k` products per sum. The spec of `PackedWeights::new`,
/// written out: VNNI multiplies u8 by i8, the 16-bit kernels i16 by i16 with `v ≥ 0`, and every
/// partial sum must stay below 2^31.
fn admitted(kernel: IntKernel, vmax: i64, pad: i64, w: &[i32], k: usize) -> bool {
    let (vlim, wlim) = match kernel {
        IntKernel::Avx512Vnni => (255, -128..=127),
        IntKernel::Avx2 | IntKernel::Portable => (32767, -32768..=32767),
    };
    let wmax = w.iter().map(|&v| (v as i64).abs()).max().unwrap_or(0);
    (0..=vlim).contains(&vmax)
        && (0..=vlim).contains(&pad)
        && w.iter().all(|v| wlim.contains(v))
        && (k as i64) * vmax.max(pad) * wmax < 1 << 31
}

/// The accumulators `[N][M][oh][ow]` computed naively in i64.
fn naive_conv(c: &Case) -> Vec<i64> {
    let (oh, ow) = c.out_hw();
    let m = c.groups * c.mg;
    let [kh, kw] = c.kernel;
    let ch = c.groups * c.cg;
    let mut out = vec![0i64; c.n * m * oh * ow];
    for b in 0..c.n {
        for n in 0..m {
            let g = n / c.mg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0i64;
                    for ci in 0..c.cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.strides[0] + ky * c.dil[0]) as isize
                                    - c.pads[0] as isize;
                                let ix = (ox * c.strides[1] + kx * c.dil[1]) as isize
                                    - c.pads[1] as isize;
                                let inside = iy >= 0
                                    && (iy as usize) < c.h
                                    && ix >= 0
                                    && (ix as usize) < c.w;
                                let q = if inside {
                                    let cin = g * c.cg + ci;
                                    c.x[((b * ch + cin) * c.h + iy as usize) * c.w + ix as usize]
                                } else {
                                    c.zero_point
                                };
                                let wv = c.wts[((n * c.cg + ci) * kh + ky) * kw + kx];
                                acc += (q as i64 - c.zero_point as i64) * wv as i64;
                            }
                        }
                    }
                    out[((b * m + n) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    out
}

/// The accumulators of `kernel` (`None`: the widths were not admitted).
fn kernel_conv(c: &Case, kernel: IntKernel) -> Option<Vec<i64>> {
    let (oh, ow) = c.out_hw();
    let m = c.groups * c.mg;
    let [kh, kw] = c.kernel;
    let taps = kh * kw;
    let spec = WeightSpec {
        groups: c.groups,
        m,
        taps,
        channels: c.cg,
        w: |n: usize, t: usize, ci: usize| c.wts[(n * c.cg + ci) * taps + t],
        range: c.range,
        zero_point: c.zero_point,
    };
    let pw = PackedWeights::new(&spec, kernel)?;
    let pixels = oh * ow;
    let win = ConvWindow {
        c: c.cg,
        h: c.h,
        w: c.w,
        oh,
        ow,
        kernel: c.kernel,
        strides: c.strides,
        dil: c.dil,
        pads: [c.pads[0], c.pads[1]],
    };
    let mut out = vec![0i64; c.n * m * pixels];
    let plane = c.h * c.w;
    for b in 0..c.n {
        for g in 0..c.groups {
            let xs = &c.x[(b * c.groups + g) * c.cg * plane..][..c.cg * plane];
            let img = pw.conv_image(xs, &win).expect("codes in range");
            let layout = OutLayout { base: b * m * pixels, n_stride: pixels, p_stride: 1 };
            pw.run(g, &img, pixels, &mut out, layout, &super::EachOutput(|a: i64, _: usize| a));
        }
    }
    Some(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn conv_kernels_match_naive(c in case()) {
        let want = naive_conv(&c);
        let pad = c.zero_point as i64 - c.range.0 as i64;
        let vmax = c.range.1 as i64 - c.range.0 as i64;
        let kk = c.cg * c.kernel[0] * c.kernel[1];
        for k in IntKernel::all_available() {
            let got = kernel_conv(&c, k);
            prop_assert_eq!(got.is_some(), admitted(k, vmax, pad, &c.wts, kk), "{:?}", k);
            if let Some(got) = got {
                prop_assert_eq!(&got, &want, "{:?}", k);
            }
        }
    }

    #[test]
    fn gemm_kernels_match_naive(
        rows in 1usize..30,
        k in 1usize..300,
        nn in 1usize..70,
        signed in any::<bool>(),
        (xbits, wbits) in prop_oneof![Just((8u32, 8u32)), (8u32..=15, 2u32..=16)],
        seed in any::<u64>(),
    ) {
        let (xr, wr) = (1i32 << xbits, 1i32 << wbits);
        let (lo, hi) = if signed { (-xr / 2, xr / 2 - 1) } else { (0, xr - 1) };
        let z = lo + (seed % xr as u64) as i32;
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as i32
        };
        let x: Vec<i32> = (0..rows * k).map(|_| lo + next().rem_euclid(xr)).collect();
        let w: Vec<i32> = (0..k * nn).map(|_| next().rem_euclid(wr) - wr / 2).collect();
        let mut want = vec![0i64; rows * nn];
        for r in 0..rows {
            for n in 0..nn {
                want[r * nn + n] = (0..k)
                    .map(|kk| (x[r * k + kk] as i64 - z as i64) * w[kk * nn + n] as i64)
                    .sum();
            }
        }
        for kernel in IntKernel::all_available() {
            let spec = WeightSpec {
                groups: 1,
                m: nn,
                taps: 1,
                channels: k,
                w: |n: usize, _t: usize, c: usize| w[c * nn + n],
                range: (lo, hi),
                zero_point: z,
            };
            let pw = PackedWeights::new(&spec, kernel);
            let (vmax, pad) = ((hi - lo) as i64, (z - lo) as i64);
            prop_assert_eq!(pw.is_some(), admitted(kernel, vmax, pad, &w, k), "{:?}", kernel);
            let Some(pw) = pw else { continue };
            let img = pw.rows_image(&x, rows, k).expect("codes in range");
            let mut got = vec![0i64; rows * nn];
            let layout = OutLayout { base: 0, n_stride: 1, p_stride: nn };
            pw.run(0, &img, rows, &mut got, layout, &super::EachOutput(|a: i64, _: usize| a));
            prop_assert_eq!(&got, &want, "{:?}", kernel);
        }
    }
}

/// Widths a kernel cannot take exactly are refused: for VNNI 9-bit weights or inputs; for the
/// 16-bit kernels 17-bit weights or 16-bit inputs (`vpmaddwd` reads them as i16); for every
/// kernel a `K` where `K·max v·max |w|` reaches 2^31, the padding's value counted in `max v`.
#[test]
fn wide_codes_are_refused() {
    let spec = |range: (i32, i32), z: i32, wv: i32, channels: usize| WeightSpec {
        groups: 1,
        m: 1,
        taps: 1,
        channels,
        w: move |_n: usize, _t: usize, _c: usize| wv,
        range,
        zero_point: z,
    };
    let admits = |range: (i32, i32), wv: i32, channels: usize, k: IntKernel| {
        PackedWeights::new(&spec(range, range.0, wv, channels), k).is_some()
    };
    for k in IntKernel::all_available() {
        let vnni = k == IntKernel::Avx512Vnni;
        assert!(admits((0, 255), 127, 16, k));
        assert_eq!(admits((0, 255), 128, 16, k), !vnni, "{k:?}");
        assert_eq!(admits((0, 255), -129, 16, k), !vnni, "{k:?}");
        assert_eq!(admits((0, 256), 1, 16, k), !vnni, "{k:?}");
        // 255 · 128 · 65794 ≥ 2^31 > 255 · 128 · 65793.
        assert!(admits((0, 255), -128, 65793, k));
        assert!(!admits((0, 255), -128, 65794, k));
        // 16-bit kernels: i16 weights, inputs up to 32767; 2 · 32767 · 32768 < 2^31 ≤ 3 · ….
        assert_eq!(admits((0, 32767), -32768, 2, k), !vnni, "{k:?}");
        assert!(!admits((0, 32767), -32768, 3, k));
        assert!(!admits((0, 32767), 32768, 1, k));
        assert!(!admits((0, 32768), 1, 1, k));
        assert!(!admits((-32768, 32767), 1, 1, k));
        // The padding's 255 above codes 0..=3 bounds the sums: 255 · 127 · K.
        let pad_k = |channels| PackedWeights::new(&spec((0, 3), 255, 127, channels), k).is_some();
        assert!(pad_k(66311) && !pad_k(66312), "{k:?}");
    }
}

/// Runs `kernel` on one Gemm row `x` against `m` outputs of weights `w(n)` for every `k`.
fn one_row(kernel: IntKernel, x: &[i32], range: (i32, i32), w: &[i32]) -> Option<Vec<i64>> {
    let (k, m) = (x.len(), w.len());
    let spec = WeightSpec {
        groups: 1,
        m,
        taps: 1,
        channels: k,
        w: |n: usize, _t: usize, _c: usize| w[n],
        range,
        zero_point: range.0,
    };
    let pw = PackedWeights::new(&spec, kernel)?;
    let img = pw.rows_image(x, 1, k).expect("in range");
    let mut got = vec![0i64; m];
    pw.run(
        0,
        &img,
        1,
        &mut got,
        OutLayout { base: 0, n_stride: 1, p_stride: m },
        &super::EachOutput(|a: i64, _: usize| a),
    );
    Some(got)
}

/// The largest admitted accumulators are exact on every kernel (no partial sum wraps):
/// `K·255·(−128)` just above −2^31 (8-bit codes, every kernel), and for the 16-bit kernels
/// `2·32767·(−32768)` (the largest pair sum of one `vpmaddwd`) and `256·32767·(−256)`.
#[test]
fn largest_admitted_sum_is_exact() {
    for kernel in IntKernel::all_available() {
        let k = 65793;
        let got = one_row(kernel, &vec![255; k], (0, 255), &[-128, 127, -128]);
        let lo = -(k as i64) * 255 * 128;
        assert_eq!(got, Some(vec![lo, k as i64 * 255 * 127, lo]), "{kernel:?}");
        if kernel == IntKernel::Avx512Vnni {
            continue;
        }
        let got = one_row(kernel, &[32767; 2], (0, 32767), &[-32768, 32767]);
        assert_eq!(got, Some(vec![-2 * 32767 * 32768, 2 * 32767 * 32767]), "{kernel:?}");
        let got = one_row(kernel, &[32767; 256], (0, 32767), &[-256, 256, 255]);
        let want = [-256, 256, 255].map(|w: i64| 256 * 32767 * w).to_vec();
        assert_eq!(got, Some(want), "{kernel:?}");
    }
}
