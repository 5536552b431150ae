//! The text form of a stream.
