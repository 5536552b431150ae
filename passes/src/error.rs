//! Errors of the passes.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PassError {
    /// A node the pass cannot handle (names the node): a user-facing limitation.
    #[error("{pass}: node '{node}' ({op}): {msg}")]
    Node { pass: &'static str, node: String, op: String, msg: String },
    /// Bad settings (bits out of range, unknown layer name in an override file...).
    #[error("{0}")]
    Config(String),
    /// A pass needs something it was not given (calibration data...).
    #[error("{0}")]
    Missing(String),
    #[error(transparent)]
    Interp(#[from] cimc_interp::InterpError),
    /// A broken invariant: a bug in cimc.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PassError {
    /// A [`PassError::Node`] of pass `pass` about node `n` of `g` (its name and op filled in).
    pub fn node(
        pass: &'static str,
        g: &cimc_ir::Graph,
        n: cimc_ir::NodeId,
        msg: impl Into<String>,
    ) -> PassError {
        let node = g.node(n);
        PassError::Node {
            pass,
            node: node.name.clone(),
            op: node.op.name().to_string(),
            msg: msg.into(),
        }
    }
}

impl PassError {
    /// A failure of lowering the graph inside a pass (`stage` says which): a bug of cimc only
    /// when lowering says so; a value the target arithmetic cannot represent (a requantization
    /// multiplier below 2^-62) or a node that cannot be lowered is the model's, as it is when
    /// `cimc compile` lowers the graph itself.
    pub fn lowering(stage: &str, e: cimc_backends::BackendError) -> PassError {
        match e {
            cimc_backends::BackendError::Internal(m) => {
                PassError::Internal(format!("{stage}: {m}"))
            }
            other => PassError::Config(format!("{stage}: {other}")),
        }
    }
}

pub type Result<T, E = PassError> = std::result::Result<T, E>;
