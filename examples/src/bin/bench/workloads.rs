//! The workloads of the benchmark, each run in a process of its own (`bench --child ID`) so its
//! peak memory is its own: the child does the setup (import, compile), times `reps` runs after a
//! warm-up, and prints one JSON line with the times and its peak resident memory.

use cimc::onnx::{self, ImportOptions};
use cimc_backends::program::Program;
use cimc_backends::stream::emit::{emit, EmitOptions};
use cimc_backends::target::Target;
use cimc_examples::{load, time_ms, top1};
use cimc_interp::{Runner, Tensor};
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use cimc_sim::program::ProgramRunner;
use std::path::Path;

/// A workload: its id (`--only` matches it), what the table calls it, and the model file whose
/// size the peak memory is compared with (when that comparison is a goal).
pub struct Workload {
    pub id: &'static str,
    pub title: &'static str,
}

pub const WORKLOADS: &[Workload] = &[
    Workload { id: "import", title: "import + verify resnet18_bn.onnx" },
    Workload { id: "dump", title: "import + text dump resnet18_bn.onnx" },
    Workload { id: "float-r18-b1", title: "float ResNet-18, batch 1" },
    Workload { id: "float-r18-b8", title: "float ResNet-18, batch 8" },
    Workload { id: "float-mnv2-b1", title: "float MobileNetV2, batch 1" },
    Workload { id: "float-mnist-10k", title: "float mnist_cnn, 10,000 test images" },
    Workload { id: "w8a8-r18-b1", title: "W8A8 program (exact integer) ResNet-18, batch 1" },
    Workload { id: "isaac-r18-b1", title: "ISAAC-like crossbar program ResNet-18, batch 1" },
    Workload {
        id: "isaac-mnist-10k",
        title: "ISAAC-like crossbar program mnist_cnn, 10,000 images",
    },
    Workload { id: "compile-r18-program", title: "compile ResNet-18 to a program (isaac)" },
    Workload { id: "compile-r18-stream", title: "compile ResNet-18 to a stream (isaac)" },
    Workload {
        id: "compile-chain-100k",
        title: "compile a 100,000-node chain (Add, Relu, Mul) to a W8A8 program",
    },
    Workload { id: "float-vitb16-b1", title: "float ViT-B/16 (random weights), batch 1" },
    Workload {
        id: "compile-vitb16-stream",
        title: "compile ViT-B/16 (random weights) to a stream (isaac)",
    },
    Workload {
        id: "sweep-24",
        title: "cimc sweep of 24 points (digits CNN, isaac, noise) against the 24 run alone",
    },
];

/// The realistic-size transformer (`scripts/make_transformers.py --big DIR` writes it, ≈ 346
/// MB, not vendored): `DIR/models/vit_b16_random.onnx` of the shared directory, else the file
/// `CIMC_VIT_B16` names.
pub fn vit_b16(shared: &Path) -> Option<std::path::PathBuf> {
    let in_shared = shared.join("models/vit_b16_random.onnx");
    if in_shared.is_file() {
        return Some(in_shared);
    }
    std::env::var_os("CIMC_VIT_B16").map(std::path::PathBuf::from).filter(|p| p.is_file())
}

/// Why workload `id` cannot run here (its model file is absent), or `None`.
pub fn skip_reason(id: &str, shared: &Path) -> Option<String> {
    (id.contains("vitb16") && vit_b16(shared).is_none()).then(|| {
        format!(
            "no {} and CIMC_VIT_B16 names no file (scripts/make_transformers.py --big DIR)",
            shared.join("models/vit_b16_random.onnx").display()
        )
    })
}

/// What a child measured.
pub struct Measured {
    pub min_ms: f64,
    pub median_ms: f64,
    /// Extra facts worth printing (e.g. top-1 of a test-set run, to show the work was real).
    pub note: Option<String>,
}

/// The kernel path workload `id` runs on in this process (chosen at run time from the CPU's
/// features; `CIMC_PORTABLE_KERNELS=1` forces the portable ones), so that figures of different
/// machines or paths are never compared blind.
pub fn kernel_path(id: &str) -> Option<String> {
    let float = || {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") && !cimc_interp::portable_kernels_forced() {
            return "avx512";
        }
        // The long-reduction layers take the AVX2 lanes kernel, the rest the portable paths.
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return "avx2 + portable";
        }
        "portable"
    };
    let int = || cimc_sim::int_gemm::IntKernel::best().name();
    let xbar = cimc_sim::program::crossbar_kernel_path;
    Some(match id {
        "float-r18-b1" | "float-r18-b8" | "float-mnv2-b1" | "float-mnist-10k" => {
            format!("float {}", float())
        }
        // The baseline integer kernel is replaced by exact f32 GEMMs over chunks of K.
        "w8a8-r18-b1" if int() == "portable" => "f32-exact chunks".to_string(),
        "w8a8-r18-b1" => format!("int {}", int()),
        // Where the target's ADC holds every partial sum (the isaac preset's flipped encoding),
        // no conversion clips or rounds, and the program runs the exact integer kernel.
        "isaac-r18-b1" | "isaac-mnist-10k" => {
            let t = isaac();
            if t.max_partial_sum() < 1u64 << t.chip.crossbar.adc_bits {
                format!("crossbar lossless: int {}", int())
            } else {
                format!("crossbar {}", xbar())
            }
        }
        _ => return None,
    })
}

/// The CPU's model name (`/proc/cpuinfo`) and the x86 features the kernels choose by.
pub fn cpu_description() -> String {
    let name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("model name"))?.to_string();
            Some(line.split_once(':')?.1.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    #[allow(unused_mut)]
    let mut features: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let all = [
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
            ("avx512vnni", std::is_x86_feature_detected!("avx512vnni")),
            ("avx512vpopcntdq", std::is_x86_feature_detected!("avx512vpopcntdq")),
        ];
        features.extend(all.iter().filter(|f| f.1).map(|f| f.0));
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let forced =
        if cimc_interp::portable_kernels_forced() { ", CIMC_PORTABLE_KERNELS set" } else { "" };
    format!("{name}, {threads} threads, {}{forced}", features.join(" "))
}

/// The peak resident memory of this process (`VmHWM` of `/proc/self/status`), in bytes.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn import(path: &Path, batch: usize) -> cimc_ir::Graph {
    onnx::import_file(path, &ImportOptions { batch: Some(batch), ..Default::default() })
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A deterministic input of the graph's input shape.
fn pattern_input(g: &cimc_ir::Graph) -> Tensor {
    let shape = g.ty(g.inputs()[0]).shape.clone();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919 % 17) as f32 - 8.0) / 8.0).collect();
    Tensor::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), v).expect("shape"))
}

/// A chain of `n` element-wise nodes on an `f32[1, 8]` input — Add of a scalar, Relu, Mul by a
/// scalar, repeated — as a deep model's import would make it (issue 25: every pass linear in the
/// node count).
fn chain(n: usize) -> cimc_ir::Graph {
    use cimc_ir::{DType, Graph, Op, TensorData, TensorType};
    let ty = || TensorType::new(DType::F32, vec![1, 8]);
    let mut g = Graph::new("chain");
    let mut v = g.add_input("x", ty());
    for i in 0..n {
        let (op, k) = match i % 3 {
            0 => (Op::Add, Some(0.01)),
            1 => (Op::Relu, None),
            _ => (Op::Mul, Some(0.999)),
        };
        let mut inputs = vec![v];
        if let Some(k) = k {
            inputs.push(g.add_const(format!("c{i}"), TensorData::from_f32(vec![1], &[k])));
        }
        let node = g.add_node(format!("n{i}"), op, inputs, vec![(format!("v{i}"), ty())]);
        v = g.node(node).outputs[0];
    }
    g.set_outputs(vec![v]);
    g
}

/// ResNet-18 compiled as `cimc compile` does, calibrated on the first shared random image.
fn compile_r18(shared: &Path, target: Option<&Target>) -> Program {
    let img = load(&shared.join("data/imagenet_random_x.npy"));
    let calib = cimc::tensor_util::slice_batch(&img, 0, 1, 1);
    let g = import(&shared.join("models/resnet18_bn.onnx"), 1);
    let cx = PassContext {
        calib: Some(vec![calib]),
        chip: target.map(|t| Chip::from_target(t, None)),
        ..Default::default()
    };
    cimc::compile::compile(g, &cx, &[]).unwrap_or_else(|e| panic!("{e}")).0
}

fn isaac() -> Target {
    Target::preset("isaac").expect("the isaac preset exists")
}

fn float_run(path: &Path, batch: usize, reps: usize) -> Measured {
    let g = import(path, batch);
    let runner = Runner::new(&g).unwrap_or_else(|e| panic!("{e}"));
    let x = pattern_input(&g);
    let (min_ms, median_ms) = time_ms(reps, || {
        std::hint::black_box(runner.run(vec![x.clone()]).expect("run"));
    });
    Measured { min_ms, median_ms, note: None }
}

fn program_run(p: &Program, x: &Tensor, reps: usize) -> Measured {
    let runner = ProgramRunner::new(p).unwrap_or_else(|e| panic!("{e}"));
    let (min_ms, median_ms) = time_ms(reps, || {
        std::hint::black_box(runner.run(vec![x.clone()]).expect("run"));
    });
    Measured { min_ms, median_ms, note: None }
}

/// Runs workload `id` in this process.
pub fn run(id: &str, shared: &Path, reps: usize) -> Result<Measured, String> {
    let models = shared.join("models");
    let r18 = models.join("resnet18_bn.onnx");
    let img = || load(&shared.join("data/imagenet_random_x.npy"));
    Ok(match id {
        "import" => {
            let (min_ms, median_ms) = time_ms(reps, || {
                let g = import(&r18, 1);
                cimc_ir::verify::verify(&g).expect("the imported graph verifies");
            });
            Measured { min_ms, median_ms, note: None }
        }
        "dump" => {
            let (min_ms, median_ms) = time_ms(reps, || {
                let g = import(&r18, 1);
                std::hint::black_box((g.to_string(), cimc_ir::datafile::write_data(&g)));
            });
            Measured { min_ms, median_ms, note: None }
        }
        "float-r18-b1" => float_run(&r18, 1, reps),
        "float-r18-b8" => float_run(&r18, 8, reps.div_ceil(2)),
        "float-mnv2-b1" => float_run(&models.join("mobilenet_v2_bn.onnx"), 1, reps),
        "float-mnist-10k" | "isaac-mnist-10k" => {
            let x = load(&shared.join("data/mnist_test_x.npy"));
            let y = cimc::npy::read(&shared.join("data/mnist_test_y.npy"))
                .map_err(|e| e.to_string())?
                .to_i64_vec();
            let batch = 500;
            let g = import(&models.join("mnist_cnn.onnx"), batch);
            let run: Box<dyn Fn(Vec<Tensor>) -> cimc::Result<Vec<Tensor>>> =
                if id == "float-mnist-10k" {
                    let r = Runner::new(&g).unwrap_or_else(|e| panic!("{e}"));
                    Box::new(move |x| Ok(r.run(x)?))
                } else {
                    let calib = load(&shared.join("data/mnist_calib_x.npy"));
                    let calib = cimc::tensor_util::slice_batch(&calib, 0, 500, 500);
                    let cx = PassContext {
                        calib: Some(vec![calib]),
                        chip: Some(Chip::from_target(&isaac(), None)),
                        ..Default::default()
                    };
                    let p = cimc::compile::compile(g, &cx, &[]).unwrap_or_else(|e| panic!("{e}")).0;
                    let r = ProgramRunner::new(&p).unwrap_or_else(|e| panic!("{e}"));
                    Box::new(move |x| Ok(r.run(x)?))
                };
            let mut acc = 0.0;
            let (min_ms, median_ms) = time_ms(reps.div_ceil(4), || {
                let out = cimc::model::run_in_chunks(&run, batch, std::slice::from_ref(&x), |_| {})
                    .expect("run");
                acc = top1(&out[0], &y);
            });
            Measured { min_ms, median_ms, note: Some(format!("top-1 {acc:.2} %")) }
        }
        "w8a8-r18-b1" => {
            let p = compile_r18(shared, None);
            program_run(&p, &cimc::tensor_util::slice_batch(&img(), 1, 1, 1), reps.div_ceil(2))
        }
        "isaac-r18-b1" => {
            let p = compile_r18(shared, Some(&isaac()));
            program_run(&p, &cimc::tensor_util::slice_batch(&img(), 1, 1, 1), reps.div_ceil(4))
        }
        "compile-r18-program" | "compile-r18-stream" => {
            let out = std::env::temp_dir().join(format!("cimc_bench_{}_{id}", std::process::id()));
            let t = isaac();
            let (min_ms, median_ms) = time_ms(reps.div_ceil(4), || {
                let p = compile_r18(shared, Some(&t));
                if id == "compile-r18-stream" {
                    // As `cimc compile --emit stream`: the program goes once the stream is made,
                    // and the stream is serialized straight into its file.
                    let s = emit(&p, &t, &EmitOptions::default()).unwrap_or_else(|e| panic!("{e}"));
                    drop(p);
                    cimc::compile::write_with(&out, |w| s.write_to(w))
                        .unwrap_or_else(|e| panic!("{e}"));
                } else {
                    cimc::compile::write_program(&out, &p).unwrap_or_else(|e| panic!("{e}"));
                }
            });
            std::fs::remove_file(&out).ok();
            let size = std::fs::metadata(&r18).map(|m| m.len()).unwrap_or(0);
            Measured {
                min_ms,
                median_ms,
                note: Some(format!("model file {:.1} MB", size as f64 / 1e6)),
            }
        }
        "compile-chain-100k" => {
            let n = 100_000;
            let x = Tensor::F32(ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[1, 8]), |i| {
                i[1] as f32 / 8.0 - 0.5
            }));
            let (min_ms, median_ms) = time_ms(reps.div_ceil(4), || {
                let cx = PassContext { calib: Some(vec![x.clone()]), ..Default::default() };
                let p =
                    cimc::compile::compile(chain(n), &cx, &[]).unwrap_or_else(|e| panic!("{e}"));
                std::hint::black_box(p);
            });
            Measured { min_ms, median_ms, note: Some(format!("{n} nodes")) }
        }
        "float-vitb16-b1" => {
            let path = vit_b16(shared).ok_or("SKIPPED: no ViT-B/16 file")?;
            float_run(&path, 1, reps.div_ceil(2))
        }
        "compile-vitb16-stream" => {
            let path = vit_b16(shared).ok_or("SKIPPED: no ViT-B/16 file")?;
            let out = std::env::temp_dir().join(format!("cimc_bench_{}_{id}", std::process::id()));
            let t = isaac();
            let (min_ms, median_ms) = time_ms(reps.div_ceil(4).min(2), || {
                // As `cimc compile --calib --target isaac --emit stream`: one pattern image.
                let g = import(&path, 1);
                let x = pattern_input(&g);
                let cx = PassContext {
                    calib: Some(vec![x]),
                    chip: Some(Chip::from_target(&t, None)),
                    ..Default::default()
                };
                let p = cimc::compile::compile(g, &cx, &[]).unwrap_or_else(|e| panic!("{e}")).0;
                let s = emit(&p, &t, &EmitOptions::default()).unwrap_or_else(|e| panic!("{e}"));
                drop(p);
                cimc::compile::write_with(&out, |w| s.write_to(w))
                    .unwrap_or_else(|e| panic!("{e}"));
            });
            std::fs::remove_file(&out).ok();
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            Measured {
                min_ms,
                median_ms,
                note: Some(format!("model file {:.1} MB", size as f64 / 1e6)),
            }
        }
        "sweep-24" => crate::sweep::run(reps),
        other => return Err(format!("unknown workload '{other}'")),
    })
}
