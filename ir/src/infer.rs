//! Shape and type inference for every op (the importer's and the verifier's single source).
//!
//! [`infer`] is pure and deterministic: it looks only at the op's resolved attributes and the
//! input types, checks the input count, dtypes and shapes, and returns the output types. Its
//! errors say what was expected and what was found (callers prefix them with the node). Output
//! types carry no quantization parameters: those are the business of the quantization passes.

use crate::{ConvAttrs, DType, Op, PadMode, PoolAttrs, TensorType};

mod spatial;

type R<T> = Result<T, String>;

/// The output types of `op` applied to inputs of the given types, producing `n_outputs` outputs.
/// The error says what was expected (it is prefixed with the node by callers). The input and
/// output counts are the op table's ([`Op::arity`]); then one function per op family.
pub fn infer(op: &Op, inputs: &[&TensorType], n_outputs: usize) -> Result<Vec<TensorType>, String> {
    let (ins, outs_range) = op.arity();
    arity(inputs, *ins.start(), *ins.end())?;
    outs(n_outputs, *outs_range.start(), *outs_range.end())?;
    let one = |t: TensorType| vec![t];
    let Some(&x) = inputs.first() else { return Err("expected at least 1 input, got 0".into()) };
    match op {
        Op::Conv(a) => conv(a, inputs).map(one),
        Op::BatchNorm { epsilon } => batch_norm(*epsilon, inputs).map(one),
        Op::Relu => relu(x).map(one),
        Op::LeakyRelu { .. } | Op::Sigmoid | Op::HardSigmoid { .. } | Op::HardSwish | Op::Tanh => {
            float_input(x, "input").map(|()| one(plain(x)))
        }
        Op::Clip => clip(inputs).map(one),
        Op::MaxPool(a) => max_pool(a, x, n_outputs),
        Op::AveragePool(a) => float_input(x, "input").and_then(|()| pool(a, x)).map(one),
        Op::GlobalAveragePool => global_average_pool(x).map(one),
        Op::Gemm { trans_a, trans_b, .. } => gemm(inputs, *trans_a, *trans_b).map(one),
        Op::MatMul => matmul(x, inputs[1]).map(one),
        Op::Add | Op::Sub | Op::Mul | Op::Div => arithmetic(x, inputs[1]).map(one),
        Op::Concat { axis } => concat(inputs, *axis).map(one),
        Op::Flatten { axis } => flatten(x, *axis).map(one),
        Op::Reshape { shape } => reshape(x, shape).map(one),
        Op::Transpose { perm } => transpose(x, perm).map(one),
        Op::Squeeze { axes } => squeeze(x, axes).map(one),
        Op::Unsqueeze { axes } => unsqueeze(x, axes).map(one),
        Op::Softmax { axis, .. } => softmax(x, *axis).map(one),
        Op::Identity => Ok(one(plain(x))),
        Op::Dropout => dropout(x, n_outputs),
        Op::Pad { mode, pads } => pad(inputs, *mode, pads).map(one),
        Op::Gather { axis } => gather(x, inputs[1], *axis).map(one),
        Op::Slice { axes } => slice(x, axes).map(one),
        Op::Cast { to } => Ok(one(TensorType::new(*to, x.shape.clone()))),
        Op::QuantizeLinear { axis, block_size, to, .. } => {
            quantize_linear(inputs, *axis, *block_size, *to).map(one)
        }
        Op::DequantizeLinear { axis, block_size } => {
            dequantize_linear(inputs, *axis, *block_size).map(one)
        }
        Op::Unary(_) => float_input(x, "input").map(|()| one(plain(x))),
        Op::Variadic(f) => variadic(*f, inputs).map(one),
        Op::Reduce(r) => reduce(x, r).map(one),
        Op::Pow => pow(x, inputs[1]).map(one),
        Op::PRelu => prelu(x, inputs[1]).map(one),
        Op::ArgMax { axis, keep_dims, .. } | Op::ArgMin { axis, keep_dims, .. } => {
            arg_extreme(x, *axis, *keep_dims).map(one)
        }
        Op::TopK { axis, k, .. } => top_k(x, *axis, *k, n_outputs),
        Op::Compare(f) => compare(*f, x, inputs[1]).map(one),
        Op::Logic(_) => logic(x, inputs[1]).map(one),
        Op::Not => {
            bool_input(x, "input").map(|()| one(TensorType::new(DType::Bool, x.shape.clone())))
        }
        Op::Where => where_(inputs).map(one),
        Op::Trunc { .. } => trunc(inputs).map(one),
        Op::MultiThreshold { channels_last, .. } => {
            multi_threshold(x, inputs[1], *channels_last).map(one)
        }
        Op::Expand { shape } => spatial::expand(x, shape).map(one),
        Op::Tile { repeats } => spatial::tile(x, repeats).map(one),
        Op::Split { axis, sizes } => spatial::split(x, *axis, sizes, n_outputs),
        Op::DepthToSpace { block, .. } => spatial::depth_to_space(x, *block).map(one),
        Op::SpaceToDepth { block, .. } => spatial::space_to_depth(x, *block).map(one),
        Op::Resize(a) => spatial::resize(x, a).map(one),
        Op::ZeroInsert { strides, pads } => spatial::zero_insert(x, strides, pads).map(one),
        Op::LogSoftmax { axis, .. } => softmax(x, *axis).map(one),
        Op::Lrn { size, .. } => spatial::lrn(x, *size).map(one),
        Op::InstanceNorm { epsilon } => spatial::instance_norm(*epsilon, inputs).map(one),
        Op::LayerNorm { axis, epsilon } => spatial::layer_norm(*axis, *epsilon, inputs).map(one),
        Op::ConvTranspose { conv, output_padding } => {
            spatial::conv_transpose(conv, output_padding, inputs).map(one)
        }
        Op::Lstm(a) => spatial::recurrent(a, 4, 3, inputs, n_outputs),
        Op::Gru(a) => spatial::recurrent(a, 3, 2, inputs, n_outputs),
        Op::Rnn(a) => spatial::recurrent(a, 1, 1, inputs, n_outputs),
    }
}

/// Trunc: f32 x and five f32 parameters, each broadcasting to x's shape.
fn trunc(inputs: &[&TensorType]) -> R<TensorType> {
    let x = inputs[0];
    let names = ["x", "scale", "zero point", "trunc scale", "output zero point", "output scale"];
    for (t, what) in inputs.iter().zip(names) {
        if t.dtype != DType::F32 {
            return Err(format!("expected an f32 {what}, got {}", show(t)));
        }
        if broadcast(&t.shape, &x.shape).as_deref() != Some(&x.shape[..]) {
            return Err(format!("the {what} {} does not broadcast to x {}", show(t), show(x)));
        }
    }
    Ok(plain(x))
}

/// MultiThreshold: f32 x of rank >= 2, f32 thresholds `[C or 1, T]`.
fn multi_threshold(x: &TensorType, t: &TensorType, channels_last: bool) -> R<TensorType> {
    if x.dtype != DType::F32 || t.dtype != DType::F32 {
        return Err(format!("expected f32 x and thresholds, got {} and {}", show(x), show(t)));
    }
    if x.rank() < 2 || t.rank() != 2 {
        return Err(format!(
            "expected x of rank >= 2 and thresholds [C, T], got {} and {}",
            show(x),
            show(t)
        ));
    }
    let channels = if channels_last { x.shape[x.rank() - 1] } else { x.shape[1] };
    if t.shape[0] != channels && t.shape[0] != 1 {
        return Err(format!(
            "thresholds {} need 1 or {channels} rows (the channels of x {})",
            show(t),
            show(x)
        ));
    }
    Ok(plain(x))
}

/// PRelu: a float input and a slope of its dtype that broadcasts to it (unidirectionally).
fn prelu(x: &TensorType, slope: &TensorType) -> R<TensorType> {
    float_input(x, "input")?;
    same_dtype(x, slope, "slope")?;
    if broadcast(&x.shape, &slope.shape).as_deref() != Some(&x.shape[..]) {
        return Err(format!("slope {} does not broadcast to the input {}", show(slope), show(x)));
    }
    Ok(plain(x))
}

/// ArgMax, ArgMin: a numeric input, one axis; i64 indices.
fn arg_extreme(x: &TensorType, axis: usize, keep_dims: bool) -> R<TensorType> {
    numeric_input(x)?;
    if axis >= x.rank() {
        return Err(format!("axis {axis} out of range for {}", show(x)));
    }
    if x.shape[axis] == 0 {
        return Err(format!("axis {axis} of {} is empty: no element to select", show(x)));
    }
    let mut shape = x.shape.clone();
    if keep_dims {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    Ok(TensorType::new(DType::I64, shape))
}

/// TopK: values of x's dtype and i64 indices, `k` along `axis`.
fn top_k(x: &TensorType, axis: usize, k: usize, n_outputs: usize) -> R<Vec<TensorType>> {
    numeric_input(x)?;
    if axis >= x.rank() {
        return Err(format!("axis {axis} out of range for {}", show(x)));
    }
    if k > x.shape[axis] {
        return Err(format!(
            "k = {k} exceeds the {} elements along axis {axis} of {}",
            x.shape[axis],
            show(x)
        ));
    }
    let mut shape = x.shape.clone();
    shape[axis] = k;
    let mut out = vec![TensorType::new(x.dtype, shape.clone())];
    if n_outputs == 2 {
        out.push(TensorType::new(DType::I64, shape));
    }
    Ok(out)
}

/// Comparisons: two inputs of one dtype (numeric; Equal also bool), broadcast; bool.
fn compare(f: crate::CompareOp, a: &TensorType, b: &TensorType) -> R<TensorType> {
    if f != crate::CompareOp::Equal {
        numeric_input(a)?;
    }
    same_dtype(a, b, "the second input")?;
    let shape = broadcast(&a.shape, &b.shape)
        .ok_or_else(|| format!("cannot broadcast {} with {}", show(a), show(b)))?;
    Ok(TensorType::new(DType::Bool, shape))
}

/// And, Or, Xor: two bool inputs, broadcast.
fn logic(a: &TensorType, b: &TensorType) -> R<TensorType> {
    bool_input(a, "first input")?;
    bool_input(b, "second input")?;
    let shape = broadcast(&a.shape, &b.shape)
        .ok_or_else(|| format!("cannot broadcast {} with {}", show(a), show(b)))?;
    Ok(TensorType::new(DType::Bool, shape))
}

/// Where: a bool condition and two inputs of one dtype, all three broadcast together.
fn where_(inputs: &[&TensorType]) -> R<TensorType> {
    let (cond, x, y) = (inputs[0], inputs[1], inputs[2]);
    bool_input(cond, "condition")?;
    same_dtype(x, y, "the third input")?;
    let shape = broadcast(&cond.shape, &x.shape)
        .and_then(|s| broadcast(&s, &y.shape))
        .ok_or_else(|| format!("cannot broadcast {}, {} and {}", show(cond), show(x), show(y)))?;
    Ok(TensorType::new(x.dtype, shape))
}

fn bool_input(t: &TensorType, what: &str) -> R<()> {
    if t.dtype != DType::Bool {
        return Err(format!("expected a bool {what}, got {}", show(t)));
    }
    Ok(())
}

/// One or more inputs of one numeric dtype (float for Mean), numpy-broadcast together.
fn variadic(f: crate::VariadicOp, inputs: &[&TensorType]) -> R<TensorType> {
    let first = inputs[0];
    numeric_input(first)?;
    if f == crate::VariadicOp::Mean {
        float_input(first, "input")?;
    }
    let mut shape = first.shape.clone();
    for (i, t) in inputs.iter().enumerate().skip(1) {
        same_dtype(first, t, &format!("input {i}"))?;
        shape = broadcast(&shape, &t.shape).ok_or_else(|| {
            format!("input {i} {} does not broadcast with the inputs before it {shape:?}", show(t))
        })?;
    }
    Ok(TensorType::new(first.dtype, shape))
}

fn reduce(x: &TensorType, r: &crate::Reduce) -> R<TensorType> {
    float_input(x, "input")?;
    sorted_axes(&r.axes, x.rank(), x)?;
    let shape = (0..x.rank())
        .filter_map(|i| match (r.axes.contains(&i), r.keep_dims) {
            (false, _) => Some(x.shape[i]),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect();
    Ok(TensorType::new(x.dtype, shape))
}

/// Pow: a numeric base and a numeric exponent of any dtype, broadcast; the base's dtype.
fn pow(base: &TensorType, exponent: &TensorType) -> R<TensorType> {
    numeric_input(base)?;
    if exponent.dtype == DType::Bool {
        return Err(format!("expected a numeric exponent, got {}", show(exponent)));
    }
    let shape = broadcast(&base.shape, &exponent.shape)
        .ok_or_else(|| format!("cannot broadcast {} with {}", show(base), show(exponent)))?;
    Ok(TensorType::new(base.dtype, shape))
}

fn relu(x: &TensorType) -> R<TensorType> {
    if !(x.dtype.is_float() || x.dtype.is_signed_int()) {
        return Err(format!("expected a float or signed integer input, got {}", show(x)));
    }
    Ok(plain(x))
}

fn clip(inputs: &[&TensorType]) -> R<TensorType> {
    let x = inputs[0];
    numeric_input(x)?;
    for (t, what) in [(inputs[1], "min"), (inputs[2], "max")] {
        same_dtype(x, t, what)?;
        scalar(t, what)?;
    }
    Ok(plain(x))
}

/// MaxPool: y, and the indices (i64) when asked for.
fn max_pool(a: &PoolAttrs, x: &TensorType, n_outputs: usize) -> R<Vec<TensorType>> {
    if !(x.dtype.is_float() || matches!(x.dtype, DType::I8 | DType::U8)) {
        return Err(format!("expected a float, i8 or u8 input, got {}", show(x)));
    }
    if a.storage_order > 1 {
        return Err(format!("storage_order must be 0 or 1, got {}", a.storage_order));
    }
    let y = pool(a, x)?;
    let mut out = vec![y.clone()];
    if n_outputs == 2 {
        out.push(TensorType::new(DType::I64, y.shape));
    }
    Ok(out)
}

fn global_average_pool(x: &TensorType) -> R<TensorType> {
    float_input(x, "input")?;
    if x.rank() < 3 {
        return Err(format!("expected an input [N,C,D..] of rank >= 3, got {}", show(x)));
    }
    let mut shape = x.shape[..2].to_vec();
    shape.resize(x.rank(), 1);
    Ok(TensorType::new(x.dtype, shape))
}

/// Add, Sub, Mul, Div: numpy broadcasting of one numeric dtype.
fn arithmetic(a: &TensorType, b: &TensorType) -> R<TensorType> {
    if a.dtype == DType::Bool {
        return Err(format!("expected numeric inputs, got {}", show(a)));
    }
    same_dtype(a, b, "the second input")?;
    Ok(TensorType::new(
        a.dtype,
        broadcast(&a.shape, &b.shape)
            .ok_or_else(|| format!("cannot broadcast {} with {}", show(a), show(b)))?,
    ))
}

fn flatten(x: &TensorType, axis: usize) -> R<TensorType> {
    if axis > x.rank() {
        return Err(format!("axis {axis} out of range for {}", show(x)));
    }
    let outer = numel(&x.shape[..axis])?;
    let inner = numel(&x.shape[axis..])?;
    Ok(TensorType::new(x.dtype, vec![outer, inner]))
}

fn reshape(x: &TensorType, shape: &[usize]) -> R<TensorType> {
    let (n_in, n_out) = (numel(&x.shape)?, numel(shape)?);
    if n_in != n_out {
        return Err(format!(
            "cannot reshape {} ({n_in} elements) to {shape:?} ({n_out} elements)",
            show(x)
        ));
    }
    Ok(TensorType::new(x.dtype, shape.to_vec()))
}

fn transpose(x: &TensorType, perm: &[usize]) -> R<TensorType> {
    if !is_permutation(perm, x.rank()) {
        return Err(format!("perm {perm:?} is not a permutation of the axes of {}", show(x)));
    }
    Ok(TensorType::new(x.dtype, perm.iter().map(|&p| x.shape[p]).collect()))
}

fn squeeze(x: &TensorType, axes: &[usize]) -> R<TensorType> {
    sorted_axes(axes, x.rank(), x)?;
    if let Some(&a) = axes.iter().find(|&&a| x.shape[a] != 1) {
        return Err(format!("cannot squeeze axis {a} of {}: its size is not 1", show(x)));
    }
    let shape = (0..x.rank()).filter(|i| !axes.contains(i)).map(|i| x.shape[i]).collect();
    Ok(TensorType::new(x.dtype, shape))
}

fn unsqueeze(x: &TensorType, axes: &[usize]) -> R<TensorType> {
    let rank = x.rank() + axes.len();
    sorted_axes(axes, rank, x)?;
    let mut rest = x.shape.iter();
    let shape =
        (0..rank).map(|i| if axes.contains(&i) { 1 } else { *rest.next().unwrap_or(&1) }).collect();
    Ok(TensorType::new(x.dtype, shape))
}

fn softmax(x: &TensorType, axis: usize) -> R<TensorType> {
    float_input(x, "input")?;
    if axis >= x.rank().max(1) || x.rank() == 0 {
        return Err(format!("axis {axis} out of range for {}", show(x)));
    }
    Ok(plain(x))
}

/// Dropout (inference): y, and the mask (bool) when asked for.
fn dropout(x: &TensorType, n_outputs: usize) -> R<Vec<TensorType>> {
    numeric_input(x)?;
    let mut out = vec![plain(x)];
    if n_outputs == 2 {
        out.push(TensorType::new(DType::Bool, x.shape.clone()));
    }
    Ok(out)
}

fn gather(x: &TensorType, idx: &TensorType, axis: usize) -> R<TensorType> {
    if axis >= x.rank() {
        return Err(format!("axis {axis} out of range for {}", show(x)));
    }
    if !matches!(idx.dtype, DType::I32 | DType::I64) {
        return Err(format!("expected i32 or i64 indices, got {}", show(idx)));
    }
    let mut shape = x.shape[..axis].to_vec();
    shape.extend_from_slice(&idx.shape);
    shape.extend_from_slice(&x.shape[axis + 1..]);
    Ok(TensorType::new(x.dtype, shape))
}

fn quantize_linear(
    inputs: &[&TensorType],
    axis: Option<usize>,
    block_size: usize,
    to: DType,
) -> R<TensorType> {
    let x = inputs[0];
    float_input(x, "input")?;
    if !matches!(to, DType::I8 | DType::U8 | DType::I16 | DType::U16) {
        return Err(format!("quantizing to {to} is not supported (i8, u8, i16, u16)"));
    }
    float_input(inputs[1], "scale")?;
    if let Some(zp) = inputs.get(2) {
        if zp.dtype != to {
            return Err(format!("zero point {} does not have the output dtype {to}", show(zp)));
        }
    }
    quant_params(x, inputs, axis, block_size)?;
    Ok(TensorType::new(to, x.shape.clone()))
}

fn dequantize_linear(
    inputs: &[&TensorType],
    axis: Option<usize>,
    block_size: usize,
) -> R<TensorType> {
    let x = inputs[0];
    if !matches!(x.dtype, DType::I8 | DType::U8 | DType::I16 | DType::U16 | DType::I32) {
        return Err(format!("expected an i8, u8, i16, u16 or i32 input, got {}", show(x)));
    }
    float_input(inputs[1], "scale")?;
    if let Some(zp) = inputs.get(2) {
        same_dtype(x, zp, "zero point")?;
    }
    quant_params(x, inputs, axis, block_size)?;
    Ok(TensorType::new(inputs[1].dtype, x.shape.clone()))
}

/// `f32[3,4]`: a type as messages show it.
pub fn show(t: &TensorType) -> String {
    let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", t.dtype, dims.join(","))
}

/// The numpy broadcast of two shapes, or `None` when they do not broadcast.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// The output length of a sliding window over `len` elements (padding included), or an error.
/// With `ceil`, the ONNX rule applies: the last window must start inside the input or the left
/// padding (`pad_begin`), else it is dropped.
pub fn window_output(
    len: usize,
    pad_begin: usize,
    pad_end: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    ceil: bool,
) -> Result<usize, String> {
    let padded = len
        .checked_add(pad_begin)
        .and_then(|v| v.checked_add(pad_end))
        .ok_or("padding overflows")?;
    let eff = dilation
        .checked_mul(kernel.saturating_sub(1))
        .and_then(|v| v.checked_add(1))
        .ok_or("dilated kernel overflows")?;
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(format!(
            "kernel {kernel}, stride {stride} and dilation {dilation} must all be >= 1"
        ));
    }
    if padded < eff {
        return Err(format!("padded size {padded} is smaller than the dilated kernel {eff}"));
    }
    let span = padded - eff;
    let mut out = span / stride + 1;
    if ceil && span % stride != 0 {
        out += 1;
        if (out - 1).saturating_mul(stride) >= len + pad_begin {
            out -= 1;
        }
    }
    Ok(out)
}

fn conv(a: &ConvAttrs, inputs: &[&TensorType]) -> R<TensorType> {
    let (x, w) = (inputs[0], inputs[1]);
    let n = a.kernel.len();
    window_attrs(n, &a.strides, &a.dilations, &a.pads)?;
    if n == 0 {
        return Err("the kernel has no spatial dims".into());
    }
    float_input(x, "input")?;
    same_dtype(x, w, "weight")?;
    if x.rank() != n + 2 {
        return Err(format!(
            "expected {}-D input [N,C{}], got {}",
            n + 2,
            spatial_names(n),
            show(x)
        ));
    }
    if w.rank() != n + 2 {
        return Err(format!(
            "expected {}-D weight [M,C/group{}], got {}",
            n + 2,
            spatial_names(n),
            show(w)
        ));
    }
    if w.shape[2..] != a.kernel[..] {
        return Err(format!("weight {} does not match kernel {:?}", show(w), a.kernel));
    }
    let (c, m) = (x.shape[1], w.shape[0]);
    if a.group == 0 || w.shape[1].checked_mul(a.group) != Some(c) {
        return Err(format!(
            "channels {c} vs weight's {}*group (group {}): input {}, weight {}",
            w.shape[1],
            a.group,
            show(x),
            show(w)
        ));
    }
    if m % a.group != 0 {
        return Err(format!("{m} output channels are not divisible by group {}", a.group));
    }
    if let Some(b) = inputs.get(2) {
        same_dtype(x, b, "bias")?;
        if b.shape != [m] {
            return Err(format!("expected bias [{m}], got {}", show(b)));
        }
    }
    let mut shape = vec![x.shape[0], m];
    for i in 0..n {
        let o = window_output(
            x.shape[2 + i],
            a.pads[i],
            a.pads[n + i],
            a.kernel[i],
            a.strides[i],
            a.dilations[i],
            false,
        )
        .map_err(|e| format!("spatial dim {i} of {}: {e}", show(x)))?;
        shape.push(o);
    }
    Ok(TensorType::new(x.dtype, shape))
}

fn pool(a: &PoolAttrs, x: &TensorType) -> R<TensorType> {
    let n = a.kernel.len();
    window_attrs(n, &a.strides, &a.dilations, &a.pads)?;
    if n == 0 {
        return Err("the kernel has no spatial dims".into());
    }
    if x.rank() != n + 2 {
        return Err(format!(
            "expected {}-D input [N,C{}], got {}",
            n + 2,
            spatial_names(n),
            show(x)
        ));
    }
    let mut shape = x.shape[..2].to_vec();
    for i in 0..n {
        let o = window_output(
            x.shape[2 + i],
            a.pads[i],
            a.pads[n + i],
            a.kernel[i],
            a.strides[i],
            a.dilations[i],
            a.ceil_mode,
        )
        .map_err(|e| format!("spatial dim {i} of {}: {e}", show(x)))?;
        shape.push(o);
    }
    Ok(TensorType::new(x.dtype, shape))
}

fn window_attrs(n: usize, strides: &[usize], dilations: &[usize], pads: &[usize]) -> R<()> {
    if strides.len() != n || dilations.len() != n || pads.len() != 2 * n {
        return Err(format!(
            "kernel of {n} dims needs {n} strides, {n} dilations and {} pads; got strides {strides:?}, dilations {dilations:?}, pads {pads:?}",
            2 * n
        ));
    }
    if strides.contains(&0) || dilations.contains(&0) {
        return Err(format!("strides {strides:?} and dilations {dilations:?} must be >= 1"));
    }
    Ok(())
}

fn spatial_names(n: usize) -> &'static str {
    match n {
        1 => ",W",
        2 => ",H,W",
        3 => ",D,H,W",
        _ => ",D..",
    }
}

fn batch_norm(epsilon: f32, inputs: &[&TensorType]) -> R<TensorType> {
    if !epsilon.is_finite() || epsilon < 0.0 {
        return Err(format!("epsilon must be finite and >= 0, got {epsilon}"));
    }
    let x = inputs[0];
    float_input(x, "input")?;
    if x.rank() < 2 {
        return Err(format!("expected an input [N,C,..] of rank >= 2, got {}", show(x)));
    }
    let c = x.shape[1];
    for (t, what) in inputs[1..].iter().zip(["scale", "bias", "mean", "var"]) {
        float_input(t, what)?;
        if t.shape != [c] {
            return Err(format!("expected {what} [{c}] for {} channels, got {}", c, show(t)));
        }
    }
    Ok(plain(x))
}

fn gemm(inputs: &[&TensorType], trans_a: bool, trans_b: bool) -> R<TensorType> {
    let (a, b) = (inputs[0], inputs[1]);
    if a.dtype == DType::Bool {
        return Err(format!("expected numeric inputs, got {}", show(a)));
    }
    same_dtype(a, b, "B")?;
    for (t, what) in [(a, "A"), (b, "B")] {
        if t.rank() != 2 {
            return Err(format!("expected 2-D {what}, got {}", show(t)));
        }
    }
    let (m, ka) = if trans_a { (a.shape[1], a.shape[0]) } else { (a.shape[0], a.shape[1]) };
    let (kb, n) = if trans_b { (b.shape[1], b.shape[0]) } else { (b.shape[0], b.shape[1]) };
    if ka != kb {
        return Err(format!(
            "inner dims differ: A {} (trans_a {trans_a}) vs B {} (trans_b {trans_b})",
            show(a),
            show(b)
        ));
    }
    if let Some(c) = inputs.get(2) {
        same_dtype(a, c, "C")?;
        if c.rank() > 2 || broadcast(&c.shape, &[m, n]).as_deref() != Some(&[m, n][..]) {
            return Err(format!("C {} does not broadcast to [{m},{n}]", show(c)));
        }
    }
    Ok(TensorType::new(a.dtype, vec![m, n]))
}

fn matmul(a: &TensorType, b: &TensorType) -> R<TensorType> {
    if a.dtype == DType::Bool {
        return Err(format!("expected numeric inputs, got {}", show(a)));
    }
    same_dtype(a, b, "the second input")?;
    if a.rank() == 0 || b.rank() == 0 {
        return Err(format!("matmul needs inputs of rank >= 1, got {} and {}", show(a), show(b)));
    }
    let sa = if a.rank() == 1 { vec![1, a.shape[0]] } else { a.shape.clone() };
    let sb = if b.rank() == 1 { vec![b.shape[0], 1] } else { b.shape.clone() };
    let (m, k1) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    if k1 != k2 {
        return Err(format!("inner dims differ: {} x {}", show(a), show(b)));
    }
    let mut shape = broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2])
        .ok_or_else(|| format!("batch dims do not broadcast: {} x {}", show(a), show(b)))?;
    if a.rank() > 1 {
        shape.push(m);
    }
    if b.rank() > 1 {
        shape.push(n);
    }
    Ok(TensorType::new(a.dtype, shape))
}

fn concat(inputs: &[&TensorType], axis: usize) -> R<TensorType> {
    let first = inputs[0];
    if axis >= first.rank() {
        return Err(format!("axis {axis} out of range for {}", show(first)));
    }
    let mut shape = first.shape.clone();
    for (i, t) in inputs.iter().enumerate().skip(1) {
        same_dtype(first, t, &format!("input {i}"))?;
        let fits = t.rank() == first.rank()
            && (0..t.rank()).all(|d| d == axis || t.shape[d] == first.shape[d]);
        if !fits {
            return Err(format!(
                "input {i} {} does not match input 0 {} outside axis {axis}",
                show(t),
                show(first)
            ));
        }
        shape[axis] = shape[axis].checked_add(t.shape[axis]).ok_or("size overflows")?;
    }
    Ok(TensorType::new(first.dtype, shape))
}

fn pad(inputs: &[&TensorType], mode: PadMode, pads: &[i64]) -> R<TensorType> {
    let x = inputs[0];
    let r = x.rank();
    if pads.len() != 2 * r {
        return Err(format!("expected {} pads for {}, got {pads:?}", 2 * r, show(x)));
    }
    if let Some(v) = inputs.get(1) {
        if mode != PadMode::Constant {
            return Err(format!("a constant value is given but the mode is {}", mode.name()));
        }
        same_dtype(x, v, "constant value")?;
        scalar(v, "constant value")?;
    }
    let mut shape = Vec::with_capacity(r);
    for i in 0..r {
        let d = x.shape[i] as i128 + pads[i] as i128 + pads[r + i] as i128;
        if d < 0 || d > usize::MAX as i128 {
            return Err(format!("pads {pads:?} give a negative size on axis {i} of {}", show(x)));
        }
        if mode != PadMode::Constant && (pads[i] > 0 || pads[r + i] > 0) && x.shape[i] == 0 {
            return Err(format!("{} padding of the empty axis {i} of {}", mode.name(), show(x)));
        }
        shape.push(d as usize);
    }
    Ok(TensorType::new(x.dtype, shape))
}

fn slice(x: &TensorType, axes: &[crate::SliceAxis]) -> R<TensorType> {
    let mut shape = x.shape.clone();
    let mut seen = vec![false; x.rank()];
    for s in axes {
        if s.axis >= x.rank() {
            return Err(format!("axis {} out of range for {}", s.axis, show(x)));
        }
        if std::mem::replace(&mut seen[s.axis], true) {
            return Err(format!("axis {} is sliced twice", s.axis));
        }
        let dim = x.shape[s.axis] as i64;
        let ok = if s.step > 0 {
            (0..=dim).contains(&s.start) && (0..=dim).contains(&s.end)
        } else if s.step < 0 {
            (-1..dim).contains(&s.start) && (-1..dim).contains(&s.end)
        } else {
            return Err(format!("step 0 on axis {}", s.axis));
        };
        if !ok {
            return Err(format!(
                "slice {}:{}:{} of axis {} ({}) is not normalized",
                s.start,
                s.end,
                s.step,
                s.axis,
                show(x)
            ));
        }
        let span = (s.end - s.start) as i128;
        let step = s.step as i128;
        let len =
            if span * step.signum() <= 0 { 0 } else { (span.abs() + step.abs() - 1) / step.abs() };
        shape[s.axis] = len as usize;
    }
    Ok(TensorType::new(x.dtype, shape))
}

fn quant_params(
    x: &TensorType,
    inputs: &[&TensorType],
    axis: Option<usize>,
    block: usize,
) -> R<()> {
    let scale = inputs[1];
    if let Some(zp) = inputs.get(2) {
        if zp.shape != scale.shape {
            return Err(format!(
                "zero point {} and scale {} differ in shape",
                show(zp),
                show(scale)
            ));
        }
    }
    match axis {
        None => {
            if block > 0 {
                return Err("blocked quantization needs an axis".into());
            }
            if numel(&scale.shape)? != 1 || scale.rank() > 1 {
                return Err(format!("per-tensor scale must be a scalar, got {}", show(scale)));
            }
        }
        Some(a) if a >= x.rank() => {
            return Err(format!("axis {a} out of range for {}", show(x)));
        }
        Some(a) if block == 0 => {
            if scale.shape != [x.shape[a]] {
                return Err(format!(
                    "per-axis scale along axis {a} must be [{}], got {}",
                    x.shape[a],
                    show(scale)
                ));
            }
        }
        Some(a) => {
            let want: Vec<usize> = (0..x.rank())
                .map(|i| if i == a { x.shape[i].div_ceil(block) } else { x.shape[i] })
                .collect();
            if scale.shape != want {
                return Err(format!(
                    "blocked scale (block {block} along axis {a}) must be {want:?}, got {}",
                    show(scale)
                ));
            }
        }
    }
    Ok(())
}

fn arity(inputs: &[&TensorType], min: usize, max: usize) -> R<()> {
    if max == usize::MAX && inputs.len() < min {
        let s = if min == 1 { "" } else { "s" };
        return Err(format!("expected at least {min} input{s}, got {}", inputs.len()));
    }
    if inputs.len() < min || inputs.len() > max {
        let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
        return Err(format!("expected {want} input(s), got {}", inputs.len()));
    }
    Ok(())
}

fn outs(n: usize, min: usize, max: usize) -> R<()> {
    if n < min || n > max {
        let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
        return Err(format!("expected {want} output(s), got {n}"));
    }
    Ok(())
}

fn numeric_input(t: &TensorType) -> R<()> {
    if t.dtype == DType::Bool {
        return Err(format!("expected a numeric input, got {}", show(t)));
    }
    Ok(())
}

fn float_input(t: &TensorType, what: &str) -> R<()> {
    if !t.dtype.is_float() {
        return Err(format!("expected a float {what}, got {}", show(t)));
    }
    Ok(())
}

fn same_dtype(a: &TensorType, b: &TensorType, what: &str) -> R<()> {
    if a.dtype != b.dtype {
        return Err(format!("{what} {} does not have the input's dtype {}", show(b), a.dtype));
    }
    Ok(())
}

fn scalar(t: &TensorType, what: &str) -> R<()> {
    if t.rank() > 1 || numel(&t.shape)? != 1 {
        return Err(format!("{what} must be a scalar, got {}", show(t)));
    }
    Ok(())
}

fn sorted_axes(axes: &[usize], rank: usize, x: &TensorType) -> R<()> {
    if axes.windows(2).any(|w| w[0] >= w[1]) || axes.last().is_some_and(|&a| a >= rank) {
        return Err(format!(
            "axes {axes:?} must be sorted, unique and below {rank} (input {})",
            show(x)
        ));
    }
    Ok(())
}

fn is_permutation(perm: &[usize], rank: usize) -> bool {
    let mut seen = vec![false; rank];
    perm.len() == rank && perm.iter().all(|&p| p < rank && !std::mem::replace(&mut seen[p], true))
}

fn numel(shape: &[usize]) -> R<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has too many elements"))
}

/// The input's dtype and shape without quantization parameters.
fn plain(x: &TensorType) -> TensorType {
    TensorType::new(x.dtype, x.shape.clone())
}
