//! The non-idealities on a real program: the vendored `mnist_cnn` compiled for the ISAAC-like
//! preset, run on real MNIST images. Noise off is the exact program bit for bit (through the
//! noisy kernel too), draws are reproducible from the seed and independent of threads and of
//! how the images are cut into batches, and different seeds differ.

use cimc::onnx::{self, ImportOptions};
use cimc_backends::noise::NoiseSpec;
use cimc_backends::program::Program;
use cimc_backends::target::Target;
use cimc_interp::Tensor;
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use cimc_sim::noise::{NoiseConfig, NoisyChip};
use cimc_sim::program::ProgramRunner;
use cimc_tests::{data, npy};

const BATCH: usize = 2;

fn program() -> Program {
    let model = data().join("models/mnist_cnn.onnx");
    let g = onnx::import_file(&model, &ImportOptions { batch: Some(BATCH), ..Default::default() })
        .unwrap();
    let x = npy(&data().join("sets/mnist_calib200_x.npy"));
    let calib = cimc::tensor_util::slice_batch(&x, 0, BATCH, BATCH);
    let mut cx = PassContext { calib: Some(vec![calib]), ..Default::default() };
    cx.chip = Some(Chip::from_target(&Target::preset("isaac").unwrap(), None));
    cimc::compile::compile(g, &cx, &[]).unwrap().0
}

/// Images `start .. start + BATCH` of the vendored test set.
fn images(start: usize) -> Tensor {
    let x = npy(&data().join("sets/mnist_test500_x.npy"));
    cimc::tensor_util::slice_batch(&x, start, BATCH, BATCH)
}

fn logits(t: &[Tensor]) -> Vec<u32> {
    t[0].as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}

fn spec(f: impl FnOnce(&mut NoiseSpec)) -> NoiseSpec {
    let mut s = NoiseSpec::default();
    f(&mut s);
    s
}

#[test]
fn noise_off_is_the_exact_program_bit_for_bit() {
    let p = program();
    let r = ProgramRunner::new(&p).unwrap();
    // The exact path is taken when nothing is perturbed...
    assert!(NoiseConfig::default().is_off());
    // ...and the noisy kernel itself, with nothing perturbed or with a σ below f32's
    // resolution, computes the exact arithmetic.
    for cfg in [
        NoiseConfig::default(),
        NoiseConfig::new(spec(|s| s.sigma_prog = 1e-9), 3),
        NoiseConfig::new(spec(|s| s.nu_mean = 0.05), 3),
    ] {
        let chip = NoisyChip::program(&r, &cfg, 0).unwrap();
        for start in [0, 2, 40] {
            let exact = r.run(vec![images(start)]).unwrap();
            let noisy = r.run_noisy(vec![images(start)], &chip, start as u64).unwrap();
            assert_eq!(logits(&noisy), logits(&exact), "{cfg:?}, images {start}..");
        }
    }
}

#[test]
fn seeds_trials_threads_and_batches() {
    let p = program();
    let r = ProgramRunner::new(&p).unwrap();
    let all = spec(|s| {
        s.sigma_prog = 0.1;
        s.sigma_read = 0.3;
        s.p_stuck_off = 0.01;
        s.adc_offset_sigma_lsb = 0.5;
    });
    let run = |seed: u64, trial: u64, start: usize| {
        let chip = NoisyChip::program(&r, &NoiseConfig::new(all.clone(), seed), trial).unwrap();
        logits(&r.run_noisy(vec![images(start)], &chip, start as u64).unwrap())
    };
    let base = run(1, 0, 0);
    assert_eq!(run(1, 0, 0), base, "same seed, same trial: identical");
    assert_ne!(run(2, 0, 0), base, "another seed");
    assert_ne!(run(1, 1, 0), base, "another trial");
    assert_ne!(base, logits(&r.run(vec![images(0)]).unwrap()), "the noise shows");
    // One thread gives the same bits as the pool.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    assert_eq!(pool.install(|| run(1, 0, 0)), base, "independent of the thread count");
    // Image 1 of the set, run as the second image of batch 0..2 and as the first of 1..3:
    // read noise is keyed on the image's index in the set, not its place in the batch.
    let half = base.len() / BATCH;
    assert_eq!(run(1, 0, 1)[..half], base[half..], "independent of the batching");
}
