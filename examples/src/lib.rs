//! Helpers shared by the example binaries: top-1, `.npy` loading, command-line flags, timing,
//! and onnxruntime measured in the same run.

use cimc_interp::Tensor;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Top-1 accuracy in percent of logits `[N, classes]` against integer labels.
pub fn top1(out: &Tensor, labels: &[i64]) -> f64 {
    let predictions = out.argmax_rows().expect("logits are f32 [N, classes]");
    cimc_interp::tensor::top1_percent(
        cimc_interp::tensor::count_correct(&predictions, labels),
        labels.len(),
    )
}

/// A `.npy` file as a run-time tensor (panics with the file's error: examples, not the product).
pub fn load(p: &Path) -> Tensor {
    Tensor::from_data(&cimc::npy::read(p).unwrap_or_else(|e| panic!("{e}"))).expect("npy")
}

/// The value after flag `name`, parsed.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

/// `(min, median)` milliseconds of `reps` timed runs of `f`, after one warm-up run.
pub fn time_ms(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    (t[0], t[t.len() / 2])
}

/// onnxruntime's median time (ms) on `model` at `batch`, 2 threads, through
/// `scripts/bench_onnxruntime.py`: `(name with version, median ms)`, or `None` when python3 has
/// no onnxruntime.
pub fn onnxruntime(model: &Path, batch: usize, reps: usize) -> Option<(String, f64)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench_onnxruntime.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(model)
        .arg(batch.to_string())
        .arg(reps.to_string())
        .arg("2")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        format!("onnxruntime {}", v["version"].as_str().unwrap_or("?")),
        v["median_ms"].as_f64()?,
    ))
}

/// The repository's root.
pub fn repo_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A labelled test set and its calibration samples.
#[derive(Clone, Debug)]
pub struct DataSet {
    pub test_x: std::path::PathBuf,
    pub test_y: std::path::PathBuf,
    pub calib: std::path::PathBuf,
}

impl DataSet {
    /// The test images and their labels: the first `limit` (all without a limit).
    pub fn test_set(&self, limit: Option<usize>) -> (Tensor, Vec<i64>) {
        let x = load(&self.test_x);
        let mut y = cimc::npy::read(&self.test_y).expect("labels").to_i64_vec();
        let n = limit.map_or(y.len(), |l| l.min(y.len()));
        y.truncate(n);
        (cimc::tensor_util::slice_batch(&x, 0, n, n), y)
    }

    /// The first `n` calibration images (all of them when there are fewer).
    pub fn calib_images(&self, n: usize) -> Tensor {
        let calib = load(&self.calib);
        let n = calib.shape()[0].min(n);
        cimc::tensor_util::slice_batch(&calib, 0, n, n)
    }
}

/// The trained CNNs vendored in `tests/data/models/` with their data: the full MNIST test set
/// and 1,000 calibration images from `../shared` when it is there (else the vendored 500-image
/// slice, with a message), the vendored digits set.
pub fn trained_cnns() -> Vec<(&'static str, DataSet)> {
    let shared = repo_root().join("../shared/data");
    let sets = repo_root().join("tests/data/sets");
    let mnist = if shared.join("mnist_test_x.npy").exists() {
        DataSet {
            test_x: shared.join("mnist_test_x.npy"),
            test_y: shared.join("mnist_test_y.npy"),
            calib: shared.join("mnist_calib_x.npy"),
        }
    } else {
        eprintln!("../shared not found: using the vendored 500-image MNIST slice");
        DataSet {
            test_x: sets.join("mnist_test500_x.npy"),
            test_y: sets.join("mnist_test500_y.npy"),
            calib: sets.join("mnist_calib200_x.npy"),
        }
    };
    let digits = DataSet {
        test_x: sets.join("digits_test_x.npy"),
        test_y: sets.join("digits_test_y.npy"),
        calib: sets.join("digits_calib_x.npy"),
    };
    vec![("mnist_cnn", mnist.clone()), ("mnist_resnet", mnist), ("digits_cnn", digits)]
}

/// The path of a vendored model, `tests/data/models/NAME.onnx`.
pub fn vendored_model(name: &str) -> std::path::PathBuf {
    repo_root().join("tests/data/models").join(format!("{name}.onnx"))
}

/// The vendored model `name`, imported at `batch` samples per run.
pub fn import_vendored(name: &str, batch: usize) -> cimc_ir::Graph {
    let opts = cimc::onnx::ImportOptions { batch: Some(batch), ..Default::default() };
    cimc::onnx::import_file(&vendored_model(name), &opts).expect("import")
}

/// The `isaac` preset with the differential weight encoding it used until 2026-12-08 (the preset
/// is now ISAAC's flipped encoding, under which its 8-bit ADC is lossless on every layer). The
/// accuracy studies of calibrated ADC steps, noise, worst cases and cascades were measured on
/// this chip, and keep it: their tables reproduce, and a calibrated ADC has steps to study.
pub fn isaac_differential() -> cimc_backends::target::Target {
    let path = repo_root().join("targets/isaac.toml");
    let text = std::fs::read_to_string(&path).expect("invariant: the repository has its presets");
    let text = text.replace("encoding = \"flipped\"", "encoding = \"differential\"");
    assert!(
        text.contains("encoding = \"differential\""),
        "invariant: isaac.toml states its encoding"
    );
    cimc_backends::target::Target::from_toml_str(&text, "isaac.toml")
        .expect("invariant: isaac with differential weights is a valid target")
}
