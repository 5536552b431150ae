//! With lossless ADCs the crossbar arithmetic (bit slices, input slices, ADC, shift-and-add)
//! gives exactly the integer dot product: checked on every Conv/Gemm layer shape of the shared
//! models (vendored small models always; ResNet-18 and MobileNetV2 from `../shared`), for every
//! weight encoding, and for ISAAC's own geometry with its flipped encoding, which makes its 8-bit
//! ADC lossless.
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

/// The isaac preset with ISAAC's flipped encoding: 128 rows x 1 x 3 = 384 would need 9 bits,
/// flipped columns stay below 256, so the 8-bit ADC is lossless (and `lossless` accepted).
fn isaac_flipped(range: AdcRange) -> Target {
    let mut t = Target::preset("isaac").unwrap();
    t.chip.crossbar.encoding = WeightEncoding::Flipped;
    t.chip.adc_range = range;
    t.validate("isaac, flipped").unwrap();
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
    let mut targets: Vec<Target> =
        WeightEncoding::ALL.iter().map(|&e| lossless_target(e)).collect();
    targets.push(isaac_flipped(AdcRange::Lossless));
    for t in &targets {
        let encoding = t.chip.crossbar.encoding;
        for (p, origin) in crossbar_steps(model, calib, t) {
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

/// mnist_cnn on isaac with the flipped encoding and its calibrated 8-bit ADC gives the logits of
/// the W8A8 program compiled without a target, bit for bit — through the crossbar kernel
/// (`run_with_adc_stats` never takes the GEMM shortcut), with both kernel builds
/// (`CIMC_PORTABLE_KERNELS=1` runs the portable one) — and calibration found nothing to clip.
#[test]
fn flipped_isaac_equals_the_w8a8_program() {
    let sets = data().join("sets");
    let mnist = npy(&sets.join("mnist_calib200_x.npy"));
    let calib = cimc::tensor_util::slice_batch(&mnist, 0, 8, 8);
    let input = cimc::tensor_util::slice_batch(&mnist, 8, 8, 8);
    let model = data().join("models").join("mnist_cnn.onnx");
    let compile_for = |t: Option<&Target>| {
        let g = onnx::import_file(&model, &ImportOptions { batch: Some(8), ..Default::default() })
            .unwrap_or_else(|e| panic!("{e}"));
        let mut cx = PassContext { calib: Some(vec![calib.clone()]), ..Default::default() };
        cx.chip = t.map(|t| Chip::from_target(t, None));
        cimc::compile::compile(g, &cx, &[]).unwrap_or_else(|e| panic!("{e}")).0
    };
    let w8a8 = compile_for(None);
    let flipped = compile_for(Some(&isaac_flipped(AdcRange::Calib)));
    let mut crossbars = 0;
    for s in &flipped.steps {
        if let Step::Conv { crossbar: Some(x), .. } | Step::Gemm { crossbar: Some(x), .. } = s {
            assert_eq!(x.geometry.encoding, WeightEncoding::Flipped);
            assert!(x.adc_step.iter().all(|&e| e == 0), "a lossy step: {:?}", x.adc_step);
            crossbars += 1;
        }
    }
    assert_eq!(crossbars, 4, "mnist_cnn has two convs and two gemms on crossbars");
    let want = ProgramRunner::new(&w8a8).unwrap().run(vec![input.clone()]).unwrap();
    let mut stats = AdcStats::default();
    let runner = ProgramRunner::new(&flipped).unwrap();
    let got = runner.run_with_adc_stats(vec![input], &mut stats).unwrap();
    assert_eq!(got[0].to_data().to_i64_vec(), want[0].to_data().to_i64_vec());
    for st in stats.steps.iter().flatten() {
        assert!(st.conversions > 0 && st.clipped == 0, "{st:?}");
        // Flipped sums stay below 256 (the histogram is sized by the flipped bound).
        assert_eq!(st.histogram.len(), 256);
    }
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
