//! Property tests of the integer LayerNorm (`Step::IntLayerNorm`, `docs/hardware-model.md` §4,
//! "LayerNorm on codes"): on random codes, scales, zero points, group lengths, scales and biases
//! of the layer and epsilons, each output code is within the stated bound of the float
//! LayerNorm of the input's real values, computed here in f64 — the final rounding's half code
//! plus the fixed-point terms, which stay below 0.02 of a code for 8-bit outputs; so every code
//! is a nearest code of the float result or its neighbour.

use cimc_backends::program::lower::int_layer_norm_params;
use cimc_backends::program::{
    BufferDecl, CodeType, Elem, Program, Step, LN_FRAC_BITS, LN_GAMMA_BITS,
};
use cimc_interp::Tensor;
use cimc_sim::program::ProgramRunner;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

mod code_params;
use code_params::{quant, Q};

/// A xorshift stream from `seed`.
fn stream(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// A program of one `IntLayerNorm` over the last axis of `[groups, n]`, and its γ and β.
fn program(
    (qx, qy): (&Q, &Q),
    (groups, n): (usize, usize),
    epsilon: f32,
    (gamma, beta): (&[f32], &[f32]),
) -> Program {
    let (lo, hi) = qy.range();
    let (epsilon_term, g, b, requant) = int_layer_norm_params(
        n,
        (qx.scale, qx.zp),
        (qy.scale, qy.zp, lo, hi),
        epsilon,
        (gamma, beta),
    )
    .unwrap();
    let buf = |name: &str, q: &Q| BufferDecl {
        name: name.into(),
        shape: vec![groups, n],
        elem: Elem::Code(CodeType { bits: q.bits, signed: q.signed }),
        quant: None,
    };
    Program {
        name: "ln".into(),
        buffers: vec![buf("x", qx), buf("y", qy)],
        inputs: vec![0],
        outputs: vec![1],
        steps: vec![Step::IntLayerNorm {
            input: 0,
            output: 1,
            axis: 1,
            input_zero_point: qx.zp,
            epsilon_term,
            gamma: g,
            beta: b,
            requant,
        }],
        origins: vec!["ln".into()],
        target: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn layer_norm_on_codes_holds_its_bound(
        qx in quant(-8..3), out_bits in 4u8..=8, n in 1usize..80, groups in 1usize..4,
        eps in prop_oneof![Just(1e-5f32), Just(1e-12f32), Just(0.1f32)],
        g_range in 0.01f32..4.0, seed in any::<u64>(),
    ) {
        let mut next = stream(seed);
        let mut real = |lo: f32, hi: f32| lo + (hi - lo) * (next() % 10_000) as f32 / 10_000.0;
        let gamma: Vec<f32> = (0..n).map(|_| real(-g_range, g_range)).collect();
        let beta: Vec<f32> = (0..n).map(|_| real(-1.0, 1.0)).collect();
        // The output covers what γ·x̂ + β can reach, as calibration would give it.
        let reach = g_range as f64 * (n as f64).sqrt().max(1.0) + 1.0;
        let qy = Q {
            bits: out_bits,
            signed: true,
            scale: (2.0 * reach / ((1u32 << out_bits) - 1) as f64) as f32,
            zp: 0,
        };
        let (lo, hi) = qx.range();
        let mut pick = stream(seed ^ 0x9e37_79b9);
        // Rows of a few codes near each other as well as spread ones (a small variance is the
        // hard case of the root).
        let centre = lo + (pick() % (hi - lo + 1) as u64) as i32;
        let spread = if seed % 3 == 0 { 2 } else { hi - lo + 1 };
        let x: Vec<i32> = (0..groups * n)
            .map(|_| (centre + (pick() % spread as u64) as i32 - spread / 2).clamp(lo, hi))
            .collect();
        let p = program((&qx, &qy), (groups, n), eps, (&gamma, &beta));
        let input = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[groups, n]), x.clone()).unwrap());
        let out = ProgramRunner::new(&p).unwrap().run(vec![input]).unwrap();
        let Tensor::I32(y) = &out[0] else { panic!("codes expected") };
        let y: Vec<i32> = y.iter().copied().collect();
        let g_max = gamma.iter().fold(0f64, |m, &g| m.max(g.abs() as f64));
        let s_g = g_max / ((1u64 << (LN_GAMMA_BITS - 1)) - 1) as f64;
        let frac = 2f64.powi(-(LN_FRAC_BITS as i32));
        let (ylo, yhi) = qy.range();
        for row in 0..groups {
            let xs: Vec<f64> = (0..n).map(|j| qx.real(x[row * n + j])).collect();
            let mean = xs.iter().sum::<f64>() / n as f64;
            let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            let sd = (var + eps as f64).sqrt();
            for j in 0..n {
                let xh = (xs[j] - mean) / sd;
                let want = gamma[j] as f64 * xh + beta[j] as f64;
                let exact = (want / qy.scale as f64 + qy.zp as f64).clamp(ylo as f64, yhi as f64);
                // docs/hardware-model.md §4: the scale's codes (half a step s_γ times |x̂|), the
                // bias's (half of s_γ·2^-16), t's rounding and the root's (2^-16 of |γ| and of
                // |γ·x̂|), M's 31 bits; in output codes.
                let tol = (xh.abs() * s_g / 2.0
                    + s_g * frac / 2.0
                    + gamma[j].abs() as f64 * frac * (0.5 + 2.0 * xh.abs()))
                    / qy.scale as f64
                    + (want / qy.scale as f64).abs() * 2f64.powi(-30)
                    + 1e-9;
                let got = y[row * n + j];
                prop_assert!((got as f64 - exact).abs() <= 0.5 + tol,
                    "row {row} j {j}: got {got}, exact {exact} (x̂ {xh}, tolerance {tol})");
                // For 8-bit outputs the fixed-point terms stay below 0.02 of a code.
                prop_assert!(out_bits < 8 || tol < 0.02, "tolerance {tol}");
            }
        }
    }
}

/// A constant row (zero variance) with epsilon 0 normalizes to 0: every output is β's code.
#[test]
fn constant_rows_give_the_bias() {
    let qx = Q { bits: 8, signed: true, scale: 0.1, zp: 3 };
    let qy = Q { bits: 8, signed: true, scale: 0.05, zp: 0 };
    let (gamma, beta) = (vec![1.5f32; 4], vec![0.5f32, -0.25, 0.0, 1.0]);
    let p = program((&qx, &qy), (1, 4), 0.0, (&gamma, &beta));
    let input = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![7; 4]).unwrap());
    let out = ProgramRunner::new(&p).unwrap().run(vec![input]).unwrap();
    let Tensor::I32(y) = &out[0] else { panic!("codes expected") };
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![10, -5, 0, 20]);
}
