//! The verifier: every problem of a graph, each tied to a node.
