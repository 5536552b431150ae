//! The float reference interpreter of the IR: every op on ndarrays, batch >= 1, and the
//! reverse-mode gradients over it. The executors of what the back ends emit (programs, streams)
//! and the device models are the crate `cimc-sim`.
//!
//! Two entry points:
//! - [`eval_node`] evaluates one op on tensors (the importer's constant folding uses it);
//! - [`Runner`] prepares a whole [`cimc_ir::Graph`] once (constants converted, convolution
//!   weights checked and copied, Conv→BatchNorm→activation chains fused) and runs it many
//!   times, freeing every intermediate tensor after its last use.
//!
//! Semantics are ONNX's (opsets 11 and later) for every op; the ONNX backend conformance cases
//! are the judge. Kernels never panic on user data: bad shapes or dtypes are errors.
//!
//! Architecture invariant: `interp` depends on `ir` only, never on the back ends, `passes` or the
//! importer: it is the semantics of the IR and nothing else.

mod buffer_pool;
pub mod error;
pub mod format;
pub mod grad;
mod ops;
mod precision;
mod runner;
pub mod tensor;

pub use error::{InterpError, Result};
pub use ops::gemm;
pub use ops::resize::{resize_axes, Taps as ResizeTaps};
pub use runner::{Runner, StepTime};
pub use tensor::Tensor;

use cimc_ir::Op;

/// Whether the environment variable `CIMC_PORTABLE_KERNELS` is set: then every kernel with a
/// CPU-specific build (the convolution micro-kernels, the crossbar kernel, the table
/// multiplier) takes its portable path on any CPU, to test that path. Read once per process.
pub fn portable_kernels_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| std::env::var_os("CIMC_PORTABLE_KERNELS").is_some())
}

/// Evaluates one op on `inputs` (in the op's input order; absent optional trailing inputs
/// are simply not passed), producing `n_outputs` outputs (MaxPool's indices and Dropout's mask
/// are computed only when `n_outputs` is 2).
///
/// Errors: [`InterpError::Node`] with an empty `node` name (the caller knows it) and the op's
/// mnemonic, or [`InterpError::Unsupported`] for an op/dtype combination not executed.
pub fn eval_node(
    op: &Op,
    inputs: &[&Tensor],
    n_outputs: usize,
) -> Result<Vec<Tensor>, InterpError> {
    let mut out = ops::eval(op, inputs, n_outputs).map_err(|e| name_error(e, "", op))?;
    if out.len() < n_outputs {
        return Err(name_error(
            ops::bad(format!("produces {} outputs, {n_outputs} asked for", out.len())),
            "",
            op,
        ));
    }
    out.truncate(n_outputs.max(1));
    Ok(out)
}

/// Fills the node name and op mnemonic into a kernel's error.
pub(crate) fn name_error(e: InterpError, node: &str, op: &Op) -> InterpError {
    match e {
        InterpError::Node { msg, .. } => {
            InterpError::Node { node: node.to_string(), op: op.name().to_string(), msg }
        }
        InterpError::Unsupported(m) if !node.is_empty() => InterpError::Node {
            node: node.to_string(),
            op: op.name().to_string(),
            msg: format!("unsupported: {m}"),
        },
        other => other,
    }
}
