//! With lossless ADCs the crossbar arithmetic (bit slices, input slices, ADC, shift-and-add)
//! gives exactly the integer dot product: checked on every Conv/Gemm layer shape of the shared
//! models (vendored small models always; ResNet-18 and MobileNetV2 from `../shared`), for both
//! weight encodings.
//!
//! Each layer runs alone on random input codes twice: through the crossbar kernel (forced by
//! `run_with_adc_stats`, which never takes the GEMM shortcut) and as one exact integer GEMM
//! (`crossbar: None`). The requantization is replaced by the identity with an open clamp, so the
//! outputs ARE the accumulators, compared value by value.

use cimc::onnx::{self, ImportOptions};
use cimc_backends::arith::FixedMultiplier;
use cimc_backends::program::{Program, Requant, Step};
use cimc_backends::target::{AdcRange, Target, WeightEncoding};
use cimc_interp::Tensor;
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use cimc_sim::noise::SplitMix64 as Rng;
use cimc_sim::program::{AdcStats, ProgramRunner};
use cimc_tests::{data, npy, shared};
use std::path::Path;

/// A lossless chip: 64-row tiles of 2-bit cells, 2-bit DAC slices, a 10-bit ADC
/// (P ≤ 64·3·3 = 576 ≤ 1023), so each conversion is exact but the slicing is still exercised.
fn lossless_target(encoding: WeightEncoding) -> Target {
    let mut t = Target::preset("isaac").unwrap();
    t.chip.crossbar.rows = 64;
    t.chip.crossbar.dac_bits = 2;
    t.chip.crossbar.adc_bits = 10;
    t.chip.adc_range = AdcRange::Lossless;
    t.chip.crossbar.encoding = encoding;
    t.validate("the lossless test target").unwrap();
    t
}

/// Every crossbar step of `model` compiled for `t`, each with its input and output buffers.
fn crossbar_steps(model: &Path, calib: &Tensor, t: &Target) -> Vec<(Program, String)> {
    let g = onnx::import_file(model, &ImportOptions { batch: Some(1), ..Default::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    let mut cx = PassContext { calib: Some(vec![calib.clone()]), ..Default::default() };
    cx.chip = Some(Chip::from_target(t, None));
    let (p, _) = cimc::compile::compile(g, &cx, &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    for (i, s) in p.steps.iter().enumerate() {
        if !matches!(s, Step::Conv { crossbar: Some(_), .. } | Step::Gemm { crossbar: Some(_), .. })
        {
            continue;
        }
        let bufs = cimc_backends::program::step_buffers(s);
        let (x, y) = (bufs[0], bufs[1]);
        let mut step = s.clone();
        // The identity requantization with an open clamp: the output is the accumulator.
        let one = FixedMultiplier::from_real(1.0).unwrap();
        match &mut step {
            Step::Conv { requant, input, output, .. }
            | Step::Gemm { requant, input, output, .. } => {
                *requant = Requant { mult: vec![one], zero_point: 0, lo: i32::MIN, hi: i32::MAX };
                (*input, *output) = (0, 1);
            }
            _ => unreachable!(),
        }
        let single = Program {
            name: format!("step {i}"),
            buffers: vec![p.buffers[x].clone(), p.buffers[y].clone()],
            inputs: vec![0],
            outputs: vec![1],
            steps: vec![step],
            origins: vec![p.origins[i].clone()],
            target: None,
        };
        out.push((single, p.origins[i].clone()));
    }
    out
}

fn check_model(model: &Path, calib: &Tensor) -> usize {
    let mut layers = 0;
    for encoding in [WeightEncoding::Differential, WeightEncoding::Offset] {
        let t = lossless_target(encoding);
        for (p, origin) in crossbar_steps(model, calib, &t) {
            let decl = &p.buffers[0];
            let cimc_backends::program::Elem::Code(c) = decl.elem else { panic!("codes expected") };
            let (lo, hi) = c.range();
            let mut rng = Rng(0x5DEECE66D ^ layers as u64);
            let x: Vec<i32> = (0..decl.numel()).map(|_| rng.int(lo, hi)).collect();
            let input = Tensor::I32(
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&decl.shape), x).unwrap(),
            );
            let runner = ProgramRunner::new(&p).unwrap();
            let mut stats = AdcStats::default();
            let sliced = runner.run_with_adc_stats(vec![input.clone()], &mut stats).unwrap();
            let mut exact = p.clone();
            if let Step::Conv { crossbar, .. } | Step::Gemm { crossbar, .. } = &mut exact.steps[0] {
                *crossbar = None;
            }
            let want = ProgramRunner::new(&exact).unwrap().run(vec![input]).unwrap();
            let (a, b) = (sliced[0].to_data().to_i64_vec(), want[0].to_data().to_i64_vec());
            let st = stats.steps[0].as_ref().expect("the crossbar step was counted");
            assert!(st.conversions > 0 && st.clipped == 0, "{origin}: {st:?}");
            let diff = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert_eq!(
                diff,
                0,
                "{} {origin} ({encoding:?}): {diff} of {} accumulators differ from the exact dot product",
                model.display(),
                a.len()
            );
            layers += 1;
        }
    }
    layers
}

#[test]
fn lossless_crossbar_equals_exact_dot_product_small_models() {
    let sets = data().join("sets");
    let mnist = npy(&sets.join("mnist_calib200_x.npy"));
    let mnist = cimc::tensor_util::slice_batch(&mnist, 0, 8, 8);
    let digits = npy(&sets.join("digits_calib_x.npy"));
    let digits = cimc::tensor_util::slice_batch(&digits, 0, 8, 8);
    let models = data().join("models");
    let mut n = 0;
    for (m, c) in [("mnist_cnn", &mnist), ("mnist_resnet", &mnist), ("digits_cnn", &digits)] {
        n += check_model(&models.join(format!("{m}.onnx")), c);
    }
    eprintln!("{n} layer checks, all exact");
    assert!(n >= 2 * (4 + 3), "too few crossbar layers found: {n}");
}

#[test]
fn lossless_crossbar_equals_exact_dot_product_imagenet_models() {
    let Some(sh) = shared("lossless_crossbar_equals_exact_dot_product_imagenet_models") else {
        return;
    };
    let calib = npy(&sh.join("data/imagenet_random_x.npy"));
    let mut n = 0;
    for m in ["resnet18_bn", "mobilenet_v2_bn"] {
        n += check_model(&sh.join(format!("models/{m}.onnx")), &calib);
    }
    eprintln!("{n} layer checks, all exact");
    // ResNet-18: 21 matrix layers; MobileNetV2: 53.
    assert!(n >= 2 * (21 + 53), "too few crossbar layers found: {n}");
}
