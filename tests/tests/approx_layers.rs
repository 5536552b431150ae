//! The product-table (approximate multiplier) kernels on real layers: every digital Conv/Gemm
//! step of the vendored `mnist_cnn` and `mnist_resnet` W8A8 programs (K up to 576, 784 pixels:
//! past the vector kernel's 256-product u16 rounds and its four-strip groups), fed the
//! activation codes the program computes for real test images, with each multiplier family and
//! the shipped EvoApprox table, by each kernel this CPU runs — against a naive loop written
//! here that applies the documented operand rule product by product (`docs/approximate.md`).
//! And the whole programs: every kernel gives the same outputs.

use cimc::onnx::{self, ImportOptions};
use cimc_backends::program::{step_buffers, Elem, Program, Step};
use cimc_interp::Tensor;
use cimc_passes::PassContext;
use cimc_sim::program::multiplier::{LutKernel, Multiplier, ProductTable};
use cimc_sim::program::ProgramRunner;
use cimc_tests::{data, npy, root};

const IMAGES: usize = 2;

fn kernels() -> Vec<LutKernel> {
    [LutKernel::Scalar, LutKernel::Avx512Vbmi].into_iter().filter(|k| k.available()).collect()
}

fn multipliers() -> Vec<Multiplier> {
    let table = root().join("examples/multipliers/mul8s_1L2H.mul8");
    ["trunc:8", "drum:4", "mitchell"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("table:{}", table.display())])
        .map(|s| Multiplier::parse(&s).unwrap())
        .collect()
}

/// The W8A8 program of a vendored MNIST model, calibrated on 200 training images.
fn program(model: &str) -> Program {
    let g = onnx::import_file(
        &data().join("models").join(model),
        &ImportOptions { batch: Some(IMAGES), ..Default::default() },
    )
    .unwrap();
    let calib = npy(&data().join("sets/mnist_calib200_x.npy"));
    let cx = PassContext { calib: Some(vec![calib]), ..Default::default() };
    cimc::compile::compile(g, &cx, &[]).unwrap_or_else(|e| panic!("{model}: {e}")).0
}

/// The codes of buffer `buf` when the exact program runs `steps[..i]` on `x`.
fn codes_before(p: &Program, i: usize, buf: usize, x: &Tensor) -> Tensor {
    let prefix = Program {
        steps: p.steps[..i].to_vec(),
        origins: p.origins[..i].to_vec(),
        outputs: vec![buf],
        ..p.clone()
    };
    ProgramRunner::new(&prefix).unwrap().run(vec![x.clone()]).unwrap().remove(0)
}

/// The documented product of the hardware operands: activation `v = q − q_min`, weight `w`.
fn hw_product(t: &ProductTable, v: i32, w: i32) -> i64 {
    if t.signed {
        t.get(v - 128, w).unwrap() as i64 + 128 * w as i64
    } else {
        let p = t.get(v, w.abs()).unwrap() as i64;
        if w < 0 {
            -p
        } else {
            p
        }
    }
}

/// Step `s`'s accumulators (bias included) on input codes `x` of shape `si`, product by
/// product, in the output buffer's layout.
fn naive(s: &Step, t: &ProductTable, q_min: i32, x: &[i32], si: &[usize]) -> Vec<i64> {
    let term = |q: i32, w: i32, z: i32| hw_product(t, q - q_min, w) + (q_min - z) as i64 * w as i64;
    match s {
        Step::Conv { input_zero_point: z, weights, bias, window, group, .. } => {
            let (n, c, h, w) = (si[0], si[1], si[2], si[3]);
            let (m, cg, kh, kw) =
                (weights.shape[0], weights.shape[1], weights.shape[2], weights.shape[3]);
            let (st, dl, pd) = (&window.strides, &window.dilations, &window.pads);
            let oh = (h + pd[0] + pd[2] - dl[0] * (kh - 1) - 1) / st[0] + 1;
            let ow = (w + pd[1] + pd[3] - dl[1] * (kw - 1) - 1) / st[1] + 1;
            let mg = m / group;
            let mut out = Vec::with_capacity(n * m * oh * ow);
            for b in 0..n {
                for o in 0..m {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let mut acc = bias[o];
                            for ci in 0..cg {
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        let iy = (y * st[0] + ky * dl[0]) as i64 - pd[0] as i64;
                                        let ix = (xx * st[1] + kx * dl[1]) as i64 - pd[1] as i64;
                                        let inside = iy >= 0
                                            && ix >= 0
                                            && (iy as usize) < h
                                            && (ix as usize) < w;
                                        let q = if inside {
                                            let ch = b * c + o / mg * cg + ci;
                                            x[(ch * h + iy as usize) * w + ix as usize]
                                        } else {
                                            *z
                                        };
                                        let wv = weights.data[((o * cg + ci) * kh + ky) * kw + kx];
                                        acc += term(q, wv, *z);
                                    }
                                }
                            }
                            out.push(acc);
                        }
                    }
                }
            }
            out
        }
        Step::Gemm { input_zero_point: z, weights, bias, .. } => {
            let (k, nn) = (weights.shape[0], weights.shape[1]);
            let rows = x.len() / k;
            let mut out = Vec::with_capacity(rows * nn);
            for r in 0..rows {
                for o in 0..nn {
                    let dot: i64 =
                        (0..k).map(|j| term(x[r * k + j], weights.data[j * nn + o], *z)).sum();
                    out.push(bias[o] + dot);
                }
            }
            out
        }
        _ => unreachable!("the caller passes matrix steps"),
    }
}

/// Every digital matrix step of `model`, every multiplier, every kernel, against [`naive`];
/// returns how many steps were checked.
fn check_layers(model: &str) -> usize {
    let p = program(model);
    let x = cimc::tensor_util::slice_batch(
        &npy(&data().join("sets/mnist_test500_x.npy")),
        0,
        IMAGES,
        IMAGES,
    );
    let mut checked = 0;
    for (i, s) in p.steps.iter().enumerate() {
        if !matches!(s, Step::Conv { crossbar: None, .. } | Step::Gemm { crossbar: None, .. }) {
            continue;
        }
        let bufs = step_buffers(s);
        let input = codes_before(&p, i, bufs[0], &x);
        let Elem::Code(code) = p.buffers[bufs[0]].elem else {
            panic!("{model} step {i}: f32 input")
        };
        let xs: Vec<i32> = input.to_data().to_i64_vec().into_iter().map(|v| v as i32).collect();
        let single = Program {
            name: format!("{model} step {i}"),
            inputs: vec![bufs[0]],
            outputs: vec![bufs[1]],
            steps: vec![s.clone()],
            origins: vec![p.origins[i].clone()],
            ..p.clone()
        };
        for m in multipliers() {
            let want = naive(s, &m.table(), code.range().0, &xs, input.shape());
            for kernel in kernels() {
                let r = ProgramRunner::with_multiplier_kernel(&single, &m, kernel).unwrap();
                let state = r.start(vec![input.clone()]).unwrap();
                let got = r.accumulators(&state, 0).unwrap();
                assert!(
                    got == want,
                    "{model} step {i} ({}), {}, {} kernel: accumulators differ from the naive loop",
                    p.origins[i],
                    m.name(),
                    kernel.name()
                );
            }
        }
        checked += 1;
    }
    // Whole programs: the kernels agree on the outputs.
    for m in multipliers() {
        let outs: Vec<Vec<f64>> = kernels()
            .into_iter()
            .map(|k| {
                let r = ProgramRunner::with_multiplier_kernel(&p, &m, k).unwrap();
                r.run(vec![x.clone()]).unwrap()[0].to_f64_vec()
            })
            .collect();
        assert!(outs.windows(2).all(|w| w[0] == w[1]), "{model} {}: kernels disagree", m.name());
    }
    checked
}

#[test]
fn table_kernels_match_the_naive_loop_on_mnist_cnn_layers() {
    assert!(check_layers("mnist_cnn.onnx") >= 3);
}

#[test]
fn table_kernels_match_the_naive_loop_on_mnist_resnet_layers() {
    assert!(check_layers("mnist_resnet.onnx") >= 5);
}

#[test]
fn asking_for_a_kernel_the_cpu_lacks_is_an_error() {
    let p = program("mnist_cnn.onnx");
    for k in [LutKernel::Scalar, LutKernel::Avx512Vbmi] {
        let r = ProgramRunner::with_multiplier_kernel(&p, &Multiplier::Mitchell, k);
        match (k.available(), r) {
            (true, Ok(_)) => {}
            (false, Err(e)) => assert!(e.to_string().contains(k.name()), "{e}"),
            (a, r) => panic!("{} available {a}, runner made: {}", k.name(), r.is_ok()),
        }
    }
}
