//! The corpus of real exports (`tests/data/corpus/`, issue 19): every vendored model is imported,
//! run in the float interpreter against its reference outputs (onnxruntime, or qonnx's executor
//! for QONNX/FINN models; 1e-4 relative, the metric of `cimc_tests::corpus`), compiled W8A8 with
//! its seeded input as calibration data and run as a program, and compiled for the isaac
//! crossbar target and run. Each stage's outcome must be the one `corpus.toml` expects — a model
//! that starts to import (or compile) fails this test as surely as one that stops, so the
//! manifest always says what cimc does with each file. Slow models (`slow = true`) skip the
//! compile and crossbar stages unless `CIMC_CORPUS_FULL=1` is set (VGG-19 alone takes minutes
//! there); the `model_coverage` example runs them.

use cimc_tests::corpus::{evaluate, locate, matches_expected, Manifest, Outcome, Stages};
use cimc_tests::data;

/// One line per stage whose outcome is not the expected one.
fn surprises(
    id: &str,
    got: &Outcome,
    e: &cimc_tests::corpus::Entry,
    stages: Stages,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |stage: &str, key: &str, actual: Option<&str>, expected: Option<&str>| {
        if !matches_expected(actual, expected) {
            out.push(format!(
                "{id}: {stage}: expected {}, got {}\n    (if this is the new behaviour, set {key} = {} in tests/data/corpus/corpus.toml, or all of them from a run: see its header)",
                expected.map_or("(not reached)".into(), |e| format!("{e:?}")),
                actual.map_or("(not reached)".into(), |a| format!("{a:?}")),
                actual.map_or("(remove the key)".into(), |a| format!("{:?}", a.chars().take(120).collect::<String>())),
            ));
        }
    };
    check(
        "import + float run",
        "expect_import",
        Some(got.import.as_str()),
        e.expect_import.as_deref(),
    );
    if stages.compile {
        check(
            "compile W8A8",
            "expect_compile",
            got.compile.as_deref(),
            e.expect_compile.as_deref(),
        );
    }
    if stages.crossbar {
        check(
            "crossbar (isaac)",
            "expect_crossbar",
            got.crossbar.as_deref(),
            e.expect_crossbar.as_deref(),
        );
    }
    out
}

#[test]
fn every_vendored_model_has_its_expected_outcome() {
    let dir = data().join("corpus");
    let manifest = Manifest::load(&dir.join("corpus.toml"));
    let full_run = std::env::var_os("CIMC_CORPUS_FULL").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    let mut ran = 0;
    for e in manifest.model.iter().filter(|e| e.vendored) {
        let files = locate(e, &dir, None).unwrap_or_else(|| {
            panic!("{}: vendored, but its model or ref/{}/index.json is missing", e.id, e.id)
        });
        let full = full_run || !e.slow;
        let stages = Stages { compile: full, crossbar: full };
        let got = evaluate(&files, stages);
        eprintln!(
            "{:<34} {:6.2}s  import: {}  compile: {}  crossbar: {}",
            e.id,
            got.seconds,
            got.import.chars().take(70).collect::<String>(),
            got.compile.as_deref().map_or("-".into(), |c| c.chars().take(50).collect::<String>()),
            got.crossbar.as_deref().map_or("-".into(), |c| c.chars().take(50).collect::<String>()),
        );
        failures.extend(surprises(&e.id, &got, e, stages));
        ran += 1;
    }
    assert!(ran >= 40, "only {ran} vendored models");
    assert!(
        failures.is_empty(),
        "{} unexpected outcome(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The matching rule of the expectations: exact, or a substring of a refusal's message.
#[test]
fn expectations_match_by_kind_and_substring() {
    assert!(matches_expected(Some("matches"), Some("matches")));
    assert!(!matches_expected(Some("matches"), Some("refused: x")));
    assert!(matches_expected(
        Some("refused: m.onnx: 1 unsupported node(s): LRN"),
        Some("refused: unsupported node(s): LRN")
    ));
    assert!(!matches_expected(Some("internal: unsupported"), Some("refused: unsupported")));
    assert!(!matches_expected(None, Some("ok")));
    assert!(!matches_expected(Some("ok"), None));
    assert!(matches_expected(None, None));
}

/// qonnx's references are made on the seeded input: `scripts/corpus_refs.py` feeds the inputs
/// of the model qonnx's `cleanup_model` renamed (`global_in`) by position. It once fed them by
/// the file's input name, which `execute_onnx` ignores, and the references were the networks'
/// response to no input at all (a float run "off" by 15 times the output's range). cimc's float
/// run of the sub-pixel ESPCN is now within one output step (1/255) of the reference, and off by
/// that step only at ties of the final Quant that the f32 summation order decides.
#[test]
fn qonnx_references_are_made_on_the_seeded_input() {
    let dir = data().join("corpus");
    let id = "brevitas_espcn_subpixel";
    let refs = cimc_tests::corpus::Refs::load(&dir.join("ref").join(id)).unwrap();
    let model = dir.join("models").join(format!("{id}.onnx"));
    let m = cimc::model::Model::open(&model, Default::default()).unwrap();
    let inputs: Vec<_> = refs.inputs.iter().map(|(_, t)| t.clone()).collect();
    let got = m.prepare(1).unwrap().exe.run(inputs).unwrap();
    let want = refs.outputs.as_ref().expect("qonnx's outputs");
    let (g, w) = (got[0].to_f64_vec(), want[0].to_f64_vec());
    assert_eq!(g.len(), w.len());
    let off: Vec<f64> =
        g.iter().zip(&w).map(|(a, b)| (a - b).abs()).filter(|&d| d > 1e-6).collect();
    assert!(off.iter().all(|&d| d <= 1.0 / 255.0 + 1e-6), "{off:?}");
    assert!(off.len() <= 8, "{} of {} elements off by a step", off.len(), g.len());
}
