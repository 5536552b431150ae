//! Constant folding at import: a node whose inputs are all constants is evaluated once by the
//! float interpreter's single-op entry point and replaced by constants.
//!
//! QuantizeLinear and DequantizeLinear are never folded: they mark the quantization of weights
//! (their integer codes, scales and zero points), which the quantization passes read. Nor is a
//! Clip on integer codes: in QCDQ models (Brevitas) it narrows the codes to fewer bits, which
//! `fold-qdq` reads from its bounds.

use cimc_ir::{DType, OnCodes, Op, TensorData, TensorType};

/// Whether folding `op` on inputs of these types is allowed.
pub fn foldable(op: &Op, inputs: &[&TensorType]) -> bool {
    if *op == Op::Clip {
        return inputs.first().is_none_or(|t| matches!(t.dtype, DType::F32 | DType::F64));
    }
    match op.on_codes() {
        OnCodes::Quantizes | OnCodes::Dequantizes => false,
        OnCodes::Matrix | OnCodes::Moves | OnCodes::Integer | OnCodes::Float => true,
    }
}

/// Evaluates `op` on constant inputs. `Ok(None)` when the interpreter cannot evaluate it (the
/// node then stays); an error when it produced something other than the inferred `types`.
pub fn eval(
    op: &Op,
    inputs: &[&TensorData],
    types: &[TensorType],
    reader: &super::tensor::TensorReader,
) -> Result<Option<Vec<TensorData>>, String> {
    if types.iter().any(|t| reader.check_created(t.dtype, &t.shape).is_err()) {
        return Ok(None);
    }
    let tensors = match inputs
        .iter()
        .map(|d| cimc_interp::Tensor::from_data(d))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(t) => t,
        Err(_) => return Ok(None),
    };
    let refs: Vec<&cimc_interp::Tensor> = tensors.iter().collect();
    let out = match cimc_interp::eval_node(op, &refs, types.len()) {
        Ok(out) => out,
        Err(_) => return Ok(None),
    };
    if out.len() != types.len() {
        return Err(format!("folding gave {} outputs, expected {}", out.len(), types.len()));
    }
    let mut datas = Vec::with_capacity(out.len());
    for (t, want) in out.iter().zip(types) {
        if t.dtype() != want.dtype || t.shape() != want.shape.as_slice() {
            return Err(format!(
                "folding gave {}{:?}, shape inference says {}",
                t.dtype(),
                t.shape(),
                cimc_ir::infer::show(want)
            ));
        }
        datas.push(t.to_data());
    }
    Ok(Some(datas))
}
