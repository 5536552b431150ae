//! Activations, arithmetic, Gemm/MatMul, Clip, Softmax, Dropout, Cast, the elementwise
//! functions of `UnaryOp` and `VariadicOp`, and Pow.

use super::{norm_axis, show, Ctx, Import, Lowered, R};
use crate::onnx::tensor::dtype_of;
use cimc_ir::{DType, Op, TensorData, UnaryOp, VariadicOp};

/// The ONNX ops this file lowers.
pub(super) const IMPORTS: &[Import] = &[
    Import::new("Relu", unary),
    Import::new("Sigmoid", unary),
    Import::new("Tanh", unary),
    Import::new("HardSwish", unary),
    Import::new("Identity", unary),
    Import::new("LeakyRelu", unary),
    Import::new("HardSigmoid", unary),
    Import::new("Add", binary),
    Import::new("Sub", binary),
    Import::new("Mul", binary),
    Import::new("Div", binary),
    Import::new("MatMul", binary),
    Import::new("Clip", clip),
    Import::new("Gemm", gemm),
    Import::new("Softmax", softmax),
    Import::new("LogSoftmax", softmax),
    Import::new("Dropout", dropout).note("inference mode"),
    Import::new("Cast", cast),
    Import::new("Exp", unary_fn),
    Import::new("Erf", unary_fn),
    Import::new("Sqrt", unary_fn),
    Import::new("Selu", unary_fn),
    Import::new("Log", unary_fn),
    Import::new("Sum", variadic),
    Import::new("Pow", pow),
];

pub fn unary(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let op = match ctx.op_type {
        "LeakyRelu" => {
            ctx.attrs.check_known(&["alpha"])?;
            Op::LeakyRelu { alpha: ctx.attrs.float_or("alpha", 0.01)? }
        }
        "HardSigmoid" => {
            ctx.attrs.check_known(&["alpha", "beta"])?;
            Op::HardSigmoid {
                alpha: ctx.attrs.float_or("alpha", 0.2)?,
                beta: ctx.attrs.float_or("beta", 0.5)?,
            }
        }
        other => {
            ctx.attrs.check_known(&[])?;
            match other {
                "Relu" => Op::Relu,
                "Sigmoid" => Op::Sigmoid,
                "Tanh" => Op::Tanh,
                "HardSwish" => Op::HardSwish,
                _ => Op::Identity,
            }
        }
    };
    Ok(Lowered::Op(op, vec![ctx.input(0)?]))
}

pub fn binary(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let op = match ctx.op_type {
        "Add" => Op::Add,
        "Sub" => Op::Sub,
        "Mul" => Op::Mul,
        "Div" => Op::Div,
        _ => Op::MatMul,
    };
    Ok(Lowered::Op(op, vec![ctx.input(0)?, ctx.input(1)?]))
}

/// The IR Clip always has `x, min, max`: absent bounds become the dtype's extremes (infinities
/// for floats, so NaN and infinities pass as they do without a bound).
pub fn clip(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let dtype = ctx.ty(x).dtype;
    if ctx.opset < 11 {
        ctx.attrs.check_known(&["min", "max"])?;
        ctx.max_inputs(1)?;
        if !dtype.is_float() {
            return Err(format!(
                "opset {} Clip needs a float input, got {}",
                ctx.opset,
                show(ctx.ty(x))
            ));
        }
        let lo = ctx.attrs.float_or("min", f32::NEG_INFINITY)? as f64;
        let hi = ctx.attrs.float_or("max", f32::INFINITY)? as f64;
        let lo = ctx.add_const("min", float_scalar(dtype, lo));
        let hi = ctx.add_const("max", float_scalar(dtype, hi));
        return Ok(Lowered::Op(Op::Clip, vec![x, lo, hi]));
    }
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(3)?;
    let lo = match ctx.opt(1) {
        Some(v) => v,
        None => ctx.add_const("min", bound(dtype, false)?),
    };
    let hi = match ctx.opt(2) {
        Some(v) => v,
        None => ctx.add_const("max", bound(dtype, true)?),
    };
    Ok(Lowered::Op(Op::Clip, vec![x, lo, hi]))
}

fn float_scalar(dtype: DType, v: f64) -> TensorData {
    if dtype == DType::F64 {
        TensorData::from_f64(vec![], &[v])
    } else {
        TensorData::from_f32(vec![], &[v as f32])
    }
}

/// The smallest (`max` false) or largest value of `dtype`, as a scalar.
fn bound(dtype: DType, max: bool) -> R<TensorData> {
    let s = vec![];
    Ok(match (dtype, max) {
        (DType::F32, m) => {
            TensorData::from_f32(s, &[if m { f32::INFINITY } else { f32::NEG_INFINITY }])
        }
        (DType::F64, m) => {
            TensorData::from_f64(s, &[if m { f64::INFINITY } else { f64::NEG_INFINITY }])
        }
        (DType::I8, m) => TensorData::from_i8(s, &[if m { i8::MAX } else { i8::MIN }]),
        (DType::U8, m) => TensorData::from_u8(s, &[if m { u8::MAX } else { u8::MIN }]),
        (DType::I16, m) => TensorData::from_i16(s, &[if m { i16::MAX } else { i16::MIN }]),
        (DType::U16, m) => TensorData::from_u16(s, &[if m { u16::MAX } else { u16::MIN }]),
        (DType::I32, m) => TensorData::from_i32(s, &[if m { i32::MAX } else { i32::MIN }]),
        (DType::I64, m) => TensorData::from_i64(s, &[if m { i64::MAX } else { i64::MIN }]),
        (DType::Bool, _) => return Err("Clip of a bool tensor".into()),
    })
}

pub fn gemm(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["alpha", "beta", "transA", "transB"])?;
    ctx.max_inputs(3)?;
    ctx.max_outputs(1)?;
    let op = Op::Gemm {
        alpha: ctx.attrs.float_or("alpha", 1.0)?,
        beta: ctx.attrs.float_or("beta", 1.0)?,
        trans_a: ctx.attrs.bool_or("transA", false)?,
        trans_b: ctx.attrs.bool_or("transB", false)?,
        clamp: None,
    };
    let mut inputs = vec![ctx.input(0)?, ctx.input(1)?];
    inputs.extend(ctx.opt(2));
    Ok(Lowered::Op(op, inputs))
}

/// Before opset 13 Softmax (and LogSoftmax) flattens to 2-D at `axis` (default 1); from 13
/// it works along one axis (default -1). Both agree when at most one of the flattened axes
/// has a size other than 1 (the last axis; SqueezeNet's `[N, C, 1, 1]` at axis 1): that is
/// recorded as the plain form along that axis.
pub fn softmax(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["axis"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape.clone();
    let rank = shape.len();
    let old = ctx.opset < 13;
    let axis = ctx.attrs.int_or("axis", if old { 1 } else { -1 })?;
    let mut axis = norm_axis(axis, rank, false)?;
    let mut coerce_2d = false;
    if old {
        let wide: Vec<usize> = (axis..rank).filter(|&i| shape[i] != 1).collect();
        match wide[..] {
            [] => {}
            [only] => axis = only,
            _ => coerce_2d = true,
        }
    }
    let op = if ctx.op_type == "LogSoftmax" {
        Op::LogSoftmax { axis, coerce_2d }
    } else {
        Op::Softmax { axis, coerce_2d }
    };
    Ok(Lowered::Op(op, vec![x]))
}

/// Inference-mode Dropout: the identity (plus an all-true mask).
pub fn dropout(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_outputs(2)?;
    if ctx.opset < 12 {
        ctx.attrs.check_known(&["ratio", "seed"])?;
        ctx.max_inputs(1)?;
        if ctx.opset < 10 && ctx.n_outputs == 2 {
            // The mask has the input's type (bool from opset 10): all ones in inference.
            let x = ctx.input(0)?;
            let t = ctx.ty(x).clone();
            ctx.imp.reader.check_created(t.dtype, &t.shape)?;
            let n = t.numel();
            let ones = match t.dtype {
                DType::F32 => TensorData::from_f32(t.shape.clone(), &vec![1.0; n]),
                DType::F64 => TensorData::from_f64(t.shape.clone(), &vec![1.0; n]),
                other => return Err(format!("expected a float input, got {other}")),
            };
            return Ok(Lowered::OpThenConsts(Op::Dropout, vec![x], vec![ones]));
        }
    } else {
        ctx.attrs.check_known(&["seed"])?;
        ctx.max_inputs(3)?;
        if let Some(t) = ctx.opt(2) {
            // A non-constant training_mode is taken as false (inference).
            if let Some(d) = ctx.data(t) {
                if d.numel() != 1 || d.dtype() != DType::Bool {
                    return Err(format!(
                        "training_mode must be a bool scalar, got {}{:?}",
                        d.dtype(),
                        d.shape()
                    ));
                }
                if d.get_i64(0) != 0 {
                    return Err(
                        "training_mode is true: training-mode Dropout is not supported".into()
                    );
                }
            }
        }
    }
    Ok(Lowered::Op(Op::Dropout, vec![ctx.input(0)?]))
}

pub fn cast(ctx: &mut Ctx) -> R<Lowered> {
    // `saturate` and `round_mode` only concern float8 targets, which are refused anyway.
    ctx.attrs.check_known(&["to", "saturate", "round_mode"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let to = ctx.attrs.int("to")?.ok_or("attribute 'to' is required")?;
    let to = i32::try_from(to).map_err(|_| format!("attribute 'to': bad type code {to}"))?;
    let to = dtype_of(to).map_err(|e| format!("attribute 'to': {e}"))?;
    Ok(Lowered::Op(Op::Cast { to }, vec![ctx.input(0)?]))
}

/// The elementwise functions of [`UnaryOp`], with their attributes' defaults.
pub fn unary_fn(ctx: &mut Ctx) -> R<Lowered> {
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let f = match ctx.op_type {
        "Selu" => {
            ctx.attrs.check_known(&["alpha", "gamma"])?;
            UnaryOp::Selu {
                alpha: ctx.attrs.float_or("alpha", 1.673_263_2)?,
                gamma: ctx.attrs.float_or("gamma", 1.050_701)?,
            }
        }
        other => {
            ctx.attrs.check_known(&[])?;
            match other {
                "Exp" => UnaryOp::Exp,
                "Erf" => UnaryOp::Erf,
                "Sqrt" => UnaryOp::Sqrt,
                "Log" => UnaryOp::Log,
                _ => unreachable!(
                    "invariant: IMPORTS registers only unary functions with `unary`, not {other}"
                ),
            }
        }
    };
    Ok(Lowered::Op(Op::Unary(f), vec![ctx.input(0)?]))
}

/// The elementwise functions of [`VariadicOp`] over one or more inputs.
pub fn variadic(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_outputs(1)?;
    let f = match ctx.op_type {
        "Sum" => VariadicOp::Sum,
        other => unreachable!(
            "invariant: IMPORTS registers only variadic functions with `variadic`, not {other}"
        ),
    };
    if ctx.n_inputs() == 0 {
        return Err("expected at least 1 input, got 0".into());
    }
    let inputs = (0..ctx.n_inputs()).map(|i| ctx.input(i)).collect::<R<Vec<_>>>()?;
    Ok(Lowered::Op(Op::Variadic(f), inputs))
}

pub fn pow(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    Ok(Lowered::Op(Op::Pow, vec![ctx.input(0)?, ctx.input(1)?]))
}
