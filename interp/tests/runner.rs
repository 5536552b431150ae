//! The runner on small hand-built graphs: results equal node-by-node evaluation (fusion and
//! in-place updates change nothing, bit for bit), lifetimes, input checks, error naming.

mod common;

use cimc_interp::{eval_node, InterpError, Runner, Tensor};
use cimc_ir::{ConvAttrs, DType, Graph, Op, PoolAttrs, TensorData, TensorType, ValueDef, ValueId};
use common::*;
use std::collections::HashMap;

fn f32ty(shape: &[usize]) -> TensorType {
    TensorType::new(DType::F32, shape.to_vec())
}

fn cst(g: &mut Graph, name: &str, shape: &[usize], seed: u64) -> ValueId {
    let n = shape.iter().product();
    g.add_const(name, TensorData::from_f32(shape.to_vec(), &rand_vec(n, seed)))
}

fn node(g: &mut Graph, op: Op, ins: Vec<ValueId>, out: &[usize]) -> ValueId {
    let name = format!("n{}", g.node_count());
    let id = g.add_node(name.clone(), op, ins, vec![(format!("{name}_out"), f32ty(out))]);
    g.node(id).outputs[0]
}

/// Evaluates the graph node by node with `eval_node` (no fusion, no in-place updates).
fn eval_naive(g: &Graph, inputs: &[Tensor]) -> Vec<Tensor> {
    let mut env: HashMap<ValueId, Tensor> = HashMap::new();
    for (&v, t) in g.inputs().iter().zip(inputs) {
        env.insert(v, t.clone());
    }
    for (v, val) in g.values() {
        if let ValueDef::Const(d) = &val.def {
            env.insert(v, Tensor::from_data(d).unwrap());
        }
    }
    for (_, n) in g.nodes() {
        let ins: Vec<&Tensor> = n.inputs.iter().map(|v| &env[v]).collect();
        let outs = eval_node(&n.op, &ins, n.outputs.len()).unwrap();
        for (&o, t) in n.outputs.iter().zip(outs) {
            env.insert(o, t);
        }
    }
    g.outputs().iter().map(|v| env[v].clone()).collect()
}

fn conv3x3(stride: usize) -> Op {
    Op::Conv(ConvAttrs {
        kernel: vec![3, 3],
        strides: vec![stride; 2],
        dilations: vec![1, 1],
        pads: vec![1; 4],
        group: 1,
        clamp: None,
    })
}

/// A small residual CNN: conv-bn-relu, conv-bn + skip, relu, depthwise conv-clip, maxpool,
/// global pool, flatten, gemm.
fn resnet_like() -> Graph {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32ty(&[2, 3, 8, 8]));
    let w1 = cst(&mut g, "w1", &[4, 3, 3, 3], 1);
    let b1 = cst(&mut g, "b1", &[4], 2);
    let c1 = node(&mut g, conv3x3(1), vec![x, w1, b1], &[2, 4, 8, 8]);
    let bn = |g: &mut Graph, s: u64| -> Vec<ValueId> {
        let scale = cst(g, "s", &[4], s);
        let bias = cst(g, "b", &[4], s + 1);
        let mean = cst(g, "m", &[4], s + 2);
        let var = g.add_const("v", TensorData::from_f32(vec![4], &[0.5, 1.0, 1.5, 2.0]));
        vec![scale, bias, mean, var]
    };
    let p = bn(&mut g, 10);
    let n1 = node(&mut g, Op::BatchNorm { epsilon: 1e-5 }, [vec![c1], p].concat(), &[2, 4, 8, 8]);
    let r1 = node(&mut g, Op::Relu, vec![n1], &[2, 4, 8, 8]);
    let w2 = cst(&mut g, "w2", &[4, 4, 3, 3], 3);
    let c2 = node(&mut g, conv3x3(1), vec![r1, w2], &[2, 4, 8, 8]);
    let p = bn(&mut g, 20);
    let n2 = node(&mut g, Op::BatchNorm { epsilon: 1e-3 }, [vec![c2], p].concat(), &[2, 4, 8, 8]);
    let add = node(&mut g, Op::Add, vec![n2, r1], &[2, 4, 8, 8]);
    let r2 = node(&mut g, Op::Relu, vec![add], &[2, 4, 8, 8]);
    let wd = cst(&mut g, "wd", &[4, 1, 3, 3], 4);
    let dw = Op::Conv(ConvAttrs {
        kernel: vec![3, 3],
        strides: vec![2, 2],
        dilations: vec![1, 1],
        pads: vec![1; 4],
        group: 4,
        clamp: None,
    });
    let cd = node(&mut g, dw, vec![r2, wd], &[2, 4, 4, 4]);
    let lo = g.add_const("lo", TensorData::from_f32(vec![], &[0.0]));
    let hi = g.add_const("hi", TensorData::from_f32(vec![], &[0.5]));
    let cl = node(&mut g, Op::Clip, vec![cd, lo, hi], &[2, 4, 4, 4]);
    let pa = PoolAttrs {
        kernel: vec![2, 2],
        strides: vec![2, 2],
        dilations: vec![1, 1],
        pads: vec![0; 4],
        ceil_mode: false,
        count_include_pad: false,
        storage_order: 0,
    };
    let mp = node(&mut g, Op::MaxPool(pa), vec![cl], &[2, 4, 2, 2]);
    let gp = node(&mut g, Op::GlobalAveragePool, vec![mp], &[2, 4, 1, 1]);
    let fl = node(&mut g, Op::Flatten { axis: 1 }, vec![gp], &[2, 4]);
    let wf = cst(&mut g, "wf", &[3, 4], 5);
    let bf = cst(&mut g, "bf", &[3], 6);
    let fc = node(
        &mut g,
        Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true, clamp: None },
        vec![fl, wf, bf],
        &[2, 3],
    );
    // Also expose an intermediate that later nodes read (it must not be freed or clobbered).
    g.set_outputs(vec![fc, r1]);
    g
}

#[test]
fn runner_equals_node_by_node_evaluation_bit_for_bit() {
    let g = resnet_like();
    let x = f32t(&[2, 3, 8, 8], &rand_vec(384, 99));
    let want = eval_naive(&g, std::slice::from_ref(&x));
    let r = Runner::new(&g).unwrap();
    for _ in 0..2 {
        let got = r.run(vec![x.clone()]).unwrap();
        assert_eq!(got, want);
    }
}

#[test]
fn in_place_never_clobbers_a_value_read_again() {
    // y = relu(x) + x ; z = y * y ; outputs z and y.
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32ty(&[5]));
    let r = node(&mut g, Op::Relu, vec![x], &[5]);
    let y = node(&mut g, Op::Add, vec![r, x], &[5]);
    let z = node(&mut g, Op::Mul, vec![y, y], &[5]);
    let w = node(&mut g, Op::Sub, vec![x, z], &[5]);
    g.set_outputs(vec![z, y, w, x]);
    let xt = f32t(&[5], &[-2.0, -1.0, 0.0, 1.0, 2.0]);
    let out = Runner::new(&g).unwrap().run(vec![xt.clone()]).unwrap();
    assert_eq!(vf(&out[1]), [-2.0, -1.0, 0.0, 2.0, 4.0]);
    assert_eq!(vf(&out[0]), [4.0, 1.0, 0.0, 4.0, 16.0]);
    assert_eq!(vf(&out[2]), [-6.0, -2.0, 0.0, -3.0, -14.0]);
    assert_eq!(out[3], xt);
}

#[test]
fn constant_outputs_and_multi_output_nodes() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32ty(&[1, 1, 2, 2]));
    let c = g.add_const("c", TensorData::from_i64(vec![2], &[7, 8]));
    let pa = PoolAttrs {
        kernel: vec![2, 2],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0; 4],
        ceil_mode: false,
        count_include_pad: false,
        storage_order: 0,
    };
    let id = g.add_node(
        "mp",
        Op::MaxPool(pa),
        vec![x],
        vec![
            ("y".into(), f32ty(&[1, 1, 1, 1])),
            ("i".into(), TensorType::new(DType::I64, vec![1, 1, 1, 1])),
        ],
    );
    let (y, i) = (g.node(id).outputs[0], g.node(id).outputs[1]);
    let d = g.add_node(
        "drop",
        Op::Dropout,
        vec![y],
        vec![
            ("d".into(), f32ty(&[1, 1, 1, 1])),
            ("mask".into(), TensorType::new(DType::Bool, vec![1, 1, 1, 1])),
        ],
    );
    let dy = g.node(d).outputs[0];
    g.set_outputs(vec![dy, i, c]);
    let out =
        Runner::new(&g).unwrap().run(vec![f32t(&[1, 1, 2, 2], &[1.0, 4.0, 3.0, 2.0])]).unwrap();
    assert_eq!(vf(&out[0]), [4.0]);
    assert_eq!(out[1], i64t(&[1, 1, 1, 1], &[1]));
    assert_eq!(out[2], i64t(&[2], &[7, 8]));
}

#[test]
fn inputs_are_checked() {
    let g = resnet_like();
    let r = Runner::new(&g).unwrap();
    let e = r.run(vec![f32t(&[1, 3, 8, 8], &[0.0; 192])]).unwrap_err();
    assert!(
        matches!(&e, InterpError::Input { name, msg } if name == "x" && msg.contains("[2, 3, 8, 8]")),
        "{e}"
    );
    let e = r.run(vec![Tensor::zeros(DType::F64, &[2, 3, 8, 8])]).unwrap_err();
    assert!(matches!(&e, InterpError::Input { msg, .. } if msg.contains("f64")), "{e}");
    assert!(matches!(r.run(vec![]), Err(InterpError::Input { .. })));
}

#[test]
fn node_errors_name_the_node() {
    let mut g = Graph::new("t");
    let a = g.add_input("a", TensorType::new(DType::I32, vec![2]));
    let b = g.add_input("b", TensorType::new(DType::I32, vec![2]));
    g.add_node(
        "the_div",
        Op::Div,
        vec![a, b],
        vec![("q".into(), TensorType::new(DType::I32, vec![2]))],
    );
    let q = g.find_value("q").unwrap();
    g.set_outputs(vec![q]);
    let r = Runner::new(&g).unwrap();
    assert_eq!(
        r.run(vec![i32t(&[2], &[7, -7]), i32t(&[2], &[2, 2])]).unwrap()[0],
        i32t(&[2], &[3, -3])
    );
    let e = r.run(vec![i32t(&[2], &[1, 1]), i32t(&[2], &[1, 0])]).unwrap_err();
    assert!(
        matches!(&e, InterpError::Node { node, op, .. } if node == "the_div" && op == "div"),
        "{e}"
    );
}

#[test]
fn wrong_declared_type_is_reported() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32ty(&[2, 3]));
    let y = node(&mut g, Op::Relu, vec![x], &[3, 2]);
    g.set_outputs(vec![y]);
    let e = Runner::new(&g).unwrap().run(vec![f32t(&[2, 3], &[0.0; 6])]).unwrap_err();
    assert!(e.to_string().contains("graph says"), "{e}");
}

#[test]
fn conv_with_fused_clamp_equals_node_evaluation() {
    let mut g = Graph::new("t");
    let x = g.add_input("x", f32ty(&[1, 3, 6, 6]));
    let w = cst(&mut g, "w", &[5, 3, 3, 3], 7);
    let b = cst(&mut g, "b", &[5], 8);
    let op = Op::Conv(ConvAttrs {
        kernel: vec![3, 3],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![1; 4],
        group: 1,
        clamp: Some((-0.1, 0.2)),
    });
    let y = node(&mut g, op, vec![x, w, b], &[1, 5, 6, 6]);
    let r = node(&mut g, Op::Relu, vec![y], &[1, 5, 6, 6]);
    g.set_outputs(vec![r]);
    let xt = f32t(&[1, 3, 6, 6], &rand_vec(108, 3));
    let got = Runner::new(&g).unwrap().run(vec![xt.clone()]).unwrap();
    assert_eq!(got, eval_naive(&g, &[xt]));
    assert!(vf(&got[0]).iter().all(|&v| (0.0..=0.2).contains(&v)));
}
