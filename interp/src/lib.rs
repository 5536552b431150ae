//! The float reference interpreter of the IR: every op on ndarrays, batch >= 1.
//!
//! Architecture invariant: `interp` depends on `ir` only, never on `passes` or the importer.

pub mod error;
pub mod tensor;

pub use error::{InterpError, Result};
pub use tensor::Tensor;
