//! Bad text gives `IrError::Parse` with the line, column and a useful message; garbage (random,
//! truncated or mutated text, corrupt data files) gives an error, never a panic.

mod common;

use cimc_ir::{parse, parse_with_data, write_data, IrError};
use proptest::prelude::*;

const HEAD: &str = "graph g {\n  input %x : f32[1,4]\n";

/// (text, line, column, words the message must contain)
fn bad_cases() -> Vec<(String, usize, usize, &'static str)> {
    let body = |s: &str| format!("{HEAD}{s}\n}}\n");
    vec![
        ("".into(), 1, 1, "expected 'graph' at the start of the file, found end of file"),
        ("grph g {}".into(), 1, 1, "expected 'graph' at the start of the file, found 'grph'"),
        ("graph g {\n  input %x f32[1]\n}".into(), 2, 12, "expected ':' after value name, found 'f32'"),
        (body("  %y : f32[1,4] = convv(%x)"), 3, 19, "unknown op 'convv'"),
        (body("  %y : f32[1,4] = relu(%x3)"), 3, 24, "unknown value %x3 (used before definition)"),
        (body("  %y : f32[1,4] = relu(%y)"), 3, 24, "unknown value %y (a result of this node)"),
        (body("  %y : f23[1,4] = relu(%x)"), 3, 8, "unknown dtype 'f23' (expected one of f32, f64"),
        (body("  %y : f32[1,-4] = relu(%x)"), 3, 14, "expected a dimension (a non-negative integer), found '-4'"),
        (body("  %y : f32[1,4] relu(%x)"), 3, 17, "expected '=' after the node's results, found 'relu'"),
        (body("  %x : f32[1,4] = relu(%x)"), 3, 3, "value %x is already defined (line 2)"),
        (body("  const @x : f32[1] = [1]"), 3, 9, "value @x is already defined (line 2)"),
        (body("  const @w : f32[17] = data"), 3, 24, "constant @w has its data in a separate file; none given"),
        (body("  const @w : f32[2,3] = [1, 2, 3, 4, 5]"), 3, 25, "constant @w : f32[2,3] needs 6 values, found 5"),
        (body("  const @w : u8[2] = [1, 300]"), 3, 26, "'300' is not a u8 value"),
        (body("  const @w : bool[1] = [yes]"), 3, 25, "'yes' is not a bool value"),
        (body("  const @w : f32[1] = [1.5.2]"), 3, 24, "'1.5.2' is not a f32 value"),
        (body("  const @w : f32[1] = ones"), 3, 23, "expected constant data: '[...]', 'zeros', 'splat(v)' or 'data', found 'ones'"),
        (body("  const @w : f32[100000,100000] = zeros"), 3, 35, "too large to generate"),
        (body("  const %w : f32[1] = [1]"), 3, 9, "constants are named with '@', not '%'"),
        (body("  input @w : f32[1]"), 3, 9, "graph inputs are named with '%', not '@'"),
        (body("  %y : f32[1,4] = relu(@x)"), 3, 24, "@x is not a constant: write %x"),
        (body("  const @c : f32[] = [1]\n  %y : f32[] = relu(%c)"), 4, 21, "%c is a constant: write @c"),
        (body("  %y : f32[1,4] = relu(%x"), 4, 1, "expected ',' or ')' in the argument list, found '}'"),
        (body("  %y : f32[1,4] = conv(%x) {kernel=[1], strides=[1], dilations=[1], pads=[0, 0]}"), 3, 19, "op 'conv' needs attribute 'group'"),
        (body("  %y : f32[1,4] = relu(%x) {alpha=1}"), 3, 29, "op 'relu' has no attribute 'alpha'"),
        (body("  %y : f32[1,4] = flatten(%x) {axis=1, axis=2}"), 3, 40, "duplicate attribute 'axis'"),
        (body("  %y : f32[1,4] = flatten(%x) {axis=-1}"), 3, 37, "attribute 'axis' must be a non-negative integer, found '-1'"),
        (body("  %y : f32[1,4] = flatten(%x) {axis=[1]}"), 3, 37, "attribute 'axis' must be a non-negative integer, found a list"),
        (body("  %y : f32[1,4] = transpose(%x) {perm=1}"), 3, 39, "attribute 'perm' must be a list [...] of non-negative integers"),
        (body("  %y : f32[1,4] = pad(%x) {mode=mirror, pads=[0, 0, 0, 0]}"), 3, 33, "unknown pad mode 'mirror'"),
        (body("  %y : f32[1,4] = cast(%x) {to=float}"), 3, 32, "unknown dtype 'float'"),
        (body("  %y : f32[1,4] = leaky_relu(%x) {alpha=fast}"), 3, 41, "attribute 'alpha' must be a number (f32)"),
        (body("  %y : f32[1,4] = slice(%x) {axes=[0, 1], starts=[0], ends=[1], steps=[1]}"), 3, 19, "slice: axes, starts, ends and steps must have the same length"),
        (body(&format!("  %y : f32[1,4] = relu(%x) {{a={}}}", "[".repeat(100))), 3, 48, "attribute lists nested too deeply"),
        (body("  %y : f32[1,4] = relu(%x) \"unterminated"), 3, 41, "newline in a string (write \\n)"),
        ("graph g {\n  %y : f32[1,4] = relu() \"abc".into(), 2, 26, "unterminated string"),
        (body("  %y : f32[1,4] = relu(%x) \"bad \\q escape\""), 3, 33, "unknown escape in a string"),
        (body("  %y : f32[1,4] = relu(%x) \"bad \\u{110000}\""), 3, 33, "bad \\u{...} escape"),
        (body("  %\"\" : f32[1,4] = relu(%x)"), 3, 3, "a value name cannot be empty"),
        (body("  % y : f32[1,4] = relu(%x)"), 3, 5, "expected a name after '%', found 'y'"),
        (body("  %y : f32[1,4] q(bits=4, unsigned, scale=[0.1], zp=[0], axes=1) = relu(%x)"), 3, 58, "expected 'axis=' in q(...), found 'axes'"),
        (body("  %y : f32[1,4] q(bits=4, maybe, scale=[0.1], zp=[0]) = relu(%x)"), 3, 27, "expected 'signed' or 'unsigned', found 'maybe'"),
        (body("  %y : f32[1,4] q(bits=4, signed, scale=[0.1], zp=[0.5]) = relu(%x)"), 3, 52, "expected an i32 zero point, found '0.5'"),
        (body("  output %nope"), 3, 10, "unknown value %nope (used before definition)"),
        (body("  bogus %x"), 3, 3, "expected a statement (input, const, output or a node), found 'bogus'"),
        (format!("{HEAD}  %y : f32[1,4] = relu(%x)\n"), 4, 1, "unexpected end of file: missing '}' closing the graph"),
        (format!("{HEAD}}}\ngraph h {{}}"), 4, 1, "unexpected text after the closing '}'"),
        (format!("{HEAD}  %y : f32[1,4] = relu(%x)  // a comment with \"quotes\"\n  %z : f32[1,4] = relu(%w)\n}}"), 4, 24, "unknown value %w"),
    ]
}

#[test]
fn bad_text_gives_positioned_errors() {
    let mut failures = Vec::new();
    for (text, line, col, words) in bad_cases() {
        match parse(&text) {
            Err(IrError::Parse { line: l, col: c, msg })
                if l == line && c == col && msg.contains(words) => {}
            other => {
                failures.push(format!("{text:?}\n  want {line}:{col} {words:?}\n  got  {other:?}"))
            }
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn error_display_has_line_and_column() {
    let e = parse("graph g {\n  %y : f32[1] = convv()\n}").expect_err("unknown op");
    assert_eq!(e.to_string(), "line 2, column 17: unknown op 'convv'");
}

/// Checks one input: parse must not panic, and what parses must round-trip.
fn no_panic(text: &str) {
    if let Ok(g) = parse(text) {
        let printed = g.to_string();
        let back = parse_with_data(&printed, Some(&write_data(&g)))
            .unwrap_or_else(|e| panic!("printed form does not parse: {e}\n{printed}"));
        assert_eq!(back.to_string(), printed);
    }
}

/// Every prefix of every case, and every case with one character deleted, duplicated or
/// replaced by a character that matters to the grammar.
#[test]
fn truncated_and_mutated_cases_do_not_panic() {
    let subst =
        ['"', '%', '@', '[', ']', '(', ')', '{', '}', ',', '=', ':', '-', '9', '\\', '\n', 'x'];
    for (_, text) in common::cases() {
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        for &i in &bounds {
            no_panic(&text[..i]);
        }
        for w in bounds.windows(2) {
            let (a, b) = (w[0], w[1]);
            no_panic(&format!("{}{}", &text[..a], &text[b..]));
            // A sample of the duplications and substitutions keeps the test fast.
            if a % 3 == 0 {
                no_panic(&format!("{}{}", &text[..b], &text[a..]));
            }
            for (k, c) in subst.iter().enumerate() {
                if (a + k) % 11 == 0 {
                    no_panic(&format!("{}{c}{}", &text[..a], &text[b..]));
                }
            }
        }
    }
}

/// Tokens of the grammar, glued at random.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("graph".to_string()),
        Just("input".to_string()),
        Just("const".to_string()),
        Just("output".to_string()),
        Just("q(bits=4, signed, scale=[1.0], zp=[0])".to_string()),
        Just("relu".to_string()),
        Just("conv".to_string()),
        Just("data".to_string()),
        Just("zeros".to_string()),
        Just("splat".to_string()),
        Just("f32".to_string()),
        Just("bool".to_string()),
        Just("%x".to_string()),
        Just("@c".to_string()),
        Just("\"s\\\"".to_string()),
        Just("//".to_string()),
        "[{}()\\[\\],:=%@\" \n]",
        "-?[0-9]{1,25}(\\.[0-9]+)?(e-?[0-9]+)?",
        "[a-z_]{1,8}",
        "\\PC{1,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_token_soup_does_not_panic(tokens in proptest::collection::vec(token(), 0..60)) {
        no_panic(&format!("graph g {{\n{}\n}}", tokens.join(" ")));
        no_panic(&tokens.join(""));
    }

    #[test]
    fn random_data_files_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = cimc_ir::read_data(&bytes);
        let mut with_magic = b"CIMCDATA\x01\0\0\0".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = cimc_ir::read_data(&with_magic);
    }
}
