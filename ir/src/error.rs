//! Errors of the IR crate.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    /// The text IR could not be read.
    #[error("line {line}, column {col}: {msg}")]
    Parse { line: usize, col: usize, msg: String },
    /// A node's inputs do not fit its op (wrong count, dtype or shape).
    #[error("node '{node}' ({op}): {msg}")]
    Node { node: String, op: String, msg: String },
    /// The verifier found one or more problems; each entry names its node.
    #[error("{} verifier error(s):\n  {}", .0.len(), .0.join("\n  "))]
    Verify(Vec<String>),
    /// Constant data does not match its declared type.
    #[error("constant '{name}': {msg}")]
    Data { name: String, msg: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = IrError> = std::result::Result<T, E>;
