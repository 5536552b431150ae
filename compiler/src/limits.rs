//! Aggregate limits of a run: the bytes of activations a run would hold at once, planned from
//! the shapes before anything is allocated.
//!
//! The importer caps each tensor (`--max-tensor-bytes`, `onnx/limits.rs`), but a few hundred
//! bytes of model can declare several tensors under that cap whose sum is far beyond the
//! machine's memory (four 2 GiB Expands and their sum: 10 GiB). A run is therefore planned
//! first: the float interpreter and the program runner drop each value after its last reader,
//! so their peak is walked in execution order; calibration keeps every observed value of a
//! batch at once (its probe makes them all outputs), so for a compile the plan is their sum.
//! Above [`DEFAULT_MAX_ACTIVATION_BYTES`] (or `--max-activation-bytes`) the run is refused
//! with exit 1, naming the file and the flag.

use crate::error::{Error, Result};
use cimc_backends::program::Program;
use cimc_ir::Graph;
use std::path::Path;

/// Default of `--max-activation-bytes`: 8 GiB, far above a CNN's activations at the batches
/// cimc runs (ResNet-50 holds ~0.2 GB per sample at its peak).
pub const DEFAULT_MAX_ACTIVATION_BYTES: u64 = 8 << 30;

/// The cap of this process (set once by the command line; the default otherwise).
static MAX_ACTIVATION_BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Sets the activation cap of this process; a second call keeps the first.
pub fn set_max_activation_bytes(bytes: u64) {
    let _ = MAX_ACTIVATION_BYTES.set(bytes);
}

fn max_activation_bytes() -> u64 {
    MAX_ACTIVATION_BYTES.get().copied().unwrap_or(DEFAULT_MAX_ACTIVATION_BYTES)
}

/// How a run holds its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holding {
    /// Each value is dropped after its last reader (the interpreters).
    UntilLastUse,
    /// Every value is kept to the end of a batch (calibration's probe).
    All,
}

/// The bytes of activations (graph inputs and node outputs, not constants) `graph` holds at
/// its peak when run as `holding` says.
pub fn graph_activation_bytes(graph: &Graph, holding: Holding) -> u128 {
    let bytes = |v: cimc_ir::ValueId| {
        let t = graph.ty(v);
        t.shape.iter().fold(t.dtype.size() as u128, |a, &d| a.saturating_mul(d as u128))
    };
    // The index, in execution order, of each value's last reader (graph outputs: never freed).
    let mut last = vec![usize::MAX; graph.value_count()];
    let mut freed_at: Vec<Vec<cimc_ir::ValueId>> = Vec::new();
    if holding == Holding::UntilLastUse {
        let nodes: Vec<_> = graph.nodes().collect();
        for (i, (_, n)) in nodes.iter().enumerate() {
            for &v in &n.inputs {
                last[v.index()] = i;
            }
        }
        for &v in graph.outputs() {
            last[v.index()] = usize::MAX;
        }
        freed_at = vec![Vec::new(); nodes.len()];
        for (v, &i) in last.iter().enumerate() {
            if i != usize::MAX && graph.value(cimc_ir::ValueId(v as u32)).const_data().is_none() {
                freed_at[i].push(cimc_ir::ValueId(v as u32));
            }
        }
    }
    let mut live: u128 = graph.inputs().iter().map(|&v| bytes(v)).sum();
    let mut peak = live;
    for (i, (_, n)) in graph.nodes().enumerate() {
        live += n.outputs.iter().map(|&v| bytes(v)).sum::<u128>();
        peak = peak.max(live);
        if let Some(freed) = freed_at.get(i) {
            live -= freed.iter().map(|&v| bytes(v)).sum::<u128>();
        }
    }
    peak
}

/// The bytes of buffers a program run holds at its peak (each buffer dropped after the last
/// step that touches it, as the program runner does; 4 bytes per element, codes as i32).
pub fn program_activation_bytes(program: &Program) -> u128 {
    let bytes = |b: usize| program.buffers[b].numel() as u128 * 4;
    let mut last = vec![usize::MAX; program.buffers.len()];
    for (i, s) in program.steps.iter().enumerate() {
        for b in cimc_backends::program::step_buffers(s) {
            last[b] = i;
        }
    }
    for &b in &program.outputs {
        last[b] = usize::MAX;
    }
    let mut freed_at = vec![Vec::new(); program.steps.len()];
    for (b, &i) in last.iter().enumerate() {
        if i != usize::MAX {
            freed_at[i].push(b);
        }
    }
    let mut live: u128 = program.inputs.iter().map(|&b| bytes(b)).sum();
    let mut peak = live;
    for (i, s) in program.steps.iter().enumerate() {
        if let Some(&out) = cimc_backends::program::step_buffers(s).last() {
            if !program.inputs.contains(&out) {
                live += bytes(out);
            }
        }
        peak = peak.max(live);
        live = live.saturating_sub(freed_at[i].iter().map(|&b| bytes(b)).sum::<u128>());
    }
    peak
}

/// Refuses a run of `file` that would hold `planned` bytes of activations (`what`: "a run at
/// batch 8", "calibration") above the cap.
pub fn check_activations(file: &Path, what: &str, planned: u128) -> Result<()> {
    let cap = max_activation_bytes();
    if planned > cap as u128 {
        return Err(Error::Usage(format!(
            "{}: {what} would hold {planned} bytes of activations at once, above the limit of \
             {cap} bytes (raise it with --max-activation-bytes)",
            file.display()
        )));
    }
    Ok(())
}

/// [`check_activations`] of a float run of `graph` (read from `file`), values freed after use.
pub fn check_graph_run(file: &Path, graph: &Graph) -> Result<()> {
    let batch = graph.inputs().first().and_then(|&v| graph.ty(v).shape.first().copied());
    let what = format!("a run at batch {}", batch.unwrap_or(1));
    check_activations(file, &what, graph_activation_bytes(graph, Holding::UntilLastUse))
}

/// [`check_activations`] of a run of `program` (read from `file`).
pub fn check_program_run(file: &Path, program: &Program) -> Result<()> {
    check_activations(file, "a run of the program", program_activation_bytes(program))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cimc_ir::{DType, Op, TensorType};

    /// x → relu → relu → relu: at most two values live at once when freed after use.
    #[test]
    fn a_chain_holds_two_values_at_once_and_calibration_all_of_them() {
        let mut g = Graph::new("chain");
        let mut v = g.add_input("x", TensorType::new(DType::F32, vec![1, 256]));
        for i in 0..3 {
            let n = g.add_node(
                format!("r{i}"),
                Op::Relu,
                vec![v],
                vec![(format!("y{i}"), TensorType::new(DType::F32, vec![1, 256]))],
            );
            v = g.node(n).outputs[0];
        }
        g.set_outputs(vec![v]);
        assert_eq!(graph_activation_bytes(&g, Holding::UntilLastUse), 2 * 1024);
        assert_eq!(graph_activation_bytes(&g, Holding::All), 4 * 1024);
    }

    #[test]
    fn the_message_names_the_file_and_the_flag() {
        let e = check_activations(Path::new("m.onnx"), "a run", 1 << 40).expect_err("over");
        let m = e.to_string();
        assert!(m.contains("m.onnx") && m.contains("--max-activation-bytes"), "{m}");
        assert!(check_activations(Path::new("m.onnx"), "a run", 1 << 20).is_ok());
    }
}
