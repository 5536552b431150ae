//! Writes `docs/model-coverage.md`: what cimc does with every model of the corpus of real exports
//! (`tests/data/corpus/corpus.toml`) — import and float run against the reference, `compile` W8A8
//! and the program's agreement, the isaac crossbar program — with totals and every refusal.
//!
//! `cargo run --release -p cimc-examples --bin model_coverage -- [--extra-dir DIR] [--out FILE]
//! [--quick] [--only ID,ID] [--outcomes FILE.json]`
//!
//! `--extra-dir` is where the models that are not vendored live (`DIR/models/<id>.onnx`,
//! `DIR/ref/<id>/`, made by `scripts/corpus_collect.py` and `scripts/corpus_refs.py`); without
//! it they are listed as not present. `--quick` skips the compile and crossbar stages of the
//! models marked slow. The models whose outcome differs from the manifest's expectations are
//! listed on stderr (the corpus test holds the vendored ones to them); `--outcomes` writes every
//! model's outcomes as JSON, which `scripts/corpus_collect.py --expect FILE.json` turns into the
//! manifest's expectations.

use cimc_tests::corpus::{
    evaluate, locate, matches_expected, Agreement, Entry, Manifest, Outcome, Stages,
    FLOAT_TOLERANCE,
};
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let extra = value("--extra-dir").map(PathBuf::from);
    let out = value("--out")
        .map_or_else(|| cimc_tests::root().join("docs/model-coverage.md"), PathBuf::from);
    let only: Option<Vec<&str>> = value("--only").map(|s| s.split(',').collect());
    let quick = args.iter().any(|a| a == "--quick");
    let dir = cimc_tests::data().join("corpus");
    let manifest = Manifest::load(&dir.join("corpus.toml"));
    let mut rows = Vec::new();
    for e in &manifest.model {
        if only.as_ref().is_some_and(|o| !o.contains(&e.id.as_str())) {
            continue;
        }
        let outcome = locate(e, &dir, extra.as_deref()).map(|files| {
            let full = !(quick && e.slow);
            let o = evaluate(&files, Stages { compile: full, crossbar: full });
            eprintln!("{:<34} {:6.2}s  {}", e.id, o.seconds, short(&o.import, 80));
            o
        });
        if let Some(o) = &outcome {
            report_surprises(e, o);
        }
        rows.push((e.clone(), outcome));
    }
    if let Some(path) = value("--outcomes") {
        let j: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .filter_map(|(e, o)| {
                let o = o.as_ref()?;
                let v = serde_json::json!({"import": o.import, "compile": o.compile, "crossbar": o.crossbar});
                Some((e.id.clone(), v))
            })
            .collect();
        let text = serde_json::to_string_pretty(&j).expect("invariant: JSON values serialize");
        std::fs::write(path, text + "\n").unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let text = render(&rows, extra.is_some());
    std::fs::write(&out, text).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    eprintln!("wrote {}", out.display());
}

/// Prints on stderr each stage whose outcome is not what the manifest expects.
fn report_surprises(e: &Entry, o: &Outcome) {
    let stages = [
        ("import", Some(o.import.as_str()), e.expect_import.as_deref()),
        ("compile", o.compile.as_deref(), e.expect_compile.as_deref()),
        ("crossbar", o.crossbar.as_deref(), e.expect_crossbar.as_deref()),
    ];
    for (stage, actual, expected) in stages {
        if !matches_expected(actual, expected) {
            eprintln!("  {}: {stage}: manifest expects {expected:?}, got {actual:?}", e.id);
        }
    }
}

/// The first `n` characters of `s`, one line, with `|` escaped for a Markdown table.
fn short(s: &str, n: usize) -> String {
    let mut t: String = s.chars().take(n).collect();
    if s.chars().count() > n {
        t.push('…');
    }
    t.replace('|', "\\|").replace('\n', " ")
}

fn agreement_cell(a: Option<&Agreement>) -> String {
    match a {
        None => "—".into(),
        Some(Agreement { top1: Some((k, n)), rel }) => format!("top-1 {k}/{n}, rel {rel:.1e}"),
        Some(Agreement { top1: None, rel }) => format!("rel {rel:.1e}"),
    }
}

fn stage_cell(s: Option<&str>) -> String {
    match s {
        None => "—".into(),
        Some("ok") => "ok".into(),
        Some(other) => short(other, 60),
    }
}

fn percent(k: usize, n: usize) -> String {
    if n == 0 {
        "—".into()
    } else {
        format!("{:.1} % ({k}/{n})", 100.0 * k as f64 / n as f64)
    }
}

/// The whole page.
fn render(rows: &[(Entry, Option<Outcome>)], extra: bool) -> String {
    let mut s = String::new();
    let present: Vec<(&Entry, &Outcome)> =
        rows.iter().filter_map(|(e, o)| o.as_ref().map(|o| (e, o))).collect();
    let _ = writeln!(
        s,
        "# Model coverage\n\n\
         What cimc does with every model of the corpus of real exports (issue 19): files taken \
         unchanged from public repositories, exported by {} exporters. Generated by \
         `cargo run --release -p cimc-examples --bin model_coverage -- --extra-dir DIR` from \
         `tests/data/corpus/corpus.toml` (provenance, licences and expected outcomes; \
         `tests/tests/corpus.rs` holds the vendored models to them); do not edit by hand.\n\n\
         - **import**: the ONNX import and the float interpreter on a seeded input, against the \
         reference outputs (onnxruntime 1.32 with graph optimizations off, the onnx package's \
         reference evaluator for ops onnxruntime no longer implements, or qonnx's executor for \
         QONNX/FINN models; `scripts/corpus_refs.py`). *matches*: every output within \
         {FLOAT_TOLERANCE:.0e} of the reference by max |cimc − ref| / max |ref|; *runs*: there is \
         no reference.\n\
         - **compile W8A8**: `cimc compile --calib` (8-bit weights and activations, calibrated on \
         the seeded input), then the program run on that input; *program* is its agreement with \
         the float reference: top-1 agreement for `[N, C]` outputs, and the relative error.\n\
         - **crossbar**: the same with `--target isaac`, the program's crossbar arithmetic.\n",
        count_exporters(rows)
    );
    let _ = writeln!(
        s,
        "The `caffe2_*` models are the onnx package's *light* versions of the onnx-caffe2 model \
         zoo: the same graphs with every weight made by a `ConstantOfShape` node, so their \
         outputs are degenerate and they test the import and the pipeline, not accuracy. Not \
         in the corpus yet: MXNet, paddle2onnx and PyTorch's dynamo exporter, whose public test \
         models (onnx/models, microsoft/onnxscript's testdata) are Git LFS objects.\n"
    );
    totals(&mut s, rows, &present);
    table(&mut s, rows, extra);
    refusals(&mut s, &present);
    provenance(&mut s, rows);
    s
}

fn count_exporters(rows: &[(Entry, Option<Outcome>)]) -> usize {
    let mut families: Vec<String> = rows
        .iter()
        .map(|(e, _)| e.exporter.split([' ', '(']).next().unwrap_or_default().to_string())
        .collect();
    families.sort();
    families.dedup();
    families.len()
}

fn totals(s: &mut String, rows: &[(Entry, Option<Outcome>)], present: &[(&Entry, &Outcome)]) {
    let n = present.len();
    let with_ref = present
        .iter()
        .filter(|(e, _)| !e.reference.as_deref().is_some_and(|r| r.starts_with("none")))
        .count();
    let matching = present.iter().filter(|(_, o)| o.import == "matches").count();
    let importing =
        present.iter().filter(|(_, o)| ["matches", "runs"].contains(&o.import.as_str())).count();
    let compiled: Vec<_> = present.iter().filter(|(_, o)| o.compile.is_some()).collect();
    let compiling = compiled.iter().filter(|(_, o)| o.compile.as_deref() == Some("ok")).count();
    let crossbar = present.iter().filter(|(_, o)| o.crossbar.as_deref() == Some("ok")).count();
    let bugs: Vec<&str> = present
        .iter()
        .filter(|(_, o)| {
            [Some(o.import.as_str()), o.compile.as_deref(), o.crossbar.as_deref()]
                .iter()
                .flatten()
                .any(|x| x.starts_with("internal: ") || x.starts_with("panic: "))
        })
        .map(|(e, _)| e.id.as_str())
        .collect();
    let _ = writeln!(s, "## Totals\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(
        s,
        "| models in the corpus | {} ({} vendored) |",
        rows.len(),
        rows.iter().filter(|(e, _)| e.vendored).count()
    );
    let _ = writeln!(s, "| present here | {n} |");
    let _ = writeln!(
        s,
        "| import and match the reference (of those with one) | {} |",
        percent(matching, with_ref)
    );
    let _ = writeln!(s, "| import and run (all present) | {} |", percent(importing, n));
    let _ = writeln!(
        s,
        "| compile to a W8A8 program that runs (all present) | {} |",
        percent(compiling, n)
    );
    let _ = writeln!(s, "| compile for isaac and run (all present) | {} |", percent(crossbar, n));
    let _ = writeln!(
        s,
        "| internal errors or panics (exit 2) | {} |\n",
        if bugs.is_empty() {
            "none".into()
        } else {
            format!("{}: {}", bugs.len(), bugs.join(", "))
        }
    );
    if compiled.len() < n {
        let _ = writeln!(
            s,
            "Compile percentages count a model whose import failed, or whose stages were skipped \
             (`--quick`), as not compiling.\n"
        );
    }
}

fn table(s: &mut String, rows: &[(Entry, Option<Outcome>)], extra: bool) {
    let _ = writeln!(s, "## Models\n");
    let _ = writeln!(
        s,
        "| model | exporter | kind | opset | import | float vs ref (max rel) | compile W8A8 | program | crossbar (isaac) | crossbar program |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for (e, o) in rows {
        let name =
            if e.vendored { format!("`{}`", e.id) } else { format!("`{}` (not vendored)", e.id) };
        let head = format!("| {name} | {} | {} | {} ", short(&e.exporter, 60), e.kind, e.opset);
        let Some(o) = o else {
            let why = if extra {
                "not present in --extra-dir"
            } else {
                "not present locally (give --extra-dir)"
            };
            let _ = writeln!(s, "{head}| {why} | | | | | |");
            continue;
        };
        let import = match o.import.as_str() {
            "matches" | "runs" | "differs" => o.import.clone(),
            other => short(other, 70),
        };
        let _ = writeln!(
            s,
            "{head}| {import} | {} | {} | {} | {} | {} |",
            o.float_rel.map_or("—".into(), |r| format!("{r:.1e}")),
            stage_cell(o.compile.as_deref()),
            agreement_cell(o.compile_agreement.as_ref()),
            stage_cell(o.crossbar.as_deref()),
            agreement_cell(o.crossbar_agreement.as_ref()),
        );
    }
    let _ = writeln!(s);
}

fn refusals(s: &mut String, present: &[(&Entry, &Outcome)]) {
    let _ =
        writeln!(s, "## Every refusal and its reason\n\n(Messages past 400 characters are cut.)\n");
    for (e, o) in present {
        let stages = [
            ("import", Some(o.import.as_str())),
            ("compile W8A8", o.compile.as_deref()),
            ("crossbar", o.crossbar.as_deref()),
        ];
        for (stage, r) in stages {
            if let Some(r) = r.filter(|r| !["matches", "runs", "ok"].contains(r)) {
                let _ = writeln!(s, "- `{}` ({stage}): {}", e.id, short(r, 400));
            }
        }
    }
    let _ = writeln!(s);
}

fn provenance(s: &mut String, rows: &[(Entry, Option<Outcome>)]) {
    let _ = writeln!(s, "## Provenance\n");
    let _ = writeln!(
        s,
        "| model | producer (as written) | repository | path | commit | licence | bytes | sha256 |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for (e, _) in rows {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | `{}` | {} | {} | {} | {}… |",
            e.id,
            short(&e.producer, 40),
            e.repo,
            e.path,
            &e.commit[..e.commit.len().min(10)],
            e.license,
            e.bytes,
            &e.sha256[..16]
        );
    }
    let _ = writeln!(
        s,
        "\nThe seeded inputs and reference outputs of each model are in `ref/<id>/` beside it \
         (`scripts/corpus_refs.py`); other opset domains a model imports: {}.",
        rows.iter()
            .filter(|(e, _)| !e.domains.is_empty())
            .map(|(e, _)| format!("`{}` ({})", e.id, e.domains.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    );
}
