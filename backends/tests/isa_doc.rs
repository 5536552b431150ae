//! `docs/isa.md` is generated from the instruction definitions; this test fails when it is stale.
//! `CIMC_BLESS=1 cargo test -p cimc-backends --test isa_doc` rewrites it.

use cimc_backends::isa::doc::{isa_markdown, REGENERATE};
use std::path::Path;

#[test]
fn isa_doc_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/isa.md");
    let want = isa_markdown();
    if std::env::var_os("CIMC_BLESS").is_some() {
        std::fs::write(&path, &want).expect("cannot write docs/isa.md");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()));
        panic!(
            "docs/isa.md is stale (first difference at line {}); regenerate it with `{REGENERATE}`",
            line + 1
        );
    }
}
