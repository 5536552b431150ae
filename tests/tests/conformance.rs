//! The ONNX backend node tests for every op cimc claims (vendored in `tests/data/conformance`,
//! Apache-2.0, from the ONNX project): import each case, run it in the float interpreter and
//! compare with the expected outputs. Cases that cimc does not pass are listed, with the reason,
//! in `tests/data/conformance/EXCLUDED.txt`; an excluded case that starts passing fails the test
//! so the list cannot go stale.
//!
//! The same runner takes the cases of `tests/data/import_cases/` (made by
//! `scripts/make_import_cases.py`): QONNX/Brevitas/FINN custom ops checked against qonnx's
//! executor, float16 and bfloat16 models against onnxruntime, a model with two outputs.

use cimc::onnx::{self, ImportOptions};
use cimc_interp::{Runner, Tensor};
use cimc_tests::{allclose, data};
use std::collections::BTreeMap;
use std::path::Path;

fn excluded() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(data().join("conformance/EXCLUDED.txt")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (case, why) = l.split_once(' ').unwrap_or((l, ""));
            (case.trim().to_string(), why.trim().to_string())
        })
        .collect()
}

/// Imports and runs one case, comparing every output element-wise within `rtol` relative and
/// 1e-5 absolute (`allclose`); Err says what went wrong.
fn run_case(dir: &Path, rtol: f64) -> Result<(), String> {
    let model = dir.join("model.onnx");
    let set = dir.join("test_data_set_0");
    let mut inputs = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    let mut files: Vec<_> =
        std::fs::read_dir(&set).map_err(|e| e.to_string())?.flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let (name, d) = onnx::read_tensor_pb(&f).map_err(|e| e.to_string())?;
        let stem = f.file_name().and_then(|s| s.to_str()).unwrap_or_default();
        if stem.starts_with("input_") {
            inputs.insert(name, d);
        } else if stem.starts_with("output_") {
            let idx: usize = stem
                .trim_start_matches("output_")
                .trim_end_matches(".pb")
                .parse()
                .map_err(|_| "bad name")?;
            outputs.insert(idx, (name, d));
        }
    }
    let bound = onnx::value_operand_inputs(&model).map_err(|e| e.to_string())?;
    let mut opts = ImportOptions::default();
    for name in &bound {
        let d = inputs.get(name).ok_or_else(|| format!("no data for bound input {name}"))?;
        opts.bind.push((name.clone(), d.clone()));
    }
    // Symbolic dims (the batch of the import cases) take the test data's.
    for (name, d) in inputs.iter().filter(|(name, _)| !bound.contains(name)) {
        opts.input_shapes.push((name.clone(), d.shape().to_vec()));
    }
    let graph = onnx::import_file(&model, &opts).map_err(|e| format!("import: {e}"))?;
    cimc_ir::verify::verify(&graph).map_err(|e| format!("verify: {e}"))?;
    let mut feed = Vec::new();
    for &v in graph.inputs() {
        let name = &graph.value(v).name;
        let d = inputs.get(name).ok_or_else(|| format!("no data for input {name}"))?;
        feed.push(Tensor::from_data(d).map_err(|e| e.to_string())?);
    }
    let runner = Runner::new(&graph).map_err(|e| format!("prepare: {e}"))?;
    let got = runner.run(feed).map_err(|e| format!("run: {e}"))?;
    if got.len() != outputs.len() {
        return Err(format!("{} outputs, expected {}", got.len(), outputs.len()));
    }
    for (k, (name, want)) in outputs.values().enumerate() {
        let want = Tensor::from_data(want).map_err(|e| e.to_string())?;
        allclose(&got[k], &want, rtol, 1e-5).map_err(|e| format!("output '{name}': {e}"))?;
    }
    Ok(())
}

#[test]
fn onnx_node_conformance() {
    let root = data().join("conformance");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/data/conformance is vendored in the repository")
        .flatten()
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 269, "expected the 269 vendored cases, found {}", cases.len());
    let excluded = excluded();
    let mut failures = Vec::new();
    let mut stale = Vec::new();
    let mut passed = 0;
    for dir in &cases {
        let name = dir.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let result = std::panic::catch_unwind(|| run_case(dir, 1e-3))
            .unwrap_or_else(|_| Err("panicked".into()));
        match (result, excluded.contains_key(&name)) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => stale.push(name),
            (Err(e), false) => failures.push(format!("{name}: {e}")),
            (Err(_), true) => {}
        }
    }
    eprintln!(
        "conformance: {passed} passed, {} excluded, {} failed",
        excluded.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    assert!(
        stale.is_empty(),
        "excluded cases that now pass (remove them from EXCLUDED.txt): {stale:?}"
    );
}

/// Every case of `tests/data/import_cases/` passes (none is excluded), to 1e-5 relative:
/// quantizers give the same multiples of their scales as qonnx's executor.
#[test]
fn import_cases_match_their_reference_executors() {
    let root = data().join("import_cases");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/data/import_cases is vendored in the repository")
        .flatten()
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "expected the 10 vendored import cases, found {}", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|dir| {
            let name = dir.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let result = std::panic::catch_unwind(|| run_case(dir, 1e-5))
                .unwrap_or_else(|_| Err("panicked".into()));
            result.err().map(|e| format!("{name}: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}
