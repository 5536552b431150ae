//! `cimc eval`'s modes (top-1, format sweep, noise, worst case; `compiler/src/cli/eval.rs`): a
//! flag of one mode given with another is refused by the parser, naming both flags, and the
//! renamed flags keep their old spelling only where the meaning is the same.
//!
//! The parser decides before any file is read, so the files named here need not exist; a
//! command line the parser accepts fails on the missing model instead.

mod common;
use common::{cimc, user_error};
use std::process::Output;

const MODEL: &str = "/nonexistent-cimc-test/m.cimp";

/// `cimc eval` of a model that does not exist, with `extra` flags.
fn eval(extra: &[&str]) -> Output {
    let mut args = vec!["eval", MODEL, "--data", "x.npy", "--labels", "y.npy"];
    args.extend_from_slice(extra);
    cimc(&args)
}

/// The parser accepted the command line: the error is the missing model.
fn parsed(out: &Output) {
    user_error(out, &[MODEL]);
}

#[test]
fn flags_of_two_modes_are_refused_naming_both() {
    let cases: &[(&[&str], [&str; 2])] = &[
        // noise and the other modes
        (&["--noise", "n.toml", "--worst-case", "1"], ["--noise", "--worst-case"]),
        (&["--noise", "n.toml", "--compare", "f.onnx"], ["--noise", "--compare"]),
        (&["--noise", "n.toml", "--format", "bf16"], ["--noise", "--format"]),
        (&["--noise", "n.toml", "--multiplier", "exact"], ["--noise", "--multiplier"]),
        (&["--noise", "n.toml", "--svg", "p.svg"], ["--noise", "--svg"]),
        (&["--noise", "n.toml", "--cascade-wbits", "4"], ["--noise", "--cascade-wbits"]),
        (&["--noise", "n.toml", "--cascade-bits", "w.toml"], ["--noise", "--cascade-bits"]),
        // worst case and the other modes
        (&["--worst-case", "1", "--compare", "f.onnx"], ["--worst-case", "--compare"]),
        (&["--worst-case", "1", "--format", "bf16"], ["--worst-case", "--format"]),
        (&["--worst-case", "1", "--multiplier", "exact"], ["--worst-case", "--multiplier"]),
        (&["--worst-case", "1", "--cascade-wbits", "4"], ["--worst-case", "--cascade-wbits"]),
        (&["--worst-case", "1", "--cascade-bits", "w.toml"], ["--worst-case", "--cascade-bits"]),
        // the flags of one sampled mode with the other
        (&["--worst-case", "1", "--drift-time", "1s"], ["--worst-case", "--drift-time"]),
        (&["--worst-case", "1", "--sweep", "sigma_prog=0.1"], ["--worst-case", "--sweep"]),
        (&["--worst-case", "1", "--report", "r.json"], ["--worst-case", "--report"]),
        (&["--noise", "n.toml", "--sigma", "0.1"], ["--noise", "--sigma"]),
        (&["--noise", "n.toml", "--float", "f.onnx"], ["--noise", "--float"]),
        (&["--noise", "n.toml", "--pgd-steps", "2"], ["--noise", "--pgd-steps"]),
        // a mode's own flags without the flag that chooses it, with another mode's flags
        (&["--sigma", "0.1", "--compare", "f.onnx"], ["--sigma", "--compare"]),
        (&["--pgd-steps", "2", "--format", "bf16"], ["--pgd-steps", "--format"]),
        (&["--float", "f.onnx", "--multiplier", "exact"], ["--float", "--multiplier"]),
        (&["--drift-time", "1s", "--compare", "f.onnx"], ["--drift-time", "--compare"]),
        (&["--report", "r.json", "--cascade-wbits", "4"], ["--report", "--cascade-wbits"]),
        (&["--sweep", "sigma_prog=0.1", "--svg", "p.svg"], ["--sweep", "--svg"]),
        (&["--sigma", "0.1", "--drift-time", "1s"], ["--sigma", "--drift-time"]),
        // the cascade's widths and the other arithmetic
        (&["--cascade-wbits", "4", "--format", "bf16"], ["--cascade-wbits", "--format"]),
        (&["--cascade-wbits", "4", "--multiplier", "exact"], ["--cascade-wbits", "--multiplier"]),
        (&["--cascade-bits", "w.toml", "--format", "bf16"], ["--cascade-bits", "--format"]),
        (
            &["--cascade-bits", "w.toml", "--multiplier", "exact"],
            ["--cascade-bits", "--multiplier"],
        ),
    ];
    for (flags, names) in cases {
        let out = eval(flags);
        user_error(&out, &["cannot be used with", names[0], names[1]]);
    }
}

#[test]
fn flags_of_a_mode_not_chosen_are_refused() {
    // (flags, the flag given, the mode it needs)
    let cases: &[(&[&str], &str, &str)] = &[
        (&["--trials", "3"], "--trials", "--noise <FILE>|--worst-case <K>"),
        (&["--trials", "3", "--compare", "f.onnx"], "--trials", "--noise <FILE>|--worst-case <K>"),
        (&["--seed", "3"], "--seed", "--noise <FILE>|--worst-case <K>"),
        (&["--drift-time", "1s"], "--drift-time", "--noise"),
        (&["--sweep", "sigma_prog=0.1"], "--sweep", "--noise"),
        (&["--report", "r.json"], "--report", "--noise"),
        (&["--sigma", "0.1"], "--sigma", "--worst-case"),
        (&["--float", "f.onnx"], "--float", "--worst-case"),
        (&["--pgd-steps", "2"], "--pgd-steps", "--worst-case"),
    ];
    for (flags, given, needed) in cases {
        user_error(&eval(flags), &["required arguments were not provided", given, needed]);
    }
}

#[test]
fn each_mode_alone_is_accepted() {
    parsed(&eval(&[]));
    parsed(&eval(&["--compare", "f.onnx", "--format", "bf16"]));
    parsed(&eval(&["--format", "bf16", "--format", "fp16", "--svg", "p.svg"]));
    parsed(&eval(&["--cascade-wbits", "4", "--cascade-bits", "w.toml", "--compare", "f.onnx"]));
    let noise = ["--noise", "n.toml", "--trials", "2", "--seed", "1", "--drift-time", "1s"];
    parsed(&eval(&noise));
    parsed(&eval(&["--noise", "n.toml", "--sweep", "sigma_prog=0.1", "--report", "r.json"]));
    let worst = ["--worst-case", "1,2", "--sigma", "0.1", "--float", "f.onnx", "--pgd-steps", "2"];
    parsed(&eval(&worst));
    parsed(&eval(&["--worst-case", "1", "--trials", "2", "--seed", "5", "--svg", "p.svg"]));
}

#[test]
fn renamed_flags_keep_their_old_spelling_only_for_the_same_meaning() {
    // Same meaning, new name: the old spelling is a hidden alias.
    parsed(&eval(&["--cascade-wbits", "4", "--wbits-file", "w.toml"]));
    parsed(&eval(&["--worst-case", "1", "--worst-trials", "2", "--worst-seed", "3"]));
    parsed(&eval(&["--worst-case", "1", "--worst-svg", "p.svg"]));
    // `--wbits` is the width `compile` quantizes at: on `eval` and `run` it is refused, naming
    // the flag that derives a width from a program's own.
    user_error(&eval(&["--wbits", "4"]), &["--wbits", "--cascade-wbits"]);
    let run = cimc(&["run", MODEL, "--input", "x.npy", "--wbits", "4"]);
    user_error(&run, &["--wbits", "--cascade-wbits"]);
    // ... and the help lists only the new names.
    let help = cimc(&["eval", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for new in ["--cascade-wbits", "--cascade-bits", "--trials", "--seed", "--svg"] {
        assert!(text.contains(new), "eval --help lacks {new}: {text}");
    }
    for old in ["--wbits ", "--wbits-file", "--worst-trials", "--worst-seed", "--worst-svg"] {
        assert!(!text.contains(old), "eval --help shows the old {old}: {text}");
    }
}
