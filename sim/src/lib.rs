//! The chip simulators: what executes the back ends' outputs, and the device models.
//!
//! - [`program`]: [`ProgramRunner`], the executor of the bit-accurate interpreter program (the
//!   chip's golden model): integer arithmetic only, the crossbar arithmetic of
//!   `docs/hardware-model.md` exactly, paused runs, cascade widths, approximate multipliers.
//! - [`stream`]: [`StreamRunner`], the simulator of accelerator instruction streams; its `mvm`
//!   runs the program's crossbar kernel, so the two cannot drift apart.
//! - [`int_gemm`]: the integer kernels (u8 × i8 in i32: AVX-512 VNNI, AVX2, portable) of the
//!   program's exact Conv/Gemm steps.
//! - [`noise`]: the analog non-idealities (a [`noise::NoisyChip`] is one programming of the
//!   chip) and the noisy crossbar step.
//! - [`worst_case`]: the worst-case device-variation search on a program's float surrogate.
//!
//! Architecture invariant: `sim` depends on `ir`, the float interpreter (`interp`: tensors,
//! GEMM kernels, gradients) and the program/stream formats (`backends`) — never on `passes` or
//! the importer. Noise off is the exact path, untouched.

pub mod int_gemm;
pub mod noise;
pub mod program;
pub mod stream;
pub mod worst_case;

pub use program::{AdcStats, ProgramRunner, StepAdcStats};
pub use stream::StreamRunner;
