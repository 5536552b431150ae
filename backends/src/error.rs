//! Errors of the backends.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BackendError {
    /// A number that the target arithmetic cannot represent.
    #[error("{0}")]
    Numeric(String),
    /// A program or stream file that cannot be read (names the byte offset or instruction).
    #[error("{0}")]
    Format(String),
    /// The graph cannot be lowered (names the node).
    #[error("node '{node}' ({op}): {msg}")]
    Lower { node: String, op: String, msg: String },
    /// A target description that cannot be read or is invalid (names the file and the key).
    #[error("{0}")]
    Target(String),
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;
