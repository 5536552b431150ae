//! The cimc pass pipeline.
//!
//! A pass is a named transformation of an `ir::Graph` ([`Pass`]). Passes talk to each other
//! only through the IR: whatever one pass decides (a fused clamp, a calibrated range, integer
//! codes) is written into the graph, where the next pass, the verifier and the text dump see it.
//! [`Pipeline`] runs a list of passes by name, verifies the graph after each one, and can print
//! the IR after a pass or stop there (as LLVM's `opt --print-after/--stop-after`); each pass
//! returns counters ([`Stats`]) for `--stats`.
//!
//! Architecture invariant: every pass leaves a graph that `ir::verify::verify` accepts.

pub mod adc_calibrate;
pub mod bn_calibrate;
pub mod calibrate;
pub mod canonicalize;
pub mod cascade;
pub mod config;
mod conv_transpose;
mod dense;
pub mod epilogue;
pub mod error;
pub mod fold_bn;
pub mod fold_qdq;
pub mod fuse_layer_norm;
pub mod mixed_precision;
pub mod placement;
pub mod quantize;
pub mod reference_stats;
pub mod tile;
pub mod unroll_recurrent;
mod util;

pub use config::QuantConfig;
pub use error::{PassError, Result};

use cimc_interp::Tensor;
use cimc_ir::Graph;
use std::collections::BTreeMap;

/// Counters a pass reports (`--stats`): name → count, in name order.
pub type Stats = BTreeMap<&'static str, u64>;

/// What passes may read besides the graph: the quantization settings and calibration data.
#[derive(Default)]
pub struct PassContext {
    pub config: QuantConfig,
    /// Calibration inputs, one tensor per graph input, `[N, ...]`.
    pub calib: Option<Vec<Tensor>>,
    /// The chip to map onto (`tile`); `None`: no mapping.
    pub chip: Option<tile::Chip>,
    /// Called with the number of calibration samples processed (progress bars).
    pub progress: Option<Box<dyn Fn(u64, u64) + Send + Sync>>,
    /// What passes report beyond their counters (`--report`): pass name → JSON, filled by
    /// [`PassContext::report`].
    pub reports: std::sync::Mutex<BTreeMap<&'static str, serde_json::Value>>,
}

impl PassContext {
    /// Records pass `name`'s report (its decisions, per layer), replacing an earlier one.
    pub fn report(&self, name: &'static str, value: serde_json::Value) {
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).insert(name, value);
    }

    /// The reports recorded so far.
    pub fn reports(&self) -> BTreeMap<&'static str, serde_json::Value> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub trait Pass {
    /// The name used on the command line, in docs and in test folders (`fold-bn`).
    fn name(&self) -> &'static str;
    fn run(&self, graph: &mut Graph, cx: &PassContext) -> Result<Stats>;
}

/// Every pass, by name, in pipeline order.
pub fn all_passes() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(fold_qdq::FoldQdq),
        Box::new(fold_bn::FoldBn),
        Box::new(unroll_recurrent::UnrollRecurrent),
        Box::new(fuse_layer_norm::FuseLayerNorm),
        Box::new(canonicalize::Canonicalize),
        Box::new(mixed_precision::MixedPrecision),
        Box::new(reference_stats::ReferenceStats),
        Box::new(calibrate::Calibrate),
        Box::new(cascade::Cascade),
        Box::new(quantize::Quantize),
        Box::new(tile::Tile),
        Box::new(adc_calibrate::AdcCalibrate),
        Box::new(bn_calibrate::BnCalibrate),
    ]
}

pub fn pass_by_name(name: &str) -> Option<Box<dyn Pass>> {
    all_passes().into_iter().find(|p| p.name() == name)
}

pub fn pass_names() -> Vec<&'static str> {
    all_passes().iter().map(|p| p.name()).collect()
}

/// A list of passes run in order.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
}

/// What happened in one run of a pipeline.
#[derive(Default, Debug)]
pub struct PipelineReport {
    /// (pass, counters) in run order.
    pub stats: Vec<(&'static str, Stats)>,
    /// IR text after each pass named in `print_after`.
    pub printed: Vec<(&'static str, String)>,
    /// The pass it stopped after, when `stop_after` named one.
    pub stopped_after: Option<&'static str>,
    /// Each pass's wall time and memory, in run order (for `--time-passes`; never in a
    /// deterministic output).
    pub times: Vec<PassTime>,
}

/// What one pass (or a later stage of a compilation: lowering, emission, writing) cost.
#[derive(Clone, Debug)]
pub struct PassTime {
    pub pass: &'static str,
    /// Wall time, including the graph's compaction and verification after a pass.
    pub time: std::time::Duration,
    /// Resident memory after it, in bytes (`None` where `/proc/self/statm` is not there).
    pub resident: Option<u64>,
    /// The process's peak resident memory so far, in bytes (`VmHWM`; `None` where
    /// `/proc/self/status` is not there): the stage where it grows is the one that set it.
    pub peak: Option<u64>,
}

impl PassTime {
    /// The record of a stage named `pass` that started at `start`, measured now.
    pub fn since(pass: &'static str, start: std::time::Instant) -> PassTime {
        PassTime { pass, time: start.elapsed(), resident: resident_bytes(), peak: peak_bytes() }
    }
}

impl Pipeline {
    /// The default pipeline: every pass.
    pub fn default_pipeline() -> Pipeline {
        Pipeline { passes: all_passes() }
    }

    /// The pipeline of the named passes; an unknown name is an error listing the known ones.
    pub fn from_names(names: &[&str]) -> Result<Pipeline> {
        let mut passes = Vec::new();
        for n in names {
            passes.push(pass_by_name(n).ok_or_else(|| unknown_pass(n))?);
        }
        Ok(Pipeline { passes })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs the passes, verifying after each. Prints (into the report) after the passes named in
    /// `print_after`; stops after `stop_after`.
    pub fn run(
        &self,
        graph: &mut Graph,
        cx: &PassContext,
        print_after: &[String],
        stop_after: Option<&str>,
    ) -> Result<PipelineReport> {
        for n in print_after.iter().map(String::as_str).chain(stop_after) {
            if pass_by_name(n).is_none() {
                return Err(unknown_pass(n));
            }
        }
        let mut report = PipelineReport::default();
        for p in &self.passes {
            let start = std::time::Instant::now();
            let stats = p.run(graph, cx)?;
            graph.compact().map_err(|e| PassError::Internal(format!("after {}: {e}", p.name())))?;
            cimc_ir::verify::verify(graph).map_err(|e| {
                PassError::Internal(format!("the graph after {} does not verify: {e}", p.name()))
            })?;
            report.stats.push((p.name(), stats));
            report.times.push(PassTime::since(p.name(), start));
            if print_after.iter().any(|n| n == p.name()) {
                report.printed.push((p.name(), graph.to_string()));
            }
            if stop_after == Some(p.name()) {
                report.stopped_after = Some(p.name());
                break;
            }
        }
        Ok(report)
    }
}

/// This process's resident memory (Linux `/proc/self/statm`, 4 KiB pages), for `--time-passes`.
pub fn resident_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// This process's peak resident memory so far (Linux `VmHWM` of `/proc/self/status`), in bytes.
pub fn peak_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn unknown_pass(n: &str) -> PassError {
    PassError::Config(format!("unknown pass '{n}' (passes: {})", pass_names().join(", ")))
}
