//! Caps on what one ONNX import may build: nodes, graph depth and tensor size.
//!
//! A model file is untrusted input. Sizes it declares are first checked against the bytes
//! actually present (in `tensor.rs`), but a small file can still describe a graph of millions
//! of nodes, a chain a million nodes deep, or a `ConstantOfShape` of terabytes. These caps
//! refuse such a file with a message naming the flag that raises the cap; their defaults are
//! far above the shared models (ResNet-18: 69 nodes, depth 51; MobileNetV2: 155 nodes), so only
//! a corrupt or hostile file meets them.

/// Caps of one import; every message that refuses a file names the flag that raises the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportLimits {
    /// Most nodes a graph may have (`--max-nodes`).
    pub max_nodes: usize,
    /// Longest chain of nodes from a graph input or constant to a value (`--max-graph-depth`).
    pub max_depth: usize,
    /// Largest tensor, in bytes, the importer reads, creates or infers (`--max-tensor-bytes`).
    /// Constants the importer makes itself (ConstantOfShape, Range, folding) are further capped
    /// at [`MAX_CREATED_BYTES`].
    pub max_tensor_bytes: usize,
    /// Most bytes of constants in all (weights read from the file and constants the importer
    /// creates), summed as they are read (`--max-constant-bytes`): each tensor under the cap
    /// above, a few hundred bytes of ConstantOfShape could still ask for 8 GiB.
    pub max_constant_bytes: usize,
    /// Most bytes of the constants the importer creates itself (ConstantOfShape, Range,
    /// folding), in all (`--max-created-bytes`): what a model of a few bytes can make cimc
    /// allocate.
    pub max_created_bytes: usize,
    /// Most dimensions of any tensor (`--max-rank`): inference and printing cost grows with
    /// the rank, and no model needs hundreds.
    pub max_rank: usize,
}

/// Default of [`ImportLimits::max_nodes`].
pub const DEFAULT_MAX_NODES: usize = 100_000;
/// Default of [`ImportLimits::max_depth`].
pub const DEFAULT_MAX_DEPTH: usize = 10_000;
/// Default of [`ImportLimits::max_tensor_bytes`]: 4 GiB, above any CNN's weight or activation
/// at the batch sizes cimc runs.
pub const DEFAULT_MAX_TENSOR_BYTES: usize = 1 << 32;
/// Default of [`ImportLimits::max_constant_bytes`]: 2 GiB, above every model of the corpus (VGG-16
/// holds 0.55 GB of weights).
pub const DEFAULT_MAX_CONSTANT_BYTES: usize = 2 << 30;
/// Default of [`ImportLimits::max_rank`]: ONNX's own test cases stay under 8 dimensions.
pub const DEFAULT_MAX_RANK: usize = 32;
/// Default of [`ImportLimits::max_created_bytes`]: 1 GiB in all, whatever the tensor cap: a
/// model cannot make the importer allocate more than this from a few bytes of attributes (each
/// constant is checked before it is made). Most real models create only masks, index tables and
/// folded shapes, but caffe2's exports of VGG-19 and ZFNet-512 fill their fully connected
/// weights with ConstantOfShape: 0.49 GB in all for VGG-19, which 256 MiB refused.
pub const DEFAULT_MAX_CREATED_BYTES: usize = 1 << 30;

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_nodes: DEFAULT_MAX_NODES,
            max_depth: DEFAULT_MAX_DEPTH,
            max_tensor_bytes: DEFAULT_MAX_TENSOR_BYTES,
            max_constant_bytes: DEFAULT_MAX_CONSTANT_BYTES,
            max_created_bytes: DEFAULT_MAX_CREATED_BYTES,
            max_rank: DEFAULT_MAX_RANK,
        }
    }
}

impl ImportLimits {
    /// Fails when a tensor of `bytes` bytes (described by `what`) exceeds the tensor cap.
    pub fn check_tensor(&self, bytes: usize, what: impl FnOnce() -> String) -> Result<(), String> {
        if bytes > self.max_tensor_bytes {
            return Err(format!(
                "{} is {bytes} bytes, above the limit of {} bytes (raise it with --max-tensor-bytes)",
                what(),
                self.max_tensor_bytes
            ));
        }
        Ok(())
    }

    /// Fails when a tensor of `rank` dimensions (described by `what`) exceeds the rank cap.
    pub fn check_rank(&self, rank: usize, what: impl FnOnce() -> String) -> Result<(), String> {
        if rank > self.max_rank {
            return Err(format!(
                "{} has rank {rank}, above the limit of {} (raise it with --max-rank)",
                what(),
                self.max_rank
            ));
        }
        Ok(())
    }

    /// Fails when the constants read or created so far, `total` bytes with the one of `bytes`
    /// bytes just added (described by `what`), exceed the constants' cap.
    pub fn check_constants(
        &self,
        total: usize,
        what: impl FnOnce() -> String,
    ) -> Result<(), String> {
        if total > self.max_constant_bytes {
            return Err(format!(
                "with {} the model's constants reach {total} bytes, above the limit of {} bytes \
                 (raise it with --max-constant-bytes)",
                what(),
                self.max_constant_bytes
            ));
        }
        Ok(())
    }

    /// Fails when a graph has more nodes than the cap.
    pub fn check_nodes(&self, nodes: usize) -> Result<(), String> {
        if nodes > self.max_nodes {
            return Err(format!(
                "the graph has {nodes} nodes, above the limit of {} (raise it with --max-nodes)",
                self.max_nodes
            ));
        }
        Ok(())
    }
}

/// The depth of each node (1 + the deepest node feeding it; 1 for a node fed only by graph
/// inputs and constants), given the nodes in a topological `order` and each node's producers.
/// Returns the first node, in `order`, whose depth exceeds `max_depth`, with that depth.
pub fn first_too_deep(
    order: &[usize],
    producers: &[Vec<usize>],
    max_depth: usize,
) -> Option<(usize, usize)> {
    let mut depth = vec![0usize; producers.len()];
    for &i in order {
        let d = 1 + producers[i].iter().map(|&p| depth[p]).max().unwrap_or(0);
        if d > max_depth {
            return Some((i, d));
        }
        depth[i] = d;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_of_a_chain_and_a_diamond() {
        // 0 → 1 → 2, 0 → 2: depth of 2 is 3.
        let producers = vec![vec![], vec![0], vec![0, 1]];
        assert_eq!(first_too_deep(&[0, 1, 2], &producers, 3), None);
        assert_eq!(first_too_deep(&[0, 1, 2], &producers, 2), Some((2, 3)));
    }

    #[test]
    fn messages_name_the_flag() {
        let l = ImportLimits {
            max_nodes: 2,
            max_depth: 1,
            max_tensor_bytes: 8,
            max_constant_bytes: 16,
            max_created_bytes: 8,
            max_rank: 3,
        };
        assert!(l.check_rank(4, || "x".into()).unwrap_err().contains("--max-rank"));
        assert!(l.check_rank(3, || "x".into()).is_ok());
        assert!(l.check_constants(17, || "x".into()).unwrap_err().contains("--max-constant-bytes"));
        assert!(l.check_nodes(3).unwrap_err().contains("--max-nodes"));
        assert!(l.check_tensor(9, || "x".into()).unwrap_err().contains("--max-tensor-bytes"));
        assert!(l.check_tensor(8, || "x".into()).is_ok());
    }
}
