//! The compiler crate's error type. The CLI prints one line per error and exits with
//! [`Error::exit_code`]: 1 for a problem with the user's input, 2 for a bug in cimc.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The ONNX file is not a valid model (bad protobuf, bad tensor, bad graph).
    #[error("{}: {msg}", file.display())]
    Onnx { file: PathBuf, msg: String },
    /// One node of the ONNX model is wrong (bad attribute, inconsistent shapes...).
    #[error("{}: node '{node}' ({op}): {msg}", file.display())]
    OnnxNode { file: PathBuf, node: String, op: String, msg: String },
    /// The model uses ops cimc does not support; every such node is listed.
    #[error("{}: {} unsupported node(s): {}", file.display(), nodes.len(), nodes.join("; "))]
    Unsupported { file: PathBuf, nodes: Vec<String> },
    /// A `.npy` file is malformed or does not fit (shape, dtype).
    #[error("{}: {msg}", file.display())]
    Npy { file: PathBuf, msg: String },
    /// The text IR or its data file could not be read, or the graph does not verify.
    #[error("{}: {source}", file.display())]
    Ir { file: PathBuf, source: cimc_ir::IrError },
    /// A program file (`.cimp`) that cannot be read.
    #[error("{}: {msg}", file.display())]
    Program { file: PathBuf, msg: String },
    /// A run-time failure of the interpreter.
    #[error("{0}")]
    Interp(#[from] cimc_interp::InterpError),
    /// A failure of a backend (lowering, emission, a target, the cost model); its variant says
    /// whether the input or cimc is at fault.
    #[error("{0}")]
    Backend(#[from] cimc_backends::BackendError),
    /// A wrong combination of command-line arguments or inputs.
    #[error("{0}")]
    Usage(String),
    /// A broken invariant: a bug in cimc.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// 1 for user errors, 2 for internal ones.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Internal(_) => 2,
            Error::Interp(cimc_interp::InterpError::Internal(_)) => 2,
            Error::Backend(cimc_backends::BackendError::Internal(_)) => 2,
            _ => 1,
        }
    }

    /// This error with `file` named first when its message does not name it yet: the passes
    /// and lowering name the node only, and a user needs the model too. Internal errors stay
    /// as they are.
    pub fn naming(self, file: &std::path::Path) -> Error {
        let shown = file.display().to_string();
        let msg = self.to_string();
        if self.exit_code() != 1 || msg.contains(&shown) {
            return self;
        }
        Error::Usage(format!("{shown}: {msg}"))
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;
    use cimc_backends::BackendError;

    #[test]
    fn the_variant_decides_the_exit_code() {
        assert_eq!(Error::from(BackendError::Internal("a bug".into())).exit_code(), 2);
        assert_eq!(Error::from(BackendError::Format("a bad file".into())).exit_code(), 1);
        assert_eq!(Error::from(BackendError::Target("a bad key".into())).exit_code(), 1);
        let internal = cimc_interp::InterpError::Internal("a bug".into());
        assert_eq!(Error::from(internal).exit_code(), 2);
        assert_eq!(Error::Internal("a bug".into()).exit_code(), 2);
        assert_eq!(Error::Usage("a bad flag".into()).exit_code(), 1);
        // The message says who is at fault once.
        let m = Error::from(BackendError::Internal("the emitted stream is invalid".into()));
        assert_eq!(m.to_string(), "internal error: the emitted stream is invalid");
    }

    #[test]
    fn naming_adds_the_file_to_user_errors_only() {
        let f = std::path::Path::new("m.onnx");
        let e = Error::Usage("node 'fc': too small".into()).naming(f);
        assert_eq!(e.to_string(), "m.onnx: node 'fc': too small");
        assert_eq!(e.naming(f).to_string(), "m.onnx: node 'fc': too small", "once");
        let bug = Error::Internal("a bug".into()).naming(f);
        assert_eq!((bug.exit_code(), bug.to_string()), (2, "internal error: a bug".into()));
    }
}
