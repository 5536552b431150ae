//! Op semantics on small hand-checked cases (values from the ONNX spec and its backend tests).

mod common;

use cimc_interp::{eval_node, InterpError, Tensor};
use cimc_ir::{ConvAttrs, DType, Op, PadMode, PoolAttrs, SliceAxis};
use common::*;

fn pool(kernel: &[usize], strides: &[usize], pads: &[usize]) -> PoolAttrs {
    PoolAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: vec![1; kernel.len()],
        pads: pads.to_vec(),
        ceil_mode: false,
        count_include_pad: false,
        storage_order: 0,
    }
}

#[test]
fn conv_basic_with_and_without_padding() {
    let x = f32t(&[1, 1, 5, 5], &(0..25).map(|v| v as f32).collect::<Vec<_>>());
    let w = f32t(&[1, 1, 3, 3], &[1.0; 9]);
    let attrs = |pads: Vec<usize>, strides: Vec<usize>| ConvAttrs {
        kernel: vec![3, 3],
        strides,
        dilations: vec![1, 1],
        pads,
        group: 1,
        clamp: None,
    };
    let y = ev(Op::Conv(attrs(vec![1, 1, 1, 1], vec![1, 1])), &[&x, &w]);
    assert_eq!(y.shape(), &[1, 1, 5, 5]);
    assert_eq!(vf(&y)[..7], [12.0, 21.0, 27.0, 33.0, 24.0, 33.0, 54.0]);
    let y = ev(Op::Conv(attrs(vec![0; 4], vec![1, 1])), &[&x, &w]);
    assert_eq!(vf(&y), [54.0, 63.0, 72.0, 99.0, 108.0, 117.0, 144.0, 153.0, 162.0]);
    // Strides 2, asymmetric padding (1 top/bottom, 0 left/right) on a 7x5 input.
    let x = f32t(&[1, 1, 7, 5], &(0..35).map(|v| v as f32).collect::<Vec<_>>());
    let y = ev(Op::Conv(attrs(vec![1, 0, 1, 0], vec![2, 2])), &[&x, &w]);
    assert_eq!(y.shape(), &[1, 1, 4, 2]);
    assert_eq!(vf(&y), [21.0, 33.0, 99.0, 117.0, 189.0, 207.0, 171.0, 183.0]);
}

#[test]
fn conv_bias_and_f64() {
    let x = f64t(&[1, 2, 1, 1], &[1.0, 2.0]);
    let w = f64t(&[2, 2, 1, 1], &[1.0, 1.0, 1.0, -1.0]);
    let b = f64t(&[2], &[10.0, 20.0]);
    let attrs = ConvAttrs {
        kernel: vec![1, 1],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0; 4],
        group: 1,
        clamp: None,
    };
    let y = ev(Op::Conv(attrs), &[&x, &w, &b]);
    assert_eq!(y, f64t(&[1, 2, 1, 1], &[13.0, 19.0]));
}

/// No input channels: every output is the bias (a 1x1 f32 layer would otherwise take the
/// AVX-512 plane path, which once asserted on the empty copy).
#[test]
fn conv_with_no_input_channels_is_the_bias() {
    let x = f32t(&[1, 0, 3, 3], &[]);
    let w = f32t(&[4, 0, 1, 1], &[]);
    let b = f32t(&[4], &[1.0, 2.0, 3.0, 4.0]);
    let attrs = ConvAttrs {
        kernel: vec![1, 1],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0; 4],
        group: 1,
        clamp: None,
    };
    let y = ev(Op::Conv(attrs), &[&x, &w, &b]);
    let want: Vec<f32> = (1..=4).flat_map(|v| [v as f32; 9]).collect();
    assert_eq!(y, f32t(&[1, 4, 3, 3], &want));
}

#[test]
fn conv_rejects_mismatched_channels() {
    let x = f32t(&[1, 3, 4, 4], &[0.0; 48]);
    let w = f32t(&[2, 2, 3, 3], &[0.0; 36]);
    let attrs = ConvAttrs {
        kernel: vec![3, 3],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![0; 4],
        group: 1,
        clamp: None,
    };
    let e = eval_node(&Op::Conv(attrs), &[&x, &w], 1).unwrap_err();
    assert!(matches!(e, InterpError::Node { ref op, .. } if op == "conv"), "{e}");
}

#[test]
fn clip_semantics() {
    let x = f32t(&[3], &[-2.0, 0.0, 6.0]);
    // min > max: every output is max.
    let y = ev(Op::Clip, &[&x, &f32t(&[], &[2.0]), &f32t(&[], &[1.0])]);
    assert_eq!(vf(&y), [1.0, 1.0, 1.0]);
    let y = ev(Op::Clip, &[&x, &f32t(&[], &[-1.0]), &f32t(&[], &[5.0])]);
    assert_eq!(vf(&y), [-1.0, 0.0, 5.0]);
    let xi = i8t(&[3], &[-128, 0, 127]);
    let y = ev(Op::Clip, &[&xi, &i8t(&[], &[-5]), &i8t(&[], &[5])]);
    assert_eq!(y, i8t(&[3], &[-5, 0, 5]));
}

#[test]
fn activations() {
    let x = f32t(&[4], &[-2.0, -0.5, 0.0, 3.0]);
    assert_eq!(vf(&ev(Op::Relu, &[&x])), [0.0, 0.0, 0.0, 3.0]);
    assert_eq!(vf(&ev(Op::LeakyRelu { alpha: 0.1 }, &[&x])), [-0.2, -0.05, 0.0, 3.0]);
    assert_close(&vf(&ev(Op::Sigmoid, &[&x])), &[0.11920292, 0.37754067, 0.5, 0.95257413], 1e-6);
    assert_close(&vf(&ev(Op::Tanh, &[&x])), &[-0.964_027_6, -0.462_117_16, 0.0, 0.995_054_7], 1e-6);
    assert_close(
        &vf(&ev(Op::HardSigmoid { alpha: 0.5, beta: 0.6 }, &[&x])),
        &[0.0, 0.35, 0.6, 1.0],
        1e-6,
    );
    let x = f32t(&[5], &[-4.0, -1.0, 0.0, 1.0, 4.0]);
    assert_close(&vf(&ev(Op::HardSwish, &[&x])), &[0.0, -1.0 / 3.0, 0.0, 2.0 / 3.0, 4.0], 1e-6);
    assert_eq!(ev(Op::Relu, &[&i32t(&[2], &[-3, 4])]), i32t(&[2], &[0, 4]));
}

#[test]
fn batch_norm_example() {
    let x = f32t(&[1, 2, 1, 3], &[-1.0, 0.0, 1.0, 2.0, 3.0, 4.0]);
    let s = f32t(&[2], &[1.0, 1.5]);
    let b = f32t(&[2], &[0.0, 1.0]);
    let m = f32t(&[2], &[0.0, 3.0]);
    let v = f32t(&[2], &[1.0, 1.5]);
    let y = ev(Op::BatchNorm { epsilon: 1e-5 }, &[&x, &s, &b, &m, &v]);
    assert_close(&vf(&y), &[-0.999995, 0.0, 0.999995, -0.22474074, 1.0, 2.2247407], 1e-5);
}

#[test]
fn arithmetic_broadcast_and_integers() {
    let a = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = f32t(&[3], &[10.0, 20.0, 30.0]);
    assert_eq!(vf(&ev(Op::Add, &[&a, &b])), [11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    let c = f32t(&[2, 1], &[1.0, 2.0]);
    assert_eq!(vf(&ev(Op::Sub, &[&c, &b])), [-9.0, -19.0, -29.0, -8.0, -18.0, -28.0]);
    assert_eq!(ev(Op::Mul, &[&c, &b]).shape(), &[2, 3]);
    // Integer wrap-around and truncating division.
    assert_eq!(
        ev(Op::Add, &[&i8t(&[2], &[127, -128]), &i8t(&[2], &[1, -1])]),
        i8t(&[2], &[-128, 127])
    );
    assert_eq!(ev(Op::Mul, &[&u8t(&[1], &[16]), &u8t(&[1], &[17])]), u8t(&[1], &[16]));
    assert_eq!(
        ev(Op::Div, &[&i32t(&[3], &[-7, 7, 8]), &i32t(&[3], &[2, -2, 3])]),
        i32t(&[3], &[-3, -3, 2])
    );
    let e = eval_node(&Op::Div, &[&i32t(&[1], &[1]), &i32t(&[1], &[0])], 1).unwrap_err();
    assert!(e.to_string().contains("division by zero"), "{e}");
    let e = eval_node(&Op::Add, &[&a, &f32t(&[2], &[1.0, 2.0])], 1).unwrap_err();
    assert!(e.to_string().contains("broadcast"), "{e}");
    let e = eval_node(&Op::Add, &[&a, &i8t(&[1], &[1])], 1).unwrap_err();
    assert!(e.to_string().contains("dtypes differ"), "{e}");
}

#[test]
fn max_pool_with_indices_and_u8() {
    let x = f32t(&[1, 1, 5, 5], &(1..=25).map(|v| v as f32).collect::<Vec<_>>());
    let op = Op::MaxPool(pool(&[5, 5], &[1, 1], &[2, 2, 2, 2]));
    let out = eval_node(&op, &[&x], 2).unwrap();
    assert_eq!(vf(&out[0])[..10], [13.0, 14.0, 15.0, 15.0, 15.0, 18.0, 19.0, 20.0, 20.0, 20.0]);
    assert_eq!(
        out[1],
        i64t(
            &[1, 1, 5, 5],
            &[
                12, 13, 14, 14, 14, 17, 18, 19, 19, 19, 22, 23, 24, 24, 24, 22, 23, 24, 24, 24, 22,
                23, 24, 24, 24,
            ]
        )
    );
    // Column-major indices.
    let mut a = pool(&[2, 2], &[2, 2], &[0; 4]);
    a.storage_order = 1;
    let x = f32t(&[1, 1, 2, 4], &[1.0, 2.0, 3.0, 4.0, 8.0, 7.0, 6.0, 5.0]);
    let out = eval_node(&Op::MaxPool(a), &[&x], 2).unwrap();
    assert_eq!(vf(&out[0]), [8.0, 6.0]);
    assert_eq!(out[1], i64t(&[1, 1, 1, 2], &[1, 5]));
    let xu = u8t(&[1, 1, 2, 2], &[1, 250, 3, 4]);
    assert_eq!(
        ev(Op::MaxPool(pool(&[2, 2], &[1, 1], &[0; 4])), &[&xu]),
        u8t(&[1, 1, 1, 1], &[250])
    );
}

#[test]
fn average_pool_padding_and_ceil() {
    let x = f32t(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let mut a = pool(&[2, 2], &[1, 1], &[1, 1, 0, 0]);
    let y = ev(Op::AveragePool(a.clone()), &[&x]);
    assert_eq!(vf(&y), [1.0, 1.5, 2.0, 2.5]);
    a.count_include_pad = true;
    assert_eq!(vf(&ev(Op::AveragePool(a), &[&x])), [0.25, 0.75, 1.0, 2.5]);
    // ceil_mode: the last window would start in the end padding, so it is dropped.
    let x = f32t(&[1, 1, 2, 2], &[0.858, 0.0786, 0.2692, 0.1537]);
    let mut a = pool(&[3, 3], &[3, 3], &[1, 1, 1, 1]);
    a.ceil_mode = true;
    a.count_include_pad = true;
    let y = ev(Op::AveragePool(a), &[&x]);
    assert_eq!(y.shape(), &[1, 1, 1, 1]);
    assert_close(&vf(&y), &[(0.858 + 0.0786 + 0.2692 + 0.1537) / 9.0], 1e-6);
    // ceil_mode with a window past the padded end: divide by the taps inside it only.
    let x = f32t(&[1, 1, 1, 3], &[1.0, 2.0, 3.0]);
    let mut a = pool(&[1, 2], &[1, 2], &[0; 4]);
    a.ceil_mode = true;
    a.count_include_pad = true;
    assert_eq!(vf(&ev(Op::AveragePool(a), &[&x])), [1.5, 3.0]);
}

#[test]
fn global_average_pool() {
    let x = f32t(&[1, 2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let y = ev(Op::GlobalAveragePool, &[&x]);
    assert_eq!(y, f32t(&[1, 2, 1, 1], &[2.5, 6.5]));
}

#[test]
fn gemm_attributes_and_bias_broadcast() {
    let a = f32t(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]); // A' = a^T: 2x3
    let b = f32t(&[4, 3], &(0..12).map(|v| v as f32).collect::<Vec<_>>()); // B' = b^T: 3x4
    let c = f32t(&[1, 4], &[1.0, 2.0, 3.0, 4.0]);
    let op = Op::Gemm { alpha: 0.5, beta: 2.0, trans_a: true, trans_b: true, clamp: None };
    let y = ev(op, &[&a, &b, &c]);
    // A'B' row 0 = [1,3,5]·cols: [13, 40, 67, 94]; row 1 = [2,4,6]: [16, 52, 88, 124].
    assert_eq!(vf(&y), [8.5, 24.0, 39.5, 55.0, 10.0, 30.0, 50.0, 70.0]);
    let s = f32t(&[], &[1.0]);
    let y = ev(
        Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false, clamp: None },
        &[&f32t(&[1, 2], &[1.0, 1.0]), &f32t(&[2, 1], &[2.0, 3.0]), &s],
    );
    assert_eq!(vf(&y), [6.0]);
}

#[test]
fn matmul_promotion_and_broadcast() {
    let v = f32t(&[3], &[1.0, 2.0, 3.0]);
    assert_eq!(ev(Op::MatMul, &[&v, &v]), f32t(&[], &[14.0]));
    let m = f32t(&[2, 3, 2], &(0..12).map(|v| v as f32).collect::<Vec<_>>());
    let y = ev(Op::MatMul, &[&v, &m]);
    assert_eq!(y, f32t(&[2, 2], &[16.0, 22.0, 52.0, 58.0]));
    let y = ev(Op::MatMul, &[&m, &f32t(&[2], &[1.0, -1.0])]);
    assert_eq!(y, f32t(&[2, 3], &[-1.0; 6]));
    // Batch broadcast: [2,1,2,3] x [3,3,2] -> [2,3,2,2].
    let a = f32t(&[2, 1, 2, 3], &common::rand_vec(12, 1));
    let b = f32t(&[3, 3, 2], &common::rand_vec(18, 2));
    let y = ev(Op::MatMul, &[&a, &b]);
    assert_eq!(y.shape(), &[2, 3, 2, 2]);
    let (ad, bd, yd) = (vf(&a), vf(&b), vf(&y));
    for i in 0..2 {
        for j in 0..3 {
            for r in 0..2 {
                for c in 0..2 {
                    let want: f32 =
                        (0..3).map(|k| ad[i * 6 + r * 3 + k] * bd[j * 6 + k * 2 + c]).sum();
                    let got = yd[((i * 3 + j) * 2 + r) * 2 + c];
                    assert!((got - want).abs() < 1e-5, "{i} {j} {r} {c}: {got} vs {want}");
                }
            }
        }
    }
    assert_eq!(
        ev(Op::MatMul, &[&i64t(&[1, 2], &[2, 3]), &i64t(&[2, 1], &[4, 5])]),
        i64t(&[1, 1], &[23])
    );
}

#[test]
fn softmax_axis_and_coerced() {
    let x = f32t(&[1, 3], &[-1.0, 0.0, 1.0]);
    assert_close(
        &vf(&ev(Op::Softmax { axis: 1, coerce_2d: false }, &[&x])),
        &[0.09003057, 0.24472847, 0.66524096],
        1e-6,
    );
    let x = f32t(&[2, 2], &[0.0, 0.0, 1000.0, 1000.0]);
    assert_eq!(vf(&ev(Op::Softmax { axis: 0, coerce_2d: false }, &[&x])), [0.0, 0.0, 1.0, 1.0]);
    assert_eq!(vf(&ev(Op::Softmax { axis: 0, coerce_2d: true }, &[&x])), [0.0, 0.0, 0.5, 0.5]);
    assert_eq!(vf(&ev(Op::Softmax { axis: 1, coerce_2d: false }, &[&x])), [0.5, 0.5, 0.5, 0.5]);
}

#[test]
fn shape_ops() {
    let x = f32t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(
        ev(Op::Transpose { perm: vec![1, 0] }, &[&x]),
        f32t(&[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0])
    );
    assert_eq!(ev(Op::Reshape { shape: vec![3, 2] }, &[&x]).shape(), &[3, 2]);
    assert_eq!(ev(Op::Flatten { axis: 0 }, &[&x]).shape(), &[1, 6]);
    assert_eq!(ev(Op::Unsqueeze { axes: vec![0, 3] }, &[&x]).shape(), &[1, 2, 3, 1]);
    let y = ev(Op::Unsqueeze { axes: vec![0, 3] }, &[&x]);
    assert_eq!(ev(Op::Squeeze { axes: vec![0, 3] }, &[&y]), x);
    assert!(eval_node(&Op::Squeeze { axes: vec![1] }, &[&x], 1).is_err());
    let c = ev(Op::Concat { axis: 1 }, &[&x, &f32t(&[2, 1], &[7.0, 8.0])]);
    assert_eq!(c, f32t(&[2, 4], &[1.0, 2.0, 3.0, 7.0, 4.0, 5.0, 6.0, 8.0]));
    let out = eval_node(&Op::Dropout, &[&x], 2).unwrap();
    assert_eq!(out[0], x);
    assert!(matches!(&out[1], Tensor::Bool(m) if m.iter().all(|&b| b)));
    assert_eq!(ev(Op::Identity, &[&x]), x);
}

#[test]
fn gather_and_slice() {
    let x = f32t(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let y = ev(Op::Gather { axis: 0 }, &[&x, &i64t(&[2, 2], &[0, -1, 1, 2])]);
    assert_eq!(y, f32t(&[2, 2, 2], &[1.0, 2.0, 5.0, 6.0, 3.0, 4.0, 5.0, 6.0]));
    let y = ev(Op::Gather { axis: 1 }, &[&x, &i32t(&[], &[1])]);
    assert_eq!(y, f32t(&[3], &[2.0, 4.0, 6.0]));
    assert!(eval_node(&Op::Gather { axis: 0 }, &[&x, &i64t(&[1], &[3])], 1).is_err());
    // Negative step: rows 2,1 (start 2, end -1 clamped meaning "before 0": stop after 0? no: end 0 exclusive).
    let s = Op::Slice { axes: vec![SliceAxis { axis: 0, start: 2, end: 0, step: -1 }] };
    assert_eq!(ev(s, &[&x]), f32t(&[2, 2], &[5.0, 6.0, 3.0, 4.0]));
    let s = Op::Slice {
        axes: vec![
            SliceAxis { axis: 0, start: 2, end: -1, step: -2 },
            SliceAxis { axis: 1, start: 1, end: 2, step: 1 },
        ],
    };
    assert_eq!(ev(s, &[&x]), f32t(&[2, 1], &[6.0, 2.0]));
    let s = Op::Slice { axes: vec![SliceAxis { axis: 0, start: 3, end: 3, step: 1 }] };
    assert_eq!(ev(s, &[&x]).shape(), &[0, 2]);
}

#[test]
fn pad_modes() {
    let x = i32t(&[1, 3], &[1, 2, 3]);
    let p = |mode, pads: Vec<i64>| ev(Op::Pad { mode, pads }, &[&x]);
    assert_eq!(p(PadMode::Constant, vec![0, 2, 0, 1]), i32t(&[1, 6], &[0, 0, 1, 2, 3, 0]));
    assert_eq!(p(PadMode::Reflect, vec![0, 2, 0, 2]), i32t(&[1, 7], &[3, 2, 1, 2, 3, 2, 1]));
    assert_eq!(p(PadMode::Edge, vec![0, 2, 0, 1]), i32t(&[1, 6], &[1, 1, 1, 2, 3, 3]));
    assert_eq!(p(PadMode::Wrap, vec![0, 2, 0, 1]), i32t(&[1, 6], &[2, 3, 1, 2, 3, 1]));
    assert_eq!(p(PadMode::Constant, vec![1, -1, 0, 1]), i32t(&[2, 3], &[0, 0, 0, 2, 3, 0]));
    let v = i32t(&[], &[9]);
    let y = ev(Op::Pad { mode: PadMode::Constant, pads: vec![0, 1, 0, 0] }, &[&x, &v]);
    assert_eq!(y, i32t(&[1, 4], &[9, 1, 2, 3]));
}

#[test]
fn cast_rules() {
    let x = f32t(&[5], &[-1.7, 2.5, 300.0, f32::NAN, 0.0]);
    let i = eval_node(&Op::Cast { to: DType::I32 }, &[&x], 1).unwrap().remove(0);
    assert_eq!(i, i32t(&[5], &[-1, 2, 300, 0, 0]));
    let b = ev(Op::Cast { to: DType::Bool }, &[&x]);
    assert!(
        matches!(&b, Tensor::Bool(a) if a.iter().copied().collect::<Vec<_>>() == [true, true, true, true, false])
    );
    let back = ev(Op::Cast { to: DType::F32 }, &[&b]);
    assert_eq!(vf(&back), [1.0, 1.0, 1.0, 1.0, 0.0]);
    assert_eq!(
        ev(Op::Cast { to: DType::I8 }, &[&i32t(&[2], &[200, -129])]),
        i8t(&[2], &[-56, 127])
    );
    let d = ev(Op::Cast { to: DType::F64 }, &[&f32t(&[1], &[0.1])]);
    assert_eq!(d, f64t(&[1], &[0.1f32 as f64]));
}

#[test]
fn quantize_dequantize() {
    let q = Op::QuantizeLinear { axis: None, block_size: 0, saturate: true, to: DType::U8 };
    let x = f32t(&[6], &[0.0, 2.0, 3.0, 1000.0, -254.0, -1000.0]);
    let y = ev(q, &[&x, &f32t(&[], &[2.0]), &u8t(&[], &[128])]);
    assert_eq!(y, u8t(&[6], &[128, 129, 130, 255, 1, 0]));
    // Round half to even, signed, no zero point: dtype from `to`.
    let q = Op::QuantizeLinear { axis: None, block_size: 0, saturate: true, to: DType::I8 };
    let y = ev(q, &[&f32t(&[4], &[0.5, 1.5, 2.5, -0.5]), &f32t(&[], &[1.0])]);
    assert_eq!(y, i8t(&[4], &[0, 2, 2, 0]));
    // Per-axis.
    let q = Op::QuantizeLinear { axis: Some(1), block_size: 0, saturate: true, to: DType::U8 };
    let x = f32t(&[1, 3, 1, 2], &[-162.0, 10.0, -20.0, -50.0, 245.0, -485.0]);
    let y = ev(q, &[&x, &f32t(&[3], &[2.0, 4.0, 5.0]), &u8t(&[3], &[84, 24, 196])]);
    assert_eq!(y, u8t(&[1, 3, 1, 2], &[3, 89, 19, 12, 245, 99]));
    // Blocked along axis 1 with block 2.
    let q = Op::QuantizeLinear { axis: Some(1), block_size: 2, saturate: true, to: DType::U8 };
    let x = f32t(&[3, 4], &[6.0, 12.0, 50.0, 5.0, 1.0, 8.0, 4.0, 5.0, 0.0, 20.0, 10.0, 4.0]);
    let s = f32t(&[3, 2], &[1.5, 2.5, 3.0, 4.9, 5.1, 6.9]);
    let z = u8t(&[3, 2], &[0, 1, 1, 0, 2, 3]);
    assert_eq!(ev(q, &[&x, &s, &z]), u8t(&[3, 4], &[4, 8, 21, 3, 1, 4, 1, 1, 2, 6, 4, 4]));
    // Dequantize, per tensor and blocked.
    let d = Op::DequantizeLinear { axis: None, block_size: 0 };
    let y = ev(d, &[&u8t(&[4], &[0, 3, 128, 255]), &f32t(&[], &[2.0]), &u8t(&[], &[128])]);
    assert_eq!(vf(&y), [-256.0, -250.0, 0.0, 254.0]);
    let d = Op::DequantizeLinear { axis: Some(0), block_size: 2 };
    let y = ev(d, &[&i8t(&[4], &[1, 2, 3, 4]), &f32t(&[2], &[1.0, 10.0]), &i8t(&[2], &[0, 1])]);
    assert_eq!(vf(&y), [1.0, 2.0, 20.0, 30.0]);
}

#[test]
fn unsupported_dtype_is_an_error_not_a_panic() {
    let b = Tensor::Bool(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[2]), true));
    assert!(matches!(eval_node(&Op::Sigmoid, &[&b], 1), Err(InterpError::Unsupported(_))));
    assert!(eval_node(&Op::Add, &[&b, &b], 1).is_err());
    assert!(eval_node(&Op::Relu, &[], 1).is_err());
}
