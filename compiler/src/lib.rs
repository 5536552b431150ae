//! cimc: the compiler driver library (ONNX import, file formats, the command line's work).

pub mod compile;
pub mod error;
pub mod fuzz_entry;
pub mod guard;
pub mod limits;
pub mod memory;
pub mod model;
pub mod noise_eval;
pub mod npy;
pub mod numerics;
pub mod onnx;
pub mod output;
pub mod quant_settings;
pub mod report;
pub mod stream_report;
pub mod svg;
pub mod sweep;
pub mod tensor_util;
pub mod values;
pub mod worst_case;

pub use error::{Error, Result};
