//! Where the float interpreter rounds to the reduced formats of a
//! [`crate::format::Precision`]: the graph's f32 constants (weights), f32 tensors between ops
//! (activations), and the ops whose dot products accumulate in the format.
//!
//! Kept apart from `runner.rs` so that the default fp32 path there only gains a check of the
//! format per step.

use crate::error::Result;
use crate::format::FloatFormat;
use crate::ops;
use crate::tensor::Tensor;
use cimc_ir::{DType, Graph, Op, TensorData, ValueDef};

/// Rounds every f32 constant of `g` to `fmt`, in place.
pub(crate) fn round_constants(g: &mut Graph, fmt: FloatFormat) {
    let ids: Vec<_> = g.values().map(|(id, _)| id).collect();
    for id in ids {
        let v = g.value_mut(id);
        if let ValueDef::Const(d) = &v.def {
            if d.dtype() == DType::F32 {
                let vals: Vec<f32> = d.to_f32_vec().into_iter().map(|x| fmt.round_f32(x)).collect();
                v.def = ValueDef::Const(TensorData::from_f32(d.shape().to_vec(), &vals));
            }
        }
    }
}

/// `t` with every element rounded to `fmt` when it is an f32 tensor (others unchanged).
pub(crate) fn round_tensor(t: Tensor, fmt: FloatFormat) -> Tensor {
    match t {
        Tensor::F32(mut a) if !fmt.is_fp32() => {
            a.mapv_inplace(|x| fmt.round_f32(x));
            Tensor::F32(a)
        }
        t => t,
    }
}

/// The ops that accumulate dot products, run with every partial sum rounded to `acc`; `None`
/// for other ops (they run as usual).
pub(crate) fn rounded_acc_op(
    op: &Op,
    ins: &[&Tensor],
    acc: FloatFormat,
) -> Option<Result<Vec<Tensor>>> {
    let one = |r: Result<Tensor>| Some(r.map(|t| vec![t]));
    match op {
        Op::Gemm { alpha, beta, trans_a, trans_b, clamp } => {
            one(ops::rounded_acc::gemm_op(*alpha, *beta, *trans_a, *trans_b, ins, acc)
                .map(|t| ops::clamped(t, *clamp)))
        }
        Op::MatMul => one(ops::rounded_acc::matmul(ins, acc)),
        Op::Conv(_) => Some(Err(ops::unsupported(
            "a reduced accumulation format for a Conv whose weights are not constant",
        ))),
        _ => None,
    }
}
