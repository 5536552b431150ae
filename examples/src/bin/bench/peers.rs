//! The peers of each workload: measured in this run through the Python scripts in `scripts/`
//! when python3 has the package, else the figure `../shared/README.md` quotes (marked so).

use std::path::Path;
use std::process::Command;

pub struct Peer {
    pub name: String,
    pub median_ms: f64,
    /// Measured in this run (else quoted from `../shared/README.md`).
    pub measured: bool,
}

fn script(name: &str, args: &[String]) -> Option<Peer> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(name);
    let out = Command::new("python3").arg(path).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(Peer {
        name: format!("{} {}", v["peer"].as_str()?, v["version"].as_str().unwrap_or("?")),
        median_ms: v["median_ms"].as_f64()?,
        measured: true,
    })
}

fn quoted(name: &str, median_ms: f64) -> Peer {
    Peer { name: name.into(), median_ms, measured: false }
}

fn onnxruntime(model: &Path, batch: usize, reps: usize) -> Option<Peer> {
    let a = [model.display().to_string(), batch.to_string(), reps.to_string(), "2".into()];
    script("bench_onnxruntime.py", &a)
}

fn tract_run(model: &Path, batch: usize, reps: usize) -> Option<Peer> {
    let a = ["run".into(), model.display().to_string(), batch.to_string(), reps.to_string()];
    script("bench_tract.py", &a)
}

fn tract_load(model: &Path, reps: usize) -> Option<Peer> {
    script("bench_tract.py", &["load".into(), model.display().to_string(), reps.to_string()])
}

/// The peers of workload `id`; `measure = false` keeps to the quoted figures.
pub fn for_workload(id: &str, shared: &Path, reps: usize, measure: bool) -> Vec<Peer> {
    let models = shared.join("models");
    let r18 = models.join("resnet18_bn.onnx");
    let m = |p: Option<Peer>| if measure { p } else { None };
    let reps = reps.max(5);
    match id {
        "import" => vec![m(tract_load(&r18, reps.min(5)))
            .unwrap_or_else(|| quoted("tract 0.23 load + optimize", 380.0))],
        "float-r18-b1" => vec![
            m(onnxruntime(&r18, 1, reps)).unwrap_or_else(|| quoted("onnxruntime 1.32", 22.0)),
            m(tract_run(&r18, 1, reps)).unwrap_or_else(|| quoted("tract 0.23", 56.0)),
        ],
        "float-r18-b8" => [m(onnxruntime(&r18, 8, reps)), m(tract_run(&r18, 8, reps.div_ceil(2)))]
            .into_iter()
            .flatten()
            .collect(),
        "float-mnv2-b1" => {
            let p = models.join("mobilenet_v2_bn.onnx");
            [m(onnxruntime(&p, 1, reps)), m(tract_run(&p, 1, reps))].into_iter().flatten().collect()
        }
        "float-mnist-10k" => {
            m(onnxruntime(&models.join("mnist_cnn.onnx"), 10_000, 3)).into_iter().collect()
        }
        "float-vitb16-b1" => match crate::workloads::vit_b16(shared) {
            Some(p) => m(onnxruntime(&p, 1, reps)).into_iter().collect(),
            None => Vec::new(),
        },
        // The same chip configuration (8-bit weights in 4 slices of 2-bit cells, bit-serial
        // 8-bit inputs, 8-bit ADC, 128×128 arrays); CrossSim simulates it in floating point.
        "isaac-r18-b1" => vec![quoted("CrossSim 3.2, per image", 6700.0)],
        _ => Vec::new(),
    }
}
