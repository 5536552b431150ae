//! Property tests of the interpreter program's Conv and Gemm steps against an independent,
//! deliberately naive integer implementation written here: for random shapes, groups, strides,
//! dilations, pads, bit widths and zero points,
//! - the program's output codes equal the naive accumulator requantized by the exact rational
//!   rounding of `docs/hardware-model.md` §4 (computed here with big-integer division, not with
//!   cimc's `requantize`);
//! - the naive accumulator equals the float computation on the dequantized codes (to float
//!   rounding);
//! - the output is within 1 LSB of rounding that float result directly.

use cimc_backends::arith::{code_range, FixedMultiplier};
use cimc_backends::program::{
    BufQuant, BufferDecl, CodeType, Elem, IntTensor, Program, Requant, Step, Window,
};
use cimc_interp::Tensor;
use cimc_sim::noise::SplitMix64 as Rng;
use cimc_sim::program::ProgramRunner;
use proptest::prelude::*;

/// §4 by exact rational arithmetic: round half up of acc · m / 2^(31+sh), then zp and clamp.
fn naive_requant(acc: i64, f: FixedMultiplier, zp: i32, lo: i32, hi: i32) -> i32 {
    let num = 2 * acc as i128 * f.m as i128 + (1i128 << (31 + f.sh));
    let q = num.div_euclid(1i128 << (32 + f.sh));
    (q + zp as i128).clamp(lo as i128, hi as i128) as i32
}

#[derive(Debug, Clone)]
struct ConvCase {
    n: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
    pads: [usize; 4],
    in_bits: u8,
    in_signed: bool,
    w_bits: u8,
    out_bits: u8,
    out_signed: bool,
    seed: u64,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        (1usize..3, 1usize..4, 1usize..4, 1usize..4, 3usize..8, 3usize..8),
        (1usize..4, 1usize..4, 1usize..3, 1usize..3, 1usize..3, 1usize..3),
        (0usize..3, 0usize..3, 0usize..3, 0usize..3),
        (2u8..9, any::<bool>(), 2u8..9, 2u8..9, any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |(
                (n, groups, cg, mg, h, w),
                (kh, kw, sh, sw, dh, dw),
                (p0, p1, p2, p3),
                (ib, is, wb, ob, os, seed),
            )| ConvCase {
                n,
                groups,
                cg,
                mg,
                h,
                w,
                k: [kh, kw],
                stride: [sh, sw],
                dil: [dh, dw],
                pads: [p0, p1, p2, p3],
                in_bits: ib,
                in_signed: is,
                w_bits: wb,
                out_bits: ob,
                out_signed: os,
                seed,
            },
        )
}

/// splitmix64: the test's own deterministic random numbers.
fn code_buf(
    name: &str,
    shape: Vec<usize>,
    bits: u8,
    signed: bool,
    scale: f32,
    zp: i32,
) -> BufferDecl {
    BufferDecl {
        name: name.into(),
        shape,
        elem: Elem::Code(CodeType { bits, signed }),
        quant: Some(BufQuant { scale: vec![scale], zero_point: vec![zp], axis: None }),
    }
}

fn out_dim(i: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    (i + p0 + p1 >= span).then(|| (i + p0 + p1 - span) / s + 1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn conv_matches_naive_integer_conv(c in conv_case()) {
        let oh = out_dim(c.h, c.k[0], c.stride[0], c.dil[0], c.pads[0], c.pads[2]);
        let ow = out_dim(c.w, c.k[1], c.stride[1], c.dil[1], c.pads[1], c.pads[3]);
        let (Some(oh), Some(ow)) = (oh, ow) else { return Ok(()) };
        let mut rng = Rng(c.seed);
        let (cin, m) = (c.groups * c.cg, c.groups * c.mg);
        let (ilo, ihi) = code_range(c.in_bits, c.in_signed);
        let z_x = rng.int(ilo, ihi);
        let wmax = (1 << (c.w_bits - 1)) - 1;
        let (olo, ohi) = code_range(c.out_bits, c.out_signed);
        let z_y = rng.int(olo, ohi);
        let s_x = 0.01 + rng.unit() as f32;
        let s_y = 0.05 + rng.unit() as f32 * 4.0;
        let s_w: Vec<f32> = (0..m).map(|_| 0.001 + rng.unit() as f32 * 0.1).collect();
        let x: Vec<i32> = (0..c.n * cin * c.h * c.w).map(|_| rng.int(ilo, ihi)).collect();
        let kk = c.cg * c.k[0] * c.k[1];
        let w: Vec<i32> = (0..m * kk).map(|_| rng.int(-wmax, wmax)).collect();
        let bias: Vec<i64> = (0..m).map(|_| rng.int(-5000, 5000) as i64).collect();
        let mult: Vec<FixedMultiplier> = (0..m).map(|o| FixedMultiplier::from_real((s_x * s_w[o] / s_y) as f64).unwrap()).collect();

        // The naive reference: loops over every output, padding reads z_x (contributes 0).
        let mut acc = vec![0i64; c.n * m * oh * ow];
        let mut real = vec![0f64; c.n * m * oh * ow];
        for b in 0..c.n {
            for o in 0..m {
                let g = o / c.mg;
                for y in 0..oh {
                    for xx in 0..ow {
                        let mut a = bias[o];
                        let mut r = bias[o] as f64 * s_x as f64 * s_w[o] as f64;
                        for ci in 0..c.cg {
                            for ky in 0..c.k[0] {
                                for kx in 0..c.k[1] {
                                    let iy = (y * c.stride[0] + ky * c.dil[0]) as i64 - c.pads[0] as i64;
                                    let ix = (xx * c.stride[1] + kx * c.dil[1]) as i64 - c.pads[1] as i64;
                                    let q = if iy >= 0 && ix >= 0 && (iy as usize) < c.h && (ix as usize) < c.w {
                                        x[((b * cin + g * c.cg + ci) * c.h + iy as usize) * c.w + ix as usize]
                                    } else {
                                        z_x
                                    };
                                    let wv = w[((o * c.cg + ci) * c.k[0] + ky) * c.k[1] + kx];
                                    a += (q - z_x) as i64 * wv as i64;
                                    r += (s_x as f64 * (q - z_x) as f64) * (s_w[o] as f64 * wv as f64);
                                }
                            }
                        }
                        let i = ((b * m + o) * oh + y) * ow + xx;
                        acc[i] = a;
                        real[i] = r;
                    }
                }
            }
        }
        let program = Program {
            name: "conv".into(),
            buffers: vec![
                code_buf("x", vec![c.n, cin, c.h, c.w], c.in_bits, c.in_signed, s_x, z_x),
                code_buf("y", vec![c.n, m, oh, ow], c.out_bits, c.out_signed, s_y, z_y),
            ],
            inputs: vec![0],
            outputs: vec![1],
            steps: vec![Step::Conv {
                input: 0,
                output: 1,
                input_zero_point: z_x,
                weights: IntTensor { shape: vec![m, c.cg, c.k[0], c.k[1]], bits: c.w_bits, data: w.clone() },
                bias: bias.clone(),
                window: Window { kernel: c.k.to_vec(), strides: c.stride.to_vec(), dilations: c.dil.to_vec(), pads: c.pads.to_vec() },
                group: c.groups,
                requant: Requant { mult: mult.clone(), zero_point: z_y, lo: olo, hi: ohi },
                crossbar: None,
            }],
            origins: vec!["conv".into()],
            target: None,
        };
        // Through the binary format, as a user's program would be.
        let program = Program::from_bytes(&program.to_bytes()).unwrap();
        let xin = Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[c.n, cin, c.h, c.w]), x).unwrap());
        let out = ProgramRunner::new(&program).unwrap().run(vec![xin]).unwrap();
        let got: Vec<i32> = out[0].to_data().to_i64_vec().into_iter().map(|v| v as i32).collect();
        for i in 0..acc.len() {
            let o = (i / (oh * ow)) % m;
            prop_assert_eq!(got[i], naive_requant(acc[i], mult[o], z_y, olo, ohi), "output {}", i);
            let scale = s_x as f64 * s_w[o] as f64;
            prop_assert!((acc[i] as f64 * scale - real[i]).abs() <= 1e-9 * (1.0 + real[i].abs()), "accumulator {} vs float {}", acc[i] as f64 * scale, real[i]);
            let direct = ((real[i] / s_y as f64).round() + z_y as f64).clamp(olo as f64, ohi as f64);
            prop_assert!((got[i] as f64 - direct).abs() <= 1.0, "output {} vs float rounding {}", got[i], direct);
        }
    }

    #[test]
    fn gemm_matches_naive_integer_gemm(rows in 1usize..5, k in 1usize..40, n in 1usize..9, in_bits in 2u8..9, in_signed: bool,
                                       w_bits in 2u8..9, out_bits in 2u8..9, out_signed: bool, seed: u64) {
        let mut rng = Rng(seed);
        let (ilo, ihi) = code_range(in_bits, in_signed);
        let z_x = rng.int(ilo, ihi);
        let (olo, ohi) = code_range(out_bits, out_signed);
        let z_y = rng.int(olo, ohi);
        let wmax = (1 << (w_bits - 1)) - 1;
        let s_x = 0.01 + rng.unit() as f32;
        let s_y = 0.05 + rng.unit() as f32 * 4.0;
        let s_w: Vec<f32> = (0..n).map(|_| 0.001 + rng.unit() as f32 * 0.1).collect();
        let x: Vec<i32> = (0..rows * k).map(|_| rng.int(ilo, ihi)).collect();
        let w: Vec<i32> = (0..k * n).map(|_| rng.int(-wmax, wmax)).collect();
        let bias: Vec<i64> = (0..n).map(|_| rng.int(-5000, 5000) as i64).collect();
        let mult: Vec<FixedMultiplier> = (0..n).map(|o| FixedMultiplier::from_real((s_x * s_w[o] / s_y) as f64).unwrap()).collect();
        let program = Program {
            name: "gemm".into(),
            buffers: vec![
                code_buf("x", vec![rows, k], in_bits, in_signed, s_x, z_x),
                code_buf("y", vec![rows, n], out_bits, out_signed, s_y, z_y),
            ],
            inputs: vec![0],
            outputs: vec![1],
            steps: vec![Step::Gemm {
                input: 0,
                output: 1,
                input_zero_point: z_x,
                weights: IntTensor { shape: vec![k, n], bits: w_bits, data: w.clone() },
                bias: bias.clone(),
                requant: Requant { mult: mult.clone(), zero_point: z_y, lo: olo, hi: ohi },
                crossbar: None,
            }],
            origins: vec!["gemm".into()],
            target: None,
        };
        let xin = Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[rows, k]), x.clone()).unwrap());
        let out = ProgramRunner::new(&program).unwrap().run(vec![xin]).unwrap();
        let got: Vec<i64> = out[0].to_data().to_i64_vec();
        for r in 0..rows {
            for o in 0..n {
                let mut acc = bias[o];
                let mut real = bias[o] as f64 * s_x as f64 * s_w[o] as f64;
                for j in 0..k {
                    acc += (x[r * k + j] - z_x) as i64 * w[j * n + o] as i64;
                    real += (s_x as f64 * (x[r * k + j] - z_x) as f64) * (s_w[o] as f64 * w[j * n + o] as f64);
                }
                let g = got[r * n + o] as i32;
                prop_assert_eq!(g, naive_requant(acc, mult[o], z_y, olo, ohi));
                let direct = ((real / s_y as f64).round() + z_y as f64).clamp(olo as f64, ohi as f64);
                prop_assert!((g as f64 - direct).abs() <= 1.0);
            }
        }
    }
}
