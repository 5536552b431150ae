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
    /// A broken invariant: a bug in cimc, not a problem with the user's input (e.g. an emitted
    /// stream that does not validate).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Decodes the postcard body of a file that starts `header` bytes before `body`; an error
/// names the byte offset in the file where decoding stopped. Bytes after the body are an error.
pub(crate) fn decode_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    header: usize,
) -> std::result::Result<T, String> {
    let mut de = postcard::Deserializer::from_bytes(body);
    let value = T::deserialize(&mut de);
    let rest = de.finalize().map(|r| r.len()).unwrap_or(0);
    let at = header + body.len() - rest;
    match value {
        Ok(v) if rest == 0 => Ok(v),
        Ok(_) => Err(format!("{rest} unexpected bytes after the end, at byte {at}")),
        Err(e) => Err(format!("{e} at byte {at}")),
    }
}
