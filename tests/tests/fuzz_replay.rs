//! Replays every fuzz seed and every crash input (`fuzz/seeds/<target>/`,
//! `fuzz/regressions/<target>/`) through its target's entry point in `cimc::fuzz_entry`, on
//! stable and without libFuzzer, so a decoder that panics or hangs on any of them fails CI.
//! The shared models and arrays in `../shared/` are replayed too when present.

use cimc::fuzz_entry::{self, Entry, TARGETS};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// libFuzzer's `-timeout` in docs/fuzzing.md: an input taking longer is a hang.
const HANG: Duration = Duration::from_secs(10);

fn fuzz_dir() -> PathBuf {
    cimc_tests::root().join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    v.sort();
    v
}

/// Outcome counts of replaying `inputs` through `entry`; panics and hangs are listed.
#[derive(Default)]
struct Tally {
    accepted: usize,
    refused: usize,
    failures: Vec<String>,
}

fn replay(target: &str, entry: Entry, inputs: &[PathBuf], tally: &mut Tally) {
    for p in inputs {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let start = Instant::now();
        let out = catch_unwind(AssertUnwindSafe(|| entry(&data)));
        let took = start.elapsed();
        match out {
            Ok(Ok(_)) => tally.accepted += 1,
            Ok(Err(msg)) => {
                tally.refused += 1;
                if msg.trim().is_empty() || msg.contains('\n') {
                    tally.failures.push(format!(
                        "{target} {}: the error is not one line: {msg:?}",
                        p.display()
                    ));
                }
            }
            Err(_) => tally.failures.push(format!("{target} {}: PANIC", p.display())),
        }
        if took > HANG {
            tally.failures.push(format!("{target} {}: took {took:?} (a hang)", p.display()));
        }
    }
}

#[test]
fn every_target_has_a_fuzz_target_file_and_seeds() {
    for (name, _) in TARGETS {
        let src = fuzz_dir().join(format!("fuzz_targets/{name}.rs"));
        let text = std::fs::read_to_string(&src).unwrap_or_else(|e| {
            panic!("{}: {e} (every entry point has a fuzz target)", src.display())
        });
        assert!(
            text.contains(&format!("fuzz_entry::{name}(")),
            "{} calls another entry",
            src.display()
        );
        assert!(!files(&fuzz_dir().join("seeds").join(name)).is_empty(), "no seeds for {name}");
        assert!(fuzz_entry::entry(name).is_some());
    }
    for p in files(&fuzz_dir().join("fuzz_targets")) {
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        assert!(fuzz_entry::entry(stem).is_some(), "{}: not in fuzz_entry::TARGETS", p.display());
    }
}

#[test]
fn seeds_and_crash_inputs_replay_without_panic_or_hang() {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for &(name, entry) in TARGETS {
        let mut t = Tally::default();
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        let crashes = files(&fuzz_dir().join("regressions").join(name));
        replay(name, entry, &seeds, &mut t);
        replay(name, entry, &crashes, &mut t);
        report.push(format!(
            "{name}: {} seeds, {} crash inputs: {} accepted, {} refused",
            seeds.len(),
            crashes.len(),
            t.accepted,
            t.refused
        ));
        // The seeds hold valid files of every format, and broken ones: an entry point that
        // accepts nothing or refuses nothing does not exercise its decoder.
        if t.accepted == 0 || t.refused == 0 {
            failures.push(format!("{name}: {} accepted, {} refused", t.accepted, t.refused));
        }
        failures.extend(t.failures);
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shared_models_and_arrays_replay() {
    let Some(shared) = cimc_tests::shared("shared_models_and_arrays_replay") else { return };
    let small = |p: &PathBuf| std::fs::metadata(p).is_ok_and(|m| m.len() <= 64 << 20);
    let ext = |dir: &str, e: &str| -> Vec<PathBuf> {
        files(&shared.join(dir))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == e))
            .filter(small)
            .collect()
    };
    let mut failures = Vec::new();
    for (target, inputs) in [("onnx_import", ext("models", "onnx")), ("npy", ext("data", "npy"))] {
        let mut t = Tally::default();
        let entry = fuzz_entry::entry(target).expect("a listed target");
        replay(target, entry, &inputs, &mut t);
        eprintln!(
            "{target}: {} shared files: {} accepted, {} refused",
            inputs.len(),
            t.accepted,
            t.refused
        );
        // Every shared file is a valid one.
        if t.refused != 0 {
            failures.push(format!("{target}: {} shared files refused", t.refused));
        }
        failures.extend(t.failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The first crash `program` found (docs/fuzzing.md): a buffer of codes wider than 32 bits made
/// `code_range` shift past the width of i32 (a panic with overflow checks, a wrong range
/// without). CI's release build has no overflow checks, so the refusal itself is checked.
#[test]
fn program_with_codes_wider_than_32_bits_is_refused() {
    let p = fuzz_dir().join("regressions/program/code-bits-shift-overflow.cimp");
    let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let e = fuzz_entry::program(&data).expect_err("must be refused");
    assert!(e.contains("-bit codes (1..=32 expected)"), "{e}");
}

/// `code_range` at the widths a program may hold, as plain i64 arithmetic says.
#[test]
fn code_range_at_every_width() {
    for bits in 1..=32u8 {
        let (lo, hi) = cimc_backends::arith::code_range(bits, true);
        assert_eq!((lo as i64, hi as i64), (-(1i64 << (bits - 1)), (1i64 << (bits - 1)) - 1));
        let (lo, hi) = cimc_backends::arith::code_range(bits, false);
        assert_eq!((lo as i64, hi as i64), (0, ((1i64 << bits) - 1).min(i32::MAX as i64)));
    }
}
