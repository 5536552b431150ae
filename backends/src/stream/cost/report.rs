//! The cost report: what [`super::estimate`] returns (serializable, deterministic, every figure
//! rounded to 9 significant digits).

use serde::Serialize;

/// Energy by component (pJ).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Energy {
    /// Crossbar reads.
    pub crossbar: f64,
    /// Input drivers.
    pub dac: f64,
    /// Column converters.
    pub adc: f64,
    /// Shift-and-add of the ADC outputs.
    pub shift_add: f64,
    /// The digital vector unit.
    pub vector: f64,
    /// Scratchpad reads and writes.
    pub buffer: f64,
    /// Global memory (loads, stores, weights of `xbar_load`).
    pub global_memory: f64,
    /// The on-chip network (`send`).
    pub interconnect: f64,
    /// Programming cells (`xbar_load`).
    pub programming: f64,
    /// Multiply-accumulates of the digital matrix unit (`matmul`); absent from a report when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub digital_matrix: f64,
    /// The arrays' input and output registers (`mvm`); absent from a report when 0 (a target
    /// that does not separate them).
    #[serde(skip_serializing_if = "is_zero")]
    pub registers: f64,
    /// The bus between a core's scratchpad and its arrays (`mvm`); absent when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub array_bus: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

impl Energy {
    /// The components with their names, in declaration order (`digital_matrix`, `registers`
    /// and `array_bus` only when they are not 0, as in the JSON form).
    pub fn components(&self) -> Vec<(&'static str, f64)> {
        let mut v = vec![
            ("crossbar", self.crossbar),
            ("dac", self.dac),
            ("adc", self.adc),
            ("shift_add", self.shift_add),
            ("vector", self.vector),
            ("buffer", self.buffer),
            ("global_memory", self.global_memory),
            ("interconnect", self.interconnect),
            ("programming", self.programming),
        ];
        for (name, e) in [
            ("digital_matrix", self.digital_matrix),
            ("registers", self.registers),
            ("array_bus", self.array_bus),
        ] {
            if e != 0.0 {
                v.push((name, e));
            }
        }
        v
    }

    pub fn total(&self) -> f64 {
        self.components().iter().map(|(_, v)| v).sum()
    }

    pub(super) fn add(&mut self, o: &Energy) {
        self.crossbar += o.crossbar;
        self.dac += o.dac;
        self.adc += o.adc;
        self.shift_add += o.shift_add;
        self.vector += o.vector;
        self.buffer += o.buffer;
        self.global_memory += o.global_memory;
        self.interconnect += o.interconnect;
        self.programming += o.programming;
        self.digital_matrix += o.digital_matrix;
        self.registers += o.registers;
        self.array_bus += o.array_bus;
    }

    pub(super) fn scaled(&self, f: f64) -> Energy {
        Energy {
            crossbar: self.crossbar * f,
            dac: self.dac * f,
            adc: self.adc * f,
            shift_add: self.shift_add * f,
            vector: self.vector * f,
            buffer: self.buffer * f,
            global_memory: self.global_memory * f,
            interconnect: self.interconnect * f,
            programming: self.programming * f,
            digital_matrix: self.digital_matrix * f,
            registers: self.registers * f,
            array_bus: self.array_bus * f,
        }
    }

    pub(super) fn rounded(&self) -> Energy {
        self.map(round)
    }

    fn map(self, f: fn(f64) -> f64) -> Energy {
        let mut e = self;
        for v in [
            &mut e.crossbar,
            &mut e.dac,
            &mut e.adc,
            &mut e.shift_add,
            &mut e.vector,
            &mut e.buffer,
            &mut e.global_memory,
            &mut e.interconnect,
            &mut e.programming,
            &mut e.digital_matrix,
            &mut e.registers,
            &mut e.array_bus,
        ] {
            *v = f(*v);
        }
        e
    }
}

/// Events counted over the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub instructions: u64,
    /// Input vectors through crossbar groups (`mvm` counts).
    pub mvm_vectors: u64,
    /// Multiply-accumulates of the `mvm`s: vectors · `k` · `n`.
    pub macs: u64,
    pub conversions: u64,
    /// Elements through the digital vector unit.
    pub vector_elements: u64,
    pub buffer_read_bytes: u64,
    pub buffer_write_bytes: u64,
    pub global_bytes: u64,
    /// Bytes sent times hops.
    pub interconnect_byte_hops: u64,
    pub cells_programmed: u64,
    /// `host` instructions (host work, not chip work: 0 chip time).
    pub host_ops: u64,
    /// Values the host operations read.
    pub host_elements: u64,
    /// Multiply-accumulates of the digital matrix unit (`matmul`); absent from a report when 0.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub digital_macs: u64,
}

impl Counts {
    pub(super) fn add(&mut self, o: &Counts) {
        self.instructions += o.instructions;
        self.mvm_vectors += o.mvm_vectors;
        self.macs += o.macs;
        self.conversions += o.conversions;
        self.vector_elements += o.vector_elements;
        self.buffer_read_bytes += o.buffer_read_bytes;
        self.buffer_write_bytes += o.buffer_write_bytes;
        self.global_bytes += o.global_bytes;
        self.interconnect_byte_hops += o.interconnect_byte_hops;
        self.cells_programmed += o.cells_programmed;
        self.host_ops += o.host_ops;
        self.host_elements += o.host_elements;
        self.digital_macs += o.digital_macs;
    }
}

/// The whole stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// From the start to the last core's end (ns).
    pub latency_ns: f64,
    /// `latency_ns · clock_ghz`.
    pub cycles: f64,
    /// Chip energy (host work excluded; pJ).
    pub energy_pj: f64,
    pub energy: Energy,
    pub macs: u64,
    /// `2 · macs`.
    pub ops: u64,
    /// `ops / energy_pj` (an operation per pJ is a TOPS/W).
    pub tops_per_w: f64,
    /// `ops / latency_ns` (GOPS): one inference alone.
    pub gops: f64,
    /// Time between inferences in steady state (ns): the timeline of a stream of inferences,
    /// each core starting the next as soon as it has finished one and its inputs and credits
    /// allow (`docs/cost-model.md`, "The steady state"); at most the latency.
    pub interval_ns: f64,
    /// `10⁹ / interval_ns`.
    pub inferences_per_s: f64,
    /// `ops / interval_ns` (GOPS) in steady state.
    pub steady_gops: f64,
    /// `energy_pj / interval_ns / 1000` (W) in steady state.
    pub steady_power_w: f64,
    pub counts: Counts,
    /// The work by kind of unit: what share of the energy and time stays outside the arrays.
    pub breakdown: Breakdown,
}

/// Energy and busy time (summed over cores) of one kind of unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Work {
    pub energy_pj: f64,
    /// `energy_pj` over the chip energy (0..=1).
    pub energy_share: f64,
    pub busy_ns: f64,
    /// `busy_ns · clock_ghz`.
    pub busy_cycles: f64,
    /// Instructions of this kind.
    pub instructions: u64,
}

/// The work of a stream by kind of unit (`docs/cost-model.md`, "Cost breakdown"), each
/// instruction in one kind by its class: `crossbar` (`xbar_config`, `adc_step`, `mvm`,
/// `xbar_load`), `digital_matrix` (`matmul`), `vector` (every instruction of the vector unit:
/// `requant`, `add`, `lut`, `softmax`, `layer_norm`...) and `movement` (`load`, `store`, `copy`,
/// `fill`, `send`, `recv`) and `control` (`sync`, `halt`, `host`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Breakdown {
    pub crossbar: Work,
    pub digital_matrix: Work,
    pub vector: Work,
    pub movement: Work,
    pub control: Work,
}

impl Breakdown {
    /// The kind of an instruction of opcode `op` (by its class, the opcode's high nibble).
    pub(super) fn kind_mut(&mut self, opcode: u8) -> &mut Work {
        match opcode >> 4 {
            0 => &mut self.control,
            1 => &mut self.movement,
            2 => &mut self.crossbar,
            4 => &mut self.digital_matrix,
            _ => &mut self.vector,
        }
    }

    pub(super) fn finished(mut self, total_pj: f64, clock_ghz: f64) -> Breakdown {
        for w in [
            &mut self.crossbar,
            &mut self.digital_matrix,
            &mut self.vector,
            &mut self.movement,
            &mut self.control,
        ] {
            w.energy_share = if total_pj > 0.0 { round(w.energy_pj / total_pj) } else { 0.0 };
            w.busy_cycles = round(w.busy_ns * clock_ghz);
            w.energy_pj = round(w.energy_pj);
            w.busy_ns = round(w.busy_ns);
        }
        self
    }
}

/// One layer of `Stream::layers` (instructions attributed through `Core::marks`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LayerCost {
    pub name: String,
    pub instructions: u64,
    pub mvm_vectors: u64,
    pub macs: u64,
    pub conversions: u64,
    /// Busy time summed over cores (ns).
    pub busy_ns: f64,
    /// When its first instruction starts and its last ends (ns; 0 without instructions).
    pub first_ns: f64,
    pub last_ns: f64,
    pub energy_pj: f64,
    pub energy: Energy,
}

/// One core.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CoreCost {
    pub core: u32,
    pub instructions: u64,
    /// The sum of its instructions' latencies (ns).
    pub busy_ns: f64,
    /// `latency_ns − busy_ns`: waiting at barriers, for data, for the global memory, or done.
    pub idle_ns: f64,
    /// When it halts (ns).
    pub end_ns: f64,
    pub energy_pj: f64,
    /// Scratchpad words the stream gives it.
    pub scratch_words: u32,
    /// One past the highest scratchpad word it reads or writes.
    pub high_water_words: u64,
    /// The words it writes, each at the widest value it ever holds (1 byte for a code, 4 for an
    /// accumulator, `elem_bytes` for data loaded or received).
    pub footprint_bytes: u64,
    /// The target's `core.scratchpad_kib · 1024`.
    pub capacity_bytes: u64,
    pub over_capacity: bool,
}

/// The fraction of the chip's arrays busy in an `mvm`, over equal time bins.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Utilization {
    /// The arrays counted (`Stream::arrays`, or the arrays the groups use when it is 0).
    pub arrays: u32,
    pub bin_ns: f64,
    pub bins: Vec<f64>,
    /// Over the whole run.
    pub mean: f64,
    /// The distinct arrays of the stream's groups.
    pub used_arrays: u32,
    /// The mean as a fraction of the used arrays.
    pub mean_used: f64,
    /// In steady state (a stream of inferences, one every `Totals::interval_ns`): the arrays'
    /// busy time of one inference over `interval_ns` times the chip's arrays...
    pub steady: f64,
    /// ...and times the used arrays.
    pub steady_used: f64,
}

/// The one-time programming of the groups that no `xbar_load` programs (every group of a
/// pipelined stream): paid when the stream is loaded, not per inference, so not in the totals.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Preload {
    pub groups: u64,
    pub cells: u64,
    pub energy_pj: f64,
    /// All arrays are written in parallel: the slowest group (ns).
    pub latency_ns: f64,
}

/// The latency and energy of one instruction (not rounded).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct InstrCost {
    /// When it starts (ns): after its core's previous instruction, its barrier, its data or
    /// the global memory.
    pub start_ns: f64,
    pub latency_ns: f64,
    pub energy_pj: f64,
}

/// The cost of a stream on a target (`docs/cost-model.md`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CostReport {
    pub stream: String,
    pub target: String,
    pub target_hash: String,
    pub schedule: String,
    pub clock_ghz: f64,
    pub totals: Totals,
    pub layers: Vec<LayerCost>,
    /// Instructions before a core's first mark (`None` when there are none).
    pub unattributed: Option<LayerCost>,
    pub cores: Vec<CoreCost>,
    pub utilization: Utilization,
    pub preload: Preload,
    /// The cores whose footprint exceeds the scratchpad.
    pub scratch_over_capacity: Vec<u32>,
    /// The chip: converters at the target's resolutions, area and static power by component,
    /// TOPS/mm² and the energy with static power.
    pub chip: super::chip::ChipCost,
    #[serde(skip)]
    pub(super) instrs: Vec<Vec<InstrCost>>,
}

impl CostReport {
    /// Instruction `index` of core `core`.
    pub fn per_instruction(&self, core: usize, index: usize) -> Option<InstrCost> {
        self.instrs.get(core)?.get(index).copied()
    }

    /// Every instruction of core `core`, in order.
    pub fn instructions_of(&self, core: usize) -> &[InstrCost] {
        self.instrs.get(core).map_or(&[], Vec::as_slice)
    }
}

/// 9 significant digits (removes the noise of float sums; deterministic).
pub fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.8e}").parse().unwrap_or(x)
}
