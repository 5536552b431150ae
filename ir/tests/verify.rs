//! The verifier reports every problem of a graph, each naming its node (or the graph input,
//! constant or output concerned).

use cimc_ir::verify::{check_quant, verify_with};
use cimc_ir::{verify, DType, Graph, IrError, Op, QuantParams, TensorData, TensorType, ValueId};

fn f32t(shape: &[usize]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

fn errors(r: Result<(), IrError>) -> Vec<String> {
    match r {
        Err(IrError::Verify(v)) => v,
        other => panic!("expected IrError::Verify, got {other:?}"),
    }
}

/// An inference independent of `ir::infer`: unary ops keep their input type, `add` of different
/// shapes fails.
fn fake_infer(op: &Op, inputs: &[&TensorType], n: usize) -> Result<Vec<TensorType>, String> {
    match op {
        Op::Add if inputs[0].shape != inputs[1].shape => Err("shapes differ".into()),
        _ => Ok(vec![TensorType::new(inputs[0].dtype, inputs[0].shape.clone()); n]),
    }
}

fn quant(
    bits: u8,
    signed: bool,
    scale: Vec<f32>,
    zp: Vec<i32>,
    axis: Option<usize>,
) -> QuantParams {
    QuantParams { bits, signed, scale, zero_point: zp, axis }
}

#[test]
fn reports_every_problem_with_its_node() {
    let mut g = Graph::new("bad");
    let x = g.add_input("x", f32t(&[1, 4]));
    let q = quant(1, true, vec![-1.0], vec![0], None);
    g.add_input("qx", TensorType { dtype: DType::F32, shape: vec![2], quant: Some(q) });
    let c = g.add_const("c", TensorData::from_f32(vec![2], &[1.0, 2.0]));
    g.value_mut(c).ty = f32t(&[3]);
    let n1 = g.add_node("first", Op::Relu, vec![x], vec![("y1".into(), f32t(&[1, 4]))]);
    let y1 = g.node(n1).outputs[0];
    let n2 = g.add_node("second", Op::Relu, vec![y1], vec![("y2".into(), f32t(&[1, 4]))]);
    let y2 = g.node(n2).outputs[0];
    g.node_mut(n1).inputs = vec![y2]; // reads a value defined later
    g.add_node(
        "two",
        Op::Relu,
        vec![x],
        vec![("a".into(), f32t(&[1, 4])), ("b".into(), f32t(&[1, 4]))],
    );
    g.add_node("lonely_add", Op::Add, vec![x], vec![("s".into(), f32t(&[1, 4]))]);
    g.add_node("mismatch", Op::Add, vec![x, c], vec![("m".into(), f32t(&[1, 4]))]);
    g.add_node("wrong_type", Op::Relu, vec![x], vec![("w".into(), f32t(&[1, 3]))]);
    let per_ch = quant(4, false, vec![0.5; 3], vec![0, 16, 0], Some(1));
    let qt = TensorType { dtype: DType::U8, shape: vec![1, 4], quant: Some(per_ch) };
    g.add_node("bad_quant", Op::Identity, vec![x], vec![("q".into(), qt)]);
    g.add_node("ghost_reader", Op::Relu, vec![ValueId(999)], vec![("g".into(), f32t(&[1, 4]))]);
    let gone = g.add_node("gone", Op::Relu, vec![x], vec![("gone".into(), f32t(&[1, 4]))]);
    let gone_v = g.node(gone).outputs[0];
    g.add_node("orphan_reader", Op::Relu, vec![gone_v], vec![("o".into(), f32t(&[1, 4]))]);
    g.remove_node(gone);
    let n3 = g.add_node("dup", Op::Relu, vec![x], vec![("d".into(), f32t(&[1, 4]))]);
    let d = g.node(n3).outputs[0];
    g.value_mut(d).name = "y1".into();
    g.set_outputs(vec![y2, gone_v]);

    let errs = errors(verify_with(&g, &fake_infer));
    let want = [
        "graph input %qx: quant bits 1 is not in 2..=16 (or 32 for an i32 bias)",
        "graph input %qx: quant scale[0] = -1.0 is not finite and > 0",
        "constant @c: data is f32[2] but the type is f32[3]",
        "node 'dup' (relu): result %y1: name already used by node 'first' (relu): result %y1",
        "node 'first' (relu): input 0 %y2 is used before it is defined (by node 'second')",
        "node 'two' (relu): has 1 result(s), not 2",
        "node 'lonely_add' (add): takes 2 input(s), has 1",
        "node 'mismatch' (add): shapes differ",
        "node 'wrong_type' (relu): result %w is declared f32[1,3] but infers to f32[1,4]",
        "node 'bad_quant' (identity): result %q: quantization along axis 1 needs 4 scale(s), has 3",
        "node 'bad_quant' (identity): result %q: quantization along axis 1 needs 4 zero point(s), has 3",
        "node 'bad_quant' (identity): result %q: quant zero point[1] = 16 is outside the code range 0..=15",
        "node 'ghost_reader' (relu): input 0 is <bad value #999>",
        "node 'orphan_reader' (relu): input 0 %gone is defined by a removed node",
        "graph output 1 %gone is not defined",
    ];
    let missing: Vec<&str> =
        want.iter().copied().filter(|w| !errs.iter().any(|e| e == w)).collect();
    assert!(
        missing.is_empty(),
        "missing:\n  {}\ngot:\n  {}",
        missing.join("\n  "),
        errs.join("\n  ")
    );
    assert_eq!(errs.len(), want.len(), "unexpected extra errors:\n  {}", errs.join("\n  "));
    // The Display of the error lists them all.
    let shown = verify_with(&g, &fake_infer).expect_err("bad").to_string();
    assert!(shown.starts_with(&format!("{} verifier error(s):\n  ", want.len())), "{shown}");
}

/// With the real inference, an inference error is reported against its node.
#[test]
fn inference_errors_name_the_node() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32t(&[2, 3]));
    let y = g.add_input("y", f32t(&[4]));
    let n = g.add_node("Add_7", Op::Add, vec![x, y], vec![("z".into(), f32t(&[2, 3]))]);
    let z = g.node(n).outputs[0];
    g.set_outputs(vec![z]);
    let errs = errors(verify(&g));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("node 'Add_7' (add): "), "{errs:?}");
}

#[test]
fn a_good_graph_verifies() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32t(&[2, 3]));
    let c = g.add_const("c", TensorData::from_f32(vec![3], &[1.0, 2.0, 3.0]));
    let n = g.add_node("Add_0", Op::Add, vec![x, c], vec![("z".into(), f32t(&[2, 3]))]);
    let z = g.node(n).outputs[0];
    g.set_outputs(vec![z, c, x]);
    verify(&g).expect("valid");
    verify_with(&g, &fake_infer).expect_err("fake inference does not broadcast");
}

#[test]
fn quant_sanity() {
    let t = |dtype, shape: &[usize], q| TensorType { dtype, shape: shape.to_vec(), quant: Some(q) };
    let ok = [
        t(DType::U8, &[2], quant(8, false, vec![0.1], vec![255], None)),
        t(DType::I8, &[2], quant(8, true, vec![0.1], vec![-128], None)),
        t(DType::I8, &[3, 2], quant(2, true, vec![1.0, 2.0], vec![-2, 1], Some(1))),
        t(DType::U16, &[1], quant(16, false, vec![1e-30], vec![65535], None)),
        t(DType::I32, &[], quant(16, true, vec![3.0], vec![0], None)),
    ];
    for ty in &ok {
        assert_eq!(check_quant(ty), Vec::<String>::new(), "{ty}");
    }
    let cases = [
        (
            t(DType::U8, &[2], quant(4, true, vec![1.0], vec![0], None)),
            "4-bit signed codes do not fit u8",
        ),
        (
            t(DType::I8, &[2], quant(8, false, vec![1.0], vec![0], None)),
            "8-bit unsigned codes do not fit i8",
        ),
        (
            t(DType::I8, &[2], quant(17, true, vec![1.0], vec![0], None)),
            "quant bits 17 is not in 2..=16 (or 32 for an i32 bias)",
        ),
        (
            t(DType::Bool, &[2], quant(2, false, vec![1.0], vec![0], None)),
            "quantized storage must be an integer dtype (or f32 for an annotation), not bool",
        ),
        (
            t(DType::I8, &[2], quant(8, true, vec![1.0, 1.0], vec![0], None)),
            "per-tensor quantization needs 1 scale(s), has 2",
        ),
        (
            t(DType::I8, &[2], quant(8, true, vec![1.0], vec![], None)),
            "per-tensor quantization needs 1 zero point(s), has 0",
        ),
        (
            t(DType::I8, &[2], quant(8, true, vec![1.0], vec![0], Some(1))),
            "quant axis 1 is out of range for rank 1",
        ),
        (
            t(DType::I8, &[2], quant(8, true, vec![f32::INFINITY], vec![0], None)),
            "quant scale[0] = inf is not finite and > 0",
        ),
        (
            t(DType::I8, &[2], quant(8, true, vec![f32::NAN], vec![0], None)),
            "quant scale[0] = nan is not finite and > 0",
        ),
        (
            t(DType::I8, &[2], quant(8, true, vec![0.0], vec![0], None)),
            "quant scale[0] = 0.0 is not finite and > 0",
        ),
        (
            t(DType::I8, &[2], quant(3, true, vec![1.0], vec![4], None)),
            "quant zero point[0] = 4 is outside the code range -4..=3",
        ),
        (
            t(DType::U8, &[2], quant(0, false, vec![1.0], vec![0], None)),
            "quant bits 0 is not in 2..=16 (or 32 for an i32 bias)",
        ),
        (
            t(DType::I64, &[2], quant(255, true, vec![1.0], vec![0], None)),
            "quant bits 255 is not in 2..=16 (or 32 for an i32 bias)",
        ),
    ];
    for (ty, want) in &cases {
        let errs = check_quant(ty);
        assert_eq!(errs, vec![want.to_string()], "{ty}");
    }
}

#[test]
fn bool_constants_hold_0_or_1() {
    let mut g = Graph::new("g");
    let d = TensorData::from_raw(DType::Bool, vec![3], vec![0u8, 1, 2].into()).expect("3 bytes");
    g.add_const("m", d);
    assert_eq!(errors(verify(&g)), ["constant @m: bool element 2 is 2 (not 0 or 1)"]);
}
