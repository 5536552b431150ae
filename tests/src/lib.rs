//! Helpers shared by cimc's test suites: where the vendored data and `../shared/` are, and how
//! to compare tensors.

use cimc_interp::Tensor;
use std::path::{Path, PathBuf};

pub mod corpus;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("invariant: tests/ is inside the workspace")
        .to_path_buf()
}

/// The data vendored into the repository (`tests/data`).
pub fn data() -> PathBuf {
    root().join("tests/data")
}

/// `../shared` beside the repository, when it is there (always in CI, not on a user's clone).
/// Prints a line saying the test was skipped when it is absent.
pub fn shared(test: &str) -> Option<PathBuf> {
    let p = root().join("../shared");
    if p.join("models").is_dir() {
        Some(p)
    } else {
        eprintln!("SKIPPED {test}: ../shared is not present (it is in CI)");
        None
    }
}

/// Reads a `.npy` file of the test data into a run-time tensor.
pub fn npy(path: &Path) -> Tensor {
    let d = cimc::npy::read(path).unwrap_or_else(|e| panic!("test data {}: {e}", path.display()));
    Tensor::from_data(&d).unwrap_or_else(|e| panic!("test data {}: {e}", path.display()))
}

/// The largest absolute difference and the largest difference relative to `max|reference|`,
/// over two tensors of the same dtype and shape (integers and bools compared as f64).
pub fn max_errors(got: &Tensor, want: &Tensor) -> Result<(f64, f64), String> {
    if got.dtype() != want.dtype() {
        return Err(format!("dtype {} vs expected {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Err(format!("shape {:?} vs expected {:?}", got.shape(), want.shape()));
    }
    let g = got.to_data().to_f64_vec();
    let w = want.to_data().to_f64_vec();
    let mut abs = 0f64;
    let mut scale = 0f64;
    for (a, b) in g.iter().zip(&w) {
        if a.is_nan() && b.is_nan() {
            continue;
        }
        abs = abs.max((a - b).abs());
        scale = scale.max(b.abs());
    }
    Ok((abs, if scale > 0.0 { abs / scale } else { abs }))
}

/// ONNX backend-test closeness: `|got - want| <= atol + rtol * |want|` element-wise (exact for
/// integers and bools; NaN equals NaN).
pub fn allclose(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    max_errors(got, want)?;
    let exact = !want.dtype().is_float();
    let g = got.to_data().to_f64_vec();
    let w = want.to_data().to_f64_vec();
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = if exact {
            a == b
        } else if a.is_nan() || b.is_nan() {
            a.is_nan() && b.is_nan()
        } else if a.is_infinite() || b.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= atol + rtol * b.abs()
        };
        if !ok {
            return Err(format!("element {i}: got {a}, expected {b}"));
        }
    }
    Ok(())
}

/// The predicted class of each row of f32 logits `[N, classes]` (the interpreter's
/// [`Tensor::argmax_rows`]); panics on any other tensor.
pub fn argmax_rows(t: &Tensor) -> Vec<usize> {
    t.argmax_rows().expect("logits are f32 [N, classes]")
}
