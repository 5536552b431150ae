//! cimc backends: the bit-accurate interpreter program (its format and the arithmetic that every
//! executor of it shares) and the accelerator's instruction set (`isa`).

pub mod arith;
pub mod error;
pub mod isa;
pub mod noise;
pub mod program;
pub mod stream;
pub mod target;

pub use error::{BackendError, Result};
