//! The cimc pass pipeline.
