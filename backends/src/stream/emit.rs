//! The emitter: from an interpreter program to an instruction stream.
