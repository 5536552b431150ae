//! `lower` as data: every `tests/data/lower/*.cir` (a quantized graph) is lowered to the
//! interpreter program, whose text listing is an insta snapshot; the program also round-trips
//! through its binary form.

use cimc_backends::program::{listing::listing, lower::lower, Program};

#[test]
fn lower_cases() {
    insta::glob!("../data/lower", "*.cir", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let g = cimc_ir::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let p = lower(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(Program::from_bytes(&p.to_bytes()).unwrap(), p, "binary round trip");
        insta::with_settings!({omit_expression => true}, { insta::assert_snapshot!(listing(&p)) });
    });
}
