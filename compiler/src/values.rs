//! The values in a user's model that no compilation can make right, refused before the passes
//! run, each naming its node and tensor (exit 1): a NaN weight would otherwise quantize to code
//! 0 and the program score as if nothing were wrong; a zero or negative scale, or a BatchNorm
//! whose variance plus epsilon is not positive, would reach the passes as an internal error.
//!
//! Checked: every float constant operand of a matrix op (Conv, Gemm, MatMul: weights and bias)
//! and of BatchNorm is finite; a BatchNorm's variance plus epsilon is positive; every
//! QuantizeLinear/DequantizeLinear scale is a positive normal number (a subnormal scale has no
//! reciprocal in f32). Left to the float interpreter: non-finite constants of other ops (an
//! attention mask of −∞ is a legitimate model).

use crate::error::{Error, Result};
use cimc_ir::{DType, Graph, Node, OnCodes, Op, ValueId};
use rayon::prelude::*;

/// Refuses the first value of `graph` that breaks one of the rules above.
pub fn check_values(graph: &Graph) -> Result<()> {
    for (_, node) in graph.nodes() {
        let problem = match &node.op {
            op if op.on_codes() == OnCodes::Matrix => finite_operands(graph, node),
            Op::BatchNorm { epsilon } => {
                finite_operands(graph, node).or_else(|| positive_variance(graph, node, *epsilon))
            }
            Op::QuantizeLinear { .. } | Op::DequantizeLinear { .. } => {
                node.inputs.get(1).and_then(|&s| normal_scale(graph, s))
            }
            _ => None,
        };
        if let Some(msg) = problem {
            return Err(Error::Usage(format!("node '{}' ({}): {msg}", node.name, node.op.name())));
        }
    }
    Ok(())
}

/// The constant float data of `v`, if it is one.
fn float_const(graph: &Graph, v: ValueId) -> Option<Vec<f64>> {
    let data = graph.value(v).const_data()?;
    data.dtype().is_float().then(|| data.to_f64_vec())
}

/// The little-endian f32 of 4 bytes.
fn f32_at(c: &[u8]) -> f32 {
    f32::from_le_bytes(c.try_into().expect("invariant: chunks of 4 bytes"))
}

/// The first element of constant `v` that is not finite (a float constant's, read in place:
/// the weights of a large model are not copied to be checked).
fn first_non_finite(graph: &Graph, v: ValueId) -> Option<(usize, f64)> {
    let data = graph.value(v).const_data()?;
    match data.dtype() {
        DType::F32 => {
            // Block by block with no early exit inside a block (the test vectorizes), the
            // blocks in parallel; then the first element of the first block with one.
            const BLOCK: usize = 1 << 16;
            let raw = data.raw();
            let block = raw.par_chunks(BLOCK).position_first(|b| {
                b.chunks_exact(4).fold(false, |bad, c| bad | !f32_at(c).is_finite())
            })?;
            let i = raw[block * BLOCK..].chunks_exact(4).position(|c| !f32_at(c).is_finite())?;
            let i = block * BLOCK / 4 + i;
            Some((i, data.get_f64(i)))
        }
        d if d.is_float() => {
            (0..data.numel()).map(|i| (i, data.get_f64(i))).find(|(_, x)| !x.is_finite())
        }
        _ => None,
    }
}

fn finite_operands(graph: &Graph, node: &Node) -> Option<String> {
    node.inputs.iter().find_map(|&v| {
        let (i, x) = first_non_finite(graph, v)?;
        Some(format!(
            "the constant '{}' holds {x} at element {i}: weights must be finite numbers",
            graph.value(v).name
        ))
    })
}

fn positive_variance(graph: &Graph, node: &Node, epsilon: f32) -> Option<String> {
    let &var = node.inputs.get(4)?;
    let values = float_const(graph, var)?;
    let (i, x) = values.iter().enumerate().find(|(_, &x)| x + epsilon as f64 <= 0.0)?;
    Some(format!(
        "the variance '{}' is {x} at channel {i} with epsilon {epsilon}: variance + epsilon must be positive",
        graph.value(var).name
    ))
}

fn normal_scale(graph: &Graph, scale: ValueId) -> Option<String> {
    let values = float_const(graph, scale)?;
    let (i, x) = values.iter().enumerate().find(|(_, &x)| !(x > 0.0 && (x as f32).is_normal()))?;
    Some(format!(
        "the scale '{}' is {x} at element {i}: a quantization scale must be a positive normal number",
        graph.value(scale).name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cimc_ir::TensorData;

    /// The first non-finite weight is found wherever it lies: in the first block, at a block's
    /// edges, in the last (partial) block, and before a later one.
    #[test]
    fn the_first_non_finite_weight_is_found_in_any_block() {
        let n = 100_000;
        for at in [None, Some(0), Some(16_383), Some(16_384), Some(40_000), Some(n - 1)] {
            let mut w = vec![0.5f32; n];
            if let Some(i) = at {
                w[i] = f32::NAN;
                w[(i + 20_000).min(n - 1)] = f32::NEG_INFINITY;
            }
            let mut g = Graph::new("w");
            let v = g.add_const("w", TensorData::from_f32(vec![n], &w));
            assert_eq!(first_non_finite(&g, v).map(|(i, _)| i), at);
        }
    }
}
