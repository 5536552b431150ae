//! Errors of the interpreters.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum InterpError {
    /// A run-time input does not match the graph (user error).
    #[error("input '{name}': {msg}")]
    Input { name: String, msg: String },
    /// An op or dtype the interpreter does not execute.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A node failed while running; names the node.
    #[error("node '{node}' ({op}): {msg}")]
    Node { node: String, op: String, msg: String },
    /// An instruction of an accelerator stream failed while running (or the stream cannot
    /// proceed); names the core and the instruction's index in that core's code.
    #[error("core {core}, instruction {index} ({op}): {msg}")]
    Instr { core: usize, index: usize, op: String, msg: String },
    /// A broken invariant (a bug in cimc, not in the input).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = InterpError> = std::result::Result<T, E>;
