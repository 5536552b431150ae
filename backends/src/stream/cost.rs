//! The static cost model of a stream.
