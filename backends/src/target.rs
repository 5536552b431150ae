//! Target descriptions: the crossbar chip a program is compiled for.
//!
//! A target is a TOML file (`docs/targets.md` lists every key, its default and its meaning):
//! the array geometry and cell bits, the DAC and ADC resolutions, the ADC range mode, the
//! encoding of signed weights, and the cost figures of `docs/hardware-model.md` §6. Every key has a
//! default — the ISAAC-like chip — so an empty file is a valid target. Three presets are
//! embedded in the binary (`targets/isaac.toml`, `targets/puma.toml`, `targets/edge.toml`, each
//! cost figure with its source in a comment).
//!
//! A [`Target`] holds the chip geometry as one [`ChipGeometry`] (defined in `cimc_ir`, which the
//! `tile` pass, the IR, programs and streams share), next to what only the backends read: the
//! cores, the cost figures and the noise. The target's hash is the geometry's: what decides the
//! mapping, and nothing else.
//!
//! Loading validates: unknown keys and TOML errors come back with the file, line and key;
//! out-of-range values, a lossless ADC that cannot hold the largest partial sum, and the
//! offset encoding with a calibrated (clipping) ADC are refused with a message naming the file
//! and the key.

use crate::error::{BackendError, Result};
use crate::noise::NoiseSpec;
pub use physical::{
    AdcEnergyLaw, AdcRateLaw, AreaSpec, ChipFigures, DacEnergyLaw, Inventory, LeakageSpec,
};

mod physical;
use serde::{Deserialize, Serialize};
use std::path::Path;

use cimc_ir::GeometryField;
pub use cimc_ir::{AdcRange, ChipGeometry, CrossbarGeometry, WeightEncoding};

/// Most arrays a target's chip may have (`array.count`), as `--arrays` may ask: 2^24, far
/// above any chip, and below what the mapping's per-array records could not hold.
pub const MAX_CHIP_ARRAYS: usize = 1 << 24;

/// The key a target file spells a geometry field with (in the messages about it).
fn target_key(field: GeometryField) -> &'static str {
    match field {
        GeometryField::Encoding => "weights.encoding",
        GeometryField::Rows => "array.rows",
        GeometryField::Cols => "array.cols",
        GeometryField::CellBits => "array.cell_bits",
        GeometryField::DacBits => "dac.bits",
        GeometryField::AdcBits => "adc.bits",
    }
}

/// The `[array]` table of a target file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ArrayTable {
    /// Rows (word lines): the longest dot product one array computes.
    rows: usize,
    /// Physical columns (bit lines).
    cols: usize,
    /// Bits stored per cell.
    cell_bits: u32,
    /// Arrays on the chip; 0 = as many as needed.
    count: usize,
}

impl Default for ArrayTable {
    fn default() -> Self {
        ArrayTable { rows: 128, cols: 128, cell_bits: 2, count: 16128 }
    }
}

/// The `[dac]` table: the input drivers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DacTable {
    /// Input bits applied per cycle (1 = bit-serial).
    bits: u32,
}

impl Default for DacTable {
    fn default() -> Self {
        DacTable { bits: 1 }
    }
}

/// The `[adc]` table: the column converters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AdcTable {
    /// Resolution in bits.
    bits: u32,
    /// How the step is chosen.
    range: AdcRange,
    /// The percentile of calibration partial sums that `calib` must hold (in (0, 100]).
    percentile: f64,
    /// One step per column group instead of one per layer.
    per_column_group: bool,
}

impl Default for AdcTable {
    fn default() -> Self {
        AdcTable { bits: 8, range: AdcRange::Calib, percentile: 99.99, per_column_group: false }
    }
}

/// The `[weights]` table: how weights are stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct WeightsTable {
    encoding: WeightEncoding,
}

impl Default for WeightsTable {
    fn default() -> Self {
        WeightsTable { encoding: WeightEncoding::Flipped }
    }
}

/// The cores of the accelerator backend (`docs/isa.md`): each owns some arrays and a scratchpad.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreSpec {
    /// Arrays per core: the emitter gives a crossbar group to the core of its first array.
    pub arrays: usize,
    /// Scratchpad per core (KiB); the cost report compares each core's high-water mark with it.
    pub scratchpad_kib: usize,
}

impl Default for CoreSpec {
    fn default() -> Self {
        CoreSpec { arrays: 96, scratchpad_kib: 64 }
    }
}

/// Energy and latency per event (`docs/hardware-model.md` §6). Energies in picojoules, times in
/// nanoseconds; the unit is in every name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostSpec {
    /// Crossbar read energy per activated row per column per input slice (pJ).
    pub xbar_read_energy_pj: f64,
    /// Time of one crossbar read, i.e. one input slice on every row (ns).
    pub xbar_read_latency_ns: f64,
    /// DAC energy per row per input slice (pJ).
    pub dac_energy_pj: f64,
    /// ADC energy per conversion (pJ).
    pub adc_energy_pj: f64,
    /// Conversions per second of one ADC (GS/s, > 0).
    pub adc_rate_gsps: f64,
    /// ADCs serving one array (> 0; may be fractional when arrays share an ADC).
    pub adcs_per_array: f64,
    /// Shift-and-add energy per ADC output accumulated (pJ).
    pub shift_add_energy_pj: f64,
    /// Digital vector unit energy per element (pJ).
    pub vector_op_energy_pj: f64,
    /// Digital vector unit time per element (ns).
    pub vector_op_latency_ns: f64,
    /// Local buffer (SRAM/eDRAM) read energy per byte (pJ).
    pub buffer_read_pj_per_byte: f64,
    /// Local buffer write energy per byte (pJ).
    pub buffer_write_pj_per_byte: f64,
    /// Global memory (off-chip DRAM or link) energy per byte (pJ).
    pub global_mem_pj_per_byte: f64,
    /// On-chip interconnect energy per byte per hop (pJ).
    pub interconnect_pj_per_byte_hop: f64,
    /// Programming energy per crossbar cell written (`xbar_load`; pJ).
    pub xbar_write_energy_pj: f64,
    /// Programming time per crossbar row: rows are written one after the other, the arrays of a
    /// group in parallel (ns).
    pub xbar_write_latency_ns: f64,
    /// Elements the digital vector unit of a core processes at once (> 0): a vector
    /// instruction of `e` elements takes `e · vector_op_latency_ns / vector_lanes`.
    pub vector_lanes: f64,
    /// Global memory bandwidth, shared by all cores (GB/s = bytes per ns, > 0).
    pub global_mem_gb_per_s: f64,
    /// Bandwidth of one core's link into the on-chip network (GB/s, > 0).
    pub interconnect_gb_per_s: f64,
    /// Clock of the digital logic (GHz, > 0): control instructions take whole cycles and the
    /// report converts its latencies to cycles with it.
    pub clock_ghz: f64,
    /// Energy of one 8-bit multiply-accumulate (32-bit accumulator) of a core's digital matrix
    /// unit, which runs the products of two activations (`matmul`; pJ).
    pub digital_mac_energy_pj: f64,
    /// Multiply-accumulates the digital matrix unit of a core completes per clock cycle (> 0).
    pub digital_macs_per_cycle: f64,
    /// An array's input register, per row per input slice: the bits it holds for the row's DAC
    /// (ISAAC's IR; pJ). 0 (the default, and not written) when a target does not separate it.
    #[serde(skip_serializing_if = "is_zero")]
    pub input_register_pj: f64,
    /// An array's output register, per conversion: the shift-and-add result it holds (ISAAC's
    /// OR; pJ). 0 (the default, not written) when not separated.
    #[serde(skip_serializing_if = "is_zero")]
    pub output_register_pj: f64,
    /// The bus between a core's scratchpad and its arrays, per byte an `mvm` moves over it (the
    /// inputs read, the accumulators written; ISAAC's eDRAM-to-IMA bus; pJ/B). 0 (the default,
    /// not written) when not separated.
    #[serde(skip_serializing_if = "is_zero")]
    pub array_bus_pj_per_byte: f64,
    /// The resolution (bits) at which `adc_energy_pj`, `adc_rate_gsps`, `area.adc_mm2` and
    /// `leakage.adc_mw` hold; other resolutions scale by `adc_energy_law` and `adc_rate_law`.
    /// In a file, absent means the file's `[adc] bits` (set when a target is loaded); `None`
    /// (a `CostSpec` built in code) scales nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adc_ref_bits: Option<u32>,
    /// How the ADC's energy per conversion (and its area and static power) follow its bits.
    #[serde(skip_serializing_if = "AdcEnergyLaw::is_default")]
    pub adc_energy_law: AdcEnergyLaw,
    /// The knee of the `murmann` law (bits): energy doubles per bit up to it, quadruples above.
    #[serde(
        default = "physical::default_thermal_bits",
        skip_serializing_if = "physical::is_default_thermal_bits"
    )]
    pub adc_thermal_bits: f64,
    /// How an ADC's conversion rate follows its bits.
    #[serde(skip_serializing_if = "AdcRateLaw::is_default")]
    pub adc_rate_law: AdcRateLaw,
    /// The resolution at which `dac_energy_pj`, `area.dac_mm2` and `leakage.dac_mw` hold;
    /// absent in a file means the file's `[dac] bits`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dac_ref_bits: Option<u32>,
    /// How a DAC's energy (and area and static power) follow its bits.
    #[serde(skip_serializing_if = "DacEnergyLaw::is_default")]
    pub dac_energy_law: DacEnergyLaw,
}

impl Default for CostSpec {
    /// The ISAAC-like figures of `targets/isaac.toml` (sources and derivations there).
    fn default() -> Self {
        CostSpec {
            xbar_read_energy_pj: 0.0018310546875,
            xbar_read_latency_ns: 100.0,
            dac_energy_pj: 0.390625,
            adc_energy_pj: 1.5625,
            adc_rate_gsps: 1.28,
            adcs_per_array: 1.0,
            shift_add_energy_pj: 0.01953125,
            vector_op_energy_pj: 0.26,
            vector_op_latency_ns: 1.0,
            buffer_read_pj_per_byte: 0.646875,
            buffer_write_pj_per_byte: 0.646875,
            global_mem_pj_per_byte: 406.25,
            interconnect_pj_per_byte_hop: 1.3125,
            xbar_write_energy_pj: 1.37978,
            xbar_write_latency_ns: 85.693359375,
            vector_lanes: 1.0,
            global_mem_gb_per_s: 25.6,
            interconnect_gb_per_s: 4.0,
            clock_ghz: 1.2,
            digital_mac_energy_pj: 0.213,
            digital_macs_per_cycle: 64.0,
            input_register_pj: 0.0,
            output_register_pj: 0.0,
            array_bus_pj_per_byte: 0.0,
            adc_ref_bits: None,
            adc_energy_law: AdcEnergyLaw::default(),
            adc_thermal_bits: physical::ADC_THERMAL_BITS,
            adc_rate_law: AdcRateLaw::default(),
            dac_ref_bits: None,
            dac_energy_law: DacEnergyLaw::default(),
        }
    }
}

/// A figure a target leaves out of its record when it is 0 (the keys added after format
/// version 2 that a target may not separate), so that the records of the targets that do not
/// state it are the text they were.
fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl CostSpec {
    /// The figures that divide, which must be above 0.
    pub const POSITIVE: &'static [&'static str] = &[
        "adc_rate_gsps",
        "adcs_per_array",
        "vector_lanes",
        "global_mem_gb_per_s",
        "interconnect_gb_per_s",
        "clock_ghz",
        "digital_macs_per_cycle",
    ];

    /// Every figure with its key, in file order.
    fn fields(&self) -> [(&'static str, f64); 24] {
        [
            ("xbar_read_energy_pj", self.xbar_read_energy_pj),
            ("xbar_read_latency_ns", self.xbar_read_latency_ns),
            ("dac_energy_pj", self.dac_energy_pj),
            ("adc_energy_pj", self.adc_energy_pj),
            ("adc_rate_gsps", self.adc_rate_gsps),
            ("adcs_per_array", self.adcs_per_array),
            ("shift_add_energy_pj", self.shift_add_energy_pj),
            ("vector_op_energy_pj", self.vector_op_energy_pj),
            ("vector_op_latency_ns", self.vector_op_latency_ns),
            ("buffer_read_pj_per_byte", self.buffer_read_pj_per_byte),
            ("buffer_write_pj_per_byte", self.buffer_write_pj_per_byte),
            ("global_mem_pj_per_byte", self.global_mem_pj_per_byte),
            ("interconnect_pj_per_byte_hop", self.interconnect_pj_per_byte_hop),
            ("xbar_write_energy_pj", self.xbar_write_energy_pj),
            ("xbar_write_latency_ns", self.xbar_write_latency_ns),
            ("vector_lanes", self.vector_lanes),
            ("global_mem_gb_per_s", self.global_mem_gb_per_s),
            ("interconnect_gb_per_s", self.interconnect_gb_per_s),
            ("clock_ghz", self.clock_ghz),
            ("digital_mac_energy_pj", self.digital_mac_energy_pj),
            ("digital_macs_per_cycle", self.digital_macs_per_cycle),
            ("input_register_pj", self.input_register_pj),
            ("output_register_pj", self.output_register_pj),
            ("array_bus_pj_per_byte", self.array_bus_pj_per_byte),
        ]
    }
}

/// A target chip. `Default` is the ISAAC-like chip under the name `custom`.
///
/// Its file form (TOML, `docs/targets.md`) spells the chip geometry as the `[array]`, `[dac]`,
/// `[adc]` and `[weights]` tables (the private `TargetFile` is that layout).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "TargetFile", into = "TargetFile")]
pub struct Target {
    pub name: String,
    pub description: String,
    /// Everything that decides the mapping; the target's hash is this geometry's.
    pub chip: ChipGeometry,
    pub core: CoreSpec,
    pub cost: CostSpec,
    /// Area of one unit of every component (`[area]`, mm²).
    pub area: AreaSpec,
    /// Static power of one unit of every component (`[leakage]`, mW).
    pub leakage: LeakageSpec,
    /// The analog non-idealities of the device (`docs/hardware-model.md` §5; `docs/noise.md`): used by
    /// `cimc eval --noise`, never by compilation. Off by default, and then not serialized.
    pub noise: NoiseSpec,
}

/// The file layout of a [`Target`]: every key with its default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TargetFile {
    name: String,
    description: String,
    array: ArrayTable,
    dac: DacTable,
    adc: AdcTable,
    weights: WeightsTable,
    core: CoreSpec,
    cost: CostSpec,
    // The tables added after format version 2 are written only when they differ from the
    // defaults, so that the records of the programs and streams of a default target stay the
    // bytes they were.
    #[serde(skip_serializing_if = "AreaSpec::is_default")]
    area: AreaSpec,
    #[serde(skip_serializing_if = "LeakageSpec::is_default")]
    leakage: LeakageSpec,
    #[serde(skip_serializing_if = "NoiseSpec::is_default")]
    noise: NoiseSpec,
}

impl Default for TargetFile {
    fn default() -> Self {
        TargetFile {
            name: "custom".into(),
            description: String::new(),
            array: ArrayTable::default(),
            dac: DacTable::default(),
            adc: AdcTable::default(),
            weights: WeightsTable::default(),
            core: CoreSpec::default(),
            cost: CostSpec::default(),
            area: AreaSpec::default(),
            leakage: LeakageSpec::default(),
            noise: NoiseSpec::default(),
        }
    }
}

impl From<TargetFile> for Target {
    fn from(mut f: TargetFile) -> Target {
        // The converter figures hold at the file's resolutions unless it says otherwise; fixed
        // here, so that `--adc-bits` and the streams' own resolutions scale from them.
        f.cost.adc_ref_bits.get_or_insert(f.adc.bits);
        f.cost.dac_ref_bits.get_or_insert(f.dac.bits);
        let chip = ChipGeometry {
            crossbar: CrossbarGeometry {
                encoding: f.weights.encoding,
                rows: f.array.rows,
                cols: f.array.cols,
                cell_bits: f.array.cell_bits,
                dac_bits: f.dac.bits,
                adc_bits: f.adc.bits,
            },
            adc_range: f.adc.range,
            percentile: f.adc.percentile,
            per_column_group: f.adc.per_column_group,
            arrays: f.array.count,
        };
        Target {
            name: f.name,
            description: f.description,
            chip,
            core: f.core,
            cost: f.cost,
            area: f.area,
            leakage: f.leakage,
            noise: f.noise,
        }
    }
}

impl From<Target> for TargetFile {
    fn from(mut t: Target) -> TargetFile {
        // A reference equal to the resolution is what an absent key means: left out, so that
        // the record of a target that scales nothing is the text it was before these keys.
        if t.cost.adc_ref_bits == Some(t.chip.crossbar.adc_bits) {
            t.cost.adc_ref_bits = None;
        }
        if t.cost.dac_ref_bits == Some(t.chip.crossbar.dac_bits) {
            t.cost.dac_ref_bits = None;
        }
        let (c, x) = (&t.chip, &t.chip.crossbar);
        TargetFile {
            name: t.name,
            description: t.description,
            array: ArrayTable {
                rows: x.rows,
                cols: x.cols,
                cell_bits: x.cell_bits,
                count: c.arrays,
            },
            dac: DacTable { bits: x.dac_bits },
            adc: AdcTable {
                bits: x.adc_bits,
                range: c.adc_range,
                percentile: c.percentile,
                per_column_group: c.per_column_group,
            },
            weights: WeightsTable { encoding: x.encoding },
            core: t.core,
            cost: t.cost,
            area: t.area,
            leakage: t.leakage,
            noise: t.noise,
        }
    }
}

impl Default for Target {
    fn default() -> Self {
        TargetFile::default().into()
    }
}

/// The embedded preset files, by name.
const PRESET_FILES: [(&str, &str); 3] = [
    ("isaac", include_str!("../../targets/isaac.toml")),
    ("puma", include_str!("../../targets/puma.toml")),
    ("edge", include_str!("../../targets/edge.toml")),
];

impl Target {
    /// The names of the embedded presets.
    pub const PRESETS: &'static [&'static str] = &["isaac", "puma", "edge"];

    /// An embedded preset, or `None` for an unknown name.
    pub fn preset(name: &str) -> Option<Target> {
        let (_, text) = PRESET_FILES.iter().find(|(n, _)| *n == name)?;
        let origin = format!("targets/{name}.toml");
        // The presets are validated by the tests; an invalid one is a bug of this crate.
        Some(Target::from_toml_str(text, &origin).expect("embedded preset is valid"))
    }

    /// Parses and validates a target description. `origin` (the file path) prefixes every
    /// message.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Target> {
        let target: Target = toml::from_str(text).map_err(|e| toml_error(text, origin, &e))?;
        target.validate(origin)?;
        Ok(target)
    }

    /// Reads, parses and validates a target file.
    pub fn load(path: &Path) -> Result<Target> {
        let origin = path.display().to_string();
        let text = cimc_ir::files::read_text(path)
            .map_err(|e| BackendError::Target(format!("{origin}: cannot read target file: {e}")))?;
        Target::from_toml_str(&text, &origin)
    }

    /// A preset name, else a path to a target file.
    pub fn resolve(name_or_path: &str) -> Result<Target> {
        if let Some(t) = Target::preset(name_or_path) {
            return Ok(t);
        }
        let path = Path::new(name_or_path);
        if path.exists() {
            return Target::load(path);
        }
        Err(BackendError::Target(format!(
            "unknown target '{name_or_path}': not a preset ({}) and no such file",
            Target::PRESETS.join(", ")
        )))
    }

    /// Checks every rule of `docs/targets.md`; all problems are reported in one message that
    /// starts with `origin`.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BackendError::Target(format!("{origin}: {}", problems.join("; "))))
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let (c, x) = (&self.chip, &self.chip.crossbar);
        if !(1..=65536).contains(&self.core.arrays) {
            p.push(format!("core.arrays = {}: a core owns 1 to 65536 arrays", self.core.arrays));
        }
        if c.arrays > MAX_CHIP_ARRAYS {
            p.push(format!(
                "array.count = {}: a chip holds at most {MAX_CHIP_ARRAYS} arrays (the mapping \
                 keeps a record per array)",
                c.arrays
            ));
        }
        if self.core.scratchpad_kib == 0 {
            p.push("core.scratchpad_kib = 0: a core needs a scratchpad".to_string());
        }
        let geometry = x.problems();
        p.extend(geometry.iter().map(|q| q.message(target_key)));
        // The lossless check shifts by the converters' bits: only when they are in range.
        let converters_ok = !geometry.iter().any(|q| {
            matches!(
                q.field(),
                GeometryField::CellBits | GeometryField::DacBits | GeometryField::AdcBits
            )
        });
        if !(c.percentile > 0.0 && c.percentile <= 100.0) {
            p.push(format!("adc.percentile = {}: a percentile is in (0, 100]", c.percentile));
        }
        if c.adc_range == AdcRange::Lossless && converters_ok && x.rows >= 1 {
            p.extend(self.lossless_problem());
        }
        if x.encoding == WeightEncoding::Offset && c.adc_range == AdcRange::Calib {
            p.push(
                "weights.encoding = \"offset\" with adc.range = \"calib\": an offset encoding \
                 makes the column sums large and the digitally subtracted offset term wrong when \
                 the ADC clips; use adc.range = \"worst\" or \"lossless\", or weights.encoding = \
                 \"differential\" or \"flipped\""
                    .into(),
            );
        }
        for (key, v) in self.cost.fields() {
            let positive = CostSpec::POSITIVE.contains(&key);
            if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
                let want = if positive { "a finite number > 0" } else { "a finite number >= 0" };
                p.push(format!("cost.{key} = {v}: a cost figure is {want}"));
            }
        }
        p.extend(self.physical_problems());
        p.extend(self.noise.problems());
        p
    }

    /// The converters' reference resolutions and the `[area]` and `[leakage]` figures.
    fn physical_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let c = &self.cost;
        for (key, bits) in [("adc_ref_bits", c.adc_ref_bits), ("dac_ref_bits", c.dac_ref_bits)] {
            if let Some(b) = bits.filter(|b| !(1..=16).contains(b)) {
                p.push(format!(
                    "cost.{key} = {b}: a converter's reference resolution is 1 to 16 bits"
                ));
            }
        }
        if !(c.adc_thermal_bits.is_finite() && (1.0..=16.0).contains(&c.adc_thermal_bits)) {
            p.push(format!(
                "cost.adc_thermal_bits = {}: the knee of the ADC energy law is 1 to 16 bits",
                c.adc_thermal_bits
            ));
        }
        for (table, figures) in [("area", self.area.fields()), ("leakage", self.leakage.fields())] {
            for (key, v) in figures {
                if !v.is_finite() || v < 0.0 {
                    p.push(format!(
                        "{table}.{key} = {v}: a figure of [{table}] is a finite number >= 0"
                    ));
                }
            }
        }
        p
    }

    /// Why a lossless ADC range cannot hold the largest partial sum, if it cannot.
    fn lossless_problem(&self) -> Option<String> {
        let x = &self.chip.crossbar;
        let p_max = self.max_partial_sum();
        let top = x.adc_top();
        if p_max <= top {
            return None;
        }
        let need = 64 - p_max.leading_zeros();
        let fix = if need <= 16 {
            format!("lossless needs adc.bits >= {need}")
        } else {
            format!("no ADC of at most 16 bits can be lossless ({need} bits needed)")
        };
        let largest = match x.encoding {
            WeightEncoding::Differential | WeightEncoding::Offset => format!(
                "{} rows x {} x {} = {p_max}",
                x.rows,
                (1u64 << x.dac_bits) - 1,
                (1u64 << x.cell_bits) - 1
            ),
            WeightEncoding::Flipped => format!("the flipped encoding's largest sum {p_max}"),
        };
        Some(format!(
            "adc.bits = {}: adc.range = \"lossless\" needs every partial sum to fit, but \
             {largest} > {top} = 2^{} - 1; {fix}, or use adc.range = \"worst\" or \"calib\"",
            x.adc_bits, x.adc_bits
        ))
    }

    /// The largest partial sum one bit line can carry: `R · (2^b_d − 1) · (2^b_c − 1)`, one bit
    /// less with the flipped encoding (`docs/hardware-model.md` §1,
    /// [`CrossbarGeometry::p_max`]). Meaningful for a valid target.
    pub fn max_partial_sum(&self) -> u64 {
        let x = &self.chip.crossbar;
        x.p_max(x.rows)
    }

    /// The target's hash: [`ChipGeometry::hash_hex`] of its chip, i.e. of what decides the
    /// mapping only (name, description, cores, cost figures and noise do not enter it).
    pub fn hash_hex(&self) -> String {
        self.chip.hash_hex()
    }

    /// One line, e.g. `128x128 arrays, 2-bit cells, 1-bit DAC, 8-bit ADC (calib), flipped`.
    pub fn summary(&self) -> String {
        self.chip.summary()
    }

    /// The stamp a graph mapped for this target carries.
    pub fn stamp(&self) -> cimc_ir::TargetStamp {
        self.chip.stamp(&self.name)
    }
}

/// What a program or a stream records of the target it was compiled for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TargetRecord {
    /// Only the stamp line `name hash=HEX summary`: a program lowered from a graph whose target
    /// description was not at hand (a text IR file mapped earlier), or a file of an older format
    /// version.
    Stamp(String),
    /// The whole description, cost figures and noise included (in files as its TOML text, read
    /// back and validated like a target file).
    Full(#[serde(with = "toml_text")] Box<Target>),
}

impl TargetRecord {
    /// The stamp line, `name hash=HEX summary` (what listings and disassemblies print).
    pub fn stamp_line(&self) -> String {
        match self {
            TargetRecord::Stamp(s) => s.clone(),
            TargetRecord::Full(t) => t.stamp().line(),
        }
    }

    /// The whole target, when recorded.
    pub fn target(&self) -> Option<&Target> {
        match self {
            TargetRecord::Full(t) => Some(t),
            TargetRecord::Stamp(_) => None,
        }
    }

    /// The target's name and hash as the stamp line gives them.
    pub fn name_and_hash(&self) -> (String, String) {
        match self {
            TargetRecord::Full(t) => (t.name.clone(), t.hash_hex()),
            TargetRecord::Stamp(s) => {
                let mut words = s.split_whitespace();
                let name = words.next().unwrap_or("").to_string();
                let hash = words.next().and_then(|h| h.strip_prefix("hash=")).unwrap_or("");
                (name, hash.to_string())
            }
        }
    }
}

impl Target {
    /// The TOML text of the whole target (every key, defaults included); reading it back with
    /// [`Target::from_toml_str`] gives the same target.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("invariant: a target always serializes to TOML")
    }

    /// The TOML text with every key written, also those [`Target::to_toml`] leaves out at their
    /// defaults (`[area]`, `[leakage]`, the converters' reference resolutions and laws): what a
    /// tool that edits a target key by key (`cimc sweep`) reads, so that changing `adc.bits`
    /// keeps the resolution the ADC figures hold at.
    pub fn to_toml_explicit(&self) -> String {
        let explicit = || -> std::result::Result<String, toml::ser::Error> {
            let mut table = toml::Table::try_from(self)?;
            let x = &self.chip.crossbar;
            let c = &self.cost;
            if let Some(cost) = table.get_mut("cost").and_then(toml::Value::as_table_mut) {
                let refs = [
                    ("adc_ref_bits", c.adc_ref_bits.unwrap_or(x.adc_bits)),
                    ("dac_ref_bits", c.dac_ref_bits.unwrap_or(x.dac_bits)),
                ];
                for (key, bits) in refs {
                    cost.insert(key.into(), toml::Value::Integer(bits.into()));
                }
                cost.insert("adc_energy_law".into(), toml::Value::try_from(c.adc_energy_law)?);
                cost.insert("adc_thermal_bits".into(), toml::Value::Float(c.adc_thermal_bits));
                cost.insert("adc_rate_law".into(), toml::Value::try_from(c.adc_rate_law)?);
                cost.insert("dac_energy_law".into(), toml::Value::try_from(c.dac_energy_law)?);
            }
            table.insert("area".into(), toml::Value::try_from(&self.area)?);
            table.insert("leakage".into(), toml::Value::try_from(&self.leakage)?);
            toml::to_string(&table)
        };
        explicit().expect("invariant: a target always serializes to TOML")
    }
}

/// A target inside a program or stream: its TOML text.
mod toml_text {
    use super::Target;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Target, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_toml())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<Target>, D::Error> {
        let text = String::deserialize(d)?;
        Target::from_toml_str(&text, "the recorded target")
            .map(Box::new)
            .map_err(serde::de::Error::custom)
    }
}

/// A TOML error on one line: `origin:line:col: key: message`, the key being the dotted key of
/// the offending line when it has one.
fn toml_error(text: &str, origin: &str, e: &toml::de::Error) -> BackendError {
    // toml's message may span lines ("invalid string\nexpected ..."): keep it on one.
    let msg = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>();
    let msg = msg.join("; ");
    let Some(span) = e.span() else {
        return BackendError::Target(format!("{origin}: {msg}"));
    };
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line_idx = before.matches('\n').count();
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let key = key_at_line(text, line_idx).map(|k| format!("{k}: ")).unwrap_or_default();
    BackendError::Target(format!("{origin}:{}:{col}: {key}{msg}", line_idx + 1))
}

/// The dotted key assigned on line `idx` (0-based), prefixed by the enclosing `[table]`.
fn key_at_line(text: &str, idx: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(idx)?.trim();
    if line.starts_with('[') || line.starts_with('#') {
        return None;
    }
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    let table = lines[..idx].iter().rev().map(|l| l.trim()).find_map(|l| {
        let inner = l.strip_prefix('[')?.split(']').next()?.trim();
        (!inner.starts_with('[')).then_some(inner)
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}
