//! The kernels of every op, one file per family, and [`eval`], the dispatcher.
//!
//! Kernels return [`InterpError`]; a kernel knows neither its node's name nor (always) its op's
//! mnemonic, so it reports problems with [`bad`] (a `Node` error with empty names) or
//! [`unsupported`]; [`crate::eval_node`] and the runner fill the names in.

pub(crate) mod activation;
pub(crate) mod cast;
pub(crate) mod conv;
pub(crate) mod conv_transpose;
pub(crate) mod elementwise;
pub(crate) mod erf_fast;
pub mod gemm;
pub(crate) mod gemm_packed;
pub(crate) mod layout;
pub(crate) mod logic;
pub(crate) mod norm;
pub mod num;
pub(crate) mod pool;
pub(crate) mod quant;
pub(crate) mod recurrent;
pub(crate) mod reduce;
pub(crate) mod resize;
pub(crate) mod rounded_acc;
pub(crate) mod shape;
pub(crate) mod simd;
pub(crate) mod unary;
pub(crate) mod variadic;

use crate::error::{InterpError, Result};
use crate::tensor::Tensor;
use activation::Act;
use cimc_ir::Op;
use ndarray::{ArrayD, CowArray, IxDyn};

/// A data error of a kernel: the caller adds the node's name and op.
pub(crate) fn bad(msg: impl Into<String>) -> InterpError {
    InterpError::Node { node: String::new(), op: String::new(), msg: msg.into() }
}

/// An op/dtype combination the interpreter does not execute.
pub(crate) fn unsupported(msg: impl Into<String>) -> InterpError {
    InterpError::Unsupported(msg.into())
}

/// Like [`numeric!`] for the float dtypes only (f32, f64); the body's result is wrapped back
/// with the same variant by the caller.
macro_rules! floats {
    ($t:expr, $a:ident => $body:expr, $what:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $crate::Tensor::F32($body),
            $crate::Tensor::F64($a) => $crate::Tensor::F64($body),
            other => {
                return Err($crate::ops::unsupported(format!(
                    "{} of {} tensors",
                    $what,
                    other.dtype()
                )))
            }
        }
    };
}
pub(crate) use floats;

/// A standard-layout (row-major, contiguous) view of `a`, copying only when needed.
pub(crate) fn contiguous<'a, T: Clone>(a: &'a ArrayD<T>) -> CowArray<'a, T, IxDyn> {
    a.as_standard_layout()
}

/// The row-major contiguous data of `a` (a copy only if `a` is not in standard layout).
pub(crate) fn data_of<T: Clone>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

/// Builds an array from row-major data of the given shape (an invariant of the kernels).
pub(crate) fn array<T>(shape: &[usize], data: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), data)
        .expect("invariant: kernels produce exactly prod(shape) elements")
}

/// Checks the input count of a node: at least `min`, at most `max`.
pub(crate) fn arity(inputs: &[&Tensor], min: usize, max: usize) -> Result<()> {
    if inputs.len() < min || inputs.len() > max {
        let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
        return Err(bad(format!("expects {want} inputs, got {}", inputs.len())));
    }
    Ok(())
}

/// Checks that every input has the dtype of the first.
pub(crate) fn same_dtype(inputs: &[&Tensor]) -> Result<()> {
    if let Some(first) = inputs.first() {
        for (i, t) in inputs.iter().enumerate().skip(1) {
            if t.dtype() != first.dtype() {
                return Err(bad(format!(
                    "input {i} has dtype {}, input 0 has {}",
                    t.dtype(),
                    first.dtype()
                )));
            }
        }
    }
    Ok(())
}

/// Applies a matrix op's fused clamp (`ConvAttrs::clamp`) to its float output, with Clip's
/// semantics (the runner applies the same [`activation::Act::Clip`] in the conv epilogue).
pub(crate) fn clamped(t: Tensor, clamp: Option<(f32, f32)>) -> Tensor {
    let Some((lo, hi)) = clamp else { return t };
    let act = activation::Act::Clip(lo as f64, hi as f64);
    match t {
        Tensor::F32(a) => {
            let mut a = activation::standard(a);
            act.apply(a.as_slice_mut().expect("invariant: standard() is contiguous"));
            Tensor::F32(a)
        }
        Tensor::F64(a) => {
            let mut a = activation::standard(a);
            act.apply(a.as_slice_mut().expect("invariant: standard() is contiguous"));
            Tensor::F64(a)
        }
        other => other,
    }
}

/// Evaluates one op. `n_outputs` is the number of outputs the node has (MaxPool's indices
/// and Dropout's mask are produced only when asked for).
pub(crate) fn eval(op: &Op, inputs: &[&Tensor], n_outputs: usize) -> Result<Vec<Tensor>> {
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        Op::Conv(a) => one(clamped(conv::conv(a, inputs)?, a.clamp)),
        Op::BatchNorm { epsilon } => {
            arity(inputs, 5, 5)?;
            one(activation::batch_norm(*epsilon, inputs[0].clone(), &inputs[1..])?)
        }
        Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Sigmoid
        | Op::HardSigmoid { .. }
        | Op::HardSwish
        | Op::Tanh => {
            arity(inputs, 1, 1)?;
            one(activation::unary(op, inputs[0].clone())?)
        }
        Op::Clip => {
            arity(inputs, 1, 3)?;
            one(activation::clip(inputs[0].clone(), &inputs[1..])?)
        }
        Op::MaxPool(a) => pool::max_pool(a, inputs, n_outputs),
        Op::AveragePool(a) => one(pool::average_pool(a, inputs)?),
        Op::GlobalAveragePool => one(pool::global_average_pool(inputs)?),
        Op::Gemm { alpha, beta, trans_a, trans_b, clamp } => {
            one(clamped(gemm::gemm_op(*alpha, *beta, *trans_a, *trans_b, inputs)?, *clamp))
        }
        Op::MatMul => one(gemm::matmul(inputs)?),
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            arity(inputs, 2, 2)?;
            one(elementwise::binary(op, inputs[0], inputs[1])?)
        }
        Op::Concat { axis } => one(shape::concat(*axis, inputs)?),
        Op::Flatten { axis } => one(shape::flatten(*axis, single(inputs)?.clone())?),
        Op::Reshape { shape } => {
            arity(inputs, 1, 2)?;
            one(shape::reshape(shape, inputs[0].clone())?)
        }
        Op::Transpose { perm } => one(shape::transpose(perm, single(inputs)?)?),
        Op::Squeeze { axes } => {
            arity(inputs, 1, 2)?;
            one(shape::squeeze(axes, inputs[0].clone())?)
        }
        Op::Unsqueeze { axes } => {
            arity(inputs, 1, 2)?;
            one(shape::unsqueeze(axes, inputs[0].clone())?)
        }
        Op::Softmax { axis, coerce_2d } => {
            one(activation::softmax(*axis, *coerce_2d, single(inputs)?)?)
        }
        Op::Identity => one(single(inputs)?.clone()),
        Op::Dropout => {
            arity(inputs, 1, 3)?;
            shape::dropout(inputs[0].clone(), n_outputs)
        }
        Op::Pad { mode, pads } => one(shape::pad(*mode, pads, inputs)?),
        Op::Gather { axis } => {
            arity(inputs, 2, 2)?;
            one(shape::gather(*axis, inputs[0], inputs[1])?)
        }
        Op::Slice { axes } => {
            arity(inputs, 1, 5)?;
            one(shape::slice(axes, inputs[0])?)
        }
        Op::Cast { to } => one(cast::cast(single(inputs)?, *to)),
        Op::QuantizeLinear { axis, block_size, to, .. } => {
            one(quant::quantize_linear(*axis, *block_size, *to, inputs)?)
        }
        Op::DequantizeLinear { axis, block_size } => {
            one(quant::dequantize_linear(*axis, *block_size, inputs)?)
        }
        Op::Unary(f) => one(unary::eval(*f, single(inputs)?.clone())?),
        Op::Variadic(f) => one(variadic::eval(*f, inputs)?),
        Op::Reduce(r) => one(reduce::eval(r, single(inputs)?)?),
        Op::Pow => {
            arity(inputs, 2, 2)?;
            one(elementwise::pow(inputs[0], inputs[1])?)
        }
        Op::PRelu => {
            arity(inputs, 2, 2)?;
            one(elementwise::prelu(inputs[0], inputs[1])?)
        }
        Op::ArgMax { axis, keep_dims, select_last } => {
            one(reduce::arg_extreme(single(inputs)?, *axis, *keep_dims, *select_last, true)?)
        }
        Op::ArgMin { axis, keep_dims, select_last } => {
            one(reduce::arg_extreme(single(inputs)?, *axis, *keep_dims, *select_last, false)?)
        }
        Op::TopK { axis, k, largest } => {
            let mut out = layout::top_k(single(inputs)?, *axis, *k, *largest)?;
            out.truncate(n_outputs.max(1));
            Ok(out)
        }
        Op::Compare(f) => {
            arity(inputs, 2, 2)?;
            one(logic::compare(*f, inputs[0], inputs[1])?)
        }
        Op::Logic(f) => {
            arity(inputs, 2, 2)?;
            one(logic::logic(*f, inputs[0], inputs[1])?)
        }
        Op::Not => one(logic::not(single(inputs)?.clone())?),
        Op::Where => {
            arity(inputs, 3, 3)?;
            one(logic::where_(inputs[0], inputs[1], inputs[2])?)
        }
        Op::Trunc { rounding, clamp } => one(quant::trunc(*rounding, *clamp, inputs)?),
        Op::MultiThreshold { out_scale, out_bias, channels_last } => {
            one(quant::multi_threshold(*out_scale, *out_bias, *channels_last, inputs)?)
        }
        Op::Expand { shape } => one(layout::expand(shape, single(inputs)?)?),
        Op::Tile { repeats } => one(layout::tile(repeats, single(inputs)?)?),
        Op::Split { axis, sizes } => layout::split(*axis, sizes, single(inputs)?),
        Op::DepthToSpace { block, crd } => {
            one(layout::depth_to_space(*block, *crd, single(inputs)?)?)
        }
        Op::SpaceToDepth { block, crd } => {
            one(layout::space_to_depth(*block, *crd, single(inputs)?)?)
        }
        Op::Resize(a) => one(resize::resize(a, single(inputs)?)?),
        Op::ZeroInsert { strides, pads } => {
            one(layout::zero_insert(strides, pads, single(inputs)?)?)
        }
        Op::LogSoftmax { axis, coerce_2d } => {
            one(norm::log_softmax(*axis, *coerce_2d, single(inputs)?)?)
        }
        Op::Lrn { size, alpha, beta, bias } => {
            one(norm::lrn(*size, *alpha, *beta, *bias, single(inputs)?)?)
        }
        Op::InstanceNorm { epsilon } => one(norm::instance_norm(*epsilon, inputs)?),
        Op::LayerNorm { axis, epsilon } => one(norm::layer_norm(*axis, *epsilon, inputs)?),
        Op::ConvTranspose { conv, output_padding } => {
            one(conv_transpose::conv_transpose(conv, output_padding, inputs)?)
        }
        Op::Lstm(a) => recurrent::eval(cimc_ir::RecurrentCell::Lstm, a, inputs, n_outputs),
        Op::Gru(a) => recurrent::eval(cimc_ir::RecurrentCell::Gru, a, inputs, n_outputs),
        Op::Rnn(a) => recurrent::eval(cimc_ir::RecurrentCell::Rnn, a, inputs, n_outputs),
    }
}

/// The activation an op is, for the ops that [`activation::unary`] runs and the runner fuses
/// into a convolution's epilogue (Clip, whose bounds are inputs, is made by the runner when
/// they are constants).
pub(crate) fn activation_of(op: &Op) -> Option<Act> {
    Some(match op {
        Op::Relu => Act::Relu,
        Op::LeakyRelu { alpha } => Act::LeakyRelu(*alpha),
        Op::Sigmoid => Act::Sigmoid,
        Op::HardSigmoid { alpha, beta } => Act::HardSigmoid(*alpha, *beta),
        Op::HardSwish => Act::HardSwish,
        Op::Tanh => Act::Tanh,
        Op::TopK { .. } => return None,
        Op::Clip
        | Op::Conv(_)
        | Op::BatchNorm { .. }
        | Op::MaxPool(_)
        | Op::AveragePool(_)
        | Op::GlobalAveragePool
        | Op::Gemm { .. }
        | Op::MatMul
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Concat { .. }
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Softmax { .. }
        | Op::Identity
        | Op::Dropout
        | Op::Pad { .. }
        | Op::Gather { .. }
        | Op::Slice { .. }
        | Op::Cast { .. }
        | Op::QuantizeLinear { .. }
        | Op::DequantizeLinear { .. }
        | Op::Unary(_)
        | Op::Variadic(_)
        | Op::Reduce(_)
        | Op::Pow
        | Op::PRelu
        | Op::ArgMax { .. }
        | Op::ArgMin { .. }
        | Op::Compare(_)
        | Op::Logic(_)
        | Op::Not
        | Op::Where
        | Op::Trunc { .. }
        | Op::MultiThreshold { .. }
        | Op::Expand { .. }
        | Op::Tile { .. }
        | Op::Split { .. }
        | Op::DepthToSpace { .. }
        | Op::SpaceToDepth { .. }
        | Op::Resize(_)
        | Op::LogSoftmax { .. }
        | Op::Lrn { .. }
        | Op::InstanceNorm { .. }
        | Op::LayerNorm { .. }
        | Op::ConvTranspose { .. }
        | Op::Lstm(_)
        | Op::Gru(_)
        | Op::Rnn(_)
        | Op::ZeroInsert { .. } => return None,
    })
}

/// The only input of a one-input op.
fn single<'a>(inputs: &[&'a Tensor]) -> Result<&'a Tensor> {
    arity(inputs, 1, 1)?;
    Ok(inputs[0])
}

/// Threshold (elements) above which an elementwise loop is split over threads.
pub(crate) const PAR_MIN: usize = 1 << 15;
