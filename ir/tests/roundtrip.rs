//! The text form round-trips: for every `.cir` file in `tests/cases/`, parse → print → parse
//! (with the data file) → print gives the same text and the same graph. The printed forms are
//! insta snapshots (`tests/snapshots/`); adding a case is dropping a `.cir` file there.

mod common;

use cimc_ir::parse::has_referenced_data;
use cimc_ir::{
    parse, parse_with_data, verify, write_data, ConvAttrs, DType, Graph, IrError, Op, PadMode,
    PoolAttrs, QuantParams, SliceAxis, TensorData, TensorType,
};

/// Prints `g`, reads it back with its data file, and checks that nothing changed. Returns the text.
fn check_roundtrip(g: &Graph) -> String {
    let text = g.to_string();
    let data = write_data(g);
    let back = parse_with_data(&text, Some(&data))
        .unwrap_or_else(|e| panic!("re-parse failed: {e}\n--- text ---\n{text}"));
    assert_eq!(back.to_string(), text, "print -> parse -> print differs");
    assert_eq!(write_data(&back), data, "data file differs after a round trip");
    common::assert_same_graph(g, &back);
    if has_referenced_data(g) {
        let e = parse(&text).expect_err("parse without the data file must fail");
        assert!(e.to_string().contains("has its data in a separate file; none given"), "{e}");
    } else {
        common::assert_same_graph(g, &parse(&text).expect("no data file needed"));
    }
    text
}

#[test]
fn cases_roundtrip() {
    insta::glob!("cases/*.cir", |path| {
        let src = std::fs::read_to_string(path).expect("readable case");
        let g = parse(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        insta::assert_snapshot!(check_roundtrip(&g));
    });
}

/// Every mnemonic of the op table (each member of a family too) is written by some case, so a
/// new op's text form is round-tripped.
#[test]
fn cases_cover_every_op() {
    let cases = common::cases();
    let missing: Vec<&str> = Op::mnemonics()
        .into_iter()
        .filter(|m| !cases.iter().any(|(_, src)| src.contains(&format!("= {m}("))))
        .collect();
    assert!(missing.is_empty(), "no case in tests/cases writes {missing:?}");
    let mut all = Op::mnemonics();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "two ops share a mnemonic");
}

/// The hand-written cases are well-typed: the verifier (with the real inference) accepts them.
#[test]
fn cases_verify() {
    for (name, src) in common::cases() {
        let g = parse(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Err(e) = verify(&g) {
            panic!("{name}: {e}");
        }
    }
}

/// The data file is deterministic and holds exactly the `= data` constants, in order.
#[test]
fn data_file_entries() {
    let (_, src) =
        common::cases().into_iter().find(|(n, _)| n == "constants.cir").expect("constants.cir");
    let g = parse(&src).expect("parses");
    let entries = cimc_ir::read_data(&write_data(&g)).expect("valid data file");
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "big_f32", "big_f64", "big_i8", "big_u8", "big_i16", "big_u16", "big_i32", "big_i64",
            "big_bool"
        ]
    );
    assert_eq!(write_data(&g), write_data(&parse(&src).expect("parses")));
}

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

/// A graph built through the API, not in canonical order (a constant added after the nodes),
/// with values the text cannot write by hand easily: NaN payloads, odd bool bytes, a node with
/// no results and one reading a value twice.
#[test]
fn built_graph_roundtrips() {
    let mut g = Graph::new("built");
    let x = g.add_input("x", f32t(&[1, 2, 5, 5]));
    let w =
        g.add_const("w", TensorData::from_f32(vec![3, 2, 1, 1], &[0.5, -0.25, 1.0, 2.0, 3.0, 4.0]));
    let conv = Op::Conv(ConvAttrs {
        kernel: vec![1, 1],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0, 0, 0, 0],
        group: 1,
        clamp: None,
    });
    let n0 = g.add_node("conv", conv, vec![x, w], vec![("y".into(), f32t(&[1, 3, 5, 5]))]);
    let y = g.node(n0).outputs[0];
    let sq = g.add_node("", Op::Mul, vec![y, y], vec![("sq".into(), f32t(&[1, 3, 5, 5]))]);
    let sq = g.node(sq).outputs[0];
    g.add_node("sink", Op::Identity, vec![sq], vec![]);
    let nan = f32::from_bits(0xFFC0_0001);
    let late = g.add_const("late", TensorData::from_f32(vec![3], &[nan, f32::NAN, -0.0]));
    let odd = TensorData::from_raw(DType::Bool, vec![3], bytes::Bytes::from(vec![0u8, 1, 7]));
    let odd = g.add_const("odd", odd.expect("3 bytes"));
    let q =
        QuantParams { bits: 3, signed: true, scale: vec![nan], zero_point: vec![9], axis: Some(7) };
    let qi = g.add_input("qi", TensorType { dtype: DType::F64, shape: vec![], quant: Some(q) });
    let pool = PoolAttrs {
        kernel: vec![2],
        strides: vec![1],
        dilations: vec![1],
        pads: vec![0, 1],
        ceil_mode: true,
        count_include_pad: true,
        storage_order: 255,
    };
    let ops = [
        Op::MaxPool(pool.clone()),
        Op::AveragePool(pool),
        Op::LeakyRelu { alpha: nan },
        Op::HardSigmoid { alpha: f32::INFINITY, beta: f32::MIN_POSITIVE },
        Op::Gemm { alpha: -0.0, beta: 1e30, trans_a: true, trans_b: false, clamp: None },
        Op::Pad { mode: PadMode::Wrap, pads: vec![i64::MIN, i64::MAX] },
        Op::Slice { axes: vec![SliceAxis { axis: 3, start: -1, end: i64::MIN, step: -9 }] },
        Op::Slice { axes: vec![] },
        Op::QuantizeLinear { axis: None, block_size: 3, saturate: false, to: DType::Bool },
        Op::DequantizeLinear { axis: Some(usize::MAX), block_size: usize::MAX },
        Op::Cast { to: DType::F64 },
        Op::Reshape { shape: vec![] },
    ];
    for (i, op) in ops.into_iter().enumerate() {
        g.add_node(format!("n{i}"), op, vec![late, odd], vec![(format!("o{i}"), f32t(&[0]))]);
    }
    g.set_outputs(vec![odd, sq, x, qi, odd]);
    let text = check_roundtrip(&g);
    // Canonical order: inputs, constants, nodes.
    let late_line = text.lines().position(|l| l.contains("@late")).expect("printed");
    let conv_line = text.lines().position(|l| l.contains("conv(")).expect("printed");
    assert!(late_line < conv_line, "{text}");
    assert!(text.contains("const @late : f32[3] = [0xFFC00001, nan, -0.0]"), "{text}");
    assert!(text.contains("const @odd : bool[3] = [false, true, 7]"), "{text}");
    assert!(text.contains("  identity(%sq)  \"sink\"\n"), "{text}");
    assert!(text.contains("%sq : f32[1,3,5,5] = mul(%y, %y)\n"), "{text}");
}

/// A removed node's results are not printed; a graph whose outputs are all constants or inputs
/// prints them with the right sigil.
#[test]
fn removed_nodes_are_not_printed() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32t(&[2]));
    let n = g.add_node("r", Op::Relu, vec![x], vec![("r".into(), f32t(&[2]))]);
    let c = g.add_const("c", TensorData::from_f32(vec![1], &[1.0]));
    g.remove_node(n);
    g.set_outputs(vec![c, x]);
    let text = check_roundtrip(&g);
    assert_eq!(
        text,
        "graph g {\n  input %x : f32[2]\n  const @c : f32[1] = [1.0]\n  output @c, %x\n}\n"
    );
}

#[test]
fn display_of_types() {
    let q = QuantParams {
        bits: 4,
        signed: false,
        scale: vec![0.02, 1e-9],
        zero_point: vec![0, 15],
        axis: Some(1),
    };
    let t = TensorType { dtype: DType::U8, shape: vec![1, 2], quant: Some(q) };
    assert_eq!(
        t.to_string(),
        "u8[1,2] q(bits=4, unsigned, scale=[0.02, 1e-9], zp=[0, 15], axis=1)"
    );
    assert_eq!(f32t(&[]).to_string(), "f32[]");
}

/// `parse` gives `IrError::Parse`; data file problems are other variants, never a panic.
#[test]
fn errors_have_positions() {
    match parse("graph g {\n  input %x f32[1]\n}") {
        Err(IrError::Parse { line: 2, col: 12, msg }) => {
            assert!(msg.starts_with("expected ':' after value name"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}
