//! Helpers the CLI test files share: the vendored data, running the `cimc` binary, and what a
//! success or a user error looks like.
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

/// A file under `tests/data/`.
pub fn data(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(p)
        .to_string_lossy()
        .into_owned()
}

/// A file by its path from the repository's root.
pub fn repo(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(p).to_string_lossy().into_owned()
}

pub fn cimc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimc")).args(args).output().expect("the cimc binary runs")
}

/// A fresh folder of this test process, named by `tag`.
pub fn tmp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cimc_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("the temp dir is writable");
    dir
}

/// The command succeeded.
pub fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The command succeeded and printed one JSON object.
pub fn ok_json(out: &Output) -> serde_json::Value {
    ok(out);
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// Exit status 1, a one-line `error: ` message without a panic, and every `needle` in it.
pub fn user_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "expected exit 1, got {:?}; stderr: {err}", out.status);
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks '{n}': {err}");
    }
}
