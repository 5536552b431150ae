//! Reads the text form back into a [`crate::Graph`].
