//! The sidecar data file: exact layout, and validation of garbage (never a panic, errors with
//! byte offsets).

use cimc_ir::datafile::{read_data, write_data};
use cimc_ir::{parse, parse_with_data, Graph, IrError, TensorData};

fn graph_with(consts: &[(&str, TensorData)]) -> Graph {
    let mut g = Graph::new("g");
    for (name, d) in consts {
        g.add_const(*name, d.clone());
    }
    g
}

fn ramp(n: usize) -> TensorData {
    TensorData::from_f32(vec![n], &(0..n).map(|i| i as f32).collect::<Vec<_>>())
}

#[test]
fn layout_is_exact() {
    let g = graph_with(&[
        ("small", ramp(3)),
        ("w", ramp(17)),
        ("z", TensorData::from_f32(vec![20], &[0.0; 20])),
    ]);
    let file = write_data(&g);
    let mut want = Vec::new();
    want.extend_from_slice(b"CIMCDATA");
    want.extend_from_slice(&1u32.to_le_bytes()); // version
    want.extend_from_slice(&1u32.to_le_bytes()); // one entry: "small" is inline, "z" is zeros
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(b"w");
    want.push(3);
    want.extend_from_slice(b"f32");
    want.extend_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(&17u64.to_le_bytes());
    want.extend_from_slice(&68u64.to_le_bytes());
    assert_eq!(want.len(), 45);
    want.resize(48, 0); // data aligned to 16 bytes
    for i in 0..17 {
        want.extend_from_slice(&(i as f32).to_le_bytes());
    }
    assert_eq!(file, want);
    let entries = read_data(&file).expect("valid");
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].name.as_str(), entries[0].offset), ("w", 16));
    assert_eq!(entries[0].data, ramp(17));
}

fn sample_file() -> Vec<u8> {
    let g = graph_with(&[
        ("a", ramp(17)),
        ("b", TensorData::from_i64(vec![3, 6], &(0..18).collect::<Vec<_>>())),
        ("c", TensorData::from_bool(vec![17], &[true, false].repeat(9)[..17])),
    ]);
    write_data(&g)
}

fn other_msg(r: Result<Vec<cimc_ir::datafile::DataEntry>, IrError>) -> String {
    match r {
        Err(IrError::Other(m)) => m,
        other => panic!("expected IrError::Other, got {other:?}"),
    }
}

#[test]
fn every_truncation_is_an_error_with_an_offset() {
    let file = sample_file();
    for n in 0..file.len() {
        let msg = other_msg(read_data(&file[..n]));
        assert!(msg.starts_with("data file, byte "), "{msg}");
    }
}

#[test]
fn every_byte_flip_does_not_panic() {
    let file = sample_file();
    for i in 0..file.len() {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut f = file.clone();
            f[i] ^= x;
            let _ = read_data(&f);
        }
    }
}

/// A file with one entry whose header fields are given raw.
fn raw_entry(name: &[u8], dtype: &[u8], dims: &[u64], byte_len: u64, rank: Option<u32>) -> Vec<u8> {
    let mut f = b"CIMCDATA".to_vec();
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&(name.len() as u32).to_le_bytes());
    f.extend_from_slice(name);
    f.push(dtype.len() as u8);
    f.extend_from_slice(dtype);
    f.extend_from_slice(&rank.unwrap_or(dims.len() as u32).to_le_bytes());
    for d in dims {
        f.extend_from_slice(&d.to_le_bytes());
    }
    f.extend_from_slice(&byte_len.to_le_bytes());
    f
}

#[test]
fn bad_headers_have_clear_messages() {
    let msg = |f: &[u8]| other_msg(read_data(f));
    assert_eq!(msg(b"CIMCDAT"), "data file, byte 0: the magic needs 8 bytes, only 7 left");
    assert!(msg(b"NOTCIMC!\x01\0\0\0\0\0\0\0").contains("not a cimc data file"));
    assert_eq!(
        msg(b"CIMCDATA\x02\0\0\0\0\0\0\0"),
        "data file, byte 8: unsupported version 2 (this build reads 1)"
    );
    // A huge name length is checked against the bytes present before anything is allocated.
    let mut f = b"CIMCDATA\x01\0\0\0\x01\0\0\0".to_vec();
    f.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(msg(&f), "data file, byte 20: an entry's name needs 4294967295 bytes, only 0 left");
    assert!(msg(&raw_entry(b"\xFF", b"f32", &[1], 4, None)).contains("the name is not UTF-8"));
    assert!(msg(&raw_entry(b"w", b"f33", &[1], 4, None)).contains("entry 'w': unknown dtype 'f33'"));
    assert!(msg(&raw_entry(b"w", b"f32", &[], 4, Some(1000)))
        .contains("entry 'w': rank 1000 is larger than 64"));
    assert!(msg(&raw_entry(b"w", b"f32", &[2], 4, None))
        .contains("byte length 4 does not match f32[2] (8 bytes)"));
    let huge = raw_entry(b"w", b"f32", &[1 << 40, 1 << 40], 0, None);
    assert!(msg(&huge).contains("(more than usize::MAX bytes)"), "{}", msg(&huge));
    let mut f = raw_entry(b"w", b"f32", &[1 << 30], 1 << 32, None);
    f.resize(48, 0);
    assert_eq!(msg(&f), "data file, byte 48: the data needs 4294967296 bytes, only 0 left");
    let mut f = raw_entry(b"w", b"u8", &[1], 1, None);
    f.resize(48, 0);
    f[47] = 1;
    f.push(9);
    assert!(msg(&f).contains("entry 'w': alignment padding is not zero"));
    let mut f = sample_file();
    f.push(0);
    assert!(msg(&f).ends_with("1 bytes after the last entry"));
}

#[test]
fn duplicate_entries_are_rejected() {
    let mut g = graph_with(&[("a", ramp(17))]);
    let b = g.add_const("b", ramp(18));
    g.value_mut(b).name = "a".into();
    let msg = other_msg(read_data(&write_data(&g)));
    assert!(msg.contains("entry 'a': duplicate name (first at byte 16)"), "{msg}");
}

#[test]
fn text_and_data_must_agree() {
    let g = graph_with(&[("a", ramp(17)), ("b", ramp(18))]);
    let text = g.to_string();
    let data = write_data(&g);
    assert!(parse_with_data(&text, Some(&data)).is_ok());

    // The text refers to an entry the file lacks.
    let only_a = write_data(&graph_with(&[("a", ramp(17))]));
    match parse_with_data(&text, Some(&only_a)) {
        Err(IrError::Parse { line: 3, col: 24, msg }) => {
            assert_eq!(msg, "constant @b: the data file has no entry 'b'")
        }
        other => panic!("{other:?}"),
    }
    // The file has an entry the text does not use.
    let text_a = graph_with(&[("a", ramp(17))]).to_string();
    match parse_with_data(&text_a, Some(&data)) {
        Err(IrError::Other(m)) => {
            assert!(m.contains("entry 'b' is not used by any `= data` constant"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Same name, another type.
    let ints = TensorData::from_i32(vec![17], &(0..17).collect::<Vec<i32>>());
    let wrong = write_data(&graph_with(&[("a", ints), ("b", ramp(18))]));
    match parse_with_data(&text, Some(&wrong)) {
        Err(IrError::Parse { line: 2, msg, .. }) => {
            assert!(
                msg.contains("constant @a is declared f32[17] but the data file has i32[17]"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
    // No data file at all.
    let e = parse(&text).expect_err("needs the data file");
    assert_eq!(
        e.to_string(),
        "line 2, column 24: constant @a has its data in a separate file; none given"
    );
}
