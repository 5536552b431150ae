//! Approximate multipliers: each built-in family against its paper's definition written
//! independently here, the table file format, and the program's digital Conv/Gemm steps with a
//! product table against a naive loop that applies the documented operand rule
//! (`program/approx.rs`) product by product — with each table kernel this CPU runs (the
//! scalar one and, where the CPU has AVX-512 VBMI, the vector one), on tables whose rows need
//! 1 to 4 byte planes and on ones that need i64 accumulators.

use cimc_backends::arith::{code_range, FixedMultiplier};
use cimc_backends::program::{
    BufQuant, BufferDecl, CodeType, Elem, IntTensor, Program, Requant, Step, Window,
};
use cimc_interp::Tensor;
use cimc_sim::noise::SplitMix64 as Rng;
use cimc_sim::program::multiplier::{self, LutKernel, Multiplier, ProductTable};
use cimc_sim::program::ProgramRunner;
use proptest::prelude::*;

#[test]
fn truncated_drops_the_low_columns_of_the_partial_products() {
    for a in 0..256u32 {
        for b in 0..256u32 {
            for k in [0u32, 4, 8, 12] {
                let mut want = 0;
                for i in 0..8 {
                    for j in 0..8 {
                        if i + j >= k {
                            want += (((a >> i) & 1) * ((b >> j) & 1)) << (i + j);
                        }
                    }
                }
                assert_eq!(multiplier::truncated(a, b, k), want, "{a}x{b}, k={k}");
            }
            assert_eq!(multiplier::truncated(a, b, 0), a * b);
        }
    }
}

#[test]
fn drum_multiplies_unbiased_k_bit_segments() {
    // DRUM(k): the k bits from the leading one, the last of them forced to 1.
    let seg = |x: u32, k: u32| -> u32 {
        let t = (0..32).rev().find(|&t| (x >> t) & 1 == 1).unwrap_or(0);
        if t < k {
            return x;
        }
        let low = t + 1 - k;
        let mut v = x & !((1 << low) - 1);
        v |= 1 << low;
        v
    };
    for a in 0..256u32 {
        for b in 0..256u32 {
            for k in 1..=8 {
                assert_eq!(multiplier::drum(a, b, k), seg(a, k) * seg(b, k), "{a}x{b}, k={k}");
            }
            assert_eq!(multiplier::drum(a, b, 8), a * b, "8-bit segments are exact");
        }
    }
    // 6-bit DRUM of 1011_0110 keeps 101101 (its LSB already 1), drops 10; of 1010_0000 keeps
    // 101000 and sets that segment's LSB: 101001.
    assert_eq!(multiplier::drum_operand(0b1011_0110, 6), 0b1011_0100);
    assert_eq!(multiplier::drum_operand(0b1010_0000, 6), 0b1010_0100);
}

#[test]
fn mitchell_is_the_piecewise_linear_log_and_antilog() {
    for a in 1..256u32 {
        for b in 1..256u32 {
            let (la, lb) = ((a as f64).log2().floor(), (b as f64).log2().floor());
            let (x1, x2) = (a as f64 / la.exp2() - 1.0, b as f64 / lb.exp2() - 1.0);
            let want = if x1 + x2 < 1.0 {
                (la + lb).exp2() * (1.0 + x1 + x2)
            } else {
                (la + lb + 1.0).exp2() * (x1 + x2)
            };
            let got = multiplier::mitchell(a, b);
            assert_eq!(got as f64, want, "{a}x{b}");
            // Mitchell never overestimates, and errs by at most 11.1 %.
            assert!(got <= a * b && (a * b - got) as f64 <= 0.1112 * (a * b) as f64);
        }
        assert_eq!(multiplier::mitchell(a, 0), 0);
    }
}

#[test]
fn table_files_round_trip_and_bad_ones_say_why() {
    let t = Multiplier::Mitchell.table();
    let bytes = t.to_bytes();
    assert!(bytes.starts_with(b"cimc-mul8 unsigned\n"));
    assert_eq!(ProductTable::from_bytes(&bytes).unwrap(), t);
    let s = ProductTable::from_fn(true, |a, b| a * b - 1);
    assert_eq!(s.get(-128, 127), Some(-128 * 127 - 1));
    assert_eq!(ProductTable::from_bytes(&s.to_bytes()).unwrap(), s);
    assert!(ProductTable::from_bytes(b"cimc-mul8 signed\n1234").unwrap_err().contains("262144"));
    assert!(ProductTable::from_bytes(b"mul8 signed\n").unwrap_err().contains("header"));
    assert!(Multiplier::parse("drum:9").unwrap_err().contains("drum:K"));
    assert!(Multiplier::parse("table:/nonexistent.mul8")
        .unwrap_err()
        .contains("/nonexistent.mul8"));
    for n in ["exact", "trunc:8", "drum:4", "mitchell"] {
        assert_eq!(Multiplier::parse(n).unwrap().name(), n);
    }
}

/// splitmix64.
fn code_buf(name: &str, shape: Vec<usize>, bits: u8, signed: bool, zp: i32) -> BufferDecl {
    BufferDecl {
        name: name.into(),
        shape,
        elem: Elem::Code(CodeType { bits, signed }),
        quant: Some(BufQuant { scale: vec![0.1], zero_point: vec![zp], axis: None }),
    }
}

/// The documented product of the hardware operands: activation `v = q − q_min`, weight `w`.
fn hw_product(t: &ProductTable, v: i32, w: i32) -> i64 {
    if t.signed {
        t.get(v - 128, w).unwrap() as i64 + 128 * w as i64
    } else {
        // Sign-magnitude: the unsigned multiplier sees |w| (so w = 0 gives T[v][0]).
        let p = t.get(v, w.abs()).unwrap() as i64;
        if w < 0 {
            -p
        } else {
            p
        }
    }
}

fn table_case() -> impl Strategy<Value = (usize, u64)> {
    (0usize..8, any::<u64>())
}

/// The kernels this CPU runs: every one is checked against the naive loop.
fn kernels() -> Vec<LutKernel> {
    [LutKernel::Scalar, LutKernel::Avx512Vbmi].into_iter().filter(|k| k.available()).collect()
}

/// A random table of entries in `[lo, hi]`.
fn random_table(seed: u64, signed: bool, lo: i32, hi: i32) -> ProductTable {
    let mut r = Rng(seed ^ 0xabc);
    let v: Vec<i32> = (0..65536).map(|_| r.int(lo, hi)).collect();
    ProductTable::from_fn(signed, |a, b| v[((a as u8 as usize) << 8) | b as u8 as usize])
}

fn pick_table(which: usize, seed: u64) -> ProductTable {
    match which {
        0 => Multiplier::Mitchell.table(),
        1 => Multiplier::Drum(3).table(),
        2 => Multiplier::Truncated(7).table(),
        3 => ProductTable::exact(true),
        // Rows spanning up to 80,000: three byte planes.
        4 | 5 => random_table(seed, which == 4, -40000, 40000),
        // Rows spanning up to 2^25: four byte planes, i32 accumulators up to K = 63.
        6 => random_table(seed, seed & 1 == 1, -(1 << 24), 1 << 24),
        // The whole i32 range: i64 accumulators.
        _ => random_table(seed, seed & 1 == 1, i32::MIN, i32::MAX),
    }
}

/// The output of the one-step `program` on `x` with `table`, run by `kernel`.
fn run_table(program: &Program, table: &ProductTable, kernel: LutKernel, x: &Tensor) -> Vec<i64> {
    let mul = Multiplier::Table("t".into(), table.clone());
    let out = ProgramRunner::with_multiplier_kernel(program, &mul, kernel)
        .unwrap()
        .run(vec![x.clone()])
        .unwrap();
    out[0].to_data().to_i64_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conv_with_a_table_matches_the_naive_loop(
        (which, tseed) in table_case(), seed: u64, cg in 1usize..4, m in 1usize..5,
        h in 3usize..12, w in 3usize..40, k in 1usize..4, stride in 1usize..3, pad in 0usize..2,
        in_bits in 2u8..9, in_signed: bool, groups in 1usize..3, n in 1usize..3,
    ) {
        let table = pick_table(which, tseed);
        let mut rng = Rng(seed);
        let (ilo, ihi) = code_range(in_bits, in_signed);
        let z = rng.int(ilo, ihi);
        let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1);
        let (c, mt) = (groups * cg, groups * m);
        let x: Vec<i32> = (0..n * c * h * w).map(|_| rng.int(ilo, ihi)).collect();
        let wts: Vec<i32> = (0..mt * cg * k * k).map(|_| rng.int(-127, 127)).collect();
        let bias: Vec<i64> = (0..mt).map(|_| rng.int(-5000, 5000) as i64).collect();
        let mult = FixedMultiplier::from_real(0.37e-4).unwrap();
        let requant = Requant { mult: vec![mult], zero_point: 0, lo: i32::MIN, hi: i32::MAX };
        let program = Program {
            name: "conv".into(),
            buffers: vec![code_buf("x", vec![n, c, h, w], in_bits, in_signed, z),
                          code_buf("y", vec![n, mt, oh, ow], 32, true, 0)],
            inputs: vec![0],
            outputs: vec![1],
            steps: vec![Step::Conv {
                input: 0, output: 1, input_zero_point: z,
                weights: IntTensor { shape: vec![mt, cg, k, k], bits: 8, data: wts.clone() },
                bias: bias.clone(),
                window: Window { kernel: vec![k, k], strides: vec![stride; 2], dilations: vec![1, 1], pads: vec![pad; 4] },
                group: groups, requant: requant.clone(), crossbar: None,
            }],
            origins: vec!["conv".into()],
            target: None,
        };
        let xin = Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n, c, h, w]), x.clone()).unwrap());
        let run = |mul: &Multiplier| -> Vec<i64> {
            let out = ProgramRunner::with_multiplier(&program, mul).unwrap().run(vec![xin.clone()]).unwrap();
            out[0].to_data().to_i64_vec()
        };
        let mut want = Vec::new();
        for (b, o) in (0..n).flat_map(|b| (0..mt).map(move |o| (b, o))) {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = bias[o];
                    let c0 = b * c + o / m * cg;
                    for ci in 0..cg {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = ((y * stride + ky) as i64 - pad as i64, (xx * stride + kx) as i64 - pad as i64);
                                let q = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    x[((c0 + ci) * h + iy as usize) * w + ix as usize]
                                } else { z };
                                let wv = wts[((o * cg + ci) * k + ky) * k + kx];
                                acc += hw_product(&table, q - ilo, wv) + (ilo - z) as i64 * wv as i64;
                            }
                        }
                    }
                    want.push(requant.apply(acc, o) as i64);
                }
            }
        }
        for kernel in kernels() {
            prop_assert_eq!(&run_table(&program, &table, kernel, &xin), &want, "{:?}", kernel);
        }
        let got = want;
        // An exact table, signed or unsigned, is the exact program.
        if which == 3 {
            let exact = ProgramRunner::new(&program).unwrap().run(vec![xin.clone()]).unwrap();
            prop_assert_eq!(&got, &exact[0].to_data().to_i64_vec());
            prop_assert_eq!(run(&Multiplier::Exact), got.clone());
            prop_assert_eq!(run(&Multiplier::Table("u".into(), ProductTable::exact(false))), got);
        }
    }

    #[test]
    fn gemm_with_a_table_matches_the_naive_loop(
        (which, tseed) in table_case(), seed: u64,
        // Also past four 64-row strips and past 256 products (the vector kernel's u16 round).
        rows in prop_oneof![1usize..40, 250usize..330], k in prop_oneof![1usize..50, 250usize..600],
        n in 1usize..6,
        in_bits in 2u8..9, in_signed: bool,
    ) {
        let table = pick_table(which, tseed);
        let mut rng = Rng(seed);
        let (ilo, ihi) = code_range(in_bits, in_signed);
        let z = rng.int(ilo, ihi);
        let x: Vec<i32> = (0..rows * k).map(|_| rng.int(ilo, ihi)).collect();
        let wts: Vec<i32> = (0..k * n).map(|_| rng.int(-127, 127)).collect();
        let requant = Requant { mult: vec![FixedMultiplier::from_real(1e-3).unwrap()], zero_point: 0, lo: i32::MIN, hi: i32::MAX };
        let program = Program {
            name: "gemm".into(),
            buffers: vec![code_buf("x", vec![rows, k], in_bits, in_signed, z), code_buf("y", vec![rows, n], 32, true, 0)],
            inputs: vec![0],
            outputs: vec![1],
            steps: vec![Step::Gemm {
                input: 0, output: 1, input_zero_point: z,
                weights: IntTensor { shape: vec![k, n], bits: 8, data: wts.clone() },
                bias: vec![0; n], requant: requant.clone(), crossbar: None,
            }],
            origins: vec!["gemm".into()],
            target: None,
        };
        let xin = Tensor::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[rows, k]), x.clone()).unwrap());
        let mut want = vec![0i64; rows * n];
        for r in 0..rows {
            for o in 0..n {
                let acc: i64 = (0..k).map(|j| {
                    let wv = wts[j * n + o];
                    hw_product(&table, x[r * k + j] - ilo, wv) + (ilo - z) as i64 * wv as i64
                }).sum();
                want[r * n + o] = requant.apply(acc, o) as i64;
            }
        }
        for kernel in kernels() {
            prop_assert_eq!(&run_table(&program, &table, kernel, &xin), &want, "{:?}", kernel);
        }
    }
}

#[test]
fn wide_codes_are_refused_with_the_step_named() {
    let program = Program {
        name: "gemm".into(),
        buffers: vec![
            code_buf("x", vec![1, 2], 10, false, 0),
            code_buf("y", vec![1, 1], 8, true, 0),
        ],
        inputs: vec![0],
        outputs: vec![1],
        steps: vec![Step::Gemm {
            input: 0,
            output: 1,
            input_zero_point: 0,
            weights: IntTensor { shape: vec![2, 1], bits: 8, data: vec![1, 2] },
            bias: vec![0],
            requant: Requant {
                mult: vec![FixedMultiplier::from_real(0.5).unwrap()],
                zero_point: 0,
                lo: -128,
                hi: 127,
            },
            crossbar: None,
        }],
        origins: vec!["gemm".into()],
        target: None,
    };
    let err = ProgramRunner::with_multiplier(&program, &Multiplier::Mitchell).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("step 0") && msg.contains("at most 8 bits"), "{msg}");
}
