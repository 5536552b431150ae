//! Helpers shared by the interpreter's tests.
#![allow(dead_code)]

use cimc_interp::{eval_node, Tensor};
use cimc_ir::Op;
use ndarray::{ArrayD, IxDyn};

pub fn f32t(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

pub fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

pub fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

pub fn i32t(shape: &[usize], v: &[i32]) -> Tensor {
    Tensor::I32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

pub fn i8t(shape: &[usize], v: &[i8]) -> Tensor {
    Tensor::I8(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

pub fn u8t(shape: &[usize], v: &[u8]) -> Tensor {
    Tensor::U8(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

/// Evaluates `op` with one output and unwraps.
pub fn ev(op: Op, inputs: &[&Tensor]) -> Tensor {
    eval_node(&op, inputs, 1).unwrap_or_else(|e| panic!("{e}")).remove(0)
}

/// The f32 data of a tensor (panics on another dtype).
pub fn vf(t: &Tensor) -> Vec<f32> {
    t.as_f32().expect("f32 tensor").iter().copied().collect()
}

pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan());
        assert!(ok, "element {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}");
    }
}

/// Deterministic pseudo-random floats in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
