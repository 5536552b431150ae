//! What `mixed-precision` measures: the layers it chooses for, the error of the bit-accurate
//! program of any assignment on the calibration samples, and the cost of an assignment
//! (arrays of the tiled graph, energy of the emitted stream or bit operations).

use crate::calibrate::{accumulator_outputs, annotate, Observation, BITS_NOTE};
use crate::config::QuantConfig;
use crate::error::{PassError, Result};
use crate::tile::Chip;
use crate::util::{const_weight, is_pass_through, CalibBatches};
use crate::PassContext;
use cimc_interp::{Runner, Tensor};
use cimc_ir::{DType, Graph, NodeId, Note, NoteValue, Placement, ValueDef, ValueId};
use cimc_sim::program::ProgramRunner;

/// Bits `(weights, produced activation)` of every layer, in layer order.
pub type Assignment = Vec<(u8, u8)>;

/// Where a layer's input codes come from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Source {
    /// The activation another chosen layer produces (index into the layers), maybe through
    /// pass-through ops.
    Layer(usize),
    /// A value whose bits the pass does not choose.
    Bits(u8),
}

/// A matrix layer with float constant weights: what the pass chooses bits for.
#[derive(Clone, Debug)]
pub struct Layer {
    pub node: NodeId,
    pub name: String,
    pub params: u64,
    /// Multiply-accumulates per sample.
    pub macs: u64,
    /// `(wbits, abits)` of the configuration (per-layer overrides, else uniform).
    pub default: (u8, u8),
    /// Widths fixed by the configuration's per-layer overrides.
    pub pinned_w: Option<u8>,
    pub pinned_a: Option<u8>,
    /// Its output is read out as the accumulator: its activation bits do not matter.
    pub accumulator_out: bool,
    pub input: Source,
}

/// The matrix layers of `g` whose weights are float and unannotated, in id order.
pub fn find_layers(g: &Graph, cfg: &QuantConfig) -> Vec<Layer> {
    let accs = accumulator_outputs(g);
    let ids: Vec<(NodeId, ValueId, usize)> = g
        .node_ids()
        .into_iter()
        .filter_map(|n| {
            let (w, axis) = const_weight(g, n)?;
            (g.ty(w).dtype == DType::F32 && g.ty(w).quant.is_none()).then_some((n, w, axis))
        })
        .collect();
    let source = |mut v: ValueId| -> Source {
        loop {
            if let Some(q) = &g.ty(v).quant {
                return Source::Bits(q.bits);
            }
            match g.value(v).def {
                ValueDef::Node { node, .. } => {
                    if let Some(i) = ids.iter().position(|x| x.0 == node) {
                        return Source::Layer(i);
                    }
                    let nd = g.node(node);
                    match nd.inputs.first() {
                        Some(&i) if is_pass_through(&nd.op) => v = i,
                        _ => return Source::Bits(cfg.abits_of(&nd.name)),
                    }
                }
                _ => return Source::Bits(cfg.abits),
            }
        }
    };
    ids.iter()
        .map(|&(n, w, axis)| {
            let node = g.node(n);
            let wshape = &g.ty(w).shape;
            let params = wshape.iter().product::<usize>() as u64;
            let out = &g.ty(node.outputs[0]).shape;
            let batch = out.first().copied().unwrap_or(1).max(1);
            let per_sample = (out.iter().product::<usize>() / batch) as u64;
            let channels = wshape.get(axis).copied().unwrap_or(1).max(1) as u64;
            let over = cfg.layers.get(&node.name);
            Layer {
                node: n,
                name: node.name.clone(),
                params,
                macs: per_sample * (params / channels),
                default: (cfg.wbits_of(&node.name), cfg.abits_of(&node.name)),
                pinned_w: over.and_then(|o| o.wbits),
                pinned_a: over.and_then(|o| o.abits),
                accumulator_out: accs.contains(&node.outputs[0]),
                input: node.inputs.first().map_or(Source::Bits(cfg.abits), |&x| source(x)),
            }
        })
        .collect()
}

/// The float graph, its observation, the samples and their float outputs: everything needed to
/// compile and measure an assignment.
pub struct Bench {
    pub float: Graph,
    pub obs: Observation,
    pub layers: Vec<Layer>,
    /// The context of the passes run on copies: the configuration without `auto_bits`, the
    /// samples as calibration data (for `adc-calibrate`), the chip without `--arrays`.
    sub: PassContext,
    /// Samples measured.
    pub n: usize,
    /// The graph's batch: samples go through in chunks of it.
    chunk: usize,
    /// The float outputs of each chunk.
    reference: Vec<Vec<Tensor>>,
}

impl Bench {
    pub fn new(
        float: Graph,
        obs: Observation,
        layers: Vec<Layer>,
        cfg: &QuantConfig,
        chip: Option<&Chip>,
        samples: Vec<Tensor>,
        n: usize,
    ) -> Result<Bench> {
        let runner = Runner::new(&float)?;
        let batches = CalibBatches::new(&float, &samples, Some(n))?;
        let chunk = batches.batch;
        let mut reference = Vec::new();
        for (start, len) in batches.ranges() {
            reference.push(runner.run(batches.inputs(start, len)?)?);
        }
        let mut config = cfg.clone();
        config.auto_bits = None;
        config.calib_samples = None;
        config.cascade_min_bits = None;
        let chip = chip.map(|c| Chip { budget: None, ..c.clone() });
        let sub = PassContext { config, calib: Some(samples), chip, ..Default::default() };
        Ok(Bench { float, obs, layers, sub, n, chunk, reference })
    }

    pub fn chip(&self) -> Option<&Chip> {
        self.sub.chip.as_ref()
    }

    /// The configuration's own assignment.
    pub fn default_assignment(&self) -> Assignment {
        self.layers
            .iter()
            .map(|l| (l.pinned_w.unwrap_or(l.default.0), l.pinned_a.unwrap_or(l.default.1)))
            .collect()
    }

    /// The float graph with the notes of `a`, calibrated, quantized, and with a chip tiled
    /// (and with `adc` its ADC steps calibrated on the samples).
    pub fn build(&self, a: &Assignment, adc: bool) -> Result<Graph> {
        let mut g = self.float.clone();
        for (l, &(w, ab)) in self.layers.iter().zip(a) {
            let note = Note::new(BITS_NOTE)
                .with("wbits", NoteValue::Int(w.into()))
                .with("abits", NoteValue::Int(ab.into()));
            cimc_ir::note::put(&mut g.node_mut(l.node).notes, note);
        }
        annotate(&mut g, &self.obs, &self.sub.config)?;
        // The back end of the main pipeline, run as a sub-pipeline: the same passes, each
        // followed by the same compaction and verification.
        let mut names = vec!["quantize"];
        if self.sub.chip.is_some() {
            names.push("tile");
            if adc {
                names.push("adc-calibrate");
            }
        }
        crate::Pipeline::from_names(&names)?.run(&mut g, &self.sub, &[], None)?;
        Ok(g)
    }

    /// The program of `a`.
    fn program(&self, a: &Assignment, adc: bool) -> Result<cimc_backends::program::Program> {
        let g = self.build(a, adc)?;
        cimc_backends::program::lower::lower(&g)
            .map_err(|e| PassError::Config(format!("mixed-precision: lowering: {e}")))
    }

    /// The mean over the samples of `‖y − y_float‖² / ‖y_float‖²` of the program of `a` (every
    /// output of a sample together). `done` is called with the samples run so far.
    pub fn error(&self, a: &Assignment, done: &(dyn Fn(u64) + Sync)) -> Result<f64> {
        let program = self.program(a, true)?;
        let runner = ProgramRunner::new(&program)?;
        let mut total = 0.0;
        let calib = self.sub.calib.as_deref().unwrap_or_default();
        let batches = CalibBatches::new(&self.float, calib, Some(self.n))?;
        for (refs, (start, len)) in self.reference.iter().zip(batches.ranges()) {
            let outs = runner.run(batches.inputs(start, len)?)?;
            let mut num = vec![0f64; len];
            let mut den = vec![0f64; len];
            for (y, r) in outs.iter().zip(refs) {
                let (Some(y), Some(r)) = (y.as_f32(), r.as_f32()) else {
                    return Err(PassError::Config(
                        "mixed-precision measures float outputs; the model has others".into(),
                    ));
                };
                let per = r.len() / self.chunk;
                for (i, (yv, rv)) in y.iter().zip(r.iter()).take(per * len).enumerate() {
                    let d = (*yv as f64) - (*rv as f64);
                    num[i / per.max(1)] += d * d;
                    den[i / per.max(1)] += (*rv as f64) * (*rv as f64);
                }
            }
            total += num.iter().zip(&den).map(|(n, d)| n / d.max(1e-30)).sum::<f64>();
            done(len as u64);
        }
        Ok(total / self.n.max(1) as f64)
    }

    /// Per layer, the arrays its blocks take when packed alone; and the arrays of the whole
    /// tiled graph (every layer, blocks sharing arrays). Needs a chip.
    pub fn arrays(&self, a: &Assignment) -> Result<(Vec<usize>, usize)> {
        self.chip().ok_or_else(no_chip)?;
        let g = self.build(a, false)?;
        let mut total = 0;
        let mut by_node = std::collections::BTreeMap::new();
        for (id, node) in g.nodes() {
            let Placement::Crossbar(m) = &node.placement else { continue };
            total = m.blocks.iter().map(|b| b.array + 1).fold(total, usize::max);
            let rects = m
                .blocks
                .iter()
                .filter(|b| b.replica == 0)
                .map(|b| (b.k.1 - b.k.0, (b.n.1 - b.n.0) * m.columns_per_output()))
                .collect();
            let req = crate::placement::BlockReq { layer: 0, rects, load: 0 };
            by_node.insert(
                node.name.clone(),
                crate::placement::pack(m.geometry.rows, m.geometry.cols, &[req], &[1]).arrays,
            );
            let _ = id;
        }
        let per = self.layers.iter().map(|l| by_node.get(&l.name).copied().unwrap_or(0)).collect();
        Ok((per, total))
    }

    /// Per layer, the energy (pJ: crossbar, DAC, ADC, shift-and-add) the cost model gives its
    /// steps in the stream emitted for the chip; and the total of every step. Needs a chip.
    pub fn energy(&self, a: &Assignment) -> Result<(Vec<f64>, f64)> {
        let chip = self.chip().ok_or_else(no_chip)?;
        let program = self.program(a, false)?;
        let opts = cimc_backends::stream::emit::EmitOptions::default();
        let stream = cimc_backends::stream::emit::emit(&program, &chip.target, &opts)
            .map_err(|e| PassError::Config(format!("mixed-precision: emitting the stream: {e}")))?;
        let report = cimc_backends::stream::cost::estimate(&stream, &chip.target)
            .map_err(|e| PassError::Config(format!("mixed-precision: cost model: {e}")))?;
        let analog =
            |e: &cimc_backends::stream::cost::Energy| e.crossbar + e.dac + e.adc + e.shift_add;
        let mut per = vec![0.0; self.layers.len()];
        let mut total = 0.0;
        for lc in report.layers.iter().chain(&report.unattributed) {
            let e = analog(&lc.energy);
            total += e;
            let origin = lc.name.split_once(' ').map_or(lc.name.as_str(), |(_, o)| o);
            if let Some(i) = self.layers.iter().position(|l| l.name == origin) {
                per[i] += e;
            }
        }
        Ok((per, total))
    }

    /// The op-count proxy of energy: `Σ MACs · wbits · input bits` over the chosen layers.
    pub fn bit_ops(&self, a: &Assignment) -> f64 {
        self.layers
            .iter()
            .zip(a)
            .map(|(l, &(w, _))| {
                let input = match l.input {
                    Source::Layer(p) => a[p].1,
                    Source::Bits(b) => b,
                };
                l.macs as f64 * w as f64 * input as f64
            })
            .sum()
    }
}

fn no_chip() -> PassError {
    PassError::Config("--budget arrays=N counts crossbar arrays: it needs a chip (--target)".into())
}
