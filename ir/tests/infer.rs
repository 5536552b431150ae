//! Shape inference: one or more cases per op, and the error messages.

use cimc_ir::infer::{infer, window_output};
use cimc_ir::{ConvAttrs, DType, Op, PadMode, PoolAttrs, SliceAxis, TensorType};

fn t(dtype: DType, shape: &[usize]) -> TensorType {
    TensorType::new(dtype, shape.to_vec())
}

fn f(shape: &[usize]) -> TensorType {
    t(DType::F32, shape)
}

fn one(op: &Op, inputs: &[TensorType]) -> TensorType {
    let refs: Vec<&TensorType> = inputs.iter().collect();
    let mut out = infer(op, &refs, 1).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert_eq!(out.len(), 1);
    out.remove(0)
}

fn err(op: &Op, inputs: &[TensorType], n_out: usize) -> String {
    let refs: Vec<&TensorType> = inputs.iter().collect();
    infer(op, &refs, n_out).expect_err("must fail")
}

fn conv(kernel: &[usize], strides: &[usize], pads: &[usize], dil: &[usize], group: usize) -> Op {
    Op::Conv(ConvAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dil.to_vec(),
        pads: pads.to_vec(),
        group,
        clamp: None,
    })
}

fn pool(
    kernel: &[usize],
    strides: &[usize],
    pads: &[usize],
    dil: &[usize],
    ceil: bool,
) -> PoolAttrs {
    PoolAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dil.to_vec(),
        pads: pads.to_vec(),
        ceil_mode: ceil,
        count_include_pad: false,
        storage_order: 0,
    }
}

#[test]
fn conv_2d_with_bias_strides_pads() {
    let op = conv(&[3, 3], &[2, 2], &[1, 1, 1, 1], &[1, 1], 1);
    let y = one(&op, &[f(&[1, 3, 224, 224]), f(&[64, 3, 3, 3]), f(&[64])]);
    assert_eq!(y, f(&[1, 64, 112, 112]));
}

#[test]
fn conv_1d_3d_dilated_and_depthwise() {
    let op = conv(&[3], &[1], &[0, 0], &[2], 1);
    assert_eq!(one(&op, &[f(&[2, 4, 10]), f(&[5, 4, 3])]), f(&[2, 5, 6]));
    let op = conv(&[2, 2, 2], &[1, 1, 1], &[0; 6], &[1, 1, 1], 1);
    assert_eq!(one(&op, &[f(&[1, 1, 4, 4, 4]), f(&[2, 1, 2, 2, 2])]), f(&[1, 2, 3, 3, 3]));
    let op = conv(&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], 32);
    assert_eq!(one(&op, &[f(&[1, 32, 8, 8]), f(&[32, 1, 3, 3])]), f(&[1, 32, 8, 8]));
}

#[test]
fn conv_errors_name_the_shapes() {
    let op = conv(&[3, 3], &[1, 1], &[0; 4], &[1, 1], 1);
    let e = err(&op, &[f(&[3, 4]), f(&[1, 1, 3, 3])], 1);
    assert!(e.contains("expected 4-D input [N,C,H,W], got f32[3,4]"), "{e}");
    let e = err(&op, &[f(&[1, 3, 8, 8]), f(&[1, 1, 3, 3])], 1);
    assert!(e.contains("channels 3 vs weight's 1*group"), "{e}");
    let e = err(&op, &[f(&[1, 1, 2, 2]), f(&[1, 1, 3, 3])], 1);
    assert!(e.contains("smaller than the dilated kernel"), "{e}");
    let e = err(&op, &[f(&[1, 1, 8, 8]), f(&[2, 1, 3, 3]), f(&[3])], 1);
    assert!(e.contains("expected bias [2]"), "{e}");
    let e = err(&op, &[f(&[1, 1, 8, 8])], 1);
    assert!(e.contains("expected 2 to 3 input(s), got 1"), "{e}");
    let e = err(&op, &[f(&[1, 1, 8, 8]), t(DType::I8, &[1, 1, 3, 3])], 1);
    assert!(e.contains("weight i8[1,1,3,3]"), "{e}");
    let e = err(&op, &[f(&[1, 1, 8, 8]), f(&[1, 1, 3, 3])], 2);
    assert!(e.contains("expected 1 output(s), got 2"), "{e}");
}

#[test]
fn pool_floor_and_ceil() {
    // ONNX maxpool_2d_ceil: 4x4, kernel 3, stride 2, ceil -> 2x2.
    let a = pool(&[3, 3], &[2, 2], &[0; 4], &[1, 1], true);
    assert_eq!(one(&Op::MaxPool(a.clone()), &[f(&[1, 1, 4, 4])]), f(&[1, 1, 2, 2]));
    let a = pool(&[3, 3], &[2, 2], &[0; 4], &[1, 1], false);
    assert_eq!(one(&Op::AveragePool(a), &[f(&[1, 1, 4, 4])]), f(&[1, 1, 1, 1]));
    // The last window must start inside the input or the left padding.
    assert_eq!(window_output(5, 0, 1, 2, 2, 1, true), Ok(3));
    assert_eq!(window_output(4, 1, 1, 2, 2, 1, true), Ok(3));
    assert_eq!(window_output(2, 1, 1, 3, 2, 1, true), Ok(1 + 1));
    // maxpool_2d_ceil_output_size_reduce_by_one: 2x2, k1, s2, ceil -> 1.
    assert_eq!(window_output(2, 0, 0, 1, 2, 1, true), Ok(1));
}

#[test]
fn pool_dilations_1d_3d_and_indices() {
    let a = pool(&[2, 2], &[1, 1], &[0; 4], &[2, 2], false);
    let out = infer(&Op::MaxPool(a), &[&f(&[1, 1, 4, 4])], 2).unwrap();
    assert_eq!(out, vec![f(&[1, 1, 2, 2]), t(DType::I64, &[1, 1, 2, 2])]);
    let a = pool(&[2], &[1], &[0, 0], &[1], false);
    assert_eq!(one(&Op::AveragePool(a), &[f(&[1, 3, 32])]), f(&[1, 3, 31]));
    let a = pool(&[2, 2, 2], &[1, 1, 1], &[0; 6], &[1, 1, 1], false);
    assert_eq!(one(&Op::MaxPool(a), &[f(&[1, 3, 32, 32, 32])]), f(&[1, 3, 31, 31, 31]));
    let a = pool(&[2, 2], &[1, 1], &[0; 4], &[1, 1], false);
    let e = err(&Op::AveragePool(a.clone()), &[t(DType::U8, &[1, 1, 4, 4])], 1);
    assert!(e.contains("float"), "{e}");
    assert_eq!(one(&Op::MaxPool(a), &[t(DType::U8, &[1, 1, 4, 4])]), t(DType::U8, &[1, 1, 3, 3]));
}

#[test]
fn global_pool_batchnorm_activations() {
    assert_eq!(one(&Op::GlobalAveragePool, &[f(&[2, 8, 7, 7])]), f(&[2, 8, 1, 1]));
    let x = f(&[2, 8, 7, 7]);
    let c = f(&[8]);
    let bn = Op::BatchNorm { epsilon: 1e-5 };
    assert_eq!(one(&bn, &[x.clone(), c.clone(), c.clone(), c.clone(), c.clone()]), x);
    let e = err(&bn, &[x.clone(), c.clone(), c.clone(), f(&[7]), c.clone()], 1);
    assert!(e.contains("mean [8]"), "{e}");
    for op in
        [Op::Relu, Op::Sigmoid, Op::Tanh, Op::HardSwish, Op::LeakyRelu { alpha: 0.1 }, Op::Identity]
    {
        assert_eq!(one(&op, std::slice::from_ref(&x)), x);
    }
    assert_eq!(one(&Op::Relu, &[t(DType::I32, &[3])]), t(DType::I32, &[3]));
    let s = t(DType::I8, &[]);
    assert_eq!(one(&Op::Clip, &[t(DType::I8, &[3, 4]), s.clone(), s]), t(DType::I8, &[3, 4]));
    let e = err(&Op::Clip, &[f(&[3]), f(&[]), t(DType::F64, &[])], 1);
    assert!(e.contains("max f64[]"), "{e}");
}

#[test]
fn broadcasting_binary_ops() {
    assert_eq!(one(&Op::Add, &[f(&[3, 4, 5]), f(&[5])]), f(&[3, 4, 5]));
    assert_eq!(one(&Op::Mul, &[f(&[1, 4, 1]), f(&[3, 1, 5])]), f(&[3, 4, 5]));
    assert_eq!(one(&Op::Div, &[f(&[]), f(&[2, 2])]), f(&[2, 2]));
    let e = err(&Op::Sub, &[f(&[3, 4]), f(&[5])], 1);
    assert_eq!(e, "cannot broadcast f32[3,4] with f32[5]");
    let e = err(&Op::Add, &[f(&[3]), t(DType::I64, &[3])], 1);
    assert!(e.contains("dtype"), "{e}");
}

#[test]
fn matmul_numpy_semantics() {
    assert_eq!(one(&Op::MatMul, &[f(&[3]), f(&[3])]), f(&[]));
    assert_eq!(one(&Op::MatMul, &[f(&[4]), f(&[2, 4, 3])]), f(&[2, 3]));
    assert_eq!(one(&Op::MatMul, &[f(&[1, 2, 3, 4]), f(&[4])]), f(&[1, 2, 3]));
    assert_eq!(one(&Op::MatMul, &[f(&[2, 1, 3, 4]), f(&[5, 4, 6])]), f(&[2, 5, 3, 6]));
    let e = err(&Op::MatMul, &[f(&[3, 4]), f(&[5, 6])], 1);
    assert!(e.contains("inner dims differ"), "{e}");
}

#[test]
fn gemm_transposes_and_bias() {
    let g = |ta, tb| Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: ta, trans_b: tb, clamp: None };
    assert_eq!(one(&g(false, true), &[f(&[2, 3]), f(&[4, 3]), f(&[4])]), f(&[2, 4]));
    assert_eq!(one(&g(true, false), &[f(&[3, 2]), f(&[3, 4]), f(&[1])]), f(&[2, 4]));
    assert_eq!(one(&g(false, false), &[f(&[2, 3]), f(&[3, 4]), f(&[])]), f(&[2, 4]));
    let e = err(&g(false, false), &[f(&[2, 3]), f(&[3, 4]), f(&[2])], 1);
    assert!(e.contains("does not broadcast to [2,4]"), "{e}");
}

#[test]
fn shape_ops() {
    let x = f(&[2, 3, 4]);
    assert_eq!(one(&Op::Concat { axis: 1 }, &[x.clone(), f(&[2, 5, 4])]), f(&[2, 8, 4]));
    let e = err(&Op::Concat { axis: 1 }, &[x.clone(), f(&[3, 5, 4])], 1);
    assert!(e.contains("outside axis 1"), "{e}");
    assert_eq!(one(&Op::Flatten { axis: 0 }, std::slice::from_ref(&x)), f(&[1, 24]));
    assert_eq!(one(&Op::Flatten { axis: 2 }, std::slice::from_ref(&x)), f(&[6, 4]));
    assert_eq!(one(&Op::Reshape { shape: vec![4, 6] }, std::slice::from_ref(&x)), f(&[4, 6]));
    assert!(
        err(&Op::Reshape { shape: vec![5] }, std::slice::from_ref(&x), 1).contains("24 elements")
    );
    assert_eq!(
        one(&Op::Transpose { perm: vec![2, 0, 1] }, std::slice::from_ref(&x)),
        f(&[4, 2, 3])
    );
    assert!(err(&Op::Transpose { perm: vec![0, 0, 1] }, std::slice::from_ref(&x), 1)
        .contains("permutation"));
    assert_eq!(one(&Op::Squeeze { axes: vec![0, 2] }, &[f(&[1, 3, 1])]), f(&[3]));
    assert!(err(&Op::Squeeze { axes: vec![1] }, &[f(&[1, 3, 1])], 1).contains("not 1"));
    assert_eq!(one(&Op::Unsqueeze { axes: vec![0, 3] }, &[f(&[3, 4])]), f(&[1, 3, 4, 1]));
    assert_eq!(one(&Op::Softmax { axis: 2, coerce_2d: false }, std::slice::from_ref(&x)), x);
    let out = infer(&Op::Dropout, &[&x], 2).unwrap();
    assert_eq!(out[1], t(DType::Bool, &[2, 3, 4]));
    assert_eq!(
        one(&Op::Cast { to: DType::F64 }, std::slice::from_ref(&x)),
        t(DType::F64, &[2, 3, 4])
    );
    let idx = t(DType::I64, &[2, 2]);
    assert_eq!(one(&Op::Gather { axis: 1 }, &[x.clone(), idx]), f(&[2, 2, 2, 4]));
}

#[test]
fn pad_and_slice() {
    let x = f(&[1, 3, 4, 5]);
    let op = Op::Pad { mode: PadMode::Constant, pads: vec![0, 0, 1, 2, 0, 0, 3, -1] };
    assert_eq!(one(&op, &[x.clone(), f(&[])]), f(&[1, 3, 8, 6]));
    let op = Op::Pad { mode: PadMode::Reflect, pads: vec![0, 0, -5, 0, 0, 0, 0, 0] };
    assert!(err(&op, std::slice::from_ref(&x), 1).contains("negative size"));
    let s = |axis, start, end, step| SliceAxis { axis, start, end, step };
    let op = Op::Slice { axes: vec![s(0, 0, 3, 1), s(1, 0, 10, 1)] };
    assert_eq!(one(&op, &[f(&[20, 10, 5])]), f(&[3, 10, 5]));
    let op = Op::Slice { axes: vec![s(0, 19, -1, -1), s(1, 9, 0, -3)] };
    assert_eq!(one(&op, &[f(&[20, 10, 5])]), f(&[20, 3, 5]));
    let op = Op::Slice { axes: vec![s(1, 1000, 1000, 1)] };
    assert!(err(&op, &[f(&[20, 10, 5])], 1).contains("not normalized"));
}

#[test]
fn quantize_and_dequantize() {
    let x = f(&[1, 3, 3, 2]);
    let q =
        |axis, block| Op::QuantizeLinear { axis, block_size: block, saturate: true, to: DType::I8 };
    let y = one(&q(None, 0), &[x.clone(), f(&[]), t(DType::I8, &[])]);
    assert_eq!(y, t(DType::I8, &[1, 3, 3, 2]));
    let y = one(&q(Some(1), 0), &[x.clone(), f(&[3]), t(DType::I8, &[3])]);
    assert_eq!(y.dtype, DType::I8);
    let e = err(&q(Some(1), 0), &[x.clone(), f(&[3]), t(DType::U8, &[3])], 1);
    assert!(e.contains("output dtype i8"), "{e}");
    let y = one(&q(Some(1), 2), &[x.clone(), f(&[1, 2, 3, 2])]);
    assert_eq!(y.shape, vec![1, 3, 3, 2]);
    let dq = Op::DequantizeLinear { axis: Some(1), block_size: 0 };
    let y = one(&dq, &[t(DType::U8, &[1, 3, 3, 2]), f(&[3]), t(DType::U8, &[3])]);
    assert_eq!(y, f(&[1, 3, 3, 2]));
    let e = err(&dq, &[t(DType::U8, &[1, 3, 3, 2]), f(&[2])], 1);
    assert!(e.contains("must be [3]"), "{e}");
}

#[test]
fn infer_is_deterministic_and_quant_free() {
    let op = conv(&[3, 3], &[1, 1], &[1, 1, 1, 1], &[1, 1], 1);
    let ins = [f(&[1, 3, 8, 8]), f(&[4, 3, 3, 3])];
    let refs: Vec<&TensorType> = ins.iter().collect();
    let a = infer(&op, &refs, 1).unwrap();
    let b = infer(&op, &refs, 1).unwrap();
    assert_eq!(a, b);
    assert!(a[0].quant.is_none());
}
