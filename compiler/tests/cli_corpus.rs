//! Every command of the `cimc` binary on every vendored model of the corpus of real exports
//! (`tests/data/corpus/`, issue 19: "exit 2 appears for no model of the corpus, on any
//! command"). `tests/tests/corpus.rs` holds each model to its expected outcome through the
//! library; this test runs the binary as a user would — `dump`, `run`, `compile` (program and
//! stream), the program's `run`, `disasm` and `sim` of the stream — and requires of every
//! command exit 0, or exit 1 with an `error:` line; never exit 2, a panic or a signal.
//! Models marked `slow` in the manifest run only their import commands unless
//! `CIMC_CORPUS_FULL=1` is set, as in the corpus test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A vendored model of the manifest: its id and whether its compile stages are slow.
struct Model {
    id: String,
    slow: bool,
}

/// The vendored models of `corpus.toml`, read line by line: each `[[model]]` table's `id`,
/// `vendored` and `slow` keys are plain `key = value` lines (the manifest's format, which
/// `scripts/corpus_collect.py` writes).
fn vendored_models(manifest: &str) -> Vec<Model> {
    let mut out = Vec::new();
    let mut current: Option<(String, bool, bool)> = None;
    let mut flush = |c: Option<(String, bool, bool)>| {
        if let Some((id, vendored, slow)) = c {
            if vendored {
                out.push(Model { id, slow });
            }
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line == "[[model]]" {
            flush(current.take());
            current = Some((String::new(), false, false));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let (key, value) = (key.trim(), value.trim());
        if let Some(c) = current.as_mut() {
            match key {
                "id" => c.0 = value.trim_matches('"').to_string(),
                "vendored" => c.1 = value == "true",
                "slow" => c.2 = value == "true",
                _ => {}
            }
        }
    }
    flush(current);
    out
}

/// The reference inputs of a model: `(name, file, shape)` from `ref/<id>/index.json`.
fn inputs(refs: &Path) -> Vec<(String, PathBuf, Vec<usize>)> {
    let text = std::fs::read_to_string(refs.join("index.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", refs.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("invariant: index.json parses");
    v["inputs"]
        .as_array()
        .expect("invariant: index.json lists its inputs")
        .iter()
        .map(|i| {
            let name = i["name"].as_str().expect("invariant: an input has a name").to_string();
            let file = refs.join(i["file"].as_str().expect("invariant: an input has a file"));
            let shape = i["shape"]
                .as_array()
                .expect("invariant: an input has a shape")
                .iter()
                .map(|d| d.as_u64().expect("invariant: dims are numbers") as usize)
                .collect();
            (name, file, shape)
        })
        .collect()
}

/// One command's verdict: `None` if it behaved (exit 0, or exit 1 with an error line), else
/// what went wrong.
fn misbehaviour(out: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) if !stderr.contains("panicked") => None,
        Some(1) if stderr.contains("error") && !stderr.contains("panicked") => None,
        code => {
            Some(format!("exit {code:?}: {}", stderr.trim().chars().take(300).collect::<String>()))
        }
    }
}

fn cimc(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimc")).args(args).output().expect("the cimc binary runs")
}

/// Runs every command on one model; returns the misbehaviours, and adds each command that
/// succeeded to `succeeded` (so the test can tell it reached the later commands at all).
fn check_model(
    model: &Path,
    refs: &Path,
    full: bool,
    scratch: &Path,
    succeeded: &mut std::collections::BTreeMap<String, usize>,
) -> Vec<String> {
    let m = model.display().to_string();
    let ins = inputs(refs);
    let s = |p: &str| scratch.join(p).display().to_string();
    let mut shapes = Vec::new();
    for (name, _, shape) in &ins {
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        shapes.extend(["--input-shape".to_string(), format!("{name}={}", dims.join(","))]);
    }
    let files: Vec<String> = ins.iter().map(|(_, f, _)| f.display().to_string()).collect();
    let with = |base: &[&str], extra: &[String]| -> Vec<String> {
        base.iter().map(|a| a.to_string()).chain(extra.iter().cloned()).collect()
    };
    let mut bad = Vec::new();
    let mut step = |what: &str, args: Vec<String>| -> bool {
        let out = cimc(&args);
        if let Some(m) = misbehaviour(&out) {
            bad.push(format!("`cimc {what}`: {m}"));
        }
        if out.status.success() {
            *succeeded.entry(what.to_string()).or_default() += 1;
        }
        out.status.success()
    };
    let mut run = with(&["run", &m, "--output", &s("float.npz")], &shapes);
    for f in &files {
        run.extend(["--input".to_string(), f.clone()]);
    }
    step("dump", with(&["dump", &m, "-o", &s("float.cir")], &shapes));
    step("run", run);
    if !full {
        return bad;
    }
    let calib = files[0].clone();
    let compile = with(
        &["compile", &m, "--calib", &calib, "-o", &s("p.cimp"), "--listing", &s("p.txt")],
        &shapes,
    );
    if step("compile", compile) {
        let mut run = vec!["run".to_string(), s("p.cimp"), "--output".into(), s("program.npz")];
        for f in &files {
            run.extend(["--input".to_string(), f.clone()]);
        }
        step("run (program)", run);
    }
    let stream = with(
        &[
            "compile",
            &m,
            "--calib",
            &calib,
            "--target",
            "isaac",
            "--emit",
            "stream",
            "-o",
            &s("s.cims"),
        ],
        &shapes,
    );
    if step("compile --emit stream", stream) {
        step("disasm", vec!["disasm".into(), s("s.cims"), "-o".into(), s("s.txt")]);
        let mut sim = vec!["sim".to_string(), s("s.cims"), "--report".into(), s("r.json")];
        for f in &files {
            sim.extend(["--input".to_string(), f.clone()]);
        }
        step("sim", sim);
    }
    bad
}

#[test]
fn no_command_exits_2_on_a_corpus_model() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/corpus");
    let manifest = std::fs::read_to_string(dir.join("corpus.toml")).expect("the manifest reads");
    let full_run = std::env::var_os("CIMC_CORPUS_FULL").is_some_and(|v| v == "1");
    let models = vendored_models(&manifest);
    assert!(models.len() >= 40, "the manifest lists {} vendored models", models.len());
    let scratch = std::env::temp_dir().join(format!("cimc-cli-corpus-{}", std::process::id()));
    let mut failures = Vec::new();
    let mut succeeded = std::collections::BTreeMap::new();
    for e in &models {
        let work = scratch.join(&e.id);
        std::fs::create_dir_all(&work).expect("the scratch directory is made");
        let model = dir.join("models").join(format!("{}.onnx", e.id));
        let bad = check_model(
            &model,
            &dir.join("ref").join(&e.id),
            full_run || !e.slow,
            &work,
            &mut succeeded,
        );
        eprintln!("{:<34} {}", e.id, if bad.is_empty() { "ok" } else { "MISBEHAVED" });
        failures.extend(bad.into_iter().map(|b| format!("{}: {b}", e.id)));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("commands that succeeded: {succeeded:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every command succeeded on some model: the later ones were reached, not skipped.
    for what in
        ["dump", "run", "compile", "run (program)", "compile --emit stream", "disasm", "sim"]
    {
        assert!(succeeded.contains_key(what), "`cimc {what}` succeeded on no model");
    }
}
