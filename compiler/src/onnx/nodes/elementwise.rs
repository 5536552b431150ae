//! Activations, arithmetic, Gemm/MatMul, Clip, Softmax, Dropout, Cast, the elementwise
//! functions of `UnaryOp` and `VariadicOp`, Pow, PRelu, ImageScaler, and the comparisons and
//! logical ops (`CompareOp`, `LogicOp`, Not, Where).

use super::{norm_axis, show, Ctx, Import, Lowered, R};
use crate::onnx::tensor::dtype_of;
use cimc_ir::{CompareOp, DType, LogicOp, Op, TensorData, UnaryOp, VariadicOp};

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
    Import::new("Abs", unary_fn).note("float"),
    Import::new("Neg", unary_fn).note("float"),
    Import::new("Reciprocal", unary_fn),
    Import::new("Ceil", unary_fn),
    Import::new("Floor", unary_fn),
    Import::new("Round", unary_fn),
    Import::new("Softplus", unary_fn),
    Import::new("Softsign", unary_fn),
    Import::new("Elu", unary_fn),
    Import::new("Celu", unary_fn),
    Import::new("Mish", unary_fn),
    Import::new("ThresholdedRelu", unary_fn),
    Import::new("Shrink", unary_fn).note("float"),
    Import::new("Gelu", unary_fn),
    Import::new("Min", variadic),
    Import::new("Max", variadic),
    Import::new("Mean", variadic),
    Import::new("PRelu", prelu)
        .note("the slope broadcasts to the input (a [C] slope of an NCHW input is refused, as onnxruntime does)"),
    Import::new("ImageScaler", image_scaler).note("as a BatchNormalization"),
    Import::new("Equal", compare),
    Import::new("Less", compare),
    Import::new("LessOrEqual", compare),
    Import::new("Greater", compare),
    Import::new("GreaterOrEqual", compare),
    Import::new("And", logic),
    Import::new("Or", logic),
    Import::new("Xor", logic),
    Import::new("Not", logic),
    Import::new("Where", where_),
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
        "Elu" | "Celu" | "ThresholdedRelu" => {
            ctx.attrs.check_known(&["alpha"])?;
            let alpha = ctx.attrs.float_or("alpha", 1.0)?;
            match ctx.op_type {
                "Elu" => UnaryOp::Elu { alpha },
                "Celu" if alpha == 0.0 => return Err("Celu's alpha must not be 0".into()),
                "Celu" => UnaryOp::Celu { alpha },
                _ => UnaryOp::ThresholdedRelu { alpha },
            }
        }
        "Shrink" => {
            ctx.attrs.check_known(&["bias", "lambd"])?;
            UnaryOp::Shrink {
                bias: ctx.attrs.float_or("bias", 0.0)?,
                lambd: ctx.attrs.float_or("lambd", 0.5)?,
            }
        }
        "Gelu" => {
            ctx.attrs.check_known(&["approximate"])?;
            match ctx.attrs.string("approximate")?.as_deref() {
                None | Some("none") => UnaryOp::Gelu { tanh: false },
                Some("tanh") => UnaryOp::Gelu { tanh: true },
                Some(other) => {
                    return Err(format!(
                        "attribute 'approximate' must be \"none\" or \"tanh\", got \"{other}\""
                    ))
                }
            }
        }
        other => {
            ctx.attrs.check_known(&[])?;
            match other {
                "Exp" => UnaryOp::Exp,
                "Erf" => UnaryOp::Erf,
                "Sqrt" => UnaryOp::Sqrt,
                "Log" => UnaryOp::Log,
                "Abs" => UnaryOp::Abs,
                "Neg" => UnaryOp::Neg,
                "Reciprocal" => UnaryOp::Reciprocal,
                "Ceil" => UnaryOp::Ceil,
                "Floor" => UnaryOp::Floor,
                "Round" => UnaryOp::Round,
                "Softplus" => UnaryOp::Softplus,
                "Softsign" => UnaryOp::Softsign,
                "Mish" => UnaryOp::Mish,
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
        "Min" => VariadicOp::Min,
        "Max" => VariadicOp::Max,
        "Mean" => VariadicOp::Mean,
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

/// PRelu: the slope broadcasts to the input unidirectionally (opset 7 on). The per-channel
/// slope `[C]` of an `[N,C,H,W]` input that some exporters wrote for opset 6 does not, and
/// onnxruntime refuses it at every opset it runs: so does the importer, saying so, from opset 7
/// (below, where the slope is per channel, `legacy.rs` reshapes it to `[C,1,..]`).
pub fn prelu(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let (x, slope) = (ctx.input(0)?, ctx.input(1)?);
    let (xt, st) = (ctx.ty(x), ctx.ty(slope));
    let fits = cimc_ir::infer::broadcast(&xt.shape, &st.shape).as_deref() == Some(&xt.shape[..]);
    if !fits {
        let per_channel = st.rank() == 1 && xt.rank() >= 3 && xt.shape[1] == st.shape[0];
        let hint = if per_channel {
            " (a per-channel slope must be [C,1,1..] from opset 7; onnxruntime refuses it too)"
        } else {
            ""
        };
        return Err(format!(
            "slope {} does not broadcast to the input {}{hint}",
            show(st),
            show(xt)
        ));
    }
    Ok(Lowered::Op(Op::PRelu, vec![x, slope]))
}

/// ImageScaler (experimental, before opset 10): `scale · x + bias[c]` over `[N,C,H,W]`,
/// which is a BatchNormalization with mean 0, variance 1 and epsilon 0 (dividing by √1 is
/// exact), so it folds into a preceding convolution and runs on codes as one.
pub fn image_scaler(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&["bias", "scale"])?;
    ctx.max_inputs(1)?;
    ctx.max_outputs(1)?;
    let x = ctx.input(0)?;
    let t = ctx.ty(x).clone();
    if t.dtype != DType::F32 || t.rank() < 2 {
        return Err(format!("expected a float input [N,C,..], got {}", show(&t)));
    }
    let c = t.shape[1];
    let scale = ctx.attrs.float_or("scale", 1.0)?;
    let bias = match ctx.attrs.floats("bias")? {
        Some(b) if b.len() == c => b.to_vec(),
        Some(b) => return Err(format!("attribute 'bias' has {} values for {c} channels", b.len())),
        None => vec![0.0; c],
    };
    let per_channel = |v: Vec<f32>| TensorData::from_f32(vec![c], &v);
    let scale = ctx.add_const("scale", per_channel(vec![scale; c]));
    let bias = ctx.add_const("bias", per_channel(bias));
    let mean = ctx.add_const("mean", per_channel(vec![0.0; c]));
    let var = ctx.add_const("var", per_channel(vec![1.0; c]));
    Ok(Lowered::Op(Op::BatchNorm { epsilon: 0.0 }, vec![x, scale, bias, mean, var]))
}

/// The comparisons of [`CompareOp`] (inputs of one dtype; bool result).
pub fn compare(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(2)?;
    ctx.max_outputs(1)?;
    let f = match ctx.op_type {
        "Equal" => CompareOp::Equal,
        "Less" => CompareOp::Less,
        "LessOrEqual" => CompareOp::LessOrEqual,
        "Greater" => CompareOp::Greater,
        "GreaterOrEqual" => CompareOp::GreaterOrEqual,
        other => unreachable!(
            "invariant: IMPORTS registers only comparisons with `compare`, not {other}"
        ),
    };
    Ok(Lowered::Op(Op::Compare(f), vec![ctx.input(0)?, ctx.input(1)?]))
}

/// And, Or, Xor ([`LogicOp`]) and Not, on bool tensors.
pub fn logic(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_outputs(1)?;
    if ctx.op_type == "Not" {
        ctx.max_inputs(1)?;
        return Ok(Lowered::Op(Op::Not, vec![ctx.input(0)?]));
    }
    ctx.max_inputs(2)?;
    let f = match ctx.op_type {
        "And" => LogicOp::And,
        "Or" => LogicOp::Or,
        "Xor" => LogicOp::Xor,
        other => {
            unreachable!("invariant: IMPORTS registers only logical ops with `logic`, not {other}")
        }
    };
    Ok(Lowered::Op(Op::Logic(f), vec![ctx.input(0)?, ctx.input(1)?]))
}

pub fn where_(ctx: &mut Ctx) -> R<Lowered> {
    ctx.attrs.check_known(&[])?;
    ctx.max_inputs(3)?;
    ctx.max_outputs(1)?;
    Ok(Lowered::Op(Op::Where, vec![ctx.input(0)?, ctx.input(1)?, ctx.input(2)?]))
}
