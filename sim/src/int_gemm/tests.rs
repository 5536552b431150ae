//! Every integer kernel this CPU runs against a naive i64 convolution and matrix product, on
//! random shapes, code widths, zero points and weights.

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
        (1u8..=8, any::<bool>(), -3i32..260, 1u8..=8),
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
                // be a code of the range, as long as `z − lo` fits a byte).
                let z = if zsel < 256 { lo + zsel % (hi - lo + 1) } else { lo + zsel - 4 };
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
            pw.run(g, &img, pixels, &mut out, layout, &|a, _| a);
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
        for k in IntKernel::all_available() {
            let got = kernel_conv(&c, k);
            // Admitted exactly when the padding's offset fits a byte (every width here does).
            prop_assert_eq!(got.is_some(), (0..=255).contains(&pad), "{:?}", k);
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
        seed in any::<u64>(),
    ) {
        let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
        let z = lo + (seed % 256) as i32;
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as i32
        };
        let x: Vec<i32> = (0..rows * k).map(|_| lo + next().rem_euclid(256)).collect();
        let w: Vec<i32> = (0..k * nn).map(|_| next().rem_euclid(256) - 128).collect();
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
            let pw = PackedWeights::new(&spec, kernel).expect("8-bit codes are admitted");
            let img = pw.rows_image(&x, rows, k).expect("codes in range");
            let mut got = vec![0i64; rows * nn];
            let layout = OutLayout { base: 0, n_stride: 1, p_stride: nn };
            pw.run(0, &img, rows, &mut got, layout, &|a, _| a);
            prop_assert_eq!(&got, &want, "{:?}", kernel);
        }
    }
}

/// Widths the i32 kernels cannot take exactly are refused: 9-bit weights, 9-bit inputs, and a
/// `K` where `K·max v·max |w|` reaches 2^31.
#[test]
fn wide_codes_are_refused() {
    let spec = |range: (i32, i32), wv: i32, channels: usize| WeightSpec {
        groups: 1,
        m: 1,
        taps: 1,
        channels,
        w: move |_n: usize, _t: usize, _c: usize| wv,
        range,
        zero_point: range.0,
    };
    for k in IntKernel::all_available() {
        assert!(PackedWeights::new(&spec((0, 255), 127, 16), k).is_some());
        assert!(PackedWeights::new(&spec((0, 255), 128, 16), k).is_none());
        assert!(PackedWeights::new(&spec((0, 255), -129, 16), k).is_none());
        assert!(PackedWeights::new(&spec((0, 256), 1, 16), k).is_none());
        // 255 · 128 · 65794 ≥ 2^31 > 255 · 128 · 65793.
        assert!(PackedWeights::new(&spec((0, 255), -128, 65793), k).is_some());
        assert!(PackedWeights::new(&spec((0, 255), -128, 65794), k).is_none());
    }
}

/// The largest admitted accumulator, `K·255·(−128)` just above −2^31, is exact on every kernel
/// (no partial sum wraps).
#[test]
fn largest_admitted_sum_is_exact() {
    let k = 65793;
    let x = vec![255i32; k];
    for kernel in IntKernel::all_available() {
        let spec = WeightSpec {
            groups: 1,
            m: 3,
            taps: 1,
            channels: k,
            w: |n: usize, _t: usize, _c: usize| if n == 1 { 127 } else { -128 },
            range: (0, 255),
            zero_point: 0,
        };
        let pw = PackedWeights::new(&spec, kernel).expect("admitted");
        let img = pw.rows_image(&x, 1, k).expect("in range");
        let mut got = vec![0i64; 3];
        pw.run(0, &img, 1, &mut got, OutLayout { base: 0, n_stride: 1, p_stride: 3 }, &|a, _| a);
        let lo = -(k as i64) * 255 * 128;
        assert_eq!(got, vec![lo, k as i64 * 255 * 127, lo], "{kernel:?}");
    }
}
