//! Property tests of the instruction encodings: binary and text round trips, and decoders that
//! return errors (never panic) on arbitrary input.

use cimc_backends::isa::asm::{parse_line, parse_program, print, print_program};
use cimc_backends::isa::{decode, decode_all, encode, encode_all, Instr, INSTRS, WIDTH};
use proptest::prelude::*;

/// A field value: often an end of its range, otherwise anywhere in it.
fn value(lo: i64, hi: i64) -> impl Strategy<Value = i64> {
    prop_oneof![1 => Just(lo), 1 => Just(hi), 4 => lo..=hi]
}

/// A valid instruction: any opcode, every field in its range.
fn instr() -> impl Strategy<Value = Instr> {
    (0..INSTRS.len()).prop_flat_map(|k| {
        let info = &INSTRS[k];
        let fields: Vec<_> = info.fields.iter().map(|f| value(f.min, f.max)).collect();
        fields.prop_map(move |v| {
            Instr::from_values(info.opcode, &v).expect("values in range form an instruction")
        })
    })
}

/// A word with a valid opcode and arbitrary other bytes (reserved bytes mostly zero, so that
/// the field range checks are reached).
fn word() -> impl Strategy<Value = Vec<u8>> {
    (0..INSTRS.len(), prop::collection::vec(any::<u8>(), WIDTH - 1), any::<bool>()).prop_map(
        |(k, rest, clear)| {
            let mut w = vec![INSTRS[k].opcode];
            w.extend(rest);
            if clear {
                for b in &mut w[INSTRS[k].used_bytes()..] {
                    *b = 0;
                }
            }
            w
        },
    )
}

/// Text that looks like assembly: mnemonics, field names, `=`, numbers, comments, noise.
fn asm_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(INSTRS.iter().map(|i| i.mnemonic).collect::<Vec<_>>())
            .prop_map(str::to_string),
        prop::sample::select(
            INSTRS.iter().flat_map(|i| i.fields.iter().map(|f| f.name)).collect::<Vec<_>>()
        )
        .prop_map(|f| format!("{f}=")),
        any::<i64>().prop_map(|v| v.to_string()),
        Just("=".to_string()),
        Just(";".to_string()),
        Just("\n".to_string()),
        Just("0x".to_string()),
        Just("-".to_string()),
        Just("offset".to_string()),
        "\\PC{0,3}",
    ];
    prop::collection::vec((token, prop::sample::select(vec!["", " ", "\t"])), 0..24)
        .prop_map(|ts| ts.into_iter().map(|(t, sep)| t + sep).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn binary_round_trip(i in instr()) {
        prop_assert!(i.validate().is_ok());
        let w = encode(&i);
        prop_assert_eq!(w[0], i.opcode());
        prop_assert_eq!(decode(&w, 0).unwrap(), i);
        prop_assert_eq!(encode(&decode(&w, 0).unwrap()), w);
    }

    #[test]
    fn list_round_trip(is in prop::collection::vec(instr(), 0..20)) {
        let bytes = encode_all(&is);
        prop_assert_eq!(bytes.len(), is.len() * WIDTH);
        let back = decode_all(&bytes).unwrap();
        prop_assert_eq!(&back, &is);
        prop_assert_eq!(encode_all(&back), bytes);
        let text = print_program(&is);
        prop_assert_eq!(parse_program(&text).unwrap(), is);
    }

    #[test]
    fn text_round_trip(i in instr()) {
        let line = print(&i);
        prop_assert_eq!(parse_line(&line, 1).unwrap(), i);
        prop_assert_eq!(parse_line(&format!("  {line}  ; comment"), 7).unwrap(), i);
        prop_assert_eq!(i.to_string(), line);
    }

    #[test]
    fn words_that_decode_reencode_to_themselves(w in word()) {
        if let Ok(i) = decode(&w, 0) {
            prop_assert!(i.validate().is_ok());
            prop_assert_eq!(encode(&i).to_vec(), w);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200),
                                index in any::<usize>()) {
        if let Ok(is) = decode_all(&bytes) {
            prop_assert_eq!(encode_all(&is), bytes.clone());
        }
        let _ = decode(&bytes, index);
        let _ = decode(&bytes, index % 10);
    }

    #[test]
    fn random_text_never_panics(text in "\\PC*") {
        let _ = parse_program(&text);
        let _ = parse_line(&text, 1);
    }

    #[test]
    fn asm_like_text_never_panics(text in asm_like()) {
        if let Ok(is) = parse_program(&text) {
            // Whatever parses prints back to text that parses to the same instructions.
            prop_assert_eq!(parse_program(&print_program(&is)).unwrap(), is);
        }
        for (n, line) in text.lines().enumerate() {
            let _ = parse_line(line, n + 1);
        }
    }

    #[test]
    fn mutated_lines_never_panic(i in instr(), at in any::<prop::sample::Index>(),
                                 junk in "\\PC{0,4}") {
        let mut line = print(&i);
        let mut cut = at.index(line.len() + 1);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.insert_str(cut, &junk);
        if let Ok(j) = parse_line(&line, 1) {
            prop_assert!(j.validate().is_ok());
        }
    }
}
