//! Target descriptions: the crossbar chip a program is compiled for.
//!
//! A target is a TOML file (`docs/targets.md` lists every key, its default and its meaning):
//! the array geometry and cell bits, the DAC and ADC resolutions, the ADC range mode, the
//! encoding of signed weights, and the cost figures of `docs/hardware-model.md` §6. Every key has a
//! default — the ISAAC-like chip — so an empty file is a valid target. Three presets are
//! embedded in the binary (`targets/isaac.toml`, `targets/puma.toml`, `targets/edge.toml`, each
//! cost figure with its source in a comment).
//!
//! Loading validates: unknown keys and TOML errors come back with the file, line and key;
//! out-of-range values, a lossless ADC that cannot hold the largest partial sum, and the
//! offset encoding with a calibrated (clipping) ADC are refused with a message naming the file
//! and the key.

use crate::error::{BackendError, Result};
use crate::noise::NoiseSpec;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a signed weight is stored in non-negative cells (`docs/hardware-model.md` §1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `w = w⁺ − w⁻`, two physical columns per weight slice, subtracted after the ADC.
    #[default]
    Differential,
    /// `w + 2^(b_w−1)` in one column; the offset term is subtracted digitally.
    Offset,
}

/// How the ADC step is chosen (`docs/hardware-model.md` §3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdcRangeMode {
    /// Step 1: every partial sum is exact (the target must make that possible).
    Lossless,
    /// The smallest step that never clips.
    Worst,
    /// The smallest step that holds a percentile of the calibration partial sums; above it clips.
    #[default]
    Calib,
}

/// One crossbar array and how many the chip has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArraySpec {
    /// Rows (word lines): the longest dot product one array computes.
    pub rows: usize,
    /// Physical columns (bit lines).
    pub cols: usize,
    /// Bits stored per cell.
    pub cell_bits: u32,
    /// Arrays on the chip; 0 = as many as needed.
    pub count: usize,
}

impl Default for ArraySpec {
    fn default() -> Self {
        ArraySpec { rows: 128, cols: 128, cell_bits: 2, count: 16128 }
    }
}

/// The input drivers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DacSpec {
    /// Input bits applied per cycle (1 = bit-serial).
    pub bits: u32,
}

impl Default for DacSpec {
    fn default() -> Self {
        DacSpec { bits: 1 }
    }
}

/// The column converters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdcSpec {
    /// Resolution in bits.
    pub bits: u32,
    /// How the step is chosen.
    pub range: AdcRangeMode,
    /// The percentile of calibration partial sums that `calib` must hold (in (0, 100]).
    pub percentile: f64,
    /// One step per column group instead of one per layer.
    pub per_column_group: bool,
}

impl Default for AdcSpec {
    fn default() -> Self {
        AdcSpec { bits: 8, range: AdcRangeMode::Calib, percentile: 99.99, per_column_group: false }
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

/// How weights are stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeightSpec {
    pub encoding: Encoding,
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
        }
    }
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
    ];

    /// Every figure with its key, in file order.
    fn fields(&self) -> [(&'static str, f64); 19] {
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
        ]
    }
}

/// A target chip. `Default` is the ISAAC-like chip under the name `custom`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub description: String,
    pub array: ArraySpec,
    pub dac: DacSpec,
    pub adc: AdcSpec,
    pub weights: WeightSpec,
    pub core: CoreSpec,
    pub cost: CostSpec,
    /// The analog non-idealities of the device (`docs/hardware-model.md` §5; `docs/noise.md`): used
    /// by `cimc eval --noise`, never by compilation. Off by default, and then not serialized, so
    /// that a target without it keeps its hash.
    #[serde(skip_serializing_if = "NoiseSpec::is_default")]
    pub noise: NoiseSpec,
}

impl Default for Target {
    fn default() -> Self {
        Target {
            name: "custom".into(),
            description: String::new(),
            array: ArraySpec::default(),
            dac: DacSpec::default(),
            adc: AdcSpec::default(),
            weights: WeightSpec::default(),
            core: CoreSpec::default(),
            cost: CostSpec::default(),
            noise: NoiseSpec::default(),
        }
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
        let text = std::fs::read_to_string(path)
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
        let (a, d, c) = (&self.array, &self.dac, &self.adc);
        if !(1..=65536).contains(&self.core.arrays) {
            p.push(format!("core.arrays = {}: a core owns 1 to 65536 arrays", self.core.arrays));
        }
        if self.core.scratchpad_kib == 0 {
            p.push("core.scratchpad_kib = 0: a core needs a scratchpad".to_string());
        }
        if !(1..=65536).contains(&a.rows) {
            p.push(format!("array.rows = {}: an array has 1 to 65536 rows", a.rows));
        }
        if !(1..=65536).contains(&a.cols) {
            p.push(format!("array.cols = {}: an array has 1 to 65536 columns", a.cols));
        } else if a.cols < 2 && self.weights.encoding == Encoding::Differential {
            p.push(format!(
                "array.cols = {}: weights.encoding = \"differential\" needs 2 columns per weight \
                 (array.cols >= 2)",
                a.cols
            ));
        }
        let cell_ok = (1..=8).contains(&a.cell_bits);
        if !cell_ok {
            p.push(format!("array.cell_bits = {}: a cell stores 1 to 8 bits", a.cell_bits));
        }
        let dac_ok = (1..=8).contains(&d.bits);
        if !dac_ok {
            p.push(format!("dac.bits = {}: a DAC has 1 to 8 bits", d.bits));
        }
        let adc_ok = (1..=16).contains(&c.bits);
        if !adc_ok {
            p.push(format!("adc.bits = {}: an ADC has 1 to 16 bits", c.bits));
        }
        if !(c.percentile > 0.0 && c.percentile <= 100.0) {
            p.push(format!("adc.percentile = {}: a percentile is in (0, 100]", c.percentile));
        }
        if c.range == AdcRangeMode::Lossless && cell_ok && dac_ok && adc_ok && a.rows >= 1 {
            let p_max = self.max_partial_sum();
            let top = (1u64 << c.bits) - 1;
            if p_max > top {
                let need = 64 - p_max.leading_zeros();
                let fix = if need <= 16 {
                    format!("lossless needs adc.bits >= {need}")
                } else {
                    format!("no ADC of at most 16 bits can be lossless ({need} bits needed)")
                };
                p.push(format!(
                    "adc.bits = {}: adc.range = \"lossless\" needs every partial sum to fit, but \
                     {} rows x {} x {} = {p_max} > {top} = 2^{} - 1; {fix}, or use adc.range = \
                     \"worst\" or \"calib\"",
                    c.bits,
                    a.rows,
                    (1u64 << d.bits) - 1,
                    (1u64 << a.cell_bits) - 1,
                    c.bits
                ));
            }
        }
        if self.weights.encoding == Encoding::Offset && c.range == AdcRangeMode::Calib {
            p.push(
                "weights.encoding = \"offset\" with adc.range = \"calib\": an offset encoding \
                 makes the column sums large and the digitally subtracted offset term wrong when \
                 the ADC clips; use adc.range = \"worst\" or \"lossless\", or weights.encoding = \
                 \"differential\""
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
        p.extend(self.noise.problems());
        p
    }

    /// The largest partial sum one bit line can carry: `R · (2^b_d − 1) · (2^b_c − 1)`
    /// (`docs/hardware-model.md` §1). Meaningful for a valid target.
    pub fn max_partial_sum(&self) -> u64 {
        let dac_max = (1u64 << self.dac.bits.min(63)) - 1;
        let cell_max = (1u64 << self.array.cell_bits.min(63)) - 1;
        (self.array.rows as u64).saturating_mul(dac_max).saturating_mul(cell_max)
    }

    /// 16 hex digits: FNV-1a 64 over the canonical TOML serialization of the whole target
    /// (name and description included). Stable across runs and platforms.
    pub fn hash_hex(&self) -> String {
        let text = toml::to_string(self).expect("a target always serializes to TOML");
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// One line, e.g. `128x128 arrays, 2-bit cells, 1-bit DAC, 8-bit ADC (calib), differential`.
    pub fn summary(&self) -> String {
        let range = match self.adc.range {
            AdcRangeMode::Lossless => "lossless",
            AdcRangeMode::Worst => "worst",
            AdcRangeMode::Calib => "calib",
        };
        let enc = match self.weights.encoding {
            Encoding::Differential => "differential",
            Encoding::Offset => "offset",
        };
        format!(
            "{}x{} arrays, {}-bit cells, {}-bit DAC, {}-bit ADC ({range}), {enc}",
            self.array.rows, self.array.cols, self.array.cell_bits, self.dac.bits, self.adc.bits
        )
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
