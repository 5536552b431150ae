//! The text form of the IR (`Display for Graph`).
